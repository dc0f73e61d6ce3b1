//! Backups: everything the store holds, as one portable file, and the
//! restore that gives all of it back.
//!
//! # Format (version 1)
//!
//! A gzip-compressed JSON Lines file. The first line is the header, the
//! last line the end record; every line between is one record, tagged by
//! `"t"`. Days are numbers: days since 1970-01-01 (UTC calendar days in the
//! config's time zone, as lull counts them). Values lull keeps as JSON
//! (states, snoozes, notices, delivery records, cursors) are carried as
//! they are stored.
//!
//! | `t` | fields | what |
//! | --- | --- | --- |
//! | `header` | `lull_backup` (format, 1), `schema` (the store's) | first line |
//! | `series` | `account`, `source`, `kind`, `days` ([[day, count], …]) | an account's daily counts of one channel |
//! | `ids` | `source`, `ids` (base64 of sorted 16-byte id hashes, up to 4,096 a record) | events already counted, so a re-import counts nothing twice |
//! | `seen` | `source`, `day`, `ids` (as `ids`) | the same, as schema 2 kept it (per day); read, no longer written |
//! | `once` | `source`, `id` (base64 hash), `day` | the same for one event (schema 2's e-mail opens); read, no longer written |
//! | `parked` | `source`, `day`, `events` ([[hash, actor], …]) | events of unmatched actors, counted once they are mapped |
//! | `last_seen` | `account`, `source`, `kind`, `day`, `actor` | who was seen last on a channel |
//! | `coverage` | `source`, `by` (`poll`/`import`), `first`, `last` | a run of days lull has data for |
//! | `cursor` | `source`, `value` | where a source's next poll starts |
//! | `state` | `account`, `memory` | the detector's state of an account |
//! | `judged` | `day` | the last day detection recorded |
//! | `stale` | `source`, `last_data` | a source reported stale to ops |
//! | `snooze` | `account`, `snooze` | an account's snooze |
//! | `outbox` | `day`, `account`, `kind`, `notice` | a notice waiting for delivery |
//! | `mail` | `message_id`, `record` | what became of a message |
//! | `end` | `records`, `xxh3` (hex of the 64-bit XXH3 of every line before) | last line: a file without it is incomplete |
//!
//! The file holds no time of its own and gzip's is zero, so a backup of a
//! store restored from a backup is the same file, byte for byte.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use xxhash_rust::xxh3::Xxh3;

use super::activity::{
    SERIES, decode_account_key, decode_channels, decode_parked, decode_series, decode_series_key,
    encode_channels, encode_parked, encode_series, stored_series,
};
use super::coverage::{self, Origin, Span};
use super::{
    ALERTS_LAST_DAY, GENERATION, P_BUCKET, P_COVERAGE_V1, P_CURSOR, P_DEDUPE_V2, P_FEEDBACK,
    P_LAST, P_NONCE, P_ONCE_V2, P_PEOPLE, P_SNOOZE, P_STALE, P_STATE, P_UNMATCHED, SEP, Store,
    StoreError, TREE_ACTIVITY, TREE_ALERTS, TREE_MAIL, TREE_OUTBOX, day_key, key_bare, key1, key2,
    show_key,
};
use crate::config::StoreConfig;
use crate::types::Day;

/// The format this lull writes and reads.
pub const FORMAT: u32 = 1;
/// Backup files end so; scheduled ones are named `lull-<UTC time>`.
pub const SUFFIX: &str = ".backup.gz";
/// Bytes of keys and values per restore batch: an account's series and
/// people can be kilobytes each, and sled holds a batch several times over
/// while it applies it.
const RESTORE_BATCH_BYTES: usize = 4 << 20;
/// Counted ids per `ids` record.
const IDS_PER_RECORD: usize = 4096;
/// A restore sorts counted ids in this many hash ranges per source, one
/// spill file each, so its memory is a range's share of a source's ids.
const ID_RANGES: usize = 64;

/// One line of a backup.
#[derive(Debug, Serialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Record {
    Header(Header),
    Series(Series),
    Ids(Ids),
    Seen(Seen),
    Once(Once),
    Parked(Parked),
    LastSeen(LastSeen),
    People(People),
    Coverage(Coverage),
    Cursor(Cursor),
    State(State),
    Judged(Judged),
    Stale(Stale),
    Snooze(Snooze),
    Feedback(Feedback),
    Nonce(Nonce),
    Outbox(Outbox),
    Mail(Mail),
    End(End),
}

