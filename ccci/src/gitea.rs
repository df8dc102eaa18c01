//! Typed client for the Gitea API v1 routes cc-ci uses (1.21–1.24), and the types of the
//! `issue_comment` webhook payload. Built on [`crate::api::Api`]: global timeout, no
//! redirects followed, body cap, errors naming route and status but never the token.

use std::fmt;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::clock::{parse_rfc3339, rfc3339};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::json;

use crate::api::{encode, Api, AuthScheme};
use crate::secret::Secret;

/// `[api] MAX_RESPONSE_ITEMS` default: Gitea silently caps `limit` there (an admin may set it
/// lower), so a client that treats "fewer than asked" as the last page stops early.
pub const MAX_PAGE_SIZE: u32 = 50;

// ---------------------------------------------------------------------------------------
// Times

/// A Gitea timestamp as unix seconds. Gitea writes RFC 3339 in the server's
/// `DEFAULT_UI_LOCATION` offset (`2025-03-01T11:00:00+01:00`); this keeps only the instant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time(pub i64);

impl<'de> Deserialize<'de> for Time {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Time, D::Error> {
        let s = String::deserialize(d)?;
        parse_rfc3339(&s)
            .map(Time)
            .map_err(serde::de::Error::custom)
    }
}

impl Serialize for Time {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&rfc3339(self.0))
    }
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&rfc3339(self.0))
    }
}

// ---------------------------------------------------------------------------------------
// Types (`modules/structs/*.go`); unknown fields are ignored, missing ones default.

/// `structs.User`. Key on `id`: `login` can be renamed.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct User {
    pub id: i64,
    pub login: String,
    pub full_name: String,
    pub email: String,
    pub avatar_url: String,
    pub html_url: String,
    pub is_admin: bool,
}

/// `structs.Repository` (the fields cc-ci reads).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Repository {
    pub id: i64,
    pub owner: Option<User>,
    pub name: String,
    pub full_name: String,
    pub private: bool,
    pub fork: bool,
    pub archived: bool,
    pub html_url: String,
    pub clone_url: String,
    pub ssh_url: String,
    pub default_branch: String,
    /// What the asking user may do; absent when asked anonymously.
    pub permissions: Option<Permission>,
}

/// `structs.Branch` (the fields cc-ci reads).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Branch {
    pub name: String,
    pub commit: BranchCommit,
}

/// `structs.PayloadCommit`, as a branch's head.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct BranchCommit {
    pub id: String,
}

/// `structs.Permission`: `push` is write access to the code, which commit statuses need.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Permission {
    pub admin: bool,
    pub push: bool,
    pub pull: bool,
}

/// `structs.CreateStatusOption`. `state` is `pending`, `success`, `error`, `failure` or
/// `warning`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CreateStatus {
    pub state: String,
    pub target_url: String,
    pub description: String,
    pub context: String,
}

/// What became of a commit status.
#[derive(Clone, Debug, PartialEq)]
pub enum StatusPost {
    Created,
    /// 403: the token may not set statuses here (no write on the code, or no
    /// `write:repository` scope); Gitea's message says which.
    Forbidden(String),
}

/// `structs.Comment`. The PR number is only in `pull_request_url`; see [`Comment::pull_number`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Comment {
    pub id: i64,
    #[serde(default)]
    pub html_url: String,
    #[serde(default)]
    pub pull_request_url: String,
    #[serde(default)]
    pub issue_url: String,
    #[serde(default)]
    pub user: Option<User>,
    #[serde(default)]
    pub body: String,
    pub created_at: Time,
    pub updated_at: Time,
}

/// The trailing number of `.../pulls/N` or `.../issues/N`.
fn trailing_number(url: &str, kind: &str) -> Option<i64> {
    let (head, n) = url.trim_end_matches('/').rsplit_once('/')?;
    if !head.ends_with(&format!("/{kind}"))
        || n.is_empty()
        || !n.bytes().all(|c| c.is_ascii_digit())
    {
        return None;
    }
    n.parse().ok()
}

impl Comment {
    /// The pull request number, from `pull_request_url` (`/pulls/(\d+)$`); `None` for a
    /// comment on a plain issue (whose `pull_request_url` is `""`).
    pub fn pull_number(&self) -> Option<i64> {
        trailing_number(&self.pull_request_url, "pulls")
    }

