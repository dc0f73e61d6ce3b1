//! `lull import`: activity events from JSON Lines, counted exactly once.
//!
//! Lines are read in chunks on the calling thread; a chunk is parsed and
//! resolved on the other cores while the calling thread adds the lines of
//! the chunk before to the batch, in file order; a writer thread commits
//! full batches, so reading, parsing and disk writes overlap.
//! A bad line is reported with its number and skipped; every good line is
//! stored. Coverage (first to last event day, per source) is written last,
//! only after every event of the file is durable: an import cut short never
//! marks a day covered whose events it had not yet stored.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::{BufRead, Read};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Deserialize;

use crate::accounts::{Registry, Resolved};
use crate::limits::Limits;
use crate::store::{Committed, Ingest, Origin, Owner, Registered, Span, Store, StoreError};
use crate::types::{Day, SourceName};

/// Activities per atomic commit of `lull import`. A commit rewrites every
/// value it touches (an account channel's series and people, an id leaf),
/// and with many accounts nearly every batch touches nearly all of them,
/// so fewer, bigger batches mean fewer rewrites: a million events in one
/// commit import in ~3 s, in four of 250,000 in ~4.8 s (10,000 accounts,
/// random order, `benches/import.sh` on a 2-core machine), at a peak RSS
/// of ~330 MiB instead of ~300.
pub const DEFAULT_BATCH: u64 = 1_000_000;

/// Activities per commit of an import sent to the running service: a
/// quarter of [`DEFAULT_BATCH`]: the service's memory matters more than
/// the speed of an import it is sent.
pub const SERVICE_BATCH: u64 = 250_000;

/// A line longer than this is refused unread (a line is one event; a line
/// without end, or binary garbage, would otherwise fill memory).
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// The kind of an event whose line names none.
pub const DEFAULT_KIND: &str = "activity";

/// The id prefix of daily-count lines (the `lull export` format), which
/// have no id of their own: one per (account, kind, day), so importing the
/// same backup twice counts it once.
const DAY_LINE_ID: &str = "\u{1}day";

#[derive(Deserialize)]
struct Line<'a> {
    #[serde(borrow, default)]
    account: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    actor: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    source: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    at: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    day: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(default)]
    count: Option<i128>,
}

/// One valid event line, borrowing from the line (and the registry)
/// wherever it can.
#[derive(Debug)]
struct Event<'a> {
    source: Cow<'a, str>,
    id: Cow<'a, str>,
    owner: Who<'a>,
    /// The identity an account was resolved from (`actor`), if any.
    seen_as: Option<Cow<'a, str>>,
    kind: Cow<'a, str>,
    day: Day,
    count: u64,
}

