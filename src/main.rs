//! The `lull` binary: parse the command line, start logging, dispatch.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc: detection reads on every core and hands each account's data
/// from thread to thread; glibc's malloc made those threads queue on its
/// arena locks (a fifth of a daily run at 100,000 accounts).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (its place in `mi_option_e`, which
/// libmimalloc-sys does not name for mimalloc v3; `MIMALLOC_VERBOSE=1`
/// lists it as `purge_delay`).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() -> ExitCode {
    // Freed memory goes back to the kernel at once rather than a second
    // later (mimalloc v3's default): after a detection run or the
    // console's index the service sat ~60 MiB higher at 100,000 accounts
    // (benches/service.sh). MIMALLOC_PURGE_DELAY, when set, still decides.
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one of mimalloc's options (read at each purge)
        // before any other thread starts; no allocation is touched.
        unsafe {
            libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0);
        }
    }
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
