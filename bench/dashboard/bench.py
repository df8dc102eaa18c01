"""The dashboard bench (run through bench/dashboard.sh): seeds the stand-in Drone with
RECIPES x RUNS builds its runner really runs, writes a run summary for each, then measures
dashboard-gen's cold generation (three, each from empty) and warm regeneration after one new
build (three). Prints median times and the worst memory and request counts; exits 1 if a
goal is missed.
With HOLD=1 in the environment it then keeps the stand-in Drone and the files until stdin
closes, printing the config path, so dashboard-gen can be profiled against the seeded world."""

import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

BIN = Path(sys.argv[1])
RECIPES, RUNS = int(sys.argv[2]), int(sys.argv[3])
TOKEN = "bench-token"
OWNER, PIPE = "coop-cloud", "cc-ci"
PIPELINE = (Path(__file__).resolve().parents[2] / "dashboard-gen/tests/support/pipeline.yml").read_text()
STAGES = ["prepare", "install", "upgrade", "backup", "recipe-tests", "teardown"]


def summary(n, recipe, sha, pr, fail):
    stages, failed = [], False
    for s in STAGES:
        st = {"name": s, "status": "passed", "reason": "", "started": 1700000000 + n, "duration_ms": 30000 + n % 9000,
              "tests": {"total": 3, "passed": 3, "failed": 0, "skipped": 0}, "failures": [], "artifacts": []}
        if failed and s != "teardown":
            continue
        if s == fail:
            failed = True
            st["status"] = "failed"
            st["tests"] = {"total": 3, "passed": 2, "failed": 1, "skipped": 0}
            st["failures"] = [{"name": f"{recipe}/test_{s}.py::test_data_survives",
                               "message": "AssertionError: expected 3 rows, found 0\n" + "context line\n" * 10}]
        if s == "backup" and n % 5 == 0:
            st["status"], st["reason"], st["tests"] = "skipped", "recipe has no backupbot labels", {
                "total": 0, "passed": 0, "failed": 0, "skipped": 0}
        stages.append(st)
    return {"schema": 1, "build": n, "recipe": recipe, "ref": sha, "pr": pr,
            "src": f"https://git.coopcloud.tech/coop-cloud/{recipe}.git",
            "domain": f"{recipe}-{n}.ci.coopcloud.tech", "version": "1.2.0+2.3.4", "upgrade_base": "1.1.0+2.3.3",
            "started": 1700000000 + n, "finished": 1700000300 + n, "stages": stages}


