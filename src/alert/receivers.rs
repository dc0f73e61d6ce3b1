//! Receivers over HTTP: Slack (incoming webhook or bot), Teams (Workflows
//! webhook) and plain webhooks — the request each message becomes, and
//! what each answer means for delivery.
//!
//! Answers: 2xx is accepted (for Slack's Web API, `"ok": true` too); 429
//! waits for `Retry-After`; 408, 5xx and connection errors are tried again
//! with backoff; a timeout is an unknown outcome (tried again with the same
//! idempotency key); any other 4xx, and any redirect (never followed: the
//! URL or token must not travel elsewhere), fails for good with the answer.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Sha256;
use url::Url;

use super::chat::{ChatView, slack_message, teams_message};
use super::compose::Outgoing;
use super::route::{Endpoint, ReceiverKind, Routing, SlackTarget};
use super::smtp::SendError;
use crate::console::tokens::Links;
use crate::detect::Queued;
use crate::secret::Secret;
use crate::sources::http::{describe, redact, retry_after};

/// The webhook body's schema name and version.
pub const WEBHOOK_SCHEMA: &str = "lull.notice/v1";
/// Header carrying `t=<unix seconds>,v1=<hex HMAC-SHA256>`.
pub const SIGNATURE_HEADER: &str = "Lull-Signature";
/// Header carrying the delivery's idempotency key.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";
/// How much of an error answer goes into the delivery record.
const ANSWER_SNIPPET: usize = 300;
/// Longest wait a `Retry-After` may ask for before lull tries anyway.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// An HTTP receiver with its secrets read.
enum Target {
    SlackWebhook(Url),
    SlackBot { token: Secret, api: Url },
    Teams(Url),
    Webhook { url: Url, secret: Option<Secret> },
}

struct Ready {
    target: Target,
    timeout: Duration,
    /// Where it posts, for records and logs (never a secret URL).
    describe: String,
}

/// Slack user ids by (receiver, e-mail address), shared by delivery passes.
pub type SlackUsers = std::sync::Arc<Mutex<HashMap<(String, String), String>>>;

/// The configured HTTP receivers, ready to post; one whose secret is
/// missing keeps its messages queued and says why.
pub struct HttpReceivers {
    client: reqwest::Client,
    by_name: HashMap<String, Result<Ready, String>>,
    /// Slack user ids by (receiver, e-mail), looked up once.
    slack_users: SlackUsers,
}

fn endpoint(e: &Endpoint, name: &str) -> Result<(Url, String), String> {
    match e {
        Endpoint::Url(u) => Ok((u.clone(), crate::sources::http::display_url(u))),
        Endpoint::Env(var) => {
            let v = Secret::from_env(var).map_err(|e| format!("receiver {name}: {e}"))?;
            let u = Url::parse(v.expose().trim())
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
                .ok_or_else(|| format!("receiver {name}: ${var} does not hold an http(s) URL"))?;
            let host = u.host_str().unwrap_or_default().to_string();
            Ok((u, format!("{host} (URL from ${var})")))
        }
    }
}

impl HttpReceivers {
    /// Reads the secrets of every HTTP receiver of `routing`.
    pub fn new(routing: &Routing, slack_users: SlackUsers) -> Result<HttpReceivers, String> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("lull/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("building the HTTP client: {e}"))?;
        let mut by_name = HashMap::new();
        for r in &routing.receivers {
            let ready = match &r.kind {
                ReceiverKind::Email { .. } => continue,
                ReceiverKind::Slack(SlackTarget::Webhook(e)) => endpoint(e, &r.name)
                    .map(|(u, d)| (Target::SlackWebhook(u), format!("Slack webhook {d}"))),
                ReceiverKind::Slack(SlackTarget::Bot { token_env, api }) => {
                    Secret::from_env(token_env)
                        .map_err(|e| format!("receiver {}: {e}", r.name))
                        .map(|token| {
                            (
                                Target::SlackBot {
                                    token,
                                    api: api.clone(),
                                },
                                format!("Slack {}", api.host_str().unwrap_or_default()),
                            )
                        })
                }
                ReceiverKind::Teams(e) => endpoint(e, &r.name)
                    .map(|(u, d)| (Target::Teams(u), format!("Teams webhook {d}"))),
                ReceiverKind::Webhook {
                    endpoint: e,
                    secret_env,
                } => endpoint(e, &r.name).and_then(|(url, d)| {
                    let secret = match secret_env {
                        Some(var) => Some(
                            Secret::from_env(var)
                                .map_err(|e| format!("receiver {}: {e}", r.name))?,
                        ),
                        None => None,
                    };
                    Ok((Target::Webhook { url, secret }, d))
                }),
            };
            by_name.insert(
                r.name.clone(),
                ready.map(|(target, describe)| Ready {
                    target,
                    timeout: r.timeout,
                    describe,
                }),
            );
        }
        Ok(HttpReceivers {
            client,
            by_name,
            slack_users,
        })
    }

