//! The console with a big store: time to first byte and weight of "My
//! accounts" for a CSM with 500 accounts, and of account pages, with
//! 100,000 accounts stored — on an idle service and while a full detection
//! dry run goes on.
//!
//!   cargo bench --bench console -- [ACCOUNTS] [ROUNDS]
//!   (defaults: 100000 accounts, 30 rounds per page)
//!
//! Uses the store `cargo bench --bench detect` builds (bench-out/detect-people-N),
//! copied to bench-out/console-N with its accounts file changed so that one
//! CSM (`pat@vendor.example`) has the first 500 accounts.

mod common;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CSM: &str = "pat@vendor.example";
const MINE: usize = 500;

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// One GET: (time to first byte, total time, status, body bytes as sent).
fn get(port: u16, path: &str, cookie: &str, gzip: bool) -> (Duration, Duration, u16, usize) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(120)))
        .expect("timeout");
    let enc = if gzip {
        "Accept-Encoding: gzip\r\n"
    } else {
        ""
    };
    let t = Instant::now();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nCookie: {cookie}\r\n{enc}\r\n"
    )
    .expect("write");
    let mut first = [0u8; 1];
    s.read_exact(&mut first).expect("first byte");
    let ttfb = t.elapsed();
    let mut raw = first.to_vec();
    s.read_to_end(&mut raw).expect("read");
    let total = t.elapsed();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(raw.len(), |p| p + 4);
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    // A chunked body's framing is not page weight.
    let body = &raw[split..];
    let bytes = if head.to_ascii_lowercase().contains("chunked") {
        let mut n = 0;
        let mut rest = body;
        while let Some(nl) = rest.windows(2).position(|w| w == b"\r\n") {
            let len =
                usize::from_str_radix(String::from_utf8_lossy(&rest[..nl]).trim(), 16).unwrap_or(0);
            if len == 0 {
                break;
            }
            n += len;
            rest = rest.get(nl + 2 + len + 2..).unwrap_or(&[]);
        }
        n
    } else {
        body.len()
    };
    (ttfb, total, status, bytes)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        return;
    }
    let nums: Vec<u64> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let n = nums.first().copied().unwrap_or(100_000);
    let rounds = nums.get(1).copied().unwrap_or(30) as usize;
    let (src, work) = common::copy_store(n, "console", &["lull.db"]);
    let (src, work) = (common::text(&src), common::text(&work));
    // One CSM gets the first 500 accounts.
    let accounts = std::fs::read_to_string(format!("{src}/accounts.toml")).expect("accounts");
    let mut out = String::with_capacity(accounts.len());
    let mut i = 0usize;
    for line in accounts.lines() {
        if line.starts_with("csm = ") {
            if i < MINE {
                out.push_str(&format!("csm = \"{CSM}\"\n"));
            } else {
                out.push_str(line);
                out.push('\n');
            }
            i += 1;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    std::fs::write(format!("{work}/accounts.toml"), out).expect("accounts");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    std::fs::write(
        format!("{work}/lull.toml"),
        format!(
            "[store]\npath = \"lull.db\"\n[accounts]\nfile = \"accounts.toml\"\n[backup]\nkeep = 0\n\
             [service]\ndetect_schedule = \"0 0 6 1 1 *\"\n[http]\nlisten = \"127.0.0.1:{port}\"\n\
             [console]\npublic_url = \"http://127.0.0.1:{port}\"\n"
        ),
    )
    .expect("config");
    let log = std::fs::File::create(format!("{work}/run.log")).expect("log");
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_lull"))
        .args(["--config", &format!("{work}/lull.toml"), "run"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("lull run");
    // The index is built at start; pages wait for it once.
    loop {
        let text = std::fs::read_to_string(format!("{work}/run.log")).unwrap_or_default();
        if text.contains("account index built") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "no index: {text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!(
        "service up, index built after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let link = Command::new(env!("CARGO_BIN_EXE_lull"))
        .args([
            "--config",
            &format!("{work}/lull.toml"),
            "console-link",
            "--email",
            CSM,
        ])
        .output()
        .expect("console-link");
    assert!(
        link.status.success(),
        "{}",
        String::from_utf8_lossy(&link.stderr)
    );
    let url = String::from_utf8_lossy(&link.stdout).trim().to_string();
    let path = url
        .trim_start_matches(&format!("http://127.0.0.1:{port}"))
        .to_string();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )
    .expect("write");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read");
    let cookie = raw
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: lull_session="))
        .map(|v| format!("lull_session={}", v.split(';').next().unwrap_or("")))
        .expect("a session");

    let pages = [
        ("My accounts (page 1 of 5)", "/c/".to_string()),
        ("My accounts, page 5", "/c/?page=4".to_string()),
        ("My accounts, search", "/c/?q=Account%2042".to_string()),
        ("account page", "/c/accounts/a7".to_string()),
        ("account page", "/c/accounts/a123".to_string()),
        ("alerts", "/c/alerts".to_string()),
    ];
    let assets: usize = [
        "/c/static/lull.css",
        "/c/static/lull.js",
        "/c/static/icon.svg",
    ]
    .iter()
    .map(|p| get(port, p, &cookie, false).3)
    .sum();
    let assets_gz: usize = [
        "/c/static/lull.css",
        "/c/static/lull.js",
        "/c/static/icon.svg",
    ]
    .iter()
    .map(|p| get(port, p, &cookie, true).3)
    .sum();
    println!(
        "{n} accounts; {CSM} has {MINE}; CSS+JS+icon {assets} B ({assets_gz} B gzip'd), cached an hour"
    );
    let measure = |label: &str, path: &str| {
        let (_, _, status, raw) = get(port, path, &cookie, false);
        assert_eq!(status, 200, "{path}");
        let mut ttfb = Vec::new();
        let mut total = Vec::new();
        let mut gz = 0;
        for _ in 0..rounds {
            let (t, all, status, bytes) = get(port, path, &cookie, true);
            assert_eq!(status, 200);
            ttfb.push(t.as_secs_f64() * 1000.0);
            total.push(all.as_secs_f64() * 1000.0);
            gz = bytes;
        }
        println!(
            "{label:28} {path:22} TTFB p50 {:6.1} ms p95 {:6.1} ms | whole p50 {:6.1} ms | HTML {:7} B, {:6} B gzip'd",
            pct(&mut ttfb, 0.5),
            pct(&mut ttfb, 0.95),
            pct(&mut total, 0.5),
            raw,
            gz
        );
    };
    println!("-- idle service");
    for (label, path) in &pages {
        measure(label, path);
    }
    // Now while a full detection dry run goes on (through the API).
    let token = std::fs::read_to_string(format!("{work}/lull.db.cookie"))
        .expect("local token")
        .trim()
        .to_string();
    let detect = std::thread::spawn(move || {
        let t = Instant::now();
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let body = r#"{"dry_run": true}"#;
        write!(
            s,
            "POST /api/v1/detect HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .expect("write");
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
        t.elapsed()
    });
    std::thread::sleep(Duration::from_secs(2));
    println!("-- during a full detection dry run");
    for (label, path) in &pages[..4] {
        measure(label, path);
    }
    let took = detect.join().expect("detect");
    println!("(the detection run took {:.1} s)", took.as_secs_f64());
    let rss = std::fs::read_to_string(format!("/proc/{}/status", child.id()))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM"))
        .unwrap_or("")
        .to_string();
    println!("service peak memory: {rss}");
    unsafe_kill(child.id());
    let _ = child.wait();
}

fn unsafe_kill(pid: u32) {
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
}
