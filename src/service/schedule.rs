//! Cron schedules (six fields, seconds first) in the time zone of `[schedule] timezone`
//! (default Europe/Helsinki): what fires when, and the intervals and ticks per month that
//! staleness and cost estimates are made of.
//!
//! A schedule is read on the zone's wall clock, whatever its offset from UTC:
//! `0 */15 7-17 * * Mon-Fri` fires from 07:00 to 17:45 Helsinki time in winter and in summer.
//! An instant is a tick when its wall time, at the offset in force at that instant, matches;
//! so on the night clocks go forward the skipped hour has no ticks (a daily `0 30 3 * * *` does
//! not run that night), and on the night they go back the repeated hour has its ticks twice.
//! (croner's own rules for those nights, which its `find_next_occurrence` does not follow
//! consistently, are not used.)
//!
//! tokio-cron-scheduler freezes a job's UTC offset when the job is created, so the daemon
//! creates its job at the offset in force ([`offset_at`]) and creates it again at each
//! [`next_offset_change`]; between changes, a fixed offset and the zone
//! agree, which is what [`Schedule::next_after`] computes. Schedules are parsed with the
//! same croner settings as the scheduler uses.

use std::time::Duration;

use chrono::{DateTime, FixedOffset, Offset, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds};

/// The zone of a config without `[schedule] timezone`.
pub const DEFAULT_ZONE: Tz = chrono_tz::Europe::Helsinki;

/// Reads an IANA time zone name (`Europe/Helsinki`, `UTC`).
pub fn parse_zone(name: &str) -> Result<Tz, String> {
    name.parse::<Tz>().map_err(|_| {
        format!("{name:?} is not an IANA time zone name such as \"Europe/Helsinki\" or \"UTC\"")
    })
}

/// `zone`'s offset from UTC at `t`.
pub fn offset_at(zone: Tz, t: DateTime<Utc>) -> FixedOffset {
    zone.offset_from_utc_datetime(&t.naive_utc()).fix()
}

/// `zone`'s offset from UTC at `t`, in seconds east of Greenwich.
pub fn offset_secs(zone: Tz, t: DateTime<Utc>) -> i32 {
    offset_at(zone, t).local_minus_utc()
}

/// The first instant after `t` at which `zone`'s UTC offset is no longer its offset at `t`,
/// to the second, if one comes within 400 days.
pub fn next_offset_change(zone: Tz, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let offset_at = |secs: i64| DateTime::from_timestamp(secs, 0).map(|t| offset_secs(zone, t));
    let start = t.timestamp();
    let now = offset_at(start)?;
    // Zones change their offset a few times a year at most, never twice within a day: find
    // the day of the change, then the second.
    const DAY: i64 = 86_400;
    let days = (1..=400).find(|i| offset_at(start + i * DAY) != Some(now))?;
    let (mut lo, mut hi) = (start + (days - 1) * DAY, start + days * DAY);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if offset_at(mid) == Some(now) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    DateTime::from_timestamp(hi, 0)
}

/// How long to wait from `now` until `zone`'s next offset change, at most `cap` (a caller that
/// sleeps this long and looks again also notices the wall clock being set).
pub fn until_offset_change(zone: Tz, now: DateTime<Utc>, cap: Duration) -> Duration {
    next_offset_change(zone, now)
        .and_then(|change| (change - now).to_std().ok())
        .map_or(cap, |d| d.min(cap))
}

/// A parsed, valid schedule and the zone it is read in.
#[derive(Debug, Clone)]
pub struct Schedule {
    expr: String,
    zone: Tz,
    cron: Cron,
}

/// Two schedules are the same when they fire at the same instants: same text, same zone.
impl PartialEq for Schedule {
    fn eq(&self, other: &Schedule) -> bool {
        self.expr == other.expr && self.zone == other.zone
    }
}

impl Schedule {
    /// Parses a six-field expression (`sec min hour day-of-month month day-of-week`), read in
    /// `zone`.
    pub fn parse(expr: &str, zone: Tz) -> Result<Schedule, String> {
        let cron = CronParser::builder()
            .seconds(Seconds::Required)
            .dom_and_dow(true)
            .build()
            .parse(expr)
            .map_err(|e| format!("{expr:?} is not a six-field cron schedule (sec min hour day month weekday): {e}"))?;
        let s = Schedule {
            expr: expr.to_owned(),
            zone,
            cron,
        };
        s.next_after(Utc::now())
            .ok_or_else(|| format!("{expr:?} never fires"))?;
        Ok(s)
    }

    pub fn expr(&self) -> &str {
        &self.expr
    }

