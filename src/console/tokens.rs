//! Signed, expiring tokens: console sessions, sign-in links and the action
//! links in alert e-mails. A token is `payload.signature`, both base64url:
//! the payload is JSON claims, the signature an HMAC-SHA256 over a purpose
//! and the payload with the store's signing key — a sign-in link is never
//! accepted as a session, nor a "useful" link for account A as anything
//! else.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::types::Day;

/// What a link in an alert e-mail does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Show the account's page.
    Open,
    /// Snooze it for [`super::config::EMAIL_SNOOZE_DAYS`] days.
    Snooze,
    /// Feedback on the notice.
    Useful,
    FalseAlarm,
    AlreadyKnew,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Open => "open",
            Action::Snooze => "snooze",
            Action::Useful => "useful",
            Action::FalseAlarm => "false_alarm",
            Action::AlreadyKnew => "already_knew",
        }
    }

    /// What the confirmation page offers.
    pub fn describe(self) -> &'static str {
        match self {
            Action::Open => "Open the account",
            Action::Snooze => "Snooze the account for 30 days",
            Action::Useful => "Mark this alert as useful",
            Action::FalseAlarm => "Mark this alert as a false alarm",
            Action::AlreadyKnew => "Mark this alert as something you already knew",
        }
    }

    /// The feedback verdict of a feedback action.
    pub fn verdict(self) -> Option<&'static str> {
        match self {
            Action::Useful => Some("useful"),
            Action::FalseAlarm => Some("false_alarm"),
            Action::AlreadyKnew => Some("already_knew"),
            _ => None,
        }
    }
}

/// An e-mail link's claims: one account, one action, one notice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionClaims {
    pub account: String,
    pub action: Action,
    /// The notice (day, kind) the link came with.
    pub day: Day,
    pub kind: String,
    /// Who the e-mail went to (recorded as who acted).
    pub to: String,
    pub exp: i64,
    /// Makes the link single-use.
    pub nonce: String,
}

/// A chart link's claims: one account's chart as of one day, for chat
/// messages (Slack and Teams fetch images anonymously). Showing it changes
/// nothing, so it is not single-use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChartClaims {
    pub account: String,
    pub day: Day,
    /// Where the chart marks the start of the silence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Day>,
    pub exp: i64,
}

/// A sign-in link's claims.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoginClaims {
    /// An e-mail address, or `token:NAME` for a link an API token asked for.
    pub email: String,
    pub admin: bool,
    pub exp: i64,
    pub nonce: String,
}

/// A console session's claims (in its cookie).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionClaims {
    /// An e-mail address, or `token:NAME` for a session from an API token.
    pub who: String,
    pub admin: bool,
    pub exp: i64,
    /// Every form of the session carries it.
    pub csrf: String,
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the link is not valid (damaged, or not made by this lull)")]
    Invalid,
    #[error("the link has expired")]
    Expired,
}

/// Signs and checks tokens with the store's key.
#[derive(Clone)]
pub struct Signer {
    key: [u8; 32],
}

impl Signer {
    pub fn new(key: [u8; 32]) -> Signer {
        Signer { key }
    }

    fn mac(&self, purpose: &str, payload: &str) -> Hmac<Sha256> {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
        m.update(purpose.as_bytes());
        m.update(b".");
        m.update(payload.as_bytes());
        m
    }

    /// A value derived from `data` that only this key makes (the CSRF
    /// token of a proxy user's session).
    pub fn tag(&self, purpose: &str, data: &str) -> String {
        B64.encode(self.mac(purpose, data).finalize().into_bytes())
    }

    pub fn sign<T: Serialize>(&self, purpose: &str, claims: &T) -> String {
        let payload = B64.encode(serde_json::to_vec(claims).unwrap_or_default());
        let sig = B64.encode(self.mac(purpose, &payload).finalize().into_bytes());
        format!("{payload}.{sig}")
    }

