//! A throwaway cc-ci host for stage-runner's tests: the stand-in abra with a private catalogue,
//! deploying to the real engine behind the real Traefik under a base domain of the world's
//! own, a forge holding a PR commit, and the real test tree.

#![allow(dead_code)] // each test file uses a different part of it

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use standins::ground::Ground;

pub const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// The workspace's debug bin dir, with the stand-in binaries built.
pub fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = PathBuf::from(env!("CARGO_BIN_EXE_cc-ci-stage-runner"));
        let dir = exe.parent().unwrap().to_path_buf();
        if !dir.join("abra").exists() {
            let mut args = vec!["build", "-q", "-p", "cc-ci-standins", "--bins"];
            if dir.ends_with("release") {
                args.push("--release");
            }
            let ok = Command::new(env!("CARGO"))
                .args(&args)
                .current_dir(REPO)
                .status()
                .unwrap();
            assert!(ok.success(), "building the stand-ins");
        }
        dir
    })
}

/// The stand-in abra's git (fixed identity, no user config needed), output trimmed.
pub fn git(dir: &Path, args: &[&str]) -> String {
    standins::abra::recipe::git(dir, args)
        .unwrap()
        .trim()
        .to_owned()
}

pub struct World {
    pub dir: PathBuf,
    /// `STANDIN_ABRA_FAULT_FILE`: fault knobs a test flips between stages.
    pub faults: PathBuf,
    pub host_abra: PathBuf,
    pub catalogue: PathBuf,
    pub forge: PathBuf,
    pub tests_dir: PathBuf,
    pub config: PathBuf,
    pub ground: Ground,
    /// The recipe the PR is for.
    pub recipe: String,
    /// Apps are `<recipe>-<run>.<base_domain>`.
    pub base_domain: String,
    /// The PR head: one commit on top of the newest release.
    pub sha: String,
}

pub struct Stage {
    pub code: i32,
    pub stdout: String,
}

impl World {
    pub fn new(name: &str) -> World {
        Self::with_tests(name, &Path::new(REPO).join("tests"))
    }

    pub fn with_tests(name: &str, tests_dir: &Path) -> World {
        Self::build(name, "custom-html", tests_dir)
    }

    /// A PR to another stand-in recipe than custom-html.
    pub fn of_recipe(name: &str, recipe: &str) -> World {
        Self::build(name, recipe, &Path::new(REPO).join("tests"))
    }

