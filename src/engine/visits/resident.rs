//! The customer of a booking: the resident who reported the ticket (its `Ilmoittaja`, as the
//! model's [`Reporter`]), with the operator's overrides (`task book --name/--phone/--email`).
//! Slotti wants a first and a last name and, by the booking page's settings, a phone number or
//! an e-mail address: without a name or any contact the booking is refused, naming the ticket
//! and what is missing.
//!
//! A name is split into first and last name so: `Sukunimi, Etunimi` (with a comma) is read last
//! name first; otherwise the last word is the last name and the words before it the first
//! name(s), as Tampuuri writes names (`Maija Meikäläinen`, `Anna-Liisa Maria Virtanen`). A
//! one-word name is the last name, with an empty first name.

use crate::domain::model::Reporter;

/// The operator's overrides of the ticket's reporter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    pub name: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
}

/// The booking's customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Customer {
    pub first_name: String,
    pub last_name: String,
    pub phone: Option<String>,
    pub email: Option<String>,
}

impl Customer {
    /// The whole name, first name first.
    pub fn name(&self) -> String {
        [self.first_name.as_str(), self.last_name.as_str()]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Why a ticket's resident cannot be booked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ticket {ticket_id} in {account}: {problem}")]
pub struct Refusal {
    pub account: String,
    pub ticket_id: i64,
    pub problem: String,
}

/// Longest name, phone or e-mail taken (Slotti's own limits are not documented).
const MAX_LEN: usize = 200;

/// The customer for a booking of ticket `ticket_id` in `account`, from its `reporter` and the
/// `overrides` (each given override replaces the reporter's value).
pub fn customer(
    account: &str,
    ticket_id: i64,
    reporter: &Reporter,
    overrides: &Overrides,
) -> Result<Customer, Refusal> {
    let refuse = |problem: String| Refusal {
        account: account.to_owned(),
        ticket_id,
        problem,
    };
    let pick = |given: &Option<String>, ticket: &Option<String>, what: &str, flag: &str| {
        let (value, from) = match given {
            Some(v) => (Some(v.as_str()), format!("--{flag}")),
            None => (ticket.as_deref(), format!("the reporter's {what}")),
        };
        match value.map(str::trim).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) if v.chars().count() > MAX_LEN => Err(refuse(format!(
                "{from} is longer than {MAX_LEN} characters"
            ))),
            Some(v) if v.chars().any(char::is_control) => {
                Err(refuse(format!("{from} has control characters")))
            }
            Some(v) => Ok(Some((v.to_owned(), from))),
        }
    };
    let name = pick(&overrides.name, &reporter.name, "name", "name")?;
    let phone = pick(&overrides.phone, &reporter.phone, "phone", "phone")?;
    let email = pick(&overrides.email, &reporter.email, "e-mail", "email")?;
    let Some((name, _)) = name else {
        return Err(refuse(
            "the resident has no name on the ticket: give --name".into(),
        ));
    };
    if let Some((p, from)) = &phone
        && !phone_ok(p)
    {
        return Err(refuse(format!("{from} {p:?} is not a phone number")));
    }
    if let Some((e, from)) = &email
        && !email_ok(e)
    {
        return Err(refuse(format!("{from} {e:?} is not an e-mail address")));
    }
    if phone.is_none() && email.is_none() {
        return Err(refuse(
            "the resident has no phone number or e-mail address on the ticket: give --phone or --email".into(),
        ));
    }
    let (first_name, last_name) = split_name(&name);
    Ok(Customer {
        first_name,
        last_name,
        phone: phone.map(|(p, _)| p),
        email: email.map(|(e, _)| e),
    })
}

/// `(first name, last name)`: see the module's doc.
pub fn split_name(name: &str) -> (String, String) {
    let words = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    if let Some((last, first)) = name.split_once(',') {
        return (words(first), words(last));
    }
    let parts: Vec<&str> = name.split_whitespace().collect();
    match parts.split_last() {
        None => (String::new(), String::new()),
        Some((last, first)) => (first.join(" "), (*last).to_owned()),
    }
}

/// A phone number: digits with `+`, spaces, `-`, `(`, `)`, and at least five digits.
fn phone_ok(p: &str) -> bool {
    p.chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '+' | ' ' | '-' | '(' | ')'))
        && p.chars().filter(char::is_ascii_digit).count() >= 5
}

