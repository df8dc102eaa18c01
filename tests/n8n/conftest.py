"""n8n suite helpers over the editor's own REST API (/rest/*, what the editor UI calls): the
owner's setup and login (cookie `n8n-auth`), and workflows."""

from __future__ import annotations

import secrets

import pytest

OWNER = "owner@cc-ci.test"


class N8n:
    def __init__(self, http, password: str):
        self.http = http
        # n8n wants 8+ characters with a digit and a capital; the generated value is
        # letters and digits, so both are added to be sure.
        self.password = password + "A1"

    def owner(self) -> None:
        """The owner account, set up once per app (a second setup is refused), then logged in."""
        r = self.http.post("/rest/owner/setup", json={
            "email": OWNER, "firstName": "cc", "lastName": "ci", "password": self.password})
        if r.status_code == 200:
            assert r.json()["data"]["role"] == "global:owner", r.text[:300]
        else:
            assert r.status_code == 400, f"owner setup: {r.status_code} {r.text[:300]}"
        self.login()

    def login(self, password: str | None = None):
        r = self.http.post("/rest/login", json={
            "emailOrLdapLoginId": OWNER, "password": password or self.password})
        if password is None:
            assert r.status_code == 200, f"login: {r.status_code} {r.text[:300]}"
            assert self.http.cookies.get("n8n-auth"), "no n8n-auth cookie after login"
        return r

    def create_workflow(self, name: str) -> str:
        r = self.http.post("/rest/workflows", json={
            "name": name, "active": False, "connections": {},
            "settings": {"executionOrder": "v1"},
            "nodes": [{"id": secrets.token_hex(8), "name": "When clicking 'Test workflow'",
                       "type": "n8n-nodes-base.manualTrigger", "typeVersion": 1,
                       "position": [0, 0], "parameters": {}}]})
        assert r.status_code == 200, f"create workflow: {r.status_code} {r.text[:300]}"
        return r.json()["data"]["id"]

    def workflow(self, wid: str):
        return self.http.get(f"/rest/workflows/{wid}")

    def names(self) -> list:
        r = self.http.get("/rest/workflows")
        assert r.status_code == 200, f"list workflows: {r.status_code} {r.text[:300]}"
        return [w["name"] for w in r.json()["data"]]

    def delete_workflow(self, wid: str) -> None:
        # Archived first, then deleted, where the version archives; older ones delete at once.
        self.http.post(f"/rest/workflows/{wid}/archive")
        r = self.http.delete(f"/rest/workflows/{wid}")
        assert r.status_code == 200, f"delete workflow: {r.status_code} {r.text[:300]}"

    def version(self) -> str:
        r = self.http.get("/rest/settings")
        assert r.status_code == 200, f"settings: {r.status_code} {r.text[:300]}"
        return r.json()["data"]["versionCli"]

    def seed(self, kv, key: str) -> dict:
        self.owner()
        name = f"cc-ci {key} {secrets.token_hex(6)}"
        seed = {"name": name, "id": self.create_workflow(name), "version": self.version()}
        kv[key] = seed
        return seed


@pytest.fixture
def n8n(http, values):
    return N8n(http, values["owner_password"])
