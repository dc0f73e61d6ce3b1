//! Signing in and out of the console, and who a request comes from.
//!
//! - A CSM or admin types their address; if the accounts file or
//!   `[console] admins` knows it, lull e-mails a link that works once,
//!   within [`LOGIN_LINK_MINUTES`]. Whether the address is known is never
//!   said (the answer and its timing are the same).
//! - An admin may paste an API token with the role `admin`.
//! - Behind a single-sign-on proxy (`proxy_header`), the header names the
//!   user — believed only from `trusted_proxies`.
//!
//! A session is a signed cookie (`lull_session`, HttpOnly, SameSite=Strict,
//! Secure under TLS) holding who, whether admin, until when, and the CSRF
//! token every form of the session must carry.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;

use askama::Template;
use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::config::LOGIN_LINK_MINUTES;
use super::tokens::{self, LoginClaims, SessionClaims, TokenError};
use super::views::Layout;
use super::{ConsoleState, html, message};
use crate::app::feedback::LoginLinkRequest;
use crate::service::config::Role;
use crate::types::Day;

pub const SESSION_COOKIE: &str = "lull_session";
/// The sign-in form's own CSRF value (before there is a session).
pub const PRE_COOKIE: &str = "lull_pre";

/// Who is looking.
#[derive(Debug, Clone)]
pub struct Viewer {
    /// An e-mail address (lower case), or `token:NAME`.
    pub who: String,
    pub admin: bool,
    /// The value every form of this session carries.
    pub csrf: String,
}

impl Viewer {
    /// Whether this viewer may see (and act on) an account of `csm`.
    pub fn can_see(&self, csm: &str) -> bool {
        self.admin || self.who.eq_ignore_ascii_case(csm.trim())
    }

    /// Whether a form's `csrf` field is this session's.
    pub fn csrf_ok(&self, given: &str) -> bool {
        !given.is_empty() && bool::from(self.csrf.as_bytes().ct_eq(given.as_bytes()))
    }

    /// As recorded with a snooze.
    pub fn by(&self) -> String {
        format!("console:{}", self.who)
    }
}

/// Limits on asking for sign-in links: per address of the asker, and per
/// e-mail address asked for (nobody's inbox is flooded).
pub struct LoginLimits {
    per_ip: DefaultKeyedRateLimiter<IpAddr>,
    per_email: DefaultKeyedRateLimiter<String>,
}

impl Default for LoginLimits {
    fn default() -> Self {
        LoginLimits::new()
    }
}

impl LoginLimits {
    pub fn new() -> LoginLimits {
        let n = |v: u32| NonZeroU32::new(v).unwrap_or(NonZeroU32::MIN);
        LoginLimits {
            per_ip: RateLimiter::keyed(Quota::per_minute(n(10))),
            per_email: RateLimiter::keyed(Quota::per_hour(n(6)).allow_burst(n(3))),
        }
    }

    fn allow(&self, ip: IpAddr, email: &str) -> bool {
        if self.per_ip.len() > 10_000 {
            self.per_ip.retain_recent();
            self.per_email.retain_recent();
        }
        self.per_ip.check_key(&ip).is_ok() && self.per_email.check_key(&email.to_string()).is_ok()
    }
}

fn cookies(h: &HeaderMap) -> impl Iterator<Item = cookie::Cookie<'static>> + '_ {
    h.get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| cookie::Cookie::split_parse(v.to_string()))
        .filter_map(Result::ok)
}

fn cookie_value(h: &HeaderMap, name: &str) -> Option<String> {
    cookies(h)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_string())
}

impl ConsoleState {
    fn now(&self) -> i64 {
        self.app.clock.now().timestamp()
    }

    /// The viewer of a request from `peer`, if signed in.
    pub fn viewer(&self, h: &HeaderMap, peer: Option<IpAddr>) -> Option<Viewer> {
        let console = &self.app.config.console;
        if let (Some(name), Some(ip)) = (&console.proxy_header, peer)
            && console.trusted_proxies.contains(&ip)
            && let Some(user) = h.get(name.as_str()).and_then(|v| v.to_str().ok())
        {
            let who = user.trim().to_lowercase();
            if who.is_empty() {
                return None;
            }
            let admin = self.app.console_user(&who) == Some(true);
            return Some(Viewer {
                csrf: self.signer.tag("lull-csrf-proxy-v1", &who),
                admin,
                who,
            });
        }
        let token = cookie_value(h, SESSION_COOKIE)?;
        let c: SessionClaims = self
            .signer
            .verify(tokens::SESSION, &token, self.now())
            .ok()?;
        // Admin rights end when the config no longer names the address.
        let admin = c.admin && (c.who.starts_with("token:") || console.is_admin(&c.who));
        Some(Viewer {
            who: c.who,
            admin,
            csrf: c.csrf,
        })
    }

