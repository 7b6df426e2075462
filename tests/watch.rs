//! `hapwatch watch`: the real binary in a loop against a real HAProxy (tests/common/haproxy.rs)
//! and a webhook receiver; signals sent with kill(2); a notify socket standing in for
//! systemd. No timing is asserted: every wait has a generous "it happened" bound.

mod common;

use common::{temp_dir, wait_until, Access, Haproxy, HttpReceiver};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(20);

/// A running `hapwatch … watch`, its stderr in a file; killed when dropped.
struct Watch {
    child: Child,
    stderr: PathBuf,
    stdout: PathBuf,
}

impl Watch {
    fn start(config: &Path, args: &[&str], env: &[(&str, &str)]) -> Watch {
        let dir = config.parent().unwrap();
        let stderr = dir.join(format!("watch-{}.stderr", std::process::id()));
        let stdout = dir.join(format!("watch-{}.stdout", std::process::id()));
        let mut command = Command::new(env!("CARGO_BIN_EXE_hapwatch"));
        command
            .arg("-c")
            .arg(config)
            .args(args)
            .env_remove("HAPWATCH_CONFIG")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap());
        for (k, v) in env {
            command.env(k, v);
        }
        Watch {
            child: command.spawn().unwrap(),
            stderr,
            stdout,
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(
            unsafe { libc::kill(self.child.id() as libc::pid_t, signal) },
            0
        );
    }

