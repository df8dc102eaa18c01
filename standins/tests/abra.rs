//! Drives the stand-in `abra` binary end to end against the real engine and the real Traefik
//! (`dev/engine`, `dev/images`, `dev/proxy`): app lifecycle, the rules abra and Docker
//! enforce, upgrades, failed deploys, backups, fault knobs. Each world deploys under a base
//! domain of its own and leaves nothing on the engine; `docker` is the witness. Quirk tests
//! cite their source: the keys docs/fidelity.md lists under "Sources of the stand-in abra"
//! ([SEC], [MH], [CCCI] …), or upstream files.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use standins::abra::catalogue;
use standins::ground::{self, Ground};

const ABRA: &str = env!("CARGO_BIN_EXE_abra");
/// No abra call in these tests should take longer (the slowest is a bounded converge wait).
const CALL_LIMIT: Duration = Duration::from_secs(150);

static SEQ: AtomicU32 = AtomicU32::new(0);

/// One isolated world: `$ABRA_DIR`, a catalogue, a fault file and a base domain of its own on
/// the shared engine. Dropping it removes every app it made from the engine, even when the
/// test failed.
struct World {
    root: PathBuf,
    abra_dir: PathBuf,
    catalogue: PathBuf,
    faults: PathBuf,
    ground: Ground,
    base: String,
    /// Other `ABRA_DIR`s used on the same engine (concurrent runs).
    more: std::sync::Mutex<Vec<PathBuf>>,
}

impl Drop for World {
    fn drop(&mut self) {
        standins::abra::app::purge(&self.abra_dir);
        for d in self.more.lock().unwrap().iter() {
            standins::abra::app::purge(d);
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

struct Http {
    status: u16,
    headers: String,
    body: Vec<u8>,
}

impl Http {
    fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }
}

impl World {
    fn new() -> World {
        let root = std::env::temp_dir().join(format!(
            "standin-abra-test-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let ground = Ground::from_env().unwrap();
        let w = World {
            abra_dir: root.join("abra"),
            catalogue: root.join("catalogue"),
            faults: root.join("faults"),
            base: ground.world_domain(),
            ground,
            root,
            more: Default::default(),
        };
        catalogue::build(&catalogue::source_dir(), &w.catalogue).unwrap();
        w.ok(&["server", "add", "--local"]);
        w
    }

    /// An app domain of this world.
    fn d(&self, name: &str) -> String {
        format!("{name}.{}", self.base)
    }

    fn spawn_in(&self, abra_dir: &Path, args: &[&str], stdin: Stdio) -> std::process::Child {
        Command::new(ABRA)
            .args(args)
            .env("ABRA_DIR", abra_dir)
            .env("DOCKER_HOST", &self.ground.docker_host)
            .env("STANDIN_ABRA_CATALOGUE", &self.catalogue)
            .env("STANDIN_ABRA_FAULT_FILE", &self.faults)
            .env_remove("STANDIN_ABRA_FAULT")
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_in(&self.abra_dir, args)
    }

    /// Runs abra with a bounded wait.
    fn run_in(&self, abra_dir: &Path, args: &[&str]) -> Output {
        let child = self.spawn_in(abra_dir, args, Stdio::null());
        wait_output(child, args)
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "abra {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Asserts exit 1 and returns stderr.
    fn fail(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(1),
            "abra {args:?} should fail: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stderr).unwrap()
    }

    fn ps(&self, domain: &str) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["app", "ps", domain, "-m"])).unwrap()
    }

    fn recipe_dir(&self) -> PathBuf {
        self.abra_dir.join("recipes/custom-html")
    }

    fn env_file(&self, domain: &str) -> PathBuf {
        self.abra_dir.join(format!("servers/default/{domain}.env"))
    }

    fn set_env(&self, domain: &str, from: &str, to: &str) {
        let p = self.env_file(domain);
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains(from), "{from} in {text}");
        std::fs::write(&p, text.replace(from, to)).unwrap();
    }

    /// Edits the checked-out recipe's compose.yml (a chaos deploy takes the worktree).
    fn edit_compose(&self, from: &str, to: &str) {
        let p = self.recipe_dir().join("compose.yml");
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains(from), "{from} in compose.yml");
        std::fs::write(&p, text.replacen(from, to, 1)).unwrap();
    }

