//! Resident memory of the real bridge (release build) after 10,000 comments: webhooks and
//! polling both on, comments spread over 20 PRs, one in 20 an authorised `!testme` (500 Drone
//! builds, followed to their end), the rest chatter, near misses and outsiders' `!testme`.
//! VmRSS from /proc/<pid>/status before and after, and VmHWM (the peak).
//! Goal (issue 3): ≤ 15 MB after 10,000 comments.
//! Run with `cargo bench -p cc-ci-bridge --bench memory` (`BENCH_COMMENTS=N` for fewer).

#[path = "../tests/world/mod.rs"]
mod world;

use std::time::{Duration, Instant};

use world::{status_kb, wait_until, Opts, World, QUICK};

fn main() {
    let n: usize = std::env::var("BENCH_COMMENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let mut w = World::with(Opts {
        name: "bench-memory",
        yaml: QUICK,
        webhook_secrets: &["bench-hook-secret"],
        runner_capacity: 8,
        config: serde_json::json!({"poll_interval_secs": 1, "sweep_interval_secs": 5}),
        ..Default::default()
    });
    w.add_hook("custom-html", &w.hook_url());
    let prs: Vec<i64> = (0..20).map(|_| w.open_pr()).collect();
    w.start();
    let pid = w.pid();
    std::thread::sleep(Duration::from_secs(2));
    let before = status_kb(pid, "VmRSS:");
    let chatter = [
        ("bob", "looks good to me"),
        ("alice", "!testmexyz"),
        ("carol", "> !testme"),
        ("eve", "!testme"),
        ("bob", "could you rebase? the upgrade path changed in 2.1"),
    ];
    let started = Instant::now();
    let mut triggers = 0;
    for i in 0..n {
        let pr = prs[i % prs.len()];
        if i % 20 == 0 {
            w.say(pr, "alice", "!testme");
            triggers += 1;
        } else {
            let (who, body) = chatter[i % chatter.len()];
            w.say(pr, who, body);
        }
        // About 500 comments a second: a flood, not a denial of service.
        if i % 10 == 9 {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let posted = started.elapsed();
    wait_until(
        "every !testme built and followed to its end",
        Duration::from_secs(300),
        || {
            let builds = w.builds();
            let state = w.state();
            builds.len() >= triggers
                && builds
                    .iter()
                    .all(|b| standins::runner::status::is_done(&b.status))
                && state["runs"].as_object().is_none_or(|m| m.is_empty())
        },
    );
    let settled = started.elapsed();
    let after = status_kb(pid, "VmRSS:");
    let peak = status_kb(pid, "VmHWM:");
    let state_bytes = std::fs::metadata(w.dir.join("state/state.json"))
        .map(|m| m.len())
        .unwrap_or(0);
    println!(
        "memory: {n} comments ({triggers} !testme → {} builds) posted in {:.1} s, settled in {:.1} s",
        w.builds().len(),
        posted.as_secs_f64(),
        settled.as_secs_f64()
    );
    println!(
        "memory: VmRSS before {:.1} MB, after {:.1} MB, peak (VmHWM) {:.1} MB (goal <= 15 MB); state file {:.0} KB",
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        peak as f64 / 1024.0,
        state_bytes as f64 / 1024.0
    );
    assert_eq!(w.builds().len(), triggers, "one build per !testme");
    w.kill();
}
