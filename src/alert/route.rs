//! Receivers and routes: where each notice goes (`[[receiver]]`,
//! `[[route]]`), read like Alertmanager's routing tree flattened to a list.
//!
//! Routes are tried in order; the first that matches a notice takes it,
//! unless it says `continue = true`, and then the next ones are tried too.
//! A notice no route takes goes by the default route: by e-mail to the
//! account's CSM (a stale source to `[alerts] ops_email`), which is all
//! lull did before receivers existed. A route with `receivers = []` drops
//! what it matches.
//!
//! The receiver named `email` always exists (the `[smtp]` relay, to the
//! notice's own recipient); declare it to change how it groups or where it
//! sends.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Datelike, NaiveTime, Timelike, Weekday};
use chrono_tz::Tz;
use serde::Deserialize;
use toml::Spanned;

use crate::diag::{Diagnostic, SourceText};

/// The receiver every config has.
pub const EMAIL: &str = "email";
/// Slack's and Teams' messages carry at most this many accounts; a larger
/// digest goes as several messages.
pub const MAX_PER_CHAT_MESSAGE: usize = 10;

/// A notice's tier, as routes match it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tier {
    /// Went quiet (and the reminders while it stays quiet).
    Silent,
    /// The weekly watch list (early warning).
    Watch,
    Recovered,
    /// A source stopped delivering data (ops).
    StaleSource,
}

impl Tier {
    pub const ALL: [Tier; 4] = [
        Tier::Silent,
        Tier::Watch,
        Tier::Recovered,
        Tier::StaleSource,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Silent => "silent",
            Tier::Watch => "watch",
            Tier::Recovered => "recovered",
            Tier::StaleSource => "stale_source",
        }
    }

    /// The tier of an outbox entry's kind (`silent`, `reminder`, ...).
    pub fn of_kind(kind: &str) -> Option<Tier> {
        Some(match kind {
            "silent" | "reminder" => Tier::Silent,
            "watch" => Tier::Watch,
            "recovered" => Tier::Recovered,
            crate::detect::STALE_SOURCE => Tier::StaleSource,
            _ => return None,
        })
    }

    fn parse(s: &str) -> Option<Tier> {
        Tier::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// Where a receiver's HTTP endpoint comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Endpoint {
    /// In the config (not a secret).
    Url(url::Url),
    /// In an environment variable: Slack's and Teams' webhook URLs are
    /// credentials themselves.
    Env(String),
}

/// How a Slack receiver posts.
#[derive(Debug, Clone, PartialEq)]
pub enum SlackTarget {
    /// An incoming webhook: one channel.
    Webhook(Endpoint),
    /// A bot token (`chat:write`, `users:read.email`): a direct message to
    /// each CSM, found by their e-mail address.
    Bot { token_env: String, api: url::Url },
}

/// What a receiver is.
#[derive(Debug, Clone, PartialEq)]
pub enum ReceiverKind {
    /// The `[smtp]` relay; to the notice's recipient, or always to `to`.
    Email {
        to: Option<String>,
    },
    Slack(SlackTarget),
    /// A Teams incoming webhook (Workflows), Adaptive Cards.
    Teams(Endpoint),
    /// A JSON POST per notice, signed when `secret_env` is set.
    Webhook {
        endpoint: Endpoint,
        secret_env: Option<String>,
    },
}

impl ReceiverKind {
    pub fn name(&self) -> &'static str {
        match self {
            ReceiverKind::Email { .. } => "email",
            ReceiverKind::Slack(_) => "slack",
            ReceiverKind::Teams(_) => "teams",
            ReceiverKind::Webhook { .. } => "webhook",
        }
    }
}

/// One `[[receiver]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Receiver {
    pub name: String,
    pub kind: ReceiverKind,
    /// One request may take this long (HTTP receivers).
    pub timeout: std::time::Duration,
    /// The config line, for errors.
    pub line: usize,
}

/// What a group of notices is split by, for one message each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GroupKey {
    Csm,
    Segment,
    Account,
    Tier,
}

