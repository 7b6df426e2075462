//! A run killed with SIGKILL at any moment never leaves a torn state file.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A `show stat` dump of `backends` backends × 5 servers, built from the real 2.6 capture's
/// header and server/backend rows with new names (some servers DOWN, so alerts fire).
fn big_dump(backends: usize) -> String {
    let text = String::from_utf8(common::fixture_bytes("haproxy-2.6/show-stat.csv")).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    let rows: Vec<&str> = lines.filter(|l| !l.is_empty()).collect();
    let server_up = rows
        .iter()
        .find(|l| l.starts_with("app-main,web1,"))
        .unwrap();
    let server_down = rows
        .iter()
        .find(|l| l.starts_with("app-main,web4,"))
        .unwrap();
    let backend = rows
        .iter()
        .find(|l| l.starts_with("app-main,BACKEND,"))
        .unwrap();
    let mut out = format!("{header}\n");
    for b in 0..backends {
        for s in 0..5 {
            let row = if (b + s) % 7 == 0 {
                server_down
            } else {
                server_up
            };
            out.push_str(
                &row.replacen("app-main,web1,", &format!("be{b},srv{s},"), 1)
                    .replacen("app-main,web4,", &format!("be{b},srv{s},"), 1),
            );
            out.push('\n');
        }
        out.push_str(&backend.replacen("app-main,", &format!("be{b},"), 1));
        out.push('\n');
    }
    out
}

#[test]
fn sigkill_at_random_points_never_tears_the_state_file() {
    let dir = common::temp_dir();
    let config = dir.path().join("hapwatch.toml");
    let rules = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/rules.toml");
    std::fs::write(
        &config,
        format!("include = [\"{}\"]\n\n[[source]]\nname = \"big\"\nfile = \"big.csv\"\n\n[state]\nfile = \"state.json\"\n", rules.display()),
    )
    .unwrap();
    std::fs::write(dir.path().join("big.csv"), big_dump(300)).unwrap();
    let state = dir.path().join("state.json");
    let run = |now: u64| spawn_run(&config, now);
    // How long one whole run takes here, to spread the kills over it: the median of three,
    // so that one slow run on a busy machine does not put every kill after the end.
    let mut took = Vec::new();
    for n in 1..=3 {
        let start = Instant::now();
        assert!(run(n).wait().unwrap().code().is_some());
        took.push(start.elapsed());
    }
    took.sort();
    let whole = took[1].max(Duration::from_millis(2));

    // A small deterministic generator: the kill points differ per iteration but the test
    // is reproducible.
    let mut kill_points = KillPoints(0x9e37_79b9_7f4a_7c15);
    let mut killed = 0;
    for i in 0..200u64 {
        let delay = whole.mul_f64(kill_points.next_fraction() * 1.2);
        let mut child = run(100 + i * 60);
        std::thread::sleep(delay);
        if child.try_wait().unwrap().is_none() {
            killed += 1;
        }
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        if state.exists() {
            let bytes = std::fs::read(&state).unwrap();
            let parsed: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                panic!("iteration {i}: torn state file after a kill at {delay:?}: {e}")
            });
            assert_eq!(parsed["version"], hapwatch::state::VERSION, "iteration {i}");
        }
        let temps = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("state.json.tmp-")
            })
            .count();
        assert!(
            temps <= 1,
            "iteration {i}: stale temp files pile up ({temps})"
        );
    }
    assert!(
        killed > 50,
        "only {killed} of 200 runs were killed mid-way; the test did not exercise kills"
    );
    // And the survivor state is still usable by a normal run.
    let out = run_at(&config, 999_999);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `hapwatch run --format json` at simulated time `now`.
fn run_command(config: &std::path::Path, now: u64) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hapwatch"));
    command.args([
        "-c",
        config.to_str().unwrap(),
        "run",
        "--format",
        "json",
        "--now",
        &now.to_string(),
    ]);
    command
}

