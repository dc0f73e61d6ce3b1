//! Dense day-indexed histories with prefix sums, so any window sum — all
//! days, or only one weekday — costs two lookups.
//!
//! A [`Timeline`] fixes the first and last day; a [`Series`] holds counts
//! over it and a [`Covered`] holds which days a source covered. Both keep
//! two prefix sums: a plain one and a stride-7 one (`s7[i] = x[i] +
//! s7[i-7]`), from which the sum over days of one weekday in a window
//! falls out directly.

use crate::types::Day;

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
    s7: Vec::new(),
};

/// Prefix sums over a day-indexed array of values.
#[derive(Debug, Clone, Default)]
pub struct Prefix {
    /// `plain[i]` = sum of values before index i (len n + 1).
    plain: Vec<f64>,
    /// `s7[i]` = value[i] + s7[i - 7] (len n).
    s7: Vec<f64>,
}

impl Prefix {
    pub fn from_values(values: &[f64]) -> Prefix {
        let mut plain = Vec::with_capacity(values.len() + 1);
        let mut acc = 0.0;
        plain.push(0.0);
        for v in values {
            acc += v;
            plain.push(acc);
        }
        let mut s7 = values.to_vec();
        for i in 7..s7.len() {
            s7[i] += s7[i - 7];
        }
        Prefix { plain, s7 }
    }

    /// Sum over indices `lo..=hi`, clipped to the timeline; 0 when empty.
    pub fn sum(&self, lo: i64, hi: i64) -> f64 {
        let n = self.s7.len() as i64;
        let (lo, hi) = (lo.max(0), hi.min(n - 1));
        if lo > hi {
            return 0.0;
        }
        self.plain[(hi + 1) as usize] - self.plain[lo as usize]
    }

    /// Sum over the indices `i` in `lo..=hi` with `i % 7 == residue`.
    pub fn sum_residue(&self, lo: i64, hi: i64, residue: i64) -> f64 {
        let n = self.s7.len() as i64;
        let (lo, hi) = (lo.max(0), hi.min(n - 1));
        if lo > hi {
            return 0.0;
        }
        let last = hi - (hi - residue).rem_euclid(7);
        let first = lo + (residue - lo).rem_euclid(7);
        if first > last {
            return 0.0;
        }
        let below = if first >= 7 {
            self.s7[(first - 7) as usize]
        } else {
            0.0
        };
        self.s7[last as usize] - below
    }

    /// The value at one index.
    pub fn at(&self, i: i64) -> f64 {
        self.sum(i, i)
    }
}

/// Builds a dense count array over `timeline` from sparse (day, count)
/// entries; entries off the timeline are dropped (later days are not
/// seen: judging day D reads nothing after D).
pub fn dense(timeline: Timeline, entries: &[(Day, u64)]) -> Vec<f64> {
    let mut v = vec![0.0; timeline.len()];
    accumulate(timeline, &mut v, entries);
    v
}

/// Adds sparse entries into an existing dense array (community totals).
pub fn accumulate(timeline: Timeline, into: &mut [f64], entries: &[(Day, u64)]) {
    for (day, count) in entries {
        if let Some(i) = timeline.index(*day) {
            into[i] += *count as f64;
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
