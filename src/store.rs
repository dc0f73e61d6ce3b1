//! The store: every count lull trusts lives here, in sled.
//!
//! # Layout
//!
//! sled's `Batch` is atomic (also across a crash) within one tree, and
//! counting exactly once needs the dedupe marker and the bucket increment to
//! commit together. So everything an ingest writes lives in one tree,
//! `activity`, split into key spaces by a one-byte prefix:
//!
//! | prefix | key | value | what |
//! | --- | --- | --- | --- |
//! | `d` | source · id | – | dedupe marker: this (source, id) was counted |
//! | `b` | account · source · kind · day | u64 | daily bucket |
//! | `c` | source · day | u8 | coverage: lull has data for this source and day |
//! | `k` | source | bytes | a source's cursor (where its next poll starts) |
//! | `u` | source · id | day · actor | an event whose actor matched no account |
//!
//! `·` is a 0 byte (names may not contain one); days are 4 big-endian bytes
//! that sort in time order. Alert state and the outbox have trees of their
//! own (`alerts`, `outbox`); `meta` holds the schema version.
//!
//! # Durability
//!
//! [`Store::commit`] applies one atomic batch and then flushes, so when it
//! returns the batch is on disk. A crash before that leaves none of it.
//! Writers are serialised by a mutex (bucket increments read, add, write).

use std::collections::{BTreeSet, HashMap, HashSet};
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
const META_SCHEMA: &[u8] = b"schema_version";

const P_DEDUPE: u8 = b'd';
const P_BUCKET: u8 = b'b';
const P_COVERAGE: u8 = b'c';
const P_CURSOR: u8 = b'k';
const P_UNMATCHED: u8 = b'u';
const SEP: u8 = 0;

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

/// Who an ingested event belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    Account(AccountId),
    /// The actor resolved to no account; kept so the mapping can be fixed.
    Unmatched {
        actor: String,
    },
}

/// One activity, ready to be counted.
#[derive(Debug, Clone)]
pub struct Activity {
    pub source: SourceName,
    /// Unique within `source`; the dedupe key.
    pub id: String,
    pub owner: Owner,
    pub kind: Kind,
    pub day: Day,
    pub count: u64,
}

