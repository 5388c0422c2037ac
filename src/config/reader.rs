//! The config's one reader: taking typed values out of a TOML table. Each method removes its
//! key, so that whatever is left over is an unknown key, and records every problem by its key
//! path instead of stopping. Every section (`load.rs`, `sections/`) reads through it, and so
//! does `secrets.rs`, the one secret reader.

use std::path::{Path, PathBuf};

use toml::{Table, Value};

use super::keys;
use super::types::{DEFAULT_OPEN_STATES, Issue};

/// Walks a TOML table, taking the keys it knows and recording every problem with its key path.
pub(super) struct Reader {
    pub(super) errors: Vec<Issue>,
    pub(super) warnings: Vec<Issue>,
    pub(super) account_errors: Vec<Issue>,
    pub(super) base_dir: PathBuf,
    /// false: `*_file` and `*_env` secrets are not read, only noted in `unread`.
    pub(super) read_secrets: bool,
    pub(super) unread: Vec<String>,
    /// Secrets given inline, by key.
    pub(super) inline: Vec<String>,
}

pub(super) fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

fn type_name(v: &Value) -> &'static str {
    v.type_str()
}

impl Reader {
    /// A reader for the file at `path` (its folder anchors relative `*_file` names); with
    /// `read_secrets` false, `*_file` and `*_env` secrets are noted, not read.
    pub(super) fn new(path: &Path, read_secrets: bool) -> Reader {
        Reader {
            errors: Vec::new(),
            warnings: Vec::new(),
            account_errors: Vec::new(),
            base_dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
            read_secrets,
            unread: Vec::new(),
            inline: Vec::new(),
        }
    }

