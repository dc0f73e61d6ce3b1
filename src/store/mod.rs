//! The store: every count lull trusts lives here, in sled.
//!
//! One module per concern: [`activity`] (what ingests write and its reads)
//! with [`identity`] (which events were counted), [`coverage`] and
//! `totals` (the community totals a commit keeps);
//! [`people`]; `state` (detection state, stale sources, the atomic record
//! of a detection day); `outbox` (notices waiting, and the mail log);
//! `snoozes` (snoozes, feedback, used links); [`backup`] and `migrate`
//! (the schema: backups, restores, upgrades); [`files`] (the seal and
//! the store's folder).
//!
//! Reads and writes are typed. Values whose shape another module defines
//! (an account's detection state, a snooze, feedback, a delivery record)
//! implement [`Value`]: the store encodes and decodes them, and a value
//! that does not decode is a [`StoreError::Damaged`] naming what it is,
//! whose, and its key; no reader skips it. Outbox entries are
//! [`QueuedNotice`]s, whose bodies the detector's `Queued` owns.
//!
//! # Layout
//!
//! sled's `Batch` is atomic (also across a crash) within one tree, and
//! counting exactly once needs the event's id and the count increment to
//! commit together. So everything an ingest writes lives in one tree,
//! `activity`, split into key spaces by a one-byte prefix:
//!
//! | prefix | key | value | what |
//! | --- | --- | --- | --- |
//! | `i` | source · lo (16 bytes) | sorted 128-bit id hashes from lo on | the ids counted, by hash range, whatever their day ([`identity`]) |
//! | `b` | account | per channel (source, kind): (day, count) pairs, varint-packed | an account's daily series, all its channels in one value |
//! | `R` | source · origin · first day | last day | coverage: runs of days lull has data for ([`coverage`]) |
//! | `k` | source | bytes | a source's cursor (where its next poll starts) |
//! | `u` | source · day | (id hash, actor) entries | events whose actor matched no account |
//! | `l` | account · source · kind | day · actor | who was seen last on the channel (for the alert e-mail) |
//! | `h` | account · source · kind | each person and their active days | who was active on the channel ([`people`]) |
//! | `T` | source · kind | (day, count) pairs, as a series | every account's counts summed: the community totals (derived, see `totals`) |
//! | `T` | (alone) | a generation | the activity generation the totals are current at |
//! | `a` | bucket (1 byte, a hash of the name) | account names, each ended by a 0 byte | the accounts that have series (derived, with the totals) |
//!
//! `·` is a 0 byte (names may not contain one); days are 4 big-endian bytes
//! that sort in time order. Detection has two trees of its own, written
//! together in one sled transaction ([`Store::record_detection`]; a run
//! that changes more than [`STATES_PER_PART`] states, in atomic parts):
//! `alerts` holds each account's state (`s` · account → the detector's
//! JSON), the last judged day, snoozes (`z` · account) and the sources
//! reported stale (`t` · source → since); `outbox` holds the notices
//! waiting for delivery, keyed day · account · kind, so deciding the same
//! notice twice stores it once. `mail` is the delivery record: one entry
//! per message (by Message-ID) that was sent, rejected, or is being
//! retried; a message leaves the outbox and enters `mail` as sent in one
//! transaction ([`Store::record_mail`]). `meta` holds the schema version.
//! Every tree also holds, under the empty key, its generation: a number
//! each write to it increases, in the same atomic write (see the seal,
//! below).
//!
//! Ids and counts are grouped into few large values on purpose: sled
//! manages about 70,000 random-key inserts a second on this class of
//! machine, so one key per event could never import a million events a
//! second, while a batch touches only as many values as it has id leaves
//! and accounts. An event's id is kept as its 128-bit xxh3
//! hash (a collision among 10^12 ids has odds below 10^-14).
//!
//! # Durability
//!
//! Every write ([`Store::commit`], [`Store::record_detection`], ...) is one
//! atomic sled write followed by sled's flush and a `syncfs` of the store's
//! file system: when it returns `Ok`, it is on disk (drive cache included).
//! Then the seal file beside sled's files records each tree's generation
//! ([`files::Seal`]): a store that opens *behind* its seal lost committed
//! data (a truncated or torn file) and is refused as corrupt instead of
//! being read as an empty or older store. Writes are serialised by one
//! mutex; a write is refused while the disk is nearly full (sled 0.34 can
//! hang on a full disk), and after any write error the store is *broken*:
//! it refuses further writes and reports so to `/healthz`, so the service
//! stops and is restarted instead of running on a store it cannot commit
//! to. The same happens when the store's folder is deleted or replaced
//! under a running lull.

