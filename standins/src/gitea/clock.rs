//! Time as Gitea writes and reads it: Go's `time.RFC3339` in the server's location.

use jiff::{tz, Timestamp};

/// Formats unix seconds as Go's `time.RFC3339` does for a location `offset` seconds east of
/// UTC: `Z` for UTC, `+01:00` otherwise (`modules/timeutil/timestamp.go` `AsTime` then
/// `encoding/json`, which writes RFC 3339 with the location's offset).
pub fn format_rfc3339(unix: i64, offset: i32) -> String {
    let t = Timestamp::from_second(unix).unwrap_or(Timestamp::UNIX_EPOCH);
    if offset == 0 {
        return t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    }
    let zone = tz::Offset::from_seconds(offset).map_or(tz::TimeZone::UTC, tz::TimeZone::fixed);
    t.to_zoned(zone)
        .strftime("%Y-%m-%dT%H:%M:%S%:z")
        .to_string()
}

/// Parses what Go's `time.Parse(time.RFC3339, s)` accepts: `YYYY-MM-DDTHH:MM:SS`, optional
/// fraction, then `Z` or `±HH:MM`, nothing looser (an upper-case `T` and `Z`, no leap
/// second). Returns unix seconds (fraction dropped, as `.Unix()` does).
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let tail = b.get(19..)?;
    let offset_ok = match tail.iter().position(|c| matches!(c, b'Z' | b'+' | b'-'))? {
        i if tail[i] == b'Z' => i + 1 == tail.len(),
        i => tail.len() == i + 6 && tail[i + 3] == b':',
    };
    let fraction_ok = tail[0] != b'.' || tail.get(1).is_some_and(u8::is_ascii_digit);
    if b[10] != b'T' || s.get(17..19)? == "60" || !offset_ok || !fraction_ok {
        return None;
    }
    s.parse::<Timestamp>().ok().map(|t| t.as_second())
}

pub fn real_now() -> i64 {
    Timestamp::now().as_second()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_with_offsets() {
        assert_eq!(format_rfc3339(1_740_823_200, 0), "2025-03-01T10:00:00Z");
        assert_eq!(
            format_rfc3339(1_740_823_200, 3600),
            "2025-03-01T11:00:00+01:00"
        );
        assert_eq!(
            format_rfc3339(1_740_823_200, -5 * 3600 - 1800),
            "2025-03-01T04:30:00-05:30"
        );
        assert_eq!(
            parse_rfc3339("2025-03-01T11:00:00+01:00"),
            Some(1_740_823_200)
        );
        assert_eq!(
            parse_rfc3339("2025-03-01T10:00:00.123Z"),
            Some(1_740_823_200)
        );
        assert_eq!(parse_rfc3339("2025-03-01T11:00:00 01:00"), None);
        assert_eq!(parse_rfc3339("2025-02-29T00:00:00Z"), None);
        assert_eq!(parse_rfc3339("2025-03-01 10:00:00Z"), None);
        for loose in [
            "2025-03-01t10:00:00Z",
            "2025-03-01T10:00:00z",
            "2025-03-01T10:00:60Z",
            "2025-02-31T00:00:00Z",
            "2025-03-01T10:00:00.Z",
            "2025-03-01T10:00:00+0100",
        ] {
            assert_eq!(parse_rfc3339(loose), None, "{loose}");
        }
    }
}
