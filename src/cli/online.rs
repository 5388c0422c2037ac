//! `check-config --online`: the first-contact report. With as few calls as it takes (one
//! `selaa` per account, one more per extra state when `Tila` is asked one state at a time), it
//! checks the credentials and the contractor id, and tells what the server really does: where
//! the envelope keeps its total, the page size it serves, whether `Tila` takes a list, how
//! states and dates arrive, and which ticket fields the mirror does not read.
//!
//! The calls are billed like any other, so they are metered into the store's `api_calls` when
//! the store exists. When it does not, they are only reported: a check must not create the
//! service's database (perhaps as another user than the service's).

use std::collections::{BTreeMap, BTreeSet};

use crate::config::{AccountConfig, Config, StateFilter};
use crate::store::Handle;
use crate::tampuuri::{self, Api, ApiError, Client, Page, Query, StateAs, TicketShape};

/// Server text made safe for a terminal (see [`super::escape`]).
fn shown_esc(s: &str) -> String {
    super::esc(s).to_string()
}

/// Probes every account and prints what it learned; answers whether every account worked.
pub async fn report(config: &Config) -> anyhow::Result<bool> {
    let api = Api::new(config)?;
    let mut ok = true;
    for account in &config.accounts {
        let client = api.client(account)?;
        let lines = match probe(config, account, &client).await {
            Ok(lines) => lines,
            Err(e) => {
                ok = false;
                vec![format!("FAILED: {}", super::esc(&e.to_string()))]
            }
        };
        let n = client.unrecorded_calls();
        let metered = if config.store.path.exists() {
            let recorded = match Handle::open(config.store.path.clone()).await {
                Ok(store) => client.meter().record(&store).await,
                Err(e) => Err(e),
            };
            recorded
                .map(|_| "metered in the store".to_owned())
                .unwrap_or_else(|e| format!("NOT metered: {e:#}"))
        } else {
            format!(
                "not metered: no store yet at {}",
                config.store.path.display()
            )
        };
        outln!("  {}: {}", account.name, lines[0])?;
        for line in &lines[1..] {
            outln!("    {line}")?;
        }
        outln!("    calls made: {n} ({metered})")?;
    }
    Ok(ok)
}

/// The report lines of one account; the first says whether the credentials work.
async fn probe(
    config: &Config,
    account: &AccountConfig,
    client: &Client,
) -> Result<Vec<String>, ApiError> {
    let asked = config.tampuuri.page_size;
    let mut notes = Vec::new();
    // The first call asks a full page: it costs one call like `Limit 1` would, and shows the
    // page size the server really serves and what the tickets look like.
    let (first, rest): (Vec<String>, &[String]) = match account.state_filter {
        StateFilter::List => (account.states.clone(), &[]),
        StateFilter::PerState => (account.states[..1].to_vec(), &account.states[1..]),
    };
    let (page, mut rest) = match client
        .list_open(&Query::of(account, &first, asked), 0)
        .await
    {
        Ok(page) => {
            if account.state_filter == StateFilter::List {
                notes.push(list_note(account, &page));
            } else {
                notes.push(
                    "Tila list: not tried (state_filter = \"per_state\": one sweep per state)"
                        .into(),
                );
            }
            (page, rest.to_vec())
        }
        Err(ApiError::Rejected {
            status, message, ..
        }) if account.state_filter == StateFilter::List => {
            notes.push(format!(
                "Tila list: refused (HTTP {status}: {}): set state_filter = \"per_state\" for this account",
                shown_esc(&message)
            ));
            let page = client
                .list_open(&Query::of(account, &first[..1], asked), 0)
                .await?;
            (page, first[1..].to_vec())
        }
        Err(e) => return Err(e),
    };
    let mut open = page.total;
    let mut counted = true;
    for state in rest.drain(..) {
        let p = client
            .list_open(&Query::of(account, &[state], 1), 0)
            .await?;
        match (open, p.total) {
            (Some(sum), Some(t)) => open = Some(sum + t),
            _ => counted = false,
        }
    }
    let headline = match open.filter(|_| counted) {
        Some(0) => format!(
            "credentials work; warning: 0 unfinished tickets are assigned to contractor_id {} (is it our työnsuorittaja id in this account?)",
            account.contractor_id
        ),
        Some(n) => format!(
            "credentials work; {n} unfinished tickets are assigned to contractor_id {}",
            account.contractor_id
        ),
        None => format!(
            "credentials work; the number of unfinished tickets for contractor_id {} is unknown (no Total); {} on the first page",
            account.contractor_id,
            page.items.len()
        ),
    };
    let mut lines = vec![headline];
    lines.push(format!("envelope: {}", page.total_at));
    lines.push(page_size_line(&page, asked));
    lines.extend(notes);
    lines.extend(ticket_lines(&page));
    Ok(lines)
}

