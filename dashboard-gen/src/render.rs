//! The HTML pages: the overview (with its pre-rendered filter and sort variants), a page per
//! recipe and a page per run, and the one stylesheet. Outside strings go through
//! [`crate::escape`] into their own variable before they meet markup.

use std::fmt::Write;

use ccci::summary::{Stage, Summary};

use crate::clock::{display, duration_ms, rfc3339};
use crate::config::Config;
use crate::escape::{html as esc, safe_url};
use crate::model::{Mark, Recipe, Run, Site, Status, LEVELS, MARKED};

/// Short labels of the marked stages, for column heads.
const MARK_LABELS: [&str; 4] = ["install", "upgrade", "backup", "tests"];

/// Runs drawn in a recipe's sparkline.
const SPARK_RUNS: usize = 40;

/// URLs built from the config (validated) and numbers; still escaped where written.
pub struct Links<'a> {
    pub cfg: &'a Config,
}

impl Links<'_> {
    pub fn pr(&self, r: &Recipe, pr: i64) -> String {
        format!("{}/{}/pulls/{pr}", self.cfg.gitea_url, r.repo.full())
    }
    pub fn repo(&self, r: &Recipe) -> String {
        format!("{}/{}", self.cfg.gitea_url, r.repo.full())
    }
    pub fn drone_build(&self, n: i64) -> String {
        format!("{}/{}/{n}", self.cfg.drone_url, self.cfg.drone_repo.full())
    }
    /// Drone's web route for a step's log: `/{owner}/{name}/{build}/{stage}/{step}`. The cc-ci
    /// pipeline is the build's one stage; its steps are numbered in the contract's order
    /// (clone disabled), so step N is the Nth stage ([`Stage::step`]).
    pub fn drone_step(&self, n: i64, stage: Stage) -> Option<String> {
        let step = stage.step();
        Some(format!("{}/1/{step}", self.drone_build(n)))
    }
}

fn status_badge(s: Status) -> String {
    format!(
        "<span class=\"b {0}\">{1} {0}</span>",
        s.as_str(),
        s.symbol()
    )
}

fn level_cell(level: Option<u8>) -> String {
    match level {
        Some(l) => format!(
            "<span class=\"lv l{l}\">L{l}</span> {}",
            LEVELS[l as usize].0
        ),
        None => "<span class=\"lv\">–</span>".into(),
    }
}

/// The stage marks of a run (the ladder's rungs), each with its result (and skip reason) as title.
fn marks(run: &Run) -> String {
    let mut out = String::with_capacity(200);
    for (i, stage) in MARKED.iter().enumerate() {
        let m = run.mark(i);
        let reason = match (m, run.stage(*stage)) {
            (Mark::Skipped | Mark::Error, Some(s)) if !s.reason.is_empty() => {
                format!(": {}", crate::escape::truncate(&s.reason, 120))
            }
            _ => String::new(),
        };
        let flaky = if run.flaky[i] { " (flaky)" } else { "" };
        let title = format!("{stage} {}{reason}{flaky}", m.as_str());
        let title = esc(&title);
        let class = if run.flaky[i] {
            format!("\"{} y\"", m.class())
        } else {
            m.class().to_owned()
        };
        let _ = write!(out, "<i class={class} title=\"{title}\">{}</i>", m.symbol());
    }
    // No hover on a phone: the reasons are written out there (CSS shows them when narrow).
    let mut why = String::new();
    for (i, stage) in MARKED.iter().enumerate() {
        if let (Mark::Skipped | Mark::Error, Some(s)) = (run.mark(i), run.stage(*stage)) {
            if !s.reason.is_empty() {
                let _ = write!(
                    why,
                    "<span>{stage}: {}</span>",
                    esc(crate::escape::truncate(&s.reason, 120).as_ref())
                );
            }
        }
    }
    if !why.is_empty() {
        let _ = write!(out, "<span class=whys>{why}</span>");
    }
    out
}

fn marks_head() -> String {
    let mut s = String::from("<span class=ks>");
    for l in MARK_LABELS {
        let _ = write!(s, "<i>{l}</i>");
    }
    s.push_str("</span>");
    s
}

/// "what was tested" cell: PR link (or the scheduled re-test's slot), short ref, version.
fn tested(links: &Links, r: &Recipe, run: &Run) -> String {
    let short = esc(run.build.sha.get(..7).unwrap_or(&run.build.sha)).into_owned();
    let version = esc(run.version()).into_owned();
    if run.scheduled() {
        let regression = if run.regression.is_some() {
            " <span class=rg>regression</span>"
        } else {
            ""
        };
        return format!(
            "main, re-test {} <code>{short}</code> {version}{regression}",
            esc(&run.build.schedule)
        );
    }
    let pr = esc(&links.pr(r, run.build.pr)).into_owned();
    format!(
        "<a href=\"{pr}\">PR #{}</a> <code>{short}</code> {version}",
        run.build.pr
    )
}

