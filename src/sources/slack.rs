//! Slack: a customer community on Slack. Messages and thread replies in
//! the configured public channels, through the Web API.
//!
//! `conversations.history` returns a channel's top-level messages (and
//! replies also sent to the channel) between `oldest` and `latest`;
//! replies inside threads come only from `conversations.replies`. A reply
//! can come weeks after its parent, so each poll also rereads the history
//! of the last `thread_days` — not to count it again, only to see which
//! parents' `latest_reply` moved past the previous poll — and reads just
//! those threads' new replies. People come from `users.info` (the profile
//! e-mail needs `users:read.email`), remembered in the cursor.
//!
//! Slack answers errors with HTTP 200 and `"ok": false`; each one is told
//! as what to fix (invite the app to the channel, add a scope, …).

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use url::Url;

use super::http::Auth;
use super::kind::{self, Connect, Connection, Docs, Keys, Kind};
use super::{
    Activity, Connector, Harvest, PollContext, PollFuture, SourceError, cursor_bytes, endpoint,
};

/// Messages a history or replies page holds (Slack allows up to 999 and
/// recommends no more than 200).
const PAGE: u32 = 200;
/// How long after its parent a thread is watched for new replies.
pub const DEFAULT_THREAD_DAYS: u32 = 14;
/// Each poll rereads this much before where the previous one ended, so a
/// message Slack stored with a slightly earlier `ts` than it showed is
/// not missed (what is read twice is deduplicated by id).
const OVERLAP: Duration = Duration::minutes(5);
/// People remembered in the cursor (the most recently seen).
const MAX_REMEMBERED: usize = 20_000;
/// A remembered person is asked again after this long (a changed e-mail
/// address, a member made admin).
const REFRESH_DAYS: i64 = 30;
/// Message subtypes that are a person speaking; every other subtype is
/// an event (joins, topic changes, pins) or a bot.
const SPOKEN: &[&str] = &["thread_broadcast", "file_share", "me_message"];

pub struct Slack {
    base: Url,
    channels: Vec<String>,
    thread_days: u32,
    admins_are_staff: bool,
}

#[derive(Serialize, Deserialize, Default)]
struct Cursor {
    /// Per channel id.
    channels: BTreeMap<String, ChannelCursor>,
    /// People met: user id → who they are.
    #[serde(default)]
    users: BTreeMap<String, Person>,
}

#[derive(Serialize, Deserialize, Clone)]
struct ChannelCursor {
    /// The end of the span the last poll read completely.
    covered_to: DateTime<Utc>,
}

#[derive(Serialize, Deserialize, Clone)]
struct Person {
    name: String,
    #[serde(default)]
    email: Option<String>,
    /// A bot, an app, or (with `admins_are_staff`) a workspace admin.
    staff: bool,
    seen: DateTime<Utc>,
}

#[derive(Deserialize)]
struct Answer<T> {
    ok: bool,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    needed: Option<String>,
    #[serde(default)]
    provided: Option<String>,
    /// The method's own fields (all defaulted: an error answer has none).
    #[serde(flatten)]
    body: T,
}

#[derive(Deserialize, Default)]
struct Messages {
    #[serde(default)]
    messages: Vec<Message>,
    #[serde(default)]
    has_more: bool,
    #[serde(default)]
    response_metadata: Option<Metadata>,
}

#[derive(Deserialize, Default)]
struct Metadata {
    #[serde(default)]
    next_cursor: Option<String>,
}

#[derive(Deserialize)]
struct Message {
    ts: String,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    subtype: Option<String>,
    #[serde(default)]
    bot_id: Option<String>,
    #[serde(default)]
    thread_ts: Option<String>,
    #[serde(default)]
    reply_count: Option<u64>,
    #[serde(default)]
    latest_reply: Option<String>,
}

#[derive(Deserialize, Default)]
struct UserInfo {
    #[serde(default)]
    user: Option<User>,
}

