//! The real stage-runner binary, stage by stage as Drone's exec runner calls it, with the
//! stand-in abra deploying to the real swarm behind the real Traefik, and the real Python
//! suites and Chromium.

mod world;

use ccci::summary::Stage;
use world::World;

/// The stages these runs go through: all but lint.
const STAGES: [Stage; 6] = [
    Stage::Prepare,
    Stage::Install,
    Stage::Upgrade,
    Stage::Backup,
    Stage::RecipeTests,
    Stage::Teardown,
];

#[test]
fn a_whole_run_passes_and_leaves_nothing_behind() {
    let w = World::new("whole");
    let env = w.params(7);
    for stage in STAGES {
        let s = w.stage(stage, &env);
        assert_eq!(s.code, 0, "{stage} failed:\n{}", s.stdout);
    }
    let sum = w.summary(7);
    let status = |n: &str| {
        sum.stage(n.parse().unwrap())
            .map(|s| s.status.as_str())
            .unwrap_or("missing")
    };
    assert_eq!(status("prepare"), "passed");
    assert_eq!(status("install"), "passed");
    assert_eq!(status("upgrade"), "passed");
    assert_eq!(status("backup"), "passed");
    assert_eq!(status("recipe-tests"), "skipped");
    let rt = sum.stage(Stage::RecipeTests).unwrap();
    assert!(rt.reason.contains("no tests/"));
    // Nobody said why there is nothing to run: a coverage gap, which stops the climb.
    assert_eq!(rt.skip, Some(ccci::summary::Skip::Gap));
    assert_eq!(sum.level(), 3);
    assert_eq!(status("teardown"), "passed");
    assert!(sum.stage(Stage::Install).unwrap().tests.passed >= 3);
    assert_eq!(sum.upgrade_base, "1.1.0+1.27.2");
    assert_eq!(sum.version, "1.1.0+1.27.2");
    assert_eq!(sum.domain, format!("custom-html-7.{}", w.base_domain));
    assert!(sum.finished > 0);
    assert!(
        !sum.stage(Stage::Install).unwrap().artifacts.is_empty(),
        "the install tests keep a screenshot"
    );
    // The landing page before any test, and the card that shows it, listed for the site.
    let install = sum.stage(Stage::Install).unwrap();
    assert!(
        install
            .artifacts
            .iter()
            .any(|a| a == "artifacts/install/landing.png"),
        "{:?}",
        install.artifacts
    );
    let teardown = sum.stage(Stage::Teardown).unwrap();
    assert_eq!(teardown.artifacts, ["artifacts/card.png"]);
    let card = std::fs::read(w.dir.join("results/7/artifacts/card.png")).unwrap();
    assert!(card.starts_with(b"\x89PNG"), "a PNG");
    assert!(card.len() < 200_000, "{} bytes", card.len());
    assert_eq!(w.leftovers(), Vec::<String>::new());
}

/// A PR that brings its own tests/ for a recipe the operator has not trusted: they never run
/// (they are the PR author's code, on a host whose runner reaches the docker socket), and the
/// stage says why. The test would leave a file behind if it ran.
#[test]
fn a_recipe_s_own_tests_run_only_when_the_operator_trusts_the_recipe() {
    let mut w = World::new("untrusted");
    let ran = w.dir.join("the-pr-code-ran");
    let repo = w.forge.join("custom-html");
    std::fs::create_dir_all(repo.join("tests")).unwrap();
    std::fs::write(
        repo.join("tests/test_own.py"),
        format!(
            "open({:?}, 'w').write('yes')\n\ndef test_x():\n    pass\n",
            ran.display().to_string()
        ),
    )
    .unwrap();
    world::git(&repo, &["add", "tests"]);
    world::git(&repo, &["commit", "-qm", "PR: tests of my own"]);
    w.sha = world::git(&repo, &["rev-parse", "HEAD"]);
    let env = w.params(15);
    let mut log = String::new();
    for stage in ["prepare", "install", "recipe-tests", "teardown"] {
        let s = w.stage(stage, &env);
        assert_eq!(s.code, 0, "{stage}: {}", s.stdout);
        log.push_str(&s.stdout);
    }
    assert!(!ran.exists(), "the PR's test code ran:\n{log}");
    assert!(!log.contains("--- recipe-tests: phase"), "{log}");
    let sum = w.summary(15);
    let rt = sum.stage(Stage::RecipeTests).unwrap();
    assert_eq!(rt.status.as_str(), "skipped");
    assert_eq!(rt.skip, Some(ccci::summary::Skip::Declared));
    assert!(
        rt.reason
            .starts_with("custom-html is not in this host's trusted_recipes"),
        "{}",
        rt.reason
    );
    assert_eq!(w.leftovers(), Vec::<String>::new());
}

