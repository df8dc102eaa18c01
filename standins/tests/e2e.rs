//! The whole loop, end to end: a comment on Gitea → the real bridge → Drone running this
//! repository's committed `.drone.yml` → the real stage-runner with the real suites → the PR
//! comment and the dashboard. Every binary as deployed. Gitea, Drone and the exec runner are
//! the stand-ins, and in the `real_*` tests the real ones (`dev/upstream`); abra is the
//! stand-in throughout (docs/fidelity.md).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use standins::local::{Setup, World, MAINTAINER};

const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// The workspace's binaries, built once for this test run.
fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_BIN_EXE_abra"))
            .parent()
            .unwrap()
            .to_path_buf();
        let mut args = vec!["build", "-q", "--workspace", "--bins"];
        if dir.ends_with("release") {
            args.push("--release");
        }
        let ok = Command::new(env!("CARGO"))
            .args(&args)
            .current_dir(REPO)
            .status()
            .unwrap();
        assert!(ok.success(), "building the workspace");
        dir
    })
}

fn world(name: &str, webhooks: bool, poll_secs: u64) -> World {
    world_on(name, webhooks, poll_secs, false)
}

fn world_on(name: &str, webhooks: bool, poll_secs: u64, real: bool) -> World {
    World::start(setup(name, webhooks, poll_secs, real)).unwrap()
}

fn setup(name: &str, webhooks: bool, poll_secs: u64, real: bool) -> Setup {
    let dir = std::env::temp_dir().join(format!("e2e-{name}-{real}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    Setup {
        dir,
        repo: PathBuf::from(REPO).canonicalize().unwrap(),
        bin: bin_dir().to_owned(),
        webhooks,
        poll_secs,
        dashboard_secs: 0,
        capacity: 2,
        // A broken app never answers: fail it fast.
        deploy_timeout_secs: 20,
        real,
        base_domain: standins::ground::Ground::from_env().unwrap().world_domain(),
        recipes: vec![standins::local::RECIPE.into()],
        second_runner: false,
        checkouts: Vec::new(),
    }
}

fn wait<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < end,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn final_comment(w: &World, pr: i64, build: i64) -> String {
    final_comment_on(w, w.recipe(), pr, build)
}

fn final_comment_on(w: &World, recipe: &str, pr: i64, build: i64) -> String {
    wait("the final PR comment", Duration::from_secs(180), || {
        w.bot_comments_on(recipe, pr)
            .unwrap()
            .into_iter()
            .find_map(|(_, body)| {
                (body.contains(&format!("run [#{build}]")) && body.contains("Reproduce"))
                    .then_some(body)
            })
    })
}

/// The logs of the build's failed steps, as Drone stored them: what a red run says for itself.
fn failed_logs(w: &World, build: i64) -> String {
    let Some(b) = w.drone.build("coop-cloud", "cc-ci", build) else {
        return "(no build)".into();
    };
    let mut out = String::new();
    for stage in &b.stages {
        for step in stage.steps.iter().filter(|s| s.status == "failure") {
            let log = w
                .drone
                .step_log("coop-cloud", "cc-ci", build, stage.number, step.number)
                .unwrap_or_default();
            out.push_str(&format!("--- step {} ---\n", step.name));
            for l in log {
                out.push_str(&l.out);
            }
        }
    }
    out
}

/// Opens a PR made by `edit`, comments `!testme` on it, and waits for the run's final
/// comment: (the PR's head, the build, the comment, the run's summary).
fn tested_pr(
    w: &World,
    branch: &str,
    title: &str,
    edit: impl FnOnce(&Path) -> anyhow::Result<()>,
) -> (String, i64, String, serde_json::Value) {
    let (pr, sha) = w.open_pr(branch, title, edit).unwrap();
    w.comment_on(w.recipe(), pr, MAINTAINER, "!testme").unwrap();
    let b = wait("a build", Duration::from_secs(10), || {
        w.builds().into_iter().next()
    });
    let body = final_comment(w, pr, b.number);
    let sum = summary(w, b.number);
    (sha, b.number, body, sum)
}

fn head_status(w: &World, sha: &str) -> Option<(String, String, String)> {
    w.head_status(w.recipe(), sha).unwrap()
}

/// The run's summary, as stage-runner wrote it on the runner host (docs/run-summary.md).
fn summary(w: &World, build: i64) -> serde_json::Value {
    let p = w.setup.dir.join(format!("results/{build}/summary.json"));
    serde_json::from_str(&read(&p)).unwrap()
}

/// One stage of a summary.
fn stage<'a>(sum: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    sum["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no stage {name} in {sum}"))
}

/// Failing tests a PR row names; the rest are counted (ccci::verdict::MAX_FAILURES).
const NAMED_FAILURES: usize = 5;

