//! The stand-in exec runner's capacity, concurrency limits and timeout (SIGKILL to the step's
//! shell only), which need the stand-in's knobs (a timeout in seconds, the runner's load).
//! Environment, workspace lifetime, run policies, exit code 78, cancel
//! are in runner_fidelity.rs, checked against the real Drone and exec runner too.
//! Each test cites the upstream file it pins.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use standins::drone::{Build, Commit, ConfigSource, Drone, DroneOpts, NewRepo, RunnerPatch};

mod support;
use support::{alive, kill, wait_file, WAIT};

const TOKEN: &str = "runner-test-token";
const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

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

fn root_entries(env: &Env) -> Vec<String> {
    std::fs::read_dir(env.dir.join("root"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
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
    "kind: pipeline\ntype: exec\nname: orphan\nclone:\n  disable: true\nsteps:\n- name: spawn\n  commands:\n  - sh -c 'echo $PPID' > \"$MARK_DIR/shell.pid\"\n  - sleep 60 > /dev/null 2>&1 &\n  - echo $! > \"$MARK_DIR/child.pid\"\n  - while :; do sleep 0.1; done\n- name: after\n  commands: [\"echo unreachable\"]\n"
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
