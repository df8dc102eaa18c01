//! Faithful local stand-ins for the systems cc-ci talks to but that cannot run here: a Gitea
//! forge, a Drone server with its exec runner, and `abra` (which drives the real Docker engine). Each keeps real
//! state and speaks the real protocol, quirks included, so code that passes against them
//! works against the real ones. Each module cites the upstream files it mirrors.

pub mod abra;
pub mod drone;
pub mod forge;
pub mod gitea;
pub mod ground;
pub mod http;
pub mod local;
pub mod runner;
pub mod upstream;
