//! What a test does to a forge, whether it is the stand-in Gitea or the real one: the same test
//! runs against both (docs/fidelity.md), so the stand-in stays checked against Gitea itself.

use anyhow::Result;

use crate::gitea::{Gitea, HookSpec, HookVersion, PullSpec};
use crate::upstream::gitea::RealGitea;

pub trait Forge {
    /// What the test's messages call it: "stand-in Gitea" or "Gitea".
    fn kind(&self) -> &'static str;
    /// The Gitea release it behaves as: the stand-in mirrors v1.24.7 (the forge's, read from
    /// its source), the real one is what `dev/upstream` builds.
    fn version(&self) -> &'static str;
    /// `http://127.0.0.1:PORT`, no trailing slash.
    fn url(&self) -> String;
    fn api_url(&self) -> String {
        format!("{}/api/v1", self.url())
    }
    fn create_user(&self, login: &str) -> Result<()>;
    fn create_org(&self, name: &str) -> Result<()>;
    fn set_member(&self, org: &str, login: &str, public: bool) -> Result<()>;
    fn create_token(&self, login: &str, scopes: &[&str]) -> Result<String>;
    fn create_repo(&self, owner: &str, name: &str, private: bool) -> Result<()>;
    fn fork_repo(&self, base: &str, new_owner: &str) -> Result<()>;
    fn delete_repo(&self, owner: &str, name: &str) -> Result<()>;
    /// Opens a PR; the answer is its number and head SHA. The stand-in takes `spec.head_sha`;
    /// the real Gitea makes a commit of its own.
    fn open_pull(&self, owner: &str, repo: &str, spec: &PullSpec) -> Result<(i64, String)>;
    fn open_issue(&self, owner: &str, repo: &str, poster: &str, title: &str) -> Result<i64>;
    fn close(&self, owner: &str, repo: &str, index: i64) -> Result<()>;
    fn comment(&self, owner: &str, repo: &str, index: i64, login: &str, body: &str) -> Result<i64>;
    fn edit_comment(&self, owner: &str, repo: &str, id: i64, login: &str, body: &str)
        -> Result<()>;
    /// A JSON webhook signed with `secret`, subscribed to `events`.
    fn add_webhook(
        &self,
        owner: &str,
        repo: &str,
        url: &str,
        secret: &str,
        events: &[&str],
    ) -> Result<()>;
}

/// The forge tests' usual scene: org `acme` with repo `app`, maintainer `alice` and bot `ci`
/// (members), outsider `bob` with his fork `bob/app`, and one PR from bob's fork (head
/// `head_sha` on the stand-in; the real Gitea makes a commit of its own). Returns the PR's number.
pub fn acme_scene<F: Forge + ?Sized>(g: &F, head_sha: &str) -> Result<i64> {
    g.create_org("acme")?;
    for u in ["alice", "bob", "ci"] {
        g.create_user(u)?;
    }
    g.set_member("acme", "alice", false)?;
    g.set_member("acme", "ci", false)?;
    g.create_repo("acme", "app", false)?;
    g.fork_repo("acme/app", "bob")?;
    let (n, _) = g.open_pull(
        "acme",
        "app",
        &PullSpec {
            poster: "bob".into(),
            title: "Fix x".into(),
            body: String::new(),
            head_repo: Some("bob/app".into()),
            head_branch: "fix-x".into(),
            head_sha: head_sha.into(),
            base_branch: None,
        },
    )?;
    Ok(n)
}