impl GroupKey {
    fn parse(s: &str) -> Option<GroupKey> {
        Some(match s {
            "csm" => GroupKey::Csm,
            "segment" => GroupKey::Segment,
            "account" => GroupKey::Account,
            "tier" => GroupKey::Tier,
            _ => return None,
        })
    }
}

/// A time when a route's receivers hold their messages: on these
/// weekdays, and/or between these times of day (in the config's zone).
#[derive(Debug, Clone, PartialEq)]
pub struct MuteWindow {
    pub weekdays: Vec<Weekday>,
    /// From, until (until before from: over midnight).
    pub hours: Option<(NaiveTime, NaiveTime)>,
}

impl MuteWindow {
    fn covers(&self, t: chrono::DateTime<Tz>) -> bool {
        let day_ok = self.weekdays.is_empty() || self.weekdays.contains(&t.weekday());
        let time = t.time();
        let hour_ok = match self.hours {
            None => true,
            Some((from, until)) if from <= until => time >= from && time < until,
            Some((from, until)) => time >= from || time < until,
        };
        day_ok && hour_ok
    }
}

/// What a route matches; every key given must match (a list: any of).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Matcher {
    pub segment: Option<Vec<String>>,
    pub csm: Option<Vec<String>>,
    pub tier: Option<Vec<Tier>>,
    pub account: Option<Vec<String>>,
    pub labels: BTreeMap<String, Vec<String>>,
}

/// What routing knows of a notice.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub tier: Tier,
    /// The account id (a source's name for a stale source).
    pub account: &'a str,
    /// The notice's own recipient (the CSM, or ops).
    pub csm: &'a str,
    pub segment: Option<&'a str>,
    pub labels: Option<&'a BTreeMap<String, String>>,
}

impl Matcher {
    fn matches(&self, s: &Subject<'_>) -> bool {
        let any = |list: &Option<Vec<String>>, v: Option<&str>| match list {
            None => true,
            Some(l) => v.is_some_and(|v| l.iter().any(|x| x.eq_ignore_ascii_case(v.trim()))),
        };
        any(&self.segment, s.segment)
            && any(&self.csm, Some(s.csm))
            && any(&self.account, Some(s.account))
            && self.tier.as_ref().is_none_or(|t| t.contains(&s.tier))
            && self.labels.iter().all(|(k, want)| {
                s.labels
                    .and_then(|l| l.get(k))
                    .is_some_and(|v| want.iter().any(|w| w == v))
            })
    }
}

/// One `[[route]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub matcher: Matcher,
    pub receivers: Vec<String>,
    pub continue_: bool,
    pub group_by: Vec<GroupKey>,
    pub mute: Vec<MuteWindow>,
    /// The config line (0 for the default route).
    pub line: usize,
}

impl Route {
    /// Today's behaviour: e-mail, one message per recipient and day.
    pub fn default_route() -> Route {
        Route {
            matcher: Matcher::default(),
            receivers: vec![EMAIL.to_string()],
            continue_: false,
            group_by: vec![GroupKey::Csm],
            mute: Vec::new(),
            line: 0,
        }
    }

    /// Whether messages of this route wait now.
    pub fn muted_at(&self, t: chrono::DateTime<Tz>) -> bool {
        self.mute.iter().any(|w| w.covers(t))
    }

    /// "route 2 (line 14)" or "the default route".
    pub fn describe(&self, index: Option<usize>) -> String {
        match index {
            Some(i) => format!("route {} (line {})", i + 1, self.line),
            None => "the default route".to_string(),
        }
    }
}

/// The validated receivers and routes.
#[derive(Debug, Clone, PartialEq)]
pub struct Routing {
    pub receivers: Vec<Receiver>,
    pub routes: Vec<Route>,
    pub default: Route,
    /// Mute windows are read in this zone.
    pub timezone: Tz,
}

impl Default for Routing {
    fn default() -> Routing {
        Routing {
            receivers: vec![implicit_email()],
            routes: Vec::new(),
            default: Route::default_route(),
            timezone: Tz::UTC,
        }
    }
}

