"""matrix-synapse after install: the client and federation version endpoints answer as Synapse,
and two users registered through the client API exchange a message in a room."""

import secrets

import pytest


@pytest.mark.install
def test_client_versions(http):
    r = http.get("/_matrix/client/versions")
    assert r.status_code == 200, r.text[:300]
    versions = r.json()["versions"]
    assert any(v.startswith("v1.") for v in versions), versions


@pytest.mark.install
def test_federation_version_is_synapse(http):
    r = http.get("/_matrix/federation/v1/version")
    assert r.status_code == 200, r.text[:300]
    assert r.json()["server"]["name"] == "Synapse"


@pytest.mark.install
def test_two_users_exchange_a_message(matrix, password):
    alice = f"ccci-a-{secrets.token_hex(4)}"
    bob = f"ccci-b-{secrets.token_hex(4)}"
    a = matrix.register(alice, password)
    b = matrix.register(bob, password)
    room = matrix.create_room(a["access_token"], "cc-ci install", invite=[b["user_id"]])
    matrix.join(b["access_token"], room)
    text = f"hello from cc-ci {secrets.token_hex(6)}"
    matrix.send(a["access_token"], room, text)
    assert text in matrix.texts(b["access_token"], room)
    # A wrong password is refused: the login really checks credentials.
    r = matrix.http.post("/_matrix/client/v3/login", json={
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": alice},
        "password": password + "-wrong"})
    assert r.status_code == 403 and r.json()["errcode"] == "M_FORBIDDEN"


@pytest.mark.install
def test_unauthenticated_whoami_is_refused(http):
    r = http.get("/_matrix/client/v3/account/whoami")
    assert r.status_code == 401
    assert r.json()["errcode"] == "M_MISSING_TOKEN"
