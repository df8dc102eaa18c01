//! The real Gitea (`code.gitea.io/gitea`, the version `dev/upstream` builds) on 127.0.0.1 with
//! SQLite, seeded only through its own API — with an admin token and Gitea's `Sudo` header to
//! act as each user — so everything a test meets is what Gitea itself did.

use std::cell::Cell;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

use super::{free_port, locate, scratch_dir, Process};
use crate::gitea::PullSpec;

/// Cache path below `dev/upstream`'s directory; keep in step with its GITEA_VERSION.
pub const DEFAULT_REL: &str = "gitea-v1.26.0/gitea";
pub const VERSION: &str = "1.26.0";
const ADMIN: &str = "ccci-admin";

pub struct RealGitea {
    proc: Process,
    port: u16,
    password: String,
    admin_token: String,
    tokens: Cell<u32>,
    files: Cell<u32>,
}

impl RealGitea {
    pub fn start() -> Result<RealGitea> {
        RealGitea::start_with(0)
    }

    /// With `[api] MAX_RESPONSE_ITEMS` lowered to `max_items` (0: Gitea's default, 50).
    pub fn start_with(max_items: u32) -> Result<RealGitea> {
        let bin = locate("gitea", DEFAULT_REL)?;
        let dir = scratch_dir("gitea")?;
        let port = free_port()?;
        // Templates and locales sit beside the binary (built without `bindata`).
        let static_root = bin.parent().context("the gitea binary has no directory")?;
        let config = dir.join("app.ini");
        std::fs::write(
            &config,
            format!(
                "APP_NAME = cc-ci test forge
RUN_MODE = prod
WORK_PATH = {dir}
; CI and these machines run as root; Gitea refuses that unless told.
I_AM_BEING_UNSAFE_RUNNING_AS_ROOT = true
[server]
HTTP_ADDR = 127.0.0.1
HTTP_PORT = {port}
ROOT_URL = http://127.0.0.1:{port}/
STATIC_ROOT_PATH = {static_root}
DISABLE_SSH = true
OFFLINE_MODE = true
LFS_START_SERVER = false
[database]
DB_TYPE = sqlite3
PATH = {dir}/gitea.db
[security]
INSTALL_LOCK = true
[service]
DISABLE_REGISTRATION = true
[repository]
ROOT = {dir}/repos
DEFAULT_BRANCH = main
[indexer]
ISSUE_INDEXER_TYPE = db
[webhook]
; The bridge listens on loopback; the default (external) refuses to deliver there.
ALLOWED_HOST_LIST = loopback
[mailer]
ENABLED = false
[log]
MODE = console
LEVEL = Warn
[api]
MAX_RESPONSE_ITEMS = {max_items}
",
                dir = dir.display(),
                static_root = static_root.display(),
                max_items = if max_items == 0 { 50 } else { max_items },
            ),
        )?;
        let mut proc = Process::spawn(
            "gitea",
            Command::new(&bin)
                .args(["web", "--config"])
                .arg(&config)
                .env("GITEA_WORK_DIR", &dir),
            dir.clone(),
        )?;
        let agent = super::agent();
        let version_url = format!("http://127.0.0.1:{port}/api/v1/version");
        proc.wait_ready(Duration::from_secs(60), || {
            agent
                .get(&version_url)
                .call()
                .is_ok_and(|r| r.status() == 200)
        })?;

        let password = crate::gitea::digest::token();
        let out = Command::new(&bin)
            .args(["--config"])
            .arg(&config)
            .args(["admin", "user", "create", "--admin", "--username", ADMIN])
            .args([
                "--email",
                "ccci-admin@example.test",
                "--must-change-password=false",
            ])
            .arg("--password")
            .arg(&password)
            .env("GITEA_WORK_DIR", &dir)
            .stdin(Stdio::null())
            .output()
            .context("gitea admin user create")?;
        if !out.status.success() {
            bail!(
                "gitea admin user create failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let mut g = RealGitea {
            proc,
            port,
            password,
            admin_token: String::new(),
            tokens: Cell::new(0),
            files: Cell::new(0),
        };
        g.admin_token = g.create_token(ADMIN, &["all"])?;
        Ok(g)
    }

    /// `http://127.0.0.1:PORT`, no trailing slash, like the stand-in's `url()`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn api_url(&self) -> String {
        format!("{}/api/v1", self.url())
    }

    pub fn log_tail(&self, n: usize) -> String {
        self.proc.log_tail(n)
    }

    /// One API call as the admin, or as `sudo`'s user; the JSON answer, or an error with the
    /// status and Gitea's message.
    fn call(
        &self,
        method: &str,
        path: &str,
        sudo: Option<&str>,
        body: Option<Value>,
    ) -> Result<Value> {
        let url = format!("{}{path}", self.api_url());
        let auth = format!("token {}", self.admin_token);
        let mut headers = vec![("Authorization", auth.as_str())];
        if let Some(u) = sudo {
            headers.push(("Sudo", u));
        }
        super::call_json("Gitea", method, &url, &headers, body.as_ref())
    }

