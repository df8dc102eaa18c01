//! The stages of a run: one list, parsed once, matched exhaustively everywhere else. The names
//! are what `.drone.yml`'s steps, stage-runner's command line and the run summary say.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    Prepare,
    Install,
    Upgrade,
    Backup,
    RecipeTests,
    Lint,
    Teardown,
}

impl Stage {
    /// Every stage, in the order a run runs them.
    pub const ALL: [Stage; 7] = [
        Stage::Prepare,
        Stage::Install,
        Stage::Upgrade,
        Stage::Backup,
        Stage::RecipeTests,
        Stage::Lint,
        Stage::Teardown,
    ];

    /// The level ladder's rungs (docs/levels.md): the stages a run climbs, in order.
    pub const LADDER: [Stage; 5] = [
        Stage::Install,
        Stage::Upgrade,
        Stage::Backup,
        Stage::RecipeTests,
        Stage::Lint,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Prepare => "prepare",
            Stage::Install => "install",
            Stage::Upgrade => "upgrade",
            Stage::Backup => "backup",
            Stage::RecipeTests => "recipe-tests",
            Stage::Lint => "lint",
            Stage::Teardown => "teardown",
        }
    }

    /// The stage of that name; None for anything else (a Drone step of another pipeline).
    pub fn parse(name: &str) -> Option<Stage> {
        Stage::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Its step number in the `cc-ci` pipeline (Drone numbers steps from 1, clone disabled).
    pub fn step(self) -> usize {
        self as usize + 1
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Stage {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Stage> {
        Stage::parse(s).ok_or_else(|| {
            let names: Vec<&str> = Stage::ALL.iter().map(|s| s.as_str()).collect();
            anyhow::anyhow!("unknown stage {s:?}: the stages are {}", names.join(", "))
        })
    }
}

impl AsRef<str> for Stage {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

/// So that a stage compares with the name a Drone step or a test carries.
impl PartialEq<str> for Stage {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Stage {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stage_round_trips_through_its_name_and_serde() {
        for s in Stage::ALL {
            assert_eq!(Stage::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
            assert_eq!(
                serde_json::from_str::<Stage>(&format!("\"{s}\"")).unwrap(),
                s
            );
        }
        assert_eq!(Stage::ALL.map(Stage::step), [1, 2, 3, 4, 5, 6, 7]);
        let err = "deploy".parse::<Stage>().unwrap_err().to_string();
        assert!(
            err.contains("unknown stage \"deploy\"") && err.contains("recipe-tests"),
            "{err}"
        );
    }
}
