//! The bridge: `!testme` comments on recipe PRs become Drone builds, and the PR hears back.
//!
//! Threads: one HTTP server (webhooks, health, metrics) and one worker that owns the state
//! (see [`engine`]). They meet at a bounded queue.

pub mod command;
pub mod comment;
pub mod config;
pub mod engine;
pub mod metrics;
pub mod server;
pub mod state;
pub mod webhook;

use std::sync::mpsc::sync_channel;
use std::sync::Arc;

use anyhow::{anyhow, Result};

use ccci::log::{emit, Level};

/// Webhook comments waiting for the worker; past this the hook answers 503.
const QUEUE: usize = 1024;

/// Runs the bridge until the process is stopped.
pub fn run(cfg: config::Config) -> Result<()> {
    let metrics = Arc::new(metrics::Metrics::default());
    let server = tiny_http::Server::http(cfg.listen)
        .map_err(|e| anyhow!("listening on {}: {e}", cfg.listen))?;
    let (tx, rx) = sync_channel(QUEUE);
    let http = server::Http {
        secrets: cfg.webhook_secrets.clone(),
        queue: tx,
        metrics: metrics.clone(),
        store: state::Store::new(&cfg.state_dir),
        stale_after_secs: (cfg.sweep_interval.max(cfg.poll_interval).as_secs() * 3) as i64,
        enrolled: cfg.recipes.values().cloned().collect(),
    };
    emit(
        Level::Info,
        "bridge",
        "starting",
        &[
            ("listen", &cfg.listen),
            ("recipes", &cfg.recipes.len()),
            ("webhook", &!cfg.webhook_secrets.is_empty()),
            ("state", &cfg.state_dir.display()),
        ],
    );
    let engine = engine::Engine::new(cfg, metrics)?;
    std::thread::Builder::new()
        .name("http".into())
        .spawn(move || server::serve(http, server))?;
    engine.run(rx);
    Ok(())
}
