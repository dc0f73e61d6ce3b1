//! Feedback on alerts ("useful", "false alarm", "already knew"): stored
//! with who gave it, when and the notice it answers; exported in backups,
//! counted in `/metrics`, shown on the account's page, and compared with
//! what a backtest would alert.
//!
//! Also the console's sign-in links and the signer both use: the key is
//! the store's, so links survive restarts and a new store starts afresh.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{App, AppError};
use crate::backtest::Backtest;
use crate::console::config::LOGIN_LINK_MINUTES;
use crate::console::tokens::{self, Links, LoginClaims, Signer};
use crate::types::{AccountId, Day};

/// What a person says about an alert.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The alert told them something they acted on.
    Useful,
    /// The account was fine.
    FalseAlarm,
    /// True, but they knew already.
    AlreadyKnew,
}

impl Verdict {
    pub const ALL: [Verdict; 3] = [Verdict::Useful, Verdict::FalseAlarm, Verdict::AlreadyKnew];

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Useful => "useful",
            Verdict::FalseAlarm => "false_alarm",
            Verdict::AlreadyKnew => "already_knew",
        }
    }

    /// As a person reads it.
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Useful => "useful",
            Verdict::FalseAlarm => "false alarm",
            Verdict::AlreadyKnew => "already knew",
        }
    }

    pub fn parse(s: &str) -> Option<Verdict> {
        Verdict::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// Feedback on one notice about one account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Feedback {
    pub account: AccountId,
    /// The notice it answers: its detection day and kind (`silent`,
    /// `reminder`, `recovered`).
    pub day: Day,
    pub kind: String,
    pub verdict: Verdict,
    /// An e-mail address, or an API token's name.
    pub by: String,
    pub at: chrono::DateTime<chrono::Utc>,
    /// `console`, `email` (a link in the alert) or `api`.
    pub via: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl crate::store::Value for Feedback {
    const WHAT: &'static str = "feedback";
}

/// Feedback asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FeedbackRequest {
    /// The day of the alert it answers.
    pub day: Day,
    /// The alert's kind: `silent`, `reminder` or `recovered`.
    pub kind: String,
    pub verdict: Verdict,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Feedback received, counted by verdict (`lull_feedback_total`).
pub const FEEDBACK_TOTAL: &str = "lull_feedback_total";

/// How a backtest's alerts compare with the feedback given on real ones.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FeedbackComparison {
    /// Feedback on alerts within the backtest's range, per verdict.
    pub given: BTreeMap<String, usize>,
    /// Of those, how many the backtest alerts too (the same account within
    /// [`MATCH_DAYS`] of the alert's day), per verdict.
    pub still_alerted: BTreeMap<String, usize>,
}

impl FeedbackComparison {
    pub fn is_empty(&self) -> bool {
        self.given.is_empty()
    }

