//! `[smtp]` (how mail leaves) and `[alerts]` (who hears about what).

use std::path::{Path, PathBuf};
use std::time::Duration;

use lettre::message::Mailbox;
use serde::Deserialize;
use toml::Spanned;

use crate::diag::{Diagnostic, SourceText};

/// Submission port with STARTTLS (RFC 6409): what relays expect today.
pub const DEFAULT_PORT_STARTTLS: u16 = 587;
/// SMTP over implicit TLS (RFC 8314).
pub const DEFAULT_PORT_TLS: u16 = 465;
/// A plain local relay (postfix on localhost).
pub const DEFAULT_PORT_NONE: u16 = 25;
/// One SMTP command (connect, TLS, AUTH, DATA) may take this long: a relay
/// that takes longer is down for our purposes, and the message stays queued.
pub const DEFAULT_TIMEOUT_SECS: u64 = 30;
/// How long `lull detect` and `lull deliver` keep retrying a relay that is
/// unreachable or answers "try again later" before leaving the rest
/// queued: long enough to ride out a relay restart, short enough for a
/// cron job. (`lull run` retries for as long as it runs.)
pub const DEFAULT_RETRY_SECS: u64 = 60;

/// How the connection to the relay is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain connection upgraded with STARTTLS, which must succeed: a relay
    /// that does not offer it is refused, never silently used in clear.
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption: only for a relay on localhost or a trusted network.
    None,
}

impl TlsMode {
    pub fn as_str(self) -> &'static str {
        match self {
            TlsMode::Starttls => "starttls",
            TlsMode::Tls => "tls",
            TlsMode::None => "none",
        }
    }
}

/// The validated `[smtp]` table.
#[derive(Debug, Clone)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    pub from: Mailbox,
    /// AUTH user; the password comes from `password_env`.
    pub username: Option<String>,
    pub password_env: Option<String>,
    /// Extra trusted CA (PEM), for a relay with a private CA.
    pub ca_file: Option<PathBuf>,
    pub timeout: Duration,
    /// How long one-shot commands retry before leaving mail queued.
    pub retry_for: Duration,
    /// The config line of `[smtp]`, for errors.
    pub line: usize,
}

/// The validated `[alerts]` table.
#[derive(Debug, Clone, Default)]
pub struct AlertsConfig {
    /// Who hears that a source has stopped delivering data.
    pub ops_email: Option<Mailbox>,
}

#[derive(Debug, Deserialize, Default)]
pub(crate) struct RawSmtp {
    host: Option<Spanned<String>>,
    port: Option<Spanned<i64>>,
    tls: Option<Spanned<String>>,
    from: Option<Spanned<String>>,
    username: Option<String>,
    password_env: Option<Spanned<String>>,
    ca_file: Option<Spanned<String>>,
    timeout_secs: Option<Spanned<u64>>,
    retry_secs: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize, Default)]
pub(crate) struct RawAlerts {
    ops_email: Option<Spanned<String>>,
}

