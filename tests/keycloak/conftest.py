"""keycloak suite helpers: a password grant for the master realm's admin (client `admin-cli`)
and the admin REST API (https://www.keycloak.org/docs-api/latest/rest-api/)."""

import secrets

import pytest

# The recipe's admin user; its password is the generated value inserted as the
# `admin_password` secret (ci.json). Check against the recipe's .env.sample when enrolling.
ADMIN_USER = "admin"
TOKEN_PATH = "/realms/master/protocol/openid-connect/token"


def jwt_claims(token: str) -> dict:
    import base64
    import json

    payload = token.split(".")[1]
    payload += "=" * (-len(payload) % 4)
    return json.loads(base64.urlsafe_b64decode(payload))


class Admin:
    def __init__(self, http, password):
        self.http = http
        self.password = password
        self._token = None

    def token(self) -> str:
        r = self.http.post(TOKEN_PATH, data={
            "grant_type": "password", "client_id": "admin-cli",
            "username": ADMIN_USER, "password": self.password})
        assert r.status_code == 200, f"password grant: {r.status_code} {r.text[:300]}"
        return r.json()["access_token"]

    def _h(self):
        if self._token is None:
            self._token = self.token()
        return {"Authorization": f"Bearer {self._token}"}

    def create_realm(self, name: str):
        r = self.http.post("/admin/realms", json={"realm": name, "enabled": True},
                           headers=self._h())
        assert r.status_code == 201, f"create realm {name}: {r.status_code} {r.text[:300]}"

    def delete_realm(self, name: str):
        r = self.http.delete(f"/admin/realms/{name}", headers=self._h())
        assert r.status_code == 204, f"delete realm {name}: {r.status_code} {r.text[:300]}"

    claims = staticmethod(jwt_claims)

    def realm_status(self, name: str) -> int:
        return self.http.get(f"/realms/{name}").status_code


@pytest.fixture
def admin(http, values):
    return Admin(http, values["admin_password"])


@pytest.fixture
def admin_user():
    return ADMIN_USER


@pytest.fixture
def realm_name():
    return f"ccci-{secrets.token_hex(4)}"
