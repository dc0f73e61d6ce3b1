//! The per-account state machine: who hears what, and when.
//!
//! Two tiers share one machine. The `silent` tier is the interruption: an
//! account whose silent rule holds (see `quiet`) opens a silence episode
//! and its CSM gets one alert, unless an alert about it went out less than
//! `cooldown_days` ago (then the episode is *muted*: recorded, never told).
//! The episode lasts until the account is active again and the drop test
//! no longer finds it low, for `recover_days` in a row.
//!
//! ```text
//!            silent rule                     still quiet, or low
//!  engaged ──────────────────► silent ◄──────────────────────────┐
//!     ▲     (alert, unless      │  │ (reminder every reminder_days,│
//!     │      muted or told)     │  └── when set) ─────────────────┘
//!     │                         │ active again, not low
//!     │   recover_days in a row ▼
//!     └──────────────────── recovering (shown as engaged)
//! ```
//!
//! The `watch` tier is the early signal: the statistical drop test opens a
//! *drop* episode (ended like a silence episode, by `recover_days` above
//! the recover ratio), and an account in one that is not silent is a
//! candidate for its CSM's weekly watch digest (see `watch`).
//!
//! An `unknown` day (source outage) freezes both: no notice, no end.

use serde::{Deserialize, Serialize};

use super::params::Thresholds;
use crate::types::Day;

/// An account's state, as shown to users.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Engaged,
    Silent,
    InsufficientData,
    #[default]
    Unknown,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Engaged => "engaged",
            State::Silent => "silent",
            State::InsufficientData => "insufficient_data",
            State::Unknown => "unknown",
        }
    }
}

/// What the account's channels say today, weighed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    /// No channel's source covered the recent window.
    Unknown,
    /// No channel had enough history or volume to judge.
    InsufficientData,
    /// Shares of the judged weight that are silent, and below the recover
    /// ratio (silent or low).
    Judged { silent: f64, low: f64 },
}

/// A notice for the CSM.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    Hash,
    PartialOrd,
    Ord,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    /// The account went silent (first notice of an episode).
    Silent,
    /// Still silent, `reminder_days` after the last notice.
    Reminder,
    /// A silent account is back to normal.
    Recovered,
    /// On the CSM's weekly watch digest: activity dropped well below the
    /// account's own baseline, not (yet) silent.
    Watch,
}

impl NoticeKind {
    pub const ALL: [NoticeKind; 4] = [
        NoticeKind::Silent,
        NoticeKind::Reminder,
        NoticeKind::Recovered,
        NoticeKind::Watch,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NoticeKind::Silent => "silent",
            NoticeKind::Reminder => "reminder",
            NoticeKind::Recovered => "recovered",
            NoticeKind::Watch => "watch",
        }
    }

    /// Is a channel of this status one the notice is about? The silent
    /// tier and recoveries speak for the whole account (every judged
    /// channel); the watch list names the channels that dropped.
    pub fn covers(self, status: super::ChannelStatus) -> bool {
        match self {
            NoticeKind::Recovered | NoticeKind::Silent | NoticeKind::Reminder => status.is_judged(),
            NoticeKind::Watch => status == super::ChannelStatus::Silent,
        }
    }
}

/// One silence (or drop) episode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Episode {
    /// The day the account was first judged silent.
    pub started: Day,
    /// The last day the CSM was told (alert or reminder); `None` while
    /// nobody has been (the episode began while lull was catching up, or
    /// the account was snoozed).
    pub notified: Option<Day>,
    /// First day of the current run above the recover ratio.
    pub recovering_since: Option<Day>,
    /// The first quiet day (the day after the last activity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Day>,
    /// Opened within `cooldown_days` of the last alert: never told.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub muted: bool,
}

impl Episode {
    fn open(day: Day) -> Episode {
        Episode {
            started: day,
            notified: None,
            recovering_since: None,
            since: None,
            muted: false,
        }
    }
}

/// What lull remembers about an account between days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Memory {
    pub state: State,
    /// The open silence episode.
    pub episode: Option<Episode>,
    /// The open drop episode (the watch tier's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop: Option<Episode>,
    /// The last day an alert or reminder was decided (the cool-down's
    /// start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_alert: Option<Day>,
    /// The last day the account was on its CSM's watch digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watch_listed: Option<Day>,
    /// The day this state was recorded for. A big recording is written in
    /// parts ([`crate::store::Store::record_detection`]); when a crash
    /// cuts it short, the accounts already written are past the last
    /// judged day and resume after this day, not after that one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recorded: Option<Day>,
}

