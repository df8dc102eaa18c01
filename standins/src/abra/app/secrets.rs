//! `abra app secret generate|insert|remove`, and the secrets a deploy generates.

use super::*;

// ---------------------------------------------------------------------------------------------
// secrets

/// (name, version, length) of every `SECRET_<NAME>_VERSION` in the app's `.env`.
pub(super) fn all_secret_specs(app: &App) -> Vec<(String, String, usize)> {
    app.env
        .secret_versions()
        .into_iter()
        .map(|(n, v, l)| (n, v, l.unwrap_or(DEFAULT_SECRET_LENGTH)))
        .collect()
}

/// Docker's secret name, `<stack>_<secret>_<version>` ([SEC]; [BON] compose.yml).
pub(super) fn secret_remote(app: &App, name: &str, version: &str) -> String {
    format!("{}_{name}_{version}", app.stack)
}

/// `docker secret create NAME -`, the value on stdin (never on a command line).
pub(super) fn create_secret(remote: &str, value: &[u8]) -> Result<()> {
    docker::ok_in(
        &["secret", "create", remote, "-"],
        docker::Input::Bytes(value),
    )
    .map(|_| ())
}

/// Generates and stores secrets; returns (name, value) pairs. Stops at the first Docker error.
pub(super) fn generate_secrets(
    app: &App,
    specs: &[(String, String, usize)],
) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (name, version, len) in specs {
        let value = random_secret(*len)?;
        let remote = secret_remote(app, name, version);
        create_secret(&remote, value.as_bytes())
            .with_context(|| format!("failed to create secret {remote}"))?;
        out.push((name.clone(), value));
    }
    Ok(out)
}

pub(super) const GENERATE: &str = "abra app secret generate";

pub(super) fn app_secret_generate(ctx: &Ctx, args: &[String]) -> Result<i32> {
    let spec = [flag("all", Some('a')), flag("machine", Some('m'))];
    let Some(p) = parse(GENERATE, args, &spec)? else {
        return Ok(0);
    };
    let app = {
        want_args(GENERATE, &p, 1, 3)?;
        find_app(ctx, &p.positional[0])?
    };
    let known = all_secret_specs(&app);
    let specs = if p.on("all") {
        if p.positional.len() > 1 {
            return Err(usage(
                GENERATE,
                "cannot use '<name> <version>' and '--all' together",
            ));
        }
        known
    } else {
        if p.positional.len() != 3 {
            return Err(usage(
                GENERATE,
                "missing arguments <name> <version> (or --all)",
            ));
        }
        let (name, version) = (&p.positional[1], &p.positional[2]);
        let Some((_, _, len)) = known.iter().find(|(n, _, _)| n == name) else {
            bail!("{name} doesn't exist in the env config?");
        };
        vec![(name.clone(), version.clone(), *len)]
    };
    let generated = generate_secrets(&app, &specs)?;
    if p.on("machine") {
        let v: Vec<_> = generated
            .iter()
            .map(|(n, v)| json!({"name": n, "value": v}))
            .collect();
        println!("{}", serde_json::Value::Array(v));
    } else {
        print!("{}", secrets_table(&generated));
    }
    Ok(0)
}

pub(super) const INSERT: &str = "abra app secret insert";

pub(super) fn app_secret_insert(ctx: &Ctx, args: &[String]) -> Result<i32> {
    let spec = [flag("file", Some('f')), flag("trim", Some('t'))];
    let Some(p) = parse(INSERT, args, &spec)? else {
        return Ok(0);
    };
    want_args(INSERT, &p, 4, 4)?;
    let app = find_app(ctx, &p.positional[0])?;
    let (name, version, data) = (&p.positional[1], &p.positional[2], &p.positional[3]);
    let mut value = if p.on("file") {
        fs::read(data).with_context(|| format!("reading secret file {data}"))?
    } else {
        data.as_bytes().to_vec()
    };
    if p.on("trim") {
        let s = String::from_utf8_lossy(&value).trim().to_owned();
        value = s.into_bytes();
    }
    let remote = secret_remote(&app, name, version);
    create_secret(&remote, &value).with_context(|| format!("failed to insert secret {remote}"))?;
    eprintln!("INFO {name} has been inserted as {remote}");
    Ok(0)
}

pub(super) const REMOVE_SECRET: &str = "abra app secret remove";

pub(super) fn app_secret_remove(ctx: &Ctx, args: &[String]) -> Result<i32> {
    let spec = [flag("all", Some('a'))];
    let Some(p) = parse(REMOVE_SECRET, args, &spec)? else {
        return Ok(0);
    };
    want_args(REMOVE_SECRET, &p, 1, 2)?;
    let app = find_app(ctx, &p.positional[0])?;
    let name = p.positional.get(1);
    if name.is_some() == p.on("all") {
        return Err(usage(
            REMOVE_SECRET,
            "provide a secret name or --all, not both",
        ));
    }
    let prefix = format!("{}_", app.stack);
    let targets: Vec<String> = docker::lines(&docker::ok(&[
        "secret",
        "ls",
        "--format",
        "{{.Name}}",
        "--filter",
        &format!("name={prefix}"),
    ])?)
    .into_iter()
    .filter(|s| {
        let Some(rest) = s.strip_prefix(&prefix) else {
            return false;
        };
        match name {
            // `<name>_<version>`, the version itself having no `_`.
            Some(n) => rest
                .strip_prefix(n.as_str())
                .and_then(|r| r.strip_prefix('_'))
                .is_some_and(|v| !v.is_empty() && !v.contains('_')),
            None => true,
        }
    })
    .collect();
    if targets.is_empty() {
        bail!(
            "no secrets to remove for {}{}",
            app.domain,
            name.map(|n| format!(" named {n}")).unwrap_or_default()
        );
    }
    for t in &targets {
        // The engine refuses a secret a service still uses, in its own words.
        docker::ok(&["secret", "rm", t])?;
        eprintln!("INFO removed secret {t}");
    }
    Ok(0)
}

/// Generated secrets as abra prints them: a NAME / VALUE table.
pub(super) fn secrets_table(generated: &[(String, String)]) -> String {
    let rows: Vec<Vec<String>> = generated
        .iter()
        .map(|(n, v)| vec![n.clone(), v.clone()])
        .collect();
    table(&["NAME", "VALUE"], &rows)
}
