//! The history: every lifecycle transition and delivery, appended to a file next to the
//! state as one JSON object per line, and the incidents those lines form.
//!
//! The state forgets a resolved alert after `retention`; the history keeps what happened
//! for `[history] max_age` so that `hapwatch history` and `hapwatch report` can answer
//! "since when?", "how often this week?" and "which backend flaps most?".
//!
//! Safety, as for the state (and with its checks): the file is opened with `O_NOFOLLOW`,
//! only a regular file of this user (or root) with one link is written, in a directory
//! nobody else may change, and only one that is empty or starts like a history line. A run
//! writes all of its lines with one `write` on an `O_APPEND` descriptor while it holds the
//! state's lock, so a run killed mid-write leaves at most a torn last line: readers skip a
//! line that is not a whole record, and the next writer cuts it off before appending.
//! The history is not the source of truth (the state is), so it is not fsynced: a crash of
//! the machine may lose its last lines, never the alerts.
//!
//! Size and age are bounded by rotation: once the file holds half of `max_size`, or its
//! first line is older than `max_age`, it becomes `FILE.1` (replacing the previous one),
//! and `FILE.1` is removed once its last line is older than `max_age`. Lines are thus kept
//! for at least `max_age` (unless `max_size` cuts them earlier) and at most twice as long.

use crate::alert::{row_of, Fingerprint, Labels, Value};
use crate::config::HistorySettings;
use crate::state::{self, AlertState, State, Status};
use crate::vocab::Payload;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// How every history line starts: the writer puts `time` first, and a file that starts
/// otherwise is not one hapwatch wrote.
const LINE_START: &[u8] = b"{\"time\":";

/// A re-opened incident of the same alert within this many seconds of the previous one's
/// end is a flap.
pub const FLAP_WINDOW: f64 = 30.0 * 60.0;

/// What happened to an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// The condition holds, not yet for `for` / `for_runs`.
    Pending,
    /// The condition ended before the alert fired (a pending alert forgotten).
    Cleared,
    /// The alert fires (announced, or held back by a silence: see `silenced`).
    Firing,
    /// The problem is over.
    Resolved,
    /// A silence now holds back the notifications of a pending or firing alert.
    Silenced,
    /// No silence holds it back any more (it still holds).
    Unsilenced,
    /// An alert that fires is now inhibited by another that fires (an `[[inhibit]]`
    /// entry): its notifications are held back (`inhibited_by` names the inhibitor).
    Inhibited,
    /// Nothing inhibits it any more (it still holds). A recovery ends an inhibition
    /// without this line: the resolved line says it.
    Uninhibited,
    /// A notifier took a notification about the alert.
    Delivered,
    /// A notifier failed to take a notification about the alert (`error` says why).
    Failed,
}

impl Event {
    /// The name used in the file and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Event::Pending => "pending",
            Event::Cleared => "cleared",
            Event::Firing => "firing",
            Event::Resolved => "resolved",
            Event::Silenced => "silenced",
            Event::Unsilenced => "unsilenced",
            Event::Inhibited => "inhibited",
            Event::Uninhibited => "uninhibited",
            Event::Delivered => "delivered",
            Event::Failed => "failed",
        }
    }
}

/// One line of the history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Unix time of the run that saw it (first key of every line).
    pub time: f64,
    /// What happened.
    pub event: Event,
    /// The alert's fingerprint (16 hex digits, as in the state and Alertmanager).
    pub fingerprint: String,
    /// The alert's labels.
    pub labels: Labels,
    /// The rule's value at the time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    /// The rendered summary.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub summary: String,
    /// Firing and resolved: when the condition started to hold (the incident's start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<f64>,
    /// Firing: a silence holds back its notifications.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub silenced: bool,
    /// Inhibited: the labels of the alert that inhibits it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inhibited_by: Option<Labels>,
    /// Delivered and failed: the notifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notifier: Option<String>,
    /// Failed: why (secrets masked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Record {
    fn about(time: f64, event: Event, fingerprint: String, labels: Labels) -> Record {
        Record {
            time,
            event,
            fingerprint,
            labels,
            value: None,
            summary: String::new(),
            since: None,
            silenced: false,
            inhibited_by: None,
            notifier: None,
            error: None,
        }
    }

    fn from_state(time: f64, event: Event, fingerprint: &str, alert: &AlertState) -> Record {
        Record {
            value: alert.value.clone(),
            summary: alert
                .annotations
                .get("summary")
                .cloned()
                .unwrap_or_default(),
            ..Record::about(time, event, fingerprint.to_string(), alert.labels.clone())
        }
    }
}

