"""pytest plugin for cc-ci recipe tests: the phase markers and the fixtures a test may use
(app, http, page, app_run, values, kv, wait_until). Loaded by tests/conftest.py for the in-tree
suites and by `-p ccci_harness.plugin` for a recipe's own tests/ folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from .abra import AppRunner
from .browser import artifact_name, launch, steady_goto
from .context import PHASES, Context
from .http import AppSession
from .kv import KV
from .wait import wait_until as _wait_until

PHASE_HELP = {
    "install": "after the install deploy (also the recipe-tests stage)",
    "pre_upgrade": "on the previous version, before the upgrade: seed data",
    "post_upgrade": "on the PR's version, after the upgrade: read the seed back",
    "pre_backup": "before `abra app backup create`: seed data",
    "after_backup": "after the backup, before `abra app restore`: mutate the seed",
    "after_restore": "after `abra app restore`: the seed is back, the mutation gone",
}


def pytest_configure(config):
    for phase in PHASES:
        config.addinivalue_line("markers", f"{phase}: cc-ci phase, runs {PHASE_HELP[phase]}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    # The page fixture's teardown reads these to decide on a failure screenshot.
    setattr(item, f"ccci_rep_{rep.when}", rep)


def phases_of(item) -> list:
    return [m.name for m in item.iter_markers() if m.name in PHASES]


class Values(dict):
    """values.json; a missing key says where values come from instead of a bare KeyError."""

    def __missing__(self, key):
        raise KeyError(
            f"no generated value {key!r}: list it under \"values\" in the recipe's ci.json "
            f"(stage-runner generates them in prepare into $CCCI_RUN_DIR/values.json)"
        )


@pytest.fixture(scope="session")
def ccci_context() -> Context:
    return Context.from_env()


@pytest.fixture(scope="session")
def app(ccci_context):
    """The deployed app: recipe, domain, base_url, stage, phase (and `.url(path)`)."""
    if not ccci_context.deployed:
        pytest.skip("no deployed app: CCCI_DOMAIN is not set (stage-runner sets it)")
    return ccci_context.app()


@pytest.fixture
def http(app, ccci_context):
    """A requests.Session reaching the app (relative paths resolve against base_url)."""
    s = AppSession(app.base_url, ccci_context.tls_verify,
                   resolve=ccci_context.resolve)
    yield s
    s.close()


@pytest.fixture(scope="session")
def app_run(app, ccci_context):
    """`app_run(service, *cmd, input=None, timeout=None, check=False)` -> RunResult."""
    return AppRunner(ccci_context.abra, app.domain)


@pytest.fixture(scope="session")
def values(ccci_context):
    return Values(ccci_context.values())


@pytest.fixture(scope="session")
def kv(ccci_context):
    """Key-value store persisted in $CCCI_RUN_DIR/kv.json across phases."""
    if ccci_context.run_dir is None:
        pytest.fail("CCCI_RUN_DIR is not set: the kv store has nowhere to live")
    return KV(ccci_context.run_dir / "kv.json")


@pytest.fixture(scope="session")
def wait_until():
    """`wait_until(check, timeout=60, interval=0.5, what=None)`: bounded polling."""
    return _wait_until


@pytest.fixture(scope="session")
def _ccci_browser(ccci_context):
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    try:
        browser = launch(pw, ccci_context.chromium, ccci_context.resolve)
    except BaseException:
        pw.stop()
        raise
    yield browser
    try:
        browser.close()
    finally:
        pw.stop()


def _screenshot(page, artifacts: Path | None, name: str) -> Path | None:
    if artifacts is None:
        return None
    artifacts.mkdir(parents=True, exist_ok=True)
    path = artifacts / name
    try:
        page.screenshot(path=str(path), full_page=True, timeout=15_000)
    except Exception:  # noqa: BLE001 - a screenshot must never turn a pass into an error
        return None
    return path


@pytest.fixture
def page(request, app, ccci_context, _ccci_browser):
    """A Playwright page in a fresh browser context; relative `page.goto` paths resolve
    against the app's base URL. Screenshot to CCCI_ARTIFACTS on failure and after every
    install test."""
    context = _ccci_browser.new_context(
        base_url=app.base_url + "/",
        ignore_https_errors=not ccci_context.tls_verify,
        viewport={"width": 1280, "height": 900},
    )
    context.set_default_timeout(30_000)
    pg = steady_goto(context.new_page())
    yield pg
    try:
        rep = getattr(request.node, "ccci_rep_call", None)
        failed = rep is not None and rep.failed
        if failed:
            _screenshot(pg, ccci_context.artifacts, artifact_name(request.node.nodeid, "-failed"))
        elif "install" in phases_of(request.node):
            _screenshot(pg, ccci_context.artifacts, artifact_name(request.node.nodeid))
    finally:
        context.close()
