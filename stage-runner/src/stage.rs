//! The stages of a run. Each is one invocation of stage-runner and leaves the run's summary
//! updated; an aborted stage tears the run down before exiting.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use ccci::run::{app_domain, check_recipe_name, RunParams};
use ccci::summary::{
    Check, CheckStatus, Counts, Failure, Skip, Stage, StageResult, Status, Summary, SCHEMA,
};
use ccci::verdict::Verdict;

use crate::abort;
use crate::abra::{self, Abra};
use crate::backup;
use crate::ci::CiSettings;
use crate::config::Config;
use crate::junit;
use crate::lint;
use crate::phase::TestPhase;
use crate::process::{self, say, Cmd};
use crate::redact::Redactor;
use crate::rundir::{self, Lock, Run};
use crate::wait;

/// Where the run's card and the landing screenshot it shows live in its results (the card's
/// URL on the dashboard is `runs/<build>/artifacts/card.png`).
pub const CARD: &str = "artifacts/card.png";
pub const LANDING: &str = "artifacts/install/landing.png";
/// abra lints in about a second ([CCCI] JOURNAL-lvl5: 0.7 s); far more, and something hangs.
const LINT_TIMEOUT: Duration = Duration::from_secs(120);
/// `abra app backup create`s a backup stage makes at most, when the database dump is bad.
const BACKUP_ATTEMPTS: u32 = 3;

/// What [`Ctx::probes`] does in each backed-up directory.
#[derive(Clone, Copy)]
enum Probe<'a> {
    Write(&'a str),
    Read(&'a str),
    Remove,
}

/// Where ci.json's overlays are, relative to the checkout abra deploys from (the run's
/// `ABRA_DIR/overlays/`).
const OVERLAYS: &str = "../../overlays/";
/// A browser start and one page: far less than this, or something hangs.
const CARD_TIMEOUT: Duration = Duration::from_secs(60);
/// Each question to the engine (diagnostics, the deployed head); a red stage's log lines per
/// service and its diagnostics' size.
const ENGINE_TIMEOUT: Duration = Duration::from_secs(30);
const DIAGNOSTICS_LOG_LINES: &str = "50";
const DIAGNOSTICS_MAX_BYTES: usize = 64 * 1024;
/// How long the containers of tasks an update replaced may take to stop (swarm's default grace
/// period is 10 s, then they are killed).
const REPLACED_TASKS_LIMIT: Duration = Duration::from_secs(60);

/// The recipe under test failed (not cc-ci, not the host): a red verdict, not an error.
#[derive(Debug)]
pub struct RecipeFailed(pub String);

impl std::fmt::Display for RecipeFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RecipeFailed {}

/// A stage's outcome, before it is written to the summary.
pub struct Outcome {
    pub status: Status,
    pub reason: String,
    pub tests: Counts,
    pub failures: Vec<Failure>,
    pub artifacts: Vec<String>,
    /// Why a skipped stage was skipped (docs/levels.md).
    pub skip: Option<Skip>,
    /// Why a declared skip no longer applies.
    pub stale: String,
    /// `artifacts/<stage>/diagnostics.txt` was saved (a red stage's tasks and logs).
    pub diagnostics: bool,
    /// The generic checks made.
    pub checks: Vec<Check>,
}

impl Outcome {
    pub fn passed() -> Outcome {
        Outcome {
            status: Status::Passed,
            reason: String::new(),
            tests: Counts::default(),
            failures: Vec::new(),
            artifacts: Vec::new(),
            skip: None,
            stale: String::new(),
            diagnostics: false,
            checks: Vec::new(),
        }
    }

    /// The stage could not run: infrastructure, bad parameters, an abort.
    pub fn error(reason: impl Into<String>) -> Outcome {
        Outcome {
            status: Status::Error,
            reason: reason.into(),
            ..Outcome::passed()
        }
    }

    pub fn skipped(kind: Skip, reason: impl Into<String>) -> Outcome {
        Outcome {
            status: Status::Skipped,
            reason: reason.into(),
            skip: Some(kind),
            ..Outcome::passed()
        }
    }

    /// Adds one pytest phase's results; a failed phase fails the stage.
    fn merge(&mut self, phase: Phase) {
        self.tests.total += phase.counts.total;
        self.tests.passed += phase.counts.passed;
        self.tests.failed += phase.counts.failed;
        self.tests.skipped += phase.counts.skipped;
        self.failures.extend(phase.failures);
        if phase.failed && self.status == Status::Passed {
            self.status = Status::Failed;
            self.reason = format!("tests failed in phase {}", phase.name);
        }
    }

    /// Records a generic check; a failed one fails the stage, saying why.
    fn check(&mut self, name: &str, problems: Vec<String>, passed: impl Into<String>) {
        let failed = !problems.is_empty();
        let detail = if failed {
            problems.join("; ")
        } else {
            passed.into()
        };
        if failed && self.status == Status::Passed {
            self.status = Status::Failed;
            self.reason = format!("generic check {name} failed: {detail}");
        }
        self.checks.push(Check {
            name: name.into(),
            status: if failed {
                CheckStatus::Failed
            } else {
                CheckStatus::Passed
            },
            detail,
        });
    }

    /// Records a generic check the recipe switched off, with its reason.
    fn check_off(&mut self, name: &str, why: &str) {
        self.checks.push(Check {
            name: name.into(),
            status: CheckStatus::Off,
            detail: why.into(),
        });
    }

    /// What the summary records of the stage: every string redacted.
    pub fn result(
        &self,
        stage: Stage,
        started: i64,
        took: Duration,
        redactor: &Redactor,
    ) -> StageResult {
        StageResult {
            name: stage,
            status: self.status,
            reason: redactor.redact_str(&self.reason),
            started,
            duration_ms: took.as_millis() as u64,
            tests: self.tests.clone(),
            failures: self
                .failures
                .iter()
                .map(|f| Failure {
                    name: redactor.redact_str(&f.name),
                    message: redactor.redact_str(&f.message),
                })
                .collect(),
            artifacts: self.artifacts.clone(),
            skip: self.skip,
            stale: redactor.redact_str(&self.stale),
            checks: self
                .checks
                .iter()
                .map(|c| Check {
                    detail: redactor.redact_str(&c.detail),
                    ..c.clone()
                })
                .collect(),
        }
    }

    /// The line the bridge reads from the step's log: the summary's record of the stage (so
    /// redacted before it is cut).
    pub fn verdict(&self, stage: Stage, redactor: &Redactor) -> Verdict {
        let mut v = Verdict::of(&self.result(stage, 0, Duration::ZERO, redactor));
        v.diagnostics = self.diagnostics;
        v
    }

    /// Exit status: 0 passed or skipped, 1 tests failed, 2 the stage could not run.
    pub fn exit_code(&self) -> u8 {
        match self.status {
            Status::Passed | Status::Skipped => 0,
            Status::Failed => 1,
            Status::Running | Status::Error => 2,
        }
    }
}

struct Phase {
    name: &'static str,
    counts: Counts,
    failures: Vec<Failure>,
    failed: bool,
}

/// Everything a stage works with.
pub struct Ctx {
    pub cfg: Config,
    pub dir: PathBuf,
    pub run: Run,
    pub redactor: Redactor,
    _lock: Lock,
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The run id of the Drone build this step belongs to.
pub fn drone_run_id() -> Result<String> {
    let n = std::env::var("DRONE_BUILD_NUMBER").unwrap_or_default();
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        bail!("DRONE_BUILD_NUMBER is missing or not a number (run stage-runner from Drone, or use `local`)");
    }
    Ok(n)
}

pub fn results_dir(cfg: &Config, run_id: &str) -> PathBuf {
    cfg.results_dir.join(run_id)
}

/// Checks every parameter before anything touches abra; errors name the parameter.
pub fn validate(cfg: &Config, p: &RunParams) -> Result<()> {
    check_recipe_name(&p.recipe)?;
    if !cfg.recipes.contains(&p.recipe) {
        bail!(
            "parameter RECIPE: {} is not enrolled on this host (not in stage-runner's recipes)",
            p.recipe
        );
    }
    if !cfg.allowed_src.iter().any(|a| src_allowed(&p.src, a)) {
        bail!(
            "parameter SRC: {:?} is not on an allowed host (allowed: {})",
            p.src.chars().take(200).collect::<String>(),
            cfg.allowed_src.join(", ")
        );
    }
    Ok(())
}

/// Whether a PR's source URL is under an allowed one: the same scheme, the same host (and
/// port), and the allowed path's segments first — compared as parts of a URL, not as text, so
/// `https://git.example.org` allows neither `https://git.example.org.evil/` nor
/// `https://git.example.org@evil/`. A URL with credentials, a query, a fragment, `..` or any
/// blank or control byte is never allowed.
pub fn src_allowed(src: &str, allowed: &str) -> bool {
    let bad = |u: &str| {
        u.bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control() || b"?#\\".contains(&b))
    };
    let split = |u: &str| -> Option<(String, String, Vec<String>)> {
        let (scheme, rest) = u.split_once("://")?;
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        if authority.contains('@') {
            return None;
        }
        let segments: Vec<String> = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        if segments.iter().any(|s| s == ".." || s == ".") {
            return None;
        }
        Some((
            scheme.to_ascii_lowercase(),
            authority.to_ascii_lowercase(),
            segments,
        ))
    };
    if bad(src) {
        return false;
    }
    match (split(src), split(allowed)) {
        (Some((s1, a1, p1)), Some((s2, a2, p2))) => {
            s1 == s2 && a1 == a2 && p1.len() > p2.len() && p1.starts_with(&p2)
        }
        _ => false,
    }
}

