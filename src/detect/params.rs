//! Detection settings: the `[detect]` table, its per-segment overrides, and
//! the defaults with the reason for each number.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use crate::diag::{Diagnostic, SourceText};

/// Six weeks: long enough that a normal quiet fortnight or month (a
/// vacation, the weeks after a release) does not look like silence, short
/// enough that the CSM hears about it while the account can still be won
/// back. (On the real histories in the repo's dev data, 4 weeks doubled
/// false alerts for little earlier warning.)
pub const DEFAULT_RECENT_DAYS: u32 = 42;
/// The recent window grows for low-volume accounts until it should hold
/// `min_expected` events, up to a quarter (13 weeks): beyond that, silence
/// is too slow to be news, and the account is `insufficient_data`.
pub const DEFAULT_MAX_RECENT_DAYS: u32 = 91;
/// Fifty-two weeks before the recent window: a full year of the account's
/// own rhythm (release cycles, summer, year end), and whole weeks, so every
/// weekday is equally represented.
pub const DEFAULT_BASELINE_DAYS: u32 = 364;
/// An account expected to have fewer than this many events in the recent
/// window cannot be called silent: three events go missing by chance all
/// the time (the window first grows, see `max_recent_days`).
pub const DEFAULT_MIN_EXPECTED: f64 = 4.0;
/// Silent only when at most a fifth of the expected activity happened: a
/// halving is a normal fluctuation for bursty accounts, an 80 % drop is not.
pub const DEFAULT_DROP_RATIO: f64 = 0.2;
/// Back to normal only at half the expected activity: between the two
/// ratios the account keeps its state, so it cannot flap around one line.
pub const DEFAULT_RECOVER_RATIO: f64 = 0.5;
/// At most a 10 % chance of seeing this little activity if the account
/// were behaving as in its baseline, under an overdispersed (negative
/// binomial) model of its weekly counts. The drop ratio already demands an
/// 80 % drop; this only keeps accounts whose history is full of such
/// drops from alerting on each one.
pub const DEFAULT_MAX_P: f64 = 0.1;
/// A window is judged only when its source covered at least half of its
/// days; otherwise the channel is `unknown` (an outage is not silence).
pub const DEFAULT_MIN_COVERAGE: f64 = 0.5;
/// The account is silent when channels carrying at least half of its
/// judged weight are silent.
pub const DEFAULT_QUORUM: f64 = 0.5;
/// A still-silent account is brought up again after eight weeks; 0 turns
/// reminders off.
pub const DEFAULT_REMINDER_DAYS: u32 = 56;
/// A silence episode ends only after the account has been back above the
/// recover ratio for two weeks; a single busy day does not end it.
pub const DEFAULT_RECOVER_DAYS: u32 = 14;
/// Tell the CSM when a silent account is back to normal.
pub const DEFAULT_NOTIFY_RECOVERY: bool = true;
/// A channel of a polled source (a `[[source]]`) that has covered none of
/// the last three days is `unknown`, whatever its windows say: a connector
/// broken since the day before yesterday is an ops problem (reported once
/// to the ops address), not a quiet customer. Three days lets a daily poll
/// fail twice in a row (a rate limit, a maintenance window) before anyone
/// hears of it. (Imported sources cover what their files cover.)
pub const DEFAULT_STALE_DAYS: u32 = 3;
/// Scale every account's expectation by how quiet the whole community is
/// (holidays, summer, a partial outage), never up.
pub const DEFAULT_COMMUNITY: bool = true;

/// The numbers one account is judged with (global, or its segment's).
#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds {
    pub recent_days: u32,
    pub max_recent_days: u32,
    pub baseline_days: u32,
    pub min_expected: f64,
    pub drop_ratio: f64,
    pub recover_ratio: f64,
    pub max_p: f64,
    pub min_coverage: f64,
    pub quorum: f64,
    pub reminder_days: u32,
    pub recover_days: u32,
    pub notify_recovery: bool,
    pub community: bool,
    /// Channels whose source covered none of the last `stale_days` days
    /// are unknown; 0 turns the check off.
    pub stale_days: u32,
    /// Decide nothing for the CSM about these accounts (the state still
    /// moves, so unmuting alerts on episodes that are still open).
    pub mute: bool,
    /// Weight of a channel in the account-level decision, by kind (for a
    /// rate channel, its numerator's kind). Kinds not named weigh 1; 0
    /// leaves the kind out of detection.
    pub weights: BTreeMap<String, f64>,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            recent_days: DEFAULT_RECENT_DAYS,
            max_recent_days: DEFAULT_MAX_RECENT_DAYS,
            baseline_days: DEFAULT_BASELINE_DAYS,
            min_expected: DEFAULT_MIN_EXPECTED,
            drop_ratio: DEFAULT_DROP_RATIO,
            recover_ratio: DEFAULT_RECOVER_RATIO,
            max_p: DEFAULT_MAX_P,
            min_coverage: DEFAULT_MIN_COVERAGE,
            quorum: DEFAULT_QUORUM,
            reminder_days: DEFAULT_REMINDER_DAYS,
            recover_days: DEFAULT_RECOVER_DAYS,
            notify_recovery: DEFAULT_NOTIFY_RECOVERY,
            community: DEFAULT_COMMUNITY,
            stale_days: DEFAULT_STALE_DAYS,
            mute: false,
            weights: DEFAULT_ZERO_WEIGHT_KINDS
                .iter()
                .map(|k| (k.to_string(), 0.0))
                .collect(),
        }
    }
}

