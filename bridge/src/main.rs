//! `cc-ci-bridge`: parse arguments, load the config, run.

use std::path::PathBuf;
use std::process::ExitCode;

const HELP: &str = r#"cc-ci-bridge: turns `!testme` comments on recipe pull requests into Drone builds
and keeps the PR informed until the run ends.

USAGE:
    cc-ci-bridge --config FILE [--check-config]
    cc-ci-bridge --config FILE --retest [--now UNIX_SECONDS]

OPTIONS:
    -c, --config FILE   JSON configuration (below). Required.
        --check-config  Validate the configuration (and read the secret files), ask Gitea
                        whether the bot may set commit statuses on each recipe, then exit.
        --retest        Start the scheduled re-tests that are due (what the cc-ci-retest
                        timer runs; docs/bridge.md#scheduled-re-tests): each enrolled recipe's
                        default-branch head, once per slot of retest_every_days, at most
                        retest_batch per invocation and none while retest_queue_limit cc-ci
                        builds are queued or running. Safe to run by hand, and again.
        --now SECS      With --retest: act as if it were this time (unix seconds), to test
                        or to start a slot early.
    -h, --help          Show this help.

CONFIGURATION (JSON; every setting lives here, tokens only in files):
    {
      "gitea_url": "https://git.coopcloud.tech",
      "bot_user": "cc-ci-bot",
      "gitea_token_file": "/run/credentials/cc-ci-bridge.service/gitea-token",
      "drone_url": "https://drone.ci.coopcloud.tech",
      "drone_token_file": "/run/credentials/cc-ci-bridge.service/drone-token",
      "drone_repo": "coop-cloud/cc-ci",
      "drone_branch": "main",                       (optional; Drone's default branch)
      "recipes": {"custom-html": "coop-cloud/custom-html"},
      "orgs": ["coop-cloud"],                       (members may trigger runs)
      "allow_users": ["alice"],                     (these logins may too)
      "poll_interval_secs": 15,                     (fast poll: one Gitea request)
      "sweep_interval_secs": 120,                   (full sweep of every repository)
      "follow_interval_secs": 5,                    (how often runs are checked in Drone)
      "request_timeout_secs": 10,
      "listen": "127.0.0.1:8088",                   (/hook, /results, /healthz, /metrics)
      "webhook_secret_files": ["/run/credentials/cc-ci-bridge.service/webhook-secret"],
      "state_dir": "/var/lib/cc-ci-bridge",
      "dashboard_url": "https://ci.coopcloud.tech",
      "status_context": "cc-ci/testme",             (commit status on each run's head)
      "retest_every_days": 1,                       (--retest: a slot per day)
      "retest_unchanged_days": 7,                   (unchanged since green: weekly)
      "retest_batch": 4,                            (builds started per --retest)
      "retest_queue_limit": 2,                      (none while this many are queued/running)
      "retest_open_issues": false,                  (an issue on the recipe per regression)
      "results_dir": "/var/lib/cc-ci-results",      (runs of other runner hosts land here)
      "runner_token_files": {"cc-ci-runner": "/run/credentials/cc-ci-bridge.service/runner-cc-ci-runner"},
                                                    (runner name → its token for PUT /results)
      "results_accept_secs": 3600                   (a build's results are taken until this
                                                     long after it finished)
    }
    With no webhook secret, /hook answers 404 and polling alone finds comments. Without
    results_dir and runner_token_files, PUT /results/... answers 404 (one-host installs: the
    runner writes results_dir itself). A runner's token writes only results of builds Drone
    says ran on that runner (docs/architecture.md, "Runs on other hosts").
    Commit statuses need the bot to have write access to each recipe's code (and a token with
    write:repository); without it the bridge says so once in its log and comments only.

EXIT STATUS:
    0  config valid (--check-config), or the due re-tests were started (--retest)
    2  bad arguments or configuration, the bridge stopped on an error, or --retest could not
       start every due re-test (Drone or the state file failed; the next invocation catches up)
"#;

fn main() -> ExitCode {
    let mut args = pico_args::Arguments::from_env();
    if args.contains(["-h", "--help"]) {
        print!("{HELP}");
        return ExitCode::SUCCESS;
    }
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ERROR bridge: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(mut args: pico_args::Arguments) -> anyhow::Result<()> {
    let config: PathBuf = args.value_from_str(["-c", "--config"])?;
    let check = args.contains("--check-config");
    let retest = args.contains("--retest");
    let now: Option<i64> = args.opt_value_from_str("--now")?;
    let rest = args.finish();
    if !rest.is_empty() {
        anyhow::bail!("unexpected arguments: {rest:?} (see --help)");
    }
    let cfg = bridge::config::Config::load(&config)?;
    if check {
        println!("config {} is valid", config.display());
        for line in bridge::check_rights(&cfg) {
            println!("{line}");
        }
        return Ok(());
    }
    if retest {
        bridge::retest::run(&cfg, now.unwrap_or_else(ccci::clock::now))?;
        return Ok(());
    }
    if now.is_some() {
        anyhow::bail!("--now goes with --retest (see --help)");
    }
    bridge::run(cfg)
}
