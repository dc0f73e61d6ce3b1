//! `lull deliver`, and the delivery step of `lull detect`.

use std::process::ExitCode;

use super::Context;
use crate::alert::{Delivered, Mailer};

/// Sends what the outbox holds through `[smtp]`, retrying for the
/// configured `retry_secs`. `None` when no SMTP is configured.
pub(crate) fn send_queued(ctx: &Context) -> anyhow::Result<Option<Delivered>> {
    let Some(smtp) = &ctx.config.smtp else {
        return Ok(None);
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let done = runtime.block_on(async {
        let mailer = Mailer::new(smtp)?;
        let halt = tokio_util::sync::CancellationToken::new();
        let stop = async {
            // Ctrl-C ends the retrying early and starts no new send; what
            // is queued stays queued.
            let _ = tokio::signal::ctrl_c().await;
            halt.cancel();
        };
        anyhow::Ok(
            crate::alert::deliver(&ctx.store, &mailer, &smtp.from, smtp.retry_for, stop, &halt)
                .await?,
        )
    })?;
    Ok(Some(done))
}

/// One stderr line about a delivery run.
pub(crate) fn report(d: &Delivered) {
    let mut line = format!(
        "alert e-mails: {} sent, {} failed (rejected for good), {} still queued",
        d.sent, d.failed, d.queued
    );
    if d.queued > 0 {
        if let Some(e) = &d.last_error {
            line.push_str(&format!("; last error: {e}"));
        }
        line.push_str(" — `lull deliver` (or `lull run`) sends them later");
    }
    eprintln!("{line}");
}

pub fn run(ctx: &Context) -> anyhow::Result<ExitCode> {
    let queued = crate::alert::deliver::pending(&ctx.store, &ctx.config.alert_sender())?.len();
    if queued == 0 {
        eprintln!("the outbox is empty: nothing to send");
        return Ok(ExitCode::SUCCESS);
    }
    match send_queued(ctx)? {
        None => {
            eprintln!(
                "{queued} e-mail(s) queued, but {} has no [smtp] table: nothing can be sent (see README, \"SMTP\")",
                ctx.config.file.display()
            );
            Ok(ExitCode::FAILURE)
        }
        Some(d) => {
            report(&d);
            Ok(if d.queued == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}
