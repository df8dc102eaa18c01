//! The real `cc-ci-bridge` binary against the stand-in Gitea and Drone: every rule of the
//! bridge, asserted on what the forge and Drone were asked and what the PR shows.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ccci::gitea::{Comment, GiteaClient};
use ccci::secret::Secret;
use standins::drone::{Commit, ConfigSource, Drone, DroneOpts, NewRepo, Perm};
use standins::gitea::{Gitea, HookSpec, HookVersion, PullSpec};
use standins::http::{Fault, FaultRule};

const SHA: &str = "3f2e1d0c9b8a7f6e5d4c3b2a1f0e9d8c7b6a5f4e";
const BOT: &str = "cc-ci-bot";

/// A pipeline that finishes at once, with the steps named like cc-ci's stages.
const QUICK: &str = "kind: pipeline
type: exec
name: cc-ci
clone:
  disable: true
trigger:
  event: [custom]
steps:
- name: install
  commands:
  - echo recipe=$RECIPE ref=$REF pr=$PR src=$SRC comment=$COMMENT
- name: teardown
  commands:
  - echo done
";

/// A pipeline that runs long enough to be superseded or followed across a restart.
const SLOW: &str = "kind: pipeline
type: exec
name: cc-ci
clone:
  disable: true
trigger:
  event: [custom]
steps:
- name: install
  commands:
  - sleep 4
";

struct World {
    gitea: Gitea,
    drone: Drone,
    dir: PathBuf,
    listen: String,
    bot: GiteaClient,
    child: Option<Child>,
    webhook_secrets: Vec<String>,
    /// Secrets that must never show in the bridge's log.
    tokens: Vec<String>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

impl World {
    fn new(name: &str, yaml: &str, webhook_secrets: &[&str]) -> World {
        let dir = std::env::temp_dir().join(format!("bridge-it-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("state")).unwrap();

        let gitea = Gitea::start().unwrap();
        for u in [BOT, "alice", "eve", "bob", "carol"] {
            gitea.create_user(u).unwrap();
        }
        gitea.create_org("coop-cloud").unwrap();
        // The bot is a (private) member: otherwise Gitea only tells it public membership.
        gitea.set_member("coop-cloud", BOT, false).unwrap();
        gitea.set_member("coop-cloud", "alice", false).unwrap();
        gitea
            .create_repo("coop-cloud", "custom-html", false)
            .unwrap();
        gitea.create_repo("coop-cloud", "other", false).unwrap();
        let gitea_token = gitea
            .create_token(
                BOT,
                &[
                    "read:issue",
                    "write:issue",
                    "write:repository",
                    "read:organization",
                    "write:notification",
                ],
            )
            .unwrap();

        let drone = Drone::start(DroneOpts {
            runner_root: Some(dir.join("runner")),
            ..Default::default()
        })
        .unwrap();
        drone.create_user("coop-cloud", false, None).unwrap();
        let drone_token = drone.create_user(BOT, false, None).unwrap();
        drone
            .create_repo(NewRepo::new(
                "coop-cloud",
                "cc-ci",
                ConfigSource::Inline { yaml: yaml.into() },
            ))
            .unwrap();
        drone
            .set_branch("coop-cloud", "cc-ci", "main", SHA)
            .unwrap();
        // Drone looks the branch head up in the forge; an unknown commit is a 404.
        drone
            .add_commit(
                "coop-cloud",
                "cc-ci",
                Commit {
                    sha: SHA.into(),
                    message: "cc-ci".into(),
                    ..Default::default()
                },
            )
            .unwrap();
        drone
            .set_permission(
                "coop-cloud",
                "cc-ci",
                BOT,
                Perm {
                    read: true,
                    write: true,
                    admin: false,
                },
            )
            .unwrap();

        std::fs::write(dir.join("gitea-token"), format!("{gitea_token}\n")).unwrap();
        std::fs::write(dir.join("drone-token"), &drone_token).unwrap();
        let mut secret_files = Vec::new();
        for (i, s) in webhook_secrets.iter().enumerate() {
            let p = dir.join(format!("hook-secret-{i}"));
            std::fs::write(&p, s).unwrap();
            secret_files.push(p);
        }
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
            "allow_users": ["carol"],
            "poll_interval_secs": 1,
            "sweep_interval_secs": 2,
            "follow_interval_secs": 1,
            "request_timeout_secs": 2,
            "listen": listen,
            "webhook_secret_files": secret_files,
            "state_dir": dir.join("state"),
            "dashboard_url": "https://ci.example.org",
        });
        std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
        let bot = GiteaClient::new(
            &gitea.api_url(),
            Secret::new(gitea_token.clone()),
            Duration::from_secs(5),
        );
        World {
            gitea,
            drone,
            dir,
            listen,
            bot,
            child: None,
            webhook_secrets: webhook_secrets.iter().map(|s| s.to_string()).collect(),
            tokens: vec![gitea_token, drone_token],
        }
    }

    fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("bridge.log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_cc-ci-bridge"))
            .arg("--config")
            .arg(self.dir.join("config.json"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let url = format!("http://{}/metrics", self.listen);
        wait_until("the bridge to listen", Duration::from_secs(10), || {
            ureq::get(&url).call().is_ok()
        });
    }

    /// SIGKILL, as a crash or the OOM killer would.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("bridge.log")).unwrap_or_default()
    }

    fn open_pr(&self) -> i64 {
        self.gitea
            .open_pull(
                "coop-cloud",
                "custom-html",
                &PullSpec {
                    poster: "bob".into(),
                    title: "Bump nginx".into(),
                    body: String::new(),
                    head_repo: None,
                    head_branch: "bump".into(),
                    head_sha: SHA.into(),
                    base_branch: None,
                },
            )
            .unwrap()
    }

    fn say(&self, pr: i64, who: &str, body: &str) -> i64 {
        self.gitea
            .comment("coop-cloud", "custom-html", pr, who, body)
            .unwrap()
    }

    fn builds(&self) -> Vec<standins::drone::Build> {
        (1..)
            .map_while(|n| self.drone.build("coop-cloud", "cc-ci", n))
            .collect()
    }

    fn bot_comments(&self, pr: i64) -> Vec<Comment> {
        self.bot
            .issue_comments("coop-cloud", "custom-html", pr, None)
            .unwrap()
            .into_iter()
            .filter(|c| c.user.as_ref().is_some_and(|u| u.login == BOT))
            .collect()
    }

    fn wait_bot_comment(&self, pr: i64, needle: &str, timeout: Duration) -> Comment {
        let mut found = None;
        wait_until(
            &format!("a bot comment containing {needle:?}"),
            timeout,
            || {
                found = self
                    .bot_comments(pr)
                    .into_iter()
                    .find(|c| c.body.contains(needle));
                found.is_some()
            },
        );
        found.unwrap()
    }

