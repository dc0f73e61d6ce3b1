//! The tuning page: a community manager picks a range and edits
//! thresholds (for everyone, or per segment); lull replays the live data
//! with the running settings and with the edited ones — the running config
//! does not change — and shows both side by side: alerts per week, per CSM
//! and per segment, accounts that would be added or dropped, and how each
//! compares with the feedback CSMs gave. The TOML to paste is one click
//! away.
//!
//! A replay of every account takes a while at scale, so it runs in the
//! background (one at a time); its page refreshes itself until done.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::session::Viewer;
use super::views::{self, Layout};
use super::{ConsoleState, html, message};
use crate::app::feedback::FeedbackComparison;
use crate::app::ops::{BacktestOutcome, BacktestRequest};
use crate::app::{App, AppError};
use crate::backtest::Summary;
use crate::detect::params::Thresholds;
use crate::types::Day;

/// Tuning runs remembered (their pages stay reachable).
const KEEP: usize = 20;
/// Accounts listed as added or dropped.
const LISTED: usize = 200;

/// A threshold the form offers.
struct Key {
    name: &'static str,
    integer: bool,
    help: &'static str,
}

const KEYS: &[Key] = &[
    Key {
        name: "recent_days",
        integer: true,
        help: "days in the window judged",
    },
    Key {
        name: "max_recent_days",
        integer: true,
        help: "the window grows to this for low-volume accounts",
    },
    Key {
        name: "baseline_days",
        integer: true,
        help: "days of the account's own normal before the window",
    },
    Key {
        name: "min_expected",
        integer: false,
        help: "fewer expected events: too little data to judge",
    },
    Key {
        name: "drop_ratio",
        integer: false,
        help: "silent at or below this share of expected",
    },
    Key {
        name: "max_p",
        integer: false,
        help: "and when this little is this unlikely by chance",
    },
    Key {
        name: "recover_ratio",
        integer: false,
        help: "back to normal at or above this share",
    },
    Key {
        name: "recover_days",
        integer: true,
        help: "for this many days in a row",
    },
    Key {
        name: "min_coverage",
        integer: false,
        help: "windows less covered are unknown",
    },
    Key {
        name: "quorum",
        integer: false,
        help: "share of channel weight that must be silent",
    },
    Key {
        name: "reminder_days",
        integer: true,
        help: "remind about a still-silent account (0 = never)",
    },
    Key {
        name: "silent_days",
        integer: true,
        help: "silent tier: days without any activity before an alert",
    },
    Key {
        name: "early_silent_days",
        integer: true,
        help: "silent tier: sooner, when fewer of its people were around",
    },
    Key {
        name: "max_breadth",
        integer: false,
        help: "\"fewer people\": at most this share of its usual number",
    },
    Key {
        name: "cooldown_days",
        integer: true,
        help: "a new silence this soon after an alert is muted",
    },
    Key {
        name: "min_events",
        integer: false,
        help: "silent tier: events needed in the year before",
    },
    Key {
        name: "min_active_days",
        integer: true,
        help: "silent tier: active days needed in the year before",
    },
];

fn current(t: &Thresholds, key: &str) -> String {
    match key {
        "recent_days" => t.recent_days.to_string(),
        "max_recent_days" => t.max_recent_days.to_string(),
        "baseline_days" => t.baseline_days.to_string(),
        "min_expected" => t.min_expected.to_string(),
        "drop_ratio" => t.drop_ratio.to_string(),
        "max_p" => t.max_p.to_string(),
        "recover_ratio" => t.recover_ratio.to_string(),
        "recover_days" => t.recover_days.to_string(),
        "min_coverage" => t.min_coverage.to_string(),
        "quorum" => t.quorum.to_string(),
        "reminder_days" => t.reminder_days.to_string(),
        "silent_days" => t.silent_days.to_string(),
        "early_silent_days" => t.early_silent_days.to_string(),
        "max_breadth" => t.max_breadth.to_string(),
        "cooldown_days" => t.cooldown_days.to_string(),
        "min_events" => t.min_events.to_string(),
        "min_active_days" => t.min_active_days.to_string(),
        _ => String::new(),
    }
}

