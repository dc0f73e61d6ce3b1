//! `[[source]]` tables: read with every key optional, then checked per kind,
//! so each mistake is reported with its line and the keys a kind knows.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::diag::{Diagnostic, SourceText};
use crate::types::SourceName;

use super::html::{HtmlSelectors, Preset};

/// How far back a source's first poll reads when the config does not say:
/// a quarter of history is enough for a first baseline to start forming
/// and stays within every service's retention (Postmark keeps 45 days of
/// opens by default; the poll then covers only what it could read).
pub const DEFAULT_BACKFILL_DAYS: u32 = 90;
/// Hourly: silence is judged in days, so fresher data buys nothing, and an
/// hourly poll stays far inside every service's rate limits.
pub const DEFAULT_SCHEDULE: &str = "0 0 * * * *";
/// Per request. Generous for an export page of a busy help desk.
pub const DEFAULT_TIMEOUT_SECS: u64 = 30;
/// Retries of one request on connect errors, timeouts, 5xx, 408 and 429.
/// With the doubling backoff (1, 2, 4, 8 s) a source gets about 15 s to
/// recover before the poll gives up and the next scheduled one tries again.
pub const DEFAULT_RETRIES: u32 = 4;
/// Pages an `html` poll follows through "next" links: a forum's latest
/// posts rarely need more between two hourly polls, and a broken "next"
/// selector cannot walk a whole site.
pub const DEFAULT_MAX_PAGES: u32 = 10;
/// An open this soon after delivery is a machine's (a privacy proxy or a
/// link scanner fetching the pixel), not a person's.
pub const DEFAULT_MACHINE_OPEN_SECS: u64 = 5;
/// Mailchimp opens keep arriving for weeks after a campaign; each poll
/// rereads the activity of campaigns sent this many days back.
pub const DEFAULT_OPENS_WINDOW_DAYS: u32 = 30;

/// The source kinds lull knows, with their default request rates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    Discourse,
    Html,
    Zendesk,
    Freshdesk,
    Mailchimp,
    Mailgun,
    Postmark,
}

impl SourceKind {
    pub const ALL: [SourceKind; 7] = [
        SourceKind::Discourse,
        SourceKind::Html,
        SourceKind::Zendesk,
        SourceKind::Freshdesk,
        SourceKind::Mailchimp,
        SourceKind::Mailgun,
        SourceKind::Postmark,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SourceKind::Discourse => "discourse",
            SourceKind::Html => "html",
            SourceKind::Zendesk => "zendesk",
            SourceKind::Freshdesk => "freshdesk",
            SourceKind::Mailchimp => "mailchimp",
            SourceKind::Mailgun => "mailgun",
            SourceKind::Postmark => "postmark",
        }
    }

    /// Requests per minute when the config does not say, from each
    /// service's documented limits, with room for the customer's other
    /// integrations on the same key.
    pub fn default_requests_per_minute(self) -> u32 {
        match self {
            // Discourse allows 60/min per admin key *shared by every
            // integration of the site*: lull takes half, so a first
            // backfill never starves the others.
            SourceKind::Discourse => 30,
            // Someone else's web server: one page every two seconds.
            SourceKind::Html => 30,
            // Incremental exports: 10/min (the other endpoints allow more,
            // but one limiter for the source keeps it simple and safe).
            SourceKind::Zendesk => 10,
            // The smallest Freshdesk plan allows 50/min for the account.
            SourceKind::Freshdesk => 40,
            // Mailchimp limits concurrency (10), not rate.
            SourceKind::Mailchimp => 120,
            SourceKind::Mailgun => 120,
            SourceKind::Postmark => 120,
        }
    }

    /// Keys this kind accepts besides the common ones.
    fn keys(self) -> &'static [&'static str] {
        match self {
            SourceKind::Discourse => &["api_key_env", "api_username", "user_emails"],
            SourceKind::Html => &[
                "preset",
                "post",
                "author",
                "time",
                "next",
                "link",
                "max_pages",
            ],
            SourceKind::Zendesk => &["email", "token_env", "comments"],
            SourceKind::Freshdesk => &["api_key_env", "conversations"],
            SourceKind::Mailchimp => &["api_key_env", "machine_open_secs", "opens_window_days"],
            SourceKind::Mailgun => &["domain", "api_key_env", "machine_open_secs"],
            SourceKind::Postmark => &["token_env", "machine_open_secs"],
        }
    }
}

