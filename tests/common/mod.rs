//! Shared harness for hapwatch's integration tests.
//!
//! Every test crate that needs it starts with `mod common;` and then uses:
//!
//! - [`require`]: skip a test (or fail it under `CI=true`) when an external program such as
//!   `haproxy` or `socat` is not installed.
//! - [`Hapwatch`]: a fluent builder that runs the real `hapwatch` binary and returns an
//!   [`Output`] with chainable assertions, in the spirit of casey/just's test builder:
//!
//!   ```ignore
//!   Hapwatch::new()
//!       .config_text(&config_toml(&[Source::new("lb1").set("socket", path)]))
//!       .args(["show", "--format", "json"])
//!       .run()
//!       .status(0)
//!       .stdout_contains("\"web1\"");
//!   ```
//! - [`Source`] and [`config_toml`]: build `[[source]]` entries without hand-escaping TOML.
//! - [`Haproxy`] (in `haproxy.rs`): a real, throw-away HAProxy with a known set of servers
//!   in known states, reachable through every kind of stats access hapwatch supports.
//! - [`FakeServer`] (in `fake.rs`): deliberately broken stand-ins for HAProxy (silent,
//!   truncating, trickling, garbage, fake HTTP) that record what hapwatch sent them.
//! - JSON helpers ([`json_source`], [`json_row`], [`row_summary`]) for `show --format json`.
//!
//! Only loopback addresses are ever used. Nothing here sleeps as a means of
//! synchronization: waits poll a condition against a deadline ([`wait_until`]).

#![allow(dead_code)] // Each test crate uses a different subset of the harness.

mod fake;
mod haproxy;
pub mod measure;
mod receivers;

#[allow(unused_imports)]
pub use fake::{FakeServer, Reply};
#[allow(unused_imports)]
pub use haproxy::{runtime_command, Access, Backends, Haproxy};
#[allow(unused_imports)]
pub use receivers::{
    http_request, parse_mail_headers, python3, require_python_module, Alertmanager,
    AlertmanagerBuilder, AlertsReceived, HttpReceiver, HttpReceiverBuilder, HttpReply,
    ReceivedMail, ReceivedRequest, Respond, SmtpRefusal, SmtpServer, SmtpServerBuilder, SmtpTls,
    TestCa,
};

use serde_json::Value;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// The only bytes hapwatch may ever send to a runtime API socket (two read-only commands).
pub const QUERY: &[u8] = b"show info;show stat\n";

/// How long [`Hapwatch::run`] lets the binary run before killing it and failing the test.
/// A hang guard only: every test that expects a failure also sets its own short timeouts.
pub const RUN_GUARD: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------
// Skipping when a component is missing
// ---------------------------------------------------------------------------------------

/// True when `component` (an executable such as `haproxy` or `socat`) is installed.
///
/// When it is missing:
/// - under `CI=true` (or any `CI` value but `""`, `0`, `false`) this **panics**, so that a
///   CI image that lost a dependency fails loudly instead of silently testing nothing;
/// - otherwise it prints `SKIPPED: <test name>: <component> not installed` straight to
///   stderr (not captured by libtest, so it shows in a plain `cargo test` run) and returns
///   false; the caller returns early:
///
/// ```ignore
/// if !require("socat") { return; }
/// ```
///
/// A program is looked up in `HAPWATCH_TEST_<NAME>` (an explicit path, e.g.
/// `HAPWATCH_TEST_HAPROXY=/opt/haproxy/sbin/haproxy`), then in `PATH`, then in the sbin
/// directories where distributions install daemons.
pub fn require(component: &str) -> bool {
    if find_program(component).is_some() {
        return true;
    }
    let test = test_name();
    if in_ci() {
        panic!(
            "{test}: {component} is not installed, and CI is set: install it in the CI image \
             (or point HAPWATCH_TEST_{} at it)",
            env_suffix(component)
        );
    }
    // Written to the stderr handle, not with `eprintln!`, which libtest captures: the
    // line shows in a plain `cargo test` run, next to the test's `ok`.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: {test}: {component} not installed"
    );
    false
}