/// One tuning run.
pub struct Job {
    pub id: String,
    pub by: String,
    from: Day,
    to: Day,
    overrides: serde_json::Value,
    /// Known disengagements to score both replays against.
    churned: Option<crate::score::ChurnHistory>,
    /// The edited form, to edit again.
    form: Vec<(String, String)>,
    toml: String,
    total: usize,
    /// 0: replaying the running settings, 1: the proposed ones, 2: done.
    phase: AtomicU8,
    done: AtomicUsize,
    outcome: Mutex<Option<Result<Arc<Comparison>, AppError>>>,
}

/// Tuning runs: the last [`KEEP`], one running at a time.
#[derive(Default)]
pub struct Jobs {
    list: Mutex<VecDeque<Arc<Job>>>,
    running: AtomicBool,
}

impl Jobs {
    fn get(&self, id: &str) -> Option<Arc<Job>> {
        self.list
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|j| j.id == id)
            .cloned()
    }

    fn add(&self, job: Arc<Job>) {
        let mut l = self.list.lock().unwrap_or_else(|p| p.into_inner());
        l.push_back(job);
        while l.len() > KEEP {
            l.pop_front();
        }
    }

    fn recent(&self) -> Vec<Arc<Job>> {
        self.list
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .rev()
            .cloned()
            .collect()
    }
}

/// The two replays side by side.
pub struct Comparison {
    current: Summary,
    proposed: Summary,
    added: Vec<(String, String, String)>,
    dropped: Vec<(String, String, String)>,
    added_total: usize,
    dropped_total: usize,
    feedback_current: FeedbackComparison,
    feedback_proposed: FeedbackComparison,
    scores_current: Option<crate::score::Scores>,
    scores_proposed: Option<crate::score::Scores>,
    warnings: Vec<String>,
}

fn compare(app: &App, current: &BacktestOutcome, proposed: &BacktestOutcome) -> Comparison {
    let alerted = |o: &BacktestOutcome| -> BTreeSet<String> {
        o.backtest.alerts().map(|n| n.account.to_string()).collect()
    };
    let (a, b) = (alerted(current), alerted(proposed));
    let live = app.live();
    let describe = |id: &String| {
        live.registry.by_id(id).map_or_else(
            || (id.clone(), id.clone(), String::new()),
            |i| {
                let acc = live.registry.get(i);
                (id.clone(), acc.name.clone(), acc.csm.clone())
            },
        )
    };
    let added: Vec<_> = b.difference(&a).collect();
    let dropped: Vec<_> = a.difference(&b).collect();
    let mut warnings = current.warnings.clone();
    for w in &proposed.warnings {
        if !warnings.contains(w) {
            warnings.push(w.clone());
        }
    }
    Comparison {
        current: current.backtest.summary(),
        proposed: proposed.backtest.summary(),
        added_total: added.len(),
        dropped_total: dropped.len(),
        added: added.into_iter().take(LISTED).map(describe).collect(),
        dropped: dropped.into_iter().take(LISTED).map(describe).collect(),
        feedback_current: current.feedback.clone(),
        feedback_proposed: proposed.feedback.clone(),
        scores_current: current.scores.clone(),
        scores_proposed: proposed.scores.clone(),
        warnings,
    }
}

fn admin_only(v: &Viewer) -> Option<Response> {
    (!v.admin).then(|| {
        message(
            StatusCode::FORBIDDEN,
            "For admins",
            "Tuning is for lull's admins (`[console] admins` in the config).",
        )
    })
}

struct Field {
    name: String,
    value: String,
    placeholder: String,
    step: &'static str,
}

struct FormRow {
    key: &'static str,
    help: &'static str,
    fields: Vec<Field>,
}

