//! The abra commands: argument handling, the rules abra enforces, and their effects on
//! `$ABRA_DIR` and the Docker engine. Where a rule comes from is cited next to it; sources
//! are named by the keys docs/fidelity.md lists under "Sources of the stand-in abra" ([SEC],
//! [MH], [CCCI] …), each with its URL. The engine's behaviour is the engine's own.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::cli::{self, flag, opt, Flag, Parsed};
use super::docker;
use super::recipe::{self, EnvFile};
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
    let (path, key, run) = find_command(&words)?;
    let ctx = Ctx::from_env()?;
    if ctx.fault(&format!("hang:{key}")) {
        std::thread::sleep(HANG_FOR);
    }
    run(&ctx, &args[path..])
}

type Run = fn(&Ctx, &[String]) -> Result<i32>;

/// The commands the stand-in has: each word of the path with its aliases (the first is the
/// name), the key its `hang:` fault is named by, and what runs it.
const COMMANDS: &[(&[&[&str]], &str, Run)] = &[
    (&[APP_WORD, &["new", "n"]], "new", app_new),
    (&[APP_WORD, &["deploy", "d"]], "deploy", app_deploy),
    (&[APP_WORD, &["undeploy", "un"]], "undeploy", app_undeploy),
    (&[APP_WORD, &["ls", "list"]], "ls", app_ls),
    (&[APP_WORD, &["ps"]], "ps", app_ps),
    (&[APP_WORD, &["run"]], "run", app_run),
    (&[APP_WORD, &["cmd"]], "cmd", app_cmd),
    (&[APP_WORD, &["logs"]], "logs", app_logs),
    (&[APP_WORD, &["restore", "rs"]], "restore", app_restore),
    (
        &[APP_WORD, BACKUP_WORD, &["create", "c"]],
        "backup",
        app_backup_create,
    ),
    (
        &[APP_WORD, BACKUP_WORD, &["download", "d"]],
        "backup",
        app_backup_download,
    ),
    (
        &[APP_WORD, BACKUP_WORD, &["remove", "rm"]],
        "backup",
        app_backup_remove,
    ),
    (
        &[APP_WORD, &["volume", "vl"], &["remove", "rm"]],
        "volume",
        app_volume_remove,
    ),
    (
        &[APP_WORD, SECRET_WORD, &["generate", "g"]],
        "secret-generate",
        app_secret_generate,
    ),
    (
        &[APP_WORD, SECRET_WORD, &["insert", "i"]],
        "secret-insert",
        app_secret_insert,
    ),
    (
        &[APP_WORD, SECRET_WORD, &["remove", "rm"]],
        "secret-remove",
        app_secret_remove,
    ),
    (
        &[&["recipe", "r"], &["fetch", "f"]],
        "recipe-fetch",
        recipe_fetch,
    ),
    (
        &[&["recipe", "r"], &["lint", "l"]],
        "recipe-lint",
        recipe_lint,
    ),
    (&[&["server", "s"], &["add", "a"]], "server-add", server_add),
];
const APP_WORD: &[&str] = &["app", "a"];
const BACKUP_WORD: &[&str] = &["backup", "b"];
const SECRET_WORD: &[&str] = &["secret", "s"];

