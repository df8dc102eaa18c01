//! Scheduled re-tests, driven as the timer drives them: `cc-ci-bridge --retest --now T`
//! against the stand-in Gitea and Drone, the clock injected. The forge and Drone keep state;
//! the tests assert on the builds Drone was asked for and the requests each side served.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use standins::http::{Fault, FaultRule};

mod world;
use world::{wait_until, Opts, World, SLOW};

/// Today's 03:00 UTC, a night's first firing of the timer. The sweeps' clock (`--now`) starts
/// from the real one because the stand-in Drone stamps builds with the real clock, and a green
/// run's `finished` is what "a week since its green re-test" counts from: a fixed date here
/// made the weekly checks fail once the real date was a few hours past it.
static T0: std::sync::LazyLock<i64> = std::sync::LazyLock::new(|| {
    let now = ccci::clock::now();
    now - now.rem_euclid(DAY) + 3 * HOUR
});

/// The slot (a date) of a sweep at `t`.
fn slot(t: i64) -> String {
    ccci::clock::date(t)
}
const HOUR: i64 = 3600;
const DAY: i64 = 86_400;

fn world(name: &str, yaml: &'static str, config: serde_json::Value) -> World {
    World::with(Opts {
        name,
        yaml,
        extra_repos: 2,
        config,
        ..Opts::default()
    })
}

/// One invocation: (success, its log).
fn retest(w: &World, now: i64) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cc-ci-bridge"))
        .arg("--config")
        .arg(w.dir.join("config.json"))
        .args(["--retest", "--now", &now.to_string()])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    for t in &w.tokens {
        assert!(!log.contains(t.as_str()), "a token in the log:\n{log}");
    }
    (out.status.success(), log)
}

/// Every cc-ci build Drone holds, oldest first.
fn builds(w: &World) -> Vec<standins::drone::Build> {
    (1..)
        .map_while(|n| w.drone.build("coop-cloud", "cc-ci", n))
        .collect()
}

/// Scheduled builds per (slot, recipe): how many.
fn per_slot(w: &World) -> BTreeMap<(String, String), usize> {
    let mut m = BTreeMap::new();
    for b in builds(w) {
        let slot = b.params.get("SCHEDULE").cloned().unwrap_or_default();
        let recipe = b.params["RECIPE"].clone();
        *m.entry((slot, recipe)).or_insert(0) += 1;
    }
    m
}

fn head(w: &World, recipe: &str) -> String {
    let b = w
        .bot
        .branch_head("coop-cloud", recipe, "main")
        .unwrap()
        .unwrap();
    assert_eq!(b.len(), 40);
    b
}

fn wait_all_done(w: &World) {
    wait_until("every build to finish", Duration::from_secs(30), || {
        builds(w)
            .iter()
            .all(|b| !matches!(b.status.as_str(), "pending" | "running"))
    });
}

