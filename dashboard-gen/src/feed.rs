//! The Atom feed of recent results (site-wide, and one per recipe), so maintainers can
//! subscribe.

use std::fmt::Write;

use crate::clock::rfc3339;
use crate::config::Config;
use crate::escape::xml;
use crate::model::{Recipe, Run, Status};

/// Entries per feed.
pub const ENTRIES: usize = 50;

/// `runs`: newest first, each with its recipe's name. `self_path` is relative to the site root.
pub fn atom(
    cfg: &Config,
    title: &str,
    self_path: &str,
    runs: &[(&Recipe, &Run)],
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
        let title = format!(
            "{} #{}: {status} (PR #{})",
            recipe.name,
            run.number(),
            run.build.pr
        );
        let _ = writeln!(
            out,
            "<entry><title>{}</title><id>{}</id><link href=\"{}\"/><updated>{}</updated><summary>{}</summary></entry>",
            xml(&title),
            xml(&link),
            xml(&link),
            rfc3339(run.build.finished.max(run.when())),
            xml(&format!("ref {} · {}", &run.build.sha[..7.min(run.build.sha.len())], marks.join(", ")))
        );
    }
    out.push_str("</feed>\n");
    out
}
