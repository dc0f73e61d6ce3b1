//! `lull backup FILE` and `lull restore FILE`.

use std::path::Path;
use std::process::ExitCode;

use super::Backend;
use crate::config::Config;
use crate::say;

pub fn backup(b: &Backend, file: &Path) -> anyhow::Result<ExitCode> {
    let started = std::time::Instant::now();
    let mut failure = None;
    crate::store::files::write_atomically(file, |w| {
        b.backup(w).map(drop).map_err(|e| {
            let m = format!("{e:#}");
            failure = Some(e);
            std::io::Error::other(m)
        })
    })
    .map_err(|e| match failure.take() {
        Some(f) => f,
        None => anyhow::anyhow!("writing {}: {e}", file.display()),
    })?;
    // Read back: a backup that does not verify is not a backup.
    let t = crate::store::Store::verify(file)?;
    let size = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    say!(
        "{}: {} records ({} events counted), {:.1} MiB, in {:.1} s",
        file.display(),
        t.records,
        t.events,
        size as f64 / (1 << 20) as f64,
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

pub fn restore(config_path: &Path, file: &Path, verify: bool) -> anyhow::Result<ExitCode> {
    if verify {
        let t = crate::store::Store::verify(file)?;
        say!(
            "{}: a whole backup, {} records ({} events counted)",
            file.display(),
            t.records,
            t.events
        );
        return Ok(ExitCode::SUCCESS);
    }
    let config = Config::load(config_path)
        .map_err(|d| anyhow::anyhow!("{d}\n(run `lull check` to see every problem)"))?;
    let started = std::time::Instant::now();
    let t = crate::store::backup::restore(&config.store, file)?;
    say!(
        "restored {} into {}: {} records ({} events counted), in {:.1} s",
        file.display(),
        config.store.path.display(),
        t.records,
        t.events,
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}
