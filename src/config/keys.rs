//! Every config key that has a default or bounds, declared once: its name, its default and,
//! for numbers, the range the loader accepts. The loader reads each key through its entry here,
//! and the tests below hold the entries to their bounds and to `config.example.toml`.
//!
//! A section is a module; its `SECTION` is the key path the loader reports (`tampuuri.retry`).

/// An integer key with a default.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Int {
    pub name: &'static str,
    pub default: i64,
    pub min: i64,
    pub max: i64,
}

/// An integer key whose default is not a constant (derived, or none: the key is required).
#[derive(Debug, Clone, Copy)]
pub(crate) struct IntRange {
    pub name: &'static str,
    pub min: i64,
    pub max: i64,
}

/// A number key with a default.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Float {
    pub name: &'static str,
    pub default: f64,
    pub min: f64,
    pub max: f64,
}

/// A number key without a default (a required field of a table entry).
#[derive(Debug, Clone, Copy)]
pub(crate) struct FloatRange {
    pub name: &'static str,
    pub min: f64,
    pub max: f64,
}

/// A string key with a default.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Text {
    pub name: &'static str,
    pub default: &'static str,
}

/// A boolean key with a default.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Flag {
    pub name: &'static str,
    pub default: bool,
}

const fn int(name: &'static str, default: i64, min: i64, max: i64) -> Int {
    Int {
        name,
        default,
        min,
        max,
    }
}

const fn text(name: &'static str, default: &'static str) -> Text {
    Text { name, default }
}

pub(crate) mod store {
    use super::*;
    pub const SECTION: &str = "store";
    /// Relative to the config file's folder (systemd `StateDirectory=huoltosync`).
    pub const PATH: Text = text("path", "/var/lib/huoltosync/huoltosync.db");
}

pub(crate) mod tampuuri {
    use super::*;
    pub const SECTION: &str = "tampuuri";
    /// `X-Ohjelmistoversio`.
    pub const SOFTWARE_VERSION: Text = text(
        "software_version",
        concat!("huoltosync/", env!("CARGO_PKG_VERSION")),
    );
    /// Tampuuri's maximum is the cheapest.
    pub const PAGE_SIZE: Int = int("page_size", 250, 1, crate::config::MAX_PAGE_SIZE as i64);
    pub const TIMEOUT_SECS: Int = int("timeout_secs", 30, 1, 3600);
    pub const MAX_REQUESTS_PER_SECOND: Float = Float {
        name: "max_requests_per_second",
        default: 5.0,
        min: 0.0,
        max: 1000.0,
    };
    pub const MAX_RESPONSE_BYTES: Int = int("max_response_bytes", 16 << 20, 1024, 1 << 30);
    /// The longest `Retry-After` a call waits; a longer one fails the call for this cycle.
    pub const MAX_RETRY_AFTER_SECS: Int = int("max_retry_after_secs", 30, 0, 3600);

    pub(crate) mod retry {
        use super::super::*;
        pub const SECTION: &str = "tampuuri.retry";
        pub const MAX_ATTEMPTS: Int = int("max_attempts", 5, 1, 20);
        pub const INITIAL_DELAY_MS: Int = int("initial_delay_ms", 500, 1, 600_000);
        pub const MAX_DELAY_MS: Int = int("max_delay_ms", 30_000, 1, 3_600_000);
    }
}

pub(crate) mod sync {
    use super::*;
    pub const SECTION: &str = "sync";
    pub const MAX_RESWEEPS: Int = int("max_resweeps", 2, 0, 10);
    pub const ACCOUNT_CONCURRENCY: Int = int("account_concurrency", 4, 1, 64);
    pub const PAGES_IN_FLIGHT: Int = int("pages_in_flight", 2, 1, 8);
    /// 500 000 tickets at 250 a page.
    pub const MAX_PAGES: Int = int("max_pages", 2000, 1, 1_000_000);
    pub const ACCOUNT_DEADLINE_SECS: Int = int("account_deadline_secs", 600, 1, 86_400);
}

