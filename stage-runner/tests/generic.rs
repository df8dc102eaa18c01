//! The generic run every enrolled recipe gets, with or without a test tree of its own: the
//! checks of each stage, verified backups, the run's deadline and the ci.json knobs, on the
//! real swarm behind the real Traefik (the stand-in abra deploys).

mod world;

use ccci::summary::{CheckStatus, Rung, Skip, Stage, Summary};
use world::World;

/// A test tree with the harness and no suite for the recipe: only the generic checks.
fn bare_tests(name: &str) -> std::path::PathBuf {
    let dir = world::planted_tests(name, &[]);
    std::fs::remove_dir_all(dir.join("custom-html")).unwrap();
    dir
}

fn check(sum: &Summary, stage: Stage, name: &str) -> (CheckStatus, String) {
    let st = sum.stage(stage).unwrap();
    let c = st
        .checks
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("{stage} made no check {name}: {:?}", st.checks));
    (c.status, c.detail.clone())
}

/// The PR's backupbot labels: the volume's `backup.sql` only, written by `pre_hook`.
fn dump_labels(pre_hook: &str) -> impl FnOnce(&std::path::Path) + '_ {
    move |repo| {
        let p = repo.join("compose.yml");
        let text = std::fs::read_to_string(&p).unwrap();
        let text = text.replace(
            "        - \"backupbot.backup.path=/usr/share/nginx/html\"\n",
            &format!(
                "        - \"backupbot.backup.volumes.content.path=backup.sql\"\n        - \"backupbot.backup.pre-hook={pre_hook}\"\n"
            ),
        );
        assert!(text.contains("pre-hook"), "the PR changes the labels");
        std::fs::write(p, text).unwrap();
    }
}

/// An enrolled recipe with no `tests/<recipe>/` gets the whole generic run: the deploy
/// answers (with a landing screenshot), the upgrade lands on the head, the backup's snapshot
/// holds the probe written into the backed-up volume and the restore brings it back. Only
/// the recipe-tests rung is a coverage gap: level 3 from the floor alone.
#[test]
fn a_recipe_without_tests_reaches_its_level_by_the_generic_checks() {
    let tests = bare_tests("floor");
    let w = World::with_tests("floor", &tests);
    let env = w.params(41);
    for stage in Stage::ALL {
        let s = w.stage(stage, &env);
        assert_eq!(s.code, 0, "{stage}:\n{}", s.stdout);
        // Each stage deploys as often as it needs, never more: install the head, upgrade the
        // base and then the head in place, the others none.
        let deploys = s.stdout.matches("+ abra app deploy ").count();
        let want = match stage {
            Stage::Install => 1,
            Stage::Upgrade => 2,
            _ => 0,
        };
        assert_eq!(
            deploys, want,
            "{stage} deployed {deploys} times:\n{}",
            s.stdout
        );
    }
    let sum = w.summary(41);
    let install = sum.stage(Stage::Install).unwrap();
    assert_eq!(install.status.as_str(), "passed");
    assert_eq!(install.tests.total, 0, "no suite ran");
    assert!(
        install
            .artifacts
            .iter()
            .any(|a| a == "artifacts/install/landing.png"),
        "{:?}",
        install.artifacts
    );
    for stage in [Stage::Install, Stage::Upgrade] {
        let (status, detail) = check(&sum, stage, "head-deployed");
        assert_eq!(status, CheckStatus::Passed);
        assert!(detail.contains(&w.sha[..8]), "{detail}");
        let (status, detail) = check(&sum, stage, "answers");
        assert_eq!(status, CheckStatus::Passed);
        assert!(detail.starts_with("/ answered HTTP 200"), "{detail}");
    }
    assert_eq!(sum.stage(Stage::Upgrade).unwrap().status.as_str(), "passed");
    assert_eq!(sum.stage(Stage::Backup).unwrap().status.as_str(), "passed");
    let (status, detail) = check(&sum, Stage::Backup, "backup-data");
    assert_eq!(status, CheckStatus::Passed, "{detail}");
    assert!(detail.contains("probe"), "{detail}");
    let (status, detail) = check(&sum, Stage::Backup, "backup-restored");
    assert_eq!(status, CheckStatus::Passed, "{detail}");
    assert_eq!(
        check(&sum, Stage::Backup, "backup-dump").1,
        "no database dump among the backed-up files"
    );
    assert_eq!(sum.stage(Stage::RecipeTests).unwrap().skip, Some(Skip::Gap));
    // Lint needs no test tree either: each rule the stand-in abra can check holds, the others
    // are listed as not checked, never as satisfied.
    assert_eq!(sum.stage(Stage::Lint).unwrap().status.as_str(), "passed");
    for (rule, want) in [
        ("R001", CheckStatus::Passed),
        ("R014", CheckStatus::Passed),
        ("R016", CheckStatus::Unknown),
    ] {
        assert_eq!(check(&sum, Stage::Lint, rule).0, want, "{rule}");
    }
    assert_eq!(sum.level(), 3);
    assert_eq!(w.leftovers(), Vec::<String>::new());
    let _ = std::fs::remove_dir_all(&tests);
}

