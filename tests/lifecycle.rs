//! `hapwatch run` over sequences of real captures (file sources rewritten between runs,
//! simulated time with --now): each problem announced once, its recovery once.

mod common;

use common::{edit_capture, fixture_bytes, Hapwatch, Output};
use serde_json::Value;
use std::path::{Path, PathBuf};
use tempfile::TempDir;

/// A config in a temp dir whose `file` sources are rewritten between runs.
struct Scenario {
    dir: TempDir,
    config: PathBuf,
    /// Real time, so that silences added with `silence add` line up with `--now`.
    base: f64,
}

impl Scenario {
    fn new(body: &str) -> Scenario {
        let dir = common::temp_dir();
        let config = dir.path().join("hapwatch.toml");
        std::fs::write(&config, format!("{body}\n[state]\nfile = \"state.json\"\n")).unwrap();
        let base = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as f64
            // Runs happen "later" than any silence the test adds from the real clock.
            + 2.0;
        Scenario { dir, config, base }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Makes `name` hold a capture from tests/fixtures.
    fn capture(&self, name: &str, fixture: &str) -> &Scenario {
        std::fs::write(self.path(name), fixture_bytes(fixture)).unwrap();
        self
    }

    fn write(&self, name: &str, contents: &str) -> &Scenario {
        std::fs::write(self.path(name), contents).unwrap();
        self
    }

    fn hapwatch(&self) -> Hapwatch {
        Hapwatch::new().config_path(&self.config)
    }

    /// `hapwatch run --format json` at `base + at` seconds.
    fn run_at(&self, at: f64) -> Output {
        self.hapwatch()
            .args([
                "run",
                "--format",
                "json",
                "--now",
                &(self.base + at).to_string(),
            ])
            .run()
    }

    /// Runs at `at`, expects exit 0, and returns the notifications in short form.
    fn notify(&self, at: f64) -> Vec<String> {
        let out = self.run_at(at);
        out.status(0);
        summarize(&out)
    }

    fn state(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.path("state.json")).unwrap()).unwrap()
    }
}

