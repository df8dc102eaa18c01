//! Reaping what runs left behind: run directories (and their apps, and any process of theirs
//! still running) older than the configured age whose stage-runner is gone, and CI apps whose
//! run directory no longer exists. It only
//! ever touches apps whose `.env` carries `CCCI_RUN=` — never the proxy, Drone or the
//! dashboard, which stage-runner did not create.

use std::path::Path;

use anyhow::{Context, Result};

use crate::abra::Abra;
use crate::config::Config;
use crate::process::say;
use crate::redact::Redactor;
use crate::rundir::{self, Lock, Run};
use crate::stage::{now, Ctx};

/// What one pass removed.
#[derive(Debug, Default)]
pub struct Reaped {
    pub runs: usize,
    pub apps: usize,
}

pub fn sweep(cfg: &Config) -> Result<Reaped> {
    let mut reaped = Reaped::default();
    let quiet = Redactor::new([]);
    let runs = rundir::runs_dir(&cfg.state_dir);
    std::fs::create_dir_all(&runs).with_context(|| format!("creating {}", runs.display()))?;
    for entry in std::fs::read_dir(&runs)? {
        let dir = entry?.path();
        let id = dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let age = match Run::load(&dir) {
            Ok(run) => now() - run.created,
            // Unreadable state: judge by the directory's age.
            Err(_) => dir_age(&dir),
        };
        if age < cfg.janitor_max_age_secs as i64 {
            continue;
        }
        if Run::load(&dir).is_err() {
            if Lock::try_take(&dir)?.is_some() {
                crate::process::reap(&dir);
                std::fs::remove_dir_all(&dir)?;
                reaped.runs += 1;
            }
            continue;
        }
        match Ctx::open(cfg.clone(), &id) {
            Ok(mut ctx) => {
                say(&quiet, &format!("janitor: reaping run {id} (age {age} s)"));
                ctx.teardown()?;
                ctx.forget()?;
                reaped.runs += 1;
            }
            // Busy: a stage-runner is working on it.
            Err(_) => continue,
        }
    }
    reaped.apps = orphan_apps(cfg, &quiet)?;
    Ok(reaped)
}

fn dir_age(dir: &Path) -> i64 {
    std::fs::metadata(dir)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .map_or(0, |d| d.as_secs() as i64)
}

/// CI apps whose run directory is gone (a stage-runner killed before it could clean up).
fn orphan_apps(cfg: &Config, r: &Redactor) -> Result<usize> {
    let server_dir = cfg.abra_dir.join("servers").join(&cfg.server);
    let Ok(entries) = std::fs::read_dir(&server_dir) else {
        return Ok(0);
    };
    let mut n = 0;
    for e in entries {
        let path = e?.path();
        let Some(domain) = path
            .file_name()
            .and_then(|f| f.to_str())
            .and_then(|f| f.strip_suffix(".env"))
            .map(str::to_owned)
        else {
            continue;
        };
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let field = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
                .map(|v| v.split_whitespace().next().unwrap_or("").to_owned())
        };
        let Some(run_id) = field("CCCI_RUN") else {
            continue;
        };
        if rundir::dir(&cfg.state_dir, &run_id).exists() {
            continue;
        }
        let recipe = field("TYPE")
            .map(|t| t.split(':').next().unwrap_or("").to_owned())
            .unwrap_or_default();
        say(
            r,
            &format!("janitor: removing orphaned CI app {domain} (run {run_id})"),
        );
        crate::process::reap(&rundir::dir(&cfg.state_dir, &run_id));
        let scratch = cfg.state_dir.join("janitor");
        let _ = std::fs::remove_dir_all(&scratch);
        std::fs::create_dir_all(scratch.join("recipes"))?;
        std::os::unix::fs::symlink(cfg.abra_dir.join("servers"), scratch.join("servers"))?;
        let abra = Abra {
            exe: cfg.abra.clone(),
            abra_dir: scratch.clone(),
            env: cfg
                .abra_env
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            server: cfg.server.clone(),
            timeout: cfg.command_timeout(),
        };
        if !recipe.is_empty() && ccci::run::check_recipe_name(&recipe).is_ok() {
            let _ = abra.try_run(&["recipe", "fetch", &recipe], r);
        }
        abra.remove_app(&domain, r)?;
        let _ = std::fs::remove_dir_all(&scratch);
        n += 1;
    }
    Ok(n)
}