/// Starts `hapwatch run` at simulated time `now`, output discarded.
fn spawn_run(config: &std::path::Path, now: u64) -> std::process::Child {
    run_command(config, now)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Deterministic pseudo-random kill points (xorshift): they differ per iteration, and a
/// failure reproduces.
struct KillPoints(u64);

impl KillPoints {
    /// The next fraction in [0, 1).
    fn next_fraction(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A tmpfs of `size` mounted on a fresh directory, unmounted on drop. `None` (with a
/// visible note) where this process may not mount (not root, or no CAP_SYS_ADMIN).
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = common::temp_dir();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!(
                "SKIPPED: {}: cannot mount a tmpfs here (needs root)",
                common::test_name()
            );
            return None;
        }
        Some(Tmpfs { dir })
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    fn remount(&self, options: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(self.path())
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

fn config_with_state(dir: &std::path::Path, state: &std::path::Path) -> std::path::PathBuf {
    let rules = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/rules.toml");
    let config = dir.join("hapwatch.toml");
    std::fs::write(
        &config,
        format!(
            "include = [\"{}\"]\n\n[[source]]\nname = \"big\"\nfile = \"big.csv\"\n\n[state]\nfile = \"{}\"\n",
            rules.display(),
            state.display()
        ),
    )
    .unwrap();
    config
}

fn run_at(config: &std::path::Path, now: u64) -> std::process::Output {
    run_command(config, now).output().unwrap()
}

#[test]
fn a_full_disk_is_a_clear_error_and_leaves_the_last_state_intact() {
    let Some(fs) = Tmpfs::mount("64k") else {
        return;
    };
    let work = common::temp_dir();
    let state = fs.path().join("state.json");
    let config = config_with_state(work.path(), &state);
    // A small dump first: its state fits.
    std::fs::write(work.path().join("big.csv"), big_dump(2)).unwrap();
    let first = run_at(&config, 1000);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let saved = std::fs::read(&state).unwrap();
    // A big one next: its samples do not fit in 64 KiB.
    std::fs::write(work.path().join("big.csv"), big_dump(400)).unwrap();
    let out = run_at(&config, 1060);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "hapwatch: state file {}: cannot save: No space left on device",
            state.display()
        )),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert_eq!(
        std::fs::read(&state).unwrap(),
        saved,
        "the previous state is untouched"
    );
    let mut leftovers: Vec<_> = std::fs::read_dir(fs.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    leftovers.sort();
    assert_eq!(
        leftovers,
        ["state.history.jsonl", "state.json", "state.json.lock"],
        "the state, its lock and the history (of the first run), no temp file"
    );
}

#[test]
fn a_read_only_state_directory_is_a_clear_error() {
    let Some(fs) = Tmpfs::mount("1m") else {
        return;
    };
    let work = common::temp_dir();
    let state = fs.path().join("state.json");
    let config = config_with_state(work.path(), &state);
    std::fs::write(work.path().join("big.csv"), big_dump(2)).unwrap();
    assert!(run_at(&config, 1000).status.success());
    let saved = std::fs::read(&state).unwrap();
    fs.remount("ro");
    let out = run_at(&config, 1060);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("Read-only file system"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert_eq!(std::fs::read(&state).unwrap(), saved);
    fs.remount("rw");
}

/// Kills runs that notify a real webhook receiver at random points, 200 times, with the
/// server going down and up every run. After every kill the promise holds: what the state
/// says was announced last has been received last, or is still in the outbox. Nothing is
/// lost; a duplicate only happens for the one notification in flight at the kill.
#[test]
fn sigkill_during_delivery_loses_nothing() {
    let receiver = common::HttpReceiver::start();
    let dir = common::temp_dir();
    let config = dir.path().join("hapwatch.toml");
    std::fs::write(
        &config,
        format!(
            "[[source]]\nname = \"lb1\"\nfile = \"lb1.csv\"\n\n[[rule]]\nname = \"Down\"\nscope = {{ server = \"web3\" }}\nwhen = 'state == \"down\"'\n\n[notifier.hook]\ntype = \"webhook\"\nurl = \"{}\"\nretries = 0\n\n[state]\nfile = \"state.json\"\n",
            receiver.url_for("/hook")
        ),
    )
    .unwrap();
    let down = common::fixture_bytes("haproxy-2.6/down-after-kill.csv");
    let up = common::fixture_bytes("haproxy-2.6/check-in-progress.csv");
    let run = |now: u64| spawn_run(&config, now);
    // How long a run that delivers takes: the median of three (down, up, down again), so
    // that one slow first run on a busy machine does not put every kill after the end.
    let mut took = Vec::new();
    for (n, capture) in [&down, &up, &down].into_iter().enumerate() {
        std::fs::write(dir.path().join("lb1.csv"), capture).unwrap();
        let start = Instant::now();
        assert!(run(n as u64 * 60).wait().unwrap().success());
        took.push(start.elapsed());
    }
    took.sort();
    let whole = took[1].max(Duration::from_millis(2));
    let received = || -> Vec<String> {
        receiver
            .requests()
            .iter()
            .map(|r| r.json()["status"].as_str().unwrap_or("?").to_string())
            .collect()
    };
    let (mut kill_points, mut killed) = (KillPoints(0x2545_f491_4f6c_dd1d), 0);
    for i in 3..=202u64 {
        std::fs::write(
            dir.path().join("lb1.csv"),
            if i % 2 == 0 { &down } else { &up },
        )
        .unwrap();
        let delay = whole.mul_f64(kill_points.next_fraction() * 1.5);
        let mut child = run(i * 60);
        std::thread::sleep(delay);
        if child.try_wait().unwrap().is_none() {
            killed += 1;
        }
        let _ = child.kill();
        let _ = child.wait();
        let Ok(bytes) = std::fs::read(dir.path().join("state.json")) else {
            continue;
        };
        let state: serde_json::Value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("iteration {i}: torn state: {e}"));
        let Some(alert) = state["alerts"].as_object().and_then(|a| a.values().next()) else {
            continue;
        };
        let announced = if alert["status"] == "firing" {
            "firing"
        } else {
            "resolved"
        };
        let queued: Vec<&str> = state["outbox"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| {
                if o["payload"]["firing"]
                    .as_array()
                    .is_some_and(|f| !f.is_empty())
                {
                    "firing"
                } else {
                    "resolved"
                }
            })
            .collect();
        let got = received();
        let last_received = got.last().map(String::as_str);
        assert!(
            queued.last() == Some(&announced) || (queued.is_empty() && last_received == Some(announced)),
            "iteration {i}: the state says {announced} was announced, but the receiver last got {last_received:?} and the outbox holds {queued:?}"
        );
    }
    assert!(killed > 50, "only {killed} runs were killed mid-way");
    // Settle: unkilled runs until nothing changes; then every flip seen by the state was
    // received, in order, with at most one duplicate per kill.
    std::fs::write(dir.path().join("lb1.csv"), &up).unwrap();
    for n in 0..3 {
        let out = run_at(&config, 203 * 60 + n * 60);
        assert!(
            out.status.success(),
            "settling run {n}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let got = received();
    let mut collapsed = got.clone();
    collapsed.dedup();
    assert!(collapsed.windows(2).all(|w| w[0] != w[1]));
    assert_eq!(collapsed.last().map(String::as_str), Some("resolved"));
    assert!(
        got.len() - collapsed.len() <= killed,
        "{} duplicates for {killed} kills",
        got.len() - collapsed.len()
    );
}
