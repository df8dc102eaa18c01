//! The bridge's HTTP side: `POST /hook` (Gitea webhooks, the optional fast path),
//! `GET /healthz` and `GET /metrics`. Handlers answer at once; comments go to the worker's
//! bounded queue, and a full queue answers 503 (polling still finds the comment).

use std::io::Read;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;

use tiny_http::{Header, Method, Request, Response, Server};

use ccci::gitea::parse_issue_comment_payload;
use ccci::log::{emit, Level};
use ccci::secret::Secret;

use crate::config::Repo;
use crate::engine::{now, Incoming};
use crate::metrics::Metrics;
use crate::state::Store;
use crate::webhook;

/// Webhook bodies larger than this are refused unread; Gitea's comment payloads are a few KB.
pub const MAX_HOOK_BODY: u64 = 1024 * 1024;

pub struct Http {
    pub secrets: Vec<Secret>,
    pub queue: SyncSender<Incoming>,
    pub metrics: Arc<Metrics>,
    pub store: Store,
    /// `/healthz` fails when no poll succeeded for this long.
    pub stale_after_secs: i64,
    /// Repositories whose events are accepted.
    pub enrolled: Vec<Repo>,
}

fn text(status: u16, body: &str) -> Response<std::io::Cursor<Vec<u8>>> {
    Response::from_string(body)
        .with_status_code(status)
        .with_header(Header::from_bytes("Content-Type", "text/plain; charset=utf-8").unwrap())
}

impl Http {
    fn route(&self, req: &Request) -> Response<std::io::Cursor<Vec<u8>>> {
        match (req.method(), req.url()) {
            (Method::Get, "/healthz") => self.healthz(),
            (Method::Get, "/metrics") => text(200, &self.metrics.render()).with_header(
                Header::from_bytes("Content-Type", "text/plain; version=0.0.4").unwrap(),
            ),
            _ => text(404, "not found\n"),
        }
    }

    fn healthz(&self) -> Response<std::io::Cursor<Vec<u8>>> {
        let last = self.metrics.last_poll_ok.load(Ordering::Relaxed);
        if !self.store.writable() {
            return text(503, "state directory is not writable\n");
        }
        if last == 0 || now() - last > self.stale_after_secs {
            return text(503, "no successful poll recently\n");
        }
        text(200, "ok\n")
    }

    /// `POST /hook`, which needs the body and so the request by value.
    pub fn hook(&self, req: &mut Request) -> Response<std::io::Cursor<Vec<u8>>> {
        if self.secrets.is_empty() {
            // Without a secret the endpoint does not exist: unsigned events are never accepted.
            return text(404, "not found\n");
        }
        let reject = |status: u16, why: &str| {
            self.metrics
                .webhooks_rejected
                .fetch_add(1, Ordering::Relaxed);
            emit(
                Level::Warn,
                "bridge",
                "webhook refused",
                &[("status", &status), ("reason", &why)],
            );
            text(status, &format!("{why}\n"))
        };
        if req.body_length().is_some_and(|n| n as u64 > MAX_HOOK_BODY) {
            return reject(413, "body too large");
        }
        let mut body = Vec::new();
        if req
            .as_reader()
            .take(MAX_HOOK_BODY + 1)
            .read_to_end(&mut body)
            .is_err()
        {
            return reject(400, "unreadable body");
        }
        if body.len() as u64 > MAX_HOOK_BODY {
            return reject(413, "body too large");
        }
        let header = |name: &'static str| {
            req.headers()
                .iter()
                .find(|h| h.field.equiv(name))
                .map(|h| h.value.as_str().to_owned())
        };
        if let Err(r) =
            webhook::verify(&self.secrets, &body, header("X-Gitea-Signature").as_deref())
        {
            return reject(401, r.as_str());
        }
        let event = header("X-Gitea-Event").unwrap_or_default();
        if event != "issue_comment" {
            self.metrics
                .webhooks_accepted
                .fetch_add(1, Ordering::Relaxed);
            return text(204, "");
        }
        let payload = match parse_issue_comment_payload(&body) {
            Ok(p) => p,
            Err(_) => return reject(400, "malformed issue_comment payload"),
        };
        self.metrics
            .webhooks_accepted
            .fetch_add(1, Ordering::Relaxed);
        let Ok(repo) = Repo::parse(&payload.repository.full_name) else {
            return text(204, "");
        };
        let enrolled = self.enrolled.iter().any(|r| {
            r.owner.eq_ignore_ascii_case(&repo.owner) && r.name.eq_ignore_ascii_case(&repo.name)
        });
        if !enrolled || !payload.is_pull || payload.action != "created" {
            return text(204, "");
        }
        let inc = Incoming {
            repo,
            comment: payload.comment,
            edited: false,
            source: "webhook",
        };
        match self.queue.try_send(inc) {
            Ok(()) => text(202, "queued\n"),
            Err(TrySendError::Full(_)) => text(503, "queue full; polling will pick it up\n"),
            Err(TrySendError::Disconnected(_)) => text(503, "shutting down\n"),
        }
    }
}

/// Serves until the server is dropped; `/hook` is routed here because it reads the body.
pub fn serve(http: Http, server: Server) {
    for mut req in server.incoming_requests() {
        let resp = if req.method() == &Method::Post && req.url() == "/hook" {
            http.hook(&mut req)
        } else {
            http.route(&req)
        };
        let _ = req.respond(resp);
    }
}
