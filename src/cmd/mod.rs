//! One module per command; `run` dispatches.
//!
//! The commands that work on the store's contents (`accounts`, `alerts`,
//! `snooze`, `unsnooze`, `export`, `backup`, `import`, `backtest`, `detect`,
//! `deliver`) go through a [`Backend`]: the application layer on a local
//! store, or a running lull's API (`--server`, or by themselves when the
//! service holds the store). Both give the same results, which each
//! command then prints the same way.

mod accounts;
mod alerts;
mod backend;
mod backtest;
mod backup;
mod check;
mod deliver;
mod detect;
mod export;
mod import;
mod poll;
mod snooze;

use std::process::ExitCode;

use crate::cli::{Cli, Command};
use crate::config::Config;
pub use backend::Backend;

/// Exit code when a command could not run at all (bad config, store
/// locked or corrupt, unreadable input). Distinct from 1, which commands
/// use for "ran, but something was rejected or left undone".
pub const EXIT_FATAL: u8 = 2;

/// Writes a line to stderr; a reader that went away (`lull import 2>&1 |
/// head`) is not a reason to stop what the command is doing.
#[macro_export]
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($t)*);
    }};
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let config_path = Config::resolve_path(cli.config);
    let server = cli.server.as_deref();
    let backend = |create: bool| Backend::open(server, &config_path, create);
    match cli.command {
        Command::Check { route } => Ok(check::run(&config_path, route.as_deref())),
        Command::Run => crate::service::run(&config_path, cli.log_format),
        Command::Poll { source, json } => poll::run(&config_path, source.as_deref(), json),
        Command::Restore { file, verify } => backup::restore(&config_path, &file, verify),
        Command::Import { file, batch_size } => {
            import::run(&backend(true)?, &file, batch_size as usize)
        }
        Command::Export { from, to, output } => {
            export::run(&backend(false)?, from, to, output.as_deref())
        }
        Command::Backup { file } => backup::backup(&backend(false)?, &file),
        Command::Accounts {
            json,
            unmatched,
            at,
            csm,
            state,
            segment,
            search,
        } => accounts::run(
            &backend(false)?,
            accounts::Args {
                json,
                unmatched,
                at,
                csm,
                state,
                segment,
                search,
            },
        ),
        Command::Detect {
            at,
            dry_run,
            no_send,
            json,
        } => detect::run(&backend(false)?, at, dry_run, no_send, json),
        Command::Deliver => deliver::run(&backend(false)?),
        Command::Alerts { json } => alerts::run(&backend(false)?, json),
        Command::Snooze {
            account,
            until,
            reason,
        } => snooze::snooze(&backend(false)?, &account, until, &reason),
        Command::Unsnooze { account } => snooze::unsnooze(&backend(false)?, &account),
        Command::ConsoleLink { email } => {
            let link = backend(false)?.console_link(email.as_deref())?;
            crate::say!(
                "sign in to lull's console as {}{} (works once, until {}):",
                link.who,
                if link.admin { " (admin)" } else { "" },
                link.expires.format("%H:%M UTC")
            );
            print_stdout(&format!("{}\n", link.url))?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Backtest {
            from,
            to,
            json,
            report,
            set,
            churned,
        } => backtest::run(
            &backend(false)?,
            backtest::Options {
                from,
                to,
                json,
                report: report.as_deref(),
                set: &set,
                churned: churned.as_deref(),
            },
        ),
    }
}

/// An error and its causes as one line, "a: b: c", leaving out a cause
/// whose text the message already carries (sled and I/O errors repeat
/// their source in their own text).
pub fn error_text(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !out.contains(&c) {
            out.push_str(": ");
            out.push_str(&c);
        }
    }
    out
}

/// Writes `value` to stdout as pretty JSON and a newline, as it is
/// serialised: the text of 100,000 accounts with their channels (~200 MB)
/// is never held whole. A reader that went away is not an error.
pub(crate) fn print_json(value: &impl serde::Serialize) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    let written = serde_json::to_writer_pretty(&mut out, value)
        .map_err(std::io::Error::from)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
    unless_reader_gone(written)
}

/// Writes a command's result to stdout. A reader that went away
/// (`lull accounts | head`) is not an error.
pub(crate) fn print_stdout(text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    unless_reader_gone(out.write_all(text.as_bytes()).and_then(|()| out.flush()))
}

/// A write to stdout whose reader went away (a broken pipe) did what was
/// asked: nobody is left to read the rest.
fn unless_reader_gone(written: std::io::Result<()>) -> std::io::Result<()> {
    match written {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e),
        _ => Ok(()),
    }
}

/// Left-aligned columns, two spaces apart.
pub(crate) fn table_text(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = String::new();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                s.push_str(cell);
                s.push_str(&" ".repeat(w - cell.chars().count() + 2));
            }
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
    out
}
