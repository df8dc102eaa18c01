//! The stand-in Gitea's quirks, pinned over real HTTP. Each test cites the upstream file
//! (go-gitea/gitea at v1.24.7 unless noted) whose behaviour it mirrors. These need the
//! stand-in's frozen clock, its 1.21 payloads or its delivery record; the quirks that do not
//! are in gitea_fidelity.rs, run against the real Gitea too.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use standins::gitea::{Gitea, HookSpec, HookVersion, Options};
use standins::http::{Response as HttpResponse, Server};

mod support;
use support::{call, tok, World};

const T0: i64 = 1_740_823_200; // 2025-03-01T10:00:00Z

/// The Gitea tests' world (support::world) on the stand-in, its clock frozen at T0.
fn world() -> World<Gitea> {
    let g = Gitea::start().unwrap();
    g.set_now(T0);
    support::world(g)
}

fn ids(v: &Value) -> Vec<i64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_i64().unwrap())
        .collect()
}

// routers/api/v1/repo/issue_comment.go ListRepoIssueComments + models/issues/comment.go
// FindCommentsOptions.ToConds: `since` filters on updated_unix >= since, inclusive, in whole
// seconds; order created_unix ASC, id ASC; an edited old comment comes back.
#[test]
fn repo_comments_since_is_inclusive_on_update_time() {
    let w = world();
    let c1 = w.g.comment("acme", "app", 1, "alice", "one").unwrap();
    let c2 =
        w.g.comment("acme", "app", 1, "bob", "two, same second")
            .unwrap();
    w.g.advance(10);
    let c3 = w.g.comment("acme", "app", 1, "alice", "three").unwrap();
    w.g.advance(10);
    w.g.edit_comment(c1, "alice", "one, edited").unwrap();

    let since = |t: i64| {
        let ts = standins::gitea::clock::format_rfc3339(t, 0);
        call(
            "GET",
            &w.api(&format!("/repos/acme/app/issues/comments?since={ts}")),
            Some(&tok(&w.ci)),
            None,
        )
    };
    // Same-second comments are both returned for a since equal to their second.
    assert_eq!(ids(&since(T0).json()), vec![c1, c2, c3]);
    // since = c3's second: c3 (inclusive) and c1 (updated later), in creation order.
    assert_eq!(ids(&since(T0 + 10).json()), vec![c1, c3]);
    assert_eq!(ids(&since(T0 + 20).json()), vec![c1]);
    assert_eq!(ids(&since(T0 + 21).json()), Vec::<i64>::new());
    // `before` is inclusive on update time too.
    let r = call(
        "GET",
        &w.api("/repos/acme/app/issues/comments?before=2025-03-01T10:00:10Z"),
        Some(&tok(&w.ci)),
        None,
    );
    assert_eq!(ids(&r.json()), vec![c2, c3]);
}

// services/context/utils.go GetQueryBeforeSince: time.Parse(time.RFC3339) → 422; an
// unencoded `+` in the offset arrives as a space (url.ParseQuery) and fails.
#[test]
fn bad_since_is_422_and_offsets_must_be_encoded() {
    let w = world();
    w.g.comment("acme", "app", 1, "alice", "x").unwrap();
    let r = call(
        "GET",
        &w.api("/repos/acme/app/issues/comments?since=yesterday"),
        Some(&tok(&w.ci)),
        None,
    );
    assert_eq!(r.status, 422);
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .contains("parsing time"));
    let r = call(
        "GET",
        &w.api("/repos/acme/app/issues/comments?since=2025-03-01T11:00:00+01:00"),
        Some(&tok(&w.ci)),
        None,
    );
    assert_eq!(r.status, 422);
    let r = call(
        "GET",
        &w.api("/repos/acme/app/issues/comments?since=2025-03-01T11:00:00%2B01:00"),
        Some(&tok(&w.ci)),
        None,
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json().as_array().unwrap().len(), 1);
}