#[derive(Deserialize)]
struct User {
    name: String,
    #[serde(default)]
    is_bot: bool,
    #[serde(default)]
    is_app_user: bool,
    #[serde(default)]
    is_admin: bool,
    #[serde(default)]
    is_owner: bool,
    #[serde(default)]
    profile: Profile,
}

#[derive(Deserialize, Default)]
struct Profile {
    #[serde(default)]
    email: Option<String>,
}

/// A message before its author is known.
struct Said {
    channel: String,
    ts: String,
    at: DateTime<Utc>,
    user: String,
}

/// Slack's `ts` ("1512085950.000216") as a time.
fn ts_time(url: &Url, ts: &str) -> Result<DateTime<Utc>, SourceError> {
    let bad = || SourceError::Json {
        url: super::http::display_url(url),
        detail: format!("`ts` = {ts:?} is not a Slack timestamp"),
    };
    let (secs, micros) = ts.split_once('.').unwrap_or((ts, "0"));
    let secs: i64 = secs.parse().map_err(|_| bad())?;
    let micros: u32 = format!("{micros:0<6}")
        .get(..6)
        .and_then(|m| m.parse().ok())
        .ok_or_else(bad)?;
    DateTime::from_timestamp(secs, micros * 1000).ok_or_else(bad)
}

/// A time as Slack's `ts` (for `oldest` / `latest`).
fn time_ts(t: DateTime<Utc>) -> String {
    format!("{}.{:06}", t.timestamp(), t.timestamp_subsec_micros())
}

impl Slack {
    /// One Web API call; an `"ok": false` answer becomes an error that
    /// says what to fix.
    async fn call<T: for<'de> Deserialize<'de> + Default + Send + 'static>(
        &self,
        cx: &PollContext<'_>,
        method: &str,
        query: &[(&str, &str)],
    ) -> Result<Result<T, String>, SourceError> {
        let mut url = endpoint(&self.base, method);
        url.query_pairs_mut().extend_pairs(query);
        let (answer, _) = cx.http.get_json::<Answer<T>>(&url).await?;
        if answer.ok {
            return Ok(Ok(answer.body));
        }
        let error = answer.error.unwrap_or_else(|| "unknown_error".into());
        let channel = query
            .iter()
            .find(|(k, _)| *k == "channel")
            .map_or("", |(_, v)| *v);
        let hint = match error.as_str() {
            "not_in_channel" => format!(
                ": the app is not a member of channel {channel}; invite it there (`/invite @your-app`)"
            ),
            "channel_not_found" => format!(
                ": no channel {channel} that this token can see (`channels` takes channel IDs such as C0123ABCDEF, not names)"
            ),
            "missing_scope" => format!(
                ": the token lacks the scope `{}` (it has: {})",
                answer.needed.as_deref().unwrap_or("?"),
                answer.provided.as_deref().unwrap_or("?")
            ),
            "invalid_auth" | "not_authed" | "token_revoked" | "token_expired"
            | "account_inactive" => {
                ": the token was refused (check the env var `token_env` names)".to_string()
            }
            "user_not_found" | "user_not_visible" => return Ok(Err(error)),
            _ => String::new(),
        };
        Err(SourceError::Other(format!(
            "Slack answered {method} with `{error}`{hint}"
        )))
    }

    /// Every page of a history or replies call.
    async fn pages(
        &self,
        cx: &PollContext<'_>,
        method: &str,
        query: &[(&str, &str)],
    ) -> Result<Vec<Message>, SourceError> {
        let mut out = Vec::new();
        let mut next: Option<String> = None;
        let limit = PAGE.to_string();
        loop {
            let mut q: Vec<(&str, &str)> = query.to_vec();
            q.push(("limit", &limit));
            if let Some(c) = &next {
                q.push(("cursor", c));
            }
            let page: Messages = match self.call(cx, method, &q).await? {
                Ok(p) => p,
                Err(e) => return Err(SourceError::Other(format!("Slack answered `{e}`"))),
            };
            out.extend(page.messages);
            next = page
                .response_metadata
                .and_then(|m| m.next_cursor)
                .filter(|c| !c.is_empty());
            if !page.has_more || next.is_none() {
                return Ok(out);
            }
        }
    }

    /// Who `user` is, from the cursor or `users.info`.
    async fn person(
        &self,
        cx: &PollContext<'_>,
        users: &mut BTreeMap<String, Person>,
        user: &str,
    ) -> Result<Person, SourceError> {
        if let Some(p) = users.get(user)
            && cx.now - p.seen < Duration::days(REFRESH_DAYS)
        {
            return Ok(p.clone());
        }
        let person = match self
            .call::<UserInfo>(cx, "users.info", &[("user", user)])
            .await?
        {
            Ok(UserInfo { user: Some(u) }) => Person {
                staff: u.is_bot
                    || u.is_app_user
                    || (self.admins_are_staff && (u.is_admin || u.is_owner)),
                email: u.profile.email.filter(|e| e.contains('@')),
                name: if u.name.is_empty() {
                    user.to_string()
                } else {
                    u.name
                },
                seen: cx.now,
            },
            // Someone from another workspace of a shared channel, or a
            // deleted account the token cannot see: known by id only.
            Ok(UserInfo { user: None }) | Err(_) => Person {
                name: user.to_string(),
                email: None,
                staff: false,
                seen: cx.now,
            },
        };
        users.insert(user.to_string(), person.clone());
        Ok(person)
    }
}

