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
    s7: OnceLock::new(),
};

/// Prefix sums over a day-indexed array of whole numbers (counts, covered
/// days, people): a day's value is the difference of two sums, exactly.
#[derive(Debug, Clone, Default)]
pub struct Prefix {
    /// `plain[i]` = sum of values before index i (len n + 1; empty for
    /// an empty timeline).
    plain: Vec<f64>,
    /// `s7[i]` = value[i] + s7[i - 7] (len n), made on the first
    /// weekday sum: most prefixes never need one.
    s7: OnceLock<Vec<f64>>,
}

impl Prefix {
    pub fn from_values(values: &[f64]) -> Prefix {
        debug_assert!(values.iter().all(|v| v.fract() == 0.0), "whole numbers");
        let mut plain = zeroed(0);
        plain.reserve(values.len() + 1);
        let mut acc = 0.0;
        plain.push(0.0);
        for v in values {
            acc += v;
            plain.push(acc);
        }
        Prefix::from_plain(plain)
    }

    /// [`Prefix::from_values`], giving `values` back to this thread's
    /// spares.
    pub fn from_vec(values: Vec<f64>) -> Prefix {
        let p = Prefix::from_values(&values);
        spare(values);
        p
    }

    /// Sums already made: `plain[0]` is 0 and `plain[i + 1] - plain[i]`
    /// is day i's value.
    pub fn from_plain(plain: Vec<f64>) -> Prefix {
        Prefix {
            plain,
            s7: OnceLock::new(),
        }
    }

    /// The sums of sparse `entries` (day index, count; ascending, each
    /// index below `n` once), each count times its day's `coverage` (0 or
    /// 1; none: every day counts 0). Runs between entries are filled at once: the
    /// cost follows the entries and `n`, with no day array in between.
    pub fn from_entries(entries: &[(u32, u64)], coverage: Option<&[f64]>, n: usize) -> Prefix {
        let mut plain = zeroed(n + 1);
        let Some(cov) = coverage else {
            return Prefix::from_plain(plain);
        };
        // Summed as integers (coverage is 0 or 1): the same sums as in
        // floating point, without a chain of float additions per entry.
        let mut acc: u64 = 0;
        // The first index not yet written (plain[0] is 0).
        let mut at = 1;
        for &(i, count) in entries {
            let i = i as usize;
            if i >= n {
                break;
            }
            // Days before `i` add nothing: the sum so far, repeated.
            plain[at..=i].fill(acc as f64);
            if cov[i] > 0.0 {
                acc = acc.saturating_add(count);
            }
            plain[i + 1] = acc as f64;
            at = i + 2;
        }
        plain[at..].fill(acc as f64);
        Prefix::from_plain(plain)
    }

    /// Days on the timeline.
    pub fn len(&self) -> usize {
        self.plain.len().saturating_sub(1)
    }

    /// The sums before each index `0..=len` (`[0]` is 0).
    pub fn sums(&self) -> &[f64] {
        &self.plain
    }

    fn s7(&self) -> &[f64] {
        self.s7.get_or_init(|| {
            let mut s7 = zeroed(0);
            s7.extend(self.values());
            for i in 7..s7.len() {
                s7[i] += s7[i - 7];
            }
            s7
        })
    }

    /// Sum over indices `lo..=hi`, clipped to the timeline; 0 when empty.
    pub fn sum(&self, lo: i64, hi: i64) -> f64 {
        let n = self.len() as i64;
        let (lo, hi) = (lo.max(0), hi.min(n - 1));
        if lo > hi {
            return 0.0;
        }
        self.plain[(hi + 1) as usize] - self.plain[lo as usize]
    }

