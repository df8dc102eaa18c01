//! The `/api/v1` routes the stand-in serves, with Gitea's auth, scope and permission checks
//! in Gitea's order (`routers/api/v1/api.go`): authenticate (401), token scope for the route
//! group and method (403), repo/org assignment (404, 307 for a renamed owner), `reqToken`
//! (401), then the handler.

use serde_json::{json, Value};

use super::clock::parse_rfc3339;
use super::digest::base64_decode;
use super::render;
use super::statuses;
use super::{Parts, Repo, State, User};
use crate::http::{Request, Response};

pub(crate) type Reply = Result<Response, Response>;

/// `models/auth/access_token_scope.go` categories.
const CATEGORIES: &[&str] = &[
    "activitypub",
    "admin",
    "misc",
    "notification",
    "organization",
    "package",
    "issue",
    "repository",
    "user",
];

pub fn valid_scope(s: &str) -> bool {
    s == "all"
        || s == "public-only"
        || s.split_once(':').is_some_and(|(lvl, cat)| {
            (lvl == "read" || lvl == "write") && CATEGORIES.contains(&cat)
        })
}

/// `AccessTokenScope.HasScope`: `all` has everything, `write:x` implies `read:x`.
fn has_scope(scopes: &[String], category: &str, write: bool) -> bool {
    scopes.iter().any(|s| {
        s == "all"
            || *s == format!("write:{category}")
            || (!write && *s == format!("read:{category}"))
    })
}

pub(crate) struct Auth {
    pub doer: Option<i64>,
    pub scopes: Option<Vec<String>>,
}

pub(crate) fn error(s: &State, status: u16, message: &str) -> Response {
    Response::json(
        status,
        &json!({"message": message, "url": format!("{}api/swagger", s.root_url)}),
    )
}

/// `APIContext.APIErrorNotFound`.
fn not_found(s: &State) -> Response {
    Response::json(
        404,
        &json!({"errors": [], "message": "The target couldn't be found.", "url": format!("{}api/swagger", s.root_url)}),
    )
}

/// Go's `http.Redirect`: Location as given, a short HTML body for GET.
fn redirect(status: u16, location: &str, method: &str) -> Response {
    let text = if status == 303 {
        "See Other"
    } else {
        "Temporary Redirect"
    };
    let mut r = Response::new(status).header("Location", location);
    if method == "GET" || method == "HEAD" {
        r = r
            .header("Content-Type", "text/html; charset=utf-8")
            .body(format!("<a href=\"{location}\">{text}</a>.\n\n").into_bytes());
    }
    r
}

fn ok_json(v: &Value) -> Response {
    Response::json(200, v)
}

fn with_total(r: Response, total: usize) -> Response {
    // `Base.SetTotalCountHeader`.
    r.header("X-Total-Count", total.to_string())
        .header("Access-Control-Expose-Headers", "X-Total-Count")
}

