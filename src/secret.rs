//! Secrets: read from the environment, never printed.

use std::fmt;

/// A secret value (API key, SMTP password). Its `Debug` and `Display` print
/// `***`, so a secret that ends up in a log line or an error message by
/// accident reveals nothing.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Reads the secret named by env var `var`.
    pub fn from_env(var: &str) -> Result<Secret, SecretError> {
        match std::env::var(var) {
            Ok(v) if !v.is_empty() => Ok(Secret(v)),
            Ok(_) => Err(SecretError::Empty(var.to_string())),
            Err(_) => Err(SecretError::Missing(var.to_string())),
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SecretError {
    #[error(
        "environment variable `{0}` is not set; export it (or put it in the service's EnvironmentFile)"
    )]
    Missing(String),
    #[error("environment variable `{0}` is empty")]
    Empty(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{:?}", Some(&s)), "Some(***)");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn missing_env_var_is_named() {
        let err = Secret::from_env("LULL_TEST_SURELY_UNSET_VAR").unwrap_err();
        assert!(err.to_string().contains("LULL_TEST_SURELY_UNSET_VAR"));
    }
}
