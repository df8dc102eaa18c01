//! A run's identity, shared by every binary: the Drone build params the bridge sends and
//! stage-runner and dashboard-gen read, and the app domain a run deploys to.
//!
//! Keeping the param names here, once, is what stops the bridge from sending a param that
//! nobody reads.

use anyhow::{bail, Result};

/// Drone build param: the enrolled recipe's name.
pub const PARAM_RECIPE: &str = "RECIPE";
/// Drone build param: the full 40-hex sha of the PR head.
pub const PARAM_REF: &str = "REF";
/// Drone build param: the PR number on the recipe repository.
pub const PARAM_PR: &str = "PR";
/// Drone build param: clone URL holding `REF` (the fork, or the base repository when the fork
/// is gone, whose `refs/pull/N/head` always holds the PR head).
pub const PARAM_SRC: &str = "SRC";
/// Drone build param: the id of the `!testme` comment that asked for the run; the bridge
/// finds its own builds again by it after a crash.
pub const PARAM_COMMENT: &str = "COMMENT";
/// Drone build param: the sweep slot (`YYYY-MM-DD`, the UTC day it began) of a scheduled run
/// of the recipe's default branch; absent on a PR run. A scheduled run has `PR` 0 and no
/// `COMMENT`; the sweep finds its own builds again by recipe and slot.
pub const PARAM_SCHEDULE: &str = "SCHEDULE";

/// The params of one run, as sent to and read back from Drone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunParams {
    pub recipe: String,
    pub sha: String,
    /// Gitea's ids and numbers are int64, as everywhere else cc-ci holds them.
    pub pr: i64,
    pub src: String,
    pub comment: i64,
    /// The sweep slot of a scheduled run; empty for a PR run.
    pub schedule: String,
}

impl RunParams {
    /// In the order the bridge sends them.
    pub fn to_pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = vec![
            (PARAM_RECIPE, self.recipe.clone()),
            (PARAM_REF, self.sha.clone()),
            (PARAM_PR, self.pr.to_string()),
            (PARAM_SRC, self.src.clone()),
        ];
        if self.schedule.is_empty() {
            pairs.push((PARAM_COMMENT, self.comment.to_string()));
        } else {
            pairs.push((PARAM_SCHEDULE, self.schedule.clone()));
        }
        pairs
    }

    pub fn is_scheduled(&self) -> bool {
        !self.schedule.is_empty()
    }

    /// Reads params from a lookup (a Drone build's `params`, or the environment).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<RunParams> {
        let need = |k: &str| match get(k) {
            Some(v) if !v.is_empty() => Ok(v),
            _ => bail!("parameter {k} is missing"),
        };
        let recipe = need(PARAM_RECIPE)?;
        check_recipe_name(&recipe)?;
        let sha = need(PARAM_REF)?;
        if sha.len() != 40 || !sha.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            bail!("parameter {PARAM_REF} must be a full 40-character lowercase hex sha");
        }
        let schedule = get(PARAM_SCHEDULE).unwrap_or_default();
        if !schedule.is_empty() {
            check_slot(&schedule)?;
        }
        let pr = need(PARAM_PR)?;
        let pr: i64 = pr
            .parse()
            .ok()
            .filter(|n| *n > 0 || (*n == 0 && !schedule.is_empty()))
            .ok_or_else(|| anyhow::anyhow!("parameter {PARAM_PR} must be a positive number"))?;
        if pr != 0 && !schedule.is_empty() {
            bail!("parameter {PARAM_SCHEDULE} is for runs of the default branch: {PARAM_PR} must be 0");
        }
        let src = need(PARAM_SRC)?;
        let comment = match get(PARAM_COMMENT) {
            Some(c) if !c.is_empty() => c
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| anyhow::anyhow!("parameter {PARAM_COMMENT} must be a number"))?,
            _ => 0,
        };
        Ok(RunParams {
            recipe,
            sha,
            pr,
            src,
            comment,
            schedule,
        })
    }
}

