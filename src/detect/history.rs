//! Dense day-indexed histories with prefix sums, so any window sum — all
//! days, or only one weekday — costs two lookups.
//!
//! A [`Timeline`] fixes the first and last day; a [`Prefix`] holds a day
//! array over it (an account's counts, or which days a source covered)
//! with two prefix sums: a plain one and a stride-7 one (`s7[i] = x[i] +
//! s7[i-7]`), from which the sum over days of one weekday in a window
//! falls out directly.

use std::cell::RefCell;
use std::sync::OnceLock;

use crate::types::Day;

thread_local! {
    /// Day arrays this thread finished with, kept for the next account: a
    /// daily run builds a dozen arrays of a few hundred days per account,
    /// 100,000 times, and fresh memory for each (zeroed pages from the
    /// kernel) cost more than the sums themselves.
    static SPARE: RefCell<Vec<Vec<f64>>> = const { RefCell::new(Vec::new()) };
}

/// Spare arrays kept per thread: enough for one account's history.
const SPARES: usize = 32;

/// `n` zeros, in a spare array of this thread when it has one.
pub fn zeroed(n: usize) -> Vec<f64> {
    let mut v = SPARE
        .try_with(|s| s.borrow_mut().pop())
        .ok()
        .flatten()
        .unwrap_or_default();
    v.clear();
    v.resize(n, 0.0);
    v
}

/// Keeps `v` for [`zeroed`] on this thread (up to [`SPARES`] arrays).
pub fn spare(v: Vec<f64>) {
    if v.capacity() == 0 {
        return;
    }
    let _ = SPARE.try_with(|s| {
        let mut s = s.borrow_mut();
        if s.len() < SPARES {
            s.push(v);
        }
    });
}

/// The days a detection pass looks at: `first..=last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeline {
    pub first: Day,
    pub last: Day,
}

impl Timeline {
    pub fn len(&self) -> usize {
        (self.last.0 - self.first.0 + 1).max(0) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The index of `day`, if it is on the timeline.
    pub fn index(&self, day: Day) -> Option<usize> {
        (day >= self.first && day <= self.last).then(|| (day.0 - self.first.0) as usize)
    }

    pub fn day(&self, index: usize) -> Day {
        self.first.plus(index as i32)
    }
}

/// No values at all (a source that never covered anything).
pub static EMPTY: Prefix = Prefix {
    plain: Vec::new(),
    values: Vec::new(),
    s7: OnceLock::new(),
};

/// Prefix sums over a day-indexed array of values.
#[derive(Debug, Clone, Default)]
pub struct Prefix {
    /// `plain[i]` = sum of values before index i (len n + 1).
    plain: Vec<f64>,
    /// The values themselves (len n).
    values: Vec<f64>,
    /// `s7[i]` = value[i] + s7[i - 7] (len n), made on the first
    /// weekday sum: most prefixes never need one.
    s7: OnceLock<Vec<f64>>,
}

impl Prefix {
    pub fn from_values(values: &[f64]) -> Prefix {
        let mut v = zeroed(0);
        v.extend_from_slice(values);
        Prefix::from_vec(v)
    }

    /// The sums of `values`, which the prefix keeps.
    pub fn from_vec(values: Vec<f64>) -> Prefix {
        let mut plain = zeroed(0);
        plain.reserve(values.len() + 1);
        let mut acc = 0.0;
        plain.push(0.0);
        for v in &values {
            acc += v;
            plain.push(acc);
        }
        Prefix {
            plain,
            values,
            s7: OnceLock::new(),
        }
    }

    /// [`Prefix::from_vec`] of `K` arrays of one length at once. Each sum
    /// is a chain of dependent additions; walking `K` chains side by side
    /// lets the processor overlap them (each is added in the same order as
    /// alone, so the sums are the same to the last bit).
    pub fn from_vecs<const K: usize>(values: [Vec<f64>; K]) -> [Prefix; K] {
        let n = values.first().map_or(0, Vec::len);
        if values.iter().any(|v| v.len() != n) {
            return values.map(Prefix::from_vec);
        }
        let mut plain: [Vec<f64>; K] = std::array::from_fn(|_| zeroed(n + 1));
        {
            let mut acc = [0.0; K];
            let outs: [&mut [f64]; K] = plain.each_mut().map(|p| &mut p[1..]);
            let ins: [&[f64]; K] = values.each_ref().map(|v| &v[..n]);
            for i in 0..n {
                for k in 0..K {
                    acc[k] += ins[k][i];
                    outs[k][i] = acc[k];
                }
            }
        }
        let mut plain = plain.into_iter();
        values.map(|values| Prefix {
            plain: plain.next().unwrap_or_default(),
            values,
            s7: OnceLock::new(),
        })
    }

