//! The phases of cc-ci's suite for a recipe: pytest markers, each run by one stage, in the
//! order a run reaches them. tests/ccci_harness/context.py's `PHASES` is the same list.

use std::fmt;

use ccci::summary::Stage;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestPhase {
    Install,
    PreUpgrade,
    PostUpgrade,
    PreBackup,
    AfterBackup,
    AfterRestore,
}

impl TestPhase {
    pub const ALL: [TestPhase; 6] = [
        TestPhase::Install,
        TestPhase::PreUpgrade,
        TestPhase::PostUpgrade,
        TestPhase::PreBackup,
        TestPhase::AfterBackup,
        TestPhase::AfterRestore,
    ];

    /// The pytest marker (and `CCCI_PHASE`).
    pub fn as_str(self) -> &'static str {
        match self {
            TestPhase::Install => "install",
            TestPhase::PreUpgrade => "pre_upgrade",
            TestPhase::PostUpgrade => "post_upgrade",
            TestPhase::PreBackup => "pre_backup",
            TestPhase::AfterBackup => "after_backup",
            TestPhase::AfterRestore => "after_restore",
        }
    }

    /// The stage that runs it.
    pub fn stage(self) -> Stage {
        match self {
            TestPhase::Install => Stage::Install,
            TestPhase::PreUpgrade | TestPhase::PostUpgrade => Stage::Upgrade,
            TestPhase::PreBackup | TestPhase::AfterBackup | TestPhase::AfterRestore => {
                Stage::Backup
            }
        }
    }
}

impl fmt::Display for TestPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_phases_are_the_harness_s() {
        let py = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/ccci_harness/context.py"
        ))
        .unwrap();
        let line = py.lines().find(|l| l.starts_with("PHASES = (")).unwrap();
        let names: Vec<&str> = TestPhase::ALL.iter().map(|p| p.as_str()).collect();
        let quoted: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
        assert_eq!(line, format!("PHASES = ({})", quoted.join(", ")));
    }
}
