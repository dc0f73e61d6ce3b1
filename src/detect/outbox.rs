//! The outbox's entries: what detection queues and delivery reads. This
//! module is their one owner: it encodes a notice into the store's entry
//! (day, account or source, kind, JSON body) and decodes an entry back,
//! checking that its key and its body agree.

use super::{Notice, NoticeKind, STALE_SOURCE, StaleNotice};
use crate::store::QueuedNotice;
use crate::types::AccountId;

/// A notice waiting in the outbox.
#[derive(Debug, Clone)]
pub enum Queued {
    /// About one account, to its CSM.
    Account(Box<Notice>),
    /// A source that stopped delivering data, to ops.
    Stale(StaleNotice),
}

impl Queued {
    /// The outbox entry for this notice.
    pub fn entry(&self) -> Result<QueuedNotice, serde_json::Error> {
        Ok(match self {
            Queued::Account(n) => QueuedNotice {
                day: n.date,
                account: n.account.clone(),
                kind: n.notice.as_str().to_string(),
                body: serde_json::to_vec(n)?,
                receiver: None,
            },
            Queued::Stale(s) => QueuedNotice {
                day: s.date,
                account: AccountId(s.source.to_string()),
                kind: STALE_SOURCE.to_string(),
                body: serde_json::to_vec(s)?,
                receiver: None,
            },
        })
    }

    /// The notice an outbox entry holds; an entry that does not decode,
    /// or whose body is not the notice its key names, is an error that
    /// says which entry.
    pub fn decode(q: &QueuedNotice) -> Result<Queued, String> {
        let name = || format!("outbox entry {} {} {}", q.day, q.account, q.kind);
        let err = |e: serde_json::Error| format!("{} cannot be read: {e}", name());
        let mismatch = || format!("{} holds another notice than its key names", name());
        if q.kind == STALE_SOURCE {
            let s: StaleNotice = serde_json::from_slice(&q.body).map_err(err)?;
            if s.date != q.day || s.source.as_str() != q.account.as_str() {
                return Err(mismatch());
            }
            return Ok(Queued::Stale(s));
        }
        if !NoticeKind::ALL.iter().any(|k| k.as_str() == q.kind) {
            return Err(format!("{}: unknown kind of notice", name()));
        }
        let n: Notice = serde_json::from_slice(&q.body).map_err(err)?;
        if n.date != q.day || n.account != q.account || n.notice.as_str() != q.kind {
            return Err(mismatch());
        }
        Ok(Queued::Account(Box::new(n)))
    }

    /// When it was queued.
    pub fn queued_at(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        match self {
            Queued::Account(n) => n.queued_at,
            Queued::Stale(s) => s.queued_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_decodes_to_its_notice_and_a_mismatched_one_is_named() {
        let stale = Queued::Stale(StaleNotice {
            source: "eu:forum".into(),
            date: crate::types::Day(20_000),
            last_data: crate::types::Day(19_990),
            to: "ops@vendor.example".into(),
            queued_at: None,
        });
        let q = stale.entry().unwrap();
        assert!(
            matches!(Queued::decode(&q), Ok(Queued::Stale(s)) if s.source.as_str() == "eu:forum")
        );
        let mut other = q.clone();
        other.account = "us:forum".into();
        assert!(
            Queued::decode(&other)
                .unwrap_err()
                .contains("another notice")
        );
        let mut unknown = q.clone();
        unknown.kind = "telegram".into();
        assert!(
            Queued::decode(&unknown)
                .unwrap_err()
                .contains("unknown kind")
        );
        let mut damaged = q;
        damaged.body = b"\x01\xffnot".to_vec();
        assert!(
            Queued::decode(&damaged)
                .unwrap_err()
                .contains("cannot be read")
        );
    }
}
