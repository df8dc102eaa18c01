//! `ccci-local`: cc-ci's main job on this machine (README command 1, run by `dev/local`).

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use standins::local::{Setup, World, MAINTAINER, OUTSIDER, RECIPE};

const HELP: &str = "\
ccci-local: the whole cc-ci loop on this machine.

Starts a Gitea with a demo PR on the stand-in custom-html recipe, a Drone whose exec runner
runs this repository's committed .drone.yml, the stand-in abra deploying to the real Docker
swarm behind the real Traefik (DOCKER_HOST; dev/engine, dev/proxy), and the real cc-ci-bridge,
cc-ci-stage-runner and cc-ci-dashboard-gen. Posts `!testme` as a maintainer and
shows the run as it goes. Then type more comments. Gitea, Drone and the runner are the
stand-ins, or with --real the real ones that dev/upstream installs (docs/fidelity.md).

USAGE:
    ccci-local --repo DIR --bin DIR --dir DIR [--once] [--all] [--no-webhooks] [--real]
               [--recipe PATH [--ref REF]]...

OPTIONS:
    --repo DIR      the cc-ci checkout (its .drone.yml and tests/ are used)
    --bin DIR       where the built binaries are (target/debug)
    --dir DIR       scratch directory for everything (removed at the end)
    --once          exit after the first runs have finished (non-zero unless all passed)
    --all           every recipe of the stand-in catalogue (standins/recipes/), each with a
                    demo PR and a run, so the dashboard shows them side by side (their
                    images: `dev/images --all`); typed comments go to the custom-html PR
    --recipe PATH   also enrol your own recipe checkout (a git repository with its release
                    tags; the folder's name is the recipe's), with a demo PR like the
                    others: its tests/<recipe>/ suite here, or the generic checks alone.
                    Its images must be pullable by the engine (here: built by dev/images)
    --ref REF       the commit of the checkout to test (default: its HEAD)
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
    let all = args.contains("--all");
    let webhooks = !args.contains("--no-webhooks");
    let mut checkouts = Vec::new();
    while let Some(path) = args.opt_value_from_str::<_, PathBuf>("--recipe")? {
        let reference = args.opt_value_from_str("--ref")?;
        checkouts.push(standins::local::Checkout { path, reference });
    }
    let rest = args.finish();
    if !rest.is_empty() {
        anyhow::bail!("unexpected arguments {rest:?} (see --help)");
    }
    let recipes = if all {
        Setup::all_recipes()?
    } else {
        vec![RECIPE.to_owned()]
    };
    let clock = Clock(Instant::now());
    let world = World::start(Setup {
        dir,
        repo,
        bin,
        webhooks,
        poll_secs: 2,
        dashboard_secs: 5,
        capacity: 2,
        // Synapse's first start on an empty database is the slowest (its ci.json asks 900).
        deploy_timeout_secs: 900,
        real,
        base_domain: standins::ground::Ground::from_env()?.base_domain,
        recipes,
        second_runner: false,
        checkouts,
    })?;
    clock.say(&format!(
        "up: {} {}  Drone {}  apps at https://*.{} (Traefik on 127.0.0.1)  bridge {}",
        world.gitea.kind(),
        world.gitea.url(),
        world.drone.url(),
        world.setup.base_domain,
        world.bridge_listen
    ));
    for pr in &world.prs {
        clock.say(&format!(
            "demo PR #{} on coop-cloud/{}, head {}",
            pr.number,
            pr.recipe,
            &pr.sha[..10]
        ));
        let id = world.comment_on(&pr.recipe, pr.number, MAINTAINER, "!testme")?;
        clock.say(&format!(
            "{MAINTAINER} commented `!testme` on {} (comment {id})",
            pr.recipe
        ));
    }
    let passed = follow(&world, &clock, 1, world.prs.len() as i64)?;
    if once {
        world.stop();
        return Ok(passed);
    }
    println!(
        "\nType a comment and press Enter to post it on the {} PR as {MAINTAINER} (`{OUTSIDER}: text` posts as {OUTSIDER}).\n\
         Try `!testme` again. Ctrl-D or Ctrl-C stops everything and removes it.\n",
        world.recipe()
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
        let _ = follow(&world, &clock, next_build, 1);
        next_build = world.builds().len() as i64 + 1;
    }
    world.stop();
    Ok(true)
}

/// The first line of a bot comment that says something.
fn headline(body: &str) -> &str {
    body.lines()
        .find(|l| !l.starts_with("<!--") && !l.trim().is_empty())
        .unwrap_or("")
}

