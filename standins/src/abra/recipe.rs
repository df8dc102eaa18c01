//! What abra reads from a recipe checkout and an app's `.env`: release tags and their order,
//! the worktree's cleanliness, `.env` lines (with `# length=N` modifiers), and the compose
//! files named by `COMPOSE_FILE`, interpolated with the app's env as `docker stack deploy` does.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use yaml_rust2::{Yaml, YamlLoader};

/// Runs git in `dir` with a fixed identity (the catalogue and tests need no user config).
pub fn git(dir: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=abra stand-in",
            "-c",
            "user.email=abra@standin.invalid",
            "-c",
            "advice.detachedHead=false",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .with_context(|| format!("running git {} in {}", args.join(" "), dir.display()))?;
    if !out.status.success() {
        bail!(
            "git {} in {} failed: {}",
            args.join(" "),
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `MAJOR.MINOR.PATCH+upstream` → the numeric triple, for ordering; other tags are not releases.
pub fn parse_version(tag: &str) -> Option<(u64, u64, u64)> {
    let core = tag.split('+').next()?;
    let mut it = core.split('.');
    let v = (
        it.next()?.parse().ok()?,
        it.next()?.parse().ok()?,
        it.next()?.parse().ok()?,
    );
    if it.next().is_some() {
        return None;
    }
    Some(v)
}

/// Release tags, oldest first.
pub fn release_tags(dir: &Path) -> Result<Vec<String>> {
    let mut tags: Vec<String> = git(dir, &["tag", "--list"])?
        .lines()
        .map(str::to_owned)
        .filter(|t| parse_version(t).is_some())
        .collect();
    tags.sort_by_key(|t| parse_version(t));
    Ok(tags)
}

/// Any change, staged or not, including untracked files (`git status --porcelain`), which is
/// what makes abra refuse a non-chaos deploy.
pub fn is_dirty(dir: &Path) -> Result<bool> {
    Ok(!git(dir, &["status", "--porcelain"])?.trim().is_empty())
}

pub fn head_sha(dir: &Path) -> Result<String> {
    Ok(git(dir, &["rev-parse", "HEAD"])?.trim().to_owned())
}

/// An app's `.env`, kept as lines so rewriting `TYPE=` leaves comments and order alone.
#[derive(Clone, Debug)]
pub struct EnvFile {
    pub path: PathBuf,
    pub lines: Vec<String>,
}

impl EnvFile {
    pub fn read(path: &Path) -> Result<EnvFile> {
        let text =
            fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Ok(EnvFile {
            path: path.to_path_buf(),
            lines: text.lines().map(str::to_owned).collect(),
        })
    }

    pub fn write(&self) -> Result<()> {
        let mut text = self.lines.join("\n");
        text.push('\n');
        fs::write(&self.path, text).with_context(|| format!("writing {}", self.path.display()))
    }

    /// Active (uncommented) `KEY=VALUE` pairs, quotes and trailing `# …` comments stripped.
    pub fn vars(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for l in &self.lines {
            if let Some((k, v, _)) = parse_env_line(l) {
                out.insert(k, v);
            }
        }
        out
    }

    pub fn get(&self, key: &str) -> Option<String> {
        self.vars().remove(key)
    }

    /// Sets `KEY=value` in place (first active line), or appends it.
    pub fn set(&mut self, key: &str, value: &str) {
        for l in self.lines.iter_mut() {
            if let Some((k, _, comment)) = parse_env_line(l) {
                if k == key {
                    *l = format!("{key}={value}{comment}");
                    return;
                }
            }
        }
        self.lines.push(format!("{key}={value}"));
    }

    /// `SECRET_<NAME>_VERSION` entries: (secret name lower-cased, version, length modifier).
    pub fn secret_versions(&self) -> Vec<(String, String, Option<usize>)> {
        let mut out = Vec::new();
        for l in &self.lines {
            let Some((k, v, comment)) = parse_env_line(l) else {
                continue;
            };
            let Some(name) = k
                .strip_prefix("SECRET_")
                .and_then(|s| s.strip_suffix("_VERSION"))
            else {
                continue;
            };
            let length = comment
                .split_whitespace()
                .find_map(|w| w.strip_prefix("length="))
                .and_then(|n| n.parse().ok());
            out.push((name.to_lowercase(), v, length));
        }
        out
    }
}

/// (key, value, trailing comment incl. leading space) of an active line.
fn parse_env_line(line: &str) -> Option<(String, String, String)> {
    let t = line.trim_start();
    if t.starts_with('#') || t.is_empty() {
        return None;
    }
    let t = t.strip_prefix("export ").unwrap_or(t);
    let (k, rest) = t.split_once('=')?;
    let k = k.trim();
    if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return None;
    }
    let (v, comment) = if let Some(q) = rest.strip_prefix('"').or_else(|| rest.strip_prefix('\'')) {
        let quote = rest.as_bytes()[0] as char;
        match q.find(quote) {
            Some(end) => (q[..end].to_owned(), q[end + 1..].to_owned()),
            None => (q.to_owned(), String::new()),
        }
    } else {
        match rest.find(" #") {
            Some(i) => (rest[..i].trim().to_owned(), rest[i..].to_owned()),
            None => (rest.trim().to_owned(), String::new()),
        }
    };
    Some((k.to_owned(), v, comment))
}

/// Compose interpolation: `$$`, `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`,
/// `${VAR:?err}` (compose-spec interpolation section). Unset variables become empty, as docker
/// does with a warning.
pub fn interpolate(text: &str, env: &BTreeMap<String, String>) -> Result<String> {
    let mut out = String::with_capacity(text.len());
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'$' {
            let ch = text[i..].chars().next().unwrap_or('\u{fffd}');
            out.push(ch);
            i += ch.len_utf8().max(1);
            continue;
        }
        if b.get(i + 1) == Some(&b'$') {
            out.push('$');
            i += 2;
            continue;
        }
        if b.get(i + 1) == Some(&b'{') {
            let Some(end) = text[i + 2..].find('}') else {
                bail!("invalid interpolation format for {:?}", &text[i..]);
            };
            let expr = &text[i + 2..i + 2 + end];
            i += 3 + end;
            let name_end = expr
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(expr.len());
            let (name, op) = expr.split_at(name_end);
            let val = env.get(name);
            let v = if let Some(d) = op.strip_prefix(":-") {
                val.filter(|v| !v.is_empty())
                    .cloned()
                    .unwrap_or_else(|| d.to_owned())
            } else if let Some(d) = op.strip_prefix('-') {
                val.cloned().unwrap_or_else(|| d.to_owned())
            } else if let Some(msg) = op.strip_prefix(":?").or_else(|| op.strip_prefix('?')) {
                match val.filter(|v| !v.is_empty()) {
                    Some(v) => v.clone(),
                    None => bail!("required variable {name} is missing a value: {msg}"),
                }
            } else if op.is_empty() {
                val.cloned().unwrap_or_default()
            } else {
                bail!("invalid interpolation format for ${{{expr}}}");
            };
            out.push_str(&v);
            continue;
        }
        let name_end = text[i + 1..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map(|n| i + 1 + n)
            .unwrap_or(text.len());
        if name_end == i + 1 {
            out.push('$');
            i += 1;
            continue;
        }
        out.push_str(env.get(&text[i + 1..name_end]).map_or("", |s| s.as_str()));
        i = name_end;
    }
    Ok(out)
}

/// One service, as the stand-in needs it (docker itself reads the rest).
#[derive(Clone, Debug, Default)]
pub struct ComposeService {
    pub image: String,
    /// `deploy.labels`, interpolated.
    pub labels: BTreeMap<String, String>,
    /// Publishes ports: such a service cannot take `endpoint_mode: dnsrr`.
    pub ports: bool,
}

#[derive(Clone, Debug, Default)]
pub struct Compose {
    /// The first file's `version:`; docker refuses files whose versions differ.
    pub version: Option<String>,
    pub files: Vec<PathBuf>,
    pub services: BTreeMap<String, ComposeService>,
}

/// Loads `COMPOSE_FILE` (colon-separated, default `compose.yml`) from the recipe dir, later
/// files extending earlier ones as `docker stack deploy -c a -c b` merges them.
pub fn load_compose(recipe_dir: &Path, env: &BTreeMap<String, String>) -> Result<Compose> {
    let files = env
        .get("COMPOSE_FILE")
        .cloned()
        .unwrap_or_else(|| "compose.yml".to_owned());
    let mut compose = Compose::default();
    for f in files.split(':').filter(|f| !f.is_empty()) {
        let path = recipe_dir.join(f);
        let raw =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let text = interpolate(&raw, env).with_context(|| format!("interpolating {f}"))?;
        let docs = YamlLoader::load_from_str(&text).with_context(|| format!("parsing {f}"))?;
        compose.files.push(path);
        let Some(doc) = docs.first() else { continue };
        if compose.files.len() == 1 {
            compose.version = yaml_str(&doc["version"]);
        }
        merge_compose(&mut compose, doc).with_context(|| format!("reading {f}"))?;
    }
    Ok(compose)
}

fn yaml_str(y: &Yaml) -> Option<String> {
    match y {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Compose's "list of `k=v`" or "map" forms, both allowed for labels.
fn kv_list(y: &Yaml) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    match y {
        Yaml::Array(items) => {
            for it in items {
                if let Some(s) = yaml_str(it) {
                    let (k, v) = s.split_once('=').unwrap_or((&s, ""));
                    out.insert(k.to_owned(), v.to_owned());
                }
            }
        }
        Yaml::Hash(h) => {
            for (k, v) in h {
                if let Some(k) = yaml_str(k) {
                    out.insert(k, yaml_str(v).unwrap_or_default());
                }
            }
        }
        _ => {}
    }
    out
}

fn merge_compose(c: &mut Compose, doc: &Yaml) -> Result<()> {
    if let Yaml::Hash(services) = &doc["services"] {
        for (name, svc) in services {
            let name = yaml_str(name).context("service name")?;
            let entry = c.services.entry(name).or_default();
            if let Some(img) = yaml_str(&svc["image"]) {
                entry.image = img;
            }
            entry.ports |= !svc["ports"].is_badvalue() && !svc["ports"].is_null();
            entry.labels.extend(kv_list(&svc["deploy"]["labels"]));
        }
    }
    Ok(())
}

/// `export X=Y` lines of `abra.sh`, which abra sources into the deploy env (config versions).
pub fn abra_sh_exports(recipe_dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Ok(text) = fs::read_to_string(recipe_dir.join("abra.sh")) {
        for l in text.lines() {
            if let Some(rest) = l.trim().strip_prefix("export ") {
                if let Some((k, v)) = rest.split_once('=') {
                    out.insert(
                        k.trim().to_owned(),
                        v.trim().trim_matches('"').trim_matches('\'').to_owned(),
                    );
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolation_forms() {
        let env: BTreeMap<String, String> = [("A".into(), "x".into()), ("E".into(), "".into())]
            .into_iter()
            .collect();
        assert_eq!(
            interpolate("$A ${A} ${B:-d} ${E:-d} ${E-d} $$A", &env).unwrap(),
            "x x d d  $A"
        );
    }

    #[test]
    fn versions_order_numerically() {
        assert!(parse_version("1.10.0+1.27.2") > parse_version("1.9.3+1.25.0"));
        assert_eq!(parse_version("main"), None);
    }

    #[test]
    fn env_lines_keep_comments() {
        let mut e = EnvFile {
            path: PathBuf::new(),
            lines: vec![
                "TYPE=custom-html".into(),
                "SECRET_ADMIN_PASSWORD_VERSION=v1 # length=32".into(),
                "#TIMEOUT=120".into(),
            ],
        };
        e.set("SECRET_ADMIN_PASSWORD_VERSION", "v2");
        assert_eq!(e.lines[1], "SECRET_ADMIN_PASSWORD_VERSION=v2 # length=32");
        assert_eq!(
            e.secret_versions(),
            vec![("admin_password".into(), "v2".into(), Some(32))]
        );
        assert_eq!(e.get("TIMEOUT"), None);
    }
}
