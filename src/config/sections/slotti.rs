//! `[slotti]`: where the contractor's Slotti calendar is, its API key, what to book for which
//! ticket (`[[slotti.rules]]`), the messages Tampuuri gets (`[slotti.messages]`) and the
//! webhook deliveries (`[slotti.webhook]`), read by the config's one [`Reader`]; every problem
//! is reported by its key (`slotti.horizon_days`, `slotti.rules[1].technicians`). Defaults and
//! bounds are in `keys::slotti`. Which rule decides for a ticket is Slotti's
//! (`crate::engine::visits::choose::choose`).

use secrecy::SecretString;
use toml::Table;

use crate::config::keys::slotti as k;
use crate::config::reader::{Reader, join};
use crate::service::schedule::Schedule;

/// The placeholders a `[slotti.messages]` template may use: the visit's day (`ti 7.4.`), its
/// start and end (`9.00`, `9.30`, `klo H.MM` in `[slotti] timezone`) and the technician's name.
pub const PLACEHOLDERS: [&str; 4] = ["paiva", "alku", "loppu", "asentaja"];

/// `[slotti]`, when the section is present.
#[derive(Debug, Clone)]
pub struct SlottiConfig {
    /// The Slotti origin (and path prefix), ending in `/`.
    pub base_url: reqwest::Url,
    /// The booking page's account (`{tili}` in `booking/{tili}/api/v2/`).
    pub booking_account: String,
    /// The Slotti API key (Basic user name on `api/v1/`); empty when loaded without secrets.
    pub api_key: SecretString,
    pub timezone: chrono_tz::Tz,
    pub horizon_days: u32,
    pub lead_hours: u32,
    /// The service booked when no rule names one: a name or a guid.
    pub default_service: String,
    /// Book the first free slot for every new ticket matching a rule.
    pub auto_book: bool,
    /// When the daemon reconciles `GET bookings` over the horizon (in `[schedule] timezone`).
    pub reconcile: Schedule,
    /// The longest `Retry-After` a Slotti call waits; a longer one fails the call.
    pub max_retry_after: std::time::Duration,
    pub messages: Messages,
    pub webhook: SlottiWebhook,
    pub rules: Vec<Rule>,
}

/// `[slotti.messages]`: templates with [`PLACEHOLDERS`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Messages {
    pub booked: String,
    pub moved: String,
    pub cancelled: String,
}

/// `[slotti.webhook]`.
#[derive(Debug, Clone)]
pub struct SlottiWebhook {
    /// Served on the `[webhook]` listener; never `[webhook] path`. No trailing `/`.
    pub path: String,
    /// The URL Slotti delivers to (`slotti webhook register` without `--url`).
    pub public_url: Option<reqwest::Url>,
    /// The HMAC-SHA256 secret of `X-Slotti-Digest`.
    pub secret: Option<SecretString>,
    pub basic_user: Option<String>,
    pub basic_password: Option<SecretString>,
}

/// One `[[slotti.rules]]` entry: a ticket whose facts match every given field gets `service`
/// (or `default_service`) with one of `technicians` (or anyone).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rule {
    pub account: Option<String>,
    /// Tampuuri's Kiireellisyys.
    pub urgency: Option<String>,
    /// Tampuuri's Vikaluokka.
    pub fault_class: Option<String>,
    pub cost_centre: Option<String>,
    /// A service name or guid.
    pub service: Option<String>,
    /// Resource names or guids; empty: any technician.
    pub technicians: Vec<String>,
}

