//! The config file: TOML, every key defaulted where a default can work,
//! paths relative to the file's folder, unknown keys rejected with their line.

use std::path::{Path, PathBuf};

use chrono_tz::Tz;
use serde::Deserialize;
use toml::Spanned;

use crate::detect::DetectConfig;
use crate::detect::params::RawDetect;
use crate::diag::{Diagnostic, Diagnostics, SourceText};

/// Where the store lives when the config does not say: next to the config.
pub const DEFAULT_STORE_PATH: &str = "data/lull.db";
/// The accounts file when the config does not name one.
pub const DEFAULT_ACCOUNTS_FILE: &str = "accounts.toml";
/// sled's page cache. sled's own default is 1 GiB. With the patched sled
/// (vendor/sled) it bounds what reads keep; 8 MiB keeps `lull run` small
/// at 100k accounts without slowing detection, export or imports (every
/// run reads each account once, so a bigger cache buys it nothing).
pub const DEFAULT_CACHE_MB: u64 = 8;
/// Free space lull keeps on the store's disk: below it, writes are refused
/// (and retried later) instead of letting sled meet a full disk, on which
/// it can hang or leave files it later reads as corruption.
pub const DEFAULT_MIN_FREE_MB: u64 = 64;
/// Where lull looks for its config without `--config` or `$LULL_CONFIG`.
pub const DEFAULT_CONFIG_PATH: &str = "config/lull.toml";

#[derive(Debug, Deserialize, Default)]
struct RawConfig {
    timezone: Option<Spanned<String>>,
    #[serde(default)]
    store: RawStore,
    #[serde(default)]
    accounts: RawAccounts,
    #[serde(default)]
    identity: IdentityConfig,
    #[serde(default)]
    detect: RawDetect,
    #[serde(default)]
    source: Vec<crate::sources::config::RawSource>,
    smtp: Option<Spanned<crate::alert::config::RawSmtp>>,
    #[serde(default)]
    alerts: crate::alert::config::RawAlerts,
    #[serde(default)]
    service: crate::service::config::RawService,
    #[serde(default)]
    http: crate::service::config::RawHttp,
    #[serde(default)]
    limits: crate::limits::RawLimits,
    #[serde(default)]
    backup: crate::limits::RawBackup,
    #[serde(default)]
    console: crate::console::config::RawConsole,
    #[serde(default)]
    receiver: Vec<crate::alert::route::RawReceiver>,
    #[serde(default)]
    route: Vec<crate::alert::route::RawRoute>,
}

#[derive(Debug, Deserialize, Default)]
struct RawStore {
    path: Option<String>,
    cache_mb: Option<Spanned<u64>>,
    min_free_mb: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize, Default)]
struct RawAccounts {
    file: Option<String>,
}

/// Who is *not* a customer. The vendor's own staff answer in the forum and
/// on tickets all day; counting them would make every account look busy.
#[derive(Debug, Clone, Deserialize, Default, PartialEq)]
pub struct IdentityConfig {
    /// E-mail domains of staff (subdomains included).
    #[serde(default)]
    pub ignore_domains: Vec<Spanned<String>>,
    /// Individual staff e-mail addresses.
    #[serde(default)]
    pub ignore_emails: Vec<Spanned<String>>,
    /// Forum/portal handles of staff, per source name.
    #[serde(default)]
    pub ignore_handles: std::collections::BTreeMap<String, Vec<String>>,
}

