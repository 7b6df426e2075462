//! The history file: `hapwatch run` over the lifecycle tests' capture sequences (file
//! sources rewritten between runs, simulated time with --now) appends one JSON line per
//! transition and delivery; a torn last line is skipped and repaired; the file is never
//! written through a link or over a file that is not a history; an unwritable history is
//! one warning, not a lost alert; rotation bounds it.

mod common;

use common::{fixture_bytes, Hapwatch, Output};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// A config in a temp dir whose `file` sources are rewritten between runs.
pub struct Scenario {
    pub dir: TempDir,
    pub config: PathBuf,
    /// Real time, so that silences added with `silence add` line up with `--now`.
    pub base: f64,
}

impl Scenario {
    pub fn new(body: &str) -> Scenario {
        let dir = common::temp_dir();
        let config = dir.path().join("hapwatch.toml");
        std::fs::write(&config, format!("{body}\n[state]\nfile = \"state.json\"\n")).unwrap();
        let base = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as f64
            + 2.0;
        Scenario { dir, config, base }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn capture(&self, name: &str, fixture: &str) -> &Scenario {
        std::fs::write(self.path(name), fixture_bytes(fixture)).unwrap();
        self
    }

    pub fn hapwatch(&self) -> Hapwatch {
        Hapwatch::new().config_path(&self.config)
    }

    pub fn run_at(&self, at: f64) -> Output {
        self.hapwatch()
            .args(["run", "--now", &(self.base + at).to_string()])
            .run()
    }

    pub fn history_path(&self) -> PathBuf {
        self.path("state.history.jsonl")
    }

    /// The history's lines as `(seconds after base, event, row, extra)`.
    pub fn events(&self) -> Vec<(f64, String, String)> {
        lines(&self.history_path())
            .iter()
            .map(|l| {
                let row = match l["labels"]["server"].as_str() {
                    Some(s) => format!("{}/{s}", l["labels"]["proxy"].as_str().unwrap()),
                    None => l["labels"]["proxy"].as_str().unwrap_or("").to_string(),
                };
                (
                    l["time"].as_f64().unwrap() - self.base,
                    l["event"].as_str().unwrap().to_string(),
                    row,
                )
            })
            .collect()
    }
}

/// Every line of a history file, parsed (panics on a line that is not JSON).
pub fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("line {l:?}: {e}")))
        .collect()
}

const DOWN_FOR_2_RUNS: &str = r#"
[[source]]
name = "lb1"
file = "lb1.csv"

[[rule]]
name = "Down"
scope = { type = "server", exclude_server = "web4" }
when = 'state == "down"'
for_runs = 2
severity = "critical"
summary = "{{ proxy }}/{{ server }} is {{ status }}"
"#;

fn ev(at: f64, event: &str, row: &str) -> (f64, String, String) {
    (at, event.to_string(), row.to_string())
}

#[test]
fn each_transition_and_delivery_is_one_line_and_staying_put_adds_none() {
    let s = Scenario::new(DOWN_FOR_2_RUNS);
    s.capture("lb1.csv", "haproxy-2.6/down-after-kill.csv");
    s.run_at(0.0).status(0);
    s.run_at(60.0).status(0);
    for minute in 2..5 {
        s.run_at(60.0 * minute as f64).status(0);
    }
    s.capture("lb1.csv", "haproxy-2.6/check-in-progress.csv");
    s.run_at(300.0).status(0).stderr_empty();
    s.run_at(360.0).status(0);
    assert_eq!(
        s.events(),
        [
            ev(0.0, "pending", "app-main/web3"),
            ev(60.0, "firing", "app-main/web3"),
            ev(60.0, "delivered", "app-main/web3"),
            ev(300.0, "resolved", "app-main/web3"),
            ev(300.0, "delivered", "app-main/web3"),
        ]
    );
    let l = lines(&s.history_path());
    assert_eq!(l[1]["summary"], "app-main/web3 is DOWN");
    assert_eq!(l[1]["value"], "down");
    assert_eq!(
        l[1]["since"].as_f64().unwrap(),
        s.base,
        "the condition's start"
    );
    assert_eq!(l[1]["fingerprint"].as_str().unwrap().len(), 16);
    assert_eq!(l[2]["notifier"], "stdout");
    assert_eq!(l[1]["labels"]["severity"], "critical");
}