/// Every stage the summary holds has a row on the PR saying the same: its status, its reason,
/// its failing tests, and for a red one where to look.
fn rows_match_summary(body: &str, sum: &serde_json::Value) {
    for st in sum["stages"].as_array().unwrap() {
        let name = st["name"].as_str().unwrap();
        let status = st["status"].as_str().unwrap();
        let row = body
            .lines()
            .find(|l| l.starts_with(&format!("| {name} |")))
            .unwrap_or_else(|| panic!("no row for {name}:\n{body}"));
        let mark = match status {
            "passed" => "✅ passed",
            "failed" => "❌ failed",
            "skipped" => "⏭️ skipped",
            "error" => "⚠️ error",
            other => panic!("{name} is {other} in the summary"),
        };
        assert!(row.contains(mark), "{name} is {mark} in the summary: {row}");
        let reason: String = st["reason"]
            .as_str()
            .unwrap_or("")
            .chars()
            .take(60)
            .collect();
        assert!(
            row.contains(&reason.replace('|', "\\|")),
            "{name}'s reason {reason:?} not in {row}"
        );
        for f in st["failures"]
            .as_array()
            .unwrap()
            .iter()
            .take(NAMED_FAILURES)
        {
            let f = f["name"].as_str().unwrap();
            assert!(row.contains(f), "{f} not named in {row}");
        }
        if matches!(status, "failed" | "error") {
            assert!(row.contains(&format!("#stage-{name})")), "{row}");
            assert!(row.contains("[Drone log]("), "{row}");
        }
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// `dev/local --all` in small: two recipes enrolled side by side, a PR on each, each run
/// reaching the level its recipe earns, and the overview showing both.
#[test]
fn two_recipes_reach_their_own_levels_side_by_side() {
    let w = World::start(Setup {
        recipes: vec!["custom-html".into(), "wordpress".into()],
        // MariaDB's first start and WordPress's install take longer than a broken app may.
        deploy_timeout_secs: 300,
        ..setup("side-by-side", true, 30, false)
    })
    .unwrap();
    for pr in &w.prs {
        w.comment_on(&pr.recipe, pr.number, MAINTAINER, "!testme")
            .unwrap();
    }
    let builds = wait("a build per PR", Duration::from_secs(10), || {
        let b = w.builds();
        (b.len() == 2).then_some(b)
    });
    let mut levels = std::collections::BTreeMap::new();
    for b in &builds {
        let recipe = &b.params["RECIPE"];
        let pr = w.prs.iter().find(|p| &p.recipe == recipe).unwrap();
        assert_eq!(b.params["REF"], pr.sha);
        assert_eq!(b.params["PR"], pr.number.to_string());
        let body = final_comment_on(&w, recipe, pr.number, b.number);
        assert!(
            body.contains("**passed**"),
            "{body}\n{}",
            failed_logs(&w, b.number)
        );
        let (state, desc, _) = w.head_status(recipe, &pr.sha).unwrap().unwrap();
        assert_eq!(state, "success", "{recipe}: {desc}");
        levels.insert(recipe.clone(), desc);
    }
    // custom-html ships no tests/ (a coverage gap stops it at L3); WordPress's head release
    // does, and the local operator trusts its own catalogue.
    assert_eq!(levels["custom-html"], "passed · level 3 of 5 (restores)");
    assert_eq!(levels["wordpress"], "passed · level 5 of 5 (linted)");
    w.generate_dashboard().unwrap();
    let site = w.site();
    let index = read(&site.join("index.html"));
    for recipe in ["custom-html", "wordpress"] {
        assert!(index.contains(&format!("recipes/{recipe}.html")), "{index}");
    }
    assert!(read(&site.join("badges/level/custom-html.svg")).contains(">level 3</text>"));
    assert!(read(&site.join("badges/level/wordpress.svg")).contains(">level 5</text>"));
}

#[test]
fn webhook_run_goes_green_everywhere_and_leaves_nothing() {
    green_everywhere(world("green", true, 30), Duration::from_secs(2));
}

/// Real Gitea's signed delivery, real Drone's build, the real runner's steps. Gitea queues its
/// deliveries (0.3–0.6 s here, now and then more), hence the looser bound.
#[test]
fn real_webhook_run_goes_green_everywhere_and_leaves_nothing() {
    green_everywhere(world_on("green", true, 30, true), Duration::from_secs(10));
}

fn green_everywhere(w: World, bound: Duration) {
    let t0 = Instant::now();
    let c = w.comment(MAINTAINER, "!testme").unwrap();
    let b = wait("a build", bound, || w.builds().into_iter().next());
    eprintln!("comment → build: {:?}", t0.elapsed());
    assert_eq!(b.params["RECIPE"], "custom-html");
    assert_eq!(b.params["REF"], w.sha);
    assert_eq!(b.params["PR"], w.pr.to_string());
    assert_eq!(b.params["COMMENT"], c.to_string());
    let body = final_comment(&w, w.pr, b.number);
    assert!(
        body.contains("**passed**"),
        "{body}\n{}",
        failed_logs(&w, b.number)
    );
    assert!(body.contains(&format!("--ref {}", w.sha)), "{body}");
    assert!(
        body.contains("reached **level 3 of 5 (restores)**"),
        "{body}"
    );
    rows_match_summary(&body, &summary(&w, b.number));
    let (state, desc, url) = head_status(&w, &w.sha).expect("a commit status on the head");
    assert_eq!(state, "success");
    assert_eq!(desc, "passed · level 3 of 5 (restores)");
    assert!(url.ends_with(&format!("/runs/{}.html", b.number)), "{url}");
    let b = w.drone.build("coop-cloud", "cc-ci", b.number).unwrap();
    assert_eq!(b.status, "success");
    let steps: Vec<(String, String)> = b.stages[0]
        .steps
        .iter()
        .map(|s| (s.name.clone(), s.status.clone()))
        .collect();
    let names: Vec<&str> = steps.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ccci::stage::Stage::ALL.map(|s| s.as_str()));
    assert!(steps.iter().all(|(_, s)| s == "success"), "{steps:?}");
    // The install step really ran the install tests with the params the bridge sent.
    let log = w
        .drone
        .step_log("coop-cloud", "cc-ci", b.number, 1, 2)
        .unwrap_or_default();
    let text: String = log.iter().map(|l| l.out.as_str()).collect();
    assert!(text.contains("phase install"), "{text}");
    assert!(
        text.contains(&w.sha[..10]) || text.contains("custom-html-"),
        "{text}"
    );

    w.generate_dashboard().unwrap();
    let site = w.site();
    let index = read(&site.join("index.html"));
    assert!(index.contains("custom-html"));
    assert!(index.to_lowercase().contains("passed") || index.to_lowercase().contains("passing"));
    assert!(read(&site.join("recipes/custom-html.html")).contains(&format!("{}", b.number)));
    let run = read(&site.join(format!("runs/{}.html", b.number)));
    for stage in ["install", "upgrade", "backup"] {
        assert!(run.contains(stage), "run page lacks {stage}");
    }
    assert!(read(&site.join("badges/custom-html.svg")).contains("passing"));
    assert!(read(&site.join("badges/level/custom-html.svg")).contains(">level 3</text>"));
    // The card the comment embeds is where the comment says, and heads the run page.
    let card = format!("runs/{}/artifacts/card.png", b.number);
    assert!(body.contains(&format!("/{card})")), "{body}");
    let png = std::fs::read(site.join(&card)).unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.len() < 200_000);
    assert!(run.contains("alt=\"the run's summary card\""), "{run}");
    assert!(
        run.contains("landing.png"),
        "the landing screenshot is on the run page"
    );
    // custom-html ships no tests/: a coverage gap, said so on the run page and on the PR.
    assert!(run.contains("<b class=gap>coverage gap</b>"), "{run}");
    assert!(
        body.contains("| recipe-tests | ⏭️ skipped · coverage gap |"),
        "{body}"
    );
    if !w.setup.real {
        reproduce_as_pasted(&w, &body);
    }
    assert!(
        std::fs::read_dir(w.setup.dir.join("state/runs")).map_or(true, |mut d| d.next().is_none()),
        "run directories left"
    );
    assert_eq!(
        standins::ground::leftovers(&w.setup.base_domain),
        Vec::<String>::new()
    );
    w.stop();
}

