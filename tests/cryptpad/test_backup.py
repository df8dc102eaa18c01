"""cryptpad backup and restore: a file in the data volume, overwritten after the backup, has its
seeded content back after the restore."""

import pytest

KEY = "cryptpad_backup_seed"


@pytest.mark.pre_backup
def test_seed_before_backup(data_file, marker, kv):
    data_file.write("ccci-backup.txt", marker)
    kv[KEY] = marker


@pytest.mark.after_backup
def test_mutate_after_backup(data_file, kv):
    data_file.write("ccci-backup.txt", "mutated")
    assert data_file.read("ccci-backup.txt") == "mutated"


@pytest.mark.after_restore
def test_restore_brings_seed_back(data_file, kv):
    assert data_file.read("ccci-backup.txt") == kv[KEY]
