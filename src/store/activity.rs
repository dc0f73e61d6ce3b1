//! Activity: what ingests write (events counted once, their daily
//! series, unmatched actors, who was seen last, cursors) and its reads.

use std::collections::BTreeMap;

// Every event of a batch goes through these maps: a fast hash (ids are
// already xxh3 hashes; names come from the accounts file and sources).
use foldhash::{HashMap, HashMapExt};

use super::coverage::{self, Origin, Span};
use super::identity;
use super::totals;
use super::varint::{get_day, get_varint, put_day, put_varint};
use super::{
    Accounts, P_BUCKET, P_CURSOR, P_LAST, P_UNMATCHED, SEP, STORED_DAYS, Store, StoreError,
    TREE_ACTIVITY, check_name, day_key, key_bare, key1, key2,
};
use crate::types::{AccountId, Day, Kind, SourceName};

/// Who an event belongs to, as given to [`Ingest::add`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner<'a> {
    Account(&'a str),
    /// An account of the accounts file, with its index there.
    Registered(Registered<'a>),
    /// The actor resolved to no account; kept so the mapping can be fixed.
    Unmatched {
        actor: &'a str,
    },
}

/// An account of the accounts file: its id, and its index in the
/// registry, which a batch looks up instead of hashing the id (an import
/// names an account on every line). Every index given to one batch must
/// come from one registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registered<'a> {
    pub id: &'a str,
    pub index: usize,
}

#[derive(Debug)]
enum EventOwner {
    Account(u32),
    Unmatched(Box<str>),
}

#[derive(Debug)]
struct Event {
    source: u32,
    kind: u32,
    owner: EventOwner,
    id: u128,
    day: Day,
    count: u64,
}

/// Strings seen in a batch, stored once each.
#[derive(Debug, Default)]
struct Interner {
    index: HashMap<Box<str>, u32>,
    names: Vec<Box<str>>,
}

/// Up to this many names an [`Interner`] compares them in turn: a batch
/// has a few sources and kinds, each named on every line, and comparing
/// a short name or two costs less than hashing it.
const FEW: usize = 8;

impl Interner {
    /// The index of `s`, a name that can be part of a key.
    #[inline]
    fn intern(&mut self, s: &str) -> Result<u32, StoreError> {
        match self.find(s) {
            Some(i) => Ok(i),
            None => {
                check_name(s)?;
                Ok(self.insert(s))
            }
        }
    }

    /// The index of `s`, any string (a value, never a key).
    #[inline]
    fn intern_any(&mut self, s: &str) -> u32 {
        self.find(s).unwrap_or_else(|| self.insert(s))
    }

    #[inline]
    fn find(&self, s: &str) -> Option<u32> {
        if self.names.len() <= FEW {
            self.names.iter().position(|n| &**n == s).map(|i| i as u32)
        } else {
            self.index.get(s).copied()
        }
    }

    fn insert(&mut self, s: &str) -> u32 {
        let i = self.names.len() as u32;
        self.names.push(s.into());
        self.index.insert(s.into(), i);
        i
    }

    fn name(&self, i: u32) -> &str {
        &self.names[i as usize]
    }
}

/// Everything one commit writes, atomically: activities, the coverage they
/// establish, and the cursors that move with them.
#[derive(Debug, Default)]
pub struct Ingest {
    sources: Interner,
    kinds: Interner,
    accounts: Interner,
    /// Registry index → the account's index in `accounts`, for
    /// [`Registered`] owners (`u32::MAX`: not seen yet).
    registered: Vec<u32>,
    events: Vec<Event>,
    /// Runs of days to mark covered, with who covered them.
    pub coverage: Vec<(SourceName, Span, Origin)>,
    /// Cursors to advance; they move only together with their activities.
    pub cursors: Vec<(SourceName, Vec<u8>)>,
    /// (account, source, kind) → the latest day seen and who acted then
    /// (interned in `actors`; `None`: nobody named).
    last_seen: HashMap<Channel3, (Day, Option<u32>)>,
    /// The people of [`Ingest::seen_by`], interned.
    actors: Interner,
    /// Who was active on which channel and day, as it came (repeats and
    /// all): sorted once at the commit, not kept in order per event.
    people: Vec<PersonDay>,
}

/// An account's channel in a batch: (account, source, kind), interned.
type Channel3 = (u32, u32, u32);

/// One [`Ingest::seen_by`]: its channel, actor and day, interned.
type PersonDay = (Channel3, u32, Day);

/// Keys and the values to write there.
type Writes = Vec<(Vec<u8>, Vec<u8>)>;

impl Ingest {
    /// Adds one activity: `id` is unique within `source`.
    pub fn add(
        &mut self,
        source: &str,
        id: &str,
        owner: Owner<'_>,
        kind: &str,
        day: Day,
        count: u64,
    ) -> Result<(), StoreError> {
        let owner = match owner {
            Owner::Account(a) => EventOwner::Account(self.accounts.intern(a)?),
            Owner::Registered(r) => EventOwner::Account(self.registered(r)?),
            Owner::Unmatched { actor } => EventOwner::Unmatched(actor.into()),
        };
        self.events.push(Event {
            source: self.sources.intern(source)?,
            kind: self.kinds.intern(kind)?,
            owner,
            id: identity::hash(id),
            day,
            count,
        });
        Ok(())
    }

    /// [`Ingest::add`] of an account's activity, then [`Ingest::seen_by`]
    /// of `actor` on its channel: what an import line with an actor does,
    /// naming the account, source and kind once.
    #[allow(clippy::too_many_arguments)]
    pub fn add_by(
        &mut self,
        source: &str,
        id: &str,
        account: Registered<'_>,
        kind: &str,
        day: Day,
        count: u64,
        actor: &str,
    ) -> Result<(), StoreError> {
        self.add(source, id, Owner::Registered(account), kind, day, count)?;
        // The event just added names the channel, interned.
        if let Some(e) = self.events.last()
            && let EventOwner::Account(a) = e.owner
        {
            self.seen_on((a, e.source, e.kind), day, actor);
        }
        Ok(())
    }

    /// Adds one activity of count 1, like "recipient R opened message M".
    /// (Every event is counted once per (`source`, `id`), whatever day it
    /// comes with: the first day stored is the one that counts.)
    pub fn add_once(
        &mut self,
        source: &str,
        id: &str,
        owner: Owner<'_>,
        kind: &str,
        day: Day,
    ) -> Result<(), StoreError> {
        self.add(source, id, owner, kind, day, 1)
    }

    /// Notes that `actor` (a handle or address: a person) acted for the
    /// account on `day` on this channel: the alert e-mail's "last activity
    /// by", and the people detection counts. Names that cannot be keys are
    /// ignored (the event itself reports them).
    pub fn seen_by(&mut self, account: &str, source: &str, kind: &str, day: Day, actor: &str) {
        let (Ok(a), Ok(s), Ok(k)) = (
            self.accounts.intern(account),
            self.sources.intern(source),
            self.kinds.intern(kind),
        ) else {
            return;
        };
        self.seen_on((a, s, k), day, actor);
    }