/// Why the history could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The file or its directory is not something hapwatch may write; nothing was changed.
    #[error("history file {}: {reason}; nothing was changed", path.display())]
    Unsafe {
        /// The history file.
        path: PathBuf,
        /// What is wrong and what to do.
        reason: String,
    },
    /// A report could not be written to `--out`; nothing was replaced.
    #[error("report file {}: {reason}; nothing was replaced", path.display())]
    Report {
        /// The file named by `--out`.
        path: PathBuf,
        /// What is wrong and what to do.
        reason: String,
    },
    /// An I/O error.
    #[error("history file {}: {action}: {source}", path.display())]
    Io {
        /// The history file.
        path: PathBuf,
        /// What was being done.
        action: &'static str,
        /// The error.
        source: std::io::Error,
    },
}

/// The history of one state file, with its bounds.
#[derive(Debug, Clone)]
pub struct History {
    /// The file (`FILE.1` is the previous generation).
    pub path: PathBuf,
    /// Rotate once the first line is older than this (seconds).
    pub max_age: f64,
    /// Rotate once the file holds half of this (bytes): both generations stay below it.
    pub max_size: u64,
}

/// The history file of a state file when `[history] file` is not set:
/// `state.json` → `state.history.jsonl`, in the same directory.
pub fn default_path(state_path: &Path) -> PathBuf {
    let stem = state_path
        .file_stem()
        .map_or_else(|| "state".into(), |s| s.to_string_lossy().into_owned());
    state_path.with_file_name(format!("{stem}.history.jsonl"))
}

/// The previous generation of `path`: `FILE.1`.
pub fn rotated_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".1");
    PathBuf::from(name)
}

/// One alert's move in a run, as the engine reports it.
#[derive(Debug, Clone, Copy)]
pub struct Move<'a> {
    /// Identity.
    pub labels: &'a Labels,
    /// Status before the run (`None`: new).
    pub from: Option<Status>,
    /// Status after the run (`None`: forgotten).
    pub to: Option<Status>,
    /// A silence holds its notifications back.
    pub silenced: bool,
}

/// One delivery attempt of a run: the notifier, what it carried, and the error if it
/// failed.
#[derive(Debug, Clone, Copy)]
pub struct Attempt<'a> {
    /// The notifier.
    pub notifier: &'a str,
    /// What was sent.
    pub payload: &'a Payload,
    /// Why it failed (`None`: delivered).
    pub error: Option<&'a str>,
}

/// The fingerprints of the alerts an `[[inhibit]]` entry holds back in `state`: taken
/// before a run's engine step, so that [`records`] can tell which inhibitions start or
/// end in the run.
pub fn inhibited(state: &State) -> HashSet<String> {
    state
        .alerts
        .iter()
        .filter(|(_, a)| a.status == Status::Firing && a.inhibited_by.is_some())
        .map(|(fp, _)| fp.clone())
        .collect()
}

