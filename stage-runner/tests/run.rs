//! The real stage-runner binary, stage by stage as Drone's exec runner calls it, against the
//! stand-in abra, swarm and Traefik, with the real Python suites and Chromium.

mod world;

use world::World;

const STAGES: [&str; 6] = [
    "prepare",
    "install",
    "upgrade",
    "backup",
    "recipe-tests",
    "teardown",
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
    let status = |n: &str| sum.stage(n).map(|s| s.status.as_str()).unwrap_or("missing");
    assert_eq!(status("prepare"), "passed");
    assert_eq!(status("install"), "passed");
    assert_eq!(status("upgrade"), "passed");
    assert_eq!(status("backup"), "passed");
    assert_eq!(status("recipe-tests"), "skipped");
    assert!(sum
        .stage("recipe-tests")
        .unwrap()
        .reason
        .contains("no tests/"));
    assert_eq!(status("teardown"), "passed");
    assert!(sum.stage("install").unwrap().tests.passed >= 3);
    assert_eq!(sum.upgrade_base, "1.1.0+1.27.2");
    assert_eq!(sum.version, "1.1.0+1.27.2");
    assert!(
        sum.domain.starts_with("custom-html-7.ci.test"),
        "{}",
        sum.domain
    );
    assert!(sum.finished > 0);
    assert!(
        !sum.stage("install").unwrap().artifacts.is_empty(),
        "the install tests keep a screenshot"
    );
    assert_eq!(w.leftovers(), Vec::<String>::new());
}
