//! `PUT /results/…`: what a runner on another host may ship, against the real bridge binary
//! and a stand-in Drone whose runner (`standin-runner`) runs the builds.

mod world;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ccci::drone::DroneClient;
use ccci::results::{sha256_hex, MAX_FILE, SHA256_HEADER};
use ccci::secret::Secret;
use serde_json::json;
use world::{wait_until, Opts, World, SLOW};

const RUNNER_TOKEN: &str = "runner-token-0123456789abcdef";
const OTHER_TOKEN: &str = "other-token-0123456789abcdef";

fn put(listen: &str, path: &str, body: &[u8], token: &str, sha: &str) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let mut r = agent
        .put(&format!("http://{listen}{path}"))
        .header("Authorization", &format!("Bearer {token}"))
        .header(SHA256_HEADER, sha)
        .send(body)
        .unwrap();
    let status = r.status().as_u16();
    (status, r.body_mut().read_to_string().unwrap_or_default())
}

fn ship(listen: &str, build: i64, file: &str, body: &[u8], token: &str) -> (u16, String) {
    put(
        listen,
        &format!("/results/{build}/{file}"),
        body,
        token,
        &sha256_hex(body),
    )
}

fn summary(build: i64, artifacts: &[&str]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "schema": 1, "build": build, "recipe": "custom-html", "ref": world::SHA, "pr": 1,
        "src": "https://git.example.org/bob/custom-html.git", "domain": "x.ci.test",
        "started": 1, "stages": [{"name": "install", "status": "passed", "reason": "",
        "started": 1, "duration_ms": 5, "artifacts": artifacts}]
    }))
    .unwrap()
}

