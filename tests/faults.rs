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
use common::{Home, assert_same_export, stderr};
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

fn disk_config(t: &common::Tmpfs, min_free_mb: u64, extra: &str) -> String {
    format!(
        "[store]\npath = \"{0}/lull.db\"\nmin_free_mb = {min_free_mb}\ncache_mb = 8\n[backup]\ndir = \"{0}/backups\"\n[accounts]\nfile = \"accounts.toml\"\n[identity]\nignore_domains = [\"vendor.example\"]\n{extra}",
        t.path().display()
    )
}

/// The export of a clean store that imported `files` in order.
fn clean_export(files: &[&str]) -> String {
    let h = Home::new();
    for (i, text) in files.iter().enumerate() {
        let f = h.file(&format!("{i}.jsonl"), text);
        let out = h.run(&["import", f.to_str().unwrap()]);
        assert!(
            out.status.code().is_some_and(|c| c <= 1),
            "{}",
            stderr(&out)
        );
    }
    h.export()
}

fn no_unfinished_snapshot(dir: &std::path::Path) {
    for e in std::fs::read_dir(dir).unwrap() {
        let n = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!n.ends_with(".generating"), "left behind: {n}");
    }
}

#[test]
fn a_full_disk_refuses_writes_with_a_clear_error_and_everything_works_again_when_space_returns() {
    let t = common::Tmpfs::mount(64);
    let h = Home::with(&disk_config(&t, 8, ""), common::ACCOUNTS);
    let a = common::events(30_000, 1);
    let b = common::events(30_000, 2);
    let fa = h.file("a.jsonl", &a);
    let fb = h.file("b.jsonl", &b);
    let out = h.run(&["import", fa.to_str().unwrap()]);
    assert!(
        out.status.code().is_some_and(|c| c <= 1),
        "{}",
        stderr(&out)
    );
    let after_a = h.export();

    // Nearly full: below min_free_mb, writes are refused, reads work.
    t.leave_free(3);
    let out = h.run(&["import", fb.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("nearly full"), "{}", stderr(&out));
    let out = h.run(&["snooze", "acme", "--until", "2099-01-01", "--reason", "x"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_same_export(&h.export(), &after_a);

    // Completely full (another program took the last byte): every command
    // fails at once with a clear error, none hangs or damages the store.
    t.fill();
    for args in [
        vec!["import", fb.to_str().unwrap()],
        vec!["export"],
        vec!["accounts"],
        vec!["alerts"],
    ] {
        let started = Instant::now();
        let out = h.run(&args);
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{args:?} took {:?}",
            started.elapsed()
        );
        assert!(
            out.status.code().is_some_and(|c| c <= 2),
            "{args:?}: {:?} {}",
            out.status,
            stderr(&out)
        );
        if !out.status.success() {
            let err = stderr(&out);
            assert!(
                err.contains("full") || err.contains("No space"),
                "{args:?}: {err}"
            );
        }
    }
    // sled writes a snapshot as it closes, partly from its own background
    // threads; on a full disk that can stop half-way after lull tidied,
    // leaving an empty `snap.*.generating` that sled would later read as a
    // corrupt snapshot. The next open removes it under the store's lock
    // (files::Probe::tidy): the store must open intact, and nothing may be
    // left once a command has run with space again.

    // Space again: the store opens, the import goes in, counts are exact.
    t.free();
    assert_same_export(&h.export(), &after_a);
    no_unfinished_snapshot(&t.path().join("lull.db"));
    let out = h.run(&["import", fb.to_str().unwrap()]);
    assert!(
        out.status.code().is_some_and(|c| c <= 1),
        "{}",
        stderr(&out)
    );
    assert_same_export(&h.export(), &clean_export(&[&a, &b]));
}

/// A Discourse forum of `n` posts by `user_b0` in the last days.
fn forum(n: u64) -> common::shapes::Forum {
    let forum = common::shapes::Forum::default();
    let now = chrono::Utc::now();
    for id in 1..=n {
        forum.add(common::shapes::discourse_post(
            id,
            "user_b0",
            &(now - chrono::Duration::seconds(((n - id) * 60) as i64)).to_rfc3339(),
            1,
            false,
        ));
    }
    forum
}

fn add_posts(forum: &common::shapes::Forum, from: u64, n: u64) {
    let now = chrono::Utc::now().to_rfc3339();
    for id in from..from + n {
        forum.add(common::shapes::discourse_post(
            id, "user_b0", &now, 1, false,
        ));
    }
}

const B0: &str = "[[account]]\nid = \"b0\"\nname = \"B0\"\ncsm = \"jane@vendor.example\"\nhandles = { forum = [\"user_b0\"], good = [\"user_b0\"] }\n";

fn polled_source(url: &str) -> String {
    format!(
        "[[source]]\nname = \"forum\"\nkind = \"discourse\"\nurl = \"{url}\"\nschedule = \"*/2 * * * * *\"\nrequests_per_minute = 0\n"
    )
}

/// A local Discourse with `n` posts by `user_b0`, and the forum behind it.
async fn forum_server(n: u64) -> (wiremock::MockServer, common::shapes::Forum) {
    use wiremock::matchers::{method, path};
    let server = wiremock::MockServer::start().await;
    let forum = forum(n);
    wiremock::Mock::given(method("GET"))
        .and(path("/posts.json"))
        .respond_with(forum.clone())
        .mount(&server)
        .await;
    (server, forum)
}

/// `lull run` with its store on a fresh 64 MiB tmpfs, polling the forum at
/// `uri` every 2 s, once it has stored the forum's first 300 posts.
fn service_on_tmpfs(uri: &str) -> (common::Tmpfs, Home, Running, u16) {
    let t = common::Tmpfs::mount(64);
    let port = free_port();
    let config = disk_config(
        &t,
        8,
        &(service_config(port, "0 0 6 1 1 *", 5) + &polled_source(uri)),
    );
    let h = Home::with(&config, B0);
    let r = Running::start(&h, port, &[]);
    r.wait_for_metric(
        "lull_activities_stored_total{source=\"forum\"}",
        |v| v >= 300.0,
        Duration::from_secs(20),
    );
    (t, h, r, port)
}

fn stored(r: &Running) -> f64 {
    r.metric("lull_activities_stored_total{source=\"forum\"}")
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_under_the_service_makes_it_not_ready_and_it_recovers_without_a_restart() {
    let (server, forum) = forum_server(300).await;
    let uri = server.uri();
    tokio::task::spawn_blocking(move || {
        let (t, h, mut r, port) = service_on_tmpfs(&uri);
        assert_eq!(
            common::service::try_get(port, "/readyz").unwrap().0,
            200,
            "{}",
            r.log()
        );

        t.leave_free(3);
        add_posts(&forum, 301, 100);
        r.wait_for_log("nearly full", Duration::from_secs(20));
        // Not ready (it cannot take data), but alive: a restart would not help.
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            let (code, body) = common::service::try_get(port, "/readyz").unwrap();
            if code == 503 && body.contains("nearly full") {
                break;
            }
            assert!(Instant::now() < until, "readyz {code}: {body}");
            std::thread::sleep(Duration::from_millis(200));
        }
        assert_eq!(common::service::try_get(port, "/healthz").unwrap().0, 200);
        assert_eq!(stored(&r), 300.0);

        t.free();
        r.wait_for_metric(
            "lull_activities_stored_total{source=\"forum\"}",
            |v| v >= 400.0,
            Duration::from_secs(20),
        );
        let until = Instant::now() + Duration::from_secs(10);
        while common::service::try_get(port, "/readyz").unwrap().0 != 200 {
            assert!(Instant::now() < until, "{}", r.log());
            std::thread::sleep(Duration::from_millis(200));
        }
        r.signal(libc::SIGTERM);
        assert!(
            r.wait_exit(Duration::from_secs(10)).0.success(),
            "{}",
            r.log()
        );
        let total: u64 = h
            .export()
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["count"]
                    .as_u64()
                    .unwrap()
            })
            .sum();
        assert_eq!(total, 400);
        no_unfinished_snapshot(&t.path().join("lull.db"));
    })
    .await
    .unwrap();
}

