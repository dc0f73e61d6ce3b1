//! The service's HTTP endpoint: `/healthz`, `/readyz`, `/metrics` (open to
//! whoever can reach the address) and the API under `/api/v1` (tokens;
//! see `crate::api`), served by lull's own accept loop so that hostile
//! clients are bounded: at most [`MAX_CONNECTIONS`] at once, request
//! headers within [`HEADER_TIMEOUT`], a TLS handshake within
//! [`HANDSHAKE_TIMEOUT`]; optional TLS (rustls), its certificate re-read on
//! SIGHUP.
//!
//! - `/healthz`: 200 while the store can commit and answers a read;
//! - `/readyz`: 200 while the scheduler runs, the disk has room and every
//!   source has data within `stale_days`; 503 with the reasons (JSON);
//! - `/metrics`: Prometheus text format (see `service::telemetry`);
//! - `/c/`: the web console (see `crate::console`).

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;

use crate::service::config::TlsFiles;
use crate::service::health::Health;
use crate::store::Store;

/// Connections served at once; more wait in the kernel's backlog.
pub const MAX_CONNECTIONS: usize = 256;
/// A client has this long to send a request's headers (slowloris).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// And this long to finish a TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the health handlers read.
#[derive(Clone)]
pub struct AppState {
    pub health: Arc<Health>,
    pub store: Arc<Store>,
    pub metrics: PrometheusHandle,
}

/// The whole endpoint: health, metrics, the API and the console.
pub fn router(
    state: AppState,
    api: crate::api::ApiState,
    console: crate::console::ConsoleState,
) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
        .merge(crate::api::router(api))
        .merge(crate::console::router(console))
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

/// TLS for the listener: the certificate and key from `[http]`, re-read
/// on SIGHUP (a renewed certificate needs no restart).
pub struct Tls {
    files: TlsFiles,
    config: RwLock<Arc<tokio_rustls::rustls::ServerConfig>>,
}

impl Tls {
    pub fn load(files: &TlsFiles) -> anyhow::Result<Tls> {
        Ok(Tls {
            config: RwLock::new(Arc::new(server_config(files)?)),
            files: files.clone(),
        })
    }

    /// Re-reads the files; on an error the running certificate stays.
    pub fn reload(&self) -> anyhow::Result<()> {
        let c = server_config(&self.files)?;
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(c);
        Ok(())
    }

    fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(
            self.config
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}

fn server_config(files: &TlsFiles) -> anyhow::Result<tokio_rustls::rustls::ServerConfig> {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .with_context(|| format!("reading [http] tls_cert {}", files.cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| {
            format!(
                "[http] tls_cert {} is not PEM certificates",
                files.cert.display()
            )
        })?;
    anyhow::ensure!(
        !certs.is_empty(),
        "[http] tls_cert {} holds no certificate",
        files.cert.display()
    );
    let key = PrivateKeyDer::from_pem_file(&files.key).with_context(|| {
        format!(
            "[http] tls_key {} is not a PEM private key",
            files.key.display()
        )
    })?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS setup")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("[http] tls_cert and tls_key do not make a certificate lull can serve")
}

/// Serves `router` on `listener` until `cancel`; then lets requests in
/// progress finish (the service's shutdown limit bounds that).
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    tls: Option<Arc<Tls>>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = Builder::new(TokioExecutor::new());
    // One request per connection: a kept-alive connection that goes
    // quiet would hold its slot for good (hyper's header timeout starts
    // only with a request's first byte).
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .keep_alive(false);
    let builder = builder.http1_only();
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.context("connection slots")?,
            () = cancel.cancelled() => break,
        };
        let (stream, remote) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = cancel.cancelled() => break,
        };
        let router = router.clone();
        let service =
            hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut()
                    .insert(ConnectInfo::<SocketAddr>(remote));
                let router = router.clone();
                async move {
                    use tower::ServiceExt as _;
                    router.oneshot(req.map(axum::body::Body::new)).await
                }
            });
        match &tls {
            None => {
                let builder = builder.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    // A connection that sends nothing is let go (the
                    // header timeout only starts with the first byte).
                    let mut first = [0u8; 1];
                    if !matches!(
                        tokio::time::timeout(HEADER_TIMEOUT, stream.peek(&mut first)).await,
                        Ok(Ok(1..))
                    ) {
                        return;
                    }
                    let conn = builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .into_owned();
                    let _ = watcher.watch(conn).await;
                    drop(permit);
                });
            }
            Some(tls) => {
                let acceptor = tls.acceptor();
                let builder = builder.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let stream = match tokio::time::timeout(
                        HANDSHAKE_TIMEOUT,
                        acceptor.accept(stream),
                    )
                    .await
                    {
                        Ok(Ok(s)) => s,
                        _ => return,
                    };
                    let conn = builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .into_owned();
                    let _ = watcher.watch(conn).await;
                    drop(permit);
                });
            }
        }
    }
    drop(listener);
    // Requests in progress may finish; the caller's limit cuts them off.
    graceful.shutdown().await;
    Ok(())
}
