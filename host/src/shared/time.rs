//! Wall-clock and monotonic time helpers.
//!
//! Runs in: every process. Wall-clock times are shown to people (RFC 3339, UTC, milliseconds);
//! deadlines always use the monotonic clock.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Formats epoch milliseconds as `2026-11-21T19:42:00.123Z`.
pub fn rfc3339_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60,
        ms % 1000
    )
}

/// Days since 1970-01-01 to (year, month, day), after Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Parses a duration as written in the config: `"250ms"`, `"2s"`, `"1min"`, `"1h"`, `"1d"`,
/// `"100us"`, or a bare number of milliseconds. A value too large to represent is an error here;
/// the settings' own upper bounds are checked by their callers ([`crate::shared::config`]).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let not_a_duration = || format!("{s:?} is not a duration (write e.g. \"500ms\", \"2s\", \"1min\")");
    if num.is_empty() {
        return Err(not_a_duration());
    }
    let too_large = || format!("{s:?} is too large to be a duration");
    let n: u64 = num.parse().map_err(|_| too_large())?;
    let secs = |factor: u64| n.checked_mul(factor).map(Duration::from_secs).ok_or_else(too_large);
    match unit.trim() {
        "" | "ms" => Ok(Duration::from_millis(n)),
        "us" => Ok(Duration::from_micros(n)),
        "s" => secs(1),
        "min" => secs(60),
        "h" => secs(3600),
        "d" => secs(86_400),
        u => Err(format!("{s:?}: unknown unit {u:?} (use us, ms, s, min, h or d)")),
    }
}

/// Formats a duration the way the config writes it, in the largest unit that keeps it exact.
pub fn format_duration(d: Duration) -> String {
    let us = d.as_micros();
    for (unit, per) in [
        ("d", 86_400_000_000u128),
        ("h", 3_600_000_000),
        ("min", 60_000_000),
        ("s", 1_000_000),
        ("ms", 1000),
    ] {
        if us != 0 && us.is_multiple_of(per) {
            return format!("{}{unit}", us / per);
        }
    }
    if us == 0 {
        return "0s".to_owned();
    }
    format!("{us}us")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339_ms(1_795_200_000_000), "2026-11-20T18:40:00.000Z");
    }

    #[test]
    fn parses_durations_with_units() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1min"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("40"), Ok(Duration::from_millis(40)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("3 parsecs").is_err());
        assert!(parse_duration("ms").unwrap_err().contains("not a duration"));
    }

    #[test]
    fn values_beyond_any_clock_are_refused_not_saturated() {
        let e = parse_duration("99999999999999999999999s").unwrap_err();
        assert!(e.contains("too large"), "{e}");
        let e = parse_duration("999999999999999999d").unwrap_err();
        assert!(e.contains("too large"), "{e}");
    }

    #[test]
    fn formats_in_the_largest_exact_unit() {
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(Duration::from_micros(1500)), "1500us");
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_duration(Duration::from_secs(90)), "90s");
        assert_eq!(format_duration(Duration::from_secs(3600)), "1h");
        assert_eq!(format_duration(Duration::from_secs(30 * 86_400)), "30d");
        for d in ["1500us", "250ms", "90s", "1h", "30d", "2min"] {
            assert_eq!(format_duration(parse_duration(d).unwrap()), d);
        }
    }
}
