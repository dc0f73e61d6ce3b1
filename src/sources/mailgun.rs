//! `mailgun`: `delivered` and `opened` events of one sending domain.
//!
//! `/v3/{domain}/events` with `begin`/`end` (epoch seconds), ascending,
//! pages by `paging.next` until a page is empty. Mailgun's event store
//! settles over about half an hour, so a poll reads only up to 30 minutes
//! ago and the next poll starts a little before that point (what it reads
//! twice is deduplicated).

use std::sync::Arc;

use super::http::Auth;
use super::kind::{self, Connect, Connection, Docs, Keys, Kind};
use crate::secret::Secret;
use std::time::Duration;

use chrono::DateTime;
use serde::Deserialize;
use url::Url;

use super::email::Engagement;
use super::{
    Connector, EMAIL_OVERLAP, Harvest, PollContext, PollFuture, SourceError, SpanCursor,
    cursor_bytes, endpoint, follow,
};

/// Mailgun recommends treating the last 30 minutes as not final.
const SETTLE: chrono::Duration = chrono::Duration::minutes(30);
/// Events a page (Mailgun's maximum).
const PAGE: u32 = 300;
/// A bound on pages per poll, against a server whose "next" never ends.
const MAX_PAGES: u32 = 10_000;

pub struct Mailgun {
    base: Url,
    domain: String,
    machine_open: Duration,
}

impl Mailgun {
    pub fn new(base: Url, domain: String, machine_open: Duration) -> Mailgun {
        Mailgun {
            base,
            domain,
            machine_open,
        }
    }
}

#[derive(Deserialize)]
struct Events {
    items: Vec<Event>,
    #[serde(default)]
    paging: Option<Paging>,
}

#[derive(Deserialize)]
struct Paging {
    #[serde(default)]
    next: Option<String>,
}

#[derive(Deserialize)]
struct Event {
    event: String,
    timestamp: f64,
    #[serde(default)]
    recipient: Option<String>,
    #[serde(default)]
    message: Option<Message>,
    #[serde(default, rename = "client-info")]
    client_info: Option<ClientInfo>,
}

#[derive(Deserialize)]
struct Message {
    headers: Headers,
}

#[derive(Deserialize)]
struct Headers {
    #[serde(default, rename = "message-id")]
    message_id: Option<String>,
}

#[derive(Deserialize)]
struct ClientInfo {
    /// Set (e.g. "apple", "gmail") when Mailgun recognised a machine.
    #[serde(default)]
    bot: Option<String>,
}

impl Connector for Mailgun {
    fn poll<'a>(&'a self, cx: &'a PollContext<'a>) -> PollFuture<'a> {
        Box::pin(async move {
            let prev: Option<SpanCursor> = cx.cursor();
            let covered_from = prev
                .as_ref()
                .map(|c| c.covered_to)
                .unwrap_or(cx.backfill_start);
            let begin = prev
                .as_ref()
                .map(|c| c.covered_to - EMAIL_OVERLAP)
                .unwrap_or(cx.backfill_start);
            let end = (cx.now - SETTLE).max(begin);
            let mut url = endpoint(&self.base, &format!("v3/{}/events", self.domain));
            url.query_pairs_mut()
                .append_pair("begin", &begin.timestamp().to_string())
                .append_pair("end", &end.timestamp().to_string())
                .append_pair("ascending", "yes")
                .append_pair("limit", &PAGE.to_string())
                .append_pair("event", "delivered OR opened");
            let mut eng = Engagement::new(self.machine_open);
            let mut pages = 0;
            loop {
                pages += 1;
                let (page, _) = cx.http.get_json::<Events>(&url).await?;
                if page.items.is_empty() {
                    break;
                }
                for e in page.items {
                    let (Some(r), Some(id)) = (
                        e.recipient.as_deref().filter(|r| !r.is_empty()),
                        e.message
                            .as_ref()
                            .and_then(|m| m.headers.message_id.as_deref()),
                    ) else {
                        continue;
                    };
                    let at = DateTime::from_timestamp_micros((e.timestamp * 1e6) as i64)
                        .ok_or_else(|| SourceError::Json {
                            url: url.to_string(),
                            detail: format!("`timestamp` {} is out of range", e.timestamp),
                        })?;
                    match e.event.as_str() {
                        "delivered" => eng.delivered(id, r, at),
                        "opened" => {
                            let bot = e
                                .client_info
                                .as_ref()
                                .and_then(|c| c.bot.as_deref())
                                .is_some_and(|b| !b.is_empty());
                            eng.opened(id, r, at, bot)
                        }
                        _ => {}
                    }
                }
                let Some(next) = page.paging.and_then(|p| p.next) else {
                    break;
                };
                let next = follow(&self.base, &next)?;
                if next == url || pages >= MAX_PAGES {
                    break;
                }
                url = next;
            }
            Ok(Harvest {
                activities: eng.into_activities(),
                covered: Some((covered_from, end)),
                cursor: cursor_bytes(&SpanCursor { covered_to: end }),
                staff: 0,
            })
        })
    }
}

/// The `mailgun` kind.
pub(crate) static KIND: Kind = Kind {
    name: "mailgun",
    requests_per_minute: 120,
    keys: &["domain", "api_key_env", "machine_open_secs"],
    docs: Docs {
        keys: r#"`domain`, `api_key_env`, `machine_open_secs` (5)"#,
        reads: r#"`delivered` and `opened` events from `/v3/{domain}/events` (ascending, `paging.next`), up to 30 minutes ago (Mailgun's events settle over that time; each poll starts 10 minutes before the last one ended)"#,
        credentials: r#"a private API key (basic auth `api:KEY`) that can read events"#,
        rate: r#"120/min"#,
    },
    activities: super::email::ACTIVITIES,
    configure,
    fuzz,
};

#[derive(Debug)]
struct Settings {
    domain: String,
    api_key_env: String,
    machine_open: Duration,
}

fn configure(k: &mut Keys<'_>) -> Option<Arc<dyn kind::Settings>> {
    let domain = k.required("domain", "the sending domain");
    if let Some(d) = &domain
        && !crate::accounts::is_plausible_domain(d)
    {
        k.problem(
            "domain",
            "`domain` is the Mailgun sending domain, e.g. \"mg.example.com\"",
        );
    }
    let api_key_env = k.env("api_key_env");
    let machine_open = super::email::machine_open(k);
    if k.failed() {
        return None;
    }
    Some(Arc::new(Settings {
        domain: domain?,
        api_key_env: api_key_env?,
        machine_open: machine_open?,
    }))
}

impl kind::Settings for Settings {
    fn env_vars(&self) -> Vec<&str> {
        vec![&self.api_key_env]
    }

    fn connect(&self, cx: &Connect<'_>) -> Result<Connection, SourceError> {
        Ok(Connection {
            auth: Auth::Basic {
                user: Secret::new("api"),
                password: kind::secret(&self.api_key_env)?,
            },
            connector: Box::new(Mailgun::new(
                cx.base.clone(),
                self.domain.clone(),
                self.machine_open,
            )),
        })
    }
}

/// Fuzz entry (fuzz/): every response type this connector decodes.
#[doc(hidden)]
pub fn fuzz(data: &[u8]) {
    let url = url::Url::parse("https://fuzz.example/api").unwrap_or_else(|_| unreachable!());
    let _ = super::http::decode::<Events>(&url, data).map_err(|e| e.to_string());
}
