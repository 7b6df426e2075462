//! The state file: what one run leaves for the next. Alert lifecycles, the previous sample
//! of each source (for `delta()` / `rate()`), silences, and the outbox of notifications
//! not yet delivered.
//!
//! Safety: a lock file serializes runs (and silence edits); saving writes a temp file in
//! the same directory, fsyncs it, renames it over the old file and fsyncs the directory,
//! so a crash at any point leaves either the old or the new state, never a torn file.
//!
//! hapwatch often runs as root, so the files it touches are treated as hostile until shown
//! otherwise: it never opens the state, its lock or its temp file through a symbolic link
//! (`O_NOFOLLOW`, `O_EXCL`), only reads, moves aside or replaces a regular file that is
//! empty or looks like a hapwatch state (JSON starting with the `version` key), reads at
//! most [`MAX_STATE_BYTES`], and refuses a directory that others may write to without the
//! sticky bit or that another user owns (as ssh refuses an unsafe `authorized_keys`).

use crate::alert::{Labels, Value};
use crate::rules::sample::Sample;
use crate::silence::Silence;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The schema version this build writes. It also reads version 1 (samples whose values
/// are arrays instead of text).
pub const VERSION: u32 = 2;

/// The largest state file hapwatch reads. A state for a 60,000-row HAProxy is a few MB;
/// anything much larger is not one of ours (or a runaway), and reading it whole could
/// exhaust memory.
pub const MAX_STATE_BYTES: u64 = 128 << 20;

/// Everything hapwatch remembers between runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Schema version.
    pub version: u32,
    /// The config this state belongs to (its canonical path): two configs sharing one
    /// state file would resolve each other's alerts and drop each other's outbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    /// Unix time of the last completed run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<f64>,
    /// Alert lifecycles by fingerprint (16 hex digits).
    #[serde(default)]
    pub alerts: BTreeMap<String, AlertState>,
    /// Per source, the counters `delta()` / `rate()` compare against.
    #[serde(default)]
    pub samples: BTreeMap<String, Sample>,
    /// Per source, the samples windows (`delta(col, 5m)`) read, oldest first: only with
    /// rules that use windows, only their columns, only as far back as the longest needs.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub windows: BTreeMap<String, crate::rules::window::History>,
    /// Silences, including expired ones until the next clean-up.
    #[serde(default)]
    pub silences: Vec<Silence>,
    /// Id of the next silence.
    #[serde(default = "first_id")]
    pub next_silence_id: u64,
    /// Deliveries that failed, retried by later runs.
    #[serde(default)]
    pub outbox: Vec<crate::vocab::OutboxItem>,
    /// The last notifications a receiver refused for good (dropped, not retried), newest
    /// last, at most [`REFUSED_KEPT`]: `state show` lists them after the run's stderr line.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<Refused>,
    /// Problems that last across runs and were already reported on stderr (`source lb1`,
    /// `heartbeat`), with the Unix time they started: cron mails every line a run prints,
    /// so each is printed when it starts and when it ends, not on every run.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub problems: BTreeMap<String, f64>,
}

/// How many refused notifications the state remembers.
pub const REFUSED_KEPT: usize = 20;

/// A notification a receiver refused for good.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Refused {
    /// Notifier name.
    pub notifier: String,
    /// Unix time of the refusal.
    pub at: f64,
    /// What it was (`[FIRING:2] ServerDown app-main (lb1)`).
    pub what: String,
    /// The receiver's answer (secrets masked).
    pub error: String,
}

fn first_id() -> u64 {
    1
}

/// Where an alert is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The condition holds, but not yet for `for` / `for_runs`.
    Pending,
    /// Announced (or to be announced) as a problem.
    Firing,
    /// The problem is over; kept for a while so that a flapping alert is recognised.
    Resolved,
}

/// One alert's lifecycle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertState {
    /// Identity.
    pub labels: Labels,
    /// Last rendered summary / description.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Last value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    /// Lifecycle position.
    pub status: Status,
    /// When the condition started to hold (this episode).
    pub active_since: f64,
    /// When it started firing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firing_since: Option<f64>,
    /// Last run in which the condition held.
    pub last_seen: f64,
    /// Consecutive runs in which the condition held.
    pub runs: u32,
    /// Last time a firing notification went out (or was due and silenced: see `silenced`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notified_at: Option<f64>,
    /// When it resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<f64>,
    /// Id of the notification that first announced this episode, from a state written
    /// before threads were per route: the thread of every route that announced it then
    /// (routes that start a thread since are in `threads`). No longer written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread: Option<String>,
    /// Per route (`[[route]]` id; `""`: the root or a rule's `notify`), the id of the
    /// notification that first announced this episode on it: that route's repeats and
    /// recovery are threaded under it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub threads: BTreeMap<String, String>,
    /// Per `[[route]]` id, when that route last announced this episode (each route
    /// repeats on its own `repeat_interval`). Alerts routed by the root use `notified_at`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub routes_notified: BTreeMap<String, f64>,
    /// A silence held back its notifications at the last run: the history writes a line
    /// when that changes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub silenced: bool,
    /// Fingerprint of the alert that inhibits this one (an `[[inhibit]]` entry) as of the
    /// last run: it fires but is not announced. Unset in state files written before
    /// inhibition existed, which is what they mean.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inhibited_by: Option<String>,
}