/// A trusted recipe's test that swaps its artifacts directory for a symlink to elsewhere on the
/// host publishes nothing from there.
#[test]
fn a_symlinked_artifacts_directory_publishes_nothing() {
    let mut w = World::new("symlinked");
    let elsewhere = w.dir.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::write(elsewhere.join("host-file.png"), "not the run's").unwrap();
    let repo = w.forge.join("custom-html");
    std::fs::create_dir_all(repo.join("tests")).unwrap();
    std::fs::write(
        repo.join("tests/test_swap.py"),
        format!(
            r#"import os, shutil

def test_swaps_the_artifacts_dir():
    a = os.environ["CCCI_ARTIFACTS"]
    shutil.rmtree(a, ignore_errors=True)
    os.symlink({e:?}, a)
"#,
            e = elsewhere.display().to_string()
        ),
    )
    .unwrap();
    world::git(&repo, &["add", "tests"]);
    world::git(&repo, &["commit", "-qm", "PR: sneaky tests"]);
    w.sha = world::git(&repo, &["rev-parse", "HEAD"]);
    w.write_config(&[("trusted_recipes", serde_json::json!(["custom-html"]))]);
    let env = w.params(16);
    let mut log = String::new();
    for stage in ["prepare", "install", "recipe-tests", "teardown"] {
        let s = w.stage(stage, &env);
        log.push_str(&s.stdout);
    }
    let sum = w.summary(16);
    let rt = sum.stage(Stage::RecipeTests).unwrap();
    assert_eq!(rt.status.as_str(), "passed", "{log}");
    assert_eq!(rt.artifacts, Vec::<String>::new());
    assert!(
        log.contains("is not a directory (a symlink?); none kept for recipe-tests"),
        "{log}"
    );
    assert_eq!(w.leftovers(), Vec::<String>::new());
}

/// A recipe that declares it has nothing to back up climbs past backup to level 4 with its own
/// tests; a declared skip that no longer applies (an earlier release exists) is flagged stale
/// and still climbed past.
#[test]
fn declared_skips_are_climbed_past_and_a_stale_one_is_flagged() {
    let tests = world::planted_tests(
        "declared",
        &[(
            "custom-html/ci.json",
            r#"{"health_path": "/", "env": {"LETS_ENCRYPT_ENV": ""},
                "skip": {"backup": "custom-html serves files the recipe ships; nothing to restore",
                         "upgrade": "no earlier release to upgrade from"}}"#,
        )],
    );
    let mut w = World::with_tests("declared", &tests);
    let repo = w.forge.join("custom-html");
    std::fs::create_dir_all(repo.join("tests")).unwrap();
    std::fs::write(
        repo.join("tests/test_served.py"),
        "def test_index_is_served(http):\n    assert http.get('/').status_code == 200\n",
    )
    .unwrap();
    world::git(&repo, &["add", "tests"]);
    world::git(&repo, &["commit", "-qm", "PR: the recipe's own test"]);
    w.sha = world::git(&repo, &["rev-parse", "HEAD"]);
    w.write_config(&[("trusted_recipes", serde_json::json!(["custom-html"]))]);
    let env = w.params(14);
    for stage in STAGES {
        let s = w.stage(stage, &env);
        assert_eq!(s.code, 0, "{stage}:\n{}", s.stdout);
    }
    let sum = w.summary(14);
    let skip = |n: &str| sum.stage(n.parse().unwrap()).unwrap().skip;
    assert_eq!(skip("backup"), Some(ccci::summary::Skip::Declared));
    assert_eq!(skip("upgrade"), Some(ccci::summary::Skip::Declared));
    assert!(
        sum.stage(Stage::Upgrade)
            .unwrap()
            .stale
            .starts_with("1.1.0+1.27.2 is an earlier published release now"),
        "{:?}",
        sum.stage(Stage::Upgrade).unwrap().stale
    );
    assert_eq!(
        sum.stage(Stage::RecipeTests).unwrap().status.as_str(),
        "passed"
    );
    assert_eq!(sum.level(), 4);
    assert_eq!(w.leftovers(), Vec::<String>::new());
    let _ = std::fs::remove_dir_all(&tests);
}