def main():
    tmp = Path(tempfile.mkdtemp(prefix="dash-bench-"))
    (tmp / "token").write_text(TOKEN + "\n")
    (tmp / "runner").mkdir()
    drone = subprocess.Popen([str(BIN / "standin-drone"), "--runner-capacity", "64", "--runner-root",
                              str(tmp / "runner"), "--admin", f"ci-bot:{tmp / 'token'}"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        url = drone.stdout.readline().split()[-1]
        s = requests.Session()
        s.headers["Authorization"] = f"Bearer {TOKEN}"
        ctl = f"{url}/_standin/drone"
        s.post(f"{ctl}/users", json={"login": OWNER}, timeout=10).raise_for_status()
        s.post(f"{ctl}/repos", json={"owner": OWNER, "name": PIPE, "source": {"kind": "inline", "yaml": PIPELINE}},
               timeout=10).raise_for_status()
        head = "ab" * 20
        s.post(f"{ctl}/repos/{OWNER}/{PIPE}/commits", json={"sha": head, "message": "pipeline"}, timeout=10).raise_for_status()
        s.post(f"{ctl}/repos/{OWNER}/{PIPE}/branches", json={"branch": "main", "sha": head}, timeout=10).raise_for_status()
        recipes = [f"recipe-{i:03d}" for i in range(RECIPES)]
        rnd = random.Random(7)
        results = tmp / "results"
        plan = {}

        def create(recipe, pr, sha, fail):
            params = {"RECIPE": recipe, "REF": sha, "PR": str(pr), "SRC": f"https://git.coopcloud.tech/coop-cloud/{recipe}.git",
                      "COMMENT": "1"}
            if fail:
                params["FAIL"] = fail
            r = s.post(f"{url}/api/repos/{OWNER}/{PIPE}/builds", params=params, timeout=30)
            r.raise_for_status()
            return r.json()["number"]

        t = time.time()
        for run in range(RUNS):
            for recipe in recipes:
                pr = 1 + run // 5
                sha = f"{(hash((recipe, pr)) & 0xffffffff):08x}" + "0" * 32
                fail = rnd.choice([None] * 6 + ["install", "upgrade", "backup", "recipe-tests"]) if run % 3 == 0 else None
                n = create(recipe, pr, sha, fail)
                plan[n] = (recipe, sha, pr, fail)
        last = max(plan)
        s.get(f"{ctl}/repos/{OWNER}/{PIPE}/builds/{last}/wait", params={"timeout_ms": 600000}, timeout=610).raise_for_status()
        for page in range(1, len(plan) // 100 + 2):
            for b in s.get(f"{url}/api/repos/{OWNER}/{PIPE}/builds", params={"page": page, "per_page": 100}, timeout=30).json() or []:
                if b["status"] in ("pending", "running"):
                    s.get(f"{ctl}/repos/{OWNER}/{PIPE}/builds/{b['number']}/wait", params={"timeout_ms": 60000}, timeout=70)
        for n, (recipe, sha, pr, fail) in plan.items():
            d = results / str(n)
            d.mkdir(parents=True)
            (d / "summary.json").write_text(json.dumps(summary(n, recipe, sha, pr, fail)))
        print(f"seeded {len(plan)} builds ({RECIPES} recipes x {RUNS} runs) in {time.time() - t:.1f}s", flush=True)

        def config(name):
            cfg = {"drone_url": url, "drone_token_file": str(tmp / "token"), "drone_repo": f"{OWNER}/{PIPE}",
                   "gitea_url": "https://git.coopcloud.tech", "recipes": {r: f"coop-cloud/{r}" for r in recipes},
                   "results_dir": str(results), "out_dir": str(tmp / name / "out"), "cache_dir": str(tmp / name / "cache"),
                   "site_url": "https://ci.coopcloud.tech", "history": RUNS}
            (tmp / f"{name}.json").write_text(json.dumps(cfg))
            return tmp / f"{name}.json"

        def generate(cfg):
            s.delete(f"{url}/_standin/requests", timeout=10)
            p = subprocess.run(["/usr/bin/time", "-v", str(BIN / "cc-ci-dashboard-gen"), "--config", str(cfg)],
                               capture_output=True, text=True, timeout=600)
            if p.returncode != 0:
                sys.exit(f"dashboard-gen failed:\n{p.stderr}")
            wall = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+(?:\.\d+)?)$", p.stderr, re.M)
            secs = float(wall.group(2)) + 60 * float(wall.group(1) or 0)
            rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr).group(1))
            reqs = [r for r in s.get(f"{url}/_standin/requests", timeout=30).json() if r["path"].startswith("/api/")]
            line = next(l for l in p.stderr.splitlines() if "dashboard: published" in l)
            return secs, rss, len(reqs), line

        def report(what, runs):
            # Median wall time; the worst memory and request count.
            mid = sorted(runs)[len(runs) // 2]
            walls = ", ".join(f"{r[0] * 1000:.0f}" for r in runs)
            print(f"{what}: {mid[0] * 1000:.0f} ms wall (median of {walls}), peak RSS {max(r[1] for r in runs) / 1024:.1f} MB, "
                  f"{max(r[2] for r in runs)} Drone requests")
            print(f"  {mid[3]}")
            return mid[0], max(r[1] for r in runs), max(r[2] for r in runs)

        # Seeding left the disk busy (10,000 workspaces made and deleted): settle it first. Each
        # cold run gets its own empty output and cache.
        os.sync()
        time.sleep(2)
        cold = report("cold generation", [generate(config(f"cold{i}")) for i in range(3)])
        warms = []
        last = config("cold2")
        for i in range(3):
            sha = f"{0xcd00 + i:04x}" * 10
            n = create(recipes[i], 99, sha, None)
            s.get(f"{ctl}/repos/{OWNER}/{PIPE}/builds/{n}/wait", params={"timeout_ms": 60000}, timeout=70).raise_for_status()
            d = results / str(n)
            d.mkdir(parents=True)
            (d / "summary.json").write_text(json.dumps(summary(n, recipes[i], sha, 99, None)))
            warms.append(generate(last))
        warm = report("warm regeneration after 1 new build", warms)
        site = (tmp / "cold2" / "out" / "current").resolve()
        index = (site / "index.html").stat().st_size
        files = sum(len(f) for _, _, f in os.walk(site, followlinks=True))
        print(f"index.html: {index / 1024:.1f} KB; site: {files} files")
        goals = [("cold < 2 s", cold[0] < 2), ("cold < 50 MB", cold[1] < 50 * 1024), ("warm < 200 ms", warm[0] < 0.2),
                 ("warm <= 3 requests", warm[2] <= 3), ("index < 150 KB", index < 150 * 1024)]
        for name, ok in goals:
            print(f"goal {name}: {'met' if ok else 'MISSED'}")
        if os.environ.get("HOLD") == "1":
            print(f"holding: dashboard-gen --config {last} (close stdin to end)", flush=True)
            sys.stdin.read()
        return 0 if all(ok for _, ok in goals) else 1
    finally:
        drone.kill()
        drone.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
