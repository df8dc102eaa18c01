//! `ccci::drone::DroneClient` against the stand-in Drone over real HTTP: every route it uses,
//! and every fault the stand-in can inject (status, hang, malformed JSON, truncated body,
//! delay), with errors that name the route and status and never the token.

use std::time::{Duration, Instant};

use ccci::drone::{BuildStatus, DroneClient};
use ccci::secret::Secret;
use standins::drone::{Commit, ConfigSource, Drone, DroneOpts, NewRepo};
use standins::http::{Fault, FaultRule};

const TOKEN: &str = "s3cr3t-drone-token-xyz";
const SHA: &str = "fedcba9876543210fedcba9876543210fedcba98";
const WAIT: Duration = Duration::from_secs(30);

const YAML: &str = "kind: pipeline\ntype: exec\nname: test\nclone:\n  disable: true\ntrigger:\n  branch: [main]\nsteps:\n- name: run\n  commands:\n  - echo \"job=$JOB\"\n";

fn setup(capacity: usize) -> (Drone, std::path::PathBuf) {
    let root = std::env::temp_dir().join(format!(
        "ccci-drone-client-{}-{}",
        std::process::id(),
        standins::runner::random_id(6)
    ));
    std::fs::create_dir_all(&root).unwrap();
    let drone = Drone::start(DroneOpts {
        runner_capacity: capacity,
        runner_root: Some(root.clone()),
        ..DroneOpts::default()
    })
    .unwrap();
    drone.create_user("ci-bot", false, Some(TOKEN)).unwrap();
    drone
        .create_repo(NewRepo::new(
            "ci-bot",
            "app",
            ConfigSource::Inline { yaml: YAML.into() },
        ))
        .unwrap();
    drone.set_branch("ci-bot", "app", "main", SHA).unwrap();
    drone.set_branch("ci-bot", "app", "other", SHA).unwrap();
    drone
        .add_commit(
            "ci-bot",
            "app",
            Commit {
                sha: SHA.into(),
                message: "m".into(),
                ..Commit::default()
            },
        )
        .unwrap();
    (drone, root)
}

fn client(d: &Drone, timeout: Duration) -> DroneClient {
    DroneClient::new(&d.url(), Secret::new(TOKEN), timeout)
}

fn assert_clean(err: &anyhow::Error, route: &str, status: Option<u16>) -> String {
    let msg = format!("{err:#}");
    assert!(
        msg.contains(route),
        "error does not name the route {route}: {msg}"
    );
    if let Some(s) = status {
        assert!(
            msg.contains(&format!("HTTP {s}")),
            "error does not name HTTP {s}: {msg}"
        );
    }
    assert!(!msg.contains(TOKEN), "error leaks the token: {msg}");
    msg
}

#[test]
fn every_route_against_the_stand_in() {
    let (d, root) = setup(2);
    let c = client(&d, Duration::from_secs(10));
    let b = c
        .create_build(
            "ci-bot",
            "app",
            Some("main"),
            &[("JOB", "a b&c"), ("Mixed_Case", "1")],
        )
        .unwrap()
        .expect("a build");
    assert_eq!(b.event, "custom");
    assert_eq!(b.params["JOB"], "a b&c");
    assert_eq!(b.params["Mixed_Case"], "1");
    assert_eq!(b.reference, "refs/heads/main");
    // No pipeline for branch `other`: Drone answers null.
    assert!(c
        .create_build("ci-bot", "app", Some("other"), &[])
        .unwrap()
        .is_none());
    // The token only ever travels in the Authorization header.
    for r in d.requests() {
        assert!(!r.request.path.contains(TOKEN));
        assert!(r
            .request
            .query
            .iter()
            .all(|(k, v)| k != "access_token" && !v.contains(TOKEN)));
        assert_eq!(
            r.request.header("Authorization"),
            Some(format!("Bearer {TOKEN}").as_str())
        );
    }
    let done = d.wait_build("ci-bot", "app", b.number, WAIT).unwrap();
    assert_eq!(done.status, "success");
    let got = c.get_build("ci-bot", "app", b.number).unwrap();
    assert_eq!(got.stages.len(), 1);
    assert_eq!(got.stages[0].steps[0].stage_id, got.stages[0].id);
    assert!(got.is_done());
    let log = c
        .step_log("ci-bot", "app", b.number, 1, 1)
        .unwrap()
        .expect("a log");
    assert!(log.iter().any(|l| l.out == "job=a b&c\n"), "{log:?}");
    assert!(c
        .step_log("ci-bot", "app", b.number, 1, 7)
        .unwrap()
        .is_none());
    let r = c
        .create_build("ci-bot", "app", None, &[])
        .unwrap()
        .expect("a build");
    let k = c.cancel("ci-bot", "app", r.number).unwrap();
    assert!(
        matches!(k.status, BuildStatus::Killed | BuildStatus::Success),
        "{k:?}"
    );
    d.wait_idle(WAIT).unwrap();
    // Paging: newest first; builds_since returns oldest first.
    for _ in 0..3 {
        c.create_build("ci-bot", "app", None, &[]).unwrap();
    }
    let page = c.list_builds("ci-bot", "app", 1, 2).unwrap();
    assert_eq!(
        page.iter().map(|b| b.number).collect::<Vec<_>>(),
        vec![5, 4]
    );
    assert!(page.iter().all(|b| b.stages.is_empty()));
    let since = c.builds_since("ci-bot", "app", 2, 3).unwrap();
    assert_eq!(
        since.iter().map(|b| b.number).collect::<Vec<_>>(),
        vec![3, 4, 5]
    );
    // Reserved names are refused before anything is sent.
    assert!(c
        .create_build("ci-bot", "app", None, &[("branch", "x")])
        .is_err());
    // Unknown repo: the error names the route and 404.
    let e = c.get_build("ci-bot", "nope", 1).unwrap_err();
    assert_clean(&e, "GET /api/repos/ci-bot/nope/builds/1", Some(404));
    d.wait_idle(WAIT).unwrap();
    let _ = std::fs::remove_dir_all(root);
}

