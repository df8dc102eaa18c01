//! The stages of a run. Each is one invocation of stage-runner and leaves the run's summary
//! updated; an aborted stage tears the run down before exiting.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use ccci::run::{app_domain, check_recipe_name, RunParams};
use ccci::summary::{Counts, Failure, Skip, StageResult, Status, Summary, SCHEMA};
use ccci::verdict::Verdict;

use crate::abort;
use crate::abra::{self, Abra};
use crate::ci::CiSettings;
use crate::config::Config;
use crate::junit;
use crate::process::{self, say, Cmd};
use crate::redact::Redactor;
use crate::rundir::{self, Lock, Run};
use crate::wait;

/// Where the run's card and the landing screenshot it shows live in its results (the card's
/// URL on the dashboard is `runs/<build>/artifacts/card.png`).
pub const CARD: &str = "artifacts/card.png";
pub const LANDING: &str = "artifacts/install/landing.png";
/// A browser start and one page: far less than this, or something hangs.
const CARD_TIMEOUT: Duration = Duration::from_secs(60);
/// Each question to the engine (diagnostics, the deployed head); a red stage's log lines per
/// service and its diagnostics' size.
const ENGINE_TIMEOUT: Duration = Duration::from_secs(30);
const DIAGNOSTICS_LOG_LINES: &str = "50";
const DIAGNOSTICS_MAX_BYTES: usize = 64 * 1024;

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

    /// What the summary records of the stage: every string redacted.
    pub fn result(
        &self,
        stage: &str,
        started: i64,
        took: Duration,
        redactor: &Redactor,
    ) -> StageResult {
        StageResult {
            name: stage.into(),
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
        }
    }

    /// The line the bridge reads from the step's log: the summary's record of the stage (so
    /// redacted before it is cut).
    pub fn verdict(&self, stage: &str, redactor: &Redactor) -> Verdict {
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
    if !cfg.tests_dir.join(&p.recipe).is_dir() {
        bail!(
            "parameter RECIPE: {} is not enrolled (no {}/{}/)",
            p.recipe,
            cfg.tests_dir.display(),
            p.recipe
        );
    }
    let src_ok = !p.src.contains("..")
        && !p
            .src
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        && cfg
            .allowed_src
            .iter()
            .any(|prefix| p.src.starts_with(prefix.as_str()));
    if !src_ok {
        bail!(
            "parameter SRC: {:?} is not on an allowed host (allowed: {})",
            p.src.chars().take(200).collect::<String>(),
            cfg.allowed_src.join(", ")
        );
    }
    Ok(())
}

