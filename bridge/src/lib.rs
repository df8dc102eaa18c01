//! The bridge: `!testme` comments on recipe PRs become Drone builds, and the PR hears back.
//!
//! Threads: one HTTP server (webhooks, health, metrics) and one worker that owns the state
//! (see [`engine`]). They meet at a bounded queue.

pub mod command;
pub mod comment;
pub mod config;
pub mod engine;
pub mod metrics;
pub mod results;
pub mod retest;
pub mod server;
pub mod state;
pub mod webhook;

use std::sync::mpsc::sync_channel;
use std::sync::Arc;

use anyhow::{anyhow, Result};

use ccci::log::{emit, Level};

/// Webhook comments waiting for the worker; past this the hook answers 503.
const QUEUE: usize = 1024;

/// What `--check-config` says of the bot's rights beyond the file: for each enrolled
/// repository, whether Gitea will let it set commit statuses. Gitea not answering is said, not
/// an error: the configuration itself is valid.
pub fn check_rights(cfg: &config::Config) -> Vec<String> {
    let gitea = cfg.gitea();
    let mut out = Vec::new();
    for repo in cfg.recipes.values() {
        let full = repo.full();
        // Write on the code is in the repository's permissions; the token's scope shows only
        // in use: watching, which the bridge does at start anyway, needs the same one.
        let line = match (
            gitea.get_repo(&repo.owner, &repo.name),
            gitea.watch(&repo.owner, &repo.name),
        ) {
            (Ok(r), Ok(_)) if r.permissions.as_ref().is_some_and(|p| p.push) => format!(
                "{full}: the bot may set commit statuses ({})",
                cfg.status_context
            ),
            (Ok(_), Ok(_)) => format!(
                "warning: {full}: the bot may not set commit statuses: it needs write access to \
                 the code; runs are reported by PR comment only"
            ),
            (Ok(_), Err(e)) => format!(
                "warning: {full}: the bot may not set commit statuses: its token lacks scope \
                 write:repository ({e:#}); runs are reported by PR comment only"
            ),
            (Err(e), _) => {
                format!("warning: {full}: could not ask Gitea about the bot's rights: {e:#}")
            }
        };
        out.push(line);
        out.extend(hook_warnings(
            &full,
            gitea.list_hooks(&repo.owner, &repo.name),
        ));
    }
    out
}

/// What is wrong with a repository's webhooks that point at a bridge (their URL ends in
/// `/hook`): Gitea sends a PR comment only to a hook subscribed to `pull_request_comment`,
/// as JSON. A bot that may not read the hooks (403: it is no repository admin) says nothing.
fn hook_warnings(full: &str, hooks: Result<Vec<ccci::gitea::Hook>>) -> Vec<String> {
    let Ok(hooks) = hooks else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for h in hooks
        .iter()
        .filter(|h| h.active && h.config.url.trim_end_matches('/').ends_with("/hook"))
    {
        let url = &h.config.url;
        if !h.events.iter().any(|e| e == "pull_request_comment") {
            out.push(format!(
                "warning: {full}: webhook {} to {url} is not subscribed to Pull Request Comment \
                 (pull_request_comment): Gitea sends it no PR comment; tick that event",
                h.id
            ));
        }
        if h.kind == "gitea" && h.config.content_type != "json" {
            out.push(format!(
                "warning: {full}: webhook {} to {url} sends {:?}, not application/json: set its content type to application/json",
                h.id, h.config.content_type
            ));
        }
    }
    out
}

/// Runs the bridge until the process is stopped.
pub fn run(cfg: config::Config) -> Result<()> {
    let metrics = Arc::new(metrics::Metrics::default());
    let listener = std::net::TcpListener::bind(cfg.listen)
        .map_err(|e| anyhow!("listening on {}: {e}", cfg.listen))?;
    let (tx, rx) = sync_channel(QUEUE);
    let http = server::Http {
        secrets: cfg.webhook_secrets.clone(),
        queue: tx,
        metrics: metrics.clone(),
        store: state::Store::new(&cfg.state_dir),
        stale_after_secs: (cfg.sweep_interval.max(cfg.poll_interval).as_secs() * 3) as i64,
        enrolled: cfg.recipes.values().cloned().collect(),
        results: match &cfg.results {
            Some(r) => Some(results::Intake::new(
                r.clone(),
                cfg.drone(),
                cfg.drone_repo.clone(),
            )?),
            None => None,
        },
    };
    emit(
        Level::Info,
        "bridge",
        "starting",
        &[
            ("listen", &cfg.listen),
            ("recipes", &cfg.recipes.len()),
            ("webhook", &!cfg.webhook_secrets.is_empty()),
            (
                "shipped_results",
                &cfg.results.as_ref().map_or(0, |r| r.runners.len()),
            ),
            ("state", &cfg.state_dir.display()),
        ],
    );
    let engine = engine::Engine::new(cfg, metrics)?;
    std::thread::Builder::new()
        .name("http".into())
        .spawn(move || server::serve(http, listener, server::MAX_CONNECTIONS))?;
    engine.run(rx);
    Ok(())
}
