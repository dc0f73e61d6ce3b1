//! What detection and delivery keep: each account's state, the last
//! judged day, stale sources, snoozes (tree `alerts`); notices waiting for
//! delivery (`outbox`); and the delivery record (`mail`).

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;

use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use super::activity::damaged;
use super::{
    ALERTS_LAST_DAY, GENERATION, P_FEEDBACK, P_NONCE, P_SNOOZE, P_STALE, P_STATE, SEP, Store,
    StoreError, TREE_ALERTS, TREE_MAIL, TREE_OUTBOX, check_name, day_key, key_bare,
};
use crate::types::{AccountId, Day, SourceName};

/// Detection state per account, as the detector serialised it.
pub type SavedStates = HashMap<AccountId, Vec<u8>>;

/// A notice waiting in the outbox for delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedNotice {
    pub day: Day,
    pub account: AccountId,
    /// `silent`, `reminder`, `recovered` or `stale_source`.
    pub kind: String,
    /// The notice as the detector wrote it (JSON).
    pub body: Vec<u8>,
}

impl QueuedNotice {
    /// The outbox key: day · account · 0 · kind.
    pub(super) fn key(&self) -> Result<Vec<u8>, StoreError> {
        let mut k = self.day.to_key().to_vec();
        k.extend_from_slice(check_name(self.account.as_str())?);
        k.push(SEP);
        k.extend_from_slice(check_name(&self.kind)?);
        Ok(k)
    }

    /// The notice stored under an outbox key.
    pub(super) fn decode(k: &[u8], v: &[u8]) -> Result<QueuedNotice, StoreError> {
        let parsed = (|| {
            let day = day_key(k.get(..4)?)?;
            let rest = k.get(4..)?;
            let sep = rest.iter().position(|&b| b == SEP)?;
            let account = std::str::from_utf8(&rest[..sep]).ok()?;
            let kind = std::str::from_utf8(&rest[sep + 1..]).ok()?;
            Some(QueuedNotice {
                day,
                account: AccountId(account.to_string()),
                kind: kind.to_string(),
                body: v.to_vec(),
            })
        })();
        parsed.ok_or_else(|| damaged("an outbox entry", k))
    }
}

fn transaction_err<'s>(
    store: &'s Store,
    doing: &'static str,
) -> impl FnOnce(TransactionError<Infallible>) -> StoreError + 's {
    move |e| match e {
        TransactionError::Storage(e) => {
            if matches!(e, sled::Error::Io(_)) {
                store.set_broken(format!("{doing}: {e}"));
            }
            store.fail(doing, e)
        }
        TransactionError::Abort(never) => match never {},
    }
}

impl Store {
    /// The last day detection recorded, if any.
    pub fn last_judged_day(&self) -> Result<Option<Day>, StoreError> {
        match self
            .alerts
            .get(ALERTS_LAST_DAY)
            .map_err(|e| self.fail("reading detection state", e))?
        {
            None => Ok(None),
            Some(v) => day_key(&v)
                .map(Some)
                .ok_or_else(|| damaged("the last judged day", ALERTS_LAST_DAY)),
        }
    }

    /// The last day detection recorded, and each account's saved state
    /// (opaque bytes owned by the detector).
    pub fn detection_state(&self) -> Result<(Option<Day>, SavedStates), StoreError> {
        let last = self.last_judged_day()?;
        let mut states = HashMap::new();
        for r in self.alerts.scan_prefix([P_STATE]) {
            let (k, v) = r.map_err(|e| self.fail("reading detection state", e))?;
            let account = std::str::from_utf8(&k[1..])
                .map_err(|_| damaged("an account's detection state", &k))?;
            states.insert(AccountId(account.to_string()), v.to_vec());
        }
        Ok((last, states))
    }

