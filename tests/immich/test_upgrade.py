"""immich across an upgrade: a photo uploaded on the old version is there, with its thumbnail,
on the new one (database and upload volume both survive)."""

import pytest

KEY = "immich_upgrade_asset"


@pytest.mark.pre_upgrade
def test_seed_before_upgrade(immich, kv):
    asset = immich.upload(seed=2)
    immich.thumbnail(asset)
    kv[KEY] = asset


@pytest.mark.post_upgrade
def test_seed_survives_upgrade(immich, kv):
    r = immich.asset(kv[KEY])
    assert r.status_code == 200, f"asset lost in the upgrade: {r.status_code} {r.text[:200]}"
    immich.thumbnail(kv[KEY])