impl Ctx {
    /// Opens an existing run (every stage after prepare).
    pub fn open(cfg: Config, run_id: &str) -> Result<Ctx> {
        let dir = rundir::dir(&cfg.state_dir, run_id);
        let run = Run::load(&dir).context("the run has no state: did prepare run?")?;
        let lock = Lock::try_take(&dir)?
            .with_context(|| format!("run {run_id} is busy in another stage-runner"))?;
        // The lock was free: whatever of the run still runs was left by a killed stage-runner.
        let left = process::reap(&dir);
        if left > 0 {
            say(
                &Redactor::new([]),
                &format!("stopped {left} process(es) a killed stage of run {run_id} left running"),
            );
        }
        process::mark_run(&dir);
        let values = rundir::load_values(&dir)?;
        let redactor = Redactor::new(values.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        Ok(Ctx {
            cfg,
            dir,
            run,
            redactor,
            _lock: lock,
        })
    }

    pub fn abra(&self) -> Abra {
        Abra {
            exe: self.cfg.abra.clone(),
            abra_dir: self.dir.join("abra"),
            env: self
                .cfg
                .abra_env
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            server: self.cfg.server.clone(),
            timeout: self.cfg.command_timeout(),
        }
    }

    fn say(&self, line: &str) {
        say(&self.redactor, line);
    }

    fn base_url(&self) -> String {
        format!("{}://{}", self.cfg.scheme, self.run.domain)
    }

    fn summary_path(&self) -> PathBuf {
        results_dir(&self.cfg, &self.run.id).join("summary.json")
    }

    pub fn record(&self, stage: Stage, started: i64, took: Duration, o: &Outcome) -> Result<()> {
        let path = self.summary_path();
        let mut s = Summary::load(&path)?;
        s.set_stage(o.result(stage, started, took, &self.redactor));
        if stage == Stage::Teardown {
            s.finished = now();
        }
        s.save(&path)
    }

    fn git(&self, args: &[&str]) -> Result<process::Output> {
        let cmd = Cmd::new("git", args)
            .cwd(&self.abra().recipe_dir(&self.run.recipe))
            .env("GIT_TERMINAL_PROMPT", "0")
            .timeout(self.cfg.command_timeout())
            .capture();
        let out = process::run(cmd, &self.redactor)?;
        if !out.success() {
            bail!("`git {}` failed", args.join(" "));
        }
        Ok(out)
    }

    fn checkout(&self, rev: &str) -> Result<()> {
        self.git(&["checkout", "--quiet", "--force", "--detach", rev])?;
        // A non-chaos deploy refuses untracked files.
        self.git(&["clean", "--quiet", "-fdx"])?;
        Ok(())
    }

    /// A fresh app of `version` (a release tag, or the PR head for `None`): created,
    /// configured, secrets in place, deployed and answering through the proxy.
    /// Returns what the deploy showed: for the head, which commit runs; that the app answers.
    fn deploy_fresh(&mut self, version: Option<&str>) -> Result<(Option<String>, String)> {
        let domain = self.run.domain.clone();
        let recipe = self.run.recipe.clone();
        let abra = self.abra();
        abra.remove_app(&domain, &self.redactor)?;
        let mut args = vec!["app", "new", recipe.as_str()];
        if let Some(v) = version {
            args.push(v);
        }
        args.extend(["--server", &self.cfg.server, "--domain", &domain]);
        abra.ok(&args, &self.redactor)?;
        // `abra app new` moves the checkout to a release tag; put back what is tested.
        self.checkout(version.unwrap_or(&self.run.sha))?;
        let mut vars = self.run.ci.env_for(&domain, &self.cfg.base_domain);
        // The janitor's proof that this app is a CI app, and whose.
        vars.push(("CCCI_RUN".into(), self.run.id.clone()));
        let env_file = abra.env_file(&domain);
        abra::set_env(&env_file, &vars)?;
        self.apply_overlays(version.is_some())?;
        let env_text = std::fs::read_to_string(&env_file)?;
        let mut values = rundir::load_values(&self.dir)?;
        let mut bumped = Vec::new();
        for (name, version) in abra::secrets_of(&env_text) {
            match self
                .run
                .ci
                .secrets
                .get(&name)
                .and_then(|s| s.value_from.as_ref().map(|f| (f, s)))
            {
                Some((from, spec)) => {
                    let value = values
                        .get(from)
                        .with_context(|| format!("ci.json: secret {name} takes value_from {from}, which is not in values"))?;
                    let file = self.dir.join("secrets").join(&name);
                    rundir::write_private(&file, value.as_bytes())?;
                    let f = file.display().to_string();
                    abra.ok(
                        &[
                            "app",
                            "secret",
                            "insert",
                            &domain,
                            &name,
                            &spec.version,
                            &f,
                            "--file",
                        ],
                        &self.redactor,
                    )?;
                    bumped.push((
                        format!("SECRET_{}_VERSION", name.to_uppercase()),
                        spec.version.clone(),
                    ));
                }
                None => {
                    let v = abra.generate_secret(&domain, &name, &version, &mut self.redactor)?;
                    values.insert(format!("secret_{name}"), v);
                }
            }
        }
        abra::set_env(&env_file, &bumped)?;
        rundir::save_values(&self.dir, &values)?;
        let head = match version {
            Some(v) => {
                self.deploy(&["app", "deploy", &domain, v])?;
                None
            }
            None => {
                let deployed = self.deploy(&["app", "deploy", &domain, "--chaos"]);
                // Also when the deploy failed: a regression under an unchanged commit is told
                // by the images it ran.
                self.record_images();
                deployed?;
                Some(self.check_deployed_head()?)
            }
        };
        Ok((head, self.wait_up()?))
    }

    /// Puts the recipe's CI compose overlays (ci.json `overlay`, plus `base_overlay` on the
    /// upgrade base) in the app's `COMPOSE_FILE`. They are kept outside the checkout and named
    /// relative to it: abra calls a checkout with an untracked file dirty, and lint would read it.
    fn apply_overlays(&self, base: bool) -> Result<()> {
        let ci = &self.run.ci;
        if ci.overlay.is_none() && ci.base_overlay.is_none() {
            return Ok(());
        }
        let wanted: Vec<&String> = ci
            .overlay
            .iter()
            .chain(ci.base_overlay.iter().filter(|_| base))
            .collect();
        let env_file = self.abra().env_file(&self.run.domain);
        let mut files: Vec<String> = abra::compose_files(&std::fs::read_to_string(&env_file)?)
            .into_iter()
            .filter(|f| !f.starts_with(OVERLAYS))
            .collect();
        let dir = self.dir.join("abra/overlays");
        std::fs::create_dir_all(&dir)?;
        for f in wanted {
            std::fs::copy(self.suite().join(f), dir.join(f))
                .with_context(|| format!("copying the ci.json overlay {f}"))?;
            files.push(format!("{OVERLAYS}{f}"));
        }
        self.say(&format!("compose files: {}", files.join(":")));
        abra::set_compose_files(&env_file, &files)
    }

    /// An abra deploy with its convergence checks: a deploy that abra reports failed (a
    /// missing image, a crashing task, a healthcheck that rolled the update back, a secret
    /// not there, past the recipe's timeout) is the recipe's failure, with abra's reason.
    fn deploy(&self, args: &[&str]) -> Result<()> {
        let out = self.abra().try_run(args, &self.redactor)?;
        if !out.success() {
            let said = out.last_line.trim_start_matches("FATA ").to_owned();
            return Err(RecipeFailed(format!("the deploy failed: {said}")).into());
        }
        Ok(())
    }

    /// Waits until the health path answers; says how it answered.
    fn wait_up(&self) -> Result<String> {
        // The recipe says how long it needs; the host's setting caps it.
        let limit = Duration::from_secs(
            self.run
                .ci
                .deploy_timeout_secs
                .map_or(self.cfg.deploy_timeout_secs, |t| {
                    t.min(self.cfg.deploy_timeout_secs)
                }),
        );
        let url = format!("{}{}", self.base_url(), self.run.ci.health_path);
        let (took, status) = wait::until_up(
            &url,
            self.cfg.resolve.as_deref(),
            self.cfg.tls_verify,
            &self.run.ci.health_codes,
            limit,
            &self.redactor,
        )?;
        Ok(format!(
            "{} answered HTTP {status} through the proxy after {} s",
            self.run.ci.health_path,
            took.as_secs()
        ))
    }

    /// A Python process of the harness, with the run described in the CCCI_* environment.
    fn harness(&self, stage: Stage, phase: &str, args: &[&str]) -> Cmd {
        let artifacts = results_dir(&self.cfg, &self.run.id)
            .join("artifacts")
            .join(stage.as_str());
        Cmd::new(&self.cfg.python, args)
            .timeout(self.cfg.command_timeout())
            .env("PYTHONPATH", self.cfg.tests_dir.display().to_string())
            .env("CCCI_RECIPE", &self.run.recipe)
            .env("CCCI_DOMAIN", &self.run.domain)
            .env("CCCI_BASE_URL", self.base_url())
            .env("CCCI_STAGE", stage.as_str())
            .env("CCCI_PHASE", phase)
            .env("CCCI_RESOLVE", self.cfg.resolve.clone().unwrap_or_default())
            .env("CCCI_RUN_DIR", self.dir.display().to_string())
            .env("CCCI_ARTIFACTS", artifacts.display().to_string())
            .env("CCCI_ABRA", self.cfg.abra.display().to_string())
            .env("ABRA_DIR", self.dir.join("abra").display().to_string())
            .env("CCCI_SERVER", &self.cfg.server)
            .env("CCCI_CHROMIUM", self.cfg.chromium.display().to_string())
            .env(
                "CCCI_TLS_VERIFY",
                if self.cfg.tls_verify { "1" } else { "0" },
            )
            .envs(&self.cfg.abra_env)
    }

    /// Runs one phase of the recipe's tests against the live app.
    fn pytest(
        &self,
        stage: Stage,
        phase: TestPhase,
        tests: &Path,
        own_tests: bool,
    ) -> Result<Phase> {
        let junit = self.dir.join(format!("junit-{stage}-{phase}.xml"));
        let _ = std::fs::remove_file(&junit);
        let artifacts = results_dir(&self.cfg, &self.run.id)
            .join("artifacts")
            .join(stage.as_str());
        std::fs::create_dir_all(&artifacts)?;
        let t = tests.display().to_string();
        let j = junit.display().to_string();
        let mut args = vec![
            "-m",
            "pytest",
            t.as_str(),
            "-q",
            "-p",
            "no:cacheprovider",
            "--junitxml",
            j.as_str(),
        ];
        if !own_tests {
            args.extend(["-m", phase.as_str()]);
        }
        args.extend(["-p", "ccci_harness.plugin"]);
        let mut cmd = self.harness(stage, phase.as_str(), &args);
        if own_tests {
            // A recipe's own tests see no CI credential: only what the contract names.
            cmd = cmd.clear_env();
        }
        self.say(&format!("--- {stage}: phase {phase} ---"));
        let out = process::run(cmd, &self.redactor)?;
        let (counts, failures) = match std::fs::read_to_string(&junit) {
            Ok(xml) => junit::parse(&xml),
            Err(_) => (Counts::default(), Vec::new()),
        };
        match out.code {
            // 5: no test selected for this phase — the suite has nothing to say here.
            Some(0) | Some(5) => Ok(Phase {
                name: phase.as_str(),
                counts,
                failures,
                failed: false,
            }),
            Some(1) => Ok(Phase {
                name: phase.as_str(),
                counts,
                failures,
                failed: true,
            }),
            other => bail!(
                "pytest could not run phase {phase} (exit {})",
                other.map_or("signal".into(), |c| c.to_string())
            ),
        }
    }

    fn suite(&self) -> PathBuf {
        self.cfg.tests_dir.join(&self.run.recipe)
    }

    /// One phase of cc-ci's suite for the recipe, `tests/<recipe>/`, where it has one: a
    /// recipe without gets the generic checks alone (the zero-config floor).
    fn suite_phase(&self, phase: TestPhase) -> Result<Phase> {
        let suite = self.suite();
        if !suite.is_dir() {
            return Ok(Phase {
                name: phase.as_str(),
                counts: Counts::default(),
                failures: Vec::new(),
                failed: false,
            });
        }
        self.pytest(phase.stage(), phase, &suite, false)
    }

    /// The files a stage's tests left in its artifacts directory, for the run page. Only plain
    /// files in the directory itself: a test that swapped the directory for a symlink, or left
    /// symlinks in it, would otherwise publish files from elsewhere on the host.
    pub fn artifacts(&self, stage: Stage) -> Vec<String> {
        let dir = results_dir(&self.cfg, &self.run.id)
            .join("artifacts")
            .join(stage.as_str());
        match std::fs::symlink_metadata(&dir) {
            Ok(m) if m.file_type().is_dir() => {}
            Ok(_) => {
                self.say(&format!(
                    "artifacts: {} is not a directory (a symlink?); none kept for {stage}",
                    dir.display()
                ));
                return Vec::new();
            }
            Err(_) => return Vec::new(),
        }
        let mut out: Vec<String> = std::fs::read_dir(&dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                    .map(|e| format!("artifacts/{stage}/{}", e.file_name().to_string_lossy()))
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }

    pub fn install(&mut self) -> Result<Outcome> {
        let (head, up) = self.deploy_fresh(None)?;
        self.landing_screenshot();
        let mut o = Outcome::passed();
        o.check("head-deployed", Vec::new(), head.unwrap_or_default());
        o.check("answers", Vec::new(), up);
        o.merge(self.suite_phase(TestPhase::Install)?);
        o.artifacts = self.artifacts(Stage::Install);
        Ok(o)
    }

    /// A question to the engine abra deploys to (its `DOCKER_HOST` from `abra_env`): the
    /// answer redacted, or `None` when docker failed or did not answer in time.
    fn engine(&self, args: &[&str]) -> Option<String> {
        let cmd = Cmd::new("docker", args)
            .envs(&self.cfg.abra_env)
            .timeout(ENGINE_TIMEOUT)
            .capture();
        let out = process::run(cmd, &self.redactor).ok()?;
        out.success().then(|| {
            self.redactor
                .redact_str(&String::from_utf8_lossy(&out.stdout))
        })
    }

    /// The app's services on the engine, by the stack abra named after its domain.
    fn services(&self) -> Option<Vec<String>> {
        let stack = ccci::run::stack_name(&self.run.domain);
        let filter = format!("label=com.docker.stack.namespace={stack}");
        let names = self.engine(&[
            "service",
            "ls",
            "--filter",
            &filter,
            "--format",
            "{{.Name}}",
        ])?;
        Some(
            names
                .lines()
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect(),
        )
    }

    /// Waits until no container of the app's replaced tasks is running. A swarm update counts
    /// as done once the old tasks are told to stop; until their containers have, Traefik still
    /// routes some requests to the old version, and a check would test the old code.
    fn wait_replaced_tasks_stopped(&self) -> Result<()> {
        let stack = ccci::run::stack_name(&self.run.domain);
        let filter = format!("label=com.docker.stack.namespace={stack}");
        let end = Instant::now() + REPLACED_TASKS_LIMIT;
        loop {
            let services = self
                .services()
                .context("listing the app's services on the engine")?;
            let mut args = vec![
                "service",
                "ps",
                "-q",
                "--no-trunc",
                "--filter",
                "desired-state=running",
            ];
            args.extend(services.iter().map(String::as_str));
            let current = self
                .engine(&args)
                .context("listing the tasks the app's services keep running")?;
            let current: Vec<&str> = current.lines().collect();
            let running = self
                .engine(&[
                    "ps",
                    "--filter",
                    &filter,
                    "--format",
                    "{{.Label \"com.docker.swarm.task.id\"}}",
                ])
                .context("listing the app's running containers")?;
            let old: Vec<&str> = running
                .lines()
                .filter(|t| !t.is_empty() && !current.contains(t))
                .collect();
            if old.is_empty() {
                return Ok(());
            }
            if Instant::now() >= end {
                bail!(
                    "replaced tasks {} still running {} s after the update",
                    old.join(", "),
                    REPLACED_TASKS_LIMIT.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Best effort, after a deploy of the head: each service's image and the id the engine
    /// resolved it to, in the summary (`images`), so that two runs of one commit can be told
    /// apart by what they ran (an upstream tag that moved).
    fn record_images(&self) {
        let Some(services) = self.services() else {
            return;
        };
        let mut images = Vec::new();
        for svc in &services {
            let Some(image) = self.engine(&[
                "service",
                "inspect",
                "--format",
                "{{.Spec.TaskTemplate.ContainerSpec.Image}}",
                svc,
            ]) else {
                continue;
            };
            let image = image.trim().to_owned();
            let id = self
                .engine(&["image", "inspect", "--format", "{{.Id}}", &image])
                .map(|s| s.trim().to_owned())
                .unwrap_or_default();
            let service = svc
                .strip_prefix(&format!("{}_", ccci::run::stack_name(&self.run.domain)))
                .unwrap_or(svc)
                .to_owned();
            images.push(ccci::summary::Image { service, image, id });
        }
        let path = self.summary_path();
        if let Ok(mut s) = Summary::load(&path) {
            s.images = images;
            let _ = s.save(&path);
        }
    }

    /// After a deploy of the PR head: the chaos-version label abra wrote (`SmallSHA(HEAD)`,
    /// `+U` when the checkout was dirty) must be the head's, clean, on every service that
    /// carries it, and at least one must. An abra that deployed another checkout (an upgrade
    /// that silently redeployed the old head) must never pass.
    fn check_deployed_head(&self) -> Result<String> {
        let want = &self.run.sha[..8];
        let label = format!(
            "coop-cloud.{}.chaos-version",
            ccci::run::stack_name(&self.run.domain)
        );
        let services = self
            .services()
            .context("reading the deployed services back from the engine")?;
        let mut seen = 0;
        for svc in &services {
            let format = format!("{{{{index .Spec.Labels \"{label}\"}}}}");
            let got = self
                .engine(&["service", "inspect", "--format", &format, svc])
                .with_context(|| format!("reading {svc}'s labels from the engine"))?;
            let got = got.trim();
            if got.is_empty() || got == "<no value>" {
                continue;
            }
            seen += 1;
            if got != want {
                bail!("{svc} runs {label}={got}, not the PR head {want}: abra deployed another checkout than the one asked for");
            }
        }
        if seen == 0 {
            bail!(
                "no service of {} carries {label}: cannot tell which commit was deployed",
                self.run.domain
            );
        }
        Ok(format!(
            "{seen} service(s) run the PR head {want}, clean (coop-cloud chaos-version)"
        ))
    }

    /// Best effort, after a red stage and before teardown: the app's tasks with their errors
    /// and each service's last log lines, redacted, as `artifacts/<stage>/diagnostics.txt`, so
    /// a maintainer can tell why without a shell on the host. Asks the engine abra deploys to.
    pub fn save_diagnostics(&self, stage: Stage, o: &Outcome) -> bool {
        if self.run.domain.is_empty() {
            return false;
        }
        let Some(services) = self.services() else {
            self.say("diagnostics: the engine did not answer; none kept");
            return false;
        };
        let mut text = format!(
            "cc-ci diagnostics of {} after {stage} {}\nreason: {}\n",
            self.run.domain,
            o.status.as_str(),
            self.redactor.redact_str(&o.reason)
        );
        if services.is_empty() {
            text.push_str("\n(no service of the app is on the engine)\n");
        }
        for svc in &services {
            let tasks = self
                .engine(&[
                    "service",
                    "ps",
                    "--no-trunc",
                    "--format",
                    "{{.Name}}\t{{.Image}}\t{{.CurrentState}}\t{{.Error}}",
                    svc,
                ])
                .unwrap_or_else(|| "(docker service ps failed)\n".into());
            text.push_str(&format!(
                "\n== {svc}: tasks (name, image, state, error) ==\n{tasks}"
            ));
        }
        for svc in &services {
            let logs = self
                .engine(&[
                    "service",
                    "logs",
                    "--no-trunc",
                    "--tail",
                    DIAGNOSTICS_LOG_LINES,
                    svc,
                ])
                .unwrap_or_else(|| "(docker service logs failed)\n".into());
            text.push_str(&format!(
                "\n== {svc}: last {DIAGNOSTICS_LOG_LINES} log lines ==\n{logs}"
            ));
        }
        if text.len() > DIAGNOSTICS_MAX_BYTES {
            let mut cut = DIAGNOSTICS_MAX_BYTES;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push_str("\n… (cut)\n");
        }
        let dir = results_dir(&self.cfg, &self.run.id)
            .join("artifacts")
            .join(stage.as_str());
        let path = dir.join("diagnostics.txt");
        match std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(&path, text)) {
            Ok(()) => {
                self.say(&format!("diagnostics: artifacts/{stage}/diagnostics.txt"));
                true
            }
            Err(e) => {
                self.say(&format!("diagnostics: not saved: {e}"));
                false
            }
        }
    }

    /// Best effort, before any test changes the app: its landing page for the run's card.
    /// Never kept when the page shows one of the run's values.
    fn landing_screenshot(&self) {
        let out = results_dir(&self.cfg, &self.run.id).join(LANDING);
        let o = out.display().to_string();
        let path = self.run.ci.screenshot_path.clone();
        let cmd = self
            .harness(
                Stage::Install,
                "install",
                &[
                    "-m",
                    "ccci_harness.card",
                    "landing",
                    "--out",
                    &o,
                    "--path",
                    &path,
                ],
            )
            .timeout(CARD_TIMEOUT);
        match process::run(cmd, &self.redactor) {
            Ok(out) if out.success() => {}
            Ok(out) => self.say(&format!("card: no landing screenshot ({})", out.last_line)),
            Err(e) => self.say(&format!("card: no landing screenshot: {e:#}")),
        }
    }

    /// Best effort, once every stage is recorded: the run's summary card, listed with the
    /// teardown stage's artifacts. Returns whether it was made; never changes a verdict.
    pub fn render_card(&self) -> bool {
        let t = Instant::now();
        let results = results_dir(&self.cfg, &self.run.id);
        let path = self.summary_path();
        let Ok(mut s) = Summary::load(&path) else {
            return false;
        };
        let level = s.level();
        let out = results.join(CARD);
        let shot = results.join(LANDING);
        let (o, sp, lv) = (
            out.display().to_string(),
            path.display().to_string(),
            level.to_string(),
        );
        let shot_s = shot.display().to_string();
        let mut args = vec![
            "-m",
            "ccci_harness.card",
            "render",
            "--summary",
            &sp,
            "--out",
            &o,
            "--level",
            &lv,
            "--level-name",
            ccci::summary::LEVELS[level as usize].0,
        ];
        if shot.is_file() {
            args.extend(["--screenshot", &shot_s]);
        }
        let cmd = self
            .harness(Stage::Teardown, "", &args)
            .timeout(CARD_TIMEOUT);
        match process::run(cmd, &self.redactor) {
            Ok(r) if r.success() && out.is_file() => {}
            Ok(r) => {
                self.say(&format!("card: not made ({})", r.last_line));
                return false;
            }
            Err(e) => {
                self.say(&format!("card: not made: {e:#}"));
                return false;
            }
        }
        if let Some(st) = s.stages.iter_mut().find(|st| st.name == Stage::Teardown) {
            if !st.artifacts.iter().any(|a| a == CARD) {
                st.artifacts.push(CARD.into());
            }
        }
        if let Err(e) = s.save(&path) {
            self.say(&format!(
                "card: made, but the summary could not list it: {e:#}"
            ));
            return false;
        }
        let bytes = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
        self.say(&format!(
            "card: {CARD} ({bytes} bytes) in {} ms",
            t.elapsed().as_millis()
        ));
        true
    }

    /// Why a stage after install does not run: skipped in `ci.json`, or no live app because
    /// install did not pass.
    fn precheck(&self, stage: Stage) -> Result<Option<Outcome>> {
        if let Some(why) = self.run.ci.skip.get(stage.as_str()) {
            let mut o = Outcome::skipped(Skip::Declared, why.clone());
            if let (Some(base), Stage::Upgrade) = (&self.run.upgrade_base, stage) {
                o.stale = format!(
                    "{base} is an earlier published release now: the upgrade could run (remove the skip from ci.json)"
                );
            }
            return Ok(Some(o));
        }
        let s = Summary::load(&self.summary_path())?;
        Ok(match s.stage(Stage::Install).map(|st| st.status) {
            Some(Status::Passed) => None,
            Some(other) => Some(Outcome::skipped(
                Skip::Blocked,
                format!("install {}", other.as_str()),
            )),
            None => Some(Outcome::skipped(Skip::Blocked, "install did not run")),
        })
    }

    pub fn upgrade(&mut self) -> Result<Outcome> {
        if let Some(o) = self.precheck(Stage::Upgrade)? {
            return Ok(o);
        }
        let Some(base) = self.run.upgrade_base.clone() else {
            return Ok(Outcome::skipped(
                Skip::Declared,
                self.run.upgrade_skip.clone(),
            ));
        };
        // A fresh app of the previous release: the install stage's data must not help.
        self.say(&format!("upgrade: {base} -> {}", &self.run.sha[..10]));
        self.deploy_fresh(Some(&base))?;
        let mut o = Outcome::passed();
        o.merge(self.suite_phase(TestPhase::PreUpgrade)?);
        if o.status == Status::Passed {
            self.checkout(&self.run.sha.clone())?;
            self.apply_overlays(false)?;
            let d = self.run.domain.clone();
            self.deploy(&["app", "deploy", &d, "--force", "--chaos"])?;
            self.wait_replaced_tasks_stopped()?;
            let head = self.check_deployed_head()?;
            o.check("head-deployed", Vec::new(), head);
            let up = self.wait_up()?;
            o.check("answers", Vec::new(), up);
            o.merge(self.suite_phase(TestPhase::PostUpgrade)?);
        }
        o.artifacts = self.artifacts(Stage::Upgrade);
        Ok(o)
    }

    /// Backup and restore, verified: the backed-up directories get a probe, the snapshot this
    /// run made is read back (probes there, backed-up files not empty, database dumps whole;
    /// a bad dump is retried), that snapshot — never the repository's latest, which may be
    /// another run's — is restored, and the probes must be back.
    pub fn backup(&mut self) -> Result<Outcome> {
        if let Some(o) = self.precheck(Stage::Backup)? {
            return Ok(o);
        }
        let d = self.run.domain.clone();
        let marked = self.marked()?;
        if marked.is_empty() {
            return Ok(Outcome::skipped(
                Skip::Gap,
                "nothing of the app is marked for backup (no service has backupbot.backup=true); if it keeps no data, say so in ci.json: \"skip\": {\"backup\": \"why\"}",
            ));
        }
        let mut o = Outcome::passed();
        o.merge(self.suite_phase(TestPhase::PreBackup)?);
        if o.status != Status::Passed {
            return Ok(o);
        }
        let token = rundir::random_token(16)?.to_lowercase();
        let probed = match self.run.ci.checks_off.get("backup-data") {
            Some(_) => Vec::new(),
            None => self.probes(&marked, Probe::Write(&token))?,
        };
        let Some(snapshot) = self.verified_backup(
            &marked,
            (!probed.is_empty()).then_some(token.as_str()),
            &mut o,
        )?
        else {
            return Ok(o);
        };
        o.merge(self.suite_phase(TestPhase::AfterBackup)?);
        if o.status != Status::Passed {
            return Ok(o);
        }
        // The restore must bring the probes back: change them now.
        self.probes(&probed, Probe::Write("changed-after-the-backup"))?;
        let out = self.abra().try_run(
            &["app", "restore", &d, "--snapshot", &snapshot],
            &self.redactor,
        )?;
        if !out.success() {
            o.status = Status::Failed;
            o.reason = format!(
                "`abra app restore` of snapshot {snapshot} failed: {}",
                out.last_line
            );
            return Ok(o);
        }
        // It answered before the restore: not answering after it is the restore's doing.
        if let Err(e) = self.wait_up() {
            if abort::aborted().is_some() {
                return Err(e);
            }
            o.status = Status::Failed;
            o.reason =
                format!("the app does not answer after the restore of snapshot {snapshot}: {e:#}");
            return Ok(o);
        }
        if !probed.is_empty() {
            let wrong: Vec<String> = self
                .probes(&probed, Probe::Read(&token))?
                .into_iter()
                .map(|m| {
                    format!(
                        "{} of {} does not hold this run's probe after the restore",
                        m.in_container(),
                        m.service
                    )
                })
                .collect();
            o.check(
                "backup-restored",
                wrong,
                format!(
                    "snapshot {snapshot} restored: the probe is back in each of {} directories",
                    probed.len()
                ),
            );
            self.probes(&probed, Probe::Remove)?;
        }
        o.merge(self.suite_phase(TestPhase::AfterRestore)?);
        o.artifacts = self.artifacts(Stage::Backup);
        Ok(o)
    }

    /// What backupbot backs up of the live app.
    fn marked(&self) -> Result<Vec<backup::Marked>> {
        let services = self
            .services()
            .context("listing the app's services on the engine")?;
        let mut out = Vec::new();
        for svc in &services {
            let json = self
                .engine(&["service", "inspect", svc])
                .with_context(|| format!("reading {svc}'s spec from the engine"))?;
            let v: serde_json::Value =
                serde_json::from_str(&json).with_context(|| format!("parsing {svc}'s spec"))?;
            out.extend(backup::marked(&v[0]));
        }
        Ok(out)
    }

    /// Writes, reads back or removes the backup probe in each marked directory, in the
    /// service's running container. Returns where it wrote (Write), or where the probe did not
    /// hold the token (Read).
    fn probes(&self, marked: &[backup::Marked], what: Probe) -> Result<Vec<backup::Marked>> {
        let mut out = Vec::new();
        for m in marked {
            let (script, value) = match what {
                Probe::Write(v) => ("[ -d \"$1\" ] || exit 3; printf %s \"$2\" > \"$1/$3\"", v),
                Probe::Read(_) => ("cat \"$1/$3\"", ""),
                Probe::Remove => ("rm -f \"$1/$3\"", ""),
            };
            let filter = format!("label=com.docker.swarm.service.name={}", m.service);
            let cid = self
                .engine(&[
                    "ps",
                    "-q",
                    "--filter",
                    &filter,
                    "--filter",
                    "status=running",
                ])
                .and_then(|ids| ids.lines().next().map(str::to_owned))
                .with_context(|| {
                    format!("no running container of {} for the backup probe", m.service)
                })?;
            let path = m.in_container();
            let cmd = Cmd::new(
                "docker",
                &[
                    "exec",
                    &cid,
                    "sh",
                    "-c",
                    script,
                    "sh",
                    &path,
                    value,
                    backup::PROBE,
                ],
            )
            .envs(&self.cfg.abra_env)
            .timeout(ENGINE_TIMEOUT)
            .capture();
            let res = process::run(cmd, &self.redactor)?;
            match what {
                // Not a directory (a file a pre-hook writes, say): the snapshot check covers it.
                Probe::Write(_) if res.code == Some(3) => {}
                Probe::Write(_) if res.success() => out.push(m.clone()),
                Probe::Write(_) | Probe::Remove if !res.success() => bail!(
                    "the backup probe in {path} of {}: {}",
                    m.service,
                    res.last_line
                ),
                Probe::Read(token) if String::from_utf8_lossy(&res.stdout).trim() != token => {
                    out.push(m.clone())
                }
                _ => {}
            }
        }
        Ok(out)
    }

    /// `abra app backup create`, then the snapshot it made read back and checked; a bad
    /// database dump (one taken while the database restarted) is retried a bounded number of
    /// times. Every snapshot made is remembered for teardown to remove. `None`: the stage
    /// failed, `o` says why.
    fn verified_backup(
        &self,
        marked: &[backup::Marked],
        probe: Option<&str>,
        o: &mut Outcome,
    ) -> Result<Option<String>> {
        let d = &self.run.domain;
        let off = &self.run.ci.checks_off;
        for attempt in 1..=BACKUP_ATTEMPTS {
            let out = self
                .abra()
                .try_run_captured(&["app", "backup", "create", d], &self.redactor)?;
            let said = String::from_utf8_lossy(&out.stdout).into_owned();
            for line in said.lines() {
                self.say(line);
            }
            if !out.success() {
                o.status = Status::Failed;
                o.reason = format!("`abra app backup create` failed: {}", out.last_line);
                return Ok(None);
            }
            let id = backup::snapshot_id(&said).context(
                "`abra app backup create` passed but named no snapshot (no \"snapshot <id> saved\" line): cannot tell which to restore",
            )?;
            self.remember_snapshot(&id)?;
            let seen = self.read_snapshot(&id, marked)?;
            let (data, dumps) = backup::problems(marked, &seen, probe);
            let data_off = off.get("backup-data");
            if data_off.is_none() && !data.is_empty() {
                o.check("backup-data", data, "");
                return Ok(None);
            }
            let dump_off = off.get("backup-dump");
            if dump_off.is_none() && !dumps.is_empty() && attempt < BACKUP_ATTEMPTS {
                self.say(&format!(
                    "backup attempt {attempt}/{BACKUP_ATTEMPTS}: {}; backing up again",
                    dumps.join("; ")
                ));
                continue;
            }
            match data_off {
                Some(why) => o.check_off("backup-data", why),
                None => o.check(
                    "backup-data",
                    Vec::new(),
                    format!(
                        "snapshot {id} holds each of the {} backed-up paths, directories with this run's probe",
                        marked.len()
                    ),
                ),
            }
            match dump_off {
                Some(why) => o.check_off("backup-dump", why),
                None => {
                    let n = seen.keys().filter(|p| backup::is_dump(p)).count();
                    let problems: Vec<String> = dumps
                        .iter()
                        .map(|d| format!("{d}, in each of {BACKUP_ATTEMPTS} backups (was the database restarting?)"))
                        .collect();
                    o.check(
                        "backup-dump",
                        problems,
                        match n {
                            0 => "no database dump among the backed-up files".to_owned(),
                            n => format!("{n} database dump(s) whole (backup attempt {attempt})"),
                        },
                    );
                }
            }
            return Ok((o.status == Status::Passed).then_some(id));
        }
        Ok(None)
    }

    /// A snapshot, downloaded into the run's directory and read.
    fn read_snapshot(
        &self,
        id: &str,
        marked: &[backup::Marked],
    ) -> Result<std::collections::BTreeMap<String, backup::Seen>> {
        let dir = self.dir.join("snapshot");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let d = self.run.domain.clone();
        self.abra().ok_in(
            &dir,
            &["app", "backup", "download", &d, "--snapshot", id],
            &self.redactor,
        )?;
        let file = std::fs::read_dir(&dir)?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.is_file())
            .with_context(|| {
                format!("`abra app backup download` of snapshot {id} wrote no file")
            })?;
        let seen = backup::read_snapshot(std::fs::File::open(&file)?, marked)
            .with_context(|| format!("reading snapshot {id}"));
        let _ = std::fs::remove_dir_all(&dir);
        seen
    }

    fn remember_snapshot(&self, id: &str) -> Result<()> {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("snapshots"))?;
        writeln!(f, "{id}")?;
        Ok(())
    }

    /// Removes the run's snapshots from the server's backup repository: backups of a CI app
    /// are the run's, and go with it.
    fn forget_snapshots(&self) -> Result<()> {
        let list = self.dir.join("snapshots");
        let ids = match std::fs::read_to_string(&list) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).context("reading the run's snapshot list"),
        };
        let d = self.run.domain.clone();
        for id in ids.lines().filter(|l| !l.is_empty()) {
            self.abra().ok(
                &["app", "backup", "remove", &d, "--snapshot", id],
                &self.redactor,
            )?;
        }
        std::fs::remove_file(&list)?;
        Ok(())
    }

    pub fn recipe_tests(&mut self) -> Result<Outcome> {
        if let Some(o) = self.precheck(Stage::RecipeTests)? {
            return Ok(o);
        }
        let src = self.abra().recipe_dir(&self.run.recipe).join("tests");
        if !src.is_dir() {
            return Ok(Outcome::skipped(
                Skip::Gap,
                format!(
                    "the recipe has no tests/ directory at {}",
                    &self.run.sha[..10]
                ),
            ));
        }
        // The PR's own code, on a host whose runner reaches the docker socket: default-deny.
        if !self.cfg.trusted_recipes.contains(&self.run.recipe) {
            return Ok(Outcome::skipped(
                Skip::Declared,
                format!(
                    "{} is not in this host's trusted_recipes: a recipe's own tests/ are code from the PR and run only for recipes the operator trusts",
                    self.run.recipe
                ),
            ));
        }
        // A copy, so the tests cannot dirty the checkout abra deploys from.
        let dst = self.dir.join("recipe-tests");
        let _ = std::fs::remove_dir_all(&dst);
        copy_tree(&src, &dst)?;
        let mut o = Outcome::passed();
        o.merge(self.pytest(Stage::RecipeTests, TestPhase::Install, &dst, true)?);
        o.artifacts = self.artifacts(Stage::RecipeTests);
        Ok(o)
    }

    /// `abra recipe lint <recipe>` at the PR head, its table read rule by rule: an unsatisfied
    /// error-severity rule fails the stage (a rung of its own: the deploy stages do not wait on
    /// it), warnings and rules abra did not check are listed, never counted as satisfied. abra
    /// needs a terminal ([CCCI] lint.py: "inappropriate ioctl for device" even with `-n`), so
    /// it runs under `script`.
    pub fn lint(&mut self) -> Result<Outcome> {
        if let Some(why) = self.run.ci.skip.get("lint") {
            return Ok(Outcome::skipped(Skip::Declared, why.clone()));
        }
        self.checkout(&self.run.sha.clone())?;
        let abra = self.abra();
        let line = format!(
            "'{}' recipe lint -n {}",
            abra.exe.display().to_string().replace('\'', r"'\''"),
            self.run.recipe
        );
        let cmd = abra
            .cmd_of("script", &["-qec", &line, "/dev/null"])
            .timeout(LINT_TIMEOUT)
            .capture();
        let out = process::run(cmd, &self.redactor)?;
        let text = self
            .redactor
            .redact_str(&String::from_utf8_lossy(&out.stdout).replace('\r', ""));
        for l in text.lines() {
            self.say(l);
        }
        let artifacts = results_dir(&self.cfg, &self.run.id).join("artifacts/lint");
        std::fs::create_dir_all(&artifacts)?;
        std::fs::write(artifacts.join("lint.txt"), &text)?;
        let last = text
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim()
            .to_owned();
        let mut o = Outcome::passed();
        o.artifacts = vec!["artifacts/lint/lint.txt".into()];
        if !out.success() {
            // The one FATA that is the recipe's: its configuration does not validate.
            if let Some(fata) = text
                .lines()
                .find(|l| l.contains("unable to validate recipe"))
            {
                o.status = Status::Failed;
                o.reason = format!("abra recipe lint: {}", fata.trim());
                return Ok(o);
            }
            return Ok(Outcome {
                artifacts: o.artifacts,
                ..Outcome::error(format!(
                    "abra recipe lint could not lint (exit {}): {last}",
                    out.code.map_or("signal".into(), |c| c.to_string())
                ))
            });
        }
        let rules = lint::parse(&text);
        if rules.is_empty() {
            return Ok(Outcome {
                artifacts: o.artifacts,
                ..Outcome::error(format!(
                    "abra recipe lint printed no rule table (last line: {last})"
                ))
            });
        }
        for r in &rules {
            let status = match r.held {
                lint::Held::Satisfied => CheckStatus::Passed,
                lint::Held::Unsatisfied => CheckStatus::Failed,
                lint::Held::Skipped => CheckStatus::Skipped,
                lint::Held::Unknown => CheckStatus::Unknown,
            };
            let mut detail = format!("{} ({})", r.description, r.severity);
            if r.held == lint::Held::Unsatisfied && !r.resolve.is_empty() {
                detail.push_str(&format!(": {}", r.resolve));
            }
            o.checks.push(Check {
                name: r.reference.clone(),
                status,
                detail,
            });
        }
        let failing: Vec<String> = rules
            .iter()
            .filter(|r| r.fails())
            .map(|r| format!("{} {}", r.reference, r.description))
            .collect();
        if !failing.is_empty() {
            o.status = Status::Failed;
            o.reason = format!(
                "abra recipe lint: error rules not satisfied: {}",
                failing.join("; ")
            );
        }
        Ok(o)
    }

    /// Removes the app and the run's private state; idempotent.
    pub fn teardown(&mut self) -> Result<Outcome> {
        self.forget_snapshots()?;
        let d = self.run.domain.clone();
        self.abra().remove_app(&d, &self.redactor)?;
        std::fs::remove_dir_all(self.dir.join("abra")).or_else(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Ok(())
            } else {
                Err(e)
            }
        })?;
        Ok(Outcome::passed())
    }

    /// The run's directory goes last, after the summary is written.
    pub fn forget(self) -> Result<()> {
        let dir = self.dir.clone();
        drop(self);
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))
    }
}