/// Everything one commit writes, atomically.
#[derive(Debug, Default)]
pub struct Ingest {
    pub activities: Vec<Activity>,
    /// Days to mark covered, with who covered them.
    pub coverage: Vec<(SourceName, Day, u8)>,
    /// Cursors to advance; they move only together with their activities.
    pub cursors: Vec<(SourceName, Vec<u8>)>,
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
    #[allow(dead_code)] // used by the alert pipeline
    alerts: sled::Tree,
    #[allow(dead_code)] // used by the alert pipeline
    outbox: sled::Tree,
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
            write: Mutex::new(()),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Counts a batch exactly once and makes it durable.
    ///
    /// Each activity is checked against the dedupe markers (and against the
    /// rest of this batch); new ones get their marker and their bucket
    /// increment in the same atomic batch, together with the coverage and
    /// cursors; then the store is flushed. When this returns `Ok`, all of it
    /// is on disk; if the process dies before, none of it is.
    pub fn commit(&self, ingest: &Ingest) -> Result<Committed, StoreError> {
        let _guard = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let mut batch = sled::Batch::default();
        let mut stats = Committed::default();
        let mut seen: HashSet<Vec<u8>> = HashSet::with_capacity(ingest.activities.len());
        let mut increments: HashMap<Vec<u8>, u64> = HashMap::new();

        for a in &ingest.activities {
            let marker = key2(P_DEDUPE, a.source.as_str(), a.id.as_bytes())?;
            if seen.contains(&marker) || self.has(&marker)? {
                stats.duplicates += 1;
                continue;
            }
            let parked = key2(P_UNMATCHED, a.source.as_str(), a.id.as_bytes())?;
            match &a.owner {
                Owner::Account(acc) => {
                    let bucket = bucket_key(acc, &a.source, &a.kind, a.day)?;
                    *increments.entry(bucket).or_insert(0) += a.count;
                    batch.insert(marker.as_slice(), &[]);
                    // It may have been parked as unmatched by an earlier
                    // import, before the accounts file knew its actor.
                    batch.remove(parked);
                    seen.insert(marker);
                    stats.counted += 1;
                }
                Owner::Unmatched { actor } => {
                    let mut v = Vec::with_capacity(4 + actor.len());
                    v.extend_from_slice(&a.day.to_key());
                    v.extend_from_slice(actor.as_bytes());
                    // No marker: if a later line (or import) maps this
                    // event to an account, it is counted then.
                    batch.insert(parked, v);
                    stats.unmatched += 1;
                }
            }
        }
        for (key, add) in increments {
            let old = self
                .activity
                .get(&key)
                .map_err(sled_err("reading a bucket"))?
                .map_or(0, |v| decode_u64(&v));
            batch.insert(key, &(old.saturating_add(add)).to_be_bytes());
        }
        for (source, day, flag) in &ingest.coverage {
            let key = coverage_key(source, *day)?;
            let old = self
                .activity
                .get(&key)
                .map_err(sled_err("reading coverage"))?
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

    fn has(&self, key: &[u8]) -> Result<bool, StoreError> {
        self.activity
            .contains_key(key)
            .map_err(sled_err("checking a dedupe marker"))
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
        self.activity.scan_prefix(prefix).filter_map(move |r| {
            let (k, v) = match r {
                Ok(kv) => kv,
                Err(e) => return Some(Err(sled_err("reading buckets")(e))),
            };
            let b = decode_bucket(&k, &v)?;
            if from.is_some_and(|f| b.day < f) || to.is_some_and(|t| b.day > t) {
                return None;
            }
            Some(Ok(b))
        })
    }

    /// The days `source` is covered.
    pub fn coverage(&self, source: &SourceName) -> Result<BTreeSet<Day>, StoreError> {
        let prefix = key1(P_COVERAGE, source.as_str())?;
        let mut out = BTreeSet::new();
        for r in self.activity.scan_prefix(&prefix) {
            let (k, _) = r.map_err(sled_err("reading coverage"))?;
            if let Some(day) = k
                .get(prefix.len()..)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
            {
                out.insert(Day::from_key(day));
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
            let Some(end) = k[1..].iter().position(|&b| b == SEP) else {
                continue;
            };
            let source = String::from_utf8_lossy(&k[1..1 + end]).into_owned();
            let Some(day) = v.get(..4).and_then(|b| <[u8; 4]>::try_from(b).ok()) else {
                continue;
            };
            let actor = String::from_utf8_lossy(&v[4..]).into_owned();
            let e = agg.entry((source, actor)).or_insert((0, Day(i32::MIN)));
            e.0 += 1;
            e.1 = e.1.max(Day::from_key(day));
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

fn check_name(s: &str) -> Result<&[u8], StoreError> {
    if s.as_bytes().contains(&SEP) {
        Err(StoreError::NulInName(s.to_string()))
    } else {
        Ok(s.as_bytes())
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

fn coverage_key(source: &SourceName, day: Day) -> Result<Vec<u8>, StoreError> {
    key2(P_COVERAGE, source.as_str(), &day.to_key())
}

fn bucket_key(
    acc: &AccountId,
    source: &SourceName,
    kind: &Kind,
    day: Day,
) -> Result<Vec<u8>, StoreError> {
    let (a, s, k) = (
        check_name(acc.as_str())?,
        check_name(source.as_str())?,
        check_name(kind.as_str())?,
    );
    let mut key = Vec::with_capacity(8 + a.len() + s.len() + k.len());
    key.push(P_BUCKET);
    for part in [a, s, k] {
        key.extend_from_slice(part);
        key.push(SEP);
    }
    key.extend_from_slice(&day.to_key());
    Ok(key)
}

fn decode_bucket(k: &[u8], v: &[u8]) -> Option<Bucket> {
    let body = k.get(1..k.len().checked_sub(4)?)?;
    let day = Day::from_key(k.get(k.len() - 4..)?.try_into().ok()?);
    let mut parts = body.split(|&b| b == SEP);
    let account = String::from_utf8(parts.next()?.to_vec()).ok()?;
    let source = String::from_utf8(parts.next()?.to_vec()).ok()?;
    let kind = String::from_utf8(parts.next()?.to_vec()).ok()?;
    Some(Bucket {
        account: AccountId(account),
        source: SourceName(source),
        kind: Kind(kind),
        day,
        count: decode_u64(v),
    })
}

fn decode_u64(v: &[u8]) -> u64 {
    <[u8; 8]>::try_from(v).map(u64::from_be_bytes).unwrap_or(0)
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

    fn act(id: &str, account: &str, day: i32) -> Activity {
        Activity {
            source: "forum".into(),
            id: id.to_string(),
            owner: Owner::Account(account.into()),
            kind: "post".into(),
            day: Day(day),
            count: 1,
        }
    }

    #[test]
    fn a_repeated_id_counts_once_within_and_across_batches() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        let batch = Ingest {
            activities: vec![
                act("1", "acme", 10),
                act("1", "acme", 10),
                act("2", "acme", 10),
            ],
            ..Ingest::default()
        };
        assert_eq!(
            s.commit(&batch).unwrap(),
            Committed {
                counted: 2,
                duplicates: 1,
                unmatched: 0
            }
        );
        assert_eq!(
            s.commit(&batch).unwrap(),
            Committed {
                counted: 0,
                duplicates: 3,
                unmatched: 0
            }
        );
        let b: Vec<_> = s.buckets(None, None).collect::<Result<_, _>>().unwrap();
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].count, 2);
    }

    #[test]
    fn an_unmatched_event_counts_once_its_actor_is_mapped() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        let mut a = act("7", "acme", 3);
        a.owner = Owner::Unmatched {
            actor: "bob@x.com".into(),
        };
        s.commit(&Ingest {
            activities: vec![a.clone()],
            ..Default::default()
        })
        .unwrap();
        let u = s.unmatched().unwrap();
        assert_eq!(
            (u.len(), u[0].events, u[0].actor.as_str()),
            (1, 1, "bob@x.com")
        );
        // The same event again, now mapped: counted, and no longer unmatched.
        let c = s
            .commit(&Ingest {
                activities: vec![act("7", "acme", 3)],
                ..Default::default()
            })
            .unwrap();
        assert_eq!(c.counted, 1);
        assert!(s.unmatched().unwrap().is_empty());
        // And once counted, an unmatched replay does not un-count it.
        let c = s
            .commit(&Ingest {
                activities: vec![a],
                ..Default::default()
            })
            .unwrap();
        assert_eq!(c.duplicates, 1);
        assert!(s.unmatched().unwrap().is_empty());
    }

    #[test]
    fn counting_does_not_depend_on_batch_boundaries() {
        // An unmatched line, then the same event mapped: counted once,
        // whether the two arrive in one batch or two.
        let mut unmatched = act("9", "acme", 3);
        unmatched.owner = Owner::Unmatched {
            actor: "x@y.com".into(),
        };
        let one = tempfile::tempdir().unwrap();
        let s1 = open(one.path());
        s1.commit(&Ingest {
            activities: vec![unmatched.clone(), act("9", "acme", 3)],
            ..Default::default()
        })
        .unwrap();
        let two = tempfile::tempdir().unwrap();
        let s2 = open(two.path());
        s2.commit(&Ingest {
            activities: vec![unmatched],
            ..Default::default()
        })
        .unwrap();
        s2.commit(&Ingest {
            activities: vec![act("9", "acme", 3)],
            ..Default::default()
        })
        .unwrap();
        let b1: Vec<_> = s1.buckets(None, None).collect::<Result<_, _>>().unwrap();
        let b2: Vec<_> = s2.buckets(None, None).collect::<Result<_, _>>().unwrap();
        assert_eq!(b1, b2);
        assert_eq!(b1[0].count, 1);
    }

    #[test]
    fn coverage_cursors_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = open(dir.path());
            s.commit(&Ingest {
                activities: vec![act("1", "acme", -3)],
                coverage: vec![
                    ("forum".into(), Day(-3), COVERED_BY_IMPORT),
                    ("forum".into(), Day(5), COVERED_BY_POLL),
                    ("mail".into(), Day(1), COVERED_BY_POLL),
                ],
                cursors: vec![("forum".into(), b"page=7".to_vec())],
            })
            .unwrap();
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
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        let err = s
            .commit(&Ingest {
                activities: vec![act("1", "ac\0me", 1)],
                ..Default::default()
            })
            .unwrap_err();
        assert!(matches!(err, StoreError::NulInName(_)));
    }
}