macro_rules! records {
    ($($name:ident { $($(#[$attr:meta])* $field:ident: $ty:ty),* $(,)? })*) => {
        $(
            #[derive(Debug, Serialize, Deserialize)]
            pub struct $name { $($(#[$attr])* pub $field: $ty),* }
        )*

        impl Record {
            /// Parses one line: its `t` picks the record's fields (a
            /// payload kept as stored JSON cannot go through serde's
            /// buffering of internally tagged enums).
            pub fn parse(line: &[u8]) -> Result<Record, serde_json::Error> {
                #[derive(Deserialize)]
                struct Tag<'a> {
                    #[serde(borrow)]
                    t: std::borrow::Cow<'a, str>,
                }
                let tag: Tag<'_> = serde_json::from_slice(line)?;
                let snake = |n: &str| {
                    let mut out = String::new();
                    for (i, c) in n.chars().enumerate() {
                        if c.is_uppercase() && i > 0 {
                            out.push('_');
                        }
                        out.push(c.to_ascii_lowercase());
                    }
                    out
                };
                $(
                    if tag.t == snake(stringify!($name)) {
                        return Ok(Record::$name(serde_json::from_slice(line)?));
                    }
                )*
                Err(serde::de::Error::custom(format!("unknown record type `{}`", tag.t)))
            }
        }
    };
}

records! {
    Header { lull_backup: u32, schema: u32 }
    Series { account: String, source: String, kind: String, days: Vec<(i32, u64)> }
    Ids { source: String, ids: String }
    Seen { source: String, day: i32, ids: String }
    Once { source: String, id: String, day: i32 }
    Parked { source: String, day: i32, events: Vec<(String, String)> }
    LastSeen { account: String, source: String, kind: String, day: i32, actor: String }
    People { account: String, source: String, kind: String, people: std::collections::BTreeMap<String, Vec<i32>> }
    Coverage { source: String, by: Origin, first: i32, last: i32 }
    Cursor { source: String, value: Box<RawValue> }
    State { account: String, memory: Box<RawValue> }
    Judged { day: i32 }
    Stale { source: String, last_data: i32 }
    Snooze { account: String, snooze: Box<RawValue> }
    Feedback { account: String, day: i32, kind: String, feedback: Box<RawValue> }
    Nonce { id: String, until: i32 }
    Outbox {
        day: i32,
        account: String,
        kind: String,
        notice: Box<RawValue>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        receiver: Option<String>,
    }
    Mail { message_id: String, record: Box<RawValue> }
    End { records: u64, xxh3: String }
}

/// What a backup or restore went through.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Records (lines between the header and the end).
    pub records: u64,
    /// Events counted in the activity series.
    pub events: u64,
}

/// The trees a dump reads.
pub(super) struct Trees<'a> {
    pub activity: &'a sled::Tree,
    pub alerts: &'a sled::Tree,
    pub outbox: &'a sled::Tree,
    pub mail: &'a sled::Tree,
}

fn damaged(what: &str, k: &[u8]) -> StoreError {
    StoreError::Damaged {
        what: what.to_string(),
        key: show_key(k),
    }
}

fn json(what: &str, k: &[u8], v: &[u8]) -> Result<Box<RawValue>, StoreError> {
    let s = std::str::from_utf8(v).map_err(|_| damaged(what, k))?;
    RawValue::from_string(s.to_string()).map_err(|_| damaged(what, k))
}

fn utf8(what: &str, k: &[u8], b: &[u8]) -> Result<String, StoreError> {
    std::str::from_utf8(b)
        .map(str::to_string)
        .map_err(|_| damaged(what, k))
}

/// Splits `source · rest` (after the prefix byte).
fn name_and_rest<'k>(what: &str, k: &'k [u8]) -> Result<(String, &'k [u8]), StoreError> {
    let body = &k[1..];
    let sep = body
        .iter()
        .position(|&b| b == SEP)
        .ok_or_else(|| damaged(what, k))?;
    Ok((utf8(what, k, &body[..sep])?, &body[sep + 1..]))
}

fn day_of(what: &str, k: &[u8], b: &[u8]) -> Result<i32, StoreError> {
    day_key(b).map(|d| d.0).ok_or_else(|| damaged(what, k))
}

/// Reads every tree into records, in key order, handing each to `emit`.
/// `schema` is the layout the trees are in (1 or 2).
pub(super) fn dump(
    t: &Trees<'_>,
    schema: u32,
    mut emit: impl FnMut(Record) -> Result<(), StoreError>,
) -> Result<Totals, StoreError> {
    let mut totals = Totals::default();
    let read = |e: sled::Error| StoreError::Sled {
        doing: "reading the store for a backup",
        source: e,
    };
    // Version 1 kept coverage per day, with flags: 1 poll, 2 import.
    let mut v1_days: std::collections::BTreeMap<(String, Origin), Vec<Span>> = Default::default();
    // Counted ids, re-cut into records of a fixed size whatever the leaves
    // (so a backup of a restored store is the same file).
    let mut ids = IdRecords::default();
    for r in t.activity.iter() {
        let (k, v) = r.map_err(read)?;
        let Some(&prefix) = k.first() else {
            continue; // the generation
        };
        if prefix == super::identity::P_IDENTITY && schema >= 3 {
            let (source, lo) = super::identity::decode_key(&k)
                .ok_or_else(|| damaged(super::identity::WHAT, &k))?;
            let hashes = super::identity::decode(lo, &v)
                .ok_or_else(|| damaged(super::identity::WHAT, &k))?;
            ids.push(source, &hashes, &mut totals, &mut emit)?;
            continue;
        }
        ids.flush(&mut totals, &mut emit)?;
        if super::totals::is_derived(&k) && schema >= 3 {
            continue;
        }
        if prefix == P_BUCKET && schema >= 4 {
            // One value per account, holding every channel's series.
            let account = decode_account_key(&k).ok_or_else(|| damaged(SERIES, &k))?;
            for s in stored_series(&account, &k, v)? {
                let s = s.decoded(None)?;
                totals.events += s.entries.iter().map(|(_, c)| c).sum::<u64>();
                emit(Record::Series(Series {
                    account: s.account.0,
                    source: s.source.0,
                    kind: s.kind.0,
                    days: s.entries.into_iter().map(|(d, c)| (d.0, c)).collect(),
                }))?;
                totals.records += 1;
            }
            continue;
        }
        let rec = match prefix {
            P_BUCKET => {
                let days = if schema <= 2 {
                    super::activity::decode_series_v2(&v)
                } else {
                    decode_series(&v)
                };
                let ((account, source, kind), days) = decode_series_key(&k)
                    .zip(days)
                    .ok_or_else(|| damaged("an account's daily series", &k))?;
                totals.events += days.values().sum::<u64>();
                Record::Series(Series {
                    account: account.0,
                    source: source.0,
                    kind: kind.0,
                    days: days.into_iter().map(|(d, c)| (d.0, c)).collect(),
                })
            }
            P_DEDUPE_V2 if schema <= 2 => {
                let (source, rest) = name_and_rest("dedupe markers", &k)?;
                if v.len() % 16 != 0 {
                    return Err(damaged("dedupe markers", &k));
                }
                Record::Seen(Seen {
                    source,
                    day: day_of("dedupe markers", &k, rest)?,
                    ids: B64.encode(&v),
                })
            }
            P_ONCE_V2 if schema <= 2 => {
                let (source, rest) = name_and_rest("a once-marker", &k)?;
                if rest.len() != 16 {
                    return Err(damaged("a once-marker", &k));
                }
                Record::Once(Once {
                    source,
                    id: B64.encode(rest),
                    day: day_of("a once-marker", &k, &v)?,
                })
            }
            P_UNMATCHED => {
                let (source, rest) = name_and_rest("unmatched events", &k)?;
                let parked = decode_parked(&v).ok_or_else(|| damaged("unmatched events", &k))?;
                let mut events: Vec<(u128, String)> = parked
                    .into_iter()
                    .map(|(h, a)| (h, a.into_string()))
                    .collect();
                events.sort();
                Record::Parked(Parked {
                    source,
                    day: day_of("unmatched events", &k, rest)?,
                    events: events
                        .into_iter()
                        .map(|(h, a)| (B64.encode(h.to_be_bytes()), a))
                        .collect(),
                })
            }
            P_LAST => {
                let (account, source, kind) =
                    decode_series_key(&k).ok_or_else(|| damaged("who was seen last", &k))?;
                Record::LastSeen(LastSeen {
                    account: account.0,
                    source: source.0,
                    kind: kind.0,
                    day: day_of("who was seen last", &k, v.get(..4).unwrap_or(&[]))?,
                    actor: utf8("who was seen last", &k, &v[4..])?,
                })
            }
            P_PEOPLE => {
                let (account, source, kind) = decode_series_key(&k)
                    .ok_or_else(|| damaged("who was active on a channel", &k))?;
                let people = super::people::decode(&v)
                    .ok_or_else(|| damaged("who was active on a channel", &k))?;
                Record::People(People {
                    account: account.0,
                    source: source.0,
                    kind: kind.0,
                    people: people
                        .into_iter()
                        .map(|(name, days)| (name, days.into_iter().map(|d| d.0).collect()))
                        .collect(),
                })
            }
            coverage::P_COVERAGE if schema >= 2 => {
                let (source, by, s) =
                    coverage::decode(&k, &v).ok_or_else(|| damaged("a coverage range", &k))?;
                Record::Coverage(Coverage {
                    source,
                    by,
                    first: s.first.0,
                    last: s.last.0,
                })
            }
            P_COVERAGE_V1 if schema == 1 => {
                let (source, rest) = name_and_rest("coverage", &k)?;
                let day = Day(day_of("coverage", &k, rest)?);
                let flags = v.first().copied().unwrap_or(0);
                for (bit, origin) in [(1u8, Origin::Poll), (2u8, Origin::Import)] {
                    if flags & bit != 0 {
                        v1_days
                            .entry((source.clone(), origin))
                            .or_default()
                            .push(Span {
                                first: day,
                                last: day,
                            });
                    }
                }
                continue;
            }
            P_CURSOR => {
                let (source, _) = name_and_rest("a cursor", &k)?;
                Record::Cursor(Cursor {
                    source,
                    value: json("a cursor", &k, &v)?,
                })
            }
            _ => return Err(damaged("an entry of an unknown kind", &k)),
        };
        totals.records += 1;
        emit(rec)?;
    }
    ids.flush(&mut totals, &mut emit)?;
    for ((source, by), days) in v1_days {
        for s in coverage::merge(days) {
            totals.records += 1;
            emit(Record::Coverage(Coverage {
                source: source.clone(),
                by,
                first: s.first.0,
                last: s.last.0,
            }))?;
        }
    }
    for r in t.alerts.iter() {
        let (k, v) = r.map_err(read)?;
        let rec = match k.first() {
            None => continue,
            Some(_) if k.as_ref() == ALERTS_LAST_DAY => Record::Judged(Judged {
                day: day_of("the last judged day", &k, &v)?,
            }),
            Some(&P_STATE) => Record::State(State {
                account: utf8("a detection state", &k, &k[1..])?,
                memory: json("a detection state", &k, &v)?,
            }),
            Some(&P_SNOOZE) => Record::Snooze(Snooze {
                account: utf8("a snooze", &k, &k[1..])?,
                snooze: json("a snooze", &k, &v)?,
            }),
            Some(&P_STALE) => Record::Stale(Stale {
                source: utf8("a stale-source marker", &k, &k[1..])?,
                last_data: day_of("a stale-source marker", &k, &v)?,
            }),
            Some(&P_FEEDBACK) => {
                let (account, day, kind) = super::snoozes::decode_feedback_key(&k)
                    .ok_or_else(|| damaged("feedback", &k))?;
                Record::Feedback(Feedback {
                    account: account.0,
                    day: day.0,
                    kind,
                    feedback: json("feedback", &k, &v)?,
                })
            }
            Some(&P_NONCE) => Record::Nonce(Nonce {
                id: utf8("a used link", &k, &k[1..])?,
                until: day_of("a used link", &k, &v)?,
            }),
            Some(_) => return Err(damaged("an entry of an unknown kind", &k)),
        };
        totals.records += 1;
        emit(rec)?;
    }
    for r in t.outbox.iter() {
        let (k, v) = r.map_err(read)?;
        if k.as_ref() == GENERATION {
            continue;
        }
        let n = super::QueuedNotice::decode(&k, &v)?;
        totals.records += 1;
        emit(Record::Outbox(Outbox {
            day: n.day.0,
            account: n.account.0,
            kind: n.kind,
            notice: json("an outbox entry", &k, &v)?,
            receiver: n.receiver,
        }))?;
    }
    for r in t.mail.iter() {
        let (k, v) = r.map_err(read)?;
        if k.as_ref() == GENERATION {
            continue;
        }
        totals.records += 1;
        emit(Record::Mail(Mail {
            message_id: utf8("a delivery record", &k, &k)?,
            record: json("a delivery record", &k, &v)?,
        }))?;
    }
    Ok(totals)
}

/// Counted ids on their way into `ids` records.
#[derive(Default)]
struct IdRecords {
    source: String,
    hashes: Vec<u8>,
}

impl IdRecords {
    fn push(
        &mut self,
        source: &str,
        hashes: &[u128],
        totals: &mut Totals,
        emit: &mut impl FnMut(Record) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        if source != self.source {
            self.flush(totals, emit)?;
            self.source = source.to_string();
        }
        for h in hashes {
            self.hashes.extend_from_slice(&h.to_be_bytes());
            if self.hashes.len() == IDS_PER_RECORD * 16 {
                self.flush(totals, emit)?;
            }
        }
        Ok(())
    }

    fn flush(
        &mut self,
        totals: &mut Totals,
        emit: &mut impl FnMut(Record) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        if self.hashes.is_empty() {
            return Ok(());
        }
        totals.records += 1;
        let ids = B64.encode(&self.hashes);
        self.hashes.clear();
        emit(Record::Ids(Ids {
            source: self.source.clone(),
            ids,
        }))
    }
}

/// Writes records as a backup file's lines, hashing what it writes.
pub(super) struct LineWriter<W: Write> {
    out: W,
    hash: Xxh3,
    records: u64,
}

impl<W: Write> LineWriter<W> {
    pub(super) fn new(out: W, schema: u32) -> std::io::Result<Self> {
        let mut w = LineWriter {
            out,
            hash: Xxh3::new(),
            records: 0,
        };
        w.line(&Record::Header(Header {
            lull_backup: FORMAT,
            schema,
        }))?;
        Ok(w)
    }

    fn line(&mut self, r: &Record) -> std::io::Result<()> {
        let mut buf = serde_json::to_vec(r).map_err(std::io::Error::other)?;
        buf.push(b'\n');
        self.hash.update(&buf);
        self.out.write_all(&buf)
    }

    pub(super) fn record(&mut self, r: &Record) -> std::io::Result<()> {
        self.records += 1;
        self.line(r)
    }

    pub(super) fn end(mut self) -> std::io::Result<W> {
        let end = Record::End(End {
            records: self.records,
            xxh3: format!("{:016x}", self.hash.digest()),
        });
        let mut buf = serde_json::to_vec(&end).map_err(std::io::Error::other)?;
        buf.push(b'\n');
        self.out.write_all(&buf)?;
        Ok(self.out)
    }
}

fn gzip<W: Write>(w: W) -> flate2::write::GzEncoder<W> {
    // No name and time zero: the same store gives the same bytes.
    flate2::GzBuilder::new()
        .mtime(0)
        .write(w, flate2::Compression::fast())
}

impl Store {
    /// Writes everything the store holds to `out` as a backup (gzip'd),
    /// while no write can happen: the backup is the store at one instant.
    pub fn backup_to(&self, out: impl Write) -> Result<Totals, StoreError> {
        let _no_writes = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let io = |e: std::io::Error| StoreError::Backup(format!("writing the backup: {e}"));
        let mut lines = LineWriter::new(gzip(out), super::SCHEMA_VERSION).map_err(io)?;
        let totals = dump(&self.trees(), super::SCHEMA_VERSION, |r| {
            lines.record(&r).map_err(io)
        })?;
        lines.end().map_err(io)?.finish().map_err(io)?;
        Ok(totals)
    }

    /// Writes a backup to `file`, atomically (a reader never sees part of
    /// one), and syncs it.
    pub fn backup_file(&self, file: &Path) -> Result<Totals, StoreError> {
        let mut totals = Totals::default();
        let mut failure = None;
        super::files::write_atomically(file, |w| match self.backup_to(w) {
            Ok(t) => {
                totals = t;
                Ok(())
            }
            Err(e) => {
                let msg = e.to_string();
                failure = Some(e);
                Err(std::io::Error::other(msg))
            }
        })
        .map_err(|e| match failure.take() {
            Some(f) => f,
            None => StoreError::Backup(format!("writing {}: {e}", file.display())),
        })?;
        Ok(totals)
    }

    fn trees(&self) -> Trees<'_> {
        Trees {
            activity: &self.activity,
            alerts: &self.alerts,
            outbox: &self.outbox,
            mail: &self.mail,
        }
    }
}

/// An account's channels being restored: (source, kind) → series bytes.
type ChannelValues = BTreeMap<(String, String), Vec<u8>>;

/// Writes records into a fresh store, batch by batch; [`Restorer::finish`]
/// seals it.
pub(super) struct Restorer {
    store: Store,
    batches: [sled::Batch; 4],
    /// Writes to the activity tree, applied one by one in an order
    /// scattered by a hash of the key ([`Restorer::apply`]).
    activity: Vec<(Vec<u8>, Vec<u8>)>,
    /// Bytes queued in `batches` and `activity`.
    pending: usize,
    /// The series of the account whose records come now: an account's
    /// channels are one value, written when its records end.
    account: Option<(String, ChannelValues)>,
    /// The last account written: one that comes again after it (records
    /// out of account order) is merged with what was written.
    written: Option<String>,
    /// Counted ids on their way to the store's leaves.
    ids: IdSpill,
    pub totals: Totals,
}

/// Counted ids of a restore, spilled to files by source and hash range
/// beside the new store, then sorted one range at a time and written as
/// leaves in order: memory stays a range's worth and nothing is rewritten,
/// whatever order the ids come in (a version-2 store has them by day).
struct IdSpill {
    dir: PathBuf,
    /// Source name → its number in file names.
    sources: std::collections::BTreeMap<String, usize>,
    files: std::collections::HashMap<(usize, usize), std::io::BufWriter<std::fs::File>>,
}

impl IdSpill {
    fn new(dir: PathBuf) -> Result<IdSpill, StoreError> {
        remove_dir(&dir)?;
        std::fs::create_dir_all(&dir)
            .map_err(|e| StoreError::Backup(format!("cannot create {}: {e}", dir.display())))?;
        Ok(IdSpill {
            dir,
            sources: Default::default(),
            files: Default::default(),
        })
    }

    fn io(dir: &Path, e: std::io::Error) -> StoreError {
        StoreError::Backup(format!(
            "sorting the ids of counted events in {}: {e}",
            dir.display()
        ))
    }

    /// The spill file of a source's (by number) hash range.
    fn path(dir: &Path, source: usize, range: usize) -> PathBuf {
        dir.join(format!("{source}-{range}"))
    }

    fn add(&mut self, source: &str, ids: &[u8]) -> Result<(), StoreError> {
        let next = self.sources.len();
        let s = *self.sources.entry(source.to_string()).or_insert(next);
        for c in ids.chunks_exact(16) {
            let range = (c[0] as usize * ID_RANGES) >> 8;
            let f = match self.files.entry((s, range)) {
                std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => {
                    let file = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(IdSpill::path(&self.dir, s, range))
                        .map_err(|e| IdSpill::io(&self.dir, e))?;
                    v.insert(std::io::BufWriter::with_capacity(1 << 16, file))
                }
            };
            f.write_all(c).map_err(|e| IdSpill::io(&self.dir, e))?;
        }
        Ok(())
    }

    /// Writes every spilled id into `store`'s leaves, range by range.
    fn finish(mut self, store: &Store) -> Result<(), StoreError> {
        for (_, mut f) in self.files.drain() {
            f.flush().map_err(|e| IdSpill::io(&self.dir, e))?;
        }
        for (source, &s) in &self.sources {
            let mut first = true;
            for range in 0..ID_RANGES {
                let path = IdSpill::path(&self.dir, s, range);
                let bytes = match std::fs::read(&path) {
                    Ok(b) => b,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(IdSpill::io(&self.dir, e)),
                };
                let mut ids: Vec<u128> = bytes
                    .chunks_exact(16)
                    .map(|c| u128::from_be_bytes(c.try_into().unwrap_or([0; 16])))
                    .collect();
                drop(bytes);
                ids.sort_unstable();
                ids.dedup();
                let mut batch = sled::Batch::default();
                super::identity::append(source, &ids, first, &mut batch)?;
                first = false;
                store
                    .activity
                    .apply_batch(batch)
                    .map_err(|e| store.fail("restoring", e))?;
                std::fs::remove_file(&path).map_err(|e| IdSpill::io(&self.dir, e))?;
            }
        }
        remove_dir(&self.dir)
    }
}

const A: usize = 0;
const L: usize = 1;
const O: usize = 2;
const M: usize = 3;

impl Restorer {
    /// Opens a new store at `cfg.path` (which must not hold one).
    pub(super) fn new(cfg: &StoreConfig) -> Result<Restorer, StoreError> {
        if super::files::inspect(&cfg.path)? != super::files::Found::Nothing {
            return Err(StoreError::Backup(format!(
                "{} already holds a store; restore only into a new one (move it aside first)",
                cfg.path.display()
            )));
        }
        Ok(Restorer {
            store: Store::open_with(cfg, super::Create::Yes)?,
            batches: Default::default(),
            activity: Vec::new(),
            pending: 0,
            account: None,
            written: None,
            ids: IdSpill::new(sibling(&cfg.path, "ids"))?,
            totals: Totals::default(),
        })
    }

    pub(super) fn add(&mut self, r: Record) -> Result<(), StoreError> {
        let bad = |what: &str| StoreError::Backup(format!("a `{what}` record is not valid"));
        let (tree, key, value): (usize, Vec<u8>, Vec<u8>) = match r {
            Record::Header(_) | Record::End(_) => return Err(bad("header/end in the middle")),
            Record::Series(Series {
                account,
                source,
                kind,
                days,
            }) => {
                for name in [&account, &source, &kind] {
                    super::check_name(name)?;
                }
                self.totals.events += days.iter().map(|(_, c)| c).sum::<u64>();
                self.totals.records += 1;
                let map = days.into_iter().map(|(d, c)| (Day(d), c)).collect();
                if self.account.as_ref().is_none_or(|(a, _)| *a != account) {
                    self.end_account()?;
                    self.account = Some((account, BTreeMap::new()));
                }
                if let Some((_, channels)) = self.account.as_mut() {
                    channels.insert((source, kind), encode_series(&map));
                }
                return Ok(());
            }
            Record::Ids(Ids { source, ids }) => return self.add_ids(source, &ids, "ids"),
            // Schema 2 kept ids per day; they go where every id goes now.
            Record::Seen(Seen { source, ids, .. }) => return self.add_ids(source, &ids, "seen"),
            Record::Once(Once { source, id, .. }) => return self.add_ids(source, &id, "once"),
            Record::Parked(Parked {
                source,
                day,
                events,
            }) => {
                let mut map = foldhash::HashMap::default();
                for (h, a) in events {
                    let h: [u8; 16] = B64
                        .decode(h)
                        .ok()
                        .and_then(|b| b.try_into().ok())
                        .ok_or_else(|| bad("parked"))?;
                    map.insert(u128::from_be_bytes(h), a.into_boxed_str());
                }
                (
                    A,
                    key2(P_UNMATCHED, &source, &Day(day).to_key())?,
                    encode_parked(&map),
                )
            }
            Record::LastSeen(LastSeen {
                account,
                source,
                kind,
                day,
                actor,
            }) => {
                let mut v = Day(day).to_key().to_vec();
                v.extend_from_slice(actor.as_bytes());
                (
                    A,
                    super::activity::channel_key(P_LAST, &account, &source, &kind)?,
                    v,
                )
            }
            Record::People(People {
                account,
                source,
                kind,
                people,
            }) => (
                A,
                super::people::key(&account, &source, &kind)?,
                super::people::encode(
                    &people
                        .into_iter()
                        .map(|(name, days)| (name, days.into_iter().map(Day).collect()))
                        .collect(),
                ),
            ),
            Record::Coverage(Coverage {
                source,
                by,
                first,
                last,
            }) => {
                if first > last {
                    return Err(bad("coverage"));
                }
                (
                    A,
                    coverage::key(&source, by, Day(first))?,
                    Day(last).to_key().to_vec(),
                )
            }
            Record::Cursor(Cursor { source, value }) => {
                (A, key1(P_CURSOR, &source)?, value.get().as_bytes().to_vec())
            }
            Record::State(State { account, memory }) => (
                L,
                key_bare(P_STATE, &account)?,
                memory.get().as_bytes().to_vec(),
            ),
            Record::Judged(Judged { day }) => {
                (L, ALERTS_LAST_DAY.to_vec(), Day(day).to_key().to_vec())
            }
            Record::Stale(Stale { source, last_data }) => (
                L,
                key_bare(P_STALE, &source)?,
                Day(last_data).to_key().to_vec(),
            ),
            Record::Feedback(Feedback {
                account,
                day,
                kind,
                feedback,
            }) => (
                L,
                super::snoozes::feedback_key(&account, Day(day), &kind)?,
                feedback.get().as_bytes().to_vec(),
            ),
            Record::Nonce(Nonce { id, until }) => {
                (L, key_bare(P_NONCE, &id)?, Day(until).to_key().to_vec())
            }
            Record::Snooze(Snooze { account, snooze }) => (
                L,
                key_bare(P_SNOOZE, &account)?,
                snooze.get().as_bytes().to_vec(),
            ),
            Record::Outbox(Outbox {
                day,
                account,
                kind,
                notice,
                receiver,
            }) => {
                let n = super::QueuedNotice {
                    day: Day(day),
                    account: account.into(),
                    kind,
                    body: Vec::new(),
                    receiver,
                };
                (O, n.key()?, notice.get().as_bytes().to_vec())
            }
            Record::Mail(Mail { message_id, record }) => {
                if message_id.is_empty() {
                    return Err(bad("mail"));
                }
                (M, message_id.into_bytes(), record.get().as_bytes().to_vec())
            }
        };
        self.totals.records += 1;
        self.write(tree, key, value)
    }

    /// Takes base64 id hashes of `source` (a record of type `what`).
    fn add_ids(&mut self, source: String, b64: &str, what: &str) -> Result<(), StoreError> {
        let bad = || StoreError::Backup(format!("a `{what}` record is not valid"));
        let v = B64.decode(b64).map_err(|_| bad())?;
        if v.len() % 16 != 0 {
            return Err(bad());
        }
        super::check_name(&source)?;
        self.ids.add(&source, &v)?;
        self.totals.records += 1;
        Ok(())
    }

    /// Writes the series of the account whose records ended, merged with
    /// what an earlier run of its records wrote (a later record of a
    /// channel replaces an earlier one, as a later key did).
    fn end_account(&mut self) -> Result<(), StoreError> {
        let Some((account, mut channels)) = self.account.take() else {
            return Ok(());
        };
        let key = key_bare(P_BUCKET, &account)?;
        if self.written.as_ref().is_some_and(|w| *w >= account) {
            self.apply()?;
            let stored = self.store.get(&key, "restoring")?;
            if let Some(v) = stored {
                let old = decode_channels(&v).ok_or_else(|| damaged(SERIES, &key))?;
                for c in old {
                    channels
                        .entry((c.source.to_string(), c.kind.to_string()))
                        .or_insert_with(|| c.series.to_vec());
                }
            }
        }
        let value = encode_channels(
            channels
                .iter()
                .map(|((s, k), v)| (s.as_str(), k.as_str(), v.as_slice())),
        );
        if self.written.as_ref().is_none_or(|w| *w < account) {
            self.written = Some(account);
        }
        self.write(A, key, value)
    }

    /// Queues one write for [`Restorer::apply`], which runs once
    /// [`RESTORE_BATCH_BYTES`] are queued.
    fn write(&mut self, tree: usize, key: Vec<u8>, value: Vec<u8>) -> Result<(), StoreError> {
        self.pending += key.len() + value.len();
        if tree == A {
            self.activity.push((key, value));
        } else {
            self.batches[tree].insert(key, value);
        }
        if self.pending >= RESTORE_BATCH_BYTES {
            self.apply()?;
        }
        Ok(())
    }

    /// Writes what is queued. A backup's records come in key order, and
    /// sled applies a batch in key order too: keys inserted in ascending
    /// order leave every node it splits half full, which made a restored
    /// or upgraded store 30–40 % larger than one written in any other
    /// order (100k accounts: 2.83 GB against 2.35 GB scattered, same
    /// data, same time). The activity writes are scattered by a hash of
    /// the key (stable: a key written twice keeps its last value) and
    /// inserted one by one — the new store is not in place until it is
    /// complete, so no batch needs to be atomic.
    fn apply(&mut self) -> Result<(), StoreError> {
        let s = &self.store;
        let mut writes = std::mem::take(&mut self.activity);
        writes.sort_by_key(|(k, _)| xxhash_rust::xxh3::xxh3_64(k));
        for (k, v) in writes {
            s.activity
                .insert(k, v)
                .map_err(|e| s.fail("restoring", e))?;
        }
        let trees: [&sled::Tree; 4] = [&s.activity, &s.alerts, &s.outbox, &s.mail];
        for (batch, tree) in self.batches.iter_mut().zip(trees) {
            let b = std::mem::take(batch);
            tree.apply_batch(b).map_err(|e| s.fail("restoring", e))?;
        }
        self.pending = 0;
        Ok(())
    }

    /// Applies what is left, gives every tree its first generation and
    /// makes it all durable; returns the closed store's totals.
    pub(super) fn finish(mut self) -> Result<Totals, StoreError> {
        self.end_account()?;
        self.apply()?;
        self.ids.finish(&self.store)?;
        let mut w = self.store.begin(0)?;
        let trees: [(&'static str, &sled::Tree); 4] = [
            (TREE_ACTIVITY, &self.store.activity),
            (TREE_ALERTS, &self.store.alerts),
            (TREE_OUTBOX, &self.store.outbox),
            (TREE_MAIL, &self.store.mail),
        ];
        for (name, tree) in trees {
            let (k, v) = w.bump(name);
            tree.insert(k, &v).map_err(|e| w.failed("restoring", e))?;
        }
        w.finish()?;
        Ok(self.totals)
    }
}

/// Reads a backup file's records, checking its header, its order and its
/// end; each record goes to `f`. Errors name the file and line.
pub fn read(
    input: impl std::io::Read,
    name: &str,
    mut f: impl FnMut(Record) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut reader = std::io::BufReader::new(flate2::read::GzDecoder::new(input));
    let mut hash = Xxh3::new();
    let mut buf = Vec::new();
    let mut line = 0u64;
    let mut records = 0u64;
    let at = |line: u64, msg: String| StoreError::Backup(format!("{name}:{line}: {msg}"));
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf).map_err(|e| {
            at(
                line + 1,
                format!("cannot read it ({e}): is it a lull backup, whole?"),
            )
        })?;
        if n == 0 {
            return Err(at(
                line,
                "the file ends without its end record: the backup is incomplete".into(),
            ));
        }
        line += 1;
        let rec = Record::parse(&buf).map_err(|e| at(line, format!("not a backup record: {e}")))?;
        match (&rec, line) {
            (Record::Header(Header { lull_backup, .. }), 1) => {
                if *lull_backup != FORMAT {
                    return Err(at(
                        1,
                        format!(
                            "backup format {lull_backup}; this lull reads format {FORMAT} (use the lull that wrote it)"
                        ),
                    ));
                }
            }
            (_, 1) => return Err(at(1, "the first line is not a backup header".into())),
            (Record::End(End { records: n, xxh3 }), _) => {
                let digest = format!("{:016x}", hash.digest());
                if *n != records || *xxh3 != digest {
                    return Err(at(
                        line,
                        format!(
                            "the end record does not match what came before ({records} records, checksum {digest}): the file was damaged"
                        ),
                    ));
                }
                let mut rest = Vec::new();
                let _ = std::io::Read::read_to_end(&mut reader, &mut rest);
                if rest.iter().any(|b| !b.is_ascii_whitespace()) {
                    return Err(at(line + 1, "data after the end record".into()));
                }
                return Ok(());
            }
            (Record::Header(Header { .. }), _) => return Err(at(line, "a second header".into())),
            _ => {
                records += 1;
                f(rec).map_err(|e| match e {
                    StoreError::Backup(m) => at(line, m),
                    other => other,
                })?;
            }
        }
        hash.update(&buf);
    }
}

/// Rebuilds a store at `cfg.path` from the backup `file`: into a folder
/// beside it first, renamed into place only when every record is in and
/// synced. The store path must not hold a store.
pub fn restore(cfg: &StoreConfig, file: &Path) -> Result<Totals, StoreError> {
    let input = std::fs::File::open(file)
        .map_err(|e| StoreError::Backup(format!("cannot open {}: {e}", file.display())))?;
    load(cfg, |add| read(input, &file.display().to_string(), add))
}

/// Builds a new store at `cfg.path` from records that `records` hands to
/// the function it is given (a backup's, or generated ones: the bulk-load
/// path, whose cost does not grow with the store). Like [`restore`], into
/// a folder beside it first, renamed into place when complete.
pub fn load(
    cfg: &StoreConfig,
    records: impl FnOnce(&mut dyn FnMut(Record) -> Result<(), StoreError>) -> Result<(), StoreError>,
) -> Result<Totals, StoreError> {
    match super::files::inspect(&cfg.path)? {
        super::files::Found::Nothing => {}
        super::files::Found::Store => {
            return Err(StoreError::Backup(format!(
                "{p} already holds a store; restore only into a new one: move it aside first (`mv {p} {p}.old`)",
                p = cfg.path.display()
            )));
        }
    }
    let temp = sibling(&cfg.path, "restoring");
    remove_dir(&temp)?;
    let tcfg = StoreConfig {
        path: temp.clone(),
        ..cfg.clone()
    };
    let mut r = Restorer::new(&tcfg)?;
    records(&mut |rec| r.add(rec))?;
    let totals = r.finish()?;
    // An empty folder may stand where the store goes.
    if cfg.path.exists() {
        std::fs::remove_dir(&cfg.path).map_err(|e| {
            StoreError::Backup(format!("cannot replace {}: {e}", cfg.path.display()))
        })?;
    }
    std::fs::rename(&temp, &cfg.path)
        .map_err(|e| StoreError::Backup(format!("moving the restored store into place: {e}")))?;
    sync_parent(&cfg.path);
    Ok(totals)
}

/// `PATH.<what>`: a folder beside the store.
pub(super) fn sibling(path: &Path, what: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{what}"));
    PathBuf::from(s)
}

pub(super) fn remove_dir(p: &Path) -> Result<(), StoreError> {
    match std::fs::remove_dir_all(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StoreError::Backup(format!(
            "cannot remove {}: {e}",
            p.display()
        ))),
    }
}

