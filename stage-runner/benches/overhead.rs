//! stage-runner's own cost in a whole custom-html run on the real swarm: per stage the wall
//! time and stage-runner's own share of it (the `stage …: (took N ms, stage-runner's own share
//! M ms)` line: abra, git, pytest and waiting on the app excluded), the run's total and own
//! share (goal <= 2 % of the run), the deploys the run made (goal: one fresh deploy for install,
//! one fresh deploy of the base and one upgrade deploy for upgrade, none after), and pytest's
//! part. The floor — the same docker work run bare — is `bench/floor.sh`.
//! Run with `cargo bench -p cc-ci-stage-runner --bench overhead` (engine and proxy up).

#[path = "../tests/world/mod.rs"]
mod world;

fn main() {
    let w = world::World::new("bench-overhead");
    let env = w.params(1);
    let (mut worst, mut own_total, mut wall_total, mut pytest_ms) = (0u64, 0u64, 0u128, 0f64);
    let mut deploys = Vec::new();
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
        wall_total += wall;
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stage}: {text}");
        for l in text.lines() {
            if let Some(cmd) = l.strip_prefix("+ abra app deploy ") {
                deploys.push(format!("{stage}: {cmd}"));
            }
            // pytest's summary line: "3 passed, 7 deselected, 4 warnings in 2.66s"
            if let Some(secs) = l
                .rsplit_once(" in ")
                .filter(|(head, _)| head.contains(" passed") || head.contains(" failed"))
                .and_then(|(_, t)| t.strip_suffix('s'))
                .and_then(|t| t.parse::<f64>().ok())
            {
                pytest_ms += secs * 1000.0;
            }
        }
        let own = text
            .lines()
            .find_map(|l| l.split("stage-runner's own share ").nth(1))
            .and_then(|r| r.trim_end_matches(" ms)").parse::<u64>().ok());
        match own {
            Some(ms) => {
                worst = worst.max(ms);
                own_total += ms;
                println!("overhead: {stage:<13} own {ms:>4} ms of {wall:>6} ms wall");
            }
            // prepare reports no stage line of its own: its wall time bounds it.
            None => {
                own_total += wall as u64;
                println!("overhead: {stage:<13} (no breakdown, counted whole) {wall:>6} ms wall");
            }
        }
    }
    assert_eq!(
        w.leftovers(),
        Vec::<String>::new(),
        "the run left something"
    );
    println!(
        "overhead: run {:.1} s wall, stage-runner's own {own_total} ms = {:.2} % (goal <= 2 %), worst stage {worst} ms",
        wall_total as f64 / 1000.0,
        own_total as f64 * 100.0 / wall_total as f64
    );
    println!(
        "overhead: pytest {:.1} s of the run (the suites' own time)",
        pytest_ms / 1000.0
    );
    println!(
        "overhead: {} deploys: {}",
        deploys.len(),
        deploys.join("; ")
    );
}
