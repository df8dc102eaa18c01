//! The binary's own command line: `--check-config` says whether a config would load, before
//! any stage runs (the NixOS module's rendered config is checked this way on a host).

use std::process::Command;

fn check(config: &serde_json::Value, extra: &[&str]) -> (bool, String) {
    let dir = std::env::temp_dir().join(format!("sr-cli-{}", std::process::id()));
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
        "tests_dir": "/etc/cc-ci/tests",
        "abra_dir": "/var/lib/cc-ci-runner/abra",
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

    // Overrides are checked too.
    let (ok, out) = check(&good, &["--scheme", "ftp"]);
    assert!(!ok);
    assert!(out.contains("scheme must be http or https"), "{out}");
}
