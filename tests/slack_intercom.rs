//! The `slack` and `intercom` kinds, end to end with the real binary
//! against local servers answering with the services' real payloads
//! (tests/fixtures/slack, tests/fixtures/intercom; see SOURCES.md): exact
//! counts, staff and bots left out, re-polls count nothing twice, a
//! failure mid-poll stores nothing, errors say what to fix, and no
//! 60-second window sees more requests than the configured rate by the
//! server's clock.

#![recursion_limit = "256"]

mod common;

use std::collections::BTreeMap;
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use common::{CONFIG, Clocked, Home, assert_paced, stderr, stdout};
use serde_json::{Value, json};
use wiremock::matchers::{body_string_contains, method, path, path_regex, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const ACCOUNTS: &str = r#"
[[account]]
id = "artsy"
name = "Artsy"
csm = "jane@vendor.example"
domains = ["artsymail.com"]

[[account]]
id = "dblockco"
name = "dblock.org"
csm = "sam@vendor.example"
domains = ["dblock.org"]

[[account]]
id = "bloggs"
name = "Bloggs"
csm = "sam@vendor.example"
domains = ["bloggs.com"]

[[account]]
id = "ic"
name = "Company One"
csm = "jane@vendor.example"
handles = { support = ["company1"] }
"#;

fn home(sources: &str) -> Home {
    Home::with(&format!("{CONFIG}\n{sources}"), ACCOUNTS)
}

fn fixture(name: &str) -> Value {
    serde_json::from_str(&common::fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

async fn lull(h: &Home, args: &[&str], env: &[(&str, &str)]) -> Output {
    h.run_async(args, env).await
}

fn report(o: &Output, source: &str) -> Value {
    let v: Value = serde_json::from_str(&stdout(o))
        .unwrap_or_else(|e| panic!("poll --json: {e}\n{}\n{}", stdout(o), stderr(o)));
    v.as_array()
        .expect("array")
        .iter()
        .find(|r| r["source"] == source)
        .cloned()
        .unwrap_or_else(|| panic!("no report for {source}: {v}"))
}

/// Export totals per (account, kind).
fn totals(h: &Home) -> BTreeMap<(String, String), u64> {
    let mut out = BTreeMap::new();
    for line in h.export().lines() {
        let v: Value = serde_json::from_str(line).expect("export line");
        *out.entry((
            v["account"].as_str().unwrap_or("").to_string(),
            v["kind"].as_str().unwrap_or("").to_string(),
        ))
        .or_insert(0) += v["count"].as_u64().unwrap_or(0);
    }
    out
}

fn k(a: &str, kind: &str) -> (String, String) {
    (a.into(), kind.into())
}

/// Answers with `body` (JSON) and notes when it was asked.
fn json_clocked(body: Value, seen: &Arc<Mutex<Vec<Instant>>>) -> Clocked {
    Clocked {
        answer: ResponseTemplate::new(200).set_body_json(&body),
        seen: seen.clone(),
    }
}

// ---------------------------------------------------------------- Slack

const CHANNEL: &str = "C0G9QF9GW";
const QUIET: &str = "C0G9QKBBL";

/// A Slack look-alike: history (two pages: Slack's documented example,
/// then a thread parent, a join, a bot and an admin), the thread's
/// replies, and `users.info` from the recorded users list.
async fn slack_server(seen: &Arc<Mutex<Vec<Instant>>>) -> MockServer {
    let server = MockServer::start().await;
    let clocked = |body: Value| json_clocked(body, seen);
    let page1 = fixture("slack/conversations.history.json");
    let replies = fixture("slack/conversations.replies.json");
    let parent = {
        let mut p = replies["messages"][0].clone();
        p["latest_reply"] = json!("1483125339.020269");
        p["reply_users"] = json!(["U0HLFUZLJ", "U04KB5WQR", "U092V4E9L"]);
        p
    };
    let page2 = json!({
        "ok": true,
        "messages": [
            parent,
            {"type": "message", "subtype": "channel_join", "user": "U0HLFUZLJ", "text": "<@U0HLFUZLJ> has joined the channel", "ts": "1482900000.000100"},
            {"type": "message", "subtype": "bot_message", "bot_id": "B0751JU2H", "username": "testbot", "text": "build passed", "ts": "1482900100.000200"},
            {"type": "message", "user": "U04KB5WQR", "text": "Welcome, everyone!", "ts": "1482900200.000300"},
        ],
        "has_more": false,
        "response_metadata": {"next_cursor": ""},
    });
    Mock::given(method("GET"))
        .and(path("/api/conversations.history"))
        .and(query_param("channel", CHANNEL))
        .and(query_param("cursor", "bmV4dF90czoxNTEyMDg1ODYxMDAwNTQz"))
        .respond_with(clocked(page2))
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/conversations.history"))
        .and(query_param("channel", CHANNEL))
        .respond_with(clocked(page1))
        .with_priority(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/conversations.history"))
        .and(query_param("channel", QUIET))
        .respond_with(clocked(
            json!({"ok": true, "messages": [], "has_more": false}),
        ))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/conversations.replies"))
        .and(query_param("channel", CHANNEL))
        .and(query_param("ts", "1482960137.003543"))
        .respond_with(clocked(replies))
        .mount(&server)
        .await;
    let users = fixture("slack/users.list.json");
    for m in users["members"].as_array().unwrap() {
        Mock::given(method("GET"))
            .and(path("/api/users.info"))
            .and(query_param("user", m["id"].as_str().unwrap()))
            .respond_with(clocked(json!({"ok": true, "user": m})))
            .mount(&server)
            .await;
    }
    server
}

fn slack_source(server: &MockServer, channels: &[&str], rate: u32) -> String {
    format!(
        r#"
[[source]]
name = "community"
kind = "slack"
url = "{}/api"
token_env = "LULL_TEST_SLACK_TOKEN"
channels = {channels:?}
backfill_days = 4000
requests_per_minute = {rate}
retries = 0
"#,
        server.uri()
    )
}

const SLACK_ENV: [(&str, &str); 1] = [("LULL_TEST_SLACK_TOKEN", "xoxb-17-secret-token")];

fn history_oldest(reqs: &[Request], channel: &str) -> Vec<f64> {
    reqs.iter()
        .filter(|r| r.url.path() == "/api/conversations.history")
        .filter(|r| {
            r.url
                .query_pairs()
                .any(|(k, v)| k == "channel" && v == channel)
        })
        .filter(|r| !r.url.query_pairs().any(|(k, _)| k == "cursor"))
        .filter_map(|r| {
            r.url
                .query_pairs()
                .find(|(k, _)| k == "oldest")
                .and_then(|(_, v)| v.parse().ok())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_counts_messages_and_thread_replies_once_and_leaves_out_bots_admins_and_events() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let server = slack_server(&seen).await;
    let h = home(&slack_source(&server, &[CHANNEL, QUIET], 600));
    let o = lull(&h, &["poll", "--json"], &SLACK_ENV).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let r = report(&o, "community");
    // player1 (dblock.org): a message and a reply; broskoski
    // (artsymail.com): a message, the thread's parent and a reply. The
    // bot's message and the admin's message and reply are staff; the
    // join is no message at all.
    assert_eq!(r["counted"], 5, "{r}");
    assert_eq!(r["staff"], 3, "{r}");
    assert_eq!(r["unmatched"], 0, "{r}");
    let t = totals(&h);
    assert_eq!(t.get(&k("dblockco", "message")), Some(&2), "{t:?}");
    assert_eq!(t.get(&k("artsy", "message")), Some(&3), "{t:?}");
    assert_eq!(t.len(), 2, "{t:?}");
    // The token went as a bearer header and is in no output.
    let reqs = server.received_requests().await.unwrap();
    assert!(reqs.iter().all(
        |q| q.headers.get("authorization").and_then(|v| v.to_str().ok())
            == Some("Bearer xoxb-17-secret-token")
    ));
    assert!(!stderr(&o).contains("secret-token") && !stdout(&o).contains("secret-token"));
    // Every person was asked once.
    let asked: Vec<_> = reqs
        .iter()
        .filter(|q| q.url.path() == "/api/users.info")
        .collect();
    assert_eq!(asked.len(), 3, "{asked:?}");
    // Paced: 600 a minute is one every 100 ms; never a burst.
    assert_paced(
        "slack",
        &seen.lock().unwrap(),
        Duration::from_millis(1000),
        11,
    );

    // Again: nothing counted twice, no person asked again, and each
    // channel is read from its own cursor (the last thread_days only).
    let before = reqs.len();
    let again = lull(&h, &["poll", "--json"], &SLACK_ENV).await;
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(report(&again, "community")["counted"], 0);
    assert_eq!(totals(&h), t);
    let reqs = server.received_requests().await.unwrap();
    let later = &reqs[before..];
    assert!(
        later.iter().all(|q| q.url.path() != "/api/users.info"),
        "{later:?}"
    );
    let now = Utc::now().timestamp() as f64;
    let oldest = history_oldest(later, CHANNEL);
    assert_eq!(oldest.len(), 1);
    assert!(
        (now - 14.0 * 86400.0 - oldest[0]).abs() < 120.0,
        "{oldest:?}"
    );

    // A channel added later is read from the backfill, the others not.
    let h2 = {
        let text = std::fs::read_to_string(h.path().join("lull.toml")).unwrap();
        std::fs::write(
            h.path().join("lull.toml"),
            text.replace(
                &format!("{:?}", [CHANNEL, QUIET]),
                &format!("{:?}", [CHANNEL, QUIET, "C0G9QKCCM"]),
            ),
        )
        .unwrap();
        &h
    };
    Mock::given(method("GET"))
        .and(path("/api/conversations.history"))
        .and(query_param("channel", "C0G9QKCCM"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ok": true, "messages": []})))
        .mount(&server)
        .await;
    let before = reqs.len();
    let third = lull(h2, &["poll", "--json"], &SLACK_ENV).await;
    assert!(third.status.success(), "{}", stderr(&third));
    let reqs = server.received_requests().await.unwrap();
    let new = history_oldest(&reqs[before..], "C0G9QKCCM");
    assert!((now - 4000.0 * 86400.0 - new[0]).abs() < 120.0, "{new:?}");
    let old = history_oldest(&reqs[before..], QUIET);
    assert!(old[0] > now - 15.0 * 86400.0, "{old:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_errors_say_what_to_fix_and_a_failure_mid_poll_stores_nothing() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let server = slack_server(&seen).await;
    Mock::given(method("GET"))
        .and(path("/api/conversations.history"))
        .and(query_param("channel", "C0PRIVATE1"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"ok": false, "error": "not_in_channel"})),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/conversations.history"))
        .and(query_param("channel", "C0NOSCOPE1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "ok": false, "error": "missing_scope", "needed": "channels:history", "provided": "users:read"
        })))
        .mount(&server)
        .await;
    // The first channel reads fine, the second is one the app is not in:
    // the whole poll fails and nothing of the first is stored.
    let h = home(&slack_source(&server, &[CHANNEL, "C0PRIVATE1"], 0));
    let o = lull(&h, &["poll"], &SLACK_ENV).await;
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("not_in_channel") && err.contains("invite it"),
        "{err}"
    );
    assert_eq!(h.export(), "");
    let h = home(&slack_source(&server, &["C0NOSCOPE1"], 0));
    let err = stderr(&lull(&h, &["poll"], &SLACK_ENV).await);
    assert!(err.contains("lacks the scope `channels:history`"), "{err}");
    // A channel name instead of an ID is caught by `lull check`, with
    // its line.
    let h = home(&slack_source(&server, &["#general"], 0));
    let o = lull(&h, &["check"], &SLACK_ENV).await;
    assert_eq!(o.status.code(), Some(1));
    let out = format!("{}{}", stdout(&o), stderr(&o));
    assert!(out.contains("`#general` is not a channel ID"), "{out}");
    assert!(out.contains("lull.toml:"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_429_waits_as_long_as_retry_after_says() {
    let server = MockServer::start().await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    Mock::given(method("GET"))
        .and(path("/api/conversations.history"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "2"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/conversations.history"))
        .respond_with(json_clocked(json!({"ok": true, "messages": []}), &seen))
        .with_priority(2)
        .mount(&server)
        .await;
    let h = home(&slack_source(&server, &[CHANNEL], 0).replace("retries = 0", "retries = 2"));
    let started = Instant::now();
    let o = lull(&h, &["poll", "--json"], &SLACK_ENV).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let second = seen.lock().unwrap()[0];
    assert!(second.duration_since(started) >= Duration::from_millis(1950));
}

// -------------------------------------------------------------- Intercom

const JOE: &str = "6762f0d01bb69f9f2193bb7d";
const COMPANY: &str = "5ba682d23d7cf92bef87bfd4";

/// A conversation of the SDK's example, started by `author`.
fn conversation(id: &str, author: Value, contact: &str, created: i64) -> Value {
    let mut c = fixture("intercom/conversations.search.json")["conversations"][0].clone();
    c["id"] = json!(id);
    c["created_at"] = json!(created);
    c["updated_at"] = json!(created + 3600);
    c["source"]["author"] = author;
    c["source"]["delivered_as"] = json!("customer_initiated");
    c["contacts"]["contacts"] = json!([{"type": "contact", "id": contact, "external_id": null}]);
    c.as_object_mut().unwrap().remove("company_id");
    c
}

async fn intercom_server(seen: &Arc<Mutex<Vec<Instant>>>) -> MockServer {
    let server = MockServer::start().await;
    let clocked = |body: Value| json_clocked(body, seen);
    let now = Utc::now().timestamp();
    let joe = json!({"type": "user", "id": JOE, "name": "Joe Bloggs", "email": "joe@bloggs.com"});
    // Page 1: the SDK's example (an admin started it: staff) and Joe's.
    let mut page1 = fixture("intercom/conversations.search.json");
    let mut started_by_admin = page1["conversations"][0].clone();
    started_by_admin["created_at"] = json!(now - 3 * 86400);
    page1["conversations"] = json!([
        started_by_admin,
        conversation("901", joe.clone(), JOE, now - 2 * 86400)
    ]);
    page1["pages"]["next"] =
        json!({"per_page": 2, "starting_after": "WzE3MzQ1Mzc1NDYwMDAsNTE1LDJd"});
    // Page 2: a lead without an address whose contact lists company1.
    let lead = json!({"type": "lead", "id": "lead-7", "name": "Visitor 7"});
    let mut page2 = fixture("intercom/conversations.search.json");
    page2["conversations"] = json!([conversation("902", lead, "lead-7", now - 86400)]);
    page2["conversations"][0]["company_id"] = json!(COMPANY);
    page2["pages"] = json!({"type": "pages", "page": 2, "per_page": 2, "total_pages": 2});
    Mock::given(method("POST"))
        .and(path("/conversations/search"))
        .and(body_string_contains("WzE3MzQ1Mzc1NDYwMDAsNTE1LDJd"))
        .respond_with(clocked(page2))
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/conversations/search"))
        .respond_with(clocked(page1))
        .with_priority(2)
        .mount(&server)
        .await;
    // Whole conversations: the SDK's parts (an admin's comment and admin
    // actions) plus, in Joe's, his own reply.
    let whole = fixture("intercom/conversation.json");
    for (id, extra) in [
        ("515", None),
        (
            "901",
            Some(
                json!({"type": "conversation_part", "id": "7001", "part_type": "comment",
                "body": "<p>Thanks, that fixed it</p>", "created_at": now - 3600,
                "author": {"type": "user", "id": JOE, "name": "Joe Bloggs", "email": "joe@bloggs.com"}}),
            ),
        ),
        ("902", None),
    ] {
        let mut c = whole.clone();
        c["id"] = json!(id);
        if let Some(p) = extra {
            c["conversation_parts"]["conversation_parts"]
                .as_array_mut()
                .unwrap()
                .push(p);
        }
        Mock::given(method("GET"))
            .and(path(format!("/conversations/{id}")))
            .respond_with(clocked(c))
            .mount(&server)
            .await;
    }
    Mock::given(method("GET"))
        .and(path(format!("/contacts/{JOE}")))
        .respond_with(clocked(fixture("intercom/contact.json")))
        .mount(&server)
        .await;
    let mut lead_contact = fixture("intercom/contact.json");
    lead_contact["id"] = json!("lead-7");
    lead_contact["role"] = json!("lead");
    lead_contact["email"] = json!(null);
    Mock::given(method("GET"))
        .and(path("/contacts/lead-7"))
        .respond_with(clocked(lead_contact))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/companies/{COMPANY}")))
        .respond_with(clocked(fixture("intercom/company.json")))
        .mount(&server)
        .await;
    server
}

fn intercom_source(server: &MockServer, rate: u32) -> String {
    format!(
        r#"
[[source]]
name = "support"
kind = "intercom"
url = "{}"
token_env = "LULL_TEST_INTERCOM_TOKEN"
replies = true
requests_per_minute = {rate}
retries = 0
"#,
        server.uri()
    )
}

const INTERCOM_ENV: [(&str, &str); 1] =
    [("LULL_TEST_INTERCOM_TOKEN", "dG9rOmludGVyY29tLXNlY3JldA==")];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intercom_counts_conversations_customers_start_and_their_replies_not_admins() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let server = intercom_server(&seen).await;
    let h = home(&intercom_source(&server, 600));
    let o = lull(&h, &["poll", "--json"], &INTERCOM_ENV).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let r = report(&o, "support");
    // Joe's conversation and reply (by e-mail → bloggs.com); the lead's
    // conversation by its company's name (company1 → handle of `ic`),
    // its website domain intercom.com matching no account. The
    // conversation the SDK's admin started is staff; the SDK's parts are
    // older than the 90-day backfill.
    assert_eq!(r["counted"], 3, "{r}");
    assert_eq!(r["staff"], 1, "{r}");
    let t = totals(&h);
    assert_eq!(t.get(&k("bloggs", "ticket")), Some(&1), "{t:?}");
    assert_eq!(t.get(&k("bloggs", "reply")), Some(&1), "{t:?}");
    assert_eq!(t.get(&k("ic", "ticket")), Some(&1), "{t:?}");
    assert_eq!(t.len(), 3, "{t:?}");
    let reqs = server.received_requests().await.unwrap();
    // The search asked for what changed since the backfill start, and the
    // token went as a bearer header.
    let search: Value = serde_json::from_slice(&reqs[0].body).unwrap();
    let since = search["query"]["value"][0]["value"].as_i64().unwrap();
    assert!(
        (Utc::now().timestamp() - 90 * 86400 - since).abs() < 120,
        "{search}"
    );
    assert_eq!(search["query"]["value"][0]["field"], "updated_at");
    assert!(reqs.iter().all(
        |q| q.headers.get("authorization").and_then(|v| v.to_str().ok())
            == Some("Bearer dG9rOmludGVyY29tLXNlY3JldA==")
    ));
    assert_paced(
        "intercom",
        &seen.lock().unwrap(),
        Duration::from_millis(1000),
        11,
    );

    // Again: nothing twice, no contact or company asked again, and the
    // search starts where the first poll ended.
    let before = reqs.len();
    let again = lull(&h, &["poll", "--json"], &INTERCOM_ENV).await;
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(report(&again, "support")["counted"], 0);
    assert_eq!(totals(&h), t);
    let reqs = server.received_requests().await.unwrap();
    let later = &reqs[before..];
    assert!(
        later
            .iter()
            .all(|q| !q.url.path().starts_with("/contacts/")
                && !q.url.path().starts_with("/companies/")),
        "{later:?}"
    );
    let search: Value = serde_json::from_slice(&later[0].body).unwrap();
    let since = search["query"]["value"][0]["value"].as_i64().unwrap();
    assert!(Utc::now().timestamp() - since < 180, "{search}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intercom_failure_mid_poll_stores_nothing_and_names_the_problem() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let server = intercom_server(&seen).await;
    Mock::given(method("GET"))
        .and(path_regex("^/companies/"))
        .respond_with(ResponseTemplate::new(403).set_body_json(json!({
            "type": "error.list",
            "errors": [{"code": "forbidden", "message": "You do not have permission to access this resource"}]
        })))
        .with_priority(1)
        .mount(&server)
        .await;
    let h = home(&intercom_source(&server, 0));
    let o = lull(&h, &["poll"], &INTERCOM_ENV).await;
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("403") && err.contains("lack a permission"),
        "{err}"
    );
    assert!(!err.contains("dG9rOmludGVyY29tLXNlY3JldA"), "{err}");
    assert_eq!(h.export(), "");
}
