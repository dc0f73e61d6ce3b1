//! `lull accounts [--json] [--unmatched] [--at DATE]`.

use std::fmt::Write as _;
use std::process::ExitCode;

use super::{Context, print_stdout, table_text};
use crate::detect::{judge_day, snoozes};
use crate::summary::{SUMMARY_WEEKS, sparkline, summarise};
use crate::types::Day;

pub fn run(
    ctx: &Context,
    json: bool,
    unmatched: bool,
    at: Option<Day>,
) -> anyhow::Result<ExitCode> {
    if unmatched {
        let rows = ctx.store.unmatched()?;
        if json {
            print_stdout(&(serde_json::to_string_pretty(&rows)? + "\n"))?;
        } else if rows.is_empty() {
            print_stdout("every actor seen so far matched an account (or staff)\n")?;
        } else {
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    vec![
                        r.source.to_string(),
                        r.actor.clone(),
                        r.events.to_string(),
                        r.last_seen.to_string(),
                    ]
                })
                .collect();
            let mut out = table_text(&["SOURCE", "ACTOR", "EVENTS", "LAST SEEN"], &table);
            out.push_str("\nmap them with `domains`, `emails` or `handles` in the accounts file, then re-import (counts stay exact)\n");
            print_stdout(&out)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let at = at.unwrap_or_else(|| Day::today(ctx.config.timezone));
    let mut rows = summarise(&ctx.store, &ctx.registry, at)?;
    // The state as detection sees it today, from the saved states: a dry
    // run that records nothing.
    let judged = judge_day(&ctx.store, &ctx.registry, &ctx.config.detect, at)?;
    let mut snoozed = snoozes(&ctx.store, at)?;
    for (row, j) in rows.iter_mut().zip(judged.accounts) {
        if row.account == j.account {
            row.state = j.state.as_str().to_string();
            row.channels = j.channels;
        }
        row.snoozed = snoozed.remove(&row.account);
    }
    if json {
        print_stdout(&(serde_json::to_string_pretty(&rows)? + "\n"))?;
        return Ok(ExitCode::SUCCESS);
    }
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.account.to_string(),
                r.csm.clone(),
                r.segment.clone().unwrap_or_else(|| "-".into()),
                match &r.snoozed {
                    Some(s) => format!("{} (snoozed to {}: {})", r.state, s.until, s.reason),
                    None => r.state.clone(),
                },
                r.last_activity
                    .map_or_else(|| "never".into(), |d| d.to_string()),
                r.events_8w.to_string(),
                sparkline(&r.weekly),
                r.channels
                    .iter()
                    .map(|c| {
                        let oe = c.observed_of_expected();
                        format!("{} {}", c.channel, oe.as_deref().unwrap_or("-"))
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
            ]
        })
        .collect();
    let mut out = table_text(
        &[
            "ACCOUNT",
            "CSM",
            "SEGMENT",
            "STATE",
            "LAST ACTIVITY",
            &format!("{SUMMARY_WEEKS}W EVENTS"),
            "WEEKLY",
            "RECENT/EXPECTED",
        ],
        &table,
    );
    let _ = writeln!(out, "\n{} accounts, as of {at}", rows.len());
    print_stdout(&out)?;
    Ok(ExitCode::SUCCESS)
}