/// The path of executable `name`, found as described in [`require`].
pub fn find_program(name: &str) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(format!("HAPWATCH_TEST_{}", env_suffix(name))) {
        let path = PathBuf::from(path);
        return is_executable(&path).then_some(path);
    }
    let path_dirs = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path_dirs)
        .chain(
            ["/usr/local/sbin", "/usr/sbin", "/sbin"]
                .iter()
                .map(PathBuf::from),
        )
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

/// Runs the hapwatch binary with `args` as user and group 65534 (nobody), as the systemd
/// unit's DynamicUser or a cron user would: `None` (and a `SKIPPED` line) unless this test
/// runs as root with `setpriv` (util-linux) at hand.
pub fn run_as_nobody(args: &[&str]) -> Option<std::process::Output> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!(
            "SKIPPED: {}: needs root to run as another user",
            test_name()
        );
        return None;
    }
    if !require("setpriv") {
        return None;
    }
    let setpriv = find_program("setpriv")?;
    Some(
        Command::new(setpriv)
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_hapwatch"))
            .args(args)
            .output()
            .expect("cannot run setpriv"),
    )
}

fn env_suffix(name: &str) -> String {
    name.to_ascii_uppercase().replace(['-', '.'], "_")
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !matches!(v.trim(), "" | "0" | "false" | "FALSE" | "False"))
}

/// The running test's name (libtest names each test's thread after the test).
pub fn test_name() -> String {
    std::thread::current()
        .name()
        .filter(|n| *n != "main")
        .unwrap_or("<unknown test>")
        .to_string()
}

// ---------------------------------------------------------------------------------------
// Small utilities
// ---------------------------------------------------------------------------------------

/// Path of a file under `tests/fixtures/`.
pub fn fixture(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(relative)
}

/// Bytes of a file under `tests/fixtures/`.
pub fn fixture_bytes(relative: &str) -> Vec<u8> {
    let path = fixture(relative);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", path.display()))
}

/// A fresh temporary directory with a short path (unix socket paths are limited to 107
/// bytes, so it is always created under `/tmp`-style `temp_dir()` with a short prefix).
pub fn temp_dir() -> TempDir {
    tempfile::Builder::new()
        .prefix("hapw")
        .tempdir()
        .expect("cannot create a temporary directory")
}

/// A loopback TCP port that was free a moment ago. The listener is closed before
/// returning, so a port can in rare cases be taken by someone else before it is used:
/// callers that bind it (like [`Haproxy::start`]) retry on a bind failure.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("cannot bind a loopback port")
        .port()
}

/// `n` distinct loopback TCP ports that were free a moment ago (see [`free_port`]).
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("cannot bind a loopback port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local address").port())
        .collect()
}

/// A loopback address on which nothing listens (connecting to it is refused).
pub fn closed_addr() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()))
}