/// The PR comment's reproduce command, pasted into a shell as a maintainer would, once their
/// config is where it says (docs/runbook.md, "Reproduce"): here the world's own abra server.
fn reproduce_as_pasted(w: &World, body: &str) {
    let line = body
        .lines()
        .find(|l| l.starts_with("Reproduce on your own abra server"))
        .unwrap_or_else(|| panic!("no reproduce line in {body}"));
    let cmd = line.rsplit('`').nth(1).expect("the command in backticks");
    assert!(cmd.starts_with("cc-ci-stage-runner local "), "{cmd}");
    let home = w.setup.dir.join("maintainer");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&read(&w.config("stage-runner.json"))).unwrap();
    cfg["state_dir"] = home.join("state").display().to_string().into();
    cfg["results_dir"] = home.join("results").display().to_string().into();
    cfg["recipes"] = serde_json::json!([]);
    std::fs::create_dir_all(home.join(".config/cc-ci")).unwrap();
    std::fs::write(
        home.join(".config/cc-ci/stage-runner.json"),
        cfg.to_string(),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        w.setup.bin.display(),
        std::env::var("PATH").unwrap()
    );
    let text = run_ok(
        Command::new("sh")
            .args(["-c", cmd])
            .env("HOME", &home)
            .env("PATH", path),
    );
    for stage in ["install", "upgrade", "backup", "teardown"] {
        assert!(
            text.contains(&format!("stage {stage}: passed")),
            "{stage} did not pass when reproduced:\n{text}"
        );
    }
}

#[test]
fn polling_alone_finds_the_comment_within_one_interval() {
    let w = world("poll", false, 3);
    // Let the bridge's first cycle pass, so the comment waits for the next one.
    std::thread::sleep(Duration::from_secs(1));
    let t0 = Instant::now();
    w.comment(MAINTAINER, "!testme").unwrap();
    let b = wait("a build from polling", Duration::from_secs(3 + 2), || {
        w.builds().into_iter().next()
    });
    eprintln!("comment → build by polling: {:?}", t0.elapsed());
    let body = final_comment(&w, w.pr, b.number);
    assert!(body.contains("**passed**"), "{body}");
    w.stop();
}

#[test]
fn a_broken_release_is_red_everywhere() {
    red_everywhere(world("red", true, 30));
}

#[test]
fn real_a_broken_release_is_red_everywhere() {
    red_everywhere(world_on("red", true, 30, true));
}

