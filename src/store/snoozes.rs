//! What people tell lull about accounts (tree `alerts`): snoozes, feedback
//! on notices, and the single-use links already used.

use std::convert::Infallible;

use sled::Transactional;
use sled::transaction::ConflictableTransactionError;

use super::activity::damaged;
use super::state::transaction_err;
use super::value::{Value, decode, encode};
use super::{
    GENERATION, P_FEEDBACK, P_NONCE, P_SNOOZE, QueuedNotice, SEP, Store, StoreError, TREE_ALERTS,
    TREE_OUTBOX, check_name, day_key, key_bare,
};
use crate::types::{AccountId, Day};

impl Store {
    /// Sets (`Some`) or lifts (`None`) an account's snooze; durable. With
    /// a snooze, the account's notices still waiting in the outbox leave it
    /// in the same transaction (a snooze stops what was already decided,
    /// too); returns how many.
    pub fn set_snooze<S: Value>(
        &self,
        account: &AccountId,
        snooze: Option<&S>,
    ) -> Result<usize, StoreError> {
        let value = snooze.map(encode).transpose()?;
        let value = value.as_deref();
        let k = key_bare(P_SNOOZE, account.as_str())?;
        let mut w = self.begin(value.map_or(0, |v| v.len() as u64))?;
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
    pub fn snoozes<S: Value>(&self) -> Result<Vec<(AccountId, S)>, StoreError> {
        let mut out = Vec::new();
        for r in self.alerts.scan_prefix([P_SNOOZE]) {
            let (k, v) = r.map_err(|e| self.fail("reading snoozes", e))?;
            let a = std::str::from_utf8(&k[1..]).map_err(|_| damaged("a snooze", &k))?;
            let snooze = decode(&k, &v, format_args!("of account {a}"))?;
            out.push((AccountId(a.to_string()), snooze));
        }
        Ok(out)
    }

    /// Records feedback on an account's notice (of `day` and `kind`);
    /// a later verdict on the same notice replaces it. Durable.
    pub fn set_feedback<F: Value>(
        &self,
        account: &AccountId,
        day: Day,
        kind: &str,
        feedback: &F,
    ) -> Result<(), StoreError> {
        let value = encode(feedback)?;
        let key = feedback_key(account.as_str(), day, kind)?;
        let mut w = self.begin(value.len() as u64)?;
        let mut batch = sled::Batch::default();
        batch.insert(key, value);
        let (gk, gv) = w.bump(TREE_ALERTS);
        batch.insert(gk, &gv);
        self.alerts
            .apply_batch(batch)
            .map_err(|e| w.failed("recording feedback", e))?;
        w.finish()
    }

    /// Feedback of one account (`Some`) or every account, by account, then
    /// the notice's day and kind.
    pub fn feedback<F: Value>(&self, account: Option<&AccountId>) -> Result<Vec<F>, StoreError> {
        let mut prefix = vec![P_FEEDBACK];
        if let Some(a) = account {
            prefix.extend_from_slice(check_name(a.as_str())?);
            prefix.push(SEP);
        }
        let mut out = Vec::new();
        for r in self.alerts.scan_prefix(&prefix) {
            let (k, v) = r.map_err(|e| self.fail("reading feedback", e))?;
            let (a, day, kind) = decode_feedback_key(&k).ok_or_else(|| damaged("feedback", &k))?;
            out.push(decode(&k, &v, format_args!("on {a} {day} {kind}"))?);
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
}

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
