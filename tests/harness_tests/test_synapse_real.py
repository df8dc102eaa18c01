"""The matrix-synapse suite against a real Synapse from PyPI (SQLite), every phase, and the same
suite failing when the upgrade loses the database or the restore restores nothing. Synapse is
started, restarted, backed up and restored by synapse_app.py instead of abra/backupbot."""

import json
import secrets

import pytest

from synapse_app import Synapse, synapse_available

SUITE = "matrix-synapse"
DOMAIN = "synapse.ci.example"

pytestmark = pytest.mark.skipif(
    not synapse_available(),
    reason="matrix-synapse is not installed in this venv (pip install -r tests/requirements.txt)",
)


@pytest.fixture
def synapse(world):
    (world.run_dir / "values.json").write_text(
        json.dumps({"user_password": secrets.token_urlsafe(24)[:32]}))
    s = Synapse(world.root / "synapse", DOMAIN)
    s.start()
    try:
        yield s
    finally:
        s.stop()


def phase(world, synapse, stage, name):
    return world.run_phase(SUITE, "matrix-synapse", DOMAIN, stage, name,
                           base_url=synapse.base_url)


def green(res, names):
    assert res.returncode == 0, str(res)
    assert sorted(res.passed) == sorted(names), str(res)


def test_every_phase_green(world, synapse):
    green(phase(world, synapse, "install", "install"),
          ["test_client_versions", "test_federation_version_is_synapse",
           "test_two_users_exchange_a_message", "test_unauthenticated_whoami_is_refused"])
    green(phase(world, synapse, "upgrade", "pre_upgrade"), ["test_seed_before_upgrade"])
    synapse.restart()
    green(phase(world, synapse, "upgrade", "post_upgrade"),
          ["test_seed_survives_upgrade", "test_versions_after_upgrade"])
    green(phase(world, synapse, "backup", "pre_backup"), ["test_seed_before_backup"])
    synapse.backup(world.root / "snap")
    green(phase(world, synapse, "backup", "after_backup"), ["test_mutate_after_backup"])
    synapse.restore(world.root / "snap")
    green(phase(world, synapse, "backup", "after_restore"), ["test_restore_brings_seed_back"])


def test_data_lost_in_upgrade_fails(world, synapse):
    green(phase(world, synapse, "upgrade", "pre_upgrade"), ["test_seed_before_upgrade"])
    synapse.wipe()
    res = phase(world, synapse, "upgrade", "post_upgrade")
    assert res.returncode == 1, str(res)
    assert res.failed == ["test_seed_survives_upgrade"], str(res)


def test_restore_that_restores_nothing_fails(world, synapse):
    green(phase(world, synapse, "backup", "pre_backup"), ["test_seed_before_backup"])
    synapse.backup(world.root / "snap")
    green(phase(world, synapse, "backup", "after_backup"), ["test_mutate_after_backup"])
    synapse.restart()  # "restored", but nothing was put back
    res = phase(world, synapse, "backup", "after_restore")
    assert res.returncode == 1, str(res)
    assert res.failed == ["test_restore_brings_seed_back"], str(res)
    assert "restore left the post-backup message in place" in res.output
