"""The harness's pieces on their own: kv persistence, the bounded wait, the environment contract,
the HTTP session by a resolve rule, and the tree's rules (every suite test has a phase marker,
every ci.json has the contract's keys, the suites are collected and skipped without an app)."""

import base64
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ccci_harness import KV, PHASES, Context, wait_until
from ccci_harness.browser import artifact_name, chromium_args
from ccci_harness.context import Resolve
from ccci_harness.http import AppSession
from ccci_harness.wait import WaitTimeout
from standin_world import REPO, TESTS_DIR, target_dir

SUITES = sorted(d.name for d in TESTS_DIR.iterdir()
                if (d / "ci.json").is_file() and not d.name.startswith("_"))


def test_kv_persists_across_instances(tmp_path):
    a = KV(tmp_path / "kv.json")
    a["seed"] = {"name": "x", "n": 1}
    b = KV(tmp_path / "kv.json")
    assert b["seed"] == {"name": "x", "n": 1}
    assert "seed" in b and b.get("nope", 3) == 3
    b.delete("seed")
    assert "seed" not in a
    with pytest.raises(KeyError, match="the phase that seeds it did not run"):
        a["seed"]
    assert oct((tmp_path / "kv.json").stat().st_mode & 0o777) == "0o600"


def test_wait_until_returns_value_and_is_bounded():
    calls = []

    def ready():
        calls.append(1)
        return len(calls) >= 3 and "done"

    assert wait_until(ready, timeout=5, interval=0.01) == "done"
    start = time.monotonic()
    with pytest.raises(WaitTimeout, match=r"boom did not hold within 0.3s \(last error: "
                                          r"RuntimeError: nope\)"):
        wait_until(lambda: (_ for _ in ()).throw(RuntimeError("nope")), timeout=0.3,
                   interval=0.05, what="boom")
    assert time.monotonic() - start < 2


def test_context_from_env(tmp_path):
    (tmp_path / "values.json").write_text('{"admin_password": "pw"}')
    ctx = Context.from_env({
        "CCCI_RECIPE": "custom-html", "CCCI_DOMAIN": "h.example", "CCCI_STAGE": "install",
        "CCCI_PHASE": "install", "CCCI_RUN_DIR": str(tmp_path), "CCCI_TLS_VERIFY": "0",
    })
    assert ctx.base_url == "https://h.example"  # the host default
    assert ctx.resolve is None and ctx.tls_verify is False
    assert ctx.chromium == "/usr/bin/chromium" and ctx.abra == "abra"
    assert ctx.values() == {"admin_password": "pw"}
    assert ctx.app().url("/x") == "https://h.example/x"
    assert not Context.from_env({}).deployed


def test_chromium_args_and_artifact_names():
    assert chromium_args() == ["--no-sandbox", "--disable-gpu",
                                   "--disable-background-networking",
                                   "--disable-component-update", "--no-first-run"]
    assert artifact_name("custom-html/test_install.py::test_x[a/b]", "-failed") == \
        "test_x_a_b-failed.png"


class _Flaky(BaseHTTPRequestHandler):
    hits = 0

    def log_message(self, *a):
        pass

    def do_GET(self):
        type(self).hits += 1
        status = 503 if type(self).hits < 3 else 200
        body = f"{self.headers['Host']} {self.path}".encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_http_session_reaches_the_app_by_name_and_retries():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    port = srv.server_address[1]
    try:
        # app.invalid has no DNS anywhere: only the rule makes it reachable, name kept.
        s = AppSession(f"http://app.invalid:{port}", verify=True,
                       resolve=Resolve.parse("*.invalid=127.0.0.1"))
        r = s.get("/hello?x=1")
        assert r.status_code == 200, r.text
        assert r.text == f"app.invalid:{port} /hello?x=1"
        assert _Flaky.hits == 3  # two 503s retried
    finally:
        srv.shutdown()
        srv.server_close()


def _suite_tests():
    for suite in SUITES + ["_template"]:
        for f in sorted((TESTS_DIR / suite).glob("test_*.py")):
            yield f


def _check_suites(*dirs):
    """stage-runner's own ci.json validator (`check-suite`), what prepare runs on the suite."""
    exe = target_dir() / "debug" / "cc-ci-stage-runner"
    if not exe.exists():
        subprocess.run(["cargo", "build", "-q", "-p", "cc-ci-stage-runner"], cwd=REPO,
                       check=True, timeout=900)
    return subprocess.run([str(exe), "check-suite", *map(str, dirs)], capture_output=True,
                          text=True, timeout=60)


