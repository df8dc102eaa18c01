//! Stand-in Gitea (API v1, as 1.24 answers, with 1.21 webhook payloads on request): users,
//! orgs, repos, pull requests, issues, comments, reactions, tokens with scopes, watches,
//! notifications and outgoing webhooks, with Gitea's routes, status codes and quirks.
//!
//! Why it is kept beside the real Gitea (docs/fidelity.md): tests that need a route to fail
//! (500, hang, malformed or truncated JSON: the bridge's fault and crash tests), a frozen
//! clock, 1.21-shaped payloads or a record of what was asked. The quirks that need none of
//! these are checked against the real Gitea by `standins/tests/gitea_fidelity.rs`.
//!
//! In-process only: `let g = Gitea::start()?;` then drive it with the control methods below
//! and point a client at [`Gitea::api_url`].

mod api;
pub mod clock;
pub mod digest;
mod hooks;
mod render;
mod statuses;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use serde::{Deserialize, Serialize};

use crate::http::{FaultRule, Logged, Request, Response, Server};

pub use hooks::Delivery;

/// Which Gitea's payload and headers a hook mimics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum HookVersion {
    /// No `pull_request` in `IssueCommentPayload` (added in 1.23, #26178), no `draft` or
    /// `html_url` in the issue's `pull_request` meta, no installation-target header.
    #[serde(rename = "1.21", alias = "V1_21", alias = "v1.21")]
    V1_21,
    #[default]
    #[serde(rename = "1.24", alias = "V1_24", alias = "v1.24")]
    V1_24,
}

/// `[ui] REACTIONS` default (`modules/setting/ui.go`).
pub const DEFAULT_REACTIONS: &[&str] = &[
    "+1", "-1", "laugh", "hooray", "confused", "heart", "rocket", "eyes",
];
/// `[repository.pull-request] WORK_IN_PROGRESS_PREFIXES` default (`modules/setting/repository.go`).
pub const DEFAULT_WIP_PREFIXES: &[&str] = &["WIP:", "[WIP]"];

/// How to start a stand-in.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// `0` = any free port.
    pub port: u16,
    /// `[server] ROOT_URL`; default `http://127.0.0.1:PORT/`.
    pub root_url: Option<String>,
    /// `DEFAULT_UI_LOCATION` as seconds east of UTC; 0 renders `Z`.
    pub tz_offset_secs: i32,
    /// `[api] MAX_RESPONSE_ITEMS`, which admins lower; 0 = Gitea's default, 50.
    pub max_response_items: u32,
}

#[derive(Clone, Debug)]
pub(crate) struct User {
    pub id: i64,
    pub login: String,
    pub full_name: String,
    pub email: String,
    pub is_admin: bool,
    pub is_org: bool,
    pub created: i64,
}

#[derive(Clone, Debug)]
pub(crate) struct Member {
    pub org_id: i64,
    pub user_id: i64,
    pub public: bool,
}

#[derive(Clone, Debug)]
pub(crate) struct Repo {
    pub id: i64,
    pub owner_id: i64,
    pub name: String,
    pub private: bool,
    pub fork: bool,
    pub parent_id: Option<i64>,
    pub default_branch: String,
    pub branches: BTreeMap<String, String>,
    pub next_index: i64,
    pub created: i64,
}

#[derive(Clone, Debug)]
pub(crate) struct Pull {
    pub id: i64,
    pub head_repo_id: i64,
    pub head_branch: String,
    /// What `refs/pull/N/head` in the base repo points at.
    pub head_sha: String,
    pub base_branch: String,
    pub merge_base: String,
}

#[derive(Clone, Debug)]
pub(crate) struct Issue {
    pub id: i64,
    pub repo_id: i64,
    pub index: i64,
    pub poster_id: i64,
    pub title: String,
    pub body: String,
    pub closed: Option<i64>,
    pub created: i64,
    pub updated: i64,
    pub pull: Option<Pull>,
}

