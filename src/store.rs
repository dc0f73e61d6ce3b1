//! The store: every count lull trusts lives here, in sled.
//!
//! # Layout
//!
//! sled's `Batch` is atomic (also across a crash) within one tree, and
//! counting exactly once needs the dedupe marker and the count increment to
//! commit together. So everything an ingest writes lives in one tree,
//! `activity`, split into key spaces by a one-byte prefix:
//!
//! | prefix | key | value | what |
//! | --- | --- | --- | --- |
//! | `d` | source · day | sorted 128-bit id hashes | dedupe markers: these (source, id) were counted |
//! | `b` | account · source · kind | sorted (day, count) pairs | an account's daily series for one channel |
//! | `c` | source · day | u8 | coverage: lull has data for this source and day |
//! | `k` | source | bytes | a source's cursor (where its next poll starts) |
//! | `u` | source · day | (id hash, actor) entries | events whose actor matched no account |
//! | `o` | source · id hash | day (4 bytes) | markers of events counted once *whatever their day* |
//! | `l` | account · source · kind | day · actor | who was seen last on the channel (for the alert e-mail) |
//!
//! `·` is a 0 byte (names may not contain one); days are 4 big-endian bytes
//! that sort in time order. Detection has two trees of its own, written
//! together in one sled transaction ([`Store::record_detection`]):
//! `alerts` holds each account's state (`s` · account → the detector's
//! JSON), the last judged day, snoozes (`z` · account) and the sources
//! reported stale (`t` · source → since); `outbox` holds the notices
//! waiting for delivery, keyed day · account · kind, so deciding the same
//! notice twice stores it once. `mail` is the delivery record: one entry
//! per message (by Message-ID) that was sent, rejected, or is being
//! retried; a message leaves the outbox and enters `mail` as sent in one
//! transaction ([`Store::record_mail`]). `meta` holds the schema version.
//!
//! Markers and counts are grouped into few large values on purpose: sled
//! manages about 70,000 random-key inserts a second on this class of
//! machine, so one key per event could never import a million events a
//! second, while a batch touches only as many values as it has distinct
//! (source, day) and (account, channel) pairs. An event's id is kept as its
//! 128-bit xxh3 hash (a collision among 10^12 ids has odds below 10^-14);
//! an event is identified by (source, id), and its day is that of its
//! timestamp. Posts and tickets keep their timestamp fixed, so the
//! per-day markers suffice. An e-mail open is different: "the open of
//! message M by recipient R" is one event, but a later poll may see a later
//! open of the same pair, on another day. Such events are added with
//! [`Ingest::add_once`] and get a marker of their own (`o`), looked up by
//! id alone; they are few (one per message and recipient) next to what an
//! import carries.
//!
//! # Durability
//!
//! [`Store::commit`] applies one atomic batch and then flushes, so when it
//! returns the batch is on disk. A crash before that leaves none of it.
//! Writers are serialised by a mutex (increments read, add, write).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::config::StoreConfig;
use crate::types::{AccountId, Day, Kind, SourceName};

/// Bumped whenever the on-disk layout changes incompatibly.
pub const SCHEMA_VERSION: u32 = 1;

const TREE_ACTIVITY: &str = "activity";
const TREE_META: &str = "meta";
const TREE_ALERTS: &str = "alerts";
const TREE_OUTBOX: &str = "outbox";
const TREE_MAIL: &str = "mail";
const META_SCHEMA: &[u8] = b"schema_version";

const P_DEDUPE: u8 = b'd';
const P_BUCKET: u8 = b'b';
const P_COVERAGE: u8 = b'c';
const P_CURSOR: u8 = b'k';
const P_UNMATCHED: u8 = b'u';
const P_ONCE: u8 = b'o';
const P_LAST: u8 = b'l';
const SEP: u8 = 0;
/// `alerts` tree: per-account detection state, and the last judged day.
const P_STATE: u8 = b's';
/// `alerts` tree: an account's snooze (JSON, owned by the alert module).
const P_SNOOZE: u8 = b'z';
/// `alerts` tree: a source reported stale, and the last day it had data.
const P_STALE: u8 = b't';
const ALERTS_LAST_DAY: &[u8] = b"last_day";

/// Coverage flags: who said the day is covered.
pub const COVERED_BY_POLL: u8 = 1;
pub const COVERED_BY_IMPORT: u8 = 2;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "the store {path} is locked by another process (is another `lull` running, e.g. the service?); stop it or point this command at another store"
    )]
    Locked { path: PathBuf },
    #[error(
        "the store {path} is corrupt ({detail}); restore it: move it aside, then `lull import` your last `lull export` backup into a fresh store"
    )]
    Corrupt { path: PathBuf, detail: String },
    #[error(
        "the store {path} has schema version {found}, this lull understands version {expected}; use the lull release that wrote it to `lull export`, then import into a fresh store"
    )]
    Version {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
    #[error("cannot open the store {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: sled::Error,
    },
    #[error("store error while {doing}: {source}")]
    Sled {
        doing: &'static str,
        #[source]
        source: sled::Error,
    },
    #[error("a name may not contain a 0 byte: {0:?}")]
    NulInName(String),
}

fn sled_err(doing: &'static str) -> impl FnOnce(sled::Error) -> StoreError {
    move |source| StoreError::Sled { doing, source }
}

