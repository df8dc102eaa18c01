//! The stand-in exec runner really runs stages: environment, `${VAR}` substitution, workspace
//! lifetime, run policies, exit code 78, capacity, concurrency limits, and the harsh cancel and
//! timeout (SIGKILL to the step's shell only). Each test cites the upstream file it pins.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use standins::drone::{Build, Commit, ConfigSource, Drone, DroneOpts, NewRepo, RunnerPatch};

const TOKEN: &str = "runner-test-token";
const SHA: &str = "0123456789abcdef0123456789abcdef01234567";
const WAIT: Duration = Duration::from_secs(30);

struct Env {
    drone: Drone,
    dir: PathBuf,
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "standin-runner-{tag}-{}-{}",
        std::process::id(),
        standins::runner::random_id(6)
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A stand-in with an inline-config repo `acme/app`, the runner root in a fresh dir.
fn setup(tag: &str, yaml: &str, capacity: usize, environ: &[(&str, &str)]) -> Env {
    let dir = tmpdir(tag);
    std::fs::create_dir_all(dir.join("root")).unwrap();
    let drone = Drone::start(DroneOpts {
        runner_capacity: capacity,
        runner_root: Some(dir.join("root")),
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
            ConfigSource::Inline { yaml: yaml.into() },
        ))
        .unwrap();
    drone.set_branch("ci-bot", "app", "main", SHA).unwrap();
    drone
        .add_commit(
            "ci-bot",
            "app",
            Commit {
                sha: SHA.into(),
                message: "update".into(),
                author_login: "octo".into(),
                author_name: "Octo Cat".into(),
                author_email: "octo@example.org".into(),
                author_avatar: String::new(),
            },
        )
        .unwrap();
    Env { drone, dir }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into()
}

fn create(env: &Env, query: &str) -> Build {
    let url = format!("{}/api/repos/ci-bot/app/builds?{query}", env.drone.url());
    let mut r = agent()
        .post(&url)
        .header("Authorization", &format!("Bearer {TOKEN}"))
        .send_empty()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    r.body_mut().read_json().unwrap()
}

fn cancel(env: &Env, number: i64) -> Build {
    let url = format!("{}/api/repos/ci-bot/app/builds/{number}", env.drone.url());
    let mut r = agent()
        .delete(&url)
        .header("Authorization", &format!("Bearer {TOKEN}"))
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    r.body_mut().read_json().unwrap()
}

/// The log text of a step (all `out` joined).
fn log_text(env: &Env, build: i64, stage: i64, step: i64) -> String {
    env.drone
        .step_log("ci-bot", "app", build, stage, step)
        .unwrap_or_default()
        .iter()
        .map(|l| l.out.as_str())
        .collect()
}

fn wait_file(path: &Path) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(s) = std::fs::read_to_string(path) {
            if s.ends_with('\n') {
                return s.trim().to_owned();
            }
        }
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn alive(pid: &str) -> bool {
    // A zombie still has a /proc entry; it is not alive.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

fn kill(pid: &str) {
    let _ = std::process::Command::new("kill")
        .args(["-9", pid])
        .status();
}

fn root_entries(env: &Env) -> Vec<String> {
    std::fs::read_dir(env.dir.join("root"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

// Mirrors drone-runner-exec engine/compiler/compiler.go `Compile` (environ.Combine order,
// later maps win), engine/compiler/vars.go `hostVars` (only PATH and USER from the host) and
// runner-go environ/environ.go (`Link`: DRONE_BUILD_LINK is the Drone page, not the commit).
#[test]
fn step_environment_is_built_like_the_exec_runner() {
    let yaml = "kind: pipeline\ntype: exec\nname: env\nclone:\n  disable: true\nsteps:\n- name: dump\n  environment:\n    STEP_VAR: from-step\n    OVERRIDE_ME: step-wins\n  commands:\n  - env\n";
    let env = setup(
        "env",
        yaml,
        2,
        &[("RUNNER_VAR", "from-runner"), ("OVERRIDE_ME", "runner")],
    );
    let b = create(
        &env,
        "MixedCase_Param=v%20a%20l&DRONE_BUILD_NUMBER=999&HOME=/nope&OVERRIDE_ME=param",
    );
    let done = env
        .drone
        .wait_build("ci-bot", "app", b.number, WAIT)
        .unwrap();
    assert_eq!(done.status, "success", "{done:?}");
    let out = log_text(&env, b.number, 1, 1);
    let vars: BTreeMap<String, String> = out
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    // Host variables other than PATH/USER (and proxies) never reach a step: cargo sets
    // CARGO_* for this test process, and none may leak.
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
            "unexpected variable {k} in the step"
        );
    }
    assert!(!vars.keys().any(|k| k.starts_with("CARGO")));
    assert_eq!(
        vars.get("PATH").map(String::as_str),
        std::env::var("PATH").ok().as_deref()
    );
    // Params verbatim (same case, no prefix), but built-ins win over them.
    assert_eq!(vars["MixedCase_Param"], "v a l");
    assert_eq!(vars["DRONE_BUILD_NUMBER"], b.number.to_string());
    assert!(vars["HOME"].ends_with("/home/drone"), "{}", vars["HOME"]);
    assert!(vars["HOME"].starts_with(env.dir.join("root").to_str().unwrap()));
    // The step's own environment beats params, which beat the runner environ.
    assert_eq!(vars["OVERRIDE_ME"], "step-wins");
    assert_eq!(vars["RUNNER_VAR"], "from-runner");
    assert_eq!(vars["STEP_VAR"], "from-step");
    assert_eq!(vars["CI"], "true");
    assert_eq!(vars["DRONE_BUILD_EVENT"], "custom");
    assert_eq!(vars["DRONE_COMMIT"], SHA);
    assert_eq!(vars["DRONE_BRANCH"], "main");
    assert_eq!(vars["DRONE_STEP_NAME"], "dump");
    assert_eq!(vars["DRONE_STEP_NUMBER"], "1");
    assert_eq!(vars["DRONE_STAGE_NAME"], "env");
    assert_eq!(vars["DRONE_REPO"], "ci-bot/app");
    assert_eq!(
        vars["DRONE_BUILD_LINK"],
        format!("http://{}/ci-bot/app/{}", env.drone.addr(), b.number)
    );
    assert!(vars["DRONE_WORKSPACE"].ends_with("/drone/src"));
    assert_eq!(vars["PWD"], vars["DRONE_WORKSPACE"]);
}

// Mirrors drone-runner-exec runtime/runner.go `Run` (envsubst.Eval over the YAML with only
// environ/system/repo/build/stage/link/params) and drone/envsubst parse/scan.go
// (`$$` escape, braced names only).
#[test]
fn yaml_substitution_happens_before_the_shell() {
    let yaml = "kind: pipeline\ntype: exec\nname: subst\nclone:\n  disable: true\nsteps:\n- name: show\n  commands:\n  - echo \"yaml-home=[${HOME}] step=[${DRONE_STEP_NAME}] build=[${DRONE_BUILD_NUMBER}] param=[${JOB}] dflt=[${NOPE:-fallback}]\"\n  - echo \"shell-home=[$HOME] escaped=[$${HOME}] dollar=[$$]\"\n";
    let env = setup("subst", yaml, 2, &[]);
    let b = create(&env, "JOB=j-42");
    let done = env
        .drone
        .wait_build("ci-bot", "app", b.number, WAIT)
        .unwrap();
    assert_eq!(done.status, "success", "{done:?}");
    let out = log_text(&env, b.number, 1, 1);
    let line = |prefix: &str| -> String {
        out.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line {prefix} in {out}"))
            .to_owned()
    };
    assert_eq!(
        line("yaml-home="),
        format!(
            "yaml-home=[] step=[] build=[{}] param=[j-42] dflt=[fallback]",
            b.number
        )
    );
    let shell = line("shell-home=");
    let home = shell
        .strip_prefix("shell-home=[")
        .and_then(|s| s.split(']').next())
        .unwrap();
    assert!(
        home.ends_with("/home/drone") && home.contains("/drone-"),
        "{shell}"
    );
    // `$${HOME}` reached the shell as `${HOME}`; `$$` as a lone `$`.
    assert_eq!(
        shell,
        format!("shell-home=[{home}] escaped=[{home}] dollar=[$]")
    );
    // The trace line shows the command after substitution.
    assert!(out.contains("+ echo \"yaml-home=[] step=[]"), "{out}");
}

// Mirrors drone-runner-exec runtime/execer.go `Exec` (`defer e.engine.Destroy` →
// engine/exec.go `os.RemoveAll(spec.Root)`), also when a step fails.
#[test]
fn workspace_is_deleted_after_the_stage_even_on_failure() {
    let yaml = "kind: pipeline\ntype: exec\nname: ws\nclone:\n  disable: true\nsteps:\n- name: work\n  commands:\n  - pwd\n  - touch left-behind\n  - exit 3\n";
    let env = setup("ws", yaml, 2, &[]);
    let b = create(&env, "");
    let done = env
        .drone
        .wait_build("ci-bot", "app", b.number, WAIT)
        .unwrap();
    assert_eq!(done.status, "failure");
    assert_eq!(done.stages[0].steps[0].exit_code, 3);
    let out = log_text(&env, b.number, 1, 1);
    let pwd = out.lines().nth(1).unwrap().to_owned();
    assert!(
        pwd.starts_with(env.dir.join("root").to_str().unwrap()),
        "{out}"
    );
    assert!(
        !Path::new(&pwd).exists(),
        "workspace {pwd} survived the stage"
    );
    assert!(root_entries(&env).is_empty(), "{:?}", root_entries(&env));
}

// Mirrors drone-runner-exec engine/compiler/util.go `isRunAlways`/`isRunOnFailure` and
// runtime/execer.go `exec` (run policies; exit code 78 → runner-go pipeline/state.go
// `finish` success + `SkipAll`).
#[test]
fn run_policies_and_exit_78() {
    let yaml = "kind: pipeline\ntype: exec\nname: policies\nclone:\n  disable: true\nsteps:\n- name: breaks\n  commands: [\"exit 1\"]\n- name: normal\n  commands: [\"echo never\"]\n- name: always\n  commands: [\"echo cleanup ran\"]\n  when:\n    status: [success, failure]\n- name: on-failure\n  commands: [\"echo failure handler\"]\n  when:\n    status: [failure]\n- name: wrong-event\n  commands: [\"echo x\"]\n  when:\n    event: [push]\n---\nkind: pipeline\ntype: exec\nname: skipper\nclone:\n  disable: true\nsteps:\n- name: done-early\n  commands: [\"exit 78\"]\n- name: rest\n  commands: [\"echo not reached\"]\n";
    let env = setup("policy", yaml, 2, &[]);
    let b = create(&env, "");
    let done = env
        .drone
        .wait_build("ci-bot", "app", b.number, WAIT)
        .unwrap();
    let p = &done.stages[0];
    let st: Vec<(&str, &str, i64)> = p
        .steps
        .iter()
        .map(|s| (s.name.as_str(), s.status.as_str(), s.exit_code))
        .collect();
    // `wrong-event` never runs, so it is not even reported.
    assert_eq!(
        st,
        vec![
            ("breaks", "failure", 1),
            ("normal", "skipped", 0),
            ("always", "success", 0),
            ("on-failure", "success", 0),
        ]
    );
    assert!(log_text(&env, b.number, 1, 3).contains("cleanup ran"));
    assert_eq!(p.status, "failure");
    let s = &done.stages[1];
    assert_eq!(s.status, "success");
    assert_eq!(
        s.steps
            .iter()
            .map(|s| (s.status.as_str(), s.exit_code))
            .collect::<Vec<_>>(),
        vec![("success", 78), ("skipped", 0)]
    );
    assert_eq!(done.status, "failure");
}

fn waiting_yaml(name: &str, extra: &str) -> String {
    format!(
        "kind: pipeline\ntype: exec\nname: {name}\nclone:\n  disable: true\n{extra}steps:\n- name: hold\n  commands:\n  - touch \"$GATE_DIR/started-$DRONE_BUILD_NUMBER\"\n  - while [ ! -e \"$GATE_DIR/go\" ]; do sleep 0.05; done\n"
    )
}

fn started_count(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("started-")
        })
        .count()
}

// Mirrors drone-runner-exec runtime/poller.go `Poll` (DRONE_RUNNER_CAPACITY pollers = stages
// at once).
#[test]
fn capacity_limits_concurrent_stages() {
    let env = setup("cap", &waiting_yaml("hold", ""), 2, &[]);
    let gate = env.dir.join("gate");
    std::fs::create_dir_all(&gate).unwrap();
    env.drone.set_runner(RunnerPatch {
        environ: Some([("GATE_DIR".to_owned(), gate.to_string_lossy().into_owned())].into()),
        ..RunnerPatch::default()
    });
    let builds: Vec<Build> = (0..3).map(|_| create(&env, "")).collect();
    let deadline = Instant::now() + WAIT;
    while started_count(&gate) < 2 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        started_count(&gate),
        2,
        "a third stage started beyond capacity 2"
    );
    assert_eq!(env.drone.busy_slots(), 2);
    let third = env.drone.build("ci-bot", "app", builds[2].number).unwrap();
    assert_eq!(third.status, "pending");
    std::fs::write(gate.join("go"), "").unwrap();
    for b in &builds {
        let d = env
            .drone
            .wait_build("ci-bot", "app", b.number, WAIT)
            .unwrap();
        assert_eq!(d.status, "success");
    }
}

