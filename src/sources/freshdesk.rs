//! `freshdesk`: tickets by requester (and, if `conversations`, the
//! customer's incoming public replies), paged by `updated_since`.
//!
//! `/api/v2/tickets?updated_since=&order_by=updated_at&order_type=asc`
//! pages through the `Link: <…>; rel="next"` header. Freshdesk stops at
//! page 300; the poll then continues from the last ticket's `updated_at`.
//! Like Zendesk, a ticket counts once, on the day it was created, if it
//! was created after lull started reading. Requesters map by e-mail, then
//! by their company's domains.
//!
//! `include=requester` costs an API credit per page; it is asked for only
//! on the first poll (a backfill meets many requesters at once). Later
//! polls look up the few requesters lull has not met (one credit each),
//! and the cursor remembers contacts and companies' domains.

use std::sync::Arc;

use super::http::Auth;
use super::kind::{self, Connect, Connection, Docs, Keys, Kind};
use crate::secret::Secret;
use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use reqwest::header::{HeaderMap, LINK};
use serde::{Deserialize, Serialize};
use url::Url;

use super::{
    Activity, Connector, Harvest, PollContext, PollFuture, SourceError, api_time, cursor_bytes,
    endpoint, follow, requester_identities,
};

/// Tickets a page (Freshdesk's maximum).
const PAGE: u32 = 100;
/// Freshdesk refuses pages beyond this.
const MAX_PAGE: u32 = 300;
/// Contacts remembered in the cursor (the most recently met are kept).
const MAX_REMEMBERED: usize = 20_000;

pub struct Freshdesk {
    base: Url,
    conversations: bool,
}

