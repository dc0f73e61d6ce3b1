//! The store over time and under damage: upgrading version-1, -2 and -3
//! stores (with
//! `kill -9` at random moments of the upgrade), backups that hold
//! everything, and damaged files refused as corrupt with the way back —
//! never a panic, never a silently emptied store.

#![recursion_limit = "256"]

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Home, Rng, assert_same_export, events, stderr, stdout};

/// A store an older lull wrote, kept as a fixture with what that lull
/// printed for it.
#[derive(Clone, Copy)]
struct Old {
    dir: &'static str,
    schema: u32,
}

const V1: Old = Old {
    dir: concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/store-v1"),
    schema: 1,
};
const V2: Old = Old {
    dir: concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/store-v2"),
    schema: 2,
};
const V3: Old = Old {
    dir: concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/store-v3"),
    schema: 3,
};

/// A home holding a copy of an old fixture store (`db`), with its config
/// and accounts.
fn old_home(old: Old) -> Home {
    let mut config = std::fs::read_to_string(format!("{}/lull.toml", old.dir)).unwrap();
    if old.schema == 1 {
        // Version 1's drop-test thresholds (since changed for the watch
        // list), so its judgement of the accounts can be compared as it was.
        config += "\n[detect]\nrecent_days = 42\ndrop_ratio = 0.2\nmax_p = 0.1\n";
    }
    let h = Home::with(
        &config,
        &std::fs::read_to_string(format!("{}/accounts.toml", old.dir)).unwrap(),
    );
    let ok = std::process::Command::new("tar")
        .args(["xzf", &format!("{}/db.tar.gz", old.dir), "-C"])
        .arg(h.path())
        .status()
        .unwrap();
    assert!(ok.success());
    h
}

fn fixture(old: Old, name: &str) -> String {
    std::fs::read_to_string(format!("{}/{name}", old.dir)).unwrap()
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("{e}: {s}"))
}

fn backups(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    v.sort();
    v
}

/// What the older lull printed for the fixture, this lull prints too.
fn assert_reads_like(old: Old, h: &Home) {
    let fixture = |name: &str| fixture(old, name);
    assert_same_export(&h.export(), &fixture("export.jsonl"));
    let alerts = h.run(&["alerts", "--json"]);
    assert!(alerts.status.success(), "{}", stderr(&alerts));
    assert_eq!(json(&stdout(&alerts)), json(&fixture("alerts.json")));
    let unmatched = h.run(&["accounts", "--unmatched", "--json"]);
    assert_eq!(json(&stdout(&unmatched)), json(&fixture("unmatched.json")));
    let accounts = h.run(&["accounts", "--json", "--at", "2026-07-06"]);
    assert!(accounts.status.success(), "{}", stderr(&accounts));
    // Who, how judged, snoozed: as version 1 said. (Last activity and the
    // weekly counts no longer count the vendor's deliveries, on purpose.)
    let pick = |v: serde_json::Value| -> Vec<serde_json::Value> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|a| {
                serde_json::json!([
                    a["account"],
                    a["csm"],
                    a["state"],
                    a["channels"],
                    a["snoozed"]
                ])
            })
            .collect()
    };
    assert_eq!(
        pick(json(&stdout(&accounts))),
        pick(json(&fixture("accounts.json")))
    );
}