    /// The claims of a token signed for `purpose`, if it is valid and
    /// `exp` (seconds since the epoch) has not passed at `now`.
    pub fn verify<T: DeserializeOwned + Expiring>(
        &self,
        purpose: &str,
        token: &str,
        now: i64,
    ) -> Result<T, TokenError> {
        let (payload, sig) = token.split_once('.').ok_or(TokenError::Invalid)?;
        let sig = B64.decode(sig).map_err(|_| TokenError::Invalid)?;
        self.mac(purpose, payload)
            .verify_slice(&sig)
            .map_err(|_| TokenError::Invalid)?;
        let bytes = B64.decode(payload).map_err(|_| TokenError::Invalid)?;
        let claims: T = serde_json::from_slice(&bytes).map_err(|_| TokenError::Invalid)?;
        if claims.exp() < now {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

/// Claims that expire.
pub trait Expiring {
    fn exp(&self) -> i64;
}

impl Expiring for ActionClaims {
    fn exp(&self) -> i64 {
        self.exp
    }
}
impl Expiring for ChartClaims {
    fn exp(&self) -> i64 {
        self.exp
    }
}
impl Expiring for LoginClaims {
    fn exp(&self) -> i64 {
        self.exp
    }
}
impl Expiring for SessionClaims {
    fn exp(&self) -> i64 {
        self.exp
    }
}

/// A fresh random value (nonces, CSRF tokens).
pub fn random_token() -> String {
    let mut b = [0u8; 18];
    // Without randomness nothing else lull does is safe either.
    let _ = getrandom::fill(&mut b);
    B64.encode(b)
}

/// Purposes: a token made for one is refused for any other.
pub const ACTION: &str = "lull-action-v1";
pub const CHART: &str = "lull-chart-v1";
pub const LOGIN: &str = "lull-login-v1";
pub const SESSION: &str = "lull-session-v1";

/// The links an alert e-mail carries for one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountLinks {
    pub open: String,
    pub snooze: String,
    pub useful: String,
    pub false_alarm: String,
}

/// Makes signed links to the console for alert e-mails.
#[derive(Clone)]
pub struct Links {
    pub base: url::Url,
    signer: Signer,
    /// How long a link works.
    pub valid: chrono::Duration,
}

impl Links {
    pub fn new(base: url::Url, signer: Signer, days: u32) -> Links {
        Links {
            base,
            signer,
            valid: chrono::Duration::days(i64::from(days)),
        }
    }

    /// The links of an account's notice (`day`, `kind`) sent to `to`.
    /// A link to an account's weekly chart as of `day` (a PNG), valid as
    /// long as the action links.
    pub fn chart(
        &self,
        account: &str,
        day: Day,
        since: Option<Day>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> String {
        let claims = ChartClaims {
            account: account.to_string(),
            day,
            since,
            exp: (now + self.valid).timestamp(),
        };
        let token = self.signer.sign(CHART, &claims);
        let mut u = self.base.clone();
        u.set_path(&format!(
            "{}/c/chart/{token}",
            self.base.path().trim_end_matches('/')
        ));
        u.to_string()
    }

    pub fn for_notice(
        &self,
        account: &str,
        day: Day,
        kind: &str,
        to: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> AccountLinks {
        let link = |action: Action| {
            let claims = ActionClaims {
                account: account.to_string(),
                action,
                day,
                kind: kind.to_string(),
                to: to.to_string(),
                exp: (now + self.valid).timestamp(),
                nonce: random_token(),
            };
            let token = self.signer.sign(ACTION, &claims);
            let mut u = self.base.clone();
            let path = format!("{}/c/act/{token}", self.base.path().trim_end_matches('/'));
            u.set_path(&path);
            u.to_string()
        };
        AccountLinks {
            open: link(Action::Open),
            snooze: link(Action::Snooze),
            useful: link(Action::Useful),
            false_alarm: link(Action::FalseAlarm),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_bound_to_their_purpose_and_expire() {
        let s = Signer::new([7; 32]);
        let c = LoginClaims {
            email: "jane@vendor.example".into(),
            admin: false,
            exp: 1000,
            nonce: "n".into(),
        };
        let t = s.sign(LOGIN, &c);
        assert_eq!(s.verify::<LoginClaims>(LOGIN, &t, 999), Ok(c.clone()));
        assert_eq!(
            s.verify::<LoginClaims>(LOGIN, &t, 1001),
            Err(TokenError::Expired)
        );
        assert_eq!(
            s.verify::<LoginClaims>(SESSION, &t, 999),
            Err(TokenError::Invalid)
        );
        // Another key, or a changed payload, is refused.
        assert_eq!(
            Signer::new([8; 32]).verify::<LoginClaims>(LOGIN, &t, 999),
            Err(TokenError::Invalid)
        );
        let (p, sig) = t.split_once('.').unwrap();
        let forged = B64.encode(
            serde_json::to_vec(&LoginClaims {
                email: "boss@vendor.example".into(),
                ..c
            })
            .unwrap(),
        );
        assert_ne!(forged, p);
        assert_eq!(
            s.verify::<LoginClaims>(LOGIN, &format!("{forged}.{sig}"), 999),
            Err(TokenError::Invalid)
        );
    }
}
