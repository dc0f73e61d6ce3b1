//! The delivery loop: route, send with retry, then record.
//!
//! First the notices waiting in the outbox are routed: each is replaced by
//! one copy per receiver its routes name, in one flushed transaction
//! ([`Store::dispatch`]). Then every receiver delivers its copies on its
//! own — its own backoff, its own pauses for `Retry-After`, its own mute
//! windows — so one receiver down holds no other back.
//!
//! Each pass of a receiver groups its copies into messages and sends them.
//! Accepted → the message's notices leave the outbox and its record is
//! written as `sent`, in one flushed transaction, right after the relay's
//! 250. Rejected for good (5xx, or a message that cannot be composed) →
//! recorded as `failed` the same way, with the reason; it is not retried.
//! Anything else (relay down, timeout, TLS refused, 4xx) → the notices stay
//! queued, the attempt is recorded, and the pass stops if the relay itself
//! is the problem; the next pass comes after an exponential backoff.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use lettre::message::Mailbox;
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use super::compose::{Outgoing, group, route_entries};
use super::receivers::HttpReceivers;
use super::route::{EMAIL, ReceiverKind, Routing, local_now, unmuted_from};
use super::smtp::{Mailer, SendError};
use crate::accounts::Registry;
use crate::console::tokens::Links;
use crate::store::{QueuedNotice, Store, StoreError};
use crate::types::Day;

/// Messages in flight at once. Four keeps a relay busy while each waits
/// for its 250 (a local aiosmtpd: 19 e-mails/s one at a time), and stays
/// far below the connection limits relays set per client.
pub const PARALLEL_SENDS: usize = 4;
/// First wait after a failed pass; doubled each time.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait between passes: a relay back after an outage gets its
/// mail within ten minutes.
pub const MAX_BACKOFF: Duration = Duration::from_secs(600);

/// What became of a message (or is becoming of it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Queued,
    /// Recorded (durably) right before the message goes to the relay:
    /// found again later, it means lull stopped during the send, and the
    /// outcome is unknown.
    Sending,
    Sent,
    Failed,
}

/// A message's delivery record, as `lull alerts` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MailRecord {
    /// The e-mail's Message-ID, or another receiver's idempotency key.
    pub message_id: String,
    /// The receiver it goes to (`email`: the `[smtp]` relay; left out of
    /// the JSON for it, as before receivers existed).
    #[serde(
        default = "email_receiver",
        skip_serializing_if = "is_default_receiver"
    )]
    pub receiver: String,
    pub status: Status,
    /// The detection day the message reports on.
    pub day: Day,
    pub to: String,
    pub subject: String,
    pub accounts: Vec<String>,
    pub kinds: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued_at: Option<DateTime<Utc>>,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempt: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<DateTime<Utc>>,
    /// Size of the message as sent, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Attempts that ended without an answer (a timeout, or lull stopped
    /// during the send): the relay may have accepted them, so the message
    /// may arrive more than once, always with the same Message-ID.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unknown_outcomes: u32,
}

impl crate::store::Value for MailRecord {
    const WHAT: &'static str = "the delivery record";
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn email_receiver() -> String {
    EMAIL.to_string()
}

fn is_default_receiver(r: &str) -> bool {
    r == EMAIL
}

/// Who a message goes to, in words: the address, or the receiver's own
/// channel or endpoint.
fn recipient(o: &Outgoing, routing: &Routing) -> String {
    if !o.to.is_empty() {
        return o.to.clone();
    }
    match routing.receiver(&o.receiver).map(|r| &r.kind) {
        Some(ReceiverKind::Slack(_)) => "(its Slack channel)".into(),
        Some(ReceiverKind::Teams(_)) => "(its Teams channel)".into(),
        Some(ReceiverKind::Webhook { endpoint, .. }) => match endpoint {
            super::route::Endpoint::Url(u) => crate::sources::http::display_url(u),
            super::route::Endpoint::Env(v) => format!("(URL from ${v})"),
        },
        _ => String::new(),
    }
}

impl MailRecord {
    fn new(o: &Outgoing, routing: &Routing, previous: Option<MailRecord>) -> MailRecord {
        MailRecord {
            message_id: o.message_id.clone(),
            receiver: o.receiver.clone(),
            status: Status::Queued,
            day: o.day,
            to: recipient(o, routing),
            subject: o.subject.clone(),
            accounts: o.accounts.clone(),
            kinds: o.kinds.clone(),
            queued_at: o.queued_at,
            attempts: previous.as_ref().map_or(0, |p| p.attempts),
            last_attempt: previous.as_ref().and_then(|p| p.last_attempt),
            sent_at: None,
            bytes: None,
            unknown_outcomes: previous.as_ref().map_or(0, |p| {
                // A send that was under way when lull stopped.
                p.unknown_outcomes + u32::from(p.status == Status::Sending)
            }),
            // A notice that cannot be read says so until delivery records it.
            error: o.broken.clone().or_else(|| previous.and_then(|p| match p.status {
                Status::Sending => Some(
                    "lull stopped while sending it: the receiver may have accepted it (outcome unknown); it is sent again with the same id".into(),
                ),
                _ => p.error,
            })),
        }
    }
}

/// What delivery and the outbox's listings need besides the store.
#[derive(Clone, Copy)]
pub struct View<'a> {
    pub from: &'a Mailbox,
    pub routing: &'a Routing,
    /// For routes that match account labels.
    pub registry: Option<&'a Registry>,
}

