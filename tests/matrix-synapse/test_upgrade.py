"""matrix-synapse across an upgrade: a user, room and message made on the old version are
there on the new one (the database survives, migrations keep the data)."""

import pytest

KEY = "synapse_upgrade_seed"


@pytest.mark.pre_upgrade
def test_seed_before_upgrade(matrix, kv, password):
    seed = matrix.seed(kv, KEY, password)
    token = matrix.login(seed["user"], password)
    assert seed["text"] in matrix.texts(token, seed["room"])


@pytest.mark.post_upgrade
def test_seed_survives_upgrade(matrix, kv, password, wait_until):
    seed = kv[KEY]
    token = matrix.login(seed["user"], password)
    assert seed["room"] in matrix.joined_rooms(token)
    assert seed["text"] in matrix.texts(token, seed["room"])


@pytest.mark.post_upgrade
def test_versions_after_upgrade(http):
    assert http.get("/_matrix/client/versions").status_code == 200