fn red_everywhere(w: World) {
    // The PR swaps the image for one no registry here has (and shortens abra's wait for it):
    // the deploy fails, and the engine's reason reaches the maintainer.
    let (head, build, body, sum) = tested_pr(&w, "break-it", "Switch the image", |dir| {
        let p = dir.join("compose.yml");
        let text = std::fs::read_to_string(&p)?;
        std::fs::write(
            &p,
            text.replace("image: nginx:1.27.2", "image: busybox:1.36")
                .replace("${TIMEOUT:-120}", "${TIMEOUT:-10}"),
        )?;
        Ok(())
    });
    assert!(
        body.contains("**failed**") || body.contains("**could not run**"),
        "{body}"
    );
    assert!(body.contains("| install | ❌ failed |"), "{body}");
    // Later stages were skipped, not passed, whatever Drone calls their steps.
    assert_eq!(stage(&sum, "upgrade")["reason"], "install failed");
    rows_match_summary(&body, &sum);
    let (state, desc, _) = head_status(&w, &head).expect("a commit status on the head");
    assert_eq!(state, "failure");
    assert!(
        desc.starts_with("failed at install: the deploy failed"),
        "{desc}"
    );
    // The engine's own reason, on the PR as on the run page.
    let install = body.lines().find(|l| l.starts_with("| install |")).unwrap();
    assert!(install.contains("No such image: busybox:1.36"), "{install}");
    w.generate_dashboard().unwrap();
    let site = w.site();
    assert!(read(&site.join("badges/custom-html.svg")).contains("failing"));
    let run = read(&site.join(format!("runs/{build}.html")));
    assert!(
        run.to_lowercase().contains("failed"),
        "run page shows the failure"
    );
    // The engine's own reason, where the maintainer follows the run's link.
    assert!(run.contains("No such image: busybox:1.36"), "{run}");
    // The app's tasks and logs, saved before teardown, on the page and linked from the row.
    assert!(
        run.contains(
            "<details class=diag open><summary>artifacts/install/diagnostics.txt</summary>"
        ),
        "{run}"
    );
    let diag = &run[run.find("class=diag").unwrap()..];
    assert!(diag.contains("tasks (name, image, state, error)"), "{diag}");
    assert!(diag.contains("No such image: busybox:1.36"), "{diag}");
    assert!(
        install.contains(&format!("/runs/{build}/artifacts/install/diagnostics.txt)")),
        "{install}"
    );
    w.stop();
}

#[test]
fn a_new_testme_supersedes_the_run_in_flight() {
    supersede(world("supersede", true, 30));
}

#[test]
fn real_a_new_testme_supersedes_the_run_in_flight() {
    supersede(world_on("supersede", true, 30, true));
}

fn supersede(w: World) {
    w.comment(MAINTAINER, "!testme").unwrap();
    // Wait until the first run is deploying, then ask again.
    wait("the first run's install", Duration::from_secs(30), || {
        let b = w.drone.build("coop-cloud", "cc-ci", 1)?;
        b.stages
            .first()?
            .steps
            .iter()
            .any(|s| s.name == "install" && s.status == "running")
            .then_some(())
    });
    w.comment(MAINTAINER, "!testme").unwrap();
    let superseded = wait("the superseded comment", Duration::from_secs(30), || {
        w.bot_comments()
            .unwrap()
            .into_iter()
            .find_map(|(_, b)| (b.contains("run [#1]") && b.contains("superseded")).then_some(b))
    });
    assert!(superseded.contains("by run #2"), "{superseded}");
    let first = w.drone.build("coop-cloud", "cc-ci", 1).unwrap();
    assert_eq!(first.status, "killed", "cancelled in Drone");
    let body = final_comment(&w, w.pr, 2);
    assert!(body.contains("**passed**"), "{body}");
    // The cancelled run tore itself down (its shell was killed; stage-runner noticed).
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        let left = standins::ground::leftovers(&w.setup.base_domain);
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < end, "left on the engine: {left:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
    w.stop();
}

/// A new recipe's first PR: nothing was published before it, so upgrade is skipped — a fact
/// of the recipe, declared, said so on the PR — and the ladder climbs past it (docs/levels.md).
#[test]
fn a_pr_with_no_earlier_release_shows_upgrade_skipped_with_the_reason() {
    let w = world("norelease", true, 30);
    let (sha, _, body, sum) = tested_pr(&w, "first-release", "Add the recipe", |dir| {
        git_in(dir, &["checkout", "-q", "--orphan", "fresh-start"]);
        std::fs::write(dir.join("README.md"), "# custom-html\n\nA new recipe.\n")?;
        Ok(())
    });
    let up = stage(&sum, "upgrade");
    assert_eq!(up["status"], "skipped", "{body}");
    assert_eq!(
        up["reason"],
        "custom-html has no earlier published release to upgrade from"
    );
    rows_match_summary(&body, &sum);
    assert_eq!(up["skip"], "declared");
    assert!(
        body.contains("| upgrade | ⏭️ skipped (declared) |"),
        "{body}"
    );
    assert!(
        body.contains("reached **level 3 of 5 (restores)**"),
        "{body}"
    );
    let (state, desc, _) = head_status(&w, &sha).unwrap();
    assert_eq!(
        (state.as_str(), desc.as_str()),
        ("success", "passed · level 3 of 5 (restores)")
    );
    w.stop();
}

