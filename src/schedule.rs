//! Cron schedules (six fields, seconds first), in UTC.
//!
//! tokio-cron-scheduler freezes a time zone's UTC offset when a job is created, so a
//! Europe/Helsinki schedule would drift by an hour across a daylight-saving change. huoltosync
//! therefore interprets every schedule in UTC, where no such change exists; `*/15`-minute polls
//! are unaffected, and a daily job written for 06:00 UTC runs at 08:00 or 09:00 in Helsinki.
//! Schedules are parsed with the same croner settings as the scheduler uses.

use chrono::{DateTime, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds};

/// A parsed, valid schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    expr: String,
    cron: Cron,
}

impl Schedule {
    /// Parses a six-field expression (`sec min hour day-of-month month day-of-week`).
    pub fn parse(expr: &str) -> Result<Schedule, String> {
        let cron = CronParser::builder()
            .seconds(Seconds::Required)
            .dom_and_dow(true)
            .build()
            .parse(expr)
            .map_err(|e| format!("{expr:?} is not a six-field cron schedule (sec min hour day month weekday): {e}"))?;
        let s = Schedule {
            expr: expr.to_owned(),
            cron,
        };
        s.next_after(Utc::now())
            .ok_or_else(|| format!("{expr:?} never fires"))?;
        Ok(s)
    }

    pub fn expr(&self) -> &str {
        &self.expr
    }

    /// The first tick strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.find_next_occurrence(&t, false).ok()
    }

    /// The longest gap between ticks over the next 50 ticks from `from`: what "one interval"
    /// means for staleness and cost estimates.
    pub fn longest_gap(&self, from: DateTime<Utc>) -> chrono::Duration {
        let mut t = match self.next_after(from) {
            Some(t) => t,
            None => return chrono::Duration::days(366),
        };
        let mut longest = chrono::Duration::zero();
        for _ in 0..50 {
            let Some(n) = self.next_after(t) else { break };
            longest = longest.max(n - t);
            t = n;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn schedules_are_utc_and_ignore_daylight_saving() {
        let daily = Schedule::parse("0 0 6 * * *").unwrap();
        // Helsinki moves its clocks on 29 March 2026; the job stays at 06:00 UTC either side.
        assert_eq!(
            daily.next_after(at("2026-03-28T07:00:00Z")),
            Some(at("2026-03-29T06:00:00Z"))
        );
        assert_eq!(
            daily.next_after(at("2026-03-29T07:00:00Z")),
            Some(at("2026-03-30T06:00:00Z"))
        );
        let poll = Schedule::parse("0 */15 * * * *").unwrap();
        assert_eq!(
            poll.next_after(at("2026-10-25T00:59:59Z")),
            Some(at("2026-10-25T01:00:00Z"))
        );
        assert_eq!(
            poll.longest_gap(at("2026-10-25T00:00:00Z")),
            chrono::Duration::minutes(15)
        );
        assert_eq!(
            poll.ticks_within(at("2026-11-01T00:00:00Z"), chrono::Duration::days(30)),
            96 * 30
        );
    }

    #[test]
    fn bad_schedules_are_refused_with_the_expression() {
        for bad in ["*/15 * * * *", "0 61 * * * *", "hourly please"] {
            let e = Schedule::parse(bad).unwrap_err();
            assert!(e.contains(bad), "{e}");
        }
    }
}
