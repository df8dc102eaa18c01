//! Stand-in `abra` (Co-op Cloud's CLI) doing its work on the real Docker engine.
//!
//! Why it is kept (docs/fidelity.md): the Go module proxy refuses `coopcloud.tech/abra`
//! (403 Forbidden for every version), so no real abra can be installed here; its behaviour is
//! taken from the sources docs/fidelity.md lists, not from running abra.
//!
//! Real command syntax (cobra/pflag parsing, see [`cli`]) for the commands cc-ci uses; state
//! laid out as abra lays it out under `$ABRA_DIR` (default `~/.abra`): `servers/<server>/
//! <domain>.env`, `recipes/<recipe>` git checkouts with release tags. Everything else is the
//! engine's: secrets are docker secrets, a deploy is `docker stack deploy` followed by abra's
//! convergence wait, `app run` is `docker exec` ([`docker`], [`app`]). Backups are tar
//! streams of the backupbot-labelled paths, kept per app under `$ABRA_DIR/backups/<stack>/`.
//!
//! One deliberate difference: every service is deployed with `endpoint_mode: dnsrr`, because
//! this machine's kernel has no IPVS, so swarm's virtual IPs do not connect
//! (../shared/facts/docker.md). Recipes deploy unchanged; the cc-ci host needs no such thing.
//!
//! Stand-in-only environment variables (no real abra reads them):
//! - `STANDIN_ABRA_CATALOGUE`: dir of recipe git repos `abra recipe fetch` clones from
//!   (build one with [`catalogue::build`]).
//! - `STANDIN_ABRA_FAULT`: comma-separated fault knobs, also read from the file named by
//!   `STANDIN_ABRA_FAULT_FILE` (one per line, so a test can flip them between stages):
//!   `backup-fails`, `restore-fails` (backupbot's restic failing, which has no engine-side
//!   cause), `chaos-stale-checkout` (a chaos deploy runs, and labels, the commit before the
//!   checkout's HEAD: an abra that redeployed an old checkout), `hang:<command>` where
//!   command is one of `new`, `deploy`, `undeploy`, `ps`, `run`, `restore`, `backup`,
//!   `volume`, `secret-generate`, `secret-insert`, `secret-remove`, `recipe-fetch`,
//!   `server-add`. A hang sleeps (up to an hour) before
//!   touching anything, so killing it leaves no trace. Failed deploys need no knob: a recipe
//!   naming a missing image, crashing or failing its healthcheck fails for real.
//!
//! Errors are printed as abra's logger prints a fatal error, `FATA <message>` on stderr, exit 1;
//! flag errors as cobra prints them (`Error: unknown flag: --x`), exit 1.

pub mod app;
pub mod catalogue;
pub mod cli;
pub mod docker;
pub mod lint;
pub mod recipe;

use std::path::PathBuf;

use anyhow::{anyhow, Result};

pub const HELP: &str = "\
abra (stand-in): Co-op Cloud's CLI, doing its work on the Docker engine at DOCKER_HOST

USAGE:
  abra app new <recipe> [version] --server S --domain D [--secrets|-S] [--chaos|-C]
  abra app deploy <domain> [version] [-C|--chaos] [-f|--force] [-c|--no-converge-checks]
                  [-D|--no-domain-checks] [-i|--ignore-env-version]
  abra app undeploy <domain> [-p|--prune]
  abra app ps <domain> [-m|--machine]
  abra app run <domain> <service> [-t|--no-tty] [-u|--user U] [--] <cmd> [args...]
  abra app volume remove <domain> [-f|--force]
  abra app secret generate <domain> (<name> <version> | -a|--all) [-m|--machine]
  abra app secret insert <domain> <name> <version> <value> [-f|--file] [-t|--trim]
  abra app secret remove <domain> (<name> | -a|--all)
  abra app backup create <domain>
  abra app backup download <domain> -s|--snapshot ID
  abra app backup remove <domain> -s|--snapshot ID
  abra app restore <domain> [-s|--snapshot ID]
  abra recipe fetch <recipe>
  abra recipe lint <recipe>
  abra server add (--local | <name>)

OPTIONS (every command):
  -d, --debug  -n, --no-input  -o, --offline  -h, --help

