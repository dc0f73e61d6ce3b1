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

use crate::limits::Limits;
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
/// How much of an error response's body goes into the error message
/// (after redaction): enough for a service's own explanation.
const BODY_SNIPPET: usize = 200;
/// Redirects followed within the configured origin.
const MAX_REDIRECTS: usize = 5;
/// Bodies larger than this are decoded off the async workers.
const BLOCKING_DECODE_BYTES: usize = 256 << 10;

/// Builds the process's one HTTP client: rustls, gzip, a user agent that
/// names lull and its version (services and forum admins can see who
/// calls), a connect timeout. Per-request timeouts come from each source.
///
/// Redirects are followed only within the origin (scheme, host, port) of
/// the request that was redirected, at most [`MAX_REDIRECTS`] times: every
/// request carries its source's credentials, and a service (or anyone
/// who can make it answer 302) must not be able to send them elsewhere.
/// A redirect to another origin comes back as the 3xx response, and
/// [`Http::get`] says where it pointed.
pub fn client() -> Result<reqwest::Client, SourceError> {
    let policy = reqwest::redirect::Policy::custom(|attempt| {
        let same = attempt
            .previous()
            .first()
            .is_some_and(|first| same_origin(first, attempt.url()));
        if same && attempt.previous().len() <= MAX_REDIRECTS {
            attempt.follow()
        } else {
            attempt.stop()
        }
    });
    reqwest::Client::builder()
        .user_agent(concat!("lull/", env!("CARGO_PKG_VERSION")))
        .gzip(true)
        .connect_timeout(CONNECT_TIMEOUT)
        .redirect(policy)
        .build()
        .map_err(|e| SourceError::Client(e.to_string()))
}

/// Scheme, host and port are the same.
pub fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// A URL as lull prints it: without a user or password, and with the
/// values of query parameters that look like credentials hidden.
pub fn display_url(u: &Url) -> String {
    let mut u = u.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    if u.query().is_some() {
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .map(|(k, v)| {
                let v = if is_secret_name(&k) {
                    "***".to_string()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        u.query_pairs_mut().clear().extend_pairs(pairs);
    }
    u.to_string()
}

/// A parameter or field name that usually carries a credential.
fn is_secret_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    [
        "key",
        "token",
        "secret",
        "password",
        "passwd",
        "auth",
        "signature",
        "sig",
        "credential",
    ]
    .iter()
    .any(|s| n.contains(s))
}

/// Text from a service, fit for a log line, an error or `/readyz`: the
/// source's own secrets, `name=value` pairs whose name looks like a
/// credential, and long token-like runs are replaced by `***`; control
/// characters become spaces; at most `max` characters are kept.
pub fn redact(text: &str, secrets: &[&str], max: usize) -> String {
    let mut t = text.to_string();
    for s in secrets.iter().filter(|s| s.len() >= 4) {
        t = t.replace(s, "***");
    }
    let mut out = String::with_capacity(t.len().min(max * 2));
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if word.is_empty() {
            return;
        }
        let redacted = match word.split_once(['=', ':']) {
            Some((k, v))
                if is_secret_name(k.trim_matches(|c: char| !c.is_alphanumeric()))
                    && !v.is_empty() =>
            {
                format!("{k}{}***", &word[k.len()..k.len() + 1])
            }
            _ if looks_like_token(word) => "***".to_string(),
            _ => word.clone(),
        };
        out.push_str(&redacted);
        word.clear();
    };
    for c in t.chars() {
        if c.is_whitespace()
            || c.is_control()
            || matches!(c, '"' | '\'' | ',' | '&' | '<' | '>' | '{' | '}')
        {
            flush(&mut word, &mut out);
            out.push(if c.is_control() || c.is_whitespace() {
                ' '
            } else {
                c
            });
        } else {
            word.push(c);
        }
    }
    flush(&mut word, &mut out);
    let collapsed = out.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut snippet: String = collapsed.chars().take(max).collect();
    if collapsed.chars().count() > max {
        snippet.push('…');
    }
    snippet
}

/// 24+ characters of letters, digits and `-_./+=` with both letters and
/// digits: an API key, a session token, a hash.
fn looks_like_token(w: &str) -> bool {
    let w = w.trim_matches(|c: char| matches!(c, '.' | ':' | ';' | ')' | '(' | '[' | ']'));
    w.len() >= 24
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./+=".contains(c))
        && w.chars().any(|c| c.is_ascii_digit())
        && w.chars().any(|c| c.is_ascii_alphabetic())
        && !w.contains("://")
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
    /// `Authorization: Bearer <token>` (Slack, Intercom).
    Bearer(Secret),
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
    #[error(
        "GET {url}: the service redirected to another site ({to}); lull does not follow it, so the source's credentials stay with the configured site: if the service moved, set the source's `url` to the new address"
    )]
    Redirect { url: String, to: String },
    #[error(
        "GET {url}: the response is larger than {limit_mb} MiB (after decompression; [limits] max_body_mb): not read"
    )]
    TooLarge { url: String, limit_mb: u64 },
    #[error(
        "the poll made {requests} requests without reaching its end ([limits] max_requests): the service keeps answering with more pages (a loop?) — the poll stored nothing; the next one tries again"
    )]
    TooManyRequests { requests: u64 },
    #[error(
        "the poll read more than {limit_mb} MiB without reaching its end ([limits] max_poll_mb): the service keeps answering with more (a loop?) — the poll stored nothing; the next one tries again"
    )]
    TooMuchData { limit_mb: u64 },
    #[error("{url}: {detail}")]
    Page { url: String, detail: String },
    #[error("{0}")]
    Credentials(#[from] crate::secret::SecretError),
    #[error("{0}")]
    Other(String),
}