    /// The index in `accounts` of a registered account.
    #[inline]
    fn registered(&mut self, r: Registered<'_>) -> Result<u32, StoreError> {
        if let Some(&a) = self.registered.get(r.index)
            && a != u32::MAX
        {
            debug_assert_eq!(self.accounts.name(a), r.id, "one registry per batch");
            return Ok(a);
        }
        let a = self.accounts.intern(r.id)?;
        if self.registered.len() <= r.index {
            self.registered.resize(r.index + 1, u32::MAX);
        }
        self.registered[r.index] = a;
        Ok(a)
    }

    /// [`Ingest::seen_by`] on a channel already interned.
    #[inline]
    fn seen_on(&mut self, channel: Channel3, day: Day, actor: &str) {
        let person = (!actor.is_empty()).then(|| self.actors.intern_any(actor));
        // A person's name is part of a key: one with a NUL is kept only
        // as the channel's last seen.
        if let Some(p) = person
            && check_name(actor).is_ok()
        {
            self.people.push((channel, p, day));
        }
        match self.last_seen.get_mut(&channel) {
            Some(last) if last.0 > day => {}
            Some(last) => *last = (day, person),
            None => {
                self.last_seen.insert(channel, (day, person));
            }
        }
    }

    /// Activities added so far.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

/// What a commit did.
#[derive(
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
pub struct Committed {
    /// Activities counted into an account's buckets.
    pub counted: u64,
    /// Activities already counted before (same source and id).
    pub duplicates: u64,
    /// Activities whose actor matched no account.
    pub unmatched: u64,
}

impl std::ops::AddAssign for Committed {
    fn add_assign(&mut self, o: Committed) {
        self.counted += o.counted;
        self.duplicates += o.duplicates;
        self.unmatched += o.unmatched;
    }
}

/// One daily bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    pub account: AccountId,
    pub source: SourceName,
    pub kind: Kind,
    pub day: Day,
    pub count: u64,
}

/// One channel's daily counts, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Series {
    pub account: AccountId,
    pub source: SourceName,
    pub kind: Kind,
    /// The first day with a count, also when `entries` were read from a
    /// later day on ([`Store::series_from`]).
    pub first: Option<Day>,
    pub entries: Vec<(Day, u64)>,
}

/// One channel's daily counts as stored, not decoded yet: what a
/// detection reads, taking only the entries on its timeline
/// ([`StoredSeries::entries_on`]).
#[derive(Debug, Clone)]
pub struct StoredSeries {
    pub account: AccountId,
    pub source: SourceName,
    pub kind: Kind,
    /// The first day with a count.
    pub first: Option<Day>,
    /// The account's value, and where this channel's series is in it.
    value: sled::IVec,
    at: std::ops::Range<usize>,
}

impl StoredSeries {
    /// Appends to `out` the entries of the days `first..first + n`, as
    /// (index from `first`, count) in day order; a series that does not
    /// decode is [`StoreError::Damaged`], naming the account's key.
    pub fn entries_on(
        &self,
        first: Day,
        n: usize,
        out: &mut Vec<(u32, u64)>,
    ) -> Result<(), StoreError> {
        let last = first.0.saturating_add(i32::try_from(n).unwrap_or(i32::MAX));
        self.bytes()
            .and_then(|bytes| {
                // At most one entry per two bytes.
                out.reserve(bytes.len() / 2);
                visit_series(bytes, |day, count| {
                    if day >= first.0 && day < last {
                        out.push(((day - first.0) as u32, count));
                    }
                })
            })
            .map(|_| ())
            .ok_or_else(|| self.damage())
    }

    /// The series decoded, with its entries from `from` on (all when
    /// `None`).
    pub fn decoded(self, from: Option<Day>) -> Result<Series, StoreError> {
        let (first, entries) = self
            .bytes()
            .and_then(|bytes| decode_series_from(bytes, from))
            .ok_or_else(|| self.damage())?;
        Ok(Series {
            account: self.account,
            source: self.source,
            kind: self.kind,
            first,
            entries,
        })
    }

    fn bytes(&self) -> Option<&[u8]> {
        self.value.get(self.at.clone())
    }

    /// The series does not decode: the account's value is damaged.
    fn damage(&self) -> StoreError {
        match key_bare(P_BUCKET, self.account.as_str()) {
            Ok(key) => damaged(SERIES, &key),
            Err(e) => e,
        }
    }
}

/// Unmatched actors of one source.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct UnmatchedActor {
    pub source: SourceName,
    pub actor: String,
    pub events: u64,
    pub last_seen: Day,
}

impl Store {
    /// Counts a batch exactly once and makes it durable.
    ///
    /// Each activity is checked against the ids counted before in its
    /// source, whatever their day ([`identity`]), and against the rest of
    /// this batch; new ones get their id and their count in the same
    /// atomic batch, together with the coverage
    /// and cursors; then the store is flushed. When this returns `Ok`, all
    /// of it is on disk; if the process dies before, none of it is.
    pub fn commit(&self, ingest: &Ingest) -> Result<Committed, StoreError> {
        // What the batch will write, roughly: a marker and a share of a
        // series per event, plus the cursors.
        let estimate = ingest.events.len() as u64 * 48
            + ingest
                .cursors
                .iter()
                .map(|(_, c)| c.len() as u64)
                .sum::<u64>();
        let mut w = self.begin(estimate)?;
        let mut batch = sled::Batch::default();
        // Who acted (last seen, people) needs nothing of the counting: it
        // is read, merged and written on another core meanwhile, key by
        // key, before the counting batch. Those writes are idempotent (a
        // person's day recorded again is one day; a last seen written
        // again is the same), so a crash between them and the batch loses
        // nothing: the same events, polled or imported again, count then
        // and change nothing here. Outside the batch, sled applies them
        // alongside the counting (a batch locks out every other read and
        // write of the store while it is applied).
        let (counted, who) = std::thread::scope(|scope| {
            let who = std::thread::Builder::new()
                .name("lull-commit".into())
                .spawn_scoped(scope, || self.write_who_acted(ingest, &w));
            let counted = self.count(ingest, &mut batch);
            let who = match who {
                Ok(h) => h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
                // No thread to be had (a process at its limit): here, after.
                Err(_) => self.write_who_acted(ingest, &w),
            };
            (counted, who)
        });
        who?;
        let (stats, added) = counted?;
        coverage::add(&self.activity, &ingest.coverage, &mut batch)?;
        for (source, cursor) in &ingest.cursors {
            batch.insert(key1(P_CURSOR, source.as_str())?, cursor.as_slice());
        }
        let (gk, gv) = w.bump(TREE_ACTIVITY);
        self.add_to_totals(added, &gv, &mut batch)?;
        batch.insert(gk, &gv);
        self.activity
            .apply_batch(batch)
            .map_err(|e| w.failed("writing a batch", e))?;
        w.finish()?;
        Ok(stats)
    }

