//! Connector kinds. Each kind is one module that owns everything lull
//! knows about it — its keys with their defaults and checks, its
//! credentials, its default rate, its row of the README's Sources table,
//! the activity kinds it stores and its fuzz entry — and hands it over as
//! one [`Kind`] value. The registry ([`super::kinds`]) is one list of them;
//! nothing else in lull matches on a kind.

use std::fmt;
use std::sync::Arc;

use toml::Spanned;
use url::Url;

use super::Connector;
use super::http::{Auth, SourceError};
use crate::diag::{Diagnostic, SourceText};
use crate::limits::Limits;
use crate::secret::Secret;

/// One connector kind.
pub struct Kind {
    /// The `kind = "…"` of its `[[source]]` tables.
    pub name: &'static str,
    /// Requests per minute when the config does not say, from the
    /// service's documented limits.
    pub requests_per_minute: u32,
    /// Keys it accepts besides the ones every source has.
    pub keys: &'static [&'static str],
    /// Its row of the README's Sources table.
    pub docs: Docs,
    /// The activity kinds it stores, each with how an alert names a count
    /// of them ("forum posts").
    pub activities: &'static [(&'static str, &'static str)],
    /// Checks its keys (problems go to `keys`) and returns the settings a
    /// source of this kind polls with.
    pub configure: fn(&mut Keys<'_>) -> Option<Arc<dyn Settings>>,
    /// Decodes `data` as every response body its connector reads (fuzz/).
    pub fuzz: fn(&[u8]),
}

impl Kind {
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The Markdown row the README's Sources table carries for this kind.
    pub fn docs_row(&self) -> String {
        let d = &self.docs;
        format!(
            "| `{}` | {} | {} | {} | {} |",
            self.name, d.keys, d.reads, d.credentials, d.rate
        )
    }

    /// How an alert names a count of `activity`, if this kind stores it.
    pub(super) fn words_for(&self, activity: &str) -> Option<&'static str> {
        self.activities
            .iter()
            .find(|(a, _)| *a == activity)
            .map(|(_, words)| *words)
    }
}

impl fmt::Debug for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Kind({})", self.name)
    }
}

impl PartialEq for Kind {
    fn eq(&self, other: &Kind) -> bool {
        self.name == other.name
    }
}

/// A kind's row of the README's Sources table (a test keeps the README
/// equal to these).
pub struct Docs {
    pub keys: &'static str,
    pub reads: &'static str,
    pub credentials: &'static str,
    pub rate: &'static str,
}

/// A configured source's own settings, as its kind checked them.
pub trait Settings: fmt::Debug + Send + Sync {
    /// Environment variables it reads its secrets from.
    fn env_vars(&self) -> Vec<&str>;
    /// Reads the secrets and builds the connector with its credentials.
    fn connect(&self, cx: &Connect<'_>) -> Result<Connection, SourceError>;
}

/// What a kind gets to build its connector.
pub struct Connect<'a> {
    /// The source's `url`.
    pub base: &'a Url,
    pub limits: &'a Limits,
}

/// A connector with the credentials its requests carry.
pub struct Connection {
    pub auth: Auth,
    pub connector: Box<dyn Connector>,
}

/// A secret from the environment variable `var` (a missing one is an
/// error naming the variable).
pub fn secret(var: &str) -> Result<Secret, SourceError> {
    Ok(Secret::from_env(var)?)
}

/// Could `s` name an environment variable (letters, digits, `_`)? A value
/// that cannot is most likely the secret itself pasted into the config.
pub fn is_env_var_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A `[[source]]` table's kind-specific keys, typed on request; every
/// mistake is reported with its line and the table is then not used.
pub struct Keys<'a> {
    source: &'a str,
    /// Where the table's `name` is (for "needs `key`" messages).
    name_at: usize,
    values: &'a [(String, Spanned<toml::Value>)],
    src: &'a SourceText,
    problems: &'a mut Vec<Diagnostic>,
    failed: bool,
}

