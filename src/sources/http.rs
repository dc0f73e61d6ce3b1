//! The one HTTP path every connector uses: one client, per-source rate
//! limit, retries with backoff, `Retry-After` and rate-limit headers, and
//! errors that say which request failed and why.

use std::num::NonZeroU32;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use serde::de::DeserializeOwned;
use tokio::time::Instant;
use url::Url;

use crate::secret::Secret;

use super::config::HttpSettings;

/// The first retry waits this long; each further one twice as long.
pub const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// No single wait (backoff, `Retry-After`, rate-limit reset) is longer:
/// a service that asks for more is treated as down for this poll, and the
/// next scheduled poll tries again, instead of one poll hanging for hours.
pub const MAX_WAIT: Duration = Duration::from_secs(120);
/// Connecting should never take long; a dead host fails fast.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How much of an error response's body goes into the error message.
const BODY_SNIPPET: usize = 300;

/// Builds the process's one HTTP client: rustls, gzip, a user agent that
/// names lull and its version (services and forum admins can see who
/// calls), a connect timeout. Per-request timeouts come from each source.
pub fn client() -> Result<reqwest::Client, SourceError> {
    reqwest::Client::builder()
        .user_agent(concat!("lull/", env!("CARGO_PKG_VERSION")))
        .gzip(true)
        .connect_timeout(CONNECT_TIMEOUT)
        .build()
        .map_err(|e| SourceError::Client(e.to_string()))
}

/// How a source authenticates.
#[derive(Debug, Clone)]
pub enum Auth {
    None,
    Basic {
        user: Secret,
        password: Secret,
    },
    /// Secret headers, e.g. Discourse's `Api-Key` or Postmark's token.
    Headers(Vec<(HeaderName, Secret)>),
}

/// What went wrong while polling a source. The source's name is added by
/// the caller ([`super::PollError`]).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    #[error("GET {url}: {detail} (after {attempts} attempt(s))")]
    Request {
        url: String,
        detail: String,
        attempts: u32,
    },
    #[error("GET {url}: HTTP {status}{hint}: {body}")]
    Status {
        url: String,
        status: u16,
        hint: &'static str,
        body: String,
    },
    #[error(
        "GET {url}: rate limited, and the service asks to wait {wait_secs} s, longer than lull waits within one poll; the next poll tries again"
    )]
    RateLimited { url: String, wait_secs: u64 },
    #[error("GET {url}: the response is not the JSON expected ({detail})")]
    Json { url: String, detail: String },
    #[error("{url}: {detail}")]
    Page { url: String, detail: String },
    #[error("{0}")]
    Credentials(#[from] crate::secret::SecretError),
    #[error("{0}")]
    Other(String),
}

/// One source's view of HTTP: the shared client, its own limiter, its
/// credentials, and a count of the requests it made.
pub struct Http {
    client: reqwest::Client,
    settings: HttpSettings,
    auth: Auth,
    limiter: Option<DefaultDirectRateLimiter>,
    /// Set when a response said the quota is used up.
    blocked_until: Mutex<Option<Instant>>,
    requests: AtomicU64,
}

impl Http {
    pub fn new(client: reqwest::Client, settings: HttpSettings, auth: Auth) -> Http {
        let limiter = NonZeroU32::new(settings.requests_per_minute)
            .map(|n| RateLimiter::direct(Quota::per_minute(n)));
        Http {
            client,
            settings,
            auth,
            limiter,
            blocked_until: Mutex::new(None),
            requests: AtomicU64::new(0),
        }
    }