#[test]
fn a_pending_alert_that_clears_is_a_cleared_line() {
    let s = Scenario::new(DOWN_FOR_2_RUNS);
    s.capture("lb1.csv", "haproxy-2.6/down-after-kill.csv");
    s.run_at(0.0).status(0);
    s.capture("lb1.csv", "haproxy-2.6/check-in-progress.csv");
    s.run_at(60.0).status(0);
    assert_eq!(
        s.events(),
        [
            ev(0.0, "pending", "app-main/web3"),
            ev(60.0, "cleared", "app-main/web3")
        ]
    );
}

#[test]
fn silences_starting_and_ending_are_lines_and_a_silenced_firing_says_so() {
    let s = Scenario::new(&DOWN_FOR_2_RUNS.replace("for_runs = 2", ""));
    s.capture("lb1.csv", "haproxy-2.6/down-after-kill.csv");
    // Before the silence is added (it starts at the real time, just before `base`).
    s.run_at(-100.0).status(0);
    let id = s
        .hapwatch()
        .args(["silence", "add", "--match", "server=web3", "--for", "30m"])
        .run();
    id.status(0);
    s.run_at(60.0).status(0);
    s.run_at(120.0).status(0);
    s.hapwatch()
        .args(["silence", "remove", id.stdout.trim()])
        .run()
        .status(0);
    s.run_at(180.0).status(0);
    assert_eq!(
        s.events(),
        [
            ev(-100.0, "firing", "app-main/web3"),
            ev(-100.0, "delivered", "app-main/web3"),
            ev(60.0, "silenced", "app-main/web3"),
            ev(180.0, "unsilenced", "app-main/web3"),
        ]
    );
    // Silenced from its first run: its firing line says so, and no delivery follows.
    let s = Scenario::new(&DOWN_FOR_2_RUNS.replace("for_runs = 2", ""));
    s.capture("lb1.csv", "haproxy-2.6/down-after-kill.csv");
    s.hapwatch()
        .args(["silence", "add", "--match", "server=web3", "--for", "30m"])
        .run()
        .status(0);
    s.run_at(0.0).status(0).stdout_empty();
    let l = lines(&s.history_path());
    assert_eq!(l.len(), 1, "{l:?}");
    assert_eq!(
        (&l[0]["event"], &l[0]["silenced"]),
        (&"firing".into(), &true.into())
    );
}

#[test]
fn a_failed_delivery_is_a_line_with_its_error() {
    let port = common::closed_addr();
    let s = Scenario::new(&format!(
        "{}\n[notifier.hook]\ntype = \"webhook\"\nurl = \"http://{port}/hook\"\ntimeout = \"2s\"\n",
        DOWN_FOR_2_RUNS.replace("for_runs = 2", "")
    ));
    s.capture("lb1.csv", "haproxy-2.6/down-after-kill.csv");
    s.run_at(0.0).status(1);
    let l = lines(&s.history_path());
    let failed: Vec<&Value> = l.iter().filter(|l| l["event"] == "failed").collect();
    assert_eq!(failed.len(), 1, "{l:?}");
    assert_eq!(failed[0]["notifier"], "hook");
    assert!(!failed[0]["error"].as_str().unwrap().is_empty());
    // A retry that fails again adds nothing: the first failure said it.
    s.run_at(600.0).status(1);
    assert_eq!(
        lines(&s.history_path())
            .iter()
            .filter(|l| l["event"] == "failed")
            .count(),
        1
    );
}

