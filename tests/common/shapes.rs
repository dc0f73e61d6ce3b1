//! Service-shaped responses for a local wiremock server, field for field
//! after the services' public API documentation. Shared by the tests and
//! the poll benchmark.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use wiremock::{Request, Respond, ResponseTemplate};

/// A stable user id for a user name.
pub fn user_id(username: &str) -> u64 {
    username.bytes().fold(1469598103934665603u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(1099511628211)
    }) % 1_000_000
        + 2
}

/// One post as Discourse's `/posts.json` lists it (`latest_posts[]`).
pub fn discourse_post(
    id: u64,
    username: &str,
    created_at: &str,
    topic_id: u64,
    staff: bool,
) -> Value {
    json!({
        "id": id,
        "name": username,
        "username": username,
        "avatar_template": format!("/user_avatar/forum.example/{username}/{{size}}/3_2.png"),
        "created_at": created_at,
        "cooked": format!("<p>post {id}</p>"),
        "post_number": (id % 500) + 1,
        "post_type": 1,
        "posts_count": 12,
        "updated_at": created_at,
        "reply_count": 0,
        "reply_to_post_number": null,
        "quote_count": 0,
        "incoming_link_count": 0,
        "reads": 3,
        "readers_count": 2,
        "score": 0.6,
        "yours": false,
        "topic_id": topic_id,
        "topic_slug": format!("topic-{topic_id}"),
        "topic_title": format!("Topic {topic_id}"),
        "topic_html_title": format!("Topic {topic_id}"),
        "category_id": 4,
        "display_username": username,
        "primary_group_name": null,
        "flair_name": null,
        "flair_url": null,
        "flair_bg_color": null,
        "flair_color": null,
        "flair_group_id": null,
        "badges_granted": [],
        "version": 1,
        "can_edit": false,
        "can_delete": false,
        "can_recover": false,
        "can_see_hidden_post": false,
        "can_wiki": false,
        "user_title": null,
        "bookmarked": false,
        "raw": format!("post {id}"),
        "actions_summary": [],
        "moderator": staff,
        "admin": staff,
        "staff": staff,
        // One id per user, as Discourse has it (lull follows renames by it).
        "user_id": user_id(username),
        "hidden": false,
        "trust_level": 1,
        "deleted_at": null,
        "user_deleted": false,
        "edit_reason": null,
        "can_view_edit_history": true,
        "wiki": false,
        "excerpt": format!("post {id}"),
        "truncated": false,
        "reviewable_id": null,
        "reviewable_score_count": 0,
        "reviewable_score_pending_count": 0,
        "post_url": format!("/t/topic-{topic_id}/{topic_id}/{}", (id % 500) + 1)
    })
}

/// A Discourse forum: `/posts.json` newest first, 50 a page, `before=`.
#[derive(Clone, Default)]
pub struct Forum {
    /// Posts in id order.
    pub posts: Arc<Mutex<Vec<Value>>>,
    pub requests: Arc<AtomicU64>,
    /// Discourse before mid-2024: `before=ID` lists only the posts whose
    /// ids are among the 50 below ID (an empty page where none is visible).
    pub windowed: Arc<std::sync::atomic::AtomicBool>,
}

/// Discourse's page size for `/posts.json`.
pub const DISCOURSE_PAGE: usize = 50;

impl Forum {
    pub fn add(&self, post: Value) {
        self.posts.lock().unwrap().push(post);
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    /// The body for `before` (None: the newest page).
    pub fn page(&self, before: Option<u64>) -> Vec<u8> {
        let posts = self.posts.lock().unwrap();
        let end = match before {
            None => posts.len(),
            Some(b) => posts.partition_point(|p| p["id"].as_u64().unwrap_or(0) < b),
        };
        let mut start = end.saturating_sub(DISCOURSE_PAGE);
        if let (Some(b), true) = (before, self.windowed.load(Ordering::SeqCst)) {
            let low = b.saturating_sub(DISCOURSE_PAGE as u64);
            start = posts.partition_point(|p| p["id"].as_u64().unwrap_or(0) < low);
        }
        let page: Vec<&Value> = posts[start..end].iter().rev().collect();
        serde_json::to_vec(&json!({ "latest_posts": page })).unwrap()
    }
}

impl Respond for Forum {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        self.requests.fetch_add(1, Ordering::SeqCst);
        let before = req
            .url
            .query_pairs()
            .find(|(k, _)| k == "before")
            .and_then(|(_, v)| v.parse().ok());
        ResponseTemplate::new(200)
            .insert_header("content-type", "application/json; charset=utf-8")
            .set_body_bytes(self.page(before))
    }
}

