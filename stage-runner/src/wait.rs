//! Waiting until an app really answers through Traefik, visibly and within a bound.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::abort;
use crate::process::say;
use crate::redact::Redactor;

/// Polls `url` until it answers one of `codes` (any 2xx or 3xx when empty). Prints progress (elapsed/limit, last status) at
/// least every 10 s so a slow start reads as slow, not stuck.
pub fn until_up(
    url: &str,
    resolve: Option<&str>,
    tls_verify: bool,
    codes: &[u16],
    limit: Duration,
    r: &Redactor,
) -> Result<(Duration, u16)> {
    let mut cfg = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .http_status_as_error(false)
        .max_redirects(0);
    if !tls_verify {
        cfg = cfg.tls_config(
            ureq::tls::TlsConfig::builder()
                .disable_verification(true)
                .build(),
        );
    }
    let agent = match resolve {
        Some(r) => ureq::Agent::with_parts(
            cfg.build(),
            ureq::unversioned::transport::DefaultConnector::new(),
            crate::resolve::Pinned(crate::resolve::Resolve::parse(r)?),
        ),
        None => cfg.build().into(),
    };
    let start = Instant::now();
    let _counted = Counted(start);
    let mut last_report = Instant::now();
    let mut last;
    say(
        r,
        &format!("waiting for {url} (limit {} s)", limit.as_secs()),
    );
    loop {
        if let Some(why) = abort::aborted() {
            bail!("stopped waiting for {url}: {why}");
        }
        match agent.get(url).call() {
            Ok(resp) => {
                let s = resp.status().as_u16();
                let up = match codes {
                    [] => (200..400).contains(&s),
                    codes => codes.contains(&s),
                };
                if up {
                    say(
                        r,
                        &format!(
                            "{url} is up: HTTP {s} after {} s",
                            start.elapsed().as_secs()
                        ),
                    );
                    return Ok((start.elapsed(), s));
                }
                last = format!("HTTP {s}");
            }
            Err(e) => last = e.to_string(),
        }
        if start.elapsed() >= limit {
            bail!(
                "{url} did not come up within {} s (last: {last})",
                limit.as_secs()
            );
        }
        if last_report.elapsed() >= Duration::from_secs(10) {
            say(
                r,
                &format!(
                    "still waiting for {url}: {}/{} s, last: {last}",
                    start.elapsed().as_secs(),
                    limit.as_secs()
                ),
            );
            last_report = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Counts the wait as time outside stage-runner, however it ends.
struct Counted(Instant);

impl Drop for Counted {
    fn drop(&mut self) {
        crate::process::outside(self.0);
    }
}