/// Kinds left out of detection unless a config weighs them: machine opens
/// (privacy proxies, scanners) say nothing about whether people read.
pub const DEFAULT_ZERO_WEIGHT_KINDS: &[&str] = &["machine_open"];

impl Thresholds {
    /// The weight of channels of `kind`.
    pub fn weight(&self, kind: &str) -> f64 {
        self.weights.get(kind).copied().unwrap_or(1.0)
    }

    /// Days of history one judgement reads: baseline plus the longest
    /// recent window.
    pub fn span_days(&self) -> u32 {
        self.recent_days.max(self.max_recent_days) + self.baseline_days
    }
}

/// A rate channel: `numerator` events per `denominator` event of the same
/// account and source (e-mail opens per delivered e-mail).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RatePair {
    pub numerator: String,
    pub denominator: String,
}

/// Everything `[detect]` configures.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectConfig {
    pub defaults: Thresholds,
    /// Overrides per account segment, already merged over `defaults`.
    pub segments: BTreeMap<String, Thresholds>,
    pub rates: Vec<RatePair>,
    /// The sources lull polls (the config's `[[source]]` names): only they
    /// can go stale.
    pub polled: std::collections::BTreeSet<String>,
}

impl Default for DetectConfig {
    fn default() -> Self {
        DetectConfig {
            defaults: Thresholds::default(),
            segments: BTreeMap::new(),
            rates: vec![RatePair {
                numerator: "open".into(),
                denominator: "delivered".into(),
            }],
            polled: Default::default(),
        }
    }
}

impl DetectConfig {
    /// The thresholds for an account of `segment`.
    pub fn for_segment(&self, segment: Option<&str>) -> &Thresholds {
        segment
            .and_then(|s| self.segments.get(s))
            .unwrap_or(&self.defaults)
    }

    /// Does an event of `kind` count as the customer's own activity in
    /// summaries (last activity, weekly counts)? Not what the vendor did
    /// (`delivered`: the denominator of a rate) and not what detection
    /// leaves out (weight 0, e.g. `machine_open`).
    pub fn is_activity(&self, kind: &str) -> bool {
        !self.rates.iter().any(|r| r.denominator == kind) && self.defaults.weight(kind) > 0.0
    }

    /// Is `kind` one side of a rate pair (so not a count channel)?
    pub fn is_rate_kind(&self, kind: &str) -> bool {
        self.rates
            .iter()
            .any(|r| r.numerator == kind || r.denominator == kind)
    }
}

/// `[detect]` as written; the same shape serves `[detect.segment.NAME]`.
#[derive(Debug, Deserialize, Default)]
pub(crate) struct RawDetect {
    recent_days: Option<Spanned<i64>>,
    max_recent_days: Option<Spanned<i64>>,
    baseline_days: Option<Spanned<i64>>,
    min_expected: Option<Spanned<f64>>,
    drop_ratio: Option<Spanned<f64>>,
    recover_ratio: Option<Spanned<f64>>,
    max_p: Option<Spanned<f64>>,
    min_coverage: Option<Spanned<f64>>,
    quorum: Option<Spanned<f64>>,
    reminder_days: Option<Spanned<i64>>,
    recover_days: Option<Spanned<i64>>,
    notify_recovery: Option<bool>,
    community: Option<bool>,
    stale_days: Option<Spanned<i64>>,
    mute: Option<bool>,
    weights: Option<BTreeMap<String, Spanned<f64>>>,
    rates: Option<Spanned<Vec<RatePair>>>,
    segment: Option<BTreeMap<String, Spanned<RawDetect>>>,
}