    /// The counting part of [`Store::commit`]: which events count (ids,
    /// arrival order), what they add to the series, the unmatched events
    /// parked, the ids recorded; into `batch`, with what the community
    /// totals gain.
    fn count<'i>(
        &self,
        ingest: &'i Ingest,
        batch: &mut sled::Batch,
    ) -> Result<(Committed, totals::Added<'i>), StoreError> {
        let mut stats = Committed::default();

        // Which events count, decided per (source, id) on the events sorted
        // by it, arrival order kept within: an id counted before (in the
        // id leaves, [`identity`], whatever its day) counts nothing again;
        // otherwise the first event with an account counts, wherever the
        // batches of a file end. Unmatched events claim no id: those before
        // it are unmatched (if a later line or import maps the event to an
        // account, it is counted then), the rest are repeats.
        let n = ingest.events.len();
        // Whether an account owns the event rides along (it fits in the
        // tuple's padding): no look-up of each event again.
        let mut by_id: Vec<(u32, u128, usize, bool)> = (ingest.events.iter().enumerate())
            .map(|(i, e)| (e.source, e.id, i, matches!(e.owner, EventOwner::Account(_))))
            .collect();
        by_id.sort_unstable();
        let mut counts = vec![false; n];
        // The event's id was counted, before or by this batch.
        let mut id_known = vec![false; n];
        let mut distinct: Vec<u128> = Vec::new();
        let mut new: Vec<u128> = Vec::new();
        for events in by_id.chunk_by(|x, y| x.0 == y.0) {
            let source_name = ingest.sources.name(events[0].0);
            distinct.clear();
            distinct.extend(events.iter().map(|&(_, h, _, _)| h));
            distinct.dedup();
            let leaves = identity::leaves(self, source_name, &distinct)?;
            let mut before = vec![false; distinct.len()];
            for leaf in &leaves {
                for j in leaf.ids.clone() {
                    before[j] = leaf.knows(distinct[j]);
                }
            }
            new.clear();
            for (j, same) in events.chunk_by(|x, y| x.1 == y.1).enumerate() {
                let members = same.iter().map(|&(_, _, i, _)| i);
                if before[j] {
                    stats.duplicates += same.len() as u64;
                    members.for_each(|i| id_known[i] = true);
                    continue;
                }
                let Some(first) = same.iter().position(|&(_, _, _, owned)| owned) else {
                    stats.unmatched += same.len() as u64;
                    continue;
                };
                new.push(same[0].1);
                stats.unmatched += first as u64;
                stats.counted += 1;
                stats.duplicates += (same.len() - first - 1) as u64;
                counts[same[first].2] = true;
                members.for_each(|i| id_known[i] = true);
            }
            // The ids counted now join their leaves (`new` is ascending).
            for leaf in &leaves {
                let (lo, hi) = (distinct[leaf.ids.start], distinct[leaf.ids.end - 1]);
                let from = new.partition_point(|h| *h < lo);
                let to = new.partition_point(|h| *h <= hi);
                identity::add(source_name, leaf, &new[from..to], batch)?;
            }
        }
        drop(by_id);

        // Then per (source, day), events in arrival order: the counts, and
        // the unmatched events parked (or no longer parked) there. Sorted,
        // not gathered in a map: a million events sort in a few
        // hundredths of a second.
        let mut order: Vec<(u32, Day, usize)> = (ingest.events.iter().enumerate())
            .map(|(i, e)| (e.source, e.day, i))
            .collect();
        order.sort_unstable();
        // (account, source, kind, day, added count) of each counted event.
        let mut increments: Vec<(u32, u32, u32, Day, u64)> =
            Vec::with_capacity(stats.counted as usize);
        for group in order.chunk_by(|x, y| (x.0, x.1) == (y.0, y.1)) {
            let (source, day) = (group[0].0, group[0].1);
            let members = group.iter().map(|&(_, _, i)| i);
            let source_name = ingest.sources.name(source);
            let ukey = key2(P_UNMATCHED, source_name, &day.to_key())?;
            let parked_raw = self.get(&ukey, "reading unmatched events")?;
            let mut parked = decode_parked(parked_raw.as_deref().unwrap_or(&[]))
                .ok_or_else(|| damaged("unmatched events", &ukey))?;
            let mut parked_changed = false;
            for i in members {
                let e = &ingest.events[i];
                match &e.owner {
                    EventOwner::Account(a) if counts[i] => {
                        increments.push((*a, e.source, e.kind, day, e.count));
                        // It may have been parked as unmatched by an earlier
                        // import, before the accounts file knew its actor.
                        parked_changed |= parked.remove(&e.id).is_some();
                    }
                    EventOwner::Account(_) => {}
                    EventOwner::Unmatched(actor) => {
                        if !id_known[i]
                            && parked.get(&e.id).map(|a| a.as_ref()) != Some(actor.as_ref())
                        {
                            parked.insert(e.id, actor.clone());
                            parked_changed = true;
                        }
                    }
                }
            }
            if parked_changed {
                if parked.is_empty() {
                    batch.remove(ukey);
                } else {
                    batch.insert(ukey, encode_parked(&parked));
                }
            }
        }
        // What the series gain, the community totals gain too. An
        // account's channels are one value: read and written once.
        increments.sort_unstable_by_key(|&(a, s, k, day, _)| (a, s, k, day));
        let mut added = totals::Added::default();
        for channels in increments.chunk_by(|x, y| x.0 == y.0) {
            let account = ingest.accounts.name(channels[0].0);
            let key = key_bare(P_BUCKET, account)?;
            let old = self.get(&key, "reading a series")?;
            if old.is_none() {
                added.new_account(account);
            }
            let stored = decode_channels(old.as_deref().unwrap_or(&[]))
                .ok_or_else(|| damaged(SERIES, &key))?;
            let mut merged: BTreeMap<(&str, &str), std::borrow::Cow<'_, [u8]>> = stored
                .into_iter()
                .map(|c| ((c.source, c.kind), std::borrow::Cow::Borrowed(c.series)))
                .collect();
            for days in channels.chunk_by(|x, y| (x.1, x.2) == (y.1, y.2)) {
                let (source, kind) = (ingest.sources.name(days[0].1), ingest.kinds.name(days[0].2));
                let mut series = match merged.get(&(source, kind)) {
                    Some(v) => decode_series(v).ok_or_else(|| damaged(SERIES, &key))?,
                    None => BTreeMap::new(),
                };
                for &(_, _, _, day, add) in days {
                    let c = series.entry(day).or_insert(0);
                    let before = *c;
                    *c = c.saturating_add(add);
                    added.count(source, kind, day, *c - before);
                }
                merged.insert(
                    (source, kind),
                    std::borrow::Cow::Owned(encode_series(&series)),
                );
            }
            batch.insert(
                key,
                encode_channels(merged.iter().map(|((s, k), v)| (*s, *k, v.as_ref()))),
            );
        }
        Ok((stats, added))
    }

    /// Writes [`Store::who_acted`]'s values, one key at a time.
    fn write_who_acted(&self, ingest: &Ingest, w: &super::Write<'_>) -> Result<(), StoreError> {
        for (key, value) in self.who_acted(ingest)? {
            self.activity
                .insert(key, value)
                .map_err(|e| w.failed("writing who acted", e))?;
        }
        Ok(())
    }

    /// The writes of a commit about who acted: each channel's last seen
    /// (where newer than stored) and its people (where any are new).
    fn who_acted(&self, ingest: &Ingest) -> Result<Writes, StoreError> {
        let mut writes = Vec::new();
        for (&(account, source, kind), &(day, actor)) in &ingest.last_seen {
            let key = channel_key(
                P_LAST,
                ingest.accounts.name(account),
                ingest.sources.name(source),
                ingest.kinds.name(kind),
            )?;
            let newer = match self.get(&key, "reading last seen")? {
                Some(old) => old.get(..4).and_then(day_key).is_none_or(|d| d <= day),
                None => true,
            };
            if newer {
                let mut v = day.to_key().to_vec();
                if let Some(actor) = actor {
                    v.extend_from_slice(ingest.actors.name(actor).as_bytes());
                }
                writes.push((key, v));
            }
        }
        // Who was active: per channel, each (person, day) once.
        let mut people = ingest.people.clone();
        people.sort_unstable();
        people.dedup();
        for seen in people.chunk_by(|x, y| x.0 == y.0) {
            let (account, source, kind) = seen[0].0;
            let key = super::people::key(
                ingest.accounts.name(account),
                ingest.sources.name(source),
                ingest.kinds.name(kind),
            )?;
            let old = self.get(&key, "reading people")?;
            let new = seen.iter().map(|&(_, p, day)| (ingest.actors.name(p), day));
            match super::people::merge(old.as_deref(), new) {
                None => return Err(damaged("who was active on a channel", &key)),
                Some(Some(v)) => writes.push((key, v)),
                Some(None) => {}
            }
        }
        Ok(writes)
    }

    /// All buckets, ordered by account, source, kind, day; days outside
    /// `[from, to]` (when given) are skipped.
    pub fn buckets(
        &self,
        from: Option<Day>,
        to: Option<Day>,
    ) -> impl Iterator<Item = Result<Bucket, StoreError>> + '_ {
        self.series_between(None, Accounts::ALL)
            .flat_map(move |s| buckets_of(s, from, to))
    }

    /// The buckets of one account, ordered by source, kind, day.
    pub fn account_buckets(
        &self,
        account: &AccountId,
        from: Option<Day>,
        to: Option<Day>,
    ) -> impl Iterator<Item = Result<Bucket, StoreError>> + '_ {
        let series = match self.account_stored_series(account) {
            Ok(all) => all.into_iter().map(|s| s.decoded(None)).collect(),
            Err(e) => vec![Err(e)],
        };
        series
            .into_iter()
            .flat_map(move |s| buckets_of(s, from, to))
    }

    /// One account's channel series, ordered by source and kind.
    pub fn account_series(&self, account: &AccountId) -> Result<Vec<Series>, StoreError> {
        self.account_stored_series(account)?
            .into_iter()
            .map(|s| s.decoded(None))
            .collect()
    }

    /// Every channel series (account, source, kind) with its sparse
    /// (day, count) entries in day order; ordered by account.
    pub fn series(&self) -> impl Iterator<Item = Result<Series, StoreError>> + '_ {
        self.series_from(None)
    }

    /// Every channel series with only its entries from `from` on (all when
    /// `None`), and the day its first entry of all has in `first`: what a
    /// judgement of recent days needs, without decoding years before.
    pub fn series_from(
        &self,
        from: Option<Day>,
    ) -> impl Iterator<Item = Result<Series, StoreError>> + '_ {
        self.series_between(from, Accounts::ALL)
    }

    /// [`Store::series_from`] for the accounts of one range: ranges that
    /// split the key space can be read on several threads at once.
    pub fn series_between(
        &self,
        from: Option<Day>,
        accounts: Accounts<'_>,
    ) -> impl Iterator<Item = Result<Series, StoreError>> + '_ {
        self.stored_series_between(accounts)
            .map(move |s| s.and_then(|s| s.decoded(from)))
    }

    /// [`Store::series_between`] for detection: each channel's series as
    /// stored, decoded by [`StoredSeries::entries_on`].
    pub fn stored_series_between(
        &self,
        accounts: Accounts<'_>,
    ) -> impl Iterator<Item = Result<StoredSeries, StoreError>> + '_ {
        self.stored_accounts_between(accounts).flat_map(
            |stored| -> Vec<Result<StoredSeries, StoreError>> {
                match stored {
                    Ok((_, all)) => all.into_iter().map(Ok).collect(),
                    Err(e) => vec![Err(e)],
                }
            },
        )
    }

    /// [`Store::stored_series_between`] account by account: each account
    /// with a stored value, in store order, with its channels' series
    /// (one value per account: a reader that looks each account up once
    /// need not group series again).
    pub fn stored_accounts_between(
        &self,
        accounts: Accounts<'_>,
    ) -> impl Iterator<Item = Result<(AccountId, Vec<StoredSeries>), StoreError>> + '_ {
        self.activity.range(accounts.keys(P_BUCKET)).map(move |r| {
            let (k, v) = r.map_err(|e| self.fail("reading series", e))?;
            let account = decode_account_key(&k).ok_or_else(|| damaged(SERIES, &k))?;
            let series = stored_series(&account, &k, v)?;
            Ok((account, series))
        })
    }

    /// [`Store::account_series`], as stored ([`StoredSeries`]).
    pub fn account_stored_series(
        &self,
        account: &AccountId,
    ) -> Result<Vec<StoredSeries>, StoreError> {
        let key = key_bare(P_BUCKET, account.as_str())?;
        match self.get(&key, "reading series")? {
            None => Ok(Vec::new()),
            Some(v) => stored_series(account, &key, v),
        }
    }

    /// The runs of days `source` is covered (by polls and imports alike),
    /// merged, in order.
    pub fn coverage(&self, source: &SourceName) -> Result<Vec<Span>, StoreError> {
        Ok(coverage::merge(
            self.coverage_by(source)?
                .into_iter()
                .map(|(_, s)| s)
                .collect(),
        ))
    }

    /// The stored runs of days of `source`, with who covered each.
    pub fn coverage_by(&self, source: &SourceName) -> Result<Vec<(Origin, Span)>, StoreError> {
        let prefix = coverage::prefix(source.as_str(), None)?;
        let mut out = Vec::new();
        for r in self.activity.scan_prefix(&prefix) {
            let (k, v) = r.map_err(|e| self.fail("reading coverage", e))?;
            let (_, origin, span) =
                coverage::decode(&k, &v).ok_or_else(|| damaged("a coverage range", &k))?;
            out.push((origin, span));
        }
        Ok(out)
    }

    /// The last covered day of `source` on or before `day`.
    pub fn last_covered(&self, source: &SourceName, day: Day) -> Result<Option<Day>, StoreError> {
        Ok(self
            .coverage(source)?
            .into_iter()
            .filter(|s| s.first <= day)
            .map(|s| s.last.min(day))
            .max())
    }

    /// The first covered day of any source.
    pub fn first_covered_day(&self) -> Result<Option<Day>, StoreError> {
        let mut first: Option<Day> = None;
        for source in self.sources()? {
            if let Some(s) = self.coverage(&source)?.first() {
                first = Some(first.map_or(s.first, |f| f.min(s.first)));
            }
        }
        Ok(first)
    }

    /// Every source that has coverage.
    pub fn sources(&self) -> Result<std::collections::BTreeSet<SourceName>, StoreError> {
        let mut out = std::collections::BTreeSet::new();
        let mut next = vec![coverage::P_COVERAGE];
        // Skip from one source to the next instead of walking its ranges.
        loop {
            let Some(r) = self.activity.range(next.clone()..).next() else {
                break;
            };
            let (k, v) = r.map_err(|e| self.fail("listing sources", e))?;
            if k.first() != Some(&coverage::P_COVERAGE) {
                break;
            }
            let (name, _, _) =
                coverage::decode(&k, &v).ok_or_else(|| damaged("a coverage range", &k))?;
            next = coverage::prefix(&name, None)?;
            next.push(0xff);
            out.insert(SourceName(name));
        }
        Ok(out)
    }

    /// The cursor a source's next poll starts from.
    pub fn cursor(&self, source: &SourceName) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .get(&key1(P_CURSOR, source.as_str())?, "reading a cursor")?
            .map(|v| v.to_vec()))
    }

    /// The latest day and identity seen on an account's channel.
    pub fn last_seen(
        &self,
        account: &str,
        source: &str,
        kind: &str,
    ) -> Result<Option<(Day, String)>, StoreError> {
        let key = channel_key(P_LAST, account, source, kind)?;
        match self.get(&key, "reading last seen")? {
            None => Ok(None),
            Some(v) => {
                let day = v
                    .get(..4)
                    .and_then(day_key)
                    .ok_or_else(|| damaged("who was seen last", &key))?;
                let actor =
                    std::str::from_utf8(&v[4..]).map_err(|_| damaged("who was seen last", &key))?;
                Ok(Some((day, actor.to_string())))
            }
        }
    }

    /// Actors that matched no account, most events first.
    pub fn unmatched(&self) -> Result<Vec<UnmatchedActor>, StoreError> {
        let mut agg: HashMap<(String, String), (u64, Day)> = HashMap::new();
        for r in self.activity.scan_prefix([P_UNMATCHED]) {
            let (k, v) = r.map_err(|e| self.fail("reading unmatched actors", e))?;
            let (Some(name), Some(day)) = (
                k.get(1..k.len().saturating_sub(5))
                    .and_then(|n| std::str::from_utf8(n).ok()),
                k.get(k.len().saturating_sub(4)..).and_then(day_key),
            ) else {
                return Err(damaged("unmatched events", &k));
            };
            let source = name.to_string();
            let parked = decode_parked(&v).ok_or_else(|| damaged("unmatched events", &k))?;
            for actor in parked.into_values() {
                let e = agg
                    .entry((source.clone(), actor.into_string()))
                    .or_insert((0, Day(i32::MIN)));
                e.0 += 1;
                e.1 = e.1.max(day);
            }
        }
        let mut out: Vec<UnmatchedActor> = agg
            .into_iter()
            .map(|((source, actor), (events, last_seen))| UnmatchedActor {
                source: SourceName(source),
                actor,
                events,
                last_seen,
            })
            .collect();
        out.sort_by(|a, b| {
            b.events
                .cmp(&a.events)
                .then_with(|| a.source.cmp(&b.source))
                .then_with(|| a.actor.cmp(&b.actor))
        });
        Ok(out)
    }
}

