//! `discourse`: new posts from the site-wide latest-posts stream.
//!
//! `/posts.json` lists the newest posts of the whole forum, 50 a page, and
//! `?before=ID` pages backwards. A poll reads from the newest post down to
//! the last post id the previous poll saw: about one request per 50 new
//! posts, however long the topics they landed in. Topics are never
//! downloaded. With an admin key, posters' e-mail addresses are looked up
//! (once per user; remembered in the cursor) so they map to accounts by
//! domain.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use url::Url;

use super::{
    Activity, Connector, Harvest, PollContext, PollFuture, SourceError, api_time, cursor_bytes,
    endpoint,
};

/// Admin user-list pages read at most per poll while looking for the
/// e-mail addresses of new posters (100 users a page).
const MAX_USER_PAGES: u32 = 50;

pub struct Discourse {
    base: Url,
    user_emails: bool,
}

impl Discourse {
    pub fn new(base: Url, user_emails: bool) -> Discourse {
        Discourse { base, user_emails }
    }
}

#[derive(Serialize, Deserialize, Default)]
struct Cursor {
    /// The highest post id stored: the next poll stops there.
    last_post_id: u64,
    covered_to: Option<DateTime<Utc>>,
    /// user name → e-mail address (None: looked up, the forum has none).
    #[serde(default)]
    emails: BTreeMap<String, Option<String>>,
}

#[derive(Deserialize)]
struct LatestPosts {
    latest_posts: Vec<Post>,
}

#[derive(Deserialize)]
struct Post {
    id: u64,
    username: String,
    created_at: String,
    /// 1 regular, 2 moderator action, 3 small action, 4 whisper.
    #[serde(default = "regular")]
    post_type: u8,
    #[serde(default)]
    staff: bool,
    #[serde(default)]
    admin: bool,
    #[serde(default)]
    moderator: bool,
    #[serde(default)]
    deleted_at: Option<String>,
}

fn regular() -> u8 {
    1
}

#[derive(Deserialize)]
struct AdminUser {
    username: String,
    #[serde(default)]
    email: Option<String>,
}

impl Connector for Discourse {
    fn poll<'a>(&'a self, cx: &'a PollContext<'a>) -> PollFuture<'a> {
        Box::pin(async move {
            let prev: Cursor = cx.cursor().unwrap_or_default();
            let first_poll = prev.covered_to.is_none();
            let mut out = Harvest::default();
            let mut posts: Vec<(Post, DateTime<Utc>)> = Vec::new();
            let mut before: Option<u64> = None;
            let mut max_id = prev.last_post_id;
            loop {
                let mut url = endpoint(&self.base, "posts.json");
                if let Some(b) = before {
                    url.query_pairs_mut().append_pair("before", &b.to_string());
                }
                let (page, _) = cx.http.get_json::<LatestPosts>(&url).await?;
                if page.latest_posts.is_empty() {
                    break;
                }
                let mut done = false;
                let mut min_id = u64::MAX;
                for p in page.latest_posts {
                    min_id = min_id.min(p.id);
                    max_id = max_id.max(p.id);
                    let at = api_time(&url, "created_at", &p.created_at)?;
                    if p.id <= prev.last_post_id || (first_poll && at < cx.backfill_start) {
                        done = true;
                        continue;
                    }
                    posts.push((p, at));
                }
                // `before` must fall, or a misbehaving server loops us.
                if done || before.is_some_and(|b| min_id >= b) {
                    break;
                }
                before = Some(min_id);
            }
            let mut emails = prev.emails;
            if self.user_emails {
                let wanted: BTreeSet<&str> = posts
                    .iter()
                    .map(|(p, _)| p.username.as_str())
                    .filter(|u| !emails.contains_key(*u))
                    .collect();
                if !wanted.is_empty() {
                    look_up_emails(self, cx, wanted, &mut emails).await?;
                }
            }
            for (p, at) in posts {
                if p.post_type != 1 || p.deleted_at.is_some() {
                    continue;
                }
                if p.staff || p.admin || p.moderator {
                    out.staff += 1;
                    continue;
                }
                let mut actors = vec![p.username.clone()];
                if let Some(Some(e)) = emails.get(&p.username) {
                    actors.push(e.clone());
                }
                out.activities.push(Activity {
                    id: p.id.to_string(),
                    kind: "post",
                    at,
                    actors,
                    once: false,
                });
            }
            out.covered = Some((prev.covered_to.unwrap_or(cx.backfill_start), cx.now));
            out.cursor = cursor_bytes(&Cursor {
                last_post_id: max_id,
                covered_to: Some(cx.now),
                emails,
            });
            Ok(out)
        })
    }
}

/// Pages through the admin user list (most recently seen first, so new
/// posters come early) until every wanted user name is found.
async fn look_up_emails(
    d: &Discourse,
    cx: &PollContext<'_>,
    mut wanted: BTreeSet<&str>,
    emails: &mut BTreeMap<String, Option<String>>,
) -> Result<(), SourceError> {
    for page in 1..=MAX_USER_PAGES {
        let mut url = endpoint(&d.base, "admin/users/list/active.json");
        url.query_pairs_mut()
            .append_pair("show_emails", "true")
            .append_pair("page", &page.to_string());
        let (users, _) = cx.http.get_json::<Vec<AdminUser>>(&url).await?;
        if users.is_empty() {
            break;
        }
        for u in users {
            wanted.remove(u.username.as_str());
            emails.insert(u.username, u.email);
        }
        if wanted.is_empty() {
            break;
        }
    }
    // Users the list does not show (suspended, anonymised) are not asked
    // for again on every poll.
    for u in wanted {
        emails.entry(u.to_string()).or_insert(None);
    }
    Ok(())
}

/// Fuzz entry (fuzz/): every response type this connector decodes.
#[doc(hidden)]
pub fn fuzz(data: &[u8]) {
    let url = url::Url::parse("https://fuzz.example/api").unwrap_or_else(|_| unreachable!());
    let _ = super::http::decode::<LatestPosts>(&url, data).map_err(|e| e.to_string());
    let _ = super::http::decode::<Vec<AdminUser>>(&url, data).map_err(|e| e.to_string());
}
