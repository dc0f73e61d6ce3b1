//! The HTTP API under `/api/v1/`: everything a person or script does with
//! lull, on the endpoint the service already serves `/healthz`, `/readyz`
//! and `/metrics` on. Every route needs a bearer token ([`auth`]); each
//! says which role it needs. Answers are JSON (export and backup stream
//! files); errors are `{"error": {"code", "message"}}` with a stable code.
//! The OpenAPI document, generated from this code, is at
//! `/api/v1/openapi.json`.
//!
//! Handlers are thin: they check the role, then call the application
//! layer ([`crate::app::App`]) off the async workers — the same methods the
//! CLI calls on a local store.

pub mod auth;
pub mod client;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use utoipa::OpenApi;

use crate::alert::MailRecord;
use crate::app::accounts::{AccountDetail, AccountsPage, AccountsQuery};
use crate::app::feedback::{Feedback, FeedbackRequest, LoginLink, LoginLinkRequest};
use crate::app::ops::{
    BacktestOutcome, BacktestRequest, DeliverOutcome, DetectOutcome, DetectRequest, ImportOutcome,
    ReloadOutcome, Snapshot, SnoozeOutcome, SnoozeRequest, SourceInfo,
};
use crate::app::{App, AppError};
use crate::service::config::Role;
use crate::service::health::Health;
use crate::store::UnmatchedActor;
use crate::types::Day;
use auth::{Auth, Caller, Refusal};

/// JSON requests are small; only the import streams a body of any size.
pub const BODY_LIMIT: usize = 64 << 10;
/// Routes that only look are answered within this.
pub const QUICK_TIMEOUT: Duration = Duration::from_secs(60);
/// Backtests, exports, backups and deliveries take longer, but not for
/// ever (a client that sends its request slowly is cut off too).
pub const LONG_TIMEOUT: Duration = Duration::from_secs(1800);

/// What the API's handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub app: Arc<App>,
    pub auth: Arc<Auth>,
    /// The service's health (sources' last polls and errors).
    pub health: Option<Arc<Health>>,
    /// Wakes the service's delivery loop after detection queued.
    pub wake_delivery: Option<Arc<tokio::sync::Notify>>,
    /// Told when `POST /reload` re-read the config (TLS files, health).
    pub on_reload: Option<Arc<dyn Fn() + Send + Sync>>,
}

/// An error as the API answers it.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: AppError,
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, axum::Json(ErrorBody { error: self })).into_response()
    }
}

fn refused(code: &str, status: u16, message: &str) -> Response {
    let mut r = AppError::new(code, status, message).into_response();
    if status == 401 {
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    r
}

/// Needs at least `role`.
fn need(caller: &Caller, role: Role) -> Result<(), AppError> {
    if caller.role >= role {
        Ok(())
    } else {
        metrics::counter!(AUTH_FAILURES, "reason" => "forbidden").increment(1);
        Err(AppError::new(
            "forbidden",
            403,
            format!(
                "the token `{}` has the role `{}`; this needs `{}`",
                caller.name,
                caller.role.as_str(),
                role.as_str()
            ),
        ))
    }
}

/// Refused API requests, by reason (`missing`, `invalid`, `rate_limited`,
/// `forbidden`).
pub const AUTH_FAILURES: &str = "lull_api_auth_failures_total";
/// API requests answered, by status class (`2xx`, `4xx`, `5xx`).
pub const REQUESTS: &str = "lull_api_requests_total";

/// Registers the API's metrics at zero.
pub fn register_metrics() {
    metrics::describe_counter!(AUTH_FAILURES, "API requests refused, by reason.");
    metrics::describe_counter!(REQUESTS, "API requests answered, by status class.");
    for r in ["missing", "invalid", "rate_limited", "forbidden"] {
        metrics::counter!(AUTH_FAILURES, "reason" => r).absolute(0);
    }
    for c in ["2xx", "4xx", "5xx"] {
        metrics::counter!(REQUESTS, "class" => c).absolute(0);
    }
}

async fn authenticate(
    State(s): State<ApiState>,
    ConnectInfo(from): ConnectInfo<SocketAddr>,
    mut req: Request,
    next: Next,
) -> Response {
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let response = match s.auth.check(header, from.ip()) {
        Ok(caller) => {
            let span = tracing::info_span!("api", caller = %caller.name, method = %req.method(), path = %req.uri().path());
            req.extensions_mut().insert(caller);
            let _e = span.enter();
            drop(_e);
            next.run(req).await
        }
        Err(r) => {
            metrics::counter!(AUTH_FAILURES, "reason" => r.as_str()).increment(1);
            tracing::warn!(from = %from.ip(), reason = r.as_str(), path = %req.uri().path(), "API request refused");
            match r {
                Refusal::Missing => refused(
                    "unauthorized",
                    401,
                    "this needs a token: `Authorization: Bearer <token>` (see [[http.token]] in the config)",
                ),
                Refusal::Invalid => refused("unauthorized", 401, "that token is not valid"),
                Refusal::RateLimited => refused(
                    "too_many_failures",
                    429,
                    "too many failed attempts from this address; wait a minute",
                ),
            }
        }
    };
    let class = match response.status().as_u16() {
        200..=299 => "2xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    metrics::counter!(REQUESTS, "class" => class).increment(1);
    response
}

/// Runs blocking application code off the async workers (the API's and
/// the console's handlers).
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, AppError> + Send + 'static,
) -> Result<T, AppError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AppError::new("internal", 500, format!("the request did not finish: {e}")))?
}