/// A sweep slot is the UTC date it began, `YYYY-MM-DD`.
pub fn check_slot(slot: &str) -> Result<()> {
    let b = slot.as_bytes();
    let ok = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if !ok {
        bail!(
            "parameter {PARAM_SCHEDULE} must be a date, YYYY-MM-DD (got {:?})",
            slot.chars().take(32).collect::<String>()
        );
    }
    Ok(())
}

/// Recipe names are Co-op Cloud catalogue names: lowercase letters, digits and single
/// hyphens, starting with a letter. Anything else never reaches a path, a domain or argv.
pub fn check_recipe_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && !name.contains("--")
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !ok {
        bail!(
            "recipe name {:?} is not a catalogue name (lowercase letters, digits, single hyphens)",
            name.chars().take(64).collect::<String>()
        );
    }
    Ok(())
}

/// Docker's limit on secret and config names (moby/swarmkit#2918), stack prefix included.
pub const DOCKER_NAME_MAX: usize = 64;
/// A DNS label's limit (RFC 1035).
pub const DNS_LABEL_MAX: usize = 63;

/// The app domain of a run: `<recipe>-<run id>.<base>`, the recipe part shortened
/// deterministically so that every docker secret abra makes for it,
/// `<stack>_<secret>_<version>` with the stack being the domain with `.` → `_`, stays within
/// 64 characters. `longest_secret` is the longest `<secret>_<version>` the recipe declares
/// (e.g. `db_root_password_v2`).
pub fn app_domain(recipe: &str, run_id: &str, base: &str, longest_secret: usize) -> Result<String> {
    check_recipe_name(recipe)?;
    if run_id.is_empty() || !run_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        bail!("run id {run_id:?} must be alphanumeric");
    }
    // stack + "_" + secret_version <= 64, stack = label + "_" + base.
    let fixed = 1 + base.len() + 1 + longest_secret;
    let budget = DOCKER_NAME_MAX
        .checked_sub(fixed)
        .map(|b| b.min(DNS_LABEL_MAX))
        .unwrap_or(0);
    let suffix = format!("-{run_id}");
    // Room for at least 4 characters of recipe name keeps the domain recognisable.
    if budget < suffix.len() + 4 {
        bail!(
            "base domain {base:?} leaves no room for app names: with a {longest_secret}-character \
             secret, docker's {DOCKER_NAME_MAX}-character limit is exceeded; use a shorter base domain"
        );
    }
    let room = budget - suffix.len();
    let name = if recipe.len() <= room {
        recipe.to_owned()
    } else {
        // prefix + 4 hex of a hash of the whole name: two long names sharing a prefix differ.
        let hash = format!("{:04x}", fnv1a(recipe.as_bytes()) & 0xffff);
        let keep = room - hash.len() - 1;
        let prefix = recipe[..keep].trim_end_matches('-');
        format!("{prefix}-{hash}")
    };
    Ok(format!("{name}{suffix}.{base}"))
}

