//! Alert e-mails end to end: the real binary, a real SMTP server process
//! (aiosmtpd) and histories whose answer is known. Every test also shows
//! the e-mail that *does* arrive, so none can pass by sending nothing.

#![recursion_limit = "256"]

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::scenario::*;
use common::smtp::{Smtp, closed_port};
use common::{Home, Rng, stderr, stdout};

#[test]
fn one_digest_per_csm_with_text_html_and_chart_and_nothing_twice() {
    let smtp = Smtp::start(&[]);
    let list = [
        Acct("acme", "Acme Corp", "jane@vendor.example", None, true),
        Acct("globex", "Globex", "jane@vendor.example", None, true),
        Acct("initech", "Initech", "jane@vendor.example", None, false),
        Acct("umbrella", "Umbrella", "sam@vendor.example", None, true),
        Acct(
            "trialco",
            "Trial Co",
            "sam@vendor.example",
            Some("trial"),
            true,
        ),
    ];
    let h = setup(
        &list,
        &smtp_config(smtp.port, "[detect.segment.trial]\nmute = true\n"),
    );
    let out = detect(&h, TODAY, &[]);
    assert!(stderr(&out).contains("2 sent"), "{}", stderr(&out));

    let mails = smtp.mails();
    assert_eq!(mails.len(), 2, "one e-mail per CSM: {mails:#?}");
    let jane = mails
        .iter()
        .find(|m| s(&m["to"]).contains("jane"))
        .expect("jane's");
    let sam = mails
        .iter()
        .find(|m| s(&m["to"]).contains("sam"))
        .expect("sam's");
    assert_eq!(
        s(&jane["subject"]),
        "[lull] 2 accounts went quiet: Acme Corp and Globex"
    );
    assert_eq!(s(&sam["subject"]), "[lull] Umbrella went quiet");
    assert_eq!(s(&jane["from"]), "lull <lull@vendor.example>");
    assert_eq!(s(&jane["auto_submitted"]), "auto-generated");
    let text = s(&jane["text"]);
    for want in [
        "Acme Corp (acme) went quiet",
        "Globex (globex) went quiet",
        "forum posts (forum): 0 in the last 28 days; about 55 expected",
        "0% of its usual level",
        "less than once in 1,000",
        &format!(
            "Last activity seen: {} by acme_user (forum posts (forum))",
            day(TODAY - 60)
        ),
        "Quiet since",
    ] {
        assert!(text.contains(want), "text lacks {want:?}:\n{text}");
    }
    assert!(
        !text.contains("Initech"),
        "an engaged account is not mentioned"
    );
    let html = s(&jane["html"]);
    assert!(html.contains("<b>forum posts (forum)</b>"), "{html}");
    let images = jane["images"].as_array().expect("images");
    assert_eq!(images.len(), 2, "one chart per account");
    for img in images {
        assert_eq!(img["png"], true);
        let cid = s(&img["cid"]).trim_matches(['<', '>']);
        assert!(
            html.contains(&format!("src=\"cid:{cid}\"")),
            "{cid} not in the HTML"
        );
    }
    // The muted segment decided nothing; Trial Co is not in Sam's mail.
    assert!(!s(&sam["text"]).contains("Trial Co"));

    // Re-running detection for the day, delivering again: nothing new.
    detect(&h, TODAY, &[]);
    let out = h.run(&["deliver"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("the outbox is empty"));
    assert_eq!(smtp.mails().len(), 2);
    // The next day: the episodes are open, no new alert.
    detect(&h, TODAY + 1, &[]);
    assert_eq!(smtp.mails().len(), 2);

    let records = alerts_json(&h);
    let sent = with_status(&records, "sent");
    assert_eq!(sent.len(), 2, "{records:#?}");
    let ids: Vec<&str> = mails.iter().map(|m| s(&m["message_id"])).collect();
    for r in &sent {
        assert!(ids.contains(&format!("<{}>", s(&r["message_id"])).as_str()));
        assert!(r["sent_at"].is_string() && r["queued_at"].is_string());
        assert_eq!(r["attempts"], 1);
    }
    let table = stdout(&h.run(&["alerts"]));
    assert!(table.contains("0 queued, 2 sent, 0 failed"), "{table}");
}

#[test]
fn smtp_down_then_up_and_kill_9_while_retrying_still_deliver_exactly_once() {
    let port = closed_port();
    let list = [
        Acct("a1", "A One", "csm1@vendor.example", None, true),
        Acct("a2", "A Two", "csm2@vendor.example", None, true),
        Acct("a3", "A Three", "csm3@vendor.example", None, true),
    ];
    let h = setup(&list, &smtp_config(port, ""));
    // Relay down: detection still exits 0, the alerts stay queued.
    let out = detect(&h, TODAY, &[]);
    let err = stderr(&out);
    assert!(err.contains("3 still queued"), "{err}");
    assert!(
        err.contains("Connection refused") || err.contains("connection"),
        "{err}"
    );
    let records = alerts_json(&h);
    assert_eq!(with_status(&records, "queued").len(), 3, "{records:#?}");
    // The relay being down stops a pass at its first message.
    assert!(records.iter().any(|r| r["attempts"].as_u64() >= Some(1)));
    let out = h.run(&["deliver"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "deliver exits 1 while mail is left"
    );

    // kill -9 while `deliver` waits to retry.
    let mut child = h
        .cmd(&["deliver"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    std::thread::sleep(Duration::from_millis(700));
    child.kill().expect("kill -9");
    child.wait().expect("wait");

    // The relay comes up on the configured port.
    let smtp = Smtp::start_on(port, &[]);
    let out = h.run(&["deliver"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mails = smtp.mails();
    assert_eq!(mails.len(), 3);
    assert!(arrivals(&mails).values().all(|n| *n == 1), "{mails:#?}");
    let out = h.run(&["deliver"]);
    assert!(out.status.success());
    assert_eq!(smtp.mails().len(), 3, "nothing is sent twice");
    let records = alerts_json(&h);
    assert_eq!(with_status(&records, "sent").len(), 3);
}

#[test]
fn kill_9_at_random_moments_of_delivery_repeats_at_most_the_accepted_instant() {
    // A slow relay (each DATA answered after 40 ms) so kills land in every
    // phase: connecting, sending, waiting for the 250, recording.
    let smtp = Smtp::start(&["--delay-ms", "40"]);
    let list: Vec<(String, String)> = (0..30)
        .map(|i| (format!("acct{i:02}"), format!("csm{i:02}@vendor.example")))
        .collect();
    let accts: Vec<Acct<'_>> = list
        .iter()
        .map(|(id, csm)| Acct(id, id, csm, None, true))
        .collect();
    let h = setup(&accts, &smtp_config(smtp.port, ""));
    detect(&h, TODAY, &["--no-send"]);
    assert_eq!(smtp.mails().len(), 0, "--no-send sends nothing");
    assert_eq!(with_status(&alerts_json(&h), "queued").len(), 30);

    let mut rng = Rng(7);
    let mut kills = 0;
    for _ in 0..8 {
        let mut child = h
            .cmd(&["deliver"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        std::thread::sleep(Duration::from_millis(30 + rng.below(250)));
        if child.try_wait().expect("poll").is_none() {
            child.kill().expect("kill -9");
            kills += 1;
        }
        child.wait().expect("wait");
    }
    let out = h.run(&["deliver"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let got = arrivals(&smtp.mails());
    assert_eq!(got.len(), 30, "every alert arrived");
    let repeats: usize = got.values().map(|n| n - 1).sum();
    // Four sends are in flight at once, so one kill can catch up to four
    // between the relay's acceptance and the record.
    assert!(
        repeats <= kills * 4,
        "{repeats} repeats with {kills} kills: only a kill between accept and record may repeat"
    );
    assert!(kills >= 3, "the kills must land mid-delivery ({kills})");
    let records = alerts_json(&h);
    assert_eq!(with_status(&records, "sent").len(), 30);
    // And each repeat is on record: the attempt was written before the
    // send, so a kill during it is known as an unknown outcome.
    for r in &records {
        let id = r["message_id"].as_str().expect("id");
        let n = *got
            .get(&format!("<{id}>"))
            .unwrap_or_else(|| panic!("{id} never arrived: {got:?}"));
        let unknown = r["unknown_outcomes"].as_u64().unwrap_or(0) as usize;
        assert!(
            n <= 1 + unknown,
            "arrived {n} times, {unknown} unknown outcome(s): {r}"
        );
    }
    assert_eq!(with_status(&records, "queued").len(), 0);
}

/// A test CA and a certificate for localhost/127.0.0.1 signed by it.
fn test_ca(dir: &std::path::Path) -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca = CertificateParams::new(Vec::new()).expect("ca params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "lull test CA");
    let ca_cert = ca.self_signed(&ca_key).expect("ca cert");
    let leaf_key = KeyPair::generate().expect("leaf key");
    let leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .expect("leaf params");
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).expect("leaf cert");
    let write = |name: &str, text: String| {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write pem");
        p.to_str().expect("utf-8").to_string()
    };
    (
        write("ca.pem", ca_cert.pem()),
        write("cert.pem", leaf_cert.pem()),
        write("key.pem", leaf_key.serialize_pem()),
    )
}

#[test]
fn starttls_with_a_test_ca_and_auth_delivers_and_no_secret_reaches_the_logs() {
    let certs = tempfile::tempdir().expect("tempdir");
    let (ca, cert, key) = test_ca(certs.path());
    let password = "s3cret-Pa55word-xyzzy";
    let api_key = "forum-api-key-0123456789abcdef";
    let smtp = Smtp::start(&[
        "--tlscert",
        &cert,
        "--tlskey",
        &key,
        "--auth",
        &format!("lull:{password}"),
    ]);
    let list = [Acct("acme", "Acme Corp", "jane@vendor.example", None, true)];
    let config = format!(
        "[store]\npath = \"data/lull.db\"\n[accounts]\nfile = \"accounts.toml\"\n\
         [smtp]\nhost = \"localhost\"\nport = {}\ntls = \"starttls\"\nfrom = \"lull@vendor.example\"\n\
         username = \"lull\"\npassword_env = \"LULL_TEST_SMTP_PASSWORD\"\nca_file = \"{ca}\"\nretry_secs = 2\ntimeout_secs = 5\n",
        smtp.port
    );
    let h = setup(&list, &config);
    let at = day(TODAY).to_string();
    let out = h
        .cmd(&["detect", "--at", &at])
        .env("LULL_TEST_SMTP_PASSWORD", password)
        .env("LULL_TEST_FORUM_KEY", api_key)
        .env("RUST_LOG", "trace")
        .output()
        .expect("run");
    let logs = stderr(&out);
    assert!(out.status.success(), "{logs}");
    assert_eq!(smtp.mails().len(), 1, "{logs}");
    assert!(logs.contains("alert e-mail sent"), "logs are on: {logs}");

    // A wrong password is refused by the relay and the alert stays queued,
    // its error recorded, without the password.
    let b64 = |s: &str| {
        use std::io::Write;
        let mut c = std::process::Command::new("base64")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("base64");
        c.stdin
            .take()
            .expect("stdin")
            .write_all(s.as_bytes())
            .expect("write");
        String::from_utf8(c.wait_with_output().expect("out").stdout)
            .expect("utf-8")
            .trim()
            .to_string()
    };
    let list2 = [Acct("globex", "Globex", "sam@vendor.example", None, true)];
    let h2 = setup(&list2, &config);
    let out2 = h2
        .cmd(&["detect", "--at", &at])
        .env("LULL_TEST_SMTP_PASSWORD", "wrong-password-42")
        .env("RUST_LOG", "trace")
        .output()
        .expect("run");
    let logs2 = stderr(&out2);
    // A bad password is the relay's configuration, not the message's
    // fault: the alert stays queued for when it is fixed.
    assert!(logs2.contains("1 still queued"), "{logs2}");
    assert!(logs2.contains("535"), "{logs2}");
    assert!(
        logs2.contains("password_env"),
        "the error says what to check: {logs2}"
    );
    let stored = stdout(&h2.run(&["alerts", "--json"]));
    for secret in [
        password.to_string(),
        b64(password),
        b64(&format!("\0lull\0{password}")),
        api_key.to_string(),
        "wrong-password-42".to_string(),
        b64("wrong-password-42"),
        b64("\0lull\0wrong-password-42"),
    ] {
        for (what, text) in [("logs", &logs), ("logs", &logs2), ("alerts", &stored)] {
            assert!(!text.contains(&secret), "a secret is in the {what}");
        }
    }
}

#[test]
fn implicit_tls_with_the_test_ca_and_an_unknown_ca_refused() {
    let certs = tempfile::tempdir().expect("tempdir");
    let (ca, cert, key) = test_ca(certs.path());
    let smtp = Smtp::start(&["--implicit-tls", "--tlscert", &cert, "--tlskey", &key]);
    let list = [Acct("acme", "Acme Corp", "jane@vendor.example", None, true)];
    let config = |ca_line: &str| {
        format!(
            "[store]\npath = \"data/lull.db\"\n[accounts]\nfile = \"accounts.toml\"\n\
             [smtp]\nhost = \"localhost\"\nport = {}\ntls = \"tls\"\nfrom = \"lull@vendor.example\"\nretry_secs = 1\ntimeout_secs = 5\n{ca_line}",
            smtp.port
        )
    };
    // Without the test CA, the relay's certificate is not trusted.
    let h = setup(&list, &config(""));
    let out = detect(&h, TODAY, &[]);
    assert!(stderr(&out).contains("1 still queued"), "{}", stderr(&out));
    assert_eq!(smtp.mails().len(), 0);
    // With it (ca_file), the same alert goes out over TLS.
    std::fs::write(
        h.path().join("lull.toml"),
        config(&format!("ca_file = \"{ca}\"\n")),
    )
    .expect("config");
    let out = h.run(&["deliver"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(smtp.mails().len(), 1);
}

#[test]
fn back_to_normal_notice_when_a_quiet_account_is_active_again() {
    let smtp = Smtp::start(&[]);
    let list = [Acct("acme", "Acme Corp", "jane@vendor.example", None, true)];
    let h = setup(
        &list,
        &smtp_config(smtp.port, "[detect]\nrecover_days = 7\n"),
    );
    detect(&h, TODAY, &[]);
    // Back to three posts a day (and the community goes on) for 30 days.
    let mut lines = Vec::new();
    for d in TODAY + 1..=TODAY + 30 {
        for id in STEADY.iter().chain(["acme"].iter()) {
            lines.push(format!(
                r#"{{"account": "{id}", "source": "forum", "at": "{}T12:00:00Z", "id": "{id}-{d}", "kind": "post", "count": 3}}"#,
                day(d)
            ));
        }
    }
    let f = h.file("more.jsonl", &(lines.join("\n") + "\n"));
    let out = h.run(&["import", f.to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", stderr(&out));
    for d in 1..=30 {
        detect(&h, TODAY + d, &[]);
    }
    let mails = smtp.mails();
    assert_eq!(mails.len(), 2, "the alert, then one recovery: {mails:#?}");
    assert!(has_subject(&mails, "[lull] Acme Corp went quiet"));
    let back = mails
        .iter()
        .find(|m| s(&m["subject"]) == "[lull] Acme Corp is active again")
        .expect("recovery notice");
    assert!(s(&back["text"]).contains("Acme Corp (acme) is active again"));
}

#[test]
fn starttls_required_refuses_a_plain_relay_and_keeps_the_alert() {
    let smtp = Smtp::start(&[]);
    let list = [Acct("acme", "Acme Corp", "jane@vendor.example", None, true)];
    let plain = smtp_config(smtp.port, "");
    let h = setup(
        &list,
        &plain.replace("tls = \"none\"", "tls = \"starttls\""),
    );
    let out = detect(&h, TODAY, &[]);
    let err = stderr(&out);
    assert!(err.contains("1 still queued"), "{err}");
    assert!(
        err.to_lowercase().contains("starttls") || err.contains("TLS"),
        "{err}"
    );
    assert_eq!(smtp.mails().len(), 0, "nothing goes out in clear");
    // The same relay with tls = "none" (a deliberate choice) gets it.
    std::fs::write(h.path().join("lull.toml"), &plain).expect("config");
    let out = h.run(&["deliver"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(smtp.mails().len(), 1);
}

#[test]
fn snooze_suppresses_and_unsnooze_lets_the_open_episode_through() {
    let smtp = Smtp::start(&[]);
    let list = [
        Acct("acme", "Acme Corp", "jane@vendor.example", None, true),
        Acct("globex", "Globex", "jane@vendor.example", None, true),
    ];
    let h = setup(&list, &smtp_config(smtp.port, ""));
    let out = h.run(&[
        "snooze",
        "acme",
        "--until",
        "2099-01-01",
        "--reason",
        "renewal call on Friday",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = h.run(&["snooze", "nosuch", "--until", "2099-01-01", "--reason", "x"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no account `nosuch`"),
        "{}",
        stderr(&out)
    );
    let out = h.run(&["snooze", "acme", "--until", "2001-01-01", "--reason", "x"]);
    assert!(stderr(&out).contains("in the past"), "{}", stderr(&out));

    detect(&h, TODAY, &[]);
    let mails = smtp.mails();
    assert_eq!(mails.len(), 1);
    assert_eq!(s(&mails[0]["subject"]), "[lull] Globex went quiet");
    let accounts = stdout(&h.run(&["accounts", "--at", &day(TODAY).to_string()]));
    assert!(
        accounts.contains("snoozed to 2099-01-01: renewal call on Friday"),
        "{accounts}"
    );

    let out = h.run(&["unsnooze", "acme"]);
    assert!(out.status.success());
    detect(&h, TODAY + 1, &[]);
    let mails = smtp.mails();
    assert_eq!(mails.len(), 2);
    assert!(
        has_subject(&mails, "[lull] Acme Corp went quiet"),
        "{mails:#?}"
    );
}

#[test]
fn a_reminder_only_after_the_cool_down() {
    let smtp = Smtp::start(&[]);
    let list = [Acct("acme", "Acme Corp", "jane@vendor.example", None, true)];
    let h = setup(
        &list,
        &smtp_config(smtp.port, "[detect]\nreminder_days = 7\n"),
    );
    detect(&h, TODAY, &[]);
    for d in 1..7 {
        detect(&h, TODAY + d, &[]);
    }
    assert_eq!(smtp.mails().len(), 1, "no reminder inside the cool-down");
    detect(&h, TODAY + 7, &[]);
    let mails = smtp.mails();
    assert_eq!(mails.len(), 2);
    let reminder = mails
        .iter()
        .find(|m| s(&m["subject"]).contains("still"))
        .expect("reminder");
    assert_eq!(s(&reminder["subject"]), "[lull] Acme Corp is still quiet");
    assert!(s(&reminder["text"]).contains("lull first judged it silent on"));
}

#[test]
fn a_stale_source_gives_one_ops_email_and_no_silence_alert() {
    let smtp = Smtp::start(&[]);
    let list = [Acct("acme", "Acme Corp", "jane@vendor.example", None, true)];
    // `forum` is a polled source that stopped delivering after TODAY.
    let source = "[[source]]\nname = \"forum\"\nkind = \"discourse\"\nurl = \"http://127.0.0.1:9/\"\nschedule = \"0 0 * * * *\"\n";
    let ops = "[alerts]\nops_email = \"ops@vendor.example\"\n";
    let h = setup(&list, &smtp_config(smtp.port, &format!("{ops}{source}")));
    let out = detect(&h, TODAY + 6, &[]);
    assert!(
        stderr(&out).contains("source forum has no data since"),
        "{}",
        stderr(&out)
    );
    let mails = smtp.mails();
    assert_eq!(mails.len(), 1, "{mails:#?}");
    assert_eq!(s(&mails[0]["to"]), "ops@vendor.example");
    assert_eq!(
        s(&mails[0]["subject"]),
        "[lull] source forum has no new data"
    );
    assert!(s(&mails[0]["text"]).contains(&format!("no data since {} (6 days)", day(TODAY))));
    detect(&h, TODAY + 7, &[]);
    assert_eq!(smtp.mails().len(), 1, "told once per outage");

    // The same history without the source being polled-and-stale: the
    // account's silence is real and its CSM hears of it.
    let h2 = setup(&list, &smtp_config(smtp.port, ops));
    detect(&h2, TODAY + 6, &[]);
    let mails = smtp.mails();
    assert_eq!(mails.len(), 2);
    assert!(
        has_subject(&mails, "[lull] Acme Corp went quiet"),
        "{mails:#?}"
    );
}

#[test]
fn hostile_names_arrive_as_text_and_a_rejected_recipient_is_recorded_not_retried() {
    let smtp = Smtp::start(&[]);
    let evil = "<script>alert(1)</script> & \"Co\"\r\nBcc: victim@evil.example";
    let list = [
        Acct("evil", evil, "jane@vendor.example", None, true),
        Acct("gone", "Gone Ltd", "reject-me@vendor.example", None, true),
        Acct("later", "Later Inc", "tempfail@vendor.example", None, true),
    ];
    let h = setup(&list, &smtp_config(smtp.port, ""));
    detect(&h, TODAY, &[]);
    let mails = smtp.mails();
    assert_eq!(mails.len(), 1, "{mails:#?}");
    let m = &mails[0];
    let html = s(&m["html"]);
    assert!(!html.contains("<script>"), "{html}");
    assert!(
        html.contains("&#60;script&#62;alert(1)&#60;/script&#62; &#38; &#34;Co&#34;"),
        "{html}"
    );
    assert!(
        s(&m["text"]).contains("<script>alert(1)</script>"),
        "text stays readable"
    );
    let headers = s(&m["raw_headers"]);
    assert!(!headers.lines().any(|l| l.starts_with("Bcc")), "{headers}");
    assert!(
        s(&m["subject"]).contains("Bcc: victim@evil.example"),
        "kept on one line"
    );

    let records = alerts_json(&h);
    let failed = with_status(&records, "failed");
    assert_eq!(failed.len(), 1, "{records:#?}");
    assert_eq!(s(&failed[0]["to"]), "reject-me@vendor.example");
    assert!(s(&failed[0]["error"]).contains("550"), "{:?}", failed[0]);
    let queued = with_status(&records, "queued");
    assert_eq!(queued.len(), 1);
    assert!(s(&queued[0]["error"]).contains("451"), "{:?}", queued[0]);
    // `deliver` retries the 4xx (not the 5xx) and says mail is left.
    let out = h.run(&["deliver"]);
    assert_eq!(out.status.code(), Some(1));
    let records = alerts_json(&h);
    let failed_again = with_status(&records, "failed");
    assert_eq!(
        failed_again[0]["attempts"], 1,
        "a permanent rejection is not retried"
    );
    assert!(with_status(&records, "queued")[0]["attempts"].as_u64() > Some(1));
    assert_eq!(smtp.mails().len(), 1);
}

#[test]
fn smtp_config_errors_name_their_line() {
    let h = Home::with(
        "[smtp]\nport = 70000\ntls = \"ssl\"\nfrom = \"not an address\"\nusername = \"x\"\n[alerts]\nops_email = \"nope\"\n",
        "",
    );
    let out = h.run(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out) + &stdout(&out);
    for want in [
        "lull.toml:1:1: [smtp] needs `host`",
        "lull.toml:2:8: `smtp.port` must be from 1 to 65535",
        "lull.toml:3:7: `smtp.tls = \"ssl\"`",
        "lull.toml:4:8: `smtp.from = \"not an address\"` is not an e-mail address",
        "sets `username` but not `password_env`",
        "lull.toml:7:13: `alerts.ops_email = \"nope\"`",
    ] {
        assert!(err.contains(want), "{want:?} missing in:\n{err}");
    }
}

#[test]
fn the_watch_list_is_one_weekly_digest_per_csm_capped_and_ranked() {
    let smtp = Smtp::start(&[]);
    // Seven of jane's accounts stop posting 20 days before a Monday (day
    // 476): dropping, not yet silent. Six steady ones keep the forum
    // covered. The digest holds five of them; sam hears nothing.
    let mut list: Vec<Acct<'_>> = Vec::new();
    let ids: Vec<String> = (0..7).map(|i| format!("drop{i}")).collect();
    for id in &ids {
        list.push(Acct(id, id, "jane@vendor.example", None, false));
    }
    list.push(Acct("fine", "Fine Ltd", "sam@vendor.example", None, false));
    let monday = 476;
    let mut all: Vec<Acct<'_>> = STEADY
        .iter()
        .map(|id| Acct(id, id, "team@vendor.example", None, false))
        .collect();
    all.extend(list.iter().map(|a| Acct(a.0, a.1, a.2, a.3, a.4)));
    let h = Home::with(&smtp_config(smtp.port, ""), &accounts_toml(&all));
    let mut lines = Vec::new();
    for a in &all {
        // The earlier one stops, the stronger its evidence.
        let stop = match a.0.strip_prefix("drop") {
            Some(i) => monday - 20 - i.parse::<i32>().expect("n"),
            None => monday,
        };
        for d in 0..=stop {
            lines.push(format!(
                r#"{{"account": "{}", "source": "forum", "at": "{}T12:00:00Z", "id": "{}-{d}", "kind": "post", "count": 3}}"#,
                a.0,
                day(d),
                a.0
            ));
        }
    }
    let f = h.file("events.jsonl", &(lines.join("\n") + "\n"));
    assert!(
        h.run(&["import", f.to_str().expect("utf-8")])
            .status
            .success()
    );
    // Judged up to Sunday: nothing (the digest is Monday's).
    let out = detect(&h, monday - 1, &[]);
    assert!(
        stderr(&out).contains("0 notice(s) queued"),
        "{}",
        stderr(&out)
    );
    let out = detect(&h, monday, &[]);
    assert!(stderr(&out).contains("1 sent"), "{}", stderr(&out));
    let mails = smtp.mails();
    assert_eq!(mails.len(), 1, "one digest: {mails:#?}");
    let m = &mails[0];
    assert_eq!(s(&m["to"]), "jane@vendor.example");
    assert_eq!(
        s(&m["subject"]),
        "[lull] 5 accounts to watch this week: drop6, drop5, drop4 and 2 more"
    );
    let text = s(&m["text"]);
    for i in 2..7 {
        assert!(
            text.contains(&format!("drop{i} (drop{i}) is dropping")),
            "{text}"
        );
        assert!(text.contains("Below its usual level since"), "{text}");
    }
    assert!(
        !text.contains("drop0") && !text.contains("drop1"),
        "capped: {text}"
    );
    // The next day and the rest of the week: no new digest.
    for d in monday + 1..monday + 7 {
        detect(&h, d, &[]);
    }
    assert_eq!(smtp.mails().len(), 1);
    // Next Monday: the two left off last week come first, and those listed
    // a week ago are not repeated.
    detect(&h, monday + 7, &[]);
    let mails = smtp.mails();
    assert_eq!(mails.len(), 2, "{mails:#?}");
    // The maildir lists messages in no particular order: next week's is
    // the one that is not last week's.
    let first = s(&m["message_id"]).to_string();
    let next = mails
        .iter()
        .find(|x| s(&x["message_id"]) != first)
        .expect("a second digest");
    let text = s(&next["text"]);
    assert!(
        text.contains("drop0 (drop0)") && text.contains("drop1 (drop1)"),
        "{text}"
    );
    assert!(!text.contains("drop6"), "{text}");
}

#[test]
fn a_source_whose_name_has_a_colon_is_named_whole_in_the_alert() {
    let smtp = Smtp::start(&[]);
    let mut all: Vec<Acct<'_>> = STEADY
        .iter()
        .map(|id| Acct(id, id, "team@vendor.example", None, false))
        .collect();
    all.push(Acct("acme", "Acme Corp", "jane@vendor.example", None, true));
    let accounts = accounts_toml(&all).replace("{ forum = [", "{ \"eu:forum\" = [");
    let h = Home::with(&smtp_config(smtp.port, ""), &accounts);
    let events = history(&all).replace(r#""source": "forum""#, r#""source": "eu:forum""#);
    let f = h.file("events.jsonl", &events);
    let out = h.run(&["import", f.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = detect(&h, TODAY, &[]);
    assert!(stderr(&out).contains("1 sent"), "{}", stderr(&out));
    let mails = smtp.mails();
    let text = s(&mails[0]["text"]);
    for want in [
        "forum posts (eu:forum): 0 in the last 28 days",
        &format!(
            "Last activity seen: {} by acme_user (forum posts (eu:forum))",
            day(TODAY - 60)
        ),
    ] {
        assert!(text.contains(want), "text lacks {want:?}:\n{text}");
    }
    let accounts = stdout(&h.run(&["accounts", "--json", "--at", &day(TODAY).to_string()]));
    assert!(
        accounts.contains(r#""channel": "eu:forum:post""#),
        "{accounts}"
    );
}