fn copy_tree(src: &Path, dst: &Path) -> Result<()> {
    std::fs::create_dir_all(dst)?;
    for e in std::fs::read_dir(src)? {
        let e = e?;
        let t = e.file_type()?;
        let to = dst.join(e.file_name());
        if t.is_dir() {
            copy_tree(&e.path(), &to)?;
        } else if t.is_file() {
            std::fs::copy(e.path(), &to)?;
        }
    }
    Ok(())
}

/// Semver of a release tag `MAJOR.MINOR.PATCH+upstream`; `None` for other tags.
pub fn release_key(tag: &str) -> Option<(u64, u64, u64)> {
    let core = tag.split('+').next()?;
    let mut p = core.split('.');
    let v = (
        p.next()?.parse().ok()?,
        p.next()?.parse().ok()?,
        p.next()?.parse().ok()?,
    );
    p.next().is_none().then_some(v)
}

/// `prepare`, once the params are valid ([`validate`]) and the janitor has reaped: create
/// the run, fetch the recipe at the PR head, decide the upgrade base. Returns the opened run.
pub fn prepare(cfg: Config, p: &RunParams, run_id: &str, build: i64) -> Result<Ctx> {
    let dir = rundir::dir(&cfg.state_dir, run_id);
    if dir.exists() {
        bail!("run {run_id} already exists at {}", dir.display());
    }
    process::mark_run(&dir);
    rundir::create(&dir)?;
    // The summary first: whatever stops prepare from here on is recorded in it.
    let results = results_dir(&cfg, run_id);
    std::fs::create_dir_all(&results)?;
    Summary {
        schema: SCHEMA,
        build,
        recipe: p.recipe.clone(),
        sha: p.sha.clone(),
        pr: p.pr,
        src: p.src.clone(),
        domain: String::new(),
        version: String::new(),
        upgrade_base: String::new(),
        started: now(),
        finished: 0,
        stages: Vec::new(),
        notes: Vec::new(),
        images: Vec::new(),
        // The step's own environment, as Drone's runner sets it.
        ccci_commit: std::env::var("DRONE_COMMIT_SHA").unwrap_or_default(),
    }
    .save(&results.join("summary.json"))?;
    let started = std::time::Instant::now();
    prepare_run(cfg, p, run_id, build, &dir).inspect_err(|e| {
        // Best effort: the step's verdict line says the same.
        let path = results.join("summary.json");
        if let Ok(mut s) = Summary::load(&path) {
            let o = Outcome::error(format!("{e:#}"));
            s.set_stage(o.result(
                Stage::Prepare,
                s.started,
                started.elapsed(),
                &Redactor::new([]),
            ));
            let _ = s.save(&path);
        }
    })
}

