//! Commit statuses (`routers/api/v1/repo/status.go`, `routers/api/v1/api.go`), as v1.26.0
//! answers them (checked in `tests/gitea_fidelity.rs`): the POST needs a token (401), write
//! access to the code (`reqRepoWriter(unit.TypeCode)`, else 403 "user should have a permission
//! to write to a repo") and a commit the repository has (else 500 with an empty message);
//! `state` is stored as sent, unchecked. The list keeps every status; the combined view keeps
//! the newest per context.

use serde_json::{json, Value};

use super::api::{error, repo_ctx, require_token, Auth, Reply};
use super::render;
use super::{Repo, State};
use crate::http::{Request, Response};

#[derive(Clone, Debug)]
pub(crate) struct CommitStatus {
    pub id: i64,
    pub repo_id: i64,
    pub sha: String,
    pub state: String,
    pub target_url: String,
    pub description: String,
    pub context: String,
    pub creator_id: i64,
    pub created: i64,
}

#[derive(serde::Deserialize)]
struct CreateStatusOption {
    #[serde(default)]
    state: String,
    #[serde(default)]
    target_url: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    context: String,
}

/// A commit the repository holds: a branch head or a pull request's head (`refs/pull/N/head`).
fn has_commit(s: &State, repo: &Repo, sha: &str) -> bool {
    repo.branches.values().any(|b| b == sha)
        || s.issues
            .iter()
            .any(|i| i.repo_id == repo.id && i.pull.as_ref().is_some_and(|p| p.head_sha == sha))
}

fn render(s: &State, repo: &Repo, c: &CommitStatus) -> Value {
    json!({
        "id": c.id,
        "status": c.state,
        "target_url": c.target_url,
        "description": c.description,
        "url": format!("{}/statuses/{}", render::repo_api(s, repo), c.sha),
        "context": c.context,
        "creator": render::user_id(s, c.creator_id, true),
        "created_at": s.time(c.created),
        "updated_at": s.time(c.created),
    })
}

pub(crate) fn create(
    s: &mut State,
    req: &Request,
    auth: &Auth,
    o: &str,
    r: &str,
    sha: &str,
) -> Reply {
    let doer = require_token(s, auth)?;
    let repo = repo_ctx(s, req, auth, o, r)?;
    if !s.can_write(Some(doer), &repo) {
        return Err(error(
            s,
            403,
            "user should have a permission to write to a repo",
        ));
    }
    let opt: CreateStatusOption = req
        .json()
        .map_err(|e| error(s, 422, &format!("invalid JSON body: {e}")))?;
    if !has_commit(s, &repo, sha) {
        return Err(error(s, 500, ""));
    }
    let status = CommitStatus {
        id: s.next(),
        repo_id: repo.id,
        sha: sha.to_owned(),
        state: opt.state,
        target_url: opt.target_url,
        description: opt.description,
        context: opt.context,
        creator_id: doer,
        created: s.now(),
    };
    s.statuses.push(status.clone());
    Ok(Response::json(201, &render(s, &repo, &status)))
}

fn of_commit<'a>(s: &'a State, repo: &Repo, sha: &str) -> Vec<&'a CommitStatus> {
    s.statuses
        .iter()
        .filter(|c| c.repo_id == repo.id && c.sha == sha)
        .collect()
}

/// `GET …/statuses/{sha}`: all of them, newest first (`created_unix DESC`; within one second,
/// as stored), with X-Total-Count.
pub(crate) fn list(s: &State, req: &Request, auth: &Auth, o: &str, r: &str, sha: &str) -> Reply {
    let repo = repo_ctx(s, req, auth, o, r)?;
    let mut all = of_commit(s, &repo, sha);
    all.sort_by_key(|c| std::cmp::Reverse(c.created));
    let all: Vec<Value> = all.into_iter().map(|c| render(s, &repo, c)).collect();
    let n = all.len();
    let mut resp = Response::json(200, &json!(all));
    resp.headers.push(("X-Total-Count".into(), n.to_string()));
    Ok(resp)
}

/// `GET …/commits/{ref}/status`: the newest status of each context, and their sum: failure
/// if any failed or errored, success if all succeeded, else pending (also with none).
pub(crate) fn combined(
    s: &State,
    req: &Request,
    auth: &Auth,
    o: &str,
    r: &str,
    sha: &str,
) -> Reply {
    let repo = repo_ctx(s, req, auth, o, r)?;
    let mut latest: Vec<&CommitStatus> = Vec::new();
    for c in of_commit(s, &repo, sha) {
        latest.retain(|x| x.context != c.context);
        latest.push(c);
    }
    latest.sort_by_key(|c| c.id);
    let state = if latest
        .iter()
        .any(|c| c.state == "failure" || c.state == "error")
    {
        "failure"
    } else if !latest.is_empty() && latest.iter().all(|c| c.state == "success") {
        "success"
    } else {
        "pending"
    };
    let api = render::repo_api(s, &repo);
    Ok(Response::json(
        200,
        &json!({
            "state": state,
            "sha": sha,
            "total_count": latest.len(),
            // Go's nil slice: none is null, not [].
            "statuses": if latest.is_empty() { Value::Null } else {
                json!(latest.iter().map(|c| render(s, &repo, c)).collect::<Vec<_>>())
            },
            "repository": render::repo(s, &repo, None, auth.doer.is_some()),
            "commit_url": format!("{api}/commits/{sha}"),
            "url": format!("{api}/commits/{sha}/status"),
        }),
    ))
}
