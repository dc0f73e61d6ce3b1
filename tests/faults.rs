//! The fault suite: what production brings that nobody scripts — a relay
//! that answers late or hangs up, a full disk, a deleted or damaged store,
//! a hostile source, an absurd timestamp. The real binary, real servers on
//! loopback, and (for the disk) a real tmpfs, so run as root (CI is).
//! DESIGN.md invariant 9: every fault ends in a clear state.

#![recursion_limit = "256"]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::scenario::*;
use common::service::{Running, free_port, service_config};
use common::smtp::Relay;
use common::{Home, stderr};
use serde_json::{Value, json};

/// What lull recorded always matches what the relay committed: a message
/// recorded `sent` arrived; every other arrival is one of the attempts
/// lull recorded with an unknown outcome (the documented repeat, always
/// with the same Message-ID).
fn assert_records_match_the_relay(h: &Home, relay: &Relay) {
    let mut arrived: BTreeMap<String, usize> = BTreeMap::new();
    for (_, id) in relay.accepted() {
        *arrived
            .entry(id.trim_matches(['<', '>']).to_string())
            .or_default() += 1;
    }
    for r in alerts_json(h) {
        let id = r["message_id"].as_str().unwrap().to_string();
        let n = arrived.get(&id).copied().unwrap_or(0);
        let unknown = r["unknown_outcomes"].as_u64().unwrap_or(0) as usize;
        let sent = r["status"] == "sent";
        if sent {
            assert!(n >= 1, "recorded sent, never arrived: {r}");
        }
        // Every arrival lull did not see accepted is an unknown outcome.
        assert!(
            n <= usize::from(sent) + unknown,
            "arrived {n} time(s), recorded {} with {unknown} unknown outcome(s): {r}",
            r["status"]
        );
    }
}

fn relay_config(port: u16, extra: &str) -> String {
    format!(
        "[store]\npath = \"data/lull.db\"\n[accounts]\nfile = \"accounts.toml\"\n\
         [smtp]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\nfrom = \"lull <lull@vendor.example>\"\nretry_secs = 1\ntimeout_secs = 1\n{extra}"
    )
}

fn record<'a>(records: &'a [Value], to: &str) -> &'a Value {
    records
        .iter()
        .find(|r| r["to"] == to)
        .unwrap_or_else(|| panic!("no record to {to}: {records:#?}"))
}

#[test]
fn a_relay_that_answers_late_hangs_up_or_refuses_never_makes_lull_record_what_it_did_not_accept() {
    // First attempts: late (committed, 250 after lull gave up), refused,
    // a hang-up mid-DATA, a 451. Second attempts: refused, but for one
    // that is accepted.
    let no = "554 5.7.1 rejected by policy";
    let relay = Relay::start(&json!({"rules": {
        "late@vendor.example": ["slow:5.4", no],
        "refused@vendor.example": [no],
        "hangup@vendor.example": ["dropmid", no],
        "busy@vendor.example": ["451 4.3.0 try later", no],
        "later@vendor.example": ["451 4.3.0 try later", "accept"],
    }}));
    let list = [
        Acct("late", "Late Co", "late@vendor.example", None, true),
        Acct(
            "refused",
            "Refused Co",
            "refused@vendor.example",
            None,
            true,
        ),
        Acct("hangup", "Hangup Co", "hangup@vendor.example", None, true),
        Acct("busy", "Busy Co", "busy@vendor.example", None, true),
        Acct("later", "Later Co", "later@vendor.example", None, true),
    ];
    // The second pass comes while the late message's 250 is still on its
    // way: a connection reused after a cut-off send would read that 250
    // (and every answer after it, one step behind) as the answers to the
    // next message, and record a refused message as sent.
    let h = setup(
        &list,
        &relay_config(relay.port, "").replace("retry_secs = 1", "retry_secs = 10"),
    );
    let out = detect(&h, TODAY, &[]);
    let err = stderr(&out);
    assert!(err.contains("1 sent, 4 failed"), "{err}");
    std::thread::sleep(Duration::from_secs(2));
    assert_records_match_the_relay(&h, &relay);
    let records = alerts_json(&h);
    let want = [
        ("late", "failed", 2, 1),
        ("refused", "failed", 1, 0),
        ("hangup", "failed", 2, 0),
        ("busy", "failed", 2, 0),
        ("later", "sent", 2, 0),
    ];
    for (to, status, attempts, unknown) in want {
        let r = record(&records, &format!("{to}@vendor.example"));
        assert_eq!(r["status"], status, "{r}");
        assert_eq!(r["attempts"], attempts, "{r}");
        assert_eq!(r["unknown_outcomes"].as_u64().unwrap_or(0), unknown, "{r}");
    }
    let accepted = relay.accepted();
    let to: Vec<&str> = accepted.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        to,
        ["late@vendor.example", "later@vendor.example"],
        "{accepted:?}"
    );
    // Nothing is left to send, and nothing is sent again.
    let out = h.run(&["deliver"]);
    assert!(
        stderr(&out).contains("the outbox is empty"),
        "{}",
        stderr(&out)
    );
    assert_eq!(relay.accepted().len(), 2);
}

#[test]
fn sigterm_during_a_slow_data_records_the_attempt_and_the_resend_keeps_the_message_id() {
    let relay = Relay::start(&json!({"rules": {"late@vendor.example": ["slow:8", "accept"]}}));
    let port = free_port();
    let list = [Acct("late", "Late Co", "late@vendor.example", None, true)];
    let config = relay_config(relay.port, &service_config(port, "0 0 6 1 1 *", 2));
    let h = setup(&list, &config);
    detect(&h, TODAY, &["--no-send"]);
    let mut run = Running::start(&h, port, &[]);
    // Wait until the relay has committed the message (its 250 is 8 s away).
    let until = Instant::now() + Duration::from_secs(20);
    while relay.accepted().is_empty() {
        assert!(Instant::now() < until, "never sent:\n{}", run.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let t = Instant::now();
    run.signal(libc::SIGTERM);
    let (status, took) = run.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "{}", run.log());
    assert!(
        took < Duration::from_secs(3),
        "took {took:?} after {:?}",
        t.elapsed()
    );
    // The attempt was on disk before the send: the outcome is unknown,
    // and lull says so.
    let records = alerts_json(&h);
    let late = record(&records, "late@vendor.example");
    assert_eq!(late["status"], "queued", "{late}");
    assert_eq!(late["attempts"], 1, "{late}");
    assert_eq!(late["unknown_outcomes"], 1, "{late}");
    assert!(
        late["error"].as_str().unwrap().contains("outcome unknown"),
        "{late}"
    );
    assert_records_match_the_relay(&h, &relay);

    let out = h.run(&["deliver"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let accepted = relay.accepted();
    assert_eq!(accepted.len(), 2);
    assert_eq!(
        accepted[0].1, accepted[1].1,
        "the resend keeps its Message-ID"
    );
    assert_records_match_the_relay(&h, &relay);
}
