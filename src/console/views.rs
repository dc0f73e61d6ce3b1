//! What the console's templates show, formatted: the page frame, state
//! badges, and the small SVG pictures (sparklines, coverage strips,
//! timelines) drawn here as plain markup with numbers only — nothing that
//! came from a source or the accounts file is ever put into an SVG.

use std::fmt::Write as _;

use crate::types::Day;

/// The frame of every page: who is signed in, which page is open.
#[derive(Debug, Clone, Default)]
pub struct Layout {
    /// None on pages before sign-in.
    pub who: Option<String>,
    pub admin: bool,
    pub csrf: String,
    /// `accounts`, `alerts`, `sources`, `tuning`.
    pub page: &'static str,
    pub version: &'static str,
}

impl Layout {
    pub fn anonymous() -> Layout {
        Layout {
            version: env!("CARGO_PKG_VERSION"),
            ..Layout::default()
        }
    }

    pub fn signed_in(v: &super::session::Viewer, page: &'static str) -> Layout {
        Layout {
            who: Some(v.who.clone()),
            admin: v.admin,
            csrf: v.csrf.clone(),
            page,
            version: env!("CARGO_PKG_VERSION"),
        }
    }

    pub fn is(&self, page: &str) -> bool {
        self.page == page
    }
}

/// A state as people read it, and the class of its badge.
pub fn state_label(state: &str) -> (&'static str, &'static str) {
    match state {
        "silent" => ("Silent", "silent"),
        "engaged" => ("Engaged", "engaged"),
        "insufficient_data" => ("Too little data", "thin"),
        "unknown" => ("Unknown", "unknown"),
        "watch" => ("Watch", "watch"),
        _ => ("—", "unknown"),
    }
}

/// An account's badge: its state, or "Watch" for an engaged account on
/// its CSM's watch list.
pub fn account_label(s: &crate::summary::AccountSummary) -> (&'static str, &'static str) {
    if s.watch && s.state == "engaged" {
        state_label("watch")
    } else {
        state_label(&s.state)
    }
}

/// "2026-11-02 (26 days ago)".
pub fn day_ago(day: Day, today: Day) -> String {
    let d = today.0 - day.0;
    match d {
        0 => format!("{day} (today)"),
        1 => format!("{day} (yesterday)"),
        d if d > 0 => format!("{day} ({d} days ago)"),
        d => format!("{day} (in {} days)", -d),
    }
}

/// A weekly sparkline: `values` as a line over `w`×`h` pixels, the last
/// point marked. Labelled for screen readers with the numbers.
pub fn sparkline(values: &[u64], w: u32, h: u32) -> String {
    let label = format!(
        "events per week, oldest first: {}",
        values
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut s = format!(
        r#"<svg class="spark" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" aria-label="{label}"><title>{label}</title>"#
    );
    if values.len() >= 2 {
        let max = values.iter().copied().max().unwrap_or(0).max(1) as f64;
        let step = (w as f64 - 4.0) / (values.len() - 1) as f64;
        let y = |v: u64| 2.0 + (h as f64 - 4.0) * (1.0 - v as f64 / max);
        let mut points = String::new();
        for (i, v) in values.iter().enumerate() {
            let _ = write!(points, "{:.1},{:.1} ", 2.0 + step * i as f64, y(*v));
        }
        let last = values.len() - 1;
        let _ = write!(
            s,
            r#"<polyline points="{}" fill="none" stroke="currentColor" stroke-width="1.5"/><circle cx="{:.1}" cy="{:.1}" r="2" fill="currentColor"/>"#,
            points.trim_end(),
            2.0 + step * last as f64,
            y(values[last])
        );
    }
    s.push_str("</svg>");
    s
}

/// One day's cell of a coverage strip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cover {
    Polled,
    Imported,
    Missing,
}

/// A strip of `days.len()` cells, oldest left: polled, imported, or not
/// covered. Labelled with the counts.
pub fn coverage_strip(days: &[Cover], first: Day) -> String {
    let cell = 5u32;
    let w = cell * days.len() as u32;
    let polled = days.iter().filter(|c| **c == Cover::Polled).count();
    let imported = days.iter().filter(|c| **c == Cover::Imported).count();
    let label = format!(
        "{} of the last {} days covered ({polled} by polls, {imported} by imports), from {first}",
        polled + imported,
        days.len()
    );
    let mut s = format!(
        r#"<svg class="strip" width="{w}" height="16" viewBox="0 0 {w} 16" role="img" aria-label="{label}"><title>{label}</title>"#
    );
    for (i, c) in days.iter().enumerate() {
        let class = match c {
            Cover::Polled => "cov-poll",
            Cover::Imported => "cov-import",
            Cover::Missing => "cov-none",
        };
        let _ = write!(
            s,
            r#"<rect class="{class}" x="{}" y="0" width="{}" height="16"/>"#,
            i as u32 * cell,
            cell - 1
        );
    }
    s.push_str("</svg>");
    s
}