def test_every_suite_has_ci_json_readme_and_tests():
    p = _check_suites(*(TESTS_DIR / s for s in SUITES + ["_template"]))
    assert p.returncode == 0, p.stdout + p.stderr
    for suite in SUITES + ["_template"]:
        d = TESTS_DIR / suite
        assert (d / "README.md").read_text().strip()
        assert list(d.glob("test_*.py")), suite


def test_the_suite_check_refuses_what_a_run_refuses(tmp_path):
    """The local check is prepare's: a typo'd key, a stage that cannot be skipped."""
    for name, edit, says in [
        ("typo", lambda ci: ci.update(helth_path="/"), "unknown field `helth_path`"),
        ("skip", lambda ci: ci.update(skip={"install": "no"}), "install"),
    ]:
        d = tmp_path / name / "my-recipe"
        shutil.copytree(TESTS_DIR / "_template", d)
        ci = json.loads((d / "ci.json").read_text())
        edit(ci)
        (d / "ci.json").write_text(json.dumps(ci))
        p = _check_suites(d)
        assert p.returncode == 2 and says in p.stdout, (name, p.stdout)
    p = _check_suites(tmp_path / "Not_A_Recipe")
    assert p.returncode == 2 and "not a catalogue name" in p.stdout, p.stdout


def _collect(args, env):
    return subprocess.run([sys.executable, "-m", "pytest", *args], capture_output=True,
                          text=True, timeout=120, env=env, cwd=TESTS_DIR.parent)


def _clean_env():
    return {k: v for k, v in os.environ.items() if not k.startswith("CCCI_")}


def test_tree_collects_and_every_suite_test_has_one_phase_marker(tmp_path):
    # A tiny plugin prints each collected item's phase markers.
    (tmp_path / "ccci_marks.py").write_text(
        "from ccci_harness.plugin import phases_of\n"
        "def pytest_collection_finish(session):\n"
        "    for it in session.items:\n"
        "        print('MARKS', it.nodeid, ','.join(phases_of(it)))\n")
    env = _clean_env()
    env["PYTHONPATH"] = f"{tmp_path}{os.pathsep}{TESTS_DIR}"
    paths = [str(TESTS_DIR / s) for s in SUITES + ["_template"]]
    p = _collect(["--collect-only", "-q", "-p", "ccci_marks", *paths], env)
    assert p.returncode == 0, p.stdout + p.stderr
    marks = [line.split(" ", 2)[1:] for line in p.stdout.splitlines()
             if line.startswith("MARKS ")]
    assert len(marks) > 20, p.stdout
    for nodeid, m in marks:
        phases = m.split(",") if m else []
        assert len(phases) == 1 and phases[0] in PHASES, f"{nodeid}: phase markers {phases}"
    for suite in SUITES:
        assert any(f"{suite}/" in n for n, _ in marks), f"{suite} collected no tests"


def test_suites_skip_without_a_deployed_app():
    p = _collect(["-q", str(TESTS_DIR / "custom-html"), str(TESTS_DIR / "keycloak")],
                 _clean_env())
    assert p.returncode == 0, p.stdout + p.stderr
    assert " skipped" in p.stdout and "passed" not in p.stdout and "failed" not in p.stdout


def test_phase_selection_runs_only_that_phase(world, html_app):
    res = world.run_phase("custom-html", "custom-html", html_app, "backup", "pre_backup")
    assert res.returncode == 0, str(res)
    assert res.passed == ["test_seed_before_backup"]
    assert "deselected" in res.output


def test_recipe_own_tests_use_the_plugin(world, html_app, tmp_path):
    """A recipe's own tests/ folder, outside this tree, gets the same fixtures via
    `-p ccci_harness.plugin` (stage-runner puts the harness on PYTHONPATH)."""
    own = tmp_path / "recipe" / "tests"
    own.mkdir(parents=True)
    (own / "test_own.py").write_text(
        "def test_own(app, http, kv):\n"
        "    kv['own'] = app.domain\n"
        "    assert http.get('/').status_code == 200\n")
    env = world.ccci_env("custom-html", html_app, "recipe-tests", "install")
    env["PYTHONPATH"] = str(TESTS_DIR)
    p = subprocess.run([sys.executable, "-m", "pytest", str(own), "-p", "ccci_harness.plugin",
                        "--rootdir", str(own), "-p", "no:cacheprovider", "-q"],
                       env=env, capture_output=True, text=True, timeout=120, cwd=own)
    assert p.returncode == 0, p.stdout + p.stderr
    assert json.loads((world.run_dir / "kv.json").read_text())["own"] == html_app