/// The default branch's state from its newest scheduled re-test: "main: L3, tested
/// 2026-12-02", a regression said so.
fn main_cell(r: &Recipe, pre: &str) -> String {
    let Some(run) = r.main_run() else {
        return "<small>not re-tested yet</small>".into();
    };
    let mut s = format!(
        "main: {}, tested <a href=\"{pre}runs/{n}.html\">{}</a>",
        level_cell(run.level),
        display(run.when()).get(..10).unwrap_or(""),
        n = run.number()
    );
    if let Some(reg) = &run.regression {
        let what = if reg.changes.is_empty() {
            "nothing cc-ci can see changed".to_owned()
        } else {
            reg.changes.join("; ")
        };
        let _ = write!(
            s,
            " <span class=rg title=\"{}\">regression since #{}</span>",
            esc(&what),
            reg.since
        );
    }
    s
}

fn when(run: &Run) -> String {
    let dur = run.duration_ms().map(duration_ms).unwrap_or_default();
    format!(
        "{} <small>{dur}</small>",
        display(run.when()).trim_end_matches(" UTC")
    )
}

pub(crate) fn page(title: &str, pre: &str, body: &str, footer: &str) -> String {
    let title = esc(title);
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><meta name=\"color-scheme\" content=\"light dark\"><title>{title}</title><link rel=\"stylesheet\" href=\"{pre}style.css\"><link rel=\"alternate\" type=\"application/atom+xml\" title=\"cc-ci results\" href=\"{pre}feed.atom\"></head>\n<body><header class=top><a class=brand href=\"{pre}index.html\">cc-ci</a><span>Co-op Cloud recipe CI</span></header>\n<main>{body}</main>\n<footer>{footer}<a href=\"{pre}weekly.html\">this week</a> · <a href=\"{pre}summary.json\">summary.json</a> · <a href=\"{pre}feed.atom\">Atom feed</a> · times in UTC</footer></body></html>\n"
    )
}

/// The overview page name for a filter and sort.
pub fn index_name(filter: Option<Status>, by_age: bool) -> String {
    let base = filter.map(|s| s.as_str()).unwrap_or("index");
    if by_age {
        format!("{base}-age.html")
    } else {
        format!("{base}.html")
    }
}

/// The overview: every enrolled recipe, or those with `filter` status, by name or by age.
pub fn index(
    links: &Links,
    site: &Site,
    filter: Option<Status>,
    by_age: bool,
    generated: i64,
) -> String {
    let mut body = String::with_capacity(64 * 1024 + site.recipes.len() * 700);
    body.push_str("<h1>Recipes</h1><nav class=filters aria-label=\"Filter by status\"><ul>");
    let current = |f: Option<Status>| {
        if f == filter {
            " aria-current=page"
        } else {
            ""
        }
    };
    let _ = write!(
        body,
        "<li><a href=\"{}\"{}><b>{}</b> all</a></li>",
        index_name(None, by_age),
        current(None),
        site.recipes.len()
    );
    for s in Status::ALL {
        let n = site.counts.get(&s).copied().unwrap_or(0);
        let _ = write!(
            body,
            "<li class={0}><a href=\"{1}\"{2}><b>{3}</b> {4} {0}</a></li>",
            s.as_str(),
            index_name(Some(s), by_age),
            current(Some(s)),
            n,
            s.symbol()
        );
    }
    body.push_str("</ul></nav><p class=sort>Sort: ");
    for (age, label) in [(false, "name"), (true, "newest run")] {
        if age == by_age {
            let _ = write!(body, "<strong aria-current=true>{label}</strong> ");
        } else {
            let _ = write!(body, "<a href=\"{}\">{label}</a> ", index_name(filter, age));
        }
    }
    body.push_str("</p>");
    let mut rows: Vec<&Recipe> = site
        .recipes
        .iter()
        .filter(|r| filter.is_none_or(|f| r.status == f))
        .collect();
    if by_age {
        rows.sort_by_key(|r| std::cmp::Reverse(r.last_activity()));
    }
    if rows.is_empty() {
        body.push_str("<p class=empty>No recipe has this status.</p>");
    } else {
        let _ = writeln!(
            body,
            "<table class=rs><thead><tr><th scope=col>Recipe</th><th scope=col>Status</th><th scope=col>Level</th><th scope=col>Default branch</th><th scope=col>{}</th><th scope=col>Tested</th><th scope=col>When</th><th scope=col>Run</th></tr></thead><tbody>",
            marks_head()
        );
        for r in rows {
            index_row(&mut body, links, r);
        }
        body.push_str("</tbody></table>");
    }
    body.push_str(&levels_legend());
    let footer = format!("Generated {} · ", display(generated));
    page("cc-ci: recipes", "", &body, &footer)
}

