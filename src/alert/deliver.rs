//! The delivery loop: send with retry, then record.
//!
//! Each pass groups the outbox into messages and sends them one by one.
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

use super::compose::{Outgoing, group};
use super::smtp::{Mailer, SendError};
use crate::store::{Store, StoreError};
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
    pub message_id: String,
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

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl MailRecord {
    fn new(o: &Outgoing, previous: Option<MailRecord>) -> MailRecord {
        MailRecord {
            message_id: o.message_id.clone(),
            status: Status::Queued,
            day: o.day,
            to: o.to.clone(),
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
                    "lull stopped while sending it: the relay may have accepted it (outcome unknown); it is sent again with the same Message-ID".into(),
                ),
                _ => p.error,
            })),
        }
    }
}

/// The outbox as messages, with what was recorded of their attempts.
pub fn pending(store: &Store, from: &Mailbox) -> Result<Vec<MailRecord>, StoreError> {
    group(store.queued()?, from)
        .iter()
        .map(|o| Ok(MailRecord::new(o, previous(store, &o.message_id)?)))
        .collect()
}

fn previous(store: &Store, id: &str) -> Result<Option<MailRecord>, StoreError> {
    match store.mail_record(id)? {
        None => Ok(None),
        Some(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| StoreError::Damaged {
                what: format!("the delivery record of {id} ({e})"),
                key: id.to_string(),
            }),
    }
}

