//! `ccci::gitea::GiteaClient` against the in-process stand-in Gitea: typed answers, paging
//! that ends, fail-closed membership, and every fault knob of `standins::http` (500, hang,
//! malformed JSON, truncated body, delay) — with the token never in an error's text.

use std::time::{Duration, Instant};

use ccci::gitea::{GiteaClient, Membership};
use ccci::secret::Secret;
use standins::gitea::{Gitea, HookSpec, HookVersion};
use standins::http::{Fault, FaultRule};

const T0: i64 = 1_740_823_200; // 2025-03-01T10:00:00Z

struct World {
    g: Gitea,
    token: String,
}

fn world() -> World {
    let g = Gitea::start().unwrap();
    g.set_now(T0);
    standins::forge::acme_scene(&g, &"3f2e".repeat(10)).unwrap();
    let token = g
        .create_token(
            "ci",
            &[
                "read:issue",
                "write:issue",
                "read:repository",
                "write:repository",
                "read:organization",
                "write:notification",
            ],
        )
        .unwrap();
    World { g, token }
}

impl World {
    fn client(&self, timeout: Duration) -> GiteaClient {
        GiteaClient::new(&self.g.api_url(), Secret::new(self.token.clone()), timeout)
    }

    /// Asserts the token is nowhere in an error's alternate or debug text.
    fn no_token(&self, e: &anyhow::Error) -> String {
        let (alt, dbg) = (format!("{e:#}"), format!("{e:?}"));
        assert!(!alt.contains(&self.token), "token leaked: {alt}");
        assert!(!dbg.contains(&self.token), "token leaked: {dbg}");
        alt
    }
}

#[test]
fn typed_reads_of_comments_pulls_and_issues() {
    let w = world();
    let c = w.client(Duration::from_secs(5));
    let id = w.g.comment("acme", "app", 1, "alice", "!testme").unwrap();
    let page = c
        .list_repo_comments("acme", "app", Some(T0), 1, 50)
        .unwrap();
    assert_eq!(page.total, Some(1));
    let cm = &page.items[0];
    assert_eq!(
        (cm.id, cm.pull_number(), cm.issue_number()),
        (id, Some(1), None)
    );
    assert_eq!(cm.user.as_ref().unwrap().login, "alice");
    assert_eq!(cm.created_at.0, T0);
    // The client sent `Authorization: token …` and always `page`, with `since` encoded.
    let reqs = w.g.requests();
    let req = &reqs.last().unwrap().request;
    assert_eq!(
        req.header("Authorization"),
        Some(format!("token {}", w.token).as_str())
    );
    assert_eq!(req.query("page"), Some("1"));
    assert_eq!(req.query("since"), Some("2025-03-01T10:00:00Z"));

    let per_issue = c.issue_comments("acme", "app", 1, Some(T0)).unwrap();
    assert_eq!(per_issue.len(), 1);

    let pr = c.get_pull("acme", "app", 1).unwrap();
    assert_eq!(
        (pr.number, pr.state.as_str(), pr.merged),
        (1, "open", false)
    );
    assert_eq!(pr.head.git_ref, "fix-x");
    assert_eq!(pr.head.repo.as_ref().unwrap().full_name, "bob/app");
    assert_eq!(
        pr.base.repo.as_ref().unwrap().clone_url,
        format!("{}acme/app.git", w.g.root_url())
    );
    w.g.delete_repo("bob", "app").unwrap();
    let pr = c.get_pull("acme", "app", 1).unwrap();
    assert_eq!((pr.head.repo_id, pr.head.repo.is_none()), (-1, true));
    assert_eq!(pr.head.git_ref, "refs/pull/1/head");

    let issue = c.get_issue("acme", "app", 1).unwrap();
    assert!(issue.pull_request.is_some());
    assert_eq!(issue.repository.unwrap().full_name, "acme/app");
}

