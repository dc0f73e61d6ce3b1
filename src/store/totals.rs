//! Community totals: every account's daily counts summed per (source,
//! kind), kept as ingests commit, so a detection run reads a few values
//! instead of every account's series a second time.
//!
//! Derived data, never backed up: `T` · source · 0 · kind → the summed
//! series (the layout of an account's series), `a` · bucket → the
//! accounts that have series, by a hash of the name (to leave out those
//! the accounts file no longer lists), and `T` alone → the activity
//! generation they are current at. [`Store::commit`] adds what it counts
//! in the same atomic batch and moves the stamp along; any other writer
//! of series (a restore, an upgrade, an older lull) leaves the stamp
//! behind, and the next open sums every series again ([`rebuild`]). A
//! reader that finds the stamp behind, or a value damaged, reads the
//! series instead ([`Store::community_totals`] says `None`).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use super::activity::{damaged, decode_series, encode_series};
use super::{SEP, Store, StoreError, check_name};
use crate::types::{AccountId, Day, Kind, SourceName};

const P_TOTALS: u8 = b'T';
const P_ACCOUNT: u8 = b'a';
/// The stamp: the activity generation the totals are current at.
const STAMP: &[u8] = b"T";

const WHAT: &str = "the community totals";
const WHAT_ACCOUNT: &str = "the list of accounts with activity";

/// Per (source, kind), each day's summed count.
pub type Totals = HashMap<(SourceName, Kind), BTreeMap<Day, u64>>;

/// Keys and the values a commit gives them.
type Writes = Vec<(Vec<u8>, Vec<u8>)>;

/// What one commit adds to the totals.
#[derive(Default)]
pub(super) struct Added<'a> {
    /// (source, kind) → day → count added.
    counts: HashMap<(&'a str, &'a str), BTreeMap<Day, u64>>,
    /// Accounts that got their first series.
    accounts: HashSet<&'a str>,
}

impl<'a> Added<'a> {
    /// `n` more on `day` (every channel a commit touches gets totals,
    /// also when what it adds is 0, as a scan of the series would).
    pub fn count(&mut self, source: &'a str, kind: &'a str, day: Day, n: u64) {
        let days = self.counts.entry((source, kind)).or_default();
        if n > 0 {
            *days.entry(day).or_insert(0) += n;
        }
    }

    pub fn new_account(&mut self, account: &'a str) {
        self.accounts.insert(account);
    }
}

fn totals_key(source: &str, kind: &str) -> Result<Vec<u8>, StoreError> {
    let (s, k) = (check_name(source)?, check_name(kind)?);
    let mut key = Vec::with_capacity(2 + s.len() + k.len());
    key.push(P_TOTALS);
    key.extend_from_slice(s);
    key.push(SEP);
    key.extend_from_slice(k);
    Ok(key)
}

fn decode_totals_key(k: &[u8]) -> Option<(SourceName, Kind)> {
    let mut parts = k.get(1..)?.splitn(2, |&b| b == SEP);
    let source = std::str::from_utf8(parts.next()?).ok()?;
    let kind = std::str::from_utf8(parts.next()?).ok()?;
    Some((SourceName::from(source), Kind::from(kind)))
}

/// The accounts with series are listed in this many values, by a hash of
/// the name: an account's first series rewrites one small value, and all
/// of them are read in a few hundred look-ups (one key per account cost
/// seconds to write and a fifth of a second to read at 100,000).
const ACCOUNT_BUCKETS: u16 = 256;

fn account_key(account: &str) -> Result<[u8; 2], StoreError> {
    check_name(account)?;
    let bucket = xxhash_rust::xxh3::xxh3_64(account.as_bytes()) % u64::from(ACCOUNT_BUCKETS);
    Ok([P_ACCOUNT, bucket as u8])
}

/// A bucket of accounts (key `a` · bucket): their names, sorted, each
/// ended by a 0 byte.
fn decode_bucket(k: &[u8], v: &[u8]) -> Option<BTreeSet<String>> {
    if k.len() != 2 {
        return None;
    }
    if v.last().is_some_and(|b| *b != SEP) {
        return None;
    }
    v.split(|b| *b == SEP)
        .filter(|n| !n.is_empty())
        .map(|n| String::from_utf8(n.to_vec()).ok())
        .collect()
}

fn encode_accounts<'n>(names: impl IntoIterator<Item = &'n str>) -> Vec<u8> {
    let mut v = Vec::new();
    for n in names {
        v.extend_from_slice(n.as_bytes());
        v.push(SEP);
    }
    v
}

