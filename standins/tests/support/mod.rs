//! What several of these test files need: one HTTP call with the whole answer, the Gitea
//! world of the Gitea tests (on the stand-in or the real one), and the process checks of the
//! runner tests.
#![allow(dead_code)]

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use standins::forge::Forge;

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
    let n = standins::forge::acme_scene(&g, &"3f2e".repeat(10)).unwrap();
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

/// The comment every webhook test posts: HTML characters that Go's JSON escapes.
pub const HOOK_COMMENT: &str = "!testme <b>&</b>";

/// What every delivery of alice's `HOOK_COMMENT` on `acme/app#1` carries, signed with
/// `secret`, whichever Gitea sent it (services/webhook/deliver.go addDefaultHeaders;
/// modules/webhook/type.go Event(): a PR comment travels as issue_comment with
/// X-Gitea-Event-Type pull_request_comment; the body is MarshalIndent with Go's HTML escaping,
/// signed over its raw bytes). Returns the payload for the version-specific checks.
pub fn assert_comment_delivery(
    req: &standins::http::Request,
    secret: &[u8],
    comment: i64,
) -> Value {
    use hmac::{Hmac, KeyInit, Mac};
    use serde_json::json;
    use standins::gitea::digest::{hex, hmac_sha1};

    let body = &req.body;
    // Computed here with the hmac crate, not the stand-in's own digest code.
    let mut m = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret).unwrap();
    m.update(body);
    let sig = req.header("X-Gitea-Signature").unwrap();
    assert_eq!(sig, hex(&m.finalize().into_bytes()));
    assert_eq!(
        req.header("X-Hub-Signature-256").unwrap(),
        format!("sha256={sig}")
    );
    let sha1 = hex(&hmac_sha1(secret, body));
    assert_eq!(
        req.header("X-Hub-Signature").unwrap(),
        format!("sha1={sha1}")
    );
    assert_eq!(req.header("X-Gitea-Event"), Some("issue_comment"));
    assert_eq!(
        req.header("X-Gitea-Event-Type"),
        Some("pull_request_comment")
    );
    assert_eq!(req.header("X-GitHub-Event"), Some("issue_comment"));
    let uuid = req.header("X-Gitea-Delivery").unwrap();
    assert_eq!(uuid.len(), 36);
    assert_eq!(req.header("X-Gogs-Delivery"), Some(uuid));
    let text = String::from_utf8(body.clone()).unwrap();
    assert!(
        text.starts_with("{\n  \""),
        "MarshalIndent, two spaces: {text:.40}"
    );
    assert!(text.contains("\\u003cb\\u003e\\u0026"), "Go escapes <>&");
    let p: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(p["action"], json!("created"));
    assert_eq!(p["is_pull"], json!(true));
    assert_eq!(p["comment"]["id"], json!(comment));
    assert_eq!(p["comment"]["body"], json!(HOOK_COMMENT));
    assert_eq!(p["sender"]["login"], json!("alice"));
    assert_eq!(p["repository"]["full_name"], json!("acme/app"));
    p
}
