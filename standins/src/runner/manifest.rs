//! `.drone.yml` as both the Drone server and the exec runner read it: documents split on
//! lines that start with `---` (not YAML's own stream syntax), each document a pipeline,
//! secret, signature, … resource; pipelines with their trigger, steps and `when` conditions.
//!
//! Mirrors drone/drone-yaml `yaml/parse.go` (`ParseRaw`, `parseRaw`: unknown kinds parse as
//! pipelines; an empty kind is "yaml: missing kind attribute"), `yaml/linter/config.go`
//! (`checkPipelines`: duplicate names, dependencies on pipelines declared earlier), and
//! drone-runners/drone-runner-exec `engine/resource/parser.go` (`lint`: step names, no images)
//! and `engine/resource/lookup.go`.

use std::collections::BTreeMap;

use yaml_rust2::{Yaml, YamlLoader};

/// `include`/`exclude` glob lists. Mirrors drone/runner-go `manifest/cond.go` and
/// drone/drone-yaml `yaml/cond.go` (both match with bmatcuk/doublestar).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Condition {
    pub include: Vec<String>,
    pub exclude: Vec<String>,
}

impl Condition {
    /// Excluded → false; included → true; no includes → true.
    pub fn matches(&self, v: &str) -> bool {
        if self.exclude.iter().any(|p| glob_match(p, v, true)) {
            return false;
        }
        if self.include.iter().any(|p| glob_match(p, v, true)) {
            return true;
        }
        self.include.is_empty()
    }

    pub fn is_empty(&self) -> bool {
        self.include.is_empty() && self.exclude.is_empty()
    }

    fn from_yaml(y: &Yaml) -> Condition {
        // Condition.UnmarshalYAML: a string, a list, or {include, exclude}.
        match y {
            Yaml::Array(a) => Condition {
                include: a.iter().filter_map(scalar).collect(),
                exclude: Vec::new(),
            },
            Yaml::Hash(_) => Condition {
                include: list(&y["include"]),
                exclude: list(&y["exclude"]),
            },
            other => match scalar(other) {
                Some(s) => Condition {
                    include: vec![s],
                    exclude: Vec::new(),
                },
                None => Condition::default(),
            },
        }
    }
}

/// The `trigger:` or `when:` block.
#[derive(Clone, Debug, Default)]
pub struct Conditions {
    pub action: Condition,
    pub branch: Condition,
    pub cron: Condition,
    pub event: Condition,
    pub instance: Condition,
    pub reference: Condition,
    pub repo: Condition,
    pub status: Condition,
    pub target: Condition,
}

/// What a `when:` block is matched against (runner-go `manifest.Match`).
#[derive(Clone, Debug, Default)]
pub struct MatchInput<'a> {
    pub action: &'a str,
    pub branch: &'a str,
    pub cron: &'a str,
    pub event: &'a str,
    pub instance: &'a str,
    pub reference: &'a str,
    pub repo: &'a str,
    pub target: &'a str,
}

impl Conditions {
    fn from_yaml(y: &Yaml) -> Conditions {
        Conditions {
            action: Condition::from_yaml(&y["action"]),
            branch: Condition::from_yaml(&y["branch"]),
            cron: Condition::from_yaml(&y["cron"]),
            event: Condition::from_yaml(&y["event"]),
            instance: Condition::from_yaml(&y["instance"]),
            reference: Condition::from_yaml(&y["ref"]),
            repo: Condition::from_yaml(&y["repo"]),
            status: Condition::from_yaml(&y["status"]),
            target: Condition::from_yaml(&y["target"]),
        }
    }

    /// Every condition but `status` (runner-go `Conditions.Match`).
    pub fn matches(&self, m: &MatchInput) -> bool {
        self.cron.matches(m.cron)
            && self.reference.matches(m.reference)
            && self.repo.matches(m.repo)
            && self.instance.matches(m.instance)
            && self.target.matches(m.target)
            && self.event.matches(m.event)
            && self.branch.matches(m.branch)
            && self.action.matches(m.action)
    }
}