const COMMON_KEYS: &[&str] = &[
    "name",
    "kind",
    "url",
    "schedule",
    "backfill_days",
    "requests_per_minute",
    "timeout_secs",
    "retries",
];

/// One `[[source]]` table as written; every key optional so that all
/// problems can be reported at once.
#[derive(Debug, Deserialize, Default)]
pub(crate) struct RawSource {
    name: Option<Spanned<String>>,
    kind: Option<Spanned<String>>,
    url: Option<Spanned<String>>,
    schedule: Option<Spanned<String>>,
    backfill_days: Option<Spanned<u32>>,
    requests_per_minute: Option<Spanned<u32>>,
    timeout_secs: Option<Spanned<u64>>,
    retries: Option<Spanned<u32>>,
    // discourse
    api_key_env: Option<Spanned<String>>,
    api_username: Option<Spanned<String>>,
    user_emails: Option<Spanned<bool>>,
    // html
    preset: Option<Spanned<String>>,
    post: Option<Spanned<String>>,
    author: Option<Spanned<String>>,
    time: Option<Spanned<String>>,
    next: Option<Spanned<String>>,
    link: Option<Spanned<String>>,
    max_pages: Option<Spanned<u32>>,
    // zendesk, freshdesk
    email: Option<Spanned<String>>,
    token_env: Option<Spanned<String>>,
    comments: Option<Spanned<bool>>,
    conversations: Option<Spanned<bool>>,
    // e-mail platforms
    domain: Option<Spanned<String>>,
    machine_open_secs: Option<Spanned<u64>>,
    opens_window_days: Option<Spanned<u32>>,
}

impl RawSource {
    /// The span of every key that is set, by name.
    fn set_keys(&self) -> Vec<(&'static str, std::ops::Range<usize>)> {
        let mut out = Vec::new();
        macro_rules! k {
            ($($f:ident),*) => {$(
                if let Some(v) = &self.$f { out.push((stringify!($f), v.span())); }
            )*};
        }
        k!(
            name,
            kind,
            url,
            schedule,
            backfill_days,
            requests_per_minute,
            timeout_secs,
            retries,
            api_key_env,
            api_username,
            user_emails,
            preset,
            post,
            author,
            time,
            next,
            link,
            max_pages,
            email,
            token_env,
            comments,
            conversations,
            domain,
            machine_open_secs,
            opens_window_days
        );
        out
    }
}

/// A validated source.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    pub name: SourceName,
    pub kind: SourceKind,
    /// The service's base URL (or, for `html`, the first page to read).
    pub url: url::Url,
    pub schedule: cron::Schedule,
    pub backfill_days: u32,
    pub http: HttpSettings,
    pub spec: Spec,
    /// Where the table starts in the config file, for messages.
    pub line: usize,
}

/// How politely and patiently a source is asked.
#[derive(Debug, Clone, Copy)]
pub struct HttpSettings {
    /// 0 turns the limiter off (tests, benchmarks, a self-hosted forum).
    pub requests_per_minute: u32,
    pub timeout: Duration,
    pub retries: u32,
}

/// What a kind needs beyond the common keys. Secrets are env var names,
/// read when the source polls (so commands that never poll need none).
#[derive(Debug, Clone)]
pub enum Spec {
    Discourse {
        api_key_env: Option<String>,
        api_username: Option<String>,
        /// Look up posters' e-mail addresses (needs an admin key).
        user_emails: bool,
    },
    Html {
        selectors: HtmlSelectors,
        max_pages: u32,
    },
    Zendesk {
        email: String,
        token_env: String,
        comments: bool,
    },
    Freshdesk {
        api_key_env: String,
        conversations: bool,
    },
    Mailchimp {
        api_key_env: String,
        machine_open: Duration,
        opens_window_days: u32,
    },
    Mailgun {
        domain: String,
        api_key_env: String,
        machine_open: Duration,
    },
    Postmark {
        token_env: String,
        machine_open: Duration,
    },
}

