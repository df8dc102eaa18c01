//! `abra app ps|run`.

use super::*;

// ---------------------------------------------------------------------------------------------
// ps, run

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
