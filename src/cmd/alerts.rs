//! `lull alerts [--json]`: the outbox and the delivery record.

use std::fmt::Write as _;
use std::process::ExitCode;

use super::{Backend, print_json, print_stdout, table_text};
use crate::alert::Status;

pub fn run(b: &Backend, json: bool) -> anyhow::Result<ExitCode> {
    let records = b.alerts()?;
    if json {
        print_json(&records)?;
        return Ok(ExitCode::SUCCESS);
    }
    if records.is_empty() {
        print_stdout("no alerts yet: nothing queued, sent or failed\n")?;
        return Ok(ExitCode::SUCCESS);
    }
    let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map_or_else(
            || "-".to_string(),
            |t| t.format("%Y-%m-%d %H:%M:%S").to_string(),
        )
    };
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|r| {
            let mut status = match r.status {
                Status::Queued => "queued",
                Status::Sending => "sending",
                Status::Sent => "sent",
                Status::Failed => "failed",
            }
            .to_string();
            if r.unknown_outcomes > 0 {
                // The relay may have it more than once (same Message-ID).
                status.push_str(&format!(" ({} unknown outcome)", r.unknown_outcomes));
            }
            vec![
                status,
                r.day.to_string(),
                r.receiver.clone(),
                r.to.clone(),
                r.accounts.join(","),
                r.kinds.join(","),
                r.attempts.to_string(),
                match r.status {
                    Status::Sent => time(r.sent_at),
                    _ => time(r.last_attempt),
                },
                r.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let mut out = table_text(
        &[
            "STATUS",
            "DAY",
            "RECEIVER",
            "TO",
            "ACCOUNTS",
            "KINDS",
            "ATTEMPTS",
            "TIME (UTC)",
            "ERROR",
        ],
        &rows,
    );
    let count = |s: Status| records.iter().filter(|r| r.status == s).count();
    let _ = writeln!(
        out,
        "\n{} queued, {} sent, {} failed",
        count(Status::Queued),
        count(Status::Sent),
        count(Status::Failed)
    );
    print_stdout(&out)?;
    Ok(ExitCode::SUCCESS)
}