mod activity;
pub mod backup;
pub mod coverage;
pub mod files;
mod identity;
mod migrate;
mod outbox;
pub mod people;
mod snoozes;
mod state;
mod totals;
mod value;
mod varint;

use std::mem::ManuallyDrop;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use activity::{
    Bucket, Committed, Ingest, Owner, Registered, Series, StoredSeries, UnmatchedActor,
};
pub use coverage::{Origin, Span};
pub use identity::hash as id_hash;
pub use outbox::QueuedNotice;
pub use people::{ChannelPeople, People};
pub use state::STATES_PER_PART;
pub use totals::Totals;
pub use value::Value;

use crate::config::StoreConfig;
use crate::types::Day;

/// Bumped whenever the on-disk layout changes incompatibly. Version 1 kept
/// coverage as one key per source and day; version 2 keeps runs of days;
/// version 3 keeps counted ids by (source, id) instead of (source, day);
/// version 4 keeps an account's channel series in one value instead of
/// one per channel. Opening an older store upgrades it ([`migrate`]).
pub const SCHEMA_VERSION: u32 = 4;

const TREE_ACTIVITY: &str = "activity";
const TREE_META: &str = "meta";
const TREE_ALERTS: &str = "alerts";
const TREE_OUTBOX: &str = "outbox";
const TREE_MAIL: &str = "mail";
const META_SCHEMA: &[u8] = b"schema_version";
/// The key of a tree's generation: the empty key, which sorts before
/// every other key and is never one of lull's.
const GENERATION: &[u8] = b"";

const SEP: u8 = 0;

/// A range of account ids, `lo` included, `hi` not (`None`: no bound),
/// for the key spaces ordered by account (series, people).
#[derive(Debug, Clone, Copy)]
pub struct Accounts<'a> {
    pub lo: Option<&'a str>,
    pub hi: Option<&'a str>,
}

impl Accounts<'_> {
    pub const ALL: Accounts<'static> = Accounts { lo: None, hi: None };

    /// The keys of this range in the key space `prefix` · account · `SEP` …
    /// An id holds no `SEP`, the smallest byte, so an account's keys sort
    /// after `prefix` · id and before `prefix` · any greater id: ranges cut
    /// at ids never cut an account in two. The same bounds serve a key
    /// space of one key per account (`prefix` · account), which sorts
    /// exactly as the ids do.
    fn keys(&self, prefix: u8) -> std::ops::Range<Vec<u8>> {
        let bound = |id: Option<&str>, none: u8| match id {
            Some(id) => [&[prefix], id.as_bytes()].concat(),
            None => vec![none],
        };
        bound(self.lo, prefix)..bound(self.hi, prefix + 1)
    }
}

// Key spaces of the `activity` tree (see the table above).
/// Version 2's dedupe markers: source · day → sorted id hashes.
const P_DEDUPE_V2: u8 = b'd';
const P_BUCKET: u8 = b'b';
const P_CURSOR: u8 = b'k';
const P_UNMATCHED: u8 = b'u';
/// Version 2's once-markers: source · id hash → day.
const P_ONCE_V2: u8 = b'o';
const P_LAST: u8 = b'l';
/// People per channel (see [`people`]).
const P_PEOPLE: u8 = b'h';
/// Coverage as version 1 kept it: source · day → flags.
const P_COVERAGE_V1: u8 = b'c';
// Key spaces of the `alerts` tree.
/// Per-account detection state.
const P_STATE: u8 = b's';
/// An account's snooze (JSON, owned by the alert module).
const P_SNOOZE: u8 = b'z';
/// A source reported stale, and the last day it had data.
const P_STALE: u8 = b't';
/// Feedback on a notice: account · 0 · day · kind → JSON.
const P_FEEDBACK: u8 = b'f';
/// A single-use link that was used: nonce → the day it expires.
const P_NONCE: u8 = b'n';
/// `meta` tree: the key console sessions and e-mail links are signed with.
const META_CONSOLE_KEY: &[u8] = b"console_key";
const ALERTS_LAST_DAY: &[u8] = b"last_day";

