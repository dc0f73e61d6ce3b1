//! `html`: any forum whose pages list posts with author and time, read with
//! CSS selectors (or a preset), following "next" links politely.
//!
//! The page at `url` lists posts newest first (a forum's "latest posts" or
//! a search sorted by time) or oldest first (a topic). A poll reads pages
//! until, newest first, it reaches posts older than what the previous poll
//! covered; or until the last page; at most `max_pages`. It covers only
//! the time span it actually read.

use std::sync::Arc;

use super::http::Auth;
use super::kind::{self, Connect, Connection, Docs, Keys, Kind};
use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use scraper::{ElementRef, Html as Document, Selector};
use url::Url;

use super::{
    Activity, Connector, Harvest, PollContext, PollFuture, SourceError, SpanCursor, cursor_bytes,
};

/// Posts can show a time rounded to the minute (or to the day), so a
/// poll reads this far back past where the previous one ended; what it
/// reads twice is deduplicated by id.
const OVERLAP: Duration = Duration::hours(1);

/// Selectors as configured (or from a preset).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HtmlSelectors {
    /// Each post on a page.
    pub post: String,
    /// The author's name, inside a post.
    pub author: String,
    /// The post's time, inside a post: a `datetime` or `title` attribute,
    /// else its text.
    pub time: String,
    /// The link to the next (older) page.
    pub next: String,
    /// Optional: a link inside the post whose `href` identifies it (else
    /// the post element's `id`, else author, time and text).
    pub link: String,
}

/// Selector sets for common forum software.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// phpBB 3.x prosilver: topic pages and search results in posts mode.
    Phpbb,
}

impl Preset {
    pub const NAMES: &'static [&'static str] = &["phpbb"];

    pub fn by_name(name: &str) -> Option<Preset> {
        match name {
            "phpbb" => Some(Preset::Phpbb),
            _ => None,
        }
    }

    pub fn selectors(self) -> HtmlSelectors {
        match self {
            Preset::Phpbb => HtmlSelectors {
                post: "div.post".into(),
                author: ".author .username, .author .username-coloured, .postprofile .username, .postprofile .username-coloured".into(),
                time: ".author time, .search-result-date, p.author".into(),
                next: ".pagination a[rel=next], .pagination li.next a".into(),
                link: ".author a[href*='#p'], h3 a[href*='#p']".into(),
            },
        }
    }
}

/// Compiled selectors (parsed once when the source is built).
struct Compiled {
    text: HtmlSelectors,
    post: Selector,
    author: Selector,
    time: Selector,
    next: Option<Selector>,
    link: Option<Selector>,
}

pub struct Html {
    base: Url,
    sel: std::sync::Arc<Compiled>,
    max_pages: u32,
    /// Pages nested deeper than this are not parsed ([limits] html_depth).
    max_depth: usize,
}

impl Html {
    pub fn new(
        base: Url,
        s: &HtmlSelectors,
        max_pages: u32,
        max_depth: usize,
    ) -> Result<Html, SourceError> {
        let compile = |key: &str, v: &str| {
            Selector::parse(v)
                .map_err(|e| SourceError::Other(format!("`{key}` is not a CSS selector: {e}")))
        };
        let optional = |key: &str, v: &str| {
            if v.is_empty() {
                Ok(None)
            } else {
                compile(key, v).map(Some)
            }
        };
        Ok(Html {
            base,
            sel: std::sync::Arc::new(Compiled {
                post: compile("post", &s.post)?,
                author: compile("author", &s.author)?,
                time: compile("time", &s.time)?,
                next: optional("next", &s.next)?,
                link: optional("link", &s.link)?,
                text: s.clone(),
            }),
            max_pages,
            max_depth,
        })
    }
}

/// One post as scraped.
#[derive(Debug, Clone, PartialEq)]
pub struct Scraped {
    pub id: String,
    pub author: String,
    pub at: DateTime<Utc>,
}

/// One page as scraped.
#[derive(Debug, PartialEq)]
pub struct Page {
    pub posts: Vec<Scraped>,
    pub next: Option<Url>,
    /// What was odd on the page and how lull took it (a post without an
    /// author counted as [`UNKNOWN_AUTHOR`], an empty template skipped).
    pub notes: Vec<String>,
}

