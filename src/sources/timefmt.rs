//! Times as forums print them: machine timestamps, the usual human
//! formats, and "3 hours ago". Times without a zone are in the config's
//! time zone.

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

/// Date-and-time formats seen on forum software (phpBB's default
/// `D M d, Y g:i a` first), tried in order.
const DATE_TIMES: &[&str] = &[
    "%a %b %d, %Y %I:%M %p",
    "%a %b %d, %Y %H:%M",
    "%a %b %d, %Y %I:%M:%S %p",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%dT%H:%M",
    "%Y/%m/%d %H:%M:%S",
    "%Y/%m/%d %H:%M",
    "%b %d, %Y %I:%M %p",
    "%b %d, %Y, %I:%M %p",
    "%B %d, %Y %I:%M %p",
    "%B %d, %Y, %I:%M %p",
    "%B %d, %Y at %I:%M %p",
    "%b %d, %Y %H:%M",
    "%d %b %Y %H:%M",
    "%d %b %Y, %H:%M",
    "%d %B %Y %H:%M",
    "%d %B %Y, %H:%M",
    "%d.%m.%Y %H:%M:%S",
    "%d.%m.%Y %H:%M",
    "%d.%m.%Y, %H:%M",
    "%m/%d/%Y %I:%M %p",
    "%m/%d/%Y %H:%M",
    "%d/%m/%Y %H:%M",
];

/// Dates without a time (the post counts on that day, at midnight).
const DATES: &[&str] = &[
    "%Y-%m-%d",
    "%b %d, %Y",
    "%B %d, %Y",
    "%a %b %d, %Y",
    "%d %b %Y",
    "%d %B %Y",
    "%d.%m.%Y",
    "%m/%d/%Y",
];

/// Parses a time shown on a page; `now` anchors relative forms.
pub fn parse(text: &str, tz: Tz, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let s = clean(text);
    if s.is_empty() {
        return None;
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(&s) {
        return Some(t.with_timezone(&Utc));
    }
    if let Ok(t) = DateTime::parse_from_rfc2822(&s) {
        return Some(t.with_timezone(&Utc));
    }
    if let Ok(t) = DateTime::parse_from_str(&s, "%Y-%m-%d %H:%M:%S %z") {
        return Some(t.with_timezone(&Utc));
    }
    if s.len() >= 9 && s.bytes().all(|b| b.is_ascii_digit()) {
        let n: i64 = s.parse().ok()?;
        // Epoch seconds, or milliseconds when too big for seconds.
        return if n > 100_000_000_000 {
            DateTime::from_timestamp_millis(n)
        } else {
            DateTime::from_timestamp(n, 0)
        };
    }
    if let Some(t) = relative(&s, tz, now) {
        return Some(t);
    }
    for f in DATE_TIMES {
        if let Ok(n) = NaiveDateTime::parse_from_str(&s, f) {
            return local(n, tz);
        }
    }
    for f in DATES {
        if let Ok(d) = NaiveDate::parse_from_str(&s, f) {
            return local(d.and_time(NaiveTime::MIN), tz);
        }
    }
    None
}

/// Drops what surrounds a time on a page: "Posted:", "» ", "on ", extra
/// spaces, a trailing full stop.
fn clean(text: &str) -> String {
    let mut s: &str = text.trim();
    if let Some((_, after)) = s.rsplit_once('»') {
        s = after.trim();
    }
    for prefix in ["Posted:", "Posted on", "Posted", "posted", "on ", "at "] {
        if let Some(rest) = s.strip_prefix(prefix) {
            s = rest.trim();
        }
    }
    let s = s.trim_end_matches('.');
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn local(n: NaiveDateTime, tz: Tz) -> Option<DateTime<Utc>> {
    tz.from_local_datetime(&n)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
}

/// "just now", "5 minutes ago", "an hour ago", "yesterday, 10:30",
/// "Today at 09:15".
fn relative(s: &str, tz: Tz, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let lower = s.to_lowercase();
    if lower == "just now" || lower == "now" {
        return Some(now);
    }
    if let Some(rest) = lower.strip_suffix(" ago") {
        let mut parts = rest.split_whitespace();
        let n = match parts.next()? {
            "a" | "an" | "one" => 1,
            n => n.parse::<i64>().ok()?,
        };
        let unit = parts.next()?.trim_end_matches('s');
        let d = match unit {
            "second" | "sec" => Duration::seconds(n),
            "minute" | "min" => Duration::minutes(n),
            "hour" | "hr" => Duration::hours(n),
            "day" => Duration::days(n),
            "week" => Duration::weeks(n),
            "month" => Duration::days(30 * n),
            "year" => Duration::days(365 * n),
            _ => return None,
        };
        return Some(now - d);
    }
    for (word, back) in [("today", 0), ("yesterday", 1)] {
        if let Some(rest) = lower.strip_prefix(word) {
            let rest = rest
                .trim_start_matches([',', ' '])
                .trim_start_matches("at ")
                .trim();
            let day = now.with_timezone(&tz).date_naive() - Duration::days(back);
            let time = if rest.is_empty() {
                NaiveTime::MIN
            } else {
                ["%H:%M", "%I:%M %p", "%H:%M:%S"]
                    .iter()
                    .find_map(|f| NaiveTime::parse_from_str(rest, f).ok())?
            };
            return local(day.and_time(time), tz);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-11-22T12:00:00Z".parse().unwrap()
    }

    fn p(s: &str) -> String {
        parse(s, Tz::UTC, now())
            .map(|t| t.to_rfc3339())
            .unwrap_or_else(|| "NONE".into())
    }

    #[test]
    fn forum_time_formats_parse() {
        assert_eq!(p("2019-01-01T10:00:00+00:00"), "2019-01-01T10:00:00+00:00");
        assert_eq!(p("Tue Jan 01, 2019 10:00 am"), "2019-01-01T10:00:00+00:00");
        assert_eq!(
            p("by admin » Tue Jan 01, 2019 3:05 pm"),
            "2019-01-01T15:05:00+00:00"
        );
        assert_eq!(p("Posted: 2019-01-01 10:00"), "2019-01-01T10:00:00+00:00");
        assert_eq!(p("January 5, 2020, 9:30 PM"), "2020-01-05T21:30:00+00:00");
        assert_eq!(p("05.01.2020 21:30"), "2020-01-05T21:30:00+00:00");
        assert_eq!(p("Jan 5, 2020"), "2020-01-05T00:00:00+00:00");
        assert_eq!(p("1546336800"), "2019-01-01T10:00:00+00:00");
        assert_eq!(
            p("Tue, 1 Jan 2019 10:00:00 GMT"),
            "2019-01-01T10:00:00+00:00"
        );
        assert_eq!(p("3 hours ago"), "2026-11-22T09:00:00+00:00");
        assert_eq!(p("an hour ago"), "2026-11-22T11:00:00+00:00");
        assert_eq!(p("Yesterday, 10:30"), "2026-11-21T10:30:00+00:00");
        assert_eq!(p("Today at 9:15 am"), "2026-11-22T09:15:00+00:00");
        assert_eq!(p("soon-ish"), "NONE");
        assert_eq!(p(""), "NONE");
    }

    #[test]
    fn times_without_zone_are_in_the_configured_zone() {
        let t = parse("2019-07-01 10:00", "Europe/Berlin".parse().unwrap(), now()).unwrap();
        assert_eq!(t.to_rfc3339(), "2019-07-01T08:00:00+00:00");
    }
}
