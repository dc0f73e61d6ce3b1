//! `zendesk`: tickets from the cursor-based incremental ticket export, and
//! public end-user comments from the ticket-event export if `comments`.
//!
//! `/api/v2/incremental/tickets/cursor.json?start_time=` on the first
//! poll, `?cursor=` after; pages until `end_of_stream`, and the last
//! `after_cursor` is where the next poll resumes. The export lists every
//! ticket *updated* since, so a ticket shows up again on each change: it
//! counts once (by id), on the day it was created, and only if it was
//! created after lull started reading. Requesters map to accounts by
//! e-mail address, then by their organisation's domains.

use std::sync::Arc;

use super::http::Auth;
use super::kind::{self, Connect, Connection, Docs, Keys, Kind};
use crate::secret::Secret;
use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use url::Url;

use super::{
    Activity, Connector, Harvest, PollContext, PollFuture, SourceError, api_time, cursor_bytes,
    endpoint, follow, requester_identities,
};

/// Zendesk's `show_many` takes up to 100 ids.
const SHOW_MANY: usize = 100;
/// A bound on export pages per poll (1,000 tickets each).
const MAX_PAGES: u32 = 10_000;

pub struct Zendesk {
    base: Url,
    comments: bool,
}

impl Zendesk {
    pub fn new(base: Url, comments: bool) -> Zendesk {
        Zendesk { base, comments }
    }
}

#[derive(Serialize, Deserialize)]
struct Cursor {
    /// When lull started reading: older tickets are history it never saw
    /// being created, and are not counted when they change.
    origin: DateTime<Utc>,
    after_cursor: Option<String>,
    /// The ticket-event export is time-based: where it resumes.
    events_start: i64,
    covered_to: DateTime<Utc>,
}

#[derive(Deserialize)]
struct TicketPage {
    tickets: Vec<Ticket>,
    #[serde(default)]
    users: Vec<User>,
    #[serde(default)]
    after_cursor: Option<String>,
    #[serde(default)]
    after_url: Option<String>,
    end_of_stream: bool,
}

#[derive(Deserialize)]
struct Ticket {
    id: u64,
    created_at: String,
    #[serde(default)]
    requester_id: Option<u64>,
    #[serde(default)]
    organization_id: Option<u64>,
    #[serde(default)]
    status: Option<String>,
}

#[derive(Deserialize, Clone)]
struct User {
    id: u64,
    #[serde(default)]
    email: Option<String>,
    /// `end-user`, `agent` or `admin`.
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    organization_id: Option<u64>,
}

#[derive(Deserialize)]
struct Users {
    users: Vec<User>,
}

#[derive(Deserialize)]
struct Organizations {
    organizations: Vec<Organization>,
}

#[derive(Deserialize)]
struct Organization {
    id: u64,
    #[serde(default)]
    domain_names: Vec<String>,
}

#[derive(Deserialize)]
struct EventPage {
    ticket_events: Vec<TicketEvent>,
    #[serde(default)]
    next_page: Option<String>,
    #[serde(default)]
    end_time: Option<i64>,
    end_of_stream: bool,
}

#[derive(Deserialize)]
struct TicketEvent {
    #[serde(default)]
    event_type: Option<String>,
    created_at: String,
    #[serde(default)]
    child_events: Vec<ChildEvent>,
}

#[derive(Deserialize)]
struct ChildEvent {
    id: u64,
    #[serde(default)]
    event_type: Option<String>,
    #[serde(default)]
    author_id: Option<u64>,
    #[serde(default)]
    public: Option<bool>,
}

/// A ticket or comment before its author is known.
struct Pending {
    id: String,
    kind: &'static str,
    at: DateTime<Utc>,
    user: Option<u64>,
    org: Option<u64>,
}

