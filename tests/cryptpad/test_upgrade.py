"""cryptpad across an upgrade: a file in the data volume survives, and the app still serves."""

import pytest

KEY = "cryptpad_upgrade_seed"


@pytest.mark.pre_upgrade
def test_seed_before_upgrade(data_file, marker, kv):
    data_file.write("ccci-upgrade.txt", marker)
    kv[KEY] = marker


@pytest.mark.post_upgrade
def test_seed_survives_upgrade(data_file, http, kv):
    assert data_file.read("ccci-upgrade.txt") == kv[KEY]
    assert http.get("/api/config").status_code == 200
