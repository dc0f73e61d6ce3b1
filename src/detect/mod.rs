//! Silence detection: each channel of each account against its own
//! history, weighed into one account-level verdict, fed to a state machine
//! that decides who the CSM hears about.
//!
//! One code path serves `detect`, `backtest` and `accounts`: [`Detector`]
//! loads the store onto a [`Timeline`], and [`Detector::replay`] walks an
//! account's days, judging each one with only the data up to that day.
//! Production judges one day (catching up the days it missed); a backtest
//! judges every day of a range.

mod daily;
mod history;
mod judge;
mod outbox;
pub mod params;
mod quiet;
mod state;
pub mod watch;

use std::collections::HashMap;
use std::sync::Arc;

use chrono::Datelike;
use serde::{Deserialize, Serialize};

pub use daily::{
    CHART_WEEKS, DayRun, Keep, STALE_SOURCE, Snooze, StaleNotice, judge_day, judge_day_as_recorded,
    judge_day_keeping, snoozes,
};
pub use history::Timeline;
use history::{Prefix, accumulate, zeroed};
pub use judge::{ChannelStatus, Judgement};
pub use outbox::Queued;
pub use params::{DetectConfig, Thresholds, WatchConfig};
use quiet::AccountActivity;
pub use quiet::{Breadth, Quiet};
pub use state::{Episode, Memory, NoticeKind, State, Today, Verdict};

use crate::accounts::{Account, Registry};
use crate::store::{Accounts, ChannelPeople, Store, StoreError, StoredSeries};
use crate::types::{AccountId, Day, Kind, SourceName};

/// What a channel counts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChannelKind {
    /// Events of one kind (posts, tickets).
    Count(Kind),
    /// `numerator` per `denominator` events (opens per delivered).
    Rate { numerator: Kind, denominator: Kind },
}

/// One thing the detector watches for an account.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Channel {
    pub source: SourceName,
    pub kind: ChannelKind,
}

impl Channel {
    /// `forum:post`, or `mail:open/delivered` for a rate: the name output
    /// shows (and the outbox keeps).
    pub fn name(&self) -> String {
        self.to_string()
    }

    /// A channel from its name. The kind is what follows the *last* `:`
    /// (kinds hold no `:` or `/`; a source name may: `eu:forum:post`).
    pub fn parse(name: &str) -> Option<Channel> {
        let (source, kind) = name.rsplit_once(':')?;
        let kind = match kind.split_once('/') {
            None => ChannelKind::Count(Kind::from(kind)),
            Some((n, d)) => ChannelKind::Rate {
                numerator: Kind::from(n),
                denominator: Kind::from(d),
            },
        };
        (!source.is_empty()).then(|| Channel {
            source: SourceName::from(source),
            kind,
        })
    }

    /// The kind whose events are the customer's own (the numerator of a
    /// rate): who was seen last is looked up under it.
    pub fn own_kind(&self) -> &Kind {
        match &self.kind {
            ChannelKind::Count(k) => k,
            ChannelKind::Rate { numerator, .. } => numerator,
        }
    }
}

impl std::fmt::Display for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            ChannelKind::Count(k) => write!(f, "{}:{}", self.source, k),
            ChannelKind::Rate {
                numerator,
                denominator,
            } => write!(f, "{}:{}/{}", self.source, numerator, denominator),
        }
    }
}

impl Serialize for Channel {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Channel {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Channel, D::Error> {
        let name = std::borrow::Cow::<'de, str>::deserialize(d)?;
        Channel::parse(&name).ok_or_else(|| {
            serde::de::Error::custom(format!("{name:?} is not a channel (source:kind)"))
        })
    }
}

/// One channel's history on the timeline (counts on uncovered days are
/// dropped: those days are unknown on both sides of the comparison).
struct ChannelHistory {
    channel: Channel,
    num: Prefix,
    /// The denominator of a rate channel.
    den: Option<Prefix>,
    /// Index of the source's coverage in `Detector::coverage`.
    cov: Option<usize>,
    /// The source is a polled one (it can go stale).
    polled: bool,
    /// The channel's weight in the account's verdict (its thresholds').
    weight: f64,
    /// Indices of the community totals (numerator, denominator).
    community: (Option<usize>, Option<usize>),
}

/// An account's channels, ready to judge.
pub struct AccountHistory {
    /// Index into the registry.
    pub account: usize,
    channels: Vec<ChannelHistory>,
    /// All channels together, with the people: the silent tier's view.
    activity: AccountActivity,
    /// Has a count channel (an account seen only through e-mail opens is
    /// silent only when the drop test agrees: fewer e-mails sent is not
    /// the customer going quiet).
    has_count: bool,
}

impl AccountHistory {
    /// The channels' names (`forum:post`), in judging order.
    pub fn channel_names(&self) -> Vec<String> {
        self.channels.iter().map(|c| c.channel.name()).collect()
    }
}

/// One channel's judgement, with where the silence began.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChannelReport {
    #[schema(value_type = String, example = "forum:post")]
    pub channel: Channel,
    #[serde(flatten)]
    pub judgement: Judgement,
    /// Start of the longest span ending today in which activity stayed at
    /// or below the drop ratio of expected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quiet_since: Option<Day>,
    /// The last day with activity (within the history read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_activity: Option<Day>,
    /// Who (handle or address) was seen on that day, when lull knows
    /// (alert notices only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen_by: Option<String>,
}

impl ChannelReport {
    /// `observed/expected` over the recent window (`9/36.7`), when the
    /// channel was judged.
    pub fn observed_of_expected(&self) -> Option<String> {
        let j = &self.judgement;
        j.status
            .is_judged()
            .then(|| format!("{:.0}/{:.1}", j.observed, j.expected))
    }
}

