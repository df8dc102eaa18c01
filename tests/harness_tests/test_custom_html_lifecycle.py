"""The custom-html suite against the app the stand-in abra deployed on the real engine, through
the real Traefik, with real Chromium, phase by phase as stage-runner walks them; and the same
suite failing on a broken app (wrong content, data lost in an upgrade, a restore that restores
nothing)."""

import tarfile

SUITE = "custom-html"
RECIPE = "custom-html"
OLD = "1.0.0+1.25.0"
NEW = "1.1.0+1.27.2"


def phase(world, domain, stage, name):
    return world.run_phase(SUITE, RECIPE, domain, stage, name)


def assert_green(res, expect_tests):
    assert res.returncode == 0, str(res)
    assert sorted(res.passed) == sorted(expect_tests), str(res)
    assert not res.failed and not res.skipped, str(res)


def upgrade_to_head(world, domain):
    """What stage-runner does for the upgrade: check the PR head out, deploy it as chaos."""
    world.git(RECIPE, "checkout", "-q", NEW)
    world.deploy(domain, "--force", "--chaos")


def test_every_phase_green(world, html_app):
    d = html_app
    res = phase(world, d, "install", "install")
    assert_green(res, ["test_index_is_served", "test_volume_file_round_trips",
                       "test_browser_renders_page"])
    shots = sorted(p.name for p in (world.artifacts / "install").glob("*.png"))
    assert shots == ["test_browser_renders_page.png"], shots
    assert (world.artifacts / "install" / shots[0]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # upgrade stage: the previous release, then the PR head.
    world.abra("app", "undeploy", d)
    world.deploy(d, OLD)
    assert_green(phase(world, d, "upgrade", "pre_upgrade"), ["test_seed_before_upgrade"])
    upgrade_to_head(world, d)
    ps = world.abra("app", "ps", d, "-m").stdout
    assert "1.27.2" in ps, ps
    assert_green(phase(world, d, "upgrade", "post_upgrade"),
                 ["test_seed_survives_upgrade", "test_index_after_upgrade"])

    # backup stage.
    assert_green(phase(world, d, "backup", "pre_backup"), ["test_seed_before_backup"])
    world.abra("app", "backup", "create", d)
    assert_green(phase(world, d, "backup", "after_backup"), ["test_mutate_after_backup"])
    world.abra("app", "restore", d)
    assert_green(phase(world, d, "backup", "after_restore"), ["test_restore_brings_seed_back"])


def test_wrong_content_fails_install(world, html_app):
    # nginx without an index answers / with an error page, not the site.
    world.abra("app", "run", html_app, "app", "--", "rm", "/usr/share/nginx/html/index.html")
    res = phase(world, html_app, "install", "install")
    assert res.returncode == 1, str(res)
    assert res.failed == ["test_index_is_served"], str(res)
    # A failing browser test leaves a screenshot too; here only the index test failed.
    assert "test_browser_renders_page" in res.passed


def test_data_lost_in_upgrade_fails_post_upgrade(world, html_app):
    d = html_app
    world.abra("app", "undeploy", d)
    world.deploy(d, OLD)
    assert_green(phase(world, d, "upgrade", "pre_upgrade"), ["test_seed_before_upgrade"])
    # An upgrade that loses the volume: undeploy, remove it, deploy the head on a fresh one.
    world.abra("app", "undeploy", d)
    world.abra("app", "volume", "remove", d, "--force")
    world.git(RECIPE, "checkout", "-q", NEW)
    world.deploy(d, "--chaos")
    res = phase(world, d, "upgrade", "post_upgrade")
    assert res.returncode == 1, str(res)
    assert res.failed == ["test_seed_survives_upgrade"], str(res)
    assert res.passed == ["test_index_after_upgrade"], str(res)


def test_restore_that_restores_nothing_fails_after_restore(world, html_app):
    d = html_app
    assert_green(phase(world, d, "backup", "pre_backup"), ["test_seed_before_backup"])
    world.abra("app", "backup", "create", d)
    # Empty the snapshot: the restore then succeeds (exit 0) and writes nothing back.
    snaps = world.snapshots(d)
    assert len(snaps) == 1, snaps
    for entry in snaps[0].glob("*.tar"):
        with tarfile.open(entry, "w"):
            pass
    assert_green(phase(world, d, "backup", "after_backup"), ["test_mutate_after_backup"])
    world.abra("app", "restore", d)
    res = phase(world, d, "backup", "after_restore")
    assert res.returncode == 1, str(res)
    assert res.failed == ["test_restore_brings_seed_back"], str(res)
    assert "restore left the post-backup mutation in place" in res.output


def test_a_phase_without_its_seed_fails_not_skips(world, html_app):
    # post_upgrade on a run where pre_upgrade never ran: the kv store says so, loudly.
    res = phase(world, html_app, "upgrade", "post_upgrade")
    assert res.returncode == 1
    assert res.failed == ["test_seed_survives_upgrade"], str(res)
    assert "the phase that seeds it did not run" in res.output
