//! What `/readyz` and `/metrics` report about the running service: whether
//! the scheduler runs, and each source's last poll and last day of data.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use crate::schedule::Clock;
use crate::types::Day;

/// One source as the service sees it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct SourceStatus {
    /// The last day with data (from polls or imports).
    pub last_day: Option<Day>,
    pub last_success: Option<DateTime<Utc>>,
    pub last_failure: Option<DateTime<Utc>>,
    /// The last failure's message (secrets never reach it: sources redact
    /// their own errors).
    pub last_error: Option<String>,
    pub polling: bool,
    /// True when it has had no data for `stale_days` (set by [`Health::check`]).
    pub stale: bool,
}

/// Shared between the scheduler's tasks and the HTTP handlers.
#[derive(Debug)]
pub struct Health {
    clock: Clock,
    tz: Tz,
    started: DateTime<Utc>,
    stale_days: AtomicU32,
    scheduler_running: AtomicBool,
    /// What keeps the store from taking data (a nearly full disk).
    store_problem: Mutex<Option<String>>,
    sources: Mutex<BTreeMap<String, SourceStatus>>,
}

/// The answer to `/readyz`.
#[derive(Debug, Serialize)]
pub struct Readiness {
    pub ready: bool,
    /// Why not, one line each.
    pub reasons: Vec<String>,
    pub sources: BTreeMap<String, SourceStatus>,
}

impl Health {
    /// `last_days`: each polled source's last day of data in the store.
    pub fn new(
        clock: Clock,
        tz: Tz,
        stale_days: u32,
        last_days: impl IntoIterator<Item = (String, Option<Day>)>,
    ) -> Health {
        Health {
            clock,
            tz,
            started: clock.now(),
            stale_days: AtomicU32::new(stale_days),
            scheduler_running: AtomicBool::new(false),
            store_problem: Mutex::new(None),
            sources: Mutex::new(
                last_days
                    .into_iter()
                    .map(|(s, last_day)| {
                        (
                            s,
                            SourceStatus {
                                last_day,
                                ..SourceStatus::default()
                            },
                        )
                    })
                    .collect(),
            ),
        }
    }

    pub fn set_scheduler_running(&self, running: bool) {
        self.scheduler_running.store(running, Ordering::SeqCst);
    }

    /// Sets (or clears) what keeps the store from taking data.
    pub fn set_store_problem(&self, problem: Option<String>) {
        *self.store_problem.lock().unwrap_or_else(|p| p.into_inner()) = problem;
    }

    pub fn set_stale_days(&self, days: u32) {
        self.stale_days.store(days, Ordering::SeqCst);
    }

    /// Changes one source's status.
    pub fn update(&self, source: &str, f: impl FnOnce(&mut SourceStatus)) {
        let mut sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        f(sources.entry(source.to_string()).or_default());
    }

    /// Judges staleness now (the rule detection uses: no data in the last
    /// `stale_days` days; a source never polled successfully counts from
    /// the service's start) and updates the `lull_source_stale` gauges.
    pub fn check(&self) -> Readiness {
        let now = self.clock.now();
        let today = Day::of(now, self.tz);
        let stale_days = self.stale_days.load(Ordering::SeqCst);
        let mut reasons = Vec::new();
        if !self.scheduler_running.load(Ordering::SeqCst) {
            reasons.push("the scheduler is not running".to_string());
        }
        if let Some(p) = self
            .store_problem
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            reasons.push(p);
        }
        let mut sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        for (name, s) in sources.iter_mut() {
            let since = s.last_day.unwrap_or_else(|| Day::of(self.started, self.tz));
            s.stale = stale_days > 0 && since.plus(stale_days as i32) <= today;
            metrics::gauge!(super::telemetry::SOURCE_STALE, "source" => name.clone())
                .set(if s.stale { 1.0 } else { 0.0 });
            if s.stale {
                let mut why = match s.last_day {
                    Some(d) => format!(
                        "source {name} has no data since {d} (stale after {stale_days} day(s)); its channels are unknown"
                    ),
                    None => format!(
                        "source {name} has had no successful poll since the service started {}",
                        self.started.format("%Y-%m-%d %H:%M UTC")
                    ),
                };
                if let Some(e) = &s.last_error {
                    why.push_str(&format!("; last error: {e}"));
                }
                reasons.push(why);
            }
        }
        Readiness {
            ready: reasons.is_empty(),
            reasons,
            sources: sources.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_source_is_stale_after_stale_days_without_data() {
        let now = Utc.with_ymd_and_hms(2026, 3, 10, 12, 0, 0).unwrap();
        let clock = Clock::starting_at(now);
        let today = Day::of(now, Tz::UTC);
        let h = Health::new(
            clock,
            Tz::UTC,
            3,
            [
                ("fresh".to_string(), Some(today.plus(-2))),
                ("old".to_string(), Some(today.plus(-3))),
                ("new".to_string(), None),
            ],
        );
        h.set_scheduler_running(true);
        let r = h.check();
        assert!(!r.ready);
        assert_eq!(r.reasons.len(), 1, "{:?}", r.reasons);
        assert!(r.reasons[0].contains("source old has no data since"));
        assert!(!r.sources["fresh"].stale && !r.sources["new"].stale);

        // Data arrives: ready again. A source that never delivered becomes
        // stale `stale_days` after the start.
        h.update("old", |s| s.last_day = Some(today));
        tokio::time::advance(std::time::Duration::from_secs(3 * 86_400)).await;
        let r = h.check();
        assert!(r.sources["new"].stale && r.sources["old"].stale);
        h.update("old", |s| s.last_day = Some(today.plus(3)));
        h.update("new", |s| s.last_day = Some(today.plus(3)));
        h.update("fresh", |s| s.last_day = Some(today.plus(3)));
        assert!(h.check().ready);
        h.set_scheduler_running(false);
        assert_eq!(h.check().reasons, vec!["the scheduler is not running"]);
    }
}
