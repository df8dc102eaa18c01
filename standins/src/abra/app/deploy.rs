//! `abra app deploy`: the plan (release, chaos), the compose overlay, and the convergence wait.

use super::*;

// ---------------------------------------------------------------------------------------------
// deploy

pub(super) const DEPLOY: &str = "abra app deploy";

/// What was decided to deploy.
pub(super) struct Plan {
    version_label: String,
    chaos: bool,
    chaos_version: Option<String>,
}

pub(super) fn app_deploy(ctx: &Ctx, args: &[String]) -> Result<i32> {
    let spec = [
        flag("chaos", Some('C')),
        flag("force", Some('f')),
        flag("no-converge-checks", Some('c')),
        flag("no-domain-checks", Some('D')),
        flag("ignore-env-version", Some('i')),
    ];
    let Some(p) = parse(DEPLOY, args, &spec)? else {
        return Ok(0);
    };
    want_args(DEPLOY, &p, 1, 2)?;
    let mut app = find_app(ctx, &p.positional[0])?;
    let dir = ensure_recipe(ctx, &app.recipe)?;
    let before = docker::services(&app.stack)?;
    if !before.is_empty() && !p.on("force") {
        bail!("{} is already deployed", app.domain);
    }

    // Version kinds ([HB-ver]).
    let plan = if p.on("chaos") {
        // A chaos deploy deploys whatever HEAD/worktree is checked out, no re-checkout
        // ([CCCI] JOURNAL-dstamp.md, quoting abra 0.13.0-beta `getDeployVersion`): label `<SmallSHA(HEAD)>` + `+U` when dirty.
        chaos_plan(ctx, &app, &dir)?
    } else {
        refuse_dirty(&dir, &app.recipe)?;
        let tags = recipe::release_tags(&dir)?;
        let wanted = p
            .positional
            .get(1)
            .cloned()
            .or_else(|| {
                (!p.on("ignore-env-version"))
                    .then(|| app.pin.clone())
                    .flatten()
            })
            .or_else(|| tags.last().cloned());
        match wanted {
            // No releases at all: the latest commit is deployed, as chaos.
            None => chaos_plan(ctx, &app, &dir)?,
            Some(v) if tags.contains(&v) => {
                checkout(&dir, &v)?;
                app.env.set("TYPE", &format!("{}:{v}", app.recipe));
                app.env.write()?;
                Plan {
                    version_label: v,
                    chaos: false,
                    chaos_version: None,
                }
            }
            Some(v) => {
                // An explicit git hash is a version too ([HB-ver] kind 5).
                let is_commit = recipe::git(
                    &dir,
                    &["rev-parse", "--verify", "-q", &format!("{v}^{{commit}}")],
                )
                .is_ok();
                if !is_commit {
                    bail!(
                        "{v} is not a published version of {} (known: {})",
                        app.recipe,
                        tags.join(", ")
                    );
                }
                checkout(&dir, &v)?;
                let sha = recipe::head_sha(&dir)?;
                Plan {
                    version_label: sha[..8.min(sha.len())].to_owned(),
                    chaos: false,
                    chaos_version: None,
                }
            }
        }
    };

    let mut env = app.env.vars();
    env.extend(recipe::abra_sh_exports(&dir));
    env.insert("STACK_NAME".into(), app.stack.clone());
    env.entry("DOMAIN".into())
        .or_insert_with(|| app.domain.clone());
    let compose = recipe::load_compose(&dir, &env)
        .with_context(|| format!("loading {}'s compose files", app.recipe))?;
    // abra's convergence wait is bounded by the stack's timeout label ([CCCI]
    // tests/matrix-synapse/PARITY.md: `TIMEOUT`, `GetTimeoutFromLabel`).
    let timeout = compose
        .services
        .values()
        .find_map(|s| s.labels.get(&format!("coop-cloud.{}.timeout", app.stack)))
        .and_then(|t| t.trim().parse::<u64>().ok())
        .unwrap_or(DEFAULT_TIMEOUT_S);

    let overlay = ctx
        .abra_dir
        .join(format!(".standin-deploy-{}.yml", std::process::id()));
    fs::write(&overlay, overlay_compose(&app.stack, &compose, &plan))
        .with_context(|| format!("writing {}", overlay.display()))?;
    let mut args = vec!["stack", "deploy", "--resolve-image", "never"];
    let files: Vec<String> = compose
        .files
        .iter()
        .map(|f| f.display().to_string())
        .chain([overlay.display().to_string()])
        .collect();
    for f in &files {
        args.extend(["-c", f.as_str()]);
    }
    args.push(&app.stack);
    eprintln!(
        "INFO deploying {} version {}{}",
        app.domain,
        plan.version_label,
        plan.chaos_version
            .as_ref()
            .map(|c| format!(" (chaos {c})"))
            .unwrap_or_default()
    );
    let out = docker::call_with(&args, docker::Input::Nothing, Some(&env), None);
    let _ = fs::remove_file(&overlay);
    let out = out?;
    if !out.success() {
        bail!("failed to deploy {}: {}", app.domain, out.said());
    }
    if p.on("no-converge-checks") {
        println!(
            "{} deployed (converge checks skipped) version {}",
            app.domain, plan.version_label
        );
        return Ok(0);
    }
    let started: BTreeMap<String, String> = before
        .iter()
        .map(|s| {
            let at = s.update_status.as_ref().map(|u| u.started_at.clone());
            (s.spec.name.clone(), at.unwrap_or_default())
        })
        .collect();
    converge(&app, &started, Duration::from_secs(timeout))?;
    println!(
        "{} deployed and converged ✅ version {}",
        app.domain, plan.version_label
    );
    Ok(0)
}

