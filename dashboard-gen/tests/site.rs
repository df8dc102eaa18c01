//! The generated site's content, from builds the stand-in Drone really ran and the summaries
//! a stage-runner would have written: each status, each stage mark, skip reasons, the
//! untested recipe, levels, flaky marks, links, badges, summary.json, the feeds, and
//! escaping of every outside string.

mod support;

use ccci::summary::Status;
use standins::drone::{Commit, RunnerPatch};
use support::*;

const EVIL: &str = r#"<script>alert("x")</script> & 'quoted'"#;

fn no_raw_script(w: &World) {
    // The site has no scripts of its own: any `<script` is an outside string let through.
    for rel in files(&w.site()) {
        let bytes = std::fs::read(w.site().join(&rel)).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains("<script"),
            "{} contains a raw <script",
            rel.display()
        );
        assert!(
            !text.contains("'quoted'"),
            "{} contains an unescaped quote",
            rel.display()
        );
    }
}

#[test]
fn every_status_mark_level_and_outside_string() {
    let recipes = [
        "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf",
    ];
    let w = World::new("content", &recipes, 4);

    // Outside strings with markup and quotes: the pipeline commit's message and author, a
    // branch name (the build's `source`).
    let evil_sha = "fedcba9876543210fedcba9876543210fedcba98";
    w.drone
        .add_commit(
            OWNER,
            PIPELINE,
            Commit {
                sha: evil_sha.into(),
                message: format!("msg {EVIL}"),
                author_login: format!("user{EVIL}"),
                author_name: format!("name {EVIL}"),
                ..Commit::default()
            },
        )
        .unwrap();
    let evil_branch = r#"br<script>"x"'quoted'"#;
    w.drone
        .set_branch(OWNER, PIPELINE, evil_branch, evil_sha)
        .unwrap();

    // alpha: everything passed, a screenshot kept; built from the evil branch.
    let a = w.start("alpha", SHA, 4, Some(evil_branch), &[]);
    assert_eq!(w.wait(a), "success");
    let mut install = stage("install", Status::Passed);
    install.tests = ccci::summary::Counts {
        total: 3,
        passed: 3,
        failed: 0,
        skipped: 0,
    };
    install.artifacts = vec![
        "artifacts/install/index.png".into(),
        "artifacts/../../../etc/passwd".into(),
        "artifacts/elsewhere/hostname".into(),
        "artifacts/install/linked.png".into(),
    ];
    w.save_summary(&summary(
        a,
        "alpha",
        SHA,
        4,
        vec![
            install,
            stage("upgrade", Status::Passed),
            stage("backup", Status::Passed),
            stage("recipe-tests", Status::Passed),
        ],
    ));
    w.artifact(a, "artifacts/install/index.png", b"\x89PNG\r\n\x1a\nfake");
    // A test swapped a directory of its artifacts for a symlink, and linked a file: what they
    // point at is the host's, never the site's.
    std::os::unix::fs::symlink("/etc", w.results.join(format!("{a}/artifacts/elsewhere"))).unwrap();
    std::os::unix::fs::symlink(
        "/etc/hostname",
        w.results.join(format!("{a}/artifacts/install/linked.png")),
    )
    .unwrap();

    // bravo: upgrade failed with evil test names and messages; the same ref passed upgrade
    // once before (flaky).
    let b0 = w.run("bravo", SHA2, 7, None);
    w.save_summary(&summary(
        b0,
        "bravo",
        SHA2,
        7,
        vec![
            stage("install", Status::Passed),
            stage("upgrade", Status::Passed),
            stage("backup", Status::Passed),
            stage("recipe-tests", Status::Passed),
        ],
    ));
    let b = w.run("bravo", SHA2, 7, Some("upgrade"));
    let mut up = stage("upgrade", Status::Failed);
    up.failures = vec![failure(
        &format!("bravo/test_upgrade.py::test_{EVIL}"),
        &format!("AssertionError: {EVIL}\nsecond line"),
    )];
    up.tests = ccci::summary::Counts {
        total: 2,
        passed: 1,
        failed: 1,
        skipped: 0,
    };
    w.save_summary(&summary(
        b,
        "bravo",
        SHA2,
        7,
        vec![stage("install", Status::Passed), up],
    ));

    // charlie: backup skipped with a reason (with markup and quotes in it).
    let c = w.run("charlie", SHA, 9, None);
    let mut skip = stage("backup", Status::Skipped);
    skip.reason = format!("no backup configured {EVIL}");
    let mut rt = stage("recipe-tests", Status::Skipped);
    rt.reason = "recipe has no tests/ directory".into();
    w.save_summary(&summary(
        c,
        "charlie",
        SHA,
        9,
        vec![
            stage("install", Status::Passed),
            stage("upgrade", Status::Passed),
            skip,
            rt,
        ],
    ));

    // echo: cancelled while running.
    let gate_e = w.dir.join("gate-echo");
    let e = w.start("echo", SHA, 11, None, &[("GATE", gate_e.to_str().unwrap())]);
    w.drone
        .wait_build_until(OWNER, PIPELINE, e, WAIT, |b| b.status == "running")
        .unwrap();
    w.client.cancel(OWNER, PIPELINE, e).unwrap();
    assert_eq!(w.wait(e), "killed");

    // foxtrot: error (the runner cannot create its workspace).
    let blocker = w.dir.join("not-a-dir");
    std::fs::write(&blocker, "").unwrap();
    w.drone.set_runner(RunnerPatch {
        root: Some(blocker.join("x")),
        ..RunnerPatch::default()
    });
    let f = w.run("foxtrot", SHA, 12, None);
    w.drone.set_runner(RunnerPatch {
        root: Some(w.dir.join("runner")),
        ..RunnerPatch::default()
    });
    assert_eq!(w.drone.build(OWNER, PIPELINE, f).unwrap().status, "error");

    // delta: running (held at install), install marked running in its summary.
    let gate = w.dir.join("gate-delta");
    let d = w.start("delta", SHA, 13, None, &[("GATE", gate.to_str().unwrap())]);
    w.drone
        .wait_build_until(OWNER, PIPELINE, d, WAIT, |b| b.status == "running")
        .unwrap();
    w.save_summary(&summary(
        d,
        "delta",
        SHA,
        13,
        vec![stage("install", Status::Running)],
    ));

    let out = w.gen_ok();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("INFO dashboard: published"), "{stderr}");

    let index = w.read("index.html");
    for (recipe, status) in [
        ("alpha", "passed"),
        ("bravo", "failed"),
        ("charlie", "passed"),
        ("delta", "running"),
        ("echo", "cancelled"),
        ("foxtrot", "error"),
        ("golf", "untested"),
    ] {
        let row = index
            .lines()
            .find(|l| l.contains(&format!("href=\"recipes/{recipe}.html\"")))
            .unwrap_or_else(|| panic!("no row for {recipe}"));
        assert!(
            row.starts_with(&format!("<tr class={status}>")),
            "{recipe}: {row}"
        );
        assert!(
            row.contains(&format!("</span> {status}</span>"))
                || row.contains(&format!(" {status}</span>")),
            "{recipe}: {row}"
        );
    }
    let row = |r: &str| {
        index
            .lines()
            .find(|l| l.contains(&format!("recipes/{r}.html")))
            .unwrap()
            .to_owned()
    };
    // Marks: one per stage, by text and shape.
    assert!(row("alpha").contains("title=\"install passed\">✓</i><i class=p title=\"upgrade passed\">✓</i><i class=p title=\"backup passed\">✓</i><i class=p title=\"recipe-tests passed\">✓</i>"), "{}", row("alpha"));
    assert!(
        row("bravo").contains("<i class=\"f y\" title=\"upgrade failed (flaky)\">✗</i>"),
        "{}",
        row("bravo")
    );
    assert!(
        row("bravo").contains("title=\"backup not run\">–</i>"),
        "{}",
        row("bravo")
    );
    assert!(row("bravo").contains("~ flaky"), "{}", row("bravo"));
    assert!(row("charlie").contains("<i class=s title=\"backup skipped: no backup configured &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;quoted&#39;\">↷</i>"), "{}", row("charlie"));
    assert!(
        row("charlie").contains("title=\"recipe-tests skipped: recipe has no tests/ directory\""),
        "{}",
        row("charlie")
    );
    assert!(
        row("delta").contains("<i class=r title=\"install running\">●</i>"),
        "{}",
        row("delta")
    );
    assert!(row("golf").contains("never tested"), "{}", row("golf"));
    // Levels: derived from what passed, in order.
    assert!(
        row("alpha").contains("<span class=\"lv l4\">L4</span> tested"),
        "{}",
        row("alpha")
    );
    assert!(
        row("bravo").contains("<span class=\"lv l1\">L1</span> installs"),
        "{}",
        row("bravo")
    );
    assert!(
        row("charlie").contains("<span class=\"lv l2\">L2</span> upgrades"),
        "{}",
        row("charlie")
    );
    assert!(
        row("foxtrot").contains("<span class=\"lv l0\">L0</span> broken"),
        "{}",
        row("foxtrot")
    );
    assert!(
        row("delta").contains("<span class=\"lv\">–</span>"),
        "{}",
        row("delta")
    );
    // What was tested, links to history, the run, Drone and the PR.
    assert!(
        row("alpha").contains(&format!(
            "<a href=\"{GITEA}/recipes/alpha/pulls/4\">PR #4</a> <code>3f2e1d0</code> 1.1.0+1.27.2"
        )),
        "{}",
        row("alpha")
    );
    assert!(
        row("alpha").contains(&format!(
            "<a href=\"runs/{a}.html\">#{a}</a> · <a href=\"{}/{OWNER}/{PIPELINE}/{a}\">Drone</a>",
            w.drone.url()
        )),
        "{}",
        row("alpha")
    );
    // Counts and filters.
    assert!(
        index.contains("<li class=passed><a href=\"passed.html\"><b>2</b> ✓ passed</a></li>"),
        "{index}"
    );
    assert!(
        index.contains("<li class=untested><a href=\"untested.html\"><b>1</b> ○ untested</a></li>"),
        "{index}"
    );
    let failed = w.read("failed.html");
    assert!(failed.contains("recipes/bravo.html") && !failed.contains("recipes/alpha.html"));
    assert!(w.read("untested.html").contains("recipes/golf.html"));
    let by_age = w.read("index-age.html");
    let pos = |r: &str| by_age.find(&format!("href=\"recipes/{r}.html\"")).unwrap();
    assert!(
        pos("delta") < pos("alpha") && pos("alpha") < pos("golf"),
        "newest first, untested last"
    );

    // A run page: stages, reasons, failures, screenshots, step logs.
    let run_b = w.read(&format!("runs/{b}.html"));
    assert!(run_b.contains("<code>bravo/test_upgrade.py::test_&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;quoted&#39;</code>"), "{run_b}");
    assert!(
        run_b.contains("<pre>AssertionError: &lt;script&gt;"),
        "{run_b}"
    );
    assert!(run_b.contains("1/2 passed, 1 failed"), "{run_b}");
    for (i, st) in [
        "prepare",
        "install",
        "upgrade",
        "backup",
        "recipe-tests",
        "teardown",
    ]
    .iter()
    .enumerate()
    {
        assert!(
            // Each row is a target the PR comment links (`#stage-<stage>`).
            run_b.contains(&format!("<tr id=stage-{st}><th scope=row>{st}</th>")),
            "{st}"
        );
        assert!(
            run_b.contains(&format!(
                "href=\"{}/{OWNER}/{PIPELINE}/{b}/1/{}\">log</a>",
                w.drone.url(),
                i + 1
            )),
            "{st}"
        );
    }
    let run_a = w.read(&format!("runs/{a}.html"));
    assert!(
        run_a.contains(&format!("<img src=\"{a}/artifacts/install/index.png\"")),
        "{run_a}"
    );
    assert!(
        !run_a.contains("passwd"),
        "a path outside artifacts/ is never copied or linked"
    );
    assert!(
        !run_a.contains("hostname") && !run_a.contains("linked.png"),
        "{run_a}"
    );
    assert!(!w
        .site()
        .join(format!("runs/{a}/artifacts/elsewhere"))
        .exists());
    assert!(!w
        .site()
        .join(format!("runs/{a}/artifacts/install/linked.png"))
        .exists());
    assert_eq!(
        std::fs::read(
            w.site()
                .join(format!("runs/{a}/artifacts/install/index.png"))
        )
        .unwrap(),
        b"\x89PNG\r\n\x1a\nfake"
    );
    assert!(
        run_a.contains("<dd>br&lt;script&gt;&quot;x&quot;&#39;quoted&#39;</dd>"),
        "branch escaped: {run_a}"
    );
    assert!(run_a.contains("<pre>msg &lt;script&gt;"), "message escaped");
    assert!(run_a.contains("<dd>user&lt;script&gt;"), "author escaped");
    let run_c = w.read(&format!("runs/{c}.html"));
    assert!(
        run_c.contains("<td class=why>no backup configured &lt;script&gt;"),
        "{run_c}"
    );
    let run_f = w.read(&format!("runs/{f}.html"));
    assert!(
        run_f.contains("No run summary reached the dashboard"),
        "{run_f}"
    );

    // Recipe pages: history newest first, sparkline, badge snippet.
    let page_b = w.read("recipes/bravo.html");
    let table = &page_b[page_b.find("<table").unwrap()..];
    assert!(
        table.find(&format!("runs/{b}.html")).unwrap()
            < table.find(&format!("runs/{b0}.html")).unwrap()
    );
    assert!(
        page_b.contains("<svg class=spark")
            && page_b.contains("<title>last 2 runs of bravo: 1 passed</title>")
    );
    assert!(page_b.contains("[![cc-ci level](https://ci.example.org/badges/level/bravo.svg)](https://ci.example.org/recipes/bravo.html)"));
    assert!(w.read("recipes/golf.html").contains("Never tested"));

    // Badges.
    for (r, msg) in [
        ("alpha", "passing"),
        ("bravo", "failing"),
        ("delta", "running"),
        ("golf", "untested"),
        ("foxtrot", "failing"),
    ] {
        let svg = w.read(&format!("badges/{r}.svg"));
        assert!(
            svg.contains(&format!(">{msg}</text>"))
                && svg.contains(&format!("<title>{r}: cc-ci {msg}</title>")),
            "{r}: {svg}"
        );
        assert!(svg.contains(">cc-ci</text>"));
    }
    // The level badges, as recipe READMEs embed them: recipe and level, coloured by level.
    for (r, msg) in [("alpha", "level 4"), ("golf", "untested")] {
        let svg = w.read(&format!("badges/level/{r}.svg"));
        assert!(
            svg.contains(&format!(">{r}</text>"))
                && svg.contains(&format!(">{msg}</text>"))
                && svg.contains(&format!("<title>cc-ci: {r} {msg}</title>")),
            "{r}: {svg}"
        );
    }

    // summary.json for tools.
    let js: serde_json::Value = serde_json::from_str(&w.read("summary.json")).unwrap();
    let rec = |name: &str| {
        js["recipes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(rec("alpha")["level"], 4);
    assert_eq!(rec("bravo")["flaky"], serde_json::json!(["upgrade"]));
    assert_eq!(
        rec("charlie")["latest"]["stages"]["backup"]["mark"],
        "skipped"
    );
    assert!(
        rec("charlie")["latest"]["stages"]["backup"]["reason"]
            .as_str()
            .unwrap()
            .contains("<script>"),
        "raw in JSON, escaped only by JSON"
    );
    assert_eq!(rec("golf")["status"], "untested");
    assert_eq!(rec("golf")["latest"], serde_json::Value::Null);
    assert_eq!(js["counts"]["running"], 1);

    // Feeds.
    let feed = w.read("feed.atom");
    assert!(
        feed.starts_with("<?xml")
            && feed.contains(&format!("<id>https://ci.example.org/runs/{b}.html</id>"))
    );
    assert!(
        !feed.contains(&format!("runs/{d}.html")),
        "running builds are not in the feed yet"
    );
    assert!(w.read("recipes/bravo.atom").contains("bravo #"));

    no_raw_script(&w);
    assert_links_resolve(&w.site());
    std::fs::write(&gate, "").unwrap();
    w.wait(d);
}

#[test]
fn stable_level_needs_five_green_runs() {
    let w = World::new("stable", &["alpha"], 4);
    let all = || {
        vec![
            stage("install", Status::Passed),
            stage("upgrade", Status::Passed),
            stage("backup", Status::Passed),
            stage("recipe-tests", Status::Passed),
            stage("lint", Status::Passed),
        ]
    };
    for i in 0..5 {
        let n = w.run("alpha", SHA, 1, None);
        w.save_summary(&summary(n, "alpha", SHA, 1, all()));
        w.gen_ok();
        let js: serde_json::Value = serde_json::from_str(&w.read("summary.json")).unwrap();
        let want = if i == 4 { 6 } else { 5 };
        assert_eq!(js["recipes"][0]["level"], want, "after {} runs", i + 1);
    }
    assert!(w
        .read("index.html")
        .contains("<span class=\"lv l6\">L6</span> stable"));
}

#[test]
fn check_config_help_and_bad_config() {
    let w = World::new("cfg", &["alpha"], 1);
    let out = std::process::Command::new(bin())
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success()
            && help.contains("\"drone_token_file\"")
            && help.contains("EXIT STATUS")
    );
    let out = std::process::Command::new(bin())
        .args(["--config"])
        .arg(&w.config)
        .arg("--check-config")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!w.out.exists(), "--check-config writes nothing");
    w.write_config(serde_json::json!({"recipes": {"Bad Name": "a/b"}}));
    let out = w.gen();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("recipe name"));
    let out = std::process::Command::new(bin())
        .args(["--config"])
        .arg(&w.config)
        .arg("--bogus")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// Scheduled re-tests of the default branch (issue 17): the overview shows the default
