//! Judging one channel of one account on one day against its own history.
//!
//! Windows, for day D: the recent window is the `recent_days` ending on D;
//! the baseline is the `baseline_days` before it. Only days the channel's
//! source covered are read, on both sides: an uncovered day is unknown,
//! never zero.

use serde::{Deserialize, Serialize};
use statrs::distribution::{Binomial, DiscreteCDF, NegativeBinomial, Poisson};

use super::history::Prefix;
use super::params::Thresholds;

/// Pseudo-days that pull each weekday's rate toward the account's overall
/// rate: with a year of baseline a weekday has 52 days of its own and the
/// pull is small; with three weeks it dominates and noise cannot.
const WEEKDAY_SHRINK_DAYS: f64 = 7.0;
/// Fewer fully covered baseline weeks than this and dispersion is not
/// estimated (Poisson is used).
const MIN_WEEKS_FOR_DISPERSION: usize = 4;

/// What one channel says about its account on one day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChannelStatus {
    /// The source did not cover enough of the recent window.
    Unknown,
    /// Too little history or volume for silence to mean anything.
    InsufficientData,
    /// At or above the recover ratio.
    Normal,
    /// Below the recover ratio but not (or no longer) silent.
    Low,
    /// Dropped below the drop ratio, unlikely under the baseline.
    Silent,
}

impl ChannelStatus {
    pub fn is_judged(self) -> bool {
        matches!(self, Self::Normal | Self::Low | Self::Silent)
    }
}

/// The evidence behind a channel's status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Judgement {
    pub status: ChannelStatus,
    /// Expected events in the recent window (after community scaling).
    pub expected: f64,
    /// Observed events in the recent window.
    pub observed: f64,
    /// P(this few or fewer | baseline), when the drop was large enough to ask.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p_value: Option<f64>,
    /// How quiet the rest of the community is (recent rate / baseline
    /// rate of the other accounts, at most 1).
    pub community_factor: f64,
    /// Days in the recent window (grown for low-volume accounts), and
    /// how many of them the source covered.
    pub recent_days: u32,
    pub covered_days: u32,
    /// For a rate channel: denominator events in the recent window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered: Option<f64>,
}

impl Judgement {
    pub(super) fn bare(status: ChannelStatus, covered_days: u32, w: Windows) -> Judgement {
        Judgement {
            status,
            recent_days: w.recent_len(),
            expected: 0.0,
            observed: 0.0,
            p_value: None,
            community_factor: 1.0,
            covered_days,
            delivered: None,
        }
    }

    /// observed / expected (1 when nothing was expected).
    pub fn ratio(&self) -> f64 {
        if self.expected <= f64::EPSILON {
            1.0
        } else {
            self.observed / self.expected
        }
    }
}

/// Index bounds of the two windows for day index `d`.
#[derive(Debug, Clone, Copy)]
pub struct Windows {
    pub recent: (i64, i64),
    pub baseline: (i64, i64),
}

impl Windows {
    /// The configured windows for day index `d`.
    pub fn new(d: usize, t: &Thresholds) -> Windows {
        Windows::sized(d, t.recent_days, t)
    }

    /// A recent window of `recent` days ending on `d`, and the baseline
    /// before it.
    pub fn sized(d: usize, recent: u32, t: &Thresholds) -> Windows {
        let d = d as i64;
        let r = recent as i64;
        let b = t.baseline_days as i64;
        Windows {
            recent: (d - r + 1, d),
            baseline: (d - r - b + 1, d - r),
        }
    }

    pub fn recent_len(&self) -> u32 {
        (self.recent.1 - self.recent.0 + 1) as u32
    }
}

/// The recent window a count channel is judged on: `recent_days`, grown in
/// whole weeks (up to `max_recent_days`) until the account's baseline rate
/// would have filled it with `min_expected` events. A quiet week means
/// nothing for an account that posts once a month; a quiet quarter does.
fn window_for(counts: &Prefix, cov: &Prefix, d: usize, t: &Thresholds) -> Windows {
    let w = Windows::new(d, t);
    let days = cov.sum(w.baseline.0, w.baseline.1);
    let n = counts.sum(w.baseline.0, w.baseline.1);
    if days <= 0.0 || n <= 0.0 {
        return w;
    }
    let needed = t.min_expected / (n / days);
    if needed <= t.recent_days as f64 {
        return w;
    }
    let weeks = (needed / 7.0).ceil() as u32;
    Windows::sized(d, (weeks * 7).min(t.max_recent_days), t)
}

