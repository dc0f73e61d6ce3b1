//! Accounts: the list (filtered, paged), one account's page, and the
//! actors that matched no account.
//!
//! The list has two speeds. By default it reads an index kept in memory —
//! each account's state as the last detection run left it, its weekly
//! activity, last activity and by whom — rebuilt in the background when
//! the store has moved on (at most every [`REFRESH`]): a page of 100,000
//! accounts is a filter and a slice. With `evidence` (or another day than
//! today) it judges every account on that day like `lull accounts` does:
//! exact, and as slow as that.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{App, AppError};
use crate::alert::MailRecord;
use crate::detect::{
    ChannelReport, Detector, Episode, Inputs, Memory, Notice, NoticeKind, Snooze, State, Weekly,
    judge_day_as_recorded, snoozes, timeline_for, watch,
};
use crate::store::UnmatchedActor;
use crate::summary::{AccountSummary, SUMMARY_WEEKS, summarise, summarise_one};
use crate::types::{AccountId, Day};

/// How stale the index may get while the store changes under it.
pub const REFRESH: Duration = Duration::from_secs(60);
/// A page holds at most this many accounts.
pub const MAX_PAGE: usize = 10_000;
/// A page holds this many unless asked otherwise.
pub const DEFAULT_PAGE: usize = 100;
/// Weeks of history on an account's page.
pub const DETAIL_WEEKS: i32 = 26;
/// An index built faster than this is rebuilt in the request that finds
/// it out of date; a slower one in the background.
pub const QUICK_BUILD: Duration = Duration::from_millis(250);

/// How to order the list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Sort {
    /// As the accounts file lists them.
    #[default]
    File,
    /// What needs a CSM first: silent, then unknown, insufficient data,
    /// engaged; within a state, the longest quiet first.
    Attention,
}

/// Which accounts, and how many.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct AccountsQuery {
    /// Only this CSM's accounts (e-mail address, any case).
    pub csm: Option<String>,
    /// Only accounts in this state (`engaged`, `silent`, ...).
    pub state: Option<String>,
    pub segment: Option<String>,
    /// Text in the account's id or name (any case).
    pub q: Option<String>,
    /// Judge on this day instead of using the index (implies evidence).
    pub at: Option<Day>,
    /// Judge every account now, with each channel's evidence.
    pub evidence: bool,
    pub sort: Sort,
    pub offset: Option<usize>,
    pub limit: Option<usize>,
}

/// One page of accounts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AccountsPage {
    /// The day the states are for.
    pub at: Day,
    /// Accounts matching the filters (all pages).
    pub total: usize,
    pub offset: usize,
    pub accounts: Vec<AccountSummary>,
    /// Accounts per state among those matching every filter but `state`.
    #[serde(default)]
    pub states: std::collections::BTreeMap<String, usize>,
}

/// One account's page: who it is, how it stands, per channel, and what
/// lull decided about it over time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AccountDetail {
    pub account: AccountId,
    pub name: String,
    pub csm: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<String>,
    pub domains: Vec<String>,
    pub emails: Vec<String>,
    pub handles: std::collections::BTreeMap<String, Vec<String>>,
    pub at: Day,
    /// The summary (state as the last detection run left it).
    pub summary: AccountSummary,
    /// The open silence episode, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub episode: Option<Episode>,
    /// The account as a whole today: last activity, quiet days, people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quiet: Option<crate::detect::Quiet>,
    /// Each channel judged today, with its weekly activity and expected
    /// band over [`DETAIL_WEEKS`] weeks.
    pub channels: Vec<ChannelDetail>,
    /// What detection decides about the account day by day over its whole
    /// stored history (a replay with today's thresholds).
    pub notices: Vec<Notice>,
    /// The e-mails about this account: queued, sent, failed.
    pub mail: Vec<MailRecord>,
}

/// One channel on an account's page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChannelDetail {
    #[serde(flatten)]
    pub report: ChannelReport,
    pub weekly: Weekly,
}

/// What account pages share, built from one pass over the store.
pub struct Cached {
    registry: Arc<crate::accounts::Registry>,
    detect: Arc<crate::detect::DetectConfig>,
    day: Day,
    generation: u64,
    built: Instant,
    /// How long it took to build.
    took: Duration,
    /// Every account, in registry order, as the index shows it (with
    /// `registry`'s account at the same index).
    rows: Vec<IndexRow>,
    /// Detection inputs over the whole stored history up to `day`.
    inputs: Arc<Inputs>,
    /// The first covered day (replays start there).
    history: Day,
}