impl Spec {
    /// Env vars this source reads its secrets from.
    pub fn env_vars(&self) -> Vec<&str> {
        match self {
            Spec::Discourse { api_key_env, .. } => api_key_env.iter().map(String::as_str).collect(),
            Spec::Html { .. } => Vec::new(),
            Spec::Zendesk { token_env, .. } => vec![token_env],
            Spec::Freshdesk { api_key_env, .. }
            | Spec::Mailchimp { api_key_env, .. }
            | Spec::Mailgun { api_key_env, .. } => vec![api_key_env],
            Spec::Postmark { token_env, .. } => vec![token_env],
        }
    }
}

/// Checks every `[[source]]` table; problems go to `problems`.
pub(crate) fn build_sources(
    raw: &[RawSource],
    src: &SourceText,
    problems: &mut Vec<Diagnostic>,
) -> Vec<SourceConfig> {
    let mut out = Vec::new();
    let mut names = BTreeSet::new();
    for r in raw {
        let before = problems.len();
        let mut p = Problems { src, problems };
        let Some(name) = &r.name else {
            let at = r.set_keys().first().map(|(_, s)| s.start).unwrap_or(0);
            p.problems
                .push(src.at(at, "a [[source]] needs a `name` (unique, e.g. \"forum\")"));
            continue;
        };
        let n = name.get_ref().trim();
        if n.is_empty() || n.contains('\0') {
            p.at(name, "a source `name` must be non-empty text");
        } else if !names.insert(n.to_string()) {
            p.at(
                name,
                format!("two sources are named `{n}`; names must be unique"),
            );
        }
        let Some(kind) = r.kind.as_ref().map(|k| (k, k.get_ref().as_str())) else {
            p.at(
                name,
                format!("source `{n}` needs a `kind` ({})", kind_list()),
            );
            continue;
        };
        let Some(kind_v) = SourceKind::ALL.iter().copied().find(|k| k.name() == kind.1) else {
            p.at(
                kind.0,
                format!("unknown source kind `{}`; known: {}", kind.1, kind_list()),
            );
            continue;
        };
        for (key, span) in r.set_keys() {
            if !COMMON_KEYS.contains(&key) && !kind_v.keys().contains(&key) {
                p.problems.push(src.at(
                    span.start,
                    format!(
                        "`{key}` is not a key of a `{}` source (its own keys: {})",
                        kind_v.name(),
                        kind_v.keys().join(", ")
                    ),
                ));
            }
        }
        let url = match &r.url {
            None => {
                p.at(
                    name,
                    format!("source `{n}` needs a `url` (the service's base URL)"),
                );
                None
            }
            Some(u) => match url::Url::parse(u.get_ref()) {
                Ok(url) if matches!(url.scheme(), "http" | "https") => Some(url),
                Ok(_) => {
                    p.at(u, "a source `url` must start with http:// or https://");
                    None
                }
                Err(e) => {
                    p.at(u, format!("`{}` is not a URL: {e}", u.get_ref()));
                    None
                }
            },
        };
        let schedule = match &r.schedule {
            None => DEFAULT_SCHEDULE.parse::<cron::Schedule>().ok(),
            Some(s) => match parse_schedule(s.get_ref()) {
                Ok(sch) => Some(sch),
                Err(msg) => {
                    p.at(s, msg);
                    None
                }
            },
        };
        if let Some(b) = &r.backfill_days
            && *b.get_ref() == 0
        {
            p.at(b, "`backfill_days` must be at least 1");
        }
        if let Some(t) = &r.timeout_secs
            && *t.get_ref() == 0
        {
            p.at(t, "`timeout_secs` must be at least 1");
        }
        let http = HttpSettings {
            requests_per_minute: r
                .requests_per_minute
                .as_ref()
                .map(|v| *v.get_ref())
                .unwrap_or(kind_v.default_requests_per_minute()),
            timeout: Duration::from_secs(
                r.timeout_secs
                    .as_ref()
                    .map(|v| *v.get_ref())
                    .unwrap_or(DEFAULT_TIMEOUT_SECS)
                    .max(1),
            ),
            retries: r
                .retries
                .as_ref()
                .map(|v| *v.get_ref())
                .unwrap_or(DEFAULT_RETRIES),
        };
        let spec = build_spec(kind_v, r, n, name, &mut p);
        if p.problems.len() > before {
            continue;
        }
        if let (Some(url), Some(schedule), Some(spec)) = (url, schedule, spec) {
            out.push(SourceConfig {
                name: SourceName(n.to_string()),
                kind: kind_v,
                url,
                schedule,
                backfill_days: r
                    .backfill_days
                    .as_ref()
                    .map(|v| *v.get_ref())
                    .unwrap_or(DEFAULT_BACKFILL_DAYS),
                http,
                spec,
                line: src.line_col(name.span().start).0,
            });
        }
    }
    out
}