/// The most a run of 429s widens a source's request spacing.
const MAX_SLOWDOWN: u32 = 8;

/// A limiter for `per_minute` requests a minute, evenly spaced: a burst of
/// one, never the whole minute's budget at once (a service that counts
/// per minute, like Zendesk's 10 incremental exports, sees at most its
/// rate in any 60-second window). 0: no limiter.
fn paced(per_minute: u32) -> Option<DefaultDirectRateLimiter> {
    let n = NonZeroU32::new(per_minute)?;
    // Rounded up: never faster than the rate.
    let period = Duration::from_nanos(60_000_000_000u64.div_ceil(u64::from(n.get())));
    Quota::with_period(period).map(|q| RateLimiter::direct(q.allow_burst(NonZeroU32::MIN)))
}

/// One source's view of HTTP: the shared client, its own limiter, its
/// credentials, and a count of the requests it made.
pub struct Http {
    client: reqwest::Client,
    settings: HttpSettings,
    auth: Auth,
    /// The configured base URL: no request goes to another origin.
    base: Url,
    max_body: u64,
    max_poll_bytes: u64,
    max_requests: u64,
    /// `requests` when the current poll began.
    poll_start: AtomicU64,
    /// Bytes read by the current poll.
    poll_bytes: AtomicU64,
    limiter: Option<DefaultDirectRateLimiter>,
    /// After a 429, requests are spaced this many times wider (1 to
    /// [`MAX_SLOWDOWN`]) for the rest of the poll.
    slowdown: std::sync::atomic::AtomicU32,
    /// Set when a response said the quota is used up.
    blocked_until: Mutex<Option<Instant>>,
    requests: AtomicU64,
}

impl Http {
    pub fn new(
        client: reqwest::Client,
        settings: HttpSettings,
        auth: Auth,
        base: &Url,
        limits: &Limits,
    ) -> Http {
        let limiter = paced(settings.requests_per_minute);
        Http {
            client,
            settings,
            auth,
            base: base.clone(),
            max_body: limits.max_body_bytes,
            max_poll_bytes: limits.max_poll_bytes,
            max_requests: limits.max_requests,
            poll_start: AtomicU64::new(0),
            poll_bytes: AtomicU64::new(0),
            limiter,
            slowdown: std::sync::atomic::AtomicU32::new(1),
            blocked_until: Mutex::new(None),
            requests: AtomicU64::new(0),
        }
    }

    /// Requests sent so far (retries included).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// A poll begins: its request budget starts.
    pub fn begin_poll(&self) {
        self.poll_start.store(self.requests(), Ordering::Relaxed);
        self.slowdown.store(1, Ordering::Relaxed);
        self.poll_bytes.store(0, Ordering::Relaxed);
    }

