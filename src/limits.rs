//! `[limits]` and `[backup]`: what lull accepts from outside, and how it
//! keeps copies of its store.
//!
//! Limits bound what a source or an import file can make lull do: a
//! timestamp decades off makes coverage and detection span decades; a
//! response that decompresses to gigabytes, a page nested 200,000 deep or
//! a service that pages forever would take the service's memory or time.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::diag::{Diagnostic, SourceText};
use crate::types::Day;

/// No customer activity lull reads predates 1990: a year-0 or 1970 date is
/// a parsing accident upstream, and accepting it would stretch every
/// account's timeline across decades.
pub const DEFAULT_EARLIEST: &str = "1990-01-01";
/// Clocks disagree and time zones run ahead: two days into the future is
/// plausible, a date in 2099 is not.
pub const DEFAULT_FUTURE_DAYS: u32 = 2;
/// The largest response body lull reads (after decompression). The
/// biggest real answers lull asks for (100 posts, a page of 1,000 events)
/// are a few MiB.
pub const DEFAULT_MAX_BODY_MB: u64 = 32;
/// Requests in one poll of one source: enough for a first backfill of
/// 500,000 forum posts or of 10,000 help-desk tickets with their replies
/// (one request each), and still a bound on a service that pages forever.
pub const DEFAULT_MAX_REQUESTS: u64 = 10_000;
/// Bytes one poll may read in all (after decompression): what a poll keeps
/// in memory until it commits grows with it. 256 MiB of JSON is about
/// 170,000 Discourse posts.
pub const DEFAULT_MAX_POLL_MB: u64 = 256;
/// How deep an HTML page may nest its elements. Real forum pages stay
/// below 60; the HTML parser slows down quadratically with depth.
pub const DEFAULT_HTML_DEPTH: usize = 512;

/// Keep a week of daily backups.
pub const DEFAULT_BACKUP_KEEP: usize = 7;
/// At 02:30 in the config's time zone: after the evening's polls, before
/// the morning's detection.
pub const DEFAULT_BACKUP_SCHEDULE: &str = "0 30 2 * * *";

/// The validated `[limits]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Events before this day are refused.
    pub earliest: Day,
    /// Events more than this many days after today are refused.
    pub future_days: u32,
    pub max_body_bytes: u64,
    pub max_poll_bytes: u64,
    pub max_requests: u64,
    pub html_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            earliest: DEFAULT_EARLIEST
                .parse()
                .unwrap_or_else(|_| unreachable!("the default parses")),
            future_days: DEFAULT_FUTURE_DAYS,
            max_body_bytes: DEFAULT_MAX_BODY_MB << 20,
            max_poll_bytes: DEFAULT_MAX_POLL_MB << 20,
            max_requests: DEFAULT_MAX_REQUESTS,
            html_depth: DEFAULT_HTML_DEPTH,
        }
    }
}

