//! `lull check`: validate config and accounts, print every problem.

use std::path::Path;
use std::process::ExitCode;

use crate::accounts::Registry;
use crate::config::Config;
use crate::diag::Diagnostics;

pub fn run(config_path: &Path) -> ExitCode {
    let checked = Config::load(config_path).and_then(|config| {
        Registry::load(&config.accounts_file, &config.identity).map(|registry| (config, registry))
    });
    match checked {
        Ok((config, registry)) => {
            println!(
                "{}: ok ({} accounts in {}, store {}, days in {})",
                config_path.display(),
                registry.len(),
                config.accounts_file.display(),
                config.store.path.display(),
                config.timezone
            );
            ExitCode::SUCCESS
        }
        Err(Diagnostics(problems)) => {
            for p in &problems {
                println!("{p}");
            }
            println!("{} problem(s) found", problems.len());
            ExitCode::from(1)
        }
    }
}
