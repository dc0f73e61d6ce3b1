//! Detection state (tree `alerts`): each account's state (the detector's
//! type, kept as a [`Value`]), the last judged day and the sources
//! reported stale; and the write that records a detection day (states,
//! the outbox's new notices, stale sources), atomically or in atomic parts.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;

use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use super::activity::damaged;
use super::value::{Value, decode, encode};
use super::{
    ALERTS_LAST_DAY, Accounts, GENERATION, P_STALE, P_STATE, QueuedNotice, Store, StoreError,
    TREE_ALERTS, TREE_OUTBOX, day_key, key_bare,
};
use crate::types::{AccountId, Day, SourceName};

/// Account states one atomic write of a recording holds at most. sled
/// keeps every node version a write replaces until the write ends (a few
/// KB per state on a big store): a first run's 100,000 states in one
/// write held ~600 MB until it committed.
pub const STATES_PER_PART: usize = 8_192;

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
    pub fn states<S: Value>(&self) -> Result<foldhash::HashMap<AccountId, S>, StoreError> {
        let mut states = foldhash::HashMap::default();
        self.visit_states_between(Accounts::ALL, |account, state| {
            states.insert(AccountId(account.to_string()), state);
        })?;
        Ok(states)
    }

    /// Hands `f` each saved state of the accounts in one range, with its
    /// account, in account order: ranges that split the key space can be
    /// read on several threads at once.
    pub fn visit_states_between<S: Value>(
        &self,
        accounts: Accounts<'_>,
        mut f: impl FnMut(&str, S),
    ) -> Result<(), StoreError> {
        for r in self.alerts.range(accounts.keys(P_STATE)) {
            let (k, v) = r.map_err(|e| self.fail("reading detection state", e))?;
            let account = std::str::from_utf8(&k[1..])
                .map_err(|_| damaged("an account's detection state", &k))?;
            f(
                account,
                decode(&k, &v, format_args!("of account {account}"))?,
            );
        }
        Ok(())
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

    /// Records one detection day: the day, the account states that
    /// changed, the notices to deliver (queued in the outbox) and the
    /// sources that went stale (`Some(last day with data)`) or are fresh
    /// again (`None`). A notice's key is (day, account, kind), so recording
    /// the same day twice queues nothing twice. When this returns, all of
    /// it is on disk.
    ///
    /// Up to [`STATES_PER_PART`] states this is one atomic write. More are
    /// written in parts, each atomic, each with the notices of its
    /// accounts; the last part also records the day and the stale sources.
    /// A crash between parts leaves whole parts: the day is not recorded,
    /// so it is judged again, and the states already written must say
    /// which day they hold (the detector's `Memory::recorded`) so their
    /// accounts are not judged twice.
    pub fn record_detection<S: Value>(
        &self,
        day: Day,
        states: &[(&AccountId, S)],
        notices: &[QueuedNotice],
        stale: &[(SourceName, Option<Day>)],
    ) -> Result<(), StoreError> {
        let parts = usize::MAX;
        self.record_detection_parts(day, states, 0, notices, stale, STATES_PER_PART, parts)
    }

    /// [`Store::record_detection`] in parts of `per_part` states, stopping
    /// after `parts` of them (what a crash between parts leaves: tests).
    /// The last `with_day` states land in the last part whatever their
    /// number (what was decided across accounts).
    #[doc(hidden)]
    #[allow(clippy::too_many_arguments)]
    pub fn record_detection_parts<S: Value>(
        &self,
        day: Day,
        states: &[(&AccountId, S)],
        with_day: usize,
        notices: &[QueuedNotice],
        stale: &[(SourceName, Option<Day>)],
        per_part: usize,
        parts: usize,
    ) -> Result<(), StoreError> {
        let per_part = per_part.max(1);
        let ordinary = states.len() - with_day.min(states.len());
        let count = ordinary.div_ceil(per_part).max(1);
        let part_of_state = |i: usize| (i / per_part).min(count - 1);
        let part_of: HashMap<&AccountId, usize> = states
            .iter()
            .enumerate()
            .map(|(i, (a, _))| (*a, part_of_state(i)))
            .collect();
        // Each notice with its account's state; the others (stale sources,
        // accounts whose state did not change) with the day, last.
        let mut notices_of: Vec<Vec<&QueuedNotice>> = vec![Vec::new(); count];
        for n in notices {
            let p = part_of.get(&n.account).copied().unwrap_or(count - 1);
            notices_of[p].push(n);
        }
        for (p, notices) in notices_of.iter().enumerate().take(parts) {
            let last = p + 1 == count;
            let from = (p * per_part).min(states.len());
            let to = if last {
                states.len()
            } else {
                ((p + 1) * per_part).min(states.len())
            };
            let these = &states[from..to];
            self.record_part(day, these, notices, last.then_some(stale))?;
        }
        Ok(())
    }

    /// One atomic part of a recording; `last` (the stale sources) also
    /// records the day.
    fn record_part<S: Value>(
        &self,
        day: Day,
        states: &[(&AccountId, S)],
        notices: &[&QueuedNotice],
        last: Option<&[(SourceName, Option<Day>)]>,
    ) -> Result<(), StoreError> {
        let mut alert_keys: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::new();
        for (account, state) in states {
            alert_keys.push((key_bare(P_STATE, account.as_str())?, Some(encode(state)?)));
        }
        if let Some(stale) = last {
            alert_keys.push((ALERTS_LAST_DAY.to_vec(), Some(day.to_key().to_vec())));
            for (source, since) in stale {
                let k = key_bare(P_STALE, source.as_str())?;
                alert_keys.push((k, since.map(|d| d.to_key().to_vec())));
            }
        }
        let mut notice_keys = Vec::with_capacity(notices.len());
        for n in notices {
            notice_keys.push((n.key()?, n.body.as_slice()));
        }
        let bytes = alert_keys
            .iter()
            .map(|(_, v)| v.as_ref().map_or(0, |v| v.len() as u64))
            .sum::<u64>()
            + notice_keys.iter().map(|(_, b)| b.len() as u64).sum::<u64>();
        let mut w = self.begin(bytes)?;
        // Every part writes states, the last one the day: alerts changes.
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
