//! `abra app ls|ps|logs|run|cmd`.

use super::*;

// ---------------------------------------------------------------------------------------------
// ls, ps, logs, run, cmd

pub(super) const LS: &str = "abra app ls";

pub(super) fn app_ls(ctx: &Ctx, args: &[String]) -> Result<i32> {
    let spec = [
        flag("machine", Some('m')),
        opt("server", Some('s')),
        flag("status", Some('S')),
        opt("recipe", Some('r')),
    ];
    let Some(p) = parse(LS, args, &spec)? else {
        return Ok(0);
    };
    want_args(LS, &p, 0, 0)?;
    // server → rows of (recipe, domain, version, status, chaos, chaos version)
    let mut by_server: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
    let mut rows = Vec::new();
    if let Ok(rd) = fs::read_dir(ctx.abra_dir.join("servers")) {
        let mut servers: Vec<_> = rd.flatten().collect();
        servers.sort_by_key(|e| e.file_name());
        for s in servers {
            let server = s.file_name().to_string_lossy().into_owned();
            if p.value("server").is_some_and(|w| w != server) {
                continue;
            }
            let mut files: Vec<_> = fs::read_dir(s.path())?.flatten().collect();
            files.sort_by_key(|e| e.file_name());
            let apps = by_server.entry(server.clone()).or_default();
            for f in files {
                let fname = f.file_name().to_string_lossy().into_owned();
                let Some(domain) = fname.strip_suffix(".env") else {
                    continue;
                };
                let Ok(app) = find_app(ctx, domain) else {
                    continue;
                };
                if p.value("recipe").is_some_and(|r| r != app.recipe) {
                    continue;
                }
                let services = docker::services(&app.stack)?;
                let main = services
                    .iter()
                    .find(|s| s.short(&app.stack) == "app")
                    .or(services.first());
                let label = |k: &str| main.and_then(|s| s.abra_label(&app.stack, k));
                let status = if services.is_empty() {
                    "unknown"
                } else {
                    "deployed"
                };
                let version = label("version").unwrap_or_else(|| "unknown".into());
                let chaos = label("chaos").unwrap_or_else(|| "false".into());
                let chaos_version = label("chaos-version").unwrap_or_else(|| "unknown".into());
                // Field names of abra's `app ls -m` (appStatus / serverStatus structs).
                apps.push(json!({
                    "server": server, "recipe": app.recipe, "appName": app.stack,
                    "domain": app.domain, "status": status, "chaos": chaos,
                    "chaosVersion": chaos_version, "autoUpdate": "false",
                    "version": version, "upgrade": "unknown",
                }));
                rows.push(vec![
                    server.clone(),
                    app.recipe.clone(),
                    app.domain.clone(),
                    status.to_owned(),
                    version,
                    chaos_version,
                ]);
            }
        }
    }
    if p.on("machine") {
        let mut out = serde_json::Map::new();
        for (server, apps) in by_server {
            let n = apps.len();
            out.insert(
                server,
                json!({"apps": apps, "appCount": n, "versionCount": 0, "unversionedCount": 0,
                       "latestCount": 0, "upgradeCount": 0}),
            );
        }
        println!("{}", serde_json::Value::Object(out));
    } else {
        print!(
            "{}",
            table(
                &["SERVER", "RECIPE", "DOMAIN", "STATUS", "VERSION", "CHAOS"],
                &rows
            )
        );
    }
    Ok(0)
}

pub(super) const PS: &str = "abra app ps";

