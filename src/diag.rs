//! Diagnostics that point at a place in a file.
//!
//! Config and accounts files are written by people; when one is wrong, lull
//! says *where* (`file:line:column`) and *what*, and reports every problem it
//! can find in one go rather than making the user fix them one at a time.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// One problem found in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    /// 1-based line; 0 when the problem is about the file as a whole.
    pub line: usize,
    /// 1-based column; 0 when unknown.
    pub column: usize,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (0, _) => write!(f, "{}: {}", self.file.display(), self.message),
            (l, 0) => write!(f, "{}:{}: {}", self.file.display(), l, self.message),
            (l, c) => write!(f, "{}:{}:{}: {}", self.file.display(), l, c, self.message),
        }
    }
}

/// A list of diagnostics that is itself an error, so callers can `?` it.
#[derive(Debug, Clone, Default)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// A file's text, kept so that byte offsets can be turned into lines.
pub struct SourceText {
    pub path: PathBuf,
    pub text: String,
    /// Byte offset where each line starts, for offset → line lookups that
    /// stay fast on files with tens of thousands of accounts.
    line_starts: Vec<usize>,
}

impl SourceText {
    /// Reads `path`; an unreadable file is itself a diagnostic.
    pub fn read(path: &Path) -> Result<Self, Diagnostic> {
        std::fs::read_to_string(path)
            .map(|text| SourceText::new(path, text))
            .map_err(|e| Diagnostic {
                file: path.to_path_buf(),
                line: 0,
                column: 0,
                message: format!("cannot read file: {e}"),
            })
    }

    pub fn new(path: &Path, text: String) -> Self {
        let line_starts = std::iter::once(0)
            .chain(
                text.bytes()
                    .enumerate()
                    .filter(|(_, b)| *b == b'\n')
                    .map(|(i, _)| i + 1),
            )
            .collect();
        SourceText {
            path: path.to_path_buf(),
            text,
            line_starts,
        }
    }

    /// 1-based line and column of byte offset `at`.
    pub fn line_col(&self, at: usize) -> (usize, usize) {
        let at = at.min(self.text.len());
        let line = self.line_starts.partition_point(|&s| s <= at);
        let start = self.line_starts[line - 1];
        let column = self
            .text
            .get(start..at)
            .map_or(1, |s| s.chars().count() + 1);
        (line, column)
    }

    /// A diagnostic at byte offset `at` of this file.
    pub fn at(&self, at: usize, message: impl Into<String>) -> Diagnostic {
        let (line, column) = self.line_col(at);
        Diagnostic {
            file: self.path.clone(),
            line,
            column,
            message: message.into(),
        }
    }

    /// A diagnostic at the start of a span.
    pub fn span<T>(&self, spanned: &Spanned<T>, message: impl Into<String>) -> Diagnostic {
        self.at(spanned.span().start, message)
    }

    /// A diagnostic about the whole file.
    pub fn whole(&self, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            file: self.path.clone(),
            line: 0,
            column: 0,
            message: message.into(),
        }
    }

    /// Deserialises the file as TOML into `T`.
    ///
    /// Every problem is found in one go where it can be: unknown keys are
    /// collected (each with its line); a value of the wrong type is
    /// reported and its table (or `[[...]]` entry) set aside, and the rest
    /// of the file read again, so a mistake in one table does not hide the
    /// mistakes in the others. The value comes back with the problems
    /// beside it (the caller adds its own checks and fails if there are
    /// any). A syntax error stops the parse, as nothing after it can be
    /// trusted, and is reported with its line.
    pub fn parse_toml<T: DeserializeOwned>(&self) -> Result<(T, Vec<Diagnostic>), Diagnostics> {
        let to_diag = |e: &toml::de::Error| {
            let at = e.span().map(|s| s.start).unwrap_or(0);
            self.at(at, e.message().trim_end().to_string())
        };
        let mut text = self.text.clone();
        let mut type_errors: Vec<Diagnostic> = Vec::new();
        // Unknown keys found by every pass (a pass stops at a type error).
        let mut seen_unknown: Vec<Diagnostic> = Vec::new();
        let finish =
            |mut unknown: Vec<Diagnostic>, seen: Vec<Diagnostic>, types: Vec<Diagnostic>| {
                for d in seen {
                    if !unknown.contains(&d) {
                        unknown.push(d);
                    }
                }
                unknown.extend(types);
                unknown.sort_by_key(|d| (d.line, d.column));
                unknown
            };
        loop {
            let spanned = DeTable::parse(&text).map_err(|e| Diagnostics(vec![to_diag(&e)]))?;
            let de =
                toml::de::Deserializer::parse(&text).map_err(|e| Diagnostics(vec![to_diag(&e)]))?;
            let mut unknown = Vec::new();
            let value: Result<T, _> = serde_ignored::deserialize(de, |path| {
                let segments = path_segments(&path);
                let offset = locate(spanned.get_ref(), &segments).unwrap_or(0);
                unknown.push(self.at(offset, format!("unknown key `{}`", display_path(&segments))));
            });
            match value {
                Ok(v) => return Ok((v, finish(unknown, seen_unknown, type_errors))),
                Err(e) => {
                    for d in unknown.drain(..) {
                        if !seen_unknown.contains(&d) {
                            seen_unknown.push(d);
                        }
                    }
                    type_errors.push(to_diag(&e));
                    // Set the table with the mistake aside and read on.
                    let region = e
                        .span()
                        .and_then(|sp| enclosing_entry(spanned.get_ref(), &text, sp.start));
                    let Some((from, to)) = region else {
                        return Err(Diagnostics(finish(unknown, seen_unknown, type_errors)));
                    };
                    let blanked: String = text[from..to]
                        .chars()
                        .map(|c| if c == '\n' { '\n' } else { ' ' })
                        .collect();
                    if blanked == text[from..to] || type_errors.len() > 64 {
                        return Err(Diagnostics(finish(unknown, seen_unknown, type_errors)));
                    }
                    text.replace_range(from..to, &blanked);
                }
            }
        }
    }
}