/// A write that has not finished after this long is stuck (sled can wait
/// forever for a disk that filled up under it): `/healthz` fails.
pub const STUCK_WRITE: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "the store {path} is locked by another process (is another `lull` running, e.g. the service?); stop it, reach the service through its API (`--server`), or point this command at another store"
    )]
    Locked { path: PathBuf },
    #[error(
        "there is no store at {path}: nothing was imported or polled there yet (`lull import`, `lull poll`, `lull run` and `lull restore` create it); check [store] path"
    )]
    NoStore { path: PathBuf },
    #[error(
        "{path} is not a lull store: {detail}; lull writes only into an empty or new folder, or its own store (check [store] path)"
    )]
    NotAStore { path: PathBuf, detail: String },
    #[error("the store {path} is corrupt ({detail}); {advice}")]
    Corrupt {
        path: PathBuf,
        detail: String,
        advice: String,
    },
    #[error(
        "the store {path} has schema version {found}, this lull understands version {expected} and older; use the lull release that wrote it (it can `lull backup`, and this lull can `lull restore` that backup)"
    )]
    Version {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
    #[error(
        "the disk of the store {path} is nearly full ({free} MiB free; lull keeps at least {need} MiB free to write safely, see [store] min_free_mb): nothing was written; free some space and try again"
    )]
    DiskFull { path: PathBuf, free: u64, need: u64 },
    #[error(
        "the store {path} can no longer commit ({detail}); nothing more is written until lull is restarted"
    )]
    Broken { path: PathBuf, detail: String },
    #[error("store {path}: {doing}: {source}")]
    Io {
        path: PathBuf,
        doing: &'static str,
        #[source]
        source: std::io::Error,
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
    #[error(
        "the store holds {what} that cannot be read (key {key}); restore a backup (`lull restore`)"
    )]
    Damaged { what: String, key: String },
    #[error("cannot encode {what} for the store: {detail}")]
    Encode { what: &'static str, detail: String },
    #[error("a name may not contain a 0 byte: {0:?}")]
    NulInName(String),
    #[error("{0}")]
    Backup(String),
}

impl StoreError {
    fn io(path: &Path, doing: &'static str, source: std::io::Error) -> StoreError {
        StoreError::Io {
            path: path.to_path_buf(),
            doing,
            source,
        }
    }

    fn corrupt(path: &Path, detail: impl Into<String>) -> StoreError {
        StoreError::Corrupt {
            path: path.to_path_buf(),
            detail: detail.into(),
            advice: String::new(),
        }
    }

    /// Fills in what to do about a corrupt store: the newest backup in
    /// `backup_dir` and the exact commands to restore it.
    fn with_advice(self, backup_dir: &Path) -> StoreError {
        match self {
            StoreError::Corrupt { path, detail, .. } => {
                let advice = match backup::newest(backup_dir) {
                    Some(b) => format!(
                        "restore the newest backup ({}): `mv {p} {p}.corrupt && lull restore {b}`",
                        backup::describe_age(&b),
                        p = path.display(),
                        b = b.display()
                    ),
                    None => format!(
                        "no backup was found in {} ([backup] dir); move the store aside (`mv {p} {p}.corrupt`), then `lull restore` a backup, or `lull import` your last `lull export` into a fresh store (that brings back activity only)",
                        backup_dir.display(),
                        p = path.display()
                    ),
                };
                StoreError::Corrupt {
                    path,
                    detail,
                    advice,
                }
            }
            other => other,
        }
    }
}

fn sled_err(doing: &'static str) -> impl FnOnce(sled::Error) -> StoreError {
    move |source| StoreError::Sled { doing, source }
}

/// The store. sled stays behind this type.
pub struct Store {
    cfg: StoreConfig,
    /// sled's handles; left undropped when the store is broken, because
    /// sled's drop flushes and can wait forever on a failed disk.
    db: ManuallyDrop<sled::Db>,
    activity: ManuallyDrop<sled::Tree>,
    alerts: ManuallyDrop<sled::Tree>,
    outbox: ManuallyDrop<sled::Tree>,
    mail: ManuallyDrop<sled::Tree>,
    /// The store folder, open: `syncfs` goes through it.
    dir: std::fs::File,
    identity: (files::Identity, files::Identity),
    /// Serialises writes; holds the seal of the last durable write.
    write: Mutex<files::Seal>,
    /// Why the store can no longer commit, once it cannot.
    broken: Mutex<Option<String>>,
    /// The last write refused for want of disk space, until one succeeds.
    refused: Mutex<Option<String>>,
    /// When the write in progress began (ms since the epoch; 0 = none).
    writing_since: AtomicU64,
    /// The sum of the seal's generations, readable without the write lock
    /// (which a backup holds for a while).
    generation: AtomicU64,
}

