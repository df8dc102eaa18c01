"""immich backup and restore: a photo uploaded before the backup and deleted after it is back
(record and thumbnail) after the restore; a photo uploaded after the backup is gone.
Expected to fail on the published recipe, which does not back up Postgres (recipes.md)."""

import pytest

KEY = "immich_backup_asset"
MUT = "immich_backup_mutation"


@pytest.mark.pre_backup
def test_seed_before_backup(immich, kv):
    asset = immich.upload(seed=3)
    immich.thumbnail(asset)
    kv[KEY] = asset


@pytest.mark.after_backup
def test_mutate_after_backup(immich, kv):
    immich.delete(kv[KEY])
    assert immich.asset(kv[KEY]).status_code in (400, 404)
    kv[MUT] = immich.upload(seed=4)


@pytest.mark.after_restore
def test_restore_brings_seed_back(immich, kv, wait_until):
    r = wait_until(lambda: (lambda r: r.status_code == 200 and r)(immich.asset(kv[KEY])),
                   timeout=180, interval=3, what="seeded asset back after restore")
    assert r.json()["id"] == kv[KEY]
    immich.thumbnail(kv[KEY])
    assert immich.asset(kv[MUT]).status_code in (400, 404), \
        "restore left the post-backup upload in place"
