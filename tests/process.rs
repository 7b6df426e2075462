//! The process row (`show info`) and `prev()` against a real HAProxy: rules on it see the
//! runtime API's `show info` and read time, a stats page has no process row (and `check
//! --connect` says so), and the state file keeps only what `prev()` reads.

mod common;

use common::{config_toml, Access, Haproxy, Hapwatch};
use serde_json::Value;

const PW_VAR: &str = "HAPWATCH_TEST_STATS_PASSWORD";

/// A process rule reading `show info` and the read time, and a frontend rule reading
/// `info.Maxconn`, on a unix-socket source and a stats-page source of the same HAProxy.
const RULES: &str = r#"
[[rule]]
name = "ProcessSeen"
scope = { type = "process" }
when = 'Maxconn > 0 and source.read_seconds >= 0 and source.read_seconds < 60 and info["Ulimit-n"] > 0'
summary = "{{ source }} pid {{ Pid }} maxconn {{ info.Maxconn }} read {{ source.read_seconds > 0 }}"

[[rule]]
name = "FrontendSeesInfo"
scope = { type = "frontend", proxy = "fe" }
when = 'info.Maxconn > 0'
summary = "{{ proxy }} on {{ source }} with maxconn {{ info.Maxconn }}"
"#;

fn sources(haproxy: &Haproxy) -> String {
    config_toml(&[
        haproxy.source("unix", Access::UserSocket),
        haproxy
            .source("http", Access::StatsPage)
            .set("password", format!("env:{PW_VAR}")),
    ])
}

#[test]
fn process_rules_see_show_info_and_the_read_time_on_the_socket_only() {
    let Some(haproxy) = Haproxy::start_or_skip() else {
        return;
    };
    let out = Hapwatch::new()
        .config_text(format!("{}\n{RULES}", sources(&haproxy)))
        .env(PW_VAR, Haproxy::STATS_PASSWORD)
        .args(["run", "--dry-run", "--format", "json"])
        .run();
    let json = out.json();
    let text = json.to_string();
    let pid = haproxy.pid();
    assert!(
        text.contains(&format!("unix pid {pid} maxconn ")),
        "process row of the socket source: {out:?}"
    );
    assert!(text.contains(" read True"), "read time: {out:?}");
    assert!(
        text.contains("fe on unix with maxconn "),
        "info.X from a frontend row: {out:?}"
    );
    // The stats page has no `show info`: no process row, and `info.Maxconn` is absent.
    assert!(!text.contains("http pid"), "{out:?}");
    assert!(!text.contains("on http with maxconn"), "{out:?}");
    assert!(!text.contains("\"source\":\"http\""), "{out:?}");
}

#[test]
fn check_connect_says_a_stats_page_has_no_process_row() {
    let Some(haproxy) = Haproxy::start_or_skip() else {
        return;
    };
    let out = Hapwatch::new()
        .config_text(format!("{}\n{RULES}", sources(&haproxy)))
        .env(PW_VAR, Haproxy::STATS_PASSWORD)
        .args(["check", "--connect"])
        .run();
    out.success();
    assert!(
        out.stderr.contains(
            "source http is a stats page, which has no `show info`: it has no process row, \
             so rules ProcessSeen cannot match there"
        ),
        "{out:?}"
    );
    assert!(
        !out.stderr.contains("source unix is a stats page"),
        "{out:?}"
    );
}

/// `prev()` of a `show info` field keeps that field only; of a column, that column only.
#[test]
fn the_state_file_keeps_only_what_prev_reads() {
    let Some(haproxy) = Haproxy::start_or_skip() else {
        return;
    };
    let rules = r#"
[[rule]]
name = "Restarted"
scope = { type = "process" }
when = 'prev(Pid) != Pid'

[[rule]]
name = "CheckChanged"
scope = { type = "server" }
when = 'prev(check_status) != check_status'
"#;
    let config = format!(
        "{}\n{rules}",
        config_toml(&[haproxy.source("unix", Access::UserSocket)])
    );
    let run = Hapwatch::new().config_text(config);
    let state = run.dir().join("state.json");
    let out = run.args(["--state", state.to_str().unwrap(), "run"]).run();
    out.success();
    let json: Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    let prev = &json["samples"]["unix"]["prev"];
    assert_eq!(
        prev["info"],
        serde_json::json!({ "Pid": haproxy.pid().to_string() }),
        "{json}"
    );
    assert_eq!(
        prev["columns"],
        serde_json::json!(["check_status"]),
        "{json}"
    );
    let values = prev["values"][0].as_array().expect("one column of values");
    let rows = json["samples"]["unix"]["rows"].as_str().unwrap();
    assert_eq!(values.len(), rows.lines().count(), "{json}");
    assert!(rows.contains("app/web3\n"), "{json}");
    assert!(values.contains(&Value::from("L4CON")), "{json}");
}