/// The lines a run adds: its lifecycle moves (only changes: an alert that stays pending or
/// firing adds nothing), silences that start or stop holding an alert back, inhibitions
/// that start or stop (against `inhibited_before`, from [`inhibited`] before the engine
/// step), and its deliveries, one line per alert carried. Notes in `state` which alerts a
/// silence holds back now, for the next run's lines.
pub fn records(
    state: &mut State,
    inhibited_before: &HashSet<String>,
    moves: &[Move<'_>],
    attempts: &[Attempt<'_>],
    now: f64,
) -> Vec<Record> {
    let mut out = Vec::new();
    // One pass over the state, before the moves change `silenced`: whether any alert was
    // silenced (most moves of most runs are alerts that stay pending or firing,
    // unsilenced: they add no line, and need no fingerprint, a hash, if none was), and the
    // inhibitions that start or end. The engine keeps `inhibited_by` of every firing alert
    // up to date, including those kept firing without evaluation (a failed source), which
    // have no move. Their lines come after the moves' (a new alert's firing line first),
    // ordered by labels like the moves.
    let mut any_silenced = false;
    let mut inhibitions = Vec::new();
    for (fingerprint, alert) in &state.alerts {
        any_silenced |= alert.silenced;
        let by = alert
            .inhibited_by
            .as_ref()
            .filter(|_| alert.status == Status::Firing);
        // No lookup (no hash) while nothing was inhibited: the common case.
        let was = !inhibited_before.is_empty() && inhibited_before.contains(fingerprint);
        match by {
            Some(by) if !was => inhibitions.push(Record {
                inhibited_by: Some(
                    state
                        .alerts
                        .get(by)
                        .map(|a| a.labels.clone())
                        .unwrap_or_default(),
                ),
                ..Record::from_state(now, Event::Inhibited, fingerprint, alert)
            }),
            None if was && matches!(alert.status, Status::Pending | Status::Firing) => inhibitions
                .push(Record::from_state(
                    now,
                    Event::Uninhibited,
                    fingerprint,
                    alert,
                )),
            _ => {}
        }
    }
    inhibitions.sort_by(|a, b| a.labels.cmp(&b.labels));
    for m in moves {
        if m.from == m.to && !m.silenced && !any_silenced {
            continue;
        }
        let fingerprint = Fingerprint::of(m.labels).to_string();
        let was = state
            .alerts
            .get_mut(&fingerprint)
            .map(|a| std::mem::replace(&mut a.silenced, m.silenced))
            .unwrap_or(false);
        let alert = state.alerts.get(&fingerprint);
        let record = |event| match alert {
            Some(a) => Record::from_state(now, event, &fingerprint, a),
            None => Record::about(now, event, fingerprint.clone(), m.labels.clone()),
        };
        if m.from != m.to {
            let event = match m.to {
                Some(Status::Pending) => Event::Pending,
                Some(Status::Firing) => Event::Firing,
                Some(Status::Resolved) => Event::Resolved,
                None => Event::Cleared,
            };
            let mut r = record(event);
            if matches!(event, Event::Firing | Event::Resolved) {
                r.since = alert.map(|a| a.active_since);
            }
            r.silenced = event == Event::Firing && m.silenced;
            out.push(r);
        }
        // A silence that starts or ends while the alert holds.
        if matches!(m.to, Some(Status::Pending | Status::Firing)) {
            let new_and_firing = m.from.is_none() && m.to == Some(Status::Firing);
            if m.silenced != was && !(new_and_firing && m.silenced) {
                out.push(record(if m.silenced {
                    Event::Silenced
                } else {
                    Event::Unsilenced
                }));
            }
        }
    }
    out.extend(inhibitions);
    for attempt in attempts {
        let event = if attempt.error.is_some() {
            Event::Failed
        } else {
            Event::Delivered
        };
        for (fingerprint, labels, summary) in carried(attempt.payload) {
            let mut r = match state.alerts.get(&fingerprint) {
                Some(a) => Record::from_state(now, event, &fingerprint, a),
                None => Record {
                    summary,
                    ..Record::about(now, event, fingerprint, labels)
                },
            };
            r.notifier = Some(attempt.notifier.to_string());
            r.error = attempt.error.map(crate::secret::redact);
            out.push(r);
        }
    }
    out
}

/// The alerts a payload carries: fingerprint, labels, summary.
fn carried(payload: &Payload) -> Vec<(String, Labels, String)> {
    match payload {
        Payload::Notification(n) => n
            .firing
            .iter()
            .chain(&n.resolved)
            .map(|notice| {
                (
                    notice.fingerprint.clone(),
                    notice.labels.clone(),
                    notice
                        .annotations
                        .get("summary")
                        .cloned()
                        .unwrap_or_default(),
                )
            })
            .collect(),
        Payload::Alertmanager { alerts, .. } => alerts
            .iter()
            .map(|a| {
                (
                    Fingerprint::of(&a.labels).to_string(),
                    a.labels.clone(),
                    a.annotations.get("summary").cloned().unwrap_or_default(),
                )
            })
            .collect(),
    }
}

impl History {
    /// The history `[history]` describes for the state file at `state_path` (`None`:
    /// `enabled = false`).
    pub fn of(settings: &HistorySettings, state_path: &Path) -> Option<History> {
        settings.enabled.then(|| History {
            path: settings
                .file
                .clone()
                .unwrap_or_else(|| default_path(state_path)),
            max_age: settings.max_age.as_secs_f64(),
            max_size: settings.max_size,
        })
    }

    /// Appends `records` (nothing at all when there are none: a quiet run does no I/O),
    /// rotating first if the file is too old or too big, and cutting off a torn last line
    /// left by a killed run.
    pub fn append(&self, records: &[Record], now: f64) -> Result<(), HistoryError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut text = Vec::with_capacity(records.len() * 256);
        for r in records {
            serde_json::to_writer(&mut text, r).expect("a record serializes");
            text.push(b'\n');
        }
        let shared = self.check_directory()?;
        self.expire_rotated(shared, now);
        let mut file = self.open_for_append(&self.path, shared)?;
        if self.needs_rotation(&file, now)? {
            self.rotate(shared)?;
            file = self.open_for_append(&self.path, shared)?;
        }
        file.write_all(&text)
            .map_err(|e| self.io("cannot append to it", e))
    }

    fn io(&self, action: &'static str, source: std::io::Error) -> HistoryError {
        HistoryError::Io {
            path: self.path.clone(),
            action,
            source,
        }
    }

    fn refuse(&self, file: &Path, what: &str) -> HistoryError {
        HistoryError::Unsafe {
            path: self.path.clone(),
            reason: format!(
                "{} {what}; hapwatch only writes a regular file of its own that holds a history, and never follows a symbolic link: point [history] file at a path of hapwatch's own, or remove what is there if it is safe to",
                file.display()
            ),
        }
    }

    /// The state's directory checks, with this file's name in the message.
    fn check_directory(&self) -> Result<bool, HistoryError> {
        state::check_own_directory(&self.path).map_err(|e| HistoryError::Unsafe {
            path: self.path.clone(),
            reason: match e {
                state::StateError::Unsafe { reason, .. } => reason,
                other => other.to_string(),
            },
        })
    }

    /// Opens (creating, mode 0600) `path` for appending, after checking that it is a
    /// history of ours, and cuts off a torn last line.
    fn open_for_append(&self, path: &Path, shared: bool) -> Result<File, HistoryError> {
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ELOOP) => self.refuse(path, "is a symbolic link"),
                _ => self.io("cannot open it for appending", e),
            })?;
        let meta = file
            .metadata()
            .map_err(|e| self.io("cannot inspect it", e))?;
        if let Some(what) = state::foreign_file(&meta, shared) {
            return Err(self.refuse(path, &what));
        }
        if !starts_like_history(&file, meta.len()) {
            return Err(self.refuse(
                path,
                "does not look like a hapwatch history (neither empty nor JSON lines starting with a \"time\" key)",
            ));
        }
        repair_torn_tail(&file, meta.len())
            .map_err(|e| self.io("cannot repair its last line", e))?;
        Ok(file)
    }

    fn needs_rotation(&self, file: &File, now: f64) -> Result<bool, HistoryError> {
        let len = file
            .metadata()
            .map_err(|e| self.io("cannot inspect it", e))?
            .len();
        if len == 0 {
            return Ok(false);
        }
        if len >= self.max_size / 2 {
            return Ok(true);
        }
        Ok(first_time(file).is_some_and(|t| now - t > self.max_age))
    }

    /// `FILE` → `FILE.1`, replacing a previous `FILE.1` only if it is a history of ours.
    fn rotate(&self, shared: bool) -> Result<(), HistoryError> {
        let rotated = rotated_path(&self.path);
        self.check_rotated(&rotated, shared)?;
        std::fs::rename(&self.path, &rotated).map_err(|e| self.io("cannot rotate it", e))
    }

    /// Fails unless `FILE.1` is absent or a history file of ours.
    fn check_rotated(&self, rotated: &Path, shared: bool) -> Result<(), HistoryError> {
        match std::fs::symlink_metadata(rotated) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.io("cannot inspect its previous generation", e)),
            Ok(meta) => {
                if let Some(what) = state::foreign_file(&meta, shared) {
                    return Err(self.refuse(rotated, &what));
                }
                let file = open_for_reading(rotated)
                    .map_err(|e| self.io("cannot read its previous generation", e))?;
                if starts_like_history(&file, meta.len()) {
                    Ok(())
                } else {
                    Err(self.refuse(rotated, "does not look like a hapwatch history"))
                }
            }
        }
    }

    /// Removes `FILE.1` once its last line is older than `max_age`. Best effort: a
    /// rotated file that stays is no harm.
    fn expire_rotated(&self, shared: bool, now: f64) {
        let rotated = rotated_path(&self.path);
        if self.check_rotated(&rotated, shared).is_err() {
            return;
        }
        let Ok(file) = open_for_reading(&rotated) else {
            return;
        };
        if last_time(&file).is_some_and(|t| now - t > self.max_age) {
            let _ = std::fs::remove_file(&rotated);
        }
    }
}