    /// The zone the schedule's hours and days are read in.
    pub fn zone(&self) -> Tz {
        self.zone
    }

    /// The first tick strictly after `t`: the first instant whose wall time, at the UTC offset
    /// in force at that instant, matches the schedule.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let (mut from, mut inclusive) = (t, false);
        // Each round moves past one offset change; a schedule that fires at all does so within
        // a few years, with two changes a year.
        for _ in 0..32 {
            let offset = offset_at(self.zone, from);
            let next = self
                .cron
                .find_next_occurrence(&from.with_timezone(&offset), inclusive)
                .ok()?
                .with_timezone(&Utc);
            // No zone changes its offset twice within a week: the same offset at both ends of a
            // shorter span means none in between.
            if next - from < chrono::Duration::days(7) && offset_at(self.zone, next) == offset {
                return Some(next);
            }
            match next_offset_change(self.zone, from) {
                Some(change) if next >= change => (from, inclusive) = (change, true),
                _ => return Some(next),
            }
        }
        None
    }

    /// The longest gap between ticks over the coming week and at least 50 ticks, but no more
    /// than 20 000 ticks or a year: what "one interval" means for staleness and cost estimates.
    /// A week, so that an office-hours schedule's weekend counts.
    pub fn longest_gap(&self, from: DateTime<Utc>) -> chrono::Duration {
        let mut t = match self.next_after(from) {
            Some(t) => t,
            None => return chrono::Duration::days(366),
        };
        let (week, year) = (
            t + chrono::Duration::days(8),
            t + chrono::Duration::days(366),
        );
        let mut longest = chrono::Duration::zero();
        for i in 0..20_000 {
            let Some(n) = self.next_after(t) else { break };
            longest = longest.max(n - t);
            t = n;
            if (i >= 50 && t > week) || t > year {
                break;
            }
        }
        longest
    }

    /// How many ticks fall in `[from, from + span)`.
    pub fn ticks_within(&self, from: DateTime<Utc>, span: chrono::Duration) -> u64 {
        let end = from + span;
        let mut n = 0;
        let mut t = from - chrono::Duration::milliseconds(1);
        while let Some(next) = self.next_after(t) {
            if next >= end || n > 1_000_000 {
                break;
            }
            n += 1;
            t = next;
        }
        n
    }
}

