//! Typed client for the Drone 2.x API routes cc-ci uses: create, list, read, cancel and
//! restart builds, and read step logs. Built on [`crate::api::Api`] with `Bearer` auth: global
//! timeout, no redirects followed, body cap, errors naming route and status but never the
//! token (the token only ever travels in the `Authorization` header, never in a URL).
//!
//! Shapes follow harness/drone (branch `drone`) `core/build.go`, `core/stage.go`,
//! `core/step.go` and `core/logs.go`; fields Drone omits when empty default here.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::api::{encode, route, Api, AuthScheme};
use crate::secret::Secret;

/// Drone's page size bounds for `GET …/builds` (`per_page` outside 1..=100 becomes 25).
pub const MAX_PER_PAGE: u32 = 100;

/// Query keys Drone's create handler consumes itself; as params they would be lost.
const RESERVED_PARAMS: [&str; 3] = ["access_token", "branch", "commit"];

/// A build (`core.Build`), with `stages` when read singly.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Build {
    pub id: i64,
    pub repo_id: i64,
    pub trigger: String,
    pub number: i64,
    pub parent: i64,
    pub status: BuildStatus,
    pub error: String,
    pub event: String,
    pub action: String,
    /// The commit link on the forge (not the Drone page).
    pub link: String,
    pub timestamp: i64,
    pub title: String,
    pub message: String,
    pub before: String,
    pub after: String,
    #[serde(rename = "ref")]
    pub reference: String,
    pub source_repo: String,
    pub source: String,
    pub target: String,
    pub author_login: String,
    pub author_name: String,
    pub author_email: String,
    pub author_avatar: String,
    pub sender: String,
    pub params: BTreeMap<String, String>,
    pub cron: String,
    pub deploy_to: String,
    pub deploy_id: i64,
    pub debug: bool,
    pub started: i64,
    pub finished: i64,
    pub created: i64,
    pub updated: i64,
    pub version: i64,
    pub stages: Vec<Stage>,
}

/// A stage (`core.Stage`): one pipeline of the `.drone.yml`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Stage {
    pub id: i64,
    pub repo_id: i64,
    pub build_id: i64,
    pub number: i64,
    pub name: String,
    pub kind: String,
    #[serde(rename = "type")]
    pub type_: String,
    pub status: BuildStatus,
    pub error: String,
    pub errignore: bool,
    pub exit_code: i64,
    pub machine: String,
    pub os: String,
    pub arch: String,
    pub variant: String,
    pub kernel: String,
    pub limit: i64,
    pub throttle: i64,
    pub started: i64,
    pub stopped: i64,
    pub created: i64,
    pub updated: i64,
    pub version: i64,
    pub on_success: bool,
    pub on_failure: bool,
    pub depends_on: Vec<String>,
    pub labels: BTreeMap<String, String>,
    /// Present only once a runner has started the stage.
    pub steps: Vec<Step>,
}

/// A step (`core.Step`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Step {
    pub id: i64,
    /// The stage's id; Drone tags it `step_id` (a typo it keeps for compatibility).
    #[serde(rename = "step_id")]
    pub stage_id: i64,
    pub number: i64,
    pub name: String,
    pub status: BuildStatus,
    pub error: String,
    pub errignore: bool,
    pub exit_code: i64,
    pub started: i64,
    pub stopped: i64,
    pub version: i64,
    pub depends_on: Vec<String>,
    pub image: String,
    pub detached: bool,
    pub schema: String,
}

/// One log line (`core.Line`): `pos` from 0, `out` with its newline, `time` in seconds
/// since the step's log started.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LogLine {
    pub pos: i64,
    pub out: String,
    pub time: i64,
}

/// `core.Status.IsDone`: everything but waiting, pending, running and blocked.
/// The status of a build, a stage or a step (Drone's core/status.go).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BuildStatus {
    Skipped,
    Blocked,
    Declined,
    WaitingOnDependencies,
    #[default]
    Pending,
    Running,
    Success,
    Failure,
    Killed,
    Error,
}

impl BuildStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            BuildStatus::Skipped => "skipped",
            BuildStatus::Blocked => "blocked",
            BuildStatus::Declined => "declined",
            BuildStatus::WaitingOnDependencies => "waiting_on_dependencies",
            BuildStatus::Pending => "pending",
            BuildStatus::Running => "running",
            BuildStatus::Success => "success",
            BuildStatus::Failure => "failure",
            BuildStatus::Killed => "killed",
            BuildStatus::Error => "error",
        }
    }

    /// Whether nothing more will happen to it.
    pub fn is_done(self) -> bool {
        match self {
            BuildStatus::WaitingOnDependencies
            | BuildStatus::Pending
            | BuildStatus::Running
            | BuildStatus::Blocked => false,
            BuildStatus::Skipped
            | BuildStatus::Declined
            | BuildStatus::Success
            | BuildStatus::Failure
            | BuildStatus::Killed
            | BuildStatus::Error => true,
        }
    }
}

