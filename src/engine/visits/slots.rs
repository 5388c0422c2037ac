//! Choosing a visit's time: the free slots Slotti offered, filtered by what the booking asks
//! (`task book --after/--before/--at/--technician`, the config's lead time and horizon) and
//! ordered. Pure functions over plain values.

use chrono::{DateTime, Duration, Utc};

/// A free time of one technician (a Slotti resource), as Slotti offered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    pub resource_guid: String,
    pub resource_id: i64,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// What a booking's slot must meet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraints {
    /// The earliest start from now (`[slotti] lead_hours`).
    pub lead: Duration,
    /// How far ahead a visit may be booked (`[slotti] horizon_days`): a slot must end by now
    /// plus this.
    pub horizon: Duration,
    /// Start at or after this (`--after`).
    pub after: Option<DateTime<Utc>>,
    /// End at or before this (`--before`).
    pub before: Option<DateTime<Utc>>,
    /// Start exactly at this (`--at`); the lead time and the horizon still hold.
    pub at: Option<DateTime<Utc>>,
    /// The technicians (resource guids) allowed; empty: any.
    pub technicians: Vec<String>,
}

impl Constraints {
    /// Any technician, any time from `lead_hours` to `horizon_days` ahead.
    pub fn new(lead_hours: u32, horizon_days: u32) -> Constraints {
        Constraints {
            lead: Duration::hours(lead_hours.into()),
            horizon: Duration::days(horizon_days.into()),
            after: None,
            before: None,
            at: None,
            technicians: Vec::new(),
        }
    }

    /// The range to ask Slotti's availability for at `now`: from the earliest allowed start to
    /// the latest allowed end. `None` when no slot can meet the constraints (e.g. `--before`
    /// earlier than the lead time allows).
    pub fn range(&self, now: DateTime<Utc>) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        let mut from = now + self.lead;
        let mut to = now + self.horizon;
        if let Some(a) = self.after {
            from = from.max(a);
        }
        if let Some(b) = self.before {
            to = to.min(b);
        }
        if let Some(at) = self.at {
            if at < from {
                return None;
            }
            from = at;
        }
        (from < to).then_some((from, to))
    }

    /// Whether `slot` meets the constraints at `now`.
    pub fn allows(&self, slot: &Slot, now: DateTime<Utc>) -> bool {
        let Some((from, to)) = self.range(now) else {
            return false;
        };
        slot.start < slot.end
            && slot.start >= from
            && slot.end <= to
            && self.at.is_none_or(|at| slot.start == at)
            && (self.technicians.is_empty() || self.technicians.contains(&slot.resource_guid))
    }
}

