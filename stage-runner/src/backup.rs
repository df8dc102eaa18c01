//! Backups that are verified: what the recipe marks for backup, read from backupbot's labels
//! on the live services ([SPEC] https://docs.coopcloud.tech/specs/backup/spec); the snapshot
//! this run made, read back: each backed-up directory holding the run's probe, each backed-up
//! file there and not empty, each database dump whole.

use std::collections::BTreeMap;
use std::io::Read;

use anyhow::{Context, Result};
use serde_json::Value;

/// The probe's file in each backed-up directory. The same name in every run, so that a
/// restore of another run's snapshot shows: the probe then holds that run's token.
pub const PROBE: &str = ".ccci-backup-probe";

/// One path backupbot backs up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marked {
    /// The swarm service, `<stack>_<name>`.
    pub service: String,
    /// The volume mounted there, `<stack>_<volume>`.
    pub volume: String,
    /// The mount point in the container.
    pub target: String,
    /// Relative to `target`; `.` is the whole volume.
    pub rel: String,
}

impl Marked {
    pub fn in_container(&self) -> String {
        match self.rel.as_str() {
            "." => self.target.clone(),
            rel => format!("{}/{rel}", self.target),
        }
    }

    /// Where restic keeps it: under the volume's path on the host, as backupbot reads volumes.
    pub fn in_snapshot(&self) -> String {
        let root = format!("var/lib/docker/volumes/{}/_data", self.volume);
        match self.rel.as_str() {
            "." => root,
            rel => format!("{root}/{rel}"),
        }
    }
}

