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


def test_the_re_test_docs_name_what_the_code_has():
    """docs/bridge.md's scheduled re-tests: each config key, the unit and the NixOS option it
    names are the ones the bridge's --help, its config and the NixOS module have."""
    doc = (REPO / "docs" / "bridge.md").read_text()
    section = doc.split("## Scheduled re-tests", 1)[1].split("\n## ", 1)[0]
    main = (REPO / "bridge" / "src" / "main.rs").read_text()
    config = (REPO / "bridge" / "src" / "config.rs").read_text()
    module = (REPO / "nix" / "modules" / "bridge.nix").read_text()
    keys = set(re.findall(r"`(retest_[a-z_]+)`", section))
    assert keys == {"retest_every_days", "retest_unchanged_days", "retest_batch",
                    "retest_queue_limit", "retest_open_issues"}, keys
    for k in keys:
        assert f'"{k}"' in main and f"pub {k}:" in config and f"{k} = mkOption" in module, k
    assert "--retest" in section and "--retest" in main
    assert "cc-ci-retest.timer" in section and "systemd.timers.cc-ci-retest" in module
    assert "services.cc-ci.bridge.retest.onCalendar" in section and "onCalendar = mkOption" in module
    for path in ("retest.json", "retest.lock"):
        assert path in section and path in (REPO / "bridge" / "src" / "retest.rs").read_text()


def struct_keys(path: Path, struct: str) -> set[str]:
    """The fields of a `#[serde(deny_unknown_fields)]` config struct: the keys its file takes."""
    text = path.read_text()
    body = text.split(f"pub struct {struct} {{", 1)[1].split("\n}\n", 1)[0]
    return set(re.findall(r"^    pub ([a-z_]+):", body, re.M))


def test_the_nix_modules_declare_every_config_key():
    """Each key a binary's config file takes is an option of its NixOS module (the reverse,
    that the module renders only keys the binary takes, is dev/nix-eval's --check-config)."""
    for crate, struct, module in [
        ("bridge", "File", "bridge.nix"),
        ("dashboard-gen", "File", "dashboard.nix"),
        ("stage-runner", "Config", "runner.nix"),
    ]:
        keys = struct_keys(REPO / crate / "src" / "config.rs", struct)
        assert len(keys) > 5, (crate, keys)
        nix = (REPO / "nix" / "modules" / module).read_text()
        declared = set(re.findall(r"^ +([a-z_]+) = mkOption", nix, re.M))
        assert keys <= declared, f"{crate}: not in nix/modules/{module}: {sorted(keys - declared)}"
