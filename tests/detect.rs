//! Detection end to end: the real binary on generated histories whose
//! answer is known. Each test also shows the case that *would* alert, so
//! none of them can pass by never alerting.

#![recursion_limit = "256"]

mod common;

use std::collections::{BTreeMap, BTreeSet};

use chrono::Datelike;
use common::{Home, stderr, stdout};
use lull::types::Day;
use serde_json::Value;

/// Day 0 of every scenario: a Monday.
fn day(i: i32) -> Day {
    "2024-01-01".parse::<Day>().expect("date").plus(i)
}

/// Builds import files: one line per (account, day) with a count.
#[derive(Default)]
struct History {
    lines: Vec<String>,
}

impl History {
    fn add(&mut self, account: &str, source: &str, kind: &str, d: i32, count: u64) -> &mut Self {
        if count > 0 {
            self.lines.push(format!(
                r#"{{"account": "{account}", "source": "{source}", "at": "{}T12:00:00Z", "id": "{account}-{kind}-{d}", "kind": "{kind}", "count": {count}}}"#,
                day(d)
            ));
        }
        self
    }

    /// `per_day(d)` events a day for `days`.
    fn daily(
        &mut self,
        account: &str,
        days: std::ops::RangeInclusive<i32>,
        per_day: impl Fn(i32) -> u64,
    ) -> &mut Self {
        for d in days {
            self.add(account, "forum", "post", d, per_day(d));
        }
        self
    }

    /// `count` events by `person` of `account` on day `d` (the account
    /// decides, the actor is who).
    fn by(&mut self, account: &str, person: &str, d: i32, count: u64) -> &mut Self {
        if count > 0 {
            self.lines.push(format!(
                r#"{{"account": "{account}", "actor": "{person}", "source": "forum", "at": "{}T12:00:00Z", "id": "{account}-{person}-{d}", "kind": "post", "count": {count}}}"#,
                day(d)
            ));
        }
        self
    }

    fn text(&self) -> String {
        self.lines.join("\n") + "\n"
    }
}

fn accounts(ids: &[&str]) -> String {
    ids.iter()
        .enumerate()
        .map(|(i, id)| {
            format!("[[account]]\nid = \"{id}\"\nname = \"{id} Inc\"\ncsm = \"csm{}@vendor.example\"\n\n", i % 3)
        })
        .collect()
}

const CONFIG: &str = "[store]\npath = \"data/lull.db\"\n[accounts]\nfile = \"accounts.toml\"\n";

fn home(ids: &[&str], extra_config: &str) -> Home {
    Home::with(&format!("{CONFIG}{extra_config}"), &accounts(ids))
}

fn import(h: &Home, name: &str, history: &History) {
    let file = h.file(name, &history.text());
    let out = h.run(&["import", file.to_str().expect("utf-8 path")]);
    assert!(out.status.success(), "import failed: {}", stderr(&out));
}