/// A step's environment value: plain, or `{from_secret: name}`.
#[derive(Clone, Debug, PartialEq)]
pub enum EnvValue {
    Plain(String),
    Secret(String),
}

#[derive(Clone, Debug, Default)]
pub struct Step {
    pub name: String,
    pub image: String,
    pub commands: Vec<String>,
    pub environment: Vec<(String, EnvValue)>,
    pub depends_on: Vec<String>,
    pub when: Conditions,
    pub failure: String,
    pub detach: bool,
}

#[derive(Clone, Debug, Default)]
pub struct Pipeline {
    pub kind: String,
    pub type_: String,
    pub name: String,
    pub os: String,
    pub arch: String,
    pub variant: String,
    pub version: String,
    pub clone_disable: bool,
    pub node: BTreeMap<String, String>,
    pub concurrency_limit: i64,
    pub depends_on: Vec<String>,
    pub trigger: Conditions,
    pub steps: Vec<Step>,
}

/// One document of the file.
#[derive(Clone, Debug)]
pub enum Resource {
    Pipeline(Box<Pipeline>),
    /// `secret`, `signature`, `cron`, `registry`: kept by kind only.
    Other {
        kind: String,
        name: String,
    },
}

#[derive(Clone, Debug, Default)]
pub struct Manifest {
    pub resources: Vec<Resource>,
}

impl Manifest {
    pub fn pipelines(&self) -> impl Iterator<Item = &Pipeline> {
        self.resources.iter().filter_map(|r| match r {
            Resource::Pipeline(p) => Some(&**p),
            Resource::Other { .. } => None,
        })
    }
}

/// Splits like drone-yaml `ParseRaw`: a line starting with `---` starts a new document, a
/// line starting with `...` ends the file.
fn split_documents(text: &str) -> Vec<String> {
    let mut docs: Vec<String> = Vec::new();
    let mut current: Option<usize> = None;
    for line in text.lines() {
        let sep = line.starts_with("---");
        if sep {
            current = None;
        }
        if current.is_none() {
            docs.push(String::new());
            current = Some(docs.len() - 1);
        }
        if sep {
            continue;
        }
        if line.starts_with("...") {
            break;
        }
        if let Some(i) = current {
            docs[i].push_str(line);
            docs[i].push('\n');
        }
    }
    docs
}

/// Parses the file; errors are worded as Drone words them where it matters.
pub fn parse(text: &str) -> Result<Manifest, String> {
    let mut out = Manifest::default();
    for doc in split_documents(text) {
        let loaded = YamlLoader::load_from_str(&doc).map_err(|e| format!("yaml: {e}"))?;
        let y = loaded.into_iter().next().unwrap_or(Yaml::Null);
        if !matches!(y, Yaml::Hash(_) | Yaml::Null) {
            return Err("yaml: unmarshal errors: document is not a mapping".into());
        }
        let kind = str_of(&y["kind"]);
        if kind.is_empty() {
            return Err("yaml: missing kind attribute".into());
        }
        match kind.as_str() {
            "secret" | "signature" | "cron" | "registry" => out.resources.push(Resource::Other {
                kind,
                name: str_of(&y["name"]),
            }),
            _ => out
                .resources
                .push(Resource::Pipeline(Box::new(pipeline_from(&y, kind)?))),
        }
    }
    Ok(out)
}