    /// The issue number for a comment on a plain issue.
    pub fn issue_number(&self) -> Option<i64> {
        trailing_number(&self.issue_url, "issues")
    }
}

/// `structs.PullRequestMeta` inside an Issue (`draft`, `html_url` from 1.22).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct PullRequestMeta {
    pub merged: bool,
    pub merged_at: Option<Time>,
    pub draft: bool,
    pub html_url: String,
}

/// `structs.RepositoryMeta` inside an Issue.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct RepositoryMeta {
    pub id: i64,
    pub name: String,
    pub owner: String,
    pub full_name: String,
}

/// `structs.Issue` (also what `GET /issues/{n}` answers for a pull).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Issue {
    pub id: i64,
    #[serde(default)]
    pub url: String,
    #[serde(default)]
    pub html_url: String,
    pub number: i64,
    #[serde(default)]
    pub user: Option<User>,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub is_locked: bool,
    #[serde(default)]
    pub comments: i64,
    #[serde(default)]
    pub pull_request: Option<PullRequestMeta>,
    #[serde(default)]
    pub repository: Option<RepositoryMeta>,
    pub created_at: Time,
    pub updated_at: Time,
    #[serde(default)]
    pub closed_at: Option<Time>,
}

/// `structs.PRBranchInfo`: `repo` is null and `repo_id` -1 once the head repo is deleted;
/// `ref` is `refs/pull/N/head` once the head branch is gone.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct PrBranchInfo {
    pub label: String,
    #[serde(rename = "ref")]
    pub git_ref: String,
    pub sha: String,
    pub repo_id: i64,
    pub repo: Option<Repository>,
}

/// `structs.PullRequest`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PullRequest {
    pub id: i64,
    pub number: i64,
    #[serde(default)]
    pub url: String,
    #[serde(default)]
    pub html_url: String,
    #[serde(default)]
    pub user: Option<User>,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub body: String,
    /// `open` or `closed` (a merged PR is `closed` with `merged: true`).
    #[serde(default)]
    pub state: String,
    /// 1.22+; absent (false) on 1.21.
    #[serde(default)]
    pub draft: bool,
    #[serde(default)]
    pub is_locked: bool,
    #[serde(default)]
    pub merged: bool,
    #[serde(default)]
    pub merged_at: Option<Time>,
    #[serde(default)]
    pub merge_commit_sha: Option<String>,
    #[serde(default)]
    pub merged_by: Option<User>,
    #[serde(default)]
    pub mergeable: bool,
    #[serde(default)]
    pub merge_base: String,
    pub head: PrBranchInfo,
    pub base: PrBranchInfo,
    #[serde(default)]
    pub created_at: Option<Time>,
    #[serde(default)]
    pub updated_at: Option<Time>,
    #[serde(default)]
    pub closed_at: Option<Time>,
}

/// `structs.Reaction`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Reaction {
    #[serde(default)]
    pub user: Option<User>,
    pub content: String,
    pub created_at: Time,
}

/// `structs.NotificationSubject`: `url` is the API issue URL even for pulls, `type` is
/// `Issue`, `Pull`, `Commit` or `Repository`, `state` may be `merged`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct NotificationSubject {
    pub title: String,
    pub url: String,
    pub latest_comment_url: String,
    pub html_url: String,
    pub latest_comment_html_url: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub state: String,
}

impl NotificationSubject {
    /// The issue/pull number from `url` (`.../issues/N`).
    pub fn number(&self) -> Option<i64> {
        trailing_number(&self.url, "issues")
    }
}

/// `structs.NotificationThread`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct NotificationThread {
    pub id: i64,
    #[serde(default)]
    pub repository: Option<Repository>,
    #[serde(default)]
    pub subject: Option<NotificationSubject>,
    #[serde(default)]
    pub unread: bool,
    #[serde(default)]
    pub pinned: bool,
    pub updated_at: Time,
    #[serde(default)]
    pub url: String,
}

/// `structs.WatchInfo`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct WatchInfo {
    pub subscribed: bool,
    pub ignored: bool,
    pub url: String,
    pub repository_url: String,
}

