//! The files in deploy/ work: the systemd unit passes `systemd-analyze
//! verify` (warnings count as failures) and scores well on its security
//! check, the configs it ships are valid, and the Prometheus rules only
//! name metrics that `lull run` exports.

#![recursion_limit = "256"]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::service::{Running, free_port, service_config};
use common::smtp::closed_port;
use common::{Home, stderr, stdout};

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

fn read(p: &str) -> String {
    std::fs::read_to_string(repo(p)).unwrap_or_else(|e| panic!("{p}: {e}"))
}

/// The unit with its binary path pointing at the one just built (verify
/// checks that ExecStart's program exists).
fn unit_for_test(dir: &Path) -> PathBuf {
    let unit =
        read("deploy/lull.service").replace("/usr/local/bin/lull", env!("CARGO_BIN_EXE_lull"));
    let p = dir.join("lull.service");
    std::fs::write(&p, unit).expect("write unit");
    p
}

fn systemd_analyze(args: &[&str]) -> std::process::Output {
    Command::new("systemd-analyze")
        .args(args)
        .output()
        .expect("systemd-analyze (Debian package `systemd`; tests/deps.sh installs it)")
}

#[test]
fn the_systemd_unit_passes_verify_without_a_warning() {
    let dir = tempfile::tempdir().expect("tempdir");
    let unit = unit_for_test(dir.path());
    let out = systemd_analyze(&["verify", "--man=no", unit.to_str().expect("utf-8")]);
    let said = stderr(&out);
    assert!(out.status.success() && said.trim().is_empty(), "{said}");

    // The check itself catches a mistake (it only warns, so warnings fail).
    let bad = dir.path().join("bad.service");
    std::fs::write(
        &bad,
        std::fs::read_to_string(&unit)
            .expect("unit")
            .replace("ProtectSystem=strict", "ProtectSystem=stric"),
    )
    .expect("write");
    let out = systemd_analyze(&["verify", "--man=no", bad.to_str().expect("utf-8")]);
    assert!(stderr(&out).contains("ProtectSystem") || stderr(&out).contains("protect system"));
}

#[test]
fn the_systemd_unit_is_hardened() {
    let dir = tempfile::tempdir().expect("tempdir");
    let unit = unit_for_test(dir.path());
    let out = systemd_analyze(&["security", "--offline=yes", unit.to_str().expect("utf-8")]);
    let text = format!("{}{}", stdout(&out), stderr(&out));
    let score: f64 = text
        .lines()
        .find_map(|l| l.split("Overall exposure level for lull.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure score in:\n{text}"));
    // 0 is fully locked down, 10 is not at all; systemd calls < 2 "OK".
    assert!(score < 2.0, "exposure {score}:\n{text}");
    let unit = read("deploy/lull.service");
    for must in [
        "DynamicUser=yes",
        "StateDirectory=lull",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "EnvironmentFile=-/etc/lull/lull.env",
    ] {
        assert!(unit.lines().any(|l| l == must), "{must} missing");
    }
}

#[test]
fn the_shipped_configs_are_valid() {
    for config in [
        "deploy/lull.toml",
        "deploy/docker-lull.toml",
        "config/lull.toml",
    ] {
        let h = Home::with(&read(config), &read("config/accounts.toml"));
        let out = h.run(&["check"]);
        assert!(
            out.status.success(),
            "{config}: {}",
            stdout(&out) + &stderr(&out)
        );
    }
    // The unit's and the image's configs keep the store where they may write.
    assert!(read("deploy/lull.toml").contains("path = \"/var/lib/lull/lull.db\""));
    assert!(read("deploy/docker-lull.toml").contains("path = \"/var/lib/lull/lull.db\""));
    let dockerfile = read("deploy/Dockerfile");
    assert!(dockerfile.contains("USER lull") && dockerfile.contains("ca-certificates"));
}

#[test]
fn the_prometheus_rules_name_only_metrics_lull_exports() {
    let rules = read("deploy/prometheus-rules.yml");
    let mut named: Vec<String> = Vec::new();
    let mut rest = rules.as_str();
    while let Some(i) = rest.find("lull_") {
        let name: String = rest[i..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_')
            .collect();
        rest = &rest[i + name.len()..];
        if !named.contains(&name) {
            named.push(name);
        }
    }
    assert!(named.len() >= 6, "{named:?}");

    let port = free_port();
    let config = format!(
        "[store]\npath = \"data/lull.db\"\n[smtp]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n{}\
         [[source]]\nname = \"forum\"\nkind = \"discourse\"\nurl = \"http://127.0.0.1:{}/\"\n",
        closed_port(),
        service_config(port, "*/1 * * * * *", 10),
        closed_port()
    );
    let h = Home::with(&config, &read("config/accounts.toml"));
    let r = Running::start(&h, port, &[]);
    r.wait_for_log("detection done", Duration::from_secs(30));
    // A store with no backup gets one at start.
    r.wait_for_log("backup written", Duration::from_secs(30));
    let (_, metrics) = r.get("/metrics");
    for name in &named {
        assert!(
            metrics.lines().any(|l| l.starts_with(name.as_str())),
            "{name} (deploy/prometheus-rules.yml) is not in /metrics:\n{metrics}"
        );
    }
}

#[test]
fn the_prometheus_rules_load_and_fire_when_they_should() {
    let promtool = repo("tests/.tools/promtool");
    let run = |args: &[&str]| {
        let out = Command::new(&promtool)
            .args(args)
            .current_dir(repo("deploy"))
            .output()
            .expect("tests/.tools/promtool (tests/deps.sh fetches it)");
        let text = stdout(&out) + &stderr(&out);
        assert!(out.status.success(), "promtool {args:?}:\n{text}");
        text
    };
    assert!(run(&["check", "rules", "prometheus-rules.yml"]).contains("SUCCESS: 9 rules found"));
    // deploy/prometheus-rules.test.yml: down, stale source, a stuck outbox
    // fire; an outbox that is draining does not.
    assert!(run(&["test", "rules", "prometheus-rules.test.yml"]).contains("SUCCESS"));
}