/// The compose file the stand-in adds last: abra's version labels on every service, and
/// `endpoint_mode: dnsrr` where the service publishes no port (no IPVS here: see the module
/// docs). JSON is YAML, so serde writes it.
pub(super) fn overlay_compose(stack: &str, compose: &recipe::Compose, plan: &Plan) -> String {
    let mut labels = BTreeMap::new();
    labels.insert(
        format!("coop-cloud.{stack}.version"),
        plan.version_label.clone(),
    );
    labels.insert(format!("coop-cloud.{stack}.chaos"), plan.chaos.to_string());
    if let Some(cv) = &plan.chaos_version {
        labels.insert(format!("coop-cloud.{stack}.chaos-version"), cv.clone());
    }
    let services: serde_json::Map<String, serde_json::Value> = compose
        .services
        .iter()
        .map(|(name, svc)| {
            let mut deploy = json!({ "labels": labels });
            if !svc.ports {
                deploy["endpoint_mode"] = json!("dnsrr");
            }
            (name.clone(), json!({ "deploy": deploy }))
        })
        .collect();
    let mut doc = json!({ "services": services });
    if let Some(v) = &compose.version {
        doc["version"] = json!(v);
    }
    doc.to_string()
}

/// abra's convergence monitor: every service of the stack runs its wanted number of tasks of
/// the spec just deployed (a task with a healthcheck counts once healthy). A rollback or a
/// paused update of this deploy fails it: the old tasks still run, but the new version did
/// not. `before` holds each service's update start before the deploy, to tell this deploy's
/// update from an earlier one's.
pub(super) fn converge(
    app: &App,
    before: &BTreeMap<String, String>,
    limit: Duration,
) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let services = docker::services(&app.stack)?;
        let mut waiting = Vec::new();
        for svc in &services {
            let name = &svc.spec.name;
            let fresh = svc
                .update_status
                .as_ref()
                .filter(|u| before.get(name) != Some(&u.started_at));
            let tasks = docker::tasks(name)?;
            if let Some(u) = fresh {
                // Failed either way; the rollback is waited for (within the bound), so the
                // app is left as swarm leaves it: the old spec deployed again, though its task
                // may still be starting when swarm says `rollback_completed`.
                let settled = u.state == "rollback_completed"
                    || u.state == "rollback_paused"
                    || u.state == "paused";
                let rolling_back = u.state == "rollback_started";
                if settled || (rolling_back && Instant::now() >= deadline) {
                    bail!(
                        "deploy failed 🛑 service {name}: update {}: {}{}",
                        if u.state == "paused" {
                            "paused"
                        } else {
                            "rolled back"
                        },
                        u.message,
                        last_error(&tasks)
                            .map(|e| format!(" (task: {e})"))
                            .unwrap_or_default()
                    );
                }
            }
            let updating =
                fresh.is_some_and(|u| u.state == "updating" || u.state == "rollback_started");
            let up = tasks
                .iter()
                .filter(|t| {
                    t.desired_state == "running"
                        && t.status.state == "running"
                        && same_spec(
                            &t.spec.container_spec,
                            &svc.spec.task_template.container_spec,
                        )
                        && t.spec.force_update == svc.spec.task_template.force_update
                })
                .count() as u64;
            if updating || up < svc.desired() {
                let why = last_error(&tasks)
                    .or_else(|| tasks.first().map(|t| t.status.state.clone()))
                    .unwrap_or_else(|| "no task yet".into());
                waiting.push(format!("{name} ({up}/{}: {why})", svc.desired()));
            }
        }
        if services.is_empty() {
            waiting.push(format!("no services of {}", app.stack));
        }
        if waiting.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "{}: deploy timed out 🟠 not converged within {} s: {}",
                app.domain,
                limit.as_secs(),
                waiting.join(", ")
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A task runs the service's current container spec. The engine leaves defaults out of one
/// copy or the other (`StopGracePeriod`, `Privileges.NoNewPrivileges: false`, an empty
/// `DNSConfig`), so at every level only the keys both carry count; the image, environment,
/// mounts, secrets and healthcheck always do.
pub(super) fn same_spec(task: &serde_json::Value, service: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (task, service) {
        (Value::Object(t), Value::Object(s)) => t
            .iter()
            .all(|(k, v)| s.get(k).is_none_or(|sv| same_spec(v, sv))),
        (Value::Array(t), Value::Array(s)) => {
            t.len() == s.len() && t.iter().zip(s).all(|(a, b)| same_spec(a, b))
        }
        _ => task == service,
    }
}