impl Store {
    /// The activity generation the totals are current at, if they are
    /// kept: `None` before the first commit of a new store (nothing to sum).
    fn totals_stamp(&self) -> Result<Option<u64>, StoreError> {
        let Some(v) = self.get(STAMP, "reading the community totals")? else {
            return Ok(None);
        };
        <[u8; 8]>::try_from(v.as_ref())
            .map(|b| Some(u64::from_be_bytes(b)))
            .map_err(|_| damaged(WHAT, STAMP))
    }

    /// Whether the totals hold every series the activity tree holds now.
    fn totals_current(&self) -> Result<bool, StoreError> {
        let generation = self.activity_generation()?;
        Ok(match self.totals_stamp()? {
            Some(stamp) => stamp == generation,
            // A new store: no series, nothing to sum.
            None => {
                generation == 0
                    && self
                        .activity
                        .scan_prefix([super::P_BUCKET])
                        .next()
                        .is_none()
            }
        })
    }

    /// The activity tree's generation, as the last write left it.
    fn activity_generation(&self) -> Result<u64, StoreError> {
        super::generation(&self.activity)
            .map_err(|e| self.fail("reading the store's generation", e))
    }

    /// Puts what a commit counted into `batch`, which also moves the
    /// activity generation to `next` (the stamp goes with it). Totals that
    /// were not current stay so; totals found damaged are left behind (the
    /// stamp goes), to be summed again when the store next opens: derived
    /// data never holds up a commit.
    pub(super) fn add_to_totals(
        &self,
        added: Added<'_>,
        next: &[u8; 8],
        batch: &mut sled::Batch,
    ) -> Result<(), StoreError> {
        let writes = match self.totals_current() {
            Ok(false) => return Ok(()),
            Ok(true) => self.totals_added(added)?,
            Err(e) => Err(e),
        };
        match writes {
            Ok(writes) => {
                for (key, value) in writes {
                    batch.insert(key, value);
                }
                batch.insert(STAMP, &next[..]);
            }
            Err(e) => {
                left_behind(self, &e);
                batch.remove(STAMP);
            }
        }
        Ok(())
    }

    /// The values `added` changes, with what they become; `Ok(Err)` for
    /// damaged totals.
    fn totals_added(&self, added: Added<'_>) -> Result<Result<Writes, StoreError>, StoreError> {
        let mut writes = Vec::with_capacity(added.counts.len());
        for ((source, kind), days) in added.counts {
            let key = totals_key(source, kind)?;
            let old = self.get(&key, "reading the community totals")?;
            let Some(mut sum) = decode_series(old.as_deref().unwrap_or(&[])) else {
                return Ok(Err(damaged(WHAT, &key)));
            };
            for (day, n) in days {
                let s = sum.entry(day).or_insert(0);
                *s = s.saturating_add(n);
            }
            writes.push((key, encode_series(&sum)));
        }
        let mut buckets: BTreeMap<[u8; 2], Vec<&str>> = BTreeMap::new();
        for account in added.accounts {
            buckets
                .entry(account_key(account)?)
                .or_default()
                .push(account);
        }
        for (key, new) in buckets {
            let old = self.get(&key, "reading the community totals")?;
            let Some(mut names) = decode_bucket(&key, old.as_deref().unwrap_or(&[])) else {
                return Ok(Err(damaged(WHAT_ACCOUNT, &key)));
            };
            names.extend(new.into_iter().map(str::to_string));
            writes.push((
                key.to_vec(),
                encode_accounts(names.iter().map(String::as_str)),
            ));
        }
        Ok(Ok(writes))
    }

    /// Every account's counts from `from` to `to` summed per (source,
    /// kind), leaving out the accounts `keep` refuses; `None` when the
    /// totals are behind the series, or damaged (logged by name): reading
    /// every series is the way then. Only days with a count are listed.
    pub fn community_totals(
        &self,
        from: Day,
        to: Day,
        keep: impl Fn(&str) -> bool,
    ) -> Result<Option<Totals>, StoreError> {
        // Under the write lock: the totals, the accounts and their series
        // are read at one instant.
        let read = self.consistent(|| self.read_totals(from, to, keep))?;
        Ok(read.unwrap_or_else(|e| {
            left_behind(self, &e);
            None
        }))
    }