/// branch's state; a re-test that fails on the commit whose previous re-test passed is a
/// regression on the index, the recipe page, the feed and the weekly page, with the image
/// that changed under it.
#[test]
fn a_re_test_failing_on_an_unchanged_commit_is_a_regression_with_what_changed() {
    let w = World::new("regression", &["alpha", "bravo"], 2);
    let image = |id: &str| ccci::summary::Image {
        service: "app".into(),
        image: "nginx:1.27.2".into(),
        id: id.into(),
    };
    let scheduled = |slot: &str, fail: Option<&str>| {
        let mut extra = vec![("SCHEDULE", slot)];
        if let Some(f) = fail {
            extra.push(("FAIL", f));
        }
        let n = w.start("alpha", SHA, 0, None, &extra);
        w.wait(n);
        n
    };
    let green = scheduled("2026-12-01", None);
    let mut s = summary(
        green,
        "alpha",
        SHA,
        0,
        vec![stage("install", Status::Passed)],
    );
    s.images = vec![image(&format!("sha256:{}", "a".repeat(64)))];
    w.save_summary(&s);
    // A PR run in between, on another commit: not what a re-test compares with.
    let pr = w.run("alpha", &"b".repeat(40), 7, None);
    w.save_summary(&summary(
        pr,
        "alpha",
        &"b".repeat(40),
        7,
        vec![stage("install", Status::Passed)],
    ));
    let red = scheduled("2026-12-02", Some("install"));
    let mut s = summary(red, "alpha", SHA, 0, vec![stage("install", Status::Failed)]);
    s.images = vec![image(&format!("sha256:{}", "c".repeat(64)))];
    w.save_summary(&s);
    w.gen_ok();

    let index = w.read("index.html");
    assert!(
        index.contains(&format!("regression since #{green}")),
        "{index}"
    );
    assert!(
        index.contains("<th scope=col>Default branch</th>"),
        "{index}"
    );
    assert!(
        index.contains("not re-tested yet"),
        "bravo has no re-test: {index}"
    );
    let recipe = w.read("recipes/alpha.html");
    assert!(
        recipe.contains("Regression not caused by the recipe"),
        "{recipe}"
    );
    assert!(
        recipe.contains("app: nginx:1.27.2 is another image now (aaaaaaaaaaaa → cccccccccccc)"),
        "{recipe}"
    );
    assert!(recipe.contains("main, re-test 2026-12-02"), "{recipe}");
    let feed = w.read("feed.atom");
    assert!(
        feed.contains(&format!(
            "alpha #{red}: regression on main (passed in #{green} on the same commit)"
        )),
        "{feed}"
    );
    assert!(feed.contains("This week on cc-ci:"), "{feed}");
    assert!(
        feed.contains(&format!("1 new regression(s) (alpha #{red})")),
        "{feed}"
    );
    let week = w.read("weekly.html");
    assert!(
        week.contains(&format!(
            "href=\"runs/{red}.html\">#{red}</a> <span class=rg>regression</span> since #{green}"
        )),
        "{week}"
    );
    assert!(week.contains("is another image now"), "{week}");
    let sum: serde_json::Value = serde_json::from_str(&w.read("summary.json")).unwrap();
    let alpha = &sum["recipes"][0];
    assert_eq!(alpha["main"]["build"], red, "{alpha}");
    assert_eq!(alpha["main"]["schedule"], "2026-12-02");
    assert_eq!(alpha["main"]["regression"]["since"], green);
    assert_eq!(sum["recipes"][1]["main"], serde_json::Value::Null);

    // The next re-test passes: fixed, said on the weekly page; main is green again.
    let again = scheduled("2026-12-03", None);
    let mut s = summary(
        again,
        "alpha",
        SHA,
        0,
        vec![stage("install", Status::Passed)],
    );
    s.images = vec![image(&format!("sha256:{}", "d".repeat(64)))];
    w.save_summary(&s);
    w.gen_ok();
    let week = w.read("weekly.html");
    assert!(
        week.contains(&format!("regression <a href=\"runs/{red}.html\">#{red}</a> green again in <a href=\"runs/{again}.html\">#{again}</a>")),
        "{week}"
    );
    let index = w.read("index.html");
    assert!(!index.contains("regression since"), "{index}");
}