/// Who an event belongs to, as given to [`Ingest::add`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner<'a> {
    Account(&'a str),
    /// The actor resolved to no account; kept so the mapping can be fixed.
    Unmatched {
        actor: &'a str,
    },
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
    /// Deduplicated by id alone, across days (see [`Ingest::add_once`]).
    once: bool,
}

/// Strings seen in a batch, stored once each.
#[derive(Debug, Default)]
struct Interner {
    index: HashMap<Box<str>, u32>,
    names: Vec<Box<str>>,
}

impl Interner {
    fn intern(&mut self, s: &str) -> Result<u32, StoreError> {
        if let Some(&i) = self.index.get(s) {
            return Ok(i);
        }
        check_name(s)?;
        let i = self.names.len() as u32;
        self.names.push(s.into());
        self.index.insert(s.into(), i);
        Ok(i)
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
    events: Vec<Event>,
    /// Days to mark covered, with who covered them.
    pub coverage: Vec<(SourceName, Day, u8)>,
    /// Cursors to advance; they move only together with their activities.
    pub cursors: Vec<(SourceName, Vec<u8>)>,
    /// (account, source, kind) → the latest day and identity seen.
    last_seen: HashMap<(u32, u32, u32), (Day, Box<str>)>,
}

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
            Owner::Unmatched { actor } => EventOwner::Unmatched(actor.into()),
        };
        self.events.push(Event {
            source: self.sources.intern(source)?,
            kind: self.kinds.intern(kind)?,
            owner,
            id: id_hash(id),
            day,
            count,
            once: false,
        });
        Ok(())
    }

    /// Adds one activity that is counted once per (`source`, `id`) even if
    /// it shows up again with a different day, like "recipient R opened
    /// message M": the first day it is stored with is the one that counts.
    pub fn add_once(
        &mut self,
        source: &str,
        id: &str,
        owner: Owner<'_>,
        kind: &str,
        day: Day,
    ) -> Result<(), StoreError> {
        self.add(source, id, owner, kind, day, 1)?;
        if let Some(e) = self.events.last_mut() {
            e.once = true;
        }
        Ok(())
    }

    /// Notes that `actor` (a handle or address) was the account's identity
    /// on `day` for this channel: the alert e-mail's "last activity by".
    /// Names that cannot be keys are ignored (the event itself reports them).
    pub fn seen_by(&mut self, account: &str, source: &str, kind: &str, day: Day, actor: &str) {
        let (Ok(a), Ok(s), Ok(k)) = (
            self.accounts.intern(account),
            self.sources.intern(source),
            self.kinds.intern(kind),
        ) else {
            return;
        };
        match self.last_seen.get_mut(&(a, s, k)) {
            Some(last) if last.0 > day => {}
            Some(last) => *last = (day, actor.into()),
            None => {
                self.last_seen.insert((a, s, k), (day, actor.into()));
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

/// The dedupe identity of an event id.
fn id_hash(id: &str) -> u128 {
    xxhash_rust::xxh3::xxh3_128(id.as_bytes())
}

/// What a commit did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
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
    pub entries: Vec<(Day, u64)>,
}

/// Detection state per account, as the detector serialised it.
pub type SavedStates = HashMap<AccountId, Vec<u8>>;

/// A notice waiting in the outbox for delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedNotice {
    pub day: Day,
    pub account: AccountId,
    /// `silent`, `reminder` or `recovered`.
    pub kind: String,
    /// The notice as the detector wrote it (JSON).
    pub body: Vec<u8>,
}

impl QueuedNotice {
    /// The outbox key: day · account · 0 · kind.
    fn key(&self) -> Result<Vec<u8>, StoreError> {
        let mut k = self.day.to_key().to_vec();
        k.extend_from_slice(check_name(self.account.as_str())?);
        k.push(SEP);
        k.extend_from_slice(check_name(&self.kind)?);
        Ok(k)
    }
}

/// Unmatched actors of one source.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UnmatchedActor {
    pub source: SourceName,
    pub actor: String,
    pub events: u64,
    pub last_seen: Day,
}

/// The store. sled stays behind this type.
pub struct Store {
    path: PathBuf,
    db: sled::Db,
    activity: sled::Tree,
    alerts: sled::Tree,
    outbox: sled::Tree,
    mail: sled::Tree,
    write: Mutex<()>,
}

