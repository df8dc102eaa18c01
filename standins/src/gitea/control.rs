//! The stand-in Gitea's own control surface, JSON in and out, for the binary's users
//! (Python tests, the local end-to-end run). Each route calls the same code as the
//! in-process methods on [`super::Gitea`]. Answers: 200/201 with JSON, 400 `{"error": …}`.
//!
//! | route | body | answer |
//! |---|---|---|
//! | `POST /_standin/users` | `{login, full_name?, email?, admin?}` | `{id}` |
//! | `POST /_standin/users/{login}/rename` | `{new}` | `{}` |
//! | `POST /_standin/tokens` | `{user, scopes: [..]}` | `{token}` |
//! | `POST /_standin/orgs` | `{name}` | `{id}` |
//! | `PUT /_standin/orgs/{org}/members/{user}` | `{public?}` | `{}` |
//! | `DELETE /_standin/orgs/{org}/members/{user}` | | `{}` |
//! | `POST /_standin/repos` | `{owner, name, private?, fork_of?: "o/r"}` | `{id}` |
//! | `DELETE /_standin/repos/{o}/{r}` | | `{}` |
//! | `PUT /_standin/repos/{o}/{r}/collaborators/{user}` | | `{}` |
//! | `PUT /_standin/repos/{o}/{r}/archived` | `{archived}` | `{}` |
//! | `PUT /_standin/repos/{o}/{r}/branches/{name}` | `{sha}` | `{}` |
//! | `DELETE /_standin/repos/{o}/{r}/branches/{name}` | | `{}` |
//! | `POST /_standin/repos/{o}/{r}/pulls` | [`super::PullSpec`] | `{number}` |
//! | `POST /_standin/repos/{o}/{r}/issues` | `{poster, title}` | `{number}` |
//! | `POST /_standin/repos/{o}/{r}/issues/{n}/{close,reopen,lock}` | | `{}` |
//! | `POST /_standin/repos/{o}/{r}/pulls/{n}/merge` | `{by}` | `{}` |
//! | `POST /_standin/repos/{o}/{r}/pulls/{n}/head` | `{sha}` | `{}` |
//! | `PUT /_standin/repos/{o}/{r}/issues/{n}/title` | `{title}` | `{}` |
//! | `POST /_standin/repos/{o}/{r}/issues/{n}/comments` | `{user, body, review?}` | `{id}` |
//! | `PATCH /_standin/comments/{id}` | `{user, body}` | `{}` |
//! | `POST /_standin/repos/{o}/{r}/hooks` | [`super::HookSpec`] | `{id}` |
//! | `PUT /_standin/repos/{o}/{r}/watchers/{user}` | | `{}` |
//! | `GET /_standin/clock`, `PUT /_standin/clock` | `{now?, advance?, real?, tz_offset_secs?}` | `{now}` |
//! | `GET /_standin/deliveries` | | `[Delivery]` |

use anyhow::{anyhow, Context, Result};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{HookSpec, Parts, PullSpec};
use crate::http::{Request, Response};

#[derive(Deserialize, Default)]
#[serde(default)]
struct Body {
    login: String,
    full_name: String,
    email: String,
    admin: bool,
    new: String,
    user: String,
    scopes: Vec<String>,
    name: String,
    public: bool,
    owner: String,
    private: bool,
    fork_of: Option<String>,
    archived: bool,
    sha: String,
    poster: String,
    title: String,
    by: String,
    body: String,
    review: bool,
    now: Option<i64>,
    advance: Option<i64>,
    real: bool,
    tz_offset_secs: Option<i32>,
}

pub(crate) fn handle(p: &Parts, req: &Request) -> Response {
    match dispatch(p, req) {
        Ok(v) => Response::json(200, &v),
        Err(e) => Response::json(400, &json!({"error": format!("{e:#}")})),
    }
}

fn int(s: &str) -> Result<i64> {
    s.parse().with_context(|| format!("not a number: {s:?}"))
}

