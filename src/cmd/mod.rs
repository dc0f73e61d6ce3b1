//! One module per command; `run` dispatches.

mod accounts;
mod alerts;
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

use crate::accounts::Registry;
use crate::cli::{Cli, Command};
use crate::config::Config;
use crate::store::Store;

/// Exit code when a command could not run at all (bad config, store
/// locked or corrupt, unreadable input). Distinct from 1, which commands
/// use for "ran, but something was rejected or left undone".
pub const EXIT_FATAL: u8 = 2;

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let config_path = Config::resolve_path(cli.config);
    match cli.command {
        Command::Check => Ok(check::run(&config_path)),
        Command::Import { file, batch_size } => {
            let ctx = Context::open(&config_path)?;
            import::run(&ctx, &file, batch_size as usize)
        }
        Command::Poll { source, json } => {
            let ctx = Context::open(&config_path)?;
            poll::run(ctx, source.as_deref(), json)
        }
        Command::Export { from, to, output } => {
            let ctx = Context::open_existing(&config_path)?;
            export::run(&ctx, from, to, output.as_deref())
        }
        Command::Backup { file } => backup::backup(&Context::open_existing(&config_path)?, &file),
        Command::Restore { file, verify } => backup::restore(&config_path, &file, verify),
        Command::Accounts {
            json,
            unmatched,
            at,
        } => {
            let ctx = Context::open_existing(&config_path)?;
            accounts::run(&ctx, json, unmatched, at)
        }
        Command::Detect {
            at,
            dry_run,
            no_send,
            json,
        } => {
            let ctx = Context::open_existing(&config_path)?;
            detect::run(&ctx, at, dry_run, no_send, json)
        }
        Command::Deliver => deliver::run(&Context::open_existing(&config_path)?),
        Command::Alerts { json } => alerts::run(&Context::open_existing(&config_path)?, json),
        Command::Snooze {
            account,
            until,
            reason,
        } => snooze::snooze(
            &Context::open_existing(&config_path)?,
            &account,
            until,
            &reason,
        ),
        Command::Unsnooze { account } => {
            snooze::unsnooze(&Context::open_existing(&config_path)?, &account)
        }
        Command::Run => crate::service::run(&config_path, cli.log_format),
        Command::Backtest {
            from,
            to,
            json,
            report,
        } => {
            let ctx = Context::open_existing(&config_path)?;
            backtest::run(&ctx, from, to, json, report.as_deref())
        }
    }
}

/// What most commands need: the config, the accounts and the store.
pub(crate) struct Context {
    pub config: Config,
    pub registry: Registry,
    pub store: Store,
}

impl Context {
    /// For commands that bring data: creates the store if there is none.
    fn open(config_path: &std::path::Path) -> anyhow::Result<Context> {
        Context::load(config_path, Store::open)
    }

    /// For commands that work on data already there.
    fn open_existing(config_path: &std::path::Path) -> anyhow::Result<Context> {
        Context::load(config_path, Store::open_existing)
    }

    fn load(
        config_path: &std::path::Path,
        open: fn(&crate::config::StoreConfig) -> Result<Store, crate::store::StoreError>,
    ) -> anyhow::Result<Context> {
        let config = Config::load(config_path)
            .map_err(|d| anyhow::anyhow!("{d}\n(run `lull check` to see every problem)"))?;
        let registry = Registry::load(&config.accounts_file, &config.identity)
            .map_err(|d| anyhow::anyhow!("{d}\n(run `lull check` to see every problem)"))?;
        let store = open(&config.store)?;
        Ok(Context {
            config,
            registry,
            store,
        })
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

/// Writes a command's result to stdout. A reader that went away
/// (`lull accounts | head`) is not an error.
pub(crate) fn print_stdout(text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
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