#[derive(Template)]
#[template(path = "console/tuning.html")]
struct TuningPage {
    layout: Layout,
    from: String,
    to: String,
    columns: Vec<String>,
    rows: Vec<FormRow>,
    /// Known disengagements as typed (CSV).
    churned: String,
    error: Option<String>,
    runs: Vec<(String, String, &'static str)>,
}

#[derive(Debug, Default, Deserialize)]
pub struct EditQuery {
    /// A run whose settings fill the form.
    #[serde(default)]
    pub from_run: Option<String>,
}

fn segments(app: &App) -> Vec<String> {
    let live = app.live();
    let mut s: BTreeSet<String> = live.detect.segments.keys().cloned().collect();
    for a in live.registry.accounts() {
        if let Some(seg) = &a.segment {
            s.insert(seg.clone());
        }
    }
    s.into_iter().collect()
}

fn tuning_page(
    s: &ConsoleState,
    v: &Viewer,
    values: &BTreeMap<String, String>,
    error: Option<String>,
) -> TuningPage {
    let live = s.app.live();
    let today = s.app.today();
    let segs = segments(&s.app);
    let mut columns = vec!["all accounts".to_string()];
    columns.extend(segs.iter().map(|x| format!("segment {x}")));
    let rows = KEYS
        .iter()
        .map(|k| {
            let mut fields = vec![Field {
                name: format!("default.{}", k.name),
                value: values
                    .get(&format!("default.{}", k.name))
                    .cloned()
                    .unwrap_or_default(),
                placeholder: current(&live.detect.defaults, k.name),
                step: if k.integer { "1" } else { "any" },
            }];
            for seg in &segs {
                let name = format!("segment.{seg}.{}", k.name);
                fields.push(Field {
                    value: values.get(&name).cloned().unwrap_or_default(),
                    placeholder: current(live.detect.for_segment(Some(seg)), k.name),
                    name,
                    step: if k.integer { "1" } else { "any" },
                });
            }
            FormRow {
                key: k.name,
                help: k.help,
                fields,
            }
        })
        .collect();
    TuningPage {
        layout: Layout::signed_in(v, "tuning"),
        from: values
            .get("from")
            .cloned()
            .unwrap_or_else(|| today.plus(-182).to_string()),
        to: values
            .get("to")
            .cloned()
            .unwrap_or_else(|| today.to_string()),
        columns,
        rows,
        churned: values.get("churned").cloned().unwrap_or_default(),
        error,
        runs: s
            .jobs
            .recent()
            .iter()
            .map(|j| {
                (
                    j.id.clone(),
                    format!("{} to {}, by {}", j.from, j.to, j.by),
                    match j.phase.load(Ordering::SeqCst) {
                        2 => "done",
                        _ => "running",
                    },
                )
            })
            .collect(),
    }
}

/// The tuning form (filled from an earlier run with `?from_run=`).
pub async fn form(
    State(s): State<ConsoleState>,
    v: Viewer,
    Query(q): Query<EditQuery>,
) -> Response {
    if let Some(r) = admin_only(&v) {
        return r;
    }
    let values: BTreeMap<String, String> = q
        .from_run
        .and_then(|id| s.jobs.get(&id))
        .map(|j| j.form.iter().cloned().collect())
        .unwrap_or_default();
    html(&tuning_page(&s, &v, &values, None))
}

/// The form's values as `[detect]` overrides, checked key by key.
fn overrides(
    form: &BTreeMap<String, String>,
    segs: &[String],
) -> Result<serde_json::Value, String> {
    let mut top = serde_json::Map::new();
    let mut per_segment: BTreeMap<String, serde_json::Map<String, serde_json::Value>> =
        BTreeMap::new();
    for (name, value) in form {
        let value = value.trim();
        if value.is_empty() {
            continue;
        }
        let (scope, key) = if let Some(k) = name.strip_prefix("default.") {
            (None, k)
        } else if let Some(rest) = name.strip_prefix("segment.") {
            match rest.rsplit_once('.') {
                Some((seg, k)) if segs.iter().any(|s| s == seg) => (Some(seg), k),
                _ => return Err(format!("`{name}` is not a field of this form")),
            }
        } else {
            continue;
        };
        let Some(spec) = KEYS.iter().find(|k| k.name == key) else {
            return Err(format!("`{key}` is not a threshold the form offers"));
        };
        let v = if spec.integer {
            value
                .parse::<u32>()
                .map(serde_json::Value::from)
                .map_err(|_| format!("{key} must be a whole number, not `{value}`"))?
        } else {
            value
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .map(serde_json::Value::from)
                .ok_or_else(|| format!("{key} must be a number, not `{value}`"))?
        };
        match scope {
            None => {
                top.insert(key.to_string(), v);
            }
            Some(seg) => {
                per_segment
                    .entry(seg.to_string())
                    .or_default()
                    .insert(key.to_string(), v);
            }
        }
    }
    if !per_segment.is_empty() {
        top.insert(
            "segment".into(),
            serde_json::Value::Object(
                per_segment
                    .into_iter()
                    .map(|(k, v)| (k, serde_json::Value::Object(v)))
                    .collect(),
            ),
        );
    }
    Ok(serde_json::Value::Object(top))
}

/// What to paste into the config for `overrides`.
fn toml_snippet(overrides: &serde_json::Value) -> String {
    let mut doc = toml::Table::new();
    if let Ok(v) = serde_json::from_value::<toml::Value>(overrides.clone()) {
        doc.insert("detect".into(), v);
    }
    toml::to_string(&doc).unwrap_or_default()
}

/// Starts a tuning run.
pub async fn start(
    State(s): State<ConsoleState>,
    v: Viewer,
    axum::Form(f): axum::Form<Vec<(String, String)>>,
) -> Response {
    if let Some(r) = admin_only(&v) {
        return r;
    }
    let form: BTreeMap<String, String> = f.into_iter().collect();
    if !v.csrf_ok(form.get("csrf").map_or("", String::as_str)) {
        return super::pages::csrf_refused();
    }
    let values: BTreeMap<String, String> = form
        .iter()
        .filter(|(k, _)| k.as_str() != "csrf")
        .map(|(k, x)| (k.clone(), x.clone()))
        .collect();
    let again = |e: String| {
        let mut r = html(&tuning_page(&s, &v, &values, Some(e)));
        *r.status_mut() = StatusCode::BAD_REQUEST;
        r
    };
    let day = |k: &str| -> Result<Day, String> {
        let x = values.get(k).map(|x| x.trim()).unwrap_or("");
        x.parse::<Day>()
            .map_err(|_| format!("`{x}` is not a day (YYYY-MM-DD) for `{k}`"))
    };
    let (from, to) = match (day("from"), day("to")) {
        (Ok(a), Ok(b)) if a <= b => (a, b),
        (Ok(a), Ok(b)) => return again(format!("from {a} is after to {b}")),
        (Err(e), _) | (_, Err(e)) => return again(e),
    };
    let over = match overrides(&values, &segments(&s.app)) {
        Ok(o) => o,
        Err(e) => return again(e),
    };
    let churned = match values.get("churned").map(|c| c.trim()) {
        None | Some("") => None,
        Some(text) => match crate::score::read_churned(text.as_bytes(), "known disengagements") {
            Ok(c) => Some(c),
            Err(e) => return again(e),
        },
    };
    // The thresholds are checked as strictly as the config file, now.
    let app = s.app.clone();
    let o2 = over.clone();
    match tokio::task::spawn_blocking(move || app.detect_with(&o2)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return again(e.message),
        Err(e) => return again(e.to_string()),
    }
    if s.jobs.running.swap(true, Ordering::SeqCst) {
        return again(
            "A tuning run is under way; this one can start when it is done (see the list below)."
                .into(),
        );
    }
    let job = Arc::new(Job {
        id: super::tokens::random_token(),
        by: v.who.clone(),
        from,
        to,
        toml: toml_snippet(&over),
        overrides: over,
        churned,
        form: values.into_iter().collect(),
        total: s.app.live().registry.len(),
        phase: AtomicU8::new(0),
        done: AtomicUsize::new(0),
        outcome: Mutex::new(None),
    });
    s.jobs.add(job.clone());
    let (app, jobs, j) = (s.app.clone(), s.jobs.clone(), job.clone());
    tokio::task::spawn_blocking(move || {
        let span = tracing::info_span!("tuning", by = %j.by, from = %j.from, to = %j.to);
        let _e = span.enter();
        let run = |detect: Option<serde_json::Value>| {
            app.backtest(
                &BacktestRequest {
                    from: j.from,
                    to: j.to,
                    detect,
                    report: false,
                    churned: j.churned.clone(),
                },
                |n| j.done.store(n, Ordering::Relaxed),
            )
        };
        let result = run(None).and_then(|current| {
            j.phase.store(1, Ordering::SeqCst);
            j.done.store(0, Ordering::Relaxed);
            let proposed = run(Some(j.overrides.clone()))?;
            Ok(Arc::new(compare(&app, &current, &proposed)))
        });
        if let Err(e) = &result {
            tracing::warn!(error = %e, "tuning run failed");
        } else {
            tracing::info!("tuning run done");
        }
        *j.outcome.lock().unwrap_or_else(|p| p.into_inner()) = Some(result);
        j.phase.store(2, Ordering::SeqCst);
        jobs.running.store(false, Ordering::SeqCst);
    });
    Redirect::to(&format!("/c/tuning/{}", job.id)).into_response()
}

struct Line {
    label: String,
    current: String,
    proposed: String,
}

/// One number of a tier's score.
type ScoreOf = fn(&crate::score::TierScore) -> Option<f64>;

/// Recall, lead, false alerts and precision per tier, side by side.
fn score_lines(a: &crate::score::Scores, b: &crate::score::Scores) -> Vec<Line> {
    let opt = |x: Option<f64>| x.map_or_else(|| "–".to_string(), |v| format!("{v}"));
    let mut out = Vec::new();
    for (tier, what) in [("silent", "silent alerts"), ("watch", "watch list")] {
        let (Some(x), Some(y)) = (a.tiers.get(tier), b.tiers.get(tier)) else {
            continue;
        };
        let rows: [(&str, ScoreOf); 4] = [
            ("recall", |t| t.recall),
            ("median lead (days before the churn date)", |t| {
                t.median_lead_days
            }),
            ("false alerts per account-year", |t| {
                t.noise_all_per_acct_year
            }),
            ("precision", |t| t.precision),
        ];
        for (label, get) in rows {
            out.push(Line {
                label: format!("{what}: {label}"),
                current: opt(get(x)),
                proposed: opt(get(y)),
            });
        }
    }
    out
}

#[derive(Template)]
#[template(path = "console/tuning_run.html")]
struct RunPage {
    layout: Layout,
    id: String,
    from: String,
    to: String,
    by: String,
    running: bool,
    phase: &'static str,
    done: usize,
    total: usize,
    error: Option<String>,
    toml: String,
    summary: Vec<Line>,
    weeks: String,
    per_csm: Vec<Line>,
    per_segment: Vec<Line>,
    added: Vec<(String, String, String)>,
    dropped: Vec<(String, String, String)>,
    added_total: usize,
    dropped_total: usize,
    feedback: Vec<Line>,
    /// Per tier against the known disengagements, when given.
    scores: Vec<Line>,
    warnings: Vec<String>,
}

fn pairs(a: &BTreeMap<String, usize>, b: &BTreeMap<String, usize>) -> Vec<Line> {
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .map(|k| Line {
            label: k.clone(),
            current: a.get(k).copied().unwrap_or(0).to_string(),
            proposed: b.get(k).copied().unwrap_or(0).to_string(),
        })
        .collect()
}

/// A tuning run: progress while it runs, then the comparison.
pub async fn show(State(s): State<ConsoleState>, v: Viewer, Path(id): Path<String>) -> Response {
    if let Some(r) = admin_only(&v) {
        return r;
    }
    let Some(j) = s.jobs.get(&id) else {
        return message(
            StatusCode::NOT_FOUND,
            "No such tuning run",
            "Runs are kept while lull runs (the last 20). Start a new one on the tuning page.",
        );
    };
    let phase = j.phase.load(Ordering::SeqCst);
    let outcome = j.outcome.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut page = RunPage {
        layout: Layout::signed_in(&v, "tuning"),
        id: j.id.clone(),
        from: j.from.to_string(),
        to: j.to.to_string(),
        by: j.by.clone(),
        running: phase < 2,
        phase: if phase == 0 {
            "replaying with the running settings"
        } else {
            "replaying with the proposed settings"
        },
        done: j.done.load(Ordering::Relaxed),
        total: j.total,
        error: None,
        toml: j.toml.clone(),
        summary: Vec::new(),
        weeks: String::new(),
        per_csm: Vec::new(),
        per_segment: Vec::new(),
        added: Vec::new(),
        dropped: Vec::new(),
        added_total: 0,
        dropped_total: 0,
        feedback: Vec::new(),
        scores: Vec::new(),
        warnings: Vec::new(),
    };
    match outcome {
        None => {}
        Some(Err(e)) => page.error = Some(e.message.clone()),
        Some(Ok(c)) => {
            let (a, b) = (&c.current, &c.proposed);
            let line = |label: &str, x: String, y: String| Line {
                label: label.into(),
                current: x,
                proposed: y,
            };
            page.summary = vec![
                line("silence alerts", a.alerts.to_string(), b.alerts.to_string()),
                line(
                    "reminders",
                    a.reminders.to_string(),
                    b.reminders.to_string(),
                ),
                line(
                    "recoveries",
                    a.recoveries.to_string(),
                    b.recoveries.to_string(),
                ),
                line(
                    "watch-list entries (weekly digests)",
                    a.watch.to_string(),
                    b.watch.to_string(),
                ),
                line(
                    "accounts alerted",
                    format!("{} of {}", a.accounts_alerted, a.accounts),
                    format!("{} of {}", b.accounts_alerted, b.accounts),
                ),
                line(
                    "alerts per account-year",
                    format!("{:.2}", a.per_account_year),
                    format!("{:.2}", b.per_account_year),
                ),
            ];
            let weeks: BTreeSet<&String> = a.per_week.keys().chain(b.per_week.keys()).collect();
            let rows: Vec<(String, usize, usize)> = weeks
                .into_iter()
                .map(|w| {
                    (
                        w.clone(),
                        a.per_week.get(w).copied().unwrap_or(0),
                        b.per_week.get(w).copied().unwrap_or(0),
                    )
                })
                .collect();
            page.weeks = if rows.is_empty() {
                String::new()
            } else {
                views::paired_bars(&rows, 640)
            };
            page.per_csm = pairs(&a.per_csm, &b.per_csm);
            page.per_segment = pairs(&a.per_segment, &b.per_segment);
            page.added = c.added.clone();
            page.dropped = c.dropped.clone();
            page.added_total = c.added_total;
            page.dropped_total = c.dropped_total;
            for verdict in crate::app::feedback::Verdict::ALL {
                let k = verdict.as_str();
                let (Some(g1), g2) = (
                    c.feedback_current.given.get(k),
                    c.feedback_proposed.given.get(k),
                ) else {
                    continue;
                };
                let kept = |f: &FeedbackComparison| f.still_alerted.get(k).copied().unwrap_or(0);
                page.feedback.push(Line {
                    label: format!("alerts marked \"{}\" still alerted", verdict.label()),
                    current: format!("{} of {g1}", kept(&c.feedback_current)),
                    proposed: format!("{} of {}", kept(&c.feedback_proposed), g2.unwrap_or(g1)),
                });
            }
            if let (Some(a), Some(b)) = (&c.scores_current, &c.scores_proposed) {
                page.scores = score_lines(a, b);
            }
            page.warnings = c.warnings.clone();
        }
    }
    let mut r = html(&page);
    if phase < 2 {
        // Refreshes itself without JavaScript until the run is done.
        if let Ok(v) = axum::http::HeaderValue::from_str("2") {
            r.headers_mut().insert("refresh", v);
        }
    }
    r
}