/// Why `template` cannot be a message: an unknown placeholder or an unclosed `{`. `{{` and
/// `}}` stand for literal braces.
pub fn check_template(template: &str) -> Result<(), String> {
    let mut rest = template;
    while let Some(i) = rest.find(['{', '}']) {
        let after = &rest[i + 1..];
        if rest[i..].starts_with("{{") || rest[i..].starts_with("}}") {
            rest = &after[1..];
            continue;
        }
        if rest[i..].starts_with('}') {
            return Err("has a } without its { (write }} for a literal brace)".into());
        }
        let Some(end) = after.find('}') else {
            return Err("has a { without its } (write {{ for a literal brace)".into());
        };
        let name = &after[..end];
        if !PLACEHOLDERS.contains(&name) {
            return Err(format!(
                "has an unknown placeholder {{{name}}}: use {}",
                PLACEHOLDERS.map(|p| format!("{{{p}}}")).join(", ")
            ));
        }
        rest = &after[end + 1..];
    }
    Ok(())
}

/// The problems of rules naming accounts that `[[accounts]]` does not have, by key.
pub fn unknown_accounts(config: &SlottiConfig, accounts: &[String]) -> Vec<(String, String)> {
    config
        .rules
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            let a = r.account.as_ref()?;
            (!accounts.iter().any(|n| n == a)).then(|| {
                (
                    format!("slotti.rules[{i}].account"),
                    format!("{a:?} is not the name of an [[accounts]] entry"),
                )
            })
        })
        .collect()
}

