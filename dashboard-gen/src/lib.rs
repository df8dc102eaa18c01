//! dashboard-gen: reads the cc-ci pipeline's builds from Drone (incrementally, through a
//! cache) and the run summaries stage-runner wrote, and publishes a static site: an overview
//! of every enrolled recipe, a page per recipe and per run, badges, `summary.json` and Atom
//! feeds. See docs/dashboard.md.

pub mod badge;
pub mod clock;
pub mod config;
pub mod escape;
pub mod feed;
pub mod fetch;
pub mod model;
pub mod publish;
pub mod render;
pub mod weekly;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use ccci::drone::DroneClient;
use ccci::log::{emit, Level};

use config::Config;
use fetch::{fnv1a, Cache};
use model::{Run, Site, Status};
use publish::Staging;
use render::Links;

/// Bump when the pages' markup changes, so every page is rendered afresh once.
const RENDER_VERSION: u32 = 2;
/// Screenshots larger than this are not copied into the site.
const MAX_ARTIFACT_BYTES: u64 = 20 * 1024 * 1024;
const MANIFEST: &str = ".manifest.json";

/// What one generation did.
#[derive(Debug)]
pub struct Report {
    pub requests: u32,
    pub changed: usize,
    pub rendered: usize,
    pub reused: usize,
    pub site: PathBuf,
}

/// Which stamp each page of a site was rendered from, so the next run can keep the pages
/// that would come out the same.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Manifest {
    key: u64,
    recipes: BTreeMap<String, u64>,
    /// Build → (stamp, served from the site's live pages).
    runs: BTreeMap<i64, (u64, bool)>,
}

fn render_key(cfg: &Config) -> u64 {
    let mut s = format!(
        "{RENDER_VERSION}|{}|{}|{}|{}|{}|{}",
        env!("CARGO_PKG_VERSION"),
        cfg.drone_url,
        cfg.drone_repo.full(),
        cfg.gitea_url,
        cfg.site_url,
        cfg.history
    );
    for (k, v) in &cfg.recipes {
        s.push_str(&format!("|{k}={}", v.full()));
    }
    fnv1a(s.as_bytes())
}

/// A recipe page shows each run's stamp, its flaky marks, the level and the status.
fn recipe_stamp(r: &model::Recipe) -> u64 {
    let mut bytes = Vec::with_capacity(r.runs.len() * 12 + 8);
    for run in &r.runs {
        bytes.extend(run.build.stamp.to_le_bytes());
        bytes.extend(run.flaky.iter().map(|f| u8::from(*f)));
    }
    bytes.push(r.level.unwrap_or(255));
    bytes.extend(r.status.as_str().bytes());
    fnv1a(&bytes)
}

/// JSON with `< > & '` as `\u` escapes, as Go's encoding/json writes it: the file stays
/// inert even if a browser is talked into reading it as HTML. These characters only ever
/// occur inside JSON strings, so replacing them everywhere is exact.
pub fn html_safe_json(s: &str) -> String {
    s.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\'', "\\u0027")
}