/// The command `words` name, and how many words its path took; else cobra's error for the
/// first word no command continues with.
fn find_command(words: &[&str]) -> Result<(usize, &'static str, Run)> {
    let matched = |path: &[&[&str]]| {
        path.iter()
            .zip(words)
            .take_while(|(aliases, w)| aliases.contains(w))
            .count()
    };
    if let Some((path, key, run)) = COMMANDS
        .iter()
        .find(|(path, ..)| matched(path) == path.len())
    {
        return Ok((path.len(), key, *run));
    }
    let (path, depth) = COMMANDS
        .iter()
        .map(|(path, ..)| (*path, matched(path)))
        .max_by_key(|(_, d)| *d)
        .expect("COMMANDS is not empty");
    let parent: Vec<&str> = std::iter::once("abra")
        .chain(path[..depth].iter().map(|a| a[0]))
        .collect();
    match words.get(depth) {
        Some(other) => bail!("unknown command \"{other}\" for \"{}\"", parent.join(" ")),
        None => bail!(
            "\"{}\" needs a subcommand (see abra --help)",
            parent.join(" ")
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Apps, recipes, names

/// An app as abra knows it: its `.env` under a server dir.
struct App {
    domain: String,
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
                found = Some(p);
                break;
            }
        }
    }
    let path = found.ok_or_else(|| anyhow!("cannot find app with name {domain}"))?;
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
        let generated = generate_secrets(&app, &all_secret_specs(&app))?;
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

/// Docker's secret name, `<stack>_<secret>_<version>` ([SEC]; [BON] compose.yml).
fn secret_remote(app: &App, name: &str, version: &str) -> String {
    format!("{}_{name}_{version}", app.stack)
}

/// `docker secret create NAME -`, the value on stdin (never on a command line).
fn create_secret(remote: &str, value: &[u8]) -> Result<()> {
    docker::ok_in(
        &["secret", "create", remote, "-"],
        docker::Input::Bytes(value),
    )
    .map(|_| ())
}

/// Generates and stores secrets; returns (name, value) pairs. Stops at the first Docker error.
fn generate_secrets(app: &App, specs: &[(String, String, usize)]) -> Result<Vec<(String, String)>> {
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
    let generated = generate_secrets(&app, &specs)?;
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
    create_secret(&remote, &value).with_context(|| format!("failed to insert secret {remote}"))?;
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
fn overlay_compose(stack: &str, compose: &recipe::Compose, plan: &Plan) -> String {
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
fn converge(app: &App, before: &BTreeMap<String, String>, limit: Duration) -> Result<()> {
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
                // app is left as swarm leaves it, the old version running again.
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
fn same_spec(task: &serde_json::Value, service: &serde_json::Value) -> bool {
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
fn last_error(tasks: &[docker::Task]) -> Option<String> {
    tasks
        .iter()
        .find(|t| !t.status.err.is_empty())
        .map(|t| t.status.err.clone())
}

fn chaos_plan(ctx: &Ctx, app: &App, dir: &Path) -> Result<Plan> {
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

fn require_deployed(app: &App) -> Result<Vec<docker::Service>> {
    let services = docker::services(&app.stack)?;
    if services.is_empty() {
        bail!("{} is not deployed?", app.domain);
    }
    Ok(services)
}

fn container_of(app: &App, service: &str) -> Result<String> {
    let full = format!("{}_{service}", app.stack);
    docker::running_container(&full)?
        .ok_or_else(|| anyhow!("no containers matching the {full} service"))
}

// ---------------------------------------------------------------------------------------------
// backups (backupbot labels, [SPEC] https://docs.coopcloud.tech/specs/backup/spec)

/// One tar stream of a snapshot: paths under one mount of one service.
#[derive(Debug, Serialize, Deserialize)]
struct Entry {
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
fn backup_entries(app: &App, svc: &docker::Service) -> Vec<Entry> {
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
fn hook(app: &App, svc: &docker::Service, label: &str) -> Result<()> {
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
fn repository(app: &App) -> PathBuf {
    app.env
        .path
        .parent()
        .expect("an app's env file is in its server's directory")
        .join(".backupbot")
}

/// A snapshot's record, `<repository>/<id>/snapshot.json`, beside one tar per entry.
#[derive(Debug, Serialize, Deserialize)]
struct Snapshot {
    app: String,
    entries: Vec<Entry>,
}

fn snapshot_of(repo: &Path, id: &str) -> Result<Snapshot> {
    let p = repo.join(id).join("snapshot.json");
    let bytes = fs::read(&p).map_err(|_| anyhow!("no snapshot {id} in the repository"))?;
    serde_json::from_slice(&bytes).with_context(|| format!("reading snapshot {id}"))
}

const BACKUP: &str = "abra app backup create";

fn app_backup_create(ctx: &Ctx, args: &[String]) -> Result<i32> {
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
fn one_snapshot(
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

const DOWNLOAD: &str = "abra app backup download";

/// Writes one snapshot of the app to `<app>_<id>.tar` in the working directory: every backed-up
/// file under the host path of its volume, as restic stores backupbot's paths
/// (`var/lib/docker/volumes/<volume>/_data/…`).
fn app_backup_download(ctx: &Ctx, args: &[String]) -> Result<i32> {
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

const REMOVE: &str = "abra app backup remove";

fn app_backup_remove(ctx: &Ctx, args: &[String]) -> Result<i32> {
    let Some((_, repo, id, _)) = one_snapshot(ctx, REMOVE, args)? else {
        return Ok(0);
    };
    fs::remove_dir_all(repo.join(&id))?;
    // An empty repository is no repository: the server is as it was before any backup.
    let _ = fs::remove_dir(&repo);
    println!("snapshot {id} removed");
    Ok(0)
}

const RESTORE: &str = "abra app restore";

fn app_restore(ctx: &Ctx, args: &[String]) -> Result<i32> {
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

// ---------------------------------------------------------------------------------------------
// undeploy, volumes

const UNDEPLOY: &str = "abra app undeploy";

/// How long an undeploy waits for the stack's containers to go (they hold its volumes).
const UNDEPLOY_WAIT: Duration = Duration::from_secs(120);

fn app_undeploy(ctx: &Ctx, args: &[String]) -> Result<i32> {
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
fn containers_gone(stack: &str) -> Result<()> {
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

const VOLUME_REMOVE: &str = "abra app volume remove";

fn app_volume_remove(ctx: &Ctx, args: &[String]) -> Result<i32> {
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

// ---------------------------------------------------------------------------------------------
// ls, ps, logs, run, cmd

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

const PS: &str = "abra app ps";

fn app_ps(ctx: &Ctx, args: &[String]) -> Result<i32> {
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

const LOGS: &str = "abra app logs";

fn app_logs(ctx: &Ctx, args: &[String]) -> Result<i32> {
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

const RUN: &str = "abra app run";

/// `docker exec` of `cmd` in the service's newest running container; its exit code is the
/// command's. Stdin is passed on (`-i`); there is never a TTY here.
fn exec(app: &App, service: &str, user: Option<&str>, cmd: &[String]) -> Result<i32> {
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
    let mut cmd_args: Vec<String> = p.positional[2..].to_vec();
    cmd_args.extend(p.after_dashes.iter().cloned());
    if cmd_args.is_empty() {
        return Err(usage(RUN, "no command to run"));
    }
    exec(&app, &p.positional[1], p.value("user"), &cmd_args)
}

const CMD: &str = "abra app cmd";

/// Runs a function of the recipe's `abra.sh` inside the service's container, with the
/// script's definitions loaded first ([MH]: recipe commands live in `abra.sh`).
fn app_cmd(ctx: &Ctx, args: &[String]) -> Result<i32> {
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

const LINT: &str = "abra recipe lint";

fn recipe_lint(ctx: &Ctx, args: &[String]) -> Result<i32> {
    let Some(p) = parse(LINT, args, &[])? else {
        return Ok(0);
    };
    want_args(LINT, &p, 1, 1)?;
    let name = &p.positional[0];
    let dir = ensure_recipe(ctx, name)?;
    super::lint::lint(&dir, name)
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

// ---------------------------------------------------------------------------------------------
// the teardown of last resort

/// Removes from the engine everything of every app whose `.env` is under `abra_dir`: stack,
/// containers (waited for, bounded), volumes, networks, configs and secrets. For the Drop
/// guards of tests and the local run, which must leave the shared engine as they found it
/// whatever happened to the run; best effort, errors ignored.
pub fn purge(abra_dir: &Path) {
    let Ok(servers) = fs::read_dir(abra_dir.join("servers")) else {
        return;
    };
    for server in servers.flatten() {
        let Ok(files) = fs::read_dir(server.path()) else {
            continue;
        };
        for f in files.flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            if let Some(domain) = name.strip_suffix(".env") {
                purge_stack(&stack_name(domain));
            }
        }
    }
}

fn purge_stack(stack: &str) {
    let _ = docker::call(&["stack", "rm", stack]);
    let _ = containers_gone(stack);
    for kind in ["volume", "network", "config"] {
        for id in docker::stack_objects(kind, stack).unwrap_or_default() {
            let _ = docker::call(&[kind, "rm", &id]);
        }
    }
    let prefix = format!("{stack}_");
    if let Ok(out) = docker::ok(&["secret", "ls", "--format", "{{.Name}}"]) {
        for s in docker::lines(&out) {
            if s.starts_with(&prefix) {
                let _ = docker::call(&["secret", "rm", &s]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_found_by_any_alias_and_unknown_ones_named_as_cobra_does() {
        let found = |w: &[&str]| find_command(w).map(|(n, key, _)| (n, key));
        assert_eq!(found(&["app", "deploy", "x.test"]).unwrap(), (2, "deploy"));
        assert_eq!(
            found(&["a", "s", "i", "x.test"]).unwrap(),
            (3, "secret-insert")
        );
        assert_eq!(found(&["app", "b", "d"]).unwrap(), (3, "backup"));
        let err = |w: &[&str]| find_command(w).map(|_| ()).unwrap_err().to_string();
        assert_eq!(err(&["bogus"]), "unknown command \"bogus\" for \"abra\"");
        assert_eq!(
            err(&["app", "bogus"]),
            "unknown command \"bogus\" for \"abra app\""
        );
        assert_eq!(
            err(&["app", "secret", "x"]),
            "unknown command \"x\" for \"abra app secret\""
        );
        assert!(err(&["app", "secret"]).contains("needs a subcommand"));
    }
}