impl Reader {
    /// `[slotti]`: `None` when absent or invalid (each problem reported by key). `webhook_path`
    /// is `[webhook] path`, which `[slotti.webhook] path` must not equal; `zone` is
    /// `[schedule] timezone`, the zone of `reconcile`.
    pub(in crate::config) fn slotti(
        &mut self,
        root: &mut Table,
        webhook_path: Option<&str>,
        zone: chrono_tz::Tz,
    ) -> Option<SlottiConfig> {
        let p = k::SECTION;
        let mut t = self.table(root, "", p)?;
        let before = self.errors.len();
        let base_url = self.plain_url(&mut t, p, "base_url", Some(k::BASE_URL.default), true);
        let booking_account = self.string(&mut t, p, "booking_account");
        if booking_account.is_none() && !self.has_error(&join(p, "booking_account")) {
            self.error(
                &join(p, "booking_account"),
                "missing: the {tili} of the booking page's address",
            );
        }
        if let Some(a) = &booking_account
            && !a
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            self.error(
                &join(p, "booking_account"),
                &format!("{a:?} must be one path segment: letters, digits, -, _ and . only"),
            );
        }
        let api_key = self.slotti_key(&mut t);
        let tz_name = self.text(&mut t, p, &k::TIMEZONE);
        let timezone = tz_name.parse::<chrono_tz::Tz>().unwrap_or_else(|_| {
            self.error(
                &join(p, k::TIMEZONE.name),
                &format!("{tz_name:?} is not an IANA time zone name like \"Europe/Helsinki\""),
            );
            crate::service::schedule::DEFAULT_ZONE
        });
        let horizon_days = self.int(&mut t, p, &k::HORIZON_DAYS) as u32;
        let lead_hours = self.int(&mut t, p, &k::LEAD_HOURS) as u32;
        let default_service = self.string(&mut t, p, "default_service");
        if default_service.is_none() && !self.has_error(&join(p, "default_service")) {
            self.error(
                &join(p, "default_service"),
                "missing: the Slotti service to book (its name or guid)",
            );
        }
        let auto_book = self.flag(&mut t, p, &k::AUTO_BOOK);
        let reconcile_expr = self.text(&mut t, p, &k::RECONCILE);
        let reconcile = Schedule::parse(&reconcile_expr, zone)
            .map_err(|e| self.error(&join(p, k::RECONCILE.name), &e))
            .ok();
        let max_retry_after = self.int(&mut t, p, &k::MAX_RETRY_AFTER_SECS) as u64;
        let messages = self.messages(&mut t);
        let webhook = self.slotti_webhook(&mut t, webhook_path);
        let rules = self.rules(&mut t);
        self.finish(t, p);
        if self.errors.len() > before {
            return None;
        }
        Some(SlottiConfig {
            base_url: base_url?,
            booking_account: booking_account?,
            api_key: api_key?,
            timezone,
            horizon_days,
            lead_hours,
            default_service: default_service?,
            auto_book,
            reconcile: reconcile?,
            max_retry_after: std::time::Duration::from_secs(max_retry_after),
            messages,
            webhook,
            rules,
        })
    }

    /// `[slotti] api_key` (`_file`, `_env`): required, and fit for an HTTP header.
    fn slotti_key(&mut self, t: &mut Table) -> Option<SecretString> {
        let p = k::SECTION;
        let key_given = ["api_key", "api_key_file", "api_key_env"]
            .iter()
            .any(|k| t.contains_key(*k));
        let api_key = self.secret(t, p, "api_key");
        if api_key.is_none() && !key_given {
            self.error(
                &join(p, "api_key"),
                "missing: give api_key, api_key_file or api_key_env",
            );
        }
        if let Some(key) = &api_key
            && reqwest::header::HeaderValue::from_str(secrecy::ExposeSecret::expose_secret(key))
                .is_err()
        {
            self.error(
                &join(p, "api_key"),
                "holds a character an HTTP header cannot carry (a control character such as a newline inside the value)",
            );
        }
        api_key
    }

    /// `[slotti.messages]`
    fn messages(&mut self, slotti: &mut Table) -> Messages {
        use k::messages::*;
        let mut t = self
            .table(slotti, k::SECTION, "messages")
            .unwrap_or_default();
        let mut one = |r: &mut Self, key: &crate::config::keys::Text| {
            let text = r.text(&mut t, SECTION, key);
            if let Err(why) = check_template(&text) {
                r.error(&join(SECTION, key.name), &why);
            }
            text
        };
        let messages = Messages {
            booked: one(self, &BOOKED),
            moved: one(self, &MOVED),
            cancelled: one(self, &CANCELLED),
        };
        self.finish(t, SECTION);
        messages
    }

    /// `[slotti.webhook]`
    fn slotti_webhook(&mut self, slotti: &mut Table, listener_path: Option<&str>) -> SlottiWebhook {
        use k::webhook::*;
        let mut t = self
            .table(slotti, k::SECTION, "webhook")
            .unwrap_or_default();
        let path = self.text(&mut t, SECTION, &PATH);
        if let Err(why) = crate::config::check_webhook_path(&path) {
            self.error(&join(SECTION, PATH.name), &format!("{path:?} {why}"));
        }
        let path = path.trim_end_matches('/').to_owned();
        if listener_path.is_some_and(|l| l.trim_end_matches('/') == path) {
            self.error(
                &join(SECTION, PATH.name),
                &format!(
                    "{path:?} is also [webhook] path: give Slotti's deliveries a path of their own"
                ),
            );
        }
        let public_url = self.plain_url(&mut t, SECTION, "public_url", None, false);
        let secret = self.secret(&mut t, SECTION, "secret");
        let basic_user = self.string(&mut t, SECTION, "basic_user");
        let basic_password = self.secret(&mut t, SECTION, "basic_password");
        if basic_user.is_some() != basic_password.is_some() {
            self.error(
                &join(SECTION, "basic_user"),
                "give both basic_user and basic_password (or neither)",
            );
        }
        self.finish(t, SECTION);
        SlottiWebhook {
            path,
            public_url,
            secret,
            basic_user,
            basic_password,
        }
    }

    /// `[[slotti.rules]]`
    fn rules(&mut self, slotti: &mut Table) -> Vec<Rule> {
        let mut out = Vec::new();
        for (p, mut t) in self.tables(slotti, k::SECTION, "rules") {
            let rule = Rule {
                account: self.string(&mut t, &p, "account"),
                urgency: self.string(&mut t, &p, "urgency"),
                fault_class: self.string(&mut t, &p, "fault_class"),
                cost_centre: self.string(&mut t, &p, "cost_centre"),
                service: self.string(&mut t, &p, "service"),
                technicians: self.strings(&mut t, &p, "technicians"),
            };
            self.finish(t, &p);
            out.push(rule);
        }
        out
    }

    /// An http(s) URL without `?query` or `#fragment`; a `base` ends in `/` (a missing
    /// trailing slash is added).
    fn plain_url(
        &mut self,
        t: &mut Table,
        prefix: &str,
        key: &str,
        default: Option<&str>,
        base: bool,
    ) -> Option<reqwest::Url> {
        let mut u = self.web_url(t, prefix, key, default)?;
        if u.query().is_some() || u.fragment().is_some() {
            self.error(
                &join(prefix, key),
                &format!("{:?} must have no ?query or #fragment", u.as_str()),
            );
            return None;
        }
        if base && !u.path().ends_with('/') {
            let path = format!("{}/", u.path());
            u.set_path(&path);
        }
        Some(u)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    pub(crate) fn load(text: &str) -> Result<SlottiConfig, Vec<(String, String)>> {
        let mut root: Table = text.parse().unwrap();
        let mut r = Reader::new(Path::new("/nonexistent/config.toml"), true);
        let c = r.slotti(
            &mut root,
            Some("/tampuuri/webhook"),
            crate::service::schedule::DEFAULT_ZONE,
        );
        match c {
            Some(c) if r.errors.is_empty() => Ok(c),
            _ => Err(r.errors.into_iter().map(|i| (i.key, i.message)).collect()),
        }
    }

    const MINIMAL: &str = r#"
        [slotti]
        booking_account = "huoltosim"
        api_key = "slotti-key"
        default_service = "Huoltokäynti 30 min"
    "#;

    #[test]
    fn a_minimal_section_gets_the_defaults() {
        let c = load(MINIMAL).unwrap();
        assert_eq!(c.base_url.as_str(), "https://slotti.fi/");
        assert_eq!(c.timezone, chrono_tz::Europe::Helsinki);
        assert_eq!((c.horizon_days, c.lead_hours, c.auto_book), (14, 24, false));
        assert_eq!(c.webhook.path, "/slotti/webhook");
        assert_eq!(
            c.messages.booked,
            "Huoltokäynti varattu {paiva} klo {alku}–{loppu}."
        );
        assert!(c.rules.is_empty());
    }

    #[test]
    fn each_bad_key_is_named() {
        let table: &[(&str, &[&str])] = &[
            (
                "[slotti]\napi_key = \"k\"",
                &["slotti.booking_account", "slotti.default_service"],
            ),
            (
                "[slotti]\nbooking_account = \"a\"\ndefault_service = \"s\"",
                &["slotti.api_key"],
            ),
            ("timezone = \"Mars/Olympus\"", &["slotti.timezone"]),
            ("horizon_days = 91", &["slotti.horizon_days"]),
            ("horizon_days = \"14\"", &["slotti.horizon_days"]),
            ("lead_hours = -1", &["slotti.lead_hours"]),
            ("auto_book = 1", &["slotti.auto_book"]),
            ("base_url = \"ftp://slotti.fi\"", &["slotti.base_url"]),
            ("reconcile = \"every hour\"", &["slotti.reconcile"]),
            ("bogus = 1", &["slotti.bogus"]),
            ("booking_account2 = \"x\"", &["slotti.booking_account2"]),
            (
                "[slotti.messages]\nbooked = \"{paiva} {kello}\"",
                &["slotti.messages.booked"],
            ),
            (
                "[slotti.messages]\nmoved = \"klo {alku\"",
                &["slotti.messages.moved"],
            ),
            ("[slotti.messages]\nlisa = \"x\"", &["slotti.messages.lisa"]),
            (
                "[slotti.webhook]\npath = \"/tampuuri/webhook\"",
                &["slotti.webhook.path"],
            ),
            (
                "[slotti.webhook]\npath = \"slotti\"",
                &["slotti.webhook.path"],
            ),
            (
                "[slotti.webhook]\nbasic_user = \"u\"",
                &["slotti.webhook.basic_user"],
            ),
            (
                "[slotti.webhook]\npublic_url = \"nope\"",
                &["slotti.webhook.public_url"],
            ),
            (
                "[[slotti.rules]]\ntechnicians = \"Asentaja 1\"",
                &["slotti.rules[0].technicians"],
            ),
            (
                "[[slotti.rules]]\nurgency = 3",
                &["slotti.rules[0].urgency"],
            ),
            (
                "[[slotti.rules]]\nservice = \"s\"\n[[slotti.rules]]\nkiireellisyys = \"x\"",
                &["slotti.rules[1].kiireellisyys"],
            ),
        ];
        for (extra, want) in table {
            let text = if extra.starts_with("[slotti]") {
                extra.to_string()
            } else if extra.starts_with('[') {
                format!("{MINIMAL}\n{extra}")
            } else {
                MINIMAL.replace("[slotti]", &format!("[slotti]\n{extra}"))
            };
            let keys: Vec<String> = load(&text)
                .unwrap_err()
                .into_iter()
                .map(|(k, _)| k)
                .collect();
            assert_eq!(&keys, want, "{extra}");
        }
    }

    #[test]
    fn templates_take_the_four_placeholders_and_doubled_braces() {
        for ok in [
            "Huoltokäynti varattu {paiva} klo {alku}–{loppu}, asentaja {asentaja}.",
            "ilman paikkamerkkejä",
            "{{ei paikka}} {paiva}",
        ] {
            assert_eq!(check_template(ok), Ok(()), "{ok}");
        }
        for bad in ["{aika}", "{paiva", "}", "{}", "{ paiva }"] {
            assert!(check_template(bad).is_err(), "{bad}");
        }
        assert!(check_template("{aika}").unwrap_err().contains("{aika}"));
    }

    #[test]
    fn rules_naming_an_unknown_account_are_found() {
        let mut c = load(MINIMAL).unwrap();
        let rule = |a: &str| Rule {
            account: Some(a.to_owned()),
            ..Rule::default()
        };
        c.rules = vec![rule("a"), rule("b")];
        let found = unknown_accounts(&c, &["a".into()]);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, "slotti.rules[1].account");
    }

    #[test]
    fn the_base_url_tolerates_a_trailing_slash_and_keeps_its_path() {
        for (given, want) in [
            ("http://127.0.0.1:5/slotti", "http://127.0.0.1:5/slotti/"),
            ("http://127.0.0.1:5/slotti/", "http://127.0.0.1:5/slotti/"),
            ("https://dev.slotti.fi", "https://dev.slotti.fi/"),
        ] {
            let c = load(&MINIMAL.replace("[slotti]", &format!("[slotti]\nbase_url = {given:?}")))
                .unwrap();
            assert_eq!(c.base_url.as_str(), want);
        }
    }

    #[test]
    fn the_example_section_uncommented_is_valid() {
        // Its keys and defaults are held against the example by `keys`' test.
        const EXAMPLE: &str = include_str!("../../../config.example.toml");
        for header in [
            "[slotti]",
            "[slotti.messages]",
            "[slotti.webhook]",
            "[[slotti.rules]]",
        ] {
            assert!(EXAMPLE.contains(&format!("\n# {header}\n")), "{header}");
        }
        let section: String = EXAMPLE
            .lines()
            .skip_while(|l| *l != "# [slotti]")
            .take_while(|l| l.starts_with('#'))
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| {
                l.starts_with('[')
                    || l.split_once(" = ").is_some_and(|(k, _)| {
                        k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                    })
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let section = section
            .replace("api_key_file", "api_key")
            .replace("secret_file", "secret")
            .replace("basic_password_file", "basic_password");
        let c = load(&section).unwrap_or_else(|e| panic!("{e:?}\n{section}"));
        assert_eq!(c.rules.len(), 1);
        assert_eq!(c.rules[0].technicians, ["Asentaja 1", "Asentaja 2"]);
    }
}
