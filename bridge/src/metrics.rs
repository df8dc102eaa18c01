//! Counters for `/metrics` (Prometheus text format) and the facts `/healthz` decides on.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

#[derive(Default)]
pub struct Metrics {
    pub comments_seen: AtomicU64,
    pub triggers: AtomicU64,
    pub refusals: AtomicU64,
    pub webhooks_accepted: AtomicU64,
    pub webhooks_rejected: AtomicU64,
    pub followed_runs: AtomicU64,
    /// The last state save failed (a full disk): `/healthz` fails, no run starts.
    pub state_unwritable: AtomicBool,
    pub state_save_failures: AtomicU64,
    /// HTTP connections being served now.
    pub http_open: AtomicU64,
    /// HTTP connections answered 503 unread: [`crate::server::MAX_CONNECTIONS`] were open.
    pub http_refused: AtomicU64,
    /// Result files taken from runners on other hosts (`PUT /results/…`), and refused.
    pub results_stored: AtomicU64,
    pub results_refused: AtomicU64,
    /// Last poll duration in milliseconds.
    pub poll_ms: AtomicU64,
    /// Unix seconds of the last poll that succeeded; 0 = none yet.
    pub last_poll_ok: AtomicI64,
    /// (upstream, status or "transport") → count.
    api_errors: Mutex<BTreeMap<(String, String), u64>>,
}

impl Metrics {
    pub fn api_error(&self, upstream: &str, err: &anyhow::Error) {
        let text = format!("{err:#}");
        // Errors from ccci::api read "<upstream> <METHOD> <route>: HTTP <status>: …".
        let status = text
            .split("HTTP ")
            .nth(1)
            .and_then(|s| s.get(..3))
            .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
            .unwrap_or("transport")
            .to_owned();
        *self
            .api_errors
            .lock()
            .unwrap()
            .entry((upstream.to_owned(), status))
            .or_default() += 1;
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        let counter = |s: &mut String, name: &str, help: &str, v: u64| {
            s.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}\n"
            ));
        };
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        counter(
            &mut s,
            "ccci_bridge_comments_seen_total",
            "Comments examined.",
            get(&self.comments_seen),
        );
        counter(
            &mut s,
            "ccci_bridge_triggers_total",
            "Builds created.",
            get(&self.triggers),
        );
        counter(
            &mut s,
            "ccci_bridge_refusals_total",
            "!testme refused (not authorised or check failed).",
            get(&self.refusals),
        );
        counter(
            &mut s,
            "ccci_bridge_webhooks_accepted_total",
            "Webhook deliveries accepted.",
            get(&self.webhooks_accepted),
        );
        counter(
            &mut s,
            "ccci_bridge_webhooks_rejected_total",
            "Webhook deliveries refused.",
            get(&self.webhooks_rejected),
        );
        counter(
            &mut s,
            "ccci_bridge_results_stored_total",
            "Result files runners on other hosts shipped that were taken (or were already here).",
            get(&self.results_stored),
        );
        counter(
            &mut s,
            "ccci_bridge_results_refused_total",
            "Result uploads refused (token, build, size, hash, or a summary ahead of its files).",
            get(&self.results_refused),
        );
        counter(
            &mut s,
            "ccci_bridge_state_save_failures_total",
            "State saves that failed (no run starts while its intent cannot be saved).",
            get(&self.state_save_failures),
        );
        counter(
            &mut s,
            "ccci_bridge_http_refused_total",
            "HTTP connections refused unread because the connection limit was reached.",
            get(&self.http_refused),
        );
        s.push_str(&format!(
            "# HELP ccci_bridge_http_connections HTTP connections being served.\n# TYPE ccci_bridge_http_connections gauge\nccci_bridge_http_connections {}\n",
            get(&self.http_open)
        ));
        s.push_str("# HELP ccci_bridge_api_errors_total Failed Gitea and Drone requests.\n# TYPE ccci_bridge_api_errors_total counter\n");
        for ((up, status), n) in self.api_errors.lock().unwrap().iter() {
            s.push_str(&format!(
                "ccci_bridge_api_errors_total{{upstream=\"{up}\",status=\"{status}\"}} {n}\n"
            ));
        }
        s.push_str(&format!(
            "# HELP ccci_bridge_poll_duration_seconds Duration of the last poll.\n# TYPE ccci_bridge_poll_duration_seconds gauge\nccci_bridge_poll_duration_seconds {:.3}\n",
            get(&self.poll_ms) as f64 / 1000.0
        ));
        s.push_str(&format!(
            "# HELP ccci_bridge_followed_runs Runs being followed.\n# TYPE ccci_bridge_followed_runs gauge\nccci_bridge_followed_runs {}\n",
            get(&self.followed_runs)
        ));
        s.push_str(&format!(
            "# HELP ccci_bridge_last_poll_success_timestamp_seconds Last successful poll.\n# TYPE ccci_bridge_last_poll_success_timestamp_seconds gauge\nccci_bridge_last_poll_success_timestamp_seconds {}\n",
            self.last_poll_ok.load(Ordering::Relaxed)
        ));
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_errors_are_counted_by_status() {
        let m = Metrics::default();
        m.api_error(
            "gitea",
            &anyhow::anyhow!("gitea GET /repos/a/b/pulls/1: HTTP 500: boom"),
        );
        m.api_error(
            "drone",
            &anyhow::anyhow!("drone POST /api/repos/a/b/builds: timed out"),
        );
        let text = m.render();
        assert!(
            text.contains("ccci_bridge_api_errors_total{upstream=\"gitea\",status=\"500\"} 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "ccci_bridge_api_errors_total{upstream=\"drone\",status=\"transport\"} 1"
            ),
            "{text}"
        );
    }
}
