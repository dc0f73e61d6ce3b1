//! `lull detect [--at DATE] [--dry-run] [--no-send] [--json]`.

use std::process::ExitCode;

use super::{Context, print_stdout, table_text};
use crate::detect::{AccountJudgement, ChannelStatus, judge_day};
use crate::types::Day;

pub fn run(ctx: &Context, at: Option<Day>, dry_run: bool, json: bool) -> anyhow::Result<ExitCode> {
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
    let queued = if dry_run { 0 } else { run.record(&ctx.store)? };
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
    if !dry_run && !run.already_judged {
        eprintln!(
            "{queued} notice(s) queued in the outbox; no [smtp] is configured, so none were sent"
        );
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
