//! `ccci-local`: cc-ci's main job on this machine (README command 1, run by `dev/local`).

use std::io::BufRead;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use standins::local::{Setup, World, MAINTAINER, OUTSIDER};

const HELP: &str = "\
ccci-local: the whole cc-ci loop on this machine.

Starts a Gitea with a demo PR on the stand-in custom-html recipe, a Drone whose exec runner
runs this repository's committed .drone.yml, the stand-in abra deploying to the real Docker
swarm behind the real Traefik (DOCKER_HOST; dev/engine, dev/proxy), and the real cc-ci-bridge,
cc-ci-stage-runner and cc-ci-dashboard-gen. Posts `!testme` as a maintainer and
shows the run as it goes. Then type more comments. Gitea, Drone and the runner are the
stand-ins, or with --real the real ones that dev/upstream installs (docs/fidelity.md).

USAGE:
    ccci-local --repo DIR --bin DIR --dir DIR [--once] [--no-webhooks] [--real]

OPTIONS:
    --repo DIR      the cc-ci checkout (its .drone.yml and tests/ are used)
    --bin DIR       where the built binaries are (target/debug)
    --dir DIR       scratch directory for everything (removed at the end)
    --once          exit after the first run has finished (non-zero if it did not pass)
    --no-webhooks   polling only
    --real          the real Gitea, Drone and drone-runner-exec (CCCI_REAL_* or the
                    dev/upstream cache) instead of the stand-ins
    -h, --help      this help
";

