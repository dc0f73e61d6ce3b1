//! `lull run`: the service the other pieces live in.
//!
//! One tokio runtime carries, as separate tasks:
//! - one poll loop per source, on the source's cron schedule (first poll at
//!   start); a source never has two polls running, an overrun skips ticks;
//! - the detection loop, on `[service] detect_schedule` in the config's time
//!   zone; at start it catches up a run that was missed while lull was down
//!   (after the first polls, so it judges fresh data);
//! - the delivery loop, always on: it sends what the outbox holds, retries
//!   with backoff while the relay is down, and wakes when detection queues;
//! - the HTTP endpoint (`crate::http`).
//!
//! Shutdown (SIGTERM, SIGINT) follows mini-redis: one cancellation token
//! tells every task to stop starting work; a poll may finish within half
//! the shutdown limit, else it is dropped — its commit is one atomic write
//! at its end, so a dropped poll leaves nothing behind and its cursor does
//! not move. What is still running at the limit is abandoned, the store is
//! flushed, and the process exits 0. SIGHUP re-reads the accounts file and
//! the parts of the config that are safe to change while running.

pub mod config;
pub mod health;
pub mod telemetry;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use chrono::Utc;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::accounts::Registry;
use crate::app::App;
use crate::cli::LogFormat;
use crate::config::Config;
use crate::schedule::{Clock, Ticker};
use crate::sources::{self, Source};
use crate::store::Store;
use crate::types::Day;
use health::Health;
use telemetry as m;

/// The default log level of the service (`RUST_LOG` overrides).
pub const DEFAULT_FILTER: &str = "info";
/// How long detection waits at start for the first polls to finish.
const FIRST_POLLS_WAIT: Duration = Duration::from_secs(600);
/// How often an empty outbox is looked at again without being woken.
const OUTBOX_RECHECK: Duration = Duration::from_secs(300);
/// "Keep retrying": the delivery loop retries until the relay is back.
const RETRY_FOREVER: Duration = Duration::from_secs(10 * 365 * 86_400);
/// How often the store is checked (it can still commit; its folder is the
/// one it opened; the disk has room): a deleted store folder is noticed
/// within this, before much is written into the void.
const STORE_CHECK: Duration = Duration::from_secs(2);
/// The exit code of a service that stopped because its store can no
/// longer commit: a supervisor restarts it (systemd `Restart=on-failure`).
pub const EXIT_STORE_FAILED: u8 = 3;

/// Why the service stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stopped {
    /// SIGTERM or SIGINT: a clean stop.
    Signal,
    /// The store can no longer commit (a write failed, or its folder was
    /// deleted or replaced): the service stops so it is restarted.
    StoreFailed(String),
}

/// The running service, shared by its tasks.
pub struct Service {
    /// The application: config, live settings, store.
    app: Arc<App>,
    health: Arc<Health>,
    clock: Clock,
    cancel: CancellationToken,
    /// Detection queued something: the delivery loop should look.
    wake_delivery: Arc<Notify>,
    /// Sources whose first poll has not finished yet.
    first_polls: tokio::sync::watch::Sender<usize>,
    /// The detection run due at start (if any) has finished or was found
    /// not due.
    caught_up: tokio::sync::watch::Sender<bool>,
    /// TLS on the listener (certificate reloaded on SIGHUP).
    tls: Option<Arc<crate::http::Tls>>,
}

/// What the process tells a running service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// SIGTERM, SIGINT: stop cleanly.
    Stop,
    /// SIGHUP: re-read what can change while running.
    Reload,
}

