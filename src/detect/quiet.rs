//! The `silent` tier: has the account as a whole gone quiet, long enough
//! against its own history, with fewer of its people around before it did?
//!
//! Counts alone cannot tell a team that is leaving from one that is
//! resting: both go quiet. Who was active can. An account's *breadth* is
//! the number of distinct people active in the `breadth_days` up to a day,
//! against its mean over the year before; a team that dwindled to one
//! person before going quiet has a breadth of 0.2, a team that paused
//! together one of about 1.
//!
//! Every number here is read from day indices at or before the judged day,
//! within `Thresholds::span_days`, so a daily run and a backtest decide
//! the same on the same data.

use std::cell::{Cell, OnceCell};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::history::{Prefix, Timeline};
use super::params::Thresholds;
use crate::store::ChannelPeople;
use crate::types::Day;

/// The year an account must have been active in before its silence
/// counts, and over which its usual breadth is averaged.
pub const YEAR: i64 = 365;

/// An account's activity over the timeline, all channels together.
#[derive(Clone)]
pub(super) struct AccountActivity {
    /// Events a day on its activity channels (covered days only).
    events: Prefix,
    /// 1 on days with any activity.
    active: Prefix,
    /// 1 on days any source the account is active on covered (shared by
    /// the accounts on the same sources).
    covered: Arc<Prefix>,
    /// The account's people (`None`: not read from the store), and (built
    /// when first needed: most days of most accounts never ask) the
    /// distinct people active in the breadth window ending on each day.
    people: Option<Vec<ChannelPeople>>,
    breadth: OnceCell<Option<Prefix>>,
    /// A judgement asked for the breadth while the people were not read:
    /// it must be made again with them.
    asked: Cell<bool>,
    timeline: Timeline,
    breadth_days: u32,
    /// The first day any activity of the account was stored (all of its
    /// history, not only the timeline).
    first_activity: Option<Day>,
}

impl AccountActivity {
    /// `events` and `covered` are sums over the timeline's days;
    /// `people` the account's channels' people, if read.
    pub(super) fn new(
        timeline: Timeline,
        events: Prefix,
        covered: Arc<Prefix>,
        people: Option<Vec<ChannelPeople>>,
        breadth_days: u32,
        first_activity: Option<Day>,
    ) -> AccountActivity {
        let sums = events.sums();
        let mut active = super::history::zeroed(sums.len());
        let mut acc = 0.0;
        for (a, w) in active.iter_mut().skip(1).zip(sums.windows(2)) {
            acc += f64::from(u8::from(w[1] > w[0]));
            *a = acc;
        }
        let active = Prefix::from_plain(active);
        AccountActivity {
            events,
            active,
            covered,
            people,
            breadth: OnceCell::new(),
            asked: Cell::new(false),
            timeline,
            breadth_days,
            first_activity,
        }
    }

    fn people_series(&self) -> Option<&Prefix> {
        self.breadth
            .get_or_init(|| {
                let Some(people) = &self.people else {
                    self.asked.set(true);
                    return None;
                };
                let (series, has) = breadth_series(self.timeline, people, self.breadth_days);
                has.then(|| Prefix::from_vec(series))
            })
            .as_ref()
    }

    /// Whether a judgement asked for the people before they were read
    /// (what it decided is then not to be used).
    pub(super) fn asked_for_people(&self) -> bool {
        self.asked.get()
    }

    /// The account's people, read after a judgement asked for them.
    pub(super) fn set_people(&mut self, people: Vec<ChannelPeople>) {
        self.people = Some(people);
        self.breadth = OnceCell::new();
        self.asked.set(false);
    }

    /// The last day index at or before `d` with activity.
    pub(super) fn last_active(&self, d: usize) -> Option<usize> {
        super::last_nonzero(&self.events, d)
    }

    /// Breadth at day index `i`: people active in the window ending on
    /// `i`, against the mean of that count over the year before.
    pub(super) fn breadth(&self, i: usize, window_days: u32) -> Option<Breadth> {
        let people = self.people_series()?;
        let i = i as i64;
        let lo = (i - YEAR).max(0);
        if i <= lo {
            return None;
        }
        let usual = people.sum(lo, i - 1) / (i - lo) as f64;
        (usual > 0.0).then(|| Breadth {
            active: people.at(i) as u32,
            usual: (usual * 10.0).round() / 10.0,
            window_days,
        })
    }

    /// What the silent tier sees on day index `d` of `timeline`.
    pub(super) fn judge(&self, timeline: Timeline, d: usize, t: &Thresholds) -> Quiet {
        let Some(last) = self.last_active(d) else {
            return Quiet::default();
        };
        let l = last as i64;
        let quiet_days = self.covered.sum(l + 1, d as i64) as u32;
        let last_day = timeline.day(last);
        let events_year = self.events.sum(l - YEAR + 1, l);
        let active_days_year = self.active.sum(l - YEAR + 1, l) as u32;
        let established = self
            .first_activity
            .is_some_and(|f| f.0 <= last_day.0 - t.warmup_days as i32);
        // A quiet that began more than two `silent_days` ago is not news
        // (it was missed while sources were down, or judged already), and
        // lies beyond what a daily run reads.
        let news = (d - last) as u32 <= 2 * t.silent_days.max(t.early_silent_days);
        let eligible = established
            && news
            && events_year >= t.min_events
            && active_days_year >= t.min_active_days;
        // People are counted only when they can decide (or were already).
        let asks = eligible && quiet_days >= t.early_silent_days && quiet_days < t.silent_days;
        let people = (asks || self.breadth.get().is_some())
            .then(|| self.breadth(last, t.breadth_days))
            .flatten();
        let fewer = people.as_ref().is_some_and(|b| b.ratio() <= t.max_breadth);
        let silent = eligible
            && (quiet_days >= t.silent_days || (quiet_days >= t.early_silent_days && fewer));
        Quiet {
            last_activity: Some(last_day),
            quiet_days,
            events_year,
            active_days_year,
            people,
            silent,
        }
    }
}

