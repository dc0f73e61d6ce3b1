//! Replaying detection over stored history: what would have fired, day by
//! day, had lull been running from `from` on.
//!
//! It is the production path, not a model of it: each account is walked
//! with [`Detector::replay`] and the same state machine from the first
//! covered day (silently before `from`, as `lull detect` catches up on its
//! first run), judging each day with only the data up to that day.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::accounts::Registry;
use crate::detect::{
    AccountHistory, DetectConfig, Detector, Notice, NoticeKind, PeopleRead, Weekly, timeline_for,
    watch,
};
use crate::store::{Store, StoreError};
use crate::types::Day;

/// What a backtest found.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Backtest {
    pub from: Day,
    pub to: Day,
    /// Every notice in `from..=to`, in date then account order.
    pub notices: Vec<Notice>,
    /// Accounts replayed.
    pub accounts: usize,
    /// Weekly activity per alerted account, for the report.
    #[serde(skip, default)]
    pub weekly: BTreeMap<String, Weekly>,
}

impl Backtest {
    /// The alerts (silent and reminder notices): the interruptions.
    pub fn alerts(&self) -> impl Iterator<Item = &Notice> {
        self.notices
            .iter()
            .filter(|n| matches!(n.notice, NoticeKind::Silent | NoticeKind::Reminder))
    }
}

/// What one account's replay found.
#[derive(Default)]
struct Replayed {
    notices: Vec<Notice>,
    candidates: Vec<Notice>,
    weekly: Option<(String, Weekly)>,
}

/// Replays `from..=to`. `progress` is called with the number of accounts
/// done so far.
pub fn run(
    store: &Store,
    registry: &Registry,
    config: &DetectConfig,
    from: Day,
    to: Day,
    progress: impl FnMut(usize),
) -> Result<Backtest, StoreError> {
    let (history, timeline) = timeline_for(store, config, Day(i32::MIN / 2), to)?;
    let detector = Detector::load(store, registry, config, timeline)?;
    // One account's replay, on any thread: its notices, its watch-list
    // candidates, and its weekly activity when it was named.
    let replay = |h: &AccountHistory| -> Replayed {
        let mut out = Replayed::default();
        detector.replay(h, Default::default(), history, to, from, |n| {
            if n.notice == NoticeKind::Watch {
                out.candidates.push(n);
            } else {
                out.notices.push(n);
            }
        });
        let alerted = out
            .notices
            .iter()
            .any(|n| n.notice != NoticeKind::Recovered);
        if alerted || !out.candidates.is_empty() {
            let account = registry.get(h.account);
            out.weekly = Some((
                account.id.to_string(),
                detector.weekly(h, from.plus(-182), to),
            ));
        }
        out
    };
    // Replayed on every core, in the order one thread would.
    let results = detector.map_accounts(store, PeopleRead::WithSeries, replay, progress)?;
    let mut notices = Vec::new();
    let mut candidates = Vec::new();
    let mut weekly = BTreeMap::new();
    for r in results {
        notices.extend(r.notices);
        candidates.extend(r.candidates);
        weekly.extend(r.weekly);
    }
    // The digest's cap ties a CSM's accounts together: applied to every
    // digest day's candidates in date order, as daily runs do.
    let listed = watch::select(candidates, &mut Default::default(), &config.watch);
    let named: std::collections::HashSet<&str> = notices
        .iter()
        .chain(&listed)
        .map(|n| n.account.as_str())
        .collect();
    weekly.retain(|account, _| named.contains(account.as_str()));
    notices.extend(listed);
    notices.sort_by(|a, b| (a.date, &a.account, a.notice).cmp(&(b.date, &b.account, b.notice)));
    Ok(Backtest {
        from,
        to,
        notices,
        accounts: registry.len(),
        weekly,
    })
}

/// Counts per group, for the summary.
#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub alerts: usize,
    pub reminders: usize,
    pub recoveries: usize,
    /// Entries on weekly watch digests.
    pub watch: usize,
    pub accounts_alerted: usize,
    pub accounts: usize,
    /// Alerts and reminders per account per year of the range.
    pub per_account_year: f64,
    /// Alerts (incl. reminders) per ISO week, `YYYY-Www`.
    pub per_week: BTreeMap<String, usize>,
    pub per_csm: BTreeMap<String, usize>,
    pub per_segment: BTreeMap<String, usize>,
}

impl Backtest {
    pub fn summary(&self) -> Summary {
        let mut s = Summary {
            accounts: self.accounts,
            ..Summary::default()
        };
        let mut alerted = std::collections::BTreeSet::new();
        for n in &self.notices {
            match n.notice {
                NoticeKind::Silent => s.alerts += 1,
                NoticeKind::Reminder => s.reminders += 1,
                NoticeKind::Recovered => {
                    s.recoveries += 1;
                    continue;
                }
                NoticeKind::Watch => {
                    s.watch += 1;
                    continue;
                }
            }
            alerted.insert(&n.account);
            *s.per_week.entry(iso_week(n.date)).or_default() += 1;
            *s.per_csm.entry(n.csm.clone()).or_default() += 1;
            let seg = n.segment.clone().unwrap_or_else(|| "(none)".into());
            *s.per_segment.entry(seg).or_default() += 1;
        }
        s.accounts_alerted = alerted.len();
        let years = (self.to.0 - self.from.0 + 1) as f64 / 365.25;
        s.per_account_year = (s.alerts + s.reminders) as f64 / (s.accounts.max(1) as f64 * years);
        s
    }
}

/// `2026-W11`.
pub fn iso_week(day: Day) -> String {
    use chrono::Datelike;
    let w = day.date().iso_week();
    format!("{}-W{:02}", w.year(), w.week())
}
