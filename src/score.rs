//! Scoring a backtest against a team's own churn history, per tier, with
//! the rules of `tools/score.py` (its docstring is the reference):
//!
//! - `c` = churn date (the last day of sustained activity), `E` = the
//!   engagement end (the last day with at least 6 events in the trailing
//!   90 days; `c` for a churned account);
//! - a true positive is an alert on a churned account in `[c−90, c+60]`;
//!   recall = churned accounts with one; lead = `c` − first true alert;
//! - a false alert is one before `E−120` (the account stayed active for
//!   120+ more days), outside any dormancy `[start−120, return]`;
//!   noise = false alerts per account-year of `[first activity, E−120]`
//!   minus dormancies; everything else is ignored (too early, too late,
//!   too close to the end of the data to judge).
//!
//! The churn file is `account,churn_date`. A file with `score.py`'s
//! ground-truth columns (`churned`, `first_activity`, `engagement_end`,
//! `status`, `dormancies`) is read as such, and then the numbers are
//! exactly `score.py`'s; otherwise first activity and engagement end come
//! from the store, and no account has dormancies.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;

use serde::{Deserialize, Serialize};

use crate::detect::{Notice, NoticeKind};
use crate::types::Day;

const TP_BEFORE: i32 = 90;
const TP_AFTER: i32 = 60;
const FP_HORIZON: i32 = 120;
/// Sustained activity: at least this many events…
pub const SUSTAINED_EVENTS: u64 = 6;
/// …in this many days.
pub const SUSTAINED_DAYS: i32 = 90;

/// One account's known history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Truth {
    pub account: String,
    /// The churn date, for an account that disengaged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub churn_date: Option<Day>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_activity: Option<Day>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engagement_end: Option<Day>,
    /// `churned`, `active`, `faded`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Gaps the account came back from: `(start, return)`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dormancies: Vec<(Day, Day)>,
}

/// A parsed churn file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChurnHistory {
    pub accounts: Vec<Truth>,
    /// The file had the full ground-truth columns (nothing is derived).
    pub complete: bool,
}

/// Reads a churn file. Errors name the line and column.
pub fn read_churned(input: impl Read, name: &str) -> Result<ChurnHistory, String> {
    let mut r = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(input);
    let headers = r
        .headers()
        .map_err(|e| format!("{name}: cannot read the header: {e}"))?
        .clone();
    let col = |c: &str| headers.iter().position(|h| h == c);
    let (Some(account), Some(_)) = (col("account"), col("churn_date")) else {
        return Err(format!(
            "{name}: the header must name `account` and `churn_date` (got `{}`)",
            headers.iter().collect::<Vec<_>>().join(",")
        ));
    };
    let full = [
        "churned",
        "first_activity",
        "engagement_end",
        "status",
        "dormancies",
    ];
    let complete = full.iter().all(|c| col(c).is_some());
    let mut out = ChurnHistory {
        accounts: Vec::new(),
        complete,
    };
    let mut seen = BTreeSet::new();
    for (i, row) in r.records().enumerate() {
        let line = i + 2;
        let row = row.map_err(|e| format!("{name}:{line}: {e}"))?;
        let field = |c: Option<usize>| c.and_then(|c| row.get(c)).unwrap_or("").trim();
        let day = |column: &str| -> Result<Option<Day>, String> {
            let v = field(col(column));
            if v.is_empty() {
                return Ok(None);
            }
            v.parse::<Day>()
                .map(Some)
                .map_err(|e| format!("{name}:{line}: `{column}` = {v:?}: {e}"))
        };
        let id = field(Some(account)).to_string();
        if id.is_empty() {
            return Err(format!("{name}:{line}: `account` is empty"));
        }
        if !seen.insert(id.clone()) {
            return Err(format!(
                "{name}:{line}: account `{id}` is listed twice (one known disengagement per account)"
            ));
        }
        let mut truth = Truth {
            account: id,
            churn_date: day("churn_date")?,
            first_activity: None,
            engagement_end: None,
            status: None,
            dormancies: Vec::new(),
        };
        if complete {
            let churned = matches!(field(col("churned")), "1" | "true" | "True");
            if !churned {
                truth.churn_date = None;
            } else if truth.churn_date.is_none() {
                return Err(format!(
                    "{name}:{line}: a churned account needs a `churn_date`"
                ));
            }
            truth.first_activity = day("first_activity")?;
            truth.engagement_end = day("engagement_end")?;
            truth.status = Some(field(col("status")).to_string());
            for w in field(col("dormancies"))
                .split(';')
                .filter(|w| !w.is_empty())
            {
                let parsed = w
                    .split_once("..")
                    .and_then(|(a, b)| Some((a.parse::<Day>().ok()?, b.parse::<Day>().ok()?)));
                match parsed {
                    Some(span) => truth.dormancies.push(span),
                    None => {
                        return Err(format!(
                            "{name}:{line}: `dormancies`: {w:?} is not START..RETURN"
                        ));
                    }
                }
            }
        } else if truth.churn_date.is_none() {
            return Err(format!("{name}:{line}: `churn_date` is empty"));
        }
        out.accounts.push(truth);
    }
    Ok(out)
}

