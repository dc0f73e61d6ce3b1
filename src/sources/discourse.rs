//! `discourse`: new posts from the site-wide latest-posts stream.
//!
//! `/posts.json` lists the newest posts of the whole forum, 50 a page, and
//! `?before=ID` pages backwards. A poll reads from the newest post down to
//! the last post id the previous poll saw: about one request per 50 new
//! posts, however long the topics they landed in. Topics are never
//! downloaded. With an admin key, posters' e-mail addresses are looked up
//! (once per user; remembered in the cursor) so they map to accounts by
//! domain.

use std::sync::Arc;

use reqwest::header::HeaderName;

use super::http::Auth;
use super::kind::{self, Connect, Connection, Docs, Keys, Kind};
use crate::secret::Secret;
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
/// Discourse before mid-2024 answers `before=ID` with the posts whose ids
/// are in the 50 ids below ID: a run of 50 ids the key cannot see
/// (private messages, a deleted spam wave) comes back as an empty page in
/// the middle of the stream.
const ID_WINDOW: u64 = 50;
/// Empty windows in a row read before lull gives up looking further down
/// (2,000 invisible ids); what lies below is then not covered.
const MAX_EMPTY_WINDOWS: u32 = 40;
/// A poster the admin user list did not show is looked up again after
/// this long (a new account appears in the list late; a suspended one
/// comes back).
const RETRY_MISSING_DAYS: i64 = 7;

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
    /// user name → e-mail address (`None` in cursors of earlier versions:
    /// looked up and not found, when is not known, so looked up again).
    #[serde(default)]
    emails: BTreeMap<String, Option<String>>,
    /// user name → when the user list last did not show it.
    #[serde(default)]
    missing: BTreeMap<String, DateTime<Utc>>,
    /// user id → the first user name lull saw for it: a renamed user keeps
    /// matching the handle the accounts file has.
    #[serde(default)]
    names: BTreeMap<u64, String>,
}

#[derive(Deserialize)]
struct LatestPosts {
    latest_posts: Vec<Post>,
}

#[derive(Deserialize)]
struct Post {
    id: u64,
    username: String,
    #[serde(default)]
    user_id: Option<u64>,
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
            let mut empty_windows = 0;
            // Read down to where the last poll stopped (or the backfill
            // start); false when a run of empty windows made lull stop.
            let mut complete = true;
            let mut oldest: Option<DateTime<Utc>> = None;
            loop {
                let mut url = endpoint(&self.base, "posts.json");
                if let Some(b) = before {
                    url.query_pairs_mut().append_pair("before", &b.to_string());
                }
                let (page, _) = cx.http.get_json::<LatestPosts>(&url).await?;
                if page.latest_posts.is_empty() {
                    match before {
                        // Older ids remain above what is stored: an empty
                        // window of an older Discourse, not the end.
                        Some(b) if b > prev.last_post_id.saturating_add(1) && b > 1 => {
                            empty_windows += 1;
                            if empty_windows > MAX_EMPTY_WINDOWS {
                                tracing::warn!(source = %cx.name, before = b, "{MAX_EMPTY_WINDOWS} empty pages in a row below post {}: stopping; the days before the oldest post read stay uncovered", b + ID_WINDOW * u64::from(MAX_EMPTY_WINDOWS));
                                complete = false;
                                break;
                            }
                            before = Some(b.saturating_sub(ID_WINDOW).max(1));
                            continue;
                        }
                        _ => break,
                    }
                }
                empty_windows = 0;
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
                    oldest = Some(oldest.map_or(at, |o: DateTime<Utc>| o.min(at)));
                    posts.push((p, at));
                }
                // `before` must fall, or a misbehaving server loops us.
                if done || before.is_some_and(|b| min_id >= b) {
                    break;
                }
                before = Some(min_id);
            }
            // Found addresses are kept; misses of earlier versions (None,
            // time unknown) are asked again.
            let mut emails: BTreeMap<String, Option<String>> = prev
                .emails
                .into_iter()
                .filter(|(_, e)| e.is_some())
                .collect();
            let retry_before = cx.now - chrono::Duration::days(RETRY_MISSING_DAYS);
            let mut missing: BTreeMap<String, DateTime<Utc>> = prev
                .missing
                .into_iter()
                .filter(|(_, when)| *when > retry_before)
                .collect();
            let mut names = prev.names;
            if self.user_emails {
                let wanted: BTreeSet<&str> = posts
                    .iter()
                    .map(|(p, _)| p.username.as_str())
                    .filter(|u| !emails.contains_key(*u) && !missing.contains_key(*u))
                    .collect();
                if !wanted.is_empty() {
                    look_up_emails(self, cx, wanted, &mut emails, &mut missing).await?;
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
                // Renamed since lull first saw this user: the old name is
                // the one an accounts file may list.
                if let Some(uid) = p.user_id {
                    let first = names.entry(uid).or_insert_with(|| p.username.clone());
                    if !first.eq_ignore_ascii_case(&p.username) {
                        actors.push(first.clone());
                    }
                }
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
            let from = prev.covered_to.unwrap_or(cx.backfill_start);
            out.covered = if complete {
                Some((from, cx.now))
            } else {
                // Read down to the oldest post seen, not further.
                Some((oldest.map_or(cx.now, |o| o.max(from)), cx.now))
            };
            out.cursor = cursor_bytes(&Cursor {
                last_post_id: max_id,
                covered_to: Some(cx.now),
                emails,
                missing,
                names,
            });
            Ok(out)
        })
    }
}