/// Why the state could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Another run holds the lock for longer than the configured wait.
    #[error("state file {} is locked by another hapwatch run ({holder}; waited {}s); if it hangs, look at that process (the lock is released when it exits)", path.display(), waited.as_secs())]
    Locked {
        /// The state file.
        path: PathBuf,
        /// Who holds it, from the lock file: `PID 1234 since 2026-12-03 09:30:00 UTC, 41 s ago`.
        holder: String,
        /// How long we waited.
        waited: Duration,
    },
    /// The state file, its lock or its directory is not something hapwatch may read or
    /// replace; nothing was changed.
    #[error("state file {}: {reason}; nothing was changed", path.display())]
    Unsafe {
        /// The state file.
        path: PathBuf,
        /// What is wrong and what to do.
        reason: String,
    },
    /// The state file belongs to another config.
    #[error("state file {} belongs to config {owner}, not {config}: two configs sharing one state file resolve each other's alerts and drop each other's outbox; give this config its own [state] file (or --state), or pass --adopt-state if the config was moved", path.display())]
    Foreign {
        /// The state file.
        path: PathBuf,
        /// The config recorded in it.
        owner: String,
        /// The config of this run.
        config: String,
    },
    /// Reading, writing or locking failed.
    #[error("state file {}: {action}: {source}", path.display())]
    Io {
        /// The state file.
        path: PathBuf,
        /// What was being done.
        action: &'static str,
        /// What the OS said.
        source: std::io::Error,
    },
}

/// What loading found.
#[derive(Debug)]
pub enum Loaded {
    /// A valid state file.
    Ok(State),
    /// No state file yet: a first run.
    Missing,
    /// The file was valid JSON with some unreadable parts: what could be read is kept,
    /// the original was moved aside to `moved_to` (or left in place by a read-only peek).
    Salvaged {
        /// What could be read.
        state: State,
        /// Where the original file now is.
        moved_to: PathBuf,
        /// The parts that were dropped, e.g. `alerts.0123abcd: missing field ...`.
        lost: Vec<String>,
    },
    /// The file was unreadable as state and was moved aside to `moved_to`.
    Corrupt {
        /// Where the bad file now is.
        moved_to: PathBuf,
        /// What was wrong with it.
        reason: String,
    },
}

/// An exclusive hold on a state file, released on drop.
#[derive(Debug)]
pub struct Lock {
    path: PathBuf,
    /// The directory is shared (writable by others, sticky): files must be ours.
    shared: bool,
    /// Device and inode of the state file this lock read as a valid state or wrote: that
    /// one may be replaced without reading it again.
    known: std::sync::Mutex<Option<FileId>>,
    _file: File,
}