    fn is_org(&self, name: &str) -> bool {
        self.call("GET", &format!("/orgs/{name}"), None, None)
            .is_ok()
    }

    pub fn create_user(&self, login: &str) -> Result<()> {
        self.call(
            "POST",
            "/admin/users",
            None,
            Some(json!({
                "username": login,
                "email": format!("{login}@example.test"),
                "password": self.password,
                "must_change_password": false,
            })),
        )?;
        Ok(())
    }

    /// The new org is owned by the admin, as on a forge whose site admin made it.
    pub fn create_org(&self, name: &str) -> Result<()> {
        self.call("POST", "/orgs", None, Some(json!({"username": name})))?;
        Ok(())
    }

    /// Makes `login` a member of `org` through a team with write access (as recipe
    /// maintainers are), and publicises the membership (which only the member may do) when
    /// `public`.
    pub fn set_member(&self, org: &str, login: &str, public: bool) -> Result<()> {
        let teams = self.call("GET", &format!("/orgs/{org}/teams"), None, None)?;
        let existing = teams
            .as_array()
            .and_then(|t| t.iter().find(|t| t["name"] == "maintainers"))
            .and_then(|t| t["id"].as_i64());
        let team = match existing {
            Some(id) => id,
            None => self.call(
                "POST",
                &format!("/orgs/{org}/teams"),
                None,
                Some(json!({
                    "name": "maintainers",
                    "permission": "write",
                    "includes_all_repositories": true,
                    "units": ["repo.code", "repo.issues", "repo.pulls"],
                })),
            )?["id"]
                .as_i64()
                .context("team without an id")?,
        };
        self.call("PUT", &format!("/teams/{team}/members/{login}"), None, None)?;
        if public {
            self.call(
                "PUT",
                &format!("/orgs/{org}/public_members/{login}"),
                Some(login),
                None,
            )?;
        }
        Ok(())
    }

    pub fn create_token(&self, login: &str, scopes: &[&str]) -> Result<String> {
        let n = self.tokens.get() + 1;
        self.tokens.set(n);
        let url = format!("{}/users/{login}/tokens", self.api_url());
        let basic = crate::gitea::digest::base64(format!("{login}:{}", self.password).as_bytes());
        let mut resp = super::agent()
            .post(&url)
            .header("Authorization", &format!("Basic {basic}"))
            .send_json(json!({"name": format!("t{n}"), "scopes": scopes}))
            .context("creating a token on the real Gitea")?;
        let status = resp.status().as_u16();
        let v: Value = resp.body_mut().read_json().unwrap_or(Value::Null);
        if status != 201 {
            bail!("creating a token for {login}: {status} {v}");
        }
        v["sha1"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("token answer without sha1: {v}"))
    }

    /// An empty repository, for pushing an existing history into.
    pub fn create_empty_repo(&self, owner: &str, name: &str) -> Result<()> {
        let path = if self.is_org(owner) {
            format!("/orgs/{owner}/repos")
        } else {
            format!("/admin/users/{owner}/repos")
        };
        self.call(
            "POST",
            &path,
            None,
            Some(json!({"name": name, "auto_init": false})),
        )?;
        Ok(())
    }

    /// A clone URL that pushes as `login` (test users share one generated password).
    pub fn push_url(&self, owner: &str, repo: &str, login: &str) -> String {
        format!(
            "http://{login}:{}@127.0.0.1:{}/{owner}/{repo}.git",
            self.password, self.port
        )
    }

    /// A repository with one commit on `main`.
    pub fn create_repo(&self, owner: &str, name: &str, private: bool) -> Result<()> {
        let path = if self.is_org(owner) {
            format!("/orgs/{owner}/repos")
        } else {
            format!("/admin/users/{owner}/repos")
        };
        self.call(
            "POST",
            &path,
            None,
            Some(json!({"name": name, "private": private, "auto_init": true, "default_branch": "main"})),
        )?;
        Ok(())
    }

    pub fn fork_repo(&self, base: &str, new_owner: &str) -> Result<()> {
        self.call(
            "POST",
            &format!("/repos/{base}/forks"),
            Some(new_owner),
            Some(json!({})),
        )?;
        Ok(())
    }

    /// `permission`: read, write or admin.
    pub fn add_collaborator(
        &self,
        owner: &str,
        repo: &str,
        login: &str,
        permission: &str,
    ) -> Result<()> {
        self.call(
            "PUT",
            &format!("/repos/{owner}/{repo}/collaborators/{login}"),
            None,
            Some(json!({"permission": permission})),
        )?;
        Ok(())
    }

