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
const RENDER_VERSION: u32 = 1;
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

/// Which stamp each page of a site was rendered from, so the next run can link the pages
/// that would come out the same.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Manifest {
    key: u64,
    recipes: BTreeMap<String, u64>,
    runs: BTreeMap<i64, RunEntry>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct RunEntry {
    stamp: u64,
    /// Files copied beside the page, relative to the site.
    files: Vec<String>,
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

fn run_stamp(run: &Run) -> u64 {
    let mut bytes = run.build.stamp.to_le_bytes().to_vec();
    bytes.extend(run.flaky.iter().map(|f| u8::from(*f)));
    fnv1a(&bytes)
}

fn recipe_stamp(r: &model::Recipe) -> u64 {
    let mut bytes = Vec::with_capacity(r.runs.len() * 8 + 8);
    for run in &r.runs {
        bytes.extend(run_stamp(run).to_le_bytes());
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
    let mut cache = Cache::load(&cfg.cache_dir, &cfg.drone_repo.full());
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
    let mut manifest = Manifest {
        key,
        ..Manifest::default()
    };
    let (mut rendered, mut reused) = (0usize, 0usize);

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
    staging.write(
        "feed.atom",
        feed::atom(
            cfg,
            "cc-ci: recipe results",
            "feed.atom",
            &recent,
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
                feed::atom(cfg, &title, &files[1], &runs, generated).as_bytes(),
            )?;
            staging.write(&files[2], badge::svg(r.name, r.status).as_bytes())?;
            rendered += 1;
        }
        manifest.recipes.insert(r.name.to_owned(), stamp);
        for run in &r.runs {
            let n = run.number();
            let stamp = run_stamp(run);
            let page = format!("runs/{n}.html");
            if let Some(old) = prev.runs.get(&n).filter(|e| e.stamp == stamp) {
                if staging.reuse(&page) && old.files.iter().all(|f| staging.reuse(f)) {
                    reused += 1;
                    manifest.runs.insert(
                        n,
                        RunEntry {
                            stamp,
                            files: old.files.clone(),
                        },
                    );
                    continue;
                }
            }
            let mut copied = Vec::new();
            let mut files = Vec::new();
            let full = run
                .build
                .summary
                .as_ref()
                .and_then(|_| fetch::read_summary(&cfg.results_dir, run.build));
            if let Some(s) = &full {
                for st in &s.stages {
                    for a in &st.artifacts {
                        let rel = format!("runs/{n}/{a}");
                        let from = cfg.results_dir.join(n.to_string()).join(a);
                        match staging.copy_in(&rel, &from, MAX_ARTIFACT_BYTES) {
                            Ok(()) => {
                                copied.push((st.name.clone(), a.clone()));
                                files.push(rel);
                            }
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
            staging.write(
                &page,
                render::run_page(
                    &links,
                    r,
                    run,
                    full.as_ref().or(run.build.summary.as_ref()),
                    &copied,
                )
                .as_bytes(),
            )?;
            rendered += 1;
            manifest.runs.insert(n, RunEntry { stamp, files });
        }
    }
    staging.write(MANIFEST, &serde_json::to_vec(&manifest)?)?;
    let dir = staging.publish()?;
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
