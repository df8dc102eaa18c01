//! The weekly report (`weekly.html`): over the seven days before the site was generated,
//! which recipes changed level, the regressions that appeared and those fixed, the slowest
//! runs and the flakiest recipes (one commit, different verdicts).

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::clock::{display, duration_ms};
use crate::escape::html as esc;
use crate::model::{Recipe, Run, Site, Status};

pub const PATH: &str = "weekly.html";
const WEEK: i64 = 7 * 86_400;
/// Rows in the slowest and flakiest lists.
const TOP: usize = 5;

/// What the week held, for the page and its feed entry.
pub struct Week<'s, 'a> {
    pub from: i64,
    pub to: i64,
    /// When the newest run of the week finished (`from` when none did).
    pub latest: i64,
    /// (recipe, level before the week, level now), where they differ.
    pub levels: Vec<(&'s Recipe<'a>, Option<u8>, Option<u8>)>,
    pub regressions: Vec<(&'s Recipe<'a>, &'s Run<'a>)>,
    /// (recipe, the regression, the green scheduled run after it).
    pub fixed: Vec<(&'s Recipe<'a>, &'s Run<'a>, &'s Run<'a>)>,
    pub slowest: Vec<(&'s Recipe<'a>, &'s Run<'a>)>,
    /// (recipe, commits that both passed and failed this week).
    pub flakiest: Vec<(&'s Recipe<'a>, usize)>,
}

pub fn week<'s, 'a>(site: &'s Site<'a>, now: i64) -> Week<'s, 'a> {
    let from = now - WEEK;
    let finished = |r: &'s Recipe<'a>| r.runs.iter().filter(|x| x.level.is_some());
    let in_week = |x: &Run| x.when() >= from && x.when() <= now;
    let mut w = Week {
        from,
        to: now,
        latest: from,
        levels: Vec::new(),
        regressions: Vec::new(),
        fixed: Vec::new(),
        slowest: Vec::new(),
        flakiest: Vec::new(),
    };
    for r in &site.recipes {
        let before = finished(r).find(|x| x.when() < from).and_then(|x| x.level);
        let now_level = finished(r).next().and_then(|x| x.level);
        if finished(r).any(&in_week) && before != now_level {
            w.levels.push((r, before, now_level));
        }
        // Newest first: a regression is fixed by a later green scheduled run.
        let scheduled: Vec<&Run> = finished(r).filter(|x| x.scheduled()).collect();
        for (i, x) in scheduled.iter().enumerate() {
            if x.regression.is_none() {
                continue;
            }
            if in_week(x) {
                w.regressions.push((r, x));
            }
            if let Some(green) = scheduled[..i]
                .iter()
                .rev()
                .find(|y| y.status == Status::Passed && in_week(y))
            {
                w.fixed.push((r, x, green));
            }
        }
        for x in finished(r).filter(|x| in_week(x)) {
            w.latest = w.latest.max(x.build.finished);
            if x.duration_ms().is_some() {
                w.slowest.push((r, x));
            }
        }
        let mut by_sha: BTreeMap<&str, (bool, bool)> = BTreeMap::new();
        for x in finished(r).filter(|x| in_week(x)) {
            let e = by_sha.entry(x.build.sha.as_str()).or_default();
            match x.status {
                Status::Passed => e.0 = true,
                Status::Failed | Status::Error => e.1 = true,
                _ => {}
            }
        }
        let flaky = by_sha.values().filter(|(p, f)| *p && *f).count();
        if flaky > 0 {
            w.flakiest.push((r, flaky));
        }
    }
    w.slowest
        .sort_by_key(|(_, x)| std::cmp::Reverse(x.duration_ms().unwrap_or(0)));
    w.slowest.truncate(TOP);
    w.flakiest
        .sort_by_key(|(r, n)| (std::cmp::Reverse(*n), r.name));
    w.flakiest.truncate(TOP);
    w
}

fn level(l: Option<u8>) -> String {
    l.map_or("none".into(), |l| format!("L{l}"))
}

fn run_link(x: &Run) -> String {
    format!("<a href=\"runs/{0}.html\">#{0}</a>", x.number())
}

pub fn page(w: &Week) -> String {
    let mut b = String::with_capacity(8 * 1024);
    let _ = write!(
        b,
        "<p class=crumbs><a href=\"index.html\">All recipes</a></p><h1>This week</h1><p class=meta>{} to {}</p>",
        display(w.from),
        display(w.to)
    );
    b.push_str("<h2>Level changes</h2>");
    list(
        &mut b,
        &w.levels,
        "No recipe changed level.",
        |(r, a, z)| {
            format!(
                "<a href=\"recipes/{n}.html\">{n}</a>: {} → {}",
                level(*a),
                level(*z),
                n = esc(r.name)
            )
        },
    );
    b.push_str("<h2>New regressions</h2>");
    list(
        &mut b,
        &w.regressions,
        "No regression: every re-test that failed had also failed before, or its commit changed.",
        |(r, x)| {
            let reg = x.regression.as_ref().expect("a regression");
            let what = if reg.changes.is_empty() {
                "nothing cc-ci can see changed".to_owned()
            } else {
                reg.changes.join("; ")
            };
            format!(
                "<a href=\"recipes/{n}.html\">{n}</a> {} <span class=rg>regression</span> since #{}: {}",
                run_link(x),
                reg.since,
                esc(&what),
                n = esc(r.name)
            )
        },
    );
    b.push_str("<h2>Fixed</h2>");
    list(&mut b, &w.fixed, "None fixed this week.", |(r, x, g)| {
        format!(
            "<a href=\"recipes/{n}.html\">{n}</a>: regression {} green again in {}",
            run_link(x),
            run_link(g),
            n = esc(r.name)
        )
    });
    b.push_str("<h2>Slowest runs</h2>");
    list(
        &mut b,
        &w.slowest,
        "No run finished this week.",
        |(r, x)| {
            format!(
                "<a href=\"recipes/{n}.html\">{n}</a> {} {}",
                run_link(x),
                duration_ms(x.duration_ms().unwrap_or(0)),
                n = esc(r.name)
            )
        },
    );
    b.push_str("<h2>Flakiest</h2>");
    list(
        &mut b,
        &w.flakiest,
        "No commit both passed and failed this week.",
        |(r, n)| {
            format!(
                "<a href=\"recipes/{name}.html\">{name}</a>: {n} commit(s) both passed and failed",
                name = esc(r.name)
            )
        },
    );
    crate::render::page("cc-ci: this week", "", &b, "")
}

fn list<T>(b: &mut String, items: &[T], empty: &str, row: impl Fn(&T) -> String) {
    if items.is_empty() {
        let _ = write!(b, "<p class=empty>{empty}</p>");
        return;
    }
    b.push_str("<ul>");
    for i in items {
        let _ = write!(b, "<li>{}</li>", row(i));
    }
    b.push_str("</ul>");
}
