//! `lull accounts [--json] [--unmatched] [--at DATE] [--csm EMAIL]
//! [--state STATE] [--segment NAME] [--search TEXT]`.

use std::fmt::Write as _;
use std::process::ExitCode;

use super::{Backend, print_json, print_stdout, table_text};
use crate::app::accounts::AccountsQuery;
use crate::summary::{SUMMARY_WEEKS, sparkline};
use crate::types::Day;

pub struct Args {
    pub json: bool,
    pub unmatched: bool,
    pub at: Option<Day>,
    pub csm: Option<String>,
    pub state: Option<String>,
    pub segment: Option<String>,
    pub search: Option<String>,
}

pub fn run(b: &Backend, a: Args) -> anyhow::Result<ExitCode> {
    if a.unmatched {
        let rows = b.unmatched()?;
        if a.json {
            print_json(&rows)?;
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
    // Every account judged on the day, with its evidence: exact, whether
    // this lull computes it or a running one does.
    let page = b.accounts(&AccountsQuery {
        csm: a.csm,
        state: a.state,
        segment: a.segment,
        q: a.search,
        at: a.at,
        evidence: true,
        ..AccountsQuery::default()
    })?;
    let (at, rows) = (page.at, page.accounts);
    if a.json {
        print_json(&rows)?;
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
                    None if r.watch => format!("{} (watch)", r.state),
                    None => r.state.clone(),
                },
                match (r.last_activity, &r.last_seen_by) {
                    (Some(d), Some(who)) => format!("{d} by {who}"),
                    (Some(d), None) => d.to_string(),
                    (None, _) => "never".into(),
                },
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