impl Limits {
    /// Whether an event on `day` is plausible when today is `today`; the
    /// error says why not.
    pub fn check_day(&self, day: Day, today: Day) -> Result<(), String> {
        if day < self.earliest {
            return Err(format!(
                "the date {day} is before {} ([limits] earliest): a wrong timestamp?",
                self.earliest
            ));
        }
        let latest = today.plus(self.future_days as i32);
        if day > latest {
            return Err(format!(
                "the date {day} is more than {} day(s) in the future (today is {today}; [limits] future_days): a wrong timestamp?",
                self.future_days
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Deserialize, Default)]
pub(crate) struct RawLimits {
    earliest: Option<Spanned<String>>,
    future_days: Option<Spanned<u32>>,
    max_body_mb: Option<Spanned<u64>>,
    max_poll_mb: Option<Spanned<u64>>,
    max_requests: Option<Spanned<u64>>,
    html_depth: Option<Spanned<u64>>,
}

impl RawLimits {
    pub(crate) fn build(&self, src: &SourceText, problems: &mut Vec<Diagnostic>) -> Limits {
        let mut l = Limits::default();
        if let Some(e) = &self.earliest {
            match e.get_ref().parse::<Day>() {
                Ok(d) => l.earliest = d,
                Err(err) => problems.push(src.span(e, format!("`limits.earliest`: {err}"))),
            }
        }
        if let Some(f) = &self.future_days {
            if *f.get_ref() > 366 {
                problems.push(src.span(f, "`limits.future_days` must be at most 366"));
            } else {
                l.future_days = *f.get_ref();
            }
        }
        let positive = |v: &Option<Spanned<u64>>,
                        key: &str,
                        max: u64,
                        problems: &mut Vec<Diagnostic>|
         -> Option<u64> {
            let v = v.as_ref()?;
            if *v.get_ref() == 0 || *v.get_ref() > max {
                problems.push(src.span(v, format!("`limits.{key}` must be between 1 and {max}")));
                None
            } else {
                Some(*v.get_ref())
            }
        };
        if let Some(mb) = positive(&self.max_body_mb, "max_body_mb", 4096, problems) {
            l.max_body_bytes = mb << 20;
        }
        if let Some(mb) = positive(&self.max_poll_mb, "max_poll_mb", 65536, problems) {
            l.max_poll_bytes = mb << 20;
        }
        if let Some(n) = positive(&self.max_requests, "max_requests", 10_000_000, problems) {
            l.max_requests = n;
        }
        if let Some(n) = positive(&self.html_depth, "html_depth", 100_000, problems) {
            l.html_depth = n as usize;
        }
        l
    }
}

/// The validated `[backup]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct BackupConfig {
    /// Where backups go (scheduled ones, and the one taken before a store
    /// upgrade); the "corrupt" error names the newest one here.
    pub dir: PathBuf,
    /// When the service takes one (cron, 6 fields, in the config's zone).
    pub schedule: cron::Schedule,
    pub schedule_text: String,
    /// How many scheduled backups to keep; 0 turns them off.
    pub keep: usize,
}

#[derive(Debug, Deserialize, Default)]
pub(crate) struct RawBackup {
    dir: Option<String>,
    schedule: Option<Spanned<String>>,
    keep: Option<Spanned<u64>>,
}

impl RawBackup {
    /// `store_path`: the resolved store folder; backups default to a
    /// `backups` folder beside it.
    pub(crate) fn build(
        &self,
        base: &Path,
        store_path: &Path,
        src: &SourceText,
        problems: &mut Vec<Diagnostic>,
    ) -> BackupConfig {
        let dir = match &self.dir {
            Some(d) => base.join(d),
            None => store_path
                .parent()
                .unwrap_or(Path::new("."))
                .join("backups"),
        };
        let mut schedule_text = DEFAULT_BACKUP_SCHEDULE.to_string();
        let mut schedule = crate::sources::config::parse_schedule(DEFAULT_BACKUP_SCHEDULE)
            .unwrap_or_else(|_| unreachable!("the default schedule parses"));
        if let Some(s) = &self.schedule {
            match crate::sources::config::parse_schedule(s.get_ref()) {
                Ok(parsed) => {
                    schedule = parsed;
                    schedule_text = s.get_ref().clone();
                }
                Err(e) => problems.push(src.span(s, format!("`backup.schedule`: {e}"))),
            }
        }
        let mut keep = DEFAULT_BACKUP_KEEP;
        if let Some(k) = &self.keep {
            if *k.get_ref() > 10_000 {
                problems.push(src.span(k, "`backup.keep` must be at most 10000"));
            } else {
                keep = *k.get_ref() as usize;
            }
        }
        BackupConfig {
            dir,
            schedule,
            schedule_text,
            keep,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_outside_the_plausible_window_are_refused_with_the_reason() {
        let l = Limits::default();
        let today: Day = "2026-11-28".parse().unwrap();
        assert!(l.check_day(today.plus(2), today).is_ok());
        assert!(l.check_day("1990-01-01".parse().unwrap(), today).is_ok());
        let e = l
            .check_day("0001-01-01".parse().unwrap(), today)
            .unwrap_err();
        assert!(e.contains("before 1990-01-01"), "{e}");
        let e = l
            .check_day("2099-01-01".parse().unwrap(), today)
            .unwrap_err();
        assert!(e.contains("in the future"), "{e}");
    }
}
