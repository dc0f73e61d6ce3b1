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

use std::collections::HashMap;

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

/// The candidates that make their CSM's digest, per (day, CSM) in date
/// order; `listed` holds each account's last listing and is updated.
///
/// A backtest hands over hundreds of thousands of candidates, of which a
/// few make a digest: they are grouped and ranked by index, each one's
/// group and strength worked out once, and only the listed ones move.
pub fn select(
    candidates: Vec<Notice>,
    listed: &mut HashMap<AccountId, Day>,
    config: &WatchConfig,
) -> Vec<Notice> {
    // (day, CSM) of each candidate, in arrival order within a group.
    let mut order: Vec<(Day, String, usize)> = (candidates.iter().enumerate())
        .map(|(i, n)| (n.date, n.csm.trim().to_lowercase(), i))
        .collect();
    order.sort_unstable();
    // Per candidate listed: its place in the output and its rank.
    let mut place: Vec<Option<(usize, u32)>> = vec![None; candidates.len()];
    let mut placed = 0;
    let mut group: Vec<(f64, f64, usize)> = Vec::new();
    for members in order.chunk_by(|a, b| (a.0, &a.1) == (b.0, &b.1)) {
        let day = members[0].0;
        group.clear();
        group.extend(
            members
                .iter()
                .map(|&(_, _, i)| i)
                .filter(|&i| {
                    listed
                        .get(&candidates[i].account)
                        .is_none_or(|last| day.0 - last.0 >= config.repeat_days as i32)
                })
                .map(|i| {
                    let (p, ratio) = strength(&candidates[i]);
                    (p, ratio, i)
                }),
        );
        // Stable: candidates equal in all three keep arrival order.
        group.sort_by(|a, b| {
            a.0.total_cmp(&b.0)
                .then(a.1.total_cmp(&b.1))
                .then_with(|| candidates[a.2].account.cmp(&candidates[b.2].account))
        });
        group.truncate(config.cap as usize);
        for (rank, &(_, _, i)) in group.iter().enumerate() {
            listed.insert(candidates[i].account.clone(), day);
            place[i] = Some((placed, rank as u32 + 1));
            placed += 1;
        }
    }
    let mut out: Vec<(usize, Notice)> = (candidates.into_iter().zip(place))
        .filter_map(|(mut n, place)| {
            let (at, rank) = place?;
            n.rank = Some(rank);
            Some((at, n))
        })
        .collect();
    out.sort_unstable_by_key(|(at, _)| *at);
    out.into_iter().map(|(_, n)| n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::NoticeKind;

    /// A candidate of `csm` on `day` whose drop is `observed` of 10
    /// expected events (no channel silent: ranked by that ratio).
    fn candidate(account: &str, csm: &str, day: i32, observed: f64) -> Notice {
        Notice {
            account: AccountId(account.into()),
            name: account.to_uppercase(),
            csm: csm.into(),
            segment: None,
            date: Day(day),
            notice: NoticeKind::Watch,
            channels: Vec::new(),
            expected: 10.0,
            observed,
            silent_since: None,
            episode_started: None,
            quiet: None,
            people: None,
            rank: None,
            evidence: Vec::new(),
            weekly: None,
            queued_at: None,
        }
    }

    #[test]
    fn each_csm_gets_the_strongest_few_per_day_and_no_account_twice_within_the_repeat_days() {
        let config = WatchConfig {
            cap: 2,
            repeat_days: 14,
            ..WatchConfig::default()
        };
        let candidates = vec![
            candidate("a0", "ann@v.example", 120, 1.0),
            candidate("a3", "Ann@V.example ", 100, 5.0),
            candidate("a1", "ann@v.example", 100, 2.0),
            candidate("a5", "bob@v.example", 100, 9.0),
            candidate("a2", "ann@v.example", 100, 9.0),
            // As strong as a1: the account decides.
            candidate("a0", "ann@v.example", 100, 2.0),
            candidate("a0", "ann@v.example", 107, 1.0),
            candidate("a3", "ann@v.example", 107, 5.0),
        ];
        let mut listed = HashMap::new();
        listed.insert(AccountId("a9".into()), Day(99));
        let got: Vec<(i32, String, Option<u32>)> = select(candidates, &mut listed, &config)
            .into_iter()
            .map(|n| (n.date.0, n.account.0, n.rank))
            .collect();
        let want = [
            // Day 100, Ann (however her address is written): two of four.
            (100, "a0", 1),
            (100, "a1", 2),
            (100, "a5", 1),
            // A week later a0 is left off (listed 7 days before), a3 not.
            (107, "a3", 1),
            // Twenty days after its listing, a0 is back.
            (120, "a0", 1),
        ];
        let want: Vec<(i32, String, Option<u32>)> = (want.iter())
            .map(|&(d, a, r)| (d, a.to_string(), Some(r)))
            .collect();
        assert_eq!(got, want);
        let last = |a: &str| listed.get(&AccountId(a.into())).map(|d| d.0);
        assert_eq!(
            ["a0", "a1", "a2", "a3", "a5", "a9"].map(last),
            [Some(120), Some(100), None, Some(107), Some(100), Some(99)]
        );
    }
}