/// Opens a history file for reading: never through a symbolic link, never blocking on a
/// FIFO.
fn open_for_reading(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
}

/// Empty, or starting like a history line.
fn starts_like_history(file: &File, len: u64) -> bool {
    if len == 0 {
        return true;
    }
    let mut head = [0u8; LINE_START.len()];
    match file.read_exact_at(&mut head, 0) {
        Ok(()) => head == LINE_START,
        Err(_) => false,
    }
}

/// The time of the first line, if it is whole.
fn first_time(file: &File) -> Option<f64> {
    let mut head = vec![0u8; 64 * 1024];
    let n = file.read_at(&mut head, 0).ok()?;
    let line = head[..n].split(|&b| b == b'\n').next()?;
    #[derive(Deserialize)]
    struct Time {
        time: f64,
    }
    serde_json::from_slice::<Time>(line).ok().map(|t| t.time)
}

/// The time of the last whole line.
fn last_time(file: &File) -> Option<f64> {
    let len = file.metadata().ok()?.len();
    let start = len.saturating_sub(64 * 1024);
    let mut tail = vec![0u8; (len - start) as usize];
    file.read_exact_at(&mut tail, start).ok()?;
    let whole = &tail[..memchr::memrchr(b'\n', &tail)?];
    let line = whole.rsplit(|&b| b == b'\n').next()?;
    #[derive(Deserialize)]
    struct Time {
        time: f64,
    }
    serde_json::from_slice::<Time>(line).ok().map(|t| t.time)
}

