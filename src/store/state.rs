//! Detection state (tree `alerts`): each account's state (the detector's
//! type, kept as a [`Value`]), the last judged day and the sources reported stale; and
//! the one write that records a detection day (states, the outbox's new
//! notices, stale sources) atomically.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;

use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use super::activity::damaged;
use super::value::{Value, decode, encode};
use super::{
    ALERTS_LAST_DAY, GENERATION, P_STALE, P_STATE, QueuedNotice, Store, StoreError, TREE_ALERTS,
    TREE_OUTBOX, day_key, key_bare,
};
use crate::types::{AccountId, Day, SourceName};

pub(super) fn transaction_err<'s>(
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

    /// Each account's saved detection state.
    pub fn states<S: Value>(&self) -> Result<HashMap<AccountId, S>, StoreError> {
        let mut states = HashMap::new();
        for r in self.alerts.scan_prefix([P_STATE]) {
            let (k, v) = r.map_err(|e| self.fail("reading detection state", e))?;
            let account = std::str::from_utf8(&k[1..])
                .map_err(|_| damaged("an account's detection state", &k))?;
            let state = decode(&k, &v, format_args!("of account {account}"))?;
            states.insert(AccountId(account.to_string()), state);
        }
        Ok(states)
    }

    /// One account's saved detection state.
    pub fn state_of<S: Value>(&self, account: &AccountId) -> Result<Option<S>, StoreError> {
        let k = key_bare(P_STATE, account.as_str())?;
        self.alerts
            .get(&k)
            .map_err(|e| self.fail("reading detection state", e))?
            .map(|v| decode(&k, &v, format_args!("of account {account}")))
            .transpose()
    }

    /// Records one detection day atomically: the day, the account states
    /// that changed, the notices to deliver (queued in the outbox) and the
    /// sources that went stale (`Some(last day with data)`) or are fresh
    /// again (`None`). A notice's key is (day, account, kind), so recording
    /// the same day twice queues nothing twice. When this returns, all of
    /// it is on disk.
    pub fn record_detection<S: Value>(
        &self,
        day: Day,
        states: &[(&AccountId, &S)],
        notices: &[QueuedNotice],
        stale: &[(SourceName, Option<Day>)],
    ) -> Result<(), StoreError> {
        let mut alert_keys: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::new();
        alert_keys.push((ALERTS_LAST_DAY.to_vec(), Some(day.to_key().to_vec())));
        for (account, state) in states {
            alert_keys.push((key_bare(P_STATE, account.as_str())?, Some(encode(*state)?)));
        }
        let bytes = alert_keys
            .iter()
            .map(|(_, v)| v.as_ref().map_or(0, |v| v.len() as u64))
            .sum::<u64>()
            + notices.iter().map(|n| n.body.len() as u64).sum::<u64>();
        let mut w = self.begin(bytes)?;
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
