//! Grouping and composing: the queued notices of one detection day and one
//! recipient become one e-mail (a digest when a CSM has several accounts),
//! with a text part, an HTML part and an inline PNG chart per account.
//!
//! Everything that came from a source or the accounts file (account names,
//! source names, handles) reaches the HTML only through askama templates,
//! which escape it; the subject and display names are stripped of control
//! characters. A forum user named `<script>` arrives as text.

use std::collections::BTreeMap;

use askama::Template;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};

use super::route::{
    EMAIL, GroupKey, MAX_PER_CHAT_MESSAGE, ReceiverKind, Routing, SlackTarget, Subject, Tier,
};
use crate::console::tokens::{AccountLinks, Links};
use crate::detect::{Channel, ChannelKind, ChannelReport, Notice, NoticeKind, Queued};
use crate::store::QueuedNotice;
use crate::types::Day;

/// Accounts named in a digest's subject; the rest are "and N more".
const SUBJECT_NAMES: usize = 3;

/// One message to send (an e-mail, a chat message, a webhook request):
/// which receiver, who, what, and the notices it carries (whose copies for
/// this receiver leave the outbox when it is accepted).
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The message's delivery id: for e-mail its Message-ID without the
    /// angle brackets, otherwise the idempotency key. The same for every
    /// attempt, so a receiver can tell a repeat from a new alert.
    pub message_id: String,
    /// The receiver's name (`email` for the `[smtp]` relay's default).
    pub receiver: String,
    /// The route whose grouping and mute windows apply (`None`: the
    /// default route).
    pub route: Option<usize>,
    pub day: Day,
    /// The recipient: an e-mail address, a CSM looked up in Slack, or the
    /// receiver's channel or endpoint (empty: the receiver's own).
    pub to: String,
    pub subject: String,
    /// Account ids (or source names for stale-source notices).
    pub accounts: Vec<String>,
    /// `silent`, `reminder`, `recovered`, `stale_source`, one per notice.
    pub kinds: Vec<String>,
    /// When the first of its notices was queued.
    pub queued_at: Option<chrono::DateTime<chrono::Utc>>,
    pub notices: Vec<QueuedNotice>,
    pub(crate) items: Vec<Queued>,
    /// Why the notices cannot be composed (an undecodable outbox entry).
    pub broken: Option<String>,
}

/// What compose needs of a decoded notice ([`Queued`] owns the outbox's
/// format).
impl Queued {
    pub(crate) fn to(&self) -> &str {
        match self {
            Queued::Account(n) => &n.csm,
            Queued::Stale(s) => &s.to,
        }
    }

    /// Quiet accounts first, then reminders, recoveries, the watch list
    /// (strongest evidence first), sources; by name.
    fn order(&self) -> (u8, u32, String) {
        match self {
            Queued::Account(n) => (
                match n.notice {
                    NoticeKind::Silent => 0,
                    NoticeKind::Reminder => 1,
                    NoticeKind::Recovered => 2,
                    NoticeKind::Watch => 3,
                },
                n.rank.unwrap_or(0),
                n.name.to_lowercase(),
            ),
            Queued::Stale(s) => (4, 0, s.source.to_string()),
        }
    }
}

/// What routing knows of an outbox entry.
fn subject_of<'a>(
    item: &'a Queued,
    registry: Option<&'a crate::accounts::Registry>,
) -> Subject<'a> {
    match item {
        Queued::Account(n) => Subject {
            tier: match n.notice {
                NoticeKind::Silent | NoticeKind::Reminder => Tier::Silent,
                NoticeKind::Watch => Tier::Watch,
                NoticeKind::Recovered => Tier::Recovered,
            },
            account: n.account.as_str(),
            csm: &n.csm,
            segment: n.segment.as_deref(),
            labels: registry.and_then(|r| r.by_id(n.account.as_str()).map(|i| &r.get(i).labels)),
        },
        Queued::Stale(s) => Subject {
            tier: Tier::StaleSource,
            account: s.source.as_str(),
            csm: &s.to,
            segment: None,
            labels: None,
        },
    }
}