/// How often `poll` and `reconcile` fire in `month`: what the cost estimate is made of, handed
/// to it as numbers.
pub fn month_ticks(
    poll: &Schedule,
    reconcile: &Schedule,
    month: &crate::domain::cost::Month,
) -> crate::domain::cost::Ticks {
    crate::domain::cost::Ticks {
        poll: poll.ticks_within(month.start, month.span),
        reconcile: reconcile.ticks_within(month.start, month.span),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::Europe::Helsinki;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    const OFFICE: &str = "0 */15 7-17 * * Mon-Fri";

    /// `check(zone, [(schedule, after, next)])`: the first tick strictly after `after`.
    fn check(zone: Tz, table: &[(&str, &str, &str)]) {
        for (expr, after, next) in table {
            let s = Schedule::parse(expr, zone).unwrap();
            assert_eq!(
                s.next_after(at(after)),
                Some(at(next)),
                "{expr:?} in {zone} after {after}"
            );
        }
    }

    #[test]
    fn helsinki_schedules_keep_local_time_across_the_2026_daylight_saving_changes() {
        // Clocks go forward on Sunday 29 March 2026 at 03:00 EET (01:00 UTC) and back on
        // Sunday 25 October 2026 at 04:00 EEST (01:00 UTC).
        check(
            Helsinki,
            &[
                // Office hours, winter: 07:00 EET is 05:00 UTC.
                (OFFICE, "2026-03-26T04:59:59Z", "2026-03-26T05:00:00Z"),
                (OFFICE, "2026-03-26T15:30:00Z", "2026-03-26T15:45:00Z"),
                // Friday 17:45 EET, then Monday 07:00 EEST (04:00 UTC), over the change.
                (OFFICE, "2026-03-27T15:45:00Z", "2026-03-30T04:00:00Z"),
                (OFFICE, "2026-03-30T04:00:00Z", "2026-03-30T04:15:00Z"),
                (OFFICE, "2026-03-30T14:45:00Z", "2026-03-31T04:00:00Z"),
                // Friday 17:45 EEST, then Monday 07:00 EET (05:00 UTC), over the change back.
                (OFFICE, "2026-10-23T14:45:00Z", "2026-10-26T05:00:00Z"),
                (OFFICE, "2026-10-26T15:30:00Z", "2026-10-26T15:45:00Z"),
                (OFFICE, "2026-10-26T15:45:00Z", "2026-10-27T05:00:00Z"),
                // A daily job at 06:00 local: 04:00 UTC in winter, 03:00 UTC in summer.
                (
                    "0 0 6 * * *",
                    "2026-03-27T12:00:00Z",
                    "2026-03-28T04:00:00Z",
                ),
                (
                    "0 0 6 * * *",
                    "2026-03-28T07:00:00Z",
                    "2026-03-29T03:00:00Z",
                ),
                (
                    "0 0 6 * * *",
                    "2026-10-24T07:00:00Z",
                    "2026-10-25T04:00:00Z",
                ),
                // The wall clock in force decides: 03:30 does not exist on 29 March, so it
                // does not fire that night…
                (
                    "0 30 3 * * *",
                    "2026-03-28T12:00:00Z",
                    "2026-03-30T00:30:00Z",
                ),
                (
                    "0 0 3 * * *",
                    "2026-03-28T12:00:00Z",
                    "2026-03-30T00:00:00Z",
                ),
                (
                    "0 0 4 * * *",
                    "2026-03-28T12:00:00Z",
                    "2026-03-29T01:00:00Z",
                ),
                // …and happens twice on 25 October, so it fires twice.
                (
                    "0 30 3 * * *",
                    "2026-10-24T12:00:00Z",
                    "2026-10-25T00:30:00Z",
                ),
                (
                    "0 30 3 * * *",
                    "2026-10-25T00:30:00Z",
                    "2026-10-25T01:30:00Z",
                ),
                (
                    "0 30 3 * * *",
                    "2026-10-25T01:30:00Z",
                    "2026-10-26T01:30:00Z",
                ),
                // Every 15 minutes keeps its pace through both changes.
                (
                    "0 */15 * * * *",
                    "2026-03-29T00:45:00Z",
                    "2026-03-29T01:00:00Z",
                ),
                (
                    "0 */15 * * * *",
                    "2026-10-25T00:45:00Z",
                    "2026-10-25T01:00:00Z",
                ),
                (
                    "0 */15 * * * *",
                    "2026-10-25T01:00:00Z",
                    "2026-10-25T01:15:00Z",
                ),
                (
                    "0 0 * * * *",
                    "2026-10-25T00:30:00Z",
                    "2026-10-25T01:00:00Z",
                ),
                (
                    "0 0 * * * *",
                    "2026-10-25T01:00:00Z",
                    "2026-10-25T02:00:00Z",
                ),
                // A yearly tick, many changes away.
                (
                    "0 0 0 1 1 *",
                    "2026-03-28T12:00:00Z",
                    "2026-12-31T22:00:00Z",
                ),
                (
                    "0 0 12 1 7 *",
                    "2026-10-25T12:00:00Z",
                    "2027-07-01T09:00:00Z",
                ),
            ],
        );
    }

    #[test]
    fn a_utc_schedule_ignores_helsinki_daylight_saving() {
        check(
            chrono_tz::UTC,
            &[
                (
                    "0 0 6 * * *",
                    "2026-03-28T07:00:00Z",
                    "2026-03-29T06:00:00Z",
                ),
                (
                    "0 0 6 * * *",
                    "2026-03-29T07:00:00Z",
                    "2026-03-30T06:00:00Z",
                ),
                (OFFICE, "2026-03-27T17:45:00Z", "2026-03-30T07:00:00Z"),
                (
                    "0 */15 * * * *",
                    "2026-10-25T00:59:59Z",
                    "2026-10-25T01:00:00Z",
                ),
            ],
        );
    }

    #[test]
    fn intervals_and_ticks_per_month_are_counted_in_the_zone() {
        let poll = Schedule::parse("0 */15 * * * *", Helsinki).unwrap();
        assert_eq!(
            poll.longest_gap(at("2026-10-25T00:00:00Z")),
            chrono::Duration::minutes(15)
        );
        assert_eq!(
            poll.ticks_within(at("2026-11-01T00:00:00Z"), chrono::Duration::days(30)),
            96 * 30
        );
        // October in Helsinki is 31 days and an hour long; its repeated hour is polled twice.
        assert_eq!(
            poll.ticks_within(
                at("2026-09-30T21:00:00Z"),
                at("2026-10-31T22:00:00Z") - at("2026-09-30T21:00:00Z")
            ),
            96 * 31 + 4
        );
        let office = Schedule::parse(OFFICE, Helsinki).unwrap();
        // March 2026 has 22 weekdays of 44 ticks (07:00 to 17:45), whatever the offset.
        let (march, april) = (at("2026-02-28T22:00:00Z"), at("2026-03-31T21:00:00Z"));
        assert_eq!(office.ticks_within(march, april - march), 22 * 44);
        // In UTC the same text fires at other local hours, but as often.
        let office_utc = Schedule::parse(OFFICE, chrono_tz::UTC).unwrap();
        assert_ne!(
            office_utc.next_after(at("2026-03-26T04:59:59Z")),
            office.next_after(at("2026-03-26T04:59:59Z"))
        );
        // One interval is the weekend, seen from any day of the week; over a change it is an
        // hour shorter (spring) or longer (autumn) than 61 h 15 min.
        for from in ["2026-03-23T06:00:00Z", "2026-03-25T06:00:00Z"] {
            assert_eq!(
                office.longest_gap(at(from)),
                chrono::Duration::minutes(60 * 60 + 15),
                "from {from}"
            );
        }
        assert_eq!(
            office.longest_gap(at("2026-10-21T06:00:00Z")),
            chrono::Duration::minutes(62 * 60 + 15)
        );
        assert_eq!(
            office.longest_gap(at("2026-06-01T06:00:00Z")),
            chrono::Duration::minutes(61 * 60 + 15)
        );
        // Rare schedules look up to a year ahead: October to November is 31 days and an hour.
        let monthly = Schedule::parse("0 0 6 1 * *", Helsinki).unwrap();
        assert_eq!(
            monthly.longest_gap(at("2026-06-01T06:00:00Z")),
            chrono::Duration::days(31) + chrono::Duration::hours(1)
        );
        let yearly = Schedule::parse("0 0 0 1 1 *", Helsinki).unwrap();
        assert_eq!(
            yearly.longest_gap(at("2026-06-01T06:00:00Z")),
            chrono::Duration::days(366)
        );
    }

    #[test]
    fn the_next_offset_change_is_found_to_the_second() {
        let table = [
            (
                Helsinki,
                "2026-01-10T12:34:56.789Z",
                Some("2026-03-29T01:00:00Z"),
            ),
            (
                Helsinki,
                "2026-03-29T00:59:59Z",
                Some("2026-03-29T01:00:00Z"),
            ),
            (
                Helsinki,
                "2026-03-29T01:00:00Z",
                Some("2026-10-25T01:00:00Z"),
            ),
            (
                Helsinki,
                "2026-10-25T01:00:00Z",
                Some("2027-03-28T01:00:00Z"),
            ),
            (chrono_tz::UTC, "2026-01-10T12:00:00Z", None),
            (chrono_tz::Asia::Tokyo, "2026-01-10T12:00:00Z", None),
        ];
        for (zone, from, change) in table {
            assert_eq!(
                next_offset_change(zone, at(from)),
                change.map(at),
                "{zone} after {from}"
            );
        }
        let hour = Duration::from_secs(3600);
        let waits = [
            (
                Helsinki,
                "2026-03-29T00:59:58.5Z",
                Duration::from_millis(1500),
            ),
            (Helsinki, "2026-03-29T00:30:00Z", Duration::from_secs(1800)),
            (Helsinki, "2026-06-01T00:00:00Z", hour),
            (chrono_tz::UTC, "2026-03-29T00:59:59Z", hour),
        ];
        for (zone, now, wait) in waits {
            assert_eq!(
                until_offset_change(zone, at(now), hour),
                wait,
                "{zone} at {now}"
            );
        }
        assert_eq!(offset_secs(Helsinki, at("2026-03-29T00:59:59Z")), 7200);
        assert_eq!(offset_secs(Helsinki, at("2026-03-29T01:00:00Z")), 10800);
    }

    #[test]
    fn zones_are_iana_names() {
        assert_eq!(parse_zone("Europe/Helsinki"), Ok(Helsinki));
        assert_eq!(parse_zone("UTC"), Ok(chrono_tz::UTC));
        for bad in ["Mars/Olympus", "", "+02:00", "helsinki"] {
            let e = parse_zone(bad).unwrap_err();
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
    }

    #[test]
    fn a_schedule_is_its_text_and_its_zone() {
        let a = Schedule::parse(OFFICE, Helsinki).unwrap();
        assert_eq!(a, Schedule::parse(OFFICE, Helsinki).unwrap());
        assert_ne!(a, Schedule::parse(OFFICE, chrono_tz::UTC).unwrap());
        assert_ne!(a, Schedule::parse("0 */15 * * * *", Helsinki).unwrap());
    }

    #[test]
    fn bad_schedules_are_refused_with_the_expression() {
        for bad in ["*/15 * * * *", "0 61 * * * *", "hourly please"] {
            let e = Schedule::parse(bad, DEFAULT_ZONE).unwrap_err();
            assert!(e.contains(bad), "{e}");
        }
    }
}