/// Cuts the file after its last newline if it does not end with one: what a killed
/// writer left of its last line is dropped, not glued to the next.
fn repair_torn_tail(file: &File, len: u64) -> std::io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    let mut last = [0u8; 1];
    file.read_exact_at(&mut last, len - 1)?;
    if last[0] == b'\n' {
        return Ok(());
    }
    const CHUNK: u64 = 64 * 1024;
    let mut end = len;
    let mut buf = vec![0u8; CHUNK as usize];
    while end > 0 {
        let start = end.saturating_sub(CHUNK);
        let chunk = &mut buf[..(end - start) as usize];
        file.read_exact_at(chunk, start)?;
        if let Some(i) = memchr::memrchr(b'\n', chunk) {
            return file.set_len(start + i as u64 + 1);
        }
        end = start;
    }
    file.set_len(0)
}

/// What [`read`] found.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The records in the time range, oldest first.
    pub records: Vec<Record>,
    /// Lines that were not whole records (a torn last line, a line damaged by hand).
    pub skipped: usize,
}

/// Reads the history at `path` (`FILE.1`, then `FILE`) between `since` and `until`
/// (Unix seconds, both included): never through a symbolic link, only regular files of
/// this user or root that look like a history. A missing file is an empty history.
pub fn read(path: &Path, since: f64, until: f64) -> Result<Loaded, HistoryError> {
    let mut out = Loaded::default();
    for file in [rotated_path(path), path.to_path_buf()] {
        let io = |action, source| HistoryError::Io {
            path: file.clone(),
            action,
            source,
        };
        let mut f = match open_for_reading(&file) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Err(HistoryError::Unsafe {
                    path: file.clone(),
                    reason: "is a symbolic link; hapwatch never reads a history through one".into(),
                })
            }
            Err(e) => return Err(io("cannot read", e)),
        };
        let meta = f.metadata().map_err(|e| io("cannot inspect", e))?;
        if let Some(what) = state::foreign_file(&meta, false) {
            return Err(HistoryError::Unsafe {
                path: file.clone(),
                reason: format!("{what}; hapwatch only reads a regular file of its own"),
            });
        }
        if !starts_like_history(&f, meta.len()) {
            return Err(HistoryError::Unsafe {
                path: file.clone(),
                reason: "does not look like a hapwatch history (JSON lines starting with a \"time\" key)".into(),
            });
        }
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        f.seek(SeekFrom::Start(0))
            .and_then(|_| f.read_to_end(&mut bytes))
            .map_err(|e| io("cannot read", e))?;
        parse_lines(&bytes, since, until, &mut out);
    }
    // Lines are appended in time order, but a clock set back can break that.
    out.records.sort_by(|a, b| a.time.total_cmp(&b.time));
    Ok(out)
}

