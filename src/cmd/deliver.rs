//! `lull deliver`, and the delivery step of `lull detect`.

use std::process::ExitCode;

use super::Backend;
use crate::alert::Delivered;
use crate::say;

/// One stderr line about a delivery run.
pub(crate) fn report(d: &Delivered) {
    let mut line = format!(
        "alerts: {} sent, {} failed (rejected for good), {} still queued",
        d.sent, d.failed, d.queued
    );
    if d.held > 0 {
        line.push_str(&format!(
            " ({} held by a route's mute window{})",
            d.held,
            d.held_until
                .map(|t| format!(" until {}", t.format("%Y-%m-%d %H:%M UTC")))
                .unwrap_or_default()
        ));
    }
    if d.queued > 0 {
        if let Some(e) = &d.last_error {
            line.push_str(&format!("; last error: {e}"));
        }
        line.push_str(" — `lull deliver` (or `lull run`) sends them later");
    }
    say!("{line}");
}

pub fn run(b: &Backend) -> anyhow::Result<ExitCode> {
    let out = b.deliver()?;
    if out.queued_before == 0 {
        say!("the outbox is empty: nothing to send");
        return Ok(ExitCode::SUCCESS);
    }
    if !out.smtp && out.delivered.is_none() {
        say!(
            "{} e-mail(s) queued, but the config has no [smtp] table: nothing can be sent (see README, \"SMTP\")",
            out.queued_before
        );
        return Ok(ExitCode::FAILURE);
    }
    if let Some(e) = &out.error {
        say!("alert e-mails not sent (they stay queued): {e}");
        return Ok(ExitCode::FAILURE);
    }
    let d = out.delivered.unwrap_or_default();
    report(&d);
    Ok(if d.queued == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
