//! The state file: what one run leaves for the next. Alert lifecycles, the previous sample
//! of each source (for `delta()` / `rate()`), silences, and the outbox of notifications
//! not yet delivered.
//!
//! Safety: a lock file serializes runs (and silence edits); saving writes a temp file in
//! the same directory, fsyncs it, renames it over the old file and fsyncs the directory,
//! so a crash at any point leaves either the old or the new state, never a torn file.

use crate::alert::{Labels, Value};
use crate::rules::sample::Sample;
use crate::silence::Silence;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The schema version this build writes. It also reads version 1 (samples whose values
/// are arrays instead of text).
pub const VERSION: u32 = 2;

/// Everything hapwatch remembers between runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Schema version.
    pub version: u32,
    /// Unix time of the last completed run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<f64>,
    /// Alert lifecycles by fingerprint (16 hex digits).
    #[serde(default)]
    pub alerts: BTreeMap<String, AlertState>,
    /// Per source, the counters `delta()` / `rate()` compare against.
    #[serde(default)]
    pub samples: BTreeMap<String, Sample>,
    /// Silences, including expired ones until the next clean-up.
    #[serde(default)]
    pub silences: Vec<Silence>,
    /// Id of the next silence.
    #[serde(default = "first_id")]
    pub next_silence_id: u64,
    /// Deliveries that failed, retried by later runs.
    #[serde(default)]
    pub outbox: Vec<crate::notify::OutboxItem>,
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
}

/// Why the state could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Another run holds the lock for longer than the configured wait.
    #[error("state file {} is locked by another hapwatch run (waited {}s); if none is running, check {}", path.display(), waited.as_secs(), lock.display())]
    Locked {
        /// The state file.
        path: PathBuf,
        /// The lock file.
        lock: PathBuf,
        /// How long we waited.
        waited: Duration,
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
    _file: File,
}

impl Lock {
    /// Takes the lock of the state file at `path`, waiting up to `wait` for another run.
    pub fn acquire(path: &Path, wait: Duration) -> Result<Lock, StateError> {
        let lock_path = lock_path(path);
        let io = |action, source| StateError::Io {
            path: path.to_path_buf(),
            action,
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| io("cannot create its directory", e))?;
        }
        let file =
            open_private(&lock_path, false).map_err(|e| io("cannot open the lock file", e))?;
        let start = Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => {
                    remove_stale_temp_files(path);
                    return Ok(Lock {
                        path: path.to_path_buf(),
                        _file: file,
                    });
                }
                Err(std::fs::TryLockError::WouldBlock) if start.elapsed() < wait => {
                    std::thread::sleep(Duration::from_millis(25));
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(StateError::Locked {
                        path: path.to_path_buf(),
                        lock: lock_path,
                        waited: wait,
                    })
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(io("cannot lock", e)),
            }
        }
    }

    /// Reads the state. A missing file is a first run; a file that is not valid state of a
    /// version this build understands is moved aside (`state.json.corrupt-<unix time>`)
    /// so that nothing is lost and the run can go on from empty state.
    pub fn load(&self) -> Result<Loaded, StateError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Loaded::Missing),
            Err(e) => {
                return Err(StateError::Io {
                    path: self.path.clone(),
                    action: "cannot read",
                    source: e,
                })
            }
        };
        let reason = match decode(&bytes) {
            Ok(state) => return Ok(Loaded::Ok(state)),
            Err(reason) => reason,
        };
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut moved_to = PathBuf::from(format!("{}.corrupt-{stamp}", self.path.display()));
        let mut n = 1;
        while moved_to.exists() {
            moved_to = PathBuf::from(format!("{}.corrupt-{stamp}-{n}", self.path.display()));
            n += 1;
        }
        std::fs::rename(&self.path, &moved_to).map_err(|e| StateError::Io {
            path: self.path.clone(),
            action: "cannot move the unreadable file aside",
            source: e,
        })?;
        Ok(Loaded::Corrupt { moved_to, reason })
    }

    /// Writes `state` atomically (temp file, fsync, rename, fsync of the directory),
    /// readable by the owner only.
    pub fn save(&self, state: &State) -> Result<(), StateError> {
        let io = |action, source| StateError::Io {
            path: self.path.clone(),
            action,
            source,
        };
        let json = serde_json::to_vec(state).map_err(|e| io("cannot encode", e.into()))?;
        let tmp = PathBuf::from(format!(
            "{}.tmp-{}",
            self.path.display(),
            std::process::id()
        ));
        let result = (|| {
            let mut file = open_private(&tmp, true)?;
            file.write_all(&json)?;
            file.write_all(b"\n")?;
            file.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                File::open(dir)?.sync_all()?;
            }
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
}

/// Reads the state at `path` without locking it and without moving a bad file aside
/// (for dry runs and `state show`).
pub fn peek(path: &Path) -> Result<Loaded, StateError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(match decode(&bytes) {
            Ok(state) => Loaded::Ok(state),
            Err(reason) => Loaded::Corrupt {
                moved_to: path.to_path_buf(),
                reason,
            },
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Loaded::Missing),
        Err(e) => Err(StateError::Io {
            path: path.to_path_buf(),
            action: "cannot read",
            source: e,
        }),
    }
}

/// Removes `state.json.tmp-*` left by a run killed while saving. Only called with the
/// lock held, so no other run is writing one.
fn remove_stale_temp_files(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let prefix = format!("{}.tmp-", name.to_string_lossy());
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// Parses state JSON of the version this build reads.
fn decode(bytes: &[u8]) -> Result<State, String> {
    match serde_json::from_slice::<State>(bytes) {
        // Version 1 differs only in how samples hold their values, which reading handles.
        Ok(state) if state.version == VERSION || state.version == 1 => Ok(State {
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

fn lock_path(path: &Path) -> PathBuf {
    PathBuf::from(format!("{}.lock", path.display()))
}

/// Opens (creating, mode 0600) a file; `truncate` for a fresh write.
fn open_private(path: &Path, truncate: bool) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options
        .read(true)
        .write(true)
        .create(true)
        .truncate(truncate);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
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

    #[test]
    fn a_second_lock_waits_then_gives_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let _held = Lock::acquire(&path, Duration::ZERO).unwrap();
        let start = Instant::now();
        let err = Lock::acquire(&path, Duration::from_millis(200)).unwrap_err();
        assert!(start.elapsed() >= Duration::from_millis(200));
        assert!(
            err.to_string()
                .contains("is locked by another hapwatch run"),
            "{err}"
        );
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
