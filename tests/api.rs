//! Working with lull while it runs: the HTTP API under /api/v1 (tokens and
//! roles, hostile clients), the CLI as its client giving what the local
//! mode gives, consistent exports while polls commit, an API import cut by
//! `kill -9`, and the fixes found by trying it as a new user would.

#![recursion_limit = "256"]

mod common;

use std::time::{Duration, Instant};

use common::service::{Running, free_port, request, service_config};
use common::{Home, assert_same_export, stderr, stdout};
use serde_json::Value;

const TOKENS: &str = "[[http.token]]\nname = \"ops\"\nrole = \"admin\"\ntoken_env = \"T_ADMIN\"\n\
[[http.token]]\nname = \"jane\"\nrole = \"csm\"\ntoken_env = \"T_CSM\"\n\
[[http.token]]\nname = \"viewer\"\nrole = \"read\"\ntoken_env = \"T_READ\"\n";
const ADMIN: &str = "admin-secret-4f9a";
const CSM: &str = "csm-secret-77b1";
const READ: &str = "read-secret-0c3e";
const ENV: [(&str, &str); 3] = [("T_ADMIN", ADMIN), ("T_CSM", CSM), ("T_READ", READ)];

fn config(port: u16, extra: &str) -> String {
    format!(
        "{}{}{TOKENS}{extra}",
        common::CONFIG,
        service_config(port, "0 0 6 1 1 *", 5)
    )
}

/// Accounts with a year of daily posts; acme stops 60 days ago.
fn history() -> String {
    let today = chrono::Utc::now().date_naive();
    let mut s = String::new();
    for d in 1..480u64 {
        let day = today - chrono::Days::new(d);
        for who in ["acme", "globex", "initech"] {
            if who == "acme" && d < 60 {
                continue;
            }
            s.push_str(&common::event(
                who,
                "forum",
                &format!("{day}T10:00:00Z"),
                &format!("{who}-{d}"),
                "post",
            ));
            s.push('\n');
        }
    }
    s
}