/// A notice decided for an account on a day, with its evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Notice {
    pub account: AccountId,
    pub name: String,
    pub csm: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub segment: Option<String>,
    pub date: Day,
    pub notice: NoticeKind,
    /// The channels that are silent (for `recovered`: the ones judged).
    #[schema(value_type = Vec<String>)]
    pub channels: Vec<Channel>,
    /// Expected and observed events over those channels' recent windows.
    pub expected: f64,
    pub observed: f64,
    /// When the account went quiet: the earliest quiet start among the
    /// silent channels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub silent_since: Option<Day>,
    /// The day the episode was first judged silent.
    pub episode_started: Option<Day>,
    /// The account as a whole: last activity, quiet days, people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quiet: Option<Quiet>,
    /// Who was around, in words: "3 of the 8 people usually active in 90
    /// days were active in the 90 days before it went quiet".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub people: Option<String>,
    /// Place on its CSM's watch digest (1 = strongest evidence).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rank: Option<u32>,
    pub evidence: Vec<ChannelReport>,
    /// About twelve weeks of the account's weekly activity against its
    /// expected level, for the alert e-mail's chart (production notices
    /// only; a backtest leaves it out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weekly: Option<Weekly>,
    /// When the notice was queued in the outbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// One account's weekly activity, with its baseline band: the data of the
/// backtest report's and the alert e-mail's charts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Weekly {
    /// First day of each week.
    pub starts: Vec<Day>,
    /// Observed events per week (all count channels and rate numerators).
    pub observed: Vec<f64>,
    /// Expected events per week from the trailing baseline, and the line
    /// at the drop ratio below it.
    pub expected: Vec<f64>,
    pub drop_line: Vec<f64>,
}

/// An account's judgement on one day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AccountJudgement {
    pub account: AccountId,
    pub name: String,
    pub csm: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub segment: Option<String>,
    pub state: State,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub silent_since: Option<Day>,
    pub channels: Vec<ChannelReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notice: Option<NoticeKind>,
    /// The drop test finds the account well below its baseline and it is
    /// not silent: a candidate for its CSM's weekly watch digest.
    #[serde(default)]
    pub watch: bool,
    /// The account as a whole: last activity, quiet days, people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quiet: Option<Quiet>,
    #[serde(skip)]
    pub memory: Memory,
}

impl AccountJudgement {
    /// Drops what only a reader of the judgement needs (channel reports,
    /// the quiet, name, CSM, segment): see [`Keep::States`].
    pub fn keep_state_only(&mut self) {
        self.name = String::new();
        self.csm = String::new();
        self.segment = None;
        self.channels = Vec::new();
        self.quiet = None;
    }
}

/// When a pass over every account reads their people (who acted: the
/// breadth of the silent tier and of notices).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeopleRead {
    /// Side by side with the series: a backtest's many days ask for most
    /// accounts' breadth at some point.
    WithSeries,
    /// Only for an account whose judgement asks, which is then made again
    /// with them: on one day few accounts are where breadth decides.
    WhenAsked,
}

/// What every account's judgement shares, read from the store once: each
/// source's coverage and the community totals, on a timeline. Owned, so
/// a service can keep it between requests (one account's page needs it,
/// and building it reads every series).
#[derive(Clone)]
pub struct Inputs {
    pub timeline: Timeline,
    /// Per source: covered days as 0/1 values and their prefix sums.
    coverage: Vec<(Vec<f64>, Prefix)>,
    coverage_index: foldhash::HashMap<SourceName, usize>,
    /// Per (source, kind): every registered account's covered counts.
    community: Vec<Prefix>,
    /// Per source, per kind: the index in `community`.
    community_index: foldhash::HashMap<SourceName, foldhash::HashMap<Kind, usize>>,
    /// Prefix of "covered by any source" days, for accounts without series.
    any_coverage: Prefix,
}

/// Loaded inputs, with the accounts and thresholds they are judged by.
pub struct Detector<'a> {
    config: &'a DetectConfig,
    registry: &'a Registry,
    inputs: std::borrow::Cow<'a, Inputs>,
    pub timeline: Timeline,
    /// Accounts whose CSM asked to hear nothing up to (and including) a
    /// day: their state moves, no notice is decided. Production only.
    snoozes: HashMap<AccountId, Day>,
    /// Days any of a set of sources covered (sorted coverage indices),
    /// made once per set: accounts share a handful of sets.
    covered: std::sync::Mutex<HashMap<Vec<usize>, Arc<Prefix>>>,
}

impl std::ops::Deref for Detector<'_> {
    type Target = Inputs;
    fn deref(&self) -> &Inputs {
        &self.inputs
    }
}

impl Inputs {
    /// Reads coverage and the community totals of every (source, kind)
    /// for `timeline` (one pass over the store).
    pub fn load(
        store: &Store,
        registry: &Registry,
        timeline: Timeline,
    ) -> Result<Inputs, StoreError> {
        let n = timeline.len();
        let mut coverage = HashMap::new();
        let mut any = vec![0.0; n];
        for source in store.sources()? {
            let mut days = vec![0.0; n];
            for span in store.coverage(&source)? {
                // Only the part on the timeline: the cost follows the
                // timeline, not how far apart a source's days are.
                let (first, last) = (span.first.max(timeline.first), span.last.min(timeline.last));
                let (Some(lo), Some(hi)) = (timeline.index(first), timeline.index(last)) else {
                    continue;
                };
                for i in lo..=hi {
                    days[i] = 1.0;
                    any[i] = 1.0;
                }
            }
            coverage.insert(source, days);
        }
        // Kept by the store as ingests commit; summed here only when the
        // store's totals are behind its series.
        let totals: Community =
            match store.community_totals(timeline.first, timeline.last, |a| {
                registry.by_id(a).is_some()
            })? {
                Some(kept) => kept
                    .into_iter()
                    .map(|(channel, days)| {
                        let mut v = vec![0.0; n];
                        accumulate(timeline, &mut v, days);
                        (channel, v)
                    })
                    .collect(),
                None => community_by_scan(store, registry, timeline)?,
            };
        let mut community_index: foldhash::HashMap<SourceName, foldhash::HashMap<Kind, usize>> =
            foldhash::HashMap::default();
        let mut community_all = Vec::new();
        for ((source, kind), mut v) in totals {
            mask(&mut v, coverage.get(&source).map(Vec::as_slice));
            community_index
                .entry(source)
                .or_default()
                .insert(kind, community_all.len());
            community_all.push(Prefix::from_values(&v));
        }
        let mut coverage_index = foldhash::HashMap::default();
        let mut coverage_all = Vec::new();
        for (source, days) in coverage {
            coverage_index.insert(source, coverage_all.len());
            let p = Prefix::from_values(&days);
            coverage_all.push((days, p));
        }
        Ok(Inputs {
            timeline,
            coverage: coverage_all,
            coverage_index,
            community: community_all,
            community_index,
            any_coverage: Prefix::from_values(&any),
        })
    }
}

