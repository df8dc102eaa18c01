//! The stand-in Drone server's API quirks, over real HTTP: null on no matching pipeline,
//! 404-not-403, token sources, params from the query only, paging, cancel, restart, logs,
//! and the stage status lifecycle. Each test cites the upstream file it pins.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;
use standins::drone::{Commit, ConfigSource, Drone, DroneOpts, NewRepo, Perm, RunnerPatch};
use standins::http::{Fault, FaultRule};

const ADMIN: &str = "admin-token";
const BOT: &str = "bot-token";
const READER: &str = "reader-token";
const SHA: &str = "89abcdef0123456789abcdef0123456789abcdef";
const WAIT: Duration = Duration::from_secs(30);

const SIMPLE: &str = "kind: pipeline\ntype: exec\nname: test\nclone:\n  disable: true\ntrigger:\n  event: [custom]\nsteps:\n- name: run\n  commands: [\"echo hello\"]\n";

struct T {
    drone: Drone,
    dir: PathBuf,
}

impl Drop for T {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn setup(tag: &str, yaml: &str, capacity: usize) -> T {
    let dir = std::env::temp_dir().join(format!(
        "standin-drone-{tag}-{}-{}",
        std::process::id(),
        standins::runner::random_id(6)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let drone = Drone::start(DroneOpts {
        runner_capacity: capacity,
        runner_root: Some(dir.clone()),
        ..DroneOpts::default()
    })
    .unwrap();
    drone.create_user("admin", true, Some(ADMIN)).unwrap();
    drone.create_user("ci-bot", false, Some(BOT)).unwrap();
    drone.create_user("reader", false, Some(READER)).unwrap();
    let mut repo = NewRepo::new("ci-bot", "app", ConfigSource::Inline { yaml: yaml.into() });
    repo.visibility = "private".into();
    drone.create_repo(repo).unwrap();
    drone
        .set_permission(
            "ci-bot",
            "app",
            "reader",
            Perm {
                read: true,
                write: false,
                admin: false,
            },
        )
        .unwrap();
    drone.set_branch("ci-bot", "app", "main", SHA).unwrap();
    drone
        .add_commit(
            "ci-bot",
            "app",
            Commit {
                sha: SHA.into(),
                message: "update README".into(),
                author_login: "octocat".into(),
                author_name: "The Octocat".into(),
                author_email: "octocat@example.com".into(),
                author_avatar: String::new(),
            },
        )
        .unwrap();
    T { drone, dir }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into()
}

/// One request; `token` goes in a Bearer header. Returns status, headers, body.
fn call(
    t: &T,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, Vec<(String, String)>, String) {
    let url = format!("{}{path}", t.drone.url());
    let a = agent();
    let auth = token.map(|t| format!("Bearer {t}"));
    let resp = match method {
        "GET" | "DELETE" => {
            let mut r = if method == "GET" {
                a.get(&url)
            } else {
                a.delete(&url)
            };
            if let Some(h) = &auth {
                r = r.header("Authorization", h);
            }
            r.call()
        }
        _ => {
            let mut r = a.post(&url);
            if let Some(h) = &auth {
                r = r.header("Authorization", h);
            }
            match body {
                Some(b) => r.header("Content-Type", "application/json").send(b),
                None => r.send_empty(),
            }
        }
    };
    let mut resp = resp.unwrap();
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    (status, headers, resp.body_mut().read_to_string().unwrap())
}

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("{e}: {s}"))
}

fn create(t: &T, query: &str) -> Value {
    let (s, _, b) = call(
        t,
        "POST",
        &format!("/api/repos/ci-bot/app/builds?{query}"),
        Some(BOT),
        None,
    );
    assert_eq!(s, 200, "{b}");
    json(&b)
}

// Mirrors harness/drone trigger/trigger.go `Trigger` (`len(matched) == 0` → `nil, nil`) and
// builds/create.go `render.JSON(w, result, 200)`: the body is `null`.
#[test]
fn no_matching_pipeline_answers_200_null() {
    let yaml = "kind: pipeline\ntype: exec\nname: pushes\ntrigger:\n  event: [push]\nsteps:\n- name: a\n  commands: [\"true\"]\n---\nkind: pipeline\ntype: exec\nname: not-main\ntrigger:\n  branch:\n    exclude: [main]\nsteps:\n- name: a\n  commands: [\"true\"]\n";
    let t = setup("null", yaml, 0);
    let (s, _, body) = call(&t, "POST", "/api/repos/ci-bot/app/builds", Some(BOT), None);
    assert_eq!((s, body.as_str()), (200, "null"));
    // Nothing was numbered: the next real build is #1.
    t.drone.set_config("ci-bot", "app", SIMPLE).unwrap();
    assert_eq!(create(&t, "")["number"], 1);
}

// Mirrors harness/drone handler/api/acl/check.go `CheckAccess` and acl/repo.go
// `InjectRepository`, session/session.go `extractToken`.
#[test]
fn auth_rules_401_404_403_and_token_sources() {
    let t = setup("auth", SIMPLE, 0);
    let path = "/api/repos/ci-bot/app/builds";
    // No token: 401 on write, and on reading a private repo.
    assert_eq!(call(&t, "POST", path, None, None).0, 401);
    assert_eq!(call(&t, "GET", path, None, None).0, 401);
    // An unknown token is a guest, not an error of its own.
    assert_eq!(call(&t, "POST", path, Some("bogus"), None).0, 401);
    // Read but no write: 404, not 403.
    let (s, _, b) = call(&t, "POST", path, Some(READER), None);
    assert_eq!((s, json(&b)["message"].as_str()), (404, Some("Not Found")));
    assert_eq!(call(&t, "GET", path, Some(READER), None).0, 200);
    // An unknown repo for a logged-in user is 404, for a guest 401.
    assert_eq!(
        call(
            &t,
            "GET",
            "/api/repos/ci-bot/nope/builds",
            Some(READER),
            None
        )
        .0,
        404
    );
    assert_eq!(
        call(&t, "GET", "/api/repos/ci-bot/nope/builds", None, None).0,
        401
    );
    // `?access_token=` works and is not a param; a raw header without `Bearer ` works too.
    let (s, _, b) = call(
        &t,
        "POST",
        &format!("{path}?access_token={BOT}&X=1"),
        None,
        None,
    );
    assert_eq!(s, 200, "{b}");
    assert_eq!(json(&b)["params"], serde_json::json!({"X": "1"}));
    let url = format!("{}{path}", t.drone.url());
    let r = agent()
        .post(&url)
        .header("Authorization", BOT)
        .send_empty()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // System admins bypass the permission table.
    assert_eq!(call(&t, "POST", path, Some(ADMIN), None).0, 200);
}

// Mirrors harness/drone handler/api/repos/builds/create.go `HandleCreate`: every query key but
// access_token/commit/branch becomes a param (message and action too), first value wins,
// the body is ignored; event custom, before == after, ref from the branch.
#[test]
fn create_takes_params_from_the_query_only_and_verbatim() {
    let t = setup("params", SIMPLE, 0);
    let (s, _, b) = call(
        &t,
        "POST",
        "/api/repos/ci-bot/app/builds?branch=main&MixedCase=a%2Bb+c&message=custom%20msg&action=go&dup=1&dup=2&empty=",
        Some(BOT),
        Some(r#"{"params":{"FROM_BODY":"x"},"branch":"other"}"#),
    );
    assert_eq!(s, 200, "{b}");
    let raw = b.clone();
    let b = json(&b);
    assert_eq!(
        b["params"],
        serde_json::json!({"MixedCase": "a+b c", "action": "go", "dup": "1", "empty": "", "message": "custom msg"})
    );
    assert_eq!(b["event"], "custom");
    assert_eq!(b["message"], "custom msg");
    assert_eq!(b["action"], "go");
    assert_eq!(
        (b["trigger"].as_str(), b["sender"].as_str()),
        (Some("ci-bot"), Some("ci-bot"))
    );
    assert_eq!(
        (b["before"].as_str(), b["after"].as_str()),
        (Some(SHA), Some(SHA))
    );
    assert_eq!(b["ref"], "refs/heads/main");
    assert_eq!(
        (b["source"].as_str(), b["target"].as_str()),
        (Some("main"), Some("main"))
    );
    assert_eq!(b["author_login"], "octocat");
    assert_eq!(
        b["link"],
        format!("https://git.example.org/ci-bot/app/commit/{SHA}")
    );
    assert_eq!(
        (
            b["status"].as_str(),
            b["version"].as_i64(),
            b["timestamp"].as_i64()
        ),
        (Some("pending"), Some(1), Some(0))
    );
    // omitempty fields are absent, and a created build carries no stages.
    for k in [
        "parent",
        "error",
        "title",
        "cron",
        "deploy_to",
        "deploy_id",
        "debug",
        "stages",
    ] {
        assert!(b.get(k).is_none(), "{k} present in {b}");
    }
    // Field order is core/build.go's.
    let at = |k: &str| {
        raw.find(&format!("\"{k}\":"))
            .unwrap_or_else(|| panic!("{k} in {raw}"))
    };
    let order = [
        "id",
        "repo_id",
        "trigger",
        "number",
        "status",
        "event",
        "action",
        "link",
        "timestamp",
        "message",
        "before",
        "after",
        "ref",
        "source_repo",
        "source",
        "target",
        "author_login",
        "sender",
        "params",
        "started",
        "finished",
        "created",
        "updated",
        "version",
    ];
    for w in order.windows(2) {
        assert!(at(w[0]) < at(w[1]), "{} after {} in {raw}", w[0], w[1]);
    }
    // Unknown branch or commit: 404.
    assert_eq!(
        call(
            &t,
            "POST",
            "/api/repos/ci-bot/app/builds?branch=nope",
            Some(BOT),
            None
        )
        .0,
        404
    );
    assert_eq!(
        call(
            &t,
            "POST",
            "/api/repos/ci-bot/app/builds?commit=deadbeef",
            Some(BOT),
            None
        )
        .0,
        404
    );
}

// Mirrors harness/drone trigger/trigger.go `createBuildError`: status error with the message,
// no trigger, no params.
#[test]
fn yaml_error_makes_an_error_build() {
    let t = setup("yamlerr", "kind: pipeline\nname: a\nsteps: [\n", 0);
    let b = create(&t, "P=1");
    assert_eq!(b["status"], "error");
    assert!(b["error"].as_str().unwrap().starts_with("yaml:"), "{b}");
    assert_eq!(b["trigger"], "");
    assert!(b.get("params").is_none());
    assert!(b["finished"].as_i64().unwrap() > 0);
    // A later pipeline depending on an unknown one is a lint error.
    t.drone
        .set_config(
            "ci-bot",
            "app",
            "kind: pipeline\nname: b\ndepends_on: [a]\n",
        )
        .unwrap();
    assert_eq!(
        create(&t, "")["error"],
        "linter: invalid or unknown pipeline dependency"
    );
}

// Mirrors harness/drone handler/api/repos/builds/list.go `HandleList` (per_page 1..100 else
// 25, page 0/1 = offset 0) and store/build/build.go (`ORDER BY build_id DESC`).
#[test]
fn list_clamps_per_page_and_is_newest_first() {
    let t = setup("list", SIMPLE, 0); // no runner slots: builds stay pending
    for _ in 0..30 {
        create(&t, "");
    }
    let numbers = |q: &str| -> Vec<i64> {
        let (s, h, b) = call(
            &t,
            "GET",
            &format!("/api/repos/ci-bot/app/builds{q}"),
            Some(BOT),
            None,
        );
        assert_eq!(s, 200);
        assert!(!h.iter().any(
            |(k, _)| k.eq_ignore_ascii_case("link") || k.eq_ignore_ascii_case("x-total-count")
        ));
        let v = json(&b);
        for item in v.as_array().unwrap() {
            assert!(item.get("stages").is_none());
        }
        v.as_array()
            .unwrap()
            .iter()
            .map(|b| b["number"].as_i64().unwrap())
            .collect()
    };
    let default = numbers("");
    assert_eq!(default.len(), 25);
    assert_eq!(default[0], 30);
    assert_eq!(numbers("?per_page=0").len(), 25);
    assert_eq!(numbers("?per_page=101").len(), 25);
    assert_eq!(numbers("?per_page=100").len(), 30);
    assert_eq!(numbers("?page=2&per_page=5"), vec![25, 24, 23, 22, 21]);
    assert_eq!(numbers("?page=0&per_page=5"), numbers("?page=1&per_page=5"));
    assert_eq!(numbers("?page=7&per_page=5"), Vec::<i64>::new());
}

// Mirrors harness/drone handler/api/repos/builds/cancel.go `HandleCancel` (killed build,
// killed/skipped stages, done builds unchanged). A running stage is reported by the runner before the
// handler marks it, so its steps keep the runner's codes (137 killed, 0 skipped), as the real
// pair does (runner_fidelity.rs); the handler's 130 reaches only stages no runner held.
#[test]
fn cancel() {
    let yaml = "kind: pipeline\ntype: exec\nname: slow\nclone:\n  disable: true\nsteps:\n- name: wait\n  commands: [\"while :; do sleep 0.1; done\"]\n- name: next\n  commands: [\"true\"]\n---\nkind: pipeline\ntype: exec\nname: later\nclone:\n  disable: true\ndepends_on: [slow]\nsteps:\n- name: a\n  commands: [\"true\"]\n";
    let t = setup("cancel", yaml, 1);
    let b = create(&t, "KEEP=old&ONLY_OLD=1");
    let n = b["number"].as_i64().unwrap();
    t.drone
        .wait_build_until("ci-bot", "app", n, WAIT, |b| {
            b.stages
                .first()
                .and_then(|s| s.steps.first())
                .is_some_and(|s| s.status == "running")
        })
        .unwrap();
    let (s, _, body) = call(
        &t,
        "DELETE",
        &format!("/api/repos/ci-bot/app/builds/{n}"),
        Some(BOT),
        None,
    );
    assert_eq!(s, 200);
    let c = json(&body);
    assert_eq!(c["status"], "killed");
    assert!(c["finished"].as_i64().unwrap() > 0);
    assert_eq!(c["stages"][0]["status"], "killed");
    assert_eq!(c["stages"][1]["status"], "skipped");
    assert_eq!(c["stages"][0]["steps"][0]["status"], "killed");
    assert_eq!(c["stages"][0]["steps"][0]["exit_code"], 137);
    assert_eq!(c["stages"][0]["steps"][1]["status"], "skipped");
    assert_eq!(c["stages"][0]["steps"][1]["exit_code"], 0);
    t.drone.wait_idle(WAIT).unwrap();
    // Cancelling a finished build returns it unchanged.
    let before = t.drone.build("ci-bot", "app", n).unwrap();
    let (s, _, body) = call(
        &t,
        "DELETE",
        &format!("/api/repos/ci-bot/app/builds/{n}"),
        Some(BOT),
        None,
    );
    assert_eq!(s, 200);
    assert_eq!(json(&body)["version"], before.version);
    // Readers cannot cancel: 404.
    assert_eq!(
        call(
            &t,
            "DELETE",
            &format!("/api/repos/ci-bot/app/builds/{n}"),
            Some(READER),
            None
        )
        .0,
        404
    );
    call(
        &t,
        "DELETE",
        &format!("/api/repos/ci-bot/app/builds/{}", n + 1),
        Some(BOT),
        None,
    );
    t.drone.wait_idle(WAIT).unwrap();
}

// Mirrors harness/drone handler/api/repos/builds/logs/find.go `HandleFind` (404 until the
// runner uploaded the log at step close, runner-go livelog `Close` → `Upload`).
#[test]
fn logs_are_404_until_the_step_finished() {
    let t = setup("logs", "", 2);
    let gate = t.dir.join("gate");
    t.drone
        .set_config(
            "ci-bot",
            "app",
            &format!("kind: pipeline\ntype: exec\nname: logs\nclone:\n  disable: true\nsteps:\n- name: talk\n  commands:\n  - echo hello\n  - while [ ! -e {} ]; do sleep 0.05; done\n", gate.display()),
        )
        .unwrap();
    let n = create(&t, "")["number"].as_i64().unwrap();
    let path = format!("/api/repos/ci-bot/app/builds/{n}/logs/1/1");
    // Before the stage started there is no step at all; while it runs, no log yet.
    t.drone
        .wait_build_until("ci-bot", "app", n, WAIT, |b| {
            b.stages[0]
                .steps
                .first()
                .is_some_and(|s| s.status == "running")
        })
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let (s, _, body) = call(&t, "GET", &path, Some(BOT), None);
    assert_eq!(s, 404, "{body}");
    std::fs::write(&gate, "").unwrap();
    t.drone.wait_build("ci-bot", "app", n, WAIT).unwrap();
    let (s, h, body) = call(&t, "GET", &path, Some(BOT), None);
    assert_eq!(s, 200);
    assert!(h
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("content-type") && v == "application/json"));
    let lines = json(&body);
    let lines = lines.as_array().unwrap();
    assert_eq!(lines[0]["pos"], 0);
    assert_eq!(lines[0]["out"], "+ echo hello\n");
    assert_eq!(lines[1]["out"], "hello\n");
    assert!(lines[1]["time"].is_i64());
    // Stage and step are numbers; an unknown one is 404.
    assert_eq!(
        call(
            &t,
            "GET",
            &format!("/api/repos/ci-bot/app/builds/{n}/logs/1/9"),
            Some(BOT),
            None
        )
        .0,
        404
    );
}

// Mirrors harness/drone trigger/trigger.go (stages pending or waiting_on_dependencies,
// on_success/on_failure from trigger.status), operator/manager/teardown.go
// (`cancelDownstream`, `scheduleDownstream`, final status = first killed/failure/error).
#[test]
fn stage_lifecycle_with_depends_on_and_on_failure() {
    let yaml = "kind: pipeline\ntype: exec\nname: breaks\nclone:\n  disable: true\nsteps:\n- name: a\n  commands: [\"exit 1\"]\n---\nkind: pipeline\ntype: exec\nname: fine\nclone:\n  disable: true\nsteps:\n- name: a\n  commands: [\"true\"]\n---\nkind: pipeline\ntype: exec\nname: after-breaks\nclone:\n  disable: true\ndepends_on: [breaks]\nsteps:\n- name: a\n  commands: [\"true\"]\n---\nkind: pipeline\ntype: exec\nname: report\nclone:\n  disable: true\ndepends_on: [breaks, fine]\ntrigger:\n  status: [success, failure]\nsteps:\n- name: a\n  commands: [\"true\"]\n";
    let t = setup("life", yaml, 0);
    let n = create(&t, "")["number"].as_i64().unwrap();
    let b = t.drone.build("ci-bot", "app", n).unwrap();
    let st: Vec<(&str, &str, bool, bool)> = b
        .stages
        .iter()
        .map(|s| {
            (
                s.name.as_str(),
                s.status.as_str(),
                s.on_success,
                s.on_failure,
            )
        })
        .collect();
    assert_eq!(
        st,
        vec![
            ("breaks", "pending", true, false),
            ("fine", "pending", true, false),
            ("after-breaks", "waiting_on_dependencies", true, false),
            ("report", "waiting_on_dependencies", true, true),
        ]
    );
    assert!(
        b.stages.iter().all(|s| s.steps.is_empty()),
        "steps before a runner started"
    );
    t.drone.set_runner(RunnerPatch {
        capacity: Some(2),
        ..RunnerPatch::default()
    });
    let done = t.drone.wait_build("ci-bot", "app", n, WAIT).unwrap();
    let st: Vec<(&str, &str)> = done
        .stages
        .iter()
        .map(|s| (s.name.as_str(), s.status.as_str()))
        .collect();
    assert_eq!(
        st,
        vec![
            ("breaks", "failure"),
            ("fine", "success"),
            ("after-breaks", "skipped"),
            ("report", "success")
        ]
    );
    assert_eq!(done.status, "failure");
    assert!(done.started > 0 && done.finished >= done.started);
    assert!(done.version >= 3);
}

// Mirrors standins::http fault injection reaching the Drone routes (used by client tests).
#[test]
fn faults_reach_drone_routes_and_are_logged() {
    let t = setup("faults", SIMPLE, 0);
    t.drone
        .inject(FaultRule::new("/api/repos/*/*/builds", Fault::Status { status: 502 }).times(1));
    assert_eq!(
        call(&t, "GET", "/api/repos/ci-bot/app/builds", Some(BOT), None).0,
        502
    );
    assert_eq!(
        call(&t, "GET", "/api/repos/ci-bot/app/builds", Some(BOT), None).0,
        200
    );
    let log = t.drone.requests();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].status, 502);
    // The control surface answers over HTTP too.
    let (s, _, body) = call(
        &t,
        "GET",
        "/_standin/drone/repos/ci-bot/app/builds/1/wait?timeout_ms=10",
        None,
        None,
    );
    assert_eq!(s, 404, "{body}"); // no build #1 yet
    let deadline = Instant::now() + WAIT;
    let (s, _, _) = call(
        &t,
        "POST",
        "/_standin/drone/users",
        None,
        Some(r#"{"login":"x","token":"x-token"}"#),
    );
    assert_eq!(s, 201);
    assert!(Instant::now() < deadline);
    assert_eq!(call(&t, "GET", "/api/user", Some("x-token"), None).0, 200);
    assert_eq!(call(&t, "GET", "/api/user", None, None).0, 401);
}