fn implicit_email() -> Receiver {
    Receiver {
        name: EMAIL.to_string(),
        kind: ReceiverKind::Email { to: None },
        timeout: std::time::Duration::from_secs(DEFAULT_HTTP_TIMEOUT_SECS),
        line: 0,
    }
}

/// One HTTP receiver's request may take this long by default.
pub const DEFAULT_HTTP_TIMEOUT_SECS: u64 = 30;

/// Where one notice goes: each receiver once, with the route that sent it
/// there (the first, if several did).
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// (receiver, index of the route in `routes`, or `None` for the
    /// default route).
    pub to: Vec<(String, Option<usize>)>,
}

impl Routing {
    pub fn receiver(&self, name: &str) -> Option<&Receiver> {
        self.receivers.iter().find(|r| r.name == name)
    }

    /// Whether `name` sends through the `[smtp]` relay.
    pub fn is_email(&self, name: &str) -> bool {
        name == EMAIL
            || matches!(
                self.receiver(name).map(|r| &r.kind),
                Some(ReceiverKind::Email { .. })
            )
    }

    /// Whether any receiver posts over HTTP (Slack, Teams, a webhook).
    pub fn has_http_receivers(&self) -> bool {
        self.receivers
            .iter()
            .any(|r| !matches!(r.kind, ReceiverKind::Email { .. }))
    }

    /// The route by index (`None`: the default route).
    pub fn route(&self, index: Option<usize>) -> &Route {
        index
            .and_then(|i| self.routes.get(i))
            .unwrap_or(&self.default)
    }

    /// The receivers a notice goes to.
    pub fn decide(&self, s: &Subject<'_>) -> Decision {
        let mut to: Vec<(String, Option<usize>)> = Vec::new();
        let mut matched = false;
        let mut add = |receivers: &[String], index: Option<usize>| {
            for r in receivers {
                if !to.iter().any(|(name, _)| name == r) {
                    to.push((r.clone(), index));
                }
            }
        };
        for (i, route) in self.routes.iter().enumerate() {
            if route.matcher.matches(s) {
                matched = true;
                add(&route.receivers, Some(i));
                if !route.continue_ {
                    break;
                }
            }
        }
        if !matched {
            add(&self.default.receivers, None);
        }
        Decision { to }
    }

