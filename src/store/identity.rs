//! Identity: which events were counted, by (source, id), whatever day or
//! time zone they came with.
//!
//! An event id is kept as its 128-bit xxh3 hash. A source's hashes are
//! split by hash range into *leaves* of a few hundred: key `i` · source · 0
//! · lo (16 bytes, big-endian), value the sorted hashes `h` with
//! `lo <= h < ` the next leaf's lo. A source's first leaf has lo 0, so every
//! hash has exactly one leaf. A commit reads and rewrites only the leaves
//! its ids fall in, and a leaf holds at most [`MAX_LEAF`] hashes (one that
//! grows past it splits), so an event costs the same in a store of a
//! thousand events as in one of fifty million. (Version 2 kept the markers
//! per source and day: an id that came again with another day, or a day
//! moved by a time-zone change, was counted twice.)

use std::ops::Bound;

use super::{SEP, Store, StoreError, check_name};

/// The key space of the leaves in the `activity` tree.
pub(super) const P_IDENTITY: u8 = b'i';
/// A leaf past this many hashes splits...
const MAX_LEAF: usize = 512;
/// ...into leaves of this many.
const SPLIT: usize = 256;
const HASH: usize = 16;

/// What a damaged leaf is called in errors.
pub(super) const WHAT: &str = "the ids of counted events";

/// The dedupe identity of an event id.
pub fn hash(id: &str) -> u128 {
    xxhash_rust::xxh3::xxh3_128(id.as_bytes())
}

/// The key of `source`'s leaf starting at `lo`.
pub(super) fn key(source: &str, lo: u128) -> Result<Vec<u8>, StoreError> {
    let s = check_name(source)?;
    let mut k = Vec::with_capacity(2 + s.len() + HASH);
    k.push(P_IDENTITY);
    k.extend_from_slice(s);
    k.push(SEP);
    k.extend_from_slice(&lo.to_be_bytes());
    Ok(k)
}

/// A leaf's source and lo, from its key.
pub(super) fn decode_key(k: &[u8]) -> Option<(&str, u128)> {
    let body = k.get(1..)?;
    let split = body.len().checked_sub(HASH + 1)?;
    if body[split] != SEP || k.first() != Some(&P_IDENTITY) {
        return None;
    }
    let source = std::str::from_utf8(&body[..split]).ok()?;
    let lo = u128::from_be_bytes(body[split + 1..].try_into().ok()?);
    Some((source, lo))
}

/// A leaf's lo, from its key; a key that is not a leaf's is damage.
fn lo_of(k: &[u8]) -> Result<u128, StoreError> {
    decode_key(k)
        .map(|(_, lo)| lo)
        .ok_or_else(|| super::activity::damaged(WHAT, k))
}

/// A leaf's hashes, checked: whole hashes, strictly ascending, all at or
/// above the leaf's lo.
pub(super) fn decode(lo: u128, v: &[u8]) -> Option<Vec<u128>> {
    if v.len() % HASH != 0 {
        return None;
    }
    let hashes: Vec<u128> = v
        .chunks_exact(HASH)
        .map(|c| u128::from_be_bytes(c.try_into().unwrap_or([0; HASH])))
        .collect();
    let ordered = hashes.first().is_none_or(|f| *f >= lo) && hashes.is_sorted_by(|a, b| a < b);
    ordered.then_some(hashes)
}

fn encode(hashes: &[u128]) -> Vec<u8> {
    let mut v = Vec::with_capacity(hashes.len() * HASH);
    for h in hashes {
        v.extend_from_slice(&h.to_be_bytes());
    }
    v
}

/// One leaf read for a commit, and which of the commit's ids fall in it.
#[derive(Debug)]
pub(super) struct Leaf {
    lo: u128,
    hashes: Vec<u128>,
    /// The range of the looked-up ids that fall in this leaf.
    pub ids: std::ops::Range<usize>,
}

impl Leaf {
    /// Whether `h` (one of this leaf's ids) was counted before.
    pub fn knows(&self, h: u128) -> bool {
        self.hashes.binary_search(&h).is_ok()
    }
}

/// The leaves of `source` that hold the ids `sorted` (ascending, distinct),
/// in order; a source with none yet gets its empty first leaf.
pub(super) fn leaves(
    store: &Store,
    source: &str,
    sorted: &[u128],
) -> Result<Vec<Leaf>, StoreError> {
    let tree = &store.activity;
    let read = |e: sled::Error| store.fail("reading the ids of counted events", e);
    let first = key(source, 0)?;
    let last = key(source, u128::MAX)?;
    let mut out = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let here = key(source, sorted[i])?;
        let leaf = match tree.range(first.as_slice()..=here.as_slice()).next_back() {
            None => None,
            Some(r) => Some(r.map_err(read)?),
        };
        let (leaf_key, lo, hashes) = match leaf {
            None => (first.clone(), 0, Vec::new()),
            Some((k, v)) => {
                let lo = lo_of(&k)?;
                let hashes = decode(lo, &v).ok_or_else(|| super::activity::damaged(WHAT, &k))?;
                (k.to_vec(), lo, hashes)
            }
        };
        let next = tree
            .range::<&[u8], _>((
                Bound::Excluded(leaf_key.as_slice()),
                Bound::Included(last.as_slice()),
            ))
            .next();
        let next_lo = match next {
            None => None,
            Some(r) => Some(lo_of(&r.map_err(read)?.0)?),
        };
        if hashes.last().zip(next_lo).is_some_and(|(h, n)| *h >= n) {
            return Err(super::activity::damaged(WHAT, &leaf_key));
        }
        let end = i + sorted[i..].partition_point(|h| next_lo.is_none_or(|n| *h < n));
        out.push(Leaf {
            lo,
            hashes,
            ids: i..end,
        });
        i = end;
    }
    Ok(out)
}