/// The receivers each waiting (unrouted) entry goes to.
pub fn route_entries(
    queued: &[QueuedNotice],
    routing: &Routing,
    registry: Option<&crate::accounts::Registry>,
) -> Vec<(QueuedNotice, Vec<String>)> {
    queued
        .iter()
        .filter(|q| q.receiver.is_none())
        .map(|q| {
            let receivers = match Queued::decode(q) {
                Ok(item) => routing
                    .decide(&subject_of(&item, registry))
                    .to
                    .into_iter()
                    .map(|(r, _)| r)
                    .collect(),
                // Unreadable: to e-mail, where it is recorded as failed
                // with the reason.
                Err(_) => vec![EMAIL.to_string()],
            };
            (q.clone(), receivers)
        })
        .collect()
}

/// Groups queued notices into messages, per receiver: one per (detection
/// day, recipient, the route's `group_by` values); a webhook gets one per
/// notice, Slack and Teams at most [`MAX_PER_CHAT_MESSAGE`] accounts each.
/// Entries not routed yet are grouped as routing would send them.
/// Cheap (nothing is rendered), and deterministic: the same outbox always
/// gives the same messages with the same ids. For the default `email`
/// receiver, grouping and Message-IDs are what they were before receivers
/// existed.
pub fn group(
    queued: Vec<QueuedNotice>,
    from: &Mailbox,
    routing: &Routing,
    registry: Option<&crate::accounts::Registry>,
) -> Vec<Outgoing> {
    type Decoded = (QueuedNotice, Result<Queued, String>);
    type Key = (String, Option<usize>, Day, String, Vec<String>);
    let mut copies = Vec::with_capacity(queued.len());
    let unrouted = route_entries(&queued, routing, registry);
    for q in queued {
        if q.receiver.is_some() {
            copies.push(q);
        }
    }
    for (q, receivers) in unrouted {
        copies.extend(receivers.iter().map(|r| q.for_receiver(r)));
    }
    let mut groups: BTreeMap<Key, Vec<Decoded>> = BTreeMap::new();
    for q in copies {
        let receiver_name = q.receiver.clone().unwrap_or_else(|| EMAIL.to_string());
        let item = Queued::decode(&q);
        let kind = routing.receiver(&receiver_name).map(|r| &r.kind);
        let (route, to, values) = match &item {
            Ok(i) => {
                let s = subject_of(i, registry);
                let route = routing.governing(&s, &receiver_name);
                let values = routing
                    .route(route)
                    .group_by
                    .iter()
                    .map(|g| match g {
                        GroupKey::Csm => s.csm.trim().to_lowercase(),
                        GroupKey::Segment => s.segment.unwrap_or("").to_string(),
                        GroupKey::Account => s.account.to_string(),
                        GroupKey::Tier => s.tier.as_str().to_string(),
                    })
                    .collect::<Vec<_>>();
                let to = match kind {
                    Some(ReceiverKind::Email { to: Some(fixed) }) => fixed.trim().to_lowercase(),
                    Some(ReceiverKind::Email { to: None }) | None => i.to().trim().to_lowercase(),
                    Some(ReceiverKind::Slack(SlackTarget::Bot { .. })) => {
                        i.to().trim().to_lowercase()
                    }
                    Some(_) => String::new(),
                };
                let values = match kind {
                    // One request per notice.
                    Some(ReceiverKind::Webhook { .. }) => {
                        vec![q.account.to_string(), q.kind.clone()]
                    }
                    _ => values,
                };
                (route, to, values)
            }
            // Undecodable: a message of its own, recorded as failed.
            Err(_) => (
                None,
                format!("(unreadable {} {})", q.account, q.kind),
                Vec::new(),
            ),
        };
        groups
            .entry((receiver_name, route, q.day, to, values))
            .or_default()
            .push((q, item));
    }
    let domain = from.email.domain().to_string();
    let mut out = Vec::new();
    for ((receiver, route, day, to, values), mut entries) in groups {
        entries.sort_by_key(|(q, i)| {
            (
                i.as_ref().map(Queued::order).unwrap_or_default(),
                q.account.to_string(),
            )
        });
        let kind = routing.receiver(&receiver).map(|r| &r.kind);
        let chunk = match kind {
            Some(ReceiverKind::Slack(_) | ReceiverKind::Teams(_)) => MAX_PER_CHAT_MESSAGE,
            _ => usize::MAX,
        };
        let mut rest = entries;
        while !rest.is_empty() {
            let tail = if rest.len() > chunk {
                rest.split_off(chunk)
            } else {
                Vec::new()
            };
            let part = std::mem::replace(&mut rest, tail);
            out.push(outgoing(
                &receiver, route, day, &to, &values, part, kind, &domain,
            ));
        }
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn outgoing(
    receiver: &str,
    route: Option<usize>,
    day: Day,
    to: &str,
    values: &[String],
    entries: Vec<(QueuedNotice, Result<Queued, String>)>,
    kind: Option<&ReceiverKind>,
    domain: &str,
) -> Outgoing {
    let broken = entries
        .iter()
        .filter_map(|(_, i)| i.as_ref().err().cloned())
        .next();
    let notices: Vec<QueuedNotice> = entries.iter().map(|(q, _)| q.clone()).collect();
    let items: Vec<Queued> = entries.into_iter().filter_map(|(_, i)| i.ok()).collect();
    let is_email = matches!(kind, Some(ReceiverKind::Email { .. }) | None);
    let to = match kind {
        Some(ReceiverKind::Email { to: None }) | None => items
            .first()
            .map_or(to.to_string(), |i| i.to().trim().to_string()),
        _ => to.to_string(),
    };
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    if receiver != EMAIL {
        // Another receiver's copy is another message: its own id.
        h.update(receiver.as_bytes());
        h.update(&[1]);
        for v in values {
            h.update(v.as_bytes());
            h.update(&[1]);
        }
    }
    h.update(to.to_lowercase().as_bytes());
    for q in &notices {
        h.update(&[0]);
        h.update(q.account.as_str().as_bytes());
        h.update(&[0]);
        h.update(q.kind.as_bytes());
    }
    let message_id = if is_email {
        format!("lull.{day}.{:016x}@{domain}", h.digest())
    } else {
        format!("lull.{receiver}.{day}.{:016x}", h.digest())
    };
    Outgoing {
        message_id,
        receiver: receiver.to_string(),
        route,
        day,
        subject: subject(&items),
        accounts: notices.iter().map(|q| q.account.to_string()).collect(),
        kinds: notices.iter().map(|q| q.kind.clone()).collect(),
        queued_at: items.iter().filter_map(Queued::queued_at).min(),
        to,
        notices,
        items,
        broken,
    }
}

/// Control characters (a newline in an account name) never reach a header.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn names(list: &[&str]) -> String {
    let shown: Vec<&str> = list.iter().take(SUBJECT_NAMES).copied().collect();
    let more = list.len().saturating_sub(SUBJECT_NAMES);
    let mut s = match shown.as_slice() {
        [] => String::new(),
        [one] => (*one).to_string(),
        [init @ .., last] if more == 0 => format!("{} and {last}", init.join(", ")),
        all => all.join(", "),
    };
    if more > 0 {
        s.push_str(&format!(" and {more} more"));
    }
    s
}

/// "Acme Corp went quiet", "3 accounts went quiet: A, B and C", ...
fn subject(items: &[Queued]) -> String {
    let mut quiet = Vec::new();
    let mut still = Vec::new();
    let mut back = Vec::new();
    let mut watch = Vec::new();
    let mut sources = Vec::new();
    for i in items {
        match i {
            Queued::Account(n) => match n.notice {
                NoticeKind::Silent => quiet.push(n.name.as_str()),
                NoticeKind::Reminder => still.push(n.name.as_str()),
                NoticeKind::Recovered => back.push(n.name.as_str()),
                NoticeKind::Watch => watch.push(n.name.as_str()),
            },
            Queued::Stale(s) => sources.push(s.source.as_str()),
        }
    }
    let mut parts = Vec::new();
    match quiet.len() {
        0 => {}
        1 => parts.push(format!("{} went quiet", quiet[0])),
        n => parts.push(format!("{n} accounts went quiet: {}", names(&quiet))),
    }
    match still.len() {
        0 => {}
        1 => parts.push(format!("{} is still quiet", still[0])),
        _ => parts.push(format!("{} are still quiet", names(&still))),
    }
    match back.len() {
        0 => {}
        1 => parts.push(format!("{} is active again", back[0])),
        _ => parts.push(format!("{} are active again", names(&back))),
    }
    match watch.len() {
        0 => {}
        1 => parts.push(format!("to watch this week: {}", watch[0])),
        n => parts.push(format!(
            "{n} accounts to watch this week: {}",
            names(&watch)
        )),
    }
    match sources.len() {
        0 => {}
        1 => parts.push(format!("source {} has no new data", sources[0])),
        _ => parts.push(format!("sources {} have no new data", names(&sources))),
    }
    one_line(&format!("[lull] {}", parts.join("; ")))
}

/// What the templates show of one account.
pub(crate) struct AccountView {
    pub(crate) name: String,
    pub(crate) id: String,
    pub(crate) segment: Option<String>,
    pub(crate) headline: &'static str,
    pub(crate) class: &'static str,
    /// "Quiet since", or for the watch list "Below its usual level since".
    pub(crate) since_label: &'static str,
    pub(crate) since: Option<String>,
    pub(crate) channels: Vec<ChannelView>,
    pub(crate) chart_cid: Option<String>,
    pub(crate) last_activity: Option<String>,
    pub(crate) episode: Option<String>,
    /// "3 of the 8 people usually active in 90 days were active …".
    pub(crate) people: Option<String>,
    /// Open, snooze and feedback links (with `[console] public_url`).
    pub(crate) links: Option<AccountLinks>,
}

/// One channel's evidence in words (the e-mail's and the console's).
pub(crate) struct ChannelView {
    pub label: String,
    pub what: String,
    pub level: Option<String>,
    pub odds: Option<String>,
    pub community: Option<String>,
}

pub(crate) struct StaleView {
    pub(crate) source: String,
    pub(crate) last_data: String,
    pub(crate) days: i32,
}

#[derive(Template)]
#[template(path = "alert.txt")]
struct TextBody<'a> {
    day: String,
    links_until: Option<String>,
    accounts: &'a [AccountView],
    stale: &'a [StaleView],
}