    /// Its exit status, waiting at most LIMIT.
    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + LIMIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "watch did not exit; stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Nothing on stderr but, on a loaded machine, the one line saying that a cycle took
/// longer than the interval.
fn assert_quiet(stderr: &str) {
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(
        lines.is_empty() || (lines.len() == 1 && lines[0].contains("more than --every")),
        "{stderr}"
    );
}

/// `last_run` of the state file (`None`: no state yet).
fn last_run(state: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(state).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json["last_run"].as_f64()
}

/// Waits until `n` more cycles have saved the state after now.
fn wait_cycles(watch: &mut Watch, state: &Path, n: usize) {
    for _ in 0..n {
        let before = last_run(state);
        wait_until(LIMIT, "a watch cycle", || {
            if !watch.running() {
                return Ok(()); // reported by the caller's asserts
            }
            match last_run(state) {
                now if now.is_some() && now != before => Ok(()),
                now => Err(format!("last_run {now:?}; stderr:\n{}", watch.stderr())),
            }
        });
    }
    assert!(watch.running(), "watch ended; stderr:\n{}", watch.stderr());
}

/// A config reading `haproxy` with rule `when` on app/web1 and a webhook notifier.
fn config(haproxy: &Haproxy, dir: &Path, hook: &str, when: &str) -> PathBuf {
    let source = haproxy.source("lb1", Access::UserSocket).to_toml();
    let text = format!(
        r#"{source}
[state]
file = "{state}"

[[rule]]
name = "Web1"
scope = {{ type = "server", proxy = "app", server = "web1" }}
when = '{when}'
severity = "critical"
summary = "app/web1 is {{{{ state }}}}"

[notifier.hook]
type = "webhook"
url = "{hook}"
retries = 0
timeout = "2s"
"#,
        state = dir.join("state.json").display(),
    );
    let path = dir.join("hapwatch.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A haproxy, a webhook receiver and a config in a temp dir whose rule `Web1` fires when
/// web1 is down (see [`config`]).
struct Lab {
    haproxy: Haproxy,
    hook: HttpReceiver,
    dir: tempfile::TempDir,
    config: PathBuf,
    state: PathBuf,
}

impl Lab {
    /// `None` (the skip said) when haproxy is not installed.
    fn start() -> Option<Lab> {
        let haproxy = Haproxy::start_or_skip()?;
        let hook = HttpReceiver::start();
        let dir = temp_dir();
        let config = config(&haproxy, dir.path(), &hook.url(), r#"state == "down""#);
        let state = dir.path().join("state.json");
        Some(Lab {
            haproxy,
            hook,
            dir,
            config,
            state,
        })
    }
}

/// Waits until the webhook got web1's firing notification (the watch's stderr if not).
fn wait_for_web1(hook: &HttpReceiver, watch: &Watch) {
    wait_until(LIMIT, "the webhook for web1", || {
        match firing_for_web1(hook) {
            0 => Err(watch.stderr()),
            _ => Ok(()),
        }
    });
}

fn firing_for_web1(hook: &HttpReceiver) -> usize {
    hook.requests()
        .iter()
        .filter(|r| {
            let body = r.body_text();
            body.contains("web1") && body.contains("firing")
        })
        .count()
}

/// web1's address moved to a port where nothing listens: its checks fail and it stays DOWN.
fn break_web1(haproxy: &Haproxy) {
    haproxy.admin(&format!(
        "set server app/web1 addr 127.0.0.1 port {}",
        haproxy.dead_addr().port()
    ));
    haproxy.wait_for_status("app", "web1", "DOWN");
}

#[test]
fn watch_notices_a_server_going_down_and_notifies() {
    let Some(Lab {
        haproxy,
        hook,
        dir: _dir,
        config,
        state,
    }) = Lab::start()
    else {
        return;
    };
    let mut watch = Watch::start(&config, &["watch", "--every", "300ms"], &[]);
    wait_cycles(&mut watch, &state, 2);
    assert_eq!(firing_for_web1(&hook), 0, "{:?}", hook.requests());

    break_web1(&haproxy);
    wait_for_web1(&hook, &watch);
    // Once, not once per cycle.
    wait_cycles(&mut watch, &state, 3);
    assert_eq!(firing_for_web1(&hook), 1, "{:?}", hook.requests());
    watch.signal(libc::SIGTERM);
    assert_eq!(watch.wait_exit().code(), Some(0), "{}", watch.stderr());
    assert_quiet(&watch.stderr());
}

#[test]
fn sigterm_and_sigint_in_the_wait_end_it_at_once_with_the_state_saved() {
    for signal in [libc::SIGTERM, libc::SIGINT] {
        let dir = temp_dir();
        let config = file_config(dir.path());
        let state = dir.path().join("state.json");
        // An hour between cycles: only the signal can end the wait in time.
        let mut watch = Watch::start(&config, &["watch", "--every", "1h"], &[]);
        wait_until(LIMIT, "the first cycle", || {
            last_run(&state).ok_or_else(|| watch.stderr())
        });
        watch.signal(signal);
        assert_eq!(watch.wait_exit().code(), Some(0), "{}", watch.stderr());
        assert_eq!(watch.stderr(), "");
        // The state is whole and records the cycle's firing alert.
        let text = std::fs::read_to_string(&state).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            json["alerts"].as_object().map(|a| a.len()),
            Some(1),
            "{text}"
        );
    }
}

/// A config reading a captured dump in which backend `app-main` is down.
fn file_config(dir: &Path) -> PathBuf {
    let dump = common::fixture("haproxy-2.6/backend-down.csv");
    let text = format!(
        r#"[state]
file = "{state}"

[[source]]
name = "lb1"
file = "{dump}"

[[rule]]
name = "BackendDown"
scope = {{ type = "backend" }}
when = 'state == "down"'
severity = "critical"
summary = "{{{{ proxy }}}} is down"
"#,
        state = dir.join("state.json").display(),
        dump = dump.display(),
    );
    let path = dir.join("hapwatch.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn sighup_with_a_broken_config_keeps_running_and_says_so_once() {
    let Some(Lab {
        haproxy,
        hook,
        dir: _dir,
        config,
        state,
    }) = Lab::start()
    else {
        return;
    };
    let mut watch = Watch::start(&config, &["watch", "--every", "300ms"], &[]);
    wait_cycles(&mut watch, &state, 1);

    let good = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, good.replace("when = ", "wehn = ")).unwrap();
    for _ in 0..3 {
        watch.signal(libc::SIGHUP);
        wait_cycles(&mut watch, &state, 2);
    }
    let stderr = watch.stderr();
    assert_eq!(
        stderr.matches("SIGHUP: ").count(),
        1,
        "the error is said once:\n{stderr}"
    );
    assert!(stderr.contains("hapwatch.toml:"), "{stderr}");
    assert!(
        stderr.contains("still running with the config loaded before"),
        "{stderr}"
    );

    // The running config still works: web1 going down is announced.
    break_web1(&haproxy);
    wait_for_web1(&hook, &watch);
    watch.signal(libc::SIGTERM);
    assert_eq!(watch.wait_exit().code(), Some(0), "{}", watch.stderr());
}

#[test]
fn sighup_with_a_valid_changed_config_applies_it() {
    // web1 is UP: the rule does not match.
    let Some(Lab {
        haproxy: _haproxy,
        hook,
        dir: _dir,
        config,
        state,
    }) = Lab::start()
    else {
        return;
    };
    let mut watch = Watch::start(&config, &["watch", "--every", "300ms"], &[]);
    wait_cycles(&mut watch, &state, 2);
    assert_eq!(firing_for_web1(&hook), 0);

    // Changed: the rule now matches web1 as it is.
    let changed = std::fs::read_to_string(&config)
        .unwrap()
        .replace(r#"when = 'state == "down"'"#, r#"when = 'state == "up"'"#);
    std::fs::write(&config, changed).unwrap();
    // Not before the signal: the config is compiled once.
    wait_cycles(&mut watch, &state, 2);
    assert_eq!(firing_for_web1(&hook), 0, "{:?}", hook.requests());
    watch.signal(libc::SIGHUP);
    wait_for_web1(&hook, &watch);
    assert_quiet(&watch.stderr());
}

fn hapwatch(config: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_hapwatch"))
        .arg("-c")
        .arg(config)
        .args(args)
        .env_remove("HAPWATCH_CONFIG")
        .output()
        .unwrap()
}

#[test]
fn a_silence_added_while_watch_runs_is_honoured_at_the_next_cycle() {
    let Some(Lab {
        haproxy,
        hook,
        dir: _dir,
        config,
        state,
    }) = Lab::start()
    else {
        return;
    };
    let mut watch = Watch::start(&config, &["watch", "--every", "200ms"], &[]);
    wait_cycles(&mut watch, &state, 1);

    let added = hapwatch(
        &config,
        &["silence", "add", "--match", "server=web1", "--for", "1h"],
    );
    assert!(added.status.success(), "{added:?}");
    break_web1(&haproxy);
    // The alert fires (the state says so) and nothing is sent.
    wait_until(LIMIT, "web1 firing in the state", || {
        let text = std::fs::read_to_string(&state).unwrap_or_default();
        match text.contains("\"firing\"") && text.contains("web1") {
            true => Ok(()),
            false => Err(text),
        }
    });
    wait_cycles(&mut watch, &state, 3);
    assert_eq!(firing_for_web1(&hook), 0, "{:?}", hook.requests());
    // No cycle's save lost the silence.
    let shown = hapwatch(&config, &["state", "show", "--format", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(json["silences"].as_array().map(Vec::len), Some(1), "{json}");
    assert_quiet(&watch.stderr());
}

#[test]
fn runs_and_silences_interleave_with_watch_without_corruption() {
    let dir = temp_dir();
    let config = file_config(dir.path());
    let state = dir.path().join("state.json");
    let mut watch = Watch::start(&config, &["watch", "--every", "50ms"], &[]);
    wait_cycles(&mut watch, &state, 1);
    for i in 0..15 {
        let run = hapwatch(&config, &["run"]);
        assert!(run.status.success(), "run {i}: {run:?}");
        let added = hapwatch(
            &config,
            &[
                "silence",
                "add",
                "--match",
                &format!("proxy=p{i}"),
                "--for",
                "1h",
            ],
        );
        assert!(added.status.success(), "silence {i}: {added:?}");
    }
    wait_cycles(&mut watch, &state, 2);
    let text = std::fs::read_to_string(&state).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        json["silences"].as_array().map(Vec::len),
        Some(15),
        "{text}"
    );
    // The backend's alert was announced once, by whichever came first, and no state was
    // ever found unusable (that is printed).
    assert_eq!(
        json["alerts"].as_object().map(|a| a.len()),
        Some(1),
        "{text}"
    );
    watch.signal(libc::SIGTERM);
    assert_eq!(watch.wait_exit().code(), Some(0));
    // A cycle that waited for the lock may have overrun its 50 ms: said once at most.
    let stderr = watch.stderr();
    assert!(
        stderr.is_empty() || (stderr.lines().count() == 1 && stderr.contains("more than --every")),
        "{stderr}"
    );
    // The notification printed on stdout (no notifier) by watch or one run, not both.
    let printed = std::fs::read_to_string(&watch.stdout).unwrap();
    assert!(printed.matches("[FIRING").count() <= 1, "{printed}");
}

#[test]
fn a_cycle_longer_than_the_interval_is_reported_once_and_the_next_starts_at_once() {
    // A "HAProxy" that accepts and never answers: each cycle waits for the source's
    // timeout (400 ms), longer than --every 100ms.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let _held = std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            held.push(stream);
        }
    });
    let dir = temp_dir();
    let text = format!(
        "[state]\nfile = \"{}\"\n\n[[source]]\nname = \"slow\"\ntcp = \"{addr}\"\ntimeout = \"400ms\"\n",
        dir.path().join("state.json").display()
    );
    let config = dir.path().join("hapwatch.toml");
    std::fs::write(&config, text).unwrap();
    let state = dir.path().join("state.json");
    let mut watch = Watch::start(&config, &["-v", "watch", "--every", "100ms"], &[]);
    wait_cycles(&mut watch, &state, 4);
    watch.signal(libc::SIGTERM);
    assert_eq!(watch.wait_exit().code(), Some(0));
    let stderr = watch.stderr();
    assert_eq!(
        stderr.matches("the next starts at once").count(),
        1,
        "reported once:\n{stderr}"
    );
    // Every later slow cycle is an info line (-v), one each.
    assert!(
        stderr.matches("more than --every 100ms").count() >= 3,
        "{stderr}"
    );
    // And the source's failure is an error once too (then info lines, with -v).
    let errors = stderr
        .lines()
        .filter(|l| l.starts_with("hapwatch: source slow: ") && !l.contains("printed again"))
        .count();
    assert_eq!(errors, 1, "{stderr}");
}

#[test]
fn verbose_says_one_line_per_cycle_and_json_log_lines_parse() {
    let dir = temp_dir();
    let config = file_config(dir.path());
    let state = dir.path().join("state.json");
    let mut watch = Watch::start(
        &config,
        &["-v", "--log-format", "json", "watch", "--every", "100ms"],
        &[],
    );
    wait_cycles(&mut watch, &state, 3);
    watch.signal(libc::SIGTERM);
    assert_eq!(watch.wait_exit().code(), Some(0));
    let stderr = watch.stderr();
    let messages: Vec<String> = stderr
        .lines()
        .map(|line| {
            let json: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            json["message"].as_str().unwrap().to_string()
        })
        .collect();
    for n in 1..=3 {
        let prefix = format!("cycle {n}: ");
        assert_eq!(
            messages.iter().filter(|m| m.starts_with(&prefix)).count(),
            1,
            "{stderr}"
        );
    }
    assert!(messages.last().unwrap().contains("SIGTERM"), "{stderr}");
}

#[test]
fn systemd_hears_ready_watchdog_and_stopping_on_the_notify_socket() {
    for abstract_name in [false, true] {
        let dir = temp_dir();
        let config = file_config(dir.path());
        let (socket, name) = if abstract_name {
            use std::os::linux::net::SocketAddrExt;
            let name = format!("hapwatch-test-{}", std::process::id());
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(&name).unwrap();
            (UnixDatagram::bind_addr(&addr).unwrap(), format!("@{name}"))
        } else {
            let path = dir.path().join("notify.sock");
            (
                UnixDatagram::bind(&path).unwrap(),
                path.display().to_string(),
            )
        };
        socket.set_read_timeout(Some(LIMIT)).unwrap();
        let mut watch = Watch::start(
            &config,
            &["watch", "--every", "100ms"],
            &[("NOTIFY_SOCKET", &name), ("WATCHDOG_USEC", "5000000")],
        );
        let receive = || {
            let mut buf = [0u8; 512];
            let n = socket
                .recv(&mut buf)
                .unwrap_or_else(|e| panic!("{e}: {}", watch.stderr()));
            String::from_utf8_lossy(&buf[..n]).into_owned()
        };
        let first = receive();
        assert!(first.starts_with("READY=1\n"), "{first}");
        for _ in 0..3 {
            assert_eq!(receive(), "WATCHDOG=1");
        }
        watch.signal(libc::SIGTERM);
        let mut last = receive();
        while last == "WATCHDOG=1" {
            last = receive();
        }
        assert_eq!(last, "STOPPING=1");
        assert_eq!(watch.wait_exit().code(), Some(0));
        assert_quiet(&watch.stderr());
    }
}

#[test]
fn state_check_fails_when_no_run_updated_the_state_within_max_age() {
    let dir = temp_dir();
    let config = file_config(dir.path());
    let check = |max_age: &str| hapwatch(&config, &["state", "check", "--max-age", max_age]);

    let never = check("30s");
    assert_eq!(never.status.code(), Some(1), "{never:?}");
    assert!(String::from_utf8_lossy(&never.stderr).contains("no run recorded yet"));

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let ran = hapwatch(&config, &["run", "--now", &(now - 120).to_string()]);
    assert!(ran.status.success(), "{ran:?}");
    let stale = check("30s");
    assert_eq!(stale.status.code(), Some(1), "{stale:?}");
    let stderr = String::from_utf8_lossy(&stale.stderr);
    assert!(stderr.contains("more than --max-age 30s"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    let fresh = check("1h");
    assert_eq!(fresh.status.code(), Some(0), "{fresh:?}");
    assert!(
        fresh.stderr.is_empty() && fresh.stdout.is_empty(),
        "{fresh:?}"
    );
}

#[test]
fn sigterm_during_a_cycle_lets_it_finish_and_save_then_exits_0() {
    // A source that answers nothing: the cycle lasts its 1 s timeout.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (connected, connection) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            held.push(stream);
            let _ = connected.send(());
        }
    });
    let dir = temp_dir();
    let text = format!(
        "[state]\nfile = \"{}\"\n\n[[source]]\nname = \"slow\"\ntcp = \"{addr}\"\ntimeout = \"1s\"\n",
        dir.path().join("state.json").display()
    );
    let config = dir.path().join("hapwatch.toml");
    std::fs::write(&config, text).unwrap();
    let state = dir.path().join("state.json");
    let mut watch = Watch::start(&config, &["watch", "--every", "1h"], &[]);
    // The first cycle is reading the source: stop now.
    connection.recv_timeout(LIMIT).unwrap();
    watch.signal(libc::SIGTERM);
    assert_eq!(watch.wait_exit().code(), Some(0), "{}", watch.stderr());
    // The cycle finished: its alert (the source is unreachable) is saved, and said once.
    let text = std::fs::read_to_string(&state).unwrap();
    assert!(text.contains("SourceUnreachable"), "{text}");
    let stderr = watch.stderr();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("hapwatch: source slow: "), "{stderr}");
}