#[test]
fn times_with_offsets_parse_to_the_same_instant() {
    let g = Gitea::start_with(standins::gitea::Options {
        tz_offset_secs: -(5 * 3600 + 1800),
        ..Default::default()
    })
    .unwrap();
    g.set_now(T0);
    g.create_user("u").unwrap();
    g.create_repo("u", "r", false).unwrap();
    let n = g.open_issue("u", "r", "u", "t").unwrap();
    g.comment("u", "r", n, "u", "hi").unwrap();
    let token = g.create_token("u", &["all"]).unwrap();
    let c = GiteaClient::new(&g.api_url(), Secret::new(token), Duration::from_secs(5));
    let page = c.list_repo_comments("u", "r", Some(T0), 1, 10).unwrap();
    assert_eq!(page.items[0].created_at.0, T0);
    let raw = String::from_utf8(
        c.api()
            .send("GET", "/repos/u/r/issues/comments", None)
            .unwrap()
            .body,
    )
    .unwrap();
    assert!(raw.contains("2025-03-01T04:30:00-05:30"), "{raw}");
}

#[test]
fn paging_always_sends_page_and_stops() {
    let w = world();
    let c = w.client(Duration::from_secs(5));
    for i in 0..120 {
        w.g.comment("acme", "app", 1, "alice", &format!("c{i}"))
            .unwrap();
    }
    w.g.clear_requests();
    let scan = c.repo_comments_since("acme", "app", Some(T0), 10).unwrap();
    assert_eq!(scan.items.len(), 120);
    assert!(!scan.truncated);
    assert_eq!(scan.pages, 3, "50 + 50 + 20: X-Total-Count is reached");
    let reqs = w.g.requests();
    assert_eq!(reqs.len(), 3);
    for (i, r) in reqs.iter().enumerate() {
        assert_eq!(r.request.query("page"), Some((i + 1).to_string().as_str()));
        assert_eq!(r.request.query("limit"), Some("50"));
    }
    // Bounded: at most max_pages requests, and it says so.
    w.g.clear_requests();
    let scan = c.repo_comments_since("acme", "app", None, 2).unwrap();
    assert_eq!(
        (scan.items.len(), scan.truncated, w.g.requests().len()),
        (100, true, 2)
    );
    // Exactly a multiple of 50: the total says it is done, no extra page.
    for i in 0..30 {
        w.g.comment("acme", "app", 1, "alice", &format!("d{i}"))
            .unwrap();
    }
    let scan = c.repo_comments_since("acme", "app", None, 10).unwrap();
    assert_eq!(
        (scan.items.len(), scan.pages, scan.truncated),
        (150, 3, false)
    );
    // Asking for more than 50 is clamped, so a short page still means the end.
    let page = c.list_repo_comments("acme", "app", None, 1, 500).unwrap();
    assert_eq!(page.items.len(), 50);
    assert_eq!(
        w.g.requests().last().unwrap().request.query("limit"),
        Some("50")
    );
}

