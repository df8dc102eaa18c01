//! Gitea requests per idle poll cycle with 10, 100 and 500 enrolled repositories: the real
//! bridge (release build) polls fast (every 1 s) with the sweep set far off and nothing new
//! happening; every request it makes to the stand-in Gitea over several cycles is counted.
//! Goal (issue 3): 1 request per cycle, however many repositories are enrolled.
//! Run with `cargo bench -p cc-ci-bridge --bench idle_poll`.

#[path = "../tests/world/mod.rs"]
mod world;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use world::{wait_until, Opts, World, QUICK};

const CYCLES: usize = 5;

fn main() {
    for repos in [10usize, 100, 500] {
        let name = format!("bench-idle-{repos}");
        let mut w = World::with(Opts {
            name: &name,
            yaml: QUICK,
            extra_repos: repos - 1,
            config: serde_json::json!({"poll_interval_secs": 1, "sweep_interval_secs": 3600}),
            ..Default::default()
        });
        let started = Instant::now();
        w.start();
        let notif = |w: &World| {
            w.gitea
                .requests()
                .iter()
                .filter(|r| r.request.path == "/api/v1/notifications")
                .count()
        };
        // Start-up watches every repository and sweeps it once; idle begins after that.
        wait_until("the first fast poll", Duration::from_secs(60), || {
            notif(&w) >= 1
        });
        let startup = w.gitea.requests().len();
        let startup_time = started.elapsed();
        w.gitea.clear_requests();
        wait_until("idle cycles", Duration::from_secs(30), || {
            notif(&w) >= CYCLES
        });
        // Everything up to the CYCLES-th poll, which opens the last counted cycle's end.
        let log = w.gitea.requests();
        let cut = log
            .iter()
            .enumerate()
            .filter(|(_, r)| r.request.path == "/api/v1/notifications")
            .nth(CYCLES - 1)
            .map(|(i, _)| i)
            .unwrap();
        let mut by_route: BTreeMap<String, usize> = BTreeMap::new();
        for r in &log[..=cut] {
            *by_route
                .entry(format!("{} {}", r.request.method, r.request.path))
                .or_default() += 1;
        }
        let total = cut + 1;
        println!(
            "idle poll: {repos:>3} repos: {total} Gitea requests over {CYCLES} cycles = {:.2} per cycle (goal 1); \
             start-up: {startup} requests in {:.2} s; routes: {by_route:?}",
            total as f64 / CYCLES as f64,
            startup_time.as_secs_f64()
        );
        w.kill();
    }
}