    /// The route that governs a receiver's copy of a notice (its grouping
    /// and mute windows): the first that sends the notice there. A copy
    /// routed under an older config that no route sends there any more
    /// goes by the default route's rules.
    pub fn governing(&self, s: &Subject<'_>, receiver: &str) -> Option<usize> {
        self.decide(s)
            .to
            .into_iter()
            .find(|(r, _)| r == receiver)
            .and_then(|(_, i)| i)
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct RawReceiver {
    name: Spanned<String>,
    kind: Spanned<String>,
    url: Option<Spanned<String>>,
    url_env: Option<Spanned<String>>,
    secret_env: Option<Spanned<String>>,
    token_env: Option<Spanned<String>>,
    api_url: Option<Spanned<String>>,
    to: Option<Spanned<String>>,
    timeout_secs: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Debug, Deserialize, Default)]
pub(crate) struct RawMatch {
    segment: Option<OneOrMany>,
    csm: Option<OneOrMany>,
    tier: Option<Spanned<OneOrMany>>,
    account: Option<OneOrMany>,
    #[serde(default)]
    labels: BTreeMap<String, OneOrMany>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct RawMute {
    #[serde(default)]
    weekdays: Vec<Spanned<String>>,
    hours: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct RawRoute {
    #[serde(rename = "match", default)]
    matcher: RawMatch,
    receivers: Spanned<Vec<Spanned<String>>>,
    #[serde(rename = "continue", default)]
    continue_: bool,
    group_by: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    mute: Vec<RawMute>,
}

/// A receiver name: letters, digits, `-` and `_` (it is part of store
/// keys and of the idempotency key).
fn is_receiver_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn parse_url(
    v: &Spanned<String>,
    key: &str,
    src: &SourceText,
    problems: &mut Vec<Diagnostic>,
) -> Option<url::Url> {
    match url::Url::parse(v.get_ref().trim()) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => Some(u),
        Ok(_) => {
            problems.push(src.span(v, format!("`{key}` must be an http(s) URL")));
            None
        }
        Err(e) => {
            problems.push(src.span(v, format!("`{key}` is not a URL: {e}")));
            None
        }
    }
}

fn env_name(
    v: &Spanned<String>,
    key: &str,
    src: &SourceText,
    problems: &mut Vec<Diagnostic>,
) -> String {
    if !crate::sources::config::is_env_var_name(v.get_ref()) {
        problems.push(src.span(
            v,
            format!(
                "`{key}` names an environment variable (letters, digits, _), not the secret itself"
            ),
        ));
    }
    v.get_ref().clone()
}

impl RawReceiver {
    fn build(self, src: &SourceText, problems: &mut Vec<Diagnostic>) -> Option<Receiver> {
        let before = problems.len();
        let line = src.line_col(self.name.span().start).0;
        let name = self.name.get_ref().trim().to_string();
        if !is_receiver_name(&name) {
            problems.push(src.span(
                &self.name,
                "`receiver.name` must be 1 to 64 letters, digits, `-` or `_`",
            ));
        }
        let kind = self.kind.get_ref().as_str();
        let unused = |v: &Option<Spanned<String>>, key: &str, problems: &mut Vec<Diagnostic>| {
            if let Some(v) = v {
                problems.push(src.span(
                    v,
                    format!("`{key}` is not used by a receiver of kind \"{kind}\""),
                ));
            }
        };
        let endpoint = |key_hint: &str, problems: &mut Vec<Diagnostic>| -> Option<Endpoint> {
            match (&self.url, &self.url_env) {
                (Some(_), Some(e)) => {
                    problems.push(src.span(e, "set `url` or `url_env`, not both"));
                    None
                }
                (Some(u), None) => parse_url(u, "receiver.url", src, problems).map(Endpoint::Url),
                (None, Some(e)) => Some(Endpoint::Env(env_name(
                    e,
                    "receiver.url_env",
                    src,
                    problems,
                ))),
                (None, None) => {
                    problems.push(src.span(
                        &self.kind,
                        format!("a \"{kind}\" receiver needs {key_hint}"),
                    ));
                    None
                }
            }
        };
        let kind = match kind {
            "email" => {
                unused(&self.url, "url", problems);
                unused(&self.url_env, "url_env", problems);
                unused(&self.secret_env, "secret_env", problems);
                unused(&self.token_env, "token_env", problems);
                unused(&self.api_url, "api_url", problems);
                let to = self.to.as_ref().map(|t| {
                    if t.get_ref().parse::<lettre::message::Mailbox>().is_err() {
                        problems.push(src.span(t, "`receiver.to` is not an e-mail address"));
                    }
                    t.get_ref().trim().to_string()
                });
                Some(ReceiverKind::Email { to })
            }
            "slack" => {
                unused(&self.secret_env, "secret_env", problems);
                unused(&self.to, "to", problems);
                match &self.token_env {
                    Some(t) => {
                        if self.url.is_some() || self.url_env.is_some() {
                            problems.push(src.span(
                                t,
                                "a Slack receiver posts through an incoming webhook (`url_env`) or a bot token (`token_env`), not both",
                            ));
                        }
                        let api = match &self.api_url {
                            Some(a) => parse_url(a, "receiver.api_url", src, problems),
                            None => url::Url::parse("https://slack.com/api/").ok(),
                        };
                        let token_env = env_name(t, "receiver.token_env", src, problems);
                        api.map(|api| ReceiverKind::Slack(SlackTarget::Bot { token_env, api }))
                    }
                    None => {
                        unused(&self.api_url, "api_url", problems);
                        endpoint(
                            "`url_env` (the incoming webhook's URL, a secret) or `token_env` (a bot token)",
                            problems,
                        )
                        .map(|e| ReceiverKind::Slack(SlackTarget::Webhook(e)))
                    }
                }
            }
            "teams" => {
                unused(&self.secret_env, "secret_env", problems);
                unused(&self.token_env, "token_env", problems);
                unused(&self.api_url, "api_url", problems);
                unused(&self.to, "to", problems);
                endpoint(
                    "`url_env` (the Workflows webhook's URL, a secret)",
                    problems,
                )
                .map(ReceiverKind::Teams)
            }
            "webhook" => {
                unused(&self.token_env, "token_env", problems);
                unused(&self.api_url, "api_url", problems);
                unused(&self.to, "to", problems);
                let secret_env = self
                    .secret_env
                    .as_ref()
                    .map(|s| env_name(s, "receiver.secret_env", src, problems));
                endpoint("`url` (or `url_env`)", problems).map(|endpoint| ReceiverKind::Webhook {
                    endpoint,
                    secret_env,
                })
            }
            other => {
                problems.push(src.span(
                    &self.kind,
                    format!("`receiver.kind = \"{other}\"` is not one of \"email\", \"slack\", \"teams\" or \"webhook\""),
                ));
                None
            }
        };
        let timeout = match &self.timeout_secs {
            None => DEFAULT_HTTP_TIMEOUT_SECS,
            Some(t) if (1..=600).contains(t.get_ref()) => *t.get_ref(),
            Some(t) => {
                problems.push(src.span(t, "`receiver.timeout_secs` must be from 1 to 600"));
                DEFAULT_HTTP_TIMEOUT_SECS
            }
        };
        let kind = kind?;
        (problems.len() == before).then(|| Receiver {
            name,
            kind,
            timeout: std::time::Duration::from_secs(timeout),
            line,
        })
    }
}

fn weekday(s: &str) -> Option<Weekday> {
    let s = s.trim().to_ascii_lowercase();
    [
        Weekday::Mon,
        Weekday::Tue,
        Weekday::Wed,
        Weekday::Thu,
        Weekday::Fri,
        Weekday::Sat,
        Weekday::Sun,
    ]
    .into_iter()
    .find(|d| {
        let full = match d {
            Weekday::Mon => "monday",
            Weekday::Tue => "tuesday",
            Weekday::Wed => "wednesday",
            Weekday::Thu => "thursday",
            Weekday::Fri => "friday",
            Weekday::Sat => "saturday",
            Weekday::Sun => "sunday",
        };
        s == full || s == full[..3]
    })
}

fn hours(s: &str) -> Option<(NaiveTime, NaiveTime)> {
    let (a, b) = s.split_once('-')?;
    let t = |x: &str| {
        let x = x.trim();
        if x == "24:00" {
            return NaiveTime::from_hms_opt(23, 59, 59);
        }
        NaiveTime::parse_from_str(x, "%H:%M").ok()
    };
    let (a, b) = (t(a)?, t(b)?);
    (a != b).then_some((a, b))
}

impl RawMute {
    fn build(self, src: &SourceText, problems: &mut Vec<Diagnostic>) -> MuteWindow {
        let weekdays = self
            .weekdays
            .iter()
            .filter_map(|d| {
                let w = weekday(d.get_ref());
                if w.is_none() {
                    problems.push(src.span(d, format!("`{}` in `route.mute.weekdays` is not a day of the week (\"sat\", \"sunday\")", d.get_ref())));
                }
                w
            })
            .collect();
        let hours = self.hours.as_ref().and_then(|h| {
            let parsed = hours(h.get_ref());
            if parsed.is_none() {
                problems.push(src.span(
                    h,
                    format!(
                        "`route.mute.hours = \"{}\"` is not a time range like \"18:00-08:00\"",
                        h.get_ref()
                    ),
                ));
            }
            parsed
        });
        MuteWindow { weekdays, hours }
    }
}

impl RawRoute {
    fn build(self, src: &SourceText, problems: &mut Vec<Diagnostic>) -> Route {
        let line = src.line_col(self.receivers.span().start).0;
        let tier = self.matcher.tier.map(|t| {
            let span = t.span();
            t.into_inner()
                .into_vec()
                .into_iter()
                .filter_map(|name| {
                    let tier = Tier::parse(name.trim());
                    if tier.is_none() {
                        problems.push(src.span(
                            &Spanned::new(span.clone(), ()),
                            format!("`route.match.tier = \"{name}\"` is not one of \"silent\", \"watch\", \"recovered\" or \"stale_source\""),
                        ));
                    }
                    tier
                })
                .collect()
        });
        let matcher = Matcher {
            segment: self.matcher.segment.map(OneOrMany::into_vec),
            csm: self.matcher.csm.map(OneOrMany::into_vec),
            tier,
            account: self.matcher.account.map(OneOrMany::into_vec),
            labels: self
                .matcher
                .labels
                .into_iter()
                .map(|(k, v)| (k, v.into_vec()))
                .collect(),
        };
        let group_by = match self.group_by {
            None => vec![GroupKey::Csm],
            Some(list) => list
                .iter()
                .filter_map(|g| {
                    let k = GroupKey::parse(g.get_ref().trim());
                    if k.is_none() {
                        problems.push(src.span(g, format!("`{}` in `route.group_by` is not one of \"csm\", \"segment\", \"account\" or \"tier\"", g.get_ref())));
                    }
                    k
                })
                .collect(),
        };
        let mute = self
            .mute
            .into_iter()
            .map(|m| m.build(src, problems))
            .collect();
        Route {
            matcher,
            receivers: self
                .receivers
                .get_ref()
                .iter()
                .map(|r| r.get_ref().trim().to_string())
                .collect(),
            continue_: self.continue_,
            group_by,
            mute,
            line,
        }
    }
}

/// Validates `[[receiver]]` and `[[route]]`: names unique, every route's
/// receivers declared (or `email`).
pub(crate) fn build(
    receivers: Vec<RawReceiver>,
    routes: Vec<RawRoute>,
    timezone: Tz,
    src: &SourceText,
    problems: &mut Vec<Diagnostic>,
) -> Routing {
    let mut built: Vec<Receiver> = Vec::new();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    for raw in receivers {
        let name = raw.name.clone();
        if !seen.insert(name.get_ref().trim().to_string()) {
            problems.push(src.span(
                &name,
                format!("a receiver named \"{}\" is declared twice", name.get_ref()),
            ));
            continue;
        }
        if let Some(r) = raw.build(src, problems) {
            built.push(r);
        }
    }
    if !seen.contains(EMAIL) {
        built.push(implicit_email());
    }
    let mut out = Vec::new();
    for raw in routes {
        let names: Vec<Spanned<String>> = raw.receivers.get_ref().clone();
        for n in &names {
            let n_trim = n.get_ref().trim();
            if !seen.contains(n_trim) && n_trim != EMAIL {
                problems.push(src.span(
                    n,
                    format!(
                        "`route.receivers`: no receiver is named \"{n_trim}\" (declared: {})",
                        built.iter().map(|r| r.name.as_str()).collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
        }
        out.push(raw.build(src, problems));
    }
    Routing {
        receivers: built,
        routes: out,
        default: Route::default_route(),
        timezone,
    }
}

/// `now` in the routing's zone.
pub fn local_now(tz: Tz) -> chrono::DateTime<Tz> {
    chrono::Utc::now().with_timezone(&tz)
}

/// The first moment from `t` on (checked to the minute, up to eight days
/// ahead) at which `route` is not muted.
pub fn unmuted_from(route: &Route, t: chrono::DateTime<Tz>) -> chrono::DateTime<Tz> {
    let mut at = t.with_second(0).unwrap_or(t);
    for _ in 0..(8 * 24 * 60) {
        if !route.muted_at(at) {
            return at;
        }
        at += chrono::Duration::minutes(1);
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routing(text: &str) -> Result<Routing, String> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("lull.toml");
        std::fs::write(&p, text).unwrap();
        crate::config::Config::load(&p)
            .map(|c| c.routing)
            .map_err(|d| d.to_string())
    }

    fn subject<'a>(tier: Tier, segment: Option<&'a str>) -> Subject<'a> {
        Subject {
            tier,
            account: "acme",
            csm: "dana@vendor.example",
            segment,
            labels: None,
        }
    }

    #[test]
    fn first_match_wins_unless_continue_and_the_default_takes_the_rest() {
        let r = routing(
            r#"
[[receiver]]
name = "crm"
kind = "webhook"
url = "http://127.0.0.1:9/hook"

[[receiver]]
name = "cs-slack"
kind = "slack"
url_env = "LULL_SLACK_URL"

[[route]]
match = { segment = "enterprise", tier = ["silent", "watch"] }
receivers = ["crm"]
continue = true

[[route]]
match = { segment = "enterprise" }
receivers = ["cs-slack", "email"]

[[route]]
match = { tier = "recovered" }
receivers = []
"#,
        )
        .unwrap();
        let to = |s: Subject<'_>| -> Vec<String> {
            r.decide(&s).to.into_iter().map(|(n, _)| n).collect()
        };
        assert_eq!(
            to(subject(Tier::Silent, Some("enterprise"))),
            ["crm", "cs-slack", "email"]
        );
        assert_eq!(
            to(subject(Tier::Recovered, Some("enterprise"))),
            ["cs-slack", "email"]
        );
        assert_eq!(
            to(subject(Tier::Recovered, Some("smb"))),
            Vec::<String>::new()
        );
        assert_eq!(to(subject(Tier::Silent, None)), ["email"]);
        assert_eq!(
            r.governing(&subject(Tier::Silent, Some("enterprise")), "email"),
            Some(1)
        );
        assert_eq!(r.governing(&subject(Tier::Silent, None), "email"), None);
    }

    #[test]
    fn without_routes_everything_goes_by_email() {
        let r = routing("").unwrap();
        assert_eq!(
            r.decide(&subject(Tier::StaleSource, None)).to,
            vec![(EMAIL.to_string(), None)]
        );
        assert_eq!(r.receivers.len(), 1);
    }

    #[test]
    fn mistakes_are_named_with_their_lines() {
        let err = routing(
            r#"
[[receiver]]
name = "crm"
kind = "webhook"

[[receiver]]
name = "bad name"
kind = "pager"

[[route]]
match = { tier = "quiet" }
receivers = ["nowhere"]
group_by = ["colour"]
mute = [{ weekdays = ["caturday"], hours = "25:00-08:00" }]
"#,
        )
        .unwrap_err();
        for want in [
            "lull.toml:4:8: a \"webhook\" receiver needs `url`",
            "lull.toml:7:8: `receiver.name` must be",
            "lull.toml:8:8: `receiver.kind = \"pager\"`",
            "lull.toml:11:18: `route.match.tier = \"quiet\"`",
            "lull.toml:12:14: `route.receivers`: no receiver is named \"nowhere\"",
            "lull.toml:13:13: `colour` in `route.group_by`",
            "`caturday` in `route.mute.weekdays`",
            "`route.mute.hours = \"25:00-08:00\"`",
        ] {
            assert!(err.contains(want), "missing {want:?} in:\n{err}");
        }
    }

    #[test]
    fn mute_windows_cover_weekends_and_nights_and_end() {
        let r = routing(
            "[[route]]\nreceivers = [\"email\"]\nmute = [{ weekdays = [\"sat\", \"sun\"] }, { hours = \"18:00-08:00\" }]\n",
        )
        .unwrap();
        let route = &r.routes[0];
        let at = |s: &str| {
            chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M")
                .unwrap()
                .and_local_timezone(Tz::UTC)
                .unwrap()
        };
        assert!(route.muted_at(at("2026-11-28 12:00"))); // Saturday
        assert!(route.muted_at(at("2026-11-30 07:59"))); // Monday night
        assert!(!route.muted_at(at("2026-11-30 08:00")));
        assert!(route.muted_at(at("2026-11-30 18:00")));
        assert_eq!(
            unmuted_from(route, at("2026-11-28 12:00")),
            at("2026-11-30 08:00")
        );
    }
}