/// Covered days a window of `len` days needs before it is judged.
pub fn min_covered(len: u32, t: &Thresholds) -> f64 {
    (t.min_coverage * len as f64).ceil()
}

/// The coverage checks shared by both channel kinds: `Err` carries the
/// verdict when the windows are not covered well enough to judge.
fn covered(cov: &Prefix, w: Windows, t: &Thresholds) -> Result<(f64, f64), Judgement> {
    let rc = cov.sum(w.recent.0, w.recent.1);
    if rc < min_covered(w.recent_len(), t) {
        return Err(Judgement::bare(ChannelStatus::Unknown, rc as u32, w));
    }
    let bc = cov.sum(w.baseline.0, w.baseline.1);
    if bc < min_covered(t.baseline_days, t) {
        return Err(Judgement::bare(
            ChannelStatus::InsufficientData,
            rc as u32,
            w,
        ));
    }
    Ok((rc, bc))
}

/// Recent rate / baseline rate of everyone else, capped at 1: a quiet
/// community lowers expectations, a busy one never raises them. Each side
/// is (numerator, denominator): events and covered days for a count
/// channel, opens and deliveries for a rate channel.
fn community_factor(recent: (f64, f64), baseline: (f64, f64)) -> f64 {
    if baseline.0 <= 0.0 || baseline.1 <= 0.0 || recent.1 <= 0.0 {
        return 1.0;
    }
    ((recent.0 / recent.1) / (baseline.0 / baseline.1)).clamp(0.0, 1.0)
}

/// The rest of the community's sum over a window: everyone minus the account.
fn others(all: &Prefix, own: &Prefix, (lo, hi): (i64, i64)) -> f64 {
    (all.sum(lo, hi) - own.sum(lo, hi)).max(0.0)
}

/// Sets the status from the ratio and, when the drop is deep enough, the
/// probability of so little activity.
fn classify(mut j: Judgement, t: &Thresholds, p: impl FnOnce(&Judgement) -> f64) -> Judgement {
    let ratio = j.ratio();
    j.status = if ratio >= t.recover_ratio {
        ChannelStatus::Normal
    } else {
        ChannelStatus::Low
    };
    if ratio <= t.drop_ratio && j.expected > f64::EPSILON {
        let pv = p(&j);
        j.p_value = Some(pv);
        if pv <= t.max_p {
            j.status = ChannelStatus::Silent;
        }
    }
    j
}

/// A count channel (posts, tickets): events per covered day, weekday-aware,
/// tested with a negative binomial whose dispersion comes from the
/// baseline's weekly counts.
pub fn judge_count(
    counts: &Prefix,
    cov: &Prefix,
    community: Option<&Prefix>,
    d: usize,
    t: &Thresholds,
) -> Judgement {
    let w = window_for(counts, cov, d, t);
    let (rc, bc) = match covered(cov, w, t) {
        Ok(x) => x,
        Err(j) => return j,
    };
    let base_total = counts.sum(w.baseline.0, w.baseline.1);
    let overall = base_total / bc;
    let full = |(lo, hi): (i64, i64)| whole_weeks_covered(cov, lo, hi);
    let own_expected = if full(w.recent) && full(w.baseline) {
        // Every weekday equally covered on both sides: the weekday-aware
        // sum reduces exactly to the overall rate.
        overall * rc
    } else {
        weekday_expected(counts, cov, w, overall)
    };
    if own_expected < t.min_expected {
        return Judgement::bare(ChannelStatus::InsufficientData, rc as u32, w);
    }
    let factor = match community.filter(|_| t.community) {
        Some(all) => community_factor(
            (others(all, counts, w.recent), rc),
            (others(all, counts, w.baseline), bc),
        ),
        None => 1.0,
    };
    let j = Judgement {
        status: ChannelStatus::Normal,
        expected: own_expected * factor,
        observed: counts.sum(w.recent.0, w.recent.1),
        p_value: None,
        community_factor: factor,
        recent_days: w.recent_len(),
        covered_days: rc as u32,
        delivered: None,
    };
    classify(j, t, |j| {
        count_p_value(j.observed, j.expected, weekly_size(counts, cov, w, t), rc)
    })
}