/// Per (source, kind), every registered account's counts on `timeline`
/// summed day by day.
type Community = HashMap<(SourceName, Kind), Vec<f64>>;

/// [`Community`] read from every series, when the store's totals are not
/// current: summed over ranges of accounts on every core (counts are
/// whole numbers: the order of the additions changes nothing).
fn community_by_scan(
    store: &Store,
    registry: &Registry,
    timeline: Timeline,
) -> Result<Community, StoreError> {
    let n = timeline.len();
    let ranges = account_ranges(registry);
    let parts = on_workers(
        workers(),
        &ranges,
        |range, _| -> Result<Community, StoreError> {
            let mut totals = Community::new();
            let mut entries = Vec::new();
            for s in store.stored_series_between(*range) {
                let s = s?;
                if registry.by_id(s.account.as_str()).is_none() {
                    continue;
                }
                entries.clear();
                s.entries_on(timeline.first, n, &mut entries)?;
                let into = totals
                    .entry((s.source.clone(), s.kind.clone()))
                    .or_insert_with(|| vec![0.0; n]);
                for &(i, count) in &entries {
                    into[i as usize] += count as f64;
                }
            }
            Ok(totals)
        },
        &mut |_| {},
    );
    let mut totals = Community::new();
    for part in parts {
        for (key, values) in part? {
            let into = totals.entry(key).or_insert_with(|| vec![0.0; n]);
            into.iter_mut().zip(values).for_each(|(a, b)| *a += b);
        }
    }
    Ok(totals)
}

