//! What the receivers share: the Python that runs their scripts, child processes
//! started from a script (logged, waited for, killed), start-up limits, and a throw-away CA.

use super::super::{in_ci, temp_dir, test_name, Captured};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// Longest any receiver takes to come up (Python start-up, Alertmanager start-up).
pub(super) const START_LIMIT: Duration = Duration::from_secs(15);

/// How many fresh ports a receiver tries when the one it picked was taken meanwhile.
pub(super) const START_ATTEMPTS: usize = 3;

/// Longest an HTTP connection may sit idle before the receiver drops it, so that a stuck
/// client cannot leave a thread behind forever.
pub(super) const CONNECTION_GUARD: Duration = Duration::from_secs(30);

/// How often blocked reads wake up to look at the stop flag and their deadline.
pub(super) const TICK: Duration = Duration::from_millis(20);

// ---------------------------------------------------------------------------------------
// Components: Python modules
// ---------------------------------------------------------------------------------------

/// The Python that runs the receivers' scripts: `HAPWATCH_TEST_PYTHON3` if set, else
/// Debian's `/usr/bin/python3` (whose `dist-packages` hold `python3-aiosmtpd`; a `python3`
/// first on `PATH`, such as a pyenv build, would not see them).
pub fn python3() -> PathBuf {
    std::env::var_os("HAPWATCH_TEST_PYTHON3")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/python3"))
}

/// True when [`python3`] runs and can `import module`. When not, reports it like
/// [`super::super::require`]: panics under `CI=true`, otherwise prints
/// `SKIPPED: <test>: python module <module> not installed` to stderr and returns false.
///
/// ```ignore
/// if !require_python_module("aiosmtpd") { return; }
/// ```
pub fn require_python_module(module: &str) -> bool {
    let python = python3();
    let probe = Command::new(&python)
        .arg("-c")
        .arg(format!("import {module}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())
        .and_then(|child| wait_exit(child, Duration::from_secs(20)));
    if matches!(probe, Ok(true)) {
        return true;
    }
    let test = test_name();
    let component = if python.is_file() {
        format!("python module {module} (for {})", python.display())
    } else {
        format!("{} (python3, needed for module {module})", python.display())
    };
    let package = match module {
        "aiosmtpd" => "python3-aiosmtpd",
        _ => "python3",
    };
    if in_ci() {
        panic!(
            "{test}: {component} is not installed, and CI is set: install it in the CI image \
             (Debian: apt-get install {package}; or point HAPWATCH_TEST_PYTHON3 at a \
             Python that has it)"
        );
    }
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: {test}: {component} not installed"
    );
    false
}

/// Waits for `child` to exit within `limit` (killing it otherwise); true when it exited 0.
pub(super) fn wait_exit(mut child: Child, limit: Duration) -> Result<bool, String> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Ok(status.success());
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("did not exit within {limit:?}"));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs `command` to completion within `limit` (killing it after that); panics with its
/// output when it fails.
pub(super) fn run_checked(command: &mut Command, limit: Duration) {
    let child = Captured::spawn(command.stdin(Stdio::null()));
    let described = child.described.clone();
    let ended = child.wait_within(limit);
    let output = [ended.stdout, ended.stderr]
        .map(|t| String::from_utf8_lossy(&t).into_owned())
        .concat();
    match ended.status {
        Some(status) if status.success() => {}
        Some(status) => panic!("{described} failed ({status}):\n{output}"),
        None => panic!("{described}: did not exit within {limit:?}:\n{output}"),
    }
}

// ---------------------------------------------------------------------------------------
// A throw-away certificate authority
// ---------------------------------------------------------------------------------------

/// A throw-away CA and one leaf certificate signed by it, valid for `127.0.0.1` and
/// `localhost` (P-256 keys, valid from now for two days), made with the `openssl` command.
///
/// Servers use [`TestCa::cert_pem`] and [`TestCa::key_pem`]; clients trust
/// [`TestCa::ca_pem`] (hapwatch's `ca_file`). A second `TestCa::generate()` gives an
/// unrelated CA, for "wrong CA" tests. Cloning is cheap; the files live until the last
/// clone is dropped.
#[derive(Clone)]
pub struct TestCa {
    dir: Arc<TempDir>,
}

