//! Outgoing webhooks for comments, as `services/webhook/notifier.go` builds them and
//! `services/webhook/deliver.go` sends them: one attempt on its own thread, a 5 s timeout
//! (`[webhook] DELIVER_TIMEOUT`), never retried; every attempt is recorded for tests.

use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::digest::{go_html_escape, hex, hmac_sha1, hmac_sha256, uuid};
use super::render;
use super::{HookVersion, Parts, State};

const DELIVER_TIMEOUT: Duration = Duration::from_secs(5);

/// One delivery attempt as the stand-in made it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Delivery {
    /// `X-Gitea-Delivery`.
    pub uuid: String,
    pub hook_id: i64,
    pub url: String,
    /// `X-Gitea-Event` and `X-Gitea-Event-Type`.
    pub event: String,
    pub event_type: String,
    pub headers: Vec<(String, String)>,
    /// The exact bytes sent (the signed content).
    pub body: String,
    /// The receiver's status, when it answered.
    pub status: Option<u16>,
    /// Transport failure (refused, timed out…), when it did not.
    pub error: Option<String>,
    /// False while the attempt is in flight.
    pub done: bool,
    pub started_ms: u64,
}

impl Delivery {
    pub fn finished(&self) -> bool {
        self.done
    }

    /// `deliver.go`: only a 2xx answer counts as delivered.
    pub fn succeeded(&self) -> bool {
        matches!(self.status, Some(s) if (200..300).contains(&s))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// `routers/api/v1/utils/hook.go`: `pull_request` covers `pull_request_comment`, `issues`
/// covers `issue_comment`; `*` stands for `send_everything`.
fn wants(events: &[String], is_pull: bool) -> bool {
    events.iter().any(|e| {
        e == "*"
            || (is_pull && (e == "pull_request_comment" || e == "pull_request"))
            || (!is_pull && (e == "issue_comment" || e == "issues"))
    })
}

/// Queues one delivery per matching hook for a created (`old` = None) or edited comment.
pub(crate) fn fire(p: &Parts, s: &State, comment_id: i64, doer: i64, old: Option<String>) {
    let Some(c) = s.comments.iter().find(|c| c.id == comment_id) else {
        return;
    };
    let Some(issue) = s.issue(c.issue_id) else {
        return;
    };
    let Some(repo) = s.repo(issue.repo_id) else {
        return;
    };
    let is_pull = issue.pull.is_some();
    // `modules/webhook/type.go` `Event()`: both comment kinds travel as `issue_comment`.
    let event = "issue_comment";
    let event_type = if is_pull {
        "pull_request_comment"
    } else {
        "issue_comment"
    };
    for hook in s
        .hooks
        .iter()
        .filter(|h| h.repo_id == repo.id && wants(&h.events, is_pull))
    {
        let mut payload = json!({
            "action": if old.is_some() { "edited" } else { "created" },
            "issue": render::issue(s, issue, hook.version, false),
            "comment": render::comment(s, c, false),
            "repository": render::repo(s, repo, Some((true, true, true)), false),
            "sender": render::user_id(s, doer, false),
            "is_pull": is_pull,
        });
        if is_pull && hook.version == HookVersion::V1_24 {
            payload["pull_request"] = render::pull(s, issue, hook.version, false);
        }
        if let Some(from) = &old {
            payload["changes"] = json!({"body": {"from": from}});
        }
        // `json.MarshalIndent(p, "", "  ")`, with Go's HTML escaping.
        let body = go_html_escape(
            &serde_json::to_string_pretty(&payload).unwrap_or_else(|_| "{}".to_owned()),
        );
        let key = hook.secret.as_bytes();
        let (sig256, sig1) = if key.is_empty() {
            (String::new(), String::new())
        } else {
            (
                hex(&hmac_sha256(key, body.as_bytes())),
                hex(&hmac_sha1(key, body.as_bytes())),
            )
        };
        let id = uuid();
        let mut headers: Vec<(String, String)> = vec![
            ("Content-Type".into(), "application/json".into()),
            ("User-Agent".into(), "GiteaServer".into()),
            ("X-Gitea-Delivery".into(), id.clone()),
            ("X-Gitea-Event".into(), event.into()),
            ("X-Gitea-Event-Type".into(), event_type.into()),
            ("X-Gitea-Signature".into(), sig256.clone()),
            ("X-Gogs-Delivery".into(), id.clone()),
            ("X-Gogs-Event".into(), event.into()),
            ("X-Gogs-Event-Type".into(), event_type.into()),
            ("X-Gogs-Signature".into(), sig256.clone()),
            ("X-Hub-Signature".into(), format!("sha1={sig1}")),
            ("X-Hub-Signature-256".into(), format!("sha256={sig256}")),
            ("X-GitHub-Delivery".into(), id.clone()),
            ("X-GitHub-Event".into(), event.into()),
            ("X-GitHub-Event-Type".into(), event_type.into()),
        ];
        if hook.version == HookVersion::V1_24 {
            // #33752: where the hook is defined; ours are repository hooks.
            headers.push((
                "X-Gitea-Hook-Installation-Target-Type".into(),
                "repository".into(),
            ));
            headers.push((
                "X-GitHub-Hook-Installation-Target-Type".into(),
                "repository".into(),
            ));
        }
        let delivery = Delivery {
            uuid: id,
            hook_id: hook.id,
            url: hook.url.clone(),
            event: event.into(),
            event_type: event_type.into(),
            headers,
            body,
            status: None,
            error: None,
            done: false,
            started_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
        };
        let index = {
            let mut all = p.deliveries.lock().unwrap_or_else(|e| e.into_inner());
            all.push(delivery.clone());
            all.len() - 1
        };
        let deliveries = p.deliveries.clone();
        let _ = thread::Builder::new()
            .name("standin-gitea-hook".into())
            .spawn(move || {
                let (status, error) = send(&delivery);
                let mut all = deliveries.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(d) = all.get_mut(index).filter(|d| d.uuid == delivery.uuid) {
                    d.status = status;
                    d.error = error;
                    d.done = true;
                }
            });
    }
}

/// One POST. No retry, whatever happens (`deliver.go` marks the task delivered first).
fn send(d: &Delivery) -> (Option<u16>, Option<String>) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(DELIVER_TIMEOUT))
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into();
    let mut req = agent.post(&d.url);
    for (k, v) in &d.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    match req.send(d.body.as_bytes()) {
        Ok(resp) => (Some(resp.status().as_u16()), None),
        Err(e) => (None, Some(e.to_string())),
    }
}