    /// Sums over the indices `i` in `lo..=hi` (clipped to the timeline)
    /// by weekday: `[r]` is the sum over those with `i % 7 == r`. The last
    /// index of each weekday is one of the window's last seven, the first
    /// one of its first seven: two lookups each, all seven at once.
    pub fn sums_by_residue(&self, lo: i64, hi: i64) -> [f64; 7] {
        let mut out = [0.0; 7];
        let n = self.len() as i64;
        let (lo, hi) = (lo.max(0), hi.min(n - 1));
        if lo > hi {
            return out;
        }
        let s7 = self.s7();
        // Residues advance with the index: one division each for the
        // window's ends, none per weekday (this runs for every count
        // channel on every day a backtest replays).
        let start = lo.max(hi - 6);
        let lo_r = lo % 7;
        let mut r = start % 7;
        for last in start..=hi {
            // The first index of residue `r` at or after `lo`.
            let ahead = if r >= lo_r { r - lo_r } else { r - lo_r + 7 };
            let first = lo + ahead;
            let below = if first >= 7 {
                s7[(first - 7) as usize]
            } else {
                0.0
            };
            out[r as usize] = s7[last as usize] - below;
            r = if r == 6 { 0 } else { r + 1 };
        }
        out
    }

    /// The values, one per day of the timeline.
    pub fn values(&self) -> impl Iterator<Item = f64> + '_ {
        self.plain.windows(2).map(|w| w[1] - w[0])
    }

    /// The value at one index (0 off the timeline).
    pub fn at(&self, i: i64) -> f64 {
        match usize::try_from(i) {
            Ok(i) if i < self.len() => self.plain[i + 1] - self.plain[i],
            _ => 0.0,
        }
    }
}

impl Drop for Prefix {
    fn drop(&mut self) {
        spare(std::mem::take(&mut self.plain));
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
    fn sums_of_sparse_entries_equal_the_sums_of_their_masked_days() {
        let n = 60;
        let cov: Vec<f64> = (0..n).map(|i| f64::from(u8::from(i % 11 != 3))).collect();
        // Entries on the first and last day, runs of empty days between,
        // one beyond the timeline (ignored).
        let entries: Vec<(u32, u64)> = [0u32, 1, 3, 14, 15, 40, 59, 61]
            .iter()
            .map(|&i| (i, u64::from(i % 4 + 1)))
            .collect();
        let mut days = vec![0.0; n];
        for &(i, c) in &entries {
            if (i as usize) < n {
                days[i as usize] = c as f64 * cov[i as usize];
            }
        }
        let dense = Prefix::from_values(&days);
        let sparse = Prefix::from_entries(&entries, Some(&cov), n);
        assert_eq!(sparse.sums(), dense.sums());
        assert_eq!(sparse.values().collect::<Vec<_>>(), days);
        for i in -2..n as i64 + 2 {
            let direct = usize::try_from(i).ok().and_then(|i| days.get(i)).copied();
            assert_eq!(sparse.at(i), direct.unwrap_or(0.0), "day {i}");
        }
        // No coverage: every day counts 0.
        let none = Prefix::from_entries(&entries, None, n);
        assert_eq!(none.sums(), &vec![0.0; n + 1][..]);
        assert_eq!(Prefix::from_entries(&[], Some(&cov), 0).len(), 0);
    }

    #[test]
    fn window_and_weekday_sums_match_a_direct_count() {
        let values: Vec<f64> = (0..40).map(|i| ((i * 7919) % 5) as f64).collect();
        let p = Prefix::from_values(&values);
        for lo in -3..42i64 {
            for hi in lo..45 {
                let direct: f64 = (lo.max(0)..=hi.min(39)).map(|i| values[i as usize]).sum();
                assert_eq!(p.sum(lo, hi), direct, "{lo}..={hi}");
                let by_residue = p.sums_by_residue(lo, hi);
                for r in 0..7 {
                    let direct: f64 = (lo.max(0)..=hi.min(39))
                        .filter(|i| i % 7 == r)
                        .map(|i| values[i as usize])
                        .sum();
                    assert_eq!(by_residue[r as usize], direct, "{lo}..={hi} r{r}");
                }
            }
        }
    }
}