fn dispatch(p: &Parts, req: &Request) -> Result<Value> {
    let segs = req.segments();
    let b: Body = if req.body.is_empty() {
        Body::default()
    } else {
        req.json()
            .context("control body is not the expected JSON")?
    };
    let m = req.method.as_str();
    let done = json!({});
    Ok(match (m, &segs[1..]) {
        ("POST", ["users"]) => {
            json!({"id": p.create_user(&b.login, &b.full_name, &b.email, b.admin, false)?})
        }
        ("POST", ["users", login, "rename"]) => {
            p.rename_user(login, &b.new)?;
            done
        }
        ("POST", ["tokens"]) => json!({"token": p.create_token(&b.user, &b.scopes)?}),
        ("POST", ["orgs"]) => json!({"id": p.create_user(&b.name, &b.full_name, "", false, true)?}),
        ("PUT", ["orgs", org, "members", user]) => {
            p.set_member(org, user, b.public)?;
            done
        }
        ("DELETE", ["orgs", org, "members", user]) => {
            p.remove_member(org, user)?;
            done
        }
        ("POST", ["repos"]) => {
            let name = match (&b.fork_of, b.name.is_empty()) {
                (Some(f), true) => f.rsplit('/').next().unwrap_or(f).to_owned(),
                _ => b.name.clone(),
            };
            json!({"id": p.create_repo(&b.owner, &name, b.private, b.fork_of.as_deref())?})
        }
        ("DELETE", ["repos", o, r]) => {
            p.delete_repo(o, r)?;
            done
        }
        ("PUT", ["repos", o, r, "collaborators", user]) => {
            p.add_collaborator(o, r, user)?;
            done
        }
        ("PUT", ["repos", o, r, "archived"]) => {
            p.set_archived(o, r, b.archived)?;
            done
        }
        ("PUT", ["repos", o, r, "branches", name]) => {
            p.push_branch(o, r, name, &b.sha)?;
            done
        }
        ("DELETE", ["repos", o, r, "branches", name]) => {
            p.delete_branch(o, r, name)?;
            done
        }
        ("POST", ["repos", o, r, "pulls"]) => {
            let spec: PullSpec = req.json().context("pull spec")?;
            json!({"number": p.open_pull(o, r, &spec)?})
        }
        ("POST", ["repos", o, r, "issues"]) => {
            json!({"number": p.open_issue(o, r, &b.poster, &b.title)?})
        }
        ("POST", ["repos", o, r, "issues", n, action]) if *action != "comments" => {
            let n = int(n)?;
            match *action {
                "close" => p.set_closed(o, r, n, true)?,
                "reopen" => p.set_closed(o, r, n, false)?,
                "lock" => p.lock_issue(o, r, n)?,
                other => return Err(anyhow!("unknown issue action {other}")),
            }
            done
        }
        ("POST", ["repos", o, r, "pulls", n, "merge"]) => {
            p.merge_pull(o, r, int(n)?, &b.by)?;
            done
        }
        ("POST", ["repos", o, r, "pulls", n, "head"]) => {
            p.push_pull_head(o, r, int(n)?, &b.sha)?;
            done
        }
        ("PUT", ["repos", o, r, "issues", n, "title"]) => {
            p.set_title(o, r, int(n)?, &b.title)?;
            done
        }
        ("POST", ["repos", o, r, "issues", n, "comments"]) => {
            let kind = if b.review { 22 } else { 0 };
            json!({"id": p.comment(o, r, int(n)?, &b.user, &b.body, kind)?})
        }
        ("PATCH", ["comments", id]) => {
            p.edit_comment(int(id)?, &b.user, &b.body)?;
            done
        }
        ("POST", ["repos", o, r, "hooks"]) => {
            let spec: HookSpec = req.json().context("hook spec")?;
            json!({"id": p.add_webhook(o, r, &spec)?})
        }
        ("PUT", ["repos", o, r, "watchers", user]) => {
            p.watch(user, o, r)?;
            done
        }
        ("GET", ["clock"]) => json!({"now": p.lock().now()}),
        ("PUT", ["clock"]) => {
            let mut s = p.lock();
            if b.real {
                s.fixed_now = None;
            }
            if let Some(n) = b.now {
                s.fixed_now = Some(n);
            }
            if let Some(a) = b.advance {
                let now = s.now();
                s.fixed_now = Some(now + a);
            }
            if let Some(tz) = b.tz_offset_secs {
                s.tz_offset = tz;
            }
            json!({"now": s.now()})
        }
        ("GET", ["deliveries"]) => {
            let d = p
                .deliveries
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            serde_json::to_value(d)?
        }
        _ => return Err(anyhow!("no control route {m} {}", req.path)),
    })
}