/// What a poll heard in the channels: people's messages, and how many
/// were bots'.
#[derive(Default)]
struct Heard {
    said: Vec<Said>,
    bots: u64,
}

impl Heard {
    fn note(&mut self, channel: &str, m: &Message, at: DateTime<Utc>) {
        if spoken(m) {
            self.said.push(Said {
                channel: channel.to_string(),
                ts: m.ts.clone(),
                at,
                user: m.user.clone().unwrap_or_default(),
            });
        } else if m.bot_id.is_some() {
            self.bots += 1;
        }
    }
}

/// Is this message a person speaking (not a bot, not a join or a topic
/// change)?
fn spoken(m: &Message) -> bool {
    m.bot_id.is_none()
        && m.user.is_some()
        && m.subtype.as_deref().is_none_or(|s| SPOKEN.contains(&s))
}

impl Connector for Slack {
    fn poll<'a>(&'a self, cx: &'a PollContext<'a>) -> PollFuture<'a> {
        Box::pin(async move {
            let mut cursor: Cursor = cx.cursor().unwrap_or_default();
            let latest = time_ts(cx.now);
            let watch = Duration::days(i64::from(self.thread_days));
            let mut heard = Heard::default();
            let mut covered_from = cx.now;
            for channel in &self.channels {
                let from = cursor
                    .channels
                    .get(channel)
                    .map(|c| c.covered_to - OVERLAP)
                    .unwrap_or(cx.backfill_start)
                    .min(cx.now);
                covered_from = covered_from.min(from);
                // Reread the thread window to see which parents got replies.
                let oldest = time_ts(from.min(cx.now - watch));
                let history = self
                    .pages(
                        cx,
                        "conversations.history",
                        &[
                            ("channel", channel),
                            ("oldest", &oldest),
                            ("latest", &latest),
                            ("inclusive", "true"),
                        ],
                    )
                    .await?;
                let url = endpoint(&self.base, "conversations.history");
                let mut threads = Vec::new();
                for m in &history {
                    let at = ts_time(&url, &m.ts)?;
                    if at >= from {
                        heard.note(channel, m, at);
                    }
                    let is_parent = m.thread_ts.as_deref() == Some(m.ts.as_str())
                        && m.reply_count.unwrap_or(0) > 0;
                    if is_parent
                        && let Some(last) = &m.latest_reply
                        && ts_time(&url, last)? >= from
                    {
                        threads.push(m.ts.clone());
                    }
                }
                let oldest = time_ts(from);
                let url = endpoint(&self.base, "conversations.replies");
                for parent in threads {
                    let replies = self
                        .pages(
                            cx,
                            "conversations.replies",
                            &[
                                ("channel", channel),
                                ("ts", &parent),
                                ("oldest", &oldest),
                                ("latest", &latest),
                                ("inclusive", "true"),
                            ],
                        )
                        .await?;
                    for m in replies.iter().filter(|m| m.ts != parent) {
                        let at = ts_time(&url, &m.ts)?;
                        if at >= from {
                            heard.note(channel, m, at);
                        }
                    }
                }
            }
            let mut out = Harvest {
                staff: heard.bots,
                ..Harvest::default()
            };
            for s in heard.said {
                let p = self.person(cx, &mut cursor.users, &s.user).await?;
                if p.staff {
                    out.staff += 1;
                    continue;
                }
                let mut actors = vec![p.name.clone()];
                if p.name != s.user {
                    actors.push(s.user.clone());
                }
                actors.extend(p.email.clone());
                out.activities.push(Activity {
                    // A thread_broadcast shows in history and in replies
                    // with the same ts: one message, one id.
                    id: format!("{}/{}", s.channel, s.ts),
                    kind: "message",
                    at: s.at,
                    actors,
                    once: false,
                });
            }
            for channel in &self.channels {
                cursor
                    .channels
                    .insert(channel.clone(), ChannelCursor { covered_to: cx.now });
            }
            // Channels no longer configured are forgotten.
            cursor.channels.retain(|c, _| self.channels.contains(c));
            if cursor.users.len() > MAX_REMEMBERED {
                let mut seen: Vec<DateTime<Utc>> = cursor.users.values().map(|p| p.seen).collect();
                seen.sort_unstable();
                let cut = seen[seen.len() - MAX_REMEMBERED];
                cursor.users.retain(|_, p| p.seen >= cut);
            }
            if !self.channels.is_empty() {
                out.covered = Some((covered_from, cx.now));
            }
            out.cursor = cursor_bytes(&cursor);
            Ok(out)
        })
    }
}

