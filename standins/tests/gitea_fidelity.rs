//! The stand-in Gitea checked against the real one: each quirk that needs neither a frozen
//! clock nor an injected fault is asserted by one test body run against both (`_standin` and
//! `_real`; the real Gitea is the one `dev/upstream` builds, v1.26.0). Where the two differ the
//! real one decides and the stand-in is fixed. Sources are go-gitea/gitea v1.26.0 files.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use standins::forge::Forge;
use standins::gitea::Gitea;
use standins::http::{Response as HttpResponse, Server};
use standins::upstream::gitea::RealGitea;

mod support;
use support::{call, tok, world, World};

fn standin() -> World<Gitea> {
    world(Gitea::start().unwrap())
}

fn real() -> World<RealGitea> {
    world(RealGitea::start().unwrap_or_else(|e| panic!("{e:#}")))
}

/// Both variants of one check.
macro_rules! both {
    ($name:ident) => {
        mod $name {
            #[test]
            fn standin() {
                super::$name(super::standin());
            }
            #[test]
            fn real() {
                super::$name(super::real());
            }
        }
    };
}

/// Behaviour that changed between the forge's 1.24.7 (which the stand-in mirrors) and the
/// real Gitea built here: cc-ci's clients must work with both.
fn since_1_26<F: Forge>(w: &World<F>) -> bool {
    w.g.version() >= "1.26"
}

// routers/api/v1/repo/issue_comment.go ListRepoIssueComments, routers/api/v1/utils/page.go:
// page size defaults to 30 and is capped at [api] MAX_RESPONSE_ITEMS = 50; X-Total-Count, and
// no Link header on this route. `limit` without `page`: 1.24.7 ignores it (everything comes
// back); 1.26.0 takes page 1 (`max(page, 1)`). cc-ci always sends `page`.
fn limit_is_ignored_without_page_and_capped_at_50<F: Forge>(w: World<F>) {
    let before = call(
        "GET",
        &w.api("/repos/acme/app/issues/comments"),
        Some(&tok(&w.ci)),
        None,
    )
    .json()
    .as_array()
    .unwrap()
    .len();
    for i in 0..(60 - before) {
        w.g.comment("acme", "app", 1, "alice", &format!("c{i}"))
            .unwrap();
    }
    let get = |q: &str| {
        call(
            "GET",
            &w.api(&format!("/repos/acme/app/issues/comments{q}")),
            Some(&tok(&w.ci)),
            None,
        )
    };
    let r = get("?limit=5");
    let want = if since_1_26(&w) { 5 } else { 60 };
    assert_eq!(r.json().as_array().unwrap().len(), want, "{}", w.g.kind());
    assert_eq!(r.header("X-Total-Count"), Some("60"));
    assert_eq!(r.header("Link"), None);
    assert_eq!(get("?page=1").json().as_array().unwrap().len(), 30);
    assert_eq!(
        get("?page=1&limit=100").json().as_array().unwrap().len(),
        50
    );
    let p2 = get("?page=2&limit=50");
    assert_eq!(p2.json().as_array().unwrap().len(), 10);
    assert_eq!(p2.header("X-Total-Count"), Some("60"));
    assert_eq!(p2.header("Link"), None);
    assert_eq!(get("?page=3&limit=50").json().as_array().unwrap().len(), 0);
}
both!(limit_is_ignored_without_page_and_capped_at_50);

// routers/api/v1/org/member.go IsMember: 204 for a member asked by a member, 404 for a
// non-member, 303 to public_members when the asker is not a member; 401 anonymous.
fn org_membership_answers<F: Forge>(w: World<F>) {
    let url = |u: &str| w.api(&format!("/orgs/acme/members/{u}"));
    assert_eq!(
        call("GET", &url("alice"), Some(&tok(&w.ci)), None).status,
        204
    );
    let r = call("GET", &url("bob"), Some(&tok(&w.ci)), None);
    assert_eq!(r.status, 404);
    assert!(r.json()["message"].is_string());
    let r = call("GET", &url("alice"), Some(&tok(&w.bob)), None);
    assert_eq!(r.status, 303);
    assert_eq!(
        r.header("Location"),
        Some("/api/v1/orgs/acme/public_members/alice")
    );
    assert_eq!(
        call("GET", &url("bob"), Some(&tok(&w.bob)), None).status,
        404
    );
    assert_eq!(
        call("GET", &url("nobody"), Some(&tok(&w.ci)), None).status,
        404
    );
    let r = call("GET", &url("alice"), None, None);
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["message"], json!("token is required"));
    // IsPublicMember: 204/404 on the member's public flag.
    let public = |u: &str| {
        call(
            "GET",
            &w.api(&format!("/orgs/acme/public_members/{u}")),
            Some(&tok(&w.bob)),
            None,
        )
        .status
    };
    assert_eq!(public("alice"), 404);
    w.g.set_member("acme", "alice", true).unwrap();
    assert_eq!(public("alice"), 204);
}
both!(org_membership_answers);