impl RawDetect {
    /// Validates `[detect]`, pushing each problem with its location.
    pub(crate) fn build(self, src: &SourceText, problems: &mut Vec<Diagnostic>) -> DetectConfig {
        let mut out = DetectConfig::default();
        if let Some(rates) = &self.rates {
            for r in rates.get_ref() {
                if r.numerator == r.denominator || r.numerator.is_empty() {
                    problems.push(src.span(
                        rates,
                        format!(
                            "detect.rates: `{}` per `{}` is not a rate of two different kinds",
                            r.numerator, r.denominator
                        ),
                    ));
                }
            }
            out.rates = rates.get_ref().clone();
        }
        out.defaults = self.apply(&Thresholds::default(), "detect", src, problems);
        for (name, seg) in self.segment.iter().flatten() {
            let raw = seg.get_ref();
            if raw.segment.is_some() || raw.rates.is_some() {
                problems.push(src.span(
                    seg,
                    format!(
                        "detect.segment.{name}: `segment` and `rates` can only be set in [detect]"
                    ),
                ));
            }
            let t = raw.apply(
                &out.defaults,
                &format!("detect.segment.{name}"),
                src,
                problems,
            );
            out.segments.insert(name.clone(), t);
        }
        out
    }

    /// `base` with this table's values laid over it, checked.
    fn apply(
        &self,
        base: &Thresholds,
        table: &str,
        src: &SourceText,
        problems: &mut Vec<Diagnostic>,
    ) -> Thresholds {
        let mut t = base.clone();
        let mut days = |v: &Option<Spanned<i64>>, key: &str, min: i64, max: i64, into: &mut u32| {
            if let Some(v) = v {
                let n = *v.get_ref();
                if n < min || n > max {
                    problems.push(src.span(
                        v,
                        format!(
                            "`{table}.{key}` must be a whole number of days from {min} to {max}"
                        ),
                    ));
                } else {
                    *into = n as u32;
                }
            }
        };
        days(&self.recent_days, "recent_days", 7, 366, &mut t.recent_days);
        days(
            &self.max_recent_days,
            "max_recent_days",
            7,
            732,
            &mut t.max_recent_days,
        );
        days(
            &self.baseline_days,
            "baseline_days",
            14,
            3660,
            &mut t.baseline_days,
        );
        days(
            &self.reminder_days,
            "reminder_days",
            0,
            3660,
            &mut t.reminder_days,
        );
        days(
            &self.recover_days,
            "recover_days",
            1,
            366,
            &mut t.recover_days,
        );
        days(&self.stale_days, "stale_days", 0, 366, &mut t.stale_days);
        let mut number =
            |v: &Option<Spanned<f64>>, key: &str, min: f64, max: f64, into: &mut f64| {
                if let Some(v) = v {
                    let x = *v.get_ref();
                    if !(min..=max).contains(&x) {
                        problems.push(src.span(
                            v,
                            format!("`{table}.{key}` must be between {min} and {max}"),
                        ));
                    } else {
                        *into = x;
                    }
                }
            };
        number(
            &self.min_expected,
            "min_expected",
            0.1,
            1e9,
            &mut t.min_expected,
        );
        number(&self.drop_ratio, "drop_ratio", 0.0, 1.0, &mut t.drop_ratio);
        number(
            &self.recover_ratio,
            "recover_ratio",
            0.0,
            10.0,
            &mut t.recover_ratio,
        );
        number(&self.max_p, "max_p", 0.0, 1.0, &mut t.max_p);
        number(
            &self.min_coverage,
            "min_coverage",
            0.01,
            1.0,
            &mut t.min_coverage,
        );
        number(&self.quorum, "quorum", 0.01, 1.0, &mut t.quorum);
        if let Some(w) = &self.weights {
            for (kind, v) in w {
                if *v.get_ref() < 0.0 || !v.get_ref().is_finite() {
                    problems
                        .push(src.span(v, format!("`{table}.weights.{kind}` must be 0 or more")));
                } else {
                    t.weights.insert(kind.clone(), *v.get_ref());
                }
            }
        }
        if let Some(b) = self.notify_recovery {
            t.notify_recovery = b;
        }
        if let Some(b) = self.community {
            t.community = b;
        }
        if let Some(b) = self.mute {
            t.mute = b;
        }
        if t.max_recent_days < t.recent_days {
            t.max_recent_days = t.recent_days;
        }
        if t.recover_ratio < t.drop_ratio {
            let at = self.recover_ratio.as_ref().or(self.drop_ratio.as_ref());
            let msg = format!(
                "`{table}`: recover_ratio ({}) must not be below drop_ratio ({}), or an account would recover while still silent",
                t.recover_ratio, t.drop_ratio
            );
            problems.push(match at {
                Some(s) => src.span(s, msg),
                None => src.whole(msg),
            });
        }
        t
    }
}