fn index_row(out: &mut String, links: &Links, r: &Recipe) {
    let name = esc(r.name);
    let flaky = if r.flaky.is_empty() {
        String::new()
    } else {
        let stages: Vec<&str> = r.flaky.iter().map(|s| s.as_str()).collect();
        format!(
            " <span class=fl title=\"flaky: {}\">~ flaky</span>",
            stages.join(", ")
        )
    };
    let _ = write!(
        out,
        "<tr class={}><th scope=row><a href=\"recipes/{name}.html\">{name}</a>{flaky}</th><td>{}</td><td>{}</td><td>{}</td>",
        r.status.as_str(),
        status_badge(r.status),
        level_cell(r.level),
        main_cell(r, "")
    );
    match r.latest() {
        Some(run) => {
            let drone = esc(&links.drone_build(run.number())).into_owned();
            let _ = writeln!(
                out,
                "<td class=ks>{}</td><td>{}</td><td>{}</td><td><a href=\"runs/{n}.html\">#{n}</a> · <a href=\"{drone}\">Drone</a></td></tr>",
                marks(run),
                tested(links, r, run),
                when(run),
                n = run.number()
            );
        }
        None => out.push_str("<td class=ks>never tested</td><td></td><td></td><td></td></tr>\n"),
    }
}

fn levels_legend() -> String {
    let mut s =
        String::from("<details class=legend><summary>Levels and marks</summary><ol start=0>");
    for (i, (name, what)) in LEVELS.iter().enumerate() {
        let _ = write!(
            s,
            "<li><span class=\"lv l{i}\">L{i}</span> <b>{name}</b>: {what}</li>"
        );
    }
    s.push_str("</ol><p>Marks: <i class=p>✓</i> passed, <i class=f>✗</i> failed, <i class=s>↷</i> skipped (hover for why), <i class=e>!</i> error, <i class=r>●</i> running, <i class=n>–</i> not run; <i class=\"f y\">✗</i> underlined: flaky (passed and failed on the same ref).</p></details>");
    s
}

/// The sparkline: one bar per run, oldest left, height and colour by status, text in
/// `<title>`s for those who cannot see colour.
fn sparkline(r: &Recipe) -> String {
    let runs: Vec<&Run> = r.runs.iter().take(SPARK_RUNS).collect();
    if runs.is_empty() {
        return String::new();
    }
    let w = runs.len() * 6;
    let passed = runs.iter().filter(|x| x.status == Status::Passed).count();
    let label = format!("last {} runs of {}: {passed} passed", runs.len(), r.name);
    let label = esc(&label);
    let mut s = format!("<svg class=spark width=\"{w}\" height=\"24\" viewBox=\"0 0 {w} 24\" role=\"img\" aria-label=\"{label}\"><title>{label}</title>");
    for (i, run) in runs.iter().rev().enumerate() {
        let (h, class) = match run.status {
            Status::Passed => (22, "p"),
            Status::Failed => (12, "f"),
            Status::Error => (12, "e"),
            Status::Running => (6, "r"),
            Status::Cancelled | Status::Untested => (4, "n"),
        };
        let _ = write!(
            s,
            "<a href=\"../runs/{n}.html\"><rect class={class} x=\"{x}\" y=\"{y}\" width=\"4\" height=\"{h}\"><title>#{n} {st}</title></rect></a>",
            n = run.number(),
            x = i * 6,
            y = 24 - h,
            st = run.status.as_str()
        );
    }
    s.push_str("</svg>");
    s
}

