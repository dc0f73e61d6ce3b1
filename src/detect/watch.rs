//! The `watch` tier's weekly digest: of the accounts whose drop test says
//! they are dropping on the digest day, each CSM gets at most `cap`, the
//! strongest evidence first, and an account listed less than
//! `repeat_days` ago is left off.
//!
//! The cap ties accounts together (one CSM, one day), so it is applied
//! after the per-account replay, to the candidates it produced: in
//! backtests over every digest day in date order, in daily detection over
//! today's, with the last listing remembered in each account's state.
//! Both go through [`select`], so they list the same accounts.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};

use super::params::WatchConfig;
use super::{ChannelStatus, Notice};
use crate::types::{AccountId, Day};

/// The evidence a candidate is ranked by: the smallest p-value of its
/// silent channels (then the lowest observed/expected, then its id).
fn strength(n: &Notice) -> (f64, f64) {
    let silent = n
        .evidence
        .iter()
        .filter(|r| r.judgement.status == ChannelStatus::Silent);
    let p = silent
        .clone()
        .filter_map(|r| r.judgement.p_value)
        .fold(1.0, f64::min);
    let ratio = if n.expected > 0.0 {
        n.observed / n.expected
    } else {
        1.0
    };
    (p, ratio)
}

fn by_strength(a: &Notice, b: &Notice) -> Ordering {
    let (pa, ra) = strength(a);
    let (pb, rb) = strength(b);
    pa.total_cmp(&pb)
        .then(ra.total_cmp(&rb))
        .then_with(|| a.account.cmp(&b.account))
}

/// The candidates that make their CSM's digest, per (day, CSM) in date
/// order; `listed` holds each account's last listing and is updated.
pub fn select(
    candidates: Vec<Notice>,
    listed: &mut HashMap<AccountId, Day>,
    config: &WatchConfig,
) -> Vec<Notice> {
    let mut groups: BTreeMap<(Day, String), Vec<Notice>> = BTreeMap::new();
    for n in candidates {
        groups
            .entry((n.date, n.csm.trim().to_lowercase()))
            .or_default()
            .push(n);
    }
    let mut out = Vec::new();
    for ((day, _), mut group) in groups {
        group.retain(|n| {
            listed
                .get(&n.account)
                .is_none_or(|last| day.0 - last.0 >= config.repeat_days as i32)
        });
        group.sort_by(by_strength);
        group.truncate(config.cap as usize);
        for (i, mut n) in group.into_iter().enumerate() {
            listed.insert(n.account.clone(), day);
            n.rank = Some(i as u32 + 1);
            out.push(n);
        }
    }
    out
}
