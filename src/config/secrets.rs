//! Secrets: given inline, in a file named by `*_file`, or in an environment variable named by
//! `*_env` (exactly one), read as [`SecretString`]s that never print. Loading without secrets
//! notes the `*_file` / `*_env` keys in `unread` instead of reading them; inline secrets are
//! noted by key where they are read, for the warning about a file every user can read. This is
//! the one secret reader: every section's secrets (`[tampuuri]`, `[[accounts]]`, `[webhook]`,
//! `[[api.tokens]]`, `[[api.subscribers]]`, `[slotti]`) are read through it.

use std::path::{Path, PathBuf};

use secrecy::SecretString;
use toml::Table;

use super::reader::{Reader, join};
use super::types::Issue;

impl Reader {
    /// A secret given as `key`, `key_file` or `key_env` (exactly one).
    pub(super) fn secret(
        &mut self,
        t: &mut Table,
        prefix: &str,
        key: &str,
    ) -> Option<SecretString> {
        let file_key = format!("{key}_file");
        let env_key = format!("{key}_env");
        let inline = self.string(t, prefix, key);
        let file = self.string(t, prefix, &file_key);
        let env = self.string(t, prefix, &env_key);
        let given = [inline.is_some(), file.is_some(), env.is_some()]
            .iter()
            .filter(|b| **b)
            .count();
        if given > 1 {
            self.error(
                &join(prefix, key),
                &format!("give only one of {key}, {file_key}, {env_key}"),
            );
            return None;
        }
        if let Some(s) = inline {
            self.inline.push(join(prefix, key));
            return Some(SecretString::from(s));
        }
        if !self.read_secrets
            && let Some(unread) = file
                .as_ref()
                .map(|_| &file_key)
                .or(env.as_ref().map(|_| &env_key))
        {
            // Never sent anywhere: `Api::new` refuses a config with unread secrets.
            self.unread.push(join(prefix, unread));
            return Some(SecretString::from(String::new()));
        }
        if let Some(f) = file {
            let path = self.credential_path(&f);
            return match std::fs::read_to_string(&path) {
                Ok(s) if !s.trim().is_empty() => Some(SecretString::from(
                    s.trim_end_matches(['\n', '\r']).to_owned(),
                )),
                Ok(_) => {
                    self.error(
                        &join(prefix, &file_key),
                        &format!("{} is empty", path.display()),
                    );
                    None
                }
                Err(e) => {
                    self.error(
                        &join(prefix, &file_key),
                        &unreadable_credential(&f, &path, &e),
                    );
                    None
                }
            };
        }
        if let Some(var) = env {
            return match std::env::var(&var) {
                Ok(s) if !s.is_empty() => Some(SecretString::from(s)),
                _ => {
                    self.error(
                        &join(prefix, &env_key),
                        &format!("environment variable {var} is not set"),
                    );
                    None
                }
            };
        }
        None
    }

    /// A secret sent as an HTTP header (`api_key`, `password`): one with a character a header
    /// cannot carry is reported by the key it came from, never by its value. An account's own
    /// secret (`account_level`) spoils only that account.
    pub(super) fn header_secret(
        &mut self,
        t: &mut Table,
        prefix: &str,
        key: &str,
        account_level: bool,
    ) -> Option<SecretString> {
        let given = [key.to_owned(), format!("{key}_file"), format!("{key}_env")]
            .into_iter()
            .find(|k| t.contains_key(k))
            .map(|k| join(prefix, &k))?;
        let secret = self.secret(t, prefix, key)?;
        if reqwest::header::HeaderValue::from_str(secrecy::ExposeSecret::expose_secret(&secret))
            .is_err()
        {
            let issue = Issue {
                key: given,
                message: "holds a character an HTTP header cannot carry (a control character such as a newline inside the value); it cannot be sent to Tampuuri".into(),
            };
            if account_level {
                self.account_errors.push(issue);
            } else {
                self.errors.push(issue);
                return None;
            }
        }
        Some(secret)
    }