/// A plain comment (`models/issues/comment.go` `CommentType` 0: the only kind made here).
#[derive(Clone, Debug)]
pub(crate) struct Comment {
    pub id: i64,
    pub issue_id: i64,
    pub poster_id: i64,
    pub body: String,
    pub created: i64,
    pub updated: i64,
}

#[derive(Clone, Debug)]
pub(crate) struct Reaction {
    pub comment_id: i64,
    pub user_id: i64,
    pub content: String,
    pub created: i64,
}

#[derive(Clone, Debug)]
pub(crate) struct Token {
    pub token: String,
    pub user_id: i64,
    pub scopes: Vec<String>,
}

/// `models/activities/notification.go`: status 1 unread, 2 read, 3 pinned.
#[derive(Clone, Debug)]
pub(crate) struct Notification {
    pub id: i64,
    pub user_id: i64,
    pub repo_id: i64,
    pub issue_id: i64,
    pub comment_id: i64,
    pub status: u8,
    pub updated: i64,
}

#[derive(Clone, Debug)]
pub(crate) struct Hook {
    pub id: i64,
    pub repo_id: i64,
    pub url: String,
    pub secret: String,
    pub version: HookVersion,
    pub events: Vec<String>,
}

/// Everything the stand-in knows. One lock: requests are few and short.
pub(crate) struct State {
    pub root_url: String,
    pub tz_offset: i32,
    /// `[api] MAX_RESPONSE_ITEMS`: the largest page.
    pub max_items: usize,
    pub fixed_now: Option<i64>,
    pub next_id: i64,
    pub users: Vec<User>,
    /// Old lowercase login → user id (`user_redirect` table).
    pub redirects: Vec<(String, i64)>,
    pub members: Vec<Member>,
    pub repos: Vec<Repo>,
    pub collaborators: Vec<(i64, i64)>,
    pub issues: Vec<Issue>,
    pub comments: Vec<Comment>,
    pub next_comment_id: i64,
    pub reactions: Vec<Reaction>,
    pub tokens: Vec<Token>,
    pub watches: Vec<(i64, i64, i64)>, // (user, repo, since)
    pub notifications: Vec<Notification>,
    pub hooks: Vec<Hook>,
    pub statuses: Vec<statuses::CommitStatus>,
    pub allowed_reactions: Vec<String>,
    pub wip_prefixes: Vec<String>,
}

impl State {
    pub fn now(&self) -> i64 {
        self.fixed_now.unwrap_or_else(clock::real_now)
    }

    pub fn time(&self, unix: i64) -> String {
        clock::format_rfc3339(unix, self.tz_offset)
    }

    pub fn next(&mut self) -> i64 {
        self.next_id += 1;
        self.next_id
    }

    pub fn user(&self, id: i64) -> Option<&User> {
        self.users.iter().find(|u| u.id == id)
    }

    pub fn user_by_name(&self, name: &str) -> Option<&User> {
        self.users
            .iter()
            .find(|u| u.login.eq_ignore_ascii_case(name))
    }

    /// The user a renamed login now belongs to (`models/user/redirect.go` `LookupUserRedirect`).
    pub fn redirect(&self, name: &str) -> Option<&User> {
        let lower = name.to_lowercase();
        let id = self.redirects.iter().rev().find(|(o, _)| *o == lower)?.1;
        self.user(id)
    }

    pub fn repo(&self, id: i64) -> Option<&Repo> {
        self.repos.iter().find(|r| r.id == id)
    }

    pub fn repo_by_name(&self, owner: &str, name: &str) -> Option<&Repo> {
        let owner = self.user_by_name(owner)?;
        self.repos
            .iter()
            .find(|r| r.owner_id == owner.id && r.name.eq_ignore_ascii_case(name))
    }

    pub fn issue(&self, id: i64) -> Option<&Issue> {
        self.issues.iter().find(|i| i.id == id)
    }

    pub fn issue_by_index(&self, repo_id: i64, index: i64) -> Option<&Issue> {
        self.issues
            .iter()
            .find(|i| i.repo_id == repo_id && i.index == index)
    }

    pub fn is_member(&self, org_id: i64, user_id: i64) -> bool {
        self.members
            .iter()
            .any(|m| m.org_id == org_id && m.user_id == user_id)
    }

