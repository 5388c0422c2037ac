//! Time as huoltosync records it: instants in UTC as RFC 3339 text, and calendar days (for
//! metering and cost) in Europe/Helsinki, where the contractor and Tampuuri's billing live.

use chrono::{DateTime, SecondsFormat, Utc};
use chrono_tz::Europe::Helsinki;

/// Now, in UTC.
pub fn now() -> DateTime<Utc> {
    Utc::now()
}

/// An instant as stored: `2026-11-25T18:35:29.123Z`.
pub fn fmt(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Parses a stored instant.
pub fn parse(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The Helsinki calendar day of an instant, `YYYY-MM-DD`.
pub fn local_day(t: DateTime<Utc>) -> String {
    t.with_timezone(&Helsinki).format("%Y-%m-%d").to_string()
}

/// The Helsinki calendar month of an instant, `YYYY-MM`.
pub fn local_month(t: DateTime<Utc>) -> String {
    t.with_timezone(&Helsinki).format("%Y-%m").to_string()
}

/// A duration in words an operator reads at a glance: `42 s`, `7 min`, `3 h 5 min`, `2 d 4 h`.
pub fn age(d: chrono::Duration) -> String {
    let s = d.num_seconds().max(0);
    match s {
        0..=119 => format!("{s} s"),
        120..=3599 => format!("{} min", s / 60),
        3600..=86_399 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_helsinki_days() {
        // 22:30 UTC on 31 March is already 1 April in Helsinki (UTC+3 in summer time).
        let t = parse("2026-03-31T22:30:00Z").unwrap();
        assert_eq!(
            (local_day(t), local_month(t)),
            ("2026-04-01".into(), "2026-04".into())
        );
        assert_eq!(fmt(t), "2026-03-31T22:30:00.000Z");
        assert_eq!(age(chrono::Duration::seconds(3 * 3600 + 300)), "3 h 5 min");
    }
}