#[test]
fn faults_give_clean_errors() {
    let (d, root) = setup(0);
    let c = client(&d, Duration::from_millis(1500));
    let builds = "/api/repos/*/*/builds";

    d.inject(
        FaultRule::new(builds, Fault::Status { status: 500 })
            .method("POST")
            .times(1),
    );
    let e = c
        .create_build("ci-bot", "app", None, &[("JOB", "1")])
        .unwrap_err();
    assert_clean(&e, "drone POST /api/repos/ci-bot/app/builds", Some(500));

    d.inject(FaultRule::new(builds, Fault::MalformedJson).times(1));
    let e = c.list_builds("ci-bot", "app", 1, 10).unwrap_err();
    let msg = assert_clean(&e, "GET /api/repos/ci-bot/app/builds", Some(200));
    assert!(msg.contains("malformed JSON"), "{msg}");

    c.create_build("ci-bot", "app", None, &[]).unwrap().unwrap();
    d.inject(FaultRule::new("/api/repos/*/*/builds/*", Fault::Truncated).times(1));
    let e = c.get_build("ci-bot", "app", 1).unwrap_err();
    assert_clean(&e, "GET /api/repos/ci-bot/app/builds/1", None);

    d.inject(FaultRule::new("/api/repos/*/*/builds/*", Fault::Hang).times(1));
    let t0 = Instant::now();
    let e = c.get_build("ci-bot", "app", 1).unwrap_err();
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "hang not bounded by the timeout"
    );
    let msg = assert_clean(&e, "GET /api/repos/ci-bot/app/builds/1", None);
    assert!(msg.contains("timed out"), "{msg}");

    d.inject(FaultRule::new("/api/repos/*/*/builds/*", Fault::Delay { ms: 200 }).times(1));
    assert_eq!(c.get_build("ci-bot", "app", 1).unwrap().number, 1);
    d.inject(FaultRule::new("/api/repos/*/*/builds/*", Fault::Delay { ms: 3000 }).times(1));
    let e = c.get_build("ci-bot", "app", 1).unwrap_err();
    assert_clean(&e, "GET /api/repos/ci-bot/app/builds/1", None);

    d.inject(
        FaultRule::new(
            "/api/repos/*/*/builds/*/logs/*/*",
            Fault::Status { status: 503 },
        )
        .times(1),
    );
    let e = c.step_log("ci-bot", "app", 1, 1, 1).unwrap_err();
    assert_clean(&e, "GET /api/repos/ci-bot/app/builds/1/logs/1/1", Some(503));

    // A wrong token: Drone treats it as a guest, and writing needs a login.
    let bad = DroneClient::new(
        &d.url(),
        Secret::new("wrong-token-value"),
        Duration::from_secs(5),
    );
    let e = bad.create_build("ci-bot", "app", None, &[]).unwrap_err();
    let msg = assert_clean(&e, "POST /api/repos/ci-bot/app/builds", Some(401));
    assert!(!msg.contains("wrong-token-value"));
    let _ = std::fs::remove_dir_all(root);
}
