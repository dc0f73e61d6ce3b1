//! The web console's promises, checked in-process on the console's own
//! router (the real application layer on a real store, a clock the test
//! moves): who may see and change what, CSRF, the single-use and
//! expiring e-mail links, hostile text shown as text, feedback kept as
//! data. The browser tests (tests/console_browser.rs) drive the real
//! binary in Chromium.

#![recursion_limit = "256"]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Request, header};
use common::Home;
use common::scenario::{Acct, TODAY, day, detect, setup};
use lull::app::App;
use lull::app::feedback::LoginLinkRequest;
use lull::console::ConsoleState;
use lull::schedule::Clock;
use tower::ServiceExt as _;

const CONSOLE: &str = "[console]\npublic_url = \"http://lull.test\"\nadmins = [\"boss@vendor.example\"]\nproxy_header = \"X-Forwarded-Email\"\ntrusted_proxies = [\"10.9.9.9\"]\ncrm_url = \"https://crm.example/accounts/{id}\"\n";
const HOSTILE: &str = "<script>window.__pwned=1</script>Evil & Co";

struct Console {
    _home: Home,
    app: Arc<App>,
    router: Router,
}

/// Two CSMs: jane has `quiet_a`, sam has `quiet_b` (with a hostile name);
/// both went quiet and have a queued alert.
fn console() -> Console {
    let config = format!(
        "[store]\npath = \"data/lull.db\"\n[accounts]\nfile = \"accounts.toml\"\n{CONSOLE}"
    );
    let home = setup(
        &[
            Acct(
                "quiet_a",
                "Quiet A",
                "jane@vendor.example",
                Some("smb"),
                true,
            ),
            Acct("quiet_b", HOSTILE, "sam@vendor.example", None, true),
        ],
        &config,
    );
    // An actor no account claims, with a hostile name.
    let f = home.file(
        "hostile.jsonl",
        &format!(
            "{{\"actor\": \"<img src=x onerror=alert(1)>\", \"source\": \"forum\", \"at\": \"{}T10:00:00Z\", \"id\": \"evil-1\", \"kind\": \"post\"}}\n",
            day(TODAY - 3)
        ),
    );
    let out = home.run(&["import", f.to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    detect(&home, TODAY, &[]);
    let app = open(&home);
    let router = router(&app);
    Console {
        _home: home,
        app,
        router,
    }
}

fn open(home: &Home) -> Arc<App> {
    let path = home.path().join("lull.toml");
    let config = lull::config::Config::load(&path).expect("config");
    let registry =
        lull::accounts::Registry::load(&config.accounts_file, &config.identity).expect("accounts");
    // Other tests of this binary spawn `lull` processes: a fork that
    // happens while this thread holds the store's file open (the lock
    // probe, then sled) carries a copy of the locked descriptor until its
    // exec closes it, so a lock taken in that instant fails. Try again.
    let mut tries = 0;
    let store = loop {
        match lull::store::Store::open(&config.store) {
            Err(lull::store::StoreError::Locked { .. }) if tries < 40 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            other => break other.expect("store"),
        }
    };
    let noon = day(TODAY)
        .date()
        .and_hms_opt(12, 0, 0)
        .expect("noon")
        .and_utc();
    Arc::new(App::new(
        config,
        path,
        registry,
        Arc::new(store),
        Clock::starting_at(noon),
    ))
}

const ADMIN_TOKEN: &str = "admin-token-for-tests";

fn router(app: &Arc<App>) -> Router {
    let auth = lull::api::auth::Auth::from_config(&[])
        .expect("no tokens")
        .with_local(&lull::secret::Secret::new(ADMIN_TOKEN.to_string()));
    let state = ConsoleState::new(app.clone(), Arc::new(auth), None, false).expect("console");
    lull::console::router(state)
}

struct Answer {
    status: u16,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The session cookie this answer sets (`name=value`).
    fn cookie(&self) -> Option<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|c| c.starts_with("lull_session=") && !c.starts_with("lull_session=;"))
            .map(|c| c.split(';').next().unwrap_or("").to_string())
    }

    fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect()
    }

    /// The value of the first hidden `csrf` field on the page.
    fn csrf(&self) -> String {
        let at = self
            .body
            .find("name=\"csrf\" value=\"")
            .expect("a form with a csrf field");
        let rest = &self.body[at + "name=\"csrf\" value=\"".len()..];
        rest[..rest.find('"').expect("end of value")].to_string()
    }
}

