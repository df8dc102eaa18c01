//! `abra recipe fetch|lint` and `abra server add`.

use super::*;

// ---------------------------------------------------------------------------------------------
// recipe fetch, server add

pub(super) const FETCH: &str = "abra recipe fetch";

pub(super) fn recipe_fetch(ctx: &Ctx, args: &[String]) -> Result<i32> {
    let Some(p) = parse(FETCH, args, &[])? else {
        return Ok(0);
    };
    want_args(FETCH, &p, 1, 1)?;
    fetch_recipe(ctx, &p.positional[0])?;
    eprintln!("INFO fetched {}", p.positional[0]);
    Ok(0)
}

pub(super) const LINT: &str = "abra recipe lint";

pub(super) fn recipe_lint(ctx: &Ctx, args: &[String]) -> Result<i32> {
    let Some(p) = parse(LINT, args, &[])? else {
        return Ok(0);
    };
    want_args(LINT, &p, 1, 1)?;
    let name = &p.positional[0];
    let dir = ensure_recipe(ctx, name)?;
    crate::abra::lint::lint(&dir, name)
}

pub(super) const SERVER_ADD: &str = "abra server add";

pub(super) fn server_add(ctx: &Ctx, args: &[String]) -> Result<i32> {
    let spec = [flag("local", Some('l'))];
    let Some(p) = parse(SERVER_ADD, args, &spec)? else {
        return Ok(0);
    };
    // `--local` registers the local daemon as `default` ([MALTA] common.nix: "Use proper server context (default …)").
    let name = if p.on("local") {
        want_args(SERVER_ADD, &p, 0, 0)?;
        "default".to_owned()
    } else {
        want_args(SERVER_ADD, &p, 1, 1)?;
        p.positional[0].clone()
    };
    let dir = ctx.abra_dir.join("servers").join(&name);
    if dir.is_dir() {
        bail!("server at {name} already exists");
    }
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    eprintln!("INFO server {name} added");
    Ok(0)
}
