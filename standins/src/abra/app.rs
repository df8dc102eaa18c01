//! The abra commands: argument handling, the rules abra and Docker enforce, and the effects on
//! `$ABRA_DIR` and the stand-in swarm. Where a rule comes from is cited next to it; sources
//! are named by the keys docs/fidelity.md lists under "Sources of the stand-in abra" ([SEC],
//! [MH], [CCCI] …), each with its URL.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::json;

use super::cli::{self, flag, opt, Flag, Parsed};
use super::recipe::{self, EnvFile};
use super::swarm::{self, Service, Stack};
use super::{Ctx, UsageError, HELP};

/// abra's convergence wait when the compose has no `coop-cloud.<stack>.timeout` label. The
/// exact default of abra's `stack.WaitTimeout` was not seen in a source; 50 s assumed.
const DEFAULT_TIMEOUT_S: u64 = 50;
/// Default generated secret length when `.env` has no `# length=N` modifier.
const DEFAULT_SECRET_LENGTH: usize = 32;
/// How long a `hang:<command>` fault holds a command (the caller's timeout should fire first).
const HANG_FOR: Duration = Duration::from_secs(3600);

fn usage(command: &str, message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError {
        command: command.to_owned(),
        message: message.into(),
    })
}

fn parse(command: &str, args: &[String], spec: &[Flag]) -> Result<Option<Parsed>> {
    let p = cli::parse(args, spec).map_err(|m| usage(command, m))?;
    if p.on("help") {
        print!("{HELP}");
        return Ok(None);
    }
    Ok(Some(p))
}

fn want_args(command: &str, p: &Parsed, min: usize, max: usize) -> Result<()> {
    let n = p.positional.len();
    if n < min || n > max {
        return Err(usage(
            command,
            if min == max {
                format!("accepts {min} arg(s), received {n}")
            } else {
                format!("accepts between {min} and {max} arg(s), received {n}")
            },
        ));
    }
    Ok(())
}

/// Entry point for every invocation except the hidden service mode.
pub fn dispatch(args: &[String]) -> Result<i32> {
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    if words.is_empty() || matches!(words[0], "-h" | "--help" | "help") {
        print!("{HELP}");
        return Ok(0);
    }
    let (key, cmd, rest): (&str, &str, &[String]) = match words.as_slice() {
        ["app" | "a", "secret" | "s", sub, ..] => {
            let key = match *sub {
                "generate" | "g" => "secret-generate",
                "insert" | "i" => "secret-insert",
                "remove" | "rm" => "secret-remove",
                other => bail!("unknown command \"{other}\" for \"abra app secret\""),
            };
            (key, key, &args[3..])
        }
        ["app" | "a", "volume" | "vl", sub, ..] => match *sub {
            "remove" | "rm" => ("volume", "volume-remove", &args[3..]),
            other => bail!("unknown command \"{other}\" for \"abra app volume\""),
        },
        ["app" | "a", "backup" | "b", sub, ..] => match *sub {
            "create" | "c" => ("backup", "backup-create", &args[3..]),
            other => bail!("unknown command \"{other}\" for \"abra app backup\""),
        },
        ["app" | "a", sub, ..] => {
            let key = match *sub {
                "new" | "n" => "new",
                "deploy" | "d" => "deploy",
                "undeploy" | "un" => "undeploy",
                "ls" | "list" => "ls",
                "ps" => "ps",
                "run" => "run",
                "restore" | "rs" => "restore",
                other => bail!("unknown command \"{other}\" for \"abra app\""),
            };
            (key, key, &args[2..])
        }
        ["recipe" | "r", "fetch" | "f", ..] => ("recipe-fetch", "recipe-fetch", &args[2..]),
        ["server" | "s", "add" | "a", ..] => ("server-add", "server-add", &args[2..]),
        [other, ..] => bail!("unknown command \"{other}\" for \"abra\""),
        [] => unreachable!("empty args handled above"),
    };
    let ctx = Ctx::from_env()?;
    if ctx.swarm.fault(&format!("hang:{key}")) {
        std::thread::sleep(HANG_FOR);
    }
    match cmd {
        "new" => app_new(&ctx, rest),
        "deploy" => app_deploy(&ctx, rest),
        "undeploy" => app_undeploy(&ctx, rest),
        "ls" => app_ls(&ctx, rest),
        "ps" => app_ps(&ctx, rest),
        "run" => app_run(&ctx, rest),
        "restore" => app_restore(&ctx, rest),
        "backup-create" => app_backup_create(&ctx, rest),
        "volume-remove" => app_volume_remove(&ctx, rest),
        "secret-generate" => app_secret_generate(&ctx, rest),
        "secret-insert" => app_secret_insert(&ctx, rest),
        "secret-remove" => app_secret_remove(&ctx, rest),
        "recipe-fetch" => recipe_fetch(&ctx, rest),
        "server-add" => server_add(&ctx, rest),
        _ => unreachable!("every key is dispatched"),
    }
}

// ---------------------------------------------------------------------------------------------
// Apps, recipes, names

/// An app as abra knows it: its `.env` under a server dir.
struct App {
    domain: String,
    server: String,
    env: EnvFile,
    recipe: String,
    /// The version pinned in `TYPE=<recipe>:<version>`.
    pin: Option<String>,
    stack: String,
}

