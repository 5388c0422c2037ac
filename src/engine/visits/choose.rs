//! What to book for a ticket: the first `[[slotti.rules]]` entry that matches its
//! [`TicketFacts`] decides the service and the technicians ([`choose`]). The `[slotti]` section
//! itself is read and validated by the config (`crate::config`, section `slotti`).

use crate::config::{Rule, SlottiConfig};

/// What [`choose`] looks at in a ticket.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TicketFacts {
    pub account: String,
    pub urgency: Option<String>,
    pub fault_class: Option<String>,
    pub cost_centre: Option<String>,
}

/// What to book for a ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// A service name or guid.
    pub service: String,
    /// Resource names or guids; empty: any technician.
    pub technicians: Vec<String>,
    /// The index of the rule that matched; `None`: no rule did (`auto_book` books only tickets
    /// that match a rule).
    pub rule: Option<usize>,
}

impl Rule {
    /// Every field the rule gives equals the ticket's (ignoring case and surrounding spaces).
    pub fn matches(&self, t: &TicketFacts) -> bool {
        fn eq(want: &Option<String>, have: Option<&str>) -> bool {
            match want {
                None => true,
                Some(w) => have.is_some_and(|h| h.trim().eq_ignore_ascii_case(w.trim())),
            }
        }
        eq(&self.account, Some(&t.account))
            && eq(&self.urgency, t.urgency.as_deref())
            && eq(&self.fault_class, t.fault_class.as_deref())
            && eq(&self.cost_centre, t.cost_centre.as_deref())
    }
}

/// The first rule that matches the ticket decides; without one, `default_service` with any
/// technician.
pub fn choose(config: &SlottiConfig, ticket: &TicketFacts) -> Choice {
    match config
        .rules
        .iter()
        .enumerate()
        .find(|(_, r)| r.matches(ticket))
    {
        Some((i, r)) => Choice {
            service: r
                .service
                .clone()
                .unwrap_or_else(|| config.default_service.clone()),
            technicians: r.technicians.clone(),
            rule: Some(i),
        },
        None => Choice {
            service: config.default_service.clone(),
            technicians: Vec::new(),
            rule: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load() -> SlottiConfig {
        let text = r#"
            [tampuuri]
            base_url = "http://127.0.0.1:1/v10/api"
            api_key = "k"
            customer_name = "C"
            [[accounts]]
            name = "as-oy-a"
            username = "u"
            password = "p"
            contractor_id = 4711
            [slotti]
            booking_account = "huoltosim"
            api_key = "slotti-key"
            default_service = "Huoltokäynti 30 min"
        "#;
        let path = std::path::Path::new("/etc/huoltosync/config.toml");
        crate::config::Config::from_table(text.parse().unwrap(), path)
            .unwrap()
            .config
            .slotti
            .unwrap()
    }

    fn rule(
        account: &str,
        urgency: &str,
        fault: &str,
        centre: &str,
        service: &str,
        techs: &[&str],
    ) -> Rule {
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        Rule {
            account: opt(account),
            urgency: opt(urgency),
            fault_class: opt(fault),
            cost_centre: opt(centre),
            service: opt(service),
            technicians: techs.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn the_first_matching_rule_chooses_else_the_default_service_and_anyone() {
        let mut c = load();
        c.rules = vec![
            rule(
                "as-oy-a",
                "Kiireellinen",
                "",
                "",
                "Huoltokäynti 60 min",
                &["Asentaja 1"],
            ),
            rule("", "", "Sähkö", "", "", &["Asentaja 2", "Asentaja 3"]),
            rule("", "", "", "120", "Huoltokäynti 60 min", &[]),
            rule("as-oy-a", "", "", "", "", &[]),
        ];
        let facts = |a: &str, u: &str, f: &str, c: &str| TicketFacts {
            account: a.into(),
            urgency: (!u.is_empty()).then(|| u.into()),
            fault_class: (!f.is_empty()).then(|| f.into()),
            cost_centre: (!c.is_empty()).then(|| c.into()),
        };
        // (ticket, service, technicians, rule)
        let table: Vec<(TicketFacts, &str, &[&str], Option<usize>)> = vec![
            (
                facts("as-oy-a", "Kiireellinen", "Sähkö", "120"),
                "Huoltokäynti 60 min",
                &["Asentaja 1"],
                Some(0),
            ),
            (
                facts("as-oy-a", " kiireellinen ", "", ""),
                "Huoltokäynti 60 min",
                &["Asentaja 1"],
                Some(0),
            ),
            (
                facts("as-oy-b", "Kiireellinen", "Sähkö", ""),
                "Huoltokäynti 30 min",
                &["Asentaja 2", "Asentaja 3"],
                Some(1),
            ),
            (
                facts("as-oy-b", "", "LVI", "120"),
                "Huoltokäynti 60 min",
                &[],
                Some(2),
            ),
            (
                facts("as-oy-a", "Normaali", "LVI", "7"),
                "Huoltokäynti 30 min",
                &[],
                Some(3),
            ),
            (
                facts("as-oy-b", "Normaali", "", ""),
                "Huoltokäynti 30 min",
                &[],
                None,
            ),
        ];
        for (t, service, techs, rule) in table {
            let got = choose(&c, &t);
            assert_eq!(
                (
                    got.service.as_str(),
                    got.technicians
                        .iter()
                        .map(String::as_str)
                        .collect::<Vec<_>>(),
                    got.rule
                ),
                (service, techs.to_vec(), rule),
                "{t:?}"
            );
        }
        // A rule with no condition matches every ticket.
        c.rules = vec![Rule::default()];
        assert_eq!(choose(&c, &facts("x", "", "", "")).rule, Some(0));
    }
}
