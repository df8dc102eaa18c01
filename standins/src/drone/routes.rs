//! The `/api` routes: sessions, the ACL of `handler/api/acl`, and the repository routes.

use super::*;

pub(super) fn json_err(status: u16, message: &str) -> Response {
    Response::json(
        status,
        &model::ApiError {
            message: message.into(),
        },
    )
}

/// `render.NotFound` with a store miss.
pub(super) fn no_rows() -> Response {
    json_err(404, "sql: no rows in result set")
}

pub(super) fn handle(inner: &Arc<Inner>, req: &Request) -> Response {
    let segs = req.segments();
    let m = req.method.as_str();
    match segs.as_slice() {
        ["_standin", "drone", rest @ ..] => control(inner, req, rest),
        ["api", "user"] if m == "GET" => match session(inner, req) {
            Some(u) => Response::json(
                200,
                &UserJson {
                    id: u.id,
                    login: u.login,
                    email: String::new(),
                    machine: u.machine,
                    admin: u.admin,
                    active: true,
                    avatar: String::new(),
                    syncing: false,
                    synced: u.created,
                    created: u.created,
                    updated: u.created,
                    last_login: 0,
                },
            ),
            None => json_err(401, "Unauthorized"),
        },
        ["api", "repos", owner, name, rest @ ..] => repo_routes(inner, req, owner, name, rest),
        _ => Response::text(404, "404 page not found\n"),
    }
}

/// `session.Get`: an `Authorization` header (any `Bearer ` prefix stripped) or
/// `?access_token=`; an unknown token is a guest, not an error.
pub(super) fn session(inner: &Inner, req: &Request) -> Option<UserRec> {
    let raw = match req.header("Authorization").filter(|h| !h.is_empty()) {
        Some(h) => h.to_owned(),
        None => req
            .query("access_token")
            .filter(|t| !t.is_empty())?
            .to_owned(),
    };
    let token = raw.strip_prefix("Bearer ").unwrap_or(&raw);
    inner
        .lock()
        .users
        .iter()
        .find(|u| u.token == token)
        .cloned()
}

#[derive(Clone, Copy, PartialEq)]
pub(super) enum Need {
    Read,
    Write,
}

/// `acl.InjectRepository` + `acl.CheckAccess`.
pub(super) fn check_access(
    st: &State,
    user: Option<&UserRec>,
    owner: &str,
    name: &str,
    need: Need,
) -> Result<i64, Response> {
    let Some(repo) = st.repo(owner, name) else {
        return Err(match user {
            Some(_) => json_err(404, "Not Found"),
            None => json_err(401, "Unauthorized"),
        });
    };
    let write = need == Need::Write;
    match user {
        None if write => return Err(json_err(401, "Unauthorized")),
        Some(u) if u.admin => return Ok(repo.id),
        _ => {}
    }
    if !write {
        match (repo.visibility.as_str(), user) {
            ("public", _) => return Ok(repo.id),
            (_, None) => return Err(json_err(401, "Unauthorized")),
            ("internal", Some(_)) => return Ok(repo.id),
            _ => {}
        }
    }
    let Some(user) = user else {
        return Err(json_err(401, "Unauthorized"));
    };
    let Some(perm) = st.perms.get(&(repo.id, user.id)) else {
        return Err(json_err(404, "Not Found"));
    };
    if !perm.read || (write && !perm.write) {
        return Err(json_err(404, "Not Found"));
    }
    Ok(repo.id)
}

pub(super) fn parse_number(s: &str) -> Result<i64, Response> {
    s.parse::<i64>().map_err(|_| {
        json_err(
            400,
            &format!("strconv.ParseInt: parsing {s:?}: invalid syntax"),
        )
    })
}