/// Every recorded message (sent, failed, retried) and the queued ones.
pub fn all(store: &Store, from: &Mailbox) -> Result<Vec<MailRecord>, StoreError> {
    let mut out: Vec<MailRecord> = pending(store, from)?;
    let queued: std::collections::HashSet<String> =
        out.iter().map(|r| r.message_id.clone()).collect();
    for (id, bytes) in store.mail()? {
        if queued.contains(&id) {
            continue;
        }
        let r: MailRecord = serde_json::from_slice(&bytes).map_err(|e| StoreError::Damaged {
            what: format!("the delivery record of {id} ({e})"),
            key: id.clone(),
        })?;
        if !matches!(r.status, Status::Queued | Status::Sending) {
            out.push(r);
        }
    }
    out.sort_by(|a, b| {
        (a.day, a.sent_at.or(a.last_attempt), &a.to).cmp(&(
            b.day,
            b.sent_at.or(b.last_attempt),
            &b.to,
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
}

/// Sends what is queued, retrying with backoff for at most `retry_for`
/// (or until `stop` resolves). Once `halt` is cancelled (the service
/// stops), no new send starts; sends under way finish and record. Returns
/// what happened; store errors abort.
pub async fn deliver(
    store: &Store,
    mailer: &Mailer,
    from: &Mailbox,
    links: Option<&crate::console::tokens::Links>,
    retry_for: Duration,
    stop: impl std::future::Future<Output = ()>,
    halt: &tokio_util::sync::CancellationToken,
) -> Result<Delivered, StoreError> {
    let deadline = tokio::time::Instant::now() + retry_for;
    let mut backoff = FIRST_BACKOFF;
    let mut total = Delivered::default();
    tokio::pin!(stop);
    loop {
        let messages = group(store.queued()?, from);
        if messages.is_empty() {
            total.queued = 0;
            return Ok(total);
        }
        // Messages sent or failed in this pass: they have left the outbox.
        let mut done = 0;
        // A few messages in flight at once (each on its own pooled
        // connection): a relay answers each DATA after a round trip or two,
        // and one at a time leaves it idle. Once the relay is known to be
        // down no new send starts, but sends already in flight finish and
        // record: dropping one mid-DATA could lose track of an accepted
        // message.
        let down = std::sync::atomic::AtomicBool::new(false);
        // Collected first: a lazy map over borrowed messages trips the
        // `Send` check of the service's spawned task (rust#102211).
        let sends: Vec<_> = messages
            .iter()
            .map(|o| {
                let down = &down;
                async move {
                    if down.load(Relaxed) || halt.is_cancelled() {
                        return Ok(Outcome::Skipped);
                    }
                    send_one(store, mailer, from, links, o).await
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
                Outcome::Retry { error, connection } => {
                    total.last_error = Some(error);
                    if connection {
                        down.store(true, Relaxed);
                    }
                }
                Outcome::Skipped => {}
            }
        }
        drop(outcomes);
        let left = messages.len() - done;
        total.queued = left;
        if left == 0 || halt.is_cancelled() {
            return Ok(total);
        }
        if done > 0 && !down.load(Relaxed) {
            backoff = FIRST_BACKOFF;
        }
        let now = tokio::time::Instant::now();
        if now + backoff > deadline {
            return Ok(total);
        }
        tracing::info!(
            queued = left,
            retry_in_secs = backoff.as_secs(),
            "alert delivery will retry"
        );
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = &mut stop => return Ok(total),
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

enum Outcome {
    Sent,
    Failed,
    Retry {
        error: String,
        connection: bool,
    },
    /// Not tried: the relay was found down during this pass.
    Skipped,
}

/// Sends one message and records the outcome.
async fn send_one(
    store: &Store,
    mailer: &Mailer,
    from: &Mailbox,
    links: Option<&crate::console::tokens::Links>,
    o: &Outgoing,
) -> Result<Outcome, StoreError> {
    let span = tracing::info_span!(
        "deliver",
        message_id = %o.message_id,
        to = %o.to,
        accounts = %o.accounts.join(","),
    );
    async {
        let mut record = MailRecord::new(o, previous(store, &o.message_id)?);
        record.attempts += 1;
        record.last_attempt = Some(Utc::now());
        let message = match o.render(from, links) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(error = %e, "alert e-mail cannot be composed; recorded as failed");
                record.status = Status::Failed;
                record.error = Some(e.to_string());
                store.record_mail(&o.message_id, &to_json(&record), &o.notices)?;
                return Ok(Outcome::Failed);
            }
        };
        let bytes = message.formatted().len();
        // The attempt is on disk before a byte goes to the relay: if lull
        // stops during the send, the next run knows the outcome is unknown.
        record.status = Status::Sending;
        store.record_mail(&o.message_id, &to_json(&record), &[])?;
        record.status = Status::Queued;
        match mailer.send(message).await {
            Ok(()) => {
                // Record first, log after: this is the window a crash
                // could turn into a repeat.
                record.status = Status::Sent;
                record.sent_at = Some(Utc::now());
                record.bytes = Some(bytes);
                record.error = None;
                store.record_mail(&o.message_id, &to_json(&record), &o.notices)?;
                tracing::info!(bytes, "alert e-mail sent");
                Ok(Outcome::Sent)
            }
            Err(SendError::Permanent(e)) => {
                record.status = Status::Failed;
                record.error = Some(e.clone());
                store.record_mail(&o.message_id, &to_json(&record), &o.notices)?;
                tracing::error!(error = %e, "alert e-mail rejected by the relay; recorded as failed");
                Ok(Outcome::Failed)
            }
            Err(SendError::Unknown(message)) => {
                record.unknown_outcomes += 1;
                record.error = Some(message.clone());
                store.record_mail(&o.message_id, &to_json(&record), &[])?;
                tracing::warn!(error = %message, attempts = record.attempts, "no answer from the relay: the outcome is unknown; the message stays queued and is sent again with the same Message-ID");
                Ok(Outcome::Retry {
                    error: message,
                    connection: true,
                })
            }
            Err(SendError::Transient {
                message,
                connection,
            }) => {
                record.error = Some(message.clone());
                store.record_mail(&o.message_id, &to_json(&record), &[])?;
                tracing::warn!(error = %message, attempts = record.attempts, "alert e-mail not sent; stays queued");
                Ok(Outcome::Retry {
                    error: message,
                    connection,
                })
            }
        }
    }
    .instrument(span)
    .await
}

fn to_json(r: &MailRecord) -> Vec<u8> {
    serde_json::to_vec(r).unwrap_or_default()
}