    /// One account's saved detection state.
    pub fn state_of(&self, account: &AccountId) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .alerts
            .get(key_bare(P_STATE, account.as_str())?)
            .map_err(|e| self.fail("reading detection state", e))?
            .map(|v| v.to_vec()))
    }

    /// Records one detection day atomically: the day, the account states
    /// that changed, the notices to deliver (queued in the outbox) and the
    /// sources that went stale (`Some(last day with data)`) or are fresh
    /// again (`None`). A notice's key is (day, account, kind), so recording
    /// the same day twice queues nothing twice. When this returns, all of
    /// it is on disk.
    pub fn record_detection(
        &self,
        day: Day,
        states: &[(AccountId, Vec<u8>)],
        notices: &[QueuedNotice],
        stale: &[(SourceName, Option<Day>)],
    ) -> Result<(), StoreError> {
        let bytes = states.iter().map(|(_, b)| b.len() as u64).sum::<u64>()
            + notices.iter().map(|n| n.body.len() as u64).sum::<u64>();
        let mut w = self.begin(bytes)?;
        let mut alert_keys: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::new();
        alert_keys.push((ALERTS_LAST_DAY.to_vec(), Some(day.to_key().to_vec())));
        for (account, bytes) in states {
            alert_keys.push((key_bare(P_STATE, account.as_str())?, Some(bytes.clone())));
        }
        for (source, since) in stale {
            let k = key_bare(P_STALE, source.as_str())?;
            alert_keys.push((k, since.map(|d| d.to_key().to_vec())));
        }
        let mut notice_keys = Vec::with_capacity(notices.len());
        for n in notices {
            notice_keys.push((n.key()?, n.body.as_slice()));
        }
        let alerts_gen = w.bump(TREE_ALERTS).1;
        let outbox_gen = (!notice_keys.is_empty()).then(|| w.bump(TREE_OUTBOX).1);
        (&*self.alerts, &*self.outbox)
            .transaction(|(alerts, outbox)| {
                for (k, v) in &alert_keys {
                    match v {
                        Some(v) => alerts.insert(k.as_slice(), v.as_slice())?,
                        None => alerts.remove(k.as_slice())?,
                    };
                }
                alerts.insert(GENERATION, &alerts_gen)?;
                for (k, v) in &notice_keys {
                    outbox.insert(k.as_slice(), *v)?;
                }
                if let Some(g) = &outbox_gen {
                    outbox.insert(GENERATION, g)?;
                }
                Ok::<(), ConflictableTransactionError<Infallible>>(())
            })
            .map_err(transaction_err(self, "recording detection"))?;
        w.finish()
    }

    /// Queued notices, oldest day first.
    pub fn queued(&self) -> Result<Vec<QueuedNotice>, StoreError> {
        let mut out = Vec::new();
        for r in self.outbox.iter() {
            let (k, v) = r.map_err(|e| self.fail("reading the outbox", e))?;
            if k.as_ref() == GENERATION {
                continue;
            }
            out.push(QueuedNotice::decode(&k, &v)?);
        }
        Ok(out)
    }

    /// Records what became of one message, atomically: the record under
    /// its Message-ID in `mail`, and its notices out of the outbox (none
    /// while it is only being retried). Durable before returning: called
    /// right after the SMTP server accepted, this is the whole window in
    /// which a crash could send the message again.
    pub fn record_mail(
        &self,
        message_id: &str,
        record: &[u8],
        done: &[QueuedNotice],
    ) -> Result<(), StoreError> {
        if message_id.is_empty() {
            return Err(StoreError::Backup(
                "a delivery record needs a Message-ID".into(),
            ));
        }
        let mut w = self.begin(record.len() as u64)?;
        let keys = done
            .iter()
            .map(QueuedNotice::key)
            .collect::<Result<Vec<_>, _>>()?;
        let mail_gen = w.bump(TREE_MAIL).1;
        let outbox_gen = (!keys.is_empty()).then(|| w.bump(TREE_OUTBOX).1);
        (&*self.outbox, &*self.mail)
            .transaction(|(outbox, mail)| {
                for k in &keys {
                    outbox.remove(k.as_slice())?;
                }
                if let Some(g) = &outbox_gen {
                    outbox.insert(GENERATION, g)?;
                }
                mail.insert(message_id.as_bytes(), record)?;
                mail.insert(GENERATION, &mail_gen)?;
                Ok::<(), ConflictableTransactionError<Infallible>>(())
            })
            .map_err(transaction_err(self, "recording a delivery"))?;
        w.finish()
    }

    /// Every delivery record: (Message-ID, record).
    pub fn mail(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let mut out = Vec::new();
        for r in self.mail.iter() {
            let (k, v) = r.map_err(|e| self.fail("reading the delivery record", e))?;
            if k.as_ref() == GENERATION {
                continue;
            }
            let id = std::str::from_utf8(&k).map_err(|_| damaged("a delivery record", &k))?;
            out.push((id.to_string(), v.to_vec()));
        }
        Ok(out)
    }

    /// The delivery record of one message.
    pub fn mail_record(&self, message_id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .mail
            .get(message_id.as_bytes())
            .map_err(|e| self.fail("reading the delivery record", e))?
            .map(|v| v.to_vec()))
    }

    /// Sets (`Some`) or lifts (`None`) an account's snooze; durable. With
    /// a snooze, the account's notices still waiting in the outbox leave it
    /// in the same transaction (a snooze stops what was already decided,
    /// too); returns how many.
    pub fn set_snooze(
        &self,
        account: &AccountId,
        value: Option<&[u8]>,
    ) -> Result<usize, StoreError> {
        let mut w = self.begin(value.map_or(0, |v| v.len() as u64))?;
        let k = key_bare(P_SNOOZE, account.as_str())?;
        let mut drop = Vec::new();
        if value.is_some() {
            for r in self.outbox.iter() {
                let (key, v) = r.map_err(|e| self.fail("reading the outbox", e))?;
                if key.as_ref() == GENERATION {
                    continue;
                }
                let n = QueuedNotice::decode(&key, &v)?;
                if n.account == *account && n.kind != crate::detect::STALE_SOURCE {
                    drop.push(key.to_vec());
                }
            }
        }
        let alerts_gen = w.bump(TREE_ALERTS).1;
        let outbox_gen = (!drop.is_empty()).then(|| w.bump(TREE_OUTBOX).1);
        (&*self.alerts, &*self.outbox)
            .transaction(|(alerts, outbox)| {
                match value {
                    Some(v) => alerts.insert(k.as_slice(), v)?,
                    None => alerts.remove(k.as_slice())?,
                };
                alerts.insert(GENERATION, &alerts_gen)?;
                for d in &drop {
                    outbox.remove(d.as_slice())?;
                }
                if let Some(g) = &outbox_gen {
                    outbox.insert(GENERATION, g)?;
                }
                Ok::<(), ConflictableTransactionError<Infallible>>(())
            })
            .map_err(transaction_err(self, "recording a snooze"))?;
        w.finish()?;
        Ok(drop.len())
    }

    /// Every snoozed account and its snooze.
    pub fn snoozes(&self) -> Result<Vec<(AccountId, Vec<u8>)>, StoreError> {
        let mut out = Vec::new();
        for r in self.alerts.scan_prefix([P_SNOOZE]) {
            let (k, v) = r.map_err(|e| self.fail("reading snoozes", e))?;
            let a = std::str::from_utf8(&k[1..]).map_err(|_| damaged("a snooze", &k))?;
            out.push((AccountId(a.to_string()), v.to_vec()));
        }
        Ok(out)
    }

    /// Records feedback on an account's notice (of `day` and `kind`);
    /// a later verdict on the same notice replaces it. Durable.
    pub fn set_feedback(
        &self,
        account: &AccountId,
        day: Day,
        kind: &str,
        value: &[u8],
    ) -> Result<(), StoreError> {
        let mut w = self.begin(value.len() as u64)?;
        let key = feedback_key(account.as_str(), day, kind)?;
        let mut batch = sled::Batch::default();
        batch.insert(key, value);
        let (gk, gv) = w.bump(TREE_ALERTS);
        batch.insert(gk, &gv);
        self.alerts
            .apply_batch(batch)
            .map_err(|e| w.failed("recording feedback", e))?;
        w.finish()
    }

    /// Feedback of one account (`Some`) or every account: (account, day,
    /// kind, value).
    pub fn feedback(&self, account: Option<&AccountId>) -> Result<Vec<FeedbackEntry>, StoreError> {
        let mut prefix = vec![P_FEEDBACK];
        if let Some(a) = account {
            prefix.extend_from_slice(check_name(a.as_str())?);
            prefix.push(SEP);
        }
        let mut out = Vec::new();
        for r in self.alerts.scan_prefix(&prefix) {
            let (k, v) = r.map_err(|e| self.fail("reading feedback", e))?;
            let (a, day, kind) = decode_feedback_key(&k).ok_or_else(|| damaged("feedback", &k))?;
            out.push((a, day, kind, v.to_vec()));
        }
        Ok(out)
    }

    /// Whether a single-use link (`nonce`) was used.
    pub fn nonce_used(&self, nonce: &str) -> Result<bool, StoreError> {
        let key = key_bare(P_NONCE, nonce)?;
        self.alerts
            .contains_key(key)
            .map_err(|e| self.fail("reading used links", e))
    }

    /// Marks a single-use link (`nonce`) as used; `false` if it already
    /// was. Durable when it returns `true`.
    pub fn use_nonce(&self, nonce: &str, expires: Day) -> Result<bool, StoreError> {
        let mut w = self.begin(16)?;
        let key = key_bare(P_NONCE, nonce)?;
        let fresh = self
            .alerts
            .compare_and_swap(key, None as Option<&[u8]>, Some(&expires.to_key()[..]))
            .map_err(|e| w.failed("recording a used link", e))?
            .is_ok();
        if fresh {
            let (gk, gv) = w.bump(TREE_ALERTS);
            self.alerts
                .insert(gk, &gv)
                .map_err(|e| w.failed("recording a used link", e))?;
        }
        w.finish()?;
        Ok(fresh)
    }

    /// Sources reported stale, with the last day each had data.
    pub fn stale_sources(&self) -> Result<BTreeMap<SourceName, Day>, StoreError> {
        let mut out = BTreeMap::new();
        for r in self.alerts.scan_prefix([P_STALE]) {
            let (k, v) = r.map_err(|e| self.fail("reading stale sources", e))?;
            let (Ok(name), Some(day)) = (std::str::from_utf8(&k[1..]), day_key(&v)) else {
                return Err(damaged("a stale-source marker", &k));
            };
            out.insert(SourceName(name.to_string()), day);
        }
        Ok(out)
    }
}

/// Stored feedback: (account, the alert's day, its kind, the JSON).
pub type FeedbackEntry = (AccountId, Day, String, Vec<u8>);

/// f · account · 0 · day · kind.
pub(super) fn feedback_key(account: &str, day: Day, kind: &str) -> Result<Vec<u8>, StoreError> {
    let mut k = vec![P_FEEDBACK];
    k.extend_from_slice(check_name(account)?);
    k.push(SEP);
    k.extend_from_slice(&day.to_key());
    k.extend_from_slice(check_name(kind)?);
    Ok(k)
}

pub(super) fn decode_feedback_key(k: &[u8]) -> Option<(AccountId, Day, String)> {
    let rest = k.strip_prefix(&[P_FEEDBACK])?;
    let sep = rest.iter().position(|&b| b == SEP)?;
    let account = std::str::from_utf8(&rest[..sep]).ok()?;
    let day = day_key(rest.get(sep + 1..sep + 5)?)?;
    let kind = std::str::from_utf8(rest.get(sep + 5..)?).ok()?;
    Some((AccountId(account.to_string()), day, kind.to_string()))
}