impl<'a> Detector<'a> {
    /// Reads the inputs for `timeline` from the store and judges with
    /// `registry` and `config`.
    pub fn load(
        store: &Store,
        registry: &'a Registry,
        config: &'a DetectConfig,
        timeline: Timeline,
    ) -> Result<Detector<'a>, StoreError> {
        let inputs = Inputs::load(store, registry, timeline)?;
        Ok(Detector::with_inputs(
            registry,
            config,
            std::borrow::Cow::Owned(inputs),
        ))
    }

    /// A detector over inputs already loaded (for `registry`).
    pub fn with_inputs(
        registry: &'a Registry,
        config: &'a DetectConfig,
        inputs: std::borrow::Cow<'a, Inputs>,
    ) -> Detector<'a> {
        Detector {
            config,
            registry,
            timeline: inputs.timeline,
            inputs,
            snoozes: HashMap::new(),
            covered: std::sync::Mutex::default(),
        }
    }

    /// Suppresses notices for snoozed accounts (account → last snoozed day).
    pub fn with_snoozes(mut self, snoozes: HashMap<AccountId, Day>) -> Self {
        self.snoozes = snoozes;
        self
    }

    /// The stored series and people of the registered accounts in
    /// `range`, account by account in store order, before they become a
    /// history. Series and people are both stored by account, so they are
    /// read side by side in one pass each.
    fn for_each_stored(
        &self,
        store: &Store,
        range: Accounts<'_>,
        people: PeopleRead,
        mut f: impl FnMut(
            usize,
            Vec<StoredSeries>,
            Option<Vec<ChannelPeople>>,
        ) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut people =
            (people == PeopleRead::WithSeries).then(|| store.people_between(range).peekable());
        let mut people_of =
            |account: &AccountId| -> Result<Option<Vec<ChannelPeople>>, StoreError> {
                let Some(people) = people.as_mut() else {
                    return Ok(None);
                };
                let mut out = Vec::new();
                loop {
                    match people.peek() {
                        Some(Ok(p)) if p.account.as_str() < account.as_str() => {}
                        Some(Ok(p)) if p.account == *account => {}
                        Some(Err(_)) => {
                            if let Some(Err(e)) = people.next() {
                                return Err(e);
                            }
                        }
                        _ => return Ok(Some(out)),
                    }
                    if let Some(Ok(p)) = people.next() {
                        if p.account == *account {
                            out.push(p);
                        }
                    }
                }
            };
        // One value per account: one look-up per account, not per series.
        for stored in store.stored_accounts_between(range) {
            let (account, series) = stored?;
            // An account whose value holds no series is read as one
            // without stored activity (after the others).
            if series.is_empty() {
                continue;
            }
            let Some(i) = self.registry.by_id(account.as_str()) else {
                continue;
            };
            let p = people_of(&account)?;
            f(i, series, p)?;
        }
        Ok(())
    }

    /// Runs `f` on every registered account's history, on every core, and
    /// gives the outcomes in registry order (an account without stored
    /// activity is judged on an empty history): the same outcomes as one
    /// thread reading the store from start to end.
    ///
    /// The store is cut into ranges of account ids, several per core, and
    /// each worker reads, builds and judges whole ranges: reading is half
    /// of a daily run's work, so it is shared too. `progress` hears how
    /// many accounts are done.
    pub fn map_accounts<R: Send>(
        &self,
        store: &Store,
        people: PeopleRead,
        f: impl Fn(&AccountHistory) -> R + Sync,
        mut progress: impl FnMut(usize),
    ) -> Result<Vec<R>, StoreError> {
        let workers = workers();
        let ranges = account_ranges(self.registry);
        // Each outcome goes to its account's slot as it is made: one array
        // of outcomes in registry order, not a part per range beside a
        // second array they are gathered into (two arrays of ~34 MB each
        // at the daily run's peak at 100,000 accounts, heaptrack).
        let slots: Vec<std::sync::Mutex<Option<R>>> = (0..self.registry.len())
            .map(|_| std::sync::Mutex::new(None))
            .collect();
        // An account without stored activity: an empty history.
        let unstored = |i: usize| -> Result<R, StoreError> {
            Ok(f(&self.history(i, Vec::new(), Some(Vec::new()))?))
        };
        let set = |i: usize, r: R| {
            if let Some(slot) = slots.get(i) {
                *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
            }
        };
        let stored = on_workers(
            workers,
            &ranges,
            |range, tick| {
                self.for_each_stored(store, *range, people, |i, series, people| {
                    set(i, self.judged(store, i, series, people, &f)?);
                    tick();
                    Ok(())
                })
            },
            &mut progress,
        );
        stored.into_iter().collect::<Result<(), _>>()?;
        let unseen: Vec<usize> = (slots.iter().enumerate())
            .filter(|(_, s)| s.lock().unwrap_or_else(|p| p.into_inner()).is_none())
            .map(|(i, _)| i)
            .collect();
        let chunks: Vec<&[usize]> = unseen.chunks(1024).collect();
        let done = slots.len() - unseen.len();
        let empty = on_workers(
            workers,
            &chunks,
            |chunk, tick| {
                for i in chunk.iter() {
                    set(*i, unstored(*i)?);
                    tick();
                }
                Ok(())
            },
            &mut |n| progress(done + n),
        );
        empty.into_iter().collect::<Result<(), StoreError>>()?;
        // Every slot is set (a failed worker returned above); an unset one
        // would be judged here rather than left out.
        slots
            .into_iter()
            .enumerate()
            .map(
                |(i, slot)| match slot.into_inner().unwrap_or_else(|p| p.into_inner()) {
                    Some(r) => Ok(r),
                    None => unstored(i),
                },
            )
            .collect()
    }

    /// `f` on the history of one account. Without its people (not read
    /// yet), and if `f` asked for them, they are read and `f` runs again:
    /// only the outcome that saw them counts.
    fn judged<R>(
        &self,
        store: &Store,
        account: usize,
        series: Vec<StoredSeries>,
        people: Option<Vec<ChannelPeople>>,
        f: &impl Fn(&AccountHistory) -> R,
    ) -> Result<R, StoreError> {
        let mut h = self.history(account, series, people)?;
        let first = f(&h);
        if !h.activity.asked_for_people() {
            return Ok(first);
        }
        let people = store.people_of(&self.registry.get(account).id)?;
        let t = self.thresholds(self.registry.get(account));
        h.activity.set_people(self.activity_people(people, t));
        Ok(f(&h))
    }

    /// Builds the channels of one account from its stored series and
    /// people (`None`: not read); a series that does not decode is an
    /// error.
    fn history(
        &self,
        account: usize,
        series: Vec<StoredSeries>,
        people: Option<Vec<ChannelPeople>>,
    ) -> Result<AccountHistory, StoreError> {
        let t = self.thresholds(self.registry.get(account));
        let first_activity = series
            .iter()
            .filter(|s| self.config.is_activity_for(s.kind.as_str(), t))
            .filter_map(|s| s.first)
            .min();
        // By source, each source's kinds in order; of a channel given
        // twice, the later one (values come sorted: sorting costs little).
        let mut series = series;
        series.sort_by(|a, b| (&a.source, &a.kind).cmp(&(&b.source, &b.kind)));
        series.dedup_by(|later, earlier| {
            let same = later.source == earlier.source && later.kind == earlier.kind;
            if same {
                std::mem::swap(later, earlier);
            }
            same
        });
        // Each channel's entries on the timeline (numerator, and
        // denominator for a rate), summed straight into prefixes: no day
        // array is filled and summed again (a daily run does this for
        // every account).
        let n = self.timeline.len();
        let mut entries = Vec::new();
        let mut channels = Vec::new();
        for kinds in series.chunk_by(|a, b| a.source == b.source) {
            let source = &kinds[0].source;
            let get = |kind: &Kind| kinds.iter().find(|s| s.kind == *kind);
            let cov = self.coverage_index.get(source).copied();
            let polled = self.config.polled.contains(source.as_str());
            let mut load = |kind: &Kind| -> Result<Prefix, StoreError> {
                entries.clear();
                if let Some(s) = get(kind) {
                    s.entries_on(self.timeline.first, n, &mut entries)?;
                }
                let coverage = cov.map(|i| self.coverage[i].0.as_slice());
                Ok(Prefix::from_entries(&entries, coverage, n))
            };
            let of_source = self.community_index.get(source);
            let community = |kind: &Kind| of_source.and_then(|k| k.get(kind)).copied();
            for rate in &self.config.rates {
                let numerator = Kind::from(rate.numerator.as_str());
                let denominator = Kind::from(rate.denominator.as_str());
                if get(&numerator).is_none() && get(&denominator).is_none() {
                    continue;
                }
                let weight = t.weight(&rate.numerator);
                if weight <= 0.0 {
                    continue;
                }
                channels.push(ChannelHistory {
                    num: load(&numerator)?,
                    den: Some(load(&denominator)?),
                    cov,
                    polled,
                    weight,
                    community: (community(&numerator), community(&denominator)),
                    channel: Channel {
                        source: source.clone(),
                        kind: ChannelKind::Rate {
                            numerator,
                            denominator,
                        },
                    },
                });
            }
            for kind in kinds.iter().map(|s| &s.kind) {
                let weight = t.weight(kind.as_str());
                if self.config.is_rate_kind(kind.as_str()) || weight <= 0.0 {
                    continue;
                }
                channels.push(ChannelHistory {
                    num: load(kind)?,
                    den: None,
                    cov,
                    polled,
                    weight,
                    community: (community(kind), None),
                    channel: Channel {
                        source: source.clone(),
                        kind: ChannelKind::Count(kind.clone()),
                    },
                });
            }
        }
        let activity = self.activity(&channels, people, t, first_activity);
        Ok(AccountHistory {
            account,
            has_count: channels.iter().any(|c| c.den.is_none()),
            channels,
            activity,
        })
    }

    /// The account-level view of its channels: events summed, days any of
    /// their sources covered (a source whose data ends — an import of old
    /// tickets — says nothing after it; the others still do; a polled
    /// source that went stale stops the silent tier, see `replay`), people
    /// of its activity channels.
    fn activity(
        &self,
        channels: &[ChannelHistory],
        people: Option<Vec<ChannelPeople>>,
        t: &Thresholds,
        first_activity: Option<Day>,
    ) -> AccountActivity {
        let n = self.timeline.len();
        // Whole numbers: the sum of the channels' sums is the sum of
        // their days, exactly.
        let mut events = zeroed(n + 1);
        for c in channels {
            events
                .iter_mut()
                .zip(c.num.sums())
                .for_each(|(e, v)| *e += v);
        }
        let mut sources: Vec<usize> = channels.iter().filter_map(|c| c.cov).collect();
        sources.sort_unstable();
        sources.dedup();
        let covered = self.covered_by(sources);
        let people = people.map(|p| self.activity_people(p, t));
        AccountActivity::new(
            self.timeline,
            Prefix::from_plain(events),
            covered,
            people,
            t.breadth_days,
            first_activity,
        )
    }

    /// The days any of `sources` (sorted coverage indices) covered.
    fn covered_by(&self, sources: Vec<usize>) -> Arc<Prefix> {
        // A poisoned lock only means another worker panicked while
        // holding it: the map itself is whole.
        let mut cache = self
            .covered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(p) = cache.get(&sources) {
            return p.clone();
        }
        let n = self.timeline.len();
        let mut days = vec![0.0; n];
        for &k in &sources {
            days.iter_mut()
                .zip(&self.coverage[k].0)
                .for_each(|(v, c)| *v = f64::max(*v, *c));
        }
        let p = Arc::new(Prefix::from_values(&days));
        cache.insert(sources, p.clone());
        p
    }

    /// The people of the channels that are activity for `t`.
    fn activity_people(&self, people: Vec<ChannelPeople>, t: &Thresholds) -> Vec<ChannelPeople> {
        people
            .into_iter()
            .filter(|p| self.config.is_activity_for(p.kind.as_str(), t))
            .collect()
    }

    /// The thresholds for an account (its segment's, or the defaults).
    pub fn thresholds(&self, account: &Account) -> &'a Thresholds {
        self.config.for_segment(account.segment.as_deref())
    }

    /// Judges every channel of an account on day index `d`.
    fn judge_channels(&self, h: &AccountHistory, d: usize, t: &Thresholds) -> Vec<Judgement> {
        let mut out = Vec::with_capacity(h.channels.len());
        self.judge_channels_into(h, d, t, &mut out);
        out
    }

    /// [`Detector::judge_channels`] into `out` (cleared first): a replay
    /// judges every day with one array, not a new one per day and account
    /// (allocating, filling fresh memory and freeing it were ~8 % of a
    /// backtest's time).
    fn judge_channels_into(
        &self,
        h: &AccountHistory,
        d: usize,
        t: &Thresholds,
        out: &mut Vec<Judgement>,
    ) {
        out.clear();
        out.extend(h.channels.iter().map(|c| {
            let cov = self.coverage_of(c);
            if self.channel_stale(c, d, t) {
                let w = judge::Windows::new(d, t);
                let covered = cov.sum(w.recent.0, w.recent.1) as u32;
                return Judgement::bare(ChannelStatus::Unknown, covered, w);
            }
            let all = |i: Option<usize>| i.map(|i| &self.community[i]);
            match &c.den {
                Some(den) => {
                    let community = all(c.community.0).zip(all(c.community.1));
                    judge::judge_rate(&c.num, den, cov, community, d, t)
                }
                None => judge::judge_count(&c.num, cov, all(c.community.0), d, t),
            }
        }));
    }

    /// The covered days of a channel's source (none: every window is
    /// unknown).
    fn coverage_of(&self, c: &ChannelHistory) -> &Prefix {
        c.cov.map_or(&history::EMPTY, |i| &self.coverage[i].1)
    }

    /// Is the channel's source a polled one gone stale on day index `d`?
    fn channel_stale(&self, c: &ChannelHistory, d: usize, t: &Thresholds) -> bool {
        c.polled && covered_none(self.coverage_of(c), d, t)
    }

    /// A polled source that covered none of the last `stale_days` days up
    /// to day index `d` says nothing about that day.
    fn is_stale(&self, source: &SourceName, cov: &Prefix, d: usize, t: &Thresholds) -> bool {
        self.config.polled.contains(source.as_str()) && covered_none(cov, d, t)
    }

    /// The polled sources that are stale on `day` by `[detect]`'s
    /// `stale_days` (the rule that makes their channels unknown).
    pub fn stale_sources(&self, day: Day) -> Vec<&SourceName> {
        let Some(d) = self.timeline.index(day) else {
            return Vec::new();
        };
        self.coverage_index
            .iter()
            .filter(|(source, i)| {
                self.is_stale(source, &self.coverage[**i].1, d, &self.config.defaults)
            })
            .map(|(source, _)| source)
            .collect()
    }

    /// Weighs channel judgements into the account's verdict.
    fn verdict(
        &self,
        h: &AccountHistory,
        judgements: &[Judgement],
        d: usize,
        t: &Thresholds,
    ) -> Verdict {
        let (mut total, mut silent, mut low) = (0.0, 0.0, 0.0);
        let mut any_unknown = false;
        for (c, j) in h.channels.iter().zip(judgements) {
            let w = c.weight;
            match j.status {
                ChannelStatus::Silent => {
                    total += w;
                    silent += w;
                    low += w;
                }
                ChannelStatus::Low => {
                    total += w;
                    low += w;
                }
                ChannelStatus::Normal => total += w,
                ChannelStatus::Unknown => any_unknown = true,
                ChannelStatus::InsufficientData => {}
            }
        }
        if total > 0.0 {
            return Verdict::Judged {
                silent: silent / total,
                low: low / total,
            };
        }
        if h.channels.is_empty() {
            // No activity stored at all: known quiet only if something
            // covered the recent window.
            let w = judge::Windows::new(d, t);
            let rc = self.any_coverage.sum(w.recent.0, w.recent.1);
            return if rc >= judge::min_covered(w.recent_len(), t) {
                Verdict::InsufficientData
            } else {
                Verdict::Unknown
            };
        }
        if any_unknown {
            Verdict::Unknown
        } else {
            Verdict::InsufficientData
        }
    }

    /// Walks one account from `from` to `to` (inclusive), starting from
    /// `memory`; notices are emitted from `emit_from` on and handed to
    /// `on_notice`. Returns the memory after `to` and the judgement of `to`.
    pub fn replay(
        &self,
        h: &AccountHistory,
        mut memory: Memory,
        from: Day,
        to: Day,
        emit_from: Day,
        mut on_notice: impl FnMut(Notice),
    ) -> AccountJudgement {
        let account = self.registry.get(h.account);
        let t = self.thresholds(account);
        let snoozed_until = self.snoozes.get(&account.id).copied();
        let mut last = None;
        let mut last_notice = None;
        let mut day = from.max(self.timeline.first);
        let to = to.min(self.timeline.last);
        let mut last_quiet = None;
        let mut judgements = Vec::with_capacity(h.channels.len());
        while day <= to {
            let Some(d) = self.timeline.index(day) else {
                break;
            };
            self.judge_channels_into(h, d, t, &mut judgements);
            let verdict = self.verdict(h, &judgements, d, t);
            let quiet = h.activity.judge(self.timeline, d, t);
            let low = matches!(verdict, Verdict::Judged { low, .. } if low >= t.quorum);
            // A broken connector on any of its sources: no new silence.
            let stale = h.channels.iter().any(|c| self.channel_stale(c, d, t));
            let today = Today {
                verdict,
                silent: quiet.silent && (h.has_count || low) && !stale,
                last_activity: quiet.last_activity,
            };
            let snoozed = snoozed_until.is_some_and(|until| day <= until);
            let emit = day >= emit_from && !t.mute && !snoozed;
            let notice = memory.step(today, day, t, emit);
            // `dropping` needs today judged: a day on which no channel
            // could be judged (no coverage) lists nobody on the digest.
            let watch = emit
                && t.watch
                && memory.dropping()
                && day.date().weekday() == self.config.watch.weekday;
            let kinds = notice.into_iter().chain(watch.then_some(NoticeKind::Watch));
            let mut reports = None;
            for kind in kinds {
                let reports = reports.get_or_insert_with(|| self.reports(h, &judgements, d, t));
                on_notice(self.notice(account, h, day, kind, reports, &memory, &quiet, d));
            }
            if day == to {
                last_notice = notice;
                last = Some(std::mem::take(&mut judgements));
                last_quiet = Some(quiet);
            }
            day = day.plus(1);
        }
        if from > to
            && let Some(d) = self.timeline.index(to)
        {
            // Nothing to step (the state already holds `to`: a recording
            // cut short wrote it): the channels as of `to`, all the same.
            last = Some(self.judge_channels(h, d, t));
            last_quiet = Some(h.activity.judge(self.timeline, d, t));
        }
        let channels = match (last, self.timeline.index(to)) {
            (Some(last), Some(d)) => self.reports(h, &last, d, t),
            _ => Vec::new(),
        };
        let silent_since = match memory.episode {
            Some(ep) if memory.state == State::Silent => {
                ep.since.or_else(|| silent_since(&channels))
            }
            _ => None,
        };
        AccountJudgement {
            account: account.id.clone(),
            name: account.name.clone(),
            csm: account.csm.clone(),
            segment: account.segment.clone(),
            state: memory.state,
            silent_since,
            channels,
            notice: last_notice,
            watch: memory.dropping(),
            quiet: last_quiet.filter(|q| q.last_activity.is_some()),
            memory,
        }
    }

    /// Weekly observed activity of an account in whole weeks from `first`
    /// to `to`, with the expected level and drop line at each week's end:
    /// the data of the backtest report's and the alert e-mail's charts.
    /// All channels summed (`channel: None`), or one of them.
    pub fn weekly(&self, h: &AccountHistory, first: Day, to: Day) -> Weekly {
        self.weekly_of(h, None, first, to)
    }

    /// [`Detector::weekly`] for the channel at `index` of the account's
    /// channels (in [`AccountHistory::channel_names`] order).
    pub fn channel_weekly(&self, h: &AccountHistory, index: usize, first: Day, to: Day) -> Weekly {
        self.weekly_of(h, Some(index), first, to)
    }

    fn weekly_of(&self, h: &AccountHistory, channel: Option<usize>, first: Day, to: Day) -> Weekly {
        let t = self.thresholds(self.registry.get(h.account));
        let chosen = |i: usize| channel.is_none_or(|c| c == i);
        let mut out = Weekly::default();
        let mut judgements = Vec::with_capacity(h.channels.len());
        let mut start = first.max(self.timeline.first);
        while start.plus(6) <= to.min(self.timeline.last) {
            let end = start.plus(6);
            let (Some(lo), Some(hi)) = (self.timeline.index(start), self.timeline.index(end))
            else {
                break;
            };
            let observed = h
                .channels
                .iter()
                .enumerate()
                .filter(|(i, _)| chosen(*i))
                .map(|(_, c)| c.num.sum(lo as i64, hi as i64))
                .sum();
            self.judge_channels_into(h, hi, t, &mut judgements);
            let expected: f64 = judgements
                .iter()
                .enumerate()
                .filter(|(i, j)| chosen(*i) && j.status.is_judged())
                .map(|(_, j)| j.expected * 7.0 / j.covered_days.max(1) as f64)
                .sum();
            out.starts.push(start);
            out.observed.push(observed);
            out.expected.push(expected);
            out.drop_line.push(expected * t.drop_ratio);
            start = start.plus(7);
        }
        out
    }

    /// Breadth at the account's last activity (what the silent tier reads).
    fn people_at_last(&self, h: &AccountHistory, quiet: &Quiet) -> Option<Breadth> {
        let t = self.thresholds(self.registry.get(h.account));
        let last = self.timeline.index(quiet.last_activity?)?;
        h.activity.breadth(last, t.breadth_days)
    }

    /// The account as a whole on `day`, with its people counted (the silent
    /// tier's evidence for one account's page).
    pub fn quiet_on(&self, h: &AccountHistory, day: Day) -> Option<Quiet> {
        let d = self.timeline.index(day)?;
        let t = self.thresholds(self.registry.get(h.account));
        let q = h.activity.judge(self.timeline, d, t);
        q.last_activity?;
        Some(Quiet {
            people: self.people_at_last(h, &q),
            ..q
        })
    }

    /// The history of the account at registry index `account`, from its
    /// stored series ([`Store::account_stored_series`]).
    pub fn account_history(
        &self,
        account: usize,
        series: Vec<StoredSeries>,
        people: Vec<ChannelPeople>,
    ) -> Result<AccountHistory, StoreError> {
        self.history(account, series, Some(people))
    }

    /// Channel reports with the quiet-since and last-activity evidence.
    fn reports(
        &self,
        h: &AccountHistory,
        judgements: &[Judgement],
        d: usize,
        t: &Thresholds,
    ) -> Vec<ChannelReport> {
        h.channels
            .iter()
            .zip(judgements)
            .map(|(c, j)| {
                let cov = c.cov.map(|i| &self.coverage[i].1);
                let interesting = matches!(j.status, ChannelStatus::Silent | ChannelStatus::Low);
                ChannelReport {
                    channel: c.channel.clone(),
                    judgement: j.clone(),
                    quiet_since: interesting
                        .then(|| quiet_since(c, cov, j, d, t))
                        .flatten()
                        .map(|i| self.timeline.day(i)),
                    last_activity: last_nonzero(&c.num, d).map(|i| self.timeline.day(i)),
                    last_seen_by: None,
                }
            })
            .collect()
    }

    #[allow(clippy::too_many_arguments)]
    fn notice(
        &self,
        account: &Account,
        h: &AccountHistory,
        day: Day,
        kind: NoticeKind,
        reports: &[ChannelReport],
        memory: &Memory,
        quiet: &Quiet,
        d: usize,
    ) -> Notice {
        let t = self.thresholds(account);
        // The silent tier is about the whole account: every channel it is
        // judged on. The watch tier names the channels that dropped.
        let shown: Vec<&ChannelReport> = reports
            .iter()
            .filter(|r| kind.covers(r.judgement.status))
            .collect();
        let (silent_since, started, people) = match kind {
            NoticeKind::Silent | NoticeKind::Reminder => {
                let ep = memory.episode;
                (
                    ep.and_then(|e| e.since).or_else(|| silent_since(reports)),
                    ep.map(|e| e.started),
                    self.people_at_last(h, quiet).map(|b| {
                        b.sentence(&format!(
                            "in the {} days before it went quiet",
                            b.window_days
                        ))
                    }),
                )
            }
            NoticeKind::Watch => (
                silent_since(reports),
                memory.drop.map(|e| e.started),
                h.activity
                    .breadth(d, t.breadth_days)
                    .map(|b| b.sentence(&format!("in the last {} days", b.window_days))),
            ),
            NoticeKind::Recovered => (None, None, None),
        };
        Notice {
            account: account.id.clone(),
            name: account.name.clone(),
            csm: account.csm.clone(),
            segment: account.segment.clone(),
            date: day,
            notice: kind,
            channels: shown.iter().map(|r| r.channel.clone()).collect(),
            expected: round2(shown.iter().map(|r| r.judgement.expected).sum()),
            observed: shown.iter().map(|r| r.judgement.observed).sum(),
            silent_since,
            episode_started: started,
            quiet: (kind != NoticeKind::Recovered).then(|| Quiet {
                people: self.people_at_last(h, quiet),
                ..quiet.clone()
            }),
            people,
            rank: None,
            evidence: reports.to_vec(),
            weekly: None,
            queued_at: None,
        }
    }
}

