//! A small HTTP/1.1 server for the stand-ins, written on `std::net` so that faults can be
//! injected at the wire: a status, a delay, a hang until the client gives up, malformed JSON,
//! or a body cut short of its `Content-Length`. Every request is logged so tests can assert
//! on what was asked of a stand-in.
//!
//! One request per connection (`Connection: close`); clients reconnect, as they do when a real
//! server closes an idle keep-alive connection.
//!
//! Every server also answers a control surface under `/_standin/` (no real Gitea or Drone has
//! that path): `GET /_standin/requests`, `DELETE /_standin/requests`, `POST /_standin/faults`
//! (a [`FaultRule`] as JSON), `DELETE /_standin/faults`. The stand-in adds its own controls.

use std::io::Read;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ccci::http::{self as wire, Unread};
use serde::{Deserialize, Serialize};

/// Requests larger than this are refused with 413; real servers cap bodies too.
const MAX_REQUEST_BODY: usize = 32 * 1024 * 1024;
/// A request's head, and then its body, must have arrived within this.
const READ_LIMIT: Duration = Duration::from_secs(30);
const MAX_HEAD: usize = 64 * 1024;
/// How long a `hang` fault holds a connection at most, so a stand-in never leaks threads.
const HANG_LIMIT: Duration = Duration::from_secs(120);

/// One parsed request.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Request {
    pub method: String,
    /// The path, percent-decoded, without the query string.
    pub path: String,
    /// Query pairs in order, percent-decoded (`+` is a space, as Go's `url.ParseQuery` does).
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    #[serde(with = "body_text")]
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The first value of a query parameter, as Go's `Query().Get` returns it.
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Path segments, without empty ones.
    pub fn segments(&self) -> Vec<&str> {
        self.path.split('/').filter(|s| !s.is_empty()).collect()
    }

    pub fn json<T: for<'de> Deserialize<'de>>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

/// One answer.
#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn json(status: u16, value: &impl Serialize) -> Response {
        Response::new(status)
            .header("Content-Type", "application/json;charset=utf-8")
            .body(serde_json::to_vec(value).expect("serialising a stand-in answer"))
    }

    pub fn text(status: u16, text: &str) -> Response {
        Response::new(status)
            .header("Content-Type", "text/plain;charset=utf-8")
            .body(text.as_bytes().to_vec())
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Response {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    pub fn body(mut self, body: Vec<u8>) -> Response {
        self.body = body;
        self
    }
}

/// What a fault does to a matching request. The handler does not run for a faulted request,
/// except for `Delay`, which only holds the answer back.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Fault {
    /// Answer this status with a short plain-text body.
    Status { status: u16 },
    /// Run the handler, but answer only after this many milliseconds.
    Delay { ms: u64 },
    /// Read the request and never answer (until the client closes, or a long bound).
    Hang,
    /// Answer 200 with a body that is not JSON.
    MalformedJson,
    /// Run the handler, then send only half of the body it produced and close.
    Truncated,
}

/// Which requests a fault hits. `path` is a pattern where `*` matches one segment and a
/// trailing `**` any rest, e.g. `/api/v1/repos/*/*/issues/comments`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FaultRule {
    #[serde(default)]
    pub method: Option<String>,
    pub path: String,
    pub fault: Fault,
    /// Hit only this many matching requests, then retire; `None` = every one.
    #[serde(default)]
    pub times: Option<u32>,
    /// Hit each matching request with this probability (0..=1); `None` = always.
    #[serde(default)]
    pub probability: Option<f64>,
}

impl FaultRule {
    pub fn new(path: &str, fault: Fault) -> FaultRule {
        FaultRule {
            method: None,
            path: path.to_owned(),
            fault,
            times: None,
            probability: None,
        }
    }

    pub fn method(mut self, m: &str) -> FaultRule {
        self.method = Some(m.to_owned());
        self
    }

    pub fn times(mut self, n: u32) -> FaultRule {
        self.times = Some(n);
        self
    }

    pub fn probability(mut self, p: f64) -> FaultRule {
        self.probability = Some(p);
        self
    }

    fn matches(&self, req: &Request) -> bool {
        if let Some(m) = &self.method {
            if !m.eq_ignore_ascii_case(&req.method) {
                return false;
            }
        }
        path_matches(&self.path, &req.path)
    }
}

/// `*` is one segment, a trailing `**` is any rest (also none).
pub fn path_matches(pattern: &str, path: &str) -> bool {
    let pat: Vec<&str> = pattern.split('/').filter(|s| !s.is_empty()).collect();
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    for (i, p) in pat.iter().enumerate() {
        if *p == "**" && i == pat.len() - 1 {
            return true;
        }
        match segs.get(i) {
            Some(s) if *p == "*" || p == s => {}
            _ => return false,
        }
    }
    pat.len() == segs.len()
}