#[test]
fn a_torn_last_line_is_skipped_by_readers_and_cut_off_by_the_next_writer() {
    let s = Scenario::new(&DOWN_FOR_2_RUNS.replace("for_runs = 2", ""));
    s.capture("lb1.csv", "haproxy-2.6/down-after-kill.csv");
    s.run_at(0.0).status(0);
    // What a run killed in the middle of its write leaves.
    let mut bytes = std::fs::read(s.history_path()).unwrap();
    bytes.extend_from_slice(b"{\"time\":1.0,\"event\":\"resol");
    std::fs::write(s.history_path(), &bytes).unwrap();
    s.capture("lb1.csv", "haproxy-2.6/check-in-progress.csv");
    s.run_at(60.0).status(0).stderr_empty();
    let text = std::fs::read_to_string(s.history_path()).unwrap();
    assert!(!text.contains("resol\""), "{text}");
    assert!(
        !text.contains("\"resol{"),
        "the torn line was glued to the next: {text}"
    );
    assert_eq!(
        s.events(),
        [
            ev(0.0, "firing", "app-main/web3"),
            ev(0.0, "delivered", "app-main/web3"),
            ev(60.0, "resolved", "app-main/web3"),
            ev(60.0, "delivered", "app-main/web3"),
        ]
    );
}

#[test]
fn no_history_is_written_when_disabled_or_in_a_dry_run() {
    let s = Scenario::new(&format!(
        "{}\n[history]\nenabled = false\n",
        DOWN_FOR_2_RUNS.replace("for_runs = 2", "")
    ));
    s.capture("lb1.csv", "haproxy-2.6/down-after-kill.csv");
    s.run_at(0.0).status(0);
    assert!(!s.history_path().exists());
    let s = Scenario::new(&DOWN_FOR_2_RUNS.replace("for_runs = 2", ""));
    s.capture("lb1.csv", "haproxy-2.6/down-after-kill.csv");
    s.hapwatch()
        .args(["run", "--dry-run", "--now", &s.base.to_string()])
        .run()
        .status(0);
    assert!(!s.history_path().exists());
}

#[test]
fn history_file_setting_is_relative_to_the_config() {
    let s = Scenario::new(&format!(
        "{}\n[history]\nfile = \"hist/h.jsonl\"\n",
        DOWN_FOR_2_RUNS.replace("for_runs = 2", "")
    ));
    std::fs::create_dir(s.path("hist")).unwrap();
    s.capture("lb1.csv", "haproxy-2.6/down-after-kill.csv");
    s.run_at(0.0).status(0);
    assert_eq!(lines(&s.path("hist/h.jsonl")).len(), 2);
}

/// A link, or a file that is not a history, at the history's path: the run still
/// announces the alert, warns once (cron etiquette), and leaves the file alone.
#[test]
fn an_unwritable_history_is_one_warning_not_a_lost_alert() {
    for what in ["symlink", "foreign"] {
        let s = Scenario::new(&DOWN_FOR_2_RUNS.replace("for_runs = 2", ""));
        s.capture("lb1.csv", "haproxy-2.6/down-after-kill.csv");
        let target = s.path("precious.txt");
        std::fs::write(&target, "do not touch\n").unwrap();
        match what {
            "symlink" => std::os::unix::fs::symlink(&target, s.history_path()).unwrap(),
            _ => std::fs::write(s.history_path(), "do not touch\n").unwrap(),
        }
        let first = s.run_at(0.0);
        first
            .status(0)
            .stdout_contains("app-main/web3")
            .stderr_line_count(1)
            .stderr_contains("history file")
            .stderr_contains("alerts are tracked and sent all the same");
        if what == "symlink" {
            first.stderr_contains("symbolic link");
        } else {
            first.stderr_contains("does not look like a hapwatch history");
        }
        s.capture("lb1.csv", "haproxy-2.6/check-in-progress.csv");
        s.run_at(60.0)
            .status(0)
            .stdout_contains("RESOLVED")
            .stderr_empty();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "do not touch\n");
        if what == "foreign" {
            assert_eq!(
                std::fs::read_to_string(s.history_path()).unwrap(),
                "do not touch\n"
            );
        }
        // Fixed: one line says so, and lines are written again.
        std::fs::remove_file(s.history_path()).unwrap();
        s.capture("lb1.csv", "haproxy-2.6/down-after-kill.csv");
        s.run_at(120.0)
            .status(0)
            .stderr_line_count(1)
            .stderr_contains("history is fine again");
        assert_eq!(lines(&s.history_path()).len(), 2);
    }
}