/// Whether opening may create a new, empty store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Create {
    Yes,
    No,
}

impl Store {
    /// Opens the store, creating it if there is none (commands that bring
    /// data: import, poll, run, restore).
    pub fn open(cfg: &StoreConfig) -> Result<Store, StoreError> {
        Store::open_with(cfg, Create::Yes).map_err(|e| e.with_advice(&cfg.backup_dir))
    }

    /// Opens an existing store; a missing one is [`StoreError::NoStore`]
    /// (commands that only read: a store they created would be empty, and
    /// could hide one that was deleted under a running service).
    pub fn open_existing(cfg: &StoreConfig) -> Result<Store, StoreError> {
        Store::open_with(cfg, Create::No).map_err(|e| e.with_advice(&cfg.backup_dir))
    }

    fn open_with(cfg: &StoreConfig, create: Create) -> Result<Store, StoreError> {
        let path = &cfg.path;
        migrate::finish_interrupted(path)?;
        let found = files::inspect(path)?;
        if found == files::Found::Nothing && create == Create::No {
            return Err(StoreError::NoStore { path: path.clone() });
        }
        std::fs::create_dir_all(path)
            .map_err(|e| StoreError::io(path, "creating the store folder", e))?;
        if let Some(probe) = files::Probe::take(path)? {
            for name in probe.tidy(path)? {
                tracing::warn!(store = %path.display(), file = %name, "removed what an interrupted write left in the store (sled would read an unfinished snapshot as corruption)");
            }
        }
        let db = open_sled(cfg)?;
        let tree = |name: &str| db.open_tree(name).map_err(|e| open_error(path, e));
        let meta = tree(TREE_META)?;
        let activity = tree(TREE_ACTIVITY)?;
        let version = match meta.get(META_SCHEMA).map_err(|e| open_error(path, e))? {
            Some(v) => Some(
                <[u8; 4]>::try_from(v.as_ref())
                    .map(u32::from_be_bytes)
                    .map_err(|_| StoreError::corrupt(path, "its schema version is unreadable"))?,
            ),
            None if activity.is_empty() => None,
            // Data without a version: nothing lull ever wrote.
            None => Some(0),
        };
        match version {
            Some(SCHEMA_VERSION) => {}
            Some(from @ 1..SCHEMA_VERSION) => {
                drop((meta, activity));
                close(db, path);
                migrate::upgrade(cfg, from)?;
                return Store::open_with(cfg, create);
            }
            Some(found) => {
                return Err(StoreError::Version {
                    path: path.clone(),
                    found,
                    expected: SCHEMA_VERSION,
                });
            }
            None => {
                meta.insert(META_SCHEMA, &SCHEMA_VERSION.to_be_bytes())
                    .map_err(|e| open_error(path, e))?;
                db.flush().map_err(|e| open_error(path, e))?;
            }
        }
        let trees = [
            (TREE_ACTIVITY, activity),
            (TREE_ALERTS, tree(TREE_ALERTS)?),
            (TREE_OUTBOX, tree(TREE_OUTBOX)?),
            (TREE_MAIL, tree(TREE_MAIL)?),
        ];
        // Each tree must be at least as far as its seal says.
        let mut seal = files::Seal::default();
        for (name, t) in &trees {
            let g = generation(t).map_err(|e| open_error(path, e))?;
            seal.trees.insert((*name).to_string(), g);
        }
        match files::Seal::read(path)? {
            Some(sealed) => {
                for (name, want) in &sealed.trees {
                    let have = seal.trees.get(name).copied().unwrap_or(0);
                    if have < *want {
                        return Err(StoreError::corrupt(
                            path,
                            format!(
                                "it lost committed data: its `{name}` part is at write {have}, but write {want} had been made durable (a truncated or damaged file)"
                            ),
                        ));
                    }
                }
            }
            None => {
                // A new store, or one from before seals: seal what is there.
                seal.write(path)
                    .map_err(|e| StoreError::io(path, "writing the seal", e))?;
            }
        }
        let dir = std::fs::File::open(path)
            .map_err(|e| StoreError::io(path, "opening the store folder", e))?;
        let identity = (
            files::Identity::of(path).map_err(|e| StoreError::io(path, "reading the folder", e))?,
            files::Identity::of(&path.join("db"))
                .map_err(|e| StoreError::io(path, "reading the data file", e))?,
        );
        let [(_, activity), (_, alerts), (_, outbox), (_, mail)] = trees;
        let generation = seal.trees.values().sum();
        let store = Store {
            cfg: cfg.clone(),
            db: ManuallyDrop::new(db),
            activity: ManuallyDrop::new(activity),
            alerts: ManuallyDrop::new(alerts),
            outbox: ManuallyDrop::new(outbox),
            mail: ManuallyDrop::new(mail),
            dir,
            identity,
            write: Mutex::new(seal),
            broken: Mutex::new(None),
            refused: Mutex::new(None),
            writing_since: AtomicU64::new(0),
            generation: AtomicU64::new(generation),
        };
        // Derived data: if summing it fails, detection reads every series
        // instead, and reports what it cannot read there.
        if let Err(e) = totals::rebuild(&store) {
            tracing::warn!(store = %path.display(), error = %e, "the community totals could not be summed; detection reads every account's series instead");
        }
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.cfg.path
    }

