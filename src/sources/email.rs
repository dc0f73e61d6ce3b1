//! What the e-mail platforms share: deliveries and opens per recipient,
//! each open counted once per recipient per message, machine opens apart.
//!
//! Opens are noisy. Apple Mail Privacy Protection, corporate link scanners
//! and some webmail proxies fetch the tracking pixel within seconds of
//! delivery, whether or not anyone reads the mail. An open that soon after
//! delivery (or flagged by the provider as a bot) is stored as kind
//! `machine_open`, which detection ignores by default; a person's open of
//! the same message later still counts as `open`.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::Activity;

pub const DELIVERED: &str = "delivered";
pub const OPEN: &str = "open";
pub const MACHINE_OPEN: &str = "machine_open";

/// What the e-mail platforms store, with how an alert names a count of
/// each (`open` per `delivered` is judged as the rate "e-mails opened").
pub(crate) const ACTIVITIES: &[(&str, &str)] = &[
    (DELIVERED, "e-mails delivered"),
    (OPEN, "e-mails opened"),
    (MACHINE_OPEN, "machine opens"),
];

/// An open this soon after delivery is a machine's (a privacy proxy or a
/// link scanner fetching the pixel), not a person's.
pub const DEFAULT_MACHINE_OPEN_SECS: u64 = 5;

/// The `machine_open_secs` key every e-mail platform has.
pub(crate) fn machine_open(k: &mut super::kind::Keys<'_>) -> Option<Duration> {
    if !k.is_set("machine_open_secs") {
        return Some(Duration::from_secs(DEFAULT_MACHINE_OPEN_SECS));
    }
    k.u64("machine_open_secs").map(Duration::from_secs)
}

/// Collects one poll's deliveries and opens.
pub struct Engagement {
    machine_open: chrono::Duration,
    delivered: HashMap<(String, String), DateTime<Utc>>,
    /// Send times of messages whose deliveries are not read this poll.
    sent: HashMap<String, DateTime<Utc>>,
    opens: HashMap<(String, String), FirstOpens>,
}

/// The first opens of one message by one recipient.
#[derive(Default)]
struct FirstOpens {
    human: Option<DateTime<Utc>>,
    machine: Option<DateTime<Utc>>,
}

impl Engagement {
    pub fn new(machine_open: Duration) -> Engagement {
        Engagement {
            machine_open: chrono::Duration::from_std(machine_open)
                .unwrap_or(chrono::Duration::seconds(5)),
            delivered: HashMap::new(),
            sent: HashMap::new(),
            opens: HashMap::new(),
        }
    }

    /// A message delivered to `recipient` at `at`.
    pub fn delivered(&mut self, message: &str, recipient: &str, at: DateTime<Utc>) {
        let key = (message.to_string(), recipient.trim().to_lowercase());
        let e = self.delivered.entry(key).or_insert(at);
        *e = (*e).min(at);
    }

    /// `message` went out at `at` (to recipients whose deliveries are not
    /// read again): opens right after it are a machine's.
    pub fn sent(&mut self, message: &str, at: DateTime<Utc>) {
        self.sent.insert(message.to_string(), at);
    }

    /// `recipient` opened `message` at `at`; `bot` when the provider says
    /// a machine did.
    pub fn opened(&mut self, message: &str, recipient: &str, at: DateTime<Utc>, bot: bool) {
        let key = (message.to_string(), recipient.trim().to_lowercase());
        let machine = bot
            || self
                .delivered
                .get(&key)
                .or_else(|| self.sent.get(message))
                .is_some_and(|d| at >= *d && at - *d <= self.machine_open);
        let e = self.opens.entry(key).or_default();
        let slot = if machine {
            &mut e.machine
        } else {
            &mut e.human
        };
        *slot = Some(slot.map_or(at, |t| t.min(at)));
    }

    /// The activities: one `delivered` per message and recipient, one
    /// `open` for its first human open, one `machine_open` for its first
    /// machine open.
    pub fn into_activities(self) -> Vec<Activity> {
        let mut out = Vec::with_capacity(self.delivered.len() + self.opens.len());
        for ((m, r), at) in self.delivered {
            out.push(Activity {
                id: format!("d|{m}|{r}"),
                kind: DELIVERED,
                at,
                actors: vec![r],
                once: false,
            });
        }
        for ((m, r), first) in self.opens {
            for (prefix, kind, at) in [("o", OPEN, first.human), ("m", MACHINE_OPEN, first.machine)]
            {
                if let Some(at) = at {
                    out.push(Activity {
                        id: format!("{prefix}|{m}|{r}"),
                        kind,
                        at,
                        actors: vec![r.clone()],
                        once: true,
                    });
                }
            }
        }
        out.sort_by(|a, b| a.at.cmp(&b.at).then_with(|| a.id.cmp(&b.id)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn opens_count_once_per_recipient_and_message_and_machine_opens_apart() {
        let mut e = Engagement::new(Duration::from_secs(5));
        e.delivered("m1", "Bob@Acme.com", t("2026-01-01T10:00:00Z"));
        // A proxy fetches the pixel 2 s after delivery, then Bob reads it
        // twice the next day.
        e.opened("m1", "bob@acme.com", t("2026-01-01T10:00:02Z"), false);
        e.opened("m1", "bob@acme.com", t("2026-01-02T09:00:00Z"), false);
        e.opened("m1", "bob@acme.com", t("2026-01-02T08:00:00Z"), false);
        // Flagged by the provider.
        e.opened("m2", "eve@acme.com", t("2026-01-03T08:00:00Z"), true);
        let a = e.into_activities();
        let got: Vec<(&str, &str, String)> = a
            .iter()
            .map(|a| (a.kind, a.id.as_str(), a.at.to_rfc3339()))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "delivered",
                    "d|m1|bob@acme.com",
                    "2026-01-01T10:00:00+00:00".into()
                ),
                (
                    "machine_open",
                    "m|m1|bob@acme.com",
                    "2026-01-01T10:00:02+00:00".into()
                ),
                (
                    "open",
                    "o|m1|bob@acme.com",
                    "2026-01-02T08:00:00+00:00".into()
                ),
                (
                    "machine_open",
                    "m|m2|eve@acme.com",
                    "2026-01-03T08:00:00+00:00".into()
                ),
            ]
        );
        assert!(a.iter().filter(|a| a.kind != "delivered").all(|a| a.once));
    }
}
