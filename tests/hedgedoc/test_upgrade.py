"""hedgedoc across an upgrade: a note made on the old version reads back on the new one."""

import pytest

KEY = "hedgedoc_upgrade_seed"


@pytest.mark.pre_upgrade
def test_seed_before_upgrade(notes, marker, kv):
    md = f"# {marker}\nbefore upgrade\n"
    kv[KEY] = {"note": notes.create(md), "md": md}


@pytest.mark.post_upgrade
def test_seed_survives_upgrade(notes, kv):
    seed = kv[KEY]
    r = notes.read(seed["note"])
    assert r.status_code == 200, f"note lost in the upgrade: {r.status_code}"
    assert r.text == seed["md"]