/// A Zendesk ticket as the incremental export lists it.
pub fn zendesk_ticket(
    id: u64,
    created_at: &str,
    requester_id: u64,
    organization_id: Option<u64>,
) -> Value {
    json!({
        "url": format!("https://example.zendesk.com/api/v2/tickets/{id}.json"),
        "id": id,
        "external_id": null,
        "via": { "channel": "email", "source": { "from": {}, "to": {}, "rel": null } },
        "created_at": created_at,
        "updated_at": created_at,
        "generated_timestamp": 1_700_000_000 + id,
        "type": "question",
        "subject": format!("Ticket {id}"),
        "raw_subject": format!("Ticket {id}"),
        "description": "Help!",
        "priority": "normal",
        "status": "open",
        "recipient": null,
        "requester_id": requester_id,
        "submitter_id": requester_id,
        "assignee_id": 900,
        "organization_id": organization_id,
        "group_id": 20,
        "collaborator_ids": [],
        "follower_ids": [],
        "email_cc_ids": [],
        "forum_topic_id": null,
        "problem_id": null,
        "has_incidents": false,
        "is_public": true,
        "due_at": null,
        "tags": [],
        "custom_fields": [],
        "satisfaction_rating": null,
        "sharing_agreement_ids": [],
        "custom_status_id": 1,
        "fields": [],
        "followup_ids": [],
        "ticket_form_id": 1,
        "brand_id": 1,
        "allow_channelback": false,
        "allow_attachments": true,
        "from_messaging_channel": false
    })
}

/// A Zendesk user (sideloaded or from `show_many`).
pub fn zendesk_user(id: u64, email: &str, role: &str, organization_id: Option<u64>) -> Value {
    json!({
        "id": id,
        "url": format!("https://example.zendesk.com/api/v2/users/{id}.json"),
        "name": email.split('@').next().unwrap_or("user"),
        "email": email,
        "created_at": "2020-01-01T00:00:00Z",
        "updated_at": "2020-01-01T00:00:00Z",
        "time_zone": "UTC",
        "iana_time_zone": "Etc/UTC",
        "phone": null,
        "locale": "en-US",
        "locale_id": 1,
        "organization_id": organization_id,
        "role": role,
        "verified": true,
        "active": true,
        "suspended": false
    })
}

/// A Mailgun `opened` event (events API item).
pub fn mailgun_opened(message_id: &str, recipient: &str, timestamp: f64, bot: &str) -> Value {
    json!({
        "id": format!("op-{timestamp}"),
        "event": "opened",
        "timestamp": timestamp,
        "log-level": "info",
        "recipient": recipient,
        "recipient-domain": recipient.split('@').nth(1).unwrap_or(""),
        "ip": "50.56.129.169",
        "geolocation": { "country": "US", "region": "CA", "city": "San Francisco" },
        "client-info": {
            "client-type": "browser",
            "client-os": "Linux",
            "device-type": "desktop",
            "client-name": "Chrome",
            "user-agent": "Mozilla/5.0 (X11; Linux x86_64)",
            "bot": bot
        },
        "tags": [],
        "campaigns": [],
        "user-variables": {},
        "message": { "headers": { "message-id": message_id } }
    })
}

/// A Mailgun `delivered` event.
pub fn mailgun_delivered(message_id: &str, recipient: &str, timestamp: f64) -> Value {
    json!({
        "id": format!("dl-{timestamp}"),
        "event": "delivered",
        "timestamp": timestamp,
        "log-level": "info",
        "recipient": recipient,
        "recipient-domain": recipient.split('@').nth(1).unwrap_or(""),
        "envelope": { "transport": "smtp", "sender": "news@mg.vendor.example", "targets": recipient },
        "flags": { "is-routed": false, "is-authenticated": true, "is-system-test": false, "is-test-mode": false },
        "delivery-status": { "tls": true, "code": 250, "message": "OK", "attempt-no": 1, "description": "" },
        "tags": [],
        "campaigns": [],
        "user-variables": {},
        "message": { "headers": { "to": recipient, "message-id": message_id, "from": "news@mg.vendor.example", "subject": "News" }, "attachments": [], "size": 328 }
    })
}

/// Answers `/posts.json` forever, after the given delay: every page holds
/// 50 posts older (by id) than the last, all of them fresh — a service
/// that pages forever.
#[derive(Clone)]
pub struct Endless(pub std::time::Duration);

impl Respond for Endless {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let before: u64 = req
            .url
            .query_pairs()
            .find(|(k, _)| k == "before")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(u64::MAX / 2);
        let now = chrono::Utc::now().to_rfc3339();
        let posts: Vec<Value> = (1..=50)
            .map(|i| discourse_post(before - i, "user_b0", &now, 1, false))
            .collect();
        ResponseTemplate::new(200)
            .set_body_json(json!({ "latest_posts": posts }))
            .set_delay(self.0)
    }
}

/// gzip of `n` zero bytes: tiny on the wire, `n` bytes once decompressed.
pub fn gzip_bomb(n: usize) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..n >> 20 {
        e.write_all(&zeros).expect("gzip");
    }
    e.finish().expect("gzip")
}
