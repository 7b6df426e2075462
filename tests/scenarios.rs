//! A real HAProxy's first week, replayed (issue #16): the scenarios operators meet, run
//! against a real master-worker HAProxy 2.6 with real web servers in this process and a
//! real SMTP receiver (aiosmtpd), through the shipped `config/rules.toml`. Each step is
//! one `hapwatch run` (simulated minutes with `--now`, so that rates and repeats see
//! minutes, not milliseconds); the mails it delivered are compared with the mails an
//! operator should get. The table of expected and observed mails is printed (see
//! `docs/real-haproxy.md`), then asserted:
//!
//! ```sh
//! cargo test --test scenarios -- --nocapture
//! ```
//!
//! Topology: frontend `fe` → backend `app` (`web1`, `web2`, `check inter 200 fall 1 rise
//! 1`); frontend `fe_small` (`maxconn 4`) → `app`; frontend `fe_solo` → backend `solo`
//! (one server `solo1`, `check inter 2s`, so that a new worker shows it unchecked, `INI`,
//! for up to two seconds after a reload). The web servers answer `GET /` with 200,
//! `/fail` with 500, and `/slow` with 200 when the test lets it; "killing" one closes its listening
//! port (health checks then fail with L4CON), "restarting" it listens again.

mod common;

use common::{find_program, free_ports, parse_show_stat, runtime_command, temp_dir, wait_until};
use common::{Hapwatch, ReceivedMail, SmtpServer};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tempfile::TempDir;

// ---------------------------------------------------------------------------------------
// Web servers that can be killed and restarted on the same port
// ---------------------------------------------------------------------------------------

struct Web {
    addr: SocketAddr,
    running: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
}

impl Web {
    fn start(addr: SocketAddr) -> Web {
        let mut web = Web {
            addr,
            running: None,
        };
        web.restart();
        web
    }

    /// Listens on its port again (std sets SO_REUSEADDR, so the port is free at once).
    fn restart(&mut self) {
        assert!(self.running.is_none(), "{} already runs", self.addr);
        let listener = wait_until(Duration::from_secs(5), "the web port to be free", || {
            TcpListener::bind(self.addr).map_err(|e| e.to_string())
        });
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(conn) = conn {
                    std::thread::spawn(move || serve(conn));
                }
            }
        });
        self.running = Some((stop, thread));
    }

    /// Stops listening: health checks are refused (L4CON).
    fn kill(&mut self) {
        let (stop, thread) = self.running.take().expect("running");
        stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        thread.join().expect("web thread");
    }
}

impl Drop for Web {
    fn drop(&mut self) {
        if self.running.is_some() {
            self.kill();
        }
    }
}

/// Set to let `/slow` requests finish.
static RELEASE_SLOW: AtomicBool = AtomicBool::new(false);

/// One HTTP request per connection: `/fail` → 500, `/slow` → 200 once [`RELEASE_SLOW`] is
/// set (at most 30 s later), else 200.
fn serve(mut conn: TcpStream) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let line = String::from_utf8_lossy(&request);
    let status = if line.starts_with("GET /fail") {
        "500 Internal Server Error"
    } else {
        if line.starts_with("GET /slow") {
            let deadline = Instant::now() + Duration::from_secs(30);
            while !RELEASE_SLOW.load(Ordering::SeqCst) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        "200 OK"
    };
    let _ = conn.write_all(
        format!("HTTP/1.1 {status}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok").as_bytes(),
    );
}

