//! `[slotti]`: where the contractor's Slotti calendar is, its API key, what to book for which
//! ticket (`[[slotti.rules]]`, decided by [`choose`]), the messages Tampuuri gets
//! (`[slotti.messages]`) and the webhook deliveries (`[slotti.webhook]`). Read by [`read`],
//! which the config loader calls with the `[slotti]` table; every problem is reported by its
//! key (`slotti.horizon_days`, `slotti.rules[1].technicians`), like every other key of the file.
//! Defaults and bounds are declared once in `crate::config::keys::slotti`.

use secrecy::SecretString;
use toml::{Table, Value};

use crate::config::keys::slotti as k;
use crate::outgoing::config::Keys;
use crate::schedule::Schedule;

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

/// Reads `[slotti]` (`value` is what the file has under `slotti`). `None` when absent or
/// invalid (each problem reported through `keys`). `webhook_path` is `[webhook] path`, which
/// `[slotti.webhook] path` must not equal; `zone` is `[schedule] timezone`, the zone of
/// `reconcile`.
pub fn read(
    value: Option<Value>,
    keys: &mut dyn Keys,
    webhook_path: Option<&str>,
    zone: chrono_tz::Tz,
) -> Option<SlottiConfig> {
    let p = k::SECTION;
    let mut t = match value? {
        Value::Table(t) => t,
        other => {
            keys.error(p, &format!("must be a table, not a {}", other.type_str()));
            return None;
        }
    };
    let mut r = Fields { keys, ok: true };
    let base_url = r.url(&mut t, p, "base_url", Some(k::BASE_URL.default), true);
    let booking_account = r.string(&mut t, p, "booking_account");
    if booking_account.is_none() {
        r.missing(
            p,
            "booking_account",
            "the {tili} of the booking page's address",
        );
    }
    if let Some(a) = &booking_account
        && !a
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        r.error(
            &format!("{p}.booking_account"),
            &format!("{a:?} must be one path segment: letters, digits, -, _ and . only"),
        );
    }
    let key_given = ["api_key", "api_key_file", "api_key_env"]
        .iter()
        .any(|k| t.contains_key(*k));
    let api_key = r.keys.secret(&mut t, p, "api_key");
    if api_key.is_none() {
        // A key given badly was reported by the secret reader.
        r.ok = false;
    }
    if api_key.is_none() && !key_given {
        r.missing(p, "api_key", "give api_key, api_key_file or api_key_env");
    }
    if let Some(key) = &api_key
        && reqwest::header::HeaderValue::from_str(secrecy::ExposeSecret::expose_secret(key))
            .is_err()
    {
        r.error(
            &format!("{p}.api_key"),
            "holds a character an HTTP header cannot carry (a control character such as a newline inside the value)",
        );
    }
    let tz_name = r
        .string(&mut t, p, k::TIMEZONE.name)
        .unwrap_or_else(|| k::TIMEZONE.default.to_owned());
    let timezone = match tz_name.parse::<chrono_tz::Tz>() {
        Ok(z) => z,
        Err(_) => {
            r.error(
                &format!("{p}.timezone"),
                &format!("{tz_name:?} is not an IANA time zone name like \"Europe/Helsinki\""),
            );
            crate::schedule::DEFAULT_ZONE
        }
    };
    let horizon_days = r.int(&mut t, p, &k::HORIZON_DAYS) as u32;
    let lead_hours = r.int(&mut t, p, &k::LEAD_HOURS) as u32;
    let default_service = r.string(&mut t, p, "default_service");
    if default_service.is_none() {
        r.missing(
            p,
            "default_service",
            "the Slotti service to book (its name or guid)",
        );
    }
    let auto_book = r.flag(&mut t, p, &k::AUTO_BOOK);
    let reconcile_expr = r
        .string(&mut t, p, k::RECONCILE.name)
        .unwrap_or_else(|| k::RECONCILE.default.to_owned());
    let reconcile = Schedule::parse(&reconcile_expr, zone)
        .map_err(|e| r.error(&format!("{p}.reconcile"), &e))
        .ok();
    let max_retry_after = r.int(&mut t, p, &k::MAX_RETRY_AFTER_SECS) as u64;
    let messages = r.messages(&mut t);
    let webhook = r.webhook(&mut t, webhook_path);
    let rules = r.rules(&mut t);
    for key in t.keys() {
        r.error(&format!("{p}.{key}"), "unknown key");
    }
    if !r.ok {
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

/// Typed values out of the `[slotti]` tables, each problem reported by key.
struct Fields<'a> {
    keys: &'a mut dyn Keys,
    /// No problem found so far.
    ok: bool,
}

