//! Connector kinds as a user meets them.
//!
//! Adding a kind takes its module and one line: the kind below lives only
//! in this test, and one `register` call (the line a built-in kind has in
//! `sources::KINDS`) makes it work through `lull check`, `lull poll` and
//! `lull run` like lull's own — its keys checked with their lines, its
//! secret read from the environment and sent only to its server, its
//! activities stored, covered and named in alerts.
//!
//! This test binary plays lull for that: started with
//! `LULL_KINDS_TEST_ARGS` set, its test `as_lull` registers the kind and
//! runs the CLI with those arguments, as `main` does.

#![recursion_limit = "256"]

mod common;

use std::process::{Command, ExitCode, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use clap::Parser;
use common::service::{free_port, service_config, try_get};
use common::{Clocked, Home, assert_paced, stderr, stdout};
use lull::sources::http::Auth;
use lull::sources::kind::{self, Connect, Connection, Docs, Keys, Kind, Settings};
use lull::sources::{Activity, Connector, Harvest, PollContext, PollFuture, SourceError};
use serde::{Deserialize, Serialize};
use serde_json::json;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

// ------------------------------------------------- the test-only kind

static SHOUTBOX: Kind = Kind {
    name: "shoutbox",
    requests_per_minute: 60,
    keys: &["token_env", "room"],
    docs: Docs {
        keys: "`token_env`, `room`",
        reads: "shouts (kind `shout`) of one room",
        credentials: "a bearer token",
        rate: "60/min",
    },
    activities: &[("shout", "shouts in the shoutbox")],
    configure,
    fuzz: |_| {},
};

#[derive(Debug)]
struct ShoutSettings {
    token_env: String,
    room: String,
}

fn configure(k: &mut Keys<'_>) -> Option<Arc<dyn Settings>> {
    let token_env = k.env("token_env");
    let room = k.required("room", "the room to read");
    if room.as_deref() == Some("") {
        k.problem("room", "`room` must name a room");
    }
    if k.failed() {
        return None;
    }
    Some(Arc::new(ShoutSettings {
        token_env: token_env?,
        room: room?,
    }))
}

impl Settings for ShoutSettings {
    fn env_vars(&self) -> Vec<&str> {
        vec![&self.token_env]
    }

    fn connect(&self, cx: &Connect<'_>) -> Result<Connection, SourceError> {
        Ok(Connection {
            auth: Auth::Bearer(kind::secret(&self.token_env)?),
            connector: Box::new(Shoutbox {
                base: cx.base.clone(),
                room: self.room.clone(),
            }),
        })
    }
}

struct Shoutbox {
    base: url::Url,
    room: String,
}

#[derive(Serialize, Deserialize)]
struct ShoutCursor {
    since: DateTime<Utc>,
}

#[derive(Deserialize)]
struct Shouts {
    shouts: Vec<Shout>,
}

#[derive(Deserialize)]
struct Shout {
    id: u64,
    at: DateTime<Utc>,
    by: String,
}

impl Connector for Shoutbox {
    fn poll<'a>(&'a self, cx: &'a PollContext<'a>) -> PollFuture<'a> {
        Box::pin(async move {
            let since = cx
                .cursor::<ShoutCursor>()
                .map_or(cx.backfill_start, |c| c.since);
            let mut url = self
                .base
                .join(&format!("rooms/{}/shouts.json", self.room))
                .map_err(|e| SourceError::Other(e.to_string()))?;
            url.query_pairs_mut()
                .append_pair("since", &since.to_rfc3339());
            let (page, _) = cx.http.get_json::<Shouts>(&url).await?;
            Ok(Harvest {
                activities: page
                    .shouts
                    .into_iter()
                    .map(|s| Activity {
                        id: s.id.to_string(),
                        kind: "shout",
                        at: s.at,
                        actors: vec![s.by],
                        once: false,
                    })
                    .collect(),
                covered: Some((since, cx.now)),
                cursor: serde_json::to_vec(&ShoutCursor { since: cx.now }).unwrap_or_default(),
                staff: 0,
            })
        })
    }
}

// ------------------------------------------- this binary playing lull

const ARGS: &str = "LULL_KINDS_TEST_ARGS";

#[test]
fn as_lull() {
    let Ok(args) = std::env::var(ARGS) else {
        return; // an ordinary test run: nothing to do
    };
    lull::sources::register(&SHOUTBOX);
    let cli = lull::cli::Cli::parse_from(
        std::iter::once("lull".to_string()).chain(args.split('\u{1f}').map(str::to_string)),
    );
    if !matches!(cli.command, lull::cli::Command::Run) {
        lull::logging::init(lull::cli::LogFormat::Text, lull::logging::DEFAULT_FILTER);
    }
    let code = match lull::cmd::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("lull: {}", lull::cmd::error_text(&e));
            ExitCode::from(lull::cmd::EXIT_FATAL)
        }
    };
    let n = (0..=255u8)
        .find(|i| ExitCode::from(*i) == code)
        .unwrap_or(1);
    std::process::exit(i32::from(n));
}

