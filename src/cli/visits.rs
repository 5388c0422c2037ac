//! The `visits` command: the technician visits booked in Slotti, as the store keeps them, with
//! their history; times on the calendar's wall clock.

use std::process::ExitCode;

use chrono::{DateTime, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

pub use super::args::VisitsArgs;
use super::{account_names, open_store, usage};
use crate::cli::report::count;
use crate::config::Config;
use crate::domain::escape::esc;
use crate::domain::time;
use crate::engine::visits::message::describe;
use crate::store::VisitFilter;

/// The zone visits are shown in: `[slotti] timezone` (default Europe/Helsinki).
pub fn zone(config: &Config) -> Tz {
    crate::slotti::zone(config)
}

/// `visits`: the visits overlapping the range, by start.
pub async fn visits(config: &Config, args: VisitsArgs, tz: Tz) -> anyhow::Result<ExitCode> {
    if let Some(a) = &args.account
        && config.account(a).is_none()
    {
        return Err(usage(format!(
            "--account {a:?} is not in the config (accounts: {})",
            account_names(config).join(", ")
        )));
    }
    let now = time::now();
    let from = match &args.from {
        Some(s) => when(s, tz, false).map_err(|e| usage(format!("--from {e}")))?,
        None => day_start(now.with_timezone(&tz).date_naive(), tz),
    };
    let to = args
        .to
        .as_deref()
        .map(|s| when(s, tz, true).map_err(|e| usage(format!("--to {e}"))))
        .transpose()?;
    if to.is_some_and(|to| to <= from) {
        return Err(usage("--to is not after --from".to_owned()));
    }
    let mut store = open_store(config).await?;
    let visits = store.visits().visits(&VisitFilter {
        account: args.account,
        from: Some(from),
        to,
    })?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&visits)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    for v in &visits {
        let when = match (time::parse(&v.start), time::parse(&v.end)) {
            (Some(s), Some(e)) => describe(s, e, tz),
            _ => format!("{}–{}", v.start, v.end),
        };
        outln!(
            "{:<28} {:<12} {:>8}  {:<9}  {}  {}  {}",
            when,
            esc(&v.account),
            v.ticket_id,
            v.status,
            esc(v.technician.as_deref().unwrap_or("-")),
            esc(v.service.as_deref().unwrap_or("-")),
            esc(&v.booking_guid)
        )?;
    }
    eprintln!("{}", count(visits.len() as u64, "visit", "visits"));
    Ok(ExitCode::SUCCESS)
}

/// A `--from`/`--to` value: an RFC 3339 time, or a local day (its start; with `end_of_day`,
/// the start of the next day).
fn when(s: &str, tz: Tz, end_of_day: bool) -> Result<DateTime<Utc>, String> {
    let s = s.trim();
    if let Some(t) = time::parse(s) {
        return Ok(t);
    }
    let day = NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|_| format!("{s:?} is neither a day (YYYY-MM-DD) nor an RFC 3339 time"))?;
    let day = if end_of_day {
        day.succ_opt()
            .ok_or_else(|| format!("{s:?} is out of range"))?
    } else {
        day
    };
    Ok(day_start(day, tz))
}

/// The first instant of `day` on the wall clock of `tz` (midnight, or the first time after a
/// gap).
fn day_start(day: NaiveDate, tz: Tz) -> DateTime<Utc> {
    let midnight = day.and_time(NaiveTime::MIN);
    // A gap in a zone's clock lasts hours at most.
    (0..48)
        .map(|half_hours| midnight + chrono::Duration::minutes(30 * half_hours))
        .find_map(|t| tz.from_local_datetime(&t).earliest())
        .map_or_else(|| midnight.and_utc(), |t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::Europe::Helsinki;

    #[test]
    fn days_are_local_days_and_times_are_taken_as_given() {
        let t = |s: &str| time::parse(s).unwrap();
        assert_eq!(
            when("2026-03-29", Helsinki, false),
            Ok(t("2026-03-28T22:00:00Z"))
        );
        assert_eq!(
            when("2026-03-29", Helsinki, true),
            Ok(t("2026-03-29T21:00:00Z")),
            "the end of the day summer time began"
        );
        assert_eq!(
            when("2026-04-07T09:00:00+03:00", Helsinki, true),
            Ok(t("2026-04-07T06:00:00Z"))
        );
        assert!(
            when("7.4.2026", Helsinki, false)
                .unwrap_err()
                .contains("YYYY-MM-DD")
        );
    }
}