    pub fn is_admin(&self, user_id: i64) -> bool {
        self.user(user_id).is_some_and(|u| u.is_admin)
    }

    /// Read access: public, or owner / org member / collaborator / admin.
    pub fn can_read(&self, doer: Option<i64>, repo: &Repo) -> bool {
        !repo.private || doer.is_some_and(|d| self.can_write(Some(d), repo))
    }

    /// Write access. Simplification: every member of the owning org has write access (real
    /// Gitea grants it through teams).
    pub fn can_write(&self, doer: Option<i64>, repo: &Repo) -> bool {
        let Some(d) = doer else { return false };
        self.is_admin(d)
            || repo.owner_id == d
            || self.is_member(repo.owner_id, d)
            || self.collaborators.contains(&(repo.id, d))
    }

    pub fn is_wip(&self, title: &str) -> bool {
        let t = title.to_uppercase();
        self.wip_prefixes
            .iter()
            .any(|p| t.starts_with(&p.to_uppercase()))
    }
}

fn find_user(s: &State, login: &str) -> Result<i64> {
    s.user_by_name(login)
        .map(|u| u.id)
        .ok_or_else(|| anyhow!("no user {login:?}"))
}

fn find_repo(s: &State, owner: &str, repo: &str) -> Result<i64> {
    s.repo_by_name(owner, repo)
        .map(|r| r.id)
        .ok_or_else(|| anyhow!("no repo {owner}/{repo}"))
}

fn find_issue(s: &State, owner: &str, repo: &str, index: i64) -> Result<usize> {
    let repo_id = find_repo(s, owner, repo)?;
    s.issues
        .iter()
        .position(|i| i.repo_id == repo_id && i.index == index)
        .ok_or_else(|| anyhow!("no issue or pull {owner}/{repo}#{index}"))
}

/// What a new pull request looks like (control surface).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PullSpec {
    pub poster: String,
    pub title: String,
    #[serde(default)]
    pub body: String,
    /// `owner/name` of the head repo; default the base repo.
    #[serde(default)]
    pub head_repo: Option<String>,
    pub head_branch: String,
    pub head_sha: String,
    #[serde(default)]
    pub base_branch: Option<String>,
}

/// What a new webhook looks like (control surface).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HookSpec {
    pub url: String,
    #[serde(default)]
    pub secret: String,
    #[serde(default)]
    pub version: HookVersion,
    /// Gitea event names: `issue_comment`, `pull_request_comment`, `pull_request`, `issues`,
    /// or `*` for every event (`send_everything`). Default: `["*"]`.
    #[serde(default)]
    pub events: Vec<String>,
}

/// A running stand-in Gitea.
pub struct Gitea {
    server: Server,
    state: Arc<Mutex<State>>,
    deliveries: Arc<Mutex<Vec<Delivery>>>,
}

impl Gitea {
    /// Starts on `127.0.0.1:0` with UTC times.
    pub fn start() -> Result<Gitea> {
        Gitea::start_with(Options::default())
    }

    pub fn start_with(opts: Options) -> Result<Gitea> {
        let state = Arc::new(Mutex::new(State {
            root_url: String::new(),
            tz_offset: opts.tz_offset_secs,
            max_items: match opts.max_response_items {
                0 => 50,
                n => n as usize,
            },
            fixed_now: None,
            next_id: 0,
            users: Vec::new(),
            redirects: Vec::new(),
            members: Vec::new(),
            repos: Vec::new(),
            collaborators: Vec::new(),
            issues: Vec::new(),
            comments: Vec::new(),
            next_comment_id: 1000,
            reactions: Vec::new(),
            tokens: Vec::new(),
            watches: Vec::new(),
            notifications: Vec::new(),
            hooks: Vec::new(),
            statuses: Vec::new(),
            allowed_reactions: DEFAULT_REACTIONS.iter().map(|s| s.to_string()).collect(),
            wip_prefixes: DEFAULT_WIP_PREFIXES.iter().map(|s| s.to_string()).collect(),
        }));
        let deliveries = Arc::new(Mutex::new(Vec::new()));
        let (hs, hd) = (state.clone(), deliveries.clone());
        let handler = Arc::new(move |req: &Request| -> Response {
            let parts = Parts {
                state: hs.clone(),
                deliveries: hd.clone(),
            };
            api::handle(&parts, req)
        });
        let server = Server::start(opts.port, handler)?;
        {
            let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
            let mut root = opts
                .root_url
                .unwrap_or_else(|| format!("{}/", server.url()));
            if !root.ends_with('/') {
                root.push('/');
            }
            s.root_url = root;
        }
        Ok(Gitea {
            server,
            state,
            deliveries,
        })
    }

