//! `lull backtest --from DATE --to DATE [--json] [--report FILE.html]`.

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{Context, print_stdout, table_text};
use crate::backtest::{Backtest, run as replay};
use crate::types::Day;

pub fn run(
    ctx: &Context,
    from: Day,
    to: Day,
    json: bool,
    report: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(from <= to, "--from {from} is after --to {to}");
    let span = tracing::info_span!("backtest", %from, %to);
    let _enter = span.enter();
    let bar = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::with_draw_target(
            Some(ctx.registry.len() as u64),
            ProgressDrawTarget::stderr(),
        );
        bar.set_style(
            ProgressStyle::with_template("replaying {bar:40} {pos}/{len} accounts, eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let result = replay(
        &ctx.store,
        &ctx.registry,
        &ctx.config.detect,
        from,
        to,
        |done| bar.set_position(done as u64),
    )?;
    bar.finish_and_clear();
    if json {
        let alerts: Vec<_> = result.alerts().collect();
        print_stdout(&(serde_json::to_string(&alerts)? + "\n"))?;
    } else {
        print_stdout(&text(&result))?;
    }
    eprint!("{}", summary_text(&result));
    if let Some(path) = report {
        let html = crate::report::render(&result, &ctx.config.detect);
        // Atomically: a reader (or a browser tab reloading it) never sees
        // half a report, and a failed write leaves the old one.
        crate::store::files::write_atomically(path, |w| w.write_all(html.as_bytes()))
            .with_context(|| format!("cannot write the report to {}", path.display()))?;
        eprintln!("report written to {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn text(b: &Backtest) -> String {
    let rows: Vec<Vec<String>> = b
        .alerts()
        .map(|n| {
            vec![
                n.date.to_string(),
                n.notice.as_str().to_string(),
                n.account.to_string(),
                n.csm.clone(),
                n.channels.join(","),
                format!("{:.0}/{:.1}", n.observed, n.expected),
                n.silent_since.map_or_else(|| "-".into(), |d| d.to_string()),
            ]
        })
        .collect();
    if rows.is_empty() {
        return format!("no alert would have fired from {} to {}\n", b.from, b.to);
    }
    table_text(
        &[
            "DATE",
            "NOTICE",
            "ACCOUNT",
            "CSM",
            "CHANNELS",
            "OBSERVED/EXPECTED",
            "SILENT SINCE",
        ],
        &rows,
    )
}

/// The summary for stderr: totals, then alerts per week, CSM and segment.
fn summary_text(b: &Backtest) -> String {
    use std::fmt::Write as _;
    let s = b.summary();
    let days = (b.to.0 - b.from.0 + 1) as f64;
    let mut out = format!(
        "backtest {} .. {} ({} days, {} accounts): {} alerts, {} reminders, {} recoveries; {} accounts alerted; {:.2} alerts per account-year\n",
        b.from,
        b.to,
        days,
        s.accounts,
        s.alerts,
        s.reminders,
        s.recoveries,
        s.accounts_alerted,
        s.per_account_year,
    );
    let busiest = s.per_week.values().copied().max().unwrap_or(0);
    let _ = writeln!(
        out,
        "alerts per week: {} weeks with alerts, at most {} in one week",
        s.per_week.len(),
        busiest
    );
    let mut weeks: Vec<(&String, &usize)> = s.per_week.iter().collect();
    weeks.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    for (w, n) in weeks.iter().take(5) {
        let _ = writeln!(out, "  {w}  {n}");
    }
    for (title, map) in [("per CSM", &s.per_csm), ("per segment", &s.per_segment)] {
        let _ = writeln!(out, "alerts {title}:");
        let mut rows: Vec<(&String, &usize)> = map.iter().collect();
        rows.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (k, n) in rows {
            let _ = writeln!(out, "  {k}  {n}");
        }
    }
    out
}
