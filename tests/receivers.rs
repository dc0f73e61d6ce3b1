//! Receivers and routes end to end: the real binary, a real SMTP server
//! process, and local HTTP receivers that behave like Slack, Teams and a
//! webhook endpoint (rate limits, failures, late answers, redirects).
//! Every test also checks what *does* arrive, so none can pass by sending
//! nothing.

#![recursion_limit = "256"]

mod common;

use std::collections::BTreeMap;
use std::process::{Output, Stdio};
use std::time::Duration;

use common::receiver::{Mode, Receiver};
use common::scenario::*;
use common::smtp::Smtp;
use common::{Home, Rng, stderr, stdout};
use serde_json::Value;

const SECRET: &str = "whsec-test-0123456789";

fn with_env(h: &Home, args: &[&str], env: &[(&str, String)]) -> Output {
    let mut c = h.cmd(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run lull")
}

fn detect_env(h: &Home, at: i32, extra: &[&str], env: &[(&str, String)]) -> Output {
    let at = day(at).to_string();
    let mut args = vec!["detect", "--at", &at];
    args.extend_from_slice(extra);
    let out = with_env(h, &args, env);
    assert!(out.status.success(), "detect exits 0: {}", stderr(&out));
    out
}

/// `[smtp]` plus `extra`, retrying for `retry` seconds.
fn config(smtp_port: u16, retry: u64, extra: &str) -> String {
    format!(
        "[store]\npath = \"data/lull.db\"\n[accounts]\nfile = \"accounts.toml\"\n\
         [smtp]\nhost = \"127.0.0.1\"\nport = {smtp_port}\ntls = \"none\"\nfrom = \"lull <lull@vendor.example>\"\nretry_secs = {retry}\ntimeout_secs = 5\n{extra}"
    )
}

/// A receiver's records (`lull alerts --json` leaves `receiver` out for
/// e-mail, as before receivers existed).
/// Acme (enterprise) and Globex (no segment), both gone quiet.
fn acme_and_globex() -> [Acct<'static>; 2] {
    [
        Acct(
            "acme",
            "Acme Corp",
            "jane@vendor.example",
            Some("enterprise"),
            true,
        ),
        Acct("globex", "Globex", "sam@vendor.example", None, true),
    ]
}

fn records_of<'a>(records: &'a [Value], receiver: &str) -> Vec<&'a Value> {
    records
        .iter()
        .filter(|r| r["receiver"].as_str().unwrap_or("email") == receiver)
        .collect()
}

/// Idempotency key → requests accepted with it.
fn by_key(hits: &[common::receiver::Hit]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for h in hits {
        *m.entry(h.header("idempotency-key").unwrap_or("-").to_string())
            .or_default() += 1;
    }
    m
}

fn slack_text(hit: &common::receiver::Hit) -> String {
    // Every text object of every block, as Slack would show them.
    fn walk(v: &Value, out: &mut String) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(t)) = m.get("text") {
                    out.push_str(t);
                    out.push('\n');
                }
                for (_, x) in m {
                    walk(x, out);
                }
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let mut out = String::new();
    walk(&hit.json()["blocks"], &mut out);
    out
}

