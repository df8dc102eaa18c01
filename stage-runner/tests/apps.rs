//! The real-app recipes (standins/recipes/), each through every stage with its suite from
//! tests/<recipe>/ against the real programs on the real swarm, and each one's broken variant: a
//! PR that a maintainer could write, turning the matching stage red with a reason to act on.

mod world;

use ccci::summary::Stage;
use world::World;

/// A PR that is the recipe's newest release, run through every stage: each must pass with the
/// given number of suite tests; the upgrade goes `from` the release before `to` the PR's, and
/// runs `head_image`.
fn whole_run(
    name: &str,
    recipe: &str,
    (from, to): (&str, &str),
    build: u32,
    head_image: &str,
    tests: &[(&str, u32)],
) {
    let mut w = World::of_recipe(name, recipe);
    w.sha = world::git(
        &w.forge.join(recipe),
        &["rev-parse", &format!("{to}^{{commit}}")],
    );
    w.write_config(&[
        ("deploy_timeout_secs", serde_json::json!(300)),
        ("trusted_recipes", serde_json::json!([recipe])),
    ]);
    let env = w.params(build);
    let stack = standins::abra::app::stack_name(&format!("{recipe}-{build}.{}", w.base_domain));
    for stage in Stage::ALL {
        let s = w.stage(stage, &env);
        assert_eq!(s.code, 0, "{stage} failed:\n{}", s.stdout);
        if stage == Stage::Upgrade {
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
        let st = sum.stage(stage.parse().unwrap()).unwrap();
        assert_eq!(st.status.as_str(), "passed", "{stage}: {}", st.reason);
        assert_eq!(st.tests.passed, *passed, "{stage}'s tests");
        assert_eq!(st.tests.failed, 0, "{stage}'s tests");
    }
    assert_eq!(sum.upgrade_base, from);
    assert_eq!(sum.version, to);
    assert_eq!(w.leftovers(), Vec::<String>::new());
}

/// The stateful recipe: Synapse and PostgreSQL for real, the matrix-synapse suite in every
/// stage and the recipe's own tests. The upgrade keeps what Synapse 1.160.0 wrote through
/// 1.163.2's database migration; the backup stage gets back, through pg_dump and the restore
/// hook, what was there before the mutation.
#[test]
fn a_whole_matrix_synapse_run_passes_on_synapse_and_postgres() {
    whole_run(
        "synapse",
        "matrix-synapse",
        ("1.0.0+v1.160.0", "1.1.0+v1.163.2"),
        9,
        "matrixdotorg/synapse:v1.163.2",
        &[
            ("install", 4),
            ("upgrade", 3),
            ("backup", 3),
            ("recipe-tests", 2),
        ],
    );
}

/// The stateful single-database recipe: WordPress and MariaDB for real. The upgrade is Debian
/// bookworm's WordPress 6.1.9 to trixie's 6.8.12 over the old database, with WordPress's own
/// database update; the backup is a mariadb-dump and the wp-content volume.
#[test]
fn a_whole_wordpress_run_passes_on_wordpress_and_mariadb() {
    whole_run(
        "wordpress",
        "wordpress",
        ("1.0.0+6.1.9", "1.1.0+6.8.12"),
        21,
        "wordpress:6.8.12-apache",
        &[
            ("install", 5),
            ("upgrade", 2),
            ("backup", 3),
            ("recipe-tests", 2),
        ],
    );
}

/// Runs the PR that `edit` makes on top of the recipe's newest release up to `last` — every
/// stage before it must pass — waiting at most `wait_secs` for the app; returns `last`'s exit
/// code and the summary. Teardown must leave nothing.
fn pr_run_to(
    name: &str,
    recipe: &str,
    build: u32,
    wait_secs: u64,
    last: &str,
    edit: impl FnOnce(&std::path::Path),
) -> (i32, ccci::summary::Summary) {
    let mut w = World::of_recipe(name, recipe);
    w.pr_commit("PR: break it", edit);
    w.write_config(&[("deploy_timeout_secs", serde_json::json!(wait_secs))]);
    let env = w.params(build);
    let mut code = None;
    for stage in ["prepare", "install", "upgrade", "backup"] {
        let s = w.stage(stage, &env);
        if stage == last {
            code = Some(s.code);
            break;
        }
        assert_eq!(s.code, 0, "{stage}:\n{}", s.stdout);
    }
    assert_eq!(w.stage("teardown", &env).code, 0);
    assert_eq!(w.leftovers(), Vec::<String>::new());
    (code.expect("a stage of the run"), w.summary(build))
}

/// `edit` for [`pr_run_to`]: replaces `from` (which must be there) in compose.yml.
fn compose_edit<'a>(from: &'a str, to: &'a str) -> impl FnOnce(&std::path::Path) + 'a {
    file_edit("compose.yml", from, to)
}

/// `edit` for [`pr_run_to`]: replaces `from` (which must be there) in one of the recipe's files.
fn file_edit<'a>(file: &'a str, from: &'a str, to: &'a str) -> impl FnOnce(&std::path::Path) + 'a {
    move |repo| {
        let p = repo.join(file);
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains(from), "{file}: {from}");
        std::fs::write(&p, text.replace(from, to)).unwrap();
    }
}