pub(crate) mod push {
    use super::*;
    pub const SECTION: &str = "push";
    pub const CONCURRENCY: Int = int("concurrency", 4, 1, 32);
    pub const RETRY_INITIAL_MS: Int = int("retry_initial_ms", 2_000, 1, 3_600_000);
    pub const RETRY_MAX_MS: Int = int("retry_max_ms", 300_000, 1, 86_400_000);
    pub const DEADLINE_HOURS: Int = int("deadline_hours", 24, 1, 24 * 30);
    pub const LINGER_SECS: Int = int("linger_secs", 30, 0, 3600);
    pub const MAX_ATTACHMENT_BYTES: Int = int("max_attachment_bytes", 10_000_000, 1, 1 << 30);
    pub const REQUIRE_FOLLOWUPS_DONE: Flag = Flag {
        name: "require_followups_done",
        default: true,
    };
}

pub(crate) mod schedule {
    use super::*;
    pub const SECTION: &str = "schedule";
    /// `[schedule] timezone`'s default is [`crate::service::schedule::DEFAULT_ZONE`].
    pub const TIMEZONE: &str = "timezone";
    /// Every 15 minutes.
    pub const POLL: Text = text("poll", "0 */15 * * * *");
    pub const JITTER_SECS: Int = int("jitter_secs", 0, 0, 3600);
    pub const BACKOFF_INITIAL_SECS: Int = int("backoff_initial_secs", 60, 1, 86_400);
    pub const BACKOFF_MAX_SECS: Int = int("backoff_max_secs", 3600, 1, 7 * 86_400);
}

pub(crate) mod service {
    use super::*;
    pub const SECTION: &str = "service";
    pub const SHUTDOWN_GRACE_SECS: Int = int("shutdown_grace_secs", 20, 0, 3600);
    pub const PUSH_CHECK_MS: Int = int("push_check_ms", 2000, 100, 600_000);
    /// Default: [`STALE_AFTER_POLL_GAPS`] times the poll schedule's longest gap.
    pub const STALE_AFTER_SECS: IntRange = IntRange {
        name: "stale_after_secs",
        min: 1,
        max: 90 * 86_400,
    };
    pub const STALE_AFTER_POLL_GAPS: i64 = 3;
    const _: () = assert!(STALE_AFTER_POLL_GAPS >= 1);
}

pub(crate) mod metrics {
    pub const SECTION: &str = "metrics";
    /// Off unless set.
    pub const LISTEN: &str = "listen";
}

pub(crate) mod privacy {
    use super::*;
    pub const SECTION: &str = "privacy";
    pub const RETAIN_DAYS: Int = int("retain_days", 90, 1, 3650);
}

pub(crate) mod retention {
    use super::*;
    pub const SECTION: &str = "retention";
    pub const SYNC_RUNS_DAYS: Int = int("sync_runs_days", 400, 1, 3650);
    pub const API_CALLS_DAYS: Int = int("api_calls_days", 400, 1, 3650);
    pub const OUTBOX_DAYS: Int = int("outbox_days", 400, 1, 3650);
    pub const WEBHOOK_EVENTS_DAYS: Int = int("webhook_events_days", 400, 1, 3650);
}

pub(crate) mod board {
    use super::*;
    pub const SECTION: &str = "board";
    pub const ENABLED: Flag = Flag {
        name: "enabled",
        default: false,
    };
    pub const INSECURE_COOKIES: Flag = Flag {
        name: "insecure_cookies",
        default: false,
    };
    pub const SESSION_HOURS: Int = int("session_hours", 12, 1, 24 * 90);
    pub const PUBLIC_URL: &str = "public_url";
    pub const TRUSTED_PROXIES: &str = "trusted_proxies";
    pub const USERS: &str = "users";
}

pub(crate) mod webhook {
    use super::*;
    pub const SECTION: &str = "webhook";
    pub const PATH: Text = text("path", "/tampuuri/webhook");
    pub const HMAC_HEADER: Text = text("hmac_header", "X-Huoltosync-Digest");
    pub const MAX_BODY_BYTES: Int = int(
        "max_body_bytes",
        256 * 1024,
        1024,
        crate::config::MAX_WEBHOOK_BODY as i64,
    );
    pub const MAX_CONNECTIONS: Int = int("max_connections", 256, 1, 10_000);
    pub const MAX_CONNECTIONS_PER_ADDRESS: Int = int("max_connections_per_address", 128, 1, 10_000);
    pub const DEBOUNCE_MS: Int = int("debounce_ms", 200, 0, 60_000);
    pub const DEBOUNCE_MAX_MS: Int = int("debounce_max_ms", 5_000, 0, 3_600_000);
    // The loader refuses a debounce_max_ms below debounce_ms; the defaults must pass.
    const _: () = assert!(DEBOUNCE_MS.default <= DEBOUNCE_MAX_MS.default);
    /// Hourly.
    pub const RECONCILE: Text = text("reconcile", "0 0 * * * *");
    /// Fetches (`GET ilmoitukset/{id}`, each billed) of tickets the mirror does not hold, per
    /// account in any minute; more such tickets are left to one reconciliation sweep.
    pub const MAX_FETCHES_PER_MINUTE: Int = int("max_fetches_per_minute", 60, 0, 10_000);
    pub const ADDON_EUR: Float = Float {
        name: "addon_eur",
        default: 500.0,
        min: 0.0,
        max: 1e6,
    };
}