// models/issues/comment.go PRURL/IssueURL/HTMLURL via services/convert/issue_comment.go
// ToAPIComment: the PR number is only in the web URL pull_request_url; issue_url is "" for
// PRs and the reverse for issues.
#[test]
fn comment_urls() {
    let w = world();
    let issue = w.g.open_issue("acme", "app", "bob", "Bug").unwrap();
    let on_pr = w.g.comment("acme", "app", 1, "alice", "!testme").unwrap();
    let on_issue =
        w.g.comment("acme", "app", issue, "alice", "thanks")
            .unwrap();
    let r = call(
        "GET",
        &w.api("/repos/acme/app/issues/comments"),
        Some(&tok(&w.ci)),
        None,
    );
    let list = r.json();
    assert_eq!(ids(&list), vec![on_pr, on_issue]);
    let root = w.g.root_url();
    let pr = &list[0];
    assert_eq!(
        pr["pull_request_url"],
        json!(format!("{root}acme/app/pulls/1"))
    );
    assert_eq!(pr["issue_url"], json!(""));
    assert_eq!(
        pr["html_url"],
        json!(format!("{root}acme/app/pulls/1#issuecomment-{on_pr}"))
    );
    assert_eq!(pr["user"]["login"], json!("alice"));
    assert_eq!(pr["created_at"], json!("2025-03-01T10:00:00Z"));
    let is = &list[1];
    assert_eq!(is["pull_request_url"], json!(""));
    assert_eq!(
        is["issue_url"],
        json!(format!("{root}acme/app/issues/{issue}"))
    );
    // The per-issue route takes since/before and no paging.
    let r = call(
        "GET",
        &w.api("/repos/acme/app/issues/1/comments?page=1&limit=1"),
        Some(&tok(&w.ci)),
        None,
    );
    assert_eq!(ids(&r.json()), vec![on_pr]);
}

// modules/timeutil/timestamp.go AsTime: times are rendered in DEFAULT_UI_LOCATION's offset.
#[test]
fn times_use_the_server_offset() {
    let g = Gitea::start_with(Options {
        tz_offset_secs: 3600,
        ..Options::default()
    })
    .unwrap();
    g.set_now(T0);
    g.create_user("u").unwrap();
    g.create_repo("u", "r", false).unwrap();
    let n = g.open_issue("u", "r", "u", "t").unwrap();
    g.comment("u", "r", n, "u", "hi").unwrap();
    let r = call(
        "GET",
        &format!("{}/repos/u/r/issues/comments", g.api_url()),
        None,
        None,
    );
    assert_eq!(
        r.json()[0]["created_at"],
        json!("2025-03-01T11:00:00+01:00")
    );
}

// routers/api/v1/repo/issue_comment.go EditIssueComment: only the poster or a writer
// (else 403), 404 for a comment of another repo, an unchanged body is not saved again.
#[test]
fn edit_comment_rules() {
    let w = world();
    let c = w.g.comment("acme", "app", 1, "bob", "please test").unwrap();
    let url = w.api(&format!("/repos/acme/app/issues/comments/{c}"));
    // ci is an org member (writer): allowed. Another outsider is not.
    let eve = {
        w.g.create_user("eve").unwrap();
        w.g.create_token("eve", &["write:issue"]).unwrap()
    };
    assert_eq!(
        call(
            "PATCH",
            &url,
            Some(&tok(&eve)),
            Some(json!({"body": "hijack"}))
        )
        .status,
        403
    );
    w.g.advance(30);
    let r = call(
        "PATCH",
        &url,
        Some(&tok(&w.bob)),
        Some(json!({"body": "please test"})),
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json()["updated_at"],
        json!("2025-03-01T10:00:00Z"),
        "unchanged body not re-saved"
    );
    let r = call(
        "PATCH",
        &url,
        Some(&tok(&w.bob)),
        Some(json!({"body": "please test now"})),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["updated_at"], json!("2025-03-01T10:00:30Z"));
    assert_eq!(
        call(
            "PATCH",
            &url,
            Some(&tok(&w.ci)),
            Some(json!({"body": "by a writer"}))
        )
        .status,
        200
    );
    // Same id under another repo path: 404.
    let other = w.api(&format!("/repos/bob/app/issues/comments/{c}"));
    assert_eq!(
        call(
            "PATCH",
            &other,
            Some(&tok(&w.bob)),
            Some(json!({"body": "x"}))
        )
        .status,
        404
    );
}

