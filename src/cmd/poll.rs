//! `lull poll [--source NAME]`: run every (or one) source once, now.

use std::process::ExitCode;
use std::sync::Arc;

use super::Context;
use crate::sources::{self, Source, http};

pub fn run(ctx: Context, only: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    let Context {
        config,
        registry,
        store,
    } = ctx;
    let chosen: Vec<_> = match only {
        Some(name) => {
            let Some(s) = config.sources.iter().find(|s| s.name.as_str() == name) else {
                let known: Vec<&str> = config.sources.iter().map(|s| s.name.as_str()).collect();
                anyhow::bail!(
                    "no source named `{name}` in {} (configured: {})",
                    config.file.display(),
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                );
            };
            vec![s.clone()]
        }
        None => config.sources.clone(),
    };
    if chosen.is_empty() {
        eprintln!(
            "{}: no [[source]] configured; nothing to poll",
            config.file.display()
        );
        if json {
            super::print_stdout("[]\n")?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let client = http::client()?;
    // A source that cannot even be built (a secret missing) fails alone.
    let mut built = Vec::new();
    let mut failed = 0;
    for c in &chosen {
        match Source::build(c, client.clone(), &config.limits) {
            Ok(s) => built.push(s),
            Err(e) => {
                failed += 1;
                tracing::error!(source = %c.name, error = %e, "poll failed");
                eprintln!("lull: source `{}` ({}): {e}", c.name, c.kind.name());
            }
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let store = Arc::new(store);
    let registry = Arc::new(registry);
    let results = runtime.block_on(sources::poll_all(
        &built,
        store.clone(),
        registry,
        config.timezone,
    ));
    let mut reports = Vec::new();
    for r in results {
        match r {
            Ok(rep) => {
                let covered = rep
                    .covered
                    .map(|(a, b)| format!("; covered {a} .. {b}"))
                    .unwrap_or_default();
                eprintln!(
                    "{} ({}): {} read, {} counted, {} already stored, {} unmatched, {} staff; {} request(s) in {:.1}s{covered}",
                    rep.source,
                    rep.kind,
                    rep.read,
                    rep.counted,
                    rep.duplicates,
                    rep.unmatched,
                    rep.staff,
                    rep.requests,
                    rep.seconds
                );
                reports.push(rep);
            }
            Err(e) => {
                failed += 1;
                tracing::error!(source = %e.source_name, error = %e.error, "poll failed");
                eprintln!("lull: {e}");
            }
        }
    }
    if reports.iter().any(|r| r.unmatched > 0) {
        eprintln!("  see `lull accounts --unmatched` for the actors that matched no account");
    }
    if json {
        super::print_stdout(&(serde_json::to_string_pretty(&reports)? + "\n"))?;
    }
    Ok(if failed > 0 {
        eprintln!(
            "{failed} source(s) failed; nothing of theirs was stored, their cursors did not move, and their days stay uncovered"
        );
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
