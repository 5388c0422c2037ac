//! Telling Tampuuri about visits: every visit change not yet told (`booked` by the relay,
//! `moved` or `cancelled` as Slotti showed it to the webhook or the reconciliation) becomes a
//! hold with the rendered `[slotti.messages]` text and `notify = true`, so that the resident's
//! page shows the time; an accept comes first when the ticket is `Avoin` or waits (`Odottaa`),
//! since a hold is allowed only from `Vastaanotettu`. The actions go through the outbox (the
//! one enqueue path, `requested_by` = `slotti`), in order with the ticket's other actions, and
//! are queued in the same transaction that marks the change told, so each change is told once,
//! however often this runs or wherever it is interrupted. A ticket that left our open set, or
//! is in a state no hold can follow, is not told: the change is marked with why.
//!
//! The relay runs [`tell_untold`] after every booking it delivers (so the same push delivers
//! the accept and the hold: one `run --once` books and tells); the webhook and reconciliation
//! processing call it after they record changes.

use chrono_tz::Tz;

use super::message;
use crate::config::Config;
use crate::config::Messages;
use crate::domain::action::{Action, Facts};
use crate::domain::model::TicketState;
use crate::domain::time;
use crate::store::{Handle, TellQueued, UntoldChange};

/// Who the tells are queued by (`outbox.requested_by`).
pub const REQUESTED_BY: &str = "slotti";

/// What [`tell_untold`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TellReport {
    /// Changes whose telling was queued.
    pub told: usize,
    /// Changes marked as not to be told, with why: `(change id, ticket, why)`.
    pub not_told: Vec<(i64, i64, String)>,
}

/// Queues the telling of every untold visit change, oldest first. An error only when the
/// store cannot be used.
pub async fn tell_untold(config: &Config, store: &Handle) -> anyhow::Result<TellReport> {
    let changes = store.call(|s| s.visits().untold_visit_changes()).await?;
    let (messages, tz) = match &config.slotti {
        Some(s) => (s.messages.clone(), s.timezone),
        None => (
            Messages {
                booked: message::BOOKED.into(),
                moved: message::MOVED.into(),
                cancelled: message::CANCELLED.into(),
            },
            chrono_tz::Europe::Helsinki,
        ),
    };
    let mut report = TellReport::default();
    for ch in changes {
        let text = render(&messages, tz, &ch);
        let known = config.account(&ch.account).is_some();
        let account = ch.account.clone();
        let plan = move |f: &Facts| {
            if !known {
                return Err(format!("account {account} is not in the config any more"));
            }
            plan(text?, f)
        };
        let (change, ticket) = (ch.change.id, ch.ticket_id);
        match crate::engine::queue::queue_tell(
            config,
            store,
            &ch.account,
            ticket,
            change,
            REQUESTED_BY,
            plan,
        )
        .await?
        {
            TellQueued::Queued(_) => report.told += 1,
            TellQueued::NotTold(why) => {
                tracing::warn!(account = %ch.account, ticket, change, what = %ch.change.what, reason = %why, "Visit change not told to Tampuuri.");
                report.not_told.push((change, ticket, why));
            }
            TellQueued::AlreadyTold => {}
        }
    }
    Ok(report)
}

/// The message of a change: `booked` and `moved` with the new times, `cancelled` with the
/// old; `Err` when the stored times cannot be read.
pub fn render(messages: &Messages, tz: Tz, ch: &UntoldChange) -> Result<String, String> {
    let c = &ch.change;
    let (template, start, end) = match c.what.as_str() {
        "booked" => (&messages.booked, &c.new_start, &c.new_end),
        "moved" => (&messages.moved, &c.new_start, &c.new_end),
        "cancelled" => (&messages.cancelled, &c.old_start, &c.old_end),
        other => return Err(format!("a visit change {other:?} has no message")),
    };
    let read = |t: &Option<String>| {
        t.as_deref().and_then(time::parse).ok_or_else(|| {
            format!(
                "the {} change of visit {} has no readable time",
                c.what, ch.booking_guid
            )
        })
    };
    Ok(message::render(
        template,
        read(start)?,
        read(end)?,
        tz,
        ch.technician.as_deref().unwrap_or(""),
    ))
}