/// Parses history lines into `out`, keeping those between `since` and `until`.
pub fn parse_lines(bytes: &[u8], since: f64, until: f64, out: &mut Loaded) {
    for line in bytes.split(|&b| b == b'\n') {
        if line.is_empty() {
            continue;
        }
        match serde_json::from_slice::<Record>(line) {
            Ok(r) if r.time >= since && r.time <= until => out.records.push(r),
            Ok(_) => {}
            Err(_) => out.skipped += 1,
        }
    }
}

/// One problem from the time its condition started to hold to its recovery.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Incident {
    /// The alert's fingerprint.
    pub fingerprint: String,
    /// The rule (`alertname`).
    pub rule: String,
    /// `proxy/server` or `proxy`; `None` for an alert about no row.
    pub row: Option<String>,
    /// The `severity` label (empty without one).
    pub severity: String,
    /// The alert's labels.
    pub labels: Labels,
    /// The last summary seen.
    pub summary: String,
    /// When the condition started to hold.
    pub start: f64,
    /// When it fired (was announced, or would have been but for a silence).
    pub fired: f64,
    /// When it resolved (`None`: still firing at the end of the history read).
    pub end: Option<f64>,
    /// Intervals in which a silence held it back (`None` end: until it ended).
    pub silenced: Vec<(f64, Option<f64>)>,
    /// Intervals in which another alert inhibited it (`None` end: until it ended).
    pub inhibited: Vec<(f64, Option<f64>)>,
    /// It started less than [`FLAP_WINDOW`] after the previous incident of the same alert
    /// ended.
    pub flap: bool,
}

impl Incident {
    /// Its length, up to `until` for one still open.
    pub fn duration(&self, until: f64) -> f64 {
        (self.end.unwrap_or(until) - self.start).max(0.0)
    }
}

/// The incidents `records` (oldest first) form: each runs from its alert's firing line
/// (starting at the condition's start, `since`) to its resolved line. An incident whose
/// firing line lies before the records (a history read from a `--since`) starts at the
/// `since` of its resolved line. Ordered by start.
pub fn incidents(records: &[Record]) -> Vec<Incident> {
    let mut open: HashMap<&str, Incident> = HashMap::new();
    let mut last_end: HashMap<&str, f64> = HashMap::new();
    let mut done = Vec::new();
    let new = |r: &Record, start: f64, last_end: &HashMap<&str, f64>| Incident {
        fingerprint: r.fingerprint.clone(),
        rule: r.labels.get("alertname").cloned().unwrap_or_default(),
        row: row_of(&r.labels),
        severity: r.labels.get("severity").cloned().unwrap_or_default(),
        labels: r.labels.clone(),
        summary: r.summary.clone(),
        start,
        fired: r.time,
        end: None,
        silenced: Vec::new(),
        inhibited: Vec::new(),
        flap: last_end
            .get(r.fingerprint.as_str())
            .is_some_and(|end| start - end < FLAP_WINDOW),
    };
    for r in records {
        let key = r.fingerprint.as_str();
        match r.event {
            Event::Firing if !open.contains_key(key) => {
                let mut incident = new(r, r.since.unwrap_or(r.time).min(r.time), &last_end);
                if r.silenced {
                    incident.silenced.push((r.time, None));
                }
                open.insert(key, incident);
            }
            Event::Resolved => {
                let mut incident = open.remove(key).unwrap_or_else(|| {
                    let start = r.since.unwrap_or(r.time).min(r.time);
                    Incident {
                        fired: start,
                        ..new(r, start, &last_end)
                    }
                });
                incident.end = Some(r.time);
                if !r.summary.is_empty() {
                    incident.summary = r.summary.clone();
                }
                close_span(&mut incident.silenced, r.time);
                close_span(&mut incident.inhibited, r.time);
                last_end.insert(key, r.time);
                done.push(incident);
            }
            Event::Silenced => {
                if let Some(incident) = open.get_mut(key) {
                    open_span(&mut incident.silenced, r.time);
                }
            }
            Event::Unsilenced => {
                if let Some(incident) = open.get_mut(key) {
                    close_span(&mut incident.silenced, r.time);
                }
            }
            Event::Inhibited => {
                if let Some(incident) = open.get_mut(key) {
                    open_span(&mut incident.inhibited, r.time);
                }
            }
            Event::Uninhibited => {
                if let Some(incident) = open.get_mut(key) {
                    close_span(&mut incident.inhibited, r.time);
                }
            }
            _ => {}
        }
    }
    done.extend(open.into_values());
    done.sort_by(|a, b| {
        a.start
            .total_cmp(&b.start)
            .then_with(|| a.fingerprint.cmp(&b.fingerprint))
    });
    done
}