#[derive(Template)]
#[template(path = "alert.html")]
struct HtmlBody<'a> {
    subject: &'a str,
    day: String,
    links_until: Option<String>,
    accounts: &'a [AccountView],
    stale: &'a [StaleView],
}

/// "forum posts (forum)" for the channel `forum:post`.
pub(crate) fn channel_label(channel: &Channel) -> String {
    let what = match &channel.kind {
        ChannelKind::Count(k) => match crate::sources::activity_words(k.as_str()) {
            Some(words) => words.to_string(),
            // Imported events without a kind.
            None if k.as_str() == "activity" => "activity".to_string(),
            None => format!("{k} events"),
        },
        ChannelKind::Rate {
            numerator,
            denominator,
        } => {
            if numerator.as_str() == "open" && denominator.as_str() == "delivered" {
                "e-mails opened".to_string()
            } else {
                format!("{numerator} per {denominator}")
            }
        }
    };
    format!("{what} ({})", channel.source)
}

/// How unusual, in words: the chance of seeing this little activity if
/// the account behaved as in its baseline, as "once in N such periods".
fn odds_in_words(p: f64, days: u32) -> String {
    let period = format!("{days}-day periods");
    if p <= 0.001 {
        format!(
            "an account behaving as it usually does would be this quiet less than once in 1,000 {period}"
        )
    } else {
        let n = (1.0 / p).round().max(1.0) as u64;
        format!(
            "an account behaving as it usually does would be this quiet about once in {n} {period}"
        )
    }
}