/// The newest error a task of the service reported (`No such image: …`, `task: non-zero exit (1)`).
pub(super) fn last_error(tasks: &[docker::Task]) -> Option<String> {
    tasks
        .iter()
        .find(|t| !t.status.err.is_empty())
        .map(|t| t.status.err.clone())
}

pub(super) fn chaos_plan(ctx: &Ctx, app: &App, dir: &Path) -> Result<Plan> {
    // Fault `chaos-stale-checkout`: the deploy runs the commit before HEAD, as an abra that
    // silently redeployed an old checkout would (cc-ci must notice by the label).
    let sha = if ctx.fault("chaos-stale-checkout") {
        recipe::git(dir, &["rev-parse", "HEAD~1"])?
            .trim()
            .to_owned()
    } else {
        recipe::head_sha(dir)?
    };
    let mut cv = sha[..8.min(sha.len())].to_owned();
    if recipe::is_dirty(dir)? {
        cv.push_str("+U");
    }
    // The version label keeps the published version ([CCCI]; code importing `coopcloud.tech/abra/pkg` writes `coop-cloud.<stack>.version`).
    let published = app
        .pin
        .clone()
        .or_else(|| {
            recipe::git(dir, &["describe", "--tags", "--abbrev=0"])
                .ok()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| cv.clone());
    Ok(Plan {
        version_label: published,
        chaos: true,
        chaos_version: Some(cv),
    })
}

pub(super) fn require_deployed(app: &App) -> Result<Vec<docker::Service>> {
    let services = docker::services(&app.stack)?;
    if services.is_empty() {
        bail!("{} is not deployed?", app.domain);
    }
    Ok(services)
}

pub(super) fn container_of(app: &App, service: &str) -> Result<String> {
    let full = format!("{}_{service}", app.stack);
    docker::running_container(&full)?
        .ok_or_else(|| anyhow!("no containers matching the {full} service"))
}