/// `[api]`: the HTTP API (its section is read by `config::sections::api`).
pub(crate) mod api {
    use super::*;
    pub const SECTION: &str = "api";
    /// Feed events older than this many days are dropped by the purge.
    pub const FEED_RETAIN_DAYS: Int = int("feed_retain_days", 30, 1, 3650);
    /// Room for a few base64 attachments.
    pub const MAX_BODY_BYTES: Int = int("max_body_bytes", 8 << 20, 1024, 64 << 20);
    pub const MAX_CONNECTIONS: Int = int("max_connections", 256, 1, 10_000);
    pub const MAX_CONNECTIONS_PER_ADDRESS: Int = int("max_connections_per_address", 128, 1, 10_000);
    /// The most long polls (`changes?wait=`) the feed's watch ever holds; `max_long_polls`
    /// cannot ask for more.
    pub const MAX_WAITERS: usize = 512;
    /// Long polls (`changes?wait=`) held at once; at most half of `max_connections` apply.
    pub const MAX_LONG_POLLS: Int = int("max_long_polls", 64, 1, MAX_WAITERS as i64);
    /// The shortest `[[api.tokens]]` token accepted: a bearer token must not be guessable.
    pub const MIN_TOKEN_LEN: usize = 16;
    /// `[[api.tokens]]` entries.
    pub const TOKENS: &str = "tokens";
    /// `[[api.subscribers]]` entries (their own section, [`subscribers`]).
    pub const SUBSCRIBERS: &str = "subscribers";

    /// `[[api.subscribers]]`: the receivers of the signed outgoing events.
    pub(crate) mod subscribers {
        use super::super::*;
        pub const SECTION: &str = "api.subscribers";
        /// How long the current event is retried after its first failure (hours).
        pub const DEADLINE_HOURS: Int = int("deadline_hours", 24, 1, 24 * 30);
        /// The smallest signing secret, in decoded bytes (Standard Webhooks secrets are 24 to
        /// 64 random bytes; 16 leaves room for hand-made ones without allowing toy keys).
        pub const MIN_SECRET_BYTES: usize = 16;
    }
}

/// `[slotti]`: the Slotti calendar (absent: no Slotti at all). Read by `config::sections::slotti`.
pub(crate) mod slotti {
    use super::*;
    pub const SECTION: &str = "slotti";
    /// `booking/{booking_account}/api/v2/` and `api/v1/` are appended.
    pub const BASE_URL: Text = text("base_url", "https://slotti.fi");
    /// A chrono-tz name: the zone of the resident's messages and of `--after`/`--before`.
    pub const TIMEZONE: Text = text("timezone", "Europe/Helsinki");
    /// How far ahead a visit is booked, and the span reconciliation reads.
    pub const HORIZON_DAYS: Int = int("horizon_days", 14, 1, 90);
    /// The earliest visit, this many hours from now.
    pub const LEAD_HOURS: Int = int("lead_hours", 24, 0, 24 * 30);
    pub const AUTO_BOOK: Flag = Flag {
        name: "auto_book",
        default: false,
    };
    /// Hourly, like `[webhook] reconcile`, in `[schedule] timezone`.
    pub const RECONCILE: Text = text("reconcile", "0 0 * * * *");
    /// The longest `Retry-After` a Slotti call waits; a longer one fails the call.
    pub const MAX_RETRY_AFTER_SECS: Int = int("max_retry_after_secs", 30, 0, 3600);
    /// The account name Slotti's calls are metered under in `api_calls` (so no
    /// `[[accounts]]` entry may have it).
    pub const METER_ACCOUNT: &str = "slotti";