// services/convert/pull.go ToAPIPullRequest: head.ref is the branch while it exists; a
// deleted head repo leaves repo null, repo_id -1 and refs/pull/N/head.
#[test]
fn pull_head_after_fork_deletion() {
    let w = world();
    let get = || {
        call(
            "GET",
            &w.api("/repos/acme/app/pulls/1"),
            Some(&tok(&w.ci)),
            None,
        )
        .json()
    };
    let p = get();
    assert_eq!(p["head"]["ref"], json!("fix-x"));
    assert_eq!(p["head"]["label"], json!("fix-x"));
    assert_eq!(p["head"]["repo"]["full_name"], json!("bob/app"));
    assert_eq!(p["head"]["repo"]["fork"], json!(true));
    assert_eq!(p["base"]["repo"]["full_name"], json!("acme/app"));
    assert_eq!(p["state"], json!("open"));
    assert_eq!(p["merged"], json!(false));
    assert_eq!(p["merged_at"], Value::Null);
    let sha = p["head"]["sha"].clone();
    w.g.delete_repo("bob", "app").unwrap();
    let p = get();
    assert_eq!(p["head"]["repo"], Value::Null);
    assert_eq!(p["head"]["repo_id"], json!(-1));
    assert_eq!(p["head"]["ref"], json!("refs/pull/1/head"));
    assert_eq!(p["head"]["sha"], sha);
    // routers/api/v1/repo/issue.go GetIssue: PRs share the index; pull_request meta set.
    let i = call(
        "GET",
        &w.api("/repos/acme/app/issues/1"),
        Some(&tok(&w.ci)),
        None,
    )
    .json();
    assert_eq!(i["pull_request"]["merged"], json!(false));
    assert_eq!(
        i["url"],
        json!(format!("{}api/v1/repos/acme/app/issues/1", w.g.root_url()))
    );
    let n = w.g.open_issue("acme", "app", "bob", "Bug").unwrap();
    let i = call(
        "GET",
        &w.api(&format!("/repos/acme/app/issues/{n}")),
        None,
        None,
    )
    .json();
    assert_eq!(i["pull_request"], Value::Null);
    assert_eq!(
        call(
            "GET",
            &w.api(&format!("/repos/acme/app/pulls/{n}")),
            None,
            None
        )
        .status,
        404
    );
}

// models/activities/notification_list.go createOrUpdateIssueNotifications: repo watchers
// are skipped for WIP-titled PRs (#14663), the author is never notified, one thread per PR
// per user, a read thread turns unread on a new comment. services/convert/notification.go:
// subject.url is the API issue URL even for PRs, type "Pull". routers/api/v1/notify/user.go
// ReadNotifications answers 205.
#[test]
fn notifications_rules() {
    let w = world();
    w.g.watch("ci", "acme", "app").unwrap();
    w.g.set_title("acme", "app", 1, "WIP: Fix x").unwrap();
    w.g.comment("acme", "app", 1, "alice", "!testme").unwrap();
    let list = |t: &str, q: &str| {
        call(
            "GET",
            &w.api(&format!("/notifications{q}")),
            Some(&tok(t)),
            None,
        )
    };
    assert_eq!(
        list(&w.ci, "").json().as_array().unwrap().len(),
        0,
        "WIP: watcher not notified"
    );
    // The PR poster (participant) is notified; the author is not.
    assert_eq!(list(&w.bob, "").json().as_array().unwrap().len(), 1);
    assert_eq!(list(&w.alice, "").json().as_array().unwrap().len(), 0);

    w.g.set_title("acme", "app", 1, "Fix x").unwrap();
    w.g.advance(5);
    w.g.comment("acme", "app", 1, "alice", "!testme again")
        .unwrap();
    w.g.advance(5);
    let c3 = w.g.comment("acme", "app", 1, "bob", "and again").unwrap();
    let r = list(&w.ci, "?subject-type=pull");
    assert_eq!(r.header("X-Total-Count"), Some("1"));
    let t = &r.json()[0];
    assert_eq!(t["subject"]["type"], json!("Pull"));
    assert_eq!(
        t["subject"]["url"],
        json!(format!("{}api/v1/repos/acme/app/issues/1", w.g.root_url()))
    );
    assert_eq!(
        t["subject"]["latest_comment_url"],
        json!(format!(
            "{}api/v1/repos/acme/app/issues/comments/{c3}",
            w.g.root_url()
        ))
    );
    assert_eq!(t["unread"], json!(true));
    assert_eq!(
        list(&w.ci, "?subject-type=issue")
            .json()
            .as_array()
            .unwrap()
            .len(),
        0
    );

    let r = call("PUT", &w.api("/notifications"), Some(&tok(&w.ci)), None);
    assert_eq!(r.status, 205);
    assert_eq!(r.json()[0]["unread"], json!(false));
    assert_eq!(list(&w.ci, "").json().as_array().unwrap().len(), 0);
    assert_eq!(list(&w.ci, "?all=true").json().as_array().unwrap().len(), 1);
    w.g.advance(5);
    w.g.comment("acme", "app", 1, "alice", "once more").unwrap();
    let again = list(&w.ci, "").json();
    assert_eq!(again.as_array().unwrap().len(), 1, "still one thread");
    assert_eq!(again[0]["unread"], json!(true));
    assert_eq!(again[0]["updated_at"], json!("2025-03-01T10:00:15Z"));
    // since on the thread's update time, inclusive.
    assert_eq!(
        list(&w.ci, "?all=true&since=2025-03-01T10:00:16Z")
            .json()
            .as_array()
            .unwrap()
            .len(),
        0
    );
    // Watching over the API: PUT subscription → 200 WatchInfo.
    let r = call(
        "PUT",
        &w.api("/repos/acme/app/subscription"),
        Some(&tok(&w.alice)),
        None,
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["subscribed"], json!(true));
}

