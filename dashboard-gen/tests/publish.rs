//! Kindness to Drone and the atomic-publish promise: a second run asks only for what is new,
//! Drone down or answering garbage keeps the old site and exits non-zero, and a generation
//! killed mid-write leaves the published site whole.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use ccci::summary::Status;
use standins::http::{Fault, FaultRule};
use support::*;

fn pass4() -> Vec<ccci::summary::StageResult> {
    ["install", "upgrade", "backup", "recipe-tests"]
        .iter()
        .map(|s| stage(s, Status::Passed))
        .collect()
}

fn published(w: &World) -> std::path::PathBuf {
    std::fs::read_link(w.out.join("current")).unwrap()
}

/// Every file of a site, with its bytes.
fn snapshot(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    files(dir)
        .into_iter()
        .map(|f| {
            let b = std::fs::read(dir.join(&f)).unwrap();
            (f, b)
        })
        .collect()
}

/// Every file of the old site has its old bytes, and its links still resolve. Run pages the
/// old site never linked may have been added to the shared store (docs/dashboard.md).
fn assert_intact(snap: &[(std::path::PathBuf, Vec<u8>)], site: &Path) {
    let now = snapshot(site);
    let now: std::collections::BTreeMap<_, _> = now.into_iter().collect();
    for (path, bytes) in snap {
        assert!(
            now.get(path) == Some(bytes),
            "{} changed or vanished in the published site",
            path.display()
        );
    }
    for path in now.keys() {
        assert!(
            path.starts_with("runs") || snap.iter().any(|(p, _)| p == path),
            "{} appeared outside the run-page store",
            path.display()
        );
    }
    assert_links_resolve(site);
}

#[test]
fn second_run_asks_drone_only_for_new_and_unfinished_builds() {
    let w = World::new("incr", &["alpha", "bravo"], 4);
    let mut numbers = Vec::new();
    for _ in 0..3 {
        let n = w.run("alpha", SHA, 1, None);
        w.save_summary(&summary(n, "alpha", SHA, 1, pass4()));
        numbers.push(n);
    }
    // One build still running at the first generation.
    let gate = w.dir.join("gate");
    let running = w.start("bravo", SHA, 2, None, &[("GATE", gate.to_str().unwrap())]);
    w.drone
        .wait_build_until(OWNER, PIPELINE, running, WAIT, |b| b.status == "running")
        .unwrap();
    w.gen_ok();
    assert!(w
        .read("index.html")
        .contains("<tr class=running><th scope=row><a href=\"recipes/bravo.html\">"));

    // Nothing new: one list request.
    w.drone.clear_requests();
    w.gen_ok();
    let reqs = w.api_requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert!(
        reqs[0].starts_with("GET /api/repos/coop-cloud/cc-ci/builds"),
        "{reqs:?}"
    );

    // The running build finishes and one new build arrives: still within 3 requests, and
    // the site shows both.
    std::fs::write(&gate, "").unwrap();
    w.wait(running);
    w.save_summary(&summary(running, "bravo", SHA, 2, pass4()));
    let new = w.run("alpha", SHA2, 3, Some("backup"));
    let mut bk = stage("backup", Status::Failed);
    bk.failures = vec![failure(
        "alpha/test_backup.py::test_restore",
        "row count 0 != 3",
    )];
    w.save_summary(&summary(
        new,
        "alpha",
        SHA2,
        3,
        vec![
            stage("install", Status::Passed),
            stage("upgrade", Status::Passed),
            bk,
        ],
    ));
    w.drone.clear_requests();
    let out = w.gen_ok();
    let reqs = w.api_requests();
    assert!(reqs.len() <= 3, "{reqs:?}");
    assert!(reqs.iter().all(|r| r.starts_with("GET ")), "{reqs:?}");
    let index = w.read("index.html");
    assert!(
        index.contains("<tr class=passed><th scope=row><a href=\"recipes/bravo.html\">"),
        "{index}"
    );
    assert!(
        index.contains("<tr class=failed><th scope=row><a href=\"recipes/alpha.html\">"),
        "{index}"
    );
    assert!(w
        .read(&format!("runs/{new}.html"))
        .contains("row count 0 != 3"));
    // Unchanged pages were linked, not rendered again.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("reused=3"),
        "the three old alpha runs are reused: {stderr}"
    );
    assert_links_resolve(&w.site());
    // Older complete sites are cleaned up: the current one and the one before remain.
    let sites: Vec<_> = std::fs::read_dir(&w.out)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("site-"))
        .collect();
    assert_eq!(sites.len(), 2);
    let _ = numbers;
}

