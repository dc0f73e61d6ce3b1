//! Helpers for end-to-end tests: a temporary lull home with a config and
//! accounts file, and a way to run the real binary in it.
#![allow(dead_code)]

pub mod receiver;
pub mod scenario;
pub mod service;
pub mod shapes;
pub mod smtp;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub const ACCOUNTS: &str = r#"
[[account]]
id = "acme"
name = "Acme Corp"
csm = "jane@vendor.example"
segment = "enterprise"
domains = ["acme.com"]
handles = { forum = ["wile_e"] }

[[account]]
id = "globex"
name = "Globex"
csm = "sam@vendor.example"
domains = ["globex.io"]

[[account]]
id = "initech"
name = "Initech"
csm = "sam@vendor.example"
segment = "smb"
emails = ["peter@gmail.com"]
"#;

pub const CONFIG: &str = r#"
[store]
path = "data/lull.db"

[accounts]
file = "accounts.toml"

[identity]
ignore_domains = ["vendor.example"]
"#;

pub struct Home {
    pub dir: tempfile::TempDir,
}

impl Home {
    pub fn new() -> Home {
        Home::with(CONFIG, ACCOUNTS)
    }

    pub fn with(config: &str, accounts: &str) -> Home {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("lull.toml"), config).expect("write config");
        std::fs::write(dir.path().join("accounts.toml"), accounts).expect("write accounts");
        Home { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).expect("write file");
        p
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_lull"));
        c.arg("--config")
            .arg(self.dir.path().join("lull.toml"))
            .args(args)
            .env_remove("LULL_CONFIG")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run lull")
    }

    /// Runs lull with `env` off the async runtime (a mock server lives on
    /// it).
    pub async fn run_async(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = self.cmd(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        tokio::task::spawn_blocking(move || cmd.output().expect("run lull"))
            .await
            .expect("join")
    }

    pub fn run_stdin(&self, args: &[&str], input: &str) -> Output {
        let mut child = self
            .cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn lull");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
        child.wait_with_output().expect("wait lull")
    }

    /// `lull export` stdout; panics if it fails.
    pub fn export(&self) -> String {
        let out = self.run(&["export"]);
        assert!(out.status.success(), "export failed: {}", stderr(&out));
        String::from_utf8(out.stdout).expect("utf-8 export")
    }
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Answers every request with `answer` and notes when each arrived, by
/// the server's clock.
#[derive(Clone)]
pub struct Clocked {
    pub answer: wiremock::ResponseTemplate,
    pub seen: std::sync::Arc<std::sync::Mutex<Vec<std::time::Instant>>>,
}

impl wiremock::Respond for Clocked {
    fn respond(&self, _: &wiremock::Request) -> wiremock::ResponseTemplate {
        self.seen.lock().unwrap().push(std::time::Instant::now());
        self.answer.clone()
    }
}

/// At most `max` of the times `seen` in any window of `window`; `what`
/// names the case in the failure.
pub fn assert_paced(
    what: &str,
    seen: &[std::time::Instant],
    window: std::time::Duration,
    max: usize,
) {
    let mut t = seen.to_vec();
    t.sort();
    for (i, a) in t.iter().enumerate() {
        let n = t[i..]
            .iter()
            .filter(|x| x.duration_since(*a) < window)
            .count();
        assert!(
            n <= max,
            "{what}: {n} requests within {window:?} from #{i} (max {max})"
        );
    }
}

/// A file under tests/fixtures, as text.
pub fn fixture(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// One import line.
pub fn event(who: &str, source: &str, at: &str, id: &str, kind: &str) -> String {
    let who_field = if who.contains('@') || who.starts_with('~') {
        format!(r#""actor": "{}""#, who.trim_start_matches('~'))
    } else {
        format!(r#""account": "{who}""#)
    };
    format!(
        r#"{{{who_field}, "source": "{source}", "at": "{at}", "id": "{id}", "kind": "{kind}"}}"#
    )
}

/// A deterministic pseudo-random stream (xorshift), so failures reproduce.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// `n` events over the three test accounts and two sources, over ~a year,
/// with some repeated ids (as overlapping polls produce).
pub fn events(n: usize, seed: u64) -> String {
    let mut rng = Rng(seed | 1);
    let who = [
        "acme",
        "globex",
        "initech",
        "bob@mail.acme.com",
        "peter@gmail.com",
        "stranger@nowhere.example",
    ];
    let mut s = String::with_capacity(n * 120);
    for i in 0..n {
        let day = rng.below(365);
        let date = chrono_day(day);
        let id = if rng.below(20) == 0 {
            rng.below(i as u64 + 1)
        } else {
            i as u64
        };
        let source = if rng.below(3) == 0 {
            "tickets"
        } else {
            "forum"
        };
        s.push_str(&event(
            who[rng.below(who.len() as u64) as usize],
            source,
            &format!("{date}T{:02}:{:02}:00Z", rng.below(24), rng.below(60)),
            &format!("e{id}"),
            if source == "forum" { "post" } else { "ticket" },
        ));
        s.push('\n');
    }
    s
}

fn chrono_day(offset: u64) -> String {
    let start = chrono::NaiveDate::from_ymd_opt(2025, 1, 1).expect("valid date");
    (start + chrono::Days::new(offset))
        .format("%Y-%m-%d")
        .to_string()
}

/// Asserts two exports are equal, showing the first line that differs
/// rather than two walls of text.
#[track_caller]
pub fn assert_same_export(got: &str, want: &str) {
    if got == want {
        return;
    }
    let (g, w): (Vec<&str>, Vec<&str>) = (got.lines().collect(), want.lines().collect());
    let i = g
        .iter()
        .zip(&w)
        .position(|(a, b)| a != b)
        .unwrap_or(g.len().min(w.len()));
    panic!(
        "exports differ ({} vs {} lines); first difference at line {}:\n got: {}\nwant: {}",
        g.len(),
        w.len(),
        i + 1,
        g.get(i).unwrap_or(&"<end>"),
        w.get(i).unwrap_or(&"<end>")
    );
}

/// A small tmpfs of its own, to fill up: the disk-full faults happen for
/// real. Mounting needs root (CI runs as root); a test that cannot mount
/// fails rather than passing without having tried.
pub struct Tmpfs {
    pub dir: tempfile::TempDir,
}

impl Tmpfs {
    pub fn mount(mb: u64) -> Tmpfs {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mb}m"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mounting a tmpfs failed (the disk-full tests need root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the file system up to the last byte.
    pub fn fill(&self) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path().join("filler"))
            .expect("filler");
        for chunk in [1 << 20, 4096, 1] {
            let buf = vec![0u8; chunk];
            while f.write_all(&buf).is_ok() {}
        }
        let _ = f.sync_all();
    }

    /// Leaves `mb` free (fills first).
    pub fn leave_free(&self, mb: u64) {
        let _ = std::fs::remove_file(self.path().join("filler"));
        self.fill();
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(self.path().join("filler"))
            .expect("filler");
        let len = f.metadata().expect("len").len();
        f.set_len(len.saturating_sub(mb << 20)).expect("truncate");
    }

    pub fn free(&self) {
        let _ = std::fs::remove_file(self.path().join("filler"));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}
