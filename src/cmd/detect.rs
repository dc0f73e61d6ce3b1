//! `lull detect [--at DATE] [--dry-run] [--no-send] [--json]`.

use std::process::ExitCode;

use super::{Backend, print_json, print_stdout, table_text};
use crate::app::ops::DetectRequest;
use crate::detect::{AccountJudgement, ChannelStatus};
use crate::say;
use crate::types::Day;

pub fn run(
    b: &Backend,
    at: Option<Day>,
    dry_run: bool,
    no_send: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let run = b.detect(&DetectRequest {
        at,
        dry_run,
        ..Default::default()
    })?;
    if run.already_judged {
        say!(
            "note: detection already ran for {} (last judged day); showing the judgement again, nothing new is queued",
            run.previous.map_or_else(|| "-".into(), |d| d.to_string())
        );
    }
    if json {
        print_json(&run.accounts)?;
    } else {
        print_stdout(&text(&run.accounts))?;
    }
    for n in &run.notices {
        say!(
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
    for (source, last) in &run.newly_stale {
        say!(
            "source {source} has no data since {last}: its channels are unknown (no silence alerts from it){}",
            match (&run.ops, dry_run) {
                (_, true) => " — dry run, nobody told".to_string(),
                (Some(to), false) => format!("; {to} is told"),
                (None, false) => "; set [alerts] ops_email to have ops told by e-mail".to_string(),
            }
        );
    }
    if !dry_run && !run.already_judged {
        say!("{} notice(s) queued in the outbox", run.queued);
    }
    if dry_run || no_send {
        return Ok(ExitCode::SUCCESS);
    }
    match b.deliver() {
        Ok(d) => match (&d.delivered, d.smtp) {
            (Some(del), _) if del.sent + del.failed + del.queued > 0 => super::deliver::report(del),
            (_, false) if run.queued > 0 => {
                say!("no [smtp] is configured, so nothing was sent; `lull alerts` lists the queue")
            }
            _ => {
                if let Some(e) = &d.error {
                    say!("alert e-mails not sent (they stay queued): {e}");
                }
            }
        },
        // Detection is recorded; a delivery that cannot start leaves the
        // alerts queued and is reported, not fatal.
        Err(e) => say!("alert e-mails not sent (they stay queued): {e}"),
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
