"""A throwaway cc-ci world for the harness's own tests: the stand-in `abra` over a private swarm
and catalogue, a proxy routing app domains to their services, a run dir, and a way to run one
recipe suite's phase in a pytest subprocess exactly as stage-runner does (docs/writing-tests.md)."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

TESTS_DIR = Path(__file__).resolve().parent.parent
REPO = TESTS_DIR.parent
CALL_LIMIT = 120  # seconds any one abra call may take
SUITE_LIMIT = 600  # seconds one pytest phase may take


def target_dir() -> Path:
    return Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target")


_built: dict = {}


def build_standins() -> Path:
    """`cargo build -p cc-ci-standins --bins` once per session; returns the debug bin dir."""
    if "bin" not in _built and os.environ.get("CCCI_STANDIN_BIN"):
        # A prebuilt bin dir (e.g. while the workspace is mid-edit and does not build).
        _built["bin"] = Path(os.environ["CCCI_STANDIN_BIN"])
    if "bin" not in _built:
        p = subprocess.run(
            ["cargo", "build", "-q", "-p", "cc-ci-standins", "--bins"],
            cwd=REPO, capture_output=True, text=True, timeout=900,
        )
        if p.returncode != 0:
            raise RuntimeError(f"cargo build -p cc-ci-standins failed:\n{p.stderr[-4000:]}")
        _built["bin"] = target_dir() / "debug"
    return _built["bin"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------
# A fallback proxy, used only while the standin-traefik binary does not exist: Host-routing
# reverse proxy and HTTP forward proxy in one, routes read from the swarm's state.json.

class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    routes = None  # set per server class: callable(host) -> port | None

    def log_message(self, *args):
        pass

    def _forward(self):
        target = urlsplit(self.path)
        host = (target.hostname or self.headers.get("Host", "")).split(":")[0].lower()
        path = (target.path or "/") + (f"?{target.query}" if target.query else "")
        if not self.path.startswith(("http://", "https://")):
            path = self.path
        port = self.routes(host)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        if port is None:
            self._reply(404, b"404 page not found\n")
            return
        headers = {k: v for k, v in self.headers.items()
                   if k.lower() not in ("proxy-connection", "connection", "keep-alive")}
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            c.request(self.command, path, body=body, headers=headers)
            r = c.getresponse()
            data = r.read()
        except OSError:
            self._reply(502, b"Bad Gateway")
            return
        self.send_response(r.status)
        for k, v in r.getheaders():
            if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        c.close()

    def _reply(self, status, body):
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_OPTIONS = do_PATCH = _forward


class PyProxy:
    def __init__(self, routes):
        handler = type("Handler", (_ProxyHandler,), {"routes": staticmethod(routes)})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def swarm_routes(swarm_dir: Path, extra: dict):
    def route(host: str):
        if host in extra:
            return extra[host]
        try:
            state = json.loads((swarm_dir / "state.json").read_text())
        except (OSError, ValueError):
            return None
        for stack in state.get("stacks", {}).values():
            if stack.get("domain", "").lower() == host:
                svcs = stack.get("services", [])
                svcs = sorted(svcs, key=lambda s: s.get("name") != "app")
                for s in svcs:
                    if s.get("port"):
                        return s["port"]
        return None
    return route


class TraefikProxy:
    """The standin-traefik binary (`--port N --swarm-dir DIR`)."""

    def __init__(self, exe: Path, swarm_dir: Path, log: Path):
        port = free_port()
        self.proc = subprocess.Popen(
            [str(exe), "--port", str(port), "--swarm-dir", str(swarm_dir)],
            stdin=subprocess.DEVNULL, stdout=log.open("wb"), stderr=subprocess.STDOUT,
        )
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"standin-traefik exited: {log.read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("standin-traefik did not listen within 20s")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


# ---------------------------------------------------------------------------------------------

@dataclass
class PhaseResult:
    phase: str
    returncode: int
    output: str
    passed: list = field(default_factory=list)
    failed: list = field(default_factory=list)
    skipped: list = field(default_factory=list)

    def __str__(self):
        return f"phase {self.phase}: rc={self.returncode}\n{self.output[-6000:]}"


def parse_junit(path: Path, phase: str, rc: int, output: str) -> PhaseResult:
    res = PhaseResult(phase, rc, output)
    if not path.exists():
        return res
    for case in ET.parse(path).getroot().iter("testcase"):
        name = case.get("name")
        if case.find("failure") is not None or case.find("error") is not None:
            res.failed.append(name)
        elif case.find("skipped") is not None:
            res.skipped.append(name)
        else:
            res.passed.append(name)
    return res


class World:
    """One isolated world; `close()` undeploys everything and removes it."""

    def __init__(self, want_proxy: bool = True):
        self.bin = build_standins()
        self.abra_exe = self.bin / "abra"
        self.root = Path(tempfile.mkdtemp(prefix="ccci-harness-"))
        self.abra_dir = self.root / "abra"
        self.swarm_dir = self.root / "swarm"
        self.catalogue = self.root / "catalogue"
        self.run_dir = self.root / "run"
        self.artifacts = self.root / "artifacts"
        self.run_dir.mkdir(mode=0o700)
        self.artifacts.mkdir()
        self.extra_routes: dict = {}
        self.env = {
            **{k: v for k, v in os.environ.items()
               if not k.startswith(("CCCI_", "STANDIN_", "ABRA_"))},
            "ABRA_DIR": str(self.abra_dir),
            "STANDIN_SWARM_DIR": str(self.swarm_dir),
            "STANDIN_ABRA_CATALOGUE": str(self.catalogue),
        }
        self.proxy = None
        self.abra("__standin-catalogue", str(self.catalogue), str(REPO / "standins" / "recipes"))
        self.abra("server", "add", "--local")
        if want_proxy:
            traefik = self.bin / "standin-traefik"
            if traefik.exists():
                self.proxy = TraefikProxy(traefik, self.swarm_dir, self.root / "traefik.log")
            else:
                self.proxy = PyProxy(swarm_routes(self.swarm_dir, self.extra_routes))

    @property
    def proxy_kind(self) -> str:
        return type(self.proxy).__name__ if self.proxy else "none"

    def abra(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        p = subprocess.run([str(self.abra_exe), *args], env=self.env, capture_output=True,
                           text=True, timeout=CALL_LIMIT, stdin=subprocess.DEVNULL)
        if check and p.returncode != 0:
            raise AssertionError(f"abra {' '.join(args)} exited {p.returncode}:\n"
                                 f"{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
        return p

    def git(self, recipe: str, *args: str) -> str:
        p = subprocess.run(["git", *args], cwd=self.abra_dir / "recipes" / recipe,
                           capture_output=True, text=True, timeout=60, check=True)
        return p.stdout.strip()

    def state(self) -> dict:
        try:
            return json.loads((self.swarm_dir / "state.json").read_text())
        except (OSError, ValueError):
            return {"stacks": {}}

    def volume(self, domain: str, name: str) -> Path:
        return self.swarm_dir / "volumes" / f"{domain.replace('.', '_')}_{name}"

    def ccci_env(self, recipe: str, domain: str, stage: str, phase: str,
                 base_url: str | None = None, proxy: bool = True) -> dict:
        return {
            **self.env,
            "CCCI_RECIPE": recipe,
            "CCCI_DOMAIN": domain,
            "CCCI_BASE_URL": base_url or f"http://{domain}",
            "CCCI_STAGE": stage,
            "CCCI_PHASE": phase,
            "CCCI_HTTP_PROXY": self.proxy.url if (self.proxy and proxy) else "",
            "CCCI_RUN_DIR": str(self.run_dir),
            "CCCI_ARTIFACTS": str(self.artifacts / stage),
            "CCCI_ABRA": str(self.abra_exe),
            "CCCI_SERVER": "default",
            "CCCI_CHROMIUM": os.environ.get("CCCI_CHROMIUM", "/usr/bin/chromium"),
            "CCCI_TLS_VERIFY": "0",
        }

    def run_phase(self, suite: str | Path, recipe: str, domain: str, stage: str, phase: str,
                  base_url: str | None = None, proxy: bool = True,
                  extra_args: tuple = ()) -> PhaseResult:
        """Runs `pytest <suite> -m <phase>` as stage-runner does (docs/writing-tests.md)."""
        suite_dir = Path(suite) if Path(suite).is_absolute() else TESTS_DIR / suite
        junit = self.run_dir / f"junit-{phase}.xml"
        junit.unlink(missing_ok=True)
        args = [sys.executable, "-m", "pytest", str(suite_dir), "-m", phase,
                f"--junitxml={junit}", "-p", "no:cacheprovider", "-q", *extra_args]
        env = self.ccci_env(recipe, domain, stage, phase, base_url, proxy)
        if TESTS_DIR not in suite_dir.resolve().parents:
            # A suite outside the tree (a recipe's own tests/) loads the harness by -p.
            env["PYTHONPATH"] = str(TESTS_DIR)
        p = subprocess.run(args, env=env,
                           capture_output=True, text=True, timeout=SUITE_LIMIT,
                           stdin=subprocess.DEVNULL, cwd=REPO)
        return parse_junit(junit, phase, p.returncode, p.stdout + p.stderr)

    def close(self):
        for stack in list(self.state().get("stacks", {}).values()):
            self.abra("app", "undeploy", stack["domain"], check=False)
        # A service the undeploy missed exits by itself once its swarm dir is gone.
        if self.proxy:
            self.proxy.stop()
        shutil.rmtree(self.root, ignore_errors=True)