/// The actor of a post whose page shows no author (Askbot's community-wiki
/// posts, a deleted user): counted, unmatched, listed by `lull accounts
/// --unmatched` under this name.
pub const UNKNOWN_AUTHOR: &str = "(no author shown)";

impl Connector for Html {
    fn poll<'a>(&'a self, cx: &'a PollContext<'a>) -> PollFuture<'a> {
        Box::pin(async move {
            let prev: Option<SpanCursor> = cx.cursor();
            let since = prev
                .as_ref()
                .map(|c| c.covered_to - OVERLAP)
                .unwrap_or(cx.backfill_start);
            let mut url = self.base.clone();
            let mut activities = Vec::new();
            let mut oldest: Option<DateTime<Utc>> = None;
            // Newest first (a "latest posts" view) unless a page shows
            // otherwise (a topic page, oldest first).
            let mut descending = true;
            let mut complete = false;
            let mut visited = std::collections::HashSet::new();
            let mut seen_ids = std::collections::HashSet::new();
            let mut notes: Vec<String> = Vec::new();
            for page_no in 1..=self.max_pages {
                visited.insert(url.clone());
                let body = cx.http.get_text(&url).await?;
                // Parsing is CPU work that grows with the page: off the
                // async workers, so the service keeps answering.
                let (sel, u, tz, now, depth) =
                    (self.sel.clone(), url.clone(), cx.tz, cx.now, self.max_depth);
                let page = tokio::task::spawn_blocking(move || {
                    check_depth(&body, depth)?;
                    parse_page(&body, &u, &sel, tz, now)
                })
                .await
                .map_err(|e| {
                    SourceError::Other(format!("parsing {}: {e}", super::http::display_url(&url)))
                })?
                .map_err(|detail| SourceError::Page {
                    url: super::http::display_url(&url),
                    detail,
                })?;
                if page.posts.is_empty() && page_no == 1 {
                    return Err(SourceError::Page {
                        url: url.to_string(),
                        detail: format!(
                            "no element matches the `post` selector `{}`: is this the page that lists posts, or did the forum's theme change?",
                            self.sel.text.post
                        ),
                    });
                }
                if let (Some(first), Some(last)) = (page.posts.first(), page.posts.last())
                    && first.at < last.at
                {
                    descending = false;
                }
                // A page showing only posts this poll already read is the
                // forum serving an earlier page again under another
                // address (Askbot's `page=None` is page 1): a loop.
                if page_no > 1
                    && !page.posts.is_empty()
                    && page.posts.iter().all(|p| seen_ids.contains(&p.id))
                {
                    tracing::warn!(source = %cx.name, page = %super::http::display_url(&url), "the next-page link led to a page already read under another address; stopping there (a loop, not more pages)");
                    complete = true;
                    break;
                }
                seen_ids.extend(page.posts.iter().map(|p| p.id.clone()));
                notes.extend(page.notes);
                let all_old = !page.posts.is_empty() && page.posts.iter().all(|p| p.at < since);
                for p in page.posts {
                    oldest = Some(oldest.map_or(p.at, |o| o.min(p.at)));
                    if p.at < since {
                        continue;
                    }
                    activities.push(Activity {
                        id: p.id,
                        kind: "post",
                        at: p.at,
                        actors: vec![p.author],
                        once: false,
                    });
                }
                match page.next {
                    // Newest first and already past `since`: the rest is older.
                    _ if all_old && descending => {
                        complete = true;
                        break;
                    }
                    None => {
                        complete = true;
                        break;
                    }
                    // The next-page link leads back to a page already read
                    // (Askbot's last page links `page=None`, which the
                    // forum serves as page 1): every page was read.
                    Some(next) if visited.contains(&next) => {
                        tracing::warn!(source = %cx.name, page = %super::http::display_url(&url), next = %super::http::display_url(&next), "the next-page link loops back to a page already read; stopping there (a loop, not more pages)");
                        complete = true;
                        break;
                    }
                    Some(next) => url = next,
                }
            }
            if let Some(first) = notes.first() {
                tracing::warn!(source = %cx.name, odd_posts = notes.len(), first = %first, "posts the selectors could not read whole; counted or skipped as said");
            }
            let prev_end = prev.as_ref().map(|c| c.covered_to);
            // Read everything down to `since` (or the forum's last page):
            // all of it is covered. Stopped by `max_pages` on a newest-first
            // listing: covered down to the oldest post read. Oldest first
            // and stopped: the newest posts were not reached; nothing is.
            let covered = match (complete, oldest) {
                (true, _) => Some((prev_end.unwrap_or(since), cx.now)),
                (false, Some(o)) if descending => {
                    tracing::warn!(source = %cx.name, max_pages = self.max_pages, "read max_pages without reaching the previous poll's posts; days before {o} stay uncovered (raise max_pages or poll more often)");
                    Some((o.max(prev_end.unwrap_or(o)), cx.now))
                }
                (false, _) => {
                    tracing::warn!(source = %cx.name, max_pages = self.max_pages, "the page lists posts oldest first and has more than max_pages pages; nothing is covered (point `url` at a newest-first listing or raise max_pages)");
                    None
                }
            };
            Ok(Harvest {
                activities,
                covered,
                cursor: cursor_bytes(&SpanCursor { covered_to: cx.now }),
                staff: 0,
            })
        })
    }
}

