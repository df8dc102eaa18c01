"""wordpress backup and restore: a post and an upload made before the backup are back after
the restore (the MariaDB dump and the wp-content volume), and a post published after the
backup is gone."""

import secrets

import pytest

KEY = "wordpress_backup_seed"
MUT = "wordpress_backup_mutation"


@pytest.mark.pre_backup
def test_seed_before_backup(wp, kv):
    wp.seed(kv, KEY)


@pytest.mark.after_backup
def test_mutate_after_backup(wp, kv):
    seed = kv[KEY]
    title = f"cc-ci after backup {secrets.token_hex(6)}"
    wp.new_post(title, "<p>made after the backup</p>")
    wp.delete_post(seed["post"])
    assert wp.public_titles(title) == [title]
    assert wp.public_titles(seed["title"]) == []
    kv[MUT] = {"title": title}


@pytest.mark.after_restore
def test_restore_brings_seed_back(wp, http, kv):
    seed, mut = kv[KEY], kv[MUT]
    assert wp.public_titles(seed["title"]) == [seed["title"]], \
        "the post made before the backup is not back after the restore"
    assert wp.public_titles(mut["title"]) == [], "the restore left the post-backup post in place"
    r = http.get(seed["upload"])
    assert r.status_code == 200, f"the upload made before the backup: {r.status_code}"
