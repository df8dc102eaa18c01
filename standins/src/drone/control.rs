//! The control surface under `/_standin/drone/` (stand-in only).

use super::*;

#[derive(Deserialize)]
pub(super) struct NewUser {
    login: String,
    #[serde(default)]
    admin: bool,
    #[serde(default)]
    token: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct BranchBody {
    branch: String,
    sha: String,
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
            Ok(u) => match create_user(inner, &u.login, u.admin, u.token.as_deref()) {
                Ok(token) => {
                    Response::json(201, &serde_json::json!({"login": u.login, "token": token}))
                }
                Err(e) => Response::text(400, &format!("{e:#}")),
            },
            Err(r) => r,
        },
        ("POST", ["repos"]) => match body::<NewRepo>(req) {
            Ok(r) => match create_repo(inner, r) {
                Ok(j) => Response::json(201, &j),
                Err(e) => Response::text(400, &format!("{e:#}")),
            },
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
