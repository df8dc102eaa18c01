//! `standin-traefik`: the stand-in for the host's Traefik as a process, routing
//! `http://<app domain>` to the stand-in swarm's services (reverse and forward proxy).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use standins::traefik::{default_swarm_dir, Options, Traefik};

const HELP: &str = "\
standin-traefik: a local stand-in for the host's Traefik, routing by host to the stand-in swarm

USAGE:
  standin-traefik --port N [--swarm-dir DIR] [--refresh-ms MS] [--response-timeout-secs S]

OPTIONS:
  -h, --help                   Print this help
  --port N                     Port on 127.0.0.1 (0 = any free port; the URL is logged)
  --swarm-dir DIR              The stand-in swarm (default $STANDIN_SWARM_DIR, else
                               ~/.standin-swarm, as the stand-in abra)
  --refresh-ms MS              How stale the routing table may be (default 100; real Traefik
                               polls the swarm every 15000)
  --response-timeout-secs S    Wait for a backend's answer before 504 (default 60)

Requests are routed by their Host header, or by the host of an absolute-form target, so the
proxy works both as the host's front door and as an HTTP proxy for clients
(requests: proxies={\"http\": URL}; chromium --proxy-server=URL). No TLS: CONNECT answers 501.
Chromium never proxies localhost or *.localhost unless told: add
--proxy-bypass-list='<-loopback>' when app domains end in .localhost. A CONNECT to port 80
tunnels one plain-HTTP request (ureq tunnels every proxied request).
No router for the host: 404 `404 page not found`; backend down: 502; backend too slow: 504.
GET http://127.0.0.1:PORT/_standin/routes (stand-in only) shows the routing table.

EXAMPLES:
  standin-traefik --port 8080
  STANDIN_SWARM_DIR=/tmp/swarm standin-traefik --port 0
  curl -x http://127.0.0.1:8080 http://custom-html-1.ci.localhost/
  chromium --headless --proxy-server=http://127.0.0.1:8080 '--proxy-bypass-list=<-loopback>' \
    --dump-dom http://custom-html-1.ci.localhost/
";

fn main() -> Result<()> {
    let mut args = pico_args::Arguments::from_env();
    if args.contains(["-h", "--help"]) {
        print!("{HELP}");
        return Ok(());
    }
    let port: u16 = args
        .value_from_str("--port")
        .context("--port N is required (see --help)")?;
    let swarm_dir: Option<PathBuf> = args.opt_value_from_str("--swarm-dir")?;
    let refresh_ms: Option<u64> = args.opt_value_from_str("--refresh-ms")?;
    let timeout_s: Option<u64> = args.opt_value_from_str("--response-timeout-secs")?;
    let rest = args.finish();
    if !rest.is_empty() {
        bail!("unexpected arguments: {rest:?} (see --help)");
    }
    let swarm_dir = match swarm_dir {
        Some(d) => d,
        None => default_swarm_dir()?,
    };
    let mut opts = Options::default();
    if let Some(ms) = refresh_ms {
        opts.refresh = Duration::from_millis(ms);
    }
    if let Some(s) = timeout_s {
        opts.response_timeout = Duration::from_secs(s);
    }
    let traefik = Traefik::start_with(port, &swarm_dir, opts)
        .with_context(|| format!("starting the stand-in Traefik on 127.0.0.1:{port}"))?;
    eprintln!(
        "INFO standin-traefik: listening url={} swarm_dir={}",
        traefik.url(),
        swarm_dir.display()
    );
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
