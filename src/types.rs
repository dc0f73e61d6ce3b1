//! Small types that carry meaning: mixing up an account id with a source
//! name, or a day with a count, should not compile.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                String::schema()
            }
        }

        impl utoipa::ToSchema for $name {}

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                $name(s.to_string())
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                $name(s)
            }
        }
    };
}

string_id!(
    /// A customer account's id, as written in the accounts file.
    AccountId
);
string_id!(
    /// A configured source's name (`[[source]] name = ...`, or the `source`
    /// field of imported events).
    SourceName
);
string_id!(
    /// What an activity is: `post`, `ticket`, `delivered`, `open`, ...
    Kind
);

/// A calendar day, stored as days since 1970-01-01.
///
/// Days are what lull counts in: every activity lands in the day its
/// timestamp falls on in the configured time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Day(pub i32);

const EPOCH_DAYS_FROM_CE: i32 = 719_163;

impl Day {
    pub fn from_date(date: NaiveDate) -> Day {
        Day(date.num_days_from_ce() - EPOCH_DAYS_FROM_CE)
    }

    pub fn date(self) -> NaiveDate {
        NaiveDate::from_num_days_from_ce_opt(self.0 + EPOCH_DAYS_FROM_CE).unwrap_or(NaiveDate::MIN)
    }

    /// The day `at` falls on in time zone `tz`.
    pub fn of(at: DateTime<Utc>, tz: Tz) -> Day {
        if tz == Tz::UTC {
            // Fast path: no zone lookup for the common case.
            Day(at.timestamp().div_euclid(86_400) as i32)
        } else {
            Day::from_date(tz.from_utc_datetime(&at.naive_utc()).date_naive())
        }
    }

    /// Today in time zone `tz`.
    pub fn today(tz: Tz) -> Day {
        Day::of(Utc::now(), tz)
    }

    pub fn plus(self, days: i32) -> Day {
        Day(self.0 + days)
    }

    /// 0 = Monday ... 6 = Sunday.
    pub fn weekday(self) -> u32 {
        self.date().weekday().num_days_from_monday()
    }

    /// Big-endian bytes that sort in time order, for store keys.
    pub fn to_key(self) -> [u8; 4] {
        ((self.0 as u32) ^ 0x8000_0000).to_be_bytes()
    }

    pub fn from_key(bytes: [u8; 4]) -> Day {
        Day((u32::from_be_bytes(bytes) ^ 0x8000_0000) as i32)
    }
}

impl fmt::Display for Day {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.date().format("%Y-%m-%d"))
    }
}

impl FromStr for Day {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .map(Day::from_date)
            .map_err(|e| format!("`{s}` is not a date of the form YYYY-MM-DD ({e})"))
    }
}

impl utoipa::PartialSchema for Day {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Date)))
            .description(Some("A calendar day, YYYY-MM-DD"))
            .into()
    }
}

impl utoipa::ToSchema for Day {}

impl Serialize for Day {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Day {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_round_trips_through_text_and_keys() {
        for s in ["1970-01-01", "1969-12-31", "2026-03-02", "2100-02-28"] {
            let d: Day = s.parse().unwrap();
            assert_eq!(d.to_string(), s);
            assert_eq!(Day::from_key(d.to_key()), d);
        }
        let a: Day = "1969-12-31".parse().unwrap();
        let b: Day = "1970-01-01".parse().unwrap();
        assert!(a.to_key() < b.to_key(), "keys must sort in time order");
    }

    #[test]
    fn day_follows_the_configured_time_zone() {
        let at: DateTime<Utc> = "2026-03-02T23:30:00Z".parse().unwrap();
        assert_eq!(Day::of(at, Tz::UTC).to_string(), "2026-03-02");
        assert_eq!(
            Day::of(at, chrono_tz::Europe::Berlin).to_string(),
            "2026-03-03"
        );
        assert_eq!(
            Day::of(at, chrono_tz::America::New_York).to_string(),
            "2026-03-02"
        );
        let before_epoch: DateTime<Utc> = "1969-12-31T12:00:00Z".parse().unwrap();
        assert_eq!(Day::of(before_epoch, Tz::UTC).to_string(), "1969-12-31");
    }
}
