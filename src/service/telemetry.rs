//! Logging with tracing-subscriber: human-readable on a terminal, JSON for machines, and no
//! timestamps of our own under systemd (the journal stamps every line). Logs go to stderr;
//! stdout carries only a command's output.

use tracing_subscriber::EnvFilter;

/// How log lines are written (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Libraries whose INFO lines are about their own insides (tokio-cron-scheduler's
/// "Uninited"): kept at WARN unless the filter names them.
const QUIET_LIBRARIES: &[&str] = &["tokio_cron_scheduler"];

/// The filter directives: `level` (from `--log-level`) wins over `RUST_LOG`, which wins over
/// `default`. Libraries in [`QUIET_LIBRARIES`] log warnings only, unless named.
fn directives(level: Option<&str>, env: Option<&str>, default: &str) -> String {
    let mut d = level
        .or(env.filter(|e| !e.trim().is_empty()))
        .unwrap_or(default)
        .to_owned();
    for lib in QUIET_LIBRARIES {
        if !d.contains(lib) {
            d.push_str(&format!(",{lib}=warn"));
        }
    }
    d
}

/// Installs the global subscriber. `--log-level` wins over `RUST_LOG`; `default` is the level
/// when neither `--log-level` nor `RUST_LOG` gives one (`info`; the demo, which tells its own
/// story on stdout, `warn`).
pub fn init(level: Option<&str>, format: LogFormat, default: &str) -> anyhow::Result<()> {
    let env = std::env::var("RUST_LOG").ok();
    let d = directives(level, env.as_deref(), default);
    let filter = match (level, EnvFilter::try_new(&d)) {
        (_, Ok(f)) => f,
        (Some(l), Err(e)) => anyhow::bail!("--log-level {l:?}: {e}"),
        // A broken $RUST_LOG falls back to the default, as before.
        (None, Err(_)) => EnvFilter::new(directives(None, None, default)),
    };
    let under_journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match (format, under_journal) {
        (LogFormat::Json, _) => builder.json().flatten_event(true).try_init(),
        (LogFormat::Text, true) => builder.without_time().with_ansi(false).try_init(),
        (LogFormat::Text, false) => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))
}

#[cfg(test)]
mod tests {
    use super::directives;

    #[test]
    fn library_noise_stays_out_unless_asked_for() {
        assert_eq!(
            directives(None, None, "info"),
            "info,tokio_cron_scheduler=warn"
        );
        assert_eq!(
            directives(Some("debug"), Some("trace"), "info"),
            "debug,tokio_cron_scheduler=warn"
        );
        assert_eq!(
            directives(None, Some("huoltosync=debug"), "warn"),
            "huoltosync=debug,tokio_cron_scheduler=warn"
        );
        assert_eq!(
            directives(None, Some(" "), "warn"),
            "warn,tokio_cron_scheduler=warn"
        );
        assert_eq!(
            directives(Some("tokio_cron_scheduler=debug"), None, "info"),
            "tokio_cron_scheduler=debug"
        );
    }
}