struct Problems<'a> {
    src: &'a SourceText,
    problems: &'a mut Vec<Diagnostic>,
}

impl Problems<'_> {
    fn at<T>(&mut self, s: &Spanned<T>, msg: impl Into<String>) {
        self.problems.push(self.src.span(s, msg));
    }
}

fn kind_list() -> String {
    SourceKind::ALL.map(SourceKind::name).join(", ")
}

/// Could `s` name an environment variable (letters, digits, `_`)? A value
/// that cannot is most likely the secret itself pasted into the config.
pub fn is_env_var_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn env_name(
    p: &mut Problems<'_>,
    v: &Option<Spanned<String>>,
    key: &str,
    n: &str,
    name: &Spanned<String>,
) -> Option<String> {
    match v {
        None => {
            p.at(
                name,
                format!("source `{n}` needs `{key}`: the name of the environment variable that holds its secret"),
            );
            None
        }
        Some(e) => {
            let s = e.get_ref();
            if !is_env_var_name(s) {
                p.at(
                    e,
                    format!("`{key}` names an environment variable (letters, digits, _), not the secret itself"),
                );
                None
            } else {
                Some(s.clone())
            }
        }
    }
}

fn build_spec(
    kind: SourceKind,
    r: &RawSource,
    n: &str,
    name: &Spanned<String>,
    p: &mut Problems<'_>,
) -> Option<Spec> {
    let machine_open = Duration::from_secs(
        r.machine_open_secs
            .as_ref()
            .map(|v| *v.get_ref())
            .unwrap_or(DEFAULT_MACHINE_OPEN_SECS),
    );
    Some(match kind {
        SourceKind::Discourse => {
            let api_key_env = match &r.api_key_env {
                None => None,
                Some(_) => Some(env_name(p, &r.api_key_env, "api_key_env", n, name)?),
            };
            if api_key_env.is_some() != r.api_username.is_some() {
                p.at(
                    name,
                    format!("source `{n}`: `api_key_env` and `api_username` go together (Discourse needs both headers)"),
                );
                return None;
            }
            let user_emails = r.user_emails.as_ref().map(|v| *v.get_ref());
            if user_emails == Some(true) && api_key_env.is_none() {
                p.at(
                    r.user_emails.as_ref()?,
                    "`user_emails = true` needs an admin `api_key_env` and `api_username`",
                );
                return None;
            }
            Spec::Discourse {
                user_emails: user_emails.unwrap_or(api_key_env.is_some()),
                api_key_env,
                api_username: r.api_username.as_ref().map(|v| v.get_ref().clone()),
            }
        }
        SourceKind::Html => {
            let preset = match &r.preset {
                None => None,
                Some(s) => match Preset::by_name(s.get_ref()) {
                    Some(pr) => Some(pr),
                    None => {
                        p.at(
                            s,
                            format!(
                                "unknown html preset `{}`; known: {}",
                                s.get_ref(),
                                Preset::NAMES.join(", ")
                            ),
                        );
                        return None;
                    }
                },
            };
            let mut sel = preset.map(Preset::selectors).unwrap_or_default();
            let mut bad = false;
            for (key, v, slot) in [
                ("post", &r.post, &mut sel.post),
                ("author", &r.author, &mut sel.author),
                ("time", &r.time, &mut sel.time),
                ("next", &r.next, &mut sel.next),
                ("link", &r.link, &mut sel.link),
            ] {
                if let Some(v) = v {
                    if let Err(e) = scraper::Selector::parse(v.get_ref()) {
                        p.at(v, format!("`{key}` is not a CSS selector: {e}"));
                        bad = true;
                    }
                    *slot = v.get_ref().clone();
                }
            }
            for (key, slot) in [
                ("post", &sel.post),
                ("author", &sel.author),
                ("time", &sel.time),
            ] {
                if slot.is_empty() {
                    p.at(
                        name,
                        format!("html source `{n}` needs `preset` (e.g. \"phpbb\") or a `{key}` selector"),
                    );
                    bad = true;
                }
            }
            if bad {
                return None;
            }
            let max_pages = r
                .max_pages
                .as_ref()
                .map(|v| *v.get_ref())
                .unwrap_or(DEFAULT_MAX_PAGES);
            if max_pages == 0 {
                p.at(r.max_pages.as_ref()?, "`max_pages` must be at least 1");
                return None;
            }
            Spec::Html {
                selectors: sel,
                max_pages,
            }
        }
        SourceKind::Zendesk => {
            let token_env = env_name(p, &r.token_env, "token_env", n, name);
            let email = match &r.email {
                Some(e) if crate::accounts::is_plausible_email(e.get_ref()) => {
                    Some(e.get_ref().clone())
                }
                Some(e) => {
                    p.at(
                        e,
                        "`email` is the Zendesk agent's e-mail address the API token belongs to",
                    );
                    None
                }
                None => {
                    p.at(
                        name,
                        format!("zendesk source `{n}` needs `email` (the agent the API token belongs to)"),
                    );
                    None
                }
            };
            Spec::Zendesk {
                email: email?,
                token_env: token_env?,
                comments: r.comments.as_ref().is_some_and(|v| *v.get_ref()),
            }
        }
        SourceKind::Freshdesk => Spec::Freshdesk {
            api_key_env: env_name(p, &r.api_key_env, "api_key_env", n, name)?,
            conversations: r.conversations.as_ref().is_some_and(|v| *v.get_ref()),
        },
        SourceKind::Mailchimp => {
            let window = r
                .opens_window_days
                .as_ref()
                .map(|v| *v.get_ref())
                .unwrap_or(DEFAULT_OPENS_WINDOW_DAYS);
            if window == 0 {
                p.at(
                    r.opens_window_days.as_ref()?,
                    "`opens_window_days` must be at least 1",
                );
                return None;
            }
            Spec::Mailchimp {
                api_key_env: env_name(p, &r.api_key_env, "api_key_env", n, name)?,
                machine_open,
                opens_window_days: window,
            }
        }
        SourceKind::Mailgun => {
            let domain = match &r.domain {
                Some(d) if crate::accounts::is_plausible_domain(d.get_ref()) => {
                    Some(d.get_ref().clone())
                }
                Some(d) => {
                    p.at(
                        d,
                        "`domain` is the Mailgun sending domain, e.g. \"mg.example.com\"",
                    );
                    None
                }
                None => {
                    p.at(
                        name,
                        format!("mailgun source `{n}` needs `domain` (the sending domain)"),
                    );
                    None
                }
            };
            let api_key_env = env_name(p, &r.api_key_env, "api_key_env", n, name);
            Spec::Mailgun {
                domain: domain?,
                api_key_env: api_key_env?,
                machine_open,
            }
        }
        SourceKind::Postmark => Spec::Postmark {
            token_env: env_name(p, &r.token_env, "token_env", n, name)?,
            machine_open,
        },
    })
}