/// WordPress's backup broken two ways a maintainer could: a hook that dumps nowhere (the
/// generic check names the missing dump), and one that dumps the schema without the rows (the
/// dump is whole, but WordPress does not answer on the emptied tables after the restore).
#[test]
fn a_wordpress_backup_that_loses_the_posts_fails_with_what_was_lost() {
    let (code, sum) = pr_run_to(
        "wp-nodump",
        "wordpress",
        22,
        300,
        "backup",
        compose_edit("> /var/lib/mysql/dump.sql\"", "> /dev/null\""),
    );
    assert_eq!(code, 1);
    let b = sum.stage(Stage::Backup).unwrap();
    assert_eq!(b.status.as_str(), "failed", "{}", b.reason);
    assert!(
        b.reason.contains("/var/lib/mysql/dump.sql") && b.reason.contains("db"),
        "{}",
        b.reason
    );

    let (code, sum) = pr_run_to(
        "wp-nodata",
        "wordpress",
        23,
        30,
        "backup",
        compose_edit(
            "mariadb-dump --single-transaction",
            "mariadb-dump --no-data",
        ),
    );
    assert_eq!(code, 1);
    let b = sum.stage(Stage::Backup).unwrap();
    assert_eq!(b.status.as_str(), "failed", "{}", b.reason);
    assert!(
        b.reason
            .contains("the app does not answer after the restore of snapshot"),
        "{}",
        b.reason
    );
}

/// The federated recipe: the reference AT Protocol PDS for real, its accounts' DIDs registered
/// with the ground's did:plc directory (dev/proxy). The upgrade is PDS 0.4.209 to 0.4.217 over
/// the old data; the backup is the data volume, restored under a restarted PDS.
#[test]
fn a_whole_bluesky_pds_run_passes_on_the_reference_pds() {
    whole_run(
        "pds",
        "bluesky-pds",
        ("0.2.0+v0.4.209", "0.3.0+v0.4.217"),
        31,
        "ghcr.io/bluesky-social/pds:0.4.217",
        &[("install", 4), ("upgrade", 2), ("backup", 3)],
    );
}

/// A PR that drops the PLC rotation key from the entrypoint: the PDS refuses to start, and
/// install fails with the container's exit and, in the diagnostics, the PDS's own complaint.
#[test]
fn a_pds_that_exits_at_start_fails_install_with_the_exit() {
    let (code, sum) = pr_run_to("pds-exits", "bluesky-pds", 32, 60, "install", |repo| {
        file_edit(
            "entrypoint.sh",
            "export PDS_JWT_SECRET PDS_ADMIN_PASSWORD PDS_PLC_ROTATION_KEY_K256_PRIVATE_KEY_HEX",
            "export PDS_JWT_SECRET PDS_ADMIN_PASSWORD",
        )(repo);
        // The recipe's timeout label bounds abra's wait for a deploy that cannot converge.
        compose_edit("${TIMEOUT:-300}", "${TIMEOUT:-20}")(repo);
    });
    assert_eq!(code, 1);
    let i = sum.stage(Stage::Install).unwrap();
    assert_eq!(i.status.as_str(), "failed", "{}", i.reason);
    assert!(i.reason.contains("non-zero exit (1)"), "{}", i.reason);
}