/// The swarm stack name abra derives from a domain.
pub fn stack_name(domain: &str) -> String {
    domain.replace('.', "_")
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    const SHA: &str = "3f2e1d0c9b8a7f6e5d4c3b2a1f0e9d8c7b6a5f4e";

    #[test]
    fn params_round_trip() {
        let p = RunParams {
            recipe: "custom-html".into(),
            sha: SHA.into(),
            pr: 42,
            src: "https://git.example.org/bob/custom-html.git".into(),
            comment: 1234,
            schedule: String::new(),
        };
        let pairs = p.to_pairs();
        let back =
            RunParams::from_lookup(|k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()))
                .unwrap();
        assert_eq!(back, p);
        let scheduled = RunParams {
            pr: 0,
            comment: 0,
            schedule: "2026-12-02".into(),
            ..p
        };
        let pairs = scheduled.to_pairs();
        assert!(pairs.iter().all(|(k, _)| *k != PARAM_COMMENT), "{pairs:?}");
        let back =
            RunParams::from_lookup(|k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()))
                .unwrap();
        assert_eq!(back, scheduled);
        assert!(back.is_scheduled());
    }

    #[test]
    fn a_scheduled_run_has_a_date_slot_and_no_pr() {
        let with = |pr: &'static str, slot: &'static str| {
            let pairs = [
                ("RECIPE", "custom-html"),
                ("REF", SHA),
                ("PR", pr),
                ("SRC", "https://x/y.git"),
                ("SCHEDULE", slot),
            ];
            RunParams::from_lookup(lookup(&pairs)).map_err(|e| e.to_string())
        };
        assert!(with("0", "2026-12-02").is_ok());
        assert!(with("3", "2026-12-02")
            .unwrap_err()
            .contains("PR must be 0"));
        for bad in ["2026-12-2", "tomorrow", "2026-12-02; rm", "../../etc/x"] {
            assert!(with("0", bad).unwrap_err().contains("SCHEDULE"), "{bad}");
        }
    }

    #[test]
    fn bad_params_name_the_parameter() {
        let base = [
            ("RECIPE", "custom-html"),
            ("REF", SHA),
            ("PR", "4"),
            ("SRC", "https://x/y.git"),
        ];
        for (key, bad) in [
            ("RECIPE", "../etc"),
            ("RECIPE", "Custom"),
            ("REF", "main"),
            ("REF", &SHA[..39]),
            ("PR", "0"),
            ("PR", "-3"),
            ("PR", "4; rm"),
        ] {
            let pairs: Vec<(&str, &str)> = base
                .iter()
                .map(|(k, v)| if *k == key { (*k, bad) } else { (*k, *v) })
                .collect();
            let err = RunParams::from_lookup(lookup(&pairs))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(key) || err.contains("recipe name"),
                "{key}={bad}: {err}"
            );
        }
        let err = RunParams::from_lookup(lookup(&base[..2]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("PR is missing"), "{err}");
        let negative = [base.as_slice(), &[("COMMENT", "-1")]].concat();
        let err = RunParams::from_lookup(lookup(&negative))
            .unwrap_err()
            .to_string();
        assert!(err.contains("COMMENT must be a number"), "{err}");
    }

    #[test]
    fn short_names_are_kept_whole() {
        let d = app_domain("custom-html", "42", "ci.coopcloud.tech", 12).unwrap();
        assert_eq!(d, "custom-html-42.ci.coopcloud.tech");
    }

    #[test]
    fn longest_real_recipe_names_fit_docker_and_dns() {
        // Long names from the Co-op Cloud catalogue, and secrets as long as real recipes use.
        let recipes = [
            "matrix-synapse",
            "lasuite-docs",
            "bluesky-pds",
            "backup-bot-two",
            "mailu-admin-with-a-very-long-recipe-name-for-testing",
            "discourse-with-federation-and-sso-plugins-enabled",
        ];
        let secret = "aws_secret_access_key_v12";
        for r in recipes {
            for run in ["1", "99999", "1234567"] {
                let d = app_domain(r, run, "ci.coopcloud.tech", secret.len()).unwrap();
                let label = d.split('.').next().unwrap();
                assert!(label.len() <= DNS_LABEL_MAX, "{d}");
                let name = format!("{}_{secret}", stack_name(&d));
                assert!(
                    name.len() <= DOCKER_NAME_MAX,
                    "{name} is {} chars",
                    name.len()
                );
                assert!(label.ends_with(&format!("-{run}")), "{d}");
                // Deterministic.
                assert_eq!(
                    d,
                    app_domain(r, run, "ci.coopcloud.tech", secret.len()).unwrap()
                );
            }
        }
    }

    #[test]
    fn shortened_names_with_a_shared_prefix_differ() {
        let a = app_domain(
            "discourse-with-federation-aaaa",
            "7",
            "ci.coopcloud.tech",
            25,
        )
        .unwrap();
        let b = app_domain(
            "discourse-with-federation-bbbb",
            "7",
            "ci.coopcloud.tech",
            25,
        )
        .unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn impossible_base_domain_is_refused() {
        let base = "a-very-long-base-domain-for-a-ci-instance.example.org";
        let err = app_domain("custom-html", "1", base, 20)
            .unwrap_err()
            .to_string();
        assert!(err.contains("shorter base domain"), "{err}");
    }
}
