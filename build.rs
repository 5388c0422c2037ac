//! Generates, for the Debian package (`cargo deb`, see `[package.metadata.deb]` in Cargo.toml):
//! the man page `huoltosync(1)` with every subcommand (`clap_mangen`), the bash, zsh and fish
//! completions (`clap_complete`), both from the clap definitions the binary parses with
//! (`src/cli/args.rs`, compiled here as it is); and the systemd units with the packaged
//! binary's path (`/usr/bin`, where `systemd/` says `/usr/local/bin` for the hand-made install).
//!
//! They go to `huoltosync-assets/` beside the binary in the profile's folder
//! (`target/release/huoltosync-assets/`), where cargo-deb's assets name them: a build script's
//! own `OUT_DIR` has a hash in its name that a package manifest cannot know.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;

#[allow(dead_code)]
#[path = "src/cli/args.rs"]
mod args;

// Stand-ins for the two items `args.rs` takes from the library (`config::DEFAULT_CONFIG_PATH`,
// `telemetry::LogFormat`): the same value and the same variants, for the pages.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/huoltosync/config.toml";
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

// Stand-ins for the simulator's own arguments, which live beside its code: a build script gets
// the package's features too, and the pages leave `sim` and `demo` out (see `main`).
#[cfg(feature = "sim")]
#[derive(Debug, clap::Args)]
struct SimArgs {}
#[cfg(feature = "sim")]
mod demo {
    #[derive(Debug, clap::Args)]
    pub struct DemoArgs {}
}

const UNITS: [&str; 2] = ["huoltosync.service", "huoltosync-once.service"];

fn main() -> std::io::Result<()> {
    println!("cargo::rerun-if-changed=src/cli/args.rs");
    println!("cargo::rerun-if-changed=build.rs");
    for unit in UNITS {
        println!("cargo::rerun-if-changed=systemd/{unit}");
    }
    let out = assets_dir()?;
    std::fs::create_dir_all(&out)?;

    // The pages describe the packaged binary, built without the simulator: `sim` and `demo`
    // (there when the `sim` feature is on) are hidden, so every build writes the same pages.
    let mut cmd = args::Cli::command();
    for sim_only in ["sim", "demo"] {
        if cmd.find_subcommand(sim_only).is_some() {
            cmd = cmd.mut_subcommand(sim_only, |s| s.hide(true));
        }
    }
    // Gzipped here: cargo-deb compresses man pages it copies from the source tree, not those
    // under target/release (lintian: uncompressed-manual-page).
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&man_page(&cmd)?)?;
    std::fs::write(out.join("huoltosync.1.gz"), gz.finish()?)?;

    for (shell, file) in [
        (Shell::Bash, "huoltosync.bash"),
        (Shell::Zsh, "_huoltosync"),
        (Shell::Fish, "huoltosync.fish"),
    ] {
        let mut text = Vec::new();
        clap_complete::generate(shell, &mut cmd.clone(), "huoltosync", &mut text);
        std::fs::write(out.join(file), text)?;
    }

    for unit in UNITS {
        let text = std::fs::read_to_string(Path::new("systemd").join(unit))?;
        std::fs::write(out.join(unit), packaged_unit(&text))?;
    }
    Ok(())
}

/// `target/<profile>/huoltosync-assets`: `OUT_DIR` is `target/<profile>/build/<pkg>-<hash>/out`.
fn assets_dir() -> std::io::Result<PathBuf> {
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").ok_or_else(|| {
        std::io::Error::other("cargo sets OUT_DIR for build scripts, but it is not set")
    })?);
    let profile_dir = out_dir.ancestors().nth(3).ok_or_else(|| {
        std::io::Error::other(format!(
            "OUT_DIR {} is not under target/<profile>/build",
            out_dir.display()
        ))
    })?;
    Ok(profile_dir.join("huoltosync-assets"))
}