/// A webhook receiver answering `status`, recording what it got.
fn receiver(status: u16) -> Server {
    Server::start(
        0,
        Arc::new(move |_req: &standins::http::Request| HttpResponse::new(status)),
    )
    .unwrap()
}

// support::assert_comment_delivery (what every delivery carries), plus the stand-in's two
// payload versions: modules/structs/hook.go IssueCommentPayload (pull_request from 1.23,
// #26178), the edit's changes.body.from, and an issue comment as issue_comment twice.
#[test]
fn webhook_signature_headers_and_shapes() {
    let w = world();
    let rx = receiver(200);
    let hook = |v: HookVersion| HookSpec {
        url: format!("{}/hook", rx.url()),
        secret: "s3cret".into(),
        version: v,
        events: vec!["pull_request".into(), "issues".into()],
    };
    w.g.add_webhook("acme", "app", &hook(HookVersion::V1_21))
        .unwrap();
    w.g.add_webhook("acme", "app", &hook(HookVersion::V1_24))
        .unwrap();
    let c =
        w.g.comment("acme", "app", 1, "alice", support::HOOK_COMMENT)
            .unwrap();
    let d = w.g.wait_deliveries(2, Duration::from_secs(10));
    assert_eq!(d.len(), 2);
    let got = rx.requests();
    assert_eq!(got.len(), 2);
    for req in &got {
        let p = support::assert_comment_delivery(&req.request, b"s3cret", c);
        let v124 = req
            .request
            .header("X-Gitea-Hook-Installation-Target-Type")
            .is_some();
        if v124 {
            assert_eq!(
                p["pull_request"]["head"]["repo"]["full_name"],
                json!("bob/app")
            );
            assert_eq!(p["issue"]["pull_request"]["draft"], json!(false));
        } else {
            assert!(p.get("pull_request").is_none(), "1.21 has no pull_request");
            assert!(p["issue"]["pull_request"].get("draft").is_none());
        }
    }
    // Edit: action edited with changes.body.from; an issue comment is issue_comment twice.
    w.g.edit_comment(c, "alice", "!testme").unwrap();
    let d = w.g.wait_deliveries(4, Duration::from_secs(10));
    let edited: Value = serde_json::from_str(&d[2].body).unwrap();
    assert_eq!(edited["action"], json!("edited"));
    assert_eq!(
        edited["changes"]["body"]["from"],
        json!(support::HOOK_COMMENT)
    );
    let n = w.g.open_issue("acme", "app", "bob", "Bug").unwrap();
    w.g.comment("acme", "app", n, "alice", "hi").unwrap();
    let d = w.g.wait_deliveries(6, Duration::from_secs(10));
    assert_eq!(d[4].event_type, "issue_comment");
    assert_eq!(d[4].header("X-Gitea-Event-Type"), Some("issue_comment"));
}

// services/webhook/deliver.go: one attempt, marked delivered before sending, never retried
// on a non-2xx answer; with no secret X-Gitea-Signature is "" and X-Hub-Signature-256
// "sha256=".
#[test]
fn webhook_is_one_attempt_without_retry() {
    let w = world();
    let rx = receiver(500);
    w.g.add_webhook(
        "acme",
        "app",
        &HookSpec {
            url: format!("{}/hook", rx.url()),
            secret: String::new(),
            version: HookVersion::V1_24,
            events: vec![],
        },
    )
    .unwrap();
    w.g.comment("acme", "app", 1, "alice", "!testme").unwrap();
    let d = w.g.wait_deliveries(1, Duration::from_secs(10));
    assert_eq!(d[0].status, Some(500));
    assert!(!d[0].succeeded());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(rx.requests().len(), 1, "no retry");
    assert_eq!(w.g.deliveries().len(), 1);
    let req = &rx.requests()[0].request;
    assert_eq!(req.header("X-Gitea-Signature"), Some(""));
    assert_eq!(req.header("X-Hub-Signature-256"), Some("sha256="));
    // A receiver that is not there: recorded as an error, still one attempt.
    let port = rx.addr().port();
    drop(rx);
    let w2 = world();
    w2.g.add_webhook(
        "acme",
        "app",
        &HookSpec {
            url: format!("http://127.0.0.1:{port}/gone"),
            secret: "k".into(),
            version: HookVersion::V1_21,
            events: vec!["*".into()],
        },
    )
    .unwrap();
    w2.g.comment("acme", "app", 1, "alice", "!testme").unwrap();
    let d = w2.g.wait_deliveries(1, Duration::from_secs(10));
    assert!(d[0].error.is_some(), "{:?}", d[0]);
    assert_eq!(d[0].header("X-Gitea-Hook-Installation-Target-Type"), None);
}