/// `structs.ChangesFromPayload`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ChangesFrom {
    pub from: String,
}

/// `structs.ChangesPayload` (on `edited`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Changes {
    pub title: Option<ChangesFrom>,
    pub body: Option<ChangesFrom>,
}

/// `structs.IssueCommentPayload`, as sent with `X-Gitea-Event: issue_comment`. 1.21/1.22
/// send no `pull_request` (added in 1.23, #26178); 1.24 sends it for comments on pulls.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct IssueCommentPayload {
    /// `created`, `edited` or `deleted`.
    pub action: String,
    pub issue: Issue,
    #[serde(default)]
    pub pull_request: Option<PullRequest>,
    pub comment: Comment,
    #[serde(default)]
    pub changes: Option<Changes>,
    pub repository: Repository,
    pub sender: User,
    #[serde(default)]
    pub is_pull: bool,
}

/// A repository webhook, as far as cc-ci checks one.
#[derive(Clone, Debug, Deserialize)]
pub struct Hook {
    pub id: i64,
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub config: HookConfig,
    #[serde(default)]
    pub events: Vec<String>,
    #[serde(default)]
    pub active: bool,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct HookConfig {
    #[serde(default)]
    pub url: String,
    #[serde(default)]
    pub content_type: String,
}

/// A page of a list, with `X-Total-Count` when the server sent it.
#[derive(Clone, Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: Option<u64>,
}

/// The result of a bounded scan over pages.
#[derive(Clone, Debug)]
pub struct Scan<T> {
    pub items: Vec<T>,
    /// True when `max_pages` full pages were read and more may exist.
    pub truncated: bool,
    pub pages: u32,
}

/// The answer to "is this user a member of the org?". Fail-closed: only 204 is `Member`,
/// only 404 is `NotMember`; a 303 (the caller itself is no member, so Gitea offers only
/// public membership), a 307 (renamed user), a 5xx, a timeout… are `Unknown` with why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Membership {
    Member,
    NotMember,
    Unknown(String),
}

/// Whether a list goes on after a page of `got` items, `seen` in all so far. Gitea's pages
/// are as long as its `[api] MAX_RESPONSE_ITEMS`, which an admin may set below the 50 asked
/// for, so a short page is no sign of the last: its `X-Total-Count` is (sent on every list
/// cc-ci reads; no `Link` header on them). Without one, only an empty page ends the list.
pub fn more_pages(total: Option<u64>, seen: u64, got: usize) -> bool {
    got > 0 && total.is_none_or(|t| seen < t)
}

// ---------------------------------------------------------------------------------------
// Client

/// The Gitea client. `base_url` is the API root, e.g. `https://git.example.org/api/v1`.
pub struct GiteaClient {
    api: Api,
}

fn seg(s: &str) -> String {
    encode(s)
}

impl GiteaClient {
    pub fn new(base_url: &str, token: Secret, timeout: Duration) -> GiteaClient {
        GiteaClient {
            api: Api::new("gitea", base_url, AuthScheme::Token, token, timeout),
        }
    }

    pub fn api(&self) -> &Api {
        &self.api
    }

    fn total(reply: &crate::api::Reply) -> Option<u64> {
        reply
            .header("X-Total-Count")
            .and_then(|v| v.trim().parse().ok())
    }

    /// `GET /repos/{o}/{r}/issues/comments`: plain comments updated at or after `since`
    /// (inclusive, whole seconds), oldest created first. `page` is 1-based and always sent
    /// (without it Gitea ignores `limit` and returns everything); `limit` is capped at 50.
    pub fn list_repo_comments(
        &self,
        owner: &str,
        repo: &str,
        since: Option<i64>,
        page: u32,
        limit: u32,
    ) -> Result<Page<Comment>> {
        let mut path = format!(
            "/repos/{}/{}/issues/comments?page={}&limit={}",
            seg(owner),
            seg(repo),
            page.max(1),
            limit.clamp(1, MAX_PAGE_SIZE)
        );
        if let Some(t) = since {
            path.push_str(&format!("&since={}", encode(&rfc3339(t))));
        }
        let (reply, items): (_, Vec<Comment>) = self.api.json("GET", &path, None, &[200])?;
        Ok(Page {
            total: Self::total(&reply),
            items,
        })
    }