impl RawSmtp {
    /// Validates `[smtp]`, pushing each problem with its line.
    pub(crate) fn build(
        whole: Spanned<RawSmtp>,
        base: &Path,
        src: &SourceText,
        problems: &mut Vec<Diagnostic>,
    ) -> Option<SmtpConfig> {
        let before = problems.len();
        let line = src.line_col(whole.span().start).0;
        let whole_span = whole.span();
        let this = whole.into_inner();
        let whole = &Spanned::new(whole_span, ());
        let host = match &this.host {
            Some(h) if !h.get_ref().trim().is_empty() => h.get_ref().trim().to_string(),
            Some(h) => {
                problems.push(src.span(h, "`smtp.host` is empty"));
                String::new()
            }
            None => {
                problems.push(src.span(
                    whole,
                    "[smtp] needs `host` (the relay to send alert e-mails through); remove [smtp] to queue alerts without sending",
                ));
                String::new()
            }
        };
        let tls = match this.tls.as_ref().map(|t| (t, t.get_ref().as_str())) {
            None | Some((_, "starttls")) => TlsMode::Starttls,
            Some((_, "tls")) => TlsMode::Tls,
            Some((_, "none")) => TlsMode::None,
            Some((t, other)) => {
                problems.push(src.span(
                    t,
                    format!(
                        "`smtp.tls = \"{other}\"` is not one of \"starttls\", \"tls\" (implicit, port 465) or \"none\""
                    ),
                ));
                TlsMode::Starttls
            }
        };
        let port = match &this.port {
            None => match tls {
                TlsMode::Starttls => DEFAULT_PORT_STARTTLS,
                TlsMode::Tls => DEFAULT_PORT_TLS,
                TlsMode::None => DEFAULT_PORT_NONE,
            },
            Some(p) => match u16::try_from(*p.get_ref()) {
                Ok(port) if port > 0 => port,
                _ => {
                    problems.push(src.span(p, "`smtp.port` must be from 1 to 65535"));
                    DEFAULT_PORT_STARTTLS
                }
            },
        };
        let from = match &this.from {
            Some(f) => parse_mailbox(f, "smtp.from", src, problems),
            None => default_from(),
        };
        if let (Some(_), None) = (&this.username, &this.password_env) {
            problems.push(src.span(
                whole,
                "[smtp] sets `username` but not `password_env` (the env var holding the password)",
            ));
        }
        if let (None, Some(p)) = (&this.username, &this.password_env) {
            problems.push(src.span(p, "`smtp.password_env` needs `username` too"));
        }
        if let Some(p) = &this.password_env {
            if !crate::sources::config::is_env_var_name(p.get_ref()) {
                problems.push(src.span(
                    p,
                    "`smtp.password_env` names an environment variable (letters, digits, _, like \"LULL_SMTP_PASSWORD\"), not the password itself",
                ));
            }
        }
        let ca_file = this.ca_file.as_ref().map(|c| {
            let path = base.join(c.get_ref());
            if !path.is_file() {
                problems.push(src.span(
                    c,
                    format!("`smtp.ca_file`: {} is not a readable file", path.display()),
                ));
            }
            path
        });
        if let (Some(c), TlsMode::None) = (&this.ca_file, tls) {
            problems.push(src.span(
                c,
                "`smtp.ca_file` is set but `tls = \"none\"` never uses it",
            ));
        }
        let secs =
            |v: &Option<Spanned<u64>>, key: &str, default: u64, problems: &mut Vec<_>| match v {
                None => Duration::from_secs(default),
                Some(s) if *s.get_ref() == 0 || *s.get_ref() > 86_400 => {
                    problems
                        .push(src.span(s, format!("`smtp.{key}` must be from 1 to 86400 seconds")));
                    Duration::from_secs(default)
                }
                Some(s) => Duration::from_secs(*s.get_ref()),
            };
        let timeout = secs(
            &this.timeout_secs,
            "timeout_secs",
            DEFAULT_TIMEOUT_SECS,
            problems,
        );
        let retry_for = secs(&this.retry_secs, "retry_secs", DEFAULT_RETRY_SECS, problems);
        (problems.len() == before).then(|| SmtpConfig {
            host,
            port,
            tls,
            from,
            username: this.username,
            password_env: this.password_env.map(Spanned::into_inner),
            ca_file,
            timeout,
            retry_for,
            line,
        })
    }
}

impl RawAlerts {
    pub(crate) fn build(self, src: &SourceText, problems: &mut Vec<Diagnostic>) -> AlertsConfig {
        AlertsConfig {
            ops_email: self
                .ops_email
                .as_ref()
                .map(|e| parse_mailbox(e, "alerts.ops_email", src, problems)),
        }
    }
}

fn parse_mailbox(
    v: &Spanned<String>,
    key: &str,
    src: &SourceText,
    problems: &mut Vec<Diagnostic>,
) -> Mailbox {
    v.get_ref().parse::<Mailbox>().unwrap_or_else(|e| {
        problems.push(src.span(
            v,
            format!(
                "`{key} = \"{}\"` is not an e-mail address (\"lull <lull@example.com>\" or \"ops@example.com\"): {e}",
                v.get_ref()
            ),
        ));
        default_from()
    })
}

/// `lull <lull@HOSTNAME>`: works with a local relay; set `from` for any
/// other (relays refuse senders of domains they do not serve).
pub fn default_from() -> Mailbox {
    let host = lettre::transport::smtp::extension::ClientId::default().to_string();
    let host = if host.contains('.') && !host.starts_with('[') {
        host
    } else {
        "localhost".to_string()
    };
    format!("lull <lull@{host}>").parse().unwrap_or_else(|_| {
        Mailbox::new(
            None,
            lettre::Address::new("lull", "localhost").expect("static address"),
        )
    })
}
