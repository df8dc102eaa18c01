//! Every text the bridge posts on a PR, in one place. Replies to people are short and say what
//! to do next; internal errors stay in the log, and the PR gets a pointer to it.

use std::collections::BTreeMap;

use ccci::drone::{Build, BuildStatus};
use ccci::summary::{Rung, Skip, Stage, Status};
use ccci::verdict::Verdict;

/// Marks the run's status comment so a restarted bridge can find the comment it already
/// posted instead of posting a second one.
pub fn marker(build: i64) -> String {
    format!("<!-- cc-ci:build={build} -->")
}

/// Who may trigger runs, for refusals.
pub fn refused(user: &str, orgs: &[String], allow: &[String]) -> String {
    let mut who = Vec::new();
    if !orgs.is_empty() {
        let list: Vec<String> = orgs.iter().map(|o| format!("`{o}`")).collect();
        who.push(format!("members of {}", list.join(", ")));
    }
    if !allow.is_empty() {
        who.push("the maintainers listed in cc-ci's configuration".to_owned());
    }
    format!(
        "@{user} cc-ci runs can only be started by {}. A maintainer can comment `!testme` to \
         test this pull request.",
        who.join(" and ")
    )
}

pub fn check_failed(user: &str) -> String {
    format!(
        "@{user} cc-ci could not check whether you may start runs (Gitea's membership check \
         did not answer clearly), so no run was started. Please comment `!testme` again in a \
         few minutes."
    )
}

pub fn not_enrolled(repo: &str) -> String {
    format!(
        "cc-ci does not test `{repo}`: it is not enrolled, so nothing was started. An operator \
         enrols a recipe by listing it under `recipes` in cc-ci's `nix/hosts/cc-ci/instance.nix` \
         (docs/enroll-recipe.md)."
    )
}

pub fn closed() -> String {
    "cc-ci only tests open pull requests; this one is closed.".to_owned()
}

pub fn no_pipeline(comment: i64) -> String {
    format!(
        "cc-ci could not start a run: Drone matched no pipeline for it. The operator should \
         check the trigger in cc-ci's `.drone.yml` (bridge log: `comment={comment}`)."
    )
}

pub fn start_failed(comment: i64) -> String {
    format!(
        "cc-ci could not start a run: Drone or Gitea kept answering with errors. The operator \
         can find the details in the bridge's log (`comment={comment}`); comment `!testme` to \
         try again."
    )
}

/// What the status comment needs besides the build.
pub struct RunView<'a> {
    pub build_link: &'a str,
    pub dashboard_run: &'a str,
    pub dashboard: &'a str,
    pub recipe: &'a str,
    pub sha: &'a str,
    /// Where the PR head is fetched from (the build's `SRC`: a fork's clone URL for a PR
    /// from a fork).
    pub src: &'a str,
    /// Seconds from the `!testme` to reading the head tested.
    pub head_lag_secs: i64,
    /// Older builds still waiting for a runner.
    pub queued_ahead: usize,
    /// Set when a newer `!testme` replaced this run.
    pub superseded_by: Option<i64>,
    /// Step name → what stage-runner said in that step's log (`None`: the log had no verdict).
    pub verdicts: &'a BTreeMap<String, Option<Verdict>>,
}

impl RunView<'_> {
    /// A file the dashboard publishes beside the run page (`runs/<n>/<rel>`).
    fn run_file(&self, rel: &str) -> String {
        format!("{}/{rel}", self.dashboard_run.trim_end_matches(".html"))
    }
}

/// A head read later than this after its `!testme` is said to be so on the PR.
const HEAD_LAG_SAID_SECS: i64 = 120;

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(10)]
}

fn duration(secs: i64) -> String {
    match secs {
        s if s < 60 => format!("{s} s"),
        s if s < 3600 => format!("{} min {} s", s / 60, s % 60),
        s => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}

/// Text from a run (a reason, a test's message) made safe for one Markdown table cell: no
/// new row, no HTML, no mention.
fn cell(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('@', "@\u{200b}")
        .replace(['\n', '\r'], " ")
}

/// A test's name as inline code (which no backtick in it may end).
fn code(name: &str) -> String {
    format!("`{}`", name.replace('`', "'").replace('|', "\\|"))
}

fn drone_mark(status: BuildStatus) -> &'static str {
    match status {
        BuildStatus::Success => "✅ passed",
        BuildStatus::Failure => "❌ failed",
        BuildStatus::Error => "⚠️ error",
        BuildStatus::Killed => "⏹️ cancelled",
        BuildStatus::Skipped => "⏭️ not run",
        BuildStatus::Running => "🔄 running",
        BuildStatus::Pending | BuildStatus::WaitingOnDependencies => "⏳ waiting",
        BuildStatus::Blocked | BuildStatus::Declined => "⛔ blocked",
    }
}