/// Whether the server took `Tila` as a list, as far as the listed tickets tell.
fn list_note(account: &AccountConfig, page: &Page) -> String {
    let outside: BTreeSet<String> = page
        .items
        .iter()
        .map(|t| t.state.name().to_owned())
        .filter(|s| !account.states.iter().any(|a| a.eq_ignore_ascii_case(s)))
        .collect();
    if page.items.is_empty() {
        "Tila list: accepted (no tickets listed to confirm the filter)".into()
    } else if outside.is_empty() {
        "Tila list: accepted, and the listed tickets are all in the states asked".into()
    } else {
        format!(
            "Tila list: accepted, but tickets in other states were listed ({}): the server may ignore it; sweeps leave such tickets out, and state_filter = \"per_state\" may filter better",
            shown_esc(&outside.into_iter().collect::<Vec<_>>().join(", "))
        )
    }
}

/// The page size the server really serves, from one page asked at `asked`.
fn page_size_line(page: &Page, asked: u32) -> String {
    let n = page.items.len() as u64;
    let asked = u64::from(asked);
    match (page.total, page.limit) {
        (Some(total), _) if n < total && n < asked => format!(
            "page size: {n} (asked {asked}): the server serves fewer than asked; sweeps page by {n}, {} calls a poll for {total} tickets",
            total.div_ceil(n.max(1))
        ),
        (Some(total), _) if n < total => format!("page size: {n} (asked {asked})"),
        (_, Some(limit)) if limit < asked => {
            format!("page size: {limit} (asked {asked}; the server echoed Limit {limit})")
        }
        (Some(total), _) => {
            format!("page size: at least {n} (asked {asked}; all {total} tickets fit on one page)")
        }
        (None, _) if n >= asked => format!("page size: {asked} (asked {asked})"),
        (None, _) => format!(
            "page size: unknown ({n} on the first page, asked {asked}, no Total to tell a short list from a capped page)"
        ),
    }
}

