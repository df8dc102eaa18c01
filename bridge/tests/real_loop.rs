//! The whole loop with no stand-in but abra's: the real `cc-ci-bridge` against the real Gitea,
//! the real Drone and the real exec runner (`dev/upstream`). A maintainer's `!testme` becomes a
//! Drone build of the cc-ci repository's own `.drone.yml`, run by the exec runner with the PR's
//! parameters, and its outcome lands on the PR; a second `!testme` cancels the first in Drone.

mod world;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Child;
use std::time::Duration;

use ccci::gitea::{Comment, GiteaClient};
use ccci::secret::Secret;
use standins::gitea::PullSpec;
use standins::upstream::drone::{RealDrone, RealRunner};
use standins::upstream::gitea::RealGitea;

use world::{free_port, kill_bridge, spawn_bridge, wait_until, BOT, QUICK, SLOW};

struct Loop {
    gitea: RealGitea,
    drone: RealDrone,
    _runner: RealRunner,
    dir: PathBuf,
    bot: GiteaClient,
    bridge: Option<Child>,
    secrets: Vec<String>,
}

impl Loop {
    fn start(name: &str, yaml: &str) -> Loop {
        let gitea = RealGitea::start().unwrap_or_else(|e| panic!("{e:#}"));
        for u in [BOT, "alice", "bob"] {
            gitea.create_user(u).unwrap();
        }
        gitea.create_org("coop-cloud").unwrap();
        gitea.set_member("coop-cloud", BOT, false).unwrap();
        gitea.set_member("coop-cloud", "alice", false).unwrap();
        gitea
            .create_repo("coop-cloud", "custom-html", false)
            .unwrap();
        gitea.create_repo("coop-cloud", "cc-ci", false).unwrap();
        gitea
            .put_file("coop-cloud", "cc-ci", ".drone.yml", yaml)
            .unwrap();
        // Drone activates a repository only for a user who administers it (it adds a hook).
        gitea
            .add_collaborator("coop-cloud", "cc-ci", BOT, "admin")
            .unwrap();
        let bridge_token = gitea
            .create_token(BOT, standins::local::BOT_SCOPES)
            .unwrap();
        // What Drone's OAuth login would have given it: the whole account.
        let drone_forge_token = gitea.create_token(BOT, &["all"]).unwrap();
        let drone = RealDrone::start(&gitea.url(), BOT, &drone_forge_token, &["coop-cloud/cc-ci"])
            .unwrap_or_else(|e| panic!("{e:#}"));
        let path = std::env::var("PATH").unwrap_or_default();
        let runner = drone
            .start_runner(2, &path, &BTreeMap::new())
            .unwrap_or_else(|e| panic!("{e:#}"));

        let dir =
            std::env::temp_dir().join(format!("bridge-real-loop-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("state")).unwrap();
        std::fs::write(dir.join("gitea-token"), &bridge_token).unwrap();
        std::fs::write(dir.join("drone-token"), &drone.token).unwrap();
        let listen = format!("127.0.0.1:{}", free_port());
        let config = serde_json::json!({
            "gitea_url": gitea.url(),
            "bot_user": BOT,
            "gitea_token_file": dir.join("gitea-token"),
            "drone_url": drone.url(),
            "drone_token_file": dir.join("drone-token"),
            "drone_repo": "coop-cloud/cc-ci",
            "recipes": {"custom-html": "coop-cloud/custom-html"},
            "orgs": ["coop-cloud"],
            "poll_interval_secs": 1,
            "sweep_interval_secs": 2,
            "follow_interval_secs": 1,
            "request_timeout_secs": 5,
            "listen": listen,
            "state_dir": dir.join("state"),
            "dashboard_url": "https://ci.example.org",
        });
        std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
        let bot = GiteaClient::new(
            &gitea.api_url(),
            Secret::new(bridge_token.clone()),
            Duration::from_secs(5),
        );
        let bridge = Some(spawn_bridge(&dir, &listen));
        Loop {
            secrets: vec![bridge_token, drone_forge_token, drone.token.clone()],
            gitea,
            drone,
            _runner: runner,
            dir,
            bot,
            bridge,
        }
    }

    /// A PR by bob from his fork; its number and head SHA.
    fn open_pr(&self, branch: &str) -> (i64, String) {
        let _ = self.gitea.fork_repo("coop-cloud/custom-html", "bob");
        self.gitea
            .open_pull(
                "coop-cloud",
                "custom-html",
                &PullSpec {
                    poster: "bob".into(),
                    title: "Bump nginx".into(),
                    body: String::new(),
                    head_repo: Some("bob/custom-html".into()),
                    head_branch: branch.into(),
                    head_sha: String::new(),
                    base_branch: None,
                },
            )
            .unwrap()
    }

    fn wait_bot_comment(&self, pr: i64, needle: &str, timeout: Duration) -> Comment {
        world::wait_bot_comment(&self.bot, pr, needle, timeout)
    }

    /// Build `n`, or null while Drone has none by that number (404).
    fn build(&self, n: i64) -> serde_json::Value {
        self.drone
            .call("GET", &format!("/api/repos/coop-cloud/cc-ci/builds/{n}"))
            .unwrap_or_default()
    }

    /// The lines of one step's log, as Drone stores them (`[{pos, out, time}]`).
    fn step_log(&self, build: i64, stage: i64, step: i64) -> String {
        let lines = self
            .drone
            .call(
                "GET",
                &format!("/api/repos/coop-cloud/cc-ci/builds/{build}/logs/{stage}/{step}"),
            )
            .unwrap();
        lines
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["out"].as_str().unwrap_or_default())
            .collect()
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        kill_bridge(&mut self.bridge);
        let log = std::fs::read_to_string(self.dir.join("bridge.log")).unwrap_or_default();
        for s in &self.secrets {
            assert!(
                !log.contains(s.as_str()),
                "a token leaked into the bridge log"
            );
        }
        if std::thread::panicking() {
            eprintln!("--- bridge log ---\n{log}");
            eprintln!("--- drone log ---\n{}", self.drone.log_tail(40));
            eprintln!("--- runner log ---\n{}", self._runner.log_tail(40));
            eprintln!("--- gitea log ---\n{}", self.gitea.log_tail(40));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn testme_runs_the_pipeline_in_real_drone_and_reports_on_the_pr() {
    let l = Loop::start("green", QUICK);
    let (pr, sha) = l.open_pr("bump-1");
    let c = l
        .gitea
        .comment("coop-cloud", "custom-html", pr, "alice", "!testme")
        .unwrap();
    let done = l.wait_bot_comment(pr, "**passed**", Duration::from_secs(60));
    assert!(
        done.body.contains("| install | ✅ passed |"),
        "{}",
        done.body
    );
    let b = l.build(1);
    assert_eq!(b["status"], "success", "{b}");
    assert_eq!(b["event"], "custom");
    assert_eq!(b["params"]["RECIPE"], "custom-html");
    assert_eq!(b["params"]["REF"], sha.as_str());
    assert_eq!(b["params"]["PR"], pr.to_string());
    assert_eq!(b["params"]["COMMENT"], c.to_string());
    // The exec runner gave the step the build's params as its environment.
    let log = l.step_log(1, 1, 1);
    assert!(
        log.contains(&format!("recipe=custom-html ref={sha} pr={pr}")),
        "{log}"
    );
    assert_eq!(
        l.drone
            .call("GET", "/api/repos/coop-cloud/cc-ci/builds?page=2")
            .unwrap(),
        serde_json::json!([])
    );
}

#[test]
fn a_second_testme_cancels_the_first_run_in_real_drone() {
    let l = Loop::start("supersede", SLOW);
    let (pr, _) = l.open_pr("bump-1");
    l.gitea
        .comment("coop-cloud", "custom-html", pr, "alice", "!testme")
        .unwrap();
    wait_until("build 1 running", Duration::from_secs(30), || {
        l.build(1)["status"] == "running"
    });
    l.gitea
        .comment("coop-cloud", "custom-html", pr, "alice", "!testme")
        .unwrap();
    wait_until("build 1 killed", Duration::from_secs(30), || {
        l.build(1)["status"] == "killed"
    });
    l.wait_bot_comment(pr, "superseded", Duration::from_secs(30));
    wait_until("build 2 done", Duration::from_secs(60), || {
        l.build(2)["status"] == "success"
    });
    let b1 = l.build(1);
    let step = &b1["stages"][0]["steps"][0];
    // Two writers race for the killed step: the cancel handler (130, builds/cancel.go, after it
    // has already told the scheduler) and the runner reporting the step it killed (137,
    // runner-go pipeline/state.go Cancel). Here the runner usually wins; either is Drone.
    assert_eq!(step["status"], "killed", "{b1}");
    let code = step["exit_code"].as_i64().unwrap();
    assert!(code == 130 || code == 137, "{b1}");
}