    /// A `Set-Cookie` for `name`; `None` clears it.
    fn set_cookie(&self, name: &str, value: Option<&str>, max_age_secs: i64) -> HeaderValue {
        let mut c = cookie::Cookie::build((name.to_string(), value.unwrap_or("").to_string()))
            .path("/c")
            .http_only(true)
            .same_site(cookie::SameSite::Strict)
            .secure(self.secure)
            .max_age(cookie::time::Duration::seconds(if value.is_some() {
                max_age_secs
            } else {
                0
            }))
            .build();
        if value.is_none() {
            c.make_removal();
        }
        HeaderValue::from_str(&c.to_string()).unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    /// Starts a session: the cookie to set.
    fn session_cookie(&self, who: &str, admin: bool) -> HeaderValue {
        let hours = i64::from(self.app.config.console.session_hours);
        let claims = SessionClaims {
            who: who.to_string(),
            admin,
            exp: self.now() + hours * 3600,
            csrf: tokens::random_token(),
        };
        let token = self.signer.sign(tokens::SESSION, &claims);
        self.set_cookie(SESSION_COOKIE, Some(&token), hours * 3600)
    }
}

impl FromRequestParts<ConsoleState> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, s: &ConsoleState) -> Result<Viewer, Response> {
        let peer = super::peer(&parts.extensions).map(|p| p.ip());
        if let Some(v) = s.viewer(&parts.headers, peer) {
            if !v.admin && !v.who.starts_with("token:") && s.app.console_user(&v.who).is_none() {
                return Err(message(
                    StatusCode::FORBIDDEN,
                    "Not a lull user",
                    &format!(
                        "{} is neither the CSM of an account nor a lull admin. Ask whoever runs lull to add you.",
                        v.who
                    ),
                ));
            }
            return Ok(v);
        }
        if parts.method == Method::GET {
            let next = parts
                .uri
                .path_and_query()
                .map_or("/c/", |p| p.as_str())
                .to_string();
            let q = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("next", &next)
                .finish();
            return Err(Redirect::to(&format!("/c/login?{q}")).into_response());
        }
        Err(message(
            StatusCode::FORBIDDEN,
            "Sign in first",
            "This needs you to be signed in to lull.",
        ))
    }
}

/// Only a path inside the console: never another site.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with("/c/")
                && !n.contains("//")
                && !n.contains('\\')
                && !n.starts_with("/c/login")
                && !n.chars().any(char::is_control) =>
        {
            n.to_string()
        }
        _ => "/c/".to_string(),
    }
}

#[derive(Template)]
#[template(path = "console/login.html")]
struct LoginPage {
    layout: Layout,
    next: String,
    pre: String,
    /// A message after a POST.
    notice: Option<String>,
    error: Option<String>,
    email_possible: bool,
    email: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct NextQuery {
    pub next: Option<String>,
}

/// The sign-in page.
pub async fn login_page(State(s): State<ConsoleState>, Query(q): Query<NextQuery>) -> Response {
    let pre = tokens::random_token();
    let page = LoginPage {
        layout: Layout::anonymous(),
        next: safe_next(q.next.as_deref()),
        pre: pre.clone(),
        notice: None,
        error: None,
        email_possible: email_possible(&s),
        email: String::new(),
    };
    let mut r = html(&page);
    r.headers_mut().append(
        header::SET_COOKIE,
        s.set_cookie(PRE_COOKIE, Some(&pre), 3600),
    );
    r
}

fn email_possible(s: &ConsoleState) -> bool {
    s.app.config.console.public_url.is_some() && s.app.config.smtp.is_some()
}

#[derive(Debug, Default, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub next: Option<String>,
    #[serde(default)]
    pub pre: String,
}