/// The stateful recipe's classic mistake: a PR that renames the database volume. The upgrade
/// deploys an empty database beside the old one; Synapse starts on it, and the suite says the
/// user made before the upgrade cannot log in.
#[test]
fn a_synapse_upgrade_onto_a_renamed_volume_fails_at_the_lost_user() {
    let (code, sum) = pr_run_to("syn-volume", "matrix-synapse", 33, 300, "upgrade", |repo| {
        compose_edit(
            "      - postgres:/var/lib/postgresql/data\n",
            "      - pgdata:/var/lib/postgresql/data\n",
        )(repo);
        compose_edit("  postgres:\n", "  pgdata:\n")(repo);
    });
    assert_eq!(code, 1);
    let u = sum.stage(Stage::Upgrade).unwrap();
    assert_eq!(u.status.as_str(), "failed", "{}", u.reason);
    let failure = u
        .failures
        .iter()
        .find(|f| f.name.ends_with("test_seed_survives_upgrade"))
        .unwrap_or_else(|| panic!("{:?}", u.failures));
    assert!(failure.message.contains("login"), "{}", failure.message);
}

/// The workflow-automation recipe, its fast form (what `.ci/run` runs): n8n 1.123.5 and
/// PostgreSQL for real, the install stage's suite (owner, workflow, the editor in Chromium).
#[test]
fn an_n8n_install_passes_on_n8n_and_postgres() {
    let mut w = World::of_recipe("n8n-install", "n8n");
    w.sha = world::git(
        &w.forge.join("n8n"),
        &["rev-parse", "1.1.0+1.123.5^{commit}"],
    );
    w.write_config(&[("deploy_timeout_secs", serde_json::json!(300))]);
    let env = w.params(40);
    for stage in ["prepare", "install", "teardown"] {
        let s = w.stage(stage, &env);
        assert_eq!(s.code, 0, "{stage} failed:\n{}", s.stdout);
    }
    let i = w.summary(40);
    let i = i.stage(Stage::Install).unwrap();
    assert_eq!(i.status.as_str(), "passed", "{}", i.reason);
    assert_eq!(i.tests.passed, 4);
    assert_eq!(w.leftovers(), Vec::<String>::new());
}

/// The whole n8n run: the upgrade is n8n 1.110.1 to 1.123.5, whose start runs the new
/// version's migrations over the old database; then backup and restore.
#[test]
#[ignore = "heavy (both n8n images, 1.3 GB each): dev/test --all runs it"]
fn a_whole_n8n_run_passes_on_n8n_and_postgres() {
    whole_run(
        "n8n",
        "n8n",
        ("1.0.0+1.110.1", "1.1.0+1.123.5"),
        41,
        "n8nio/n8n:1.123.5",
        &[("install", 4), ("upgrade", 2), ("backup", 3)],
    );
}

/// A PR that changes how the encryption key is made: n8n refuses to start on the settings the
/// old version wrote ("Mismatching encryption keys"), the swarm rolls the upgrade back, and the
/// upgrade stage fails with the container's exit.
#[test]
#[ignore = "heavy (both n8n images, 1.3 GB each): dev/test --all runs it"]
fn an_n8n_upgrade_with_another_encryption_key_fails_with_the_exit() {
    let (code, sum) = pr_run_to("n8n-key", "n8n", 42, 600, "upgrade", |repo| {
        file_edit(
            "entrypoint.sh",
            "N8N_ENCRYPTION_KEY=$(cat /run/secrets/encryption_key)",
            "N8N_ENCRYPTION_KEY=$(sha256sum /run/secrets/encryption_key | cut -c1-64)",
        )(repo);
        file_edit("abra.sh", "ENTRYPOINT_VERSION=v1", "ENTRYPOINT_VERSION=v2")(repo);
        compose_edit("${TIMEOUT:-300}", "${TIMEOUT:-60}")(repo);
    });
    assert_eq!(code, 1);
    let u = sum.stage(Stage::Upgrade).unwrap();
    assert_eq!(u.status.as_str(), "failed", "{}", u.reason);
    assert!(u.reason.contains("non-zero exit (1)"), "{}", u.reason);
}