#[test]
fn every_recipe_gets_one_scheduled_run_per_slot_across_an_interrupted_sweep() {
    let w = world(
        "slots",
        world::QUICK,
        serde_json::json!({"retest_batch": 2, "retest_queue_limit": 10}),
    );
    // The first create reaches Drone but its answer is cut: the sweep dies not knowing.
    w.drone.inject(
        FaultRule::new("/api/repos/coop-cloud/cc-ci/builds", Fault::Truncated)
            .method("POST")
            .times(1),
    );
    let (ok, log) = retest(&w, *T0);
    assert!(!ok, "{log}");
    assert!(log.contains("creating a re-test build"), "{log}");
    assert_eq!(builds(&w).len(), 1, "{log}");

    // An hour later the timer fires again: that build is adopted, not made twice, and the
    // batch of two starts the other two.
    let (ok, log) = retest(&w, *T0 + HOUR);
    assert!(ok, "{log}");
    assert!(
        log.contains("adopted the re-test an interrupted sweep created"),
        "{log}"
    );
    let slots = per_slot(&w);
    let want: BTreeMap<(String, String), usize> = ["custom-html", "recipe-0", "recipe-1"]
        .iter()
        .map(|r| ((slot(*T0), r.to_string()), 1))
        .collect();
    assert_eq!(slots, want);
    // Each scheduled build tests the default branch's head, from the base repository.
    for b in builds(&w) {
        let recipe = &b.params["RECIPE"];
        assert_eq!(b.params["REF"], head(&w, recipe));
        assert_eq!(b.params["PR"], "0");
        assert!(
            b.params["SRC"].ends_with(&format!("/coop-cloud/{recipe}.git")),
            "{:?}",
            b.params
        );
        assert!(!b.params.contains_key("COMMENT"), "{:?}", b.params);
    }
    // Once more in the slot, the runs ended: nothing started; each run's end read once.
    wait_all_done(&w);
    w.drone.clear_requests();
    let (ok, log) = retest(&w, *T0 + 2 * HOUR);
    assert!(ok, "{log}");
    assert_eq!(builds(&w).len(), 3, "{log}");
    let reads = w.drone.requests().len();
    assert!(
        reads <= 3 + 1,
        "at most each run's end and the queue: {reads}"
    );

    // The next night, nothing changed and every run was green: not due until a week on. What
    // that costs: the requests each side served for it.
    w.gitea.clear_requests();
    w.drone.clear_requests();
    let (ok, log) = retest(&w, *T0 + DAY);
    assert!(ok, "{log}");
    assert_eq!(builds(&w).len(), 3, "{log}");
    assert_eq!(log.matches("default branch unchanged").count(), 3, "{log}");
    let (g, d) = (w.gitea.requests().len(), w.drone.requests().len());
    eprintln!("unchanged slot: {g} Gitea and {d} Drone requests for 3 recipes");
    assert_eq!(g, 3 * 2, "a repository and a branch read per recipe");
    assert_eq!(d, 1, "the queue once; no run is open");
    // Read once per slot: later firings in the same slot ask nothing of Gitea.
    w.gitea.clear_requests();
    retest(&w, *T0 + DAY + HOUR);
    assert_eq!(w.gitea.requests().len(), 0);

    // A push to one recipe's default branch: only that one is re-tested the night after.
    let new = "9".repeat(40);
    w.gitea
        .push_branch("coop-cloud", "recipe-0", "main", &new)
        .unwrap();
    w.gitea.clear_requests();
    w.drone.clear_requests();
    let (ok, log) = retest(&w, *T0 + 2 * DAY);
    assert!(ok, "{log}");
    let all = builds(&w);
    assert_eq!(all.len(), 4, "{log}");
    let last = all.last().unwrap();
    assert_eq!(last.params["RECIPE"], "recipe-0");
    assert_eq!(last.params["REF"], new);
    assert_eq!(last.params["SCHEDULE"], slot(*T0 + 2 * DAY));
    eprintln!(
        "slot with one change: {} Gitea and {} Drone requests for 3 recipes",
        w.gitea.requests().len(),
        w.drone.requests().len()
    );
    wait_all_done(&w);

    // A week after their green runs the unchanged ones are due again, two per firing.
    let (ok, log) = retest(&w, *T0 + 8 * DAY);
    assert!(ok, "{log}");
    let (ok, log2) = retest(&w, *T0 + 8 * DAY + HOUR);
    assert!(ok, "{log2}");
    let slots = per_slot(&w);
    for r in ["custom-html", "recipe-0", "recipe-1"] {
        assert_eq!(
            slots.get(&(slot(*T0 + 8 * DAY), r.into())),
            Some(&1),
            "{log}\n{log2}"
        );
    }
}

#[test]
fn a_full_queue_a_down_drone_and_an_overlapping_sweep_start_nothing_twice() {
    let w = world(
        "queue",
        SLOW,
        serde_json::json!({"retest_batch": 10, "retest_queue_limit": 1}),
    );
    // The queue takes one: the first firing starts one, the next (it still runs) none.
    let (ok, log) = retest(&w, *T0);
    assert!(ok, "{log}");
    assert_eq!(builds(&w).len(), 1, "{log}");
    let (ok, log) = retest(&w, *T0 + 60);
    assert!(ok, "{log}");
    assert_eq!(builds(&w).len(), 1, "{log}");
    assert!(
        log.contains("left=recipe-0,recipe-1") || log.contains("left=custom-html,recipe-"),
        "{log}"
    );
    wait_all_done(&w);

    // Drone answers 500: a clear error, nothing recorded as started; the next firing starts.
    w.drone.inject(
        FaultRule::new(
            "/api/repos/coop-cloud/cc-ci/builds",
            Fault::Status { status: 500 },
        )
        .method("GET")
        .times(1),
    );
    let (ok, log) = retest(&w, *T0 + 120);
    assert!(!ok, "{log}");
    assert!(
        log.contains("counting cc-ci builds in Drone's queue"),
        "{log}"
    );
    assert_eq!(builds(&w).len(), 1);
    // A sweep that is still running (it holds the lock): this one does nothing.
    let lock = w.dir.join("state/retest.lock");
    let held = ccci::fsx::Lock::try_take(&lock).unwrap().unwrap();
    let (ok, log) = retest(&w, *T0 + 180);
    assert!(ok, "{log}");
    assert!(log.contains("another sweep is running"), "{log}");
    assert_eq!(builds(&w).len(), 1);
    // A sweep killed mid-way holds nothing any more: its leftover lock file stops no one.
    drop(held);
    let (ok, log) = retest(&w, *T0 + 240);
    assert!(ok, "{log}");
    assert_eq!(builds(&w).len(), 2, "{log}");
}