/// A dump that comes out empty every time (as when the database restarts under the pre-hook)
/// is retried, then fails the stage with the reason; abra's own exit status said success.
#[test]
fn an_empty_database_dump_fails_the_backup_after_bounded_retries() {
    let tests = bare_tests("emptydump");
    let mut w = World::with_tests("emptydump", &tests);
    w.pr_commit(
        "PR: back up a dump",
        dump_labels(": > /usr/share/nginx/html/backup.sql"),
    );
    let env = w.params(42);
    for stage in ["prepare", "install"] {
        assert_eq!(w.stage(stage, &env).code, 0, "{stage}");
    }
    let s = w.stage("backup", &env);
    assert_eq!(s.code, 1, "{}", s.stdout);
    assert_eq!(s.stdout.matches(" saved\n").count(), 3, "{}", s.stdout);
    assert!(s.stdout.contains("backup attempt 2/3"), "{}", s.stdout);
    let sum = w.summary(42);
    let b = sum.stage(Stage::Backup).unwrap();
    assert_eq!(b.status.as_str(), "failed");
    assert!(
        b.reason.contains("backup-dump")
            && b.reason.contains("/usr/share/nginx/html/backup.sql")
            && b.reason.contains("it is empty")
            && b.reason.contains("in each of 3 backups"),
        "{}",
        b.reason
    );
    // Three snapshots were made; teardown removes every one.
    assert_eq!(w.stage("teardown", &env).code, 0);
    assert_eq!(w.leftovers(), Vec::<String>::new());

    // A recipe may switch the check off, saying why; the run page shows the reason.
    std::fs::create_dir_all(tests.join("custom-html")).unwrap();
    std::fs::write(
        tests.join("custom-html/ci.json"),
        r#"{"env": {"LETS_ENCRYPT_ENV": ""},
            "checks_off": {"backup-dump": "the dump is written by a tool the check cannot read"}}"#,
    )
    .unwrap();
    let env = w.params(49);
    for stage in ["prepare", "install", "backup", "teardown"] {
        let s = w.stage(stage, &env);
        assert_eq!(s.code, 0, "{stage}:\n{}", s.stdout);
    }
    assert_eq!(
        check(&w.summary(49), Stage::Backup, "backup-dump"),
        (
            CheckStatus::Off,
            "the dump is written by a tool the check cannot read".to_owned()
        )
    );
    assert_eq!(w.leftovers(), Vec::<String>::new());
    let _ = std::fs::remove_dir_all(&tests);
}

