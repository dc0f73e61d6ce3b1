//! The `lull` binary: parse the command line, start logging, dispatch.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc: detection reads on every core and hands each account's data
/// from thread to thread; glibc's malloc made those threads queue on its
/// arena locks (a fifth of a daily run at 100,000 accounts).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // A file-size limit (ulimit -f, systemd's LimitFSIZE=) must make a
    // write fail with an error lull reports, not kill it with SIGXFSZ in
    // the middle of one.
    #[cfg(unix)]
    // SAFETY: setting a signal's disposition to "ignore" before any thread
    // starts; no handler code runs.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
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
            lull::say!("lull: {}", lull::cmd::error_text(&e));
            ExitCode::from(lull::cmd::EXIT_FATAL)
        }
    }
}
