//! Detection settings: the `[detect]` table, its per-segment overrides, and
//! the defaults with the reason for each number.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use crate::diag::{Diagnostic, SourceText};

/// Four weeks. The drop test feeds the weekly watch list, an early
/// signal: a month is long enough that a quiet week means nothing, short
/// enough to see a decline while the account is still active. (On the dev
/// histories, six weeks cost the watch list 20 days of lead and a third of
/// its recall.) The silent tier does not use it.
pub const DEFAULT_RECENT_DAYS: u32 = 28;
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
/// Dropping when at most 40 % of the expected activity happened: early
/// enough to list an account while it declines (a 60 % drop over a month
/// is rare for an engaged account, common for one leaving).
pub const DEFAULT_DROP_RATIO: f64 = 0.4;
/// Back to normal only at half the expected activity: between the two
/// ratios the account keeps its state, so it cannot flap around one line.
pub const DEFAULT_RECOVER_RATIO: f64 = 0.5;
/// At most an even chance of seeing this little activity if the account
/// were behaving as in its baseline, under an overdispersed (negative
/// binomial) model of its weekly counts: the ratio does the work, this
/// only drops windows too short to mean anything for a bursty account.
/// (On the dev histories, anything from 0.3 to 1 lists the same accounts;
/// 0.2 and below lost a sixth of the watch list's recall.)
pub const DEFAULT_MAX_P: f64 = 0.5;
/// A window is judged only when its source covered at least half of its
/// days; otherwise the channel is `unknown` (an outage is not silence).
pub const DEFAULT_MIN_COVERAGE: f64 = 0.5;
/// The account is silent when channels carrying at least half of its
/// judged weight are silent.
pub const DEFAULT_QUORUM: f64 = 0.5;
/// No reminders: a CSM hears about a silence once. (On the dev histories a
/// quarter of all false alerts were reminders about accounts that were
/// merely resting.) A number of days turns them on.
pub const DEFAULT_REMINDER_DAYS: u32 = 0;
/// The `silent` tier: an account is silent once every source it is active
/// on has covered this many days since its last activity (seven weeks). On
/// the dev histories, shorter waits mostly added ordinary lulls.
pub const DEFAULT_SILENT_DAYS: u32 = 50;
/// …or this many days already (a month), when fewer of its people were
/// around before it went quiet (see `max_breadth`): a team that dwindles
/// and then stops is leaving, a team that pauses together is resting.
pub const DEFAULT_EARLY_SILENT_DAYS: u32 = 30;
/// "Fewer people": in the 90 days up to the quiet start, at most this
/// share of the account's usual number of people (its mean 90-day count
/// over the year before) were active — a little over half. Before the end
/// of a real disengagement it is about two thirds of usual, before an
/// ordinary lull about the usual number (DETECTION-FINDINGS.md); on the
/// dev histories anything from 0.5 to 0.6 lands on the same plateau.
pub const DEFAULT_MAX_BREADTH: f64 = 0.55;
/// The window people are counted in.
pub const DEFAULT_BREADTH_DAYS: u32 = 90;
/// Silence means something only for an account that had been active for
/// a year before it went quiet…
pub const DEFAULT_WARMUP_DAYS: u32 = 365;
/// …with at least this many events…
pub const DEFAULT_MIN_EVENTS: f64 = 12.0;
/// …on at least this many different days in that year: a handful of
/// bursts a year makes every gap look like a silence.
pub const DEFAULT_MIN_ACTIVE_DAYS: u32 = 18;
/// A new silence within this many days of the account's last alert is
/// muted (recorded, not told, and not told later either): an account that
/// was just raised and came back briefly is the same story.
pub const DEFAULT_COOLDOWN_DAYS: u32 = 180;
/// The `watch` tier: at most this many accounts per CSM per weekly digest,
/// strongest evidence first.
pub const DEFAULT_WATCH_CAP: u32 = 5;
/// An account still dropping is listed again after four weeks.
pub const DEFAULT_WATCH_REPEAT_DAYS: u32 = 28;
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
    pub silent_days: u32,
    pub early_silent_days: u32,
    pub max_breadth: f64,
    pub breadth_days: u32,
    pub warmup_days: u32,
    pub min_events: f64,
    pub min_active_days: u32,
    pub cooldown_days: u32,
    /// List accounts the drop test finds on the weekly watch digest.
    pub watch: bool,
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
            silent_days: DEFAULT_SILENT_DAYS,
            early_silent_days: DEFAULT_EARLY_SILENT_DAYS,
            max_breadth: DEFAULT_MAX_BREADTH,
            breadth_days: DEFAULT_BREADTH_DAYS,
            warmup_days: DEFAULT_WARMUP_DAYS,
            min_events: DEFAULT_MIN_EVENTS,
            min_active_days: DEFAULT_MIN_ACTIVE_DAYS,
            cooldown_days: DEFAULT_COOLDOWN_DAYS,
            watch: true,
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
    /// recent window, or for the silent tier the year before a quiet start
    /// (with its people windows) up to two `silent_days` before today.
    pub fn span_days(&self) -> u32 {
        let drop = self.recent_days.max(self.max_recent_days) + self.baseline_days;
        let silent = 2 * self.silent_days.max(self.early_silent_days)
            + super::quiet::YEAR as u32
            + self.breadth_days;
        drop.max(silent)
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
    /// The weekly watch digest (one for all segments: a CSM's accounts
    /// may span several).
    pub watch: WatchConfig,
}

