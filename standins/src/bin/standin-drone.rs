//! `standin-drone`: the stand-in Drone 2.x server with its exec runner, as a process, for the
//! local run and for tests that drive cc-ci binaries against it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use standins::drone::{ConfigSource, Drone, DroneOpts, NewRepo, Perm};

const HELP: &str = "\
standin-drone: a stand-in Drone 2.x server with an in-process exec runner (127.0.0.1 only)

USAGE:
    standin-drone [OPTIONS]

OPTIONS:
    -h, --help                  Print this help
    --port N                    Port to listen on (default 0 = any; the address is printed)
    --runner-capacity N         Concurrent stages, like DRONE_RUNNER_CAPACITY (default 2)
    --runner-root DIR           Workspace root, like DRONE_RUNNER_ROOT (default: temp dir)
    --runner-env KEY=VALUE      Extra step variable, like DRONE_RUNNER_ENVIRON (repeatable)
    --runner-name NAME          Becomes stage.machine (default standin-runner)
    --server-host HOST          DRONE_SERVER_HOST for DRONE_BUILD_LINK (default 127.0.0.1:PORT)
    --scm-url URL               Forge web root for repo/commit links (default https://git.example.org)
    --admin LOGIN:TOKEN_FILE    Create an admin user whose token is read from TOKEN_FILE
    --user LOGIN:TOKEN_FILE     Create a user whose token is read from TOKEN_FILE (repeatable)
    --repo OWNER/NAME=GIT_DIR   Create a repo reading .drone.yml from a local git repo; the
                                owner must be a user given before; collaborators are added
                                with /_standin/drone/repos/{o}/{n}/perms

Prints `listening on http://127.0.0.1:PORT` on stdout once ready, then serves until killed.
Control routes live under /_standin/ (see the module docs of standins::drone).

EXAMPLES:
    standin-drone --port 8081 --runner-capacity 1 --runner-root /tmp/runner \\
        --admin ci-bot:/run/secrets/drone-token --repo coop-cloud/ci=/srv/git/ci.git
";

fn parse_kv(s: &str, sep: char, what: &str) -> Result<(String, String)> {
    match s.split_once(sep) {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => bail!("{what}: expected A{sep}B, got {s:?}"),
    }
}

fn read_token(path: &str) -> Result<String> {
    let raw =
        std::fs::read_to_string(path).with_context(|| format!("reading token file {path}"))?;
    let t = raw.trim_end_matches(['\n', '\r']).to_owned();
    if t.is_empty() {
        bail!("token file {path} is empty");
    }
    Ok(t)
}

fn run() -> Result<()> {
    let mut args = pico_args::Arguments::from_env();
    if args.contains(["-h", "--help"]) {
        print!("{HELP}");
        return Ok(());
    }
    let mut opts = DroneOpts {
        port: args.opt_value_from_str("--port")?.unwrap_or(0),
        ..DroneOpts::default()
    };
    if let Some(c) = args.opt_value_from_str("--runner-capacity")? {
        opts.runner_capacity = c;
    }
    opts.runner_root = args.opt_value_from_str::<_, PathBuf>("--runner-root")?;
    let mut environ = BTreeMap::new();
    for kv in args.values_from_str::<_, String>("--runner-env")? {
        let (k, v) = parse_kv(&kv, '=', "--runner-env")?;
        environ.insert(k, v);
    }
    opts.runner_environ = environ;
    if let Some(n) = args.opt_value_from_str("--runner-name")? {
        opts.runner_name = n;
    }
    opts.server_host = args.opt_value_from_str("--server-host")?;
    if let Some(u) = args.opt_value_from_str("--scm-url")? {
        opts.scm_url = u;
    }
    let admin: Option<String> = args.opt_value_from_str("--admin")?;
    let users: Vec<String> = args.values_from_str("--user")?;
    let repos: Vec<String> = args.values_from_str("--repo")?;
    let rest = args.finish();
    if !rest.is_empty() {
        bail!("unexpected arguments: {rest:?} (see --help)");
    }
    let drone = Drone::start(opts)?;
    if let Some(a) = admin {
        let (login, file) = parse_kv(&a, ':', "--admin")?;
        drone.create_user(&login, true, Some(&read_token(&file)?))?;
    }
    for u in users {
        let (login, file) = parse_kv(&u, ':', "--user")?;
        drone.create_user(&login, false, Some(&read_token(&file)?))?;
    }
    for r in repos {
        let (slug, dir) = parse_kv(&r, '=', "--repo")?;
        let (owner, name) = parse_kv(&slug, '/', "--repo")?;
        drone.create_repo(NewRepo::new(
            &owner,
            &name,
            ConfigSource::Git { path: dir.into() },
        ))?;
        // The owner already administers the repo; keep the call explicit for readers.
        drone.set_permission(
            &owner,
            &name,
            &owner,
            Perm {
                read: true,
                write: true,
                admin: true,
            },
        )?;
    }
    println!("listening on {}", drone.url());
    eprintln!("INFO standin-drone: listening url={}", drone.url());
    loop {
        std::thread::park();
    }
}

fn main() {
    if let Err(e) = run() {
        eprintln!("ERROR standin-drone: {e:#}");
        std::process::exit(1);
    }
}