/// lull with the shoutbox kind registered, in `home`.
fn lull_with_shoutbox(home: &Home, args: &[&str]) -> Command {
    let mut all = vec![
        "--config".to_string(),
        home.path().join("lull.toml").display().to_string(),
    ];
    all.extend(args.iter().map(|a| a.to_string()));
    let mut c = Command::new(std::env::current_exe().expect("test binary"));
    c.args(["--exact", "as_lull", "--nocapture", "--test-threads=1"])
        .env(ARGS, all.join("\u{1f}"))
        .env("LULL_TEST_SHOUT_TOKEN", "shout-secret-77")
        .env_remove("LULL_CONFIG")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    c
}

async fn run(home: &Home, args: &[&str]) -> Output {
    let mut c = lull_with_shoutbox(home, args);
    tokio::task::spawn_blocking(move || c.output().expect("run"))
        .await
        .expect("join")
}

const ACCOUNTS: &str = r#"
[[account]]
id = "acme"
name = "Acme Corp"
csm = "jane@vendor.example"
domains = ["acme.com"]
"#;

fn config(server: &MockServer, extra: &str) -> String {
    format!(
        r#"
[store]
path = "data/lull.db"

[accounts]
file = "accounts.toml"

[[source]]
name = "shouts"
kind = "shoutbox"
url = "{}/"
token_env = "LULL_TEST_SHOUT_TOKEN"
room = "general"
requests_per_minute = 0
{extra}
"#,
        server.uri()
    )
}

async fn shoutbox_server() -> MockServer {
    let server = MockServer::start().await;
    let day = |d: i64| (Utc::now() - chrono::Duration::days(d)).to_rfc3339();
    Mock::given(method("GET"))
        .and(path("/rooms/general/shouts.json"))
        .and(header("authorization", "Bearer shout-secret-77"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"shouts": [
            {"id": 1, "at": day(3), "by": "wile@acme.com"},
            {"id": 2, "at": day(2), "by": "road@acme.com"},
            {"id": 3, "at": day(1), "by": "someone@elsewhere.example"},
        ]})))
        .mount(&server)
        .await;
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kind_registered_in_one_line_works_through_check_poll_and_run() {
    let server = shoutbox_server().await;

    // check: the kind's keys are known, its mistakes named with lines.
    let bad = Home::with(&config(&server, "roomz = \"x\"\nsince = 3"), ACCOUNTS);
    let o = run(&bad, &["check"]).await;
    let out = format!("{}{}", stdout(&o), stderr(&o));
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("lull.toml:15:9: `roomz` is not a key of a `shoutbox` source (its own keys: token_env, room)"),
        "{out}"
    );
    let h = Home::with(&config(&server, ""), ACCOUNTS);
    let o = run(&h, &["check"]).await;
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("source shouts (shoutbox)"),
        "{}",
        stdout(&o)
    );
    // Its secret's variable is checked like any other's.
    let mut c = lull_with_shoutbox(&h, &["check"]);
    c.env_remove("LULL_TEST_SHOUT_TOKEN");
    let o = tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("LULL_TEST_SHOUT_TOKEN")
            || stdout(&o).contains("LULL_TEST_SHOUT_TOKEN")
    );

    // poll: stored, mapped, covered; again: nothing twice.
    let o = run(&h, &["poll", "--json"]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    let json_at = text.find('[').expect("poll --json output");
    let reports: serde_json::Value = serde_json::from_str(text[json_at..].trim()).expect("json");
    let r = &reports[0];
    assert_eq!(
        (
            r["kind"].as_str(),
            r["counted"].as_u64(),
            r["unmatched"].as_u64()
        ),
        (Some("shoutbox"), Some(2), Some(1)),
        "{r}"
    );
    assert!(!text.contains("shout-secret-77") && !stderr(&o).contains("shout-secret-77"));
    let o = run(&h, &["poll", "--json"]).await;
    assert!(
        stdout(&o).contains("\"counted\":0") || stdout(&o).contains("\"counted\": 0"),
        "{}",
        stdout(&o)
    );
    let export = stdout(&run(&h, &["export"]).await);
    let acme: Vec<&str> = export
        .lines()
        .filter(|l| l.contains("\"account\":\"acme\""))
        .collect();
    assert_eq!(acme.len(), 2, "{export}");
    assert!(
        acme.iter().all(|l| l.contains("\"kind\":\"shout\"")),
        "{export}"
    );

    // run: the service polls it on its schedule and stores what it read.
    let port = free_port();
    let h = Home::with(
        &format!(
            "{}\n{}",
            config(&server, "schedule = \"* * * * * *\""),
            service_config(port, "0 0 6 * * *", 5)
        ),
        ACCOUNTS,
    );
    let before = server.received_requests().await.unwrap().len();
    let mut service = lull_with_shoutbox(&h, &["run"]);
    let mut child = service
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run");
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let polled = server.received_requests().await.unwrap().len() > before;
        if polled && try_get(port, "/healthz").is_some() {
            break;
        }
        assert!(Instant::now() < until, "lull run never polled the shoutbox");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Let the poll commit, then stop it as ops would.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
    let export = stdout(&run(&h, &["export"]).await);
    assert_eq!(
        export
            .lines()
            .filter(|l| l.contains("\"account\":\"acme\""))
            .count(),
        2,
        "{export}"
    );
}

