//! Exactly once, whatever happens: the real bridge SIGKILLed at random points (or talking to a
//! Gitea and Drone that fail one request in ten) while `!testme` and its near misses stream in
//! on several PRs from members, allowlisted users and outsiders, with webhooks and polling
//! both on. In the end every authorised `!testme` has exactly one Drone build (matched by its
//! `COMMENT` param) and exactly one status comment carrying that build's marker, ending in a
//! final outcome; nothing else was triggered or posted twice.
//!
//! The run is driven by a seeded RNG whose seed is printed; `CRASH_SEED=<n>` replays it (the
//! kill points land in the same places as far as the machine's timing allows).

mod world;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use standins::gitea::Gitea;
use standins::http::{Fault, FaultRule};

use world::{kill_bridge, spawn_bridge, Opts, World, BOT, QUICK};

/// xorshift64*: small, seedable, good enough to pick delays and comments.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn seed(test: &str) -> u64 {
    let seed = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("{test}: seed {seed} (replay with CRASH_SEED={seed})");
    seed
}

/// A knob for the scale of a run: `bench/reliability.sh` turns these up (500 comments on 20
/// PRs, 20 kills) where CI keeps them small.
fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Who says what, and whether it must start a run. Weights repeat entries.
const MENU: &[(&str, &str, bool)] = &[
    ("alice", "!testme", true),
    ("alice", "!testme", true),
    ("alice", "!testme", true),
    ("carol", "!testme", true),
    ("carol", "!testme", true),
    ("alice", "\n  !testme \r\n", true),
    ("eve", "!testme", false),
    ("eve", "!testme", false),
    ("bob", "!testme", false),
    ("alice", "!testmexyz", false),
    ("alice", "> !testme", false),
    ("carol", "```\n!testme\n```", false),
    ("alice", "    !testme", false),
    ("bob", "looks good to me", false),
];

struct Posted {
    id: i64,
    /// Unix ms, the stand-ins' clock.
    at_ms: u64,
    pr: i64,
    user: &'static str,
    triggers: bool,
}

/// Posts `n` comments at random intervals of up to `gap_ms`; tells `triggered` (when given)
/// right after each authorised `!testme`.
fn stream(
    gitea: &Gitea,
    prs: &[i64],
    rng: &mut Rng,
    n: usize,
    gap_ms: u64,
    triggered: Option<mpsc::Sender<()>>,
) -> Vec<Posted> {
    let mut posted = Vec::new();
    for _ in 0..n {
        std::thread::sleep(Duration::from_millis(rng.below(gap_ms)));
        let pr = prs[rng.below(prs.len() as u64) as usize];
        let (user, body, triggers) = MENU[rng.below(MENU.len() as u64) as usize];
        let id = gitea
            .comment("coop-cloud", "custom-html", pr, user, body)
            .unwrap();
        posted.push(Posted {
            id,
            at_ms: now_ms(),
            pr,
            user,
            triggers,
        });
        if let (true, Some(tx)) = (triggers, &triggered) {
            let _ = tx.send(());
        }
    }
    posted
}

/// Outcomes the status comment may end in (`bridge/src/comment.rs`), with the Drone status
/// each stands for: a superseded run was cancelled in Drone.
const FINAL: &[(&str, &str)] = &[
    ("**superseded**", "killed"),
    ("**passed**", "success"),
    ("**failed**", "failure"),
    ("**cancelled**", "killed"),
    ("**could not run**", "error"),
];