/// `services/auth/oauth2.go` `parseToken` then `services/auth/basic.go`: `?token=`,
/// `?access_token=`, `Authorization: token X` (lowercase word), `Bearer X` (any case), or
/// Basic with the token as user name (empty password / `x-oauth-basic`) or as password.
/// Any other header is no credential at all: the request goes on anonymous.
fn authenticate(s: &State, req: &Request) -> Result<Auth, Response> {
    let mut token = req
        .query("token")
        .filter(|t| !t.is_empty())
        .or_else(|| req.query("access_token").filter(|t| !t.is_empty()))
        .map(str::to_owned);
    if token.is_none() {
        if let Some(h) = req.header("Authorization") {
            let f: Vec<&str> = h.split_whitespace().collect();
            if f.len() == 2 && (f[0] == "token" || f[0].eq_ignore_ascii_case("bearer")) {
                token = Some(f[1].to_owned());
            } else if f.len() == 2 && f[0].eq_ignore_ascii_case("basic") {
                let decoded = base64_decode(f[1])
                    .and_then(|b| String::from_utf8(b).ok())
                    .unwrap_or_default();
                let (user, pass) = decoded.split_once(':').unwrap_or((&decoded, ""));
                let t = if pass.is_empty() || pass == "x-oauth-basic" {
                    user
                } else {
                    pass
                };
                // Password sign-in is not modelled: an unknown secret fails like a bad password.
                return match s.tokens.iter().find(|x| x.token == t) {
                    Some(tok) => Ok(Auth {
                        doer: Some(tok.user_id),
                        scopes: Some(tok.scopes.clone()),
                    }),
                    None => Err(error(s, 401, "user does not exist [uid: 0, name: ]")),
                };
            }
        }
    }
    let Some(token) = token else {
        return Ok(Auth {
            doer: None,
            scopes: None,
        });
    };
    match s.tokens.iter().find(|t| t.token == token) {
        Some(t) if s.user(t.user_id).is_some() => Ok(Auth {
            doer: Some(t.user_id),
            scopes: Some(t.scopes.clone()),
        }),
        // `OAuth2.Verify` returns `ErrUserNotExist{}`; `apiAuth` answers 401 with its text.
        _ => Err(error(s, 401, "user does not exist [uid: 0, name: ]")),
    }
}

/// `reqToken()`.
pub(crate) fn require_token(s: &State, auth: &Auth) -> Result<i64, Response> {
    auth.doer.ok_or_else(|| error(s, 401, "token is required"))
}

/// `repoAssignment()`: a repo the caller cannot read is 404, like one that does not exist;
/// a renamed owner redirects (307) to the same path under the new name.
pub(crate) fn repo_ctx(
    s: &State,
    req: &Request,
    auth: &Auth,
    owner: &str,
    name: &str,
) -> Result<Repo, Response> {
    match s.repo_by_name(owner, name) {
        Some(r) if s.can_read(auth.doer, r) => Ok(r.clone()),
        Some(_) => Err(not_found(s)),
        None if s.user_by_name(owner).is_none() => match s.redirect(owner) {
            Some(u) => Err(redirect_to_user(req, owner, u)),
            None => Err(not_found(s)),
        },
        None => Err(not_found(s)),
    }
}

