//! `lull snooze ACCOUNT --until DATE --reason TEXT` and `lull unsnooze ACCOUNT`.

use std::process::ExitCode;

use super::Backend;
use crate::app::ops::SnoozeRequest;
use crate::say;
use crate::types::Day;

pub fn snooze(b: &Backend, account: &str, until: Day, reason: &str) -> anyhow::Result<ExitCode> {
    let out = b.snooze(
        account,
        &SnoozeRequest {
            until,
            reason: reason.to_string(),
        },
    )?;
    say!(
        "{} snoozed until {until} (inclusive): no alert, reminder or recovery notice for it until then; if it is still quiet afterwards, its CSM hears about it",
        out.account
    );
    if out.dropped > 0 {
        say!(
            "{} notice(s) about it that were waiting to be sent will not be",
            out.dropped
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn unsnooze(b: &Backend, account: &str) -> anyhow::Result<ExitCode> {
    let out = b.unsnooze(account)?;
    match out.previous {
        Some(s) => say!("{}: snooze until {} lifted", out.account, s.until),
        None => say!("{} was not snoozed", out.account),
    }
    Ok(ExitCode::SUCCESS)
}