/// Adds `new` (ascending, distinct, none known) to `leaf` in `batch`,
/// splitting it when it grows past [`MAX_LEAF`].
pub(super) fn add(
    source: &str,
    leaf: &Leaf,
    new: &[u128],
    batch: &mut sled::Batch,
) -> Result<(), StoreError> {
    if new.is_empty() {
        return Ok(());
    }
    let mut merged = Vec::with_capacity(leaf.hashes.len() + new.len());
    let (mut a, mut b) = (leaf.hashes.iter().peekable(), new.iter().peekable());
    loop {
        let next = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) if x <= y => a.next(),
            (Some(_), Some(_)) | (None, Some(_)) => b.next(),
            (Some(_), None) => a.next(),
            (None, None) => break,
        };
        merged.extend(next.copied());
    }
    if merged.len() <= MAX_LEAF {
        batch.insert(key(source, leaf.lo)?, encode(&merged));
        return Ok(());
    }
    for (n, chunk) in merged.chunks(SPLIT).enumerate() {
        let lo = if n == 0 { leaf.lo } else { chunk[0] };
        batch.insert(key(source, lo)?, encode(chunk));
    }
    Ok(())
}

/// Writes the leaves of `source` for `sorted` (ascending, distinct), a
/// hash range no leaf of the store holds yet and above every id written
/// before: a fresh store being restored, range by range. `first` is
/// whether these are the source's first ids (its first leaf starts at 0).
pub(super) fn append(
    source: &str,
    sorted: &[u128],
    first: bool,
    batch: &mut sled::Batch,
) -> Result<(), StoreError> {
    for (n, chunk) in sorted.chunks(SPLIT).enumerate() {
        let lo = if first && n == 0 { 0 } else { chunk[0] };
        batch.insert(key(source, lo)?, encode(chunk));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = crate::store::tests::open(dir.path());
        (dir, s)
    }

    /// Adds ids through leaves() and add(), as a commit does.
    fn put(t: &Store, ids: &[u128]) -> usize {
        let mut sorted = ids.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let leaves = leaves(t, "s", &sorted).unwrap();
        let mut batch = sled::Batch::default();
        let mut added = 0;
        for leaf in &leaves {
            let new: Vec<u128> = sorted[leaf.ids.clone()]
                .iter()
                .copied()
                .filter(|h| !leaf.knows(*h))
                .collect();
            added += new.len();
            add("s", leaf, &new, &mut batch).unwrap();
        }
        t.activity.apply_batch(batch).unwrap();
        added
    }

    #[test]
    fn every_id_is_found_in_its_one_leaf_after_splits() {
        let (_d, t) = tree();
        let mut x: u128 = 0x9e37_79b9_7f4a_7c15;
        let mut all = Vec::new();
        for round in 0..20 {
            let batch: Vec<u128> = (0..300)
                .map(|_| {
                    x = x.wrapping_mul(0x2545_f491_4f6c_dd1d_9e37_79b9_7f4a_7c15) ^ (x >> 61);
                    x
                })
                .collect();
            assert_eq!(put(&t, &batch), 300, "round {round}");
            all.extend(batch);
            // Everything added so far is known again, nothing is added twice.
            assert_eq!(put(&t, &all), 0, "round {round}");
        }
        // Leaves stay small and cover the whole range from 0.
        let leaves: Vec<_> = t
            .activity
            .scan_prefix([P_IDENTITY])
            .map(|r| r.unwrap())
            .collect();
        assert!(leaves.len() > 12, "{}", leaves.len());
        assert_eq!(decode_key(&leaves[0].0), Some(("s", 0)));
        assert!(leaves.iter().all(|(_, v)| v.len() / HASH <= MAX_LEAF));
        let total: usize = leaves.iter().map(|(_, v)| v.len() / HASH).sum();
        assert_eq!(total, all.len());
    }

    #[test]
    fn a_damaged_leaf_is_an_error_naming_it() {
        let (_d, t) = tree();
        put(&t, &[5, 9]);
        t.activity
            .insert(key("s", 0).unwrap(), &[1u8, 2, 3][..])
            .unwrap();
        let err = leaves(&t, "s", &[7]).unwrap_err().to_string();
        assert!(err.contains(WHAT) && err.contains("is·"), "{err}");
        // Out of order is damage too.
        let mut v = 9u128.to_be_bytes().to_vec();
        v.extend_from_slice(&5u128.to_be_bytes());
        t.activity.insert(key("s", 0).unwrap(), v).unwrap();
        assert!(leaves(&t, "s", &[7]).is_err());
    }
}
