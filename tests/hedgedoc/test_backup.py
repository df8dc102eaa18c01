"""hedgedoc backup and restore: a note made before the backup is back after the restore, and a
note made after the backup is gone (notes live in the database, not in a volume).
HedgeDoc 1.x has no HTTP API to edit a note (edits go over socket.io), so the mutation is a
new note rather than a changed one."""

import pytest

KEY = "hedgedoc_backup_seed"
MUT = "hedgedoc_backup_mutation"


@pytest.mark.pre_backup
def test_seed_before_backup(notes, marker, kv):
    md = f"# {marker}\nbefore backup\n"
    kv[KEY] = {"note": notes.create(md), "md": md}


@pytest.mark.after_backup
def test_mutate_after_backup(notes, marker, kv):
    note = notes.create(f"# {marker}\nafter backup\n")
    assert notes.read(note).status_code == 200
    kv[MUT] = note


@pytest.mark.after_restore
def test_restore_brings_seed_back(notes, kv, wait_until):
    seed = kv[KEY]
    r = wait_until(lambda: (lambda r: r.status_code != 500 and r)(notes.read(seed["note"])),
                   timeout=120, interval=2, what="hedgedoc answers after restore")
    assert r.status_code == 200 and r.text == seed["md"]
    assert notes.read(kv[MUT]).status_code == 404, "restore left the post-backup note in place"
