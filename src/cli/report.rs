//! How the library's results read to a person: the one-line summary of an account's sync and
//! the description of a queued action. The commands and the demo print these; text from
//! outside (server errors, ticket text, account names) is escaped here, through [`esc`].

use std::fmt;

use crate::domain::action::Action;
use crate::domain::escape::esc;
use crate::engine::sync::SyncReport;
use crate::store::OutboxRow;

/// `sim-1: ok: 1001 open (1001 new, 0 changed, 0 left), 5 pages, 5 API calls, 0.4 s`, or
/// `sim-2: FAILED after 3 API calls: …` with the error's whole cause chain.
impl fmt::Display for SyncReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self;
        match &r.error {
            None => write!(
                f,
                "{}: ok: {} open ({} new, {} changed, {} left), {}, {}, {:.1} s",
                r.account,
                r.seen,
                r.counts.new,
                r.counts.changed,
                r.counts.gone,
                count(r.pages.into(), "page", "pages"),
                count(r.api_calls, "API call", "API calls"),
                r.elapsed.as_secs_f64()
            ),
            Some(e) => {
                // The line starts with the account; the error need not say it again.
                let text = format!("{e:#}");
                let prefix = format!("account {}: ", r.account);
                write!(
                    f,
                    "{}: FAILED after {}: {}",
                    r.account,
                    count(r.api_calls, "API call", "API calls"),
                    esc(text.strip_prefix(&prefix).unwrap_or(&text))
                )
            }
        }
    }
}

/// `1 page`, `2 pages`.
pub fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `accept ticket 1003 in sim-1 (Avoin → Vastaanotettu)`, its text escaped for a terminal.
pub fn describe(row: &OutboxRow) -> String {
    let (action, account) = (row.action.describe(), &row.account);
    let (action, account) = (esc(&action), esc(account));
    match (&row.action, row.ticket_id) {
        (Action::Create(_), _) => {
            let files = if row.attachments > 0 {
                format!(", {} attachment(s)", row.attachments)
            } else {
                String::new()
            };
            format!("{action} in {account}{files}")
        }
        (Action::Book(_), Some(id)) => format!("{action} for ticket {id} in {account}"),
        (_, Some(id)) => format!(
            "{action} ticket {id} in {account} ({} → {})",
            esc(row.from_state.as_deref().unwrap_or("?")),
            esc(row.expected_state.as_deref().unwrap_or("?"))
        ),
        (_, None) => format!("{action} in {account}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(error: Option<anyhow::Error>) -> SyncReport {
        SyncReport {
            account: "sim-1".into(),
            sweeps: 1,
            pages: 2,
            api_calls: 2,
            unreached: 0,
            seen: 120,
            counts: Default::default(),
            elapsed: std::time::Duration::from_millis(420),
            error,
        }
    }

    #[test]
    fn a_sync_reads_as_one_line_with_server_text_escaped() {
        assert_eq!(
            report(None).to_string(),
            "sim-1: ok: 120 open (0 new, 0 changed, 0 left), 2 pages, 2 API calls, 0.4 s"
        );
        let failed = report(Some(
            anyhow::anyhow!("HTTP 500: \x1b[2Jvirhe").context("account sim-1: ilmoitukset/selaa"),
        ));
        assert_eq!(
            failed.to_string(),
            "sim-1: FAILED after 2 API calls: ilmoitukset/selaa: HTTP 500: \\x1b[2Jvirhe"
        );
        assert_eq!(count(1, "page", "pages"), "1 page");
    }
}
