//! The one place where failures become exit codes.

use crate::config::ConfigError;

/// hapwatch's exit codes, shared by every command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The command did its job (firing alerts are not a failure).
    Success = 0,
    /// The command completed with trouble: a source unreachable, a bad reply.
    Trouble = 1,
    /// Usage or configuration error: nothing was done.
    Usage = 2,
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> Self {
        std::process::ExitCode::from(exit as u8)
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
}

impl Error {
    /// The exit code this failure maps to.
    pub fn exit(&self) -> Exit {
        match self {
            Error::Config(_) | Error::Usage(_) => Exit::Usage,
            Error::State(_) | Error::Input(_) | Error::Output(_) => Exit::Trouble,
        }
    }
}