/// A request as the log keeps it, with the status it was answered (0 = never answered).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Logged {
    pub seq: u64,
    pub at_ms: u64,
    #[serde(flatten)]
    pub request: Request,
    pub status: u16,
    pub fault: Option<Fault>,
}

/// The behaviour behind a server. `Send + Sync`: connections are served on their own threads.
pub type Handler = Arc<dyn Fn(&Request) -> Response + Send + Sync>;

struct Shared {
    log: Mutex<Vec<Logged>>,
    faults: Mutex<Vec<FaultRule>>,
    seq: AtomicU64,
    rng: Mutex<u64>,
    stop: AtomicBool,
}

/// A running stand-in server on `127.0.0.1`. Dropping it stops accepting connections.
pub struct Server {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Server {
    /// Starts on `127.0.0.1:port` (`0` = any free port).
    pub fn start(port: u16, handler: Handler) -> std::io::Result<Server> {
        let listener = TcpListener::bind(("127.0.0.1", port))?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            log: Mutex::new(Vec::new()),
            faults: Mutex::new(Vec::new()),
            seq: AtomicU64::new(0),
            rng: Mutex::new(0x2545_F491_4F6C_DD1D ^ u64::from(addr.port())),
            stop: AtomicBool::new(false),
        });
        let accept_shared = shared.clone();
        thread::Builder::new()
            .name(format!("standin-http-{}", addr.port()))
            .spawn(move || {
                for stream in listener.incoming() {
                    if accept_shared.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let shared = accept_shared.clone();
                    let handler = handler.clone();
                    let _ = thread::Builder::new()
                        .name("standin-conn".into())
                        .spawn(move || serve(stream, &shared, &handler));
                }
            })?;
        Ok(Server { addr, shared })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received so far (control-surface requests excluded), oldest first.
    pub fn requests(&self) -> Vec<Logged> {
        self.shared.log.lock().unwrap().clone()
    }

    pub fn clear_requests(&self) {
        self.shared.log.lock().unwrap().clear();
    }

    pub fn inject(&self, rule: FaultRule) {
        self.shared.faults.lock().unwrap().push(rule);
    }