/// The threads a detection pass uses: every core (up to 8).
fn workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
}

/// The registered accounts' ids cut into ranges that together cover the
/// whole key space, several per worker so that a slow range does not
/// leave the other cores idle.
fn account_ranges(registry: &Registry) -> Vec<Accounts<'_>> {
    let mut ids: Vec<&str> = registry.accounts().iter().map(|a| a.id.as_str()).collect();
    ids.sort_unstable();
    let parts = (workers() * 8).clamp(1, ids.len().max(1));
    let cut = |k: usize| (k > 0 && k < parts).then(|| ids[k * ids.len() / parts]);
    (0..parts)
        .map(|k| Accounts {
            lo: cut(k),
            hi: cut(k + 1),
        })
        .collect()
}

/// Runs `job` on every element of `jobs` on up to `workers` threads,
/// each taking the next job when it finishes one, and gives the outcomes
/// in the order of `jobs`. A job calls its tick once per account done;
/// `progress` hears the running total on this thread (every few hundred,
/// and at the end).
fn on_workers<J: Sync, T: Send>(
    workers: usize,
    jobs: &[J],
    job: impl Fn(&J, &dyn Fn()) -> T + Sync,
    progress: &mut dyn FnMut(usize),
) -> Vec<T> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let next = AtomicUsize::new(0);
    let slots: Vec<std::sync::Mutex<Option<T>>> =
        jobs.iter().map(|_| std::sync::Mutex::new(None)).collect();
    // Ticks reach this thread in batches: waking it for every account
    // cost more than the accounts' sums.
    const BATCH: usize = 256;
    let (tick, ticks) = std::sync::mpsc::channel::<usize>();
    std::thread::scope(|scope| {
        for _ in 0..workers.min(jobs.len()) {
            let (next, slots, job, tick) = (&next, &slots, &job, tick.clone());
            scope.spawn(move || {
                let pending = std::cell::Cell::new(0);
                let count = || {
                    pending.set(pending.get() + 1);
                    if pending.get() == BATCH {
                        let _ = tick.send(pending.replace(0));
                    }
                };
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(j) = jobs.get(i) else {
                        break;
                    };
                    let out = job(j, &count);
                    *slots[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(out);
                }
                let _ = tick.send(pending.replace(0));
            });
        }
        drop(tick);
        let mut done = 0;
        for n in ticks {
            done += n;
            progress(done);
        }
    });
    // Every slot is filled: a worker stops early only by panicking, and
    // the scope passes that panic on before this line.
    slots
        .into_iter()
        .filter_map(|s| s.into_inner().unwrap_or_else(|p| p.into_inner()))
        .collect()
}