/// A dump cut short once (the database restarting) and whole the next time passes, saying
/// it took a second backup.
#[test]
fn a_dump_cut_short_once_passes_on_the_retry() {
    let tests = bare_tests("flakydump");
    let mut w = World::with_tests("flakydump", &tests);
    let hook = r#"if [ -f /tmp/dumped-once ]; then printf -- '--\\n-- PostgreSQL database dump\\n--\\nCREATE TABLE t ();\\n--\\n-- PostgreSQL database dump complete\\n--\\n' > /usr/share/nginx/html/backup.sql; else touch /tmp/dumped-once; printf -- '--\\n-- PostgreSQL database dump\\n--\\nCREATE TA' > /usr/share/nginx/html/backup.sql; fi"#;
    w.pr_commit("PR: back up a dump", dump_labels(hook));
    let env = w.params(43);
    for stage in ["prepare", "install", "backup"] {
        let s = w.stage(stage, &env);
        assert_eq!(s.code, 0, "{stage}:\n{}", s.stdout);
    }
    let sum = w.summary(43);
    let (status, detail) = check(&sum, Stage::Backup, "backup-dump");
    assert_eq!(status, CheckStatus::Passed, "{detail}");
    assert!(detail.contains("backup attempt 2"), "{detail}");
    assert_eq!(w.stage("teardown", &env).code, 0);
    assert_eq!(w.leftovers(), Vec::<String>::new());
    let _ = std::fs::remove_dir_all(&tests);
}

/// Two runs of the same recipe at once: run A holds after its backup until run B has made a
/// newer snapshot (the repository's latest). A still restores its own — by id — and its probe
/// comes back; a restore of "the latest" would have brought B's.
#[test]
fn two_concurrent_runs_restore_their_own_backups() {
    let tests = bare_tests("concurrent-backups");
    std::fs::create_dir_all(tests.join("custom-html")).unwrap();
    std::fs::write(
        tests.join("custom-html/test_hold.py"),
        r#"import os, pathlib, time
import pytest


@pytest.mark.after_backup
def test_hold_until_the_other_run_has_backed_up():
    gate = os.environ.get("CCCI_TEST_GATE")
    if not gate:
        return
    gate = pathlib.Path(gate)
    (gate / "waiting").touch()
    end = time.time() + 180
    while not (gate / "go").exists():
        assert time.time() < end, "the other run never backed up"
        time.sleep(0.2)
"#,
    )
    .unwrap();
    let w = World::with_tests("concurrent-backups", &tests);
    let gate = w.dir.join("gate");
    std::fs::create_dir_all(&gate).unwrap();
    let a = w.params(44);
    let b = w.params(45);
    for env in [&a, &b] {
        for stage in ["prepare", "install"] {
            assert_eq!(w.stage(stage, env).code, 0, "{stage}");
        }
    }
    let mut a_gated = a.clone();
    a_gated.push(("CCCI_TEST_GATE".into(), gate.display().to_string()));
    std::thread::scope(|s| {
        let held = s.spawn(|| w.stage("backup", &a_gated));
        w.wait_until(
            "run A to hold after its backup",
            std::time::Duration::from_secs(120),
            || gate.join("waiting").exists(),
        );
        let s_b = w.stage("backup", &b);
        assert_eq!(s_b.code, 0, "B's backup:\n{}", s_b.stdout);
        std::fs::write(gate.join("go"), "").unwrap();
        let s_a = held.join().unwrap();
        assert_eq!(s_a.code, 0, "A's backup:\n{}", s_a.stdout);
    });
    for (n, env) in [(44, &a), (45, &b)] {
        let sum = w.summary(n);
        let (status, detail) = check(&sum, Stage::Backup, "backup-restored");
        assert_eq!(status, CheckStatus::Passed, "run {n}: {detail}");
        assert_eq!(w.stage("teardown", env).code, 0);
    }
    // A's restore named its own snapshot, not B's newer one.
    let snap = |n: u32| {
        let d = check(&w.summary(n), Stage::Backup, "backup-data").1;
        d.split_whitespace().nth(1).unwrap().to_owned()
    };
    assert_ne!(snap(44), snap(45));
    assert!(check(&w.summary(44), Stage::Backup, "backup-restored")
        .1
        .contains(&snap(44)));
    assert_eq!(w.leftovers(), Vec::<String>::new());
    let _ = std::fs::remove_dir_all(&tests);
}

