//! Alert e-mails: the detector's decisions reach the right CSM, once.
//!
//! The path reads like Alertmanager's notification pipeline, one stage
//! after the other:
//!
//! 1. **mute** — snoozed accounts (`lull snooze`) and muted segments
//!    (`[detect.segment.NAME] mute = true`) get no notice decided; channels
//!    of a stale source are `unknown`, and the source is told to the ops
//!    address instead (detection, `crate::detect`);
//! 2. **dedupe** — a notice is queued in the outbox keyed (day, account,
//!    kind), in the same flushed transaction as the state that decided it:
//!    one alert per silence episode, stored before anything is sent;
//! 3. **group** — the queued notices of one detection day and one
//!    recipient become one e-mail, with a stable Message-ID ([`compose`]);
//! 4. **send with retry** — one SMTP transport ([`smtp`]); a relay that is
//!    down or answers 4xx is retried with exponential backoff;
//! 5. **record** — right after the relay accepted, the notices leave the
//!    outbox and the message is recorded as sent, in one flushed
//!    transaction ([`deliver`]).
//!
//! A crash anywhere before step 5 leaves the notices queued (they are sent
//! by the next run); the only repeat possible is a crash between the
//! relay's acceptance and the record, a few milliseconds.

pub mod chart;
pub mod chat;
pub mod compose;
pub mod config;
pub mod deliver;
pub mod receivers;
pub mod route;
pub mod smtp;

pub use deliver::{Delivered, MailRecord, Status, all, deliver};
pub use smtp::Mailer;