    /// Every comment updated since `since`, at most `max_pages` pages: stops when
    /// `X-Total-Count` is reached or a page is empty (see [`more_pages`]). Duplicates (a
    /// comment edited while paging moves) are dropped by id.
    pub fn repo_comments_since(
        &self,
        owner: &str,
        repo: &str,
        since: Option<i64>,
        max_pages: u32,
    ) -> Result<Scan<Comment>> {
        let mut items: Vec<Comment> = Vec::new();
        let mut pages = 0;
        let mut seen = 0;
        for page in 1..=max_pages {
            let got = self.list_repo_comments(owner, repo, since, page, MAX_PAGE_SIZE)?;
            pages = page;
            let n = got.items.len();
            seen += n as u64;
            for c in got.items {
                if !items.iter().any(|x| x.id == c.id) {
                    items.push(c);
                }
            }
            if !more_pages(got.total, seen, n) {
                return Ok(Scan {
                    items,
                    truncated: false,
                    pages,
                });
            }
        }
        Ok(Scan {
            items,
            truncated: true,
            pages,
        })
    }

    /// `GET /repos/{o}/{r}/issues/{n}/comments?since=`: one issue's plain comments (never
    /// paged by Gitea).
    pub fn issue_comments(
        &self,
        owner: &str,
        repo: &str,
        index: i64,
        since: Option<i64>,
    ) -> Result<Vec<Comment>> {
        let mut path = format!(
            "/repos/{}/{}/issues/{index}/comments",
            seg(owner),
            seg(repo)
        );
        if let Some(t) = since {
            path.push_str(&format!("?since={}", encode(&rfc3339(t))));
        }
        Ok(self.api.json("GET", &path, None, &[200])?.1)
    }

    pub fn get_pull(&self, owner: &str, repo: &str, index: i64) -> Result<PullRequest> {
        let path = format!("/repos/{}/{}/pulls/{index}", seg(owner), seg(repo));
        Ok(self.api.json("GET", &path, None, &[200])?.1)
    }

    pub fn get_issue(&self, owner: &str, repo: &str, index: i64) -> Result<Issue> {
        let path = format!("/repos/{}/{}/issues/{index}", seg(owner), seg(repo));
        Ok(self.api.json("GET", &path, None, &[200])?.1)
    }

    /// `GET /orgs/{org}/members/{user}`, fail-closed (see [`Membership`]).
    pub fn membership(&self, org: &str, user: &str) -> Membership {
        let path = format!("/orgs/{}/members/{}", seg(org), seg(user));
        match self.api.send("GET", &path, None) {
            Ok(r) if r.status == 204 => Membership::Member,
            Ok(r) if r.status == 404 => Membership::NotMember,
            Ok(r) if (300..400).contains(&r.status) => Membership::Unknown(format!(
                "gitea GET {}: HTTP {} redirect to {} (303: the bot is not an org member and \
                 may only see public membership; 307: the user was renamed)",
                crate::api::route(&path),
                r.status,
                r.header("Location").unwrap_or("?")
            )),
            Ok(r) => Membership::Unknown(format!(
                "gitea GET {}: HTTP {}: {}",
                crate::api::route(&path),
                r.status,
                r.excerpt()
            )),
            Err(e) => Membership::Unknown(format!("{e:#}")),
        }
    }

    /// `POST /repos/{o}/{r}/issues/{n}/comments` → 201.
    pub fn create_comment(
        &self,
        owner: &str,
        repo: &str,
        index: i64,
        body: &str,
    ) -> Result<Comment> {
        let path = format!(
            "/repos/{}/{}/issues/{index}/comments",
            seg(owner),
            seg(repo)
        );
        Ok(self
            .api
            .json("POST", &path, Some(&json!({"body": body})), &[201])?
            .1)
    }

    /// `POST /repos/{o}/{r}/issues` → 201: opens an issue (needs `write:issue`).
    pub fn create_issue(&self, owner: &str, repo: &str, title: &str, body: &str) -> Result<Issue> {
        let path = format!("/repos/{}/{}/issues", seg(owner), seg(repo));
        let body = json!({"title": title, "body": body});
        Ok(self.api.json("POST", &path, Some(&body), &[201])?.1)
    }

