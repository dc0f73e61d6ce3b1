//! API latency with a big store: 50 concurrent clients asking for pages of
//! the account list and for single accounts' pages, while the service
//! polls a forum and a detection run (a full dry run over every account)
//! goes on; the service's RSS meanwhile.
//!
//!   cargo bench --bench api -- [ACCOUNTS] [SECONDS]
//!   (defaults: 100000 accounts, 60 s of load)
//!
//! Uses the store `cargo bench --bench detect` builds (bench-out/detect-people-N),
//! copied to bench-out/api-N, so that run is not changed. Linux (/proc).

#![recursion_limit = "256"]

mod common;
#[path = "../tests/common/shapes.rs"]
mod shapes;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wiremock::matchers::path;
use wiremock::{Mock, MockServer};

const CLIENTS: usize = 50;
const TOKEN: &str = "bench-admin-token";

fn rss(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        / 1024
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        return;
    }
    let nums: Vec<u64> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let n = nums.first().copied().unwrap_or(100_000);
    let seconds = nums.get(1).copied().unwrap_or(60);
    let (_, work) = common::copy_store(n, "api", &["lull.db", "accounts.toml"]);
    let work = common::text(&work);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(n, seconds, &work));
}

async fn run(n: u64, seconds: u64, work: &str) {
    // A forum that gains 200 posts before every poll.
    let server = MockServer::start().await;
    let forum = shapes::Forum::default();
    let next = Arc::new(std::sync::atomic::AtomicU64::new(1));
    struct Growing(shapes::Forum, Arc<std::sync::atomic::AtomicU64>);
    impl wiremock::Respond for Growing {
        fn respond(&self, req: &wiremock::Request) -> wiremock::ResponseTemplate {
            if !req.url.query().unwrap_or("").contains("before") {
                let now = chrono::Utc::now().to_rfc3339();
                for _ in 0..200 {
                    let id = self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    self.0.add(shapes::discourse_post(
                        id,
                        &format!("user{}", id % 5000),
                        &now,
                        1 + id / 40,
                        false,
                    ));
                }
            }
            self.0.respond(req)
        }
    }
    Mock::given(path("/posts.json"))
        .respond_with(Growing(forum.clone(), next))
        .mount(&server)
        .await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    std::fs::write(
        format!("{work}/lull.toml"),
        format!(
            "[store]\npath = \"lull.db\"\n[accounts]\nfile = \"accounts.toml\"\n[backup]\nkeep = 0\n\
             [service]\ndetect_schedule = \"0 0 6 1 1 *\"\n[http]\nlisten = \"127.0.0.1:{port}\"\n\
             [[http.token]]\nname = \"bench\"\nrole = \"admin\"\ntoken_env = \"LULL_BENCH_TOKEN\"\n\
             [[source]]\nname = \"forum\"\nkind = \"discourse\"\nurl = \"{}\"\nschedule = \"*/10 * * * * *\"\nrequests_per_minute = 0\n",
            server.uri()
        ),
    )
    .expect("config");
    let log = std::fs::File::create(format!("{work}/run.log")).expect("log");
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_lull"))
        .args(["--config", &format!("{work}/lull.toml"), "run"])
        .env("LULL_BENCH_TOKEN", TOKEN)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("lull run");
    let pid = child.id();
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    loop {
        if let Ok(r) = http.get(format!("{base}/healthz")).send().await
            && r.status().is_success()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The first list request builds the account index (a pass over the
    // store); measured on its own.
    let t = Instant::now();
    let first = http
        .get(format!("{base}/api/v1/accounts?limit=100"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("first page");
    assert!(first.status().is_success(), "{}", first.status());
    println!(
        "{n} accounts: service up after {:.1} s (RSS {} MiB); first page (builds the index) {:.2} s, RSS {} MiB",
        started.elapsed().as_secs_f64() - t.elapsed().as_secs_f64(),
        rss(pid, "VmRSS:"),
        t.elapsed().as_secs_f64(),
        rss(pid, "VmRSS:")
    );
    let t = Instant::now();
    let one = http
        .get(format!("{base}/api/v1/accounts/a17"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("one account");
    assert!(one.status().is_success(), "{}", one.status());
    println!("first account page {:.2} s", t.elapsed().as_secs_f64());

    // A detection run (a full dry run over every account) during the load.
    let detect = {
        let (http, base) = (http.clone(), base.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            let t = Instant::now();
            let r = http
                .post(format!("{base}/api/v1/detect"))
                .bearer_auth(TOKEN)
                .header("content-type", "application/json")
                .body(r#"{"dry_run": true}"#)
                .send()
                .await;
            (r.map(|r| r.status().as_u16()).unwrap_or(0), t.elapsed())
        })
    };
    let until = Instant::now() + Duration::from_secs(seconds);
    let mut peak_rss = 0;
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (http, base) = (http.clone(), base.clone());
        tasks.push(tokio::spawn(async move {
            let mut list = Vec::new();
            let mut detail = Vec::new();
            let mut errors = 0u64;
            let mut i = c as u64 * 7919;
            while Instant::now() < until {
                i = i
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let is_list = i % 2 == 0;
                let url = if is_list {
                    format!("{base}/api/v1/accounts?limit=100&offset={}", (i >> 16) % n)
                } else {
                    format!("{base}/api/v1/accounts/a{}", (i >> 16) % n)
                };
                let t = Instant::now();
                let ok = match http.get(&url).bearer_auth(TOKEN).send().await {
                    Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                let ms = t.elapsed().as_secs_f64() * 1000.0;
                if !ok {
                    errors += 1;
                } else if is_list {
                    list.push(ms);
                } else {
                    detail.push(ms);
                }
            }
            (list, detail, errors)
        }));
    }
    while Instant::now() < until {
        peak_rss = peak_rss.max(rss(pid, "VmRSS:"));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (mut list, mut detail, mut errors) = (Vec::new(), Vec::new(), 0);
    for t in tasks {
        let (l, d, e) = t.await.expect("client");
        list.extend(l);
        detail.extend(d);
        errors += e;
    }
    let (code, took) = detect.await.expect("detect");
    let polls = std::fs::read_to_string(format!("{work}/run.log")).unwrap_or_default();
    println!(
        "{CLIENTS} clients for {seconds} s, a poll every 10 s, a full dry-run detection (HTTP {code}, {:.1} s) during it:",
        took.as_secs_f64()
    );
    for (name, v) in [
        ("accounts list page (100)", &mut list),
        ("one account's page", &mut detail),
    ] {
        let count = v.len();
        println!(
            "  {name}: {count} requests ({:.0}/s), p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            count as f64 / seconds as f64,
            pct(v, 0.5),
            pct(v, 0.99),
            pct(v, 1.0)
        );
    }
    println!(
        "  errors {errors}; service RSS peak {} MiB during the load (VmHWM {} MiB); log lines {}",
        peak_rss,
        rss(pid, "VmHWM:"),
        polls.lines().count()
    );
    // SAFETY: kill(2) on our child.
    unsafe {
        libc::kill(pid as i32, libc::SIGTERM);
    }
    let _ = child.wait();
}
