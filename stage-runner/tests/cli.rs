//! The binary's own command line: `--check-config` says whether a config would load, before
//! any stage runs (the NixOS module's rendered config is checked this way on a host).

use std::process::Command;

fn check(config: &serde_json::Value, extra: &[&str]) -> (bool, String) {
    // Tests run at once: each call its own directory.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("sr-cli-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("c{}.json", extra.len()));
    std::fs::write(&path, serde_json::to_vec(config).unwrap()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cc-ci-stage-runner"))
        .arg("--check-config")
        .arg("--config")
        .arg(&path)
        .args(extra)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn check_config_accepts_a_good_config_and_names_what_is_wrong_with_a_bad_one() {
    let good = serde_json::json!({
        "base_domain": "ci.coopcloud.tech",
        "recipes": ["custom-html"],
        "state_dir": "/var/lib/cc-ci-runner/state",
        "results_dir": "/var/lib/cc-ci-results",
        "tests_dir": concat!(env!("CARGO_MANIFEST_DIR"), "/../tests"),
        "abra_dir": std::env::temp_dir(),
        "allowed_src": ["https://git.coopcloud.tech/"],
        "resolve": null,
    });
    let (ok, out) = check(&good, &[]);
    assert!(ok, "{out}");
    assert!(out.contains("is valid"), "{out}");

    let mut bad = good.clone();
    bad["base_domain"] = "not a domain".into();
    let (ok, out) = check(&bad, &[]);
    assert!(!ok);
    assert!(
        out.contains("base_domain") && out.contains("not a domain"),
        "{out}"
    );

    let mut empty = good.clone();
    empty["allowed_src"] = serde_json::json!([]);
    let (ok, out) = check(&empty, &[]);
    assert!(!ok);
    assert!(out.contains("allowed_src is empty"), "{out}");

    let mut odd = good.clone();
    odd["recipes"] = serde_json::json!(["custom-html", "../etc"]);
    let (ok, out) = check(&odd, &[]);
    assert!(!ok);
    assert!(out.contains("recipes: \"../etc\""), "{out}");

    let mut unlisted = good.clone();
    unlisted.as_object_mut().unwrap().remove("recipes");
    let (ok, out) = check(&unlisted, &[]);
    assert!(!ok);
    assert!(out.contains("missing field `recipes`"), "{out}");

    // What would fail at the first stage fails here, saying why.
    for (key, value, says) in [
        (
            "deploy_timeout_secs",
            serde_json::json!(0),
            "deploy_timeout_secs must be at least 1 second",
        ),
        (
            "janitor_max_age_secs",
            serde_json::json!(0),
            "janitor_max_age_secs must be at least 1 second",
        ),
        (
            "run_deadline_secs",
            serde_json::json!(0),
            "run_deadline_secs must be at least 1 second",
        ),
        (
            "tests_dir",
            serde_json::json!("/nonexistent/tests"),
            "tests_dir /nonexistent/tests is not a directory",
        ),
        (
            "abra_dir",
            serde_json::json!("/nonexistent/abra"),
            "abra_dir /nonexistent/abra is not a directory",
        ),
        (
            "results_url",
            serde_json::json!("https://r.example.org"),
            "results_url is set but results_token_file is not",
        ),
    ] {
        let mut bad = good.clone();
        bad[key] = value;
        let (ok, out) = check(&bad, &[]);
        assert!(!ok, "{key}: accepted");
        assert!(out.contains(says), "{key}: {out}");
    }

    // Overrides are checked too.
    let (ok, out) = check(&good, &["--scheme", "ftp"]);
    assert!(!ok);
    assert!(out.contains("scheme must be http or https"), "{out}");
}

/// `--help`'s example config is one the binary accepts, and it names every setting there is:
/// an operator can start from it.
#[test]
fn the_help_s_example_config_is_valid_and_complete() {
    let help = Command::new(env!("CARGO_BIN_EXE_cc-ci-stage-runner"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    let start = help.find("{\"server\"").expect("an example config");
    let mut depth = 0;
    let end = start
        + help[start..]
            .char_indices()
            .find(|(_, c)| {
                depth += match c {
                    '{' => 1,
                    '}' => -1,
                    _ => 0,
                };
                depth == 0
            })
            .unwrap()
            .0
        + 1;
    let example: serde_json::Value = serde_json::from_str(&help[start..end]).unwrap();
    // Its directories are a host's; here, ones that exist stand in for them.
    let mut here = example.clone();
    here["tests_dir"] = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests").into();
    here["abra_dir"] = std::env::temp_dir().display().to_string().into();
    let (ok, out) = check(&here, &[]);
    assert!(ok, "{out}");
    let cfg: stage_runner::config::Config = serde_json::from_value(example.clone()).unwrap();
    for key in serde_json::to_value(&cfg)
        .unwrap()
        .as_object()
        .unwrap()
        .keys()
    {
        assert!(example.get(key).is_some(), "--help's example lacks {key}");
    }
}

#[test]
fn an_unknown_stage_is_named_with_the_stages_there_are() {
    let dir = std::env::temp_dir().join(format!("sr-cli-stage-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("c.json");
    let cfg = serde_json::json!({
        "base_domain": "ci.coopcloud.tech",
        "recipes": ["custom-html"],
        "state_dir": dir.join("state"),
        "results_dir": dir.join("results"),
        "tests_dir": concat!(env!("CARGO_MANIFEST_DIR"), "/../tests"),
        "abra_dir": dir,
        "allowed_src": ["https://git.coopcloud.tech/"],
    });
    std::fs::write(&config, serde_json::to_vec(&cfg).unwrap()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cc-ci-stage-runner"))
        .arg("deploy")
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(
        stdout.contains("ERROR stage-runner: unknown stage \"deploy\": the stages are prepare, install, upgrade, backup, recipe-tests, lint, teardown"),
        "{stdout}"
    );
    // No stage to speak for, so no verdict line.
    assert!(!stdout.contains("cc-ci verdict:"), "{stdout}");
}