fn verdict_mark(status: Status, skip: Option<Skip>) -> &'static str {
    match status {
        Status::Passed => "✅ passed",
        Status::Failed => "❌ failed",
        // Only a declared skip is climbed past (docs/levels.md); a gap is said as one.
        Status::Skipped => match skip {
            Some(Skip::Declared) => "⏭️ skipped (declared)",
            Some(Skip::Gap) => "⏭️ skipped · coverage gap",
            _ => "⏭️ skipped",
        },
        Status::Error => "⚠️ error",
        Status::Running => "🔄 running",
    }
}

/// What a finished run came to. stage-runner's verdicts decide where they exist; Drone's
/// status where none does (a step killed before it could say).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunResult {
    Passed,
    Failed,
    CouldNotRun,
    Cancelled,
}

impl RunResult {
    fn of(build: &Build, verdicts: &BTreeMap<String, Option<Verdict>>) -> RunResult {
        let said = |s: Status| verdicts.values().flatten().any(|v| v.status == s);
        match build.status {
            BuildStatus::Killed => RunResult::Cancelled,
            _ if said(Status::Failed) => RunResult::Failed,
            _ if said(Status::Error) => RunResult::CouldNotRun,
            BuildStatus::Success => RunResult::Passed,
            BuildStatus::Failure => RunResult::Failed,
            _ => RunResult::CouldNotRun,
        }
    }

    fn headline(self) -> &'static str {
        match self {
            RunResult::Passed => "**passed** ✅",
            RunResult::Failed => "**failed** ❌",
            RunResult::CouldNotRun => "**could not run** ⚠️",
            RunResult::Cancelled => "**cancelled** ⏹️",
        }
    }

    /// The commit status state Gitea shows for it.
    fn state(self) -> &'static str {
        match self {
            RunResult::Passed => "success",
            RunResult::Failed => "failure",
            RunResult::CouldNotRun | RunResult::Cancelled => "error",
        }
    }
}

/// The level reached, from the verdicts of the ladder's stages; unknown (`None`) when install
/// gave none (it never ran, or an older stage-runner ran it).
fn level(verdicts: &BTreeMap<String, Option<Verdict>>) -> Option<String> {
    verdicts.get(Stage::Install.as_str())?.as_ref()?;
    let l = ccci::summary::level(|stage| {
        verdicts
            .get(stage.as_str())
            .and_then(|v| v.as_ref())
            .map_or(Rung::Unverified, Verdict::rung)
    });
    Some(format!(
        "level {l} of {} ({})",
        Stage::LADDER.len(),
        ccci::summary::LEVELS[l as usize].0
    ))
}

/// The first thing that went wrong, for a one-line description.
fn first_problem(build: &Build, verdicts: &BTreeMap<String, Option<Verdict>>) -> Option<String> {
    for step in build.stages.iter().flat_map(|s| &s.steps) {
        match verdicts.get(&step.name).and_then(|v| v.as_ref()) {
            Some(v) if matches!(v.status, Status::Failed | Status::Error) => {
                let mut d = format!("{}: {}", step.name, v.reason);
                if let Some(f) = v.failures.first() {
                    let name = f.name.rsplit("::").next().unwrap_or(&f.name);
                    d.push_str(&format!(" ({name})"));
                }
                return Some(d);
            }
            None if matches!(step.status, BuildStatus::Failure | BuildStatus::Error) => {
                return Some(format!("{}: step {}", step.name, step.status));
            }
            _ => {}
        }
    }
    None
}

