//! Messages for chat: Slack's Block Kit and Teams' Adaptive Cards, from
//! the same words as the e-mail ([`super::compose`]).
//!
//! What came from outside (account names, source names, handles) is
//! never markup: Slack gets it in `plain_text` objects with `&`, `<` and
//! `>` escaped (so `<!channel>` or `<@U123>` cannot become a mention and no
//! link can be forged), and the fallback text likewise, with Slack's own
//! markup turned off; Teams gets it with Markdown's special characters
//! backslash-escaped (Adaptive Cards render a Markdown subset).

use serde_json::{Value, json};

use super::compose::{AccountView, StaleView, account_view};
use crate::console::tokens::{AccountLinks, Links};
use crate::detect::Queued;

/// Slack's limit on a `plain_text` object in a section.
const SLACK_TEXT_MAX: usize = 3000;
/// Slack's limit on a header's text.
const SLACK_HEADER_MAX: usize = 150;

/// What one chat message shows: accounts and stale sources, in the
/// e-mail's words.
pub(crate) struct ChatView {
    pub subject: String,
    pub day: String,
    pub(crate) accounts: Vec<AccountView>,
    /// Per account, its chart's signed link (with a public console URL).
    pub(crate) charts: Vec<Option<String>>,
    pub(crate) stale: Vec<StaleView>,
}

impl ChatView {
    /// The views of a message's notices; with `links`, each account gets
    /// its console buttons (bound to the notice's recipient).
    pub fn new(subject: &str, day: &str, items: &[Queued], links: Option<&Links>) -> ChatView {
        let now = chrono::Utc::now();
        let mut accounts = Vec::new();
        let mut charts = Vec::new();
        let mut stale = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match item {
                Queued::Account(n) => {
                    let mut v = account_view(n, i);
                    // Chat services fetch images anonymously: the chart
                    // goes as a signed link to the console, when it has a
                    // public URL (an e-mail attaches it instead).
                    charts.push(
                        links
                            .filter(|_| v.chart_cid.is_some())
                            .map(|l| l.chart(n.account.as_str(), n.date, n.silent_since, now)),
                    );
                    v.chart_cid = None;
                    v.links = links.map(|l| {
                        l.for_notice(n.account.as_str(), n.date, n.notice.as_str(), &n.csm, now)
                    });
                    accounts.push(v);
                }
                Queued::Stale(s) => stale.push(StaleView {
                    source: s.source.to_string(),
                    last_data: s.last_data.to_string(),
                    days: s.date.0 - s.last_data.0,
                }),
            }
        }
        ChatView {
            subject: subject.to_string(),
            day: day.to_string(),
            accounts,
            charts,
            stale,
        }
    }
}

/// Slack's required escapes: `&`, `<`, `>` (nothing else is special in
/// `plain_text`).
pub fn slack_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\n' => out.push('\n'),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

fn cut(s: String, max: usize) -> String {
    if s.chars().count() <= max {
        return s;
    }
    let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
    t.push('…');
    t
}

fn plain(s: &str, max: usize) -> Value {
    json!({"type": "plain_text", "text": cut(slack_escape(s), max), "emoji": false})
}

fn account_lines(a: &AccountView) -> String {
    let mut lines = Vec::new();
    if let Some(seg) = &a.segment {
        lines.push(format!("Segment: {seg}"));
    }
    if let Some(since) = &a.since {
        lines.push(format!("{}: {since}", a.since_label));
    }
    for c in &a.channels {
        let mut l = format!("• {}: {}", c.label, c.what);
        if let Some(level) = &c.level {
            l.push_str(&format!(" ({level})"));
        }
        lines.push(l);
        if let Some(o) = &c.odds {
            lines.push(format!("  {o}"));
        }
        if let Some(cm) = &c.community {
            lines.push(format!("  {cm}"));
        }
    }
    if let Some(l) = &a.last_activity {
        lines.push(format!("Last activity: {l}"));
    }
    if let Some(p) = &a.people {
        lines.push(p.clone());
    }
    if let Some(e) = &a.episode {
        lines.push(format!("Quiet since the alert of {e}"));
    }
    lines.join("\n")
}