impl<'a> Keys<'a> {
    pub(crate) fn new(
        source: &'a str,
        name_at: usize,
        values: &'a [(String, Spanned<toml::Value>)],
        src: &'a SourceText,
        problems: &'a mut Vec<Diagnostic>,
    ) -> Keys<'a> {
        Keys {
            source,
            name_at,
            values,
            src,
            problems,
            failed: false,
        }
    }

    /// The source's name, for messages.
    pub fn source(&self) -> &str {
        self.source
    }

    /// Did any check fail?
    pub fn failed(&self) -> bool {
        self.failed
    }

    fn get(&self, key: &str) -> Option<&'a Spanned<toml::Value>> {
        self.values.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn is_set(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Reports `message` at `key`'s value, or at the table's name when the
    /// key is not set.
    pub fn problem(&mut self, key: &str, message: impl Into<String>) {
        let at = self
            .get(key)
            .map(|v| v.span().start)
            .unwrap_or(self.name_at);
        self.problems.push(self.src.at(at, message));
        self.failed = true;
    }

    fn typed<T>(
        &mut self,
        key: &str,
        what: &str,
        f: impl FnOnce(&toml::Value) -> Option<T>,
    ) -> Option<T> {
        let v = self.get(key)?;
        match f(v.get_ref()) {
            Some(t) => Some(t),
            None => {
                self.problem(key, format!("`{key}` must be {what}"));
                None
            }
        }
    }

    /// A text value.
    pub fn string(&mut self, key: &str) -> Option<String> {
        self.typed(key, "text in quotes", |v| v.as_str().map(str::to_string))
    }

    pub fn bool(&mut self, key: &str) -> Option<bool> {
        self.typed(key, "true or false", toml::Value::as_bool)
    }

    pub fn u32(&mut self, key: &str) -> Option<u32> {
        self.typed(key, "a whole number (0 or more)", |v| {
            v.as_integer().and_then(|i| u32::try_from(i).ok())
        })
    }

    pub fn u64(&mut self, key: &str) -> Option<u64> {
        self.typed(key, "a whole number (0 or more)", |v| {
            v.as_integer().and_then(|i| u64::try_from(i).ok())
        })
    }

    /// A list of text values.
    pub fn strings(&mut self, key: &str) -> Option<Vec<String>> {
        self.typed(key, "a list of text values, e.g. [\"a\", \"b\"]", |v| {
            v.as_array()?
                .iter()
                .map(|x| x.as_str().map(str::to_string))
                .collect()
        })
    }

    /// A count of at least `min`, or `default` when not set.
    pub fn at_least(&mut self, key: &str, min: u32, default: u32) -> Option<u32> {
        if !self.is_set(key) {
            return Some(default);
        }
        let v = self.u32(key)?;
        if v < min {
            self.problem(key, format!("`{key}` must be at least {min}"));
            return None;
        }
        Some(v)
    }

    /// A required text value; `hint` says what it is.
    pub fn required(&mut self, key: &str, hint: &str) -> Option<String> {
        if !self.is_set(key) {
            let msg = format!("source `{}` needs `{key}` ({hint})", self.source);
            self.problem(key, msg);
            return None;
        }
        self.string(key)
    }

    /// The name of the environment variable holding a secret, required.
    pub fn env(&mut self, key: &str) -> Option<String> {
        if !self.is_set(key) {
            let msg = format!(
                "source `{}` needs `{key}`: the name of the environment variable that holds its secret",
                self.source
            );
            self.problem(key, msg);
            return None;
        }
        self.env_optional(key)
    }

    /// The name of the environment variable holding a secret, if set.
    pub fn env_optional(&mut self, key: &str) -> Option<String> {
        let s = self.string(key)?;
        if !is_env_var_name(&s) {
            self.problem(
                key,
                format!(
                    "`{key}` names an environment variable (letters, digits, _), not the secret itself"
                ),
            );
            return None;
        }
        Some(s)
    }
}
