//! The stand-in's state rendered as Gitea's API structs (`modules/structs/*.go`, filled the
//! way `services/convert/*.go` fills them). Keys are written in serde_json's order, not Go's
//! struct order; values and shapes follow Gitea. Repository and User carry the fields cc-ci
//! and common clients read, not every field Gitea has.

use serde_json::{json, Value};

use super::{Comment, HookVersion, Issue, Notification, Reaction, Repo, State, User};

/// `example.org` out of `https://example.org:3000/sub/`: the host without port.
pub fn domain(root: &str) -> &str {
    let rest = root.split_once("://").map_or(root, |(_, r)| r);
    let host = rest.split('/').next().unwrap_or(rest);
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

/// `convert.ToUser`: the real email only for a signed-in caller (`KEEP_EMAIL_PRIVATE` off),
/// the no-reply placeholder otherwise (anonymous API calls, webhook payloads).
pub fn user(s: &State, u: &User, signed: bool) -> Value {
    let email = if signed {
        u.email.clone()
    } else {
        format!("{}@noreply.{}", u.login.to_lowercase(), domain(&s.root_url))
    };
    json!({
        "id": u.id,
        "login": u.login,
        "login_name": "",
        "source_id": 0,
        "full_name": u.full_name,
        "email": email,
        "avatar_url": format!("{}avatars/{:032x}", s.root_url, u.id),
        "html_url": format!("{}{}", s.root_url, u.login),
        "language": "",
        "is_admin": u.is_admin,
        "last_login": s.time(u.created),
        "created": s.time(u.created),
        "restricted": false,
        "active": true,
        "prohibit_login": false,
        "location": "",
        "website": "",
        "description": "",
        "visibility": "public",
        "followers_count": 0,
        "following_count": 0,
        "starred_repos_count": 0,
        "username": u.login,
    })
}

pub fn user_id(s: &State, id: i64, signed: bool) -> Value {
    match s.user(id) {
        Some(u) => user(s, u, signed),
        // `user_model.NewGhostUser`: what Gitea shows for a deleted account.
        None => {
            json!({"id": -1, "login": "Ghost", "full_name": "", "email": "", "username": "Ghost"})
        }
    }
}

pub fn owner_login(s: &State, r: &Repo) -> String {
    s.user(r.owner_id)
        .map(|u| u.login.clone())
        .unwrap_or_default()
}

pub fn repo_web(s: &State, r: &Repo) -> String {
    format!("{}{}/{}", s.root_url, owner_login(s, r), r.name)
}

pub fn repo_api(s: &State, r: &Repo) -> String {
    format!(
        "{}api/v1/repos/{}/{}",
        s.root_url,
        owner_login(s, r),
        r.name
    )
}

/// `convert.ToRepo`. `perm`: (admin, push, pull) as the caller holds them.
pub fn repo(s: &State, r: &Repo, perm: Option<(bool, bool, bool)>, signed: bool) -> Value {
    let owner = owner_login(s, r);
    let open_issues = s
        .issues
        .iter()
        .filter(|i| i.repo_id == r.id && i.pull.is_none() && i.closed.is_none())
        .count();
    let open_pulls = s
        .issues
        .iter()
        .filter(|i| i.repo_id == r.id && i.pull.is_some() && i.closed.is_none())
        .count();
    let parent = r
        .parent_id
        .and_then(|p| s.repo(p))
        .map(|p| repo(s, p, None, signed));
    let mut v = json!({
        "id": r.id,
        "owner": user_id(s, r.owner_id, signed),
        "name": r.name,
        "full_name": format!("{owner}/{}", r.name),
        "description": "",
        "empty": false,
        "private": r.private,
        "fork": r.fork,
        "template": false,
        "mirror": false,
        "size": 0,
        "language": "",
        "languages_url": format!("{}/languages", repo_api(s, r)),
        "html_url": repo_web(s, r),
        "url": repo_api(s, r),
        "link": "",
        "ssh_url": format!("git@{}:{owner}/{}.git", domain(&s.root_url), r.name),
        "clone_url": format!("{}.git", repo_web(s, r)),
        "original_url": "",
        "website": "",
        "stars_count": 0,
        "forks_count": s.repos.iter().filter(|x| x.parent_id == Some(r.id)).count(),
        "watchers_count": s.watches.iter().filter(|w| w.1 == r.id).count(),
        "open_issues_count": open_issues,
        "open_pr_counter": open_pulls,
        "release_counter": 0,
        "default_branch": r.default_branch,
        "archived": false,
        "created_at": s.time(r.created),
    });
    // Two halves: one `json!` this size passes the macro recursion limit.
    let more = json!({
        "updated_at": s.time(r.created),
        "archived_at": s.time(0),
        "has_issues": true,
        "has_wiki": true,
        "has_pull_requests": true,
        "has_projects": true,
        "has_releases": true,
        "has_packages": true,
        "has_actions": false,
        "ignore_whitespace_conflicts": false,
        "allow_merge_commits": true,
        "allow_rebase": true,
        "allow_rebase_explicit": true,
        "allow_squash_merge": true,
        "allow_fast_forward_only_merge": true,
        "allow_rebase_update": true,
        "default_delete_branch_after_merge": false,
        "default_merge_style": "merge",
        "default_allow_maintainer_edit": false,
        "avatar_url": "",
        "internal": false,
        "mirror_interval": "",
        "object_format_name": "sha1",
        "mirror_updated": s.time(0),
        "repo_transfer": null,
        "topics": [],
        "licenses": [],
    });
    if let (Some(a), Value::Object(b)) = (v.as_object_mut(), more) {
        a.extend(b);
    }
    if let Some(p) = parent {
        v["parent"] = p;
    }
    if let Some((admin, push, pull)) = perm {
        v["permissions"] = json!({"admin": admin, "push": push, "pull": pull});
    }
    v
}

pub fn issue_web(s: &State, i: &Issue) -> String {
    let r = s.repo(i.repo_id);
    let base = r.map(|r| repo_web(s, r)).unwrap_or_default();
    let kind = if i.pull.is_some() { "pulls" } else { "issues" };
    format!("{base}/{kind}/{}", i.index)
}

pub fn issue_api(s: &State, i: &Issue) -> String {
    let r = s.repo(i.repo_id);
    let base = r.map(|r| repo_api(s, r)).unwrap_or_default();
    format!("{base}/issues/{}", i.index)
}

fn count_comments(s: &State, issue_id: i64) -> usize {
    s.comments.iter().filter(|c| c.issue_id == issue_id).count()
}

/// `convert.ToAPIIssue`. `pull_request` is null for plain issues; its `draft` and
/// `html_url` came in 1.22, so a 1.21 webhook payload leaves them out.
pub fn issue(s: &State, i: &Issue, version: HookVersion, signed: bool) -> Value {
    let r = s.repo(i.repo_id);
    let pr_meta = i.pull.as_ref().map(|_| {
        let mut m = json!({
            "merged": false,
            "merged_at": null,
        });
        if version == HookVersion::V1_24 {
            m["draft"] = json!(s.is_wip(&i.title));
            m["html_url"] = json!(issue_web(s, i));
        }
        m
    });
    json!({
        "id": i.id,
        "url": issue_api(s, i),
        "html_url": issue_web(s, i),
        "number": i.index,
        "user": user_id(s, i.poster_id, signed),
        "original_author": "",
        "original_author_id": 0,
        "title": i.title,
        "body": i.body,
        "ref": "",
        "assets": [],
        "labels": [],
        "milestone": null,
        "assignee": null,
        "assignees": null,
        "state": if i.closed.is_some() { "closed" } else { "open" },
        "is_locked": false,
        "comments": count_comments(s, i.id),
        "created_at": s.time(i.created),
        "updated_at": s.time(i.updated),
        "closed_at": i.closed.map(|c| s.time(c)),
        "due_date": null,
        "time_estimate": 0,
        "pull_request": pr_meta,
        "repository": r.map(|r| json!({
            "id": r.id,
            "name": r.name,
            "owner": owner_login(s, r),
            "full_name": format!("{}/{}", owner_login(s, r), r.name),
        })),
        "pin_order": 0,
    })
}

/// `services/convert/pull.go` `ToAPIPullRequest`: `head.ref` is the branch while it exists,
/// `refs/pull/N/head` once it is gone; a deleted head repo leaves `repo` null, `repo_id` -1.
pub fn pull(s: &State, i: &Issue, version: HookVersion, signed: bool) -> Value {
    let Some(p) = &i.pull else {
        return Value::Null;
    };
    let base_repo = s.repo(i.repo_id);
    let perm = Some((false, false, true));
    let base_sha = base_repo
        .and_then(|r| r.branches.get(&p.base_branch))
        .cloned()
        .unwrap_or_default();
    let mut head = json!({
        "label": p.head_branch,
        "ref": format!("refs/pull/{}/head", i.index),
        "sha": p.head_sha,
        "repo_id": -1,
        "repo": null,
    });
    if let Some(hr) = s.repo(p.head_repo_id) {
        head["repo_id"] = json!(hr.id);
        head["repo"] = repo(s, hr, perm, signed);
        if let Some(sha) = hr.branches.get(&p.head_branch) {
            head["ref"] = json!(p.head_branch);
            head["sha"] = json!(sha);
        }
    }
    let mut v = json!({
        "id": p.id,
        "url": issue_web(s, i),
        "number": i.index,
        "user": user_id(s, i.poster_id, signed),
        "title": i.title,
        "body": i.body,
        "labels": [],
        "milestone": null,
        "assignee": null,
        "assignees": null,
        "requested_reviewers": null,
        "requested_reviewers_teams": null,
        "state": if i.closed.is_some() { "closed" } else { "open" },
        "is_locked": false,
        "comments": count_comments(s, i.id),
        "review_comments": 0,
        "additions": 0,
        "deletions": 0,
        "changed_files": 0,
        "html_url": issue_web(s, i),
        "diff_url": format!("{}.diff", issue_web(s, i)),
        "patch_url": format!("{}.patch", issue_web(s, i)),
        "mergeable": i.closed.is_none(),
        "merged": false,
        "merged_at": null,
        "merge_commit_sha": null,
        "merged_by": null,
    });
    let more = json!({
        "allow_maintainer_edit": false,
        "base": {
            "label": p.base_branch,
            "ref": p.base_branch,
            "sha": base_sha,
            "repo_id": i.repo_id,
            "repo": base_repo.map(|r| repo(s, r, perm, signed)),
        },
        "head": head,
        "merge_base": p.merge_base,
        "due_date": null,
        "created_at": s.time(i.created),
        "updated_at": s.time(i.updated),
        "closed_at": i.closed.map(|c| s.time(c)),
        "pin_order": 0,
    });
    if let (Some(a), Value::Object(b)) = (v.as_object_mut(), more) {
        a.extend(b);
    }
    if version == HookVersion::V1_24 {
        v["draft"] = json!(s.is_wip(&i.title));
    }
    v
}

/// `convert.ToAPIComment` with `models/issues/comment.go` `HTMLURL`/`PRURL`/`IssueURL`: the
/// number of the pull is only in the web URL `pull_request_url`.
pub fn comment(s: &State, c: &Comment, signed: bool) -> Value {
    let Some(i) = s.issue(c.issue_id) else {
        return Value::Null;
    };
    let web = issue_web(s, i);
    let (pr_url, issue_url) = if i.pull.is_some() {
        (web.clone(), String::new())
    } else {
        (String::new(), web.clone())
    };
    json!({
        "id": c.id,
        "html_url": format!("{web}#issuecomment-{}", c.id),
        "pull_request_url": pr_url,
        "issue_url": issue_url,
        "user": user_id(s, c.poster_id, signed),
        "original_author": "",
        "original_author_id": 0,
        "body": c.body,
        "assets": [],
        "created_at": s.time(c.created),
        "updated_at": s.time(c.updated),
    })
}

pub fn comment_api(s: &State, c: &Comment) -> String {
    let Some(i) = s.issue(c.issue_id) else {
        return String::new();
    };
    let base = s
        .repo(i.repo_id)
        .map(|r| repo_api(s, r))
        .unwrap_or_default();
    format!("{base}/issues/comments/{}", c.id)
}

pub fn reaction(s: &State, r: &Reaction) -> Value {
    json!({
        "user": user_id(s, r.user_id, true),
        "content": r.content,
        "created_at": s.time(r.created),
    })
}

/// `convert.ToNotificationThread`: `subject.url` is the API issue URL even for pulls,
/// `latest_comment_url` the issue's last comment.
pub fn notification(s: &State, n: &Notification) -> Value {
    let issue = s.issue(n.issue_id);
    let r = s.repo(n.repo_id);
    let last = s
        .comments
        .iter()
        .filter(|c| c.issue_id == n.issue_id)
        .max_by_key(|c| (c.created, c.id));
    let subject = issue.map(|i| {
        let state = if i.closed.is_some() { "closed" } else { "open" };
        json!({
            "title": i.title,
            "url": issue_api(s, i),
            "latest_comment_url": last.map(|c| comment_api(s, c)).unwrap_or_default(),
            "html_url": issue_web(s, i),
            "latest_comment_html_url": last.map(|c| format!("{}#issuecomment-{}", issue_web(s, i), c.id)).unwrap_or_default(),
            "type": if i.pull.is_some() { "Pull" } else { "Issue" },
            "state": state,
        })
    });
    json!({
        "id": n.id,
        "repository": r.map(|r| repo(s, r, None, true)),
        "subject": subject,
        "unread": n.status == 1,
        "pinned": n.status == 3,
        "updated_at": s.time(n.updated),
        "url": format!("{}api/v1/notifications/threads/{}", s.root_url, n.id),
    })
}

/// `convert.ToBranch` for an unprotected branch (`GET /repos/{o}/{r}/branches/{name}`). The
/// stand-in keeps no commit objects: message, author and time are left empty.
pub fn branch(s: &State, r: &Repo, name: &str, sha: &str) -> Value {
    let user = json!({"name": "", "email": "", "username": ""});
    json!({
        "name": name,
        "commit": {
            "id": sha,
            "message": "",
            "url": format!("{}/commit/{sha}", repo_web(s, r)),
            "author": user,
            "committer": user,
            "verification": null,
            "timestamp": "0001-01-01T00:00:00Z",
            "added": null,
            "removed": null,
            "modified": null,
        },
        "protected": false,
        "required_approvals": 0,
        "enable_status_check": false,
        "status_check_contexts": [],
        "user_can_push": false,
        "user_can_merge": false,
        "effective_branch_protection_name": "",
    })
}