    /// Whether `name` is one of these receivers.
    pub fn has(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// Why `name` cannot post (a missing secret), if it cannot.
    pub fn setup_error(&self, name: &str) -> Option<String> {
        match self.by_name.get(name) {
            Some(Err(e)) => Some(e.clone()),
            _ => None,
        }
    }

    /// Where `name` posts, for records.
    pub fn describe(&self, name: &str) -> String {
        match self.by_name.get(name) {
            Some(Ok(r)) => r.describe.clone(),
            _ => name.to_string(),
        }
    }

    /// Sends one message; returns the size of what was posted.
    pub async fn send(
        &self,
        o: &Outgoing,
        links: Option<&Links>,
        registry: Option<&crate::accounts::Registry>,
    ) -> Result<usize, SendError> {
        let ready = match self.by_name.get(&o.receiver) {
            Some(Ok(r)) => r,
            Some(Err(e)) => {
                return Err(SendError::Transient {
                    message: e.clone(),
                    connection: true,
                });
            }
            None => {
                return Err(SendError::Permanent(format!(
                    "no receiver is named {} any more",
                    o.receiver
                )));
            }
        };
        let day = o.day.to_string();
        match &ready.target {
            Target::SlackWebhook(url) => {
                let body = slack_message(&ChatView::new(&o.subject, &day, &o.items, links));
                self.post(ready, url, &body, &o.message_id, None, None)
                    .await
                    .map(|(n, _)| n)
            }
            Target::Teams(url) => {
                let body = teams_message(&ChatView::new(&o.subject, &day, &o.items, links));
                self.post(ready, url, &body, &o.message_id, None, None)
                    .await
                    .map(|(n, _)| n)
            }
            Target::Webhook { url, secret } => {
                let item = o.items.first().ok_or_else(|| {
                    SendError::Permanent("the webhook message has no notice".into())
                })?;
                let body = webhook_body(&o.message_id, &o.receiver, item, links, registry);
                self.post(ready, url, &body, &o.message_id, secret.as_ref(), None)
                    .await
                    .map(|(n, _)| n)
            }
            Target::SlackBot { token, api } => {
                let user = self
                    .slack_user(ready, &o.receiver, token, api, &o.to)
                    .await?;
                let mut body = slack_message(&ChatView::new(&o.subject, &day, &o.items, links));
                body["channel"] = Value::String(user);
                let url = api
                    .join("chat.postMessage")
                    .map_err(|e| SendError::Permanent(format!("Slack API URL: {e}")))?;
                let (n, answer) = self
                    .post(ready, &url, &body, &o.message_id, None, Some(token))
                    .await?;
                slack_ok(&answer).map(|()| n)
            }
        }
    }

    /// The Slack user id of a CSM's e-mail address (`users.lookupByEmail`),
    /// cached for as long as lull runs.
    async fn slack_user(
        &self,
        ready: &Ready,
        receiver: &str,
        token: &Secret,
        api: &Url,
        email: &str,
    ) -> Result<String, SendError> {
        let key = (receiver.to_string(), email.to_lowercase());
        if let Some(id) = self
            .slack_users
            .lock()
            .ok()
            .and_then(|m| m.get(&key).cloned())
        {
            return Ok(id);
        }
        let mut url = api
            .join("users.lookupByEmail")
            .map_err(|e| SendError::Permanent(format!("Slack API URL: {e}")))?;
        url.query_pairs_mut().append_pair("email", email);
        let req = self
            .client
            .get(url)
            .bearer_auth(token.expose())
            .timeout(ready.timeout);
        let (_, answer) = self.answer(req, &[token.expose()]).await?;
        slack_ok(&answer).map_err(|e| match e {
            SendError::Permanent(m) if m.contains("users_not_found") => SendError::Permanent(
                format!("no Slack user has the e-mail address {email} (users_not_found)"),
            ),
            other => other,
        })?;
        let id = answer
            .pointer("/user/id")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                SendError::Permanent(
                    "Slack's users.lookupByEmail answered without a user id".into(),
                )
            })?
            .to_string();
        if let Ok(mut m) = self.slack_users.lock() {
            m.insert(key, id.clone());
        }
        Ok(id)
    }

    /// POSTs JSON with the idempotency key (and the signature, with a
    /// secret; the bearer token, with a token).
    async fn post(
        &self,
        ready: &Ready,
        url: &Url,
        body: &Value,
        key: &str,
        secret: Option<&Secret>,
        token: Option<&Secret>,
    ) -> Result<(usize, Value), SendError> {
        let bytes = serde_json::to_vec(body)
            .map_err(|e| SendError::Permanent(format!("encoding the message: {e}")))?;
        let size = bytes.len();
        let mut req = self
            .client
            .post(url.clone())
            .timeout(ready.timeout)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/json; charset=utf-8",
            )
            .header(IDEMPOTENCY_HEADER, key);
        if let Some(s) = secret {
            let t = chrono::Utc::now().timestamp();
            req = req.header(
                SIGNATURE_HEADER,
                signature(s.expose().as_bytes(), t, &bytes),
            );
        }
        if let Some(t) = token {
            req = req.bearer_auth(t.expose());
        }
        let mut secrets: Vec<&str> = vec![url.as_str()];
        if let Some(t) = token {
            secrets.push(t.expose());
        }
        let (_, answer) = self.answer(req.body(bytes), &secrets).await?;
        Ok((size, answer))
    }

    /// Sends a request and reads what its answer means.
    async fn answer(
        &self,
        req: reqwest::RequestBuilder,
        secrets: &[&str],
    ) -> Result<(StatusCode, Value), SendError> {
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) if e.is_timeout() => {
                return Err(SendError::Unknown(format!(
                    "no answer in time ({}): the receiver may have taken it",
                    describe(&e)
                )));
            }
            Err(e) => {
                return Err(SendError::Transient {
                    message: redact(&describe(&e), secrets, ANSWER_SNIPPET),
                    connection: true,
                });
            }
        };
        let status = resp.status();
        let wait = retry_after(resp.headers());
        let location = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = match resp.text().await {
            Ok(t) => t,
            Err(e) if status.is_success() => {
                // Accepted: the body is only a courtesy.
                tracing::debug!(error = %describe(&e), "receiver's answer body broke off");
                String::new()
            }
            Err(e) => describe(&e),
        };
        let snippet = || redact(&text, secrets, ANSWER_SNIPPET);
        if status.is_success() {
            let v = serde_json::from_str(&text).unwrap_or(Value::Null);
            return Ok((status, v));
        }
        if status == StatusCode::TOO_MANY_REQUESTS {
            return Err(SendError::Throttled {
                message: format!("429 Too Many Requests: {}", snippet()),
                after: wait.map(|w| w.min(MAX_RETRY_AFTER)),
            });
        }
        if status == StatusCode::REQUEST_TIMEOUT || status.is_server_error() {
            return Err(SendError::Throttled {
                message: format!("{status}: {}", snippet()),
                after: wait.map(|w| w.min(MAX_RETRY_AFTER)),
            });
        }
        if status.is_redirection() {
            let to = location
                .as_deref()
                .map(|l| redact(l, secrets, 120))
                .unwrap_or_else(|| "nowhere".into());
            return Err(SendError::Permanent(format!(
                "{status}: the receiver redirected to {to}; lull does not follow redirects (the URL and its secret stay with the configured host): set the receiver's URL to the new address"
            )));
        }
        Err(SendError::Permanent(format!("{status}: {}", snippet())))
    }
}

