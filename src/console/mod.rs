//! The web console under `/c/`: server-rendered pages for CSMs (their
//! accounts, one account's picture, snooze, feedback), community managers
//! (tuning thresholds on the live data) and ops (sources, alerts), served
//! by the service's own HTTP endpoint. No JavaScript is needed; a small
//! script adds copy buttons. Everything the pages show comes from the
//! application layer ([`crate::app::App`]), the same code the API and CLI
//! call.
//!
//! Who may look: a CSM (signed in with a one-time link sent to the address
//! the accounts file knows) sees their own accounts; `[console] admins`
//! (or an admin API token) see everything. A single-sign-on proxy's user
//! header is believed only from `trusted_proxies`. Sessions are signed
//! cookies (HttpOnly, SameSite=Strict, Secure under TLS); every form
//! carries the session's CSRF token, and POSTs from another site are
//! refused outright. Links in alert e-mails carry signed, expiring,
//! single-use tokens bound to one account and one action; a GET of one
//! only shows what it would do.

pub mod config;
pub mod pages;
pub mod session;
pub mod tokens;
pub mod tuning;
pub mod views;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use askama::Template;
use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use crate::api::auth::Auth;
use crate::app::App;
use crate::service::health::Health;
use tokens::Signer;

/// What the console's handlers share.
#[derive(Clone)]
pub struct ConsoleState {
    pub app: Arc<App>,
    /// API tokens (an admin may sign in with one).
    pub auth: Arc<Auth>,
    pub signer: Signer,
    pub health: Option<Arc<Health>>,
    /// Cookies only over HTTPS: the listener has TLS or `public_url` is
    /// `https`.
    pub secure: bool,
    pub limits: Arc<session::LoginLimits>,
    pub jobs: Arc<tuning::Jobs>,
}

impl ConsoleState {
    pub fn new(
        app: Arc<App>,
        auth: Arc<Auth>,
        health: Option<Arc<Health>>,
        tls: bool,
    ) -> Result<ConsoleState, crate::app::AppError> {
        let secure = tls
            || app
                .config
                .console
                .public_url
                .as_ref()
                .is_some_and(|u| u.scheme() == "https");
        Ok(ConsoleState {
            signer: app.signer()?,
            app,
            auth,
            health,
            secure,
            limits: Arc::new(session::LoginLimits::new()),
            jobs: Arc::new(tuning::Jobs::default()),
        })
    }
}

/// Pages are answered within this (a tuning run goes on in the background).
pub const PAGE_TIMEOUT: Duration = Duration::from_secs(60);
/// Forms are small.
pub const FORM_LIMIT: usize = 64 << 10;

static CSS: &str = include_str!("../../assets/console/lull.css");
static JS: &str = include_str!("../../assets/console/lull.js");
static ICON: &str = include_str!("../../assets/console/icon.svg");

/// The console's routes.
pub fn router(state: ConsoleState) -> Router {
    use tower_http::limit::RequestBodyLimitLayer;
    use tower_http::timeout::TimeoutLayer;
    Router::new()
        .route("/", get(|| async { Redirect::to("/c/") }))
        .route("/c", get(|| async { Redirect::to("/c/") }))
        .route("/c/", get(pages::my_accounts))
        .route("/c/accounts/{id}", get(pages::account))
        .route("/c/accounts/{id}/snooze", post(pages::snooze))
        .route("/c/accounts/{id}/unsnooze", post(pages::unsnooze))
        .route("/c/accounts/{id}/feedback", post(pages::feedback))
        .route("/c/alerts", get(pages::alerts))
        .route("/c/sources", get(pages::sources))
        .route("/c/tuning", get(tuning::form).post(tuning::start))
        .route("/c/tuning/{job}", get(tuning::show))
        .route(
            "/c/login",
            get(session::login_page).post(session::login_post),
        )
        .route(
            "/c/login/{token}",
            get(session::login_confirm).post(session::login_finish),
        )
        .route("/c/logout", post(session::logout))
        .route("/c/chart/{token}", get(pages::chart))
        .route(
            "/c/act/{token}",
            get(pages::action_page).post(pages::action_post),
        )
        .route(
            "/c/static/lull.css",
            get(|| async { asset(CSS, "text/css") }),
        )
        .route(
            "/c/static/lull.js",
            get(|| async { asset(JS, "text/javascript") }),
        )
        .route(
            "/c/static/icon.svg",
            get(|| async { asset(ICON, "image/svg+xml") }),
        )
        .route(
            "/favicon.ico",
            get(|| async { asset(ICON, "image/svg+xml") }),
        )
        .layer(axum::middleware::from_fn(guard))
        // Pages are mostly markup and SVG: gzip makes them a fifth.
        .layer(tower_http::compression::CompressionLayer::new())
        .layer(RequestBodyLimitLayer::new(FORM_LIMIT))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::GATEWAY_TIMEOUT,
            PAGE_TIMEOUT,
        ))
        .with_state(state)
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// What every console answer carries, and the first check of every POST:
/// one from another site (a forged form) is refused before any handler
/// sees it, whatever cookies came with it.
async fn guard(req: Request, next: Next) -> Response {
    if req.method() == Method::POST && cross_site(req.headers()) {
        return message(
            StatusCode::FORBIDDEN,
            "Refused",
            "This form was sent from another site. Open the page in lull and send it from there.",
        );
    }
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Links carry tokens: they never travel in a Referer to another
    // site (and `no-referrer` would make browsers send `Origin: null`).
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    r
}

/// A request a browser says came from another site: `Sec-Fetch-Site`
/// other than `same-origin` or `none` (typed or bookmarked), or — from a
/// browser that does not send it — an `Origin` whose host is not the one
/// asked.
fn cross_site(h: &HeaderMap) -> bool {
    if let Some(site) = h.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return !(site.eq_ignore_ascii_case("same-origin") || site.eq_ignore_ascii_case("none"));
    }
    let Some(origin) = h.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let host = h.get(header::HOST).and_then(|v| v.to_str().ok());
    match (url::Url::parse(origin), host) {
        (Ok(o), Some(host)) => {
            let o_host = match (o.host_str(), o.port()) {
                (Some(hs), Some(p)) => format!("{hs}:{p}"),
                (Some(hs), None) => hs.to_string(),
                _ => return true,
            };
            !o_host.eq_ignore_ascii_case(host)
        }
        // `null` (a sandboxed frame, a data: page) or unreadable.
        _ => true,
    }
}

/// Who is asking, for the logs.
pub fn peer(parts: &axum::http::Extensions) -> Option<SocketAddr> {
    parts
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
}

/// A page of its own: a message with a title.
#[derive(Template)]
#[template(path = "console/message.html")]
struct MessagePage<'a> {
    layout: views::Layout,
    title: &'a str,
    text: &'a str,
}

/// A message page with `status`.
pub fn message(status: StatusCode, title: &str, text: &str) -> Response {
    let page = MessagePage {
        layout: views::Layout::anonymous(),
        title,
        text,
    };
    (status, html(&page)).into_response()
}

/// A rendered template as a response (a rendering failure is a 500 page
/// without details).
pub fn html(t: &impl Template) -> Response {
    match t.render() {
        Ok(body) => ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a console page failed to render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered; see lull's log",
            )
                .into_response()
        }
    }
}