#[test]
fn a_long_wait_keeps_the_watchdog_fed() {
    let dir = temp_dir();
    let config = file_config(dir.path());
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket.set_read_timeout(Some(LIMIT)).unwrap();
    // One cycle an hour, a watchdog of 300 ms: only the wait can keep it fed.
    let mut watch = Watch::start(
        &config,
        &["watch", "--every", "1h"],
        &[
            ("NOTIFY_SOCKET", &path.display().to_string()),
            ("WATCHDOG_USEC", "300000"),
        ],
    );
    let receive = || {
        let mut buf = [0u8; 512];
        let n = socket
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("{e}: {}", watch.stderr()));
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    assert!(receive().starts_with("READY=1\n"));
    // The first cycle's, then the wait's.
    for _ in 0..5 {
        assert_eq!(receive(), "WATCHDOG=1");
    }
    watch.signal(libc::SIGTERM);
    assert_eq!(watch.wait_exit().code(), Some(0));
}

#[test]
fn a_watch_killed_with_sigkill_loses_nothing_a_restart_needs() {
    let Some(Lab {
        haproxy,
        hook,
        dir: _dir,
        config,
        state,
    }) = Lab::start()
    else {
        return;
    };
    let mut first = Watch::start(&config, &["watch", "--every", "100ms"], &[]);
    wait_cycles(&mut first, &state, 1);
    break_web1(&haproxy);
    wait_for_web1(&hook, &first);
    // A cycle later (a kill between sending and recording the delivery would re-send it,
    // at least once, as it would in a run), killed at once, mid-cycle or mid-wait.
    wait_cycles(&mut first, &state, 1);
    first.signal(libc::SIGKILL);
    assert_eq!(first.wait_exit().code(), None);

    // The next watch finds the alert announced: no second notification, no complaint.
    let mut second = Watch::start(&config, &["watch", "--every", "100ms"], &[]);
    wait_cycles(&mut second, &state, 3);
    assert_eq!(firing_for_web1(&hook), 1, "{:?}", hook.requests());
    second.signal(libc::SIGTERM);
    assert_eq!(second.wait_exit().code(), Some(0));
    assert_quiet(&first.stderr());
    assert_quiet(&second.stderr());
}