/// The recipe's own tests fail: the row names the failing test and its message.
#[test]
fn a_failing_recipe_test_is_named_on_the_pr() {
    let w = world("recipetest", true, 30);
    // The operator trusts this recipe's own tests (stage-runner's trusted_recipes).
    let cfg = w.config("stage-runner.json");
    let mut c: serde_json::Value = serde_json::from_str(&read(&cfg)).unwrap();
    c["trusted_recipes"] = serde_json::json!(["custom-html"]);
    std::fs::write(&cfg, c.to_string()).unwrap();
    let (sha, _, body, sum) = tested_pr(&w, "own-tests", "Add a test", |dir| {
        std::fs::create_dir_all(dir.join("tests"))?;
        std::fs::write(
            dir.join("tests/test_landing.py"),
            "def test_landing_page_says_welcome(http):\n    r = http.get('/')\n    assert 'Welcome to the recipe' in r.text, 'the landing page lost its welcome'\n",
        )?;
        git_in(dir, &["add", "tests"]);
        Ok(())
    });
    assert_eq!(stage(&sum, "recipe-tests")["status"], "failed", "{body}");
    rows_match_summary(&body, &sum);
    let row = body
        .lines()
        .find(|l| l.starts_with("| recipe-tests |"))
        .unwrap();
    assert!(row.contains("test_landing_page_says_welcome"), "{row}");
    assert!(row.contains("the landing page lost its welcome"), "{row}");
    assert!(
        body.contains("reached **level 3 of 5 (restores)**"),
        "{body}"
    );
    let (state, desc, _) = head_status(&w, &sha).unwrap();
    assert_eq!(state, "failure");
    assert!(
        desc.starts_with("failed at recipe-tests: tests failed in phase install (test_landing_page_says_welcome)"),
        "{desc}"
    );
    w.stop();
}

/// The host is misconfigured (its abra server is gone): an infrastructure error, not the
/// recipe's failure, and every row says what became of its stage.
#[test]
fn an_infrastructure_error_is_an_error_row_not_a_failure() {
    let w = world("infra", true, 30);
    let cfg = w.config("stage-runner.json");
    let mut c: serde_json::Value = serde_json::from_str(&read(&cfg)).unwrap();
    c["server"] = "gone.example".into();
    std::fs::write(&cfg, c.to_string()).unwrap();
    w.comment(MAINTAINER, "!testme").unwrap();
    let b = wait("a build", Duration::from_secs(10), || {
        w.builds().into_iter().next()
    });
    let body = final_comment(&w, w.pr, b.number);
    assert!(body.contains("**could not run** ⚠️"), "{body}");
    // prepare got far enough to start the summary: its error is recorded there too.
    let sum = summary(&w, b.number);
    assert_eq!(stage(&sum, "prepare")["status"], "error");
    rows_match_summary(&body, &sum);
    let prepare = body.lines().find(|l| l.starts_with("| prepare |")).unwrap();
    assert!(prepare.contains("⚠️ error"), "{prepare}");
    assert!(
        prepare.contains("abra server gone.example is not set up"),
        "{prepare}"
    );
    assert!(prepare.contains("#stage-prepare)"), "{prepare}");
    let install = body.lines().find(|l| l.starts_with("| install |")).unwrap();
    assert!(
        install.contains("⏭️ not run") && install.contains("an earlier step failed"),
        "{install}"
    );
    for stage in ["upgrade", "backup", "recipe-tests"] {
        let row = body
            .lines()
            .find(|l| l.starts_with(&format!("| {stage} |")))
            .unwrap();
        assert!(
            row.contains("⏭️ skipped") && row.contains("prepare did not pass"),
            "{row}"
        );
    }
    let (state, desc, _) = head_status(&w, &w.sha).unwrap();
    assert_eq!(state, "error");
    assert!(
        desc.starts_with("could not run at prepare: abra server gone.example"),
        "{desc}"
    );
    assert!(
        std::fs::read_dir(w.setup.dir.join("state/runs")).map_or(true, |mut d| d.next().is_none()),
        "run directories left"
    );
    w.stop();
}

fn git_in(dir: &Path, args: &[&str]) {
    let ok = Command::new("git")
        .args(args)
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(ok.success(), "git {args:?}");
}

/// README's `dev/local --all --once`: every stand-in recipe gets its demo PR and its run, and
/// the runs reach the levels their recipes earn, side by side.
#[test]
#[ignore = "heavy: every stand-in recipe's run, n8n's two 1.3 GB images included (dev/test --all)"]
fn dev_local_all_runs_every_recipe_and_each_reaches_its_level() {
    let text = run_ok(
        Command::new(format!("{REPO}/dev/local"))
            .args(["--all", "--once"])
            .current_dir(REPO),
    );
    let mut levels = std::collections::BTreeSet::new();
    for recipe in Setup::all_recipes().unwrap() {
        let line = status_line(&text, &recipe);
        let (_, status) = line.split_once(": ").unwrap();
        assert!(status.starts_with("success — passed · level "), "{line}");
        levels.insert(status.to_owned());
    }
    assert!(levels.len() >= 2, "{levels:?}");
    assert!(text.contains("dashboard: http://127.0.0.1:"), "{text}");
}