impl Fields<'_> {
    fn error(&mut self, key: &str, message: &str) {
        self.ok = false;
        self.keys.error(key, message);
    }

    fn missing(&mut self, prefix: &str, key: &str, what: &str) {
        self.error(&format!("{prefix}.{key}"), &format!("missing: {what}"));
    }

    fn string(&mut self, t: &mut Table, prefix: &str, key: &str) -> Option<String> {
        match t.remove(key)? {
            Value::String(s) if !s.trim().is_empty() => Some(s),
            Value::String(_) => {
                self.error(&format!("{prefix}.{key}"), "must not be empty");
                None
            }
            other => {
                self.error(
                    &format!("{prefix}.{key}"),
                    &format!("must be a string, not a {}", other.type_str()),
                );
                None
            }
        }
    }

    fn int(&mut self, t: &mut Table, prefix: &str, key: &crate::config::keys::Int) -> i64 {
        let full = format!("{prefix}.{}", key.name);
        match t.remove(key.name) {
            None => key.default,
            Some(Value::Integer(n)) if (key.min..=key.max).contains(&n) => n,
            Some(Value::Integer(n)) => {
                self.error(
                    &full,
                    &format!(
                        "{n} is out of range: must be from {} to {}",
                        key.min, key.max
                    ),
                );
                key.default
            }
            Some(other) => {
                self.error(
                    &full,
                    &format!("must be an integer, not a {}", other.type_str()),
                );
                key.default
            }
        }
    }

    fn flag(&mut self, t: &mut Table, prefix: &str, key: &crate::config::keys::Flag) -> bool {
        match t.remove(key.name) {
            None => key.default,
            Some(Value::Boolean(b)) => b,
            Some(other) => {
                self.error(
                    &format!("{prefix}.{}", key.name),
                    &format!("must be true or false, not a {}", other.type_str()),
                );
                key.default
            }
        }
    }

    /// An http(s) URL; a `base` ends in `/` (a missing trailing slash is added).
    fn url(
        &mut self,
        t: &mut Table,
        prefix: &str,
        key: &str,
        default: Option<&str>,
        base: bool,
    ) -> Option<reqwest::Url> {
        let raw = self
            .string(t, prefix, key)
            .or_else(|| default.map(str::to_owned))?;
        let full = format!("{prefix}.{key}");
        match reqwest::Url::parse(raw.trim()) {
            Ok(mut u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
                if u.query().is_some() || u.fragment().is_some() {
                    self.error(&full, &format!("{raw:?} must have no ?query or #fragment"));
                    return None;
                }
                if base && !u.path().ends_with('/') {
                    let path = format!("{}/", u.path());
                    u.set_path(&path);
                }
                Some(u)
            }
            Ok(_) => {
                self.error(
                    &full,
                    &format!("{raw:?} must be an http:// or https:// URL"),
                );
                None
            }
            Err(e) => {
                self.error(&full, &format!("{raw:?} is not a URL: {e}"));
                None
            }
        }
    }

    /// A list of non-empty strings.
    fn strings(&mut self, t: &mut Table, prefix: &str, key: &str) -> Vec<String> {
        let full = format!("{prefix}.{key}");
        match t.remove(key) {
            None => Vec::new(),
            Some(Value::Array(items)) => {
                let mut out = Vec::new();
                for v in items {
                    match v {
                        Value::String(s) if !s.trim().is_empty() => out.push(s.trim().to_owned()),
                        other => {
                            self.error(&full, &format!("must hold names or guids, not {other}"))
                        }
                    }
                }
                out
            }
            Some(other) => {
                self.error(
                    &full,
                    &format!(
                        "must be a list of names or guids, not a {}",
                        other.type_str()
                    ),
                );
                Vec::new()
            }
        }
    }

    fn table(&mut self, t: &mut Table, key: &str) -> Table {
        match t.remove(key) {
            None => Table::new(),
            Some(Value::Table(x)) => x,
            Some(other) => {
                self.error(
                    &format!("{}.{key}", k::SECTION),
                    &format!("must be a table, not a {}", other.type_str()),
                );
                Table::new()
            }
        }
    }

    /// `[slotti.messages]`
    fn messages(&mut self, slotti: &mut Table) -> Messages {
        use k::messages::*;
        let mut t = self.table(slotti, "messages");
        let mut one = |r: &mut Self, key: &crate::config::keys::Text| {
            let text = r
                .string(&mut t, SECTION, key.name)
                .unwrap_or_else(|| key.default.to_owned());
            if let Err(why) = check_template(&text) {
                r.error(&format!("{SECTION}.{}", key.name), &why);
            }
            text
        };
        let messages = Messages {
            booked: one(self, &BOOKED),
            moved: one(self, &MOVED),
            cancelled: one(self, &CANCELLED),
        };
        for key in t.keys() {
            self.error(&format!("{SECTION}.{key}"), "unknown key");
        }
        messages
    }

    /// `[slotti.webhook]`
    fn webhook(&mut self, slotti: &mut Table, listener_path: Option<&str>) -> SlottiWebhook {
        use k::webhook::*;
        let mut t = self.table(slotti, "webhook");
        let path = self
            .string(&mut t, SECTION, PATH.name)
            .unwrap_or_else(|| PATH.default.to_owned());
        if let Err(why) = crate::config::check_webhook_path(&path) {
            self.error(&format!("{SECTION}.path"), &format!("{path:?} {why}"));
        }
        let path = path.trim_end_matches('/').to_owned();
        if listener_path.is_some_and(|l| l.trim_end_matches('/') == path) {
            self.error(
                &format!("{SECTION}.path"),
                &format!(
                    "{path:?} is also [webhook] path: give Slotti's deliveries a path of their own"
                ),
            );
        }
        let public_url = self.url(&mut t, SECTION, "public_url", None, false);
        let secret = self.keys.secret(&mut t, SECTION, "secret");
        let basic_user = self.string(&mut t, SECTION, "basic_user");
        let basic_password = self.keys.secret(&mut t, SECTION, "basic_password");
        if basic_user.is_some() != basic_password.is_some() {
            self.error(
                &format!("{SECTION}.basic_user"),
                "give both basic_user and basic_password (or neither)",
            );
        }
        for key in t.keys() {
            self.error(&format!("{SECTION}.{key}"), "unknown key");
        }
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
        let items = match slotti.remove("rules") {
            None => return Vec::new(),
            Some(Value::Array(items)) => items,
            Some(other) => {
                self.error(
                    "slotti.rules",
                    &format!(
                        "must be a list of tables ([[slotti.rules]]), not a {}",
                        other.type_str()
                    ),
                );
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for (i, item) in items.into_iter().enumerate() {
            let p = format!("slotti.rules[{i}]");
            let Value::Table(mut t) = item else {
                self.error(&p, "must be a table ([[slotti.rules]])");
                continue;
            };
            let rule = Rule {
                account: self.string(&mut t, &p, "account"),
                urgency: self.string(&mut t, &p, "urgency"),
                fault_class: self.string(&mut t, &p, "fault_class"),
                cost_centre: self.string(&mut t, &p, "cost_centre"),
                service: self.string(&mut t, &p, "service"),
                technicians: self.strings(&mut t, &p, "technicians"),
            };
            for key in t.keys() {
                self.error(&format!("{p}.{key}"), "unknown key");
            }
            out.push(rule);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Collects the problems by key.
    #[derive(Default)]
    struct Found(Vec<(String, String)>);

    impl Keys for Found {
        fn secret(&mut self, t: &mut Table, prefix: &str, key: &str) -> Option<SecretString> {
            match t.remove(key)? {
                Value::String(s) => Some(SecretString::from(s)),
                _ => {
                    self.0.push((format!("{prefix}.{key}"), "bad".into()));
                    None
                }
            }
        }
        fn error(&mut self, key: &str, message: &str) {
            self.0.push((key.to_owned(), message.to_owned()));
        }
    }

    fn load(text: &str) -> Result<SlottiConfig, Vec<(String, String)>> {
        let mut root: Table = text.parse().unwrap();
        let mut found = Found::default();
        let c = read(
            root.remove("slotti"),
            &mut found,
            Some("/tampuuri/webhook"),
            crate::schedule::DEFAULT_ZONE,
        );
        match c {
            Some(c) if found.0.is_empty() => Ok(c),
            _ => Err(found.0),
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
        let mut c = load(MINIMAL).unwrap();
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

    #[test]
    fn rules_naming_an_unknown_account_are_found() {
        let mut c = load(MINIMAL).unwrap();
        c.rules = vec![
            rule("a", "", "", "", "", &[]),
            rule("b", "", "", "", "", &[]),
        ];
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
    fn the_example_config_shows_every_key_with_its_default() {
        const EXAMPLE: &str = include_str!("../../config.example.toml");
        let shown = |key: &str, value: String| {
            let line = format!("\n# {key} = {value}\n");
            assert!(
                EXAMPLE.contains(&line),
                "config.example.toml lacks {line:?}"
            );
        };
        for t in [k::BASE_URL, k::TIMEZONE, k::RECONCILE, k::webhook::PATH] {
            shown(t.name, format!("{:?}", t.default));
        }
        for t in [
            k::messages::BOOKED,
            k::messages::MOVED,
            k::messages::CANCELLED,
        ] {
            shown(t.name, format!("\"{}\"", t.default));
        }
        for i in [k::HORIZON_DAYS, k::LEAD_HOURS, k::MAX_RETRY_AFTER_SECS] {
            shown(i.name, i.default.to_string());
        }
        shown(k::AUTO_BOOK.name, k::AUTO_BOOK.default.to_string());
        for header in [
            "[slotti]",
            "[slotti.messages]",
            "[slotti.webhook]",
            "[[slotti.rules]]",
        ] {
            assert!(EXAMPLE.contains(&format!("\n# {header}\n")), "{header}");
        }
        // Uncommented, the example section is valid.
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
