//! Sources: the connectors that read the places customers make noise, and
//! the one way a poll's result reaches the store.
//!
//! A connector ([`Connector`]) only talks HTTP (through [`http::Http`]) and
//! returns a [`Harvest`]: the activities it read, the time span it read
//! completely, and its next cursor. [`poll`] resolves actors to accounts
//! and commits activities, coverage and cursor in one atomic, flushed
//! store commit, so the cursor never runs ahead of what is stored and a day
//! is covered only when a poll actually read it.

pub mod config;
mod discourse;
mod email;
mod freshdesk;
pub mod html;
pub mod http;
mod intercom;
pub mod kind;
mod mailchimp;
mod mailgun;
mod postmark;
mod slack;
pub mod timefmt;
mod zendesk;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::Instrument;

use crate::accounts::{Registry, Resolved};
use crate::limits::Limits;
use crate::store::{Committed, Ingest, Origin, Owner, Span, Store, StoreError};
use crate::types::{Day, SourceName};

pub use config::SourceConfig;
pub use http::SourceError;
pub use kind::Kind;

/// Every connector kind lull has. Adding one is a module that exports its
/// [`Kind`] and one line here.
static KINDS: &[&Kind] = &[
    &discourse::KIND,
    &html::KIND,
    &zendesk::KIND,
    &freshdesk::KIND,
    &mailchimp::KIND,
    &mailgun::KIND,
    &postmark::KIND,
    &slack::KIND,
    &intercom::KIND,
];

/// Kinds registered at run time by a program that embeds lull (and by
/// the test that proves a new kind needs nothing but its module).
static REGISTERED: std::sync::RwLock<Vec<&'static Kind>> = std::sync::RwLock::new(Vec::new());

/// Adds a connector kind to the ones the config may name; a kind with a
/// name already known is ignored.
pub fn register(kind: &'static Kind) {
    let mut r = REGISTERED.write().unwrap_or_else(|e| e.into_inner());
    if !KINDS.contains(&kind) && !r.contains(&kind) {
        r.push(kind);
    }
}

/// Every kind the config may name: lull's own, then registered ones.
pub fn kinds() -> Vec<&'static Kind> {
    let r = REGISTERED.read().unwrap_or_else(|e| e.into_inner());
    KINDS.iter().copied().chain(r.iter().copied()).collect()
}

/// How an alert names a count of the activity kind `activity` ("forum
/// posts"), from the kinds that store it. Asked per channel by alerts and
/// console pages, so it builds no list.
pub fn activity_words(activity: &str) -> Option<&'static str> {
    KINDS
        .iter()
        .find_map(|k| k.words_for(activity))
        .or_else(|| {
            let r = REGISTERED.read().unwrap_or_else(|e| e.into_inner());
            r.iter().find_map(|k| k.words_for(activity))
        })
}

/// One thing a customer did, as a connector read it.
#[derive(Debug, Clone, PartialEq)]
pub struct Activity {
    /// Unique within the source; the same thing read twice has the same id.
    pub id: String,
    pub kind: &'static str,
    pub at: DateTime<Utc>,
    /// Who did it, most specific identity first: a forum handle, an e-mail
    /// address, then fallbacks such as `@domain` of their company. The
    /// first that resolves to an account (or to staff) decides.
    pub actors: Vec<String>,
    /// Counted once per id even if read again with another time (an
    /// e-mail open: "R opened M" is one event, whichever open we saw).
    pub once: bool,
}

/// What one poll read.
#[derive(Debug, Default)]
pub struct Harvest {
    pub activities: Vec<Activity>,
    /// The time span the poll read completely; its days become covered.
    /// `None` when it could not say (nothing is marked).
    pub covered: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// Where the next poll starts (the connector's own JSON).
    pub cursor: Vec<u8>,
    /// Items by the vendor's own staff, seen and left out.
    pub staff: u64,
}

/// What a connector gets for one poll.
pub struct PollContext<'a> {
    pub name: &'a SourceName,
    pub http: &'a http::Http,
    /// The stored cursor, if an earlier poll left one.
    pub cursor: Option<&'a [u8]>,
    /// The poll's clock: everything up to here may be read.
    pub now: DateTime<Utc>,
    /// Where a first poll starts (`backfill_days` before `now`).
    pub backfill_start: DateTime<Utc>,
    /// The config's time zone, for times a service prints without one.
    pub tz: Tz,
}