/// Scrapes one page. A post without a readable time is an error (a theme
/// change must not look like silence); one without an author is counted
/// as [`UNKNOWN_AUTHOR`] and noted; one with neither is skipped and noted.
fn parse_page(
    body: &str,
    url: &Url,
    sel: &Compiled,
    tz: Tz,
    now: DateTime<Utc>,
) -> Result<Page, String> {
    let doc = Document::parse_document(body);
    let mut posts = Vec::new();
    let mut notes = Vec::new();
    for (i, post) in doc.select(&sel.post).enumerate() {
        let n = i + 1;
        // An author element that matched but is empty is not a missing
        // element: the messages say which.
        let authors: Vec<String> = post.select(&sel.author).map(text_of).collect();
        let author = authors.iter().find(|t| !t.is_empty()).cloned();
        let no_author = || {
            if authors.is_empty() {
                format!(
                    "no element matches the `author` selector `{}`",
                    sel.text.author
                )
            } else {
                format!("its `author` element (`{}`) is empty", sel.text.author)
            }
        };
        let who = author.clone().unwrap_or_else(|| "no author".into());
        let time_el = post.select(&sel.time).next();
        let candidates = time_el.map(|t| {
            [
                t.value().attr("datetime").map(str::to_string),
                t.value().attr("title").map(str::to_string),
                Some(text_of(t)),
            ]
        });
        let at = candidates.as_ref().and_then(|c| {
            c.iter()
                .flatten()
                .find_map(|t| super::timefmt::parse(t, tz, now))
        });
        let Some(at) = at else {
            if author.is_none() {
                // Neither author nor time: a hidden template or a widget
                // the `post` selector also matches, not a post.
                notes.push(format!(
                    "post {n} skipped: {} and it has no readable time (a hidden template?)",
                    no_author()
                ));
                continue;
            }
            return Err(match time_el {
                None => format!(
                    "post {n} (by {who}) has no element matching the `time` selector `{}`",
                    sel.text.time
                ),
                Some(t)
                    if text_of(t).is_empty()
                        && ["datetime", "title"]
                            .iter()
                            .all(|a| t.value().attr(a).is_none_or(|v| v.trim().is_empty())) =>
                {
                    format!(
                        "post {n} (by {who}): its `time` element (`{}`) is empty",
                        sel.text.time
                    )
                }
                Some(t) => format!("post {n} (by {who}): cannot read the time {:?}", text_of(t)),
            });
        };
        let author = match author {
            Some(a) => a,
            None => {
                notes.push(format!(
                    "post {n} counted as {UNKNOWN_AUTHOR:?}: {} (a community-wiki post?)",
                    no_author()
                ));
                UNKNOWN_AUTHOR.to_string()
            }
        };
        let id = post_id(post, sel, url, &author, at);
        posts.push(Scraped { id, author, at });
    }
    let next = sel
        .next
        .as_ref()
        .and_then(|s| doc.select(s).find_map(|a| a.value().attr("href")))
        .and_then(|href| url.join(href).ok())
        .filter(|n| n != url);
    if let Some(n) = &next
        && !super::http::same_origin(n, url)
    {
        return Err(format!(
            "the next-page link points to another site ({}); lull reads only the configured site",
            super::http::display_url(n)
        ));
    }
    Ok(Page { posts, next, notes })
}

