//! The one SMTP transport (lettre over tokio and rustls), built once from
//! `[smtp]`, and what its errors mean for delivery.

use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::config::{SmtpConfig, TlsMode};
use crate::secret::Secret;

/// Why the transport could not be built (config that looked fine but is
/// not usable: a CA file that is not PEM, a missing password variable).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("[smtp] (line {line}): {message}")]
    Config { line: usize, message: String },
}

/// What a failed send means for the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// Try again later: the relay is unreachable, refused TLS, or
    /// answered 4xx. `connection` says the whole relay is the problem (no
    /// other message will get through now either).
    Transient { message: String, connection: bool },
    /// No answer within the time limit: the relay may or may not have
    /// accepted the message. It stays queued; the resend carries the same
    /// Message-ID, so the recipient's mail system can tell a repeat.
    Unknown(String),
    /// The relay rejected the message for good (5xx).
    Permanent(String),
    /// The receiver asks to slow down (HTTP 429, or it is failing: 408,
    /// 5xx): nothing more goes to it until `after` (its `Retry-After`) or
    /// the next backoff.
    Throttled {
        message: String,
        after: Option<std::time::Duration>,
    },
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Transient { message, .. }
            | SendError::Throttled { message, .. }
            | SendError::Permanent(message)
            | SendError::Unknown(message) => f.write_str(message),
        }
    }
}

/// The relay, ready to send.
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    /// `host:port (tls)`, for messages and logs.
    pub describe: String,
    /// The most one message may take: connect, TLS, AUTH and DATA, each
    /// within the configured timeout.
    whole_send: std::time::Duration,
}

impl Mailer {
    /// Builds the transport (no connection is made until the first send).
    pub fn new(cfg: &SmtpConfig) -> Result<Mailer, SetupError> {
        let fail = |message: String| SetupError::Config {
            line: cfg.line,
            message,
        };
        let mut builder = match cfg.tls {
            TlsMode::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&cfg.host),
            TlsMode::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&cfg.host)
                .map_err(|e| fail(format!("TLS setup for {}: {e}", cfg.host)))?,
            TlsMode::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&cfg.host)
                .map_err(|e| fail(format!("TLS setup for {}: {e}", cfg.host)))?,
        }
        .port(cfg.port)
        .timeout(Some(cfg.timeout));
        if let Some(ca) = &cfg.ca_file {
            let pem = std::fs::read(ca)
                .map_err(|e| fail(format!("cannot read ca_file {}: {e}", ca.display())))?;
            let cert = Certificate::from_pem(&pem).map_err(|e| {
                fail(format!(
                    "ca_file {} is not a PEM certificate: {e}",
                    ca.display()
                ))
            })?;
            let params = TlsParameters::builder(cfg.host.clone())
                .add_root_certificate(cert)
                .build_rustls()
                .map_err(|e| fail(format!("TLS setup with ca_file {}: {e}", ca.display())))?;
            builder = builder.tls(match cfg.tls {
                TlsMode::Tls => Tls::Wrapper(params),
                _ => Tls::Required(params),
            });
        }
        if let (Some(user), Some(var)) = (&cfg.username, &cfg.password_env) {
            let password = Secret::from_env(var).map_err(|e| fail(e.to_string()))?;
            builder = builder.credentials(Credentials::new(
                user.clone(),
                password.expose().to_string(),
            ));
        }
        Ok(Mailer {
            transport: builder.build(),
            describe: format!("{}:{} ({})", cfg.host, cfg.port, cfg.tls.as_str()),
            whole_send: cfg.timeout * 4,
        })
    }

    /// Sends one message on a connection of its own (closed afterwards,
    /// and dropped with the send if it is cut off); `Ok` means the relay
    /// accepted it (250 after DATA).
    pub async fn send(&self, message: lettre::Message) -> Result<(), SendError> {
        // lettre's timeout covers each socket operation, not a relay that
        // keeps a TLS session open and never answers; bound the whole send.
        let sent = tokio::time::timeout(self.whole_send, self.transport.send(message)).await;
        let Ok(sent) = sent else {
            return Err(SendError::Unknown(format!(
                "SMTP {}: no answer within {} s — the relay may have accepted it (outcome unknown)",
                self.describe,
                self.whole_send.as_secs()
            )));
        };
        match sent {
            Ok(_) => Ok(()),
            Err(e) => {
                let mut message = format!("SMTP {}: {}", self.describe, chain(&e));
                let code = e.status().map(|c| c.to_string()).unwrap_or_default();
                if e.is_permanent() && code.as_bytes().get(1) == Some(&b'3') {
                    // 53x: authentication or security (535 bad credentials,
                    // 530 auth required). The relay's configuration, not
                    // this message, is wrong: keep everything queued.
                    message.push_str(" (check [smtp] username and the password in password_env)");
                    Err(SendError::Transient {
                        message,
                        connection: true,
                    })
                } else if e.is_permanent() {
                    Err(SendError::Permanent(message))
                } else if e.is_timeout() {
                    // A step timed out; if it was the answer to DATA, the
                    // relay may have the message.
                    Err(SendError::Unknown(format!("{message} (outcome unknown)")))
                } else {
                    let connection = e.status().is_none();
                    Err(SendError::Transient {
                        message,
                        connection,
                    })
                }
            }
        }
    }
}

/// An error with its causes, "a: b: c" (lettre keeps the useful part, such
/// as "connection refused" or a certificate problem, in the sources).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}
