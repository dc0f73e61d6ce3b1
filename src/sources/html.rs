//! `html`: any forum whose pages list posts with author and time, read with
//! CSS selectors (or a preset), following "next" links politely.
//!
//! The page at `url` lists posts newest first (a forum's "latest posts" or
//! a search sorted by time) or oldest first (a topic). A poll reads pages
//! until, newest first, it reaches posts older than what the previous poll
//! covered; or until the last page; at most `max_pages`. It covers only
//! the time span it actually read.

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
}

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
            for page_no in 1..=self.max_pages {
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
                    Some(next) => url = next,
                }
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

/// Scrapes one page. A post without an author or a readable time is an
/// error (a theme change must not look like silence).
fn parse_page(
    body: &str,
    url: &Url,
    sel: &Compiled,
    tz: Tz,
    now: DateTime<Utc>,
) -> Result<Page, String> {
    let doc = Document::parse_document(body);
    let mut posts = Vec::new();
    for (i, post) in doc.select(&sel.post).enumerate() {
        let n = i + 1;
        let author = post
            .select(&sel.author)
            .map(text_of)
            .find(|t| !t.is_empty())
            .ok_or_else(|| {
                format!(
                    "post {n} has no element matching the `author` selector `{}`",
                    sel.text.author
                )
            })?;
        let time_el = post.select(&sel.time).next().ok_or_else(|| {
            format!(
                "post {n} (by {author}) has no element matching the `time` selector `{}`",
                sel.text.time
            )
        })?;
        let candidates = [
            time_el.value().attr("datetime").map(str::to_string),
            time_el.value().attr("title").map(str::to_string),
            Some(text_of(time_el)),
        ];
        let at = candidates
            .iter()
            .flatten()
            .find_map(|t| super::timefmt::parse(t, tz, now))
            .ok_or_else(|| {
                format!(
                    "post {n} (by {author}): cannot read the time {:?}",
                    text_of(time_el)
                )
            })?;
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
    Ok(Page { posts, next })
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
    let text: String = text_of(post).chars().take(500).collect();
    let h = xxhash_rust::xxh3::xxh3_64(
        format!("{author}\u{1}{}\u{1}{text}", at.timestamp()).as_bytes(),
    );
    format!("h:{h:016x}")
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

    #[test]
    fn a_post_without_author_is_an_error_that_names_the_selector() {
        let h = html(&Preset::Phpbb.selectors());
        let body = "<div class=post id=p1><p class=author><time datetime='2026-01-01T00:00:00Z'></time></p></div>";
        let url = Url::parse("http://forum.test/").unwrap();
        let err = parse_page(body, &url, &h.sel, Tz::UTC, Utc::now()).unwrap_err();
        assert!(
            err.contains("post 1 has no element matching the `author` selector"),
            "{err}"
        );
    }
}