/// One account of the index, compact: who the account is (id, name,
/// CSM, segment) comes from the registry the index was built with, so a
/// row holds only what detection and the store say (~130 bytes; a whole
/// [`AccountSummary`] per account was ~380 with its copies of the
/// registry's strings: 38 MB at 100,000 accounts, held all day).
#[derive(Debug, Clone)]
struct IndexRow {
    state: State,
    silent_since: Option<Day>,
    last_activity: Option<Day>,
    last_seen_by: Option<Box<str>>,
    weekly: [u64; SUMMARY_WEEKS],
    watch: bool,
    snoozed: Option<Box<Snooze>>,
}

impl IndexRow {
    fn new(s: AccountSummary) -> Self {
        let mut weekly = [0; SUMMARY_WEEKS];
        for (w, v) in weekly.iter_mut().zip(&s.weekly) {
            *w = *v;
        }
        IndexRow {
            // The saved state, when there is one, is set after.
            state: State::Unknown,
            silent_since: s.silent_since,
            last_activity: s.last_activity,
            last_seen_by: s.last_seen_by.map(String::into_boxed_str),
            weekly,
            watch: s.watch,
            snoozed: s.snoozed.map(Box::new),
        }
    }
}

/// A row of an accounts list, however it is held: what the list
/// filters and sorts by, and the summary a page shows.
trait ListRow {
    fn id(&self) -> &str;
    fn name(&self) -> &str;
    fn csm(&self) -> &str;
    fn segment(&self) -> Option<&str>;
    fn state(&self) -> &str;
    fn silent_since(&self) -> Option<Day>;
    fn last_activity(&self) -> Option<Day>;
    fn summary(&self) -> AccountSummary;
}

impl ListRow for &AccountSummary {
    fn id(&self) -> &str {
        self.account.as_str()
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn csm(&self) -> &str {
        &self.csm
    }
    fn segment(&self) -> Option<&str> {
        self.segment.as_deref()
    }
    fn state(&self) -> &str {
        &self.state
    }
    fn silent_since(&self) -> Option<Day> {
        self.silent_since
    }
    fn last_activity(&self) -> Option<Day> {
        self.last_activity
    }
    fn summary(&self) -> AccountSummary {
        (*self).clone()
    }
}

/// An index row with its account.
struct Indexed<'a> {
    account: &'a crate::accounts::Account,
    row: &'a IndexRow,
}

impl ListRow for Indexed<'_> {
    fn id(&self) -> &str {
        self.account.id.as_str()
    }
    fn name(&self) -> &str {
        &self.account.name
    }
    fn csm(&self) -> &str {
        &self.account.csm
    }
    fn segment(&self) -> Option<&str> {
        self.account.segment.as_deref()
    }
    fn state(&self) -> &str {
        self.row.state.as_str()
    }
    fn silent_since(&self) -> Option<Day> {
        self.row.silent_since
    }
    fn last_activity(&self) -> Option<Day> {
        self.row.last_activity
    }
    fn summary(&self) -> AccountSummary {
        let r = self.row;
        AccountSummary {
            account: self.account.id.clone(),
            name: self.account.name.clone(),
            csm: self.account.csm.clone(),
            segment: self.account.segment.clone(),
            state: r.state.as_str().to_string(),
            silent_since: r.silent_since,
            last_activity: r.last_activity,
            last_seen_by: r.last_seen_by.as_deref().map(str::to_string),
            events_8w: r.weekly.iter().sum(),
            weekly: r.weekly.to_vec(),
            channels: Vec::new(),
            watch: r.watch,
            snoozed: r.snoozed.as_deref().cloned(),
        }
    }
}

impl Cached {
    /// The index's rows with their accounts, in registry order.
    fn indexed(&self) -> impl Iterator<Item = Indexed<'_>> {
        self.registry
            .accounts()
            .iter()
            .zip(&self.rows)
            .map(|(account, row)| Indexed { account, row })
    }
}

fn state_rank(state: &str) -> u8 {
    match state {
        "silent" => 0,
        "unknown" => 1,
        "insufficient_data" => 2,
        _ => 3,
    }
}