impl PollContext<'_> {
    /// The stored cursor as the connector's type; an unreadable one (from
    /// an older lull) is dropped with a warning and the poll starts from
    /// the backfill window: dedupe makes rereading harmless.
    pub fn cursor<T: DeserializeOwned>(&self) -> Option<T> {
        let raw = self.cursor?;
        match serde_json::from_slice(raw) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(source = %self.name, error = %e, "stored cursor unreadable; reading the backfill window again");
                None
            }
        }
    }
}

pub type PollFuture<'a> = Pin<Box<dyn Future<Output = Result<Harvest, SourceError>> + Send + 'a>>;

/// A connector: reads one service for one configured source.
pub trait Connector: Send + Sync {
    fn poll<'a>(&'a self, cx: &'a PollContext<'a>) -> PollFuture<'a>;
}

/// The cursor of connectors that resume by time alone: the end of the
/// span the last poll covered.
#[derive(Serialize, serde::Deserialize)]
pub(crate) struct SpanCursor {
    pub covered_to: DateTime<Utc>,
}

/// E-mail platforms' event lists: each poll rereads this far before where
/// the previous one ended, so a delivery and its machine open are seen
/// together even when a poll boundary falls between them (what is read
/// twice is deduplicated).
pub(crate) const EMAIL_OVERLAP: chrono::Duration = chrono::Duration::minutes(10);

/// Serialises a cursor (a connector's own small JSON struct).
pub(crate) fn cursor_bytes<T: Serialize>(c: &T) -> Vec<u8> {
    serde_json::to_vec(c).unwrap_or_default()
}

/// A configured source, ready to poll: its connector and its HTTP view.
pub struct Source {
    pub config: SourceConfig,
    /// What a poll of it may make lull do ([limits]).
    pub limits: Limits,
    http: http::Http,
    connector: Box<dyn Connector>,
}

impl Source {
    /// Builds the connector for `config`; reads its secrets from the
    /// environment (a missing one is an error naming the variable).
    pub fn build(
        config: &SourceConfig,
        client: reqwest::Client,
        limits: &Limits,
    ) -> Result<Source, SourceError> {
        let kind::Connection { auth, connector } = config.settings.connect(&kind::Connect {
            base: &config.url,
            limits,
        })?;
        Ok(Source {
            config: config.clone(),
            limits: limits.clone(),
            http: http::Http::new(client, config.http, auth, &config.url, limits),
            connector,
        })
    }

    pub fn name(&self) -> &SourceName {
        &self.config.name
    }
}

/// A poll that failed, naming its source.
#[derive(Debug, thiserror::Error)]
#[error("source `{source_name}` ({kind}): {error}")]
pub struct PollError {
    pub source_name: SourceName,
    pub kind: &'static str,
    #[source]
    pub error: PollFailure,
}

#[derive(Debug, thiserror::Error)]
pub enum PollFailure {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("storing the poll: {0}")]
    Store(#[from] StoreError),
}

/// What a successful poll did.
#[derive(Debug, Clone, Serialize)]
pub struct PollReport {
    pub source: SourceName,
    pub kind: &'static str,
    /// Activities the connector read (before dedupe).
    pub read: u64,
    pub counted: u64,
    pub duplicates: u64,
    pub unmatched: u64,
    pub staff: u64,
    pub requests: u64,
    /// Activities left out because their date is implausible ([limits]).
    pub implausible: u64,
    /// First and last day this poll marked covered.
    pub covered: Option<(Day, Day)>,
    pub seconds: f64,
}

