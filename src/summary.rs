//! Per-account activity summaries: what `lull accounts` shows.

use serde::Serialize;

use crate::accounts::Registry;
use crate::detect::ChannelReport;
use crate::store::{Store, StoreError};
use crate::types::{AccountId, Day};

/// How many weeks `lull accounts` shows: two months is enough to see a
/// trend and still fits on one terminal line.
pub const SUMMARY_WEEKS: usize = 8;

#[derive(Debug, Clone, Serialize)]
pub struct AccountSummary {
    pub account: AccountId,
    pub name: String,
    pub csm: String,
    pub segment: Option<String>,
    /// `engaged`, `silent`, `insufficient_data` or `unknown`: the account's
    /// state as detection judges it on `at` (filled in by the caller).
    pub state: String,
    pub last_activity: Option<Day>,
    /// Events in the last [`SUMMARY_WEEKS`] weeks up to and including `at`.
    pub events_8w: u64,
    /// Events per week, oldest first; the last week ends on `at`.
    pub weekly: Vec<u64>,
    /// Each channel's recent window against its baseline, as detection
    /// judges it on `at`.
    pub channels: Vec<ChannelReport>,
    /// The CSM asked to hear nothing about the account until this day.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snoozed: Option<crate::detect::Snooze>,
}

/// Summaries of every account, in accounts-file order, as of day `at`.
pub fn summarise(
    store: &Store,
    registry: &Registry,
    at: Day,
) -> Result<Vec<AccountSummary>, StoreError> {
    let first = at.plus(-(SUMMARY_WEEKS as i32 * 7) + 1);
    let mut out = Vec::with_capacity(registry.len());
    for account in registry.accounts() {
        let mut weekly = vec![0u64; SUMMARY_WEEKS];
        let mut last: Option<Day> = None;
        for b in store.account_buckets(&account.id, None, Some(at)) {
            let b = b?;
            last = last.max(Some(b.day));
            if b.day >= first {
                let week = ((b.day.0 - first.0) / 7) as usize;
                weekly[week.min(SUMMARY_WEEKS - 1)] += b.count;
            }
        }
        out.push(AccountSummary {
            account: account.id.clone(),
            name: account.name.clone(),
            csm: account.csm.clone(),
            segment: account.segment.clone(),
            state: "unknown".to_string(),
            last_activity: last,
            events_8w: weekly.iter().sum(),
            weekly,
            channels: Vec::new(),
            snoozed: None,
        });
    }
    Ok(out)
}

/// A unicode sparkline: `·` for an empty week, `▁`..`█` scaled to the max.
pub fn sparkline(values: &[u64]) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let max = values.iter().copied().max().unwrap_or(0);
    values
        .iter()
        .map(|&v| {
            if v == 0 {
                '·'
            } else {
                // Eight equal bands of (0, max]: the top band is full.
                let i = ((v as f64 / max as f64) * 8.0).ceil() as usize;
                BARS[i.clamp(1, 8) - 1]
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparkline_shows_zero_apart_from_small() {
        assert_eq!(sparkline(&[0, 1, 7, 14]), "·▁▄█");
        assert_eq!(sparkline(&[]), "");
    }
}