/// One string per notification: `RULE source: +proxy/server … -proxy/server …`, with
/// `+` firing, `*` firing again (repeat), `-` resolved.
fn summarize(out: &Output) -> Vec<String> {
    if out.stdout.trim().is_empty() {
        return Vec::new();
    }
    // One JSON object per notification, one per line.
    out.stdout
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .map(|n| {
            let row = |a: &Value| {
                let l = &a["labels"];
                match l["server"].as_str() {
                    Some(s) => format!("{}/{s}", l["proxy"].as_str().unwrap_or("")),
                    None => l["proxy"]
                        .as_str()
                        .unwrap_or(l["source"].as_str().unwrap())
                        .to_string(),
                }
            };
            let mut parts = vec![format!(
                "{}{}:",
                if n["digest"].as_bool().unwrap() {
                    "digest "
                } else {
                    ""
                },
                n["group_labels"]["alertname"].as_str().unwrap_or("")
            )];
            for a in n["firing"].as_array().unwrap() {
                let mark = if a["repeat"].as_bool().unwrap_or(false) {
                    "*"
                } else {
                    "+"
                };
                parts.push(format!("{mark}{}", row(a)));
            }
            for a in n["resolved"].as_array().unwrap() {
                parts.push(format!("-{}", row(a)));
            }
            parts.join(" ")
        })
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
"#;

#[test]
fn announced_once_repeated_after_repeat_interval_resolved_once() {
    let s = Scenario::new(DOWN_FOR_2_RUNS);
    s.capture("lb1.csv", "haproxy-2.6/down-after-kill.csv");
    assert_eq!(s.notify(0.0), Vec::<String>::new(), "one run is not two");
    assert_eq!(
        s.state()["alerts"]
            .as_object()
            .unwrap()
            .values()
            .next()
            .unwrap()["status"],
        "pending"
    );
    assert_eq!(s.notify(60.0), ["Down: +app-main/web3"]);
    for minute in 2..10 {
        assert_eq!(
            s.notify(60.0 * minute as f64),
            Vec::<String>::new(),
            "minute {minute}"
        );
    }
    // Default repeat_interval: 4h after the first notification.
    assert_eq!(s.notify(60.0 + 4.0 * 3600.0 - 1.0), Vec::<String>::new());
    assert_eq!(s.notify(60.0 + 4.0 * 3600.0), ["Down: *app-main/web3"]);
    s.capture("lb1.csv", "haproxy-2.6/check-in-progress.csv");
    assert_eq!(s.notify(5.0 * 3600.0), ["Down: -app-main/web3"]);
    for minute in 1..5 {
        assert_eq!(
            s.notify(5.0 * 3600.0 + 60.0 * minute as f64),
            Vec::<String>::new()
        );
    }
}

#[test]
fn a_pending_alert_that_clears_never_notifies() {
    let s = Scenario::new(DOWN_FOR_2_RUNS);
    s.capture("lb1.csv", "haproxy-2.6/down-after-kill.csv");
    assert!(s.notify(0.0).is_empty());
    s.capture("lb1.csv", "haproxy-2.6/check-in-progress.csv");
    assert!(s.notify(60.0).is_empty());
    assert!(s.notify(120.0).is_empty());
    assert!(s.state()["alerts"].as_object().unwrap().is_empty());
}

#[test]
fn keep_firing_for_bridges_a_short_recovery() {
    let s = Scenario::new(
        "[[source]]\nname = \"lb1\"\nfile = \"lb1.csv\"\n\n[[rule]]\nname = \"Down\"\nscope = { server = \"web3\" }\nwhen = 'state == \"down\"'\nkeep_firing_for = \"3m\"\n",
    );
    s.capture("lb1.csv", "haproxy-2.6/down-after-kill.csv");
    assert_eq!(s.notify(0.0), ["Down: +app-main/web3"]);
    s.capture("lb1.csv", "haproxy-2.6/check-in-progress.csv");
    assert!(s.notify(60.0).is_empty(), "recovered 1 min: still firing");
    s.capture("lb1.csv", "haproxy-2.6/down-after-kill.csv");
    assert!(
        s.notify(120.0).is_empty(),
        "down again: same alert, no new notification"
    );
    s.capture("lb1.csv", "haproxy-2.6/check-in-progress.csv");
    assert!(s.notify(180.0).is_empty());
    assert!(s.notify(240.0).is_empty());
    assert_eq!(
        s.notify(300.0),
        ["Down: -app-main/web3"],
        "3 min after it was last seen down"
    );
}

#[test]
fn flaps_between_runs_are_caught_with_the_default_rules() {
    let s = Scenario::new(&format!(
        "include = [\"{}\"]\n\n[[source]]\nname = \"lb1\"\nfile = \"lb1.csv\"\n",
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("config/rules.toml")
            .display()
    ));
    s.capture("lb1.csv", "haproxy-2.6/up-going-down.csv");
    assert_eq!(s.notify(0.0), ["ServerDown: +app-main/web3 +app-main/web4"]);
    // Between these runs web1 and web2 went down and came back; web3 came back too.
    s.capture("lb1.csv", "haproxy-2.6/check-in-progress.csv");
    assert_eq!(
        s.notify(60.0),
        [
            "ServerDown: -app-main/web3",
            "ServerFlapped: +app-main/web1 +app-main/web2"
        ]
    );
    // An event: its recovery is not announced (`send_resolved = false` in rules.toml).
    assert!(s.notify(120.0).is_empty());
    assert!(s.state()["alerts"]
        .as_object()
        .unwrap()
        .values()
        .filter(|a| a["labels"]["alertname"] == "ServerFlapped")
        .all(|a| a["status"] == "resolved"));
    assert!(s.notify(180.0).is_empty());
}

const FIVE_DOWN: &str = "[[source]]\nname = \"lb1\"\nfile = \"lb1.csv\"\n\n[[rule]]\nname = \"ServerDown\"\nscope = { type = \"server\" }\nwhen = 'state == \"down\"'\n";

#[test]
fn five_servers_down_at_once_make_one_notification() {
    let s = Scenario::new(FIVE_DOWN);
    let text = String::from_utf8(fixture_bytes("haproxy-2.6/backend-down.csv")).unwrap();
    s.write(
        "lb1.csv",
        &edit_capture(&text, "api", "api1", "status", "DOWN"),
    );
    let out = s.run_at(0.0);
    assert_eq!(
        summarize(&out),
        ["ServerDown: +api/api1 +app-main/web1 +app-main/web2 +app-main/web3 +app-main/web4"]
    );
    // The text form of the same notification, as cron would mail it.
    let s2 = Scenario::new(FIVE_DOWN);
    s2.write(
        "lb1.csv",
        &edit_capture(&text, "api", "api1", "status", "DOWN"),
    );
    let text_out = s2.hapwatch().args(["run", "--now", "1000000"]).run();
    text_out
        .status(0)
        .stdout_contains("[FIRING:5] ServerDown (lb1)\nFIRING (5)\n- ServerDown api/api1 on lb1\n");
}

#[test]
fn beyond_the_budget_notifications_become_one_digest() {
    let s = Scenario::new(
        "[alerting]\ngroup_by = [\"alertname\", \"server\"]\nmax_notifications_per_run = 2\n\n[[source]]\nname = \"lb1\"\nfile = \"lb1.csv\"\n\n[[rule]]\nname = \"ServerDown\"\nscope = { type = \"server\" }\nwhen = 'state == \"down\"'\n",
    );
    s.capture("lb1.csv", "haproxy-2.6/backend-down.csv");
    assert_eq!(
        s.notify(0.0),
        [
            "ServerDown: +app-main/web1",
            "digest : +app-main/web2 +app-main/web3 +app-main/web4"
        ]
    );
}

#[test]
fn silenced_alerts_keep_their_lifecycle_but_send_nothing() {
    let s = Scenario::new(DOWN_FOR_2_RUNS.replace("for_runs = 2", "").as_str());
    s.capture("lb1.csv", "haproxy-2.6/down-after-kill.csv");
    let id = s
        .hapwatch()
        .args([
            "silence",
            "add",
            "--match",
            "proxy=app-main",
            "--match",
            "server=~web?",
            "--for",
            "30m",
            "--comment",
            "logrotate",
        ])
        .run();
    id.status(0);
    let id = id.stdout.trim().to_string();
    assert_eq!(id, "1");
    s.hapwatch()
        .args(["silence", "list"])
        .run()
        .status(0)
        .stdout_contains("proxy=app-main server=~web?")
        .stdout_contains("logrotate");
    assert!(s.notify(0.0).is_empty(), "silenced");
    assert_eq!(
        s.state()["alerts"]
            .as_object()
            .unwrap()
            .values()
            .next()
            .unwrap()["status"],
        "firing"
    );
    assert!(s.notify(60.0).is_empty());
    s.hapwatch()
        .args(["silence", "remove", &id])
        .run()
        .status(0);
    s.hapwatch()
        .args(["silence", "remove", &id])
        .run()
        .status(2)
        .stderr_contains("no active silence with id \"1\"");
    // The problem outlived the silence: it is announced now, once.
    assert_eq!(s.notify(120.0), ["Down: +app-main/web3"]);
    assert!(s.notify(180.0).is_empty());
}

#[test]
fn a_silence_expires_by_itself() {
    let s = Scenario::new(DOWN_FOR_2_RUNS.replace("for_runs = 2", "").as_str());
    s.capture("lb1.csv", "haproxy-2.6/down-after-kill.csv");
    s.hapwatch()
        .args(["silence", "add", "--match", "server=web3", "--for", "10m"])
        .run()
        .status(0);
    assert!(s.notify(0.0).is_empty());
    assert_eq!(s.notify(11.0 * 60.0), ["Down: +app-main/web3"]);
    assert!(
        s.state()["silences"].as_array().unwrap().is_empty(),
        "expired silences are cleaned up"
    );
}

#[test]
fn an_unreachable_source_freezes_its_alerts_and_raises_one_alert() {
    let s = Scenario::new(
        "[[source]]\nname = \"lb1\"\nfile = \"lb1.csv\"\n\n[[source]]\nname = \"lb2\"\nfile = \"lb2.csv\"\n\n[[rule]]\nname = \"Down\"\nscope = { type = \"server\" }\nwhen = 'state == \"down\"'\n",
    );
    s.capture("lb1.csv", "haproxy-2.6/show-stat.csv");
    s.capture("lb2.csv", "haproxy-2.6/backend-down.csv");
    assert_eq!(
        s.notify(0.0),
        [
            "Down: +app-main/web4",
            "Down: +app-main/web1 +app-main/web2 +app-main/web3 +app-main/web4"
        ]
    );
    std::fs::remove_file(s.path("lb2.csv")).unwrap();
    let out = s.run_at(60.0);
    out.status(1)
        .stderr_contains("hapwatch: source lb2: I/O error on")
        .stderr_line_count(1);
    assert_eq!(
        summarize(&out),
        ["SourceUnreachable: +lb2"],
        "and no resolved for lb2's servers"
    );
    let out = s.run_at(120.0);
    out.status(1);
    assert!(summarize(&out).is_empty(), "announced once");
    s.capture("lb2.csv", "haproxy-2.6/backend-down.csv");
    assert_eq!(
        s.notify(180.0),
        ["SourceUnreachable: -lb2"],
        "its servers are still down: nothing new"
    );
    s.capture("lb2.csv", "haproxy-2.6/check-in-progress.csv");
    assert_eq!(
        s.notify(240.0),
        ["Down: -app-main/web1 -app-main/web2 -app-main/web3"]
    );
}

/// A dump with a header and no rows resolved every firing alert of its source. It is now
/// a broken source like an unreachable one: its alerts are frozen, exit 1, one line.
#[test]
fn a_dump_with_no_rows_resolves_nothing() {
    let s = Scenario::new(
        "[[source]]\nname = \"lb1\"\nfile = \"lb1.csv\"\n\n[[rule]]\nname = \"Down\"\nscope = { type = \"server\" }\nwhen = 'state == \"down\"'\n",
    );
    s.capture("lb1.csv", "haproxy-2.6/backend-down.csv");
    assert_eq!(
        s.notify(0.0),
        ["Down: +app-main/web1 +app-main/web2 +app-main/web3 +app-main/web4"]
    );
    let capture = String::from_utf8(fixture_bytes("haproxy-2.6/backend-down.csv")).unwrap();
    let header = capture.lines().next().unwrap();
    for (at, dump) in [
        (60.0, format!("{header}\n")),
        (120.0, format!("{header}\n\n")),
    ] {
        s.write("lb1.csv", &dump);
        let out = s.run_at(at);
        out.status(1);
        if at == 60.0 {
            out.stderr_contains("reported no proxies (the dump has a header and no rows)")
                .stderr_line_count(1);
        } else {
            // The same problem goes on: said when it started (cron mails every line).
            out.stderr_empty();
        }
        let notes = summarize(&out);
        assert!(
            notes.iter().all(|n| !n.contains('-')),
            "nothing resolved: {notes:?}"
        );
    }
    let firing = s.state()["alerts"]
        .as_object()
        .unwrap()
        .values()
        .filter(|a| a["labels"]["alertname"] == "Down" && a["status"] == "firing")
        .count();
    assert_eq!(firing, 4, "{}", s.state());
    s.capture("lb1.csv", "haproxy-2.6/backend-down.csv");
    assert_eq!(s.notify(180.0), ["SourceUnreachable: -lb1"]);
}

#[test]
fn a_reload_between_runs_causes_no_rate_spike() {
    let s = Scenario::new(&format!(
        "include = [\"{}\"]\n\n[[source]]\nname = \"lb1\"\nfile = \"lb1.txt\"\n",
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("config/rules.toml")
            .display()
    ));
    let with_info = |info: &str, csv: &str| {
        let mut text = String::from_utf8(fixture_bytes(info)).unwrap();
        text.push_str(&String::from_utf8(fixture_bytes(csv)).unwrap());
        text
    };
    s.write(
        "lb1.txt",
        &with_info(
            "haproxy-2.6/series/info-before-reload.txt",
            "haproxy-2.6/series/t5.csv",
        ),
    );
    assert_eq!(s.notify(0.0), ["ServerDown: +app-main/web4"]);
    s.write(
        "lb1.txt",
        &with_info(
            "haproxy-2.6/series/info-after-reload.txt",
            "haproxy-2.6/series/t6-after-reload.csv",
        ),
    );
    assert!(
        s.notify(60.0).is_empty(),
        "1439 sessions in a process up 1 s (Uptime_sec: 1, so up to 2 s): 720/s, no spike, no flap"
    );
    // The same rule does fire on a real burst: t1 -> t2 one second apart.
    s.capture("lb1.txt", "haproxy-2.6/series/t1.csv");
    assert!(s
        .notify(1000.0)
        .contains(&"ServerFlapped: +app-main/web1 +app-main/web2 +app-main/web3".to_string()));
    s.capture("lb1.txt", "haproxy-2.6/series/t2.csv");
    assert_eq!(
        s.notify(1001.0),
        // ServerFlapped is an event: no recovery is announced (send_resolved = false).
        ["SessionRateHigh: +fe-web"]
    );
}

#[test]
fn a_corrupt_state_file_is_moved_aside_without_a_flood() {
    let s = Scenario::new(DOWN_FOR_2_RUNS.replace("for_runs = 2", "").as_str());
    s.capture("lb1.csv", "haproxy-2.6/down-after-kill.csv");
    assert_eq!(s.notify(0.0), ["Down: +app-main/web3"]);
    s.write("state.json", "{\"version\": 1, \"alerts\": {\"x\": tru");
    let out = s.run_at(60.0);
    out.status(1)
        .stderr_contains("was unusable (it is not valid state JSON")
        .stderr_contains("state.json.corrupt-");
    assert!(
        summarize(&out).is_empty(),
        "alerts already firing are not re-announced"
    );
    let moved: Vec<_> = std::fs::read_dir(s.dir.path())
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("state.json.corrupt-"))
        .collect();
    assert_eq!(moved.len(), 1);
    assert!(s.notify(120.0).is_empty());
    s.capture("lb1.csv", "haproxy-2.6/check-in-progress.csv");
    assert_eq!(
        s.notify(180.0),
        ["Down: -app-main/web3"],
        "its recovery is still announced"
    );
    s.write("state.json", "{\"version\": 7}");
    s.run_at(240.0)
        .status(1)
        .stderr_contains("it has version 7, this hapwatch reads versions 1 to 2");
}