    /// [`Prefix::from_vec`] of every array, up to four at once
    /// ([`Prefix::from_vecs`]).
    pub fn many(values: Vec<Vec<f64>>) -> Vec<Prefix> {
        let mut out = Vec::with_capacity(values.len());
        let mut rest = values.into_iter();
        loop {
            match (rest.next(), rest.next(), rest.next(), rest.next()) {
                (Some(a), Some(b), Some(c), Some(d)) => out.extend(Prefix::from_vecs([a, b, c, d])),
                (Some(a), Some(b), Some(c), None) => out.extend(Prefix::from_vecs([a, b, c])),
                (Some(a), Some(b), None, _) => out.extend(Prefix::from_vecs([a, b])),
                (Some(a), None, _, _) => out.push(Prefix::from_vec(a)),
                (None, _, _, _) => break,
            }
        }
        out
    }

    fn s7(&self) -> &[f64] {
        self.s7.get_or_init(|| {
            let mut s7 = zeroed(0);
            s7.extend_from_slice(&self.values);
            for i in 7..s7.len() {
                s7[i] += s7[i - 7];
            }
            s7
        })
    }

    /// Sum over indices `lo..=hi`, clipped to the timeline; 0 when empty.
    pub fn sum(&self, lo: i64, hi: i64) -> f64 {
        let n = self.values.len() as i64;
        let (lo, hi) = (lo.max(0), hi.min(n - 1));
        if lo > hi {
            return 0.0;
        }
        self.plain[(hi + 1) as usize] - self.plain[lo as usize]
    }

    /// Sum over the indices `i` in `lo..=hi` with `i % 7 == residue`.
    pub fn sum_residue(&self, lo: i64, hi: i64, residue: i64) -> f64 {
        let n = self.values.len() as i64;
        let (lo, hi) = (lo.max(0), hi.min(n - 1));
        if lo > hi {
            return 0.0;
        }
        let last = hi - (hi - residue).rem_euclid(7);
        let first = lo + (residue - lo).rem_euclid(7);
        if first > last {
            return 0.0;
        }
        let s7 = self.s7();
        let below = if first >= 7 {
            s7[(first - 7) as usize]
        } else {
            0.0
        };
        s7[last as usize] - below
    }

    /// The values, one per day of the timeline.
    pub fn values(&self) -> &[f64] {
        &self.values
    }

    /// The value at one index (0 off the timeline).
    pub fn at(&self, i: i64) -> f64 {
        usize::try_from(i)
            .ok()
            .and_then(|i| self.values.get(i))
            .map_or(0.0, |v| *v)
    }
}

impl Drop for Prefix {
    fn drop(&mut self) {
        spare(std::mem::take(&mut self.plain));
        spare(std::mem::take(&mut self.values));
        if let Some(s7) = self.s7.take() {
            spare(s7);
        }
    }
}

/// Adds sparse entries into an existing dense array (community totals).
pub fn accumulate(
    timeline: Timeline,
    into: &mut [f64],
    entries: impl IntoIterator<Item = (Day, u64)>,
) {
    for (day, count) in entries {
        if let Some(i) = timeline.index(day) {
            into[i] += count as f64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_and_weekday_sums_match_a_direct_count() {
        let values: Vec<f64> = (0..40).map(|i| ((i * 7919) % 5) as f64).collect();
        let p = Prefix::from_values(&values);
        for lo in -3..42i64 {
            for hi in lo..45 {
                let direct: f64 = (lo.max(0)..=hi.min(39)).map(|i| values[i as usize]).sum();
                assert_eq!(p.sum(lo, hi), direct, "{lo}..={hi}");
                for r in 0..7 {
                    let direct: f64 = (lo.max(0)..=hi.min(39))
                        .filter(|i| i % 7 == r)
                        .map(|i| values[i as usize])
                        .sum();
                    assert_eq!(p.sum_residue(lo, hi, r), direct, "{lo}..={hi} r{r}");
                }
            }
        }
    }
}