/// Stack name = domain with `.` → `_` ([SEC]: app `example_wordpress`, secret `example_wordpress_db_password_v1`).
pub fn stack_name(domain: &str) -> String {
    domain.replace('.', "_")
}

fn find_app(ctx: &Ctx, domain: &str) -> Result<App> {
    let servers = ctx.abra_dir.join("servers");
    let mut found = None;
    if let Ok(rd) = fs::read_dir(&servers) {
        for e in rd.flatten() {
            let p = e.path().join(format!("{domain}.env"));
            if p.is_file() {
                found = Some((e.file_name().to_string_lossy().into_owned(), p));
                break;
            }
        }
    }
    let (server, path) = found.ok_or_else(|| anyhow!("cannot find app with name {domain}"))?;
    let env = EnvFile::read(&path)?;
    let ty = env
        .get("TYPE")
        .or_else(|| env.get("RECIPE"))
        .ok_or_else(|| anyhow!("{domain}: no TYPE or RECIPE in {}", path.display()))?;
    let (recipe, pin) = match ty.split_once(':') {
        Some((r, v)) if !v.is_empty() => (r.to_owned(), Some(v.to_owned())),
        _ => (ty.trim_end_matches(':').to_owned(), None),
    };
    Ok(App {
        domain: domain.to_owned(),
        server,
        env,
        stack: stack_name(domain),
        recipe,
        pin,
    })
}

fn recipe_dir(ctx: &Ctx, recipe: &str) -> PathBuf {
    ctx.abra_dir.join("recipes").join(recipe)
}

/// Clones the recipe from the catalogue when it is not checked out yet, as abra fetches a
/// missing recipe on `app new` / `app deploy`.
fn ensure_recipe(ctx: &Ctx, recipe: &str) -> Result<PathBuf> {
    let dir = recipe_dir(ctx, recipe);
    if dir.join(".git").is_dir() {
        return Ok(dir);
    }
    fetch_recipe(ctx, recipe)?;
    Ok(dir)
}

fn fetch_recipe(ctx: &Ctx, recipe: &str) -> Result<()> {
    let cat = std::env::var_os("STANDIN_ABRA_CATALOGUE")
        .filter(|c| !c.is_empty())
        .ok_or_else(|| {
            anyhow!("unable to fetch {recipe}: STANDIN_ABRA_CATALOGUE (stand-in) is not set")
        })?;
    let src = PathBuf::from(cat).join(recipe);
    if !src.join(".git").is_dir() && !src.join("HEAD").is_file() {
        bail!(
            "unable to clone {recipe}: repository not found in the catalogue ({})",
            src.display()
        );
    }
    let dir = recipe_dir(ctx, recipe);
    if dir.join(".git").is_dir() {
        recipe::git(&dir, &["fetch", "-q", "--tags", "origin"])?;
        return Ok(());
    }
    fs::create_dir_all(ctx.abra_dir.join("recipes"))?;
    let out = Command::new("git")
        .args(["clone", "-q"])
        .arg(&src)
        .arg(&dir)
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .context("running git clone")?;
    if !out.status.success() {
        bail!(
            "unable to clone {recipe}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// abra's wording for a dirty checkout ([CCCI] tests/ history: "FATAs 'has locally unstaged changes'",
/// untracked files included).
fn refuse_dirty(dir: &Path, recipe: &str) -> Result<()> {
    if recipe::is_dirty(dir)? {
        bail!("{recipe} has locally unstaged changes? please commit/remove your changes before proceeding");
    }
    Ok(())
}

fn checkout(dir: &Path, rev: &str) -> Result<()> {
    recipe::git(dir, &["checkout", "-q", rev]).map(|_| ())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn random_bytes(n: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; n];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .context("reading /dev/urandom")?;
    Ok(buf)
}

fn random_secret(len: usize) -> Result<String> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    Ok(random_bytes(len)?
        .into_iter()
        .map(|b| ALPHABET[b as usize % ALPHABET.len()] as char)
        .collect())
}

/// A fixed-width table like abra's (header + rows), two spaces between columns.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut w: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<width$}  ", width = w[i]));
            }
        }
        s.trim_end().to_owned() + "\n"
    };
    let mut out = line(header.to_vec());
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// app new

const NEW: &str = "abra app new";