/// Slack's Web API answers 200 with `"ok": false` and an error name.
fn slack_ok(answer: &Value) -> Result<(), SendError> {
    if answer.get("ok").and_then(Value::as_bool) == Some(true) {
        return Ok(());
    }
    let error = answer
        .get("error")
        .and_then(Value::as_str)
        .unwrap_or("no \"ok\" in the answer");
    match error {
        "ratelimited"
        | "internal_error"
        | "fatal_error"
        | "service_unavailable"
        | "request_timeout" => Err(SendError::Throttled {
            message: format!("Slack: {error}"),
            after: None,
        }),
        _ => Err(SendError::Permanent(format!("Slack: {error}"))),
    }
}

/// `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">` (CONTRACT.md).
pub fn signature(secret: &[u8], t: i64, body: &[u8]) -> String {
    format!("t={t},v1={}", hex(&sign(secret, t, body)))
}

fn sign(secret: &[u8], t: i64, body: &[u8]) -> Vec<u8> {
    // HMAC takes a key of any length.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"));
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Checks a `Lull-Signature` header as a receiver would: the HMAC matches
/// and the timestamp is within `tolerance` of `now` (an old timestamp is a
/// replay). For tests and receivers written in Rust.
pub fn verify(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<(), &'static str> {
    let mut t = None;
    let mut v1 = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", x)) => t = x.parse::<i64>().ok(),
            Some(("v1", x)) => v1.push(x.to_string()),
            _ => {}
        }
    }
    let t = t.ok_or("no timestamp")?;
    let want = hex(&sign(secret, t, body));
    let ok = v1.iter().any(|s| {
        use subtle::ConstantTimeEq;
        s.len() == want.len() && bool::from(s.as_bytes().ct_eq(want.as_bytes()))
    });
    if !ok {
        return Err("signature does not match");
    }
    if (now - t).abs() > tolerance_secs {
        return Err("timestamp outside the tolerance (a replay?)");
    }
    Ok(())
}

