//! The stand-in Drone + exec runner checked against the real ones: each test body runs once
//! against the stand-in (`_standin`) and once against the real Drone 1.10.1 with the real
//! drone-runner-exec 1.0.0-beta.10 and the real Gitea as forge (`_real`, from `dev/upstream`),
//! over the same HTTP API. The repository `ci-bot/app` holds the pipeline in a real git
//! history on both sides. Sources are drone-runners/drone-runner-exec at v1.0.0-beta.10,
//! drone/runner-go v1.3.1 and drone/drone v1.10.1.

use std::any::Any;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use standins::drone::{ConfigSource, Drone, DroneOpts, NewRepo};
use standins::upstream::drone::RealDrone;
use standins::upstream::gitea::RealGitea;

mod support;
use support::{agent, alive, wait_file, WAIT};

const TOKEN: &str = "runner-test-token";

struct Env {
    url: String,
    /// `host:port` Drone calls itself (DRONE_SERVER_HOST).
    addr: String,
    token: String,
    /// The head of `main`, the commit each build runs.
    sha: String,
    root: PathBuf,
    dir: PathBuf,
    kind: &'static str,
    _keep: Box<dyn Any>,
}

impl Drop for Env {
    fn drop(&mut self) {
        self._keep = Box::new(());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "runner-fidelity-{tag}-{}-{}",
        std::process::id(),
        standins::runner::random_id(6)
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "Octo")
        .env("GIT_AUTHOR_EMAIL", "octo@example.org")
        .env("GIT_COMMITTER_NAME", "Octo")
        .env("GIT_COMMITTER_EMAIL", "octo@example.org")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// `ci-bot/app` with `files` (`.drone.yml` among them) committed on `main`, a runner of
/// capacity 2 with `environ`, on the stand-in.
fn standin(tag: &str, files: &[(&str, &str)], environ: &[(&str, &str)]) -> Env {
    let dir = tmpdir(tag);
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    git(&src, &["init", "-q", "-b", "main"]);
    for (name, text) in files {
        std::fs::write(src.join(name), text).unwrap();
    }
    git(&src, &["add", "."]);
    git(&src, &["commit", "-q", "-m", "pipeline"]);
    let sha = git(&src, &["rev-parse", "HEAD"]);
    let root = dir.join("root");
    std::fs::create_dir_all(&root).unwrap();
    let drone = Drone::start(DroneOpts {
        runner_root: Some(root.clone()),
        runner_environ: environ
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..DroneOpts::default()
    })
    .unwrap();
    drone.create_user("ci-bot", false, Some(TOKEN)).unwrap();
    drone
        .create_repo(NewRepo::new(
            "ci-bot",
            "app",
            ConfigSource::Git { path: src },
        ))
        .unwrap();
    Env {
        url: drone.url(),
        addr: drone.addr().to_string(),
        token: TOKEN.into(),
        sha,
        root,
        dir,
        kind: "stand-in",
        _keep: Box::new(drone),
    }
}

/// The same on the real Gitea, Drone and exec runner.
fn real(tag: &str, files: &[(&str, &str)], environ: &[(&str, &str)]) -> Env {
    let dir = tmpdir(tag);
    let gitea = RealGitea::start().unwrap_or_else(|e| panic!("{e:#}"));
    gitea.create_user("ci-bot").unwrap();
    gitea.create_repo("ci-bot", "app", false).unwrap();
    let mut sha = String::new();
    for (name, text) in files {
        sha = gitea.put_file("ci-bot", "app", name, text).unwrap();
    }
    let forge_token = gitea.create_token("ci-bot", &["all"]).unwrap();
    let drone = RealDrone::start(&gitea.url(), "ci-bot", &forge_token, &["ci-bot/app"])
        .unwrap_or_else(|e| panic!("{e:#}"));
    let environ: BTreeMap<String, String> = environ
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let path = std::env::var("PATH").unwrap_or_default();
    let runner = drone
        .start_runner(2, &path, &environ)
        .unwrap_or_else(|e| panic!("{e:#}"));
    Env {
        url: drone.url(),
        addr: drone.url().trim_start_matches("http://").to_owned(),
        token: drone.token.clone(),
        sha,
        root: runner.root.clone(),
        dir,
        kind: "real",
        _keep: Box::new((runner, drone, gitea)),
    }
}

macro_rules! both {
    ($name:ident) => {
        mod $name {
            #[test]
            fn standin() {
                super::$name(super::standin);
            }
            #[test]
            fn real() {
                super::$name(super::real);
            }
        }
    };
}

type Setup = fn(&str, &[(&str, &str)], &[(&str, &str)]) -> Env;

impl Env {
    fn req(&self, method: &str, path: &str) -> (u16, Value) {
        let url = format!("{}/api/repos/ci-bot/app{path}", self.url);
        let auth = format!("Bearer {}", self.token);
        let a = agent();
        let r = match method {
            "POST" => a.post(&url).header("Authorization", &auth).send_empty(),
            "DELETE" => a.delete(&url).header("Authorization", &auth).call(),
            _ => a.get(&url).header("Authorization", &auth).call(),
        };
        let mut r = r.unwrap();
        let status = r.status().as_u16();
        let text = r.body_mut().read_to_string().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    fn create(&self, query: &str) -> Value {
        let (status, b) = self.req("POST", &format!("/builds?branch=main&{query}"));
        assert_eq!(status, 200, "{}: {b}", self.kind);
        b
    }

    fn build(&self, n: i64) -> Value {
        self.req("GET", &format!("/builds/{n}")).1
    }

    fn wait_build(&self, n: i64) -> Value {
        let end = Instant::now() + WAIT;
        loop {
            let b = self.build(n);
            let s = b["status"].as_str().unwrap_or("");
            if ![
                "",
                "pending",
                "running",
                "waiting_on_dependencies",
                "blocked",
            ]
            .contains(&s)
            {
                return b;
            }
            assert!(
                Instant::now() < end,
                "{}: build {n} not done: {b}",
                self.kind
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The log text of a step (every `out` joined), as Drone serves it.
    fn log_text(&self, build: i64, stage: i64, step: i64) -> String {
        let (_, lines) = self.req("GET", &format!("/builds/{build}/logs/{stage}/{step}"));
        lines
            .as_array()
            .map(|a| a.iter().map(|l| l["out"].as_str().unwrap_or("")).collect())
            .unwrap_or_default()
    }

    fn root_entries(&self) -> Vec<String> {
        std::fs::read_dir(&self.root)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }
}

fn steps(stage: &Value) -> Vec<(String, String, i64)> {
    stage["steps"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| {
                    (
                        s["name"].as_str().unwrap_or("").to_owned(),
                        s["status"].as_str().unwrap_or("").to_owned(),
                        s["exit_code"].as_i64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn pipeline(body: &str) -> String {
    format!("kind: pipeline\ntype: exec\n{body}")
}

// engine/compiler/compiler.go `Compile` (environ.Combine order, later maps win),
// engine/compiler/vars.go `hostVars` (only PATH and USER from the host), runner-go
// environ/environ.go (`Link`: DRONE_BUILD_LINK is the Drone page, not the commit).
fn step_environment_is_built_like_the_exec_runner(setup: Setup) {
    let yaml = pipeline("name: env\nclone:\n  disable: true\nsteps:\n- name: dump\n  environment:\n    STEP_VAR: from-step\n    OVERRIDE_ME: step-wins\n  commands:\n  - env\n");
    let env = setup(
        "env",
        &[(".drone.yml", &yaml)],
        &[("RUNNER_VAR", "from-runner"), ("OVERRIDE_ME", "runner")],
    );
    let b =
        env.create("MixedCase_Param=v%20a%20l&DRONE_BUILD_NUMBER=999&HOME=/nope&OVERRIDE_ME=param");
    let n = b["number"].as_i64().unwrap();
    let done = env.wait_build(n);
    assert_eq!(done["status"], "success", "{}: {done}", env.kind);
    let out = env.log_text(n, 1, 1);
    let vars: BTreeMap<String, String> = out
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    for k in vars.keys() {
        let builtin = k.starts_with("DRONE")
            || k.starts_with("CI")
            || k.starts_with("GIT_")
            || k.to_lowercase().ends_with("_proxy");
        let known = [
            "PATH",
            "USER",
            "HOME",
            "HOMEPATH",
            "USERPROFILE",
            "PWD",
            "SHLVL",
            "_",
            "OLDPWD",
            "RUNNER_VAR",
            "STEP_VAR",
            "OVERRIDE_ME",
            "MixedCase_Param",
        ];
        assert!(
            builtin || known.contains(&k.as_str()),
            "{}: unexpected variable {k}",
            env.kind
        );
    }
    assert!(!vars.keys().any(|k| k.starts_with("CARGO")));
    assert_eq!(
        vars.get("PATH").map(String::as_str),
        std::env::var("PATH").ok().as_deref()
    );
    assert_eq!(vars["MixedCase_Param"], "v a l");
    assert_eq!(vars["DRONE_BUILD_NUMBER"], n.to_string());
    assert!(vars["HOME"].ends_with("/home/drone"), "{}", vars["HOME"]);
    assert!(vars["HOME"].starts_with(env.root.to_str().unwrap()));
    assert_eq!(vars["OVERRIDE_ME"], "step-wins");
    assert_eq!(vars["RUNNER_VAR"], "from-runner");
    assert_eq!(vars["STEP_VAR"], "from-step");
    assert_eq!(vars["CI"], "true");
    assert_eq!(vars["DRONE_BUILD_EVENT"], "custom");
    assert_eq!(vars["DRONE_COMMIT"], env.sha);
    assert_eq!(vars["DRONE_BRANCH"], "main");
    assert_eq!(vars["DRONE_STEP_NAME"], "dump");
    assert_eq!(vars["DRONE_STEP_NUMBER"], "1");
    assert_eq!(vars["DRONE_STAGE_NAME"], "env");
    assert_eq!(vars["DRONE_REPO"], "ci-bot/app");
    assert_eq!(
        vars["DRONE_BUILD_LINK"],
        format!("http://{}/ci-bot/app/{n}", env.addr)
    );
    assert!(vars["DRONE_WORKSPACE"].ends_with("/drone/src"));
    assert_eq!(vars["PWD"], vars["DRONE_WORKSPACE"]);
}
both!(step_environment_is_built_like_the_exec_runner);

// runtime/execer.go `Exec` (`defer e.engine.Destroy` → engine/exec.go `os.RemoveAll`), also
// when a step fails.
fn workspace_is_deleted_after_the_stage_even_on_failure(setup: Setup) {
    let yaml = pipeline("name: ws\nclone:\n  disable: true\nsteps:\n- name: work\n  commands:\n  - pwd\n  - touch left-behind\n  - exit 3\n");
    let env = setup("ws", &[(".drone.yml", &yaml)], &[]);
    let n = env.create("")["number"].as_i64().unwrap();
    let done = env.wait_build(n);
    assert_eq!(done["status"], "failure");
    assert_eq!(done["stages"][0]["steps"][0]["exit_code"], 3);
    let out = env.log_text(n, 1, 1);
    let pwd = out.lines().nth(1).unwrap().to_owned();
    assert!(pwd.starts_with(env.root.to_str().unwrap()), "{out}");
    // The runner removes the workspace after reporting the stage: allow it a moment.
    let end = Instant::now() + Duration::from_secs(5);
    while Path::new(&pwd).exists() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !Path::new(&pwd).exists(),
        "{}: workspace {pwd} survived the stage",
        env.kind
    );
    assert!(env.root_entries().is_empty(), "{:?}", env.root_entries());
}
both!(workspace_is_deleted_after_the_stage_even_on_failure);

// engine/compiler/util.go `isRunAlways`/`isRunOnFailure`, runtime/execer.go `exec` (run
// policies; exit code 78 → runner-go pipeline/state.go `finish` success + `SkipAll`).
fn run_policies_and_exit_78(setup: Setup) {
    let yaml = pipeline("name: policies\nclone:\n  disable: true\nsteps:\n- name: breaks\n  commands: [\"exit 1\"]\n- name: normal\n  commands: [\"echo never\"]\n- name: always\n  commands: [\"echo cleanup ran\"]\n  when:\n    status: [success, failure]\n- name: on-failure\n  commands: [\"echo failure handler\"]\n  when:\n    status: [failure]\n- name: wrong-event\n  commands: [\"echo x\"]\n  when:\n    event: [push]\n---\nkind: pipeline\ntype: exec\nname: skipper\nclone:\n  disable: true\nsteps:\n- name: done-early\n  commands: [\"exit 78\"]\n- name: rest\n  commands: [\"echo not reached\"]\n");
    let env = setup("policy", &[(".drone.yml", &yaml)], &[]);
    let n = env.create("")["number"].as_i64().unwrap();
    let done = env.wait_build(n);
    let own = |v: Vec<(&str, &str, i64)>| -> Vec<(String, String, i64)> {
        v.into_iter()
            .map(|(a, b, c)| (a.to_owned(), b.to_owned(), c))
            .collect()
    };
    // `wrong-event` never runs, so it is not even reported.
    assert_eq!(
        steps(&done["stages"][0]),
        own(vec![
            ("breaks", "failure", 1),
            ("normal", "skipped", 0),
            ("always", "success", 0),
            ("on-failure", "success", 0),
        ]),
        "{}",
        env.kind
    );
    assert!(env.log_text(n, 1, 3).contains("cleanup ran"));
    assert_eq!(done["stages"][0]["status"], "failure");
    assert_eq!(done["stages"][1]["status"], "success");
    assert_eq!(
        steps(&done["stages"][1]),
        own(vec![("done-early", "success", 78), ("rest", "skipped", 0)]),
        "{}",
        env.kind
    );
    assert_eq!(done["status"], "failure");
}
both!(run_policies_and_exit_78);

// engine/exec.go `Run` with `cmd.Stdout` an io.Writer: Go's `Wait` also waits for the output
// copy, so a background child holding stdout keeps the step running (golang/go#23019).
fn background_child_holding_stdout_holds_the_step(setup: Setup) {
    let yaml = pipeline("name: hold\nclone:\n  disable: true\nsteps:\n- name: bg\n  commands:\n  - (sleep 2; echo late) &\n  - echo early\n");
    let env = setup("hold", &[(".drone.yml", &yaml)], &[]);
    let t0 = Instant::now();
    let n = env.create("")["number"].as_i64().unwrap();
    let done = env.wait_build(n);
    assert_eq!(done["status"], "success");
    assert!(
        t0.elapsed() >= Duration::from_secs(2),
        "{}: step ended before its child let go of stdout",
        env.kind
    );
    let out = env.log_text(n, 1, 1);
    assert!(out.contains("early") && out.contains("late"), "{out}");
}
both!(background_child_holding_stdout_holds_the_step);

// trigger/trigger.go: no pipeline matches (a trigger on another event) → 200 with `null`.
fn no_matching_pipeline_answers_null(setup: Setup) {
    let yaml = pipeline("name: push-only\nclone:\n  disable: true\ntrigger:\n  event: [push]\nsteps:\n- name: x\n  commands: [\"true\"]\n");
    let env = setup("null", &[(".drone.yml", &yaml)], &[]);
    let (status, body) = env.req("POST", "/builds?branch=main");
    assert_eq!((status, body), (200, Value::Null), "{}", env.kind);
}
both!(no_matching_pipeline_answers_null);

// engine/exec.go `Run` (on ctx.Done: `cmd.Process.Kill()`, no Setpgid, no SIGTERM): the
// step's shell dies, its grandchild lives on. drone/drone handler/api/repos/builds/cancel.go
// `HandleCancel` tells the scheduler first and then marks unfinished steps killed with 130,
// while the runner reports the step it killed with 137 (runner-go pipeline/state.go
// `Cancel`): whichever write lands last stays.
fn cancel_kills_only_the_shell_and_leaves_grandchildren(setup: Setup) {
    let marks = std::env::temp_dir().join(format!(
        "runner-fidelity-marks-{}-{}",
        std::process::id(),
        standins::runner::random_id(6)
    ));
    std::fs::create_dir_all(&marks).unwrap();
    let yaml = pipeline("name: orphan\nclone:\n  disable: true\nsteps:\n- name: spawn\n  commands:\n  - sh -c 'echo $PPID' > \"$MARK_DIR/shell.pid\"\n  - sleep 60 > /dev/null 2>&1 &\n  - echo $! > \"$MARK_DIR/child.pid\"\n  - while :; do sleep 0.1; done\n- name: after\n  commands: [\"echo unreachable\"]\n");
    let env = setup(
        "cancel",
        &[(".drone.yml", &yaml)],
        &[("MARK_DIR", marks.to_str().unwrap())],
    );
    let n = env.create("")["number"].as_i64().unwrap();
    let shell = wait_file(&marks.join("shell.pid"));
    let child = wait_file(&marks.join("child.pid"));
    assert!(alive(&shell) && alive(&child));
    let (status, cancelled) = env.req("DELETE", &format!("/builds/{n}"));
    assert_eq!(status, 200);
    assert_eq!(cancelled["status"], "killed", "{}: {cancelled}", env.kind);
    let end = Instant::now() + WAIT;
    while !env.root_entries().is_empty() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    let after = env.build(n);
    let s = steps(&after["stages"][0]);
    eprintln!(
        "{}: after cancel: {s:?} stage exit {}",
        env.kind, after["stages"][0]["exit_code"]
    );
    assert_eq!(after["stages"][0]["status"], "killed");
    assert_eq!(s[0].1, "killed");
    assert!(s[0].2 == 130 || s[0].2 == 137, "{}: {s:?}", env.kind);
    assert_eq!(s[1].1, "skipped");
    assert!(
        !alive(&shell),
        "{}: the step's shell survived SIGKILL",
        env.kind
    );
    assert!(
        alive(&child),
        "{}: the grandchild was killed; the real runner never signals it",
        env.kind
    );
    assert!(env.root_entries().is_empty(), "workspace left after cancel");
    let _ = std::process::Command::new("kill")
        .arg("-9")
        .arg(&child)
        .status();
    let _ = std::fs::remove_dir_all(&marks);
}
both!(cancel_kills_only_the_shell_and_leaves_grandchildren);
