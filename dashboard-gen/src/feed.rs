//! The Atom feed of recent results (site-wide, and one per recipe), so maintainers can
//! subscribe.

use std::fmt::Write;

use crate::clock::rfc3339;
use crate::config::Config;
use crate::escape::xml;
use crate::model::{Recipe, Run, Status};
use crate::weekly::Week;

/// Entries per feed.
pub const ENTRIES: usize = 50;

/// `runs`: newest first, each with its recipe's name. `self_path` is relative to the site root.
pub fn atom(
    cfg: &Config,
    title: &str,
    self_path: &str,
    runs: &[(&Recipe, &Run)],
    weekly: Option<&Week>,
    generated: i64,
) -> String {
    let site = &cfg.site_url;
    let updated = runs
        .iter()
        .map(|(_, r)| r.build.finished.max(r.when()))
        .max()
        .unwrap_or(generated);
    let mut out = String::with_capacity(1024 + runs.len() * 600);
    let _ = write!(
        out,
        r#"<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>{}</title><id>{}</id><link rel="self" href="{}"/><link href="{}"/><updated>{}</updated><author><name>cc-ci</name></author>
"#,
        xml(title),
        xml(&format!("{site}/{self_path}")),
        xml(&format!("{site}/{self_path}")),
        xml(&format!("{site}/index.html")),
        rfc3339(updated)
    );
    for (recipe, run) in runs.iter().take(ENTRIES) {
        let link = format!("{site}/runs/{}.html", run.number());
        let marks: Vec<String> = (0..4)
            .map(|i| format!("{} {}", crate::model::MARKED[i], run.mark(i).as_str()))
            .collect();
        let status = if run.status == Status::Passed {
            "passed"
        } else {
            run.status.as_str()
        };
        let title = match (&run.regression, run.scheduled()) {
            (Some(reg), _) => format!(
                "{} #{}: regression on main (passed in #{} on the same commit)",
                recipe.name,
                run.number(),
                reg.since
            ),
            (None, true) => format!(
                "{} #{}: {status} (main, re-test {})",
                recipe.name,
                run.number(),
                run.build.schedule
            ),
            (None, false) => format!(
                "{} #{}: {status} (PR #{})",
                recipe.name,
                run.number(),
                run.build.pr
            ),
        };
        let changed = match &run.regression {
            Some(reg) if !reg.changes.is_empty() => {
                format!(" · changed: {}", reg.changes.join("; "))
            }
            Some(_) => " · nothing cc-ci can see changed".into(),
            None => String::new(),
        };
        let _ = writeln!(
            out,
            "<entry><title>{}</title><id>{}</id><link href=\"{}\"/><updated>{}</updated><summary>{}</summary></entry>",
            xml(&title),
            xml(&link),
            xml(&link),
            rfc3339(run.build.finished.max(run.when())),
            xml(&format!("ref {} · {}{changed}", &run.build.sha[..7.min(run.build.sha.len())], marks.join(", ")))
        );
    }
    if let Some(w) = weekly {
        // One entry per week (its id is the week's first day), updated as its runs finish.
        let week_start = w.to - w.to.rem_euclid(7 * 86_400);
        let link = format!("{site}/{}", crate::weekly::PATH);
        let regressions: Vec<String> = w
            .regressions
            .iter()
            .map(|(r, x)| format!("{} #{}", r.name, x.number()))
            .collect();
        let text = format!(
            "{} level change(s), {} new regression(s){}, {} fixed",
            w.levels.len(),
            w.regressions.len(),
            if regressions.is_empty() {
                String::new()
            } else {
                format!(" ({})", regressions.join(", "))
            },
            w.fixed.len()
        );
        let _ = writeln!(
            out,
            "<entry><title>{}</title><id>{}</id><link href=\"{}\"/><updated>{}</updated><summary>{}</summary></entry>",
            xml(&format!("This week on cc-ci: {text}")),
            xml(&format!("{link}#week-{}", ccci::clock::date(week_start))),
            xml(&link),
            rfc3339(w.latest),
            xml(&text)
        );
    }
    out.push_str("</feed>\n");
    out
}
