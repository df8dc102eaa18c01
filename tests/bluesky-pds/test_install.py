"""bluesky-pds after install: health with a version, describeServer, an unauthenticated session
refused, and an account that posts and reads its post back."""

import pytest


@pytest.mark.install
def test_health_has_version(http):
    r = http.get("/xrpc/_health")
    assert r.status_code == 200, r.text[:300]
    assert r.json().get("version"), r.text


@pytest.mark.install
def test_describe_server(pds):
    d = pds.describe()
    assert d["availableUserDomains"] and all(s.startswith(".") for s in d["availableUserDomains"])
    assert isinstance(d.get("inviteCodeRequired", True), bool)
    assert d["did"].startswith("did:")


@pytest.mark.install
def test_get_session_needs_auth(http):
    r = http.get("/xrpc/com.atproto.server.getSession")
    assert r.status_code == 401, r.text[:300]


@pytest.mark.install
def test_account_posts_and_reads_back(pds, kv):
    seed = pds.seed(kv, "pds_install_seed")
    r = pds.get_post(seed["did"], seed["rkey"])
    assert r.status_code == 200, r.text[:300]
    assert r.json()["value"]["text"] == seed["text"]