impl Connector for Zendesk {
    fn poll<'a>(&'a self, cx: &'a PollContext<'a>) -> PollFuture<'a> {
        Box::pin(async move {
            let prev: Option<Cursor> = cx.cursor();
            let origin = prev.as_ref().map(|c| c.origin).unwrap_or(cx.backfill_start);
            let mut users: HashMap<u64, User> = HashMap::new();
            let mut pending: Vec<Pending> = Vec::new();
            let mut seen: HashSet<u64> = HashSet::new();

            let mut url = endpoint(&self.base, "api/v2/incremental/tickets/cursor.json");
            match prev.as_ref().and_then(|c| c.after_cursor.as_deref()) {
                Some(c) => url.query_pairs_mut().append_pair("cursor", c),
                None => url
                    .query_pairs_mut()
                    .append_pair("start_time", &origin.timestamp().to_string()),
            };
            url.query_pairs_mut().append_pair("include", "users");
            let mut after_cursor = prev.as_ref().and_then(|c| c.after_cursor.clone());
            for _ in 0..MAX_PAGES {
                let (page, _) = cx.http.get_json::<TicketPage>(&url).await?;
                for u in page.users {
                    users.insert(u.id, u);
                }
                for t in page.tickets {
                    // Exports repeat a ticket across pages: once is enough.
                    if !seen.insert(t.id) || t.status.as_deref() == Some("deleted") {
                        continue;
                    }
                    let at = api_time(&url, "created_at", &t.created_at)?;
                    if at < origin {
                        continue;
                    }
                    pending.push(Pending {
                        id: format!("ticket:{}", t.id),
                        kind: "ticket",
                        at,
                        user: t.requester_id,
                        org: t.organization_id,
                    });
                }
                if page.after_cursor.is_some() {
                    after_cursor = page.after_cursor;
                }
                match (page.end_of_stream, page.after_url) {
                    (false, Some(next)) => url = follow(&self.base, &next)?,
                    _ => break,
                }
            }

            let mut events_start = prev
                .as_ref()
                .map(|c| c.events_start)
                .unwrap_or(origin.timestamp());
            if self.comments {
                events_start = self
                    .comments(cx, events_start, origin, &mut pending)
                    .await?;
            }

            // Who are they? Sideloaded users first; the rest in batches.
            let missing: Vec<u64> = pending
                .iter()
                .filter_map(|p| p.user)
                .filter(|u| !users.contains_key(u))
                .collect::<HashSet<_>>()
                .into_iter()
                .collect();
            for chunk in missing.chunks(SHOW_MANY) {
                let mut url = endpoint(&self.base, "api/v2/users/show_many.json");
                url.query_pairs_mut().append_pair("ids", &join(chunk));
                let (page, _) = cx.http.get_json::<Users>(&url).await?;
                for u in page.users {
                    users.insert(u.id, u);
                }
            }
            let orgs: Vec<u64> = pending
                .iter()
                .filter_map(|p| {
                    p.org
                        .or_else(|| p.user.and_then(|u| users.get(&u)?.organization_id))
                })
                .collect::<HashSet<_>>()
                .into_iter()
                .collect();
            let mut domains: HashMap<u64, Vec<String>> = HashMap::new();
            for chunk in orgs.chunks(SHOW_MANY) {
                let mut url = endpoint(&self.base, "api/v2/organizations/show_many.json");
                url.query_pairs_mut().append_pair("ids", &join(chunk));
                let (page, _) = cx.http.get_json::<Organizations>(&url).await?;
                for o in page.organizations {
                    domains.insert(o.id, o.domain_names);
                }
            }

            let mut out = Harvest::default();
            for p in pending {
                let user = p.user.and_then(|u| users.get(&u));
                if user
                    .and_then(|u| u.role.as_deref())
                    .is_some_and(|r| r != "end-user")
                {
                    out.staff += 1;
                    continue;
                }
                let org = p.org.or_else(|| user.and_then(|u| u.organization_id));
                let actors = requester_identities(
                    user.and_then(|u| u.email.as_deref()),
                    org.and_then(|o| domains.get(&o)).into_iter().flatten(),
                    p.user.map(|u| format!("zendesk user {u}")),
                );
                out.activities.push(Activity {
                    id: p.id,
                    kind: p.kind,
                    at: p.at,
                    actors,
                    once: false,
                });
            }
            out.covered = Some((
                prev.as_ref().map(|c| c.covered_to).unwrap_or(origin),
                cx.now,
            ));
            out.cursor = cursor_bytes(&Cursor {
                origin,
                after_cursor,
                events_start,
                covered_to: cx.now,
            });
            Ok(out)
        })
    }
}