impl Lock {
    /// Takes the lock of the state file at `path`, waiting up to `wait` for another run.
    ///
    /// Refuses (with nothing changed) a directory that others may write to without the
    /// sticky bit or that another non-root user owns, and a lock file that is a symbolic
    /// link, not a regular file, or (in a shared sticky directory) owned by another user.
    pub fn acquire(path: &Path, wait: Duration) -> Result<Lock, StateError> {
        let lock_path = lock_path(path);
        let io = |action, source| StateError::Io {
            path: path.to_path_buf(),
            action,
            source,
        };
        let dir = parent_dir(path);
        std::fs::create_dir_all(dir).map_err(|e| io("cannot create its directory", e))?;
        let shared = check_directory(path, dir)?;
        let file = open_lock_file(&lock_path).map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => unsafe_file(path, &lock_path, "is a symbolic link"),
            _ => io("cannot open the lock file", e),
        })?;
        let meta = file
            .metadata()
            .map_err(|e| io("cannot inspect the lock file", e))?;
        check_file(path, &lock_path, &meta, shared)?;
        let start = Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => {
                    record_holder(&file);
                    remove_stale_temp_files(path);
                    return Ok(Lock {
                        path: path.to_path_buf(),
                        shared,
                        known: std::sync::Mutex::new(None),
                        _file: file,
                    });
                }
                Err(std::fs::TryLockError::WouldBlock) if start.elapsed() < wait => {
                    std::thread::sleep(Duration::from_millis(25));
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(StateError::Locked {
                        path: path.to_path_buf(),
                        holder: describe_holder(&file, &lock_path),
                        waited: wait,
                    })
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(io("cannot lock", e)),
            }
        }
    }

    /// Reads the state. A missing or empty file is a first run; a file that looks like a
    /// hapwatch state but is not valid state of a version this build understands is moved
    /// aside (`state.json.corrupt-<unix time>`) so that nothing is lost and the run can go
    /// on: from what could be salvaged of it, or from empty state. Anything else at the
    /// path (a link, a device, a FIFO, an unrelated file) is an error that changes nothing.
    pub fn load(&self) -> Result<Loaded, StateError> {
        let Some((bytes, identity)) = read_state_file(&self.path, self.shared)? else {
            return Ok(Loaded::Missing);
        };
        let loaded = interpret(&bytes, &self.path);
        if matches!(loaded, Loaded::Ok(_) | Loaded::Missing) {
            *self.known.lock().unwrap_or_else(|e| e.into_inner()) = Some(identity);
        }
        let (Loaded::Salvaged { moved_to, .. } | Loaded::Corrupt { moved_to, .. }) = &loaded else {
            return Ok(loaded);
        };
        let aside = move_aside(&self.path).map_err(|e| StateError::Io {
            path: self.path.clone(),
            action: "cannot move the unreadable file aside",
            source: e,
        })?;
        debug_assert_eq!(moved_to, &self.path);
        Ok(match loaded {
            Loaded::Salvaged { state, lost, .. } => Loaded::Salvaged {
                state,
                moved_to: aside,
                lost,
            },
            Loaded::Corrupt { reason, .. } => Loaded::Corrupt {
                moved_to: aside,
                reason,
            },
            other => other,
        })
    }

    /// Writes `state` atomically (a new temp file created exclusively, fsync, rename,
    /// fsync of the directory), readable by the owner only. Replaces only a regular file
    /// that looks like a hapwatch state (or nothing).
    pub fn save(&self, state: &State) -> Result<(), StateError> {
        let io = |action, source| StateError::Io {
            path: self.path.clone(),
            action,
            source,
        };
        let known = *self.known.lock().unwrap_or_else(|e| e.into_inner());
        check_replaceable(&self.path, self.shared, known)?;
        let json = serde_json::to_vec(state).map_err(|e| io("cannot encode", e.into()))?;
        let (mut file, tmp) = create_temp_file(&self.path).map_err(|e| io("cannot save", e))?;
        let result = (|| {
            file.write_all(&json)?;
            file.write_all(b"\n")?;
            file.sync_all()?;
            let meta = file.metadata()?;
            std::fs::rename(&tmp, &self.path)?;
            *self.known.lock().unwrap_or_else(|e| e.into_inner()) = Some((meta.dev(), meta.ino()));
            File::open(parent_dir(&self.path))?.sync_all()?;
            Ok(())
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result.map_err(|e| io("cannot save", e))
    }

    /// The state file this lock guards.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl State {
    /// An empty state of the current version.
    pub fn new() -> State {
        State {
            version: VERSION,
            next_silence_id: 1,
            ..State::default()
        }
    }

    /// Records that the config `config` (its canonical path) uses this state, or refuses
    /// when another config's alerts are in it, unless `adopt` says the operator moved the
    /// config on purpose. A state without an owner (a new one, or one written before
    /// owners were recorded) is taken over silently.
    pub fn claim(&mut self, path: &Path, config: &str, adopt: bool) -> Result<(), StateError> {
        match &self.config {
            Some(owner) if owner != config && !adopt => Err(StateError::Foreign {
                path: path.to_path_buf(),
                owner: owner.clone(),
                config: config.to_string(),
            }),
            _ => {
                self.config = Some(config.to_string());
                Ok(())
            }
        }
    }
}

/// Checks, without changing anything, that this user could run with the state at `path`:
/// its directory exists (or can be created), is safe and writable, and what is at the path
/// (if anything) is a state hapwatch may read and replace. For `check --connect`.
pub fn check_usable(path: &Path) -> Result<(), StateError> {
    let dir = parent_dir(path);
    let cannot_write = |what: &Path, verb: &str| {
        StateError::Unsafe {
        path: path.to_path_buf(),
        reason: format!(
            "this user (uid {}) cannot {verb} {}: run hapwatch as the user that owns it, or give that user a state directory of its own (e.g. `install -d -o USER -m 700 {}`)",
            euid(),
            what.display(),
            dir.display()
        ),
    }
    };
    if !dir.exists() {
        let mut ancestor = dir;
        while !ancestor.exists() {
            ancestor = ancestor.parent().unwrap_or(Path::new("/"));
        }
        if !writable(ancestor) {
            return Err(cannot_write(ancestor, "create the state directory in"));
        }
        return Ok(());
    }
    check_directory(path, dir)?;
    if !writable(dir) {
        return Err(cannot_write(dir, "write to"));
    }
    match read_state_file(path, false)? {
        Some((bytes, _)) => match interpret(&bytes, path) {
            Loaded::Corrupt { reason, .. } => Err(StateError::Unsafe {
                path: path.to_path_buf(),
                reason: format!("it is unusable ({reason}); the next run will move it aside"),
            }),
            _ => Ok(()),
        },
        None => Ok(()),
    }
}

/// Whether this process may write to (create files in) `dir`.
fn writable(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: a valid NUL-terminated path; access() only reads it.
    unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) == 0 }
}

/// Reads the state at `path` without locking it and without moving a bad file aside
/// (for dry runs, `state show` and `silence list`): it never writes.
pub fn peek(path: &Path) -> Result<Loaded, StateError> {
    Ok(match read_state_file(path, false)? {
        Some((bytes, _)) => interpret(&bytes, path),
        None => Loaded::Missing,
    })
}

