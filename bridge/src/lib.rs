//! The bridge: `!testme` comments on recipe PRs become Drone builds, and the PR hears back.

pub mod command;
pub mod config;
pub mod state;
pub mod webhook;
