//! The command line (clap derive). Parsing only: behaviour lives in `commands`.

use crate::config::DEFAULT_PATH;
use crate::stats::ProxyType;
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// One-shot HAProxy alerting monitor.
///
/// Reads `show stat` / `show info` from HAProxy (unix socket, TCP socket, stats page, or a
/// captured file), and reports what it finds.
#[derive(Debug, Parser)]
#[command(name = "hapwatch", version, propagate_version = true)]
pub struct Cli {
    /// Config file.
    #[arg(short, long, global = true, env = "HAPWATCH_CONFIG", default_value = DEFAULT_PATH)]
    pub config: PathBuf,

    /// Say more on stderr (-v: what a run did, -vv: details).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Only errors on stderr.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Format of stderr lines.
    #[arg(long, global = true, value_enum, default_value_t = crate::log::Format::Text)]
    pub log_format: crate::log::Format,

    /// State file (overrides the `file` of the config's state table).
    #[arg(long, global = true, value_name = "FILE")]
    pub state: Option<PathBuf>,

    /// Use a state file recorded as another config's (after moving the config file):
    /// its alerts and outbox become this config's.
    #[arg(long, global = true)]
    pub adopt_state: bool,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// hapwatch's commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// The cron job: read every source, evaluate the rules, update the state, notify.
    Run(RunArgs),
    /// Keep running: a `run` cycle every --every (default 10s) until SIGTERM/SIGINT;
    /// SIGHUP re-reads the config. For seconds to notify, systemd Type=notify, containers.
    Watch(WatchArgs),
    /// Print what HAProxy reports, as a table, JSON or CSV.
    Show(ShowArgs),
    /// Validate the config; with --connect, also read every source.
    Check(CheckArgs),
    /// Evaluate the rules on a captured snapshot: which rows match which rule.
    Eval(EvalArgs),
    /// Silence alerts matching labels for a while (maintenance, logrotate).
    #[command(subcommand)]
    Silence(SilenceCommand),
    /// Inspect or reset the state file.
    #[command(subcommand)]
    State(StateCommand),
    /// Show the history: transitions (newest last) and the incidents they form.
    History(HistoryArgs),
    /// A report of the history: summary, timelines, availability per backend and server.
    Report(ReportArgs),
    /// Run rule tests: snapshots at simulated times, expected alerts and notifications.
    Test {
        /// Rule-test files (TOML).
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Write a commented starter config (and the default rules) for this host.
    Init(InitArgs),
    /// Show which `[[route]]`s and notifiers an alert with these labels reaches.
    Route {
        /// The alert's labels: `alertname=ServerDown,proxy=pay-api,severity=critical`
        /// (`alertname` also brings in that rule's `notify`).
        #[arg(long, value_name = "NAME=VALUE,…")]
        labels: String,
        /// Say whether routes are muted and recurring silences hold at this time instead
        /// of now: `2026-03-29T03:30:00+02:00`, `2026-03-29T03:30[Europe/Berlin]` or
        /// `2026-03-29T01:30:00Z`.
        #[arg(long, value_name = "TIME")]
        at: Option<String>,
    },
    /// Print a shell completion script.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff).
    Man,
    /// Send a clearly marked test notification through one notifier.
    NotifyTest {
        /// The notifier's name (`[notifier.NAME]`).
        name: String,
    },
}

/// `hapwatch run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Show what would happen (matches, state changes, notifications); change and send nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Output format of notifications printed on stdout and of --dry-run.
    #[arg(long, value_enum, default_value_t = RunFormat::Text)]
    pub format: RunFormat,
    /// Pretend the run happens at this Unix time (seconds), e.g. to replay captures.
    #[arg(long, value_name = "UNIX_TIME", value_parser = parse_now)]
    pub now: Option<f64>,
    /// Act as a Nagios/Icinga plugin: one status line with perfdata on stdout, exit
    /// 0 OK / 1 WARNING / 2 CRITICAL / 3 UNKNOWN.
    #[arg(long)]
    pub nagios: bool,
}

/// `hapwatch watch`.
#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    /// Time between the starts of two cycles (fixed schedule), e.g. 2s, 10s, 1m.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_interval)]
    pub every: std::time::Duration,
    /// Output format of notifications printed on stdout (when no notifier is configured).
    #[arg(long, value_enum, default_value_t = RunFormat::Text)]
    pub format: RunFormat,
}