    /// `PATCH /repos/{o}/{r}/issues/{index}` with `state: closed` → 201 (Gitea answers 201
    /// to an edit); only its poster or a writer may.
    pub fn close_issue(&self, owner: &str, repo: &str, index: i64) -> Result<Issue> {
        let path = format!("/repos/{}/{}/issues/{index}", seg(owner), seg(repo));
        let body = json!({"state": "closed"});
        Ok(self.api.json("PATCH", &path, Some(&body), &[201])?.1)
    }

    /// `PATCH /repos/{o}/{r}/issues/comments/{id}` → 200 (only the poster or a writer).
    pub fn edit_comment(&self, owner: &str, repo: &str, id: i64, body: &str) -> Result<Comment> {
        let path = format!("/repos/{}/{}/issues/comments/{id}", seg(owner), seg(repo));
        Ok(self
            .api
            .json("PATCH", &path, Some(&json!({"body": body})), &[200])?
            .1)
    }

    /// `POST /repos/{o}/{r}/issues/comments/{id}/reactions`: 201 new, 200 already there;
    /// both are success.
    pub fn add_reaction(
        &self,
        owner: &str,
        repo: &str,
        comment_id: i64,
        content: &str,
    ) -> Result<Reaction> {
        let path = format!(
            "/repos/{}/{}/issues/comments/{comment_id}/reactions",
            seg(owner),
            seg(repo)
        );
        Ok(self
            .api
            .json(
                "POST",
                &path,
                Some(&json!({"content": content})),
                &[200, 201],
            )?
            .1)
    }

    /// `GET /notifications`, newest first: `all` includes read threads, `subject_type` is
    /// `issue`, `pull`, `commit` or `repository`. Reads up to 20 pages (see [`more_pages`]).
    pub fn notifications(
        &self,
        since: Option<i64>,
        all: bool,
        subject_type: Option<&str>,
    ) -> Result<Vec<NotificationThread>> {
        let mut out: Vec<NotificationThread> = Vec::new();
        let mut seen = 0;
        for page in 1..=20u32 {
            let mut path = format!("/notifications?page={page}&limit={MAX_PAGE_SIZE}");
            if all {
                path.push_str("&all=true");
            }
            if let Some(t) = since {
                path.push_str(&format!("&since={}", encode(&rfc3339(t))));
            }
            if let Some(k) = subject_type {
                path.push_str(&format!("&subject-type={}", encode(k)));
            }
            let (reply, items): (_, Vec<NotificationThread>) =
                self.api.json("GET", &path, None, &[200])?;
            let n = items.len();
            seen += n as u64;
            out.extend(items);
            if !more_pages(Self::total(&reply), seen, n) {
                break;
            }
        }
        Ok(out)
    }

    /// `PUT /notifications?last_read_at=`: marks unread threads updated up to then as read.
    /// Gitea answers 205 Reset Content.
    pub fn mark_notifications_read(&self, last_read_at: Option<i64>) -> Result<()> {
        let mut path = "/notifications".to_owned();
        if let Some(t) = last_read_at {
            path.push_str(&format!("?last_read_at={}", encode(&rfc3339(t))));
        }
        self.api.expect("PUT", &path, None, &[205, 200])?;
        Ok(())
    }

    /// `PUT /repos/{o}/{r}/subscription` (needs `write:repository`).
    pub fn watch(&self, owner: &str, repo: &str) -> Result<WatchInfo> {
        let path = format!("/repos/{}/{}/subscription", seg(owner), seg(repo));
        Ok(self.api.json("PUT", &path, None, &[200])?.1)
    }

    /// `GET /repos/{o}/{r}/hooks` (the first 50): the repository's webhooks. Gitea answers
    /// 403 unless the token's user administers the repository.
    pub fn list_hooks(&self, owner: &str, repo: &str) -> Result<Vec<Hook>> {
        let path = format!(
            "/repos/{}/{}/hooks?page=1&limit={MAX_PAGE_SIZE}",
            seg(owner),
            seg(repo)
        );
        Ok(self.api.json("GET", &path, None, &[200])?.1)
    }