pub(super) fn app_ps(ctx: &Ctx, args: &[String]) -> Result<i32> {
    let spec = [flag("machine", Some('m'))];
    let Some(p) = parse(PS, args, &spec)? else {
        return Ok(0);
    };
    want_args(PS, &p, 1, 1)?;
    let app = find_app(ctx, &p.positional[0])?;
    let services = require_deployed(&app)?;
    let mut rows = Vec::new();
    let mut items = Vec::new();
    for s in &services {
        let label = |k: &str| s.abra_label(&app.stack, k);
        let version = label("version").unwrap_or_default();
        // The state of the newest task meant to run (else the newest): running, starting
        // (healthcheck not yet passed), rejected, failed …
        let tasks = docker::tasks(&s.spec.name)?;
        let state = tasks
            .iter()
            .find(|t| t.desired_state == "running")
            .or(tasks.first())
            .map_or_else(|| "no task".to_owned(), |t| t.status.state.clone());
        let image = s.spec.task_template.container_spec["Image"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        rows.push(vec![
            s.spec.name.clone(),
            image.clone(),
            state.clone(),
            version.clone(),
        ]);
        items.push(json!({
            "service": s.short(&app.stack), "name": s.spec.name, "image": image,
            "state": state, "version": version, "chaosVersion": label("chaos-version"),
        }));
    }
    if p.on("machine") {
        println!("{}", serde_json::Value::Array(items));
    } else {
        print!(
            "{}",
            table(&["SERVICE", "IMAGE", "STATE", "VERSION"], &rows)
        );
    }
    Ok(0)
}

pub(super) const LOGS: &str = "abra app logs";

pub(super) fn app_logs(ctx: &Ctx, args: &[String]) -> Result<i32> {
    let Some(p) = parse(LOGS, args, &[])? else {
        return Ok(0);
    };
    want_args(LOGS, &p, 1, 2)?;
    let app = find_app(ctx, &p.positional[0])?;
    let services = require_deployed(&app)?;
    let wanted = p.positional.get(1);
    let mut shown = 0;
    for s in &services {
        if wanted.is_some_and(|w| w != s.short(&app.stack)) {
            continue;
        }
        shown += 1;
        // Ends at the end of what was logged (no --follow).
        let status = Command::new("docker")
            .args(["service", "logs", "--no-trunc", &s.spec.name])
            .status()
            .context("running docker service logs")?;
        if !status.success() {
            return Ok(status.code().unwrap_or(1));
        }
    }
    if shown == 0 {
        bail!(
            "no service {} in {}",
            wanted.map(String::as_str).unwrap_or(""),
            app.domain
        );
    }
    Ok(0)
}

pub(super) const RUN: &str = "abra app run";

/// `docker exec` of `cmd` in the service's newest running container; its exit code is the
/// command's. Stdin is passed on (`-i`); there is never a TTY here.
pub(super) fn exec(app: &App, service: &str, user: Option<&str>, cmd: &[String]) -> Result<i32> {
    let cid = container_of(app, service)?;
    let mut c = Command::new("docker");
    c.args(["exec", "-i"]);
    if let Some(u) = user {
        c.args(["-u", u]);
    }
    let status = c
        .arg(&cid)
        .args(cmd)
        .status()
        .with_context(|| format!("running docker exec in {}_{service}", app.stack))?;
    Ok(status.code().unwrap_or(1))
}

pub(super) fn app_run(ctx: &Ctx, args: &[String]) -> Result<i32> {
    let spec = [flag("no-tty", Some('t')), opt("user", Some('u'))];
    let Some(p) = parse(RUN, args, &spec)? else {
        return Ok(0);
    };
    if p.positional.len() < 2 {
        return Err(usage(
            RUN,
            format!(
                "requires at least 2 arg(s), only received {}",
                p.positional.len()
            ),
        ));
    }
    let app = find_app(ctx, &p.positional[0])?;
    let mut cmd_args: Vec<String> = p.positional[2..].to_vec();
    cmd_args.extend(p.after_dashes.iter().cloned());
    if cmd_args.is_empty() {
        return Err(usage(RUN, "no command to run"));
    }
    exec(&app, &p.positional[1], p.value("user"), &cmd_args)
}

pub(super) const CMD: &str = "abra app cmd";

/// Runs a function of the recipe's `abra.sh` inside the service's container, with the
/// script's definitions loaded first ([MH]: recipe commands live in `abra.sh`).
pub(super) fn app_cmd(ctx: &Ctx, args: &[String]) -> Result<i32> {
    let Some(p) = parse(CMD, args, &[])? else {
        return Ok(0);
    };
    if p.positional.len() < 3 {
        return Err(usage(
            CMD,
            format!(
                "requires at least 3 arg(s), only received {}",
                p.positional.len()
            ),
        ));
    }
    let app = find_app(ctx, &p.positional[0])?;
    let (service, function) = (&p.positional[1], &p.positional[2]);
    let dir = ensure_recipe(ctx, &app.recipe)?;
    let script = fs::read_to_string(dir.join("abra.sh"))
        .with_context(|| format!("{} has no abra.sh", app.recipe))?;
    let defined = script.lines().any(|l| {
        let l = l.trim_start();
        let l = l.strip_prefix("function ").unwrap_or(l);
        l.strip_prefix(function.as_str())
            .is_some_and(|r| r.trim_start().starts_with("()") || r.starts_with(' '))
    });
    if !defined {
        bail!("{function} doesn't exist in {}'s abra.sh", app.recipe);
    }
    let mut cmd = vec![
        "sh".to_owned(),
        "-c".to_owned(),
        format!("{script}\n{function} \"$@\""),
        "sh".to_owned(),
    ];
    cmd.extend(p.positional[3..].iter().cloned());
    cmd.extend(p.after_dashes.iter().cloned());
    exec(&app, service, None, &cmd)
}
