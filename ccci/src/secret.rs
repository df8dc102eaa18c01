//! Secrets (API tokens, webhook keys) read from files, never from argv or the environment.

use std::fmt;
use std::path::Path;

use anyhow::{bail, Context, Result};

/// A secret value. `Debug` and `Display` print `***`; only [`Secret::expose`] reveals it, so
/// a secret that ends up in a log line, an error or a panic message shows as `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// Reads a secret from a file, trimming the trailing newline editors and `echo` add.
    /// The error names the file, never the content.
    pub fn from_file(path: &Path) -> Result<Secret> {
        let raw = std::fs::read_to_string(path)
            .with_context(|| format!("reading secret file {}", path.display()))?;
        let value = raw.trim_end_matches(['\n', '\r']);
        if value.is_empty() {
            bail!("secret file {} is empty", path.display());
        }
        Ok(Secret(value.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_hide_the_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "*** ***");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn from_file_trims_newline_and_refuses_empty() {
        let dir = std::env::temp_dir().join(format!("ccci-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("token");
        std::fs::write(&f, "abc123\n").unwrap();
        assert_eq!(Secret::from_file(&f).unwrap().expose(), "abc123");
        std::fs::write(&f, "\n").unwrap();
        let err = format!("{:#}", Secret::from_file(&f).unwrap_err());
        assert!(err.contains("is empty"), "{err}");
        let err = format!("{:#}", Secret::from_file(&dir.join("missing")).unwrap_err());
        assert!(err.contains("missing"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
