//! The JSON shapes the stand-in Drone serves, field for field and in the order of
//! harness/drone (branch `drone`) `core/build.go` `Build`, `core/stage.go` `Stage`,
//! `core/step.go` `Step`, `core/repo.go` `Repository`, `core/user.go` `User`; fields tagged
//! `omitempty` there are skipped here when empty.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

fn is_zero(v: &i64) -> bool {
    *v == 0
}

fn is_false(v: &bool) -> bool {
    !*v
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Build {
    pub id: i64,
    pub repo_id: i64,
    pub trigger: String,
    pub number: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub parent: i64,
    pub status: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
    pub event: String,
    pub action: String,
    pub link: String,
    pub timestamp: i64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
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
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cron: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub deploy_to: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub deploy_id: i64,
    #[serde(default, skip_serializing_if = "is_false")]
    pub debug: bool,
    pub started: i64,
    pub finished: i64,
    pub created: i64,
    pub updated: i64,
    pub version: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<Stage>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Stage {
    pub id: i64,
    pub repo_id: i64,
    pub build_id: i64,
    pub number: i64,
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default, rename = "type", skip_serializing_if = "String::is_empty")]
    pub type_: String,
    pub status: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
    pub errignore: bool,
    pub exit_code: i64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub machine: String,
    pub os: String,
    pub arch: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub variant: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kernel: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub limit: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub throttle: i64,
    pub started: i64,
    pub stopped: i64,
    pub created: i64,
    pub updated: i64,
    pub version: i64,
    pub on_success: bool,
    pub on_failure: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<Step>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Step {
    pub id: i64,
    /// The stage id; the tag is Drone's own typo (`core/step.go`).
    #[serde(rename = "step_id")]
    pub stage_id: i64,
    pub number: i64,
    pub name: String,
    pub status: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub errignore: bool,
    pub exit_code: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub started: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub stopped: i64,
    pub version: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub detached: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub schema: String,
}

/// `core.Repository` as `GET /api/repos/{owner}/{name}` renders it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RepoJson {
    pub id: i64,
    pub uid: String,
    pub user_id: i64,
    pub namespace: String,
    pub name: String,
    pub slug: String,
    pub scm: String,
    pub git_http_url: String,
    pub git_ssh_url: String,
    pub link: String,
    pub default_branch: String,
    pub private: bool,
    pub visibility: String,
    pub active: bool,
    pub config_path: String,
    pub trusted: bool,
    pub protected: bool,
    pub ignore_forks: bool,
    pub ignore_pull_requests: bool,
    pub auto_cancel_pull_requests: bool,
    pub auto_cancel_pushes: bool,
    pub auto_cancel_running: bool,
    pub timeout: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub throttle: i64,
    pub counter: i64,
    pub synced: i64,
    pub created: i64,
    pub updated: i64,
    pub version: i64,
    pub archived: bool,
}

/// `core.User` as `GET /api/user` renders it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct UserJson {
    pub id: i64,
    pub login: String,
    pub email: String,
    pub machine: bool,
    pub admin: bool,
    pub active: bool,
    pub avatar: String,
    pub syncing: bool,
    pub synced: i64,
    pub created: i64,
    pub updated: i64,
    pub last_login: i64,
}

/// `handler/api/errors` `Error`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ApiError {
    pub message: String,
}