    /// "useful 4/5 still alerted, false alarm 1/6 still alerted".
    pub fn line(&self) -> String {
        Verdict::ALL
            .iter()
            .filter_map(|v| {
                let given = *self.given.get(v.as_str())?;
                let kept = self.still_alerted.get(v.as_str()).copied().unwrap_or(0);
                Some(format!("{} {kept}/{given} still alerted", v.label()))
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A backtest's silence episode this close to a real alert's day counts
/// as alerting about the same thing (other thresholds move the day an
/// alert fires, and when an episode ends).
pub const MATCH_DAYS: i32 = 14;

/// Compares `backtest`'s alerts with feedback on real alerts: a real alert
/// is "still alerted" when the backtest had the account in a silence
/// episode it alerted about within [`MATCH_DAYS`] of the alert's day.
pub fn compare(backtest: &Backtest, feedback: &[Feedback]) -> FeedbackComparison {
    use crate::detect::NoticeKind;
    // Each account's alerted episodes: (first alert, end or the range's end).
    let mut episodes: BTreeMap<&str, Vec<(Day, Day)>> = BTreeMap::new();
    let mut open: BTreeMap<&str, Day> = BTreeMap::new();
    for n in &backtest.notices {
        let a = n.account.as_str();
        match n.notice {
            NoticeKind::Silent | NoticeKind::Reminder => {
                open.entry(a).or_insert(n.date);
            }
            NoticeKind::Recovered => {
                if let Some(start) = open.remove(a) {
                    episodes.entry(a).or_default().push((start, n.date));
                }
            }
            NoticeKind::Watch => {}
        }
    }
    for (a, start) in open {
        episodes.entry(a).or_default().push((start, backtest.to));
    }
    let mut out = FeedbackComparison::default();
    for f in feedback {
        if f.kind == "recovered" || f.day < backtest.from || f.day > backtest.to {
            continue;
        }
        *out.given.entry(f.verdict.as_str().into()).or_default() += 1;
        let near = if f.kind == "watch" {
            backtest.notices.iter().any(|n| {
                n.notice == NoticeKind::Watch
                    && n.account == f.account
                    && (n.date.0 - f.day.0).abs() <= MATCH_DAYS
            })
        } else {
            episodes.get(f.account.as_str()).is_some_and(|list| {
                list.iter().any(|(start, end)| {
                    *start <= f.day.plus(MATCH_DAYS) && *end >= f.day.plus(-MATCH_DAYS)
                })
            })
        };
        if near {
            *out.still_alerted
                .entry(f.verdict.as_str().into())
                .or_default() += 1;
        }
    }
    out
}

/// A sign-in link for the console.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LoginLink {
    pub url: String,
    /// Who it signs in.
    pub who: String,
    pub admin: bool,
    pub expires: chrono::DateTime<chrono::Utc>,
}

/// A link asked for: for a CSM or admin by e-mail, or (none) for the
/// caller as an admin.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct LoginLinkRequest {
    pub email: Option<String>,
    /// Where the service is reached (`http://127.0.0.1:9187`) when the
    /// config has no `[console] public_url`.
    pub base: Option<String>,
}

impl App {
    /// The key console sessions and links are signed with.
    pub fn signer(&self) -> Result<Signer, AppError> {
        Ok(Signer::new(self.store.signing_key()?))
    }

    /// Links for alert e-mails, when `[console] public_url` is set.
    pub fn links(&self) -> Result<Option<Links>, AppError> {
        let Some(base) = &self.config.console.public_url else {
            return Ok(None);
        };
        Ok(Some(Links::new(
            base.clone(),
            self.signer()?,
            self.config.console.link_days,
        )))
    }

    /// Whether `email` may sign in, and as an admin: the CSMs of the
    /// accounts file and `[console] admins`.
    pub fn console_user(&self, email: &str) -> Option<bool> {
        let email = email.trim();
        if self.config.console.is_admin(email) {
            return Some(true);
        }
        let live = self.live();
        live.registry
            .accounts()
            .iter()
            .any(|a| a.csm.eq_ignore_ascii_case(email))
            .then_some(false)
    }

    /// A single-use sign-in link, good for [`LOGIN_LINK_MINUTES`].
    /// `email` none: an admin session named `caller`.
    pub fn login_link(&self, req: &LoginLinkRequest, caller: &str) -> Result<LoginLink, AppError> {
        let (who, admin) = match &req.email {
            Some(e) => {
                let e = e.trim().to_lowercase();
                match self.console_user(&e) {
                    Some(admin) => (e, admin),
                    None => {
                        return Err(AppError::not_found(format!(
                            "`{e}` is neither the CSM of an account in {} nor in [console] admins",
                            self.config.accounts_file.display()
                        )));
                    }
                }
            }
            None => (format!("token:{caller}"), true),
        };
        let base = match (&self.config.console.public_url, &req.base) {
            (Some(u), _) => u.clone(),
            (None, Some(b)) => url::Url::parse(b)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https"))
                .ok_or_else(|| AppError::bad_request(format!("`{b}` is not an http(s) URL")))?,
            (None, None) => {
                return Err(AppError::bad_request(
                    "where is lull reached? Set [console] public_url in the config",
                ));
            }
        };
        let expires = self.clock.now() + chrono::Duration::minutes(LOGIN_LINK_MINUTES);
        let claims = LoginClaims {
            email: who.clone(),
            admin,
            exp: expires.timestamp(),
            nonce: tokens::random_token(),
        };
        let token = self.signer()?.sign(tokens::LOGIN, &claims);
        let mut url = base;
        let path = format!("{}/c/login/{token}", url.path().trim_end_matches('/'));
        url.set_path(&path);
        Ok(LoginLink {
            url: url.to_string(),
            who,
            admin,
            expires,
        })
    }

    /// Records feedback on an alert about account `id`. The alert must be
    /// one lull sent or queued (its day and kind); a later verdict on the
    /// same alert replaces an earlier one.
    pub fn give_feedback(
        &self,
        id: &str,
        req: &FeedbackRequest,
        by: &str,
        via: &str,
    ) -> Result<Feedback, AppError> {
        self.record_feedback(id, req, by, via, false)
    }

    /// Feedback from a link in an alert e-mail: the signed link is the
    /// proof the alert was sent (its notice may have left the outbox
    /// since, dropped by a snooze).
    pub fn feedback_from_link(
        &self,
        id: &str,
        req: &FeedbackRequest,
        by: &str,
    ) -> Result<Feedback, AppError> {
        self.record_feedback(id, req, by, "email", true)
    }

    fn record_feedback(
        &self,
        id: &str,
        req: &FeedbackRequest,
        by: &str,
        via: &str,
        proven: bool,
    ) -> Result<Feedback, AppError> {
        let account = self.known(id)?;
        if !matches!(
            req.kind.as_str(),
            "silent" | "reminder" | "recovered" | "watch"
        ) {
            return Err(AppError::bad_request(format!(
                "`{}` is not a kind of alert (silent, reminder, recovered)",
                req.kind
            )));
        }
        let sent = proven
            || self.messages()?.into_iter().any(|m| {
                m.day == req.day
                    && m.accounts
                        .iter()
                        .zip(&m.kinds)
                        .any(|(a, k)| a == account.as_str() && *k == req.kind)
            });
        if !sent {
            return Err(AppError::not_found(format!(
                "lull sent no `{}` alert about {account} for {} (feedback answers an alert; `lull alerts` lists them)",
                req.kind, req.day
            )));
        }
        let note = req.note.as_deref().map(str::trim).filter(|n| !n.is_empty());
        if note.is_some_and(|n| n.chars().count() > 1000) {
            return Err(AppError::bad_request(
                "the note is longer than 1000 characters",
            ));
        }
        let f = Feedback {
            account: account.clone(),
            day: req.day,
            kind: req.kind.clone(),
            verdict: req.verdict,
            by: by.to_string(),
            at: self.clock.now(),
            via: via.to_string(),
            note: note.map(str::to_string),
        };
        self.store.set_feedback(&account, req.day, &req.kind, &f)?;
        metrics::counter!(FEEDBACK_TOTAL, "verdict" => f.verdict.as_str()).increment(1);
        tracing::info!(account = %account, day = %req.day, kind = %req.kind, verdict = f.verdict.as_str(), by, via, "feedback recorded");
        Ok(f)
    }

    /// Feedback on one account's alerts (or everyone's), oldest alert first.
    pub fn feedback(&self, id: Option<&str>) -> Result<Vec<Feedback>, AppError> {
        let account = id.map(|i| self.known(i)).transpose()?;
        Ok(self.store.feedback(account.as_ref())?)
    }

    /// Sets `lull_feedback_total` to what the store holds (at start).
    pub fn count_feedback(&self) -> Result<(), AppError> {
        let mut counts: BTreeMap<Verdict, u64> = Verdict::ALL.iter().map(|v| (*v, 0)).collect();
        for f in self.feedback(None)? {
            *counts.entry(f.verdict).or_default() += 1;
        }
        metrics::describe_counter!(FEEDBACK_TOTAL, "Feedback on alerts, by verdict.");
        for (v, n) in counts {
            metrics::counter!(FEEDBACK_TOTAL, "verdict" => v.as_str()).absolute(n);
        }
        Ok(())
    }
}