/// The outbox as messages, with what was recorded of their attempts.
pub fn pending(store: &Store, v: View<'_>) -> Result<Vec<MailRecord>, StoreError> {
    group(store.queued()?, v.from, v.routing, v.registry)
        .iter()
        .map(|o| {
            Ok(MailRecord::new(
                o,
                v.routing,
                store.mail_record(&o.message_id)?,
            ))
        })
        .collect()
}

/// Every recorded message (sent, failed, retried) and the queued ones.
pub fn all(store: &Store, v: View<'_>) -> Result<Vec<MailRecord>, StoreError> {
    let mut out: Vec<MailRecord> = pending(store, v)?;
    let queued: std::collections::HashSet<String> =
        out.iter().map(|r| r.message_id.clone()).collect();
    for (id, r) in store.mail::<MailRecord>()? {
        if queued.contains(&id) {
            continue;
        }
        if !matches!(r.status, Status::Queued | Status::Sending) {
            out.push(r);
        }
    }
    out.sort_by(|a, b| {
        (a.day, a.sent_at.or(a.last_attempt), &a.to, &a.receiver).cmp(&(
            b.day,
            b.sent_at.or(b.last_attempt),
            &b.to,
            &b.receiver,
        ))
    });
    Ok(out)
}

/// Totals of one delivery run.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Delivered {
    pub sent: usize,
    pub failed: usize,
    /// Messages still queued when the run stopped.
    pub queued: usize,
    /// The last transient error, if the relay was the problem.
    pub last_error: Option<String>,
    /// Of the queued, those held by a route's mute window.
    #[serde(default)]
    pub held: usize,
    /// Of the queued, those for a receiver that cannot send at all (no
    /// `[smtp]`, a missing secret): they wait for a config change.
    #[serde(default)]
    pub blocked: usize,
    /// When the first mute window holding messages ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_until: Option<DateTime<Utc>>,
}

impl Delivered {
    fn add(&mut self, o: Delivered) {
        self.sent += o.sent;
        self.failed += o.failed;
        self.queued += o.queued;
        self.held += o.held;
        self.blocked += o.blocked;
        self.last_error = o.last_error.or(self.last_error.take());
        self.held_until = match (self.held_until, o.held_until) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
}

/// How messages leave: the relay (when `[smtp]` is set) and the HTTP
/// receivers.
pub struct Senders<'a> {
    pub mailer: Option<&'a Mailer>,
    pub http: &'a HttpReceivers,
    pub links: Option<&'a Links>,
}

/// Routes what waits in the outbox, then sends every receiver's messages,
/// each receiver retrying with its own backoff for at most `retry_for`
/// (or until `stop` resolves). Once `halt` is cancelled (the service
/// stops), no new send starts; sends under way finish and record. Returns
/// what happened; store errors abort.
pub async fn deliver(
    store: &Store,
    v: View<'_>,
    senders: &Senders<'_>,
    retry_for: Duration,
    stop: impl std::future::Future<Output = ()>,
    halt: &tokio_util::sync::CancellationToken,
) -> Result<Delivered, StoreError> {
    let queued = store.queued()?;
    let routed = route_entries(&queued, v.routing, v.registry);
    // The receivers with copies to deliver: those already routed and
    // those routed now.
    let mut names: Vec<String> = queued
        .into_iter()
        .filter_map(|q| q.receiver)
        .chain(routed.iter().flat_map(|(_, r)| r.iter().cloned()))
        .collect();
    names.sort();
    names.dedup();
    if !routed.is_empty() {
        for (q, _) in routed.iter().filter(|(_, r)| r.is_empty()) {
            tracing::info!(account = %q.account, kind = %q.kind, day = %q.day, "notice dropped: its route names no receiver");
        }
        store.dispatch(&routed)?;
    }
    let deadline = tokio::time::Instant::now() + retry_for;
    let stop = futures_util::FutureExt::shared(Box::pin(stop));
    let loops: Vec<_> = names
        .iter()
        .map(|name| {
            let stop = stop.clone();
            async move {
                deliver_to(store, v, senders, name, deadline, stop, halt)
                    .instrument(tracing::info_span!("receiver", receiver = %name))
                    .await
            }
        })
        .collect();
    let mut total = Delivered::default();
    for r in futures_util::future::join_all(loops).await {
        total.add(r?);
    }
    Ok(total)
}