/// The webhook body (schema `lull.notice/v1`, README "Webhook receivers").
pub fn webhook_body(
    id: &str,
    receiver: &str,
    item: &Queued,
    links: Option<&Links>,
    registry: Option<&crate::accounts::Registry>,
) -> Value {
    match item {
        Queued::Account(n) => {
            let labels = registry
                .and_then(|r| r.by_id(n.account.as_str()).map(|i| r.get(i).labels.clone()))
                .unwrap_or_default();
            let link = links.map(|l| {
                let a = l.for_notice(
                    n.account.as_str(),
                    n.date,
                    n.notice.as_str(),
                    &n.csm,
                    chrono::Utc::now(),
                );
                json!({"open": a.open, "snooze": a.snooze, "useful": a.useful, "false_alarm": a.false_alarm})
            });
            let tier = super::route::Tier::of_kind(n.notice.as_str())
                .map_or("silent", super::route::Tier::as_str);
            json!({
                "schema": WEBHOOK_SCHEMA,
                "id": id,
                "receiver": receiver,
                "tier": tier,
                "kind": n.notice.as_str(),
                "date": n.date.to_string(),
                "account": n.account.as_str(),
                "account_name": n.name,
                "csm": n.csm,
                "segment": n.segment,
                "labels": labels,
                "channels": n.channels.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "expected": n.expected,
                "observed": n.observed,
                "silent_since": n.silent_since.map(|d| d.to_string()),
                "episode_started": n.episode_started.map(|d| d.to_string()),
                "evidence": n.evidence,
                "links": link,
                "queued_at": n.queued_at,
            })
        }
        Queued::Stale(s) => json!({
            "schema": WEBHOOK_SCHEMA,
            "id": id,
            "receiver": receiver,
            "tier": "stale_source",
            "kind": "stale_source",
            "date": s.date.to_string(),
            "account": s.source.as_str(),
            "source": s.source.as_str(),
            "last_data": s.last_data.to_string(),
            "channels": Vec::<String>::new(),
            "queued_at": s.queued_at,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_with_its_secret_only_and_ages() {
        let body = br#"{"account":"acme"}"#;
        let h = signature(b"s3cret", 1_700_000_000, body);
        assert!(h.starts_with("t=1700000000,v1="));
        assert_eq!(h.len(), "t=1700000000,v1=".len() + 64);
        assert_eq!(verify(b"s3cret", &h, body, 1_700_000_010, 300), Ok(()));
        assert!(verify(b"other", &h, body, 1_700_000_010, 300).is_err());
        assert!(verify(b"s3cret", &h, b"{}", 1_700_000_010, 300).is_err());
        assert_eq!(
            verify(b"s3cret", &h, body, 1_700_003_600, 300),
            Err("timestamp outside the tolerance (a replay?)")
        );
    }
}
