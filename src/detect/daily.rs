//! Production detection: judge one day for every account, from the state
//! saved by the previous run, and record the outcome with its notices.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::Queued;
use super::{
    AccountJudgement, DetectConfig, Detector, Memory, Notice, NoticeKind, PeopleRead, timeline_for,
    watch,
};
use crate::accounts::Registry;
use crate::store::{QueuedNotice, Store, StoreError};
use crate::types::{AccountId, Day, SourceName};

/// Weeks of history in an alert's chart: a quarter shows the account's
/// normal level and the drop at a glance.
pub const CHART_WEEKS: i32 = 12;

/// The outbox kind of a stale-source notice (its "account" is the source).
pub const STALE_SOURCE: &str = "stale_source";

/// A source that stopped delivering data: an ops problem, told once to the
/// ops address instead of as silence to CSMs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaleNotice {
    pub source: SourceName,
    /// The day detection found it stale.
    pub date: Day,
    /// The last day the source has data for.
    pub last_data: Day,
    /// Who is told (the configured ops address).
    pub to: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// An account's snooze, as `lull snooze` records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Snooze {
    /// The last day no notice is decided for the account.
    pub until: Day,
    pub reason: String,
    pub set_at: chrono::DateTime<chrono::Utc>,
    /// Who snoozed it: an API token's name, `console:<e-mail>`, or
    /// `cli:<user>` on the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

impl crate::store::Value for Snooze {
    const WHAT: &'static str = "the snooze";
}

/// Who was seen on the channel's last active day, if the store knows.
fn last_seen_by(store: &Store, account: &str, r: &super::ChannelReport) -> Option<String> {
    // A rate channel (`open/delivered`): who opened.
    let (day, actor) = store
        .last_seen(
            account,
            r.channel.source.as_str(),
            r.channel.own_kind().as_str(),
        )
        .ok()??;
    (Some(day) == r.last_activity).then_some(actor)
}

/// Every snooze in the store that still holds on or after `day`.
pub fn snoozes(store: &Store, day: Day) -> Result<BTreeMap<AccountId, Snooze>, StoreError> {
    let mut out = BTreeMap::new();
    for (a, s) in store.snoozes::<Snooze>()? {
        if s.until >= day {
            out.insert(a, s);
        }
    }
    Ok(out)
}

/// The first day a saved state has not seen: the day after the last judged
/// one (`after_last`), or after the day the state was recorded for when a
/// recording of a later day was cut short after writing it. `None`: judge
/// the account from the beginning of its history.
fn resume_day(memory: &Memory, after_last: Option<Day>) -> Option<Day> {
    match (memory.recorded.map(|d| d.plus(1)), after_last) {
        (Some(r), Some(p)) => Some(r.max(p)),
        (r, p) => r.or(p),
    }
}

/// Every registered account's saved state, by registry index, read and
/// decoded on every core.
fn saved_states(store: &Store, registry: &Registry) -> Result<Vec<Option<Memory>>, StoreError> {
    let parts = super::on_workers(
        super::workers(),
        &super::account_ranges(registry),
        |range, _| {
            let mut part = Vec::new();
            store.visit_states_between::<Memory>(*range, |account, memory| {
                if let Some(i) = registry.by_id(account) {
                    part.push((i, memory));
                }
            })?;
            Ok::<_, StoreError>(part)
        },
        &mut |_| {},
    );
    // By index, not in a map by id: at 100,000 accounts a map of their
    // ids was ~34 MB and a look-up per account judged.
    let mut all = vec![None; registry.len()];
    for part in parts {
        for (i, memory) in part? {
            all[i] = Some(memory);
        }
    }
    Ok(all)
}

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
    /// Sources with data but none in the last `stale_days` days, with
    /// their last day of data.
    pub stale: BTreeMap<SourceName, Day>,
    /// Sources already reported stale before this run.
    pub reported_stale: BTreeMap<SourceName, Day>,
    /// Each account's saved state by registry index (as `accounts`), to
    /// record only those that changed.
    saved: Vec<Option<Memory>>,
}

/// What a day's run keeps of each account's judgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Keep {
    /// Everything: channel reports, the quiet, name and CSM (what `lull
    /// detect --json`, the API and the accounts list show).
    #[default]
    All,
    /// The account, its state, notice, watch flag and saved memory (what
    /// the service's own runs record and count): at 100,000 accounts the
    /// rest is ~150 MB the service never reads.
    States,
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
    judge(store, registry, config, at, Keep::All, false)
}

/// [`judge_day`], keeping `keep` of each account's judgement.
pub fn judge_day_keeping(
    store: &Store,
    registry: &Registry,
    config: &DetectConfig,
    at: Day,
    keep: Keep,
) -> Result<DayRun, StoreError> {
    judge(store, registry, config, at, keep, false)
}

