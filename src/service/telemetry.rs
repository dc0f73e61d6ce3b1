//! The Prometheus metrics `lull run` serves on `/metrics`: one place that
//! names them, says what they mean and registers them at zero, so a
//! dashboard sees every series from the first scrape.

use metrics::{describe_counter, describe_gauge};

pub const POLLS: &str = "lull_polls_total";
pub const POLL_FAILURES: &str = "lull_poll_failures_total";
pub const LAST_POLL_SUCCESS: &str = "lull_last_successful_poll_timestamp_seconds";
pub const POLL_SECONDS: &str = "lull_last_poll_duration_seconds";
pub const ACTIVITIES: &str = "lull_activities_stored_total";
pub const UNMATCHED_ACTIVITIES: &str = "lull_unmatched_activities_total";
pub const UNMATCHED_ACTORS: &str = "lull_unmatched_actors";
pub const SOURCE_STALE: &str = "lull_source_stale";
pub const ACCOUNTS: &str = "lull_accounts";
pub const WATCHING: &str = "lull_accounts_watch";
pub const ALERTS_QUEUED: &str = "lull_alerts_queued_total";
pub const ALERTS_SENT: &str = "lull_alert_emails_sent_total";
pub const ALERTS_FAILED: &str = "lull_alert_emails_failed_total";
pub const OUTBOX: &str = "lull_outbox_emails";
pub const DETECTION_SECONDS: &str = "lull_last_detection_duration_seconds";
pub const LAST_DETECTION: &str = "lull_last_detection_timestamp_seconds";
pub const DETECTION_FAILURES: &str = "lull_detection_failures_total";
pub const TICKS_SKIPPED: &str = "lull_ticks_skipped_total";
pub const RELOADS: &str = "lull_reloads_total";
pub const BUILD_INFO: &str = "lull_build_info";
pub const STORE_OK: &str = "lull_store_ok";
pub const STORE_FREE: &str = "lull_store_free_bytes";
pub const BACKUPS: &str = "lull_backups_total";
pub const LAST_BACKUP: &str = "lull_last_backup_timestamp_seconds";
pub const LAST_BACKUP_BYTES: &str = "lull_last_backup_bytes";

/// Account states, as `lull accounts` names them.
pub const STATES: [&str; 4] = ["engaged", "silent", "insufficient_data", "unknown"];

/// Describes every metric and sets each series to zero.
pub fn register(sources: &[String]) {
    describe_counter!(POLLS, "Polls finished, successful or not, per source.");
    describe_counter!(
        POLL_FAILURES,
        "Polls that failed or were abandoned at shutdown (nothing of theirs was stored)."
    );
    describe_gauge!(
        LAST_POLL_SUCCESS,
        "Unix time of the source's last successful poll (absent until one succeeds)."
    );
    describe_gauge!(POLL_SECONDS, "How long the source's last poll took.");
    describe_counter!(
        ACTIVITIES,
        "Activities newly counted (after dedupe) per source."
    );
    describe_counter!(
        UNMATCHED_ACTIVITIES,
        "Activities whose actor matched no account, per source."
    );
    describe_gauge!(
        UNMATCHED_ACTORS,
        "Distinct actors matching no account (see `lull accounts --unmatched`)."
    );
    describe_gauge!(
        SOURCE_STALE,
        "1 while the source has no data for `stale_days`: its channels are unknown."
    );
    describe_gauge!(ACCOUNTS, "Accounts per state at the last detection run.");
    describe_gauge!(
        WATCHING,
        "Accounts dropping below their baseline and not silent (watch-list candidates) at the last detection run."
    );
    describe_counter!(ALERTS_QUEUED, "Notices queued by detection runs.");
    describe_counter!(ALERTS_SENT, "Alert e-mails the SMTP relay accepted.");
    describe_counter!(
        ALERTS_FAILED,
        "Alert e-mails rejected for good (5xx) or not composable."
    );
    describe_gauge!(OUTBOX, "Alert e-mails waiting in the outbox.");
    describe_gauge!(DETECTION_SECONDS, "How long the last detection run took.");
    describe_gauge!(LAST_DETECTION, "Unix time the last detection run finished.");
    describe_counter!(DETECTION_FAILURES, "Detection runs that failed.");
    describe_counter!(
        TICKS_SKIPPED,
        "Scheduled runs skipped because the previous run of the job was still going."
    );
    describe_counter!(RELOADS, "SIGHUP reloads, by result.");
    describe_gauge!(BUILD_INFO, "Always 1; the version is a label.");
    describe_gauge!(
        STORE_OK,
        "1 while the store can commit; 0 once it cannot (lull then stops, exit 3, to be restarted)."
    );
    describe_gauge!(
        STORE_FREE,
        "Bytes free on the store's disk (writes are refused below [store] min_free_mb)."
    );
    describe_counter!(BACKUPS, "Scheduled backups, by result.");
    describe_gauge!(
        LAST_BACKUP,
        "Unix time the last scheduled backup was written."
    );
    describe_gauge!(LAST_BACKUP_BYTES, "Size of the last scheduled backup.");
    metrics::gauge!(STORE_OK).set(1.0);
    for result in ["ok", "failed"] {
        metrics::counter!(BACKUPS, "result" => result).absolute(0);
    }

    metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    for s in sources {
        for name in [POLLS, POLL_FAILURES, ACTIVITIES, UNMATCHED_ACTIVITIES] {
            metrics::counter!(name, "source" => s.clone()).absolute(0);
        }
        metrics::counter!(TICKS_SKIPPED, "job" => format!("poll:{s}")).absolute(0);
        metrics::gauge!(SOURCE_STALE, "source" => s.clone()).set(0.0);
    }
    metrics::counter!(TICKS_SKIPPED, "job" => "detect").absolute(0);
    for c in [
        ALERTS_QUEUED,
        ALERTS_SENT,
        ALERTS_FAILED,
        DETECTION_FAILURES,
    ] {
        metrics::counter!(c).absolute(0);
    }
    for result in ["ok", "failed"] {
        metrics::counter!(RELOADS, "result" => result).absolute(0);
    }
}
