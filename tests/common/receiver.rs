//! A local HTTP receiver that behaves like the services lull posts to:
//! Slack (incoming webhooks and the Web API's `users.lookupByEmail` and
//! `chat.postMessage`), Teams' Workflows webhooks (202) and plain
//! webhooks. It records every request with the time it arrived (the
//! server's clock) and answers as told: accept, fail with a status, ask to
//! wait (429 with `Retry-After`), answer late, or redirect.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

/// How the receiver answers.
#[derive(Debug, Clone)]
pub enum Mode {
    Accept,
    /// This status, with a short body.
    Status(u16),
    /// 429 with `Retry-After: N`.
    RetryAfter(u64),
    /// Accept at once, answer after this long.
    Late(Duration),
    /// 302 to this URL.
    Redirect(String),
}

/// One request as it arrived.
#[derive(Debug, Clone)]
pub struct Hit {
    pub path: String,
    pub query: String,
    pub headers: BTreeMap<String, String>,
    pub body: String,
    pub at: Instant,
    /// The status answered.
    pub status: u16,
}

impl Hit {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

#[derive(Default)]
struct State {
    hits: Mutex<Vec<Hit>>,
    mode: Mutex<Option<Mode>>,
    /// Answers used once each, before `mode`.
    script: Mutex<VecDeque<Mode>>,
}

pub struct Receiver {
    pub port: u16,
    state: Arc<State>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Receiver {
    pub fn start() -> Receiver {
        Receiver::start_on(0)
    }

    pub fn start_on(port: u16) -> Receiver {
        let state = Arc::new(State::default());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let st = state.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
                    .await
                    .expect("bind receiver");
                port_tx
                    .send(listener.local_addr().expect("addr").port())
                    .expect("port");
                let app = axum::Router::new().fallback(
                    move |uri: Uri, headers: HeaderMap, body: Bytes| {
                        let st = st.clone();
                        async move { answer(&st, uri, headers, body).await }
                    },
                );
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = rx.await;
                    })
                    .await
                    .expect("serve");
            });
        });
        let port = port_rx.recv().expect("receiver port");
        Receiver {
            port,
            state,
            stop: Some(tx),
            thread: Some(thread),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Answers every request this way from now on.
    pub fn set(&self, mode: Mode) {
        *self.state.mode.lock().expect("mode") = Some(mode);
    }

    /// Answers the next requests this way, one each, then as `set` says.
    pub fn then(&self, modes: &[Mode]) {
        self.state
            .script
            .lock()
            .expect("script")
            .extend(modes.iter().cloned());
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.state.hits.lock().expect("hits").clone()
    }

    /// Requests to `path` that were accepted (2xx).
    pub fn accepted(&self, path: &str) -> Vec<Hit> {
        self.hits()
            .into_iter()
            .filter(|h| h.path == path && (200..300).contains(&h.status))
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn answer(st: &State, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let mode = {
        let next = st.script.lock().expect("script").pop_front();
        next.or_else(|| st.mode.lock().expect("mode").clone())
            .unwrap_or(Mode::Accept)
    };
    let path = uri.path().to_string();
    let (status, response) = match &mode {
        Mode::Accept | Mode::Late(_) => accept(&path, &uri),
        Mode::Status(s) => (
            *s,
            (
                StatusCode::from_u16(*s).expect("status"),
                format!("answered {s} on purpose"),
            )
                .into_response(),
        ),
        Mode::RetryAfter(secs) => (
            429,
            (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", secs.to_string())],
                "rate limited",
            )
                .into_response(),
        ),
        Mode::Redirect(to) => (
            302,
            (StatusCode::FOUND, [("location", to.clone())], "").into_response(),
        ),
    };
    st.hits.lock().expect("hits").push(Hit {
        path,
        query: uri.query().unwrap_or_default().to_string(),
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    v.to_str().unwrap_or_default().to_string(),
                )
            })
            .collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
        at: Instant::now(),
        status,
    });
    // Taken, then answered late: if lull stops waiting first, the request
    // was accepted all the same (the outcome lull cannot know).
    if let Mode::Late(d) = &mode {
        tokio::time::sleep(*d).await;
    }
    response
}

/// What the service answers when it takes the request.
fn accept(path: &str, uri: &Uri) -> (u16, Response) {
    if path.ends_with("/users.lookupByEmail") {
        let email = uri
            .query()
            .unwrap_or_default()
            .split('&')
            .find_map(|kv| kv.strip_prefix("email="))
            .unwrap_or_default()
            .replace("%40", "@");
        if email.starts_with("nobody") {
            return (
                200,
                axum::Json(serde_json::json!({"ok": false, "error": "users_not_found"}))
                    .into_response(),
            );
        }
        let id = format!("U{}", email.split('@').next().unwrap_or("x").to_uppercase());
        return (
            200,
            axum::Json(serde_json::json!({"ok": true, "user": {"id": id}})).into_response(),
        );
    }
    if path.ends_with("/chat.postMessage") {
        return (
            200,
            axum::Json(serde_json::json!({"ok": true, "ts": "1700000000.000100"})).into_response(),
        );
    }
    if path.starts_with("/teams") {
        return (202, StatusCode::ACCEPTED.into_response());
    }
    (200, (StatusCode::OK, "ok").into_response())
}
