"""n8n backup and restore: a workflow made before the backup and deleted after it is back after
the restore; one made after the backup is gone. The restore re-creates the database, so n8n may
fail a request or two until it reconnects: the owner's login is retried for a bounded while."""

import secrets

import pytest

KEY = "n8n_backup_seed"
MUT = "n8n_backup_mutation"


@pytest.mark.pre_backup
def test_seed_before_backup(n8n, kv):
    n8n.seed(kv, KEY)


@pytest.mark.after_backup
def test_mutate_after_backup(n8n, kv):
    seed = kv[KEY]
    n8n.login()
    n8n.delete_workflow(seed["id"])
    assert seed["name"] not in n8n.names()
    name = f"cc-ci after backup {secrets.token_hex(6)}"
    n8n.create_workflow(name)
    kv[MUT] = {"name": name}


@pytest.mark.after_restore
def test_restore_brings_seed_back(n8n, kv, wait_until):
    seed, mut = kv[KEY], kv[MUT]
    wait_until(lambda: n8n.login(n8n.password).status_code == 200, timeout=120, interval=2,
               what="n8n logs the owner in on the restored database")
    names = n8n.names()
    assert seed["name"] in names, "the workflow made before the backup is not back after the restore"
    assert mut["name"] not in names, "the restore left the post-backup workflow in place"
