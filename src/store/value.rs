//! Values whose shape their owner defines (an account's detection state, a
//! snooze, feedback on a notice, a delivery record) and that the store
//! keeps under keys of its own. The store reads and writes them typed: it
//! encodes them (as JSON, so a backup can carry them as they are), and a
//! value that no longer decodes is a [`StoreError::Damaged`] naming what it
//! is, whose it is and its key, never a value silently left out.

use std::fmt::Display;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{StoreError, show_key};

/// A value the store keeps for its owner.
pub trait Value: Serialize + DeserializeOwned {
    /// What one value is called in errors, e.g. "the detection state".
    const WHAT: &'static str;
}

/// Tests keep plain JSON.
#[cfg(test)]
impl Value for serde_json::Value {
    const WHAT: &'static str = "a test value";
}

/// Decodes the value stored under `key`; `whose` says in the error whose
/// it is ("of account acme").
pub(super) fn decode<V: Value>(
    key: &[u8],
    bytes: &[u8],
    whose: impl Display,
) -> Result<V, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Damaged {
        what: format!("{} {whose} ({e})", V::WHAT),
        key: show_key(key),
    })
}

/// Encodes a value for storing.
pub(super) fn encode<V: Value>(value: &V) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Encode {
        what: V::WHAT,
        detail: e.to_string(),
    })
}