#[derive(Debug)]
enum Who<'a> {
    /// An account of the registry, and its index there.
    Account(Cow<'a, str>, usize),
    Unmatched(Cow<'a, str>),
}

/// What one line turned out to be.
#[derive(Debug)]
enum Parsed<'a> {
    Event(Event<'a>),
    /// Valid, by the vendor's own staff: covers its day, counts nothing.
    Staff {
        source: Cow<'a, str>,
        day: Day,
    },
    Blank,
}

/// The outcome of an import.
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize, Deserialize, utoipa::ToSchema)]
pub struct Report {
    pub lines: u64,
    pub committed: Committed,
    pub staff: u64,
    pub rejected: u64,
    /// First and last covered day, per source.
    pub covered: BTreeMap<SourceName, (Day, Day)>,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("reading {input} at line {line}: {source}")]
    Read {
        input: String,
        line: u64,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How to import.
#[derive(Debug, Clone)]
pub struct Options {
    /// Days are calendar days in this zone.
    pub tz: Tz,
    /// Activities per atomic commit.
    pub batch_size: usize,
    /// Which days are plausible ([limits]).
    pub limits: Limits,
    /// Today in `tz`: the plausible window ends `future_days` after it,
    /// and no day after it is marked covered (a file cannot say that a
    /// day that has not happened yet had no activity).
    pub today: Day,
}

impl Options {
    /// Days in `tz`, today being `today`, the default batch and limits.
    pub fn new(tz: Tz, today: Day) -> Options {
        Options {
            tz,
            batch_size: DEFAULT_BATCH as usize,
            limits: Limits::default(),
            today,
        }
    }
}

/// Imports JSON Lines from `reader`. `on_reject(line, message)` is called
/// for every bad line; `on_progress(bytes)` after every line read.
pub fn import(
    reader: impl BufRead,
    input: &str,
    store: &Store,
    registry: &Registry,
    options: Options,
    mut on_reject: impl FnMut(u64, &str),
    mut on_progress: impl FnMut(u64),
) -> Result<Report, ImportError> {
    let mut report = Report::default();
    let (tx, rx) = mpsc::sync_channel::<Ingest>(1);
    std::thread::scope(|scope| {
        let writer = scope.spawn(move || -> Result<Committed, StoreError> {
            let mut total = Committed::default();
            for ingest in rx {
                total += store.commit(&ingest)?;
            }
            Ok(total)
        });
        let read = read_lines(
            reader,
            input,
            registry,
            &options,
            &tx,
            &mut report,
            &mut on_reject,
            &mut on_progress,
        );
        // Coverage goes last, after every event batch before it.
        if read.is_ok() && !report.covered.is_empty() {
            let mut last = Ingest::default();
            for (source, (first, end)) in &report.covered {
                let end = (*end).min(options.today);
                if *first <= end {
                    last.coverage.push((
                        source.clone(),
                        Span {
                            first: *first,
                            last: end,
                        },
                        Origin::Import,
                    ));
                }
            }
            let _ = tx.send(last);
        }
        drop(tx);
        let written = writer
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        // A store error explains a failed send too, so it goes first.
        report.committed = written?;
        read
    })?;
    Ok(report)
}

/// Lines read before they are parsed, on every core, then stored in file
/// order: this many, or fewer when they reach [`CHUNK_BYTES`] (lines may
/// be up to [`MAX_LINE_BYTES`] long, so a chunk is bounded by bytes too).
const CHUNK_LINES: usize = 16_384;
const CHUNK_BYTES: usize = 8 << 20;

/// Lines read from the input, not parsed yet: one buffer, and where each
/// line is in it.
#[derive(Default)]
struct Chunk {
    text: Vec<u8>,
    /// Per line: its bytes in `text`, or `None` for a line too long to keep.
    lines: Vec<Option<std::ops::Range<usize>>>,
    /// The file's line number of the first line.
    first: u64,
}

/// Reads lines into chunks, counting them.
struct Filler<'i, R, P> {
    reader: R,
    input: &'i str,
    line_no: u64,
    on_progress: P,
}

/// How filling a chunk ended.
enum Filled {
    /// The chunk is full; more may follow.
    More,
    /// The input ended.
    End,
    /// Reading failed after the lines in the chunk.
    Failed(ImportError),
}

impl<R: BufRead, P: FnMut(u64)> Filler<'_, R, P> {
    /// Fills `chunk` with the next lines (up to [`CHUNK_LINES`] or
    /// [`CHUNK_BYTES`]).
    fn fill(&mut self, chunk: &mut Chunk) -> Filled {
        chunk.text.clear();
        chunk.lines.clear();
        chunk.first = self.line_no + 1;
        while chunk.lines.len() < CHUNK_LINES && chunk.text.len() < CHUNK_BYTES {
            let start = chunk.text.len();
            match read_line(&mut self.reader, &mut chunk.text, &mut self.on_progress) {
                Ok(None) => return Filled::End,
                Ok(Some(kept)) => {
                    self.line_no += 1;
                    chunk.lines.push(kept.then_some(start..chunk.text.len()));
                }
                Err(source) => {
                    return Filled::Failed(ImportError::Read {
                        input: self.input.to_string(),
                        line: self.line_no + 1,
                        source,
                    });
                }
            }
        }
        Filled::More
    }
}

/// Adds parsed lines to the batch in file order, sending it to the writer
/// when full.
struct Adder<'a, J> {
    batch: Ingest,
    report: &'a mut Report,
    on_reject: J,
    tx: &'a mpsc::SyncSender<Ingest>,
    batch_size: usize,
    /// The writer hung up (it failed; its error is reported by the caller).
    writer_gone: bool,
}