    fn set_faults(&self, lines: &str) {
        std::fs::write(&self.faults, lines).unwrap();
    }

    /// new -S + deploy.
    fn install(&self, domain: &str, version: Option<&str>) {
        let mut args = vec!["app", "new", "custom-html"];
        if let Some(v) = version {
            args.push(v);
        }
        args.extend(["--server", "default", "--domain", domain, "-S"]);
        self.ok(&args);
        self.ok(&["app", "deploy", domain]);
    }

    /// `app run` of a shell command in the app service; its stdout.
    fn sh(&self, domain: &str, script: &str) -> String {
        self.ok(&["app", "run", domain, "app", "--", "sh", "-c", script])
    }

    /// Everything this world's apps left on the engine.
    fn leftovers(&self) -> Vec<String> {
        ground::leftovers(&self.base)
    }
}

fn wait_output(mut child: std::process::Child, args: &[&str]) -> Output {
    let deadline = Instant::now() + CALL_LIMIT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("abra {args:?} did not finish within {CALL_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

/// GET through the real Traefik on 127.0.0.1:443, by name (SNI and Host), as a browser would.
fn get(domain: &str, path: &str) -> Http {
    let out = Command::new("curl")
        .args(["-s", "-k", "-i", "--max-time", "10", "--resolve"])
        .arg(format!("{domain}:443:127.0.0.1"))
        .arg(format!("https://{domain}{path}"))
        .output()
        .unwrap();
    let raw = out.stdout;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(raw.len());
    let headers = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = headers
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Http {
        status,
        headers,
        body: raw.get(split + 4..).unwrap_or_default().to_vec(),
    }
}

/// Traefik's swarm provider picks a converged service up within its refresh (2 s).
fn routed(domain: &str) -> Http {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = get(domain, "/");
        if r.status == 200 || Instant::now() > deadline {
            return r;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn containers(stack: &str) -> usize {
    let out = Command::new("docker")
        .args(["ps", "-aq", "--filter"])
        .arg(format!("label=com.docker.stack.namespace={stack}"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).lines().count()
}

#[test]
fn lifecycle_serves_the_volume_through_traefik_and_keeps_data_across_undeploy() {
    let w = World::new();
    let d = w.d("html");
    let stack = d.replace('.', "_");
    w.install(&d, None);

    // The image's own page, copied into the empty volume on first start by docker; the
    // latest release = nginx 1.27.2 ([HB-ver] version kinds).
    let r = routed(&d);
    assert_eq!(r.status, 200, "{}", r.headers);
    assert!(String::from_utf8_lossy(&r.body).contains("Welcome to nginx!"));
    assert!(r.header("Server").unwrap_or_default().starts_with("nginx"));
    assert!(r.header("Content-Type").unwrap().starts_with("text/html"));
    assert_eq!(get(&d, "/missing.html").status, 404);
    let ps = w.ps(&d);
    assert_eq!(ps[0]["state"], "running", "{ps}");
    assert_eq!(ps[0]["image"], "nginx:1.27.2");
    assert_eq!(ps[0]["version"], "1.1.0+1.27.2");

    // A file written inside the container is served byte-exact, with the type its extension
    // implies ([CCCI] tests/custom-html PARITY.md data check).
    w.sh(
        &d,
        "printf 'marker 42\\n' > /usr/share/nginx/html/marker.txt",
    );
    let r = get(&d, "/marker.txt");
    assert_eq!(r.body, b"marker 42\n");
    assert!(r.header("Content-Type").unwrap().starts_with("text/plain"));
    // The command's exit code is the caller's, and stdin reaches it.
    assert_eq!(
        w.run(&["app", "run", &d, "app", "--", "sh", "-c", "exit 3"])
            .status
            .code(),
        Some(3)
    );
    let mut child = w.spawn_in(
        &w.abra_dir,
        &[
            "app",
            "run",
            &d,
            "app",
            "--",
            "sh",
            "-c",
            "cat > /usr/share/nginx/html/in.txt",
        ],
        Stdio::piped(),
    );
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"from stdin\n")
        .unwrap();
    assert!(wait_output(child, &["app", "run"]).status.success());
    assert_eq!(get(&d, "/in.txt").body, b"from stdin\n");

    // Already deployed: refused without --force ([BON] README "abra app deploy --force"; [LORES]).
    assert!(w.fail(&["app", "deploy", &d]).contains("already deployed"));

    // Volume removal while deployed: the engine's own refusal.
    let err = w.fail(&["app", "volume", "remove", &d, "--force"]);
    assert!(err.contains("volume is in use"), "{err}");

    // Undeploy waits until the containers are gone, and keeps the volume ([LLAMENOS] "data
    // preserved").
    w.ok(&["app", "undeploy", &d]);
    assert_eq!(containers(&stack), 0);
    assert_eq!(get(&d, "/").status, 404, "Traefik no longer routes it");
    assert!(w.fail(&["app", "ps", &d]).contains("not deployed"));
    w.ok(&["app", "deploy", &d]);
    routed(&d);
    assert_eq!(get(&d, "/marker.txt").body, b"marker 42\n");
    w.ok(&["app", "undeploy", &d]);
    w.ok(&["app", "volume", "remove", &d, "-f"]);
    w.ok(&["app", "secret", "remove", &d, "--all"]);
    assert_eq!(w.leftovers(), Vec::<String>::new());
}

#[test]
fn secrets_follow_docker_rules() {
    let w = World::new();
    let d = w.d("sec");
    let stack = d.replace('.', "_");
    w.ok(&[
        "app",
        "new",
        "custom-html",
        "--server",
        "default",
        "--domain",
        &d,
    ]);

    // Without the secret the .env names, docker stack deploy fails.
    let err = w.fail(&["app", "deploy", &d]);
    assert!(
        err.contains(&format!("secret not found: {stack}_admin_password_v1")),
        "{err}"
    );

    // Insert inline, then again: a version that exists cannot be inserted again
    // ([SEC] "secret … already exists"; the engine's AlreadyExists).
    w.ok(&[
        "app",
        "secret",
        "insert",
        &d,
        "admin_password",
        "v1",
        "s3cret-value",
    ]);
    let err = w.fail(&[
        "app",
        "secret",
        "insert",
        &d,
        "admin_password",
        "v1",
        "other",
    ]);
    assert!(
        err.contains(&format!("secret {stack}_admin_password_v1 already exists")),
        "{err}"
    );
    assert!(!err.contains("s3cret-value") && !err.contains("other"));

    // From a file with -f ([LORES] `… pi_local.crt -f`); generate at an explicit version, -m
    // as JSON with the `# length=32` modifier honoured.
    let f = w.root.join("value.txt");
    std::fs::write(&f, "from-file").unwrap();
    w.ok(&[
        "app",
        "secret",
        "insert",
        &d,
        "admin_password",
        "v2",
        f.to_str().unwrap(),
        "-f",
    ]);
    let out = w.ok(&[
        "app",
        "secret",
        "generate",
        &d,
        "admin_password",
        "v3",
        "-m",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["name"], "admin_password");
    assert_eq!(v[0]["value"].as_str().unwrap().len(), 32);

    // The deploy mounts the version the .env names.
    w.ok(&["app", "deploy", &d]);
    assert_eq!(w.sh(&d, "cat /run/secrets/admin_password"), "s3cret-value");
    w.set_env(
        &d,
        "SECRET_ADMIN_PASSWORD_VERSION=v1",
        "SECRET_ADMIN_PASSWORD_VERSION=v2",
    );
    w.ok(&["app", "deploy", &d, "--force"]);
    assert_eq!(w.sh(&d, "cat /run/secrets/admin_password"), "from-file");

    // In use by a deployed service: the engine refuses the removal.
    let err = w.fail(&["app", "secret", "remove", &d, "admin_password"]);
    assert!(err.contains("in use by the following service"), "{err}");
    w.ok(&["app", "undeploy", &d]);
    w.ok(&["app", "secret", "remove", &d, "--all"]);
    w.ok(&["app", "volume", "remove", &d, "-f"]);
    assert_eq!(w.leftovers(), Vec::<String>::new());
}

#[test]
fn long_domain_breaks_dockers_64_char_secret_name_limit() {
    // Swarm caps secret names at 64 chars, stack prefix included (moby/swarmkit#2918).
    let w = World::new();
    let fits = |d: &str| d.len() + "_admin_password_v1".len() <= 64;
    let room = 64 - "_admin_password_v1".len() - w.base.len() - 1;
    let d = w.d(&"a".repeat(room));
    assert!(fits(&d));
    w.ok(&[
        "app",
        "new",
        "custom-html",
        "--server",
        "default",
        "--domain",
        &d,
        "-S",
    ]);
    let d = w.d(&"b".repeat(room + 1));
    assert!(!fits(&d));
    let err = w.fail(&[
        "app",
        "new",
        "custom-html",
        "--server",
        "default",
        "--domain",
        &d,
        "-S",
    ]);
    assert!(
        err.contains("invalid name, only 64 [a-zA-Z0-9-_.] characters allowed"),
        "{err}"
    );
    w.ok(&["app", "secret", "remove", &w.d(&"a".repeat(room)), "--all"]);
    assert_eq!(w.leftovers(), Vec::<String>::new());
}

#[test]
fn app_new_secrets_table_prints_values_once() {
    let w = World::new();
    let d = w.d("t");
    let out = w.ok(&[
        "app",
        "new",
        "custom-html",
        "--server=default",
        &format!("--domain={d}"),
        "-S",
    ]);
    let env = std::fs::read_to_string(w.env_file(&d)).unwrap();
    assert!(env.contains("TYPE=custom-html:1.1.0+1.27.2\n"), "{env}");
    assert!(env.contains(&format!("DOMAIN={d}\n")));
    // Deploy does not print secret values; real abra shows generated ones in a table at
    // creation ([CCCI] BACKLOG.md M5), so callers must redact.
    let deploy = w.run(&["app", "deploy", &d]);
    assert!(deploy.status.success());
    let value = w.sh(&d, "cat /run/secrets/admin_password");
    assert_eq!(value.len(), 32);
    assert!(
        out.contains("admin_password") && out.contains(&value),
        "{out}"
    );
    assert!(!String::from_utf8_lossy(&deploy.stdout).contains(&value));
    assert!(!String::from_utf8_lossy(&deploy.stderr).contains(&value));
}

fn git(dir: &Path, args: &[&str]) -> String {
    let o = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap().trim().to_owned()
}

#[test]
fn dirty_checkout_refused_unless_chaos_and_chaos_deploys_the_worktree() {
    let w = World::new();
    let d = w.d("dirty");
    w.install(&d, Some("1.0.0+1.25.0"));
    assert_eq!(w.ps(&d)[0]["image"], "nginx:1.25.0");
    // An untracked file is enough ([CCCI] tests/ history: "FATAs 'has locally unstaged changes'"
    // even for untracked files; [MH] "abra will not deploy unstaged changes").
    std::fs::write(w.recipe_dir().join("notes.txt"), "wip").unwrap();
    let err = w.fail(&["app", "deploy", &d, "--force"]);
    assert!(err.contains("has locally unstaged changes"), "{err}");
    std::fs::remove_file(w.recipe_dir().join("notes.txt")).unwrap();

    // The CI pattern ([CCCI] docs/testing.md HC1): check out another commit, `deploy --force
    // --chaos`: what is checked out runs; chaos-version = SmallSHA(HEAD) (+U when dirty,
    // [CCCI] JOURNAL-dstamp.md); the version label keeps the published version; the .env pin
    // is left alone.
    git(&w.recipe_dir(), &["checkout", "-q", "-f", "1.1.0+1.27.2"]);
    let sha = git(&w.recipe_dir(), &["rev-parse", "HEAD"]);
    std::fs::write(w.recipe_dir().join("notes.txt"), "wip").unwrap();
    w.ok(&["app", "deploy", "--force", "--chaos", &d]);
    let ps = w.ps(&d);
    assert_eq!(ps[0]["image"], "nginx:1.27.2");
    assert_eq!(ps[0]["chaosVersion"], format!("{}+U", &sha[..8]));
    assert_eq!(ps[0]["version"], "1.0.0+1.25.0");
    let env = std::fs::read_to_string(w.env_file(&d)).unwrap();
    assert!(env.contains("TYPE=custom-html:1.0.0+1.25.0"));
    assert_eq!(routed(&d).status, 200);
}

#[test]
fn an_upgrade_keeps_the_volume() {
    let w = World::new();
    let d = w.d("up");
    w.install(&d, Some("1.0.0+1.25.0"));
    assert_eq!(w.ps(&d)[0]["version"], "1.0.0+1.25.0");
    w.sh(&d, "echo kept > /usr/share/nginx/html/data.html");
    w.ok(&["app", "deploy", &d, "1.1.0+1.27.2", "--force"]);
    let ps = w.ps(&d);
    assert_eq!(ps[0]["image"], "nginx:1.27.2");
    assert_eq!(ps[0]["version"], "1.1.0+1.27.2");
    assert_eq!(get(&d, "/data.html").body, b"kept\n");
    let env = std::fs::read_to_string(w.env_file(&d)).unwrap();
    assert!(env.contains("TYPE=custom-html:1.1.0+1.27.2"), "{env}");
    assert!(w
        .fail(&["app", "deploy", &d, "9.9.9+1.0.0", "-f"])
        .contains("not a published version"));
}

#[test]
fn a_deploy_that_does_not_converge_fails_with_the_engine_s_reason() {
    let w = World::new();
    // A missing image: the tasks are rejected; abra waits out the recipe's timeout label (fed
    // by TIMEOUT in the .env, [CCCI] commit fb20321) and says why.
    let d = w.d("noimg");
    w.ok(&[
        "app",
        "new",
        "custom-html",
        "--server",
        "default",
        "--domain",
        &d,
        "-S",
    ]);
    w.set_env(&d, "#TIMEOUT=120", "TIMEOUT=4");
    w.edit_compose("image: nginx:1.27.2", "image: nginx:9.9.9");
    let t = Instant::now();
    let err = w.fail(&["app", "deploy", &d, "--chaos"]);
    assert!(err.contains("deploy timed out"), "{err}");
    assert!(err.contains("No such image: nginx:9.9.9"), "{err}");
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
    // -c skips the monitor ([CCCI] commit 7dab4f5: `-c` = `--no-converge-checks`).
    w.ok(&["app", "deploy", &d, "--chaos", "--force", "-c"]);
    assert_ne!(w.ps(&d)[0]["state"], "running");

    // An upgrade whose healthcheck never passes: swarm rolls the update back, the old task
    // goes on serving — and abra calls the deploy failed, not done.
    git(&w.recipe_dir(), &["checkout", "-q", "-f", "1.1.0+1.27.2"]);
    let d = w.d("rollback");
    w.install(&d, None);
    w.sh(&d, "echo old > /usr/share/nginx/html/v.txt");
    w.edit_compose("\"curl\", \"-f\", \"http://localhost\"]", "\"false\"]");
    w.edit_compose("retries: 10", "retries: 1");
    w.edit_compose("start_period: 1m", "start_period: 0s");
    let err = w.fail(&["app", "deploy", &d, "--force", "--chaos"]);
    assert!(
        err.contains("deploy failed") && err.contains("rolled back"),
        "{err}"
    );
    // abra returns once swarm says `rollback_completed`; on a loaded machine the task swarm
    // runs the old spec in can still be `ready` or `starting` then.
    let deadline = Instant::now() + Duration::from_secs(60);
    let ps = loop {
        let ps = w.ps(&d);
        if ps[0]["state"] == "running" || Instant::now() > deadline {
            break ps;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(ps[0]["state"], "running", "{ps}");
    assert_eq!(
        get(&d, "/v.txt").body,
        b"old\n",
        "the old version serves the same volume"
    );
    assert!(
        ps[0]["chaosVersion"].is_null(),
        "the rollback restored the old spec: {ps}"
    );
}

#[test]
fn backup_runs_the_hooks_and_restore_brings_the_latest_snapshot_back() {
    // backupbot labels: `backupbot.backup=true` + `backupbot.backup.path`, pre/post hooks run in
    // the service's container ([SPEC] https://docs.coopcloud.tech/specs/backup/spec). Restore
    // takes the latest snapshot and runs the restore hooks.
    let w = World::new();
    let d = w.d("bk");
    w.ok(&[
        "app",
        "new",
        "custom-html",
        "--server",
        "default",
        "--domain",
        &d,
        "-S",
    ]);
    w.edit_compose(
        "        - \"backupbot.backup=true\"\n",
        "        - \"backupbot.backup=true\"\n        - \"backupbot.backup.pre-hook=date +%N > /usr/share/nginx/html/dump.txt\"\n        - \"backupbot.restore.post-hook=cp /usr/share/nginx/html/dump.txt /usr/share/nginx/html/restored.txt\"\n",
    );
    w.ok(&["app", "deploy", &d, "--chaos"]);
    routed(&d);
    w.sh(&d, "echo first > /usr/share/nginx/html/note.txt");
    let out = w.ok(&["app", "backup", "create", &d]);
    assert!(out.contains("backup finished"), "{out}");
    // restic's line names the snapshot.
    let id = |out: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix("snapshot ")?.strip_suffix(" saved"))
            .unwrap_or_else(|| panic!("no snapshot line in {out}"))
            .to_owned()
    };
    let first = id(&out);
    w.sh(&d, "echo second > /usr/share/nginx/html/note.txt");
    let second = id(&w.ok(&["app", "backup", "create", &d]));
    let dump = get(&d, "/dump.txt").body;
    w.sh(&d, "echo mutated > /usr/share/nginx/html/note.txt; rm /usr/share/nginx/html/index.html /usr/share/nginx/html/dump.txt");
    assert_eq!(get(&d, "/index.html").status, 404);
    assert!(w.ok(&["app", "restore", &d]).contains("restore finished"));
    assert_eq!(
        get(&d, "/note.txt").body,
        b"second\n",
        "the latest, by default"
    );
    assert_eq!(get(&d, "/index.html").status, 200);
    assert_eq!(
        get(&d, "/restored.txt").body,
        dump,
        "the post-hook ran after the files were back"
    );
    w.ok(&["app", "restore", &d, "--snapshot", &first]);
    assert_eq!(get(&d, "/note.txt").body, b"first\n", "the one asked for");

    // A download is one tar of the snapshot, under backupbot's host paths.
    let dl = w.root.join("download");
    std::fs::create_dir_all(&dl).unwrap();
    let out = Command::new(ABRA)
        .args(["app", "backup", "download", &d, "--snapshot", &first])
        .env("ABRA_DIR", &w.abra_dir)
        .env("DOCKER_HOST", &w.ground.docker_host)
        .current_dir(&dl)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let files: Vec<_> = std::fs::read_dir(&dl).unwrap().flatten().collect();
    assert_eq!(files.len(), 1);
    let listing = Command::new("tar")
        .arg("-tf")
        .arg(files[0].path())
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    let vol = format!(
        "var/lib/docker/volumes/{}_content/_data/",
        d.replace('.', "_")
    );
    assert!(listing.contains(&format!("{vol}note.txt")), "{listing}");
    assert!(w
        .fail(&["app", "backup", "download", &d, "--snapshot", "0123abcd"])
        .contains("no snapshot 0123abcd"));

    // Snapshots live in the server's repository, and go when removed.
    let repo = w.abra_dir.join("servers/default/.backupbot");
    let snaps = || std::fs::read_dir(&repo).map(|r| r.count()).unwrap_or(0);
    assert_eq!(snaps(), 2);
    w.ok(&["app", "backup", "remove", &d, "--snapshot", &second]);
    assert_eq!(snaps(), 1);
    w.ok(&["app", "backup", "remove", &d, "--snapshot", &first]);
    assert!(!repo.exists(), "an empty repository goes too");

    // backupbot's restic failing (no engine-side cause, so a knob).
    w.set_faults("backup-fails\n");
    assert!(w
        .fail(&["app", "backup", "create", &d])
        .contains("backup failed"));
    w.set_faults("restore-fails\n");
    assert!(w.fail(&["app", "restore", &d]).contains("restore failed"));
    w.set_faults("");
    // A failing hook fails the backup, and leaves no half snapshot.
    let before = snaps();
    w.edit_compose("date +%N > /usr/share/nginx/html/dump.txt", "exit 7");
    w.ok(&["app", "deploy", &d, "--chaos", "--force"]);
    let err = w.fail(&["app", "backup", "create", &d]);
    assert!(err.contains("pre-hook") && err.contains("exit 7"), "{err}");
    assert_eq!(snaps(), before);
    // backupbot works on running services.
    w.ok(&["app", "undeploy", &d]);
    assert!(w
        .fail(&["app", "backup", "create", &d])
        .contains("not deployed"));
}

#[test]
fn fault_hang_holds_the_command() {
    let w = World::new();
    w.set_faults("hang:undeploy\n");
    let mut child = w.spawn_in(
        &w.abra_dir,
        &["app", "undeploy", "x.example.com"],
        Stdio::null(),
    );
    std::thread::sleep(Duration::from_millis(700));
    assert!(
        child.try_wait().unwrap().is_none(),
        "hang:undeploy should hang"
    );
    child.kill().unwrap();
    let _ = child.wait();
    w.ok(&["app", "ps", "--help"]);
}

#[test]
fn cli_syntax_errors_like_cobra() {
    let w = World::new();
    let out = w.run(&["app", "deploy", "x.example.com", "--bogus"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("Error: unknown flag: --bogus"));
    let err = w.fail(&["app", "deploy", "-Z", "x.example.com"]);
    assert!(err.contains("unknown shorthand flag: 'Z' in -Z"), "{err}");
    // No --server/--domain: abra would prompt; there is no TTY ([KARROT] self-hosting.md).
    let err = w.fail(&["app", "new", "custom-html"]);
    assert!(err.starts_with("FATA ") && err.contains("no TTY"), "{err}");
    assert!(w
        .fail(&["app", "deploy", "nope.example.com"])
        .contains("cannot find app"));
}

#[test]
fn recipe_fetch_clones_release_tags() {
    let w = World::new();
    w.ok(&["recipe", "fetch", "custom-html"]);
    let tags = git(&w.recipe_dir(), &["tag", "--list"]);
    assert!(
        tags.contains("1.0.0+1.25.0") && tags.contains("1.1.0+1.27.2"),
        "{tags}"
    );
    assert!(w
        .fail(&["recipe", "fetch", "no-such-recipe"])
        .contains("not found"));
}

#[test]
fn concurrent_runs_with_own_abra_dirs_share_one_engine() {
    // cc-ci runs each build with its own ABRA_DIR on one Docker host ([CCCI] README: per-run
    // ABRA_DIR, shared swarm); each gets its own recipe checkout, since concurrent runs race on
    // a shared one ([CCCI]: "Shared ~/.abra/recipes/<recipe> worktree = race").
    let w = World::new();
    let runs: Vec<(String, PathBuf)> = (0..3)
        .map(|i| (w.d(&format!("c{i}")), w.root.join(format!("abra-run{i}"))))
        .collect();
    w.more
        .lock()
        .unwrap()
        .extend(runs.iter().map(|(_, p)| p.clone()));
    std::thread::scope(|s| {
        for (d, dir) in &runs {
            let w = &w;
            s.spawn(move || {
                let ok = |args: &[&str]| {
                    let out = w.run_in(dir, args);
                    assert!(
                        out.status.success(),
                        "{args:?}: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                };
                ok(&["server", "add", "--local"]);
                ok(&[
                    "app",
                    "new",
                    "custom-html",
                    "--server",
                    "default",
                    "--domain",
                    d,
                    "-S",
                ]);
                ok(&["app", "deploy", d]);
            });
        }
    });
    for (d, _) in &runs {
        assert_eq!(routed(d).status, 200, "{d}");
    }
    // Apps are per ABRA_DIR, the engine is shared: each run knows its own app only.
    let envs = std::fs::read_dir(runs[0].1.join("servers/default"))
        .unwrap()
        .count();
    assert_eq!(envs, 1);
    let other = w.run_in(&runs[0].1, &["app", "ps", &runs[1].0]);
    assert!(String::from_utf8_lossy(&other.stderr).contains("cannot find app"));
    let base = w.base.clone();
    drop(w);
    // The Drop guard removed what the test made.
    assert_eq!(ground::leftovers(&base), Vec::<String>::new());
}