/// What prepare does once the run's directory and summary exist.
fn prepare_run(cfg: Config, p: &RunParams, run_id: &str, build: i64, dir: &Path) -> Result<Ctx> {
    let servers = cfg.abra_dir.join("servers");
    if !servers.join(&cfg.server).is_dir() {
        bail!(
            "abra server {} is not set up: {} is missing (run `abra server add` on the host)",
            cfg.server,
            servers.join(&cfg.server).display()
        );
    }
    std::os::unix::fs::symlink(&servers, dir.join("abra/servers"))
        .context("linking the host's abra servers into the run")?;
    let ci = CiSettings::load(&cfg.tests_dir.join(&p.recipe))?;
    let mut notes = Vec::new();
    if let Some(t) = ci
        .deploy_timeout_secs
        .filter(|t| *t > cfg.deploy_timeout_secs)
    {
        notes.push(format!(
            "ci.json deploy_timeout_secs {t} is above this host's cap: each deploy waits at most {} s",
            cfg.deploy_timeout_secs
        ));
    }
    if !notes.is_empty() {
        let path = results_dir(&cfg, run_id).join("summary.json");
        let mut s = Summary::load(&path)?;
        for n in &notes {
            say(&Redactor::new([]), &format!("WARN {n}"));
        }
        s.notes = notes;
        s.save(&path)?;
    }
    let run = Run {
        id: run_id.into(),
        build,
        recipe: p.recipe.clone(),
        sha: p.sha.clone(),
        pr: p.pr,
        src: p.src.clone(),
        domain: String::new(),
        version: String::new(),
        upgrade_base: None,
        upgrade_skip: String::new(),
        ci,
        created: now(),
    };
    run.save(dir)?;
    let mut ctx = Ctx::open(cfg, run_id)?;
    ctx.fetch()?;
    Ok(ctx)
}