    /// `GET /repos/{o}/{r}`, with the asking user's `permissions`.
    pub fn get_repo(&self, owner: &str, repo: &str) -> Result<Repository> {
        let path = format!("/repos/{}/{}", seg(owner), seg(repo));
        Ok(self.api.json("GET", &path, None, &[200])?.1)
    }

    /// `GET /repos/{o}/{r}/branches/{branch}`: the branch's head commit; `None` when there
    /// is no such branch (404).
    pub fn branch_head(&self, owner: &str, repo: &str, branch: &str) -> Result<Option<String>> {
        let path = format!(
            "/repos/{}/{}/branches/{}",
            seg(owner),
            seg(repo),
            seg(branch)
        );
        let reply = self.api.expect("GET", &path, None, &[200, 404])?;
        if reply.status == 404 {
            return Ok(None);
        }
        let b: Branch = serde_json::from_slice(&reply.body)
            .with_context(|| format!("gitea GET {path}: malformed branch: {}", reply.excerpt()))?;
        Ok(Some(b.commit.id))
    }

    /// `POST /repos/{o}/{r}/statuses/{sha}` → 201; 403 when the token lacks the right.
    pub fn create_status(
        &self,
        owner: &str,
        repo: &str,
        sha: &str,
        status: &CreateStatus,
    ) -> Result<StatusPost> {
        let path = format!("/repos/{}/{}/statuses/{}", seg(owner), seg(repo), seg(sha));
        let body = serde_json::to_value(status).context("serialising a commit status")?;
        let reply = self.api.expect("POST", &path, Some(&body), &[201, 403])?;
        Ok(match reply.status {
            201 => StatusPost::Created,
            _ => StatusPost::Forbidden(reply.excerpt()),
        })
    }

    /// `GET /user`: who the token belongs to.
    pub fn whoami(&self) -> Result<User> {
        Ok(self.api.json("GET", "/user", None, &[200])?.1)
    }
}

/// Parses an `issue_comment` webhook body (1.21 or 1.24 shape).
pub fn parse_issue_comment_payload(body: &[u8]) -> Result<IssueCommentPayload> {
    let p: IssueCommentPayload =
        serde_json::from_slice(body).context("decoding an issue_comment webhook payload")?;
    if p.action.is_empty() {
        bail!("issue_comment payload without an action");
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_offsets_and_format_utc() {
        assert_eq!(
            parse_rfc3339("2025-03-01T10:00:00Z").unwrap(),
            1_740_823_200
        );
        assert_eq!(
            parse_rfc3339("2025-03-01T11:00:00+01:00").unwrap(),
            1_740_823_200
        );
        assert_eq!(
            parse_rfc3339("2025-03-01T04:30:00-05:30").unwrap(),
            1_740_823_200
        );
        assert_eq!(
            parse_rfc3339("2025-03-01T10:00:00.999Z").unwrap(),
            1_740_823_200
        );
        assert_eq!(rfc3339(1_740_823_200), "2025-03-01T10:00:00Z");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert!(parse_rfc3339("2025-03-01 10:00:00Z").is_err());
        assert!(parse_rfc3339("2025-03-01T10:00:00 01:00").is_err());
        assert!(parse_rfc3339("").is_err());
        for t in [0, 951_782_400, 1_740_823_200, 4_102_444_800] {
            assert_eq!(parse_rfc3339(&rfc3339(t)).unwrap(), t);
        }
    }

    #[test]
    fn pull_number_comes_from_the_web_url() {
        let mut c: Comment = serde_json::from_str(
            r#"{"id":1,"pull_request_url":"https://g.example/acme/app/pulls/42","issue_url":"",
                "created_at":"2025-03-01T10:00:00Z","updated_at":"2025-03-01T10:00:00Z"}"#,
        )
        .unwrap();
        assert_eq!(c.pull_number(), Some(42));
        assert_eq!(c.issue_number(), None);
        c.pull_request_url = String::new();
        c.issue_url = "https://g.example/acme/app/issues/7".into();
        assert_eq!(c.pull_number(), None);
        assert_eq!(c.issue_number(), Some(7));
        c.pull_request_url = "https://g.example/acme/pulls/app/pulls/x".into();
        assert_eq!(c.pull_number(), None);
    }
}