/// The `slack` kind.
pub(crate) static KIND: Kind = Kind {
    name: "slack",
    // conversations.history and .replies are Tier 3 (50+ a minute) for
    // an internal app; users.info is Tier 4.
    requests_per_minute: 40,
    keys: &["token_env", "channels", "thread_days", "admins_are_staff"],
    docs: Docs {
        keys: r#"`token_env`, `channels` (channel IDs), `thread_days` (14), `admins_are_staff` (true)"#,
        reads: r#"messages (kind `message`) in each listed channel from `conversations.history` (top-level messages and replies also sent to the channel), and thread replies from `conversations.replies`; the cursor keeps each channel's end, so a channel added later is read from `backfill_days` back. Replies can come weeks after their parent: each poll rereads the history of the last `thread_days` only to find parents whose `latest_reply` moved, and reads just those threads. Joins, topic changes, pins and other events are not messages; bots, apps and (with `admins_are_staff`) workspace admins and owners are staff. People come from `users.info` (user name, then the Slack id, then the profile e-mail), remembered for 30 days in the cursor; someone from another workspace of a shared channel is known by id"#,
        credentials: r#"a bot token (`xoxb-…`, sent as `Authorization: Bearer`) of an app **installed in the community workspace and invited to each channel**, with `channels:history`, `users:read` and `users:read.email` (without the last, people map by user name and id only). Errors are told as what to fix: `not_in_channel` (invite the app), `channel_not_found` (IDs, not names), `missing_scope` (which one)"#,
        rate: r#"40/min (Tier 3 allows 50+; `Retry-After` on 429 is honoured). A commercially distributed app outside the Marketplace gets 1/min and 15 messages a page since 2025: set `requests_per_minute = 1`"#,
    },
    activities: &[("message", "community messages")],
    configure,
    fuzz,
};