fn buttons(l: &AccountLinks) -> [(&'static str, &String); 4] {
    [
        ("Open in lull", &l.open),
        ("Snooze", &l.snooze),
        ("Useful", &l.useful),
        ("False alarm", &l.false_alarm),
    ]
}

/// A Slack message (incoming webhook or `chat.postMessage` body, without
/// the channel).
pub(crate) fn slack_message(v: &ChatView) -> Value {
    let mut blocks = vec![
        json!({"type": "header", "text": plain(&v.subject.replace("[lull] ", ""), SLACK_HEADER_MAX)}),
    ];
    // One account: the header names it already.
    let titled = v.accounts.len() + v.stale.len() > 1;
    for (a, chart) in v.accounts.iter().zip(&v.charts) {
        blocks.push(json!({"type": "divider"}));
        if titled {
            blocks.push(json!({
                "type": "section",
                "text": plain(&format!("{} {}", a.name, a.headline), SLACK_TEXT_MAX),
            }));
        }
        blocks.push(json!({
            "type": "section",
            "text": plain(&account_lines(a), SLACK_TEXT_MAX),
        }));
        if let Some(url) = chart {
            blocks.push(json!({
                "type": "image",
                "image_url": url,
                "alt_text": cut(slack_escape(&format!("Weekly activity of {} against its usual level", a.name)), 1900),
            }));
        }
        if let Some(l) = &a.links {
            let elements: Vec<Value> = buttons(l)
                .iter()
                .enumerate()
                .map(|(i, (label, url))| {
                    json!({
                        "type": "button",
                        "text": plain(label, 75),
                        "url": url,
                        "action_id": format!("lull-{}-{i}", a.id.len()),
                    })
                })
                .collect();
            blocks.push(json!({"type": "actions", "elements": elements}));
        }
    }
    for s in &v.stale {
        blocks.push(json!({"type": "divider"}));
        blocks.push(json!({
            "type": "section",
            "text": plain(
                &format!(
                    "Source {} has no new data since {} ({} days). Accounts that depend on it are not judged until it recovers.",
                    s.source, s.last_data, s.days
                ),
                SLACK_TEXT_MAX,
            ),
        }));
    }
    blocks.push(json!({
        "type": "context",
        "elements": [plain(&format!("lull, detection of {}", v.day), 300)],
    }));
    json!({
        "text": cut(slack_escape(&v.subject), SLACK_TEXT_MAX),
        "mrkdwn": false,
        "unfurl_links": false,
        "unfurl_media": false,
        "blocks": blocks,
    })
}

/// Markdown's inline markup characters backslash-escaped, and a line
/// start that would make a list or heading (Adaptive Cards' TextBlock
/// renders a Markdown subset: emphasis, links, lists).
pub fn markdown_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut line_start = true;
    for c in s.chars() {
        if "\\`*_[]()~".contains(c) || (line_start && "-+#>".contains(c)) {
            out.push('\\');
            out.push(c);
        } else if c == '\n' {
            out.push(c);
        } else if c.is_control() {
            out.push(' ');
        } else {
            out.push(c);
        }
        line_start = c == '\n' || (line_start && c == ' ');
    }
    out
}

fn text_block(s: &str, extra: Value) -> Value {
    let mut b = json!({"type": "TextBlock", "text": markdown_escape(s), "wrap": true});
    if let (Some(m), Some(e)) = (b.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            m.insert(k.clone(), v.clone());
        }
    }
    b
}

/// A Teams message with one Adaptive Card (what a Workflows webhook
/// takes).
pub(crate) fn teams_message(v: &ChatView) -> Value {
    let mut body = vec![text_block(
        &v.subject.replace("[lull] ", ""),
        json!({"size": "Medium", "weight": "Bolder"}),
    )];
    let mut actions = Vec::new();
    let titled = v.accounts.len() + v.stale.len() > 1;
    for (a, chart) in v.accounts.iter().zip(&v.charts) {
        if titled {
            body.push(text_block(
                &format!("{} {}", a.name, a.headline),
                json!({"weight": "Bolder", "separator": true, "spacing": "Medium"}),
            ));
        }
        let mut facts = Vec::new();
        if let Some(seg) = &a.segment {
            facts.push(json!({"title": "Segment", "value": markdown_escape(seg)}));
        }
        if let Some(since) = &a.since {
            facts.push(json!({"title": a.since_label, "value": markdown_escape(since)}));
        }
        for c in &a.channels {
            let mut what = c.what.clone();
            if let Some(level) = &c.level {
                what.push_str(&format!(" ({level})"));
            }
            facts
                .push(json!({"title": markdown_escape(&c.label), "value": markdown_escape(&what)}));
        }
        if let Some(l) = &a.last_activity {
            facts.push(json!({"title": "Last activity", "value": markdown_escape(l)}));
        }
        body.push(json!({"type": "FactSet", "facts": facts}));
        if let Some(url) = chart {
            body.push(json!({
                "type": "Image",
                "url": url,
                "altText": format!("Weekly activity of {} against its usual level", a.name),
            }));
        }
        if let Some(p) = &a.people {
            body.push(text_block(p, json!({"isSubtle": true})));
        }
        if let Some(l) = &a.links {
            // One account: its buttons under the card; several: a row of
            // buttons under each account.
            let row: Vec<Value> = buttons(l)
                .iter()
                .map(|(label, url)| json!({"type": "Action.OpenUrl", "title": label, "url": url}))
                .collect();
            if v.accounts.len() == 1 {
                actions = row;
            } else {
                body.push(json!({"type": "ActionSet", "actions": row}));
            }
        }
    }
    for s in &v.stale {
        body.push(text_block(
            &format!(
                "Source {} has no new data since {} ({} days). Accounts that depend on it are not judged until it recovers.",
                s.source, s.last_data, s.days
            ),
            json!({"separator": true}),
        ));
    }
    body.push(text_block(
        &format!("lull, detection of {}", v.day),
        json!({"isSubtle": true, "size": "Small"}),
    ));
    let mut card = json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
    });
    if !actions.is_empty() {
        card["actions"] = Value::Array(actions);
    }
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": card,
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slack_and_markdown_escapes_neutralise_mentions_and_markup() {
        assert_eq!(
            slack_escape("<!channel> & <@U1|x>"),
            "&lt;!channel&gt; &amp; &lt;@U1|x&gt;"
        );
        assert_eq!(
            markdown_escape("**Acme** [x](http://e)"),
            "\\*\\*Acme\\*\\* \\[x\\]\\(http://e\\)"
        );
        assert_eq!(cut("abcdef".into(), 4), "abc…");
    }
}
