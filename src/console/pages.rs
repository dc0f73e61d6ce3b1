//! The console's pages: My accounts, one account, alerts, sources, and the
//! pages behind the links in alert e-mails. Each handler checks who is
//! looking, calls the application layer off the async workers, and fills
//! a template; forms check their CSRF token first.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::session::Viewer;
use super::tokens::{self, Action, ActionClaims, TokenError};
use super::views::{self, Cover, Layout};
use super::{ConsoleState, html, message};
use crate::alert::compose::{channel_label, channel_view};
use crate::app::accounts::{AccountDetail, AccountsQuery, Sort};
use crate::app::feedback::{Feedback, FeedbackRequest, Verdict};
use crate::app::ops::SnoozeRequest;
use crate::app::{App, AppError};
use crate::detect::{ChannelStatus, NoticeKind};
use crate::types::Day;

/// Accounts per page of My accounts.
pub const PAGE: usize = 100;
/// Days a coverage strip shows.
pub const STRIP_DAYS: i32 = 90;
/// Alerts listed on the alerts page.
pub const ALERTS_SHOWN: usize = 500;
/// Width of an account page's charts, in pixels (they shrink to fit).
pub const CHART_WIDTH: u32 = 720;

use crate::api::blocking;

/// An application error as a page.
pub fn error_page(e: &AppError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let title = match e.status {
        404 => "Not found",
        400 => "That did not work",
        403 => "Not yours",
        _ => "lull could not do that",
    };
    message(status, title, &e.message)
}

pub fn csrf_refused() -> Response {
    message(
        StatusCode::FORBIDDEN,
        "Refused",
        "This form is not from your current session (it may be from an old page, or another site). Reload the page and try again.",
    )
}

fn forbidden(csm: &str) -> Response {
    message(
        StatusCode::FORBIDDEN,
        "Not your account",
        &format!(
            "This account belongs to {csm}. Only they and lull's admins can see or change it."
        ),
    )
}

// ---------------------------------------------------------------- My accounts

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub q: Option<String>,
    #[serde(default)]
    pub segment: Option<String>,
    #[serde(default)]
    pub csm: Option<String>,
    #[serde(default)]
    pub page: Option<usize>,
}

struct Row {
    id: String,
    name: String,
    state: &'static str,
    class: &'static str,
    since: Option<String>,
    spark: String,
    last: Option<String>,
    events: u64,
    segment: Option<String>,
    csm: String,
    snoozed: Option<String>,
}

struct Choice {
    value: String,
    label: String,
    selected: bool,
}

