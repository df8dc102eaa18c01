//! What every binary's config file shares: reading JSON with the path in every error, URLs
//! checked the same way, repositories as `owner/name`, and the enrolled recipes.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::de::DeserializeOwned;

use crate::run::check_recipe_name;

/// Reads and parses a JSON config file; errors name the file.
pub fn load_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing config {}", path.display()))
}

/// An http(s) URL without trailing slashes; `key` names the setting in the error.
pub fn http_url(key: &str, v: &str) -> Result<String> {
    if !(v.starts_with("http://") || v.starts_with("https://")) || v.contains(char::is_whitespace) {
        bail!("{key} must be an http(s) URL, got {v:?}");
    }
    Ok(v.trim_end_matches('/').to_owned())
}

/// A forge or Drone repository, `owner/name`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Repo {
    pub owner: String,
    pub name: String,
}

impl Repo {
    pub fn parse(s: &str) -> Result<Repo> {
        let ok_part = |p: &str| {
            !p.is_empty()
                && p != "."
                && p != ".."
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        };
        match s.split_once('/') {
            Some((o, n)) if ok_part(o) && ok_part(n) => Ok(Repo {
                owner: o.into(),
                name: n.into(),
            }),
            _ => bail!("{s:?} is not a repository of the form owner/name"),
        }
    }

    pub fn full(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }
}

/// The `recipes` setting: recipe name → repository, every entry checked.
pub fn recipes(map: &BTreeMap<String, String>) -> Result<BTreeMap<String, Repo>> {
    let mut out = BTreeMap::new();
    for (recipe, repo) in map {
        check_recipe_name(recipe).context("recipes")?;
        out.insert(
            recipe.clone(),
            Repo::parse(repo).with_context(|| format!("recipes.{recipe}"))?,
        );
    }
    if out.is_empty() {
        bail!("recipes: no recipe is enrolled");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repos_and_urls() {
        assert_eq!(
            Repo::parse("coop-cloud/custom-html").unwrap().full(),
            "coop-cloud/custom-html"
        );
        for bad in ["a", "a/", "/b", "a/b/c", "../b", "a/.."] {
            assert!(Repo::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(http_url("k", "https://x.org/").unwrap(), "https://x.org");
        assert!(http_url("k", "ftp://x")
            .unwrap_err()
            .to_string()
            .contains("k must be"));
        assert!(http_url("k", "https://x y").is_err());
    }

    #[test]
    fn recipes_are_checked() {
        let mut m = BTreeMap::new();
        assert!(recipes(&m).is_err());
        m.insert("Bad Name".to_owned(), "a/b".to_owned());
        assert!(recipes(&m).is_err());
    }
}