pub(super) fn sync_parent(p: &Path) {
    if let Some(parent) = p.parent()
        && let Ok(d) = std::fs::File::open(if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        })
    {
        let _ = d.sync_all();
    }
}

/// The newest backup in `dir` (by name: backups are named by their time).
pub fn newest(dir: &Path) -> Option<PathBuf> {
    list(dir).into_iter().next_back()
}

/// The backups in `dir`, oldest first.
pub fn list(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("lull-") && n.ends_with(SUFFIX))
        })
        .collect();
    out.sort();
    out
}

/// A backup file name for `at`: `lull-20261128T023000Z.backup.gz`.
pub fn file_name(at: chrono::DateTime<chrono::Utc>, tag: &str) -> String {
    format!("lull-{}{tag}{SUFFIX}", at.format("%Y%m%dT%H%M%SZ"))
}

/// When a backup was taken, from its name (`lull-20261128T023000Z…`).
pub fn taken_at(p: &Path) -> Option<chrono::DateTime<chrono::Utc>> {
    let name = p.file_name().and_then(|n| n.to_str())?;
    let t = name.strip_prefix("lull-")?.get(..16)?;
    chrono::NaiveDateTime::parse_from_str(t, "%Y%m%dT%H%M%SZ")
        .ok()
        .map(|t| t.and_utc())
}

