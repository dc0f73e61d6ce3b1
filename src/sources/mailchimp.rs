//! `mailchimp`: per-recipient deliveries and opens of sent campaigns.
//!
//! `/3.0/campaigns?status=sent&since_send_time=` lists campaigns; for each
//! one sent within `opens_window_days` (or within the backfill window on
//! a first poll), `/3.0/reports/{id}/sent-to` gives its recipients
//! (`status = sent` is a delivery) and `/3.0/reports/{id}/email-activity`
//! every recipient's actions. Opens keep coming for weeks, so each poll
//! looks at every campaign of the window again — but a campaign an earlier
//! poll read is not downloaded again: its deliveries are stored, and only
//! the activity `since` that poll (less an hour) is asked for. An open
//! read twice has the same id (the first of its recipient), so dedupe is
//! exact.

use std::sync::Arc;

use super::http::Auth;
use super::kind::{self, Connect, Connection, Docs, Keys, Kind};
use crate::secret::Secret;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use url::Url;

use super::email::Engagement;
use super::{
    Connector, Harvest, PollContext, PollFuture, SourceError, SpanCursor, api_time, cursor_bytes,
    endpoint,
};

/// Records a page (Mailchimp allows up to 1,000).
const PAGE: u64 = 1000;
/// Activity is asked for from this long before the previous poll: events
/// can be recorded a little after they happen.
const ACTIVITY_OVERLAP: chrono::Duration = chrono::Duration::hours(1);

pub struct Mailchimp {
    base: Url,
    machine_open: Duration,
    window_days: u32,
}

impl Mailchimp {
    pub fn new(base: Url, machine_open: Duration, window_days: u32) -> Mailchimp {
        Mailchimp {
            base,
            machine_open,
            window_days,
        }
    }
}

#[derive(Deserialize)]
struct Campaigns {
    campaigns: Vec<Campaign>,
    total_items: u64,
}

#[derive(Deserialize)]
struct Campaign {
    id: String,
    #[serde(default)]
    send_time: Option<String>,
}

#[derive(Deserialize)]
struct SentTo {
    sent_to: Vec<Recipient>,
    total_items: u64,
}

#[derive(Deserialize)]
struct Recipient {
    email_address: String,
    /// `sent`, `hard` or `soft` (bounces).
    status: String,
}

#[derive(Deserialize)]
struct EmailActivity {
    emails: Vec<RecipientActivity>,
    total_items: u64,
}

#[derive(Deserialize)]
struct RecipientActivity {
    email_address: String,
    #[serde(default)]
    activity: Vec<Action>,
}

#[derive(Deserialize)]
struct Action {
    action: String,
    timestamp: String,
}

impl Connector for Mailchimp {
    fn poll<'a>(&'a self, cx: &'a PollContext<'a>) -> PollFuture<'a> {
        Box::pin(async move {
            let prev: Option<SpanCursor> = cx.cursor();
            let window_start = cx.now - chrono::Duration::days(i64::from(self.window_days));
            let since = match &prev {
                Some(c) => c.covered_to.min(window_start),
                None => cx.backfill_start.min(window_start),
            };
            let mut eng = Engagement::new(self.machine_open);
            let mut offset = 0;
            loop {
                let mut url = endpoint(&self.base, "3.0/campaigns");
                url.query_pairs_mut()
                    .append_pair("status", "sent")
                    .append_pair("since_send_time", &since.to_rfc3339())
                    .append_pair("count", &PAGE.to_string())
                    .append_pair("offset", &offset.to_string())
                    .append_pair("fields", "campaigns.id,campaigns.send_time,total_items");
                let (page, _) = cx.http.get_json::<Campaigns>(&url).await?;
                let n = page.campaigns.len() as u64;
                for c in page.campaigns {
                    let Some(sent) = c.send_time.as_deref().filter(|s| !s.is_empty()) else {
                        continue;
                    };
                    let sent = api_time(&url, "send_time", sent)?;
                    if sent < since {
                        continue;
                    }
                    // Read whole by an earlier poll: only what happened
                    // since.
                    let activity_since = prev
                        .as_ref()
                        .map(|p| p.covered_to - ACTIVITY_OVERLAP)
                        .filter(|from| sent < *from);
                    self.campaign(cx, &c.id, sent, activity_since, &mut eng)
                        .await?;
                }
                offset += n;
                if n == 0 || offset >= page.total_items {
                    break;
                }
            }
            Ok(Harvest {
                activities: eng.into_activities(),
                covered: Some((prev.map(|c| c.covered_to).unwrap_or(since), cx.now)),
                cursor: cursor_bytes(&SpanCursor { covered_to: cx.now }),
                staff: 0,
            })
        })
    }
}