/// One row per step of every stage: cc-ci's pipeline runs each test stage as a step.
fn rows(build: &Build, v: &RunView, now: i64) -> Vec<String> {
    let mut out = Vec::new();
    for stage in &build.stages {
        for step in &stage.steps {
            let took = match (step.started, step.stopped) {
                (0, _) => String::new(),
                (s, 0) => duration(now - s),
                (s, e) => duration(e - s),
            };
            let said = v.verdicts.get(&step.name).and_then(|x| x.as_ref());
            let done = step.status.is_done();
            let log = format!("{}/{}/{}", v.build_link, stage.number, step.number);
            let look = format!(
                "see [{} on the run page]({}#stage-{}) · [Drone log]({log})",
                step.name, v.dashboard_run, step.name
            );
            let (mark, details) = match said {
                Some(x) if done => {
                    let mut d = cell(&x.reason);
                    if !x.stale.is_empty() {
                        d.push_str(&format!("<br>⚠️ stale skip: {}", cell(&x.stale)));
                    }
                    for f in &x.failures {
                        d.push_str(&format!("<br>{} — {}", code(&f.name), cell(&f.message)));
                    }
                    if x.more_failures > 0 {
                        d.push_str(&format!("<br>and {} more failing tests", x.more_failures));
                    }
                    if matches!(x.status, Status::Failed | Status::Error) {
                        d.push_str(&format!("<br>{look}"));
                        if x.diagnostics {
                            let diag = format!("artifacts/{}/diagnostics.txt", step.name);
                            d.push_str(&format!(" · [tasks and logs]({})", v.run_file(&diag)));
                        }
                    }
                    (verdict_mark(x.status, x.skip), d)
                }
                _ => {
                    let d = match step.status {
                        BuildStatus::Skipped => "an earlier step failed".to_owned(),
                        BuildStatus::Failure | BuildStatus::Error => {
                            format!("stage-runner gave no verdict; [Drone log]({log})")
                        }
                        _ => String::new(),
                    };
                    (drone_mark(step.status), d)
                }
            };
            out.push(format!("| {} | {mark} | {took} | {details} |", step.name));
        }
    }
    out
}

/// The status comment, rendered from the build as Drone reports it and the verdicts read from
/// its steps' logs.
pub fn status(build: &Build, v: &RunView, now: i64) -> String {
    let mut s = marker(build.number);
    s.push('\n');
    s.push_str(&format!(
        "**cc-ci** run [#{}]({}) of `{}` at `{}`",
        build.number,
        v.build_link,
        v.recipe,
        short(v.sha)
    ));
    if let Some(newer) = v.superseded_by {
        s.push_str(&format!(
            " — **superseded** by run #{newer} after a new `!testme`; this run was cancelled.\n"
        ));
        return s;
    }
    let done = build.status.is_done();
    match build.status {
        BuildStatus::Pending if build.started == 0 => s.push_str(&match v.queued_ahead {
            0 => " — ⏳ queued, next in line\n".to_owned(),
            1 => " — ⏳ queued, 1 run ahead of it\n".to_owned(),
            n => format!(" — ⏳ queued, {n} runs ahead of it\n"),
        }),
        _ if !done => s.push_str(" — 🔄 running\n"),
        _ => {
            let r = RunResult::of(build, v.verdicts);
            s.push_str(&format!(" — {}", r.headline()));
            if r != RunResult::Cancelled {
                if let Some(l) = level(v.verdicts) {
                    s.push_str(&format!(" · reached **{l}**"));
                }
            }
            s.push('\n');
        }
    }
    // The head is read when the comment is handled, not when it was written: say so when a
    // push could have come in between (the bridge was down, or Gitea slow to tell it).
    if v.head_lag_secs > HEAD_LAG_SAID_SECS {
        s.push_str(&format!(
            "\n`{}` is the PR's head when cc-ci read it, {} after the `!testme`: anything pushed in between is in it.\n",
            short(v.sha),
            duration(v.head_lag_secs)
        ));
    }
    let rows = rows(build, v, now);
    if !rows.is_empty() {
        s.push_str("\n| stage | result | time | details |\n|---|---|---|---|\n");
        for r in rows {
            s.push_str(&r);
            s.push('\n');
        }
    }
    let card = v
        .verdicts
        .get(Stage::Teardown.as_str())
        .and_then(|x| x.as_ref())
        .is_some_and(|x| x.card);
    if done && card {
        s.push_str(&format!(
            "\n[![cc-ci run #{} of {}]({})]({})\n",
            build.number,
            v.recipe,
            v.run_file("artifacts/card.png"),
            v.dashboard_run
        ));
    }
    if done {
        if build.started > 0 && build.finished > 0 {
            s.push_str(&format!(
                "\nTook {}. ",
                duration(build.finished - build.started)
            ));
        } else {
            s.push('\n');
        }
        s.push_str(&format!(
            "[Run page with screenshots]({}) · [Logs in Drone]({}) · [All recipes]({})\n\n\
             Reproduce on your own abra server (once: write a `stage-runner.json` for it, \
             cc-ci's docs/runbook.md \"Reproduce\"): `{}`\n",
            v.dashboard_run,
            v.build_link,
            v.dashboard,
            reproduce(v)
        ));
    }
    s
}

