"""lasuite-docs backup and restore: a document made before the backup and deleted after it is
back; one made after the backup is gone."""

import pytest

KEY = "docs_backup_seed"
MUT = "docs_backup_mutation"


@pytest.mark.pre_backup
def test_seed_before_backup(docs, title, kv):
    kv[KEY] = {"id": docs.create_public(title), "title": title}


@pytest.mark.after_backup
def test_mutate_after_backup(docs, title, kv):
    docs.delete(kv[KEY]["id"])
    assert docs.get(kv[KEY]["id"]).status_code == 404
    kv[MUT] = docs.create_public(title + " after backup")


@pytest.mark.after_restore
def test_restore_brings_seed_back(docs, kv, wait_until):
    r = wait_until(lambda: (lambda r: r.status_code == 200 and r)(docs.get(kv[KEY]["id"])),
                   timeout=180, interval=3, what="seeded document back after restore")
    assert r.json()["title"] == kv[KEY]["title"]
    assert docs.get(kv[MUT]).status_code == 404, "restore left the post-backup document"