#[test]
fn dry_run_changes_nothing_and_shows_what_would_happen() {
    let s = Scenario::new(DOWN_FOR_2_RUNS);
    s.capture("lb1.csv", "haproxy-2.6/down-after-kill.csv");
    s.notify(0.0);
    let before = std::fs::read(s.path("state.json")).unwrap();
    let out = s
        .hapwatch()
        .args(["run", "--dry-run", "--now", &(s.base + 60.0).to_string()])
        .run();
    out.status(0)
        .stdout_contains("Down  lb1     app-main/web3  down   pending -> firing  Down on lb1: app-main/web3 is DOWN (value down)")
        .stdout_contains("Notifications (1):\n--- to the default route\n[FIRING:1] Down app-main (lb1)\n");
    assert_eq!(
        std::fs::read(s.path("state.json")).unwrap(),
        before,
        "state untouched"
    );
    assert_eq!(
        s.notify(60.0),
        ["Down: +app-main/web3"],
        "the real run does what the dry run showed"
    );
}

#[test]
fn state_show_and_reset() {
    let s = Scenario::new(DOWN_FOR_2_RUNS.replace("for_runs = 2", "").as_str());
    s.capture("lb1.csv", "haproxy-2.6/down-after-kill.csv");
    s.notify(0.0);
    s.hapwatch()
        .args(["state", "show"])
        .run()
        .status(0)
        .stdout_contains("firing")
        .stdout_contains("server=\"web3\"");
    let json = s
        .hapwatch()
        .args(["state", "show", "--format", "json"])
        .run();
    assert_eq!(json.status(0).json()["version"], hapwatch::state::VERSION);
    s.hapwatch().args(["state", "reset"]).run().status(0);
    s.hapwatch()
        .args(["state", "show"])
        .run()
        .status(0)
        .stdout_contains("no alerts remembered");
}