/// The error for a value that does not decode.
pub(crate) fn damaged(what: &str, key: &[u8]) -> StoreError {
    StoreError::Damaged {
        what: what.to_string(),
        key: super::show_key(key),
    }
}

/// prefix · account · source · kind: a key about one account's channel.
pub(super) fn channel_key(
    prefix: u8,
    account: &str,
    source: &str,
    kind: &str,
) -> Result<Vec<u8>, StoreError> {
    let (a, s, k) = (check_name(account)?, check_name(source)?, check_name(kind)?);
    let mut key = Vec::with_capacity(3 + a.len() + s.len() + k.len());
    key.push(prefix);
    key.extend_from_slice(a);
    key.push(SEP);
    key.extend_from_slice(s);
    key.push(SEP);
    key.extend_from_slice(k);
    Ok(key)
}

pub(super) fn decode_series_key(k: &[u8]) -> Option<(AccountId, SourceName, Kind)> {
    let mut parts = k.get(1..)?.split(|&b| b == SEP);
    let account = String::from_utf8(parts.next()?.to_vec()).ok()?;
    let source = String::from_utf8(parts.next()?.to_vec()).ok()?;
    let kind = String::from_utf8(parts.next()?.to_vec()).ok()?;
    Some((AccountId(account), SourceName(source), Kind(kind)))
}

