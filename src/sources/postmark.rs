//! `postmark`: deliveries from `/messages/outbound` (status `sent`, one per
//! recipient) and opens from `/messages/outbound/opens`.
//!
//! Postmark pages by `count`/`offset` with `offset + count` at most
//! 10,000, and its `fromdate`/`todate` filters are in US Eastern time.
//! Deliveries are read a day at a time (an hour at a time on days with
//! more than 10,000 messages). Opens come newest first and have no date
//! filter: a poll reads back to where the previous one ended; if the
//! 10,000 limit stops it first, only the span it reached is covered.

use std::sync::Arc;

use reqwest::header::HeaderName;

use super::http::Auth;
use super::kind::{self, Connect, Connection, Docs, Keys, Kind};
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Deserialize;
use url::Url;

use super::email::Engagement;
use super::{
    Connector, EMAIL_OVERLAP, Harvest, PollContext, PollFuture, SourceError, SpanCursor, api_time,
    cursor_bytes, endpoint,
};

/// Records a page (Postmark's maximum).
const PAGE: u64 = 500;
/// Postmark serves `offset + count` up to this.
const MAX_OFFSET: u64 = 10_000;
/// Postmark's API speaks Eastern time.
const POSTMARK_TZ: Tz = chrono_tz::America::New_York;

pub struct Postmark {
    base: Url,
    machine_open: Duration,
}

