//! A run's results on the wire: how a runner host that does not share the server's disk ships
//! them (stage-runner's `ship`) and the server takes them in (the bridge's `PUT /results/…`).
//! docs/architecture.md says why it is this and not Drone's logs.
//!
//! One `PUT /results/<build>/<file>` per file, `<file>` being `summary.json` or an artifact
//! path ([`crate::summary::artifact_path_ok`]), authorised by the runner's own token
//! (`Authorization: Bearer …`), the body's SHA-256 in [`SHA256_HEADER`]. The summary goes
//! last: the server refuses one that lists an artifact it does not hold, so a summary it
//! shows always has its files.

use sha2::{Digest, Sha256};

/// The lowercase hex SHA-256 of the body.
pub const SHA256_HEADER: &str = "X-Content-SHA256";
/// One file's cap. Screenshots and cards are a few hundred KB.
pub const MAX_FILE: u64 = 16 * 1024 * 1024;
/// What the server keeps of one build at most, files of any runner together.
pub const MAX_BUILD: u64 = 64 * 1024 * 1024;
pub const SUMMARY: &str = "summary.json";

/// `/results/<build>/<file>`.
pub fn upload_path(build: i64, file: &str) -> String {
    format!("/results/{build}/{file}")
}

/// The build and file of an upload path; `None` for anything else (a number that is not a
/// Drone build's, a file that is not the summary or a plain artifact path).
pub fn parse_upload_path(path: &str) -> Option<(i64, &str)> {
    let rest = path.strip_prefix("/results/")?;
    let (n, file) = rest.split_once('/')?;
    if n.is_empty() || n.len() > 18 || !n.bytes().all(|b| b.is_ascii_digit()) || n.starts_with('0')
    {
        return None;
    }
    let build: i64 = n.parse().ok()?;
    (file == SUMMARY || crate::summary::artifact_path_ok(file)).then_some((build, file))
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_paths() {
        assert_eq!(
            parse_upload_path(&upload_path(12, "artifacts/install/a.png")),
            Some((12, "artifacts/install/a.png"))
        );
        assert_eq!(
            parse_upload_path("/results/7/summary.json"),
            Some((7, SUMMARY))
        );
        for bad in [
            "/results/0/summary.json",
            "/results/012/summary.json",
            "/results/-1/summary.json",
            "/results/7/other.json",
            "/results/7/artifacts/../x",
            "/results/7/",
            "/results/99999999999999999999/summary.json",
            "/result/7/summary.json",
        ] {
            assert_eq!(parse_upload_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn sha256_of_nothing() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