impl std::fmt::Display for BuildStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Build {
    pub fn is_done(&self) -> bool {
        self.status.is_done()
    }
}

/// A Drone server reached with one user's API token.
pub struct DroneClient {
    api: Api,
}

fn repo_path(owner: &str, name: &str) -> String {
    format!("/api/repos/{}/{}", encode(owner), encode(name))
}

fn query(pairs: &[(&str, &str)]) -> String {
    let q: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect();
    if q.is_empty() {
        String::new()
    } else {
        format!("?{}", q.join("&"))
    }
}

fn check_params(params: &[(&str, &str)]) -> Result<()> {
    for (k, _) in params {
        if k.is_empty() {
            bail!("a build param needs a name");
        }
        if RESERVED_PARAMS.contains(k) {
            bail!("build param {k:?} would be taken by Drone itself, not passed to the pipeline");
        }
    }
    Ok(())
}

impl DroneClient {
    /// `server_url` is the Drone root, e.g. `https://drone.example.org` (no `/api`).
    pub fn new(server_url: &str, token: Secret, timeout: Duration) -> DroneClient {
        DroneClient {
            api: Api::new("drone", server_url, AuthScheme::Bearer, token, timeout),
        }
    }

    /// Decodes a body that may be JSON `null` (Drone's "nothing to do" answer).
    fn nullable<T: for<'de> Deserialize<'de>>(
        &self,
        method: &str,
        path: &str,
        ok: &[u16],
    ) -> Result<Option<T>> {
        let (_, v): (_, Option<T>) = self.api.json(method, path, None, ok)?;
        Ok(v)
    }

    /// `POST /api/repos/{owner}/{name}/builds`: a custom build of `branch` (the repo's default
    /// when `None`) with `params`, which Drone hands to every step as environment variables
    /// under exactly these names. `None` when no pipeline of the `.drone.yml` matches
    /// (Drone answers `null`). A build whose config does not parse comes back with status
    /// `error` and the message in `error`.
    pub fn create_build(
        &self,
        owner: &str,
        name: &str,
        branch: Option<&str>,
        params: &[(&str, &str)],
    ) -> Result<Option<Build>> {
        check_params(params)?;
        let mut pairs: Vec<(&str, &str)> = Vec::new();
        if let Some(b) = branch {
            pairs.push(("branch", b));
        }
        pairs.extend_from_slice(params);
        let path = format!("{}/builds{}", repo_path(owner, name), query(&pairs));
        self.nullable("POST", &path, &[200])
    }

    /// `GET …/builds?page=&per_page=`: newest first, without stages. `per_page` is clamped to
    /// 1..=100 here, as Drone would silently turn anything else into 25.
    pub fn list_builds(
        &self,
        owner: &str,
        name: &str,
        page: u32,
        per_page: u32,
    ) -> Result<Vec<Build>> {
        let per_page = per_page.clamp(1, MAX_PER_PAGE);
        let path = format!(
            "{}/builds?page={}&per_page={per_page}",
            repo_path(owner, name),
            page.max(1)
        );
        let builds: Option<Vec<Build>> = self.nullable("GET", &path, &[200])?;
        Ok(builds.unwrap_or_default())
    }

    /// Every build numbered above `newer_than`, oldest first, reading at most `max_pages`
    /// pages of 100. Drone pages by offset, so a build created while paging shifts the rest
    /// by one; duplicates are dropped. Fails if `max_pages` ran out before reaching
    /// `newer_than` (the caller would otherwise miss builds without knowing).
    pub fn builds_since(
        &self,
        owner: &str,
        name: &str,
        newer_than: i64,
        max_pages: u32,
    ) -> Result<Vec<Build>> {
        let mut out: BTreeMap<i64, Build> = BTreeMap::new();
        for page in 1..=max_pages.max(1) {
            let items = self.list_builds(owner, name, page, MAX_PER_PAGE)?;
            let short = items.len() < MAX_PER_PAGE as usize;
            let mut reached = false;
            for b in items {
                if b.number <= newer_than {
                    reached = true;
                    continue;
                }
                out.entry(b.number).or_insert(b);
            }
            if reached || short {
                return Ok(out.into_values().collect());
            }
        }
        bail!(
            "drone GET {}: more than {max_pages} page(s) of builds newer than #{newer_than}",
            route(&format!("{}/builds", repo_path(owner, name)))
        )
    }

