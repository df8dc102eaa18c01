//! The bridge: `!testme` comments on recipe PRs become Drone builds, and the PR hears back.

pub mod command;
pub mod webhook;
