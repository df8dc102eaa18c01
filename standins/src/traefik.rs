//! Stand-in for the host's Traefik: a reverse proxy on 127.0.0.1 that routes each request by its
//! host to the stand-in swarm's service processes, as Traefik's swarm provider routes
//! `https://<domain>` to the containers whose `traefik.http.routers.<name>.rule=Host(…)` label
//! names that domain. It also takes absolute-form requests (`GET http://<domain>/path`), so
//! clients configured with it as their HTTP proxy (Python `requests` `proxies=`, Chromium
//! `--proxy-server=`) reach apps by their domain as they would on a host.
//!
//! Routing data is the swarm's `state.json` (see [`crate::abra::swarm`]), re-read at most every
//! [`Options::refresh`] (100 ms by default), so deploys and undeploys show up almost at once. Real
//! Traefik polls the swarm every 15 s (`providers.swarm.refreshSeconds`, pkg/provider/docker/
//! pswarm.go SetDefaults); a test may set the refresh to 15 s to model that lag.
//!
//! Traefik's own answers, mirrored:
//! - no router matches → `404`, `404 page not found\n`, text/plain (pkg/muxer/http/mux.go:
//!   the muxer's default handler is Go's `http.NotFoundHandler`);
//! - the backend refuses or drops the connection → `502 Bad Gateway`, body `Bad Gateway`;
//! - the backend times out → `504 Gateway Timeout`, body `Gateway Timeout`
//!   (pkg/proxy/httputil/proxy.go ErrorHandlerWithContext / ComputeStatusCode: a net.Error
//!   timeout is 504, any other net.Error or io.EOF is 502, the body is `http.StatusText`).
//!
//! Chromium never sends `localhost`/`*.localhost` URLs to a proxy unless started with
//! `--proxy-bypass-list=<-loopback>` (its implicit bypass rules); Python `requests` does.
//!
//! One request per client connection (`Connection: close`); clients reconnect. Bodies are
//! streamed both ways, of any size. A `CONNECT <host>:80` opens a tunnel for one plain-HTTP
//! request (for clients that tunnel everything through a proxy). Not modelled: TLS (a `CONNECT`
//! to another port is answered 501), websockets
//! and other upgrades, rules other than `Host(…)` (`PathPrefix`, `HostRegexp`, …), middlewares.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context, Result};
use serde::{Deserialize, Serialize};

use crate::abra::swarm;

/// Go's `http.DefaultMaxHeaderBytes` (1 MiB): a larger request head is answered 431.
const MAX_HEAD: usize = 1 << 20;
/// How long a client may take to send its request head (Traefik's entrypoint
/// `respondingTimeouts.readTimeout` defaults to 60 s).
const CLIENT_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Tunables; [`Default`] is what the binary uses without flags.
#[derive(Clone, Debug)]
pub struct Options {
    /// How stale the routing table may be. Real Traefik: 15 s (see the module docs).
    pub refresh: Duration,
    /// Connecting to a backend (Traefik's `serversTransport.forwardingTimeouts.dialTimeout`
    /// default, 30 s); a refused connection fails at once whatever this is.
    pub dial_timeout: Duration,
    /// How long to wait for a backend's answer head, and then between body reads, before
    /// answering 504 (or cutting the body). Traefik's `responseHeaderTimeout` defaults to none;
    /// the stand-in bounds it so a hung backend never pins a thread for ever.
    pub response_timeout: Duration,
    /// Log one line per request on stderr.
    pub log: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            refresh: Duration::from_millis(100),
            dial_timeout: Duration::from_secs(30),
            response_timeout: Duration::from_secs(60),
            log: true,
        }
    }
}

/// One router: requests whose host is `host` go to `127.0.0.1:port`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// Lower case, no port, no trailing dot.
    pub host: String,
    /// The rule it came from (its length is Traefik's default priority).
    pub rule: String,
    /// Router name (`<stack>` for a route from the app's domain).
    pub router: String,
    pub stack: String,
    pub service: String,
    pub port: u16,
}

/// The part of the swarm's `state.json` routing needs. Read on its own (rather than as
/// [`swarm::State`]) so that service `labels`, which the stand-in abra may record, are kept.
#[derive(Deserialize, Default)]
struct DiskState {
    #[serde(default)]
    stacks: BTreeMap<String, DiskStack>,
}

