//! `lull import FILE|-`.

use std::fs::File;
use std::io::{BufRead, BufReader, IsTerminal};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::Context;
use crate::import::{Options, import};
use crate::types::Day;

/// Files smaller than this import too fast for a progress bar to help.
const PROGRESS_MIN_BYTES: u64 = 8 << 20;

pub fn run(ctx: &Context, file: &Path, batch_size: usize) -> anyhow::Result<ExitCode> {
    let (reader, input, size): (Box<dyn BufRead>, String, Option<u64>) = if file == Path::new("-") {
        (
            Box::new(std::io::stdin().lock()),
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
    let bar = match size {
        Some(len) if len >= PROGRESS_MIN_BYTES && std::io::stderr().is_terminal() => {
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
    let started = std::time::Instant::now();
    let report = import(
        reader,
        &input,
        &ctx.store,
        &ctx.registry,
        Options {
            batch_size,
            limits: ctx.config.limits.clone(),
            ..Options::new(ctx.config.timezone, Day::today(ctx.config.timezone))
        },
        |line, msg| {
            let text = format!("{input}:{line}: {msg}");
            match &bar {
                Some(b) => b.suspend(|| eprintln!("{text}")),
                None => eprintln!("{text}"),
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
    let c = report.committed;
    eprintln!(
        "{input}: {} lines in {:.2}s: {} counted, {} already stored, {} unmatched, {} staff (ignored), {} rejected",
        report.lines,
        started.elapsed().as_secs_f64(),
        c.counted,
        c.duplicates,
        c.unmatched,
        report.staff,
        report.rejected
    );
    for (source, (first, last)) in &report.covered {
        eprintln!("  source {source}: covered {first} .. {last}");
    }
    if c.unmatched > 0 {
        eprintln!("  see `lull accounts --unmatched` for the actors that matched no account");
    }
    Ok(if report.rejected > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