    fn build(name: &str, recipe: &str, tests_dir: &Path) -> World {
        let dir = std::env::temp_dir().join(format!("sr-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let ground = Ground::from_env().unwrap();
        let standins::abra::catalogue::Host {
            abra_dir: host_abra,
            catalogue,
        } = standins::abra::catalogue::host(&dir, &bin_dir().join("abra")).unwrap();
        // The forge: a fork of the recipe with the PR's commit on top.
        let forge = dir.join("forge");
        std::fs::create_dir_all(&forge).unwrap();
        git(
            &forge,
            &[
                "clone",
                "-q",
                catalogue.join(recipe).to_str().unwrap(),
                recipe,
            ],
        );
        let repo = forge.join(recipe);
        std::fs::write(
            repo.join("README.md"),
            format!("# {recipe}\n\nA PR's change.\n"),
        )
        .unwrap();
        git(&repo, &["commit", "-qam", "PR: reword README"]);
        let sha = git(&repo, &["rev-parse", "HEAD"]);
        let config = dir.join("stage-runner.json");
        let w = World {
            faults: dir.join("faults"),
            base_domain: ground.world_domain(),
            dir,
            host_abra,
            catalogue,
            forge,
            tests_dir: tests_dir.to_owned(),
            config,
            ground,
            recipe: recipe.to_owned(),
            sha,
        };
        w.write_config(&[]);
        w
    }

    /// (Re)writes the config; `extra` overrides keys.
    pub fn write_config(&self, extra: &[(&str, serde_json::Value)]) {
        let mut cfg = serde_json::json!({
            "server": "default",
            "base_domain": self.base_domain,
            "recipes": [self.recipe],
            "state_dir": self.dir.join("state"),
            "results_dir": self.dir.join("results"),
            "tests_dir": self.tests_dir,
            "abra": bin_dir().join("abra"),
            "abra_dir": self.host_abra,
            "python": Path::new(REPO).join(".venv/bin/python"),
            "chromium": "/usr/bin/chromium",
            "resolve": self.ground.resolve(),
            "scheme": "https",
            "tls_verify": false,
            "deploy_timeout_secs": 60,
            "command_timeout_secs": 300,
            "janitor_max_age_secs": 3600,
            "allowed_src": [format!("file://{}/", self.forge.display())],
            "abra_env": {
                "DOCKER_HOST": self.ground.docker_host,
                "STANDIN_ABRA_CATALOGUE": self.catalogue,
                "STANDIN_ABRA_FAULT_FILE": self.faults,
            },
        });
        for (k, v) in extra {
            cfg[*k] = v.clone();
        }
        std::fs::write(&self.config, cfg.to_string()).unwrap();
    }

    /// Another commit on the PR: `edit` changes the recipe's files; the head moves to it.
    pub fn pr_commit(&mut self, message: &str, edit: impl FnOnce(&Path)) {
        let repo = self.forge.join(&self.recipe);
        edit(&repo);
        git(&repo, &["add", "-A"]);
        git(&repo, &["commit", "-qm", message]);
        self.sha = git(&repo, &["rev-parse", "HEAD"]);
    }

    pub fn src(&self) -> String {
        format!("file://{}/{}", self.forge.display(), self.recipe)
    }

    /// The environment the Drone exec runner gives a step of build `build`.
    pub fn params(&self, build: u32) -> Vec<(String, String)> {
        vec![
            ("DRONE_BUILD_NUMBER".into(), build.to_string()),
            ("RECIPE".into(), self.recipe.clone()),
            ("REF".into(), self.sha.clone()),
            ("PR".into(), "4".into()),
            ("SRC".into(), self.src()),
            ("COMMENT".into(), "1001".into()),
        ]
    }

    pub fn command(&self, stage: &str, env: &[(String, String)]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_cc-ci-stage-runner"));
        c.args([stage, "--config"]).arg(&self.config);
        // Only PATH and USER come from the host, as with the real exec runner.
        c.env_clear();
        for k in ["PATH", "USER"] {
            if let Ok(v) = std::env::var(k) {
                c.env(k, v);
            }
        }
        c.envs(env.iter().map(|(k, v)| (k, v)));
        c
    }

    pub fn stage(&self, stage: impl AsRef<str>, env: &[(String, String)]) -> Stage {
        let stage = stage.as_ref();
        let out: Output = self.command(stage, env).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        eprintln!("--- {stage} (exit {:?}) ---\n{stdout}", out.status.code());
        Stage {
            code: out.status.code().unwrap_or(-1),
            stdout,
        }
    }

    pub fn summary(&self, build: u32) -> ccci::summary::Summary {
        ccci::summary::Summary::load(
            &self
                .dir
                .join("results")
                .join(build.to_string())
                .join("summary.json"),
        )
        .unwrap()
    }

    /// Stacks of this world's apps still on the engine.
    pub fn stacks(&self) -> Vec<String> {
        standins::ground::leftovers(&self.base_domain)
            .into_iter()
            .filter(|l| l.starts_with("service:"))
            .collect()
    }

    /// Everything of any run still on the "host": docker objects of this world's apps
    /// (`docker` is the witness), app env files, run directories.
    pub fn leftovers(&self) -> Vec<String> {
        let mut left = standins::ground::leftovers(&self.base_domain);
        for sub in ["state/runs"] {
            if let Ok(rd) = std::fs::read_dir(self.dir.join(sub)) {
                left.extend(
                    rd.map(|e| format!("{sub}/{}", e.unwrap().file_name().to_string_lossy())),
                );
            }
        }
        if let Ok(rd) = std::fs::read_dir(self.host_abra.join("servers/default")) {
            left.extend(rd.map(|e| format!("env:{}", e.unwrap().file_name().to_string_lossy())));
        }
        left
    }

    /// One janitor pass that reaps every run older than a second (the least it takes); it
    /// must succeed.
    pub fn janitor(&self) {
        let j = self
            .command("janitor", &[])
            .args(["--janitor-max-age-secs", "1"])
            .output()
            .unwrap();
        assert!(j.status.success(), "{}", String::from_utf8_lossy(&j.stdout));
    }

    pub fn wait_until(&self, what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if f() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("timed out after {limit:?} waiting for {what}");
    }
}

impl Drop for World {
    fn drop(&mut self) {
        standins::abra::app::purge(&self.host_abra);
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A copy of the test tree (the harness and the custom-html suite) with `files` written over it.
pub fn planted_tests(name: &str, files: &[(&str, &str)]) -> std::path::PathBuf {
    let dst = std::env::temp_dir().join(format!("sr-tests-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dst);
    let src = Path::new(REPO).join("tests");
    for sub in ["ccci_harness", "custom-html"] {
        copy(&src.join(sub), &dst.join(sub));
    }
    for f in ["conftest.py", "pytest.ini"] {
        if src.join(f).exists() {
            std::fs::copy(src.join(f), dst.join(f)).unwrap();
        }
    }
    for (path, text) in files {
        std::fs::write(dst.join(path), text).unwrap();
    }
    dst
}

pub fn copy(src: &std::path::Path, dst: &std::path::Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        if e.file_name() == "__pycache__" {
            continue;
        }
        if e.file_type().unwrap().is_dir() {
            copy(&e.path(), &dst.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
        }
    }
}