/// A run that hangs (an install test that never returns) is stopped at its deadline: the
/// stage errors "deadline", the app is torn down, later stages error without running.
#[test]
fn a_deadline_ends_a_hung_run_cleanly() {
    let tests = world::planted_tests(
        "deadline",
        &[(
            "custom-html/test_zz_hangs.py",
            "import time\nimport pytest\n\n\n@pytest.mark.install\ndef test_hangs():\n    time.sleep(900)\n",
        )],
    );
    let w = World::with_tests("deadline", &tests);
    w.write_config(&[("run_deadline_secs", serde_json::json!(40))]);
    let env = w.params(46);
    assert_eq!(w.stage("prepare", &env).code, 0);
    let t = std::time::Instant::now();
    let s = w.stage("install", &env);
    assert!(t.elapsed().as_secs() < 90, "took {:?}", t.elapsed());
    assert_eq!(s.code, 2, "{}", s.stdout);
    assert!(
        s.stdout.contains("aborting (the run's deadline passed)"),
        "{}",
        s.stdout
    );
    // Torn down already: nothing of the app is left on the engine.
    assert_eq!(w.stacks(), Vec::<String>::new());
    let up = w.stage("upgrade", &env);
    assert_eq!(up.code, 2);
    assert!(
        !up.stdout.contains("+ abra"),
        "nothing runs past the deadline:\n{}",
        up.stdout
    );
    assert_eq!(w.stage("teardown", &env).code, 0);
    let sum = w.summary(46);
    for stage in [Stage::Install, Stage::Upgrade] {
        let st = sum.stage(stage).unwrap();
        assert_eq!(st.status.as_str(), "error", "{stage}");
        assert!(
            st.reason.starts_with("deadline: "),
            "{stage}: {}",
            st.reason
        );
    }
    assert!(sum
        .stage(Stage::Install)
        .unwrap()
        .reason
        .contains("40 s deadline passed during install"));
    assert_eq!(
        sum.stage(Stage::Teardown).unwrap().status.as_str(),
        "passed"
    );
    assert_eq!(w.leftovers(), Vec::<String>::new());
    let _ = std::fs::remove_dir_all(&tests);
}