#[derive(Deserialize)]
struct DiskStack {
    #[serde(default)]
    domain: String,
    #[serde(default)]
    services: Vec<DiskService>,
}

#[derive(Deserialize)]
struct DiskService {
    name: String,
    #[serde(default)]
    pid: Option<u32>,
    #[serde(default)]
    start_time: Option<u64>,
    #[serde(default)]
    port: Option<u16>,
    /// Deploy labels after interpolation, when the swarm records them.
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
}

/// `$STANDIN_SWARM_DIR`, else `$HOME/.standin-swarm`: the stand-in abra's default.
pub fn default_swarm_dir() -> Result<PathBuf> {
    match std::env::var_os("STANDIN_SWARM_DIR") {
        Some(d) if !d.is_empty() => Ok(PathBuf::from(d)),
        _ => {
            let home = std::env::var_os("HOME")
                .ok_or_else(|| anyhow!("neither STANDIN_SWARM_DIR nor HOME is set"))?;
            Ok(PathBuf::from(home).join(".standin-swarm"))
        }
    }
}

/// The hosts a rule's positive `Host(…)` matchers name, lower-cased. Both Traefik v3's
/// `Host(`a`) || Host(`b`)` and v2's `Host(`a`, `b`)` (what Co-op Cloud recipes write with
/// `EXTRA_DOMAINS`) are read; other matchers are ignored, so `Host(`a`) && PathPrefix(`/x`)`
/// routes all of `a` (a simplification). Host values are compared lower-cased as in
/// pkg/muxer/http/matcher.go `host`.
pub fn rule_hosts(rule: &str) -> Vec<String> {
    let b = rule.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(off) = rule[i..].find("Host(") {
        let at = i + off;
        i = at + 5;
        let word_start = at == 0 || !(b[at - 1].is_ascii_alphanumeric() || b[at - 1] == b'_');
        let negated = rule[..at].trim_end().ends_with('!');
        if !word_start || negated {
            continue;
        }
        // Arguments: quoted strings separated by commas, up to the closing parenthesis.
        let mut j = i;
        let mut hosts = Vec::new();
        while j < b.len() {
            match b[j] {
                b')' => break,
                q @ (b'`' | b'"') => {
                    let Some(end) = rule[j + 1..].find(q as char) else {
                        break;
                    };
                    hosts.push(rule[j + 1..j + 1 + end].trim().to_ascii_lowercase());
                    j += end + 2;
                }
                _ => j += 1,
            }
        }
        i = j;
        out.extend(
            hosts
                .into_iter()
                .map(|h| h.trim_end_matches('.').to_owned())
                .filter(|h| !h.is_empty()),
        );
    }
    out
}

