//! `lull run` end to end: the real binary as a service, against a local
//! forum server, a real SMTP server process and real signals.

#![recursion_limit = "256"]

mod common;

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use common::service::{Running, free_port, service_config};
use common::shapes::{self, Forum};
use common::smtp::{Smtp, closed_port};
use common::{Home, Rng, assert_same_export, stderr, stdout};
use lull::types::Day;
use serde_json::Value;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

fn today() -> Day {
    Day::of(Utc::now(), chrono_tz::Tz::UTC)
}

const BASE: &str = "[store]\npath = \"data/lull.db\"\n[accounts]\nfile = \"accounts.toml\"\n";

/// Accounts `a0..aN` (CSM by parity) plus the forum handles `user_aK`.
fn accounts(ids: &[&str]) -> String {
    ids.iter()
        .enumerate()
        .map(|(i, id)| {
            let csm = if i % 2 == 0 {
                "jane@vendor.example"
            } else {
                "sam@vendor.example"
            };
            format!(
                "[[account]]\nid = \"{id}\"\nname = \"{id} Corp\"\ncsm = \"{csm}\"\nhandles = {{ forum = [\"user_{id}\"] }}\n\n"
            )
        })
        .collect()
}

/// Three forum posts a day per account for 300 days up to `last` days
/// from today (0 = today); the `quiet` ones stop 60 days ago.
fn history(busy: &[&str], quiet: &[&str], last: i32) -> String {
    let mut lines = Vec::new();
    let t = today();
    for (id, is_quiet) in busy
        .iter()
        .map(|i| (i, false))
        .chain(quiet.iter().map(|i| (i, true)))
    {
        for d in -480..=-last {
            if is_quiet && d > -60 {
                continue;
            }
            lines.push(format!(
                r#"{{"account": "{id}", "source": "forum", "at": "{}T12:00:00Z", "id": "{id}{d}", "kind": "post", "count": 3}}"#,
                t.plus(d)
            ));
        }
    }
    lines.join("\n") + "\n"
}

const BUSY: [&str; 6] = ["b0", "b1", "b2", "b3", "b4", "b5"];

fn import(h: &Home, text: &str) {
    let f = h.file("events.jsonl", text);
    let out = h.run(&["import", f.to_str().expect("utf-8")]);
    assert!(out.status.success(), "import: {}", stderr(&out));
}

fn sigterm_and_exit_0(r: &mut Running, limit: Duration) -> Duration {
    r.signal(libc::SIGTERM);
    let (status, took) = r.wait_exit(limit + Duration::from_secs(5));
    assert!(
        status.success(),
        "lull run exits 0 after SIGTERM, got {status:?}:\n{}",
        r.log()
    );
    assert!(took <= limit, "took {took:?} to stop (limit {limit:?})");
    assert!(r.log().contains("stopped cleanly"), "{}", r.log());
    took
}

/// A forum whose server can be switched off (500s) and on.
#[derive(Clone)]
struct Switchable {
    forum: Forum,
    up: Arc<AtomicBool>,
}