#[test]
fn the_store_folder_deleted_under_the_service_stops_it_with_exit_3_and_no_new_store_appears() {
    let port = free_port();
    let config = format!(
        "[store]\npath = \"data/lull.db\"\n[accounts]\nfile = \"accounts.toml\"\n{}",
        service_config(port, "0 0 6 1 1 *", 5)
    );
    let h = Home::with(&config, B0);
    let mut r = Running::start(&h, port, &[]);
    std::fs::remove_dir_all(h.path().join("data/lull.db")).unwrap();
    let (status, took) = r.wait_exit(Duration::from_secs(15));
    assert_eq!(status.code(), Some(3), "{}", r.log());
    assert!(took < Duration::from_secs(8), "noticed after {took:?}");
    assert!(r.log().contains("deleted or replaced"), "{}", r.log());
    // A reading command does not create an empty store in its place.
    let out = h.run(&["export"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("there is no store"),
        "{}",
        stderr(&out)
    );
    assert!(!h.path().join("data/lull.db").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_that_fails_writes_breaks_the_store_the_service_exits_3_and_a_restart_counts_exactly()
 {
    let (server, forum) = forum_server(300).await;
    let uri = server.uri();
    tokio::task::spawn_blocking(move || {
        let (t, h, mut r, port) = service_on_tmpfs(&uri);
        // Writes start failing under sled (here: a file-size limit set on
        // the running process, so that the data file cannot grow — EFBIG,
        // as real I/O errors come): the store is broken, the service stops
        // so a supervisor restarts it — no hang, no pretending.
        let size = std::fs::metadata(t.path().join("lull.db/db"))
            .unwrap()
            .len();
        let ok = std::process::Command::new("prlimit")
            .arg(format!("--pid={}", r.pid()))
            .arg(format!("--fsize={size}:{size}"))
            .status()
            .unwrap();
        assert!(ok.success());
        add_posts(&forum, 301, 20_000);
        let (status, took) = r.wait_exit(Duration::from_secs(60));
        eprintln!("exit {status:?} after {took:?}");
        assert_eq!(status.code(), Some(3), "{}", r.log());
        assert!(r.log().contains("can no longer commit"), "{}", r.log());

        let mut r = Running::start(&h, port, &[]);
        r.wait_for_metric(
            "lull_activities_stored_total{source=\"forum\"}",
            |v| v > 0.0,
            Duration::from_secs(20),
        );
        r.signal(libc::SIGTERM);
        assert!(
            r.wait_exit(Duration::from_secs(10)).0.success(),
            "{}",
            r.log()
        );
        let total: u64 = h
            .export()
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["count"]
                    .as_u64()
                    .unwrap()
            })
            .sum();
        assert_eq!(total, 20_300);
    })
    .await
    .unwrap();
}

fn peak_rss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_sources_fail_their_own_polls_with_a_clear_error_and_bounded_memory_while_the_rest_goes_on()
 {
    use wiremock::matchers::{method, path, path_regex};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let server = MockServer::start().await;
    let elsewhere = MockServer::start().await;
    let forum = forum(100);
    Mock::given(method("GET"))
        .and(path("/good/posts.json"))
        .respond_with(forum.clone())
        .mount(&server)
        .await;
    // A redirect to another origin, for a keyed forum and for Postmark.
    for p in [
        "/moved/posts.json",
        "/pm/messages/outbound",
        "/pm/messages/outbound/opens",
    ] {
        Mock::given(method("GET"))
            .and(path(p))
            .respond_with(
                ResponseTemplate::new(302)
                    .insert_header("location", format!("{}/steal{p}", elsewhere.uri())),
            )
            .mount(&server)
            .await;
    }
    Mock::given(path_regex(".*"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"latest_posts": []})))
        .mount(&elsewhere)
        .await;
    Mock::given(method("GET"))
        .and(path("/bomb/posts.json"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-encoding", "gzip")
                .insert_header("content-type", "application/json")
                .set_body_bytes(common::shapes::gzip_bomb(512 << 20)),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/endless/posts.json"))
        .respond_with(common::shapes::Endless(Duration::ZERO))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/deep/"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_string("<html><body>".to_string() + &"<div>".repeat(200_000)),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/huge/"))
        .respond_with(ResponseTemplate::new(200).set_body_string(
            "<html><body>".to_string() + &"<p>lorem ipsum dolor sit amet</p>\n".repeat(1_600_000),
        ))
        .mount(&server)
        .await;
    let uri = server.uri();
    let sources: String = [
        ("good", "discourse", "good/", ""),
        ("moved", "discourse", "moved/", "api_key_env = \"LULL_TEST_KEY\"\napi_username = \"system\"\n"),
        ("pm", "postmark", "pm/", "token_env = \"LULL_TEST_PM\"\n"),
        ("bomb", "discourse", "bomb/", ""),
        ("endless", "discourse", "endless/", ""),
        ("deep", "html", "deep/", "preset = \"phpbb\"\n"),
        ("huge", "html", "huge/", "preset = \"phpbb\"\n"),
    ]
    .iter()
    .map(|(name, kind, p, extra)| {
        format!("[[source]]\nname = \"{name}\"\nkind = \"{kind}\"\nurl = \"{uri}/{p}\"\nschedule = \"0 0 * * * *\"\nrequests_per_minute = 0\n{extra}")
    })
    .collect();
    let elsewhere_requests = {
        let port = free_port();
        let config = format!(
            "[store]\npath = \"data/lull.db\"\n[accounts]\nfile = \"accounts.toml\"\n[limits]\nmax_requests = 400\n{}{sources}",
            service_config(port, "0 0 6 1 1 *", 5)
        );
        let h = Home::with(&config, B0);
        tokio::task::spawn_blocking(move || {
            let env = [
                ("LULL_TEST_KEY", "sekrit-discourse-key"),
                ("LULL_TEST_PM", "sekrit-postmark-token"),
            ];
            let mut r = Running::start(&h, port, &env);
            // /healthz answers throughout, fast.
            let started = Instant::now();
            let mut slowest = Duration::ZERO;
            let want = [
                ("moved", "redirected to another site"),
                ("pm", "redirected to another site"),
                ("bomb", "larger than 32 MiB"),
                ("endless", "requests without reaching its end"),
                ("deep", "more than 512 deep"),
                ("huge", "larger than 32 MiB"),
            ];
            loop {
                let t = Instant::now();
                let (code, _) =
                    common::service::try_get(port, "/healthz").expect("healthz answers");
                slowest = slowest.max(t.elapsed());
                assert_eq!(code, 200, "{}", r.log());
                let log = r.log();
                let done = want.iter().all(|(s, why)| {
                    log.lines().any(|l| {
                        l.contains("poll failed")
                            && l.contains(&format!("source={s} "))
                            && l.contains(why)
                    })
                });
                if done && stored_in(&r, "good") >= 100.0 {
                    break;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(90),
                    "not every hostile poll ended:\n{log}"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
            let rss = peak_rss_kib(r.pid());
            eprintln!(
                "all hostile polls ended after {:?}; slowest /healthz {slowest:?}; peak RSS {} MiB",
                started.elapsed(),
                rss / 1024
            );
            assert!(
                slowest < Duration::from_secs(1),
                "/healthz took {slowest:?}"
            );
            assert!(rss < 400 * 1024, "peak RSS {} MiB", rss / 1024);
            let log = r.log();
            for secret in ["sekrit-discourse-key", "sekrit-postmark-token"] {
                assert!(!log.contains(secret), "{secret} in the log");
            }
            let t = Instant::now();
            r.signal(libc::SIGTERM);
            let (status, _) = r.wait_exit(Duration::from_secs(10));
            assert!(status.success(), "{}", r.log());
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "SIGTERM → exit took {:?}",
                t.elapsed()
            );
        })
        .await
        .unwrap();
        elsewhere.received_requests().await.unwrap_or_default()
    };
    // Nothing, and certainly no credential, went to the other origin.
    assert!(elsewhere_requests.is_empty(), "{elsewhere_requests:?}");
}