#[test]
fn rotation_keeps_both_generations_under_max_size_and_drops_the_old_one_by_age() {
    // Each run of this flapping sequence adds four lines (~1.4 KB).
    let s = Scenario::new(&format!(
        "{}\n[history]\nmax_size = \"8KiB\"\nmax_age = \"1d\"\n",
        DOWN_FOR_2_RUNS.replace("for_runs = 2", "")
    ));
    let rotated = s.path("state.history.jsonl.1");
    for i in 0..30 {
        s.capture(
            "lb1.csv",
            if i % 2 == 0 {
                "haproxy-2.6/down-after-kill.csv"
            } else {
                "haproxy-2.6/check-in-progress.csv"
            },
        );
        s.run_at(60.0 * i as f64).status(0);
        let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
        assert!(
            size(&s.history_path()) + size(&rotated) <= 8 * 1024 + 2048,
            "run {i}: {} + {}",
            size(&s.history_path()),
            size(&rotated)
        );
    }
    assert!(rotated.exists());
    // Readers see both generations, in order.
    let all: Vec<Value> = lines(&rotated)
        .into_iter()
        .chain(lines(&s.history_path()))
        .collect();
    assert!(all
        .windows(2)
        .all(|w| w[0]["time"].as_f64() <= w[1]["time"].as_f64()));
    // Two days later the current file's first line is too old: it becomes `.1`, and the
    // old `.1` (last written two days ago) is gone; the new one holds only new lines.
    let old_first = lines(&rotated)[0]["time"].as_f64().unwrap();
    s.capture("lb1.csv", "haproxy-2.6/down-after-kill.csv");
    s.run_at(2.0 * 86_400.0).status(0);
    assert!(lines(&rotated)[0]["time"].as_f64().unwrap() > old_first);
    assert_eq!(lines(&s.history_path()).len(), 2);
}

/// A `show stat` dump of `backends` backends × 5 servers, all DOWN or all UP, built from
/// the real 2.6 capture's rows with new names: every run changes 5 × `backends` alerts.
fn big_dump(backends: usize, down: bool) -> String {
    let text = String::from_utf8(fixture_bytes("haproxy-2.6/show-stat.csv")).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    let rows: Vec<&str> = lines.filter(|l| !l.is_empty()).collect();
    let server = rows
        .iter()
        .find(|l| {
            l.starts_with(if down {
                "app-main,web4,"
            } else {
                "app-main,web1,"
            })
        })
        .unwrap();
    let prefix = if down {
        "app-main,web4,"
    } else {
        "app-main,web1,"
    };
    let mut out = format!("{header}\n");
    for b in 0..backends {
        for s in 0..5 {
            out.push_str(&server.replacen(prefix, &format!("be{b},srv{s},"), 1));
            out.push('\n');
        }
    }
    out
}

