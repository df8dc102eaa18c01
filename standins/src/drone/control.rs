//! The control surface under `/_standin/drone/` (stand-in only).

use super::*;

#[derive(Deserialize)]
pub(super) struct NewUser {
    login: String,
    #[serde(default)]
    admin: bool,
    #[serde(default = "yes")]
    active: bool,
    #[serde(default)]
    token: Option<String>,
}

pub(super) fn yes() -> bool {
    true
}

#[derive(Deserialize)]
pub(super) struct PermBody {
    login: String,
    #[serde(flatten)]
    perm: Perm,
}

#[derive(Deserialize)]
pub(super) struct TimeoutBody {
    #[serde(default)]
    minutes: Option<i64>,
    /// Stand-in only (see [`Drone::set_standin_timeout_seconds`]); `null` clears it.
    #[serde(default)]
    standin_timeout_seconds: Option<u64>,
}

#[derive(Deserialize)]
pub(super) struct BranchBody {
    branch: String,
    sha: String,
}

#[derive(Deserialize)]
pub(super) struct ConfigBody {
    yaml: String,
}

#[derive(Deserialize)]
pub(super) struct SecretBody {
    name: String,
    value: String,
}

pub(super) fn control(inner: &Arc<Inner>, req: &Request, rest: &[&str]) -> Response {
    fn body<T: for<'de> Deserialize<'de>>(req: &Request) -> Result<T, Response> {
        req.json::<T>()
            .map_err(|e| Response::text(400, &format!("bad control body: {e}")))
    }
    fn done(r: Result<()>) -> Response {
        match r {
            Ok(()) => Response::new(204),
            Err(e) => Response::text(400, &format!("{e:#}")),
        }
    }
    let m = req.method.as_str();
    let mut_repo = |owner: &str, name: &str, f: &mut dyn FnMut(&mut RepoRec)| -> Result<()> {
        let mut st = inner.lock();
        let r = st
            .repo_mut(owner, name)
            .ok_or_else(|| anyhow!("no repo {owner}/{name}"))?;
        f(r);
        Ok(())
    };
    match (m, rest) {
        ("POST", ["users"]) => match body::<NewUser>(req) {
            Ok(u) => match create_user(inner, &u.login, u.admin, u.active, u.token.as_deref()) {
                Ok(token) => {
                    Response::json(201, &serde_json::json!({"login": u.login, "token": token}))
                }
                Err(e) => Response::text(400, &format!("{e:#}")),
            },
            Err(r) => r,
        },
        ("POST", ["users", login, "active"]) => match body::<serde_json::Value>(req) {
            Ok(v) => {
                let active = v.get("active").and_then(|a| a.as_bool()).unwrap_or(true);
                let mut st = inner.lock();
                match st.users.iter_mut().find(|u| u.login == *login) {
                    Some(u) => {
                        u.active = active;
                        Response::new(204)
                    }
                    None => Response::text(404, "no such user"),
                }
            }
            Err(r) => r,
        },
        ("POST", ["repos"]) => match body::<NewRepo>(req) {
            Ok(r) => match create_repo(inner, r) {
                Ok(j) => Response::json(201, &j),
                Err(e) => Response::text(400, &format!("{e:#}")),
            },
            Err(r) => r,
        },
        ("POST", ["repos", o, n, "perms"]) => match body::<PermBody>(req) {
            Ok(p) => done(set_permission(inner, o, n, &p.login, p.perm)),
            Err(r) => r,
        },
        ("POST", ["repos", o, n, "timeout"]) => match body::<TimeoutBody>(req) {
            Ok(b) => done(mut_repo(o, n, &mut |r| {
                if let Some(m) = b.minutes {
                    r.timeout = m;
                }
                r.standin_timeout_seconds = b.standin_timeout_seconds;
            })),
            Err(r) => r,
        },
        ("POST", ["repos", o, n, "branches"]) => match body::<BranchBody>(req) {
            Ok(b) => done(mut_repo(o, n, &mut |r| {
                r.branches.insert(b.branch.clone(), b.sha.clone());
            })),
            Err(r) => r,
        },
        ("POST", ["repos", o, n, "commits"]) => match body::<Commit>(req) {
            Ok(c) => done(mut_repo(o, n, &mut |r| {
                r.commits.insert(c.sha.clone(), c.clone());
            })),
            Err(r) => r,
        },
        ("POST", ["repos", o, n, "config"]) => match body::<ConfigBody>(req) {
            Ok(c) => done(mut_repo(o, n, &mut |r| {
                r.source = ConfigSource::Inline {
                    yaml: c.yaml.clone(),
                };
            })),
            Err(r) => r,
        },
        ("POST", ["repos", o, n, "secrets"]) => match body::<SecretBody>(req) {
            Ok(s) => done(mut_repo(o, n, &mut |r| {
                r.secrets.insert(s.name.clone(), s.value.clone());
            })),
            Err(r) => r,
        },
        ("POST", ["runner"]) => match body::<RunnerPatch>(req) {
            Ok(p) => {
                set_runner(inner, p);
                Response::new(204)
            }
            Err(r) => r,
        },
        ("GET", ["repos", o, n, "builds", num, "wait"]) => {
            let Ok(num) = num.parse::<i64>() else {
                return Response::text(400, "bad build number");
            };
            // Bounded: at most 10 minutes, default 60 s.
            let ms = req
                .query("timeout_ms")
                .and_then(|t| t.parse::<u64>().ok())
                .unwrap_or(60_000)
                .min(600_000);
            let exists = {
                let st = inner.lock();
                st.repo(o, n)
                    .and_then(|r| st.build_idx(r.id, num))
                    .is_some()
            };
            if !exists {
                return Response::text(404, "no such build");
            }
            match wait_build(inner, o, n, num, Duration::from_millis(ms)) {
                Ok(b) => Response::json(200, &b),
                Err(e) => Response::text(408, &format!("{e:#}")),
            }
        }
        _ => Response::text(404, "no such stand-in control"),
    }
}
