//! The per-account state machine: one alert per silence episode, a
//! reminder only after a cool-down, a "back to normal" notice, and no
//! flapping around the threshold.
//!
//! ```text
//!            silent verdict                 below recover ratio
//!  engaged ──────────────────► silent ◄──────────────────────────┐
//!     ▲     (alert, unless      │  │ reminder every reminder_days │
//!     │      already told)      │  └──────────────────────────────┘
//!     │                         │ at/above recover ratio
//!     │   recover_days in a row ▼
//!     └──────────────────── recovering (shown as engaged)
//! ```
//!
//! An `unknown` day (source outage) freezes an episode: no notice, no end.
//! An `insufficient_data` day ends it quietly: the baseline has faded and
//! a new episode needs the account to be active, then quiet, again.

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
}

impl NoticeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeKind::Silent => "silent",
            NoticeKind::Reminder => "reminder",
            NoticeKind::Recovered => "recovered",
        }
    }
}

/// One silence episode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Episode {
    /// The day the account was first judged silent.
    pub started: Day,
    /// The last day the CSM was told (alert or reminder); `None` while
    /// nobody has been (the episode began while lull was catching up).
    pub notified: Option<Day>,
    /// First day of the current run above the recover ratio.
    pub recovering_since: Option<Day>,
}

/// What lull remembers about an account between days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Memory {
    pub state: State,
    pub episode: Option<Episode>,
}

impl Memory {
    /// Moves the machine to `day` given today's verdict. With `emit`, the
    /// notices due today are returned (and the episode records that the
    /// CSM was told); without, the state moves silently (catching up).
    pub fn step(
        &mut self,
        verdict: Verdict,
        day: Day,
        t: &Thresholds,
        emit: bool,
    ) -> Option<NoticeKind> {
        match verdict {
            Verdict::Unknown => {
                // An outage neither starts, continues nor ends silence.
                self.state = State::Unknown;
                None
            }
            Verdict::InsufficientData => {
                self.state = State::InsufficientData;
                self.episode = None;
                None
            }
            Verdict::Judged { silent, low } => {
                let silent_now = silent >= t.quorum;
                let below = low >= t.quorum;
                match self.episode.as_mut() {
                    None if silent_now => {
                        self.state = State::Silent;
                        self.episode = Some(Episode {
                            started: day,
                            notified: None,
                            recovering_since: None,
                        });
                        self.notify(day, emit, silent_now, t)
                    }
                    None => {
                        self.state = State::Engaged;
                        None
                    }
                    Some(ep) if below => {
                        ep.recovering_since = None;
                        self.state = State::Silent;
                        self.notify(day, emit, silent_now, t)
                    }
                    Some(ep) => {
                        let since = *ep.recovering_since.get_or_insert(day);
                        self.state = State::Engaged;
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
        }
    }

    /// The alert or reminder due today for an open, silent episode.
    fn notify(
        &mut self,
        day: Day,
        emit: bool,
        silent_now: bool,
        t: &Thresholds,
    ) -> Option<NoticeKind> {
        let ep = self.episode.as_mut()?;
        if !emit {
            return None;
        }
        let kind = match ep.notified {
            // A silent state that nobody was told about yet (the episode
            // may have begun while catching up): tell now, if still silent
            // by the entry test.
            None if silent_now => NoticeKind::Silent,
            Some(last)
                if silent_now
                    && t.reminder_days > 0
                    && day.0 - last.0 >= t.reminder_days as i32 =>
            {
                NoticeKind::Reminder
            }
            _ => return None,
        };
        ep.notified = Some(day);
        Some(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judged(silent: f64, low: f64) -> Verdict {
        Verdict::Judged { silent, low }
    }

    fn run(verdicts: &[Verdict], t: &Thresholds) -> Vec<(i32, NoticeKind)> {
        let mut m = Memory::default();
        verdicts
            .iter()
            .enumerate()
            .filter_map(|(i, v)| m.step(*v, Day(i as i32), t, true).map(|n| (i as i32, n)))
            .collect()
    }

    #[test]
    fn one_alert_per_episode_then_a_reminder_after_the_cool_down() {
        let t = Thresholds {
            reminder_days: 10,
            ..Thresholds::default()
        };
        let mut v = vec![judged(0.0, 0.0); 5];
        v.extend(vec![judged(1.0, 1.0); 25]);
        assert_eq!(
            run(&v, &t),
            vec![
                (5, NoticeKind::Silent),
                (15, NoticeKind::Reminder),
                (25, NoticeKind::Reminder)
            ]
        );
    }

    #[test]
    fn hovering_around_the_line_does_not_flap() {
        let t = Thresholds {
            reminder_days: 0,
            recover_days: 3,
            ..Thresholds::default()
        };
        // Silent, then between the ratios (low, not silent), silent again,
        // a two-day blip above the recover ratio: all one episode.
        let mut v = vec![judged(0.0, 0.0), judged(1.0, 1.0)];
        for _ in 0..5 {
            v.extend([
                judged(0.0, 1.0),
                judged(1.0, 1.0),
                judged(0.0, 0.0),
                judged(0.0, 0.0),
            ]);
        }
        assert_eq!(run(&v, &t), vec![(1, NoticeKind::Silent)]);
        // Three days above the line end it, with one recovery notice.
        v.extend([judged(0.0, 0.0); 3]);
        v.push(judged(1.0, 1.0));
        let n = v.len() as i32;
        assert_eq!(
            run(&v, &t),
            vec![
                (1, NoticeKind::Silent),
                (n - 4, NoticeKind::Recovered),
                (n - 1, NoticeKind::Silent)
            ]
        );
    }

    #[test]
    fn an_outage_freezes_an_episode() {
        let t = Thresholds {
            reminder_days: 0,
            ..Thresholds::default()
        };
        let mut v = vec![judged(1.0, 1.0)];
        v.extend([Verdict::Unknown; 10]);
        v.extend([judged(1.0, 1.0); 3]);
        assert_eq!(run(&v, &t), vec![(0, NoticeKind::Silent)]);
    }

    #[test]
    fn catching_up_tells_about_an_open_episode_once() {
        let t = Thresholds::default();
        let mut m = Memory::default();
        for d in 0..20 {
            assert_eq!(m.step(judged(1.0, 1.0), Day(d), &t, false), None);
        }
        assert_eq!(
            m.step(judged(1.0, 1.0), Day(20), &t, true),
            Some(NoticeKind::Silent)
        );
        assert_eq!(m.step(judged(1.0, 1.0), Day(21), &t, true), None);
        assert_eq!(m.episode.map(|e| e.started), Some(Day(0)));
    }
}
