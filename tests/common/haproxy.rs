//! A real, throw-away HAProxy for integration tests.
//!
//! [`Haproxy::start`] writes a config into a fresh temporary directory, starts
//! `haproxy -f CFG -db` (foreground, as a child of the test), and returns once the runtime
//! API answers and the health checks have settled into the [`Haproxy::BASELINE`] states.
//! Dropping it kills and reaps the process and removes the directory.
//!
//! Topology (all on 127.0.0.1, ports chosen at start):
//!
//! | proxy / server     | what                                              | status     |
//! |--------------------|---------------------------------------------------|------------|
//! | `stats`            | stats page `/stats`, `stats auth admin:s3cret`    | OPEN / UP  |
//! | `fe`               | an HTTP frontend, `default_backend app`           | OPEN       |
//! | `app/web1`, `web2` | L4-checked; a test thread accepts and drops       | UP         |
//! | `app/web3`         | checked, nothing listens on its port              | DOWN       |
//! | `app/web4`         | `disabled`                                        | MAINT      |
//! | `static/static1`   | no `check`                                        | no check   |
//!
//! Stats access: a unix socket at `level admin` (for tests to drive state changes through
//! [`Haproxy::admin`]), a unix socket at `level user` and a TCP socket at `level user`
//! (what hapwatch should be given), and the stats page.

use super::{find_program, free_ports, parse_show_stat, temp_dir, wait_until, Source};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// How long HAProxy gets to start and settle before the test fails.
const SETTLE_LIMIT: Duration = Duration::from_secs(10);

/// How many times a start is retried when HAProxy exits at once (a port picked by
/// [`free_ports`] was taken by someone else in the meantime).
const START_ATTEMPTS: usize = 4;

/// How hapwatch is pointed at the fixture, for [`Haproxy::source`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The unix socket at `level user`.
    UserSocket,
    /// The unix socket at `level admin`.
    AdminSocket,
    /// The TCP stats socket (`ipv4@127.0.0.1:PORT level user`).
    Tcp,
    /// The stats page, with `username` set but no password (add one with `.set(...)`).
    StatsPage,
}

/// A running HAProxy child process and everything it needs.
pub struct Haproxy {
    child: Child,
    backends: Backends,
    admin_socket: PathBuf,
    user_socket: PathBuf,
    tcp: SocketAddr,
    stats: SocketAddr,
    frontend: SocketAddr,
    dead: SocketAddr,
    version: String,
    // Declared last: removed after the process is gone.
    dir: TempDir,
}

impl Haproxy {
    /// Basic-auth user of the stats page.
    pub const STATS_USER: &'static str = "admin";
    /// Basic-auth password of the stats page.
    pub const STATS_PASSWORD: &'static str = "s3cret";