/// The directory a state file lives in (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// The effective user id of this process.
pub(crate) fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Refuses a directory where someone other than this user (or root) could replace the
/// state's files between runs: the directory itself, and every directory above it, both
/// along the path as written and along its real path (links resolved), so that nobody can
/// swap a directory or a link on the way in between a check and an open. Returns whether
/// the state's own directory is a shared sticky one (such as /tmp).
fn check_directory(path: &Path, dir: &Path) -> Result<bool, StateError> {
    let io = |action, source| StateError::Io {
        path: path.to_path_buf(),
        action,
        source,
    };
    let meta = std::fs::metadata(dir).map_err(|e| io("cannot inspect its directory", e))?;
    check_one_directory(path, dir, &meta, true)?;
    let written = std::path::absolute(dir).map_err(|e| io("cannot inspect its directory", e))?;
    let real = std::fs::canonicalize(dir).map_err(|e| io("cannot inspect its directory", e))?;
    for ancestor in written.ancestors().skip(1).chain(real.ancestors()) {
        // `symlink_metadata` would see the links themselves; what matters is who may
        // change the directories they are in, which their own entries cover.
        let meta = std::fs::metadata(ancestor)
            .map_err(|e| io("cannot inspect a directory above it", e))?;
        check_one_directory(path, ancestor, &meta, ancestor == real)?;
    }
    Ok(meta.mode() & 0o022 != 0)
}

/// One directory of [`check_directory`]: owned by root or this user, and writable by
/// nobody else unless sticky. `own` says it is the state's own directory (whose message
/// suggests how to act on another user's state).
fn check_one_directory(
    path: &Path,
    dir: &Path,
    meta: &std::fs::Metadata,
    own: bool,
) -> Result<(), StateError> {
    let mode = meta.mode();
    let refuse = |reason: String| {
        Err(StateError::Unsafe {
            path: path.to_path_buf(),
            reason,
        })
    };
    let role = if own {
        "its directory"
    } else {
        "the directory above it"
    };
    if meta.uid() != 0 && meta.uid() != euid() {
        let owner = user_name(meta.uid()).unwrap_or_else(|| meta.uid().to_string());
        return refuse(format!(
            "{role} {} is owned by uid {}, not by this user (uid {}) or root, who could then replace the state hapwatch reads and the files it writes; to act on that user's state, run the command as that user (`runuser -u {owner} -- hapwatch …`), or use a directory of this user's own",
            dir.display(),
            meta.uid(),
            euid()
        ));
    }
    let writable_by_others = mode & 0o022 != 0;
    let sticky = mode & 0o1000 != 0;
    if writable_by_others && !sticky {
        return refuse(format!(
            "{role} {} is writable by {} (mode {:04o}) without the sticky bit: anyone who can write there could make hapwatch overwrite other files; run `chmod go-w {}` or use a directory of hapwatch's own",
            dir.display(),
            if mode & 0o002 != 0 { "everyone" } else { "its group" },
            mode & 0o7777,
            dir.display()
        ));
    }
    Ok(())
}

/// The login name of `uid`, if it has one.
pub(crate) fn user_name(uid: u32) -> Option<String> {
    // SAFETY: getpwuid returns null or a pointer to a static entry valid until the next
    // getpw* call; the name is copied out at once.
    unsafe {
        let entry = libc::getpwuid(uid);
        if entry.is_null() || (*entry).pw_name.is_null() {
            return None;
        }
        Some(
            std::ffi::CStr::from_ptr((*entry).pw_name)
                .to_string_lossy()
                .into_owned(),
        )
    }
}

/// An error about a file next to (or at) the state path that hapwatch will not touch.
fn unsafe_file(path: &Path, file: &Path, what: &str) -> StateError {
    let role = if file == path {
        "the state file"
    } else {
        "its lock file"
    };
    StateError::Unsafe {
        path: path.to_path_buf(),
        reason: format!(
            "{role} {} {what}; hapwatch only reads or replaces a regular file of its own and never follows a symbolic link: point [state] file (or --state) at a path of hapwatch's own, or remove what is there if it is safe to",
            file.display()
        ),
    }
}

/// Checks an opened (or `lstat`ed) file at or next to the state path: a regular file,
/// and in a shared sticky directory one owned by this user or root.
fn check_file(
    path: &Path,
    file: &Path,
    meta: &std::fs::Metadata,
    shared: bool,
) -> Result<(), StateError> {
    match foreign_file(meta, shared) {
        Some(what) => Err(unsafe_file(path, file, &what)),
        None => Ok(()),
    }
}

/// What makes an opened (or `lstat`ed) file something hapwatch must not read or write as
/// its own (a link, a directory, a FIFO, a device, a socket, another user's file, a hard
/// link to some other file), or `None` for a regular file of its own. `shared`: the file
/// is in a directory others can write to. Used for the state, its lock and the history.
pub fn foreign_file(meta: &std::fs::Metadata, shared: bool) -> Option<String> {
    let kind = meta.file_type();
    use std::os::unix::fs::FileTypeExt;
    let what = if kind.is_symlink() {
        "is a symbolic link"
    } else if kind.is_dir() {
        "is a directory"
    } else if kind.is_fifo() {
        "is a FIFO"
    } else if kind.is_char_device() || kind.is_block_device() {
        "is a device"
    } else if kind.is_socket() {
        "is a socket"
    } else if meta.uid() != 0 && meta.uid() != euid() {
        return Some(format!(
            "is owned by uid {}, not by this user (uid {}) or root{}",
            meta.uid(),
            euid(),
            if shared {
                " (in a directory others can write to)"
            } else {
                ""
            }
        ));
    } else if meta.nlink() > 1 {
        // A hard link to another file (made where protected_hardlinks is off): writing the
        // lock or replacing the state would change that file too.
        return Some(format!(
            "has {} hard links (another name for some other file)",
            meta.nlink()
        ));
    } else {
        return None;
    };
    Some(what.to_string())
}

