//! A world for dashboard-gen's tests: the in-process stand-in Drone running the cc-ci
//! pipeline's six steps for real, a results directory of run summaries, and the real binary.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use ccci::drone::DroneClient;
use ccci::secret::Secret;
use ccci::summary::{Counts, Failure, StageResult, Status, Summary, SCHEMA};
use standins::drone::{Commit, ConfigSource, Drone, DroneOpts, NewRepo};

pub const TOKEN: &str = "dash-bot-token";
pub const OWNER: &str = "coop-cloud";
pub const PIPELINE: &str = "cc-ci";
pub const SHA: &str = "3f2e1d0c9b8a7f6e5d4c3b2a1f0e9d8c7b6a5f4e";
pub const SHA2: &str = "0123456789abcdef0123456789abcdef01234567";
pub const WAIT: Duration = Duration::from_secs(60);
pub const GITEA: &str = "https://git.example.org";

/// The cc-ci pipeline's shape (shared with the Python page tests and the bench): `FAIL` names
/// a step that exits 1 and `GATE` a file the install step waits for, to hold a build running.
pub const PIPELINE_YAML: &str = include_str!("pipeline.yml");

pub struct World {
    pub drone: Drone,
    pub client: DroneClient,
    pub dir: PathBuf,
    pub results: PathBuf,
    pub out: PathBuf,
    pub cache: PathBuf,
    pub config: PathBuf,
    pub recipes: Vec<String>,
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_cc-ci-dashboard-gen")
}

impl World {
    pub fn new(tag: &str, recipes: &[&str], capacity: usize) -> World {
        let dir = std::env::temp_dir().join(format!(
            "dash-{tag}-{}-{}",
            std::process::id(),
            standins::runner::random_id(6)
        ));
        std::fs::create_dir_all(dir.join("runner")).unwrap();
        let drone = Drone::start(DroneOpts {
            runner_capacity: capacity,
            runner_root: Some(dir.join("runner")),
            scm_url: GITEA.into(),
            ..DroneOpts::default()
        })
        .unwrap();
        drone.create_user("ci-bot", true, Some(TOKEN)).unwrap();
        drone
            .create_user(OWNER, false, Some("owner-token"))
            .unwrap();
        drone
            .create_repo(NewRepo::new(
                OWNER,
                PIPELINE,
                ConfigSource::Inline {
                    yaml: PIPELINE_YAML.into(),
                },
            ))
            .unwrap();
        drone.set_branch(OWNER, PIPELINE, "main", SHA).unwrap();
        drone
            .add_commit(
                OWNER,
                PIPELINE,
                Commit {
                    sha: SHA.into(),
                    message: "pipeline: six steps".into(),
                    author_login: "ci-admin".into(),
                    author_name: "CI Admin".into(),
                    ..Commit::default()
                },
            )
            .unwrap();
        let client = DroneClient::new(&drone.url(), Secret::new(TOKEN), Duration::from_secs(10));
        let w = World {
            client,
            results: dir.join("results"),
            out: dir.join("out"),
            cache: dir.join("cache"),
            config: dir.join("dashboard-gen.json"),
            recipes: recipes.iter().map(|s| s.to_string()).collect(),
            dir,
            drone,
        };
        std::fs::write(w.dir.join("token"), format!("{TOKEN}\n")).unwrap();
        w.write_config(serde_json::json!({}));
        w
    }

    /// Writes the config; `extra` keys override the defaults.
    pub fn write_config(&self, extra: serde_json::Value) {
        let recipes: serde_json::Map<String, serde_json::Value> = self
            .recipes
            .iter()
            .map(|r| (r.clone(), serde_json::json!(format!("recipes/{r}"))))
            .collect();
        let mut cfg = serde_json::json!({
            "drone_url": self.drone.url(),
            "drone_token_file": self.dir.join("token"),
            "drone_repo": format!("{OWNER}/{PIPELINE}"),
            "gitea_url": GITEA,
            "recipes": recipes,
            "results_dir": self.results,
            "out_dir": self.out,
            "cache_dir": self.cache,
            "site_url": "https://ci.example.org",
            "request_timeout_secs": 5,
        });
        for (k, v) in extra.as_object().unwrap() {
            cfg[k] = v.clone();
        }
        std::fs::write(&self.config, serde_json::to_vec_pretty(&cfg).unwrap()).unwrap();
    }

    /// Starts a build of the pipeline for `recipe` at `sha` from PR `pr`; `extra` params
    /// (FAIL, GATE) steer the steps. Returns the build number.
    pub fn start(
        &self,
        recipe: &str,
        sha: &str,
        pr: i64,
        branch: Option<&str>,
        extra: &[(&str, &str)],
    ) -> i64 {
        let pr = pr.to_string();
        let src = format!("{GITEA}/recipes/{recipe}.git");
        let mut params = vec![
            ("RECIPE", recipe),
            ("REF", sha),
            ("PR", pr.as_str()),
            ("SRC", src.as_str()),
            ("COMMENT", "1"),
        ];
        params.extend_from_slice(extra);
        self.client
            .create_build(OWNER, PIPELINE, branch, &params)
            .unwrap()
            .expect("the pipeline matched")
            .number
    }

