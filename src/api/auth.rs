//! Who may use the API: bearer tokens named in `[[http.token]]` (their
//! values from the environment), each with a role; a "local" admin token
//! the service writes next to its store for the CLI on the same machine
//! (like a database's cookie file); failed attempts limited per address.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::secret::{Secret, SecretError};
use crate::service::config::{Role, TokenConfig};

/// The name of the token the service writes for local use.
pub const LOCAL_TOKEN: &str = "local";
/// Failed attempts one address may make per minute before it is refused
/// outright (429) for the rest of the minute.
pub const FAILURES_PER_MINUTE: u32 = 10;

/// Who made a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's name (shown in logs and audit records; never the token).
    pub name: String,
    pub role: Role,
}

struct Known {
    name: String,
    role: Role,
    digest: [u8; 32],
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No `Authorization: Bearer` header.
    Missing,
    /// A token no one was given.
    Invalid,
    /// Too many failures from this address lately.
    RateLimited,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Missing => "missing",
            Refusal::Invalid => "invalid",
            Refusal::RateLimited => "rate_limited",
        }
    }
}

/// The tokens the service accepts.
pub struct Auth {
    known: Vec<Known>,
    /// Failed attempts per address: (start of its minute, count).
    failures: Mutex<HashMap<IpAddr, (Instant, u32)>>,
    limit: u32,
}

/// The window failed attempts are counted in.
const WINDOW: Duration = Duration::from_secs(60);

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Auth {
    /// The configured tokens, read from their environment variables.
    pub fn from_config(tokens: &[TokenConfig]) -> Result<Auth, SecretError> {
        let mut known = Vec::new();
        for t in tokens {
            let secret = Secret::from_env(&t.token_env)?;
            known.push(Known {
                name: t.name.clone(),
                role: t.role,
                digest: digest(secret.expose()),
            });
        }
        Ok(Auth {
            known,
            failures: Mutex::new(HashMap::new()),
            limit: FAILURES_PER_MINUTE,
        })
    }

    /// Also accepts `token` as the admin token `local`.
    pub fn with_local(mut self, token: &Secret) -> Auth {
        self.known.push(Known {
            name: LOCAL_TOKEN.to_string(),
            role: Role::Admin,
            digest: digest(token.expose()),
        });
        self
    }

    /// Checks an `Authorization` header value from `from`. Every known
    /// token is compared (in constant time), so how long it takes says
    /// nothing about which one came close.
    pub fn check(&self, header: Option<&str>, from: IpAddr) -> Result<Caller, Refusal> {
        let token = header.and_then(|h| {
            let (scheme, value) = h.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| value.trim())
        });
        let found = token.and_then(|t| {
            let d = digest(t);
            let mut hit = None;
            for k in &self.known {
                if bool::from(k.digest.ct_eq(&d)) {
                    hit = Some(Caller {
                        name: k.name.clone(),
                        role: k.role,
                    });
                }
            }
            hit
        });
        let now = Instant::now();
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if failures.len() > 10_000 {
            failures.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
        }
        let entry = failures.entry(from).or_insert((now, 0));
        if now.duration_since(entry.0) >= WINDOW {
            *entry = (now, 0);
        }
        // An address that used up its failures is refused even with a good
        // token until its minute is over: guessing must not pay off.
        if entry.1 >= self.limit {
            return Err(Refusal::RateLimited);
        }
        match (found, token) {
            (Some(c), _) => Ok(c),
            // No token is not a guess.
            (None, None) => Err(Refusal::Missing),
            (None, Some(_)) => {
                entry.1 += 1;
                Err(Refusal::Invalid)
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }
}

/// The local token's file: beside the store, readable by its owner only.
pub fn cookie_path(store: &Path) -> PathBuf {
    let mut s = store.as_os_str().to_owned();
    s.push(".cookie");
    PathBuf::from(s)
}

/// A fresh random token, written to `path` (mode 0600) for the CLI on this
/// machine.
pub fn write_cookie(path: &Path) -> std::io::Result<Secret> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let tmp = path.with_extension("cookie.tmp");
    {
        use std::io::Write;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(&tmp)?;
        f.write_all(token.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    Ok(Secret::new(token))
}

/// The local token, if the service left one.
pub fn read_cookie(path: &Path) -> Option<Secret> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .map(Secret::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Auth {
        Auth {
            known: vec![
                Known {
                    name: "reader".into(),
                    role: Role::Read,
                    digest: digest("r-token"),
                },
                Known {
                    name: "boss".into(),
                    role: Role::Admin,
                    digest: digest("a-token"),
                },
            ],
            failures: Mutex::new(HashMap::new()),
            limit: 3,
        }
    }

    #[test]
    fn tokens_are_checked_and_guessing_is_cut_off_per_address() {
        let a = auth();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!(
            a.check(Some("Bearer a-token"), ip).unwrap().role,
            Role::Admin
        );
        assert_eq!(a.check(Some("bearer r-token"), ip).unwrap().name, "reader");
        assert_eq!(a.check(None, ip), Err(Refusal::Missing));
        assert_eq!(a.check(Some("Bearer nope"), ip), Err(Refusal::Invalid));
        assert_eq!(a.check(Some("Bearer nope1"), ip), Err(Refusal::Invalid));
        assert_eq!(a.check(Some("Basic a-token"), ip), Err(Refusal::Missing));
        assert_eq!(a.check(Some("Bearer nope2"), ip), Err(Refusal::Invalid));
        // Three wrong tokens a minute: then even the right token is
        // refused from that address, not from another.
        assert_eq!(
            a.check(Some("Bearer a-token"), ip),
            Err(Refusal::RateLimited)
        );
        assert_eq!(a.check(Some("Bearer a-token"), other).unwrap().name, "boss");
    }
}