/// What the world shows at the end, and what is wrong with it (empty when all holds).
fn problems(w: &World, prs: &[i64], posted: &[Posted]) -> Vec<String> {
    let mut out = Vec::new();
    let want: BTreeSet<i64> = posted.iter().filter(|p| p.triggers).map(|p| p.id).collect();
    let builds = w.builds();
    let mut by_comment: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for b in &builds {
        let c: i64 = b
            .params
            .get("COMMENT")
            .and_then(|c| c.parse().ok())
            .unwrap_or(-1);
        by_comment.entry(c).or_default().push(b.number);
        if !standins::runner::status::is_done(&b.status) {
            out.push(format!("build {} is still {}", b.number, b.status));
        }
    }
    for id in &want {
        match by_comment.get(id).map(Vec::len) {
            Some(1) => {}
            None => out.push(format!("comment {id} has no build")),
            Some(n) => out.push(format!("comment {id} has {n} builds: {:?}", by_comment[id])),
        }
    }
    for (c, nums) in &by_comment {
        if !want.contains(c) {
            out.push(format!(
                "builds {nums:?} were triggered by comment {c}, which must not trigger"
            ));
        }
    }
    let mut bot = Vec::new();
    for &pr in prs {
        // The test reads through the same (maybe faulty) API: a failed read is another round.
        match w.bot.issue_comments("coop-cloud", "custom-html", pr, None) {
            Ok(cs) => bot.extend(
                cs.into_iter()
                    .filter(|c| c.user.as_ref().is_some_and(|u| u.login == BOT))
                    .map(|c| (pr, c)),
            ),
            Err(e) => {
                out.push(format!("reading PR {pr}'s comments failed: {e:#}"));
                return out;
            }
        }
    }
    for b in &builds {
        let mark = format!("<!-- cc-ci:build={} -->", b.number);
        let carrying: Vec<_> = bot.iter().filter(|(_, c)| c.body.contains(&mark)).collect();
        match carrying.as_slice() {
            [(pr, c)] => {
                if b.params.get("PR") != Some(&pr.to_string()) {
                    out.push(format!("build {}'s comment is on PR {pr}", b.number));
                }
                match FINAL.iter().find(|(f, _)| c.body.contains(f)) {
                    None => out.push(format!(
                        "build {}'s comment has no final outcome: {:?}",
                        b.number, c.body
                    )),
                    Some((f, status)) if *status != b.status => out.push(format!(
                        "build {}'s comment says {f} but Drone says {}",
                        b.number, b.status
                    )),
                    Some(_) => {}
                }
            }
            [] => out.push(format!("build {} has no status comment", b.number)),
            many => out.push(format!(
                "build {} has {} status comments",
                b.number,
                many.len()
            )),
        }
    }
    // Every other bot comment is the one refusal an outsider gets per PR.
    let mut refusals: BTreeMap<(i64, String), usize> = BTreeMap::new();
    for (pr, c) in &bot {
        if c.body.contains("<!-- cc-ci:build=") {
            continue;
        }
        match c.body.split_once(" cc-ci runs can only be started by") {
            Some((who, _)) => *refusals.entry((*pr, who.to_owned())).or_default() += 1,
            None => out.push(format!("unexpected bot comment on PR {pr}: {:?}", c.body)),
        }
    }
    for ((pr, who), n) in refusals {
        let told = posted
            .iter()
            .any(|p| p.pr == pr && !p.triggers && format!("@{}", p.user) == who);
        if n > 1 || !told || who == "@alice" || who == "@carol" {
            out.push(format!("{n} refusals to {who} on PR {pr}"));
        }
    }
    let state = w.state();
    for key in ["intents", "runs"] {
        if state[key].as_object().is_some_and(|m| !m.is_empty()) {
            out.push(format!("state still holds {key}: {}", state[key]));
        }
    }
    out
}

/// True when, as far as Drone and the bridge's state file tell (no Gitea request, so no
/// fault), every authorised `!testme` has a finished build and the bridge follows nothing.
fn quiet(w: &World, posted: &[Posted]) -> bool {
    let builds = w.builds();
    let state = w.state();
    let empty = |key: &str| state[key].as_object().is_none_or(|m| m.is_empty());
    builds
        .iter()
        .all(|b| standins::runner::status::is_done(&b.status))
        && posted.iter().filter(|p| p.triggers).all(|p| {
            builds
                .iter()
                .any(|b| b.params.get("COMMENT") == Some(&p.id.to_string()))
        })
        && empty("intents")
        && empty("runs")
}

/// The settling bound, grown with the number of comments.
fn bound(base_secs: u64, posted: &[Posted]) -> Duration {
    Duration::from_secs(base_secs) + Duration::from_millis(200 * posted.len() as u64)
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Waits (bounded) for the world to settle, then asserts it is exactly-once.
fn settle_and_check(w: &World, prs: &[i64], posted: &[Posted], bound: Duration) {
    let start = Instant::now();
    while start.elapsed() < bound && !quiet(w, posted) {
        std::thread::sleep(Duration::from_millis(200));
    }
    // Past a sweep and a poll, faults still on: nothing may come late or twice.
    std::thread::sleep(Duration::from_secs(3));
    let settled = start.elapsed();
    // The test reads the PRs through the API too; with the faults gone it reads them whole.
    w.gitea.clear_faults();
    w.drone.clear_faults();
    let mut last = problems(w, prs, posted);
    let end = Instant::now() + Duration::from_secs(5);
    while !last.is_empty() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(250));
        last = problems(w, prs, posted);
    }
    let triggers = posted.iter().filter(|p| p.triggers).count();
    // How long a comment took to become a build, from Drone's request log.
    let mut lag: Vec<u64> = w
        .drone
        .requests()
        .iter()
        .filter(|r| r.request.method == "POST" && r.request.path.ends_with("/builds"))
        .filter_map(|r| {
            let c = r.request.query("COMMENT")?;
            let p = posted.iter().find(|p| p.id.to_string() == c)?;
            Some(r.at_ms.saturating_sub(p.at_ms))
        })
        .collect();
    lag.sort_unstable();
    let log = w.log();
    eprintln!(
        "settled in {settled:?}: {} comments, {} authorised !testme, {} builds; \
         comment → build request p50 {} ms; log: {} adopted builds, {} resumed intents, \
         {} retries",
        posted.len(),
        triggers,
        w.builds().len(),
        lag.get(lag.len() / 2).copied().unwrap_or(0),
        log.matches("adopted=true").count(),
        log.matches("resuming intent").count(),
        log.matches("will retry").count(),
    );
    let count = |needle: &str| last.iter().filter(|p| p.contains(needle)).count();
    eprintln!(
        "exactly-once: comments {}, builds expected {triggers}, builds made {}, duplicates {}, \
         missed {}, wrongly triggered {}",
        posted.len(),
        w.builds().len(),
        count(" builds: "),
        count("has no build"),
        count("must not trigger"),
    );
    assert!(
        last.is_empty(),
        "not exactly once after {bound:?}:\n  {}",
        last.join("\n  ")
    );
}

