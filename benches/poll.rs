//! Discourse polling throughput against a local Discourse-shaped server.
//!
//!   cargo bench --bench poll -- [TOPICS] [POSTS] [NEW_POSTS] [NEW_TOPICS]
//!   (defaults: 10000 topics, 50000 posts; then 500 new posts spread over
//!   100 old topics)
//!
//! Rate limit off. Reports, for a full first poll and for the incremental
//! poll after the new posts: wall time, requests, posts parsed and stored
//! per second, requests per new post.

#![recursion_limit = "256"]

#[path = "../tests/common/shapes.rs"]
mod shapes;

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

use chrono::{Duration, Utc};
use lull::accounts::Registry;
use lull::config::Config;
use lull::sources::{self, Source, http};
use lull::store::Store;
use shapes::Forum;
use wiremock::matchers::path;
use wiremock::{Mock, MockServer};

/// Users posting; two per account, so every post maps to an account.
const USERS: u64 = 2000;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        return;
    }
    let nums: Vec<u64> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let topics = nums.first().copied().unwrap_or(10_000);
    let posts = nums.get(1).copied().unwrap_or(50_000);
    let new_posts = nums.get(2).copied().unwrap_or(500);
    let new_topics = nums.get(3).copied().unwrap_or(100);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(topics, posts, new_posts, new_topics));
}

async fn run(topics: u64, posts: u64, new_posts: u64, new_topics: u64) {
    let server = MockServer::start().await;
    let forum = Forum::default();
    let now = Utc::now();
    // Posts over the last 80 days, oldest first (ids grow with time).
    for id in 1..=posts {
        let at = now - Duration::seconds(((posts - id) * 80 * 86_400 / posts) as i64 + 60);
        let user = format!("u{}", id % USERS);
        forum.add(shapes::discourse_post(
            id,
            &user,
            &at.to_rfc3339(),
            1 + id % topics,
            false,
        ));
    }
    Mock::given(path("/posts.json"))
        .respond_with(forum.clone())
        .mount(&server)
        .await;

    let dir = tempfile::tempdir().expect("tempdir");
    let mut accounts = String::new();
    for a in 0..USERS / 2 {
        let _ = write!(
            accounts,
            "[[account]]\nid = \"a{a}\"\nname = \"A{a}\"\ncsm = \"csm@vendor.example\"\nhandles = {{ forum = [\"u{}\", \"u{}\"] }}\n\n",
            2 * a,
            2 * a + 1
        );
    }
    std::fs::write(dir.path().join("accounts.toml"), accounts).expect("accounts");
    std::fs::write(
        dir.path().join("lull.toml"),
        format!(
            "[[source]]\nname = \"forum\"\nkind = \"discourse\"\nurl = \"{}\"\nrequests_per_minute = 0\n",
            server.uri()
        ),
    )
    .expect("config");
    let config = Config::load(&dir.path().join("lull.toml")).expect("config");
    let registry =
        Arc::new(Registry::load(&config.accounts_file, &config.identity).expect("accounts"));
    let store = Arc::new(Store::open(&config.store).expect("store"));
    let source = Source::build(
        &config.sources[0],
        http::client().expect("client"),
        &config.limits,
    )
    .expect("source");

    let report = |label: &str, r: &sources::PollReport, wall: f64, new: u64| {
        println!(
            "{label}: {} posts read, {} counted in {wall:.2} s ({:.0} posts/s), {} requests ({:.1} new posts per request)",
            r.read,
            r.counted,
            r.read as f64 / wall,
            r.requests,
            new as f64 / r.requests.max(1) as f64
        );
    };
    let t = Instant::now();
    let first = sources::poll(
        &source,
        store.clone(),
        registry.clone(),
        config.timezone,
        Utc::now(),
    )
    .await
    .expect("first poll");
    report("first poll", &first, t.elapsed().as_secs_f64(), posts);

    // New posts in old topics: ids above every old one.
    for i in 0..new_posts {
        let id = posts + 1 + i;
        let topic = 1 + (i % new_topics) * (topics / new_topics).max(1);
        let user = format!("u{}", id % USERS);
        forum.add(shapes::discourse_post(
            id,
            &user,
            &Utc::now().to_rfc3339(),
            topic,
            false,
        ));
    }
    let before = forum.requests();
    let t = Instant::now();
    let next = sources::poll(
        &source,
        store.clone(),
        registry.clone(),
        config.timezone,
        Utc::now(),
    )
    .await
    .expect("incremental poll");
    report(
        "incremental poll",
        &next,
        t.elapsed().as_secs_f64(),
        new_posts,
    );
    println!(
        "server saw {} requests for the incremental poll; {} topics, none downloaded",
        forum.requests() - before,
        topics
    );
}
