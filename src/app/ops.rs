//! What one does with lull besides looking at accounts: snooze, alerts,
//! export and backup, import, backtest, detect, deliver, reload, sources.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{App, AppError, Live};
use crate::accounts::Registry;
use crate::alert::{Delivered, MailRecord, Mailer};
use crate::backtest::Backtest;
use crate::config::Config;
use crate::detect::{AccountJudgement, Keep, NoticeKind, Snooze, judge_day_keeping};
use crate::import::{Options, Report};
use crate::store::{Origin, UnmatchedActor};
use crate::types::{AccountId, Day, SourceName};

/// What a snooze did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SnoozeOutcome {
    pub account: AccountId,
    /// The snooze now in force (none after an unsnooze).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snooze: Option<Snooze>,
    /// The one it replaced or lifted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Snooze>,
    /// Notices about the account that were waiting in the outbox and will
    /// not be sent.
    #[serde(default)]
    pub dropped: usize,
}

/// A snooze asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SnoozeRequest {
    /// The last day of the snooze (inclusive).
    pub until: Day,
    /// Why (shown with the account).
    pub reason: String,
}

/// What an import did, with every rejected line.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ImportOutcome {
    pub report: Report,
    /// (line number, what is wrong), in line order; at most
    /// [`MAX_REJECTS_LISTED`] (the report counts them all).
    pub rejects: Vec<(u64, String)>,
    pub seconds: f64,
}

/// Rejected lines listed in an import's answer (all are counted).
pub const MAX_REJECTS_LISTED: usize = 10_000;

/// A backtest asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BacktestRequest {
    pub from: Day,
    pub to: Day,
    /// `[detect]` keys to use instead of the running config's, e.g.
    /// `{"recent_days": 56, "segment": {"smb": {"min_expected": 6}}}`;
    /// the running config does not change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detect: Option<serde_json::Value>,
    /// Also render the HTML report.
    #[serde(default)]
    pub report: bool,
    /// Known disengagements to score the replay against, per tier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub churned: Option<crate::score::ChurnHistory>,
}

/// What a backtest found.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BacktestOutcome {
    pub backtest: Backtest,
    /// Things the person should know (no data in the range, days after
    /// today not replayed).
    pub warnings: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_html: Option<String>,
    /// How its alerts compare with feedback on real alerts in the range.
    #[serde(
        default,
        skip_serializing_if = "super::feedback::FeedbackComparison::is_empty"
    )]
    pub feedback: super::feedback::FeedbackComparison,
    /// Per tier, against `churned` (when given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scores: Option<crate::score::Scores>,
}

/// A detection run asked for.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct DetectRequest {
    /// The day to judge (default today); a day after today only with
    /// `dry_run`.
    pub at: Option<Day>,
    /// Judge and report, record nothing.
    pub dry_run: bool,
    /// What the outcome's `accounts` keep of each judgement (the service's
    /// own runs keep only states): not part of the API.
    #[serde(skip)]
    pub keep: Keep,
}

/// A notice decided, as `lull detect` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NoticeLine {
    pub date: Day,
    pub notice: NoticeKind,
    pub account: AccountId,
    pub csm: String,
}

/// What a detection run decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DetectOutcome {
    pub day: Day,
    pub dry_run: bool,
    /// The day was judged before: nothing new was queued.
    pub already_judged: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Day>,
    pub accounts: Vec<AccountJudgement>,
    pub notices: Vec<NoticeLine>,
    /// Sources found stale by this run, with their last day of data.
    pub newly_stale: Vec<(SourceName, Day)>,
    /// Who is told about stale sources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ops: Option<String>,
    /// Notices queued in the outbox.
    pub queued: usize,
}

/// What a delivery pass did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeliverOutcome {
    /// E-mails waiting before the pass.
    pub queued_before: usize,
    /// False when no `[smtp]` is configured (e-mail cannot be sent; other
    /// receivers can).
    pub smtp: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered: Option<Delivered>,
    /// Delivery could not start (the relay's settings are unusable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReloadOutcome {
    pub accounts: usize,
    /// Changed settings that take effect at the next restart.
    pub restart_needed: Vec<String>,
}