impl Forge for Gitea {
    fn kind(&self) -> &'static str {
        "stand-in Gitea"
    }
    fn version(&self) -> &'static str {
        "1.24.7"
    }
    fn url(&self) -> String {
        Gitea::url(self)
    }
    fn create_user(&self, login: &str) -> Result<()> {
        Gitea::create_user(self, login).map(drop)
    }
    fn create_org(&self, name: &str) -> Result<()> {
        Gitea::create_org(self, name).map(drop)
    }
    fn set_member(&self, org: &str, login: &str, public: bool) -> Result<()> {
        Gitea::set_member(self, org, login, public)
    }
    fn create_token(&self, login: &str, scopes: &[&str]) -> Result<String> {
        Gitea::create_token(self, login, scopes)
    }
    fn create_repo(&self, owner: &str, name: &str, private: bool) -> Result<()> {
        Gitea::create_repo(self, owner, name, private).map(drop)
    }
    fn fork_repo(&self, base: &str, new_owner: &str) -> Result<()> {
        Gitea::fork_repo(self, base, new_owner).map(drop)
    }
    fn delete_repo(&self, owner: &str, name: &str) -> Result<()> {
        Gitea::delete_repo(self, owner, name)
    }
    fn open_pull(&self, owner: &str, repo: &str, spec: &PullSpec) -> Result<(i64, String)> {
        // The stand-in pushes the head branch itself.
        let index = Gitea::open_pull(self, owner, repo, spec)?;
        Ok((index, spec.head_sha.clone()))
    }
    fn open_issue(&self, owner: &str, repo: &str, poster: &str, title: &str) -> Result<i64> {
        Gitea::open_issue(self, owner, repo, poster, title)
    }
    fn close(&self, owner: &str, repo: &str, index: i64) -> Result<()> {
        Gitea::close(self, owner, repo, index)
    }
    fn comment(&self, owner: &str, repo: &str, index: i64, login: &str, body: &str) -> Result<i64> {
        Gitea::comment(self, owner, repo, index, login, body)
    }
    fn edit_comment(
        &self,
        _owner: &str,
        _repo: &str,
        id: i64,
        login: &str,
        body: &str,
    ) -> Result<()> {
        Gitea::edit_comment(self, id, login, body)
    }
    fn add_webhook(
        &self,
        owner: &str,
        repo: &str,
        url: &str,
        secret: &str,
        events: &[&str],
    ) -> Result<()> {
        let spec = HookSpec {
            url: url.into(),
            secret: secret.into(),
            version: HookVersion::V1_24,
            events: events.iter().map(|e| e.to_string()).collect(),
        };
        Gitea::add_webhook(self, owner, repo, &spec).map(drop)
    }
}

impl Forge for RealGitea {
    fn kind(&self) -> &'static str {
        "Gitea"
    }
    fn version(&self) -> &'static str {
        crate::upstream::gitea::VERSION
    }
    fn url(&self) -> String {
        RealGitea::url(self)
    }
    fn create_user(&self, login: &str) -> Result<()> {
        RealGitea::create_user(self, login)
    }
    fn create_org(&self, name: &str) -> Result<()> {
        RealGitea::create_org(self, name)
    }
    fn set_member(&self, org: &str, login: &str, public: bool) -> Result<()> {
        RealGitea::set_member(self, org, login, public)
    }
    fn create_token(&self, login: &str, scopes: &[&str]) -> Result<String> {
        RealGitea::create_token(self, login, scopes)
    }
    fn create_repo(&self, owner: &str, name: &str, private: bool) -> Result<()> {
        RealGitea::create_repo(self, owner, name, private)
    }
    fn fork_repo(&self, base: &str, new_owner: &str) -> Result<()> {
        RealGitea::fork_repo(self, base, new_owner)
    }
    fn delete_repo(&self, owner: &str, name: &str) -> Result<()> {
        RealGitea::delete_repo(self, owner, name)
    }
    fn open_pull(&self, owner: &str, repo: &str, spec: &PullSpec) -> Result<(i64, String)> {
        RealGitea::open_pull(self, owner, repo, spec)
    }
    fn open_issue(&self, owner: &str, repo: &str, poster: &str, title: &str) -> Result<i64> {
        RealGitea::open_issue(self, owner, repo, poster, title)
    }
    fn close(&self, owner: &str, repo: &str, index: i64) -> Result<()> {
        RealGitea::close(self, owner, repo, index)
    }
    fn comment(&self, owner: &str, repo: &str, index: i64, login: &str, body: &str) -> Result<i64> {
        RealGitea::comment(self, owner, repo, index, login, body)
    }
    fn edit_comment(
        &self,
        owner: &str,
        repo: &str,
        id: i64,
        login: &str,
        body: &str,
    ) -> Result<()> {
        RealGitea::edit_comment(self, owner, repo, id, login, body)
    }
    fn add_webhook(
        &self,
        owner: &str,
        repo: &str,
        url: &str,
        secret: &str,
        events: &[&str],
    ) -> Result<()> {
        let events: Vec<String> = events.iter().map(|e| e.to_string()).collect();
        RealGitea::add_webhook(self, owner, repo, url, secret, &events).map(drop)
    }
}
