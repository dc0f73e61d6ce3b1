//! Production detection: judge one day for every account, from the state
//! saved by the previous run, and record the outcome with its notices.

use std::collections::HashMap;

use super::{AccountJudgement, DetectConfig, Detector, Memory, Notice, timeline_for};
use crate::accounts::Registry;
use crate::store::{QueuedNotice, Store, StoreError};
use crate::types::{AccountId, Day};

/// One day's judgement of every account.
#[derive(Debug)]
pub struct DayRun {
    pub day: Day,
    /// Every account, in registry order.
    pub accounts: Vec<AccountJudgement>,
    /// Notices decided today (alerts, reminders, recoveries).
    pub notices: Vec<Notice>,
    /// The last day judged before this run, if any.
    pub previous: Option<Day>,
    /// `day` was already judged: states were replayed from history and
    /// nothing may be recorded.
    pub already_judged: bool,
    saved: HashMap<AccountId, Vec<u8>>,
}

/// Judges day `at`. Accounts with saved state continue from the day after
/// the last run (catching up missed days silently; what is still due is
/// told today); accounts without start from the beginning of history.
pub fn judge_day(
    store: &Store,
    registry: &Registry,
    config: &DetectConfig,
    at: Day,
) -> Result<DayRun, StoreError> {
    let (previous, saved) = store.detection_state()?;
    let already_judged = previous.is_some_and(|p| p >= at);
    let memories: HashMap<AccountId, Memory> = if already_judged {
        HashMap::new()
    } else {
        saved
            .iter()
            .filter_map(|(a, b)| serde_json::from_slice(b).ok().map(|m| (a.clone(), m)))
            .collect()
    };
    let resume = previous.filter(|_| !already_judged).map(|p| p.plus(1));
    let all_saved = registry
        .accounts()
        .iter()
        .all(|a| memories.contains_key(&a.id));
    let earliest = match resume {
        Some(r) if all_saved => r,
        _ => Day(i32::MIN / 2),
    };
    let (history, timeline) = timeline_for(store, config, earliest, at)?;
    let detector = Detector::load(store, registry, config, timeline)?;
    let mut accounts = Vec::with_capacity(registry.len());
    let mut notices = Vec::new();
    detector.for_each_account(store, |h| {
        let id = &registry.get(h.account).id;
        let (memory, from) = match (memories.get(id), resume) {
            (Some(m), Some(r)) => (*m, r),
            _ => (Memory::default(), history),
        };
        accounts.push(detector.replay(&h, memory, from, at, at, |n| notices.push(n)));
    })?;
    accounts.sort_by_key(|a| registry.by_id(a.account.as_str()));
    notices.sort_by(|a, b| (a.date, &a.account).cmp(&(b.date, &b.account)));
    Ok(DayRun {
        day: at,
        accounts,
        notices,
        previous,
        already_judged,
        saved,
    })
}

impl DayRun {
    /// Saves the states that changed and queues today's notices, in one
    /// atomic, flushed write. Refused for a day already judged.
    pub fn record(&self, store: &Store) -> Result<usize, StoreError> {
        if self.already_judged {
            return Ok(0);
        }
        let mut states = Vec::new();
        for a in &self.accounts {
            let bytes = serde_json::to_vec(&a.memory).unwrap_or_default();
            if self.saved.get(&a.account) != Some(&bytes) {
                states.push((a.account.clone(), bytes));
            }
        }
        let queued: Vec<QueuedNotice> = self
            .notices
            .iter()
            .map(|n| QueuedNotice {
                day: n.date,
                account: n.account.clone(),
                kind: n.notice.as_str().to_string(),
                body: serde_json::to_vec(n).unwrap_or_default(),
            })
            .collect();
        store.record_detection(self.day, &states, &queued)?;
        Ok(queued.len())
    }
}