/// Without `prev()` in any rule, the sample keeps nothing for it.
#[test]
fn without_prev_the_state_file_has_no_prev_values() {
    let Some(haproxy) = Haproxy::start_or_skip() else {
        return;
    };
    let config = format!(
        "{}\n{RULES}",
        config_toml(&[haproxy.source("unix", Access::UserSocket)])
    );
    // A counter rule, so that the run stores a sample.
    let config = format!("{config}\n[[rule]]\nname = \"Busy\"\nwhen = 'rate(stot) > 1000000'\n");
    let run = Hapwatch::new().config_text(config);
    let state = run.dir().join("state.json");
    let out = run
        .args(["--state", state.to_str().unwrap(), "run", "-q"])
        .run();
    out.success();
    let text = std::fs::read_to_string(&state).unwrap_or_else(|e| panic!("{e}: {out:?}"));
    assert!(text.contains("\"samples\""), "{text}");
    assert!(!text.contains("\"prev\""), "{text}");
}

/// `delta(DroppedLogs, 5m)`: a window over a `show info` counter. Its samples go through
/// the state file between runs (the field alone, no rows), the window is covered after
/// five minutes, and the alert resolves when nothing rose for five (the lab-windows
/// captures, one a minute: DroppedLogs rises until 4m30s, then stays).
#[test]
fn a_window_over_a_show_info_counter_is_kept_in_the_state_between_runs() {
    let dir = common::temp_dir();
    let source = dir.path().join("lb1.txt");
    let config = dir.path().join("hapwatch.toml");
    std::fs::write(
        &config,
        format!(
            "[[source]]\nname = \"lb1\"\nfile = {}\n\n[state]\nfile = \"state.json\"\n\n\
             [[rule]]\nname = \"DroppingLogs\"\nscope = {{ type = \"process\" }}\n\
             when = 'delta(DroppedLogs, 5m) > 0'\n",
            toml::Value::String(source.display().to_string())
        ),
    )
    .unwrap();
    let capture = |k: u32| {
        let path = common::fixture(&format!("haproxy-2.6/lab-windows/t{k}.txt"));
        std::fs::copy(&path, &source).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    };
    let base = 1_796_400_000.0;
    let mut announced = Vec::new();
    for k in 1..=11u32 {
        capture(k);
        let at = base + 60.0 * f64::from(k - 1);
        let out = Hapwatch::new()
            .config_path(&config)
            .args(["run", "--format", "json", "--now", &at.to_string()])
            .run();
        out.success().stderr_empty();
        let state: Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("state.json")).unwrap()).unwrap();
        let history = state["windows"]["lb1"].as_array().expect("window samples");
        // Only the field the window reads, no row of `show stat`.
        let last = history.last().unwrap();
        assert_eq!(last["columns"], serde_json::json!([]), "{state}");
        assert!(last["info"]["DroppedLogs"].is_string(), "{state}");
        assert_eq!(last["info"].as_object().unwrap().len(), 1, "{state}");
        for line in out.stdout.lines().filter(|l| !l.trim().is_empty()) {
            let n: Value = serde_json::from_str(line).unwrap();
            for (list, mark) in [("firing", "+"), ("resolved", "-")] {
                for alert in n[list].as_array().into_iter().flatten() {
                    let value = alert["value"].as_f64().unwrap_or(-1.0);
                    announced.push(format!(
                        "{k}:{mark}{}",
                        alert["labels"]["alertname"].as_str().unwrap()
                    ));
                    if mark == "+" {
                        // t1 → t6: 13,395 − 1,336 log lines dropped.
                        assert_eq!(value, 12_059.0, "{line}");
                    }
                }
            }
        }
    }
    assert_eq!(announced, ["6:+DroppingLogs", "11:-DroppingLogs"]);
}
