//! Detection and backtest throughput on generated stores.
//!
//!   cargo bench --bench detect -- [ACCOUNTS] [BACKTEST_ACCOUNTS]
//!   (defaults: 100000 and 10000; 730 days of history, 3 channels each:
//!   forum posts, support tickets, mail opens per delivered; every post,
//!   ticket and open by one of the account's 2 to 10 people, about 600,000
//!   distinct people at 100,000 accounts)
//!
//! Stores are built once under bench-out/ and reused. Each measured phase
//! runs in its own process (this binary re-executes itself), so the peak
//! RSS printed is that phase's alone.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use lull::accounts::Registry;
use lull::config::{IdentityConfig, StoreConfig};
use lull::detect::{DetectConfig, judge_day};
use lull::store::{Ingest, Owner, Store};
use lull::types::Day;

const DAYS: i32 = 730;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo test --all-targets` runs bench binaries without `--bench`:
    // nothing to do then.
    if let Some(i) = args.iter().position(|a| a == "--phase") {
        return phase(&args[i + 1], args[i + 2].parse().unwrap_or(1000));
    }
    if !args.iter().any(|a| a == "--bench") {
        return;
    }
    let nums: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let big = nums.first().copied().unwrap_or(100_000);
    let small = nums.get(1).copied().unwrap_or(10_000);
    for (n, phases) in [
        (big, &["build", "detect-first", "detect-next"][..]),
        (small, &["build", "backtest"][..]),
    ] {
        for p in phases {
            let status = Command::new(std::env::current_exe().expect("own path"))
                .args(["--phase", p, &n.to_string()])
                .status()
                .expect("run phase");
            assert!(status.success(), "phase {p} failed");
        }
    }
}

fn dir(accounts: usize) -> PathBuf {
    common::detect_store(accounts as u64)
}

/// The number of people of account `a`.
fn people_of(a: usize) -> u64 {
    2 + (a % 9) as u64
}

fn last_day() -> Day {
    "2026-06-30".parse().expect("date")
}

fn open(accounts: usize) -> (Store, Registry) {
    let d = dir(accounts);
    let store = Store::open(&StoreConfig {
        path: d.join("lull.db"),
        cache_bytes: 64 << 20,
        min_free_bytes: 0,
        backup_dir: d.join("backups"),
    })
    .expect("open store");
    let registry =
        Registry::load(&d.join("accounts.toml"), &IdentityConfig::default()).expect("accounts");
    (store, registry)
}

fn phase(name: &str, accounts: usize) {
    let t0 = Instant::now();
    let what = match name {
        "build" => {
            if dir(accounts).join("lull.db").exists() {
                return;
            }
            build(&dir(accounts), accounts);
            let people: u64 = (0..accounts).map(people_of).sum();
            format!(
                "built store: {accounts} accounts x 3 channels x {DAYS} days, {people} distinct people"
            )
        }
        "detect-first" => {
            let (store, registry) = open(accounts);
            let run = judge_day(
                &store,
                &registry,
                &DetectConfig::default(),
                last_day().plus(-1),
            )
            .expect("detect");
            run.record(&store, None).expect("record");
            format!(
                "detect, first run (replays {DAYS} days to build state): {accounts} accounts, {} notices",
                run.notices.len()
            )
        }
        "detect-next" => {
            let (store, registry) = open(accounts);
            // The day after the last one judged (so the phase can be run
            // again on the same store, a day later each time).
            let (previous, _) = store.detection_state().expect("state");
            let at = previous.map_or(last_day(), |p| p.plus(1));
            let run = judge_day(&store, &registry, &DetectConfig::default(), at).expect("detect");
            run.record(&store, None).expect("record");
            format!(
                "detect, next day (one day from saved state): {accounts} accounts, {} notices",
                run.notices.len()
            )
        }
        "backtest" => {
            let (store, registry) = open(accounts);
            let to = last_day();
            let b = lull::backtest::run(
                &store,
                &registry,
                &DetectConfig::default(),
                to.plus(-364),
                to,
                |_| {},
            )
            .expect("backtest");
            format!(
                "backtest 365 days: {accounts} accounts, {} notices",
                b.notices.len()
            )
        }
        other => panic!("unknown phase {other}"),
    };
    println!(
        "{what}: {:.2} s, peak RSS {} MiB",
        t0.elapsed().as_secs_f64(),
        peak_rss_mib()
    );
}

/// Peak resident set of this process (Linux).
fn peak_rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}

/// xorshift: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn chance(&mut self, p: f64) -> bool {
        (self.next() % 1_000_000) as f64 / 1e6 < p
    }
}

/// Accounts with a forum, a support portal and a newsletter; one in
/// twenty dwindles to one person, then goes quiet in the last quarter.
fn build(d: &Path, accounts: usize) {
    std::fs::create_dir_all(d).expect("bench dir");
    let mut toml = String::new();
    for a in 0..accounts {
        toml.push_str(&format!(
            "[[account]]\nid = \"a{a}\"\nname = \"Account {a}\"\ncsm = \"csm{}@vendor.example\"\n\n",
            a % 50
        ));
    }
    std::fs::write(d.join("accounts.toml"), toml).expect("accounts");
    let (store, _) = open(accounts);
    let first = last_day().plus(-(DAYS - 1));
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut ingest = Ingest::default();
    for a in 0..accounts {
        let id = format!("a{a}");
        let activity = 0.2 + (rng.next() % 100) as f64 / 100.0; // posts per day
        let quits = a % 20 == 0;
        for i in 0..DAYS {
            let day = first.plus(i);
            let scale = if quits && i > DAYS - 90 { 0.05 } else { 1.0 };
            let team = if quits && i > DAYS - 200 {
                1
            } else {
                people_of(a)
            };
            let person = format!("person{}.{a}", rng.next() % team);
            if rng.chance((activity * scale).min(0.9)) {
                let n = 1 + rng.next() % 3;
                ingest
                    .add(
                        "forum",
                        &format!("p{a}-{i}"),
                        Owner::Account(&id),
                        "post",
                        day,
                        n,
                    )
                    .expect("add");
                ingest.seen_by(&id, "forum", "post", day, &person);
            }
            if rng.chance(0.15 * scale) {
                ingest
                    .add(
                        "support",
                        &format!("t{a}-{i}"),
                        Owner::Account(&id),
                        "ticket",
                        day,
                        1,
                    )
                    .expect("add");
                ingest.seen_by(&id, "support", "ticket", day, &person);
            }
            if i % 7 == 1 {
                ingest
                    .add(
                        "mail",
                        &format!("d{a}-{i}"),
                        Owner::Account(&id),
                        "delivered",
                        day,
                        2,
                    )
                    .expect("add");
                if rng.chance(0.6 * scale) {
                    ingest
                        .add(
                            "mail",
                            &format!("o{a}-{i}"),
                            Owner::Account(&id),
                            "open",
                            day,
                            1,
                        )
                        .expect("add");
                    ingest.seen_by(&id, "mail", "open", day, &person);
                }
            }
        }
        if ingest.len() > 500_000 {
            store.commit(&ingest).expect("commit");
            ingest = Ingest::default();
        }
    }
    for source in ["forum", "support", "mail"] {
        ingest.coverage.push((
            source.into(),
            lull::store::Span {
                first,
                last: first.plus(DAYS - 1),
            },
            lull::store::Origin::Import,
        ));
    }
    store.commit(&ingest).expect("commit");
}
