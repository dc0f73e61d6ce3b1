//! Alert throughput: decide, render, send and record 1,000 alerts through
//! a real local SMTP server (aiosmtpd, as in the tests), or to a local
//! webhook or Slack-like receiver (the tests' receiver), four in flight.
//!
//!   cargo bench --bench alerts -- [ALERTS] [ACCOUNTS_PER_CSM] [email|webhook|slack]
//!   (defaults: 1000 quiet accounts, 1 per CSM = 1,000 e-mails; with 20
//!   per CSM the same alerts go out as 50 digests)
//!
//! Detection decides up to 1,000 alerts; a larger ALERTS is a backlog of
//! copies of those notices for more accounts. Prints the process's RSS
//! before delivery and its peak while the backlog drains (sampled every
//! 20 ms).
//!
//! Needs /usr/bin/python3 with aiosmtpd (`apt-get install python3-aiosmtpd`).

#[path = "../tests/common/receiver.rs"]
#[allow(dead_code)]
mod receiver;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lull::accounts::Registry;
use lull::alert::config::{SmtpConfig, TlsMode};
use lull::alert::deliver::{Senders, View};
use lull::alert::receivers::HttpReceivers;
use lull::alert::route::{Endpoint, Receiver, ReceiverKind, Route, Routing, SlackTarget};
use lull::alert::{Mailer, deliver};
use lull::config::{IdentityConfig, StoreConfig};
use lull::detect::{DetectConfig, judge_day};
use lull::store::{Ingest, Origin, Owner, Span, Store};
use lull::types::{Day, SourceName};