/// How states and dates arrive, and the ticket fields the mirror does not read.
fn ticket_lines(page: &Page) -> Vec<String> {
    let shapes: Vec<TicketShape> = page
        .items
        .iter()
        .filter_map(tampuuri::ticket_shape)
        .collect();
    if shapes.is_empty() {
        return vec![
            "tickets: none listed, so nothing learned about states, dates or fields".into(),
        ];
    }
    let states: BTreeSet<&StateAs> = shapes.iter().filter_map(|s| s.state.as_ref()).collect();
    let names: Vec<String> = states
        .iter()
        .filter_map(|s| match s {
            StateAs::Name(n) => Some(shown_esc(n)),
            StateAs::Number(_) => None,
        })
        .collect();
    let numbers: Vec<String> = states
        .iter()
        .filter_map(|s| match s {
            StateAs::Number(n) => Some(n.to_string()),
            StateAs::Name(_) => None,
        })
        .collect();
    let missing = shapes.iter().filter(|s| s.state.is_none()).count();
    let mut state_line = match (names.is_empty(), numbers.is_empty()) {
        (false, true) => format!("states: as names ({})", names.join(", ")),
        (true, false) => format!(
            "states: as numbers ({}; read as 1 Avoin, 2 Vastaanotettu, 3 Odottaa, 4 Tehty, 5 Valmis)",
            numbers.join(", ")
        ),
        (false, false) => format!(
            "states: mixed, names ({}) and numbers ({})",
            names.join(", "),
            numbers.join(", ")
        ),
        (true, true) => "states: none given".into(),
    };
    if missing > 0 {
        state_line.push_str(&format!("; {missing} ticket(s) without a state"));
    }
    // Each form once, with the first example of it.
    let mut dates: BTreeMap<&str, &str> = BTreeMap::new();
    for d in shapes.iter().flat_map(|s| s.dates.iter()) {
        dates.entry(date_format(d)).or_insert(d);
    }
    let date_line = if dates.is_empty() {
        "dates: no Luotu or Muokattu seen".to_owned()
    } else {
        let forms: Vec<String> = dates
            .into_iter()
            .map(|(form, d)| {
                let example: String = d.chars().take(40).collect();
                format!("{form}, e.g. {}", shown_esc(&example))
            })
            .collect();
        format!("dates: {}", forms.join("; "))
    };
    let unknown: BTreeSet<&String> = shapes.iter().flat_map(|s| &s.unknown_fields).collect();
    let fields_line = if unknown.is_empty() {
        "ticket fields the mirror does not read: none".to_owned()
    } else {
        format!(
            "ticket fields the mirror does not read (kept in raw_json): {}",
            unknown
                .into_iter()
                .map(|f| shown_esc(f))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    vec![state_line, date_line, fields_line]
}

/// The form of one date.
fn date_format(d: &str) -> &'static str {
    if chrono::DateTime::parse_from_rfc3339(d).is_ok() {
        "ISO 8601 with a UTC offset"
    } else if chrono::NaiveDateTime::parse_from_str(d, "%Y-%m-%dT%H:%M:%S%.f").is_ok() {
        "ISO 8601 without an offset (time zone not stated)"
    } else if chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").is_ok() {
        "a date without a time"
    } else {
        "not ISO 8601"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(body: &str) -> Page {
        tampuuri::parse_page(body.as_bytes()).unwrap()
    }

    fn items(n: usize) -> String {
        (1..=n)
            .map(|i| format!(r#"{{"Id":{i}}}"#))
            .collect::<Vec<_>>()
            .join(",")
    }

    #[test]
    fn the_page_size_line_tells_what_the_server_serves() {
        for (body, expected) in [
            (
                format!(r#"{{"Total":600,"Limit":100,"Items":[{}]}}"#, items(100)),
                "page size: 100 (asked 250): the server serves fewer than asked; sweeps page by 100, 6 calls a poll for 600 tickets",
            ),
            (
                format!(r#"{{"Total":600,"Items":[{}]}}"#, items(250)),
                "page size: 250 (asked 250)",
            ),
            (
                format!(r#"{{"Limit":100,"Items":[{}]}}"#, items(100)),
                "page size: 100 (asked 250; the server echoed Limit 100)",
            ),
            (
                format!(r#"{{"Total":3,"Items":[{}]}}"#, items(3)),
                "page size: at least 3 (asked 250; all 3 tickets fit on one page)",
            ),
            (
                format!(r#"[{}]"#, items(7)),
                "page size: unknown (7 on the first page, asked 250, no Total to tell a short list from a capped page)",
            ),
        ] {
            assert_eq!(page_size_line(&page(&body), 250), expected, "{body}");
        }
    }

    #[test]
    fn ticket_lines_tell_states_dates_and_unknown_fields() {
        let p = page(
            r#"{"Items":[
                {"Id":1,"Tila":"Avoin","Luotu":"2025-04-20T00:37:45.8617613+03:00","Kohde":"Tie 1"},
                {"Id":2,"Tila":"Odottaa","Luotu":"2025-04-20T00:37:45","Uusi\u001b[2J":1},
                {"Id":3,"Tila":null}]}"#,
        );
        let lines = ticket_lines(&p);
        assert_eq!(
            lines[0],
            "states: as names (Avoin, Odottaa); 1 ticket(s) without a state"
        );
        assert!(
            lines[1].contains("ISO 8601 with a UTC offset, e.g. 2025-04-20T00:37:45.8617613+03:00")
        );
        assert!(lines[1].contains("ISO 8601 without an offset"));
        assert_eq!(
            lines[2],
            "ticket fields the mirror does not read (kept in raw_json): Uusi\\x1b[2J"
        );
        let numeric = ticket_lines(&page(r#"{"Items":[{"Id":1,"Tila":2}]}"#));
        assert!(
            numeric[0].starts_with("states: as numbers (2;"),
            "{}",
            numeric[0]
        );
    }
}