/// The checks the state's directory gets, for a file hapwatch keeps elsewhere (the
/// history, a report written with `--out`): the directory of `path` and every one above
/// it may be changed by nobody but this user or root (unless sticky). Returns whether
/// the directory is a shared sticky one (such as /tmp).
pub fn check_own_directory(path: &Path) -> Result<bool, StateError> {
    check_directory(path, parent_dir(path))
}

/// Writes `<pid> <unix time>` into the lock file just taken, so that a run that waits in
/// vain can say who holds it (the file's existence alone means nothing: it stays).
fn record_holder(mut file: &File) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // Best effort: the lock itself is the flock, not this text.
    let _ = file
        .set_len(0)
        .and_then(|()| file.write_all(format!("{} {now}\n", std::process::id()).as_bytes()));
}

/// `PID 1234 since 2026-12-03 09:30:00 UTC, 41 s ago`, from a lock file another run holds.
fn describe_holder(file: &File, lock_path: &Path) -> String {
    use std::io::{Seek, SeekFrom};
    let mut text = String::new();
    let mut reader = file;
    let read = reader
        .seek(SeekFrom::Start(0))
        .and_then(|_| reader.take(64).read_to_string(&mut text));
    let mut fields = text.split_whitespace();
    match (
        read.ok()
            .and(fields.next())
            .and_then(|p| p.parse::<u32>().ok()),
        fields.next().and_then(|t| t.parse::<i64>().ok()),
    ) {
        (Some(pid), Some(since)) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            let at = chrono::DateTime::from_timestamp(since, 0).map_or_else(
                || since.to_string(),
                |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
            );
            format!("PID {pid} since {at}, {} s ago", now - since)
        }
        _ => format!(
            "by a process that did not record itself in {}",
            lock_path.display()
        ),
    }
}

/// Opens (creating, mode 0600) the lock file: never through a symbolic link, and without
/// blocking if something else (a FIFO) is there.
fn open_lock_file(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
}

/// Opens a file at the state path for reading: never through a symbolic link, and without
/// blocking if a FIFO is there.
fn open_for_reading(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
}

/// Reads the state file: `None` if there is none. Never follows a symbolic link, never
/// blocks on a FIFO, reads only a regular file of at most [`MAX_STATE_BYTES`], and only
/// one that is empty or looks like a hapwatch state.
/// A file's device and inode: which file a path named when it was read or written.
type FileId = (u64, u64);

fn read_state_file(path: &Path, shared: bool) -> Result<Option<(Vec<u8>, FileId)>, StateError> {
    let io = |action, source| StateError::Io {
        path: path.to_path_buf(),
        action,
        source,
    };
    let file = match open_for_reading(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(unsafe_file(path, path, "is a symbolic link"))
        }
        Err(e) => return Err(io("cannot read", e)),
    };
    let meta = file.metadata().map_err(|e| io("cannot inspect", e))?;
    check_file(path, path, &meta, shared)?;
    if meta.len() > MAX_STATE_BYTES {
        return Err(StateError::Unsafe {
            path: path.to_path_buf(),
            reason: format!(
                "it holds {} bytes, more than the {} MiB a hapwatch state may have; move it away (`hapwatch state reset` refuses it too)",
                meta.len(),
                MAX_STATE_BYTES >> 20
            ),
        });
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // `take` bounds the read even if the file grows while it is read.
    file.take(MAX_STATE_BYTES)
        .read_to_end(&mut bytes)
        .map_err(|e| io("cannot read", e))?;
    if !looks_like_state(&bytes) {
        return Err(not_ours(path));
    }
    Ok(Some((bytes, (meta.dev(), meta.ino()))))
}

fn not_ours(path: &Path) -> StateError {
    StateError::Unsafe {
        path: path.to_path_buf(),
        reason: "it does not look like a hapwatch state (neither empty nor JSON starting with a \"version\" key), so hapwatch will not read, move or replace it; point [state] file (or --state) at a path of hapwatch's own".to_string(),
    }
}

/// Keys a hapwatch state has (the ones after `version` that it writes).
const STATE_KEYS: [&str; 10] = [
    "config",
    "last_run",
    "alerts",
    "samples",
    "windows",
    "silences",
    "next_silence_id",
    "outbox",
    "refused",
    "problems",
];

/// Empty, or JSON that is a hapwatch state: an object with a numeric `version` and either
/// nothing else or at least one of hapwatch's own keys (a Terraform state, also `{"version":
/// 4, …}`, has none). A file that is not whole JSON (a state cut short, to be moved aside)
/// must start the way hapwatch writes one: `{"version": N` and then the end or one of its
/// keys.
fn looks_like_state(bytes: &[u8]) -> bool {
    if bytes.trim_ascii().is_empty() {
        return true;
    }
    match serde_json::from_slice::<serde_json::Value>(bytes) {
        Ok(serde_json::Value::Object(map)) => {
            map.get("version").is_some_and(serde_json::Value::is_u64)
                && (map.len() == 1 || STATE_KEYS.iter().any(|k| map.contains_key(*k)))
        }
        Ok(_) => false,
        Err(_) => starts_like_state(bytes),
    }
}

