//! What several of these test files need: one HTTP call with the whole answer, the Gitea
//! world of the Gitea tests (on the stand-in or the real one), and the process checks of the
//! runner tests.
#![allow(dead_code)]

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use standins::forge::Forge;
use standins::gitea::PullSpec;

pub const WAIT: Duration = Duration::from_secs(60);

pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

/// One request; `auth` is the whole Authorization header value.
pub fn call(method: &str, url: &str, auth: Option<&str>, body: Option<Value>) -> Resp {
    let a = agent();
    let result = match method {
        "GET" | "DELETE" => {
            let mut r = if method == "GET" {
                a.get(url)
            } else {
                a.delete(url)
            };
            if let Some(h) = auth {
                r = r.header("Authorization", h);
            }
            r.call()
        }
        _ => {
            let mut r = match method {
                "POST" => a.post(url),
                "PUT" => a.put(url),
                _ => a.patch(url),
            };
            if let Some(h) = auth {
                r = r.header("Authorization", h);
            }
            match body {
                Some(b) => r.send_json(&b),
                None => r.send_empty(),
            }
        }
    };
    let mut resp = result.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let body = resp.body_mut().read_to_string().unwrap_or_default();
    Resp {
        status,
        headers,
        body,
    }
}

pub fn tok(t: &str) -> String {
    format!("token {t}")
}

pub fn wait_file(path: &Path) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(s) = std::fs::read_to_string(path) {
            if s.ends_with('\n') {
                return s.trim().to_owned();
            }
        }
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn alive(pid: &str) -> bool {
    // A zombie still has a /proc entry; it is not alive.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

pub fn kill(pid: &str) {
    let _ = std::process::Command::new("kill")
        .args(["-9", pid])
        .status();
}

/// An org `acme` with repo `app`, maintainer `alice` (member), outsider `bob` (fork
/// `bob/app`), bot `ci` (member), and PR #1 from bob's fork.
pub struct World<F: Forge> {
    pub g: F,
    pub alice: String,
    pub bob: String,
    pub ci: String,
}

pub fn world<F: Forge>(g: F) -> World<F> {
    g.create_org("acme").unwrap();
    for u in ["alice", "bob", "ci"] {
        g.create_user(u).unwrap();
    }
    g.set_member("acme", "alice", false).unwrap();
    g.set_member("acme", "ci", false).unwrap();
    g.create_repo("acme", "app", false).unwrap();
    g.fork_repo("acme/app", "bob").unwrap();
    let (n, _) = g
        .open_pull(
            "acme",
            "app",
            &PullSpec {
                poster: "bob".into(),
                title: "Fix x".into(),
                body: String::new(),
                head_repo: Some("bob/app".into()),
                head_branch: "fix-x".into(),
                head_sha: "3f2e".repeat(10),
                base_branch: None,
            },
        )
        .unwrap();
    assert_eq!(n, 1);
    let all = &["all"];
    let alice = g.create_token("alice", all).unwrap();
    let bob = g.create_token("bob", all).unwrap();
    let ci = g.create_token("ci", all).unwrap();
    World { g, alice, bob, ci }
}

impl<F: Forge> World<F> {
    pub fn api(&self, path: &str) -> String {
        format!("{}{path}", self.g.api_url())
    }
}
