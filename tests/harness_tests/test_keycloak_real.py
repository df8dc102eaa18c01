"""The keycloak suite against the real Keycloak from Maven Central (dev mode, H2), every phase —
the browser login to the admin console included — and the same suite failing when the upgrade
loses the database. Keycloak is started, restarted, backed up and restored by keycloak_app.py
instead of abra/backupbot. Needs `dev/upstream keycloak` (dev/setup runs it)."""

import json
import secrets

import pytest

from keycloak_app import Keycloak

SUITE = "keycloak"
DOMAIN = "kc.ci.example"


@pytest.fixture
def keycloak(world):
    password = secrets.token_urlsafe(24)[:32]
    (world.run_dir / "values.json").write_text(json.dumps({"admin_password": password}))
    kc = Keycloak(world.root / "keycloak", password)
    kc.start()
    try:
        yield kc
    finally:
        kc.stop()


def phase(world, kc, stage, name):
    return world.run_phase(SUITE, "keycloak", DOMAIN, stage, name,
                           base_url=kc.base_url)


def green(res, names):
    assert res.returncode == 0, str(res)
    assert sorted(res.passed) == sorted(names), str(res)


def test_every_phase_green(world, keycloak):
    green(phase(world, keycloak, "install", "install"),
          ["test_admin_console_login_in_browser", "test_master_realm",
           "test_password_grant_gives_admin_cli_jwt", "test_wrong_password_is_refused"])
    green(phase(world, keycloak, "upgrade", "pre_upgrade"), ["test_seed_before_upgrade"])
    keycloak.restart()
    green(phase(world, keycloak, "upgrade", "post_upgrade"), ["test_seed_survives_upgrade"])
    green(phase(world, keycloak, "backup", "pre_backup"), ["test_seed_before_backup"])
    keycloak.backup(world.root / "snap")
    green(phase(world, keycloak, "backup", "after_backup"), ["test_mutate_after_backup"])
    keycloak.restore(world.root / "snap")
    green(phase(world, keycloak, "backup", "after_restore"), ["test_restore_brings_seed_back"])


def test_data_lost_in_upgrade_fails(world, keycloak):
    green(phase(world, keycloak, "upgrade", "pre_upgrade"), ["test_seed_before_upgrade"])
    keycloak.wipe()
    res = phase(world, keycloak, "upgrade", "post_upgrade")
    assert res.returncode == 1, str(res)
    assert res.failed == ["test_seed_survives_upgrade"], str(res)
    assert "marker realm lost in the upgrade" in res.output