#[test]
fn concurrent_runs_serialize_on_the_lock() {
    let s = Scenario::new(DOWN_FOR_2_RUNS.replace("for_runs = 2", "").as_str());
    s.capture("lb1.csv", "haproxy-2.6/down-after-kill.csv");
    let binary = env!("CARGO_BIN_EXE_hapwatch");
    for round in 0..25 {
        let _ = std::fs::remove_file(s.path("state.json"));
        let now = (s.base + round as f64).to_string();
        let children: Vec<_> = (0..2)
            .map(|_| {
                std::process::Command::new(binary)
                    .args([
                        "-c",
                        s.config.to_str().unwrap(),
                        "run",
                        "--format",
                        "json",
                        "--now",
                        &now,
                    ])
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let outputs: Vec<_> = children
            .into_iter()
            .map(|c| c.wait_with_output().unwrap())
            .collect();
        let mut announced = 0;
        for out in &outputs {
            assert!(
                out.status.success(),
                "round {round}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let text = String::from_utf8_lossy(&out.stdout);
            announced += text.matches("\"alertname\":\"Down\"").count() / 2; // labels + group_labels
        }
        assert_eq!(
            announced, 1,
            "round {round}: exactly one of the two runs announces"
        );
        let state = s.state();
        assert_eq!(state["version"], hapwatch::state::VERSION);
        assert_eq!(state["alerts"].as_object().unwrap().len(), 1);
    }
}

/// Runs `hapwatch [flags] run --now base+at`; returns (exit code, stderr lines).
fn run_with(s: &Scenario, flags: &[&str], at: f64) -> (Option<i32>, Vec<String>) {
    let out = s
        .hapwatch()
        .args(flags)
        .args(["run", "--now", &(s.base + at).to_string()])
        .run();
    (
        out.code,
        out.stderr.lines().map(str::to_string).collect::<Vec<_>>(),
    )
}

/// Issue #16 item 5: an unreachable source printed the same stderr line every run (also
/// with -q), so cron mailed the operator every minute for the whole outage.
#[test]
fn an_unreachable_source_is_printed_when_it_starts_and_when_it_ends() {
    let s = Scenario::new(DOWN_FOR_2_RUNS);
    // No lb1.csv: the source cannot be read.
    let (code, lines) = run_with(&s, &[], 0.0);
    assert_eq!(code, Some(1));
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("hapwatch: source lb1: "), "{lines:?}");
    for (i, flags) in [&[][..], &["-q"][..], &[][..]].into_iter().enumerate() {
        let (code, lines) = run_with(&s, flags, 60.0 * (i + 1) as f64);
        assert_eq!(code, Some(1), "still trouble: exit 1");
        assert!(lines.is_empty(), "run {}: {lines:?}", i + 2);
    }
    // With -v, every run says it (and what else the run did).
    let (code, lines) = run_with(&s, &["-v"], 240.0);
    assert_eq!(code, Some(1));
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("hapwatch: source lb1: ")),
        "{lines:?}"
    );
    // A dry run always shows it.
    s.hapwatch()
        .args(["run", "--dry-run", "--now", &(s.base + 270.0).to_string()])
        .run()
        .status(1)
        .stderr_contains("source lb1: ");
    // Back: one line that it ended, then silence.
    s.capture("lb1.csv", "haproxy-2.6/show-stat.csv");
    let (code, lines) = run_with(&s, &[], 300.0);
    assert_eq!(code, Some(0));
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("source lb1 is fine again (it failed from "),
        "{lines:?}"
    );
    let (code, lines) = run_with(&s, &[], 360.0);
    assert_eq!((code, lines), (Some(0), Vec::new()));
    // A new outage is a new problem: printed again.
    std::fs::remove_file(s.path("lb1.csv")).unwrap();
    let (code, lines) = run_with(&s, &[], 420.0);
    assert_eq!(code, Some(1));
    assert_eq!(lines.len(), 1, "{lines:?}");
}