/// One receiver's copies: passes until none is left, the deadline comes,
/// or only muted ones are.
async fn deliver_to(
    store: &Store,
    v: View<'_>,
    senders: &Senders<'_>,
    receiver: &str,
    deadline: tokio::time::Instant,
    stop: impl std::future::Future<Output = ()> + Clone,
    halt: &tokio_util::sync::CancellationToken,
) -> Result<Delivered, StoreError> {
    let mut backoff = FIRST_BACKOFF;
    let mut total = Delivered::default();
    let is_email = v.routing.is_email(receiver);
    loop {
        let mine: Vec<QueuedNotice> = store.queued_for(receiver)?;
        let messages = group(mine, v.from, v.routing, v.registry);
        if messages.is_empty() {
            total.queued = 0;
            total.held = 0;
            return Ok(total);
        }
        // Cannot send at all: no relay configured (the mail waits, as it
        // always did), or the receiver's secret is missing.
        let blocked = if is_email {
            senders.mailer.is_none().then(String::new)
        } else {
            senders.http.setup_error(receiver)
        };
        if let Some(why) = blocked {
            total.queued = messages.len();
            total.blocked = messages.len();
            if !why.is_empty() {
                total.last_error = Some(why);
            }
            return Ok(total);
        }
        let now = local_now(v.routing.timezone);
        let (held, ready): (Vec<&Outgoing>, Vec<&Outgoing>) = messages
            .iter()
            .partition(|o| v.routing.route(o.route).muted_at(now));
        total.held = held.len();
        total.held_until = held
            .iter()
            .map(|o| unmuted_from(v.routing.route(o.route), now).with_timezone(&Utc))
            .min();
        if ready.is_empty() {
            total.queued = held.len();
            return Ok(total);
        }
        // Messages sent or failed in this pass: they have left the outbox.
        let mut done = 0;
        // A few messages in flight at once: a relay or an endpoint answers
        // each after a round trip or two, and one at a time leaves it
        // idle. Once the receiver is known to be down (or asked to slow
        // down) no new send starts, but sends already in flight finish and
        // record: dropping one mid-request could lose track of an accepted
        // message.
        let down = std::sync::atomic::AtomicBool::new(false);
        let wait = std::sync::Mutex::new(None::<Duration>);
        // Collected first: a lazy map over borrowed messages trips the
        // `Send` check of the service's spawned task (rust#102211).
        let sends: Vec<_> = ready
            .iter()
            .map(|o| {
                let down = &down;
                async move {
                    if down.load(Relaxed) || halt.is_cancelled() {
                        return Ok(Outcome::Skipped);
                    }
                    send_one(store, v, senders, o).await
                }
            })
            .collect();
        let mut outcomes = futures_util::stream::iter(sends).buffer_unordered(PARALLEL_SENDS);
        while let Some(outcome) = outcomes.next().await {
            match outcome? {
                Outcome::Sent => {
                    total.sent += 1;
                    done += 1;
                }
                Outcome::Failed => {
                    total.failed += 1;
                    done += 1;
                }
                Outcome::Retry {
                    error,
                    connection,
                    after,
                } => {
                    total.last_error = Some(error);
                    if connection {
                        down.store(true, Relaxed);
                    }
                    if let (Some(a), Ok(mut w)) = (after, wait.lock()) {
                        *w = Some(w.map_or(a, |b: Duration| b.max(a)));
                    }
                }
                Outcome::Skipped => {}
            }
        }
        drop(outcomes);
        let left = ready.len() - done;
        total.queued = left + held.len();
        if left == 0 || halt.is_cancelled() {
            return Ok(total);
        }
        if done > 0 && !down.load(Relaxed) {
            backoff = FIRST_BACKOFF;
        }
        // A receiver's `Retry-After` is honoured as asked (within reason),
        // whatever the backoff says.
        let asked = wait.lock().ok().and_then(|w| *w);
        let pause = asked.unwrap_or(backoff);
        let now = tokio::time::Instant::now();
        if now + pause > deadline {
            return Ok(total);
        }
        tracing::info!(
            queued = left,
            retry_in_secs = pause.as_secs_f64(),
            "delivery will retry"
        );
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = stop.clone() => return Ok(total),
        }
        if asked.is_none() {
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

enum Outcome {
    Sent,
    Failed,
    Retry {
        error: String,
        /// The receiver itself is the problem: nothing more this pass.
        connection: bool,
        /// It asked to wait this long (`Retry-After`).
        after: Option<Duration>,
    },
    /// Not tried: the receiver was found down during this pass.
    Skipped,
}

/// Sends one message and records the outcome.
async fn send_one(
    store: &Store,
    v: View<'_>,
    senders: &Senders<'_>,
    o: &Outgoing,
) -> Result<Outcome, StoreError> {
    let span = tracing::info_span!(
        "deliver",
        receiver = %o.receiver,
        message_id = %o.message_id,
        to = %o.to,
        accounts = %o.accounts.join(","),
    );
    async {
        let mut record = MailRecord::new(o, v.routing, store.mail_record(&o.message_id)?);
        record.attempts += 1;
        record.last_attempt = Some(Utc::now());
        let is_email = v.routing.is_email(&o.receiver);
        let what = if is_email { "alert e-mail" } else { "alert" };
        // E-mail is composed before the attempt is recorded: a message
        // that cannot be composed is a failure, not an attempt.
        let mut message = None;
        if is_email || o.broken.is_some() {
            match o.render(v.from, senders.links) {
                Ok(m) => message = Some(m),
                Err(e) => {
                    tracing::error!(error = %e, "alert cannot be composed; recorded as failed");
                    record.status = Status::Failed;
                    record.error = Some(e.to_string());
                    store.record_mail(&o.message_id, &record, &o.notices)?;
                    return Ok(Outcome::Failed);
                }
            }
        }
        // The attempt is on disk before a byte goes out: if lull stops
        // during the send, the next run knows the outcome is unknown.
        record.status = Status::Sending;
        store.record_mail(&o.message_id, &record, &[])?;
        record.status = Status::Queued;
        let sent = match (message, senders.mailer) {
            (Some(m), Some(mailer)) => {
                let bytes = m.formatted().len();
                mailer.send(m).await.map(|()| bytes)
            }
            (Some(_), None) => Err(SendError::Transient {
                message: "no [smtp] relay is configured".into(),
                connection: true,
            }),
            (None, _) => senders.http.send(o, senders.links, v.registry).await,
        };
        match sent {
            Ok(bytes) => {
                // Record first, log after: this is the window a crash
                // could turn into a repeat.
                record.status = Status::Sent;
                record.sent_at = Some(Utc::now());
                record.bytes = Some(bytes);
                record.error = None;
                store.record_mail(&o.message_id, &record, &o.notices)?;
                tracing::info!(bytes, "{what} sent");
                Ok(Outcome::Sent)
            }
            Err(SendError::Permanent(e)) => {
                record.status = Status::Failed;
                record.error = Some(e.clone());
                store.record_mail(&o.message_id, &record, &o.notices)?;
                tracing::error!(error = %e, "{what} rejected by the receiver; recorded as failed");
                Ok(Outcome::Failed)
            }
            Err(SendError::Unknown(message)) => {
                record.unknown_outcomes += 1;
                record.error = Some(message.clone());
                store.record_mail(&o.message_id, &record, &[])?;
                tracing::warn!(error = %message, attempts = record.attempts, "no answer from the receiver: the outcome is unknown; the message stays queued and is sent again with the same id");
                Ok(Outcome::Retry {
                    error: message,
                    connection: true,
                    after: None,
                })
            }
            Err(SendError::Throttled { message, after }) => {
                record.error = Some(message.clone());
                store.record_mail(&o.message_id, &record, &[])?;
                tracing::warn!(error = %message, attempts = record.attempts, wait_secs = after.map(|a| a.as_secs()), "receiver asks to wait; the message stays queued");
                Ok(Outcome::Retry {
                    error: message,
                    connection: true,
                    after,
                })
            }
            Err(SendError::Transient {
                message,
                connection,
            }) => {
                record.error = Some(message.clone());
                store.record_mail(&o.message_id, &record, &[])?;
                tracing::warn!(error = %message, attempts = record.attempts, "{what} not sent; stays queued");
                Ok(Outcome::Retry {
                    error: message,
                    connection,
                    after: None,
                })
            }
        }
    }
    .instrument(span)
    .await
}
