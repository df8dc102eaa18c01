"""RECIPE across an upgrade: seed real data on the old version, read it back on the new one."""

import secrets

import pytest

from ccci_harness import fill_me_in

KEY = "template_upgrade_seed"  # rename: kv keys are shared by every phase of the run


@pytest.mark.pre_upgrade
def test_seed_before_upgrade(http, kv):
    fill_me_in("create real data through the app's API on the old version")
    kv[KEY] = secrets.token_hex(6)


@pytest.mark.post_upgrade
def test_seed_survives_upgrade(http, kv):
    fill_me_in("read the seeded data back through the app's API on the new version")
    assert kv[KEY]