/// `{"version": N` followed by `}` or `, "<one of STATE_KEYS>"`, white space allowed.
fn starts_like_state(bytes: &[u8]) -> bool {
    let mut rest = bytes.trim_ascii_start();
    for expected in [&b"{"[..], b"\"version\"", b":"] {
        match rest.strip_prefix(expected) {
            Some(after) => rest = after.trim_ascii_start(),
            None => return false,
        }
    }
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return false;
    }
    rest = rest[digits..].trim_ascii_start();
    if rest.is_empty() || rest.starts_with(b"}") {
        return true;
    }
    let Some(after) = rest.strip_prefix(b",") else {
        return false;
    };
    let after = after.trim_ascii_start();
    // A cut inside the next key still counts: the cut may fall anywhere.
    STATE_KEYS.iter().any(|k| {
        let quoted = format!("\"{k}\"");
        let n = quoted.len().min(after.len());
        n > 1 && after[..n] == quoted.as_bytes()[..n]
    })
}

/// Refuses to replace anything at the state path but a regular file that looks like a
/// hapwatch state (`state reset` replaces without reading).
fn check_replaceable(path: &Path, shared: bool, known: Option<FileId>) -> Result<(), StateError> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StateError::Io {
            path: path.to_path_buf(),
            action: "cannot inspect",
            source: e,
        }),
        Ok(meta) => {
            check_file(path, path, &meta, shared)?;
            if known == Some((meta.dev(), meta.ino())) {
                return Ok(());
            }
            let mut head = Vec::new();
            let file = open_for_reading(path)
                .and_then(|f| f.take(MAX_STATE_BYTES).read_to_end(&mut head).map(|_| ()));
            match file {
                Ok(()) if looks_like_state(&head) => Ok(()),
                Ok(_) => Err(not_ours(path)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(StateError::Io {
                    path: path.to_path_buf(),
                    action: "cannot read",
                    source: e,
                }),
            }
        }
    }
}