impl App {
    /// Accounts matching `q`, one page of them.
    pub fn accounts(&self, q: &AccountsQuery) -> Result<AccountsPage, AppError> {
        let today = self.today();
        if q.evidence || q.at.is_some_and(|d| d != today) {
            let at = q.at.unwrap_or(today);
            let rows = self.judged_rows(at)?;
            return Ok(page_of(at, rows.iter(), q));
        }
        let cache = self.cached()?;
        Ok(page_of(today, cache.indexed(), q))
    }

    /// Every account judged on `at` (a dry run), with channel evidence and
    /// snoozes: what `lull accounts` shows.
    fn judged_rows(&self, at: Day) -> Result<Vec<AccountSummary>, AppError> {
        let live = self.live();
        let mut rows = summarise(&self.store, &live.registry, &live.detect, at)?;
        let judged = judge_day_as_recorded(&self.store, &live.registry, &live.detect, at)?;
        let mut snoozed = snoozes(&self.store, at)?;
        for (row, j) in rows.iter_mut().zip(judged.accounts) {
            if row.account == j.account {
                row.state = j.state.as_str().to_string();
                row.silent_since = j.silent_since;
                row.channels = j.channels;
                row.watch = j.watch;
            }
            row.snoozed = snoozed.remove(&row.account);
        }
        Ok(rows)
    }

    /// The shared index and inputs, fresh enough: built now if there are
    /// none (or they are for another day or accounts file), rebuilt in the
    /// background when the store has changed and they are older than
    /// [`REFRESH`].
    fn cached(&self) -> Result<Arc<Cached>, AppError> {
        let live = self.live();
        let today = self.today();
        let generation = self.store.generation();
        let current = self.cache.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(c) = &current
            && Arc::ptr_eq(&c.registry, &live.registry)
            && Arc::ptr_eq(&c.detect, &live.detect)
            && c.day == today
        {
            use std::sync::atomic::Ordering;
            if self.stale.load(Ordering::SeqCst) {
                // Something changed that pages should show (a detection
                // run, a snooze, an import). A quick index is rebuilt now;
                // a slow one in the background, the old one answering
                // meanwhile: pages never wait for a big rebuild.
                if c.took < QUICK_BUILD {
                    let _one = self.building.lock().unwrap_or_else(|p| p.into_inner());
                    if self.stale.swap(false, Ordering::SeqCst) {
                        let built = Arc::new(self.build_cache()?);
                        *self.cache.lock().unwrap_or_else(|p| p.into_inner()) = Some(built.clone());
                        return Ok(built);
                    }
                    return Ok(self
                        .cache
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .clone()
                        .unwrap_or_else(|| c.clone()));
                }
                self.refresh_in_background();
            } else if c.generation != generation && c.built.elapsed() > REFRESH {
                self.refresh_in_background();
            }
            return Ok(c.clone());
        }
        // One build at a time: requests that arrive meanwhile wait for it
        // instead of reading the store again each.
        let _one = self.building.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = self.cache.lock().unwrap_or_else(|p| p.into_inner()).clone()
            && Arc::ptr_eq(&c.registry, &live.registry)
            && Arc::ptr_eq(&c.detect, &live.detect)
            && c.day == today
        {
            return Ok(c);
        }
        self.stale.store(false, std::sync::atomic::Ordering::SeqCst);
        let built = Arc::new(self.build_cache()?);
        *self.cache.lock().unwrap_or_else(|p| p.into_inner()) = Some(built.clone());
        Ok(built)
    }

    /// Builds the account index now (the service does at start, so the
    /// first page does not wait for it).
    pub fn warm(&self) -> Result<(), AppError> {
        self.cached().map(drop)
    }