/// A landing page that shows one of the run's secrets is never screenshot; the card is made
/// without it, and the secret reaches neither the log nor the results.
#[test]
fn a_landing_page_showing_a_secret_is_never_screenshot() {
    let tests = world::planted_tests(
        "landingsecret",
        &[(
            "custom-html/ci.json",
            r#"{"health_path": "/", "env": {"LETS_ENCRYPT_ENV": ""}, "screenshot_path": "/leak.html"}"#,
        )],
    );
    let mut w = World::with_tests("landingsecret", &tests);
    // The PR makes the app publish its generated admin password.
    let repo = w.forge.join("custom-html");
    let compose = std::fs::read_to_string(repo.join("compose.yml")).unwrap();
    let leaky = compose.replacen(
        "    image: nginx:1.27.2\n",
        "    image: nginx:1.27.2\n    command: [\"sh\", \"-c\", \"cp /run/secrets/admin_password /usr/share/nginx/html/leak.html && exec nginx -g 'daemon off;'\"]\n",
        1,
    );
    assert_ne!(leaky, compose);
    std::fs::write(repo.join("compose.yml"), leaky).unwrap();
    world::git(&repo, &["commit", "-qam", "PR: publish the password"]);
    w.sha = world::git(&repo, &["rev-parse", "HEAD"]);
    let env = w.params(13);
    let mut log = String::new();
    for stage in ["prepare", "install"] {
        let s = w.stage(stage, &env);
        log.push_str(&s.stdout);
        assert_eq!(s.code, 0, "{stage}:\n{}", s.stdout);
    }
    let values: std::collections::BTreeMap<String, String> =
        serde_json::from_slice(&std::fs::read(w.dir.join("state/runs/13/values.json")).unwrap())
            .unwrap();
    let secret = values["secret_admin_password"].clone();
    let served = std::process::Command::new("curl")
        .args(["-sk", "--resolve"])
        .arg(format!("custom-html-13.{}:443:127.0.0.1", w.base_domain))
        .arg(format!(
            "https://custom-html-13.{}/leak.html",
            w.base_domain
        ))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&served.stdout).contains(&secret),
        "the planted page serves the secret"
    );
    let t = w.stage("teardown", &env);
    log.push_str(&t.stdout);
    assert!(
        log.contains("shows one of the run's values; no screenshot kept"),
        "{log}"
    );
    assert!(!w
        .dir
        .join("results/13/artifacts/install/landing.png")
        .exists());
    assert!(
        w.dir.join("results/13/artifacts/card.png").is_file(),
        "{log}"
    );
    assert!(!log.contains(&secret), "the secret reached the log");
    for e in walk(&w.dir.join("results")) {
        let bytes = std::fs::read(&e).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(&secret),
            "the secret reached {}",
            e.display()
        );
    }
    assert_eq!(w.leftovers(), Vec::<String>::new());
    let _ = std::fs::remove_dir_all(&tests);
}

/// A copy of the test tree with extra test files planted in the custom-html suite.
#[test]
fn a_failing_install_test_fails_the_stage_with_its_message() {
    let tests = world::planted_tests(
        "failing",
        &[(
            "custom-html/test_planted_failure.py",
            "import pytest\n\n@pytest.mark.install\ndef test_planted(http):\n    assert http.get('/').status_code == 418, 'planted failure: expected a teapot'\n",
        )],
    );
    let w = World::with_tests("failing", &tests);
    let env = w.params(8);
    assert_eq!(w.stage("prepare", &env).code, 0);
    let s = w.stage("install", &env);
    assert_eq!(s.code, 1, "tests failed → exit 1");
    // Later stages say why they did not run; teardown still cleans up.
    let up = w.stage("upgrade", &env);
    assert_eq!(up.code, 0);
    assert_eq!(w.stage("teardown", &env).code, 0);
    let sum = w.summary(8);
    let install = sum.stage(Stage::Install).unwrap();
    assert_eq!(install.status.as_str(), "failed");
    let f = install
        .failures
        .iter()
        .find(|f| f.name.ends_with("test_planted"))
        .expect("the failure is named");
    assert!(
        f.message.contains("planted failure: expected a teapot"),
        "{}",
        f.message
    );
    let upgrade = sum.stage(Stage::Upgrade).unwrap();
    assert_eq!(upgrade.status.as_str(), "skipped");
    assert_eq!(upgrade.reason, "install failed");
    assert_eq!(upgrade.skip, Some(ccci::summary::Skip::Blocked));
    assert_eq!(sum.level(), 0);
    assert_eq!(w.leftovers(), Vec::<String>::new());
    let _ = std::fs::remove_dir_all(&tests);
}

