//! `lull export`: daily counts as JSON Lines, the backup path.

use std::io::{BufWriter, Write};
use std::process::ExitCode;

use serde::Serialize;

use super::Context;
use crate::types::Day;

/// One exported line. Field order is part of the contract: an export, then
/// an import into a fresh store, then an export is byte-identical.
#[derive(Serialize)]
struct Line<'a> {
    account: &'a str,
    source: &'a str,
    kind: &'a str,
    day: Day,
    count: u64,
}

pub fn run(
    ctx: &Context,
    from: Option<Day>,
    to: Option<Day>,
    output: Option<&std::path::Path>,
) -> anyhow::Result<ExitCode> {
    if let Some(file) = output {
        // All or nothing: a read error half-way leaves no partial file.
        let mut failure = None;
        crate::store::files::write_atomically(file, |w| {
            write_lines(ctx, from, to, w).map_err(|e| {
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
    match write_lines(ctx, from, to, &mut out) {
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
    e.downcast_ref::<std::io::Error>()
        .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
}

fn write_lines(
    ctx: &Context,
    from: Option<Day>,
    to: Option<Day>,
    mut out: impl Write,
) -> anyhow::Result<()> {
    for b in ctx.store.buckets(from, to) {
        let b = b?;
        let line = Line {
            account: b.account.as_str(),
            source: b.source.as_str(),
            kind: b.kind.as_str(),
            day: b.day,
            count: b.count,
        };
        serde_json::to_writer(&mut out, &line)
            .map_err(std::io::Error::from)
            .and_then(|()| out.write_all(b"\n"))?;
    }
    Ok(())
}