pub(super) fn repo_routes(
    inner: &Arc<Inner>,
    req: &Request,
    owner: &str,
    name: &str,
    rest: &[&str],
) -> Response {
    let user = session(inner, req);
    let m = req.method.as_str();
    // Every repo route sits behind CheckReadAccess; writes add CheckWriteAccess.
    let need = match (m, rest) {
        ("POST", ["builds"]) | ("POST", ["builds", _]) | ("DELETE", ["builds", _]) => Need::Write,
        _ => Need::Read,
    };
    {
        let st = inner.lock();
        if let Err(r) = check_access(&st, user.as_ref(), owner, name, Need::Read) {
            return r;
        }
        if need == Need::Write {
            if let Err(r) = check_access(&st, user.as_ref(), owner, name, Need::Write) {
                return r;
            }
        }
    }
    match (m, rest) {
        ("GET", []) => {
            let st = inner.lock();
            match st.repo(owner, name) {
                Some(r) => Response::json(200, &repo_json(inner, r)),
                None => no_rows(),
            }
        }
        ("GET", ["builds"]) => list_builds(inner, req, owner, name),
        ("POST", ["builds"]) => match user {
            Some(u) => create_build(inner, req, &u, owner, name),
            None => json_err(401, "Unauthorized"),
        },
        ("GET", ["builds", n]) => match parse_number(n) {
            Ok(n) => {
                let st = inner.lock();
                let Some(repo) = st.repo(owner, name) else {
                    return no_rows();
                };
                match st.build_idx(repo.id, n) {
                    Some(i) => Response::json(200, &st.with_stages(&st.builds[i].build)),
                    None => no_rows(),
                }
            }
            Err(r) => r,
        },
        ("DELETE", ["builds", n]) => match parse_number(n) {
            Ok(n) => cancel(inner, owner, name, n),
            Err(r) => r,
        },
        ("GET", ["builds", n, "logs", stage, step]) => {
            let (n, stage, step) = match (parse_number(n), parse_number(stage), parse_number(step))
            {
                (Ok(a), Ok(b), Ok(c)) => (a, b, c),
                (Err(r), _, _) | (_, Err(r), _) | (_, _, Err(r)) => return r,
            };
            let st = inner.lock();
            let Some(repo) = st.repo(owner, name) else {
                return no_rows();
            };
            let Some(i) = st.build_idx(repo.id, n) else {
                return no_rows();
            };
            let bid = st.builds[i].build.id;
            let Some(sg) = st
                .stages
                .iter()
                .find(|s| s.build_id == bid && s.number == stage)
            else {
                return no_rows();
            };
            let Some(sp) = sg.steps.iter().find(|s| s.number == step) else {
                return no_rows();
            };
            match st.logs.get(&sp.id) {
                // The runner uploads its line history as is; a step that printed nothing
                // uploads a nil slice, which Go encodes as `null`.
                Some(lines) => {
                    let body = if lines.is_empty() {
                        b"null".to_vec()
                    } else {
                        serde_json::to_vec(lines).unwrap_or_else(|_| b"null".to_vec())
                    };
                    Response::new(200)
                        .header("Content-Type", "application/json")
                        .body(body)
                }
                None => no_rows(),
            }
        }
        _ => Response::text(404, "404 page not found\n"),
    }
}

/// `builds/list.go` `HandleList`.
pub(super) fn list_builds(inner: &Inner, req: &Request, owner: &str, name: &str) -> Response {
    let page: i64 = req.query("page").and_then(|p| p.parse().ok()).unwrap_or(0);
    let mut limit: i64 = req
        .query("per_page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    if !(1..=100).contains(&limit) {
        limit = 25;
    }
    let offset = match page {
        0 | 1 => 0,
        p => (p - 1) * limit,
    };
    let reference = match (req.query("branch"), req.query("tag")) {
        (Some(b), _) if !b.is_empty() => Some(format!("refs/heads/{b}")),
        (_, Some(t)) if !t.is_empty() => Some(format!("refs/tags/{t}")),
        _ => None,
    };
    let st = inner.lock();
    let Some(repo) = st.repo(owner, name) else {
        return no_rows();
    };
    let mut items: Vec<&Build> = st
        .builds
        .iter()
        .map(|b| &b.build)
        .filter(|b| b.repo_id == repo.id)
        .filter(|b| reference.as_ref().is_none_or(|r| &b.reference == r))
        .collect();
    items.sort_by_key(|b| std::cmp::Reverse(b.id));
    // A negative offset (page < 0) is an SQL error in Drone; answer as its 500 would.
    if offset < 0 {
        return json_err(500, "pq: OFFSET must not be negative");
    }
    let page: Vec<Build> = items
        .into_iter()
        .skip(offset as usize)
        .take(limit as usize)
        .map(|b| {
            let mut b = b.clone();
            b.stages.clear();
            b
        })
        .collect();
    Response::json(200, &page)
}