/// When and how much of the watch list a CSM gets.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchConfig {
    /// Accounts per CSM per digest.
    pub cap: u32,
    /// The digest's day.
    pub weekday: chrono::Weekday,
    /// An account is listed again only this many days after it last was.
    pub repeat_days: u32,
}

impl Default for WatchConfig {
    fn default() -> Self {
        WatchConfig {
            cap: DEFAULT_WATCH_CAP,
            weekday: chrono::Weekday::Mon,
            repeat_days: DEFAULT_WATCH_REPEAT_DAYS,
        }
    }
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
            watch: WatchConfig::default(),
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
        self.is_activity_for(kind, &self.defaults)
    }

    /// [`DetectConfig::is_activity`] with a segment's weights.
    pub fn is_activity_for(&self, kind: &str, t: &Thresholds) -> bool {
        !self.rates.iter().any(|r| r.denominator == kind) && t.weight(kind) > 0.0
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
    silent_days: Option<Spanned<i64>>,
    early_silent_days: Option<Spanned<i64>>,
    max_breadth: Option<Spanned<f64>>,
    breadth_days: Option<Spanned<i64>>,
    warmup_days: Option<Spanned<i64>>,
    min_events: Option<Spanned<f64>>,
    min_active_days: Option<Spanned<i64>>,
    cooldown_days: Option<Spanned<i64>>,
    watch: Option<bool>,
    watch_cap: Option<Spanned<i64>>,
    watch_weekday: Option<Spanned<String>>,
    watch_repeat_days: Option<Spanned<i64>>,
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
        if let Some(v) = &self.watch_cap {
            match u32::try_from(*v.get_ref()) {
                Ok(n) if (1..=100).contains(&n) => out.watch.cap = n,
                _ => problems
                    .push(src.span(v, "`detect.watch_cap` must be a whole number from 1 to 100")),
            }
        }
        if let Some(v) = &self.watch_repeat_days {
            match u32::try_from(*v.get_ref()) {
                Ok(n) if (7..=366).contains(&n) => out.watch.repeat_days = n,
                _ => problems.push(src.span(
                    v,
                    "`detect.watch_repeat_days` must be a whole number of days from 7 to 366",
                )),
            }
        }
        if let Some(v) = &self.watch_weekday {
            match v.get_ref().parse::<chrono::Weekday>() {
                Ok(d) => out.watch.weekday = d,
                Err(_) => problems.push(src.span(
                    v,
                    format!(
                        "`detect.watch_weekday` = {:?} is not a day of the week (e.g. \"monday\")",
                        v.get_ref()
                    ),
                )),
            }
        }
        out.defaults = self.apply(&Thresholds::default(), "detect", src, problems);
        for (name, seg) in self.segment.iter().flatten() {
            let raw = seg.get_ref();
            if raw.segment.is_some()
                || raw.rates.is_some()
                || raw.watch_cap.is_some()
                || raw.watch_weekday.is_some()
                || raw.watch_repeat_days.is_some()
            {
                problems.push(src.span(
                    seg,
                    format!(
                        "detect.segment.{name}: `segment`, `rates` and `watch_cap`/`watch_weekday`/`watch_repeat_days` can only be set in [detect] (a CSM's digest spans segments)"
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
        days(&self.silent_days, "silent_days", 7, 366, &mut t.silent_days);
        days(
            &self.early_silent_days,
            "early_silent_days",
            7,
            366,
            &mut t.early_silent_days,
        );
        days(
            &self.breadth_days,
            "breadth_days",
            7,
            366,
            &mut t.breadth_days,
        );
        days(
            &self.warmup_days,
            "warmup_days",
            0,
            3660,
            &mut t.warmup_days,
        );
        days(
            &self.min_active_days,
            "min_active_days",
            0,
            366,
            &mut t.min_active_days,
        );
        days(
            &self.cooldown_days,
            "cooldown_days",
            0,
            3660,
            &mut t.cooldown_days,
        );
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
        number(
            &self.max_breadth,
            "max_breadth",
            0.0,
            1.0,
            &mut t.max_breadth,
        );
        number(&self.min_events, "min_events", 0.0, 1e9, &mut t.min_events);
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
        if let Some(b) = self.watch {
            t.watch = b;
        }
        if t.early_silent_days > t.silent_days {
            let at = self
                .early_silent_days
                .as_ref()
                .or(self.silent_days.as_ref());
            let msg = format!(
                "`{table}`: early_silent_days ({}) must not be above silent_days ({}): the early call is the one that needs fewer people",
                t.early_silent_days, t.silent_days
            );
            problems.push(match at {
                Some(s) => src.span(s, msg),
                None => src.whole(msg),
            });
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