/// Issue #16 item 5, the heartbeat: a heartbeat URL that fails is printed when it starts
/// failing and when it works again, not on every run.
#[test]
fn a_failing_heartbeat_is_printed_when_it_starts_and_when_it_ends() {
    let dead = common::closed_addr();
    let s = Scenario::new(&format!(
        "{DOWN_FOR_2_RUNS}\n[heartbeat]\nurl = \"http://{dead}/ping\"\ntimeout = \"2s\"\n"
    ));
    s.capture("lb1.csv", "haproxy-2.6/show-stat.csv");
    let (code, lines) = run_with(&s, &[], 0.0);
    assert_eq!(code, Some(0), "a heartbeat failure is a warning: {lines:?}");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("heartbeat http://"), "{lines:?}");
    for i in 1..4 {
        let (_, lines) = run_with(&s, &[], 60.0 * f64::from(i));
        assert!(lines.is_empty(), "run {}: {lines:?}", i + 1);
    }
    let (_, lines) = run_with(&s, &["-v"], 240.0);
    assert!(
        lines.iter().any(|l| l.contains("heartbeat http://")),
        "{lines:?}"
    );
    // The heartbeat receiver comes back.
    let receiver = std::net::TcpListener::bind(dead).expect("bind the heartbeat's port");
    let server = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut conn, _) = receiver.accept().unwrap();
        let mut buf = [0u8; 4096];
        let _ = conn.read(&mut buf);
        conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK")
            .unwrap();
    });
    let (code, lines) = run_with(&s, &[], 300.0);
    server.join().unwrap();
    assert_eq!(code, Some(0));
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("heartbeat is fine again"), "{lines:?}");
}