impl<J: FnMut(u64, &str)> Adder<'_, J> {
    /// Adds the lines parsed from a chunk, in file order: the first of
    /// two lines with one id wins, and rejects come in line order.
    fn add(&mut self, parsed: ParsedChunk<'_>) {
        let lines = parsed.pieces.into_iter().flat_map(|(_, lines)| lines);
        for (i, p) in lines.enumerate() {
            if self.writer_gone {
                return;
            }
            let line = parsed.first + i as u64;
            match p {
                Ok(Parsed::Blank) => continue,
                Ok(Parsed::Event(e)) => {
                    widen(&mut self.report.covered, &e.source, e.day);
                    // Names were checked for NUL by the parser, so this
                    // cannot fail; if it did, the line is reported like any
                    // other.
                    let batch = &mut self.batch;
                    let added = match (&e.owner, &e.seen_as) {
                        (Who::Account(id, index), Some(actor)) => {
                            let a = Registered { id, index: *index };
                            batch.add_by(&e.source, &e.id, a, &e.kind, e.day, e.count, actor)
                        }
                        (Who::Account(id, index), None) => {
                            let owner = Owner::Registered(Registered { id, index: *index });
                            batch.add(&e.source, &e.id, owner, &e.kind, e.day, e.count)
                        }
                        (Who::Unmatched(actor), _) => {
                            let owner = Owner::Unmatched { actor };
                            batch.add(&e.source, &e.id, owner, &e.kind, e.day, e.count)
                        }
                    };
                    if let Err(err) = added {
                        self.report.rejected += 1;
                        (self.on_reject)(line, &err.to_string());
                    }
                }
                Ok(Parsed::Staff { source, day }) => {
                    widen(&mut self.report.covered, &source, day);
                    self.report.staff += 1;
                }
                Err(msg) => {
                    self.report.rejected += 1;
                    (self.on_reject)(line, &msg);
                }
            }
            if self.batch.len() >= self.batch_size
                && self.tx.send(std::mem::take(&mut self.batch)).is_err()
            {
                self.writer_gone = true;
            }
        }
    }
}

/// Reads, parses and adds the lines of the input. Parsing (on every core)
/// and adding (on this thread, in file order) overlap: while this thread
/// adds the lines of one chunk, the other cores parse the next, and this
/// thread joins them when it is done.
#[allow(clippy::too_many_arguments)]
fn read_lines(
    reader: impl BufRead,
    input: &str,
    registry: &Registry,
    options: &Options,
    tx: &mpsc::SyncSender<Ingest>,
    report: &mut Report,
    on_reject: &mut impl FnMut(u64, &str),
    on_progress: &mut impl FnMut(u64),
) -> Result<(), ImportError> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    let mut filler = Filler {
        reader,
        input,
        line_no: 0,
        on_progress,
    };
    let mut adder = Adder {
        batch: Ingest::default(),
        report,
        on_reject,
        tx,
        batch_size: options.batch_size,
        writer_gone: false,
    };
    // Two chunks, taking turns: one parsed while the other's lines are
    // added. The loop goes through both per round.
    let (mut a, mut b) = (Chunk::default(), Chunk::default());
    let mut filled = filler.fill(&mut a);
    let mut parsed_a = parse_chunk(&a, registry, options, workers, || {});
    let outcome = loop {
        if !matches!(filled, Filled::More) || adder.writer_gone {
            adder.add(parsed_a);
            break filled;
        }
        let (parsed_b, f) = overlapped(
            &mut adder,
            &mut filler,
            parsed_a,
            &mut b,
            registry,
            options,
            workers,
        );
        if !matches!(f, Filled::More) || adder.writer_gone {
            adder.add(parsed_b);
            break f;
        }
        (parsed_a, filled) = overlapped(
            &mut adder,
            &mut filler,
            parsed_b,
            &mut a,
            registry,
            options,
            workers,
        );
    };
    adder.report.lines = filler.line_no;
    if let Filled::Failed(e) = outcome {
        return Err(e);
    }
    if !adder.batch.is_empty() && !adder.writer_gone {
        let _ = tx.send(adder.batch);
    }
    Ok(())
}

/// Fills `next` with the following lines, then adds `parsed` (the lines
/// of the chunk before) while other threads parse `next`, and helps them.
fn overlapped<'n, R: BufRead, P: FnMut(u64), J: FnMut(u64, &str)>(
    adder: &mut Adder<'_, J>,
    filler: &mut Filler<'_, R, P>,
    parsed: ParsedChunk<'_>,
    next: &'n mut Chunk,
    registry: &'n Registry,
    options: &Options,
    workers: usize,
) -> (ParsedChunk<'n>, Filled) {
    let filled = filler.fill(next);
    let parsed_next = parse_chunk(next, registry, options, workers, || adder.add(parsed));
    (parsed_next, filled)
}