/// Runs killed with SIGKILL at random points while they append hundreds of lines: every
/// line but the last is always whole, and after the next whole run every line is.
#[test]
fn sigkill_mid_append_leaves_at_most_a_torn_last_line_which_the_next_run_repairs() {
    let s = Scenario::new(
        "[alerting]\ngroup_by = [\"alertname\"]\n\n[[source]]\nname = \"big\"\nfile = \"big.csv\"\n\n[[rule]]\nname = \"Down\"\nscope = { type = \"server\" }\nwhen = 'state == \"down\"'\n",
    );
    let down = big_dump(100, true);
    let up = big_dump(100, false);
    let run = |i: u64| {
        std::fs::write(s.path("big.csv"), if i % 2 == 0 { &down } else { &up }).unwrap();
        Command::new(env!("CARGO_BIN_EXE_hapwatch"))
            .args(["-c", s.config.to_str().unwrap(), "run", "--now"])
            .arg((s.base + 60.0 * i as f64).to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut took = Vec::new();
    for i in 0..3 {
        let start = Instant::now();
        run(i).wait().unwrap();
        took.push(start.elapsed());
    }
    took.sort();
    let whole = took[1].max(Duration::from_millis(2));
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut killed = 0;
    for i in 3..43u64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let fraction = (x >> 11) as f64 / (1u64 << 53) as f64;
        let mut child = run(i);
        std::thread::sleep(whole.mul_f64(fraction * 1.2));
        if child.try_wait().unwrap().is_none() {
            killed += 1;
        }
        let _ = child.kill();
        let _ = child.wait();
        let text = std::fs::read_to_string(s.history_path()).unwrap_or_default();
        let all: Vec<&str> = text.split('\n').collect();
        // Everything before the last newline is whole lines.
        for line in &all[..all.len().saturating_sub(1)] {
            serde_json::from_str::<Value>(line)
                .unwrap_or_else(|e| panic!("iteration {i}: a torn line before the last: {e}"));
        }
    }
    assert!(killed > 10, "only {killed} of 40 runs were killed mid-way");
    run(1000).wait().unwrap();
    let text = std::fs::read_to_string(s.history_path()).unwrap();
    assert!(text.ends_with('\n'));
    lines(&s.history_path());
}

/// The lab night: eight hours of runs every ten minutes over the real 2.6 captures of
/// tests/fixtures/haproxy-2.6 (web4 has nothing listening and is DOWN all night; a silence
/// covers it for the first 3h30), with web3 killed, the whole app-main backend down, web3
/// flapping, web2 in maintenance and fe-web paused on the way.
pub const LAB_RULES: &str = r#"
[[source]]
name = "lab"
file = "lab.csv"

[[rule]]
name = "ServerDown"
scope = { type = "server" }
when = 'state == "down" or state == "going_up"'
severity = "critical"
summary = "{{ proxy }}/{{ server }} is {{ status }}"

[[rule]]
name = "BackendDown"
scope = { type = "backend" }
when = 'state == "down"'
severity = "critical"
summary = "backend {{ proxy }} has no server available"

[[rule]]
name = "FrontendNotOpen"
scope = { type = "frontend" }
when = 'state != "open" and state != "full"'
for_runs = 2
severity = "critical"
summary = "frontend {{ proxy }} is {{ status }}"

[[rule]]
name = "ServerMaint"
scope = { type = "server" }
when = 'state == "maint"'
severity = "info"
summary = "{{ proxy }}/{{ server }} is in maintenance"
"#;

/// `(from minute, capture)`: the capture the lab serves from that minute on.
pub const LAB_NIGHT: &[(u32, &str)] = &[
    (0, "show-stat"),
    (60, "down-after-kill"),
    (90, "check-in-progress"),
    (120, "backend-down"),
    (150, "show-stat"),
    (180, "up-going-down"),
    (190, "show-stat"),
    (200, "up-going-down"),
    (210, "show-stat"),
    (300, "maint"),
    (330, "frontend-paused"),
    (360, "show-stat"),
];

/// Runs the lab night (runs at minutes 0, 10, …, 480); returns the scenario.
pub fn lab_night() -> Scenario {
    let s = Scenario::new(LAB_RULES);
    s.hapwatch()
        .args([
            "silence",
            "add",
            "--match",
            "server=web4",
            "--for",
            "3h30m",
            "--comment",
            "known broken",
        ])
        .run()
        .status(0);
    for minute in (0..=480).step_by(10) {
        let capture = LAB_NIGHT
            .iter()
            .rev()
            .find(|(from, _)| *from <= minute)
            .unwrap()
            .1;
        s.capture("lab.csv", &format!("haproxy-2.6/{capture}.csv"));
        s.run_at(60.0 * minute as f64).status(0);
    }
    s
}

#[test]
fn lab_dump() {
    let s = lab_night();
    let out = s
        .hapwatch()
        .args([
            "history",
            "--since",
            "1d",
            "--now",
            &(s.base + 480.0 * 60.0).to_string(),
        ])
        .run();
    println!("{}", out.stdout);
    let out = s
        .hapwatch()
        .args([
            "report",
            "--format",
            "text",
            "--since",
            "8h",
            "--now",
            &(s.base + 480.0 * 60.0).to_string(),
        ])
        .run();
    println!("{}{}", out.stdout, out.stderr);
    s.hapwatch()
        .args([
            "report",
            "--since",
            "8h",
            "--out",
            "/tmp/lab.html",
            "--now",
            &(s.base + 480.0 * 60.0).to_string(),
        ])
        .run()
        .status(0);
}