/// Polls `probe` (every 5 ms at first, backing off to 50 ms) until it returns `Ok`, or
/// panics after `limit`, naming `what` and the last `Err` (a description of the state seen).
/// This is the only way the harness waits for something to happen.
pub fn wait_until<T>(
    limit: Duration,
    what: &str,
    mut probe: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + limit;
    let mut pause = Duration::from_millis(5);
    loop {
        match probe() {
            Ok(value) => return value,
            Err(last) if Instant::now() >= deadline => {
                panic!("timed out after {limit:?} waiting for {what}; last state: {last}")
            }
            Err(_) => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Config building
// ---------------------------------------------------------------------------------------

/// One `[[source]]` entry, built key by key; values are TOML-escaped for you.
///
/// ```ignore
/// let src = Source::new("lb1").set("socket", "/run/haproxy.sock").set("timeout", "300ms");
/// ```
#[derive(Debug, Clone)]
pub struct Source {
    name: String,
    entries: Vec<(String, toml::Value)>,
}

impl Source {
    /// A source called `name`, with no endpoint yet.
    pub fn new(name: &str) -> Source {
        Source {
            name: name.to_string(),
            entries: Vec::new(),
        }
    }

    /// Renames the source (handy when one builder makes several).
    pub fn set_name(mut self, name: &str) -> Source {
        self.name = name.to_string();
        self
    }

    /// Sets string key `key` (replacing an earlier value).
    pub fn set(self, key: &str, value: impl AsRef<str>) -> Source {
        self.set_value(key, toml::Value::String(value.as_ref().to_string()))
    }

    /// Sets `key` to a non-string TOML value (e.g. `insecure = true`).
    pub fn set_value(mut self, key: &str, value: toml::Value) -> Source {
        self.entries.retain(|(k, _)| k != key);
        self.entries.push((key.to_string(), value));
        self
    }

    /// The source's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The `[[source]]` block.
    pub fn to_toml(&self) -> String {
        let mut text = String::from("[[source]]\n");
        let name = toml::Value::String(self.name.clone());
        writeln!(text, "name = {name}").unwrap();
        for (key, value) in &self.entries {
            writeln!(text, "{key} = {value}").unwrap();
        }
        text
    }
}

/// A whole config made of `sources`, separated by blank lines.
pub fn config_toml(sources: &[Source]) -> String {
    sources
        .iter()
        .map(Source::to_toml)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Writes `sources` as `hapwatch.toml`-style config at `dir/file_name` and returns its path.
pub fn write_config(dir: &Path, file_name: &str, sources: &[Source]) -> PathBuf {
    let path = dir.join(file_name);
    std::fs::write(&path, config_toml(sources))
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    path
}

// ---------------------------------------------------------------------------------------
// Running the binary
// ---------------------------------------------------------------------------------------

/// Builder for one run of the real `hapwatch` binary.
///
/// The run gets its own temporary directory: [`Hapwatch::config_text`] writes
/// `hapwatch.toml` there and passes `-c` for it, and [`Hapwatch::file`] puts files next to
/// it (relative paths in the config, such as `password_file`, resolve against that
/// directory). `HAPWATCH_CONFIG` is removed from the environment unless set with
/// [`Hapwatch::env`], so the developer's own setup cannot leak in.
pub struct Hapwatch {
    dir: TempDir,
    config: Option<PathBuf>,
    config_mode: Option<u32>,
    pending_config: Option<String>,
    args: Vec<OsString>,
    env: Vec<(OsString, Option<OsString>)>,
    stdin: Option<Vec<u8>>,
    guard: Duration,
}

impl Default for Hapwatch {
    fn default() -> Self {
        Self::new()
    }
}

impl Hapwatch {
    /// A run with no arguments and no config.
    pub fn new() -> Hapwatch {
        Hapwatch {
            dir: temp_dir(),
            config: None,
            config_mode: None,
            pending_config: None,
            args: Vec::new(),
            env: vec![("HAPWATCH_CONFIG".into(), None)],
            stdin: None,
            guard: RUN_GUARD,
        }
    }

    /// The run's temporary directory (where `config_text` and `file` write).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Uses `text` as the config: written to `<dir>/hapwatch.toml`, passed with `-c`.
    pub fn config_text(mut self, text: impl Into<String>) -> Hapwatch {
        self.pending_config = Some(text.into());
        self.config = Some(self.dir.path().join("hapwatch.toml"));
        self
    }

    /// Uses the config file at `path` (passed with `-c`).
    pub fn config_path(mut self, path: impl Into<PathBuf>) -> Hapwatch {
        self.pending_config = None;
        self.config = Some(path.into());
        self
    }

    /// Sets the permission bits of the file written by [`Hapwatch::config_text`]
    /// (default: whatever the umask gives, like a file made by hand). `0o600` makes it
    /// private, which inline passwords require.
    pub fn config_mode(mut self, mode: u32) -> Hapwatch {
        self.config_mode = Some(mode);
        self
    }

    /// Writes `contents` to `<dir>/<name>` before the run.
    pub fn file(self, name: &str, contents: impl AsRef<[u8]>) -> Hapwatch {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        self
    }

    /// Appends one argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Hapwatch {
        self.args.push(arg.into());
        self
    }

    /// Appends arguments.
    pub fn args<I, S>(mut self, args: I) -> Hapwatch
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets an environment variable for the run.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Hapwatch {
        let key = key.into();
        self.env.retain(|(k, _)| *k != key);
        self.env.push((key, Some(value.into())));
        self
    }

    /// Removes an environment variable for the run.
    pub fn env_remove(mut self, key: impl Into<OsString>) -> Hapwatch {
        let key = key.into();
        self.env.retain(|(k, _)| *k != key);
        self.env.push((key, None));
        self
    }

    /// Feeds `bytes` on standard input (default: no input, stdin is `/dev/null`).
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Hapwatch {
        self.stdin = Some(bytes.into());
        self
    }

    /// Kills the run and fails the test if it lasts longer than `limit` (default
    /// [`RUN_GUARD`]).
    pub fn guard(mut self, limit: Duration) -> Hapwatch {
        self.guard = limit;
        self
    }

    /// Runs the binary to completion and returns what it did.
    pub fn run(self) -> Output {
        if let (Some(text), Some(path)) = (&self.pending_config, &self.config) {
            std::fs::write(path, text)
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
            if let Some(mode) = self.config_mode {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                    .expect("cannot chmod the config");
            }
        }
        let mut command = Command::new(env!("CARGO_BIN_EXE_hapwatch"));
        if let Some(config) = &self.config {
            command.arg("-c").arg(config);
        }
        command.args(&self.args).current_dir(self.dir.path());
        for (key, value) in &self.env {
            match value {
                Some(value) => command.env(key, value),
                None => command.env_remove(key),
            };
        }
        command.stdin(if self.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let mut child = Captured::spawn(&mut command);
        let writer = self.stdin.clone().map(|bytes| {
            let mut pipe = child.take_stdin().expect("stdin is piped");
            // A binary that exits without reading all of stdin is not an error here.
            std::thread::spawn(move || drop(pipe.write_all(&bytes)))
        });
        let described = child.described.clone();
        let ended = child.wait_within(self.guard);
        let Some(status) = ended.status else {
            panic!(
                "{described} did not exit within {:?} (killed); stderr so far:\n{}",
                self.guard,
                String::from_utf8_lossy(&ended.stderr)
            );
        };
        if let Some(writer) = writer {
            let _ = writer.join();
        }
        Output {
            command: described,
            code: status.code(),
            stdout: String::from_utf8(ended.stdout).expect("stdout is not UTF-8"),
            stderr: String::from_utf8(ended.stderr).expect("stderr is not UTF-8"),
            elapsed: ended.elapsed,
            config: self.config.clone(),
            _dir: self.dir,
        }
    }
}

/// The `[[rule]]` called `name` from the shipped config/rules.toml, verbatim (a test that
/// wants one shipped rule and not the others its captures would also trigger).
pub fn shipped_rule(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/rules.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let start = text
        .find(&format!("[[rule]]\nname = \"{name}\"\n"))
        .unwrap_or_else(|| panic!("no rule {name} in {}", path.display()));
    let rest = &text[start..];
    let end = rest[1..].find("\n\n").map_or(rest.len(), |i| i + 2);
    rest[..end].to_string()
}

/// `hapwatch test` on a rule-test file holding `cases`, for the config `config` (both
/// written to a temp dir); `FIXTURES` in `cases` names tests/fixtures/haproxy-2.6.
pub fn rule_test(config: &str, cases: &str) -> Output {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/haproxy-2.6")
        .display()
        .to_string();
    Hapwatch::new()
        .file("c.toml", config)
        .file(
            "t.toml",
            format!(
                "config = \"c.toml\"\n{}",
                cases.replace("FIXTURES", &fixtures)
            ),
        )
        .args(["test", "t.toml"])
        .run()
}

/// `text` as a TOML basic string, quotes and escapes included.
pub fn toml_str(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

/// Now, as Unix seconds with a fraction.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// A child process whose stdout and stderr are read to the end by two threads (so a chatty
/// child never blocks on a full pipe): the one place the tests spawn a command and wait
/// for it with a limit.
pub struct Captured {
    child: std::process::Child,
    stdout: std::thread::JoinHandle<Vec<u8>>,
    stderr: std::thread::JoinHandle<Vec<u8>>,
    started: Instant,
    /// The command line, for messages.
    pub described: String,
}

/// How a [`Captured`] command ended.
pub struct Ended {
    /// Its exit status; `None` when it was still running at the limit (then killed).
    pub status: Option<std::process::ExitStatus>,
    /// All it wrote on stdout.
    pub stdout: Vec<u8>,
    /// All it wrote on stderr.
    pub stderr: Vec<u8>,
    /// From spawn to exit (or to the kill).
    pub elapsed: Duration,
}

impl Captured {
    /// Spawns `command` with stdout and stderr piped and drained (stdin as the caller set
    /// it); panics when it cannot start.
    pub fn spawn(command: &mut Command) -> Captured {
        let described = format!("{command:?}");
        let started = Instant::now();
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {described}: {e}"));
        let drain = |mut pipe: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                let _ = pipe.read_to_end(&mut bytes);
                bytes
            })
        };
        let stdout = drain(Box::new(child.stdout.take().expect("stdout is piped")));
        let stderr = drain(Box::new(child.stderr.take().expect("stderr is piped")));
        Captured {
            child,
            stdout,
            stderr,
            started,
            described,
        }
    }

    /// The child's stdin, when the command piped it.
    pub fn take_stdin(&mut self) -> Option<std::process::ChildStdin> {
        self.child.stdin.take()
    }

    /// Waits until the child exits, or kills it `limit` after it started.
    pub fn wait_within(mut self, limit: Duration) -> Ended {
        let deadline = self.started + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("cannot wait for a child") {
                break Some(status);
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        let elapsed = self.started.elapsed();
        Ended {
            status,
            stdout: self.stdout.join().unwrap_or_default(),
            stderr: self.stderr.join().unwrap_or_default(),
            elapsed,
        }
    }
}

/// What one run of the binary did, with chainable assertions. Every failed assertion
/// prints the whole run (command, exit code, stdout, stderr).
pub struct Output {
    /// The command line, for messages.
    pub command: String,
    /// The exit code (`None` when killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// Wall time from spawn to exit.
    pub elapsed: Duration,
    /// The config passed with `-c`, if any.
    pub config: Option<PathBuf>,
    _dir: TempDir,
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "command: {}\nexit code: {:?}\nelapsed: {:?}\n--- stdout ---\n{}--- stderr ---\n{}--- end ---",
            self.command, self.code, self.elapsed, self.stdout, self.stderr
        )
    }
}

impl Output {
    #[track_caller]
    fn fail(&self, why: std::fmt::Arguments<'_>) -> ! {
        panic!("{why}\n{self:?}")
    }

    /// The config path as hapwatch prints it (`-c` argument).
    pub fn config_display(&self) -> String {
        self.config
            .as_ref()
            .expect("the run had no config")
            .display()
            .to_string()
    }

    /// Asserts the exit code.
    #[track_caller]
    pub fn status(&self, code: i32) -> &Output {
        if self.code != Some(code) {
            self.fail(format_args!("expected exit code {code}"));
        }
        self
    }

    /// Asserts exit code 0.
    #[track_caller]
    pub fn success(&self) -> &Output {
        self.status(0)
    }

    /// Asserts that standard output is exactly `want`.
    #[track_caller]
    pub fn stdout_is(&self, want: &str) -> &Output {
        if self.stdout != want {
            self.fail(format_args!("expected stdout to be exactly:\n{want}"));
        }
        self
    }

    /// Asserts that standard output contains `needle`.
    #[track_caller]
    pub fn stdout_contains(&self, needle: &str) -> &Output {
        if !self.stdout.contains(needle) {
            self.fail(format_args!("expected stdout to contain {needle:?}"));
        }
        self
    }

    /// Asserts that standard output does not contain `needle`.
    #[track_caller]
    pub fn stdout_lacks(&self, needle: &str) -> &Output {
        if self.stdout.contains(needle) {
            self.fail(format_args!("expected stdout not to contain {needle:?}"));
        }
        self
    }

    /// Asserts that nothing was printed on standard output.
    #[track_caller]
    pub fn stdout_empty(&self) -> &Output {
        self.stdout_is("")
    }

    /// Asserts that standard error is exactly `want`.
    #[track_caller]
    pub fn stderr_is(&self, want: &str) -> &Output {
        if self.stderr != want {
            self.fail(format_args!("expected stderr to be exactly:\n{want}"));
        }
        self
    }

    /// Asserts that standard error contains `needle`.
    #[track_caller]
    pub fn stderr_contains(&self, needle: &str) -> &Output {
        if !self.stderr.contains(needle) {
            self.fail(format_args!("expected stderr to contain {needle:?}"));
        }
        self
    }

    /// Asserts that standard error does not contain `needle`.
    #[track_caller]
    pub fn stderr_lacks(&self, needle: &str) -> &Output {
        if self.stderr.contains(needle) {
            self.fail(format_args!("expected stderr not to contain {needle:?}"));
        }
        self
    }

    /// Asserts that nothing was printed on standard error.
    #[track_caller]
    pub fn stderr_empty(&self) -> &Output {
        self.stderr_is("")
    }

    /// Asserts that standard error has exactly `n` lines.
    #[track_caller]
    pub fn stderr_line_count(&self, n: usize) -> &Output {
        if self.stderr.lines().count() != n {
            self.fail(format_args!("expected {n} line(s) on stderr"));
        }
        self
    }

    /// Asserts that the run took less than `limit` (use generously, as a hang guard).
    #[track_caller]
    pub fn finished_within(&self, limit: Duration) -> &Output {
        if self.elapsed >= limit {
            self.fail(format_args!("expected the run to finish within {limit:?}"));
        }
        self
    }

    /// Standard output parsed as one JSON document.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| self.fail(format_args!("stdout is not one JSON document: {e}")))
    }
}

