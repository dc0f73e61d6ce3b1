//! `lull poll` end to end: the real binary against local servers shaped
//! like the real services (captured payloads where we have them).

#![recursion_limit = "256"]

mod common;

use std::collections::BTreeMap;
use std::process::Output;

use chrono::{Duration, Utc};
use common::shapes::{self, Forum};
use common::{ACCOUNTS, CONFIG, Home, fixture, stderr, stdout};
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path, path_regex, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, ResponseTemplate};

const EXTRA_ACCOUNTS: &str = r#"
[[account]]
id = "example"
name = "Example Inc"
csm = "sam@vendor.example"
domains = ["example.com"]

[[account]]
id = "fresh"
name = "Freshdesk Sample Co"
csm = "jane@vendor.example"
domains = ["freshdesk.com"]
"#;

fn home(sources: &str) -> Home {
    Home::with(
        &format!("{CONFIG}\n{sources}"),
        &format!("{ACCOUNTS}\n{EXTRA_ACCOUNTS}"),
    )
}

async fn lull(h: &Home, args: &[&str], env: &[(&str, &str)]) -> Output {
    h.run_async(args, env).await
}

/// `poll --json` reports by source name.
fn reports(o: &Output) -> BTreeMap<String, Value> {
    let v: Value = serde_json::from_str(&stdout(o))
        .unwrap_or_else(|e| panic!("poll --json: {e}\n{}", stderr(o)));
    v.as_array()
        .expect("array")
        .iter()
        .map(|r| (r["source"].as_str().unwrap_or("").to_string(), r.clone()))
        .collect()
}

/// Export totals per (account, source, kind).
fn totals(h: &Home) -> BTreeMap<(String, String, String), u64> {
    let mut out = BTreeMap::new();
    for line in h.export().lines() {
        let v: Value = serde_json::from_str(line).expect("export line");
        *out.entry((
            v["account"].as_str().unwrap_or("").to_string(),
            v["source"].as_str().unwrap_or("").to_string(),
            v["kind"].as_str().unwrap_or("").to_string(),
        ))
        .or_insert(0) += v["count"].as_u64().unwrap_or(0);
    }
    out
}

fn key(a: &str, s: &str, k: &str) -> (String, String, String) {
    (a.into(), s.into(), k.into())
}

fn json_body(v: &Value) -> ResponseTemplate {
    ResponseTemplate::new(200)
        .insert_header("content-type", "application/json; charset=utf-8")
        .set_body_string(v.to_string())
}

fn raw_json(s: String) -> ResponseTemplate {
    ResponseTemplate::new(200)
        .insert_header("content-type", "application/json; charset=utf-8")
        .set_body_string(s)
}

const USERS: [&str; 5] = ["wile_e", "bob", "greta", "stranger", "mod_mia"];