/// Every file under `dir`, relative, sorted.
fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                todo.push(e.path());
            } else {
                out.push(e.path().strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("bridge-results-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("results")).unwrap();
    std::fs::write(d.join("runner-token"), RUNNER_TOKEN).unwrap();
    std::fs::write(d.join("other-token"), OTHER_TOKEN).unwrap();
    d
}

#[test]
fn a_runner_ships_only_its_own_builds_whole_and_once() {
    let d = scratch("rules");
    let results = d.join("results");
    // Long enough to ship into, then it ends.
    let yaml = SLOW.replace("sleep 4", "sleep 20");
    let mut w = World::with(Opts {
        name: "results",
        yaml: &yaml,
        config: json!({
            "results_dir": results,
            "runner_token_files": {
                "standin-runner": d.join("runner-token"),
                "other-runner": d.join("other-token"),
            },
            "results_accept_secs": 2,
        }),
        ..Default::default()
    });
    w.start();
    let l = w.listen.clone();
    let drone = DroneClient::new(
        &w.drone.url(),
        Secret::from_file(&w.dir.join("drone-token")).unwrap(),
        Duration::from_secs(5),
    );
    let params = [
        ("RECIPE", "custom-html"),
        ("REF", world::SHA),
        ("PR", "1"),
        ("SRC", "https://git.example.org/bob/custom-html.git"),
        ("COMMENT", "1"),
    ];
    let b = drone
        .create_build("coop-cloud", "cc-ci", None, &params)
        .unwrap()
        .unwrap();
    let n = b.number;
    wait_until(
        "the build runs on the stand-in runner",
        Duration::from_secs(10),
        || {
            drone
                .get_build("coop-cloud", "cc-ci", n)
                .unwrap()
                .stages
                .iter()
                .any(|s| s.machine == "standin-runner")
        },
    );
    let png = vec![7u8; 300 * 1024];
    let shot = "artifacts/install/landing.png";

    // A summary ahead of its artifact is refused; nothing is stored.
    let (s, t) = ship(&l, n, "summary.json", &summary(n, &[shot]), RUNNER_TOKEN);
    assert_eq!(s, 409, "{t}");
    assert!(t.contains(shot), "{t}");
    // The artifact, then the same bytes again: stored once.
    assert_eq!(ship(&l, n, shot, &png, RUNNER_TOKEN).0, 201);
    let stored = results.join(n.to_string()).join(shot);
    let first = std::fs::metadata(&stored).unwrap().modified().unwrap();
    let (s, t) = ship(&l, n, shot, &png, RUNNER_TOKEN);
    assert_eq!(s, 200, "{t}");
    assert!(t.contains("already stored"), "{t}");
    assert_eq!(
        std::fs::metadata(&stored).unwrap().modified().unwrap(),
        first
    );
    assert_eq!(std::fs::read(&stored).unwrap(), png);
    // Now the summary is whole.
    assert_eq!(
        ship(&l, n, "summary.json", &summary(n, &[shot]), RUNNER_TOKEN).0,
        201
    );

    // Forgeries: no token, an unknown one, another runner's for this build, a build that does
    // not exist, another build's summary, a path outside the layout.
    let refused = |path: &str, body: &[u8], token: &str, sha: &str| put(&l, path, body, token, sha);
    let p = |f: &str| format!("/results/{n}/{f}");
    let sha = sha256_hex(&png);
    let (s, t) = refused(&p("artifacts/x.png"), &png, "", &sha);
    assert_eq!(s, 401, "{t}");
    let (s, t) = refused(&p("artifacts/x.png"), &png, "guess-guess-guess-guess", &sha);
    assert_eq!(s, 401, "{t}");
    let (s, t) = refused(&p("artifacts/x.png"), &png, OTHER_TOKEN, &sha);
    assert_eq!(s, 403, "{t}");
    assert!(t.contains("did not run on runner other-runner"), "{t}");
    let (s, t) = refused("/results/999/artifacts/x.png", &png, RUNNER_TOKEN, &sha);
    assert_eq!(s, 404, "{t}");
    let other = summary(n + 1, &[]);
    let (s, t) = refused(
        &p("summary.json"),
        &other,
        RUNNER_TOKEN,
        &sha256_hex(&other),
    );
    assert_eq!(s, 422, "{t}");
    let (s, _) = refused(&p("artifacts/../../escape"), &png, RUNNER_TOKEN, &sha);
    assert_eq!(s, 404);
    let (s, _) = refused(&p("notes.txt"), &png, RUNNER_TOKEN, &sha);
    assert_eq!(s, 404);
    // A body that is not what its hash says.
    let (s, t) = refused(
        &p("artifacts/y.png"),
        &png,
        RUNNER_TOKEN,
        &sha256_hex(b"other"),
    );
    assert_eq!(s, 422, "{t}");
    // Oversize: refused on its Content-Length, before any of it is read.
    let mut c = TcpStream::connect(&l).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        c,
        "PUT {} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {RUNNER_TOKEN}\r\n{SHA256_HEADER}: {sha}\r\nContent-Length: {}\r\n\r\n",
        p("artifacts/big.png"),
        MAX_FILE + 1
    )
    .unwrap();
    let mut answer = String::new();
    let _ = c.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
    // A runner host dying mid-upload: half the body, then the connection is gone.
    let mut c = TcpStream::connect(&l).unwrap();
    write!(
        c,
        "PUT {} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {RUNNER_TOKEN}\r\n{SHA256_HEADER}: {sha}\r\nContent-Length: {}\r\n\r\n",
        p("artifacts/cut.png"),
        png.len()
    )
    .unwrap();
    c.write_all(&png[..png.len() / 2]).unwrap();
    drop(c);
    wait_until("the cut upload is logged", Duration::from_secs(5), || {
        w.log().contains("file=artifacts/cut.png")
    });
    assert_eq!(
        files(&results),
        vec![
            format!("{n}/artifacts/install/landing.png"),
            format!("{n}/summary.json")
        ],
        "only whole, accepted files; nothing half-received left anywhere"
    );

    // Once the build has been over for longer than results_accept_secs, nothing more is taken.
    wait_until("the build ends", Duration::from_secs(40), || {
        drone
            .get_build("coop-cloud", "cc-ci", n)
            .unwrap()
            .status
            .is_done()
    });
    std::thread::sleep(Duration::from_secs(3));
    let (s, t) = ship(&l, n, "artifacts/late.png", &png, RUNNER_TOKEN);
    assert_eq!(s, 410, "{t}");

    let metrics = ureq::get(&format!("http://{l}/metrics"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    assert!(
        metrics.contains("ccci_bridge_results_stored_total 3"),
        "{metrics}"
    );
    let log = w.log();
    for secret in [RUNNER_TOKEN, OTHER_TOKEN] {
        assert!(!log.contains(secret), "a runner token reached the log");
    }
    w.kill();
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn check_config_refuses_half_a_results_setup() {
    let d = scratch("config");
    let mut w = World::with(Opts {
        name: "results-config",
        ..Default::default()
    });
    let check = |w: &World| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_cc-ci-bridge"))
            .args(["--config"])
            .arg(w.dir.join("config.json"))
            .arg("--check-config")
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    w.set_config("runner_token_files", json!({"r2": d.join("runner-token")}));
    assert!(check(&w).contains("results_dir is not"), "{}", check(&w));
    w.set_config("results_dir", json!(d.join("nowhere")));
    assert!(check(&w).contains("is not a directory"), "{}", check(&w));
    std::fs::write(d.join("short"), "abc").unwrap();
    w.set_config("results_dir", json!(d.join("results")));
    w.set_config("runner_token_files", json!({"r2": d.join("short")}));
    assert!(check(&w).contains("shorter than 16"), "{}", check(&w));
    w.kill();
    let _ = std::fs::remove_dir_all(&d);
}
