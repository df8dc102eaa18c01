"""matrix-synapse suite helpers: a thin Matrix client-server API client over the `http` fixture
(spec: https://spec.matrix.org/v1.11/client-server-api/)."""

from __future__ import annotations

import secrets
import time
import uuid
from urllib.parse import quote

import pytest

C = "/_matrix/client/v3"
RATE_LIMIT_WAIT = 60  # seconds; Synapse's default rc_registration/rc_login bursts are small


class Matrix:
    def __init__(self, http, server_name: str, wait_until):
        self.http = http
        self.server_name = server_name
        self.wait_until = wait_until

    def _call(self, method, path, token=None, **kw):
        """One request; a 429 M_LIMIT_EXCEEDED is waited out (bounded) as a client must."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        deadline = time.monotonic() + RATE_LIMIT_WAIT
        while True:
            r = self.http.request(method, path, headers=headers, **kw)
            if r.status_code != 429 or time.monotonic() > deadline:
                return r
            wait_ms = (r.json().get("retry_after_ms") or 1000) if r.content else 1000
            time.sleep(min(wait_ms / 1000, 10))

    def register(self, username: str, password: str) -> dict:
        """User-interactive registration with the m.login.dummy stage."""
        body = {"username": username, "password": password, "inhibit_login": False,
                "initial_device_display_name": "cc-ci"}
        r = self._call("POST", f"{C}/register", json=body)
        assert r.status_code == 401, f"register without auth: {r.status_code} {r.text[:300]}"
        uia = r.json()
        stages = [s for f in uia.get("flows", []) for s in f.get("stages", [])]
        assert "m.login.dummy" in stages, f"registration flows: {uia.get('flows')}"
        body["auth"] = {"type": "m.login.dummy", "session": uia["session"]}
        r = self._call("POST", f"{C}/register", json=body)
        assert r.status_code == 200, f"register {username}: {r.status_code} {r.text[:300]}"
        out = r.json()
        assert out["user_id"] == f"@{username}:{self.server_name}"
        return out

    def login(self, username: str, password: str) -> str:
        r = self._call("POST", f"{C}/login", json={
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": username},
            "password": password,
        })
        assert r.status_code == 200, f"login {username}: {r.status_code} {r.text[:300]}"
        return r.json()["access_token"]

    def create_room(self, token: str, name: str, invite=()) -> str:
        r = self._call("POST", f"{C}/createRoom", token,
                       json={"name": name, "preset": "private_chat", "invite": list(invite)})
        assert r.status_code == 200, f"createRoom: {r.status_code} {r.text[:300]}"
        return r.json()["room_id"]

    def join(self, token: str, room_id: str) -> None:
        r = self._call("POST", f"{C}/join/{quote(room_id)}", token, json={})
        assert r.status_code == 200, f"join: {r.status_code} {r.text[:300]}"

    def send(self, token: str, room_id: str, text: str) -> str:
        txn = uuid.uuid4().hex
        r = self._call("PUT", f"{C}/rooms/{quote(room_id)}/send/m.room.message/{txn}", token,
                       json={"msgtype": "m.text", "body": text})
        assert r.status_code == 200, f"send: {r.status_code} {r.text[:300]}"
        return r.json()["event_id"]

    def texts(self, token: str, room_id: str) -> list:
        r = self._call("GET", f"{C}/rooms/{quote(room_id)}/messages", token,
                       params={"dir": "b", "limit": "100"})
        assert r.status_code == 200, f"messages: {r.status_code} {r.text[:300]}"
        return [e["content"].get("body") for e in r.json()["chunk"]
                if e.get("type") == "m.room.message"]

    def joined_rooms(self, token: str) -> list:
        r = self._call("GET", f"{C}/joined_rooms", token)
        assert r.status_code == 200, f"joined_rooms: {r.status_code} {r.text[:300]}"
        return r.json()["joined_rooms"]

    def profile_status(self, username: str) -> int:
        """HTTP status of the user's public profile: a database read with no rate limit
        (Synapse serves profiles without auth by default), 200 once the user is there."""
        user_id = quote(f"@{username}:{self.server_name}")
        return self.http.get(f"{C}/profile/{user_id}").status_code

    def username_available(self, username: str) -> bool:
        r = self._call("GET", f"{C}/register/available", params={"username": username})
        if r.status_code == 200:
            return bool(r.json().get("available"))
        assert r.status_code == 400 and r.json().get("errcode") == "M_USER_IN_USE", r.text[:300]
        return False

    def seed(self, kv, key: str, password: str) -> dict:
        """A user, a room and a message in it, remembered in kv under `key`."""
        user = f"ccci-{secrets.token_hex(4)}"
        token = self.register(user, password)["access_token"]
        room = self.create_room(token, f"cc-ci {key}")
        text = f"seeded {key} {secrets.token_hex(6)}"
        self.send(token, room, text)
        seed = {"user": user, "room": room, "text": text}
        kv[key] = seed
        return seed


@pytest.fixture
def matrix(http, app, wait_until):
    return Matrix(http, app.domain, wait_until)


@pytest.fixture
def password(values):
    """The run's generated user password (ci.json "values")."""
    return values["user_password"]
