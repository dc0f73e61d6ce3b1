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

pub fn run(ctx: &Context, from: Option<Day>, to: Option<Day>) -> anyhow::Result<ExitCode> {
    let stdout = std::io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    for b in ctx.store.buckets(from, to) {
        let b = b?;
        let line = Line {
            account: b.account.as_str(),
            source: b.source.as_str(),
            kind: b.kind.as_str(),
            day: b.day,
            count: b.count,
        };
        let written = serde_json::to_writer(&mut out, &line)
            .map_err(std::io::Error::from)
            .and_then(|()| out.write_all(b"\n"));
        if let Err(e) = written {
            // A reader that went away (`lull export | head`) is not an error.
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(ExitCode::SUCCESS);
            }
            return Err(e.into());
        }
    }
    match out.flush() {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}