/// An e-mail address: something, `@`, a domain with a dot, no spaces.
fn email_ok(e: &str) -> bool {
    match e.rsplit_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !e.chars().any(char::is_whitespace)
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reporter(name: Option<&str>, phone: Option<&str>, email: Option<&str>) -> Reporter {
        Reporter {
            name: name.map(Into::into),
            phone: phone.map(Into::into),
            email: email.map(Into::into),
        }
    }

    #[test]
    fn names_are_split_into_first_and_last() {
        for (name, first, last) in [
            ("Maija Meikäläinen", "Maija", "Meikäläinen"),
            ("Anna-Liisa Maria  Virtanen", "Anna-Liisa Maria", "Virtanen"),
            ("Virtanen, Anna-Liisa", "Anna-Liisa", "Virtanen"),
            ("Virtanen", "", "Virtanen"),
            ("  Aino  ", "", "Aino"),
        ] {
            assert_eq!(
                split_name(name),
                (first.to_owned(), last.to_owned()),
                "{name}"
            );
        }
    }

    /// `(reporter, overrides, Ok((first, last, phone, email)) or Err(what the refusal says))`.
    type Case = (
        Reporter,
        Overrides,
        Result<
            (
                &'static str,
                &'static str,
                Option<&'static str>,
                Option<&'static str>,
            ),
            &'static str,
        >,
    );

    #[test]
    fn the_customer_comes_from_the_reporter_and_the_overrides() {
        let maija = reporter(
            Some("Maija Meikäläinen"),
            Some("040 123 4567"),
            Some("maija@example.fi"),
        );
        let cases: Vec<Case> = vec![
            (
                maija.clone(),
                Overrides::default(),
                Ok((
                    "Maija",
                    "Meikäläinen",
                    Some("040 123 4567"),
                    Some("maija@example.fi"),
                )),
            ),
            // An e-mail alone, or a phone alone, is enough.
            (
                reporter(Some("Aino"), None, Some("aino@example.fi")),
                Overrides::default(),
                Ok(("", "Aino", None, Some("aino@example.fi"))),
            ),
            (
                reporter(Some("Eero Laine"), Some("+358 40 1234567"), Some("  ")),
                Overrides::default(),
                Ok(("Eero", "Laine", Some("+358 40 1234567"), None)),
            ),
            // Overrides replace what the ticket says.
            (
                maija.clone(),
                Overrides {
                    name: Some("Laine, Eero".into()),
                    phone: Some("050-7654321".into()),
                    email: None,
                },
                Ok((
                    "Eero",
                    "Laine",
                    Some("050-7654321"),
                    Some("maija@example.fi"),
                )),
            ),
            (
                reporter(None, None, None),
                Overrides {
                    name: Some("Sanna Koskinen".into()),
                    phone: None,
                    email: Some("sanna@example.fi".into()),
                },
                Ok(("Sanna", "Koskinen", None, Some("sanna@example.fi"))),
            ),
            // Refusals name the ticket and what is missing.
            (
                reporter(Some("Maija Meikäläinen"), None, None),
                Overrides::default(),
                Err(
                    "ticket 1001 in sim-1: the resident has no phone number or e-mail address on the ticket: give --phone or --email",
                ),
            ),
            (
                reporter(None, Some("040 123 4567"), None),
                Overrides::default(),
                Err("ticket 1001 in sim-1: the resident has no name on the ticket: give --name"),
            ),
            (
                maija.clone(),
                Overrides {
                    phone: Some("soita ovikelloa".into()),
                    ..Overrides::default()
                },
                Err("ticket 1001 in sim-1: --phone \"soita ovikelloa\" is not a phone number"),
            ),
            (
                reporter(Some("Maija"), None, Some("maija at example")),
                Overrides::default(),
                Err(
                    "ticket 1001 in sim-1: the reporter's e-mail \"maija at example\" is not an e-mail address",
                ),
            ),
            (
                reporter(Some("Maija\u{1b}[2J"), Some("040 123 4567"), None),
                Overrides::default(),
                Err("ticket 1001 in sim-1: the reporter's name has control characters"),
            ),
        ];
        for (i, (r, o, want)) in cases.into_iter().enumerate() {
            let got = customer("sim-1", 1001, &r, &o);
            match (got, want) {
                (Ok(c), Ok((first, last, phone, email))) => assert_eq!(
                    (
                        c.first_name.as_str(),
                        c.last_name.as_str(),
                        c.phone.as_deref(),
                        c.email.as_deref()
                    ),
                    (first, last, phone, email),
                    "case {i}"
                ),
                (Err(e), Err(says)) => assert_eq!(e.to_string(), says, "case {i}"),
                (got, want) => panic!("case {i}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn the_whole_name_reads_first_name_first() {
        let c = customer(
            "sim-1",
            1,
            &reporter(Some("Virtanen, Aino"), Some("040 123 4567"), None),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.name(), "Aino Virtanen");
    }
}
