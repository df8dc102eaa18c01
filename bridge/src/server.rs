//! The bridge's HTTP side: `POST /hook` (Gitea webhooks, the optional fast path),
//! `GET /healthz` and `GET /metrics`. It faces the internet, so every connection is bounded:
//! at most [`MAX_CONNECTIONS`] at once, one short-lived thread each (the one over is answered
//! 503 and closed at once, unread); the request head within [`HEAD_DEADLINE`] and 16 KB; a
//! body only for `POST /hook` with the event Gitea sends and a `Content-Length` under the cap,
//! read within [`BODY_DEADLINE`]; one request per connection. A slow client costs its own
//! thread for a few seconds and nobody else anything. Accepted comments go to the worker's
//! bounded queue; a full queue answers 503 (polling still finds the comment).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

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

struct Head {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Why a request could not be read.
enum Unread {
    /// The client was too slow: 408.
    Slow,
    /// Too large: 431 for a head, 413 for a body.
    Large,
    /// Not HTTP/1.x: 400.
    Garbled,
    /// Gone: nothing to answer.
    Gone,
}

/// Reads until `complete` says the bytes are whole, `max` is passed or the deadline is: each
/// read waits at most what is left of it, so a client trickling bytes gains nothing.
fn read_until(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    deadline: Instant,
    max: usize,
    complete: impl Fn(&[u8]) -> bool,
) -> Result<(), Unread> {
    let mut chunk = [0u8; 8192];
    while !complete(buf) {
        if buf.len() > max {
            return Err(Unread::Large);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Unread::Slow);
        }
        s.set_read_timeout(Some(left)).map_err(|_| Unread::Gone)?;
        match s.read(&mut chunk) {
            Ok(0) => return Err(Unread::Gone),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(Unread::Slow)
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return Err(Unread::Gone),
        }
    }
    Ok(())
}

fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n")
}

/// The request line and headers; what was read past them is the body's start.
fn read_head(s: &mut TcpStream) -> Result<(Head, Vec<u8>), Unread> {
    let mut buf = Vec::with_capacity(1024);
    let deadline = Instant::now() + HEAD_DEADLINE;
    read_until(s, &mut buf, deadline, MAX_HEAD, |b| head_end(b).is_some())?;
    let end = head_end(&buf).expect("complete");
    let text = std::str::from_utf8(&buf[..end]).map_err(|_| Unread::Garbled)?;
    let mut lines = text.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (first.next(), first.next(), first.next(), first.next())
    else {
        return Err(Unread::Garbled);
    };
    if !version.starts_with("HTTP/1.") {
        return Err(Unread::Garbled);
    }
    let mut headers = Vec::new();
    for l in lines {
        let (k, v) = l.split_once(':').ok_or(Unread::Garbled)?;
        headers.push((k.trim().to_owned(), v.trim().to_owned()));
    }
    let head = Head {
        method: method.to_owned(),
        // A query string changes nothing here.
        path: target.split('?').next().unwrap_or_default().to_owned(),
        headers,
    };
    Ok((head, buf[end + 4..].to_vec()))
}

impl Http {
    /// What to answer: the cheap refusals first (path, method, event, size), the body read
    /// only when one may be needed, the signature checked before anything else looks at it.
    fn respond(&self, head: &Head, mut body: Vec<u8>, s: &mut TcpStream) -> Reply {
        match (head.method.as_str(), head.path.as_str()) {
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
                let Some(len) = head
                    .header("Content-Length")
                    .and_then(|v| v.parse::<u64>().ok())
                else {
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
                let len = len as usize;
                let deadline = Instant::now() + BODY_DEADLINE;
                match read_until(s, &mut body, deadline, len, |b| b.len() >= len) {
                    Ok(()) => {}
                    Err(Unread::Slow) => return self.reject(408, "body too slow"),
                    Err(_) => return self.reject(400, "unreadable body"),
                }
                body.truncate(len);
                self.hook(head, &body)
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
        if !enrolled || !payload.is_pull || payload.action != "created" {
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
        let reply = match read_head(&mut s) {
            Ok((head, rest)) => self.respond(&head, rest, &mut s),
            Err(Unread::Gone) => return,
            Err(Unread::Slow) => text(408, "request head too slow\n"),
            Err(Unread::Large) => text(431, "request head too large\n"),
            Err(Unread::Garbled) => text(400, "not an HTTP/1 request\n"),
        };
        write_reply(&mut s, &reply);
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// Answers and closes. Unread input (a refused body) is drained a little first, so the client
/// reads the answer instead of a reset.
fn write_reply(s: &mut TcpStream, r: &Reply) {
    let body = if r.status == 204 { "" } else { r.body.as_str() };
    let out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        r.status,
        reason(r.status),
        r.content_type,
        body.len()
    );
    if s.write_all(out.as_bytes()).is_err() {
        return;
    }
    let _ = s.shutdown(Shutdown::Write);
    let until = Instant::now() + Duration::from_secs(1);
    let mut sink = [0u8; 8192];
    let mut drained = 0;
    while drained < 2 * MAX_HOOK_BODY as usize {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() || s.set_read_timeout(Some(left)).is_err() {
            break;
        }
        match s.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
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