/// `lull run`: loads everything, serves until SIGTERM/SIGINT, exits 0
/// after a clean stop.
pub fn run(config_path: &Path, log_format: Option<LogFormat>) -> anyhow::Result<ExitCode> {
    let config = Config::load(config_path)
        .map_err(|d| anyhow::anyhow!("{d}\n(run `lull check` to see every problem)"))?;
    crate::logging::init(
        log_format
            .or(config.service.log_format)
            .unwrap_or(LogFormat::Text),
        DEFAULT_FILTER,
    );
    let registry = Registry::load(&config.accounts_file, &config.identity)
        .map_err(|d| anyhow::anyhow!("{d}\n(run `lull check` to see every problem)"))?;
    let store = Arc::new(Store::open(&config.store)?);
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .context("starting the metrics recorder")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("lull")
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let listen = config.service.listen;
    let app = Arc::new(App::new(
        config,
        config_path.to_path_buf(),
        registry,
        store.clone(),
        Clock::System,
    ));
    let outcome = runtime.block_on(async {
        // Signals first: a SIGTERM during start-up is not lost.
        let mut sigterm = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
        let mut sigint = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
        let mut sighup = signal(SignalKind::hangup()).context("listening for SIGHUP")?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen} ([http] listen)"))?;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            loop {
                let c = tokio::select! {
                    _ = sigterm.recv() => { tracing::info!("SIGTERM: stopping"); Control::Stop }
                    _ = sigint.recv() => { tracing::info!("SIGINT: stopping"); Control::Stop }
                    _ = sighup.recv() => Control::Reload,
                };
                if tx.send(c).await.is_err() {
                    return;
                }
            }
        });
        serve(app, listener, metrics, rx).await
    });
    // Tasks abandoned at the limit (a detection run in a blocking thread)
    // are not waited for: their writes are atomic.
    runtime.shutdown_timeout(Duration::from_millis(200));
    match outcome? {
        Stopped::Signal => {
            store.flush().context("flushing the store at shutdown")?;
            tracing::info!("stopped cleanly");
            Ok(ExitCode::SUCCESS)
        }
        Stopped::StoreFailed(why) => {
            tracing::error!(reason = %why, exit_code = EXIT_STORE_FAILED, "stopped because the store can no longer commit; what was committed before is on disk; restart lull (a supervisor does)");
            crate::say!("lull: {why}");
            Ok(ExitCode::from(EXIT_STORE_FAILED))
        }
    }
}