    /// [`Store::community_totals`]: `Ok(Err)` for damaged totals.
    fn read_totals(
        &self,
        from: Day,
        to: Day,
        keep: impl Fn(&str) -> bool,
    ) -> Result<Result<Option<Totals>, StoreError>, StoreError> {
        match self.totals_current() {
            Ok(true) => {}
            Ok(false) => return Ok(Ok(None)),
            Err(e) => return Ok(Err(e)),
        }
        let mut totals = Totals::new();
        for r in self.activity.scan_prefix([P_TOTALS]) {
            let (k, v) = r.map_err(|e| self.fail("reading the community totals", e))?;
            if k.as_ref() == STAMP {
                continue;
            }
            let Some((channel, days)) = decode_totals_key(&k).zip(decode_series(&v)) else {
                return Ok(Err(damaged(WHAT, &k)));
            };
            totals.insert(
                channel,
                days.range(from..=to).map(|(d, n)| (*d, *n)).collect(),
            );
        }
        // Accounts the accounts file no longer lists: their counts come
        // off again.
        let mut left_out = Vec::new();
        for r in self.activity.scan_prefix([P_ACCOUNT]) {
            let (k, v) = r.map_err(|e| self.fail("reading the community totals", e))?;
            let Some(names) = decode_bucket(&k, &v) else {
                return Ok(Err(damaged(WHAT_ACCOUNT, &k)));
            };
            left_out.extend(names.into_iter().filter(|a| !keep(a)));
        }
        for account in left_out {
            for s in self.account_series(&AccountId(account))? {
                let key = totals_key(s.source.as_str(), s.kind.as_str())?;
                let days = totals.entry((s.source, s.kind)).or_default();
                for (day, n) in s.entries {
                    if n == 0 || day < from || day > to {
                        continue;
                    }
                    // Totals that hold less than one account's count were
                    // not summed from these series.
                    match days.get_mut(&day).and_then(|sum| sum.checked_sub(n)) {
                        Some(left) => {
                            days.insert(day, left);
                        }
                        None => return Ok(Err(damaged(WHAT, &key))),
                    }
                }
            }
        }
        Ok(Ok(Some(totals)))
    }
}

/// Logs derived data that cannot be used, by name: it is summed again
/// when the store next opens.
fn left_behind(store: &Store, e: &StoreError) {
    tracing::warn!(store = %store.path().display(), error = %e, "the community totals cannot be used; detection reads every account's series instead, and they are summed again when the store next opens");
}

/// Makes the totals current if they are not: sums every series again
/// (after a restore, an upgrade, or writes of a lull that did not keep
/// them). One atomic write; a crash before it leaves them behind, to be
/// summed again at the next open.
pub(super) fn rebuild(store: &Store) -> Result<(), StoreError> {
    // Current ones are read once, as detection would: a few hundred values.
    let damage = match store.read_totals(Day(i32::MIN), Day(i32::MAX), |_| true)? {
        Ok(Some(_)) => return Ok(()),
        Ok(None) => None,
        Err(e) => Some(e),
    };
    if let Some(e) = damage {
        tracing::warn!(store = %store.path().display(), error = %e, "the community totals cannot be used; summing them again from every series");
    }
    let started = std::time::Instant::now();
    // Under the write lock, so no commit comes between the sum and the
    // stamp; one atomic write of a few hundred values.
    let w = store.begin(0)?;
    let mut batch = sled::Batch::default();
    for prefix in [P_TOTALS, P_ACCOUNT] {
        for k in store.activity.scan_prefix([prefix]).keys() {
            batch.remove(k.map_err(|e| store.fail("reading the community totals", e))?);
        }
    }
    let mut totals: HashMap<(SourceName, Kind), DaySums> = HashMap::new();
    let mut buckets: BTreeMap<[u8; 2], Vec<u8>> = BTreeMap::new();
    let mut accounts = 0usize;
    let mut last_account = None;
    for s in store.series() {
        let s = s?;
        if last_account.as_ref() != Some(&s.account) {
            // In store order, each bucket's names come sorted.
            let names = buckets.entry(account_key(s.account.as_str())?).or_default();
            names.extend(encode_accounts([s.account.as_str()]));
            accounts += 1;
            last_account = Some(s.account);
        }
        totals
            .entry((s.source, s.kind))
            .or_default()
            .add(&s.entries);
    }
    for (key, names) in buckets {
        batch.insert(&key[..], names);
    }
    for ((source, kind), days) in &totals {
        batch.insert(
            totals_key(source.as_str(), kind.as_str())?,
            encode_series(&days.listed()),
        );
    }
    batch.insert(STAMP, &store.activity_generation()?.to_be_bytes()[..]);
    store
        .activity
        .apply_batch(batch)
        .map_err(|e| w.failed("writing the community totals", e))?;
    w.finish()?;
    tracing::info!(
        store = %store.path().display(),
        accounts,
        channels = totals.len(),
        took_ms = started.elapsed().as_millis() as u64,
        "summed every account's activity into the community totals"
    );
    Ok(())
}

