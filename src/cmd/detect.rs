//! `lull detect [--at DATE] [--dry-run] [--no-send] [--json]`.

use std::process::ExitCode;

use super::{Context, print_stdout, table_text};
use crate::detect::{AccountJudgement, ChannelStatus, judge_day};
use crate::types::Day;

pub fn run(
    ctx: &Context,
    at: Option<Day>,
    dry_run: bool,
    no_send: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let at = at.unwrap_or_else(|| Day::today(ctx.config.timezone));
    let span = tracing::info_span!("detect", day = %at, dry_run);
    let _enter = span.enter();
    let run = judge_day(&ctx.store, &ctx.registry, &ctx.config.detect, at)?;
    if run.already_judged {
        eprintln!(
            "note: detection already ran for {} (last judged day); showing the judgement again, nothing new is queued",
            run.previous.map_or_else(|| "-".into(), |d| d.to_string())
        );
    }
    let ops = ctx.config.alerts.ops_email.as_ref().map(|m| m.to_string());
    let queued = if dry_run {
        0
    } else {
        run.record(&ctx.store, ops.as_deref())?
    };
    tracing::info!(
        accounts = run.accounts.len(),
        notices = run.notices.len(),
        queued,
        "detection done"
    );
    if json {
        print_stdout(&(serde_json::to_string_pretty(&run.accounts)? + "\n"))?;
    } else {
        print_stdout(&text(&run.accounts))?;
    }
    for n in &run.notices {
        eprintln!(
            "{} {}: {} (CSM {}){}",
            n.date,
            n.notice.as_str(),
            n.account,
            n.csm,
            if dry_run {
                " — dry run, not queued"
            } else {
                ""
            }
        );
    }
    for (source, last) in run.newly_stale() {
        eprintln!(
            "source {source} has no data since {last}: its channels are unknown (no silence alerts from it){}",
            match (&ops, dry_run) {
                (_, true) => " — dry run, nobody told".to_string(),
                (Some(to), false) => format!("; {to} is told"),
                (None, false) => "; set [alerts] ops_email to have ops told by e-mail".to_string(),
            }
        );
    }
    if !dry_run && !run.already_judged {
        eprintln!("{queued} notice(s) queued in the outbox");
    }
    if dry_run || no_send {
        return Ok(ExitCode::SUCCESS);
    }
    match super::deliver::send_queued(ctx) {
        Ok(Some(d)) if d.sent + d.failed + d.queued > 0 => super::deliver::report(&d),
        Ok(Some(_)) => {}
        Ok(None) if queued > 0 => {
            eprintln!("no [smtp] is configured, so nothing was sent; `lull alerts` lists the queue")
        }
        Ok(None) => {}
        // Detection is recorded; a delivery that cannot start leaves the
        // alerts queued and is reported, not fatal.
        Err(e) => eprintln!("alert e-mails not sent (they stay queued): {e:#}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// One line per account: state, since when, and each judged channel as
/// observed/expected.
fn text(accounts: &[AccountJudgement]) -> String {
    let rows: Vec<Vec<String>> = accounts
        .iter()
        .map(|a| {
            let channels: Vec<String> = a
                .channels
                .iter()
                .map(|c| match (c.observed_of_expected(), c.judgement.status) {
                    (Some(oe), _) => format!("{} {oe}", c.channel),
                    (None, ChannelStatus::Unknown) => format!("{} not covered", c.channel),
                    (None, _) => format!("{} too little to judge", c.channel),
                })
                .collect();
            vec![
                a.account.to_string(),
                a.csm.clone(),
                a.state.as_str().to_string(),
                a.silent_since.map_or_else(|| "-".into(), |d| d.to_string()),
                a.notice.map_or("-", |n| n.as_str()).to_string(),
                if channels.is_empty() {
                    "no activity stored".into()
                } else {
                    channels.join(", ")
                },
            ]
        })
        .collect();
    table_text(
        &[
            "ACCOUNT",
            "CSM",
            "STATE",
            "SILENT SINCE",
            "NOTICE",
            "CHANNELS (observed/expected, recent window)",
        ],
        &rows,
    )
}