/// What the store says about an account, for what a short churn file
/// leaves out.
#[derive(Debug, Clone, Copy, Default)]
pub struct Observed {
    pub first_activity: Option<Day>,
    /// The last day with at least [`SUSTAINED_EVENTS`] in the trailing
    /// [`SUSTAINED_DAYS`].
    pub engagement_end: Option<Day>,
}

/// The engagement end of a daily series (sorted `(day, count)`), up to
/// `until`.
pub fn engagement_end(entries: &[(Day, u64)], until: Day) -> Option<Day> {
    let mut day = entries.first()?.0;
    let (mut end, mut sum, mut add, mut sub) = (None, 0u64, 0, 0);
    while day <= until {
        while add < entries.len() && entries[add].0 <= day {
            sum += entries[add].1;
            add += 1;
        }
        while sub < add && entries[sub].0.0 <= day.0 - SUSTAINED_DAYS {
            sum -= entries[sub].1;
            sub += 1;
        }
        if sum >= SUSTAINED_EVENTS {
            end = Some(day);
        } else if add == entries.len() {
            break;
        }
        day = day.plus(1);
    }
    end
}

#[derive(Debug, Clone)]
struct Account {
    positive: bool,
    c: Option<Day>,
    first: Day,
    e: Option<Day>,
    status: String,
    dorm: Vec<(Day, Day)>,
}

/// How one tier did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TierScore {
    pub alerts: usize,
    pub tp_alerts: usize,
    pub fp_alerts: usize,
    /// TP / (TP + FP), 3 decimals (`None` without either).
    pub precision: Option<f64>,
    pub churned_accounts: usize,
    pub detected: usize,
    pub recall: Option<f64>,
    /// Median of churn date − first true alert, in days (> 0: before).
    pub median_lead_days: Option<f64>,
    /// False alerts per account-year, 2 decimals: never-churned accounts,
    /// and all.
    pub noise_active_per_acct_year: Option<f64>,
    pub noise_all_per_acct_year: Option<f64>,
    /// Alerts per CSM per week of the range, and the most one CSM got in
    /// one week.
    pub per_csm_week: f64,
    pub max_csm_week: usize,
    /// Alerts not counted either way, by reason.
    pub ignored: BTreeMap<String, usize>,
    /// Churned accounts without a true alert.
    pub missed: Vec<String>,
}

/// Scores per tier, with what was derived.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Scores {
    /// `silent` (alerts and reminders), `watch`, and `all` (both).
    pub tiers: BTreeMap<String, TierScore>,
    /// The churn file named accounts that are not in the accounts file.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unknown_accounts: Vec<String>,
    /// First activity and engagement end were read from the store (a
    /// two-column churn file).
    pub derived: bool,
}

fn classify(g: Option<&Account>, t: Day) -> &'static str {
    let Some(g) = g else {
        return "unknown_account";
    };
    let Some(e) = g.e else {
        return "ignored_never_sustained";
    };
    if t < g.first {
        return "before_first_activity";
    }
    if let (true, Some(c)) = (g.positive, g.c) {
        if c.plus(-TP_BEFORE) <= t && t <= c.plus(TP_AFTER) {
            return "tp";
        }
        if t > c.plus(TP_AFTER) {
            return "late";
        }
        if t >= c.plus(-FP_HORIZON) {
            return "early";
        }
    } else if g.status == "faded" && t >= e.plus(-FP_HORIZON) {
        return "ambiguous";
    }
    for (s, r) in &g.dorm {
        if s.plus(-FP_HORIZON) <= t && t <= *r {
            return "dormancy";
        }
    }
    if t < e.plus(-FP_HORIZON) {
        return "fp";
    }
    "censored"
}