// Mirrors harness/drone scheduler/queue/queue.go `withinLimits`: older incomplete stages of
// the same pipeline name in the repo count against `concurrency.limit`, across builds.
#[test]
fn concurrency_limit_counts_same_name_across_builds() {
    let env = setup(
        "limit",
        &waiting_yaml("serial", "concurrency:\n  limit: 1\n"),
        4,
        &[],
    );
    let gate = env.dir.join("gate");
    std::fs::create_dir_all(&gate).unwrap();
    env.drone.set_runner(RunnerPatch {
        environ: Some([("GATE_DIR".to_owned(), gate.to_string_lossy().into_owned())].into()),
        ..RunnerPatch::default()
    });
    let a = create(&env, "");
    let b = create(&env, "");
    wait_file_exists(&gate.join(format!("started-{}", a.number)));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(started_count(&gate), 1, "limit 1 let a second stage run");
    let second = env.drone.build("ci-bot", "app", b.number).unwrap();
    assert_eq!(second.stages[0].status, "pending");
    assert_eq!(second.stages[0].limit, 1);
    std::fs::write(gate.join("go"), "").unwrap();
    assert_eq!(
        env.drone
            .wait_build("ci-bot", "app", a.number, WAIT)
            .unwrap()
            .status,
        "success"
    );
    assert_eq!(
        env.drone
            .wait_build("ci-bot", "app", b.number, WAIT)
            .unwrap()
            .status,
        "success"
    );
}

