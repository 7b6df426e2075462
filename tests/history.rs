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
fn a_fallback_delivery_is_a_line_like_any_other() {
    let port = common::closed_addr();
    let chat = common::HttpReceiver::start();
    let s = Scenario::new(&format!(
        "{}\n[notifier.hook]\ntype = \"webhook\"\nurl = \"http://{port}/hook\"\ntimeout = \"2s\"\nretries = 0\nfallback = \"chat\"\n\n[notifier.chat]\ntype = \"webhook\"\nurl = \"{}\"\n\n[routes]\ndefault = [\"hook\"]\n",
        DOWN_FOR_2_RUNS.replace("for_runs = 2", ""),
        chat.url_for("/chat")
    ));
    s.capture("lb1.csv", "haproxy-2.6/down-after-kill.csv");
    s.run_at(0.0).status(1);
    assert_eq!(chat.requests().len(), 1, "the fallback got it");
    let l = lines(&s.history_path());
    let deliveries: Vec<(&str, &str, bool)> = l
        .iter()
        .filter(|l| l["event"] == "failed" || l["event"] == "delivered")
        .map(|l| {
            (
                l["event"].as_str().unwrap(),
                l["notifier"].as_str().unwrap(),
                l["error"].is_string(),
            )
        })
        .collect();
    assert_eq!(
        deliveries,
        [("failed", "hook", true), ("delivered", "chat", false)],
        "{l:?}"
    );
    // `hapwatch history` shows who took it.
    s.hapwatch()
        .args([
            "history",
            "--since",
            "1h",
            "--now",
            &(s.base + 60.0).to_string(),
        ])
        .run()
        .status(0)
        .stdout_contains("delivered")
        .stdout_contains("chat");
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
    for i in 0..30u32 {
        s.capture(
            "lb1.csv",
            if i.is_multiple_of(2) {
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
        std::fs::write(
            s.path("big.csv"),
            if i.is_multiple_of(2) { &down } else { &up },
        )
        .unwrap();
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

/// `hapwatch ARGS --now (base + 8h)`.
fn at_end_of_night(s: &Scenario, args: &[&str]) -> Output {
    let now = (s.base + 480.0 * 60.0).to_string();
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--now", &now]);
    s.hapwatch().args(all).run()
}

/// `(rule, row, start, end, flap)` with times in minutes after the night's start.
type Shape = (String, String, f64, Option<f64>, bool);

fn shapes(s: &Scenario, doc: &Value) -> Vec<Shape> {
    let minutes = |v: &Value| (v.as_f64().unwrap() - s.base) / 60.0;
    doc["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["rule"].as_str().unwrap().to_string(),
                i["row"].as_str().unwrap().to_string(),
                minutes(&i["start"]),
                (!i["end"].is_null()).then(|| minutes(&i["end"])),
                i["flap"].as_bool().unwrap(),
            )
        })
        .collect()
}

fn shape(rule: &str, row: &str, start: f64, end: Option<f64>, flap: bool) -> Shape {
    (rule.into(), row.into(), start, end, flap)
}

/// The incidents the lab night forms, worked out from LAB_NIGHT by hand.
fn lab_incidents() -> Vec<Shape> {
    vec![
        shape("ServerDown", "app-main/web4", 0.0, None, false),
        shape("ServerDown", "app-main/web3", 60.0, Some(90.0), false),
        shape("ServerMaint", "app-main/web2", 60.0, Some(90.0), false),
        shape("BackendDown", "app-main", 120.0, Some(150.0), false),
        shape("ServerDown", "app-main/web1", 120.0, Some(150.0), false),
        shape("ServerDown", "app-main/web2", 120.0, Some(150.0), false),
        shape("ServerDown", "app-main/web3", 120.0, Some(150.0), false),
        shape("ServerDown", "app-main/web3", 180.0, Some(190.0), false),
        // Ten minutes after it resolved: a flap.
        shape("ServerDown", "app-main/web3", 200.0, Some(210.0), true),
        shape("ServerMaint", "app-main/web2", 300.0, Some(330.0), false),
        shape("BackendDown", "app-main", 330.0, Some(360.0), false),
        // Pending from 330 (for_runs = 2), firing at 340: the incident starts at 330.
        shape("FrontendNotOpen", "fe-web", 330.0, Some(360.0), false),
        shape("ServerDown", "app-main/web1", 330.0, Some(360.0), false),
        shape("ServerDown", "app-main/web2", 330.0, Some(360.0), false),
        shape("ServerDown", "app-main/web3", 330.0, Some(360.0), false),
    ]
}

fn sorted(mut v: Vec<Shape>) -> Vec<Shape> {
    v.sort_by(|a, b| {
        a.2.total_cmp(&b.2)
            .then_with(|| (&a.0, &a.1).cmp(&(&b.0, &b.1)))
    });
    v
}

#[test]
fn the_lab_night_forms_the_expected_incidents_durations_and_availability() {
    let s = lab_night();
    let out = at_end_of_night(&s, &["history", "--since", "8h", "--format", "json"]);
    out.status(0);
    let doc = out.json();
    assert_eq!(sorted(shapes(&s, &doc)), sorted(lab_incidents()));
    // web4's silence: from its first run to the silence's end at 3h30 (the run at 210).
    let web4 = doc["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["row"] == "app-main/web4")
        .unwrap();
    let silenced = &web4["silenced"][0];
    assert_eq!(silenced[0].as_f64().unwrap(), s.base);
    assert_eq!(silenced[1].as_f64().unwrap(), s.base + 210.0 * 60.0);
    assert_eq!(
        web4["duration"].as_f64().unwrap(),
        480.0 * 60.0,
        "open: up to now"
    );
    // Durations are end - start.
    for i in doc["incidents"].as_array().unwrap() {
        if let Some(end) = i["end"].as_f64() {
            assert_eq!(
                i["duration"].as_f64().unwrap(),
                end - i["start"].as_f64().unwrap()
            );
        }
    }

    // Availability over the 480 minutes (most downtime first, then most incidents), critical incidents only (web2's maintenance is
    // not downtime): web3 110 min down, web1/web2/app-main 60, fe-web 30, web4 all night.
    let text = at_end_of_night(&s, &["report", "--since", "8h", "--format", "text"]);
    text.status(0)
        .stdout_contains("Incidents:  15\n")
        .stdout_contains("Downtime:   13h20m (summed over rows)\n")
        .stdout_contains("Affected:   6 backends and servers\n")
        .stdout_contains("Flaps:      1\n")
        .stdout_contains(
            "  ROW            TYPE      INCIDENTS  DOWNTIME  AVAILABILITY    MTTR  LONGEST  FLAPS\n\
             \x20 app-main/web4  server            1     8h00m        0.000%       -    8h00m      0\n\
             \x20 app-main/web3  server            5     1h50m       77.083%  22m00s   30m00s      1\n\
             \x20 app-main/web2  server            4     1h00m       87.500%  30m00s   30m00s      0\n\
             \x20 app-main       backend           2     1h00m       87.500%  30m00s   30m00s      0\n\
             \x20 app-main/web1  server            2     1h00m       87.500%  30m00s   30m00s      0\n\
             \x20 fe-web         frontend          1    30m00s       93.750%  30m00s   30m00s      0\n",
        )
        .stdout_contains("Noisiest rules:\n  ServerDown: 10 incidents\n  BackendDown: 2 incidents\n  ServerMaint: 2 incidents\n  FrontendNotOpen: 1 incident\n");
}

#[test]
fn history_keeps_to_the_period_and_the_matchers() {
    let s = lab_night();
    // 1h50 to 3h20 after the start: what overlaps it, transitions only from inside it.
    let out = at_end_of_night(
        &s,
        &[
            "history",
            "--since",
            "6h10m",
            "--until",
            "4h40m",
            "--match",
            "server=web3",
            "--format",
            "json",
        ],
    );
    out.status(0);
    let doc = out.json();
    assert_eq!(
        shapes(&s, &doc),
        [
            shape("ServerDown", "app-main/web3", 120.0, Some(150.0), false),
            shape("ServerDown", "app-main/web3", 180.0, Some(190.0), false),
            // Still firing at --until.
            shape("ServerDown", "app-main/web3", 200.0, None, true),
        ]
    );
    let times: Vec<f64> = doc["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["time"].as_f64().unwrap() - s.base) / 60.0)
        .collect();
    assert!(
        times.iter().all(|t| (110.0..=200.0).contains(t)),
        "{times:?}"
    );
    assert!(doc["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["labels"]["server"] == "web3"));
    // The table: newest last, then the incidents.
    let table = at_end_of_night(&s, &["history", "--since", "8h", "--match", "proxy=fe-web"]);
    table.status(0);
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert!(lines[0].starts_with("TIME "), "{}", table.stdout);
    assert!(
        lines[1].contains(" pending ") && lines[2].contains(" firing "),
        "{}",
        table.stdout
    );
    assert!(table.stdout.contains("START "));
    assert!(table.stdout.contains("30m00s"));
    // A time that is not one.
    at_end_of_night(&s, &["history", "--since", "yesterday"])
        .status(2)
        .stderr_contains("invalid time \"yesterday\"");
}

#[test]
fn report_out_replaces_only_its_own_file_and_never_through_a_link() {
    let s = lab_night();
    let out = s.path("report.html");
    let out_s = out.to_str().unwrap();
    at_end_of_night(&s, &["report", "--out", out_s])
        .status(0)
        .stdout_empty();
    let first = std::fs::read_to_string(&out).unwrap();
    assert!(first.starts_with("<!DOCTYPE html>"));
    // Again (a weekly cron job): its own report is replaced.
    at_end_of_night(&s, &["report", "--format", "text", "--out", out_s]).status(0);
    assert!(std::fs::read_to_string(&out)
        .unwrap()
        .starts_with("hapwatch report: "));
    // Not a file hapwatch wrote: refused, untouched.
    let mine = s.path("notes.html");
    std::fs::write(&mine, "<html>my notes</html>").unwrap();
    at_end_of_night(&s, &["report", "--out", mine.to_str().unwrap()])
        .status(1)
        .stderr_contains("is not a report hapwatch wrote")
        .stderr_contains("nothing was replaced");
    assert_eq!(
        std::fs::read_to_string(&mine).unwrap(),
        "<html>my notes</html>"
    );
    // A link, even to a report of ours: refused, the target untouched.
    let link = s.path("link.html");
    std::os::unix::fs::symlink(&out, &link).unwrap();
    let before = std::fs::read(&out).unwrap();
    at_end_of_night(&s, &["report", "--out", link.to_str().unwrap()])
        .status(1)
        .stderr_contains("symbolic link");
    assert_eq!(std::fs::read(&out).unwrap(), before);
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    // No temp file is left behind.
    let stray: Vec<_> = std::fs::read_dir(s.dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
}

#[test]
fn the_svg_report_is_one_image_with_a_bar_per_incident() {
    let s = lab_night();
    let out = at_end_of_night(&s, &["report", "--since", "8h", "--format", "svg"]);
    out.status(0);
    assert!(out
        .stdout
        .starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    assert_eq!(out.stdout.matches("<rect class=\"bar ").count(), 15);
    assert_eq!(out.stdout.matches("<rect class=\"silence\"").count(), 1);
    assert_eq!(out.stdout.matches("<rect class=\"flapmark\"").count(), 1);
    assert_eq!(
        out.stdout.matches("class=\"bar sev-info\"").count(),
        2,
        "web2's maintenance"
    );
}

/// Runs Debian's headless chromium on `args`, killed after a minute.
fn chromium(profile: &Path, args: &[&str]) -> std::process::Output {
    let program = common::find_program("chromium").unwrap();
    let child = Command::new(program)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let id = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let out = child.wait_with_output();
        let _ = tx.send(());
        out
    });
    if rx.recv_timeout(Duration::from_secs(90)).is_err() {
        // SAFETY: kill(2) on the pid of the child this test started.
        unsafe { libc::kill(id as i32, libc::SIGKILL) };
    }
    waiter.join().unwrap().unwrap()
}

/// The width and height of a PNG, from its IHDR chunk.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    (be(&bytes[16..20]), be(&bytes[20..24]))
}

/// The HTML report of the lab night in a real browser: it renders (a screenshot of the
/// window's size that is not blank), the DOM has a bar per incident and the summary
/// figures computed above, no console message, and nothing loaded from anywhere.
/// `HAPWATCH_UPDATE_DOCS=1` keeps the screenshot as docs/report-lab.png.
#[test]
fn the_html_report_renders_in_headless_chromium() {
    if !common::require("chromium") {
        return;
    }
    let s = lab_night();
    let page = s.path("report.html");
    at_end_of_night(
        &s,
        &["report", "--since", "8h", "--out", page.to_str().unwrap()],
    )
    .status(0);
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(!html.contains("<script"), "no scripts");
    assert!(
        !html.contains("http:") && !html.contains("https:") && !html.contains("url("),
        "nothing from the network"
    );
    let url = format!("file://{}", page.display());

    let profile = common::temp_dir();
    let dom = chromium(profile.path(), &["--dump-dom", &url]);
    let text = String::from_utf8_lossy(&dom.stdout).to_string();
    let log = String::from_utf8_lossy(&dom.stderr).to_string();
    assert!(dom.status.success(), "chromium failed: {log}");
    assert!(!log.contains("CONSOLE"), "console messages: {log}");
    assert_eq!(text.matches("<rect class=\"bar ").count(), 15, "{text}");
    assert_eq!(
        text.matches("<svg class=\"lane\"").count(),
        6,
        "one lane per row"
    );
    assert_eq!(text.matches("<rect class=\"silence\"").count(), 1);
    assert_eq!(text.matches("<rect class=\"flapmark\"").count(), 1);
    assert!(text.contains("<span class=\"num\" id=\"sum-incidents\">15</span>"));
    assert!(text.contains("<span class=\"num\" id=\"sum-downtime\">13h20m</span>"));
    assert!(text.contains("<span class=\"num\" id=\"sum-rows\">6</span>"));
    assert!(text.contains("<span class=\"num\" id=\"sum-flaps\">1</span>"));
    assert!(text.contains(
        "<li>app-main/web4 <small>(server)</small>: 8h00m down, 1 incident, 0.000% available</li>"
    ));
    assert!(text.contains("<li>ServerDown: 10 incidents</li>"));

    for (name, width, height) in [("wide", 1200, 1500), ("narrow", 420, 2600)] {
        let shot = s.path(&format!("{name}.png"));
        let profile = common::temp_dir();
        let out = chromium(
            profile.path(),
            &[
                &format!("--screenshot={}", shot.display()),
                &format!("--window-size={width},{height}"),
                &url,
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let png = std::fs::read(&shot).unwrap();
        assert_eq!(png_size(&png), (width, height));
        // A blank page compresses to a few KB; this one has text, bars and tables.
        assert!(png.len() > 30_000, "{name}: {} bytes: blank?", png.len());
        if name == "wide" && std::env::var_os("HAPWATCH_UPDATE_DOCS").is_some() {
            std::fs::copy(
                &shot,
                Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/report-lab.png"),
            )
            .unwrap();
        }
    }
}