    /// The secrets this source sends, to redact them from what services
    /// echo back.
    fn secrets(&self) -> Vec<&str> {
        match &self.auth {
            Auth::None => Vec::new(),
            Auth::Basic { user, password } => vec![user.expose(), password.expose()],
            Auth::Headers(h) => h.iter().map(|(_, v)| v.expose()).collect(),
            Auth::Bearer(token) => vec![token.expose()],
        }
    }

    /// A service's text, redacted for logs and errors.
    pub fn redact(&self, text: &str) -> String {
        redact(text, &self.secrets(), BODY_SNIPPET)
    }

    /// GETs `url` and parses the body as `T` (a large body off the async
    /// workers).
    pub async fn get_json<T: DeserializeOwned + Send + 'static>(
        &self,
        url: &Url,
    ) -> Result<(T, HeaderMap), SourceError> {
        let (body, headers) = self.get(url).await?;
        self.decode_json(url, body, headers).await
    }

    /// POSTs `request` as JSON to `url` (a search API that takes its query
    /// in the body) and parses the answer as `T`. Paced, retried and
    /// bounded exactly as a GET.
    pub async fn post_json<T: DeserializeOwned + Send + 'static>(
        &self,
        url: &Url,
        request: &impl serde::Serialize,
    ) -> Result<(T, HeaderMap), SourceError> {
        let payload = serde_json::to_vec(request)
            .map_err(|e| SourceError::Other(format!("encoding a request: {e}")))?;
        let (body, headers) = self.send(url, Some(&payload)).await?;
        self.decode_json(url, body, headers).await
    }

    async fn decode_json<T: DeserializeOwned + Send + 'static>(
        &self,
        url: &Url,
        body: Vec<u8>,
        headers: HeaderMap,
    ) -> Result<(T, HeaderMap), SourceError> {
        let html = headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.contains("html"))
            || body.trim_ascii_start().first() == Some(&b'<');
        let shown = display_url(url);
        let decoded = if body.len() > BLOCKING_DECODE_BYTES {
            let u = url.clone();
            tokio::task::spawn_blocking(move || decode::<T>(&u, &body))
                .await
                .map_err(|e| SourceError::Other(format!("decoding {shown}: {e}")))?
        } else {
            decode(url, &body)
        };
        let value = decoded.map_err(|e| match e {
            SourceError::Json { url, detail } if html => SourceError::Json {
                url,
                detail: format!(
                    "the service answered with an HTML page, not JSON — a login page, a proxy's error page, or a `url` that points at the website instead of its API? ({detail})"
                ),
            },
            other => other,
        })?;
        Ok((value, headers))
    }

    /// GETs `url` as text (HTML pages).
    pub async fn get_text(&self, url: &Url) -> Result<String, SourceError> {
        let (body, _) = self.get(url).await?;
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    /// GETs `url`: waits for the rate limiter, retries what is worth
    /// retrying, and returns the body of a 2xx response.
    pub async fn get(&self, url: &Url) -> Result<(Vec<u8>, HeaderMap), SourceError> {
        self.send(url, None).await
    }

    /// One request (a POST when there is a JSON `payload`), with the
    /// limiter, retries, redirect refusal and body limits.
    async fn send(
        &self,
        url: &Url,
        payload: Option<&[u8]>,
    ) -> Result<(Vec<u8>, HeaderMap), SourceError> {
        if !same_origin(url, &self.base) {
            return Err(SourceError::Redirect {
                url: display_url(&self.base),
                to: display_url(url),
            });
        }
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let made = self.requests() - self.poll_start.load(Ordering::Relaxed);
            if made >= self.max_requests {
                return Err(SourceError::TooManyRequests { requests: made });
            }
            self.wait_turn().await;
            let mut req = match payload {
                None => self.client.get(url.clone()),
                Some(p) => self
                    .client
                    .post(url.clone())
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(p.to_vec()),
            }
            .timeout(self.settings.timeout);
            req = match &self.auth {
                Auth::None => req,
                Auth::Bearer(token) => req.bearer_auth(token.expose()),
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
                    if status.is_redirection() {
                        // Only a redirect to another origin comes back.
                        let to = headers
                            .get(reqwest::header::LOCATION)
                            .and_then(|v| v.to_str().ok())
                            .and_then(|l| resp.url().join(l).ok())
                            .map(|u| display_url(&u))
                            .unwrap_or_else(|| "an address it did not give".into());
                        return Err(SourceError::Redirect {
                            url: display_url(url),
                            to,
                        });
                    }
                    match self.read_body(url, resp).await {
                        Ok(body) if status.is_success() => return Ok((body, headers)),
                        Ok(body) => Outcome::Status(status, headers, body),
                        Err(Some(e)) => return Err(e),
                        Err(None) => Outcome::Transport("the response body broke off".into()),
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
                            url: display_url(url),
                            detail,
                            attempts: attempt,
                        });
                    }
                    tracing::warn!(url = %display_url(url), attempt, error = %detail, "request failed; retrying");
                    tokio::time::sleep(backoff).await;
                }
                Outcome::Status(status, headers, body) => {
                    if status == StatusCode::TOO_MANY_REQUESTS {
                        self.slow_down();
                    }
                    let retryable = status.is_server_error()
                        || status == StatusCode::REQUEST_TIMEOUT
                        || status == StatusCode::TOO_MANY_REQUESTS;
                    if !retryable || !retries_left {
                        return Err(self.status_error(url, status, &body));
                    }
                    let wait = match retry_after(&headers) {
                        Some(w) if w > MAX_WAIT => {
                            return Err(SourceError::RateLimited {
                                url: display_url(url),
                                wait_secs: w.as_secs(),
                            });
                        }
                        Some(w) => w,
                        None => backoff,
                    };
                    tracing::warn!(url = %display_url(url), attempt, status = status.as_u16(), wait_ms = wait.as_millis() as u64, "retrying");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// Reads a body up to the size limit, counted after decompression.
    /// `Err(None)`: the connection broke (worth a retry).
    async fn read_body(
        &self,
        url: &Url,
        mut resp: reqwest::Response,
    ) -> Result<Vec<u8>, Option<SourceError>> {
        let too_large = || SourceError::TooLarge {
            url: display_url(url),
            limit_mb: self.max_body >> 20,
        };
        let declared = resp.content_length().unwrap_or(0);
        // A declared length counts only without compression (reqwest
        // drops it when it decompresses).
        if declared > self.max_body {
            return Err(Some(too_large()));
        }
        let mut body = Vec::with_capacity(declared.min(1 << 20) as usize);
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    if (body.len() + chunk.len()) as u64 > self.max_body {
                        return Err(Some(too_large()));
                    }
                    let read = self
                        .poll_bytes
                        .fetch_add(chunk.len() as u64, Ordering::Relaxed)
                        + chunk.len() as u64;
                    if read > self.max_poll_bytes {
                        return Err(Some(SourceError::TooMuchData {
                            limit_mb: self.max_poll_bytes >> 20,
                        }));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => return Ok(body),
                Err(_) => return Err(None),
            }
        }
    }

    fn status_error(&self, url: &Url, status: StatusCode, body: &[u8]) -> SourceError {
        let no_credentials = matches!(self.auth, Auth::None);
        let hint = match status.as_u16() {
            401 | 403 if no_credentials => {
                " (the service wants credentials and this source has none configured: a login-required site needs an API key; see the README's Sources table)"
            }
            401 => " (the credentials were refused: check the env var the source names)",
            403 => " (the credentials lack a permission this source needs; see the README)",
            404 => " (check the source's `url`)",
            429 => " (rate limited; lower `requests_per_minute`)",
            _ => "",
        };
        SourceError::Status {
            url: display_url(url),
            status: status.as_u16(),
            hint,
            body: self.redact(&String::from_utf8_lossy(body)),
        }
    }

    async fn wait_turn(&self) {
        let until = *self.blocked_until.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(until) = until {
            tokio::time::sleep_until(until).await;
        }
        if let Some(l) = &self.limiter {
            // Slowed down: this request takes as many turns as the factor,
            // so the spacing grows by it.
            for _ in 0..self.slowdown.load(Ordering::Relaxed).max(1) {
                l.until_ready().await;
            }
        }
    }

    /// A 429: the service's budget is shared or smaller than configured;
    /// space the rest of this poll's requests twice as wide (up to
    /// [`MAX_SLOWDOWN`] times).
    fn slow_down(&self) {
        let _ = self
            .slowdown
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| {
                Some((s * 2).min(MAX_SLOWDOWN))
            });
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
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
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