/// The byte range of the section (`[table]` or `[[array]]` entry) holding
/// offset `at`: from its header line to the line before the next header.
/// A key above every header is its own line.
fn enclosing_entry(_table: &DeTable<'_>, text: &str, at: usize) -> Option<(usize, usize)> {
    let at = at.min(text.len());
    let line_start = |i: usize| text[..i].rfind('\n').map_or(0, |p| p + 1);
    let line_end = |i: usize| text[i..].find('\n').map_or(text.len(), |p| i + p);
    let is_header = |pos: usize| text[pos..line_end(pos)].trim_start().starts_with('[');
    // Back to the header.
    let mut start = line_start(at);
    loop {
        if is_header(start) {
            break;
        }
        if start == 0 {
            // No header above: the key's own line.
            let s = line_start(at);
            return Some((s, line_end(s)));
        }
        start = line_start(start - 1);
    }
    // On to the next header (or the end).
    let mut end = line_end(start);
    while end < text.len() {
        let next = end + 1;
        if is_header(next) {
            break;
        }
        end = line_end(next);
    }
    Some((start, end))
}

#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Key(String),
    Index(usize),
}

fn path_segments(path: &serde_ignored::Path<'_>) -> Vec<Segment> {
    use serde_ignored::Path;
    let mut out = Vec::new();
    let mut cur = path;
    loop {
        match cur {
            Path::Root => break,
            Path::Seq { parent, index } => {
                out.push(Segment::Index(*index));
                cur = parent;
            }
            Path::Map { parent, key } => {
                out.push(Segment::Key(key.clone()));
                cur = parent;
            }
            Path::Some { parent }
            | Path::NewtypeStruct { parent }
            | Path::NewtypeVariant { parent } => cur = parent,
        }
    }
    out.reverse();
    out
}

fn display_path(segments: &[Segment]) -> String {
    let mut s = String::new();
    for seg in segments {
        match seg {
            Segment::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Segment::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// Byte offset of the key (or array element) that `segments` names.
fn locate(table: &DeTable<'_>, segments: &[Segment]) -> Option<usize> {
    let (first, rest) = segments.split_first()?;
    let Segment::Key(key) = first else {
        return None;
    };
    let (k, v) = table.iter().find(|(k, _)| k.get_ref().as_ref() == key)?;
    if rest.is_empty() {
        return Some(k.span().start);
    }
    locate_value(v, rest).or(Some(k.span().start))
}

fn locate_value(value: &Spanned<DeValue<'_>>, segments: &[Segment]) -> Option<usize> {
    match (value.get_ref(), segments.first()) {
        (_, None) => Some(value.span().start),
        (DeValue::Table(t), Some(Segment::Key(_))) => locate(t, segments),
        (DeValue::Array(items), Some(Segment::Index(i))) => {
            let item = items.get(*i)?;
            locate_value(item, &segments[1..]).or(Some(item.span().start))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct Inner {
        a: u32,
    }
    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct Outer {
        #[serde(default)]
        inner: Option<Inner>,
        #[serde(default)]
        item: Vec<Inner>,
        name: Option<Spanned<String>>,
    }

    fn src(text: &str) -> SourceText {
        SourceText::new(Path::new("t.toml"), text.to_string())
    }

    #[test]
    fn every_unknown_key_is_reported_with_its_line() {
        let s = src(
            "name = \"x\"\nbogus = 1\n[inner]\na = 1\nb = 2\n[[item]]\na = 1\n[[item]]\na = 2\nzz = 3\n",
        );
        let (_, err) = s.parse_toml::<Outer>().unwrap();
        let lines: Vec<_> = err.iter().map(|d| (d.line, d.message.clone())).collect();
        assert_eq!(
            lines,
            vec![
                (2, "unknown key `bogus`".to_string()),
                (5, "unknown key `inner.b`".to_string()),
                (10, "unknown key `item[1].zz`".to_string()),
            ]
        );
    }

    #[test]
    fn type_errors_name_their_line_and_do_not_hide_the_other_tables() {
        let s = src(
            "name = \"x\"\n[inner]\na = \"not a number\"\n[[item]]\na = 1\nzz = 1\n[[item]]\na = false\n",
        );
        // The value comes back (the bad parts set aside) with every problem:
        // both type errors, and the unknown key in a table without one.
        let (_, problems) = s.parse_toml::<Outer>().unwrap();
        let lines: Vec<_> = problems
            .iter()
            .map(|d| (d.line, d.message.clone()))
            .collect();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert_eq!(lines[0].0, 3);
        assert!(lines[0].1.contains("invalid type"), "{lines:?}");
        assert_eq!(lines[1], (6, "unknown key `item[0].zz`".to_string()));
        assert_eq!(lines[2].0, 8);
    }

    #[test]
    fn spans_survive_the_unknown_key_collector() {
        let s = src("\n\nname = \"x\"\n");
        let (o, unknown) = s.parse_toml::<Outer>().unwrap();
        assert!(unknown.is_empty());
        let name = o.name.unwrap();
        assert_eq!(name.get_ref(), "x");
        assert_eq!(s.line_col(name.span().start), (3, 8));
        assert_eq!(s.line_col(0), (1, 1));
        assert_eq!(s.line_col(999), (4, 1));
    }
}
