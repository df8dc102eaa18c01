//! The HTTP plumbing under the Gitea and Drone clients: one `ureq::Agent` with a global
//! timeout, no redirects followed, bodies capped, and errors that name the upstream, method,
//! route and status — never the token.

use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use serde::de::DeserializeOwned;

use crate::secret::Secret;

/// Largest response body read from an upstream. Gitea and Drone pages are far smaller; a body
/// past this is a fault, not data.
pub const MAX_BODY: u64 = 8 * 1024 * 1024;

/// How a client authenticates: Gitea wants `token <t>`, Drone `Bearer <t>`.
#[derive(Clone, Copy, Debug)]
pub enum AuthScheme {
    Token,
    Bearer,
}

/// A raw answer: status, the headers a caller may need, and the body (already read, capped).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Short printable excerpt of the body for error messages.
    pub fn excerpt(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let mut s: String = text.chars().take(200).collect();
        if text.chars().count() > 200 {
            s.push('…');
        }
        s
    }
}

/// One upstream (a Gitea or a Drone): base URL, credentials and the agent to reach it.
pub struct Api {
    upstream: &'static str,
    base: String,
    auth: AuthScheme,
    token: Secret,
    agent: ureq::Agent,
}

impl Api {
    /// `base` is the API root, e.g. `https://git.example.org/api/v1` or `https://drone.example.org`.
    pub fn new(
        upstream: &'static str,
        base: &str,
        auth: AuthScheme,
        token: Secret,
        timeout: Duration,
    ) -> Api {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            // A redirect is an answer to act on (Gitea's 303 for non-members), not to follow.
            .max_redirects(0)
            .user_agent("cc-ci")
            .build()
            .into();
        Api {
            upstream,
            base: base.trim_end_matches('/').to_owned(),
            auth,
            token,
            agent,
        }
    }

    pub fn upstream(&self) -> &'static str {
        self.upstream
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends one request. `path` starts with `/` and may carry a query string; `body` is sent
    /// as JSON. Any status is returned as a [`Reply`]; only transport failures are errors.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Reply> {
        let url = format!("{}{}", self.base, path);
        let what = || format!("{} {method} {}", self.upstream, route(path));
        let auth = match self.auth {
            AuthScheme::Token => format!("token {}", self.token.expose()),
            AuthScheme::Bearer => format!("Bearer {}", self.token.expose()),
        };
        let result = match (method, body) {
            ("GET", _) => self.agent.get(&url).header("Authorization", &auth).call(),
            ("DELETE", _) => self
                .agent
                .delete(&url)
                .header("Authorization", &auth)
                .call(),
            (m, Some(b)) => {
                let req = match m {
                    "POST" => self.agent.post(&url),
                    "PATCH" => self.agent.patch(&url),
                    "PUT" => self.agent.put(&url),
                    other => return Err(anyhow!("{}: unsupported method {other}", what())),
                };
                req.header("Authorization", &auth).send_json(b)
            }
            (m, None) => {
                let req = match m {
                    "POST" => self.agent.post(&url),
                    "PATCH" => self.agent.patch(&url),
                    "PUT" => self.agent.put(&url),
                    other => return Err(anyhow!("{}: unsupported method {other}", what())),
                };
                req.header("Authorization", &auth).send_empty()
            }
        };
        let mut resp = result.map_err(|e| anyhow!("{}: {}", what(), describe(&e)))?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
            .collect();
        let body = resp
            .body_mut()
            .with_config()
            .limit(MAX_BODY)
            .read_to_vec()
            .map_err(|e| anyhow!("{}: HTTP {status}, reading body: {}", what(), describe(&e)))?;
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    /// Sends a request and decodes a JSON answer, requiring one of `ok` statuses.
    pub fn json<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
        ok: &[u16],
    ) -> Result<(Reply, T)> {
        let reply = self.expect(method, path, body, ok)?;
        let value = serde_json::from_slice(&reply.body).with_context(|| {
            format!(
                "{} {method} {}: HTTP {}: malformed JSON: {}",
                self.upstream,
                route(path),
                reply.status,
                reply.excerpt()
            )
        })?;
        Ok((reply, value))
    }

    /// Sends a request and requires one of `ok` statuses; the body is left undecoded.
    pub fn expect(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
        ok: &[u16],
    ) -> Result<Reply> {
        let reply = self.send(method, path, body)?;
        if !ok.contains(&reply.status) {
            return Err(anyhow!(
                "{} {method} {}: HTTP {}: {}",
                self.upstream,
                route(path),
                reply.status,
                reply.excerpt()
            ));
        }
        Ok(reply)
    }
}

/// The path without its query string: errors name the route, and a query may carry values
/// that do not belong in a log line.
pub fn route(path: &str) -> &str {
    path.split('?').next().unwrap_or(path)
}

/// ureq errors, described without the URL's query or any header.
fn describe(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Timeout(t) => format!("timed out ({t})"),
        ureq::Error::Io(io) => format!("I/O error: {io}"),
        ureq::Error::BodyExceedsLimit(n) => format!("response body over {n} bytes"),
        other => other.to_string(),
    }
}

/// Percent-encodes one query or path component (RFC 3986 unreserved kept).
pub fn encode(s: &str) -> String {
    percent(s, b"", false)
}

/// Percent-encodes with RFC 3986's unreserved characters kept, and those in `keep`; `plus`
/// writes a space as `+` (an HTML form).
pub fn percent(s: &str, keep: &[u8], plus: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            b' ' if plus => out.push('+'),
            b if keep.contains(&b) => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_escapes_plus_and_slash() {
        assert_eq!(
            encode("2025-03-01T10:00:00+01:00"),
            "2025-03-01T10%3A00%3A00%2B01%3A00"
        );
        assert_eq!(encode("a/b c"), "a%2Fb%20c");
    }

    #[test]
    fn route_drops_the_query() {
        assert_eq!(
            route("/repos/a/b/issues/comments?since=x"),
            "/repos/a/b/issues/comments"
        );
    }
}