/// Counts summed by day in one array (a map entry per count made summing
/// 50 million of them take seconds), grown at either end as days come.
#[derive(Default)]
struct DaySums {
    first: i32,
    sums: Vec<u64>,
}

impl DaySums {
    fn add(&mut self, entries: &[(Day, u64)]) {
        let (Some(lo), Some(hi)) = (entries.first(), entries.last()) else {
            return;
        };
        let (lo, hi) = (lo.0.0, hi.0.0);
        if self.sums.is_empty() {
            self.first = lo;
        }
        if lo < self.first {
            // Room for as many days again before the new first one, so
            // series starting ever earlier do not shift the array each time.
            let grow = (self.first - lo) as usize + self.sums.len();
            let mut sums = vec![0; grow];
            sums.append(&mut self.sums);
            self.sums = sums;
            self.first -= grow as i32;
        }
        let end = (hi - self.first) as usize + 1;
        if end > self.sums.len() {
            self.sums.resize(end, 0);
        }
        for (day, n) in entries {
            let s = &mut self.sums[(day.0 - self.first) as usize];
            *s = s.saturating_add(*n);
        }
    }

    /// The days with a count.
    fn listed(&self) -> BTreeMap<Day, u64> {
        (self.first..)
            .zip(&self.sums)
            .filter(|(_, n)| **n > 0)
            .map(|(d, n)| (Day(d), *n))
            .collect()
    }
}

