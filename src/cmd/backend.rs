//! Where a command's work is done: a local store, or a running lull.

use std::io::{BufRead, Write};
use std::path::Path;
use std::time::Duration;

use crate::alert::MailRecord;
use crate::api::auth::{cookie_path, read_cookie};
use crate::api::client::Client;
use crate::app::accounts::{AccountsPage, AccountsQuery, MAX_PAGE};
use crate::app::feedback::{LoginLink, LoginLinkRequest};
use crate::app::ops::{
    BacktestOutcome, BacktestRequest, DeliverOutcome, DetectOutcome, DetectRequest, ImportOutcome,
    SnoozeOutcome, SnoozeRequest,
};
use crate::app::{App, AppError};
use crate::config::Config;
use crate::secret::Secret;
use crate::store::{StoreError, UnmatchedActor};
use crate::types::Day;

/// Local (the application layer on the configured store) or remote (a
/// running lull's API): the same operations either way.
pub enum Backend {
    Local(Box<App>),
    Remote(Client),
}

/// The API token: `LULL_TOKEN`, else the running service's local token.
fn token(config: Option<&Config>) -> Option<Secret> {
    std::env::var("LULL_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
        .map(Secret::new)
        .or_else(|| config.and_then(|c| read_cookie(&cookie_path(&c.store.path))))
}

impl Backend {
    /// `--server URL` reaches that lull; otherwise the configured store is
    /// opened, and if a running lull holds it, that lull's endpoint (from
    /// the same config) is used instead, with a note on stderr.
    pub fn open(server: Option<&str>, config_path: &Path, create: bool) -> anyhow::Result<Backend> {
        if let Some(url) = server {
            let config = Config::load(config_path).ok();
            return Ok(Backend::Remote(Client::new(url, token(config.as_ref()))?));
        }
        match App::open(config_path, create) {
            Ok(app) => Ok(Backend::Local(Box::new(app))),
            Err(e)
                if matches!(
                    e.downcast_ref::<StoreError>(),
                    Some(StoreError::Locked { .. })
                ) =>
            {
                let config = Config::load(config_path).map_err(|d| anyhow::anyhow!("{d}"))?;
                let url = service_url(&config);
                let Some(t) = token(Some(&config)) else {
                    anyhow::bail!(
                        "{e}\nthe running lull's API is at {url}, but no token was found: set LULL_TOKEN (a token from [[http.token]]), or run this as the user the service runs as (it leaves one in {})",
                        cookie_path(&config.store.path).display()
                    );
                };
                crate::say!(
                    "note: the store is held by the running lull; this goes through its API at {url}"
                );
                Ok(Backend::Remote(Client::new(&url, Some(t))?))
            }
            Err(e) => Err(e),
        }
    }

    /// Every account matching `q` (all pages).
    pub fn accounts(&self, q: &AccountsQuery) -> Result<AccountsPage, AppError> {
        let mut q = q.clone();
        q.offset = Some(0);
        q.limit = Some(MAX_PAGE);
        let mut page = self.accounts_page(&q)?;
        while page.accounts.len() < page.total - page.offset.min(page.total) {
            q.offset = Some(page.accounts.len());
            let next = self.accounts_page(&q)?;
            if next.accounts.is_empty() {
                break;
            }
            page.accounts.extend(next.accounts);
        }
        Ok(page)
    }

    fn accounts_page(&self, q: &AccountsQuery) -> Result<AccountsPage, AppError> {
        match self {
            Backend::Local(a) => a.accounts(q),
            Backend::Remote(c) => c.get("api/v1/accounts", q),
        }
    }

    pub fn unmatched(&self) -> Result<Vec<UnmatchedActor>, AppError> {
        match self {
            Backend::Local(a) => a.unmatched(),
            Backend::Remote(c) => c.get("api/v1/unmatched", &()),
        }
    }

    pub fn snooze(&self, id: &str, req: &SnoozeRequest) -> Result<SnoozeOutcome, AppError> {
        match self {
            Backend::Local(a) => a.snooze(id, req, &local_user()),
            Backend::Remote(c) => c.post(&format!("api/v1/accounts/{}/snooze", enc(id)), req),
        }
    }

    pub fn unsnooze(&self, id: &str) -> Result<SnoozeOutcome, AppError> {
        match self {
            Backend::Local(a) => a.unsnooze(id, &local_user()),
            Backend::Remote(c) => c.delete(&format!("api/v1/accounts/{}/snooze", enc(id))),
        }
    }

    /// A one-time sign-in link for the console.
    pub fn console_link(&self, email: Option<&str>) -> Result<LoginLink, AppError> {
        match self {
            Backend::Local(a) => a.login_link(
                &LoginLinkRequest {
                    email: email.map(str::to_string),
                    base: Some(service_url(&a.config)),
                },
                &local_user(),
            ),
            Backend::Remote(c) => c.post(
                "api/v1/console/link",
                &LoginLinkRequest {
                    email: email.map(str::to_string),
                    base: Some(c.base().to_string()),
                },
            ),
        }
    }

    pub fn alerts(&self) -> Result<Vec<MailRecord>, AppError> {
        match self {
            Backend::Local(a) => a.alerts(),
            Backend::Remote(c) => c.get("api/v1/alerts", &()),
        }
    }

    pub fn export(
        &self,
        from: Option<Day>,
        to: Option<Day>,
        out: &mut dyn Write,
    ) -> anyhow::Result<()> {
        match self {
            Backend::Local(a) => a.export(from, to, out),
            Backend::Remote(c) => {
                #[derive(serde::Serialize)]
                struct Range {
                    from: Option<Day>,
                    to: Option<Day>,
                }
                Ok(c.download("api/v1/export", &Range { from, to }, out)?)
            }
        }
    }

    /// A backup of everything into `out`.
    pub fn backup(&self, out: &mut dyn Write) -> anyhow::Result<crate::store::backup::Totals> {
        match self {
            Backend::Local(a) => Ok(a.store.backup_to(out)?),
            Backend::Remote(c) => {
                // Counted on the way through.
                let mut counter = Counting(out, 0);
                c.download("api/v1/backup", &(), &mut counter)?;
                Ok(crate::store::backup::Totals::default())
            }
        }
    }

    pub fn import(
        &self,
        reader: Box<dyn BufRead + Send>,
        input: &str,
        batch_size: usize,
        on_reject: impl FnMut(u64, &str),
        on_progress: impl FnMut(u64),
    ) -> Result<ImportOutcome, AppError> {
        match self {
            Backend::Local(a) => a.import(reader, input, batch_size, on_reject, on_progress),
            Backend::Remote(c) => c.upload("api/v1/import", reader),
        }
    }

    pub fn backtest(
        &self,
        req: &BacktestRequest,
        progress: impl FnMut(usize),
    ) -> Result<BacktestOutcome, AppError> {
        match self {
            Backend::Local(a) => a.backtest(req, progress),
            Backend::Remote(c) => c.post("api/v1/backtest", req),
        }
    }

    pub fn detect(&self, req: &DetectRequest) -> Result<DetectOutcome, AppError> {
        match self {
            Backend::Local(a) => a.detect(req),
            Backend::Remote(c) => c.post("api/v1/detect", req),
        }
    }

    /// Sends the outbox now (retrying a relay that is down for `[smtp]
    /// retry_secs`; Ctrl-C stops early, leaving mail queued).
    pub fn deliver(&self) -> Result<DeliverOutcome, AppError> {
        match self {
            Backend::Remote(c) => c.post("api/v1/deliver", &()),
            Backend::Local(a) => {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| AppError::new("internal", 500, e.to_string()))?;
                let retry = a
                    .config
                    .smtp
                    .as_ref()
                    .map_or(Duration::ZERO, |s| s.retry_for);
                runtime.block_on(async {
                    let halt = tokio_util::sync::CancellationToken::new();
                    let stop = async {
                        let _ = tokio::signal::ctrl_c().await;
                        halt.cancel();
                    };
                    a.deliver(retry, stop, &halt).await
                })
            }
        }
    }

    /// The local application, for what only a local store can do.
    pub fn local(&self) -> Option<&App> {
        match self {
            Backend::Local(a) => Some(a),
            Backend::Remote(_) => None,
        }
    }
}

/// A path segment, percent-encoded.
/// Where the service of `config` listens, as a URL (`http://127.0.0.1:9187`).
pub fn service_url(config: &Config) -> String {
    let listen = config.service.listen;
    let host = if listen.ip().is_unspecified() {
        std::net::SocketAddr::from(([127, 0, 0, 1], listen.port()))
    } else {
        listen
    };
    let scheme = if config.service.tls.is_some() {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{host}")
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Who runs the CLI here, for audit records (`cli:alice`).
fn local_user() -> String {
    format!(
        "cli:{}",
        std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .unwrap_or_else(|_| "unknown".into())
    )
}

struct Counting<'a>(&'a mut dyn Write, u64);

impl Write for Counting<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.0.write(buf)?;
        self.1 += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}
