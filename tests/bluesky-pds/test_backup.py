"""bluesky-pds backup and restore (the recipe backs up its data volume: SQLite + repo blocks):
a post made before the backup and deleted after it is back; a post made after it is gone."""

import pytest

KEY = "pds_backup_seed"
MUT = "pds_backup_mutation"


@pytest.mark.pre_backup
def test_seed_before_backup(pds, kv):
    pds.seed(kv, KEY)


@pytest.mark.after_backup
def test_mutate_after_backup(pds, kv):
    seed = kv[KEY]
    sess = pds.session(seed["handle"])
    pds.delete(sess, seed["rkey"])
    assert pds.get_post(seed["did"], seed["rkey"]).status_code == 400
    kv[MUT] = pds.post(sess, "cc-ci post after backup")


@pytest.mark.after_restore
def test_restore_brings_seed_back(pds, kv, wait_until):
    seed = kv[KEY]
    r = wait_until(lambda: (lambda r: r.status_code == 200 and r)(
        pds.get_post(seed["did"], seed["rkey"])), timeout=120, interval=2,
        what="seeded post back after restore")
    assert r.json()["value"]["text"] == seed["text"]
    assert pds.get_post(seed["did"], kv[MUT]).status_code == 400, \
        "restore left the post-backup post in place"
