"""A throwaway cc-ci world for the harness's own tests: the stand-in `abra` with a private
catalogue, deploying to the project's real engine behind the real Traefik (dev/engine,
dev/proxy) under a base domain of its own, a run dir, and a way to run one recipe suite's phase
in a pytest subprocess exactly as stage-runner does (docs/writing-tests.md)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

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
    """One isolated world; `close()` removes its apps from the engine and its files."""

    def __init__(self):
        if not os.environ.get("DOCKER_HOST"):
            raise RuntimeError('DOCKER_HOST is not set: eval "$(dev/engine start)" && dev/images'
                               ' && dev/proxy up')
        self.bin = build_standins()
        self.abra_exe = self.bin / "abra"
        self.root = Path(tempfile.mkdtemp(prefix="ccci-harness-"))
        self.abra_dir = self.root / "abra"
        self.catalogue = self.root / "catalogue"
        self.run_dir = self.root / "run"
        self.artifacts = self.root / "artifacts"
        self.run_dir.mkdir(mode=0o700)
        self.artifacts.mkdir()
        # Worlds share the engine: app names carry the world's own label.
        self.base = f"w{secrets.token_hex(3)[:5]}.{os.environ.get('CCCI_BASE_DOMAIN') or 'ci.test'}"
        self.env = {
            **{k: v for k, v in os.environ.items()
               if not k.startswith(("CCCI_", "STANDIN_", "ABRA_"))},
            "ABRA_DIR": str(self.abra_dir),
            "STANDIN_ABRA_CATALOGUE": str(self.catalogue),
        }
        self.abra("__standin-catalogue", str(self.catalogue), str(REPO / "standins" / "recipes"))
        self.abra("server", "add", "--local")

    def domain(self, name: str) -> str:
        return f"{name}.{self.base}"

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

    def deploy(self, domain: str, *args: str) -> None:
        """`abra app deploy` (converged), then until Traefik routes the name: its swarm
        provider picks services up within its refresh (2 s), as stage-runner waits for."""
        self.abra("app", "deploy", domain, *args)
        for _ in range(100):
            p = subprocess.run(["curl", "-sk", "--max-time", "5", "--resolve",
                                f"{domain}:443:127.0.0.1", f"https://{domain}/"],
                               capture_output=True, text=True, timeout=10)
            if p.returncode == 0 and p.stdout != "404 page not found\n":
                return
            time.sleep(0.2)
        raise AssertionError(f"Traefik did not route {domain} within 20 s")

    def snapshots(self, domain: str) -> list:
        """The app's backup snapshots in the server's repository (dirs of tar streams beside
        a snapshot.json naming the app: the stand-in abra's layout)."""
        repo = self.abra_dir / "servers" / "default" / ".backupbot"
        return sorted(p for p in repo.iterdir() if p.is_dir() and not p.name.startswith(".")
                      and json.loads((p / "snapshot.json").read_text())["app"] == domain)

    def leftovers(self) -> list:
        """Docker's witness: what this world's apps left on the engine."""
        tail = "_" + self.base.replace(".", "_") + "_"
        left = []
        for kind, args in [("service", ["service", "ls"]), ("container", ["ps", "-a"]),
                           ("volume", ["volume", "ls"]), ("network", ["network", "ls"]),
                           ("config", ["config", "ls"]), ("secret", ["secret", "ls"])]:
            fmt = "{{.Names}}" if kind == "container" else "{{.Name}}"
            p = subprocess.run(["docker", *args, "--format", fmt], capture_output=True,
                               text=True, timeout=60, check=True)
            left += [f"{kind}:{n}" for n in p.stdout.split() if tail in n + "_"]
        return left

    def ccci_env(self, recipe: str, domain: str, stage: str, phase: str,
                 base_url: str | None = None) -> dict:
        return {
            **self.env,
            "CCCI_RECIPE": recipe,
            "CCCI_DOMAIN": domain,
            "CCCI_BASE_URL": base_url or f"https://{domain}",
            "CCCI_STAGE": stage,
            "CCCI_PHASE": phase,
            "CCCI_RESOLVE": f"*.{self.base}=127.0.0.1",
            "CCCI_RUN_DIR": str(self.run_dir),
            "CCCI_ARTIFACTS": str(self.artifacts / stage),
            "CCCI_ABRA": str(self.abra_exe),
            "CCCI_SERVER": "default",
            "CCCI_CHROMIUM": os.environ.get("CCCI_CHROMIUM", "/usr/bin/chromium"),
            "CCCI_TLS_VERIFY": "0",
        }

    def run_phase(self, suite: str | Path, recipe: str, domain: str, stage: str, phase: str,
                  base_url: str | None = None, extra_args: tuple = ()) -> PhaseResult:
        """Runs `pytest <suite> -m <phase>` as stage-runner does (docs/writing-tests.md)."""
        suite_dir = Path(suite) if Path(suite).is_absolute() else TESTS_DIR / suite
        junit = self.run_dir / f"junit-{phase}.xml"
        junit.unlink(missing_ok=True)
        args = [sys.executable, "-m", "pytest", str(suite_dir), "-m", phase,
                f"--junitxml={junit}", "-p", "no:cacheprovider", "-q", *extra_args]
        env = self.ccci_env(recipe, domain, stage, phase, base_url)
        if TESTS_DIR not in suite_dir.resolve().parents:
            # A suite outside the tree (a recipe's own tests/) loads the harness by -p.
            env["PYTHONPATH"] = str(TESTS_DIR)
        p = subprocess.run(args, env=env,
                           capture_output=True, text=True, timeout=SUITE_LIMIT,
                           stdin=subprocess.DEVNULL, cwd=REPO)
        return parse_junit(junit, phase, p.returncode, p.stdout + p.stderr)

    def close(self):
        servers = self.abra_dir / "servers" / "default"
        for env in sorted(servers.glob("*.env")) if servers.is_dir() else []:
            d = env.name[:-len(".env")]
            self.abra("app", "undeploy", d, check=False)
            self.abra("app", "volume", "remove", d, "--force", check=False)
            self.abra("app", "secret", "remove", d, "--all", check=False)
        shutil.rmtree(self.root, ignore_errors=True)
