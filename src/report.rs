//! The backtest report: one self-contained HTML page (inline SVG charts,
//! inline CSS, no scripts) that a community manager can open or mail.

use std::fmt::Write as _;

use plotters::prelude::*;

use crate::backtest::{Backtest, Summary, iso_week};
use crate::detect::{DetectConfig, Notice, NoticeKind, Thresholds, Weekly};
use crate::types::Day;

/// Accounts charted at most, most alerted first: a page with thousands of
/// charts helps nobody and takes a browser down.
const MAX_ACCOUNT_CHARTS: usize = 200;

pub fn render(
    b: &Backtest,
    config: &DetectConfig,
    scores: Option<&crate::score::Scores>,
    feedback: &crate::app::feedback::FeedbackComparison,
) -> String {
    let s = b.summary();
    let mut html = String::new();
    let _ = write!(
        html,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>lull backtest {} .. {}</title><style>{}</style></head><body>",
        b.from, b.to, CSS
    );
    let _ = write!(
        html,
        "<h1>lull backtest {} .. {}</h1><p class=\"totals\"><b>{}</b> alerts, <b>{}</b> reminders, <b>{}</b> recoveries, <b>{}</b> watch-list entries; <b>{}</b> of {} accounts alerted; <b>{:.2}</b> alerts per account-year.</p>",
        b.from,
        b.to,
        s.alerts,
        s.reminders,
        s.recoveries,
        s.watch,
        s.accounts_alerted,
        s.accounts,
        s.per_account_year
    );
    if let Some(scores) = scores {
        html.push_str(&scores_table(scores));
    }
    if !feedback.is_empty() {
        let _ = write!(
            html,
            "<p>Feedback from CSMs on real alerts in the range: {}.</p>",
            esc(&feedback.line())
        );
    }
    html.push_str("<h2>Alerts per week</h2>");
    html.push_str(&weekly_alerts_chart(b, &s));
    html.push_str("<div class=\"cols\">");
    for (title, map) in [("Per CSM", &s.per_csm), ("Per segment", &s.per_segment)] {
        let _ = write!(
            html,
            "<div><h2>{title}</h2><table><tr><th></th><th>alerts</th></tr>"
        );
        let mut rows: Vec<_> = map.iter().collect();
        rows.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (k, n) in rows {
            let _ = write!(html, "<tr><td>{}</td><td>{n}</td></tr>", esc(k));
        }
        html.push_str("</table></div>");
    }
    html.push_str("</div>");
    html.push_str(&thresholds_table(config));

    let mut accounts: Vec<(&String, Vec<&Notice>)> = b
        .weekly
        .keys()
        .map(|a| {
            (
                a,
                b.notices
                    .iter()
                    .filter(|n| n.account.as_str() == a)
                    .collect(),
            )
        })
        .collect();
    accounts.sort_by(|x, y| y.1.len().cmp(&x.1.len()).then(x.0.cmp(y.0)));
    let _ = write!(html, "<h2>Alerted accounts ({})</h2>", accounts.len());
    if accounts.len() > MAX_ACCOUNT_CHARTS {
        let _ = write!(
            html,
            "<p>Showing the {MAX_ACCOUNT_CHARTS} accounts with the most notices; `--json` lists every alert.</p>"
        );
    }
    html.push_str("<p class=\"legend\"><span class=\"obs\">■</span> observed per week · <span class=\"exp\">━</span> expected (baseline) · <span class=\"band\">■</span> band between the drop line and expected · <span class=\"alert\">▼</span> alert / reminder · <span class=\"rec\">▲</span> recovered</p>");
    for (account, notices) in accounts.into_iter().take(MAX_ACCOUNT_CHARTS) {
        let first = notices[0];
        let _ = write!(
            html,
            "<section><h3>{} <small>{} · CSM {}{}</small></h3>",
            esc(account),
            esc(&first.name),
            esc(&first.csm),
            first
                .segment
                .as_deref()
                .map(|s| format!(" · segment {}", esc(s)))
                .unwrap_or_default()
        );
        if let Some(w) = b.weekly.get(account) {
            html.push_str(&account_chart(w, &notices));
        }
        html.push_str("<table><tr><th>date</th><th>notice</th><th>channels</th><th>observed / expected</th><th>silent since</th><th>p</th></tr>");
        for n in notices {
            let p = n
                .evidence
                .iter()
                .filter_map(|e| e.judgement.p_value)
                .fold(None, |m: Option<f64>, p| Some(m.map_or(p, |m| m.min(p))));
            let _ = write!(
                html,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.0} / {:.1}</td><td>{}</td><td>{}</td></tr>",
                n.date,
                n.notice.as_str(),
                esc(&n
                    .channels
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")),
                n.observed,
                n.expected,
                n.silent_since.map_or_else(|| "-".into(), |d| d.to_string()),
                p.map_or_else(|| "-".into(), |p| format!("{p:.2e}"))
            );
        }
        html.push_str("</table></section>");
    }
    html.push_str("</body></html>\n");
    html
}