// ---------------------------------------------------------------------------------------
// `show --format json` helpers
// ---------------------------------------------------------------------------------------

/// The entry of source `name` in a `show --format json` document.
#[track_caller]
pub fn json_source<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["sources"]
        .as_array()
        .unwrap_or_else(|| panic!("no `sources` array in {doc}"))
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no source {name:?} in {doc}"))
}

/// The rows of a source entry.
#[track_caller]
pub fn json_rows(source: &Value) -> &[Value] {
    source["rows"]
        .as_array()
        .unwrap_or_else(|| panic!("source has no `rows` array: {source}"))
}

/// The row `pxname`/`svname` of a source entry.
#[track_caller]
pub fn json_row<'a>(source: &'a Value, pxname: &str, svname: &str) -> &'a Value {
    json_rows(source)
        .iter()
        .find(|r| r["pxname"] == pxname && r["svname"] == svname)
        .unwrap_or_else(|| panic!("no row {pxname}/{svname} in {source}"))
}

/// Each row of a source entry as `"pxname/svname kind state [status]"`, in dump order:
/// compact enough to compare whole snapshots with `assert_eq!`.
pub fn row_summary(source: &Value) -> Vec<String> {
    json_rows(source)
        .iter()
        .map(|r| {
            let text = |key: &str| r[key].as_str().unwrap_or("<missing>").to_string();
            format!(
                "{}/{} {} {} [{}]",
                text("pxname"),
                text("svname"),
                text("kind"),
                text("state"),
                text("status")
            )
        })
        .collect()
}