    pub fn wait(&self, n: i64) -> String {
        self.drone
            .wait_build(OWNER, PIPELINE, n, WAIT)
            .unwrap()
            .status
    }

    /// Starts and finishes a build; returns its number.
    pub fn run(&self, recipe: &str, sha: &str, pr: i64, fail: Option<&str>) -> i64 {
        let extra: Vec<(&str, &str)> = fail.map(|f| vec![("FAIL", f)]).unwrap_or_default();
        let n = self.start(recipe, sha, pr, None, &extra);
        self.wait(n);
        n
    }

    pub fn save_summary(&self, s: &Summary) {
        s.save(&Summary::path(&self.results, s.build)).unwrap();
    }

    pub fn artifact(&self, build: i64, rel: &str, bytes: &[u8]) {
        let p = self.results.join(build.to_string()).join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }

    pub fn gen(&self) -> Output {
        Command::new(bin())
            .arg("--config")
            .arg(&self.config)
            .output()
            .unwrap()
    }

    /// Generates and requires success.
    pub fn gen_ok(&self) -> Output {
        let out = self.gen();
        assert!(
            out.status.success(),
            "dashboard-gen failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    pub fn site(&self) -> PathBuf {
        self.out.join("current")
    }

    pub fn read(&self, rel: &str) -> String {
        let p = self.site().join(rel);
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
    }

    /// Drone API requests logged so far (the control surface left out).
    pub fn api_requests(&self) -> Vec<String> {
        self.drone
            .requests()
            .into_iter()
            .filter(|r| r.request.path.starts_with("/api/"))
            .map(|r| format!("{} {}", r.request.method, r.request.path))
            .collect()
    }
}

pub fn stage(name: &str, status: Status) -> StageResult {
    StageResult {
        name: name.parse().unwrap(),
        status,
        reason: String::new(),
        started: 1_700_000_000,
        duration_ms: 12_000,
        tests: Counts::default(),
        failures: vec![],
        artifacts: vec![],
        skip: None,
        stale: String::new(),
        checks: vec![],
    }
}

pub fn failure(name: &str, message: &str) -> Failure {
    Failure {
        name: name.into(),
        message: message.into(),
    }
}

/// A summary for build `n` with the given stages (prepare and teardown added as passed).
pub fn summary(n: i64, recipe: &str, sha: &str, pr: i64, stages: Vec<StageResult>) -> Summary {
    let mut s = Summary {
        schema: SCHEMA,
        build: n,
        recipe: recipe.into(),
        sha: sha.into(),
        pr,
        src: format!("{GITEA}/recipes/{recipe}.git"),
        domain: format!("{recipe}-{n}.ci.example.org"),
        version: "1.1.0+1.27.2".into(),
        upgrade_base: "1.0.0+1.25.0".into(),
        started: 1_700_000_000,
        finished: 1_700_000_300,
        stages: vec![],
        notes: vec![],
        images: vec![],
        ccci_commit: String::new(),
    };
    s.set_stage(stage("prepare", Status::Passed));
    for st in stages {
        s.set_stage(st);
    }
    s.set_stage(stage("teardown", Status::Passed));
    s
}

/// Every file under `dir`, relative.
pub fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            // Through symlinks, as a web server sees the site; a dangling one is no file.
            match std::fs::metadata(&p) {
                Ok(m) if m.is_dir() => stack.push(p),
                Ok(_) => out.push(p.strip_prefix(dir).unwrap().to_owned()),
                Err(_) => {}
            }
        }
    }
    out.sort();
    out
}

/// Every internal `href`/`src` of the site's HTML pages resolves to a file of the site, the
/// way a browser resolves it: `..` taken off the URL's path, not off a symlink's target.
pub fn assert_links_resolve(site: &Path) {
    let site = site.canonicalize().unwrap();
    for rel in files(&site) {
        if rel.extension().and_then(|e| e.to_str()) != Some("html") {
            continue;
        }
        let text = std::fs::read_to_string(site.join(&rel)).unwrap();
        let base = rel.parent().unwrap().to_owned();
        for attr in ["href=\"", "src=\""] {
            for piece in text.split(attr).skip(1) {
                let target = piece.split('"').next().unwrap();
                if target.starts_with("http://")
                    || target.starts_with("https://")
                    || target.starts_with('#')
                {
                    continue;
                }
                let target = target.split('#').next().unwrap();
                let mut url = PathBuf::new();
                for c in base.join(target).components() {
                    match c {
                        std::path::Component::ParentDir => assert!(
                            url.pop(),
                            "{} links above the site: {target}",
                            rel.display()
                        ),
                        std::path::Component::Normal(c) => url.push(c),
                        _ => {}
                    }
                }
                assert!(
                    site.join(&url).exists(),
                    "{} links to missing {target}",
                    rel.display()
                );
            }
        }
    }
}
