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
    /// `credential:NAME`: `$CREDENTIALS_DIRECTORY/NAME`, as systemd's `LoadCredential=`
    /// provides it.
    Credential(String),
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
    /// `credential:NAME` outside a systemd unit with `LoadCredential=`.
    #[error("credential:{0} needs $CREDENTIALS_DIRECTORY (set by systemd's LoadCredential=); it is not set")]
    NoCredentials(String),
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
    /// Reads a `password = "…"`-style value: `env:NAME`, `credential:NAME`, or an inline
    /// literal.
    pub fn from_value(value: &str) -> SecretRef {
        if let Some(name) = value.strip_prefix("env:") {
            SecretRef::Env(name.to_string())
        } else if let Some(name) = value.strip_prefix("credential:") {
            SecretRef::Credential(name.to_string())
        } else {
            SecretRef::Inline(value.to_string())
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
            SecretRef::File(path) => read_secret_file(path),
            SecretRef::Credential(name) => match std::env::var_os("CREDENTIALS_DIRECTORY") {
                Some(dir) => read_secret_file(&Path::new(&dir).join(name)),
                None => Err(SecretError::NoCredentials(name.clone())),
            },
            SecretRef::Inline(value) => Ok(Secret(value.clone())),
        }
    }
}

fn read_secret_file(path: &Path) -> Result<Secret, SecretError> {
    std::fs::read_to_string(path)
        .map(|s| Secret(s.trim_end_matches(['\n', '\r']).to_string()))
        .map_err(|source| SecretError::File {
            path: path.to_path_buf(),
            source,
        })
}

impl fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Env(name) => write!(f, "env:{name}"),
            SecretRef::File(path) => write!(f, "file:{}", path.display()),
            SecretRef::Credential(name) => write!(f, "credential:{name}"),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_resolves_and_never_prints() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "s3cret\n").unwrap();
        assert_eq!(
            SecretRef::from_file(&dir.path().join("pw"))
                .resolve()
                .unwrap()
                .expose(),
            "s3cret"
        );
        assert_eq!(
            SecretRef::from_value("plain").resolve().unwrap().expose(),
            "plain"
        );
        let secret = SecretRef::from_value("plain").resolve().unwrap();
        assert_eq!(format!("{secret} {secret:?}"), "[redacted] [redacted]");
        assert_eq!(
            format!("{:?}", SecretRef::from_value("hunter2")),
            "[inline, redacted]"
        );
        assert!(
            matches!(SecretRef::from_value("credential:smtp"), SecretRef::Credential(n) if n == "smtp")
        );
        assert!(matches!(SecretRef::from_value("env:X"), SecretRef::Env(n) if n == "X"));
        let missing = SecretRef::from_value("env:HAPWATCH_SURELY_UNSET_VARIABLE")
            .resolve()
            .unwrap_err();
        assert!(missing
            .to_string()
            .contains("HAPWATCH_SURELY_UNSET_VARIABLE is not set"));
    }
}