    pub fn clear_faults(&self) {
        self.shared.faults.lock().unwrap().clear();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn serve(mut stream: TcpStream, shared: &Shared, handler: &Handler) {
    let req = match read_request(&mut stream) {
        Ok(Some(r)) => r,
        Ok(None) => return,
        Err(status) => {
            let _ = write_response(&mut stream, &Response::text(status, "bad request"), None);
            return;
        }
    };
    if shared.stop.load(Ordering::SeqCst) {
        return;
    }
    if let Some(resp) = control(&req, shared) {
        let _ = write_response(&mut stream, &resp, None);
        return;
    }
    let seq = shared.seq.fetch_add(1, Ordering::SeqCst) + 1;
    let fault = pick_fault(&req, shared);
    let log_index = {
        let mut log = shared.log.lock().unwrap();
        log.push(Logged {
            seq,
            at_ms: now_ms(),
            request: req.clone(),
            status: 0,
            fault: fault.clone(),
        });
        log.len() - 1
    };
    let set_status = |status: u16| {
        let mut log = shared.log.lock().unwrap();
        // The log may have been cleared meanwhile; find the entry by its sequence number.
        if let Some(e) = log.get_mut(log_index).filter(|e| e.seq == seq) {
            e.status = status;
        } else if let Some(e) = log.iter_mut().find(|e| e.seq == seq) {
            e.status = status;
        }
    };
    match fault {
        Some(Fault::Status { status }) => {
            set_status(status);
            let _ = write_response(&mut stream, &Response::text(status, "injected fault"), None);
        }
        Some(Fault::Hang) => {
            // Hold the connection until the client hangs up or the bound passes.
            let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
            let start = std::time::Instant::now();
            let mut buf = [0u8; 64];
            while start.elapsed() < HANG_LIMIT && !shared.stop.load(Ordering::SeqCst) {
                match stream.read(&mut buf) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e)
                        if e.kind() == std::io::ErrorKind::WouldBlock
                            || e.kind() == std::io::ErrorKind::TimedOut => {}
                    Err(_) => break,
                }
            }
        }
        Some(Fault::MalformedJson) => {
            set_status(200);
            let resp = Response::new(200)
                .header("Content-Type", "application/json;charset=utf-8")
                .body(b"{\"id\": 1, \"body\": \"unterminated".to_vec());
            let _ = write_response(&mut stream, &resp, None);
        }
        Some(Fault::Delay { ms }) => {
            let resp = handler(&req);
            thread::sleep(Duration::from_millis(ms));
            set_status(resp.status);
            let _ = write_response(&mut stream, &resp, None);
        }
        Some(Fault::Truncated) => {
            let resp = handler(&req);
            set_status(resp.status);
            let cut = resp.body.len() / 2;
            let _ = write_response(&mut stream, &resp, Some(cut));
        }
        None => {
            let resp = handler(&req);
            set_status(resp.status);
            let _ = write_response(&mut stream, &resp, None);
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
}

fn pick_fault(req: &Request, shared: &Shared) -> Option<Fault> {
    let mut faults = shared.faults.lock().unwrap();
    let mut hit = None;
    for (i, rule) in faults.iter_mut().enumerate() {
        if !rule.matches(req) {
            continue;
        }
        if let Some(p) = rule.probability {
            let mut rng = shared.rng.lock().unwrap();
            // xorshift64*: deterministic per port, good enough to pick 10 % of requests.
            *rng ^= *rng >> 12;
            *rng ^= *rng << 25;
            *rng ^= *rng >> 27;
            let r = (rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64;
            if r >= p {
                continue;
            }
        }
        if let Some(t) = rule.times.as_mut() {
            *t = t.saturating_sub(1);
        }
        hit = Some((i, rule.fault.clone()));
        break;
    }
    let (i, fault) = hit?;
    if faults[i].times == Some(0) {
        faults.remove(i);
    }
    Some(fault)
}

fn control(req: &Request, shared: &Shared) -> Option<Response> {
    if !req.path.starts_with("/_standin/") {
        return None;
    }
    Some(match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/_standin/requests") => Response::json(200, &*shared.log.lock().unwrap()),
        ("DELETE", "/_standin/requests") => {
            shared.log.lock().unwrap().clear();
            Response::new(204)
        }
        ("POST", "/_standin/faults") => match req.json::<FaultRule>() {
            Ok(rule) => {
                shared.faults.lock().unwrap().push(rule);
                Response::new(201)
            }
            Err(e) => Response::text(400, &format!("bad fault rule: {e}")),
        },
        ("DELETE", "/_standin/faults") => {
            shared.faults.lock().unwrap().clear();
            Response::new(204)
        }
        _ => return None, // the stand-in's own controls
    })
}

/// Reads one request within [`READ_LIMIT`]. `Ok(None)`: the client left without one.
fn read_request(stream: &mut TcpStream) -> Result<Option<Request>, u16> {
    let deadline = std::time::Instant::now() + READ_LIMIT;
    let (head, mut body) = match wire::read_head(stream, deadline, MAX_HEAD) {
        Ok(r) => r,
        Err(Unread::Gone) => return Ok(None),
        Err(Unread::Slow) => return Err(408),
        Err(Unread::Large) => return Err(431),
        Err(Unread::Garbled) => return Err(400),
    };
    let read = if head.chunked() {
        body.read_chunked(MAX_REQUEST_BODY)
    } else {
        match head.content_length() {
            Ok(len) => body.read(len.unwrap_or(0), MAX_REQUEST_BODY as u64),
            Err(e) => Err(e),
        }
    };
    let body = match read {
        Ok(b) => b,
        Err(Unread::Gone) => return Ok(None),
        Err(Unread::Slow) => return Err(408),
        Err(Unread::Large) => return Err(413),
        Err(Unread::Garbled) => return Err(400),
    };
    Ok(Some(Request {
        method: head.method.clone(),
        path: percent_decode(head.path(), false),
        query: parse_query(head.query()),
        headers: head.headers,
        body,
    }))
}

pub fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k, true), percent_decode(v, true))
        })
        .collect()
}

pub fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' if plus_is_space => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn write_response(
    stream: &mut TcpStream,
    resp: &Response,
    cut: Option<usize>,
) -> std::io::Result<()> {
    wire::write_response(stream, resp.status, &resp.headers, &resp.body, cut)
}

mod body_text {
    //! Bodies in the request log are shown as text when they are UTF-8 (webhook payloads,
    //! JSON), which is what a test wants to read back.
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(body: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&String::from_utf8_lossy(body))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        Ok(String::deserialize(d)?.into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_patterns() {
        assert!(path_matches(
            "/api/v1/repos/*/*/pulls/*",
            "/api/v1/repos/a/b/pulls/3"
        ));
        assert!(!path_matches(
            "/api/v1/repos/*/*/pulls/*",
            "/api/v1/repos/a/b/pulls"
        ));
        assert!(path_matches("/api/**", "/api/repos/a/b/builds"));
        assert!(path_matches("/api/**", "/api"));
        assert!(!path_matches("/api/v1", "/api/v1/x"));
    }

    #[test]
    fn query_decoding_follows_go() {
        let q = parse_query("since=2025-03-01T10%3A00%3A00%2B01%3A00&a=b+c&flag");
        assert_eq!(q[0].1, "2025-03-01T10:00:00+01:00");
        assert_eq!(q[1].1, "b c");
        assert_eq!(q[2], ("flag".to_owned(), String::new()));
    }
}