/// Every account as of `at`, for a view (`lull accounts`, the API's
/// accounts with evidence). On the last day detection recorded, each
/// account's state is the one saved for that day and only its channels
/// are judged: nothing is stepped again and no notice is decided (an
/// account without a saved state is replayed). [`judge_day`] would replay
/// every account's whole history there: at 100,000 accounts the work and
/// the memory of a first run, each time the list is shown. Any other day
/// is [`judge_day`]'s.
pub fn judge_day_as_recorded(
    store: &Store,
    registry: &Registry,
    config: &DetectConfig,
    at: Day,
) -> Result<DayRun, StoreError> {
    judge(store, registry, config, at, Keep::All, true)
}

fn judge(
    store: &Store,
    registry: &Registry,
    config: &DetectConfig,
    at: Day,
    keep: Keep,
    as_recorded: bool,
) -> Result<DayRun, StoreError> {
    let previous = store.last_judged_day()?;
    // The saved states hold `at`: resumed after it, nothing is stepped.
    let hold = as_recorded && previous == Some(at);
    let already_judged = !hold && previous.is_some_and(|p| p >= at);
    // A day already judged replays history and records nothing: the saved
    // states are not read.
    let memories = if already_judged {
        vec![None; registry.len()]
    } else {
        saved_states(store, registry)?
    };
    let resume = previous.filter(|_| !already_judged).map(|p| p.plus(1));
    let all_saved = memories.iter().all(Option::is_some);
    let earliest = match resume {
        Some(r) if all_saved => r,
        _ => Day(i32::MIN / 2),
    };
    let (history, timeline) = timeline_for(store, config, earliest, at)?;
    let snoozed = snoozes(store, at)?
        .into_iter()
        .map(|(a, s)| (a, s.until))
        .collect();
    let detector = Detector::load(store, registry, config, timeline)?.with_snoozes(snoozed);
    // Each account on any core: its judgement, its notices (with the
    // chart's weeks and who was last seen) and its watch-list candidate.
    // From saved states, a run judges a day or so: few accounts are where
    // people decide, and only theirs are read. Replaying whole histories
    // asks for most accounts' people at some point: read them all.
    let people = if earliest == Day(i32::MIN / 2) {
        PeopleRead::WithSeries
    } else {
        PeopleRead::WhenAsked
    };
    let mut judged = detector.map_accounts(
        store,
        people,
        |h| {
            let (memory, from) = memories[h.account]
                .and_then(|m| resume_day(&m, resume).map(|r| (m, r)))
                .unwrap_or((Memory::default(), history));
            let mut notices = Vec::new();
            let mut candidates: Vec<Notice> = Vec::new();
            let mut judgement = detector.replay(h, memory, from, at, at, |n| {
                if n.notice == NoticeKind::Watch {
                    candidates.push(n);
                } else {
                    notices.push(n);
                }
            });
            if keep == Keep::States {
                judgement.keep_state_only();
            }
            if let Some(c) = candidates.last_mut() {
                c.weekly = Some(detector.weekly(h, at.plus(1 - 7 * CHART_WEEKS), at));
            }
            if !notices.is_empty() {
                let weekly = detector.weekly(h, at.plus(1 - 7 * CHART_WEEKS), at);
                for n in &mut notices {
                    n.weekly = Some(weekly.clone());
                    for r in &mut n.evidence {
                        r.last_seen_by = last_seen_by(store, n.account.as_str(), r);
                    }
                }
            }
            (judgement, notices, candidates)
        },
        |_| {},
    )?;
    let mut notices = Vec::new();
    let mut candidates = Vec::new();
    for (_, n, c) in &mut judged {
        notices.append(n);
        candidates.append(c);
    }
    // In registry order as `map_accounts` gives them (each account's
    // outcome went to its slot as it was made).
    let mut accounts: Vec<AccountJudgement> = judged.into_iter().map(|j| j.0).collect();
    // One judgement per registered account: `saved` is matched by index.
    debug_assert_eq!(accounts.len(), registry.len());
    debug_assert!(
        accounts
            .iter()
            .enumerate()
            .all(|(i, a)| registry.by_id(a.account.as_str()) == Some(i))
    );
    // Today's digest: the same selection a backtest makes, from the last
    // listing each account remembers.
    let mut listed: HashMap<AccountId, Day> = accounts
        .iter()
        .filter_map(|a| Some((a.account.clone(), a.memory.watch_listed?)))
        .collect();
    for n in watch::select(candidates, &mut listed, &config.watch) {
        if let Some(a) = registry
            .by_id(n.account.as_str())
            .and_then(|i| accounts.get_mut(i))
        {
            a.memory.watch_listed = Some(n.date);
            a.notice = a.notice.or(Some(NoticeKind::Watch));
        }
        notices.push(n);
    }
    notices.sort_by(|a, b| (a.date, &a.account).cmp(&(b.date, &b.account)));
    // The same rule that made their channels unknown; a source with no
    // data up to `at` at all (judging a day before it began) is not stale.
    let mut stale = BTreeMap::new();
    for source in detector.stale_sources(at) {
        if let Some(last) = store.last_covered(source, at)? {
            stale.insert(source.clone(), last);
        }
    }
    Ok(DayRun {
        day: at,
        accounts,
        notices,
        previous,
        already_judged,
        stale,
        reported_stale: store.stale_sources()?,
        saved: memories,
    })
}