    /// Every row of a settled fixture, as [`super::row_summary`] prints it, in dump order.
    pub const BASELINE: &'static [&'static str] = &[
        "stats/FRONTEND frontend open [OPEN]",
        "stats/BACKEND backend up [UP]",
        "fe/FRONTEND frontend open [OPEN]",
        "app/web1 server up [UP]",
        "app/web2 server up [UP]",
        "app/web3 server down [DOWN]",
        "app/web4 server maint [MAINT]",
        "app/BACKEND backend up [UP]",
        "static/static1 server no_check [no check]",
        "static/BACKEND backend up [UP]",
    ];

    /// Starts HAProxy if it is installed; otherwise reports the skip as [`super::require`]
    /// does (panicking under `CI=true`) and returns `None`:
    ///
    /// ```ignore
    /// let Some(haproxy) = Haproxy::start_or_skip() else { return };
    /// ```
    pub fn start_or_skip() -> Option<Haproxy> {
        super::require("haproxy").then(Haproxy::start)
    }

    /// Starts HAProxy and waits until it has settled. Panics (with HAProxy's own log)
    /// when that fails; call [`super::require`] first to skip when it is not installed.
    pub fn start() -> Haproxy {
        Self::start_with_web1_check(Self::DEFAULT_CHECK)
    }

    /// The health-check parameters of every checked server in the fixture: a check every
    /// 200 ms, down after one failure, up after one success.
    pub const DEFAULT_CHECK: &'static str = "inter 200 fall 1 rise 1";

    /// Like [`Haproxy::start`] (same topology, same [`Haproxy::BASELINE`]), but `app/web1`
    /// is checked with `web1_check` (what follows `check` on its `server` line) instead of
    /// [`Haproxy::DEFAULT_CHECK`]; the other servers are unchanged.
    ///
    /// For tests that force web1 down with `set server app/web1 health down`: that sets
    /// the check health to 0, and with the default `rise 1` the next passing check (200 ms
    /// later) brings the server back at once. Even with a slower `rise`, every passing
    /// check while it is forced down shows it as `DOWN 1/<rise>` (going up) until the next
    /// `health down`, so a slow `inter` such as `"inter 20s fall 1 rise 3"` is what keeps
    /// it plainly `DOWN` between re-sent commands. The first check still runs at start-up
    /// (HAProxy spreads the first checks over the smallest `inter`, 200 ms here), so the
    /// baseline `L4OK` is reached as quickly as with [`Haproxy::start`].
    pub fn start_with_web1_check(web1_check: &str) -> Haproxy {
        let program = find_program("haproxy")
            .expect("haproxy is not installed: guard the test with require(\"haproxy\")");
        let version = haproxy_version(&program);
        let backends = Backends::start(2);
        let mut failures = String::new();
        for attempt in 1..=START_ATTEMPTS {
            let dir = temp_dir();
            let ports = free_ports(4);
            let at = |port: u16| SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            let (tcp, stats, frontend, dead) =
                (at(ports[0]), at(ports[1]), at(ports[2]), at(ports[3]));
            let admin_socket = dir.path().join("admin.sock");
            let user_socket = dir.path().join("user.sock");
            let (web1, web2) = (backends.addrs[0], backends.addrs[1]);
            let config = format!(
                "\
global
    stats socket {admin} mode 600 level admin
    stats socket {user} mode 600 level user
    stats socket ipv4@{tcp} level user
    stats timeout 10s
    maxconn 256
    nbthread 1

defaults
    mode http
    timeout connect 1s
    timeout client 5s
    timeout server 5s

listen stats
    bind {stats}
    stats enable
    stats uri /stats
    stats auth {user_name}:{password}

frontend fe
    bind {frontend}
    default_backend app

backend app
    server web1 {web1} check {web1_check}
    server web2 {web2} check {default_check}
    # nothing listens there: DOWN after the first check
    server web3 {dead} check {default_check}
    server web4 {dead} check {default_check} disabled

backend static
    # no health check: status \"no check\"
    server static1 {web1}
",
                admin = admin_socket.display(),
                user = user_socket.display(),
                user_name = Self::STATS_USER,
                password = Self::STATS_PASSWORD,
                default_check = Self::DEFAULT_CHECK,
            );
            let config_path = dir.path().join("haproxy.cfg");
            std::fs::write(&config_path, config).expect("cannot write haproxy.cfg");
            let log_path = dir.path().join("haproxy.log");
            let log = File::create(&log_path).expect("cannot create haproxy.log");
            let child = Command::new(&program)
                .arg("-f")
                .arg(&config_path)
                .arg("-db")
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("cannot clone the log handle"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
            let mut haproxy = Haproxy {
                child,
                backends: Backends::empty(),
                admin_socket,
                user_socket,
                tcp,
                stats,
                frontend,
                dead,
                version: version.clone(),
                dir,
            };
            match haproxy.settle() {
                Ok(()) => {
                    haproxy.backends = backends;
                    return haproxy;
                }
                Err(Settle::Exited(status)) => {
                    failures.push_str(&format!(
                        "attempt {attempt}: haproxy exited ({status}) during start-up:\n{}\n",
                        haproxy.log()
                    ));
                    // Most likely a port race; try again with fresh ports.
                }
                Err(Settle::TimedOut(last)) => panic!(
                    "haproxy did not settle within {SETTLE_LIMIT:?}; last `show stat` check: \
                     {last}\nhaproxy log:\n{}",
                    haproxy.log()
                ),
            }
        }
        panic!("haproxy failed to start {START_ATTEMPTS} times:\n{failures}");
    }

    /// Polls `show stat` on the admin socket until the baseline states hold.
    fn settle(&mut self) -> Result<(), Settle> {
        let deadline = Instant::now() + SETTLE_LIMIT;
        let mut pause = Duration::from_millis(5);
        loop {
            if let Some(status) = self.child.try_wait().expect("cannot poll haproxy") {
                return Err(Settle::Exited(status.to_string()));
            }
            let state = match runtime_command(&self.admin_socket, "show stat") {
                Ok(text) => baseline_reached(&parse_show_stat(&text)),
                Err(e) => Err(format!("admin socket: {e}")),
            };
            match state {
                Ok(()) => return Ok(()),
                Err(last) if Instant::now() >= deadline => return Err(Settle::TimedOut(last)),
                Err(_) => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
            }
        }
    }

    /// Waits (again) until the [`Haproxy::BASELINE`] states hold, e.g. after
    /// [`Haproxy::thaw`]. Panics with HAProxy's log if they do not within 10 s.
    pub fn wait_settled(&mut self) {
        if let Err(why) = self.settle() {
            let why = match why {
                Settle::Exited(status) => format!("haproxy exited ({status})"),
                Settle::TimedOut(last) => format!("not settled within {SETTLE_LIMIT:?}: {last}"),
            };
            panic!("{why}\nhaproxy log:\n{}", self.log());
        }
    }

    /// Stops the process (SIGSTOP), like a wedged HAProxy: its sockets stay open and the
    /// kernel still queues connections, but nothing answers. Undo with [`Haproxy::thaw`];
    /// dropping the fixture kills it either way.
    pub fn freeze(&self) {
        self.signal("STOP");
    }

    /// Resumes a process stopped by [`Haproxy::freeze`] (SIGCONT). Health checks that
    /// were due meanwhile may flap once: follow with [`Haproxy::wait_settled`].
    pub fn thaw(&self) {
        self.signal("CONT");
    }

    fn signal(&self, name: &str) {
        let kill = find_program("kill").expect("no `kill` program to signal haproxy with");
        let status = Command::new(kill)
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("cannot run kill");
        assert!(status.success(), "kill -{name} {} failed", self.child.id());
    }

    /// Sends one runtime API command on the admin socket and returns the reply, e.g.
    /// `admin("disable server app/web1")`. Panics if the socket cannot be used.
    pub fn admin(&self, command: &str) -> String {
        runtime_command(&self.admin_socket, command).unwrap_or_else(|e| {
            panic!(
                "admin command {command:?} failed: {e}\nhaproxy log:\n{}",
                self.log()
            )
        })
    }

    /// `show stat` from the admin socket, one column → value map per row.
    pub fn show_stat(&self) -> Vec<BTreeMap<String, String>> {
        parse_show_stat(&self.admin("show stat"))
    }

    /// The `status` column of `pxname`/`svname`, e.g. `"UP"`, `"MAINT"`, `"no check"`.
    pub fn status(&self, pxname: &str, svname: &str) -> String {
        find_row(&self.show_stat(), pxname, svname)
            .map(|row| row["status"].clone())
            .unwrap_or_else(|| panic!("no row {pxname}/{svname} in show stat"))
    }

    /// Polls until `pxname`/`svname` has `status` (e.g. after an [`Haproxy::admin`]
    /// command, which HAProxy may apply a moment later).
    pub fn wait_for_status(&self, pxname: &str, svname: &str, status: &str) {
        wait_until(
            SETTLE_LIMIT,
            &format!("{pxname}/{svname} to be {status:?}"),
            || {
                let now = self.status(pxname, svname);
                if now == status {
                    Ok(())
                } else {
                    Err(now)
                }
            },
        )
    }

    /// A `[[source]]` entry that points hapwatch at this HAProxy.
    pub fn source(&self, name: &str, access: Access) -> Source {
        let source = Source::new(name);
        match access {
            Access::UserSocket => source.set("socket", self.user_socket.display().to_string()),
            Access::AdminSocket => source.set("socket", self.admin_socket.display().to_string()),
            Access::Tcp => source.set("tcp", self.tcp.to_string()),
            Access::StatsPage => source
                .set("url", self.stats_url())
                .set("username", Self::STATS_USER),
        }
    }

    /// Writes a hapwatch config with `sources` into this fixture's directory.
    pub fn write_config(&self, file_name: &str, sources: &[Source]) -> PathBuf {
        super::write_config(self.dir.path(), file_name, sources)
    }

    /// The temporary directory holding the config, sockets and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The unix socket at `level admin`.
    pub fn admin_socket(&self) -> &Path {
        &self.admin_socket
    }

    /// The unix socket at `level user`.
    pub fn user_socket(&self) -> &Path {
        &self.user_socket
    }

    /// The TCP stats socket (`level user`).
    pub fn tcp_addr(&self) -> SocketAddr {
        self.tcp
    }

    /// The stats page URL, without `;csv`.
    pub fn stats_url(&self) -> String {
        format!("http://{}/stats", self.stats)
    }

    /// The HTTP frontend `fe` (requests get 502s: the test backends drop connections).
    pub fn frontend_addr(&self) -> SocketAddr {
        self.frontend
    }

    /// An address where nothing listens (`web3` points at it).
    pub fn dead_addr(&self) -> SocketAddr {
        self.dead
    }

    /// The version HAProxy reports in `show info`, e.g. `2.6.12-1+deb12u4`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The OS process id (`Pid` in `show info`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What HAProxy printed so far (warnings, server state changes).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("haproxy.log")).unwrap_or_default()
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // `backends` and then `dir` are dropped after this, in declaration order.
    }
}