type Json<T> = axum::Json<T>;
type Caller_ = axum::Extension<Caller>;

/// The `/api/v1` routes.
pub fn router(state: ApiState) -> Router {
    use tower_http::limit::RequestBodyLimitLayer;
    use tower_http::timeout::TimeoutLayer;
    let quick = Router::new()
        .route("/accounts", get(accounts))
        .route("/accounts/{id}", get(account))
        .route("/accounts/{id}/snooze", post(snooze).delete(unsnooze))
        .route("/accounts/{id}/feedback", post(give_feedback))
        .route("/feedback", get(feedback))
        .route("/console/link", post(console_link))
        .route("/unmatched", get(unmatched))
        .route("/alerts", get(alerts))
        .route("/sources", get(sources))
        .route("/reload", post(reload))
        .route("/whoami", get(whoami))
        .route("/openapi.json", get(openapi))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::GATEWAY_TIMEOUT,
            QUICK_TIMEOUT,
        ));
    let long = Router::new()
        .route("/export", get(export))
        .route("/backup", get(backup))
        .route("/backtest", post(backtest))
        .route("/detect", post(detect))
        .route("/deliver", post(deliver))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::GATEWAY_TIMEOUT,
            LONG_TIMEOUT,
        ));
    let small = quick
        .merge(long)
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT));
    let import = Router::new().route("/import", post(import));
    Router::new()
        .nest(
            "/api/v1",
            small
                .merge(import)
                .layer(axum::middleware::from_fn_with_state(
                    state.clone(),
                    authenticate,
                )),
        )
        .with_state(state)
}

/// The OpenAPI document of `/api/v1`.
#[derive(OpenApi)]
#[openapi(
    info(title = "lull", description = "Tells a Customer Success Manager when one of their customer accounts has gone quiet. Every route needs `Authorization: Bearer <token>` ([[http.token]] in the config); each says the role it needs (read < csm < admin)."),
    paths(accounts, account, snooze, unsnooze, give_feedback, feedback, console_link, unmatched, alerts, sources, export, backup, import, backtest, detect, deliver, reload, whoami, openapi),
    components(schemas(ErrorBody, AccountsQuery, WhoAmI)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
        };
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        openapi.security = Some(vec![SecurityRequirement::new(
            "bearer",
            Vec::<String>::new(),
        )]);
    }
}

/// The OpenAPI document (this API, generated from the code).
#[utoipa::path(get, path = "/api/v1/openapi.json", responses((status = 200, description = "OpenAPI 3.1 document", content_type = "application/json")))]
async fn openapi(_c: Caller_) -> Response {
    match ApiDoc::openapi().to_pretty_json() {
        Ok(text) => ([(header::CONTENT_TYPE, "application/json")], text).into_response(),
        Err(e) => AppError::new("internal", 500, e.to_string()).into_response(),
    }
}

/// Who the token belongs to.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WhoAmI {
    pub name: String,
    pub role: String,
}

/// The caller's token name and role.
#[utoipa::path(get, path = "/api/v1/whoami", responses((status = 200, body = WhoAmI)))]
async fn whoami(c: Caller_) -> Json<WhoAmI> {
    axum::Json(WhoAmI {
        name: c.name.clone(),
        role: c.role.as_str().to_string(),
    })
}