    /// Where backups of this store go (`[backup] dir`).
    pub fn backup_dir(&self) -> &Path {
        &self.cfg.backup_dir
    }

    /// Whether the store can still do its job (`/healthz`): it can commit
    /// (no write failed, none is stuck), its folder is the one it opened,
    /// and it answers a read.
    pub fn check(&self) -> Result<(), StoreError> {
        if let Some(why) = self.broken_reason() {
            return Err(StoreError::Broken {
                path: self.cfg.path.clone(),
                detail: why,
            });
        }
        let since = self.writing_since.load(Ordering::SeqCst);
        if since > 0 && now_ms().saturating_sub(since) > STUCK_WRITE.as_millis() as u64 {
            return Err(StoreError::Broken {
                path: self.cfg.path.clone(),
                detail: format!(
                    "a write has not finished for {} s (a full or failing disk?)",
                    now_ms().saturating_sub(since) / 1000
                ),
            });
        }
        let here = (
            files::Identity::of(&self.cfg.path),
            files::Identity::of(&self.cfg.path.join("db")),
        );
        if !matches!(here, (Ok(a), Ok(b)) if (a, b) == self.identity) {
            let why = "its folder was deleted or replaced while lull had it open; what was written since is lost at stop".to_string();
            self.set_broken(why.clone());
            return Err(StoreError::Broken {
                path: self.cfg.path.clone(),
                detail: why,
            });
        }
        self.alerts
            .get(b"health")
            .map_err(|e| self.fail("reading for a health check", e))?;
        Ok(())
    }

    /// Why the last write was refused (a nearly full disk), while no
    /// write has succeeded since: the store is healthy, but not taking data.
    pub fn write_refused(&self) -> Option<String> {
        self.refused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Bytes free on the store's disk.
    pub fn free_bytes(&self) -> Option<u64> {
        files::free_bytes(&self.cfg.path).ok()
    }

    fn broken_reason(&self) -> Option<String> {
        self.broken
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_broken(&self, why: String) {
        let mut b = self.broken.lock().unwrap_or_else(|p| p.into_inner());
        if b.is_none() {
            tracing::error!(store = %self.cfg.path.display(), reason = %why, "the store can no longer commit");
            *b = Some(why);
        }
    }

    /// A sled error of a read or write: corruption is named as such (with
    /// the restore advice); an I/O error while writing breaks the store.
    fn fail(&self, doing: &'static str, e: sled::Error) -> StoreError {
        match e {
            sled::Error::Corruption { at, .. } => StoreError::corrupt(
                &self.cfg.path,
                match at {
                    Some(at) => format!("bad data at {at:?}, found while {doing}"),
                    None => format!("bad data, found while {doing}"),
                },
            )
            .with_advice(&self.cfg.backup_dir),
            other => StoreError::Sled {
                doing,
                source: other,
            },
        }
    }

    /// Starts a write of about `bytes`: refuses it on a broken store or a
    /// nearly full disk, and holds the write lock until [`Write::finish`].
    fn begin(&self, bytes: u64) -> Result<Write<'_>, StoreError> {
        let seal = self.write.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(why) = self.broken_reason() {
            return Err(StoreError::Broken {
                path: self.cfg.path.clone(),
                detail: why,
            });
        }
        // sled writes a value to its log, maybe as a blob too, and
        // rewrites pages: keep room for several times what is written.
        let need = self
            .cfg
            .min_free_bytes
            .saturating_add(bytes.saturating_mul(4));
        match files::free_bytes(&self.cfg.path) {
            Ok(free) if free < need => {
                let e = StoreError::DiskFull {
                    path: self.cfg.path.clone(),
                    free: free >> 20,
                    need: need.div_ceil(1 << 20),
                };
                *self.refused.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                return Err(e);
            }
            _ => {}
        }
        self.writing_since.store(now_ms().max(1), Ordering::SeqCst);
        Ok(Write {
            store: self,
            seal,
            touched: Vec::new(),
        })
    }

    /// The key console sessions and e-mail action links are signed with:
    /// made once per store (random), kept with it, never in a backup (a
    /// restored store signs anew; old links stop working).
    pub fn signing_key(&self) -> Result<[u8; 32], StoreError> {
        let meta = self
            .db
            .open_tree(TREE_META)
            .map_err(|e| self.fail("reading the signing key", e))?;
        if let Some(v) = meta
            .get(META_CONSOLE_KEY)
            .map_err(|e| self.fail("reading the signing key", e))?
            && let Ok(k) = <[u8; 32]>::try_from(v.as_ref())
        {
            return Ok(k);
        }
        let w = self.begin(32)?;
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| StoreError::Backup(format!("no randomness: {e}")))?;
        // Another writer may have made one meanwhile: the first one stays.
        let _ = meta
            .compare_and_swap(META_CONSOLE_KEY, None as Option<&[u8]>, Some(&key[..]))
            .map_err(|e| w.failed("writing the signing key", e))?;
        w.finish()?;
        let v = meta
            .get(META_CONSOLE_KEY)
            .map_err(|e| self.fail("reading the signing key", e))?
            .ok_or_else(|| StoreError::Backup("the signing key vanished".into()))?;
        <[u8; 32]>::try_from(v.as_ref()).map_err(|_| StoreError::Damaged {
            what: "the console signing key".into(),
            key: "console_key".into(),
        })
    }

