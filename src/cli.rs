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

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// hapwatch's commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print what HAProxy reports, as a table, JSON or CSV.
    Show(ShowArgs),
    /// Validate the config; with --connect, also read every source.
    Check(CheckArgs),
    /// Evaluate the rules on a captured snapshot: which rows match which rule.
    Eval(EvalArgs),
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
