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

pub fn run(config_path: &Path) -> ExitCode {
    let checked = Config::load(config_path)
        .and_then(|config| {
            Registry::load(&config.accounts_file, &config.identity)
                .map(|registry| (config, registry))
        })
        .and_then(|(config, registry)| {
            let missing = missing_secrets(&config);
            if missing.is_empty() {
                Ok((config, registry))
            } else {
                Err(Diagnostics(missing))
            }
        });
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
                "  lull run: detection at \"{}\" (next {}), /healthz /readyz /metrics on http://{}",
                svc.detect_schedule_text,
                svc.detect_schedule
                    .upcoming(config.timezone)
                    .next()
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_else(|| "never".into()),
                svc.listen
            );
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
