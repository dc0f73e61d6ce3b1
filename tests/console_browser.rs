//! The web console in a real browser: Debian's headless Chromium driven
//! over WebDriver (chromium-driver) against the real `lull run`, a real
//! SMTP server for the sign-in links and alerts, and a local forum that
//! fails with a hostile error page. A CSM signs in through the e-mailed
//! link, opens a silent account, snoozes it, marks its alert a false
//! alarm, acts from the alert e-mail's link; an admin reads the sources
//! and runs a tuning backtest. No JavaScript error on any page; every page
//! is kept as a screenshot in `target/console-screenshots/`.
//!
//! Also: the console keeps answering while a detection run and polls are
//! in progress.

#![recursion_limit = "256"]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Home;
use common::service::{Running, free_port, request};
use common::smtp::Smtp;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const HOSTILE: &str = "<script>window.__pwned=1</script>Evil & Co";

/// chromedriver on a free port, stopped on drop.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    fn start() -> Driver {
        for bin in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(bin).exists(),
                "{bin} is missing: tests/deps.sh installs Debian's chromium and chromium-driver"
            );
        }
        let port = free_port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let until = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < until, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Driver { child, port }
    }

    async fn browser(&self, profile: &Path) -> Client {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--disable-extensions",
                    "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.display()),
                ],
            }),
        );
        caps.insert("goog:loggingPrefs".into(), json!({"browser": "ALL"}));
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("a WebDriver session with chromium")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The browser's console messages since the last call (chromedriver's
/// log endpoint).
#[derive(Debug)]
struct BrowserLog;

impl fantoccini::wd::WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or("")))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(r#"{"type":"browser"}"#.into()))
    }
}

fn shots_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let d = target.join("console-screenshots");
    std::fs::create_dir_all(&d).expect("screenshot folder");
    d
}

/// A browser tab with what a test needs from it.
struct Tab {
    c: Client,
    base: String,
    shots: PathBuf,
    errors: Vec<String>,
}

