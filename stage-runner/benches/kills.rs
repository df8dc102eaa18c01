//! Reliability on the real engine: a run's step shell SIGKILLed at 20 random moments across
//! its stages, as Drone cancels and times out (drone-runner-exec kills the shell only). After
//! each kill stage-runner tears the run down itself; then the janitor runs. `docker` is the
//! witness: per kill, what of the run is left on the engine (services, containers, volumes,
//! networks, configs, secrets) and on disk before and after the janitor, and whether the
//! proxy stack is untouched. Goal: 0 left after the janitor, every time.
//! Run with `cargo bench -p cc-ci-stage-runner --bench kills` (seed: `KILLS_SEED=n`; the
//! engine and proxy must be up: `eval "$(dev/engine start)" && dev/images && eval "$(dev/proxy up)"`).

#[path = "../tests/world/mod.rs"]
mod world;

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

fn main() {
    let seed: u64 = std::env::var("KILLS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    let mut rng = seed | 1;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let w = world::World::new("bench-kills");
    let runner = env!("CARGO_BIN_EXE_cc-ci-stage-runner");
    let stages = [
        "prepare",
        "install",
        "upgrade",
        "backup",
        "recipe-tests",
        "teardown",
    ];
    let script: String = stages
        .iter()
        .map(|s| format!("{runner} {s} --config {}", w.config.display()))
        .collect::<Vec<_>>()
        .join(" && ");
    let proxy = proxy_state();
    // A whole custom-html run takes about 30 s here: kills land anywhere in it, or after it.
    let span_ms = std::env::var("KILLS_SPAN_MS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(32_000);
    let start = Instant::now();
    let mut unfinished = 0;
    let (mut dirty_before, mut dirty_after, mut proxy_changed) = (0, 0, 0);
    for i in 0..20u32 {
        let env = w.params(100 + i);
        let mut sh = std::process::Command::new("/bin/sh");
        sh.args(["-c", &script])
            .env_clear()
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (k, v) in w.command("prepare", &env).get_envs() {
            if let Some(v) = v {
                sh.env(k, v);
            }
        }
        let mut child = sh.spawn().unwrap();
        let delay = Duration::from_millis(next(span_ms));
        let mut out = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            s
        });
        std::thread::sleep(delay);
        let finished_before = child.try_wait().unwrap().is_some();
        let _ = child.kill();
        let _ = child.wait();
        // stage-runner notices its parent is gone, tears down, exits: the pipe closes.
        let t = Instant::now();
        while !reader.is_finished() && t.elapsed() < Duration::from_secs(120) {
            std::thread::sleep(Duration::from_millis(50));
        }
        if !reader.is_finished() {
            unfinished += 1;
        }
        let log = if reader.is_finished() {
            reader.join().unwrap()
        } else {
            String::new()
        };
        let stage = log
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("stage ").and_then(|r| r.split(':').next()))
            .unwrap_or("none");
        let cleanup = t.elapsed();
        let before = w.leftovers();
        w.janitor();
        let after = w.leftovers();
        let proxy_ok = proxy_state() == proxy;
        dirty_before += usize::from(!before.is_empty());
        dirty_after += usize::from(!after.is_empty());
        proxy_changed += usize::from(!proxy_ok);
        println!(
            "kills: #{i:02} after {:>5} ms ({}), last stage ended: {stage}, cleaned up in {} ms; \
             left before the janitor {} {before:?}, after {} {after:?}; proxy {}",
            delay.as_millis(),
            if finished_before {
                "run had ended"
            } else {
                "mid-run"
            },
            cleanup.as_millis(),
            before.len(),
            after.len(),
            if proxy_ok { "untouched" } else { "CHANGED" }
        );
    }
    println!(
        "kills: seed {seed}, 20 kills in {:.1} s, stage-runners not exited within 120 s: {unfinished}",
        start.elapsed().as_secs_f64()
    );
    println!("kills: kills leaving something before the janitor: {dirty_before} of 20");
    println!("kills: kills leaving something after the janitor: {dirty_after} of 20 (goal 0)");
    println!("kills: proxy changed: {proxy_changed} of 20 (goal 0)");
}

/// The proxy stack as docker reports it: its service's id and spec version, its tasks' ids
/// (a restart would change them), its configs, secrets and the `proxy` network's id.
fn proxy_state() -> Vec<String> {
    use standins::abra::docker;
    let mut out = Vec::new();
    for args in [
        &[
            "service",
            "ls",
            "--filter",
            "name=ccci_proxy",
            "--format",
            "{{.ID}}",
        ][..],
        &[
            "service",
            "inspect",
            "ccci_proxy_app",
            "--format",
            "{{.Version.Index}}",
        ][..],
        &[
            "service",
            "ps",
            "-q",
            "--filter",
            "desired-state=running",
            "ccci_proxy_app",
        ][..],
        &[
            "config",
            "ls",
            "--filter",
            "name=ccci_proxy",
            "--format",
            "{{.ID}}",
        ][..],
        &[
            "secret",
            "ls",
            "--filter",
            "name=ccci_proxy",
            "--format",
            "{{.ID}}",
        ][..],
        &[
            "network",
            "ls",
            "--filter",
            "name=^proxy$",
            "--format",
            "{{.ID}}",
        ][..],
    ] {
        out.push(docker::ok(args).unwrap_or_else(|e| format!("docker failed: {e:#}")));
    }
    out
}
