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
//! RSS printed is that phase's alone. `CACHE_MB=N` opens the store with
//! `store.cache_mb = N` (default: lull's 64).

mod common;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use lull::accounts::Registry;
use lull::config::{IdentityConfig, StoreConfig};
use lull::detect::{DetectConfig, Keep, judge_day, judge_day_keeping};
use lull::store::Store;
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
        (big, &["build", "detect-first", "detect-next", "scan"][..]),
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
    open_at(accounts, "lull.db")
}

/// Opens the store `db` of the bench folder (a copy of `lull.db`).
fn open_at(accounts: usize, db: &str) -> (Store, Registry) {
    let d = dir(accounts);
    let store = Store::open(&StoreConfig {
        path: d.join(db),
        cache_bytes: std::env::var("CACHE_MB")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(64)
            << 20,
        min_free_bytes: 0,
        backup_dir: d.join("backups"),
    })
    .expect("open store");
    let registry =
        Registry::load(&d.join("accounts.toml"), &IdentityConfig::default()).expect("accounts");
    (store, registry)
}

fn phase(name: &str, accounts: usize) {
    // Restarted after a phase's set-up (copying a store is not timed).
    let mut t0 = Instant::now();
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
            // On a copy of the built store, so every run starts without
            // saved states; what it records is the next phase's start.
            copy_store(accounts, "lull.db", "first.db");
            t0 = Instant::now();
            let (store, registry) = open_at(accounts, "first.db");
            let run = judge_day(
                &store,
                &registry,
                &DetectConfig::default(),
                last_day().plus(-1),
            )
            .expect("detect");
            let judged = t0.elapsed().as_secs_f64();
            let rss_judged = rss_mib("VmRSS:");
            let peak_judged = peak_rss_mib();
            run.record(&store, None).expect("record");
            format!(
                "detect, first run (replays {DAYS} days to build state): {accounts} accounts, {} notices; \
                 judged in {judged:.2} s (RSS {rss_judged} MiB, peak so far {peak_judged} MiB), then recorded",
                run.notices.len()
            )
        }
        "detect-next" => {
            // The last day of data, from the states the first run saved
            // for the day before (on a copy: every run judges that day).
            copy_store(accounts, "first.db", "next.db");
            t0 = Instant::now();
            let (store, registry) = open_at(accounts, "next.db");
            let previous = store.last_judged_day().expect("state");
            assert_eq!(
                previous,
                Some(last_day().plus(-1)),
                "run detect-first first"
            );
            let at = last_day();
            // What a running service does each day (its store and accounts
            // are open already), timed apart from opening them.
            let opened = t0.elapsed().as_secs_f64();
            let rss_opened = rss_mib("VmRSS:");
            let t = Instant::now();
            // Keeping what the service keeps of each judgement.
            let run = judge_day_keeping(
                &store,
                &registry,
                &DetectConfig::default(),
                at,
                Keep::States,
            )
            .expect("detect");
            let judged = t.elapsed().as_secs_f64();
            run.record(&store, None).expect("record");
            let (notices, took) = (run.notices.len(), t.elapsed().as_secs_f64());
            // What stays once the run is dropped: the service's RSS
            // between runs.
            drop(run);
            lull::service::release_freed_memory();
            format!(
                "detect, next day (one day from saved state): {accounts} accounts, {notices} notices; \
                 opening store and accounts {opened:.2} s (RSS {rss_opened} MiB), \
                 judging {judged:.2} s, judging and recording {took:.2} s; RSS after {} MiB",
                rss_mib("VmRSS:")
            )
        }
        "scan" => {
            // The floor under a daily run that reads every account: one
            // thread reading the last 500 days of every series, then every
            // people value, doing nothing with them.
            let (store, _registry) = open(accounts);
            let rss_opened = rss_mib("VmRSS:");
            let t = Instant::now();
            let entries: usize = store
                .series_from(Some(last_day().plus(-500)))
                .map(|s| s.expect("series").entries.len())
                .sum();
            let series = t.elapsed().as_secs_f64();
            let t = Instant::now();
            let mut people = 0;
            for p in store.people() {
                p.expect("people");
                people += 1;
            }
            format!(
                "read, one thread: {entries} series entries in {series:.2} s, then {people} people values in {:.2} s; \
                 RSS {rss_opened} MiB opened, {} MiB after",
                t.elapsed().as_secs_f64(),
                rss_mib("VmRSS:")
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

/// Replaces the bench folder's store `to` with a copy of `from`.
fn copy_store(accounts: usize, from: &str, to: &str) {
    let d = dir(accounts);
    assert!(
        d.join(from).exists(),
        "no {from}: run the earlier phases first"
    );
    let _ = std::fs::remove_dir_all(d.join(to));
    let status = Command::new("cp")
        .arg("-r")
        .arg(d.join(from))
        .arg(d.join(to))
        .status()
        .expect("cp");
    assert!(status.success(), "copying {from}");
}

/// Peak resident set of this process (Linux).
fn peak_rss_mib() -> u64 {
    rss_mib("VmHWM:")
}

/// A memory figure of this process in MiB (Linux), by its /proc name.
fn rss_mib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
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
/// Builds the store through the bulk-load path ([`lull::store::backup::load`],
/// what a restore and an upgrade use): generated records, not commits.
/// The data is what 730 days of polls would have stored; commits of
/// whole histories at once would rewrite the id leaves over and over.
fn build(d: &Path, accounts: usize) {
    use base64::Engine as _;
    use lull::store::backup::{self, Coverage, Ids, People, Record, Series};
    use std::collections::BTreeMap;

    std::fs::create_dir_all(d).expect("bench dir");
    let mut toml = String::new();
    for a in 0..accounts {
        toml.push_str(&format!(
            "[[account]]\nid = \"a{a}\"\nname = \"Account {a}\"\ncsm = \"csm{}@vendor.example\"\n\n",
            a % 50
        ));
    }
    std::fs::write(d.join("accounts.toml"), toml).expect("accounts");
    let first = last_day().plus(-(DAYS - 1));
    let cfg = StoreConfig {
        path: d.join("lull.db"),
        cache_bytes: 64 << 20,
        min_free_bytes: 0,
        backup_dir: d.join("backups"),
    };
    let b64 = |ids: &[u128]| {
        let bytes: Vec<u8> = ids.iter().flat_map(|h| h.to_be_bytes()).collect();
        base64::engine::general_purpose::STANDARD.encode(bytes)
    };
    backup::load(&cfg, |add| {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for a in 0..accounts {
            let id = format!("a{a}");
            let activity = 0.2 + (rng.next() % 100) as f64 / 100.0; // posts per day
            let quits = a % 20 == 0;
            // (source, kind) -> day -> count; (source, kind) -> person -> days.
            let mut series: BTreeMap<(&str, &str), BTreeMap<i32, u64>> = BTreeMap::new();
            let mut people: BTreeMap<(&str, &str), BTreeMap<String, Vec<i32>>> = BTreeMap::new();
            let mut ids: BTreeMap<&str, Vec<u128>> = BTreeMap::new();
            let mut event = |source: &'static str,
                             kind: &'static str,
                             ev: String,
                             day: Day,
                             n: u64,
                             who: Option<&str>| {
                *series
                    .entry((source, kind))
                    .or_default()
                    .entry(day.0)
                    .or_default() += n;
                ids.entry(source)
                    .or_default()
                    .push(lull::store::id_hash(&ev));
                if let Some(p) = who {
                    let days = people
                        .entry((source, kind))
                        .or_default()
                        .entry(p.to_string())
                        .or_default();
                    if days.last() != Some(&day.0) {
                        days.push(day.0);
                    }
                }
            };
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
                    event("forum", "post", format!("p{a}-{i}"), day, n, Some(&person));
                }
                if rng.chance(0.15 * scale) {
                    event(
                        "support",
                        "ticket",
                        format!("t{a}-{i}"),
                        day,
                        1,
                        Some(&person),
                    );
                }
                if i % 7 == 1 {
                    event("mail", "delivered", format!("d{a}-{i}"), day, 2, None);
                    if rng.chance(0.6 * scale) {
                        event("mail", "open", format!("o{a}-{i}"), day, 1, Some(&person));
                    }
                }
            }
            for ((source, kind), days) in series {
                add(Record::Series(Series {
                    account: id.clone(),
                    source: source.into(),
                    kind: kind.into(),
                    days: days.into_iter().collect(),
                }))?;
            }
            for ((source, kind), people) in people {
                add(Record::People(People {
                    account: id.clone(),
                    source: source.into(),
                    kind: kind.into(),
                    people,
                }))?;
            }
            for (source, ids) in ids {
                add(Record::Ids(Ids {
                    source: source.into(),
                    ids: b64(&ids),
                }))?;
            }
        }
        for source in ["forum", "support", "mail"] {
            add(Record::Coverage(Coverage {
                source: source.into(),
                by: lull::store::Origin::Import,
                first: first.0,
                last: first.plus(DAYS - 1).0,
            }))?;
        }
        Ok(())
    })
    .expect("build the store");
}
