//! `abra app undeploy` and `abra app volume remove`.

use super::*;

// ---------------------------------------------------------------------------------------------
// undeploy, volumes

pub(super) const UNDEPLOY: &str = "abra app undeploy";

/// How long an undeploy waits for the stack's containers to go (they hold its volumes).
pub(super) const UNDEPLOY_WAIT: Duration = Duration::from_secs(120);

pub(super) fn app_undeploy(ctx: &Ctx, args: &[String]) -> Result<i32> {
    let spec = [flag("prune", Some('p'))];
    let Some(p) = parse(UNDEPLOY, args, &spec)? else {
        return Ok(0);
    };
    want_args(UNDEPLOY, &p, 1, 1)?;
    let app = find_app(ctx, &p.positional[0])?;
    require_deployed(&app)?;
    docker::ok(&["stack", "rm", &app.stack])?;
    containers_gone(&app.stack).with_context(|| format!("undeploying {}", app.domain))?;
    // What `stack rm` could not remove while the containers were attached.
    for kind in ["network", "config"] {
        for id in docker::stack_objects(kind, &app.stack)? {
            docker::ok(&[kind, "rm", &id])?;
        }
    }
    // Volumes stay ([LLAMENOS]: "Stop and remove the app (data preserved)").
    println!("{} undeployed", app.domain);
    Ok(0)
}

/// `docker stack rm` returns at once; the containers take seconds to stop, and keep the
/// volumes in use until they are gone. Waits for that, bounded. "Gone" must hold twice, a
/// settle apart: a task the node was already creating when its service went (a deploy cut
/// short) gets its container — and its named volumes — a moment after the removal, and a
/// single look can fall in between, leaving a volume no one removes.
pub(super) fn containers_gone(stack: &str) -> Result<()> {
    const SETTLE: Duration = Duration::from_millis(500);
    let deadline = Instant::now() + UNDEPLOY_WAIT;
    let mut empty_since: Option<Instant> = None;
    loop {
        let left = docker::stack_objects("container", stack)?;
        if left.is_empty() {
            match empty_since {
                Some(t) if t.elapsed() >= SETTLE => return Ok(()),
                Some(_) => {}
                None => empty_since = Some(Instant::now()),
            }
        } else {
            empty_since = None;
        }
        if left.is_empty() && Instant::now() >= deadline {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "{} container(s) of {stack} still there {} s after the undeploy",
                left.len(),
                UNDEPLOY_WAIT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

pub(super) const VOLUME_REMOVE: &str = "abra app volume remove";

pub(super) fn app_volume_remove(ctx: &Ctx, args: &[String]) -> Result<i32> {
    let spec = [flag("force", Some('f'))];
    let Some(p) = parse(VOLUME_REMOVE, args, &spec)? else {
        return Ok(0);
    };
    want_args(VOLUME_REMOVE, &p, 1, 1)?;
    let app = find_app(ctx, &p.positional[0])?;
    let volumes = docker::stack_objects("volume", &app.stack)?;
    if volumes.is_empty() {
        eprintln!("WARN no volumes created for {}", app.domain);
        return Ok(0);
    }
    if !p.on("force") {
        bail!("unable to prompt for the volumes to remove: no TTY (pass --force to remove all)");
    }
    for v in &volumes {
        docker::ok(&["volume", "rm", v]).with_context(|| format!("removing volume {v} failed"))?;
        eprintln!("INFO volume {v} removed");
    }
    Ok(0)
}
