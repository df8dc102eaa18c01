"""keycloak across an upgrade: a marker realm created on the old version exists on the new one
(realms live in the MariaDB database), and the admin can still get a token."""

import pytest

KEY = "keycloak_upgrade_realm"


@pytest.mark.pre_upgrade
def test_seed_before_upgrade(admin, realm_name, kv):
    admin.create_realm(realm_name)
    assert admin.realm_status(realm_name) == 200
    kv[KEY] = realm_name


@pytest.mark.post_upgrade
def test_seed_survives_upgrade(admin, kv):
    assert admin.token()
    assert admin.realm_status(kv[KEY]) == 200, "marker realm lost in the upgrade"