/// What backupbot backs up of one service, from its `docker service inspect` object: nothing
/// unless `backupbot.backup=true`; each mounted volume, but `backupbot.backup.volumes.<v>=false`;
/// only `backupbot.backup.volumes.<v>.path=a,b` within it where set (or the older
/// `backupbot.backup.path`, container paths, where those fall inside the mount).
pub fn marked(service: &Value) -> Vec<Marked> {
    let spec = &service["Spec"];
    let label = |k: &str| spec["Labels"][k].as_str().map(str::to_owned);
    if label("backupbot.backup").as_deref() != Some("true") {
        return Vec::new();
    }
    let name = spec["Name"].as_str().unwrap_or_default().to_owned();
    let stack = label("com.docker.stack.namespace").unwrap_or_default();
    let mounts = spec["TaskTemplate"]["ContainerSpec"]["Mounts"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut out = Vec::new();
    for m in mounts.iter().filter(|m| m["Type"] == "volume") {
        let source = m["Source"].as_str().unwrap_or_default();
        let target = m["Target"]
            .as_str()
            .unwrap_or_default()
            .trim_end_matches('/');
        let short = source.strip_prefix(&format!("{stack}_")).unwrap_or(source);
        let vol = |k: &str| label(&format!("backupbot.backup.volumes.{short}{k}"));
        if vol("").as_deref() == Some("false") {
            continue;
        }
        let rels: Vec<String> = if let Some(ps) = vol(".path") {
            ps.split(',')
                .map(|p| p.trim().trim_start_matches('/').to_owned())
                .filter(|p| !p.is_empty())
                .collect()
        } else if let Some(ps) = label("backupbot.backup.path") {
            ps.split(',')
                .filter_map(|p| p.trim().strip_prefix(target))
                .filter(|r| r.is_empty() || r.starts_with('/'))
                .map(|r| match r.trim_start_matches('/') {
                    "" => ".".to_owned(),
                    rel => rel.to_owned(),
                })
                .collect()
        } else {
            vec![".".to_owned()]
        };
        out.extend(rels.into_iter().map(|rel| Marked {
            service: name.clone(),
            volume: source.to_owned(),
            target: target.to_owned(),
            rel,
        }));
    }
    out
}

/// A file of the snapshot, as much of it as the checks need.
#[derive(Debug, Default)]
pub struct Seen {
    pub size: u64,
    /// The probe's token, for probe files.
    pub text: String,
    /// Why a database dump is not whole; `None` for a good dump or no dump.
    pub bad_dump: Option<String>,
}

/// Tail kept of a dump: where its completion line is.
const TAIL: usize = 4096;

/// Reads a snapshot (a tar, gzipped or not), keeping the files under the marked paths.
pub fn read_snapshot(archive: impl Read, marked: &[Marked]) -> Result<BTreeMap<String, Seen>> {
    let mut buf = std::io::BufReader::new(archive);
    let gz = {
        use std::io::BufRead;
        buf.fill_buf()?.starts_with(&[0x1f, 0x8b])
    };
    let reader: Box<dyn Read> = if gz {
        Box::new(flate2::read::GzDecoder::new(buf))
    } else {
        Box::new(buf)
    };
    let mut tar = tar::Archive::new(reader);
    let mut out = BTreeMap::new();
    for entry in tar.entries().context("reading the snapshot")? {
        let mut entry = entry.context("reading the snapshot")?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry
            .path()?
            .to_string_lossy()
            .trim_start_matches("./")
            .trim_start_matches('/')
            .to_owned();
        if !marked.iter().any(|m| within(&path, &m.in_snapshot())) {
            continue;
        }
        let size = entry.size();
        let seen = if path.ends_with(&format!("/{PROBE}")) {
            let mut text = String::new();
            entry.by_ref().take(256).read_to_string(&mut text)?;
            Seen {
                size,
                text: text.trim().to_owned(),
                bad_dump: None,
            }
        } else if is_dump(&path) {
            Seen {
                size,
                text: String::new(),
                bad_dump: dump_problem(&path, &mut entry),
            }
        } else {
            Seen {
                size,
                ..Seen::default()
            }
        };
        out.insert(path, seen);
    }
    Ok(out)
}

fn within(path: &str, root: &str) -> bool {
    path == root || path.strip_prefix(root).is_some_and(|r| r.starts_with('/'))
}

pub fn is_dump(path: &str) -> bool {
    [".sql", ".sql.gz", ".dump"]
        .iter()
        .any(|e| path.ends_with(e))
}

/// Why a database dump is not whole: empty, a broken gzip, or a pg_dump / mysqldump whose
/// completion line is missing (a dump cut short, e.g. while the database restarted).
pub fn dump_problem(path: &str, data: &mut impl Read) -> Option<String> {
    let mut body: Box<dyn Read + '_> = if path.ends_with(".gz") {
        Box::new(flate2::read::GzDecoder::new(data))
    } else {
        Box::new(data)
    };
    let (mut head, mut tail, mut total) = (Vec::new(), Vec::new(), 0u64);
    let mut chunk = [0u8; 64 * 1024];
    loop {
        match body.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                total += n as u64;
                if head.len() < 256 {
                    head.extend_from_slice(&chunk[..n.min(256 - head.len())]);
                }
                tail.extend_from_slice(&chunk[..n]);
                if tail.len() > 2 * TAIL {
                    tail.drain(..tail.len() - TAIL);
                }
            }
            Err(e) => return Some(format!("it is not a whole gzip file ({e})")),
        }
    }
    if total == 0 {
        return Some("it is empty".into());
    }
    let head = String::from_utf8_lossy(&head);
    let tail = String::from_utf8_lossy(&tail);
    if head.contains("-- PostgreSQL database dump")
        && !tail.contains("-- PostgreSQL database dump complete")
    {
        return Some(
            "the pg_dump has no \"-- PostgreSQL database dump complete\" line: it was cut short"
                .into(),
        );
    }
    if (head.contains("-- MySQL dump") || head.contains("-- MariaDB dump"))
        && !tail.contains("-- Dump completed")
    {
        return Some("the dump has no \"-- Dump completed\" line: it was cut short".into());
    }
    None
}

/// What is wrong with the snapshot: each marked directory must hold the run's probe (when
/// probes were placed), each marked file must be there and not empty, each dump whole.
/// Dump problems come apart, as a retry can cure them.
pub fn problems(
    marked: &[Marked],
    seen: &BTreeMap<String, Seen>,
    probe: Option<&str>,
) -> (Vec<String>, Vec<String>) {
    let mut data = Vec::new();
    let mut dumps = Vec::new();
    for m in marked {
        let at = m.in_snapshot();
        let what = format!("{} of {}", m.in_container(), m.service);
        let under: Vec<(&String, &Seen)> = seen.iter().filter(|(p, _)| within(p, &at)).collect();
        if under.is_empty() {
            data.push(format!("{what} is not in the snapshot"));
            continue;
        }
        if let Some(file) = seen.get(&at) {
            if file.size == 0 && file.bad_dump.is_none() {
                data.push(format!("{what} is empty in the snapshot"));
            }
        } else if let Some(token) = probe {
            match seen.get(&format!("{at}/{PROBE}")) {
                Some(p) if p.text == token => {}
                Some(_) => data.push(format!("{what}: the snapshot holds another run's probe")),
                None => data.push(format!(
                    "{what}: the snapshot lacks the probe written before the backup"
                )),
            }
        }
        for (p, s) in under {
            if let Some(why) = &s.bad_dump {
                let rel = p.strip_prefix(&at).unwrap_or("").trim_start_matches('/');
                let file = if rel.is_empty() {
                    m.in_container()
                } else {
                    format!("{}/{rel}", m.in_container())
                };
                dumps.push(format!("the database dump {file} of {}: {why}", m.service));
            }
        }
    }
    (data, dumps)
}

