//! Cron-driven jobs: when a job runs, and never two runs of it at once.
//!
//! A job's next run is the first tick of its schedule *after the previous
//! run ended*: a run that overruns one or more ticks skips them (and says
//! so in the log and in `lull_ticks_skipped_total`) instead of stacking
//! runs behind each other. Schedules are read in the config's time zone,
//! so `0 0 6 * * *` means 06:00 local time, daylight saving included.
//!
//! Time comes from a [`Clock`]: the wall clock in production, or one that
//! follows tokio's clock in tests, where `tokio::time::pause` makes a day
//! of ticks run in milliseconds and the same way every time.

use std::future::Future;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use tokio_util::sync::CancellationToken;

/// Where "now" comes from.
#[derive(Debug, Clone, Copy)]
pub enum Clock {
    /// The system's wall clock.
    System,
    /// `base` at tokio's instant `at`, advancing with tokio's clock (which
    /// tests pause and advance).
    Tokio {
        base: DateTime<Utc>,
        at: tokio::time::Instant,
    },
}

impl Clock {
    /// A clock that reads `start` now and then follows tokio's clock.
    pub fn starting_at(start: DateTime<Utc>) -> Clock {
        Clock::Tokio {
            base: start,
            at: tokio::time::Instant::now(),
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => Utc::now(),
            Clock::Tokio { base, at } => {
                let elapsed = tokio::time::Instant::now().saturating_duration_since(*at);
                *base + chrono::Duration::from_std(elapsed).unwrap_or(chrono::Duration::MAX)
            }
        }
    }

    /// Sleeps until `when` (by this clock). Re-checks after waking, so a
    /// wall clock that was set back does not make a job run early. `false`
    /// when cancelled first.
    pub async fn sleep_until(&self, when: DateTime<Utc>, cancel: &CancellationToken) -> bool {
        loop {
            let now = self.now();
            if now >= when {
                return true;
            }
            let wait = (when - now).to_std().unwrap_or_default();
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = cancel.cancelled() => return false,
            }
        }
    }
}

/// A named cron schedule in a time zone.
#[derive(Debug, Clone)]
pub struct Ticker {
    pub name: String,
    pub schedule: cron::Schedule,
    pub tz: Tz,
}

/// At most this many skipped ticks are counted after one overrun (an
/// every-second schedule behind a ten-minute poll).
const MAX_COUNTED_SKIPS: u64 = 100_000;

impl Ticker {
    pub fn new(name: impl Into<String>, schedule: cron::Schedule, tz: Tz) -> Ticker {
        Ticker {
            name: name.into(),
            schedule,
            tz,
        }
    }