/// The per-day count of distinct people active in the `window` days
/// ending on each day of the timeline (from a difference array of each
/// person's merged active spans), and whether the account has any people.
fn breadth_series(timeline: Timeline, people: &[ChannelPeople], window: u32) -> (Vec<f64>, bool) {
    let n = timeline.len() as i64;
    let mut diff = vec![0i64; timeline.len() + 1];
    let mut days: foldhash::HashMap<&str, Vec<i64>> = foldhash::HashMap::default();
    let mut has = false;
    for c in people {
        c.visit(|name, d| {
            has = true;
            // Days after the timeline are not seen; days before it still
            // count in its first windows.
            let i = i64::from(d.0 - timeline.first.0);
            if i < n && i + i64::from(window) > 0 {
                days.entry(name).or_default().push(i);
            }
        });
    }
    for list in days.values_mut() {
        list.sort_unstable();
        let mut span: Option<(i64, i64)> = None;
        for &a in list.iter() {
            let (lo, hi) = (a, a + i64::from(window) - 1);
            span = match span {
                Some((s, e)) if lo <= e + 1 => Some((s, e.max(hi))),
                Some((s, e)) => {
                    add_span(&mut diff, s, e, n);
                    Some((lo, hi))
                }
                None => Some((lo, hi)),
            };
        }
        if let Some((s, e)) = span {
            add_span(&mut diff, s, e, n);
        }
    }
    let mut out = super::history::zeroed(0);
    let mut acc = 0i64;
    for d in diff.iter().take(timeline.len()) {
        acc += d;
        out.push(acc as f64);
    }
    (out, has)
}

fn add_span(diff: &mut [i64], lo: i64, hi: i64, n: i64) {
    let (lo, hi) = (lo.max(0), hi.min(n - 1));
    if lo > hi {
        return;
    }
    diff[lo as usize] += 1;
    diff[(hi + 1) as usize] -= 1;
}

/// How many of an account's usual people were active.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Breadth {
    /// Distinct people active in the window.
    pub active: u32,
    /// The account's mean of that count over the year before.
    pub usual: f64,
    /// The window's length in days.
    pub window_days: u32,
}

impl Breadth {
    /// `active / usual`.
    pub fn ratio(&self) -> f64 {
        f64::from(self.active) / self.usual.max(f64::EPSILON)
    }

    /// "3 of the 8 people usually active in 90 days were active", ending
    /// with `when` ("in the 90 days before it went quiet").
    pub fn sentence(&self, when: &str) -> String {
        let usual = self.usual.round().max(1.0) as u32;
        let people = if usual == 1 { "person" } else { "people" };
        format!(
            "{} of the {usual} {people} usually active in {} days {} active {when}",
            self.active,
            self.window_days,
            if self.active == 1 { "was" } else { "were" }
        )
    }
}

/// What the silent tier saw on a day.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Quiet {
    /// The last day with activity on any of the account's channels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_activity: Option<Day>,
    /// Days since then that a source the account is active on covered (a
    /// day no source covered is not a quiet day).
    pub quiet_days: u32,
    /// Events and active days in the year up to the last activity.
    pub events_year: f64,
    pub active_days_year: u32,
    /// People in the breadth window up to the last activity, against the
    /// usual number (when events came with who acted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub people: Option<Breadth>,
    /// The silent tier's rule holds.
    pub silent: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::People;
    use crate::types::{AccountId, Kind, SourceName};

    fn channel(people: &[(&str, &[i32])]) -> ChannelPeople {
        let mut p = People::new();
        for (name, days) in people {
            p.insert(name.to_string(), days.iter().map(|d| Day(*d)).collect());
        }
        ChannelPeople::new(
            AccountId("a".into()),
            SourceName::from("forum"),
            Kind::from("post"),
            &p,
        )
    }

    #[test]
    fn breadth_counts_distinct_people_in_the_window_across_channels() {
        let timeline = Timeline {
            first: Day(0),
            last: Day(29),
        };
        let a = channel(&[("ann", &[-5, 3, 4]), ("bob", &[10])]);
        let b = channel(&[("ann", &[12]), ("cy", &[40])]);
        let (series, has) = breadth_series(timeline, &[a, b], 7);
        assert!(has);
        // Direct count for every day.
        for (i, v) in series.iter().enumerate() {
            let i = i as i32;
            let active = |days: &[i32]| days.iter().any(|d| *d <= i && *d > i - 7);
            let n = [active(&[-5, 3, 4, 12]), active(&[10]), active(&[40])]
                .iter()
                .filter(|x| **x)
                .count();
            assert_eq!(*v, n as f64, "day {i}");
        }
    }

    #[test]
    fn the_sentence_reads_naturally() {
        let b = Breadth {
            active: 1,
            usual: 4.6,
            window_days: 90,
        };
        assert_eq!(
            b.sentence("in the last 90 days"),
            "1 of the 5 people usually active in 90 days was active in the last 90 days"
        );
    }
}
