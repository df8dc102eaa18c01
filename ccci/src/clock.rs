//! UTC time: Unix seconds to and from RFC 3339 and calendar dates, for Gitea's
//! `since`/`created_at`, the sweep's slots and the site's dates. jiff does the calendar; no
//! timezone database is needed (everything cc-ci writes is UTC).

use anyhow::{Context, Result};
use jiff::Timestamp;

pub fn now() -> i64 {
    Timestamp::now().as_second()
}

/// Unix seconds as a timestamp, clamped to jiff's range (years -9999 to 9999).
fn at(secs: i64) -> Timestamp {
    let secs = secs.clamp(Timestamp::MIN.as_second(), Timestamp::MAX.as_second());
    Timestamp::from_second(secs).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// `2024-05-01T12:03:04Z`.
pub fn rfc3339(secs: i64) -> String {
    at(secs).to_string()
}

/// `2024-05-01`.
pub fn date(secs: i64) -> String {
    at(secs).strftime("%Y-%m-%d").to_string()
}

/// `2024-05-01 12:03 UTC`.
pub fn minute(secs: i64) -> String {
    at(secs).strftime("%Y-%m-%d %H:%M UTC").to_string()
}

/// Parses RFC 3339 (`YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`) into Unix seconds, the fraction
/// dropped. A date that does not exist (`2025-02-31`) is refused.
pub fn parse_rfc3339(s: &str) -> Result<i64> {
    let bad = || format!("not an RFC 3339 time: {s:?}");
    // jiff also reads ISO 8601's space between date and time; RFC 3339's is a T.
    if !matches!(s.as_bytes().get(10), Some(b'T' | b't')) {
        anyhow::bail!(bad());
    }
    let t: Timestamp = s.parse().with_context(bad)?;
    Ok(t.as_second())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_match_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(date(951_782_400 + 86_399), "2000-02-29");
        assert_eq!(minute(1_700_000_000), "2023-11-14 22:13 UTC");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
        for t in [0, 1_700_000_000, 951_782_400, -86_401] {
            assert_eq!(parse_rfc3339(&rfc3339(t)).unwrap(), t);
        }
        assert_eq!(
            parse_rfc3339("2023-11-14T23:13:20+01:00").unwrap(),
            1_700_000_000
        );
        assert_eq!(
            parse_rfc3339("2023-11-14T22:13:20.999Z").unwrap(),
            1_700_000_000
        );
    }

    #[test]
    fn what_is_no_time_is_refused() {
        for bad in [
            "2025-02-31T00:00:00Z",
            "2025-13-01T00:00:00Z",
            "2025-03-01T10:00:00",
            "",
            "yesterday",
        ] {
            let e = parse_rfc3339(bad).unwrap_err().to_string();
            assert!(e.contains("not an RFC 3339 time"), "{bad}: {e}");
        }
    }
}