    /// Rebuilds the index on a thread of its own; requests meanwhile get
    /// the previous one.
    fn refresh_in_background(&self) {
        use std::sync::atomic::Ordering;
        if self.refreshing.swap(true, Ordering::SeqCst) {
            return;
        }
        self.stale.store(false, Ordering::SeqCst);
        let (store, live, today) = (self.store.clone(), self.live(), self.today());
        let (slot, refreshing) = (self.cache.clone(), self.refreshing.clone());
        std::thread::spawn(move || {
            match build(&store, &live, today) {
                Ok(c) => *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(c)),
                Err(e) => {
                    tracing::warn!(error = %e, "refreshing the account index failed; the previous one stays")
                }
            }
            refreshing.store(false, Ordering::SeqCst);
        });
    }

    fn build_cache(&self) -> Result<Cached, AppError> {
        build(&self.store, &self.live(), self.today())
    }

    /// Marks the index out of date (after detection, a snooze, an
    /// import): the next page rebuilds it — at once when that is quick,
    /// else in the background while the previous one answers.
    pub fn invalidate(&self) {
        self.stale.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// An account's weekly chart as of `day` (the alert e-mail's, as a
    /// PNG), marking `since`; for the signed chart links of chat messages.
    pub fn chart_png(&self, id: &str, day: Day, since: Option<Day>) -> Result<Vec<u8>, AppError> {
        let live = self.live();
        let Some(idx) = live.registry.by_id(id) else {
            return Err(AppError::not_found(format!(
                "no account `{id}` in the accounts file"
            )));
        };
        let cache = self.cached()?;
        let detector = Detector::with_inputs(
            &live.registry,
            &live.detect,
            std::borrow::Cow::Borrowed(&*cache.inputs),
        );
        let account = &live.registry.get(idx).id;
        let series = self.store.account_stored_series(account)?;
        let people = self.store.people_of(account)?;
        let h = detector.account_history(idx, series, people)?;
        let weeks = crate::detect::CHART_WEEKS;
        let w = detector.weekly(&h, day.plus(1 - 7 * weeks), day);
        crate::alert::chart::weekly_png(&w, since)
            .map_err(|e| AppError::new("internal", 500, format!("drawing the chart: {e}")))
    }

    /// One account's page.
    pub fn account(&self, id: &str) -> Result<AccountDetail, AppError> {
        let live = self.live();
        let Some(idx) = live.registry.by_id(id) else {
            return Err(AppError::not_found(format!(
                "no account `{id}` in the accounts file"
            )));
        };
        let account = live.registry.get(idx).clone();
        let cache = self.cached()?;
        let today = cache.day;
        let summary = match (cache.registry.accounts().get(idx), cache.rows.get(idx)) {
            // The index is of the registry this page reads (a reload
            // rebuilds it before a page uses it).
            (Some(account), Some(row)) if account.id == live.registry.get(idx).id => {
                Indexed { account, row }.summary()
            }
            _ => summary_now(self, &account.id)?,
        };
        let detector = Detector::with_inputs(
            &live.registry,
            &live.detect,
            std::borrow::Cow::Borrowed(&*cache.inputs),
        );
        let series = self.store.account_stored_series(&account.id)?;
        let people = self.store.people_of(&account.id)?;
        let h = detector.account_history(idx, series, people)?;
        let (mut notices, mut candidates) = (Vec::new(), Vec::new());
        let judged = detector.replay(
            &h,
            Memory::default(),
            cache.history,
            today,
            cache.history,
            |n| {
                if n.notice == NoticeKind::Watch {
                    candidates.push(n);
                } else {
                    notices.push(n);
                }
            },
        );
        // Its digest entries as a backtest lists them (one account: the
        // cap never binds, the repeat rule does).
        notices.extend(watch::select(
            candidates,
            &mut Default::default(),
            &live.detect.watch,
        ));
        notices.sort_by_key(|n| (n.date, n.notice));
        let quiet = detector.quiet_on(&h, today);
        let first = today.plus(1 - 7 * DETAIL_WEEKS);
        let channels = judged
            .channels
            .into_iter()
            .enumerate()
            .map(|(i, mut report)| {
                report.last_seen_by = self
                    .store
                    .last_seen(
                        account.id.as_str(),
                        report.channel.source.as_str(),
                        report.channel.own_kind().as_str(),
                    )
                    .ok()
                    .flatten()
                    .filter(|(d, _)| Some(*d) == report.last_activity)
                    .map(|(_, who)| who);
                ChannelDetail {
                    weekly: detector.channel_weekly(&h, i, first, today),
                    report,
                }
            })
            .collect();
        let episode = self
            .store
            .state_of::<Memory>(&account.id)?
            .and_then(|m| m.episode);
        let mail = self
            .messages()?
            .into_iter()
            .filter(|m| m.accounts.iter().any(|a| a == id))
            .collect();
        Ok(AccountDetail {
            account: account.id,
            name: account.name,
            csm: account.csm,
            segment: account.segment,
            domains: account.domains,
            emails: account.emails,
            handles: account.handles,
            at: today,
            summary,
            episode,
            quiet,
            channels,
            notices,
            mail,
        })
    }

    /// Actors that matched no account, most events first.
    pub fn unmatched(&self) -> Result<Vec<UnmatchedActor>, AppError> {
        Ok(self.store.unmatched()?)
    }

    /// An account's snooze, if one holds today or later.
    pub fn snooze_of(&self, id: &AccountId) -> Result<Option<Snooze>, AppError> {
        Ok(snoozes(&self.store, self.today())?.remove(id))
    }
}