    /// Requests sent so far (retries included).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// GETs `url` and parses the body as `T`.
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        url: &Url,
    ) -> Result<(T, HeaderMap), SourceError> {
        let (body, headers) = self.get(url).await?;
        Ok((decode(url, &body)?, headers))
    }

    /// GETs `url` as text (HTML pages).
    pub async fn get_text(&self, url: &Url) -> Result<String, SourceError> {
        let (body, _) = self.get(url).await?;
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    /// GETs `url`: waits for the rate limiter, retries what is worth
    /// retrying, and returns the body of a 2xx response.
    pub async fn get(&self, url: &Url) -> Result<(Vec<u8>, HeaderMap), SourceError> {
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            self.wait_turn().await;
            let mut req = self.client.get(url.clone()).timeout(self.settings.timeout);
            req = match &self.auth {
                Auth::None => req,
                Auth::Basic { user, password } => {
                    req.basic_auth(user.expose(), Some(password.expose()))
                }
                Auth::Headers(h) => {
                    let mut req = req;
                    for (name, value) in h {
                        let mut v = HeaderValue::from_str(value.expose()).map_err(|_| {
                            SourceError::Other(format!(
                                "the secret for header `{name}` contains characters a header cannot carry"
                            ))
                        })?;
                        v.set_sensitive(true);
                        req = req.header(name.clone(), v);
                    }
                    req
                }
            };
            self.requests.fetch_add(1, Ordering::Relaxed);
            let outcome = match req.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    let headers = resp.headers().clone();
                    self.note_quota(&headers);
                    match resp.bytes().await {
                        Ok(body) if status.is_success() => return Ok((body.to_vec(), headers)),
                        Ok(body) => Outcome::Status(status, headers, body.to_vec()),
                        Err(e) => Outcome::Transport(describe(&e)),
                    }
                }
                Err(e) => Outcome::Transport(describe(&e)),
            };
            let retries_left = attempt <= self.settings.retries;
            let backoff = (BACKOFF_BASE * 2u32.saturating_pow(attempt - 1)).min(MAX_WAIT);
            match outcome {
                Outcome::Transport(detail) => {
                    if !retries_left {
                        return Err(SourceError::Request {
                            url: url.to_string(),
                            detail,
                            attempts: attempt,
                        });
                    }
                    tracing::warn!(%url, attempt, error = %detail, "request failed; retrying");
                    tokio::time::sleep(backoff).await;
                }
                Outcome::Status(status, headers, body) => {
                    let retryable = status.is_server_error()
                        || status == StatusCode::REQUEST_TIMEOUT
                        || status == StatusCode::TOO_MANY_REQUESTS;
                    if !retryable || !retries_left {
                        return Err(status_error(url, status, &body));
                    }
                    let wait = match retry_after(&headers) {
                        Some(w) if w > MAX_WAIT => {
                            return Err(SourceError::RateLimited {
                                url: url.to_string(),
                                wait_secs: w.as_secs(),
                            });
                        }
                        Some(w) => w,
                        None => backoff,
                    };
                    tracing::warn!(%url, attempt, status = status.as_u16(), wait_ms = wait.as_millis() as u64, "retrying");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    async fn wait_turn(&self) {
        let until = *self.blocked_until.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(until) = until {
            tokio::time::sleep_until(until).await;
        }
        if let Some(l) = &self.limiter {
            l.until_ready().await;
        }
    }

    /// Reads the rate-limit headers services send (the names vary): when
    /// the quota is used up, the next request waits for its reset.
    fn note_quota(&self, headers: &HeaderMap) {
        let get = |names: &[&str]| {
            names.iter().find_map(|n| {
                headers
                    .get(*n)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<f64>().ok())
            })
        };
        let remaining = get(&[
            "ratelimit-remaining",
            "x-ratelimit-remaining",
            "x-rate-limit-remaining",
        ]);
        if remaining.is_some_and(|r| r <= 0.0) {
            let reset = get(&["ratelimit-reset", "x-ratelimit-reset", "x-rate-limit-reset"]);
            let wait = match reset {
                // Epoch seconds (GitHub style) or seconds to go (IETF draft).
                Some(r) if r > 1e9 => {
                    let now = chrono::Utc::now().timestamp() as f64;
                    Duration::from_secs_f64((r - now).max(0.0))
                }
                Some(r) => Duration::from_secs_f64(r.max(0.0)),
                None => BACKOFF_BASE,
            }
            .min(MAX_WAIT);
            tracing::debug!(
                wait_ms = wait.as_millis() as u64,
                "rate-limit quota used up; pausing"
            );
            *self.blocked_until.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(Instant::now() + wait);
        }
    }
}

enum Outcome {
    Transport(String),
    Status(StatusCode, HeaderMap, Vec<u8>),
}

/// `Retry-After` as seconds or an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

fn status_error(url: &Url, status: StatusCode, body: &[u8]) -> SourceError {
    let hint = match status.as_u16() {
        401 => " (the credentials were refused: check the env var the source names)",
        403 => " (the credentials lack a permission this source needs; see the README)",
        404 => " (check the source's `url`)",
        429 => " (rate limited; lower `requests_per_minute`)",
        _ => "",
    };
    let text = String::from_utf8_lossy(body);
    let mut snippet: String = text.chars().take(BODY_SNIPPET).collect();
    if text.chars().count() > BODY_SNIPPET {
        snippet.push('…');
    }
    SourceError::Status {
        url: url.to_string(),
        status: status.as_u16(),
        hint,
        body: snippet.split_whitespace().collect::<Vec<_>>().join(" "),
    }
}

/// A transport error with its causes, without the URL (the caller has it).
fn describe(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "cannot connect".to_string()
    } else if e.is_body() || e.is_decode() {
        "the response body broke off".to_string()
    } else {
        "request failed".to_string()
    };
    let mut causes = Vec::new();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        causes.push(s.to_string());
        src = s.source();
    }
    if causes.is_empty() {
        what
    } else {
        format!("{what}: {}", causes.join(": "))
    }
}

/// Parses a response body as `T`; the error names the URL and where the
/// JSON went wrong.
pub(crate) fn decode<T: DeserializeOwned>(url: &Url, body: &[u8]) -> Result<T, SourceError> {
    serde_json::from_slice(body).map_err(|e| SourceError::Json {
        url: url.to_string(),
        detail: json_detail(&e, body.len()),
    })
}

fn json_detail(e: &serde_json::Error, len: usize) -> String {
    if e.is_eof() {
        format!(
            "it ends early, at line {} column {} of {len} bytes: truncated?",
            e.line(),
            e.column()
        )
    } else {
        e.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        let later = std::time::SystemTime::now() + Duration::from_secs(30);
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_str(&httpdate::fmt_http_date(later)).unwrap(),
        );
        let w = retry_after(&h).unwrap();
        assert!(
            w > Duration::from_secs(25) && w <= Duration::from_secs(30),
            "{w:?}"
        );
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
    }
}