fn with_history(config: &str) -> Home {
    let h = Home::with(config, common::ACCOUNTS);
    let f = h.file("history.jsonl", &history());
    let out = h.run(&["import", f.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    h
}

#[test]
fn every_route_wants_a_token_of_the_right_role_and_no_token_reaches_the_log() {
    let port = free_port();
    let h = with_history(&config(port, ""));
    let mut run = h.cmd(&["run"]);
    run.env("RUST_LOG", "trace");
    let log = h.path().join("trace.log");
    run.stderr(std::fs::File::create(&log).unwrap());
    for (k, v) in ENV {
        run.env(k, v);
    }
    let mut child = run.spawn().unwrap();
    let until = Instant::now() + Duration::from_secs(30);
    while common::service::try_get(port, "/healthz").is_none_or(|(c, _)| c != 200) {
        assert!(Instant::now() < until, "service did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    // (method, path, body, least role)
    let routes: [(&str, &str, Option<&str>, &str); 16] = [
        ("GET", "/api/v1/accounts", None, "read"),
        ("GET", "/api/v1/accounts/acme", None, "read"),
        (
            "POST",
            "/api/v1/accounts/acme/snooze",
            Some(r#"{"until":"2099-01-01","reason":"renewal"}"#),
            "csm",
        ),
        ("DELETE", "/api/v1/accounts/acme/snooze", None, "csm"),
        ("GET", "/api/v1/unmatched", None, "read"),
        ("GET", "/api/v1/alerts", None, "read"),
        ("GET", "/api/v1/sources", None, "read"),
        ("GET", "/api/v1/export", None, "read"),
        ("GET", "/api/v1/backup", None, "admin"),
        ("POST", "/api/v1/import", Some(""), "admin"),
        (
            "POST",
            "/api/v1/backtest",
            Some(r#"{"from":"2026-01-01","to":"2026-01-31"}"#),
            "read",
        ),
        (
            "POST",
            "/api/v1/detect",
            Some(r#"{"dry_run":true}"#),
            "read",
        ),
        ("POST", "/api/v1/detect", Some(r#"{}"#), "admin"),
        ("POST", "/api/v1/deliver", None, "admin"),
        ("POST", "/api/v1/reload", None, "admin"),
        ("GET", "/api/v1/openapi.json", None, "read"),
    ];
    let rank = |r: &str| {
        ["read", "csm", "admin"]
            .iter()
            .position(|x| *x == r)
            .unwrap()
    };
    for (method, path, body, least) in routes {
        let (code, text) = request(port, method, path, None, body);
        assert_eq!(code, 401, "{method} {path} without a token: {text}");
        assert!(text.contains(r#""code":"unauthorized""#), "{text}");
        for (token, role) in [(READ, "read"), (CSM, "csm"), (ADMIN, "admin")] {
            let (code, text) = request(port, method, path, Some(token), body);
            if rank(role) < rank(least) {
                assert_eq!(code, 403, "{method} {path} as {role}: {text}");
                assert!(text.contains(r#""code":"forbidden""#), "{text}");
            } else {
                assert!(code < 400, "{method} {path} as {role}: {code} {text}");
            }
        }
    }
    // A huge JSON body is refused, not read.
    let big = format!(
        r#"{{"from":"2026-01-01","to":"2026-01-31","x":"{}"}}"#,
        "a".repeat(200_000)
    );
    let (code, _) = request(port, "POST", "/api/v1/backtest", Some(READ), Some(&big));
    assert_eq!(code, 413);
    // A wrong token is refused like none; guessing is cut off (429) per
    // address, even for a right token afterwards.
    let mut codes = Vec::new();
    for i in 0..12 {
        codes.push(
            request(
                port,
                "GET",
                "/api/v1/whoami",
                Some(&format!("guess-{i}")),
                None,
            )
            .0,
        );
    }
    assert_eq!(&codes[..10], &[401; 10], "{codes:?}");
    assert_eq!(&codes[10..], &[429, 429], "{codes:?}");
    assert_eq!(
        request(port, "GET", "/api/v1/whoami", Some(ADMIN), None).0,
        429
    );
    // Health and metrics stay open.
    let (code, metrics) = request(port, "GET", "/metrics", None, None);
    assert_eq!(code, 200);
    assert!(
        common::service::metric_in(
            &metrics,
            "lull_api_auth_failures_total{reason=\"forbidden\"}"
        )
        .unwrap()
            > 0.0
    );
    assert!(
        common::service::metric_in(
            &metrics,
            "lull_api_auth_failures_total{reason=\"rate_limited\"}"
        )
        .unwrap()
            > 0.0
    );

    // SAFETY: kill(2) on our child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    child.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.len() > 10_000,
        "the trace log is too short to prove anything"
    );
    for secret in [ADMIN, CSM, READ] {
        assert!(!text.contains(secret), "{secret} is in the trace log");
    }
    let cookie = std::fs::read_to_string(h.path().join("data/lull.db.cookie")).unwrap_or_default();
    assert!(
        cookie.is_empty(),
        "the local token file outlives the service"
    );
}

#[test]
fn a_slow_client_does_not_hold_the_service() {
    let port = free_port();
    let h = with_history(&config(port, ""));
    let r = Running::start(&h, port, &ENV);
    // Connections that never send their headers, more than the service
    // serves at once: they are dropped after the header timeout, and
    // others are answered meanwhile.
    let idle: Vec<std::net::TcpStream> = (0..300)
        .filter_map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).ok())
        .collect();
    let started = Instant::now();
    let (code, _) = request(port, "GET", "/api/v1/whoami", Some(READ), None);
    assert_eq!(code, 200);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    drop(idle);
    drop(r);
}

fn lines_of(s: &str) -> Vec<&str> {
    s.lines().collect()
}

#[test]
fn with_the_service_up_the_cli_gives_what_the_local_mode_gives() {
    let port = free_port();
    let h = with_history(&config(port, ""));
    let tomorrow_minus_year =
        (chrono::Utc::now().date_naive() - chrono::Days::new(200)).to_string();
    let today = chrono::Utc::now().date_naive().to_string();
    let queries: Vec<Vec<String>> = vec![
        vec!["accounts".into(), "--json".into()],
        vec!["accounts".into()],
        vec![
            "accounts".into(),
            "--csm".into(),
            "sam@vendor.example".into(),
        ],
        vec!["accounts".into(), "--unmatched".into(), "--json".into()],
        vec!["export".into()],
        vec!["alerts".into(), "--json".into()],
        vec![
            "backtest".into(),
            "--json".into(),
            "--from".into(),
            tomorrow_minus_year.clone(),
            "--to".into(),
            today.clone(),
        ],
        vec![
            "backtest".into(),
            "--from".into(),
            tomorrow_minus_year.clone(),
            "--to".into(),
            today.clone(),
            "--set".into(),
            "recent_days=28".into(),
        ],
        vec!["detect".into(), "--dry-run".into(), "--json".into()],
    ];
    let run_all = |h: &Home, env: &[(&str, &str)]| -> Vec<(Option<i32>, String, String)> {
        queries
            .iter()
            .map(|q| {
                let args: Vec<&str> = q.iter().map(String::as_str).collect();
                let mut c = h.cmd(&args);
                for (k, v) in env {
                    c.env(k, v);
                }
                let o = c.output().unwrap();
                (o.status.code(), stdout(&o), stderr(&o))
            })
            .collect()
    };
    let r = Running::start(&h, port, &ENV);
    // The store is the service's: the CLI goes through its API by itself
    // (with the service's local token), and says so.
    let remote = run_all(&h, &[]);
    for (q, (_, _, err)) in queries.iter().zip(&remote) {
        assert!(err.contains("goes through its API"), "{q:?}: {err}");
    }
    // Explicitly, with a token, the same.
    let explicit = run_all(
        &h,
        &[
            ("LULL_SERVER", &format!("http://127.0.0.1:{port}")),
            ("LULL_TOKEN", READ),
        ],
    );
    // Snooze through the API, recorded with who did it.
    let out = h
        .cmd(&[
            "snooze",
            "acme",
            "--until",
            "2099-01-01",
            "--reason",
            "renewal call",
        ])
        .env("LULL_SERVER", format!("http://127.0.0.1:{port}"))
        .env("LULL_TOKEN", CSM)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    drop(r);
    // The same commands on the (now free) store, locally.
    let out = h.run(&["unsnooze", "acme"]);
    assert!(
        stderr(&out).contains("snooze until 2099-01-01 lifted"),
        "{}",
        stderr(&out)
    );
    let local = run_all(&h, &[]);
    for ((q, l), (r, e)) in queries.iter().zip(&local).zip(remote.iter().zip(&explicit)) {
        assert_eq!(l.0, r.0, "{q:?}: exit codes differ: {}", r.2);
        assert_eq!(l.1, r.1, "{q:?}: stdout differs (local vs auto)");
        assert_eq!(l.1, e.1, "{q:?}: stdout differs (local vs --server)");
        // stderr: the same lines, but the note about the API.
        let strip = |s: &str| -> Vec<String> {
            s.lines()
                .filter(|l| !l.contains("goes through its API"))
                .map(str::to_string)
                .collect()
        };
        assert_eq!(strip(&l.2), strip(&r.2), "{q:?}: stderr differs");
    }
    assert!(lines_of(&local[0].1).len() > 10);
    // The snooze taken through the API was recorded with the token's name.
    let backup = h.path().join("b.backup.gz");
    assert!(
        h.run(&["backup", backup.to_str().unwrap()])
            .status
            .success()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_taken_while_polls_commit_is_the_store_at_one_instant() {
    use wiremock::matchers::path;
    let server = wiremock::MockServer::start().await;
    // Every poll adds one post for each of 30 users: at any instant every
    // account has the same number of posts.
    let forum = common::shapes::Forum::default();
    let waves = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let accounts: String = (0..30)
        .map(|i| format!("[[account]]\nid = \"a{i}\"\nname = \"A{i}\"\ncsm = \"c@vendor.example\"\nhandles = {{ forum = [\"u{i}\"] }}\n"))
        .collect();
    struct Waves(
        common::shapes::Forum,
        std::sync::Arc<std::sync::atomic::AtomicU64>,
    );
    impl wiremock::Respond for Waves {
        fn respond(&self, req: &wiremock::Request) -> wiremock::ResponseTemplate {
            if !req.url.query().unwrap_or("").contains("before") {
                let w = self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let now = chrono::Utc::now().to_rfc3339();
                for i in 0..30u64 {
                    self.0.add(common::shapes::discourse_post(
                        w * 30 + i + 1,
                        &format!("u{i}"),
                        &now,
                        1,
                        false,
                    ));
                }
            }
            self.0.respond(req)
        }
    }
    wiremock::Mock::given(path("/posts.json"))
        .respond_with(Waves(forum.clone(), waves.clone()))
        .mount(&server)
        .await;
    let port = free_port();
    let cfg = format!(
        "[store]\npath = \"data/lull.db\"\n[accounts]\nfile = \"accounts.toml\"\n{}{TOKENS}[[source]]\nname = \"forum\"\nkind = \"discourse\"\nurl = \"{}\"\nschedule = \"* * * * * *\"\nrequests_per_minute = 0\n",
        service_config(port, "0 0 6 1 1 *", 5),
        server.uri()
    );
    tokio::task::spawn_blocking(move || {
        let h = Home::with(&cfg, &accounts);
        let r = Running::start(&h, port, &ENV);
        r.wait_for_metric(
            "lull_polls_total{source=\"forum\"}",
            |v| v >= 3.0,
            Duration::from_secs(30),
        );
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..25 {
            let (code, export) = request(port, "GET", "/api/v1/export", Some(READ), None);
            assert_eq!(code, 200);
            let mut totals = std::collections::BTreeMap::new();
            for l in export.lines() {
                let v: Value = serde_json::from_str(l).unwrap();
                *totals
                    .entry(v["account"].as_str().unwrap().to_string())
                    .or_insert(0u64) += v["count"].as_u64().unwrap();
            }
            let distinct: std::collections::BTreeSet<u64> = totals.values().copied().collect();
            assert_eq!(distinct.len(), 1, "a half-poll in the export: {totals:?}");
            seen.extend(distinct);
            // It imports into a fresh store and exports the same.
            let fresh = Home::with(common::CONFIG, &accounts);
            let f = fresh.file("e.jsonl", &export);
            fresh.run(&["import", f.to_str().unwrap()]);
            assert_same_export(&fresh.export(), &export);
            std::thread::sleep(Duration::from_millis(150));
        }
        assert!(
            seen.len() >= 3,
            "polls did not commit during the exports: {seen:?}"
        );
        drop(r);
    })
    .await
    .unwrap();
}

#[test]
fn kill_9_of_the_service_during_an_api_import_then_the_same_import_counts_once() {
    let text = common::events(200_000, 5);
    let clean = Home::new();
    let f = clean.file("e.jsonl", &text);
    clean.run(&["import", f.to_str().unwrap()]);
    let want = clean.export();

    let port = free_port();
    let h = Home::with(&config(port, ""), common::ACCOUNTS);
    let f = h.file("e.jsonl", &text);
    let server = format!("http://127.0.0.1:{port}");
    let mut r = Running::start(&h, port, &ENV);
    let mut import = h
        .cmd(&["import", "--batch-size", "10000", f.to_str().unwrap()])
        .env("LULL_SERVER", &server)
        .env("LULL_TOKEN", ADMIN)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    r.wait_for_metric(
        "lull_api_requests_total{class=\"2xx\"}",
        |_| true,
        Duration::from_secs(5),
    );
    std::thread::sleep(Duration::from_millis(300));
    r.child.kill().unwrap();
    r.child.wait().unwrap();
    let _ = import.wait();
    let partial = h.export();
    assert!(partial.len() < want.len(), "the kill came after the import");
    let r = Running::start(&h, port, &ENV);
    let out = h
        .cmd(&["import", f.to_str().unwrap()])
        .env("LULL_SERVER", &server)
        .env("LULL_TOKEN", ADMIN)
        .output()
        .unwrap();
    assert!(
        out.status.code().is_some_and(|c| c <= 1),
        "{}",
        stderr(&out)
    );
    drop(r);
    assert_same_export(&h.export(), &want);
}

#[test]
fn detect_at_a_future_day_changes_nothing_and_a_broken_pipe_loses_no_line() {
    let h = with_history(common::CONFIG);
    let tomorrow = (chrono::Utc::now().date_naive() + chrono::Days::new(1)).to_string();
    let out = h.run(&["detect", "--at", &tomorrow]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("has not happened yet"),
        "{}",
        stderr(&out)
    );
    // A dry run judges it, recording nothing; the next real run is today's.
    assert!(
        h.run(&["detect", "--at", &tomorrow, "--dry-run"])
            .status
            .success()
    );
    let out = h.run(&["detect", "--no-send"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("already ran"), "{}", stderr(&out));
    assert!(stderr(&out).contains("silent: acme"), "{}", stderr(&out));

    // An import whose stderr is closed early (`2>&1 | head -c 100`):
    // every good line is stored, nothing panics.
    let mut text = String::new();
    for i in 0..3000 {
        if i % 3 == 0 {
            text.push_str("{not json\n");
        } else {
            text.push_str(&common::event(
                "globex",
                "tickets",
                "2026-03-02T10:00:00Z",
                &format!("t{i}"),
                "ticket",
            ));
            text.push('\n');
        }
    }
    let f = h.file("bad.jsonl", &text);
    let sh = format!(
        "{} --config {} import {} 2>&1 | head -c 100 >/dev/null; echo ${{PIPESTATUS[0]}}",
        env!("CARGO_BIN_EXE_lull"),
        h.path().join("lull.toml").display(),
        f.display()
    );
    let o = std::process::Command::new("bash")
        .args(["-c", &sh])
        .output()
        .unwrap();
    let code = stdout(&o).trim().to_string();
    assert_eq!(
        code,
        "1",
        "import's exit (1: lines rejected, not 101): {}",
        stderr(&o)
    );
    let tickets: u64 = h
        .export()
        .lines()
        .filter(|l| l.contains("\"tickets\""))
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["count"]
                .as_u64()
                .unwrap()
        })
        .sum();
    assert_eq!(tickets, 2000);
}

#[test]
fn a_snooze_stops_a_queued_alert_and_check_reports_every_problem() {
    let h = with_history(common::CONFIG);
    let out = h.run(&["detect", "--no-send"]);
    assert!(
        stderr(&out).contains("1 notice(s) queued"),
        "{}",
        stderr(&out)
    );
    let out = h.run(&[
        "snooze",
        "acme",
        "--until",
        "2099-01-01",
        "--reason",
        "on it",
    ]);
    assert!(
        stderr(&out).contains("1 notice(s) about it that were waiting"),
        "{}",
        stderr(&out)
    );
    let out = h.run(&["alerts", "--json"]);
    assert_eq!(stdout(&out).trim(), "[]");

    // Deliveries are the vendor's doing, not the customer's activity.
    let f = h.file(
        "mail.jsonl",
        &(common::event("globex", "mail", "2099-01-01T00:00:00Z", "m", "delivered")
            .replace("2099-01-01", &chrono::Utc::now().date_naive().to_string())
            + "\n"),
    );
    assert!(h.run(&["import", f.to_str().unwrap()]).status.success());
    let out = h.run(&["accounts", "--json"]);
    let rows: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let globex = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["account"] == "globex")
        .unwrap();
    assert_ne!(
        globex["last_activity"],
        Value::String(chrono::Utc::now().date_naive().to_string()),
        "{globex}"
    );

    // `lull check`: a type error, an unknown key and a bad account, all at
    // once; `localhost:PORT` is an address.
    let bad = Home::with(
        "[store]\ncache_mb = \"big\"\n[detect]\nrecent_days = 28\nbogus = 1\n[http]\nlisten = \"localhost:9187\"\n",
        "[[account]]\nid = \"a\"\nname = \"A\"\ncsm = \"nope\"\n",
    );
    let out = bad.run(&["check"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1));
    for want in [
        ":2:12: invalid type",
        ":5:1: unknown key `detect.bogus`",
        "accounts.toml:4:7:",
        "3 problem(s) found",
    ] {
        assert!(text.contains(want), "{want} not in:\n{text}");
    }
}

/// The console's list reads a compact index built at start; `lull
/// accounts` summarises and judges afresh. On the day the last detection
/// judged, both say the same of every account.
#[test]
fn the_console_index_and_lull_accounts_agree_on_every_account() {
    let port = free_port();
    let h = with_history(&config(port, ""));
    assert!(h.run(&["detect", "--no-send"]).status.success());
    let out = h.run(&[
        "snooze",
        "globex",
        "--until",
        "2099-01-01",
        "--reason",
        "renewal",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = h.run(&["accounts", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let fresh: Value = serde_json::from_str(&stdout(&out)).unwrap();

    let r = Running::start(&h, port, &ENV);
    r.wait_for_log("account index built", Duration::from_secs(60));
    let (status, body) = request(port, "GET", "/api/v1/accounts?limit=100", Some(READ), None);
    assert_eq!(status, 200, "{body}");
    let page: Value = serde_json::from_str(&body).unwrap();
    drop(r);

    let without_channels = |rows: &Value| -> Vec<Value> {
        let mut rows = rows.as_array().unwrap().clone();
        for row in &mut rows {
            row.as_object_mut().unwrap().remove("channels");
        }
        rows.sort_by_key(|r| r["account"].as_str().unwrap().to_string());
        rows
    };
    let (indexed, judged) = (
        without_channels(&page["accounts"]),
        without_channels(&fresh),
    );
    assert_eq!(indexed.len(), 3, "{page}");
    assert_eq!(indexed, judged);
    // What the comparison covers: a silent account, a snooze, weekly counts.
    let by = |id: &str| indexed.iter().find(|r| r["account"] == id).unwrap().clone();
    assert_eq!(by("acme")["state"], "silent", "{page}");
    assert!(by("acme")["silent_since"].is_string(), "{page}");
    assert_eq!(by("acme")["segment"], "enterprise", "{page}");
    assert_eq!(by("globex")["snoozed"]["until"], "2099-01-01", "{page}");
    assert_eq!(by("globex")["events_8w"], 55, "{page}");
    assert_eq!(
        by("globex")["weekly"].as_array().unwrap().len(),
        8,
        "{page}"
    );
}

#[test]
fn the_openapi_document_describes_every_route() {
    let port = free_port();
    let h = Home::with(&config(port, ""), common::ACCOUNTS);
    let _r = Running::start(&h, port, &ENV);
    let (code, text) = request(port, "GET", "/api/v1/openapi.json", Some(READ), None);
    assert_eq!(code, 200);
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    for (path, method) in [
        ("/api/v1/accounts", "get"),
        ("/api/v1/accounts/{id}", "get"),
        ("/api/v1/accounts/{id}/snooze", "post"),
        ("/api/v1/accounts/{id}/snooze", "delete"),
        ("/api/v1/unmatched", "get"),
        ("/api/v1/alerts", "get"),
        ("/api/v1/sources", "get"),
        ("/api/v1/export", "get"),
        ("/api/v1/backup", "get"),
        ("/api/v1/import", "post"),
        ("/api/v1/backtest", "post"),
        ("/api/v1/detect", "post"),
        ("/api/v1/deliver", "post"),
        ("/api/v1/reload", "post"),
        ("/api/v1/whoami", "get"),
    ] {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} missing"
        );
    }
    // The schemas the answers refer to are there.
    for schema in [
        "AccountsPage",
        "AccountDetail",
        "BacktestOutcome",
        "DetectOutcome",
        "ErrorBody",
        "MailRecord",
    ] {
        assert!(
            doc["components"]["schemas"][schema].is_object(),
            "{schema} missing"
        );
    }
}