    pub(super) fn missing_secret(&mut self, prefix: &str, key: &str) {
        let full = join(prefix, key);
        if !self.errors.iter().any(|i| i.key.starts_with(&full)) {
            self.error(
                &full,
                &format!("missing: give {key}, {key}_file or {key}_env"),
            );
        }
    }

    /// `*_file` names: absolute as given; relative ones in `$CREDENTIALS_DIRECTORY` (systemd's
    /// `LoadCredential=`) when it is set, else beside the config file.
    pub(super) fn credential_path(&self, name: &str) -> PathBuf {
        let p = Path::new(name);
        if p.is_absolute() {
            return p.to_owned();
        }
        match std::env::var_os("CREDENTIALS_DIRECTORY") {
            Some(dir) => Path::new(&dir).join(p),
            None => self.base_dir.join(p),
        }
    }
}

/// What to say about a `*_file` secret (`name` as the config gives it) that cannot be read at
/// `path`: the error, where it was looked for and why there, and how systemd and a command run
/// by hand get it (`$CREDENTIALS_DIRECTORY`). Never the secret itself.
fn unreadable_credential(name: &str, path: &Path, e: &std::io::Error) -> String {
    let mut m = format!("cannot read {}: {e}", path.display());
    if Path::new(name).is_absolute() {
        return m;
    }
    match std::env::var_os("CREDENTIALS_DIRECTORY") {
        Some(dir) => m.push_str(&format!(
            " (a relative name is looked for in $CREDENTIALS_DIRECTORY, here {}: under systemd the unit needs a line LoadCredential={name}:/etc/huoltosync/credentials/{name})",
            Path::new(&dir).display()
        )),
        None => m.push_str(&format!(
            " (a relative name is looked for in $CREDENTIALS_DIRECTORY, which is not set, so beside the config file; under systemd the unit's LoadCredential={name}:… line sets it; by hand, run as the service user with it set: `runuser -u huoltosync -- env CREDENTIALS_DIRECTORY=/etc/huoltosync/credentials huoltosync --config /etc/huoltosync/config.toml …`)"
        )),
    }
    m
}

#[cfg(unix)]
pub(super) fn readable_by_others(path: &Path, keys: &[String]) -> Option<Issue> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    inline_secret_warning(path, mode, keys)
}

/// The warning for a config file holding secrets inline (`keys`, as the loader read them),
/// when its `mode` lets every user on the machine read it. Owner and group access are the
/// service's own (`root:huoltosync 0640`). Names the keys, never the values.
fn inline_secret_warning(path: &Path, mode: u32, keys: &[String]) -> Option<Issue> {
    (mode & 0o004 != 0).then(|| Issue {
        key: String::new(),
        message: format!(
            "{} holds secrets inline ({}) and is readable by others (every user; mode {:o}): `chmod o-rwx` it (the service reads it as its owner or group, e.g. root:huoltosync 0640), or move each to a *_file",
            path.display(),
            keys.join(", "),
            mode & 0o777
        ),
    })
}

#[cfg(not(unix))]
pub(super) fn readable_by_others(_: &Path, _: &[String]) -> Option<Issue> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_inline_secret_is_worth_a_warning_only_when_every_user_can_read_it() {
        let path = Path::new("/etc/huoltosync/config.toml");
        let keys = ["webhook.basic_password".to_owned()];
        for private in [0o600, 0o640, 0o660, 0o750] {
            assert!(
                inline_secret_warning(path, private, &keys).is_none(),
                "{private:o}"
            );
        }
        let w = inline_secret_warning(path, 0o100644, &keys)
            .unwrap()
            .message;
        assert!(w.contains("mode 644") && w.contains("chmod o-rwx"), "{w}");
        assert!(w.contains("(webhook.basic_password)"), "{w}");
        assert!(!w.contains("chmod 600"), "{w}");
    }
}
