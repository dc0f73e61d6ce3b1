//! The application layer: everything a person or script does with lull,
//! written once. The CLI calls it on a local store; the service's HTTP API
//! (and through it the CLI's `--server` mode and the console) calls the
//! same methods on the store the service owns.
//!
//! [`App`] holds what every operation needs: the config, the accounts and
//! thresholds that SIGHUP may replace ([`Live`]), the store, and a clock.
//! Its methods are blocking (sled is); the service calls them off its
//! async workers. Results are plain serialisable types, so the CLI prints
//! the same whether it computed them or received them as JSON.

pub mod accounts;
pub mod feedback;
pub mod ops;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};

use crate::accounts::Registry;
use crate::alert::config::AlertsConfig;
use crate::config::Config;
use crate::detect::DetectConfig;
use crate::schedule::Clock;
use crate::store::{Store, StoreError};
use crate::types::Day;

/// What SIGHUP (or `POST /api/v1/reload`) may replace while lull runs.
pub struct Live {
    pub registry: Arc<Registry>,
    pub detect: Arc<DetectConfig>,
    pub alerts: Arc<AlertsConfig>,
    /// Receivers and routes.
    pub routing: Arc<crate::alert::route::Routing>,
}

/// The application: config, live settings, store, clock.
pub struct App {
    /// The config as it was loaded (what needs a restart to change).
    pub config: Config,
    pub config_path: PathBuf,
    live: RwLock<Arc<Live>>,
    pub store: Arc<Store>,
    pub clock: Clock,
    /// What account pages share (detector inputs, the account index),
    /// kept between requests; see [`accounts`].
    cache: Arc<Mutex<Option<Arc<accounts::Cached>>>>,
    /// A background rebuild of `cache` is under way.
    refreshing: Arc<std::sync::atomic::AtomicBool>,
    /// `cache` is out of date (see [`App::invalidate`]).
    stale: std::sync::atomic::AtomicBool,
    /// Held while `cache` is built from nothing.
    building: Mutex<()>,
    /// One delivery pass at a time: the service's delivery loop and a
    /// "deliver now" must never send the same outbox twice.
    pub delivery: tokio::sync::Mutex<()>,
    /// Slack user ids of CSMs, looked up once per process.
    pub slack_users: crate::alert::receivers::SlackUsers,
}

/// An error a person can act on, with a stable code for scripts.
#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error, utoipa::ToSchema,
)]
#[error("{message}")]
pub struct AppError {
    /// Stable, machine-readable: `not_found`, `bad_request`, `conflict`,
    /// `disk_full`, `store_broken`, `store_corrupt`, `store_error`, ...
    pub code: String,
    pub message: String,
    /// The HTTP status it answers with.
    #[serde(skip)]
    pub status: u16,
}

impl AppError {
    pub fn new(code: &str, status: u16, message: impl Into<String>) -> AppError {
        AppError {
            code: code.to_string(),
            message: message.into(),
            status,
        }
    }

    pub fn not_found(message: impl Into<String>) -> AppError {
        AppError::new("not_found", 404, message)
    }

    pub fn bad_request(message: impl Into<String>) -> AppError {
        AppError::new("bad_request", 400, message)
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> AppError {
        let (code, status) = match &e {
            StoreError::DiskFull { .. } => ("disk_full", 507),
            StoreError::Broken { .. } => ("store_broken", 503),
            StoreError::Corrupt { .. } | StoreError::Damaged { .. } => ("store_corrupt", 500),
            StoreError::NulInName(_) => ("bad_request", 400),
            StoreError::Backup(_) => ("bad_request", 400),
            _ => ("store_error", 500),
        };
        AppError::new(code, status, e.to_string())
    }
}

impl From<crate::import::ImportError> for AppError {
    fn from(e: crate::import::ImportError) -> AppError {
        match e {
            crate::import::ImportError::Store(s) => s.into(),
            other => AppError::new("bad_request", 400, other.to_string()),
        }
    }
}

impl App {
    /// Loads the config and accounts and opens the store (`create`: may
    /// create a new one).
    pub fn open(config_path: &Path, create: bool) -> anyhow::Result<App> {
        let config = Config::load(config_path)
            .map_err(|d| anyhow::anyhow!("{d}\n(run `lull check` to see every problem)"))?;
        let registry = Registry::load(&config.accounts_file, &config.identity)
            .map_err(|d| anyhow::anyhow!("{d}\n(run `lull check` to see every problem)"))?;
        let store = if create {
            Store::open(&config.store)?
        } else {
            Store::open_existing(&config.store)?
        };
        Ok(App::new(
            config,
            config_path.to_path_buf(),
            registry,
            Arc::new(store),
            Clock::System,
        ))
    }

    pub fn new(
        config: Config,
        config_path: PathBuf,
        registry: Registry,
        store: Arc<Store>,
        clock: Clock,
    ) -> App {
        App {
            live: RwLock::new(Arc::new(Live {
                registry: Arc::new(registry),
                detect: Arc::new(config.detect.clone()),
                alerts: Arc::new(config.alerts.clone()),
                routing: Arc::new(config.routing.clone()),
            })),
            config,
            config_path,
            store,
            clock,
            cache: Arc::new(Mutex::new(None)),
            refreshing: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            stale: std::sync::atomic::AtomicBool::new(false),
            building: Mutex::new(()),
            delivery: tokio::sync::Mutex::new(()),
            slack_users: Default::default(),
        }
    }

    /// The accounts and settings in force now.
    pub fn live(&self) -> Arc<Live> {
        self.live.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn set_live(&self, live: Live) {
        *self.live.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(live);
        *self.cache.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Today, in the config's time zone.
    pub fn today(&self) -> Day {
        Day::of(self.clock.now(), self.config.timezone)
    }

    /// Who alert e-mails come from (also names their Message-IDs).
    pub fn sender(&self) -> lettre::message::Mailbox {
        self.config.alert_sender()
    }

    /// Every message, per receiver: queued, sent, failed.
    pub fn messages(&self) -> Result<Vec<crate::alert::MailRecord>, StoreError> {
        let live = self.live();
        let from = self.sender();
        crate::alert::all(&self.store, self.view(&live, &from))
    }

    /// The messages the outbox holds, per receiver.
    pub fn pending_messages(&self) -> Result<Vec<crate::alert::MailRecord>, StoreError> {
        let live = self.live();
        let from = self.sender();
        crate::alert::deliver::pending(&self.store, self.view(&live, &from))
    }

    pub(crate) fn view<'a>(
        &self,
        live: &'a Live,
        from: &'a lettre::message::Mailbox,
    ) -> crate::alert::deliver::View<'a> {
        crate::alert::deliver::View {
            from,
            routing: &live.routing,
            registry: Some(&live.registry),
        }
    }
}