#[test]
fn drone_down_or_garbage_keeps_the_old_site_and_fails() {
    let w = World::new("down", &["alpha"], 2);
    let n = w.run("alpha", SHA, 1, None);
    w.save_summary(&summary(n, "alpha", SHA, 1, pass4()));
    w.write_config(serde_json::json!({"request_timeout_secs": 1}));
    w.gen_ok();
    let before = published(&w);
    let snap = snapshot(&w.site());
    let cache = std::fs::read(w.cache.join("builds.json")).unwrap();
    w.run("alpha", SHA2, 2, Some("install"));

    for (fault, expect) in [
        (Fault::Status { status: 500 }, "HTTP 500"),
        (Fault::MalformedJson, "malformed JSON"),
        (Fault::Truncated, "builds"),
        (Fault::Hang, "drone GET /api/repos/coop-cloud/cc-ci/builds"),
    ] {
        w.drone.clear_faults();
        w.drone
            .inject(FaultRule::new("/api/repos/*/*/builds", fault.clone()));
        let t = Instant::now();
        let out = w.gen();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{fault:?}: {stderr}");
        assert!(
            stderr.contains("ERROR dashboard:") && stderr.contains(expect),
            "{fault:?}: {stderr}"
        );
        assert!(stderr.contains("left as it was"), "{stderr}");
        assert!(
            !stderr.contains(TOKEN),
            "the token never appears in an error"
        );
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "{fault:?}: bounded by the request timeout"
        );
        assert_eq!(
            published(&w),
            before,
            "{fault:?}: the published site is unchanged"
        );
        assert_eq!(
            snapshot(&w.site()),
            snap,
            "{fault:?}: every file of the old site is intact"
        );
        assert_eq!(
            std::fs::read(w.cache.join("builds.json")).unwrap(),
            cache,
            "{fault:?}: cache untouched"
        );
    }
    // Drone back: the next run catches up.
    w.drone.clear_faults();
    w.gen_ok();
    assert!(w.read("index.html").contains("<tr class=failed>"));
}

#[test]
fn killed_mid_write_leaves_the_published_site_whole() {
    let recipes: Vec<String> = (0..40).map(|i| format!("recipe-{i}")).collect();
    let names: Vec<&str> = recipes.iter().map(String::as_str).collect();
    let w = World::new("kill", &names, 32);
    let n = w.run("recipe-0", SHA, 1, None);
    w.save_summary(&summary(n, "recipe-0", SHA, 1, pass4()));
    // A run still going at the first generation: its page must not turn "passed" in the old
    // site before the swap.
    let gate = w.dir.join("gate");
    let running = w.start(
        "recipe-1",
        SHA,
        1,
        None,
        &[("GATE", gate.to_str().unwrap())],
    );
    w.drone
        .wait_build_until(OWNER, PIPELINE, running, WAIT, |b| b.status == "running")
        .unwrap();
    w.gen_ok();
    let before = published(&w);
    let snap = snapshot(&w.site());
    assert!(w
        .read(&format!("runs/{running}.html"))
        .contains("● running"));
    std::fs::write(&gate, "").unwrap();
    w.wait(running);

    // A large second generation: 1200 new runs, each with a screenshot to copy.
    let mut last = 0;
    for i in 0..1200 {
        let r = &recipes[i % recipes.len()];
        last = w.start(r, SHA, 1 + i as i64 % 7, None, &[]);
    }
    w.wait(last);
    w.drone.wait_idle(WAIT).unwrap();
    let png = vec![7u8; 200 * 1024];
    for n in running..=last {
        let Some(b) = w.drone.build(OWNER, PIPELINE, n) else {
            continue;
        };
        let recipe = b.params["RECIPE"].clone();
        let mut st = pass4();
        st[0].artifacts = vec!["artifacts/install/index.png".into()];
        w.save_summary(&summary(
            n,
            &recipe,
            SHA,
            b.params["PR"].parse().unwrap(),
            st,
        ));
        w.artifact(n, "artifacts/install/index.png", &png);
    }

    let mut child = std::process::Command::new(bin())
        .arg("--config")
        .arg(&w.config)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once the run-page store holds 20 new pages, i.e. mid-write.
    let store = w.site().join("runs");
    let before_pages = std::fs::read_dir(&store).unwrap().count();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut killed_mid_write = false;
    while Instant::now() < deadline {
        let pages = std::fs::read_dir(&store).map(|d| d.count()).unwrap_or(0);
        if pages >= before_pages + 20 {
            child.kill().unwrap();
            killed_mid_write = true;
            break;
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = child.wait();
    assert!(
        killed_mid_write,
        "the generation ended before it could be killed mid-write"
    );
    assert_eq!(
        published(&w),
        before,
        "current still points at the old site"
    );
    assert_intact(&snap, &w.site());

    // The next run removes the partial directory and publishes everything.
    w.gen_ok();
    assert_ne!(published(&w), before);
    assert!(w.read(&format!("runs/{running}.html")).contains("✓ passed"));
    assert!(w.site().join(format!("runs/{last}.html")).exists());
    assert!(w
        .site()
        .join(format!("runs/{last}/artifacts/install/index.png"))
        .exists());
    let sites = std::fs::read_dir(&w.out)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("site-"))
        .count();
    assert_eq!(sites, 2, "the killed run's partial site is gone");
}

fn store_entry(w: &World, n: i64) -> std::fs::FileType {
    std::fs::symlink_metadata(w.site().join(format!("runs/{n}.html")))
        .unwrap()
        .file_type()
}

fn stores(w: &World) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(&w.out)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("runs-"))
        .collect();
    v.sort();
    v
}