#[test]
fn a_notice_routed_to_email_slack_and_a_webhook_arrives_once_at_each() {
    let smtp = Smtp::start(&[]);
    let hooks = Receiver::start();
    let list = acme_and_globex();
    let h = setup(
        &list,
        &config(
            smtp.port,
            5,
            &format!(
                r#"
[[receiver]]
name = "cs-slack"
kind = "slack"
url_env = "LULL_TEST_SLACK_URL"

[[receiver]]
name = "crm"
kind = "webhook"
url = "{}"
secret_env = "LULL_TEST_HOOK_SECRET"

[[route]]
match = {{ segment = "enterprise" }}
receivers = ["email", "cs-slack", "crm"]
"#,
                hooks.url("/hook")
            ),
        ),
    );
    let env = [
        ("LULL_TEST_SLACK_URL", hooks.url("/slack/T000/B000/XXXX")),
        ("LULL_TEST_HOOK_SECRET", SECRET.to_string()),
    ];
    let out = detect_env(&h, TODAY, &[], &env);
    let err = stderr(&out);
    assert!(err.contains("4 sent"), "{err}");
    assert!(
        !err.contains("XXXX") && !err.contains(SECRET),
        "no secret in the output: {err}"
    );

    // E-mail: Acme by its route, Globex by the default route.
    let mails = smtp.mails();
    assert_eq!(mails.len(), 2, "{mails:#?}");
    assert!(has_subject(&mails, "[lull] Acme Corp went quiet"));
    assert!(has_subject(&mails, "[lull] Globex went quiet"));
    // Slack: one message, about Acme only.
    let slack = hooks.accepted("/slack/T000/B000/XXXX");
    assert_eq!(slack.len(), 1, "{slack:#?}");
    let text = slack_text(&slack[0]);
    assert!(text.contains("Acme Corp went quiet"), "{text}");
    assert!(
        text.contains("\n• forum posts (forum): 0 in the last 28 days; about "),
        "{text}"
    );
    assert!(text.contains("Quiet since"), "{text}");
    assert!(!text.contains("Globex"), "{text}");
    assert_eq!(slack[0].json()["mrkdwn"], false);
    // The webhook: one request for the one notice, signed.
    let hook = hooks.accepted("/hook");
    assert_eq!(hook.len(), 1, "{hook:#?}");
    let body = hook[0].json();
    assert_eq!(body["schema"], "lull.notice/v1");
    assert_eq!(body["account"], "acme");
    assert_eq!(body["account_name"], "Acme Corp");
    assert_eq!(body["tier"], "silent");
    assert_eq!(body["kind"], "silent");
    assert_eq!(body["date"], day(TODAY).to_string());
    assert_eq!(body["channels"], serde_json::json!(["forum:post"]));
    assert_eq!(body["segment"], "enterprise");
    assert!(body["expected"].as_f64() > Some(50.0), "{body}");
    assert_eq!(body["observed"], 0.0);
    let key = hook[0].header("idempotency-key").expect("Idempotency-Key");
    assert_eq!(body["id"], key);
    let sig = hook[0].header("lull-signature").expect("Lull-Signature");
    let now = chrono::Utc::now().timestamp();
    assert_eq!(
        lull::alert::receivers::verify(SECRET.as_bytes(), sig, hook[0].body.as_bytes(), now, 300),
        Ok(())
    );

    // Nothing twice: deliver again, detect again, the next day.
    let out = with_env(&h, &["deliver"], &env);
    assert!(
        stderr(&out).contains("the outbox is empty"),
        "{}",
        stderr(&out)
    );
    detect_env(&h, TODAY, &[], &env);
    detect_env(&h, TODAY + 1, &[], &env);
    assert_eq!(smtp.mails().len(), 2);
    assert_eq!(hooks.accepted("/slack/T000/B000/XXXX").len(), 1);
    assert_eq!(hooks.accepted("/hook").len(), 1);

    // Per-receiver status.
    let records = alerts_json(&h);
    assert_eq!(with_status(&records, "sent").len(), 4, "{records:#?}");
    assert_eq!(records_of(&records, "email").len(), 2);
    assert_eq!(records_of(&records, "cs-slack").len(), 1);
    let crm = records_of(&records, "crm");
    assert_eq!(crm.len(), 1);
    assert_eq!(crm[0]["message_id"], key);
    let table = stdout(&h.run(&["alerts"]));
    assert!(table.contains("RECEIVER"), "{table}");
    assert!(table.contains("cs-slack"), "{table}");
    assert!(table.contains("0 queued, 4 sent, 0 failed"), "{table}");
}

