//! Command-line definitions (clap). Dispatch lives in `cmd`.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::types::Day;

/// lull tells a Customer Success Manager when one of their customer
/// accounts has gone quiet.
#[derive(Debug, Parser)]
#[command(name = "lull", version, about, long_about = None)]
pub struct Cli {
    /// Config file [default: $LULL_CONFIG, then config/lull.toml]
    #[arg(long, global = true, env = "LULL_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Log format on stderr [default: `[service] log_format`, then text]
    /// (RUST_LOG sets the level)
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,

    /// Send the command to a running lull at URL (e.g.
    /// http://127.0.0.1:9187) instead of opening the store; the token comes
    /// from LULL_TOKEN. Without it, a store held by a running lull is
    /// reached through that lull's endpoint from the config.
    #[arg(long, global = true, env = "LULL_SERVER", value_name = "URL")]
    pub server: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate the config and accounts files; print every problem with file and line
    Check {
        /// Also say where ACCOUNT's alerts would go, tier by tier (its receivers and the route that sends them)
        #[arg(long, value_name = "ACCOUNT")]
        route: Option<String>,
    },
    /// Load activity events from JSON Lines (FILE, or - for stdin)
    Import {
        /// JSON Lines file, or - for standard input
        file: PathBuf,
        /// Events per atomic, flushed commit
        #[arg(long, default_value_t = crate::import::DEFAULT_BATCH, value_parser = clap::value_parser!(u64).range(1..))]
        batch_size: u64,
    },
    /// Run every configured source (or one) once, now, and store what it read
    Poll {
        /// Only this source (its `name` in the config)
        #[arg(long, value_name = "NAME")]
        source: Option<String>,
        /// A JSON array of per-source reports on stdout
        #[arg(long)]
        json: bool,
    },
    /// Print stored daily activity as JSON Lines (the hand-off format;
    /// `lull backup` keeps everything)
    Export {
        /// First day to include (YYYY-MM-DD)
        #[arg(long, value_parser = parse_day)]
        from: Option<Day>,
        /// Last day to include (YYYY-MM-DD)
        #[arg(long, value_parser = parse_day)]
        to: Option<Day>,
        /// Write to FILE, atomically (all of it or nothing), instead of stdout
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Write everything the store holds (activity, coverage, cursors,
    /// detection states, outbox, delivery record, snoozes) to one file
    Backup {
        /// The backup file to write (atomically; gzip'd JSON Lines)
        file: PathBuf,
    },
    /// Rebuild the store from a backup (the configured store path must not
    /// hold a store)
    Restore {
        /// The backup file (`lull backup`, or one the service took)
        file: PathBuf,
        /// Only check the file: read every record and its end, write nothing
        #[arg(long)]
        verify: bool,
    },
    /// List accounts: CSM, state, recent activity
    Accounts {
        /// JSON array on stdout, for scripts
        #[arg(long)]
        json: bool,
        /// List the actors that matched no account instead
        #[arg(long)]
        unmatched: bool,
        /// Show activity as of this day (default: today)
        #[arg(long, value_parser = parse_day)]
        at: Option<Day>,
        /// Only this CSM's accounts (e-mail address)
        #[arg(long, value_name = "EMAIL")]
        csm: Option<String>,
        /// Only accounts in this state
        #[arg(long, value_parser = ["engaged", "silent", "insufficient_data", "unknown"])]
        state: Option<String>,
        /// Only accounts of this segment
        #[arg(long)]
        segment: Option<String>,
        /// Only accounts whose id or name contains TEXT
        #[arg(long, value_name = "TEXT")]
        search: Option<String>,
    },
    /// Judge every account as of a day; queue the alerts it decides and send them
    Detect {
        /// The day to judge (default: today)
        #[arg(long, value_parser = parse_day)]
        at: Option<Day>,
        /// Judge and print, but record nothing and queue nothing
        #[arg(long)]
        dry_run: bool,
        /// Queue alerts but do not deliver them now (`lull deliver` sends them)
        #[arg(long)]
        no_send: bool,
        /// JSON array on stdout, one object per account
        #[arg(long)]
        json: bool,
    },
    /// Send every queued alert e-mail now (retrying for [smtp] retry_secs)
    Deliver,
    /// List alert e-mails: queued, sent and failed, with times and recipients
    Alerts {
        /// JSON array on stdout, for scripts
        #[arg(long)]
        json: bool,
    },
    /// Hear nothing about an account until a day (its state still moves)
    Snooze {
        /// The account's id
        account: String,
        /// Last day of the snooze (YYYY-MM-DD, inclusive)
        #[arg(long, value_parser = parse_day)]
        until: Day,
        /// Why (shown in `lull accounts`)
        #[arg(long)]
        reason: String,
    },
    /// Lift an account's snooze
    Unsnooze {
        /// The account's id
        account: String,
    },
    /// Print a one-time sign-in link for the web console (15 minutes)
    ConsoleLink {
        /// Sign in as this CSM or admin (default: you, as an admin)
        #[arg(long)]
        email: Option<String>,
    },
    /// Replay detection day by day over stored history; queue and send nothing
    Backtest {
        /// First day alerts may fire (YYYY-MM-DD)
        #[arg(long, value_parser = parse_day)]
        from: Day,
        /// Last day to replay (YYYY-MM-DD)
        #[arg(long, value_parser = parse_day)]
        to: Day,
        /// JSON array of the alerts on stdout (nothing else goes to stdout)
        #[arg(long)]
        json: bool,
        /// Also write a self-contained HTML report for tuning
        #[arg(long, value_name = "FILE.html")]
        report: Option<PathBuf>,
        /// Replay with another threshold, e.g. `--set recent_days=56` or
        /// `--set segment.smb.min_expected=6` (any `[detect]` key; repeat
        /// for more); the config does not change
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Score the replay per tier against known disengagements: a CSV
        /// with `account,churn_date` (or score.py's ground_truth.csv);
        /// recall, lead, false alerts per account-year, precision
        #[arg(long, value_name = "FILE.csv")]
        churned: Option<PathBuf>,
    },
    /// The service: scheduled polls, detection and alert delivery, with
    /// /healthz, /readyz and /metrics; stops cleanly on SIGTERM/SIGINT
    Run,
}

fn parse_day(s: &str) -> Result<Day, String> {
    s.parse()
}