/// A notifier that stays down is one line for the whole outage, not one per cycle: new
/// notifications (web3 going down and up again between cycles) queue behind the failed
/// one silently while the outbox retries.
#[test]
fn a_notifier_down_is_said_once_not_once_per_cycle() {
    let dir = temp_dir();
    let capture = dir.path().join("lb1.csv");
    let down = common::fixture_bytes("haproxy-2.6/down-after-kill.csv");
    let web3_back = common::fixture_bytes("haproxy-2.6/check-in-progress.csv");
    std::fs::write(&capture, &down).unwrap();
    let state = dir.path().join("state.json");
    let config = dir.path().join("hapwatch.toml");
    std::fs::write(
        &config,
        format!(
            r#"[state]
file = "{state}"

[[source]]
name = "lb1"
file = "{capture}"

[[rule]]
name = "ServerDown"
scope = {{ type = "server" }}
when = 'state == "down"'

[notifier.hook]
type = "webhook"
url = "http://{closed}/hook"
retries = 0
"#,
            state = state.display(),
            capture = capture.display(),
            closed = common::closed_addr(),
        ),
    )
    .unwrap();
    let mut watch = Watch::start(&config, &["watch", "--every", "200ms"], &[]);
    wait_cycles(&mut watch, &state, 1);
    for i in 0..6 {
        std::fs::write(&capture, if i % 2 == 0 { &web3_back } else { &down }).unwrap();
        wait_cycles(&mut watch, &state, 2);
    }
    let outbox = std::fs::read_to_string(&state).unwrap();
    let outbox: serde_json::Value = serde_json::from_str(&outbox).unwrap();
    assert!(
        outbox["outbox"].as_array().unwrap().len() >= 4,
        "the notifications of every flip wait in the outbox: {outbox}"
    );
    watch.signal(libc::SIGTERM);
    assert_eq!(watch.wait_exit().code(), Some(0), "{}", watch.stderr());
    let stderr = watch.stderr();
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.contains("more than --every"))
        .collect();
    assert_eq!(lines.len(), 1, "one line for the outage:\n{stderr}");
    assert!(
        lines[0].starts_with("hapwatch: notifier hook: ")
            && lines[0].ends_with("(kept in the outbox for the next runs)"),
        "{stderr}"
    );
}