/// Whole weeks, every day covered.
fn whole_weeks_covered(cov: &Prefix, lo: i64, hi: i64) -> bool {
    (hi - lo + 1) % 7 == 0 && lo >= 0 && cov.sum(lo, hi) >= (hi - lo + 1) as f64
}

/// Expected recent events with a rate per weekday (residues of the index
/// mod 7 are weekdays: the timeline is contiguous), each shrunk toward the
/// overall rate.
fn weekday_expected(counts: &Prefix, cov: &Prefix, w: Windows, overall: f64) -> f64 {
    let days = cov.sums_by_residue(w.baseline.0, w.baseline.1);
    let n = counts.sums_by_residue(w.baseline.0, w.baseline.1);
    let recent = cov.sums_by_residue(w.recent.0, w.recent.1);
    let mut expected = 0.0;
    for r in 0..7 {
        let rate = (n[r] + WEEKDAY_SHRINK_DAYS * overall) / (days[r] + WEEKDAY_SHRINK_DAYS);
        expected += rate * recent[r];
    }
    expected
}

/// Negative binomial "size" per week from the baseline's fully covered
/// weeks (method of moments); `None` when the counts are not
/// overdispersed or there are too few weeks.
fn weekly_size(counts: &Prefix, cov: &Prefix, w: Windows, t: &Thresholds) -> Option<f64> {
    let weeks = (t.baseline_days / 7) as i64;
    let mut xs = Vec::with_capacity(weeks as usize);
    for k in 0..weeks {
        let hi = w.baseline.1 - 7 * k;
        let lo = hi - 6;
        if cov.sum(lo, hi) >= 7.0 {
            xs.push(counts.sum(lo, hi));
        }
    }
    if xs.len() < MIN_WEEKS_FOR_DISPERSION {
        return None;
    }
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean > 0.0 && var > mean * (1.0 + 1e-9)).then(|| mean * mean / (var - mean))
}

/// P(K <= observed) for a window of `covered` days with mean `expected`:
/// negative binomial when the account is bursty, Poisson otherwise.
fn count_p_value(observed: f64, expected: f64, size_per_week: Option<f64>, covered: f64) -> f64 {
    let k = observed.max(0.0).floor() as u64;
    match size_per_week {
        Some(s) => {
            // Sizes add over independent weeks.
            let size = (s * covered / 7.0).max(1e-6);
            NegativeBinomial::new(size, size / (size + expected))
                .map(|d| d.cdf(k))
                .unwrap_or(1.0)
        }
        None => Poisson::new(expected).map(|d| d.cdf(k)).unwrap_or(1.0),
    }
}