#[test]
fn a_recipe_with_no_earlier_release_skips_upgrade_with_the_reason() {
    let mut w = World::new("norelease");
    // The PR head is the first release itself: nothing was published before it.
    let repo = w.forge.join("custom-html");
    w.sha = world::git(&repo, &["rev-parse", "1.0.0+1.25.0^{commit}"]);
    let env = w.params(9);
    for stage in ["prepare", "install", "upgrade"] {
        assert_eq!(w.stage(stage, &env).code, 0, "{stage}");
    }
    let sum = w.summary(9);
    let up = sum.stage(Stage::Upgrade).unwrap();
    assert_eq!(up.status.as_str(), "skipped", "never reported passed");
    assert_eq!(
        up.reason,
        "custom-html has no earlier published release to upgrade from"
    );
    assert_eq!(sum.upgrade_base, "");
    // A fact of the recipe, not a gap: climbed past.
    assert_eq!(up.skip, Some(ccci::summary::Skip::Declared));
    assert_eq!(up.stale, "");
    assert_eq!(w.stage("teardown", &env).code, 0);
    assert_eq!(w.leftovers(), Vec::<String>::new());
}

/// The head that was tested is the head that was asked for: an upgrade whose in-place deploy
/// ran another checkout (the stand-in's `chaos-stale-checkout` fault deploys the commit before
/// the head, as an abra that silently redeployed the old checkout would) is an error naming both.
#[test]
fn an_upgrade_that_deployed_another_checkout_errors_with_both_commits() {
    let w = World::new("stalehead");
    let env = w.params(17);
    for stage in ["prepare", "install"] {
        assert_eq!(w.stage(stage, &env).code, 0, "{stage}");
    }
    std::fs::write(&w.faults, "chaos-stale-checkout\n").unwrap();
    let s = w.stage("upgrade", &env);
    std::fs::remove_file(&w.faults).unwrap();
    assert_eq!(s.code, 2, "{}", s.stdout);
    let parent = world::git(
        &w.forge.join("custom-html"),
        &["rev-parse", &format!("{}~1", w.sha)],
    );
    let sum = w.summary(17);
    let up = sum.stage(Stage::Upgrade).unwrap();
    assert_eq!(up.status.as_str(), "error");
    assert!(
        up.reason
            .contains(&format!("chaos-version={}", &parent[..8]))
            && up
                .reason
                .contains(&format!("not the PR head {}", &w.sha[..8])),
        "{}",
        up.reason
    );
    // The diagnostics of the red stage were kept before teardown.
    assert!(
        up.artifacts
            .iter()
            .any(|a| a == "artifacts/upgrade/diagnostics.txt"),
        "{:?}",
        up.artifacts
    );
    assert_eq!(w.stage("teardown", &env).code, 0);
    assert_eq!(w.leftovers(), Vec::<String>::new());
}

#[test]
fn a_failing_restore_fails_the_backup_stage() {
    let w = World::new("restorefail");
    let env = w.params(10);
    for stage in ["prepare", "install"] {
        assert_eq!(w.stage(stage, &env).code, 0, "{stage}");
    }
    std::fs::write(&w.faults, "restore-fails\n").unwrap();
    let s = w.stage("backup", &env);
    assert_eq!(s.code, 1, "{}", s.stdout);
    let b = w.summary(10);
    let b = b.stage(Stage::Backup).unwrap();
    assert_eq!(b.status.as_str(), "failed");
    assert!(b.reason.contains("restore"), "{}", b.reason);
    std::fs::remove_file(&w.faults).unwrap();
    assert_eq!(w.stage("teardown", &env).code, 0);
    assert_eq!(w.leftovers(), Vec::<String>::new());
}

#[test]
fn bad_parameters_are_refused_before_abra_runs() {
    let w = World::new("badparams");
    let good = w.params(11);
    let cases: &[(&str, &str, &str)] = &[
        ("RECIPE", "../../etc", "recipe name"),
        ("RECIPE", "hedgedoc-not-enrolled", "RECIPE"),
        ("REF", "main", "REF"),
        ("REF", "3f2e1d0", "REF"),
        ("PR", "abc", "PR"),
        ("SRC", "https://evil.example.org/custom-html.git", "SRC"),
        ("SRC", "file:///etc/../root", "SRC"),
    ];
    for (key, bad, needle) in cases {
        let env: Vec<(String, String)> = good
            .iter()
            .map(|(k, v)| {
                if k == key {
                    (k.clone(), bad.to_string())
                } else {
                    (k.clone(), v.clone())
                }
            })
            .collect();
        let s = w.stage("prepare", &env);
        assert_eq!(s.code, 2, "{key}={bad}");
        let first_error = s
            .stdout
            .lines()
            .find(|l| l.starts_with("ERROR"))
            .unwrap_or("");
        assert!(first_error.contains(needle), "{key}={bad}: {}", s.stdout);
        assert!(!s.stdout.contains("+ abra"), "abra ran for {key}={bad}");
    }
    let missing: Vec<(String, String)> = good.iter().filter(|(k, _)| k != "PR").cloned().collect();
    let s = w.stage("prepare", &missing);
    assert!(s.stdout.contains("PR is missing"), "{}", s.stdout);
    assert_eq!(w.leftovers(), Vec::<String>::new());
}