// routers/api/v1/repo/issue_reaction.go changeIssueCommentReaction: 201 new, 200 existing,
// 403 for a value outside [ui] REACTIONS (modules/setting/ui.go).
fn reactions_201_then_200_and_403_for_unknown<F: Forge>(w: World<F>) {
    let c = w.g.comment("acme", "app", 1, "alice", "!testme").unwrap();
    let url = w.api(&format!("/repos/acme/app/issues/comments/{c}/reactions"));
    let r = call(
        "POST",
        &url,
        Some(&tok(&w.ci)),
        Some(json!({"content": "eyes"})),
    );
    assert_eq!(r.status, 201);
    assert_eq!(r.json()["content"], json!("eyes"));
    assert_eq!(r.json()["user"]["login"], json!("ci"));
    let again = call(
        "POST",
        &url,
        Some(&tok(&w.ci)),
        Some(json!({"content": "eyes"})),
    );
    assert_eq!(again.status, 200);
    let odd = call(
        "POST",
        &url,
        Some(&tok(&w.ci)),
        Some(json!({"content": "thumbsup"})),
    );
    assert_eq!(odd.status, 403);
    let list = call("GET", &url, None, None).json();
    assert_eq!(list.as_array().unwrap().len(), 1);
}
both!(reactions_201_then_200_and_403_for_unknown);

// routers/api/v1/repo/issue_comment.go EditIssueComment: the poster or a writer; 403 for
// anyone else; 404 for the id under another repository's path.
fn edit_comment_rules<F: Forge>(w: World<F>) {
    let c = w.g.comment("acme", "app", 1, "bob", "please test").unwrap();
    let url = w.api(&format!("/repos/acme/app/issues/comments/{c}"));
    w.g.create_user("eve").unwrap();
    let eve = w.g.create_token("eve", &["write:issue"]).unwrap();
    let edit = |t: &str, body: &str| {
        call("PATCH", &url, Some(&tok(t)), Some(json!({"body": body}))).status
    };
    assert_eq!(edit(&eve, "hijack"), 403, "{}", w.g.kind());
    assert_eq!(edit(&w.bob, "please test now"), 200);
    assert_eq!(edit(&w.ci, "by a writer"), 200);
    let other = w.api(&format!("/repos/bob/app/issues/comments/{c}"));
    let r = call(
        "PATCH",
        &other,
        Some(&tok(&w.bob)),
        Some(json!({"body": "x"})),
    );
    assert_eq!(r.status, 404);
}
both!(edit_comment_rules);

// routers/api/v1/repo/issue_comment.go CreateIssueComment: 201 with the PR's web URL; 401
// anonymous; 422 empty.
fn create_comment_rules<F: Forge>(w: World<F>) {
    let url = w.api("/repos/acme/app/issues/1/comments");
    let post = |t: Option<&str>, body: &str| {
        call(
            "POST",
            &url,
            t.map(tok).as_deref(),
            Some(json!({"body": body})),
        )
    };
    let r = post(Some(&w.bob), "hi");
    assert_eq!(r.status, 201);
    assert_eq!(
        r.json()["pull_request_url"],
        json!(format!("{}/acme/app/pulls/1", w.g.url()))
    );
    assert_eq!(r.json()["issue_url"], json!(""));
    assert_eq!(post(None, "hi").status, 401);
    assert_eq!(post(Some(&w.bob), "").status, 422, "{}", w.g.kind());
}
both!(create_comment_rules);