/// Accounts, filtered and paged (role `read`). Without `evidence` (and
/// `at` today) the states are those of the last detection run, from an
/// index in memory: fast at any number of accounts.
#[utoipa::path(get, path = "/api/v1/accounts",
    params(
        ("csm" = Option<String>, Query, description = "only this CSM's accounts"),
        ("state" = Option<String>, Query, description = "engaged, silent, insufficient_data or unknown"),
        ("segment" = Option<String>, Query),
        ("q" = Option<String>, Query, description = "text in the account's id or name"),
        ("at" = Option<String>, Query, description = "judge on this day (YYYY-MM-DD) with evidence"),
        ("evidence" = Option<bool>, Query, description = "judge every account now, with each channel's evidence"),
        ("sort" = Option<String>, Query, description = "file (default) or attention (silent first)"),
        ("offset" = Option<usize>, Query),
        ("limit" = Option<usize>, Query, description = "at most 10000; default 100"),
    ),
    responses((status = 200, body = AccountsPage), (status = 400, body = ErrorBody)))]
async fn accounts(
    State(s): State<ApiState>,
    c: Caller_,
    Query(q): Query<AccountsQuery>,
) -> Result<Json<AccountsPage>, AppError> {
    need(&c, Role::Read)?;
    let app = s.app.clone();
    blocking(move || app.accounts(&q)).await.map(axum::Json)
}

/// One account: identity, state, each channel with its evidence and
/// weekly series against the expected band, what detection decided over
/// its history, its e-mails and snooze (role `read`).
#[utoipa::path(get, path = "/api/v1/accounts/{id}", params(("id" = String, Path)),
    responses((status = 200, body = AccountDetail), (status = 404, body = ErrorBody)))]
async fn account(
    State(s): State<ApiState>,
    c: Caller_,
    Path(id): Path<String>,
) -> Result<Json<AccountDetail>, AppError> {
    need(&c, Role::Read)?;
    let app = s.app.clone();
    blocking(move || app.account(&id)).await.map(axum::Json)
}

/// Snoozes an account until a day (role `csm`); its notices still waiting
/// in the outbox are dropped. Recorded with the token's name.
#[utoipa::path(post, path = "/api/v1/accounts/{id}/snooze", params(("id" = String, Path)),
    request_body = SnoozeRequest,
    responses((status = 200, body = SnoozeOutcome), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn snooze(
    State(s): State<ApiState>,
    c: Caller_,
    Path(id): Path<String>,
    axum::Json(req): axum::Json<SnoozeRequest>,
) -> Result<Json<SnoozeOutcome>, AppError> {
    need(&c, Role::Csm)?;
    let (app, by) = (s.app.clone(), c.name.clone());
    blocking(move || app.snooze(&id, &req, &by))
        .await
        .map(axum::Json)
}

/// Lifts an account's snooze (role `csm`).
#[utoipa::path(delete, path = "/api/v1/accounts/{id}/snooze", params(("id" = String, Path)),
    responses((status = 200, body = SnoozeOutcome), (status = 404, body = ErrorBody)))]
async fn unsnooze(
    State(s): State<ApiState>,
    c: Caller_,
    Path(id): Path<String>,
) -> Result<Json<SnoozeOutcome>, AppError> {
    need(&c, Role::Csm)?;
    let (app, by) = (s.app.clone(), c.name.clone());
    blocking(move || app.unsnooze(&id, &by))
        .await
        .map(axum::Json)
}

/// Feedback on an alert about the account: `useful`, `false_alarm` or
/// `already_knew` (role `csm`); recorded with the token's name. A later
/// verdict on the same alert replaces an earlier one.
#[utoipa::path(post, path = "/api/v1/accounts/{id}/feedback", params(("id" = String, Path)),
    request_body = FeedbackRequest,
    responses((status = 200, body = Feedback), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn give_feedback(
    State(s): State<ApiState>,
    c: Caller_,
    Path(id): Path<String>,
    axum::Json(req): axum::Json<FeedbackRequest>,
) -> Result<Json<Feedback>, AppError> {
    need(&c, Role::Csm)?;
    let (app, by) = (s.app.clone(), c.name.clone());
    blocking(move || app.give_feedback(&id, &req, &by, "api"))
        .await
        .map(axum::Json)
}

/// Which account's feedback.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FeedbackQuery {
    /// Only this account's.
    pub account: Option<String>,
}

/// Feedback on alerts, with who gave it, when, and the alert it answers
/// (role `read`).
#[utoipa::path(get, path = "/api/v1/feedback", params(FeedbackQuery),
    responses((status = 200, body = Vec<Feedback>), (status = 404, body = ErrorBody)))]
