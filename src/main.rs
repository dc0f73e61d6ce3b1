//! The `lull` binary: parse the command line, start logging, dispatch.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = lull::cli::Cli::parse();
    // `lull run` starts logging itself: its format may come from the config.
    if !matches!(cli.command, lull::cli::Command::Run) {
        lull::logging::init(
            cli.log_format.unwrap_or(lull::cli::LogFormat::Text),
            lull::logging::DEFAULT_FILTER,
        );
    }
    match lull::cmd::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("lull: {e:#}");
            ExitCode::from(lull::cmd::EXIT_FATAL)
        }
    }
}