/// Pages through the admin user list (most recently seen first, so new
/// posters come early) until every wanted user name is found. A key that
/// may not list users (not an admin's) costs the addresses, not the poll.
async fn look_up_emails(
    d: &Discourse,
    cx: &PollContext<'_>,
    mut wanted: BTreeSet<&str>,
    emails: &mut BTreeMap<String, Option<String>>,
    missing: &mut BTreeMap<String, DateTime<Utc>>,
) -> Result<(), SourceError> {
    for page in 1..=MAX_USER_PAGES {
        let mut url = endpoint(&d.base, "admin/users/list/active.json");
        url.query_pairs_mut()
            .append_pair("show_emails", "true")
            .append_pair("page", &page.to_string());
        let users = match cx.http.get_json::<Vec<AdminUser>>(&url).await {
            Ok((users, _)) => users,
            Err(SourceError::Status {
                status: 403 | 404, ..
            }) => {
                tracing::warn!(source = %cx.name, "this API key may not list users' e-mail addresses (it needs an admin's key): posters map by user name only; set `user_emails = false` to stop asking");
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        if users.is_empty() {
            break;
        }
        for u in users {
            wanted.remove(u.username.as_str());
            match u.email {
                Some(e) => {
                    emails.insert(u.username, Some(e));
                }
                None => {
                    missing.insert(u.username, cx.now);
                }
            }
        }
        if wanted.is_empty() {
            break;
        }
    }
    // Users the list does not show (new, suspended, anonymised) are asked
    // for again after RETRY_MISSING_DAYS, not on every poll.
    for u in wanted {
        missing.insert(u.to_string(), cx.now);
    }
    Ok(())
}

/// The `discourse` kind.
pub(crate) static KIND: Kind = Kind {
    name: "discourse",
    // Discourse allows 60/min per admin key *shared by every integration
    // of the site*: lull takes half, so a first backfill never starves the
    // others.
    requests_per_minute: 30,
    keys: &["api_key_env", "api_username", "user_emails"],
    docs: Docs {
        keys: r#"`api_key_env`, `api_username` (both optional), `user_emails`"#,
        reads: r#"new posts (kind `post`) from `/posts.json`, the site-wide latest-posts stream, paged backwards with `before=` down to the last post the previous poll stored: about one request per 50 new posts, and no topic is ever downloaded. Discourse before mid-2024 pages by windows of 50 ids, so a run of ids the key cannot see (private messages, a deleted spam wave) answers an empty page mid-stream: lull steps over up to 40 such windows in a row (2,000 ids); beyond that it stops and leaves the days below the oldest post it read uncovered, with a warning. Regular posts only (no small actions, whispers or deleted posts); posts by admins, moderators and staff are left out. A renamed user keeps matching: lull remembers the first name it saw for each user id and tries it too"#,
        credentials: r#"none for a public forum. With an **admin** API key (`Api-Key` / `Api-Username` headers) lull also reads posters' e-mail addresses from `/admin/users/list/active.json?show_emails=true` (`user_emails`, on by default with a key), once per user (remembered with the cursor; a user the list does not show is asked again after 7 days), so users map to accounts by domain. A key that may not list users (403: not an admin's) costs the addresses, not the poll: posts map by user name, with a warning"#,
        rate: r#"30/min (half of the 60/min Discourse allows per admin key, which every integration of the site shares)"#,
    },
    activities: &[("post", "forum posts")],
    configure,
    fuzz,
};

#[derive(Debug)]
struct Settings {
    api_key_env: Option<String>,
    api_username: Option<String>,
    /// Look up posters' e-mail addresses (needs an admin key).
    user_emails: bool,
}

fn configure(k: &mut Keys<'_>) -> Option<Arc<dyn kind::Settings>> {
    let api_key_env = k.env_optional("api_key_env");
    let api_username = k.string("api_username");
    let user_emails = k.bool("user_emails");
    if k.failed() {
        return None;
    }
    if api_key_env.is_some() != api_username.is_some() {
        let msg = format!(
            "source `{}`: `api_key_env` and `api_username` go together (Discourse needs both headers)",
            k.source()
        );
        k.problem("name", msg);
        return None;
    }
    if user_emails == Some(true) && api_key_env.is_none() {
        k.problem(
            "user_emails",
            "`user_emails = true` needs an admin `api_key_env` and `api_username`",
        );
        return None;
    }
    Some(Arc::new(Settings {
        user_emails: user_emails.unwrap_or(api_key_env.is_some()),
        api_key_env,
        api_username,
    }))
}

impl kind::Settings for Settings {
    fn env_vars(&self) -> Vec<&str> {
        self.api_key_env.iter().map(String::as_str).collect()
    }

    fn connect(&self, cx: &Connect<'_>) -> Result<Connection, SourceError> {
        let auth = match (&self.api_key_env, &self.api_username) {
            (Some(k), Some(u)) => Auth::Headers(vec![
                (HeaderName::from_static("api-key"), kind::secret(k)?),
                (
                    HeaderName::from_static("api-username"),
                    Secret::new(u.clone()),
                ),
            ]),
            _ => Auth::None,
        };
        Ok(Connection {
            auth,
            connector: Box::new(Discourse::new(cx.base.clone(), self.user_emails)),
        })
    }
}

/// Fuzz entry (fuzz/): every response type this connector decodes.
#[doc(hidden)]
pub fn fuzz(data: &[u8]) {
    let url = url::Url::parse("https://fuzz.example/api").unwrap_or_else(|_| unreachable!());
    let _ = super::http::decode::<LatestPosts>(&url, data).map_err(|e| e.to_string());
    let _ = super::http::decode::<Vec<AdminUser>>(&url, data).map_err(|e| e.to_string());
}
