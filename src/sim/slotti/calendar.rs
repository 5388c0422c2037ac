//! The technicians' working calendar: Monday to Friday 8–16 on the Helsinki wall clock, in
//! 30-minute steps. Times are kept in UTC and shown with the offset in force that day
//! (+02:00 in winter, +03:00 in summer), so a slot in a week of a daylight-saving change is
//! where a person in Finland expects it.

use chrono::{
    DateTime, Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Timelike, Utc, Weekday,
};
use chrono_tz::Europe::Helsinki;

/// The first and last working minute of a day (local), and the slot grid's step.
pub const DAY_START_MIN: u32 = 8 * 60;
pub const DAY_END_MIN: u32 = 16 * 60;
pub const STEP_MIN: u32 = 30;

/// Reads an ISO 8601 instant leniently: RFC 3339 (`2016-03-30T21:00:32.334Z`,
/// `2016-04-04T09:00:00+03:00`) or the seed's availability form without seconds
/// (`2016-04-04T09:00+03:00`).
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    let z = s.strip_suffix('Z').map(|b| format!("{b}+00:00"));
    DateTime::parse_from_str(z.as_deref().unwrap_or(s), "%Y-%m-%dT%H:%M%:z")
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// `t` on the Helsinki wall clock with that day's offset, RFC 3339 (`2026-03-30T09:00:00+03:00`);
/// with `short`, the seed's availability form without seconds (`2026-03-30T09:00+03:00`).
pub fn local(t: DateTime<Utc>, short: bool) -> String {
    let fmt = if short {
        "%Y-%m-%dT%H:%M%:z"
    } else {
        "%Y-%m-%dT%H:%M:%S%:z"
    };
    t.with_timezone(&Helsinki).format(fmt).to_string()
}

/// The Helsinki date of an instant.
pub fn local_date(t: DateTime<Utc>) -> NaiveDate {
    t.with_timezone(&Helsinki).date_naive()
}

/// The instant of a local wall-clock minute of `date` (working hours never fall in a
/// daylight-saving gap or overlap; `None` if one ever did).
pub fn at(date: NaiveDate, minute: u32) -> Option<DateTime<Utc>> {
    let time = NaiveTime::from_hms_opt(minute / 60, minute % 60, 0)?;
    Helsinki
        .from_local_datetime(&date.and_time(time))
        .single()
        .map(|t| t.with_timezone(&Utc))
}

pub fn is_working_day(date: NaiveDate) -> bool {
    !matches!(date.weekday(), Weekday::Sat | Weekday::Sun)
}

/// Every slot of `minutes` on `date`'s working hours, starting on the grid: `(start, end)`.
pub fn slots(date: NaiveDate, minutes: u32) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    if !is_working_day(date) || minutes == 0 {
        return Vec::new();
    }
    (DAY_START_MIN..DAY_END_MIN)
        .step_by(STEP_MIN as usize)
        .filter(|m| m + minutes <= DAY_END_MIN)
        .filter_map(|m| Some((at(date, m)?, at(date, m + minutes)?)))
        .collect()
}

/// Why `[start, end)` is not a bookable slot (weekend, outside 8–16, off the 30-minute grid,
/// across days), or `Ok`.
pub fn check_bookable(start: DateTime<Utc>, end: DateTime<Utc>) -> Result<(), String> {
    if end <= start {
        return Err("end must be after start".into());
    }
    let (ls, le) = (start.with_timezone(&Helsinki), end.with_timezone(&Helsinki));
    let day = ls.date_naive();
    if !is_working_day(day) {
        return Err(format!("{day} is not a working day (Mon–Fri)"));
    }
    let (sm, em) = (ls.hour() * 60 + ls.minute(), le.hour() * 60 + le.minute());
    if le.date_naive() != day || sm < DAY_START_MIN || em > DAY_END_MIN {
        return Err("the time is outside working hours (Mon–Fri 8–16 Europe/Helsinki)".into());
    }
    if ls.second() != 0 || ls.nanosecond() != 0 || !(sm - DAY_START_MIN).is_multiple_of(STEP_MIN) {
        return Err("the start is not on the 30-minute slot grid".into());
    }
    Ok(())
}