    /// Commits `content` as `path` on the default branch, as the admin; the commit's SHA. The
    /// message says `[CI SKIP]`: these commits set a test up, and a Drone whose hook Gitea
    /// delivers the push to late (its queue) must not build them (drone trigger/skip.go).
    pub fn put_file(&self, owner: &str, repo: &str, path: &str, content: &str) -> Result<String> {
        let c = self.call(
            "POST",
            &format!("/repos/{owner}/{repo}/contents/{path}"),
            None,
            Some(json!({
                "content": crate::gitea::digest::base64(content.as_bytes()),
                "message": format!("add {path} [CI SKIP]"),
            })),
        )?;
        c["commit"]["sha"]
            .as_str()
            .map(str::to_owned)
            .context("contents answer without commit.sha")
    }

    pub fn delete_repo(&self, owner: &str, name: &str) -> Result<()> {
        self.call("DELETE", &format!("/repos/{owner}/{name}"), None, None)?;
        Ok(())
    }

    /// Pushes a new commit to `spec.head_branch` of the head repository (made by the admin, as
    /// a contributor would push to their fork) and opens the PR as `spec.poster`. Gitea makes
    /// the commit, so `spec.head_sha` is not used: the head SHA is returned.
    pub fn open_pull(&self, owner: &str, repo: &str, spec: &PullSpec) -> Result<(i64, String)> {
        let head_repo = spec
            .head_repo
            .clone()
            .unwrap_or_else(|| format!("{owner}/{repo}"));
        let n = self.files.get() + 1;
        self.files.set(n);
        let commit = self.call(
            "POST",
            &format!("/repos/{head_repo}/contents/change-{n}.txt"),
            None,
            Some(json!({
                "content": crate::gitea::digest::base64(format!("change {n}\n").as_bytes()),
                "branch": spec.base_branch.as_deref().unwrap_or("main"),
                "new_branch": spec.head_branch,
                "message": spec.title,
            })),
        )?;
        let sha = commit["commit"]["sha"]
            .as_str()
            .context("contents answer without commit.sha")?
            .to_owned();
        let head = match &spec.head_repo {
            Some(hr) if hr != &format!("{owner}/{repo}") => {
                format!(
                    "{}:{}",
                    hr.split('/').next().unwrap_or(hr),
                    spec.head_branch
                )
            }
            _ => spec.head_branch.clone(),
        };
        let base = spec.base_branch.as_deref().unwrap_or("main");
        let (index, _) = self.create_pull(owner, repo, &spec.poster, &head, base, &spec.title)?;
        Ok((index, sha))
    }

    /// Opens a PR of `head` (`branch`, or `user:branch` from a fork) onto `base`, as `poster`;
    /// its number and head SHA.
    pub fn create_pull(
        &self,
        owner: &str,
        repo: &str,
        poster: &str,
        head: &str,
        base: &str,
        title: &str,
    ) -> Result<(i64, String)> {
        let pr = self.call(
            "POST",
            &format!("/repos/{owner}/{repo}/pulls"),
            Some(poster),
            Some(json!({"head": head, "base": base, "title": title})),
        )?;
        let index = pr["number"].as_i64().context("PR answer without number")?;
        let sha = pr["head"]["sha"].as_str().unwrap_or_default().to_owned();
        Ok((index, sha))
    }

    pub fn close(&self, owner: &str, repo: &str, index: i64) -> Result<()> {
        self.call(
            "PATCH",
            &format!("/repos/{owner}/{repo}/pulls/{index}"),
            None,
            Some(json!({"state": "closed"})),
        )?;
        Ok(())
    }

    pub fn comment(
        &self,
        owner: &str,
        repo: &str,
        index: i64,
        login: &str,
        body: &str,
    ) -> Result<i64> {
        let c = self.call(
            "POST",
            &format!("/repos/{owner}/{repo}/issues/{index}/comments"),
            Some(login),
            Some(json!({"body": body})),
        )?;
        c["id"].as_i64().context("comment answer without id")
    }

    pub fn edit_comment(
        &self,
        owner: &str,
        repo: &str,
        id: i64,
        login: &str,
        body: &str,
    ) -> Result<()> {
        self.call(
            "PATCH",
            &format!("/repos/{owner}/{repo}/issues/comments/{id}"),
            Some(login),
            Some(json!({"body": body})),
        )?;
        Ok(())
    }

    pub fn open_issue(&self, owner: &str, repo: &str, poster: &str, title: &str) -> Result<i64> {
        let i = self.call(
            "POST",
            &format!("/repos/{owner}/{repo}/issues"),
            Some(poster),
            Some(json!({"title": title})),
        )?;
        i["number"].as_i64().context("issue answer without number")
    }

    pub fn add_webhook(
        &self,
        owner: &str,
        repo: &str,
        url: &str,
        secret: &str,
        events: &[String],
    ) -> Result<i64> {
        let h = self.call(
            "POST",
            &format!("/repos/{owner}/{repo}/hooks"),
            None,
            Some(json!({
                "type": "gitea",
                "active": true,
                "events": events,
                "config": {"url": url, "content_type": "json", "secret": secret},
            })),
        )?;
        h["id"].as_i64().context("hook answer without id")
    }
}