pub fn recipe_page(links: &Links, r: &Recipe) -> String {
    let name = esc(r.name).into_owned();
    let repo = esc(&links.repo(r)).into_owned();
    let repo_full = esc(&r.repo.full()).into_owned();
    let site = &links.cfg.site_url;
    let badge_url = format!("{site}/badges/level/{}.svg", r.name);
    let page_url = format!("{site}/recipes/{}.html", r.name);
    let md = format!("[![cc-ci level]({badge_url})]({page_url})");
    let md = esc(&md);
    let html_snippet =
        format!("<a href=\"{page_url}\"><img src=\"{badge_url}\" alt=\"cc-ci level\"></a>");
    let html_snippet = esc(&html_snippet);
    let mut body = String::with_capacity(16 * 1024 + r.runs.len() * 800);
    let _ = write!(
        body,
        "<p class=crumbs><a href=\"../index.html\">All recipes</a></p><h1>{name} {}</h1><p class=meta><img src=\"../badges/level/{name}.svg\" alt=\"cc-ci {} badge\"> Level: <b>{}</b> · Repository <a href=\"{repo}\">{repo_full}</a>",
        status_badge(r.status),
        r.status.badge(),
        level_cell(r.level)
    );
    if !r.flaky.is_empty() {
        let stages: Vec<&str> = r.flaky.iter().map(|s| s.as_str()).collect();
        let _ = write!(
            body,
            " · <span class=fl>~ flaky: {}</span>",
            stages.join(", ")
        );
    }
    let _ = write!(
        body,
        "</p><p class=main>Default branch: {}</p>",
        main_cell(r, "../")
    );
    if let Some(reg) = r.main_run().and_then(|run| run.regression.as_ref()) {
        body.push_str("<div class=regression><p><b>Regression not caused by the recipe:</b> the default branch failed its re-test on the commit that passed in ");
        let _ = write!(
            body,
            "<a href=\"../runs/{0}.html\">#{0}</a>. What changed between the two runs:</p><ul>",
            reg.since
        );
        if reg.changes.is_empty() {
            body.push_str("<li>nothing cc-ci can see (the images, the upgrade base and cc-ci are the same)</li>");
        }
        for c in &reg.changes {
            let _ = write!(body, "<li>{}</li>", esc(c));
        }
        body.push_str("</ul></div>");
    }
    if r.runs.is_empty() {
        body.push_str("<p class=empty>Never tested: no run of this recipe yet. Comment <code>!testme</code> on a pull request to start one.</p>");
    } else {
        let _ = write!(body, "<h2>History</h2><p>{}</p>", sparkline(r));
        let _ = writeln!(
            body,
            "<table class=rs><thead><tr><th scope=col>Run</th><th scope=col>Status</th><th scope=col>Level</th><th scope=col>{}</th><th scope=col>Tested</th><th scope=col>When</th><th scope=col>Drone</th></tr></thead><tbody>",
            marks_head()
        );
        for run in &r.runs {
            let drone = esc(&links.drone_build(run.number())).into_owned();
            let _ = writeln!(
                body,
                "<tr class={}><th scope=row><a href=\"../runs/{n}.html\">#{n}</a></th><td>{}</td><td>{}</td><td class=ks>{}</td><td>{}</td><td>{}</td><td><a href=\"{drone}\">Drone</a></td></tr>",
                run.status.as_str(),
                status_badge(run.status),
                level_cell(run.level),
                marks(run),
                tested(links, r, run),
                when(run),
                n = run.number()
            );
        }
        body.push_str("</tbody></table>");
    }
    let _ = write!(
        body,
        "<h2>Badge</h2><p>Markdown for the recipe's README:</p><pre class=snippet>{md}</pre><p>HTML:</p><pre class=snippet>{html_snippet}</pre><p><a href=\"{}.atom\">Atom feed of {name}</a></p>",
        name
    );
    body.push_str(&levels_legend());
    page(&format!("cc-ci: {}", r.name), "../", &body, "")
}

