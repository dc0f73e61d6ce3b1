//! `lull backtest --from DATE --to DATE [--json] [--report FILE.html]`.

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{Backend, print_stdout, table_text};
use crate::app::ops::BacktestRequest;
use crate::backtest::Backtest;
use crate::say;
use crate::types::Day;

/// What `lull backtest` was asked.
pub struct Options<'a> {
    pub from: Day,
    pub to: Day,
    pub json: bool,
    pub report: Option<&'a Path>,
    pub set: &'a [String],
    pub churned: Option<&'a Path>,
}

pub fn run(b: &Backend, o: Options<'_>) -> anyhow::Result<ExitCode> {
    let Options {
        from,
        to,
        json,
        report,
        set,
        churned,
    } = o;
    anyhow::ensure!(from <= to, "--from {from} is after --to {to}");
    let detect = overrides(set)?;
    let churned = match churned {
        None => None,
        Some(path) => {
            let file = std::fs::File::open(path)
                .with_context(|| format!("cannot read --churned {}", path.display()))?;
            let name = path.display().to_string();
            Some(
                crate::score::read_churned(std::io::BufReader::new(file), &name)
                    .map_err(anyhow::Error::msg)?,
            )
        }
    };
    let span = tracing::info_span!("backtest", %from, %to);
    let _enter = span.enter();
    let accounts = b.local().map_or(0, |a| a.live().registry.len() as u64);
    let bar = if accounts > 0 && std::io::stderr().is_terminal() {
        let bar = ProgressBar::with_draw_target(Some(accounts), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("replaying {bar:40} {pos}/{len} accounts, eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let out = b.backtest(
        &BacktestRequest {
            from,
            to,
            detect,
            report: report.is_some(),
            churned,
        },
        |done| bar.set_position(done as u64),
    )?;
    bar.finish_and_clear();
    for w in &out.warnings {
        say!("warning: {w}");
    }
    let result = &out.backtest;
    if json {
        print_stdout(&(serde_json::to_string(&result.notices)? + "\n"))?;
    } else {
        print_stdout(&text(result))?;
    }
    let mut summary = summary_text(result);
    if let Some(scores) = &out.scores {
        summary.push_str(&scores_text(scores));
        if json {
            // For scripts: the scores as one JSON line on stderr (stdout
            // stays the array of notices).
            summary.push_str(&format!("{}\n", serde_json::json!({ "scores": scores })));
        }
    }
    if !out.feedback.is_empty() {
        summary.push_str(&format!(
            "feedback on real alerts in the range: {}\n",
            out.feedback.line()
        ));
    }
    let _ = std::io::Write::write_all(&mut std::io::stderr(), summary.as_bytes());
    if let (Some(path), Some(html)) = (report, &out.report_html) {
        // Atomically: a reader (or a browser tab reloading it) never sees
        // half a report, and a failed write leaves the old one.
        crate::store::files::write_atomically(path, |w| w.write_all(html.as_bytes()))
            .with_context(|| format!("cannot write the report to {}", path.display()))?;
        say!("report written to {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// `--set key=value` (dotted keys into `[detect]`, TOML values) as the
/// request's overrides.
fn overrides(set: &[String]) -> anyhow::Result<Option<serde_json::Value>> {
    if set.is_empty() {
        return Ok(None);
    }
    let mut root = serde_json::Map::new();
    for kv in set {
        let Some((key, value)) = kv.split_once('=') else {
            anyhow::bail!("--set {kv}: write KEY=VALUE, e.g. --set recent_days=56");
        };
        let parsed: toml::Table = toml::from_str(&format!("v = {}", value.trim()))
            .or_else(|_| {
                toml::from_str(&format!(
                    "v = {}",
                    toml::Value::String(value.trim().to_string())
                ))
            })
            .map_err(|e| anyhow::anyhow!("--set {kv}: {e}"))?;
        let v = serde_json::to_value(parsed.get("v"))?;
        let parts: Vec<&str> = key.trim().split('.').collect();
        let mut node = &mut root;
        for p in &parts[..parts.len() - 1] {
            node = node
                .entry(p.to_string())
                .or_insert_with(|| serde_json::Value::Object(Default::default()))
                .as_object_mut()
                .ok_or_else(|| anyhow::anyhow!("--set {kv}: `{p}` is a value, not a table"))?;
        }
        node.insert(parts[parts.len() - 1].to_string(), v);
    }
    Ok(Some(serde_json::Value::Object(root)))
}

/// Per tier: recall, lead, noise, precision, load on the CSMs.
pub fn scores_text(s: &crate::score::Scores) -> String {
    use std::fmt::Write as _;
    let mut out = String::from("scored against the churn file");
    if s.derived {
        out.push_str(" (first activity and engagement end from the store)");
    }
    out.push_str(":\n");
    let opt = |x: Option<f64>| x.map_or_else(|| "-".to_string(), |v| format!("{v:?}"));
    for (tier, t) in &s.tiers {
        let _ = writeln!(
            out,
            "  {tier:<7} recall {} ({}/{}), median lead {} days, false alerts {} per account-year ({} on never-churned), precision {}; {} alerts, {:.2} per CSM per week (at most {} in one week)",
            opt(t.recall),
            t.detected,
            t.churned_accounts,
            opt(t.median_lead_days),
            opt(t.noise_all_per_acct_year),
            opt(t.noise_active_per_acct_year),
            opt(t.precision),
            t.alerts,
            t.per_csm_week,
            t.max_csm_week,
        );
    }
    if !s.unknown_accounts.is_empty() {
        let _ = writeln!(
            out,
            "  warning: not in the accounts file: {}",
            s.unknown_accounts.join(", ")
        );
    }
    out
}

fn text(b: &Backtest) -> String {
    let rows: Vec<Vec<String>> = b
        .notices
        .iter()
        .map(|n| {
            vec![
                n.date.to_string(),
                n.notice.as_str().to_string(),
                n.account.to_string(),
                n.csm.clone(),
                n.channels
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
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
        "backtest {} .. {} ({} days, {} accounts): {} alerts, {} reminders, {} recoveries, {} watch entries; {} accounts alerted; {:.2} alerts per account-year\n",
        b.from,
        b.to,
        days,
        s.accounts,
        s.alerts,
        s.reminders,
        s.recoveries,
        s.watch,
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
