//! The real-app recipes (standins/recipes/), each through every stage with its suite from
//! tests/<recipe>/ against the real programs on the real swarm, and each one's broken variant: a
//! PR that a maintainer could write, turning the matching stage red with a reason to act on.

mod world;

use world::World;

/// A PR that is the recipe's newest release, run through every stage: each must pass with the
/// given number of suite tests; the upgrade runs `head_image`, from the release before.
fn whole_run(
    name: &str,
    recipe: &str,
    release: &str,
    build: u32,
    head_image: &str,
    tests: &[(&str, u32)],
) -> World {
    let mut w = World::of_recipe(name, recipe);
    w.sha = world::git(
        &w.forge.join(recipe),
        &["rev-parse", &format!("{release}^{{commit}}")],
    );
    w.write_config(&[
        ("deploy_timeout_secs", serde_json::json!(300)),
        ("trusted_recipes", serde_json::json!([recipe])),
    ]);
    let env = w.params(build);
    let stack = standins::abra::app::stack_name(&format!("{recipe}-{build}.{}", w.base_domain));
    for stage in stage_runner::STAGES {
        let s = w.stage(stage, &env);
        assert_eq!(s.code, 0, "{stage} failed:\n{}", s.stdout);
        if *stage == "upgrade" {
            let images: Vec<String> = standins::abra::docker::services(&stack)
                .unwrap()
                .iter()
                .map(|s| s.spec.task_template.container_spec["Image"].to_string())
                .collect();
            assert!(
                images.iter().any(|i| *i == format!("\"{head_image}\"")),
                "the upgrade runs the PR's {head_image}: {images:?}"
            );
        }
    }
    let sum = w.summary(build);
    for (stage, passed) in tests {
        let st = sum.stage(stage).unwrap();
        assert_eq!(st.status.as_str(), "passed", "{stage}: {}", st.reason);
        assert_eq!(st.tests.passed, *passed, "{stage}'s tests");
        assert_eq!(st.tests.failed, 0, "{stage}'s tests");
    }
    assert_eq!(sum.version, release);
    assert_eq!(w.leftovers(), Vec::<String>::new());
    w
}

/// The stateful single-database recipe: WordPress and MariaDB for real. The upgrade is Debian
/// bookworm's WordPress 6.1.9 to trixie's 6.8.12 over the old database, with WordPress's own
/// database update; the backup is a mariadb-dump and the wp-content volume.
#[test]
fn a_whole_wordpress_run_passes_on_wordpress_and_mariadb() {
    let w = whole_run(
        "wordpress",
        "wordpress",
        "1.1.0+6.8.12",
        21,
        "wordpress:6.8.12-apache",
        &[
            ("install", 5),
            ("upgrade", 2),
            ("backup", 3),
            ("recipe-tests", 2),
        ],
    );
    assert_eq!(w.summary(21).upgrade_base, "1.0.0+6.1.9");
}

/// Runs prepare, install and backup of the PR that `edit` makes on top of the recipe's newest
/// release, waiting at most `wait_secs` for the app; returns the backup stage's exit code and
/// the summary. Teardown must leave nothing.
fn backup_of_a_pr(
    name: &str,
    recipe: &str,
    build: u32,
    wait_secs: u64,
    edit: impl FnOnce(&std::path::Path),
) -> (i32, ccci::summary::Summary) {
    let mut w = World::of_recipe(name, recipe);
    w.pr_commit("PR: change the backup", edit);
    w.write_config(&[("deploy_timeout_secs", serde_json::json!(wait_secs))]);
    let env = w.params(build);
    for stage in ["prepare", "install"] {
        let s = w.stage(stage, &env);
        assert_eq!(s.code, 0, "{stage}:\n{}", s.stdout);
    }
    let code = w.stage("backup", &env).code;
    assert_eq!(w.stage("teardown", &env).code, 0);
    assert_eq!(w.leftovers(), Vec::<String>::new());
    (code, w.summary(build))
}

/// `edit` for [`backup_of_a_pr`]: replaces `from` (which must be there) in compose.yml.
fn compose_edit<'a>(from: &'a str, to: &'a str) -> impl FnOnce(&std::path::Path) + 'a {
    move |repo| {
        let p = repo.join("compose.yml");
        let compose = std::fs::read_to_string(&p).unwrap();
        assert!(compose.contains(from), "{from}");
        std::fs::write(&p, compose.replace(from, to)).unwrap();
    }
}

/// WordPress's backup broken two ways a maintainer could: a hook that dumps nowhere (the
/// generic check names the missing dump), and one that dumps the schema without the rows (the
/// dump is whole, but WordPress does not answer on the emptied tables after the restore).
#[test]
fn a_wordpress_backup_that_loses_the_posts_fails_with_what_was_lost() {
    let (code, sum) = backup_of_a_pr(
        "wp-nodump",
        "wordpress",
        22,
        300,
        compose_edit("> /var/lib/mysql/dump.sql\"", "> /dev/null\""),
    );
    assert_eq!(code, 1);
    let b = sum.stage("backup").unwrap();
    assert_eq!(b.status.as_str(), "failed", "{}", b.reason);
    assert!(
        b.reason.contains("/var/lib/mysql/dump.sql") && b.reason.contains("db"),
        "{}",
        b.reason
    );

    let (code, sum) = backup_of_a_pr(
        "wp-nodata",
        "wordpress",
        23,
        30,
        compose_edit(
            "mariadb-dump --single-transaction",
            "mariadb-dump --no-data",
        ),
    );
    assert_eq!(code, 1);
    let b = sum.stage("backup").unwrap();
    assert_eq!(b.status.as_str(), "failed", "{}", b.reason);
    assert!(
        b.reason
            .contains("the app does not answer after the restore of snapshot"),
        "{}",
        b.reason
    );
}
