//! Drives the stand-in Traefik over real HTTP in front of apps deployed with the real stand-in
//! `abra` binary: routing by Host header and by absolute-form target (forward proxy), Traefik's
//! own 404/502/504 answers, routers following deploys and undeploys, and bodies passing intact.
//! Quirk tests cite the traefik/traefik file they mirror.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use standins::abra::{catalogue, swarm};
use standins::traefik::{Options, Traefik};

const ABRA: &str = env!("CARGO_BIN_EXE_abra");
const TRAEFIK: &str = env!("CARGO_BIN_EXE_standin-traefik");
const CALL_LIMIT: Duration = Duration::from_secs(60);

static SEQ: AtomicU32 = AtomicU32::new(0);

/// An `$ABRA_DIR`, a swarm and a catalogue in a temp dir. Dropping it stops every service
/// process it started, even when the test failed, and removes the dirs.
struct World {
    root: PathBuf,
    abra_dir: PathBuf,
    swarm_dir: PathBuf,
    catalogue: PathBuf,
}

impl Drop for World {
    fn drop(&mut self) {
        swarm::stop_all(&self.swarm_dir);
        // KEEP=1 leaves the dirs for a post-mortem (the services are stopped either way).
        if std::env::var_os("KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

impl World {
    fn new() -> World {
        let root = std::env::temp_dir().join(format!(
            "standin-traefik-test-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let w = World {
            abra_dir: root.join("abra"),
            swarm_dir: root.join("swarm"),
            catalogue: root.join("catalogue"),
            root,
        };
        catalogue::build(&catalogue::source_dir(), &w.catalogue).unwrap();
        w.abra(&["server", "add", "--local"]);
        w
    }

    /// Runs abra with a bounded wait; panics unless it succeeds.
    fn abra(&self, args: &[&str]) -> String {
        let mut child = Command::new(ABRA)
            .args(args)
            .env("ABRA_DIR", &self.abra_dir)
            .env("STANDIN_SWARM_DIR", &self.swarm_dir)
            .env("STANDIN_ABRA_CATALOGUE", &self.catalogue)
            .env_remove("STANDIN_ABRA_FAULT")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + CALL_LIMIT;
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("abra {args:?} did not finish within {CALL_LIMIT:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "abra {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `app new -S` + `deploy` (which waits for the service to converge).
    fn install(&self, domain: &str) {
        self.abra(&[
            "app",
            "new",
            "custom-html",
            "--server",
            "default",
            "--domain",
            domain,
            "-S",
        ]);
        self.abra(&["app", "deploy", domain]);
    }

    /// The app's content volume (nginx's html root).
    fn content(&self, domain: &str) -> PathBuf {
        self.swarm_dir
            .join("volumes")
            .join(format!("{}_content", domain.replace('.', "_")))
    }

    fn traefik(&self) -> Traefik {
        Traefik::start(0, &self.swarm_dir).unwrap()
    }
}

/// An answer as the client saw it (body de-chunked).
#[derive(Debug)]
struct Http {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Http {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let nl = raw.windows(2).position(|w| w == b"\r\n").unwrap();
        let size = usize::from_str_radix(
            std::str::from_utf8(&raw[..nl])
                .unwrap()
                .split(';')
                .next()
                .unwrap(),
            16,
        )
        .unwrap();
        raw = &raw[nl + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

/// Sends raw request bytes to the proxy and reads the whole answer (the proxy closes).
fn send(t: &Traefik, head: &str, body: &[u8]) -> Http {
    parse(&exchange(t, head, body), true)
}

/// For a HEAD request: the answer's length header describes a body that is not sent.
fn send_head(t: &Traefik, head: &str) -> Http {
    parse(&exchange(t, head, b""), false)
}

fn exchange(t: &Traefik, head: &str, body: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(t.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    raw
}

fn parse(raw: &[u8], with_body: bool) -> Http {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines.next().unwrap().split_whitespace().nth(1).unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if !with_body {
        assert!(body.is_empty(), "a body after a HEAD answer");
    }
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        body = dechunk(&body);
    } else if let Some((_, n)) = headers
        .iter()
        .filter(|_| with_body)
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
    {
        assert_eq!(
            body.len(),
            n.parse::<usize>().unwrap(),
            "body vs Content-Length"
        );
    }
    Http {
        status: status.parse().unwrap(),
        headers,
        body,
    }
}

/// `GET <path>` with a Host header, as a client reaching Traefik through DNS.
fn get(t: &Traefik, host: &str, path: &str) -> Http {
    send(
        t,
        &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: test\r\n\r\n"),
        b"",
    )
}

/// Polls until `f` holds, within `limit`.
fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    f()
}

const D1: &str = "custom-html-1.ci.localhost";
const D2: &str = "custom-html-2.ci.localhost";

#[test]
fn routes_by_host_header_and_as_forward_proxy() {
    let w = World::new();
    w.install(D1);
    let t = w.traefik();

    // Reverse proxy: Host header → the app's nginx, its own headers passed through.
    let r = get(&t, D1, "/");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("Welcome to nginx!"));
    assert_eq!(r.header("Server"), Some("nginx/1.27.2"));
    assert_eq!(r.header("Content-Type"), Some("text/html"));

    // Host matching ignores case and the port (pkg/muxer/http/matcher.go host, on the host
    // canonized by pkg/middlewares/requestdecorator).
    assert_eq!(get(&t, "Custom-HTML-1.CI.localhost:80", "/").status, 200);
    assert_eq!(get(&t, "custom-html-1.ci.localhost.", "/").status, 200);

    // Forward proxy: absolute-form target; its authority wins over a stray Host header (RFC
    // 9112 §3.2.2, as Go's net/http sets req.Host, which Traefik routes on).
    let r = send(
        &t,
        &format!("GET http://{D1}/50x.html HTTP/1.1\r\nHost: elsewhere.invalid\r\nProxy-Connection: keep-alive\r\n\r\n"),
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("An error occurred."));

    // A client that tunnels through the proxy (ureq does CONNECT even for http://).
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .proxy(Some(ureq::Proxy::new(&t.url()).unwrap()))
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into();
    let mut resp = agent.get(&format!("http://{D1}/")).call().unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp
        .body_mut()
        .read_to_string()
        .unwrap()
        .contains("Welcome to nginx!"));
    let resp = agent.get("http://nope.ci.localhost/").call().unwrap();
    assert_eq!(resp.status().as_u16(), 404);

    // No TLS here: a tunnel to 443 is refused, not silently opened.
    let r = send(
        &t,
        &format!("CONNECT {D1}:443 HTTP/1.1\r\nHost: {D1}:443\r\n\r\n"),
        b"",
    );
    assert_eq!(r.status, 501);
}

#[test]
fn unknown_host_is_traefiks_404() {
    let w = World::new();
    w.install(D1);
    let t = w.traefik();
    // pkg/muxer/http/mux.go: no route matches → Go's http.NotFoundHandler, i.e.
    // http.Error(w, "404 page not found", 404): text/plain, nosniff, a trailing newline.
    for r in [
        get(&t, "unknown.ci.localhost", "/"),
        send(
            &t,
            "GET http://unknown.ci.localhost/x HTTP/1.1\r\nHost: unknown.ci.localhost\r\n\r\n",
            b"",
        ),
        // A suffix or a sub-domain of a routed host is another host.
        get(&t, &format!("www.{D1}"), "/"),
        get(&t, "html-1.ci.localhost", "/"),
    ] {
        assert_eq!(r.status, 404);
        assert_eq!(r.body, b"404 page not found\n");
        assert_eq!(r.header("Content-Type"), Some("text/plain; charset=utf-8"));
        assert_eq!(r.header("X-Content-Type-Options"), Some("nosniff"));
        assert!(r.header("Date").is_some_and(|d| d.ends_with(" GMT")));
    }
    // Go's server refuses HTTP/1.1 without a Host (net/http server.go readRequest).
    let r = send(&t, "GET / HTTP/1.1\r\n\r\n", b"");
    assert_eq!(r.status, 400);
}

#[test]
fn two_apps_route_separately_and_undeploy_removes_the_router() {
    let w = World::new();
    w.install(D1);
    w.install(D2);
    std::fs::write(w.content(D1).join("who.txt"), "one\n").unwrap();
    std::fs::write(w.content(D2).join("who.txt"), "two\n").unwrap();
    let t = w.traefik();
    assert_eq!(get(&t, D1, "/who.txt").body, b"one\n");
    assert_eq!(get(&t, D2, "/who.txt").body, b"two\n");
    let r = send(
        &t,
        &format!("GET http://{D2}/who.txt HTTP/1.1\r\nHost: {D2}\r\n\r\n"),
        b"",
    );
    assert_eq!(r.body, b"two\n");
    // The backend's own 404 passes through as nginx's, not Traefik's.
    let r = get(&t, D1, "/missing.txt");
    assert_eq!(r.status, 404);
    assert!(
        r.text().contains("<center>nginx/1.27.2</center>"),
        "{}",
        r.text()
    );

    // Stand-in introspection on the proxy's own address.
    let routes = get(&t, &t.addr().to_string(), "/_standin/routes");
    assert_eq!(routes.status, 200);
    let routes: serde_json::Value = serde_json::from_slice(&routes.body).unwrap();
    let hosts: Vec<&str> = routes
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["host"].as_str().unwrap())
        .collect();
    assert_eq!(hosts.len(), 2);
    assert!(hosts.contains(&D1) && hosts.contains(&D2));

    // The router goes with the stack: Traefik builds routers from running tasks only
    // (pkg/provider/docker/pswarm.go listTasks), so an undeployed app's domain is a 404,
    // while the other app keeps answering. The stand-in sees it within its 100 ms refresh.
    w.abra(&["app", "undeploy", D1]);
    let undeployed = Instant::now();
    assert!(
        wait_until(Duration::from_secs(2), || get(&t, D1, "/").status == 404),
        "router for {D1} still there"
    );
    assert!(undeployed.elapsed() < Duration::from_secs(1));
    assert_eq!(get(&t, D1, "/").body, b"404 page not found\n");
    assert_eq!(get(&t, D2, "/who.txt").body, b"two\n");

    // Deployed again: routed again, with the data the volume kept.
    w.abra(&["app", "deploy", D1]);
    assert!(wait_until(Duration::from_secs(2), || get(
        &t, D1, "/who.txt"
    )
    .body
        == b"one\n"));
}

#[test]
fn dead_service_has_no_router_and_refusing_backend_is_502() {
    let w = World::new();
    w.install(D1);
    let t = w.traefik();
    assert_eq!(get(&t, D1, "/").status, 200);

    // The task died (process gone, stack still recorded): no running task, no router → 404
    // (pkg/provider/docker/pswarm.go listTasks skips tasks not in state running).
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(w.swarm_dir.join("state.json")).unwrap()).unwrap();
    let svc = &state["stacks"]["custom-html-1_ci_localhost"]["services"][0];
    let pid = svc["pid"].as_u64().unwrap() as u32;
    swarm::stop_process(pid, svc["start_time"].as_u64());
    assert!(wait_until(Duration::from_secs(2), || get(&t, D1, "/")
        .status
        == 404));

    // A running task that does not listen (stand-in fault never-converges: the process lives
    // on a port where nothing answers): the router exists, the dial is refused → 502 with
    // http.StatusText as body (pkg/proxy/httputil/proxy.go ErrorHandlerWithContext,
    // ComputeStatusCode: a non-timeout net.Error).
    std::fs::write(w.swarm_dir.join("faults"), "never-converges\n").unwrap();
    w.abra(&[
        "app",
        "new",
        "custom-html",
        "--server",
        "default",
        "--domain",
        D2,
        "-S",
    ]);
    w.abra(&["app", "deploy", D2, "--no-converge-checks"]);
    std::fs::write(w.swarm_dir.join("faults"), "").unwrap();
    // The router appears within the stand-in's refresh (100 ms), as Traefik's within its poll.
    assert!(wait_until(Duration::from_secs(2), || get(&t, D2, "/")
        .status
        != 404));
    let r = get(&t, D2, "/");
    assert_eq!(r.status, 502);
    assert_eq!(r.body, b"Bad Gateway");
    assert_eq!(r.header("Content-Type"), Some("text/plain; charset=utf-8"));
}

#[test]
fn slow_backend_is_504() {
    let w = World::new();
    w.install(D1);
    let t = Traefik::start_with(
        0,
        &w.swarm_dir,
        Options {
            response_timeout: Duration::from_millis(500),
            ..Options::default()
        },
    )
    .unwrap();
    // Make the app hang on /slow through its stand-in control surface (reached through the
    // proxy like any path).
    let rule = br#"{"path": "/slow", "fault": {"kind": "hang"}}"#;
    let r = send(
        &t,
        &format!(
            "POST /_standin/faults HTTP/1.1\r\nHost: {D1}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            rule.len()
        ),
        rule,
    );
    assert_eq!(r.status, 201, "{}", r.text());
    // A timeout net.Error → 504, body http.StatusText (pkg/proxy/httputil/proxy.go
    // ComputeStatusCode).
    let started = Instant::now();
    let r = get(&t, D1, "/slow");
    assert_eq!(r.status, 504);
    assert_eq!(r.body, b"Gateway Timeout");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(get(&t, D1, "/").status, 200);
}

#[test]
fn bodies_pass_intact_with_forwarded_headers() {
    let w = World::new();
    w.install(D1);
    let t = w.traefik();

    // 5 MB of non-text bytes out.
    let big: Vec<u8> = (0..5 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(w.content(D1).join("big.bin"), &big).unwrap();
    let r = get(&t, D1, "/big.bin");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Length"), Some("5242880"));
    assert!(r.body == big, "5 MB body differs");
    let r = send(
        &t,
        &format!("GET http://{D1}/big.bin HTTP/1.1\r\nHost: {D1}\r\n\r\n"),
        b"",
    );
    assert!(r.body == big, "5 MB body differs through the forward proxy");

    // A HEAD answer has the length but no body.
    let r = send_head(&t, &format!("HEAD /big.bin HTTP/1.1\r\nHost: {D1}\r\n\r\n"));
    assert_eq!(r.header("Content-Length"), Some("5242880"));
    assert!(r.body.is_empty());

    // Bodies in: with a length, and chunked (re-framed as the backend needs).
    let text: String = (0..200_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let r = send(
        &t,
        &format!(
            "POST /form?x=1 HTTP/1.1\r\nHost: {D1}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nX-Forwarded-For: 6.6.6.6\r\nX-Real-Ip: 6.6.6.6\r\n\r\n",
            text.len()
        ),
        text.as_bytes(),
    );
    assert_eq!(r.status, 404, "nginx answers the POST for a missing file");
    let mut chunked = Vec::new();
    for part in text.as_bytes().chunks(70_000) {
        chunked.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        chunked.extend_from_slice(part);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    // Expect: 100-continue is answered by the proxy (as Go's server does when the handler
    // reads the body), and the final answer follows.
    let raw = exchange(
        &t,
        &format!("PUT http://{D1}/chunked HTTP/1.1\r\nHost: {D1}\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n"),
        &chunked,
    );
    let rest = raw
        .strip_prefix(b"HTTP/1.1 100 Continue\r\n\r\n".as_slice())
        .expect("interim 100 Continue first");
    assert_eq!(parse(rest, true).status, 404);

    // What the backend received (its stand-in request log).
    let log = get(&t, D1, "/_standin/requests");
    assert_eq!(log.status, 200);
    let log: serde_json::Value = serde_json::from_slice(&log.body).unwrap();
    let find = |method: &str| {
        log.as_array()
            .unwrap()
            .iter()
            .find(|e| e["method"] == method)
            .unwrap_or_else(|| panic!("no {method} in the backend log"))
            .clone()
    };
    let header = |e: &serde_json::Value, name: &str| -> Option<String> {
        e["headers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h[0].as_str().unwrap().eq_ignore_ascii_case(name))
            .map(|h| h[1].as_str().unwrap().to_owned())
    };
    let post = find("POST");
    assert_eq!(post["body"].as_str().unwrap(), text);
    assert_eq!(post["path"], "/form");
    assert_eq!(post["query"][0][0], "x");
    // passHostHeader (default true): the backend sees the client's host.
    assert_eq!(header(&post, "Host").as_deref(), Some(D1));
    // Client-sent X-Forwarded-* from an untrusted address are replaced, then set by Traefik
    // (pkg/middlewares/forwardedheaders/forwarded_header.go ServeHTTP, rewrite).
    assert_eq!(
        header(&post, "X-Forwarded-For").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(header(&post, "X-Real-Ip").as_deref(), Some("127.0.0.1"));
    assert_eq!(header(&post, "X-Forwarded-Host").as_deref(), Some(D1));
    assert_eq!(header(&post, "X-Forwarded-Proto").as_deref(), Some("http"));
    assert_eq!(header(&post, "X-Forwarded-Port").as_deref(), Some("80"));
    assert!(header(&post, "X-Forwarded-Server").is_some());
    let put = find("PUT");
    assert_eq!(put["body"].as_str().unwrap(), text);
    assert_eq!(put["path"], "/chunked");
    assert!(header(&put, "Expect").is_none());
}

/// Kills the binary it holds when dropped (by its pid: only the process this test started).
struct Proc(std::process::Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn binary_serves_and_logs_one_line_per_request() {
    let w = World::new();
    w.install(D1);
    let out = Command::new(TRAEFIK).arg("--help").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("USAGE:"));
    let out = Command::new(TRAEFIK)
        .args(["--port", "0", "--bogus"])
        .output()
        .unwrap();
    assert!(!out.status.success());

    let mut p = Proc(
        Command::new(TRAEFIK)
            .args(["--port", "0"])
            // The default swarm dir is the stand-in abra's.
            .env("STANDIN_SWARM_DIR", &w.swarm_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stderr = p.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let url = first
        .split_whitespace()
        .find_map(|f| f.strip_prefix("url="))
        .unwrap_or_else(|| panic!("no url= in {first:?}"))
        .to_owned();
    assert!(
        first.starts_with("INFO standin-traefik: listening"),
        "{first}"
    );
    let addr = url.strip_prefix("http://").unwrap();

    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /index.html?token=secret HTTP/1.1\r\nHost: {D1}\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    assert_eq!(parse(&raw, true).status, 200);
    let line = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(
        line.rsplit_once(" ms=").unwrap().0,
        format!("INFO standin-traefik: request method=GET host={D1} path=/index.html status=200")
    );
    assert!(
        !line.contains("secret"),
        "query strings stay out of the log"
    );
}