#[derive(Debug)]
struct Settings {
    token_env: String,
    channels: Vec<String>,
    thread_days: u32,
    admins_are_staff: bool,
}

fn configure(k: &mut Keys<'_>) -> Option<Arc<dyn kind::Settings>> {
    let token_env = k.env("token_env");
    let channels = if k.is_set("channels") {
        k.strings("channels")
    } else {
        let msg = format!(
            "slack source `{}` needs `channels`: the IDs of the public channels to read, e.g. [\"C0123ABCDEF\"]",
            k.source()
        );
        k.problem("channels", msg);
        None
    };
    if let Some(chs) = &channels {
        if chs.is_empty() {
            k.problem("channels", "`channels` lists no channel");
        }
        for c in chs {
            let id_like = c.len() >= 9
                && c.starts_with(['C', 'G'])
                && c.chars()
                    .all(|x| x.is_ascii_uppercase() || x.is_ascii_digit());
            if !id_like {
                k.problem(
                    "channels",
                    format!(
                        "`{c}` is not a channel ID; Slack's API takes IDs such as C0123ABCDEF (in Slack: the channel's name → About → the ID at the bottom)"
                    ),
                );
                break;
            }
        }
    }
    let thread_days = k.at_least("thread_days", 1, DEFAULT_THREAD_DAYS);
    let admins_are_staff = k.bool("admins_are_staff").unwrap_or(true);
    if k.failed() {
        return None;
    }
    Some(Arc::new(Settings {
        token_env: token_env?,
        channels: channels?,
        thread_days: thread_days?,
        admins_are_staff,
    }))
}

impl kind::Settings for Settings {
    fn env_vars(&self) -> Vec<&str> {
        vec![&self.token_env]
    }

    fn connect(&self, cx: &Connect<'_>) -> Result<Connection, SourceError> {
        Ok(Connection {
            auth: Auth::Bearer(kind::secret(&self.token_env)?),
            connector: Box::new(Slack {
                base: cx.base.clone(),
                channels: self.channels.clone(),
                thread_days: self.thread_days,
                admins_are_staff: self.admins_are_staff,
            }),
        })
    }
}

pub fn fuzz(data: &[u8]) {
    let _ = serde_json::from_slice::<Answer<Messages>>(data);
    let _ = serde_json::from_slice::<Answer<UserInfo>>(data);
    if let Ok(s) = std::str::from_utf8(data)
        && let Ok(u) = Url::parse("https://slack.com/api/")
    {
        let _ = ts_time(&u, s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slack_timestamps_round_trip() {
        let u = Url::parse("https://slack.com/api/").unwrap();
        let t = ts_time(&u, "1512085950.000216").unwrap();
        assert_eq!(t.to_rfc3339(), "2017-11-30T23:52:30.000216+00:00");
        assert_eq!(time_ts(t), "1512085950.000216");
        assert!(ts_time(&u, "soon").is_err());
        assert!(ts_time(&u, "1.x").is_err());
    }

    #[test]
    fn events_and_bots_are_not_people_speaking() {
        let m = |subtype: Option<&str>, bot: bool| Message {
            ts: "1.0".into(),
            user: Some("U1".into()),
            subtype: subtype.map(str::to_string),
            bot_id: bot.then(|| "B1".to_string()),
            thread_ts: None,
            reply_count: None,
            latest_reply: None,
        };
        assert!(spoken(&m(None, false)));
        assert!(spoken(&m(Some("thread_broadcast"), false)));
        assert!(!spoken(&m(Some("channel_join"), false)));
        assert!(!spoken(&m(Some("bot_message"), false)));
        assert!(!spoken(&m(None, true)));
    }
}