/// `services/context/user.go` `RedirectToUser`: the path with the old name replaced once,
/// query kept, 307.
fn redirect_to_user(req: &Request, old: &str, u: &User) -> Response {
    let mut loc = req.path.replacen(old, &u.login, 1);
    let q: Vec<String> = req
        .query
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect();
    if !q.is_empty() {
        loc = format!("{loc}?{}", q.join("&"));
    }
    redirect(307, &loc, &req.method)
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `routers/api/v1/user/helper.go` `GetUserByPathParam`: 404 unknown, 307 renamed.
fn user_param(s: &State, req: &Request, name: &str) -> Result<User, Response> {
    if let Some(u) = s.user_by_name(name) {
        return Ok(u.clone());
    }
    match s.redirect(name) {
        Some(u) => Err(redirect_to_user(req, name, u)),
        None => Err(not_found(s)),
    }
}

/// `orgAssignment(true)`.
fn org_ctx(s: &State, name: &str) -> Result<User, Response> {
    match s.user_by_name(name) {
        Some(u) if u.is_org => Ok(u.clone()),
        _ => Err(not_found(s)),
    }
}

/// `services/context/utils.go` `GetQueryBeforeSince`: RFC 3339 or 422.
fn before_since(s: &State, req: &Request) -> Result<(i64, i64), Response> {
    let parse = |name: &str| -> Result<i64, Response> {
        match req.query(name) {
            None | Some("") => Ok(0),
            Some(v) => parse_rfc3339(v).ok_or_else(|| {
                error(
                    s,
                    422,
                    &format!("parsing time \"{v}\" as \"2006-01-02T15:04:05Z07:00\": cannot parse"),
                )
            }),
        }
    };
    Ok((parse("before")?, parse("since")?))
}

/// `ctx.FormInt`: anything unparsable is 0.
fn form_int(req: &Request, name: &str) -> i64 {
    req.query(name).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// `convert.ToCorrectPageSize`: no limit is `DEFAULT_PAGING_NUM` (30), a larger one is cut to
/// the server's `MAX_RESPONSE_ITEMS` (50 unless an admin lowered it).
fn page_size(s: &State, limit: i64) -> usize {
    if limit <= 0 {
        30
    } else {
        (limit as usize).min(s.max_items)
    }
}

/// `db.ListOptions` as 1.23/1.24 apply it: only a page > 0 paginates.
fn paginate<T>(items: Vec<T>, page: i64, size: usize) -> Vec<T> {
    if page <= 0 {
        return items;
    }
    let skip = (page as usize - 1).saturating_mul(size);
    items.into_iter().skip(skip).take(size).collect()
}

fn category(segs: &[&str]) -> Option<&'static str> {
    match segs {
        ["repos", _, _, "issues", ..] => Some("issue"),
        ["repos", ..] => Some("repository"),
        ["orgs", ..] => Some("organization"),
        ["notifications", ..] => Some("notification"),
        ["user", ..] => Some("user"),
        _ => None,
    }
}

#[derive(serde::Deserialize)]
struct BodyOption {
    #[serde(default)]
    body: String,
}

#[derive(serde::Deserialize)]
struct ReactionOption {
    #[serde(default)]
    content: String,
}

pub fn handle(p: &Parts, req: &Request) -> Response {
    let mut s = p.lock();
    let Some(rest) = req.path.strip_prefix("/api/v1") else {
        return not_found(&s);
    };
    let segs: Vec<&str> = rest.split('/').filter(|x| !x.is_empty()).collect();
    match route(p, &mut s, req, &segs) {
        Ok(r) | Err(r) => r,
    }
}

fn route(p: &Parts, s: &mut State, req: &Request, segs: &[&str]) -> Reply {
    let auth = authenticate(s, req)?;
    // `tokenRequiresScopes`: only checked when a token was used; the level follows the method.
    if let (Some(scopes), Some(cat)) = (&auth.scopes, category(segs)) {
        let write = matches!(req.method.as_str(), "POST" | "PUT" | "PATCH" | "DELETE");
        if !has_scope(scopes, cat, write) {
            let need = format!("{}:{cat}", if write { "write" } else { "read" });
            return Err(error(
                s,
                403,
                &format!(
                    "token does not have at least one of required scope(s), required=[{need}], token scope={}",
                    scopes.join(",")
                ),
            ));
        }
    }
    let m = req.method.as_str();
    match (m, segs) {
        ("GET", ["version"]) => Ok(ok_json(&json!({"version": "1.24.7"}))),
        ("GET", ["user"]) => {
            let d = require_token(s, &auth)?;
            let u = s.user(d).ok_or_else(|| not_found(s))?;
            Ok(ok_json(&render::user(s, u, true)))
        }
        ("GET", ["repos", o, r, "issues", "comments"]) => list_repo_comments(s, req, &auth, o, r),
        ("GET", ["repos", o, r, "issues", "comments", id]) => {
            let repo = repo_ctx(s, req, &auth, o, r)?;
            let c = comment_in_repo(s, &repo, id)?;
            Ok(ok_json(&render::comment(s, &c, auth.doer.is_some())))
        }
        ("PATCH", ["repos", o, r, "issues", "comments", id]) => {
            edit_comment(p, s, req, &auth, o, r, id)
        }
        ("GET", ["repos", o, r, "issues", "comments", id, "reactions"]) => {
            let repo = repo_ctx(s, req, &auth, o, r)?;
            let c = comment_in_repo(s, &repo, id)?;
            let list: Vec<Value> = s
                .reactions
                .iter()
                .filter(|x| x.comment_id == c.id)
                .map(|x| render::reaction(s, x))
                .collect();
            Ok(ok_json(&json!(list)))
        }
        ("POST", ["repos", o, r, "issues", "comments", id, "reactions"]) => {
            add_reaction(s, req, &auth, o, r, id)
        }
        ("GET", ["repos", o, r, "issues", idx, "comments"]) => {
            list_issue_comments(s, req, &auth, o, r, idx)
        }
        ("POST", ["repos", o, r, "issues", idx, "comments"]) => {
            create_comment(p, s, req, &auth, o, r, idx)
        }
        ("POST", ["repos", o, r, "issues"]) => create_issue(p, s, req, &auth, o, r),
        ("PATCH", ["repos", o, r, "issues", idx]) => edit_issue(s, req, &auth, o, r, idx),
        ("GET", ["repos", o, r, "issues", idx]) => {
            let repo = repo_ctx(s, req, &auth, o, r)?;
            let i = issue_in_repo(s, &repo, idx)?;
            Ok(ok_json(&render::issue(
                s,
                &i,
                super::HookVersion::V1_24,
                auth.doer.is_some(),
            )))
        }
        ("GET", ["repos", o, r, "pulls", idx]) => {
            let repo = repo_ctx(s, req, &auth, o, r)?;
            let i = issue_in_repo(s, &repo, idx)?;
            if i.pull.is_none() {
                return Err(not_found(s));
            }
            Ok(ok_json(&render::pull(
                s,
                &i,
                super::HookVersion::V1_24,
                auth.doer.is_some(),
            )))
        }
        (_, ["repos", o, r, "subscription"]) => subscription(s, req, &auth, o, r),
        ("GET", ["repos", o, r, "hooks"]) => list_hooks(s, req, &auth, o, r),
        ("GET", ["repos", o, r, "branches", name]) => {
            // routers/api/v1/repo/branch.go GetBranch: v1.26.0 answers a missing branch
            // `{"errors":null,"message":"not found"}` (checked in gitea_fidelity).
            let repo = repo_ctx(s, req, &auth, o, r)?;
            let Some(sha) = repo.branches.get(*name) else {
                return Ok(Response::json(
                    404,
                    &json!({"errors": null, "message": "not found",
                            "url": format!("{}api/swagger", s.root_url)}),
                ));
            };
            Ok(ok_json(&render::branch(s, &repo, name, sha)))
        }
        ("GET", ["repos", o, r]) => {
            let repo = repo_ctx(s, req, &auth, o, r)?;
            let perm = (
                auth.doer
                    .is_some_and(|d| s.is_admin(d) || repo.owner_id == d),
                s.can_write(auth.doer, &repo),
                true,
            );
            Ok(ok_json(&render::repo(
                s,
                &repo,
                Some(perm),
                auth.doer.is_some(),
            )))
        }
        ("POST", ["repos", o, r, "statuses", sha]) => statuses::create(s, req, &auth, o, r, sha),
        ("GET", ["repos", o, r, "statuses", sha]) => statuses::list(s, req, &auth, o, r, sha),
        ("GET", ["repos", o, r, "commits", sha, "status"]) => {
            statuses::combined(s, req, &auth, o, r, sha)
        }
        ("GET", ["orgs", org, "members", user]) => is_member(s, req, &auth, org, user),
        ("GET", ["orgs", org, "public_members", user]) => {
            // `routers/api/v1/org/member.go` `IsPublicMember`.
            let org = org_ctx(s, org)?;
            let u = user_param(s, req, user)?;
            let public = s
                .members
                .iter()
                .any(|m| m.org_id == org.id && m.user_id == u.id && m.public);
            Ok(if public {
                Response::new(204)
            } else {
                not_found(s)
            })
        }
        ("GET", ["notifications"]) => list_notifications(s, req, &auth),
        ("PUT", ["notifications"]) => read_notifications(s, req, &auth),
        _ => Err(not_found(s)),
    }
}

fn issue_in_repo(s: &State, repo: &Repo, idx: &str) -> Result<super::Issue, Response> {
    let idx: i64 = idx.parse().map_err(|_| not_found(s))?;
    s.issue_by_index(repo.id, idx)
        .cloned()
        .ok_or_else(|| not_found(s))
}

/// A comment of this repo; one in another repo is 404 (`issue_comment.go` checks
/// `comment.Issue.RepoID != ctx.Repo.Repository.ID`).
fn comment_in_repo(s: &State, repo: &Repo, id: &str) -> Result<super::Comment, Response> {
    let id: i64 = id.parse().map_err(|_| not_found(s))?;
    let c = s
        .comments
        .iter()
        .find(|c| c.id == id)
        .ok_or_else(|| not_found(s))?;
    match s.issue(c.issue_id) {
        Some(i) if i.repo_id == repo.id => Ok(c.clone()),
        _ => Err(not_found(s)),
    }
}

/// `routers/api/v1/repo/issue_comment.go` `ListRepoIssueComments` over
/// `models/issues/comment.go` `FindComments`: plain comments only, `updated_unix` within
/// [since, before] inclusive, `created_unix ASC, id ASC`, paged only when `page` > 0,
/// `X-Total-Count` and no `Link`.
fn list_repo_comments(s: &State, req: &Request, auth: &Auth, o: &str, r: &str) -> Reply {
    let repo = repo_ctx(s, req, auth, o, r)?;
    let (before, since) = before_since(s, req)?;
    let mut list: Vec<&super::Comment> = s
        .comments
        .iter()
        .filter(|c| s.issue(c.issue_id).is_some_and(|i| i.repo_id == repo.id))
        .filter(|c| since == 0 || c.updated >= since)
        .filter(|c| before == 0 || c.updated <= before)
        .collect();
    list.sort_by_key(|c| (c.created, c.id));
    let total = list.len();
    let page = paginate(
        list,
        form_int(req, "page"),
        page_size(s, form_int(req, "limit")),
    );
    let out: Vec<Value> = page
        .into_iter()
        .map(|c| render::comment(s, c, auth.doer.is_some()))
        .collect();
    Ok(with_total(ok_json(&json!(out)), total))
}

/// `ListIssueComments`: since/before only, never paged.
fn list_issue_comments(
    s: &State,
    req: &Request,
    auth: &Auth,
    o: &str,
    r: &str,
    idx: &str,
) -> Reply {
    let repo = repo_ctx(s, req, auth, o, r)?;
    let (before, since) = before_since(s, req)?;
    let issue = issue_in_repo(s, &repo, idx)?;
    let mut list: Vec<&super::Comment> = s
        .comments
        .iter()
        .filter(|c| c.issue_id == issue.id)
        .filter(|c| since == 0 || c.updated >= since)
        .filter(|c| before == 0 || c.updated <= before)
        .collect();
    list.sort_by_key(|c| (c.created, c.id));
    let total = list.len();
    let out: Vec<Value> = list
        .into_iter()
        .map(|c| render::comment(s, c, auth.doer.is_some()))
        .collect();
    Ok(with_total(ok_json(&json!(out)), total))
}

/// `bind()` of a `Required` body field: 422 `[Body]: Required`.
fn body_option(s: &State, req: &Request) -> Result<String, Response> {
    let b: BodyOption = req
        .json()
        .map_err(|e| error(s, 422, &format!("invalid JSON body: {e}")))?;
    if b.body.is_empty() {
        return Err(error(s, 422, "[Body]: Required"));
    }
    Ok(b.body)
}

#[derive(serde::Deserialize)]
struct IssueOption {
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    state: Option<String>,
}

/// `CreateIssue`: reqToken, a title (422 `[Title]: Required`), 201.
fn create_issue(p: &Parts, s: &mut State, req: &Request, auth: &Auth, o: &str, r: &str) -> Reply {
    let repo = repo_ctx(s, req, auth, o, r)?;
    let doer = require_token(s, auth)?;
    let opt: IssueOption = req
        .json()
        .map_err(|e| error(s, 422, &format!("invalid JSON body: {e}")))?;
    let title = opt.title.unwrap_or_default();
    if title.trim().is_empty() {
        return Err(error(s, 422, "[Title]: Required"));
    }
    let index = p.new_issue(
        s,
        repo.id,
        doer,
        &title,
        &opt.body.unwrap_or_default(),
        None,
    );
    let issue = s
        .issue_by_index(repo.id, index)
        .cloned()
        .ok_or_else(|| not_found(s))?;
    Ok(Response::json(
        201,
        &render::issue(s, &issue, super::HookVersion::V1_24, true),
    ))
}

/// `EditIssue`: reqToken; a state change by neither the poster nor a writer is a bare 403;
/// 201 with the issue.
fn edit_issue(s: &mut State, req: &Request, auth: &Auth, o: &str, r: &str, idx: &str) -> Reply {
    let repo = repo_ctx(s, req, auth, o, r)?;
    let doer = require_token(s, auth)?;
    let issue = issue_in_repo(s, &repo, idx)?;
    let opt: IssueOption = req
        .json()
        .map_err(|e| error(s, 422, &format!("invalid JSON body: {e}")))?;
    let may = issue.poster_id == doer || s.can_write(Some(doer), &repo);
    if !may {
        return Err(Response::new(403));
    }
    let now = s.now();
    let Some(pos) = s.issues.iter().position(|i| i.id == issue.id) else {
        return Err(not_found(s));
    };
    let i = &mut s.issues[pos];
    if let Some(t) = opt.title.filter(|t| !t.trim().is_empty()) {
        i.title = t;
    }
    if let Some(b) = opt.body {
        i.body = b;
    }
    match opt.state.as_deref() {
        Some("closed") if i.closed.is_none() => i.closed = Some(now),
        Some("open") => i.closed = None,
        _ => {}
    }
    i.updated = now;
    let issue = i.clone();
    Ok(Response::json(
        201,
        &render::issue(s, &issue, super::HookVersion::V1_24, true),
    ))
}

/// `CreateIssueComment`: reqToken, 201.
fn create_comment(
    p: &Parts,
    s: &mut State,
    req: &Request,
    auth: &Auth,
    o: &str,
    r: &str,
    idx: &str,
) -> Reply {
    let repo = repo_ctx(s, req, auth, o, r)?;
    let doer = require_token(s, auth)?;
    let body = body_option(s, req)?;
    let issue = issue_in_repo(s, &repo, idx)?;
    let id = p.add_comment(s, issue.id, doer, &body);
    let c = s
        .comments
        .iter()
        .find(|c| c.id == id)
        .ok_or_else(|| not_found(s))?;
    Ok(Response::json(201, &render::comment(s, c, true)))
}

/// `EditIssueComment`: poster or repo writer (else bare 403), 404 in another repo, 204 for
/// a comment type without content, an unchanged body is not saved again.
fn edit_comment(
    p: &Parts,
    s: &mut State,
    req: &Request,
    auth: &Auth,
    o: &str,
    r: &str,
    id: &str,
) -> Reply {
    let repo = repo_ctx(s, req, auth, o, r)?;
    let doer = require_token(s, auth)?;
    let body = body_option(s, req)?;
    let c = comment_in_repo(s, &repo, id)?;
    if c.poster_id != doer && !s.can_write(Some(doer), &repo) {
        return Err(Response::new(403));
    }
    p.update_comment(s, c.id, doer, &body);
    let c = s
        .comments
        .iter()
        .find(|x| x.id == c.id)
        .ok_or_else(|| not_found(s))?;
    Ok(ok_json(&render::comment(s, c, true)))
}

/// `routers/api/v1/repo/issue_reaction.go` `changeIssueCommentReaction`: 201 new, 200 when
/// the user already reacted so, 403 for a value outside `[ui] REACTIONS`.
fn add_reaction(s: &mut State, req: &Request, auth: &Auth, o: &str, r: &str, id: &str) -> Reply {
    let repo = repo_ctx(s, req, auth, o, r)?;
    let doer = require_token(s, auth)?;
    let opt: ReactionOption = req
        .json()
        .map_err(|e| error(s, 422, &format!("invalid JSON body: {e}")))?;
    let c = comment_in_repo(s, &repo, id)?;
    if !s.allowed_reactions.contains(&opt.content) {
        return Err(error(
            s,
            403,
            &format!("'{}' is not an allowed reaction", opt.content),
        ));
    }
    if let Some(x) = s
        .reactions
        .iter()
        .find(|x| x.comment_id == c.id && x.user_id == doer && x.content == opt.content)
    {
        return Ok(ok_json(&render::reaction(s, x)));
    }
    let now = s.now();
    s.reactions.push(super::Reaction {
        comment_id: c.id,
        user_id: doer,
        content: opt.content,
        created: now,
    });
    let x = s.reactions.last().ok_or_else(|| not_found(s))?;
    Ok(Response::json(201, &render::reaction(s, x)))
}

/// `routers/api/v1/repo/subscriber.go`/`star.go` watch routes: PUT 200 `WatchInfo`, GET 200
/// or 404, DELETE 204.
/// `ListHooks` behind `reqRepoAdmin`: anyone but the repository's admins gets 403 (the
/// stand-in knows no org owners: a site admin or the owning user).
fn list_hooks(s: &mut State, req: &Request, auth: &Auth, o: &str, r: &str) -> Reply {
    let doer = require_token(s, auth)?;
    let repo = repo_ctx(s, req, auth, o, r)?;
    if !(s.is_admin(doer) || repo.owner_id == doer) {
        return Err(error(
            s,
            403,
            "user should be an owner or a collaborator with admin write of a repository",
        ));
    }
    let hooks: Vec<Value> = s
        .hooks
        .iter()
        .filter(|h| h.repo_id == repo.id)
        .map(|h| {
            json!({
                "id": h.id,
                "type": "gitea",
                "branch_filter": "",
                "config": {"content_type": "json", "url": h.url, "http_method": "post"},
                "events": h.events,
                "authorization_header": "",
                "active": true,
                "updated_at": s.time(0),
                "created_at": s.time(0),
            })
        })
        .collect();
    let total = hooks.len();
    Ok(with_total(ok_json(&json!(hooks)), total))
}

fn subscription(s: &mut State, req: &Request, auth: &Auth, o: &str, r: &str) -> Reply {
    let repo = repo_ctx(s, req, auth, o, r)?;
    let doer = require_token(s, auth)?;
    let api = render::repo_api(s, &repo);
    let info = |s: &State, since: i64| {
        json!({
            "subscribed": true,
            "ignored": false,
            "reason": null,
            "created_at": s.time(since),
            "url": format!("{api}/subscription"),
            "repository_url": api,
        })
    };
    let existing = s
        .watches
        .iter()
        .find(|w| w.0 == doer && w.1 == repo.id)
        .map(|w| w.2);
    match req.method.as_str() {
        "PUT" => {
            let since = existing.unwrap_or_else(|| s.now());
            if existing.is_none() {
                s.watches.push((doer, repo.id, since));
            }
            Ok(ok_json(&info(s, since)))
        }
        "GET" => match existing {
            Some(since) => Ok(ok_json(&info(s, since))),
            None => Err(not_found(s)),
        },
        "DELETE" => {
            s.watches.retain(|w| !(w.0 == doer && w.1 == repo.id));
            Ok(Response::new(204))
        }
        _ => Err(not_found(s)),
    }
}

/// `routers/api/v1/org/member.go` `IsMember`.
fn is_member(s: &State, req: &Request, auth: &Auth, org: &str, user: &str) -> Reply {
    let org = org_ctx(s, org)?;
    let doer = require_token(s, auth)?;
    let target = user_param(s, req, user)?;
    let doer_admin = s.user(doer).is_some_and(|u| u.is_admin);
    if s.is_member(org.id, doer) || doer_admin {
        return Ok(if s.is_member(org.id, target.id) {
            Response::new(204)
        } else {
            not_found(s)
        });
    }
    if doer == target.id {
        return Err(not_found(s));
    }
    // `ctx.Redirect` defaults to 303 See Other.
    Ok(redirect(
        303,
        &format!("/api/v1/orgs/{}/public_members/{}", org.login, target.login),
        &req.method,
    ))
}

fn statuses(req: &Request, default: &[u8]) -> Vec<u8> {
    let mut out: Vec<u8> = req
        .query
        .iter()
        .filter(|(k, _)| k == "status-types")
        .filter_map(|(_, v)| match v.to_lowercase().as_str() {
            "unread" => Some(1),
            "read" => Some(2),
            "pinned" => Some(3),
            _ => None,
        })
        .collect();
    if out.is_empty() {
        out = default.to_vec();
    }
    out
}

fn form_bool(req: &Request, name: &str) -> bool {
    req.query(name)
        .is_some_and(|v| v.trim() == "true" || v.trim() == "1")
}

/// `routers/api/v1/notify/user.go` `ListNotifications` (`getFindNotificationOptions`).
fn list_notifications(s: &State, req: &Request, auth: &Auth) -> Reply {
    let doer = require_token(s, auth)?;
    let (before, since) = before_since(s, req)?;
    let all = form_bool(req, "all");
    let wanted = statuses(req, &[1, 3]);
    let subject: Vec<String> = req
        .query
        .iter()
        .filter(|(k, _)| k == "subject-type")
        .map(|(_, v)| v.to_lowercase())
        .collect();
    let mut list: Vec<&super::Notification> = s
        .notifications
        .iter()
        .filter(|n| n.user_id == doer)
        .filter(|n| all || wanted.contains(&n.status))
        .filter(|n| since == 0 || n.updated >= since)
        .filter(|n| before == 0 || n.updated <= before)
        .filter(|n| {
            subject.is_empty() || {
                let is_pull = s.issue(n.issue_id).is_some_and(|i| i.pull.is_some());
                subject
                    .iter()
                    .any(|t| (t == "pull" && is_pull) || (t == "issue" && !is_pull))
            }
        })
        .collect();
    list.sort_by_key(|n| std::cmp::Reverse((n.updated, n.id)));
    let total = list.len();
    let page = paginate(
        list,
        form_int(req, "page"),
        page_size(s, form_int(req, "limit")),
    );
    let out: Vec<Value> = page
        .into_iter()
        .map(|n| render::notification(s, n))
        .collect();
    Ok(with_total(ok_json(&json!(out)), total))
}

/// `ReadNotifications`: `last_read_at` (bad → 400), `all`, `status-types` (default unread),
/// `to-status` (default read); answers 205 Reset Content with the changed threads.
fn read_notifications(s: &mut State, req: &Request, auth: &Auth) -> Reply {
    let doer = require_token(s, auth)?;
    let last_read = match req.query("last_read_at").map(str::trim) {
        None | Some("") => 0,
        Some(v) => parse_rfc3339(v).ok_or_else(|| {
            error(
                s,
                400,
                &format!("parsing time \"{v}\" as \"2006-01-02T15:04:05Z07:00\": cannot parse"),
            )
        })?,
    };
    let all = form_bool(req, "all");
    let wanted = statuses(req, &[1]);
    let target = match req.query("to-status").map(str::to_lowercase).as_deref() {
        Some("unread") => 1,
        Some("pinned") => 3,
        _ => 2,
    };
    let mut changed = Vec::new();
    for n in s.notifications.iter_mut().filter(|n| n.user_id == doer) {
        if (all || wanted.contains(&n.status)) && (last_read == 0 || n.updated <= last_read) {
            n.status = target;
            changed.push(n.id);
        }
    }
    let out: Vec<Value> = changed
        .iter()
        .filter_map(|id| s.notifications.iter().find(|n| n.id == *id))
        .map(|n| render::notification(s, n))
        .collect();
    Ok(Response::json(205, &json!(out)))
}
