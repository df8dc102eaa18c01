"""What docs/fidelity.md names is there: every repository path it cites exists, every test,
function or column it names is in the code, and every variable it says `dev/upstream --env`
exports is one that script writes."""

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "fidelity.md"
TOP = ("bridge/", "standins/", "tests/", "dev/", "docs/", "nix/", "stage-runner/", "ccci/",
       "dashboard-gen/", "bench/")


def ticked() -> list[str]:
    return re.findall(r"`([^`\n]+)`", DOC.read_text())


def in_code(name: str) -> bool:
    p = subprocess.run(["git", "grep", "-qw", name, "--", ".", ":!docs/fidelity.md"],
                       cwd=REPO, capture_output=True, timeout=60)
    return p.returncode == 0


def test_cited_paths_exist():
    paths = [t for t in ticked() if t.startswith(TOP)]
    assert paths, "the page cites no path"
    missing = [p for p in paths if not (REPO / p.split()[0].rstrip(":,")).exists()]
    assert not missing, missing


def test_named_tests_and_functions_exist():
    names = {t for t in ticked() if re.fullmatch(r"[a-z0-9]+(_[a-z0-9]+){2,}", t)}
    assert names
    missing = sorted(n for n in names if not in_code(n))
    assert not missing, missing


def test_exported_variables_are_the_scripts():
    script = (REPO / "dev" / "upstream").read_text()
    for var in set(re.findall(r"CCCI_REAL_[A-Z_]+", DOC.read_text())):
        suffix = var.removeprefix("CCCI_REAL_").lower().replace("_", "-")
        assert f"{suffix})" in script, f"{var}: dev/upstream installs no '{suffix}'"