fn main() -> std::process::ExitCode {
    let mut args = pico_args::Arguments::from_env();
    if args.contains(["-h", "--help"]) {
        print!("{HELP}");
        return std::process::ExitCode::SUCCESS;
    }
    match run(args) {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::from(1),
        Err(e) => {
            eprintln!("ERROR ccci-local: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

struct Clock(Instant);

impl Clock {
    fn say(&self, msg: &str) {
        println!("[{:6.1}s] {msg}", self.0.elapsed().as_secs_f64());
    }
}

fn run(mut args: pico_args::Arguments) -> Result<bool> {
    let repo: PathBuf = args.value_from_str("--repo")?;
    let bin: PathBuf = args.value_from_str("--bin")?;
    let dir: PathBuf = args.value_from_str("--dir")?;
    let once = args.contains("--once");
    let real = args.contains("--real");
    let webhooks = !args.contains("--no-webhooks");
    let rest = args.finish();
    if !rest.is_empty() {
        anyhow::bail!("unexpected arguments {rest:?} (see --help)");
    }
    let clock = Clock(Instant::now());
    let world = World::start(Setup {
        dir,
        repo,
        bin,
        webhooks,
        poll_secs: 2,
        dashboard_secs: 5,
        capacity: 2,
        deploy_timeout_secs: 120,
        real,
        base_domain: standins::ground::Ground::from_env()?.base_domain,
    })?;
    clock.say(&format!(
        "up: {} {}  Drone {}  apps at https://*.{} (Traefik on 127.0.0.1)  bridge {}",
        world.gitea.kind(),
        world.gitea.url(),
        world.drone.url(),
        world.setup.base_domain,
        world.bridge_listen
    ));
    clock.say(&format!(
        "demo PR #{} on coop-cloud/custom-html, head {}",
        world.pr,
        &world.sha[..10]
    ));
    let id = world.comment(MAINTAINER, "!testme")?;
    clock.say(&format!("{MAINTAINER} commented `!testme` (comment {id})"));
    let passed = follow(&world, &clock, 1)?;
    if once {
        world.stop();
        return Ok(passed);
    }
    println!(
        "\nType a comment and press Enter to post it on the PR as {MAINTAINER} (`{OUTSIDER}: text` posts as {OUTSIDER}).\n\
         Try `!testme` again. Ctrl-D or Ctrl-C stops everything and removes it.\n"
    );
    let mut next_build = world.builds().len() as i64 + 1;
    for line in std::io::stdin().lock().lines() {
        let line = line.context("reading a comment")?;
        let (user, body) = match line.split_once(": ") {
            Some((u, b)) if u == OUTSIDER || u == MAINTAINER => (u, b.to_owned()),
            _ => (MAINTAINER, line.clone()),
        };
        if body.trim().is_empty() {
            continue;
        }
        let id = world.comment(user, &body)?;
        clock.say(&format!("{user} commented {body:?} (comment {id})"));
        // Watch for a build this comment may start, and for the bot's answer.
        let _ = follow(&world, &clock, next_build);
        next_build = world.builds().len() as i64 + 1;
    }
    world.stop();
    Ok(true)
}

/// Shows build `number` from creation to its final PR comment and dashboard; bounded.
fn follow(world: &World, clock: &Clock, number: i64) -> Result<bool> {
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut last_steps = String::new();
    let mut last_comments: Vec<(i64, String)> = world.bot_comments()?;
    let mut created = false;
    let quiet_until = Instant::now() + Duration::from_secs(8);
    loop {
        if Instant::now() > deadline {
            clock.say("gave up waiting after 300 s");
            return Ok(false);
        }
        let comments = world.bot_comments()?;
        let headline = |body: &str| {
            body.lines()
                .find(|l| !l.starts_with("<!--") && !l.trim().is_empty())
                .unwrap_or("")
                .to_owned()
        };
        for (id, body) in &comments {
            let before = last_comments.iter().find(|(i, _)| i == id);
            if before.is_none_or(|(_, b)| headline(b) != headline(body)) {
                clock.say(&format!("PR comment {id}: {}", headline(body)));
            }
        }
        last_comments = comments;
        match world.drone.build("coop-cloud", "cc-ci", number) {
            Some(b) => {
                if !created {
                    created = true;
                    clock.say(&format!(
                        "build #{number} created: RECIPE={} REF={} PR={}",
                        b.params.get("RECIPE").map_or("?", |s| s.as_str()),
                        b.params.get("REF").map_or("?", |s| &s[..10.min(s.len())]),
                        b.params.get("PR").map_or("?", |s| s.as_str()),
                    ));
                }
                let steps: Vec<String> = b
                    .stages
                    .iter()
                    .flat_map(|s| {
                        s.steps
                            .iter()
                            .map(|st| format!("{}:{}", st.name, st.status))
                    })
                    .collect();
                let steps = steps.join(" ");
                if steps != last_steps && !steps.is_empty() {
                    clock.say(&format!("build #{number}: {steps}"));
                    last_steps = steps;
                }
                let done = !matches!(
                    b.status.as_str(),
                    "pending" | "running" | "waiting_on_dependencies" | "blocked"
                );
                let final_comment = last_comments.iter().any(|(_, body)| {
                    body.contains(&format!("run [#{number}]")) && body.contains("Reproduce")
                });
                if done && final_comment {
                    clock.say(&format!("build #{number} finished: {}", b.status));
                    for st in b.stages.iter().filter(|st| !st.error.is_empty()) {
                        clock.say(&format!("stage {} error: {}", st.name, st.error));
                    }
                    let sha = b.params.get("REF").cloned().unwrap_or_default();
                    match world.head_status(&sha) {
                        Ok(Some((state, desc, _))) => clock.say(&format!(
                            "commit status cc-ci/testme on {}: {state} — {desc}",
                            &sha[..10.min(sha.len())]
                        )),
                        Ok(None) => clock.say("commit status: none set"),
                        Err(e) => clock.say(&format!("commit status not read: {e:#}")),
                    }
                    match world.generate_dashboard() {
                        Ok(()) => {
                            let url = world.site_server.url();
                            clock.say(&format!("dashboard: {url}/  ({})", world.site().display()));
                            clock.say(&format!("run page:  {url}/runs/{number}.html"));
                            clock.say(&format!(
                                "badges:    {url}/badges/level/custom-html.svg  {url}/badges/custom-html.svg"
                            ));
                            let card = world
                                .site()
                                .join(format!("runs/{number}/artifacts/card.png"));
                            if card.is_file() {
                                clock.say(&format!(
                                    "card:      {url}/runs/{number}/artifacts/card.png  ({})",
                                    card.display()
                                ));
                            } else {
                                clock.say("card:      none (see the teardown step's `card:` line)");
                            }
                        }
                        Err(e) => clock.say(&format!("dashboard not generated: {e:#}")),
                    }
                    return Ok(b.status == "success");
                }
            }
            None if !created && Instant::now() > quiet_until => {
                // No build after a while: the bridge answered (refusal, near miss) or ignored it.
                return Ok(false);
            }
            None => {}
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}