/// The one page `huoltosync(1)`: the global options, then every subcommand (depth first, in the
/// order `--help` lists them) in a subsection of COMMANDS with its synopsis, description and
/// options; then the files, the environment and the exit status.
fn man_page(cmd: &clap::Command) -> std::io::Result<Vec<u8>> {
    let top = clap_mangen::Man::new(cmd.clone());
    let mut page = Vec::new();
    top.render_title(&mut page)?;
    top.render_name_section(&mut page)?;
    top.render_synopsis_section(&mut page)?;
    top.render_description_section(&mut page)?;
    top.render_options_section(&mut page)?;
    page.extend_from_slice(b".SH COMMANDS\n");
    for (path, sub) in subcommands(cmd, "huoltosync") {
        let man = clap_mangen::Man::new(sub);
        let mut part = Vec::new();
        man.render_synopsis_section(&mut part)?;
        man.render_description_section(&mut part)?;
        man.render_options_section(&mut part)?;
        // Within COMMANDS each command is a subsection, its parts paragraphs.
        let part = String::from_utf8_lossy(&part)
            .replace(".SH SYNOPSIS\n", "")
            .replace(".SH DESCRIPTION\n", ".PP\n")
            .replace(".SH OPTIONS\n", ".PP\nOptions:\n");
        page.extend_from_slice(format!(".SS \"{path}\"\n{part}").as_bytes());
    }
    page.extend_from_slice(EXTRA_SECTIONS.as_bytes());
    top.render_version_section(&mut page)?;
    Ok(page)
}

/// The sections after COMMANDS (roff).
const EXTRA_SECTIONS: &str = r#".SH FILES
.TP
/etc/huoltosync/config.toml
The config file (TOML), 0640 root:huoltosync; \fBhuoltosync check\-config\fR lists every
problem in it by key. The commented example is in /usr/share/doc/huoltosync/examples/.
.TP
/etc/huoltosync/credentials/
One file per secret, named as the config's *_file keys name them, 0700 huoltosync; the units
hand them to the service as systemd credentials (LoadCredential=).
.TP
/var/lib/huoltosync/
The store (SQLite), 0700 huoltosync, with the copy written before each schema migration.
.TP
/usr/lib/systemd/system/huoltosync.service, huoltosync\-once.service
The daemon, and one cycle by hand.
.SH ENVIRONMENT
.TP
HUOLTOSYNC_CONFIG
The config file, when \-\-config is not given.
.TP
CREDENTIALS_DIRECTORY
Where a relative *_file name is read from (systemd sets it from LoadCredential=); when it is
not set, beside the config file. By hand, as the service user:
\fBrunuser \-u huoltosync \-\- env CREDENTIALS_DIRECTORY=/etc/huoltosync/credentials huoltosync ...\fR
.TP
RUST_LOG
The log filter, when \-\-log\-level is not given.
.SH EXIT STATUS
0 success; 1 a failure at run time (an account that did not sync, a check that found
problems); 2 bad usage or an invalid config; 75 another process holds the store lock
(\fBrun \-\-once\fR).
.SH SEE ALSO
/usr/share/doc/huoltosync/README.md, /usr/share/doc/huoltosync/CHANGELOG.md
"#;

/// Every subcommand below `cmd`, depth first, with its full name (`huoltosync task accept`).
fn subcommands(cmd: &clap::Command, path: &str) -> Vec<(String, clap::Command)> {
    let mut all = Vec::new();
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("{path} {}", sub.get_name());
        let built = sub.clone().bin_name(name.clone());
        all.push((name.clone(), built));
        all.extend(subcommands(sub, &name));
    }
    all
}

/// A unit of `systemd/` as the package installs it: the binary in `/usr/bin`. Its
/// `Documentation=` stays the README in `/usr/share/doc/huoltosync/`, which the package
/// installs; a `man:` entry would make `systemd-analyze verify` fail where man-db is absent.
fn packaged_unit(text: &str) -> String {
    text.replace("/usr/local/bin/huoltosync", "/usr/bin/huoltosync")
}