/// One source, as ops look at it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SourceInfo {
    pub name: SourceName,
    /// The connector kind; `import` for a source only imports bring.
    pub kind: String,
    /// The configured base URL (without credentials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Health while the service runs (last poll, error, staleness).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<crate::service::health::SourceStatus>,
    /// Runs of covered days, with who covered them.
    pub coverage: Vec<CoverageRun>,
    /// Actors of this source that matched no account, most events first.
    pub unmatched: Vec<UnmatchedSuggestion>,
}

/// A run of covered days.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CoverageRun {
    pub by: Origin,
    pub first: Day,
    pub last: Day,
}

/// An unmatched actor and the accounts-file line that would map it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UnmatchedSuggestion {
    #[serde(flatten)]
    pub actor: UnmatchedActor,
    /// E.g. `domains = ["acme.com"]` or `handles = { forum = ["bob"] }`,
    /// for the `[[account]]` table of the account this actor belongs to.
    pub accounts_line: String,
}

/// Unmatched actors listed per source.
const UNMATCHED_PER_SOURCE: usize = 200;

impl App {
    /// Snoozes an account until a day; its queued notices are dropped.
    pub fn snooze(
        &self,
        id: &str,
        req: &SnoozeRequest,
        by: &str,
    ) -> Result<SnoozeOutcome, AppError> {
        let account = self.known(id)?;
        let today = self.today();
        if req.until < today {
            return Err(AppError::bad_request(format!(
                "the snooze would end on {}, which is in the past (today is {today})",
                req.until
            )));
        }
        let reason = req.reason.trim();
        if reason.is_empty() {
            return Err(AppError::bad_request(
                "a snooze needs a reason (it is shown with the account)",
            ));
        }
        if reason.chars().count() > 500 {
            return Err(AppError::bad_request(
                "the reason is longer than 500 characters",
            ));
        }
        let previous = self.snooze_of(&account)?;
        let s = Snooze {
            until: req.until,
            reason: reason.to_string(),
            set_at: self.clock.now(),
            by: Some(by.to_string()),
        };
        let dropped = self.store.set_snooze(&account, Some(&s))?;
        tracing::info!(account = %account, until = %req.until, by, dropped, "account snoozed");
        self.invalidate();
        Ok(SnoozeOutcome {
            account,
            snooze: Some(s),
            previous,
            dropped,
        })
    }

    /// Lifts an account's snooze.
    pub fn unsnooze(&self, id: &str, by: &str) -> Result<SnoozeOutcome, AppError> {
        let account = self.known(id)?;
        let previous = crate::detect::snoozes(&self.store, Day(i32::MIN / 2))?.remove(&account);
        self.store.set_snooze::<Snooze>(&account, None)?;
        tracing::info!(account = %account, by, "snooze lifted");
        self.invalidate();
        Ok(SnoozeOutcome {
            account,
            snooze: None,
            previous,
            dropped: 0,
        })
    }

    pub(crate) fn known(&self, id: &str) -> Result<AccountId, AppError> {
        let live = self.live();
        match live.registry.by_id(id) {
            Some(i) => Ok(live.registry.get(i).id.clone()),
            None => Err(AppError::not_found(format!(
                "no account `{id}` in {} (use the account's `id`; `lull accounts` lists them)",
                self.config.accounts_file.display()
            ))),
        }
    }

    /// Every alert e-mail: queued, sent, failed.
    pub fn alerts(&self) -> Result<Vec<MailRecord>, AppError> {
        Ok(self.messages()?)
    }