    /// `[slotti.messages]`: the hold message Tampuuri gets, with the placeholders of
    /// `config::sections::slotti::PLACEHOLDERS`.
    pub(crate) mod messages {
        use super::super::*;
        pub const SECTION: &str = "slotti.messages";
        pub const BOOKED: Text = text("booked", "Huoltokäynti varattu {paiva} klo {alku}–{loppu}.");
        pub const MOVED: Text = text(
            "moved",
            "Huoltokäynti siirretty: uusi aika {paiva} klo {alku}–{loppu}.",
        );
        pub const CANCELLED: Text = text(
            "cancelled",
            "Huoltokäynti {paiva} klo {alku}–{loppu} on peruttu. Otamme yhteyttä uudesta ajasta.",
        );
    }

    /// `[slotti.webhook]`: Slotti's deliveries, on the `[webhook]` listener.
    pub(crate) mod webhook {
        use super::super::*;
        pub const SECTION: &str = "slotti.webhook";
        pub const PATH: Text = text("path", "/slotti/webhook");
    }
}

/// `[[pricing]]` entries; without any, [`crate::domain::cost::default_pricing`].
pub(crate) mod pricing {
    use super::*;
    pub const SECTION: &str = "pricing";
    pub const MONTHLY_EUR: FloatRange = FloatRange {
        name: "monthly_eur",
        min: 0.0,
        max: 1e6,
    };
    pub const INCLUDED_CALLS: IntRange = IntRange {
        name: "included_calls",
        min: 0,
        max: i64::MAX,
    };
    pub const EXTRA_CALL_EUR: FloatRange = FloatRange {
        name: "extra_call_eur",
        min: 0.0,
        max: 100.0,
    };
}

/// `[[accounts]]` entries.
pub(crate) mod accounts {
    use super::*;
    pub const SECTION: &str = "accounts";
    pub const CONTRACTOR_ID: IntRange = IntRange {
        name: "contractor_id",
        min: 1,
        max: i64::MAX,
    };
    pub const BILLED: Flag = Flag {
        name: "billed",
        default: true,
    };
    /// `"list"` or `"per_state"`.
    pub const STATE_FILTER: Text = text("state_filter", "list");
}

/// The keys with a constant default, by section, for the tests (and a reader) to walk.
#[cfg(test)]
pub(crate) struct Section {
    pub name: &'static str,
    pub ints: &'static [Int],
    pub floats: &'static [Float],
    pub texts: &'static [Text],
    pub flags: &'static [Flag],
}

