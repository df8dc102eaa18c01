//! Typed client for the Gitea API v1 routes cc-ci uses.
