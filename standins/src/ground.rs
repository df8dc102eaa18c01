//! The real ground every world deploys to: the project's Docker engine (`dev/engine`) with the
//! real Traefik on it (`dev/proxy`), shared by every test and the local run. A world reaches it
//! through the environment `dev/engine env` and `dev/proxy env` print.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{bail, Result};

use crate::abra::docker;

/// What a world needs to deploy apps and reach them.
#[derive(Clone, Debug)]
pub struct Ground {
    /// `DOCKER_HOST` of the engine, passed to abra.
    pub docker_host: String,
    /// The proxy's wildcard domain (`CCCI_BASE_DOMAIN`, default `ci.test`).
    pub base_domain: String,
}

const HOW: &str = "start it with: eval \"$(dev/engine start)\" && dev/images && dev/proxy up";

impl Ground {
    /// The engine named by `DOCKER_HOST`, checked to answer and to run the proxy.
    pub fn from_env() -> Result<Ground> {
        let docker_host = std::env::var("DOCKER_HOST").unwrap_or_default();
        if docker_host.is_empty() {
            bail!("DOCKER_HOST is not set: the project's engine is not started ({HOW})");
        }
        let out = docker::call(&["service", "ls", "-q", "--filter", "name=ccci_proxy_app"]);
        match out {
            Ok(o) if o.success() && !o.text().trim().is_empty() => {}
            Ok(o) if o.success() => bail!("the engine at {docker_host} runs no proxy ({HOW})"),
            Ok(o) => bail!(
                "the engine at {docker_host} does not answer: {} ({HOW})",
                o.said()
            ),
            Err(e) => bail!("the engine at {docker_host} does not answer: {e:#} ({HOW})"),
        }
        Ok(Ground {
            docker_host,
            base_domain: std::env::var("CCCI_BASE_DOMAIN")
                .ok()
                .filter(|d| !d.is_empty())
                .unwrap_or_else(|| "ci.test".into()),
        })
    }

    /// A base domain of this world's own under the proxy's (`w1a2b.ci.test`): worlds share
    /// the engine, and run numbers repeat between them, so app names must not.
    pub fn world_domain(&self) -> String {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let x = (std::process::id().wrapping_mul(2_654_435_761) ^ t ^ n.wrapping_mul(40_503))
            & 0xf_ffff;
        format!("w{x:05x}.{}", self.base_domain)
    }

    /// abra's environment in this world.
    pub fn abra_env(&self) -> BTreeMap<String, String> {
        BTreeMap::from([("DOCKER_HOST".to_owned(), self.docker_host.clone())])
    }

    /// stage-runner's `resolve`: the proxy's names are reached on 127.0.0.1.
    pub fn resolve(&self) -> String {
        format!("*.{}=127.0.0.1", self.base_domain)
    }
}

/// Docker's own witness of what the apps under `base_domain` left on the engine: services,
/// containers, volumes, networks, configs and secrets whose names carry the stack suffix
/// abra derives from the domain (`<app>_w1a2b_ci_test_…`), as `kind:name`.
pub fn leftovers(base_domain: &str) -> Vec<String> {
    let tail = format!("_{}_", base_domain.replace('.', "_"));
    let mut left = Vec::new();
    for (kind, args) in [
        ("service", &["service", "ls", "--format", "{{.Name}}"][..]),
        ("container", &["ps", "-a", "--format", "{{.Names}}"][..]),
        ("volume", &["volume", "ls", "--format", "{{.Name}}"][..]),
        ("network", &["network", "ls", "--format", "{{.Name}}"][..]),
        ("config", &["config", "ls", "--format", "{{.Name}}"][..]),
        ("secret", &["secret", "ls", "--format", "{{.Name}}"][..]),
    ] {
        match docker::ok(args) {
            Ok(out) => left.extend(
                docker::lines(&out)
                    .into_iter()
                    .filter(|n| format!("{n}_").contains(&tail))
                    .map(|n| format!("{kind}:{n}")),
            ),
            Err(e) => left.push(format!("{kind}: docker failed: {e:#}")),
        }
    }
    left
}