/// What a series value is, in error messages.
pub(super) const SERIES: &str = "an account's daily series";

/// The account of an activity key (`b` · account).
pub(super) fn decode_account_key(k: &[u8]) -> Option<AccountId> {
    let name = k.get(1..)?;
    if name.contains(&SEP) {
        return None;
    }
    Some(AccountId(String::from_utf8(name.to_vec()).ok()?))
}

/// One channel of an account's activity value, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct StoredChannel<'v> {
    pub source: &'v str,
    pub kind: &'v str,
    /// The series ([`encode_series`]'s bytes).
    pub series: &'v [u8],
}

/// An account's activity value (schema 4): every channel's series in one
/// value, so that reading an account costs one key — sled's cost is per
/// key, not per byte (a scan of 100,000 values of 1.6 kB takes a quarter
/// of the time of 400,000 of 400 bytes). Per channel, in (source, kind)
/// order: the source and the kind (each a varint length and UTF-8 bytes
/// without NUL) and the series (a varint length and its bytes). `None`
/// when it does not decode exactly so.
pub(super) fn decode_channels(v: &[u8]) -> Option<Vec<StoredChannel<'_>>> {
    fn take<'v>(v: &'v [u8], at: &mut usize) -> Option<&'v [u8]> {
        let n = usize::try_from(get_varint(v, at)?).ok()?;
        let end = at.checked_add(n)?;
        let bytes = v.get(*at..end)?;
        *at = end;
        Some(bytes)
    }
    fn name<'v>(v: &'v [u8], at: &mut usize) -> Option<&'v str> {
        let bytes = take(v, at)?;
        if bytes.contains(&SEP) {
            return None;
        }
        std::str::from_utf8(bytes).ok()
    }
    let mut out: Vec<StoredChannel<'_>> = Vec::with_capacity(4);
    let mut at = 0;
    while at < v.len() {
        let source = name(v, &mut at)?;
        let kind = name(v, &mut at)?;
        let series = take(v, &mut at)?;
        if out
            .last()
            .is_some_and(|p| (p.source, p.kind) >= (source, kind))
        {
            return None;
        }
        out.push(StoredChannel {
            source,
            kind,
            series,
        });
    }
    Some(out)
}