/// Asks for a sign-in link, or signs in with an API token.
pub async fn login_post(
    State(s): State<ConsoleState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    axum::Form(f): axum::Form<LoginForm>,
) -> Response {
    let next = safe_next(f.next.as_deref());
    let pre_ok = cookie_value(&headers, PRE_COOKIE)
        .is_some_and(|c| !f.pre.is_empty() && bool::from(c.as_bytes().ct_eq(f.pre.as_bytes())));
    let again = |notice: Option<String>, error: Option<String>, email: String| {
        let pre = tokens::random_token();
        let mut r = html(&LoginPage {
            layout: Layout::anonymous(),
            next: next.clone(),
            pre: pre.clone(),
            notice,
            error: error.clone(),
            email_possible: email_possible(&s),
            email,
        });
        if error.is_some() {
            *r.status_mut() = StatusCode::BAD_REQUEST;
        }
        r.headers_mut().append(
            header::SET_COOKIE,
            s.set_cookie(PRE_COOKIE, Some(&pre), 3600),
        );
        r
    };
    if !pre_ok {
        return again(
            None,
            Some("The sign-in form had expired; please send it again.".into()),
            f.email.clone().unwrap_or_default(),
        );
    }
    if let Some(token) = f.token.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        return match s.auth.check(Some(&format!("Bearer {token}")), peer.ip()) {
            Ok(c) if c.role == Role::Admin => {
                tracing::info!(token = %c.name, from = %peer.ip(), "console sign-in with an API token");
                let mut r = Redirect::to(&next).into_response();
                r.headers_mut().append(
                    header::SET_COOKIE,
                    s.session_cookie(&format!("token:{}", c.name), true),
                );
                r
            }
            Ok(c) => again(
                None,
                Some(format!(
                    "The token `{}` has the role `{}`; signing in with a token needs `admin`. CSMs sign in with their e-mail address.",
                    c.name,
                    c.role.as_str()
                )),
                String::new(),
            ),
            Err(crate::api::auth::Refusal::RateLimited) => again(
                None,
                Some("Too many failed attempts from your address; wait a minute.".into()),
                String::new(),
            ),
            Err(_) => {
                tracing::warn!(from = %peer.ip(), "console sign-in with a wrong token");
                again(None, Some("That token is not valid.".into()), String::new())
            }
        };
    }
    let email = f.email.as_deref().unwrap_or("").trim().to_lowercase();
    if !crate::accounts::is_plausible_email(&email) {
        return again(
            None,
            Some("Type the e-mail address lull sends your alerts to.".into()),
            email,
        );
    }
    if !email_possible(&s) {
        return again(
            None,
            Some(
                "This lull cannot send sign-in links: its config needs [console] public_url and [smtp]. Ask whoever runs lull for a link (`lull console-link --email you@…`)."
                    .into(),
            ),
            email,
        );
    }
    if !s.limits.allow(peer.ip(), &email) {
        return again(
            None,
            Some(
                "Several links were asked for already; use the newest one, or wait a few minutes."
                    .into(),
            ),
            email,
        );
    }
    // Known or not, the answer is the same and comes at once; the link
    // goes out in the background.
    let app = s.app.clone();
    let to = email.clone();
    tokio::spawn(async move {
        if let Err(e) = send_login_link(app, &to).await {
            tracing::warn!(to = %to, error = %e, "sign-in link not sent");
        }
    });
    again(
        Some(format!(
            "If {email} is known to lull, a sign-in link is on its way. It works once, within {LOGIN_LINK_MINUTES} minutes."
        )),
        None,
        String::new(),
    )
}

async fn send_login_link(app: std::sync::Arc<crate::app::App>, to: &str) -> anyhow::Result<()> {
    let a = app.clone();
    let email = to.to_string();
    let link = tokio::task::spawn_blocking(move || {
        if a.console_user(&email).is_none() {
            return Ok(None);
        }
        a.login_link(
            &LoginLinkRequest {
                email: Some(email),
                base: None,
            },
            "",
        )
        .map(Some)
    })
    .await??;
    let Some(link) = link else {
        tracing::info!(to, "sign-in asked for an address lull does not know");
        return Ok(());
    };
    let Some(smtp) = &app.config.smtp else {
        return Ok(());
    };
    let mailer = crate::alert::Mailer::new(smtp)?;
    let body = format!(
        "Someone (hopefully you) asked to sign in to lull as {to}.\n\nSign in: {}\n\nThe link works once, within {LOGIN_LINK_MINUTES} minutes. If you did not ask for it, ignore this e-mail.\n",
        link.url
    );
    let message = lettre::Message::builder()
        .from(app.sender())
        .to(to.parse()?)
        .subject("Your sign-in link for lull")
        .header(lettre::message::header::ContentType::TEXT_PLAIN)
        .body(body)?;
    mailer
        .send(message)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    tracing::info!(to, "sign-in link sent");
    Ok(())
}

#[derive(Template)]
#[template(path = "console/login_confirm.html")]
struct LoginConfirm {
    layout: Layout,
    who: String,
    admin: bool,
}