/// Polls `source` once and commits what it read: activities, coverage and
/// cursor together, or nothing at all.
pub async fn poll(
    source: &Source,
    store: Arc<Store>,
    registry: Arc<Registry>,
    tz: Tz,
    now: DateTime<Utc>,
) -> Result<PollReport, PollError> {
    let span =
        tracing::info_span!("poll", source = %source.name(), kind = source.config.kind.name());
    let fail = |error: PollFailure| PollError {
        source_name: source.name().clone(),
        kind: source.config.kind.name(),
        error,
    };
    async {
        let started = std::time::Instant::now();
        source.http.begin_poll();
        let requests_before = source.http.requests();
        let name = source.name().clone();
        let cursor = {
            let name = name.clone();
            blocking(&store, move |s| s.cursor(&name))
                .await
                .map_err(fail)?
        };
        let backfill = chrono::Duration::days(i64::from(source.config.backfill_days));
        let cx = PollContext {
            name: &name,
            http: &source.http,
            cursor: cursor.as_deref(),
            now,
            backfill_start: now - backfill,
            tz,
        };
        let harvest = source
            .connector
            .poll(&cx)
            .await
            .map_err(|e| fail(e.into()))?;
        let read = harvest.activities.len() as u64;
        let staff_read = harvest.staff;
        let Prepared {
            ingest,
            staff,
            covered,
            implausible,
        } = prepare(
            &name,
            harvest,
            &registry,
            tz,
            &source.limits,
            Day::of(now, tz),
        )
        .map_err(|e| fail(e.into()))?;
        let committed: Committed = blocking(&store, move |s| s.commit(&ingest))
            .await
            .map_err(fail)?;
        let report = PollReport {
            source: name,
            kind: source.config.kind.name(),
            read,
            counted: committed.counted,
            duplicates: committed.duplicates,
            unmatched: committed.unmatched,
            staff: staff + staff_read,
            requests: source.http.requests() - requests_before,
            implausible,
            covered,
            seconds: started.elapsed().as_secs_f64(),
        };
        tracing::info!(
            read = report.read,
            counted = report.counted,
            duplicates = report.duplicates,
            unmatched = report.unmatched,
            requests = report.requests,
            "poll done"
        );
        Ok(report)
    }
    .instrument(span)
    .await
}

/// Runs a (blocking) store call off the async workers.
async fn blocking<T: Send + 'static>(
    store: &Arc<Store>,
    f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, PollFailure> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .map_err(|e| PollFailure::Source(SourceError::Other(e.to_string())))?
        .map_err(PollFailure::from)
}

/// A poll's commit, ready to go.
struct Prepared {
    ingest: Ingest,
    /// Activities whose actor is staff (left out).
    staff: u64,
    covered: Option<(Day, Day)>,
    /// Activities dated outside `[limits]`' plausible window (left out).
    implausible: u64,
}

/// Resolves actors and builds the one atomic commit of a poll.
fn prepare(
    name: &SourceName,
    harvest: Harvest,
    registry: &Registry,
    tz: Tz,
    limits: &Limits,
    today: Day,
) -> Result<Prepared, StoreError> {
    let mut ingest = Ingest::default();
    let mut staff = 0;
    let mut implausible = 0;
    let source = name.as_str();
    for a in &harvest.activities {
        let day = Day::of(a.at, tz);
        if let Err(why) = limits.check_day(day, today) {
            if implausible == 0 {
                tracing::warn!(source = %name, id = %a.id, "an activity is left out: {why}");
            }
            implausible += 1;
            continue;
        }
        let mut owner = None;
        for actor in &a.actors {
            match registry.resolve(source, actor) {
                Resolved::Account(i) => {
                    owner = Some(Ok(i));
                    ingest.seen_by(registry.get(i).id.as_str(), source, a.kind, day, actor);
                    break;
                }
                Resolved::Staff => {
                    owner = Some(Err(()));
                    break;
                }
                Resolved::Unmatched => {}
            }
        }
        let owner = match owner {
            Some(Ok(i)) => Owner::Account(registry.get(i).id.as_str()),
            Some(Err(())) => {
                staff += 1;
                continue;
            }
            None => Owner::Unmatched {
                actor: a.actors.first().map(String::as_str).unwrap_or("(unknown)"),
            },
        };
        if a.once {
            ingest.add_once(source, &a.id, owner, a.kind, day)?;
        } else {
            ingest.add(source, &a.id, owner, a.kind, day, 1)?;
        }
    }
    let mut covered = None;
    if let Some((from, to)) = harvest.covered
        && from <= to
    {
        // Never past today, whatever a service's clock says.
        let (first, last) = (Day::of(from, tz), Day::of(to, tz).min(today));
        if first <= last {
            ingest
                .coverage
                .push((name.clone(), Span { first, last }, Origin::Poll));
            covered = Some((first, last));
        }
    }
    ingest.cursors.push((name.clone(), harvest.cursor));
    Ok(Prepared {
        ingest,
        staff,
        covered,
        implausible,
    })
}