fn upgraded_in_place_after_a_backup_and_reads_the_same(old: Old) {
    let h = old_home(old);
    let out = h.run(&["export"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "upgrading a store from schema version {}",
            old.schema
        )),
        "{}",
        stderr(&out)
    );
    // The backup taken first restores to the same data.
    let taken = backups(&h.path().join("backups"));
    assert_eq!(taken.len(), 1, "{taken:?}");
    assert!(
        taken[0]
            .to_string_lossy()
            .ends_with(&format!("-schema{}.backup.gz", old.schema))
    );
    assert_reads_like(old, &h);
    // Nothing of the upgrade is left beside the store.
    let beside: Vec<String> = std::fs::read_dir(h.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("db."))
        .collect();
    assert!(beside.is_empty(), "{beside:?}");
    // The cursors came along: the backup of the upgraded store has them.
    let b = h.path().join("after.backup.gz");
    let out = h.run(&["backup", b.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = gunzip(&b);
    assert!(
        text.contains(r#""t":"cursor","source":"forum","value":{"before":123456"#),
        "{text}"
    );
    assert!(text.contains(r#""t":"snooze","account":"initech""#));
    assert!(text.contains(r#""t":"state","account":"globex""#));
    // The ids counted came along too: an event counted on the old store's
    // first day, imported again on its day and on another, counts nothing.
    let again = r#"{"account":"acme","source":"forum","at":"2026-06-20T10:00:00Z","id":"post-3","kind":"post"}
{"account":"acme","source":"forum","at":"2025-02-01T10:00:00Z","id":"post-3","kind":"post"}
"#;
    let out = h.run_stdin(&["import", "-"], again);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_reads_like(old, &h);

    // And the pre-upgrade backup restores to a store that reads the same.
    let r = old_home(old);
    std::fs::remove_dir_all(r.path().join("db")).unwrap();
    let out = r.run(&["restore", taken[0].to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_reads_like(old, &r);
}

#[test]
fn a_version_1_store_is_upgraded_in_place_after_a_backup_and_reads_the_same() {
    upgraded_in_place_after_a_backup_and_reads_the_same(V1);
}

#[test]
fn a_version_2_store_is_upgraded_in_place_after_a_backup_and_reads_the_same() {
    upgraded_in_place_after_a_backup_and_reads_the_same(V2);
}

#[test]
fn a_version_3_store_is_upgraded_in_place_after_a_backup_and_reads_the_same() {
    upgraded_in_place_after_a_backup_and_reads_the_same(V3);
}

fn kill_9_during_upgrades(old: Old, rounds: u32) {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    eprintln!("kill seed {seed}");
    let mut rng = Rng(seed | 1);
    // How long an upgrade takes here, to aim the kills inside it.
    let h = old_home(old);
    let t = std::time::Instant::now();
    assert!(h.run(&["alerts"]).status.success());
    let whole = t.elapsed().as_micros() as u64;
    let mut mid = 0;
    for round in 0..rounds {
        let h = old_home(old);
        let mut child = h
            .cmd(&["alerts"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(rng.below(whole.max(1))));
        let _ = child.kill();
        let status = child.wait().unwrap();
        let left: Vec<String> = std::fs::read_dir(h.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("db.") || n == "backups")
            .collect();
        if status.signal() == Some(9) && !left.is_empty() {
            mid += 1;
        }
        // Whatever moment it was, the next open finds the old store (and
        // upgrades it) or the new one, never a mix.
        assert_reads_like(old, &h);
        eprintln!("round {round}: {status:?}, left {left:?}");
    }
    assert!(
        mid >= rounds / 6,
        "only {mid} of {rounds} kills landed during an upgrade"
    );
}

#[test]
fn kill_9_at_random_moments_of_the_upgrade_leaves_the_old_or_the_new_store() {
    kill_9_during_upgrades(V1, 16);
    kill_9_during_upgrades(V2, 16);
    kill_9_during_upgrades(V3, 16);
}

fn gunzip(p: &Path) -> String {
    let out = std::process::Command::new("gzip")
        .args(["-dc"])
        .arg(p)
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

/// A store with activity, coverage, a detection run with queued alerts,
/// and a snooze.
fn busy_home() -> Home {
    let h = Home::new();
    let mut text = events(20_000, 7);
    // acme posts daily for 18 months, then stops; globex goes on.
    let start = chrono::NaiveDate::from_ymd_opt(2024, 6, 1).unwrap();
    for d in 0..640u64 {
        let day = start + chrono::Days::new(d);
        for (who, until) in [("acme", 560u64), ("globex", 640)] {
            if d < until {
                text.push_str(&common::event(
                    who,
                    "forum",
                    &format!("{day}T10:00:00Z"),
                    &format!("{who}-{d}"),
                    "post",
                ));
                text.push('\n');
            }
        }
    }
    let f = h.file("events.jsonl", &text);
    let out = h.run(&["import", f.to_str().unwrap()]);
    assert!(
        out.status.code() == Some(1) || out.status.success(),
        "{}",
        stderr(&out)
    );
    let out = h.run(&["detect", "--at", "2026-03-01", "--no-send"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // (Snoozing acme would drop its queued alert: the engaged account.)
    let out = h.run(&[
        "snooze",
        "globex",
        "--until",
        "2099-01-01",
        "--reason",
        "renewal",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    h
}

#[test]
fn a_backup_holds_everything_and_restoring_it_gives_the_same_file_again() {
    let h = busy_home();
    let one = h.path().join("one.backup.gz");
    let out = h.run(&["backup", one.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = gunzip(&one);
    for t in [
        "series", "ids", "people", "coverage", "state", "judged", "snooze", "outbox", "parked",
    ] {
        assert!(
            text.contains(&format!(r#"{{"t":"{t}""#)),
            "no {t} record in the backup"
        );
    }
    let want_export = h.export();
    let want_alerts = stdout(&h.run(&["alerts", "--json"]));
    let want_accounts = stdout(&h.run(&["accounts", "--json"]));

    // Restoring over the existing store is refused, and names the way.
    let out = h.run(&["restore", one.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("already holds a store"),
        "{}",
        stderr(&out)
    );

    std::fs::rename(h.path().join("data/lull.db"), h.path().join("old.db")).unwrap();
    let out = h.run(&["restore", one.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_same_export(&h.export(), &want_export);
    assert_eq!(stdout(&h.run(&["alerts", "--json"])), want_alerts);
    assert_eq!(stdout(&h.run(&["accounts", "--json"])), want_accounts);
    let two = h.path().join("two.backup.gz");
    assert!(h.run(&["backup", two.to_str().unwrap()]).status.success());
    assert_eq!(std::fs::read(&one).unwrap(), std::fs::read(&two).unwrap());

    // A restored store counts nothing twice.
    let f = h.file("again.jsonl", &events(20_000, 7));
    let out = h.run(&["import", f.to_str().unwrap()]);
    assert!(stderr(&out).contains(" 0 counted"), "{}", stderr(&out));

    // A truncated backup is refused by `restore --verify` and `restore`.
    let bytes = std::fs::read(&one).unwrap();
    let cut = h.path().join("cut.backup.gz");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let out = h.run(&["restore", "--verify", cut.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    std::fs::remove_dir_all(h.path().join("data/lull.db")).unwrap();
    let out = h.run(&["restore", cut.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        !h.path().join("data/lull.db").exists(),
        "a failed restore left a store"
    );
}

#[test]
fn damaged_store_files_are_refused_as_corrupt_with_the_restore_command_never_a_panic() {
    let base = busy_home();
    // A backup where the config says backups go, then more writes.
    let dir = base.path().join("data/backups");
    std::fs::create_dir_all(&dir).unwrap();
    let newest = dir.join("lull-20260301T023000Z.backup.gz");
    assert!(
        base.run(&["backup", newest.to_str().unwrap()])
            .status
            .success()
    );
    let f = base.file("more.jsonl", &events(30_000, 99));
    base.run(&["import", f.to_str().unwrap()]);
    let want = base.export();
    let db = base.path().join("data/lull.db/db");
    let len = std::fs::metadata(&db).unwrap().len();

    type Damage = Box<dyn Fn(&Path)>;
    let zero = |at: u64, n: usize| -> Damage {
        Box::new(move |p: &Path| {
            use std::io::{Seek, Write};
            let mut f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
            f.seek(std::io::SeekFrom::Start(at)).unwrap();
            f.write_all(&vec![0u8; n]).unwrap();
        })
    };
    let truncate = |to: u64| -> Damage {
        Box::new(move |p: &Path| {
            std::fs::OpenOptions::new()
                .write(true)
                .open(p)
                .unwrap()
                .set_len(to)
                .unwrap();
        })
    };
    let mut damages: Vec<(String, Damage)> = vec![
        ("torn tail: last KiB zeroed".into(), zero(len - 1024, 1024)),
        ("a zeroed block in the middle".into(), zero(len / 2, 4096)),
    ];
    for frac in [1, 10, 30, 50, 70, 90, 99] {
        damages.push((format!("truncated to {frac}%"), truncate(len * frac / 100)));
    }
    let mut corrupt = 0;
    // Each damage to a store closed cleanly (sled wrote a snapshot) and to
    // one whose last writer was killed (sled must replay its log).
    let cases = damages.iter().flat_map(|(what, d)| {
        [
            (what.clone(), d, true),
            (format!("{what}, no snapshot"), d, false),
        ]
    });
    for (what, damage, snapshot) in cases {
        let h = Home::with(
            &std::fs::read_to_string(base.path().join("lull.toml")).unwrap(),
            common::ACCOUNTS,
        );
        copy_dir(&base.path().join("data"), &h.path().join("data"));
        if !snapshot {
            for e in std::fs::read_dir(h.path().join("data/lull.db")).unwrap() {
                let e = e.unwrap();
                if e.file_name().to_string_lossy().starts_with("snap.") {
                    std::fs::remove_file(e.path()).unwrap();
                }
            }
        }
        damage(&h.path().join("data/lull.db/db"));
        let out = h.run(&["export"]);
        let err = stderr(&out);
        assert_ne!(out.status.code(), Some(101), "{what}: a panic: {err}");
        if out.status.success() {
            // sled could read it whole: then it is all there.
            assert_same_export(&stdout(&out), &want);
            eprintln!("{what}: read whole");
            continue;
        }
        corrupt += 1;
        eprintln!("{what}: {}", err.lines().last().unwrap_or(""));
        assert_eq!(out.status.code(), Some(2), "{what}: {err}");
        assert!(err.contains("is corrupt"), "{what}: {err}");
        let cmd = format!(
            "lull restore {}",
            h.path()
                .join("data/backups/lull-20260301T023000Z.backup.gz")
                .display()
        );
        assert!(err.contains(&cmd) && err.contains("mv "), "{what}: {err}");
        // Following the advice gives back the backup's data.
        std::fs::rename(
            h.path().join("data/lull.db"),
            h.path().join("data/lull.db.corrupt"),
        )
        .unwrap();
        let out = h.run(&[
            "restore",
            h.path()
                .join("data/backups/lull-20260301T023000Z.backup.gz")
                .to_str()
                .unwrap(),
        ]);
        assert!(out.status.success(), "{what}: {}", stderr(&out));
        assert!(h.export().lines().count() > 100);
    }
    assert!(corrupt >= 10, "only {corrupt} damages were noticed");
}

fn copy_dir(from: &Path, to: &Path) {
    let ok = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(ok.success());
}

/// Overwrites the values of every key of `tree` that starts with `key`
/// (a key-space prefix, or a whole key) with bytes no reader accepts.
/// Returns false when there is no such key.
fn damage_value(store: &Path, tree: &str, key: &[u8]) -> bool {
    let db = sled::Config::new().path(store).open().unwrap();
    let t = db.open_tree(tree).unwrap();
    let keys: Vec<sled::IVec> = t
        .scan_prefix(key)
        .map(|r| r.unwrap().0)
        .filter(|k| !k.is_empty()) // not the generation
        .collect();
    for k in &keys {
        t.insert(k, &b"\x01\xffnot"[..]).unwrap();
    }
    db.flush().unwrap();
    !keys.is_empty()
}

/// Stores bytes no reader accepts under `key` of `tree`, which holds
/// none yet.
fn plant_value(store: &Path, tree: &str, key: &[u8]) {
    let db = sled::Config::new().path(store).open().unwrap();
    let t = db.open_tree(tree).unwrap();
    assert!(t.get(key).unwrap().is_none(), "{tree} already has {key:?}");
    t.insert(key, &b"\x01\xffnot"[..]).unwrap();
    db.flush().unwrap();
}

#[test]
fn a_value_damaged_in_each_key_space_is_reported_by_name_never_skipped() {
    let base = busy_home();
    // What each key space is called, and a command that reads it.
    let forum_event = common::event("acme", "forum", "2026-02-01T10:00:00Z", "new-1", "post");
    let cases: [(&str, &[u8], &str, &[&str]); 10] = [
        (
            "activity",
            b"iforum\0",
            "the ids of counted events",
            &["import", "-"],
        ),
        ("activity", b"b", "an account's daily series", &["export"]),
        (
            "activity",
            b"R",
            "a coverage range",
            &["accounts", "--json"],
        ),
        (
            "activity",
            b"u",
            "unmatched events",
            &["accounts", "--unmatched", "--json"],
        ),
        (
            "activity",
            b"h",
            "who was active on a channel",
            &["detect", "--dry-run", "--at", "2026-03-02"],
        ),
        ("activity", b"l", "who was seen last", &["backup", "-"]),
        ("alerts", b"s", "detection state", &["accounts", "--json"]),
        ("alerts", b"z", "snooze", &["accounts", "--json"]),
        (
            "alerts",
            b"last_day",
            "last judged day",
            &["detect", "--dry-run", "--at", "2026-03-02"],
        ),
        ("outbox", b"", "outbox entry", &["alerts", "--json"]),
    ];
    // Key spaces the busy store leaves empty get one damaged value of
    // their own: a delivery record (under its Message-ID), feedback on an
    // alert (f · account · 0 · day 2026-03-01 · kind) and a source marked
    // stale (t · source).
    let planted: [(&str, &[u8], &str, &[&str]); 3] = [
        (
            "mail",
            b"<lull.20260301.abcd@vendor.example>",
            "delivery record",
            &["alerts", "--json"],
        ),
        (
            "alerts",
            b"facme\0\x80\x00\x50\x21silent",
            "feedback",
            &["backtest", "--from", "2026-02-25", "--to", "2026-03-01"],
        ),
        (
            "alerts",
            b"tforum",
            "stale-source marker",
            &["detect", "--dry-run", "--at", "2026-03-02"],
        ),
    ];
    let cases = cases
        .into_iter()
        .map(|c| (c, false))
        .chain(planted.into_iter().map(|c| (c, true)));
    let mut failed = Vec::new();
    for ((tree, key, name, args), plant) in cases {
        let h = Home::with(
            &std::fs::read_to_string(base.path().join("lull.toml")).unwrap(),
            common::ACCOUNTS,
        );
        copy_dir(&base.path().join("data"), &h.path().join("data"));
        let store = h.path().join("data/lull.db");
        if plant {
            plant_value(&store, tree, key);
        } else {
            assert!(
                damage_value(&store, tree, key),
                "the busy store has no {name}"
            );
        }
        let out = h.run_stdin(args, &forum_event);
        let (err, said) = (stderr(&out), stdout(&out));
        // An unreadable outbox entry does not hold back the others: it is
        // listed as a failed message that names it.
        let listed = tree == "outbox" && said.contains(name);
        if !(listed || !out.status.success() && err.contains(name)) {
            failed.push(format!(
                "{name} via {args:?}: {:?} {err} {said}",
                out.status.code()
            ));
        }
        // A backup reads every key space: it refuses this one by name too.
        let b = h.path().join("x.backup.gz");
        let out = h.run(&["backup", b.to_str().unwrap()]);
        let err = stderr(&out);
        if out.status.success() || !err.contains(name) {
            failed.push(format!("{name} via backup: {err}"));
        }
    }
    assert!(failed.is_empty(), "{failed:#?}");
}

/// The community totals are derived from the series: damaged, they are
/// reported by name and summed again from the series when the store opens
/// (a backup leaves them out; restoring a backup sums them the same way).
#[test]
fn damaged_community_totals_are_reported_by_name_and_summed_again() {
    let base = busy_home();
    let judge = ["detect", "--dry-run", "--json", "--at", "2026-03-02"];
    let before = base.run(&judge);
    assert!(before.status.success(), "{}", stderr(&before));
    // The stamp and every total; one total; the lists of accounts.
    for key in [&b"T"[..], b"Tforum\0", b"a"] {
        let h = Home::with(
            &std::fs::read_to_string(base.path().join("lull.toml")).unwrap(),
            common::ACCOUNTS,
        );
        copy_dir(&base.path().join("data"), &h.path().join("data"));
        let store = h.path().join("data/lull.db");
        assert!(
            damage_value(&store, "activity", key),
            "no {key:?} to damage"
        );
        let out = h.run(&judge);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("community totals")
                || stderr(&out).contains("list of accounts with activity"),
            "damaged {key:?} not reported: {}",
            stderr(&out)
        );
        assert_eq!(stdout(&out), stdout(&before), "judged differently");
        // Summed again: the next command finds nothing to report.
        let again = h.run(&judge);
        assert!(
            again.status.success() && !stderr(&again).contains("community totals"),
            "{}",
            stderr(&again)
        );
        assert_eq!(stdout(&again), stdout(&before));
    }
}
