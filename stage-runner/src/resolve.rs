//! `resolve = "PATTERN=ADDRESS"`: app names matching PATTERN (`*.ci.test`) are reached at
//! ADDRESS (`127.0.0.1`), keeping the name for TLS (SNI, the certificate) and the Host header,
//! as `curl --resolve` does. For machines whose DNS does not know the apps' names (a test
//! machine with Traefik on 127.0.0.1); a cc-ci host's DNS points the app domain at itself.
//! The harness reads the same setting as `CCCI_RESOLVE`.

use std::net::{Ipv4Addr, SocketAddr};

use anyhow::{bail, Result};
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::NextTimeout;

#[derive(Debug, Clone)]
pub struct Resolve {
    pattern: String,
    address: Ipv4Addr,
}

impl Resolve {
    pub fn parse(s: &str) -> Result<Resolve> {
        let Some((pattern, address)) = s.split_once('=') else {
            bail!("resolve must be PATTERN=ADDRESS (e.g. *.ci.test=127.0.0.1), got {s:?}");
        };
        let Ok(address) = address.trim().parse() else {
            bail!("resolve: {address:?} is not an IPv4 address");
        };
        if pattern.trim().is_empty() {
            bail!("resolve: the pattern is empty");
        }
        Ok(Resolve {
            pattern: pattern.trim().to_ascii_lowercase(),
            address,
        })
    }

    /// Glob match, `*` standing for any run of characters (dots included), as Python's
    /// fnmatch in the harness and Chromium's host-resolver rules read it.
    pub fn matches(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        glob(self.pattern.as_bytes(), host.as_bytes())
    }
}

fn glob(p: &[u8], s: &[u8]) -> bool {
    match p.split_first() {
        None => s.is_empty(),
        Some((b'*', rest)) => (0..=s.len()).any(|i| glob(rest, &s[i..])),
        Some((c, rest)) => s.first() == Some(c) && glob(rest, &s[1..]),
    }
}

/// ureq's resolver with the rule in front.
#[derive(Debug)]
pub struct Pinned(pub Resolve);

impl Resolver for Pinned {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let host = uri.host().unwrap_or_default();
        if !self.0.matches(host) {
            return DefaultResolver::default().resolve(uri, config, timeout);
        }
        let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
            Some("https") => 443,
            _ => 80,
        });
        let mut out = self.empty();
        out.push(SocketAddr::from((self.0.address, port)));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_like_fnmatch() {
        let r = Resolve::parse("*.ci.test=127.0.0.1").unwrap();
        assert!(r.matches("custom-html-1.ci.test"));
        assert!(r.matches("custom-html-1.w1a2b.ci.test."));
        assert!(!r.matches("ci.test"));
        assert!(!r.matches("example.com"));
        assert!(Resolve::parse("*.ci.test").is_err());
        assert!(Resolve::parse("*.ci.test=::1").is_err());
    }
}
