//! The bridge's HTTP side: `POST /hook` (Gitea webhooks, the optional fast path),
//! `GET /healthz` and `GET /metrics`. It faces the internet, so every connection is bounded:
//! at most [`MAX_CONNECTIONS`] at once, one short-lived thread each (the one over is answered
//! 503 and closed at once, unread); the request head within [`HEAD_DEADLINE`] and 16 KB; a
//! body only for `POST /hook` with the event Gitea sends and a `Content-Length` under the cap,
//! read within [`BODY_DEADLINE`]; one request per connection. A slow client costs its own
//! thread for a few seconds and nobody else anything. Accepted comments go to the worker's
//! bounded queue; a full queue answers 503 (polling still finds the comment).

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ccci::gitea::parse_issue_comment_payload;
use ccci::http::{self, Body, Head, Unread};
use ccci::log::{emit, Level};
use ccci::secret::Secret;

use crate::config::Repo;
use crate::engine::{now, Incoming};
use crate::metrics::Metrics;
use crate::state::Store;
use crate::webhook;

/// Webhook bodies larger than this are refused unread; Gitea's comment payloads are a few KB.
pub const MAX_HOOK_BODY: u64 = 1024 * 1024;
/// Connections served at once; one more is answered 503 without being read.
pub const MAX_CONNECTIONS: usize = 1024;
/// The request line and headers must have arrived within this, and fit in [`MAX_HEAD`].
pub const HEAD_DEADLINE: Duration = Duration::from_secs(5);
/// The body of a `POST /hook` must have arrived within this.
pub const BODY_DEADLINE: Duration = Duration::from_secs(10);
const MAX_HEAD: usize = 16 * 1024;
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection's stack: what a slow client touches of it is a few KB of resident memory,
/// but parsing Gitea's payload (18 KB of nested JSON, serde's derive) overflows 128 KB.
const STACK: usize = 2 * 1024 * 1024;

pub struct Http {
    pub secrets: Vec<Secret>,
    pub queue: SyncSender<Incoming>,
    pub metrics: Arc<Metrics>,
    pub store: Store,
    /// `/healthz` fails when no poll succeeded for this long.
    pub stale_after_secs: i64,
    /// Repositories whose events are accepted.
    pub enrolled: Vec<Repo>,
    /// `PUT /results/…`, when runners on other hosts ship their results here.
    pub results: Option<crate::results::Intake>,
}

struct Reply {
    status: u16,
    content_type: &'static str,
    body: String,
}

fn text(status: u16, body: &str) -> Reply {
    Reply {
        status,
        content_type: "text/plain; charset=utf-8",
        body: body.to_owned(),
    }
}

impl Http {
    /// What to answer: the cheap refusals first (path, method, event, size), the body read
    /// only when one may be needed, the signature checked before anything else looks at it.
    fn respond(&self, head: &Head, mut body: Body) -> Reply {
        match (head.method.as_str(), head.path()) {
            ("GET", "/healthz") => self.healthz(),
            ("GET", "/metrics") => Reply {
                status: 200,
                content_type: "text/plain; version=0.0.4",
                body: self.metrics.render(),
            },
            ("POST", "/hook") if !self.secrets.is_empty() => {
                let event = head.header("X-Gitea-Event").unwrap_or_default();
                if event.is_empty() {
                    return self.reject(400, "no X-Gitea-Event header");
                }
                if head.header("Transfer-Encoding").is_some() {
                    return self.reject(411, "a Content-Length is required");
                }
                let Ok(Some(len)) = head.content_length() else {
                    return self.reject(411, "a Content-Length is required");
                };
                if len > MAX_HOOK_BODY {
                    return self.reject(413, "body too large");
                }
                if event != "issue_comment" {
                    // Nothing else is acted on; its body is not worth reading.
                    self.metrics
                        .webhooks_accepted
                        .fetch_add(1, Ordering::Relaxed);
                    return text(204, "");
                }
                body.deadline(Instant::now() + BODY_DEADLINE);
                match body.read(len, MAX_HOOK_BODY) {
                    Ok(body) => self.hook(head, &body),
                    Err(Unread::Slow) => self.reject(408, "body too slow"),
                    Err(_) => self.reject(400, "unreadable body"),
                }
            }
            ("PUT", p) if p.starts_with("/results/") && self.results.is_some() => {
                let intake = self.results.as_ref().expect("checked");
                let a = intake.put(head, &mut body, p);
                let counter = if a.status < 300 {
                    &self.metrics.results_stored
                } else {
                    &self.metrics.results_refused
                };
                counter.fetch_add(1, Ordering::Relaxed);
                text(a.status, &format!("{}\n", a.text))
            }
            // Without a secret the endpoint does not exist: unsigned events are never accepted.
            _ => text(404, "not found\n"),
        }
    }

    fn reject(&self, status: u16, why: &str) -> Reply {
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
    }

    fn healthz(&self) -> Reply {
        let last = self.metrics.last_poll_ok.load(Ordering::Relaxed);
        if !self.store.writable() || self.metrics.state_unwritable.load(Ordering::Relaxed) {
            return text(503, "state directory is not writable\n");
        }
        if last == 0 || now() - last > self.stale_after_secs {
            return text(503, "no successful poll recently\n");
        }
        text(200, "ok\n")
    }