/// The commented `[[source]]` examples of `config/lull.toml`, uncommented.
fn example_sources() -> Vec<String> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/lull.toml"))
        .expect("config/lull.toml");
    let mut out = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(l) = lines.next() {
        if l.trim() != "# [[source]]" {
            continue;
        }
        let mut table = String::from("[[source]]\n");
        while let Some(next) = lines.peek() {
            let Some(kv) = next.strip_prefix("# ") else {
                break;
            };
            let is_key = kv
                .split_once(" = ")
                .is_some_and(|(k, _)| k.trim().chars().all(|c| c.is_ascii_lowercase() || c == '_'));
            if kv.trim() == "[[source]]" {
                break;
            }
            // An explanation between the keys stays a comment.
            if is_key {
                table.push_str(kv);
                table.push('\n');
            }
            lines.next();
        }
        out.push(table);
    }
    out
}

#[test]
fn every_kind_has_an_example_in_the_config_and_every_example_checks() {
    let examples = example_sources();
    let text = format!(
        "[store]\npath = \"data/lull.db\"\n[accounts]\nfile = \"accounts.toml\"\n\n{}",
        examples.join("\n")
    );
    let h = Home::with(&text, ACCOUNTS);
    let mut cmd = h.cmd(&["check"]);
    for line in text.lines() {
        if let Some((k, v)) = line.split_once(" = ")
            && k.trim().ends_with("_env")
        {
            let var = v
                .split('#')
                .next()
                .unwrap_or("")
                .trim()
                .trim_matches('"')
                .to_string();
            cmd.env(var, "example-secret");
        }
    }
    let o = cmd.output().expect("lull check");
    assert!(o.status.success(), "{}\n{}\n{text}", stdout(&o), stderr(&o));
    for kind in [
        "discourse",
        "html",
        "zendesk",
        "freshdesk",
        "mailchimp",
        "mailgun",
        "postmark",
        "slack",
        "intercom",
    ] {
        assert!(
            stdout(&o).contains(&format!("({kind}):")),
            "no example of `{kind}`:\n{}",
            stdout(&o)
        );
    }
}

/// Every kind's requests go through the limiter: each example source of
/// `config/lull.toml`, pointed at a server that keeps answering 503, is
/// polled at 300 requests a minute with 9 retries — ten requests, of
/// which no window of 1 s may hold more than 5 (+1 at its edge) by the
/// server's clock, and which take at least 1.8 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_is_paced_by_its_rate_by_the_servers_clock() {
    let server = MockServer::start().await;
    // 503 with `Retry-After: 0`: every retry goes at once, paced only by
    // the limiter.
    let busy = Clocked {
        answer: ResponseTemplate::new(503).insert_header("retry-after", "0"),
        seen: Arc::default(),
    };
    Mock::given(wiremock::matchers::any())
        .respond_with(busy.clone())
        .mount(&server)
        .await;
    let local = url::Url::parse(&server.uri()).unwrap();
    for table in example_sources() {
        let mut text = String::new();
        let mut env = Vec::new();
        let mut kind = String::new();
        for line in table.lines() {
            let (key, value) = match line.split_once(" = ") {
                Some((k, v)) => (k.trim(), v.split(" #").next().unwrap_or("").trim()),
                None => ("", ""),
            };
            match key {
                "url" => {
                    let mut u = url::Url::parse(value.trim_matches('"')).unwrap();
                    u.set_scheme("http").unwrap();
                    u.set_host(local.host_str()).unwrap();
                    u.set_port(local.port()).unwrap();
                    text.push_str(&format!("url = \"{u}\"\n"));
                }
                "schedule" | "requests_per_minute" | "retries" | "timeout_secs" => {}
                k => {
                    if k == "kind" {
                        kind = value.trim_matches('"').to_string();
                    }
                    if k.ends_with("_env") {
                        env.push(value.trim_matches('"').to_string());
                    }
                    text.push_str(line);
                    text.push('\n');
                }
            }
        }
        text.push_str("requests_per_minute = 300\nretries = 9\n");
        let h = Home::with(
            &format!(
                "[store]\npath = \"data/lull.db\"\n[accounts]\nfile = \"accounts.toml\"\n\n{text}"
            ),
            ACCOUNTS,
        );
        busy.seen.lock().unwrap().clear();
        let mut cmd = h.cmd(&["poll"]);
        for var in &env {
            cmd.env(var, "example-secret");
        }
        let o = tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap();
        // Every request failed: the poll fails, naming the 503.
        assert_eq!(o.status.code(), Some(1), "{kind}: {}", stderr(&o));
        assert!(stderr(&o).contains("503"), "{kind}: {}", stderr(&o));
        let mut times = busy.seen.lock().unwrap().clone();
        times.sort();
        assert_eq!(times.len(), 10, "{kind}: one request and 9 retries");
        assert_paced(&kind, &times, Duration::from_secs(1), 6);
        let whole = times[9].duration_since(times[0]);
        assert!(whole >= Duration::from_millis(1750), "{kind}: {whole:?}");
    }
}
