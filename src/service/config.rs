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
    /// Where `/healthz`, `/readyz` and `/metrics` listen.
    pub listen: SocketAddr,
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
        }
    }
}

impl RawService {
    pub(crate) fn build(
        self,
        http: RawHttp,
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
            match l.get_ref().parse::<SocketAddr>() {
                Ok(a) => out.listen = a,
                Err(_) => problems.push(src.span(
                    l,
                    format!(
                        "`http.listen = \"{}\"` is not an address with a port, e.g. \"{DEFAULT_LISTEN}\" (or \"0.0.0.0:9187\" to listen on every interface)",
                        l.get_ref()
                    ),
                )),
            }
        }
        out
    }
}