/// Elements that need no end tag.
const VOID: &[&str] = &[
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source",
    "track", "wbr",
];
/// Elements a following one of the same name closes (`<li>`, `<p>`, …).
const SELF_CLOSING_SIBLINGS: &[&str] = &[
    "p", "li", "dt", "dd", "option", "optgroup", "tr", "td", "th", "tbody", "thead", "tfoot", "rb",
    "rt", "rp",
];

/// Refuses a page whose elements nest deeper than `max`: the HTML parser
/// takes time quadratic in the depth (200,000 levels: over a minute). A
/// cheap scan over the tags, generous where HTML closes elements
/// implicitly, so a real page never comes near the limit.
pub fn check_depth(body: &str, max: usize) -> Result<(), String> {
    let b = body.as_bytes();
    let mut stack: Vec<&[u8]> = Vec::new();
    let mut i = 0;
    let name_at = |mut j: usize| {
        let start = j;
        while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'-' || b[j] == b':') {
            j += 1;
        }
        (&b[start..j], j)
    };
    let find = |from: usize, pat: &[u8]| {
        b.get(from..)
            .and_then(|rest| {
                rest.windows(pat.len())
                    .position(|w| w.eq_ignore_ascii_case(pat))
            })
            .map(|p| from + p)
    };
    while let Some(p) = b.get(i..).and_then(|r| r.iter().position(|&c| c == b'<')) {
        i += p + 1;
        match b.get(i) {
            Some(b'!') | Some(b'?') => {
                let end = if b.get(i..i + 3) == Some(b"!--") {
                    find(i + 3, b"-->").map(|e| e + 3)
                } else {
                    find(i, b">").map(|e| e + 1)
                };
                i = end.unwrap_or(b.len());
            }
            Some(b'/') => {
                let (name, j) = name_at(i + 1);
                i = j;
                // Close the nearest open element of that name, if near.
                if let Some(pos) = stack
                    .iter()
                    .rev()
                    .take(16)
                    .position(|n| n.eq_ignore_ascii_case(name))
                {
                    stack.truncate(stack.len() - pos - 1);
                }
            }
            Some(c) if c.is_ascii_alphabetic() => {
                let (name, j) = name_at(i);
                // The end of the tag, skipping quoted attribute values.
                let mut k = j;
                let mut quote = None;
                while k < b.len() {
                    match (quote, b[k]) {
                        (None, b'"' | b'\'') => quote = Some(b[k]),
                        (Some(q), c) if c == q => quote = None,
                        (None, b'>') => break,
                        _ => {}
                    }
                    k += 1;
                }
                let self_closed = k > 0 && b.get(k - 1) == Some(&b'/');
                i = k + 1;
                let lower = name.to_ascii_lowercase();
                let lower = lower.as_slice();
                if self_closed || VOID.iter().any(|v| v.as_bytes() == lower) {
                    continue;
                }
                if matches!(lower, b"script" | b"style" | b"textarea" | b"title") {
                    let mut close = b"</".to_vec();
                    close.extend_from_slice(lower);
                    i = find(i, &close).unwrap_or(b.len());
                    continue;
                }
                if SELF_CLOSING_SIBLINGS.iter().any(|v| v.as_bytes() == lower)
                    && let Some(pos) = stack
                        .iter()
                        .rev()
                        .take(4)
                        .position(|n| n.eq_ignore_ascii_case(lower))
                {
                    stack.truncate(stack.len() - pos - 1);
                }
                stack.push(name);
                if stack.len() > max {
                    return Err(format!(
                        "the page nests its elements more than {max} deep ([limits] html_depth); it is not parsed (a broken or hostile page?)"
                    ));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn text_of(e: ElementRef<'_>) -> String {
    e.text()
        .collect::<Vec<_>>()
        .join(" ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// A post's stable id: its permalink, its element id, or a hash of what
/// it shows.
fn post_id(
    post: ElementRef<'_>,
    sel: &Compiled,
    url: &Url,
    author: &str,
    at: DateTime<Utc>,
) -> String {
    if let Some(href) = sel
        .link
        .as_ref()
        .and_then(|s| post.select(s).find_map(|a| a.value().attr("href")))
        .and_then(|h| url.join(h).ok())
    {
        // The fragment (phpBB's `#p123`) is what identifies the post.
        return match href.fragment() {
            Some(f) if !f.is_empty() => format!("#{f}"),
            _ => href.to_string(),
        };
    }
    if let Some(id) = post.value().attr("id").filter(|s| !s.is_empty()) {
        return format!("#{id}");
    }
    // Without the words that hold digits: vote counts, karma, "3 days
    // ago" change while the post stays the same.
    let text: String = text_of(post)
        .split(' ')
        .filter(|w| !w.chars().any(|c| c.is_ascii_digit()))
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(500)
        .collect();
    let h = xxhash_rust::xxh3::xxh3_64(
        format!("{author}\u{1}{}\u{1}{text}", at.timestamp()).as_bytes(),
    );
    format!("h:{h:016x}")
}

/// Pages an `html` poll follows through "next" links: a forum's latest
/// posts rarely need more between two hourly polls, and a broken "next"
/// selector cannot walk a whole site.
pub const DEFAULT_MAX_PAGES: u32 = 10;

/// The `html` kind.
pub(crate) static KIND: Kind = Kind {
    name: "html",
    // Someone else's web server: one page every two seconds.
    requests_per_minute: 30,
    keys: &[
        "preset",
        "post",
        "author",
        "time",
        "next",
        "link",
        "max_pages",
    ],
    docs: Docs {
        keys: r#"`preset` or `post`, `author`, `time` (CSS selectors); optional `next`, `link`, `max_pages` (10)"#,
        reads: r#"posts (kind `post`) from a page that lists posts, best **newest first** (a "latest posts" view, a search sorted by time); follows the `next` link until it reaches posts the previous poll covered, the last page or `max_pages`. Oldest-first listings (a topic) work too, read up to `max_pages` each poll. Time from the `time` element's `datetime`/`title` attribute or text: RFC 3339/2822, epoch seconds, phpBB's `Tue Jan 01, 2019 10:00 am` and the usual date formats, `3 hours ago`, `Yesterday, 10:30` (zone-less times in the config's `timezone`). Post id: the `link` href's fragment (phpBB `#p123`), the element's `id`, or a hash of author, time and the post's words without digits (so votes, karma and "3 days ago" never make it a new post). A post without an author (a community-wiki answer) counts as `(no author shown)` — unmatched, listed by `lull accounts --unmatched` — and a post with neither author nor time (a hidden template) is skipped; both are logged, neither fails the source. A `next` link back to a page already read, or to a page of posts already read under another address (Askbot's `page=None`), ends the listing with a warning that says "loop". `preset = "phpbb"` fits phpBB 3.x prosilver topic pages and search results"#,
        credentials: r#"none (public pages)"#,
        rate: r#"30/min"#,
    },
    activities: &[("post", "forum posts")],
    configure,
    fuzz,
};

#[derive(Debug)]
struct Settings {
    selectors: HtmlSelectors,
    max_pages: u32,
}

fn configure(k: &mut Keys<'_>) -> Option<Arc<dyn kind::Settings>> {
    let preset = match k.string("preset") {
        None => None,
        Some(s) => match Preset::by_name(&s) {
            Some(p) => Some(p),
            None => {
                k.problem(
                    "preset",
                    format!(
                        "unknown html preset `{s}`; known: {}",
                        Preset::NAMES.join(", ")
                    ),
                );
                return None;
            }
        },
    };
    let mut sel = preset.map(Preset::selectors).unwrap_or_default();
    for (key, slot) in [
        ("post", &mut sel.post),
        ("author", &mut sel.author),
        ("time", &mut sel.time),
        ("next", &mut sel.next),
        ("link", &mut sel.link),
    ] {
        if let Some(v) = k.string(key) {
            if let Err(e) = Selector::parse(&v) {
                k.problem(key, format!("`{key}` is not a CSS selector: {e}"));
            }
            *slot = v;
        }
    }
    for (key, slot) in [
        ("post", &sel.post),
        ("author", &sel.author),
        ("time", &sel.time),
    ] {
        if slot.is_empty() {
            let msg = format!(
                "html source `{}` needs `preset` (e.g. \"phpbb\") or a `{key}` selector",
                k.source()
            );
            k.problem("name", msg);
        }
    }
    let max_pages = k.at_least("max_pages", 1, DEFAULT_MAX_PAGES);
    if k.failed() {
        return None;
    }
    Some(Arc::new(Settings {
        selectors: sel,
        max_pages: max_pages?,
    }))
}

impl kind::Settings for Settings {
    fn env_vars(&self) -> Vec<&str> {
        Vec::new()
    }

    fn connect(&self, cx: &Connect<'_>) -> Result<Connection, SourceError> {
        Ok(Connection {
            auth: Auth::None,
            connector: Box::new(Html::new(
                cx.base.clone(),
                &self.selectors,
                self.max_pages,
                cx.limits.html_depth,
            )?),
        })
    }
}

/// Fuzz entry (fuzz/): scrape a page with the phpBB preset. A page either
/// parses or is an error that names the post; it never panics.
#[doc(hidden)]
pub fn fuzz(data: &[u8]) {
    let (Ok(url), Ok(time)) = (
        Url::parse("https://forum.fuzz.example/viewtopic.php?t=1"),
        chrono::DateTime::parse_from_rfc3339("2026-11-22T12:00:00Z"),
    ) else {
        return;
    };
    let Ok(h) = Html::new(
        url.clone(),
        &Preset::Phpbb.selectors(),
        5,
        crate::limits::DEFAULT_HTML_DEPTH,
    ) else {
        return;
    };
    let body = String::from_utf8_lossy(data);
    if check_depth(&body, crate::limits::DEFAULT_HTML_DEPTH).is_ok() {
        let _ = parse_page(&body, &url, &h.sel, Tz::UTC, time.with_timezone(&Utc));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn html(sel: &HtmlSelectors) -> Html {
        Html::new(Url::parse("http://forum.test/").unwrap(), sel, 5, 512).unwrap()
    }

    #[test]
    fn nesting_depth_is_bounded_without_flagging_real_pages() {
        let real = include_str!("../../tests/fixtures/html/phpbb_topic.html");
        assert!(check_depth(real, 64).is_ok());
        // Implicitly closed elements do not pile up.
        let list = "<ul>".to_string() + &"<li>item <p>para".repeat(20_000) + "</ul>";
        assert!(check_depth(&list, 16).is_ok());
        let script = "<script>".to_string() + &"<div>".repeat(5000) + "</script>";
        assert!(check_depth(&script, 16).is_ok());
        let deep = "<div>".repeat(600);
        let err = check_depth(&deep, 512).unwrap_err();
        assert!(err.contains("more than 512 deep"), "{err}");
        let deep_b = "<b><i>".repeat(300);
        assert!(check_depth(&deep_b, 512).is_err());
    }

    #[test]
    fn a_next_link_to_another_site_is_not_followed() {
        let h = html(&Preset::Phpbb.selectors());
        let body = "<div class=post id=p1><div class=author><span class=username>al</span><time datetime='2026-01-01T00:00:00Z'></time></div></div><div class=pagination><a rel=next href='https://evil.example/page2'>next</a></div>";
        let url = Url::parse("http://forum.test/").unwrap();
        let err = parse_page(body, &url, &h.sel, Tz::UTC, Utc::now()).unwrap_err();
        assert!(
            err.contains("another site (https://evil.example/page2)"),
            "{err}"
        );
    }

    #[test]
    fn phpbb_preset_reads_topic_and_search_pages() {
        let h = html(&Preset::Phpbb.selectors());
        let body = include_str!("../../tests/fixtures/html/phpbb_topic.html");
        let url = Url::parse("http://forum.test/viewtopic.php?t=5").unwrap();
        let page = parse_page(body, &url, &h.sel, Tz::UTC, Utc::now()).unwrap();
        assert_eq!(page.posts.len(), 3);
        assert_eq!(page.posts[0].author, "alice");
        assert_eq!(page.posts[0].id, "#p101");
        assert_eq!(page.posts[0].at.to_rfc3339(), "2026-11-20T09:15:00+00:00");
        assert_eq!(page.posts[2].author, "Guest Carol");
        assert_eq!(
            page.next.unwrap().as_str(),
            "http://forum.test/viewtopic.php?t=5&start=10"
        );
    }

    /// Selectors a community manager would write for an Askbot question
    /// page (its templates: `.post`, `.post-update-info .user-info a`,
    /// `abbr.timeago[title]`, vote counts in `.vote-number`).
    fn askbot() -> Html {
        html(&HtmlSelectors {
            post: ".post".into(),
            author: ".user-info a".into(),
            time: "abbr.timeago".into(),
            next: ".paginator .next a".into(),
            link: String::new(),
        })
    }

    fn answer(who: Option<&str>, time: Option<&str>, votes: u32, text: &str) -> String {
        let user = who.map_or(String::new(), |w| {
            format!("<div class=user-info><a href='/users/1/{w}/'>{w}</a> <span class=reputation>1.{votes}k</span></div>")
        });
        let time = time.map_or(String::new(), |t| {
            format!("<abbr class=timeago title='{t}'>{t}</abbr>")
        });
        format!(
            "<div class='post answer'><div class=vote-number>{votes}</div><div class=post-body>{text}</div><div class=post-update-info>{user}{time}</div></div>"
        )
    }

    #[test]
    fn a_post_without_an_author_is_counted_unknown_and_a_bare_template_skipped() {
        let h = askbot();
        let url = Url::parse("http://forum.test/question/7/").unwrap();
        let body = [
            answer(Some("alice"), Some("2026-01-02 10:00:00 +0000"), 3, "Use the export."),
            // A community-wiki answer: no user block at all.
            answer(None, Some("2026-01-03 10:00:00 +0000"), 1, "Wiki steps."),
            // A hidden template for new answers: empty author, no time.
            "<div class='post answer' style='display:none'><div class=user-info><a></a></div></div>".to_string(),
        ]
        .concat();
        let page = parse_page(&body, &url, &h.sel, Tz::UTC, Utc::now()).unwrap();
        let who: Vec<&str> = page.posts.iter().map(|p| p.author.as_str()).collect();
        assert_eq!(who, ["alice", UNKNOWN_AUTHOR]);
        assert_eq!(page.notes.len(), 2, "{:?}", page.notes);
        assert!(
            page.notes[0].contains("post 2 counted as")
                && page.notes[0].contains("no element matches the `author` selector"),
            "{:?}",
            page.notes
        );
        assert!(
            page.notes[1].contains("post 3 skipped")
                && page.notes[1].contains("its `author` element (`.user-info a`) is empty"),
            "{:?}",
            page.notes
        );
        // An author with an empty time element: an error that says so.
        let body = answer(Some("bob"), Some(""), 0, "x");
        let err = parse_page(&body, &url, &h.sel, Tz::UTC, Utc::now()).unwrap_err();
        assert!(
            err.contains("post 1 (by bob): its `time` element (`abbr.timeago`) is empty"),
            "{err}"
        );
        let body = answer(Some("bob"), None, 0, "x");
        let err = parse_page(&body, &url, &h.sel, Tz::UTC, Utc::now()).unwrap_err();
        assert!(
            err.contains("post 1 (by bob) has no element matching the `time` selector"),
            "{err}"
        );
    }

    #[test]
    fn a_posts_id_does_not_change_with_its_votes_or_karma() {
        let h = askbot();
        let url = Url::parse("http://forum.test/question/7/").unwrap();
        let at = "2026-01-02 10:00:00 +0000";
        let id = |votes| {
            let page = parse_page(
                &answer(Some("alice"), Some(at), votes, "Use the export."),
                &url,
                &h.sel,
                Tz::UTC,
                Utc::now(),
            )
            .unwrap();
            page.posts[0].id.clone()
        };
        assert_eq!(id(3), id(4));
        assert_eq!(id(3), id(120));
        // Another text is another post.
        let other = parse_page(
            &answer(Some("alice"), Some(at), 3, "Another answer."),
            &url,
            &h.sel,
            Tz::UTC,
            Utc::now(),
        )
        .unwrap();
        assert_ne!(id(3), other.posts[0].id);
    }
}