/// Polls several sources at once (each has its own rate limit); returns
/// each one's outcome in the order given.
pub async fn poll_all(
    sources: &[Source],
    store: Arc<Store>,
    registry: Arc<Registry>,
    tz: Tz,
) -> Vec<Result<PollReport, PollError>> {
    let now = Utc::now();
    let futures = sources
        .iter()
        .map(|s| poll(s, store.clone(), registry.clone(), tz, now));
    futures_util::future::join_all(futures).await
}

/// Fuzz entry (fuzz/): decode `data` as every response body the connector
/// of `kind` reads.
#[doc(hidden)]
pub fn fuzz_json(kind: &Kind, data: &[u8]) {
    (kind.fuzz)(data)
}

/// Joins a "next page" link the service gave onto the configured base URL:
/// only its path and query are kept, so a service (or a test server)
/// behind another address is followed where the config points, and a
/// hostile response cannot send lull's credentials elsewhere.
pub(crate) fn follow(base: &url::Url, next: &str) -> Result<url::Url, SourceError> {
    let parsed = url::Url::parse(next).or_else(|_| base.join(next));
    let n = parsed.map_err(|e| {
        SourceError::Other(format!(
            "the service's next-page link `{next}` is not a URL: {e}"
        ))
    })?;
    let mut out = base.clone();
    out.set_path(n.path());
    out.set_query(n.query());
    Ok(out)
}

/// A URL under the configured base (keeping any path prefix it has).
pub(crate) fn endpoint(base: &url::Url, path: &str) -> url::Url {
    let mut u = base.clone();
    let prefix = base.path().trim_end_matches('/');
    u.set_path(&format!("{prefix}/{}", path.trim_start_matches('/')));
    u.set_query(None);
    u
}

/// A help desk requester's identities, most specific first: their e-mail
/// address, then their organisation's domains (as `@domain`); with
/// neither, `fallback` (the desk's own id for them), so they show up
/// among the unmatched actors and can be mapped.
pub(crate) fn requester_identities<'a>(
    email: Option<&str>,
    domains: impl IntoIterator<Item = &'a String>,
    fallback: Option<String>,
) -> Vec<String> {
    let mut actors: Vec<String> = email.map(str::to_string).into_iter().collect();
    actors.extend(domains.into_iter().map(|d| format!("@{d}")));
    if actors.is_empty() {
        actors.push(fallback.unwrap_or_else(|| "(no requester)".to_string()));
    }
    actors
}

/// Parses an RFC 3339 time from an API, naming the field on failure.
pub(crate) fn api_time(url: &url::Url, field: &str, s: &str) -> Result<DateTime<Utc>, SourceError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| SourceError::Json {
            url: url.to_string(),
            detail: format!("`{field}` = {s:?} is not an RFC 3339 time: {e}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's Sources table is the kinds' own rows, in registry
    /// order: a kind's docs live with its code and cannot drift.
    #[test]
    fn the_readme_sources_table_is_the_kinds_docs_rows() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
        let readme = std::fs::read_to_string(path).unwrap();
        let rows: Vec<&str> = readme
            .lines()
            .skip_while(|l| !l.starts_with("| kind | keys | reads |"))
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .collect();
        let want: Vec<String> = KINDS.iter().map(|k| k.docs_row()).collect();
        assert_eq!(rows, want);
    }

    #[test]
    fn kinds_have_unique_names_and_keys_of_their_own() {
        let mut names: Vec<&str> = KINDS.iter().map(|k| k.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), KINDS.len());
        for k in KINDS {
            for key in k.keys {
                assert!(!config::COMMON_KEYS.contains(key), "{}: {key}", k.name);
            }
            assert!(k.requests_per_minute > 0, "{}", k.name);
            // The documented default is the one used.
            assert!(
                k.docs
                    .rate
                    .starts_with(&format!("{}/min", k.requests_per_minute)),
                "{}: {}",
                k.name,
                k.docs.rate
            );
            assert!(!k.activities.is_empty(), "{}", k.name);
        }
    }
}
