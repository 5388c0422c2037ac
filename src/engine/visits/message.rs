//! The message the resident reads on Tampuuri's resident pages about a visit: a template with
//! placeholders, rendered in the calendar's time zone in Finnish notation.
//!
//! Placeholders: `{paiva}` the weekday abbreviation and the date (`ti 7.4.`), `{alku}` and
//! `{loppu}` the start and end time (`9.00`: the hour without a leading zero, a dot, two-digit
//! minutes), `{asentaja}` the technician's name. [`placeholders_ok`] checks a template (the
//! config calls it); [`render`] fills one in.

use chrono::{DateTime, Datelike, TimeZone, Timelike, Utc, Weekday};
use chrono_tz::Tz;

/// The default message when a visit is booked.
pub const BOOKED: &str = "Huoltokäynti varattu {paiva} klo {alku}–{loppu}.";
/// The default message when a visit was moved in Slotti.
pub const MOVED: &str = "Huoltokäynti siirretty: {paiva} klo {alku}–{loppu}.";
/// The default message when a visit was cancelled in Slotti.
pub const CANCELLED: &str = "Huoltokäynti {paiva} klo {alku} on peruttu.";

/// The placeholders a template may use.
pub const PLACEHOLDERS: [&str; 4] = ["paiva", "alku", "loppu", "asentaja"];

/// Checks that every `{…}` in `template` is a known placeholder and every brace is closed; the
/// error names the offending placeholder and the ones allowed.
pub fn placeholders_ok(template: &str) -> Result<(), String> {
    let mut rest = template;
    while let Some(open) = rest.find(['{', '}']) {
        if rest[open..].starts_with('}') {
            return Err(format!(
                "a '}}' without its '{{' (placeholders: {})",
                allowed()
            ));
        }
        let after = &rest[open + 1..];
        let Some(close) = after
            .find(['}', '{'])
            .filter(|&c| after[c..].starts_with('}'))
        else {
            return Err(format!(
                "a '{{' without its '}}' (placeholders: {})",
                allowed()
            ));
        };
        let name = &after[..close];
        if !PLACEHOLDERS.contains(&name) {
            return Err(format!(
                "unknown placeholder {{{name}}} (placeholders: {})",
                allowed()
            ));
        }
        rest = &after[close + 1..];
    }
    Ok(())
}

