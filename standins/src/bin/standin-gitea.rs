//! `standin-gitea`: the stand-in Gitea as a process, for Python tests and the local run.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use standins::gitea::{Gitea, Options};

const HELP: &str = "\
standin-gitea: a local stand-in for the Gitea API v1 (1.24), for tests

USAGE:
  standin-gitea --port N [--root-url URL] [--tz-offset +HH:MM]

OPTIONS:
  -h, --help           Print this help
  --port N             Port on 127.0.0.1 (0 = any free port; the URL is logged)
  --root-url URL       ROOT_URL for web URLs in answers (default http://127.0.0.1:PORT/)
  --tz-offset OFFSET   Offset the server renders times in, e.g. +01:00 (default Z = UTC)

Control routes are under /_standin/ (users, tokens, orgs, repos, pulls, comments, hooks,
clock, deliveries, requests, faults); see standins/src/gitea/control.rs.

EXAMPLES:
  standin-gitea --port 3000
  standin-gitea --port 0 --root-url https://git.example.org/ --tz-offset +01:00
";

fn parse_offset(s: &str) -> Result<i32> {
    if s == "Z" || s == "z" {
        return Ok(0);
    }
    let (sign, rest) = match s.as_bytes().first() {
        Some(b'+') => (1, &s[1..]),
        Some(b'-') => (-1, &s[1..]),
        _ => bail!("--tz-offset must be Z or ±HH:MM, got {s:?}"),
    };
    let (h, m) = rest
        .split_once(':')
        .with_context(|| format!("--tz-offset must be ±HH:MM, got {s:?}"))?;
    let h: i32 = h.parse().with_context(|| format!("bad hours in {s:?}"))?;
    let m: i32 = m.parse().with_context(|| format!("bad minutes in {s:?}"))?;
    Ok(sign * (h * 3600 + m * 60))
}

fn main() -> Result<()> {
    let mut args = pico_args::Arguments::from_env();
    if args.contains(["-h", "--help"]) {
        print!("{HELP}");
        return Ok(());
    }
    let port: u16 = args
        .value_from_str("--port")
        .context("--port N is required (see --help)")?;
    let root_url: Option<String> = args.opt_value_from_str("--root-url")?;
    let tz: Option<String> = args.opt_value_from_str("--tz-offset")?;
    let rest = args.finish();
    if !rest.is_empty() {
        bail!("unexpected arguments: {rest:?} (see --help)");
    }
    let tz_offset_secs = match tz {
        Some(t) => parse_offset(&t)?,
        None => 0,
    };
    let gitea = Gitea::start_with(Options {
        port,
        root_url,
        tz_offset_secs,
        ..Options::default()
    })
    .with_context(|| format!("starting the stand-in Gitea on 127.0.0.1:{port}"))?;
    eprintln!(
        "INFO standin-gitea: listening url={} api={} root_url={}",
        gitea.url(),
        gitea.api_url(),
        gitea.root_url()
    );
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
