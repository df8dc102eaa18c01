"""bluesky-pds across an upgrade: an account and its post made on the old version are there on
the new one, and the account can still log in."""

import pytest

KEY = "pds_upgrade_seed"


@pytest.mark.pre_upgrade
def test_seed_before_upgrade(pds, kv):
    pds.seed(kv, KEY)


@pytest.mark.post_upgrade
def test_seed_survives_upgrade(pds, kv):
    seed = kv[KEY]
    assert pds.session(seed["handle"])["did"] == seed["did"]
    r = pds.get_post(seed["did"], seed["rkey"])
    assert r.status_code == 200 and r.json()["value"]["text"] == seed["text"], r.text[:300]