/// Days [`last_nonzero`] looks at one by one before searching.
const RECENT_SCAN: i64 = 7;

/// The last index at or before `d` with a non-zero value (binary search
/// on the prefix sums).
fn last_nonzero(p: &Prefix, d: usize) -> Option<usize> {
    let d = d as i64;
    if p.sum(0, d) <= 0.0 {
        return None;
    }
    // An active account's last activity is a day or two back: looked at
    // first, day by day (the answer is the same either way).
    for i in (d - RECENT_SCAN..=d).rev().filter(|i| *i >= 0) {
        if p.at(i) > 0.0 {
            return Some(i as usize);
        }
    }
    // Largest lo with sum(lo, d) > 0.
    let (mut lo, mut hi) = (0i64, d);
    while lo < hi {
        let mid = (lo + hi + 1) / 2;
        if p.sum(mid, d) > 0.0 {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    Some(lo as usize)
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Zeroes values on days the source did not cover.
fn mask(values: &mut [f64], coverage: Option<&[f64]>) {
    match coverage {
        Some(cov) => values.iter_mut().zip(cov).for_each(|(v, c)| *v *= c),
        None => values.iter_mut().for_each(|v| *v = 0.0),
    }
}

/// No day of the last `stale_days` up to day index `d` covered (never,
/// when `stale_days` is 0).
fn covered_none(cov: &Prefix, d: usize, t: &Thresholds) -> bool {
    t.stale_days > 0 && cov.sum(d as i64 + 1 - i64::from(t.stale_days), d as i64) <= 0.0
}

/// The earliest quiet start among silent channels.
fn silent_since(reports: &[ChannelReport]) -> Option<Day> {
    reports
        .iter()
        .filter(|r| r.judgement.status == ChannelStatus::Silent)
        .filter_map(|r| r.quiet_since)
        .min()
}

/// The start of the longest span ending on `d` (within the baseline and
/// recent windows) whose activity stayed at or below the drop ratio of
/// the expected rate.
fn quiet_since(
    c: &ChannelHistory,
    cov: Option<&Prefix>,
    j: &Judgement,
    d: usize,
    t: &Thresholds,
) -> Option<usize> {
    let cov = cov?;
    // Expected per unit of denominator (covered day, or delivered e-mail).
    let den = c.den.as_ref().unwrap_or(cov);
    let w = judge::Windows::sized(d, j.recent_days, t);
    let recent_den = den.sum(w.recent.0, w.recent.1);
    if recent_den <= 0.0 {
        return None;
    }
    let per_unit = j.expected / recent_den;
    let lo = w.baseline.0.max(0);
    let mut best = None;
    let (mut obs, mut units) = (0.0, 0.0);
    let mut i = d as i64;
    while i >= lo {
        obs += c.num.at(i);
        units += den.at(i);
        if units > 0.0 && obs <= t.drop_ratio * per_unit * units {
            best = Some(i as usize);
        }
        i -= 1;
    }
    best
}

/// The first day worth replaying from (the first covered day of any
/// source), and the timeline that reaches back far enough for `start`.
pub fn timeline_for(
    store: &Store,
    config: &DetectConfig,
    start: Day,
    last: Day,
) -> Result<(Day, Timeline), StoreError> {
    let history = store.first_covered_day()?.unwrap_or(last).min(last);
    let span = std::iter::once(&config.defaults)
        .chain(config.segments.values())
        .map(|t| t.span_days() as i32)
        .max()
        .unwrap_or(0);
    let first = start.min(last).plus(-span).max(history);
    Ok((history, Timeline { first, last }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_active_day_is_the_last_non_zero_value_near_or_far() {
        // Activity a day back, a week back, a month back, on the first
        // day only, and never.
        for gap in [0usize, 1, 6, 7, 8, 30, 59] {
            let mut values = vec![0.0; 60];
            values[59 - gap] = 2.0;
            values[0] = 1.0;
            let p = Prefix::from_values(&values);
            for d in 0..60 {
                let direct = (0..=d).rev().find(|&i| values[i] > 0.0);
                assert_eq!(last_nonzero(&p, d), direct, "gap {gap}, day {d}");
            }
        }
        assert_eq!(last_nonzero(&Prefix::from_values(&[0.0; 20]), 19), None);
    }
}
