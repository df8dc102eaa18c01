//! stage-runner's own cost per stage, excluding abra, git, pytest and waiting on the app: a
//! whole run of the stand-in custom-html recipe, each stage reporting its own share (the
//! `stage …: (took N ms, stage-runner's own share M ms)` line). Goal: <= 50 ms per stage.
//! Run with `cargo bench -p cc-ci-stage-runner --bench overhead`.

#[path = "../tests/world/mod.rs"]
mod world;

fn main() {
    let w = world::World::new("bench-overhead");
    let env = w.params(1);
    let mut worst = 0u64;
    for stage in [
        "prepare",
        "install",
        "upgrade",
        "backup",
        "recipe-tests",
        "teardown",
    ] {
        let start = std::time::Instant::now();
        let out = w.command(stage, &env).output().unwrap();
        let wall = start.elapsed().as_millis();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stage}: {text}");
        let own = text
            .lines()
            .find_map(|l| l.split("stage-runner's own share ").nth(1))
            .and_then(|r| r.trim_end_matches(" ms)").parse::<u64>().ok());
        match own {
            Some(ms) => {
                worst = worst.max(ms);
                println!("overhead: {stage:<13} own {ms:>4} ms of {wall:>5} ms wall");
            }
            // prepare reports no stage line of its own: its wall time bounds it.
            None => println!("overhead: {stage:<13} (no breakdown) {wall:>5} ms wall"),
        }
    }
    println!("overhead: worst stage {worst} ms (goal <= 50 ms)");
}