/// Hands memory freed after a big job (reading 100,000 accounts, a
/// detection run) back to the kernel: allocators keep freed memory for
/// later, and the service would otherwise sit at its daily peak all day.
/// The `lull` binary allocates with mimalloc; glibc's malloc still serves
/// what C code allocates, and an embedder may use it for everything.
pub fn release_freed_memory() {
    // SAFETY: mi_collect frees mimalloc's own unused pages (of this
    // thread's heap and the abandoned ones); no live allocation is touched.
    unsafe {
        libmimalloc_sys::mi_collect(true);
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns the allocator's free pages to the
    // kernel; no live allocation is touched.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Someone started lull at a terminal: tell them where the console is,
/// with a sign-in link (once, 15 minutes) — on the terminal only, never
/// in a log (a service's output is not a terminal).
fn offer_console(app: &Arc<App>, listen: std::net::SocketAddr, tls: bool) {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() {
        return;
    }
    let host = if listen.ip().is_unspecified() {
        std::net::SocketAddr::from(([127, 0, 0, 1], listen.port()))
    } else {
        listen
    };
    let base = format!("{}://{host}", if tls { "https" } else { "http" });
    let req = crate::app::feedback::LoginLinkRequest {
        email: None,
        base: Some(base.clone()),
    };
    match app.login_link(&req, crate::api::auth::LOCAL_TOKEN) {
        Ok(link) => println!(
            "\nlull's console: {}/c/\nSign in as an admin (this link works once, for 15 minutes; `lull console-link` makes another):\n  {}\n",
            app.config
                .console
                .public_url
                .as_ref()
                .map_or(base, |u| u.as_str().trim_end_matches('/').to_string()),
            link.url
        ),
        Err(e) => tracing::warn!(error = %e, "no console sign-in link"),
    }
}

/// Runs the service — polls, detection, delivery, backups, the HTTP
/// endpoint with the API — on `listener` until `control` says stop (or
/// the store fails); returns after the stop. Everything it runs on comes
/// in as a value, so a test can start it in-process.
pub async fn serve(
    app: Arc<App>,
    listener: tokio::net::TcpListener,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
    mut control: tokio::sync::mpsc::Receiver<Control>,
) -> anyhow::Result<Stopped> {
    let config = &app.config;
    let clock = app.clock;
    let listen = listener.local_addr().unwrap_or(config.service.listen);
    let names: Vec<String> = config.sources.iter().map(|s| s.name.to_string()).collect();
    m::register(&names);
    crate::api::register_metrics();
    let last_days = {
        let (store, names) = (app.store.clone(), names.clone());
        let tz = config.timezone;
        tokio::task::spawn_blocking(move || {
            names
                .into_iter()
                .map(|n| {
                    // Never a day after today, whatever dates were stored.
                    let today = Day::of(clock.now(), tz);
                    let last = store
                        .last_covered(&crate::types::SourceName(n.clone()), today)
                        .unwrap_or(None);
                    (n, last)
                })
                .collect::<Vec<_>>()
        })
        .await?
    };
    let health = Arc::new(Health::new(
        clock,
        config.timezone,
        config.detect.defaults.stale_days,
        last_days,
    ));
    let client = crate::sources::http::client()?;
    let mut built = Vec::new();
    for c in &config.sources {
        match Source::build(c, client.clone(), &config.limits) {
            Ok(s) => built.push(s),
            Err(e) => {
                // One broken source does not stop the others.
                tracing::error!(source = %c.name, error = %e, "source cannot run; fix the config or its secret and restart");
                metrics::counter!(m::POLL_FAILURES, "source" => c.name.to_string()).increment(1);
                health.update(c.name.as_str(), |s| s.last_error = Some(e.to_string()));
            }
        }
    }
    // Who may use the API: the configured tokens, and a local one for
    // the CLI on this machine (written beside the store).
    let cookie = crate::api::auth::cookie_path(&config.store.path);
    let mut auth = crate::api::auth::Auth::from_config(&config.service.tokens)
        .context("reading an API token ([[http.token]] token_env)")?;
    match crate::api::auth::write_cookie(&cookie) {
        Ok(t) => auth = auth.with_local(&t),
        Err(e) => {
            tracing::warn!(file = %cookie.display(), error = %e, "cannot write the local token: the CLI on this machine needs LULL_TOKEN")
        }
    }
    let tls = match &config.service.tls {
        Some(files) => Some(Arc::new(crate::http::Tls::load(files)?)),
        None => None,
    };
    let svc = Arc::new(Service {
        app: app.clone(),
        health: health.clone(),
        clock,
        cancel: CancellationToken::new(),
        wake_delivery: Arc::new(Notify::new()),
        first_polls: tokio::sync::watch::Sender::new(built.len()),
        caught_up: tokio::sync::watch::Sender::new(false),
        tls: tls.clone(),
    });
    svc.refresh_gauges().await;
    release_freed_memory();

    let mut tasks = JoinSet::new();
    let auth = Arc::new(auth);
    let console = crate::console::ConsoleState::new(
        app.clone(),
        auth.clone(),
        Some(health.clone()),
        tls.is_some(),
    )
    .context("setting up the console")?;
    if let Err(e) = app.count_feedback() {
        tracing::warn!(error = %e, "feedback not counted in /metrics");
    }
    let api = crate::api::ApiState {
        app: app.clone(),
        auth,
        health: Some(health.clone()),
        wake_delivery: Some(svc.wake_delivery.clone()),
        on_reload: Some({
            let svc = svc.clone();
            Arc::new(move || svc.after_reload())
        }),
    };
    let router = crate::http::router(
        crate::http::AppState {
            health,
            store: app.store.clone(),
            metrics,
        },
        api,
        console,
    );
    let stop_http = svc.cancel.clone();
    tasks.spawn(crate::http::serve(listener, router, tls, stop_http));
    tracing::info!(address = %listen, tls = svc.tls.is_some(), "HTTP endpoint: /healthz /readyz /metrics /api/v1 /c/ (console)");
    offer_console(&app, listen, svc.tls.is_some());
    for source in built {
        tasks.spawn(svc.clone().poll_loop(source));
    }
    tasks.spawn(svc.clone().detect_loop());
    tasks.spawn(svc.clone().delivery_loop());
    tasks.spawn(svc.clone().backup_loop());
    let (store_failed_tx, mut store_failed) = tokio::sync::mpsc::channel::<String>(1);
    tasks.spawn(svc.clone().store_watch(store_failed_tx));
    {
        // The account index the API's pages read, built now rather than
        // by the first request; after the detection run due at start, if
        // one is: that run changes what the index shows (it would be
        // built twice), and both read every account (together they took
        // a third longer at 100,000 accounts).
        let app = app.clone();
        let due = svc.missed_run(&svc.detect_ticker()).await.is_some();
        let mut caught_up = svc.caught_up.subscribe();
        let cancel = svc.cancel.clone();
        tokio::spawn(async move {
            if due {
                tokio::select! {
                    _ = caught_up.wait_for(|done| *done) => {}
                    () = cancel.cancelled() => return,
                }
            }
            if cancel.is_cancelled() {
                return;
            }
            let built = tokio::task::spawn_blocking(move || {
                let t = std::time::Instant::now();
                let built = app.warm().map(|()| t.elapsed());
                release_freed_memory();
                built
            })
            .await;
            match built {
                Ok(Ok(took)) => {
                    tracing::info!(seconds = took.as_secs_f64(), "account index built")
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "building the account index failed; the first page tries again")
                }
                Err(e) => tracing::warn!(error = %e, "building the account index stopped"),
            }
        });
    }
    svc.health.set_scheduler_running(true);
    tracing::info!(
        sources = config.sources.len(),
        detect_schedule = %config.service.detect_schedule_text,
        timezone = %config.timezone,
        smtp = config.smtp.is_some(),
        "lull is running"
    );

    let stopped = loop {
        tokio::select! {
            c = control.recv() => match c {
                Some(Control::Reload) => svc.clone().reload().await,
                Some(Control::Stop) | None => break Stopped::Signal,
            },
            Some(why) = store_failed.recv() => {
                tracing::error!(reason = %why, "the store can no longer commit: stopping");
                break Stopped::StoreFailed(why);
            }
            Some(done) = tasks.join_next() => {
                // Tasks run until the stop: one that ends is a fault, and
                // `/readyz` says so until a restart.
                svc.health.set_scheduler_running(false);
                match done {
                    Ok(Ok(())) => tracing::error!("a service task ended on its own"),
                    Ok(Err(e)) => tracing::error!(error = %format!("{e:#}"), "a service task failed"),
                    Err(e) => tracing::error!(error = %e, "a service task panicked"),
                }
            }
        }
    };
    svc.health.set_scheduler_running(false);
    svc.cancel.cancel();
    let _ = std::fs::remove_file(&cookie);
    let limit = config.service.shutdown;
    let waited = tokio::time::timeout(limit.saturating_sub(Duration::from_millis(500)), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if waited.is_err() {
        tracing::warn!(
            limit_secs = limit.as_secs(),
            "work still in progress at the shutdown limit is abandoned (nothing of it was committed)"
        );
        tasks.abort_all();
    }
    Ok(stopped)
}

impl Service {
    fn config(&self) -> &Config {
        &self.app.config
    }

    fn store(&self) -> &Arc<Store> {
        &self.app.store
    }

    /// How long a poll in progress at shutdown may still take.
    fn grace(&self) -> Duration {
        self.config().service.shutdown / 2
    }

    /// Looks at the store every [`STORE_CHECK`]: a store that can no
    /// longer commit stops the service (so it is restarted); a disk too
    /// full to take data makes the service not ready, until it has room.
    async fn store_watch(
        self: Arc<Self>,
        failed: tokio::sync::mpsc::Sender<String>,
    ) -> anyhow::Result<()> {
        loop {
            let store = self.store().clone();
            let checked = tokio::task::spawn_blocking(move || {
                (store.check(), store.write_refused(), store.free_bytes())
            })
            .await;
            if let Ok((check, refused, free)) = checked {
                if let Some(free) = free {
                    metrics::gauge!(m::STORE_FREE).set(free as f64);
                }
                self.health.set_store_problem(refused);
                if let Err(e) = check {
                    metrics::gauge!(m::STORE_OK).set(0.0);
                    self.health.set_store_problem(Some(e.to_string()));
                    let _ = failed.send(e.to_string()).await;
                    self.cancel.cancelled().await;
                    return Ok(());
                }
            }
            tokio::select! {
                () = self.cancel.cancelled() => return Ok(()),
                () = tokio::time::sleep(STORE_CHECK) => {}
            }
        }
    }

    /// Takes a backup on `[backup] schedule` into `[backup] dir`, keeping
    /// the newest `keep`.
    async fn backup_loop(self: Arc<Self>) -> anyhow::Result<()> {
        let cfg = self.config().backup.clone();
        if cfg.keep == 0 {
            self.cancel.cancelled().await;
            return Ok(());
        }
        // The age of the newest backup is known from the start; a store
        // that has none gets one now, not at the next scheduled time.
        let newest = crate::store::backup::newest(&cfg.dir)
            .as_deref()
            .and_then(crate::store::backup::taken_at);
        if let Some(t) = newest {
            metrics::gauge!(m::LAST_BACKUP).set(t.timestamp() as f64);
        }
        let ticker = Ticker::new("backup", cfg.schedule.clone(), self.config().timezone);
        ticker
            .run(self.clock, &self.cancel, newest.is_none(), |_| {
                let svc = self.clone();
                let cfg = cfg.clone();
                async move {
                    let span = tracing::info_span!("backup", dir = %cfg.dir.display());
                    let now = svc.clock.now();
                    let store = svc.store().clone();
                    let done = tokio::task::spawn_blocking(move || {
                        let _e = span.enter();
                        take_backup(&store, &cfg, now)
                    })
                    .await;
                    match done {
                        Ok(Ok((file, bytes))) => {
                            metrics::counter!(m::BACKUPS, "result" => "ok").increment(1);
                            metrics::gauge!(m::LAST_BACKUP).set(now.timestamp() as f64);
                            metrics::gauge!(m::LAST_BACKUP_BYTES).set(bytes as f64);
                            tracing::info!(file = %file.display(), bytes, "backup written");
                        }
                        Ok(Err(e)) => {
                            metrics::counter!(m::BACKUPS, "result" => "failed").increment(1);
                            tracing::error!(error = %e, "backup failed; the next one is tried on schedule");
                        }
                        Err(e) => tracing::error!(error = %e, "backup did not finish"),
                    }
                }
            })
            .await;
        Ok(())
    }

    async fn poll_loop(self: Arc<Self>, source: Source) -> anyhow::Result<()> {
        let ticker = Ticker::new(
            format!("poll:{}", source.name()),
            source.config.schedule.clone(),
            self.config().timezone,
        );
        let mut first = true;
        ticker
            .run(self.clock, &self.cancel, true, |_| {
                let first_run = std::mem::take(&mut first);
                let (svc, source) = (&self, &source);
                async move {
                    svc.poll_once(source).await;
                    if first_run {
                        svc.first_polls.send_modify(|n| *n = n.saturating_sub(1));
                    }
                }
            })
            .await;
        Ok(())
    }

    /// One poll of one source, with its metrics and health.
    async fn poll_once(&self, source: &Source) {
        let name = source.name().to_string();
        self.health.update(&name, |s| s.polling = true);
        let registry = self.app.live().registry.clone();
        let poll = sources::poll(
            source,
            self.store().clone(),
            registry,
            self.config().timezone,
            self.clock.now(),
        );
        tokio::pin!(poll);
        let result = tokio::select! {
            r = &mut poll => Some(r),
            () = self.cancel.cancelled() => {
                tokio::time::timeout(self.grace(), &mut poll).await.ok()
            }
        };
        self.health.update(&name, |s| s.polling = false);
        metrics::counter!(m::POLLS, "source" => name.clone()).increment(1);
        let now = self.clock.now();
        match result {
            Some(Ok(rep)) => {
                metrics::counter!(m::ACTIVITIES, "source" => name.clone()).increment(rep.counted);
                metrics::counter!(m::UNMATCHED_ACTIVITIES, "source" => name.clone())
                    .increment(rep.unmatched);
                metrics::gauge!(m::LAST_POLL_SUCCESS, "source" => name.clone())
                    .set(now.timestamp() as f64);
                metrics::gauge!(m::POLL_SECONDS, "source" => name.clone()).set(rep.seconds);
                self.health.update(&name, |s| {
                    s.last_success = Some(now);
                    s.last_error = None;
                    if let Some((_, last)) = rep.covered {
                        s.last_day = s.last_day.max(Some(last));
                    }
                });
            }
            Some(Err(e)) => {
                tracing::error!(source = %name, error = %e.error, "poll failed; nothing of it was stored, the next tick tries again");
                metrics::counter!(m::POLL_FAILURES, "source" => name.clone()).increment(1);
                self.health.update(&name, |s| {
                    s.last_failure = Some(now);
                    s.last_error = Some(e.error.to_string());
                });
            }
            None => {
                tracing::warn!(source = %name, "poll abandoned at shutdown; nothing of it was stored, its cursor did not move");
                metrics::counter!(m::POLL_FAILURES, "source" => name.clone()).increment(1);
            }
        }
    }

    /// The detection schedule, in the configured time zone.
    fn detect_ticker(&self) -> Ticker {
        Ticker::new(
            "detect",
            self.config().service.detect_schedule.clone(),
            self.config().timezone,
        )
    }

    async fn detect_loop(self: Arc<Self>) -> anyhow::Result<()> {
        let ticker = self.detect_ticker();
        // Let the first polls land, so a catch-up run judges fresh data.
        let mut pending = self.first_polls.subscribe();
        tokio::select! {
            _ = tokio::time::timeout(FIRST_POLLS_WAIT, pending.wait_for(|n| *n == 0)) => {}
            () = self.cancel.cancelled() => return Ok(()),
        }
        let due = self.missed_run(&ticker).await;
        match due {
            Some(day) => {
                tracing::info!(%day, "detection for {day} did not run while lull was down; running it now")
            }
            None => {
                self.caught_up.send_replace(true);
            }
        }
        ticker
            .run(self.clock, &self.cancel, due.is_some(), |_| {
                let svc = self.clone();
                async move {
                    svc.clone().detect_once().await;
                    // The first run was the one due at start.
                    svc.caught_up.send_replace(true);
                }
            })
            .await;
        Ok(())
    }

    /// The day of the schedule's last tick (within a week), if it has
    /// passed and that day was not judged yet.
    async fn missed_run(&self, ticker: &Ticker) -> Option<Day> {
        let last_tick = ticker.last_at_or_before(self.clock.now(), chrono::Duration::days(7))?;
        let day = Day::of(last_tick, self.config().timezone);
        let store = self.store().clone();
        let judged = tokio::task::spawn_blocking(move || store.last_judged_day())
            .await
            .ok()?
            .ok()?;
        judged.is_none_or(|j| j < day).then_some(day)
    }

    async fn detect_once(self: Arc<Self>) {
        let span = tracing::info_span!("detection");
        let svc = self.clone();
        let run = tokio::task::spawn_blocking(move || span.in_scope(|| svc.judge_and_record()));
        tokio::pin!(run);
        let done = tokio::select! {
            done = &mut run => done,
            () = self.cancel.cancelled() => {
                // A run judges every account, then records in one atomic
                // write: stopping does not wait for it; the process ends
                // with it either fully recorded or not at all, and the
                // next start catches the day up.
                tracing::warn!("stopping during a detection run: it is abandoned; the next start runs it again");
                return;
            }
        };
        release_freed_memory();
        match done {
            Ok(Ok(queued)) if queued > 0 => self.wake_delivery.notify_one(),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                metrics::counter!(m::DETECTION_FAILURES).increment(1);
                tracing::error!(error = %format!("{e:#}"), "detection failed; nothing of it was recorded, the next tick tries again");
            }
            Err(e) => {
                metrics::counter!(m::DETECTION_FAILURES).increment(1);
                tracing::error!(error = %e, "detection did not finish");
            }
        }
    }

    /// Judges today and records it, like `lull detect`. Returns how many
    /// notices were queued.
    fn judge_and_record(&self) -> anyhow::Result<usize> {
        let started = std::time::Instant::now();
        let day = Day::of(self.clock.now(), self.config().timezone);
        let run = self.app.detect(&crate::app::ops::DetectRequest {
            at: Some(day),
            dry_run: false,
            keep: crate::detect::Keep::States,
        })?;
        if run.already_judged {
            tracing::info!(%day, "already judged today; nothing new");
            return Ok(0);
        }
        for (source, last) in &run.newly_stale {
            tracing::warn!(source = %source, last_data = %last, ops_told = run.ops.is_some(), "source has no recent data: its channels are unknown, no silence alerts from it");
        }
        let mut per_state = std::collections::BTreeMap::new();
        for a in &run.accounts {
            *per_state.entry(a.state.as_str()).or_insert(0u64) += 1;
        }
        for state in m::STATES {
            metrics::gauge!(m::ACCOUNTS, "state" => state)
                .set(per_state.get(state).copied().unwrap_or(0) as f64);
        }
        let watching = run.accounts.iter().filter(|a| a.watch).count();
        metrics::gauge!(m::WATCHING).set(watching as f64);
        metrics::counter!(m::ALERTS_QUEUED).increment(run.queued as u64);
        let seconds = started.elapsed().as_secs_f64();
        metrics::gauge!(m::DETECTION_SECONDS).set(seconds);
        metrics::gauge!(m::LAST_DETECTION).set(Utc::now().timestamp() as f64);
        self.refresh_store_gauges();
        tracing::info!(
            %day,
            accounts = run.accounts.len(),
            notices = run.notices.len(),
            queued = run.queued,
            seconds,
            "detection done"
        );
        Ok(run.queued)
    }

    /// The gauges read from the store (outbox depth, unmatched actors).
    async fn refresh_gauges(self: &Arc<Self>) {
        let svc = self.clone();
        let _ = tokio::task::spawn_blocking(move || svc.refresh_store_gauges()).await;
    }

    fn refresh_store_gauges(&self) {
        if let Ok(p) = self.app.pending_messages() {
            metrics::gauge!(m::OUTBOX).set(p.len() as f64);
        }
        if let Ok(u) = self.store().unmatched() {
            metrics::gauge!(m::UNMATCHED_ACTORS).set(u.len() as f64);
        }
    }

    /// Always on: sends what is queued, retrying until the relay takes
    /// it; wakes when detection queues more (or a "deliver now" wants the
    /// outbox: a pass ends at its next pause and lets go of it).
    async fn delivery_loop(self: Arc<Self>) -> anyhow::Result<()> {
        let mut told = false;
        loop {
            // Nothing can send (no [smtp], no other receiver): wait for a
            // reload to add a receiver, or for the next detection.
            let http_receivers = self.app.live().routing.has_http_receivers();
            if self.config().smtp.is_none() && !http_receivers {
                if !told {
                    tracing::info!(
                        "no [smtp] and no other receiver configured: alerts stay queued (`lull alerts` lists them)"
                    );
                    told = true;
                }
                tokio::select! {
                    () = self.cancel.cancelled() => return Ok(()),
                    () = self.wake_delivery.notified() => continue,
                }
            }
            let stop = async {
                tokio::select! {
                    () = self.cancel.cancelled() => {}
                    () = self.wake_delivery.notified() => {}
                }
            };
            let pass = self
                .app
                .deliver(RETRY_FOREVER, stop, &self.cancel)
                .instrument(tracing::info_span!("delivery"))
                .await;
            match pass {
                Ok(out) => {
                    if let Some(e) = &out.error {
                        tracing::error!(error = %e, "alert delivery cannot start; alerts stay queued");
                        self.cancel.cancelled().await;
                        return Ok(());
                    }
                    let d = out.delivered.unwrap_or_default();
                    metrics::counter!(m::ALERTS_SENT).increment(d.sent as u64);
                    metrics::counter!(m::ALERTS_FAILED).increment(d.failed as u64);
                    metrics::gauge!(m::OUTBOX).set(d.queued as f64);
                    if d.sent + d.failed > 0 {
                        tracing::info!(
                            sent = d.sent,
                            failed = d.failed,
                            queued = d.queued,
                            "alert delivery pass done"
                        );
                    }
                    if self.cancel.is_cancelled() {
                        return Ok(());
                    }
                    if d.queued > d.held + d.blocked {
                        // Woken with mail still queued: go again (after
                        // whoever asked for the outbox had it).
                        tokio::task::yield_now().await;
                        continue;
                    }
                    if let Some(until) = d.held_until {
                        // Only muted messages are left: go again when the
                        // first mute window ends (or when woken).
                        let wait = (until - Utc::now()).to_std().unwrap_or_default()
                            + Duration::from_secs(1);
                        tracing::info!(held = d.held, until = %until, "messages held by a mute window");
                        tokio::select! {
                            () = self.cancel.cancelled() => return Ok(()),
                            () = self.wake_delivery.notified() => {}
                            () = tokio::time::sleep(wait) => {}
                        }
                        continue;
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "alert delivery stopped on a store error; retrying in a minute");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(60)) => continue,
                        () = self.cancel.cancelled() => return Ok(()),
                    }
                }
            }
            tokio::select! {
                () = self.cancel.cancelled() => return Ok(()),
                () = self.wake_delivery.notified() => {}
                () = tokio::time::sleep(OUTBOX_RECHECK) => {}
            }
        }
    }

    /// SIGHUP: re-read the accounts file and the parts of the config that
    /// can change while running. Anything invalid keeps what runs.
    async fn reload(self: Arc<Self>) {
        let svc = self.clone();
        let span = tracing::info_span!("reload", config = %self.app.config_path.display());
        let _ = tokio::task::spawn_blocking(move || {
            span.in_scope(|| match svc.app.reload() {
                Ok(out) => {
                    if !out.restart_needed.is_empty() {
                        tracing::warn!(
                            changed = %out.restart_needed.join(", "),
                            "these changes take effect at the next restart"
                        );
                    }
                    metrics::counter!(m::RELOADS, "result" => "ok").increment(1);
                    tracing::info!(
                        accounts = out.accounts,
                        "reloaded the accounts file, [identity], [detect] and [alerts]"
                    );
                    svc.after_reload();
                }
                Err(e) => {
                    metrics::counter!(m::RELOADS, "result" => "failed").increment(1);
                    tracing::error!("{e}");
                }
            })
        })
        .await;
        release_freed_memory();
    }

    /// What follows a reload that took: staleness, TLS files, and a
    /// delivery pass (receivers and routes may have changed).
    fn after_reload(&self) {
        self.wake_delivery.notify_one();
        self.health
            .set_stale_days(self.app.live().detect.defaults.stale_days);
        if let Some(tls) = &self.tls {
            match tls.reload() {
                Ok(()) => tracing::info!("TLS certificate and key re-read"),
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "TLS files not re-read; the previous certificate stays")
                }
            }
        }
    }
}