fn pipeline_from(y: &Yaml, kind: String) -> Result<Pipeline, String> {
    let mut node = BTreeMap::new();
    if let Some(h) = y["node"].as_hash() {
        for (k, v) in h {
            node.insert(scalar(k).unwrap_or_default(), scalar(v).unwrap_or_default());
        }
    }
    let mut steps = Vec::new();
    if let Some(a) = y["steps"].as_vec() {
        for s in a {
            steps.push(step_from(s)?);
        }
    }
    Ok(Pipeline {
        kind,
        type_: str_of(&y["type"]),
        name: str_of(&y["name"]),
        os: str_of(&y["platform"]["os"]),
        arch: str_of(&y["platform"]["arch"]),
        variant: str_of(&y["platform"]["variant"]),
        version: str_of(&y["platform"]["version"]),
        clone_disable: y["clone"]["disable"].as_bool().unwrap_or(false),
        node,
        concurrency_limit: y["concurrency"]["limit"].as_i64().unwrap_or(0),
        depends_on: list(&y["depends_on"]),
        trigger: Conditions::from_yaml(&y["trigger"]),
        steps,
    })
}

fn step_from(y: &Yaml) -> Result<Step, String> {
    let mut environment = Vec::new();
    if let Some(h) = y["environment"].as_hash() {
        for (k, v) in h {
            let key = scalar(k).unwrap_or_default();
            let value = match v {
                Yaml::Hash(_) => match scalar(&v["from_secret"]) {
                    Some(s) if !s.trim().is_empty() => EnvValue::Secret(s),
                    _ => EnvValue::Plain(String::new()),
                },
                other => EnvValue::Plain(scalar(other).unwrap_or_default()),
            };
            environment.push((key, value));
        }
    }
    Ok(Step {
        name: str_of(&y["name"]),
        image: str_of(&y["image"]),
        commands: list(&y["commands"]),
        environment,
        depends_on: list(&y["depends_on"]),
        when: Conditions::from_yaml(&y["when"]),
        failure: str_of(&y["failure"]),
        detach: y["detach"].as_bool().unwrap_or(false),
    })
}

/// The server-side lint (drone-yaml `linter.Manifest`).
pub fn lint_server(m: &Manifest) -> Result<(), String> {
    let mut names: Vec<&str> = Vec::new();
    for p in m.pipelines() {
        if names.contains(&p.name.as_str()) {
            return Err("linter: duplicate pipeline names".into());
        }
        names.push(&p.name);
        for dep in &p.depends_on {
            if !names.contains(&dep.as_str()) {
                return Err("linter: invalid or unknown pipeline dependency".into());
            }
            if *dep == p.name {
                return Err("linter: pipeline cannot have a dependency on itself".into());
            }
        }
    }
    Ok(())
}

/// The exec runner's lint of its own pipelines (`engine/resource/parser.go` `lint`).
pub fn lint_exec(m: &Manifest) -> Result<(), String> {
    for p in m
        .pipelines()
        .filter(|p| p.kind == "pipeline" && p.type_ == "exec")
    {
        let mut names: Vec<&str> = Vec::new();
        for s in &p.steps {
            if s.name.is_empty() {
                return Err("Linter: invalid or missing step name".into());
            }
            if names.contains(&s.name.as_str()) {
                return Err("Linter: duplicate step name".into());
            }
            if !s.image.is_empty() {
                return Err("Linter: cannot define images for an exec pipeline".into());
            }
            names.push(&s.name);
        }
    }
    Ok(())
}

/// `resource.Lookup`: the exec pipeline whose name equals the stage name. A pipeline without
/// a name is the stage "default" but is looked up by its empty name, so it is never found.
pub fn lookup_exec<'a>(m: &'a Manifest, name: &str) -> Result<&'a Pipeline, String> {
    m.pipelines()
        .find(|p| p.name == name && p.kind == "pipeline" && p.type_ == "exec")
        .ok_or_else(|| "resource not found".to_owned())
}