impl Postmark {
    pub fn new(base: Url, machine_open: Duration) -> Postmark {
        Postmark { base, machine_open }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Messages {
    total_count: u64,
    messages: Vec<OutboundMessage>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct OutboundMessage {
    #[serde(rename = "MessageID")]
    message_id: String,
    #[serde(default)]
    recipients: Vec<String>,
    received_at: String,
    #[serde(default)]
    status: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Opens {
    total_count: u64,
    opens: Vec<Open>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Open {
    #[serde(rename = "MessageID")]
    message_id: String,
    recipient: String,
    received_at: String,
}

impl Connector for Postmark {
    fn poll<'a>(&'a self, cx: &'a PollContext<'a>) -> PollFuture<'a> {
        Box::pin(async move {
            let prev: Option<SpanCursor> = cx.cursor();
            let mut covered_from = prev
                .as_ref()
                .map(|c| c.covered_to)
                .unwrap_or(cx.backfill_start);
            let since = prev
                .as_ref()
                .map(|c| c.covered_to - EMAIL_OVERLAP)
                .unwrap_or(cx.backfill_start);
            let mut eng = Engagement::new(self.machine_open);

            // Deliveries, a day (or an hour) at a time.
            let mut from = since;
            while from < cx.now {
                let day_end = (from + chrono::Duration::days(1)).min(cx.now);
                if !self.deliveries(cx, from, day_end, &mut eng, false).await? {
                    let mut h = from;
                    while h < day_end {
                        let h_end = (h + chrono::Duration::hours(1)).min(day_end);
                        self.deliveries(cx, h, h_end, &mut eng, true).await?;
                        h = h_end;
                    }
                }
                from = day_end;
            }

            // Opens, newest first, back to `since`.
            let mut offset = 0;
            let mut reached = false;
            let mut oldest: Option<DateTime<Utc>> = None;
            while offset + PAGE <= MAX_OFFSET {
                let mut url = endpoint(&self.base, "messages/outbound/opens");
                url.query_pairs_mut()
                    .append_pair("count", &PAGE.to_string())
                    .append_pair("offset", &offset.to_string());
                let (page, _) = cx.http.get_json::<Opens>(&url).await?;
                let n = page.opens.len() as u64;
                for o in page.opens {
                    let at = api_time(&url, "ReceivedAt", &o.received_at)?;
                    oldest = Some(oldest.map_or(at, |x| x.min(at)));
                    if at < since {
                        reached = true;
                        continue;
                    }
                    eng.opened(&o.message_id, &o.recipient, at, false);
                }
                offset += n;
                if reached || n == 0 || offset >= page.total_count {
                    reached = true;
                    break;
                }
            }
            if !reached && let Some(o) = oldest {
                tracing::warn!(source = %cx.name, "more than {MAX_OFFSET} opens since the last poll; days before {o} stay uncovered (poll more often)");
                covered_from = covered_from.max(o);
            }
            Ok(Harvest {
                activities: eng.into_activities(),
                covered: Some((covered_from, cx.now)),
                cursor: cursor_bytes(&SpanCursor { covered_to: cx.now }),
                staff: 0,
            })
        })
    }
}

impl Postmark {
    /// Reads the sent messages of [from, to). Returns false (having added
    /// nothing) when there are more than Postmark can page through, unless
    /// `must_fit`, when that is an error.
    async fn deliveries(
        &self,
        cx: &PollContext<'_>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        eng: &mut Engagement,
        must_fit: bool,
    ) -> Result<bool, SourceError> {
        let fmt = |t: DateTime<Utc>| {
            t.with_timezone(&POSTMARK_TZ)
                .format("%Y-%m-%dT%H:%M:%S")
                .to_string()
        };
        let mut offset = 0;
        let mut found = Vec::new();
        loop {
            let mut url = endpoint(&self.base, "messages/outbound");
            url.query_pairs_mut()
                .append_pair("count", &PAGE.to_string())
                .append_pair("offset", &offset.to_string())
                .append_pair("status", "sent")
                .append_pair("fromdate", &fmt(from))
                .append_pair("todate", &fmt(to));
            let (page, _) = cx.http.get_json::<Messages>(&url).await?;
            if page.total_count > MAX_OFFSET {
                if must_fit {
                    return Err(SourceError::Other(format!(
                        "Postmark has {} messages between {from} and {to}, more than its API pages through ({MAX_OFFSET})",
                        page.total_count
                    )));
                }
                return Ok(false);
            }
            let n = page.messages.len() as u64;
            for m in page.messages {
                let at = api_time(&url, "ReceivedAt", &m.received_at)?;
                // The filter is by whole seconds in Eastern time: keep
                // exactly this window, so windows never overlap.
                if at < from || at >= to || !m.status.eq_ignore_ascii_case("sent") {
                    continue;
                }
                for r in &m.recipients {
                    found.push((m.message_id.clone(), r.clone(), at));
                }
            }
            offset += n;
            if n == 0 || offset >= page.total_count {
                break;
            }
        }
        for (m, r, at) in found {
            eng.delivered(&m, &r, at);
        }
        Ok(true)
    }
}

/// The `postmark` kind.
pub(crate) static KIND: Kind = Kind {
    name: "postmark",
    requests_per_minute: 120,
    keys: &["token_env", "machine_open_secs"],
    docs: Docs {
        keys: r#"`token_env`, `machine_open_secs` (5)"#,
        reads: r#"`delivered` per recipient of sent messages (`/messages/outbound`, a day at a time, in Postmark's Eastern time) and opens (`/messages/outbound/opens`, newest first, back to the last poll; Postmark pages at most 10,000 records deep, and keeps opens 45 days by default)"#,
        credentials: r#"a server API token (`X-Postmark-Server-Token`)"#,
        rate: r#"120/min"#,
    },
    activities: super::email::ACTIVITIES,
    configure,
    fuzz,
};

#[derive(Debug)]
struct Settings {
    token_env: String,
    machine_open: Duration,
}

fn configure(k: &mut Keys<'_>) -> Option<Arc<dyn kind::Settings>> {
    let token_env = k.env("token_env");
    let machine_open = super::email::machine_open(k);
    if k.failed() {
        return None;
    }
    Some(Arc::new(Settings {
        token_env: token_env?,
        machine_open: machine_open?,
    }))
}

impl kind::Settings for Settings {
    fn env_vars(&self) -> Vec<&str> {
        vec![&self.token_env]
    }

    fn connect(&self, cx: &Connect<'_>) -> Result<Connection, SourceError> {
        Ok(Connection {
            auth: Auth::Headers(vec![(
                HeaderName::from_static("x-postmark-server-token"),
                kind::secret(&self.token_env)?,
            )]),
            connector: Box::new(Postmark::new(cx.base.clone(), self.machine_open)),
        })
    }
}

/// Fuzz entry (fuzz/): every response type this connector decodes.
#[doc(hidden)]
pub fn fuzz(data: &[u8]) {
    let url = url::Url::parse("https://fuzz.example/api").unwrap_or_else(|_| unreachable!());
    let _ = super::http::decode::<Messages>(&url, data).map_err(|e| e.to_string());
    let _ = super::http::decode::<Opens>(&url, data).map_err(|e| e.to_string());
}