#[test]
fn the_webhook_signature_fails_with_another_secret_and_a_replay_is_detectable() {
    let smtp = Smtp::start(&[]);
    let hooks = Receiver::start();
    let list = [Acct("acme", "Acme Corp", "jane@vendor.example", None, true)];
    let h = setup(
        &list,
        &config(
            smtp.port,
            5,
            &format!(
                "[[receiver]]\nname = \"crm\"\nkind = \"webhook\"\nurl = \"{}\"\nsecret_env = \"LULL_TEST_HOOK_SECRET\"\n[[route]]\nreceivers = [\"crm\"]\n",
                hooks.url("/hook")
            ),
        ),
    );
    detect_env(&h, TODAY, &[], &[("LULL_TEST_HOOK_SECRET", SECRET.into())]);
    let hit = hooks.accepted("/hook").pop().expect("a webhook request");
    let sig = hit.header("lull-signature").expect("signature").to_string();
    let (t, v1) = sig.split_once(',').expect("t=..,v1=..");
    let t: i64 = t
        .strip_prefix("t=")
        .expect("t=")
        .parse()
        .expect("unix seconds");
    assert!(v1.starts_with("v1=") && v1.len() == 3 + 64, "{sig}");
    assert!((chrono::Utc::now().timestamp() - t).abs() < 120, "{sig}");
    let verify = lull::alert::receivers::verify;
    let body = hit.body.as_bytes();
    assert_eq!(verify(SECRET.as_bytes(), &sig, body, t, 300), Ok(()));
    assert!(verify(b"another-secret", &sig, body, t, 300).is_err());
    // The same body and header replayed an hour later: the signature still
    // matches, and its timestamp gives the replay away.
    assert_eq!(
        verify(SECRET.as_bytes(), &sig, body, t + 3600, 300),
        Err("timestamp outside the tolerance (a replay?)")
    );
    // A body changed on the way does not verify.
    let forged = hit.body.replace("acme", "acmf");
    assert!(verify(SECRET.as_bytes(), &sig, forged.as_bytes(), t, 300).is_err());
    // Checked independently of lull's code: HMAC-SHA256 over "t.body".
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).expect("key");
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(v1, format!("v1={hex}"));
}

