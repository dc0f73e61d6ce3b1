//! End-to-end: `lull import`, `lull export`, `lull check`, `lull accounts`
//! through the real binary.

#![recursion_limit = "256"]

mod common;

use common::{Home, assert_same_export, event, events, stderr, stdout};

#[test]
fn reimport_counts_once() {
    let home = Home::new();
    let data = events(3_000, 7);
    let f = home.file("events.jsonl", &data);
    let first = home.run(&["import", f.to_str().unwrap()]);
    assert!(first.status.success(), "{}", stderr(&first));
    let once = home.export();
    assert!(!once.is_empty());

    let again = home.run(&["import", f.to_str().unwrap()]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(stderr(&again).contains(" 0 counted"), "{}", stderr(&again));
    assert_same_export(&home.export(), &once);
}

#[test]
fn overlapping_files_count_each_source_and_id_once() {
    let data = events(2_000, 11);
    let lines: Vec<&str> = data.lines().collect();
    let whole = Home::new();
    let f = whole.file("all.jsonl", &data);
    assert!(whole.run(&["import", f.to_str().unwrap()]).status.success());

    let parts = Home::new();
    let a = parts.file("a.jsonl", &(lines[..1_300].join("\n") + "\n"));
    let b = parts.file("b.jsonl", &(lines[700..].join("\n") + "\n"));
    assert!(parts.run(&["import", a.to_str().unwrap()]).status.success());
    assert!(parts.run(&["import", b.to_str().unwrap()]).status.success());
    assert_same_export(&parts.export(), &whole.export());
}

#[test]
fn the_same_id_in_another_source_is_another_event() {
    let home = Home::new();
    let data = [
        event("acme", "forum", "2026-03-02T10:00:00Z", "1", "post"),
        event("acme", "tickets", "2026-03-02T10:00:00Z", "1", "ticket"),
        event("acme", "forum", "2026-03-02T11:00:00Z", "1", "post"),
    ]
    .join("\n");
    let out = home.run_stdin(&["import", "-"], &data);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        home.export(),
        "{\"account\":\"acme\",\"source\":\"forum\",\"kind\":\"post\",\"day\":\"2026-03-02\",\"count\":1}\n\
         {\"account\":\"acme\",\"source\":\"tickets\",\"kind\":\"ticket\",\"day\":\"2026-03-02\",\"count\":1}\n"
    );
}

