//! Issue #19 items 5 and 6 against the real binary: `[[inhibit]]` (the shipped default:
//! a DOWN backend inhibits its servers' alerts) through `run`, `run --dry-run`, `state
//! show` and the state file; `[source_unreachable]` holding back a failed read, its
//! notification and its stderr line.

mod common;

use common::{fixture_bytes, Hapwatch, Output};
use serde_json::Value;
use std::path::{Path, PathBuf};
use tempfile::TempDir;

/// A config in a temp dir with a `file` source `lb1` reading `lb1.csv`, the shipped
/// default rules (config/rules.toml, with its [[inhibit]] entries), and `rest`.
struct Lab {
    dir: TempDir,
    config: PathBuf,
}

impl Lab {
    fn new(rest: &str) -> Lab {
        let dir = common::temp_dir();
        let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/rules.toml");
        let config = dir.path().join("hapwatch.toml");
        std::fs::write(
            &config,
            format!(
                "include = [{:?}]\n\n[[source]]\nname = \"lb1\"\nfile = \"lb1.csv\"\n\n{rest}\n[state]\nfile = \"state.json\"\n",
                rules.display().to_string()
            ),
        )
        .unwrap();
        Lab { dir, config }
    }

    fn capture(&self, fixture: &str) {
        std::fs::write(self.dir.path().join("lb1.csv"), fixture_bytes(fixture)).unwrap();
    }

    fn unreadable(&self) {
        let _ = std::fs::remove_file(self.dir.path().join("lb1.csv"));
    }

    fn run(&self, args: &[&str], at: u64) -> Output {
        Hapwatch::new()
            .config_path(&self.config)
            .args(args)
            .args(["--now", &(1_800_000_000 + at).to_string()])
            .run()
    }

    /// `hapwatch ARGS` without a time (`check`, `state show`).
    fn command(&self, args: &[&str]) -> Output {
        Hapwatch::new().config_path(&self.config).args(args).run()
    }

    fn state(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.dir.path().join("state.json")).unwrap()).unwrap()
    }
}

/// `alertname proxy/server` of every alert of every notification on stdout (`--format
/// json`), `+` firing, `-` resolved.
fn notified(out: &Output) -> Vec<String> {
    let mut all = Vec::new();
    for line in out.stdout.lines().filter(|l| !l.trim().is_empty()) {
        let n: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        for (mark, key) in [("+", "firing"), ("-", "resolved")] {
            for a in n[key].as_array().unwrap() {
                let l = &a["labels"];
                all.push(format!(
                    "{mark}{} {}/{}",
                    l["alertname"].as_str().unwrap(),
                    l["proxy"].as_str().unwrap_or(""),
                    l["server"].as_str().unwrap_or("")
                ));
            }
        }
    }
    all
}

/// The issue's example: five servers down in one backend made one BackendDown mail AND
/// one ServerDown mail listing them; with the default [[inhibit]], one BackendDown mail.
#[test]
fn a_down_backend_is_one_notification_and_its_servers_are_recorded_inhibited() {
    let lab = Lab::new("");
    lab.capture("haproxy-2.6/backend-down.csv");

    // The dry run shows the servers firing but inhibited, and one notification.
    let dry = lab.run(&["run", "--dry-run"], 0);
    dry.status(0)
        .stdout_contains("-> firing (inhibited by BackendDown app-main)")
        .stdout_contains("Notifications (1):");

    let out = lab.run(&["run", "--format", "json"], 0);
    out.status(0).stderr_empty();
    assert_eq!(notified(&out), ["+BackendDown app-main/"]);

    // The state file records who inhibits each server, so that a later run knows they
    // were never announced (and `state show` says why).
    let state = lab.state();
    let alerts = state["alerts"].as_object().unwrap();
    let backend = alerts
        .iter()
        .find(|(_, a)| a["labels"]["alertname"] == "BackendDown")
        .map(|(fp, _)| fp.clone())
        .unwrap();
    let servers: Vec<&Value> = alerts
        .values()
        .filter(|a| a["labels"]["alertname"] == "ServerDown")
        .collect();
    assert_eq!(servers.len(), 4);
    for s in &servers {
        assert_eq!(s["status"], "firing");
        assert_eq!(s["inhibited_by"], Value::String(backend.clone()));
        assert!(s.get("notified_at").is_none(), "never announced: {s}");
    }
    lab.command(&["state", "show"])
        .status(0)
        .stdout_contains(&format!("firing, inhibited by {backend}"));

    // Nothing new: nothing sent.
    let out = lab.run(&["run", "--format", "json"], 60);
    out.status(0);
    assert!(notified(&out).is_empty(), "{}", out.stdout);

    // The backend is UP again (web1 back, web2 in MAINT); web3 and web4 still fire and
    // were never announced: announced now. web1 and web2 recover without a word.
    lab.capture("haproxy-2.6/down-after-kill.csv");
    let out = lab.run(&["run", "--format", "json"], 120);
    out.status(0);
    assert_eq!(
        notified(&out),
        [
            "-BackendDown app-main/",
            "+ServerDown app-main/web3",
            "+ServerDown app-main/web4"
        ]
    );
    let state = lab.state();
    assert!(
        state["alerts"]
            .as_object()
            .unwrap()
            .values()
            .all(|a| a.get("inhibited_by").is_none()),
        "{state}"
    );
}

