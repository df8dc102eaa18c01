//! Drives the stand-in `abra` binary end to end in temp dirs: app lifecycle with a real local
//! service process, the abra/Docker rules it must enforce, backups, upgrades and fault knobs.
//! Quirk tests cite their source: the keys docs/fidelity.md lists under
//! "Sources of the stand-in abra" ([SEC], [MH], [CCCI] …), or upstream files.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use standins::abra::{catalogue, swarm};

const ABRA: &str = env!("CARGO_BIN_EXE_abra");
/// No abra call in these tests should take longer (the slowest is a bounded converge wait).
const CALL_LIMIT: Duration = Duration::from_secs(60);

static SEQ: AtomicU32 = AtomicU32::new(0);

/// One isolated world: `$ABRA_DIR`, a swarm and a catalogue. Dropping it stops every service
/// process it started (even when the test failed) and removes the dirs.
struct World {
    root: PathBuf,
    abra_dir: PathBuf,
    swarm_dir: PathBuf,
    catalogue: PathBuf,
    fault_env: Option<String>,
}

impl Drop for World {
    fn drop(&mut self) {
        swarm::stop_all(&self.swarm_dir);
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

struct Http {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Http {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn http_get(port: u16, path: &str) -> std::io::Result<Http> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: html.example.com\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("header end");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Ok(Http {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    })
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
        let w = World {
            abra_dir: root.join("abra"),
            swarm_dir: root.join("swarm"),
            catalogue: root.join("catalogue"),
            root,
            fault_env: None,
        };
        catalogue::build(&catalogue::source_dir(), &w.catalogue).unwrap();
        w.ok(&["server", "add", "--local"]);
        w
    }

    fn spawn(&self, args: &[&str]) -> std::process::Child {
        self.spawn_in(&self.abra_dir, args)
    }

    /// Runs with another `$ABRA_DIR` on the same swarm (a second CI run on the same host).
    fn spawn_in(&self, abra_dir: &std::path::Path, args: &[&str]) -> std::process::Child {
        let mut cmd = Command::new(ABRA);
        cmd.args(args)
            .env("ABRA_DIR", abra_dir)
            .env("STANDIN_SWARM_DIR", &self.swarm_dir)
            .env("STANDIN_ABRA_CATALOGUE", &self.catalogue)
            .env_remove("STANDIN_ABRA_FAULT")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(f) = &self.fault_env {
            cmd.env("STANDIN_ABRA_FAULT", f);
        }
        cmd.spawn().unwrap()
    }

    /// Runs abra with a bounded wait.
    fn run(&self, args: &[&str]) -> Output {
        self.run_in(&self.abra_dir, args)
    }

    fn run_in(&self, abra_dir: &std::path::Path, args: &[&str]) -> Output {
        let mut child = self.spawn_in(abra_dir, args);
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

    fn port(&self, domain: &str) -> u16 {
        self.ps(domain)[0]["standinPort"].as_u64().unwrap() as u16
    }

    fn state(&self) -> serde_json::Value {
        match std::fs::read(self.swarm_dir.join("state.json")) {
            Ok(b) => serde_json::from_slice(&b).unwrap(),
            Err(_) => serde_json::json!({"stacks": {}}),
        }
    }

    fn pids(&self, stack: &str) -> Vec<u32> {
        self.state()["stacks"][stack]["services"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|s| s["pid"].as_u64().map(|p| p as u32))
            .collect()
    }

    fn recipe_dir(&self) -> PathBuf {
        self.abra_dir.join("recipes/custom-html")
    }

    fn env_file(&self, domain: &str) -> PathBuf {
        self.abra_dir.join(format!("servers/default/{domain}.env"))
    }

    fn volume(&self, name: &str) -> PathBuf {
        self.swarm_dir.join("volumes").join(name)
    }

    fn set_faults(&self, lines: &str) {
        std::fs::write(self.swarm_dir.join("faults"), lines).unwrap();
    }

    /// new -S + deploy, returns the service port.
    fn install(&self, domain: &str, version: Option<&str>) -> u16 {
        let mut args = vec!["app", "new", "custom-html"];
        if let Some(v) = version {
            args.push(v);
        }
        args.extend(["--server", "default", "--domain", domain, "-S"]);
        self.ok(&args);
        self.ok(&["app", "deploy", domain]);
        self.port(domain)
    }
}

fn gone(pid: u32) -> bool {
    // A reaped or zombie process; `pid_alive` reads /proc/<pid>/stat.
    !swarm::pid_alive(pid, None)
}

fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

#[test]
fn lifecycle_serves_volume_and_keeps_data_across_undeploy() {
    let w = World::new();
    let d = "html.example.com";
    let port = w.install(d, None);

    // Default content seeded into the empty volume on first start, as docker does with an
    // image's files at the mount point; latest release = nginx 1.27.2 ([HB-ver] version kinds).
    let r = http_get(port, "/").unwrap();
    assert_eq!(r.status, 200);
    assert!(String::from_utf8_lossy(&r.body).contains("Welcome to nginx!"));
    assert_eq!(r.header("Server"), Some("nginx/1.27.2"));
    assert_eq!(r.header("Content-Type"), Some("text/html"));
    assert_eq!(http_get(port, "/missing.html").unwrap().status, 404);

    // A file written inside the "container" (container path rewritten to the volume) is
    // served byte-exact, with the type its extension implies ([CCCI] tests/custom-html PARITY.md data check).
    w.ok(&[
        "app",
        "run",
        d,
        "app",
        "--",
        "sh",
        "-c",
        "printf 'marker 42\\n' > /usr/share/nginx/html/marker.txt",
    ]);
    let r = http_get(port, "/marker.txt").unwrap();
    assert_eq!(r.body, b"marker 42\n");
    assert_eq!(r.header("Content-Type"), Some("text/plain"));
    // Stand-in mapping: cwd is the first volume, STANDIN_VOLUME_<VOLUME> names each.
    w.ok(&[
        "app",
        "run",
        d,
        "app",
        "--",
        "sh",
        "-c",
        "test -f index.html && test -f \"$STANDIN_VOLUME_CONTENT/marker.txt\"",
    ]);
    // The command's exit code is the caller's.
    assert_eq!(
        w.run(&["app", "run", d, "app", "--", "sh", "-c", "exit 3"])
            .status
            .code(),
        Some(3)
    );

    // Already deployed: refused without --force ([BON] README "abra app deploy --force"; [LORES]).
    assert!(w.fail(&["app", "deploy", d]).contains("already deployed"));

    // Volume removal while deployed: docker's "volume is in use".
    let err = w.fail(&["app", "volume", "remove", d, "--force"]);
    assert!(err.contains("volume is in use"), "{err}");

    // Undeploy keeps volumes ([LLAMENOS] "data preserved") and really stops the process.
    let pids = w.pids("html_example_com");
    assert_eq!(pids.len(), 1);
    w.ok(&["app", "undeploy", d]);
    assert!(pids.iter().all(|p| gone(*p)), "service process still alive");
    assert!(http_get(port, "/").is_err());
    assert!(w.volume("html_example_com_content/marker.txt").is_file());
    assert!(w.fail(&["app", "ps", d]).contains("not deployed"));

    let port = {
        w.ok(&["app", "deploy", d]);
        w.port(d)
    };
    assert_eq!(http_get(port, "/marker.txt").unwrap().body, b"marker 42\n");
    w.ok(&["app", "undeploy", d]);
    w.ok(&["app", "volume", "remove", d, "-f"]);
    assert!(!w.volume("html_example_com_content").exists());
}

#[test]
fn secrets_follow_docker_rules() {
    let w = World::new();
    let d = "sec.example.com";
    w.ok(&[
        "app",
        "new",
        "custom-html",
        "--server",
        "default",
        "--domain",
        d,
    ]);

    // Without the secret the .env names, docker stack deploy fails.
    let err = w.fail(&["app", "deploy", d]);
    assert!(
        err.contains("secret not found: sec_example_com_admin_password_v1"),
        "{err}"
    );

    // Insert inline, then again: a version that exists cannot be inserted again
    // ([SEC] "secret … already exists"; swarmkit manager/controlapi/secret.go CreateSecret AlreadyExists).
    w.ok(&[
        "app",
        "secret",
        "insert",
        d,
        "admin_password",
        "v1",
        "s3cret-value",
    ]);
    let err = w.fail(&[
        "app",
        "secret",
        "insert",
        d,
        "admin_password",
        "v1",
        "other",
    ]);
    assert!(
        err.contains("secret sec_example_com_admin_password_v1 already exists"),
        "{err}"
    );
    assert!(!err.contains("s3cret-value") && !err.contains("other"));
    assert_eq!(
        std::fs::read(
            w.swarm_dir
                .join("secrets/sec_example_com_admin_password_v1")
        )
        .unwrap(),
        b"s3cret-value"
    );

    // From a file with -f ([LORES] `… pi_local.crt -f`).
    let f = w.root.join("value.txt");
    std::fs::write(&f, "from-file").unwrap();
    w.ok(&[
        "app",
        "secret",
        "insert",
        d,
        "admin_password",
        "v2",
        f.to_str().unwrap(),
        "-f",
    ]);
    assert_eq!(
        std::fs::read(
            w.swarm_dir
                .join("secrets/sec_example_com_admin_password_v2")
        )
        .unwrap(),
        b"from-file"
    );

    // generate at an explicit version prints the value; -m as JSON.
    let out = w.ok(&["app", "secret", "generate", d, "admin_password", "v3", "-m"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["name"], "admin_password");
    assert_eq!(
        v[0]["value"].as_str().unwrap().len(),
        32,
        "length=32 modifier"
    );

    // In use by a deployed service: docker refuses the removal.
    w.ok(&["app", "deploy", d]);
    // Inside the "container" the secret is at /run/secrets/<name> (stand-in path mapping).
    let out = w.ok(&[
        "app",
        "run",
        d,
        "app",
        "--",
        "cat",
        "/run/secrets/admin_password",
    ]);
    assert_eq!(out, "s3cret-value");
    let err = w.fail(&["app", "secret", "remove", d, "admin_password"]);
    assert!(
        err.contains("is in use by the following service: sec_example_com_app"),
        "{err}"
    );
    w.ok(&["app", "undeploy", d]);
    w.ok(&["app", "secret", "remove", d, "--all"]);
    assert!(!w
        .swarm_dir
        .join("secrets/sec_example_com_admin_password_v1")
        .exists());
}

#[test]
fn long_domain_breaks_dockers_64_char_secret_name_limit() {
    // Swarm caps secret names at 64 chars, stack prefix included (moby/swarmkit#2918;
    // message from swarmkit manager/controlapi/common.go validateConfigOrSecretAnnotations).
    let w = World::new();
    let d = "a-rather-long-subdomain-for-ci.example.com"; // stack 42 + "_admin_password_v1" = 60 ok
    assert!(d.len() + "_admin_password_v1".len() <= 64);
    w.ok(&[
        "app",
        "new",
        "custom-html",
        "--server",
        "default",
        "--domain",
        d,
        "-S",
    ]);
    let d = "an-even-longer-subdomain-for-the-ci.example.com";
    assert!(d.len() + "_admin_password_v1".len() > 64);
    let err = w.fail(&[
        "app",
        "new",
        "custom-html",
        "--server",
        "default",
        "--domain",
        d,
        "-S",
    ]);
    assert!(
        err.contains("invalid name, only 64 [a-zA-Z0-9-_.] characters allowed, and the start and end character must be [a-zA-Z0-9]"),
        "{err}"
    );
}

#[test]
fn app_new_secrets_table_prints_values_once() {
    let w = World::new();
    let out = w.ok(&[
        "app",
        "new",
        "custom-html",
        "--server=default",
        "--domain=t.example.com",
        "-S",
    ]);
    let value =
        std::fs::read_to_string(w.swarm_dir.join("secrets/t_example_com_admin_password_v1"))
            .unwrap();
    // Real abra shows generated secrets in a table ([CCCI] BACKLOG.md M5), so callers must redact.
    assert!(
        out.contains("admin_password") && out.contains(&value),
        "{out}"
    );
    let env = std::fs::read_to_string(w.env_file("t.example.com")).unwrap();
    assert!(env.contains("TYPE=custom-html:1.1.0+1.27.2\n"), "{env}");
    assert!(env.contains("DOMAIN=t.example.com\n"));
    // Deploy does not print secret values.
    let out = w.run(&["app", "deploy", "t.example.com"]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&value));
    assert!(!String::from_utf8_lossy(&out.stderr).contains(&value));
    w.ok(&["app", "undeploy", "t.example.com"]);
}

#[test]
fn dirty_checkout_refused_unless_chaos() {
    let w = World::new();
    let d = "dirty.example.com";
    w.ok(&[
        "app",
        "new",
        "custom-html",
        "--server",
        "default",
        "--domain",
        d,
        "-S",
    ]);
    // An untracked file is enough ([CCCI] tests/ history: "FATAs 'has locally unstaged changes'" even for
    // untracked files; [MH] "abra will not deploy unstaged changes").
    std::fs::write(w.recipe_dir().join("notes.txt"), "wip").unwrap();
    let err = w.fail(&["app", "deploy", d]);
    assert!(err.contains("has locally unstaged changes"), "{err}");
    assert!(w.state()["stacks"].get("dirty_example_com").is_none());

    // -C deploys the worktree as is; chaos-version = SmallSHA(HEAD) + "+U" ([CCCI] JOURNAL-dstamp.md).
    w.ok(&["app", "deploy", d, "-C"]);
    let head = Command::new("git")
        .args(["-C", w.recipe_dir().to_str().unwrap(), "rev-parse", "HEAD"])
        .output()
        .unwrap();
    let sha = String::from_utf8(head.stdout).unwrap();
    let ps = w.ps(d);
    assert_eq!(ps[0]["chaosVersion"], format!("{}+U", &sha[..8]));
    let ls: serde_json::Value = serde_json::from_str(&w.ok(&["app", "ls", "-m"])).unwrap();
    let app = &ls["default"]["apps"][0];
    assert_eq!(app["chaos"], "true");
    assert_eq!(
        app["version"], "1.1.0+1.27.2",
        "version label keeps the published version"
    );
    w.ok(&["app", "undeploy", d]);
}

#[test]
fn chaos_deploys_checked_out_commit_without_recheckout() {
    // The CI pattern ([CCCI] docs/testing.md HC1): deploy the published tag, check out another commit in
    // the recipe dir, `deploy --force --chaos`: the checked-out commit is what runs.
    let w = World::new();
    let d = "pr.example.com";
    let port = w.install(d, Some("1.0.0+1.25.0"));
    assert_eq!(
        http_get(port, "/").unwrap().header("Server"),
        Some("nginx/1.25.0")
    );
    let git = |args: &[&str]| {
        let o = Command::new("git")
            .arg("-C")
            .arg(w.recipe_dir())
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    git(&["checkout", "-q", "-f", "1.1.0+1.27.2"]);
    let sha = git(&["rev-parse", "HEAD"]);
    w.ok(&["app", "deploy", "--force", "--chaos", d]);
    let port = w.port(d);
    assert_eq!(
        http_get(port, "/").unwrap().header("Server"),
        Some("nginx/1.27.2")
    );
    assert_eq!(w.ps(d)[0]["chaosVersion"], sha[..8].to_string());
    // The .env pin is left alone by a chaos deploy.
    let env = std::fs::read_to_string(w.env_file(d)).unwrap();
    assert!(env.contains("TYPE=custom-html:1.0.0+1.25.0"));
    w.ok(&["app", "undeploy", d]);
}

#[test]
fn upgrade_keeps_data() {
    let w = World::new();
    let d = "up.example.com";
    let port = w.install(d, Some("1.0.0+1.25.0"));
    // The .env pin is the deploy version ([HB-ver] version kind 2).
    assert_eq!(
        http_get(port, "/").unwrap().header("Server"),
        Some("nginx/1.25.0")
    );
    assert_eq!(w.ps(d)[0]["version"], "1.0.0+1.25.0");
    w.ok(&[
        "app",
        "run",
        d,
        "app",
        "--",
        "sh",
        "-c",
        "echo kept > /usr/share/nginx/html/data.html",
    ]);

    w.ok(&["app", "deploy", d, "1.1.0+1.27.2", "--force"]);
    let port = w.port(d);
    let r = http_get(port, "/").unwrap();
    assert_eq!(r.header("Server"), Some("nginx/1.27.2"));
    assert_eq!(http_get(port, "/data.html").unwrap().body, b"kept\n");
    assert_eq!(w.ps(d)[0]["version"], "1.1.0+1.27.2");
    let env = std::fs::read_to_string(w.env_file(d)).unwrap();
    assert!(env.contains("TYPE=custom-html:1.1.0+1.27.2"), "{env}");
    // Unknown versions are refused.
    assert!(w
        .fail(&["app", "deploy", d, "9.9.9+1.0.0", "-f"])
        .contains("not a published version"));
    w.ok(&["app", "undeploy", d]);
}

#[test]
fn backup_then_restore_brings_data_back() {
    // backupbot labels: `backupbot.backup=true` + `backupbot.backup.path` ([SPEC]
    // https://docs.coopcloud.tech/specs/backup/spec). Restore takes the latest snapshot.
    let w = World::new();
    let d = "bk.example.com";
    let port = w.install(d, None);
    let write = |text: &str| {
        w.ok(&[
            "app",
            "run",
            d,
            "app",
            "--",
            "sh",
            "-c",
            &format!("echo {text} > /usr/share/nginx/html/note.txt"),
        ]);
    };
    write("first");
    assert!(w
        .ok(&["app", "backup", "create", d])
        .contains("backup finished"));
    write("second");
    w.ok(&["app", "backup", "create", d]);
    write("mutated");
    w.ok(&[
        "app",
        "run",
        d,
        "app",
        "--",
        "rm",
        "/usr/share/nginx/html/index.html",
    ]);
    assert_eq!(http_get(port, "/index.html").unwrap().status, 404);
    w.ok(&["app", "restore", d]);
    assert_eq!(http_get(port, "/note.txt").unwrap().body, b"second\n");
    assert_eq!(http_get(port, "/index.html").unwrap().status, 200);
    // backupbot works on running services.
    w.ok(&["app", "undeploy", d]);
    assert!(w
        .fail(&["app", "backup", "create", d])
        .contains("not deployed"));
}

#[test]
fn fault_deploy_fails_leaves_a_failed_stack_to_undeploy() {
    let mut w = World::new();
    let d = "f1.example.com";
    w.ok(&[
        "app",
        "new",
        "custom-html",
        "--server",
        "default",
        "--domain",
        d,
        "-S",
    ]);
    w.fault_env = Some("deploy-fails".into());
    let err = w.fail(&["app", "deploy", d]);
    assert!(
        err.starts_with("FATA ") && err.contains("deploy failed"),
        "{err}"
    );
    w.fault_env = None;
    assert_eq!(w.ps(d)[0]["state"], "failed");
    w.ok(&["app", "undeploy", d]);
    w.ok(&["app", "deploy", d]);
    w.ok(&["app", "undeploy", d]);
}

#[test]
fn fault_never_converges_times_out_after_env_timeout() {
    // TIMEOUT in the .env feeds the `coop-cloud.<stack>.timeout` label abra waits on ([CCCI] commit fb20321).
    let w = World::new();
    let d = "f2.example.com";
    w.ok(&[
        "app",
        "new",
        "custom-html",
        "--server",
        "default",
        "--domain",
        d,
        "-S",
    ]);
    let env = w.env_file(d);
    let text = std::fs::read_to_string(&env)
        .unwrap()
        .replace("#TIMEOUT=120", "TIMEOUT=1");
    std::fs::write(&env, text).unwrap();
    w.set_faults("never-converges\n");
    let start = Instant::now();
    let err = w.fail(&["app", "deploy", d]);
    assert!(err.contains("deploy timed out"), "{err}");
    assert!(start.elapsed() < Duration::from_secs(15));
    assert_eq!(w.ps(d)[0]["state"], "starting");
    // -c skips the monitor ([CCCI] commit 7dab4f5: `-c` = `--no-converge-checks`).
    w.ok(&["app", "deploy", d, "-f", "-c"]);
    w.set_faults("");
    w.ok(&["app", "deploy", d, "-f"]);
    w.ok(&["app", "undeploy", d]);
}

#[test]
fn fault_backup_and_restore_fail_via_faults_file() {
    let w = World::new();
    let d = "f3.example.com";
    w.install(d, None);
    w.set_faults("backup-fails\n");
    assert!(w
        .fail(&["app", "backup", "create", d])
        .contains("backup failed"));
    w.set_faults("");
    w.ok(&["app", "backup", "create", d]);
    w.set_faults("restore-fails\n");
    assert!(w.fail(&["app", "restore", d]).contains("restore failed"));
    w.set_faults("");
    w.ok(&["app", "restore", d]);
    w.ok(&["app", "undeploy", d]);
}

#[test]
fn fault_hang_holds_the_command() {
    let w = World::new();
    w.set_faults("hang:ls\n");
    let mut child = w.spawn(&["app", "ls"]);
    std::thread::sleep(Duration::from_millis(700));
    assert!(child.try_wait().unwrap().is_none(), "hang:ls should hang");
    child.kill().unwrap();
    let _ = child.wait();
    // Other commands are unaffected.
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
    let tags = Command::new("git")
        .args(["-C", w.recipe_dir().to_str().unwrap(), "tag", "--list"])
        .output()
        .unwrap();
    let tags = String::from_utf8(tags.stdout).unwrap();
    assert!(
        tags.contains("1.0.0+1.25.0") && tags.contains("1.1.0+1.27.2"),
        "{tags}"
    );
    assert!(w
        .fail(&["recipe", "fetch", "no-such-recipe"])
        .contains("not found"));
}

#[test]
fn concurrent_runs_with_own_abra_dirs_share_one_swarm() {
    // cc-ci runs each build with its own ABRA_DIR on one Docker host ([CCCI] README: per-run
    // ABRA_DIR, shared swarm). Within one ABRA_DIR the recipe checkout is shared and concurrent
    // runs race on it as real abra's do ([CCCI]: "Shared ~/.abra/recipes/<recipe> worktree =
    // race"), so this test gives each run its own.
    let w = World::new();
    let runs: Vec<(String, PathBuf)> = (0..4)
        .map(|i| {
            (
                format!("c{i}.example.com"),
                w.root.join(format!("abra-run{i}")),
            )
        })
        .collect();
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
    let state = w.state();
    let mut pids = Vec::new();
    for (d, _) in &runs {
        let stack = d.replace('.', "_");
        assert!(state["stacks"].get(&stack).is_some(), "{stack} missing");
        let port = state["stacks"][&stack]["services"][0]["port"]
            .as_u64()
            .unwrap() as u16;
        assert_eq!(http_get(port, "/").unwrap().status, 200);
        pids.extend(w.pids(&stack));
    }
    assert_eq!(pids.len(), 4);
    // Each run's `app ls` sees only its own apps: apps are per ABRA_DIR, the swarm is shared.
    let ls: serde_json::Value =
        serde_json::from_slice(&w.run_in(&runs[0].1, &["app", "ls", "-m"]).stdout).unwrap();
    assert_eq!(ls["default"]["apps"].as_array().unwrap().len(), 1);
    drop(w);
    // The Drop guard stops what the test started.
    assert!(pids
        .iter()
        .all(|p| wait_until(Duration::from_secs(5), || gone(*p))));
}