#[test]
fn two_concurrent_runs_of_the_same_sha_both_pass_apart() {
    let w = World::new("concurrent");
    let run = |build: u32| {
        let env = w.params(build);
        let mut codes = Vec::new();
        for stage in STAGES {
            codes.push((stage, w.stage(stage, &env).code));
        }
        codes
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| run(21));
        let b = s.spawn(|| run(22));
        (a.join().unwrap(), b.join().unwrap())
    });
    for (stage, code) in a.iter().chain(b.iter()) {
        assert_eq!(*code, 0, "{stage}");
    }
    assert_ne!(w.summary(21).domain, w.summary(22).domain);
    assert_eq!(w.leftovers(), Vec::<String>::new());
}

#[test]
fn planted_secrets_never_reach_the_log_or_the_results() {
    let tests = world::planted_tests(
        "secrets",
        &[
            (
                "custom-html/ci.json",
                r#"{"health_path": "/", "env": {"LETS_ENCRYPT_ENV": ""}, "values": ["admin_password"]}"#,
            ),
            (
                "custom-html/test_planted_secrets.py",
                r#"import base64, sys, pytest

@pytest.mark.install
def test_leaks(values):
    pw = values["admin_password"]
    gen = values["secret_admin_password"]
    # Whole, split across writes, base64 at an odd offset, and in the failure message.
    sys.stdout.write("whole " + pw + "\n")
    sys.stdout.write("split " + gen[:5]); sys.stdout.flush(); sys.stdout.write(gen[5:] + "\n")
    sys.stdout.write("b64 " + base64.b64encode(("x" + pw).encode()).decode() + "\n")
    assert False, "leaking " + pw + " and " + gen
"#,
            ),
        ],
    );
    let w = World::with_tests("secrets", &tests);
    let env = w.params(12);
    let mut log = String::new();
    for stage in ["prepare", "install"] {
        log.push_str(&w.stage(stage, &env).stdout);
    }
    let values: std::collections::BTreeMap<String, String> =
        serde_json::from_slice(&std::fs::read(w.dir.join("state/runs/12/values.json")).unwrap())
            .unwrap();
    let pw = &values["admin_password"];
    let gen = &values["secret_admin_password"];
    assert!(log.contains("[redacted:admin_password]"), "{log}");
    let mut results = String::new();
    for e in walk(&w.dir.join("results")) {
        results.push_str(&String::from_utf8_lossy(&std::fs::read(e).unwrap()));
    }
    assert!(
        results.contains("leaking [redacted:admin_password]"),
        "{results}"
    );
    for secret in [pw, gen] {
        assert!(!log.contains(secret.as_str()), "a secret reached the log");
        assert!(
            !results.contains(secret.as_str()),
            "a secret reached the results"
        );
        for form in stage_runner::redact::forms(secret) {
            assert!(!log.contains(&form), "a secret reached the log as {form:?}");
        }
    }
    assert_eq!(w.stage("teardown", &env).code, 0);
    let _ = std::fs::remove_dir_all(&tests);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().unwrap().is_dir() {
                out.extend(walk(&e.path()));
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

/// Runs `stage` under a shell as Drone's runner does, waits for `marker` in its output, then
/// SIGKILLs the shell only (drone-runner-exec engine/exec.go) — or SIGTERMs stage-runner.
fn interrupt(
    w: &World,
    build: u32,
    before: &[&str],
    stage: &str,
    fault: Option<&str>,
    marker: &str,
    kill_shell: bool,
) {
    use std::io::BufRead;
    use std::process::Stdio;
    use std::time::{Duration, Instant};
    let env = w.params(build);
    for s in before {
        assert_eq!(w.stage(s, &env).code, 0, "{s}");
    }
    if let Some(f) = fault {
        std::fs::write(&w.faults, format!("{f}\n")).unwrap();
    }
    let runner = env!("CARGO_BIN_EXE_cc-ci-stage-runner");
    let mut child = if kill_shell {
        let script = format!(
            "{runner} {stage} --config {}; echo after",
            w.config.display()
        );
        let c = w.command(stage, &env);
        let mut sh = std::process::Command::new("/bin/sh");
        sh.args(["-e", "-c", &script]).env_clear();
        for (k, v) in c.get_envs() {
            if let Some(v) = v {
                sh.env(k, v);
            }
        }
        sh.stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    } else {
        w.command(stage, &env)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line.clone());
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the marker line");
        if line.contains(marker) {
            break;
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    if fault.is_some() {
        std::fs::remove_file(&w.faults).unwrap();
    }
    if kill_shell {
        child.kill().unwrap();
    } else {
        let ok = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }
    let _ = child.wait();
    // stage-runner notices, tears down and exits: its end of the pipe closes.
    let started = Instant::now();
    while !reader.is_finished() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "stage-runner did not exit"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = reader.join().unwrap();
    assert!(log.contains("aborting"), "{log}");
    assert!(
        !log.contains("\nafter"),
        "the shell was killed before it went on"
    );
    assert_eq!(
        w.stacks(),
        Vec::<String>::new(),
        "the app is gone before the janitor: {log}"
    );
    w.janitor();
    assert_eq!(w.leftovers(), Vec::<String>::new());
}

#[test]
fn killing_the_step_shell_during_prepare_leaves_nothing() {
    let w = World::new("kill-prepare");
    interrupt(
        &w,
        31,
        &[],
        "prepare",
        Some("hang:recipe-fetch"),
        "+ abra recipe fetch",
        true,
    );
}

#[test]
fn killing_the_step_shell_during_install_tests_leaves_nothing() {
    let w = World::new("kill-install");
    interrupt(
        &w,
        32,
        &["prepare"],
        "install",
        Some("hang:run"),
        "phase install",
        true,
    );
}

#[test]
fn killing_the_step_shell_during_upgrade_leaves_nothing() {
    let w = World::new("kill-upgrade");
    interrupt(
        &w,
        33,
        &["prepare", "install"],
        "upgrade",
        None,
        "phase pre_upgrade",
        true,
    );
}

#[test]
fn killing_the_step_shell_during_backup_leaves_nothing() {
    let w = World::new("kill-backup");
    interrupt(
        &w,
        34,
        &["prepare", "install"],
        "backup",
        Some("hang:backup"),
        "+ abra app backup create",
        true,
    );
}

#[test]
fn killing_the_step_shell_during_teardown_leaves_nothing() {
    let w = World::new("kill-teardown");
    interrupt(
        &w,
        35,
        &["prepare", "install"],
        "teardown",
        Some("hang:volume"),
        "+ abra app volume remove",
        true,
    );
}

#[test]
fn sigterm_of_stage_runner_tears_the_run_down() {
    let w = World::new("sigterm");
    interrupt(
        &w,
        36,
        &["prepare"],
        "install",
        Some("hang:run"),
        "phase install",
        false,
    );
}

#[test]
fn local_runs_every_stage_on_your_own_server_and_cleans_up() {
    let w = World::new("local");
    let out = w
        .command("local", &[])
        .args(["custom-html", "--ref", &w.sha, "--src", &w.src()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    for stage in ["install", "upgrade", "backup", "recipe-tests", "teardown"] {
        assert!(
            text.contains(&format!("stage {stage}: ")),
            "{stage} did not run:\n{text}"
        );
    }
    let results: Vec<_> = std::fs::read_dir(w.dir.join("results"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(results.len(), 1);
    assert!(results[0].starts_with('l'), "a local run id: {results:?}");
    assert_eq!(w.leftovers(), Vec::<String>::new());
}

/// `local --keep`: a run that did not pass leaves its app up for a look, says where and how
/// to remove it, and that command removes it.
#[test]
fn local_keep_leaves_a_red_run_s_app_up_and_says_how_to_remove_it() {
    let w = World::new("local-keep");
    std::fs::write(&w.faults, "backup-fails\n").unwrap();
    let out = w
        .command("local", &[])
        .args(["custom-html", "--ref", &w.sha, "--src", &w.src(), "--keep"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("stage backup: failed"), "{text}");
    assert!(!text.contains("stage teardown: "), "{text}");
    let kept = text
        .lines()
        .find(|l| l.contains("kept: the app is up at https://custom-html-l"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(!w.stacks().is_empty(), "the app is still up");
    let cmd = kept.split("remove it with: ").nth(1).unwrap();
    let args: Vec<&str> = cmd.split_whitespace().collect();
    assert_eq!(args[..2], ["cc-ci-stage-runner", "janitor"], "{cmd}");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let j = w.command("janitor", &[]).args(&args[4..]).output().unwrap();
    assert!(j.status.success(), "{}", String::from_utf8_lossy(&j.stdout));
    assert_eq!(w.leftovers(), Vec::<String>::new());
}

#[test]
fn the_janitor_never_touches_apps_it_did_not_create() {
    let w = World::new("janitor-foreign");
    // The proxy, Drone, the dashboard: apps on the same server that no run created.
    let abra = |args: &[&str]| {
        let out = std::process::Command::new(world::bin_dir().join("abra"))
            .args(args)
            .env("ABRA_DIR", &w.host_abra)
            .env("DOCKER_HOST", &w.ground.docker_host)
            .env("STANDIN_ABRA_CATALOGUE", &w.catalogue)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "abra {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let dashboard = format!("dashboard.{}", w.base_domain);
    abra(&["recipe", "fetch", "custom-html"]);
    abra(&[
        "app",
        "new",
        "custom-html",
        "--server",
        "default",
        "--domain",
        &dashboard,
    ]);
    abra(&["app", "secret", "generate", &dashboard, "--all"]);
    abra(&["app", "deploy", &dashboard]);
    w.janitor();
    assert_eq!(
        w.stacks(),
        vec![format!("service:{}_app", dashboard.replace('.', "_"))],
        "the janitor left it alone"
    );
    abra(&["app", "undeploy", &dashboard]);
    abra(&["app", "volume", "remove", "--force", &dashboard]);
    abra(&["app", "secret", "remove", "--all", &dashboard]);
}

#[test]
fn a_recipe_s_own_tests_run_without_ci_credentials() {
    let mut w = World::new("own-tests");
    let repo = w.forge.join("custom-html");
    std::fs::create_dir_all(repo.join("tests")).unwrap();
    std::fs::write(
        repo.join("tests/test_own.py"),
        r#"import os

def test_no_ci_credentials_and_the_app_answers(http):
    assert not [k for k in os.environ if k.startswith("DRONE") or k in ("RECIPE", "REF", "SRC")]
    assert http.get("/").status_code == 200
"#,
    )
    .unwrap();
    world::git(&repo, &["add", "tests"]);
    world::git(&repo, &["commit", "-qm", "PR: the recipe's own tests"]);
    w.sha = world::git(&repo, &["rev-parse", "HEAD"]);
    w.write_config(&[("trusted_recipes", serde_json::json!(["custom-html"]))]);
    // Drone's environment, credentials and all, as the runner would give the step.
    let mut env = w.params(13);
    env.push(("DRONE_TOKEN".into(), "not-for-recipe-tests".into()));
    for stage in ["prepare", "install", "recipe-tests", "teardown"] {
        let s = w.stage(stage, &env);
        assert_eq!(s.code, 0, "{stage}: {}", s.stdout);
    }
    let sum = w.summary(13);
    let rt = sum.stage(Stage::RecipeTests).unwrap();
    assert_eq!(rt.status.as_str(), "passed", "{}", rt.reason);
    assert_eq!(rt.tests.passed, 1);
    assert_eq!(w.leftovers(), Vec::<String>::new());
}

/// A PR whose recipe does not deploy — an image tag that does not exist, a container that
/// crashes, a healthcheck that never passes — fails install (exit 1) with the engine's reason,
/// once the recipe's own timeout label has run out; abra hanging is an error of the run (exit
/// 2) within the command bound. Teardown leaves nothing on the engine either way.
#[test]
fn a_recipe_that_does_not_deploy_fails_install_with_the_engine_s_reason() {
    let w = World::new("nodeploy");
    w.write_config(&[("command_timeout_secs", serde_json::json!(20))]);
    let repo = w.forge.join("custom-html");
    let good = w.sha.clone();
    // (build, how the PR breaks compose.yml, status, what the reason must say)
    let cases: [(u32, &str, &str, &str, &str); 4] = [
        (
            40,
            "image: nginx:1.27.2",
            "image: nginx:9.9.9",
            "failed",
            "No such image: nginx:9.9.9",
        ),
        (
            41,
            "    networks:\n",
            "    entrypoint: [\"sh\", \"-c\", \"echo crashing; exit 3\"]\n    networks:\n",
            "failed",
            "non-zero exit (3)",
        ),
        (
            42,
            "\"curl\", \"-f\", \"http://localhost\"]",
            "\"false\"]",
            "failed",
            "not converged within 8 s",
        ),
        (43, "", "", "error", "20 s"),
    ];
    for (build, from, to, status, expect) in cases {
        world::git(
            &repo,
            &["checkout", "-q", "-B", &format!("break-{build}"), &good],
        );
        let sha = if from.is_empty() {
            std::fs::write(&w.faults, "hang:deploy\n").unwrap();
            good.clone()
        } else {
            let compose = std::fs::read_to_string(repo.join("compose.yml")).unwrap();
            assert!(compose.contains(from), "{from}");
            // The recipe's own timeout label bounds abra's wait (`app new` takes the .env from
            // the release, so the PR changes the label's default).
            let compose = compose
                .replacen(from, to, 1)
                .replace("${TIMEOUT:-120}", "${TIMEOUT:-8}");
            std::fs::write(repo.join("compose.yml"), compose).unwrap();
            world::git(
                &repo,
                &["commit", "-qam", &format!("PR: break it ({build})")],
            );
            world::git(&repo, &["rev-parse", "HEAD"])
        };
        let mut env = w.params(build);
        env.iter_mut().find(|(k, _)| k == "REF").unwrap().1 = sha;
        assert_eq!(w.stage("prepare", &env).code, 0, "{build}: prepare");
        let s = w.stage("install", &env);
        let _ = std::fs::remove_file(&w.faults);
        assert_eq!(
            s.code,
            if status == "failed" { 1 } else { 2 },
            "{build}: {}",
            s.stdout
        );
        let sum = w.summary(build);
        let install = sum.stage(Stage::Install).unwrap();
        assert_eq!(
            install.status.as_str(),
            status,
            "{build}: {}",
            install.reason
        );
        assert!(
            install.reason.contains(expect),
            "{build}: reason {:?} should say {expect:?}\n{}",
            install.reason,
            s.stdout
        );
        assert_eq!(w.stage("teardown", &env).code, 0, "{build}: teardown");
        assert_eq!(w.leftovers(), Vec::<String>::new(), "{build}");
    }
}

/// A secret version already on the engine (left by something else under the app's name):
/// abra's `secret generate` meets docker's AlreadyExists. Not the recipe's fault, so the stage
/// is an error of the run (exit 2), and the reason is docker's own.
#[test]
fn a_secret_version_already_on_the_engine_errors_install_with_docker_s_reason() {
    let w = World::new("secretexists");
    let env = w.params(45);
    assert_eq!(w.stage("prepare", &env).code, 0);
    let stack = standins::abra::app::stack_name(&format!("custom-html-45.{}", w.base_domain));
    let planted = format!("{stack}_admin_password_v1");
    standins::abra::docker::ok_in(
        &["secret", "create", &planted, "-"],
        standins::abra::docker::Input::Bytes(b"planted"),
    )
    .unwrap();
    let s = w.stage("install", &env);
    assert_eq!(s.code, 2, "{}", s.stdout);
    let install = w.summary(45).stage(Stage::Install).cloned().unwrap();
    assert_eq!(install.status.as_str(), "error");
    assert!(
        install.reason.contains(&planted) && install.reason.contains("already exists"),
        "reason {:?}",
        install.reason
    );
    assert_eq!(w.stage("teardown", &env).code, 0);
    assert_eq!(w.leftovers(), Vec::<String>::new());
}

/// The processes marked as run `build`'s of world `w` (`CCCI_RUN_PROCESS` names the run's
/// directory), found as the janitor finds them.
fn marked(w: &World, build: u32) -> Vec<u32> {
    let want = format!(
        "CCCI_RUN_PROCESS={}",
        w.dir.join(format!("state/runs/{build}")).display()
    );
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|p| {
            let pid: u32 = p.file_name().to_str()?.parse().ok()?;
            let env = std::fs::read(p.path().join("environ")).ok()?;
            env.split(|b| *b == 0)
                .any(|kv| kv == want.as_bytes())
                .then_some(pid)
        })
        .collect()
}

/// stage-runner SIGKILLed mid-test (an OOM kill; no teardown of its own): its pytest and what
/// pytest started run on, writing. The janitor stops every one of them, and tears the run down.
#[test]
fn the_janitor_stops_what_a_killed_stage_runner_left_running() {
    use std::io::BufRead;

    let tests = world::planted_tests(
        "orphans",
        &[(
            "custom-html/test_zz_lingers.py",
            "import subprocess, time\nimport pytest\n\n\n@pytest.mark.install\ndef test_lingers():\n    subprocess.Popen(['sleep', '600'])\n    print('LINGERING', flush=True)\n    time.sleep(600)\n",
        )],
    );
    let w = World::with_tests("orphans", &tests);
    let env = w.params(31);
    assert_eq!(w.stage("prepare", &env).code, 0);
    let mut child = w
        .command("install", &env)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Drain the log so stage-runner never blocks on it.
    let out = std::io::BufReader::new(child.stdout.take().unwrap());
    std::thread::spawn(move || out.lines().map_while(Result::ok).count());
    let comm = |pid: &u32| std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    w.wait_until(
        "the test's sleep running",
        std::time::Duration::from_secs(120),
        || marked(&w, 31).iter().any(|p| comm(p).trim() == "sleep"),
    );
    child.kill().unwrap();
    let _ = child.wait();
    std::thread::sleep(std::time::Duration::from_secs(1));
    let left = marked(&w, 31);
    assert!(
        left.len() >= 2,
        "pytest and sleep outlive a SIGKILLed stage-runner: {left:?}"
    );
    w.janitor();
    assert_eq!(
        marked(&w, 31),
        Vec::<u32>::new(),
        "nothing of the run still runs"
    );
    assert_eq!(w.leftovers(), Vec::<String>::new());
    let _ = std::fs::remove_dir_all(&tests);
}