    /// A whole, signed `issue_comment` delivery.
    fn hook(&self, head: &Head, body: &[u8]) -> Reply {
        if let Err(r) = webhook::verify(&self.secrets, body, head.header("X-Gitea-Signature")) {
            return self.reject(401, r.as_str());
        }
        let payload = match parse_issue_comment_payload(body) {
            Ok(p) => p,
            Err(_) => return self.reject(400, "malformed issue_comment payload"),
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
        // An unenrolled repository's `!testme` goes on too: its maintainers are told why
        // nothing starts. Its other comments are not worth a queue slot.
        let heard = enrolled
            || crate::command::parse(&payload.comment.body)
                == Some(crate::command::Command::TestMe);
        if !heard || !payload.is_pull || payload.action != "created" {
            return text(204, "");
        }
        let inc = Incoming {
            repo,
            comment: payload.comment,
            source: "webhook",
        };
        match self.queue.try_send(inc) {
            Ok(()) => text(202, "queued\n"),
            Err(TrySendError::Full(_)) => text(503, "queue full; polling will pick it up\n"),
            Err(TrySendError::Disconnected(_)) => text(503, "shutting down\n"),
        }
    }

    fn connection(&self, mut s: TcpStream) {
        let _ = s.set_write_timeout(Some(WRITE_TIMEOUT));
        let reply = match http::read_head(&mut s, Instant::now() + HEAD_DEADLINE, MAX_HEAD) {
            Ok((head, body)) => self.respond(&head, body),
            Err(Unread::Gone) => return,
            Err(Unread::Slow) => text(408, "request head too slow\n"),
            Err(Unread::Large) => text(431, "request head too large\n"),
            Err(Unread::Garbled) => text(400, "not an HTTP/1 request\n"),
        };
        write_reply(&mut s, &reply);
    }
}

/// Answers and closes. Unread input (a refused body) is drained a little first, so the client
/// reads the answer instead of a reset.
fn write_reply(s: &mut TcpStream, r: &Reply) {
    let headers = [("Content-Type".to_owned(), r.content_type.to_owned())];
    if http::write_response(s, r.status, &headers, r.body.as_bytes(), None).is_ok() {
        http::drain_and_close(s, 2 * MAX_HOOK_BODY as usize, Duration::from_secs(1));
    }
}

/// Serves until the process ends, at most `max_connections` at once ([`MAX_CONNECTIONS`]).
pub fn serve(http: Http, listener: TcpListener, max_connections: usize) {
    let http = Arc::new(http);
    let open = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        let mut s = match conn {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors, say: wait a moment rather than spin.
                emit(
                    Level::Warn,
                    "bridge",
                    "accept failed",
                    &[("error", &e.to_string())],
                );
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        if open.load(Ordering::Relaxed) >= max_connections {
            http.metrics.http_refused.fetch_add(1, Ordering::Relaxed);
            let _ = s.set_write_timeout(Some(Duration::from_millis(200)));
            let _ = s.write_all(
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
            continue;
        }
        open.fetch_add(1, Ordering::Relaxed);
        http.metrics
            .http_open
            .store(open.load(Ordering::Relaxed) as u64, Ordering::Relaxed);
        let (h, o) = (http.clone(), open.clone());
        let spawned = std::thread::Builder::new()
            .name("http-conn".into())
            .stack_size(STACK)
            .spawn(move || {
                h.connection(s);
                let left = o.fetch_sub(1, Ordering::Relaxed) - 1;
                h.metrics.http_open.store(left as u64, Ordering::Relaxed);
            });
        if spawned.is_err() {
            open.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn get(addr: std::net::SocketAddr, path: &str) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    /// One connection over the limit is answered 503 at once, unread; the ones held open
    /// time out on their own, and then the server serves again.
    #[test]
    fn the_connection_limit_refuses_at_once_and_recovers() {
        let dir = std::env::temp_dir().join(format!("bridge-server-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let metrics = Arc::new(Metrics::default());
        let http = Http {
            secrets: vec![Secret::new("s")],
            queue: std::sync::mpsc::sync_channel(1).0,
            metrics: metrics.clone(),
            store: Store::new(&dir),
            stale_after_secs: 60,
            enrolled: Vec::new(),
            results: None,
        };
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || serve(http, listener, 3));
        let held: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(addr).unwrap()).collect();
        let t = Instant::now();
        while metrics.http_open.load(Ordering::Relaxed) < 3 {
            assert!(t.elapsed() < Duration::from_secs(5), "three open");
            std::thread::sleep(Duration::from_millis(10));
        }
        // The refusal is written before anything is read, so this client only listens: had it
        // written its request, that could race the server's close and end in a reset.
        let t = Instant::now();
        let mut over = String::new();
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.read_to_string(&mut over);
        assert!(over.starts_with("HTTP/1.1 503 "), "{over}");
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        assert_eq!(metrics.http_refused.load(Ordering::Relaxed), 1);
        // The silent three are answered 408 when their head deadline passes, and closed.
        for mut s in held {
            s.set_read_timeout(Some(HEAD_DEADLINE + Duration::from_secs(3)))
                .unwrap();
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            assert!(out.starts_with("HTTP/1.1 408 "), "{out}");
        }
        // A slot is free when its thread has ended, a moment after the client saw the close.
        let t = Instant::now();
        while metrics.http_open.load(Ordering::Relaxed) > 0 {
            assert!(t.elapsed() < Duration::from_secs(5), "slots freed");
            std::thread::sleep(Duration::from_millis(10));
        }
        let again = get(addr, "/metrics");
        assert!(again.starts_with("HTTP/1.1 200 "), "{again}");
        assert!(
            again.contains("ccci_bridge_http_refused_total 1"),
            "{again}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