fn refused_link(e: TokenError) -> Response {
    match e {
        TokenError::Expired => message(
            StatusCode::GONE,
            "This sign-in link has expired",
            "Sign-in links work for a short while only. Ask for a new one on the sign-in page.",
        ),
        TokenError::Invalid => message(
            StatusCode::NOT_FOUND,
            "This sign-in link is not valid",
            "It may be cut off, or from another lull. Ask for a new one on the sign-in page.",
        ),
    }
}

/// A sign-in link opened: what it would do (mail scanners open links too).
pub async fn login_confirm(State(s): State<ConsoleState>, Path(token): Path<String>) -> Response {
    let c: LoginClaims = match s.signer.verify(tokens::LOGIN, &token, s.now()) {
        Ok(c) => c,
        Err(e) => return refused_link(e),
    };
    let store = s.app.store.clone();
    let nonce = c.nonce.clone();
    if matches!(
        tokio::task::spawn_blocking(move || store.nonce_used(&nonce)).await,
        Ok(Ok(true))
    ) {
        return used_link();
    }
    html(&LoginConfirm {
        layout: Layout::anonymous(),
        who: c.email,
        admin: c.admin,
    })
}

fn used_link() -> Response {
    message(
        StatusCode::CONFLICT,
        "This link was used already",
        "Each link works once. Ask for a new one if you need to.",
    )
}

/// The sign-in link's button: the link is spent, the session starts.
pub async fn login_finish(State(s): State<ConsoleState>, Path(token): Path<String>) -> Response {
    let c: LoginClaims = match s.signer.verify(tokens::LOGIN, &token, s.now()) {
        Ok(c) => c,
        Err(e) => return refused_link(e),
    };
    let store = s.app.store.clone();
    let nonce = c.nonce.clone();
    let expires = expiry_day(&s, c.exp);
    match tokio::task::spawn_blocking(move || store.use_nonce(&nonce, expires)).await {
        Ok(Ok(true)) => {}
        Ok(Ok(false)) => return used_link(),
        Ok(Err(e)) => {
            return message(
                StatusCode::SERVICE_UNAVAILABLE,
                "lull cannot record the sign-in",
                &e.to_string(),
            );
        }
        Err(e) => {
            return message(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The sign-in did not finish",
                &e.to_string(),
            );
        }
    }
    tracing::info!(who = %c.email, admin = c.admin, "console sign-in with a link");
    let mut r = Redirect::to("/c/").into_response();
    r.headers_mut()
        .append(header::SET_COOKIE, s.session_cookie(&c.email, c.admin));
    r
}

/// The day a token's expiry falls on (used links are remembered that long).
pub fn expiry_day(s: &ConsoleState, exp: i64) -> Day {
    let at = chrono::DateTime::from_timestamp(exp, 0).unwrap_or_else(chrono::Utc::now);
    Day::of(at, s.app.config.timezone).plus(1)
}

#[derive(Debug, Default, Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    pub csrf: String,
}

/// Signs out: the cookie goes.
pub async fn logout(
    State(s): State<ConsoleState>,
    v: Viewer,
    axum::Form(f): axum::Form<CsrfForm>,
) -> Response {
    if !v.csrf_ok(&f.csrf) {
        return super::pages::csrf_refused();
    }
    let mut r = Redirect::to("/c/login").into_response();
    r.headers_mut()
        .append(header::SET_COOKIE, s.set_cookie(SESSION_COOKIE, None, 0));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_inside_the_console() {
        assert_eq!(safe_next(Some("/c/accounts/acme")), "/c/accounts/acme");
        assert_eq!(safe_next(Some("https://evil.example/")), "/c/");
        assert_eq!(safe_next(Some("//evil.example/c/")), "/c/");
        assert_eq!(safe_next(Some("/c//evil.example")), "/c/");
        assert_eq!(safe_next(Some("/c/\\evil")), "/c/");
        assert_eq!(safe_next(Some("/c/login?next=x")), "/c/");
        assert_eq!(safe_next(None), "/c/");
    }

    #[test]
    fn a_viewer_sees_their_own_accounts_unless_admin() {
        let v = Viewer {
            who: "jane@vendor.example".into(),
            admin: false,
            csrf: "abc".into(),
        };
        assert!(v.can_see("Jane@Vendor.example"));
        assert!(!v.can_see("sam@vendor.example"));
        assert!(v.csrf_ok("abc"));
        assert!(!v.csrf_ok("") && !v.csrf_ok("abd"));
        let admin = Viewer { admin: true, ..v };
        assert!(admin.can_see("sam@vendor.example"));
    }
}