def test_failed_browser_test_leaves_a_screenshot(world, html_app, tmp_path):
    own = tmp_path / "suite"
    own.mkdir()
    (own / "test_fail.py").write_text(
        "import pytest\n"
        "@pytest.mark.after_backup\n"
        "def test_page_fails(page):\n"
        "    page.goto('/')\n"
        "    assert page.title() == 'not this'\n")
    res = world.run_phase(own, "custom-html", html_app, "backup", "after_backup",
                          extra_args=("-p", "ccci_harness.plugin", "--rootdir", str(own)))
    assert res.failed == ["test_page_fails"], str(res)
    shot = world.artifacts / "backup" / "test_page_fails-failed.png"
    assert shot.read_bytes()[:4] == b"\x89PNG", list((world.artifacts).rglob("*"))


def test_resolve_rule_parses_matches_and_refuses_nonsense():

    r = Context.from_env({"CCCI_RESOLVE": " *.ci.test=127.0.0.1 "}).resolve
    assert r == Resolve("*.ci.test", "127.0.0.1")
    assert r.matches("html.ci.test") and r.matches("A.B.CI.TEST.")
    assert not r.matches("ci.test") and not r.matches("html.ci.test.evil.example")
    assert Context.from_env({}).resolve is None
    for bad in ("127.0.0.1", "*.ci.test=", "=127.0.0.1", "*.ci.test=127.0.0.1:443"):
        with pytest.raises(ValueError, match="PATTERN=ADDRESS"):
            Resolve.parse(bad)
    assert ("--host-resolver-rules=MAP *.ci.test 127.0.0.1, MAP * ~NOTFOUND,"
            " EXCLUDE 127.0.0.1, EXCLUDE localhost") in chromium_args(r)


