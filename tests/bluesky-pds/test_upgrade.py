"""bluesky-pds across an upgrade: an account and its post made on the old version are there on
the new one, and the account can still log in."""

import pytest

KEY = "pds_upgrade_seed"


@pytest.mark.pre_upgrade
def test_seed_before_upgrade(pds, kv, http):
    seed = pds.seed(kv, KEY)
    seed["version"] = http.get("/xrpc/_health").json()["version"]
    kv[KEY] = seed


@pytest.mark.post_upgrade
def test_seed_survives_upgrade(pds, kv, http):
    seed = kv[KEY]
    # Which version that is depends on the PR (one that changes no image upgrades a release to
    # itself): printed, not asserted.
    print(f"PDS {seed['version']} -> {http.get('/xrpc/_health').json()['version']}")
    assert pds.session(seed["handle"])["did"] == seed["did"]
    r = pds.get_post(seed["did"], seed["rkey"])
    assert r.status_code == 200 and r.json()["value"]["text"] == seed["text"], r.text[:300]