fn app_new(ctx: &Ctx, args: &[String]) -> Result<i32> {
    let spec = [
        opt("server", Some('s')),
        opt("domain", Some('D')),
        flag("secrets", Some('S')),
        flag("chaos", Some('C')),
    ];
    let Some(p) = parse(NEW, args, &spec)? else {
        return Ok(0);
    };
    want_args(NEW, &p, 0, 2)?;
    // Without these abra prompts ([KARROT] docs/src/self-hosting.md: `abra app new` asks for server and domain); a
    // CI has no TTY, so the prompt fails.
    let recipe_name =
        p.positional.first().cloned().ok_or_else(|| {
            anyhow!("no recipe name provided and unable to prompt for one: no TTY")
        })?;
    let server = p.value("server").map(str::to_owned).ok_or_else(|| {
        anyhow!("no server provided (--server) and unable to prompt for one: no TTY")
    })?;
    let domain = p.value("domain").map(str::to_owned).ok_or_else(|| {
        anyhow!("no domain provided (--domain) and unable to prompt for one: no TTY")
    })?;
    let server_dir = ctx.abra_dir.join("servers").join(&server);
    if !server_dir.is_dir() {
        bail!("server {server} doesn't exist? run \"abra server add\" first");
    }
    if find_app(ctx, &domain).is_ok() {
        bail!("{domain} already exists");
    }
    let dir = ensure_recipe(ctx, &recipe_name)?;
    let tags = recipe::release_tags(&dir)?;
    let version = if p.on("chaos") {
        None
    } else if let Some(v) = p.positional.get(1) {
        if !tags.contains(v) {
            bail!(
                "{v} is not a published version of {recipe_name} (known: {})",
                tags.join(", ")
            );
        }
        Some(v.clone())
    } else {
        tags.last().cloned()
    };
    // `app new` moves the checkout to the release tag ([CCCI] notes).
    if let Some(v) = &version {
        refuse_dirty(&dir, &recipe_name)?;
        checkout(&dir, v)?;
    }
    let sample = dir.join(".env.sample");
    let mut env =
        EnvFile::read(&sample).with_context(|| format!("{recipe_name} has no .env.sample"))?;
    env.path = server_dir.join(format!("{domain}.env"));
    match &version {
        Some(v) => env.set("TYPE", &format!("{recipe_name}:{v}")),
        None => env.set("TYPE", &recipe_name),
    }
    env.set("DOMAIN", &domain);
    env.write()?;
    println!(
        "{}",
        table(
            &["SERVER", "DOMAIN", "RECIPE", "VERSION"],
            &[vec![
                server.clone(),
                domain.clone(),
                recipe_name.clone(),
                version.clone().unwrap_or_else(|| "chaos".into()),
            ]]
        )
        .trim_end()
    );
    if p.on("secrets") {
        let app = find_app(ctx, &domain)?;
        let generated = generate_secrets(ctx, &app, &all_secret_specs(&app))?;
        // Real abra shows the new secrets once, with their values ([CCCI] BACKLOG.md M5): the caller must
        // keep this output out of logs.
        println!();
        println!("NEW APP SECRETS (shown once, keep them safe)");
        print!(
            "{}",
            table(
                &["NAME", "VALUE"],
                &generated
                    .iter()
                    .map(|(n, v)| vec![n.clone(), v.clone()])
                    .collect::<Vec<_>>()
            )
        );
    }
    Ok(0)
}

// ---------------------------------------------------------------------------------------------
// secrets

/// (name, version, length) of every `SECRET_<NAME>_VERSION` in the app's `.env`.
fn all_secret_specs(app: &App) -> Vec<(String, String, usize)> {
    app.env
        .secret_versions()
        .into_iter()
        .map(|(n, v, l)| (n, v, l.unwrap_or(DEFAULT_SECRET_LENGTH)))
        .collect()
}

/// Docker's remote name, `<stack>_<secret>_<version>` ([SEC]; [BON] compose.yml).
fn secret_remote(app: &App, name: &str, version: &str) -> String {
    format!("{}_{name}_{version}", app.stack)
}

/// Generates and stores secrets; returns (name, value) pairs. Stops at the first Docker error.
fn generate_secrets(
    ctx: &Ctx,
    app: &App,
    specs: &[(String, String, usize)],
) -> Result<Vec<(String, String)>> {
    let _lock = ctx.swarm.lock()?;
    let mut out = Vec::new();
    for (name, version, len) in specs {
        let value = random_secret(*len)?;
        let remote = secret_remote(app, name, version);
        ctx.swarm
            .create_secret(&remote, value.as_bytes())
            .with_context(|| format!("failed to create secret {remote}"))?;
        out.push((name.clone(), value));
    }
    Ok(out)
}

const GENERATE: &str = "abra app secret generate";

fn app_secret_generate(ctx: &Ctx, args: &[String]) -> Result<i32> {
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
    let generated = generate_secrets(ctx, &app, &specs)?;
    if p.on("machine") {
        let v: Vec<_> = generated
            .iter()
            .map(|(n, v)| json!({"name": n, "value": v}))
            .collect();
        println!("{}", serde_json::Value::Array(v));
    } else {
        print!(
            "{}",
            table(
                &["NAME", "VALUE"],
                &generated
                    .iter()
                    .map(|(n, v)| vec![n.clone(), v.clone()])
                    .collect::<Vec<_>>()
            )
        );
    }
    Ok(0)
}

const INSERT: &str = "abra app secret insert";

fn app_secret_insert(ctx: &Ctx, args: &[String]) -> Result<i32> {
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
    let _lock = ctx.swarm.lock()?;
    ctx.swarm
        .create_secret(&remote, &value)
        .with_context(|| format!("failed to insert secret {remote}"))?;
    eprintln!("INFO {name} has been inserted as {remote}");
    Ok(0)
}

const REMOVE_SECRET: &str = "abra app secret remove";