/// The validated config.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this config was read from.
    pub file: PathBuf,
    /// Days are calendar days in this zone (UTC unless set).
    pub timezone: Tz,
    pub store: StoreConfig,
    pub accounts_file: PathBuf,
    pub identity: IdentityConfig,
    /// Thresholds and channels of silence detection.
    pub detect: DetectConfig,
    /// The `[[source]]` tables, validated.
    pub sources: Vec<crate::sources::SourceConfig>,
    /// How alert e-mails leave; without it alerts stay queued.
    pub smtp: Option<crate::alert::config::SmtpConfig>,
    pub alerts: crate::alert::config::AlertsConfig,
    /// What only `lull run` reads: detection schedule, shutdown, HTTP.
    pub service: crate::service::config::ServiceConfig,
    /// What lull accepts from sources and import files.
    pub limits: crate::limits::Limits,
    /// Where backups go and when the service takes them.
    pub backup: crate::limits::BackupConfig,
    /// The web console and the links in alert e-mails.
    pub console: crate::console::config::ConsoleConfig,
    /// Where notices go: `[[receiver]]` and `[[route]]`.
    pub routing: crate::alert::route::Routing,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StoreConfig {
    pub path: PathBuf,
    pub cache_bytes: u64,
    /// Writes are refused when less than this is free on the store's disk.
    pub min_free_bytes: u64,
    /// Where backups are (named in the "corrupt" error; the upgrade of an
    /// older store writes one there first).
    pub backup_dir: PathBuf,
}

impl Config {
    /// Who alert e-mails come from; it also names their Message-IDs, so the
    /// default applies when no SMTP is configured (the queue is listed the
    /// same way).
    pub fn alert_sender(&self) -> lettre::message::Mailbox {
        match &self.smtp {
            Some(s) => s.from.clone(),
            None => crate::alert::config::default_from(),
        }
    }