/// `dev/local --recipe PATH --ref REF` (ccci-local, which dev/local runs after setting up the
/// engine): a maintainer's own recipe checkout, which no catalogue knows, runs the same loop
/// on the real engine with the generic floor, since cc-ci has no tests/<recipe>/ for it.
#[test]
fn ccci_local_runs_a_recipe_checkout_from_disk() {
    let tmp = std::env::temp_dir().join(format!("e2e-checkout-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    // A recipe of the maintainer's own: custom-html's releases under another name.
    let src = tmp.join("src/my-html");
    std::fs::create_dir_all(tmp.join("src")).unwrap();
    let copied = Command::new("cp")
        .arg("-r")
        .arg(standins::abra::catalogue::source_dir().join("custom-html"))
        .arg(&src)
        .status()
        .unwrap();
    assert!(copied.success());
    for e in std::fs::read_dir(&src).unwrap() {
        let env = e.unwrap().path().join(".env.sample");
        let text = std::fs::read_to_string(&env).unwrap();
        std::fs::write(&env, text.replace("TYPE=custom-html", "TYPE=my-html")).unwrap();
    }
    let checkout = tmp.join("my-html");
    standins::abra::catalogue::build_recipe(&src, &checkout).unwrap();
    let head = String::from_utf8(
        Command::new("git")
            .args(["rev-parse", "HEAD"])
            .current_dir(&checkout)
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let bin = bin_dir();
    let text = run_ok(
        Command::new(bin.join("ccci-local"))
            .args(["--repo", REPO, "--bin"])
            .arg(bin)
            .arg("--dir")
            .arg(tmp.join("world"))
            .args(["--once", "--no-webhooks", "--recipe"])
            .arg(&checkout)
            .args(["--ref", head.trim()]),
    );
    let line = status_line(&text, "my-html");
    assert!(
        line.contains("success — passed · level 3 of 5 (restores)"),
        "{line}"
    );
    let _ = std::fs::remove_dir_all(&tmp);
}

/// Runs `cmd` with no stdin, asserts it succeeded, and returns its stdout.
fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.stdin(std::process::Stdio::null()).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{cmd:?}:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// The line in dev/local's output that gives the commit status of `recipe`'s run.
fn status_line<'a>(text: &'a str, recipe: &str) -> &'a str {
    let said = format!("commit status cc-ci/testme on {recipe} ");
    text.lines()
        .find(|l| l.contains(&said))
        .unwrap_or_else(|| panic!("no run of {recipe}:\n{text}"))
}

/// `docker` on the project's engine (DOCKER_HOST from dev/engine), checked.
fn docker(args: &[&str]) {
    let out = Command::new("docker").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Issue 17 on the real swarm: the scheduled re-test of a recipe's default branch runs the
/// whole pipeline; when the image under an unchanged commit's tag changes, the next re-test
/// fails, and the index, the feed and the weekly page call it a regression, naming the image.
#[test]
fn an_image_changed_under_an_unchanged_commit_is_a_regression_on_the_site() {
    let w = world("regression", false, 30);
    // A tag of this test's own, so nothing else on the engine sees it move.
    let tag = format!("ccci/regress-{}:1", std::process::id());
    docker(&["tag", "nginx:1.27.2", &tag]);
    struct Untag(String);
    impl Drop for Untag {
        fn drop(&mut self) {
            let _ = Command::new("docker").args(["rmi", "-f", &self.0]).output();
        }
    }
    let _untag = Untag(tag.clone());
    let head = w
        .push_main(w.recipe(), "Pin our own nginx build", |dir| {
            let compose = dir.join("compose.yml");
            let text = std::fs::read_to_string(&compose)?;
            std::fs::write(
                &compose,
                text.replace("image: nginx:1.27.2", &format!("image: {tag}")),
            )?;
            Ok(())
        })
        .unwrap();
    let retest = |now: i64| {
        let out = Command::new(bin_dir().join("cc-ci-bridge"))
            .arg("--config")
            .arg(w.config("bridge.json"))
            .args(["--retest", "--now", &now.to_string()])
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{log}");
        log
    };
    let finished = |n: i64| {
        wait("the re-test to finish", Duration::from_secs(240), || {
            w.drone
                .build("coop-cloud", "cc-ci", n)
                .filter(|b| !matches!(b.status.as_str(), "pending" | "running"))
        })
    };
    let now = standins::gitea::clock::real_now();
    let log = retest(now);
    let b = wait("a scheduled build", Duration::from_secs(10), || {
        w.builds().into_iter().next()
    });
    assert_eq!(b.params["REF"], head, "{log}");
    assert_eq!(b.params["PR"], "0");
    assert!(b.params.contains_key("SCHEDULE"), "{:?}", b.params);
    let green = finished(b.number);
    assert_eq!(green.status, "success", "{}", failed_logs(&w, b.number));
    let sum = summary(&w, b.number);
    assert_eq!(sum["images"][0]["service"], "app", "{sum}");
    assert_eq!(sum["images"][0]["image"], tag.as_str(), "{sum}");

    // Upstream moves the tag: same commit, another image (one whose process exits at once).
    docker(&["tag", "postgres:15", &tag]);
    // Unchanged and green: due again only after retest_unchanged_days (7).
    let log = retest(now + 8 * 86_400);
    let red = wait("the second re-test", Duration::from_secs(10), || {
        w.builds().into_iter().nth(1)
    });
    assert_eq!(red.params["REF"], head, "{log}");
    let red = finished(red.number);
    assert_ne!(red.status, "success");

    w.generate_dashboard().unwrap();
    let site = w.site();
    let index = read(&site.join("index.html"));
    assert!(
        index.contains(&format!("regression since #{}", green.number)),
        "{index}"
    );
    let feed = read(&site.join("feed.atom"));
    assert!(
        feed.contains(&format!(
            "custom-html #{}: regression on main (passed in #{} on the same commit)",
            red.number, green.number
        )),
        "{feed}"
    );
    assert!(
        feed.contains(&format!("app: {tag} is another image now")),
        "{feed}"
    );
    let week = read(&site.join("weekly.html"));
    assert!(
        week.contains(&format!(
            "#{}</a> <span class=rg>regression</span> since #{}",
            red.number, green.number
        )),
        "{week}"
    );
}

/// A TCP relay on 127.0.0.1 in front of the bridge, standing for the network between a
/// runner host and the server: it passes everything, or, once armed, holds the first upload
/// of an artifact after half its body, as a host that dies mid-upload leaves it.
struct Relay {
    addr: std::net::SocketAddr,
    armed: std::sync::Arc<std::sync::atomic::AtomicBool>,
    held: std::sync::Arc<std::sync::atomic::AtomicBool>,
    release: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Relay {
    fn start(upstream: String) -> Relay {
        use std::io::{Read, Write};
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let (armed, held, release) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let (a, h, r) = (armed.clone(), held.clone(), release.clone());
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(mut c) = c else { continue };
                let Ok(mut up) = std::net::TcpStream::connect(&upstream) else {
                    continue;
                };
                let (a, h, r) = (a.clone(), h.clone(), r.clone());
                std::thread::spawn(move || {
                    let _ = c.set_read_timeout(Some(Duration::from_secs(60)));
                    let mut head = Vec::new();
                    let mut b = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") && head.len() < 64 * 1024 {
                        if c.read(&mut b).unwrap_or(0) == 0 {
                            return;
                        }
                        head.push(b[0]);
                    }
                    let text = String::from_utf8_lossy(&head).into_owned();
                    let hold = text.contains("/artifacts/")
                        && a.load(Ordering::SeqCst)
                        && !h.swap(true, Ordering::SeqCst);
                    if up.write_all(&head).is_err() {
                        return;
                    }
                    if hold {
                        let len: usize = text
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().to_owned())
                            })
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(0);
                        let mut half = vec![0u8; len / 2];
                        if c.read_exact(&mut half).is_ok() {
                            let _ = up.write_all(&half);
                        }
                        let end = Instant::now() + Duration::from_secs(300);
                        while !r.load(Ordering::SeqCst) && Instant::now() < end {
                            std::thread::sleep(Duration::from_millis(50));
                        }
                        // The host is gone: its connection ends mid-body.
                        let _ = up.shutdown(std::net::Shutdown::Both);
                        return;
                    }
                    let mut back = up.try_clone().unwrap();
                    let mut front = c.try_clone().unwrap();
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut back, &mut front);
                        let _ = front.shutdown(std::net::Shutdown::Write);
                    });
                    let _ = std::io::copy(&mut c, &mut up);
                    let _ = up.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        Relay {
            addr,
            armed,
            held,
            release,
        }
    }
}

