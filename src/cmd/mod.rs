//! One module per command; `run` dispatches.

mod accounts;
mod check;
mod export;
mod import;

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
        Command::Export { from, to } => {
            let ctx = Context::open(&config_path)?;
            export::run(&ctx, from, to)
        }
        Command::Accounts {
            json,
            unmatched,
            at,
        } => {
            let ctx = Context::open(&config_path)?;
            accounts::run(&ctx, json, unmatched, at)
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
    fn open(config_path: &std::path::Path) -> anyhow::Result<Context> {
        let config = Config::load(config_path)
            .map_err(|d| anyhow::anyhow!("{d}\n(run `lull check` to see every problem)"))?;
        let registry = Registry::load(&config.accounts_file, &config.identity)
            .map_err(|d| anyhow::anyhow!("{d}\n(run `lull check` to see every problem)"))?;
        let store = Store::open(&config.store)?;
        Ok(Context {
            config,
            registry,
            store,
        })
    }
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
