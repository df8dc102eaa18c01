//! The abra commands cc-ci uses, run for one app with the run's `ABRA_DIR`. Secret values
//! never go on a command line: they are inserted from files, and generated ones are read
//! from abra's machine output, which is never printed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use crate::process::{self, Cmd, Output};
use crate::redact::Redactor;

pub struct Abra {
    pub exe: PathBuf,
    pub abra_dir: PathBuf,
    pub env: Vec<(String, String)>,
    pub server: String,
    pub timeout: Duration,
}

/// abra is flaky right after an undeploy (volumes still in use for a moment): bounded retries.
const VOLUME_RETRIES: u32 = 10;

impl Abra {
    fn cmd(&self, args: &[&str]) -> Cmd {
        self.cmd_of(&self.exe.display().to_string(), args)
    }

    /// Another program with abra's environment (`script`, which gives abra a terminal).
    pub fn cmd_of(&self, program: &str, args: &[&str]) -> Cmd {
        Cmd::new(program, args)
            .env("ABRA_DIR", self.abra_dir.display().to_string())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .timeout(self.timeout)
    }

    /// Runs and requires exit 0.
    pub fn ok(&self, args: &[&str], r: &Redactor) -> Result<Output> {
        self.require(self.cmd(args), args, r)
    }

    /// [`Abra::ok`], working in `dir` (where `backup download` writes).
    pub fn ok_in(&self, dir: &Path, args: &[&str], r: &Redactor) -> Result<Output> {
        self.require(self.cmd(args).cwd(dir), args, r)
    }

    fn require(&self, cmd: Cmd, args: &[&str], r: &Redactor) -> Result<Output> {
        let out = process::run(cmd, r)?;
        if !out.success() {
            let said = match out.last_line.as_str() {
                "" => String::new(),
                line => format!(": {line}"),
            };
            bail!(
                "`abra {}` failed (exit {}){said}",
                args.join(" "),
                out.code.map_or("signal".into(), |c| c.to_string())
            );
        }
        Ok(out)
    }

    pub fn try_run(&self, args: &[&str], r: &Redactor) -> Result<Output> {
        process::run(self.cmd(args), r)
    }

    /// Like [`Abra::try_run`], keeping stdout (unprinted) for the caller to read.
    pub fn try_run_captured(&self, args: &[&str], r: &Redactor) -> Result<Output> {
        process::run(self.cmd(args).capture(), r)
    }

    pub fn env_file(&self, domain: &str) -> PathBuf {
        self.abra_dir
            .join("servers")
            .join(&self.server)
            .join(format!("{domain}.env"))
    }

    pub fn recipe_dir(&self, recipe: &str) -> PathBuf {
        self.abra_dir.join("recipes").join(recipe)
    }

    /// `abra app secret generate <domain> <name> <version> -m`: returns the value, which is
    /// added to the redactor before anything else is printed.
    pub fn generate_secret(
        &self,
        domain: &str,
        name: &str,
        version: &str,
        r: &mut Redactor,
    ) -> Result<String> {
        let out = process::run(
            self.cmd(&["app", "secret", "generate", domain, name, version, "-m"])
                .capture(),
            r,
        )?;
        if !out.success() {
            bail!(
                "`abra app secret generate {domain} {name} {version}` failed: {}",
                out.last_line
            );
        }
        #[derive(Deserialize)]
        struct Generated {
            name: String,
            value: String,
        }
        let list: Vec<Generated> = serde_json::from_slice(&out.stdout)
            .context("reading abra's generated secrets (machine output)")?;
        let g = list
            .into_iter()
            .find(|g| g.name == name)
            .with_context(|| format!("abra generated no value for {name}"))?;
        r.add(name, &g.value);
        Ok(g.value)
    }

    /// Stops the app and removes its volumes, secrets and `.env`; every step tolerates
    /// "already gone" so teardown can run any number of times.
    pub fn remove_app(&self, domain: &str, r: &Redactor) -> Result<()> {
        if !self.env_file(domain).exists() {
            return Ok(());
        }
        // Undeploy fails when not deployed: that is fine here.
        let _ = self.try_run(&["app", "undeploy", domain], r)?;
        let mut removed = false;
        for attempt in 0..VOLUME_RETRIES {
            let out = self.try_run(&["app", "volume", "remove", domain, "--force"], r)?;
            if out.success() {
                removed = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(500 * u64::from(attempt + 1)));
        }
        if !removed {
            bail!("volumes of {domain} could not be removed after {VOLUME_RETRIES} tries");
        }
        let _ = self.try_run(&["app", "secret", "remove", domain, "--all"], r)?;
        std::fs::remove_file(self.env_file(domain))
            .or_else(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    Ok(())
                } else {
                    Err(e)
                }
            })
            .with_context(|| format!("removing {}", self.env_file(domain).display()))
    }
}

