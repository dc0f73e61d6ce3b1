//! Alert scenarios: accounts with histories whose answer is known (busy
//! ones, and ones that go quiet 60 days before the day detection runs),
//! and what `lull alerts --json` says of them.

use std::collections::BTreeMap;

use lull::types::Day;
use serde_json::Value;

use super::{Home, stderr, stdout};

/// Day 0 of every scenario: a Monday.
pub fn day(i: i32) -> Day {
    "2024-01-01".parse::<Day>().expect("date").plus(i)
}

/// The day detection runs on: 480 days of history (the silent tier needs a
/// year of it before a silence).
pub const TODAY: i32 = 480;

/// One account: (id, name, csm, segment, goes quiet).
pub struct Acct<'a>(
    pub &'a str,
    pub &'a str,
    pub &'a str,
    pub Option<&'a str>,
    pub bool,
);

pub fn accounts_toml(list: &[Acct<'_>]) -> String {
    list.iter()
        .map(|Acct(id, name, csm, seg, _)| {
            let seg = seg.map_or(String::new(), |s| format!("segment = \"{s}\"\n"));
            format!(
                "[[account]]\nid = \"{id}\"\nname = {}\ncsm = \"{csm}\"\n{seg}handles = {{ forum = [\"{id}_user\"] }}\n\n",
                toml::Value::String(name.to_string())
            )
        })
        .collect()
}

/// Three forum posts a day for `TODAY` days; quiet accounts stop 60 days
/// before the end.
pub fn history(list: &[Acct<'_>]) -> String {
    let mut lines = Vec::new();
    for Acct(id, _, _, _, quiet) in list {
        for d in 0..=TODAY {
            if *quiet && d > TODAY - 60 {
                continue;
            }
            // The last post before the silence comes with its author.
            let who = if *quiet && d == TODAY - 60 {
                format!(r#""actor": "{id}_user""#)
            } else {
                format!(r#""account": "{id}""#)
            };
            lines.push(format!(
                r#"{{{who}, "source": "forum", "at": "{}T12:00:00Z", "id": "{id}-{d}", "kind": "post", "count": 3}}"#,
                day(d)
            ));
        }
    }
    // Something on the last day keeps the source covered up to it.
    lines.push(format!(
        r#"{{"actor": "nobody@nowhere.example", "source": "forum", "at": "{}T12:00:00Z", "id": "end", "kind": "post"}}"#,
        day(TODAY)
    ));
    lines.join("\n") + "\n"
}

pub fn smtp_config(port: u16, extra: &str) -> String {
    format!(
        "[store]\npath = \"data/lull.db\"\n[accounts]\nfile = \"accounts.toml\"\n\
         [smtp]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\nfrom = \"lull <lull@vendor.example>\"\nretry_secs = 2\ntimeout_secs = 5\n{extra}"
    )
}

/// Busy accounts that stay engaged: the community around the quiet ones
/// (when everyone goes quiet at once, that is a holiday, not an alert).
pub const STEADY: [&str; 6] = [
    "steady0", "steady1", "steady2", "steady3", "steady4", "steady5",
];

pub fn setup(list: &[Acct<'_>], config: &str) -> Home {
    let mut all: Vec<Acct<'_>> = STEADY
        .iter()
        .map(|id| Acct(id, id, "team@vendor.example", None, false))
        .collect();
    all.extend(list.iter().map(|a| Acct(a.0, a.1, a.2, a.3, a.4)));
    let h = Home::with(config, &accounts_toml(&all));
    let f = h.file("events.jsonl", &history(&all));
    let out = h.run(&["import", f.to_str().expect("utf-8")]);
    assert!(out.status.success(), "import: {}", stderr(&out));
    h
}

pub fn detect(h: &Home, at: i32, extra: &[&str]) -> std::process::Output {
    let at = day(at).to_string();
    let mut args = vec!["detect", "--at", &at];
    args.extend_from_slice(extra);
    let out = h.run(&args);
    assert!(out.status.success(), "detect exits 0: {}", stderr(&out));
    out
}

pub fn alerts_json(h: &Home) -> Vec<Value> {
    let out = h.run(&["alerts", "--json"]);
    assert!(out.status.success(), "alerts: {}", stderr(&out));
    serde_json::from_str::<Value>(&stdout(&out))
        .expect("alerts --json is JSON")
        .as_array()
        .expect("array")
        .clone()
}

pub fn with_status<'a>(records: &'a [Value], status: &str) -> Vec<&'a Value> {
    records.iter().filter(|r| r["status"] == status).collect()
}

/// Message-ID → how many times it arrived.
pub fn arrivals(mails: &[Value]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for mail in mails {
        *m.entry(mail["message_id"].as_str().expect("id").to_string())
            .or_default() += 1;
    }
    m
}

pub fn has_subject(mails: &[Value], subject: &str) -> bool {
    mails.iter().any(|m| s(&m["subject"]) == subject)
}

pub fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}