fn fmt_count(x: f64) -> String {
    if x >= 10.0 || x.fract().abs() < 0.05 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

pub(crate) fn channel_view(r: &ChannelReport) -> ChannelView {
    let j = &r.judgement;
    let days = j.recent_days;
    let mut what = match j.delivered {
        Some(delivered) => format!(
            "{} opened of {} delivered in the last {days} days; about {} opens expected",
            fmt_count(j.observed),
            fmt_count(delivered),
            fmt_count(j.expected)
        ),
        None => format!(
            "{} in the last {days} days; about {} expected",
            fmt_count(j.observed),
            fmt_count(j.expected)
        ),
    };
    if j.covered_days < days {
        what.push_str(&format!(
            " (lull had data for {} of those days)",
            j.covered_days
        ));
    }
    if let Some(d) = r.last_activity {
        what.push_str(&format!("; last activity {d}"));
    }
    let level = (j.expected > 0.0)
        .then(|| format!("{:.0}% of its usual level", 100.0 * j.observed / j.expected));
    let community = (j.community_factor < 0.95).then(|| {
        format!(
            "expectation lowered {:.0}% because the whole community is quieter than usual",
            100.0 * (1.0 - j.community_factor)
        )
    });
    ChannelView {
        label: channel_label(&r.channel),
        what,
        level,
        odds: j.p_value.map(|p| odds_in_words(p, days)),
        community,
    }
}

pub(crate) fn account_view(n: &Notice, index: usize) -> AccountView {
    let shown: Vec<&ChannelReport> = n
        .evidence
        .iter()
        .filter(|r| n.notice.covers(r.judgement.status))
        .collect();
    let since = n.silent_since.map(|s| {
        let days = n.date.0 - s.0;
        format!("{s} ({days} days before {})", n.date)
    });
    let last_activity = n
        .evidence
        .iter()
        .filter_map(|r| r.last_activity.map(|d| (d, r)))
        .max_by_key(|(d, _)| *d)
        .map(|(d, r)| match &r.last_seen_by {
            Some(who) => format!("{d} by {who} ({})", channel_label(&r.channel)),
            None => format!("{d} ({})", channel_label(&r.channel)),
        });
    let (headline, class) = match n.notice {
        NoticeKind::Silent => ("went quiet", "quiet"),
        NoticeKind::Reminder => ("is still quiet", "quiet"),
        NoticeKind::Recovered => ("is active again", "back"),
        NoticeKind::Watch => ("is dropping: one to watch", "watch"),
    };
    AccountView {
        name: n.name.clone(),
        id: n.account.to_string(),
        segment: n.segment.clone(),
        headline,
        class,
        since_label: if n.notice == NoticeKind::Watch {
            "Below its usual level since"
        } else {
            "Quiet since"
        },
        since,
        channels: shown.iter().map(|r| channel_view(r)).collect(),
        chart_cid: n
            .weekly
            .as_ref()
            .filter(|w| !w.starts.is_empty())
            .map(|_| format!("chart{index}")),
        last_activity,
        episode: match (n.notice, n.episode_started) {
            (NoticeKind::Reminder, Some(d)) => Some(d.to_string()),
            _ => None,
        },
        people: n.people.clone(),
        links: None,
    }
}

/// Problems that make a message impossible to send (never worth a retry).
#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error("{0}")]
    Unreadable(String),
    #[error("recipient `{to}` is not an e-mail address: {err}")]
    BadRecipient { to: String, err: String },
    #[error("rendering the e-mail: {0}")]
    Render(String),
}