/// Appends the next line to `buf`: `Some(true)` when kept, `Some(false)`
/// when it was longer than [`MAX_LINE_BYTES`] (read to its end and
/// dropped), `None` at the end of the input.
fn read_line(
    reader: &mut impl BufRead,
    buf: &mut Vec<u8>,
    on_progress: &mut impl FnMut(u64),
) -> std::io::Result<Option<bool>> {
    let start = buf.len();
    let n = reader
        .take(MAX_LINE_BYTES as u64 + 1)
        .read_until(b'\n', buf)?;
    if n == 0 {
        return Ok(None);
    }
    on_progress(n as u64);
    if n <= MAX_LINE_BYTES || buf.last() == Some(&b'\n') {
        return Ok(Some(true));
    }
    // Skip the rest of the line.
    buf.truncate(start);
    let mut rest = Vec::new();
    loop {
        rest.clear();
        let m = reader
            .take(MAX_LINE_BYTES as u64)
            .read_until(b'\n', &mut rest)?;
        on_progress(m as u64);
        if m == 0 || rest.last() == Some(&b'\n') {
            return Ok(Some(false));
        }
    }
}

/// Lines of a chunk that a parsing thread takes at a time: small enough
/// that the threads finish a chunk together, big enough that taking one
/// costs nothing.
const PIECE_LINES: usize = 256;

/// The lines of a chunk, parsed: pieces of [`PIECE_LINES`] lines in file
/// order, and the file line of the first.
struct ParsedChunk<'a> {
    pieces: Vec<(usize, Vec<Result<Parsed<'a>, String>>)>,
    first: u64,
}

/// Parses pieces of `chunk` until none is left to take (`taken` counts
/// the pieces taken by every thread): the pieces this thread parsed.
fn parse_pieces<'a>(
    chunk: &'a Chunk,
    registry: &'a Registry,
    options: &Options,
    taken: &AtomicUsize,
) -> Vec<(usize, Vec<Result<Parsed<'a>, String>>)> {
    let mut out = Vec::new();
    loop {
        let piece = taken.fetch_add(1, Ordering::Relaxed);
        let lo = piece.saturating_mul(PIECE_LINES);
        if lo >= chunk.lines.len() {
            return out;
        }
        let hi = (lo + PIECE_LINES).min(chunk.lines.len());
        let lines = (lo..hi).map(|i| {
            let Some(at) = chunk.lines[i].clone() else {
                return Err(format!(
                    "the line is longer than {MAX_LINE_BYTES} bytes: not an event"
                ));
            };
            let raw = &chunk.text[at];
            // A byte-order mark (Windows editors) is not part of the data.
            let raw = if chunk.first + i as u64 == 1 {
                raw.strip_prefix(b"\xef\xbb\xbf").unwrap_or(raw)
            } else {
                raw
            };
            parse_line(raw, registry, options)
        });
        out.push((piece, lines.collect()));
    }
}

/// Every line of `chunk` parsed on `workers` threads, this one among
/// them once `meanwhile` (run first, here) is done.
fn parse_chunk<'a>(
    chunk: &'a Chunk,
    registry: &'a Registry,
    options: &Options,
    workers: usize,
    meanwhile: impl FnOnce(),
) -> ParsedChunk<'a> {
    let taken = AtomicUsize::new(0);
    let mut pieces = std::thread::scope(|scope| {
        let others: Vec<_> = (1..workers.max(1))
            .map(|_| scope.spawn(|| parse_pieces(chunk, registry, options, &taken)))
            .collect();
        meanwhile();
        let mut pieces = parse_pieces(chunk, registry, options, &taken);
        for h in others {
            pieces.extend(h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
        }
        pieces
    });
    pieces.sort_unstable_by_key(|(piece, _)| *piece);
    ParsedChunk {
        pieces,
        first: chunk.first,
    }
}

fn widen(covered: &mut BTreeMap<SourceName, (Day, Day)>, source: &str, day: Day) {
    // Keyed by String-backed SourceName; look up without allocating.
    match covered
        .iter_mut()
        .find(|(s, _)| s.as_str() == source)
        .map(|(_, v)| v)
    {
        Some((first, last)) => {
            *first = (*first).min(day);
            *last = (*last).max(day);
        }
        None => {
            covered.insert(SourceName(source.to_string()), (day, day));
        }
    }
}

