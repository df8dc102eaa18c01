//! What cc-ci's binaries share: the typed Gitea and Drone clients, secrets read from files,
//! the HTTP plumbing both clients stand on, and greppable log lines.

pub mod api;
pub mod clock;
pub mod config;
pub mod drone;
pub mod fsx;
pub mod gitea;
pub mod http;
pub mod log;
pub mod results;
pub mod run;
pub mod secret;
pub mod stage;
pub mod summary;
pub mod verdict;
