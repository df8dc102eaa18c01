"""matrix-synapse backup and restore: the seed (user, room, message) made before the backup is
back after the restore, and what was done after the backup (a new user, a new message) is gone.
The recipe's restore re-creates the database (`DROP DATABASE … FORCE`), so Synapse may answer
500 until it reconnects: a request with no rate limit (the seed user's profile) is retried
for a bounded while before the one login, as retried logins would trip Synapse's login
rate limit."""

import secrets

import pytest

KEY = "synapse_backup_seed"
MUT = "synapse_backup_mutation"


@pytest.mark.pre_backup
def test_seed_before_backup(matrix, kv, password):
    matrix.seed(kv, KEY, password)


@pytest.mark.after_backup
def test_mutate_after_backup(matrix, kv, password):
    seed = kv[KEY]
    token = matrix.login(seed["user"], password)
    text = f"mutation after backup {secrets.token_hex(6)}"
    matrix.send(token, seed["room"], text)
    newcomer = f"ccci-m-{secrets.token_hex(4)}"
    matrix.register(newcomer, password)
    assert text in matrix.texts(token, seed["room"])
    assert not matrix.username_available(newcomer)
    kv[MUT] = {"text": text, "user": newcomer}


@pytest.mark.after_restore
def test_restore_brings_seed_back(matrix, kv, password, wait_until):
    seed, mut = kv[KEY], kv[MUT]
    wait_until(lambda: matrix.profile_status(seed["user"]) == 200, timeout=120, interval=2,
               what="Synapse reads the restored database (the seed user's profile)")
    token = matrix.login(seed["user"], password)
    texts = matrix.texts(token, seed["room"])
    assert seed["text"] in texts
    assert mut["text"] not in texts, "restore left the post-backup message in place"
    assert matrix.username_available(mut["user"]), "restore left the post-backup user in place"