    fn parts(&self) -> Parts {
        Parts {
            state: self.state.clone(),
            deliveries: self.deliveries.clone(),
        }
    }

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// `http://127.0.0.1:PORT/api/v1`, what `GiteaClient::new` takes.
    pub fn api_url(&self) -> String {
        format!("{}/api/v1", self.server.url())
    }

    /// `ROOT_URL`, with its trailing slash, as web URLs in answers start.
    pub fn root_url(&self) -> String {
        self.parts().lock().root_url.clone()
    }

    pub fn server(&self) -> &Server {
        &self.server
    }

    pub fn requests(&self) -> Vec<Logged> {
        self.server.requests()
    }

    pub fn clear_requests(&self) {
        self.server.clear_requests()
    }

    pub fn inject(&self, rule: FaultRule) {
        self.server.inject(rule)
    }

    pub fn clear_faults(&self) {
        self.server.clear_faults()
    }

    pub fn create_user(&self, login: &str) -> Result<i64> {
        self.parts().create_user(login, "", "", false, false)
    }

    pub fn create_admin(&self, login: &str) -> Result<i64> {
        self.parts().create_user(login, "", "", true, false)
    }

    pub fn create_org(&self, name: &str) -> Result<i64> {
        self.parts().create_user(name, "", "", false, true)
    }

    /// A token for `login` with scopes such as `read:issue`, `write:repository`, `all`.
    pub fn create_token(&self, login: &str, scopes: &[&str]) -> Result<String> {
        let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
        self.parts().create_token(login, &scopes)
    }

    pub fn set_member(&self, org: &str, login: &str, public: bool) -> Result<()> {
        self.parts().set_member(org, login, public)
    }

    pub fn remove_member(&self, org: &str, login: &str) -> Result<()> {
        self.parts().remove_member(org, login)
    }

    pub fn rename_user(&self, old: &str, new: &str) -> Result<()> {
        self.parts().rename_user(old, new)
    }

    /// A repo with a `main` branch at a fixed sha.
    pub fn create_repo(&self, owner: &str, name: &str, private: bool) -> Result<i64> {
        self.parts().create_repo(owner, name, private, None)
    }

    pub fn fork_repo(&self, base: &str, new_owner: &str) -> Result<i64> {
        self.parts().create_repo(
            new_owner,
            base.rsplit('/').next().unwrap_or(base),
            false,
            Some(base),
        )
    }

    pub fn delete_repo(&self, owner: &str, name: &str) -> Result<()> {
        self.parts().delete_repo(owner, name)
    }

    pub fn add_collaborator(&self, owner: &str, repo: &str, login: &str) -> Result<()> {
        self.parts().add_collaborator(owner, repo, login)
    }

    pub fn push_branch(&self, owner: &str, repo: &str, branch: &str, sha: &str) -> Result<()> {
        self.parts().push_branch(owner, repo, branch, sha)
    }

    /// Opens a pull request on `owner/repo`; pushes the head branch first. Returns its number.
    pub fn open_pull(&self, owner: &str, repo: &str, spec: &PullSpec) -> Result<i64> {
        self.parts().open_pull(owner, repo, spec)
    }

    pub fn open_issue(&self, owner: &str, repo: &str, poster: &str, title: &str) -> Result<i64> {
        self.parts().open_issue(owner, repo, poster, title)
    }

