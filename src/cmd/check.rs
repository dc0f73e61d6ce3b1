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
        for var in s.settings.env_vars() {
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
    for r in &config.routing.receivers {
        use crate::alert::route::{Endpoint, ReceiverKind, SlackTarget};
        let vars: Vec<&String> = match &r.kind {
            ReceiverKind::Email { .. } => Vec::new(),
            ReceiverKind::Slack(SlackTarget::Bot { token_env, .. }) => vec![token_env],
            ReceiverKind::Slack(SlackTarget::Webhook(e)) | ReceiverKind::Teams(e) => match e {
                Endpoint::Env(v) => vec![v],
                Endpoint::Url(_) => Vec::new(),
            },
            ReceiverKind::Webhook {
                endpoint,
                secret_env,
            } => {
                let mut v: Vec<&String> = secret_env.iter().collect();
                if let Endpoint::Env(e) = endpoint {
                    v.push(e);
                }
                v
            }
        };
        for var in vars {
            if let Err(e) = Secret::from_env(var) {
                out.push(Diagnostic {
                    file: config.file.clone(),
                    line: r.line,
                    column: 0,
                    message: format!("receiver `{}`: {e}", r.name),
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
        if !s.settings.env_vars().is_empty() && s.url.scheme() == "http" && !loopback(host) {
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
    for r in &config.routing.receivers {
        if let crate::alert::route::ReceiverKind::Webhook {
            endpoint: crate::alert::route::Endpoint::Url(u),
            ..
        } = &r.kind
            && u.scheme() == "http"
            && !loopback(u.host_str().unwrap_or(""))
        {
            out.push(format!(
                "receiver `{}` posts alerts over plain http:// to {}: anyone on the way can read them; use https://",
                r.name,
                u.host_str().unwrap_or("")
            ));
        }
    }
    let routed_to_email = config.routing.routes.is_empty()
        || config
            .routing
            .routes
            .iter()
            .any(|r| r.receivers.iter().any(|n| n == crate::alert::route::EMAIL));
    if config.smtp.is_none() && routed_to_email && !config.routing.routes.is_empty() {
        out.push(
            "routes send to `email` but there is no [smtp] table: those alerts stay queued".into(),
        );
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

/// Where an account's alerts go, tier by tier.
fn route_report(config: &Config, registry: &Registry, id: &str) -> Result<String, String> {
    use crate::alert::route::{Subject, Tier};
    let idx = registry.by_id(id).ok_or_else(|| {
        format!(
            "--route {id}: no account has the id `{id}` in {}",
            config.accounts_file.display()
        )
    })?;
    let a = registry.get(idx);
    let mut out = format!(
        "alerts of {} ({}), CSM {}{}{}:\n",
        a.id,
        a.name,
        a.csm,
        a.segment
            .as_ref()
            .map_or(String::new(), |s| format!(", segment {s}")),
        if a.labels.is_empty() {
            String::new()
        } else {
            format!(
                ", labels {}",
                a.labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        }
    );
    let routing = &config.routing;
    for tier in [Tier::Silent, Tier::Watch, Tier::Recovered] {
        let s = Subject {
            tier,
            account: a.id.as_str(),
            csm: &a.csm,
            segment: a.segment.as_deref(),
            labels: Some(&a.labels),
        };
        let d = routing.decide(&s);
        let to: Vec<String> =
            d.to.iter()
                .map(|(r, i)| {
                    let route = routing.route(*i);
                    let kind = routing.receiver(r).map_or("?", |x| x.kind.name());
                    let mut what = format!("{r} ({kind}, by {}", route.describe(*i));
                    if !route.mute.is_empty() {
                        what.push_str(", with mute windows");
                    }
                    what.push(')');
                    what
                })
                .collect();
        out.push_str(&format!(
            "  {:<10} → {}\n",
            tier.as_str(),
            if to.is_empty() {
                "nowhere (a route drops it)".to_string()
            } else {
                to.join(", ")
            }
        ));
    }
    Ok(out)
}

pub fn run(config_path: &Path, route: Option<&str>) -> ExitCode {
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
            let receivers: Vec<String> = config
                .routing
                .receivers
                .iter()
                .map(|r| format!("{} ({})", r.name, r.kind.name()))
                .collect();
            println!(
                "  receivers: {}; {} route(s){}",
                receivers.join(", "),
                config.routing.routes.len(),
                if config.routing.routes.is_empty() {
                    " (everything by e-mail to the account's CSM)"
                } else {
                    ""
                }
            );
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
            if let Some(id) = route {
                match route_report(&config, &registry, id) {
                    Ok(text) => print!("{text}"),
                    Err(e) => {
                        println!("{e}");
                        return ExitCode::from(1);
                    }
                }
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
