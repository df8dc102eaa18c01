"""keycloak backup and restore: a marker realm created before the backup and deleted after it is
back after the restore; a realm created after the backup is gone."""

import pytest

KEY = "keycloak_backup_realm"
MUT = "keycloak_backup_mutation"


@pytest.mark.pre_backup
def test_seed_before_backup(admin, realm_name, kv):
    admin.create_realm(realm_name)
    kv[KEY] = realm_name


@pytest.mark.after_backup
def test_mutate_after_backup(admin, realm_name, kv):
    admin.delete_realm(kv[KEY])
    assert admin.realm_status(kv[KEY]) == 404
    admin.create_realm(realm_name)
    kv[MUT] = realm_name


@pytest.mark.after_restore
def test_restore_brings_seed_back(admin, kv, wait_until):
    wait_until(lambda: admin.realm_status(kv[KEY]) == 200, timeout=300, interval=5,
               what="marker realm is back after restore")
    assert admin.realm_status(kv[MUT]) == 404, "restore left the post-backup realm in place"
