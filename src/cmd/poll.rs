//! `lull poll [--source NAME]`: run every (or one) source once, now.

use std::process::ExitCode;

use crate::app::App;
use crate::say;
use crate::sources::{self, Source, http};

pub fn run(
    config_path: &std::path::Path,
    only: Option<&str>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let app = App::open(config_path, true).map_err(|e| {
        if matches!(
            e.downcast_ref::<crate::store::StoreError>(),
            Some(crate::store::StoreError::Locked { .. })
        ) {
            e.context("the running lull polls every source on its schedule; its /readyz and `lull --server URL` commands show how they fare")
        } else {
            e
        }
    })?;
    let (config, registry, store) = (&app.config, app.live().registry.clone(), app.store.clone());
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
        say!(
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
                say!("lull: source `{}` ({}): {e}", c.name, c.kind.name());
            }
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
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
                say!(
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
                say!("lull: {e}");
            }
        }
    }
    if reports.iter().any(|r| r.unmatched > 0) {
        say!("  see `lull accounts --unmatched` for the actors that matched no account");
    }
    if json {
        super::print_json(&reports)?;
    }
    Ok(if failed > 0 {
        say!(
            "{failed} source(s) failed; nothing of theirs was stored, their cursors did not move, and their days stay uncovered"
        );
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
