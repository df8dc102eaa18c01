//! Times as the site shows them: UTC dates from Unix seconds (no timezone database, and the
//! same page for every visitor), RFC 3339 for `<time datetime>` and Atom, short durations.

pub use ccci::clock::{now, rfc3339};

/// `2024-05-01 12:03 UTC`, or `–` for an unknown time.
pub fn display(secs: i64) -> String {
    if secs <= 0 {
        return "–".into();
    }
    ccci::clock::minute(secs)
}

/// `4m 12s`, `1h 02m`, `850ms`.
pub fn duration_ms(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0 => format!("{ms}ms"),
        1..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m", s / 3600, s / 60 % 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_match_known_instants() {
        assert_eq!(display(1_700_000_000), "2023-11-14 22:13 UTC");
        assert_eq!(display(0), "–");
    }

    #[test]
    fn durations_are_short() {
        assert_eq!(duration_ms(850), "850ms");
        assert_eq!(duration_ms(12_400), "12s");
        assert_eq!(duration_ms(252_000), "4m 12s");
        assert_eq!(duration_ms(3_720_000), "1h 02m");
    }
}