/// An unfinished run's page is served from the site through the store's symlink, so it
/// changes only with the swap; once finished it goes into the store. Runs that leave the
/// history leave the store; a new configuration starts a new store.
#[test]
fn run_pages_live_in_the_site_until_finished_then_in_the_store() {
    let w = World::new("store", &["alpha"], 4);
    w.write_config(serde_json::json!({"history": 2}));
    let gate = w.dir.join("gate");
    let running = w.start("alpha", SHA, 1, None, &[("GATE", gate.to_str().unwrap())]);
    w.drone
        .wait_build_until(OWNER, PIPELINE, running, WAIT, |b| b.status == "running")
        .unwrap();
    w.gen_ok();
    assert!(store_entry(&w, running).is_symlink());
    assert!(w.site().join(format!("live/{running}.html")).is_file());
    assert!(w
        .read(&format!("runs/{running}.html"))
        .contains("● running"));

    // Finished: the final page is published through the live pages, then stored.
    std::fs::write(&gate, "").unwrap();
    w.wait(running);
    w.save_summary(&summary(running, "alpha", SHA, 1, pass4()));
    w.gen_ok();
    let page = w.read(&format!("runs/{running}.html"));
    assert!(page.contains("✓ passed"), "{page}");
    assert!(store_entry(&w, running).is_file());
    assert_eq!(w.read(&format!("live/{running}.html")), page);

    // A generation that stopped between the swap and the store: the next one catches up.
    let link = w.site().join(format!("runs/{running}.html"));
    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink(format!("../current/live/{running}.html"), &link).unwrap();
    w.gen_ok();
    assert!(store_entry(&w, running).is_file());
    assert_eq!(w.read(&format!("runs/{running}.html")), page);
    // Stored for good: the next site needs no live copy.
    w.gen_ok();
    assert!(!w.site().join(format!("live/{running}.html")).exists());
    assert_eq!(w.read(&format!("runs/{running}.html")), page);
    assert_links_resolve(&w.site());

    // Two more runs with history 2: the first leaves the site and the store.
    let mut newer = Vec::new();
    for pr in [2, 3] {
        let n = w.run("alpha", SHA2, pr, None);
        w.save_summary(&summary(n, "alpha", SHA2, pr, pass4()));
        newer.push(n);
    }
    let store = std::fs::canonicalize(w.site().join("runs")).unwrap();
    w.gen_ok();
    assert!(!store.join(format!("{running}.html")).exists());
    // Drone still lists the pruned build; it is not read (nor counted) again.
    let again = w.gen_ok();
    let log = String::from_utf8_lossy(&again.stderr);
    assert!(log.contains(" changed=0 "), "{log}");
    for n in &newer {
        assert!(store_entry(&w, *n).is_file());
    }
    assert_eq!(stores(&w).len(), 1);

    // A longer history brings the pruned run back (the cache starts afresh from Drone).
    w.write_config(serde_json::json!({"history": 3}));
    w.gen_ok();
    assert!(w
        .read("recipes/alpha.html")
        .contains(&format!("runs/{running}.html")));
    assert!(store_entry(&w, running).is_file());
    w.write_config(serde_json::json!({"history": 2}));
    w.gen_ok();

    // A new site URL changes every page: a new store, the old one removed once published.
    let before = stores(&w);
    w.write_config(serde_json::json!({"history": 2, "site_url": "https://ci2.example.org"}));
    w.gen_ok();
    let after = stores(&w);
    assert_eq!(after.len(), 1, "{after:?}");
    assert_ne!(after, before);
    assert!(!store.exists());
    for n in &newer {
        assert!(store_entry(&w, *n).is_file());
    }
    assert!(w
        .read("summary.json")
        .contains("https://ci2.example.org/runs/"));
    assert_links_resolve(&w.site());
}

/// A second generation while one runs (the timer's and one started by hand) stops at once
/// with a clear error, touching nothing.
#[test]
fn a_second_generation_at_once_is_refused() {
    let w = World::new("lock", &["alpha"], 2);
    let n = w.run("alpha", SHA, 1, None);
    w.save_summary(&summary(n, "alpha", SHA, 1, pass4()));
    w.gen_ok();
    let before = published(&w);
    let snap = snapshot(&w.site());
    let held = ccci::fsx::Lock::try_take(&w.out.join(".lock"))
        .unwrap()
        .expect("free");
    w.drone.clear_requests();
    let out = w.gen();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("another dashboard-gen is publishing to"),
        "{stderr}"
    );
    assert!(w.api_requests().is_empty(), "nothing asked of Drone");
    assert_eq!(published(&w), before);
    assert_eq!(snapshot(&w.site()), snap);
    drop(held);
    w.gen_ok();
}
