//! `[console]`: where the console is reached from outside (for links in
//! e-mails), who is an admin, how long sign-ins and links last, and an
//! optional single-sign-on proxy to trust.

use std::net::IpAddr;

use serde::Deserialize;
use toml::Spanned;

use crate::diag::{Diagnostic, SourceText};

/// A signed-in console session lasts a working day.
pub const DEFAULT_SESSION_HOURS: u32 = 12;
/// Links in alert e-mails (open, snooze, feedback) work this long: past
/// a fortnight, the alert is old news.
pub const DEFAULT_LINK_DAYS: u32 = 14;
/// A sign-in link is good for a quarter of an hour.
pub const LOGIN_LINK_MINUTES: i64 = 15;
/// "Snooze" in an e-mail snoozes for this many days.
pub const EMAIL_SNOOZE_DAYS: i32 = 30;

/// The validated `[console]` table.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConsoleConfig {
    /// Where people reach lull (`https://lull.example.com`): links in
    /// e-mails point there; without it, e-mails carry no links.
    pub public_url: Option<url::Url>,
    /// The account in the CRM, `{id}` replaced by the account's id.
    pub crm_url: Option<String>,
    /// Who sees every account, the sources and the tuning page.
    pub admins: Vec<String>,
    pub session_hours: u32,
    pub link_days: u32,
    /// A header an authenticating reverse proxy sets to the user's
    /// e-mail address, trusted only from `trusted_proxies`.
    pub proxy_header: Option<String>,
    pub trusted_proxies: Vec<IpAddr>,
}

impl ConsoleConfig {
    pub fn is_admin(&self, email: &str) -> bool {
        self.admins.iter().any(|a| a.eq_ignore_ascii_case(email))
    }
}

#[derive(Debug, Deserialize, Default)]
pub(crate) struct RawConsole {
    public_url: Option<Spanned<String>>,
    crm_url: Option<Spanned<String>>,
    #[serde(default)]
    admins: Vec<Spanned<String>>,
    session_hours: Option<Spanned<u32>>,
    link_days: Option<Spanned<u32>>,
    proxy_header: Option<Spanned<String>>,
    #[serde(default)]
    trusted_proxies: Vec<Spanned<String>>,
}

impl RawConsole {
    pub(crate) fn build(&self, src: &SourceText, problems: &mut Vec<Diagnostic>) -> ConsoleConfig {
        let mut c = ConsoleConfig {
            session_hours: DEFAULT_SESSION_HOURS,
            link_days: DEFAULT_LINK_DAYS,
            ..ConsoleConfig::default()
        };
        if let Some(u) = &self.public_url {
            match url::Url::parse(u.get_ref()) {
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
                    c.public_url = Some(url)
                }
                _ => problems.push(src.span(
                    u,
                    "`console.public_url` must be an http(s) URL, e.g. \"https://lull.example.com\"",
                )),
            }
        }
        if let Some(u) = &self.crm_url {
            if !u.get_ref().contains("{id}")
                || url::Url::parse(&u.get_ref().replace("{id}", "x")).is_err()
            {
                problems.push(src.span(
                    u,
                    "`console.crm_url` must be a URL with `{id}` where the account's id goes",
                ));
            } else {
                c.crm_url = Some(u.get_ref().clone());
            }
        }
        for a in &self.admins {
            if crate::accounts::is_plausible_email(a.get_ref()) {
                c.admins.push(a.get_ref().trim().to_lowercase());
            } else {
                problems.push(src.span(
                    a,
                    format!(
                        "`{}` in console.admins is not an e-mail address",
                        a.get_ref()
                    ),
                ));
            }
        }
        if let Some(h) = &self.session_hours {
            match *h.get_ref() {
                1..=720 => c.session_hours = *h.get_ref(),
                _ => {
                    problems.push(src.span(h, "`console.session_hours` must be between 1 and 720"))
                }
            }
        }
        if let Some(d) = &self.link_days {
            match *d.get_ref() {
                1..=90 => c.link_days = *d.get_ref(),
                _ => problems.push(src.span(d, "`console.link_days` must be between 1 and 90")),
            }
        }
        if let Some(h) = &self.proxy_header {
            let ok = !h.get_ref().is_empty()
                && h.get_ref()
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '-');
            if ok {
                c.proxy_header = Some(h.get_ref().to_ascii_lowercase());
            } else {
                problems.push(src.span(
                    h,
                    "`console.proxy_header` must be a header name like \"X-Forwarded-Email\"",
                ));
            }
        }
        for p in &self.trusted_proxies {
            match p.get_ref().parse::<IpAddr>() {
                Ok(ip) => c.trusted_proxies.push(ip),
                Err(_) => problems.push(src.span(
                    p,
                    format!(
                        "`{}` in console.trusted_proxies is not an IP address",
                        p.get_ref()
                    ),
                )),
            }
        }
        if c.proxy_header.is_some()
            && c.trusted_proxies.is_empty()
            && let Some(h) = &self.proxy_header
        {
            problems.push(src.span(
                h,
                "`console.proxy_header` needs `trusted_proxies` (the addresses of the proxy): from anywhere else the header is ignored",
            ));
        }
        c
    }
}