async fn feedback(
    State(s): State<ApiState>,
    c: Caller_,
    Query(q): Query<FeedbackQuery>,
) -> Result<Json<Vec<Feedback>>, AppError> {
    need(&c, Role::Read)?;
    let app = s.app.clone();
    blocking(move || app.feedback(q.account.as_deref()))
        .await
        .map(axum::Json)
}

/// A one-time sign-in link for the console (role `admin`): for a CSM or
/// admin by e-mail, or without one for the caller as an admin. It works
/// once, within 15 minutes.
#[utoipa::path(post, path = "/api/v1/console/link", request_body = LoginLinkRequest,
    responses((status = 200, body = LoginLink), (status = 404, body = ErrorBody)))]
async fn console_link(
    State(s): State<ApiState>,
    c: Caller_,
    axum::Json(req): axum::Json<LoginLinkRequest>,
) -> Result<Json<LoginLink>, AppError> {
    need(&c, Role::Admin)?;
    let (app, by) = (s.app.clone(), c.name.clone());
    tracing::info!(caller = %by, email = ?req.email, "console sign-in link made");
    blocking(move || app.login_link(&req, &by))
        .await
        .map(axum::Json)
}

/// Actors that matched no account, most events first (role `read`).
#[utoipa::path(get, path = "/api/v1/unmatched", responses((status = 200, body = Vec<UnmatchedActor>)))]
async fn unmatched(
    State(s): State<ApiState>,
    c: Caller_,
) -> Result<Json<Vec<UnmatchedActor>>, AppError> {
    need(&c, Role::Read)?;
    let app = s.app.clone();
    blocking(move || app.unmatched()).await.map(axum::Json)
}

/// Every alert e-mail: queued, sent, failed, with recipient, attempts and
/// the last answer (role `read`).
#[utoipa::path(get, path = "/api/v1/alerts", responses((status = 200, body = Vec<MailRecord>)))]
async fn alerts(State(s): State<ApiState>, c: Caller_) -> Result<Json<Vec<MailRecord>>, AppError> {
    need(&c, Role::Read)?;
    let app = s.app.clone();
    blocking(move || app.alerts()).await.map(axum::Json)
}

/// Every source: health (last poll and error), coverage, unmatched actors
/// with the accounts-file line that would map each (role `read`).
#[utoipa::path(get, path = "/api/v1/sources", responses((status = 200, body = Vec<SourceInfo>)))]
async fn sources(State(s): State<ApiState>, c: Caller_) -> Result<Json<Vec<SourceInfo>>, AppError> {
    need(&c, Role::Read)?;
    let app = s.app.clone();
    let health = s.health.as_ref().map(|h| h.check().sources);
    blocking(move || app.sources(health.as_ref()))
        .await
        .map(axum::Json)
}

/// The days an export covers.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Range {
    /// First day (YYYY-MM-DD).
    pub from: Option<Day>,
    /// Last day (YYYY-MM-DD).
    pub to: Option<Day>,
}

fn stream_file(file: std::fs::File, content_type: &'static str) -> Response {
    let stream = tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(file));
    (
        [(header::CONTENT_TYPE, content_type)],
        Body::from_stream(stream),
    )
        .into_response()
}

/// Daily counts as JSON Lines, `lull export`'s format: the store at one
/// instant, whatever polls commit meanwhile (role `read`).
#[utoipa::path(get, path = "/api/v1/export", params(Range),
    responses((status = 200, description = "JSON Lines", content_type = "application/x-ndjson")))]
async fn export(
    State(s): State<ApiState>,
    c: Caller_,
    Query(r): Query<Range>,
) -> Result<Response, AppError> {
    need(&c, Role::Read)?;
    let app = s.app.clone();
    let f = blocking(move || {
        app.snapshot(Snapshot::Export {
            from: r.from,
            to: r.to,
        })
        .map_err(|e| AppError::new("export_failed", 500, format!("{e:#}")))
    })
    .await?;
    Ok(stream_file(f, "application/x-ndjson"))
}

/// A backup of everything the store holds (`lull backup`'s format), at one
/// instant (role `admin`).
#[utoipa::path(get, path = "/api/v1/backup",
    responses((status = 200, description = "gzip'd JSON Lines", content_type = "application/gzip")))]