/// A state file written before inhibition existed (no `inhibited_by`) loads as it is:
/// its announced ServerDown stays announced once the backend goes down, and its recovery
/// is announced even though it recovers while inhibited.
#[test]
fn an_announced_server_inhibited_later_still_announces_its_recovery() {
    let lab = Lab::new("");
    lab.capture("haproxy-2.6/down-after-kill.csv");
    let out = lab.run(&["run", "--format", "json"], 0);
    assert_eq!(
        notified(&out),
        ["+ServerDown app-main/web3", "+ServerDown app-main/web4"]
    );
    let text = std::fs::read_to_string(lab.dir.path().join("state.json")).unwrap();
    assert!(!text.contains("inhibited_by"), "nothing inhibited: {text}");

    lab.capture("haproxy-2.6/backend-down.csv");
    let out = lab.run(&["run", "--format", "json"], 60);
    assert_eq!(notified(&out), ["+BackendDown app-main/"]);

    // web3 comes back while the backend is still DOWN? Not possible: the backend comes
    // back with it. web1 back: BackendDown resolves; web2 (never announced, now MAINT)
    // recovers in silence; web3 and web4 were announced and still fire: no repeat.
    lab.capture("haproxy-2.6/down-after-kill.csv");
    let out = lab.run(&["run", "--format", "json"], 120);
    assert_eq!(notified(&out), ["-BackendDown app-main/"]);

    // All back: the recoveries of the two announced problems.
    lab.capture("haproxy-2.6/check-in-progress.csv");
    let out = lab.run(&["run", "--format", "json"], 180);
    let got = notified(&out);
    assert!(
        got.contains(&"-ServerDown app-main/web3".to_string()),
        "{got:?}"
    );
}

/// `[source_unreachable] for_runs = 3`: one or two failed reads neither notify nor print
/// the stderr line cron would mail; the third does both. Exit 1 all along (the run had
/// trouble).
#[test]
fn source_unreachable_waits_for_its_for_runs_before_printing_or_notifying() {
    let lab = Lab::new("[source_unreachable]\nfor_runs = 3\nseverity = \"warning\"\n");
    lab.unreadable();
    for (i, at) in [0, 60].into_iter().enumerate() {
        let out = lab.run(&["run", "--format", "json"], at);
        out.status(1).stderr_empty();
        assert!(notified(&out).is_empty(), "run {}: {}", i + 1, out.stdout);
    }
    // -v shows the held-back failure.
    let out = lab.run(&["-v", "run", "--dry-run"], 90);
    out.status(1).stderr_contains("source lb1: ");
    let out = lab.run(&["run", "--format", "json"], 120);
    out.status(1)
        .stderr_contains("hapwatch: source lb1: ")
        .stderr_line_count(1);
    assert_eq!(notified(&out), ["+SourceUnreachable /"]);
    let state = lab.state();
    let alert = state["alerts"]
        .as_object()
        .unwrap()
        .values()
        .find(|a| a["labels"]["alertname"] == "SourceUnreachable")
        .unwrap()
        .clone();
    assert_eq!(alert["labels"]["severity"], "warning");
}