/// `artifacts`: (stage, path) of the files copied beside the page, under `runs/<build>/`.
/// `summary`: the run's full summary (read afresh from the results directory).
/// The page depends on this one build alone (flaky marks, which depend on other runs, are
/// on the overview and history pages): a finished run's page is written once.
pub fn run_page(
    links: &Links,
    r: &Recipe,
    run: &Run,
    summary: Option<&Summary>,
    artifacts: &[(Stage, String)],
    texts: &[(String, String)],
) -> String {
    let b = run.build;
    let n = run.number();
    let name = esc(r.name).into_owned();
    let pr = esc(&links.pr(r, run.build.pr)).into_owned();
    let drone = esc(&links.drone_build(n)).into_owned();
    let sha = esc(&run.build.sha).into_owned();
    let mut body = String::with_capacity(8 * 1024);
    let _ = write!(
        body,
        "<p class=crumbs><a href=\"../index.html\">All recipes</a> › <a href=\"../recipes/{name}.html\">{name}</a></p><h1>{name} #{n} {}</h1>",
        status_badge(run.status)
    );
    body.push_str(&verdict_block(summary, b.is_done()));
    // The run's card (what the PR comment shows) heads the page; it is not a screenshot.
    let (cards, artifacts): (Vec<_>, Vec<_>) = artifacts
        .iter()
        .partition(|(_, a)| a == "artifacts/card.png");
    if let Some((_, a)) = cards.first() {
        let _ = write!(
            body,
            "<p class=card><img src=\"{n}/{}\" alt=\"the run's summary card\" width=760></p>",
            esc(a)
        );
    }
    let version = esc(run.version()).into_owned();
    let base = esc(summary.map(|s| s.upgrade_base.as_str()).unwrap_or("")).into_owned();
    let domain = esc(summary.map(|s| s.domain.as_str()).unwrap_or("")).into_owned();
    let src_raw = &run.build.src;
    let src = match safe_url(src_raw) {
        Some(u) => {
            let u = esc(u);
            format!("<a href=\"{u}\">{u}</a>")
        }
        None => format!("<code>{}</code>", esc(src_raw)),
    };
    let dur = run
        .duration_ms()
        .map(duration_ms)
        .unwrap_or_else(|| "–".into());
    let _ = write!(
        body,
        "<dl class=facts><dt>Level reached</dt><dd>{}</dd><dt>Pull request</dt><dd><a href=\"{pr}\">#{}</a></dd><dt>Ref</dt><dd><code>{sha}</code></dd><dt>Version</dt><dd>{}</dd><dt>Upgraded from</dt><dd>{}</dd><dt>Source</dt><dd>{src}</dd><dt>App domain</dt><dd>{}</dd><dt>Started</dt><dd><time datetime=\"{}\">{}</time></dd><dt>Duration</dt><dd>{dur}</dd><dt>Drone</dt><dd><a href=\"{drone}\">build #{n}</a> ({})</dd></dl>",
        level_cell(run.level),
        run.build.pr,
        if version.is_empty() { "–" } else { &version },
        if base.is_empty() { "–" } else { &base },
        if domain.is_empty() { "–" } else { &domain },
        rfc3339(run.when()),
        display(run.when()),
        esc(b.status.as_str())
    );
    if !b.error.is_empty() {
        let e = esc(&b.error);
        let _ = write!(body, "<p class=err>Drone: {e}</p>");
    }
    for note in summary.map(|s| s.notes.as_slice()).unwrap_or_default() {
        let _ = write!(body, "<p class=note>Note: {}</p>", esc(note));
    }
    body.push_str("<h2>Stages</h2>");
    match summary {
        None => body.push_str("<p class=empty>No run summary reached the dashboard for this build: the run ended before its first stage reported, or it ran on another runner host that could not ship its results. The Drone logs below say which.</p>"),
        Some(s) if b.is_done() && s.finished == 0 => {
            let last = s.stages.last().map_or("none".into(), |st| st.name.to_string());
            let _ = write!(body, "<p class=partial>The stages below after <b>{last}</b> did not report their details here: the run was stopped, or the runner host it ran on went away or could not ship them. Drone's logs still have what it ran.</p>");
        }
        Some(_) => {}
    }
    body.push_str("<table class=stages><thead><tr><th scope=col>Stage</th><th scope=col>Result</th><th scope=col>Duration</th><th scope=col>Tests</th><th scope=col>Why</th><th scope=col>Log</th></tr></thead><tbody>");
    for stage in Stage::ALL {
        let res = summary.and_then(|s| s.stage(stage));
        let m = Mark::from_stage(res.map(|s| s.status), b.is_done());
        let (dur, tests, reason) = match res {
            Some(s) => (
                duration_ms(s.duration_ms),
                if s.tests.total > 0 {
                    format!(
                        "{}/{} passed{}{}",
                        s.tests.passed,
                        s.tests.total,
                        if s.tests.failed > 0 {
                            format!(", {} failed", s.tests.failed)
                        } else {
                            String::new()
                        },
                        if s.tests.skipped > 0 {
                            format!(", {} skipped", s.tests.skipped)
                        } else {
                            String::new()
                        }
                    )
                } else {
                    String::new()
                },
                reason_cell(s),
            ),
            None => (
                String::new(),
                String::new(),
                esc(&not_run_why(summary, stage, b.is_done())).into_owned(),
            ),
        };
        let log = match links.drone_step(n, stage) {
            Some(u) => format!("<a href=\"{}\">log</a>", esc(&u)),
            None => String::new(),
        };
        let _ = write!(
            body,
            "<tr id=stage-{stage}><th scope=row>{stage}</th><td><i class={}>{}</i> {}</td><td data-l=took>{dur}</td><td data-l=tests>{tests}</td><td class=why>{reason}</td><td>{log}</td></tr>",
            m.class(),
            m.symbol(),
            m.as_str()
        );
    }
    body.push_str("</tbody></table>");
    if let Some(s) = summary {
        let failing: Vec<_> = s
            .stages
            .iter()
            .filter(|st| !st.failures.is_empty())
            .collect();
        if !failing.is_empty() {
            body.push_str("<h2>Failures</h2>");
            for st in failing {
                let _ = write!(body, "<h3>{}</h3>", esc(st.name.as_str()));
                for f in &st.failures {
                    let fname = esc(&f.name);
                    let msg = esc(&f.message);
                    let _ = write!(body, "<details class=fail open><summary><code>{fname}</code></summary><pre>{msg}</pre></details>");
                }
            }
        }
    }
    if !texts.is_empty() {
        body.push_str("<h2>Diagnostics</h2>");
    }
    for (a, text) in texts {
        // A red stage's tasks and logs, saved before teardown (already redacted).
        let _ = write!(
            body,
            "<details class=diag open><summary>{}</summary><pre>{}</pre></details>",
            esc(a),
            esc(text)
        );
    }
    if !artifacts.is_empty() {
        body.push_str("<h2>Screenshots and artifacts</h2><div class=shots>");
        for (stage, a) in &artifacts {
            // Artifact paths passed `ccci::summary::artifact_path_ok`: plain components only.
            let a = esc(a);
            let stage = esc(stage.as_str());
            let href = format!("{n}/{a}");
            if is_image(&a) {
                let _ = write!(body, "<figure><a href=\"{href}\"><img src=\"{href}\" alt=\"{stage}: {a}\" loading=lazy></a><figcaption>{stage}: {a}</figcaption></figure>");
            } else {
                let _ = write!(
                    body,
                    "<figure><a href=\"{href}\">{a}</a><figcaption>{stage}</figcaption></figure>"
                );
            }
        }
        body.push_str("</div>");
    }
    let trigger = esc(&b.trigger).into_owned();
    let branch = esc(&b.branch).into_owned();
    let message = esc(&b.message).into_owned();
    let author = esc(&b.author_login).into_owned();
    let sender = esc(&b.sender).into_owned();
    let _ = write!(
        body,
        "<h2>The cc-ci pipeline that ran it</h2><p class=hint>Drone's record of the build: its branch and commit are cc-ci's own (the pipeline), not the recipe's. The recipe commit tested is the Ref above.</p><dl class=facts><dt>Triggered by</dt><dd>{trigger}</dd><dt>Sender</dt><dd>{sender}</dd><dt>cc-ci branch</dt><dd>{branch}</dd><dt>cc-ci commit author</dt><dd>{author}</dd><dt>cc-ci commit message</dt><dd><pre>{message}</pre></dd></dl>"
    );
    page(&format!("cc-ci: {} #{n}", r.name), "../", &body, "")
}