fn eligible_years(g: &Account) -> f64 {
    let Some(e) = g.e else {
        return 0.0;
    };
    let (lo, hi) = (g.first, e.plus(-FP_HORIZON));
    let mut days = (hi.0 - lo.0).max(0);
    for (s, r) in &g.dorm {
        let (a, b) = (lo.max(s.plus(-FP_HORIZON)), hi.min(*r));
        days -= (b.0 - a.0).max(0);
    }
    f64::from(days.max(0)) / 365.25
}

fn round(x: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    // Python rounds half to even; ties do not occur at these scales
    // except by construction, where both agree on the decimal shown.
    (x * f).round() / f
}

/// Scores `notices` per tier. `observed` fills in what a two-column file
/// leaves out; `csms` is the number of CSMs with accounts, `weeks` the
/// range's length in weeks.
pub fn score(
    history: &ChurnHistory,
    notices: &[Notice],
    observed: &HashMap<String, Observed>,
    csms: usize,
    weeks: f64,
) -> Scores {
    let mut accounts: HashMap<&str, Account> = HashMap::new();
    let mut unknown = Vec::new();
    if history.complete {
        for t in &history.accounts {
            let Some(first) = t.first_activity else {
                continue;
            };
            accounts.insert(
                &t.account,
                Account {
                    positive: t.churn_date.is_some(),
                    c: t.churn_date,
                    first,
                    e: t.engagement_end,
                    status: t.status.clone().unwrap_or_default(),
                    dorm: t.dormancies.clone(),
                },
            );
        }
    } else {
        let churn: HashMap<&str, Day> = history
            .accounts
            .iter()
            .filter_map(|t| Some((t.account.as_str(), t.churn_date?)))
            .collect();
        for t in &history.accounts {
            if !observed.contains_key(&t.account) {
                unknown.push(t.account.clone());
            }
        }
        for (id, o) in observed {
            let Some(first) = o.first_activity else {
                continue;
            };
            let c = churn.get(id.as_str()).copied();
            accounts.insert(
                id,
                Account {
                    positive: c.is_some(),
                    c,
                    first,
                    e: c.or(o.engagement_end),
                    status: if c.is_some() { "churned" } else { "active" }.into(),
                    dorm: Vec::new(),
                },
            );
        }
    }
    let tier_of = |n: &Notice| match n.notice {
        NoticeKind::Silent | NoticeKind::Reminder => Some("silent"),
        NoticeKind::Watch => Some("watch"),
        NoticeKind::Recovered => None,
    };
    let mut tiers = BTreeMap::new();
    for tier in ["silent", "watch", "all"] {
        let chosen: Vec<&Notice> = notices
            .iter()
            .filter(|n| tier_of(n).is_some_and(|t| tier == "all" || t == tier))
            .collect();
        tiers.insert(
            tier.to_string(),
            score_tier(&accounts, &chosen, csms, weeks),
        );
    }
    unknown.sort();
    Scores {
        tiers,
        unknown_accounts: unknown,
        derived: !history.complete,
    }
}