/// One request through `frontend`; the status code.
fn request(frontend: SocketAddr, path: &str) -> u16 {
    let mut conn = TcpStream::connect(frontend).expect("connect to the frontend");
    conn.set_read_timeout(Some(Duration::from_secs(40)))
        .unwrap();
    conn.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let mut reply = String::new();
    let _ = conn.read_to_string(&mut reply);
    reply
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------
// A master-worker HAProxy that can be reloaded, stopped and started again
// ---------------------------------------------------------------------------------------

struct Lb {
    master: Option<Child>,
    config: PathBuf,
    socket: PathBuf,
    fe: SocketAddr,
    fe_small: SocketAddr,
    dir: PathBuf,
}

impl Lb {
    fn start(dir: &Path, webs: [SocketAddr; 4]) -> Lb {
        let ports = free_ports(3);
        let at = |port: u16| SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let (fe, fe_small, fe_solo) = (at(ports[0]), at(ports[1]), at(ports[2]));
        let socket = dir.join("admin.sock");
        let config = dir.join("haproxy.cfg");
        std::fs::write(
            &config,
            format!(
                "\
global
    stats socket {socket} mode 600 level admin expose-fd listeners
    stats timeout 10s
    nbthread 1

defaults
    mode http
    timeout connect 1s
    timeout client 20s
    timeout server 20s
    timeout http-request 20s

frontend fe
    bind {fe}
    default_backend app

frontend fe_small
    bind {fe_small}
    maxconn 4
    default_backend small

frontend fe_solo
    bind {fe_solo}
    default_backend solo

backend app
    server web1 {web1} check inter 200 fall 1 rise 1
    server web2 {web2} check inter 200 fall 1 rise 1

backend solo
    server solo1 {solo1} check inter 2s fall 1 rise 1

# only fe_small (maxconn 4) uses it: its fullconn, shown as slim, is 1
backend small
    server small1 {small1} check inter 200 fall 1 rise 1
",
                socket = socket.display(),
                web1 = webs[0],
                web2 = webs[1],
                solo1 = webs[2],
                small1 = webs[3],
            ),
        )
        .unwrap();
        let mut lb = Lb {
            master: None,
            config,
            socket,
            fe,
            fe_small,
            dir: dir.to_path_buf(),
        };
        lb.run();
        lb
    }

    /// Starts the master (which forks a worker) and waits until every server is checked.
    fn run(&mut self) {
        let program = find_program("haproxy").expect("guarded by require");
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.join("haproxy.log"))
            .unwrap();
        self.master = Some(
            Command::new(program)
                .args(["-W", "-db", "-S"])
                .arg(self.dir.join("master.sock"))
                .arg("-f")
                .arg(&self.config)
                .current_dir(&self.dir)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("start haproxy"),
        );
        self.wait_checked();
    }

    fn stat(&self) -> Result<(u64, Vec<BTreeMap<String, String>>), String> {
        let reply =
            runtime_command(&self.socket, "show info;show stat").map_err(|e| e.to_string())?;
        let pid = reply
            .lines()
            .find_map(|l| l.strip_prefix("Pid: "))
            .and_then(|p| p.trim().parse().ok())
            .ok_or_else(|| format!("no Pid in {reply:?}"))?;
        let csv = &reply[reply.find("# pxname").ok_or("no show stat")?..];
        Ok((pid, parse_show_stat(csv)))
    }

    fn field(&self, proxy: &str, server: &str, column: &str) -> String {
        let (_, rows) = self.stat().unwrap_or_default();
        rows.iter()
            .find(|r| r["pxname"] == proxy && r["svname"] == server)
            .and_then(|r| r.get(column).cloned())
            .unwrap_or_default()
    }

    /// `UP/L4OK`, `DOWN/L4CON`, `UP 1/2/INI`, …
    fn server(&self, proxy: &str, server: &str) -> String {
        format!(
            "{}/{}",
            self.field(proxy, server, "status"),
            self.field(proxy, server, "check_status")
                .trim_start_matches("* ")
        )
    }

    fn wait_server(&self, proxy: &str, server: &str, status: &str) {
        wait_until(
            Duration::from_secs(10),
            &format!("{proxy}/{server} to be {status}"),
            || {
                let now = self.server(proxy, server);
                if now.split('/').next() == Some(status) {
                    Ok(())
                } else {
                    Err(now)
                }
            },
        );
    }

    /// Waits until no server shows `INI` (every one checked once).
    fn wait_checked(&self) {
        wait_until(
            Duration::from_secs(15),
            "haproxy to check every server",
            || {
                let (_, rows) = self.stat()?;
                let unchecked: Vec<String> = rows
                    .iter()
                    .filter(|r| r.get("check_status").is_some_and(|c| c.ends_with("INI")))
                    .map(|r| format!("{}/{}", r["pxname"], r["svname"]))
                    .collect();
                if rows.is_empty() || !unchecked.is_empty() {
                    Err(format!("not checked yet: {unchecked:?}"))
                } else {
                    Ok(())
                }
            },
        );
    }

    fn pid(&self) -> u64 {
        self.stat().map(|(pid, _)| pid).unwrap_or(0)
    }

    fn admin(&self, command: &str) {
        let reply = runtime_command(&self.socket, command).expect("admin command");
        assert!(reply.trim().is_empty(), "{command}: {reply}");
    }

    /// `kill -USR2 <master>`; returns once a new worker answers (its servers may still
    /// be unchecked).
    fn reload(&self) {
        let old = self.pid();
        signal(self.master.as_ref().unwrap().id(), "USR2");
        wait_until(Duration::from_secs(10), "a new worker", || {
            let pid = self.pid();
            if pid != old && pid != 0 {
                Ok(())
            } else {
                Err(format!("pid {pid}"))
            }
        });
    }

    /// SIGTERM to the master: every worker stops, the socket goes away.
    fn stop(&mut self) {
        if let Some(mut master) = self.master.take() {
            signal(master.id(), "TERM");
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && master.try_wait().ok().flatten().is_none() {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = master.kill();
            let _ = master.wait();
        }
    }
}

impl Drop for Lb {
    fn drop(&mut self) {
        self.stop();
    }
}

fn signal(pid: u32, name: &str) {
    let status = Command::new(find_program("kill").unwrap_or_else(|| "kill".into()))
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill -{name} {pid}");
}

// ---------------------------------------------------------------------------------------
// Runs and the table
// ---------------------------------------------------------------------------------------

struct Row {
    scenario: &'static str,
    step: String,
    expected: Vec<String>,
    observed: Vec<String>,
    exit: Option<i32>,
    stderr: usize,
    /// Exit code and number of stderr lines the step must have, where it matters.
    expected_exit: Option<(Option<i32>, usize)>,
}

impl Row {
    fn ok(&self) -> bool {
        self.expected == self.observed
            && self
                .expected_exit
                .is_none_or(|want| want == (self.exit, self.stderr))
    }
}

struct Lab {
    _dir: TempDir,
    config: PathBuf,
    now: f64,
    smtp: SmtpServer,
    seen: usize,
    rows: Vec<Row>,
}

impl Lab {
    /// One `hapwatch run` a simulated minute after the previous one; records the mails
    /// it delivered (`[FIRING:1] ServerDown app (lb1)` → `FIRING:1 ServerDown app`).
    fn run(&mut self, scenario: &'static str, step: &str, expected: &[&str]) -> &mut Row {
        self.now += 60.0;
        let out = Hapwatch::new()
            .config_path(&self.config)
            .args(["run", "--now", &self.now.to_string()])
            .run();
        // Delivery is done when the run exits; give the receiver a moment to log it.
        let mails = if expected.is_empty() {
            std::thread::sleep(Duration::from_millis(100));
            self.smtp.messages()
        } else {
            let want = self.seen + expected.len();
            let deadline = Instant::now() + Duration::from_secs(5);
            while self.smtp.messages().len() < want && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            std::thread::sleep(Duration::from_millis(100));
            self.smtp.messages()
        };
        let observed = mails[self.seen..].iter().map(short).collect();
        self.seen = mails.len();
        self.rows.push(Row {
            scenario,
            step: step.to_string(),
            expected: expected.iter().map(|s| s.to_string()).collect(),
            observed,
            exit: out.code,
            stderr: out.stderr.lines().count(),
            expected_exit: None,
        });
        self.rows.last_mut().unwrap()
    }

    fn table(&self) -> String {
        let mut text = String::from(
            "| scenario | step (one run each) | expected mails | observed mails | exit, stderr lines (expected) |\n|---|---|---|---|---|\n",
        );
        let list = |mails: &[String]| {
            if mails.is_empty() {
                "–".to_string()
            } else {
                mails.join("; ")
            }
        };
        for row in &self.rows {
            text.push_str(&format!(
                "| {} | {} | {} | {}{} | {}, {}{} |\n",
                row.scenario,
                row.step,
                list(&row.expected),
                list(&row.observed),
                if row.ok() { "" } else { " **(differs)**" },
                row.exit.map_or("killed".into(), |c| c.to_string()),
                row.stderr,
                row.expected_exit
                    .map_or(String::new(), |(code, lines)| format!(
                        " ({}, {lines})",
                        code.map_or("killed".into(), |c| c.to_string())
                    )),
            ));
        }
        text
    }
}

fn short(mail: &ReceivedMail) -> String {
    mail.subject()
        .unwrap_or("(no subject)")
        .trim_end_matches(" (lb1)")
        .replace(['[', ']'], "")
}

#[test]
fn a_real_haproxys_first_week() {
    if !common::require("haproxy") {
        return;
    }
    let Some(smtp) = SmtpServer::start_or_skip() else {
        return;
    };
    let dir = temp_dir();
    let web_ports = free_ports(4);
    let at = |port: u16| SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut web1 = Web::start(at(web_ports[0]));
    let mut web2 = Web::start(at(web_ports[1]));
    let mut solo1 = Web::start(at(web_ports[2]));
    let small1 = Web::start(at(web_ports[3]));
    let mut lb = Lb::start(dir.path(), [web1.addr, web2.addr, solo1.addr, small1.addr]);
    let config = dir.path().join("hapwatch.toml");
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/rules.toml");
    std::fs::write(
        &config,
        format!(
            "include = [{rules:?}]\n\n[[source]]\nname = \"lb1\"\nsocket = {socket:?}\n\n\
             [state]\nfile = \"state.json\"\n\n\
             [notifier.mail]\ntype = \"smtp\"\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\n\
             from = \"hapwatch@lb1.example.net\"\nto = [\"oncall@example.net\"]\ntimeout = \"2s\"\nretries = 0\n",
            rules = rules.display().to_string(),
            socket = lb.socket.display().to_string(),
            port = smtp.port(),
        ),
    )
    .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        .floor();
    let mut lab = Lab {
        _dir: dir,
        config: config.clone(),
        now,
        smtp,
        seen: 0,
        rows: Vec::new(),
    };

    lab.run("baseline", "everything UP", &[]);

    // --- a server killed and restarted
    web1.kill();
    lb.wait_server("app", "web1", "DOWN");
    lab.run(
        "server killed and restarted",
        "web1 killed (DOWN, L4CON)",
        &["FIRING:1 ServerDown app"],
    );
    lab.run("server killed and restarted", "still down", &[]);
    web1.restart();
    lb.wait_server("app", "web1", "UP");
    lab.run(
        "server killed and restarted",
        "web1 restarted (UP)",
        &["RESOLVED:1 ServerDown app"],
    );

    // --- a whole backend down
    web1.kill();
    web2.kill();
    lb.wait_server("app", "web1", "DOWN");
    lb.wait_server("app", "web2", "DOWN");
    lab.run(
        "whole backend down",
        // The default [[inhibit]]: the backend's DOWN is the news, not its servers'.
        "web1 and web2 killed: one BackendDown, its servers inhibited",
        &["FIRING:1 BackendDown app"],
    );
    lab.run("whole backend down", "still down", &[]);
    web1.restart();
    web2.restart();
    lb.wait_server("app", "web1", "UP");
    lb.wait_server("app", "web2", "UP");
    lab.run(
        "whole backend down",
        "both restarted: the servers' problem was never announced, nor is its end",
        &["RESOLVED:1 BackendDown app"],
    );

    // --- disable / drain
    lb.admin("disable server app/web1");
    lab.run("disable/drain", "`disable server app/web1` (MAINT)", &[]);
    lb.admin("enable server app/web1");
    lb.wait_server("app", "web1", "UP");
    lab.run("disable/drain", "`enable server` (UP)", &[]);
    lb.admin("set server app/web1 state drain");
    lab.run("disable/drain", "`set server … state drain` (DRAIN)", &[]);
    lb.admin("set server app/web1 state ready");
    lab.run("disable/drain", "`state ready` (UP)", &[]);

    // --- silences
    web2.kill();
    lb.wait_server("app", "web2", "DOWN");
    lab.run("silences", "web2 killed", &["FIRING:1 ServerDown app"]);
    let silence = |args: &[&str]| {
        let out = Hapwatch::new()
            .config_path(&config)
            .arg("silence")
            .args(args)
            .run();
        out.status(0);
        out.stdout.trim().to_string()
    };
    let id = silence(&["add", "--match", "server=web2", "--for", "2h"]);
    lab.run("silences", "silenced (`server=web2`)", &[]);
    web2.restart();
    lb.wait_server("app", "web2", "UP");
    lab.run(
        "silences",
        "web2 back while silenced: the announced problem's recovery",
        &["RESOLVED:1 ServerDown app"],
    );
    silence(&["remove", &id]);
    let id = silence(&["add", "--match", "server=web1", "--for", "2h"]);
    web1.kill();
    lb.wait_server("app", "web1", "DOWN");
    lab.run("silences", "web1 killed while silenced", &[]);
    web1.restart();
    lb.wait_server("app", "web1", "UP");
    lab.run("silences", "web1 back (never announced)", &[]);
    silence(&["remove", &id]);

    // --- reloads
    solo1.kill();
    lb.wait_server("solo", "solo1", "DOWN");
    lab.run(
        "reloads",
        "solo1 killed: backend solo down (solo1 inhibited)",
        &["FIRING:1 BackendDown solo"],
    );
    for _ in 0..20 {
        request(lb.fe, "/");
    }
    for _ in 0..10 {
        request(lb.fe, "/fail");
    }
    lab.run(
        "reloads",
        "30 requests through fe, 10 of them 500",
        &["FIRING:2 Http5xxRatioHigh"],
    );
    lb.reload();
    let seen = lb.server("solo", "solo1");
    let step = format!("reload (USR2); run at once: solo1 reads {seen}, counters from zero");
    lab.run("reloads", &step, &[]);
    lb.wait_checked();
    for _ in 0..30 {
        request(lb.fe, "/");
    }
    lab.run(
        "reloads",
        "solo1 checked (DOWN); 30 good requests",
        &["RESOLVED:2 Http5xxRatioHigh"],
    );
    solo1.restart();
    lb.wait_server("solo", "solo1", "UP");
    lab.run(
        "reloads",
        "solo1 restarted",
        &["RESOLVED:1 BackendDown solo"],
    );

    // --- HAProxy stopped
    lb.stop();
    // One stderr line when the outage starts, none while it lasts, one when it ends; exit
    // 1 while the source cannot be read.
    lab.run(
        "HAProxy stopped",
        "SIGTERM to the master",
        &["FIRING:1 SourceUnreachable"],
    )
    .expected_exit = Some((Some(1), 1));
    for step in ["still stopped", "still stopped"] {
        lab.run("HAProxy stopped", step, &[]).expected_exit = Some((Some(1), 0));
    }
    lb.run();
    lab.run(
        "HAProxy stopped",
        "started again",
        &["RESOLVED:1 SourceUnreachable"],
    )
    .expected_exit = Some((Some(0), 1));

    // --- flaps
    web1.kill();
    lb.wait_server("app", "web1", "DOWN");
    web1.restart();
    lb.wait_server("app", "web1", "UP");
    lab.run(
        "flaps",
        "web1 down and back between two runs",
        &["FIRING:1 ServerFlapped app"],
    );
    lab.run("flaps", "next run", &[]);

    // --- saturation
    let held: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(lb.fe_small).unwrap())
        .collect();
    wait_until(Duration::from_secs(5), "fe_small at 4/4", || {
        match lb.field("fe_small", "FRONTEND", "scur").as_str() {
            "4" => Ok(()),
            other => Err(other.to_string()),
        }
    });
    let status = lb.field("fe_small", "FRONTEND", "status");
    lab.run(
        "saturation",
        &format!("fe_small at 4/4 (status {status})"),
        &["FIRING:1 FrontendFull fe_small"],
    );
    lab.run(
        "saturation",
        "still 4/4",
        &["FIRING:1 SessionsNearLimit fe_small"],
    );
    drop(held);
    wait_until(Duration::from_secs(5), "fe_small idle", || {
        match lb.field("fe_small", "FRONTEND", "scur").as_str() {
            "0" => Ok(()),
            other => Err(other.to_string()),
        }
    });
    // One request, as the trial's `curl`: the backend shows scur/slim 1/1.
    let slow = std::thread::spawn({
        let fe = lb.fe_small;
        move || request(fe, "/slow")
    });
    wait_until(
        Duration::from_secs(5),
        "a request in backend small",
        || match lb.field("small", "BACKEND", "scur").as_str() {
            "1" => Ok(()),
            other => Err(other.to_string()),
        },
    );
    let backend = format!(
        "{}/{}",
        lb.field("small", "BACKEND", "scur"),
        lb.field("small", "BACKEND", "slim")
    );
    lab.run(
        "saturation",
        &format!("fe_small back to 1/4: one slow request; backend small at {backend}"),
        &[
            "RESOLVED:1 FrontendFull fe_small",
            "RESOLVED:1 SessionsNearLimit fe_small",
        ],
    );
    lab.run(
        "saturation",
        &format!("backend small still at {backend} (fullconn, not a limit)"),
        &[],
    );
    RELEASE_SLOW.store(true, Ordering::SeqCst);
    assert_eq!(slow.join().unwrap(), 200);

    // --- SMTP outage
    lab.smtp.stop();
    web2.kill();
    lb.wait_server("app", "web2", "DOWN");
    lab.run("SMTP outage", "SMTP down; web2 killed", &[])
        .expected_exit = Some((Some(1), 1));
    lab.smtp.restart();
    lab.run(
        "SMTP outage",
        "SMTP back (the outbox retries after 1 min)",
        &["FIRING:1 ServerDown app"],
    );
    web2.restart();
    lb.wait_server("app", "web2", "UP");
    lab.run(
        "SMTP outage",
        "web2 restarted",
        &["RESOLVED:1 ServerDown app"],
    );

    // Every recovery replies to the mail that announced its problem; every firing mail
    // starts a thread.
    let mails = lab.smtp.messages();
    let mut threading = Vec::new();
    for (i, mail) in mails.iter().enumerate() {
        let parent = mail.header("In-Reply-To");
        let first = mails[..i]
            .iter()
            .find(|m| m.header("Message-ID").is_some() && m.header("Message-ID") == parent);
        let fine = match (short(mail).starts_with("RESOLVED"), first) {
            (true, Some(first)) => short(first).starts_with("FIRING"),
            (true, None) => false,
            (false, _) => parent.is_none(),
        };
        if !fine {
            threading.push(format!("mail {i} ({}) In-Reply-To {parent:?}", short(mail)));
        }
    }
    lab.rows.push(Row {
        scenario: "mail threads",
        step: format!("all {} mails above", mails.len()),
        expected: vec![
            "each recovery replies to its firing mail; each firing mail starts a thread".into(),
        ],
        observed: if threading.is_empty() {
            vec![
                "each recovery replies to its firing mail; each firing mail starts a thread".into(),
            ]
        } else {
            threading
        },
        exit: Some(0),
        stderr: 0,
        expected_exit: None,
    });

    let table = lab.table();
    let _ = writeln!(std::io::stderr(), "\n{table}");
    let _ = std::fs::write(
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("real-haproxy-table.md"),
        &table,
    );
    let differs: Vec<&Row> = lab.rows.iter().filter(|r| !r.ok()).collect();
    assert!(
        differs.is_empty(),
        "{} steps differ:\n{table}\nhaproxy log:\n{}",
        differs.len(),
        std::fs::read_to_string(lb.dir.join("haproxy.log")).unwrap_or_default()
    );
}