impl Ctx {
    /// Opens an existing run (every stage after prepare).
    pub fn open(cfg: Config, run_id: &str) -> Result<Ctx> {
        let dir = rundir::dir(&cfg.state_dir, run_id);
        let run = Run::load(&dir).context("the run has no state: did prepare run?")?;
        let lock = Lock::try_take(&dir)?
            .with_context(|| format!("run {run_id} is busy in another stage-runner"))?;
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

    pub fn record(&self, stage: &str, started: i64, took: Duration, o: &Outcome) -> Result<()> {
        let path = self.summary_path();
        let mut s = Summary::load(&path)?;
        s.set_stage(o.result(stage, started, took, &self.redactor));
        if stage == "teardown" {
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
    fn deploy_fresh(&mut self, version: Option<&str>) -> Result<()> {
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
        let mut vars: Vec<(String, String)> = self
            .run
            .ci
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        // The janitor's proof that this app is a CI app, and whose.
        vars.push(("CCCI_RUN".into(), self.run.id.clone()));
        let env_file = abra.env_file(&domain);
        abra::set_env(&env_file, &vars)?;
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
        match version {
            Some(v) => self.deploy(&["app", "deploy", &domain, v])?,
            None => {
                self.deploy(&["app", "deploy", &domain, "--chaos"])?;
                self.check_deployed_head()?;
            }
        };
        self.wait_up()
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

    fn wait_up(&self) -> Result<()> {
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
        wait::until_up(
            &url,
            self.cfg.resolve.as_deref(),
            self.cfg.tls_verify,
            limit,
            &self.redactor,
        )?;
        Ok(())
    }

    /// A Python process of the harness, with the run described in the CCCI_* environment.
    fn harness(&self, stage: &str, phase: &str, args: &[&str]) -> Cmd {
        let artifacts = results_dir(&self.cfg, &self.run.id)
            .join("artifacts")
            .join(stage);
        Cmd::new(&self.cfg.python, args)
            .timeout(self.cfg.command_timeout())
            .env("PYTHONPATH", self.cfg.tests_dir.display().to_string())
            .env("CCCI_RECIPE", &self.run.recipe)
            .env("CCCI_DOMAIN", &self.run.domain)
            .env("CCCI_BASE_URL", self.base_url())
            .env("CCCI_STAGE", stage)
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
        stage: &str,
        phase: &'static str,
        tests: &Path,
        own_tests: bool,
    ) -> Result<Phase> {
        let junit = self.dir.join(format!("junit-{stage}-{phase}.xml"));
        let _ = std::fs::remove_file(&junit);
        let artifacts = results_dir(&self.cfg, &self.run.id)
            .join("artifacts")
            .join(stage);
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
            args.extend(["-m", phase]);
        }
        args.extend(["-p", "ccci_harness.plugin"]);
        let mut cmd = self.harness(stage, phase, &args);
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
                name: phase,
                counts,
                failures,
                failed: false,
            }),
            Some(1) => Ok(Phase {
                name: phase,
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

    /// The files a stage's tests left in its artifacts directory, for the run page. Only plain
    /// files in the directory itself: a test that swapped the directory for a symlink, or left
    /// symlinks in it, would otherwise publish files from elsewhere on the host.
    pub fn artifacts(&self, stage: &str) -> Vec<String> {
        let dir = results_dir(&self.cfg, &self.run.id)
            .join("artifacts")
            .join(stage);
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
        self.deploy_fresh(None)?;
        self.landing_screenshot();
        let mut o = Outcome::passed();
        let suite = self.suite();
        o.merge(self.pytest("install", "install", &suite, false)?);
        o.artifacts = self.artifacts("install");
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

    /// After a deploy of the PR head: the chaos-version label abra wrote (`SmallSHA(HEAD)`,
    /// `+U` when the checkout was dirty) must be the head's, clean, on every service that
    /// carries it, and at least one must. An abra that deployed another checkout (an upgrade
    /// that silently redeployed the old head) must never pass.
    fn check_deployed_head(&self) -> Result<()> {
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
        Ok(())
    }

    /// Best effort, after a red stage and before teardown: the app's tasks with their errors
    /// and each service's last log lines, redacted, as `artifacts/<stage>/diagnostics.txt`, so
    /// a maintainer can tell why without a shell on the host. Asks the engine abra deploys to.
    pub fn save_diagnostics(&self, stage: &str, o: &Outcome) -> bool {
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
            .join(stage);
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
                "install",
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
        let cmd = self.harness("teardown", "", &args).timeout(CARD_TIMEOUT);
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
        if let Some(st) = s.stages.iter_mut().find(|st| st.name == "teardown") {
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
    fn precheck(&self, stage: &str) -> Result<Option<Outcome>> {
        if let Some(why) = self.run.ci.skip.get(stage) {
            let mut o = Outcome::skipped(Skip::Declared, why.clone());
            if let (Some(base), "upgrade") = (&self.run.upgrade_base, stage) {
                o.stale = format!(
                    "{base} is an earlier published release now: the upgrade could run (remove the skip from ci.json)"
                );
            }
            return Ok(Some(o));
        }
        let s = Summary::load(&self.summary_path())?;
        Ok(match s.stage("install").map(|st| st.status) {
            Some(Status::Passed) => None,
            Some(other) => Some(Outcome::skipped(
                Skip::Blocked,
                format!("install {}", other.as_str()),
            )),
            None => Some(Outcome::skipped(Skip::Blocked, "install did not run")),
        })
    }

    pub fn upgrade(&mut self) -> Result<Outcome> {
        if let Some(o) = self.precheck("upgrade")? {
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
        let suite = self.suite();
        let mut o = Outcome::passed();
        o.merge(self.pytest("upgrade", "pre_upgrade", &suite, false)?);
        if o.status == Status::Passed {
            self.checkout(&self.run.sha.clone())?;
            let d = self.run.domain.clone();
            self.deploy(&["app", "deploy", &d, "--force", "--chaos"])?;
            self.check_deployed_head()?;
            self.wait_up()?;
            o.merge(self.pytest("upgrade", "post_upgrade", &suite, false)?);
        }
        o.artifacts = self.artifacts("upgrade");
        Ok(o)
    }

    pub fn backup(&mut self) -> Result<Outcome> {
        if let Some(o) = self.precheck("backup")? {
            return Ok(o);
        }
        let d = self.run.domain.clone();
        let suite = self.suite();
        let mut o = Outcome::passed();
        o.merge(self.pytest("backup", "pre_backup", &suite, false)?);
        if o.status != Status::Passed {
            return Ok(o);
        }
        let abra = self.abra();
        let out = abra.try_run(&["app", "backup", "create", &d], &self.redactor)?;
        if !out.success() {
            o.status = Status::Failed;
            o.reason = "`abra app backup create` failed: no backup was made".into();
            return Ok(o);
        }
        o.merge(self.pytest("backup", "after_backup", &suite, false)?);
        if o.status != Status::Passed {
            return Ok(o);
        }
        let out = abra.try_run(&["app", "restore", &d], &self.redactor)?;
        if !out.success() {
            o.status = Status::Failed;
            o.reason = "`abra app restore` failed".into();
            return Ok(o);
        }
        self.wait_up()?;
        o.merge(self.pytest("backup", "after_restore", &suite, false)?);
        o.artifacts = self.artifacts("backup");
        Ok(o)
    }

    pub fn recipe_tests(&mut self) -> Result<Outcome> {
        if let Some(o) = self.precheck("recipe-tests")? {
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
        o.merge(self.pytest("recipe-tests", "install", &dst, true)?);
        o.artifacts = self.artifacts("recipe-tests");
        Ok(o)
    }

    /// Removes the app and the run's private state; idempotent.
    pub fn teardown(&mut self) -> Result<Outcome> {
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

/// `prepare`: validate, reap, create the run, fetch the recipe at the PR head, decide the
/// upgrade base. Returns the opened run.
pub fn prepare(cfg: Config, p: &RunParams, run_id: &str, build: i64) -> Result<Ctx> {
    validate(&cfg, p)?;
    crate::janitor::sweep(&cfg)?;
    let dir = rundir::dir(&cfg.state_dir, run_id);
    if dir.exists() {
        bail!("run {run_id} already exists at {}", dir.display());
    }
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
    }
    .save(&results.join("summary.json"))?;
    let started = std::time::Instant::now();
    prepare_run(cfg, p, run_id, build, &dir).inspect_err(|e| {
        // Best effort: the step's verdict line says the same.
        let path = results.join("summary.json");
        if let Ok(mut s) = Summary::load(&path) {
            let o = Outcome::error(format!("{e:#}"));
            s.set_stage(o.result("prepare", s.started, started.elapsed(), &Redactor::new([])));
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
pub fn run_stage(ctx: &mut Ctx, stage: &str) -> Outcome {
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
    let result = match stage {
        "install" => ctx.install(),
        "upgrade" => ctx.upgrade(),
        "backup" => ctx.backup(),
        "recipe-tests" => ctx.recipe_tests(),
        "teardown" => ctx.teardown(),
        _ => Ok(Outcome::passed()),
    };
    let mut o = match result {
        Ok(o) => o,
        Err(e) if e.downcast_ref::<RecipeFailed>().is_some() => Outcome {
            status: Status::Failed,
            reason: format!("{e}"),
            ..Outcome::passed()
        },
        Err(e) => Outcome {
            status: Status::Error,
            reason: format!("{e:#}"),
            ..Outcome::passed()
        },
    };
    // The app is still there: what went wrong with it is kept before anything tears it down.
    let red = matches!(o.status, Status::Failed | Status::Error);
    if red && stage != "teardown" && abort::aborted().is_none() && ctx.save_diagnostics(stage, &o) {
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

/// Best effort, after an abort: the janitor finishes whatever this cannot.
fn abort_teardown(ctx: &mut Ctx) {
    // New children may run now: teardown must not be stopped by the abort it serves.
    crate::abort::clear_for_teardown();
    let t = Instant::now();
    let o = match ctx.teardown() {
        Ok(o) => o,
        Err(e) => Outcome {
            status: Status::Error,
            reason: format!("teardown after abort: {e:#}"),
            ..Outcome::passed()
        },
    };
    let _ = ctx.record("teardown", now(), t.elapsed(), &o);
}