impl Zendesk {
    /// Public comments by end users from the ticket-event export (time
    /// based: it repeats events at page edges, deduplicated by id).
    /// Returns where the next poll resumes.
    async fn comments(
        &self,
        cx: &PollContext<'_>,
        start: i64,
        origin: DateTime<Utc>,
        pending: &mut Vec<Pending>,
    ) -> Result<i64, SourceError> {
        let mut url = endpoint(&self.base, "api/v2/incremental/ticket_events.json");
        url.query_pairs_mut()
            .append_pair("start_time", &start.to_string())
            .append_pair("include", "comment_events");
        let mut seen = HashSet::new();
        let mut resume = start;
        for _ in 0..MAX_PAGES {
            let (page, _) = cx.http.get_json::<EventPage>(&url).await?;
            for e in page.ticket_events {
                // The comment of a "Create" event is the ticket itself.
                if e.event_type.as_deref() == Some("Create") {
                    continue;
                }
                let at = api_time(&url, "created_at", &e.created_at)?;
                if at < origin {
                    continue;
                }
                for c in e.child_events {
                    if c.event_type.as_deref() != Some("Comment")
                        || c.public == Some(false)
                        || !seen.insert(c.id)
                    {
                        continue;
                    }
                    pending.push(Pending {
                        id: format!("comment:{}", c.id),
                        kind: "comment",
                        at,
                        user: c.author_id,
                        org: None,
                    });
                }
            }
            if let Some(t) = page.end_time {
                resume = resume.max(t);
            }
            match (page.end_of_stream, page.next_page) {
                (false, Some(next)) => url = follow(&self.base, &next)?,
                _ => break,
            }
        }
        Ok(resume)
    }
}

fn join(ids: &[u64]) -> String {
    ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}

/// The `zendesk` kind.
pub(crate) static KIND: Kind = Kind {
    name: "zendesk",
    // Incremental exports: 10/min (the other endpoints allow more, but one
    // limiter for the source keeps it simple and safe).
    requests_per_minute: 10,
    keys: &["email", "token_env", "comments"],
    docs: Docs {
        keys: r#"`email`, `token_env`, `comments` (false)"#,
        reads: r#"tickets (kind `ticket`) from the cursor-based incremental export (`/api/v2/incremental/tickets/cursor.json`, sideloading users), counted once by id on the day they were **created**, if created after lull started reading; with `comments = true`, public comments by end users (kind `comment`) from the ticket-event export (not the one that opens a ticket). Requester/author → e-mail, then the organisation's `domain_names`; tickets requested by agents or admins are staff"#,
        credentials: r#"an API token (`email/token` basic auth) of an agent who can see the tickets; admin for the incremental exports"#,
        rate: r#"10/min (the export endpoints' limit)"#,
    },
    activities: &[
        ("ticket", "support tickets"),
        ("comment", "ticket comments"),
    ],
    configure,
    fuzz,
};

#[derive(Debug)]
struct Settings {
    email: String,
    token_env: String,
    comments: bool,
}

fn configure(k: &mut Keys<'_>) -> Option<Arc<dyn kind::Settings>> {
    let token_env = k.env("token_env");
    let email = k.required("email", "the agent the API token belongs to");
    if let Some(e) = &email
        && !crate::accounts::is_plausible_email(e)
    {
        k.problem(
            "email",
            "`email` is the Zendesk agent's e-mail address the API token belongs to",
        );
    }
    let comments = k.bool("comments").unwrap_or(false);
    if k.failed() {
        return None;
    }
    Some(Arc::new(Settings {
        email: email?,
        token_env: token_env?,
        comments,
    }))
}

impl kind::Settings for Settings {
    fn env_vars(&self) -> Vec<&str> {
        vec![&self.token_env]
    }

    fn connect(&self, cx: &Connect<'_>) -> Result<Connection, SourceError> {
        Ok(Connection {
            auth: Auth::Basic {
                user: Secret::new(format!("{}/token", self.email)),
                password: kind::secret(&self.token_env)?,
            },
            connector: Box::new(Zendesk::new(cx.base.clone(), self.comments)),
        })
    }
}

/// Fuzz entry (fuzz/): every response type this connector decodes.
#[doc(hidden)]
pub fn fuzz(data: &[u8]) {
    let url = url::Url::parse("https://fuzz.example/api").unwrap_or_else(|_| unreachable!());
    let _ = super::http::decode::<TicketPage>(&url, data).map_err(|e| e.to_string());
    let _ = super::http::decode::<Users>(&url, data).map_err(|e| e.to_string());
    let _ = super::http::decode::<Organizations>(&url, data).map_err(|e| e.to_string());
    let _ = super::http::decode::<EventPage>(&url, data).map_err(|e| e.to_string());
}