/// Starts a span (a silence, an inhibition) at `at` unless one is open.
fn open_span(spans: &mut Vec<(f64, Option<f64>)>, at: f64) {
    if spans.last().is_none_or(|(_, end)| end.is_some()) {
        spans.push((at, None));
    }
}

/// Ends the open span, if any, at `at`.
fn close_span(spans: &mut [(f64, Option<f64>)], at: f64) {
    if let Some((_, end @ None)) = spans.last_mut() {
        *end = Some(at);
    }
}

/// A point in time from the command line: a duration before `now` (`24h`, `7d`), a date
/// (`2026-12-03`, midnight UTC), a date and time (`2026-12-03 08:00[:00]`, UTC) or RFC 3339.
pub fn parse_when(text: &str, now: f64) -> Result<f64, String> {
    let text = text.trim();
    if let Ok(d) = crate::duration::parse(text) {
        return Ok(now - d.as_secs_f64());
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.timestamp() as f64);
    }
    for format in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(text, format) {
            return Ok(t.and_utc().timestamp() as f64);
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(d
            .and_hms_opt(0, 0, 0)
            .expect("midnight")
            .and_utc()
            .timestamp() as f64);
    }
    Err(format!(
        "invalid time {text:?}: expected a duration before now (\"24h\", \"7d\"), a date (\"2026-12-03\"), a UTC date and time (\"2026-12-03 08:00\") or RFC 3339"
    ))
}

/// Parses `--match LABEL=VALUE` arguments.
pub fn parse_matchers(args: &[String]) -> Result<Vec<(String, String)>, String> {
    args.iter()
        .map(|m| match m.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
            _ => Err(format!(
                "invalid --match {m:?}: expected LABEL=VALUE (e.g. proxy=app-main)"
            )),
        })
        .collect()
}

/// What every report hapwatch writes carries near its start, so that `--out` knows a file
/// it may replace.
pub const REPORT_MARK: &str = "hapwatch report";

/// Writes a report to `path` as hapwatch writes its own files: through a new temp file in
/// the same directory (`O_EXCL`, `O_NOFOLLOW`, mode 0644) renamed over the target, never
/// through a symbolic link, and replacing only a regular file of this user (or root) that
/// is a report hapwatch wrote (it carries [`REPORT_MARK`] in its first KiB). Anything
/// else is refused with what to do.
pub fn write_report_file(path: &Path, bytes: &[u8]) -> Result<(), HistoryError> {
    let refuse = |reason: String| HistoryError::Report {
        path: path.to_path_buf(),
        reason,
    };
    let io = |action: &str, source: std::io::Error| HistoryError::Report {
        path: path.to_path_buf(),
        reason: format!("{action}: {source}"),
    };
    let shared = state::check_own_directory(path).map_err(|e| {
        refuse(match e {
            state::StateError::Unsafe { reason, .. } => reason,
            other => other.to_string(),
        })
    })?;
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("cannot inspect it", e)),
        Ok(meta) => {
            if let Some(what) = state::foreign_file(&meta, shared) {
                return Err(refuse(format!(
                    "it {what}; hapwatch writes a report only over a regular file of its own and never through a symbolic link: choose another --out, or remove it if it is safe to"
                )));
            }
            let mut head = vec![0u8; 1024];
            let n = open_for_reading(path)
                .and_then(|f| f.read_at(&mut head, 0))
                .map_err(|e| io("cannot read it", e))?;
            let text = String::from_utf8_lossy(&head[..n]);
            if n > 0 && !text.contains(REPORT_MARK) {
                return Err(refuse(
                    "it exists and is not a report hapwatch wrote, so hapwatch will not replace it: choose another --out, or remove it first if it is no longer needed".into(),
                ));
            }
        }
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map_or_else(|| "report".into(), |n| n.to_string_lossy().into_owned());
    let mut attempt = 0u32;
    let (mut file, tmp) = loop {
        let tmp = dir.join(format!(".{name}.tmp-{}-{attempt}", std::process::id()));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)
        {
            Ok(f) => break (f, tmp),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 100 => {
                attempt += 1
            }
            Err(e) => return Err(io("cannot create a temp file next to it", e)),
        }
    };
    let written = file
        .write_all(bytes)
        .and_then(|_| file.sync_all())
        .and_then(|_| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io("cannot write it", e));
    }
    Ok(())
}

