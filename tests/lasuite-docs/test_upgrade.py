"""lasuite-docs across an upgrade: a document created on the old version is readable on the
new one (Postgres survives, migrations keep it)."""

import pytest

KEY = "docs_upgrade_seed"


@pytest.mark.pre_upgrade
def test_seed_before_upgrade(docs, title, kv):
    kv[KEY] = {"id": docs.create_public(title), "title": title}


@pytest.mark.post_upgrade
def test_seed_survives_upgrade(docs, kv):
    r = docs.get(kv[KEY]["id"])
    assert r.status_code == 200, f"document lost in the upgrade: {r.status_code}"
    assert r.json()["title"] == kv[KEY]["title"]