#[test]
fn config_errors_point_at_the_inhibit_or_source_unreachable_entry() {
    let lab = Lab::new(
        "[[inhibit]]\nsource_matchers = [\"alertname=BackendDown\"]\ntarget_matchers = [\"alertname\"]\n",
    );
    lab.command(&["check"])
        .status(2)
        .stderr_contains("hapwatch.toml:9:")
        .stderr_contains(
            "[[inhibit]] target_matchers: matcher \"alertname\": expected LABEL=VALUE",
        );
    let lab = Lab::new("[source_unreachable]\nnotify = [\"pagr\"]\n\n[notifier.pager]\ntype = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\n");
    lab.command(&["check"])
        .status(2)
        .stderr_contains("[source_unreachable]: notify: no notifier named \"pagr\"")
        .stderr_contains("did you mean");
    let lab = Lab::new("[source_unreachable]\nfor = \"2m\"\nfor_runs = 2\n");
    lab.command(&["check"])
        .status(2)
        .stderr_contains("[source_unreachable]: set `for` or `for_runs`, not both");
}

/// Commit 0464303, finding 3: a firing alert kept without being evaluated (here: its
/// source cannot be read, so its ServerDown alerts stay firing) has its inhibitor
/// recomputed each run. When the inhibiting alert (from another source, still read)
/// resolves, the kept alert is released: no longer `inhibited by` in the state.
#[test]
fn a_kept_alert_is_released_when_its_inhibitor_resolves() {
    let dir = common::temp_dir();
    let config = dir.path().join("hapwatch.toml");
    std::fs::write(
        &config,
        r#"[[source]]
name = "lb1"
file = "lb1.csv"

[[source]]
name = "lb2"
file = "lb2.csv"

[state]
file = "state.json"

[[rule]]
name = "ServerDown"
scope = { type = "server" }
when = 'state == "down"'

[[rule]]
name = "Upstream"
scope = { type = "server", server = "web3" }
when = 'state == "down"'

[[inhibit]]
source_matchers = ["alertname=Upstream", "source=lb2"]
target_matchers = ["alertname=ServerDown", "source=lb1"]
equal = ["proxy"]
"#,
    )
    .unwrap();
    let capture = |name: &str, fixture: &str| {
        std::fs::write(dir.path().join(name), fixture_bytes(fixture)).unwrap();
    };
    let run = |at: u64| {
        Hapwatch::new()
            .config_path(&config)
            .args(["run", "--now", &(1_800_000_000 + at).to_string()])
            .run()
    };
    let inhibited = || -> Vec<(String, bool)> {
        let state: Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("state.json")).unwrap()).unwrap();
        let mut kept: Vec<(String, bool)> = state["alerts"]
            .as_object()
            .unwrap()
            .values()
            .filter(|a| {
                a["labels"]["alertname"] == "ServerDown"
                    && a["labels"]["source"] == "lb1"
                    && a["status"] == "firing"
            })
            .map(|a| {
                (
                    a["labels"]["server"].as_str().unwrap().to_string(),
                    a["inhibited_by"].is_string(),
                )
            })
            .collect();
        kept.sort();
        kept
    };
    // web3 down on lb2 (Upstream) inhibits lb1's ServerDown alerts.
    capture("lb1.csv", "haproxy-2.6/down-after-kill.csv");
    capture("lb2.csv", "haproxy-2.6/down-after-kill.csv");
    run(0);
    assert_eq!(
        inhibited(),
        [("web3".to_string(), true), ("web4".to_string(), true)]
    );
    // lb1 cannot be read: its alerts are kept firing. Upstream resolves on lb2.
    std::fs::remove_file(dir.path().join("lb1.csv")).unwrap();
    capture("lb2.csv", "haproxy-2.6/check-in-progress.csv");
    run(60).status(1);
    assert_eq!(
        inhibited(),
        [("web3".to_string(), false), ("web4".to_string(), false)],
        "released once their inhibitor resolved"
    );
}

