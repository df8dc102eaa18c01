"""bluesky-pds suite helpers over the PDS's XRPC API (lexicons com.atproto.server.*,
com.atproto.repo.*): an invite code from the admin API (basic auth `admin:<admin password>`),
account creation, session, and records."""

import base64
import datetime
import secrets

import pytest

X = "/xrpc"


class Pds:
    def __init__(self, http, admin_password, password, domain):
        self.http = http
        self.admin_password = admin_password
        self.password = password
        self.domain = domain

    def describe(self) -> dict:
        r = self.http.get(f"{X}/com.atproto.server.describeServer")
        assert r.status_code == 200, r.text[:300]
        return r.json()

    def invite(self) -> str:
        auth = base64.b64encode(f"admin:{self.admin_password}".encode()).decode()
        r = self.http.post(f"{X}/com.atproto.server.createInviteCode", json={"useCount": 1},
                           headers={"Authorization": f"Basic {auth}"})
        assert r.status_code == 200, f"createInviteCode: {r.status_code} {r.text[:300]}"
        return r.json()["code"]

    def create_account(self) -> dict:
        desc = self.describe()
        suffix = desc["availableUserDomains"][0]
        handle = f"ccci{secrets.token_hex(4)}{suffix}"
        body = {"handle": handle, "email": f"{handle}@example.org", "password": self.password}
        if desc.get("inviteCodeRequired", True):
            body["inviteCode"] = self.invite()
        r = self.http.post(f"{X}/com.atproto.server.createAccount", json=body)
        assert r.status_code == 200, f"createAccount: {r.status_code} {r.text[:300]}"
        out = r.json()
        assert out["handle"] == handle and out["did"].startswith("did:")
        return out

    def session(self, identifier: str) -> dict:
        r = self.http.post(f"{X}/com.atproto.server.createSession",
                           json={"identifier": identifier, "password": self.password})
        assert r.status_code == 200, f"createSession: {r.status_code} {r.text[:300]}"
        return r.json()

    def post(self, sess: dict, text: str) -> str:
        r = self.http.post(f"{X}/com.atproto.repo.createRecord",
                           headers={"Authorization": f"Bearer {sess['accessJwt']}"},
                           json={"repo": sess["did"], "collection": "app.bsky.feed.post",
                                 "record": {"$type": "app.bsky.feed.post", "text": text,
                                            "createdAt": datetime.datetime.now(
                                                datetime.timezone.utc).isoformat()}})
        assert r.status_code == 200, f"createRecord: {r.status_code} {r.text[:300]}"
        return r.json()["uri"].rsplit("/", 1)[-1]

    def delete(self, sess: dict, rkey: str):
        r = self.http.post(f"{X}/com.atproto.repo.deleteRecord",
                           headers={"Authorization": f"Bearer {sess['accessJwt']}"},
                           json={"repo": sess["did"], "collection": "app.bsky.feed.post",
                                 "rkey": rkey})
        assert r.status_code == 200, f"deleteRecord: {r.status_code} {r.text[:300]}"

    def get_post(self, did: str, rkey: str):
        return self.http.get(f"{X}/com.atproto.repo.getRecord", params={
            "repo": did, "collection": "app.bsky.feed.post", "rkey": rkey})

    def seed(self, kv, key):
        acct = self.create_account()
        sess = self.session(acct["handle"])
        text = f"cc-ci {key} {secrets.token_hex(6)}"
        rkey = self.post(sess, text)
        kv[key] = {"handle": acct["handle"], "did": acct["did"], "rkey": rkey, "text": text}
        return kv[key]


@pytest.fixture
def pds(http, values, app):
    return Pds(http, values["admin_password"], values["user_password"], app.domain)