/// `detect --at D --json` (dry run unless `record`): account → (state, notice).
fn detect(h: &Home, at: i32, record: bool) -> Vec<(String, String, Option<String>)> {
    let at = day(at).to_string();
    let mut args = vec!["detect", "--at", &at, "--json"];
    if !record {
        args.push("--dry-run");
    }
    let out = h.run(&args);
    assert!(out.status.success(), "detect failed: {}", stderr(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).expect("detect --json is JSON");
    v.as_array()
        .expect("array")
        .iter()
        .map(|a| {
            (
                a["account"].as_str().expect("account").to_string(),
                a["state"].as_str().expect("state").to_string(),
                a["notice"].as_str().map(str::to_string),
            )
        })
        .collect()
}

fn state_of(rows: &[(String, String, Option<String>)], account: &str) -> String {
    rows.iter()
        .find(|r| r.0 == account)
        .map(|r| r.1.clone())
        .unwrap_or_else(|| panic!("{account} missing"))
}

/// `detect --json --dry-run`: the accounts on (or due for) the watch list.
fn watching(h: &Home, at: i32) -> BTreeSet<String> {
    let at = day(at).to_string();
    let out = h.run(&["detect", "--at", &at, "--json", "--dry-run"]);
    assert!(out.status.success(), "detect failed: {}", stderr(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    v.as_array()
        .expect("array")
        .iter()
        .filter(|a| a["watch"] == true)
        .map(|a| a["account"].as_str().expect("account").to_string())
        .collect()
}

/// `backtest --json`: (account, date, notice) in output order.
fn backtest(h: &Home, from: i32, to: i32) -> Vec<(String, Day, String)> {
    let (from, to) = (day(from).to_string(), day(to).to_string());
    let out = h.run(&["backtest", "--from", &from, "--to", &to, "--json"]);
    assert!(out.status.success(), "backtest failed: {}", stderr(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).expect("backtest --json is only JSON");
    v.as_array()
        .expect("array")
        .iter()
        .map(|a| {
            (
                a["account"].as_str().expect("account").to_string(),
                a["date"].as_str().expect("date").parse().expect("day"),
                a["notice"].as_str().expect("notice").to_string(),
            )
        })
        .collect()
}

/// A steady weekday poster: `n` events Monday to Friday.
fn weekdays(n: u64) -> impl Fn(i32) -> u64 {
    move |d| if d.rem_euclid(7) < 5 { n } else { 0 }
}

/// Entries of one tier (`silent` also takes reminders).
fn tier(alerts: &[(String, Day, String)], tier: &str) -> Vec<(String, Day, String)> {
    alerts
        .iter()
        .filter(|a| a.2 == tier || (tier == "silent" && a.2 == "reminder"))
        .cloned()
        .collect()
}

#[test]
fn outage_days_are_not_silence() {
    let h = home(&["acme", "globex"], "");
    // Both accounts active for 420 days; then the connector is down for 60
    // days: no events and no coverage.
    let mut before = History::default();
    before
        .daily("acme", 0..=420, weekdays(3))
        .daily("globex", 0..=420, weekdays(2));
    import(&h, "before.jsonl", &before);

    let rows = detect(&h, 480, false);
    assert_eq!(state_of(&rows, "acme"), "unknown", "{rows:?}");
    assert!(
        rows.iter().all(|r| r.2.is_none()),
        "an outage alerted: {rows:?}"
    );
    let alerts = backtest(&h, 400, 480);
    assert!(alerts.is_empty(), "outage read as silence: {alerts:?}");

    // The same empty days, but covered (globex's events show the source
    // was up): now acme's silence is real and must alert.
    let mut during = History::default();
    during.daily("globex", 421..=480, weekdays(2));
    import(&h, "during.jsonl", &during);
    let rows = detect(&h, 480, false);
    assert_eq!(state_of(&rows, "acme"), "silent", "{rows:?}");
    assert_eq!(state_of(&rows, "globex"), "engaged", "{rows:?}");
}

#[test]
fn low_volume_account_is_insufficient_data_not_silent() {
    let h = home(&["rare", "steady", "other"], "");
    let mut hist = History::default();
    // `rare` posts once every 80 days; `steady` every weekday. Both stop on
    // day 420; the forum stays covered to day 480 (others keep posting).
    hist.daily("rare", 0..=420, |d| u64::from(d % 80 == 0));
    hist.daily("steady", 0..=420, weekdays(2));
    hist.add("other", "forum", "post", 480, 1);
    import(&h, "h.jsonl", &hist);
    let rows = detect(&h, 480, false);
    assert_eq!(state_of(&rows, "rare"), "insufficient_data", "{rows:?}");
    assert_eq!(state_of(&rows, "steady"), "silent", "{rows:?}");
    let alerts = backtest(&h, 100, 480);
    assert!(alerts.iter().all(|a| a.0 != "rare"), "{alerts:?}");
    assert!(
        tier(&alerts, "silent").iter().any(|a| a.0 == "steady"),
        "{alerts:?}"
    );
}

/// Ten community accounts that all nearly stop for an eight-week holiday
/// (days 400..=455), and `lone`, busy, who stops entirely in those weeks.
fn holiday_history() -> History {
    let mut hist = History::default();
    let holiday = |d: i32| (400..=455).contains(&d);
    for i in 0..10 {
        let id = format!("c{i}");
        hist.daily(&id, 0..=455, move |d| {
            if holiday(d) {
                u64::from((d + i) % 4 == 0)
            } else {
                3 + (d as u64 + i as u64) % 3
            }
        });
    }
    hist.daily("lone", 0..=455, move |d| if holiday(d) { 0 } else { 10 });
    hist
}

fn holiday_ids() -> Vec<String> {
    let mut ids: Vec<String> = (0..10).map(|i| format!("c{i}")).collect();
    ids.push("lone".into());
    ids
}

#[test]
fn community_wide_holiday_alerts_nobody_but_a_lone_drop_still_alerts() {
    let ids = holiday_ids();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let h = home(&ids, "");
    import(&h, "h.jsonl", &holiday_history());
    let rows = detect(&h, 455, false);
    for r in rows.iter().filter(|r| r.0.starts_with('c')) {
        assert_ne!(r.1, "silent", "a holiday alerted {}: {rows:?}", r.0);
    }
    assert_eq!(state_of(&rows, "lone"), "silent", "{rows:?}");
    let alerts = backtest(&h, 350, 455);
    let alerted: BTreeSet<&str> = alerts.iter().map(|a| a.0.as_str()).collect();
    assert_eq!(alerted, BTreeSet::from(["lone"]), "{alerts:?}");
    // Five weeks into the holiday: nobody on the watch list either, but
    // lone, whose drop is its own.
    let watched = watching(&h, 434);
    assert_eq!(watched, BTreeSet::from(["lone".to_string()]));

    // Without community scaling the same weeks put every account on the
    // watch list: the normalisation is what keeps them off.
    let h = home(&ids, "[detect]\ncommunity = false\n");
    import(&h, "h.jsonl", &holiday_history());
    let watched = watching(&h, 434);
    assert!(watched.len() >= 9, "{watched:?}");
}

#[test]
fn one_alert_per_episode_reminders_after_the_cool_down() {
    let h = home(&["acme", "globex"], "[detect]\nreminder_days = 30\n");
    let mut hist = History::default();
    hist.daily("acme", 0..=400, weekdays(3));
    hist.daily("globex", 0..=600, weekdays(2));
    import(&h, "h.jsonl", &hist);
    let all = backtest(&h, 350, 600);
    let alerts: Vec<_> = tier(&all, "silent")
        .into_iter()
        .filter(|a| a.0 == "acme")
        .collect();
    let silent: Vec<_> = alerts.iter().filter(|a| a.2 == "silent").collect();
    assert_eq!(silent.len(), 1, "{alerts:?}");
    // Fifty days after the last post (day 400).
    assert_eq!(silent[0].1, day(400 + 50), "{alerts:?}");
    let reminders: Vec<Day> = alerts
        .iter()
        .filter(|a| a.2 == "reminder")
        .map(|a| a.1)
        .collect();
    assert!(!reminders.is_empty(), "{alerts:?}");
    let mut last = silent[0].1;
    for r in &reminders {
        assert_eq!(
            r.0 - last.0,
            30,
            "reminder not after the cool-down: {alerts:?}"
        );
        last = *r;
    }
    // Without reminder_days, none (the default).
    let quiet = home(&["acme", "globex"], "");
    import(&quiet, "h.jsonl", &hist);
    let again = tier(&backtest(&quiet, 350, 600), "silent");
    assert_eq!(again.len(), 1, "{again:?}");

    // detect run twice for the same day queues its alert once.
    let first = alerts[0].1;
    let at = first.to_string();
    let out = h.run(&["detect", "--at", &at]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("1 notice(s) queued"),
        "{}",
        stderr(&out)
    );
    let again = h.run(&["detect", "--at", &at]);
    assert!(stderr(&again).contains("already ran"), "{}", stderr(&again));
    let next = first.plus(1).to_string();
    let out = h.run(&["detect", "--at", &next]);
    assert!(
        stderr(&out).contains("0 notice(s) queued"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_team_that_dwindles_is_silent_sooner_than_one_that_pauses() {
    let h = home(&["dwindle", "pause", "steady"], "");
    let mut hist = History::default();
    let team = ["ann", "bo", "cy", "di", "ed"];
    for d in 0..=400i32 {
        if d.rem_euclid(7) >= 5 {
            continue;
        }
        // The same five people all along…
        for p in team {
            hist.by("pause", p, d, 1);
        }
        // …and five who dwindle to one for the last hundred days, at the
        // same number of events.
        if d <= 300 {
            for p in team {
                hist.by("dwindle", p, d, 1);
            }
        } else {
            hist.by("dwindle", "ann", d, 5);
        }
    }
    hist.daily("steady", 0..=480, weekdays(2));
    import(&h, "h.jsonl", &hist);
    // Both stop after day 400 (a Wednesday). 35 days later:
    let rows = detect(&h, 435, false);
    assert_eq!(state_of(&rows, "dwindle"), "silent", "{rows:?}");
    assert_eq!(state_of(&rows, "pause"), "engaged", "{rows:?}");
    // The backtest: dwindle after 30 quiet days, pause after 50.
    let alerts = tier(&backtest(&h, 380, 480), "silent");
    assert_eq!(
        alerts,
        vec![
            ("dwindle".to_string(), day(430), "silent".to_string()),
            ("pause".to_string(), day(450), "silent".to_string()),
        ]
    );
    // The alert says who was around.
    let out = h.run(&[
        "backtest",
        "--from",
        &day(430).to_string(),
        "--to",
        &day(430).to_string(),
        "--json",
    ]);
    let v: Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    let people = v[0]["people"].as_str().expect("people");
    assert_eq!(
        people,
        "1 of the 5 people usually active in 90 days was active in the 90 days before it went quiet"
    );
    assert_eq!(v[0]["quiet"]["people"]["active"], 1);
    // Daily runs from saved states read people only for the accounts whose
    // judgement asks: the day before, nobody is silent yet; on day 430 the
    // dwindled team decides it, and the alert says who was around.
    let rows = detect(&h, 429, true);
    assert_ne!(state_of(&rows, "dwindle"), "silent", "{rows:?}");
    let at = day(430).to_string();
    let out = h.run(&["detect", "--at", &at, "--json", "--no-send"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("1 notice(s) queued"),
        "{}",
        stderr(&out)
    );
    let v: Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    let dwindle = v
        .as_array()
        .and_then(|a| a.iter().find(|a| a["account"] == "dwindle"))
        .expect("dwindle judged");
    assert_eq!(dwindle["state"], "silent", "{dwindle}");
    assert_eq!(dwindle["notice"], "silent", "{dwindle}");
    assert_eq!(dwindle["quiet"]["people"]["active"], 1, "{dwindle}");
}

#[test]
fn a_cool_down_mutes_a_new_silence_and_does_not_postpone_it() {
    // Quiet 60 days, back for 40, quiet again for 250 (well past the end
    // of the cool-down).
    let hist = {
        let mut hist = History::default();
        hist.daily("acme", 0..=400, weekdays(3));
        hist.daily("acme", 461..=500, weekdays(3));
        hist.daily("steady", 0..=750, weekdays(2));
        hist
    };
    let h = home(&["acme", "steady"], "");
    import(&h, "h.jsonl", &hist);
    let alerts = backtest(&h, 380, 750);
    let silent: Vec<_> = tier(&alerts, "silent")
        .into_iter()
        .filter(|a| a.0 == "acme")
        .collect();
    assert_eq!(silent.len(), 1, "{alerts:?}");
    let rows = detect(&h, 750, false);
    assert_eq!(
        state_of(&rows, "acme"),
        "silent",
        "muted is still silent: {rows:?}"
    );
    // Not on the watch list while silent, muted or not.
    assert!(
        tier(&alerts, "watch")
            .iter()
            .all(|a| a.0 != "acme" || a.1 < day(450) || (a.1 > day(460) && a.1 < day(550))),
        "{alerts:?}"
    );
    // A short cool-down lets the second silence through.
    let h = home(&["acme", "steady"], "[detect]\ncooldown_days = 60\n");
    import(&h, "h.jsonl", &hist);
    let silent: Vec<_> = tier(&backtest(&h, 380, 750), "silent")
        .into_iter()
        .filter(|a| a.0 == "acme")
        .collect();
    assert_eq!(silent.len(), 2, "{silent:?}");
}

#[test]
fn the_watch_list_is_capped_per_csm_per_week_and_skips_silent_accounts() {
    // Twelve accounts of one CSM (and three of another) halve their
    // activity in the same weeks; the cap is 3.
    let ids: Vec<String> = (0..15).map(|i| format!("a{i:02}")).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let accounts: String = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let csm = if i < 12 { "jo" } else { "max" };
            format!(
                "[[account]]\nid = \"{id}\"\nname = \"{id}\"\ncsm = \"{csm}@vendor.example\"\n\n"
            )
        })
        .collect();
    let mut all = accounts.clone();
    for i in 0..10 {
        all.push_str(&format!(
            "[[account]]\nid = \"s{i}\"\nname = \"s{i}\"\ncsm = \"team@vendor.example\"\n\n"
        ));
    }
    let h = Home::with(&format!("{CONFIG}[detect]\nwatch_cap = 3\n"), &all);
    let mut hist = History::default();
    for (i, id) in ids.iter().enumerate() {
        let i = i as i32;
        hist.daily(id, 0..=560, move |d| {
            if d > 400 + i {
                // Down to a fifth, at a slightly different pace each;
                // a00 stops entirely (silent from day 451).
                u64::from(i > 0 && d % 5 == 0) * 2
            } else {
                3 + ((d + i) % 3) as u64
            }
        });
    }
    for i in 0..10 {
        hist.daily(&format!("s{i}"), 0..=560, move |d| 3 + ((d + i) % 2) as u64);
    }
    import(&h, "h.jsonl", &hist);
    let alerts = backtest(&h, 380, 560);
    let watch = tier(&alerts, "watch");
    assert!(watch.len() >= 12, "the list was used: {watch:?}");
    let mut per: std::collections::BTreeMap<(String, Day), usize> = Default::default();
    let csm = |a: &str| if a < "a12" { "jo" } else { "max" };
    for (a, d, _) in &watch {
        assert_eq!(
            d.date().weekday(),
            chrono::Weekday::Mon,
            "a digest day: {a} {d}"
        );
        *per.entry((csm(a).to_string(), *d)).or_default() += 1;
    }
    assert!(per.values().all(|n| *n <= 3), "{per:?}");
    assert!(per.values().any(|n| *n == 3), "the cap binds: {per:?}");
    // An account is not on the list once it is silent.
    let silent_from = tier(&alerts, "silent")
        .iter()
        .find(|a| a.0 == "a00")
        .map(|a| a.1)
        .expect("a00 went silent");
    assert!(
        watch.iter().all(|a| a.0 != "a00" || a.1 < silent_from),
        "{watch:?}"
    );
    // Daily detection on a digest day lists the same accounts the
    // backtest does, within the cap.
    let monday = watch[watch.len() / 2].1;
    let i = monday.0 - day(0).0;
    let mut daily = BTreeSet::new();
    for d in 380..=i {
        for (account, _, notice) in detect(&h, d, true) {
            if notice.as_deref() == Some("watch") && d == i {
                daily.insert(account);
            }
        }
    }
    let listed: BTreeSet<String> = watch
        .iter()
        .filter(|a| a.1 == monday)
        .map(|a| a.0.clone())
        .collect();
    assert_eq!(daily, listed);

    // After the data ends (day 560) no channel can be judged once its
    // recent window is uncovered: the dropping accounts are listed on no
    // digest of those days (they were, every few Mondays, before this
    // was fixed: notices naming no channel).
    let later = tier(&backtest(&h, 380, 760), "watch");
    assert!(later.len() >= watch.len(), "{later:?}");
    let uncovered = day(560 + 28);
    assert!(
        later.iter().all(|a| a.1 <= uncovered),
        "listed without coverage: {:?}",
        later.iter().filter(|a| a.1 > uncovered).collect::<Vec<_>>()
    );
    // Nor are they shown as watch candidates (`detect --json`, the
    // console, the `watching` gauge) while nothing can be judged: the
    // accounts still dropping when the data ended are `unknown` 200 days
    // later, their drop frozen, and no digest could list them.
    let at_end = watching(&h, 560);
    assert!(at_end.len() >= 5, "dropping at the data's end: {at_end:?}");
    let rows = detect(&h, 760, false);
    for a in &at_end {
        assert_eq!(state_of(&rows, a), "unknown", "{a}");
    }
    assert_eq!(watching(&h, 760), BTreeSet::new());
}

#[test]
fn backtest_and_daily_detect_decide_the_same_notices_in_both_tiers() {
    let mut ids: Vec<String> = (0..6).map(|i| format!("c{i}")).collect();
    ids.extend([
        "gone".into(),
        "lull".into(),
        "bursty".into(),
        "fading".into(),
    ]);
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let h = home(&ids, "[detect]\nreminder_days = 14\nrecover_days = 7\n");
    let mut hist = History::default();
    for i in 0..6u64 {
        hist.daily(&format!("c{i}"), 0..=560, move |d| {
            2 + (d as u64 * 7 + i) % 3
        });
    }
    hist.daily("gone", 0..=430, weekdays(3));
    hist.daily("lull", 0..=560, |d| {
        if (440..=500).contains(&d) { 0 } else { 4 }
    });
    hist.daily("bursty", 0..=560, |d| if d % 30 < 5 { 6 } else { 0 });
    hist.daily("fading", 0..=560, |d| {
        if d < 440 { 4 } else { u64::from(d % 6 == 0) }
    });
    import(&h, "h.jsonl", &hist);

    let (from, to) = (420, 560);
    let expected: BTreeSet<(String, Day, String)> = backtest(&h, from, to)
        .into_iter()
        .filter(|a| a.2 != "recovered")
        .collect();
    assert!(
        expected.iter().any(|a| a.0 == "gone" && a.2 == "silent"),
        "{expected:?}"
    );
    assert!(
        expected.iter().any(|a| a.0 == "lull" && a.2 == "silent"),
        "{expected:?}"
    );
    assert!(expected.iter().any(|a| a.2 == "watch"), "{expected:?}");

    let mut decided = BTreeSet::new();
    for d in from..=to {
        for (account, _, notice) in detect(&h, d, true) {
            if let Some(n) = notice.filter(|n| n != "recovered") {
                decided.insert((account, day(d), n));
            }
        }
    }
    assert!(expected.len() >= 4, "{expected:?}");
    assert_eq!(decided, expected);
}

#[test]
fn a_broken_connector_on_one_source_does_not_make_an_account_silent() {
    // acme is active on the forum and in tickets until day 420; the forum
    // connector breaks on day 430, tickets keep coming (from others).
    let mut hist = History::default();
    for d in 0..=480 {
        if d <= 420 {
            hist.add("acme", "forum", "post", d, weekdays(3)(d));
            hist.add("acme", "tickets", "ticket", d, u64::from(d % 3 == 0));
        }
        if d <= 430 {
            hist.add("other", "forum", "post", d, weekdays(2)(d));
        }
        hist.add("other", "tickets", "ticket", d, weekdays(1)(d));
    }
    // Polled: a source that stopped delivering is stale, and nobody on it
    // can be called silent.
    let polled = "[[source]]\nname = \"forum\"\nkind = \"discourse\"\nurl = \"http://127.0.0.1:9/\"\nschedule = \"0 0 * * * *\"\n";
    let h = home(&["acme", "other"], polled);
    import(&h, "h.jsonl", &hist);
    let rows = detect(&h, 480, false);
    assert_ne!(state_of(&rows, "acme"), "silent", "{rows:?}");
    assert!(tier(&backtest(&h, 400, 480), "silent").is_empty());
    // Imported, its data simply ends: the tickets still say acme is quiet.
    let h = home(&["acme", "other"], "");
    import(&h, "h.jsonl", &hist);
    let rows = detect(&h, 480, false);
    assert_eq!(state_of(&rows, "acme"), "silent", "{rows:?}");
}

/// `lull accounts --json --at D`: account → (state, silent_since, watch,
/// channels).
fn accounts_view(h: &Home, at: i32) -> BTreeMap<String, (Value, Value, Value, Value)> {
    let at = day(at).to_string();
    let out = h.run(&["accounts", "--json", "--at", &at]);
    assert!(out.status.success(), "accounts failed: {}", stderr(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    v.as_array()
        .expect("array")
        .iter()
        .map(|a| {
            let channels = a["channels"].clone();
            let row = (
                a["state"].clone(),
                a["silent_since"].clone(),
                a["watch"].clone(),
                channels,
            );
            (a["account"].as_str().expect("account").to_string(), row)
        })
        .collect()
}

#[test]
fn accounts_on_the_last_judged_day_show_the_states_recorded_for_it() {
    let ids = ["steady", "gone", "fading", "new"];
    let h = home(&ids[..3], "");
    let mut hist = History::default();
    hist.daily("steady", 0..=560, |d| 2 + (d as u64 * 7) % 3);
    hist.daily("gone", 0..=470, weekdays(3));
    hist.daily("fading", 0..=560, |d| {
        if d < 480 { 4 } else { u64::from(d % 6 == 0) }
    });
    import(&h, "h.jsonl", &hist);
    for d in 530..=545 {
        detect(&h, d, true);
    }
    // The same thresholds: the recorded states and the replayed ones
    // agree, channels and all (`detect --dry-run` replays a judged day).
    let view = accounts_view(&h, 545);
    let states: BTreeMap<String, String> = detect(&h, 545, false)
        .into_iter()
        .map(|(a, s, _)| (a, s))
        .collect();
    assert_eq!(view["gone"].0, "silent", "{view:?}");
    assert_eq!(view["fading"].2, true, "on the watch list: {view:?}");
    let out = h.run(&[
        "detect",
        "--at",
        &day(545).to_string(),
        "--json",
        "--dry-run",
    ]);
    let replayed: Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    for r in replayed.as_array().expect("array") {
        let account = r["account"].as_str().expect("account");
        let row = &view[account];
        assert_eq!(row.0, states[account].as_str(), "{account}");
        assert_eq!(row.1, r["silent_since"], "{account}");
        assert_eq!(row.2, r["watch"], "{account}");
        assert_eq!(row.3, r["channels"], "{account}");
    }
    // An account added since, with no saved state, is replayed.
    std::fs::write(h.path().join("accounts.toml"), accounts(&ids)).expect("accounts");
    let more = h.file("more.jsonl", &{
        let mut m = History::default();
        m.daily("new", 300..=545, |_| 3);
        m.text()
    });
    assert!(
        h.run(&["import", more.to_str().expect("path")])
            .status
            .success()
    );
    // Thresholds changed after the run: the list of the judged day shows
    // what detection decided then (no replay of every history under the
    // new ones); `detect --dry-run` replays and judges anew.
    std::fs::write(
        h.path().join("lull.toml"),
        format!("{CONFIG}[detect]\nsilent_days = 300\nwatch = false\n"),
    )
    .expect("config");
    let after = accounts_view(&h, 545);
    assert_eq!(after["gone"].0, "silent", "as recorded: {after:?}");
    assert_eq!(after["fading"].2, true, "as recorded: {after:?}");
    // (Its channels are judged anew: the new account changed the
    // community's totals.)
    assert_eq!(after["steady"].0, view["steady"].0);
    assert_eq!(after["new"].0, "engaged", "{after:?}");
    let replayed = detect(&h, 545, false);
    assert_eq!(state_of(&replayed, "gone"), "engaged", "{replayed:?}");
}