    /// The first tick strictly after `t`; `None` for a schedule that has
    /// no more (a fixed year in the past).
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.schedule
            .after(&t.with_timezone(&self.tz))
            .next()
            .map(|n| n.with_timezone(&Utc))
    }

    /// The last tick at or before `t`, looking back at most `within`.
    /// Walks the schedule backwards (an every-second schedule is not
    /// stepped through a week of ticks at every start).
    pub fn last_at_or_before(
        &self,
        t: DateTime<Utc>,
        within: chrono::Duration,
    ) -> Option<DateTime<Utc>> {
        // From one second on, so a tick exactly at `t` is found; at most
        // one tick lies in between.
        let from = (t + chrono::Duration::seconds(1)).with_timezone(&self.tz);
        self.schedule
            .after(&from)
            .rev()
            .map(|n| n.with_timezone(&Utc))
            .find(|n| *n <= t)
            .filter(|n| *n >= t - within)
    }

    /// Ticks in `(after, until]`: the ones a run from `after` to `until`
    /// went past.
    pub fn ticks_between(&self, after: DateTime<Utc>, until: DateTime<Utc>) -> u64 {
        self.schedule
            .after(&after.with_timezone(&self.tz))
            .take_while(|n| n.with_timezone(&Utc) <= until)
            .take(MAX_COUNTED_SKIPS as usize)
            .count() as u64
    }

    /// Runs `job` at each tick until `cancel` fires; the first run right
    /// away when `first_now`. The job gets the tick it runs for. A job in
    /// progress is not interrupted here: the job itself decides what to do
    /// with `cancel` (finish or abandon).
    pub async fn run<F, Fut>(
        &self,
        clock: Clock,
        cancel: &CancellationToken,
        first_now: bool,
        mut job: F,
    ) where
        F: FnMut(DateTime<Utc>) -> Fut,
        Fut: Future<Output = ()>,
    {
        let start = clock.now();
        let mut next = if first_now {
            Some(start)
        } else {
            self.next_after(start)
        };
        while let Some(tick) = next {
            tracing::debug!(job = %self.name, next = %tick, "waiting for the next tick");
            if !clock.sleep_until(tick, cancel).await {
                return;
            }
            job(tick).await;
            if cancel.is_cancelled() {
                return;
            }
            let ended = clock.now();
            let skipped = self.ticks_between(tick, ended);
            if skipped > 0 {
                tracing::warn!(
                    job = %self.name,
                    skipped,
                    started = %tick,
                    ended = %ended,
                    "the run overran its schedule; missed ticks are skipped, not stacked"
                );
                metrics::counter!(crate::service::telemetry::TICKS_SKIPPED, "job" => self.name.clone())
                    .increment(skipped);
            }
            next = self.next_after(ended);
        }
        tracing::warn!(job = %self.name, "the schedule has no more ticks; the job stops");
        cancel.cancelled().await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use chrono::TimeZone;

    use super::*;
    use crate::sources::config::parse_schedule;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    /// Runs a ticker for `for_secs` of (paused) tokio time with a job that
    /// takes `job_secs`; returns when each run started and the largest
    /// number of runs seen in progress at once.
    async fn fire_times(
        schedule: &str,
        tz: Tz,
        start: DateTime<Utc>,
        job_secs: u64,
        for_secs: u64,
        first_now: bool,
    ) -> (Vec<DateTime<Utc>>, usize) {
        let clock = Clock::starting_at(start);
        let ticker = Ticker::new("test", parse_schedule(schedule).unwrap(), tz);
        let cancel = CancellationToken::new();
        let fired = Arc::new(Mutex::new(Vec::new()));
        let running = Arc::new(Mutex::new((0usize, 0usize)));
        let task = {
            let (fired, running, cancel) = (fired.clone(), running.clone(), cancel.clone());
            tokio::spawn(async move {
                ticker
                    .run(clock, &cancel, first_now, |_| {
                        let (fired, running) = (fired.clone(), running.clone());
                        async move {
                            fired.lock().unwrap().push(clock.now());
                            {
                                let mut r = running.lock().unwrap();
                                r.0 += 1;
                                r.1 = r.1.max(r.0);
                            }
                            tokio::time::sleep(Duration::from_secs(job_secs)).await;
                            running.lock().unwrap().0 -= 1;
                        }
                    })
                    .await;
            })
        };
        tokio::time::sleep(Duration::from_secs(for_secs)).await;
        cancel.cancel();
        task.await.unwrap();
        let fired = fired.lock().unwrap().clone();
        let most = running.lock().unwrap().1;
        (fired, most)
    }

    #[tokio::test(start_paused = true)]
    async fn runs_on_each_tick() {
        let start = at(2026, 3, 2, 10, 0, 0);
        let (fired, most) = fire_times("*/10 * * * * *", Tz::UTC, start, 1, 35, false).await;
        assert_eq!(
            fired,
            vec![
                at(2026, 3, 2, 10, 0, 10),
                at(2026, 3, 2, 10, 0, 20),
                at(2026, 3, 2, 10, 0, 30)
            ]
        );
        assert_eq!(most, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_overrun_skips_missed_ticks_and_never_stacks() {
        let start = at(2026, 3, 2, 10, 0, 0);
        // Each run takes 25 s on a 10 s schedule: the runs at :20 and :30
        // are skipped, the next starts at :40.
        let (fired, most) = fire_times("*/10 * * * * *", Tz::UTC, start, 25, 105, false).await;
        assert_eq!(
            fired,
            vec![
                at(2026, 3, 2, 10, 0, 10),
                at(2026, 3, 2, 10, 0, 40),
                at(2026, 3, 2, 10, 1, 10),
                at(2026, 3, 2, 10, 1, 40)
            ]
        );
        assert_eq!(most, 1, "two runs of one job were in progress at once");
    }

    #[tokio::test(start_paused = true)]
    async fn first_run_right_away_when_asked() {
        let start = at(2026, 3, 2, 10, 0, 3);
        let (fired, _) = fire_times("0 * * * * *", Tz::UTC, start, 1, 61, true).await;
        assert_eq!(fired, vec![start, at(2026, 3, 2, 10, 1, 0)]);
    }

    #[tokio::test(start_paused = true)]
    async fn daily_at_a_local_time_follows_the_zone_and_daylight_saving() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        // 2026-03-28 (CET, UTC+1) and 2026-03-29 (CEST, UTC+2 from 02:00).
        let start = at(2026, 3, 28, 0, 0, 0);
        let (fired, _) = fire_times("0 0 6 * * *", berlin, start, 1, 2 * 86_400, false).await;
        assert_eq!(
            fired,
            vec![at(2026, 3, 28, 5, 0, 0), at(2026, 3, 29, 4, 0, 0)]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn weekday_names_skip_the_weekend() {
        // 2026-03-06 is a Friday.
        let start = at(2026, 3, 6, 12, 0, 0);
        let (fired, _) =
            fire_times("0 30 6 * * Mon-Fri", Tz::UTC, start, 1, 4 * 86_400, false).await;
        assert_eq!(
            fired,
            vec![at(2026, 3, 9, 6, 30, 0), at(2026, 3, 10, 6, 30, 0)]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn cancel_while_waiting_returns_at_once() {
        let clock = Clock::starting_at(at(2026, 3, 2, 10, 0, 0));
        let ticker = Ticker::new("daily", parse_schedule("0 0 6 * * *").unwrap(), Tz::UTC);
        let cancel = CancellationToken::new();
        let began = tokio::time::Instant::now();
        let c = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            c.cancel();
        });
        let mut ran = false;
        ticker
            .run(clock, &cancel, false, |_| {
                ran = true;
                async {}
            })
            .await;
        assert!(!ran);
        assert_eq!(began.elapsed(), Duration::from_secs(3));
    }

    #[test]
    fn last_tick_and_ticks_between() {
        let t = Ticker::new("d", parse_schedule("0 0 6 * * *").unwrap(), Tz::UTC);
        let now = at(2026, 3, 2, 7, 0, 0);
        assert_eq!(
            t.last_at_or_before(now, chrono::Duration::days(2)),
            Some(at(2026, 3, 2, 6, 0, 0))
        );
        assert_eq!(
            t.last_at_or_before(at(2026, 3, 2, 5, 0, 0), chrono::Duration::hours(2)),
            None
        );
        // A tick exactly at `t` counts; sub-second times round down.
        let six = at(2026, 3, 2, 6, 0, 0);
        assert_eq!(
            t.last_at_or_before(six, chrono::Duration::hours(1)),
            Some(six)
        );
        let every = Ticker::new("s", parse_schedule("* * * * * *").unwrap(), Tz::UTC);
        let late = six + chrono::Duration::milliseconds(500);
        assert_eq!(
            every.last_at_or_before(late, chrono::Duration::days(7)),
            Some(six)
        );
        assert_eq!(t.ticks_between(at(2026, 3, 1, 6, 0, 0), now), 1);
        assert_eq!(t.ticks_between(at(2026, 2, 27, 6, 0, 0), now), 3);
    }
}