const DAYS: i32 = 480;
const STEADY: usize = 50;
const DECIDED: usize = 1000;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo test --all-targets` runs bench binaries without `--bench`.
    if !args.iter().any(|a| a == "--bench") {
        return;
    }
    let nums: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let alerts = nums.first().copied().unwrap_or(1000);
    let per_csm = nums.get(1).copied().unwrap_or(1).max(1);
    let target = args
        .iter()
        .find(|a| matches!(a.as_str(), "email" | "webhook" | "slack"))
        .cloned()
        .unwrap_or_else(|| "email".into());
    let hooks = receiver::Receiver::start();

    let dir = tempfile::tempdir().expect("tempdir");
    let maildir = dir.path().join("maildir");
    let mut server = Command::new("/usr/bin/python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/smtp/server.py"))
        .arg("--maildir")
        .arg(&maildir)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start aiosmtpd (apt-get install python3-aiosmtpd)");
    let mut line = String::new();
    BufReader::new(server.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("port");
    let port: u16 = line
        .trim()
        .strip_prefix("PORT ")
        .and_then(|p| p.parse().ok())
        .expect("server port");

    // Accounts: `alerts` that go quiet 60 days before the end, and steady
    // ones around them (the community).
    let mut toml = String::new();
    for i in 0..alerts {
        toml.push_str(&format!(
            "[[account]]\nid = \"q{i:05}\"\nname = \"Quiet Customer {i}\"\ncsm = \"csm{}@vendor.example\"\n\n",
            i / per_csm
        ));
    }
    for i in 0..STEADY {
        toml.push_str(&format!(
            "[[account]]\nid = \"s{i:03}\"\nname = \"Steady {i}\"\ncsm = \"team@vendor.example\"\n\n"
        ));
    }
    std::fs::write(dir.path().join("accounts.toml"), toml).expect("accounts");
    let registry = Registry::load(
        &dir.path().join("accounts.toml"),
        &IdentityConfig::default(),
    )
    .expect("registry");
    let store = Store::open(&StoreConfig {
        path: dir.path().join("lull.db"),
        cache_bytes: 64 << 20,
        min_free_bytes: 0,
        backup_dir: dir.path().join("backups"),
    })
    .expect("store");
    let last: Day = "2026-06-30".parse().expect("day");
    let first = last.plus(-DAYS);
    let mut ingest = Ingest::default();
    // Detection decides at most DECIDED alerts (the community around them
    // stays larger than the quiet part); a larger backlog is made of
    // copies of those notices for the other accounts.
    for a in registry.accounts() {
        let quiet = a.id.as_str().starts_with('q');
        if quiet && a.id.as_str()[1..].parse::<usize>().unwrap_or(0) >= DECIDED {
            continue;
        }
        for d in 0..=DAYS {
            if quiet && d > DAYS - 60 {
                continue;
            }
            let id = format!("{}-{d}", a.id.as_str());
            ingest
                .add(
                    "forum",
                    &id,
                    Owner::Account(a.id.as_str()),
                    "post",
                    first.plus(d),
                    2,
                )
                .expect("add");
        }
    }
    ingest.coverage.push((
        SourceName("forum".into()),
        Span {
            first,
            last: first.plus(DAYS),
        },
        Origin::Import,
    ));
    store.commit(&ingest).expect("commit");

    let t0 = Instant::now();
    let run = judge_day(&store, &registry, &DetectConfig::default(), last).expect("detect");
    let mut queued = run.record(&store, None).expect("record");
    let decide = t0.elapsed();
    let decided = store.queued().expect("outbox");
    if alerts > decided.len() && !decided.is_empty() {
        let copies: Vec<_> = (decided.len()..alerts)
            .map(|i| {
                let q = &decided[i % decided.len()];
                let mut n: serde_json::Value = serde_json::from_slice(&q.body).expect("notice");
                let id = format!("q{i:05}");
                n["account"] = id.clone().into();
                n["name"] = format!("Quiet Customer {i}").into();
                n["csm"] = format!("csm{}@vendor.example", i / per_csm).into();
                lull::store::QueuedNotice {
                    account: id.into(),
                    body: serde_json::to_vec(&n).expect("json"),
                    ..q.clone()
                }
            })
            .collect();
        store
            .record_detection::<lull::detect::Memory>(last, &[], &copies, &[])
            .expect("backlog");
        queued += copies.len();
    }

    let smtp = SmtpConfig {
        host: "127.0.0.1".into(),
        port,
        tls: TlsMode::None,
        from: "lull <lull@vendor.example>".parse().expect("from"),
        username: None,
        password_env: None,
        ca_file: None,
        timeout: Duration::from_secs(30),
        retry_for: Duration::from_secs(60),
        line: 0,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut routing = Routing::default();
    let url = |p: &str| Endpoint::Url(hooks.url(p).parse().expect("url"));
    let http_kind = match target.as_str() {
        "webhook" => Some(ReceiverKind::Webhook {
            endpoint: url("/hook"),
            secret_env: None,
        }),
        "slack" => Some(ReceiverKind::Slack(SlackTarget::Webhook(url("/slack")))),
        _ => None,
    };
    if let Some(kind) = http_kind {
        routing.receivers.push(Receiver {
            name: target.clone(),
            kind,
            timeout: Duration::from_secs(30),
            line: 0,
        });
        routing.routes.push(Route {
            receivers: vec![target.clone()],
            ..Route::default_route()
        });
    }
    let rss_before = rss_kib();
    let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let on = sampling.clone();
        std::thread::spawn(move || {
            let mut max = 0;
            while on.load(std::sync::atomic::Ordering::Relaxed) {
                max = max.max(rss_kib());
                std::thread::sleep(Duration::from_millis(20));
            }
            max
        })
    };
    let t1 = Instant::now();
    let done = runtime
        .block_on(async {
            let mailer = Mailer::new(&smtp).expect("mailer");
            let http = HttpReceivers::new(&routing, Default::default()).expect("receivers");
            let senders = Senders {
                mailer: Some(&mailer),
                http: &http,
                links: None,
            };
            let view = View {
                from: &smtp.from,
                routing: &routing,
                registry: Some(&registry),
            };
            deliver(
                &store,
                view,
                &senders,
                smtp.retry_for,
                std::future::pending(),
                &tokio_util::sync::CancellationToken::new(),
            )
            .await
        })
        .expect("deliver");
    let send = t1.elapsed();
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let rss_peak = sampler.join().unwrap_or(0);
    if target != "email" {
        let got = hooks.accepted(if target == "slack" { "/slack" } else { "/hook" });
        println!(
            "{target}: {} notices in {} requests sent and recorded: {:.2} s = {:.0} notices/s, {:.0} requests/s; {} failed, {} left",
            queued,
            got.len(),
            send.as_secs_f64(),
            queued as f64 / send.as_secs_f64(),
            got.len() as f64 / send.as_secs_f64(),
            done.failed,
            done.queued
        );
        println!(
            "RSS of the whole process (bench, store, receiver): {:.1} MiB before delivery, peak {:.1} MiB while the backlog drained",
            rss_before as f64 / 1024.0,
            rss_peak as f64 / 1024.0
        );
        let _ = server.kill();
        let _ = server.wait();
        return;
    }

    let sizes: Vec<u64> = std::fs::read_dir(maildir.join("new"))
        .expect("maildir")
        .filter_map(|e| e.ok()?.metadata().ok().map(|m| m.len()))
        .collect();
    let _ = server.kill();
    let _ = server.wait();
    let mean = sizes.iter().sum::<u64>() as f64 / sizes.len().max(1) as f64;
    println!(
        "{queued} alerts decided and queued (detect over {} accounts x {DAYS} days): {:.2} s",
        alerts + STEADY,
        decide.as_secs_f64()
    );
    println!(
        "{} e-mails ({} per CSM) rendered with charts, sent and recorded: {:.2} s = {:.0} e-mails/s, {:.0} alerts/s; {} failed, {} left",
        done.sent,
        per_csm,
        send.as_secs_f64(),
        done.sent as f64 / send.as_secs_f64(),
        queued as f64 / send.as_secs_f64(),
        done.failed,
        done.queued
    );
    println!(
        "RSS of the whole process (bench, store): {:.1} MiB before delivery, peak {:.1} MiB while the backlog drained",
        rss_before as f64 / 1024.0,
        rss_peak as f64 / 1024.0
    );
    println!(
        "received {} messages; size mean {:.1} KiB, min {:.1} KiB, max {:.1} KiB",
        sizes.len(),
        mean / 1024.0,
        sizes.iter().min().copied().unwrap_or(0) as f64 / 1024.0,
        sizes.iter().max().copied().unwrap_or(0) as f64 / 1024.0
    );
}

/// The process's resident set now (VmRSS), in KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}