impl Console {
    async fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        form: Option<&str>,
        from: &str,
    ) -> Answer {
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, "lull.test");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        if form.is_some() {
            b = b.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        }
        let mut req = b
            .body(Body::from(form.unwrap_or("").to_string()))
            .expect("request");
        let peer: SocketAddr = format!("{from}:40000").parse().expect("address");
        req.extensions_mut().insert(ConnectInfo(peer));
        let r = self.router.clone().oneshot(req).await.expect("answer");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let bytes = axum::body::to_bytes(r.into_body(), 16 << 20)
            .await
            .expect("body");
        Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    async fn get(&self, path: &str, cookie: Option<&str>) -> Answer {
        let h: Vec<(&str, &str)> = cookie.iter().map(|c| ("cookie", *c)).collect();
        self.call("GET", path, &h, None, "127.0.0.1").await
    }

    async fn post(&self, path: &str, cookie: Option<&str>, form: &str) -> Answer {
        let h: Vec<(&str, &str)> = cookie.iter().map(|c| ("cookie", *c)).collect();
        self.call("POST", path, &h, Some(form), "127.0.0.1").await
    }

    /// Signs in `email` through a sign-in link; the session cookie.
    async fn sign_in(&self, email: &str) -> String {
        let link = self
            .app
            .login_link(
                &LoginLinkRequest {
                    email: Some(email.to_string()),
                    base: None,
                },
                "",
            )
            .expect("a sign-in link");
        let path = link
            .url
            .strip_prefix("http://lull.test")
            .expect("public_url");
        let r = self.post(path, None, "").await;
        assert_eq!(r.status, 303, "sign-in: {}", r.body);
        r.cookie().expect("a session cookie")
    }

    /// Signs in and reads the session's CSRF token from My accounts.
    async fn session(&self, email: &str) -> (String, String) {
        let cookie = self.sign_in(email).await;
        let page = self.get("/c/", Some(&cookie)).await;
        assert_eq!(page.status, 200, "{}", page.body);
        let csrf = page.csrf();
        (cookie, csrf)
    }

    fn snoozed(&self, id: &str) -> bool {
        self.app
            .snooze_of(&lull::types::AccountId(id.to_string()))
            .expect("snooze")
            .is_some()
    }

    /// A queued alert about `id`: (day, kind).
    fn alert_of(&self, id: &str) -> (lull::types::Day, String) {
        let m = self
            .app
            .alerts()
            .expect("alerts")
            .into_iter()
            .find(|m| m.accounts.iter().any(|a| a == id))
            .expect("an alert about the account");
        let i = m.accounts.iter().position(|a| a == id).expect("index");
        (m.day, m.kinds[i].clone())
    }
}