/// The command that runs the same stages on a maintainer's machine, pasteable as is once
/// their config is at the path it names (docs/runbook.md, "Reproduce").
pub fn reproduce(v: &RunView) -> String {
    let plain = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b":/._@+-=,%~".contains(&b))
    };
    let quoted = |s: &str| {
        if plain(s) {
            s.to_owned()
        } else {
            format!("'{}'", s.replace('\'', "'\\''"))
        }
    };
    let src = if v.src.is_empty() {
        String::new()
    } else {
        format!(" --src {}", quoted(v.src))
    };
    format!(
        "cc-ci-stage-runner local {} --ref {}{src} --config ~/.config/cc-ci/stage-runner.json",
        quoted(v.recipe),
        quoted(v.sha)
    )
}

/// Gitea's description field is shown on one line next to the check.
const MAX_DESCRIPTION: usize = 140;

/// The commit status for the run's head: (state, description).
pub fn commit_status(build: &Build, v: &RunView) -> (&'static str, String) {
    let (state, d) = if let Some(newer) = v.superseded_by {
        ("error", format!("superseded by run #{newer}"))
    } else if build.status == BuildStatus::Pending && build.started == 0 {
        ("pending", "queued".to_owned())
    } else if !build.status.is_done() {
        let at = build
            .stages
            .iter()
            .flat_map(|s| &s.steps)
            .find(|s| s.status == BuildStatus::Running)
            .map(|s| format!("running: {}", s.name));
        ("pending", at.unwrap_or_else(|| "running".to_owned()))
    } else {
        let r = RunResult::of(build, v.verdicts);
        let lv = level(v.verdicts).map_or(String::new(), |l| format!(" · {l}"));
        let d = match r {
            RunResult::Passed => format!("passed{lv}"),
            RunResult::Cancelled => "cancelled".to_owned(),
            RunResult::Failed | RunResult::CouldNotRun => {
                let what = if r == RunResult::Failed {
                    "failed"
                } else {
                    "could not run"
                };
                match first_problem(build, v.verdicts) {
                    Some(p) => format!("{what} at {p}{lv}"),
                    None => format!("{what}{lv}"),
                }
            }
        };
        (r.state(), d)
    };
    let d = match d.char_indices().nth(MAX_DESCRIPTION) {
        Some((i, _)) => format!("{}…", &d[..i]),
        None => d,
    };
    (state, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ccci::summary::{Counts, Failure};

    fn build(status: &str) -> Build {
        serde_json::from_value(serde_json::json!({
            "id": 1, "number": 7, "status": status, "started": 100, "finished": 190,
            "stages": [{"number": 1, "name": "cc-ci", "status": status, "steps": [
                {"number": 1, "name": "install", "status": "success", "started": 100, "stopped": 160},
                {"number": 2, "name": "upgrade", "status": status, "started": 160, "stopped": 190}
            ]}]
        }))
        .unwrap()
    }

    fn view(verdicts: &BTreeMap<String, Option<Verdict>>) -> RunView<'_> {
        RunView {
            build_link: "https://drone.example/coop-cloud/cc-ci/7",
            dashboard_run: "https://ci.example/runs/7.html",
            dashboard: "https://ci.example",
            recipe: "custom-html",
            sha: "3f2e1d0c9b8a7f6e5d4c3b2a1f0e9d8c7b6a5f4e",
            src: "https://git.example.org/bob/custom-html.git",
            head_lag_secs: 0,
            queued_ahead: 0,
            superseded_by: None,
            verdicts,
        }
    }

    #[test]
    fn a_head_read_long_after_the_testme_is_said_to_be_so() {
        let v = BTreeMap::new();
        let s = status(&build("running"), &view(&v), 200);
        assert!(!s.contains("head when cc-ci read it"), "{s}");
        let mut late = view(&v);
        late.head_lag_secs = 3 * 3600 + 120;
        let s = status(&build("running"), &late, 200);
        assert!(
            s.contains("`3f2e1d0c9b` is the PR's head when cc-ci read it, 3 h 2 min after the `!testme`: anything pushed in between is in it."),
            "{s}"
        );
    }

    fn said(stage: &str, status: Status, reason: &str, failures: &[(&str, &str)]) -> Verdict {
        let f: Vec<Failure> = failures
            .iter()
            .map(|(n, m)| Failure {
                name: n.to_string(),
                message: m.to_string(),
            })
            .collect();
        Verdict::new(
            stage.parse().unwrap(),
            status,
            reason,
            &Counts::default(),
            &f,
        )
    }

    #[test]
    fn without_verdicts_rows_fall_back_to_drone_and_links_are_there() {
        let none = BTreeMap::new();
        let s = status(&build("failure"), &view(&none), 200);
        assert!(s.starts_with("<!-- cc-ci:build=7 -->"));
        assert!(s.contains("**failed**"), "{s}");
        assert!(s.contains("| install | ✅ passed | 1 min 0 s |"), "{s}");
        assert!(
            s.contains("| upgrade | ❌ failed | 30 s | stage-runner gave no verdict; [Drone log](https://drone.example/coop-cloud/cc-ci/7/1/2) |"),
            "{s}"
        );
        assert!(s.contains("https://ci.example/runs/7.html"));
        assert!(s.contains("[All recipes](https://ci.example)"));
        assert!(
            s.contains("`cc-ci-stage-runner local custom-html --ref 3f2e1d0c9b8a7f6e5d4c3b2a1f0e9d8c7b6a5f4e --src https://git.example.org/bob/custom-html.git --config ~/.config/cc-ci/stage-runner.json`"),
            "{s}"
        );
    }

    #[test]
    fn the_reproduce_command_quotes_what_a_shell_would_split() {
        let v = BTreeMap::new();
        let mut view = view(&v);
        view.src = "file:///tmp/forge dir/it's.git";
        assert!(
            reproduce(&view).contains(" --src 'file:///tmp/forge dir/it'\\''s.git' --config"),
            "{}",
            reproduce(&view)
        );
        view.src = "";
        assert!(!reproduce(&view).contains("--src"));
    }

    #[test]
    fn a_skipped_stage_is_never_shown_as_passed() {
        let mut v = BTreeMap::new();
        v.insert(
            "install".into(),
            Some(said(
                "install",
                Status::Failed,
                "tests failed in phase install",
                &[(
                    "custom-html/test_install.py::test_index",
                    "AssertionError: no index | <b>@here</b>\nmore",
                )],
            )),
        );
        v.insert(
            "upgrade".into(),
            Some(said("upgrade", Status::Skipped, "install failed", &[])),
        );
        // Drone says the skipped step succeeded (stage-runner exits 0 for a skip).
        v.get_mut("upgrade").unwrap().as_mut().unwrap().skip = Some(Skip::Blocked);
        let s = status(&build("success"), &view(&v), 200);
        assert!(
            s.contains("**failed** ❌ · reached **level 0 of 5 (broken)**"),
            "{s}"
        );
        assert!(
            s.contains("| upgrade | ⏭️ skipped | 30 s | install failed |"),
            "{s}"
        );
        let row = s.lines().find(|l| l.starts_with("| install |")).unwrap();
        assert!(row.contains("❌ failed"), "{row}");
        assert!(
            row.contains("<br>`custom-html/test_install.py::test_index` — AssertionError: no index \\| &lt;b&gt;@\u{200b}here&lt;/b&gt;"),
            "{row}"
        );
        assert!(
            row.contains("[install on the run page](https://ci.example/runs/7.html#stage-install)"),
            "{row}"
        );
        assert!(
            row.contains("[Drone log](https://drone.example/coop-cloud/cc-ci/7/1/1)"),
            "{row}"
        );
        assert!(!row.contains("diagnostics.txt"), "none were saved: {row}");
        v.get_mut("install").unwrap().as_mut().unwrap().diagnostics = true;
        let s = status(&build("success"), &view(&v), 200);
        let row = s.lines().find(|l| l.starts_with("| install |")).unwrap();
        assert!(
            row.contains(
                "[tasks and logs](https://ci.example/runs/7/artifacts/install/diagnostics.txt)"
            ),
            "{row}"
        );
        let (state, d) = commit_status(&build("success"), &view(&v));
        assert_eq!(state, "failure");
        assert_eq!(
            d,
            "failed at install: tests failed in phase install (test_index) · level 0 of 5 (broken)"
        );
    }

    #[test]
    fn declared_skips_climb_gaps_do_not_and_stale_ones_are_said() {
        let mut v = BTreeMap::new();
        v.insert(
            "install".to_owned(),
            Some(said("install", Status::Passed, "", &[])),
        );
        let mut up = said("upgrade", Status::Skipped, "no earlier release", &[]);
        up.skip = Some(Skip::Declared);
        up.stale = "1.0.0 exists now".into();
        v.insert("upgrade".to_owned(), Some(up));
        let mut bk = said("backup", Status::Skipped, "nothing here", &[]);
        bk.skip = Some(Skip::Gap);
        v.insert("backup".to_owned(), Some(bk));
        let mut b = build("success");
        let step = b.stages[0].steps[1].clone();
        b.stages[0].steps.push(step);
        b.stages[0].steps[2].name = "backup".into();
        b.stages[0].steps[2].number = 3;
        let s = status(&b, &view(&v), 200);
        assert!(s.contains("reached **level 2 of 5 (upgrades)**"), "{s}");
        assert!(
            s.contains("| upgrade | ⏭️ skipped (declared) | 30 s | no earlier release<br>⚠️ stale skip: 1.0.0 exists now |"),
            "{s}"
        );
        assert!(s.contains("| backup | ⏭️ skipped · coverage gap |"), "{s}");
    }

    #[test]
    fn a_passed_run_shows_its_level_and_statuses_follow_it() {
        let mut v = BTreeMap::new();
        for st in ["install", "upgrade"] {
            v.insert(st.to_owned(), Some(said(st, Status::Passed, "", &[])));
        }
        let s = status(&build("success"), &view(&v), 200);
        assert!(
            s.contains("**passed** ✅ · reached **level 2 of 5 (upgrades)**"),
            "{s}"
        );
        assert_eq!(
            commit_status(&build("success"), &view(&v)),
            ("success", "passed · level 2 of 5 (upgrades)".to_owned())
        );
        let mut b = build("running");
        b.stages[0].steps[1].status = BuildStatus::Running;
        assert_eq!(
            commit_status(&b, &view(&v)),
            ("pending", "running: upgrade".to_owned())
        );
        let mut v2 = BTreeMap::new();
        v2.insert(
            "install".to_owned(),
            Some(said("install", Status::Error, &"x".repeat(300), &[])),
        );
        let (state, d) = commit_status(&build("failure"), &view(&v2));
        assert_eq!(state, "error");
        assert!(d.starts_with("could not run at install: xxx"), "{d}");
        assert_eq!(d.chars().count(), MAX_DESCRIPTION + 1);
    }

    #[test]
    fn the_card_is_embedded_only_when_teardown_made_it() {
        let mut v = BTreeMap::new();
        v.insert(
            "install".to_owned(),
            Some(said("install", Status::Passed, "", &[])),
        );
        let without = status(&build("success"), &view(&v), 200);
        assert!(!without.contains("card.png"), "{without}");
        let mut t = said("teardown", Status::Passed, "", &[]);
        t.card = true;
        v.insert("teardown".to_owned(), Some(t));
        let with = status(&build("success"), &view(&v), 200);
        assert!(
            with.contains("[![cc-ci run #7 of custom-html](https://ci.example/runs/7/artifacts/card.png)](https://ci.example/runs/7.html)"),
            "{with}"
        );
    }

    #[test]
    fn queued_run_shows_position() {
        let mut b = build("pending");
        b.started = 0;
        b.stages.clear();
        let none = BTreeMap::new();
        let mut v = view(&none);
        v.queued_ahead = 3;
        assert!(status(&b, &v, 0).contains("3 runs ahead"));
        assert_eq!(commit_status(&b, &v), ("pending", "queued".to_owned()));
    }

    #[test]
    fn superseded_run_says_so() {
        let none = BTreeMap::new();
        let mut v = view(&none);
        v.superseded_by = Some(9);
        let s = status(&build("killed"), &v, 0);
        assert!(s.contains("superseded** by run #9"), "{s}");
        assert_eq!(
            commit_status(&build("killed"), &v),
            ("error", "superseded by run #9".to_owned())
        );
    }

    #[test]
    fn refusal_names_who_may_trigger() {
        let s = refused("eve", &["coop-cloud".into()], &[]);
        assert!(s.contains("@eve") && s.contains("`coop-cloud`"), "{s}");
    }

    /// docs/writing-tests.md shows a maintainer what the PR comment says for a pass, a fail
    /// and a skip: those examples are what this renders, byte for byte.
    #[test]
    fn the_docs_show_what_the_pr_comment_says() {
        let steps = ccci::stage::Stage::ALL.map(|s| s.as_str());
        let run = |status: &str| -> Build {
            let list: Vec<_> = steps
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    serde_json::json!({"number": i + 1, "name": n, "status": "success",
                    "started": 1000 + 60 * i as i64, "stopped": 1060 + 60 * i as i64})
                })
                .collect();
            serde_json::from_value(serde_json::json!({"id": 1, "number": 57, "status": status,
                "started": 1000, "finished": 1420,
                "stages": [{"number": 1, "name": "cc-ci", "status": status, "steps": list}]}))
            .unwrap()
        };
        let verdicts = |f: &dyn Fn(&str) -> Verdict| -> BTreeMap<String, Option<Verdict>> {
            steps.iter().map(|s| (s.to_string(), Some(f(s)))).collect()
        };
        let pass = verdicts(&|s| match s {
            "recipe-tests" => {
                let mut v = said(
                    s,
                    Status::Skipped,
                    "the recipe has no tests/ directory",
                    &[],
                );
                v.skip = Some(Skip::Gap);
                v
            }
            _ => said(s, Status::Passed, "", &[]),
        });
        let skip = verdicts(&|s| match s {
            "upgrade" => {
                let mut v = said(
                    s,
                    Status::Skipped,
                    "no earlier release to upgrade from",
                    &[],
                );
                v.skip = Some(Skip::Declared);
                v
            }
            _ => said(s, Status::Passed, "", &[]),
        });
        let fail = verdicts(&|s| match s {
            "backup" => said(
                s,
                Status::Failed,
                "tests failed in phase after_restore",
                &[(
                    "my-recipe/test_backup.py::test_restore_brings_seed_back",
                    "AssertionError: the seed note is gone",
                )],
            ),
            "recipe-tests" | "lint" => {
                let mut v = said(s, Status::Skipped, "backup did not pass", &[]);
                v.skip = Some(Skip::Blocked);
                v
            }
            _ => said(s, Status::Passed, "", &[]),
        });
        let doc = include_str!("../../docs/writing-tests.md");
        for (name, status, v) in [
            ("pass", "success", &pass),
            ("skip", "success", &skip),
            ("fail", "failure", &fail),
        ] {
            let mut view = view(v);
            view.recipe = "my-recipe";
            view.build_link = "https://drone.ci.coopcloud.tech/coop-cloud/cc-ci/57";
            view.dashboard_run = "https://ci.coopcloud.tech/runs/57.html";
            view.dashboard = "https://ci.coopcloud.tech";
            view.src = "https://git.coopcloud.tech/bob/my-recipe.git";
            let body = status_comment_for_docs(&run(status), &view);
            let marker = format!("<!-- pr-comment: {name} -->\n```markdown\n");
            let shown = doc
                .split_once(&marker)
                .and_then(|(_, rest)| rest.split_once("\n```\n"))
                .map(|(block, _)| block)
                .unwrap_or_else(|| {
                    panic!("docs/writing-tests.md has no {marker:?} block; it should be:\n{body}")
                });
            assert!(
                shown == body,
                "docs/writing-tests.md's {name} example differs; it should be:\n--- {name} ---\n{body}\n--- end ---"
            );
        }
    }

    /// The comment without its hidden first line (the build marker a reader never sees).
    fn status_comment_for_docs(b: &Build, v: &RunView) -> String {
        let s = status(b, v, 2000);
        s.split_once('\n')
            .map_or(s.clone(), |(_, rest)| rest.trim_end().to_owned())
    }
}
