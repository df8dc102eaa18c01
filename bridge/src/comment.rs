//! Every text the bridge posts on a PR, in one place. Replies to people are short and say what
//! to do next; internal errors stay in the log, and the PR gets a pointer to it.

use ccci::drone::{Build, Stage};

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
    pub recipe: &'a str,
    pub sha: &'a str,
    /// Older builds still waiting for a runner.
    pub queued_ahead: usize,
    /// Set when a newer `!testme` replaced this run.
    pub superseded_by: Option<i64>,
}

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

fn mark(status: &str) -> &'static str {
    match status {
        "success" => "✅ passed",
        "failure" => "❌ failed",
        "error" => "⚠️ error",
        "killed" => "⏹️ cancelled",
        "skipped" => "⏭️ skipped",
        "running" => "🔄 running",
        "pending" | "waiting_on_dependencies" => "⏳ waiting",
        "blocked" | "declined" => "⛔ blocked",
        _ => "❔ unknown",
    }
}

fn outcome(status: &str) -> &'static str {
    match status {
        "success" => "**passed** ✅",
        "failure" => "**failed** ❌",
        "killed" => "**cancelled** ⏹️",
        "error" => "**could not run** ⚠️",
        _ => "**ended** ❔",
    }
}

/// One row per step of every stage: cc-ci's pipeline runs each test stage as a step.
fn rows(stages: &[Stage], now: i64) -> Vec<String> {
    let mut out = Vec::new();
    for stage in stages {
        for step in &stage.steps {
            let took = match (step.started, step.stopped) {
                (0, _) => String::new(),
                (s, 0) => duration(now - s),
                (s, e) => duration(e - s),
            };
            out.push(format!(
                "| {} | {} | {} |",
                step.name,
                mark(&step.status),
                took
            ));
        }
    }
    out
}

/// The status comment, rendered from the build as Drone reports it.
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
    match build.status.as_str() {
        "pending" if build.started == 0 => s.push_str(&match v.queued_ahead {
            0 => " — ⏳ queued, next in line\n".to_owned(),
            1 => " — ⏳ queued, 1 run ahead of it\n".to_owned(),
            n => format!(" — ⏳ queued, {n} runs ahead of it\n"),
        }),
        st if !ccci::drone::is_done(st) => s.push_str(" — 🔄 running\n"),
        st => s.push_str(&format!(" — {}\n", outcome(st))),
    }
    let rows = rows(&build.stages, now);
    if !rows.is_empty() {
        s.push_str("\n| stage | state | time |\n|---|---|---|\n");
        for r in rows {
            s.push_str(&r);
            s.push('\n');
        }
    }
    if ccci::drone::is_done(&build.status) {
        if build.started > 0 && build.finished > 0 {
            s.push_str(&format!(
                "\nTook {}. ",
                duration(build.finished - build.started)
            ));
        } else {
            s.push('\n');
        }
        s.push_str(&format!(
            "[Logs in Drone]({}) · [Run page with screenshots]({})\n\n\
             Reproduce on your own abra server: `cc-ci-stage-runner local {} --ref {}`\n",
            v.build_link, v.dashboard_run, v.recipe, v.sha
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn view() -> RunView<'static> {
        RunView {
            build_link: "https://drone.example/coop-cloud/cc-ci/7",
            dashboard_run: "https://ci.example/runs/7.html",
            recipe: "custom-html",
            sha: "3f2e1d0c9b8a7f6e5d4c3b2a1f0e9d8c7b6a5f4e",
            queued_ahead: 0,
            superseded_by: None,
        }
    }

    #[test]
    fn finished_run_shows_outcome_stages_links_and_reproduce() {
        let s = status(&build("failure"), &view(), 200);
        assert!(s.starts_with("<!-- cc-ci:build=7 -->"));
        assert!(s.contains("**failed**"), "{s}");
        assert!(s.contains("| install | ✅ passed | 1 min 0 s |"), "{s}");
        assert!(s.contains("| upgrade | ❌ failed | 30 s |"), "{s}");
        assert!(s.contains("https://ci.example/runs/7.html"));
        assert!(
            s.contains("cc-ci-stage-runner local custom-html --ref 3f2e1d0c9b8a"),
            "{s}"
        );
    }

    #[test]
    fn queued_run_shows_position() {
        let mut b = build("pending");
        b.started = 0;
        b.stages.clear();
        let mut v = view();
        v.queued_ahead = 3;
        assert!(status(&b, &v, 0).contains("3 runs ahead"));
    }

    #[test]
    fn superseded_run_says_so() {
        let mut v = view();
        v.superseded_by = Some(9);
        let s = status(&build("killed"), &v, 0);
        assert!(s.contains("superseded** by run #9"), "{s}");
    }

    #[test]
    fn refusal_names_who_may_trigger() {
        let s = refused("eve", &["coop-cloud".into()], &[]);
        assert!(s.contains("@eve") && s.contains("`coop-cloud`"), "{s}");
    }
}