fn parse_line<'a>(
    raw: &'a [u8],
    registry: &'a Registry,
    options: &Options,
) -> Result<Parsed<'a>, String> {
    let tz = options.tz;
    let text = std::str::from_utf8(raw).map_err(|e| format!("not UTF-8 ({e})"))?;
    let text = text.trim();
    if text.is_empty() {
        return Ok(Parsed::Blank);
    }
    let Line {
        account,
        actor,
        source,
        at,
        day,
        id,
        kind,
        count,
    } = serde_json::from_str(text).map_err(|e| format!("bad JSON: {e}"))?;
    let source = checked("source", source.ok_or("missing `source`")?)?;
    let kind = match kind {
        Some(k) => {
            let k = checked("kind", k)?;
            // A channel is shown as `source:kind` (`mail:open/delivered`
            // for a rate): the kind is what follows the last `:`.
            if k.contains([':', '/']) {
                return Err(format!(
                    "`kind` = {k:?} may not contain `:` or `/` (channels are named source:kind)"
                ));
            }
            k
        }
        None => Cow::Borrowed(DEFAULT_KIND),
    };
    let count = match count {
        None => 1,
        Some(c) if c >= 1 && c <= i128::from(u64::MAX) => c as u64,
        Some(c) => {
            return Err(format!(
                "`count` must be a positive integer, got {c} (at most {})",
                u64::MAX
            ));
        }
    };
    let is_day_line = day.is_some();
    let day = match (at, day) {
        (Some(at), None) => {
            let at = checked("at", at)?;
            let t = DateTime::parse_from_rfc3339(&at)
                .map_err(|e| format!("`at` = {at:?} is not an RFC 3339 timestamp ({e})"))?;
            Day::of(t.with_timezone(&Utc), tz)
        }
        (None, Some(day)) => checked("day", day)?
            .parse::<Day>()
            .map_err(|e| format!("`day`: {e}"))?,
        (Some(_), Some(_)) => {
            return Err("give either `at` (an event) or `day` (a daily count), not both".into());
        }
        (None, None) => return Err("missing `at` (the event's RFC 3339 timestamp)".into()),
    };
    options.limits.check_day(day, options.today)?;
    let mut seen_as = None;
    let owner = match (account, actor) {
        (Some(acc), None) => {
            let acc = checked("account", acc)?;
            let Some(i) = registry.by_id(&acc) else {
                return Err(format!(
                    "unknown account `{acc}` (not in the accounts file; use `actor` for identities to resolve)"
                ));
            };
            Who::Account(acc, i)
        }
        (None, Some(actor)) => {
            let actor = checked("actor", actor)?;
            match registry.resolve(&source, &actor) {
                Resolved::Account(i) => {
                    seen_as = Some(actor);
                    Who::Account(Cow::Borrowed(registry.get(i).id.as_str()), i)
                }
                Resolved::Staff => return Ok(Parsed::Staff { source, day }),
                Resolved::Unmatched => Who::Unmatched(actor),
            }
        }
        (Some(acc), Some(actor)) => {
            // The account decides where the event counts; the actor is the
            // person behind it (any opaque string: a hash will do).
            let acc = checked("account", acc)?;
            let Some(i) = registry.by_id(&acc) else {
                return Err(format!(
                    "unknown account `{acc}` (not in the accounts file; with `actor` alone, identities are resolved)"
                ));
            };
            seen_as = Some(checked("actor", actor)?);
            Who::Account(acc, i)
        }
        (None, None) => return Err("missing `account` (or `actor`)".into()),
    };
    let id = match id {
        Some(id) => checked("id", id)?,
        None if is_day_line => {
            let who = match &owner {
                Who::Account(a, _) | Who::Unmatched(a) => a,
            };
            Cow::Owned(format!("{DAY_LINE_ID}\u{1}{who}\u{1}{kind}\u{1}{day}"))
        }
        None => return Err("missing `id` (unique within its source)".into()),
    };
    Ok(Parsed::Event(Event {
        source,
        id,
        owner,
        seen_as,
        kind,
        day,
        count,
    }))
}

fn checked<'a>(field: &str, v: Cow<'a, str>) -> Result<Cow<'a, str>, String> {
    if v.trim().is_empty() {
        Err(format!("`{field}` is empty"))
    } else if v.contains('\0') {
        Err(format!("`{field}` contains a NUL character"))
    } else {
        Ok(v)
    }
}