#[cfg(test)]
pub(crate) const SECTIONS: &[Section] = &[
    Section {
        name: store::SECTION,
        ints: &[],
        floats: &[],
        texts: &[store::PATH],
        flags: &[],
    },
    Section {
        name: tampuuri::SECTION,
        ints: &[
            tampuuri::PAGE_SIZE,
            tampuuri::TIMEOUT_SECS,
            tampuuri::MAX_RESPONSE_BYTES,
            tampuuri::MAX_RETRY_AFTER_SECS,
        ],
        floats: &[tampuuri::MAX_REQUESTS_PER_SECOND],
        texts: &[tampuuri::SOFTWARE_VERSION],
        flags: &[],
    },
    Section {
        name: tampuuri::retry::SECTION,
        ints: &[
            tampuuri::retry::MAX_ATTEMPTS,
            tampuuri::retry::INITIAL_DELAY_MS,
            tampuuri::retry::MAX_DELAY_MS,
        ],
        floats: &[],
        texts: &[],
        flags: &[],
    },
    Section {
        name: sync::SECTION,
        ints: &[
            sync::MAX_RESWEEPS,
            sync::ACCOUNT_CONCURRENCY,
            sync::PAGES_IN_FLIGHT,
            sync::MAX_PAGES,
            sync::ACCOUNT_DEADLINE_SECS,
        ],
        floats: &[],
        texts: &[],
        flags: &[],
    },
    Section {
        name: push::SECTION,
        ints: &[
            push::CONCURRENCY,
            push::RETRY_INITIAL_MS,
            push::RETRY_MAX_MS,
            push::DEADLINE_HOURS,
            push::LINGER_SECS,
            push::MAX_ATTACHMENT_BYTES,
        ],
        floats: &[],
        texts: &[],
        flags: &[push::REQUIRE_FOLLOWUPS_DONE],
    },
    Section {
        name: schedule::SECTION,
        ints: &[
            schedule::JITTER_SECS,
            schedule::BACKOFF_INITIAL_SECS,
            schedule::BACKOFF_MAX_SECS,
        ],
        floats: &[],
        texts: &[schedule::POLL],
        flags: &[],
    },
    Section {
        name: service::SECTION,
        ints: &[service::SHUTDOWN_GRACE_SECS, service::PUSH_CHECK_MS],
        floats: &[],
        texts: &[],
        flags: &[],
    },
    Section {
        name: privacy::SECTION,
        ints: &[privacy::RETAIN_DAYS],
        floats: &[],
        texts: &[],
        flags: &[],
    },
    Section {
        name: retention::SECTION,
        ints: &[
            retention::SYNC_RUNS_DAYS,
            retention::API_CALLS_DAYS,
            retention::OUTBOX_DAYS,
            retention::WEBHOOK_EVENTS_DAYS,
        ],
        floats: &[],
        texts: &[],
        flags: &[],
    },
    Section {
        name: board::SECTION,
        ints: &[board::SESSION_HOURS],
        floats: &[],
        texts: &[],
        flags: &[board::ENABLED, board::INSECURE_COOKIES],
    },
    Section {
        name: api::SECTION,
        ints: &[
            api::FEED_RETAIN_DAYS,
            api::MAX_BODY_BYTES,
            api::MAX_CONNECTIONS,
            api::MAX_CONNECTIONS_PER_ADDRESS,
            api::MAX_LONG_POLLS,
        ],
        floats: &[],
        texts: &[],
        flags: &[],
    },
    Section {
        name: api::subscribers::SECTION,
        ints: &[api::subscribers::DEADLINE_HOURS],
        floats: &[],
        texts: &[],
        flags: &[],
    },
    Section {
        name: slotti::SECTION,
        ints: &[
            slotti::HORIZON_DAYS,
            slotti::LEAD_HOURS,
            slotti::MAX_RETRY_AFTER_SECS,
        ],
        floats: &[],
        texts: &[slotti::BASE_URL, slotti::TIMEZONE, slotti::RECONCILE],
        flags: &[slotti::AUTO_BOOK],
    },
    Section {
        name: slotti::messages::SECTION,
        ints: &[],
        floats: &[],
        texts: &[
            slotti::messages::BOOKED,
            slotti::messages::MOVED,
            slotti::messages::CANCELLED,
        ],
        flags: &[],
    },
    Section {
        name: slotti::webhook::SECTION,
        ints: &[],
        floats: &[],
        texts: &[slotti::webhook::PATH],
        flags: &[],
    },
    Section {
        name: webhook::SECTION,
        ints: &[
            webhook::MAX_BODY_BYTES,
            webhook::MAX_CONNECTIONS,
            webhook::MAX_CONNECTIONS_PER_ADDRESS,
            webhook::DEBOUNCE_MS,
            webhook::DEBOUNCE_MAX_MS,
        ],
        floats: &[webhook::ADDON_EUR],
        texts: &[webhook::PATH, webhook::HMAC_HEADER, webhook::RECONCILE],
        flags: &[],
    },
    Section {
        name: accounts::SECTION,
        ints: &[],
        floats: &[],
        texts: &[accounts::STATE_FILTER],
        flags: &[accounts::BILLED],
    },
];

#[cfg(test)]
mod tests {
    use std::path::Path;

    use toml::{Table, Value};

    use super::*;
    use crate::config::Config;

    const EXAMPLE: &str = include_str!("../../config.example.toml");