impl Outgoing {
    /// The complete message: text and HTML alternatives, the HTML with its
    /// charts as inline parts (multipart/related). With `links`, each
    /// account gets signed links to open it, snooze it and give feedback.
    pub fn render(
        &self,
        from: &Mailbox,
        links: Option<&Links>,
    ) -> Result<lettre::Message, ComposeError> {
        let now = chrono::Utc::now();
        if let Some(b) = &self.broken {
            return Err(ComposeError::Unreadable(b.clone()));
        }
        let to: Mailbox = self
            .to
            .parse()
            .map_err(
                |e: lettre::address::AddressError| ComposeError::BadRecipient {
                    to: self.to.clone(),
                    err: e.to_string(),
                },
            )?;
        let mut accounts = Vec::new();
        let mut stale = Vec::new();
        let mut charts = Vec::new();
        for (i, item) in self.items.iter().enumerate() {
            match item {
                Queued::Account(n) => {
                    let mut v = account_view(n, i);
                    v.links = links.map(|l| {
                        l.for_notice(n.account.as_str(), n.date, n.notice.as_str(), &self.to, now)
                    });
                    if let (Some(cid), Some(w)) = (&v.chart_cid, &n.weekly) {
                        match super::chart::weekly_png(w, n.silent_since) {
                            Ok(png) => charts.push((cid.clone(), png)),
                            Err(e) => {
                                tracing::warn!(account = %n.account, error = %e, "alert chart left out");
                                v.chart_cid = None;
                            }
                        }
                    }
                    accounts.push(v);
                }
                Queued::Stale(s) => stale.push(StaleView {
                    source: s.source.to_string(),
                    last_data: s.last_data.to_string(),
                    days: s.date.0 - s.last_data.0,
                }),
            }
        }
        let render_err = |e: askama::Error| ComposeError::Render(e.to_string());
        let links_until = links.map(|l| (now + l.valid).format("%Y-%m-%d").to_string());
        let text = TextBody {
            day: self.day.to_string(),
            links_until: links_until.clone(),
            accounts: &accounts,
            stale: &stale,
        }
        .render()
        .map_err(render_err)?;
        let html = HtmlBody {
            subject: &self.subject,
            day: self.day.to_string(),
            links_until,
            accounts: &accounts,
            stale: &stale,
        }
        .render()
        .map_err(render_err)?;
        let mut related = MultiPart::related().singlepart(SinglePart::html(html));
        for (cid, png) in charts {
            let png_type =
                ContentType::parse("image/png").map_err(|e| ComposeError::Render(e.to_string()))?;
            related = related.singlepart(Attachment::new_inline(cid).body(png, png_type));
        }
        let body = MultiPart::alternative()
            .singlepart(SinglePart::plain(text))
            .multipart(related);
        let mut builder = lettre::Message::builder()
            .from(from.clone())
            .to(to)
            .subject(self.subject.clone())
            .message_id(Some(format!("<{}>", self.message_id)));
        builder = builder.header(AutoSubmitted);
        builder
            .multipart(body)
            .map_err(|e| ComposeError::Render(e.to_string()))
    }
}

/// `Auto-Submitted: auto-generated` (RFC 3834): out-of-office replies and
/// mailing-list software leave machine mail alone.
#[derive(Clone)]
struct AutoSubmitted;

impl lettre::message::header::Header for AutoSubmitted {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Auto-Submitted")
    }

    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(AutoSubmitted)
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "auto-generated".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_name_accounts_and_say_what_happened() {
        let names3 = names(&["A", "B", "C"]);
        assert_eq!(names3, "A, B and C");
        assert_eq!(names(&["A", "B", "C", "D", "E"]), "A, B, C and 2 more");
        assert_eq!(one_line("Evil\r\nBcc: x@y"), "Evil  Bcc: x@y");
        let label = |name: &str| channel_label(&Channel::parse(name).unwrap());
        assert_eq!(label("forum:post"), "forum posts (forum)");
        assert_eq!(label("mail:open/delivered"), "e-mails opened (mail)");
        // A source name with a colon keeps it.
        assert_eq!(label("eu:forum:post"), "forum posts (eu:forum)");
        assert!(odds_in_words(0.0001, 42).contains("less than once in 1,000 42-day periods"));
        assert!(odds_in_words(0.05, 42).contains("about once in 20 "));
    }
}