/// "taken 2026-11-28 02:30 UTC", from the file's name.
pub fn describe_age(p: &Path) -> String {
    taken_at(p)
        .map(|t| format!("taken {} UTC", t.format("%Y-%m-%d %H:%M")))
        .unwrap_or_else(|| "the newest one".into())
}

/// Deletes all but the `keep` newest backups in `dir`; returns them.
pub fn prune(dir: &Path, keep: usize) -> Vec<PathBuf> {
    let all = list(dir);
    let n = all.len().saturating_sub(keep);
    let mut removed = Vec::new();
    for p in all.into_iter().take(n) {
        if std::fs::remove_file(&p).is_ok() {
            removed.push(p);
        }
    }
    removed
}

impl Store {
    /// The checks of a backup without restoring it: its records are read
    /// and decoded, and its end record verified.
    pub fn verify(file: &Path) -> Result<Totals, StoreError> {
        let input = std::fs::File::open(file)
            .map_err(|e| StoreError::Backup(format!("cannot open {}: {e}", file.display())))?;
        let mut totals = Totals::default();
        read(input, &file.display().to_string(), |r| {
            totals.records += 1;
            if let Record::Series(Series { days, .. }) = &r {
                totals.events += days.iter().map(|(_, c)| c).sum::<u64>();
            }
            Ok(())
        })?;
        Ok(totals)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Ingest, Owner};

