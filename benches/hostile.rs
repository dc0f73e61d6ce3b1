//! What a hostile source can make `lull run` do: for each kind of hostile
//! answer, the service's peak RSS while its poll runs and fails, and the
//! time from SIGTERM (sent while that poll is in progress) to exit.
//!
//!   cargo bench --bench hostile
//!
//! Each case runs `lull run` (the release binary) with that one source
//! against a local server; `[limits]` as shipped.

#![recursion_limit = "256"]

#[path = "../tests/common/shapes.rs"]
mod shapes;

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use wiremock::matchers::{any, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port")
}

fn peak_rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

struct Case {
    name: &'static str,
    kind: &'static str,
    extra: &'static str,
    /// The log line that says the poll ended.
    ended: &'static str,
}

fn start(dir: &std::path::Path, url: &str, case: &Case) -> (Child, u16, std::path::PathBuf) {
    let port = free_port();
    std::fs::write(
        dir.join("accounts.toml"),
        "[[account]]\nid = \"a\"\nname = \"A\"\ncsm = \"a@vendor.example\"\n",
    )
    .expect("accounts");
    std::fs::write(
        dir.join("lull.toml"),
        format!(
            "[store]\npath = \"db\"\n[accounts]\nfile = \"accounts.toml\"\n[service]\ndetect_schedule = \"0 0 6 1 1 *\"\nshutdown_secs = 5\n[http]\nlisten = \"127.0.0.1:{port}\"\n\
             [[source]]\nname = \"{}\"\nkind = \"{}\"\nurl = \"{url}\"\nschedule = \"0 0 * * * *\"\nrequests_per_minute = 0\n{}",
            case.name, case.kind, case.extra
        ),
    )
    .expect("config");
    let log = dir.join(format!("{}.log", case.name));
    let child = Command::new(env!("CARGO_BIN_EXE_lull"))
        .arg("--config")
        .arg(dir.join("lull.toml"))
        .arg("run")
        .env("RUST_LOG", "info")
        .env("LULL_BENCH_KEY", "k")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("lull run");
    (child, port, log)
}

fn wait_log(log: &std::path::Path, text: &str, limit: Duration) -> bool {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(log) {
            let _ = f.read_to_string(&mut s);
        }
        if s.contains(text) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (server, elsewhere) = rt.block_on(async {
        let server = MockServer::start().await;
        let elsewhere = MockServer::start().await;
        Mock::given(path("/redirect/posts.json"))
            .respond_with(
                ResponseTemplate::new(302)
                    .insert_header("location", format!("{}/x/posts.json", elsewhere.uri())),
            )
            .mount(&server)
            .await;
        Mock::given(any())
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"latest_posts": []})))
            .mount(&elsewhere)
            .await;
        Mock::given(path("/bomb/posts.json"))
            .respond_with(
                ResponseTemplate::new(200)
                    .insert_header("content-encoding", "gzip")
                    .set_body_bytes(shapes::gzip_bomb(1 << 30))
                    .set_delay(Duration::from_millis(500)),
            )
            .mount(&server)
            .await;
        Mock::given(path("/endless/posts.json"))
            .respond_with(shapes::Endless(Duration::from_millis(5)))
            .mount(&server)
            .await;
        Mock::given(path("/deep/"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_string("<html><body>".to_string() + &"<div>".repeat(200_000))
                    .set_delay(Duration::from_millis(500)),
            )
            .mount(&server)
            .await;
        Mock::given(path("/huge/"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_string(
                        "<html><body>".to_string()
                            + &"<p>lorem ipsum dolor sit amet</p>\n".repeat(1_600_000),
                    )
                    .set_delay(Duration::from_millis(500)),
            )
            .mount(&server)
            .await;
        (server, elsewhere)
    });
    let uri = server.uri();
    let cases = [
        Case {
            name: "redirect",
            kind: "discourse",
            extra: "api_key_env = \"LULL_BENCH_KEY\"\napi_username = \"system\"\n",
            ended: "poll failed",
        },
        Case {
            name: "bomb",
            kind: "discourse",
            extra: "",
            ended: "poll failed",
        },
        Case {
            name: "endless",
            kind: "discourse",
            extra: "",
            ended: "poll failed",
        },
        Case {
            name: "deep",
            kind: "html",
            extra: "preset = \"phpbb\"\n",
            ended: "poll failed",
        },
        Case {
            name: "huge",
            kind: "html",
            extra: "preset = \"phpbb\"\n",
            ended: "poll failed",
        },
    ];
    println!("| hostile source | poll ends after | peak RSS | SIGTERM → exit (mid-poll) |");
    println!("| --- | --- | --- | --- |");
    for case in &cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("{uri}/{}/", case.name);
        // Peak memory over the whole poll.
        let t = Instant::now();
        let (mut child, _, log) = start(dir.path(), &url, case);
        let ended = wait_log(&log, case.ended, Duration::from_secs(300));
        let took = t.elapsed();
        let rss = peak_rss_mib(child.id());
        let _ = child.kill();
        let _ = child.wait();
        // SIGTERM while the poll is under way.
        let dir2 = tempfile::tempdir().expect("tempdir");
        let (mut child, _, log) = start(dir2.path(), &url, case);
        wait_log(&log, "lull is running", Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(200));
        let t = Instant::now();
        // SAFETY: kill(2) on our own child.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let status = child.wait().expect("wait");
        let stop = t.elapsed();
        println!(
            "| {} | {} | {:.0} MiB | {:.2} s (exit {}) |",
            case.name,
            if ended {
                format!("{:.2} s", took.as_secs_f64())
            } else {
                "did not end in 300 s".into()
            },
            rss,
            stop.as_secs_f64(),
            status.code().map_or("signal".into(), |c| c.to_string())
        );
    }
    let leaked = rt
        .block_on(elsewhere.received_requests())
        .unwrap_or_default()
        .len();
    println!("requests that reached the other origin: {leaked}");
}
