//! The `lull` binary: parse the command line, start logging, dispatch.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = lull::cli::Cli::parse();
    lull::logging::init(cli.log_format);
    match lull::cmd::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("lull: {e:#}");
            ExitCode::from(lull::cmd::EXIT_FATAL)
        }
    }
}