fn score_tier(
    accounts: &HashMap<&str, Account>,
    alerts: &[&Notice],
    csms: usize,
    weeks: f64,
) -> TierScore {
    let mut s = TierScore {
        alerts: alerts.len(),
        ..TierScore::default()
    };
    let mut first_tp: BTreeMap<&str, Day> = BTreeMap::new();
    let (mut fp_active, mut per_week) = (0usize, BTreeMap::new());
    for n in alerts {
        let g = accounts.get(n.account.as_str());
        match classify(g, n.date) {
            "tp" => {
                s.tp_alerts += 1;
                let e = first_tp.entry(n.account.as_str()).or_insert(n.date);
                *e = (*e).min(n.date);
            }
            "fp" => {
                s.fp_alerts += 1;
                if g.is_some_and(|g| g.status == "active") {
                    fp_active += 1;
                }
            }
            other => *s.ignored.entry(other.to_string()).or_default() += 1,
        }
        *per_week
            .entry((
                n.csm.trim().to_lowercase(),
                crate::backtest::iso_week(n.date),
            ))
            .or_insert(0usize) += 1;
    }
    let positives: Vec<(&str, &Account)> = accounts
        .iter()
        .filter(|(_, g)| g.positive)
        .map(|(a, g)| (*a, g))
        .collect();
    let mut leads: Vec<i32> = first_tp
        .iter()
        .filter_map(|(a, t)| Some(accounts.get(a)?.c?.0 - t.0))
        .collect();
    leads.sort_unstable();
    s.churned_accounts = positives.len();
    s.detected = leads.len();
    s.precision = (s.tp_alerts + s.fp_alerts > 0)
        .then(|| round(s.tp_alerts as f64 / (s.tp_alerts + s.fp_alerts) as f64, 3));
    s.recall =
        (!positives.is_empty()).then(|| round(leads.len() as f64 / positives.len() as f64, 3));
    s.median_lead_days = match leads.len() {
        0 => None,
        n if n % 2 == 1 => Some(f64::from(leads[n / 2])),
        n => Some(f64::from(leads[n / 2 - 1] + leads[n / 2]) / 2.0),
    };
    let years_active: f64 = accounts
        .values()
        .filter(|g| g.status == "active")
        .map(eligible_years)
        .sum();
    let years_all: f64 = accounts.values().map(eligible_years).sum();
    s.noise_active_per_acct_year =
        (years_active > 0.0).then(|| round(fp_active as f64 / years_active, 2));
    s.noise_all_per_acct_year = (years_all > 0.0).then(|| round(s.fp_alerts as f64 / years_all, 2));
    s.per_csm_week = round(
        s.alerts as f64 / (csms.max(1) as f64 * weeks.max(1.0 / 7.0)),
        3,
    );
    s.max_csm_week = per_week.values().copied().max().unwrap_or(0);
    let mut missed: Vec<String> = positives
        .iter()
        .filter(|(a, _)| !first_tp.contains_key(a))
        .map(|(a, _)| a.to_string())
        .collect();
    missed.sort();
    s.missed = missed;
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Day {
        s.parse().expect("day")
    }

    #[test]
    fn engagement_end_is_the_last_sustained_day() {
        // Six events on one day: sustained for 90 days from it.
        let e = [(d("2024-01-01"), 6)];
        assert_eq!(engagement_end(&e, d("2025-01-01")), Some(d("2024-03-30")));
        // Cut short by the end of the data.
        assert_eq!(engagement_end(&e, d("2024-02-01")), Some(d("2024-02-01")));
        // Five events never sustain.
        assert_eq!(
            engagement_end(&[(d("2024-01-01"), 5)], d("2025-01-01")),
            None
        );
        // Spread out: sustained while six fall in the trailing window.
        let e: Vec<(Day, u64)> = (0..6).map(|i| (d("2024-01-01").plus(i * 10), 1)).collect();
        assert_eq!(engagement_end(&e, d("2025-01-01")), Some(d("2024-03-30")));
    }

    #[test]
    fn a_short_file_needs_churn_dates_and_a_full_one_reads_dormancies() {
        let short = read_churned("account,churn_date\nacme,2024-05-01\n".as_bytes(), "c.csv")
            .expect("reads");
        assert!(!short.complete);
        assert_eq!(short.accounts[0].churn_date, Some(d("2024-05-01")));
        let err = read_churned("account,churn_date\nacme,\n".as_bytes(), "c.csv").unwrap_err();
        assert!(err.contains("c.csv:2"), "{err}");
        let err = read_churned("account,when\nacme,2024-01-01\n".as_bytes(), "c.csv").unwrap_err();
        assert!(err.contains("churn_date"), "{err}");
        let full = "account,first_activity,churned,churn_date,status,engagement_end,dormancies\n\
                    a,2020-01-01,0,,active,2024-01-01,2021-01-01..2021-06-01;2022-01-01..2022-02-01\n";
        let full = read_churned(full.as_bytes(), "g.csv").expect("reads");
        assert!(full.complete);
        assert_eq!(full.accounts[0].dormancies.len(), 2);
        assert_eq!(full.accounts[0].churn_date, None);
    }
}
