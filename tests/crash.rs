//! `kill -9` during `lull import`, then the same import again: the counts
//! are exactly those of one clean import (DESIGN.md invariant 1).

#![recursion_limit = "256"]

mod common;

use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use common::{Home, Rng, assert_same_export, events, stderr};

/// Small batches, so that a kill lands between many commits.
const BATCH: &str = "20000";

#[test]
fn kill_9_during_import_then_reimport_counts_exactly_once() {
    let data = events(300_000, 42);

    let clean = Home::new();
    let f = clean.file("events.jsonl", &data);
    let started = Instant::now();
    let out = clean.run(&["import", "--batch-size", BATCH, f.to_str().unwrap()]);
    let clean_time = started.elapsed();
    assert!(out.status.success(), "{}", stderr(&out));
    let want = clean.export();
    let want_counts: std::collections::HashMap<&str, u64> = want.lines().map(split_count).collect();

    let crashed = Home::new();
    let f = crashed.file("events.jsonl", &data);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    eprintln!("clean import took {clean_time:?}; kill seed {seed}");
    let mut rng = Rng(seed | 1);
    let mut killed = 0;
    for round in 0..6 {
        let mut child = crashed
            .cmd(&["import", "--batch-size", BATCH, f.to_str().unwrap()])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Re-runs skip what is already stored and go faster than the
        // clean run, so kill within its first 40%.
        let at = clean_time.as_millis() as u64 * (2 + rng.below(38)) / 100;
        std::thread::sleep(Duration::from_millis(at));
        let _ = child.kill(); // SIGKILL
        let out = child.wait_with_output().unwrap();
        match out.status.signal() {
            Some(9) => killed += 1,
            _ => assert!(
                out.status.success(),
                "round {round}: import neither finished nor was killed: {}",
                stderr(&out)
            ),
        }
        // The store opens after every kill, and no bucket ever holds more
        // than a clean import puts in it.
        for line in crashed.export().lines() {
            let (key, count) = split_count(line);
            let full = want_counts.get(key).copied().unwrap_or(0);
            assert!(
                count <= full,
                "round {round}: {line} exceeds the clean count {full}"
            );
        }
    }
    assert!(
        killed >= 3,
        "only {killed} of 6 rounds were killed mid-import"
    );

    let out = crashed.run(&["import", f.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_same_export(&crashed.export(), &want);
}

/// An export line split into its bucket (everything before `"count":`) and
/// its count.
fn split_count(line: &str) -> (&str, u64) {
    let (key, rest) = line
        .rsplit_once(",\"count\":")
        .expect("export line has a count");
    (
        key,
        rest.trim_end_matches('}')
            .parse()
            .expect("count is a number"),
    )
}