    /// Runs `f` while no write can happen: what it reads is the store at
    /// one instant (an export or a backup taken while polls commit).
    pub fn consistent<T>(&self, f: impl FnOnce() -> T) -> T {
        let _no_writes = self.write.lock().unwrap_or_else(|p| p.into_inner());
        f()
    }

    /// Makes everything written so far durable.
    pub fn flush(&self) -> Result<(), StoreError> {
        let w = self.begin(0)?;
        w.finish()
    }

    /// How many writes the store has had (the sum of its trees'
    /// generations): a cache of what it holds is current while this is.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// The number of distinct keys in the activity tree (for benchmarks
    /// and the backup's progress).
    pub fn activity_keys(&self) -> usize {
        self.activity.len()
    }

    fn get(&self, key: &[u8], doing: &'static str) -> Result<Option<sled::IVec>, StoreError> {
        self.activity.get(key).map_err(|e| self.fail(doing, e))
    }
}

/// One write in progress: the write lock, and which trees it bumped.
struct Write<'a> {
    store: &'a Store,
    seal: std::sync::MutexGuard<'a, files::Seal>,
    touched: Vec<&'static str>,
}

impl Write<'_> {
    /// The (key, value) that records the next generation of `tree`; put it
    /// in the same atomic write as the tree's data.
    fn bump(&mut self, tree: &'static str) -> (&'static [u8], [u8; 8]) {
        let next = self.seal.trees.get(tree).copied().unwrap_or(0) + 1;
        if !self.touched.contains(&tree) {
            self.touched.push(tree);
        }
        (GENERATION, next.to_be_bytes())
    }

    /// A failed write: the store is broken if it was an I/O error.
    fn failed(&self, doing: &'static str, e: sled::Error) -> StoreError {
        if matches!(e, sled::Error::Io(_) | sled::Error::ReportableBug(_)) {
            self.store.set_broken(format!("{doing}: {e}"));
        }
        self.store.fail(doing, e)
    }

    /// Flushes, syncs, and seals the new generations: when this returns
    /// `Ok`, the write is on disk and would be missed if it went away.
    fn finish(mut self) -> Result<(), StoreError> {
        let s = self.store;
        let path = &s.cfg.path;
        let broke = |doing: &'static str, e: std::io::Error| {
            s.set_broken(format!("{doing}: {e}"));
            StoreError::io(path, doing, e)
        };
        s.db.flush()
            .map_err(|e| self.failed("flushing to disk", e))?;
        files::sync(&s.dir).map_err(|e| broke("syncing to disk", e))?;
        if !self.touched.is_empty() {
            for t in std::mem::take(&mut self.touched) {
                *self.seal.trees.entry(t.to_string()).or_insert(0) += 1;
            }
            self.seal
                .write(path)
                .map_err(|e| broke("writing the seal", e))?;
            files::sync(&s.dir).map_err(|e| broke("syncing the seal", e))?;
            s.generation
                .store(self.seal.trees.values().sum(), Ordering::SeqCst);
        }
        *s.refused.lock().unwrap_or_else(|p| p.into_inner()) = None;
        Ok(())
    }
}