// services/auth (oauth2.go parseToken, basic.go): `token X`, `Bearer X` (any case), ?token=
// and ?access_token=, Basic with the token as user name. `Token X`: 1.24.7 does not parse it
// (the request is anonymous); 1.26.0 folds the case (modules/auth/httpauth/httpauth.go).
// cc-ci sends `token` in lower case. Scopes follow the method; a private repo is 404 to
// outsiders.
fn auth_like_gitea<F: Forge>(w: World<F>) {
    w.g.create_repo("acme", "secret", true).unwrap();
    let read_only = w.g.create_token("bob", &["read:issue"]).unwrap();
    let comments = w.api("/repos/acme/app/issues/comments");
    let get = |url: &str, auth: Option<&str>| call("GET", url, auth, None).status;
    assert_eq!(get(&comments, None), 200);
    assert_eq!(get(&comments, Some(&tok(&w.ci))), 200);
    assert_eq!(get(&comments, Some(&format!("BEARER {}", w.ci))), 200);
    assert_eq!(get(&format!("{comments}?token={}", w.ci), None), 200);
    assert_eq!(get(&format!("{comments}?access_token={}", w.ci), None), 200);
    let r = call("GET", &comments, Some("token nope"), None);
    assert_eq!(r.status, 401);
    assert!(r.json()["message"].is_string() && r.json()["url"].is_string());
    assert_eq!(get(&comments, Some(&format!("Token {}", w.ci))), 200);
    let n = w.api("/notifications");
    let capital = if since_1_26(&w) { 200 } else { 401 };
    assert_eq!(get(&n, Some(&format!("Token {}", w.ci))), capital);
    assert_eq!(get(&comments, Some(&tok(&read_only))), 200);
    let r = call(
        "GET",
        &w.api("/repos/acme/app/pulls/1"),
        Some(&tok(&read_only)),
        None,
    );
    assert_eq!(r.status, 403, "{}", w.g.kind());
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("read:repository"),
        "{}",
        r.body
    );
    let post = w.api("/repos/acme/app/issues/1/comments");
    let r = call(
        "POST",
        &post,
        Some(&tok(&read_only)),
        Some(json!({"body": "x"})),
    );
    assert_eq!(r.status, 403);
    let private = w.api("/repos/acme/secret/issues/comments");
    assert_eq!(get(&private, Some(&tok(&w.bob))), 404);
    assert_eq!(get(&private, None), 404);
    assert_eq!(get(&private, Some(&tok(&w.ci))), 200);
    let basic = format!(
        "Basic {}",
        standins::gitea::digest::base64(format!("{}:", w.ci).as_bytes())
    );
    assert_eq!(get(&n, Some(&basic)), 200);
    let _ = &w.alice;
}
both!(auth_like_gitea);

// support::assert_comment_delivery, what every delivery carries, and the 1.24+ headers and
// payload, from both Gitea and the stand-in.
fn webhook_signature_headers_and_shapes<F: Forge>(w: World<F>) {
    let rx = Server::start(
        0,
        Arc::new(|_req: &standins::http::Request| HttpResponse::new(200)),
    )
    .unwrap();
    w.g.add_webhook(
        "acme",
        "app",
        &format!("{}/hook", rx.url()),
        "s3cret",
        &["pull_request_comment", "issue_comment"],
    )
    .unwrap();
    let c =
        w.g.comment("acme", "app", 1, "alice", support::HOOK_COMMENT)
            .unwrap();
    let end = Instant::now() + Duration::from_secs(15);
    while rx.requests().is_empty() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    let got = rx.requests();
    assert_eq!(got.len(), 1, "{}: one delivery", w.g.kind());
    let req = &got[0].request;
    let p = support::assert_comment_delivery(req, b"s3cret", c);
    assert_eq!(
        req.header("X-Gitea-Hook-Installation-Target-Type"),
        Some("repository")
    );
    assert_eq!(p["issue"]["pull_request"]["draft"], json!(false));
    eprintln!(
        "{}: top-level pull_request in the comment payload: {}",
        w.g.kind(),
        p.get("pull_request").is_some()
    );
}
both!(webhook_signature_headers_and_shapes);