impl DayRun {
    /// Sources that went stale since the last run (each is told once).
    pub fn newly_stale(&self) -> impl Iterator<Item = (&SourceName, &Day)> {
        self.stale
            .iter()
            .filter(|(s, _)| !self.reported_stale.contains_key(*s))
    }

    /// Saves the states that changed and queues today's notices (and, with
    /// an `ops` address, one notice per source that went stale), flushed:
    /// in one atomic write, or in atomic parts when many states changed
    /// ([`Store::record_detection`]). Refused for a day already judged.
    pub fn record(&self, store: &Store, ops: Option<&str>) -> Result<usize, StoreError> {
        self.record_parts(store, ops, crate::store::STATES_PER_PART, usize::MAX)
    }

    /// [`DayRun::record`] in parts of `per_part` states, stopping after
    /// `parts` of them: what a crash between parts leaves (tests).
    #[doc(hidden)]
    pub fn record_parts(
        &self,
        store: &Store,
        ops: Option<&str>,
        per_part: usize,
        parts: usize,
    ) -> Result<usize, StoreError> {
        if self.already_judged {
            return Ok(0);
        }
        let now = chrono::Utc::now();
        // The watch digest is chosen across accounts (a cap per CSM): its
        // accounts' states land with the day, so a recording cut short
        // never leaves part of a digest, which a second run would fill up
        // past the cap.
        let in_digest: std::collections::HashSet<&AccountId> = self
            .notices
            .iter()
            .filter(|n| n.notice == NoticeKind::Watch)
            .map(|n| &n.account)
            .collect();
        let (mut states, with_day): (Vec<_>, Vec<_>) = self
            .accounts
            .iter()
            .enumerate()
            .filter(|(i, a)| self.saved.get(*i).copied().flatten() != Some(a.memory))
            .map(|(_, a)| {
                let recorded = Some(self.day);
                (
                    &a.account,
                    Memory {
                        recorded,
                        ..a.memory
                    },
                )
            })
            .partition(|(a, _)| !in_digest.contains(a));
        let last = with_day.len();
        states.extend(with_day);
        let mut outgoing: Vec<Queued> = self
            .notices
            .iter()
            .map(|n| {
                let mut n = n.clone();
                n.queued_at = Some(now);
                Queued::Account(Box::new(n))
            })
            .collect();
        let mut stale_changes: Vec<(SourceName, Option<Day>)> = Vec::new();
        for (source, last) in self.newly_stale() {
            stale_changes.push((source.clone(), Some(*last)));
            if let Some(to) = ops {
                outgoing.push(Queued::Stale(StaleNotice {
                    source: source.clone(),
                    date: self.day,
                    last_data: *last,
                    to: to.to_string(),
                    queued_at: Some(now),
                }));
            }
        }
        let queued = outgoing
            .iter()
            .map(Queued::entry)
            .collect::<Result<Vec<QueuedNotice>, _>>()
            .map_err(|e| StoreError::Encode {
                what: "a notice for the outbox",
                detail: e.to_string(),
            })?;
        for source in self.reported_stale.keys() {
            if !self.stale.contains_key(source) {
                stale_changes.push((source.clone(), None));
            }
        }
        store.record_detection_parts(
            self.day,
            &states,
            last,
            &queued,
            &stale_changes,
            per_part,
            parts,
        )?;
        Ok(queued.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Ingest, Origin, Owner, Span};

    const ACCOUNTS: usize = 120;
    /// A Monday: the watch digest's day.
    const LAST: Day = Day(20_500);

    /// 500 days of forum posts of 120 accounts: steady ones, ones that
    /// stop (alerted), ones that stop and come back, dwindling ones.
    fn store_and_registry(dir: &std::path::Path) -> (Store, Registry) {
        let store = crate::store::tests::open(dir);
        let mut text = String::new();
        let mut i = Ingest::default();
        for a in 0..ACCOUNTS {
            let id = format!("a{a:03}");
            text.push_str(&format!(
                "[[account]]\nid = \"{id}\"\nname = \"Account {a}\"\ncsm = \"csm@vendor.example\"\n\n"
            ));
            for d in 20_000..=LAST.0 {
                let to_end = LAST.0 - d;
                let active = match a % 4 {
                    0 => true,
                    1 => to_end > 55 + (a as i32 % 11),
                    2 => !(40..100).contains(&to_end),
                    _ => to_end > 25 || d % 14 == 0,
                };
                if active {
                    let event = format!("{a}-{d}");
                    i.add("forum", &event, Owner::Account(&id), "post", Day(d), 2)
                        .unwrap();
                }
            }
        }
        i.coverage = vec![(
            "forum".into(),
            Span {
                first: Day(20_000),
                last: LAST,
            },
            Origin::Poll,
        )];
        store.commit(&i).unwrap();
        let registry = Registry::from_text(
            std::path::Path::new("accounts.toml"),
            text,
            &crate::config::IdentityConfig::default(),
        )
        .unwrap();
        (store, registry)
    }

    /// What a recording leaves: the last judged day, every state and every
    /// queued notice (without the time it was queued).
    fn recorded(store: &Store) -> (Option<Day>, Vec<(AccountId, Memory)>, Vec<String>) {
        let mut states: Vec<(AccountId, Memory)> = store.states().unwrap().into_iter().collect();
        states.sort_by(|a, b| a.0.cmp(&b.0));
        let notices = store
            .queued()
            .unwrap()
            .into_iter()
            .map(|q| {
                let mut body: serde_json::Value = serde_json::from_slice(&q.body).unwrap();
                body.as_object_mut().unwrap().remove("queued_at");
                format!("{} {} {} {body}", q.day, q.account, q.kind)
            })
            .collect();
        (store.last_judged_day().unwrap(), states, notices)
    }

    /// States per part in these tests.
    const PER_PART: usize = 8;

    /// Judges `at` and records it in parts of [`PER_PART`] states,
    /// stopping after `parts` of them.
    fn run(store: &Store, registry: &Registry, at: Day, parts: usize) {
        let config = DetectConfig::default();
        let day = judge_day(store, registry, &config, at).unwrap();
        day.record_parts(store, None, PER_PART, parts).unwrap();
    }

    #[test]
    fn a_saved_state_resumes_after_the_later_of_its_day_and_the_last_judged_one() {
        let m = |recorded| Memory {
            recorded,
            ..Memory::default()
        };
        let (d, last) = (Day(100), Some(Day(91)));
        assert_eq!(resume_day(&m(None), last), last);
        assert_eq!(resume_day(&m(Some(Day(80))), last), last);
        assert_eq!(resume_day(&m(Some(d)), last), Some(Day(101)));
        assert_eq!(resume_day(&m(Some(d)), None), Some(Day(101)));
        assert_eq!(resume_day(&m(None), None), None);
    }

    #[test]
    fn a_recording_cut_between_its_parts_resumes_to_what_a_whole_one_records() {
        // A first run (every account's state is new: 15 parts) and a
        // catch-up of 20 days after a recorded day, in which accounts go
        // silent, come back and dwindle.
        for (before, at) in [(None, LAST), (Some(LAST.plus(-20)), LAST)] {
            let whole = tempfile::tempdir().unwrap();
            let (store, registry) = store_and_registry(whole.path());
            if let Some(b) = before {
                run(&store, &registry, b, usize::MAX);
            }
            run(&store, &registry, at, usize::MAX);
            let want = recorded(&store);
            assert_eq!(want.0, Some(at));
            // Alerts, and a digest that left candidates out (its cap).
            let count = |kind: &str| want.2.iter().filter(|n| n.contains(kind)).count();
            assert!(count(" silent ") > 10, "{:#?}", want.2);
            assert_eq!(count(" watch "), 5, "{:#?}", want.2);
            // The digest's accounts land with the day, in the last part.
            let written = want.1.iter().filter(|(_, m)| m.recorded == Some(at));
            let parts = (written.count() - count(" watch ")).div_ceil(PER_PART);
            assert!(parts >= 3, "{before:?}: {parts} parts");
            for cut in 1..parts {
                let dir = tempfile::tempdir().unwrap();
                let (store, registry) = store_and_registry(dir.path());
                if let Some(b) = before {
                    run(&store, &registry, b, usize::MAX);
                }
                run(&store, &registry, at, cut);
                let (last, states, _) = recorded(&store);
                assert_eq!(last, before, "{before:?}, cut after {cut}: no day recorded");
                let written = states
                    .iter()
                    .filter(|(_, m)| m.recorded == Some(at))
                    .count();
                assert_eq!(written, PER_PART * cut, "cut after {cut}");
                // Judged again: the accounts already written go on from
                // their own day, the others from the last judged one.
                run(&store, &registry, at, usize::MAX);
                assert_eq!(recorded(&store), want, "{before:?} → {at}, cut after {cut}");
            }
        }
    }
}