    pub fn close(&self, owner: &str, repo: &str, index: i64) -> Result<()> {
        self.parts().set_closed(owner, repo, index, true)
    }

    /// A WIP title keeps repo watchers from being notified (the notifications tests).
    pub fn set_title(&self, owner: &str, repo: &str, index: i64, title: &str) -> Result<()> {
        self.parts().set_title(owner, repo, index, title)
    }

    /// Posts a comment as `login` (no permission checks), firing notifications and webhooks
    /// as the API route does. Returns the comment id.
    pub fn comment(
        &self,
        owner: &str,
        repo: &str,
        index: i64,
        login: &str,
        body: &str,
    ) -> Result<i64> {
        self.parts().comment(owner, repo, index, login, body)
    }

    /// Edits a comment as `login`, firing an `edited` webhook when the body changed.
    pub fn edit_comment(&self, id: i64, login: &str, body: &str) -> Result<()> {
        self.parts().edit_comment(id, login, body)
    }

    pub fn add_webhook(&self, owner: &str, repo: &str, spec: &HookSpec) -> Result<i64> {
        self.parts().add_webhook(owner, repo, spec)
    }

    pub fn watch(&self, login: &str, owner: &str, repo: &str) -> Result<()> {
        self.parts().watch(login, owner, repo)
    }

    /// Freezes the clock at `unix` seconds.
    pub fn set_now(&self, unix: i64) {
        self.parts().lock().fixed_now = Some(unix);
    }

    /// Moves the clock on (freezing it first if it ran in real time).
    pub fn advance(&self, secs: i64) {
        let p = self.parts();
        let mut s = p.lock();
        let now = s.now();
        s.fixed_now = Some(now + secs);
    }

    pub fn real_time(&self) {
        self.parts().lock().fixed_now = None;
    }

    pub fn now(&self) -> i64 {
        self.parts().lock().now()
    }