fn scalar(y: &Yaml) -> Option<String> {
    match y {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

fn str_of(y: &Yaml) -> String {
    scalar(y).unwrap_or_default()
}

fn list(y: &Yaml) -> Vec<String> {
    match y {
        Yaml::Array(a) => a.iter().filter_map(scalar).collect(),
        _ => Vec::new(),
    }
}

/// Shell-style glob: `*` any run of non-`/`, `?` one non-`/`, `[…]` classes (`^`/`!`
/// negates, `a-z` ranges), `\c` a literal `c`; with `doublestar`, `**` also crosses `/`.
/// A malformed pattern matches nothing (Go returns ErrBadPattern, callers treat it as false).
pub fn glob_match(pattern: &str, s: &str, doublestar: bool) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = s.chars().collect();
    glob_at(&p, &t, doublestar)
}

fn glob_at(p: &[char], t: &[char], ds: bool) -> bool {
    let Some(&c) = p.first() else {
        return t.is_empty();
    };
    match c {
        '*' => {
            if ds && p.get(1) == Some(&'*') {
                let rest = &p[2..];
                return (0..=t.len()).any(|i| glob_at(rest, &t[i..], ds));
            }
            let rest = &p[1..];
            for i in 0..=t.len() {
                if glob_at(rest, &t[i..], ds) {
                    return true;
                }
                if i < t.len() && t[i] == '/' {
                    break;
                }
            }
            false
        }
        '?' => !t.is_empty() && t[0] != '/' && glob_at(&p[1..], &t[1..], ds),
        '[' => {
            let Some(&ch) = t.first() else { return false };
            let mut i = 1;
            let negate = matches!(p.get(1), Some('^' | '!'));
            if negate {
                i += 1;
            }
            let mut matched = false;
            let mut first = true;
            loop {
                let Some(&a) = p.get(i) else { return false };
                if a == ']' && !first {
                    break;
                }
                first = false;
                let (lo, next) = if a == '\\' {
                    match p.get(i + 1) {
                        Some(&e) => (e, i + 2),
                        None => return false,
                    }
                } else {
                    (a, i + 1)
                };
                if p.get(next) == Some(&'-') && p.get(next + 1).is_some_and(|c| *c != ']') {
                    let hi = p[next + 1];
                    if lo <= ch && ch <= hi {
                        matched = true;
                    }
                    i = next + 2;
                } else {
                    if lo == ch {
                        matched = true;
                    }
                    i = next;
                }
            }
            matched != negate && ch != '/' && glob_at(&p[i + 1..], &t[1..], ds)
        }
        '\\' => match p.get(1) {
            Some(&e) => !t.is_empty() && t[0] == e && glob_at(&p[2..], &t[1..], ds),
            None => false,
        },
        _ => !t.is_empty() && t[0] == c && glob_at(&p[1..], &t[1..], ds),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("feature/*", "feature/x", true));
        assert!(!glob_match("feature/*", "feature/x/y", true));
        assert!(glob_match("feature/**", "feature/x/y", true));
        assert!(glob_match("refs/heads/*", "refs/heads/main", true));
        assert!(glob_match("[mM]ain", "Main", true));
        assert!(glob_match("*.", "gnirts.", false));
        assert!(!glob_match("*.", "gnirts.hsab", false));
    }

    #[test]
    fn documents_split_on_dashes_and_kinds() {
        let m = parse("kind: pipeline\ntype: exec\nname: a\n---\nkind: secret\nname: s\n").unwrap();
        assert_eq!(m.resources.len(), 2);
        // A trailing separator makes an empty document, which has no kind.
        let err = parse("kind: pipeline\nname: a\n---\n").unwrap_err();
        assert_eq!(err, "yaml: missing kind attribute");
        // A leading separator does not.
        assert!(parse("---\nkind: pipeline\nname: a\n").is_ok());
    }

    #[test]
    fn conditions() {
        let m = parse(
            "kind: pipeline\nname: a\ntrigger:\n  event: [custom]\n  branch:\n    exclude: [wip/*]\n",
        )
        .unwrap();
        let p = m.pipelines().next().unwrap();
        assert!(p.trigger.event.matches("custom"));
        assert!(!p.trigger.event.matches("push"));
        assert!(!p.trigger.branch.matches("wip/x"));
        assert!(p.trigger.branch.matches("main"));
    }
}