impl Store {
    /// Opens (or creates) the store, checking its schema version.
    pub fn open(cfg: &StoreConfig) -> Result<Store, StoreError> {
        let path = cfg.path.clone();
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| StoreError::Open {
                path: path.clone(),
                source: sled::Error::Io(e),
            })?;
        }
        let db = sled::Config::new()
            .path(&path)
            .cache_capacity(cfg.cache_bytes)
            .open()
            .map_err(|e| open_error(&path, e))?;
        let tree = |name: &str| db.open_tree(name).map_err(|e| open_error(&path, e));
        let meta = tree(TREE_META)?;
        let activity = tree(TREE_ACTIVITY)?;
        let alerts = tree(TREE_ALERTS)?;
        let outbox = tree(TREE_OUTBOX)?;
        let mail = tree(TREE_MAIL)?;
        match meta.get(META_SCHEMA).map_err(|e| open_error(&path, e))? {
            Some(v) => {
                let found = <[u8; 4]>::try_from(v.as_ref())
                    .map(u32::from_be_bytes)
                    .unwrap_or(0);
                if found != SCHEMA_VERSION {
                    return Err(StoreError::Version {
                        path,
                        found,
                        expected: SCHEMA_VERSION,
                    });
                }
            }
            None => {
                if !activity.is_empty() {
                    return Err(StoreError::Version {
                        path,
                        found: 0,
                        expected: SCHEMA_VERSION,
                    });
                }
                meta.insert(META_SCHEMA, &SCHEMA_VERSION.to_be_bytes())
                    .map_err(|e| open_error(&path, e))?;
                db.flush().map_err(|e| open_error(&path, e))?;
            }
        }
        Ok(Store {
            path,
            db,
            activity,
            alerts,
            outbox,
            mail,
            write: Mutex::new(()),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The last day detection recorded, if any.
    pub fn last_judged_day(&self) -> Result<Option<Day>, StoreError> {
        Ok(self
            .alerts
            .get(ALERTS_LAST_DAY)
            .map_err(sled_err("reading detection state"))?
            .and_then(|v| day_key(&v)))
    }

    /// A cheap read that proves the store answers (`/healthz`).
    pub fn check(&self) -> Result<(), StoreError> {
        self.alerts
            .get(b"health")
            .map_err(sled_err("reading for a health check"))?;
        Ok(())
    }

    /// Counts a batch exactly once and makes it durable.
    ///
    /// Each activity is checked against the dedupe markers of its (source,
    /// day) and against the rest of this batch; new ones get their marker
    /// and their count in the same atomic batch, together with the coverage
    /// and cursors; then the store is flushed. When this returns `Ok`, all
    /// of it is on disk; if the process dies before, none of it is.
    pub fn commit(&self, ingest: &Ingest) -> Result<Committed, StoreError> {
        let _guard = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let mut batch = sled::Batch::default();
        let mut stats = Committed::default();

        // Events of one (source, day), in arrival order: an id always falls
        // in the same group, so groups are independent (once-events aside:
        // groups go in day order, so the earliest day of such an id wins).
        let mut groups: BTreeMap<(u32, Day), Vec<usize>> = BTreeMap::new();
        for (i, e) in ingest.events.iter().enumerate() {
            groups.entry((e.source, e.day)).or_default().push(i);
        }
        // (account, source, kind) -> day -> added count.
        let mut increments: HashMap<(u32, u32, u32), BTreeMap<Day, u64>> = HashMap::new();
        // Once-markers written by this batch (an id may come on two days).
        let mut once_new: HashSet<Vec<u8>> = HashSet::new();
        for ((source, day), members) in groups {
            let source_name = ingest.sources.name(source);
            let dkey = key2(P_DEDUPE, source_name, &day.to_key())?;
            let old = self.get(&dkey, "reading dedupe markers")?;
            let old: &[u8] = old.as_deref().unwrap_or(&[]);
            let ukey = key2(P_UNMATCHED, source_name, &day.to_key())?;
            let parked_raw = self.get(&ukey, "reading unmatched events")?;
            let mut parked = decode_parked(parked_raw.as_deref().unwrap_or(&[]));
            let mut parked_changed = false;
            let mut new: Vec<u128> = Vec::new();
            let mut new_set: HashSet<u128> = HashSet::new();
            for i in members {
                let e = &ingest.events[i];
                let seen = if e.once {
                    let okey = once_key(source_name, e.id)?;
                    once_new.contains(&okey) || self.get(&okey, "reading once-markers")?.is_some()
                } else {
                    contains_hash(old, e.id) || new_set.contains(&e.id)
                };
                if seen {
                    stats.duplicates += 1;
                    continue;
                }
                match &e.owner {
                    EventOwner::Account(a) => {
                        if e.once {
                            let okey = once_key(source_name, e.id)?;
                            batch.insert(okey.as_slice(), &day.to_key());
                            once_new.insert(okey);
                        } else {
                            new_set.insert(e.id);
                            new.push(e.id);
                        }
                        *increments
                            .entry((*a, e.source, e.kind))
                            .or_default()
                            .entry(day)
                            .or_insert(0) += e.count;
                        // It may have been parked as unmatched by an earlier
                        // import, before the accounts file knew its actor.
                        parked_changed |= parked.remove(&e.id).is_some();
                        stats.counted += 1;
                    }
                    EventOwner::Unmatched(actor) => {
                        // No marker: if a later line (or import) maps this
                        // event to an account, it is counted then.
                        if parked.get(&e.id).map(|a| a.as_ref()) != Some(actor.as_ref()) {
                            parked.insert(e.id, actor.clone());
                            parked_changed = true;
                        }
                        stats.unmatched += 1;
                    }
                }
            }
            if !new.is_empty() {
                batch.insert(dkey, merge_hashes(old, new));
            }
            if parked_changed {
                if parked.is_empty() {
                    batch.remove(ukey);
                } else {
                    batch.insert(ukey, encode_parked(&parked));
                }
            }
        }
        for ((account, source, kind), days) in increments {
            let key = series_key(
                ingest.accounts.name(account),
                ingest.sources.name(source),
                ingest.kinds.name(kind),
            )?;
            let old = self.get(&key, "reading a series")?;
            let mut series = decode_series(old.as_deref().unwrap_or(&[]));
            for (day, add) in days {
                let c = series.entry(day).or_insert(0);
                *c = c.saturating_add(add);
            }
            batch.insert(key, encode_series(&series));
        }
        for ((account, source, kind), (day, actor)) in &ingest.last_seen {
            let key = channel_key(
                P_LAST,
                ingest.accounts.name(*account),
                ingest.sources.name(*source),
                ingest.kinds.name(*kind),
            )?;
            let newer = match self.get(&key, "reading last seen")? {
                Some(old) => old.get(..4).and_then(day_key).is_none_or(|d| d <= *day),
                None => true,
            };
            if newer {
                let mut v = day.to_key().to_vec();
                v.extend_from_slice(actor.as_bytes());
                batch.insert(key, v);
            }
        }
        for (source, day, flag) in &ingest.coverage {
            let key = key2(P_COVERAGE, source.as_str(), &day.to_key())?;
            let old = self
                .get(&key, "reading coverage")?
                .and_then(|v| v.first().copied())
                .unwrap_or(0);
            if old & flag != *flag {
                batch.insert(key, &[old | flag]);
            }
        }
        for (source, cursor) in &ingest.cursors {
            batch.insert(key1(P_CURSOR, source.as_str())?, cursor.as_slice());
        }
        self.activity
            .apply_batch(batch)
            .map_err(sled_err("writing a batch"))?;
        self.flush()?;
        Ok(stats)
    }

    fn get(&self, key: &[u8], doing: &'static str) -> Result<Option<sled::IVec>, StoreError> {
        self.activity.get(key).map_err(sled_err(doing))
    }

    /// Makes everything written so far durable.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map_err(sled_err("flushing to disk"))?;
        Ok(())
    }

    /// All buckets, ordered by account, source, kind, day; days outside
    /// `[from, to]` (when given) are skipped.
    pub fn buckets(
        &self,
        from: Option<Day>,
        to: Option<Day>,
    ) -> impl Iterator<Item = Result<Bucket, StoreError>> + '_ {
        self.scan_buckets(vec![P_BUCKET], from, to)
    }

    /// The buckets of one account, ordered by source, kind, day.
    pub fn account_buckets(
        &self,
        account: &AccountId,
        from: Option<Day>,
        to: Option<Day>,
    ) -> impl Iterator<Item = Result<Bucket, StoreError>> + '_ {
        let mut prefix = vec![P_BUCKET];
        prefix.extend_from_slice(account.as_str().as_bytes());
        prefix.push(SEP);
        self.scan_buckets(prefix, from, to)
    }

    fn scan_buckets(
        &self,
        prefix: Vec<u8>,
        from: Option<Day>,
        to: Option<Day>,
    ) -> impl Iterator<Item = Result<Bucket, StoreError>> + '_ {
        self.activity.scan_prefix(prefix).flat_map(move |r| {
            let rows: Vec<Result<Bucket, StoreError>> = match r {
                Err(e) => vec![Err(sled_err("reading buckets")(e))],
                Ok((k, v)) => match decode_series_key(&k) {
                    None => Vec::new(),
                    Some((account, source, kind)) => decode_series(&v)
                        .into_iter()
                        .filter(|(day, _)| {
                            from.is_none_or(|f| *day >= f) && to.is_none_or(|t| *day <= t)
                        })
                        .map(|(day, count)| {
                            Ok(Bucket {
                                account: account.clone(),
                                source: source.clone(),
                                kind: kind.clone(),
                                day,
                                count,
                            })
                        })
                        .collect(),
                },
            };
            rows
        })
    }

    /// Every channel series (account, source, kind) with its sparse
    /// (day, count) entries in day order; ordered by account.
    pub fn series(&self) -> impl Iterator<Item = Result<Series, StoreError>> + '_ {
        self.activity
            .scan_prefix([P_BUCKET])
            .filter_map(|r| match r {
                Err(e) => Some(Err(sled_err("reading series")(e))),
                Ok((k, v)) => decode_series_key(&k).map(|(account, source, kind)| {
                    Ok(Series {
                        account,
                        source,
                        kind,
                        entries: decode_series(&v).into_iter().collect(),
                    })
                }),
            })
    }

    /// The first covered day of any source.
    pub fn first_covered_day(&self) -> Result<Option<Day>, StoreError> {
        let mut first: Option<Day> = None;
        for source in self.sources()? {
            let prefix = key1(P_COVERAGE, source.as_str())?;
            if let Some(r) = self.activity.scan_prefix(&prefix).next() {
                let (k, _) = r.map_err(sled_err("reading coverage"))?;
                if let Some(day) = k.get(prefix.len()..).and_then(day_key) {
                    first = Some(first.map_or(day, |f| f.min(day)));
                }
            }
        }
        Ok(first)
    }

    /// The last day detection recorded, and each account's saved state
    /// (opaque bytes owned by the detector).
    pub fn detection_state(&self) -> Result<(Option<Day>, SavedStates), StoreError> {
        let last = self.last_judged_day()?;
        let mut states = HashMap::new();
        for r in self.alerts.scan_prefix([P_STATE]) {
            let (k, v) = r.map_err(sled_err("reading detection state"))?;
            let account = String::from_utf8_lossy(&k[1..]).into_owned();
            states.insert(AccountId(account), v.to_vec());
        }
        Ok((last, states))
    }

    /// Records one detection day atomically: the day, the account states
    /// that changed, the notices to deliver (queued in the outbox) and the
    /// sources that went stale (`Some(last day with data)`) or are fresh
    /// again (`None`). A notice's key is (day, account, kind), so recording
    /// the same day twice queues nothing twice. When this returns, all of
    /// it is on disk.
    pub fn record_detection(
        &self,
        day: Day,
        states: &[(AccountId, Vec<u8>)],
        notices: &[QueuedNotice],
        stale: &[(SourceName, Option<Day>)],
    ) -> Result<(), StoreError> {
        use sled::Transactional;
        let _guard = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let mut alert_keys: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::new();
        alert_keys.push((ALERTS_LAST_DAY.to_vec(), Some(day.to_key().to_vec())));
        for (account, bytes) in states {
            alert_keys.push((key_bare(P_STATE, account.as_str())?, Some(bytes.clone())));
        }
        for (source, since) in stale {
            let k = key_bare(P_STALE, source.as_str())?;
            alert_keys.push((k, since.map(|d| d.to_key().to_vec())));
        }
        let mut notice_keys = Vec::with_capacity(notices.len());
        for n in notices {
            notice_keys.push((n.key()?, n.body.as_slice()));
        }
        (&self.alerts, &self.outbox)
            .transaction(|(alerts, outbox)| {
                for (k, v) in &alert_keys {
                    match v {
                        Some(v) => alerts.insert(k.as_slice(), v.as_slice())?,
                        None => alerts.remove(k.as_slice())?,
                    };
                }
                for (k, v) in &notice_keys {
                    outbox.insert(k.as_slice(), *v)?;
                }
                Ok::<(), sled::transaction::ConflictableTransactionError<Infallible>>(())
            })
            .map_err(transaction_err("recording detection"))?;
        self.db.flush().map_err(sled_err("flushing to disk"))?;
        Ok(())
    }

    /// Queued notices, oldest day first: (day, account, kind, body).
    pub fn queued(&self) -> Result<Vec<QueuedNotice>, StoreError> {
        let mut out = Vec::new();
        for r in self.outbox.iter() {
            let (k, v) = r.map_err(sled_err("reading the outbox"))?;
            let Some(day) = k.get(..4).and_then(day_key) else {
                continue;
            };
            let mut parts = k[4..].splitn(2, |&b| b == SEP);
            let account = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
            let kind = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
            out.push(QueuedNotice {
                day,
                account: AccountId(account),
                kind,
                body: v.to_vec(),
            });
        }
        Ok(out)
    }

    /// Records what became of one message, atomically: the record under
    /// its Message-ID in `mail`, and its notices out of the outbox (none
    /// while it is only being retried). Flushed before returning: called
    /// right after the SMTP server accepted, this is the whole window in
    /// which a crash could send the message again.
    pub fn record_mail(
        &self,
        message_id: &str,
        record: &[u8],
        done: &[QueuedNotice],
    ) -> Result<(), StoreError> {
        use sled::Transactional;
        let _guard = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let keys = done
            .iter()
            .map(QueuedNotice::key)
            .collect::<Result<Vec<_>, _>>()?;
        (&self.outbox, &self.mail)
            .transaction(|(outbox, mail)| {
                for k in &keys {
                    outbox.remove(k.as_slice())?;
                }
                mail.insert(message_id.as_bytes(), record)?;
                Ok::<(), sled::transaction::ConflictableTransactionError<Infallible>>(())
            })
            .map_err(transaction_err("recording a delivery"))?;
        self.db.flush().map_err(sled_err("flushing to disk"))?;
        Ok(())
    }

    /// Every delivery record: (Message-ID, record).
    pub fn mail(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let mut out = Vec::new();
        for r in self.mail.iter() {
            let (k, v) = r.map_err(sled_err("reading the delivery record"))?;
            out.push((String::from_utf8_lossy(&k).into_owned(), v.to_vec()));
        }
        Ok(out)
    }

    /// The delivery record of one message.
    pub fn mail_record(&self, message_id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .mail
            .get(message_id.as_bytes())
            .map_err(sled_err("reading the delivery record"))?
            .map(|v| v.to_vec()))
    }

    /// Sets (`Some`) or lifts (`None`) an account's snooze; flushed.
    pub fn set_snooze(&self, account: &AccountId, value: Option<&[u8]>) -> Result<(), StoreError> {
        let _guard = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let k = key_bare(P_SNOOZE, account.as_str())?;
        match value {
            Some(v) => self.alerts.insert(k, v).map(drop),
            None => self.alerts.remove(k).map(drop),
        }
        .map_err(sled_err("recording a snooze"))?;
        self.db.flush().map_err(sled_err("flushing to disk"))?;
        Ok(())
    }

    /// Every snoozed account and its snooze.
    pub fn snoozes(&self) -> Result<Vec<(AccountId, Vec<u8>)>, StoreError> {
        let mut out = Vec::new();
        for r in self.alerts.scan_prefix([P_SNOOZE]) {
            let (k, v) = r.map_err(sled_err("reading snoozes"))?;
            out.push((
                AccountId(String::from_utf8_lossy(&k[1..]).into_owned()),
                v.to_vec(),
            ));
        }
        Ok(out)
    }

    /// Sources reported stale, with the last day each had data.
    pub fn stale_sources(&self) -> Result<BTreeMap<SourceName, Day>, StoreError> {
        let mut out = BTreeMap::new();
        for r in self.alerts.scan_prefix([P_STALE]) {
            let (k, v) = r.map_err(sled_err("reading stale sources"))?;
            if let Some(day) = day_key(&v) {
                out.insert(
                    SourceName(String::from_utf8_lossy(&k[1..]).into_owned()),
                    day,
                );
            }
        }
        Ok(out)
    }

    /// The latest day and identity seen on an account's channel.
    pub fn last_seen(
        &self,
        account: &str,
        source: &str,
        kind: &str,
    ) -> Result<Option<(Day, String)>, StoreError> {
        let key = channel_key(P_LAST, account, source, kind)?;
        Ok(self.get(&key, "reading last seen")?.and_then(|v| {
            let day = v.get(..4).and_then(day_key)?;
            Some((day, String::from_utf8_lossy(&v[4..]).into_owned()))
        }))
    }

    /// The days `source` is covered.
    pub fn coverage(&self, source: &SourceName) -> Result<BTreeSet<Day>, StoreError> {
        let prefix = key1(P_COVERAGE, source.as_str())?;
        let mut out = BTreeSet::new();
        for r in self.activity.scan_prefix(&prefix) {
            let (k, _) = r.map_err(sled_err("reading coverage"))?;
            if let Some(day) = k.get(prefix.len()..).and_then(day_key) {
                out.insert(day);
            }
        }
        Ok(out)
    }

    /// Every source that has coverage or buckets.
    pub fn sources(&self) -> Result<BTreeSet<SourceName>, StoreError> {
        let mut out = BTreeSet::new();
        let mut next = vec![P_COVERAGE];
        // Skip from one source to the next instead of walking every day.
        loop {
            let Some(r) = self.activity.range(next.clone()..).next() else {
                break;
            };
            let (k, _) = r.map_err(sled_err("listing sources"))?;
            if k.first() != Some(&P_COVERAGE) {
                break;
            }
            let name = &k[1..k.len().saturating_sub(5)];
            out.insert(SourceName(String::from_utf8_lossy(name).into_owned()));
            next = key1(P_COVERAGE, &String::from_utf8_lossy(name))?;
            next.push(0xff);
        }
        Ok(out)
    }

    /// The cursor a source's next poll starts from.
    pub fn cursor(&self, source: &SourceName) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .activity
            .get(key1(P_CURSOR, source.as_str())?)
            .map_err(sled_err("reading a cursor"))?
            .map(|v| v.to_vec()))
    }

    /// Actors that matched no account, most events first.
    pub fn unmatched(&self) -> Result<Vec<UnmatchedActor>, StoreError> {
        let mut agg: HashMap<(String, String), (u64, Day)> = HashMap::new();
        for r in self.activity.scan_prefix([P_UNMATCHED]) {
            let (k, v) = r.map_err(sled_err("reading unmatched actors"))?;
            let Some(name) = k.get(1..k.len().saturating_sub(5)) else {
                continue;
            };
            let Some(day) = k.get(k.len() - 4..).and_then(day_key) else {
                continue;
            };
            let source = String::from_utf8_lossy(name).into_owned();
            for actor in decode_parked(&v).into_values() {
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

fn open_error(path: &Path, e: sled::Error) -> StoreError {
    match e {
        sled::Error::Io(ref io) if io.to_string().contains("could not acquire lock") => {
            StoreError::Locked {
                path: path.to_path_buf(),
            }
        }
        sled::Error::Corruption { at, .. } => StoreError::Corrupt {
            path: path.to_path_buf(),
            detail: match at {
                Some(at) => format!("bad data at {at:?}"),
                None => "bad data".to_string(),
            },
        },
        other => StoreError::Open {
            path: path.to_path_buf(),
            source: other,
        },
    }
}

/// A day from its 4-byte key form (`None` if the slice is not 4 bytes).
fn day_key(bytes: &[u8]) -> Option<Day> {
    <[u8; 4]>::try_from(bytes).ok().map(Day::from_key)
}

fn check_name(s: &str) -> Result<&[u8], StoreError> {
    if s.as_bytes().contains(&SEP) {
        Err(StoreError::NulInName(s.to_string()))
    } else {
        Ok(s.as_bytes())
    }
}

/// prefix · name, without a separator (a key space of single names).
fn key_bare(prefix: u8, a: &str) -> Result<Vec<u8>, StoreError> {
    let a = check_name(a)?;
    let mut k = Vec::with_capacity(1 + a.len());
    k.push(prefix);
    k.extend_from_slice(a);
    Ok(k)
}

fn transaction_err(
    doing: &'static str,
) -> impl FnOnce(sled::transaction::TransactionError<Infallible>) -> StoreError {
    move |e| match e {
        sled::transaction::TransactionError::Storage(e) => sled_err(doing)(e),
        sled::transaction::TransactionError::Abort(never) => match never {},
    }
}

fn key1(prefix: u8, a: &str) -> Result<Vec<u8>, StoreError> {
    let a = check_name(a)?;
    let mut k = Vec::with_capacity(2 + a.len());
    k.push(prefix);
    k.extend_from_slice(a);
    k.push(SEP);
    Ok(k)
}

fn key2(prefix: u8, a: &str, rest: &[u8]) -> Result<Vec<u8>, StoreError> {
    let mut k = key1(prefix, a)?;
    k.extend_from_slice(rest);
    Ok(k)
}

fn once_key(source: &str, id: u128) -> Result<Vec<u8>, StoreError> {
    key2(P_ONCE, source, &id.to_be_bytes())
}

fn series_key(account: &str, source: &str, kind: &str) -> Result<Vec<u8>, StoreError> {
    channel_key(P_BUCKET, account, source, kind)
}

/// prefix · account · source · kind: a key about one account's channel.
fn channel_key(prefix: u8, account: &str, source: &str, kind: &str) -> Result<Vec<u8>, StoreError> {
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

fn decode_series_key(k: &[u8]) -> Option<(AccountId, SourceName, Kind)> {
    let mut parts = k.get(1..)?.split(|&b| b == SEP);
    let account = String::from_utf8(parts.next()?.to_vec()).ok()?;
    let source = String::from_utf8(parts.next()?.to_vec()).ok()?;
    let kind = String::from_utf8(parts.next()?.to_vec()).ok()?;
    Some((AccountId(account), SourceName(source), Kind(kind)))
}

/// A series value: (day key, count) pairs of 4 + 8 bytes, in day order.
const SERIES_ENTRY: usize = 12;

fn decode_series(v: &[u8]) -> BTreeMap<Day, u64> {
    v.chunks_exact(SERIES_ENTRY)
        .map(|c| {
            let day = Day::from_key([c[0], c[1], c[2], c[3]]);
            let mut n = [0u8; 8];
            n.copy_from_slice(&c[4..]);
            (day, u64::from_be_bytes(n))
        })
        .collect()
}

fn encode_series(series: &BTreeMap<Day, u64>) -> Vec<u8> {
    let mut v = Vec::with_capacity(series.len() * SERIES_ENTRY);
    for (day, count) in series {
        v.extend_from_slice(&day.to_key());
        v.extend_from_slice(&count.to_be_bytes());
    }
    v
}

/// Binary search in a sorted array of 16-byte big-endian hashes.
fn contains_hash(sorted: &[u8], h: u128) -> bool {
    let n = sorted.len() / 16;
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = (lo + hi) / 2;
        let mut b = [0u8; 16];
        b.copy_from_slice(&sorted[mid * 16..mid * 16 + 16]);
        match u128::from_be_bytes(b).cmp(&h) {
            std::cmp::Ordering::Less => lo = mid + 1,
            std::cmp::Ordering::Greater => hi = mid,
            std::cmp::Ordering::Equal => return true,
        }
    }
    false
}

/// Merges new (unsorted, distinct, absent from `old`) hashes into `old`.
fn merge_hashes(old: &[u8], mut new: Vec<u128>) -> Vec<u8> {
    new.sort_unstable();
    let mut out = Vec::with_capacity(old.len() + new.len() * 16);
    let mut new = new.into_iter().peekable();
    for c in old.chunks_exact(16) {
        let mut b = [0u8; 16];
        b.copy_from_slice(c);
        let h = u128::from_be_bytes(b);
        while let Some(n) = new.next_if(|n| *n < h) {
            out.extend_from_slice(&n.to_be_bytes());
        }
        out.extend_from_slice(c);
    }
    for n in new {
        out.extend_from_slice(&n.to_be_bytes());
    }
    out
}

/// Parked (unmatched) events of one (source, day): id hash, actor length
/// (u16), actor bytes, repeated.
fn decode_parked(v: &[u8]) -> HashMap<u128, Box<str>> {
    let mut out = HashMap::new();
    let mut rest = v;
    while rest.len() >= 18 {
        let mut h = [0u8; 16];
        h.copy_from_slice(&rest[..16]);
        let len = u16::from_be_bytes([rest[16], rest[17]]) as usize;
        let Some(actor) = rest.get(18..18 + len) else {
            break;
        };
        out.insert(
            u128::from_be_bytes(h),
            String::from_utf8_lossy(actor).into(),
        );
        rest = &rest[18 + len..];
    }
    out
}

fn encode_parked(parked: &HashMap<u128, Box<str>>) -> Vec<u8> {
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

    fn open(dir: &Path) -> Store {
        Store::open(&StoreConfig {
            path: dir.join("db"),
            cache_bytes: 8 << 20,
        })
        .unwrap()
    }

    /// (id, owner, day) triples into one ingest on source "forum".
    fn ingest(events: &[(&str, Owner<'_>, i32)]) -> Ingest {
        let mut i = Ingest::default();
        for (id, owner, day) in events {
            i.add("forum", id, *owner, "post", Day(*day), 1).unwrap();
        }
        i
    }

    fn all(s: &Store) -> Vec<Bucket> {
        s.buckets(None, None).collect::<Result<_, _>>().unwrap()
    }

    const ACME: Owner<'static> = Owner::Account("acme");
    const NOBODY: Owner<'static> = Owner::Unmatched { actor: "bob@x.com" };

    #[test]
    fn a_repeated_id_counts_once_within_and_across_batches() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        let batch = ingest(&[
            ("1", ACME, 10),
            ("1", ACME, 10),
            ("2", ACME, 10),
            ("3", ACME, 11),
        ]);
        assert_eq!(
            s.commit(&batch).unwrap(),
            Committed {
                counted: 3,
                duplicates: 1,
                unmatched: 0
            }
        );
        assert_eq!(
            s.commit(&batch).unwrap(),
            Committed {
                counted: 0,
                duplicates: 4,
                unmatched: 0
            }
        );
        let b = all(&s);
        assert_eq!(
            b.iter().map(|b| (b.day, b.count)).collect::<Vec<_>>(),
            vec![(Day(10), 2), (Day(11), 1)]
        );
    }

    #[test]
    fn a_once_event_counts_once_whatever_day_it_comes_with() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        let opens = |days: &[i32]| {
            let mut i = Ingest::default();
            for d in days {
                i.add_once("mail", "m1|bob@acme.com", ACME, "open", Day(*d))
                    .unwrap();
            }
            i
        };
        // Within one batch the earliest day wins, whatever the order.
        let c = s.commit(&opens(&[12, 10, 11])).unwrap();
        assert_eq!((c.counted, c.duplicates), (1, 2));
        // A later poll sees a later open of the same message: not counted.
        let c = s.commit(&opens(&[14])).unwrap();
        assert_eq!((c.counted, c.duplicates), (0, 1));
        let b = all(&s);
        assert_eq!(
            b.iter().map(|b| (b.day, b.count)).collect::<Vec<_>>(),
            vec![(Day(10), 1)]
        );
        // The same id as an ordinary event is a different marker space.
        let mut i = Ingest::default();
        i.add("mail", "m1|bob@acme.com", ACME, "open", Day(14), 1)
            .unwrap();
        assert_eq!(s.commit(&i).unwrap().counted, 1);
    }

    #[test]
    fn dedupe_markers_stay_sorted_across_merges() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        for round in 0..5 {
            let ids: Vec<String> = (0..200).map(|i| format!("{}", i * 5 + round)).collect();
            let events: Vec<(&str, Owner<'_>, i32)> =
                ids.iter().map(|id| (id.as_str(), ACME, 1)).collect();
            assert_eq!(s.commit(&ingest(&events)).unwrap().counted, 200);
        }
        let ids: Vec<String> = (0..1000).map(|i| i.to_string()).collect();
        let events: Vec<(&str, Owner<'_>, i32)> =
            ids.iter().map(|id| (id.as_str(), ACME, 1)).collect();
        assert_eq!(s.commit(&ingest(&events)).unwrap().duplicates, 1000);
        assert_eq!(all(&s)[0].count, 1000);
    }

    #[test]
    fn an_unmatched_event_counts_once_its_actor_is_mapped() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        s.commit(&ingest(&[("7", NOBODY, 3)])).unwrap();
        let u = s.unmatched().unwrap();
        assert_eq!(
            (u.len(), u[0].events, u[0].actor.as_str(), u[0].last_seen),
            (1, 1, "bob@x.com", Day(3))
        );
        // The same event again, now mapped: counted, and no longer unmatched.
        assert_eq!(s.commit(&ingest(&[("7", ACME, 3)])).unwrap().counted, 1);
        assert!(s.unmatched().unwrap().is_empty());
        // And once counted, an unmatched replay does not un-count it.
        assert_eq!(
            s.commit(&ingest(&[("7", NOBODY, 3)])).unwrap().duplicates,
            1
        );
        assert!(s.unmatched().unwrap().is_empty());
        assert_eq!(all(&s)[0].count, 1);
    }

    #[test]
    fn counting_does_not_depend_on_batch_boundaries() {
        let one = tempfile::tempdir().unwrap();
        let s1 = open(one.path());
        s1.commit(&ingest(&[("9", NOBODY, 3), ("9", ACME, 3)]))
            .unwrap();
        let two = tempfile::tempdir().unwrap();
        let s2 = open(two.path());
        s2.commit(&ingest(&[("9", NOBODY, 3)])).unwrap();
        s2.commit(&ingest(&[("9", ACME, 3)])).unwrap();
        assert_eq!(all(&s1), all(&s2));
        assert_eq!(all(&s1)[0].count, 1);
    }

    #[test]
    fn coverage_cursors_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = open(dir.path());
            let mut i = ingest(&[("1", ACME, -3)]);
            i.coverage = vec![
                ("forum".into(), Day(-3), COVERED_BY_IMPORT),
                ("forum".into(), Day(5), COVERED_BY_POLL),
                ("mail".into(), Day(1), COVERED_BY_POLL),
            ];
            i.cursors = vec![("forum".into(), b"page=7".to_vec())];
            s.commit(&i).unwrap();
        }
        let s = open(dir.path());
        assert_eq!(
            s.coverage(&"forum".into())
                .unwrap()
                .into_iter()
                .collect::<Vec<_>>(),
            vec![Day(-3), Day(5)]
        );
        assert_eq!(
            s.cursor(&"forum".into()).unwrap().as_deref(),
            Some(&b"page=7"[..])
        );
        assert_eq!(
            s.sources()
                .unwrap()
                .into_iter()
                .map(|s| s.0)
                .collect::<Vec<_>>(),
            vec!["forum", "mail"]
        );
        assert_eq!(all(&s)[0].day, Day(-3));
    }

    #[test]
    fn a_newer_schema_is_refused_with_advice() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = open(dir.path());
            let meta = s.db.open_tree(TREE_META).unwrap();
            meta.insert(META_SCHEMA, &99u32.to_be_bytes()).unwrap();
            s.flush().unwrap();
        }
        let err = Store::open(&StoreConfig {
            path: dir.path().join("db"),
            cache_bytes: 8 << 20,
        })
        .err()
        .unwrap();
        assert!(
            matches!(err, StoreError::Version { found: 99, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("lull export"), "{err}");
    }

    #[test]
    fn names_with_nul_are_refused() {
        let mut i = Ingest::default();
        let err = i
            .add("forum", "1", Owner::Account("ac\0me"), "post", Day(1), 1)
            .unwrap_err();
        assert!(matches!(err, StoreError::NulInName(_)));
    }
}