    #[test]
    fn series_records_in_any_order_restore_into_one_value_per_account() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = crate::store::tests::config(dir.path());
        let series = |account: &str, source: &str, kind: &str, days: &[(i32, u64)]| {
            Record::Series(Series {
                account: account.into(),
                source: source.into(),
                kind: kind.into(),
                days: days.to_vec(),
            })
        };
        // acme's records are cut in two by globex's; its forum posts come
        // twice (the later record replaces the earlier, as a later key
        // did).
        let records = vec![
            series("acme", "forum", "post", &[(10, 1)]),
            series("acme", "mail", "open", &[(11, 2)]),
            series("globex", "forum", "post", &[(12, 3)]),
            series("acme", "forum", "post", &[(10, 4), (13, 1)]),
            series("acme", "zendesk", "ticket", &[(14, 5)]),
        ];
        let totals = load(&cfg, |add| records.into_iter().try_for_each(add)).unwrap();
        assert_eq!(totals.records, 5);
        let s = Store::open(&cfg).unwrap();
        type Channel = (String, String, Vec<(Day, u64)>);
        let read = |account: &str| -> Vec<Channel> {
            s.account_series(&account.into())
                .unwrap()
                .into_iter()
                .map(|s| (s.source.0, s.kind.0, s.entries))
                .collect()
        };
        let own = |source: &str, kind: &str, days: &[(i32, u64)]| {
            let days = days.iter().map(|(d, c)| (Day(*d), *c)).collect();
            (source.to_string(), kind.to_string(), days)
        };
        assert_eq!(
            read("acme"),
            vec![
                own("forum", "post", &[(10, 4), (13, 1)]),
                own("mail", "open", &[(11, 2)]),
                own("zendesk", "ticket", &[(14, 5)]),
            ]
        );
        assert_eq!(read("globex"), vec![own("forum", "post", &[(12, 3)])]);
        let all: Vec<String> = s.series().map(|r| r.unwrap().account.0).collect();
        assert_eq!(all, ["acme", "acme", "acme", "globex"]);
    }

    #[test]
    fn backup_restore_backup_gives_the_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let s = crate::store::tests::open(dir.path());
        let mut i = Ingest::default();
        i.add("forum", "1", Owner::Account("acme"), "post", Day(10), 2)
            .unwrap();
        i.add(
            "forum",
            "2",
            Owner::Unmatched { actor: "bob@x.com" },
            "post",
            Day(11),
            1,
        )
        .unwrap();
        i.add_once("mail", "m|a", Owner::Account("acme"), "open", Day(12))
            .unwrap();
        i.seen_by("acme", "forum", "post", Day(10), "wile_e");
        i.coverage = vec![
            (
                "forum".into(),
                Span {
                    first: Day(1),
                    last: Day(20),
                },
                Origin::Import,
            ),
            (
                "forum".into(),
                Span {
                    first: Day(25),
                    last: Day(30),
                },
                Origin::Poll,
            ),
        ];
        i.cursors = vec![("forum".into(), br#"{"before":7}"#.to_vec())];
        s.commit(&i).unwrap();
        s.set_snooze(
            &"acme".into(),
            Some(&serde_json::json!({"until": "2030-01-01"})),
        )
        .unwrap();
        s.record_detection(
            Day(30),
            &[(&"acme".into(), serde_json::json!({"state": "silent"}))],
            &[
                crate::store::QueuedNotice {
                    day: Day(30),
                    account: "acme".into(),
                    kind: "silent".into(),
                    body: br#"{"n":1}"#.to_vec(),
                    receiver: None,
                },
                crate::store::QueuedNotice {
                    day: Day(30),
                    account: "globex".into(),
                    kind: "silent".into(),
                    body: br#"{"n":2}"#.to_vec(),
                    receiver: None,
                },
            ],
            &[("mail".into(), Some(Day(12)))],
        )
        .unwrap();
        // Globex's notice routed to two receivers: two copies replace it,
        // and routing it again (a pass that raced) adds nothing.
        let globex = s.queued().unwrap().into_iter().nth(1).unwrap();
        let routed = vec![(globex, vec!["email".to_string(), "crm".to_string()])];
        s.dispatch(&routed).unwrap();
        s.dispatch(&routed).unwrap();
        let copies = |s: &Store| -> Vec<(String, Option<String>)> {
            s.queued()
                .unwrap()
                .into_iter()
                .map(|q| (q.account.to_string(), q.receiver))
                .collect()
        };
        let want = vec![
            ("acme".to_string(), None),
            ("globex".to_string(), Some("crm".to_string())),
            ("globex".to_string(), Some("email".to_string())),
        ];
        assert_eq!(copies(&s), want);
        s.record_mail("<m1@x>", &serde_json::json!({"status": "sent"}), &[])
            .unwrap();
        let one = dir.path().join("one.backup.gz");
        let t1 = s.backup_file(&one).unwrap();
        assert_eq!(t1.events, 3);
        drop(s);

        let cfg2 = crate::store::tests::config(&dir.path().join("two"));
        let t2 = restore(&cfg2, &one).unwrap();
        assert_eq!(t1, t2);
        let s2 = Store::open(&cfg2).unwrap();
        let two = dir.path().join("two.backup.gz");
        s2.backup_file(&two).unwrap();
        assert_eq!(std::fs::read(&one).unwrap(), std::fs::read(&two).unwrap());
        assert_eq!(copies(&s2), want, "routed copies survive a restore");
        // Restored, it counts nothing twice.
        let mut again = Ingest::default();
        again
            .add("forum", "1", Owner::Account("acme"), "post", Day(10), 2)
            .unwrap();
        assert_eq!(s2.commit(&again).unwrap().duplicates, 1);
        // Restoring over a store is refused.
        let err = restore(&cfg2, &one).unwrap_err().to_string();
        assert!(err.contains("already holds a store"), "{err}");
    }

    #[test]
    fn a_cut_or_altered_backup_is_refused_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let s = crate::store::tests::open(dir.path());
        let mut i = Ingest::default();
        for n in 0..50 {
            i.add(
                "forum",
                &n.to_string(),
                Owner::Account("acme"),
                "post",
                Day(n),
                1,
            )
            .unwrap();
        }
        s.commit(&i).unwrap();
        let f = dir.path().join("b.backup.gz");
        s.backup_file(&f).unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(
            &mut flate2::read::GzDecoder::new(std::fs::File::open(&f).unwrap()),
            &mut text,
        )
        .unwrap();
        let write = |t: &str| {
            let mut e = gzip(std::fs::File::create(&f).unwrap());
            e.write_all(t.as_bytes()).unwrap();
            e.finish().unwrap();
        };
        let lines: Vec<&str> = text.lines().collect();
        write(&(lines[..lines.len() - 1].join("\n") + "\n"));
        let err = Store::verify(&f).unwrap_err().to_string();
        assert!(err.contains("incomplete"), "{err}");
        write(&text.replace("\"acme\"", "\"acmf\""));
        let err = Store::verify(&f).unwrap_err().to_string();
        assert!(err.contains("was damaged"), "{err}");
        std::fs::write(&f, b"not gzip").unwrap();
        let err = Store::verify(&f).unwrap_err().to_string();
        assert!(err.contains(":1:"), "{err}");
    }
}