    /// Every webhook delivery so far (one attempt each), oldest first.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.deliveries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits until `n` deliveries have finished (answered or failed), at most `timeout`.
    pub fn wait_deliveries(&self, n: usize, timeout: Duration) -> Vec<Delivery> {
        let deadline = Instant::now() + timeout;
        loop {
            let d = self.deliveries();
            let done = d.iter().filter(|d| d.finished()).count();
            if done >= n || Instant::now() >= deadline {
                return d;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The shared parts a request handler and the control methods work on.
#[derive(Clone)]
pub(crate) struct Parts {
    pub state: Arc<Mutex<State>>,
    pub deliveries: Arc<Mutex<Vec<Delivery>>>,
}

impl Parts {
    pub fn lock(&self) -> MutexGuard<'_, State> {
        // A panic in one handler must not take every later request down with it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn create_user(
        &self,
        login: &str,
        full: &str,
        email: &str,
        admin: bool,
        org: bool,
    ) -> Result<i64> {
        if login.is_empty() || login.contains(['/', ' ']) {
            bail!("bad login {login:?}");
        }
        let mut s = self.lock();
        if s.user_by_name(login).is_some() {
            bail!("user {login:?} exists");
        }
        let id = s.next();
        let now = s.now();
        s.users.push(User {
            id,
            login: login.to_owned(),
            full_name: full.to_owned(),
            email: if email.is_empty() {
                format!("{}@example.org", login.to_lowercase())
            } else {
                email.to_owned()
            },
            is_admin: admin,
            is_org: org,
            created: now,
        });
        Ok(id)
    }

    fn create_token(&self, login: &str, scopes: &[String]) -> Result<String> {
        let mut s = self.lock();
        let user_id = find_user(&s, login)?;
        for sc in scopes {
            if !api::valid_scope(sc) {
                bail!("unknown token scope {sc:?}");
            }
        }
        let token = digest::token();
        s.tokens.push(Token {
            token: token.clone(),
            user_id,
            scopes: scopes.to_vec(),
        });
        Ok(token)
    }

    fn set_member(&self, org: &str, login: &str, public: bool) -> Result<()> {
        let mut s = self.lock();
        let org_id = find_user(&s, org)?;
        let user_id = find_user(&s, login)?;
        if !s.user(org_id).is_some_and(|u| u.is_org) {
            bail!("{org:?} is not an org");
        }
        s.members
            .retain(|m| !(m.org_id == org_id && m.user_id == user_id));
        s.members.push(Member {
            org_id,
            user_id,
            public,
        });
        Ok(())
    }

    fn remove_member(&self, org: &str, login: &str) -> Result<()> {
        let mut s = self.lock();
        let org_id = find_user(&s, org)?;
        let user_id = find_user(&s, login)?;
        s.members
            .retain(|m| !(m.org_id == org_id && m.user_id == user_id));
        Ok(())
    }

    fn rename_user(&self, old: &str, new: &str) -> Result<()> {
        let mut s = self.lock();
        let id = find_user(&s, old)?;
        if s.user_by_name(new).is_some() {
            bail!("user {new:?} exists");
        }
        let old_login = s
            .user(id)
            .map(|u| u.login.to_lowercase())
            .unwrap_or_default();
        s.redirects.push((old_login, id));
        // A login given back up no longer redirects (`user_model.DeleteUserRedirect`).
        let new_lower = new.to_lowercase();
        s.redirects.retain(|(o, _)| *o != new_lower);
        if let Some(u) = s.users.iter_mut().find(|u| u.id == id) {
            u.login = new.to_owned();
        }
        Ok(())
    }

    fn create_repo(
        &self,
        owner: &str,
        name: &str,
        private: bool,
        fork_of: Option<&str>,
    ) -> Result<i64> {
        let mut s = self.lock();
        let owner_id = find_user(&s, owner)?;
        if s.repo_by_name(owner, name).is_some() {
            bail!("repo {owner}/{name} exists");
        }
        let (parent_id, branches, private) = match fork_of {
            Some(full) => {
                let (o, n) = full
                    .split_once('/')
                    .ok_or_else(|| anyhow!("fork_of must be owner/name"))?;
                let parent = s
                    .repo_by_name(o, n)
                    .ok_or_else(|| anyhow!("no repo {full}"))?;
                (Some(parent.id), parent.branches.clone(), parent.private)
            }
            None => {
                let mut b = BTreeMap::new();
                b.insert("main".to_owned(), format!("{:040x}", 0xba5e_u64));
                (None, b, private)
            }
        };
        let id = s.next();
        let now = s.now();
        s.repos.push(Repo {
            id,
            owner_id,
            name: name.to_owned(),
            private,
            fork: parent_id.is_some(),
            parent_id,
            default_branch: "main".to_owned(),
            branches,
            next_index: 1,
            created: now,
        });
        Ok(id)
    }

    fn delete_repo(&self, owner: &str, name: &str) -> Result<()> {
        let mut s = self.lock();
        let id = find_repo(&s, owner, name)?;
        // Gitea closes the open PRs whose head is in the deleted repository, on other repos
        // (services/repository/repository.go DeleteRepository → services/pull/pull.go
        // CloseRepoBranchesPulls, v1.26.0).
        let now = s.now();
        for i in s.issues.iter_mut() {
            let from_here = i.pull.as_ref().is_some_and(|p| p.head_repo_id == id);
            if from_here && i.repo_id != id && i.closed.is_none() {
                i.closed = Some(now);
                i.updated = now;
            }
        }
        s.repos.retain(|r| r.id != id);
        s.hooks.retain(|h| h.repo_id != id);
        s.watches.retain(|w| w.1 != id);
        Ok(())
    }

    fn add_collaborator(&self, owner: &str, repo: &str, login: &str) -> Result<()> {
        let mut s = self.lock();
        let r = find_repo(&s, owner, repo)?;
        let u = find_user(&s, login)?;
        s.collaborators.push((r, u));
        Ok(())
    }

    fn push_branch(&self, owner: &str, repo: &str, branch: &str, sha: &str) -> Result<()> {
        let mut s = self.lock();
        let r = find_repo(&s, owner, repo)?;
        if let Some(repo) = s.repos.iter_mut().find(|x| x.id == r) {
            repo.branches.insert(branch.to_owned(), sha.to_owned());
        }
        Ok(())
    }

    fn new_issue(
        &self,
        s: &mut State,
        repo_id: i64,
        poster: i64,
        title: &str,
        body: &str,
        pull: Option<Pull>,
    ) -> i64 {
        let id = s.next();
        let now = s.now();
        let repo = s.repos.iter_mut().find(|r| r.id == repo_id);
        let index = repo.map(|r| {
            r.next_index += 1;
            r.next_index - 1
        });
        let index = index.unwrap_or(1);
        s.issues.push(Issue {
            id,
            repo_id,
            index,
            poster_id: poster,
            title: title.to_owned(),
            body: body.to_owned(),
            closed: None,
            created: now,
            updated: now,
            pull,
        });
        // services/uinotification: a new issue or pull notifies the repo's watchers too.
        notify(s, id, 0, poster);
        index
    }

    fn open_pull(&self, owner: &str, repo: &str, spec: &PullSpec) -> Result<i64> {
        let mut s = self.lock();
        let base_id = find_repo(&s, owner, repo)?;
        let poster = find_user(&s, &spec.poster)?;
        let head_id = match &spec.head_repo {
            Some(full) => {
                let (o, n) = full
                    .split_once('/')
                    .ok_or_else(|| anyhow!("head_repo must be owner/name"))?;
                find_repo(&s, o, n)?
            }
            None => base_id,
        };
        let base = s.repo(base_id).ok_or_else(|| anyhow!("repo vanished"))?;
        let base_branch = spec
            .base_branch
            .clone()
            .unwrap_or_else(|| base.default_branch.clone());
        let merge_base = base
            .branches
            .get(&base_branch)
            .cloned()
            .ok_or_else(|| anyhow!("no base branch {base_branch}"))?;
        if let Some(h) = s.repos.iter_mut().find(|r| r.id == head_id) {
            h.branches
                .insert(spec.head_branch.clone(), spec.head_sha.clone());
        }
        let pull = Pull {
            id: s.next(),
            head_repo_id: head_id,
            head_branch: spec.head_branch.clone(),
            head_sha: spec.head_sha.clone(),
            base_branch,
            merge_base,
        };
        Ok(self.new_issue(&mut s, base_id, poster, &spec.title, &spec.body, Some(pull)))
    }

    fn open_issue(&self, owner: &str, repo: &str, poster: &str, title: &str) -> Result<i64> {
        let mut s = self.lock();
        let repo_id = find_repo(&s, owner, repo)?;
        let poster = find_user(&s, poster)?;
        Ok(self.new_issue(&mut s, repo_id, poster, title, "", None))
    }

    fn set_closed(&self, owner: &str, repo: &str, index: i64, closed: bool) -> Result<()> {
        let mut s = self.lock();
        let i = find_issue(&s, owner, repo, index)?;
        let now = s.now();
        s.issues[i].closed = closed.then_some(now);
        s.issues[i].updated = now;
        Ok(())
    }

    fn set_title(&self, owner: &str, repo: &str, index: i64, title: &str) -> Result<()> {
        let mut s = self.lock();
        let i = find_issue(&s, owner, repo, index)?;
        let now = s.now();
        s.issues[i].title = title.to_owned();
        s.issues[i].updated = now;
        Ok(())
    }

    fn comment(&self, owner: &str, repo: &str, index: i64, login: &str, body: &str) -> Result<i64> {
        let mut s = self.lock();
        let i = find_issue(&s, owner, repo, index)?;
        let doer = find_user(&s, login)?;
        let issue_id = s.issues[i].id;
        Ok(self.add_comment(&mut s, issue_id, doer, body))
    }

    /// Creates a comment and does what `services/issue/comments.go` `CreateIssueComment`
    /// sets off: issue `updated_unix`, notifications, webhooks.
    pub(crate) fn add_comment(&self, s: &mut State, issue_id: i64, doer: i64, body: &str) -> i64 {
        s.next_comment_id += 1;
        let id = s.next_comment_id;
        let now = s.now();
        s.comments.push(Comment {
            id,
            issue_id,
            poster_id: doer,
            body: body.to_owned(),
            created: now,
            updated: now,
        });
        if let Some(issue) = s.issues.iter_mut().find(|i| i.id == issue_id) {
            issue.updated = now;
        }
        notify(s, issue_id, id, doer);
        hooks::fire(self, s, id, doer, None);
        id
    }

    fn edit_comment(&self, id: i64, login: &str, body: &str) -> Result<()> {
        let mut s = self.lock();
        let doer = find_user(&s, login)?;
        if !s.comments.iter().any(|c| c.id == id) {
            bail!("no comment {id}");
        }
        self.update_comment(&mut s, id, doer, body);
        Ok(())
    }

    /// Saves a new body unless it is unchanged (`routers/api/v1/repo/issue_comment.go`
    /// `editIssueComment` compares first), then fires an `edited` webhook.
    pub(crate) fn update_comment(&self, s: &mut State, id: i64, doer: i64, body: &str) {
        let now = s.now();
        let Some(c) = s.comments.iter_mut().find(|c| c.id == id) else {
            return;
        };
        if c.body == body {
            return;
        }
        let old = std::mem::replace(&mut c.body, body.to_owned());
        c.updated = now;
        hooks::fire(self, s, id, doer, Some(old));
    }

    fn add_webhook(&self, owner: &str, repo: &str, spec: &HookSpec) -> Result<i64> {
        let mut s = self.lock();
        let repo_id = find_repo(&s, owner, repo)?;
        let id = s.next();
        s.hooks.push(Hook {
            id,
            repo_id,
            url: spec.url.clone(),
            secret: spec.secret.clone(),
            version: spec.version,
            events: if spec.events.is_empty() {
                vec!["*".to_owned()]
            } else {
                spec.events.clone()
            },
        });
        Ok(id)
    }

    pub(crate) fn watch(&self, login: &str, owner: &str, repo: &str) -> Result<()> {
        let mut s = self.lock();
        let u = find_user(&s, login)?;
        let r = find_repo(&s, owner, repo)?;
        let now = s.now();
        if !s.watches.iter().any(|w| w.0 == u && w.1 == r) {
            s.watches.push((u, r, now));
        }
        Ok(())
    }
}

/// One thread per issue per user, mirroring `models/activities/notification_list.go`
/// `createOrUpdateIssueNotifications`: participants (poster, commenters) and repo watchers
/// (not for WIP-titled pulls, #14663), never the author, only users who can read the repo.
/// A read thread turns unread and takes the new comment id; an unread one is only touched.
/// A new issue or pull notifies with comment id 0.
/// Done synchronously here; real Gitea queues it (`services/uinotification/notify.go`).
fn notify(s: &mut State, issue_id: i64, comment_id: i64, doer: i64) {
    let Some(issue) = s.issue(issue_id).cloned() else {
        return;
    };
    let Some(repo) = s.repo(issue.repo_id).cloned() else {
        return;
    };
    let mut to: Vec<i64> = vec![issue.poster_id];
    to.extend(
        s.comments
            .iter()
            .filter(|c| c.issue_id == issue_id)
            .map(|c| c.poster_id),
    );
    if !(issue.pull.is_some() && s.is_wip(&issue.title)) {
        to.extend(s.watches.iter().filter(|w| w.1 == repo.id).map(|w| w.0));
    }
    to.sort_unstable();
    to.dedup();
    let now = s.now();
    for user in to {
        if user == doer || !s.can_read(Some(user), &repo) || s.user(user).is_none_or(|u| u.is_org) {
            continue;
        }
        if let Some(n) = s
            .notifications
            .iter_mut()
            .find(|n| n.user_id == user && n.issue_id == issue_id)
        {
            if n.status == 2 {
                n.status = 1;
                n.comment_id = comment_id;
            }
            n.updated = now;
        } else {
            let id = s.next();
            s.notifications.push(Notification {
                id,
                user_id: user,
                repo_id: repo.id,
                issue_id,
                comment_id,
                status: 1,
                updated: now,
            });
        }
    }
}