impl Respond for Switchable {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        if self.up.load(Ordering::SeqCst) {
            self.forum.respond(req)
        } else {
            ResponseTemplate::new(500).set_body_string("<h1>Internal Server Error</h1>")
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_outage_of_days_is_not_silence_readyz_and_metrics_report_it() {
    let server = MockServer::start().await;
    let sw = Switchable {
        forum: Forum::default(),
        up: Arc::new(AtomicBool::new(false)),
    };
    Mock::given(method("GET"))
        .and(path("/posts.json"))
        .respond_with(sw.clone())
        .mount(&server)
        .await;
    let smtp = Smtp::start(&[]);
    let port = free_port();
    let ids: Vec<&str> = BUSY.iter().copied().chain(["acme"]).collect();
    let config = format!(
        "{BASE}[smtp]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n[alerts]\nops_email = \"ops@vendor.example\"\n{}\
         [[source]]\nname = \"forum\"\nkind = \"discourse\"\nurl = \"{}\"\nschedule = \"*/1 * * * * *\"\nrequests_per_minute = 0\n",
        smtp.port,
        service_config(port, "*/2 * * * * *", 10),
        server.uri()
    );
    let h = Home::with(&config, &accounts(&ids));
    // The forum's data ends five days ago: since then its server fails.
    // `acme` went quiet 60 days ago, which on its own would be an alert.
    import(&h, &history(&BUSY, &["acme"], 5));

    tokio::task::spawn_blocking(move || {
        let mut running = Running::start(&h, port, &[]);
        running.wait_for_log("detection done", Duration::from_secs(30));
        let (status, body) = running.get("/readyz");
        assert_eq!(status, 503, "{body}");
        let ready: Value = serde_json::from_str(&body).expect("readyz is JSON");
        let reason = ready["reasons"][0].as_str().unwrap_or_default();
        assert!(
            reason.contains(&format!(
                "source forum has no data since {}",
                today().plus(-5)
            )),
            "{body}"
        );
        assert!(reason.contains("last error"), "{body}");
        assert_eq!(
            running.metric("lull_source_stale{source=\"forum\"}"),
            Some(1.0)
        );
        assert!(running.metric("lull_poll_failures_total{source=\"forum\"}") >= Some(1.0));
        assert_eq!(running.get("/healthz").0, 200);

        // Ops hear of the source once; no CSM hears of a silence.
        let until = Instant::now() + Duration::from_secs(20);
        while smtp.mails().is_empty() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(200));
        }
        std::thread::sleep(Duration::from_secs(3));
        let mails = smtp.mails();
        assert_eq!(mails.len(), 1, "{mails:#?}");
        assert_eq!(mails[0]["to"], "ops@vendor.example");
        assert_eq!(mails[0]["subject"], "[lull] source forum has no new data");
        assert_eq!(running.metric("lull_accounts{state=\"silent\"}"), Some(0.0));
        assert!(running.metric("lull_accounts{state=\"unknown\"}") >= Some(7.0));

        // The forum comes back: the next poll covers today, and lull is ready.
        for id in 1..=3 {
            sw.forum.add(shapes::discourse_post(
                id,
                "user_b0",
                &Utc::now().to_rfc3339(),
                1,
                false,
            ));
        }
        sw.up.store(true, Ordering::SeqCst);
        running.wait_for_metric(
            "lull_source_stale{source=\"forum\"}",
            |v| v == 0.0,
            Duration::from_secs(15),
        );
        assert_eq!(running.get("/readyz").0, 200);
        assert!(
            running.metric("lull_last_successful_poll_timestamp_seconds{source=\"forum\"}")
                > Some(1.7e9)
        );
        assert_eq!(
            running.metric("lull_activities_stored_total{source=\"forum\"}"),
            Some(3.0)
        );
        sigterm_and_exit_0(&mut running, Duration::from_secs(10));
        assert_eq!(smtp.mails().len(), 1);
    })
    .await
    .unwrap();
}