/// Parses a 6- or 7-field cron expression, with a hint for the 5-field
/// Unix form, which the `cron` crate rejects.
pub fn parse_schedule(text: &str) -> Result<cron::Schedule, String> {
    let fields = text.split_whitespace().count();
    if fields == 5 {
        return Err(format!(
            "`{text}` has 5 fields (Unix cron); lull's schedules start with seconds: write `0 {text}`"
        ));
    }
    text.parse::<cron::Schedule>().map_err(|e| {
        format!(
            "`{text}` is not a cron schedule ({e}); 6 fields: sec min hour day-of-month month day-of-week, e.g. \"0 0 * * * *\" (hourly) or \"0 30 6 * * Mon-Fri\""
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_field_cron_gets_a_hint_and_day_names_work() {
        let err = parse_schedule("*/5 * * * *").unwrap_err();
        assert!(err.contains("write `0 */5 * * * *`"), "{err}");
        let s = parse_schedule("0 30 6 * * Mon-Fri").unwrap();
        let after = chrono::DateTime::parse_from_rfc3339("2026-11-21T00:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        // 2026-11-21 is a Saturday: the next run is Monday 06:30.
        let next = s.after(&after).next().unwrap();
        assert_eq!(next.to_rfc3339(), "2026-11-23T06:30:00+00:00");
        assert!(parse_schedule("0 61 * * * *").is_err());
    }
}