    /// Picks the config path: `--config`, then `$LULL_CONFIG`, then
    /// `config/lull.toml`. (clap already folds the env var into the flag.)
    pub fn resolve_path(flag: Option<PathBuf>) -> PathBuf {
        flag.unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH))
    }

    /// Reads and validates the config file, returning every problem found.
    pub fn load(path: &Path) -> Result<Config, Diagnostics> {
        let src = SourceText::read(path).map_err(|d| Diagnostics(vec![d]))?;
        Config::from_source(path, src)
    }

    /// Validates config text as if read from `path`.
    pub fn from_text(path: &Path, text: String) -> Result<Config, Diagnostics> {
        Config::from_source(path, SourceText::new(path, text))
    }

    fn from_source(path: &Path, src: SourceText) -> Result<Config, Diagnostics> {
        let (raw, mut problems): (RawConfig, Vec<Diagnostic>) = src.parse_toml()?;
        let base = path.parent().unwrap_or(Path::new("."));

        let timezone = match &raw.timezone {
            None => Tz::UTC,
            Some(tz) => tz.get_ref().parse::<Tz>().unwrap_or_else(|_| {
                problems.push(src.span(
                    tz,
                    format!(
                        "`timezone = \"{}\"` is not an IANA time zone name (e.g. \"UTC\", \"Europe/Berlin\")",
                        tz.get_ref()
                    ),
                ));
                Tz::UTC
            }),
        };
        let cache_mb = match &raw.store.cache_mb {
            None => DEFAULT_CACHE_MB,
            Some(c) if *c.get_ref() == 0 => {
                problems.push(src.span(c, "`store.cache_mb` must be at least 1"));
                DEFAULT_CACHE_MB
            }
            Some(c) => *c.get_ref(),
        };
        for d in &raw.identity.ignore_domains {
            if !crate::accounts::is_plausible_domain(d.get_ref()) {
                problems.push(src.span(
                    d,
                    format!(
                        "`{}` in identity.ignore_domains is not a domain",
                        d.get_ref()
                    ),
                ));
            }
        }
        for e in &raw.identity.ignore_emails {
            if !crate::accounts::is_plausible_email(e.get_ref()) {
                problems.push(src.span(
                    e,
                    format!(
                        "`{}` in identity.ignore_emails is not an e-mail address",
                        e.get_ref()
                    ),
                ));
            }
        }
        let min_free_mb = match &raw.store.min_free_mb {
            None => DEFAULT_MIN_FREE_MB,
            Some(m) => *m.get_ref(),
        };
        let store_path = base.join(raw.store.path.as_deref().unwrap_or(DEFAULT_STORE_PATH));
        let limits = raw.limits.build(&src, &mut problems);
        let backup = raw.backup.build(base, &store_path, &src, &mut problems);
        let console = raw.console.build(&src, &mut problems);
        let mut detect = raw.detect.build(&src, &mut problems);
        let sources = crate::sources::config::build_sources(&raw.source, &src, &mut problems);
        detect.polled = sources.iter().map(|s| s.name.to_string()).collect();
        let smtp = raw
            .smtp
            .and_then(|s| crate::alert::config::RawSmtp::build(s, base, &src, &mut problems));
        let alerts = raw.alerts.build(&src, &mut problems);
        let routing =
            crate::alert::route::build(raw.receiver, raw.route, timezone, &src, &mut problems);
        let service = raw.service.build(raw.http, base, &src, &mut problems);
        if !problems.is_empty() {
            return Err(Diagnostics(problems));
        }
        Ok(Config {
            file: path.to_path_buf(),
            timezone,
            store: StoreConfig {
                path: store_path,
                cache_bytes: cache_mb * 1024 * 1024,
                min_free_bytes: min_free_mb << 20,
                backup_dir: backup.dir.clone(),
            },
            accounts_file: base.join(
                raw.accounts
                    .file
                    .as_deref()
                    .unwrap_or(DEFAULT_ACCOUNTS_FILE),
            ),
            identity: raw.identity,
            detect,
            sources,
            smtp,
            alerts,
            service,
            limits,
            backup,
            console,
            routing,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let p = dir.join("lull.toml");
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn minimal_config_from_the_contract_works_and_paths_are_relative_to_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "[store]\npath = \"data/lull.db\"\n\n[accounts]\nfile = \"accounts.toml\"\n",
        );
        let c = Config::load(&p).unwrap();
        assert_eq!(c.store.path, dir.path().join("data/lull.db"));
        assert_eq!(c.accounts_file, dir.path().join("accounts.toml"));
        assert_eq!(c.timezone, Tz::UTC);
        assert_eq!(c.store.cache_bytes, DEFAULT_CACHE_MB * 1024 * 1024);
    }

    #[test]
    fn empty_config_uses_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let c = Config::load(&write(dir.path(), "")).unwrap();
        assert_eq!(c.store.path, dir.path().join(DEFAULT_STORE_PATH));
    }

    #[test]
    fn config_errors_name_key_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "timezone = \"Mars/Olympus\"\n[store]\npath = \"x\"\ncache_size = 3\n[identity]\nignore_domains = [\"not a domain\"]\n",
        );
        let err = Config::load(&p).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("lull.toml:4:1: unknown key `store.cache_size`"),
            "{text}"
        );
        // Every problem is reported, not just the first.
        assert_eq!(err.0.len(), 3, "{text}");
        assert!(text.contains("lull.toml:1:12:"), "{text}");
        assert!(text.contains("Mars/Olympus"), "{text}");
        assert!(text.contains("lull.toml:6:19:"), "{text}");
    }

    #[test]
    fn service_and_http_tables_are_read_and_bad_values_named() {
        let dir = tempfile::tempdir().unwrap();
        let c = Config::load(&write(
            dir.path(),
            "timezone = \"Europe/Berlin\"\n[service]\ndetect_schedule = \"0 30 7 * * Mon-Fri\"\nshutdown_secs = 5\nlog_format = \"json\"\n[http]\nlisten = \"0.0.0.0:9999\"\n",
        ))
        .unwrap();
        assert_eq!(c.service.detect_schedule_text, "0 30 7 * * Mon-Fri");
        assert_eq!(c.service.shutdown, std::time::Duration::from_secs(5));
        assert_eq!(c.service.log_format, Some(crate::cli::LogFormat::Json));
        assert_eq!(c.service.listen.to_string(), "0.0.0.0:9999");
        let d = Config::load(&write(dir.path(), "")).unwrap();
        assert_eq!(d.service.listen.to_string(), "127.0.0.1:9187");
        assert_eq!(d.service.detect_schedule_text, "0 0 6 * * *");

        let err = Config::load(&write(
            dir.path(),
            "[service]\ndetect_schedule = \"30 7 * * *\"\nshutdown_secs = 0\nlog_format = \"xml\"\nrestart = true\n[http]\nlisten = \"localhost\"\n",
        ))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("lull.toml:2:19: `service.detect_schedule`: `30 7 * * *` has 5 fields"),
            "{err}"
        );
        assert!(
            err.contains("lull.toml:3:17: `service.shutdown_secs = 0`"),
            "{err}"
        );
        assert!(
            err.contains("lull.toml:4:14: `service.log_format = \"xml\"`"),
            "{err}"
        );
        assert!(
            err.contains("lull.toml:5:1: unknown key `service.restart`"),
            "{err}"
        );
        assert!(
            err.contains("lull.toml:7:10: `http.listen = \"localhost\"`"),
            "{err}"
        );
    }

    #[test]
    fn detect_thresholds_default_override_per_segment_and_report_bad_values() {
        let dir = tempfile::tempdir().unwrap();
        let c = Config::load(&write(
            dir.path(),
            "[detect]\nmin_expected = 5\nweights = { ticket = 2.0 }\n[detect.segment.smb]\nrecent_days = 56\n",
        ))
        .unwrap();
        let d = &c.detect;
        assert_eq!(d.defaults.min_expected, 5.0);
        assert_eq!(d.for_segment(Some("smb")).recent_days, 56);
        // A segment inherits what [detect] set, and unknown segments get the defaults.
        assert_eq!(d.for_segment(Some("smb")).min_expected, 5.0);
        assert_eq!(d.for_segment(Some("enterprise")).recent_days, 28);
        assert_eq!(d.for_segment(None).weight("ticket"), 2.0);

        let err = Config::load(&write(
            dir.path(),
            "[detect]\ndrop_ratio = 1.5\nrecnt_days = 3\n[detect.segment.smb]\nrecover_ratio = 0.1\n",
        ))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("lull.toml:2:14: `detect.drop_ratio` must be between 0 and 1"),
            "{err}"
        );
        assert!(
            err.contains("lull.toml:3:1: unknown key `detect.recnt_days`"),
            "{err}"
        );
        assert!(err.contains("lull.toml:5:17: `detect.segment.smb`: recover_ratio (0.1) must not be below drop_ratio"), "{err}");

        // The tiers' keys: checked the same way, and the digest's only in
        // [detect].
        let c = Config::load(&write(
            dir.path(),
            "[detect]\nsilent_days = 60\nmax_breadth = 0.5\nwatch_cap = 3\nwatch_weekday = \"friday\"\n[detect.segment.smb]\ncooldown_days = 90\n",
        ))
        .unwrap();
        assert_eq!(c.detect.defaults.silent_days, 60);
        assert_eq!(c.detect.for_segment(Some("smb")).silent_days, 60);
        assert_eq!(c.detect.for_segment(Some("smb")).cooldown_days, 90);
        assert_eq!(c.detect.watch.cap, 3);
        assert_eq!(c.detect.watch.weekday, chrono::Weekday::Fri);
        let err = Config::load(&write(
            dir.path(),
            "[detect]\nearly_silent_days = 40\nsilent_days = 35\nwatch_weekday = \"someday\"\nwatch_cap = 0\n[detect.segment.smb]\nwatch_cap = 2\n",
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("lull.toml:2:21: `detect`: early_silent_days (40) must not be above silent_days (35)"), "{err}");
        assert!(
            err.contains(
                "lull.toml:4:17: `detect.watch_weekday` = \"someday\" is not a day of the week"
            ),
            "{err}"
        );
        assert!(
            err.contains("lull.toml:5:13: `detect.watch_cap` must be a whole number from 1 to 100"),
            "{err}"
        );
        assert!(err.contains("can only be set in [detect]"), "{err}");
    }
}
