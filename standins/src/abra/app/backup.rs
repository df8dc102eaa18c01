//! `abra app backup create|download|remove` and `abra app restore`, by backupbot's labels
//! ([SPEC] https://docs.coopcloud.tech/specs/backup/spec).

use super::*;

// ---------------------------------------------------------------------------------------------
// backups (backupbot labels, [SPEC] https://docs.coopcloud.tech/specs/backup/spec)

/// One tar stream of a snapshot: paths under one mount of one service.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Entry {
    service: String,
    /// The volume mounted there (`<stack>_<name>`).
    volume: String,
    /// The mount point in the container.
    target: String,
    /// Relative to `target`; `.` is the whole mount.
    paths: Vec<String>,
    file: String,
}

/// What backupbot would back up of a service, read from its live labels and mounts.
pub(super) fn backup_entries(app: &App, svc: &docker::Service) -> Vec<Entry> {
    let labels = &svc.spec.labels;
    let short = svc.short(&app.stack).to_owned();
    let mounts = svc.spec.task_template.container_spec["Mounts"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut out = Vec::new();
    for m in mounts {
        if m["Type"] != "volume" {
            continue;
        }
        let source = m["Source"].as_str().unwrap_or_default();
        let target = m["Target"]
            .as_str()
            .unwrap_or_default()
            .trim_end_matches('/');
        let vol = source
            .strip_prefix(&format!("{}_", app.stack))
            .unwrap_or(source);
        let label = |k: &str| labels.get(&format!("backupbot.backup.volumes.{vol}{k}"));
        if label("").is_some_and(|v| v == "false") {
            continue;
        }
        let paths: Vec<String> = if let Some(ps) = label(".path") {
            ps.split(',')
                .map(|p| p.trim().trim_start_matches('/').to_owned())
                .collect()
        } else if let Some(ps) = labels.get("backupbot.backup.path") {
            // The older label names container paths; keep those inside this mount.
            let inside: Vec<String> = ps
                .split(',')
                .filter_map(|p| p.trim().strip_prefix(target))
                .map(|r| match r.trim_start_matches('/') {
                    "" => ".".to_owned(),
                    rel => rel.to_owned(),
                })
                .collect();
            if inside.is_empty() {
                continue;
            }
            inside
        } else {
            vec![".".to_owned()]
        };
        out.push(Entry {
            file: String::new(),
            service: short.clone(),
            volume: source.to_owned(),
            target: target.to_owned(),
            paths,
        });
    }
    out
}

/// Runs a backupbot hook in the service's container, as backupbot does (`sh -c`).
pub(super) fn hook(app: &App, svc: &docker::Service, label: &str) -> Result<()> {
    let Some(cmd) = svc.spec.labels.get(label) else {
        return Ok(());
    };
    let cid = container_of(app, svc.short(&app.stack))?;
    let out = docker::call(&["exec", &cid, "sh", "-c", cmd])?;
    if !out.success() {
        bail!(
            "{label} of {} failed (exit {}): {}",
            svc.spec.name,
            out.code.map_or("signal".into(), |c| c.to_string()),
            out.said()
        );
    }
    Ok(())
}

/// The server's backup repository, as backup-bot-two keeps one restic repository per server
/// for every app on it: snapshots of all apps, of every run, side by side.
pub(super) fn repository(app: &App) -> PathBuf {
    app.env
        .path
        .parent()
        .expect("an app's env file is in its server's directory")
        .join(".backupbot")
}

/// A snapshot's record, `<repository>/<id>/snapshot.json`, beside one tar per entry.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Snapshot {
    app: String,
    entries: Vec<Entry>,
}

pub(super) fn snapshot_of(repo: &Path, id: &str) -> Result<Snapshot> {
    let p = repo.join(id).join("snapshot.json");
    let bytes = fs::read(&p).map_err(|_| anyhow!("no snapshot {id} in the repository"))?;
    serde_json::from_slice(&bytes).with_context(|| format!("reading snapshot {id}"))
}

pub(super) const BACKUP: &str = "abra app backup create";