fn form(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

#[tokio::test]
async fn anonymous_visitors_see_nothing_and_change_nothing() {
    let c = console();
    for page in [
        "/c/",
        "/c/accounts/quiet_a",
        "/c/alerts",
        "/c/sources",
        "/c/tuning",
        "/c/tuning/abc",
    ] {
        let r = c.get(page, None).await;
        assert_eq!(r.status, 303, "{page}");
        assert!(
            r.location().starts_with("/c/login?next="),
            "{page}: {}",
            r.location()
        );
        assert!(!r.body.contains("Quiet A"), "{page} shows nothing");
    }
    // A forged cookie is no session.
    let r = c
        .get(
            "/c/",
            Some("lull_session=eyJ3aG8iOiJib3NzQHZlbmRvci5leGFtcGxlIn0.AAAA"),
        )
        .await;
    assert_eq!(r.status, 303);
    let until = day(TODAY + 10).to_string();
    for (path, body) in [
        (
            "/c/accounts/quiet_a/snooze",
            form(&[("until", &until), ("reason", "x"), ("csrf", "x")]),
        ),
        ("/c/accounts/quiet_a/unsnooze", form(&[("csrf", "x")])),
        (
            "/c/accounts/quiet_a/feedback",
            form(&[("day", &until), ("kind", "silent"), ("verdict", "useful")]),
        ),
        ("/c/tuning", form(&[("from", &until), ("to", &until)])),
        ("/c/logout", form(&[("csrf", "x")])),
    ] {
        let r = c.post(path, None, &body).await;
        assert_eq!(r.status, 403, "{path}: {}", r.body);
    }
    assert!(!c.snoozed("quiet_a"));
    assert!(c.app.feedback(None).expect("feedback").is_empty());
}

#[tokio::test]
async fn a_csm_sees_and_changes_only_their_own_accounts() {
    let c = console();
    let (jane, jane_csrf) = c.session("jane@vendor.example").await;
    let list = c.get("/c/", Some(&jane)).await;
    assert!(list.body.contains("Quiet A"));
    assert!(!list.body.contains("Evil &#38; Co") && !list.body.contains("steady0"));
    // Asking for another CSM's list gives one's own.
    let other = c.get("/c/?csm=sam%40vendor.example", Some(&jane)).await;
    assert!(!other.body.contains("Evil &#38; Co"));
    assert_eq!(c.get("/c/accounts/quiet_a", Some(&jane)).await.status, 200);
    let r = c.get("/c/accounts/quiet_b", Some(&jane)).await;
    assert_eq!(r.status, 403);
    assert!(!r.body.contains("Evil"), "not even the name");
    let until = day(TODAY + 10).to_string();
    let snooze = form(&[("until", &until), ("reason", "mine?"), ("csrf", &jane_csrf)]);
    assert_eq!(
        c.post("/c/accounts/quiet_b/snooze", Some(&jane), &snooze)
            .await
            .status,
        403
    );
    assert!(!c.snoozed("quiet_b"));
    let (d, k) = c.alert_of("quiet_b");
    let fb = form(&[
        ("day", &d.to_string()),
        ("kind", &k),
        ("verdict", "false_alarm"),
        ("csrf", &jane_csrf),
    ]);
    assert_eq!(
        c.post("/c/accounts/quiet_b/feedback", Some(&jane), &fb)
            .await
            .status,
        403
    );
    // Sources and tuning are for admins.
    assert_eq!(c.get("/c/sources", Some(&jane)).await.status, 403);
    assert_eq!(c.get("/c/tuning", Some(&jane)).await.status, 403);
    // Alerts: only hers.
    let alerts = c.get("/c/alerts", Some(&jane)).await;
    assert!(alerts.body.contains("quiet_a") && !alerts.body.contains("quiet_b"));
    // Her own account she can snooze.
    let r = c
        .post(
            "/c/accounts/quiet_a/snooze",
            Some(&jane),
            &form(&[
                ("until", &until),
                ("reason", "call booked"),
                ("csrf", &jane_csrf),
            ]),
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(c.snoozed("quiet_a"));
    let page = c.get(r.location(), Some(&jane)).await;
    assert!(page.body.contains("Snoozed.") && page.body.contains("call booked"));

    // An admin sees everyone's, sources and tuning.
    let (boss, _) = c.session("boss@vendor.example").await;
    let all = c.get("/c/", Some(&boss)).await;
    assert!(all.body.contains("Quiet A") && all.body.contains("Evil &#38; Co"));
    assert_eq!(c.get("/c/accounts/quiet_b", Some(&boss)).await.status, 200);
    assert_eq!(c.get("/c/sources", Some(&boss)).await.status, 200);
    assert_eq!(c.get("/c/tuning", Some(&boss)).await.status, 200);

    // The single-sign-on header counts only from the trusted proxy.
    let via_proxy = c
        .call(
            "GET",
            "/c/accounts/quiet_b",
            &[("x-forwarded-email", "sam@vendor.example")],
            None,
            "10.9.9.9",
        )
        .await;
    assert_eq!(via_proxy.status, 200);
    let spoofed = c
        .call(
            "GET",
            "/c/accounts/quiet_b",
            &[("x-forwarded-email", "sam@vendor.example")],
            None,
            "10.9.9.8",
        )
        .await;
    assert_eq!(spoofed.status, 303, "a header from elsewhere is ignored");
    let stranger = c
        .call(
            "GET",
            "/c/",
            &[("x-forwarded-email", "mallory@vendor.example")],
            None,
            "10.9.9.9",
        )
        .await;
    assert_eq!(stranger.status, 403, "{}", stranger.body);

    // An admin API token signs in too; a wrong one does not.
    let login = c.get("/c/login", None).await;
    let pre_cookie = login
        .set_cookies()
        .into_iter()
        .find(|x| x.starts_with("lull_pre="))
        .expect("pre cookie");
    let pre = pre_cookie.split(';').next().unwrap_or("").to_string();
    let pre_value = pre.trim_start_matches("lull_pre=").to_string();
    let ok = c
        .post(
            "/c/login",
            Some(&pre),
            &form(&[("token", ADMIN_TOKEN), ("pre", &pre_value)]),
        )
        .await;
    assert_eq!(ok.status, 303, "{}", ok.body);
    let token_session = ok.cookie().expect("session");
    assert!(c.get("/c/sources", Some(&token_session)).await.status == 200);
    let bad = c
        .post(
            "/c/login",
            Some(&pre),
            &form(&[("token", "guess"), ("pre", &pre_value)]),
        )
        .await;
    assert_eq!(bad.status, 400);
    assert!(bad.cookie().is_none());
}

#[tokio::test]
async fn forms_need_the_session_csrf_token_and_must_come_from_lull() {
    let c = console();
    let (jane, csrf) = c.session("jane@vendor.example").await;
    let until = day(TODAY + 10).to_string();
    for token in [None, Some("wrong"), Some("")] {
        let mut pairs = vec![("until", until.as_str()), ("reason", "r")];
        if let Some(t) = token {
            pairs.push(("csrf", t));
        }
        let r = c
            .post("/c/accounts/quiet_a/snooze", Some(&jane), &form(&pairs))
            .await;
        assert_eq!(r.status, 403, "csrf {token:?}");
    }
    assert!(!c.snoozed("quiet_a"));
    // Another session's token does not do either.
    let (_, boss_csrf) = c.session("boss@vendor.example").await;
    let r = c
        .post(
            "/c/accounts/quiet_a/snooze",
            Some(&jane),
            &form(&[("until", &until), ("reason", "r"), ("csrf", &boss_csrf)]),
        )
        .await;
    assert_eq!(r.status, 403);
    // The right token from another site is refused too.
    let good = form(&[("until", &until), ("reason", "r"), ("csrf", &csrf)]);
    for h in [
        ("origin", "https://evil.example"),
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-site", "same-site"),
        ("origin", "null"),
    ] {
        let r = c
            .call(
                "POST",
                "/c/accounts/quiet_a/snooze",
                &[("cookie", jane.as_str()), h],
                Some(&good),
                "127.0.0.1",
            )
            .await;
        assert_eq!(r.status, 403, "{h:?}");
    }
    assert!(!c.snoozed("quiet_a"));
    let r = c
        .call(
            "POST",
            "/c/accounts/quiet_a/snooze",
            &[
                ("cookie", jane.as_str()),
                ("origin", "http://lull.test"),
                ("sec-fetch-site", "same-origin"),
            ],
            Some(&good),
            "127.0.0.1",
        )
        .await;
    assert_eq!(r.status, 303);
    assert!(c.snoozed("quiet_a"));
    // Cookies are HttpOnly and SameSite=Strict; pages are not framed.
    let login = c.get("/c/login", None).await;
    for set in login.set_cookies() {
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict"),
            "{set}"
        );
    }
    assert_eq!(
        login
            .headers
            .get("x-frame-options")
            .and_then(|v| v.to_str().ok()),
        Some("DENY")
    );
    let csp = login
        .headers
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
}

#[tokio::test(start_paused = true)]
async fn email_links_are_bound_to_one_account_and_action_expire_and_work_once() {
    let c = console();
    let links = c.app.links().expect("links").expect("public_url is set");
    let (d, kind) = c.alert_of("quiet_a");
    let now = c.app.clock.now();
    let a = links.for_notice("quiet_a", d, &kind, "jane@vendor.example", now);
    let b = links.for_notice("quiet_b", d, &kind, "sam@vendor.example", now);
    let path = |u: &str| {
        u.strip_prefix("http://lull.test")
            .expect("base")
            .to_string()
    };

    // A GET shows what would happen and changes nothing (mail scanners).
    for _ in 0..3 {
        let r = c.get(&path(&a.snooze), None).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(r.body.contains("Snooze the account for 30 days") && r.body.contains("Quiet A"));
    }
    let r = c.get(&path(&a.false_alarm), None).await;
    assert_eq!(r.status, 200);
    assert!(!c.snoozed("quiet_a"));
    assert!(c.app.feedback(None).expect("feedback").is_empty());

    // A's link rewritten to name B is not a link.
    let token = a.snooze.rsplit('/').next().expect("token");
    let (payload, sig) = token.split_once('.').expect("payload.sig");
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut claims: serde_json::Value =
        serde_json::from_slice(&b64.decode(payload).expect("b64")).expect("json");
    claims["account"] = "quiet_b".into();
    let forged = format!(
        "{}.{sig}",
        b64.encode(serde_json::to_vec(&claims).expect("json"))
    );
    assert_eq!(
        c.post(&format!("/c/act/{forged}"), None, "").await.status,
        404
    );
    // Nor is a snooze link a feedback link, nor a sign-in.
    let useful_with_snooze_sig = {
        let u = a.useful.rsplit('/').next().expect("token");
        format!("{}.{sig}", u.split_once('.').expect("p").0)
    };
    assert_eq!(
        c.post(&format!("/c/act/{useful_with_snooze_sig}"), None, "")
            .await
            .status,
        404
    );
    assert_eq!(
        c.post(&format!("/c/login/{token}"), None, "").await.status,
        404
    );
    assert!(!c.snoozed("quiet_b"));

    // The button acts once, on A only, recorded as its recipient's.
    let r = c
        .post(
            &path(&a.snooze),
            None,
            &form(&[("reason", "back from holiday in May")]),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(c.snoozed("quiet_a") && !c.snoozed("quiet_b"));
    let s = c
        .app
        .snooze_of(&lull::types::AccountId("quiet_a".into()))
        .expect("snooze")
        .expect("set");
    assert_eq!(s.by.as_deref(), Some("email:jane@vendor.example"));
    assert_eq!(s.until, day(TODAY + 30));
    let again = c.post(&path(&a.snooze), None, "").await;
    assert_eq!(again.status, 409, "a link works once");
    assert_eq!(c.get(&path(&a.snooze), None).await.status, 409);

    let r = c.post(&path(&a.false_alarm), None, "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let fb = c.app.feedback(Some("quiet_a")).expect("feedback");
    assert_eq!(fb.len(), 1);
    assert_eq!(fb[0].verdict.as_str(), "false_alarm");
    assert_eq!(
        (fb[0].by.as_str(), fb[0].via.as_str()),
        ("jane@vendor.example", "email")
    );
    assert_eq!((fb[0].day, fb[0].kind.as_str()), (d, kind.as_str()));
    assert!(
        c.app
            .feedback(Some("quiet_b"))
            .expect("feedback")
            .is_empty()
    );

    // Open shows the account without a session, read only.
    let open = c.get(&path(&a.open), None).await;
    assert_eq!(open.status, 200);
    assert!(open.body.contains("Quiet A") && !open.body.contains("name=\"csrf\""));

    // Past their days, links expire; B's unused link too.
    tokio::time::advance(std::time::Duration::from_secs(15 * 86_400)).await;
    assert_eq!(c.get(&path(&b.useful), None).await.status, 410);
    assert_eq!(c.post(&path(&b.useful), None, "").await.status, 410);
    assert!(
        c.app
            .feedback(Some("quiet_b"))
            .expect("feedback")
            .is_empty()
    );
}

#[tokio::test(start_paused = true)]
async fn sign_in_links_work_once_and_briefly() {
    let c = console();
    let link = c
        .app
        .login_link(
            &LoginLinkRequest {
                email: Some("Jane@Vendor.example".into()),
                base: None,
            },
            "",
        )
        .expect("link");
    let path = link
        .url
        .strip_prefix("http://lull.test")
        .expect("base")
        .to_string();
    // A GET (a mail scanner) does not sign in, nor spend the link.
    let r = c.get(&path, None).await;
    assert_eq!(r.status, 200);
    assert!(r.cookie().is_none() && r.body.contains("jane@vendor.example"));
    let r = c.post(&path, None, "").await;
    assert_eq!(r.status, 303);
    assert!(r.cookie().is_some());
    assert_eq!(c.post(&path, None, "").await.status, 409, "once");
    // Unknown addresses get no link at all.
    assert!(
        c.app
            .login_link(
                &LoginLinkRequest {
                    email: Some("mallory@vendor.example".into()),
                    base: None
                },
                ""
            )
            .is_err()
    );
    let late = c
        .app
        .login_link(
            &LoginLinkRequest {
                email: Some("sam@vendor.example".into()),
                base: None,
            },
            "",
        )
        .expect("link");
    tokio::time::advance(std::time::Duration::from_secs(16 * 60)).await;
    let path = late
        .url
        .strip_prefix("http://lull.test")
        .expect("base")
        .to_string();
    assert_eq!(c.post(&path, None, "").await.status, 410);
    // A session ends after its hours.
    let (cookie, _) = c.session("sam@vendor.example").await;
    assert_eq!(c.get("/c/", Some(&cookie)).await.status, 200);
    tokio::time::advance(std::time::Duration::from_secs(13 * 3600)).await;
    assert_eq!(c.get("/c/", Some(&cookie)).await.status, 303);
}

#[tokio::test]
async fn hostile_names_are_shown_as_text() {
    let c = console();
    let (boss, _) = c.session("boss@vendor.example").await;
    for page in ["/c/", "/c/accounts/quiet_b", "/c/alerts", "/c/sources"] {
        let r = c.get(page, Some(&boss)).await;
        assert_eq!(r.status, 200, "{page}");
        assert!(
            !r.body.contains("<script>window"),
            "{page} has the raw script"
        );
        assert!(!r.body.contains("<img src=x"), "{page} has the raw tag");
    }
    let list = c.get("/c/", Some(&boss)).await;
    assert!(
        list.body
            .contains("&#60;script&#62;window.__pwned=1&#60;/script&#62;Evil &#38; Co"),
        "the name is shown, as text: {}",
        list.body
    );
    let sources = c.get("/c/sources", Some(&boss)).await;
    assert!(
        sources
            .body
            .contains("&#60;img src=x onerror=alert(1)&#62;"),
        "the actor is listed, as text"
    );
}

#[tokio::test]
async fn feedback_is_kept_with_who_when_and_the_alert_exported_and_compared() {
    let c = console();
    let (sam, csrf) = c.session("sam@vendor.example").await;
    let (d, kind) = c.alert_of("quiet_b");
    let r = c
        .post(
            "/c/accounts/quiet_b/feedback",
            Some(&sam),
            &form(&[
                ("day", &d.to_string()),
                ("kind", &kind),
                ("verdict", "useful"),
                ("csrf", &csrf),
            ]),
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    // A later verdict on the same alert replaces it.
    let r = c
        .post(
            "/c/accounts/quiet_b/feedback",
            Some(&sam),
            &form(&[
                ("day", &d.to_string()),
                ("kind", &kind),
                ("verdict", "already_knew"),
                ("csrf", &csrf),
            ]),
        )
        .await;
    assert_eq!(r.status, 303);
    let fb = c.app.feedback(None).expect("feedback");
    assert_eq!(fb.len(), 1);
    assert_eq!(fb[0].verdict.as_str(), "already_knew");
    assert_eq!(
        (fb[0].by.as_str(), fb[0].via.as_str()),
        ("sam@vendor.example", "console")
    );
    assert!(fb[0].at <= c.app.clock.now());
    // Feedback answers an alert lull sent: no alert, no feedback.
    let r = c
        .post(
            "/c/accounts/quiet_b/feedback",
            Some(&sam),
            &form(&[
                ("day", &day(TODAY - 100).to_string()),
                ("kind", "silent"),
                ("verdict", "useful"),
                ("csrf", &csrf),
            ]),
        )
        .await;
    assert_eq!(r.status, 404);
    // Shown on the account's page.
    let page = c.get("/c/accounts/quiet_b", Some(&sam)).await;
    assert!(
        page.body.contains("already knew — sam@vendor.example"),
        "{}",
        page.body
    );
    // In the backup...
    let f = c
        .app
        .snapshot(lull::app::ops::Snapshot::Backup)
        .expect("backup");
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(f), &mut text).expect("gunzip");
    assert!(text.lines().any(|l| l.contains("\"feedback\"")
        && l.contains("already_knew")
        && l.contains("quiet_b")));
    // ...and compared with a backtest's alerts.
    let bt = c
        .app
        .backtest(
            &lull::app::ops::BacktestRequest {
                from: day(TODAY - 60),
                to: day(TODAY),
                detect: None,
                report: false,
                churned: None,
            },
            |_| {},
        )
        .expect("backtest");
    assert_eq!(bt.feedback.given.get("already_knew"), Some(&1));
    assert_eq!(bt.feedback.still_alerted.get("already_knew"), Some(&1));
    let strict = c
        .app
        .backtest(
            &lull::app::ops::BacktestRequest {
                from: day(TODAY - 60),
                to: day(TODAY),
                detect: Some(serde_json::json!({"silent_days": 200})),
                report: false,
                churned: None,
            },
            |_| {},
        )
        .expect("backtest");
    assert_eq!(strict.feedback.still_alerted.get("already_knew"), None);
}