/// A transport error with its causes, without the URL (the caller has it).
pub(crate) fn describe(e: &reqwest::Error) -> String {
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
        url: display_url(url),
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
    fn printed_urls_and_service_text_carry_no_credentials() {
        let u = Url::parse("https://bob:hunter2@forum.example/posts.json?api_key=abc123&page=2")
            .unwrap();
        let shown = display_url(&u);
        assert!(
            !shown.contains("hunter2") && !shown.contains("bob") && !shown.contains("abc123"),
            "{shown}"
        );
        assert!(shown.contains("page=2"), "{shown}");
        let echoed = r#"{"error":"invalid token","token":"s3cr3t-k3y","api_key=zz9plural","hint":"see https://docs.example/errors"} Bearer eyJhbGciOiJIUzI1NiJ9.abc123def456ghi789"#;
        let r = redact(echoed, &["s3cr3t-k3y"], 500);
        for leaked in ["s3cr3t-k3y", "zz9plural", "eyJhbGciOiJIUzI1NiJ9"] {
            assert!(!r.contains(leaked), "{leaked} in {r}");
        }
        assert!(
            r.contains("invalid token") && r.contains("https://docs.example/errors"),
            "{r}"
        );
        assert_eq!(redact(&"x".repeat(1000), &[], 10).chars().count(), 11);
    }

    /// A local server that records when each request arrived (its own
    /// clock) and answers 429 to the requests whose numbers are in `limit`.
    async fn clocked(
        limit: &'static [usize],
    ) -> (Url, std::sync::Arc<Mutex<Vec<std::time::Instant>>>) {
        let seen = std::sync::Arc::new(Mutex::new(Vec::new()));
        let st = seen.clone();
        let app = axum::Router::new().fallback(move || {
            let st = st.clone();
            async move {
                let mut v = st.lock().unwrap();
                v.push(std::time::Instant::now());
                if limit.contains(&(v.len() - 1)) {
                    (axum::http::StatusCode::TOO_MANY_REQUESTS, "slow down")
                } else {
                    (axum::http::StatusCode::OK, "{}")
                }
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (Url::parse(&format!("http://{addr}/")).unwrap(), seen)
    }

    fn http_at(base: &Url, per_minute: u32) -> Http {
        let settings = crate::sources::config::HttpSettings {
            requests_per_minute: per_minute,
            timeout: Duration::from_secs(5),
            retries: 3,
        };
        Http::new(
            client().unwrap(),
            settings,
            Auth::None,
            base,
            &Limits::default(),
        )
    }

    #[tokio::test]
    async fn the_limiter_never_exceeds_its_rate_in_any_window_by_the_servers_clock() {
        // 600 a minute = one every 100 ms: the first requests of a poll
        // must not go out as a burst of the minute's budget.
        let (base, seen) = clocked(&[]).await;
        let http = http_at(&base, 600);
        for _ in 0..12 {
            http.get(&base).await.unwrap();
        }
        let times = seen.lock().unwrap().clone();
        assert_eq!(times.len(), 12);
        // In any window of w, at most w × rate, +1 for a request the
        // server saw late (a loaded machine): a burst (the old limiter sent
        // all 12 at once) is far above that.
        for (i, a) in times.iter().enumerate() {
            let in_window = times[i..]
                .iter()
                .filter(|t| t.duration_since(*a) < Duration::from_millis(500))
                .count();
            assert!(
                in_window <= 6,
                "{in_window} requests within 500 ms from #{i}"
            );
        }
        let whole = times[11].duration_since(times[0]);
        assert!(whole >= Duration::from_millis(1080), "{whole:?}");
    }

    #[tokio::test]
    async fn a_429_spaces_the_rest_of_the_poll_wider() {
        let (base, seen) = clocked(&[2]).await;
        let http = http_at(&base, 1200); // one every 50 ms
        http.begin_poll();
        for _ in 0..5 {
            http.get(&base).await.unwrap();
        }
        let t = seen.lock().unwrap().clone();
        assert_eq!(t.len(), 6, "the 429 was retried");
        // After the 429, requests come at least 100 ms apart (twice the
        // configured spacing); before it, 50 ms.
        for w in t[3..].windows(2) {
            assert!(
                w[1].duration_since(w[0]) >= Duration::from_millis(95),
                "{t:?}"
            );
        }
        // A new poll starts at the configured pace again.
        http.begin_poll();
        assert_eq!(http.slowdown.load(Ordering::Relaxed), 1);
    }

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
