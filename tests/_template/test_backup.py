"""RECIPE backup and restore: seed, (backup), mutate, (restore), the seed is back and the
mutation gone."""

import pytest

from ccci_harness import fill_me_in

KEY = "template_backup_seed"


@pytest.mark.pre_backup
def test_seed_before_backup(http, kv):
    fill_me_in("create real data that the backup must keep")
    kv[KEY] = "seed"


@pytest.mark.after_backup
def test_mutate_after_backup(http, kv):
    fill_me_in("change or delete the seed, add something new; assert the change is live")


@pytest.mark.after_restore
def test_restore_brings_seed_back(http, kv):
    fill_me_in("assert the seed is back and the mutation gone")
    assert kv[KEY]