/// Output formats of `run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RunFormat {
    /// For people (and cron mail).
    Text,
    /// One JSON document.
    Json,
}

/// `hapwatch silence …`.
#[derive(Debug, Subcommand)]
pub enum SilenceCommand {
    /// Add a silence; prints its id.
    Add {
        /// LABEL=VALUE, LABEL!=VALUE, LABEL=~GLOB or LABEL!~GLOB (repeatable; all must match).
        #[arg(long = "match", value_name = "MATCHER", required = true)]
        matchers: Vec<String>,
        /// How long, from now.
        #[arg(long = "for", value_name = "DURATION", value_parser = parse_positive_duration)]
        duration: std::time::Duration,
        /// Why (shown by `silence list`).
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// List active silences.
    List {
        /// Output format.
        #[arg(long, value_enum, default_value_t = EvalFormat::Table)]
        format: EvalFormat,
    },
    /// Remove a silence by id.
    Remove {
        /// The id `silence add` printed.
        id: String,
    },
}

/// `hapwatch state …`.
#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Print the alerts the state remembers (or the whole state as JSON).
    Show {
        /// Output format.
        #[arg(long, value_enum, default_value_t = EvalFormat::Table)]
        format: EvalFormat,
    },
    /// Forget every alert, sample and silence.
    Reset,
    /// Exit 0 if a run (or a watch cycle) updated the state within --max-age, else print
    /// why and exit 1: a liveness probe for `hapwatch watch` (Kubernetes exec probe).
    Check {
        /// How old the last run may be, e.g. 30s (3 × --every is a good start).
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        max_age: std::time::Duration,
    },
}

/// `hapwatch eval`.
#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// The dump to evaluate: `show stat` CSV, or a `show info;show stat` capture ("-" = stdin).
    #[arg(long, value_name = "FILE")]
    pub snapshot: PathBuf,
    /// An earlier dump of the same HAProxy, for delta() and rate().
    #[arg(long, value_name = "FILE")]
    pub previous: Option<PathBuf>,
    /// Time between --previous and --snapshot.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub interval: std::time::Duration,
    /// Only this rule.
    #[arg(long, value_name = "NAME")]
    pub rule: Option<String>,
    /// The `source` label the alerts get.
    #[arg(long, value_name = "NAME", default_value = "snapshot")]
    pub source: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = EvalFormat::Table)]
    pub format: EvalFormat,
}

/// `hapwatch history`.
#[derive(Debug, clap::Args)]
pub struct HistoryArgs {
    /// Start of the period: a duration before now (`24h`, `7d`) or a time
    /// (`2026-12-03`, `2026-12-03 08:00`, RFC 3339), UTC.
    #[arg(long, default_value = "24h", value_name = "WHEN")]
    pub since: String,
    /// End of the period (default: now), as --since.
    #[arg(long, value_name = "WHEN")]
    pub until: Option<String>,
    /// Only alerts with this label value (repeatable; all must match).
    #[arg(long = "match", value_name = "LABEL=VALUE")]
    pub matchers: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = EvalFormat::Table)]
    pub format: EvalFormat,
    /// Take this Unix time as now (for tests and replays).
    #[arg(long, value_name = "UNIX_TIME", value_parser = parse_now, hide = true)]
    pub now: Option<f64>,
}

/// `hapwatch report`.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// Start of the period: a duration before now (`7d`) or a time, as for `history`.
    #[arg(long, default_value = "7d", value_name = "WHEN")]
    pub since: String,
    /// End of the period (default: now).
    #[arg(long, value_name = "WHEN")]
    pub until: Option<String>,
    /// Only alerts with this label value (repeatable; all must match).
    #[arg(long = "match", value_name = "LABEL=VALUE")]
    pub matchers: Vec<String>,
    /// Output format: a self-contained HTML page, the timelines as one SVG, or plain
    /// text (for mail).
    #[arg(long, value_enum, default_value_t = ReportFormat::Html)]
    pub format: ReportFormat,
    /// Write the report to FILE instead of stdout. An existing FILE is replaced only if it
    /// is a report hapwatch wrote; never through a symbolic link.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Send the report through the configured [notifier.NOTIFIER] instead of printing it:
    /// a mail (text and HTML parts) or a webhook POST. Silent when it was sent.
    #[arg(long, value_name = "NOTIFIER", conflicts_with_all = ["out", "format"])]
    pub send: Option<String>,
    /// Take this Unix time as now (for tests and replays).
    #[arg(long, value_name = "UNIX_TIME", value_parser = parse_now, hide = true)]
    pub now: Option<f64>,
}