    fn hook_url(&self) -> String {
        format!("http://{}/hook", self.listen)
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.kill();
        let log = self.log();
        for t in &self.tokens {
            assert!(
                !log.contains(t.as_str()),
                "a token leaked into the bridge log"
            );
        }
        for s in &self.webhook_secrets {
            assert!(
                !log.contains(s.as_str()),
                "a webhook secret leaked into the bridge log"
            );
        }
        if std::thread::panicking() {
            eprintln!("--- bridge log ---\n{log}");
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn member_testme_by_polling_makes_one_build_and_a_result_comment() {
    let mut w = World::new("poll", QUICK, &[]);
    w.start();
    let pr = w.open_pr();
    let c = w.say(pr, "alice", "!testme");
    let done = w.wait_bot_comment(pr, "**passed**", Duration::from_secs(20));
    let builds = w.builds();
    assert_eq!(builds.len(), 1, "exactly one build");
    let p = &builds[0].params;
    assert_eq!(p["RECIPE"], "custom-html");
    assert_eq!(p["REF"], SHA);
    assert_eq!(p["PR"], pr.to_string());
    assert_eq!(p["COMMENT"], c.to_string());
    assert!(
        p["SRC"].ends_with("/coop-cloud/custom-html.git"),
        "{}",
        p["SRC"]
    );
    // The run's one comment carries the links and the reproduce command.
    assert!(done.body.contains("/coop-cloud/cc-ci/1)"), "{}", done.body);
    assert!(done.body.contains("https://ci.example.org/runs/1.html"));
    assert!(done
        .body
        .contains(&format!("cc-ci-stage-runner local custom-html --ref {SHA}")));
    assert!(
        done.body.contains("| install | ✅ passed |"),
        "{}",
        done.body
    );
    assert_eq!(w.bot_comments(pr).len(), 1, "one comment per run, edited");
    // Acknowledged with a reaction on the !testme comment.
    let reacted = w.gitea.requests().iter().any(|r| {
        r.request.method == "POST"
            && r.request.path
                == format!("/api/v1/repos/coop-cloud/custom-html/issues/comments/{c}/reactions")
            && String::from_utf8_lossy(&r.request.body).contains("eyes")
    });
    assert!(reacted, "the comment was acknowledged with a reaction");
    let log = w.log();
    assert!(log.contains("decision=triggered build=1"), "{log}");
}

#[test]
fn near_misses_edits_and_issue_comments_never_trigger() {
    let mut w = World::new("nearmiss", QUICK, &[]);
    let pr = w.open_pr();
    w.say(pr, "alice", "!testmexyz");
    w.say(pr, "alice", "> !testme");
    w.say(pr, "alice", "```\n!testme\n```");
    w.say(pr, "alice", "    !testme");
    let edited = w.say(pr, "alice", "looks good");
    // Gitea keeps whole seconds: an edit within the second it was written is
    // indistinguishable from the original for a poller (docs/bridge.md says so).
    std::thread::sleep(Duration::from_millis(1100));
    w.gitea.edit_comment(edited, "alice", "!testme").unwrap();
    // Started after the edit, so it never saw the original: polling must tell by the times.
    w.start();
    let issue = w
        .gitea
        .open_issue("coop-cloud", "custom-html", "bob", "a bug")
        .unwrap();
    w.say(issue, "alice", "!testme");
    // A repository that is not enrolled.
    w.gitea
        .comment("coop-cloud", "other", 1, "alice", "!testme")
        .ok();
    // Past a sweep and a few polls.
    std::thread::sleep(Duration::from_secs(5));
    assert!(w.builds().is_empty(), "no build from near misses");
    assert!(w.bot_comments(pr).is_empty());
    assert!(w.bot_comments(issue).is_empty());
    assert!(w.log().contains("reason=\"edited comment\""), "{}", w.log());
}

#[test]
fn outsiders_are_told_once_and_allowlisted_users_may_trigger() {
    let mut w = World::new("auth", QUICK, &[]);
    w.start();
    let pr = w.open_pr();
    w.say(pr, "eve", "!testme");
    w.wait_bot_comment(pr, "can only be started by", Duration::from_secs(10));
    w.say(pr, "eve", "!testme");
    std::thread::sleep(Duration::from_secs(3));
    let refusals: Vec<_> = w
        .bot_comments(pr)
        .into_iter()
        .filter(|c| c.body.contains("can only be started by"))
        .collect();
    assert_eq!(refusals.len(), 1, "one reply, not one per comment");
    assert!(w.builds().is_empty());
    // carol is on the allowlist, not in the org.
    w.say(pr, "carol", "!testme");
    w.wait_bot_comment(pr, "**passed**", Duration::from_secs(20));
    assert_eq!(w.builds().len(), 1);
}

#[test]
fn a_failing_membership_check_fails_closed_and_says_so() {
    let mut w = World::new("authfail", QUICK, &[]);
    w.gitea.inject(FaultRule::new(
        "/api/v1/orgs/*/members/*",
        Fault::Status { status: 500 },
    ));
    w.start();
    let pr = w.open_pr();
    w.say(pr, "alice", "!testme");
    w.wait_bot_comment(pr, "could not check", Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(2));
    assert!(w.builds().is_empty(), "fail closed");
}

#[test]
fn closed_pull_requests_get_a_short_reply() {
    let mut w = World::new("closed", QUICK, &[]);
    w.start();
    let pr = w.open_pr();
    w.gitea.close("coop-cloud", "custom-html", pr).unwrap();
    w.say(pr, "alice", "!testme");
    w.wait_bot_comment(pr, "only tests open pull requests", Duration::from_secs(10));
    assert!(w.builds().is_empty());
}

#[test]
fn drone_answering_null_is_reported_on_the_pr() {
    // A pipeline that never matches an API build.
    let yaml = QUICK.replace("event: [custom]", "event: [push]");
    let mut w = World::new("null", &yaml, &[]);
    w.start();
    let pr = w.open_pr();
    w.say(pr, "alice", "!testme");
    w.wait_bot_comment(pr, "matched no pipeline", Duration::from_secs(10));
    assert!(w.builds().is_empty());
}

#[test]
fn a_new_testme_supersedes_the_running_one() {
    let mut w = World::new("supersede", SLOW, &[]);
    w.start();
    let pr = w.open_pr();
    w.say(pr, "alice", "!testme");
    wait_until("the first build", Duration::from_secs(10), || {
        w.builds().len() == 1
    });
    w.say(pr, "alice", "!testme");
    w.wait_bot_comment(pr, "**superseded** by run #2", Duration::from_secs(15));
    let first = &w.builds()[0];
    assert_eq!(first.status, "killed", "the old run was cancelled in Drone");
    w.wait_bot_comment(pr, "run [#2]", Duration::from_secs(15));
    let finished = w.wait_bot_comment(pr, "**passed**", Duration::from_secs(20));
    assert!(finished.body.contains("run [#2]"));
    assert_eq!(w.builds().len(), 2);
}

#[test]
fn a_restart_resumes_following_the_run() {
    let mut w = World::new("restart", SLOW, &[]);
    w.start();
    let pr = w.open_pr();
    w.say(pr, "alice", "!testme");
    w.wait_bot_comment(pr, "run [#1]", Duration::from_secs(10));
    w.kill();
    w.start();
    let done = w.wait_bot_comment(pr, "**passed**", Duration::from_secs(20));
    assert!(done.body.contains("run [#1]"));
    assert_eq!(w.bot_comments(pr).len(), 1, "the same comment was edited");
    assert_eq!(w.builds().len(), 1);
}

#[test]
fn webhooks_trigger_fast_and_once_even_when_polling_sees_them_too() {
    let mut w = World::new("hook", QUICK, &["hook-secret-1"]);
    w.start();
    w.gitea
        .add_webhook(
            "coop-cloud",
            "custom-html",
            &HookSpec {
                url: w.hook_url(),
                secret: "hook-secret-1".into(),
                version: HookVersion::V1_21,
                events: vec!["issue_comment".into()],
            },
        )
        .unwrap();
    let pr = w.open_pr();
    let t0 = Instant::now();
    w.say(pr, "alice", "!testme");
    wait_until("a build from the webhook", Duration::from_secs(2), || {
        !w.builds().is_empty()
    });
    eprintln!("webhook → build in {:?}", t0.elapsed());
    w.wait_bot_comment(pr, "**passed**", Duration::from_secs(20));
    // Past a sweep: polling saw the same comment and did nothing.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(w.builds().len(), 1);
    let d = w.gitea.deliveries();
    assert!(d.iter().all(|d| d.status == Some(202)), "{d:?}");
}

fn post_hook(w: &World, body: &[u8], sig: Option<&str>) -> u16 {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut req = agent
        .post(w.hook_url())
        .header("X-Gitea-Event", "issue_comment")
        .header("Content-Type", "application/json");
    if let Some(s) = sig {
        req = req.header("X-Gitea-Signature", s);
    }
    req.send(body).map(|r| r.status().as_u16()).unwrap_or(0)
}

fn sign(secret: &str, body: &[u8]) -> String {
    bridge::webhook::sign(&Secret::new(secret), body)
}

#[test]
fn webhook_signatures_sizes_and_garbage() {
    let mut w = World::new("hooksig", QUICK, &["new-secret", "old-secret"]);
    w.start();
    let body = br#"{"action":"created"}"#;
    assert_eq!(post_hook(&w, body, None), 401, "missing signature");
    assert_eq!(post_hook(&w, body, Some(&sign("wrong", body))), 401);
    assert_eq!(post_hook(&w, body, Some("zz")), 401, "malformed signature");
    // Both secrets of a rotation are accepted; this signed body is not a payload.
    assert_eq!(post_hook(&w, body, Some(&sign("old-secret", body))), 400);
    assert_eq!(post_hook(&w, body, Some(&sign("new-secret", body))), 400);
    let big = vec![b' '; 2 * 1024 * 1024];
    assert_eq!(post_hook(&w, &big, Some(&sign("new-secret", &big))), 413);
    let garbage = b"{\"action\": \"created\", \"comment\": ";
    assert_eq!(
        post_hook(&w, garbage, Some(&sign("new-secret", garbage))),
        400
    );
    // Still healthy and serving.
    let m = ureq::get(format!("http://{}/metrics", w.listen))
        .call()
        .unwrap()
        .into_body()
        .read_to_string()
        .unwrap();
    assert!(m.contains("ccci_bridge_webhooks_rejected_total 7"), "{m}");
}

#[test]
fn without_a_secret_the_hook_does_not_exist() {
    let mut w = World::new("nohook", QUICK, &[]);
    w.start();
    let body = br#"{"action":"created"}"#;
    assert_eq!(post_hook(&w, body, Some(&sign("x", body))), 404);
    assert_eq!(post_hook(&w, body, None), 404);
}

#[test]
fn healthz_reflects_polling() {
    let mut w = World::new("health", QUICK, &[]);
    w.start();
    let url = format!("http://{}/healthz", w.listen);
    let status = || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        agent
            .get(&url)
            .call()
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    };
    wait_until("healthy", Duration::from_secs(5), || status() == 200);
}

#[test]
fn check_config_validates_and_help_explains() {
    let w = World::new("cfg", QUICK, &[]);
    let ok = Command::new(env!("CARGO_BIN_EXE_cc-ci-bridge"))
        .arg("--config")
        .arg(w.dir.join("config.json"))
        .arg("--check-config")
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    std::fs::write(w.dir.join("bad.json"), r#"{"gitea_url": "ftp://x"}"#).unwrap();
    let bad = Command::new(env!("CARGO_BIN_EXE_cc-ci-bridge"))
        .args(["--config"])
        .arg(w.dir.join("bad.json"))
        .arg("--check-config")
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    let help = Command::new(env!("CARGO_BIN_EXE_cc-ci-bridge"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("webhook_secret_files") && help.contains("USAGE"));
}
