//! A stage's verdict as one line of its Drone step log: how what stage-runner decided reaches
//! the bridge from whichever runner host ran the step, with no shared disk. The bridge reads
//! each finished step's log once.
//!
//! stage-runner prints the line last, after every child it started has ended, and only a log's
//! last line counts: a test that prints a look-alike earlier changes nothing. Every string in it
//! has passed the redactor before it is shortened, so a cut never leaves half a secret.

use serde::{Deserialize, Serialize};

use crate::summary::{Counts, Failure, Rung, Skip, Stage, StageResult, Status};

pub const PREFIX: &str = "cc-ci verdict: ";
/// Failing tests named in the line; the rest are counted.
pub const MAX_FAILURES: usize = 5;
/// Characters kept of the reason and of each failure's name and message.
pub const MAX_TEXT: usize = 240;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub stage: Stage,
    pub status: Status,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub tests: Counts,
    /// The first failing tests, each message cut to its first line.
    #[serde(default)]
    pub failures: Vec<Failure>,
    /// Failing tests beyond those listed.
    #[serde(default)]
    pub more_failures: usize,
    /// Why a skipped stage was skipped (see `StageResult::skip`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip: Option<Skip>,
    /// Why a declared skip no longer applies.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stale: String,
    /// A red stage saved `artifacts/<stage>/diagnostics.txt` (its tasks and logs).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub diagnostics: bool,
    /// Set by teardown when the run's summary card was made (`artifacts/card.png` of the
    /// run's results, published with its run page).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub card: bool,
}

fn short(s: &str, first_line: bool) -> String {
    let s = if first_line {
        s.lines().find(|l| !l.trim().is_empty()).unwrap_or("")
    } else {
        s
    };
    let s = s.trim();
    match s.char_indices().nth(MAX_TEXT) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

impl Verdict {
    /// From already redacted parts; shortens them to what a line carries.
    pub fn new(
        stage: Stage,
        status: Status,
        reason: &str,
        tests: &Counts,
        failures: &[Failure],
    ) -> Verdict {
        Verdict {
            stage,
            status,
            reason: short(reason, false).replace('\n', " "),
            tests: tests.clone(),
            failures: failures
                .iter()
                .take(MAX_FAILURES)
                .map(|f| Failure {
                    name: short(&f.name, false),
                    message: short(&f.message, true),
                })
                .collect(),
            more_failures: failures.len().saturating_sub(MAX_FAILURES),
            skip: None,
            stale: String::new(),
            diagnostics: false,
            card: false,
        }
    }

    /// What the summary records of a stage, as one line carries it.
    pub fn of(r: &StageResult) -> Verdict {
        Verdict {
            skip: r.skip,
            stale: r.stale.clone(),
            ..Verdict::new(r.name, r.status, &r.reason, &r.tests, &r.failures)
        }
    }

    pub fn rung(&self) -> Rung {
        Rung::of(Some(self.status), self.skip)
    }

    pub fn line(&self) -> String {
        // Serialising plain strings and numbers cannot fail.
        format!(
            "{PREFIX}{}",
            serde_json::to_string(self).expect("a verdict serialises")
        )
    }

    pub fn parse(line: &str) -> Option<Verdict> {
        let v: Verdict = serde_json::from_str(line.trim().strip_prefix(PREFIX)?).ok()?;
        (v.status != Status::Running).then_some(v)
    }

    /// The verdict a step's log ends with; `None` when its last line is not one (an older
    /// stage-runner, a step killed before it could say, a shell that failed first).
    pub fn from_log<'a>(lines: impl DoubleEndedIterator<Item = &'a str>) -> Option<Verdict> {
        let mut rev = lines.rev().flat_map(|l| l.lines().rev());
        Verdict::parse(rev.find(|l| !l.trim().is_empty())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed() -> Verdict {
        let failures: Vec<Failure> = (0..7)
            .map(|i| Failure {
                name: format!("t.py::test_{i}"),
                message: format!("AssertionError: {i}\nassert 1 == 2\n"),
            })
            .collect();
        let tests = Counts {
            total: 9,
            passed: 2,
            failed: 7,
            skipped: 0,
        };
        Verdict::new(
            Stage::Install,
            Status::Failed,
            "tests failed in phase install",
            &tests,
            &failures,
        )
    }

    #[test]
    fn a_verdict_travels_as_one_line_and_back() {
        let v = failed();
        assert_eq!(v.failures.len(), MAX_FAILURES);
        assert_eq!(v.more_failures, 2);
        assert_eq!(v.failures[0].message, "AssertionError: 0");
        let line = v.line();
        assert!(!line.contains('\n'));
        assert_eq!(Verdict::parse(&line), Some(v));
    }

    #[test]
    fn only_the_log_s_last_line_counts() {
        let real = failed().line() + "\n";
        let forged = Verdict::new(Stage::Install, Status::Passed, "", &Counts::default(), &[]);
        let forged = forged.line() + "\n";
        let log = [forged.as_str(), "+ pytest\n", real.as_str(), "\n"];
        assert_eq!(
            Verdict::from_log(log.iter().copied()).unwrap().status,
            Status::Failed
        );
        let log = [real.as_str(), "a test printed this last\n"];
        assert_eq!(Verdict::from_log(log.iter().copied()), None);
        assert_eq!(Verdict::from_log([].into_iter()), None);
        // Several lines in one chunk, as a log may store them.
        let chunk = format!("noise\n{real}");
        assert!(Verdict::from_log([chunk.as_str()].into_iter()).is_some());
    }

    #[test]
    fn long_text_is_cut_on_a_character() {
        let reason = "é".repeat(MAX_TEXT + 10);
        let v = Verdict::new(Stage::Lint, Status::Error, &reason, &Counts::default(), &[]);
        assert_eq!(v.reason.chars().count(), MAX_TEXT + 1);
        assert!(v.reason.ends_with('…'));
        assert_eq!(Verdict::parse("cc-ci verdict: {nope"), None);
        assert_eq!(Verdict::parse("something else"), None);
    }
}
