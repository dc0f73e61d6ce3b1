//! The CLI's side of the API: the same commands, sent to a running lull.
//! Blocking calls over reqwest (on a small runtime of its own), answers
//! decoded into the application layer's types, errors into [`AppError`]
//! with the server's code.

use std::io::Write;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;

use super::ErrorBody;
use crate::app::AppError;
use crate::secret::Secret;

/// How long a request may take before the CLI gives up (long operations —
/// a backtest, a big import — are streamed or answered within this).
const TIMEOUT: Duration = Duration::from_secs(3600);

/// A running lull, reached over HTTP.
pub struct Client {
    base: Url,
    token: Option<Secret>,
    http: reqwest::Client,
    rt: tokio::runtime::Runtime,
}

fn unreachable(base: &Url, e: impl std::fmt::Display) -> AppError {
    AppError::new(
        "unreachable",
        502,
        format!("cannot reach lull at {base}: {e}"),
    )
}

impl Client {
    /// A client for the lull at `base` (`http://127.0.0.1:9187`), sending
    /// `token`. `LULL_CA_FILE` names an extra CA (PEM) to trust.
    pub fn new(base: &str, token: Option<Secret>) -> Result<Client, AppError> {
        let mut base = Url::parse(base).map_err(|e| {
            AppError::bad_request(format!(
                "`{base}` is not a URL like http://127.0.0.1:9187 ({e})"
            ))
        })?;
        if !base.path().ends_with('/') {
            let p = format!("{}/", base.path());
            base.set_path(&p);
        }
        let mut b = reqwest::Client::builder()
            .user_agent(concat!("lull-cli/", env!("CARGO_PKG_VERSION")))
            .timeout(TIMEOUT)
            .connect_timeout(Duration::from_secs(10));
        if let Ok(ca) = std::env::var("LULL_CA_FILE") {
            let pem = std::fs::read(&ca)
                .map_err(|e| AppError::bad_request(format!("LULL_CA_FILE={ca}: {e}")))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| AppError::bad_request(format!("LULL_CA_FILE={ca}: {e}")))?;
            b = b.add_root_certificate(cert);
        }
        let http = b
            .build()
            .map_err(|e| AppError::new("internal", 500, e.to_string()))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| AppError::new("internal", 500, e.to_string()))?;
        Ok(Client {
            base,
            token,
            http,
            rt,
        })
    }

    /// Where the client talks to.
    pub fn base(&self) -> &Url {
        &self.base
    }

    fn request(
        &self,
        method: reqwest::Method,
        path: &str,
    ) -> Result<reqwest::RequestBuilder, AppError> {
        let url = self
            .base
            .join(path.trim_start_matches('/'))
            .map_err(|e| AppError::bad_request(e.to_string()))?;
        let mut r = self.http.request(method, url);
        if let Some(t) = &self.token {
            r = r.bearer_auth(t.expose());
        }
        Ok(r)
    }

    async fn send(&self, r: reqwest::RequestBuilder) -> Result<reqwest::Response, AppError> {
        let resp = r
            .send()
            .await
            .map_err(|e| unreachable(&self.base, chain(&e)))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let body = resp.bytes().await.unwrap_or_default();
        Err(match serde_json::from_slice::<ErrorBody>(&body) {
            Ok(e) => AppError { status, ..e.error },
            Err(_) => AppError::new(
                "http_error",
                status,
                format!(
                    "lull at {} answered HTTP {status}: {}",
                    self.base,
                    String::from_utf8_lossy(&body)
                        .chars()
                        .take(200)
                        .collect::<String>()
                ),
            ),
        })
    }

    async fn json<T: DeserializeOwned>(&self, r: reqwest::RequestBuilder) -> Result<T, AppError> {
        let resp = self.send(r).await?;
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| unreachable(&self.base, chain(&e)))?;
        serde_json::from_slice(&bytes).map_err(|e| {
            AppError::new(
                "bad_answer",
                502,
                format!("lull at {} answered something this CLI cannot read ({e}): is it the same version?", self.base),
            )
        })
    }

    pub fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &impl Serialize,
    ) -> Result<T, AppError> {
        let r = self.request(reqwest::Method::GET, path)?.query(query);
        self.rt.block_on(self.json(r))
    }

    pub fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T, AppError> {
        let bytes = serde_json::to_vec(body).map_err(|e| AppError::bad_request(e.to_string()))?;
        let r = self
            .request(reqwest::Method::POST, path)?
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(bytes);
        self.rt.block_on(self.json(r))
    }

    pub fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T, AppError> {
        let r = self.request(reqwest::Method::DELETE, path)?;
        self.rt.block_on(self.json(r))
    }

    /// Streams a GET's body into `out`.
    pub fn download(
        &self,
        path: &str,
        query: &impl Serialize,
        out: &mut dyn Write,
    ) -> Result<(), AppError> {
        let r = self.request(reqwest::Method::GET, path)?.query(query);
        self.rt.block_on(async {
            let mut resp = self.send(r).await?;
            loop {
                match resp.chunk().await {
                    Ok(Some(c)) => out.write_all(&c).map_err(|e| {
                        AppError::new("write_failed", 500, format!("writing the answer: {e}"))
                    })?,
                    Ok(None) => return Ok(()),
                    Err(e) => {
                        return Err(unreachable(
                            &self.base,
                            format!("the answer broke off: {}", chain(&e)),
                        ));
                    }
                }
            }
        })
    }

    /// POSTs `body` (read as it is sent) and decodes the JSON answer.
    pub fn upload<T: DeserializeOwned>(
        &self,
        path: &str,
        body: impl std::io::Read + Send + 'static,
    ) -> Result<T, AppError> {
        let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(4);
        // The reader is blocking (a file, stdin): it feeds the request
        // from a thread of its own.
        std::thread::spawn(move || {
            let mut body = body;
            loop {
                let mut buf = vec![0u8; 256 << 10];
                match body.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => {
                        buf.truncate(n);
                        if tx.blocking_send(Ok(buf)).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e));
                        return;
                    }
                }
            }
        });
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        let r = self
            .request(reqwest::Method::POST, path)?
            .header(reqwest::header::CONTENT_TYPE, "application/x-ndjson")
            .body(reqwest::Body::wrap_stream(stream));
        self.rt.block_on(self.json(r))
    }
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}