/// Keeps the records whose labels match every `name=value` pair.
pub fn matching<'a>(records: &'a [Record], matchers: &[(String, String)]) -> Vec<&'a Record> {
    records
        .iter()
        .filter(|r| {
            matchers
                .iter()
                .all(|(k, v)| r.labels.get(k).is_some_and(|l| l == v))
        })
        .collect()
}

/// Per-rule counts, for tests and summaries: rule → incidents.
pub fn by_rule(incidents: &[Incident]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for i in incidents {
        *out.entry(i.rule.clone()).or_insert(0) += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(rule: &str, server: &str) -> Labels {
        [
            ("alertname", rule),
            ("proxy", "app"),
            ("server", server),
            ("severity", "critical"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn rec(time: f64, event: Event, l: &Labels, since: Option<f64>) -> Record {
        Record {
            since,
            ..Record::about(time, event, Fingerprint::of(l).to_string(), l.clone())
        }
    }

    #[test]
    fn incidents_from_firing_to_resolved_with_flaps_and_silences() {
        let a = labels("ServerDown", "s1");
        let records = vec![
            rec(60.0, Event::Pending, &a, None),
            rec(120.0, Event::Firing, &a, Some(60.0)),
            rec(180.0, Event::Silenced, &a, None),
            rec(240.0, Event::Unsilenced, &a, None),
            rec(300.0, Event::Resolved, &a, Some(60.0)),
            rec(600.0, Event::Firing, &a, Some(600.0)),
        ];
        let found = incidents(&records);
        assert_eq!(found.len(), 2);
        assert_eq!((found[0].start, found[0].end), (60.0, Some(300.0)));
        assert_eq!(found[0].silenced, vec![(180.0, Some(240.0))]);
        assert!(!found[0].flap);
        assert_eq!((found[1].start, found[1].end), (600.0, None));
        assert!(found[1].flap, "fired again 5 minutes after it resolved");
        assert_eq!(found[1].duration(900.0), 300.0);
        assert_eq!(found[0].row.as_deref(), Some("app/s1"));
    }

    #[test]
    fn inhibitions_are_spans_of_their_incident_ended_by_uninhibited_or_resolved() {
        let a = labels("ServerDown", "s1");
        let records = vec![
            rec(120.0, Event::Firing, &a, Some(120.0)),
            rec(180.0, Event::Inhibited, &a, None),
            rec(240.0, Event::Uninhibited, &a, None),
            rec(300.0, Event::Inhibited, &a, None),
            rec(360.0, Event::Resolved, &a, Some(120.0)),
            rec(600.0, Event::Firing, &a, Some(600.0)),
            rec(600.0, Event::Inhibited, &a, None),
        ];
        let found = incidents(&records);
        assert_eq!(found.len(), 2);
        assert_eq!(
            found[0].inhibited,
            vec![(180.0, Some(240.0)), (300.0, Some(360.0))]
        );
        assert_eq!(found[1].inhibited, vec![(600.0, None)]);
        assert!(found[0].silenced.is_empty());
    }

    #[test]
    fn an_incident_cut_by_the_window_starts_at_its_resolved_since() {
        let a = labels("ServerDown", "s1");
        let found = incidents(&[rec(500.0, Event::Resolved, &a, Some(100.0))]);
        assert_eq!((found[0].start, found[0].end), (100.0, Some(500.0)));
    }

    #[test]
    fn torn_and_foreign_lines_are_skipped() {
        let mut out = Loaded::default();
        parse_lines(
            b"{\"time\":1.0,\"event\":\"firing\",\"fingerprint\":\"0\",\"labels\":{}}\n{\"time\":2.0,\"ev",
            0.0,
            10.0,
            &mut out,
        );
        assert_eq!((out.records.len(), out.skipped), (1, 1));
    }

    #[test]
    fn the_default_path_sits_next_to_the_state() {
        assert_eq!(
            default_path(Path::new("/var/lib/hapwatch/state.json")),
            Path::new("/var/lib/hapwatch/state.history.jsonl")
        );
        assert_eq!(
            rotated_path(Path::new("/x/h.jsonl")),
            Path::new("/x/h.jsonl.1")
        );
    }
}