    #[test]
    fn every_default_is_within_its_bounds() {
        for s in SECTIONS {
            for k in s.ints {
                assert!(
                    k.min <= k.default && k.default <= k.max,
                    "{}.{}",
                    s.name,
                    k.name
                );
            }
            for k in s.floats {
                assert!(
                    k.min <= k.default && k.default <= k.max,
                    "{}.{}",
                    s.name,
                    k.name
                );
            }
        }
        for (name, min, max) in [
            (
                service::STALE_AFTER_SECS.name,
                service::STALE_AFTER_SECS.min,
                service::STALE_AFTER_SECS.max,
            ),
            (
                pricing::INCLUDED_CALLS.name,
                pricing::INCLUDED_CALLS.min,
                pricing::INCLUDED_CALLS.max,
            ),
            (
                accounts::CONTRACTOR_ID.name,
                accounts::CONTRACTOR_ID.min,
                accounts::CONTRACTOR_ID.max,
            ),
        ] {
            assert!(min <= max, "{name}");
        }
        for k in [pricing::MONTHLY_EUR, pricing::EXTRA_CALL_EUR] {
            assert!(k.min <= k.max, "{}", k.name);
        }
        for p in crate::domain::cost::default_pricing() {
            assert!(
                (pricing::MONTHLY_EUR.min..=pricing::MONTHLY_EUR.max).contains(&p.monthly_eur)
                    && (pricing::EXTRA_CALL_EUR.min..=pricing::EXTRA_CALL_EUR.max)
                        .contains(&p.extra_call_eur),
                "{p:?}"
            );
        }
        // The loader falls back on these when a value is wrong, so they must be valid.
        let zone = crate::service::schedule::DEFAULT_ZONE;
        for expr in [
            schedule::POLL.default,
            webhook::RECONCILE.default,
            slotti::RECONCILE.default,
        ] {
            crate::service::schedule::Schedule::parse(expr, zone).expect(expr);
        }
        crate::config::check_webhook_path(webhook::PATH.default).unwrap();
        crate::config::check_webhook_path(slotti::webhook::PATH.default).unwrap();
        for m in [
            slotti::messages::BOOKED,
            slotti::messages::MOVED,
            slotti::messages::CANCELLED,
        ] {
            crate::config::check_template(m.default).expect(m.name);
        }
        slotti::TIMEZONE.default.parse::<chrono_tz::Tz>().unwrap();
    }

