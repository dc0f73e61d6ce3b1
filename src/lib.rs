//! lull: tells a Customer Success Manager when one of their accounts has
//! gone quiet.
//!
//! Data flows one way: sources → identity ([`accounts`]) → [`store`] →
//! detector → alerts. The binary (`src/main.rs`) is a thin shell over this
//! library: it parses the command line ([`cli`]) and hands it to [`cmd`].

pub mod accounts;
pub mod alert;
pub mod api;
pub mod app;
pub mod backtest;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod console;
pub mod detect;
pub mod diag;
pub mod http;
pub mod import;
pub mod limits;
pub mod logging;
pub mod report;
pub mod schedule;
pub mod score;
pub mod secret;
pub mod service;
pub mod sources;
pub mod store;
pub mod summary;
pub mod types;