ENVIRONMENT:
  ABRA_DIR                 abra's state dir (default ~/.abra)
  DOCKER_HOST              the engine (docker's own variable)
  STANDIN_ABRA_CATALOGUE   stand-in only: dir of recipe git repos for `recipe fetch`
  STANDIN_ABRA_FAULT       stand-in only: backup-fails, restore-fails, chaos-stale-checkout,
                           hang:<command>
  STANDIN_ABRA_FAULT_FILE  stand-in only: a file of the same knobs, one per line
                           <command> = new deploy undeploy ps run restore backup
                           volume secret-generate secret-insert secret-remove recipe-fetch
                           server-add

STAND-IN NOTES:
  `abra __standin-catalogue <dest> [<src>]` builds the recipe catalogue (git repos with one
  tag per release) from the stand-in's recipe sources into <dest>.
  Services are deployed with endpoint_mode dnsrr (this kernel has no IPVS for swarm VIPs).
  Backups are kept under $ABRA_DIR/backups/<stack>/<snapshot>/ (backupbot keeps restic's).

EXAMPLES:
  abra server add --local
  abra app new custom-html --server default --domain html.example.com -S
  abra app deploy html.example.com
  abra app run html.example.com app -- sh -c 'echo hi > /usr/share/nginx/html/hi.txt'
";

/// A flag or argument error, printed as cobra prints it.
#[derive(Debug)]
pub struct UsageError {
    pub command: String,
    pub message: String,
}

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.message)
    }
}

impl std::error::Error for UsageError {}

/// What every command needs.
pub struct Ctx {
    pub abra_dir: PathBuf,
}

impl Ctx {
    pub fn from_env() -> Result<Ctx> {
        let abra_dir = match std::env::var_os("ABRA_DIR") {
            Some(d) if !d.is_empty() => PathBuf::from(d),
            _ => PathBuf::from(
                std::env::var_os("HOME")
                    .ok_or_else(|| anyhow!("neither ABRA_DIR nor HOME is set"))?,
            )
            .join(".abra"),
        };
        Ok(Ctx { abra_dir })
    }

    /// Active fault knobs: `$STANDIN_ABRA_FAULT` (comma-separated) plus the lines of
    /// `$STANDIN_ABRA_FAULT_FILE`.
    pub fn faults(&self) -> Vec<String> {
        let mut out: Vec<String> = std::env::var("STANDIN_ABRA_FAULT")
            .unwrap_or_default()
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        if let Some(file) = std::env::var_os("STANDIN_ABRA_FAULT_FILE") {
            if let Ok(text) = std::fs::read_to_string(file) {
                out.extend(
                    text.lines()
                        .map(|l| l.trim().to_owned())
                        .filter(|l| !l.is_empty() && !l.starts_with('#')),
                );
            }
        }
        out
    }

    pub fn fault(&self, name: &str) -> bool {
        self.faults().iter().any(|f| f == name)
    }
}

/// Runs one invocation (`args` without the program name); returns the exit code. Prints
/// errors itself.
pub fn main(args: &[String]) -> i32 {
    if args.first().map(String::as_str) == Some(catalogue::MODE) {
        let dest = args.get(1).map(PathBuf::from);
        let src = args
            .get(2)
            .map(PathBuf::from)
            .unwrap_or_else(catalogue::source_dir);
        let Some(dest) = dest.filter(|_| args.len() <= 3) else {
            eprintln!(
                "FATA usage: abra {} <dest> [<recipes source dir>]",
                catalogue::MODE
            );
            return 1;
        };
        return match catalogue::build(&src, &dest) {
            Ok(names) => {
                println!("{}", names.join("\n"));
                0
            }
            Err(e) => {
                eprintln!("FATA building the catalogue: {e:#}");
                1
            }
        };
    }
    match app::dispatch(args) {
        Ok(code) => code,
        Err(e) => {
            if let Some(u) = e.downcast_ref::<UsageError>() {
                eprintln!("Error: {}", u.message);
                eprintln!("Run '{} --help' for usage.", u.command);
            } else {
                eprintln!("FATA {e:#}");
            }
            1
        }
    }
}