    /// The `[section]` of the example file (up to the next header), without the header. An
    /// optional section is commented out, header and keys (`# [api]`): it is found the same way,
    /// and ends at the next header, set or commented, that is not one of its own sub-tables
    /// (`# [[api.tokens]]` stays within `# [api]`).
    fn example_section(name: &str) -> &'static str {
        // A header line, commented out or not: its name, and whether it was commented out.
        fn header(line: &str) -> Option<(&str, bool)> {
            let (l, commented) = match line.trim().strip_prefix("# ") {
                Some(l) => (l.trim(), true),
                None => (line.trim(), false),
            };
            l.starts_with('[')
                .then(|| (l.trim_start_matches('[').trim_end_matches(']'), commented))
        }
        let ends = |line: &str| match header(line) {
            Some((_, false)) => true,
            Some((other, true)) => other != name && !other.starts_with(&format!("{name}.")),
            None => false,
        };
        let mut start = 0;
        for line in EXAMPLE.split_inclusive('\n') {
            start += line.len();
            if header(line).is_some_and(|(n, _)| n == name) {
                let rest = &EXAMPLE[start..];
                let end = rest
                    .split_inclusive('\n')
                    .scan(0, |at, l| {
                        let here = *at;
                        *at += l.len();
                        Some((here, l))
                    })
                    .find(|(_, l)| ends(l))
                    .map_or(rest.len(), |(at, _)| at);
                return &rest[..end];
            }
        }
        panic!("config.example.toml has no [{name}] section");
    }

    #[test]
    fn the_example_config_switches_no_optional_section_on() {
        let optional = ["metrics", "webhook", "api", "board", "slotti", "pricing"];
        for line in EXAMPLE.lines().filter(|l| l.starts_with('[')) {
            let name = line.trim_matches(['[', ']']);
            let top = name.split('.').next().unwrap_or(name);
            assert!(
                !optional.contains(&top),
                "config.example.toml switches {line} on: comment it out, as its keys are"
            );
        }
        // Each is still there to uncomment, and so is what is on by default.
        for name in optional {
            assert!(
                EXAMPLE.contains(&format!("\n# [{name}]\n"))
                    || EXAMPLE.contains(&format!("\n# [[{name}]]\n")),
                "{name}"
            );
        }
        for name in [
            "store", "tampuuri", "sync", "push", "schedule", "service", "privacy",
        ] {
            assert!(EXAMPLE.contains(&format!("\n[{name}]\n")), "[{name}]");
        }
    }

    /// What `key = …` (set or commented out) shows in the example's `[section]`.
    fn example_value(section: &str, key: &str) -> String {
        let prefix = format!("{key} = ");
        example_section(section)
            .lines()
            .map(|l| l.trim_start_matches("# "))
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("config.example.toml does not show [{section}] {key}"))
            .to_owned()
    }

    #[test]
    fn the_example_config_shows_every_key_with_its_default() {
        for s in SECTIONS {
            for k in s.ints {
                assert_eq!(
                    example_value(s.name, k.name),
                    k.default.to_string(),
                    "[{}] {}",
                    s.name,
                    k.name
                );
            }
            for k in s.floats {
                let shown: f64 = example_value(s.name, k.name).parse().unwrap();
                assert_eq!(shown, k.default, "[{}] {}", s.name, k.name);
            }
            for k in s.texts {
                let shown = example_value(s.name, k.name);
                if k.name == tampuuri::SOFTWARE_VERSION.name {
                    // The example cannot follow the version; it shows the form.
                    assert!(shown.starts_with("\"huoltosync/"), "{shown}");
                } else {
                    assert_eq!(shown, format!("{:?}", k.default), "[{}] {}", s.name, k.name);
                }
            }
            for k in s.flags {
                assert_eq!(
                    example_value(s.name, k.name),
                    k.default.to_string(),
                    "[{}] {}",
                    s.name,
                    k.name
                );
            }
        }
        assert_eq!(
            example_value(schedule::SECTION, schedule::TIMEZONE),
            format!("{:?}", crate::service::schedule::DEFAULT_ZONE.name())
        );
        // Keys without a constant default are shown too.
        example_value(service::SECTION, service::STALE_AFTER_SECS.name);
        example_value(metrics::SECTION, metrics::LISTEN);
        example_value(accounts::SECTION, accounts::CONTRACTOR_ID.name);
        for key in [
            pricing::MONTHLY_EUR.name,
            pricing::INCLUDED_CALLS.name,
            pricing::EXTRA_CALL_EUR.name,
        ] {
            assert!(
                EXAMPLE.contains(&format!("\n# {key} = ")),
                "[[pricing]] {key}"
            );
        }
    }

    const MINIMAL: &str = r#"
        [tampuuri]
        base_url = "http://127.0.0.1:1/v10/api"
        api_key = "k"
        customer_name = "C"
        [webhook]
        listen = "127.0.0.1:8787"
        hmac_secret = "s"
        # On, so that its keys written out do not switch it on.
        [api]
        feed_retain_days = 30
        [[api.subscribers]]
        url = "http://127.0.0.1:9/events"
        secret = "whsec_MDEyMzQ1Njc4OWFiY2RlZg=="
        [slotti]
        booking_account = "huoltosim"
        api_key = "slotti-key"
        default_service = "Huoltokäynti 30 min"
        [[accounts]]
        name = "a"
        username = "u"
        password = "p"
        contractor_id = 4711
    "#;

    /// The table for `section` (`tampuuri.retry`; `accounts` is the first entry) in `root`.
    fn section_table<'a>(root: &'a mut Table, section: &str) -> &'a mut Table {
        let mut t = root;
        for part in section.split('.') {
            let v = t.entry(part).or_insert_with(|| Value::Table(Table::new()));
            t = match v {
                Value::Table(x) => x,
                Value::Array(a) => a[0].as_table_mut().unwrap(),
                other => panic!("{section}: {other:?}"),
            };
        }
        t
    }

    #[test]
    fn writing_every_default_out_changes_nothing() {
        let load = |root: Table| {
            let loaded = Config::from_table(root, Path::new("/etc/huoltosync/config.toml"))
                .unwrap_or_else(|e| panic!("{e}"));
            format!("{:?}", loaded.config)
        };
        let implicit = load(MINIMAL.parse().unwrap());
        let mut root: Table = MINIMAL.parse().unwrap();
        for s in SECTIONS {
            let t = section_table(&mut root, s.name);
            for k in s.ints {
                t.insert(k.name.into(), Value::Integer(k.default));
            }
            for k in s.floats {
                t.insert(k.name.into(), Value::Float(k.default));
            }
            for k in s.texts {
                t.insert(k.name.into(), Value::String(k.default.into()));
            }
            for k in s.flags {
                t.insert(k.name.into(), Value::Boolean(k.default));
            }
        }
        section_table(&mut root, schedule::SECTION).insert(
            schedule::TIMEZONE.into(),
            Value::String(crate::service::schedule::DEFAULT_ZONE.name().into()),
        );
        let explicit = load(root);
        assert_eq!(explicit, implicit);
    }
}