/// Output formats of `report`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    /// A self-contained HTML page (inline CSS and SVG, no scripts, no network).
    Html,
    /// The timelines as one SVG image.
    Svg,
    /// Plain text, for mail.
    Text,
}

/// Output formats of `eval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EvalFormat {
    /// One line per alert.
    Table,
    /// A JSON array of alerts (labels, annotations, value).
    Json,
}

fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    crate::duration::parse(text)
}

/// A watch interval: above zero, or the loop would spin.
fn parse_interval(text: &str) -> Result<std::time::Duration, String> {
    let duration = crate::duration::parse(text)?;
    if duration.is_zero() {
        return Err(format!(
            "an interval of {text:?} would start cycles back to back; give a duration above zero, e.g. 10s"
        ));
    }
    Ok(duration)
}

/// A duration above zero: a silence `--for 0s` would be over before it began.
fn parse_positive_duration(text: &str) -> Result<std::time::Duration, String> {
    let duration = crate::duration::parse(text)?;
    if duration.is_zero() {
        return Err(format!(
            "a silence for {text:?} ends as soon as it starts; give a duration above zero, e.g. 30m"
        ));
    }
    Ok(duration)
}

/// The latest `--now`: 9999-12-31T23:59:59Z, the last second dates print as four-digit
/// years.
const LATEST_NOW: f64 = 253_402_300_799.0;

/// A Unix time in seconds between 0 and the year 9999: NaN, infinities and times that
/// no date can show would otherwise reach the state file (as `null`) and the messages.
fn parse_now(text: &str) -> Result<f64, String> {
    let invalid = || {
        format!(
            "expected a Unix time in seconds from 0 to {LATEST_NOW:.0} (the end of the year \
             9999), e.g. 1700000000"
        )
    };
    let now: f64 = text.trim().parse().map_err(|_| invalid())?;
    if !(0.0..=LATEST_NOW).contains(&now) {
        return Err(invalid());
    }
    Ok(now)
}

/// `hapwatch show`.
#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// Only this source (by name); default: all.
    #[arg(long, value_name = "NAME")]
    pub source: Option<String>,
    /// Only rows of this type (repeatable).
    #[arg(long = "type", value_name = "TYPE", value_enum)]
    pub types: Vec<RowType>,
    /// Only proxies whose name matches this glob (repeatable), e.g. 'app-*'.
    #[arg(long, value_name = "GLOB")]
    pub proxy: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ShowFormat::Table)]
    pub format: ShowFormat,
}

/// `hapwatch check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Also read every source and report its row counts and HAProxy version.
    #[arg(long)]
    pub connect: bool,
    /// Act as a Nagios/Icinga plugin (implies --connect): one status line, exit 0/2/3.
    #[arg(long)]
    pub nagios: bool,
}

/// Row types, as accepted on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RowType {
    /// Frontends.
    Frontend,
    /// Backends.
    Backend,
    /// Servers.
    Server,
    /// Listeners (`option socket-stats`).
    Listener,
}

impl From<RowType> for ProxyType {
    fn from(t: RowType) -> Self {
        match t {
            RowType::Frontend => ProxyType::Frontend,
            RowType::Backend => ProxyType::Backend,
            RowType::Server => ProxyType::Server,
            RowType::Listener => ProxyType::Listener,
        }
    }
}

/// Output formats of `show`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ShowFormat {
    /// An aligned table for people.
    Table,
    /// One JSON document: sources, their `show info`, typed rows.
    Json,
    /// HAProxy's own CSV (header + rows), re-readable as a `file` source.
    Csv,
}

/// `hapwatch init`.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// The HAProxy runtime socket (default: found in haproxy.cfg or the usual places).
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// The haproxy.cfg to look for `stats socket` in.
    #[arg(long, value_name = "PATH", default_value = "/etc/haproxy/haproxy.cfg")]
    pub haproxy_cfg: PathBuf,
    /// Overwrite existing files.
    #[arg(long)]
    pub force: bool,
    /// Write the config readable by its owner only (mode 600), for inline secrets. The
    /// default (644) lets the systemd unit's DynamicUser and a cron user read it; secrets
    /// then come from `*_file`, `env:NAME` or `credential:NAME`.
    #[arg(long)]
    pub private: bool,
}
