//! `lull import FILE|-`.

use std::fs::File;
use std::io::{BufRead, BufReader, IsTerminal};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::Backend;
use crate::say;

/// Files smaller than this import too fast for a progress bar to help.
const PROGRESS_MIN_BYTES: u64 = 8 << 20;

pub fn run(b: &Backend, file: &Path, batch_size: usize) -> anyhow::Result<ExitCode> {
    let (reader, input, size): (Box<dyn BufRead + Send>, String, Option<u64>) =
        if file == Path::new("-") {
            (
                Box::new(BufReader::with_capacity(1 << 20, std::io::stdin())),
                "<stdin>".to_string(),
                None,
            )
        } else {
            let f = File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
            let size = f.metadata().ok().map(|m| m.len());
            (
                Box::new(BufReader::with_capacity(1 << 20, f)),
                file.display().to_string(),
                size,
            )
        };
    let local = b.local().is_some();
    let bar = match size {
        Some(len) if local && len >= PROGRESS_MIN_BYTES && std::io::stderr().is_terminal() => {
            let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            Some(bar)
        }
        _ => None,
    };
    let span = tracing::info_span!("import", input = %input);
    let _enter = span.enter();
    let out = b.import(
        reader,
        &input,
        batch_size,
        // Locally, bad lines are told as they are found.
        |line, msg| {
            let text = format!("{input}:{line}: {msg}");
            match &bar {
                Some(b) => b.suspend(|| say!("{text}")),
                None => say!("{text}"),
            }
        },
        |n| {
            if let Some(b) = &bar {
                b.inc(n);
            }
        },
    )?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let report = &out.report;
    if !local {
        for (line, msg) in &out.rejects {
            say!("{input}:{line}: {msg}");
        }
        if report.rejected as usize > out.rejects.len() {
            say!(
                "… and {} more rejected line(s)",
                report.rejected as usize - out.rejects.len()
            );
        }
    }
    let c = report.committed;
    say!(
        "{input}: {} lines in {:.2}s: {} counted, {} already stored, {} unmatched, {} staff (ignored), {} rejected",
        report.lines,
        out.seconds,
        c.counted,
        c.duplicates,
        c.unmatched,
        report.staff,
        report.rejected
    );
    for (source, (first, last)) in &report.covered {
        say!("  source {source}: covered {first} .. {last}");
    }
    if c.unmatched > 0 {
        say!("  see `lull accounts --unmatched` for the actors that matched no account");
    }
    Ok(if report.rejected > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