/// What a phone shows first: the outcome, and the first failure with its message.
fn verdict_block(summary: Option<&Summary>, done: bool) -> String {
    use ccci::summary::Status;
    let Some(s) = summary else {
        return String::new();
    };
    let bad = s
        .stages
        .iter()
        .find(|st| matches!(st.status, Status::Failed | Status::Error));
    let mut out = String::from("<div class=verdict>");
    match bad {
        Some(st) => {
            let _ = write!(
                out,
                "<p><i class={}>{}</i> <b>{} {}</b>{}</p>",
                if st.status == Status::Failed {
                    "f"
                } else {
                    "e"
                },
                if st.status == Status::Failed {
                    "✗"
                } else {
                    "!"
                },
                esc(st.name.as_str()),
                st.status.as_str(),
                if st.reason.is_empty() {
                    String::new()
                } else {
                    format!(": {}", esc(&st.reason))
                }
            );
            if let Some(f) = st.failures.first() {
                let _ = write!(
                    out,
                    "<p class=first>First failure: <code>{}</code></p><pre>{}</pre>",
                    esc(&f.name),
                    esc(crate::escape::truncate(&f.message, 600).as_ref())
                );
            }
        }
        None if done && s.finished > 0 => {
            let _ = write!(
                out,
                "<p><i class=p>✓</i> <b>passed</b>: level {} of 5</p>",
                s.level()
            );
        }
        None => out.push_str("<p><i class=r>●</i> <b>running</b>: no stage has failed so far</p>"),
    }
    out.push_str("</div>");
    out
}

/// Why a stage has no result: the rows of the stage table that would otherwise be empty.
fn not_run_why(summary: Option<&Summary>, stage: Stage, done: bool) -> String {
    use ccci::summary::Status;
    let earlier = summary.and_then(|s| {
        s.stages
            .iter()
            .find(|st| st.name < stage && matches!(st.status, Status::Failed | Status::Error))
    });
    match (earlier, done) {
        (Some(st), _) => format!("not run: {} did not pass", st.name),
        (None, false) => "not yet".into(),
        (None, true) if summary.is_none() => "no record reached the dashboard".into(),
        (None, true) => {
            "not run: the run ended before it (stopped, or its record did not arrive)".into()
        }
    }
}

/// A stage's reason, and what kind of skip it was: only a declared one is climbed past
/// (docs/levels.md), a coverage gap is flagged, and so is a declared skip gone stale.
fn reason_cell(s: &ccci::summary::StageResult) -> String {
    use ccci::summary::{Skip, Status};
    let mut out = esc(&s.reason).into_owned();
    if s.status == Status::Skipped {
        match s.skip {
            Some(Skip::Declared) => out.push_str(" <small>(declared)</small>"),
            Some(Skip::Gap) => out.push_str(" <b class=gap>coverage gap</b>"),
            _ => {}
        }
    }
    if !s.stale.is_empty() {
        let _ = write!(out, " <b class=stale>stale skip:</b> {}", esc(&s.stale));
    }
    if !s.checks.is_empty() {
        out.push_str("<ul class=checks>");
        for c in &s.checks {
            use ccci::summary::CheckStatus;
            let (class, sym, word) = match c.status {
                CheckStatus::Passed => ("p", "✓", "passed"),
                CheckStatus::Failed => ("f", "✗", "failed"),
                CheckStatus::Off => ("n", "–", "switched off"),
                CheckStatus::Skipped => ("s", "↷", "skipped"),
                CheckStatus::Unknown => ("n", "?", "not checked"),
            };
            let _ = write!(
                out,
                "<li><i class={class}>{sym}</i> <code>{}</code> {word}: {}</li>",
                esc(&c.name),
                esc(&c.detail)
            );
        }
        out.push_str("</ul>");
    }
    out
}

pub fn is_image(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    [".png", ".jpg", ".jpeg", ".webp", ".gif"]
        .iter()
        .any(|e| lower.ends_with(e))
}