impl Ctx {
    fn fetch(&mut self) -> Result<()> {
        let recipe = self.run.recipe.clone();
        self.abra()
            .ok(&["recipe", "fetch", &recipe], &self.redactor)?;
        let sha = self.run.sha.clone();
        let have = |c: &Ctx| {
            c.git(&["cat-file", "-e", &format!("{sha}^{{commit}}")])
                .is_ok()
        };
        if !have(self) {
            let src = self.run.src.clone();
            self.git(&[
                "fetch",
                "--quiet",
                "--no-tags",
                &src,
                "+refs/heads/*:refs/remotes/pr/*",
            ])?;
            if !have(self) {
                let pull = format!("+refs/pull/{}/head:refs/remotes/pr/pull", self.run.pr);
                let _ = self.git(&["fetch", "--quiet", "--no-tags", &src, &pull]);
            }
            if !have(self) {
                bail!("parameter REF: commit {sha} is not in {src}");
            }
        }
        self.checkout(&sha)?;
        // Release tags reachable from the head, newest first.
        let tags = self.git(&["tag", "--merged", &sha])?;
        let mut releases: Vec<String> = String::from_utf8_lossy(&tags.stdout)
            .lines()
            .filter(|t| release_key(t).is_some())
            .map(str::to_owned)
            .collect();
        releases.sort_by_key(|t| std::cmp::Reverse(release_key(t)));
        let tagged_here: Vec<String> =
            String::from_utf8_lossy(&self.git(&["tag", "--points-at", &sha])?.stdout)
                .lines()
                .map(str::to_owned)
                .collect();
        self.run.version = releases.first().cloned().unwrap_or_default();
        let previous = releases.iter().find(|t| !tagged_here.contains(t)).cloned();
        match (&self.run.ci.upgrade_base, previous) {
            (Some(pin), _) => {
                if !releases.contains(pin) {
                    bail!(
                        "ci.json upgrade_base {pin} is not a release of {recipe} before {}",
                        &sha[..10]
                    );
                }
                self.run.upgrade_base = Some(pin.clone());
            }
            (None, Some(prev)) => self.run.upgrade_base = Some(prev),
            (None, None) => {
                self.run.upgrade_skip =
                    format!("{recipe} has no earlier published release to upgrade from");
            }
        }
        let sample = self.git(&["show", &format!("{sha}:.env.sample")])?;
        let longest = abra::secrets_of(&String::from_utf8_lossy(&sample.stdout))
            .iter()
            // A bumped version (v10) may be longer than the sample's.
            .map(|(n, _)| n.len() + "_v99".len())
            .max()
            .unwrap_or(0);
        self.run.domain = app_domain(&recipe, &self.run.id, &self.cfg.base_domain, longest)?;
        let mut values = BTreeMap::new();
        for name in &self.run.ci.values {
            values.insert(name.clone(), rundir::random_token(32)?);
        }
        rundir::save_values(&self.dir, &values)?;
        self.redactor = Redactor::new(values.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        self.run.save(&self.dir)?;
        let path = self.summary_path();
        let mut s = Summary::load(&path)?;
        s.domain = self.run.domain.clone();
        s.version = self.run.version.clone();
        s.upgrade_base = self.run.upgrade_base.clone().unwrap_or_default();
        s.save(&path)?;
        self.say(&format!(
            "run {}: {recipe} at {} (version {}), app {}, upgrade from {}",
            self.run.id,
            &sha[..10],
            if self.run.version.is_empty() {
                "unreleased"
            } else {
                &self.run.version
            },
            self.run.domain,
            self.run.upgrade_base.as_deref().unwrap_or("— (skipped)")
        ));
        Ok(())
    }
}

/// Runs one stage of an opened run and records it; on abort, tears the run down.
pub fn run_stage(ctx: &mut Ctx, stage: Stage) -> Outcome {
    let started = now();
    let t = Instant::now();
    process::OUTSIDE_MS.store(0, std::sync::atomic::Ordering::Relaxed);
    let _ = ctx.record(
        stage,
        started,
        Duration::ZERO,
        &Outcome {
            status: Status::Running,
            ..Outcome::passed()
        },
    );
    if stage != Stage::Teardown {
        let left = ctx.run.created + ctx.cfg.run_deadline_secs as i64 - now();
        if left <= 0 {
            let o = Outcome::error(format!(
                "deadline: the run passed its {} deadline before {stage} could start",
                minutes(ctx.cfg.run_deadline_secs)
            ));
            ctx.say(&format!("stage {stage}: error — {}", o.reason));
            let _ = ctx.record(stage, started, t.elapsed(), &o);
            return o;
        }
        abort::set_deadline(Instant::now() + Duration::from_secs(left as u64));
    }
    let result = match stage {
        // prepare runs before a run exists (`prepare`), never through here.
        Stage::Prepare => Err(anyhow::anyhow!("prepare is not a stage of an opened run")),
        Stage::Install => ctx.install(),
        Stage::Upgrade => ctx.upgrade(),
        Stage::Backup => ctx.backup(),
        Stage::RecipeTests => ctx.recipe_tests(),
        Stage::Lint => ctx.lint(),
        Stage::Teardown => ctx.teardown(),
    };
    let mut o = match result {
        _ if abort::deadline_passed() => Outcome::error(format!(
            "deadline: the run's {} deadline passed during {stage}; what was running was stopped and the app torn down",
            minutes(ctx.cfg.run_deadline_secs)
        )),
        Ok(o) => o,
        Err(e) if e.downcast_ref::<RecipeFailed>().is_some() => Outcome {
            status: Status::Failed,
            reason: format!("{e}"),
            ..Outcome::passed()
        },
        Err(e) => Outcome::error(format!("{e:#}")),
    };
    // The app is still there: what went wrong with it is kept before anything tears it down.
    let red = matches!(o.status, Status::Failed | Status::Error);
    // Lint reads the checkout, not the app: the app has nothing to say about it.
    if red
        && !matches!(stage, Stage::Teardown | Stage::Lint)
        && abort::aborted().is_none()
        && ctx.save_diagnostics(stage, &o)
    {
        o.diagnostics = true;
        for a in ctx.artifacts(stage) {
            if !o.artifacts.contains(&a) {
                o.artifacts.push(a);
            }
        }
    }
    let took = t.elapsed();
    let outside = process::OUTSIDE_MS.load(std::sync::atomic::Ordering::Relaxed);
    let line = format!(
        "stage {stage}: {}{}{} (took {} ms, stage-runner's own share {} ms)",
        o.status.as_str(),
        if o.reason.is_empty() { "" } else { " — " },
        o.reason,
        took.as_millis(),
        (took.as_millis() as u64).saturating_sub(outside)
    );
    ctx.say(&line);
    if let Err(e) = ctx.record(stage, started, t.elapsed(), &o) {
        ctx.say(&format!(
            "ERROR stage-runner: writing the summary failed: {e:#}"
        ));
    }
    if let Some(why) = abort::aborted() {
        ctx.say(&format!("aborting ({why}): tearing the run down"));
        process::kill_all_children();
        abort_teardown(ctx);
    }
    o
}

fn minutes(secs: u64) -> String {
    match secs {
        s if s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

/// Best effort, after an abort: the janitor finishes whatever this cannot.
fn abort_teardown(ctx: &mut Ctx) {
    // New children may run now: teardown must not be stopped by the abort it serves.
    crate::abort::clear_for_teardown();
    let t = Instant::now();
    let o = match ctx.teardown() {
        Ok(o) => o,
        Err(e) => Outcome::error(format!("teardown after abort: {e:#}")),
    };
    let _ = ctx.record(Stage::Teardown, now(), t.elapsed(), &o);
}

#[cfg(test)]
mod tests {
    use super::src_allowed;

    #[test]
    fn a_source_is_allowed_by_url_parts_not_by_text() {
        for allowed in ["https://git.example.org", "https://git.example.org/"] {
            assert!(src_allowed(
                "https://git.example.org/bob/custom-html.git",
                allowed
            ));
            assert!(src_allowed("HTTPS://Git.Example.org/bob/x", allowed));
            for bad in [
                "https://git.example.org.evil.net/bob/x.git",
                "https://git.example.org@evil.net/bob/x.git",
                "https://user:pw@git.example.org/bob/x.git",
                "https://git.example.org:8443/bob/x.git",
                "http://git.example.org/bob/x.git",
                "https://git.example.org/bob/../../x",
                "https://git.example.org/bob/x?upload-pack=1",
                "https://git.example.org/bob/x#frag",
                "https://git.example.org/bob x",
                "https://git.example.org",
                "git.example.org/bob/x",
                "ext::sh -c touch% /tmp/pwned",
            ] {
                assert!(!src_allowed(bad, allowed), "{bad} under {allowed}");
            }
        }
        let forge = "file:///tmp/forge/";
        assert!(src_allowed("file:///tmp/forge/custom-html", forge));
        assert!(!src_allowed("file:///tmp/forger/custom-html", forge));
        assert!(!src_allowed("file:///tmp/forge", forge));
        assert!(src_allowed(
            "https://git.example.org/org/repo",
            "https://git.example.org/org"
        ));
        assert!(!src_allowed(
            "https://git.example.org/organisation/repo",
            "https://git.example.org/org"
        ));
    }
}
