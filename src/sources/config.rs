//! `[[source]]` tables: the keys every source has are checked here, the
//! rest by the source's kind ([`super::kind`]), so each mistake is
//! reported with its line and the keys a kind knows.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::kind::{Keys, Kind, Settings};
use crate::diag::{Diagnostic, SourceText};
use crate::types::SourceName;

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

pub use super::kind::is_env_var_name;

/// Keys every source has, whatever its kind.
pub const COMMON_KEYS: &[&str] = &[
    "name",
    "kind",
    "url",
    "schedule",
    "backfill_days",
    "requests_per_minute",
    "timeout_secs",
    "retries",
];

/// One `[[source]]` table as written: the common keys, every one optional
/// so that all problems can be reported at once, and the kind's own keys
/// as raw values with their places, for the kind to check.
#[derive(Debug, Default)]
pub(crate) struct RawSource {
    name: Option<Spanned<String>>,
    kind: Option<Spanned<String>>,
    url: Option<Spanned<String>>,
    schedule: Option<Spanned<String>>,
    backfill_days: Option<Spanned<u32>>,
    requests_per_minute: Option<Spanned<u32>>,
    timeout_secs: Option<Spanned<u64>>,
    retries: Option<Spanned<u32>>,
    /// Every other key, in file order.
    other: Vec<(String, Spanned<toml::Value>)>,
}

impl<'de> Deserialize<'de> for RawSource {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<RawSource, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = RawSource;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a [[source]] table")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<RawSource, A::Error> {
                let mut r = RawSource::default();
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "name" => r.name = Some(map.next_value()?),
                        "kind" => r.kind = Some(map.next_value()?),
                        "url" => r.url = Some(map.next_value()?),
                        "schedule" => r.schedule = Some(map.next_value()?),
                        "backfill_days" => r.backfill_days = Some(map.next_value()?),
                        "requests_per_minute" => r.requests_per_minute = Some(map.next_value()?),
                        "timeout_secs" => r.timeout_secs = Some(map.next_value()?),
                        "retries" => r.retries = Some(map.next_value()?),
                        _ => {
                            let v = map.next_value()?;
                            r.other.push((key, v));
                        }
                    }
                }
                Ok(r)
            }
        }
        d.deserialize_map(Visit)
    }
}

impl RawSource {
    /// Where the table's first key is, for a table without a name.
    fn first_at(&self) -> usize {
        let common = [
            self.name.as_ref().map(|v| v.span().start),
            self.kind.as_ref().map(|v| v.span().start),
            self.url.as_ref().map(|v| v.span().start),
        ];
        common
            .into_iter()
            .flatten()
            .chain(self.other.iter().map(|(_, v)| v.span().start))
            .min()
            .unwrap_or(0)
    }
}

/// A validated source.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    pub name: SourceName,
    pub kind: &'static Kind,
    /// The service's base URL (or, for `html`, the first page to read).
    pub url: url::Url,
    pub schedule: cron::Schedule,
    pub backfill_days: u32,
    pub http: HttpSettings,
    /// What its kind checked and needs to poll.
    pub settings: Arc<dyn Settings>,
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

/// Checks every `[[source]]` table; problems go to `problems`.
pub(crate) fn build_sources(
    raw: &[RawSource],
    src: &SourceText,
    problems: &mut Vec<Diagnostic>,
) -> Vec<SourceConfig> {
    let mut out = Vec::new();
    let mut names = BTreeSet::new();
    let kinds = super::kinds();
    let kind_list = || kinds.iter().map(|k| k.name).collect::<Vec<_>>().join(", ");
    for r in raw {
        let before = problems.len();
        let mut p = Problems { src, problems };
        let Some(name) = &r.name else {
            p.problems.push(src.at(
                r.first_at(),
                "a [[source]] needs a `name` (unique, e.g. \"forum\")",
            ));
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
        let Some(kind_v) = kinds.iter().copied().find(|k| k.name == kind.1) else {
            p.at(
                kind.0,
                format!("unknown source kind `{}`; known: {}", kind.1, kind_list()),
            );
            continue;
        };
        for (key, v) in &r.other {
            if !kind_v.keys.contains(&key.as_str()) {
                p.problems.push(src.at(
                    v.span().start,
                    format!(
                        "`{key}` is not a key of a `{}` source (its own keys: {})",
                        kind_v.name,
                        if kind_v.keys.is_empty() {
                            "none".to_string()
                        } else {
                            kind_v.keys.join(", ")
                        }
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
                .unwrap_or(kind_v.requests_per_minute),
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
        let mut keys = Keys::new(n, name.span().start, &r.other, src, p.problems);
        let settings = (kind_v.configure)(&mut keys);
        if problems.len() > before {
            continue;
        }
        if let (Some(url), Some(schedule), Some(settings)) = (url, schedule, settings) {
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
                settings,
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

    #[test]
    fn a_kinds_keys_are_typed_and_each_mistake_named_with_its_place() {
        let text = "[[source]]\nname = \"desk\"\nkind = \"zendesk\"\nurl = \"https://x.zendesk.com\"\nemail = \"agent@example.com\"\ntoken_env = \"ZD\"\ncomments = \"yes\"\n\n[[source]]\nname = \"forum\"\nkind = \"html\"\nurl = \"https://f.example\"\npreset = \"phpbb\"\nmax_pages = 0\nauthor = 3\n\n[[source]]\nname = \"mail\"\nkind = \"postmark\"\nurl = \"https://api.postmarkapp.com\"\ntoken_env = \"pm-secret value\"\n";
        let err = crate::config::Config::from_text(std::path::Path::new("lull.toml"), text.into())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("lull.toml:7:12: `comments` must be true or false"),
            "{err}"
        );
        assert!(
            err.contains("lull.toml:14:13: `max_pages` must be at least 1"),
            "{err}"
        );
        assert!(
            err.contains("lull.toml:15:10: `author` must be text"),
            "{err}"
        );
        assert!(
            err.contains("lull.toml:21:13: `token_env` names an environment variable"),
            "{err}"
        );
        // A count too large for its type is refused, not cut down.
        let text = "[[source]]\nname = \"f\"\nkind = \"html\"\nurl = \"https://f.example\"\npreset = \"phpbb\"\nmax_pages = 5000000000\n";
        let err = crate::config::Config::from_text(std::path::Path::new("lull.toml"), text.into())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("lull.toml:6:13: `max_pages` must be a whole number"),
            "{err}"
        );
    }
}