/// Every queued notification keeps its own copy of what still fires: a group of thousands
/// grew the state by about 1 MB per run while a notifier was down, until the state was
/// larger than hapwatch reads. The list is capped; the rest is counted.
#[test]
fn a_large_group_still_firing_is_listed_up_to_a_cap_and_counted() {
    let s = Scenario::new(
        "[[source]]\nname = \"lb1\"\nfile = \"lb1.csv\"\n\n[[rule]]\nname = \"Down\"\nscope = { type = \"server\" }\nwhen = 'state == \"down\"'\n",
    );
    let capture = String::from_utf8(fixture_bytes("haproxy-2.6/backend-down.csv")).unwrap();
    let web1 = capture
        .lines()
        .find(|l| l.starts_with("app-main,web1,"))
        .unwrap()
        .to_string();
    // 80 servers down: web1 to web4 and 76 copies of web1 under other names.
    let mut many = capture.clone();
    for i in 0..76 {
        many.push_str(&web1.replacen("app-main,web1,", &format!("app-main,x{i:02},"), 1));
        many.push('\n');
    }
    s.write("lb1.csv", &many);
    s.notify(0.0);
    // web1 comes back: one recovery, 79 still firing, 50 of them listed.
    s.write(
        "lb1.csv",
        &edit_capture(&many, "app-main", "web1", "status", "UP"),
    );
    let out = s.run_at(60.0);
    out.status(0);
    let n: Value = serde_json::from_str(out.stdout.lines().next().unwrap()).unwrap();
    assert_eq!(n["resolved"].as_array().unwrap().len(), 1);
    assert_eq!(n["still_firing"].as_array().unwrap().len(), 50);
    assert_eq!(n["still_firing_more"], 29);
}

/// A state read only in part (one alert's entry unreadable) announces no problem that run
/// (the lost one must not come again as new), but the alerts it kept still announce their
/// recovery: before, they resolved in silence and receivers believed them down for good.
#[test]
fn after_a_partly_unreadable_state_kept_alerts_still_announce_their_recovery() {
    let s = Scenario::new(
        "[[source]]\nname = \"lb1\"\nfile = \"lb1.csv\"\n\n[[rule]]\nname = \"Down\"\nscope = { type = \"server\" }\nwhen = 'state == \"down\"'\n",
    );
    s.capture("lb1.csv", "haproxy-2.6/backend-down.csv");
    assert_eq!(
        s.notify(0.0),
        ["Down: +app-main/web1 +app-main/web2 +app-main/web3 +app-main/web4"]
    );
    let mut state = s.state();
    for alert in state["alerts"].as_object_mut().unwrap().values_mut() {
        if alert["labels"]["server"] == "web1" {
            alert["status"] = Value::from(12345);
        }
    }
    s.write("state.json", &state.to_string());
    // Only web4 is down now.
    s.capture("lb1.csv", "haproxy-2.6/show-stat.csv");
    let out = s.run_at(60.0);
    out.status(1)
        .stderr_contains("had unreadable parts, dropped: alerts.");
    assert_eq!(summarize(&out), ["Down: -app-main/web2 -app-main/web3"]);
}

/// What still fires is listed only to the notifiers it is routed to: with routes by
/// severity, a warning's notification listed a critical alert that its receiver never got
/// (and whose recovery it would never get).
#[test]
fn still_firing_lists_only_what_is_routed_to_the_notifier() {
    let closed = common::closed_addr();
    let s = Scenario::new(&format!(
        "[[source]]\nname = \"lb1\"\nfile = \"lb1.csv\"\n\n\
         [[rule]]\nname = \"Down\"\nseverity = \"critical\"\nscope = {{ type = \"server\", exclude_proxy = \"api\" }}\nwhen = 'state == \"down\"'\n\n\
         [[rule]]\nname = \"ApiDown\"\nseverity = \"warning\"\nscope = {{ type = \"server\", proxy = \"api\" }}\nwhen = 'state == \"down\"'\n\n\
         [alerting]\ngroup_by = [\"source\"]\n\n[routes]\ncritical = [\"oncall\"]\ndefault = [\"chat\"]\n\n\
         [notifier.oncall]\ntype = \"webhook\"\nurl = \"http://{closed}/oncall\"\nretries = 0\ntimeout = \"1s\"\n\n\
         [notifier.chat]\ntype = \"webhook\"\nurl = \"http://{closed}/chat\"\nretries = 0\ntimeout = \"1s\"\n"
    ));
    let capture = String::from_utf8(fixture_bytes("haproxy-2.6/show-stat.csv")).unwrap();
    s.write("lb1.csv", &capture);
    s.run_at(0.0).status(1);
    // api1 goes down too: chat hears of api1, and of nothing it was never told.
    s.write(
        "lb1.csv",
        &edit_capture(&capture, "api", "api1", "status", "DOWN"),
    );
    s.run_at(60.0).status(1);
    let outbox = s.state()["outbox"].as_array().unwrap().clone();
    let to_chat: Vec<&Value> = outbox.iter().filter(|i| i["notifier"] == "chat").collect();
    assert_eq!(to_chat.len(), 1, "{outbox:?}");
    let payload = &to_chat[0]["payload"];
    assert_eq!(payload["firing"][0]["labels"]["server"], "api1");
    assert!(
        payload["still_firing"]
            .as_array()
            .is_none_or(|s| s.is_empty()),
        "web4 was never routed to chat: {payload}"
    );
}