/// Sets `KEY=value` lines in an app's `.env`, replacing existing (also commented-out) ones.
pub fn set_env(path: &Path, vars: &[(String, String)]) -> Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    for (k, v) in vars {
        let line = format!("{k}={v}");
        let pos = lines.iter().position(|l| {
            let l = l.trim_start().trim_start_matches('#').trim_start();
            l.strip_prefix(k.as_str())
                .is_some_and(|r| r.starts_with('='))
        });
        match pos {
            Some(i) => lines[i] = line,
            None => lines.push(line),
        }
    }
    let mut out = lines.join("\n");
    out.push('\n');
    std::fs::write(path, out).with_context(|| format!("writing {}", path.display()))
}

/// The app's compose files, as abra reads `COMPOSE_FILE` from its `.env`: the last active
/// line wins, and a line may extend the one before (`COMPOSE_FILE="$COMPOSE_FILE:x.yml"`).
pub fn compose_files(env_text: &str) -> Vec<String> {
    let mut value = String::from("compose.yml");
    for line in env_text.lines() {
        let l = line.trim_start();
        let l = l.strip_prefix("export ").unwrap_or(l);
        let Some(v) = l.strip_prefix("COMPOSE_FILE=") else {
            continue;
        };
        let v = v
            .split(" #")
            .next()
            .unwrap_or("")
            .trim()
            .trim_matches(['"', '\'']);
        value = v
            .replace("${COMPOSE_FILE}", &value)
            .replace("$COMPOSE_FILE", &value);
    }
    value
        .split(':')
        .filter(|f| !f.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Replaces every active `COMPOSE_FILE` line of an app's `.env` by one naming `files`.
pub fn set_compose_files(path: &Path, files: &[String]) -> Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out: String = text
        .lines()
        .filter(|l| {
            let l = l.trim_start();
            !l.strip_prefix("export ")
                .unwrap_or(l)
                .starts_with("COMPOSE_FILE=")
        })
        .map(|l| format!("{l}\n"))
        .collect();
    out.push_str(&format!("COMPOSE_FILE=\"{}\"\n", files.join(":")));
    std::fs::write(path, out).with_context(|| format!("writing {}", path.display()))
}

/// `SECRET_<NAME>_VERSION=vN` entries of an env file (`.env.sample` or an app's `.env`).
pub fn secrets_of(env_text: &str) -> Vec<(String, String)> {
    env_text
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let (k, v) = l.split_once('=')?;
            let name = k.strip_prefix("SECRET_")?.strip_suffix("_VERSION")?;
            let version = v.split_whitespace().next().unwrap_or("v1");
            Some((name.to_lowercase(), version.to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_read_with_modifiers() {
        let env = "TYPE=x\nSECRET_DB_PASSWORD_VERSION=v1 # length=32\n#SECRET_OFF_VERSION=v1\nSECRET_API_KEY_VERSION=v2\n";
        assert_eq!(
            secrets_of(env),
            vec![
                ("db_password".to_owned(), "v1".to_owned()),
                ("api_key".to_owned(), "v2".to_owned())
            ]
        );
    }

    #[test]
    fn compose_files_follow_abra_s_reading_of_the_env() {
        assert_eq!(compose_files("TYPE=x\n"), ["compose.yml"]);
        let env = "#COMPOSE_FILE=\"compose.yml:compose.smtp.yml\"\nCOMPOSE_FILE=\"compose.yml\"\nCOMPOSE_FILE=\"$COMPOSE_FILE:compose.postgres.yml\" # the db\n";
        assert_eq!(compose_files(env), ["compose.yml", "compose.postgres.yml"]);
        let p = std::env::temp_dir().join(format!("sr-compose-{}", std::process::id()));
        std::fs::write(&p, env).unwrap();
        let mut files = compose_files(env);
        files.push("../../overlays/ci.yml".into());
        set_compose_files(&p, &files).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(
            text,
            "#COMPOSE_FILE=\"compose.yml:compose.smtp.yml\"\nCOMPOSE_FILE=\"compose.yml:compose.postgres.yml:../../overlays/ci.yml\"\n"
        );
        assert_eq!(compose_files(&text), files);
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn set_env_replaces_commented_and_appends() {
        let p = std::env::temp_dir().join(format!("sr-env-{}", std::process::id()));
        std::fs::write(&p, "A=1\n#TIMEOUT=120\nLETS_ENCRYPT_ENV=production\n").unwrap();
        set_env(
            &p,
            &[
                ("TIMEOUT".into(), "900".into()),
                ("LETS_ENCRYPT_ENV".into(), "".into()),
                ("CCCI_RUN".into(), "7".into()),
            ],
        )
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "A=1\nTIMEOUT=900\nLETS_ENCRYPT_ENV=\nCCCI_RUN=7\n"
        );
        std::fs::remove_file(&p).unwrap();
    }
}
