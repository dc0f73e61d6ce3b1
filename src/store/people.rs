//! Who acted: per account channel, each person (the handle or address an
//! event came with) and the days they were active. Detection reads it for
//! *breadth* — how many of an account's usual people are still around —
//! which counts alone do not carry.
//!
//! One value per channel (`h` · account · source · kind), not a row per
//! person-day: each person's name once, then their active days as
//! differences in variable-length integers (one or two bytes a day). A day
//! recorded twice is one day, so re-polls and re-imports change nothing.

use std::collections::{BTreeMap, BTreeSet};

use super::activity::{channel_key, damaged, decode_series_key};
use super::varint::{get_day, get_varint, put_day, put_varint};
use super::{Accounts, P_PEOPLE, SEP, Store, StoreError, check_name};
use crate::types::{AccountId, Day, Kind, SourceName};

/// One channel's people: name → active days (sorted).
pub type People = BTreeMap<String, BTreeSet<Day>>;

/// The people of one account channel, as stored: checked when read, and
/// decoded only when asked (detection walks the bytes without allocating).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelPeople {
    pub account: AccountId,
    pub source: SourceName,
    pub kind: Kind,
    value: sled::IVec,
}

impl ChannelPeople {
    /// A channel's people from decoded form (tests, tools).
    pub fn new(account: AccountId, source: SourceName, kind: Kind, people: &People) -> Self {
        ChannelPeople {
            account,
            source,
            kind,
            value: encode(people).into(),
        }
    }

    /// Every person and their active days.
    pub fn people(&self) -> People {
        // Checked when read from the store: cannot fail here.
        decode(&self.value).unwrap_or_default()
    }

    /// Calls `f` with each (person, active day), persons in name order,
    /// days ascending, borrowing names from the stored value.
    pub fn visit<'a>(&'a self, f: impl FnMut(&'a str, Day)) {
        let _ = walk(&self.value, f);
    }
}

pub(super) fn key(account: &str, source: &str, kind: &str) -> Result<Vec<u8>, StoreError> {
    channel_key(P_PEOPLE, account, source, kind)
}

/// The stored form: person count, then per person: name length, name,
/// day count, first day (zig-zag), then each next day's distance.
pub(super) fn encode(people: &People) -> Vec<u8> {
    let mut out = Vec::new();
    put_varint(&mut out, people.len() as u64);
    for (name, days) in people {
        put_varint(&mut out, name.len() as u64);
        out.extend_from_slice(name.as_bytes());
        put_varint(&mut out, days.len() as u64);
        let mut prev: Option<i32> = None;
        for d in days {
            match prev {
                None => put_day(&mut out, *d),
                Some(p) => put_varint(&mut out, (d.0 - p) as u64),
            }
            prev = Some(d.0);
        }
    }
    out
}

/// Walks a stored value, calling `f` with each (person, day); `None` if it
/// does not decode. Allocates nothing.
fn walk<'a>(v: &'a [u8], mut f: impl FnMut(&'a str, Day)) -> Option<()> {
    let mut at = 0;
    let n = get_varint(v, &mut at)?;
    for _ in 0..n {
        let len = usize::try_from(get_varint(v, &mut at)?).ok()?;
        let name = std::str::from_utf8(v.get(at..at.checked_add(len)?)?).ok()?;
        at += len;
        let days = get_varint(v, &mut at)?;
        let mut prev: Option<i32> = None;
        for _ in 0..days {
            let d = match prev {
                None => get_day(v, &mut at)?.0,
                Some(p) => p.checked_add(i32::try_from(get_varint(v, &mut at)?).ok()?)?,
            };
            f(name, Day(d));
            prev = Some(d);
        }
    }
    (at == v.len()).then_some(())
}

pub(super) fn decode(v: &[u8]) -> Option<People> {
    let mut out = People::new();
    walk(v, |name, day| match out.get_mut(name) {
        Some(days) => {
            days.insert(day);
        }
        None => {
            out.insert(name.to_string(), BTreeSet::from([day]));
        }
    })?;
    Some(out)
}

/// Adds the (person, day)s of `new` into the stored `old` value; `None`
/// if nothing changed.
pub(super) fn merge<'n>(
    old: Option<&[u8]>,
    new: impl IntoIterator<Item = (&'n str, Day)>,
) -> Option<Option<Vec<u8>>> {
    let mut people = match old {
        Some(v) => decode(v)?,
        None => People::new(),
    };
    let mut changed = false;
    for (name, day) in new {
        changed |= match people.get_mut(name) {
            Some(days) => days.insert(day),
            None => {
                people.insert(name.to_string(), BTreeSet::from([day]));
                true
            }
        };
    }
    Some(changed.then(|| encode(&people)))
}

impl Store {
    /// The people of each of an account's channels.
    pub fn people_of(&self, account: &AccountId) -> Result<Vec<ChannelPeople>, StoreError> {
        let mut prefix = vec![P_PEOPLE];
        prefix.extend_from_slice(check_name(account.as_str())?);
        prefix.push(SEP);
        self.scan_people(prefix).collect()
    }

    /// Every channel's people, ordered by account.
    pub fn people(&self) -> impl Iterator<Item = Result<ChannelPeople, StoreError>> + '_ {
        self.people_between(Accounts::ALL)
    }

    /// [`Store::people`] of the accounts of one range.
    pub fn people_between(
        &self,
        accounts: Accounts<'_>,
    ) -> impl Iterator<Item = Result<ChannelPeople, StoreError>> + '_ {
        self.activity
            .range(accounts.keys(P_PEOPLE))
            .map(|r| self.channel_people(r))
    }

    fn scan_people(
        &self,
        prefix: Vec<u8>,
    ) -> impl Iterator<Item = Result<ChannelPeople, StoreError>> + '_ {
        self.activity
            .scan_prefix(prefix)
            .map(|r| self.channel_people(r))
    }

    fn channel_people(
        &self,
        r: sled::Result<(sled::IVec, sled::IVec)>,
    ) -> Result<ChannelPeople, StoreError> {
        let (k, v) = r.map_err(|e| self.fail("reading people", e))?;
        let (account, source, kind) = decode_series_key(&k)
            .filter(|_| walk(&v, |_, _| {}).is_some())
            .ok_or_else(|| damaged("who was active on a channel", &k))?;
        Ok(ChannelPeople {
            account,
            source,
            kind,
            value: v,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn people_round_trip_compactly_and_merge_as_sets() {
        let mut p = People::new();
        p.insert(
            "wile_e".into(),
            [Day(-5), Day(20_000), Day(20_001), Day(20_400)].into(),
        );
        p.insert("ann@acme.com".into(), [Day(20_100)].into());
        let v = encode(&p);
        assert_eq!(decode(&v), Some(p.clone()));
        // Names once, a couple of bytes a day.
        assert!(v.len() < 40, "{}", v.len());
        assert_eq!(decode(&v[..v.len() - 1]), None);
        let mut new = vec![("wile_e", Day(20_001)), ("ann@acme.com", Day(20_100))];
        assert_eq!(
            merge(Some(&v), new.clone()),
            Some(None),
            "a known day changes nothing"
        );
        new.push(("raj", Day(20_002)));
        new.push(("raj", Day(20_002)));
        let merged = merge(Some(&v), new).flatten().expect("changed");
        let merged = decode(&merged).expect("decodes");
        assert_eq!(merged.len(), 3);
        assert_eq!(merged["raj"], BTreeSet::from([Day(20_002)]));
        assert_eq!(merged["wile_e"].len(), 4);
        assert_eq!(merge(None, []), Some(None), "nothing new, nothing written");
    }
}