/// A rate channel (opens per delivered): the baseline rate, scaled by the
/// community, gives expected opens for what was delivered recently; a
/// binomial test asks how unlikely this few opens are.
pub fn judge_rate(
    num: &Prefix,
    den: &Prefix,
    cov: &Prefix,
    community: Option<(&Prefix, &Prefix)>,
    d: usize,
    t: &Thresholds,
) -> Judgement {
    let w = Windows::new(d, t);
    let rc = match covered(cov, w, t) {
        Ok((rc, _)) => rc,
        Err(j) => return j,
    };
    let base_num = num.sum(w.baseline.0, w.baseline.1);
    let base_den = den.sum(w.baseline.0, w.baseline.1);
    let delivered = den.sum(w.recent.0, w.recent.1);
    if base_den <= 0.0 || delivered <= 0.0 {
        // Nothing was sent: there is no rate to judge.
        return Judgement::bare(ChannelStatus::InsufficientData, rc as u32, w);
    }
    let base_rate = (base_num / base_den).min(1.0);
    let own_expected = delivered * base_rate;
    if own_expected < t.min_expected || base_num < t.min_expected {
        return Judgement::bare(ChannelStatus::InsufficientData, rc as u32, w);
    }
    let factor = match community.filter(|_| t.community) {
        Some((all_num, all_den)) => community_factor(
            (
                others(all_num, num, w.recent),
                others(all_den, den, w.recent),
            ),
            (
                others(all_num, num, w.baseline),
                others(all_den, den, w.baseline),
            ),
        ),
        None => 1.0,
    };
    let j = Judgement {
        status: ChannelStatus::Normal,
        expected: own_expected * factor,
        observed: num.sum(w.recent.0, w.recent.1).min(delivered),
        p_value: None,
        community_factor: factor,
        recent_days: w.recent_len(),
        covered_days: rc as u32,
        delivered: Some(delivered),
    };
    classify(j, t, |j| {
        let n = delivered.round() as u64;
        Binomial::new((base_rate * factor).clamp(0.0, 1.0), n)
            .map(|b| b.cdf(j.observed.floor() as u64))
            .unwrap_or(1.0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(v: &[f64]) -> Prefix {
        Prefix::from_values(v)
    }

    fn t() -> Thresholds {
        Thresholds {
            recent_days: 28,
            baseline_days: 112,
            ..Thresholds::default()
        }
    }

    #[test]
    fn steady_then_silent_is_silent_and_steady_is_normal() {
        let n = 140;
        let cov = prefix(&vec![1.0; n]);
        let busy: Vec<f64> = (0..n).map(|i| if i % 7 < 5 { 2.0 } else { 0.0 }).collect();
        let j = judge_count(&prefix(&busy), &cov, None, n - 1, &t());
        assert_eq!(j.status, ChannelStatus::Normal, "{j:?}");
        let mut quiet = busy.clone();
        quiet[n - 28..].iter_mut().for_each(|x| *x = 0.0);
        let j = judge_count(&prefix(&quiet), &cov, None, n - 1, &t());
        assert_eq!(j.status, ChannelStatus::Silent, "{j:?}");
        assert!((j.expected - 40.0).abs() < 1.0, "{j:?}");
        assert!(j.p_value.unwrap() < 1e-6);
    }

    #[test]
    fn bursty_history_makes_a_quiet_month_less_surprising() {
        let n = 140;
        let cov = prefix(&vec![1.0; n]);
        // Same total as a steady 1/day, but all of it in one week a month.
        let bursty: Vec<f64> = (0..n).map(|i| if i % 28 < 7 { 4.0 } else { 0.0 }).collect();
        let steady: Vec<f64> = vec![1.0; n];
        let (mut b, mut s) = (bursty.clone(), steady.clone());
        b[n - 28..].iter_mut().for_each(|x| *x = 0.0);
        s[n - 28..].iter_mut().for_each(|x| *x = 0.0);
        b[n - 1] = 3.0;
        s[n - 1] = 3.0;
        let jb = judge_count(&prefix(&b), &cov, None, n - 1, &t());
        let js = judge_count(&prefix(&s), &cov, None, n - 1, &t());
        assert!(
            jb.p_value.unwrap() > js.p_value.unwrap() * 100.0,
            "{jb:?} {js:?}"
        );
    }

    #[test]
    fn rate_channel_uses_a_binomial_on_what_was_delivered() {
        let n = 140;
        let cov = prefix(&vec![1.0; n]);
        let den = vec![10.0; n];
        let mut num = vec![4.0; n];
        let j = judge_rate(&prefix(&num), &prefix(&den), &cov, None, n - 1, &t());
        assert_eq!(j.status, ChannelStatus::Normal);
        // Six opens in four weeks where 112 were usual (counts are whole).
        for (i, x) in num[n - 28..].iter_mut().enumerate() {
            *x = if i % 5 == 0 { 1.0 } else { 0.0 };
        }
        let j = judge_rate(&prefix(&num), &prefix(&den), &cov, None, n - 1, &t());
        assert_eq!(j.status, ChannelStatus::Silent, "{j:?}");
        assert_eq!(j.delivered, Some(280.0));
        // No mail delivered recently: nothing to judge, never silence.
        let mut none = den.clone();
        none[n - 28..].iter_mut().for_each(|x| *x = 0.0);
        let j = judge_rate(&prefix(&num), &prefix(&none), &cov, None, n - 1, &t());
        assert_eq!(j.status, ChannelStatus::InsufficientData);
    }
}