// ---------------------------------------------------------------------------------------
// The wall clock stepping back (an NTP step, a VM restored from a snapshot)
// ---------------------------------------------------------------------------------------

/// `show stat` of down-after-kill.csv with web1's `stot` set to `stot`.
fn with_stot(stot: u64) -> String {
    let text = String::from_utf8(fixture_bytes("haproxy-2.6/down-after-kill.csv")).unwrap();
    edit_capture(&text, "app-main", "web1", "stot", &stot.to_string())
}

/// A scenario with one rule, `Busy` on web1 `when`, plus `extra` keys (`for = "2m"`).
fn busy_on_web1(when: &str, extra: &str) -> Scenario {
    Scenario::new(&format!(
        "[[source]]\nname = \"lb1\"\nfile = \"lb1.csv\"\n\n[[rule]]\nname = \"Busy\"\n\
         scope = {{ type = \"server\", server = \"web1\" }}\nwhen = '{when}'\n{extra}\n"
    ))
}

/// Runs `s` once a minute from 0 for `minutes` runs, web1 serving 10 sessions a minute
/// (`stot` 1000, 1010, …): what they announced.
fn busy_minutes(s: &Scenario, minutes: u64) -> Vec<String> {
    (0..minutes)
        .flat_map(|minute| run_with_stot(s, 1000 + 10 * minute, 60.0 * minute as f64))
        .collect()
}

/// A quiet run of `s` at `at` on that capture with web1's `stot` at `stot`: what it
/// announced.
fn run_with_stot(s: &Scenario, stot: u64, at: f64) -> Vec<String> {
    s.write("lb1.csv", &with_stot(stot));
    let out = s.run_at(at);
    out.status(0).stderr_empty();
    summarize(&out)
}

/// Ten runs a minute apart (web1 serving 10 sessions a minute), then the clock an hour
/// behind for ten runs: every run exits 0 without a line, and the windows and counters
/// never give a negative or a made-up value (no rule on them fires), though the state
/// holds samples "from the future". The alert on the window is neither resolved while
/// the window is not covered (the run cannot tell) nor announced again once it is.
#[test]
fn a_clock_stepping_back_gives_no_negative_or_garbage_rates_and_resolves_what_cleared() {
    let s = Scenario::new(
        r#"
[[source]]
name = "lb1"
file = "lb1.csv"

[[rule]]
name = "Negative"
scope = { type = "server", server = "web1" }
when = 'delta(stot, 5m) < 0 or rate(stot, 5m) < 0 or rises(stot, 5m) < 0 or delta(stot) < 0 or rate(stot) < 0'

[[rule]]
name = "Garbage"
scope = { type = "server", server = "web1" }
when = 'delta(stot, 5m) > 60 or rate(stot, 5m) > 0.5 or rises(stot, 5m) > 6 or delta(stot) > 10 or rate(stot) > 0.5'

[[rule]]
name = "Covered"
scope = { type = "server", server = "web1" }
when = 'rate(stot, 5m) > 0.1'
"#,
    );
    let mut stot = 1000;
    let mut run = |at: f64| {
        stot += 10;
        run_with_stot(&s, stot, at)
    };
    let mut seen = Vec::new();
    for minute in 0..10 {
        seen.extend(run(60.0 * f64::from(minute)));
    }
    // Covered from the sixth run on (a sample 5 min old).
    assert_eq!(seen, ["Covered: +app-main/web1"]);
    // The clock steps back an hour: no sample is old enough, the window is absent for
    // five runs, nothing fires, and the Covered alert is kept as it is (no false
    // recovery), then covered again with the real rate.
    let mut after = Vec::new();
    for minute in 0..10 {
        after.extend(run(-3600.0 + 60.0 * f64::from(minute)));
    }
    assert_eq!(after, Vec::<String>::new());
}

/// hapwatch stopped for 20 minutes (twice a 5-minute window and more): on its return the
/// window is not covered for five runs, and the alert on it is kept as it is (those runs
/// cannot tell whether the problem is over: no false recovery); once covered again, the
/// window shows that web1 served nothing since, and the recovery is announced then.
#[test]
fn an_alert_on_a_window_is_kept_while_a_gap_leaves_the_window_uncovered() {
    let s = busy_on_web1("rate(stot, 5m) > 0.1", "");
    let run = |stot: u64, at: f64| run_with_stot(&s, stot, at);
    let seen = busy_minutes(&s, 8);
    assert_eq!(seen, ["Busy: +app-main/web1"], "covered from the sixth run");
    // Back after 20 minutes; web1 serves nothing any more.
    let back = 60.0 * 7.0 + 1200.0;
    let after: Vec<Vec<String>> = (0..6)
        .map(|minute| run(1070, back + 60.0 * minute as f64))
        .collect();
    assert_eq!(
        after,
        [
            vec![],
            vec![],
            vec![],
            vec![],
            vec![],
            vec!["Busy: -app-main/web1".to_string()]
        ],
        "kept while not covered, resolved once the window shows no traffic"
    );
}

