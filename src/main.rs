//! The `huoltosync` binary: parse the command line, start logging, hand over to the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    huoltosync::tampuuri::install_tls_provider();
    let cli = huoltosync::cli::Cli::parse();
    // The demo tells its story on stdout; its INFO lines would only repeat it.
    let default_level = match cli.command {
        #[cfg(feature = "sim")]
        huoltosync::cli::Command::Demo(_) => "warn",
        _ => "info",
    };
    if let Err(e) = huoltosync::service::telemetry::init(
        cli.log_level.as_deref(),
        cli.log_format,
        default_level,
    ) {
        eprintln!("error: {e:#}");
        return std::process::ExitCode::from(2);
    }
    huoltosync::cli::main(cli)
}
