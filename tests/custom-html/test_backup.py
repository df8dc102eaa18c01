"""custom-html backup and restore: a file seeded before the backup, overwritten after it, comes
back with its seeded content when the backup is restored."""

import pytest


@pytest.mark.pre_backup
def test_seed_before_backup(http, put_file, token, kv):
    name, body = f"backup-{token}.html", f"<p>seeded before backup {token}</p>\n"
    put_file(name, body)
    assert http.get(f"/{name}").text == body
    kv["custom_html_backup_seed"] = {"name": name, "body": body}


@pytest.mark.after_backup
def test_mutate_after_backup(http, put_file, token, kv):
    seed = kv["custom_html_backup_seed"]
    mutated = f"<p>mutated after backup {token}</p>\n"
    put_file(seed["name"], mutated)
    # The mutation must be live, or the restore check below would pass for nothing.
    assert http.get(f"/{seed['name']}").text == mutated
    kv["custom_html_backup_mutation"] = mutated


@pytest.mark.after_restore
def test_restore_brings_seed_back(http, kv):
    seed = kv["custom_html_backup_seed"]
    mutated = kv["custom_html_backup_mutation"]
    r = http.get(f"/{seed['name']}")
    assert r.status_code == 200, f"seed {seed['name']} missing after restore: {r.status_code}"
    assert r.text != mutated, "restore left the post-backup mutation in place"
    assert r.text == seed["body"]