/// The actions that tell `message` on the ticket, from its facts: a hold with `notify`, after
/// an accept when the ticket (counting our queued actions) is `Avoin` or `Odottaa`. `Err` says
/// why the change is not told: the ticket is not mirrored, has left our open set, or is in a
/// state no hold can follow.
pub fn plan(message: String, f: &Facts) -> Result<Vec<Action>, String> {
    let Some(ticket) = &f.ticket else {
        return Err("the ticket is not in the mirror".into());
    };
    if !ticket.open {
        return Err(format!(
            "the ticket has left our open set ({}, state {})",
            ticket.left_reason.as_deref().unwrap_or("left"),
            ticket.state
        ));
    }
    let state = f.effective_state.clone().unwrap_or(ticket.state.clone());
    let hold = Action::Hold {
        reason: message,
        notify: true,
    };
    match state {
        TicketState::Avoin | TicketState::Odottaa => {
            Ok(vec![Action::Accept { comment: None }, hold])
        }
        TicketState::Vastaanotettu => Ok(vec![hold]),
        other => Err(format!(
            "the ticket is {other}: a hold cannot follow (Tampuuri allows one only after Vastaanotettu)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::action::MirroredTicket;
    use crate::store::VisitChange;
    use TicketState::*;

    fn facts(state: Option<TicketState>, open: bool, pending: Option<TicketState>) -> Facts {
        Facts {
            ticket: state.map(|state| MirroredTicket {
                state,
                open,
                left_reason: (!open).then(|| "state".into()),
                cost_centre_id: None,
                space_id: None,
                room_id: None,
            }),
            effective_state: pending,
            followups: vec![],
            queued_followups: vec![],
            active_visit: None,
            queued_booking: None,
        }
    }

    #[test]
    fn a_hold_follows_an_accept_unless_the_ticket_is_already_accepted() {
        let kinds = |r: Result<Vec<Action>, String>| {
            r.map(|v| v.iter().map(Action::kind).collect::<Vec<_>>().join("+"))
        };
        let ok = |s: &str| Ok(s.to_owned());
        for (f, want) in [
            (facts(Some(Avoin), true, None), ok("accept+hold")),
            (facts(Some(Odottaa), true, None), ok("accept+hold")),
            (facts(Some(Vastaanotettu), true, None), ok("hold")),
            // Our queued accept counts.
            (facts(Some(Avoin), true, Some(Vastaanotettu)), ok("hold")),
            (
                facts(Some(Vastaanotettu), true, Some(Odottaa)),
                ok("accept+hold"),
            ),
        ] {
            assert_eq!(kinds(plan("m".into(), &f)), want, "{f:?}");
        }
        for (f, why) in [
            (facts(None, false, None), "not in the mirror"),
            (facts(Some(Tehty), false, None), "left our open set"),
            (
                facts(Some(Vastaanotettu), true, Some(Tehty)),
                "the ticket is Tehty",
            ),
        ] {
            let err = plan("m".into(), &f).unwrap_err();
            assert!(err.contains(why), "{err}");
        }
        let Ok(actions) = plan("Huoltokäynti".into(), &facts(Some(Avoin), true, None)) else {
            panic!()
        };
        assert_eq!(
            actions[1],
            Action::Hold {
                reason: "Huoltokäynti".into(),
                notify: true
            }
        );
    }

    #[test]
    fn booked_and_moved_tell_the_new_time_cancelled_the_old() {
        let messages = Messages {
            booked: message::BOOKED.into(),
            moved: message::MOVED.into(),
            cancelled: message::CANCELLED.into(),
        };
        let change = |what: &str| UntoldChange {
            change: VisitChange {
                id: 1,
                at: String::new(),
                what: what.into(),
                old_start: Some("2026-04-07T06:00:00.000Z".into()),
                old_end: Some("2026-04-07T06:30:00.000Z".into()),
                new_start: Some("2026-04-08T11:00:00.000Z".into()),
                new_end: Some("2026-04-08T11:30:00.000Z".into()),
                source: "booking".into(),
                told_outbox_id: None,
            },
            visit_id: 1,
            account: "sim-1".into(),
            ticket_id: 5,
            booking_guid: "g".into(),
            technician: Some("Asentaja 1".into()),
        };
        let tz = chrono_tz::Europe::Helsinki;
        assert_eq!(
            render(&messages, tz, &change("booked")).unwrap(),
            "Huoltokäynti varattu ke 8.4. klo 14.00–14.30."
        );
        assert_eq!(
            render(&messages, tz, &change("moved")).unwrap(),
            "Huoltokäynti siirretty: ke 8.4. klo 14.00–14.30."
        );
        assert_eq!(
            render(&messages, tz, &change("cancelled")).unwrap(),
            "Huoltokäynti ti 7.4. klo 9.00 on peruttu."
        );
    }
}