/// The per-tier scores against the churn file.
fn scores_table(s: &crate::score::Scores) -> String {
    let opt = |x: Option<f64>| x.map_or_else(|| "-".to_string(), |v| format!("{v:?}"));
    let mut out = String::from(
        "<h2>Against the churn file</h2><table><tr><th>tier</th><th>recall</th><th>median lead (days)</th><th>false alerts / account-year</th><th>precision</th><th>alerts</th><th>per CSM per week</th><th>missed</th></tr>",
    );
    for (tier, t) in &s.tiers {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{} ({}/{})</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.2} (max {})</td><td>{}</td></tr>",
            esc(tier),
            opt(t.recall),
            t.detected,
            t.churned_accounts,
            opt(t.median_lead_days),
            opt(t.noise_all_per_acct_year),
            opt(t.precision),
            t.alerts,
            t.per_csm_week,
            t.max_csm_week,
            esc(&t.missed.join(", "))
        );
    }
    out.push_str("</table>");
    if s.derived {
        out.push_str("<p>First activity and engagement end were read from the store; no dormancies were known.</p>");
    }
    out
}

const CSS: &str = "body{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;color:#222}\
h3 small{font-weight:normal;color:#666}table{border-collapse:collapse;margin:.5em 0}\
td,th{padding:2px 10px;border-bottom:1px solid #ddd;text-align:left}.cols{display:flex;gap:3em}\
.obs{color:#4a7bd0}.exp{color:#333}.band{color:#f3d9a4}.alert{color:#c0392b}.rec{color:#27ae60}\
section{margin:2em 0}svg{max-width:100%;height:auto}";

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Formats one setting of a thresholds set.
type Show = fn(&Thresholds) -> String;

/// The settings the backtest ran with, so a report explains itself.
fn thresholds_table(config: &DetectConfig) -> String {
    let mut out = String::from("<h2>Settings</h2><table><tr><th></th><th>default</th>");
    for name in config.segments.keys() {
        let _ = write!(out, "<th>segment {}</th>", esc(name));
    }
    out.push_str("</tr>");
    let all: Vec<&Thresholds> = std::iter::once(&config.defaults)
        .chain(config.segments.values())
        .collect();
    let rows: [(&str, Show); 21] = [
        ("recent_days", |t| t.recent_days.to_string()),
        ("max_recent_days", |t| t.max_recent_days.to_string()),
        ("baseline_days", |t| t.baseline_days.to_string()),
        ("min_expected", |t| t.min_expected.to_string()),
        ("drop_ratio", |t| t.drop_ratio.to_string()),
        ("recover_ratio", |t| t.recover_ratio.to_string()),
        ("max_p", |t| t.max_p.to_string()),
        ("min_coverage", |t| t.min_coverage.to_string()),
        ("quorum", |t| t.quorum.to_string()),
        ("reminder_days", |t| t.reminder_days.to_string()),
        ("recover_days", |t| t.recover_days.to_string()),
        ("community", |t| t.community.to_string()),
        ("silent_days", |t| t.silent_days.to_string()),
        ("early_silent_days", |t| t.early_silent_days.to_string()),
        ("max_breadth", |t| t.max_breadth.to_string()),
        ("breadth_days", |t| t.breadth_days.to_string()),
        ("warmup_days", |t| t.warmup_days.to_string()),
        ("min_events", |t| t.min_events.to_string()),
        ("min_active_days", |t| t.min_active_days.to_string()),
        ("cooldown_days", |t| t.cooldown_days.to_string()),
        ("watch", |t| t.watch.to_string()),
    ];
    for (name, get) in rows {
        let _ = write!(out, "<tr><td>{name}</td>");
        for t in &all {
            let _ = write!(out, "<td>{}</td>", get(t));
        }
        out.push_str("</tr>");
    }
    out.push_str("</table>");
    out
}