#[test]
fn slack_down_for_a_while_and_kill_9_at_random_moments_still_deliver_once_to_each() {
    // Slow answers everywhere, so kills land in every phase.
    let smtp = Smtp::start(&["--delay-ms", "30"]);
    let hooks = Receiver::start();
    let slack = Receiver::start();
    slack.set(Mode::Status(503));
    hooks.set(Mode::Late(Duration::from_millis(30)));
    let ids: Vec<(String, String)> = (0..12)
        .map(|i| (format!("acct{i:02}"), format!("csm{i:02}@vendor.example")))
        .collect();
    let accts: Vec<Acct<'_>> = ids
        .iter()
        .map(|(id, csm)| Acct(id, id, csm, Some("enterprise"), true))
        .collect();
    let h = setup(
        &accts,
        &config(
            smtp.port,
            2,
            &format!(
                "[[receiver]]\nname = \"cs-slack\"\nkind = \"slack\"\nurl_env = \"LULL_TEST_SLACK_URL\"\n\
                 [[receiver]]\nname = \"crm\"\nkind = \"webhook\"\nurl = \"{}\"\n\
                 [[route]]\nmatch = {{ segment = \"enterprise\" }}\nreceivers = [\"email\", \"cs-slack\", \"crm\"]\ngroup_by = [\"account\"]\n",
                hooks.url("/hook")
            ),
        ),
    );
    let env = [("LULL_TEST_SLACK_URL", slack.url("/slack"))];
    detect_env(&h, TODAY, &["--no-send"], &env);
    assert_eq!(with_status(&alerts_json(&h), "queued").len(), 36);

    let mut rng = Rng(11);
    let mut kills = 0;
    for round in 0..10 {
        if round == 5 {
            // Slack is back.
            slack.set(Mode::Accept);
        }
        let mut c = h.cmd(&["deliver"]);
        for (k, v) in &env {
            c.env(k, v);
        }
        let mut child = c
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        std::thread::sleep(Duration::from_millis(40 + rng.below(260)));
        if child.try_wait().expect("poll").is_none() {
            child.kill().expect("kill -9");
            kills += 1;
        }
        child.wait().expect("wait");
    }
    assert!(kills >= 4, "the kills must land mid-delivery ({kills})");
    // While Slack was down, the others were not held back.
    assert!(
        slack.hits().iter().any(|h| h.status == 503),
        "Slack was asked while down"
    );
    let out = with_env(&h, &["deliver"], &env);
    assert!(out.status.success(), "{}", stderr(&out));

    let records = alerts_json(&h);
    assert_eq!(with_status(&records, "sent").len(), 36, "{records:#?}");
    let unknown = |receiver: &str, key: &str| -> usize {
        records
            .iter()
            .find(|r| {
                r["receiver"].as_str().unwrap_or("email") == receiver && r["message_id"] == key
            })
            .map(|r| r["unknown_outcomes"].as_u64().unwrap_or(0) as usize)
            .unwrap_or_else(|| panic!("no record of {receiver} {key}"))
    };
    let mut repeats = 0;
    for (receiver, got) in [
        ("crm", by_key(&hooks.accepted("/hook"))),
        ("cs-slack", by_key(&slack.accepted("/slack"))),
    ] {
        assert_eq!(got.len(), 12, "{receiver}: every notice arrived: {got:?}");
        for (key, n) in &got {
            assert!(
                *n <= 1 + unknown(receiver, key),
                "{receiver} {key} arrived {n} times"
            );
            repeats += n - 1;
        }
    }
    let mails = arrivals(&smtp.mails());
    assert_eq!(mails.len(), 12, "{mails:?}");
    for (id, n) in &mails {
        let key = id.trim_matches(['<', '>']);
        assert!(*n <= 1 + unknown("email", key), "{id} arrived {n} times");
        repeats += n - 1;
    }
    // Four in flight per receiver: a kill can catch at most four of each
    // between acceptance and record.
    assert!(
        repeats <= kills * 12,
        "{repeats} repeats with {kills} kills"
    );
    // Once done, nothing more goes out.
    let before = (hooks.hits().len(), slack.hits().len(), smtp.mails().len());
    let out = with_env(&h, &["deliver"], &env);
    assert!(
        stderr(&out).contains("the outbox is empty"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        before,
        (hooks.hits().len(), slack.hits().len(), smtp.mails().len())
    );
}

#[test]
fn retry_after_is_honoured_4xx_fails_for_good_and_redirects_are_not_followed() {
    let smtp = Smtp::start(&[]);
    let limited = Receiver::start();
    let refusing = Receiver::start();
    let moved = Receiver::start();
    let elsewhere = Receiver::start();
    limited.then(&[Mode::RetryAfter(2)]);
    refusing.set(Mode::Status(400));
    moved.set(Mode::Redirect(elsewhere.url("/stolen")));
    let list = [Acct("acme", "Acme Corp", "jane@vendor.example", None, true)];
    let h = setup(
        &list,
        &config(
            smtp.port,
            10,
            &format!(
                "[[receiver]]\nname = \"limited\"\nkind = \"webhook\"\nurl = \"{}\"\n\
                 [[receiver]]\nname = \"refusing\"\nkind = \"webhook\"\nurl = \"{}\"\n\
                 [[receiver]]\nname = \"moved\"\nkind = \"teams\"\nurl_env = \"LULL_TEST_TEAMS_URL\"\n\
                 [[route]]\nreceivers = [\"limited\", \"refusing\", \"moved\", \"email\"]\n",
                limited.url("/hook"),
                refusing.url("/hook"),
            ),
        ),
    );
    let env = [(
        "LULL_TEST_TEAMS_URL",
        moved.url("/teams/workflow?sig=SECRETSIG"),
    )];
    let out = detect_env(&h, TODAY, &[], &env);
    let err = stderr(&out);
    assert!(err.contains("2 sent, 2 failed"), "{err}");
    assert!(!err.contains("SECRETSIG"), "{err}");
    // 429 with Retry-After: 2 — the next request came no sooner, by the
    // receiver's clock.
    let hits = limited.hits();
    assert_eq!(hits.len(), 2, "{hits:#?}");
    assert_eq!(hits[0].status, 429);
    assert_eq!(hits[1].status, 200);
    let waited = hits[1].at - hits[0].at;
    assert!(waited >= Duration::from_millis(1950), "{waited:?}");
    assert_eq!(
        hits[0].header("idempotency-key"),
        hits[1].header("idempotency-key")
    );
    // 400: failed with the answer, once.
    assert_eq!(refusing.hits().len(), 1);
    let records = alerts_json(&h);
    let refused = records_of(&records, "refusing");
    assert_eq!(refused[0]["status"], "failed");
    let why = refused[0]["error"].as_str().unwrap_or_default();
    assert!(
        why.contains("400") && why.contains("answered 400 on purpose"),
        "{why}"
    );
    // The redirect: failed, named, and nothing reached the other host.
    let m = records_of(&records, "moved");
    assert_eq!(m[0]["status"], "failed");
    let why = m[0]["error"].as_str().unwrap_or_default();
    assert!(why.contains("does not follow redirects"), "{why}");
    assert!(!why.contains("SECRETSIG"), "{why}");
    assert!(elsewhere.hits().is_empty(), "the redirect was followed");
    assert_eq!(smtp.mails().len(), 1, "e-mail was not held back");
    // Failed for good: not tried again.
    with_env(&h, &["deliver"], &env);
    assert_eq!(refusing.hits().len(), 1);
    assert_eq!(moved.hits().len(), 1);
}

#[test]
fn routes_by_segment_and_tier_with_continue_mute_windows_and_check_route() {
    let smtp = Smtp::start(&[]);
    let hooks = Receiver::start();
    let list = [
        Acct(
            "acme",
            "Acme Corp",
            "jane@vendor.example",
            Some("enterprise"),
            true,
        ),
        Acct(
            "initech",
            "Initech",
            "sam@vendor.example",
            Some("smb"),
            true,
        ),
        Acct("globex", "Globex", "sam@vendor.example", None, true),
    ];
    let routes = |mute: &str| {
        config(
            smtp.port,
            3,
            &format!(
                r#"
[[receiver]]
name = "crm"
kind = "webhook"
url = "{}"

[[receiver]]
name = "smb-hook"
kind = "webhook"
url = "{}"

[[route]]
match = {{ segment = "enterprise", tier = ["silent", "watch"] }}
receivers = ["crm"]
continue = true

[[route]]
match = {{ segment = "enterprise" }}
receivers = ["email"]

[[route]]
match = {{ segment = "smb" }}
receivers = ["smb-hook"]
{mute}
[[route]]
match = {{ tier = "recovered" }}
receivers = []
"#,
                hooks.url("/crm"),
                hooks.url("/smb"),
            ),
        )
    };
    // Muted all week: the smb route holds its messages.
    let h = setup(
        &list,
        &routes(
            "mute = [{ weekdays = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\", \"sat\", \"sun\"] }]\n",
        ),
    );
    let out = h.run(&["check", "--route", "acme"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("silent     → crm (webhook, by route 1 (line"),
        "{text}"
    );
    assert!(text.contains("email (email, by route 2"), "{text}");
    assert!(
        text.contains("recovered  → email (email, by route 2"),
        "{text}"
    );
    let text = stdout(&h.run(&["check", "--route", "globex"]));
    assert!(
        text.contains("silent     → email (email, by the default route)"),
        "{text}"
    );
    assert!(text.contains("recovered  → nowhere"), "{text}");
    let text = stdout(&h.run(&["check", "--route", "initech"]));
    assert!(text.contains("smb-hook (webhook, by route 3"), "{text}");
    assert!(text.contains("with mute windows"), "{text}");
    let out = h.run(&["check", "--route", "nosuch"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("no account has the id `nosuch`"));

    let out = detect(&h, TODAY, &[]);
    let err = stderr(&out);
    assert!(err.contains("1 held by a route's mute window"), "{err}");
    // Acme: the webhook (continue) and e-mail; Globex: e-mail by default;
    // Initech: held.
    assert_eq!(hooks.accepted("/crm").len(), 1);
    assert_eq!(hooks.accepted("/crm")[0].json()["account"], "acme");
    assert!(hooks.accepted("/smb").is_empty());
    let mails = smtp.mails();
    assert_eq!(mails.len(), 2, "{mails:#?}");
    assert!(has_subject(&mails, "[lull] Acme Corp went quiet"));
    assert!(has_subject(&mails, "[lull] Globex went quiet"));
    let records = alerts_json(&h);
    let smb = records_of(&records, "smb-hook");
    assert_eq!(smb.len(), 1);
    assert_eq!(smb[0]["status"], "queued");

    // The window lifted (config changed): the held message goes.
    std::fs::write(h.path().join("lull.toml"), routes("")).expect("config");
    let out = h.run(&["deliver"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let smb = hooks.accepted("/smb");
    assert_eq!(smb.len(), 1);
    assert_eq!(smb[0].json()["account"], "initech");
    assert_eq!(smtp.mails().len(), 2, "nothing more by e-mail");
}

#[test]
fn hostile_account_names_are_text_in_block_kit_and_adaptive_cards() {
    let smtp = Smtp::start(&[]);
    let hooks = Receiver::start();
    let evil = "<!channel> *Evil* _Corp_ <@U0123|boss> [click](http://evil.example) &amp;";
    let list = [Acct("evil", evil, "jane@vendor.example", None, true)];
    let h = setup(
        &list,
        &config(
            smtp.port,
            5,
            "[console]\npublic_url = \"https://lull.example.com\"\n\
             [[receiver]]\nname = \"cs-slack\"\nkind = \"slack\"\nurl_env = \"LULL_TEST_SLACK_URL\"\n\
             [[receiver]]\nname = \"teams\"\nkind = \"teams\"\nurl_env = \"LULL_TEST_TEAMS_URL\"\n\
             [[route]]\nreceivers = [\"cs-slack\", \"teams\"]\n",
        ),
    );
    let env = [
        ("LULL_TEST_SLACK_URL", hooks.url("/slack")),
        ("LULL_TEST_TEAMS_URL", hooks.url("/teams/wf")),
    ];
    let out = detect_env(&h, TODAY, &[], &env);
    assert!(stderr(&out).contains("2 sent"), "{}", stderr(&out));

    let slack = hooks.accepted("/slack");
    assert_eq!(slack.len(), 1);
    let raw = &slack[0].body;
    assert!(!raw.contains("<!channel>"), "{raw}");
    assert!(!raw.contains("<@U0123"), "{raw}");
    let text = slack_text(&slack[0]);
    assert!(
        text.contains("&lt;!channel&gt; *Evil* _Corp_ &lt;@U0123|boss&gt; [click](http://evil.example) &amp;amp; went quiet"),
        "{text}"
    );
    // Hostile text is only ever plain_text (never mrkdwn).
    fn kinds(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let (Some(Value::String(t)), Some(Value::String(x))) =
                    (m.get("type"), m.get("text"))
                {
                    if x.contains("Evil") {
                        out.push(t.clone());
                    }
                }
                m.values().for_each(|x| kinds(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| kinds(x, out)),
            _ => {}
        }
    }
    let mut k = Vec::new();
    kinds(&slack[0].json()["blocks"], &mut k);
    assert!(
        !k.is_empty() && k.iter().all(|t| t == "plain_text"),
        "{k:?}"
    );
    assert!(
        slack[0].json()["text"]
            .as_str()
            .unwrap_or_default()
            .contains("&lt;!channel&gt;")
    );
    // The console's buttons: open, snooze, useful, false alarm.
    let blocks = slack[0].json()["blocks"].clone();
    let buttons: Vec<String> = blocks
        .as_array()
        .expect("blocks")
        .iter()
        .filter(|b| b["type"] == "actions")
        .flat_map(|b| b["elements"].as_array().cloned().unwrap_or_default())
        .map(|e| e["url"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(buttons.len(), 4, "{blocks:#}");
    assert!(
        buttons
            .iter()
            .all(|u| u.starts_with("https://lull.example.com/c/")),
        "{buttons:?}"
    );

    let teams = hooks.accepted("/teams/wf");
    assert_eq!(teams.len(), 1);
    let card = &teams[0].json()["attachments"][0];
    assert_eq!(
        card["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    let title = card["content"]["body"][0]["text"].as_str().expect("title");
    assert_eq!(
        title,
        "<!channel> \\*Evil\\* \\_Corp\\_ <@U0123|boss> \\[click\\]\\(http://evil.example\\) &amp; went quiet"
    );
    let actions = card["content"]["actions"].as_array().expect("actions");
    assert_eq!(actions.len(), 4);
    assert!(actions.iter().all(|a| a["type"] == "Action.OpenUrl"));
}

#[test]
fn a_slack_bot_posts_to_each_csm_found_by_e_mail_and_an_unknown_one_fails_named() {
    let smtp = Smtp::start(&[]);
    let slack = Receiver::start();
    let list = [
        Acct("acme", "Acme Corp", "jane@vendor.example", None, true),
        Acct("globex", "Globex", "jane@vendor.example", None, true),
        Acct("initech", "Initech", "nobody@vendor.example", None, true),
    ];
    let h = setup(
        &list,
        &config(
            smtp.port,
            5,
            &format!(
                "[[receiver]]\nname = \"dm\"\nkind = \"slack\"\ntoken_env = \"LULL_TEST_SLACK_TOKEN\"\napi_url = \"{}\"\n[[route]]\nreceivers = [\"dm\"]\n",
                slack.url("/api/")
            ),
        ),
    );
    let env = [(
        "LULL_TEST_SLACK_TOKEN",
        "xoxb-test-token-123456".to_string(),
    )];
    let out = detect_env(&h, TODAY, &[], &env);
    let err = stderr(&out);
    assert!(err.contains("1 sent, 1 failed"), "{err}");
    assert!(!err.contains("xoxb-test"), "{err}");
    let posts = slack.accepted("/api/chat.postMessage");
    assert_eq!(posts.len(), 1, "one digest for Jane");
    let body = posts[0].json();
    assert_eq!(body["channel"], "UJANE");
    let text = slack_text(&posts[0]);
    assert!(
        text.contains("Acme Corp went quiet") && text.contains("Globex went quiet"),
        "{text}"
    );
    assert_eq!(
        posts[0].header("authorization"),
        Some("Bearer xoxb-test-token-123456")
    );
    let lookups = slack.accepted("/api/users.lookupByEmail");
    assert_eq!(lookups.len(), 2, "each CSM looked up once: {lookups:#?}");
    let records = alerts_json(&h);
    let failed = with_status(&records, "failed");
    assert_eq!(failed.len(), 1);
    assert!(
        failed[0]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("no Slack user has the e-mail address nobody@vendor.example"),
        "{failed:#?}"
    );
}

/// CPU time (user + system) of a process so far.
fn cpu_time(pid: i32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // Fields after the command name (which may hold spaces).
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime");
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis(ticks * 1000 / hz.max(1))
}

/// GET `path` from the service: (status, body bytes).
fn get_bytes(port: u16, path: &str) -> (u16, Vec<u8>) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read");
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("headers");
    let head = String::from_utf8_lossy(&raw[..head_end]).to_string();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    (status, raw[head_end + 4..].to_vec())
}

#[test]
fn the_service_delivers_to_chat_and_a_webhook_without_smtp_and_serves_the_chart_link() {
    use common::service::{Running, free_port, service_config};
    let hooks = Receiver::start();
    let port = free_port();
    let list = acme_and_globex();
    let h = setup(
        &list,
        &format!(
            "[store]\npath = \"data/lull.db\"\n[accounts]\nfile = \"accounts.toml\"\n{}\
             [console]\npublic_url = \"http://127.0.0.1:{port}\"\n\
             [[receiver]]\nname = \"crm\"\nkind = \"webhook\"\nurl = \"{}\"\n\
             [[receiver]]\nname = \"cs-slack\"\nkind = \"slack\"\nurl = \"{}\"\n\
             [[route]]\nmatch = {{ segment = \"enterprise\" }}\nreceivers = [\"crm\", \"cs-slack\"]\n",
            service_config(port, "0 0 6 * * *", 5),
            hooks.url("/hook"),
            hooks.url("/slack"),
        ),
    );
    detect(&h, TODAY, &["--no-send"]);
    let mut r = Running::start(&h, port, &[]);
    let until = std::time::Instant::now() + Duration::from_secs(20);
    while hooks.accepted("/hook").is_empty() || hooks.accepted("/slack").is_empty() {
        assert!(std::time::Instant::now() < until, "{}", r.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    // Globex's e-mail cannot go (no [smtp]): it waits, without the
    // delivery loop spinning on it.
    let before = cpu_time(r.pid());
    std::thread::sleep(Duration::from_secs(3));
    let used = cpu_time(r.pid()) - before;
    assert!(
        used < Duration::from_millis(600),
        "{used:?} of CPU in 3 s idle"
    );

    // The Slack message's chart is a signed link to the console, which
    // serves it to anyone holding the link (Slack fetches anonymously).
    let slack = hooks.accepted("/slack");
    let image = slack[0].json()["blocks"]
        .as_array()
        .expect("blocks")
        .iter()
        .find(|b| b["type"] == "image")
        .map(|b| b["image_url"].as_str().unwrap_or_default().to_string())
        .expect("an image block");
    let prefix = format!("http://127.0.0.1:{port}");
    let path = image.strip_prefix(&prefix).expect("on the console's URL");
    assert!(path.starts_with("/c/chart/"), "{path}");
    let (status, png) = get_bytes(port, path);
    assert_eq!(status, 200);
    assert!(png.starts_with(b"\x89PNG\r\n"), "a PNG");
    assert!(png.len() > 2000, "{} bytes", png.len());
    let (status, _) = get_bytes(port, &format!("{path}x"));
    assert!(
        (400..500).contains(&status),
        "a damaged link is refused: {status}"
    );
    // An action token is not a chart token.
    let open = slack[0].json()["blocks"]
        .as_array()
        .expect("blocks")
        .iter()
        .filter(|b| b["type"] == "actions")
        .flat_map(|b| b["elements"].as_array().cloned().unwrap_or_default())
        .map(|e| e["url"].as_str().unwrap_or_default().to_string())
        .next()
        .expect("an open button");
    let token = open.rsplit('/').next().expect("token");
    let (status, _) = get_bytes(port, &format!("/c/chart/{token}"));
    assert!((400..500).contains(&status), "{status}");

    r.signal(libc::SIGTERM);
    let (status, _) = r.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "{}", r.log());
    assert_eq!(hooks.accepted("/hook").len(), 1);
    assert_eq!(hooks.accepted("/hook")[0].json()["account"], "acme");
    let records = alerts_json(&h);
    assert_eq!(records_of(&records, "crm")[0]["status"], "sent");
    assert_eq!(records_of(&records, "cs-slack")[0]["status"], "sent");
    assert_eq!(records_of(&records, "email")[0]["status"], "queued");
}

#[test]
fn a_receiver_added_by_a_reload_gets_what_waited() {
    use common::service::{Running, free_port, service_config};
    let hooks = Receiver::start();
    let port = free_port();
    let base = format!(
        "[store]\npath = \"data/lull.db\"\n[accounts]\nfile = \"accounts.toml\"\n{}",
        service_config(port, "0 0 6 * * *", 5)
    );
    let h = setup(&acme_and_globex(), &base);
    detect(&h, TODAY, &["--no-send"]);
    let mut r = Running::start(&h, port, &[]);
    r.wait_for_log("alerts stay queued", Duration::from_secs(10));
    std::fs::write(
        h.path().join("lull.toml"),
        format!(
            "{base}[[receiver]]\nname = \"crm\"\nkind = \"webhook\"\nurl = \"{}\"\n[[route]]\nreceivers = [\"crm\"]\n",
            hooks.url("/hook")
        ),
    )
    .expect("config");
    r.signal(libc::SIGHUP);
    let until = std::time::Instant::now() + Duration::from_secs(20);
    while hooks.accepted("/hook").len() < 2 {
        assert!(std::time::Instant::now() < until, "{}", r.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    r.signal(libc::SIGTERM);
    let (status, _) = r.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "{}", r.log());
    let mut got: Vec<String> = hooks
        .accepted("/hook")
        .iter()
        .map(|h| h.json()["account"].as_str().unwrap_or_default().to_string())
        .collect();
    got.sort();
    assert_eq!(got, ["acme", "globex"]);
}