/// Today's signals for the machine.
#[derive(Debug, Clone, Copy)]
pub struct Today {
    /// The drop test, weighed over the channels.
    pub verdict: Verdict,
    /// The silent tier's rule holds.
    pub silent: bool,
    /// The last day with activity, and the first quiet day after it.
    pub last_activity: Option<Day>,
}

impl crate::store::Value for Memory {
    const WHAT: &'static str = "the detection state";
}

impl Memory {
    /// Moves the machine to `day`. With `emit`, the notice due today is
    /// returned (and the episode records that the CSM was told); without,
    /// the state moves silently (catching up, snoozed, muted segment).
    pub fn step(
        &mut self,
        today: Today,
        day: Day,
        t: &Thresholds,
        emit: bool,
    ) -> Option<NoticeKind> {
        let verdict = today.verdict;
        if verdict == Verdict::Unknown {
            // An outage neither starts, continues nor ends anything.
            self.state = State::Unknown;
            return None;
        }
        self.step_drop(verdict, day, t);
        let low = matches!(verdict, Verdict::Judged { low, .. } if low >= t.quorum);
        let judged = matches!(verdict, Verdict::Judged { .. });
        match self.episode.as_mut() {
            None if today.silent => {
                let muted = self
                    .last_alert
                    .is_some_and(|a| day.0 - a.0 < t.cooldown_days as i32);
                self.episode = Some(Episode {
                    since: today.last_activity.map(|l| l.plus(1)),
                    muted,
                    ..Episode::open(day)
                });
                self.state = State::Silent;
                self.notify(day, emit, t)
            }
            None => {
                self.state = if judged {
                    State::Engaged
                } else {
                    State::InsufficientData
                };
                None
            }
            Some(ep) => {
                let active_again = today.last_activity.is_some_and(|l| l >= ep.started);
                if !active_again || low {
                    ep.recovering_since = None;
                    self.state = State::Silent;
                    return self.notify(day, emit, t);
                }
                let since = *ep.recovering_since.get_or_insert(day);
                self.state = if judged {
                    State::Engaged
                } else {
                    State::InsufficientData
                };
                if day.0 - since.0 + 1 >= t.recover_days as i32 {
                    let told = ep.notified.is_some();
                    self.episode = None;
                    (emit && told && t.notify_recovery).then_some(NoticeKind::Recovered)
                } else {
                    None
                }
            }
        }
    }

    /// The drop test's own episode: opened by a silent verdict, kept while
    /// below the recover ratio, ended after `recover_days` above it (or
    /// when the baseline has faded).
    fn step_drop(&mut self, verdict: Verdict, day: Day, t: &Thresholds) {
        match verdict {
            Verdict::Unknown => {}
            Verdict::InsufficientData => self.drop = None,
            Verdict::Judged { silent, low } => match self.drop.as_mut() {
                None if silent >= t.quorum => self.drop = Some(Episode::open(day)),
                None => {}
                Some(ep) if low >= t.quorum => ep.recovering_since = None,
                Some(ep) => {
                    let since = *ep.recovering_since.get_or_insert(day);
                    if day.0 - since.0 + 1 >= t.recover_days as i32 {
                        self.drop = None;
                    }
                }
            },
        }
    }

    /// Is the account a candidate for the watch digest today: in a drop
    /// episode, below the recover ratio, and judged engaged on its last
    /// day? Not when silent (the alert speaks for it), and not on a day
    /// nothing could be judged: an outage freezes the episode (it resumes
    /// when coverage does) but says nothing about a drop, so the console,
    /// the API and the `watching` gauge count no candidate that no digest
    /// could list.
    pub fn dropping(&self) -> bool {
        self.state == State::Engaged && self.drop.is_some_and(|d| d.recovering_since.is_none())
    }