/// The routes of every running service in the swarm, highest priority first. A service counts
/// when its process is alive: Traefik's swarm provider only routes to tasks in state running
/// (pkg/provider/docker/pswarm.go listTasks), so a stack that is gone, or whose tasks all died,
/// has no router and its domain answers 404.
///
/// Routers come from the service's `traefik.http.routers.<name>.rule` labels when the swarm
/// records them (with `traefik.enable=true`, as every Co-op Cloud recipe sets it for Traefik's
/// `exposedByDefault: false`). Without recorded labels, the stack's `app` service (Co-op Cloud's
/// convention for the service carrying the Traefik labels; else its only service) gets
/// `Host(`<app domain>`)`, which is what the recipes' labels resolve to.
pub fn load_routes(swarm_dir: &Path) -> Result<Vec<Route>> {
    let path = swarm_dir.join("state.json");
    let state: DiskState = match std::fs::read(&path) {
        Ok(b) => {
            serde_json::from_slice(&b).with_context(|| format!("parsing {}", path.display()))?
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => DiskState::default(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let mut routes = Vec::new();
    for (stack_name, stack) in &state.stacks {
        let fallback = stack
            .services
            .iter()
            .find(|s| s.name == "app")
            .or_else(|| (stack.services.len() == 1).then(|| &stack.services[0]))
            .map(|s| s.name.clone());
        for svc in &stack.services {
            let (Some(pid), Some(port)) = (svc.pid, svc.port) else {
                continue;
            };
            if !swarm::pid_alive(pid, svc.start_time) {
                continue;
            }
            let mut add = |router: &str, rule: &str| {
                for host in rule_hosts(rule) {
                    routes.push(Route {
                        host,
                        rule: rule.to_owned(),
                        router: router.to_owned(),
                        stack: stack_name.clone(),
                        service: svc.name.clone(),
                        port,
                    });
                }
            };
            match &svc.labels {
                Some(labels) => {
                    let enabled = labels
                        .get("traefik.enable")
                        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
                    if !enabled {
                        continue;
                    }
                    for (k, rule) in labels {
                        let router = k
                            .strip_prefix("traefik.http.routers.")
                            .and_then(|r| r.strip_suffix(".rule"));
                        if let Some(router) = router {
                            add(router, rule);
                        }
                    }
                }
                None if fallback.as_deref() == Some(svc.name.as_str())
                    && !stack.domain.is_empty() =>
                {
                    add(stack_name, &format!("Host(`{}`)", stack.domain));
                }
                None => {}
            }
        }
    }
    // Default priority = rule length, longest first (pkg/muxer/http/mux.go GetRulePriority,
    // routes.Less); ties keep stack order.
    routes.sort_by_key(|r| std::cmp::Reverse(r.rule.len()));
    Ok(routes)
}

/// A request host as Traefik matches it: lower case, port and trailing dot removed
/// (pkg/middlewares/requestdecorator canonizes the host; matcher.go `host` tolerates a
/// trailing period).
pub fn canonical_host(host: &str) -> String {
    let h = host.trim();
    let h = if let Some(rest) = h.strip_prefix('[') {
        // [v6]:port
        rest.split(']').next().unwrap_or(rest)
    } else if h.matches(':').count() == 1 {
        h.split(':').next().unwrap_or(h)
    } else {
        h
    };
    h.trim_end_matches('.').to_ascii_lowercase()
}

struct Shared {
    swarm_dir: PathBuf,
    opts: Options,
    stop: AtomicBool,
    routes: Mutex<Option<(Instant, Arc<Vec<Route>>)>>,
    /// Traefik sets `X-Forwarded-Server` to its hostname (forwardedheaders NewXForwarded).
    hostname: String,
    addr: SocketAddr,
}

impl Shared {
    fn routes(&self) -> Arc<Vec<Route>> {
        let mut cache = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, r)) = cache.as_ref() {
            if at.elapsed() < self.opts.refresh {
                return r.clone();
            }
        }
        let fresh = match load_routes(&self.swarm_dir) {
            Ok(r) => Arc::new(r),
            Err(e) => {
                // Keep the last good table, as Traefik keeps its configuration when a provider
                // errors.
                eprintln!("WARN standin-traefik: reading the swarm failed error={e:#}");
                cache.as_ref().map(|(_, r)| r.clone()).unwrap_or_default()
            }
        };
        *cache = Some((Instant::now(), fresh.clone()));
        fresh
    }

    fn route_for(&self, host: &str) -> Option<Route> {
        let host = canonical_host(host);
        self.routes().iter().find(|r| r.host == host).cloned()
    }
}

/// A running stand-in Traefik. Dropping it stops accepting connections.
pub struct Traefik {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Traefik {
    /// Listens on `127.0.0.1:port` (`0` = any free port) and routes into `swarm_dir`.
    pub fn start(port: u16, swarm_dir: &Path) -> Result<Traefik> {
        Traefik::start_with(port, swarm_dir, Options::default())
    }

    pub fn start_with(port: u16, swarm_dir: &Path, opts: Options) -> Result<Traefik> {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .with_context(|| format!("binding 127.0.0.1:{port}"))?;
        let addr = listener.local_addr().context("reading the bound address")?;
        let shared = Arc::new(Shared {
            swarm_dir: swarm_dir.to_path_buf(),
            opts,
            stop: AtomicBool::new(false),
            routes: Mutex::new(None),
            hostname: hostname(),
            addr,
        });
        let accept = shared.clone();
        thread::Builder::new()
            .name(format!("standin-traefik-{}", addr.port()))
            .spawn(move || {
                for stream in listener.incoming() {
                    if accept.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let shared = accept.clone();
                    let _ = thread::Builder::new()
                        .name("standin-traefik-conn".into())
                        .spawn(move || serve(stream, &shared));
                }
            })
            .context("spawning the accept thread")?;
        Ok(Traefik { addr, shared })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, no trailing slash: the proxy URL for clients.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The routing table as of now (fresh read, cache bypassed).
    pub fn routes(&self) -> Result<Vec<Route>> {
        load_routes(&self.shared.swarm_dir)
    }
}

impl Drop for Traefik {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

// ---------------------------------------------------------------------------------------------
// The wire

/// A request line and headers, as received.
struct Head {
    method: String,
    target: String,
    version: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .any(|(_, v)| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    }
}

/// Why a head could not be read.
enum HeadError {
    /// Nothing (or only part of a line) before the peer closed: no answer owed.
    Closed,
    Timeout,
    TooLarge,
    Malformed,
}

fn io_head_error(e: &io::Error) -> HeadError {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => HeadError::Timeout,
        _ => HeadError::Closed,
    }
}

/// Reads a start line and headers. For an answer head the start line's three parts land in
/// method/target/version in order: version, status, reason.
fn read_head(r: &mut impl BufRead) -> Result<Head, HeadError> {
    let mut total = 0usize;
    let mut next_line = |r: &mut dyn BufRead| -> Result<String, HeadError> {
        let mut buf = Vec::new();
        let n = Read::take(&mut *r, (MAX_HEAD - total.min(MAX_HEAD)) as u64 + 1)
            .read_until(b'\n', &mut buf)
            .map_err(|e| io_head_error(&e))?;
        total += n;
        if total > MAX_HEAD {
            return Err(HeadError::TooLarge);
        }
        if n == 0 || !buf.ends_with(b"\n") {
            return Err(HeadError::Closed);
        }
        let s = String::from_utf8_lossy(&buf);
        Ok(s.trim_end_matches(['\r', '\n']).to_owned())
    };
    let mut start = next_line(r)?;
    // RFC 9112 §2.2: a server SHOULD ignore empty lines before the request line.
    while start.is_empty() {
        start = next_line(r)?;
    }
    let mut parts = start.splitn(3, ' ');
    let (Some(a), Some(b)) = (parts.next(), parts.next()) else {
        return Err(HeadError::Malformed);
    };
    let c = parts.next().unwrap_or("").to_owned();
    let mut headers = Vec::new();
    loop {
        let line = next_line(r)?;
        if line.is_empty() {
            break;
        }
        let (k, v) = line.split_once(':').ok_or(HeadError::Malformed)?;
        if k.is_empty() || k.ends_with([' ', '\t']) {
            return Err(HeadError::Malformed);
        }
        headers.push((k.to_owned(), v.trim().to_owned()));
    }
    Ok(Head {
        method: a.to_owned(),
        target: b.to_owned(),
        version: c,
        headers,
    })
}

/// Copies one chunked body verbatim (sizes, data, trailers), so the receiver sees the same
/// framing and knows where it ends.
fn relay_chunked(src: &mut impl BufRead, dst: &mut impl Write) -> io::Result<()> {
    loop {
        let mut line = Vec::new();
        if src.read_until(b'\n', &mut line)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        dst.write_all(&line)?;
        let text = String::from_utf8_lossy(&line);
        let size_hex = text.trim().split(';').next().unwrap_or("").trim();
        let size = u64::from_str_radix(size_hex, 16)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
        if size == 0 {
            // Trailers, then the empty line.
            loop {
                let mut t = Vec::new();
                if src.read_until(b'\n', &mut t)? == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                dst.write_all(&t)?;
                if t == b"\r\n" || t == b"\n" {
                    return Ok(());
                }
            }
        }
        copy_exact(src, dst, size)?;
        let mut crlf = Vec::new();
        src.read_until(b'\n', &mut crlf)?;
        dst.write_all(&crlf)?;
    }
}

/// Copies exactly `n` bytes; fewer is an `UnexpectedEof`.
fn copy_exact(src: &mut impl Read, dst: &mut impl Write, n: u64) -> io::Result<()> {
    let copied = io::copy(&mut src.take(n), dst)?;
    if copied < n {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        499 => "Client Closed Request",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

/// IMF-fixdate, as Go's server stamps every answer (`Date:`).
fn http_date(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (proleptic Gregorian, era-based).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const WD: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MON: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        WD[days.rem_euclid(7) as usize],
        day,
        MON[(month - 1) as usize],
        year,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Traefik's (Go's) own short answers: text/plain, `Date`, `Content-Length`.
fn write_own(client: &mut TcpStream, status: u16, body: &str, extra: &[(&str, &str)]) {
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: text/plain; charset=utf-8\r\nDate: {}\r\n",
        reason(status),
        http_date(SystemTime::now())
    );
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    let _ = client.write_all(head.as_bytes());
    let _ = client.write_all(body.as_bytes());
    let _ = client.flush();
}

/// Hop-by-hop headers a proxy does not forward (Go net/http/httputil/reverseproxy.go
/// `hopHeaders`, which Traefik's proxy uses), plus the framing the stand-in sets itself.
fn is_hop_by_hop(name: &str) -> bool {
    [
        "connection",
        "proxy-connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
    ]
    .iter()
    .any(|h| name.eq_ignore_ascii_case(h))
}

/// The X- headers Traefik manages: from an untrusted client (no `forwardedHeaders.trustedIPs`,
/// the default) they are dropped before Traefik sets its own (pkg/middlewares/forwardedheaders/
/// forwarded_header.go ServeHTTP → DeleteXForwardedHeaders, rewrite).
fn is_managed_x_header(name: &str) -> bool {
    let n = name.replace('_', "-");
    [
        "x-forwarded-proto",
        "x-forwarded-scheme",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-port",
        "x-forwarded-server",
        "x-forwarded-uri",
        "x-forwarded-method",
        "x-forwarded-prefix",
        "x-forwarded-tls-client-cert",
        "x-forwarded-tls-client-cert-info",
        "x-scheme",
        "x-real-ip",
    ]
    .iter()
    .any(|h| n.eq_ignore_ascii_case(h))
}

/// Where a request goes: the host it names and the origin-form target to send upstream.
/// An absolute-form target's authority wins over the Host header (RFC 9112 §3.2.2; Go's
/// net/http sets `req.Host` from it, so real Traefik routes such a request by it too).
fn split_target(head: &Head) -> Option<(Option<String>, String)> {
    let t = head.target.as_str();
    if t.starts_with('/') || t == "*" {
        return Some((head.header("host").map(str::to_owned), t.to_owned()));
    }
    let lower = t.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("http://")
        .or_else(|| lower.strip_prefix("https://"))
        .map(|r| &t[t.len() - r.len()..])?;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..end];
    // Userinfo is not a host.
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let mut path = rest[end..].to_owned();
    if !path.starts_with('/') {
        path.insert(0, '/');
    }
    Some((Some(authority.to_owned()), path))
}

fn serve(client: TcpStream, shared: &Shared) {
    let started = Instant::now();
    let peer = client.peer_addr().ok();
    let _ = client.set_read_timeout(Some(CLIENT_READ_TIMEOUT));
    let Ok(mut out) = client.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(client);
    let head = match read_head(&mut reader) {
        Ok(h) => h,
        Err(HeadError::Closed) | Err(HeadError::Timeout) => return,
        Err(HeadError::TooLarge) => {
            write_own(&mut out, 431, "431 Request Header Fields Too Large", &[]);
            return;
        }
        Err(HeadError::Malformed) => {
            write_own(&mut out, 400, "400 Bad Request", &[]);
            return;
        }
    };
    // A CONNECT to port 80 opens a plain-HTTP tunnel whose one request is then served as if
    // sent directly: clients that tunnel every proxied request (Rust's ureq does) reach apps
    // like clients that send absolute-form requests (Python requests, Chromium). Stand-in
    // only: on a host no proxy is involved at all.
    let head =
        if head.method.eq_ignore_ascii_case("CONNECT") && connect_port(&head.target) == Some(80) {
            if out
                .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                .is_err()
            {
                return;
            }
            match read_head(&mut reader) {
                Ok(h) => h,
                Err(HeadError::Closed) | Err(HeadError::Timeout) => return,
                Err(HeadError::TooLarge) => {
                    write_own(&mut out, 431, "431 Request Header Fields Too Large", &[]);
                    return;
                }
                Err(HeadError::Malformed) => {
                    write_own(&mut out, 400, "400 Bad Request", &[]);
                    return;
                }
            }
        } else {
            head
        };
    let (status, host, path) = answer(&head, &mut reader, &mut out, peer, shared);
    let _ = out.flush();
    let _ = out.shutdown(Shutdown::Both);
    if shared.opts.log {
        eprintln!(
            "INFO standin-traefik: request method={} host={} path={} status={} ms={}",
            head.method,
            if host.is_empty() { "-" } else { &host },
            path,
            status,
            started.elapsed().as_millis()
        );
    }
}

/// The port of a CONNECT target (`host:port`, `[v6]:port`).
fn connect_port(target: &str) -> Option<u16> {
    let (_, port) = target.rsplit_once(':')?;
    port.parse().ok()
}

/// Handles one request; returns (status sent, host, path without query) for the log.
fn answer(
    head: &Head,
    reader: &mut BufReader<TcpStream>,
    out: &mut TcpStream,
    peer: Option<SocketAddr>,
    shared: &Shared,
) -> (u16, String, String) {
    if head.method.eq_ignore_ascii_case("CONNECT") {
        // No TLS here, so no tunnels to 443: clients must use http:// URLs through this proxy.
        write_own(
            out,
            501,
            "CONNECT is only supported to port 80 by the stand-in Traefik (no TLS here; use http:// URLs)",
            &[],
        );
        return (501, head.target.clone(), String::new());
    }
    let Some((host, target)) = split_target(head) else {
        write_own(out, 400, "400 Bad Request", &[]);
        return (400, String::new(), head.target.clone());
    };
    let log_path = target.split('?').next().unwrap_or("").to_owned();
    let host = host.unwrap_or_default();
    // Go's server refuses an HTTP/1.1 request without a Host (net/http server.go readRequest:
    // "missing required Host header").
    if host.is_empty() && head.version.eq_ignore_ascii_case("HTTP/1.1") {
        write_own(
            out,
            400,
            "400 Bad Request: missing required Host header",
            &[],
        );
        return (400, host, log_path);
    }
    let Some(route) = shared.route_for(&host) else {
        if log_path == "/_standin/routes" && canonical_host(&host) == shared.addr.ip().to_string() {
            // Stand-in only, on the proxy's own address (no app has it): the routing table.
            let body = serde_json::to_string(&*shared.routes()).unwrap_or_default();
            let _ = out.write_all(
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            );
            return (200, host, log_path);
        }
        // pkg/muxer/http/mux.go: no route matches → http.NotFoundHandler → http.Error(w,
        // "404 page not found", 404), which also sets X-Content-Type-Options: nosniff.
        write_own(
            out,
            404,
            "404 page not found\n",
            &[("X-Content-Type-Options", "nosniff")],
        );
        return (404, host, log_path);
    };
    let status = forward(head, reader, out, peer, shared, &route, &host, &target);
    (status, host, log_path)
}

/// Why forwarding failed before an answer head reached the client.
enum Upstream {
    Timeout,
    Failed,
}

fn classify(e: &io::Error) -> Upstream {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Upstream::Timeout,
        _ => Upstream::Failed,
    }
}

#[allow(clippy::too_many_arguments)]
fn forward(
    head: &Head,
    reader: &mut BufReader<TcpStream>,
    out: &mut TcpStream,
    peer: Option<SocketAddr>,
    shared: &Shared,
    route: &Route,
    host: &str,
    target: &str,
) -> u16 {
    match try_forward(head, reader, out, peer, shared, route, host, target) {
        Ok(status) => status,
        Err(kind) => {
            // pkg/proxy/httputil/proxy.go ComputeStatusCode: timeout → 504, else 502; the
            // body is http.StatusText.
            let status = match kind {
                Upstream::Timeout => 504,
                Upstream::Failed => 502,
            };
            write_own(out, status, reason(status), &[]);
            status
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn try_forward(
    head: &Head,
    reader: &mut BufReader<TcpStream>,
    out: &mut TcpStream,
    peer: Option<SocketAddr>,
    shared: &Shared,
    route: &Route,
    host: &str,
    target: &str,
) -> Result<u16, Upstream> {
    let backend = SocketAddr::from(([127, 0, 0, 1], route.port));
    let upstream =
        TcpStream::connect_timeout(&backend, shared.opts.dial_timeout).map_err(|e| classify(&e))?;
    let _ = upstream.set_read_timeout(Some(shared.opts.response_timeout));
    let _ = upstream.set_write_timeout(Some(shared.opts.response_timeout));
    let mut up_w = upstream.try_clone().map_err(|_| Upstream::Failed)?;

    // Headers named in Connection are hop-by-hop too (RFC 9110 §7.6.1), except Traefik's own
    // X- headers (forwarded_header.go removeConnectionHeaders).
    let connection_named: Vec<String> = head
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("connection"))
        .flat_map(|(_, v)| v.split(',').map(|t| t.trim().to_ascii_lowercase()))
        .filter(|t| !t.is_empty() && !is_managed_x_header(t))
        .collect();
    let client_ip = peer.map(|p| p.ip().to_string()).unwrap_or_default();
    let xf_port = match host.rsplit_once(':') {
        Some((h, p))
            if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && !h.ends_with(':') =>
        {
            p
        }
        _ => "80",
    };
    let mut req = format!("{} {target} HTTP/1.1\r\n", head.method);
    // passHostHeader defaults to true: the backend sees the client's host.
    req.push_str(&format!("Host: {host}\r\n"));
    for (k, v) in &head.headers {
        let lk = k.to_ascii_lowercase();
        if is_hop_by_hop(k)
            || is_managed_x_header(k)
            || lk == "host"
            || lk == "expect"
            || connection_named.contains(&lk)
        {
            continue;
        }
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    // forwarded_header.go rewrite + proxy.go rewriteRequestBuilder (X-Forwarded-For).
    req.push_str(&format!(
        "X-Forwarded-For: {client_ip}\r\nX-Forwarded-Host: {host}\r\nX-Forwarded-Port: {xf_port}\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Server: {}\r\nX-Real-Ip: {client_ip}\r\n",
        shared.hostname
    ));
    let chunked_in = head.has_token("transfer-encoding", "chunked");
    let length_in = match head
        .header("content-length")
        .map(|v| v.trim().parse::<u64>())
    {
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => {
            write_own(out, 400, "400 Bad Request: bad Content-Length", &[]);
            return Ok(400);
        }
        None => None,
    };
    if chunked_in {
        req.push_str("Transfer-Encoding: chunked\r\n");
    } else if let Some(n) = length_in {
        req.push_str(&format!("Content-Length: {n}\r\n"));
    }
    req.push_str("Connection: close\r\n\r\n");
    up_w.write_all(req.as_bytes()).map_err(|e| classify(&e))?;

    let has_body = chunked_in || length_in.is_some_and(|n| n > 0);
    if has_body && head.has_token("expect", "100-continue") {
        // Go's server sends the interim answer when the handler first reads the body.
        let _ = out.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
    }
    let sent = if chunked_in {
        relay_chunked(reader, &mut up_w)
    } else if let Some(n) = length_in {
        copy_exact(reader, &mut up_w, n)
    } else {
        Ok(())
    };
    if let Err(e) = sent {
        // The client stopped sending (its problem: Traefik logs 499 and answers nothing
        // useful), or the backend stopped reading (502).
        if e.kind() == io::ErrorKind::UnexpectedEof {
            return Ok(499);
        }
        return Err(classify(&e));
    }
    let _ = up_w.flush();

    let mut up_r = BufReader::new(upstream);
    let resp = loop {
        let resp = read_head(&mut up_r).map_err(|e| match e {
            HeadError::Timeout => Upstream::Timeout,
            _ => Upstream::Failed,
        })?;
        let code: u16 = resp.target.parse().map_err(|_| Upstream::Failed)?;
        // Interim answers (100, 103) are not passed on; the final one follows.
        if (100..200).contains(&code) && code != 101 {
            continue;
        }
        break resp;
    };
    let status: u16 = resp.target.parse().map_err(|_| Upstream::Failed)?;
    let no_body = head.method.eq_ignore_ascii_case("HEAD")
        || (100..200).contains(&status)
        || status == 204
        || status == 304;
    let chunked_out = resp.has_token("transfer-encoding", "chunked");
    let length_out = resp
        .header("content-length")
        .and_then(|v| v.trim().parse::<u64>().ok());
    let mut h = format!(
        "HTTP/1.1 {status} {}\r\n",
        if resp.version.is_empty() {
            reason(status)
        } else {
            &resp.version
        }
    );
    for (k, v) in &resp.headers {
        if is_hop_by_hop(k) {
            continue;
        }
        h.push_str(&format!("{k}: {v}\r\n"));
    }
    if chunked_out && !no_body {
        h.push_str("Transfer-Encoding: chunked\r\n");
    } else if let Some(n) = length_out {
        h.push_str(&format!("Content-Length: {n}\r\n"));
    }
    h.push_str("Connection: close\r\n\r\n");
    if out.write_all(h.as_bytes()).is_err() {
        return Ok(status);
    }
    if no_body {
        return Ok(status);
    }
    // From here the client has the head: a failure can only cut the body short, which is
    // what Traefik does too (Go's ReverseProxy aborts the connection mid-body).
    let _ = if chunked_out {
        relay_chunked(&mut up_r, out)
    } else if let Some(n) = length_out {
        copy_exact(&mut up_r, out, n)
    } else {
        io::copy(&mut up_r, out).map(|_| ())
    };
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_rules_v2_and_v3() {
        assert_eq!(rule_hosts("Host(`A.example.com`)"), vec!["a.example.com"]);
        // What custom-html's label becomes with EXTRA_DOMAINS=', `www.x.org`' (v2 syntax).
        assert_eq!(
            rule_hosts("Host(`x.org`, `www.x.org`)"),
            vec!["x.org", "www.x.org"]
        );
        assert_eq!(
            rule_hosts("Host(`a.org`) || Host(\"b.org\") && PathPrefix(`/p`)"),
            vec!["a.org", "b.org"]
        );
        assert!(rule_hosts("HostRegexp(`.*`)").is_empty());
        assert!(rule_hosts("HostSNI(`*`)").is_empty());
        assert!(rule_hosts("!Host(`a.org`)").is_empty());
        assert_eq!(rule_hosts("Host(`a.org.`)"), vec!["a.org"]);
    }

    /// A swarm whose services record their deploy labels: routers come from the labels, only
    /// with `traefik.enable=true`, only for live processes.
    #[test]
    fn routes_from_recorded_labels() {
        let dir = std::env::temp_dir().join(format!("standin-traefik-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let me = std::process::id();
        let state = serde_json::json!({"stacks": {
            "a_org": {"domain": "a.org", "services": [
                {"name": "web", "pid": me, "port": 1001, "labels": {
                    "traefik.enable": "true",
                    "traefik.http.routers.a_org.rule": "Host(`a.org`, `www.a.org`)",
                    "traefik.http.services.a_org.loadbalancer.server.port": "80"}},
                {"name": "db", "pid": me, "port": 1002, "labels": {}},
                {"name": "off", "pid": me, "port": 1003, "labels": {
                    "traefik.http.routers.off.rule": "Host(`off.a.org`)"}}]},
            "b_org": {"domain": "b.org", "services": [
                {"name": "app", "pid": me, "port": 1004},
                {"name": "worker", "pid": me, "port": 1005}]},
            "dead_org": {"domain": "dead.org", "services": [
                {"name": "app", "pid": 0, "port": 1006}]}
        }});
        std::fs::write(dir.join("state.json"), state.to_string()).unwrap();
        let routes = load_routes(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let got: Vec<(&str, u16)> = routes.iter().map(|r| (r.host.as_str(), r.port)).collect();
        assert_eq!(
            got,
            vec![("a.org", 1001), ("www.a.org", 1001), ("b.org", 1004)]
        );
        assert_eq!(routes[0].router, "a_org");
    }

    #[test]
    fn hosts_are_canonized() {
        assert_eq!(canonical_host("App.Example.COM:8080"), "app.example.com");
        assert_eq!(canonical_host("app.example.com."), "app.example.com");
        assert_eq!(canonical_host("[::1]:80"), "::1");
        assert_eq!(canonical_host("127.0.0.1"), "127.0.0.1");
    }

    #[test]
    fn dates_are_imf_fixdate() {
        assert_eq!(
            http_date(UNIX_EPOCH + Duration::from_secs(784_111_777)),
            "Sun, 06 Nov 1994 08:49:37 GMT"
        );
        assert_eq!(
            http_date(UNIX_EPOCH + Duration::from_secs(1_709_210_096)),
            "Thu, 29 Feb 2024 12:34:56 GMT"
        );
    }

    #[test]
    fn absolute_form_wins_over_host_header() {
        let head = Head {
            method: "GET".into(),
            target: "http://App.example.org:80/a/b?q=1".into(),
            version: "HTTP/1.1".into(),
            headers: vec![("Host".into(), "other.org".into())],
        };
        let (host, target) = split_target(&head).unwrap();
        assert_eq!(host.as_deref(), Some("App.example.org:80"));
        assert_eq!(target, "/a/b?q=1");
        let head = Head {
            target: "http://a.org?x=1".into(),
            ..head
        };
        assert_eq!(split_target(&head).unwrap().1, "/?x=1");
    }
}