// routers/api/v1/api.go: POST /repos/{o}/{r}/statuses/{sha} behind reqToken() and
// reqRepoWriter(unit.TypeCode), scope write:repository; routers/api/v1/repo/status.go
// NewCommitStatus stores `state` unchecked and answers 201 with `status` (not `state`); a
// commit the repository lacks is a bare 500. GET …/statuses/{sha} lists every status (public
// repo: anonymous too); GET …/commits/{ref}/status keeps the newest per context. The
// repository's `permissions.push` says beforehand whether the POST will be allowed.
fn commit_statuses_need_write_on_code<F: Forge>(w: World<F>) {
    let head = call(
        "GET",
        &w.api("/repos/acme/app/pulls/1"),
        Some(&tok(&w.ci)),
        None,
    )
    .json()["head"]["sha"]
        .as_str()
        .unwrap()
        .to_owned();
    let url = w.api(&format!("/repos/acme/app/statuses/{head}"));
    let combined = |who: Option<&str>| {
        call(
            "GET",
            &w.api(&format!("/repos/acme/app/commits/{head}/status")),
            who.map(tok).as_deref(),
            None,
        )
        .json()
    };
    let none = combined(None);
    assert_eq!(
        (
            none["state"].clone(),
            none["statuses"].clone(),
            none["total_count"].clone()
        ),
        (json!("pending"), json!(null), json!(0)),
        "{}",
        w.g.kind()
    );
    let post = |t: Option<&str>, state: &str, desc: &str| {
        call(
            "POST",
            &url,
            t.map(tok).as_deref(),
            Some(
                json!({"state": state, "target_url": "http://ci.example/runs/1.html",
                        "description": desc, "context": "cc-ci/testme"}),
            ),
        )
    };
    let r = post(Some(&w.bob), "pending", "queued");
    assert_eq!(r.status, 403, "{}", w.g.kind());
    assert_eq!(
        r.json()["message"],
        json!("user should have a permission to write to a repo")
    );
    assert_eq!(post(None, "pending", "queued").status, 401);
    let narrow =
        w.g.create_token("ci", &["read:repository", "write:issue"])
            .unwrap();
    let r = post(Some(&narrow), "pending", "queued");
    assert_eq!(r.status, 403);
    assert!(
        r.json()["message"].as_str().unwrap().starts_with(
            "token does not have at least one of required scope(s), required=[write:repository]"
        ),
        "{}",
        r.body
    );
    let r = post(Some(&w.ci), "pending", "queued");
    assert_eq!(r.status, 201);
    let j = r.json();
    assert_eq!(j["status"], json!("pending"));
    assert_eq!(j["context"], json!("cc-ci/testme"));
    assert_eq!(j["description"], json!("queued"));
    assert_eq!(j["target_url"], json!("http://ci.example/runs/1.html"));
    assert_eq!(j["creator"]["login"], json!("ci"));
    assert!(j.get("state").is_none());
    assert_eq!(post(Some(&w.ci), "success", "level 4").status, 201);
    // Listed newest first (models/git/commit_status.go: created_unix DESC by default); Gitea
    // keeps whole seconds, so the third is a second later.
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(post(Some(&w.ci), "success", "level 4, again").status, 201);
    let r = call("GET", &url, None, None);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("X-Total-Count"), Some("3"));
    let order: Vec<_> = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["description"].clone())
        .collect();
    assert_eq!(order[0], json!("level 4, again"), "{order:?}");
    let combined = combined(None);
    assert_eq!(combined["state"], json!("success"));
    assert_eq!(combined["total_count"], json!(1));
    assert_eq!(
        combined["statuses"][0]["description"],
        json!("level 4, again")
    );
    assert_eq!(combined["repository"]["full_name"], json!("acme/app"));
    let unknown = w.api(&format!("/repos/acme/app/statuses/{}", "ab".repeat(20)));
    let r = call(
        "POST",
        &unknown,
        Some(&tok(&w.ci)),
        Some(json!({"state": "pending", "context": "cc-ci/testme"})),
    );
    assert_eq!(r.status, 500);
    let r = call(
        "POST",
        &url,
        Some(&tok(&w.ci)),
        Some(json!({"state": "bogus", "context": "x"})),
    );
    assert_eq!(
        (r.status, r.json()["status"].clone()),
        (201, json!("bogus"))
    );
    let perms = |t: Option<&str>| {
        call(
            "GET",
            &w.api("/repos/acme/app"),
            t.map(tok).as_deref(),
            None,
        )
        .json()["permissions"]
            .clone()
    };
    assert_eq!(
        perms(Some(&w.ci)),
        json!({"admin": false, "push": true, "pull": true})
    );
    assert_eq!(
        perms(Some(&w.bob)),
        json!({"admin": false, "push": false, "pull": true})
    );
    assert_eq!(perms(None)["push"], json!(false));
}
both!(commit_statuses_need_write_on_code);

