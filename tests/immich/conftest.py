"""immich suite helpers over Immich's REST API (https://immich.app/docs/api, immich 2.x):
admin sign-up / login, multipart asset upload, asset info, thumbnail, statistics."""

import datetime
import secrets
import struct
import zlib

import pytest

ADMIN_EMAIL = "ccci-admin@example.org"


def png(width: int = 64, height: int = 48, seed: int = 0) -> bytes:
    """A real, decodable RGB PNG (unique per seed), so the thumbnail job has work to do."""
    rows = b"".join(
        b"\x00" + bytes(((x * 4 + seed) % 256, (y * 5 + seed * 3) % 256, (x + y + seed) % 256)
                        for x in range(width))
        for y in range(height))

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


class Immich:
    def __init__(self, http, password, wait_until):
        self.http = http
        self.password = password
        self.wait_until = wait_until
        self._token = None

    def sign_up_admin(self):
        return self.http.post("/api/auth/admin-sign-up", json={
            "email": ADMIN_EMAIL, "password": self.password, "name": "cc-ci"})

    def login(self):
        return self.http.post("/api/auth/login",
                              json={"email": ADMIN_EMAIL, "password": self.password})

    def token(self) -> str:
        """The admin's token; signs the admin up first on a server that has none (a fresh
        install, or the previous version deployed for the upgrade stage)."""
        if self._token is None:
            r = self.login()
            if r.status_code == 401:
                s = self.sign_up_admin()
                assert s.status_code == 201, f"admin-sign-up: {s.status_code} {s.text[:300]}"
                r = self.login()
            assert r.status_code == 201, f"login: {r.status_code} {r.text[:300]}"
            self._token = r.json()["accessToken"]
        return self._token

    def _h(self):
        return {"Authorization": f"Bearer {self.token()}"}

    def upload(self, seed: int) -> str:
        now = datetime.datetime.now(datetime.timezone.utc).isoformat()
        name = f"ccci-{secrets.token_hex(4)}.png"
        r = self.http.post("/api/assets", headers=self._h(), files={
            "assetData": (name, png(seed=seed), "image/png")},
            data={"deviceAssetId": name, "deviceId": "cc-ci", "fileCreatedAt": now,
                  "fileModifiedAt": now})
        assert r.status_code == 201, f"upload: {r.status_code} {r.text[:300]}"
        body = r.json()
        assert body["status"] == "created", body
        return body["id"]

    def asset(self, asset_id: str):
        return self.http.get(f"/api/assets/{asset_id}", headers=self._h())

    def thumbnail(self, asset_id: str):
        """Polls until the thumbnail job has run (bounded)."""
        def ready():
            r = self.http.get(f"/api/assets/{asset_id}/thumbnail", headers=self._h())
            return r.status_code == 200 and r.content and r
        return self.wait_until(ready, timeout=180, interval=2, what="thumbnail generated")

    def delete(self, asset_id: str):
        r = self.http.delete("/api/assets", headers=self._h(),
                             json={"ids": [asset_id], "force": True})
        assert r.status_code == 204, f"delete: {r.status_code} {r.text[:300]}"

    def statistics(self) -> dict:
        r = self.http.get("/api/assets/statistics", headers=self._h())
        assert r.status_code == 200, r.text[:300]
        return r.json()


@pytest.fixture
def immich(http, values, wait_until):
    return Immich(http, values["admin_password"], wait_until)
