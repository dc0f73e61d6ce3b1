//! Coverage: the days lull has data for, per source, as ranges.
//!
//! A day without coverage is unknown, never zero (DESIGN invariant 2).
//! Coverage is kept as maximal runs of days per source and per origin (a
//! poll read it, or an import brought it), key `R` · source · 0 · origin ·
//! first day → last day, so what it costs depends on how many gaps a
//! source has, not on how many days lie between its first and last day.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{SEP, StoreError, check_name, day_key};
use crate::types::{Day, SourceName};

pub(super) const P_COVERAGE: u8 = b'R';

/// Who established that a day is covered.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// A successful poll read the day completely.
    Poll,
    /// An import file's events spanned the day.
    Import,
}

impl Origin {
    pub(super) fn byte(self) -> u8 {
        match self {
            Origin::Poll => b'p',
            Origin::Import => b'i',
        }
    }

    pub(super) fn from_byte(b: u8) -> Option<Origin> {
        match b {
            b'p' => Some(Origin::Poll),
            b'i' => Some(Origin::Import),
            _ => None,
        }
    }
}

/// A run of covered days, first to last inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span {
    pub first: Day,
    pub last: Day,
}

/// `R` · source · 0 · origin: the key prefix of one source's ranges.
pub(super) fn prefix(source: &str, origin: Option<Origin>) -> Result<Vec<u8>, StoreError> {
    let s = check_name(source)?;
    let mut k = Vec::with_capacity(s.len() + 3);
    k.push(P_COVERAGE);
    k.extend_from_slice(s);
    k.push(SEP);
    if let Some(o) = origin {
        k.push(o.byte());
    }
    Ok(k)
}

pub(super) fn key(source: &str, origin: Origin, first: Day) -> Result<Vec<u8>, StoreError> {
    let mut k = prefix(source, Some(origin))?;
    k.extend_from_slice(&first.to_key());
    Ok(k)
}

/// Decodes one stored range: (source, origin, span).
pub(super) fn decode(k: &[u8], v: &[u8]) -> Option<(String, Origin, Span)> {
    let rest = k.strip_prefix(&[P_COVERAGE])?;
    let sep = rest.iter().position(|&b| b == SEP)?;
    let source = std::str::from_utf8(&rest[..sep]).ok()?.to_string();
    let after = &rest[sep + 1..];
    let origin = Origin::from_byte(*after.first()?)?;
    let first = day_key(after.get(1..5)?)?;
    let last = day_key(v)?;
    (after.len() == 5 && first <= last).then_some((source, origin, Span { first, last }))
}

/// Merges spans that overlap or touch into maximal runs, in order.
pub fn merge(mut spans: Vec<Span>) -> Vec<Span> {
    spans.sort();
    let mut out: Vec<Span> = Vec::with_capacity(spans.len());
    for s in spans {
        match out.last_mut() {
            Some(l) if s.first.0 <= l.last.0.saturating_add(1) => l.last = l.last.max(s.last),
            _ => out.push(s),
        }
    }
    out
}

/// The writes that add `new` spans to what `tree` holds: stored ranges
/// they overlap or touch are read once, merged with them, and replaced.
pub(super) fn add(
    tree: &sled::Tree,
    new: &[(SourceName, Span, Origin)],
    batch: &mut sled::Batch,
) -> Result<(), StoreError> {
    let mut groups: BTreeMap<(&str, Origin), Vec<Span>> = BTreeMap::new();
    for (source, span, origin) in new {
        groups
            .entry((source.as_str(), *origin))
            .or_default()
            .push(*span);
    }
    for ((source, origin), spans) in groups {
        let spans = merge(spans);
        let (Some(lo), Some(hi)) = (spans.first(), spans.last()) else {
            continue;
        };
        let (lo, hi) = (lo.first.plus(-1), hi.last.plus(1));
        let p = prefix(source, Some(origin))?;
        // Stored ranges touching [lo, hi]: the one starting at or before
        // `lo` (it may reach into it), then every one starting up to `hi`.
        let mut stored: Vec<(Vec<u8>, Span)> = Vec::new();
        let start_key = key(source, origin, lo)?;
        if let Some(r) = tree.range(p.clone()..=start_key.clone()).next_back() {
            let (k, v) = r.map_err(super::sled_err("reading coverage"))?;
            if let Some((_, _, s)) = decode(&k, &v)
                && s.last >= lo
            {
                stored.push((k.to_vec(), s));
            }
        }
        let end_key = key(source, origin, hi)?;
        for r in tree.range(start_key..=end_key) {
            let (k, v) = r.map_err(super::sled_err("reading coverage"))?;
            let Some((_, _, s)) = decode(&k, &v) else {
                return Err(StoreError::Damaged {
                    what: "a coverage range".into(),
                    key: super::show_key(&k),
                });
            };
            if !stored.iter().any(|(sk, _)| sk.as_slice() == k.as_ref()) {
                stored.push((k.to_vec(), s));
            }
        }
        let mut all: Vec<Span> = stored.iter().map(|(_, s)| *s).collect();
        all.extend(spans);
        let merged = merge(all);
        for (k, s) in &stored {
            if !merged.contains(s) {
                batch.remove(k.as_slice());
            }
        }
        for s in merged {
            if !stored.iter().any(|(_, x)| *x == s) {
                batch.insert(key(source, origin, s.first)?, &s.last.to_key());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_merge_when_they_overlap_or_touch() {
        let s = |a, b| Span {
            first: Day(a),
            last: Day(b),
        };
        assert_eq!(
            merge(vec![s(5, 7), s(1, 2), s(3, 3), s(9, 12), s(10, 11)]),
            vec![s(1, 3), s(5, 7), s(9, 12)]
        );
        assert_eq!(merge(vec![]), vec![]);
    }
}
