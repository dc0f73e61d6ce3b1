//! `[service]` and `[http]`: what only `lull run` reads.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::cli::LogFormat;
use crate::diag::{Diagnostic, SourceText};
use crate::sources::config::parse_schedule;

/// Detection runs daily at 06:00 in the config's time zone: the night's
/// polls are in, and the CSM reads the alert with the morning's mail.
pub const DEFAULT_DETECT_SCHEDULE: &str = "0 0 6 * * *";
/// How long a stopping service waits for in-flight work.
pub const DEFAULT_SHUTDOWN_SECS: u64 = 10;
/// The HTTP endpoint's address: loopback, so nothing is exposed by default.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9187";

#[derive(Debug, Deserialize, Default)]
pub(crate) struct RawService {
    detect_schedule: Option<Spanned<String>>,
    shutdown_secs: Option<Spanned<u64>>,
    log_format: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, Default)]
pub(crate) struct RawHttp {
    listen: Option<Spanned<String>>,
    #[serde(default)]
    token: Vec<Spanned<RawToken>>,
    tls_cert: Option<Spanned<String>>,
    tls_key: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
struct RawToken {
    name: Option<Spanned<String>>,
    role: Option<Spanned<String>>,
    token_env: Option<Spanned<String>>,
}

/// What a token may do, each role including the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Look: accounts, alerts, sources, export, backtest, a dry-run detect.
    Read,
    /// Also snooze (and give feedback).
    Csm,
    /// Also import, detect, deliver, reload, backup.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Csm => "csm",
            Role::Admin => "admin",
        }
    }
}

/// One `[[http.token]]`: the token itself is read from `token_env` when
/// the service starts.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenConfig {
    pub name: String,
    pub role: Role,
    pub token_env: String,
    pub line: usize,
}

/// Certificate and key for TLS on the listener (PEM files).
#[derive(Debug, Clone, PartialEq)]
pub struct TlsFiles {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

/// The validated `[service]` and `[http]` tables.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// When detection runs (cron, 6 fields, in the config's time zone).
    pub detect_schedule: cron::Schedule,
    /// The schedule as written, for logs and `/readyz`.
    pub detect_schedule_text: String,
    /// SIGTERM → exit within this.
    pub shutdown: Duration,
    /// Log format when `--log-format` is not given.
    pub log_format: Option<LogFormat>,
    /// Where `/healthz`, `/readyz`, `/metrics` and the API listen.
    pub listen: SocketAddr,
    /// `[[http.token]]`: who may use the API.
    pub tokens: Vec<TokenConfig>,
    /// TLS on the listener, when set.
    pub tls: Option<TlsFiles>,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            detect_schedule: parse_schedule(DEFAULT_DETECT_SCHEDULE)
                .unwrap_or_else(|_| unreachable!("the default schedule parses")),
            detect_schedule_text: DEFAULT_DETECT_SCHEDULE.to_string(),
            shutdown: Duration::from_secs(DEFAULT_SHUTDOWN_SECS),
            log_format: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 9187)),
            tokens: Vec::new(),
            tls: None,
        }
    }
}