fn wait_file_exists(p: &Path) {
    let deadline = Instant::now() + WAIT;
    while !p.exists() {
        assert!(Instant::now() < deadline, "{} never appeared", p.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A step that records its shell's PID (`$$$$` in YAML is `$$` for the shell), starts a
/// grandchild with its output redirected (so it does not hold the log pipe), records that PID,
/// and then waits in short sleeps (the shell's own foreground child is orphaned by the
/// SIGKILL too; a short one ends by itself).
fn orphan_yaml() -> &'static str {
    "kind: pipeline\ntype: exec\nname: orphan\nclone:\n  disable: true\nsteps:\n- name: spawn\n  commands:\n  - echo $$$$ > \"$MARK_DIR/shell.pid\"\n  - sleep 60 > /dev/null 2>&1 &\n  - echo $! > \"$MARK_DIR/child.pid\"\n  - while :; do sleep 0.1; done\n- name: after\n  commands: [\"echo unreachable\"]\n"
}

// Mirrors drone-runner-exec engine/exec.go `Run` (on ctx.Done: `cmd.Process.Kill()`, no
// Setpgid, no SIGTERM) and harness/drone handler/api/repos/builds/cancel.go `HandleCancel`
// (unfinished steps → killed/skipped with exit code 130).
#[test]
fn cancel_kills_only_the_shell_and_leaves_grandchildren() {
    let env = setup("cancel", orphan_yaml(), 2, &[]);
    let marks = env.dir.join("marks");
    std::fs::create_dir_all(&marks).unwrap();
    env.drone.set_runner(RunnerPatch {
        environ: Some([("MARK_DIR".to_owned(), marks.to_string_lossy().into_owned())].into()),
        ..RunnerPatch::default()
    });
    let b = create(&env, "");
    let shell = wait_file(&marks.join("shell.pid"));
    let child = wait_file(&marks.join("child.pid"));
    assert!(alive(&shell) && alive(&child));
    let cancelled = cancel(&env, b.number);
    assert_eq!(cancelled.status, "killed");
    assert_eq!(cancelled.stages[0].status, "killed");
    let steps: Vec<(&str, i64)> = cancelled.stages[0]
        .steps
        .iter()
        .map(|s| (s.status.as_str(), s.exit_code))
        .collect();
    assert_eq!(steps, vec![("killed", 130), ("skipped", 130)]);
    env.drone.wait_idle(WAIT).unwrap();
    let after = env.drone.build("ci-bot", "app", b.number).unwrap();
    // The runner's later report loses the optimistic lock: 130 stays.
    assert_eq!(after.stages[0].steps[0].exit_code, 130);
    assert!(!alive(&shell), "the step's shell survived SIGKILL");
    assert!(
        alive(&child),
        "the grandchild was killed; the real runner never signals it"
    );
    assert!(root_entries(&env).is_empty(), "workspace left after cancel");
    kill(&child);
}

// Mirrors drone-runner-exec runtime/runner.go `Run` (`context.WithTimeout` of the repo
// timeout per stage) and runner-go pipeline/state.go `Cancel` (running → killed 137,
// pending → skipped, stage killed).
#[test]
fn timeout_kills_only_the_shell_with_137() {
    let env = setup("timeout", orphan_yaml(), 2, &[]);
    env.drone
        .set_standin_timeout_seconds("ci-bot", "app", Some(2))
        .unwrap();
    let marks = env.dir.join("marks");
    std::fs::create_dir_all(&marks).unwrap();
    env.drone.set_runner(RunnerPatch {
        environ: Some([("MARK_DIR".to_owned(), marks.to_string_lossy().into_owned())].into()),
        ..RunnerPatch::default()
    });
    let b = create(&env, "");
    let shell = wait_file(&marks.join("shell.pid"));
    let child = wait_file(&marks.join("child.pid"));
    let done = env
        .drone
        .wait_build("ci-bot", "app", b.number, WAIT)
        .unwrap();
    assert_eq!(done.status, "killed");
    let s = &done.stages[0];
    assert_eq!((s.status.as_str(), s.exit_code), ("killed", 137));
    let steps: Vec<(&str, i64)> = s
        .steps
        .iter()
        .map(|s| (s.status.as_str(), s.exit_code))
        .collect();
    assert_eq!(steps, vec![("killed", 137), ("skipped", 0)]);
    assert!(!alive(&shell));
    assert!(
        alive(&child),
        "the grandchild was killed; the real runner never signals it"
    );
    assert!(root_entries(&env).is_empty());
    kill(&child);
}

// Mirrors drone-runner-exec engine/exec.go `Run` with `cmd.Stdout` an io.Writer: Go's `Wait`
// also waits for the output copy, so a background child holding stdout keeps the step
// running (golang/go#23019).
#[test]
fn background_child_holding_stdout_holds_the_step() {
    let yaml = "kind: pipeline\ntype: exec\nname: hold\nclone:\n  disable: true\nsteps:\n- name: bg\n  commands:\n  - (sleep 2; echo late) &\n  - echo early\n";
    let env = setup("hold", yaml, 2, &[]);
    let t0 = Instant::now();
    let b = create(&env, "");
    let done = env
        .drone
        .wait_build("ci-bot", "app", b.number, WAIT)
        .unwrap();
    assert_eq!(done.status, "success");
    assert!(
        t0.elapsed() >= Duration::from_secs(2),
        "step ended before its child let go of stdout"
    );
    let out = log_text(&env, b.number, 1, 1);
    assert!(out.contains("early") && out.contains("late"), "{out}");
}

// Mirrors runner-go clone/clone.go `branch` (git init, fetch the branch, checkout the sha
// -b branch) with the repo's clone URL, and engine/compiler/compiler.go (clone is step 1).
#[test]
fn clone_step_checks_out_the_build_commit_from_git() {
    let dir = tmpdir("clone");
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(&src)
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
    };
    git(&["init", "-q", "-b", "main"]);
    std::fs::write(
        src.join(".drone.yml"),
        "kind: pipeline\ntype: exec\nname: build\nsteps:\n- name: read\n  commands:\n  - cat README\n  - git rev-parse HEAD\n",
    )
    .unwrap();
    std::fs::write(src.join("README"), "hello from the recipe\n").unwrap();
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "first"]);
    let sha = git(&["rev-parse", "HEAD"]);
    std::fs::create_dir_all(dir.join("root")).unwrap();
    let drone = Drone::start(DroneOpts {
        runner_root: Some(dir.join("root")),
        ..DroneOpts::default()
    })
    .unwrap();
    drone.create_user("ci-bot", false, Some(TOKEN)).unwrap();
    drone
        .create_repo(NewRepo::new(
            "ci-bot",
            "app",
            ConfigSource::Git { path: src.clone() },
        ))
        .unwrap();
    let env = Env { drone, dir };
    let b = create(&env, "");
    assert_eq!(b.after, sha);
    assert_eq!(b.message, "first");
    assert_eq!(b.author_email, "octo@example.org");
    let done = env
        .drone
        .wait_build("ci-bot", "app", b.number, WAIT)
        .unwrap();
    assert_eq!(
        done.status,
        "success",
        "{done:?}\n{}",
        log_text(&env, b.number, 1, 1)
    );
    let names: Vec<&str> = done.stages[0]
        .steps
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(names, vec!["clone", "read"]);
    let out = log_text(&env, b.number, 1, 2);
    assert!(
        out.contains("hello from the recipe") && out.contains(&sha),
        "{out}"
    );
}
