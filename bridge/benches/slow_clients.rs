//! The real bridge (release build) under 1,000 slow clients: half send part of a request head
//! and stop, half a whole `POST /hook` head with a large Content-Length and then nothing.
//! While they hold on: `/healthz` latency (p50, p99 of 200 requests, one after another) and a
//! real Gitea delivery's latency (comment → Drone build). Resident memory (VmRSS) before, with
//! the clients holding on, and after their deadlines closed them. Needs `ulimit -n` ≥ 2,500
//! (the clients and the bridge's sockets). Goals (issue 15): healthz p99 ≤ 50 ms, the delivery
//! ≤ 1 s, memory back within 2× of before.
//! Run with `cargo bench -p cc-ci-bridge --bench slow_clients` (`BENCH_CLIENTS=N` for fewer).

#[path = "../tests/world/mod.rs"]
mod world;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use world::{status_kb, wait_until, Opts, World, QUICK};

fn main() {
    let n: usize = std::env::var("BENCH_CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let mut w = World::with(Opts {
        name: "bench-slow",
        yaml: QUICK,
        webhook_secrets: &["bench-hook-secret"],
        config: serde_json::json!({"poll_interval_secs": 30, "sweep_interval_secs": 30}),
        ..Default::default()
    });
    w.add_hook("custom-html", &w.hook_url());
    let pr = w.open_pr();
    w.start();
    let pid = w.pid();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let healthz = || {
        let t = Instant::now();
        agent
            .get(format!("http://{}/healthz", w.listen))
            .call()
            .expect("healthz answers");
        t.elapsed()
    };
    healthz();
    std::thread::sleep(Duration::from_secs(1));
    let before = status_kb(pid, "VmRSS:");
    let mut slow = Vec::with_capacity(n);
    for i in 0..n {
        let mut s = TcpStream::connect(&w.listen).expect("connect (is ulimit -n high enough?)");
        let part: &[u8] = if i % 2 == 0 {
            b"POST /hook HTTP/1.1\r\nHost: x\r\n"
        } else {
            b"POST /hook HTTP/1.1\r\nHost: x\r\nX-Gitea-Event: issue_comment\r\nContent-Length: 900000\r\n\r\n{"
        };
        s.write_all(part).unwrap();
        slow.push(s);
    }
    let mut lat: Vec<Duration> = (0..200).map(|_| healthz()).collect();
    lat.sort();
    let holding = status_kb(pid, "VmRSS:");
    let t = Instant::now();
    w.say(pr, "alice", "!testme");
    wait_until("a build from the webhook", Duration::from_secs(10), || {
        !w.builds().is_empty()
    });
    let delivery = t.elapsed();
    drop(slow);
    std::thread::sleep(Duration::from_secs(12));
    let after = status_kb(pid, "VmRSS:");
    println!(
        "slow_clients: {n} held; healthz p50 {:.2} ms, p99 {:.2} ms; delivery -> build {:.0} ms; VmRSS {before} kB before, {holding} kB holding, {after} kB after",
        lat[lat.len() / 2].as_secs_f64() * 1000.0,
        lat[lat.len() * 99 / 100].as_secs_f64() * 1000.0,
        delivery.as_secs_f64() * 1000.0
    );
}
