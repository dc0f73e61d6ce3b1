//! `lull check`: validate config and accounts, print every problem.

use std::path::Path;
use std::process::ExitCode;

use crate::accounts::Registry;
use crate::config::Config;

pub fn run(config_path: &Path) -> ExitCode {
    let config = match Config::load(config_path) {
        Ok(c) => c,
        Err(problems) => {
            for p in &problems.0 {
                println!("{p}");
            }
            println!("{} problem(s) found", problems.0.len());
            return ExitCode::from(1);
        }
    };
    match Registry::load(&config.accounts_file, &config.identity) {
        Ok(registry) => {
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
        Err(problems) => {
            for p in &problems.0 {
                println!("{p}");
            }
            println!("{} problem(s) found", problems.0.len());
            ExitCode::from(1)
        }
    }
}