/// One generation: refresh from Drone, build the model, write a new site, swap it in, save
/// the cache. Any error before the swap leaves the published site as it was.
pub fn generate(cfg: &Config) -> Result<Report> {
    let t0 = Instant::now();
    let client = DroneClient::new(&cfg.drone_url, cfg.drone_token.clone(), cfg.request_timeout);
    // Held to the end: the cache and the store are shared with the next generation.
    let _lock = publish::lock(&cfg.out_dir)?;
    let mut cache = Cache::load(&cfg.cache_dir, &cfg.drone_repo.full(), cfg.history);
    let refresh = fetch::refresh(&client, cfg, &mut cache)
        .with_context(|| format!("reading builds from Drone at {}", cfg.drone_url))?;
    let t_fetch = t0.elapsed();
    let generated = clock::now();
    let site = Site::build(cfg, &cache);
    let links = Links { cfg };
    let mut staging = Staging::begin(&cfg.out_dir)?;
    let key = render_key(cfg);
    let prev: Manifest = staging
        .previous()
        .and_then(|p| std::fs::read(p.join(MANIFEST)).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .filter(|m: &Manifest| m.key == key)
        .unwrap_or_default();
    // A finished run's page the published site lists is never rewritten in place; if one
    // would change, every page goes into a new store.
    let changed_finished = site.recipes.iter().flat_map(|r| &r.runs).any(|run| {
        prev.runs
            .get(&run.number())
            .is_some_and(|(stamp, live)| !live && *stamp != run.build.stamp)
    });
    let fresh = staging.open_store(prev.key != key || changed_finished)?;
    let prev_runs = if fresh { BTreeMap::new() } else { prev.runs };
    let mut manifest = Manifest {
        key,
        ..Manifest::default()
    };
    let (mut rendered, mut reused) = (0usize, 0usize);
    let mut promote = Vec::new();

    staging.write("style.css", render::STYLE.as_bytes())?;
    for filter in std::iter::once(None).chain(Status::ALL.into_iter().map(Some)) {
        for by_age in [false, true] {
            let page = render::index(&links, &site, filter, by_age, generated);
            staging.write(&render::index_name(filter, by_age), page.as_bytes())?;
        }
    }
    let summary = render::summary_json(&links, &site, generated);
    staging.write(
        "summary.json",
        html_safe_json(&serde_json::to_string_pretty(&summary)?).as_bytes(),
    )?;
    let mut recent: Vec<(&model::Recipe, &Run)> = site
        .recipes
        .iter()
        .flat_map(|r| {
            r.runs
                .iter()
                .filter(|x| x.build.is_done())
                .map(move |x| (r, x))
        })
        .collect();
    recent.sort_by_key(|(_, x)| std::cmp::Reverse(x.number()));
    recent.truncate(feed::ENTRIES);
    let week = weekly::week(&site, generated);
    staging.write(weekly::PATH, weekly::page(&week).as_bytes())?;
    staging.write(
        "feed.atom",
        feed::atom(
            cfg,
            "cc-ci: recipe results",
            "feed.atom",
            &recent,
            Some(&week),
            generated,
        )
        .as_bytes(),
    )?;

    for r in &site.recipes {
        let stamp = recipe_stamp(r);
        let files = [
            format!("recipes/{}.html", r.name),
            format!("recipes/{}.atom", r.name),
            format!("badges/{}.svg", r.name),
            format!("badges/level/{}.svg", r.name),
        ];
        if prev.recipes.get(r.name) == Some(&stamp) && files.iter().all(|f| staging.reuse(f)) {
            reused += 1;
        } else {
            staging.write(&files[0], render::recipe_page(&links, r).as_bytes())?;
            let runs: Vec<(&model::Recipe, &Run)> = r
                .runs
                .iter()
                .filter(|x| x.build.is_done())
                .map(|x| (r, x))
                .collect();
            let title = format!("cc-ci: {}", r.name);
            staging.write(
                &files[1],
                feed::atom(cfg, &title, &files[1], &runs, None, generated).as_bytes(),
            )?;
            staging.write(&files[2], badge::svg(r.name, r.status).as_bytes())?;
            staging.write(&files[3], badge::level(r.name, r.level).as_bytes())?;
            rendered += 1;
        }
        manifest.recipes.insert(r.name.to_owned(), stamp);
        for run in &r.runs {
            let placed = place_run_page(cfg, &links, &mut staging, &prev_runs, r, run)?;
            if placed.rendered {
                rendered += 1;
            } else {
                reused += 1;
            }
            if placed.live && run.build.settled {
                promote.push(run.number());
            }
            manifest
                .runs
                .insert(run.number(), (run.build.stamp, placed.live));
        }
    }
    staging.write(MANIFEST, &serde_json::to_vec(&manifest)?)?;
    let published = staging.publish()?;
    // The new site is live; what follows only tidies the store, and a failure is caught up
    // by the next run.
    for n in promote {
        if let Err(e) = published.promote(n) {
            emit(
                Level::Warn,
                "dashboard",
                "run page left live",
                &[("build", &n), ("error", &format!("{e:#}"))],
            );
        }
    }
    if let Err(e) = published.sweep(&manifest.runs.keys().copied().collect()) {
        emit(
            Level::Warn,
            "dashboard",
            "store not swept",
            &[("error", &format!("{e:#}"))],
        );
    }
    let dir = published.dir;
    cache
        .save(&cfg.cache_dir)
        .with_context(|| format!("saving the build cache in {}", cfg.cache_dir.display()))?;
    let report = Report {
        requests: refresh.requests,
        changed: refresh.changed.len(),
        rendered,
        reused,
        site: dir,
    };
    emit(
        Level::Info,
        "dashboard",
        "published",
        &[
            ("site", &report.site.display()),
            ("recipes", &site.recipes.len()),
            ("builds_cached", &cache.builds.len()),
            ("drone_requests", &report.requests),
            ("changed", &report.changed),
            ("rendered", &report.rendered),
            ("reused", &report.reused),
            ("fetch_ms", &t_fetch.as_millis()),
            ("total_ms", &t0.elapsed().as_millis()),
        ],
    );
    Ok(report)
}

/// Where a run page went, and whether it had to be rendered.
struct Placed {
    /// Served from the site's live pages (through the store's symlink).
    live: bool,
    rendered: bool,
}

/// Puts a run's page where the store's rules (see [`publish`]) allow: kept when the store or
/// the previous site already has it, else rendered into the store (a finished run the
/// published site does not list) or into the site's live pages.
fn place_run_page(
    cfg: &Config,
    links: &Links,
    staging: &mut Staging,
    prev_runs: &BTreeMap<i64, (u64, bool)>,
    r: &model::Recipe,
    run: &Run,
) -> Result<Placed> {
    let n = run.number();
    let settled = run.build.settled;
    let (same, was_live) = match prev_runs.get(&n) {
        Some((stamp, live)) => (*stamp == run.build.stamp, *live),
        None => (false, false),
    };
    // Finished and in the store as a file (written, or stored after the previous swap).
    if settled && same && (!was_live || staging.entry(n) == publish::Entry::File) {
        return Ok(Placed {
            live: false,
            rendered: false,
        });
    }
    // The published site lists the page through its live pages, or the run is unfinished:
    // the store's entry must stay the symlink until the swap.
    let live = !settled || was_live;
    let live_page = Staging::live_page(n);
    if live && same && staging.reuse(&live_page) {
        staging.store_live(n)?;
        return Ok(Placed {
            live,
            rendered: false,
        });
    }
    let page = run_page(cfg, links, staging, r, run);
    if live {
        staging.write(&live_page, page.as_bytes())?;
        staging.store_live(n)?;
    } else {
        staging.store_page(n, page.as_bytes())?;
    }
    Ok(Placed {
        live,
        rendered: true,
    })
}

/// Text artifacts larger than this are linked, not shown.
const MAX_TEXT_ARTIFACT: u64 = 128 * 1024;

/// Renders one run page, copying the screenshots its summary lists into the store.
fn run_page(
    cfg: &Config,
    links: &Links,
    staging: &mut Staging,
    r: &model::Recipe,
    run: &Run,
) -> String {
    let n = run.number();
    let full = run
        .build
        .summary
        .as_ref()
        .and_then(|_| fetch::read_summary(&cfg.results_dir, run.build));
    let mut copied = Vec::new();
    // A run's files are published only from inside its own results directory: an artifact, or
    // a directory on its way, swapped for a symlink must not publish what it points at.
    let run_dir = cfg.results_dir.join(n.to_string()).canonicalize().ok();
    if let Some(s) = &full {
        for st in &s.stages {
            for a in &st.artifacts {
                let from = cfg.results_dir.join(n.to_string()).join(a);
                let inside = match (&run_dir, from.canonicalize()) {
                    (Some(root), Ok(real)) => real == root.join(a),
                    _ => false,
                };
                if !inside {
                    emit(
                        Level::Warn,
                        "dashboard",
                        "artifact left out: not a file of the run's own directory",
                        &[("build", &n), ("artifact", a)],
                    );
                    continue;
                }
                match staging.store_artifact(n, a, &from, MAX_ARTIFACT_BYTES) {
                    Ok(()) => copied.push((st.name, a.clone())),
                    Err(e) => emit(
                        Level::Warn,
                        "dashboard",
                        "artifact left out",
                        &[("build", &n), ("error", &format!("{e:#}"))],
                    ),
                }
            }
        }
    }
    // Text artifacts (a red stage's diagnostics) are shown on the page itself, not only linked.
    let texts: Vec<(String, String)> = copied
        .iter()
        .filter(|(_, a)| a.ends_with(".txt"))
        .filter_map(|(_, a)| {
            let from = cfg.results_dir.join(n.to_string()).join(a);
            let meta = std::fs::metadata(&from).ok()?;
            (meta.len() <= MAX_TEXT_ARTIFACT)
                .then(|| std::fs::read(&from).ok())
                .flatten()
                .map(|b| (a.clone(), String::from_utf8_lossy(&b).into_owned()))
        })
        .collect();
    let summary = full.or_else(|| run.build.summary.as_ref().map(|d| d.as_summary(run.build)));
    render::run_page(links, r, run, summary.as_ref(), &copied, &texts)
}
