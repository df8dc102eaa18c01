//! Greppable log lines on stderr: `LEVEL target: message key=value …`.
//!
//! Values are written as given; callers never pass a secret (the clients hold tokens as
//! [`crate::secret::Secret`], whose `Display` is `***`).

use std::fmt::Display;
use std::io::Write;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error,
    Warn,
    Info,
    Debug,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Error => "ERROR",
            Level::Warn => "WARN",
            Level::Info => "INFO",
            Level::Debug => "DEBUG",
        }
    }
}

/// Formats one line; values containing spaces or quotes are quoted so a line stays one record.
pub fn format_line(level: Level, target: &str, msg: &str, kv: &[(&str, &dyn Display)]) -> String {
    let mut line = format!("{} {target}: {msg}", level.as_str());
    for (k, v) in kv {
        let v = v.to_string();
        if v.is_empty() || v.contains([' ', '"', '=', '\n']) {
            line.push_str(&format!(" {k}={v:?}"));
        } else {
            line.push_str(&format!(" {k}={v}"));
        }
    }
    line
}

pub fn emit(level: Level, target: &str, msg: &str, kv: &[(&str, &dyn Display)]) {
    let line = format_line(level, target, msg, kv);
    // A closed stderr must not take the process down with it.
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_values_that_would_split_the_record() {
        let line = format_line(
            Level::Info,
            "bridge",
            "decision",
            &[("pr", &4), ("user", &"a b"), ("empty", &"")],
        );
        assert_eq!(line, r#"INFO bridge: decision pr=4 user="a b" empty="""#);
    }
}
