//! Configuration: the TOML file, validated in full before anything runs.
//!
//! Loading walks the parsed TOML by hand instead of deriving `Deserialize`, so that *every*
//! problem is reported at once with the key that causes it (`accounts[1].contractor_id: …`),
//! rather than serde's first error. Secrets are read from the file, from a file named by
//! `*_file` (relative names resolve in `$CREDENTIALS_DIRECTORY` when systemd set it), or from an
//! environment variable named by `*_env`, and are held as [`SecretString`](secrecy::SecretString)s,
//! which never print. Commands that never call Tampuuri load the file with
//! [`Config::load_without_secrets`]: they do not need (and may not be allowed to read) the
//! credentials.
//!
//! The rooms: `types` (the validated structs), `keys` (every key's default and bounds, declared
//! once), `reader` (the one reader: typed values out of a TOML table, each problem recorded by
//! key), `load` (the file, section by section), `sections` (the sections of the faces and of
//! Slotti: `[api]`, `[[api.subscribers]]`, `[board]`, `[slotti]`, with their types), `secrets`
//! (the one secret reader: inline, `*_file`, `*_env`; the inline-secret warning). The config
//! imports no face: the API, the board, the outgoing events and Slotti import their section
//! types from here. The API packages priced by `cost` are the domain's
//! ([`crate::domain::cost::Package`]); the config only reads them from `[[pricing]]`.

pub(crate) mod keys;
mod load;
mod reader;
mod secrets;
mod sections;
mod types;

pub use crate::domain::cost::{Package, default_pricing};
pub use load::check_webhook_path;
pub use sections::api::{
    ApiConfig, ApiToken, Scope, feed_retain_days, max_body_bytes, read_api_with_tokens,
};
pub use sections::board::{BoardConfig, BoardUser, Role, check_hash};
pub use sections::slotti::{
    Messages, PLACEHOLDERS, Rule, SlottiConfig, SlottiWebhook, check_template,
};
pub use sections::subscribers::{EVENT_TYPES, SubscriberConfig, default_name, signing_key};
pub use types::*;

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn check(toml: &str) -> Result<Loaded, ConfigError> {
        Config::from_table(
            toml.parse().unwrap(),
            Path::new("/etc/huoltosync/config.toml"),
        )
    }

    const MINIMAL: &str = r#"
        [tampuuri]
        base_url = "http://127.0.0.1:1/v10/api"
        api_key = "k"
        customer_name = "C"
        [[accounts]]
        name = "a"
        username = "u"
        password = "p"
        contractor_id = 4711
    "#;

    #[test]
    fn minimal_config_gets_defaults() {
        let c = check(MINIMAL).unwrap().config;
        let a = &c.accounts[0];
        assert_eq!(a.base_url, "http://127.0.0.1:1/v10/api/");
        assert_eq!(a.states, DEFAULT_OPEN_STATES);
        assert_eq!(a.state_filter, StateFilter::List);
        assert_eq!(c.tampuuri.page_size, 250);
        assert_eq!(c.tampuuri.max_requests_per_second, 5.0);
        assert!(c.tampuuri.software_version.starts_with("huoltosync/"));
        assert_eq!(c.store.path, Path::new("/var/lib/huoltosync/huoltosync.db"));
    }

    #[test]
    fn secrets_never_print() {
        let c = check(MINIMAL).unwrap().config;
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("\"p\"") && !shown.contains("\"k\""),
            "{shown}"
        );
    }
}