enum Settle {
    Exited(String),
    TimedOut(String),
}

fn find_row<'a>(
    rows: &'a [BTreeMap<String, String>],
    pxname: &str,
    svname: &str,
) -> Option<&'a BTreeMap<String, String>> {
    rows.iter().find(|r| {
        r.get("pxname").map(String::as_str) == Some(pxname)
            && r.get("svname").map(String::as_str) == Some(svname)
    })
}

/// Ok once web1/web2 passed a check, web3 failed one, and web4 is in maintenance.
fn baseline_reached(rows: &[BTreeMap<String, String>]) -> Result<(), String> {
    let field = |sv: &str, col: &str| {
        find_row(rows, "app", sv)
            .and_then(|r| r.get(col).cloned())
            .unwrap_or_else(|| "<missing>".into())
    };
    let seen = ["web1", "web2", "web3", "web4"]
        .map(|sv| format!("{sv}={}/{}", field(sv, "status"), field(sv, "check_status")))
        .join(" ");
    let up = |sv: &str| field(sv, "status") == "UP" && field(sv, "check_status").ends_with("L4OK");
    if up("web1")
        && up("web2")
        && field("web3", "status") == "DOWN"
        && field("web4", "status") == "MAINT"
    {
        Ok(())
    } else {
        Err(seen)
    }
}