/// Shows builds `first..first+count` from creation to their final PR comments, then the
/// dashboard; bounded. True when every one passed.
fn follow(world: &World, clock: &Clock, first: i64, count: i64) -> Result<bool> {
    let limit = Duration::from_secs(300 * count as u64);
    let deadline = Instant::now() + limit;
    let quiet_until = Instant::now() + Duration::from_secs(8);
    let bot_comments = || -> Result<Vec<(String, i64, String)>> {
        let mut all = Vec::new();
        for pr in &world.prs {
            for (id, body) in world.bot_comments_on(&pr.recipe, pr.number)? {
                all.push((pr.recipe.clone(), id, body));
            }
        }
        Ok(all)
    };
    let mut last_comments = bot_comments()?;
    let mut last_steps: BTreeMap<i64, String> = BTreeMap::new();
    let mut finished: BTreeMap<i64, (String, bool)> = BTreeMap::new();
    let numbers = first..first + count;
    while (finished.len() as i64) < count {
        if Instant::now() > deadline {
            clock.say(&format!("gave up waiting after {} s", limit.as_secs()));
            return Ok(false);
        }
        let comments = bot_comments()?;
        for (recipe, id, body) in &comments {
            let before = last_comments.iter().find(|(_, i, _)| i == id);
            if before.is_none_or(|(_, _, b)| headline(b) != headline(body)) {
                clock.say(&format!("{recipe} PR comment {id}: {}", headline(body)));
            }
        }
        last_comments = comments;
        let mut created = 0;
        for number in numbers.clone() {
            if finished.contains_key(&number) {
                continue;
            }
            let Some(b) = world.drone.build("coop-cloud", "cc-ci", number) else {
                continue;
            };
            created += 1;
            let recipe = b.params.get("RECIPE").cloned().unwrap_or_default();
            if !last_steps.contains_key(&number) {
                clock.say(&format!(
                    "build #{number} created: RECIPE={recipe} REF={} PR={}",
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
            if last_steps.get(&number) != Some(&steps) {
                if !steps.is_empty() {
                    clock.say(&format!("build #{number}: {steps}"));
                }
                last_steps.insert(number, steps);
            }
            let done = !matches!(
                b.status.as_str(),
                "pending" | "running" | "waiting_on_dependencies" | "blocked"
            );
            let final_comment = last_comments.iter().any(|(r, _, body)| {
                *r == recipe
                    && body.contains(&format!("run [#{number}]"))
                    && body.contains("Reproduce")
            });
            if done && final_comment {
                clock.say(&format!(
                    "build #{number} ({recipe}) finished: {}",
                    b.status
                ));
                for st in b.stages.iter().filter(|st| !st.error.is_empty()) {
                    clock.say(&format!("stage {} error: {}", st.name, st.error));
                }
                if b.status != "success" {
                    // The comment's red rows name the failing tests with their messages.
                    let body = last_comments
                        .iter()
                        .find(|(r, _, body)| {
                            *r == recipe && body.contains(&format!("run [#{number}]"))
                        })
                        .map_or("", |(_, _, body)| body.as_str());
                    for row in body
                        .lines()
                        .filter(|l| l.starts_with('|') && l.contains('❌'))
                    {
                        clock.say(&format!("  {row}"));
                    }
                }
                let sha = b.params.get("REF").cloned().unwrap_or_default();
                match world.head_status(&recipe, &sha) {
                    Ok(Some((state, desc, _))) => clock.say(&format!(
                        "commit status cc-ci/testme on {recipe} {}: {state} — {desc}",
                        &sha[..10.min(sha.len())]
                    )),
                    Ok(None) => clock.say("commit status: none set"),
                    Err(e) => clock.say(&format!("commit status not read: {e:#}")),
                }
                finished.insert(number, (recipe, b.status == "success"));
            }
        }
        if created == 0 && finished.is_empty() && Instant::now() > quiet_until {
            // No build after a while: the bridge answered (refusal, near miss) or ignored it.
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    match world.generate_dashboard() {
        Ok(()) => {
            let url = world.site_server.url();
            clock.say(&format!("dashboard: {url}/  ({})", world.site().display()));
            for (number, (recipe, _)) in &finished {
                clock.say(&format!("run page:  {url}/runs/{number}.html"));
                clock.say(&format!(
                    "badges:    {url}/badges/level/{recipe}.svg  {url}/badges/{recipe}.svg"
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
        }
        Err(e) => clock.say(&format!("dashboard not generated: {e:#}")),
    }
    Ok(finished.values().all(|(_, passed)| *passed))
}