#[test]
fn membership_is_fail_closed() {
    let w = world();
    let c = w.client(Duration::from_millis(500));
    assert_eq!(c.membership("acme", "alice"), Membership::Member);
    assert_eq!(c.membership("acme", "bob"), Membership::NotMember);
    // The bot itself not in the org: Gitea redirects (303) to public_members → Unknown.
    w.g.remove_member("acme", "ci").unwrap();
    match c.membership("acme", "alice") {
        Membership::Unknown(why) => {
            assert!(
                why.contains("303") && why.contains("public_members"),
                "{why}"
            );
            assert!(!why.contains(&w.token));
        }
        other => panic!("{other:?}"),
    }
    w.g.set_member("acme", "ci", false).unwrap();
    // Renamed user: 307 → Unknown.
    w.g.rename_user("alice", "alicia").unwrap();
    assert!(matches!(c.membership("acme", "alice"), Membership::Unknown(w) if w.contains("307")));
    assert_eq!(c.membership("acme", "alicia"), Membership::Member);
    // 500 → Unknown.
    w.g.inject(FaultRule::new("/api/v1/orgs/*/members/*", Fault::Status { status: 500 }).times(1));
    assert!(matches!(c.membership("acme", "alicia"), Membership::Unknown(w) if w.contains("500")));
    // Hang → Unknown within the timeout.
    w.g.inject(FaultRule::new("/api/v1/orgs/*/members/*", Fault::Hang).times(1));
    let start = Instant::now();
    let m = c.membership("acme", "alicia");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    match m {
        Membership::Unknown(why) => assert!(!why.contains(&w.token), "{why}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn writes_comment_edit_react_watch_and_notifications() {
    let w = world();
    let c = w.client(Duration::from_secs(5));
    let posted = c.create_comment("acme", "app", 1, "Build started").unwrap();
    assert_eq!(posted.pull_number(), Some(1));
    w.g.advance(3);
    let edited = c
        .edit_comment("acme", "app", posted.id, "Build passed")
        .unwrap();
    assert_eq!(
        (edited.body.as_str(), edited.updated_at.0),
        ("Build passed", T0 + 3)
    );
    let alice = w.g.comment("acme", "app", 1, "alice", "!testme").unwrap();
    let r = c.add_reaction("acme", "app", alice, "eyes").unwrap();
    assert_eq!(r.content, "eyes");
    // Already there: 200, still success.
    c.add_reaction("acme", "app", alice, "eyes").unwrap();
    let e = c.add_reaction("acme", "app", alice, "nope").unwrap_err();
    let text = w.no_token(&e);
    assert!(
        text.contains("403") && text.contains("/reactions"),
        "{text}"
    );
    // Someone else's comment: 403 from Gitea, named in the error.
    let other = w.g.comment("acme", "app", 1, "bob", "hi").unwrap();
    w.g.remove_member("acme", "ci").unwrap();
    let e = c.edit_comment("acme", "app", other, "x").unwrap_err();
    assert!(w.no_token(&e).contains("HTTP 403"));
    w.g.set_member("acme", "ci", false).unwrap();

    let watch = c.watch("acme", "app").unwrap();
    assert!(watch.subscribed);
    w.g.advance(5);
    w.g.comment("acme", "app", 1, "alice", "!testme again")
        .unwrap();
    let threads = c.notifications(Some(T0), false, Some("pull")).unwrap();
    assert_eq!(threads.len(), 1);
    let s = threads[0].subject.as_ref().unwrap();
    assert_eq!((s.kind.as_str(), s.number()), ("Pull", Some(1)));
    assert_eq!(threads[0].updated_at.0, T0 + 8);
    c.mark_notifications_read(Some(T0 + 8)).unwrap();
    assert!(c.notifications(None, false, None).unwrap().is_empty());
    assert_eq!(c.notifications(None, true, None).unwrap().len(), 1);
}

#[test]
fn webhook_payloads_of_both_versions_deserialize() {
    let w = world();
    let rx = standins::http::Server::start(
        0,
        std::sync::Arc::new(|_r: &standins::http::Request| standins::http::Response::new(200)),
    )
    .unwrap();
    for v in [HookVersion::V1_21, HookVersion::V1_24] {
        w.g.add_webhook(
            "acme",
            "app",
            &HookSpec {
                url: rx.url(),
                secret: "k".into(),
                version: v,
                events: vec!["pull_request_comment".into()],
            },
        )
        .unwrap();
    }
    let id = w.g.comment("acme", "app", 1, "alice", "!testme").unwrap();
    w.g.edit_comment(id, "alice", "!testme please").unwrap();
    let d = w.g.wait_deliveries(4, Duration::from_secs(10));
    assert_eq!(d.len(), 4);
    for delivery in &d {
        let p = ccci::gitea::parse_issue_comment_payload(delivery.body.as_bytes()).unwrap();
        assert!(p.is_pull);
        assert_eq!(p.comment.id, id);
        assert_eq!(p.comment.pull_number(), Some(1));
        assert_eq!(p.sender.login, "alice");
        assert_eq!(p.repository.full_name, "acme/app");
        let v124 = delivery
            .header("X-Gitea-Hook-Installation-Target-Type")
            .is_some();
        assert_eq!(p.pull_request.is_some(), v124);
        if let Some(pr) = &p.pull_request {
            assert_eq!(pr.head.repo.as_ref().unwrap().full_name, "bob/app");
        }
        if p.action == "edited" {
            assert_eq!(p.changes.unwrap().body.unwrap().from, "!testme");
        }
    }
}

#[test]
fn faults_become_clear_errors_without_the_token() {
    let w = world();
    let c = w.client(Duration::from_millis(500));
    let route = "/api/v1/repos/*/*/pulls/*";

    w.g.inject(FaultRule::new(route, Fault::Status { status: 500 }).times(1));
    let e = c.get_pull("acme", "app", 1).unwrap_err();
    let text = w.no_token(&e);
    assert!(
        text.contains("gitea GET /repos/acme/app/pulls/1") && text.contains("HTTP 500"),
        "{text}"
    );

    w.g.inject(FaultRule::new(route, Fault::Hang).times(1));
    let start = Instant::now();
    let e = c.get_pull("acme", "app", 1).unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    let text = w.no_token(&e);
    assert!(text.contains("/repos/acme/app/pulls/1"), "{text}");

    w.g.inject(FaultRule::new(route, Fault::MalformedJson).times(1));
    let e = c.get_pull("acme", "app", 1).unwrap_err();
    let text = w.no_token(&e);
    assert!(text.contains("malformed JSON"), "{text}");

    w.g.inject(FaultRule::new(route, Fault::Truncated).times(1));
    let e = c.get_pull("acme", "app", 1).unwrap_err();
    let text = w.no_token(&e);
    assert!(text.contains("/repos/acme/app/pulls/1"), "{text}");

    w.g.inject(FaultRule::new(route, Fault::Delay { ms: 150 }).times(1));
    assert_eq!(c.get_pull("acme", "app", 1).unwrap().number, 1);

    // Not found and a token without scope name the route and status.
    let e = c.get_pull("acme", "app", 99).unwrap_err();
    assert!(w.no_token(&e).contains("HTTP 404"));
    let weak = w.g.create_token("ci", &["read:issue"]).unwrap();
    let c2 = GiteaClient::new(
        &w.g.api_url(),
        Secret::new(weak.clone()),
        Duration::from_secs(5),
    );
    let e = c2.get_pull("acme", "app", 1).unwrap_err();
    let text = format!("{e:#} {e:?}");
    assert!(text.contains("HTTP 403") && !text.contains(&weak), "{text}");

    // Paging over a fault fails instead of returning a partial list as complete.
    w.g.inject(
        FaultRule::new(
            "/api/v1/repos/*/*/issues/comments",
            Fault::Status { status: 502 },
        )
        .times(1),
    );
    let e = c.repo_comments_since("acme", "app", None, 5).unwrap_err();
    assert!(w.no_token(&e).contains("HTTP 502"));
}

/// The client's paging, `since` and membership against the real Gitea (`dev/upstream`): every
/// comment in order, in pages of 50 ended by the short one, a bounded scan that says it was
/// cut, `since` inclusive on the update time, and membership answered by Gitea itself.
#[test]
fn real_gitea_paging_since_and_membership() {
    use standins::forge::Forge;
    let g = standins::upstream::gitea::RealGitea::start().unwrap_or_else(|e| panic!("{e:#}"));
    let pr = standins::forge::acme_scene(&g, "").unwrap();
    for i in 0..120 {
        Forge::comment(&g, "acme", "app", pr, "alice", &format!("c{i}")).unwrap();
    }
    let token = Forge::create_token(
        &g,
        "ci",
        &["read:issue", "read:repository", "read:organization"],
    )
    .unwrap();
    let c = GiteaClient::new(&g.api_url(), Secret::new(token), Duration::from_secs(10));
    let scan = c.repo_comments_since("acme", "app", None, 10).unwrap();
    let bodies: Vec<&str> = scan.items.iter().map(|c| c.body.as_str()).collect();
    let want: Vec<String> = (0..120).map(|i| format!("c{i}")).collect();
    assert_eq!(bodies, want, "every comment, oldest first");
    assert_eq!((scan.pages, scan.truncated), (3, false), "50 + 50 + 20");
    let cut = c.repo_comments_since("acme", "app", None, 2).unwrap();
    assert_eq!((cut.items.len(), cut.truncated), (100, true));
    let t = scan.items[60].updated_at.0;
    let since = c.repo_comments_since("acme", "app", Some(t), 10).unwrap();
    assert!(since.items.len() >= 60, "inclusive: {}", since.items.len());
    assert!(since.items.iter().all(|c| c.updated_at.0 >= t));
    assert_eq!(since.items.last().unwrap().body, "c119");
    assert_eq!(
        c.issue_comments("acme", "app", pr, None).unwrap().len(),
        120
    );
    assert_eq!(c.membership("acme", "alice"), Membership::Member);
    assert_eq!(c.membership("acme", "bob"), Membership::NotMember);
}

/// An admin's `[api] MAX_RESPONSE_ITEMS = 10`: every page is 10 long though 50 were asked
/// for (routers/api/v1/utils/page.go, convert.ToCorrectPageSize), and X-Total-Count says how
/// many there are. The client still reads every comment and notification, on the stand-in and
/// on the real Gitea.
fn a_lowered_page_cap_still_lists_everything<F: standins::forge::Forge>(g: F) {
    standins::forge::acme_scene(&g, &"3f2e".repeat(10)).unwrap();
    let token = g.create_token("ci", &["all"]).unwrap();
    let c = GiteaClient::new(
        &g.api_url(),
        Secret::new(token.clone()),
        Duration::from_secs(10),
    );
    let agent = ureq::Agent::new_with_defaults();
    agent
        .put(format!("{}/repos/acme/app/subscription", g.api_url()))
        .header("Authorization", format!("token {token}"))
        .send_empty()
        .unwrap();
    for i in 0..23 {
        g.comment("acme", "app", 1, "alice", &format!("c{i}"))
            .unwrap();
        g.open_issue("acme", "app", "alice", &format!("issue {i}"))
            .unwrap();
    }
    let raw = agent
        .get(format!(
            "{}/repos/acme/app/issues/comments?page=1&limit=50",
            g.api_url()
        ))
        .header("Authorization", format!("token {token}"))
        .call()
        .unwrap();
    let total: usize = raw.headers()["X-Total-Count"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(total >= 23, "{}", g.kind());
    let page: Vec<serde_json::Value> = raw.into_body().read_json().unwrap();
    assert_eq!(page.len(), 10, "{}: the cap cuts the page", g.kind());
    let scan = c.repo_comments_since("acme", "app", None, 20).unwrap();
    assert_eq!(
        (scan.items.len(), scan.truncated),
        (total, false),
        "{}",
        g.kind()
    );
    assert_eq!(scan.pages as usize, total.div_ceil(10), "{}", g.kind());
    // Notifications are made in the background on the real one: wait for all 23.
    let end = Instant::now() + Duration::from_secs(60);
    let threads = loop {
        let t = c.notifications(None, true, Some("issue")).unwrap();
        if t.len() >= 23 || Instant::now() > end {
            break t;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(
        threads.len(),
        23,
        "{}: every issue's thread, past the cap",
        g.kind()
    );
}

#[test]
fn a_lowered_page_cap_still_lists_everything_standin() {
    a_lowered_page_cap_still_lists_everything(
        Gitea::start_with(standins::gitea::Options {
            max_response_items: 10,
            ..Default::default()
        })
        .unwrap(),
    );
}

#[test]
fn a_lowered_page_cap_still_lists_everything_real() {
    a_lowered_page_cap_still_lists_everything(
        standins::upstream::gitea::RealGitea::start_with(10).unwrap_or_else(|e| panic!("{e:#}")),
    );
}