/// Whether `key` of the activity tree is derived data a backup leaves out
/// (a restored store sums it again when it is first opened).
pub(super) fn is_derived(key: &[u8]) -> bool {
    matches!(key.first(), Some(&P_TOTALS | &P_ACCOUNT))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Ingest, Origin, Owner, Span};

    /// Every series summed per (source, kind) from `from` to `to`, leaving
    /// out the accounts `keep` refuses: what the totals must say.
    fn summed(store: &Store, from: Day, to: Day, keep: impl Fn(&str) -> bool) -> Totals {
        let mut out = Totals::new();
        for s in store.series() {
            let s = s.unwrap();
            let days = out.entry((s.source, s.kind)).or_default();
            if !keep(s.account.as_str()) {
                continue;
            }
            for (d, n) in s.entries {
                if d >= from && d <= to {
                    *days.entry(d).or_insert(0) += n;
                }
            }
        }
        // Days nobody kept count on are not listed.
        for days in out.values_mut() {
            days.retain(|_, n| *n > 0);
        }
        out
    }

    fn listed(t: Totals) -> Totals {
        t.into_iter()
            .map(|(c, mut days)| {
                days.retain(|_, n| *n > 0);
                (c, days)
            })
            .collect()
    }

    /// Events of accounts a0..a5 on two sources and three kinds, some
    /// ids repeated (in the batch, and from an earlier commit on another
    /// day), some unmatched.
    fn ingest(seed: i32) -> Ingest {
        let mut i = Ingest::default();
        for n in 0..400 {
            let a = format!("a{}", (n / 3 + seed) % 6);
            let day = Day(20_000 + (n * 13 + seed) % 90);
            let (source, kind) =
                [("forum", "post"), ("forum", "reply"), ("desk", "ticket")][(n % 3) as usize];
            // Most ids come again in every commit (counted once).
            let id = if n % 5 == 0 {
                format!("s{seed}-{n}")
            } else {
                format!("e{}", n % 350)
            };
            i.add(
                source,
                &id,
                Owner::Account(&a),
                kind,
                day,
                1 + (n % 4) as u64,
            )
            .unwrap();
        }
        i.add_once(
            "forum",
            "lost",
            Owner::Unmatched { actor: "who@x" },
            "post",
            Day(20_010),
        )
        .unwrap();
        i.coverage = vec![(
            "forum".into(),
            Span {
                first: Day(20_000),
                last: Day(20_100),
            },
            Origin::Poll,
        )];
        i
    }

    #[test]
    fn totals_kept_by_commits_equal_every_series_summed_without_the_accounts_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::tests::open(dir.path());
        for seed in 0..3 {
            store.commit(&ingest(seed)).unwrap();
        }
        let (from, to) = (Day(20_020), Day(20_080));
        for keep in [
            &(|_: &str| true) as &dyn Fn(&str) -> bool,
            &|a: &str| a != "a3",
            &|a: &str| a == "a1",
            &|_: &str| false,
        ] {
            let kept = store.community_totals(from, to, keep).unwrap().unwrap();
            assert_eq!(listed(kept), summed(&store, from, to, keep));
        }
        let all = store
            .community_totals(Day(0), Day(30_000), |_| true)
            .unwrap()
            .unwrap();
        assert_eq!(all.len(), 3, "{all:?}");
        assert!(all.values().map(|d| d.len()).sum::<usize>() > 80);
    }

    /// Opens the closed store at `dir` with sled itself and runs `f` on
    /// its activity tree, as another program (an older lull) would.
    fn with_raw(dir: &std::path::Path, f: impl FnOnce(&sled::Tree)) {
        // The store dropped just before may hold sled's file lock a moment
        // longer (see `store::tests::open`).
        let path = crate::store::tests::config(dir).path;
        let mut tries = 0;
        let db = loop {
            match sled::Config::new().path(&path).open() {
                Err(e) if tries < 250 && e.to_string().contains("could not acquire lock") => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                opened => break opened.unwrap(),
            }
        };
        f(&db.open_tree(crate::store::TREE_ACTIVITY).unwrap());
        db.flush().unwrap();
    }

    #[test]
    fn series_written_without_the_totals_are_summed_again_when_the_store_opens() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::tests::open(dir.path());
        store.commit(&ingest(0)).unwrap();
        drop(store);
        // An older lull counts more for a1 (and moves the generation, as
        // every commit does), leaving the totals as they were.
        with_raw(dir.path(), |t| {
            use crate::store::activity::{decode_channels, encode_channels};
            let key = b"ba1";
            let value = t.get(key).unwrap().unwrap();
            let mut channels: Vec<(&str, &str, Vec<u8>)> = decode_channels(&value)
                .unwrap()
                .into_iter()
                .map(|c| (c.source, c.kind, c.series.to_vec()))
                .collect();
            let post = channels
                .iter_mut()
                .find(|c| (c.0, c.1) == ("forum", "post"))
                .unwrap();
            let mut series = decode_series(&post.2).unwrap();
            *series.entry(Day(20_050)).or_insert(0) += 40;
            post.2 = encode_series(&series);
            t.insert(
                key,
                encode_channels(channels.iter().map(|(s, k, v)| (*s, *k, v.as_slice()))),
            )
            .unwrap();
            let g = crate::store::generation(t).unwrap();
            t.insert(crate::store::GENERATION, &(g + 1).to_be_bytes())
                .unwrap();
        });
        let store = crate::store::tests::open(dir.path());
        let (from, to) = (Day(19_000), Day(21_000));
        let all = store.community_totals(from, to, |_| true).unwrap().unwrap();
        assert_eq!(listed(all), summed(&store, from, to, |_| true));
        drop(store);

        // A restored store has series and no totals: they are summed too,
        // the accounts list with them (a4 is left out).
        with_raw(dir.path(), |t| {
            for p in [P_TOTALS, P_ACCOUNT] {
                for k in t.scan_prefix([p]).keys() {
                    t.remove(k.unwrap()).unwrap();
                }
            }
        });
        let store = crate::store::tests::open(dir.path());
        let kept = store
            .community_totals(from, to, |a| a != "a4")
            .unwrap()
            .unwrap();
        assert_eq!(listed(kept), summed(&store, from, to, |a| a != "a4"));
    }

    #[test]
    fn totals_behind_the_series_are_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::tests::open(dir.path());
        store.commit(&ingest(0)).unwrap();
        // The stamp says an earlier generation: what an open that could not
        // sum them leaves.
        store
            .activity
            .insert(STAMP, &0u64.to_be_bytes()[..])
            .unwrap();
        assert!(
            store
                .community_totals(Day(0), Day(30_000), |_| true)
                .unwrap()
                .is_none()
        );
        // Nor are they kept by the next commit.
        store.commit(&ingest(1)).unwrap();
        assert!(
            store
                .community_totals(Day(0), Day(30_000), |_| true)
                .unwrap()
                .is_none()
        );
    }
}