/// Sends `command` to a runtime API unix socket (non-interactive: HAProxy answers and
/// closes) and returns the whole reply.
pub fn runtime_command(socket: &Path, command: &str) -> std::io::Result<String> {
    let mut stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(format!("{command}\n").as_bytes())?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply)?;
    Ok(reply)
}

/// `2.6.12-1+deb12u4` from `HAProxy version 2.6.12-1+deb12u4 2026/10/17 - https://…`.
fn haproxy_version(program: &Path) -> String {
    let out = Command::new(program)
        .arg("-v")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} -v: {e}", program.display()));
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .next()
        .and_then(|l| l.strip_prefix("HAProxy version "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("unexpected `haproxy -v` output: {text:?}"))
        .to_string()
}

/// Loopback TCP servers standing in for web servers: each accepts connections and drops
/// them at once, which is all an L4 health check needs, or hands them to a handler.
pub struct Backends {
    /// Where each server listens.
    pub addrs: Vec<SocketAddr>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Backends {
    fn empty() -> Backends {
        Backends {
            addrs: Vec::new(),
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
        }
    }

    fn start(count: usize) -> Backends {
        Backends::start_with(count, drop)
    }

    /// `count` servers, each calling `on_connection` with every connection it accepts
    /// (in its accept thread: spawn for anything long).
    pub fn start_with(count: usize, on_connection: fn(TcpStream)) -> Backends {
        let mut backends = Backends::empty();
        for _ in 0..count {
            let listener =
                TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("cannot bind a backend");
            backends
                .addrs
                .push(listener.local_addr().expect("backend address"));
            let stop = Arc::clone(&backends.stop);
            backends.threads.push(std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(conn) = conn {
                        on_connection(conn);
                    }
                }
            }));
        }
        backends
    }
}

impl Drop for Backends {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for addr in &self.addrs {
            // Wake the blocked `accept` so the thread sees the flag.
            let _ = TcpStream::connect_timeout(addr, Duration::from_secs(1));
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}
