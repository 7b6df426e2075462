//! Secrets (passwords, tokens) referenced from the config, kept out of every output.

use std::fmt;
use std::path::{Path, PathBuf};

/// Where a secret comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretRef {
    /// `env:NAME`: the environment variable `NAME`.
    Env(String),
    /// `*_file = "PATH"`: the file's content, without a trailing newline.
    File(PathBuf),
    /// A literal in the config; only accepted when the config is readable by its owner alone.
    Inline(String),
}

/// A resolved secret. `Debug` and `Display` print `[redacted]`, so a secret cannot reach a
/// log line or error message by accident.
#[derive(Clone)]
pub struct Secret(String);

/// Why a secret could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// `env:NAME` with `NAME` unset.
    #[error("environment variable {0} is not set (the config refers to it as env:{0})")]
    EnvMissing(String),
    /// The secret file is missing or unreadable.
    #[error("cannot read secret file {path}: {source}")]
    File {
        /// The file named in the config.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
}

impl SecretRef {
    /// Reads a `password = "…"`-style value: `env:NAME` or an inline literal.
    pub fn from_value(value: &str) -> SecretRef {
        match value.strip_prefix("env:") {
            Some(name) => SecretRef::Env(name.to_string()),
            None => SecretRef::Inline(value.to_string()),
        }
    }

    /// A `*_file` value, relative to the config's directory.
    pub fn from_file(path: &Path) -> SecretRef {
        SecretRef::File(path.to_path_buf())
    }

    /// Fetches the secret's value.
    pub fn resolve(&self) -> Result<Secret, SecretError> {
        match self {
            SecretRef::Env(name) => std::env::var(name)
                .map(Secret)
                .map_err(|_| SecretError::EnvMissing(name.clone())),
            SecretRef::File(path) => std::fs::read_to_string(path)
                .map(|s| Secret(s.trim_end_matches(['\n', '\r']).to_string()))
                .map_err(|source| SecretError::File {
                    path: path.clone(),
                    source,
                }),
            SecretRef::Inline(value) => Ok(Secret(value.clone())),
        }
    }
}

impl fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Env(name) => write!(f, "env:{name}"),
            SecretRef::File(path) => write!(f, "file:{}", path.display()),
            SecretRef::Inline(_) => f.write_str("[inline, redacted]"),
        }
    }
}

impl Secret {
    /// The secret's value, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}