#[test]
fn a_recipe_gitea_cannot_show_is_skipped_with_a_reason_and_the_rest_go_on() {
    let w = world(
        "nobranch",
        world::QUICK,
        serde_json::json!({"retest_batch": 10, "retest_queue_limit": 10}),
    );
    w.gitea.inject(FaultRule::new(
        "/api/v1/repos/coop-cloud/recipe-0/branches/*",
        Fault::Status { status: 500 },
    ));
    let (ok, log) = retest(&w, *T0);
    assert!(ok, "{log}");
    assert!(
        log.contains("could not read the recipe's default branch")
            && log.contains("recipe=recipe-0"),
        "{log}"
    );
    let slots = per_slot(&w);
    assert_eq!(slots.len(), 2, "{slots:?}");
    assert!(!slots.contains_key(&(slot(*T0), "recipe-0".into())));
}

#[test]
fn a_regression_opens_one_issue_on_the_recipe_and_green_closes_it() {
    // A pipeline that fails while the world's `fail` file exists: the images "moved".
    let dir = std::env::temp_dir().join(format!("retest-issue-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let flag = dir.join("fail");
    let yaml: &'static str = Box::leak(
        format!(
            "kind: pipeline\ntype: exec\nname: cc-ci\nclone:\n  disable: true\ntrigger:\n  event: [custom]\nsteps:\n- name: install\n  commands:\n  - test ! -e {}\n",
            flag.display()
        )
        .into_boxed_str(),
    );
    let w = World::with(Opts {
        name: "issue",
        yaml,
        extra_repos: 0,
        config: serde_json::json!({"retest_open_issues": true}),
        ..Opts::default()
    });
    let issue = |n: i64| w.bot.get_issue("coop-cloud", "custom-html", n).unwrap();
    retest(&w, *T0);
    wait_all_done(&w);
    std::fs::write(&flag, "").unwrap();
    let (ok, log) = retest(&w, *T0 + 8 * DAY);
    assert!(ok, "{log}");
    wait_all_done(&w);
    assert_eq!(builds(&w).last().unwrap().status, "failure");
    let (ok, log) = retest(&w, *T0 + 8 * DAY + HOUR);
    assert!(ok, "{log}");
    assert!(log.contains("opened an issue for the regression"), "{log}");
    let first = issue(1);
    assert_eq!(first.state, "open");
    assert!(first
        .title
        .contains("custom-html's re-test fails on an unchanged commit"));
    assert!(
        first.body.contains("https://ci.example.org/runs/2.html"),
        "{}",
        first.body
    );
    // A red default branch is re-tested the next night (not a week on), failing again:
    // still the one issue.
    let before = builds(&w).len();
    let (ok, log) = retest(&w, *T0 + 8 * DAY + DAY);
    assert!(ok, "{log}");
    assert_eq!(builds(&w).len(), before + 1, "{log}");
    wait_all_done(&w);
    retest(&w, *T0 + 9 * DAY + HOUR);
    assert!(
        w.bot.get_issue("coop-cloud", "custom-html", 2).is_err(),
        "a second issue was opened"
    );
    // Green again the night after: the issue is told and closed.
    std::fs::remove_file(&flag).unwrap();
    retest(&w, *T0 + 10 * DAY);
    assert_eq!(builds(&w).len(), before + 2);
    wait_all_done(&w);
    let (ok, log) = retest(&w, *T0 + 10 * DAY + HOUR);
    assert!(ok, "{log}");
    assert!(log.contains("closed the regression's issue"), "{log}");
    assert_eq!(issue(1).state, "closed");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_night_drone_was_down_is_caught_up_once_the_next_night() {
    let w = world(
        "catchup",
        world::QUICK,
        serde_json::json!({"retest_batch": 10, "retest_queue_limit": 10}),
    );
    // Drone refuses every build all night: each firing fails, having saved its intent.
    w.drone.inject(
        FaultRule::new(
            "/api/repos/coop-cloud/cc-ci/builds",
            Fault::Status { status: 500 },
        )
        .method("POST"),
    );
    for h in 0..3 {
        let (ok, log) = retest(&w, *T0 + h * HOUR);
        assert!(!ok, "{log}");
        assert!(log.contains("creating a re-test build"), "{log}");
    }
    assert!(builds(&w).is_empty());
    w.drone.clear_faults();
    // The next night: the missed slot is not made up for; each recipe is tested once.
    let (ok, log) = retest(&w, *T0 + DAY);
    assert!(ok, "{log}");
    assert!(log.contains("this slot catches up"), "{log}");
    let slots = per_slot(&w);
    let want: BTreeMap<(String, String), usize> = ["custom-html", "recipe-0", "recipe-1"]
        .iter()
        .map(|r| ((slot(*T0 + DAY), r.to_string()), 1))
        .collect();
    assert_eq!(slots, want);
    let (ok, log) = retest(&w, *T0 + DAY + HOUR);
    assert!(ok, "{log}");
    assert_eq!(builds(&w).len(), 3, "{log}");
}