#[test]
fn an_smtp_outage_during_the_run_delivers_each_alert_exactly_once_after_it_returns() {
    let smtp_port = closed_port();
    let port = free_port();
    let config = format!(
        "{BASE}[smtp]\nhost = \"127.0.0.1\"\nport = {smtp_port}\ntls = \"none\"\ntimeout_secs = 5\n{}",
        service_config(port, "*/2 * * * * *", 10)
    );
    let ids: Vec<&str> = BUSY.iter().copied().chain(["acme", "globex"]).collect();
    let h = Home::with(&config, &accounts(&ids));
    import(&h, &history(&BUSY, &["acme", "globex"], 0));

    let mut r = Running::start(&h, port, &[]);
    r.wait_for_log("detection done", Duration::from_secs(30));
    r.wait_for_log(
        "alert e-mail not sent; stays queued",
        Duration::from_secs(15),
    );
    assert_eq!(r.metric("lull_outbox_emails"), Some(2.0));
    assert_eq!(r.metric("lull_alert_emails_sent_total"), Some(0.0));

    // The relay comes back on the same port.
    let smtp = Smtp::start_on(smtp_port, &[]);
    r.wait_for_metric(
        "lull_alert_emails_sent_total",
        |v| v == 2.0,
        Duration::from_secs(30),
    );
    // Detection keeps ticking (every 2 s); nothing more is sent.
    std::thread::sleep(Duration::from_secs(5));
    sigterm_and_exit_0(&mut r, Duration::from_secs(10));
    let mails = smtp.mails();
    assert_eq!(mails.len(), 2, "{mails:#?}");
    let mut ids: Vec<&str> = mails
        .iter()
        .map(|m| m["message_id"].as_str().unwrap_or_default())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 2, "an alert arrived twice: {mails:#?}");
    let mut to: Vec<&str> = mails
        .iter()
        .map(|m| m["to"].as_str().unwrap_or_default())
        .collect();
    to.sort();
    assert_eq!(to, ["jane@vendor.example", "sam@vendor.example"]);

    // And after a restart, still nothing more.
    let mut again = Running::start(&h, port, &[]);
    std::thread::sleep(Duration::from_secs(3));
    sigterm_and_exit_0(&mut again, Duration::from_secs(10));
    assert_eq!(smtp.mails().len(), 2);
    let out = h.run(&["alerts", "--json"]);
    let records: Value = serde_json::from_str(&stdout(&out)).expect("alerts --json");
    assert!(
        records
            .as_array()
            .expect("array")
            .iter()
            .all(|r| r["status"] == "sent"),
        "{records:#}"
    );
}

/// A forum of `n` posts by `users`, in the last week.
fn busy_forum(n: u64, users: &[&str]) -> Forum {
    let forum = Forum::default();
    let now = Utc::now();
    for id in 1..=n {
        let at = now - chrono::Duration::seconds(((n - id) * 200) as i64);
        let user = users[(id % users.len() as u64) as usize];
        forum.add(shapes::discourse_post(
            id,
            user,
            &at.to_rfc3339(),
            1 + id / 40,
            false,
        ));
    }
    forum
}