impl Drop for Write<'_> {
    fn drop(&mut self) {
        self.store.writing_since.store(0, Ordering::SeqCst);
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if self.broken_reason().is_some() {
            // sled's drop flushes, and a flush on a failed disk can wait
            // forever; what was durable is on disk, the rest never was.
            return;
        }
        // SAFETY: each handle is dropped exactly once, here, and never
        // used again.
        unsafe {
            ManuallyDrop::drop(&mut self.activity);
            ManuallyDrop::drop(&mut self.alerts);
            ManuallyDrop::drop(&mut self.outbox);
            ManuallyDrop::drop(&mut self.mail);
        }
        // SAFETY: as above.
        let db = unsafe { ManuallyDrop::take(&mut self.db) };
        close(db, &self.cfg.path);
    }
}

/// Closes sled and waits (briefly) until its background flusher let go of
/// the store's lock, so the store can be opened again at once. sled writes
/// a snapshot as it closes; on a full disk that fails half-way, and the
/// unfinished file is removed here rather than left for the next open.
fn close(db: sled::Db, path: &Path) {
    let _ = db.flush();
    drop(db);
    for _ in 0..200 {
        match files::Probe::take(path) {
            Ok(probe) => {
                if let Some(p) = probe {
                    match p.tidy(path) {
                        Ok(removed) if !removed.is_empty() => {
                            tracing::debug!(store = %path.display(), ?removed, "removed an unfinished snapshot sled left as it closed (a full disk?)");
                        }
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!(store = %path.display(), error = %e, "could not tidy the store after closing it");
                        }
                    }
                }
                return;
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

fn open_sled(cfg: &StoreConfig) -> Result<sled::Db, StoreError> {
    let path = &cfg.path;
    // sled 0.34 panics on some damaged files (an index out of bounds, "tried
    // to serialize Uninitialized"): that is a corrupt store, reported as
    // one, not a crash with a backtrace.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let opened = std::panic::catch_unwind(|| {
        sled::Config::new()
            .path(path)
            .cache_capacity(cfg.cache_bytes)
            .open()
    });
    std::panic::set_hook(hook);
    match opened {
        Ok(r) => r.map_err(|e| open_error(path, e)),
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "sled panicked".into());
            Err(StoreError::corrupt(
                path,
                format!("sled could not read it: {what}"),
            ))
        }
    }
}

fn open_error(path: &Path, e: sled::Error) -> StoreError {
    match e {
        sled::Error::Io(ref io) if io.to_string().contains("could not acquire lock") => {
            StoreError::Locked {
                path: path.to_path_buf(),
            }
        }
        sled::Error::Io(io) if io.raw_os_error() == Some(libc::ENOSPC) => StoreError::DiskFull {
            path: path.to_path_buf(),
            free: files::free_bytes(path).unwrap_or(0) >> 20,
            need: 1,
        },
        sled::Error::Corruption { at, .. } => StoreError::corrupt(
            path,
            match at {
                Some(at) => format!("bad data at {at:?}"),
                None => "bad data".to_string(),
            },
        ),
        other => StoreError::Open {
            path: path.to_path_buf(),
            source: other,
        },
    }
}

