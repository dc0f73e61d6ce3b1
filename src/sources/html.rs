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
    sel: Compiled,
    max_pages: u32,
}

impl Html {
    pub fn new(base: Url, s: &HtmlSelectors, max_pages: u32) -> Result<Html, SourceError> {
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
            sel: Compiled {
                post: compile("post", &s.post)?,
                author: compile("author", &s.author)?,
                time: compile("time", &s.time)?,
                next: optional("next", &s.next)?,
                link: optional("link", &s.link)?,
                text: s.clone(),
            },
            max_pages,
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
                let page = parse_page(&body, &url, &self.sel, cx.tz, cx.now).map_err(|detail| {
                    SourceError::Page {
                        url: url.to_string(),
                        detail,
                    }
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
    Ok(Page { posts, next })
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
    let Ok(h) = Html::new(url.clone(), &Preset::Phpbb.selectors(), 5) else {
        return;
    };
    let body = String::from_utf8_lossy(data);
    let _ = parse_page(&body, &url, &h.sel, Tz::UTC, time.with_timezone(&Utc));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn html(sel: &HtmlSelectors) -> Html {
        Html::new(Url::parse("http://forum.test/").unwrap(), sel, 5).unwrap()
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