/// Writes one backup into `cfg.dir` and prunes the oldest beyond `keep`.
fn take_backup(
    store: &Store,
    cfg: &crate::limits::BackupConfig,
    now: chrono::DateTime<Utc>,
) -> anyhow::Result<(PathBuf, u64)> {
    std::fs::create_dir_all(&cfg.dir)
        .with_context(|| format!("creating the backup folder {}", cfg.dir.display()))?;
    let file = cfg.dir.join(crate::store::backup::file_name(now, ""));
    store.backup_file(&file)?;
    for old in crate::store::backup::prune(&cfg.dir, cfg.keep) {
        tracing::info!(file = %old.display(), "old backup removed");
    }
    let bytes = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    Ok((file, bytes))
}

/// The parts of a new config that only a restart applies.
pub fn needs_restart(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut out = Vec::new();
    let same =
        |a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| format!("{a:?}") == format!("{b:?}");
    if old.timezone != new.timezone {
        out.push("timezone");
    }
    if !same(&old.store.path, &new.store.path) || old.store.cache_bytes != new.store.cache_bytes {
        out.push("[store]");
    }
    if !same(&old.sources, &new.sources) {
        out.push("[[source]]");
    }
    if !same(&old.smtp, &new.smtp) {
        out.push("[smtp]");
    }
    if !same(&old.service, &new.service) {
        out.push("[service]/[http]");
    }
    if old.limits != new.limits {
        out.push("[limits]");
    }
    if old.backup.dir != new.backup.dir
        || old.backup.keep != new.backup.keep
        || old.backup.schedule_text != new.backup.schedule_text
    {
        out.push("[backup]");
    }
    if old.console != new.console {
        out.push("[console]");
    }
    out
}
