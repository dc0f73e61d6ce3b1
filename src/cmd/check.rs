//! `lull check`: validate config and accounts, print every problem.

use std::path::Path;
use std::process::ExitCode;

use crate::accounts::Registry;
use crate::config::Config;
use crate::diag::{Diagnostic, Diagnostics};
use crate::secret::Secret;

/// Every source secret whose environment variable is unset or empty.
fn missing_secrets(config: &Config) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for s in &config.sources {
        for var in s.spec.env_vars() {
            if let Err(e) = Secret::from_env(var) {
                out.push(Diagnostic {
                    file: config.file.clone(),
                    line: s.line,
                    column: 0,
                    message: format!("source `{}`: {e}", s.name),
                });
            }
        }
    }
    for t in &config.service.tokens {
        if let Err(e) = Secret::from_env(&t.token_env) {
            out.push(Diagnostic {
                file: config.file.clone(),
                line: t.line,
                column: 0,
                message: format!("API token `{}`: {e}", t.name),
            });
        }
    }
    if let Some(smtp) = &config.smtp {
        if let Some(var) = &smtp.password_env {
            if let Err(e) = Secret::from_env(var) {
                out.push(Diagnostic {
                    file: config.file.clone(),
                    line: smtp.line,
                    column: 0,
                    message: format!("[smtp]: {e}"),
                });
            }
        }
    }
    out
}

/// Settings that work but put credentials at risk.
fn warnings(config: &Config) -> Vec<String> {
    let loopback = |host: &str| {
        host == "localhost"
            || host
                .trim_matches(['[', ']'])
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    };
    let mut out = Vec::new();
    for s in &config.sources {
        let host = s.url.host_str().unwrap_or("");
        if !s.spec.env_vars().is_empty() && s.url.scheme() == "http" && !loopback(host) {
            out.push(format!(
                "source `{}` sends its credentials over plain http:// to {host}: anyone on the way can read them; use https://",
                s.name
            ));
        }
        if !s.url.username().is_empty() || s.url.password().is_some() {
            out.push(format!(
                "source `{}`: its url carries a user name or password; lull never prints it, but credentials belong in the environment variable its `*_env` key names",
                s.name
            ));
        }
    }
    if let Some(smtp) = &config.smtp
        && smtp.username.is_some()
        && smtp.tls == crate::alert::config::TlsMode::None
        && !loopback(&smtp.host)
    {
        out.push(format!(
            "[smtp] logs in to {} with tls = \"none\": the password crosses the network in clear; use \"starttls\" or \"tls\"",
            smtp.host
        ));
    }
    out
}

/// The accounts file a config names, read even when the rest of the
/// config is wrong (so its problems are reported in the same go).
fn accounts_path_of(config_path: &Path) -> std::path::PathBuf {
    let base = config_path.parent().unwrap_or(Path::new("."));
    let named = std::fs::read_to_string(config_path)
        .ok()
        .and_then(|t| t.parse::<toml::Table>().ok())
        .and_then(|t| t.get("accounts")?.get("file")?.as_str().map(str::to_string));
    base.join(named.unwrap_or_else(|| crate::config::DEFAULT_ACCOUNTS_FILE.to_string()))
}

pub fn run(config_path: &Path) -> ExitCode {
    // Config, accounts and secrets are checked together: a mistake in one
    // does not hide the mistakes in the others.
    let config = Config::load(config_path);
    let (accounts_file, identity) = match &config {
        Ok(c) => (c.accounts_file.clone(), c.identity.clone()),
        Err(_) => (accounts_path_of(config_path), Default::default()),
    };
    let registry = Registry::load(&accounts_file, &identity);
    let checked = match (config, registry) {
        (Ok(config), Ok(registry)) => {
            let missing = missing_secrets(&config);
            if missing.is_empty() {
                Ok((config, registry))
            } else {
                Err(Diagnostics(missing))
            }
        }
        (config, registry) => {
            let mut all = Vec::new();
            if let Err(d) = config {
                all.extend(d.0);
            }
            if let Err(d) = registry {
                all.extend(d.0);
            }
            Err(Diagnostics(all))
        }
    };
    match checked {
        Ok((config, registry)) => {
            println!(
                "{}: ok ({} accounts in {}, {} source(s), store {}, days in {})",
                config_path.display(),
                registry.len(),
                config.accounts_file.display(),
                config.sources.len(),
                config.store.path.display(),
                config.timezone
            );
            for s in &config.sources {
                let next = s
                    .schedule
                    .upcoming(config.timezone)
                    .next()
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_else(|| "never".into());
                println!(
                    "  source {} ({}): {} — next poll {next}",
                    s.name,
                    s.kind.name(),
                    crate::sources::http::display_url(&s.url)
                );
            }
            let svc = &config.service;
            println!(
                "  lull run: detection at \"{}\" (next {}), /healthz /readyz /metrics /api/v1 on {}://{}",
                svc.detect_schedule_text,
                svc.detect_schedule
                    .upcoming(config.timezone)
                    .next()
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_else(|| "never".into()),
                if svc.tls.is_some() { "https" } else { "http" },
                svc.listen
            );
            if svc.tokens.is_empty() {
                println!(
                    "  API tokens: none configured ([[http.token]]); the CLI on this machine uses the local token the service writes"
                );
            } else {
                let list: Vec<String> = svc
                    .tokens
                    .iter()
                    .map(|t| format!("{} ({})", t.name, t.role.as_str()))
                    .collect();
                println!("  API tokens: {}", list.join(", "));
            }
            match &config.smtp {
                Some(smtp) => println!(
                    "  alerts: sent through {}:{} ({}) as {}{}",
                    smtp.host,
                    smtp.port,
                    smtp.tls.as_str(),
                    smtp.from,
                    smtp.username
                        .as_ref()
                        .map_or(String::new(), |u| format!(", AUTH as {u}"))
                ),
                None => {
                    println!("  alerts: queued only (no [smtp] table; `lull alerts` lists them)")
                }
            }
            if let Some(ops) = &config.alerts.ops_email {
                println!("  stale sources are told to {ops}");
            }
            let b = &config.backup;
            if b.keep == 0 {
                println!(
                    "  backups: none scheduled ([backup] keep = 0); `lull backup FILE` takes one"
                );
            } else {
                println!(
                    "  backups: at \"{}\" into {}, the newest {} kept",
                    b.schedule_text,
                    b.dir.display(),
                    b.keep
                );
            }
            for w in warnings(&config) {
                println!("warning: {w}");
            }
            ExitCode::SUCCESS
        }
        Err(Diagnostics(problems)) => {
            for p in &problems {
                println!("{p}");
            }
            println!("{} problem(s) found", problems.len());
            ExitCode::from(1)
        }
    }
}