fn forum_source(url: &str) -> String {
    format!(
        "[[source]]\nname = \"forum\"\nkind = \"discourse\"\nurl = \"{url}\"\nschedule = \"0 0 * * * *\"\nrequests_per_minute = 0\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_poll_exits_0_within_the_limit_and_commits_nothing() {
    let server = MockServer::start().await;
    let forum = busy_forum(400, &["user_b0", "user_b1", "user_b2"]);
    // Eight pages, each answered after 1.5 s: the poll needs 12 s.
    Mock::given(method("GET"))
        .and(path("/posts.json"))
        .respond_with(Slow(forum.clone(), Duration::from_millis(1500)))
        .mount(&server)
        .await;
    let port = free_port();
    let config = format!(
        "{BASE}{}{}",
        service_config(port, "0 0 6 * * *", 4),
        forum_source(&server.uri())
    );
    let h = Home::with(&config, &accounts(&BUSY));
    let forum2 = forum.clone();
    tokio::task::spawn_blocking(move || {
        let mut r = Running::start(&h, port, &[]);
        while forum2.requests() < 2 {
            std::thread::sleep(Duration::from_millis(20));
        }
        let took = sigterm_and_exit_0(&mut r, Duration::from_secs(4));
        eprintln!("SIGTERM during a poll → exit 0 in {took:?}");
        assert!(
            r.log().contains("poll abandoned at shutdown"),
            "{}",
            r.log()
        );
        // Nothing of the poll was stored: no activity, no coverage, no cursor.
        assert_eq!(h.export(), "");
        let out = h.run(&["poll", "--json"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let rep: Value = serde_json::from_str(&stdout(&out)).expect("poll --json");
        // The whole forum is read from the start again, counted once.
        assert_eq!(rep[0]["counted"], 400, "{rep}");
    })
    .await
    .unwrap();
}

/// Answers like the forum, after a delay.
#[derive(Clone)]
struct Slow(Forum, Duration);

impl Respond for Slow {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        self.0.respond(req).set_delay(self.1)
    }
}

/// Export lines as (bucket → count).
fn buckets(export: &str) -> BTreeMap<String, u64> {
    export
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("export line");
            let count = v["count"].as_u64().unwrap_or(0);
            let mut key = v.clone();
            key.as_object_mut().expect("object").remove("count");
            (key.to_string(), count)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_50_random_moments_of_polling_and_import_counts_equal_one_clean_run() {
    let server = MockServer::start().await;
    let users = ["user_b0", "user_b1", "user_b2", "user_b3", "stranger"];
    // The whole forum (what a clean run reads at the end) and the live one
    // the killed service polls, which grows by 800 posts (16 pages) before
    // each start, so every start has a real poll to be killed in.
    const FIRST: u64 = 3000;
    const PER_ROUND: u64 = 800;
    let all = busy_forum(FIRST + 25 * PER_ROUND, &users);
    let live = Forum::default();
    let posts: Vec<Value> = all.posts.lock().unwrap().clone();
    for p in &posts[..FIRST as usize] {
        live.add(p.clone());
    }
    for (prefix, forum) in [("/all", &all), ("/live", &live)] {
        Mock::given(method("GET"))
            .and(path(format!("{prefix}/posts.json")))
            .respond_with(Slow(forum.clone(), Duration::from_millis(8)))
            .mount(&server)
            .await;
    }
    let uri = server.uri();
    tokio::task::spawn_blocking(move || {
        let events = common::events(60_000, 7);
        let config = |port: u16, forum: &str| {
            format!(
                "{BASE}{}{}",
                service_config(port, "0 0 6 * * *", 10),
                forum_source(&format!("{uri}{forum}"))
            )
        };
        let accts = format!("{}{}", accounts(&BUSY), common::ACCOUNTS);

        // One clean run of each.
        let clean = Home::with(&config(free_port(), "/all"), &accts);
        let f = clean.file("events.jsonl", &events);
        let out = clean.run(&["poll"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let started = Instant::now();
        let out = clean.run(&["import", "--batch-size", "2000", f.to_str().unwrap()]);
        let import_time = started.elapsed();
        assert!(out.status.success(), "{}", stderr(&out));
        let want = clean.export();
        let want_buckets = buckets(&want);

        let port = free_port();
        let crashed = Home::with(&config(port, "/live"), &accts);
        let f = crashed.file("events.jsonl", &events);
        // How long a start and a poll of one round's new posts take.
        let started = Instant::now();
        let mut r = Running::start(&crashed, port, &[]);
        r.wait_for_log("poll done", Duration::from_secs(60));
        let first_poll = started.elapsed();
        sigterm_and_exit_0(&mut r, Duration::from_secs(10));
        let mut next = FIRST as usize;
        for p in &posts[next..next + PER_ROUND as usize] {
            live.add(p.clone());
        }
        next += PER_ROUND as usize;
        let started = Instant::now();
        let mut r = Running::start(&crashed, port, &[]);
        r.wait_for_log("poll done", Duration::from_secs(60));
        let round_poll = started.elapsed();
        sigterm_and_exit_0(&mut r, Duration::from_secs(10));
        eprintln!(
            "clean import {import_time:?}; service start + first poll {first_poll:?}, start + poll of {PER_ROUND} posts {round_poll:?}"
        );
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        eprintln!("kill seed {seed}");
        let mut rng = Rng(seed | 1);
        let (mut killed_poll, mut killed_import) = (0, 0);
        for round in 0..50 {
            if round % 2 == 0 {
                // `lull run` polls at start; kill it at a random moment of
                // the start-up and the poll (a poll that finished and
                // committed is fine too).
                let end = (next + PER_ROUND as usize).min(posts.len());
                for p in &posts[next..end] {
                    live.add(p.clone());
                }
                next = end;
                let mut r = Running::spawn(&crashed, port, &[]);
                let at = round_poll.as_millis() as u64 * (5 + rng.below(100)) / 100;
                std::thread::sleep(Duration::from_millis(at));
                let _ = r.child.kill();
                let status = r.child.wait().expect("wait");
                assert_eq!(status.signal(), Some(9), "round {round}: {}", r.log());
                let log = r.log();
                if log.contains("lull is running") && !log.contains("poll done") {
                    killed_poll += 1;
                }
            } else {
                let mut child = crashed
                    .cmd(&["import", "--batch-size", "2000", f.to_str().unwrap()])
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .expect("spawn import");
                let at = import_time.as_millis() as u64 * rng.below(100) / 100;
                std::thread::sleep(Duration::from_millis(at));
                let _ = child.kill();
                let status = child.wait().expect("wait");
                if status.signal() == Some(9) {
                    killed_import += 1;
                }
            }
            // The store opens after every kill, and nothing is over-counted.
            for (key, count) in buckets(&crashed.export()) {
                let full = want_buckets.get(&key).copied().unwrap_or(0);
                assert!(
                    count <= full,
                    "round {round}: {key} = {count} > clean {full}"
                );
            }
        }
        eprintln!("killed: {killed_poll} services mid-poll, {killed_import} imports mid-way");
        assert!(
            killed_poll >= 8,
            "only {killed_poll} services were killed mid-poll"
        );
        assert!(
            killed_import >= 10,
            "only {killed_import} imports were killed mid-way"
        );

        // Finish both cleanly: exactly the clean counts.
        for p in &posts[next..] {
            live.add(p.clone());
        }
        let out = crashed.run(&["poll"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let out = crashed.run(&["import", f.to_str().unwrap()]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_same_export(&crashed.export(), &want);
    })
    .await
    .unwrap();
}

#[test]
fn sighup_reloads_the_accounts_and_a_bad_file_keeps_the_old_one() {
    let port = free_port();
    let config = format!("{BASE}{}", service_config(port, "0 0 6 * * *", 10));
    let h = Home::with(&config, &accounts(&["a0", "a1"]));
    let mut r = Running::start(&h, port, &[]);
    r.wait_for_log("lull is running", Duration::from_secs(10));

    h.file("accounts.toml", &accounts(&["a0", "a1", "a2"]));
    r.signal(libc::SIGHUP);
    r.wait_for_metric(
        "lull_reloads_total{result=\"ok\"}",
        |v| v == 1.0,
        Duration::from_secs(10),
    );
    assert!(r.log().contains("accounts=3"), "{}", r.log());

    // A broken accounts file: refused with its line, the old one kept.
    h.file(
        "accounts.toml",
        "[[account]]\nid = \"x\"\nname = \"X\"\ncsm = \"not an address\"\n",
    );
    r.signal(libc::SIGHUP);
    r.wait_for_metric(
        "lull_reloads_total{result=\"failed\"}",
        |v| v == 1.0,
        Duration::from_secs(10),
    );
    assert!(r.log().contains("reload refused"), "{}", r.log());
    assert!(r.log().contains("accounts.toml:4"), "{}", r.log());
    // So is a broken config; a change that needs a restart is named.
    let good = std::fs::read_to_string(h.path().join("lull.toml")).expect("config");
    h.file("lull.toml", &format!("{good}\n[detect]\nrecent_dayz = 3\n"));
    r.signal(libc::SIGHUP);
    r.wait_for_metric(
        "lull_reloads_total{result=\"failed\"}",
        |v| v == 2.0,
        Duration::from_secs(10),
    );
    assert!(
        r.log().contains("unknown key `detect.recent_dayz`"),
        "{}",
        r.log()
    );
    h.file("accounts.toml", &accounts(&["a0", "a1", "a2", "a3"]));
    h.file(
        "lull.toml",
        &good.replace("shutdown_secs = 10", "shutdown_secs = 9"),
    );
    r.signal(libc::SIGHUP);
    r.wait_for_metric(
        "lull_reloads_total{result=\"ok\"}",
        |v| v == 2.0,
        Duration::from_secs(10),
    );
    assert!(r.log().contains("accounts=4"), "{}", r.log());
    assert!(
        r.log().contains("take effect at the next restart"),
        "{}",
        r.log()
    );
    assert_eq!(r.get("/healthz").0, 200);
    sigterm_and_exit_0(&mut r, Duration::from_secs(10));
}

#[test]
fn sigint_stops_too_json_logs_and_a_taken_port_is_a_clear_error() {
    let port = free_port();
    let config = format!(
        "{BASE}{}",
        service_config(port, "0 0 6 * * *", 10).replace(
            "shutdown_secs = 10\n",
            "shutdown_secs = 10\nlog_format = \"json\"\n"
        )
    );
    let h = Home::with(&config, &accounts(&["a0"]));
    let mut r = Running::start(&h, port, &[]);
    // A second instance: the store is locked or the port is taken; either
    // way it says so and exits non-zero, and the first keeps running.
    let second = h.run(&["run"]);
    assert!(!second.status.success());
    let err = stderr(&second);
    assert!(err.contains("127.0.0.1") || err.contains("lock"), "{err}");
    assert_eq!(r.get("/healthz").0, 200);
    r.signal(libc::SIGINT);
    let (status, _) = r.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "{}", r.log());
    // `[service] log_format = "json"`: every log line is a JSON object.
    let log = r.log();
    assert!(log.lines().count() >= 3, "{log}");
    for line in log.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v["fields"]["message"].is_string(), "{line}");
    }

    // Port taken by something else: named in the error.
    let blocker = std::net::TcpListener::bind(("127.0.0.1", port)).expect("bind");
    let out = h.run(&["run"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "cannot listen on 127.0.0.1:{port} ([http] listen)"
        )),
        "{}",
        stderr(&out)
    );
    drop(blocker);
}

#[test]
fn the_account_index_is_built_after_the_detection_due_at_start_and_at_once_when_none_is() {
    let port = free_port();
    // Daily at midnight UTC: today's tick has passed and nothing was
    // judged, so a run is due at start.
    let config = format!("{BASE}{}", service_config(port, "0 0 0 * * *", 10));
    let ids = ["a0", "a1", "a2"];
    let h = Home::with(&config, &accounts(&ids));
    import(&h, &history(&ids, &[], 1));
    let position = |log: &str, text: &str| {
        log.find(text)
            .unwrap_or_else(|| panic!("no `{text}` in the log:\n{log}"))
    };

    let mut r = Running::start(&h, port, &[]);
    r.wait_for_log("account index built", Duration::from_secs(30));
    let log = r.log();
    // Built once, after the run that changed what it shows (a build at
    // start, in parallel, would be thrown away by that run).
    assert!(
        position(&log, "detection done") < position(&log, "account index built"),
        "{log}"
    );
    assert_eq!(log.matches("account index built").count(), 1, "{log}");
    sigterm_and_exit_0(&mut r, Duration::from_secs(10));

    // Today is judged now: nothing is due, the index is built at once.
    let mut r = Running::start(&h, port, &[]);
    r.wait_for_log("account index built", Duration::from_secs(30));
    let log = r.log();
    assert!(!log.contains("detection done"), "{log}");
    assert!(!log.contains("did not run while lull was down"), "{log}");
    sigterm_and_exit_0(&mut r, Duration::from_secs(10));
}