    /// The alert or reminder due today for an open episode that is still
    /// quiet.
    fn notify(&mut self, day: Day, emit: bool, t: &Thresholds) -> Option<NoticeKind> {
        let ep = self.episode.as_mut()?;
        if !emit || ep.muted {
            return None;
        }
        let kind = match ep.notified {
            // Nobody was told yet (the episode began while lull was
            // catching up, or the account was snoozed): tell now — unless
            // it began more than `silent_days` ago, which is old news
            // (a first run does not alert about accounts gone for years).
            None if day.0 - ep.started.0 <= t.silent_days as i32 => NoticeKind::Silent,
            None => return None,
            Some(last) if t.reminder_days > 0 && day.0 - last.0 >= t.reminder_days as i32 => {
                NoticeKind::Reminder
            }
            _ => return None,
        };
        ep.notified = Some(day);
        self.last_alert = Some(day);
        Some(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENGAGED: Verdict = Verdict::Judged {
        silent: 0.0,
        low: 0.0,
    };
    const DROPPED: Verdict = Verdict::Judged {
        silent: 1.0,
        low: 1.0,
    };

    /// A history as (active?, silent rule?, drop verdict) per day.
    #[derive(Default)]
    struct Days {
        last: Option<Day>,
        out: Vec<Today>,
    }

    impl Days {
        fn active(&mut self, n: usize) -> &mut Self {
            for _ in 0..n {
                self.last = Some(Day(self.out.len() as i32));
                self.out.push(Today {
                    verdict: ENGAGED,
                    silent: false,
                    last_activity: self.last,
                });
            }
            self
        }
        /// `n` quiet days; the silent rule holds from the `after`-th on.
        fn quiet(&mut self, n: usize, after: usize, verdict: Verdict) -> &mut Self {
            for i in 0..n {
                self.out.push(Today {
                    verdict,
                    silent: i >= after,
                    last_activity: self.last,
                });
            }
            self
        }
    }

    fn run(days: &[Today], t: &Thresholds) -> Vec<(i32, NoticeKind)> {
        let mut m = Memory::default();
        days.iter()
            .enumerate()
            .filter_map(|(i, v)| m.step(*v, Day(i as i32), t, true).map(|n| (i as i32, n)))
            .collect()
    }

    #[test]
    fn one_alert_per_episode_and_reminders_only_when_asked_for() {
        let mut d = Days::default();
        d.active(5).quiet(40, 10, DROPPED);
        let t = Thresholds::default();
        assert_eq!(run(&d.out, &t), vec![(15, NoticeKind::Silent)]);
        let t = Thresholds {
            reminder_days: 10,
            ..Thresholds::default()
        };
        assert_eq!(
            run(&d.out, &t),
            vec![
                (15, NoticeKind::Silent),
                (25, NoticeKind::Reminder),
                (35, NoticeKind::Reminder)
            ]
        );
    }

    #[test]
    fn an_episode_ends_only_when_active_again_and_not_low_for_recover_days() {
        let t = Thresholds {
            recover_days: 3,
            ..Thresholds::default()
        };
        let mut d = Days::default();
        d.active(5).quiet(20, 10, DROPPED);
        // One post, but the drop test still finds the account low: still
        // the same episode.
        d.active(1);
        d.out.last_mut().expect("a day").verdict = DROPPED;
        d.quiet(5, 99, DROPPED);
        assert_eq!(run(&d.out, &t), vec![(15, NoticeKind::Silent)]);
        // Back above the line for three days: one recovery notice.
        d.active(3);
        let n = d.out.len() as i32;
        assert_eq!(
            run(&d.out, &t),
            vec![(15, NoticeKind::Silent), (n - 1, NoticeKind::Recovered)]
        );
    }

    #[test]
    fn a_cool_down_mutes_a_new_silence_and_does_not_postpone_it() {
        let t = Thresholds {
            recover_days: 3,
            cooldown_days: 100,
            ..Thresholds::default()
        };
        let mut d = Days::default();
        d.active(5).quiet(20, 10, DROPPED).active(5);
        // Silent again 40 days after the alert, and for 200 days: muted,
        // and still nothing once the cool-down has passed.
        d.quiet(200, 10, DROPPED);
        let out = run(&d.out, &t);
        assert_eq!(
            out,
            vec![(15, NoticeKind::Silent), (27, NoticeKind::Recovered)]
        );
        let mut m = Memory::default();
        for (i, v) in d.out.iter().enumerate() {
            m.step(*v, Day(i as i32), &t, true);
        }
        assert!(m.episode.is_some_and(|e| e.muted));
        assert_eq!(m.state, State::Silent, "muted is still silent");
        // A silence after the cool-down is told.
        d.active(5).quiet(20, 10, DROPPED);
        let last = d.out.len() as i32 - 10;
        assert_eq!(run(&d.out, &t).last(), Some(&(last, NoticeKind::Silent)));
    }

    #[test]
    fn an_outage_freezes_an_episode() {
        let mut d = Days::default();
        d.active(5).quiet(15, 10, DROPPED);
        for v in &mut d.out[16..] {
            v.verdict = Verdict::Unknown;
        }
        d.quiet(3, 0, DROPPED);
        assert_eq!(
            run(&d.out, &Thresholds::default()),
            vec![(15, NoticeKind::Silent)]
        );
    }

    #[test]
    fn catching_up_tells_about_an_open_episode_once() {
        let t = Thresholds::default();
        let mut d = Days::default();
        d.active(5).quiet(30, 0, DROPPED);
        let mut m = Memory::default();
        for (i, v) in d.out.iter().enumerate().take(20) {
            assert_eq!(m.step(*v, Day(i as i32), &t, false), None);
        }
        assert_eq!(
            m.step(d.out[20], Day(20), &t, true),
            Some(NoticeKind::Silent)
        );
        assert_eq!(m.step(d.out[21], Day(21), &t, true), None);
        assert_eq!(
            m.episode.map(|e| (e.started, e.since)),
            Some((Day(5), Some(Day(5))))
        );
    }

    #[test]
    fn an_old_untold_silence_is_not_news() {
        let t = Thresholds::default();
        let mut d = Days::default();
        d.active(5).quiet(200, 0, DROPPED);
        // Caught up silently over 120 days of an open episode: not told.
        let mut m = Memory::default();
        for (i, v) in d.out.iter().enumerate().take(125) {
            m.step(*v, Day(i as i32), &t, false);
        }
        assert_eq!(m.step(d.out[125], Day(125), &t, true), None);
        assert_eq!(m.state, State::Silent);
        // Within `silent_days` of its start it is.
        let mut m = Memory::default();
        for (i, v) in d.out.iter().enumerate().take(40) {
            m.step(*v, Day(i as i32), &t, false);
        }
        assert_eq!(
            m.step(d.out[40], Day(40), &t, true),
            Some(NoticeKind::Silent)
        );
    }

    #[test]
    fn a_drop_makes_a_watch_candidate_until_silent_or_back() {
        let t = Thresholds {
            recover_days: 2,
            ..Thresholds::default()
        };
        let mut m = Memory::default();
        let mut d = Days::default();
        d.active(3).quiet(4, 3, DROPPED).active(3);
        let dropping: Vec<bool> = d
            .out
            .iter()
            .enumerate()
            .map(|(i, v)| {
                m.step(*v, Day(i as i32), &t, true);
                m.dropping()
            })
            .collect();
        // Dropping from day 3; silent (not a candidate) from day 6; back
        // (active, not low) from day 7.
        assert_eq!(
            dropping,
            [
                false, false, false, true, true, true, false, false, false, false
            ]
        );
    }

    #[test]
    fn an_outage_hides_a_drop_without_ending_it() {
        let t = Thresholds::default();
        let mut m = Memory::default();
        let mut d = Days::default();
        // Dropping from day 3; days 5 and 6 nothing could be judged; low
        // again on day 7.
        d.active(3).quiet(2, 99, DROPPED);
        d.quiet(2, 99, Verdict::Unknown).quiet(1, 99, DROPPED);
        let seen: Vec<(bool, State)> = d
            .out
            .iter()
            .enumerate()
            .map(|(i, v)| {
                m.step(*v, Day(i as i32), &t, true);
                (m.dropping(), m.state)
            })
            .collect();
        let dropping: Vec<bool> = seen.iter().map(|s| s.0).collect();
        assert_eq!(
            dropping,
            [false, false, false, true, true, false, false, true],
            "{seen:?}"
        );
        assert_eq!(seen[5].1, State::Unknown);
        // The outage froze the episode: the same one goes on.
        assert_eq!(m.drop.map(|e| e.started), Some(Day(3)));
    }
}