// routers/api/v1/repo/branch.go GetBranch, services/convert ToBranch: the default branch's
// head under `commit.id` (what the re-test sweep reads); a missing branch is a bare 404.
fn a_branch_answers_its_head_and_a_missing_one_404<F: Forge>(w: World<F>) {
    let get = |path: &str| call("GET", &w.api(path), Some(&tok(&w.ci)), None);
    let repo = get("/repos/acme/app").json();
    let main = repo["default_branch"].as_str().unwrap().to_owned();
    let r = get(&format!("/repos/acme/app/branches/{main}"));
    assert_eq!(r.status, 200, "{}: {}", w.g.kind(), r.body);
    let b = r.json();
    assert_eq!(b["name"], main.as_str());
    let sha = b["commit"]["id"].as_str().unwrap();
    assert!(
        sha.len() == 40 && sha.bytes().all(|c| c.is_ascii_hexdigit()),
        "{sha}"
    );
    let keys = |v: &serde_json::Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(
        keys(&b),
        [
            "commit",
            "effective_branch_protection_name",
            "enable_status_check",
            "name",
            "protected",
            "required_approvals",
            "status_check_contexts",
            "user_can_merge",
            "user_can_push"
        ],
        "{}",
        w.g.kind()
    );
    let r = get("/repos/acme/app/branches/no-such-branch");
    assert_eq!(r.status, 404, "{}", w.g.kind());
    let e = r.json();
    assert_eq!(e["message"], "not found", "{}: {e}", w.g.kind());
    assert_eq!(e["errors"], serde_json::Value::Null, "{}: {e}", w.g.kind());
}
both!(a_branch_answers_its_head_and_a_missing_one_404);

// routers/api/v1/repo/issue.go CreateIssue / EditIssue: a new issue is 201 with its number
// and `state: open`; no title is a 422; closing it is a PATCH answered 201 (not 200), by its
// poster; someone neither poster nor writer is refused a state change with a bare 403.
fn issues_open_and_close_as_gitea_does<F: Forge>(w: World<F>) {
    let post = |who: &str, body: serde_json::Value| {
        call(
            "POST",
            &w.api("/repos/acme/app/issues"),
            Some(&tok(who)),
            Some(body),
        )
    };
    let r = post(
        &w.ci,
        json!({"title": "cc-ci: app regressed", "body": "see the run"}),
    );
    assert_eq!(r.status, 201, "{}: {}", w.g.kind(), r.body);
    let issue = r.json();
    assert_eq!(issue["state"], "open");
    assert_eq!(issue["title"], "cc-ci: app regressed");
    let n = issue["number"].as_i64().unwrap();
    let r = post(&w.ci, json!({"body": "no title"}));
    assert_eq!(r.status, 422, "{}: {}", w.g.kind(), r.body);
    let patch = |who: &str, body: serde_json::Value| {
        call(
            "PATCH",
            &w.api(&format!("/repos/acme/app/issues/{n}")),
            Some(&tok(who)),
            Some(body),
        )
    };
    let r = patch(&w.bob, json!({"state": "closed"}));
    assert_eq!(r.status, 403, "{}: {}", w.g.kind(), r.body);
    let r = patch(&w.ci, json!({"state": "closed"}));
    assert_eq!(r.status, 201, "{}: {}", w.g.kind(), r.body);
    assert_eq!(r.json()["state"], "closed");
}
both!(issues_open_and_close_as_gitea_does);