/// The first `n` slots that meet `c` at `now`, by start and then technician (resource id, then
/// guid), each (technician, start) once however often it was offered.
pub fn candidates(slots: &[Slot], c: &Constraints, now: DateTime<Utc>, n: usize) -> Vec<Slot> {
    let mut fit: Vec<&Slot> = slots.iter().filter(|s| c.allows(s, now)).collect();
    fit.sort_by(|a, b| {
        (a.start, a.resource_id, &a.resource_guid, a.end).cmp(&(
            b.start,
            b.resource_id,
            &b.resource_guid,
            b.end,
        ))
    });
    fit.dedup_by(|a, b| a.start == b.start && a.resource_guid == b.resource_guid);
    fit.into_iter().take(n).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    const NOW: &str = "2026-04-06T06:00:00Z";

    fn slot(guid: &str, id: i64, start: &str, minutes: i64) -> Slot {
        Slot {
            resource_guid: guid.into(),
            resource_id: id,
            start: t(start),
            end: t(start) + Duration::minutes(minutes),
        }
    }

    /// Offered slots, out of order and with a repeat.
    fn offered() -> Vec<Slot> {
        vec![
            slot("b", 2, "2026-04-07T06:00:00Z", 30),
            slot("a", 1, "2026-04-07T06:00:00Z", 30),
            slot("a", 1, "2026-04-06T12:00:00Z", 30), // within the lead time
            slot("c", 3, "2026-04-08T10:00:00Z", 30),
            slot("a", 1, "2026-04-07T06:30:00Z", 30),
            slot("a", 1, "2026-04-07T06:00:00Z", 30), // offered twice
            slot("b", 2, "2026-04-25T06:00:00Z", 30), // past the horizon
        ]
    }

    /// `(constraints, n, the (guid, start) chosen)`.
    type Case = (Constraints, usize, Vec<(&'static str, &'static str)>);

    fn check(cases: Vec<Case>) {
        for (i, (c, n, want)) in cases.into_iter().enumerate() {
            let got: Vec<(String, DateTime<Utc>)> = candidates(&offered(), &c, t(NOW), n)
                .into_iter()
                .map(|s| (s.resource_guid, s.start))
                .collect();
            let want: Vec<(String, DateTime<Utc>)> = want
                .into_iter()
                .map(|(g, s)| (g.to_owned(), t(s)))
                .collect();
            assert_eq!(got, want, "case {i}: {c:?}");
        }
    }

    #[test]
    fn candidates_meet_the_constraints_in_order() {
        let base = Constraints::new(24, 14);
        check(vec![
            // Lead time and horizon; by start, then technician; a repeat once.
            (
                base.clone(),
                10,
                vec![
                    ("a", "2026-04-07T06:00:00Z"),
                    ("b", "2026-04-07T06:00:00Z"),
                    ("a", "2026-04-07T06:30:00Z"),
                    ("c", "2026-04-08T10:00:00Z"),
                ],
            ),
            // The first n.
            (base.clone(), 1, vec![("a", "2026-04-07T06:00:00Z")]),
            // Allowed technicians only.
            (
                Constraints {
                    technicians: vec!["b".into(), "c".into()],
                    ..base.clone()
                },
                10,
                vec![("b", "2026-04-07T06:00:00Z"), ("c", "2026-04-08T10:00:00Z")],
            ),
            // --after and --before.
            (
                Constraints {
                    after: Some(t("2026-04-07T06:15:00Z")),
                    before: Some(t("2026-04-08T10:29:00Z")),
                    ..base.clone()
                },
                10,
                vec![("a", "2026-04-07T06:30:00Z")],
            ),
            // --at: that start only.
            (
                Constraints {
                    at: Some(t("2026-04-08T10:00:00Z")),
                    ..base.clone()
                },
                10,
                vec![("c", "2026-04-08T10:00:00Z")],
            ),
            // --at within the lead time: nothing.
            (
                Constraints {
                    at: Some(t("2026-04-06T12:00:00Z")),
                    ..base.clone()
                },
                10,
                vec![],
            ),
            // No lead time: the slot of today comes first.
            (
                Constraints::new(0, 14),
                1,
                vec![("a", "2026-04-06T12:00:00Z")],
            ),
            // A longer horizon reaches the late slot.
            (
                Constraints {
                    after: Some(t("2026-04-09T00:00:00Z")),
                    ..Constraints::new(24, 30)
                },
                10,
                vec![("b", "2026-04-25T06:00:00Z")],
            ),
        ]);
    }

    #[test]
    fn the_availability_range_is_narrowed_by_the_constraints() {
        let now = t(NOW);
        let base = Constraints::new(24, 14);
        assert_eq!(
            base.range(now),
            Some((t("2026-04-07T06:00:00Z"), t("2026-04-20T06:00:00Z")))
        );
        let narrowed = Constraints {
            after: Some(t("2026-04-10T00:00:00Z")),
            before: Some(t("2026-04-11T00:00:00Z")),
            ..base.clone()
        };
        assert_eq!(
            narrowed.range(now),
            Some((t("2026-04-10T00:00:00Z"), t("2026-04-11T00:00:00Z")))
        );
        let too_soon = Constraints {
            before: Some(t("2026-04-07T00:00:00Z")),
            ..base.clone()
        };
        assert_eq!(too_soon.range(now), None);
        let at = Constraints {
            at: Some(t("2026-04-09T07:00:00Z")),
            ..base
        };
        assert_eq!(
            at.range(now),
            Some((t("2026-04-09T07:00:00Z"), t("2026-04-20T06:00:00Z")))
        );
    }
}
