"""RECIPE backup and restore: seed, (backup), mutate, (restore), the seed is back and the
mutation gone."""

import pytest

KEY = "template_backup_seed"


@pytest.mark.pre_backup
def test_seed_before_backup(http, kv):
    kv[KEY] = "seed"  # create real data here


@pytest.mark.after_backup
def test_mutate_after_backup(http, kv):
    pass  # change or delete the seed, add something new; assert the change is live


@pytest.mark.after_restore
def test_restore_brings_seed_back(http, kv):
    assert kv[KEY]  # the seed is back, the mutation gone
