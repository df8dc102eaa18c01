//! Reliability: a run's step shell SIGKILLed at 20 random moments across its stages, as Drone
//! cancels and times out (drone-runner-exec kills the shell only). After the next janitor pass
//! nothing may be left: prints the apps, volumes, secrets and run directories remaining.
//! Run with `cargo bench -p cc-ci-stage-runner --bench kills` (seed: `KILLS_SEED=n`).

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
    let start = Instant::now();
    let mut unfinished = 0;
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
        let delay = Duration::from_millis(next(7000));
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
        println!(
            "kills: #{i:02} after {:>4} ms ({}), last stage ended: {stage}, cleaned up in {} ms",
            delay.as_millis(),
            if finished_before {
                "run had ended"
            } else {
                "mid-run"
            },
            t.elapsed().as_millis()
        );
    }
    let before = w.leftovers();
    let j = w
        .command("janitor", &[])
        .args(["--janitor-max-age-secs", "0"])
        .output()
        .unwrap();
    assert!(j.status.success(), "{}", String::from_utf8_lossy(&j.stdout));
    let after = w.leftovers();
    println!("kills: seed {seed}, 20 kills in {:.1} s, stage-runners not exited within 120 s: {unfinished}", start.elapsed().as_secs_f64());
    println!(
        "kills: left before the janitor: {} {:?}",
        before.len(),
        before
    );
    println!(
        "kills: left after the janitor: {} (goal 0) {:?}",
        after.len(),
        after
    );
}