/// Fuzz entry (fuzz/): one import line against a small registry. A line is
/// read or rejected with a reason; it never panics.
#[doc(hidden)]
pub fn fuzz(data: &[u8]) {
    let accounts = "[[account]]\nid = \"acme\"\nname = \"Acme\"\ncsm = \"jane@vendor.example\"\ndomains = [\"acme.com\"]\nhandles = { forum = [\"wile_e\"] }\n";
    let Ok(registry) = Registry::from_text(
        std::path::Path::new("accounts.toml"),
        accounts.to_string(),
        &crate::config::IdentityConfig::default(),
    ) else {
        return;
    };
    for tz in [Tz::UTC, Tz::Pacific__Kiritimati] {
        let _ = parse_line(data, &registry, &Options::new(tz, Day::today(tz)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.toml");
        std::fs::write(
            &p,
            "[[account]]\nid = \"acme\"\nname = \"Acme\"\ncsm = \"c@v.example\"\ndomains = [\"acme.com\"]\n",
        )
        .unwrap();
        let mut ident = crate::config::IdentityConfig::default();
        ident
            .ignore_domains
            .push(toml::Spanned::new(0..0, "vendor.example".to_string()));
        Registry::load(&p, &ident).unwrap()
    }

    /// UTC days, today 2026-11-28, the default limits.
    fn test_options(batch_size: usize) -> Options {
        Options {
            batch_size,
            ..Options::new(Tz::UTC, "2026-11-28".parse().unwrap())
        }
    }

    /// Parses one line into a short description, or its error.
    fn parse(s: &str) -> Result<String, String> {
        let reg = registry();
        parse_line(s.as_bytes(), &reg, &test_options(1)).map(|p| match p {
            Parsed::Event(e) => {
                let who = match &e.owner {
                    Who::Account(a, _) => format!("account {a}"),
                    Who::Unmatched(a) => format!("unmatched {a}"),
                };
                format!(
                    "{who} {} {} {} {} x{}",
                    e.source, e.id, e.kind, e.day, e.count
                )
            }
            Parsed::Staff { source, day } => format!("staff {source} {day}"),
            Parsed::Blank => "blank".into(),
        })
    }

    fn err(s: &str) -> String {
        match parse(s) {
            Err(e) => e,
            Ok(p) => panic!("accepted: {s} as {p}"),
        }
    }

    #[test]
    fn good_lines_parse() {
        let ok = |s: &str| parse(s).unwrap();
        assert_eq!(
            ok(
                r#"{"account":"acme","source":"forum","at":"2026-03-02T14:05:00Z","id":"p1","kind":"post"}"#
            ),
            "account acme forum p1 post 2026-03-02 x1"
        );
        assert_eq!(
            ok(
                r#"{"actor":"Bob@Mail.Acme.com","source":"s","at":"2026-03-02T23:05:00-05:00","id":"x","count":3}"#
            ),
            "account acme s x activity 2026-03-03 x3"
        );
        assert_eq!(
            ok(
                r#"{"actor":"x\u0040nowhere.org","source":"s","at":"2026-03-02T23:05:00Z","id":"esc\u00e9"}"#
            ),
            "unmatched x@nowhere.org s escé activity 2026-03-02 x1"
        );
        assert_eq!(
            ok(r#"{"actor":"x@vendor.example","source":"s","at":"2026-03-02T00:00:00Z","id":"x"}"#),
            "staff s 2026-03-02"
        );
        assert_eq!(ok("   \r\n"), "blank");
    }

    #[test]
    fn bad_lines_say_what_is_wrong() {
        assert!(err("{not json").starts_with("bad JSON"));
        assert!(err(r#"{"account":"acme","source":"f","id":"1"}"#).contains("missing `at`"));
        assert!(
            err(r#"{"account":"acme","source":"f","id":"1","at":"2026-13-01T00:00:00Z"}"#)
                .contains("not an RFC 3339")
        );
        assert!(
            err(r#"{"account":"nope","source":"f","id":"1","at":"2026-01-01T00:00:00Z"}"#)
                .contains("unknown account `nope`")
        );
        assert!(
            err(
                r#"{"account":"acme","source":"f","id":"1","at":"2026-01-01T00:00:00Z","count":-2}"#
            )
            .contains("positive integer, got -2")
        );
        assert!(
            err(
                r#"{"account":"acme","source":"f","id":"1","at":"2026-01-01T00:00:00Z","count":0}"#
            )
            .contains("positive")
        );
        assert!(
            err(r#"{"account":"acme","at":"2026-01-01T00:00:00Z","id":"1"}"#)
                .contains("missing `source`")
        );
        assert!(
            err(r#"{"account":"acme","source":"f","at":"2026-01-01T00:00:00Z"}"#)
                .contains("missing `id`")
        );
        assert!(
            err(r#"{"account":"acme","source":"f\u0000","at":"2026-01-01T00:00:00Z","id":"1"}"#)
                .contains("NUL")
        );
        assert!(err(r#"{"account":"nope","actor":"a@acme.com","source":"f","at":"2026-01-01T00:00:00Z","id":"1"}"#).contains("unknown account `nope`"));
        assert!(
            err(r#"{"account":"acme","source":"f","at":"2026-01-01T00:00:00Z","id":"1","kind":"a:b"}"#)
                .contains("may not contain `:`")
        );
        assert!(err("\u{feff}garbage").starts_with("bad JSON"));
        assert!(
            err(r#"{"account":"acme","source":"f","at":"0001-01-01T00:00:00Z","id":"1"}"#)
                .contains("before 1990-01-01")
        );
        assert!(
            err(r#"{"account":"acme","source":"f","at":"9999-12-31T00:00:00Z","id":"1"}"#)
                .contains("in the future")
        );
        assert!(
            err(
                r#"{"account":"acme","source":"f","at":"2026-01-01T00:00:00Z","id":"1","count":0}"#
            )
            .contains("positive")
        );
        // A count as large as a u64 is a count (an export may carry it).
        assert!(parse(r#"{"account":"acme","source":"f","at":"2026-01-01T00:00:00Z","id":"1","count":18446744073709551615}"#).is_ok());
    }

    #[test]
    fn daily_count_lines_from_export_get_a_stable_id() {
        let l = r#"{"account":"acme","source":"forum","kind":"post","day":"2026-03-02","count":4}"#;
        let a = parse(l).unwrap();
        assert_eq!(a, parse(l).unwrap());
        assert!(
            a.starts_with("account acme forum ") && a.ends_with("post 2026-03-02 x4"),
            "{a}"
        );
    }

    /// A reader that serves `text`, then fails.
    struct FailingReader(std::io::Cursor<Vec<u8>>);

    impl std::io::Read for FailingReader {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            match self.0.read(buf)? {
                0 => Err(std::io::Error::other("disk went away")),
                n => Ok(n),
            }
        }
    }

    fn store(dir: &std::path::Path) -> Store {
        crate::store::tests::open(dir)
    }

    fn lines(days: &[&str]) -> String {
        days.iter()
            .enumerate()
            .map(|(i, d)| format!("{{\"account\":\"acme\",\"source\":\"forum\",\"at\":\"{d}T10:00:00Z\",\"id\":\"{i}\"}}\n"))
            .collect()
    }

    /// Imports with UTC days and `batch` events per commit, ignoring
    /// rejects and progress.
    fn import_quietly(
        reader: impl BufRead,
        s: &Store,
        batch: usize,
    ) -> Result<Report, ImportError> {
        let opts = test_options(batch);
        import(reader, "t", s, &registry(), opts, |_, _| {}, |_| {})
    }

    #[test]
    fn a_chunk_parsed_in_pieces_on_many_threads_comes_back_in_line_order() {
        // A whole chunk of lines, each with its own id, every 97th bad.
        let mut chunk = Chunk {
            first: 1,
            ..Chunk::default()
        };
        for i in 0..CHUNK_LINES {
            let start = chunk.text.len();
            let line = if i % 97 == 5 {
                format!("not json {i}\n")
            } else {
                format!(
                    "{{\"account\":\"acme\",\"source\":\"forum\",\"at\":\"2026-03-01T10:00:00Z\",\"id\":\"{i}\"}}\n"
                )
            };
            chunk.text.extend_from_slice(line.as_bytes());
            chunk.lines.push(Some(start..chunk.text.len()));
        }
        let registry = registry();
        let options = test_options(1000);
        let what = |p: &Result<Parsed<'_>, String>| match p {
            Ok(Parsed::Event(e)) => e.id.to_string(),
            Ok(_) => "other".to_string(),
            Err(_) => "bad".to_string(),
        };
        let want: Vec<String> = (0..CHUNK_LINES)
            .map(|i| {
                if i % 97 == 5 {
                    "bad".into()
                } else {
                    i.to_string()
                }
            })
            .collect();
        for workers in [1, 2, 4] {
            // The calling thread takes pieces after the others started.
            let parsed = parse_chunk(&chunk, &registry, &options, workers, || {
                std::thread::sleep(std::time::Duration::from_millis(2))
            });
            let got: Vec<String> = parsed
                .pieces
                .iter()
                .flat_map(|(_, l)| l)
                .map(what)
                .collect();
            assert_eq!(got, want, "{workers} workers");
            assert_eq!(parsed.first, 1);
        }
    }

    #[test]
    fn lines_parsed_in_chunks_on_every_core_are_stored_in_file_order() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let n = 2 * CHUNK_LINES + 100;
        let event = |i: usize, id: usize| {
            format!(
                "{{\"account\":\"acme\",\"source\":\"forum\",\"at\":\"2026-03-{:02}T10:00:00Z\",\"id\":\"{id}\"}}\n",
                1 + i % 28
            )
        };
        let mut text = String::from("\u{feff}");
        let mut bad = Vec::new();
        for i in 1..=n {
            if i == CHUNK_LINES || i == CHUNK_LINES + 1 || i == n {
                // Bad lines on both sides of a chunk's end, and last.
                text.push_str("{not json\n");
                bad.push(i as u64);
            } else if i == 7 {
                text.push_str(&"x".repeat(MAX_LINE_BYTES + 10));
                text.push('\n');
                bad.push(7);
            } else if (100..109).contains(&i) {
                // Long lines, 8 MiB together: a chunk ends by bytes here.
                text.push_str(&event(i, i).replace(
                    &format!("\"id\":\"{i}\""),
                    &format!("\"id\":\"{i}-{}\"", "y".repeat(1_000_000)),
                ));
            } else if i == CHUNK_LINES + 50 {
                // The id of line 2 again, on another day: counted once,
                // on line 2's day.
                text.push_str(&event(0, 2));
            } else {
                text.push_str(&event(i, i));
            }
        }
        let mut rejected = Vec::new();
        let r = import(
            text.as_bytes(),
            "t",
            &s,
            &registry(),
            test_options(1000),
            |l, m| rejected.push((l, m.to_string())),
            |_| {},
        )
        .unwrap();
        assert_eq!(r.lines, n as u64);
        assert_eq!(rejected.iter().map(|r| r.0).collect::<Vec<_>>(), bad);
        assert!(rejected[0].1.contains("longer than"), "{:?}", rejected[0]);
        assert!(rejected[1].1.starts_with("bad JSON"), "{:?}", rejected[1]);
        assert_eq!(r.committed.counted, (n - bad.len() - 1) as u64);
        assert_eq!(r.committed.duplicates, 1);
        // Per day, what the good lines say: line 1 behind its byte-order
        // mark, and line 2's id on line 2's day (2026-03-03), not on the
        // later line's (2026-03-01).
        let mut expected = BTreeMap::new();
        for i in (1..=n).filter(|i| !bad.contains(&(*i as u64)) && *i != CHUNK_LINES + 50) {
            *expected.entry(1 + i % 28).or_insert(0u64) += 1;
        }
        let mut stored = BTreeMap::new();
        for b in s.buckets(None, None) {
            let b = b.unwrap();
            *stored
                .entry(b.day.to_string()[8..].parse::<usize>().unwrap())
                .or_insert(0u64) += b.count;
        }
        assert_eq!(stored, expected);
    }

    #[test]
    fn an_import_covers_first_to_last_day_per_source() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let text = lines(&["2026-03-05", "2026-03-01", "2026-03-03"]);
        let r = import_quietly(text.as_bytes(), &s, 1).unwrap();
        assert_eq!(r.committed.counted, 3);
        let covered: Vec<String> = s
            .coverage(&"forum".into())
            .unwrap()
            .iter()
            .map(|s| format!("{}..{}", s.first, s.last))
            .collect();
        assert_eq!(covered, ["2026-03-01..2026-03-05"]);
    }

    #[test]
    fn an_import_cut_short_marks_no_day_covered() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let text = lines(&["2026-03-01", "2026-03-02", "2026-03-09"]);
        let reader =
            std::io::BufReader::new(FailingReader(std::io::Cursor::new(text.into_bytes())));
        let err = import_quietly(reader, &s, 1).unwrap_err();
        assert!(err.to_string().contains("reading t at line 4"), "{err}");
        // Events already committed stay (a re-run dedupes them), but no day
        // is covered: an unfinished import must not make days look silent.
        assert!(s.coverage(&"forum".into()).unwrap().is_empty());
        assert_eq!(s.buckets(None, None).count(), 3);
    }

    #[test]
    fn a_bad_file_leaves_stored_counts_alone() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let good = lines(&["2026-03-01", "2026-03-02"]);
        import_quietly(good.as_bytes(), &s, 2).unwrap();
        let before: Vec<_> = s.buckets(None, None).map(|b| b.unwrap()).collect();
        let bad = "{\"account\":\"acme\"\n\u{0}\u{1}garbage\n{\"account\":\"x\",\"source\":\"forum\",\"at\":\"2026-03-01T00:00:00Z\",\"id\":\"0\"}\n";
        let mut rejected = Vec::new();
        let opts = test_options(2);
        let r = import(
            bad.as_bytes(),
            "bad",
            &s,
            &registry(),
            opts,
            |l, _| rejected.push(l),
            |_| {},
        )
        .unwrap();
        assert_eq!((r.rejected, rejected), (3, vec![1, 2, 3]));
        let after: Vec<_> = s.buckets(None, None).map(|b| b.unwrap()).collect();
        assert_eq!(before, after);
    }
}