impl Mailchimp {
    async fn campaign(
        &self,
        cx: &PollContext<'_>,
        id: &str,
        sent: DateTime<Utc>,
        activity_since: Option<DateTime<Utc>>,
        eng: &mut Engagement,
    ) -> Result<(), SourceError> {
        let mut offset = 0;
        // Its deliveries are stored already: what remains is telling a
        // machine's open (seconds after the send) from a person's.
        if activity_since.is_some() {
            eng.sent(id, sent);
        }
        while activity_since.is_none() {
            let mut url = endpoint(&self.base, &format!("3.0/reports/{id}/sent-to"));
            url.query_pairs_mut()
                .append_pair("count", &PAGE.to_string())
                .append_pair("offset", &offset.to_string())
                .append_pair("fields", "sent_to.email_address,sent_to.status,total_items");
            let (page, _) = cx.http.get_json::<SentTo>(&url).await?;
            let n = page.sent_to.len() as u64;
            for r in page.sent_to {
                if r.status == "sent" {
                    eng.delivered(id, &r.email_address, sent);
                }
            }
            offset += n;
            if n == 0 || offset >= page.total_items {
                break;
            }
        }
        let mut offset = 0;
        loop {
            let mut url = endpoint(&self.base, &format!("3.0/reports/{id}/email-activity"));
            url.query_pairs_mut()
                .append_pair("count", &PAGE.to_string())
                .append_pair("offset", &offset.to_string());
            if let Some(from) = activity_since {
                url.query_pairs_mut().append_pair(
                    "since",
                    &from.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                );
            }
            let (page, _) = cx.http.get_json::<EmailActivity>(&url).await?;
            let n = page.emails.len() as u64;
            for e in page.emails {
                for a in e.activity.iter().filter(|a| a.action == "open") {
                    let at = api_time(&url, "activity.timestamp", &a.timestamp)?;
                    eng.opened(id, &e.email_address, at, false);
                }
            }
            offset += n;
            if n == 0 || offset >= page.total_items {
                break;
            }
        }
        Ok(())
    }
}

/// Mailchimp opens keep arriving for weeks after a campaign; each poll
/// rereads the activity of campaigns sent this many days back.
pub const DEFAULT_OPENS_WINDOW_DAYS: u32 = 30;

/// The `mailchimp` kind.
pub(crate) static KIND: Kind = Kind {
    name: "mailchimp",
    // Mailchimp limits concurrency (10), not rate.
    requests_per_minute: 120,
    keys: &["api_key_env", "machine_open_secs", "opens_window_days"],
    docs: Docs {
        keys: r#"`api_key_env`, `opens_window_days` (30), `machine_open_secs` (5)"#,
        reads: r#"per campaign sent since the last poll or within `opens_window_days`: `delivered` per recipient from `/3.0/reports/{id}/sent-to` (status `sent`; bounces are not deliveries) and `open` from `/3.0/reports/{id}/email-activity`; opens keep coming for weeks, so every campaign of the window is asked again each poll — a campaign an earlier poll read only for its activity `since` that poll (less an hour), its recipients not again"#,
        credentials: r#"an API key (the data centre is in `url`, e.g. `https://us10.api.mailchimp.com`) with read access to reports"#,
        rate: r#"120/min"#,
    },
    activities: super::email::ACTIVITIES,
    configure,
    fuzz,
};

#[derive(Debug)]
struct Settings {
    api_key_env: String,
    machine_open: Duration,
    opens_window_days: u32,
}

fn configure(k: &mut Keys<'_>) -> Option<Arc<dyn kind::Settings>> {
    let api_key_env = k.env("api_key_env");
    let machine_open = super::email::machine_open(k);
    let window = k.at_least("opens_window_days", 1, DEFAULT_OPENS_WINDOW_DAYS);
    if k.failed() {
        return None;
    }
    Some(Arc::new(Settings {
        api_key_env: api_key_env?,
        machine_open: machine_open?,
        opens_window_days: window?,
    }))
}

impl kind::Settings for Settings {
    fn env_vars(&self) -> Vec<&str> {
        vec![&self.api_key_env]
    }

    fn connect(&self, cx: &Connect<'_>) -> Result<Connection, SourceError> {
        Ok(Connection {
            auth: Auth::Basic {
                user: Secret::new("lull"),
                password: kind::secret(&self.api_key_env)?,
            },
            connector: Box::new(Mailchimp::new(
                cx.base.clone(),
                self.machine_open,
                self.opens_window_days,
            )),
        })
    }
}

/// Fuzz entry (fuzz/): every response type this connector decodes.
#[doc(hidden)]
pub fn fuzz(data: &[u8]) {
    let url = url::Url::parse("https://fuzz.example/api").unwrap_or_else(|_| unreachable!());
    let _ = super::http::decode::<Campaigns>(&url, data).map_err(|e| e.to_string());
    let _ = super::http::decode::<SentTo>(&url, data).map_err(|e| e.to_string());
}