fn app_secret_remove(ctx: &Ctx, args: &[String]) -> Result<i32> {
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
    let _lock = ctx.swarm.lock()?;
    let state = ctx.swarm.load()?;
    let prefix = format!("{}_", app.stack);
    let targets: Vec<String> = ctx
        .swarm
        .list_secrets()?
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
        // swarmkit manager/controlapi/secret.go RemoveSecret refuses a secret in use.
        if let Some(stack) = state.stacks.values().find(|s| s.secrets.contains(t)) {
            let users: Vec<String> = stack
                .services
                .iter()
                .filter(|svc| svc.secret_mounts.iter().any(|(n, _)| n == t))
                .map(|svc| format!("{}_{}", stack_name(&stack.domain), svc.name))
                .collect();
            bail!(
                "Error response from daemon: rpc error: code = InvalidArgument desc = secret '{t}' is in use by the following service{}: {}",
                if users.len() > 1 { "s" } else { "" },
                users.join(", ")
            );
        }
    }
    for t in &targets {
        fs::remove_file(ctx.swarm.secret_path(t))
            .with_context(|| format!("removing secret {t}"))?;
        eprintln!("INFO removed secret {t}");
    }
    Ok(0)
}

// ---------------------------------------------------------------------------------------------
// deploy

const DEPLOY: &str = "abra app deploy";

/// What was decided to deploy.
struct Plan {
    version_label: String,
    chaos: bool,
    chaos_version: Option<String>,
}

