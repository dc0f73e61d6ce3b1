//! A real SMTP server process for delivery tests: aiosmtpd (Debian's
//! `python3-aiosmtpd`) through `tests/smtp/server.py`, writing each
//! accepted message to a Maildir that `tests/smtp/show.py` parses.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

/// The system Python that has aiosmtpd (NOTES.md: the default `python3`
/// may be another install).
pub const PYTHON: &str = "/usr/bin/python3";

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/smtp")
        .join(name)
}

pub struct Smtp {
    child: Child,
    pub port: u16,
    pub maildir: PathBuf,
    _dir: tempfile::TempDir,
}

impl Smtp {
    /// Starts the server on a port the OS picks; `args` are extra server
    /// flags (`--tlscert`, `--auth`, `--delay-ms`).
    pub fn start(args: &[&str]) -> Smtp {
        Smtp::start_on(0, args)
    }

    pub fn start_on(port: u16, args: &[&str]) -> Smtp {
        let dir = tempfile::tempdir().expect("tempdir");
        let maildir = dir.path().join("maildir");
        let mut child = Command::new(PYTHON)
            .arg(script("server.py"))
            .arg("--maildir")
            .arg(&maildir)
            .arg("--port")
            .arg(port.to_string())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect(
                "start /usr/bin/python3 tests/smtp/server.py (apt-get install python3-aiosmtpd)",
            );
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("server stdout"))
            .read_line(&mut line)
            .expect("read server port");
        let port = line
            .trim()
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("SMTP server did not start: {line:?}"));
        Smtp {
            child,
            port,
            maildir,
            _dir: dir,
        }
    }

    /// Every message received so far, parsed by Python's e-mail package.
    pub fn mails(&self) -> Vec<Value> {
        let out = Command::new(PYTHON)
            .arg(script("show.py"))
            .arg(&self.maildir)
            .output()
            .expect("run show.py");
        assert!(
            out.status.success(),
            "show.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).expect("show.py prints JSON");
        v.as_array().expect("array").clone()
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// The scriptable relay (`tests/smtp/relay.py`): answers each message as
/// `rules.json` says (accept, slow, drop, or a reply code) and records
/// every message it committed.
pub struct Relay {
    child: Child,
    pub port: u16,
    pub dir: PathBuf,
    _dir: tempfile::TempDir,
}

impl Relay {
    pub fn start(rules: &Value) -> Relay {
        Relay::start_on(0, rules)
    }

    pub fn start_on(port: u16, rules: &Value) -> Relay {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        std::fs::write(dir.join("rules.json"), rules.to_string()).expect("rules");
        let mut child = Command::new(PYTHON)
            .arg(script("relay.py"))
            .arg("--dir")
            .arg(&dir)
            .arg("--port")
            .arg(port.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start tests/smtp/relay.py");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("relay stdout"))
            .read_line(&mut line)
            .expect("read relay port");
        let port = line
            .trim()
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("relay did not start: {line:?}"));
        Relay {
            child,
            port,
            dir,
            _dir: tmp,
        }
    }

    pub fn set_rules(&self, rules: &Value) {
        std::fs::write(self.dir.join("rules.json"), rules.to_string()).expect("rules");
    }

    /// (recipient, Message-ID) of every message the relay committed, in
    /// order.
    pub fn accepted(&self) -> Vec<(String, String)> {
        let text = std::fs::read_to_string(self.dir.join("accepted.jsonl")).unwrap_or_default();
        text.lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).expect("accepted line");
                (
                    v["to"].as_str().unwrap_or_default().to_string(),
                    v["message_id"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop();
    }
}