/// [`decode_channels`]' value of `channels`, which come in (source, kind)
/// order, each once.
pub(super) fn encode_channels<'v>(
    channels: impl IntoIterator<Item = (&'v str, &'v str, &'v [u8])>,
) -> Vec<u8> {
    let mut v = Vec::new();
    for (source, kind, series) in channels {
        for part in [source.as_bytes(), kind.as_bytes(), series] {
            put_varint(&mut v, part.len() as u64);
            v.extend_from_slice(part);
        }
    }
    v
}

/// The channels of `account`'s value (under `key`), each with its
/// series' first day; their entries are checked as they are decoded.
pub(super) fn stored_series(
    account: &AccountId,
    key: &[u8],
    value: sled::IVec,
) -> Result<Vec<StoredSeries>, StoreError> {
    let base = value.as_ptr() as usize;
    let channels = decode_channels(&value).ok_or_else(|| damaged(SERIES, key))?;
    let mut out = Vec::with_capacity(channels.len());
    for c in channels {
        let start = c.series.as_ptr() as usize - base;
        let first = match c.series {
            [] => None,
            bytes => Some(get_day(bytes, &mut 0).ok_or_else(|| damaged(SERIES, key))?),
        };
        out.push(StoredSeries {
            account: account.clone(),
            source: SourceName(c.source.to_string()),
            kind: Kind(c.kind.to_string()),
            first,
            value: value.clone(),
            at: start..start + c.series.len(),
        });
    }
    Ok(out)
}

/// A series' buckets from `from` to `to` (when given).
fn buckets_of(
    s: Result<Series, StoreError>,
    from: Option<Day>,
    to: Option<Day>,
) -> Vec<Result<Bucket, StoreError>> {
    let s = match s {
        Ok(s) => s,
        Err(e) => return vec![Err(e)],
    };
    s.entries
        .into_iter()
        .filter(|(day, _)| from.is_none_or(|f| *day >= f) && to.is_none_or(|t| *day <= t))
        .map(|(day, count)| {
            Ok(Bucket {
                account: s.account.clone(),
                source: s.source.clone(),
                kind: s.kind.clone(),
                day,
                count,
            })
        })
        .collect()
}

/// A series value (schema 3): its first day (a zig-zag varint of days
/// since 1970, [`put_day`]), then per entry the distance from the previous day (varint, at
/// least 1; 0 for the first) and the count (varint): about 2 bytes an
/// active day, where a fixed layout took 12.
pub(super) fn decode_series(v: &[u8]) -> Option<BTreeMap<Day, u64>> {
    let (_, entries) = decode_series_from(v, None)?;
    Some(entries.into_iter().collect())
}

/// (day, count) pairs in day order.
type Entries = Vec<(Day, u64)>;

/// A series value's first day and its entries from `from` on (all when
/// `None`), checked: whole varints, days in order and in range.
fn decode_series_from(v: &[u8], from: Option<Day>) -> Option<(Option<Day>, Entries)> {
    // An entry takes two bytes or more.
    let mut out = Vec::with_capacity(v.len() / 2);
    let first = visit_series(v, |day, count| {
        if from.is_none_or(|f| day >= f.0) {
            out.push((Day(day), count));
        }
    })?;
    Some((first, out))
}

/// Hands every (day, count) entry of a series value to `f`, in day
/// order, checking as it goes: whole varints, days in order and in range.
/// Returns the first day (`None` for an empty value), or `None` inside
/// when the value does not decode — after `f` saw the entries before the
/// damage.
#[inline]
fn visit_series(v: &[u8], mut f: impl FnMut(i32, u64)) -> Option<Option<Day>> {
    if v.is_empty() {
        return Some(None);
    }
    let mut at = 0;
    let start = get_day(v, &mut at)?.0;
    let mut day = start;
    let mut first_entry = true;
    while at < v.len() {
        let step = get_varint(v, &mut at)?;
        if first_entry != (step == 0) {
            return None;
        }
        first_entry = false;
        day = day.checked_add(i32::try_from(step).ok()?)?;
        let count = get_varint(v, &mut at)?;
        if !STORED_DAYS.contains(&day) {
            return None;
        }
        f(day, count);
    }
    if first_entry {
        return None; // a first day and no entry
    }
    Some(Some(Day(start)))
}

pub(super) fn encode_series(series: &BTreeMap<Day, u64>) -> Vec<u8> {
    let mut v = Vec::with_capacity(2 + series.len() * 3);
    let mut previous = None;
    for (day, count) in series {
        match previous {
            None => {
                put_day(&mut v, *day);
                put_varint(&mut v, 0);
            }
            Some(p) => put_varint(&mut v, (day.0 - p) as u64),
        }
        put_varint(&mut v, *count);
        previous = Some(day.0);
    }
    v
}

/// A series value as schema 1 and 2 kept it: (day key, count) pairs of
/// 4 + 8 bytes, in day order (read by an upgrade).
pub(super) fn decode_series_v2(v: &[u8]) -> Option<BTreeMap<Day, u64>> {
    const ENTRY: usize = 12;
    if v.len() % ENTRY != 0 {
        return None;
    }
    let mut out = BTreeMap::new();
    let mut previous = None;
    for c in v.chunks_exact(ENTRY) {
        let day = day_key(&c[..4])?;
        if previous.is_some_and(|p| p >= day) {
            return None;
        }
        previous = Some(day);
        out.insert(day, u64::from_be_bytes(c[4..].try_into().ok()?));
    }
    Some(out)
}