    /// Daily counts as JSON Lines (the `lull export` format) to `out`.
    pub fn export(
        &self,
        from: Option<Day>,
        to: Option<Day>,
        out: &mut dyn Write,
    ) -> Result<(), anyhow::Error> {
        #[derive(Serialize)]
        struct Line<'a> {
            account: &'a str,
            source: &'a str,
            kind: &'a str,
            day: Day,
            count: u64,
        }
        for b in self.store.buckets(from, to) {
            let b = b?;
            let line = Line {
                account: b.account.as_str(),
                source: b.source.as_str(),
                kind: b.kind.as_str(),
                day: b.day,
                count: b.count,
            };
            serde_json::to_writer(&mut *out, &line)
                .map_err(std::io::Error::from)
                .and_then(|()| out.write_all(b"\n"))?;
        }
        Ok(())
    }

    /// [`App::export`] (or a backup) of one instant into a file beside the
    /// store that is already unlinked: the caller streams it at its pace
    /// while writes go on.
    pub fn snapshot(&self, what: Snapshot) -> Result<std::fs::File, anyhow::Error> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = self
            .store
            .path()
            .parent()
            .unwrap_or(std::path::Path::new("."));
        let path = dir.join(format!(
            ".lull-snapshot-{}-{}.tmp",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let result = (|| -> anyhow::Result<std::fs::File> {
            let mut f = std::io::BufWriter::new(std::fs::File::create(&path)?);
            match what {
                Snapshot::Export { from, to } => {
                    self.store.consistent(|| self.export(from, to, &mut f))?;
                }
                Snapshot::Backup => {
                    self.store.backup_to(&mut f)?;
                }
            }
            f.flush()?;
            Ok(std::fs::File::open(&path)?)
        })();
        let _ = std::fs::remove_file(&path);
        result
    }

    /// Imports JSON Lines from `reader`, exactly once; `on_reject` is told
    /// every bad line as it is found.
    pub fn import(
        &self,
        reader: impl BufRead,
        input: &str,
        batch_size: usize,
        mut on_reject: impl FnMut(u64, &str),
        on_progress: impl FnMut(u64),
    ) -> Result<ImportOutcome, AppError> {
        let started = std::time::Instant::now();
        let live = self.live();
        let tz = self.config.timezone;
        let mut rejects = Vec::new();
        let report = crate::import::import(
            reader,
            input,
            &self.store,
            &live.registry,
            Options {
                batch_size,
                limits: self.config.limits.clone(),
                ..Options::new(tz, self.today())
            },
            |line, msg| {
                if rejects.len() < MAX_REJECTS_LISTED {
                    rejects.push((line, msg.to_string()));
                }
                on_reject(line, msg);
            },
            on_progress,
        )?;
        self.invalidate();
        Ok(ImportOutcome {
            report,
            rejects,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// Replays detection over `from..=to` (with other thresholds, if
    /// asked), recording and sending nothing.
    pub fn backtest(
        &self,
        req: &BacktestRequest,
        progress: impl FnMut(usize),
    ) -> Result<BacktestOutcome, AppError> {
        if req.from > req.to {
            return Err(AppError::bad_request(format!(
                "from {} is after to {}",
                req.from, req.to
            )));
        }
        let live = self.live();
        let detect = match &req.detect {
            None => live.detect.clone(),
            Some(overrides) => std::sync::Arc::new(self.detect_with(overrides)?),
        };
        let mut warnings = Vec::new();
        let today = self.today();
        let mut to = req.to;
        if to > today {
            warnings.push(format!(
                "days after today ({}..{}) have no data yet: the replay ends today",
                today.plus(1),
                req.to
            ));
            to = today;
        }
        let from = req.from.min(to);
        let covered = self
            .store
            .sources()?
            .iter()
            .map(|s| self.store.coverage(s))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .flatten()
            .any(|s| s.first <= to && s.last >= from);
        if !covered {
            warnings.push(format!(
                "no source has data between {from} and {to}: nothing could fire (is this the right range, and was history imported?)"
            ));
        }
        let backtest =
            crate::backtest::run(&self.store, &live.registry, &detect, from, to, progress)?;
        let scores = match &req.churned {
            Some(history) => Some(self.score(history, &backtest, &live.registry, &detect)?),
            None => None,
        };
        let feedback = super::feedback::compare(&backtest, &self.feedback(None)?);
        let report_html = req
            .report
            .then(|| crate::report::render(&backtest, &detect, scores.as_ref(), &feedback));
        Ok(BacktestOutcome {
            backtest,
            warnings,
            report_html,
            feedback,
            scores,
        })
    }

    /// Scores a backtest against known disengagements; what a two-column
    /// churn file leaves out (first activity, engagement end) is read
    /// from the store.
    fn score(
        &self,
        history: &crate::score::ChurnHistory,
        backtest: &crate::backtest::Backtest,
        registry: &crate::accounts::Registry,
        detect: &crate::detect::DetectConfig,
    ) -> Result<crate::score::Scores, AppError> {
        let mut observed = std::collections::HashMap::new();
        if !history.complete {
            for a in registry.accounts() {
                observed.insert(a.id.to_string(), crate::score::Observed::default());
            }
            // Daily activity per account, all activity kinds together.
            let mut daily: std::collections::HashMap<String, BTreeMap<Day, u64>> =
                std::collections::HashMap::new();
            for s in self.store.series() {
                let s = s?;
                if !observed.contains_key(s.account.as_str())
                    || !detect.is_activity(s.kind.as_str())
                {
                    continue;
                }
                let into = daily.entry(s.account.to_string()).or_default();
                for (d, n) in s.entries {
                    *into.entry(d).or_default() += n;
                }
            }
            for (account, days) in daily {
                let entries: Vec<(Day, u64)> = days.into_iter().collect();
                let o = crate::score::Observed {
                    first_activity: entries.first().map(|e| e.0),
                    engagement_end: crate::score::engagement_end(&entries, backtest.to),
                };
                observed.insert(account, o);
            }
        }
        let csms: std::collections::BTreeSet<String> = registry
            .accounts()
            .iter()
            .map(|a| a.csm.trim().to_lowercase())
            .collect();
        let weeks = f64::from(backtest.to.0 - backtest.from.0 + 1) / 7.0;
        Ok(crate::score::score(
            history,
            &backtest.notices,
            &observed,
            csms.len(),
            weeks,
        ))
    }

    /// The running `[detect]` with `overrides` (a JSON object of its keys)
    /// applied, checked as strictly as the config file.
    pub fn detect_with(
        &self,
        overrides: &serde_json::Value,
    ) -> Result<crate::detect::DetectConfig, AppError> {
        let text = std::fs::read_to_string(&self.config_path).map_err(|e| {
            AppError::new(
                "config_unreadable",
                500,
                format!("reading {}: {e}", self.config_path.display()),
            )
        })?;
        let mut doc: toml::Table = toml::from_str(&text).map_err(|e| {
            AppError::new(
                "config_invalid",
                500,
                format!("{}: {e}", self.config_path.display()),
            )
        })?;
        let over: toml::Value = serde_json::from_value(overrides.clone()).map_err(|e| {
            AppError::bad_request(format!(
                "the `detect` overrides are not a table of keys: {e}"
            ))
        })?;
        let Some(over) = over.as_table() else {
            return Err(AppError::bad_request(
                "the `detect` overrides must be an object of [detect] keys",
            ));
        };
        let detect = doc
            .entry("detect")
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if let Some(t) = detect.as_table_mut() {
            merge(t, over);
        }
        let merged = toml::to_string(&doc)
            .map_err(|e| AppError::bad_request(format!("the `detect` overrides: {e}")))?;
        let config = Config::from_text(&self.config_path, merged).map_err(|d| {
            AppError::bad_request(format!(
                "the thresholds asked for are not valid: {}",
                d.0.iter()
                    .map(|p| p.message.clone())
                    .collect::<Vec<_>>()
                    .join("; ")
            ))
        })?;
        let mut detect = config.detect;
        detect.polled = self.live().detect.polled.clone();
        Ok(detect)
    }

    /// Judges a day; records its states and queues its notices unless
    /// `dry_run`.
    pub fn detect(&self, req: &DetectRequest) -> Result<DetectOutcome, AppError> {
        let today = self.today();
        let at = req.at.unwrap_or(today);
        if at > today && !req.dry_run {
            return Err(AppError::bad_request(format!(
                "{at} has not happened yet (today is {today}): recording it would freeze detection until then; judge it with a dry run, which records nothing"
            )));
        }
        let live = self.live();
        let span = tracing::info_span!("detection", day = %at, dry_run = req.dry_run);
        let _enter = span.enter();
        let run = judge_day_keeping(&self.store, &live.registry, &live.detect, at, req.keep)?;
        let ops = live.alerts.ops_email.as_ref().map(|m| m.to_string());
        let queued = if req.dry_run {
            0
        } else {
            let q = run.record(&self.store, ops.as_deref())?;
            self.invalidate();
            q
        };
        tracing::info!(
            accounts = run.accounts.len(),
            notices = run.notices.len(),
            queued,
            "detection done"
        );
        Ok(DetectOutcome {
            day: at,
            dry_run: req.dry_run,
            already_judged: run.already_judged,
            previous: run.previous,
            newly_stale: run.newly_stale().map(|(s, d)| (s.clone(), *d)).collect(),
            notices: run
                .notices
                .iter()
                .map(|n| NoticeLine {
                    date: n.date,
                    notice: n.notice,
                    account: n.account.clone(),
                    csm: n.csm.clone(),
                })
                .collect(),
            accounts: run.accounts,
            ops,
            queued,
        })
    }

    /// Sends what the outbox holds, retrying a relay that is down for
    /// `retry_for` (or until `stop`); one pass at a time.
    pub async fn deliver(
        &self,
        retry_for: Duration,
        stop: impl std::future::Future<Output = ()>,
        halt: &tokio_util::sync::CancellationToken,
    ) -> Result<DeliverOutcome, AppError> {
        let _one = self.delivery.lock().await;
        let live = self.live();
        let queued_before = {
            let store = self.store.clone();
            let from = self.sender();
            let live = live.clone();
            tokio::task::spawn_blocking(move || {
                let v = crate::alert::deliver::View {
                    from: &from,
                    routing: &live.routing,
                    registry: Some(&live.registry),
                };
                crate::alert::deliver::pending(&store, v).map(|p| p.len())
            })
            .await
            .map_err(|e| AppError::new("internal", 500, e.to_string()))??
        };
        let smtp = self.config.smtp.is_some();
        let http_receivers = live.routing.has_http_receivers();
        if !smtp && !http_receivers {
            return Ok(DeliverOutcome {
                queued_before,
                smtp,
                ..DeliverOutcome::default()
            });
        }
        if queued_before == 0 {
            return Ok(DeliverOutcome {
                queued_before,
                smtp,
                delivered: Some(Delivered::default()),
                error: None,
            });
        }
        let mailer = match self.config.smtp.as_ref().map(Mailer::new) {
            None => None,
            Some(Ok(m)) => Some(m),
            Some(Err(e)) if !http_receivers => {
                return Ok(DeliverOutcome {
                    queued_before,
                    smtp,
                    delivered: None,
                    error: Some(e.to_string()),
                });
            }
            Some(Err(e)) => {
                tracing::error!(error = %e, "alert e-mails stay queued; the other receivers deliver");
                None
            }
        };
        let http =
            crate::alert::receivers::HttpReceivers::new(&live.routing, self.slack_users.clone())
                .map_err(|e| AppError::new("internal", 500, e))?;
        // One small read of the store (the key is made once).
        let links = match self.links() {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "alerts go without console links");
                None
            }
        };
        let from = self.sender();
        let senders = crate::alert::deliver::Senders {
            mailer: mailer.as_ref(),
            http: &http,
            links: links.as_ref(),
        };
        let delivered = crate::alert::deliver(
            &self.store,
            self.view(&live, &from),
            &senders,
            retry_for,
            stop,
            halt,
        )
        .await?;
        self.invalidate();
        Ok(DeliverOutcome {
            queued_before,
            smtp,
            delivered: Some(delivered),
            error: None,
        })
    }

    /// Re-reads the accounts file and the parts of the config that can
    /// change while lull runs; a mistake keeps what runs.
    pub fn reload(&self) -> Result<ReloadOutcome, AppError> {
        let refused = |why: String| {
            AppError::new(
                "reload_refused",
                400,
                format!(
                    "reload refused, still running with the previous config and accounts: {why}"
                ),
            )
        };
        let new = Config::load(&self.config_path).map_err(|d| refused(d.to_string()))?;
        let registry = Registry::load(&new.accounts_file, &new.identity)
            .map_err(|d| refused(d.to_string()))?;
        let restart_needed = crate::service::needs_restart(&self.config, &new)
            .into_iter()
            .map(str::to_string)
            .collect();
        let mut detect = new.detect;
        // Staleness is judged for the sources that actually run.
        detect.polled = self.config.detect.polled.clone();
        let accounts = registry.len();
        self.set_live(Live {
            registry: std::sync::Arc::new(registry),
            detect: std::sync::Arc::new(detect),
            alerts: std::sync::Arc::new(new.alerts),
            routing: std::sync::Arc::new(new.routing),
        });
        Ok(ReloadOutcome {
            accounts,
            restart_needed,
        })
    }

    /// Every source: configured ones and ones only imports brought, with
    /// coverage, unmatched actors and (from the service) health.
    pub fn sources(
        &self,
        health: Option<&BTreeMap<String, crate::service::health::SourceStatus>>,
    ) -> Result<Vec<SourceInfo>, AppError> {
        let mut names: Vec<SourceName> =
            self.config.sources.iter().map(|s| s.name.clone()).collect();
        for s in self.store.sources()? {
            if !names.contains(&s) {
                names.push(s);
            }
        }
        let unmatched = self.store.unmatched()?;
        let mut out = Vec::new();
        for name in names {
            let configured = self.config.sources.iter().find(|s| s.name == name);
            let coverage = self
                .store
                .coverage_by(&name)?
                .into_iter()
                .map(|(by, s)| CoverageRun {
                    by,
                    first: s.first,
                    last: s.last,
                })
                .collect();
            let unmatched = unmatched
                .iter()
                .filter(|u| u.source == name)
                .take(UNMATCHED_PER_SOURCE)
                .map(|u| UnmatchedSuggestion {
                    accounts_line: accounts_line(&u.source, &u.actor),
                    actor: u.clone(),
                })
                .collect();
            out.push(SourceInfo {
                kind: configured.map_or("import".into(), |c| c.kind.name().to_string()),
                url: configured.map(|c| crate::sources::http::display_url(&c.url)),
                health: health.and_then(|h| h.get(name.as_str()).cloned()),
                coverage,
                unmatched,
                name,
            });
        }
        Ok(out)
    }
}

/// What to write in an account's `[[account]]` table so `actor` maps to it.
pub fn accounts_line(source: &SourceName, actor: &str) -> String {
    let quoted = toml::Value::String(actor.to_string()).to_string();
    if let Some(domain) = actor.strip_prefix('@') {
        format!("domains = [{}]", toml::Value::String(domain.to_string()))
    } else if let Some((_, domain)) = actor.rsplit_once('@')
        && crate::accounts::is_plausible_email(actor)
    {
        if crate::accounts::is_public_mail_domain(domain) {
            format!("emails = [{quoted}]")
        } else {
            format!("domains = [{}]", toml::Value::String(domain.to_string()))
        }
    } else {
        let key = if source
            .as_str()
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            source.to_string()
        } else {
            toml::Value::String(source.to_string()).to_string()
        };
        format!("handles = {{ {key} = [{quoted}] }}")
    }
}

fn merge(into: &mut toml::Table, from: &toml::Table) {
    for (k, v) in from {
        match (into.get_mut(k), v) {
            (Some(toml::Value::Table(a)), toml::Value::Table(b)) => merge(a, b),
            _ => {
                into.insert(k.clone(), v.clone());
            }
        }
    }
}

/// What [`App::snapshot`] takes.
#[derive(Debug, Clone, Copy)]
pub enum Snapshot {
    Export { from: Option<Day>, to: Option<Day> },
    Backup,
}