impl TestCa {
    /// Generates a CA and a leaf certificate. Guard the test with `require("openssl")`.
    pub fn generate() -> TestCa {
        let openssl = super::super::find_program("openssl")
            .expect("openssl is not installed: guard the test with require(\"openssl\")");
        let dir = temp_dir();
        let path = |name: &str| dir.path().join(name);
        std::fs::write(
            path("leaf.ext"),
            "basicConstraints = critical, CA:FALSE\n\
             keyUsage = critical, digitalSignature, keyEncipherment\n\
             extendedKeyUsage = serverAuth\n\
             subjectAltName = IP:127.0.0.1, DNS:localhost\n",
        )
        .expect("cannot write leaf.ext");
        let limit = Duration::from_secs(20);
        run_checked(
            Command::new(&openssl)
                .args(["req", "-x509", "-newkey", "ec"])
                .args(["-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"])
                .arg("-keyout")
                .arg(path("ca.key"))
                .arg("-out")
                .arg(path("ca.pem"))
                .args(["-days", "2", "-subj", "/CN=hapwatch test CA"])
                .args(["-addext", "basicConstraints=critical,CA:TRUE"])
                .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]),
            limit,
        );
        run_checked(
            Command::new(&openssl)
                .args(["req", "-new", "-newkey", "ec"])
                .args(["-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"])
                .arg("-keyout")
                .arg(path("leaf.key"))
                .arg("-out")
                .arg(path("leaf.csr"))
                .args(["-subj", "/CN=localhost"]),
            limit,
        );
        run_checked(
            Command::new(&openssl)
                .args(["x509", "-req", "-in"])
                .arg(path("leaf.csr"))
                .arg("-CA")
                .arg(path("ca.pem"))
                .arg("-CAkey")
                .arg(path("ca.key"))
                .args(["-set_serial", "2", "-days", "2", "-extfile"])
                .arg(path("leaf.ext"))
                .arg("-out")
                .arg(path("leaf.pem")),
            limit,
        );
        TestCa { dir: Arc::new(dir) }
    }

    /// The CA certificate (PEM): what a client must trust.
    pub fn ca_pem(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The leaf certificate (PEM) for `127.0.0.1` and `localhost`, signed by the CA.
    pub fn cert_pem(&self) -> PathBuf {
        self.dir.path().join("leaf.pem")
    }

    /// The leaf certificate's private key (PEM, PKCS#8, unencrypted).
    pub fn key_pem(&self) -> PathBuf {
        self.dir.path().join("leaf.key")
    }
}

// ---------------------------------------------------------------------------------------
// Child processes started from a script
// ---------------------------------------------------------------------------------------

/// Spawns `command` with stdout and stderr appended to `log`, in its own directory.
pub(super) fn spawn_logged(command: &mut Command, log: &Path) -> Child {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", log.display()));
    let described = format!("{command:?}");
    command
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("cannot clone a log handle"))
        .stderr(file)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {described}: {e}"))
}

/// Why a child did not come up.
pub(super) enum StartError {
    /// It exited (most likely its port was taken): its exit status.
    Exited(String),
    /// It was still not ready at the deadline: the last state seen.
    TimedOut(String),
}

/// Polls `ready` until it is `Ok`, the child exits, or [`START_LIMIT`] passes.
pub(super) fn wait_started(
    child: &mut Child,
    mut ready: impl FnMut() -> Result<(), String>,
) -> Result<(), StartError> {
    let deadline = Instant::now() + START_LIMIT;
    let mut pause = Duration::from_millis(5);
    loop {
        if let Some(status) = child.try_wait().expect("cannot poll a child") {
            return Err(StartError::Exited(status.to_string()));
        }
        match ready() {
            Ok(()) => return Ok(()),
            Err(last) if Instant::now() >= deadline => return Err(StartError::TimedOut(last)),
            Err(_) => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
        }
    }
}

pub(super) fn kill_child(child: &mut Option<Child>) {
    if let Some(mut child) = child.take() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

pub(super) fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Lines the Python scripts share: the parent watchdog, so that a receiver does not
/// outlive a test binary that was killed before it could drop it.
pub(super) const PY_PARENT_WATCH: &str = r##"
import os as _os, threading as _threading, time as _time

def _watch_parent(ppid=_os.getppid()):
    # Not synchronization: only a guard against outliving a killed test binary.
    while _os.getppid() == ppid:
        _time.sleep(0.2)
    _os._exit(0)

_threading.Thread(target=_watch_parent, daemon=True).start()
"##;