async fn backup(State(s): State<ApiState>, c: Caller_) -> Result<Response, AppError> {
    need(&c, Role::Admin)?;
    let app = s.app.clone();
    let f = blocking(move || {
        app.snapshot(Snapshot::Backup)
            .map_err(|e| AppError::new("backup_failed", 500, format!("{e:#}")))
    })
    .await?;
    Ok(stream_file(f, "application/gzip"))
}

/// Imports JSON Lines (the body, any size, streamed), exactly once like
/// `lull import`: every good line is stored, each bad one is listed with
/// its number (role `admin`).
#[utoipa::path(post, path = "/api/v1/import",
    request_body(content = String, description = "JSON Lines, `lull import`'s format", content_type = "application/x-ndjson"),
    responses((status = 200, body = ImportOutcome), (status = 400, body = ErrorBody)))]
async fn import(
    State(s): State<ApiState>,
    c: Caller_,
    body: Body,
) -> Result<Json<ImportOutcome>, AppError> {
    need(&c, Role::Admin)?;
    use futures_util::TryStreamExt;
    let stream = body
        .into_data_stream()
        .map_err(|e| std::io::Error::other(e.to_string()));
    let reader = tokio_util::io::StreamReader::new(stream);
    let app = s.app.clone();
    let name = format!("import by {}", c.name);
    blocking(move || {
        let sync = tokio_util::io::SyncIoBridge::new(reader);
        let lines = std::io::BufReader::with_capacity(1 << 20, sync);
        app.import(
            lines,
            &name,
            crate::import::SERVICE_BATCH as usize,
            |_, _| {},
            |_| {},
        )
    })
    .await
    .map(axum::Json)
}

/// Replays detection over a range with the running thresholds or others
/// given in the request (the running config does not change); records
/// and sends nothing (role `read`).
#[utoipa::path(post, path = "/api/v1/backtest", request_body = BacktestRequest,
    responses((status = 200, body = BacktestOutcome), (status = 400, body = ErrorBody)))]
async fn backtest(
    State(s): State<ApiState>,
    c: Caller_,
    axum::Json(req): axum::Json<BacktestRequest>,
) -> Result<Json<BacktestOutcome>, AppError> {
    need(&c, Role::Read)?;
    let app = s.app.clone();
    blocking(move || app.backtest(&req, |_| {}))
        .await
        .map(axum::Json)
}

/// Judges a day now: a dry run (role `read`) records nothing; otherwise
/// (role `admin`) states are recorded and notices queued, and the service
/// delivers them.
#[utoipa::path(post, path = "/api/v1/detect", request_body = DetectRequest,
    responses((status = 200, body = DetectOutcome), (status = 400, body = ErrorBody)))]
async fn detect(
    State(s): State<ApiState>,
    c: Caller_,
    axum::Json(req): axum::Json<DetectRequest>,
) -> Result<Json<DetectOutcome>, AppError> {
    need(&c, if req.dry_run { Role::Read } else { Role::Admin })?;
    let app = s.app.clone();
    let out = blocking(move || app.detect(&req)).await?;
    if out.queued > 0
        && let Some(w) = &s.wake_delivery
    {
        w.notify_one();
    }
    Ok(axum::Json(out))
}

/// Sends what the outbox holds now, retrying a relay that is down for
/// `[smtp] retry_secs` (role `admin`).
#[utoipa::path(post, path = "/api/v1/deliver", responses((status = 200, body = DeliverOutcome)))]
async fn deliver(State(s): State<ApiState>, c: Caller_) -> Result<Json<DeliverOutcome>, AppError> {
    need(&c, Role::Admin)?;
    // The delivery loop lets go of the outbox at its next pause.
    if let Some(w) = &s.wake_delivery {
        w.notify_one();
    }
    let retry = s
        .app
        .config
        .smtp
        .as_ref()
        .map_or(Duration::ZERO, |m| m.retry_for);
    let halt = tokio_util::sync::CancellationToken::new();
    s.app
        .deliver(retry, std::future::pending(), &halt)
        .await
        .map(axum::Json)
}

/// Re-reads the accounts file and what of the config can change while
/// lull runs, like SIGHUP (role `admin`).
#[utoipa::path(post, path = "/api/v1/reload",
    responses((status = 200, body = ReloadOutcome), (status = 400, body = ErrorBody)))]
async fn reload(State(s): State<ApiState>, c: Caller_) -> Result<Json<ReloadOutcome>, AppError> {
    need(&c, Role::Admin)?;
    let app = s.app.clone();
    let out = blocking(move || app.reload()).await?;
    if let Some(f) = &s.on_reload {
        f();
    }
    Ok(axum::Json(out))
}
