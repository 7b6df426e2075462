//! Messages on stderr: one line each, as text (`hapwatch: …`) or JSON for log shippers.
//! Cron mails whatever a job prints, so the default shows only errors and warnings.

use std::fmt::Display;
use std::io::Write;
use std::sync::OnceLock;

/// How much to say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Something failed.
    Error,
    /// Something is off but the command went on.
    Warn,
    /// What a run did (`-v`).
    Info,
    /// Details (`-vv`).
    Debug,
}

/// Line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `hapwatch: message`.
    Text,
    /// `{"time":…,"level":…,"message":…}`.
    Json,
}

static SETTINGS: OnceLock<(Level, Format)> = OnceLock::new();

/// Sets the level from `-v`/`-q` counts, and the format; the first call wins.
pub fn init(verbose: u8, quiet: bool, format: Format) {
    let level = match (quiet, verbose) {
        (true, _) => Level::Error,
        (false, 0) => Level::Warn,
        (false, 1) => Level::Info,
        _ => Level::Debug,
    };
    let _ = SETTINGS.set((level, format));
}

fn settings() -> (Level, Format) {
    *SETTINGS.get_or_init(|| (Level::Warn, Format::Text))
}

/// True when messages of `level` are printed.
pub fn enabled(level: Level) -> bool {
    level <= settings().0
}

/// Prints `message` at `level`.
pub fn log(level: Level, message: impl Display) {
    let (max, format) = settings();
    if level > max {
        return;
    }
    // Every line may quote a peer or a URL: secrets are masked here, whatever the caller.
    let message = crate::text::one_line(&crate::secret::redact(&message.to_string()));
    let line = match format {
        Format::Text => match level {
            Level::Warn => format!("hapwatch: warning: {message}\n"),
            _ => format!("hapwatch: {message}\n"),
        },
        Format::Json => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            let level = match level {
                Level::Error => "error",
                Level::Warn => "warning",
                Level::Info => "info",
                Level::Debug => "debug",
            };
            format!(
                "{}\n",
                serde_json::json!({ "time": crate::text::rfc3339(now), "level": level, "message": message })
            )
        }
    };
    // One write per line, so lines of concurrent threads do not interleave.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// An error line.
pub fn error(message: impl Display) {
    log(Level::Error, message);
}

/// A warning line.
pub fn warn(message: impl Display) {
    log(Level::Warn, message);
}

/// An info line (`-v`).
pub fn info(message: impl Display) {
    log(Level::Info, message);
}
