#!/usr/bin/env python3
"""lull's discourse connector against Perceval's, on one local forum.

    python3 -m venv /tmp/pv && /tmp/pv/bin/pip install perceval
    cargo build --release
    python3 benches/perceval.py [--perceval /tmp/pv/bin/perceval] [--posts 15000]

One local server plays a Discourse site with POSTS posts in topics of
varied length (a fixed seed), answering both ways of reading it: lull's
`/posts.json?before=ID` (50 posts a page, newest first) and Perceval's
`/latest.json?page=N` (30 topics a page), `/t/ID.json` (the first 20
posts) and `/posts/ID.json` (each further post). Rate limits are off for
both. It measures a first backfill of everything, then an incremental
poll after NEW new posts in existing topics: wall time, posts per second,
requests, and requests per new post. Standard library only; Perceval runs
as its own CLI, lull as `target/release/lull poll --json`.
"""

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

CHUNK = 20  # posts Discourse puts in /t/ID.json
TOPICS_PAGE = 30  # topics per /latest.json page
POSTS_PAGE = 50  # posts per /posts.json page


class Forum:
    def __init__(self, posts, seed=7):
        rnd = random.Random(seed)
        self.now = datetime.now(timezone.utc)
        self.lock = threading.Lock()
        self.posts = {}  # id -> post
        self.topics = {}  # id -> [post ids]
        self.requests = Counter()
        topic = 0
        pid = 0
        # Topics of 1..60 posts (most short, a few long threads).
        while pid < posts:
            topic += 1
            n = min(posts - pid, max(1, int(rnd.paretovariate(1.2) * 3)))
            n = min(n, 60)
            self.topics[topic] = []
            for _ in range(n):
                pid += 1
                self.topics[topic].append(pid)
        # Posts over the last 80 days, ids growing with time.
        order = list(range(1, pid + 1))
        self.topic_of = {p: t for t, ps in self.topics.items() for p in ps}
        for p in order:
            at = self.now - timedelta(seconds=(pid - p) * 80 * 86400 // pid + 3600)
            self.add_post(p, self.topic_of[p], at)

    def add_post(self, pid, topic, at):
        user = f"u{pid % 2000}"
        self.posts[pid] = {
            "id": pid,
            "name": user,
            "username": user,
            "user_id": 1000 + pid % 2000,
            "created_at": at.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "updated_at": at.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "cooked": f"<p>post {pid}</p>",
            "post_number": self.topics[topic].index(pid) + 1 if pid in self.topics[topic] else 1,
            "post_type": 1,
            "topic_id": topic,
            "topic_slug": f"topic-{topic}",
            "topic_title": f"Topic {topic}",
            "category_id": 4,
            "staff": False,
            "admin": False,
            "moderator": False,
            "deleted_at": None,
            "reads": 3,
            "score": 0.6,
        }

    def new_posts(self, n, topics, seed=11):
        rnd = random.Random(seed)
        chosen = rnd.sample(sorted(self.topics), topics)
        with self.lock:
            start = max(self.posts) + 1
            for i in range(n):
                pid = start + i
                t = chosen[i % topics]
                self.topics[t].append(pid)
                self.topic_of[pid] = t
                self.add_post(pid, t, datetime.now(timezone.utc))

    def last_posted(self, t):
        return max(self.posts[p]["created_at"] for p in self.topics[t])

    # ---- answers
    def posts_json(self, before):
        # Post ids are 1..max without gaps: the page below `before`.
        top = max(self.posts) if before is None else min(before - 1, max(self.posts))
        ids = range(top, max(0, top - POSTS_PAGE), -1)
        return {"latest_posts": [self.posts[p] for p in ids]}

    def latest_json(self, page):
        order = sorted(self.topics, key=self.last_posted, reverse=True)
        chunk = order[page * TOPICS_PAGE:(page + 1) * TOPICS_PAGE]
        topics = [{
            "id": t,
            "title": f"Topic {t}",
            "slug": f"topic-{t}",
            "posts_count": len(self.topics[t]),
            "created_at": self.posts[self.topics[t][0]]["created_at"],
            "last_posted_at": self.last_posted(t),
            "bumped_at": self.last_posted(t),
            "pinned": False,
            "visible": True,
            "closed": False,
            "archived": False,
        } for t in chunk]
        return {"users": [], "topic_list": {"can_create_topic": False, "per_page": TOPICS_PAGE, "topics": topics}}

    def topic_json(self, t):
        ids = self.topics[t]
        return {
            "id": t,
            "title": f"Topic {t}",
            "posts_count": len(ids),
            "chunk_size": CHUNK,
            "created_at": self.posts[ids[0]]["created_at"],
            "last_posted_at": self.last_posted(t),
            "post_stream": {"posts": [self.posts[p] for p in ids[:CHUNK]], "stream": list(ids)},
        }


def serve(forum):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def setup(self):
            super().setup()
            # Headers and body go out in separate writes: without this, a
            # keep-alive client's delayed ACK stalls every answer ~40 ms.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def do_GET(self):
            u = urlparse(self.path)
            q = parse_qs(u.query)
            with forum.lock:
                if u.path == "/posts.json":
                    forum.requests["lull /posts.json"] += 1
                    before = int(q["before"][0]) if "before" in q else None
                    body = forum.posts_json(before)
                elif u.path == "/latest.json":
                    forum.requests["perceval /latest.json"] += 1
                    body = forum.latest_json(int(q.get("page", ["0"])[0]))
                elif u.path.startswith("/t/") and u.path.endswith(".json"):
                    forum.requests["perceval /t/ID.json"] += 1
                    body = forum.topic_json(int(u.path[3:-5]))
                elif u.path.startswith("/posts/") and u.path.endswith(".json"):
                    forum.requests["perceval /posts/ID.json"] += 1
                    body = forum.posts[int(u.path[7:-5])]
                else:
                    body = None
            if body is None:
                self.send_response(404)
                self.send_header("content-length", "0")
                self.end_headers()
                return
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json; charset=utf-8")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def requests_of(forum, who):
    return sum(v for k, v in forum.requests.items() if k.startswith(who))


def run_lull(lull, home, forum, who):
    before = requests_of(forum, "lull")
    t = time.monotonic()
    out = subprocess.run([lull, "--config", os.path.join(home, "lull.toml"), "poll", "--json"],
                         capture_output=True, text=True, check=True)
    wall = time.monotonic() - t
    r = json.loads(out.stdout)[0]
    return wall, r["read"], requests_of(forum, "lull") - before


def run_perceval(perceval, url, forum, since):
    before = requests_of(forum, "perceval")
    t = time.monotonic()
    args = [perceval, "discourse", url, "--json-line", "--no-archive"]
    if since:
        args += ["--from-date", since]
    out = subprocess.run(args, capture_output=True, text=True, check=True)
    wall = time.monotonic() - t
    posts = 0
    for line in out.stdout.splitlines():
        if line.strip():
            item = json.loads(line)
            posts += len(item["data"]["post_stream"]["posts"])
    return wall, posts, requests_of(forum, "perceval") - before


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("--perceval", default="/tmp/pv/bin/perceval")
    ap.add_argument("--lull", default=os.path.join(here, "..", "target", "release", "lull"))
    ap.add_argument("--posts", type=int, default=15000)
    ap.add_argument("--new", type=int, default=300)
    ap.add_argument("--new-topics", type=int, default=60)
    a = ap.parse_args()
    forum = Forum(a.posts)
    httpd = serve(forum)
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    long_topics = sum(1 for ps in forum.topics.values() if len(ps) > CHUNK)
    print(f"forum: {len(forum.posts)} posts in {len(forum.topics)} topics "
          f"({long_topics} longer than {CHUNK} posts)")
    with tempfile.TemporaryDirectory() as home:
        with open(os.path.join(home, "lull.toml"), "w") as f:
            f.write(f'[[source]]\nname = "forum"\nkind = "discourse"\nurl = "{url}"\n'
                    'requests_per_minute = 0\n')
        with open(os.path.join(home, "accounts.toml"), "w") as f:
            for i in range(1000):
                f.write(f'[[account]]\nid = "a{i}"\nname = "A{i}"\ncsm = "csm@vendor.example"\n'
                        f'handles = {{ forum = ["u{2 * i}", "u{2 * i + 1}"] }}\n\n')
        rows = []
        start = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        lw, lp, lr = run_lull(a.lull, home, forum, "lull")
        pw, pp, pr = run_perceval(a.perceval, url, forum, None)
        rows.append(("first backfill", len(forum.posts), lw, lp, lr, pw, pp, pr))
        time.sleep(1.5)
        forum.new_posts(a.new, a.new_topics)
        lw, lp, lr = run_lull(a.lull, home, forum, "lull")
        pw, pp, pr = run_perceval(a.perceval, url, forum, start)
        rows.append((f"incremental ({a.new} new posts in {a.new_topics} topics)", a.new, lw, lp, lr, pw, pp, pr))
    print()
    print("| run | tool | wall s | posts read | posts/s | requests | requests per new post |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for (label, new, lw, lp, lr, pw, pp, pr) in rows:
        print(f"| {label} | lull | {lw:.2f} | {lp} | {lp / lw:,.0f} | {lr} | {lr / new:.3f} |")
        print(f"| {label} | Perceval | {pw:.2f} | {pp} | {pp / pw:,.0f} | {pr} | {pr / new:.3f} |")
    print()
    print("requests by endpoint:", dict(forum.requests))
    httpd.shutdown()


if __name__ == "__main__":
    sys.exit(main())