/// Parked (unmatched) events of one (source, day): id hash, actor length
/// (u16), actor bytes, repeated.
pub(super) fn decode_parked(v: &[u8]) -> Option<HashMap<u128, Box<str>>> {
    let mut out = HashMap::new();
    let mut rest = v;
    while !rest.is_empty() {
        let h = u128::from_be_bytes(rest.get(..16)?.try_into().ok()?);
        let len = u16::from_be_bytes(rest.get(16..18)?.try_into().ok()?) as usize;
        let actor = rest.get(18..18 + len)?;
        out.insert(h, String::from_utf8_lossy(actor).into());
        rest = &rest[18 + len..];
    }
    Some(out)
}

pub(super) fn encode_parked(parked: &HashMap<u128, Box<str>>) -> Vec<u8> {
    let mut entries: Vec<_> = parked.iter().collect();
    entries.sort_unstable_by_key(|(h, _)| **h);
    let mut v = Vec::new();
    for (h, actor) in entries {
        // Actors are e-mail addresses or handles; cap absurd ones.
        let bytes = &actor.as_bytes()[..actor.len().min(u16::MAX as usize)];
        v.extend_from_slice(&h.to_be_bytes());
        v.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        v.extend_from_slice(bytes);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_values_hold_every_channel_in_order_and_damage_is_refused() {
        let a = encode_series(&[(Day(20_000), 2)].into_iter().collect());
        let b = encode_series(&[(Day(20_001), 5), (Day(20_009), 1)].into_iter().collect());
        let channels = [
            ("eu:forum", "post", a.as_slice()),
            ("mail", "delivered", b.as_slice()),
            ("mail", "open", a.as_slice()),
        ];
        let v = encode_channels(channels);
        let back: Vec<(&str, &str, &[u8])> = decode_channels(&v)
            .unwrap()
            .into_iter()
            .map(|c| (c.source, c.kind, c.series))
            .collect();
        assert_eq!(back, channels);
        assert_eq!(decode_channels(&[]), Some(Vec::new()));
        let account = AccountId::from("acme");
        let series: Vec<Series> = stored_series(&account, b"bacme", sled::IVec::from(v.as_slice()))
            .unwrap()
            .into_iter()
            .map(|s| s.decoded(Some(Day(20_005))).unwrap())
            .collect();
        assert_eq!(series.len(), 3);
        assert_eq!(series[1].first, Some(Day(20_001)));
        assert_eq!(series[1].entries, vec![(Day(20_009), 1)]);
        // Cut anywhere, channels out of order or twice, a NUL or invalid
        // UTF-8 in a name, a damaged series inside: refused, never partly
        // read.
        for cut in 1..v.len() {
            let part = &v[..cut];
            let whole_channels = decode_channels(part).is_some_and(|c| !c.is_empty());
            assert!(
                decode_channels(part).is_none() || whole_channels,
                "cut at {cut}"
            );
        }
        assert_eq!(decode_channels(&v[..v.len() - 1]), None);
        let swapped = encode_channels([channels[1], channels[0]]);
        assert_eq!(decode_channels(&swapped), None);
        let twice = encode_channels([channels[0], channels[0]]);
        assert_eq!(decode_channels(&twice), None);
        assert_eq!(
            decode_channels(&encode_channels([("a\0b", "post", &a[..])])),
            None
        );
        let mut bad_utf8 = encode_channels([("ab", "post", &a[..])]);
        bad_utf8[1] = 0xff;
        assert_eq!(decode_channels(&bad_utf8), None);
        let broken = encode_channels([("forum", "post", &a[..a.len() - 1])]);
        assert!(decode_channels(&broken).is_some());
        let broken_series =
            stored_series(&account, b"bacme", sled::IVec::from(broken.as_slice())).unwrap();
        assert!(matches!(
            broken_series[0].clone().decoded(None),
            Err(StoreError::Damaged { .. })
        ));

        // As detection reads them: the entries on a timeline, by index
        // from its first day (days off it left out), a damaged series an
        // error naming the account's key.
        let stored = stored_series(&account, b"bacme", sled::IVec::from(v.as_slice())).unwrap();
        assert_eq!(stored.len(), 3);
        assert_eq!(stored[1].first, Some(Day(20_001)));
        let mut entries = Vec::new();
        stored[1].entries_on(Day(20_001), 9, &mut entries).unwrap();
        assert_eq!(entries, [(0, 5), (8, 1)]);
        entries.clear();
        stored[1].entries_on(Day(20_002), 8, &mut entries).unwrap();
        assert_eq!(entries, [(7, 1)]);
        let stored =
            stored_series(&account, b"bacme", sled::IVec::from(broken.as_slice())).unwrap();
        let err = stored[0]
            .entries_on(Day(20_000), 8, &mut entries)
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::Damaged { what, key } if what == SERIES && key == "bacme"),
            "{err:?}"
        );
    }

    #[test]
    fn series_values_round_trip_and_damage_is_refused() {
        let series: BTreeMap<Day, u64> = [
            (Day(-25_000), 1),
            (Day(0), 3),
            (Day(20_500), u64::MAX),
            (Day(20_501), 7),
        ]
        .into_iter()
        .collect();
        let v = encode_series(&series);
        assert!(v.len() < 25, "{} bytes", v.len());
        assert_eq!(decode_series(&v), Some(series.clone()));
        let (first, from) = decode_series_from(&v, Some(Day(1))).unwrap();
        assert_eq!(first, Some(Day(-25_000)));
        assert_eq!(from, vec![(Day(20_500), u64::MAX), (Day(20_501), 7)]);
        assert_eq!(decode_series(&[]), Some(BTreeMap::new()));
        // Cut short, a day repeated (a distance of 0), a first day alone.
        assert_eq!(decode_series(&v[..v.len() - 1]), None);
        let mut repeated = v.clone();
        repeated.extend_from_slice(&[0, 1]);
        assert_eq!(decode_series(&repeated), None);
        assert_eq!(decode_series(&v[..1]), None);
        assert_eq!(decode_series(b"\x01\xffnot"), None);
    }

    #[test]
    fn each_id_counts_once_where_an_account_first_claims_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = super::super::tests::open(dir.path());
        let acme = Registered {
            id: "acme",
            index: 0,
        };
        let beta = Registered {
            id: "beta",
            index: 1,
        };
        let unmatched = |actor| Owner::Unmatched { actor };
        type Counts = Vec<(Day, u64)>;
        let series = |store: &Store| -> Vec<(String, String, Counts)> {
            store
                .series()
                .map(|s| s.unwrap())
                .map(|s| (s.account.0, s.kind.0, s.entries))
                .collect()
        };
        // Counted before: the first batch.
        let mut first = Ingest::default();
        first
            .add("forum", "old", Owner::Registered(acme), "post", Day(5), 1)
            .unwrap();
        assert_eq!(store.commit(&first).unwrap().counted, 1);

        let mut i = Ingest::default();
        // "x": unmatched, then claimed by beta (counts there), then
        // repeats by acme and by an unknown actor.
        i.add("forum", "x", unmatched("who@nowhere"), "post", Day(10), 1)
            .unwrap();
        i.add_by("forum", "x", beta, "post", Day(11), 1, "bob")
            .unwrap();
        i.add("forum", "x", Owner::Registered(acme), "post", Day(12), 1)
            .unwrap();
        i.add("forum", "x", unmatched("other@nowhere"), "post", Day(13), 1)
            .unwrap();
        // "y": only ever unmatched: parked. "old": counted before, by any
        // owner and on any day. "x" of another source is another event.
        i.add("forum", "y", unmatched("who@nowhere"), "post", Day(10), 1)
            .unwrap();
        i.add("forum", "old", Owner::Registered(beta), "post", Day(20), 1)
            .unwrap();
        i.add("forum", "old", unmatched("who@nowhere"), "post", Day(20), 1)
            .unwrap();
        i.add_by("mail", "x", acme, "open", Day(10), 1, "").unwrap();
        let done = store.commit(&i).unwrap();
        assert_eq!((done.counted, done.duplicates, done.unmatched), (2, 4, 2));
        assert_eq!(
            series(&store),
            vec![
                ("acme".into(), "post".into(), vec![(Day(5), 1)]),
                ("acme".into(), "open".into(), vec![(Day(10), 1)]),
                ("beta".into(), "post".into(), vec![(Day(11), 1)]),
            ]
        );
        // Only "y" is parked: "x" found its account in the same batch.
        let parked = store.unmatched().unwrap();
        assert_eq!(parked.len(), 1, "{parked:?}");
        assert_eq!(
            (parked[0].actor.as_str(), parked[0].events),
            ("who@nowhere", 1)
        );
        // Who acted: bob on beta's forum; nobody named on acme's mail.
        assert_eq!(
            store.last_seen("beta", "forum", "post").unwrap(),
            Some((Day(11), "bob".to_string()))
        );
        assert_eq!(
            store.last_seen("acme", "mail", "open").unwrap(),
            Some((Day(10), String::new()))
        );
        let people = store.people_of(&AccountId("beta".into())).unwrap();
        assert_eq!(people.len(), 1);
        assert_eq!(people[0].people().keys().collect::<Vec<_>>(), ["bob"]);

        // "y" claimed later by an account: counted, and no longer parked.
        let mut later = Ingest::default();
        later
            .add("forum", "y", Owner::Account("acme"), "post", Day(10), 1)
            .unwrap();
        later
            .add("forum", "x", Owner::Account("acme"), "post", Day(10), 1)
            .unwrap();
        let done = store.commit(&later).unwrap();
        assert_eq!((done.counted, done.duplicates, done.unmatched), (1, 1, 0));
        assert!(store.unmatched().unwrap().is_empty());
    }

    #[test]
    fn who_acted_written_before_a_lost_batch_changes_nothing_when_the_batch_comes_again() {
        // Two batches with people and last seen, the second naming a
        // person and day the first had, and a later and an earlier day.
        let batch = |n: i32| {
            let mut i = Ingest::default();
            for (k, (account, actor, day)) in [
                ("acme", "ann", 10),
                ("acme", "bob", 11 + n),
                ("beta", "cy", 12 - n),
                ("acme", "ann", 10),
            ]
            .into_iter()
            .enumerate()
            {
                let a = Registered {
                    id: account,
                    index: usize::from(account == "beta"),
                };
                let id = format!("{n}-{k}");
                i.add_by("forum", &id, a, "post", Day(day), 1, actor)
                    .unwrap();
            }
            i
        };
        let backup = |store: &Store| {
            let mut out = Vec::new();
            store.backup_to(&mut out).unwrap();
            out
        };
        let clean = tempfile::tempdir().unwrap();
        let clean = super::super::tests::open(clean.path());
        let crashed = tempfile::tempdir().unwrap();
        let crashed = super::super::tests::open(crashed.path());
        for n in 0..2 {
            let i = batch(n);
            clean.commit(&i).unwrap();
            // What a crash after the who-acted writes and before the
            // counting batch leaves; then the same batch, whole, twice.
            let w = crashed.begin(0).unwrap();
            crashed.write_who_acted(&i, &w).unwrap();
            drop(w);
            if n == 0 {
                assert!(crashed.series().next().is_none(), "nothing counted");
                assert_eq!(crashed.people().count(), 2, "people written");
            }
            assert_eq!(crashed.commit(&i).unwrap().counted, 4);
            assert_eq!(crashed.commit(&i).unwrap().counted, 0);
            assert_eq!(backup(&crashed), backup(&clean), "batch {n}");
        }
        assert_eq!(
            crashed.last_seen("acme", "forum", "post").unwrap(),
            Some((Day(12), "bob".to_string()))
        );
        let people = crashed.people_of(&AccountId("acme".into())).unwrap();
        assert_eq!(
            people[0].people()["ann"],
            std::collections::BTreeSet::from([Day(10)])
        );
    }

    #[test]
    fn ranges_cut_at_any_ids_read_every_account_once_in_store_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = super::super::tests::open(dir.path());
        // Ids that are prefixes of each other, and bytes on both sides of
        // the separator's place.
        let ids = ["a", "a!", "a1", "a1!", "a10", "a2", "b", "é"];
        let mut ingest = Ingest::default();
        for (n, a) in ids.iter().enumerate() {
            for kind in ["post", "ticket"] {
                let id = format!("{a}-{kind}");
                ingest
                    .add_once("forum", &id, Owner::Account(a), kind, Day(n as i32))
                    .unwrap();
                ingest.seen_by(a, "forum", kind, Day(n as i32), "someone");
            }
        }
        store.commit(&ingest).unwrap();
        let keys = |s: Series| (s.account.0, s.kind.0);
        let all: Vec<_> = store.series().map(|s| keys(s.unwrap())).collect();
        assert_eq!(all.len(), 2 * ids.len());
        // Cuts at stored ids, between them and beyond them.
        let cuts = ["a", "a\u{1}", "a1", "a10", "a11", "a1!", "b", "c", "é"];
        for lo in 0..cuts.len() {
            for hi in lo..cuts.len() {
                let mut bounds = vec![None];
                bounds.extend(cuts[lo..=hi].iter().map(|c| Some(*c)));
                bounds.sort();
                bounds.push(None);
                let mut series = Vec::new();
                let mut people = Vec::new();
                for w in bounds.windows(2) {
                    let range = Accounts { lo: w[0], hi: w[1] };
                    series.extend(store.series_between(None, range).map(|s| keys(s.unwrap())));
                    people.extend(store.people_between(range).map(|p| {
                        let p = p.unwrap();
                        (p.account.0, p.kind.0)
                    }));
                }
                assert_eq!(series, all, "cut at {:?}", &cuts[lo..=hi]);
                assert_eq!(people, all, "cut at {:?}", &cuts[lo..=hi]);
            }
        }
    }
}