/// Alerts (and reminders) per ISO week over the whole range.
fn weekly_alerts_chart(b: &Backtest, s: &Summary) -> String {
    let mut weeks = Vec::new();
    let mut d = b.from;
    while d <= b.to {
        let w = iso_week(d);
        if weeks.last() != Some(&w) {
            weeks.push(w);
        }
        d = d.plus(1);
    }
    let counts: Vec<f64> = weeks
        .iter()
        .map(|w| s.per_week.get(w).copied().unwrap_or(0) as f64)
        .collect();
    let max = counts.iter().copied().fold(1.0, f64::max);
    svg_chart(900, 200, |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(8)
            .x_label_area_size(24)
            .y_label_area_size(36)
            .build_cartesian_2d(0f64..counts.len().max(1) as f64, 0f64..max * 1.1)?;
        let labels = weeks.clone();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(8)
            .x_label_formatter(&|x| labels.get(*x as usize).cloned().unwrap_or_default())
            .y_desc("alerts")
            .draw()?;
        chart.draw_series(
            counts
                .iter()
                .enumerate()
                .filter(|(_, c)| **c > 0.0)
                .map(|(i, c)| {
                    Rectangle::new(
                        [(i as f64, 0.0), (i as f64 + 0.9, *c)],
                        RGBColor(192, 57, 43).filled(),
                    )
                }),
        )?;
        Ok(())
    })
}

/// Weekly observed activity with the expected line, the band down to the
/// drop line, and markers for the account's notices.
fn account_chart(w: &Weekly, notices: &[&Notice]) -> String {
    let n = w.starts.len();
    if n == 0 {
        return String::new();
    }
    let max = w
        .observed
        .iter()
        .chain(&w.expected)
        .copied()
        .fold(1.0, f64::max);
    let week_of = |d: Day| -> f64 { ((d.0 - w.starts[0].0) as f64 / 7.0).clamp(0.0, n as f64) };
    svg_chart(900, 180, |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(8)
            .x_label_area_size(24)
            .y_label_area_size(36)
            .build_cartesian_2d(0f64..n as f64, 0f64..max * 1.15)?;
        let starts = w.starts.clone();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(8)
            .x_label_formatter(&|x| {
                starts
                    .get(*x as usize)
                    .map(|d| d.to_string())
                    .unwrap_or_default()
            })
            .y_desc("events/week")
            .draw()?;
        let band = RGBColor(243, 217, 164);
        // One polygon: along the drop line, back along the expected line.
        let mut outline: Vec<(f64, f64)> = w
            .drop_line
            .iter()
            .enumerate()
            .map(|(i, v)| (i as f64 + 0.5, *v))
            .collect();
        outline.extend(
            w.expected
                .iter()
                .enumerate()
                .rev()
                .map(|(i, v)| (i as f64 + 0.5, *v)),
        );
        chart.draw_series(std::iter::once(Polygon::new(
            outline,
            band.mix(0.6).filled(),
        )))?;
        chart.draw_series(
            AreaSeries::new(
                w.observed
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (i as f64 + 0.5, *v)),
                0.0,
                RGBColor(74, 123, 208).mix(0.35),
            )
            .border_style(RGBColor(74, 123, 208)),
        )?;
        chart.draw_series(LineSeries::new(
            w.expected
                .iter()
                .enumerate()
                .map(|(i, v)| (i as f64 + 0.5, *v)),
            BLACK.stroke_width(2),
        ))?;
        for n in notices {
            let x = week_of(n.date);
            let (color, marker_y) = match n.notice {
                NoticeKind::Recovered => (RGBColor(39, 174, 96), 0.0),
                _ => (RGBColor(192, 57, 43), max * 1.1),
            };
            chart.draw_series(std::iter::once(PathElement::new(
                vec![(x, 0.0), (x, max * 1.1)],
                color.stroke_width(1),
            )))?;
            chart.draw_series(std::iter::once(TriangleMarker::new(
                (x, marker_y),
                5,
                color.filled(),
            )))?;
        }
        Ok(())
    })
}

type ChartResult = Result<(), Box<dyn std::error::Error>>;

/// Renders a chart to an inline SVG string; a drawing failure becomes a
/// note in the page instead of a missing report.
fn svg_chart(
    width: u32,
    height: u32,
    draw: impl FnOnce(&DrawingArea<SVGBackend<'_>, plotters::coord::Shift>) -> ChartResult,
) -> String {
    let mut svg = String::new();
    let result = {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        root.fill(&WHITE)
            .map_err(|e| Box::new(e) as Box<dyn std::error::Error>)
            .and_then(|()| draw(&root))
            .and_then(|()| {
                root.present()
                    .map_err(|e| Box::new(e) as Box<dyn std::error::Error>)
            })
    };
    match result {
        Ok(()) => svg,
        Err(e) => format!("<p>(chart could not be drawn: {})</p>", esc(&e.to_string())),
    }
}
