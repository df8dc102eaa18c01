//! stage-runner: one cc-ci stage per invocation (what Drone's exec runner runs), the janitor,
//! and `local`, the whole run on a maintainer's own abra server.

pub mod abort;
pub mod abra;
pub mod backup;
pub mod ci;
pub mod config;
pub mod janitor;
pub mod junit;
pub mod lint;
pub mod phase;
pub mod process;
pub mod redact;
pub mod resolve;
pub mod rundir;
pub mod ship;
pub mod stage;
pub mod wait;

use anyhow::{Context, Result};

use ccci::run::RunParams;
use ccci::summary::{Skip, Stage};
use ccci::verdict::Verdict;

use crate::config::Config;
use crate::process::say;
use crate::redact::Redactor;
use crate::stage::{Ctx, Outcome};

/// Runs one stage of the Drone build this process belongs to and prints its verdict line,
/// last; returns the exit status. An error returned here is the caller's to report (see
/// [`error_verdict`]).
pub fn drone_stage(cfg: Config, stage: Stage) -> Result<u8> {
    let run_id = stage::drone_run_id()?;
    if stage == Stage::Prepare {
        let params = RunParams::from_lookup(|k| std::env::var(k).ok())?;
        let build: i64 = run_id.parse().unwrap_or(0);
        let (code, verdict) = prepare(cfg.clone(), &params, &run_id, build);
        ship_results(&cfg, build, &Redactor::new([]));
        say(&Redactor::new([]), &verdict.line());
        return Ok(code);
    }
    let dir = rundir::dir(&cfg.state_dir, &run_id);
    let mut ctx = match Ctx::open(cfg.clone(), &run_id) {
        Ok(c) => c,
        // Teardown of a run that never started, or is already gone, has nothing to deploy to
        // remove: only what a prepare that stopped early left.
        Err(_) if stage == Stage::Teardown => {
            if dir.exists()
                && rundir::Run::load(&dir).is_err()
                && rundir::Lock::try_take(&dir)?.is_some()
            {
                std::fs::remove_dir_all(&dir)
                    .with_context(|| format!("removing {}", dir.display()))?;
            }
            janitor::sweep(&cfg)?;
            let quiet = Redactor::new([]);
            say(&quiet, &Outcome::passed().verdict(stage, &quiet).line());
            return Ok(0);
        }
        // prepare said why; this stage has nothing to work on.
        Err(_) if !dir.join("run.json").exists() => {
            let o = Outcome::skipped(Skip::Blocked, "prepare did not pass: the run has no state");
            let quiet = Redactor::new([]);
            say(&quiet, &o.verdict(stage, &quiet).line());
            return Ok(0);
        }
        Err(e) => return Err(e),
    };
    let o = stage::run_stage(&mut ctx, stage);
    let mut verdict = o.verdict(stage, &ctx.redactor);
    if stage == Stage::Teardown {
        verdict.card = ctx.render_card();
    }
    let redactor = ctx.redactor.clone();
    ship_results(&cfg, run_id.parse().unwrap_or(0), &redactor);
    let code = o.exit_code();
    if stage == Stage::Teardown && code == 0 {
        ctx.forget()?;
    }
    say(&redactor, &verdict.line());
    Ok(code)
}

/// Ships the run's results when this runner is on another host than the server, and says in
/// the step log what crossed (or why nothing did).
fn ship_results(cfg: &Config, build: i64, redactor: &Redactor) {
    match ship::ship(cfg, build) {
        Ok(None) => {}
        Ok(Some(s)) => say(
            redactor,
            &format!(
                "results: shipped files={} bytes={} requests={}{}",
                s.files,
                s.bytes,
                s.requests,
                if s.refused.is_empty() {
                    String::new()
                } else {
                    format!(" refused={}", s.refused.join(","))
                }
            ),
        ),
        Err(e) => say(
            redactor,
            &format!("WARN results: not shipped (a later stage tries again): {e:#}"),
        ),
    }
}

/// The verdict line of a stage that stopped on an error before it could judge anything (bad
/// configuration, no build number). Such errors never hold secret values.
pub fn error_verdict(stage: Stage, why: &str) -> String {
    Outcome::error(why)
        .verdict(stage, &Redactor::new([]))
        .line()
}

fn prepare(cfg: Config, params: &RunParams, run_id: &str, build: i64) -> (u8, Verdict) {
    let started = stage::now();
    let t = std::time::Instant::now();
    let run_dir = rundir::dir(&cfg.state_dir, run_id);
    let ready = stage::validate(&cfg, params).and_then(|()| janitor::sweep(&cfg).map(drop));
    match ready.and_then(|()| stage::prepare(cfg, params, run_id, build)) {
        Ok(ctx) => {
            let o = Outcome::passed();
            let _ = ctx.record(Stage::Prepare, started, t.elapsed(), &o);
            (0, o.verdict(Stage::Prepare, &ctx.redactor))
        }
        Err(e) => {
            let quiet = Redactor::new([]);
            let why = format!("{e:#}");
            say(&quiet, &format!("ERROR stage-runner: prepare: {why}"));
            if let Some(why) = abort::aborted() {
                // Nothing is deployed before install: the run's directory is all there is.
                say(
                    &quiet,
                    &format!("aborting ({why}): removing the run's state"),
                );
                process::kill_all_children();
                let _ = std::fs::remove_dir_all(&run_dir);
            }
            (2, Outcome::error(why).verdict(Stage::Prepare, &quiet))
        }
    }
}

/// `local`: every stage in order on this machine's abra server, teardown always last. The
/// recipe asked for is enrolled and trusted: whoever runs `local` chose to run its tests on
/// their machine.
/// `keep` (the config's path, for the message): a run that did not pass leaves its app up.
pub fn local(mut cfg: Config, params: &RunParams, keep: Option<&std::path::Path>) -> Result<u8> {
    for list in [&mut cfg.recipes, &mut cfg.trusted_recipes] {
        if !list.contains(&params.recipe) {
            list.push(params.recipe.clone());
        }
    }
    let run_id = format!("l{}", rundir::random_token(6)?.to_lowercase());
    let (code, _) = prepare(cfg.clone(), params, &run_id, 0);
    if code != 0 {
        return Ok(code);
    }
    let mut ctx = Ctx::open(cfg, &run_id)?;
    let mut worst = 0;
    for stage in Stage::LADDER {
        let o = stage::run_stage(&mut ctx, stage);
        worst = worst.max(o.exit_code());
        if abort::aborted().is_some() {
            return Ok(2);
        }
        // Later stages need a live app that passed install.
        if stage == Stage::Install && o.exit_code() != 0 {
            break;
        }
    }
    if let (Some(config), true) = (keep, worst != 0) {
        say(
            &ctx.redactor,
            &format!(
                "kept: the app is up at https://{} (run state in {}); remove it with: cc-ci-stage-runner janitor --config {} --janitor-max-age-secs 1",
                ctx.run.domain,
                rundir::dir(&ctx.cfg.state_dir, &run_id).display(),
                config.display()
            ),
        );
        return Ok(worst);
    }
    let o = stage::run_stage(&mut ctx, Stage::Teardown);
    ctx.render_card();
    worst = worst.max(o.exit_code());
    if o.exit_code() == 0 {
        ctx.forget()?;
    }
    Ok(worst)
}