fn allowed() -> String {
    PLACEHOLDERS
        .iter()
        .map(|p| format!("{{{p}}}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `template` with its placeholders filled in for a visit from `start` to `end`, read on the wall
/// clock of `tz`. A placeholder it does not know is left as it is ([`placeholders_ok`] refuses
/// such templates earlier).
pub fn render(
    template: &str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    tz: Tz,
    technician: &str,
) -> String {
    let (start, end) = (start.with_timezone(&tz), end.with_timezone(&tz));
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let value = after.find('}').and_then(|close| {
            let v = match &after[..close] {
                "paiva" => day(&start),
                "alku" => clock(&start),
                "loppu" => clock(&end),
                "asentaja" => technician.to_owned(),
                _ => return None,
            };
            Some((v, close))
        });
        match value {
            Some((v, close)) => {
                out.push_str(&v);
                rest = &after[close + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// `ti 7.4. klo 9.00–9.30`: a visit as a person in Finland reads it, on the wall clock of
/// `tz` (the commands show visits and free slots so). A visit that ends on another day names
/// that day too.
pub fn describe(start: DateTime<Utc>, end: DateTime<Utc>, tz: Tz) -> String {
    let (s, e) = (start.with_timezone(&tz), end.with_timezone(&tz));
    if s.date_naive() == e.date_naive() {
        format!("{} klo {}–{}", day(&s), clock(&s), clock(&e))
    } else {
        format!(
            "{} klo {} – {} klo {}",
            day(&s),
            clock(&s),
            day(&e),
            clock(&e)
        )
    }
}

/// `ti 7.4.`
fn day<T: TimeZone>(t: &DateTime<T>) -> String {
    let weekday = match t.weekday() {
        Weekday::Mon => "ma",
        Weekday::Tue => "ti",
        Weekday::Wed => "ke",
        Weekday::Thu => "to",
        Weekday::Fri => "pe",
        Weekday::Sat => "la",
        Weekday::Sun => "su",
    };
    format!("{weekday} {}.{}.", t.day(), t.month())
}

/// `9.00`
fn clock<T: TimeZone>(t: &DateTime<T>) -> String {
    format!("{}.{:02}", t.hour(), t.minute())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::Europe::Helsinki;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    /// `(start UTC, end UTC, the default booked message in Helsinki)`.
    fn check(cases: &[(&str, &str, &str)]) {
        for (start, end, want) in cases {
            assert_eq!(
                render(BOOKED, utc(start), utc(end), Helsinki, "Asentaja 1"),
                *want,
                "{start}"
            );
        }
    }

    #[test]
    fn nine_local_in_winter_and_in_summer() {
        check(&[
            // Winter time, UTC+2.
            (
                "2026-01-13T07:00:00Z",
                "2026-01-13T07:30:00Z",
                "Huoltokäynti varattu ti 13.1. klo 9.00–9.30.",
            ),
            // Summer time, UTC+3.
            (
                "2026-07-07T06:00:00Z",
                "2026-07-07T07:00:00Z",
                "Huoltokäynti varattu ti 7.7. klo 9.00–10.00.",
            ),
        ]);
    }

    #[test]
    fn the_weeks_of_the_daylight_saving_changes_show_the_local_hour() {
        check(&[
            // 2026: summer time from Sunday 29 March 03:00 local (01:00 UTC).
            (
                "2026-03-27T07:00:00Z",
                "2026-03-27T07:30:00Z",
                "Huoltokäynti varattu pe 27.3. klo 9.00–9.30.",
            ),
            (
                "2026-03-30T06:00:00Z",
                "2026-03-30T06:30:00Z",
                "Huoltokäynti varattu ma 30.3. klo 9.00–9.30.",
            ),
            // Across the change itself: 00:30 UTC is 2.30 winter time, 01:30 UTC 4.30 summer time.
            (
                "2026-03-29T00:30:00Z",
                "2026-03-29T01:30:00Z",
                "Huoltokäynti varattu su 29.3. klo 2.30–4.30.",
            ),
            // 2026: winter time from Sunday 25 October 04:00 local (01:00 UTC).
            (
                "2026-10-23T06:00:00Z",
                "2026-10-23T06:30:00Z",
                "Huoltokäynti varattu pe 23.10. klo 9.00–9.30.",
            ),
            (
                "2026-10-26T07:00:00Z",
                "2026-10-26T07:30:00Z",
                "Huoltokäynti varattu ma 26.10. klo 9.00–9.30.",
            ),
            // 00:30 UTC is 3.30 summer time; 01:30 UTC is 3.30 again, in winter time.
            (
                "2026-10-25T00:30:00Z",
                "2026-10-25T01:30:00Z",
                "Huoltokäynti varattu su 25.10. klo 3.30–3.30.",
            ),
            // 2027: summer time from Sunday 28 March, winter time from Sunday 31 October.
            (
                "2027-03-26T07:00:00Z",
                "2027-03-26T08:00:00Z",
                "Huoltokäynti varattu pe 26.3. klo 9.00–10.00.",
            ),
            (
                "2027-03-29T06:00:00Z",
                "2027-03-29T07:00:00Z",
                "Huoltokäynti varattu ma 29.3. klo 9.00–10.00.",
            ),
            (
                "2027-10-29T06:15:00Z",
                "2027-10-29T06:45:00Z",
                "Huoltokäynti varattu pe 29.10. klo 9.15–9.45.",
            ),
            (
                "2027-11-01T07:15:00Z",
                "2027-11-01T07:45:00Z",
                "Huoltokäynti varattu ma 1.11. klo 9.15–9.45.",
            ),
        ]);
    }

    #[test]
    fn every_placeholder_and_the_other_defaults() {
        let (s, e) = (utc("2026-04-07T06:05:00Z"), utc("2026-04-07T13:00:00Z"));
        assert_eq!(
            render(
                "{asentaja}: {paiva} {alku}-{loppu} {paiva}",
                s,
                e,
                Helsinki,
                "Asentaja 2"
            ),
            "Asentaja 2: ti 7.4. 9.05-16.00 ti 7.4."
        );
        assert_eq!(
            render(MOVED, s, e, Helsinki, ""),
            "Huoltokäynti siirretty: ti 7.4. klo 9.05–16.00."
        );
        assert_eq!(
            render(CANCELLED, s, e, Helsinki, ""),
            "Huoltokäynti ti 7.4. klo 9.05 on peruttu."
        );
        // Another zone is another wall clock.
        assert_eq!(
            render("{alku}", s, e, chrono_tz::UTC, ""),
            "6.05",
            "the hour has no leading zero"
        );
        // Unknown placeholders and stray braces are left alone.
        assert_eq!(render("{x} {alku", s, e, Helsinki, ""), "{x} {alku");
    }

    #[test]
    fn describe_names_both_days_of_a_visit_over_midnight() {
        assert_eq!(
            describe(
                utc("2026-04-07T06:00:00Z"),
                utc("2026-04-07T06:30:00Z"),
                Helsinki
            ),
            "ti 7.4. klo 9.00–9.30"
        );
        assert_eq!(
            describe(
                utc("2026-04-07T20:00:00Z"),
                utc("2026-04-07T22:00:00Z"),
                Helsinki
            ),
            "ti 7.4. klo 23.00 – ke 8.4. klo 1.00"
        );
    }

    #[test]
    fn templates_are_checked_by_placeholder() {
        for ok in [
            BOOKED,
            MOVED,
            CANCELLED,
            "",
            "Ei paikkoja",
            "{asentaja} {loppu}",
        ] {
            assert_eq!(placeholders_ok(ok), Ok(()), "{ok}");
        }
        for (bad, says) in [
            ("klo {aika}", "unknown placeholder {aika}"),
            ("klo {ALKU}", "unknown placeholder {ALKU}"),
            ("klo {alku", "a '{' without its '}'"),
            ("klo {al{alku}", "a '{' without its '}'"),
            ("klo alku}", "a '}' without its '{'"),
        ] {
            let e = placeholders_ok(bad).unwrap_err();
            assert!(
                e.starts_with(says) && e.contains("{paiva}, {alku}, {loppu}, {asentaja}"),
                "{bad}: {e}"
            );
        }
    }
}