fn app_deploy(ctx: &Ctx, args: &[String]) -> Result<i32> {
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

    {
        let state = ctx.swarm.load()?;
        if state.stacks.contains_key(&app.stack) && !p.on("force") {
            bail!("{} is already deployed", app.domain);
        }
    }

    // Version kinds ([HB-ver]).
    let plan = if p.on("chaos") {
        // A chaos deploy deploys whatever HEAD/worktree is checked out, no re-checkout
        // ([CCCI] JOURNAL-dstamp.md, quoting abra 0.13.0-beta `getDeployVersion`): label `<SmallSHA(HEAD)>` + `+U` when dirty.
        chaos_plan(&app, &dir)?
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
            None => chaos_plan(&app, &dir)?,
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

    let timeout = compose
        .services
        .values()
        .find_map(|s| s.labels.get(&format!("coop-cloud.{}.timeout", app.stack)))
        .and_then(|t| t.trim().parse::<u64>().ok())
        .unwrap_or(DEFAULT_TIMEOUT_S);

    let lock = ctx.swarm.lock()?;
    let mut state = ctx.swarm.load()?;
    let old = state.stacks.remove(&app.stack);
    if old.is_some() && !p.on("force") {
        bail!("{} is already deployed", app.domain);
    }
    // Every secret the services use must exist at the version the .env says; docker stack
    // deploy fails otherwise.
    let mut used_secrets = Vec::new();
    for (svc_name, svc) in &compose.services {
        for (key, _) in &svc.secrets {
            let remote = compose
                .secrets
                .get(key)
                .cloned()
                .unwrap_or_else(|| format!("{}_{key}", app.stack));
            if !ctx.swarm.secret_exists(&remote) {
                bail!("failed to create service {}_{svc_name}: Error response from daemon: secret not found: {remote}", app.stack);
            }
            used_secrets.push(remote);
        }
    }
    let mut labels = BTreeMap::new();
    labels.insert(
        format!("coop-cloud.{}.version", app.stack),
        plan.version_label.clone(),
    );
    labels.insert(
        format!("coop-cloud.{}.chaos", app.stack),
        plan.chaos.to_string(),
    );
    if let Some(cv) = &plan.chaos_version {
        labels.insert(
            format!("coop-cloud.{}.chaos-version", app.stack),
            cv.clone(),
        );
    }
    // A redeploy replaces the running tasks.
    let mut old_ports = BTreeMap::new();
    if let Some(old) = &old {
        for s in &old.services {
            if let Some(pid) = s.pid {
                swarm::stop_process(pid, s.start_time);
            }
            if let Some(port) = s.port {
                old_ports.insert(s.name.clone(), port);
            }
        }
    }
    let mut stack = Stack {
        domain: app.domain.clone(),
        server: app.server.clone(),
        recipe: app.recipe.clone(),
        labels,
        services: Vec::new(),
        secrets: used_secrets,
        deployed_at_ms: now_ms(),
    };
    let deploy_fails = ctx.swarm.fault("deploy-fails");
    let never_converges = ctx.swarm.fault("never-converges");
    let mut failure = None;
    for (name, svc) in &compose.services {
        let mut service = Service {
            name: name.clone(),
            image: svc.image.clone(),
            state: "running".into(),
            env: svc.environment.clone(),
            ..Default::default()
        };
        for (vol, target) in &svc.volumes {
            let remote = format!("{}_{vol}", app.stack);
            let vdir = ctx.swarm.volume_dir(&remote);
            let fresh = !vdir.exists()
                || fs::read_dir(&vdir)
                    .map(|mut d| d.next().is_none())
                    .unwrap_or(true);
            fs::create_dir_all(&vdir).with_context(|| format!("creating volume {remote}"))?;
            // Docker copies the image's content at the mount point into an empty volume on
            // first mount; the stand-in images are described in `image_content`.
            if fresh {
                seed_volume(&svc.image, target, &vdir)?;
            }
            service.mounts.push((remote, target.clone()));
        }
        for (key, target) in &svc.secrets {
            let remote = compose
                .secrets
                .get(key)
                .cloned()
                .unwrap_or_else(|| format!("{}_{key}", app.stack));
            service.secret_mounts.push((remote, target.clone()));
        }
        if deploy_fails {
            service.state = "failed".into();
            failure.get_or_insert_with(|| format!("service {}_{name}: task failed: container exited with status 1 (stand-in fault deploy-fails)", app.stack));
            stack.services.push(service);
            continue;
        }
        let started = start_service(
            ctx,
            &app.stack,
            &service,
            old_ports.get(name).copied(),
            never_converges,
        )
        .with_context(|| format!("starting service {}_{name}", app.stack));
        let (pid, start_time, port) = match started {
            Ok(s) => s,
            Err(e) => {
                // Nothing is recorded for this deploy, so nothing it started may outlive it.
                for s in &stack.services {
                    if let Some(pid) = s.pid {
                        swarm::stop_process(pid, s.start_time);
                    }
                }
                return Err(e);
            }
        };
        service.pid = Some(pid);
        service.start_time = start_time;
        service.port = Some(port);
        stack.services.push(service);
    }
    stack.secrets.sort();
    stack.secrets.dedup();
    materialise_secrets(ctx, &stack)?;
    let backup = backup_plan(&compose, &app.stack);
    fs::write(
        ctx.swarm
            .backups_dir(&app.stack)
            .with_extension("plan.json"),
        serde_json::to_vec_pretty(&backup)?,
    )
    .context("recording the backup plan")?;
    let services: Vec<Service> = stack.services.clone();
    state.stacks.insert(app.stack.clone(), stack);
    ctx.swarm.save(&state)?;
    drop(lock);

    if let Some(f) = failure {
        bail!("deploy failed 🛑 {f}");
    }
    eprintln!(
        "INFO deploying {} version {}{}",
        app.domain,
        plan.version_label,
        plan.chaos_version
            .as_ref()
            .map(|c| format!(" (chaos {c})"))
            .unwrap_or_default()
    );
    if !p.on("no-converge-checks") {
        // abra's convergence monitor, bounded by the stack's timeout label ([CCCI] tests/matrix-synapse/PARITY.md: `TIMEOUT`, `GetTimeoutFromLabel`).
        let deadline = Instant::now() + Duration::from_secs(timeout);
        for s in &services {
            let Some(port) = s.port else { continue };
            loop {
                if http_answers(port) {
                    break;
                }
                if Instant::now() >= deadline {
                    bail!(
                        "{}: deploy timed out 🟠 service {}_{} did not converge within {timeout}s",
                        app.domain,
                        app.stack,
                        s.name
                    );
                }
                if !s.pid.is_some_and(|pid| swarm::pid_alive(pid, s.start_time)) {
                    bail!(
                        "deploy failed 🛑 service {}_{}: task exited",
                        app.stack,
                        s.name
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        println!(
            "{} deployed and converged ✅ version {}",
            app.domain, plan.version_label
        );
    } else {
        println!(
            "{} deployed (converge checks skipped) version {}",
            app.domain, plan.version_label
        );
    }
    Ok(0)
}

fn chaos_plan(app: &App, dir: &Path) -> Result<Plan> {
    let sha = recipe::head_sha(dir)?;
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

/// The content an image keeps at a path, copied into an empty volume mounted there. The
/// stand-in knows nginx's: `/usr/share/nginx/html/index.html` (and 50x.html), with the image
/// tag in it so an upgrade of a fresh install is visible.
fn seed_volume(image: &str, target: &str, vdir: &Path) -> Result<()> {
    let (name, tag) = image.split_once(':').unwrap_or((image, "latest"));
    let base = name.rsplit('/').next().unwrap_or(name);
    if base == "nginx" && target.trim_end_matches('/') == "/usr/share/nginx/html" {
        let index = format!(
            "<!DOCTYPE html>\n<html>\n<head>\n<title>Welcome to nginx!</title>\n</head>\n<body>\n<h1>Welcome to nginx!</h1>\n<p>If you see this page, the nginx web server is successfully installed and\nworking.</p>\n<!-- stand-in image {name}:{tag} -->\n</body>\n</html>\n"
        );
        fs::write(vdir.join("index.html"), index).context("seeding index.html")?;
        fs::write(
            vdir.join("50x.html"),
            "<!DOCTYPE html>\n<html>\n<head>\n<title>Error</title>\n</head>\n<body>\n<h1>An error occurred.</h1>\n</body>\n</html>\n",
        )
        .context("seeding 50x.html")?;
    }
    Ok(())
}

fn container_dir(ctx: &Ctx, stack: &str, service: &str) -> PathBuf {
    ctx.swarm
        .dir
        .join("containers")
        .join(format!("{stack}_{service}"))
}

/// Copies the service's secrets where `/run/secrets/…` maps for `app run`.
fn materialise_secrets(ctx: &Ctx, stack: &Stack) -> Result<()> {
    let sname = stack_name(&stack.domain);
    for svc in &stack.services {
        let dir = container_dir(ctx, &sname, &svc.name).join("run/secrets");
        fs::create_dir_all(&dir)?;
        for (remote, target) in &svc.secret_mounts {
            let Some(rel) = target.strip_prefix("/run/secrets/") else {
                continue;
            };
            let value = fs::read(ctx.swarm.secret_path(remote))
                .with_context(|| format!("reading secret {remote}"))?;
            fs::write(dir.join(rel), value)?;
        }
    }
    Ok(())
}

/// Starts the service process; returns (pid, start time, port).
fn start_service(
    ctx: &Ctx,
    stack: &str,
    svc: &Service,
    prefer_port: Option<u16>,
    never_converges: bool,
) -> Result<(u32, Option<u64>, u16)> {
    let cdir = container_dir(ctx, stack, &svc.name);
    fs::create_dir_all(&cdir)?;
    let port_file = cdir.join("port");
    let _ = fs::remove_file(&port_file);
    let root = svc
        .mounts
        .iter()
        .find(|(_, t)| t.trim_end_matches('/') == "/usr/share/nginx/html")
        .or_else(|| svc.mounts.first())
        .map(|(v, _)| ctx.swarm.volume_dir(v));
    let (name, tag) = svc.image.split_once(':').unwrap_or((&svc.image, "latest"));
    let base = name.rsplit('/').next().unwrap_or(name);
    let header = if base == "nginx" {
        format!("nginx/{tag}")
    } else {
        format!("standin ({})", svc.image)
    };
    let log = fs::File::create(ctx.swarm.log_path(stack, &svc.name))?;
    let exe = std::env::current_exe().context("locating the abra binary")?;
    let mut cmd = Command::new(exe);
    cmd.arg(super::serve::MODE)
        .arg("--port-file")
        .arg(&port_file)
        .arg("--watch-dir")
        .arg(&ctx.swarm.dir)
        .arg("--server-header")
        .arg(&header);
    if let Some(r) = &root {
        cmd.arg("--root").arg(r);
    }
    if let Some(pp) = prefer_port {
        cmd.arg("--prefer-port").arg(pp.to_string());
    }
    if never_converges {
        cmd.arg("--no-listen");
    }
    use std::os::unix::process::CommandExt;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Its own process group: a Ctrl-C or a runner killing abra's group does not take the
        // "container" down, as killing the docker CLI leaves containers running.
        .process_group(0)
        .spawn()
        .context("spawning the service process")?;
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(text) = fs::read_to_string(&port_file) {
            if let Ok(port) = text.trim().parse::<u16>() {
                return Ok((pid, swarm::proc_start_time(pid), port));
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            bail!("service process exited at start ({status})");
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            bail!("service process did not publish its port within 10s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Any HTTP answer on `/` counts as converged.
fn http_answers(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(300),
    ) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 12];
    matches!(s.read(&mut buf), Ok(n) if n >= 5 && buf.starts_with(b"HTTP/"))
}

// ---------------------------------------------------------------------------------------------
// backups (backupbot labels, [SPEC] https://docs.coopcloud.tech/specs/backup/spec)

/// Per volume, the paths (relative to the volume root; empty = everything) to back up.
type BackupPlan = BTreeMap<String, Vec<String>>;

fn backup_plan(compose: &recipe::Compose, stack: &str) -> BackupPlan {
    let mut plan = BackupPlan::new();
    for svc in compose.services.values() {
        if svc.labels.get("backupbot.backup").map(String::as_str) != Some("true") {
            continue;
        }
        for (vol, target) in &svc.volumes {
            let remote = format!("{stack}_{vol}");
            if svc
                .labels
                .get(&format!("backupbot.backup.volumes.{vol}"))
                .is_some_and(|v| v == "false")
            {
                continue;
            }
            let mut paths = Vec::new();
            if let Some(ps) = svc
                .labels
                .get(&format!("backupbot.backup.volumes.{vol}.path"))
            {
                paths.extend(
                    ps.split(',')
                        .map(|p| p.trim().trim_start_matches('/').to_owned()),
                );
            } else if let Some(ps) = svc.labels.get("backupbot.backup.path") {
                // The older label names container paths; keep those inside this mount.
                let t = target.trim_end_matches('/');
                for p in ps.split(',').map(str::trim) {
                    if let Some(rel) = p.strip_prefix(t) {
                        paths.push(rel.trim_start_matches('/').to_owned());
                    }
                }
                if paths.is_empty() {
                    continue;
                }
            } else {
                paths.push(String::new());
            }
            plan.insert(remote, paths);
        }
    }
    plan
}

fn require_deployed(ctx: &Ctx, app: &App) -> Result<Stack> {
    ctx.swarm
        .load()?
        .stacks
        .get(&app.stack)
        .cloned()
        .ok_or_else(|| anyhow!("{} is not deployed?", app.domain))
}

fn copy_path(src: &Path, dest: &Path) -> Result<()> {
    if src.is_dir() {
        super::catalogue::copy_tree(src, dest)
    } else if src.is_file() {
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::copy(src, dest)
            .map(|_| ())
            .with_context(|| format!("copying {}", src.display()))
    } else {
        Ok(())
    }
}

const BACKUP: &str = "abra app backup create";

fn app_backup_create(ctx: &Ctx, args: &[String]) -> Result<i32> {
    let Some(p) = parse(BACKUP, args, &[])? else {
        return Ok(0);
    };
    want_args(BACKUP, &p, 1, 1)?;
    let app = find_app(ctx, &p.positional[0])?;
    let _lock = ctx.swarm.lock()?;
    require_deployed(ctx, &app)?;
    let plan: BackupPlan = fs::read(
        ctx.swarm
            .backups_dir(&app.stack)
            .with_extension("plan.json"),
    )
    .ok()
    .and_then(|b| serde_json::from_slice(&b).ok())
    .unwrap_or_default();
    if plan.is_empty() {
        bail!(
            "no backup configured for {} (no backupbot.backup=true service)",
            app.domain
        );
    }
    if ctx.swarm.fault("backup-fails") {
        bail!("backup failed: restic: Fatal: unable to save snapshot: stand-in fault backup-fails");
    }
    let id = format!(
        "{:013}-{}",
        now_ms(),
        random_bytes(4)?
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let snap = ctx.swarm.backups_dir(&app.stack).join(&id);
    for (vol, paths) in &plan {
        let vdir = ctx.swarm.volume_dir(vol);
        for rel in paths {
            copy_path(&vdir.join(rel), &snap.join(vol).join(rel))?;
        }
        fs::create_dir_all(snap.join(vol))?;
    }
    fs::write(snap.join("plan.json"), serde_json::to_vec_pretty(&plan)?)?;
    eprintln!("INFO snapshot {id} saved for {}", app.domain);
    println!("backup finished");
    Ok(0)
}

const RESTORE: &str = "abra app restore";

fn app_restore(ctx: &Ctx, args: &[String]) -> Result<i32> {
    let Some(p) = parse(RESTORE, args, &[])? else {
        return Ok(0);
    };
    want_args(RESTORE, &p, 1, 1)?;
    let app = find_app(ctx, &p.positional[0])?;
    let _lock = ctx.swarm.lock()?;
    require_deployed(ctx, &app)?;
    if ctx.swarm.fault("restore-fails") {
        bail!("restore failed: restic: Fatal: unable to restore snapshot: stand-in fault restore-fails");
    }
    // The latest snapshot wins ([CCCI] commit 16c9241: restore "picks the global LATEST").
    let bdir = ctx.swarm.backups_dir(&app.stack);
    let latest = fs::read_dir(&bdir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .max()
        })
        .ok()
        .flatten()
        .ok_or_else(|| anyhow!("no snapshots found for {}", app.domain))?;
    let snap = bdir.join(&latest);
    let plan: BackupPlan = serde_json::from_slice(&fs::read(snap.join("plan.json"))?)?;
    // restic restore writes the snapshot's files back; files created since stay.
    for (vol, paths) in &plan {
        let vdir = ctx.swarm.volume_dir(vol);
        fs::create_dir_all(&vdir)?;
        for rel in paths {
            copy_path(&snap.join(vol).join(rel), &vdir.join(rel))?;
        }
    }
    eprintln!("INFO restored snapshot {latest} for {}", app.domain);
    println!("restore finished");
    Ok(0)
}

// ---------------------------------------------------------------------------------------------
// undeploy, volumes

const UNDEPLOY: &str = "abra app undeploy";

fn app_undeploy(ctx: &Ctx, args: &[String]) -> Result<i32> {
    let spec = [flag("prune", Some('p'))];
    let Some(p) = parse(UNDEPLOY, args, &spec)? else {
        return Ok(0);
    };
    want_args(UNDEPLOY, &p, 1, 1)?;
    let app = find_app(ctx, &p.positional[0])?;
    let _lock = ctx.swarm.lock()?;
    let mut state = ctx.swarm.load()?;
    let stack = state
        .stacks
        .remove(&app.stack)
        .ok_or_else(|| anyhow!("{} is not deployed?", app.domain))?;
    for s in &stack.services {
        if let Some(pid) = s.pid {
            swarm::stop_process(pid, s.start_time);
        }
    }
    ctx.swarm.save(&state)?;
    // Volumes stay ([LLAMENOS]: "Stop and remove the app (data preserved)").
    println!("{} undeployed", app.domain);
    Ok(0)
}

const VOLUME_REMOVE: &str = "abra app volume remove";

fn app_volume_remove(ctx: &Ctx, args: &[String]) -> Result<i32> {
    let spec = [flag("force", Some('f'))];
    let Some(p) = parse(VOLUME_REMOVE, args, &spec)? else {
        return Ok(0);
    };
    want_args(VOLUME_REMOVE, &p, 1, 1)?;
    let app = find_app(ctx, &p.positional[0])?;
    let _lock = ctx.swarm.lock()?;
    let state = ctx.swarm.load()?;
    let volumes = ctx.swarm.stack_volumes(&app.stack)?;
    if volumes.is_empty() {
        eprintln!("WARN no volumes created for {}", app.domain);
        return Ok(0);
    }
    if !p.on("force") {
        bail!("unable to prompt for the volumes to remove: no TTY (pass --force to remove all)");
    }
    if let Some(stack) = state.stacks.get(&app.stack) {
        // moby daemon/volumes: "remove <name>: volume is in use - [<container ids>]".
        let ids: Vec<String> = stack
            .services
            .iter()
            .filter(|s| s.mounts.iter().any(|(v, _)| *v == volumes[0]))
            .map(|s| format!("{:012x}", s.pid.unwrap_or(0)))
            .collect();
        bail!(
            "removing volume {v} failed: Error response from daemon: remove {v}: volume is in use - [{}]",
            ids.join(", "),
            v = volumes[0]
        );
    }
    for v in &volumes {
        fs::remove_dir_all(ctx.swarm.volume_dir(v))
            .with_context(|| format!("removing volume {v}"))?;
        eprintln!("INFO volume {v} removed");
    }
    Ok(0)
}

// ---------------------------------------------------------------------------------------------
// ls, ps, run

const LS: &str = "abra app ls";

fn app_ls(ctx: &Ctx, args: &[String]) -> Result<i32> {
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
    let state = ctx.swarm.load()?;
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
                let st = state.stacks.get(&app.stack);
                let label = |k: &str| {
                    st.and_then(|s| s.labels.get(&format!("coop-cloud.{}.{k}", app.stack)))
                        .cloned()
                };
                let status = if st.is_some() { "deployed" } else { "unknown" };
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

/// A service's live state: the process is gone → `failed`/`shutdown`; alive but not
/// answering → `starting` (a healthcheck still in start period); else `running`.
fn live_state(s: &Service) -> &'static str {
    match s.pid {
        None if s.state == "failed" => "failed",
        None => "shutdown",
        Some(pid) if !swarm::pid_alive(pid, s.start_time) => "failed",
        Some(_) if s.port.is_some_and(http_answers) => "running",
        Some(_) => "starting",
    }
}

const PS: &str = "abra app ps";

fn app_ps(ctx: &Ctx, args: &[String]) -> Result<i32> {
    let spec = [flag("machine", Some('m'))];
    let Some(p) = parse(PS, args, &spec)? else {
        return Ok(0);
    };
    want_args(PS, &p, 1, 1)?;
    let app = find_app(ctx, &p.positional[0])?;
    let stack = require_deployed(ctx, &app)?;
    let version = stack
        .labels
        .get(&format!("coop-cloud.{}.version", app.stack))
        .cloned()
        .unwrap_or_default();
    let chaos_version = stack
        .labels
        .get(&format!("coop-cloud.{}.chaos-version", app.stack))
        .cloned();
    let mut rows = Vec::new();
    let mut items = Vec::new();
    for s in &stack.services {
        let state = live_state(s);
        rows.push(vec![
            format!("{}_{}", app.stack, s.name),
            s.image.clone(),
            state.to_owned(),
            version.clone(),
            s.port.map(|p| p.to_string()).unwrap_or_default(),
        ]);
        items.push(json!({
            "service": s.name, "name": format!("{}_{}", app.stack, s.name), "image": s.image,
            "state": state, "version": version, "chaosVersion": chaos_version,
            // Stand-in addition: where the service answers on this machine.
            "standinPort": s.port,
        }));
    }
    if p.on("machine") {
        println!("{}", serde_json::Value::Array(items));
    } else {
        // PORT is a stand-in addition (the service's 127.0.0.1 port).
        print!(
            "{}",
            table(
                &["SERVICE", "IMAGE", "STATE", "VERSION", "PORT (stand-in)"],
                &rows
            )
        );
    }
    Ok(0)
}

const RUN: &str = "abra app run";

fn app_run(ctx: &Ctx, args: &[String]) -> Result<i32> {
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
    let svc_name = &p.positional[1];
    let mut cmd_args: Vec<String> = p.positional[2..].to_vec();
    cmd_args.extend(p.after_dashes.iter().cloned());
    if cmd_args.is_empty() {
        return Err(usage(RUN, "no command to run"));
    }
    let stack = require_deployed(ctx, &app)?;
    let svc = stack
        .services
        .iter()
        .find(|s| {
            &s.name == svc_name && s.pid.is_some_and(|pid| swarm::pid_alive(pid, s.start_time))
        })
        .ok_or_else(|| {
            anyhow!(
                "no containers matching the {}_{svc_name} service",
                app.stack
            )
        })?;
    // Container paths → host dirs, longest first so nested mounts win.
    let mut map: Vec<(String, PathBuf)> = svc
        .mounts
        .iter()
        .map(|(v, t)| (t.trim_end_matches('/').to_owned(), ctx.swarm.volume_dir(v)))
        .collect();
    map.push((
        "/run/secrets".into(),
        container_dir(ctx, &app.stack, &svc.name).join("run/secrets"),
    ));
    map.sort_by_key(|(t, _)| std::cmp::Reverse(t.len()));
    let rewrite = |a: &str| {
        let mut a = a.to_owned();
        for (t, host) in &map {
            a = a.replace(t.as_str(), &host.to_string_lossy());
        }
        a
    };
    let mapped: Vec<String> = cmd_args.iter().map(|a| rewrite(a)).collect();
    let mut cmd = Command::new(&mapped[0]);
    cmd.args(&mapped[1..]).envs(&svc.env);
    for (v, t) in &svc.mounts {
        let key = v
            .strip_prefix(&format!("{}_", app.stack))
            .unwrap_or(v)
            .to_uppercase()
            .replace(['-', '.'], "_");
        cmd.env(format!("STANDIN_VOLUME_{key}"), ctx.swarm.volume_dir(v));
        let _ = t;
    }
    if let Some((v, _)) = svc.mounts.first() {
        cmd.current_dir(ctx.swarm.volume_dir(v));
    }
    let status = cmd
        .status()
        .with_context(|| format!("running {} in {}_{svc_name}", cmd_args[0], app.stack))?;
    Ok(status.code().unwrap_or(1))
}

// ---------------------------------------------------------------------------------------------
// recipe fetch, server add

const FETCH: &str = "abra recipe fetch";

fn recipe_fetch(ctx: &Ctx, args: &[String]) -> Result<i32> {
    let Some(p) = parse(FETCH, args, &[])? else {
        return Ok(0);
    };
    want_args(FETCH, &p, 1, 1)?;
    fetch_recipe(ctx, &p.positional[0])?;
    eprintln!("INFO fetched {}", p.positional[0]);
    Ok(0)
}

const SERVER_ADD: &str = "abra server add";

fn server_add(ctx: &Ctx, args: &[String]) -> Result<i32> {
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