/// Creates `state.json.tmp-<pid>-<n>` exclusively (`O_EXCL`: never an existing file, never
/// through a symbolic link), mode 0600.
fn create_temp_file(path: &Path) -> std::io::Result<(File, PathBuf)> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mut attempt = 0u32;
    loop {
        let tmp = PathBuf::from(format!(
            "{}.tmp-{}-{nanos}-{attempt}",
            path.display(),
            std::process::id()
        ));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)
        {
            Ok(file) => return Ok((file, tmp)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 100 => {
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Moves the state file to `state.json.corrupt-<unix time>[-n]` without ever replacing an
/// existing file (a hard link fails on an existing name, unlike a rename).
fn move_aside(path: &Path) -> std::io::Result<PathBuf> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut n = 0;
    loop {
        let moved_to = PathBuf::from(match n {
            0 => format!("{}.corrupt-{stamp}", path.display()),
            n => format!("{}.corrupt-{stamp}-{n}", path.display()),
        });
        match std::fs::hard_link(path, &moved_to) {
            Ok(()) => {
                std::fs::remove_file(path)?;
                return Ok(moved_to);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => n += 1,
            // A file system without hard links: a rename, after checking the name is free
            // (the directory is this user's, so nobody else can take it meanwhile).
            Err(_) if !moved_to.exists() => {
                std::fs::rename(path, &moved_to)?;
                return Ok(moved_to);
            }
            Err(e) => return Err(e),
        }
    }
}

/// Removes `state.json.tmp-*` left by a run killed while saving. Only called with the
/// lock held, so no other run is writing one.
fn remove_stale_temp_files(path: &Path) {
    let Some(name) = path.file_name() else {
        return;
    };
    let prefix = format!("{}.tmp-", name.to_string_lossy());
    if let Ok(entries) = std::fs::read_dir(parent_dir(path)) {
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                // Removes a link itself, never what it points to.
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// What the bytes of a state file (which looks like one) hold. `moved_to` is `path`: the
/// caller moves the file aside when it may write.
fn interpret(bytes: &[u8], path: &Path) -> Loaded {
    if bytes.trim_ascii().is_empty() {
        return Loaded::Missing;
    }
    match decode(bytes) {
        Ok(state) => Loaded::Ok(state),
        Err(reason) => match salvage(bytes) {
            Some((state, lost)) => Loaded::Salvaged {
                state,
                moved_to: path.to_path_buf(),
                lost,
            },
            None => Loaded::Corrupt {
                moved_to: path.to_path_buf(),
                reason,
            },
        },
    }
}

/// Parses state JSON of the version this build reads.
fn decode(bytes: &[u8]) -> Result<State, String> {
    match serde_json::from_slice::<State>(bytes) {
        // Version 1 differs only in how samples hold their values, which reading handles.
        Ok(state) if readable_version(state.version) => Ok(State {
            version: VERSION,
            ..state
        }),
        Ok(state) => Err(format!(
            "it has version {}, this hapwatch reads versions 1 to {VERSION}",
            state.version
        )),
        Err(e) => Err(format!("it is not valid state JSON ({e})")),
    }
}

fn readable_version(version: u32) -> bool {
    version == VERSION || version == 1
}

/// Reads what it can of a state that is valid JSON of a readable version but has bad
/// parts (a field of the wrong type, a `null` where a number belongs): each alert, sample,
/// silence and outbox item on its own, so that one bad entry never costs the outbox.
/// `None` if the file is not JSON or not of a version this build reads.
fn salvage(bytes: &[u8]) -> Option<(State, Vec<String>)> {
    use serde::de::DeserializeOwned;
    use serde_json::Value;
    let Value::Object(mut top) = serde_json::from_slice::<Value>(bytes).ok()? else {
        return None;
    };
    let version = top.get("version").and_then(Value::as_u64)?;
    if !u32::try_from(version).is_ok_and(readable_version) {
        return None;
    }
    let mut lost = Vec::new();
    let mut state = State::new();
    fn one<T: DeserializeOwned>(value: Value, name: &str, lost: &mut Vec<String>) -> Option<T> {
        serde_json::from_value(value)
            .map_err(|e| lost.push(format!("{name}: {e}")))
            .ok()
    }
    fn map<T: DeserializeOwned>(
        value: Option<Value>,
        name: &str,
        lost: &mut Vec<String>,
    ) -> BTreeMap<String, T> {
        match value {
            None | Some(Value::Null) => BTreeMap::new(),
            Some(Value::Object(entries)) => entries
                .into_iter()
                .filter_map(|(k, v)| Some((k.clone(), one(v, &format!("{name}.{k}"), lost)?)))
                .collect(),
            Some(_) => {
                lost.push(format!("{name}: not an object"));
                BTreeMap::new()
            }
        }
    }
    fn list<T: DeserializeOwned>(
        value: Option<Value>,
        name: &str,
        lost: &mut Vec<String>,
    ) -> Vec<T> {
        match value {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .into_iter()
                .enumerate()
                .filter_map(|(i, v)| one(v, &format!("{name}[{i}]"), lost))
                .collect(),
            Some(_) => {
                lost.push(format!("{name}: not an array"));
                Vec::new()
            }
        }
    }
    state.config = top
        .remove("config")
        .and_then(|v| one(v, "config", &mut lost));
    state.last_run = top
        .remove("last_run")
        .and_then(|v| one::<Option<f64>>(v, "last_run", &mut lost))
        .flatten();
    state.alerts = map(top.remove("alerts"), "alerts", &mut lost);
    // Version 1's sample format is read by `Sample`'s own deserializer.
    state.samples = map(top.remove("samples"), "samples", &mut lost);
    state.windows = map(top.remove("windows"), "windows", &mut lost);
    state.silences = list(top.remove("silences"), "silences", &mut lost);
    state.outbox = list(top.remove("outbox"), "outbox", &mut lost);
    state.refused = list(top.remove("refused"), "refused", &mut lost);
    state.problems = map(top.remove("problems"), "problems", &mut lost);
    let highest_silence = state
        .silences
        .iter()
        .filter_map(|s| s.id.parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    state.next_silence_id = top
        .remove("next_silence_id")
        .and_then(|v| one(v, "next_silence_id", &mut lost))
        .unwrap_or(1)
        .max(highest_silence + 1);
    Some((state, lost))
}

fn lock_path(path: &Path) -> PathBuf {
    PathBuf::from(format!("{}.lock", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A version 1 file (sample values as arrays) reads as the same counters, and is
    /// written back as the current version with values as text.
    #[test]
    fn version_1_samples_are_read_and_rewritten() {
        let v1 = r#"{"version":1,"last_run":1000.0,"alerts":{},"samples":{"lb1":{
            "taken_at":1000.0,"pid":7,"columns":["stot","chkdown"],
            "rows":"fe/FRONTEND\nbe/s1\nbe/BACKEND\n",
            "values":[[5,null,18446744073709551615],[null,3,0]]}},
            "silences":[],"next_silence_id":1,"outbox":[]}"#;
        let state = decode(v1.as_bytes()).unwrap();
        assert_eq!(state.version, VERSION);
        let sample = &state.samples["lb1"];
        assert_eq!(sample.values, ["5,,18446744073709551615", ",3,0"]);
        let stot = sample.column("stot").unwrap();
        let chkdown = sample.column("chkdown").unwrap();
        assert_eq!(
            (0..3)
                .map(|row| sample.value(stot, row))
                .collect::<Vec<_>>(),
            [Some(5), None, Some(u64::MAX)]
        );
        assert_eq!(
            (0..3)
                .map(|row| sample.value(chkdown, row))
                .collect::<Vec<_>>(),
            [None, Some(3), Some(0)]
        );
        let written = serde_json::to_string(&state).unwrap();
        assert!(
            written.contains(r#""values":["5,,18446744073709551615",",3,0"]"#),
            "{written}"
        );
        assert!(
            written.starts_with(&format!(r#"{{"version":{VERSION},"#)),
            "{written}"
        );
        assert_eq!(decode(written.as_bytes()).unwrap(), state);
    }

    #[test]
    fn save_then_load_round_trips_with_private_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/state.json");
        let lock = Lock::acquire(&path, Duration::ZERO).unwrap();
        assert!(matches!(lock.load().unwrap(), Loaded::Missing));
        let mut state = State::new();
        state.last_run = Some(12.5);
        lock.save(&state).unwrap();
        let Loaded::Ok(loaded) = lock.load().unwrap() else {
            panic!("not loaded")
        };
        assert_eq!(loaded, state);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(
            !leftovers.iter().any(|n| n.contains(".tmp-")),
            "{leftovers:?}"
        );
    }

    /// The old temp name was `state.json.tmp-<pid>`, opened with create+truncate: a link
    /// planted there after the lock was taken made a root run overwrite its target.
    #[test]
    fn a_link_planted_at_a_temp_name_is_never_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious\n").unwrap();
        let lock = Lock::acquire(&path, Duration::ZERO).unwrap();
        for name in [
            format!("state.json.tmp-{}", std::process::id()),
            format!("state.json.tmp-{}-0", std::process::id()),
        ] {
            std::os::unix::fs::symlink(&victim, dir.path().join(name)).unwrap();
        }
        lock.save(&State::new()).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
        assert!(matches!(lock.load().unwrap(), Loaded::Ok(_)));
        assert!(std::fs::symlink_metadata(&path)
            .unwrap()
            .file_type()
            .is_file());
    }

    #[test]
    fn looks_like_state_accepts_ours_and_refuses_the_rest() {
        for ours in [
            "",
            "  \n",
            "{\"version\":2}",
            "{\"version\":2,\"alerts\":{\"x\":tru",
            "{ \"version\" : 1, \"alerts\": [tru",
            "{\"version\":2,\"ale",
            "{\"version\":99}",
            "{\"alerts\":{},\"version\":2}",
        ] {
            assert!(looks_like_state(ours.as_bytes()), "{ours:?}");
        }
        for theirs in [
            "root:x:0:0",
            "{\"users\":[]}",
            "[1,2]",
            "\0\0\0",
            "{\"versions\":2}",
            // A Terraform state: a numeric version, none of hapwatch's keys.
            "{\n  \"version\": 4,\n  \"terraform_version\": \"1.5.0\",\n  \"serial\": 1\n}",
            "{\n  \"version\": 4,\n  \"terraform_version\": \"1.5.",
            "{\"version\":\"2\",\"alerts\":{}}",
        ] {
            assert!(!looks_like_state(theirs.as_bytes()), "{theirs:?}");
        }
    }

    #[test]
    fn salvage_keeps_every_readable_entry() {
        let text = r#"{"version":2,"last_run":"soon","alerts":{"a":{"labels":{},"status":"firing","active_since":null,"last_seen":1.0,"runs":1}},
            "silences":[{"id":"7","matchers":[],"starts_at":1.0,"ends_at":2.0,"comment":"","created_by":""},{"id":"8"}],
            "next_silence_id":3,"outbox":[]}"#;
        let Loaded::Salvaged { state, lost, .. } = interpret(text.as_bytes(), Path::new("s"))
        else {
            panic!("not salvaged")
        };
        assert_eq!(state.silences.len(), 1);
        assert!(state.alerts.is_empty());
        assert_eq!(state.last_run, None);
        assert_eq!(state.next_silence_id, 8, "never reuses a kept silence's id");
        assert_eq!(lost.len(), 3, "{lost:?}");
        assert!(lost[0].starts_with("last_run: "), "{lost:?}");
        assert!(lost[1].starts_with("alerts.a: "), "{lost:?}");
        assert!(lost[2].starts_with("silences[1]: "), "{lost:?}");
        assert!(matches!(
            interpret(b"{\"version\":2,\"alerts\":{}} trailing", Path::new("s")),
            Loaded::Corrupt { .. }
        ));
    }

    #[test]
    fn a_second_lock_waits_then_gives_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let _held = Lock::acquire(&path, Duration::ZERO).unwrap();
        let start = Instant::now();
        let err = Lock::acquire(&path, Duration::from_millis(200)).unwrap_err();
        assert!(start.elapsed() >= Duration::from_millis(200));
        assert!(
            err.to_string().contains(&format!(
                "is locked by another hapwatch run (PID {} since ",
                std::process::id()
            )),
            "{err}"
        );
        assert!(err.to_string().contains(" s ago; waited 0s)"), "{err}");
    }

    #[test]
    fn corrupt_and_newer_files_are_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let lock = Lock::acquire(&path, Duration::ZERO).unwrap();
        std::fs::write(&path, b"{\"version\": 1, \"alerts\": [tru").unwrap();
        let Loaded::Corrupt { moved_to, reason } = lock.load().unwrap() else {
            panic!()
        };
        assert!(reason.contains("not valid state JSON"), "{reason}");
        assert_eq!(
            std::fs::read(&moved_to).unwrap(),
            b"{\"version\": 1, \"alerts\": [tru"
        );
        assert!(!path.exists());
        std::fs::write(&path, b"{\"version\": 99}").unwrap();
        let Loaded::Corrupt {
            moved_to: second,
            reason,
        } = lock.load().unwrap()
        else {
            panic!()
        };
        assert!(reason.contains("version 99"), "{reason}");
        assert_ne!(moved_to, second);
    }
}
