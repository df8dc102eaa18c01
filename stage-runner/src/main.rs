//! `cc-ci-stage-runner`: parse arguments, load the config, run one stage.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use ccci::summary::Stage;

const HELP: &str = r#"cc-ci-stage-runner: runs one stage of a cc-ci run (what Drone's exec runner invokes),
the janitor, or a whole run on your own abra server.

USAGE:
    cc-ci-stage-runner <STAGE> --config FILE [--SETTING VALUE]...
    cc-ci-stage-runner janitor --config FILE
    cc-ci-stage-runner local <RECIPE> --ref SHA [--src URL] [--keep] --config FILE
    cc-ci-stage-runner --check-config --config FILE
    cc-ci-stage-runner check-suite DIR...

STAGES (in order; each reads the run from the state directory):
    prepare        validate RECIPE/REF/PR/SRC, reap old runs, fetch the recipe at REF,
                   decide the upgrade base, generate the run's values
    install        fresh app at REF (chaos deploy), wait until it answers, install tests
    upgrade        fresh app at the previous release, pre_upgrade tests, upgrade in place
                   to REF, post_upgrade tests (skipped, with the reason, if no release)
    backup         pre_backup tests, a probe in each backed-up directory, abra app
                   backup create, the snapshot read back (probes, files, dumps whole;
                   bad dumps retried), after_backup (mutation), abra app restore of
                   that snapshot, the probes back, after_restore tests
    recipe-tests   the recipe's own tests/ at REF, without CI credentials, if the recipe is
                   in trusted_recipes (else skipped, saying why)
    lint           abra recipe lint at REF, its rule table read rule by rule (an error
                   rule not satisfied fails the stage; no deploy needed)
    teardown       remove the app, its volumes, secrets and backups, and the run's state;
                   idempotent

check-suite DIR... reads each tests/<recipe>/ci.json exactly as prepare does and says what
is wrong with it (no config needed): e.g. cc-ci-stage-runner check-suite tests/my-recipe

ENVIRONMENT (from the Drone build):
    RECIPE, REF, PR, SRC, COMMENT   the run's params (prepare)
    DRONE_BUILD_NUMBER              names the run (every stage)

OPTIONS:
    -c, --config FILE     JSON settings, e.g.
        {"server": "default", "base_domain": "ci.coopcloud.tech",
         "recipes": ["custom-html"],
         "state_dir": "/var/lib/cc-ci/runs", "results_dir": "/var/lib/cc-ci/results",
         "tests_dir": "/etc/cc-ci/tests", "abra": "abra", "abra_dir": "/var/lib/cc-ci/abra",
         "python": "python3", "chromium": "/usr/bin/chromium", "resolve": null,
         "scheme": "https", "tls_verify": true, "deploy_timeout_secs": 900,
         "command_timeout_secs": 1800, "run_deadline_secs": 3600,
         "janitor_max_age_secs": 21600,
         "allowed_src": ["https://git.coopcloud.tech/"], "abra_env": {},
         "trusted_recipes": [], "results_url": null, "results_token_file": null}
                          recipes: the enrolled recipes, the only ones a run may be for
                          (tests/<recipe>/ in tests_dir adds checks; none is needed)
                          run_deadline_secs: a whole run's bound; past it the stage is
                          stopped, the app torn down, later stages error "deadline"
                          trusted_recipes: recipes whose own tests/ (code from the PR) may
                          run here; empty by default, no wildcard
                          results_url, results_token_file: on a runner host other than
                          the server, its bridge and this host's token; each stage ships
                          the run's new results there (null: the server reads results_dir)
    --SETTING VALUE       any setting above, e.g. --deploy-timeout-secs 300
    --ref SHA             (local) the full commit sha to test
    --src URL             (local) where to fetch it (default: the Co-op Cloud recipe repo)
    --keep                (local) when a stage did not pass, leave the app up to look at
                          instead of tearing it down; the run says how to remove it
    --check-config        validate the configuration, then exit
    -h, --help            this help

EXIT STATUS:
    0  the stage passed or was skipped     1  tests failed
    2  the stage could not run (bad parameter, deploy failed, aborted)
"#;

fn main() -> ExitCode {
    let mut args = pico_args::Arguments::from_env();
    if args.contains(["-h", "--help"]) {
        print!("{HELP}");
        return ExitCode::SUCCESS;
    }
    stage_runner::abort::install();
    // Known before parsing, so even a bad argument or configuration ends in a verdict line.
    let stage = std::env::args().skip(1).find_map(|a| Stage::parse(&a));
    match run(args) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            // Errors never carry secret values: those live only in the redactor's keeping.
            let why = format!("{e:#}");
            println!("ERROR stage-runner: {why}");
            if let Some(stage) = stage {
                println!("{}", stage_runner::error_verdict(stage, &why));
            }
            ExitCode::from(2)
        }
    }
}

fn run(mut args: pico_args::Arguments) -> Result<u8> {
    if std::env::args().nth(1).as_deref() == Some("check-suite") {
        let _ = args.subcommand()?;
        let dirs: Vec<PathBuf> = args.finish().into_iter().map(PathBuf::from).collect();
        if dirs.is_empty() {
            bail!("check-suite: name the suite folders, e.g. tests/custom-html");
        }
        return Ok(stage_runner::ci::check_suites(&dirs));
    }
    let config: PathBuf = args.value_from_str(["-c", "--config"])?;
    if args.contains("--check-config") {
        let overrides = setting_overrides(args.finish())?;
        stage_runner::config::Config::load(&config)?.apply(&overrides)?;
        println!("config {} is valid", config.display());
        return Ok(0);
    }
    let sub: String = args.free_from_str().context("missing STAGE (see --help)")?;
    let (recipe, sha, src, keep) = if sub == "local" {
        let recipe: String = args.free_from_str().context("local: missing RECIPE")?;
        let sha: String = args
            .value_from_str("--ref")
            .context("local: --ref SHA is required")?;
        let src: Option<String> = args.opt_value_from_str("--src")?;
        (Some(recipe), Some(sha), src, args.contains("--keep"))
    } else {
        (None, None, None, false)
    };
    let overrides = setting_overrides(args.finish())?;
    let cfg = stage_runner::config::Config::load(&config)?.apply(&overrides)?;
    match sub.as_str() {
        "janitor" => {
            let r = stage_runner::janitor::sweep(&cfg)?;
            println!("janitor: reaped {} runs, {} orphaned apps", r.runs, r.apps);
            Ok(0)
        }
        "local" => {
            let recipe = recipe.expect("set for local");
            let src = src
                .unwrap_or_else(|| format!("https://git.coopcloud.tech/coop-cloud/{recipe}.git"));
            let params = ccci::run::RunParams::from_lookup(|k| match k {
                "RECIPE" => Some(recipe.clone()),
                "REF" => sha.clone(),
                "PR" => Some("1".into()),
                "SRC" => Some(src.clone()),
                _ => None,
            })?;
            stage_runner::local(cfg, &params, keep.then_some(config.as_path()))
        }
        other => stage_runner::drone_stage(cfg, other.parse::<Stage>()?),
    }
}

/// `--key value` pairs left after the known flags.
fn setting_overrides(rest: Vec<OsString>) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut it = rest.into_iter();
    while let Some(k) = it.next() {
        let k = k.to_string_lossy().into_owned();
        let Some(key) = k.strip_prefix("--") else {
            bail!("unexpected argument {k:?} (see --help)");
        };
        let v = it
            .next()
            .with_context(|| format!("--{key} needs a value"))?
            .to_string_lossy()
            .into_owned();
        out.push((key.to_owned(), v));
    }
    Ok(out)
}
