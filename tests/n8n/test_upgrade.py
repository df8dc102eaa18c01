"""n8n across an upgrade: the owner and a workflow made on the old version are there on the
new one (its migrations keep them)."""

import pytest

KEY = "n8n_upgrade_seed"


@pytest.mark.pre_upgrade
def test_seed_before_upgrade(n8n, kv):
    n8n.seed(kv, KEY)


@pytest.mark.post_upgrade
def test_seed_survives_upgrade(n8n, kv):
    seed = kv[KEY]
    n8n.login()
    # Which version that is depends on the PR (one that changes no image upgrades a release to
    # itself): printed, not asserted.
    print(f"n8n {seed['version']} -> {n8n.version()}")
    r = n8n.workflow(seed["id"])
    assert r.status_code == 200, f"the workflow made before the upgrade: {r.status_code} {r.text[:300]}"
    assert r.json()["data"]["name"] == seed["name"]