/// Item 2 of issue #22: an alert that becomes inhibited is one `inhibited` history line
/// (naming the inhibitor), one that stops being inhibited while it still fires is one
/// `uninhibited` line, a recovery ends an inhibition without one; `hapwatch history`
/// reads them back.
#[test]
fn inhibitions_starting_and_ending_are_history_lines() {
    let lab = Lab::new("");
    lab.capture("haproxy-2.6/down-after-kill.csv");
    lab.run(&["run", "--format", "json"], 0).status(0);
    lab.capture("haproxy-2.6/backend-down.csv");
    lab.run(&["run", "--format", "json"], 60).status(0);
    // Nothing changes: no line.
    lab.run(&["run", "--format", "json"], 90).status(0);
    lab.capture("haproxy-2.6/down-after-kill.csv");
    lab.run(&["run", "--format", "json"], 120).status(0);

    let history = std::fs::read_to_string(lab.dir.path().join("state.history.jsonl")).unwrap();
    let lines: Vec<Value> = history
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let events: Vec<String> = lines
        .iter()
        .filter(|l| l["event"] == "inhibited" || l["event"] == "uninhibited")
        .map(|l| {
            format!(
                "{} {} {}",
                l["time"].as_f64().unwrap() - 1_800_000_000.0,
                l["event"].as_str().unwrap(),
                l["labels"]["server"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        events,
        [
            "60 inhibited web1",
            "60 inhibited web2",
            "60 inhibited web3",
            "60 inhibited web4",
            // web1 and web2 resolve (their resolved line ends it); web3 and web4 still fire.
            "120 uninhibited web3",
            "120 uninhibited web4",
        ],
        "{history}"
    );
    for l in lines.iter().filter(|l| l["event"] == "inhibited") {
        assert_eq!(l["inhibited_by"]["alertname"], "BackendDown", "{l}");
        assert_eq!(l["inhibited_by"]["proxy"], "app-main", "{l}");
        assert_eq!(l["labels"]["alertname"], "ServerDown", "{l}");
    }
    // Read back by `hapwatch history`, table and JSON.
    let since = ["--since", "2027-01-15", "--now", "1800000200"];
    lab.command(&[&["history"][..], &since[..]].concat())
        .status(0)
        .stdout_contains("inhibited")
        .stdout_contains("(inhibited by BackendDown app-main)")
        .stdout_contains("uninhibited");
    let json = lab.command(&[&["history", "--format", "json"][..], &since[..]].concat());
    json.status(0);
    let doc: Value = serde_json::from_str(&json.stdout).unwrap();
    let text = doc.to_string();
    assert_eq!(text.matches("\"event\":\"inhibited\"").count(), 4, "{text}");
    assert_eq!(
        text.matches("\"event\":\"uninhibited\"").count(),
        2,
        "{text}"
    );
    // The incidents carry the spans, and the report's timelines show them: web1 and web2
    // inhibited until they resolved at 08:02, web3 and web4 until BackendDown ended.
    for i in doc["incidents"].as_array().unwrap() {
        let spans = i["inhibited"].as_array().unwrap();
        if i["rule"] == "ServerDown" {
            assert_eq!(
                spans,
                &vec![serde_json::json!([1_800_000_060.0, 1_800_000_120.0])],
                "{i}"
            );
        } else {
            assert!(spans.is_empty(), "{i}");
        }
    }
    let svg = lab.command(&[
        "report",
        "--format",
        "svg",
        "--since",
        "2027-01-15",
        "--now",
        "1800000200",
    ]);
    svg.status(0);
    assert_eq!(
        svg.stdout.matches("<rect class=\"inhibit\"").count(),
        4,
        "{}",
        svg.stdout
    );
    assert!(svg.stdout.contains("<title>inhibited (by an [[inhibit]] entry) from 2027-01-15 08:01:00 UTC to 2027-01-15 08:02:00 UTC</title>"));
}