pub(super) fn app_backup_create(ctx: &Ctx, args: &[String]) -> Result<i32> {
    let Some(p) = parse(BACKUP, args, &[])? else {
        return Ok(0);
    };
    want_args(BACKUP, &p, 1, 1)?;
    let app = find_app(ctx, &p.positional[0])?;
    let services: Vec<docker::Service> = require_deployed(&app)?
        .into_iter()
        .filter(|s| s.spec.labels.get("backupbot.backup").map(String::as_str) == Some("true"))
        .collect();
    if services.is_empty() {
        bail!(
            "no backup configured for {} (no backupbot.backup=true service)",
            app.domain
        );
    }
    if ctx.fault("backup-fails") {
        bail!("backup failed: restic: Fatal: unable to save snapshot: stand-in fault backup-fails");
    }
    // restic's ids are hex; time first, so the newest sorts last.
    let id = format!(
        "{:013x}{}",
        now_ms(),
        random_bytes(2)?
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let repo = repository(&app);
    let tmp = repo.join(format!(".{id}"));
    fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let result = (|| -> Result<Vec<Entry>> {
        let mut all = Vec::new();
        for svc in &services {
            hook(&app, svc, "backupbot.backup.pre-hook")?;
            let cid = container_of(&app, svc.short(&app.stack))?;
            for mut e in backup_entries(&app, svc) {
                e.file = format!("{}-{}.tar", e.service, all.len());
                let file = fs::File::create(tmp.join(&e.file))?;
                let mut args = vec!["exec", cid.as_str(), "tar", "-C", &e.target, "-cf", "-"];
                args.extend(e.paths.iter().map(String::as_str));
                let out = docker::call_with(&args, docker::Input::Nothing, None, Some(file))?;
                if !out.success() {
                    // tar's last line only says that it failed; the ones before say why.
                    let why: Vec<&str> = out
                        .stderr
                        .lines()
                        .filter(|l| !l.trim().is_empty())
                        .collect();
                    bail!(
                        "backing up {} of {}: {}",
                        e.paths
                            .iter()
                            .map(|p| format!("{}/{p}", e.target))
                            .collect::<Vec<_>>()
                            .join(" "),
                        svc.spec.name,
                        why.join("; ")
                    );
                }
                all.push(e);
            }
            hook(&app, svc, "backupbot.backup.post-hook")?;
        }
        Ok(all)
    })();
    let entries = match result {
        Ok(e) => e,
        Err(e) => {
            let _ = fs::remove_dir_all(&tmp);
            // As after `backup remove`: the repository is there while it holds snapshots.
            let _ = fs::remove_dir(&repo);
            return Err(e.context("backup failed"));
        }
    };
    let snap = Snapshot {
        app: app.domain.clone(),
        entries,
    };
    fs::write(tmp.join("snapshot.json"), serde_json::to_vec_pretty(&snap)?)?;
    // Whole or not at all: a snapshot appears under its name only when complete.
    fs::rename(&tmp, repo.join(&id))?;
    // restic's own line, which backupbot passes on.
    println!("snapshot {id} saved");
    println!("backup finished");
    Ok(0)
}

/// `<command> <domain> --snapshot <id>`: the app, its server's repository, and that snapshot,
/// which must be the app's. `None` after `--help`.
pub(super) fn one_snapshot(
    ctx: &Ctx,
    command: &str,
    args: &[String],
) -> Result<Option<(App, PathBuf, String, Snapshot)>> {
    let Some(p) = parse(command, args, &[opt("snapshot", Some('s'))])? else {
        return Ok(None);
    };
    want_args(command, &p, 1, 1)?;
    let app = find_app(ctx, &p.positional[0])?;
    let id = p
        .value("snapshot")
        .ok_or_else(|| usage(command, "--snapshot is required"))?
        .to_owned();
    let repo = repository(&app);
    let snap = snapshot_of(&repo, &id)?;
    if snap.app != app.domain {
        bail!("snapshot {id} is not one of {}", app.domain);
    }
    Ok(Some((app, repo, id, snap)))
}

pub(super) const DOWNLOAD: &str = "abra app backup download";

/// Writes one snapshot of the app to `<app>_<id>.tar` in the working directory: every backed-up
/// file under the host path of its volume, as restic stores backupbot's paths
/// (`var/lib/docker/volumes/<volume>/_data/…`).
pub(super) fn app_backup_download(ctx: &Ctx, args: &[String]) -> Result<i32> {
    let Some((app, repo, id, snap)) = one_snapshot(ctx, DOWNLOAD, args)? else {
        return Ok(0);
    };
    let id = id.as_str();
    let out_path = std::env::current_dir()?.join(format!("{}_{id}.tar", app.stack));
    let mut out = tar::Builder::new(fs::File::create(&out_path)?);
    for e in &snap.entries {
        let mut from = tar::Archive::new(fs::File::open(repo.join(id).join(&e.file))?);
        for item in from.entries()? {
            let mut item = item?;
            let rel = item.path()?.into_owned();
            let path = Path::new("var/lib/docker/volumes")
                .join(&e.volume)
                .join("_data")
                .join(rel.strip_prefix(".").unwrap_or(&rel));
            let mut header = item.header().clone();
            out.append_data(&mut header, &path, &mut item)?;
        }
    }
    out.finish()?;
    println!("downloaded {}", out_path.display());
    Ok(0)
}

pub(super) const REMOVE: &str = "abra app backup remove";

pub(super) fn app_backup_remove(ctx: &Ctx, args: &[String]) -> Result<i32> {
    let Some((_, repo, id, _)) = one_snapshot(ctx, REMOVE, args)? else {
        return Ok(0);
    };
    fs::remove_dir_all(repo.join(&id))?;
    // An empty repository is no repository: the server is as it was before any backup.
    let _ = fs::remove_dir(&repo);
    println!("snapshot {id} removed");
    Ok(0)
}

pub(super) const RESTORE: &str = "abra app restore";

pub(super) fn app_restore(ctx: &Ctx, args: &[String]) -> Result<i32> {
    let Some(p) = parse(RESTORE, args, &[opt("snapshot", Some('s'))])? else {
        return Ok(0);
    };
    want_args(RESTORE, &p, 1, 1)?;
    let app = find_app(ctx, &p.positional[0])?;
    let services = require_deployed(&app)?;
    if ctx.fault("restore-fails") {
        bail!("restore failed: restic: Fatal: unable to restore snapshot: stand-in fault restore-fails");
    }
    let repo = repository(&app);
    // Without --snapshot, the repository's latest wins, whichever app made it ([CCCI] commit
    // 16c9241: restore "picks the global LATEST, which can be a prior run's").
    let id = match p.value("snapshot") {
        Some(id) => id.to_owned(),
        None => fs::read_dir(&repo)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| !n.starts_with('.'))
                    .max()
            })
            .ok()
            .flatten()
            .ok_or_else(|| anyhow!("no snapshots found for {}", app.domain))?,
    };
    let snap = snapshot_of(&repo, &id)?;
    for svc in &services {
        let short = svc.short(&app.stack);
        let mine: Vec<&Entry> = snap.entries.iter().filter(|e| e.service == short).collect();
        if mine.is_empty() {
            continue;
        }
        hook(&app, svc, "backupbot.restore.pre-hook")?;
        let cid = container_of(&app, short)?;
        // restic restore writes the snapshot's files back; files created since stay.
        for e in mine {
            let file = fs::File::open(repo.join(&id).join(&e.file))?;
            let out = docker::call_with(
                &["exec", "-i", &cid, "tar", "-C", &e.target, "-xf", "-"],
                docker::Input::File(file),
                None,
                None,
            )?;
            if !out.success() {
                bail!(
                    "restore failed: {} of {}: {}",
                    e.target,
                    svc.spec.name,
                    out.said()
                );
            }
        }
        hook(&app, svc, "backupbot.restore.post-hook")?;
    }
    eprintln!("INFO restored snapshot {id} for {}", app.domain);
    println!("restore finished");
    Ok(0)
}