/// A tree's generation (0 for a tree never written with one).
fn generation(t: &sled::Tree) -> sled::Result<u64> {
    Ok(t.get(GENERATION)?
        .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A day from its 4-byte key form (`None` if the slice is not 4 bytes).
/// The days a stored value may hold (1900-01-01 to 2999-12-31): what lull
/// writes is far inside, so a day outside is a damaged value.
const STORED_DAYS: std::ops::RangeInclusive<i32> = -25_567..=376_199;

/// A day from its 4 key bytes, if they are one.
fn day_key(bytes: &[u8]) -> Option<Day> {
    <[u8; 4]>::try_from(bytes)
        .ok()
        .map(Day::from_key)
        .filter(|d| STORED_DAYS.contains(&d.0))
}

fn check_name(s: &str) -> Result<&[u8], StoreError> {
    if s.as_bytes().contains(&SEP) {
        Err(StoreError::NulInName(s.to_string()))
    } else {
        Ok(s.as_bytes())
    }
}

/// A key as people can read it in an error message.
fn show_key(k: &[u8]) -> String {
    k.iter()
        .map(|&b| match b {
            0 => "·".to_string(),
            b if b.is_ascii_graphic() || b == b' ' => (b as char).to_string(),
            b => format!("\\x{b:02x}"),
        })
        .collect()
}

/// prefix · name, without a separator (a key space of single names).
fn key_bare(prefix: u8, a: &str) -> Result<Vec<u8>, StoreError> {
    let a = check_name(a)?;
    let mut k = Vec::with_capacity(1 + a.len());
    k.push(prefix);
    k.extend_from_slice(a);
    Ok(k)
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn config(dir: &Path) -> StoreConfig {
        StoreConfig {
            path: dir.join("db"),
            cache_bytes: 8 << 20,
            min_free_bytes: 0,
            backup_dir: dir.join("backups"),
        }
    }

    /// The test store in `dir`. A handle dropped just before (a test
    /// reopening its store) lets go of sled's file lock only when sled's
    /// flusher thread has seen it go, a moment later on a busy machine:
    /// until then the open says `Locked`, and is tried again.
    pub(crate) fn open(dir: &Path) -> Store {
        for _ in 0..250 {
            match Store::open(&config(dir)) {
                Err(StoreError::Locked { .. }) => {
                    std::thread::sleep(std::time::Duration::from_millis(20))
                }
                opened => return opened.unwrap(),
            }
        }
        panic!("the test store in {} stayed locked", dir.display())
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
        let err = Store::open(&config(dir.path())).err().unwrap();
        assert!(
            matches!(err, StoreError::Version { found: 99, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("lull restore"), "{err}");
    }

    #[test]
    fn a_folder_that_is_not_a_store_is_never_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        std::fs::create_dir_all(&path).unwrap();
        std::fs::write(path.join("db"), b"my thesis").unwrap();
        let err = Store::open(&config(dir.path())).err().unwrap();
        assert!(matches!(err, StoreError::NotAStore { .. }), "{err}");
        assert_eq!(std::fs::read(path.join("db")).unwrap(), b"my thesis");
        std::fs::remove_file(path.join("db")).unwrap();
        std::fs::write(path.join("notes.txt"), b"x").unwrap();
        let err = Store::open(&config(dir.path())).err().unwrap();
        assert!(err.to_string().contains("notes.txt"), "{err}");
    }

    #[test]
    fn reading_commands_do_not_create_a_store() {
        let dir = tempfile::tempdir().unwrap();
        let err = Store::open_existing(&config(dir.path())).err().unwrap();
        assert!(matches!(err, StoreError::NoStore { .. }), "{err}");
        assert!(!dir.path().join("db").exists());
    }

    #[test]
    fn an_unfinished_snapshot_left_by_a_full_disk_is_removed_not_read_as_corruption() {
        let dir = tempfile::tempdir().unwrap();
        drop(open(dir.path()));
        let leftover = dir.path().join("db/snap.00000000DEADBEEF.generating");
        std::fs::write(&leftover, b"").unwrap();
        drop(open(dir.path()));
        assert!(!leftover.exists());
    }

    #[test]
    fn a_store_behind_its_seal_is_corrupt_and_names_the_backup() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        s.set_snooze(&"acme".into(), Some(&serde_json::json!({})))
            .unwrap();
        drop(s);
        // The seal says one more write was made durable than the store has.
        let mut seal = files::Seal::read(&dir.path().join("db")).unwrap().unwrap();
        *seal.trees.get_mut(TREE_ALERTS).unwrap() += 1;
        seal.write(&dir.path().join("db")).unwrap();
        std::fs::create_dir_all(dir.path().join("backups")).unwrap();
        std::fs::write(
            dir.path().join("backups/lull-20260101T000000Z.backup.gz"),
            b"",
        )
        .unwrap();
        let err = Store::open(&config(dir.path())).err().unwrap().to_string();
        assert!(
            err.contains("is corrupt") && err.contains("lost committed data"),
            "{err}"
        );
        assert!(
            err.contains("lull restore") && err.contains("lull-20260101T000000Z.backup.gz"),
            "{err}"
        );
    }
}