impl Freshdesk {
    pub fn new(base: Url, conversations: bool) -> Freshdesk {
        Freshdesk {
            base,
            conversations,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Cursor {
    origin: DateTime<Utc>,
    /// The newest `updated_at` read: the next poll asks from here.
    updated_since: DateTime<Utc>,
    covered_to: DateTime<Utc>,
    /// Requesters met: contact id → (e-mail, company id), and when.
    #[serde(default)]
    contacts: HashMap<u64, Remembered>,
    /// Companies' domains.
    #[serde(default)]
    companies: HashMap<u64, Vec<String>>,
}

#[derive(Serialize, Deserialize, Clone)]
struct Remembered {
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    company_id: Option<u64>,
    seen: DateTime<Utc>,
}

#[derive(Deserialize)]
struct Ticket {
    id: u64,
    created_at: String,
    updated_at: String,
    #[serde(default)]
    requester_id: Option<u64>,
    #[serde(default)]
    company_id: Option<u64>,
    /// Present with `include=requester`.
    #[serde(default)]
    requester: Option<Contact>,
    #[serde(default)]
    deleted: Option<bool>,
    #[serde(default)]
    spam: Option<bool>,
}

#[derive(Deserialize, Clone)]
struct Contact {
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    company_id: Option<u64>,
}

#[derive(Deserialize)]
struct Company {
    #[serde(default)]
    domains: Vec<String>,
}

/// A ticket or reply before its author is known.
struct Pending {
    id: String,
    kind: &'static str,
    at: DateTime<Utc>,
    /// The contact id, looked up when `known` has no address.
    user: Option<u64>,
    known: Option<Contact>,
    company: Option<u64>,
}

#[derive(Deserialize)]
struct Conversation {
    id: u64,
    /// True when the customer wrote it (not an agent).
    #[serde(default)]
    incoming: bool,
    #[serde(default)]
    private: bool,
    #[serde(default)]
    user_id: Option<u64>,
    #[serde(default)]
    from_email: Option<String>,
    created_at: String,
}

impl Connector for Freshdesk {
    fn poll<'a>(&'a self, cx: &'a PollContext<'a>) -> PollFuture<'a> {
        Box::pin(async move {
            let prev: Option<Cursor> = cx.cursor();
            let origin = prev.as_ref().map(|c| c.origin).unwrap_or(cx.backfill_start);
            let mut since = prev.as_ref().map(|c| c.updated_since).unwrap_or(origin);
            let mut tickets: Vec<Ticket> = Vec::new();
            let mut seen = HashSet::new();
            // The newest `updated_at` read: where the next poll asks from.
            let mut newest = since;
            'windows: loop {
                let mut page_no = 1;
                let mut url = self.tickets_url(since, page_no, prev.is_none());
                loop {
                    let (page, headers): (Vec<Ticket>, HeaderMap) = cx.http.get_json(&url).await?;
                    for t in page {
                        let updated = api_time(&url, "updated_at", &t.updated_at)?;
                        newest = newest.max(updated);
                        if seen.insert(t.id) {
                            tickets.push(t);
                        }
                    }
                    match next_link(&headers) {
                        Some(next) if page_no < MAX_PAGE => {
                            url = follow(&self.base, &next)?;
                            page_no += 1;
                        }
                        // Freshdesk's page limit: go on from the newest
                        // ticket read (it is read again; dedupe by id).
                        Some(_) if newest > since => {
                            since = newest;
                            continue 'windows;
                        }
                        _ => break 'windows,
                    }
                }
            }
            let remembered = prev
                .as_ref()
                .map(|c| c.contacts.clone())
                .unwrap_or_default();
            let mut contacts: HashMap<u64, Contact> = remembered
                .iter()
                .map(|(id, r)| {
                    (
                        *id,
                        Contact {
                            email: r.email.clone(),
                            company_id: r.company_id,
                        },
                    )
                })
                .collect();
            let mut met: HashMap<u64, Remembered> = remembered;
            let mut out = Harvest::default();
            let mut pending: Vec<Pending> = Vec::new();
            let url = endpoint(&self.base, "api/v2/tickets");
            for t in &tickets {
                if t.deleted == Some(true) || t.spam == Some(true) {
                    continue;
                }
                let created = api_time(&url, "created_at", &t.created_at)?;
                if created >= origin {
                    pending.push(Pending {
                        id: format!("ticket:{}", t.id),
                        kind: "ticket",
                        at: created,
                        user: t.requester_id,
                        known: t.requester.clone(),
                        company: t.company_id,
                    });
                    // An included requester is remembered like a looked-up one.
                    if let (Some(u), Some(c)) = (t.requester_id, &t.requester) {
                        contacts.entry(u).or_insert_with(|| c.clone());
                    }
                }
                if self.conversations {
                    for c in self.conversations(cx, t.id).await? {
                        let at = api_time(&url, "created_at", &c.created_at)?;
                        if !c.incoming || c.private || at < origin {
                            continue;
                        }
                        let from = c.from_email.as_deref().and_then(address).map(|e| Contact {
                            email: Some(e),
                            company_id: None,
                        });
                        pending.push(Pending {
                            id: format!("conversation:{}", c.id),
                            kind: "conversation",
                            at,
                            user: c.user_id,
                            known: from,
                            company: t.company_id,
                        });
                    }
                }
            }
            let mut companies: HashMap<u64, Vec<String>> = prev
                .as_ref()
                .map(|c| c.companies.clone())
                .unwrap_or_default();
            for Pending {
                id,
                kind,
                at,
                user,
                known,
                company,
            } in pending
            {
                let contact = match (known, user) {
                    (Some(c), _) if c.email.is_some() => Some(c),
                    (_, Some(u)) => Some(self.contact(cx, u, &mut contacts).await?),
                    _ => None,
                };
                if let (Some(u), Some(c)) = (user, &contact) {
                    met.insert(
                        u,
                        Remembered {
                            email: c.email.clone(),
                            company_id: c.company_id,
                            seen: cx.now,
                        },
                    );
                }
                let company = company.or_else(|| contact.as_ref().and_then(|c| c.company_id));
                if let Some(cid) = company
                    && let Entry::Vacant(slot) = companies.entry(cid)
                {
                    let url = endpoint(&self.base, &format!("api/v2/companies/{cid}"));
                    let (c, _) = cx.http.get_json::<Company>(&url).await?;
                    slot.insert(c.domains);
                }
                let actors = requester_identities(
                    contact.as_ref().and_then(|c| c.email.as_deref()),
                    company
                        .and_then(|c| companies.get(&c))
                        .into_iter()
                        .flatten(),
                    user.map(|u| format!("freshdesk contact {u}")),
                );
                out.activities.push(Activity {
                    id,
                    kind,
                    at,
                    actors,
                    once: false,
                });
            }
            out.covered = Some((
                prev.as_ref().map(|c| c.covered_to).unwrap_or(origin),
                cx.now,
            ));
            if met.len() > MAX_REMEMBERED {
                let mut by_age: Vec<(u64, DateTime<Utc>)> =
                    met.iter().map(|(id, r)| (*id, r.seen)).collect();
                by_age.sort_by_key(|(_, seen)| std::cmp::Reverse(*seen));
                for (id, _) in by_age.into_iter().skip(MAX_REMEMBERED) {
                    met.remove(&id);
                }
            }
            out.cursor = cursor_bytes(&Cursor {
                origin,
                updated_since: newest,
                covered_to: cx.now,
                contacts: met,
                companies,
            });
            Ok(out)
        })
    }
}

impl Freshdesk {
    fn tickets_url(&self, since: DateTime<Utc>, page: u32, include_requester: bool) -> Url {
        let mut url = endpoint(&self.base, "api/v2/tickets");
        url.query_pairs_mut()
            .append_pair(
                "updated_since",
                &since.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            )
            .append_pair("order_by", "updated_at")
            .append_pair("order_type", "asc");
        if include_requester {
            url.query_pairs_mut().append_pair("include", "requester");
        }
        url.query_pairs_mut()
            .append_pair("per_page", &PAGE.to_string())
            .append_pair("page", &page.to_string());
        url
    }