fn crash_world(name: &str) -> (World, Vec<i64>) {
    let w = World::with(Opts {
        name,
        yaml: QUICK,
        webhook_secrets: &["crash-hook-secret"],
        runner_capacity: 4,
        config: serde_json::json!({"request_timeout_secs": 1}),
        ..Default::default()
    });
    w.add_hook("custom-html", &w.hook_url());
    let prs: Vec<i64> = (0..knob("CRASH_PRS", 4)).map(|_| w.open_pr()).collect();
    (w, prs)
}

#[test]
fn sigkill_at_random_points_leaves_every_testme_with_one_build_and_one_comment() {
    let seed = seed("crash");
    let (mut w, prs) = crash_world("crash");
    let mut kill_rng = Rng::new(seed);
    let mut comment_rng = Rng::new(seed ^ 0x9E37_79B9_7F4A_7C15);
    w.start();
    let kills = knob("CRASH_KILLS", 12 + kill_rng.below(7) as usize);
    // Creating a build and posting a comment take a while, as on a busy host: the work is
    // done when the answer is held back, which widens the windows a kill must not break.
    w.drone
        .inject(FaultRule::new("/api/repos/*/*/builds", Fault::Delay { ms: 150 }).method("POST"));
    w.gitea.inject(
        FaultRule::new(
            "/api/v1/repos/*/*/issues/*/comments",
            Fault::Delay { ms: 150 },
        )
        .method("POST"),
    );
    let World {
        gitea,
        child,
        dir,
        listen,
        ..
    } = &mut w;
    let gitea: &Gitea = gitea;
    let (tx, rx) = mpsc::channel();
    let mut aimed = 0;
    let posted = std::thread::scope(|s| {
        let streamer = s.spawn(|| {
            stream(
                gitea,
                &prs,
                &mut comment_rng,
                knob("CRASH_COMMENTS", 48),
                450,
                Some(tx),
            )
        });
        for _ in 0..kills {
            while rx.try_recv().is_ok() {}
            // A third of the kills land anywhere; the rest within 400 ms of an authorised `!testme`,
            // where the windows between intent, build, state and comment are.
            if kill_rng.below(3) == 0 {
                std::thread::sleep(Duration::from_millis(kill_rng.below(1500)));
            } else if rx.recv_timeout(Duration::from_millis(1500)).is_ok() {
                aimed += 1;
                std::thread::sleep(Duration::from_millis(kill_rng.below(400)));
            }
            kill_bridge(child);
            // Down for a moment now and then: webhooks sent meanwhile are lost for good.
            std::thread::sleep(Duration::from_millis(kill_rng.below(4) * 100));
            *child = Some(spawn_bridge(dir, listen));
        }
        streamer.join().unwrap()
    });
    eprintln!("crash: {kills} SIGKILLs, {aimed} of them just after a !testme");
    settle_and_check(&w, &prs, &posted, bound(40, &posted));
}

#[test]
fn one_request_in_ten_failing_still_gives_exactly_once() {
    let seed = seed("faults");
    let (mut w, prs) = crash_world("faults");
    let mut comment_rng = Rng::new(seed);
    // About one request in ten: 500s, hangs past the bridge's 1 s timeout, JSON that does not
    // parse, and bodies cut short after the work was done (the nastiest: the build or the
    // comment exists, the bridge cannot know). The membership route is left alone: a failing
    // check refuses by design (fail closed; bridge.rs pins that), which is not a lost run.
    for (p, fault) in [
        (0.04, Fault::Status { status: 500 }),
        (0.02, Fault::Hang),
        (0.02, Fault::MalformedJson),
        (0.02, Fault::Truncated),
    ] {
        for path in ["/api/v1/repos/**", "/api/v1/notifications/**"] {
            w.gitea
                .inject(FaultRule::new(path, fault.clone()).probability(p));
        }
        w.drone
            .inject(FaultRule::new("/api/**", fault.clone()).probability(p));
    }
    w.start();
    let rss_before = rss_kb(w.pid());
    let posted = stream(
        &w.gitea,
        &prs,
        &mut comment_rng,
        knob("CRASH_COMMENTS", 40),
        400,
        None,
    );
    // A comment unlucky several times in a row backs off up to 2 min between tries.
    settle_and_check(&w, &prs, &posted, bound(150, &posted));
    eprintln!(
        "faults: bridge VmRSS {} kB before the comments, {} kB after",
        rss_before,
        rss_kb(w.pid())
    );
    let all: Vec<_> = w
        .gitea
        .requests()
        .into_iter()
        .chain(w.drone.requests())
        .collect();
    let faulted = all.iter().filter(|r| r.fault.is_some()).count();
    eprintln!("faults: {faulted} of {} requests were faulted", all.len());
    assert!(faulted > 0, "the faults were injected");
}