/// The snapshot id in `abra app backup create`'s output: restic's `snapshot <id> saved`.
pub fn snapshot_id(output: &str) -> Option<String> {
    output.lines().rev().find_map(|l| {
        let rest = l.trim().strip_prefix("snapshot ")?;
        let id = rest.strip_suffix(" saved")?;
        (!id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(labels: Value, mounts: Value) -> Value {
        let mut l = labels;
        l["com.docker.stack.namespace"] = "s_ci".into();
        serde_json::json!({"Spec": {"Name": "s_ci_app", "Labels": l,
            "TaskTemplate": {"ContainerSpec": {"Mounts": mounts}}}})
    }

    #[test]
    fn the_labels_say_what_is_backed_up() {
        let mounts = serde_json::json!([
            {"Type": "volume", "Source": "s_ci_data", "Target": "/data/"},
            {"Type": "volume", "Source": "s_ci_cache", "Target": "/cache"},
            {"Type": "bind", "Source": "/etc", "Target": "/host-etc"}
        ]);
        assert!(marked(&service(serde_json::json!({}), mounts.clone())).is_empty());
        let all = marked(&service(
            serde_json::json!({"backupbot.backup": "true",
            "backupbot.backup.volumes.cache": "false"}),
            mounts.clone(),
        ));
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].in_container(), "/data");
        assert_eq!(
            all[0].in_snapshot(),
            "var/lib/docker/volumes/s_ci_data/_data"
        );
        let paths = marked(&service(
            serde_json::json!({"backupbot.backup": "true",
            "backupbot.backup.volumes.data.path": "backup.sql, /media",
            "backupbot.backup.volumes.cache": "false"}),
            mounts.clone(),
        ));
        let rels: Vec<_> = paths.iter().map(|m| m.in_container()).collect();
        assert_eq!(rels, ["/data/backup.sql", "/data/media"]);
        let old = marked(&service(
            serde_json::json!({"backupbot.backup": "true",
            "backupbot.backup.path": "/data,/cache/x,/elsewhere"}),
            mounts,
        ));
        let rels: Vec<_> = old.iter().map(|m| m.in_container()).collect();
        assert_eq!(rels, ["/data", "/cache/x"]);
    }

    fn check(name: &str, body: &[u8]) -> Option<String> {
        dump_problem(name, &mut &body[..])
    }

    fn gz(body: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(body).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn a_dump_is_whole_or_says_why_not() {
        let pg = b"--\n-- PostgreSQL database dump\n--\nCREATE TABLE t ();\n--\n-- PostgreSQL database dump complete\n--\n";
        assert_eq!(check("backup.sql", pg), None);
        assert_eq!(check("backup.sql", b""), Some("it is empty".into()));
        let cut = &pg[..40];
        assert!(check("backup.sql", cut).unwrap().contains("cut short"));
        assert_eq!(check("backup.sql.gz", &gz(pg)), None);
        let broken = gz(pg);
        assert!(check("backup.sql.gz", &broken[..broken.len() / 2])
            .unwrap()
            .contains("gzip"));
        assert_eq!(check("backup.sql.gz", &gz(b"")), Some("it is empty".into()));
        let my = b"-- MariaDB dump 10.19\nINSERT 1;\n";
        assert!(check("db.sql", my).unwrap().contains("Dump completed"));
        assert_eq!(
            check(
                "db.sql",
                b"-- MariaDB dump 10.19\n-- Dump completed on 2026\n"
            ),
            None
        );
        assert_eq!(
            check("app.dump", b"PGDMP\x01"),
            None,
            "custom format: not empty is all we can tell"
        );
    }

    #[test]
    fn restic_s_line_names_the_snapshot() {
        assert_eq!(
            snapshot_id("x\nsnapshot 1a2b3c saved\nbackup finished\n").as_deref(),
            Some("1a2b3c")
        );
        assert_eq!(snapshot_id("backup finished\n"), None);
        assert_eq!(snapshot_id("snapshot ../x saved\n"), None);
    }
}