class _Landing(BaseHTTPRequestHandler):
    """Pages that show a run value in each form the card's check knows, and one that does not."""

    secret = "s3cret-Value-42"
    pages = {
        "/clean": "<h1>Welcome</h1>",
        "/raw": f"<p>your password: {secret}</p>",
        "/b64": "<p>token " + base64.b64encode(secret.encode()).decode() + "</p>",
        "/quoted": "<a href='/x'>?pw=" + urllib.parse.quote(secret, safe="") + "</a>",
        "/field": f"<form><input name=pw value='{secret}'></form>",
    }

    def do_GET(self):  # noqa: N802 - http.server's name
        body = ("<!doctype html><title>app</title>" + self.pages.get(self.path, "")).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_card_landing_screenshot_skips_pages_showing_a_run_value(tmp_path):
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Landing)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    port = srv.server_address[1]
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "values.json").write_text(json.dumps({"secret_admin_password": _Landing.secret}))
    env = {**_clean_env(), "PYTHONPATH": str(TESTS_DIR), "CCCI_RECIPE": "custom-html",
           "CCCI_DOMAIN": "app.invalid", "CCCI_BASE_URL": f"http://app.invalid:{port}",
           "CCCI_RESOLVE": "*.invalid=127.0.0.1", "CCCI_RUN_DIR": str(run_dir)}
    try:
        def landing(path):
            out = tmp_path / f"{path.strip('/')}.png"
            p = subprocess.run([sys.executable, "-m", "ccci_harness.card", "landing",
                                "--out", str(out), "--path", path],
                               env=env, capture_output=True, text=True, timeout=120)
            return p, out
        p, out = landing("/clean")
        assert p.returncode == 0, p.stdout + p.stderr
        assert out.read_bytes()[:4] == b"\x89PNG"
        for path in ("/raw", "/b64", "/quoted", "/field"):
            p, out = landing(path)
            assert p.returncode == 3, (path, p.stdout, p.stderr)
            assert "no screenshot kept" in p.stdout
            assert not out.exists(), path
            assert _Landing.secret not in p.stdout + p.stderr
        # The card, from a summary and that screenshot.
        summary = tmp_path / "summary.json"
        summary.write_text(json.dumps({
            "build": 5, "recipe": "custom-html", "ref": "a" * 40, "pr": 2, "version": "1.1.0",
            "stages": [{"name": "install", "status": "failed", "reason": "tests failed",
                        "failures": [{"name": f"t.py::test_{i}", "message": "x"} for i in range(7)]}]}))
        card = tmp_path / "card.png"
        p = subprocess.run([sys.executable, "-m", "ccci_harness.card", "render", "--summary",
                            str(summary), "--out", str(card), "--level", "0", "--level-name",
                            "broken", "--screenshot", str(tmp_path / "clean.png")],
                           env=env, capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stdout + p.stderr
        assert card.read_bytes()[:4] == b"\x89PNG" and card.stat().st_size < 200_000
    finally:
        srv.shutdown()
        srv.server_close()


def test_card_html_escapes_and_bounds_what_it_shows():
    from ccci_harness.card import card_html
    doc = card_html({"recipe": "<b>x</b>", "ref": "f" * 40, "pr": 3, "build": 9, "stages": [
        {"name": "install", "status": "failed", "reason": "<script>alert(1)</script>",
         "failures": [{"name": f"a.py::test_{i}"} for i in range(8)]},
        {"name": "upgrade", "status": "skipped", "reason": "install failed", "skip": "blocked"},
        {"name": "backup", "status": "skipped", "reason": "stateless", "skip": "declared"},
        {"name": "recipe-tests", "status": "skipped", "reason": "no tests/", "skip": "gap"}]},
        0, "broken", None)
    assert "<script>" not in doc and "&lt;script&gt;" in doc and "&lt;b&gt;x&lt;/b&gt;" in doc
    assert doc.count("class=t>✗") == 5 and "and 3 more" in doc
    assert "no screenshot of the app" in doc and "level 0 · broken" in doc
    assert "backup <span class=why>stateless (declared)</span>" in doc
    assert "recipe-tests <span class=why>no tests/ · coverage gap</span>" in doc
    assert "upgrade <span class=why>install failed</span>" in doc


def test_steady_steps_retries_only_what_the_network_change_broke():
    from ccci_harness.browser import steady_steps

    class Context:
        cookies = 0

        def clear_cookies(self):
            self.cookies = 0

    class Page:
        ccci_network_changed = 0
        context = Context()

    page = Page()
    runs = []

    def broken_by_the_host(p):
        runs.append(1)
        # n8n's case: the first try signed in before the host's network moved; a second
        # sign-in page would redirect away unless the retry starts signed out.
        assert p.context.cookies == 0, "a retry starts without the first try's session"
        p.context.cookies += 1
        if len(runs) == 1:
            p.ccci_network_changed += 1  # what the requestfailed listener counts
            raise TimeoutError("waiting for /home/**")
        return "logged in"

    assert steady_steps(page, broken_by_the_host) == "logged in"
    assert len(runs) == 2

    def broken_app(p):
        runs.append(1)
        raise TimeoutError("waiting for #wpadminbar")

    runs.clear()
    with pytest.raises(TimeoutError):
        steady_steps(page, broken_app)
    assert len(runs) == 1, "an app's own failure is not tried again"

    def always_moving(p):
        runs.append(1)
        p.ccci_network_changed += 1
        raise TimeoutError("again")

    runs.clear()
    with pytest.raises(TimeoutError):
        steady_steps(page, always_moving, tries=3)
    assert len(runs) == 3


def test_a_copied_template_fails_until_filled_in(tmp_path):
    """docs/enroll-recipe.md's first step copies tests/_template: against an app that answers
    everything with 200, every one of its tests must fail, saying "fill me in"."""

    class Ok(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            body = b"<html><body>any app</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        env = _clean_env()
        env.update({
            "CCCI_DOMAIN": "template.invalid",
            "CCCI_BASE_URL": f"http://127.0.0.1:{srv.server_address[1]}",
            "CCCI_RUN_DIR": str(tmp_path),
            "CCCI_TLS_VERIFY": "0",
        })
        junit = tmp_path / "junit.xml"
        p = _collect(["-q", "-p", "no:cacheprovider", f"--junitxml={junit}",
                      str(TESTS_DIR / "_template")], env)
        assert p.returncode == 1, p.stdout + p.stderr
        import xml.etree.ElementTree as ET
        cases = ET.parse(junit).getroot().iter("testcase")
        results = {c.get("name"): [e.get("message", "") for e in c if e.tag == "failure"]
                   for c in cases}
        assert len(results) == 7, results
        for name, failures in results.items():
            assert failures and "fill me in" in failures[0], (name, failures, p.stdout)
    finally:
        srv.shutdown()
        srv.server_close()