impl RawService {
    pub(crate) fn build(
        self,
        http: RawHttp,
        base: &std::path::Path,
        src: &SourceText,
        problems: &mut Vec<Diagnostic>,
    ) -> ServiceConfig {
        let mut out = ServiceConfig::default();
        if let Some(s) = &self.detect_schedule {
            match parse_schedule(s.get_ref()) {
                Ok(schedule) => {
                    out.detect_schedule = schedule;
                    out.detect_schedule_text = s.get_ref().clone();
                }
                Err(e) => problems.push(src.span(s, format!("`service.detect_schedule`: {e}"))),
            }
        }
        if let Some(s) = &self.shutdown_secs {
            match *s.get_ref() {
                1..=3600 => out.shutdown = Duration::from_secs(*s.get_ref()),
                n => problems.push(src.span(
                    s,
                    format!("`service.shutdown_secs = {n}` must be between 1 and 3600"),
                )),
            }
        }
        if let Some(f) = &self.log_format {
            match f.get_ref().as_str() {
                "text" => out.log_format = Some(LogFormat::Text),
                "json" => out.log_format = Some(LogFormat::Json),
                other => problems.push(src.span(
                    f,
                    format!("`service.log_format = \"{other}\"` is not \"text\" or \"json\""),
                )),
            }
        }
        if let Some(l) = &http.listen {
            // An address, or a host name with a port ("localhost:9187").
            let resolved = l.get_ref().parse::<SocketAddr>().ok().or_else(|| {
                use std::net::ToSocketAddrs;
                l.get_ref().to_socket_addrs().ok().and_then(|mut a| {
                    a.find(|a| a.is_ipv4())
                        .or_else(|| l.get_ref().to_socket_addrs().ok()?.next())
                })
            });
            match resolved {
                Some(a) => out.listen = a,
                None => problems.push(src.span(
                    l,
                    format!(
                        "`http.listen = \"{}\"` is not an address or host name with a port, e.g. \"{DEFAULT_LISTEN}\" or \"localhost:9187\" (or \"0.0.0.0:9187\" to listen on every interface)",
                        l.get_ref()
                    ),
                )),
            }
        }
        let mut names = std::collections::BTreeMap::new();
        for t in &http.token {
            let (raw, line) = (t.get_ref(), src.line_col(t.span().start).0);
            let missing = |key: &str| src.span(t, format!("`[[http.token]]` needs `{key}`"));
            let (Some(name), Some(role), Some(env)) = (&raw.name, &raw.role, &raw.token_env) else {
                for (key, present) in [
                    ("name", raw.name.is_some()),
                    ("role", raw.role.is_some()),
                    ("token_env", raw.token_env.is_some()),
                ] {
                    if !present {
                        problems.push(missing(key));
                    }
                }
                continue;
            };
            let role = match role.get_ref().as_str() {
                "read" => Role::Read,
                "csm" => Role::Csm,
                "admin" => Role::Admin,
                other => {
                    problems.push(src.span(
                        role,
                        format!("`role = \"{other}\"` is not \"read\", \"csm\" or \"admin\""),
                    ));
                    continue;
                }
            };
            if name.get_ref().trim().is_empty() || name.get_ref() == crate::api::auth::LOCAL_TOKEN {
                problems.push(src.span(
                    name,
                    format!(
                        "a token's `name` must not be empty or `{}`",
                        crate::api::auth::LOCAL_TOKEN
                    ),
                ));
                continue;
            }
            if let Some(first) = names.insert(name.get_ref().clone(), line) {
                problems.push(src.span(
                    name,
                    format!(
                        "a token named `{}` is already defined (line {first})",
                        name.get_ref()
                    ),
                ));
            }
            if !crate::sources::config::is_env_var_name(env.get_ref()) {
                problems.push(src.span(
                    env,
                    format!(
                        "`token_env = \"{}\"` is not an environment variable name",
                        env.get_ref()
                    ),
                ));
                continue;
            }
            out.tokens.push(TokenConfig {
                name: name.get_ref().clone(),
                role,
                token_env: env.get_ref().clone(),
                line,
            });
        }
        match (&http.tls_cert, &http.tls_key) {
            (None, None) => {}
            (Some(c), Some(k)) => {
                let (cert, key) = (base.join(c.get_ref()), base.join(k.get_ref()));
                for (p, s) in [(&cert, c), (&key, k)] {
                    if !p.is_file() {
                        problems
                            .push(src.span(s, format!("{} is not a readable file", p.display())));
                    }
                }
                out.tls = Some(TlsFiles { cert, key });
            }
            (Some(s), None) | (None, Some(s)) => problems.push(src.span(
                s,
                "TLS on the listener needs both `http.tls_cert` and `http.tls_key`",
            )),
        }
        out
    }
}
