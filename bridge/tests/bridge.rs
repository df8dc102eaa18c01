//! The real `cc-ci-bridge` binary against the stand-in Gitea and Drone: every rule of the
//! bridge, asserted on what the forge and Drone were asked and what the PR shows. The tests
//! whose name starts `real_gitea_` run the same body against the real Gitea (`dev/upstream`);
//! the ones left on the stand-in alone need a fault or a record only the stand-in has.

mod world;

use std::process::Command;
use std::time::{Duration, Instant};

use ccci::secret::Secret;
use standins::forge::Forge;
use standins::gitea::{HookSpec, HookVersion};
use standins::http::{Fault, FaultRule};

use world::{wait_until, World, BOT, QUICK, SLOW};

/// The reactions on a comment, read anonymously through the forge's API.
fn reactions<F: Forge>(w: &World<F>, comment: i64) -> Vec<String> {
    let url = format!(
        "{}/repos/coop-cloud/custom-html/issues/comments/{comment}/reactions",
        w.gitea.api_url()
    );
    let list: Vec<serde_json::Value> = ureq::get(&url)
        .call()
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap();
    list.iter()
        .map(|r| r["content"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn member_testme_by_polling_makes_one_build_and_a_result_comment() {
    member_testme_by_polling(World::new("poll", QUICK, &[]));
}

#[test]
fn real_gitea_member_testme_by_polling_makes_one_build_and_a_result_comment() {
    member_testme_by_polling(World::real("poll", QUICK, &[]));
}

fn member_testme_by_polling<F: Forge>(mut w: World<F>) {
    w.start();
    let pr = w.open_pr();
    let sha = w.head(pr);
    let c = w.say(pr, "alice", "!testme");
    let done = w.wait_bot_comment(pr, "**passed**", Duration::from_secs(20));
    let builds = w.builds();
    assert_eq!(builds.len(), 1, "exactly one build");
    let p = &builds[0].params;
    assert_eq!(p["RECIPE"], "custom-html");
    assert_eq!(p["REF"], sha);
    assert_eq!(p["PR"], pr.to_string());
    assert_eq!(p["COMMENT"], c.to_string());
    assert!(p["SRC"].ends_with("/bob/custom-html.git"), "{}", p["SRC"]);
    // The run's one comment carries the links and the reproduce command.
    assert!(done.body.contains("/coop-cloud/cc-ci/1)"), "{}", done.body);
    assert!(done.body.contains("https://ci.example.org/runs/1.html"));
    assert!(done
        .body
        .contains(&format!("cc-ci-stage-runner local custom-html --ref {sha}")));
    assert!(
        done.body.contains("| install | ✅ passed |"),
        "{}",
        done.body
    );
    assert_eq!(w.bot_comments(pr).len(), 1, "one comment per run, edited");
    // Acknowledged with a reaction on the !testme comment.
    assert_eq!(reactions(&w, c), ["eyes"], "acknowledged with a reaction");
    let log = w.log();
    assert!(log.contains("decision=triggered build=1"), "{log}");
}

#[test]
fn near_misses_edits_and_issue_comments_never_trigger() {
    near_misses(World::new("nearmiss", QUICK, &[]));
}

#[test]
fn real_gitea_near_misses_edits_and_issue_comments_never_trigger() {
    near_misses(World::real("nearmiss", QUICK, &[]));
}

fn near_misses<F: Forge>(mut w: World<F>) {
    let pr = w.open_pr();
    w.say(pr, "alice", "!testmexyz");
    w.say(pr, "alice", "> !testme");
    w.say(pr, "alice", "```\n!testme\n```");
    w.say(pr, "alice", "    !testme");
    let edited = w.say(pr, "alice", "looks good");
    // Gitea keeps whole seconds: an edit within the second it was written is
    // indistinguishable from the original for a poller (docs/bridge.md says so).
    std::thread::sleep(Duration::from_millis(1100));
    w.gitea
        .edit_comment("coop-cloud", "custom-html", edited, "alice", "!testme")
        .unwrap();
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
    outsiders(World::new("auth", QUICK, &[]));
}

#[test]
fn real_gitea_outsiders_are_told_once_and_allowlisted_users_may_trigger() {
    outsiders(World::real("auth", QUICK, &[]));
}

fn outsiders<F: Forge>(mut w: World<F>) {
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
    closed_pr(World::new("closed", QUICK, &[]));
}

#[test]
fn real_gitea_closed_pull_requests_get_a_short_reply() {
    closed_pr(World::real("closed", QUICK, &[]));
}

fn closed_pr<F: Forge>(mut w: World<F>) {
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
    // The old run's status was finished as superseded before the new one's began; the head
    // shows the new run's outcome.
    let list: Vec<serde_json::Value> = ureq::get(&format!(
        "{}/repos/coop-cloud/custom-html/statuses/{}",
        w.gitea.api_url(),
        w.head(pr)
    ))
    .call()
    .unwrap()
    .body_mut()
    .read_json()
    .unwrap();
    let find = |state: &str, desc: &str, run: i64| {
        list.iter()
            .find(|s| {
                s["status"] == state
                    && s["description"].as_str().unwrap().starts_with(desc)
                    && s["target_url"] == format!("https://ci.example.org/runs/{run}.html")
            })
            .unwrap_or_else(|| panic!("no {state} {desc:?} for run {run}: {list:?}"))["id"]
            .as_i64()
            .unwrap()
    };
    assert!(
        find("error", "superseded by run #2", 1) < find("pending", "", 2),
        "the new run's pending came after: {list:?}"
    );
    // The pipeline's steps print no verdict: no level is claimed.
    let (state, desc, _) = commit_status(&w, &w.head(pr), "cc-ci/testme").0.unwrap();
    assert_eq!((state.as_str(), desc.as_str()), ("success", "passed"));
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
    let w = webhooks_trigger_fast(
        World::new("hook", QUICK, &["hook-secret-1"]),
        2,
        |w, url| {
            w.gitea
                .add_webhook(
                    "coop-cloud",
                    "custom-html",
                    &HookSpec {
                        url: url.into(),
                        secret: "hook-secret-1".into(),
                        version: HookVersion::V1_21,
                        events: vec!["pull_request_comment".into()],
                    },
                )
                .unwrap();
        },
    );
    // The `!testme` delivery was accepted and queued.
    let d = w.gitea.deliveries();
    let statuses: Vec<(bool, Option<u16>)> = d
        .iter()
        .map(|d| (d.body.contains("\"body\": \"!testme\""), d.status))
        .collect();
    assert!(statuses.contains(&(true, Some(202))), "{statuses:?}");
}

/// Signed by Gitea itself: its HMAC, headers and payload are what the bridge must accept.
/// Gitea queues its deliveries: 0.3–0.6 s from comment to build here, now and then over 2 s,
/// so the bound is looser than the stand-in's; still far inside the 30 s poll.
#[test]
fn real_gitea_webhooks_trigger_fast_and_once_even_when_polling_sees_them_too() {
    webhooks_trigger_fast(
        World::real("hook", QUICK, &["hook-secret-1"]),
        10,
        |w, url| w.add_hook("custom-html", url),
    );
}

fn webhooks_trigger_fast<F: Forge>(
    mut w: World<F>,
    bound_secs: u64,
    add_hook: impl Fn(&World<F>, &str),
) -> World<F> {
    // Polling too slow to be the one that triggers within the bound below.
    w.set_config("poll_interval_secs", serde_json::json!(30));
    w.set_config("sweep_interval_secs", serde_json::json!(30));
    w.start();
    add_hook(&w, &w.hook_url());
    let pr = w.open_pr();
    let t0 = Instant::now();
    w.say(pr, "alice", "!testme");
    wait_until(
        "a build from the webhook",
        Duration::from_secs(bound_secs),
        || !w.builds().is_empty(),
    );
    eprintln!("{} webhook → build in {:?}", w.gitea.kind(), t0.elapsed());
    w.wait_bot_comment(pr, "**passed**", Duration::from_secs(20));
    // A restart sweeps at once: polling sees the same comment and does nothing.
    w.kill();
    w.start();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(w.builds().len(), 1);
    w
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

/// A started bridge whose polls are too slow to matter, and a webhook to it on the recipe.
fn hooked(name: &str) -> World {
    let mut w = World::new(name, QUICK, &["hook-secret-1"]);
    w.set_config("poll_interval_secs", serde_json::json!(30));
    w.set_config("sweep_interval_secs", serde_json::json!(30));
    w.start();
    w.gitea
        .add_webhook(
            "coop-cloud",
            "custom-html",
            &HookSpec {
                url: w.hook_url(),
                secret: "hook-secret-1".into(),
                version: HookVersion::V1_21,
                events: vec!["pull_request_comment".into()],
            },
        )
        .unwrap();
    w
}

/// A validly signed `!testme` delivery, captured and replayed after the bridge forgot the
/// comment (its memory of handled comments ages out; here its state is wiped), starts
/// nothing when the comment is older than the trigger window: the comment's own time, in the
/// signed payload, refuses it — the first time and on the replay.
#[test]
fn a_replayed_delivery_of_an_old_testme_starts_nothing() {
    let mut w = hooked("replay");
    let pr = w.open_pr();
    let now = w.gitea.now();
    w.gitea.set_now(now - 8 * 24 * 3600);
    w.say(pr, "alice", "!testme");
    w.gitea.real_time();
    let ignored = |w: &World| {
        w.log()
            .lines()
            .filter(|l| {
                l.contains("source=webhook")
                    && l.contains("reason=\"comment older than the trigger window (7 days)\"")
            })
            .count()
    };
    wait_until("the old comment refused", Duration::from_secs(10), || {
        ignored(&w) == 1
    });
    // The stand-in records a delivery's answer once its request returns, which may be just
    // after the bridge logged its decision.
    let delivered = || {
        w.gitea
            .deliveries()
            .into_iter()
            .find(|d| d.body.contains("\"body\": \"!testme\"") && d.status.is_some())
    };
    wait_until("the delivery answered", Duration::from_secs(10), || {
        delivered().is_some()
    });
    let d = delivered().unwrap();
    assert_eq!(
        d.status,
        Some(202),
        "accepted: the decision is the engine's"
    );
    w.kill();
    std::fs::remove_file(w.dir.join("state/state.json")).unwrap();
    w.start();
    let sig = d
        .headers
        .iter()
        .find(|(k, _)| k == "X-Gitea-Signature")
        .map(|(_, v)| v.clone())
        .unwrap();
    assert_eq!(post_hook(&w, d.body.as_bytes(), Some(&sig)), 202);
    // The log runs on across restarts: this is its second refusal.
    wait_until("the replay refused", Duration::from_secs(10), || {
        ignored(&w) == 2
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(w.builds().len(), 0, "no run, from the hook or the polls");
    assert!(w.bot_comments(pr).is_empty());
}

/// Slow clients hold nothing up: 300 connections that send half a head, or a whole head with
/// a large Content-Length and then nothing, while `/healthz`, `/metrics` and a real delivery
/// from Gitea are answered at once; each slow one gets its 408 at its deadline and is closed.
#[test]
fn slow_clients_hold_nothing_up() {
    let w = hooked("slow");
    let pr = w.open_pr();
    let mut slow = Vec::new();
    for i in 0..300 {
        let mut s = std::net::TcpStream::connect(&w.listen).unwrap();
        let part: &[u8] = if i % 2 == 0 {
            b"POST /hook HTTP/1.1\r\nHost: x\r\n"
        } else {
            b"POST /hook HTTP/1.1\r\nHost: x\r\nX-Gitea-Event: issue_comment\r\nContent-Length: 500000\r\n\r\n{"
        };
        std::io::Write::write_all(&mut s, part).unwrap();
        slow.push(s);
    }
    let metrics = || {
        ureq::get(format!("http://{}/metrics", w.listen))
            .call()
            .unwrap()
            .into_body()
            .read_to_string()
            .unwrap()
    };
    wait_until("300 held connections", Duration::from_secs(5), || {
        metrics()
            .lines()
            .find_map(|l| l.strip_prefix("ccci_bridge_http_connections "))
            .is_some_and(|n| n.parse::<u32>().unwrap() >= 300)
    });
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(2)))
        .build()
        .into();
    let t = Instant::now();
    let h = agent
        .get(format!("http://{}/healthz", w.listen))
        .call()
        .unwrap();
    assert!([200, 503].contains(&h.status().as_u16()));
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
    let t = Instant::now();
    w.say(pr, "alice", "!testme");
    wait_until("a build from the webhook", Duration::from_secs(3), || {
        !w.builds().is_empty()
    });
    eprintln!(
        "delivery -> build under 300 slow clients: {:?}",
        t.elapsed()
    );
    for mut s in slow {
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let mut out = String::new();
        let _ = std::io::Read::read_to_string(&mut s, &mut out);
        assert!(out.starts_with("HTTP/1.1 408 "), "{out:?}");
    }
    wait_until("the slow ones closed", Duration::from_secs(5), || {
        metrics().contains("ccci_bridge_http_connections 1\n")
    });
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
    let check_config = |file: &str| {
        Command::new(env!("CARGO_BIN_EXE_cc-ci-bridge"))
            .arg("--config")
            .arg(w.dir.join(file))
            .arg("--check-config")
            .output()
            .unwrap()
    };
    let ok = check_config("config.json");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    std::fs::write(w.dir.join("bad.json"), r#"{"gitea_url": "ftp://x"}"#).unwrap();
    let bad = check_config("bad.json");
    assert_eq!(bad.status.code(), Some(2));
    let help = Command::new(env!("CARGO_BIN_EXE_cc-ci-bridge"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("webhook_secret_files") && help.contains("USAGE"));

    // A hook to a bridge subscribed to issue comments only: Gitea would never send it a PR
    // comment. Said when the bot may read the hooks; a bot that may not says nothing.
    w.gitea
        .add_webhook(
            "coop-cloud",
            "custom-html",
            &HookSpec {
                url: "https://ci.example.org/hook".into(),
                secret: "s".into(),
                version: HookVersion::V1_21,
                events: vec!["issue_comment".into()],
            },
        )
        .unwrap();
    let check = || {
        let out = check_config("config.json");
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let said = check();
    assert!(!said.contains("webhook"), "the bot reads no hooks: {said}");
    w.gitea.create_admin("site-admin").unwrap();
    let token = w.gitea.create_token("site-admin", &["all"]).unwrap();
    std::fs::write(w.dir.join("admin-token"), &token).unwrap();
    w.set_config(
        "gitea_token_file",
        serde_json::json!(w.dir.join("admin-token")),
    );
    let said = check();
    assert!(
        said.contains("warning: coop-cloud/custom-html: webhook ")
            && said.contains("to https://ci.example.org/hook is not subscribed to Pull Request Comment (pull_request_comment)"),
        "{said}"
    );
    assert!(!said.contains(&token), "no token in what it says");
}

#[test]
fn a_pr_whose_fork_was_deleted_is_closed_and_gets_the_short_reply() {
    deleted_fork(World::new("forkgone", QUICK, &[]));
}

/// The stand-in once kept such a PR open (head.repo null); Gitea closes it.
#[test]
fn real_gitea_a_pr_whose_fork_was_deleted_is_closed_and_gets_the_short_reply() {
    deleted_fork(World::real("forkgone", QUICK, &[]));
}

fn deleted_fork<F: Forge>(mut w: World<F>) {
    let pr = w.open_pr();
    // Gitea closes the PRs from a deleted repository (services/repository/repository.go).
    w.gitea.delete_repo("bob", "custom-html").unwrap();
    w.start();
    w.say(pr, "alice", "!testme");
    w.wait_bot_comment(pr, "only tests open pull requests", Duration::from_secs(10));
    assert!(w.builds().is_empty());
}

/// The combined commit status of `sha` for `context`, read anonymously: (state, description,
/// target_url), and how many statuses were set in all.
fn commit_status<F: Forge>(
    w: &World<F>,
    sha: &str,
    context: &str,
) -> (Option<(String, String, String)>, usize) {
    let get = |path: &str| -> serde_json::Value {
        ureq::get(&format!(
            "{}/repos/coop-cloud/custom-html/{path}",
            w.gitea.api_url()
        ))
        .call()
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap()
    };
    let list = get(&format!("statuses/{sha}"));
    let all = list.as_array().unwrap_or_else(|| panic!("{list}")).len();
    let c = get(&format!("commits/{sha}/status"));
    let mine = c["statuses"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["context"] == context)
        .map(|s| {
            (
                s["status"].as_str().unwrap().to_owned(),
                s["description"].as_str().unwrap().to_owned(),
                s["target_url"].as_str().unwrap().to_owned(),
            )
        });
    (mine, all)
}

#[test]
fn rows_and_the_commit_status_say_what_stage_runner_decided() {
    verdicts_reach_the_pr(World::new("verdicts", world::VERDICTS, &[]));
}

#[test]
fn real_gitea_rows_and_the_commit_status_say_what_stage_runner_decided() {
    verdicts_reach_the_pr(World::real("verdicts", world::VERDICTS, &[]));
}

fn verdicts_reach_the_pr<F: Forge>(mut w: World<F>) {
    w.set_config("status_context", "ci/cc-ci".into());
    w.start();
    let pr = w.open_pr();
    let sha = w.head(pr);
    w.say(pr, "alice", "!testme");
    let done = w.wait_bot_comment(pr, "Reproduce", Duration::from_secs(30));
    let body = &done.body;
    assert!(
        body.contains("**failed** ❌ · reached **level 0 of 5 (broken)**"),
        "{body}"
    );
    let row = |name: &str| {
        body.lines()
            .find(|l| l.starts_with(&format!("| {name} |")))
            .unwrap_or_else(|| panic!("no {name} row: {body}"))
            .to_owned()
    };
    let install = row("install");
    assert!(install.contains("❌ failed"), "{install}");
    assert!(
        install.contains("tests failed in phase install"),
        "{install}"
    );
    assert!(
        install.contains("`custom-html/test_install.py::test_index` — assert 200 == 404"),
        "{install}"
    );
    assert!(
        install.contains("(https://ci.example.org/runs/1.html#stage-install)"),
        "{install}"
    );
    assert!(install.contains("/coop-cloud/cc-ci/1/1/1)"), "{install}");
    // Drone calls the skipped step a success; the row says what stage-runner decided.
    let upgrade = row("upgrade");
    assert!(
        upgrade.contains("⏭️ skipped") && upgrade.contains("install failed"),
        "{upgrade}"
    );
    let (mine, all) = commit_status(&w, &sha, "ci/cc-ci");
    let (state, desc, url) = mine.expect("a status in the configured context");
    assert_eq!(state, "failure");
    assert_eq!(
        desc,
        "failed at install: tests failed in phase install (test_index) · level 0 of 5 (broken)"
    );
    assert_eq!(url, "https://ci.example.org/runs/1.html");
    assert!(all >= 2, "pending first, then the outcome: {all}");
    // Each finished step's log was read once.
    let reads = w
        .drone
        .requests()
        .iter()
        .filter(|r| r.request.path.contains("/logs/"))
        .count();
    assert_eq!(reads, 2, "one log read per finished step");
}

#[test]
fn a_bot_that_may_not_set_statuses_says_so_once_and_keeps_commenting() {
    no_status_rights(World::new("norights", QUICK, &[]));
}

#[test]
fn real_gitea_a_bot_that_may_not_set_statuses_says_so_once_and_keeps_commenting() {
    no_status_rights(World::real("norights", QUICK, &[]));
}

fn no_status_rights<F: Forge>(mut w: World<F>) {
    // A read-level token: no write:repository.
    let narrow = w
        .gitea
        .create_token(
            world::BOT,
            &[
                "read:issue",
                "write:issue",
                "read:repository",
                "read:organization",
                "write:notification",
            ],
        )
        .unwrap();
    std::fs::write(w.dir.join("gitea-token"), format!("{narrow}\n")).unwrap();
    let check = Command::new(env!("CARGO_BIN_EXE_cc-ci-bridge"))
        .arg("--config")
        .arg(w.dir.join("config.json"))
        .arg("--check-config")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{out}");
    assert!(
        out.contains("warning: coop-cloud/custom-html: the bot may not set commit statuses"),
        "{out}"
    );
    w.start();
    let pr = w.open_pr();
    let sha = w.head(pr);
    w.say(pr, "alice", "!testme");
    w.wait_bot_comment(pr, "**passed**", Duration::from_secs(30));
    w.say(pr, "alice", "!testme");
    wait_until("the second run's result", Duration::from_secs(30), || {
        w.bot_comments(pr)
            .iter()
            .filter(|c| c.body.contains("**passed**"))
            .count()
            == 2
    });
    let log = w.log();
    assert_eq!(
        log.matches("the bot may not set commit statuses").count(),
        1,
        "said once: {log}"
    );
    assert_eq!(commit_status(&w, &sha, "cc-ci/testme"), (None, 0));
}

/// The bridge's state directory on a small tmpfs, unmounted when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(at: &std::path::Path, size: &str) -> Tmpfs {
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .unwrap();
        assert!(
            ok.success(),
            "mounting a tmpfs at {} (this test needs root)",
            at.display()
        );
        Tmpfs(at.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// A full disk under the state: a `!testme` whose intent cannot be saved starts no build
/// (one would be made again after a restart); `/healthz` says the state is not writable and
/// `/metrics` counts the failures. Space back: the comment gets its one build, and a restart
/// makes no second.
#[test]
fn a_full_disk_starts_no_build_until_the_intent_is_durable() {
    let mut w = World::new("fulldisk", QUICK, &[]);
    let state = w.dir.join("state");
    let _fs = Tmpfs::mount(&state, "256k");
    w.start();
    let health = || {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .new_agent()
            .get(format!("http://{}/healthz", w.listen))
            .call()
            .map(|mut r| (r.status().as_u16(), r.body_mut().read_to_string().unwrap()))
            .unwrap()
    };
    wait_until("healthy", Duration::from_secs(10), || health().0 == 200);
    let pr = w.open_pr();
    // Fill the disk to the last byte.
    let filler = state.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        while f.write_all(&[0u8; 4096]).is_ok() {}
        while f.write_all(&[0u8]).is_ok() {}
    }
    w.say(pr, "alice", "!testme");
    wait_until("the intent refused", Duration::from_secs(15), || {
        w.log()
            .contains("not starting a run: its intent could not be saved")
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        w.builds().len(),
        0,
        "no build while the intent is not durable"
    );
    assert_eq!(
        health(),
        (503, "state directory is not writable\n".to_owned())
    );
    let m = ureq::get(format!("http://{}/metrics", w.listen))
        .call()
        .unwrap()
        .into_body()
        .read_to_string()
        .unwrap();
    assert!(
        !m.contains("ccci_bridge_state_save_failures_total 0"),
        "{m}"
    );
    std::fs::remove_file(&filler).unwrap();
    wait_until("the one build", Duration::from_secs(30), || {
        w.builds().len() == 1
    });
    w.wait_bot_comment(pr, "**passed**", Duration::from_secs(30));
    wait_until("healthy again", Duration::from_secs(10), || {
        health().0 == 200
    });
    w.kill();
    w.start();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(w.builds().len(), 1, "a restart makes no second");
    let runs = w
        .bot_comments(pr)
        .iter()
        .filter(|c| c.body.contains("**cc-ci** run"))
        .count();
    assert_eq!(runs, 1, "one comment for the one run");
}

/// A repository the bot watches but cc-ci has not enrolled: a maintainer's `!testme` there
/// gets one reply saying so and starts nothing; an outsider's gets silence.
#[test]
fn a_testme_on_a_repository_not_enrolled_tells_its_maintainers_once() {
    let mut w = World::new("unenrolled", QUICK, &[]);
    w.gitea.watch(BOT, "coop-cloud", "other").unwrap();
    let pr = w.open_pr_in("other");
    w.start();
    let say = |who: &str| {
        w.gitea
            .comment("coop-cloud", "other", pr, who, "!testme")
            .unwrap()
    };
    let theirs = || -> Vec<String> {
        w.bot
            .issue_comments("coop-cloud", "other", pr, None)
            .unwrap()
            .into_iter()
            .filter(|c| c.user.as_ref().is_some_and(|u| u.login == BOT))
            .map(|c| c.body)
            .collect()
    };
    say("eve");
    say("alice");
    wait_until("the reply", Duration::from_secs(15), || {
        !theirs().is_empty()
    });
    say("alice");
    // Past a few polls and a sweep.
    std::thread::sleep(Duration::from_secs(5));
    let replies = theirs();
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert!(
        replies[0].contains("does not test `coop-cloud/other`")
            && replies[0].contains("nix/hosts/cc-ci/instance.nix"),
        "{}",
        replies[0]
    );
    assert!(w.builds().is_empty(), "nothing started");
    let log = w.log();
    assert!(
        log.contains("reason=\"repository not enrolled, already told\""),
        "{log}"
    );
}
