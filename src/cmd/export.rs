//! `lull export [--from DATE] [--to DATE] [-o FILE]`: daily counts as JSON
//! Lines. Field order is part of the contract: an export, then an import
//! into a fresh store, then an export is byte-identical.

use std::io::{BufWriter, Write};
use std::process::ExitCode;

use super::Backend;
use crate::types::Day;

pub fn run(
    b: &Backend,
    from: Option<Day>,
    to: Option<Day>,
    output: Option<&std::path::Path>,
) -> anyhow::Result<ExitCode> {
    if let Some(file) = output {
        // All or nothing: a read error half-way leaves no partial file.
        let mut failure = None;
        crate::store::files::write_atomically(file, |w| {
            b.export(from, to, w).map_err(|e| {
                let m = format!("{e:#}");
                failure = Some(e);
                std::io::Error::other(m)
            })
        })
        .map_err(|e| match failure.take() {
            Some(f) => f,
            None => anyhow::anyhow!("writing {}: {e}", file.display()),
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    let stdout = std::io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    match b.export(from, to, &mut out) {
        Err(e) if is_broken_pipe(&e) => return Ok(ExitCode::SUCCESS),
        Err(e) => return Err(e),
        Ok(()) => {}
    }
    match out.flush() {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// A reader that went away (`lull export | head`) is not an error.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    }) || e.to_string().contains("Broken pipe")
}
