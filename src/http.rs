//! The service's HTTP endpoint (axum): `/healthz`, `/readyz`, `/metrics`.
//!
//! - `/healthz`: 200 while the process runs and its store answers a read;
//! - `/readyz`: 200 while the scheduler runs and every source has data
//!   within `stale_days`; 503 with the reasons (JSON) otherwise;
//! - `/metrics`: Prometheus text format (see `service::telemetry`).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::service::health::Health;
use crate::store::Store;

/// What the handlers read.
#[derive(Clone)]
pub struct AppState {
    pub health: Arc<Health>,
    pub store: Arc<Store>,
    pub metrics: PrometheusHandle,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn healthz(State(s): State<AppState>) -> Response {
    let store = s.store.clone();
    match tokio::task::spawn_blocking(move || store.check()).await {
        Ok(Ok(())) => (StatusCode::OK, "ok\n").into_response(),
        Ok(Err(e)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the store does not answer: {e}\n"),
        )
            .into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the store check did not finish: {e}\n"),
        )
            .into_response(),
    }
}

async fn readyz(State(s): State<AppState>) -> Response {
    let r = s.health.check();
    let status = if r.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(r)).into_response()
}

async fn metrics(State(s): State<AppState>) -> Response {
    // Staleness moves with the clock, not only with polls.
    s.health.check();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(),
    )
        .into_response()
}