    async fn conversations(
        &self,
        cx: &PollContext<'_>,
        ticket: u64,
    ) -> Result<Vec<Conversation>, SourceError> {
        let mut url = endpoint(
            &self.base,
            &format!("api/v2/tickets/{ticket}/conversations"),
        );
        url.query_pairs_mut()
            .append_pair("per_page", &PAGE.to_string());
        let mut out = Vec::new();
        for _ in 0..MAX_PAGE {
            let (page, headers): (Vec<Conversation>, HeaderMap) = cx.http.get_json(&url).await?;
            out.extend(page);
            match next_link(&headers) {
                Some(next) => url = follow(&self.base, &next)?,
                None => break,
            }
        }
        Ok(out)
    }

    async fn contact(
        &self,
        cx: &PollContext<'_>,
        id: u64,
        cache: &mut HashMap<u64, Contact>,
    ) -> Result<Contact, SourceError> {
        if let Some(c) = cache.get(&id) {
            return Ok(c.clone());
        }
        let url = endpoint(&self.base, &format!("api/v2/contacts/{id}"));
        let (c, _) = cx.http.get_json::<Contact>(&url).await?;
        cache.insert(id, c.clone());
        Ok(c)
    }
}

/// The `rel="next"` target of a `Link` header.
fn next_link(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(LINK)?.to_str().ok()?;
    v.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        params
            .split(';')
            .any(|p| {
                p.trim().trim_start_matches("rel=").trim_matches('"') == "next" && p.contains("rel")
            })
            .then(|| {
                target
                    .trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_string()
            })
    })
}

/// The address in `Rachel <rachel@freshdesk.com>` (or a bare address).
fn address(from: &str) -> Option<String> {
    let s = match (from.rfind('<'), from.rfind('>')) {
        (Some(a), Some(b)) if a < b => &from[a + 1..b],
        _ => from,
    };
    let s = s.trim();
    s.contains('@').then(|| s.to_string())
}

/// The `freshdesk` kind.
pub(crate) static KIND: Kind = Kind {
    name: "freshdesk",
    // The smallest Freshdesk plan allows 50/min for the account.
    requests_per_minute: 40,
    keys: &["api_key_env", "conversations"],
    docs: Docs {
        keys: r#"`api_key_env`, `conversations` (false)"#,
        reads: r#"tickets (kind `ticket`) from `/api/v2/tickets?updated_since=…` (with `include=requester`, an extra credit a page, on the first poll only), following `Link: rel="next"` (and past Freshdesk's 300-page limit by moving `updated_since` on), once by id, on the day created; with `conversations = true`, the customer's incoming public replies (kind `conversation`), one request per updated ticket. Requester → e-mail (`/api/v2/contacts/{id}` when not included, once: the cursor remembers the 20,000 most recent requesters and every company), then the company's `domains`"#,
        credentials: r#"the API key of an agent who can see the tickets (basic auth, key as user)"#,
        rate: r#"40/min (the smallest plan allows 50)"#,
    },
    activities: &[
        ("ticket", "support tickets"),
        ("conversation", "ticket replies"),
    ],
    configure,
    fuzz,
};

#[derive(Debug)]
struct Settings {
    api_key_env: String,
    conversations: bool,
}

fn configure(k: &mut Keys<'_>) -> Option<Arc<dyn kind::Settings>> {
    let api_key_env = k.env("api_key_env");
    let conversations = k.bool("conversations").unwrap_or(false);
    if k.failed() {
        return None;
    }
    Some(Arc::new(Settings {
        api_key_env: api_key_env?,
        conversations,
    }))
}

impl kind::Settings for Settings {
    fn env_vars(&self) -> Vec<&str> {
        vec![&self.api_key_env]
    }

    fn connect(&self, cx: &Connect<'_>) -> Result<Connection, SourceError> {
        Ok(Connection {
            auth: Auth::Basic {
                user: kind::secret(&self.api_key_env)?,
                password: Secret::new("X"),
            },
            connector: Box::new(Freshdesk::new(cx.base.clone(), self.conversations)),
        })
    }
}

/// Fuzz entry (fuzz/): every response type this connector decodes.
#[doc(hidden)]
pub fn fuzz(data: &[u8]) {
    let url = url::Url::parse("https://fuzz.example/api").unwrap_or_else(|_| unreachable!());
    let _ = super::http::decode::<Vec<Ticket>>(&url, data).map_err(|e| e.to_string());
    let _ = super::http::decode::<Vec<Contact>>(&url, data).map_err(|e| e.to_string());
    let _ = super::http::decode::<Company>(&url, data).map_err(|e| e.to_string());
    let _ = super::http::decode::<Vec<Conversation>>(&url, data).map_err(|e| e.to_string());
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn link_header_and_from_address_parse() {
        let mut h = HeaderMap::new();
        h.insert(
            LINK,
            HeaderValue::from_static(
                "<https://x.freshdesk.com/api/v2/tickets?page=2&per_page=100>; rel=\"next\"",
            ),
        );
        assert_eq!(
            next_link(&h).as_deref(),
            Some("https://x.freshdesk.com/api/v2/tickets?page=2&per_page=100")
        );
        assert_eq!(
            address("Rachel <rachel@freshdesk.com>").as_deref(),
            Some("rachel@freshdesk.com")
        );
        assert_eq!(address("bob@acme.com").as_deref(), Some("bob@acme.com"));
        assert_eq!(address("nobody"), None);
    }
}