/// The local dates from `from`'s to `to`'s, both included.
pub fn dates(from: DateTime<Utc>, to: DateTime<Utc>) -> impl Iterator<Item = NaiveDate> {
    let (a, b) = (local_date(from), local_date(to));
    a.iter_days().take_while(move |d| *d <= b)
}

/// Minutes between two instants.
pub fn minutes(start: DateTime<Utc>, end: DateTime<Utc>) -> i64 {
    (end - start).num_minutes()
}

/// `t` plus `m` minutes.
pub fn plus(t: DateTime<Utc>, m: u32) -> DateTime<Utc> {
    t + Duration::minutes(i64::from(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn slots_carry_the_offset_in_force_on_their_day_across_both_changes() {
        // Summer time starts on Sunday 29 March 2026 and ends on Sunday 25 October 2026.
        for (day, first, last) in [
            (
                "2026-03-27",
                "2026-03-27T08:00:00+02:00",
                "2026-03-27T15:30:00+02:00",
            ),
            (
                "2026-03-30",
                "2026-03-30T08:00:00+03:00",
                "2026-03-30T15:30:00+03:00",
            ),
            (
                "2026-10-23",
                "2026-10-23T08:00:00+03:00",
                "2026-10-23T15:30:00+03:00",
            ),
            (
                "2026-10-26",
                "2026-10-26T08:00:00+02:00",
                "2026-10-26T15:30:00+02:00",
            ),
        ] {
            let s = slots(d(day), 30);
            assert_eq!(s.len(), 16, "{day}");
            assert_eq!(local(s[0].0, false), first);
            assert_eq!(local(s[15].0, false), last);
            assert_eq!(minutes(s[0].0, s[0].1), 30);
        }
        // 8.00 local is 06:00Z in winter, 05:00Z in summer.
        assert_eq!(
            slots(d("2026-03-27"), 30)[0].0.to_rfc3339(),
            "2026-03-27T06:00:00+00:00"
        );
        assert_eq!(
            slots(d("2026-03-30"), 30)[0].0.to_rfc3339(),
            "2026-03-30T05:00:00+00:00"
        );
    }

    #[test]
    fn weekends_have_no_slots_and_an_hour_long_service_fits_fifteen() {
        assert!(slots(d("2026-03-28"), 30).is_empty());
        assert!(slots(d("2026-03-29"), 30).is_empty());
        let s = slots(d("2026-12-01"), 60);
        assert_eq!(s.len(), 15);
        assert_eq!(local(s[14].1, true), "2026-12-01T16:00+02:00");
    }

    #[test]
    fn only_slots_on_the_grid_inside_working_hours_are_bookable() {
        let t = |s: &str| parse_time(s).unwrap();
        let ok = |a: &str, b: &str| check_bookable(t(a), t(b));
        assert!(ok("2026-12-01T08:00+02:00", "2026-12-01T08:30+02:00").is_ok());
        assert!(ok("2026-12-01T06:00:00.000Z", "2026-12-01T06:30:00.000Z").is_ok());
        assert!(ok("2026-12-01T15:30+02:00", "2026-12-01T16:00+02:00").is_ok());
        for (a, b) in [
            ("2026-12-01T07:30+02:00", "2026-12-01T08:00+02:00"),
            ("2026-12-01T15:30+02:00", "2026-12-01T16:30+02:00"),
            ("2026-12-01T08:10+02:00", "2026-12-01T08:40+02:00"),
            ("2026-12-05T09:00+02:00", "2026-12-05T09:30+02:00"),
            ("2026-12-01T09:00+02:00", "2026-12-01T09:00+02:00"),
        ] {
            assert!(ok(a, b).is_err(), "{a}–{b} was bookable");
        }
    }

    #[test]
    fn times_are_read_in_the_seeds_forms() {
        for s in [
            "2016-04-04T07:00:00.000Z",
            "2016-04-04T10:00+03:00",
            "2016-04-04T10:00:00+03:00",
            "2016-04-04T07:00Z",
        ] {
            assert_eq!(
                parse_time(s).unwrap().to_rfc3339(),
                "2016-04-04T07:00:00+00:00",
                "{s}"
            );
        }
        assert!(parse_time("huomenna").is_none());
    }
}