#[test]
fn malformed_lines_are_named_and_good_lines_are_stored() {
    let home = Home::new();
    let lines = [
        event("acme", "forum", "2026-03-02T10:00:00Z", "ok-1", "post"),
        "{\"account\": \"acme\", \"source\": \"forum\", \"at\": ".to_string(),
        r#"{"account": "acme", "source": "forum", "id": "no-at"}"#.to_string(),
        event("acme", "forum", "2026-02-30T10:00:00Z", "bad-date", "post"),
        event("umbrella", "forum", "2026-03-02T10:00:00Z", "who", "post"),
        r#"{"account": "acme", "source": "forum", "at": "2026-03-02T10:00:00Z", "id": "neg", "count": -4}"#.to_string(),
        String::new(),
        event("globex", "forum", "2026-03-03T10:00:00Z", "ok-2", "post"),
    ];
    let f = home.file("mixed.jsonl", &(lines.join("\n") + "\n"));
    let out = home.run(&["import", f.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a rejected line makes the exit code 1"
    );
    let err = stderr(&out);
    let name = f.display().to_string();
    for (line, what) in [
        (2, "bad JSON"),
        (3, "missing `at`"),
        (4, "not an RFC 3339 timestamp"),
        (5, "unknown account `umbrella`"),
        (6, "positive integer, got -4"),
    ] {
        assert!(
            err.contains(&format!("{name}:{line}: ")) && err.contains(what),
            "line {line} ({what}) not reported in:\n{err}"
        );
    }
    assert!(
        !err.contains(&format!("{name}:1:")) && !err.contains(&format!("{name}:8:")),
        "{err}"
    );
    assert!(err.contains("5 rejected"), "{err}");
    let export = home.export();
    assert_eq!(export.lines().count(), 2, "{export}");
    assert!(export.contains("\"account\":\"acme\"") && export.contains("\"account\":\"globex\""));
}

#[test]
fn the_same_id_with_another_date_counts_once_on_the_first_day_seen() {
    let home = Home::new();
    let first = [
        event("acme", "forum", "2026-03-02T10:00:00Z", "p1", "post"),
        event("acme", "mail", "2026-03-02T10:00:00Z", "m1|a", "open"),
    ]
    .join("\n");
    let out = home.run_stdin(&["import", "-"], &first);
    assert!(out.status.success(), "{}", stderr(&out));
    let once = home.export();
    // The same ids again, a week later and a year earlier, in one file
    // and across files: nothing more is counted.
    let later = [
        event("acme", "forum", "2026-03-09T10:00:00Z", "p1", "post"),
        event("acme", "mail", "2025-03-02T10:00:00Z", "m1|a", "open"),
        event("globex", "forum", "2026-04-01T10:00:00Z", "p1", "post"),
    ]
    .join("\n");
    let out = home.run_stdin(&["import", "-"], &later);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains(" 0 counted"), "{}", stderr(&out));
    assert_eq!(home.export(), once);

    // Within one file too, the line seen first is the one that counts,
    // wherever the file is cut into batches.
    let both = [
        event("acme", "forum", "2026-03-09T10:00:00Z", "p2", "post"),
        event("acme", "forum", "2026-03-02T10:00:00Z", "p2", "post"),
    ];
    let h = Home::new();
    let out = h.run_stdin(&["import", "-"], &both.join("\n"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        h.export(),
        "{\"account\":\"acme\",\"source\":\"forum\",\"kind\":\"post\",\"day\":\"2026-03-09\",\"count\":1}\n"
    );
}

#[test]
fn importing_again_after_a_time_zone_change_counts_nothing_twice() {
    let home = Home::new();
    // 23:30 UTC is the next day in Berlin.
    let data = [
        event("acme", "forum", "2026-03-02T23:30:00Z", "late", "post"),
        event("acme", "forum", "2026-03-02T12:00:00Z", "noon", "post"),
    ]
    .join("\n");
    let out = home.run_stdin(&["import", "-"], &data);
    assert!(out.status.success(), "{}", stderr(&out));
    let utc = home.export();
    assert!(utc.contains(r#""day":"2026-03-02","count":2"#), "{utc}");
    let config = std::fs::read_to_string(home.path().join("lull.toml")).unwrap();
    std::fs::write(
        home.path().join("lull.toml"),
        format!("timezone = \"Europe/Berlin\"\n{config}"),
    )
    .unwrap();
    let out = home.run_stdin(&["import", "-"], &data);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains(" 0 counted"), "{}", stderr(&out));
    assert_eq!(home.export(), utc);
}

#[test]
fn export_then_import_into_a_new_store_is_byte_identical() {
    let home = Home::new();
    let f = home.file("events.jsonl", &events(5_000, 3));
    assert!(home.run(&["import", f.to_str().unwrap()]).status.success());
    let first = home.export();

    let fresh = Home::new();
    let backup = fresh.file("backup.jsonl", &first);
    let out = fresh.run(&["import", backup.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_same_export(&fresh.export(), &first);
    // Restoring the same backup twice changes nothing either.
    assert!(
        fresh
            .run(&["import", backup.to_str().unwrap()])
            .status
            .success()
    );
    assert_same_export(&fresh.export(), &first);
}

#[test]
fn export_filters_by_day() {
    let home = Home::new();
    let data = [
        event("acme", "forum", "2026-03-01T10:00:00Z", "a", "post"),
        event("acme", "forum", "2026-03-02T10:00:00Z", "b", "post"),
        event("acme", "forum", "2026-03-03T10:00:00Z", "c", "post"),
    ]
    .join("\n");
    assert!(home.run_stdin(&["import", "-"], &data).status.success());
    let out = stdout(&home.run(&["export", "--from", "2026-03-02", "--to", "2026-03-02"]));
    assert_eq!(out.lines().count(), 1);
    assert!(out.contains("2026-03-02"));
}

#[test]
fn staff_activity_is_ignored_and_subdomains_map_to_their_account() {
    let home = Home::new();
    let data = [
        event(
            "jane@vendor.example",
            "forum",
            "2026-03-02T10:00:00Z",
            "1",
            "post",
        ),
        event(
            "ops@eu.vendor.example",
            "forum",
            "2026-03-02T10:00:00Z",
            "2",
            "post",
        ),
        event(
            "bob@mail.acme.com",
            "forum",
            "2026-03-02T10:00:00Z",
            "3",
            "post",
        ),
        event("~wile_e", "forum", "2026-03-02T11:00:00Z", "4", "post"),
        event(
            "peter@gmail.com",
            "forum",
            "2026-03-02T10:00:00Z",
            "5",
            "post",
        ),
        event(
            "who@nowhere.example",
            "forum",
            "2026-03-02T10:00:00Z",
            "6",
            "post",
        ),
    ]
    .join("\n");
    let out = home.run_stdin(&["import", "-"], &data);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("2 staff (ignored)"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        home.export(),
        "{\"account\":\"acme\",\"source\":\"forum\",\"kind\":\"post\",\"day\":\"2026-03-02\",\"count\":2}\n\
         {\"account\":\"initech\",\"source\":\"forum\",\"kind\":\"post\",\"day\":\"2026-03-02\",\"count\":1}\n"
    );
    let unmatched: serde_json::Value =
        serde_json::from_str(&stdout(&home.run(&["accounts", "--unmatched", "--json"]))).unwrap();
    assert_eq!(unmatched.as_array().map(Vec::len), Some(1), "{unmatched}");
    assert_eq!(unmatched[0]["actor"], "who@nowhere.example");
    assert_eq!(unmatched[0]["source"], "forum");
    assert_eq!(unmatched[0]["events"], 1);
}

#[test]
fn config_errors_name_the_key_and_line() {
    let home = Home::with(
        "[store]\npath = \"x.db\"\npth = \"y\"\n\n[accounts]\nfile = \"accounts.toml\"\n",
        "[[account]]\nid = \"a\"\nname = \"A\"\ncsm = \"nobody\"\n\n[[account]]\nid = \"a\"\nname = \"A2\"\ncsm = \"c@v.example\"\n",
    );
    let out = home.run(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains("lull.toml:3:1: unknown key `store.pth`"),
        "{text}"
    );

    std::fs::write(home.path().join("lull.toml"), "[store]\npath = \"x.db\"\n").unwrap();
    let text = stdout(&home.run(&["check"]));
    assert!(
        text.contains("accounts.toml:4:7: account `a`: csm `nobody` is not an e-mail address"),
        "{text}"
    );
    assert!(
        text.contains("accounts.toml:7:6: duplicate account id `a` (first defined at line 2)"),
        "{text}"
    );
    assert!(text.contains("2 problem(s) found"), "{text}");

    // Other commands refuse to run on a bad config, and say why.
    let out = home.run(&["export"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("duplicate account id"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn check_accepts_the_contracts_minimal_config() {
    let home = Home::with(
        "[store]\npath = \"data/lull.db\"\n\n[accounts]\nfile = \"accounts.toml\"\n",
        common::ACCOUNTS,
    );
    let out = home.run(&["check"]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(stdout(&out).contains("3 accounts"));
}

#[test]
fn config_path_comes_from_lull_config_when_no_flag() {
    let home = Home::new();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lull"))
        .arg("check")
        .env("LULL_CONFIG", home.path().join("lull.toml"))
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stdout(&out));
}

#[test]
fn accounts_json_has_the_contract_fields() {
    let home = Home::new();
    let data = event("acme", "forum", "2026-03-02T10:00:00Z", "1", "post");
    assert!(home.run_stdin(&["import", "-"], &data).status.success());
    let out = home.run(&["accounts", "--json", "--at", "2026-03-10"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 3);
    for r in rows {
        for key in ["account", "csm", "state"] {
            assert!(r.get(key).is_some(), "missing {key} in {r}");
        }
    }
    assert_eq!(rows[0]["account"], "acme");
    assert_eq!(rows[0]["last_activity"], "2026-03-02");
    assert_eq!(rows[0]["events_8w"], 1);
    let table = stdout(&home.run(&["accounts", "--at", "2026-03-10"]));
    assert!(
        table.lines().next().unwrap().starts_with("ACCOUNT"),
        "{table}"
    );
    assert!(
        table.contains("acme") && table.contains("2026-03-02"),
        "{table}"
    );
}

#[test]
fn a_store_in_use_by_another_lull_is_reported_as_locked() {
    let home = Home::new();
    // An import reading from a stdin we keep open holds the store.
    let mut holder = home
        .cmd(&["import", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the store exists and is held.
    let db = home.path().join("data/lull.db");
    for _ in 0..200 {
        if db.join("db").exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = home.run(&["export"]);
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("locked by another process"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_json_list_is_written_as_it_is_made_and_a_reader_may_leave_early() {
    // 600 accounts: a list several times a pipe's buffer.
    let accounts: String = (0..600)
        .map(|i| {
            format!("[[account]]\nid = \"a{i:03}\"\nname = \"Account {i}\"\ncsm = \"csm@vendor.example\"\n\n")
        })
        .collect();
    let h = Home::with(
        "[store]\npath = \"data/lull.db\"\n[accounts]\nfile = \"accounts.toml\"\n",
        &accounts,
    );
    let f = h.file(
        "one.jsonl",
        &(event("a001", "forum", "2026-03-02T10:00:00Z", "p1", "post") + "\n"),
    );
    assert!(h.run(&["import", f.to_str().unwrap()]).status.success());
    let out = h.run(&["accounts", "--json", "--at", "2026-03-10"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.len() > 2 * 65_536, "{}", text.len());
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v.as_array().map(Vec::len), Some(600));
    // Pretty-printed (two-space indents), one newline at the end.
    assert!(text.starts_with("[\n  {\n    \"account\": \"a000\",\n"));
    assert!(text.ends_with("\n  }\n]\n") && !text.ends_with("\n\n"));
    // A reader that stops after 100 bytes: lull exits 0, says nothing.
    let sh = format!(
        "{} --config {} accounts --json --at 2026-03-10 | head -c 100 >/dev/null; echo ${{PIPESTATUS[0]}}",
        env!("CARGO_BIN_EXE_lull"),
        h.path().join("lull.toml").display(),
    );
    let o = std::process::Command::new("bash")
        .args(["-c", &sh])
        .output()
        .unwrap();
    assert_eq!(stdout(&o).trim(), "0", "{}", stderr(&o));
    assert_eq!(stderr(&o), "", "no error for a reader gone");
}