/// One small stylesheet: light and dark, narrow and wide, status by symbol as well as colour.
pub const STYLE: &str = r#":root{--bg:#fff;--fg:#1f2328;--mute:#59636e;--line:#d1d9e0;--soft:#f6f8fa;--link:#0550ae;--p:#1a7f37;--f:#cf222e;--e:#bc4c00;--r:#0969da;--s:#9a6700;--n:#6e7781}
@media (prefers-color-scheme:dark){:root{--bg:#0d1117;--fg:#e6edf3;--mute:#9198a1;--line:#3d444d;--soft:#151b23;--link:#4493f8;--p:#3fb950;--f:#f85149;--e:#db6d28;--r:#58a6ff;--s:#d29922;--n:#9198a1}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
a{color:var(--link)}
code,pre{font:13px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
pre{white-space:pre-wrap;overflow-wrap:anywhere;margin:0}
header.top{display:flex;gap:1rem;align-items:baseline;padding:.7rem 1.2rem;border-bottom:1px solid var(--line);background:var(--soft)}
.brand{font-weight:700;font-size:1.15rem;text-decoration:none;color:var(--fg)}
header.top span{color:var(--mute)}
main{padding:1rem 1.2rem;max-width:1400px;margin:0 auto}
footer{padding:1rem 1.2rem;color:var(--mute);font-size:13px;border-top:1px solid var(--line)}
h1{font-size:1.5rem;margin:.3rem 0 .8rem}
h2{font-size:1.15rem;margin:1.6rem 0 .6rem}
h3{font-size:1rem}
.filters ul{list-style:none;display:flex;flex-wrap:wrap;gap:.4rem;padding:0;margin:0 0 .6rem}
.filters a{display:inline-block;padding:.25rem .65rem;border:1px solid var(--line);border-radius:2rem;text-decoration:none;color:var(--fg)}
.filters a[aria-current]{background:var(--fg);color:var(--bg);border-color:var(--fg)}
.filters li.passed b{color:var(--p)}.filters li.failed b{color:var(--f)}.filters li.error b{color:var(--e)}.filters li.running b{color:var(--r)}
.filters a[aria-current] b{color:inherit}
.sort{margin:.2rem 0 1rem;color:var(--mute)}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.45rem .5rem;border-bottom:1px solid var(--line);vertical-align:top}
thead th{font-size:13px;color:var(--mute);font-weight:600}
tbody th{font-weight:600}
.b{display:inline-block;white-space:nowrap;padding:0 .5rem;border-radius:.3rem;border:1px solid currentColor;font-size:13px;font-weight:600}
.b.passed{color:var(--p)}.b.failed{color:var(--f)}.b.error{color:var(--e)}.b.running{color:var(--r)}.b.cancelled,.b.untested{color:var(--n)}
.b.failed,.b.error{border-width:2px}.b.untested,.b.cancelled{border-style:dashed}
.lv{display:inline-block;min-width:1.9em;text-align:center;font-weight:700;font-size:12px;border-radius:.25rem;background:var(--soft);border:1px solid var(--line)}
.l4,.l5,.l6{border-color:var(--p)}.l0{border-color:var(--f)}
.ks i{display:inline-block;width:54px;text-align:center;font-style:normal}
thead .ks i{font-size:11px;font-weight:600}
tbody .ks i,.legend i,.stages i{font-weight:700;font-style:normal}
i.p{color:var(--p)}i.f{color:var(--f)}i.e{color:var(--e)}i.r{color:var(--r)}i.s{color:var(--s)}i.n{color:var(--n)}
i.y{text-decoration:underline wavy}
.fl{font-size:12px;color:var(--s);white-space:nowrap}
.rg{font-size:12px;font-weight:600;color:var(--f);white-space:nowrap}
small{color:var(--mute)}
.crumbs{margin:0;color:var(--mute)}
.meta img{vertical-align:middle}
.empty{padding:1rem;background:var(--soft);border:1px dashed var(--line);border-radius:.4rem}
.partial{padding:.6rem 1rem;border:1px solid var(--line);border-left:4px solid #b58900;border-radius:.4rem}
.err{color:var(--f)}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:.25rem 1rem}
dl.facts dt{color:var(--mute)}dl.facts dd{margin:0;overflow-wrap:anywhere}
.snippet{background:var(--soft);border:1px solid var(--line);padding:.6rem;border-radius:.4rem}
details.fail{border:1px solid var(--line);border-left:4px solid var(--f);border-radius:.3rem;padding:.4rem .6rem;margin:.4rem 0}
details.fail summary{cursor:pointer;overflow-wrap:anywhere}
details.fail pre{margin-top:.4rem}
.card img{max-width:100%;height:auto}
.gap,.stale{color:var(--e)}
.checks{margin:.3em 0 0;padding-left:1.2em;font-size:.9em}.note{border-left:3px solid var(--s);padding-left:.6em}
details.diag{border:1px solid var(--line);border-radius:.3rem;padding:.4rem .6rem;margin:.6rem 0}
details.diag pre{max-height:30rem;overflow:auto}
.shots{display:flex;flex-wrap:wrap;gap:1rem}
.shots figure{margin:0;max-width:360px}
.shots img{max-width:100%;border:1px solid var(--line);border-radius:.3rem}
figcaption{font-size:12px;color:var(--mute);overflow-wrap:anywhere}
.spark rect.p{fill:var(--p)}.spark rect.f{fill:var(--f)}.spark rect.e{fill:var(--e)}.spark rect.r{fill:var(--r)}.spark rect.n{fill:var(--n)}
.legend{margin-top:2rem;color:var(--mute)}
.verdict{margin:.5rem 0 1rem;padding:.6rem .9rem;border:1px solid var(--line);border-radius:.4rem;background:var(--soft)}
.verdict p{margin:.2rem 0}.verdict pre{max-height:12em;overflow:auto}.verdict code{overflow-wrap:anywhere}
.hint{color:var(--mute);font-size:13px}
.ks .whys{display:none}.ks .whys span{display:block;font-size:12px;color:var(--mute);white-space:normal}
@media (max-width:760px){
main,header.top,footer{padding-left:.8rem;padding-right:.8rem}
table.rs thead{display:none}
table.rs,table.rs tbody{display:block}
table.rs tr{display:flex;flex-wrap:wrap;gap:.3rem .7rem;padding:.6rem 0;border-bottom:1px solid var(--line)}
table.rs td,table.rs th{display:block;border:0;padding:0}
table.rs th{flex-basis:100%;font-size:1.05rem}
table.rs td.ks{flex-basis:100%}
.ks i{width:auto;margin-right:.7em}
tbody .ks i:nth-child(1)::after{content:" install"}tbody .ks i:nth-child(2)::after{content:" upgrade"}tbody .ks i:nth-child(3)::after{content:" backup"}tbody .ks i:nth-child(4)::after{content:" tests"}
tbody .ks i::after{font-weight:400;color:var(--mute);font-size:12px}
table.stages thead{display:none}
table.stages,table.stages tbody{display:block}
table.stages tr{display:flex;flex-wrap:wrap;gap:.2rem .8rem;padding:.5rem 0;border-bottom:1px solid var(--line)}
table.stages td,table.stages th{display:block;border:0;padding:0}
table.stages th{min-width:7rem}
table.stages td.why{flex-basis:100%;color:var(--fg)}
table.stages td[data-l]:not(:empty)::before{content:attr(data-l) " ";color:var(--mute);font-size:12px}
.ks .whys{display:block}
dl.facts{grid-template-columns:1fr}dl.facts dt{margin-top:.3rem}
}
"#;

/// Summaries of each recipe for `summary.json`.
pub fn summary_json(links: &Links, site: &Site, generated: i64) -> serde_json::Value {
    use serde_json::json;
    let site_url = &links.cfg.site_url;
    let recipes: Vec<serde_json::Value> = site
        .recipes
        .iter()
        .map(|r| {
            let latest = r.latest().map(|run| {
                let stages: serde_json::Map<String, serde_json::Value> = MARKED
                    .iter()
                    .enumerate()
                    .map(|(i, s)| {
                        let reason = run.stage(*s).map(|x| x.reason.clone()).unwrap_or_default();
                        (
                            s.as_str().to_owned(),
                            json!({"mark": run.mark(i).as_str(), "reason": reason, "flaky": run.flaky[i]}),
                        )
                    })
                    .collect();
                json!({
                    "build": run.number(),
                    "status": run.status.as_str(),
                    "level": run.level,
                    "ref": run.build.sha,
                    "pr": run.build.pr,
                    "pr_url": links.pr(r, run.build.pr),
                    "version": run.version(),
                    "started": run.when(),
                    "finished": run.build.finished,
                    "duration_ms": run.duration_ms(),
                    "drone_url": links.drone_build(run.number()),
                    "page": format!("{site_url}/runs/{}.html", run.number()),
                    "stages": stages,
                })
            });
            json!({
                "name": r.name,
                "repo": r.repo.full(),
                "status": r.status.as_str(),
                "badge_message": r.status.badge(),
                "level": r.level,
                "level_name": r.level.map(|l| LEVELS[l as usize].0),
                "flaky": r.flaky.iter().collect::<Vec<_>>(),
                "page": format!("{site_url}/recipes/{}.html", r.name),
                "badge": format!("{site_url}/badges/{}.svg", r.name),
                "runs": r.runs.len(),
                "latest": latest,
                "main": r.main_run().map(|run| json!({
                    "build": run.number(),
                    "status": run.status.as_str(),
                    "level": run.level,
                    "ref": run.build.sha,
                    "schedule": run.build.schedule,
                    "tested": run.when(),
                    "page": format!("{site_url}/runs/{}.html", run.number()),
                    "regression": run.regression.as_ref().map(|g| json!({"since": g.since, "changes": g.changes})),
                })),
            })
        })
        .collect();
    let counts: serde_json::Map<String, serde_json::Value> = Status::ALL
        .iter()
        .map(|s| {
            (
                s.as_str().to_owned(),
                json!(site.counts.get(s).copied().unwrap_or(0)),
            )
        })
        .collect();
    json!({
        "schema": 1,
        "generated": rfc3339(generated),
        "site_url": site_url,
        "counts": counts,
        "levels": LEVELS.iter().enumerate().map(|(i, (n, d))| json!({"level": i, "name": n, "means": d})).collect::<Vec<_>>(),
        "recipes": recipes,
    })
}
