//! Webhook delivery → build created: 1,000 `!testme` comments delivered by the stand-in
//! Gitea's webhooks to the real bridge (release build), one after another. Per comment:
//!   total = the bridge receiving `POST /hook` → the bridge sending `POST …/builds` to Drone;
//!   own   = total minus the time spent waiting on Gitea and Drone in between (reading the
//!           PR, the membership check, the reaction, and whatever follow work overlapped).
//! Times come from small timing proxies in front of the bridge, Gitea and Drone (one clock,
//! microseconds). Goal (issue 3): p99 own ≤ 20 ms.
//! Run with `cargo bench -p cc-ci-bridge --bench webhook` (`BENCH_COMMENTS=N` for fewer).

#[path = "../tests/world/mod.rs"]
mod world;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use world::{Opts, World, QUICK};

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

/// One proxied connection: when it was accepted, when the upstream's answer was passed on
/// in full, and its request line.
#[derive(Clone, Debug)]
struct Span {
    start: u64,
    end: u64,
    head: String,
}

/// A TCP proxy that times every connection (the stand-ins and the bridge's clients use one
/// request per connection).
struct Proxy {
    addr: SocketAddr,
    spans: Arc<Mutex<Vec<Span>>>,
}

impl Proxy {
    fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let spans = Arc::new(Mutex::new(Vec::new()));
        let log = spans.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                // Stamped at accept, before a thread is spawned: a busy machine's scheduling
                // delay must not be billed to the bridge.
                let start = now_us();
                let log = log.clone();
                std::thread::spawn(move || relay(client, start, upstream, &log));
            }
        });
        Proxy { addr, spans }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Spans from index `from` on (cheap to poll: the log only grows).
    fn spans_from(&self, from: usize) -> Vec<Span> {
        let all = self.spans.lock().unwrap();
        all.get(from..).unwrap_or_default().to_vec()
    }

    fn len(&self) -> usize {
        self.spans.lock().unwrap().len()
    }
}

fn relay(mut client: TcpStream, start: u64, upstream: SocketAddr, log: &Mutex<Vec<Span>>) {
    let _ = client.set_nodelay(true);
    let Ok(mut up) = TcpStream::connect(upstream) else {
        return;
    };
    let _ = up.set_nodelay(true);
    let mut buf = vec![0u8; 64 * 1024];
    let n = client.read(&mut buf).unwrap_or(0);
    let head = String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    if up.write_all(&buf[..n]).is_err() {
        return;
    }
    let (mut c2, mut u2) = (client.try_clone().unwrap(), up.try_clone().unwrap());
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut c2, &mut u2);
        let _ = u2.shutdown(Shutdown::Write);
    });
    let _ = std::io::copy(&mut up, &mut client);
    let end = now_us();
    let _ = client.shutdown(Shutdown::Both);
    log.lock().unwrap().push(Span { start, end, head });
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

fn main() {
    let n: usize = std::env::var("BENCH_COMMENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let mut w = World::with(Opts {
        name: "bench-webhook",
        yaml: QUICK,
        webhook_secrets: &["bench-hook-secret"],
        runner_capacity: 8,
        // Only the webhook path: polls and sweeps would race it for the same comments.
        config: serde_json::json!({"poll_interval_secs": 3600, "sweep_interval_secs": 3600}),
        ..Default::default()
    });
    let gitea = Proxy::start(w.gitea.server().addr());
    let drone = Proxy::start(w.drone.addr());
    let hook = Proxy::start(w.listen.parse().unwrap());
    w.set_config("gitea_url", gitea.url().into());
    w.set_config("drone_url", drone.url().into());
    w.add_hook("custom-html", &format!("{}/hook", hook.url()));
    let prs: Vec<i64> = (0..50).map(|_| w.open_pr()).collect();
    w.start();
    // Past the start-up sweep.
    std::thread::sleep(Duration::from_millis(500));

    let mut totals = Vec::new();
    let mut owns = Vec::new();
    let started = Instant::now();
    for i in 0..n {
        let (g0, d0, h0) = (gitea.len(), drone.len(), hook.len());
        let posted = now_us();
        let id = w.say(prs[i % prs.len()], "alice", "!testme");
        let want = format!("COMMENT={id}");
        let end = Instant::now() + Duration::from_secs(10);
        let created = loop {
            if let Some(s) = drone
                .spans_from(d0)
                .into_iter()
                .find(|s| s.head.starts_with("POST ") && s.head.contains(&want))
            {
                break s.start;
            }
            assert!(
                Instant::now() < end,
                "no build for comment {id} within 10 s"
            );
            std::thread::sleep(Duration::from_micros(500));
        };
        let received = hook
            .spans_from(h0)
            .iter()
            .filter(|s| s.start >= posted)
            .map(|s| s.start)
            .min()
            .expect("the webhook went through the proxy");
        // Spans that began before the comment was posted may still overlap its window.
        let waited: u64 = gitea
            .spans_from(g0.saturating_sub(50))
            .into_iter()
            .chain(drone.spans_from(d0.saturating_sub(50)))
            .filter(|s| s.start >= received && s.start < created)
            .map(|s| s.end.min(created) - s.start)
            .sum();
        let total = created - received;
        totals.push(total);
        owns.push(total.saturating_sub(waited));
        // The next comment comes a little later, as comments do.
        std::thread::sleep(Duration::from_millis(10));
    }
    let elapsed = started.elapsed();
    totals.sort_unstable();
    owns.sort_unstable();
    let rss = std::fs::read_to_string(format!("/proc/{}/status", w.pid())).unwrap_or_default();
    let rss = rss
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .unwrap_or("VmRSS: ?")
        .to_owned();
    println!(
        "webhook → build: {n} comments in {:.1} s (release bridge, stand-ins behind timing proxies)",
        elapsed.as_secs_f64()
    );
    println!(
        "webhook → build: total p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
        pct(&totals, 0.5),
        pct(&totals, 0.99),
        pct(&totals, 1.0)
    );
    println!(
        "webhook → build: own   p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms  (goal p99 <= 20 ms)",
        pct(&owns, 0.5),
        pct(&owns, 0.99),
        pct(&owns, 1.0)
    );
    println!("webhook → build: bridge {rss}");
    let builds = w.builds().len();
    assert_eq!(builds, n, "one build per comment");
}
