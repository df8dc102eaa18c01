"""RECIPE across an upgrade: seed real data on the old version, read it back on the new one."""

import secrets

import pytest

KEY = "template_upgrade_seed"  # rename: kv keys are shared by every phase of the run


@pytest.mark.pre_upgrade
def test_seed_before_upgrade(http, kv):
    marker = secrets.token_hex(6)
    # Create something through the app's API here, then remember how to find it.
    kv[KEY] = marker


@pytest.mark.post_upgrade
def test_seed_survives_upgrade(http, kv):
    marker = kv[KEY]
    # Read it back through the app's API here and compare.
    assert marker