impl Tab {
    async fn goto(&mut self, path: &str) {
        let url = if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        };
        self.c.goto(&url).await.expect("navigate");
        self.check().await;
    }

    /// A page answered with an error status on purpose (a used link):
    /// the browser's note of that status is not an error of the page.
    async fn goto_refused(&mut self, path: &str) {
        let url = if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        };
        self.c.goto(&url).await.expect("navigate");
        let log = self.c.issue_cmd(BrowserLog).await.expect("browser log");
        for entry in log.as_array().into_iter().flatten() {
            let network_status = entry["source"] == "network"
                && entry["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with(&url));
            if !network_status && entry["level"] == "SEVERE" {
                self.errors.push(format!("{url}: {entry}"));
            }
        }
        self.check().await;
    }

    /// No console error and no script from a hostile name ran.
    async fn check(&mut self) {
        let log = self.c.issue_cmd(BrowserLog).await.expect("browser log");
        for entry in log.as_array().into_iter().flatten() {
            let level = entry["level"].as_str().unwrap_or("");
            if level == "SEVERE" || level == "WARNING" {
                let url = self
                    .c
                    .current_url()
                    .await
                    .map(|u| u.to_string())
                    .unwrap_or_default();
                self.errors.push(format!("{url}: {entry}"));
            }
        }
        let pwned = self
            .c
            .execute("return typeof window.__pwned", vec![])
            .await
            .expect("run a script");
        assert_eq!(pwned, json!("undefined"), "a hostile name ran as a script");
    }

    async fn shot(&mut self, name: &str) {
        self.check().await;
        let png = self.c.screenshot().await.expect("screenshot");
        std::fs::write(self.shots.join(format!("{name}.png")), png).expect("write screenshot");
    }

    /// A tall window for pages longer than a screen, then back.
    async fn shot_tall(&mut self, name: &str, height: u32) {
        self.c.set_window_size(1280, height).await.expect("resize");
        self.shot(name).await;
        self.c.set_window_size(1280, 900).await.expect("resize");
    }

    async fn text(&self, css: &str) -> String {
        self.c
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no `{css}` on the page: {e}"))
            .text()
            .await
            .expect("text")
    }

    async fn body(&self) -> String {
        self.text("body").await
    }

    async fn click(&mut self, css: &str) {
        self.c
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no `{css}` to click: {e}"))
            .click()
            .await
            .expect("click");
        self.check().await;
    }

    /// Clicks something that loads another page (a link, a form's button)
    /// and waits until the old page is gone and the new one loaded.
    async fn follow(&mut self, css: &str) {
        let old = self.c.find(Locator::Css("html")).await.expect("a page");
        self.c
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no `{css}` to click: {e}"))
            .click()
            .await
            .expect("click");
        let until = Instant::now() + Duration::from_secs(30);
        while old.tag_name().await.is_ok() {
            assert!(Instant::now() < until, "clicking `{css}` loaded no page");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let state = self
                .c
                .execute("return document.readyState", vec![])
                .await
                .unwrap_or_default();
            if state == json!("complete") {
                break;
            }
            assert!(
                Instant::now() < until,
                "the page after `{css}` did not load"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.check().await;
    }

    async fn fill(&self, css: &str, value: &str) {
        let e = self
            .c
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no `{css}` to fill: {e}"));
        e.clear().await.expect("clear");
        e.send_keys(value).await.expect("type");
    }

    async fn path(&self) -> String {
        self.c.current_url().await.expect("url").path().to_string()
    }
}

/// The example config and accounts (plus an account with a hostile name),
/// SMTP to `smtp_port`, the console at `port`, and a polled forum at
/// `forum` that fails.
fn home(port: u16, smtp_port: u16, forum: &str) -> Home {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = std::fs::read_to_string(repo.join("config/lull.toml"))
        .expect("config/lull.toml")
        .replace("127.0.0.1:9187", &format!("127.0.0.1:{port}"))
        .replace("schedule = \"0 30 2 * * *\"", "schedule = \"0 30 2 1 1 *\"")
        .replace(
            "detect_schedule = \"0 0 6 * * *\"",
            "detect_schedule = \"0 0 6 1 1 *\"",
        );
    let config = format!(
        "{config}\n[smtp]\nhost = \"127.0.0.1\"\nport = {smtp_port}\ntls = \"none\"\nfrom = \"lull <lull@vendor.example>\"\nretry_secs = 2\ntimeout_secs = 5\n\n\
         [console]\npublic_url = \"http://127.0.0.1:{port}\"\nadmins = [\"cm@vendor.example\"]\n\n\
         [[source]]\nname = \"community\"\nkind = \"discourse\"\nurl = \"{forum}\"\nschedule = \"*/5 * * * * *\"\nrequests_per_minute = 0\n"
    );
    let accounts = std::fs::read_to_string(repo.join("config/accounts.toml"))
        .expect("config/accounts.toml")
        + &format!(
            "\n[[account]]\nid = \"evil\"\nname = {}\ncsm = \"sam.lee@vendor.example\"\ndomains = [\"evil.example\"]\n",
            toml::Value::String(HOSTILE.into())
        );
    let h = Home::with(&config, &accounts);
    // 60 weeks of example activity ending today; umbrella went quiet.
    let events = h.path().join("events.jsonl");
    let out = Command::new(common::smtp::PYTHON)
        .arg(repo.join("config/example-events.py"))
        .arg("--out")
        .arg(&events)
        .output()
        .expect("python3 config/example-events.py");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let today = chrono::Utc::now().date_naive();
    let hostile = format!(
        "{{\"actor\": \"<img src=x onerror=window.__pwned=3>\", \"source\": \"forum\", \"at\": \"{}T09:00:00Z\", \"id\": \"hostile-actor\", \"kind\": \"post\"}}\n",
        today - chrono::Duration::days(2)
    );
    let mut text = std::fs::read_to_string(&events).expect("events");
    text.push_str(&hostile);
    std::fs::write(&events, text).expect("events");
    let out = h.run(&["import", events.to_str().expect("utf-8")]);
    assert!(out.status.success(), "import: {}", common::stderr(&out));
    let out = h.run(&["detect", "--no-send"]);
    assert!(out.status.success(), "detect: {}", common::stderr(&out));
    assert!(common::stdout(&out).contains("umbrella") || common::stderr(&out).contains("umbrella"));
    h
}

/// Waits for a message whose subject contains `subject`; its text part.
fn wait_for_mail(smtp: &Smtp, subject: &str, seen: usize) -> String {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let mails = smtp.mails();
        if let Some(m) = mails
            .iter()
            .skip(seen)
            .find(|m| m["subject"].as_str().unwrap_or("").contains(subject))
        {
            return m["text"].as_str().unwrap_or("").to_string();
        }
        assert!(
            Instant::now() < until,
            "no e-mail `{subject}` arrived: {mails:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn link_after(text: &str, label: &str) -> String {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .map(|l| l.trim().to_string())
        .unwrap_or_else(|| panic!("no `{label}` line in:\n{text}"))
}

/// A local forum that fails every request with a hostile error page.
async fn failing_forum() -> wiremock::MockServer {
    let server = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::any())
        .respond_with(
            wiremock::ResponseTemplate::new(404)
                .set_body_string("<script>window.__pwned=2</script>Not here"),
        )
        .mount(&server)
        .await;
    server
}

async fn sign_in(tab: &mut Tab, smtp: &Smtp, email: &str) {
    tab.goto("/c/").await;
    assert!(
        tab.path().await.starts_with("/c/login"),
        "anonymous goes to sign in"
    );
    tab.fill("#email", email).await;
    let seen = smtp.mails().len();
    tab.follow("form.card button[type=submit]").await;
    let b = tab.body().await;
    assert!(b.contains("a sign-in link is on its way"), "{b}");
    let mail = wait_for_mail(smtp, "Your sign-in link for lull", seen);
    let link = link_after(&mail, "Sign in:");
    tab.goto(&link).await;
    assert!(tab.body().await.contains(&format!("Sign in as {email}")));
    tab.follow("form.card button[type=submit]").await;
    assert_eq!(tab.path().await, "/c/");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_csm_and_an_admin_work_in_the_browser() {
    let smtp = Smtp::start(&[]);
    let forum = failing_forum().await;
    let port = free_port();
    let h = home(port, smtp.port, &forum.uri());
    let svc = Running::start(&h, port, &[]);
    // The alert queued by detection goes out at start, with links.
    let alert = wait_for_mail(&smtp, "Umbrella Health went quiet", 0);
    assert!(alert.contains("/c/act/"), "links in the alert:\n{alert}");
    // Its five regulars had dwindled to one before it went quiet.
    assert!(
        alert.contains("  1 of the ")
            && alert.contains(
                "people usually active in 90 days was active in the 90 days before it went quiet"
            ),
        "people in the alert:\n{alert}"
    );
    assert!(
        !alert.contains("lull snooze"),
        "no shell command in the footer"
    );
    let useful = link_after(&alert, "Useful:");

    let driver = Driver::start();
    let profile = tempfile::tempdir().expect("profile");
    let c = driver.browser(profile.path()).await;
    let mut tab = Tab {
        c,
        base: format!("http://127.0.0.1:{port}"),
        shots: shots_dir(),
        errors: Vec::new(),
    };
    tab.goto("/c/").await;
    tab.shot("01-sign-in").await;

    // A CSM signs in with the link that arrives by e-mail.
    sign_in(&mut tab, &smtp, "sam.lee@vendor.example").await;
    tab.shot("02-my-accounts").await;
    let first = tab.text("table.accounts tbody tr").await;
    assert!(
        first.contains("Umbrella Health") && first.contains("Silent"),
        "silent first: {first}"
    );
    let list = tab.text("table.accounts").await;
    assert!(list.contains(HOSTILE), "the hostile name is shown as text");
    assert!(
        !list.contains("Acme"),
        "another CSM's account is not listed"
    );
    tab.c.set_window_size(390, 844).await.expect("phone size");
    tab.shot("03-my-accounts-phone").await;
    tab.c.set_window_size(1280, 900).await.expect("resize");

    // The silent account: the quiet channel charted first.
    tab.follow("a[href='/c/accounts/umbrella']").await;
    assert_eq!(tab.path().await, "/c/accounts/umbrella");
    let channel = tab.text("article.channel").await;
    assert!(channel.contains("silent"), "{channel}");
    tab.c
        .find(Locator::Css("article.channel figure.chart svg"))
        .await
        .expect("a chart of the quiet channel");
    tab.shot_tall("04-account", 2600).await;

    // Snooze it.
    tab.fill("#reason", "Renewal call booked for next month")
        .await;
    tab.follow("form[action$='/snooze'] button[type=submit]")
        .await;
    let body = tab.body().await;
    assert!(
        body.contains("Snoozed.") && body.contains("Renewal call booked"),
        "{body}"
    );
    tab.shot("05-snoozed").await;

    // Mark its alert a false alarm.
    tab.follow("button[name=verdict][value=false_alarm]").await;
    let body = tab.body().await;
    assert!(
        body.contains("false alarm — sam.lee@vendor.example"),
        "{body}"
    );
    tab.shot_tall("06-feedback", 2600).await;

    tab.goto("/c/alerts").await;
    let alerts = tab.text("table.alerts").await;
    assert!(alerts.contains("sent") && alerts.contains("Umbrella Health went quiet"));
    tab.shot("07-alerts").await;

    // The alert e-mail's "useful" link: a GET changes nothing...
    tab.goto(&useful).await;
    assert!(tab.body().await.contains("Mark this alert as useful?"));
    tab.shot("08-email-link").await;
    let fb = request(
        port,
        "GET",
        "/api/v1/feedback",
        Some(&local_token(&h)),
        None,
    );
    assert!(
        fb.1.contains("false_alarm") && !fb.1.contains("\"useful\""),
        "{}",
        fb.1
    );
    // ...its button does it, once.
    tab.follow("main form button[type=submit]").await;
    assert!(tab.body().await.contains("is marked \"useful\""));
    tab.shot("09-email-link-done").await;
    tab.goto_refused(&useful).await;
    assert!(tab.body().await.contains("used already"));
    tab.goto("/c/accounts/umbrella").await;
    assert!(tab.body().await.contains("useful — sam.lee@vendor.example"));

    tab.follow("form.signout button").await;
    assert!(tab.path().await.starts_with("/c/login"));

    // An admin (a community manager): sources and tuning.
    sign_in(&mut tab, &smtp, "cm@vendor.example").await;
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        tab.goto("/c/sources").await;
        if tab.body().await.contains("window.__pwned=2") || Instant::now() > until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let sources = tab.body().await;
    assert!(
        sources.contains("<script>window.__pwned=2</script>Not here"),
        "the source's error, as text: {sources}"
    );
    tab.click("main details summary").await;
    assert!(
        tab.body()
            .await
            .contains("<img src=x onerror=window.__pwned=3>")
    );
    tab.shot_tall("10-sources", 1400).await;

    tab.goto("/c/tuning").await;
    tab.shot_tall("11-tuning", 1300).await;
    tab.fill("input[name='default.min_expected']", "30").await;
    tab.fill("input[name='default.silent_days']", "60").await;
    // Umbrella's known disengagement: its last busy day.
    let churn = chrono::Utc::now().date_naive() - chrono::Duration::days(41);
    tab.fill(
        "textarea[name='churned']",
        &format!("account,churn_date\numbrella,{churn}"),
    )
    .await;
    tab.follow("form.tuning button[type=submit]").await;
    let until = Instant::now() + Duration::from_secs(120);
    while tab.c.find(Locator::Css("#result")).await.is_err() {
        assert!(
            Instant::now() < until,
            "the tuning run did not finish: {}",
            tab.body().await
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        tab.check().await;
    }
    let result = tab.text("#result").await;
    assert!(
        result.contains("silence alerts") && result.contains("accounts alerted"),
        "{result}"
    );
    assert!(
        result.contains("alerts marked \"useful\" still alerted"),
        "feedback compared: {result}"
    );
    assert!(
        result.contains("silent alerts: recall") && result.contains("watch list: recall"),
        "scored against the churn history: {result}"
    );
    tab.click("details.card summary").await;
    let toml = tab.text("pre.copy").await;
    assert!(
        toml.contains("[detect]")
            && toml.contains("min_expected = 30")
            && toml.contains("silent_days = 60"),
        "{toml}"
    );
    tab.shot_tall("12-tuning-result", 2000).await;

    assert!(
        tab.errors.is_empty(),
        "browser console errors: {:#?}",
        tab.errors
    );
    tab.c.close().await.expect("close the browser");
    // Feedback is counted in /metrics.
    let (_, metrics) = request(port, "GET", "/metrics", None, None);
    assert!(
        metrics.contains("lull_feedback_total{verdict=\"useful\"} 1"),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("feedback"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    drop(svc);
}

fn local_token(h: &Home) -> String {
    std::fs::read_to_string(h.path().join("data/lull.db.cookie"))
        .expect("the service's local token")
        .trim()
        .to_string()
}

/// Many accounts (so detection takes a while) with history ending today.
fn busy_home(port: u16, forum: &str, accounts: usize) -> Home {
    let mut acc = String::new();
    for i in 0..accounts {
        acc.push_str(&format!(
            "[[account]]\nid = \"a{i}\"\nname = \"Account {i}\"\ncsm = \"csm{}@vendor.example\"\nhandles = {{ forum = [\"u{i}\"] }}\n\n",
            i % 10
        ));
    }
    let config = format!(
        "[store]\npath = \"data/lull.db\"\n[accounts]\nfile = \"accounts.toml\"\n\
         [service]\ndetect_schedule = \"0 0 6 1 1 *\"\n[http]\nlisten = \"127.0.0.1:{port}\"\n\
         [backup]\nschedule = \"0 0 3 1 1 *\"\n\
         [[source]]\nname = \"slow\"\nkind = \"discourse\"\nurl = \"{forum}\"\nschedule = \"* * * * * *\"\nrequests_per_minute = 0\n"
    );
    let h = Home::with(&config, &acc);
    let today = chrono::Utc::now().date_naive();
    let mut lines = String::new();
    for i in 0..accounts {
        for d in (0..400).step_by(4) {
            let day = today - chrono::Duration::days(d);
            lines.push_str(&format!(
                "{{\"actor\": \"u{i}\", \"source\": \"forum\", \"at\": \"{day}T12:00:00Z\", \"id\": \"{i}-{d}\", \"kind\": \"post\", \"count\": 2}}\n"
            ));
        }
    }
    let f = h.file("events.jsonl", &lines);
    let out = h.run(&["import", f.to_str().expect("utf-8")]);
    assert!(out.status.success(), "import: {}", common::stderr(&out));
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_answers_while_detection_and_polls_run() {
    // A forum that takes its time: polls stay in progress.
    let forum = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::any())
        .respond_with(
            wiremock::ResponseTemplate::new(200)
                .set_body_json(json!({"latest_posts": []}))
                .set_delay(Duration::from_secs(30)),
        )
        .mount(&forum)
        .await;
    let port = free_port();
    let h = busy_home(port, &forum.uri(), 2000);
    let svc = Running::start(&h, port, &[]);
    let out = h.run(&["console-link", "--email", "csm3@vendor.example"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let link = common::stdout(&out).trim().to_string();
    let path = link
        .trim_start_matches(&format!("http://127.0.0.1:{port}"))
        .to_string();
    let cookie = session_cookie(port, &path);

    // Polls are under way.
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, ready) = request(port, "GET", "/readyz", None, None);
        if ready.contains("\"polling\":true") {
            break;
        }
        assert!(Instant::now() < until, "no poll in progress: {ready}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // A detection run, recorded, through the API.
    let token = local_token(&h);
    let detect = std::thread::spawn(move || {
        let t = Instant::now();
        let r = request(port, "POST", "/api/v1/detect", Some(&token), Some("{}"));
        (r, t.elapsed())
    });
    let mut answered = Vec::new();
    while !detect.is_finished() {
        for p in ["/c/", "/c/accounts/a3", "/c/alerts"] {
            let t = Instant::now();
            let (status, body) = get_with_cookie(port, p, &cookie);
            assert_eq!(status, 200, "{p}: {body}");
            answered.push((p, t.elapsed(), detect.is_finished()));
        }
    }
    let ((status, body), took) = detect.join().expect("detect thread");
    assert_eq!(status, 200, "{body}");
    let during = answered.iter().filter(|(_, _, done)| !done).count();
    assert!(
        during >= 3,
        "pages answered during a {took:?} detection run: {answered:?}"
    );
    let slowest = answered
        .iter()
        .map(|(_, t, _)| *t)
        .max()
        .unwrap_or_default();
    assert!(
        slowest < Duration::from_secs(10),
        "a page took {slowest:?}: {answered:?}"
    );
    let v: Value = serde_json::from_str(&body).expect("detect answer");
    assert_eq!(v["accounts"].as_array().map(Vec::len), Some(2000));
    drop(svc);
}

fn session_cookie(port: u16, login_path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(
        s,
        "POST {login_path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )
    .expect("write");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read");
    raw.lines()
        .find_map(|l| l.strip_prefix("set-cookie: lull_session="))
        .map(|v| format!("lull_session={}", v.split(';').next().unwrap_or("")))
        .unwrap_or_else(|| panic!("no session cookie: {raw}"))
}

fn get_with_cookie(port: u16, path: &str, cookie: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nCookie: {cookie}\r\n\r\n"
    )
    .expect("write");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read");
    let status = raw
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, raw)
}
