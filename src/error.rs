//! The one place where failures become exit codes.

use crate::config::ConfigError;

/// hapwatch's exit codes, shared by every command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: the command did its job (firing alerts are not a failure).
    Success,
    /// 1: the command completed with trouble: a source unreachable, a delivery that went
    /// to the outbox, an unusable state file.
    Trouble,
    /// 2: usage or configuration error: nothing was done.
    Usage,
    /// `--nagios`: the plugin convention instead.
    Nagios(Nagios),
}

/// Nagios / Icinga plugin states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Nagios {
    /// 0: no alert firing.
    Ok,
    /// 1: only warning-level alerts firing.
    Warning,
    /// 2: a critical alert firing (a source unreachable is critical).
    Critical,
    /// 3: hapwatch itself could not tell (bad config, locked state).
    Unknown,
}

impl Nagios {
    /// `OK`, `WARNING`, `CRITICAL`, `UNKNOWN`.
    pub fn label(self) -> &'static str {
        match self {
            Nagios::Ok => "OK",
            Nagios::Warning => "WARNING",
            Nagios::Critical => "CRITICAL",
            Nagios::Unknown => "UNKNOWN",
        }
    }
}

impl Exit {
    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::Trouble => 1,
            Exit::Usage => 2,
            Exit::Nagios(n) => n as u8,
        }
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> Self {
        std::process::ExitCode::from(exit.code())
    }
}

/// A failure that stops a command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The config is missing or invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The command line names something the config does not have.
    #[error("{0}")]
    Usage(String),
    /// The state file could not be locked, read or written.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// An input named on the command line could not be read.
    #[error("{0}")]
    Input(String),
    /// Writing the command's output failed.
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
    /// A notifier did not take what the command sent (a report): the line names the
    /// notifier, never its URL or credentials.
    #[error("{0}")]
    Delivery(String),
}

impl Error {
    /// The exit code this failure maps to.
    pub fn exit(&self) -> Exit {
        match self {
            Error::Config(_) | Error::Usage(_) => Exit::Usage,
            Error::State(_) | Error::Input(_) | Error::Output(_) | Error::Delivery(_) => {
                Exit::Trouble
            }
        }
    }
}
