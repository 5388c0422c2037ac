//! `board`: the web board's users and sign-in links. `board passwd NAME` prints a
//! `[[board.users]]` entry with an Argon2id hash of a password read from the terminal (no echo)
//! or from stdin (the password and its repeat, one a line); `board login-link` stores a one-time
//! link (5 minutes) in the store and prints its URL. Hints go to stderr, so stdout can be
//! appended to the config or sent on.

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

pub use super::args::{BoardArgs, BoardCommand};
use super::usage;
use crate::config::Config;
use crate::faces::board::{self, MIN_PASSWORD_LEN, Role};

/// `board passwd` needs no config; `board login-link` does.
pub fn needs_config(args: &BoardArgs) -> bool {
    matches!(args.command, BoardCommand::LoginLink { .. })
}

/// `board passwd`.
pub fn passwd(args: BoardArgs) -> anyhow::Result<ExitCode> {
    let BoardCommand::Passwd { name, role } = args.command else {
        unreachable!("login-link is run by login_link")
    };
    let Some(role) = Role::parse(&role) else {
        return Err(usage(format!(
            "--role {role:?} is not one of dispatcher, viewer"
        )));
    };
    if name.trim().is_empty() || name.chars().any(char::is_control) {
        return Err(usage(
            "the user's name must not be empty or hold control characters",
        ));
    }
    let (first, second) = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(format!("Password for {name}: "))?;
        let second = rpassword::prompt_password("The same again: ")?;
        (first, second)
    } else {
        let mut lines = std::io::stdin().lock().lines();
        let mut next = || -> anyhow::Result<String> {
            Ok(lines
                .next()
                .transpose()?
                .map(|l| l.trim_end_matches('\r').to_owned())
                .unwrap_or_default())
        };
        (next()?, next()?)
    };
    check_password(&first, &second)?;
    let hash = board::hash_password(&first)?;
    let entry = format!(
        "[[board.users]]\nname = {}\npassword_hash = {}\nrole = {}\n",
        toml::Value::String(name.clone()),
        toml::Value::String(hash),
        toml::Value::String(role.name().into()),
    );
    eprintln!(
        "Add this entry to the config file (after [board]), then restart the service (systemctl restart huoltosync): the board reads its users when it starts."
    );
    out!("{entry}")?;
    Ok(ExitCode::SUCCESS)
}

/// Why a password (and its repeat) is refused: empty, too short, or not the same twice.
fn check_password(first: &str, second: &str) -> anyhow::Result<()> {
    if first.is_empty() {
        return Err(usage("no password given (an empty line)"));
    }
    if first != second {
        return Err(usage("the two passwords differ"));
    }
    if first.chars().count() < MIN_PASSWORD_LEN {
        return Err(usage(format!(
            "the password is shorter than {MIN_PASSWORD_LEN} characters"
        )));
    }
    Ok(())
}

/// `board login-link`.
pub async fn login_link(config: &Config, args: BoardArgs) -> anyhow::Result<ExitCode> {
    let BoardCommand::LoginLink { user } = args.command else {
        unreachable!("passwd is run by passwd")
    };
    let b = &config.board;
    if !b.enabled {
        return Err(usage(format!(
            "{}: board.enabled is not true: the board is not served",
            config.source.display()
        )));
    }
    let user = match user {
        Some(name) => b.user(&name).ok_or_else(|| {
            usage(format!(
                "{name:?} is not in [[board.users]] (users: {})",
                b.users
                    .iter()
                    .map(|u| u.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?,
        None => b
            .users
            .iter()
            .find(|u| u.role == Role::Dispatcher)
            .ok_or_else(|| {
                usage("no [[board.users]] entry has role = \"dispatcher\": name one with --user")
            })?,
    };
    let listen = config
        .api
        .as_ref()
        .and_then(|a| a.listen)
        .expect("board.enabled requires [api] listen");
    let path = config.store.path.clone();
    let name = user.name.clone();
    let token = tokio::task::spawn_blocking(move || -> anyhow::Result<String> {
        let mut store = crate::store::Store::open(&path)?;
        board::create_login_link(&mut store, &name, crate::domain::time::now())
    })
    .await??;
    let url = board::login_url(b, listen, &token);
    if b.public_url.is_none() && listen.ip().is_unspecified() {
        eprintln!(
            "[api] listen is {listen}: set [board] public_url to the address browsers use, or replace the host in this URL."
        );
    }
    eprintln!(
        "One sign-in as {} ({}), valid for {} minutes:",
        user.name,
        user.role.name(),
        board::LOGIN_LINK_VALID.as_secs() / 60
    );
    outln!("{url}")?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_checked() {
        assert!(check_password("", "").is_err());
        assert!(check_password("Salasana-1x", "Salasana-1y").is_err());
        assert!(check_password("lyhyt", "lyhyt").is_err());
        assert!(check_password("Salasana-kaisa-1", "Salasana-kaisa-1").is_ok());
    }
}