/// A span on a timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub first: Day,
    pub last: Day,
}

/// A timeline of `first..=last`: silent episodes as bands, alerts as
/// marks, month ticks below.
pub fn timeline(first: Day, last: Day, episodes: &[Span], alerts: &[Day], width: u32) -> String {
    let days = (last.0 - first.0 + 1).max(1) as f64;
    let x = |d: Day| (d.0 - first.0).clamp(0, last.0 - first.0 + 1) as f64 / days * width as f64;
    let label = format!(
        "from {first} to {last}: {} silent episode(s), {} alert(s)",
        episodes.len(),
        alerts.len()
    );
    let mut s = format!(
        r#"<svg class="timeline" width="{width}" height="44" viewBox="0 0 {width} 44" role="img" aria-label="{label}"><title>{label}</title><rect class="tl-base" x="0" y="10" width="{width}" height="12"/>"#
    );
    for e in episodes {
        let (a, b) = (x(e.first.max(first)), x(e.last.min(last).plus(1)));
        let _ = write!(
            s,
            r#"<rect class="tl-silent" x="{a:.1}" y="10" width="{:.1}" height="12"/>"#,
            (b - a).max(2.0)
        );
    }
    for d in alerts.iter().filter(|d| **d >= first && **d <= last) {
        let _ = write!(
            s,
            r#"<path class="tl-alert" d="M{0:.1} 2 L{1:.1} 8 L{2:.1} 2 Z"/>"#,
            x(*d) - 4.0,
            x(*d),
            x(*d) + 4.0
        );
    }
    // Month ticks.
    use chrono::Datelike;
    let mut d = first;
    while d <= last {
        let date = d.date();
        if date.day() == 1 {
            let _ = write!(
                s,
                r#"<line class="tl-tick" x1="{0:.1}" y1="22" x2="{0:.1}" y2="28"/><text x="{0:.1}" y="40" class="tl-label">{1}</text>"#,
                x(d),
                date.format("%b")
            );
        }
        d = d.plus(1);
    }
    s.push_str("</svg>");
    s
}

/// Bars for two series side by side (current, proposed) per label: the
/// tuning page's alerts per week.
pub fn paired_bars(rows: &[(String, usize, usize)], width: u32) -> String {
    let max = rows
        .iter()
        .map(|(_, a, b)| (*a).max(*b))
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let row_h = 18u32;
    let label_w = 80u32;
    let h = row_h * rows.len() as u32 + 4;
    let bar_w = (width - label_w - 40) as f64;
    let mut s = format!(
        r#"<svg class="bars" width="{width}" height="{h}" viewBox="0 0 {width} {h}" role="img" aria-label="alerts per week, current and proposed settings">"#
    );
    for (i, (label, a, b)) in rows.iter().enumerate() {
        let y = i as u32 * row_h + 2;
        // Labels here are ISO weeks, made by lull.
        let _ = write!(
            s,
            r#"<text x="0" y="{}" class="bar-label">{}</text><rect class="bar-current" x="{label_w}" y="{y}" width="{:.1}" height="7"/><rect class="bar-proposed" x="{label_w}" y="{}" width="{:.1}" height="7"/><text x="{:.1}" y="{}" class="bar-value">{a} → {b}</text>"#,
            y + 12,
            escape(label),
            bar_w * *a as f64 / max,
            y + 8,
            bar_w * *b as f64 / max,
            label_w as f64 + bar_w * (*a).max(*b) as f64 / max + 4.0,
            y + 12,
        );
    }
    s.push_str("</svg>");
    s
}

/// Text for SVG markup built here.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pictures_are_well_formed_and_labelled() {
        let s = sparkline(&[3, 5, 0, 8], 80, 20);
        assert!(s.starts_with("<svg") && s.ends_with("</svg>"));
        assert!(s.contains("3, 5, 0, 8") && s.contains("<polyline"));
        // One point is no line.
        assert!(!sparkline(&[3], 80, 20).contains("polyline"));
        let strip = coverage_strip(
            &[Cover::Polled, Cover::Missing, Cover::Imported],
            Day(20_000),
        );
        assert_eq!(strip.matches("<rect").count(), 3);
        assert!(strip.contains("2 of the last 3 days covered (1 by polls, 1 by imports)"));
        let t = timeline(
            Day(20_000),
            Day(20_100),
            &[Span {
                first: Day(20_050),
                last: Day(20_060),
            }],
            &[Day(20_052), Day(30_000)],
            500,
        );
        assert_eq!(t.matches("tl-silent").count(), 1);
        assert_eq!(t.matches("tl-alert").count(), 1);
        let b = paired_bars(&[("<w>".into(), 1, 2)], 400);
        assert!(b.contains("&lt;w&gt;") && !b.contains("<w>"));
    }
}
