//! `lull run` as a child process: start it, ask its HTTP endpoint, signal
//! it, read its log.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::Home;

pub struct Running {
    pub child: Child,
    pub port: u16,
    log: PathBuf,
}

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    super::smtp::closed_port()
}

/// The `[service]`/`[http]` tables for a test: quick ticks, the given port.
pub fn service_config(port: u16, detect_schedule: &str, shutdown_secs: u64) -> String {
    format!(
        "[service]\ndetect_schedule = \"{detect_schedule}\"\nshutdown_secs = {shutdown_secs}\n[http]\nlisten = \"127.0.0.1:{port}\"\n"
    )
}

impl Running {
    /// Starts `lull run` in `home` (its config must listen on `port`) and
    /// waits until `/healthz` answers.
    pub fn start(home: &Home, port: u16, env: &[(&str, &str)]) -> Running {
        let r = Running::spawn(home, port, env);
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some((200, _)) = try_get(port, "/healthz") {
                return r;
            }
            assert!(
                Instant::now() < until,
                "lull run did not come up:\n{}",
                r.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts `lull run` without waiting for anything.
    pub fn spawn(home: &Home, port: u16, env: &[(&str, &str)]) -> Running {
        let log = unique(home.path().join("run"));
        let file = std::fs::File::create(&log).expect("log file");
        let mut cmd = home.cmd(&["run"]);
        cmd.env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::from(file));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn lull run");
        Running { child, port, log }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends a signal (`libc::SIGTERM`, `SIGHUP`, ...).
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        let rc = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(rc, 0, "kill({}, {sig})", self.pid());
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `text`.
    pub fn wait_for_log(&self, text: &str, limit: Duration) {
        let until = Instant::now() + limit;
        while !self.log().contains(text) {
            assert!(
                Instant::now() < until,
                "no `{text}` in the log after {limit:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// GET `path`: (status, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        try_get(self.port, path).unwrap_or_else(|| panic!("GET {path} failed:\n{}", self.log()))
    }

    /// A metric's value from `/metrics` (`name` with its labels as
    /// rendered, e.g. `lull_source_stale{source="forum"}`).
    pub fn metric(&self, series: &str) -> Option<f64> {
        let (_, body) = self.get("/metrics");
        metric_in(&body, series)
    }

    /// Waits for a metric to satisfy `ok`.
    pub fn wait_for_metric(&self, series: &str, ok: impl Fn(f64) -> bool, limit: Duration) -> f64 {
        let until = Instant::now() + limit;
        loop {
            if let Some(v) = self.metric(series)
                && ok(v)
            {
                return v;
            }
            assert!(
                Instant::now() < until,
                "{series} = {:?} after {limit:?}:\n{}",
                self.metric(series),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for the process to exit; its status and how long that took.
    pub fn wait_exit(&mut self, limit: Duration) -> (ExitStatus, Duration) {
        let began = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                return (s, began.elapsed());
            }
            if began.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("lull run did not exit within {limit:?}:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unique(p: PathBuf) -> PathBuf {
    let mut n = 0;
    loop {
        let candidate = p.with_extension(format!("{n}.log"));
        if !candidate.exists() {
            return candidate;
        }
        n += 1;
    }
}

/// A minimal HTTP/1.1 GET (the endpoint is ours; no client library needed).
pub fn try_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let status = raw.split(' ').nth(1)?.parse().ok()?;
    let body = raw.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

/// A series' value in Prometheus text.
pub fn metric_in(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// One HTTP/1.1 request with an optional bearer token and body: (status,
/// body). For the API tests (methods and headers `try_get` does not do).
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(120)))
        .expect("timeout");
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("write request");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read answer");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(raw.len());
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body: &[u8] = raw.get(split + 4..).unwrap_or(&[]);
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    // Chunked bodies (streamed answers): join the chunks.
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = Vec::new();
        while let Some(nl) = body.windows(2).position(|w| w == b"\r\n") {
            let n =
                usize::from_str_radix(String::from_utf8_lossy(&body[..nl]).trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            let start = nl + 2;
            out.extend_from_slice(&body[start..(start + n).min(body.len())]);
            body = body.get(start + n + 2..).unwrap_or(&[]);
        }
        out
    } else {
        body.to_vec()
    };
    let body = String::from_utf8_lossy(&body).into_owned();
    (status, body)
}