/// The figures a runner host's step logs give of its shipping: (files, bytes, requests).
fn shipped(w: &World, build: i64) -> (u64, u64, u64) {
    let b = w.drone.build("coop-cloud", "cc-ci", build).unwrap();
    let mut t = (0, 0, 0);
    for step in &b.stages[0].steps {
        let log = w
            .drone
            .step_log("coop-cloud", "cc-ci", build, 1, step.number)
            .unwrap_or_default();
        for l in log {
            let Some(rest) = l.out.trim().strip_prefix("results: shipped ") else {
                continue;
            };
            let field = |k: &str| {
                rest.split_whitespace()
                    .find_map(|f| f.strip_prefix(k))
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            t.0 += field("files=");
            t.1 += field("bytes=");
            t.2 += field("requests=");
        }
    }
    t
}

fn machine(w: &World, build: i64) -> String {
    w.drone.build("coop-cloud", "cc-ci", build).unwrap().stages[0]
        .machine
        .clone()
}

/// Two runner hosts on the real Drone: the server's runner, which writes the results
/// directory itself, and a second host that shares no disk with the server and ships each
/// stage's results to the bridge. A burst of runs spreads over both, and every run's page has
/// its details, card and screenshot; then the second host dies in the middle of an upload,
/// and its run shows what arrived and says what did not, with the server's runs untouched.
#[test]
fn real_two_runner_hosts_ship_every_run_and_a_dead_host_loses_only_its_own() {
    use standins::local::{RUNNER_1, RUNNER_2};
    use std::sync::atomic::Ordering;
    let mut w = World::start(Setup {
        capacity: 1,
        second_runner: true,
        ..setup("hosts", false, 2, true)
    })
    .unwrap();
    let mut prs = vec![w.pr];
    for i in 1..3 {
        let (pr, _) = w
            .open_pr(&format!("burst-{i}"), &format!("Burst {i}"), |dir| {
                let readme = dir.join("README.md");
                let text = std::fs::read_to_string(&readme)?;
                std::fs::write(&readme, format!("{text}\nBurst {i}.\n"))?;
                Ok(())
            })
            .unwrap();
        prs.push(pr);
    }
    for pr in &prs {
        w.comment_on(w.recipe(), *pr, MAINTAINER, "!testme")
            .unwrap();
    }
    wait("a build per PR", Duration::from_secs(30), || {
        (w.builds().len() >= prs.len()).then_some(())
    });
    let mut runs = Vec::new();
    for pr in &prs {
        let b = wait("the PR's build", Duration::from_secs(30), || {
            w.builds()
                .into_iter()
                .filter(|b| b.params["PR"] == pr.to_string())
                .max_by_key(|b| b.number)
        });
        let body = final_comment(&w, *pr, b.number);
        assert!(
            body.contains("**passed**"),
            "{body}\n{}",
            failed_logs(&w, b.number)
        );
        runs.push(b.number);
    }
    let machines: std::collections::BTreeSet<String> =
        runs.iter().map(|n| machine(&w, *n)).collect();
    assert_eq!(
        machines,
        [RUNNER_1.to_owned(), RUNNER_2.to_owned()].into(),
        "the burst ran on both hosts"
    );
    w.generate_dashboard().unwrap();
    let site = w.site();
    let host2 = w.second.as_ref().unwrap();
    for n in &runs {
        let page = read(&site.join(format!("runs/{n}.html")));
        for stage in ["install", "upgrade", "backup"] {
            assert!(
                page.contains(&format!(
                    "<tr id=stage-{stage}><th scope=row>{stage}</th><td><i class=p>"
                )),
                "run {n} on {}: {stage} has no details\n{page}",
                machine(&w, *n)
            );
        }
        assert!(
            page.contains("alt=\"the run's summary card\""),
            "run {n}: no card"
        );
        assert!(page.contains("landing.png"), "run {n}: no screenshot");
        let card = std::fs::read(site.join(format!("runs/{n}/artifacts/card.png"))).unwrap();
        assert!(card.starts_with(b"\x89PNG"));
        if machine(&w, *n) == RUNNER_2 {
            // What the dashboard shows came over the wire: the second host's own copy is
            // elsewhere, and the server's is the one it shipped.
            assert!(host2.results.join(format!("{n}/summary.json")).is_file());
            let (files, bytes, requests) = shipped(&w, *n);
            let b = w.drone.build("coop-cloud", "cc-ci", *n).unwrap();
            let arrived = std::fs::metadata(w.setup.dir.join(format!("results/{n}/summary.json")))
                .unwrap()
                .modified()
                .unwrap()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs() as i64;
            eprintln!(
                "shipping run {n}: files={files} bytes={bytes} requests={requests}; last summary arrived {} s before the build's end",
                b.finished - arrived
            );
            assert!(files > 0 && requests >= files);
            assert!(
                arrived <= b.finished,
                "the details were there when the build ended"
            );
        }
    }

    // The second host dies in the middle of an upload.
    let relay = Relay::start(w.bridge_listen.clone());
    let cfg_path = host2.config.clone();
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&cfg_path).unwrap()).unwrap();
    cfg["results_url"] = format!("http://{}", relay.addr).into();
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    relay.armed.store(true, Ordering::SeqCst);
    let before = w.builds().len();
    for pr in &prs[..2] {
        w.comment_on(w.recipe(), *pr, MAINTAINER, "!testme")
            .unwrap();
    }
    let pair = wait("two more builds", Duration::from_secs(30), || {
        let b = w.builds();
        (b.len() >= before + 2).then_some(b)
    });
    let mut new: Vec<i64> = pair
        .iter()
        .map(|b| b.number)
        .filter(|n| !runs.contains(n))
        .collect();
    new.sort();
    wait("an upload held mid-body", Duration::from_secs(300), || {
        relay.held.load(Ordering::SeqCst).then_some(())
    });
    w.second.as_mut().unwrap().runner.kill_host();
    relay.release.store(true, Ordering::SeqCst);
    let dead = *new
        .iter()
        .find(|n| machine(&w, **n) == RUNNER_2)
        .expect("a run on host 2");
    let alive = *new
        .iter()
        .find(|n| machine(&w, **n) == RUNNER_1)
        .expect("a run on host 1");
    wait(
        "the bridge to see the cut upload",
        Duration::from_secs(30),
        || {
            w.bridge_log()
                .lines()
                .any(|l| l.contains(&format!("build={dead} ")) && l.contains("status=400"))
                .then_some(())
        },
    );
    // Its builds stay "running" in Drone until someone cancels them, as on a real host loss.
    if let standins::local::LocalDrone::Real(r) = &w.drone {
        let _ = r.0.call(
            "DELETE",
            &format!("/api/repos/coop-cloud/cc-ci/builds/{dead}"),
        );
    }
    let alive_pr: i64 = w.drone.build("coop-cloud", "cc-ci", alive).unwrap().params["PR"]
        .parse()
        .unwrap();
    let body = final_comment(&w, alive_pr, alive);
    assert!(
        body.contains("**passed**"),
        "{body}\n{}",
        failed_logs(&w, alive)
    );
    wait(
        "the cancelled build to end",
        Duration::from_secs(60),
        || {
            w.drone
                .build("coop-cloud", "cc-ci", dead)
                .is_some_and(|b| b.status != "running" && b.status != "pending")
                .then_some(())
        },
    );
    // Nothing half-received shows anywhere: the dead run has at most whole files from its
    // stages before the cut, and a summary that lists only what arrived.
    let results = w.setup.dir.join("results");
    assert_eq!(
        std::fs::read_dir(results.join(".incoming"))
            .unwrap()
            .count(),
        0,
        "no half-received file left"
    );
    let sum: serde_json::Value = serde_json::from_slice(
        &std::fs::read(results.join(format!("{dead}/summary.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(sum["finished"], 0, "{sum}");
    for st in sum["stages"].as_array().unwrap() {
        for a in st["artifacts"].as_array().unwrap() {
            let p = results.join(format!("{dead}/{}", a.as_str().unwrap()));
            assert!(
                p.is_file(),
                "the summary lists {} which is not whole here",
                p.display()
            );
        }
    }
    w.generate_dashboard().unwrap();
    let page = read(&site.join(format!("runs/{dead}.html")));
    assert!(page.contains("did not report their details here"), "{page}");
    let page = read(&site.join(format!("runs/{alive}.html")));
    assert!(
        page.contains("<tr id=stage-backup><th scope=row>backup</th><td><i class=p>"),
        "{page}"
    );
    for n in &runs {
        let page = read(&site.join(format!("runs/{n}.html")));
        assert!(
            page.contains("alt=\"the run's summary card\""),
            "run {n} lost its card"
        );
    }
}
