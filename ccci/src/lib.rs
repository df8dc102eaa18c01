//! What cc-ci's binaries share: the typed Gitea and Drone clients, secrets read from files,
//! the HTTP plumbing both clients stand on, and greppable log lines.

pub mod api;
pub mod drone;
pub mod gitea;
pub mod log;
pub mod run;
pub mod secret;