/// The clock set back an hour under a one-run `rate(stot)` alert: the previous sample is
/// "in the future", the rate has no interval and is absent for one run, which cannot say
/// the problem is over: the alert is kept (as after a reload), not resolved and fired
/// again (review finding, round 4).
#[test]
fn a_one_run_rate_alert_is_kept_when_the_clock_stepped_back() {
    let s = busy_on_web1("rate(stot) > 0.1", "");
    let run = |stot: u64, at: f64| run_with_stot(&s, stot, at);
    let seen = busy_minutes(&s, 3);
    assert_eq!(seen, ["Busy: +app-main/web1"]);
    let after: Vec<String> = (0..3)
        .flat_map(|minute| run(1030 + 10 * minute, -3600.0 + 60.0 * minute as f64))
        .collect();
    assert_eq!(
        after,
        Vec::<String>::new(),
        "still busy: nothing to announce"
    );
}

/// A rule reading two windows (2 and 5 minutes) after a gap that leaves only the shorter
/// one uncovered: its alert is kept, as for one window (review finding, round 4).
#[test]
fn an_alert_on_two_windows_is_kept_while_either_is_uncovered() {
    let s = busy_on_web1("delta(stot, 2m) > 0 and delta(stot, 5m) > 0", "");
    let run = |stot: u64, at: f64| run_with_stot(&s, stot, at);
    let seen = busy_minutes(&s, 6);
    assert_eq!(seen, ["Busy: +app-main/web1"], "both covered at 5m");
    // Next run at 9m30s: the 5-minute window starts at 5m (covered), the 2-minute one has
    // no start younger than 4m (not covered) until two more runs are in.
    let after: Vec<String> = [570.0, 630.0, 690.0, 750.0]
        .iter()
        .enumerate()
        .flat_map(|(k, at)| run(1060 + 10 * k as u64, *at))
        .collect();
    assert_eq!(
        after,
        Vec::<String>::new(),
        "still busy: nothing to announce"
    );
}

/// A pending alert (`for = "2m"`) on a window that a gap leaves uncovered is forgotten,
/// as any pending alert whose condition is not true: its `for` starts again once the
/// window is covered, rather than count the runs it did not see (review finding, round 4).
#[test]
fn a_pending_alert_on_an_uncovered_window_starts_its_for_again() {
    let s = busy_on_web1("rate(stot, 2m) > 0.1", "for = \"2m\"");
    let run = |stot: u64, minute: u64| run_with_stot(&s, stot, 60.0 * minute as f64);
    let seen = busy_minutes(&s, 3);
    assert!(seen.is_empty(), "pending from 2m: {seen:?}");
    // Away from 2m to 7m; busy again from 7m on (10 sessions a minute).
    let mut after = Vec::new();
    for minute in 7..12 {
        after.push((minute, run(1000 + 10 * minute, minute)));
    }
    assert_eq!(
        after,
        [
            (7, vec![]),
            (8, vec![]),
            (9, vec![]),
            (10, vec![]),
            (11, vec!["Busy: +app-main/web1".to_string()]),
        ],
        "covered again at 9m, pending from then, firing 2 minutes later"
    );
}

/// An alert pending (`for = "2m"`) when the clock steps back an hour fires two minutes
/// of runs later, not an hour and two minutes later: times the state holds "in the
/// future" count from now.
#[test]
fn a_pending_alert_still_fires_after_its_for_when_the_clock_stepped_back() {
    let s = Scenario::new(
        r#"
[[source]]
name = "lb1"
file = "lb1.csv"

[[rule]]
name = "Down"
scope = { type = "server", server = "web3" }
when = 'state == "down"'
for = "2m"
"#,
    );
    s.capture("lb1.csv", "haproxy-2.6/down-after-kill.csv");
    assert!(s.notify(0.0).is_empty(), "pending");
    assert!(s.notify(-3600.0).is_empty());
    assert!(s.notify(-3540.0).is_empty());
    assert_eq!(s.notify(-3480.0), ["Down: +app-main/web3"]);
}

/// A silence added before the clock stepped back (it starts "in the future") still holds.
#[test]
fn a_silence_still_holds_after_the_clock_stepped_back() {
    let s = Scenario::new(DOWN_FOR_2_RUNS.replace("for_runs = 2", "").as_str());
    s.capture("lb1.csv", "haproxy-2.6/show-stat.csv");
    assert!(s.notify(0.0).is_empty(), "all up");
    s.hapwatch()
        .args(["silence", "add", "--match", "server=web3", "--for", "2h"])
        .run()
        .status(0);
    // The clock steps back half an hour; web3 goes down.
    s.capture("lb1.csv", "haproxy-2.6/down-after-kill.csv");
    assert!(s.notify(-1800.0).is_empty(), "silenced");
    assert!(s.notify(-1740.0).is_empty(), "silenced");
}