/// Minimal CSV reader for `show stat` output: one map of column → value per row (quoted
/// fields are unquoted). Used by the harness to watch HAProxy settle; tests of hapwatch's
/// own parser belong in the unit tests.
pub fn parse_show_stat(text: &str) -> Vec<BTreeMap<String, String>> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let Some(header) = lines.next().and_then(|h| h.strip_prefix("# ")) else {
        return Vec::new();
    };
    let names = split_csv_line(header);
    lines
        .map(|line| {
            names
                .iter()
                .cloned()
                .zip(split_csv_line(line))
                .collect::<BTreeMap<_, _>>()
        })
        .collect()
}

fn split_csv_line(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                fields.last_mut().unwrap().push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(String::new()),
            (c, _) => fields.last_mut().unwrap().push(c),
        }
    }
    fields
}

/// A capture with one field of one row replaced, for conditions the lab never produced
/// (rows are matched on `pxname`/`svname`; the capture must have no quoted field).
pub fn edit_capture(text: &str, proxy: &str, server: &str, column: &str, value: &str) -> String {
    let header: Vec<&str> = text
        .lines()
        .find(|l| l.starts_with('#'))
        .expect("a header line")[2..]
        .split(',')
        .collect();
    let col = header
        .iter()
        .position(|c| *c == column)
        .unwrap_or_else(|| panic!("no column {column}"));
    let mut edited = 0;
    let lines: Vec<String> = text
        .lines()
        .map(|line| {
            let mut fields: Vec<&str> = line.split(',').collect();
            if fields.len() > col && fields[0] == proxy && fields[1] == server {
                fields[col] = value;
                edited += 1;
            }
            fields.join(",")
        })
        .collect();
    assert_eq!(edited, 1, "no row {proxy}/{server} to edit");
    lines.join("\n") + "\n"
}