fn stored_in(r: &Running, source: &str) -> f64 {
    r.metric(&format!(
        "lull_activities_stored_total{{source=\"{source}\"}}"
    ))
    .unwrap_or(0.0)
}

#[test]
fn implausible_dates_are_refused_by_line_and_cannot_hide_an_outage() {
    let today = chrono::Utc::now().date_naive();
    let config = format!(
        "[store]\npath = \"data/lull.db\"\n[accounts]\nfile = \"accounts.toml\"\n\
         [[source]]\nname = \"forum\"\nkind = \"discourse\"\nurl = \"http://127.0.0.1:{}/\"\n",
        common::smtp::closed_port()
    );
    let h = Home::with(&config, B0);
    let line = |at: &str, id: &str| {
        format!(r#"{{"account":"b0","source":"forum","at":"{at}","id":"{id}","kind":"post"}}"#)
    };
    let mut history: Vec<String> = (30..400)
        .map(|d| {
            line(
                &format!("{}T10:00:00Z", today - chrono::Days::new(d)),
                &format!("h{d}"),
            )
        })
        .collect();
    history.push(line("0000-01-01T00:00:00Z", "year0"));
    history.push(line("9999-12-31T00:00:00Z", "year9999"));
    history.push(line("2099-06-01T00:00:00Z", "year2099"));
    let f = h.file("history.jsonl", &(history.join("\n") + "\n"));
    let out = h.run(&["import", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("history.jsonl:371: `at`") || err.contains("history.jsonl:371:"),
        "{err}"
    );
    assert!(
        err.contains(":371:") && err.contains("before 1990-01-01"),
        "{err}"
    );
    assert!(
        err.contains(":372:") && err.contains("in the future"),
        "{err}"
    );
    assert!(
        err.contains(":373:") && err.contains("in the future"),
        "{err}"
    );
    assert!(err.contains("370 counted"), "{err}");

    // One more line, dated tomorrow (plausible), in a file of its own: it
    // is stored, but cannot claim that today is covered.
    let tomorrow = today + chrono::Days::new(1);
    let f = h.file(
        "tomorrow.jsonl",
        &(line(&format!("{tomorrow}T10:00:00Z"), "t1") + "\n"),
    );
    let out = h.run(&["import", f.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    // The source is polled and has had no data for 30 days: stale, its
    // channels unknown, whatever its data claims.
    let out = h.run(&["detect", "--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let last = today - chrono::Days::new(30);
    assert!(
        stderr(&out).contains(&format!("source forum has no data since {last}")),
        "{}",
        stderr(&out)
    );
}

#[test]
fn small_things_a_bom_a_huge_count_a_url_password_and_credentials_in_clear() {
    let h = Home::new();
    // A byte-order mark on line 1 (Windows editors) is not "bad JSON".
    let text = "\u{feff}".to_string()
        + &common::event("acme", "forum", "2026-03-02T10:00:00Z", "1", "post")
        + "\n"
        + r#"{"account":"acme","source":"forum","kind":"post","day":"2026-03-03","count":18446744073709551615}"#
        + "\n";
    let f = h.file("bom.jsonl", &text);
    let out = h.run(&["import", f.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    // A count beyond i64 is exported, and imported back: a backup that
    // restores.
    let export = h.export();
    assert!(export.contains("18446744073709551615"), "{export}");
    let other = Home::new();
    let f = other.file("export.jsonl", &export);
    let out = other.run(&["import", f.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_same_export(&other.export(), &export);

    // `lull check` never prints a password written into a URL, and warns
    // of credentials that would travel in clear.
    let config = format!(
        "{}\n[[source]]\nname = \"forum\"\nkind = \"discourse\"\nurl = \"http://admin:hunter2@forum.example.com/\"\napi_key_env = \"LULL_TEST_K\"\napi_username = \"system\"\n\
         [smtp]\nhost = \"smtp.example.com\"\ntls = \"none\"\nusername = \"lull\"\npassword_env = \"LULL_TEST_P\"\n",
        common::CONFIG
    );
    let h = Home::with(&config, common::ACCOUNTS);
    let out = h
        .cmd(&["check"])
        .env("LULL_TEST_K", "k")
        .env("LULL_TEST_P", "p")
        .output()
        .unwrap();
    let text = common::stdout(&out) + &stderr(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        !text.contains("hunter2") && !text.contains("admin:"),
        "{text}"
    );
    assert!(
        text.contains("warning: source `forum` sends its credentials over plain http://"),
        "{text}"
    );
    assert!(
        text.contains("warning: source `forum`: its url carries a user name or password"),
        "{text}"
    );
    assert!(
        text.contains("warning: [smtp] logs in to smtp.example.com with tls = \"none\""),
        "{text}"
    );
}

#[test]
fn the_service_backs_up_on_schedule_keeps_the_newest_and_each_backup_restores() {
    let port = free_port();
    let config = format!(
        "[store]\npath = \"data/lull.db\"\n[accounts]\nfile = \"accounts.toml\"\n[backup]\nschedule = \"*/2 * * * * *\"\nkeep = 2\n{}",
        service_config(port, "0 0 6 1 1 *", 5)
    );
    let h = Home::with(&config, B0);
    let f = h.file(
        "e.jsonl",
        &(common::event("b0", "forum", "2026-03-02T10:00:00Z", "1", "post") + "\n"),
    );
    assert!(h.run(&["import", f.to_str().unwrap()]).status.success());
    let mut r = Running::start(&h, port, &[]);
    r.wait_for_metric(
        "lull_backups_total{result=\"ok\"}",
        |v| v >= 4.0,
        Duration::from_secs(30),
    );
    r.signal(libc::SIGTERM);
    assert!(
        r.wait_exit(Duration::from_secs(10)).0.success(),
        "{}",
        r.log()
    );
    let dir = h.path().join("data/backups");
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 2, "{files:?}");
    for f in &files {
        let out = h.run(&["restore", "--verify", f.to_str().unwrap()]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("1 events counted"),
            "{}",
            stderr(&out)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn html_where_json_was_expected_says_so() {
    use wiremock::matchers::path;
    let server = wiremock::MockServer::start().await;
    wiremock::Mock::given(path("/posts.json"))
        .respond_with(
            wiremock::ResponseTemplate::new(200)
                .insert_header("content-type", "text/html; charset=utf-8")
                .set_body_string("<!doctype html><html><body>Please log in</body></html>"),
        )
        .mount(&server)
        .await;
    let config = format!(
        "[store]\npath = \"data/lull.db\"\n[accounts]\nfile = \"accounts.toml\"\n{}",
        polled_source(&server.uri())
    );
    let out = tokio::task::spawn_blocking(move || {
        let h = Home::with(&config, B0);
        h.run(&["poll"])
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("answered with an HTML page, not JSON"),
        "{err}"
    );
    // Each cause once, not repeated by the error's own text.
    let line = err
        .lines()
        .find(|l| l.starts_with("lull:"))
        .unwrap_or_default();
    assert_eq!(line.matches("HTML page").count(), 1, "{line}");
}
