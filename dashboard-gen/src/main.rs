//! `cc-ci-dashboard-gen`: parse arguments, load the config, generate and publish the site once.

use std::path::PathBuf;
use std::process::ExitCode;

const HELP: &str = r#"cc-ci-dashboard-gen: publishes cc-ci's static dashboard (every enrolled recipe, its
history, each run, badges, summary.json, Atom feeds) from the Drone API and the run summaries
stage-runner writes. Run it from a timer; each run fetches only what changed.

USAGE:
    cc-ci-dashboard-gen --config FILE [--check-config]

OPTIONS:
    -c, --config FILE   JSON configuration (below). Required.
        --check-config  Validate the configuration (and read the token file), then exit.
    -h, --help          Show this help.

CONFIGURATION (JSON; the Drone token only in a file):
    {
      "drone_url": "https://drone.ci.coopcloud.tech",
      "drone_token_file": "/run/credentials/cc-ci-dashboard-gen/drone-token",
      "drone_repo": "coop-cloud/cc-ci",             (the repo whose pipeline runs the tests)
      "gitea_url": "https://git.coopcloud.tech",     (PR and repository links)
      "recipes": {"custom-html": "coop-cloud/custom-html"},
      "results_dir": "/var/lib/cc-ci/results",       (<build>/summary.json from stage-runner)
      "out_dir": "/var/lib/cc-ci-dashboard/site",    (serve <out_dir>/current)
      "cache_dir": "/var/cache/cc-ci-dashboard",     (finished builds kept between runs)
      "site_url": "https://ci.coopcloud.tech",       (public root: feeds, badge snippets)
      "history": 50,                                 (optional: runs per recipe page)
      "request_timeout_secs": 10,                    (optional: every Drone request)
      "max_pages": 120                               (optional: pages of 100 builds per run)
    }

FILES WRITTEN (under <out_dir>/site-<n>/, published by swapping the symlink <out_dir>/current):
    index.html, index-age.html, <status>.html, <status>-age.html  overview, filtered and sorted
    recipes/<recipe>.html, recipes/<recipe>.atom   history, badge snippet, per-recipe feed
    runs/<build>.html, runs/<build>/artifacts/…    one run, its screenshots
    badges/<recipe>.svg, summary.json, feed.atom, style.css

EXIT STATUS:
    0  site published (or config valid with --check-config)
    1  generation failed (Drone down or answering garbage, disk error); the old site stays
    2  bad arguments or configuration

EXAMPLES:
    cc-ci-dashboard-gen --config /etc/cc-ci/dashboard-gen.json --check-config
    cc-ci-dashboard-gen --config /etc/cc-ci/dashboard-gen.json
"#;

fn main() -> ExitCode {
    let mut args = pico_args::Arguments::from_env();
    if args.contains(["-h", "--help"]) {
        print!("{HELP}");
        return ExitCode::SUCCESS;
    }
    let cfg = match parse(args) {
        Ok(Some(cfg)) => cfg,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ERROR dashboard: {e:#}");
            return ExitCode::from(2);
        }
    };
    match dashboard::generate(&cfg) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ERROR dashboard: {e:#} (the published site was left as it was)");
            ExitCode::from(1)
        }
    }
}

/// The config to run with; `None` when `--check-config` was all that was asked.
fn parse(mut args: pico_args::Arguments) -> anyhow::Result<Option<dashboard::config::Config>> {
    let path: PathBuf = args.value_from_str(["-c", "--config"])?;
    let check = args.contains("--check-config");
    let rest = args.finish();
    if !rest.is_empty() {
        anyhow::bail!("unexpected arguments: {rest:?} (see --help)");
    }
    let cfg = dashboard::config::Config::load(&path)?;
    if check {
        println!("config {} is valid", path.display());
        return Ok(None);
    }
    Ok(Some(cfg))
}