    /// The newest build among the newest `max_pages` pages of 100 that `pick` chooses: how the
    /// bridge finds a build it may have created before a crash, by the params it sent.
    pub fn find_build(
        &self,
        owner: &str,
        name: &str,
        max_pages: u32,
        pick: impl Fn(&Build) -> bool,
    ) -> Result<Option<Build>> {
        for page in 1..=max_pages {
            let builds = self.list_builds(owner, name, page, MAX_PER_PAGE)?;
            if let Some(b) = builds.iter().find(|b| pick(b)) {
                return Ok(Some(b.clone()));
            }
            if builds.len() < MAX_PER_PAGE as usize {
                break;
            }
        }
        Ok(None)
    }

    /// `GET …/builds/{number}`, with stages and (once started) their steps.
    pub fn get_build(&self, owner: &str, name: &str, number: i64) -> Result<Build> {
        let path = format!("{}/builds/{number}", repo_path(owner, name));
        let (_, b) = self.api.json("GET", &path, None, &[200])?;
        Ok(b)
    }

    /// [`DroneClient::get_build`], `None` when Drone has no such build (404).
    pub fn find_build_number(&self, owner: &str, name: &str, number: i64) -> Result<Option<Build>> {
        self.build_or_none(&format!("{}/builds/{number}", repo_path(owner, name)))
    }

    /// A `GET` answering one build, or 404 for none.
    fn build_or_none(&self, path: &str) -> Result<Option<Build>> {
        let reply = self.api.expect("GET", path, None, &[200, 404])?;
        if reply.status == 404 {
            return Ok(None);
        }
        let b = serde_json::from_slice(&reply.body).with_context(|| {
            format!(
                "drone GET {}: HTTP 200: malformed JSON: {}",
                route(path),
                reply.excerpt()
            )
        })?;
        Ok(Some(b))
    }

    /// `DELETE …/builds/{number}`: cancels a pending or running build (it becomes `killed`; a
    /// running step ends killed with the runner's 137, or Drone's 130 where no runner held it:
    /// docs/fidelity.md); a finished build comes back unchanged.
    pub fn cancel(&self, owner: &str, name: &str, number: i64) -> Result<Build> {
        let path = format!("{}/builds/{number}", repo_path(owner, name));
        let (_, b) = self.api.json("DELETE", &path, None, &[200])?;
        Ok(b)
    }

    /// `GET …/builds/{build}/logs/{stage}/{step}` (stage and step *numbers*): `None` until the
    /// step has finished and its log was stored (404). A step that printed nothing has an
    /// empty log.
    pub fn step_log(
        &self,
        owner: &str,
        name: &str,
        build: i64,
        stage: i64,
        step: i64,
    ) -> Result<Option<Vec<LogLine>>> {
        let path = format!(
            "{}/builds/{build}/logs/{stage}/{step}",
            repo_path(owner, name)
        );
        let reply = self.api.expect("GET", &path, None, &[200, 404])?;
        if reply.status == 404 {
            return Ok(None);
        }
        let lines: Option<Vec<LogLine>> =
            serde_json::from_slice(&reply.body).with_context(|| {
                format!(
                    "drone GET {}: HTTP 200: malformed JSON: {}",
                    route(&path),
                    reply.excerpt()
                )
            })?;
        Ok(Some(lines.unwrap_or_default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_are_percent_encoded_and_reserved_names_refused() {
        assert_eq!(
            query(&[("JOB", "a b&c=d"), ("x", "é")]),
            "?JOB=a%20b%26c%3Dd&x=%C3%A9"
        );
        assert!(check_params(&[("branch", "x")]).is_err());
        assert!(check_params(&[("access_token", "x")]).is_err());
        assert!(check_params(&[("message", "x")]).is_ok());
    }

    #[test]
    fn decodes_drone_build_with_omitted_fields() {
        let b: Build = serde_json::from_str(
            r#"{"id":1,"repo_id":2,"trigger":"bot","number":3,"status":"pending","event":"custom",
            "action":"","link":"l","timestamp":0,"message":"m","before":"a","after":"a",
            "ref":"refs/heads/main","source_repo":"","source":"main","target":"main",
            "author_login":"","author_name":"","author_email":"","author_avatar":"","sender":"bot",
            "started":0,"finished":0,"created":1,"updated":1,"version":1}"#,
        )
        .unwrap();
        assert_eq!(b.reference, "refs/heads/main");
        assert!(b.params.is_empty() && b.stages.is_empty() && !b.is_done());
    }
}
