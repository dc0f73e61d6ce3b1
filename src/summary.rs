//! Per-account activity summaries: what `lull accounts` shows.

use serde::{Deserialize, Serialize};

use crate::accounts::Registry;
use crate::detect::{ChannelReport, DetectConfig};
use crate::store::{Store, StoreError};
use crate::types::{AccountId, Day};

/// How many weeks `lull accounts` shows: two months is enough to see a
/// trend and still fits on one terminal line.
pub const SUMMARY_WEEKS: usize = 8;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AccountSummary {
    pub account: AccountId,
    pub name: String,
    pub csm: String,
    pub segment: Option<String>,
    /// `engaged`, `silent`, `insufficient_data` or `unknown`: the account's
    /// state as detection judges it on `at` (filled in by the caller).
    pub state: String,
    /// For a silent account: since when (the start of its quiet span as
    /// judged on `at`, or the day its episode began).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub silent_since: Option<Day>,
    /// The last day with the customer's own activity (not deliveries,
    /// not machine opens).
    pub last_activity: Option<Day>,
    /// Who (handle or address) acted on that day, when lull knows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen_by: Option<String>,
    /// Events in the last [`SUMMARY_WEEKS`] weeks up to and including `at`.
    pub events_8w: u64,
    /// Events per week, oldest first; the last week ends on `at`.
    pub weekly: Vec<u64>,
    /// Each channel's recent window against its baseline, as detection
    /// judges it on `at` (empty when not asked for).
    #[serde(default)]
    pub channels: Vec<ChannelReport>,
    /// The drop test finds it well below its baseline and it is not
    /// silent: it is (or is due) on its CSM's weekly watch digest.
    #[serde(default)]
    pub watch: bool,
    /// The CSM asked to hear nothing about the account until this day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snoozed: Option<crate::detect::Snooze>,
}

/// Summaries of every account, in accounts-file order, as of day `at`.
/// Only the customer's own activity counts ([`DetectConfig::is_activity`]).
pub fn summarise(
    store: &Store,
    registry: &Registry,
    detect: &DetectConfig,
    at: Day,
) -> Result<Vec<AccountSummary>, StoreError> {
    registry
        .accounts()
        .iter()
        .map(|a| summarise_one(store, registry, detect, a, at))
        .collect()
}

/// The summary of one account as of `at`.
pub fn summarise_one(
    store: &Store,
    _registry: &Registry,
    detect: &DetectConfig,
    account: &crate::accounts::Account,
    at: Day,
) -> Result<AccountSummary, StoreError> {
    let first = at.plus(-(SUMMARY_WEEKS as i32 * 7) + 1);
    let mut weekly = vec![0u64; SUMMARY_WEEKS];
    // The last active day, and the channel it was on.
    let mut last: Option<(Day, crate::types::SourceName, crate::types::Kind)> = None;
    for b in store.account_buckets(&account.id, None, Some(at)) {
        let b = b?;
        if !detect.is_activity(b.kind.as_str()) {
            continue;
        }
        if last.as_ref().is_none_or(|(d, _, _)| b.day > *d) {
            last = Some((b.day, b.source.clone(), b.kind.clone()));
        }
        if b.day >= first {
            let week = ((b.day.0 - first.0) / 7) as usize;
            weekly[week.min(SUMMARY_WEEKS - 1)] += b.count;
        }
    }
    let last_seen_by = match &last {
        Some((day, source, kind)) => store
            .last_seen(account.id.as_str(), source.as_str(), kind.as_str())?
            .filter(|(d, _)| d == day)
            .map(|(_, who)| who),
        None => None,
    };
    Ok(AccountSummary {
        account: account.id.clone(),
        name: account.name.clone(),
        csm: account.csm.clone(),
        segment: account.segment.clone(),
        state: "unknown".to_string(),
        silent_since: None,
        last_activity: last.map(|(d, _, _)| d),
        last_seen_by,
        events_8w: weekly.iter().sum(),
        weekly,
        channels: Vec::new(),
        watch: false,
        snoozed: None,
    })
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
