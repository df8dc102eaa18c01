//! Stand-in Gitea (API v1).