/// ci.json's knobs: statuses that count as up, env values from the app's domain, a compose
/// overlay on every deploy and one on the upgrade base only, a deploy timeout above the
/// host's cap said to be capped. The recipe's suite looks inside the containers.
#[test]
fn ci_json_knobs_reach_the_deploys() {
    let tests = bare_tests("knobs");
    let suite = tests.join("custom-html");
    std::fs::create_dir_all(&suite).unwrap();
    std::fs::write(
        suite.join("ci.json"),
        r#"{"health_path": "/no-such-page", "health_codes": [404],
            "deploy_timeout_secs": 5000,
            "env": {"LETS_ENCRYPT_ENV": "", "SANDBOX_DOMAIN": "{app}-sandbox.{base_domain}"},
            "overlay": "compose.ci.yml", "base_overlay": "compose.base.yml"}"#,
    )
    .unwrap();
    std::fs::write(
        suite.join("compose.ci.yml"),
        "version: \"3.8\"\nservices:\n  app:\n    environment:\n      - CCCI_OVERLAY=every-deploy\n      - SANDBOX=${SANDBOX_DOMAIN}\n",
    )
    .unwrap();
    std::fs::write(
        suite.join("compose.base.yml"),
        "version: \"3.8\"\nservices:\n  app:\n    environment:\n      - CCCI_BASE=yes\n",
    )
    .unwrap();
    std::fs::write(
        suite.join("test_knobs.py"),
        r#"import pytest


def env_of(app_run):
    r = app_run("app", "env", check=True)
    return dict(l.split("=", 1) for l in r.stdout.splitlines() if "=" in l)


@pytest.mark.install
def test_every_deploy_has_the_overlay(app, app_run):
    env = env_of(app_run)
    assert env.get("CCCI_OVERLAY") == "every-deploy"
    assert "CCCI_BASE" not in env
    name, base = app.domain.split(".", 1)
    assert env.get("SANDBOX") == f"{name}-sandbox.{base}"


@pytest.mark.pre_upgrade
def test_the_base_has_both(app_run):
    env = env_of(app_run)
    assert env.get("CCCI_BASE") == "yes"
    assert env.get("CCCI_OVERLAY") == "every-deploy"


@pytest.mark.post_upgrade
def test_the_head_drops_the_base_overlay(app_run):
    env = env_of(app_run)
    assert "CCCI_BASE" not in env
    assert env.get("CCCI_OVERLAY") == "every-deploy"
"#,
    )
    .unwrap();
    let w = World::with_tests("knobs", &tests);
    let env = w.params(47);
    for stage in ["prepare", "install", "upgrade", "teardown"] {
        let s = w.stage(stage, &env);
        assert_eq!(s.code, 0, "{stage}:\n{}", s.stdout);
    }
    let sum = w.summary(47);
    assert_eq!(sum.stage(Stage::Install).unwrap().tests.passed, 1);
    assert_eq!(sum.stage(Stage::Upgrade).unwrap().tests.passed, 2);
    assert_eq!(
        sum.notes,
        ["ci.json deploy_timeout_secs 5000 is above this host's cap: each deploy waits at most 60 s"]
    );
    assert_eq!(w.leftovers(), Vec::<String>::new());
    let _ = std::fs::remove_dir_all(&tests);
}

/// A release tagged with a lightweight tag breaks abra's R014 (an error rule): the lint rung
/// fails with the rule's words and the table is kept; the deploy stages went on regardless.
#[test]
fn a_lint_failure_is_a_rung_of_its_own() {
    let tests = bare_tests("lintfail");
    let w = World::with_tests("lintfail", &tests);
    world::git(
        &w.catalogue.join("custom-html"),
        &["tag", "1.1.1+1.27.2", "main"],
    );
    let env = w.params(48);
    for stage in ["prepare", "install"] {
        assert_eq!(w.stage(stage, &env).code, 0, "{stage}");
    }
    let s = w.stage("lint", &env);
    assert_eq!(s.code, 1, "{}", s.stdout);
    assert!(
        s.stdout
            .contains("WARN critical errors present in custom-html config"),
        "{}",
        s.stdout
    );
    assert_eq!(w.stage("teardown", &env).code, 0);
    let sum = w.summary(48);
    assert_eq!(sum.stage(Stage::Install).unwrap().status.as_str(), "passed");
    let lint = sum.stage(Stage::Lint).unwrap();
    assert_eq!(lint.rung(), Rung::Fail);
    assert_eq!(
        lint.reason,
        "abra recipe lint: error rules not satisfied: R014 only annotated tags used for recipe version"
    );
    let (status, detail) = check(&sum, Stage::Lint, "R014");
    assert_eq!(status, CheckStatus::Failed);
    assert!(
        detail.contains("(error): replace lightweight tag with annotated tag"),
        "{detail}"
    );
    assert_eq!(check(&sum, Stage::Lint, "R001").0, CheckStatus::Passed);
    assert_eq!(lint.artifacts, ["artifacts/lint/lint.txt"]);
    let table = std::fs::read_to_string(w.dir.join("results/48/artifacts/lint/lint.txt")).unwrap();
    assert!(table.contains("│ R014 │"), "{table}");
    assert_eq!(w.leftovers(), Vec::<String>::new());
    let _ = std::fs::remove_dir_all(&tests);
}