/// The page of `rows` that `q` asks for (only that page is copied).
fn page_of<R: ListRow>(at: Day, rows: impl Iterator<Item = R>, q: &AccountsQuery) -> AccountsPage {
    let lower = |s: &Option<String>| s.as_ref().map(|x| x.to_lowercase());
    let (csm, q_text) = (lower(&q.csm), lower(&q.q));
    let mut states = std::collections::BTreeMap::new();
    let mut matching: Vec<R> = rows
        .filter(|r| csm.as_ref().is_none_or(|c| r.csm().eq_ignore_ascii_case(c)))
        .filter(|r| q.segment.is_none() || r.segment() == q.segment.as_deref())
        .filter(|r| {
            q_text.as_ref().is_none_or(|t| {
                r.id().to_lowercase().contains(t) || r.name().to_lowercase().contains(t)
            })
        })
        .inspect(|r| *states.entry(r.state().to_string()).or_insert(0) += 1)
        .filter(|r| q.state.as_ref().is_none_or(|s| r.state() == s))
        .collect();
    if q.sort == Sort::Attention {
        matching.sort_by(|a, b| {
            state_rank(a.state())
                .cmp(&state_rank(b.state()))
                .then(a.silent_since().cmp(&b.silent_since()))
                .then(a.last_activity().cmp(&b.last_activity()))
                .then(a.id().cmp(b.id()))
        });
    }
    let total = matching.len();
    let offset = q.offset.unwrap_or(0).min(total);
    let limit = q.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    AccountsPage {
        at,
        total,
        offset,
        accounts: matching
            .into_iter()
            .skip(offset)
            .take(limit)
            .map(|r| r.summary())
            .collect(),
        states,
    }
}

/// Builds the index and inputs as of `today`.
fn build(store: &crate::store::Store, live: &super::Live, today: Day) -> Result<Cached, AppError> {
    let started = Instant::now();
    let generation = store.generation();
    let registry = &live.registry;
    // One compact row per account, in registry order, each made as its
    // summary is.
    let mut rows = registry
        .accounts()
        .iter()
        .map(|a| summarise_one(store, registry, &live.detect, a, today).map(IndexRow::new))
        .collect::<Result<Vec<_>, _>>()?;
    // Each saved state goes to its row as it is read (no map of 100,000
    // states beside the rows).
    store.visit_states_between(crate::store::Accounts::ALL, |account, m: Memory| {
        let Some(row) = registry.by_id(account).and_then(|i| rows.get_mut(i)) else {
            return;
        };
        row.state = m.state;
        if m.state == State::Silent {
            row.silent_since = m.episode.map(|e| e.since.unwrap_or(e.started));
        }
        row.watch = m.dropping();
    })?;
    for (account, snooze) in snoozes(store, today)? {
        if let Some(row) = registry
            .by_id(account.as_str())
            .and_then(|i| rows.get_mut(i))
        {
            row.snoozed = Some(Box::new(snooze));
        }
    }
    let (history, timeline) = timeline_for(store, &live.detect, Day(i32::MIN / 2), today)?;
    let inputs = Inputs::load(store, &live.registry, timeline)?;
    Ok(Cached {
        registry: live.registry.clone(),
        detect: live.detect.clone(),
        day: today,
        generation,
        built: Instant::now(),
        took: started.elapsed(),
        rows,
        inputs: Arc::new(inputs),
        history,
    })
}

/// The summary of one account (fresh, not from the index).
pub fn summary_now(app: &App, id: &AccountId) -> Result<AccountSummary, AppError> {
    let live = app.live();
    let idx = live
        .registry
        .by_id(id.as_str())
        .ok_or_else(|| AppError::not_found(format!("no account `{id}` in the accounts file")))?;
    Ok(summarise_one(
        &app.store,
        &live.registry,
        &live.detect,
        live.registry.get(idx),
        app.today(),
    )?)
}