#[derive(Template)]
#[template(path = "console/accounts.html")]
struct AccountsPageT {
    layout: Layout,
    heading: String,
    today: String,
    rows: Vec<Row>,
    total: usize,
    counts: Vec<(String, &'static str, usize)>,
    states: Vec<Choice>,
    segments: Vec<Choice>,
    csms: Vec<Choice>,
    q: String,
    first: usize,
    last: usize,
    prev: Option<String>,
    next: Option<String>,
}

fn nonempty(s: Option<String>) -> Option<String> {
    s.map(|x| x.trim().to_string()).filter(|x| !x.is_empty())
}

/// My accounts: a CSM's accounts (everyone's for an admin), what needs
/// attention first.
pub async fn my_accounts(
    State(s): State<ConsoleState>,
    v: Viewer,
    Query(q): Query<ListQuery>,
) -> Response {
    let csm = if v.admin {
        nonempty(q.csm.clone())
    } else {
        Some(v.who.clone())
    };
    let page_no = q.page.unwrap_or(0);
    let query = AccountsQuery {
        csm: csm.clone(),
        state: nonempty(q.state.clone()),
        segment: nonempty(q.segment.clone()),
        q: nonempty(q.q.clone()),
        sort: Sort::Attention,
        offset: Some(page_no.saturating_mul(PAGE)),
        limit: Some(PAGE),
        ..AccountsQuery::default()
    };
    let app = s.app.clone();
    let qq = query.clone();
    let page = match blocking(move || app.accounts(&qq)).await {
        Ok(p) => p,
        Err(e) => return error_page(&e),
    };
    let live = s.app.live();
    let mut segments = BTreeSet::new();
    let mut csms = BTreeSet::new();
    for a in live.registry.accounts() {
        if let Some(seg) = &a.segment {
            segments.insert(seg.clone());
        }
        csms.insert(a.csm.to_lowercase());
    }
    let today = page.at;
    let rows = page
        .accounts
        .iter()
        .map(|a| {
            let (state, class) = views::account_label(a);
            Row {
                id: a.account.to_string(),
                name: a.name.clone(),
                state,
                class,
                since: a.silent_since.map(|d| views::day_ago(d, today)),
                spark: views::sparkline(&a.weekly, 96, 22),
                last: a.last_activity.map(|d| match &a.last_seen_by {
                    Some(who) => format!("{} by {who}", views::day_ago(d, today)),
                    None => views::day_ago(d, today),
                }),
                events: a.events_8w,
                segment: a.segment.clone(),
                csm: a.csm.clone(),
                snoozed: a.snoozed.as_ref().map(|z| z.until.to_string()),
            }
        })
        .collect();
    let link = |p: usize| {
        let mut ser = url::form_urlencoded::Serializer::new(String::new());
        for (k, val) in [
            ("state", &query.state),
            ("q", &query.q),
            ("segment", &query.segment),
            ("csm", &if v.admin { csm.clone() } else { None }),
        ] {
            if let Some(x) = val {
                ser.append_pair(k, x);
            }
        }
        ser.append_pair("page", &p.to_string());
        format!("/c/?{}", ser.finish())
    };
    let shown_last = page.offset + page.accounts.len();
    let heading = match (&csm, v.admin) {
        (Some(c), true) => format!("Accounts of {c}"),
        (None, true) => "Everyone's accounts".to_string(),
        _ => "My accounts".to_string(),
    };
    let state_choices = ["silent", "unknown", "insufficient_data", "engaged"];
    html(&AccountsPageT {
        layout: Layout::signed_in(&v, "accounts"),
        heading,
        today: today.to_string(),
        total: page.total,
        counts: state_choices
            .iter()
            .map(|st| {
                let (label, class) = views::state_label(st);
                (
                    label.to_string(),
                    class,
                    page.states.get(*st).copied().unwrap_or(0),
                )
            })
            .collect(),
        states: state_choices
            .iter()
            .map(|st| Choice {
                value: st.to_string(),
                label: views::state_label(st).0.to_string(),
                selected: query.state.as_deref() == Some(st),
            })
            .collect(),
        segments: segments
            .into_iter()
            .map(|seg| Choice {
                selected: query.segment.as_deref() == Some(&seg),
                label: seg.clone(),
                value: seg,
            })
            .collect(),
        csms: if v.admin {
            csms.into_iter()
                .map(|c| Choice {
                    selected: csm.as_deref() == Some(&c),
                    label: c.clone(),
                    value: c,
                })
                .collect()
        } else {
            Vec::new()
        },
        q: query.q.clone().unwrap_or_default(),
        rows,
        first: if page.accounts.is_empty() {
            0
        } else {
            page.offset + 1
        },
        last: shown_last,
        prev: (page_no > 0).then(|| link(page_no - 1)),
        next: (shown_last < page.total).then(|| link(page_no + 1)),
    })
}

// ---------------------------------------------------------------- one account

struct ChannelBlock {
    label: String,
    status: &'static str,
    class: &'static str,
    what: String,
    level: Option<String>,
    odds: Option<String>,
    community: Option<String>,
    chart: Option<String>,
}

struct AlertRow {
    day: String,
    kind: String,
    status: String,
    to: String,
    when: String,
    verdict: Option<String>,
    can_feedback: bool,
}

struct Event {
    day: String,
    what: String,
}

struct Person {
    who: String,
    channel: String,
    day: String,
}

struct SnoozeView {
    until: String,
    reason: String,
    by: String,
}

#[derive(Template)]
#[template(path = "console/account.html")]
struct AccountPageT {
    layout: Layout,
    /// Opened from an e-mail link without a session: nothing to change.
    link_mode: bool,
    id: String,
    name: String,
    csm: String,
    segment: Option<String>,
    state: &'static str,
    class: &'static str,
    since: Option<String>,
    /// "3 of the 8 people usually active in 90 days were active …".
    breadth: Option<String>,
    /// The day lull first judged the open episode silent.
    judged: Option<String>,
    last: Option<String>,
    snooze: Option<SnoozeView>,
    crm: Option<String>,
    identity: Vec<(String, String)>,
    channels: Vec<ChannelBlock>,
    timeline: String,
    events: Vec<Event>,
    alerts: Vec<AlertRow>,
    people: Vec<Person>,
    today: String,
    snooze_until: String,
    /// What the last form did.
    done: Option<&'static str>,
}

fn status_label(s: ChannelStatus) -> (&'static str, &'static str) {
    match s {
        ChannelStatus::Silent => ("silent", "silent"),
        ChannelStatus::Low => ("low", "low"),
        ChannelStatus::Normal => ("normal", "engaged"),
        ChannelStatus::InsufficientData => ("too little data", "thin"),
        ChannelStatus::Unknown => ("unknown (source not covering)", "unknown"),
    }
}

/// Everything an account's page shows.
fn account_page(
    app: &App,
    id: &str,
    layout: Layout,
    link_mode: bool,
) -> Result<AccountPageT, AppError> {
    let d: AccountDetail = app.account(id)?;
    let feedback = app.feedback(Some(id))?;
    let snooze = app.snooze_of(&d.account)?;
    let today = d.at;
    let (state, class) = views::account_label(&d.summary);
    // Quiet channels first: the one that went quiet is the one charted
    // first, not a sum of all.
    let mut channels: Vec<_> = d.channels.iter().collect();
    channels.sort_by_key(|c| match c.report.judgement.status {
        ChannelStatus::Silent => 0,
        ChannelStatus::Low => 1,
        ChannelStatus::Normal => 2,
        ChannelStatus::InsufficientData => 3,
        ChannelStatus::Unknown => 4,
    });
    let channels = channels
        .into_iter()
        .map(|c| {
            let words = channel_view(&c.report);
            let (status, class) = status_label(c.report.judgement.status);
            let quiet = (c.report.judgement.status == ChannelStatus::Silent)
                .then_some(c.report.quiet_since)
                .flatten();
            ChannelBlock {
                label: words.label,
                status,
                class,
                what: words.what,
                level: words.level,
                odds: words.odds,
                community: words.community,
                chart: crate::alert::chart::weekly_svg(&c.weekly, quiet, CHART_WIDTH).ok(),
            }
        })
        .collect();
    // Episodes from the replayed notices: silent .. recovered.
    let mut episodes = Vec::new();
    let mut open: Option<Day> = None;
    let mut events = Vec::new();
    for n in &d.notices {
        match n.notice {
            NoticeKind::Silent => {
                open = Some(n.date);
                events.push(Event {
                    day: n.date.to_string(),
                    what: format!(
                        "went quiet ({})",
                        n.channels
                            .iter()
                            .map(channel_label)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                });
            }
            NoticeKind::Reminder => events.push(Event {
                day: n.date.to_string(),
                what: "still quiet (reminder)".into(),
            }),
            NoticeKind::Recovered => {
                if let Some(start) = open.take() {
                    episodes.push(views::Span {
                        first: start,
                        last: n.date,
                    });
                }
                events.push(Event {
                    day: n.date.to_string(),
                    what: "active again".into(),
                });
            }
            NoticeKind::Watch => events.push(Event {
                day: n.date.to_string(),
                what: format!(
                    "on the watch list ({})",
                    n.people.clone().unwrap_or_else(|| format!(
                        "{:.0} of {:.1} expected",
                        n.observed, n.expected
                    ))
                ),
            }),
        }
    }
    if let Some(start) = open {
        episodes.push(views::Span {
            first: start,
            last: today,
        });
    }
    let by_notice: BTreeMap<(Day, String), &Feedback> = feedback
        .iter()
        .map(|f| ((f.day, f.kind.clone()), f))
        .collect();
    let mut alert_days = Vec::new();
    let mut alerts = Vec::new();
    for m in d.mail.iter().rev() {
        for (a, k) in m.accounts.iter().zip(&m.kinds) {
            if a != d.account.as_str() {
                continue;
            }
            alert_days.push(m.day);
            let verdict = by_notice.get(&(m.day, k.clone())).map(|f| {
                format!(
                    "{} — {} on {}",
                    f.verdict.label(),
                    f.by,
                    f.at.format("%Y-%m-%d")
                )
            });
            alerts.push(AlertRow {
                day: m.day.to_string(),
                kind: k.clone(),
                status: format!("{:?}", m.status).to_lowercase(),
                to: m.to.clone(),
                when: m
                    .sent_at
                    .or(m.queued_at)
                    .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
                    .unwrap_or_default(),
                verdict,
                can_feedback: k != "recovered",
            });
        }
    }
    for f in &feedback {
        events.push(Event {
            day: f.at.format("%Y-%m-%d").to_string(),
            what: format!(
                "{} said the {} alert of {} was {}",
                f.by,
                f.kind,
                f.day,
                f.verdict.label()
            ),
        });
    }
    if let Some(z) = &snooze {
        events.push(Event {
            day: z.set_at.format("%Y-%m-%d").to_string(),
            what: format!(
                "snoozed until {} by {}: {}",
                z.until,
                z.by.as_deref().unwrap_or("someone"),
                z.reason
            ),
        });
    }
    events.sort_by(|a, b| b.day.cmp(&a.day));
    events.truncate(60);
    let first = today.plus(-364);
    let mut people: Vec<Person> = d
        .channels
        .iter()
        .filter_map(|c| {
            let who = c.report.last_seen_by.clone()?;
            let day = c.report.last_activity?;
            Some(Person {
                who,
                channel: channel_label(&c.report.channel),
                day: views::day_ago(day, today),
            })
        })
        .collect();
    people.sort_by(|a, b| b.day.cmp(&a.day));
    let mut identity = Vec::new();
    if !d.domains.is_empty() {
        identity.push(("domains".to_string(), d.domains.join(", ")));
    }
    if !d.emails.is_empty() {
        identity.push(("e-mail addresses".to_string(), d.emails.join(", ")));
    }
    for (source, handles) in &d.handles {
        identity.push((format!("handles in {source}"), handles.join(", ")));
    }
    let crm = app
        .config
        .console
        .crm_url
        .as_ref()
        .map(|u| u.replace("{id}", &url_path_segment(d.account.as_str())));
    Ok(AccountPageT {
        layout,
        link_mode,
        id: d.account.to_string(),
        name: d.name.clone(),
        csm: d.csm.clone(),
        segment: d.segment.clone(),
        state,
        class,
        since: d
            .episode
            .as_ref()
            .filter(|_| d.summary.state == "silent")
            .and_then(|e| e.since)
            .or(d.summary.silent_since)
            .filter(|_| d.summary.state == "silent")
            .map(|x| views::day_ago(x, today)),
        breadth: d.quiet.as_ref().and_then(|q| q.people.as_ref()).map(|b| {
            b.sentence(&format!(
                "in the {} days up to its last activity",
                b.window_days
            ))
        }),
        judged: d
            .episode
            .as_ref()
            .filter(|_| d.summary.state == "silent")
            .map(|e| e.started.to_string()),
        last: d
            .summary
            .last_activity
            .map(|x| match &d.summary.last_seen_by {
                Some(w) => format!("{} by {w}", views::day_ago(x, today)),
                None => views::day_ago(x, today),
            }),
        snooze: snooze.map(|z| SnoozeView {
            until: z.until.to_string(),
            reason: z.reason,
            by: z.by.unwrap_or_default(),
        }),
        crm,
        identity,
        channels,
        timeline: views::timeline(first, today, &episodes, &alert_days, CHART_WIDTH),
        events,
        alerts,
        people,
        today: today.to_string(),
        snooze_until: today.plus(super::config::EMAIL_SNOOZE_DAYS).to_string(),
        done: None,
    })
}

fn url_path_segment(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// Why `v` may not see account `id` (the page to answer with), if so.
fn refusal(app: &App, v: &Viewer, id: &str) -> Option<Response> {
    let live = app.live();
    match live.registry.by_id(id) {
        None => Some(error_page(&AppError::not_found(format!(
            "There is no account `{id}` in the accounts file."
        )))),
        Some(i) => {
            let csm = &live.registry.get(i).csm;
            (!v.can_see(csm)).then(|| forbidden(csm))
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct DoneQuery {
    #[serde(default)]
    pub done: Option<String>,
}

/// One account's page.
pub async fn account(
    State(s): State<ConsoleState>,
    v: Viewer,
    Path(id): Path<String>,
    Query(q): Query<DoneQuery>,
) -> Response {
    if let Some(r) = refusal(&s.app, &v, &id) {
        return r;
    }
    let app = s.app.clone();
    let layout = Layout::signed_in(&v, "accounts");
    match blocking(move || account_page(&app, &id, layout, false)).await {
        Ok(mut p) => {
            // Only fixed words: nothing from the query reaches the page.
            p.done = match q.done.as_deref() {
                Some("snoozed") => Some("Snoozed."),
                Some("unsnoozed") => Some("The snooze is lifted."),
                Some("feedback") => Some("Thank you: your feedback is recorded."),
                _ => None,
            };
            html(&p)
        }
        Err(e) => error_page(&e),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct SnoozeForm {
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pub until: String,
    #[serde(default)]
    pub reason: String,
}

fn back_to(id: &str, note: &str) -> Response {
    Redirect::to(&format!(
        "/c/accounts/{}?done={}",
        url_path_segment(id),
        url_path_segment(note)
    ))
    .into_response()
}

/// The snooze form.
pub async fn snooze(
    State(s): State<ConsoleState>,
    v: Viewer,
    Path(id): Path<String>,
    axum::Form(f): axum::Form<SnoozeForm>,
) -> Response {
    if !v.csrf_ok(&f.csrf) {
        return csrf_refused();
    }
    if let Some(r) = refusal(&s.app, &v, &id) {
        return r;
    }
    let until: Day = match f.until.trim().parse() {
        Ok(d) => d,
        Err(_) => {
            return error_page(&AppError::bad_request(format!(
                "`{}` is not a day (YYYY-MM-DD)",
                f.until
            )));
        }
    };
    let app = s.app.clone();
    let (by, id2) = (v.by(), id.clone());
    let req = SnoozeRequest {
        until,
        reason: f.reason,
    };
    match blocking(move || app.snooze(&id2, &req, &by)).await {
        Ok(_) => back_to(&id, "snoozed"),
        Err(e) => error_page(&e),
    }
}

/// Lifts a snooze.
pub async fn unsnooze(
    State(s): State<ConsoleState>,
    v: Viewer,
    Path(id): Path<String>,
    axum::Form(f): axum::Form<super::session::CsrfForm>,
) -> Response {
    if !v.csrf_ok(&f.csrf) {
        return csrf_refused();
    }
    if let Some(r) = refusal(&s.app, &v, &id) {
        return r;
    }
    let app = s.app.clone();
    let (by, id2) = (v.by(), id.clone());
    match blocking(move || app.unsnooze(&id2, &by)).await {
        Ok(_) => back_to(&id, "unsnoozed"),
        Err(e) => error_page(&e),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct FeedbackForm {
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pub day: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub verdict: String,
}

/// A feedback button on an account's page.
pub async fn feedback(
    State(s): State<ConsoleState>,
    v: Viewer,
    Path(id): Path<String>,
    axum::Form(f): axum::Form<FeedbackForm>,
) -> Response {
    if !v.csrf_ok(&f.csrf) {
        return csrf_refused();
    }
    if let Some(r) = refusal(&s.app, &v, &id) {
        return r;
    }
    let (Ok(day), Some(verdict)) = (f.day.parse::<Day>(), Verdict::parse(&f.verdict)) else {
        return error_page(&AppError::bad_request(
            "the feedback form is incomplete (day and verdict)",
        ));
    };
    let app = s.app.clone();
    let (who, id2) = (v.who.clone(), id.clone());
    let req = FeedbackRequest {
        day,
        kind: f.kind,
        verdict,
        note: None,
    };
    match blocking(move || app.give_feedback(&id2, &req, &who, "console")).await {
        Ok(_) => back_to(&id, "feedback"),
        Err(e) => error_page(&e),
    }
}

// ---------------------------------------------------------------- alerts

struct MailRow {
    day: String,
    status: String,
    receiver: String,
    to: String,
    subject: String,
    accounts: Vec<(String, String)>,
    attempts: u32,
    when: String,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "console/alerts.html")]
struct AlertsPageT {
    layout: Layout,
    rows: Vec<MailRow>,
    total: usize,
    counts: Vec<(String, usize)>,
}

/// What was queued, sent and failed, to whom, and why.
pub async fn alerts(State(s): State<ConsoleState>, v: Viewer) -> Response {
    let app = s.app.clone();
    let mail = match blocking(move || app.alerts()).await {
        Ok(m) => m,
        Err(e) => return error_page(&e),
    };
    let live = s.app.live();
    // A CSM sees the messages sent to them and those (to Slack, Teams, a
    // webhook) about their accounts.
    let theirs = |m: &crate::alert::MailRecord| {
        m.to.eq_ignore_ascii_case(&v.who)
            || m.accounts.iter().any(|a| {
                live.registry
                    .by_id(a)
                    .is_some_and(|i| live.registry.get(i).csm.eq_ignore_ascii_case(&v.who))
            })
    };
    let mine: Vec<_> = mail.into_iter().filter(|m| v.admin || theirs(m)).collect();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for m in &mine {
        *counts
            .entry(format!("{:?}", m.status).to_lowercase())
            .or_default() += 1;
    }
    let total = mine.len();
    let rows = mine
        .into_iter()
        .rev()
        .take(ALERTS_SHOWN)
        .map(|m| MailRow {
            day: m.day.to_string(),
            status: format!("{:?}", m.status).to_lowercase(),
            receiver: m.receiver.clone(),
            to: m.to.clone(),
            subject: m.subject.clone(),
            accounts: m
                .accounts
                .iter()
                .zip(&m.kinds)
                .map(|(a, k)| {
                    let known = live.registry.by_id(a).is_some();
                    (
                        if known { a.clone() } else { String::new() },
                        format!("{a} ({k})"),
                    )
                })
                .collect(),
            attempts: m.attempts,
            when: m
                .sent_at
                .or(m.last_attempt)
                .or(m.queued_at)
                .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
                .unwrap_or_default(),
            error: m.error.clone(),
        })
        .collect();
    html(&AlertsPageT {
        layout: Layout::signed_in(&v, "alerts"),
        rows,
        total,
        counts: counts.into_iter().collect(),
    })
}

// ---------------------------------------------------------------- sources

struct SourceRow {
    name: String,
    kind: String,
    url: Option<String>,
    state: &'static str,
    class: &'static str,
    last_day: Option<String>,
    last_success: Option<String>,
    last_failure: Option<String>,
    last_error: Option<String>,
    strip: String,
    unmatched: Vec<(String, u64, String, String)>,
}

#[derive(Template)]
#[template(path = "console/sources.html")]
struct SourcesPageT {
    layout: Layout,
    sources: Vec<SourceRow>,
    running: bool,
}

/// Sources for ops: health, coverage, unmatched actors.
pub async fn sources(State(s): State<ConsoleState>, v: Viewer) -> Response {
    if !v.admin {
        return message(
            StatusCode::FORBIDDEN,
            "For admins",
            "The sources page is for lull's admins.",
        );
    }
    let app = s.app.clone();
    let health = s.health.as_ref().map(|h| h.check().sources);
    let running = health.is_some();
    let list = match blocking(move || app.sources(health.as_ref())).await {
        Ok(l) => l,
        Err(e) => return error_page(&e),
    };
    let today = s.app.today();
    let first = today.plus(1 - STRIP_DAYS);
    let fmt_t = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
    };
    let rows = list
        .into_iter()
        .map(|src| {
            let mut cells = vec![Cover::Missing; STRIP_DAYS as usize];
            for run in &src.coverage {
                let mut d = run.first.max(first);
                while d <= run.last.min(today) {
                    let i = (d.0 - first.0) as usize;
                    let c = match run.by {
                        crate::store::Origin::Poll => Cover::Polled,
                        _ => Cover::Imported,
                    };
                    if cells[i] != Cover::Polled {
                        cells[i] = c;
                    }
                    d = d.plus(1);
                }
            }
            let h = src.health.clone().unwrap_or_default();
            let covered_to = src.coverage.iter().map(|r| r.last).max();
            let (state, class) = if src.kind == "import" {
                ("imports only", "unknown")
            } else if h.stale {
                ("stale", "silent")
            } else if h.last_error.is_some()
                && h.last_failure.is_some()
                && h.last_failure > h.last_success
            {
                ("failing", "silent")
            } else if h.polling {
                ("polling", "engaged")
            } else if src.health.is_some() && h.last_success.is_some() {
                ("ok", "engaged")
            } else {
                ("—", "unknown")
            };
            SourceRow {
                strip: views::coverage_strip(&cells, first),
                name: src.name.to_string(),
                kind: src.kind.clone(),
                url: src.url.clone(),
                state,
                class,
                last_day: h.last_day.or(covered_to).map(|d| views::day_ago(d, today)),
                last_success: fmt_t(h.last_success),
                last_failure: fmt_t(h.last_failure),
                last_error: h.last_error.clone(),
                unmatched: src
                    .unmatched
                    .iter()
                    .map(|u| {
                        (
                            u.actor.actor.clone(),
                            u.actor.events,
                            u.actor.last_seen.to_string(),
                            u.accounts_line.clone(),
                        )
                    })
                    .collect(),
            }
        })
        .collect();
    html(&SourcesPageT {
        layout: Layout::signed_in(&v, "sources"),
        sources: rows,
        running,
    })
}

// ---------------------------------------------------------------- e-mail links

#[derive(Template)]
#[template(path = "console/act.html")]
struct ActPage {
    layout: Layout,
    name: String,
    id: String,
    what: &'static str,
    day: String,
    kind: String,
    to: String,
    snooze: bool,
    until: String,
    expires: String,
}

fn refused_action(e: TokenError) -> Response {
    match e {
        TokenError::Expired => message(
            StatusCode::GONE,
            "This link has expired",
            "Links in alert e-mails work for a limited time. Open the account in lull's console to do this there.",
        ),
        TokenError::Invalid => message(
            StatusCode::NOT_FOUND,
            "This link is not valid",
            "It may be cut off by your mail program, or from another lull. Open the account in lull's console instead.",
        ),
    }
}

/// A chart link from a chat message: the account's weekly chart as a PNG.
/// Read only, and only what the link was signed for.
pub async fn chart(State(s): State<ConsoleState>, Path(token): Path<String>) -> Response {
    let now = s.app.clock.now().timestamp();
    let c = match s
        .signer
        .verify::<tokens::ChartClaims>(tokens::CHART, &token, now)
    {
        Ok(c) => c,
        Err(e) => return refused_action(e),
    };
    let app = s.app.clone();
    match blocking(move || app.chart_png(&c.account, c.day, c.since)).await {
        Ok(png) => (
            [
                (axum::http::header::CONTENT_TYPE, "image/png"),
                (axum::http::header::CACHE_CONTROL, "private, max-age=3600"),
            ],
            png,
        )
            .into_response(),
        Err(e) => error_page(&e),
    }
}

fn claims(s: &ConsoleState, token: &str) -> Result<ActionClaims, TokenError> {
    s.signer
        .verify::<ActionClaims>(tokens::ACTION, token, s.app.clock.now().timestamp())
}

/// A link from an alert e-mail: "open" shows the account (read only);
/// the others show what they would do, with a button.
pub async fn action_page(State(s): State<ConsoleState>, Path(token): Path<String>) -> Response {
    let c = match claims(&s, &token) {
        Ok(c) => c,
        Err(e) => return refused_action(e),
    };
    let app = s.app.clone();
    if c.action == Action::Open {
        let id = c.account.clone();
        return match blocking(move || account_page(&app, &id, Layout::anonymous(), true)).await {
            Ok(p) => html(&p),
            Err(e) => error_page(&e),
        };
    }
    let nonce = c.nonce.clone();
    let id = c.account.clone();
    let looked = blocking(move || {
        let used = app.store.nonce_used(&nonce)?;
        let name = app
            .live()
            .registry
            .by_id(&id)
            .map(|i| app.live().registry.get(i).name.clone());
        Ok((used, name))
    })
    .await;
    let (used, name) = match looked {
        Ok(x) => x,
        Err(e) => return error_page(&e),
    };
    if used {
        return message(
            StatusCode::CONFLICT,
            "This link was used already",
            "Each link in an alert e-mail works once. The account's page in lull's console shows what was done.",
        );
    }
    let Some(name) = name else {
        return error_page(&AppError::not_found(format!(
            "The account `{}` is no longer in the accounts file.",
            c.account
        )));
    };
    let today = s.app.today();
    html(&ActPage {
        layout: Layout::anonymous(),
        name,
        id: c.account.clone(),
        what: c.action.describe(),
        day: c.day.to_string(),
        kind: c.kind.clone(),
        to: c.to.clone(),
        snooze: c.action == Action::Snooze,
        until: today.plus(super::config::EMAIL_SNOOZE_DAYS).to_string(),
        expires: chrono::DateTime::from_timestamp(c.exp, 0)
            .map(|t| t.format("%Y-%m-%d").to_string())
            .unwrap_or_default(),
    })
}

#[derive(Debug, Default, Deserialize)]
pub struct ActForm {
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Template)]
#[template(path = "console/done.html")]
struct DonePage {
    layout: Layout,
    title: String,
    text: String,
    id: String,
    name: String,
}

/// The confirmation page's button: the link is spent, the action done,
/// recorded as done by the e-mail's recipient.
pub async fn action_post(
    State(s): State<ConsoleState>,
    Path(token): Path<String>,
    axum::Form(f): axum::Form<ActForm>,
) -> Response {
    let c = match claims(&s, &token) {
        Ok(c) => c,
        Err(e) => return refused_action(e),
    };
    if c.action == Action::Open {
        return Redirect::to(&format!("/c/act/{token}")).into_response();
    }
    let app: Arc<App> = s.app.clone();
    let expires = super::session::expiry_day(&s, c.exp);
    let cc = c.clone();
    let done = blocking(move || {
        // The link is spent first: a second click (or a replay) finds it
        // used, whatever happens next.
        let id = app.known(&cc.account)?;
        if !app.store.use_nonce(&cc.nonce, expires)? {
            return Ok(None);
        }
        let name = {
            let live = app.live();
            live.registry
                .by_id(id.as_str())
                .map(|i| live.registry.get(i).name.clone())
                .unwrap_or_default()
        };
        let text = match cc.action {
            Action::Snooze => {
                let until = app.today().plus(super::config::EMAIL_SNOOZE_DAYS);
                let reason = f
                    .reason
                    .as_deref()
                    .map(str::trim)
                    .filter(|r| !r.is_empty())
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("snoozed from the alert of {}", cc.day));
                app.snooze(
                    id.as_str(),
                    &SnoozeRequest { until, reason },
                    &format!("email:{}", cc.to),
                )?;
                format!("No alerts about {name} until {until}.")
            }
            other => {
                let verdict = match other {
                    Action::Useful => Verdict::Useful,
                    Action::FalseAlarm => Verdict::FalseAlarm,
                    _ => Verdict::AlreadyKnew,
                };
                app.feedback_from_link(
                    id.as_str(),
                    &FeedbackRequest {
                        day: cc.day,
                        kind: cc.kind.clone(),
                        verdict,
                        note: None,
                    },
                    &cc.to,
                )?;
                format!(
                    "Thank you: the {} alert of {} about {name} is marked \"{}\".",
                    cc.kind,
                    cc.day,
                    verdict.label()
                )
            }
        };
        Ok(Some((name, text)))
    })
    .await;
    match done {
        Ok(Some((name, text))) => html(&DonePage {
            layout: Layout::anonymous(),
            title: "Done".into(),
            text,
            id: c.account,
            name,
        }),
        Ok(None) => message(
            StatusCode::CONFLICT,
            "This link was used already",
            "Each link in an alert e-mail works once. The account's page in lull's console shows what was done.",
        ),
        Err(e) => error_page(&e),
    }
}