fn forum_post(id: u64) -> Value {
    let at = (Utc::now() - Duration::hours(200 - id as i64)).to_rfc3339();
    let user = USERS[(id % 5) as usize];
    shapes::discourse_post(id, user, &at, 1 + id / 40, user == "mod_mia")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discourse_reads_new_posts_once_maps_users_and_stops_at_the_cursor() {
    let server = MockServer::start().await;
    let forum = Forum::default();
    for id in 1..=120 {
        forum.add(forum_post(id));
    }
    Mock::given(method("GET"))
        .and(path("/posts.json"))
        .and(header("Api-Key", "sekret-key"))
        .and(header("Api-Username", "system"))
        .respond_with(forum.clone())
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/admin/users/list/active.json"))
        .and(query_param("show_emails", "true"))
        .and(query_param("page", "1"))
        .respond_with(json_body(&json!([
            {"id": 3, "username": "bob", "name": "Bob", "email": "bob@mail.acme.com", "secondary_emails": [], "active": true, "admin": false, "moderator": false, "trust_level": 1},
            {"id": 4, "username": "greta", "name": "Greta", "email": "greta@globex.io", "secondary_emails": [], "active": true, "admin": false, "moderator": false, "trust_level": 2},
            {"id": 5, "username": "wile_e", "name": "Wile", "email": "wile@coyote.example", "secondary_emails": [], "active": true, "admin": false, "moderator": false, "trust_level": 1}
        ])))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/admin/users/list/active.json"))
        .and(query_param("page", "2"))
        .respond_with(json_body(&json!([])))
        .mount(&server)
        .await;
    let h = home(&format!(
        r#"
[[source]]
name = "forum"
kind = "discourse"
url = "{}"
api_key_env = "LULL_TEST_DISCOURSE_KEY"
api_username = "system"
requests_per_minute = 0
"#,
        server.uri()
    ));
    let env = [("LULL_TEST_DISCOURSE_KEY", "sekret-key")];

    let first = lull(&h, &["poll", "--json"], &env).await;
    assert!(first.status.success(), "{}", stderr(&first));
    let r = &reports(&first)["forum"];
    // 120 posts: 24 by staff (left out), 24 by a stranger (unmatched).
    assert_eq!(r["read"], 96, "{r}");
    assert_eq!(r["counted"], 72, "{r}");
    assert_eq!(r["unmatched"], 24, "{r}");
    assert_eq!(r["staff"], 24, "{r}");
    let t = totals(&h);
    // wile_e by handle, bob by his address's parent domain, greta by domain.
    assert_eq!(t[&key("acme", "forum", "post")], 48);
    assert_eq!(t[&key("globex", "forum", "post")], 24);
    // The key never shows up in what lull prints.
    assert!(!stderr(&first).contains("sekret-key"));

    // Seven new posts: one page read, no topic downloaded, nothing twice.
    let before = forum.requests();
    for id in 121..=127 {
        forum.add(forum_post(id));
    }
    let second = lull(&h, &["poll", "--json"], &env).await;
    assert!(second.status.success(), "{}", stderr(&second));
    let r = &reports(&second)["forum"];
    assert_eq!(forum.requests() - before, 1);
    assert_eq!(
        r["requests"], 1,
        "users already looked up are remembered: {r}"
    );
    assert_eq!(
        (
            r["counted"].as_u64(),
            r["unmatched"].as_u64(),
            r["staff"].as_u64()
        ),
        (Some(5), Some(1), Some(1))
    );
    let t = totals(&h);
    assert_eq!(t[&key("acme", "forum", "post")], 48 + 3);
    assert_eq!(t[&key("globex", "forum", "post")], 24 + 2);

    // Nothing new: nothing counted.
    let third = lull(&h, &["poll", "--json"], &env).await;
    assert_eq!(reports(&third)["forum"]["counted"], 0);
}

/// Posts over the last 80 days, ids `ids`, by the usual users.
fn spread_posts(forum: &Forum, ids: impl Iterator<Item = u64>, total: u64) {
    for id in ids {
        let at = (Utc::now() - Duration::minutes(((total - id) * 80 * 24 * 60 / total) as i64 + 5))
            .to_rfc3339();
        let user = USERS[(id % 5) as usize];
        forum.add(shapes::discourse_post(
            id,
            user,
            &at,
            1 + id / 40,
            user == "mod_mia",
        ));
    }
}

/// A first poll of a Discourse before mid-2024 (windowed `before=`) whose
/// visible posts have the ids `ids` (of `total`): the forum and the
/// poll's report and stderr.
async fn poll_windowed(ids: impl Iterator<Item = u64>, total: u64) -> (Forum, Value, String) {
    let server = MockServer::start().await;
    let forum = Forum::default();
    forum
        .windowed
        .store(true, std::sync::atomic::Ordering::SeqCst);
    spread_posts(&forum, ids, total);
    Mock::given(method("GET"))
        .and(path("/posts.json"))
        .respond_with(forum.clone())
        .mount(&server)
        .await;
    let h = home(&format!(
        "[[source]]\nname = \"forum\"\nkind = \"discourse\"\nurl = \"{}\"\nrequests_per_minute = 0\n",
        server.uri()
    ));
    let o = lull(&h, &["poll", "--json"], &[]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let report = reports(&o)["forum"].clone();
    (forum, report, stderr(&o))
}

/// Posts seen: read (matched or not) and left out as staff's.
fn seen(r: &Value) -> u64 {
    r["read"].as_u64().unwrap_or(0) + r["staff"].as_u64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discourse_before_2024_reads_past_an_empty_window_and_a_long_gap_is_not_called_covered() {
    // 415 visible posts, ids 1..=475 without 201..=260: a window of 50
    // ids comes back empty in the middle of the stream.
    let (_, r, _) = poll_windowed((1..=200).chain(261..=475), 475).await;
    assert_eq!(seen(&r), 415, "every visible post: {r}");
    let backfill_start = (Utc::now() - Duration::days(90)).date_naive().to_string();
    assert_eq!(r["covered"][0], backfill_start.as_str(), "{r}");

    // A run of 2,100 invisible ids: lull stops looking and covers only
    // down to the oldest post it read.
    let (forum, r, err) = poll_windowed((1..=100).chain(2201..=2300), 2300).await;
    assert_eq!(seen(&r), 100, "{r}");
    let oldest_read = forum.posts.lock().unwrap()[100]["created_at"]
        .as_str()
        .unwrap_or_default()[..10]
        .to_string();
    assert!(
        r["covered"][0].as_str() >= Some(oldest_read.as_str()),
        "{r} vs {oldest_read}"
    );
    assert!(err.contains("stay uncovered"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discourse_with_a_non_admin_key_counts_by_name_and_a_renamed_user_keeps_matching() {
    let server = MockServer::start().await;
    let forum = Forum::default();
    let now = Utc::now();
    let post = |id: u64, name: &str, hours: i64| {
        let mut p = shapes::discourse_post(
            id,
            name,
            &(now - Duration::hours(hours)).to_rfc3339(),
            1,
            false,
        );
        p["user_id"] = json!(77);
        p
    };
    forum.add(post(1, "wile_e", 50));
    forum.add(post(2, "wile_e", 40));
    Mock::given(method("GET"))
        .and(path("/posts.json"))
        .respond_with(forum.clone())
        .mount(&server)
        .await;
    // A moderator's (not an admin's) key: the user list is forbidden.
    Mock::given(method("GET"))
        .and(path("/admin/users/list/active.json"))
        .respond_with(
            ResponseTemplate::new(403)
                .set_body_string(r#"{"errors":["You are not permitted to view the requested resource."],"error_type":"invalid_access"}"#),
        )
        .mount(&server)
        .await;
    let h = home(&format!(
        "[[source]]\nname = \"forum\"\nkind = \"discourse\"\nurl = \"{}\"\napi_key_env = \"LULL_TEST_DISCOURSE_KEY\"\napi_username = \"mod\"\nrequests_per_minute = 0\n",
        server.uri()
    ));
    let env = [("LULL_TEST_DISCOURSE_KEY", "mod-key-123")];
    let o = lull(&h, &["poll", "--json"], &env).await;
    let err = stderr(&o);
    assert!(o.status.success(), "the poll does not fail: {err}");
    assert!(err.contains("needs an admin's key"), "{err}");
    assert_eq!(reports(&o)["forum"]["counted"], 2, "{}", stdout(&o));
    // Wile renames himself; the accounts file still says wile_e.
    forum.add(post(3, "road_runner_fan", 2));
    let o = lull(&h, &["poll", "--json"], &env).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let r = &reports(&o)["forum"];
    assert_eq!(
        (r["counted"].as_u64(), r["unmatched"].as_u64()),
        (Some(1), Some(0)),
        "{r}"
    );
    assert_eq!(totals(&h)[&key("acme", "forum", "post")], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_required_forum_without_a_key_is_named_as_such_not_as_a_missing_permission() {
    // Discourse's answer to an anonymous request on a login-required site.
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/posts.json"))
        .respond_with(
            ResponseTemplate::new(403)
                .insert_header("content-type", "application/json; charset=utf-8")
                .set_body_string(r#"{"errors":["You are not permitted to view the requested resource."],"error_type":"invalid_access"}"#),
        )
        .mount(&server)
        .await;
    let source = |key: &str| {
        format!(
            "[[source]]\nname = \"forum\"\nkind = \"discourse\"\nurl = \"{}\"\nrequests_per_minute = 0\nretries = 0\n{key}",
            server.uri()
        )
    };
    let h = home(&source(""));
    let o = lull(&h, &["poll"], &[]).await;
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("403")
            && err.contains("this source has none configured")
            && err.contains("login-required site needs an API key"),
        "{err}"
    );
    assert!(!err.contains("lack a permission"), "{err}");
    // With a key, the same answer is the key's missing permission.
    let h = home(&source(
        "api_key_env = \"LULL_TEST_DISCOURSE_KEY\"\napi_username = \"system\"\n",
    ));
    let o = lull(&h, &["poll"], &[("LULL_TEST_DISCOURSE_KEY", "k-123456")]).await;
    let err = stderr(&o);
    assert!(err.contains("the credentials lack a permission"), "{err}");
    assert!(!err.contains("none configured"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freshdesk_real_payloads_count_tickets_once_and_not_agent_replies() {
    let server = MockServer::start().await;
    let next = format!(
        "{}/api/v2/tickets?updated_since=2000-01-01T00%3A00%3A00Z&page=2&per_page=100",
        server.uri()
    );
    Mock::given(method("GET"))
        .and(path("/api/v2/tickets"))
        .and(query_param("page", "1"))
        .and(query_param("order_by", "updated_at"))
        .respond_with(
            raw_json(fixture("freshdesk/all_tickets.json"))
                .insert_header("link", format!("<{next}>; rel=\"next\"").as_str()),
        )
        .mount(&server)
        .await;
    // The second page repeats the ticket (it was updated meanwhile), and
    // has a second one, with the requester included, whose customer
    // replied.
    let mut page2: Value = serde_json::from_str(&fixture("freshdesk/all_tickets.json")).unwrap();
    let mut t2 = page2[0].clone();
    t2["id"] = json!(2);
    t2["requester_id"] = json!(77);
    t2["created_at"] = json!("2015-02-01T10:00:00Z");
    t2["updated_at"] = json!("2015-02-03T10:00:00Z");
    t2["requester"] = json!({"id": 77, "name": "Peter", "email": "peter@gmail.com", "mobile": null, "phone": null});
    page2.as_array_mut().unwrap().push(t2);
    Mock::given(method("GET"))
        .and(path("/api/v2/tickets"))
        .and(query_param("page", "2"))
        .respond_with(json_body(&page2))
        .mount(&server)
        .await;
    let mut convs: Value = serde_json::from_str(&fixture("freshdesk/conversations.json")).unwrap();
    for (i, (incoming, private)) in [(true, false), (true, true)].into_iter().enumerate() {
        let mut c = convs[1].clone();
        c["id"] = json!(20 + i);
        c["ticket_id"] = json!(2);
        c["incoming"] = json!(incoming);
        c["private"] = json!(private);
        c["user_id"] = json!(77);
        c["from_email"] = json!("Peter <peter@gmail.com>");
        c["created_at"] = json!("2015-02-02T08:00:00Z");
        convs.as_array_mut().unwrap().push(c);
    }
    Mock::given(method("GET"))
        .and(path("/api/v2/tickets/2/conversations"))
        .respond_with(json_body(&convs))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v2/contacts/5004272351"))
        .respond_with(raw_json(fixture("freshdesk/contact.json")))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v2/tickets/1/conversations"))
        .respond_with(raw_json(fixture("freshdesk/conversations.json")))
        .mount(&server)
        .await;
    let h = home(&format!(
        r#"
[[source]]
name = "helpdesk"
kind = "freshdesk"
url = "{}"
api_key_env = "LULL_TEST_FRESHDESK_KEY"
conversations = true
backfill_days = 9000
requests_per_minute = 0
"#,
        server.uri()
    ));
    let env = [("LULL_TEST_FRESHDESK_KEY", "fd-key")];
    let o = lull(&h, &["poll", "--json"], &env).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let r = &reports(&o)["helpdesk"];
    // Ticket 1 (seen on two pages) by rachel@freshdesk.com, whose two
    // real conversations are agents' (incoming: false): not counted.
    // Ticket 2 by Peter, and his one public reply (the private note and
    // the agents' replies do not count).
    assert_eq!(
        (r["read"].as_u64(), r["counted"].as_u64()),
        (Some(3), Some(3)),
        "{r}"
    );
    let t = totals(&h);
    assert_eq!(t.get(&key("fresh", "helpdesk", "ticket")), Some(&1));
    assert_eq!(t.get(&key("initech", "helpdesk", "ticket")), Some(&1));
    assert_eq!(t.get(&key("initech", "helpdesk", "conversation")), Some(&1));
    assert_eq!(t.len(), 3, "{t:?}");
    // The ticket's day is its creation day in the config's zone (UTC):
    // 2014-12-31T12:27:09+10:00.
    assert!(
        h.export().contains("\"day\":\"2014-12-31\""),
        "{}",
        h.export()
    );
    // Polling the same window again counts nothing twice, without
    // `include=requester` (an API credit a page) and without looking up
    // a requester or a company lull has met.
    let first: Vec<wiremock::Request> = server.received_requests().await.unwrap_or_default();
    let again = lull(&h, &["poll", "--json"], &env).await;
    assert_eq!(reports(&again)["helpdesk"]["counted"], 0);
    assert_eq!(totals(&h), t);
    let all = server.received_requests().await.unwrap_or_default();
    let later = &all[first.len()..];
    let tickets: Vec<_> = later
        .iter()
        .filter(|r| r.url.path() == "/api/v2/tickets")
        .collect();
    assert!(!tickets.is_empty());
    assert!(
        first
            .iter()
            .any(|r| r.url.query().unwrap_or("").contains("include=requester")),
        "the first poll includes requesters"
    );
    assert!(
        tickets
            .iter()
            .all(|r| !r.url.query().unwrap_or("").contains("include")),
        "{tickets:?}"
    );
    assert!(
        later
            .iter()
            .all(|r| !r.url.path().starts_with("/api/v2/contacts")
                && !r.url.path().starts_with("/api/v2/companies")),
        "{later:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postmark_real_payloads_give_deliveries_and_opens_per_recipient() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/messages/outbound"))
        .and(query_param("offset", "0"))
        .and(header("X-Postmark-Server-Token", "pm-token"))
        .respond_with(raw_json(fixture("postmark/outbound.json")))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/messages/outbound"))
        .respond_with(json_body(&json!({"TotalCount": 1893, "Messages": []})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/messages/outbound/opens"))
        .and(query_param("offset", "0"))
        .respond_with(raw_json(fixture("postmark/opens.json")))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/messages/outbound/opens"))
        .respond_with(json_body(&json!({"TotalCount": 259, "Opens": []})))
        .mount(&server)
        .await;
    let days = (Utc::now().date_naive() - chrono::NaiveDate::from_ymd_opt(2017, 2, 20).unwrap())
        .num_days();
    let h = home(&format!(
        r#"
[[source]]
name = "mail"
kind = "postmark"
url = "{}"
token_env = "LULL_TEST_POSTMARK_TOKEN"
backfill_days = {days}
requests_per_minute = 0
"#,
        server.uri()
    ));
    let env = [("LULL_TEST_POSTMARK_TOKEN", "pm-token")];
    let o = lull(&h, &["poll", "--json"], &env).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let t = totals(&h);
    assert_eq!(
        t.get(&key("example", "mail", "delivered")),
        Some(&1),
        "{t:?}"
    );
    assert_eq!(t.get(&key("example", "mail", "open")), Some(&1), "{t:?}");
    let export = h.export();
    // ReceivedAt 2017-02-25T13:59:44-05:00 and 2017-02-24T23:50:09-05:00
    // are both 2017-02-25 in UTC.
    assert_eq!(
        export.matches("\"day\":\"2017-02-25\"").count(),
        2,
        "{export}"
    );
    let again = lull(&h, &["poll", "--json"], &env).await;
    assert_eq!(reports(&again)["mail"]["counted"], 0, "{}", stderr(&again));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mailgun_real_payloads_and_machine_opens_are_counted_apart() {
    let server = MockServer::start().await;
    let page1 = fixture("mailgun/events_page1.json");
    Mock::given(method("GET"))
        .and(path("/v3/DOMAIN.TEST/events"))
        .and(query_param("ascending", "yes"))
        .and(query_param("event", "delivered OR opened"))
        .respond_with(raw_json(page1))
        .mount(&server)
        .await;
    // The fixture's `paging.next` names api.mailgun.net: lull follows its
    // path on the configured server. That page is real too; an extra
    // page with opens (shaped after Mailgun's docs) sits before it.
    let next_token = "WzMseyJiIjoiMjAyNS0wMS0yNlQwNzoyOToyMS4zNjIrMDA6MDAiLCJlIjoiMjAyNS0wMS0yMVQwNzoyOToyMS4zNjIrMDA6MDAifSx7ImIiOiIyMDI1LTAxLTI0VDEyOjAzOjExLjQzMSswMDowMCIsImUiOiIyMDI1LTAxLTIxVDA3OjI5OjIxLjM2MiswMDowMCJ9LCJfZG9jI29QSUpIT3h2UVJpMXBDcy11V0pJcWciLFsiZiJdLG51bGwsW1siYWNjb3VudC5pZCIsIjY0MWIwYzkzYWMzMGJlOGI5YjRiOWEzNCJdLFsiZG9tYWluLm5hbWUiLCJzYW5kYm94NzNiZGVjYmQyMjQ0NGJiMDlmNTU0ZGYzYmRiZTUzNWQubWFpbGd1bi5vcmciXV0sMTAwXQ==";
    let m1 = "20250124124439.f63f05484edb49a8@DOMAIN.TEST"; // delivered 1737722681.54
    let m2 = "20250124122313.cb5150f5614d6a99@DOMAIN.TEST"; // delivered 1737721393.86
    let opens = json!({
        "items": [
            // 2 s after delivery: a privacy proxy, not a person.
            shapes::mailgun_opened(m1, "recipient@example.com", 1737722683.0, ""),
            // The person, a day later, twice: one open.
            shapes::mailgun_opened(m1, "recipient@example.com", 1737809000.0, ""),
            shapes::mailgun_opened(m1, "recipient@example.com", 1737812000.0, ""),
            // Flagged by Mailgun as a bot.
            shapes::mailgun_opened(m2, "recipient@example.com", 1737800000.0, "apple"),
        ],
        "paging": {"next": format!("https://api.mailgun.net/v3/DOMAIN.TEST/events/{next_token}x")}
    });
    Mock::given(method("GET"))
        .and(path(format!("/v3/DOMAIN.TEST/events/{next_token}")))
        .respond_with(json_body(&opens))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/v3/DOMAIN.TEST/events/{next_token}x")))
        .respond_with(raw_json(fixture("mailgun/events_page2.json")))
        .mount(&server)
        .await;
    let days = (Utc::now().date_naive() - chrono::NaiveDate::from_ymd_opt(2025, 1, 20).unwrap())
        .num_days();
    let h = home(&format!(
        r#"
[[source]]
name = "mg"
kind = "mailgun"
url = "{}"
domain = "DOMAIN.TEST"
api_key_env = "LULL_TEST_MAILGUN_KEY"
backfill_days = {days}
requests_per_minute = 0
"#,
        server.uri()
    ));
    let env = [("LULL_TEST_MAILGUN_KEY", "key-123")];
    let o = lull(&h, &["poll", "--json"], &env).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let t = totals(&h);
    assert_eq!(t.get(&key("example", "mg", "delivered")), Some(&5), "{t:?}");
    assert_eq!(t.get(&key("example", "mg", "open")), Some(&1), "{t:?}");
    assert_eq!(
        t.get(&key("example", "mg", "machine_open")),
        Some(&2),
        "{t:?}"
    );
    // Overlapping re-poll: nothing twice.
    let again = lull(&h, &["poll", "--json"], &env).await;
    assert_eq!(reports(&again)["mg"]["counted"], 0);
    assert_eq!(totals(&h), t);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mailchimp_opens_count_once_per_recipient_per_campaign() {
    let server = MockServer::start().await;
    // The real records: an unsent draft and one recipient's open.
    let mut campaigns = Vec::new();
    let mut activity = None;
    for line in fixture("mailchimp/expected_records.jsonl").lines() {
        let r: Value = serde_json::from_str(line).unwrap();
        match r["stream"].as_str() {
            Some("campaigns") => campaigns.push(r["data"].clone()),
            Some("email_activity") => activity = Some(r["data"].clone()),
            _ => {}
        }
    }
    let activity = activity.expect("email_activity record");
    let cid = activity["campaign_id"].as_str().unwrap().to_string();
    let open_at = activity["timestamp"].as_str().unwrap().to_string();
    let send_time = "2023-11-06T20:00:00+00:00";
    let mut sent = campaigns[0].clone();
    sent["id"] = json!(cid);
    sent["status"] = json!("sent");
    sent["send_time"] = json!(send_time);
    campaigns.push(sent);
    Mock::given(method("GET"))
        .and(path("/3.0/campaigns"))
        .and(query_param("status", "sent"))
        .respond_with(json_body(
            &json!({"campaigns": campaigns, "total_items": 2}),
        ))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/3.0/reports/{cid}/sent-to")))
        .respond_with(json_body(&json!({
            "sent_to": [
                {"email_id": activity["email_id"], "email_address": "owner@example.com", "merge_fields": {}, "vip": false, "status": "sent", "open_count": 3, "last_open": open_at, "absplit_group": "", "gmt_offset": 0},
                {"email_id": "b2", "email_address": "gone@globex.io", "merge_fields": {}, "vip": false, "status": "hard", "open_count": 0, "last_open": "", "absplit_group": "", "gmt_offset": 0}
            ],
            "campaign_id": cid,
            "total_items": 2
        })))
        .mount(&server)
        .await;
    // The real row, un-flattened into the API's shape, opened three times.
    let mut a1 = json!({"action": "open", "timestamp": open_at, "ip": activity["ip"]});
    let a2 = json!({"action": "open", "timestamp": "2023-11-08T09:00:00+00:00", "ip": "10.0.0.1"});
    let click = json!({"action": "click", "timestamp": "2023-11-08T09:01:00+00:00", "url": "https://x", "ip": "10.0.0.1"});
    a1["ip"] = activity["ip"].clone();
    Mock::given(method("GET"))
        .and(path(format!("/3.0/reports/{cid}/email-activity")))
        .respond_with(json_body(&json!({
            "emails": [{
                "campaign_id": cid,
                "list_id": activity["list_id"],
                "list_is_active": true,
                "email_id": activity["email_id"],
                "email_address": activity["email_address"],
                "activity": [a1, a2.clone(), a2, click]
            }],
            "campaign_id": cid,
            "total_items": 1
        })))
        .mount(&server)
        .await;
    let days = (Utc::now().date_naive() - chrono::NaiveDate::from_ymd_opt(2023, 11, 1).unwrap())
        .num_days();
    let h = home(&format!(
        r#"
[[source]]
name = "news"
kind = "mailchimp"
url = "{}"
api_key_env = "LULL_TEST_MAILCHIMP_KEY"
backfill_days = {days}
requests_per_minute = 0
"#,
        server.uri()
    ));
    let env = [("LULL_TEST_MAILCHIMP_KEY", "mc-key-us10")];
    let o = lull(&h, &["poll", "--json"], &env).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let t = totals(&h);
    assert_eq!(
        t.get(&key("example", "news", "delivered")),
        Some(&1),
        "{t:?}"
    );
    assert_eq!(t.get(&key("example", "news", "open")), Some(&1), "{t:?}");
    // A hard bounce is not a delivery.
    assert!(!t.keys().any(|(a, _, _)| a == "globex"), "{t:?}");
    assert!(h.export().contains("\"day\":\"2023-11-06\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mailchimp_does_not_download_a_campaign_it_read_again_only_the_activity_since() {
    let server = MockServer::start().await;
    let sent = (Utc::now() - Duration::days(3)).to_rfc3339();
    let opened = (Utc::now() - Duration::days(2)).to_rfc3339();
    Mock::given(method("GET"))
        .and(path("/3.0/campaigns"))
        .respond_with(json_body(&json!({
            "campaigns": [{"id": "c1", "send_time": sent}], "total_items": 1
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/3.0/reports/c1/sent-to"))
        .respond_with(json_body(&json!({
            "sent_to": [{"email_address": "owner@example.com", "status": "sent"}],
            "total_items": 1
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/3.0/reports/c1/email-activity"))
        .respond_with(json_body(&json!({
            "emails": [{"email_address": "owner@example.com",
                        "activity": [{"action": "open", "timestamp": opened}]}],
            "total_items": 1
        })))
        .mount(&server)
        .await;
    let h = home(&format!(
        "[[source]]\nname = \"news\"\nkind = \"mailchimp\"\nurl = \"{}\"\napi_key_env = \"LULL_TEST_MAILCHIMP_KEY\"\nrequests_per_minute = 0\n",
        server.uri()
    ));
    let env = [("LULL_TEST_MAILCHIMP_KEY", "mc-key-us10")];
    for _ in 0..2 {
        let o = lull(&h, &["poll", "--json"], &env).await;
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let t = totals(&h);
    assert_eq!(
        t.get(&key("example", "news", "delivered")),
        Some(&1),
        "{t:?}"
    );
    assert_eq!(t.get(&key("example", "news", "open")), Some(&1), "{t:?}");
    let reqs = server.received_requests().await.unwrap_or_default();
    let to = |p: &str| {
        reqs.iter()
            .filter(|r| r.url.path() == p)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        to("/3.0/reports/c1/sent-to").len(),
        1,
        "recipients read once"
    );
    let activity = to("/3.0/reports/c1/email-activity");
    assert_eq!(activity.len(), 2);
    assert!(!activity[0].url.query().unwrap_or("").contains("since="));
    let since = activity[1]
        .url
        .query_pairs()
        .find(|(k, _)| k == "since")
        .map(|(_, v)| v.to_string())
        .expect("the second poll asks only for activity since the first");
    let since = chrono::DateTime::parse_from_rfc3339(&since).expect("ISO 8601");
    assert!(since > Utc::now() - Duration::hours(2), "{since}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zendesk_export_resumes_from_its_cursor_and_dedupes_repeated_tickets() {
    let server = MockServer::start().await;
    let now = Utc::now();
    let t = |h: i64| {
        (now - Duration::hours(h))
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
    };
    let page1 = json!({
        "tickets": [
            shapes::zendesk_ticket(1, &t(50), 101, None),
            shapes::zendesk_ticket(2, &t(40), 102, Some(7)),
            // Opened by an agent on a customer's behalf... by the agent.
            shapes::zendesk_ticket(3, &t(30), 900, None),
        ],
        "users": [
            shapes::zendesk_user(101, "bob@mail.acme.com", "end-user", None),
            shapes::zendesk_user(900, "agent@vendor.example", "agent", None),
        ],
        "after_url": format!("https://example.zendesk.com/api/v2/incremental/tickets/cursor.json?cursor=c1"),
        "after_cursor": "c1",
        "before_url": null,
        "before_cursor": null,
        "end_of_stream": false
    });
    // Ticket 2 again (updated), and a ticket created before lull started.
    let page2 = json!({
        "tickets": [
            shapes::zendesk_ticket(2, &t(40), 102, Some(7)),
            shapes::zendesk_ticket(4, "2001-01-01T00:00:00Z", 101, None),
        ],
        "users": [],
        "after_url": "https://example.zendesk.com/api/v2/incremental/tickets/cursor.json?cursor=c2",
        "after_cursor": "c2",
        "end_of_stream": true
    });
    Mock::given(method("GET"))
        .and(path("/api/v2/incremental/tickets/cursor.json"))
        .and(query_param_is_missing("cursor"))
        .and(query_param("include", "users"))
        .respond_with(json_body(&page1))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v2/incremental/tickets/cursor.json"))
        .and(query_param("cursor", "c1"))
        .respond_with(json_body(&page2))
        .mount(&server)
        .await;
    // User 102 was not sideloaded: looked up; her organisation's domain
    // maps her (her own address is a free-mail one).
    Mock::given(method("GET"))
        .and(path("/api/v2/users/show_many.json"))
        .and(query_param("ids", "102"))
        .respond_with(json_body(&json!({"users": [shapes::zendesk_user(102, "greta.g@gmail.example", "end-user", Some(7))]})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v2/organizations/show_many.json"))
        .respond_with(json_body(&json!({"organizations": [{"id": 7, "name": "Globex", "domain_names": ["globex.io"], "url": "https://example.zendesk.com/api/v2/organizations/7.json"}]})))
        .mount(&server)
        .await;
    // The next poll resumes from c2.
    Mock::given(method("GET"))
        .and(path("/api/v2/incremental/tickets/cursor.json"))
        .and(query_param("cursor", "c2"))
        .respond_with(json_body(&json!({
            "tickets": [shapes::zendesk_ticket(5, &t(1), 101, None)],
            "users": [shapes::zendesk_user(101, "bob@mail.acme.com", "end-user", None)],
            "after_cursor": "c3", "after_url": null, "end_of_stream": true
        })))
        .expect(1)
        .mount(&server)
        .await;
    let h = home(&format!(
        r#"
[[source]]
name = "support"
kind = "zendesk"
url = "{}"
email = "lull@vendor.example"
token_env = "LULL_TEST_ZENDESK_TOKEN"
requests_per_minute = 0
"#,
        server.uri()
    ));
    let env = [("LULL_TEST_ZENDESK_TOKEN", "zd-token")];
    let o = lull(&h, &["poll", "--json"], &env).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let r = &reports(&o)["support"];
    assert_eq!(
        (r["counted"].as_u64(), r["staff"].as_u64()),
        (Some(2), Some(1)),
        "{r}"
    );
    let o = lull(&h, &["poll", "--json"], &env).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let tot = totals(&h);
    assert_eq!(tot[&key("acme", "support", "ticket")], 2);
    assert_eq!(tot[&key("globex", "support", "ticket")], 1);
    server.verify().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zendesk_comments_count_public_end_user_replies_once() {
    let server = MockServer::start().await;
    let now = Utc::now();
    let ts = |h: i64| now - Duration::hours(h);
    let iso = |h: i64| ts(h).format("%Y-%m-%dT%H:%M:%SZ").to_string();
    Mock::given(path("/api/v2/incremental/tickets/cursor.json"))
        .respond_with(json_body(&json!({
            "tickets": [shapes::zendesk_ticket(1, &iso(50), 101, None)],
            "users": [shapes::zendesk_user(101, "bob@mail.acme.com", "end-user", None)],
            "after_cursor": "c1", "after_url": null, "end_of_stream": true
        })))
        .mount(&server)
        .await;
    let comment = |id: u64, author: u64, public: bool, h: i64| {
        json!({"id": id, "via": "Web form", "via_reference_id": null, "type": "Comment", "author_id": author,
               "body": "Thanks", "html_body": "<p>Thanks</p>", "public": public, "attachments": [],
               "audit_id": id - 1, "created_at": iso(h), "event_type": "Comment"})
    };
    let event = |id: u64, kind: &str, h: i64, children: Vec<Value>| {
        json!({"id": id, "ticket_id": 1, "timestamp": ts(h).timestamp(), "created_at": iso(h), "updater_id": 101,
               "via": "Web form", "system": {"client": "Mozilla/5.0", "ip_address": "203.0.113.9"},
               "metadata": {}, "event_type": kind, "child_events": children})
    };
    let start = format!(
        "{}/api/v2/incremental/ticket_events.json?start_time={}",
        server.uri(),
        ts(20).timestamp()
    );
    Mock::given(path("/api/v2/incremental/ticket_events.json"))
        .and(query_param("include", "comment_events"))
        .and(query_param_is_missing("page2"))
        .respond_with(json_body(&json!({
            "ticket_events": [
                // The comment that opens the ticket is the ticket itself.
                event(10, "Create", 50, vec![comment(11, 101, true, 50)]),
                event(20, "Update", 30, vec![comment(21, 101, true, 30)]),
                event(30, "Update", 25, vec![comment(31, 101, false, 25)]),
                event(40, "Update", 20, vec![comment(41, 900, true, 20)]),
            ],
            "next_page": format!("{start}&page2=1"),
            "count": 4, "end_of_stream": false, "end_time": ts(20).timestamp()
        })))
        .mount(&server)
        .await;
    // The time-based export repeats the edge of the previous page.
    Mock::given(path("/api/v2/incremental/ticket_events.json"))
        .and(query_param("page2", "1"))
        .respond_with(json_body(&json!({
            "ticket_events": [
                event(40, "Update", 20, vec![comment(41, 900, true, 20)]),
                event(50, "Update", 10, vec![comment(51, 101, true, 10)]),
            ],
            "next_page": null, "count": 2, "end_of_stream": true, "end_time": ts(10).timestamp()
        })))
        .mount(&server)
        .await;
    Mock::given(path("/api/v2/users/show_many.json"))
        .and(query_param("ids", "900"))
        .respond_with(json_body(
            &json!({"users": [shapes::zendesk_user(900, "agent@vendor.example", "agent", None)]}),
        ))
        .mount(&server)
        .await;
    let h = home(&format!(
        "[[source]]\nname = \"support\"\nkind = \"zendesk\"\nurl = \"{}\"\nemail = \"lull@vendor.example\"\ntoken_env = \"LULL_TEST_ZENDESK_TOKEN\"\ncomments = true\nrequests_per_minute = 0\n",
        server.uri()
    ));
    let o = lull(&h, &["poll", "--json"], &[("LULL_TEST_ZENDESK_TOKEN", "t")]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let t = totals(&h);
    assert_eq!(t[&key("acme", "support", "ticket")], 1);
    // Comments 21 and 51: not the opening one, not the private one, not
    // the agent's (seen twice), each once.
    assert_eq!(t[&key("acme", "support", "comment")], 2, "{t:?}");
    assert_eq!(reports(&o)["support"]["staff"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn html_phpbb_pages_are_followed_and_a_broken_theme_is_an_error() {
    let server = MockServer::start().await;
    let page1 = fixture("html/phpbb_topic.html");
    // Page 2: older posts, no further "next".
    let page2 = page1
        .replace("p101", "p91")
        .replace("p102", "p92")
        .replace("p107", "p93")
        .replace("2026-11-2", "2026-11-1")
        .replace("rel=\"next\"", "rel=\"prev\"");
    Mock::given(method("GET"))
        .and(path("/viewtopic.php"))
        .and(query_param("start", "10"))
        .respond_with(ResponseTemplate::new(200).set_body_string(page2))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/viewtopic.php"))
        .and(query_param_is_missing("start"))
        .respond_with(ResponseTemplate::new(200).set_body_string(page1))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/broken"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_string("<html><body><div class='topic'>Maintenance</div></body></html>"),
        )
        .mount(&server)
        .await;
    let accounts = format!("{ACCOUNTS}\n{EXTRA_ACCOUNTS}").replace(
        "handles = { forum = [\"wile_e\"] }",
        "handles = { forum = [\"wile_e\"], phpbb = [\"alice\", \"bob_ops\"] }",
    );
    let h = Home::with(
        &format!(
            r#"{CONFIG}
[[source]]
name = "phpbb"
kind = "html"
preset = "phpbb"
url = "{0}/viewtopic.php?t=5"
backfill_days = 9000
requests_per_minute = 0

[[source]]
name = "other"
kind = "html"
post = "article.post"
author = ".who"
time = "time"
url = "{0}/broken"
requests_per_minute = 0
"#,
            server.uri()
        ),
        &accounts,
    );
    let o = lull(&h, &["poll", "--json"], &[]).await;
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("source `other` (html)")
            && err.contains("no element matches the `post` selector `article.post`"),
        "{err}"
    );
    let r = &reports(&o)["phpbb"];
    assert_eq!(
        (
            r["read"].as_u64(),
            r["counted"].as_u64(),
            r["unmatched"].as_u64()
        ),
        (Some(6), Some(4), Some(2)),
        "{r}"
    );
    assert_eq!(totals(&h)[&key("acme", "phpbb", "post")], 4);
    let o = lull(&h, &["poll", "--json", "--source", "phpbb"], &[]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(reports(&o)["phpbb"]["counted"], 0);
}

/// An Askbot-shaped question page (constructed after Askbot's templates:
/// no real capture of one is available to this repo): answers in `.post`,
/// the author in `.user-info a`, the time in `abbr.timeago[title]`, votes
/// and karma in the post's text, no element ids.
/// Answers are (author, minutes ago, votes): within the hour a poll reads
/// again, so a second poll sees them all again.
fn askbot_page(
    now: chrono::DateTime<Utc>,
    answers: &[(Option<&str>, i64, u32)],
    next: &str,
) -> String {
    let mut body = String::from("<html><body><div id=question>");
    for (who, minutes_ago, votes) in answers {
        let t = (now - Duration::minutes(*minutes_ago)).format("%Y-%m-%d %H:%M:%S +0000");
        let user = who.map_or(String::new(), |w| {
            format!("<div class=user-info><a href='/users/9/{w}/'>{w}</a> <span class=reputation>{votes}.2k</span></div>")
        });
        body.push_str(&format!(
            "<div class='post answer'><div class=vote-number>{votes}</div><div class=post-body>An answer written {minutes_ago} minutes ago.</div><div class=post-update-info>{user}<abbr class=timeago title='{t}'>{minutes_ago} minutes ago</abbr></div></div>"
        ));
    }
    // The hidden template Askbot keeps for a new answer.
    body.push_str(
        "<div class='post answer' style='display:none'><div class=user-info><a></a></div></div>",
    );
    body.push_str(&format!(
        "<div class=paginator><span class=next><a href='{next}'>next</a></span></div></div></body></html>"
    ));
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn html_askbot_wiki_posts_count_unknown_a_looping_next_link_ends_and_votes_change_no_ids() {
    let server = MockServer::start().await;
    let now = Utc::now();
    let mount = |votes: u32| {
        let page1 = askbot_page(
            now,
            &[
                (Some("alice"), 25, votes),
                (None, 24, 1),
                (Some("carol"), 23, 2),
            ],
            "?page=2",
        );
        // The last page's hidden "next" says page=None, which the forum
        // serves as page 1.
        let page2 = askbot_page(
            now,
            &[(Some("alice"), 38, votes + 7), (Some("bob"), 37, 0)],
            "?page=None",
        );
        (page1, page2)
    };
    let (page1, page2) = mount(3);
    Mock::given(method("GET"))
        .and(path("/question/7/"))
        .and(query_param("page", "2"))
        .respond_with(ResponseTemplate::new(200).set_body_string(page2))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/question/7/"))
        .respond_with(ResponseTemplate::new(200).set_body_string(page1))
        .up_to_n_times(2)
        .mount(&server)
        .await;
    let accounts = format!("{ACCOUNTS}\n{EXTRA_ACCOUNTS}").replace(
        "handles = { forum = [\"wile_e\"] }",
        "handles = { forum = [\"wile_e\"], ask = [\"alice\", \"bob\"] }",
    );
    let h = Home::with(
        &format!(
            "{CONFIG}\n[[source]]\nname = \"ask\"\nkind = \"html\"\nurl = \"{}/question/7/\"\n\
             post = \".post\"\nauthor = \".user-info a\"\ntime = \"abbr.timeago\"\nnext = \".paginator .next a\"\n\
             backfill_days = 30\nrequests_per_minute = 0\nmax_pages = 10\n",
            server.uri()
        ),
        &accounts,
    );
    let o = lull(&h, &["poll", "--json"], &[]).await;
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    let r = &reports(&o)["ask"];
    // Five answers: alice twice and bob (acme), carol and the wiki answer
    // unmatched; the hidden template is no answer.
    assert_eq!(
        (
            r["read"].as_u64(),
            r["counted"].as_u64(),
            r["unmatched"].as_u64()
        ),
        (Some(5), Some(3), Some(2)),
        "{r}\n{err}"
    );
    assert!(err.contains("loop"), "{err}");
    assert!(!err.contains("raise max_pages"), "{err}");
    // Three requests: page 1, page 2, and page=None (page 1 again), then
    // it stopped.
    assert_eq!(
        server.received_requests().await.unwrap_or_default().len(),
        3
    );
    let unmatched = stdout(&lull(&h, &["accounts", "--unmatched"], &[]).await);
    assert!(unmatched.contains("(no author shown)"), "{unmatched}");

    // The same answers with new vote counts and karma: nothing new.
    server.reset().await;
    let (page1, page2) = mount(40);
    Mock::given(method("GET"))
        .and(path("/question/7/"))
        .and(query_param("page", "2"))
        .respond_with(ResponseTemplate::new(200).set_body_string(page2))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/question/7/"))
        .respond_with(ResponseTemplate::new(200).set_body_string(page1))
        .mount(&server)
        .await;
    let o = lull(&h, &["poll", "--json"], &[]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let r = &reports(&o)["ask"];
    assert_eq!(r["read"], 5, "all read again: {r}");
    assert_eq!(r["counted"], 0, "{r}");
    assert_eq!(r["duplicates"], 3, "the matched answers, known by id: {r}");
    assert_eq!(totals(&h)[&key("acme", "ask", "post")], 3);
}

/// Real Askbot pages (askbot.org's question 2488, as Perceval's tests
/// captured them): the question and five answers are community wiki
/// (no author), the second page's hidden "next" link says `page=None`,
/// which Askbot serves as page 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn html_real_askbot_pages_with_wiki_posts_and_a_page_none_link() {
    let server = MockServer::start().await;
    let page = |n: u32| fixture(&format!("html/askbot_2488_page{n}.html"));
    Mock::given(method("GET"))
        .and(path("/en/question/2488/list-of-askbot-sites/"))
        .and(query_param("page", "2"))
        .respond_with(ResponseTemplate::new(200).set_body_string(page(2)))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/en/question/2488/list-of-askbot-sites/"))
        .respond_with(ResponseTemplate::new(200).set_body_string(page(1)))
        .mount(&server)
        .await;
    let accounts = format!("{ACCOUNTS}\n{EXTRA_ACCOUNTS}").replace(
        "handles = { forum = [\"wile_e\"] }",
        "handles = { forum = [\"wile_e\"], ask = [\"William Stein\", \"graeme\"] }",
    );
    let h = Home::with(
        &format!(
            "{CONFIG}\n[[source]]\nname = \"ask\"\nkind = \"html\"\nurl = \"{}/en/question/2488/list-of-askbot-sites/?sort=votes\"\n\
             post = \".post.js-question, .post.answer\"\nauthor = \".user-info a\"\ntime = \"abbr.timeago\"\nnext = \".paginator .next a\"\n\
             backfill_days = 9000\nrequests_per_minute = 0\n",
            server.uri()
        ),
        &accounts,
    );
    let o = lull(&h, &["poll", "--json"], &[]).await;
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    let r = &reports(&o)["ask"];
    // 11 posts on page 1 and 2 on page 2, read once each; William Stein's
    // and graeme's answers count for acme, the wiki posts and everyone
    // else are unmatched, listed for mapping.
    assert_eq!(r["read"], 13, "{r}\n{err}");
    assert_eq!(r["counted"], 2, "{r}\n{err}");
    assert_eq!(r["unmatched"], 11, "{r}\n{err}");
    assert!(err.contains("loop"), "{err}");
    assert!(!err.contains("raise max_pages"), "{err}");
    let reqs = server.received_requests().await.unwrap_or_default();
    assert_eq!(reqs.len(), 3, "page 1, page 2, page=None: {reqs:?}");
    let unmatched = stdout(&lull(&h, &["accounts", "--unmatched"], &[]).await);
    assert!(unmatched.contains("(no author shown)"), "{unmatched}");
    // Read again: nothing new (ids are the posts' element ids).
    let o = lull(&h, &["poll", "--json"], &[]).await;
    assert_eq!(reports(&o)["ask"]["counted"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_sources_store_nothing_name_the_problem_and_others_still_succeed() {
    let server = MockServer::start().await;
    let forum = Forum::default();
    for id in 1..=30 {
        forum.add(forum_post(id));
    }
    Mock::given(path_regex("^/ok/posts.json$"))
        .respond_with(forum.clone())
        .mount(&server)
        .await;
    Mock::given(path_regex("^/down/"))
        .respond_with(ResponseTemplate::new(500).set_body_string("<h1>Internal Server Error</h1>"))
        .mount(&server)
        .await;
    Mock::given(path_regex("^/slow/"))
        .respond_with(
            json_body(&json!({"latest_posts": []})).set_delay(std::time::Duration::from_secs(3)),
        )
        .mount(&server)
        .await;
    let body = String::from_utf8(forum.page(None)).unwrap();
    Mock::given(path_regex("^/cut/"))
        .respond_with(raw_json(body[..body.len() / 2].to_string()))
        .mount(&server)
        .await;
    // Rate limited once, with Retry-After; then fine.
    Mock::given(path_regex("^/busy/"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "1"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(path_regex("^/busy/posts.json$"))
        .respond_with(forum.clone())
        .with_priority(2)
        .mount(&server)
        .await;
    // Rate limited for longer than a poll waits.
    Mock::given(path_regex("^/closed/"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "3600"))
        .mount(&server)
        .await;
    let src = |name: &str, extra: &str| {
        format!(
            "[[source]]\nname = \"{name}\"\nkind = \"discourse\"\nurl = \"{}/{name}/\"\nrequests_per_minute = 0\n{}\n",
            server.uri(),
            if extra.is_empty() {
                "retries = 1"
            } else {
                extra
            }
        )
    };
    let every = "handles = { forum = [\"wile_e\"], ok = [\"wile_e\"], busy = [\"wile_e\"], down = [\"wile_e\"], slow = [\"wile_e\"], cut = [\"wile_e\"], closed = [\"wile_e\"] }";
    let h = Home::with(
        &format!(
            "{CONFIG}\n{}",
            [
                src("ok", ""),
                src("down", ""),
                src("slow", "timeout_secs = 1\nretries = 0"),
                src("cut", ""),
                src("busy", ""),
                src("closed", ""),
            ]
            .join("\n")
        ),
        &ACCOUNTS.replace("handles = { forum = [\"wile_e\"] }", every),
    );
    let o = lull(&h, &["poll", "--json"], &[]).await;
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    for want in [
        "source `down` (discourse): GET http",
        "HTTP 500",
        "Internal Server Error",
        "source `slow` (discourse)",
        "timed out",
        "source `cut` (discourse)",
        "truncated?",
        "source `closed` (discourse)",
        "asks to wait 3600 s",
        "4 source(s) failed",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    let r = reports(&o);
    assert_eq!(r.keys().collect::<Vec<_>>(), ["busy", "ok"]);
    // 429, retried after its Retry-After; then the newest page and the
    // empty one below it.
    assert_eq!(r["busy"]["requests"], 3, "{}", r["busy"]);
    let t = totals(&h);
    // Only what the good sources read is stored.
    assert!(t.keys().all(|(_, s, _)| s == "ok" || s == "busy"), "{t:?}");
    assert_eq!(t[&key("acme", "ok", "post")], 6);
    assert_eq!(t[&key("acme", "busy", "post")], 6);
    // Failing sources cover no day (the next test shows what detection
    // makes of that); the good ones cover their backfill window.
    assert!(r["ok"]["covered"].is_array() && r["busy"]["covered"].is_array());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_failing_for_days_leaves_them_uncovered_so_detection_says_unknown() {
    // A year of steady activity on "forum", imported, ending 60 days ago;
    // since then the forum's API has been failing.
    let h_cfg = |uri: &str| {
        format!(
            "{CONFIG}\n[[source]]\nname = \"forum\"\nkind = \"discourse\"\nurl = \"{uri}\"\nbackfill_days = 60\nrequests_per_minute = 0\nretries = 0\n"
        )
    };
    let server = MockServer::start().await;
    let h = Home::with(&h_cfg(&server.uri()), ACCOUNTS);
    let today = Utc::now().date_naive();
    let mut lines = String::new();
    for d in 60..430 {
        let day = today - chrono::Days::new(d);
        for k in 0..2 {
            lines.push_str(&common::event(
                "acme",
                "forum",
                &format!("{day}T1{k}:00:00Z"),
                &format!("imp-{d}-{k}"),
                "post",
            ));
            lines.push('\n');
        }
    }
    let o = h.run_stdin(&["import", "-"], &lines);
    assert!(o.status.success(), "{}", stderr(&o));
    Mock::given(path("/posts.json"))
        .respond_with(ResponseTemplate::new(502))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    let failed = lull(&h, &["poll"], &[]).await;
    assert_eq!(failed.status.code(), Some(1));
    let state = |o: &Output| -> String {
        let v: Value = serde_json::from_str(&stdout(o)).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .find(|a| a["account"] == "acme")
            .unwrap()["state"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let d = lull(&h, &["detect", "--json", "--dry-run"], &[]).await;
    assert_eq!(state(&d), "unknown", "{}", stderr(&d));
    // The forum comes back and really has no posts from acme: the poll
    // covers its 60 backfill days, and now the silence is real.
    Mock::given(path("/posts.json"))
        .respond_with(json_body(&json!({"latest_posts": []})))
        .with_priority(2)
        .mount(&server)
        .await;
    let ok = lull(&h, &["poll"], &[]).await;
    assert!(ok.status.success(), "{}", stderr(&ok));
    let d = lull(&h, &["detect", "--json", "--dry-run"], &[]).await;
    assert_eq!(state(&d), "silent", "{}", stderr(&d));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_poll_then_a_new_poll_gives_exact_counts() {
    let server = MockServer::start().await;
    let forum = Forum::default();
    for id in 1..=1500 {
        forum.add(forum_post(id));
    }
    Mock::given(path("/posts.json"))
        .respond_with(SlowForum(forum.clone()))
        .mount(&server)
        .await;
    let cfg = format!(
        "{CONFIG}\n[[source]]\nname = \"forum\"\nkind = \"discourse\"\nurl = \"{}\"\nrequests_per_minute = 0\n",
        server.uri()
    );
    let clean = Home::with(&cfg, ACCOUNTS);
    let o = lull(&clean, &["poll"], &[]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let want = clean.export();
    assert!(!want.is_empty());

    let h = Home::with(&cfg, ACCOUNTS);
    let mut rng = common::Rng(0x5eed);
    for _ in 0..6 {
        let mut child = h
            .cmd(&["poll"])
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn");
        let wait = std::time::Duration::from_millis(50 + rng.below(700));
        tokio::time::sleep(wait).await;
        let _ = child.kill(); // SIGKILL
        let _ = tokio::task::spawn_blocking(move || child.wait()).await;
        // The store opens after every kill.
        let e = h.run(&["export"]);
        assert!(e.status.success(), "{}", stderr(&e));
    }
    let o = lull(&h, &["poll"], &[]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    common::assert_same_export(&h.export(), &want);
}

/// The forum, 20 ms a page: a poll takes long enough to be killed in.
struct SlowForum(Forum);

impl wiremock::Respond for SlowForum {
    fn respond(&self, req: &wiremock::Request) -> ResponseTemplate {
        self.0
            .respond(req)
            .set_delay(std::time::Duration::from_millis(20))
    }
}

#[test]
fn check_validates_sources_with_lines_and_hints() {
    let h = home(
        r#"
[[source]]
name = "forum"
kind = "discourse"
url = "https://forum.example.com"
schedule = "*/15 * * * *"

[[source]]
name = "mail"
kind = "mailgun"
url = "not a url"
domain = "mg.example.com"
api_key_env = "LULL_TEST_SURELY_UNSET_MAILGUN"
preset = "phpbb"

[[source]]
name = "forum"
kind = "myspace"
"#,
    );
    let o = h.run(&["check"]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    for want in [
        "lull.toml:16:12: `*/15 * * * *` has 5 fields (Unix cron); lull's schedules start with seconds: write `0 */15 * * * *`",
        "lull.toml:21:7: `not a url` is not a URL",
        "lull.toml:24:10: `preset` is not a key of a `mailgun` source",
        "two sources are named `forum`",
        "unknown source kind `myspace`",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    // Valid sources, but a secret's env var is not set: named, with its line.
    let h = home(
        "[[source]]\nname = \"mail\"\nkind = \"postmark\"\nurl = \"https://api.postmarkapp.com\"\ntoken_env = \"LULL_TEST_SURELY_UNSET_PM\"\nschedule = \"0 0 6 * * Mon-Fri\"\n",
    );
    let o = h.run(&["check"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stdout(&o)
            .contains("source `mail`: environment variable `LULL_TEST_SURELY_UNSET_PM` is not set"),
        "{}",
        stdout(&o)
    );
    let o = h
        .cmd(&["check"])
        .env("LULL_TEST_SURELY_UNSET_PM", "x")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("source mail (postmark)"),
        "{}",
        stdout(&o)
    );
}