    /// The entries of an array of tables (`[[prefix.key]]`), each with its key path
    /// (`prefix.key[i]`); what is not a table is reported, not returned.
    pub(super) fn tables(
        &mut self,
        t: &mut Table,
        prefix: &str,
        key: &str,
    ) -> Vec<(String, Table)> {
        let full = join(prefix, key);
        let items = match t.remove(key) {
            None => return Vec::new(),
            Some(Value::Array(items)) => items,
            Some(other) => {
                self.error(
                    &full,
                    &format!(
                        "must be an array of tables ([[{full}]]), not a {}",
                        type_name(&other)
                    ),
                );
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for (i, item) in items.into_iter().enumerate() {
            let key = format!("{full}[{i}]");
            match item {
                Value::Table(entry) => out.push((key, entry)),
                _ => self.error(&key, &format!("must be a table ([[{full}]])")),
            }
        }
        out
    }

    /// A list of non-empty strings (names or guids), trimmed.
    pub(super) fn strings(&mut self, t: &mut Table, prefix: &str, key: &str) -> Vec<String> {
        let full = join(prefix, key);
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
                        type_name(&other)
                    ),
                );
                Vec::new()
            }
        }
    }

    /// An http(s) URL with a host, as parsed (`default` when the key is absent).
    pub(super) fn web_url(
        &mut self,
        t: &mut Table,
        prefix: &str,
        key: &str,
        default: Option<&str>,
    ) -> Option<reqwest::Url> {
        let raw = self
            .string(t, prefix, key)
            .or_else(|| default.map(str::to_owned))?;
        let full = join(prefix, key);
        match reqwest::Url::parse(raw.trim()) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Some(u),
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

    /// An integer key of [`keys`], or its default when it is absent or wrong (the problem is
    /// recorded).
    pub(super) fn int(&mut self, t: &mut Table, prefix: &str, k: &keys::Int) -> i64 {
        self.int_in(t, prefix, k.name, k.min, k.max)
            .unwrap_or(k.default)
    }

    /// An integer key of [`keys`] without a constant default.
    pub(super) fn int_range(
        &mut self,
        t: &mut Table,
        prefix: &str,
        k: &keys::IntRange,
    ) -> Option<i64> {
        self.int_in(t, prefix, k.name, k.min, k.max)
    }

    /// A number key of [`keys`], or its default.
    pub(super) fn float(&mut self, t: &mut Table, prefix: &str, k: &keys::Float) -> f64 {
        self.float_in(t, prefix, k.name, k.min, k.max)
            .unwrap_or(k.default)
    }

    /// A number key of [`keys`] without a default.
    pub(super) fn float_range(
        &mut self,
        t: &mut Table,
        prefix: &str,
        k: &keys::FloatRange,
    ) -> Option<f64> {
        self.float_in(t, prefix, k.name, k.min, k.max)
    }

    /// A string key of [`keys`], or its default.
    pub(super) fn text(&mut self, t: &mut Table, prefix: &str, k: &keys::Text) -> String {
        self.string(t, prefix, k.name)
            .unwrap_or_else(|| k.default.to_owned())
    }

    /// A boolean key of [`keys`], or its default.
    pub(super) fn flag(&mut self, t: &mut Table, prefix: &str, k: &keys::Flag) -> bool {
        self.boolean(t, prefix, k.name).unwrap_or(k.default)
    }

    pub(super) fn error(&mut self, key: &str, message: &str) {
        self.errors.push(Issue {
            key: key.to_owned(),
            message: message.to_owned(),
        });
    }

    pub(super) fn warn(&mut self, key: &str, message: &str) {
        self.warnings.push(Issue {
            key: key.to_owned(),
            message: message.to_owned(),
        });
    }

    pub(super) fn has_error(&self, key: &str) -> bool {
        self.errors.iter().any(|i| i.key == key)
    }

    /// Reports the keys nobody took as unknown.
    pub(super) fn finish(&mut self, rest: Table, prefix: &str) {
        for key in rest.keys() {
            self.error(&join(prefix, key), "unknown key");
        }
    }

    pub(super) fn table(&mut self, t: &mut Table, prefix: &str, key: &str) -> Option<Table> {
        match t.remove(key)? {
            Value::Table(x) => Some(x),
            other => {
                self.error(
                    &join(prefix, key),
                    &format!("must be a table, not a {}", type_name(&other)),
                );
                None
            }
        }
    }

    pub(super) fn string(&mut self, t: &mut Table, prefix: &str, key: &str) -> Option<String> {
        match t.remove(key)? {
            Value::String(s) if !s.trim().is_empty() => Some(s),
            Value::String(_) => {
                self.error(&join(prefix, key), "must not be empty");
                None
            }
            other => {
                self.error(
                    &join(prefix, key),
                    &format!("must be a string, not a {}", type_name(&other)),
                );
                None
            }
        }
    }

    pub(super) fn required_string(
        &mut self,
        t: &mut Table,
        prefix: &str,
        key: &str,
    ) -> Option<String> {
        let full = join(prefix, key);
        let v = self.string(t, prefix, key);
        if v.is_none() && !self.has_error(&full) {
            self.error(&full, "missing");
        }
        v
    }

    pub(super) fn int_in(
        &mut self,
        t: &mut Table,
        prefix: &str,
        key: &str,
        min: i64,
        max: i64,
    ) -> Option<i64> {
        let full = join(prefix, key);
        match t.remove(key)? {
            Value::Integer(n) if (min..=max).contains(&n) => Some(n),
            Value::Integer(n) if max == i64::MAX => {
                self.error(
                    &full,
                    &format!("{n} is out of range: must be at least {min}"),
                );
                None
            }
            Value::Integer(n) => {
                self.error(
                    &full,
                    &format!("{n} is out of range: must be from {min} to {max}"),
                );
                None
            }
            other => {
                self.error(
                    &full,
                    &format!("must be an integer, not a {}", type_name(&other)),
                );
                None
            }
        }
    }

    pub(super) fn boolean(&mut self, t: &mut Table, prefix: &str, key: &str) -> Option<bool> {
        match t.remove(key)? {
            Value::Boolean(b) => Some(b),
            other => {
                self.error(
                    &join(prefix, key),
                    &format!("must be true or false, not a {}", type_name(&other)),
                );
                None
            }
        }
    }

    pub(super) fn float_in(
        &mut self,
        t: &mut Table,
        prefix: &str,
        key: &str,
        min: f64,
        max: f64,
    ) -> Option<f64> {
        let full = join(prefix, key);
        let v = match t.remove(key)? {
            Value::Integer(n) => n as f64,
            Value::Float(x) => x,
            other => {
                self.error(
                    &full,
                    &format!("must be a number, not a {}", type_name(&other)),
                );
                return None;
            }
        };
        if !(min..=max).contains(&v) {
            self.error(
                &full,
                &format!("{v} is out of range: must be from {min} to {max}"),
            );
            return None;
        }
        Some(v)
    }

    /// A base URL: http or https, normalised to end in `/`.
    pub(super) fn url(&mut self, t: &mut Table, prefix: &str, key: &str) -> Option<String> {
        self.web_url(t, prefix, key, None).map(|u| {
            let mut s = u.to_string();
            if !s.ends_with('/') {
                s.push('/');
            }
            s
        })
    }

    pub(super) fn states(&mut self, t: &mut Table, prefix: &str) -> Vec<String> {
        let default = || DEFAULT_OPEN_STATES.iter().map(|s| s.to_string()).collect();
        let full = join(prefix, "states");
        match t.remove("states") {
            None => default(),
            Some(Value::Array(items)) if !items.is_empty() => {
                let mut out = Vec::new();
                for v in items {
                    match v {
                        Value::String(s) if !s.trim().is_empty() => {
                            let state = crate::domain::model::TicketState::from_name(&s);
                            if state.is_finished() {
                                self.warn(&full, &format!("{s:?} is a finished state: such tickets will be mirrored as open"));
                            } else if matches!(state, crate::domain::model::TicketState::Other(_)) {
                                self.warn(
                                    &full,
                                    &format!("{s:?} is not a state this version knows"),
                                );
                            }
                            out.push(state.name().to_owned());
                        }
                        other => self.error(&full, &format!("must hold state names, not {other}")),
                    }
                }
                out
            }
            Some(_) => {
                self.error(&full, "must be a non-empty list of state names, e.g. [\"Avoin\", \"Vastaanotettu\", \"Odottaa\"]");
                default()
            }
        }
    }

    pub(super) fn extra_filter(
        &mut self,
        t: &mut Table,
        prefix: &str,
    ) -> serde_json::Map<String, serde_json::Value> {
        let full = join(prefix, "extra_filter");
        let Some(table) = self.table(t, prefix, "extra_filter") else {
            return Default::default();
        };
        let mut out = serde_json::Map::new();
        for (k, v) in table {
            if crate::tampuuri::RESERVED_FILTER_KEYS
                .iter()
                .any(|r| r.eq_ignore_ascii_case(&k))
            {
                self.error(
                    &format!("{full}.{k}"),
                    "is set by huoltosync itself and cannot be overridden here",
                );
                continue;
            }
            match serde_json::to_value(&v) {
                Ok(j) => {
                    out.insert(k, j);
                }
                Err(e) => self.error(
                    &format!("{full}.{k}"),
                    &format!("cannot be sent as JSON: {e}"),
                ),
            }
        }
        out
    }
}
