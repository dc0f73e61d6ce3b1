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
    // Channel by channel, in store order (source, kind); every series is
    // decoded, so a damaged one is an error whatever its kind.
    for stored in store.account_stored_series(&account.id)? {
        let series = stored.decoded(None)?;
        if !detect.is_activity(series.kind.as_str()) {
            continue;
        }
        let upto = series.entries.partition_point(|(day, _)| *day <= at);
        let Some(&(latest, _)) = series.entries[..upto].last() else {
            continue;
        };
        // The first channel with the latest day names it.
        if last.as_ref().is_none_or(|(d, _, _)| latest > *d) {
            last = Some((latest, series.source.clone(), series.kind.clone()));
        }
        let from = series.entries[..upto].partition_point(|(day, _)| *day < first);
        for &(day, count) in &series.entries[from..upto] {
            let week = ((day.0 - first.0) / 7) as usize;
            weekly[week.min(SUMMARY_WEEKS - 1)] += count;
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

    /// The summary as it was computed before it read series whole: from
    /// every stored bucket up to `at`, one by one.
    fn from_buckets(
        store: &Store,
        detect: &DetectConfig,
        account: &AccountId,
        at: Day,
    ) -> (Option<(Day, String)>, Vec<u64>) {
        let first = at.plus(-(SUMMARY_WEEKS as i32 * 7) + 1);
        let mut weekly = vec![0u64; SUMMARY_WEEKS];
        let mut last: Option<(Day, String)> = None;
        for b in store.account_buckets(account, None, Some(at)) {
            let b = b.unwrap();
            if !detect.is_activity(b.kind.as_str()) {
                continue;
            }
            if last.as_ref().is_none_or(|(d, _)| b.day > *d) {
                last = Some((b.day, format!("{}:{}", b.source, b.kind)));
            }
            if b.day >= first {
                weekly[((b.day.0 - first.0) / 7) as usize] += b.count;
            }
        }
        (last, weekly)
    }

    #[test]
    fn a_summary_counts_what_the_stored_buckets_hold() {
        use crate::store::{Ingest, Owner};
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::tests::open(dir.path());
        let mut text = String::new();
        let mut i = Ingest::default();
        let at = Day(20_400);
        // Activity of several channels (deliveries are not the
        // customer's own), before the 8 weeks, inside them and after
        // `at` (a quarter of the accounts: who acted then is not who
        // acted on their last day up to `at`); channels that end on the
        // same day; one account with
        // deliveries only and one with nothing.
        let channels = [
            ("forum", "post"),
            ("mail", "delivered"),
            ("mail", "open"),
            ("zendesk", "ticket"),
        ];
        for a in 0..40u32 {
            let id = format!("a{a:02}");
            text.push_str(&format!(
                "[[account]]\nid = \"{id}\"\nname = \"A {a}\"\ncsm = \"csm@vendor.example\"\n\n"
            ));
            for (c, (source, kind)) in channels.iter().enumerate() {
                let c = c as u32;
                if a == 39 || (a == 38 && *kind != "delivered") {
                    continue;
                }
                for d in (at.0 - 150)..=(at.0 + 20) {
                    let h =
                        (d as u32).wrapping_mul(2_654_435_761) ^ (a * 7 + c).wrapping_mul(40_503);
                    let gap = 2 + (a + c) % 9;
                    let last = at.0 - ((a * 3 + u32::from(c == 2)) % 30) as i32;
                    if (h % gap == 0 || d == last) && (d <= last || (d > at.0 && a % 4 == 0)) {
                        let event = format!("{a}-{c}-{d}");
                        let count = u64::from(1 + h % 5);
                        i.add(source, &event, Owner::Account(&id), kind, Day(d), count)
                            .unwrap();
                        i.seen_by(
                            &id,
                            source,
                            kind,
                            Day(d),
                            &format!("p{c}-{}@{id}.example", h % 3),
                        );
                    }
                }
            }
        }
        store.commit(&i).unwrap();
        let registry = Registry::from_text(
            std::path::Path::new("accounts.toml"),
            text,
            &crate::config::IdentityConfig::default(),
        )
        .unwrap();
        let detect = DetectConfig::default();
        let rows = summarise(&store, &registry, &detect, at).unwrap();
        assert_eq!(rows.len(), 40);
        let mut named = 0;
        for (row, account) in rows.iter().zip(registry.accounts()) {
            let (last, weekly) = from_buckets(&store, &detect, &account.id, at);
            assert_eq!(row.weekly, weekly, "{}", account.id);
            assert_eq!(row.events_8w, weekly.iter().sum::<u64>());
            assert_eq!(
                row.last_activity,
                last.as_ref().map(|l| l.0),
                "{}",
                account.id
            );
            // Who acted is looked up on the channel that names the day.
            let by = last.as_ref().and_then(|(day, channel)| {
                let (source, kind) = channel.split_once(':').unwrap();
                let seen = store.last_seen(account.id.as_str(), source, kind).unwrap();
                seen.filter(|(d, _)| d == day).map(|(_, who)| who)
            });
            assert_eq!(row.last_seen_by, by, "{}", account.id);
            named += usize::from(by.is_some());
        }
        assert!(named >= 20, "{named}");
        assert_eq!(rows[38].last_activity, None, "deliveries only");
        assert_eq!(rows[39].last_activity, None);
        assert!(rows[..38].iter().all(|r| r.weekly.iter().any(|w| *w > 0)));
    }

    #[test]
    fn sparkline_shows_zero_apart_from_small() {
        assert_eq!(sparkline(&[0, 1, 7, 14]), "·▁▄█");
        assert_eq!(sparkline(&[]), "");
    }
}
