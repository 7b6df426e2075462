//! Rules that read around their row: parents (`backend.X`, `frontend.X`), aggregates over
//! a backend's servers and a frontend's listeners, and windows (`delta(col, 5m)`), on real
//! HAProxy 2.6 captures: values, load-time errors, streaming, and the shipped examples.

mod common;

use common::Hapwatch;
use hapwatch::alert::{Alert, Value};
use hapwatch::config::Config;
use hapwatch::engine::{self, PendingSamples, PendingWindows, SourceResult, Watch};
use hapwatch::rules::Input;
use hapwatch::source::RowSink;
use hapwatch::state::State;
use hapwatch::stats::{Info, ProxyType, Snapshot, StatParser, Stats};
use std::path::Path;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(root().join(relative)).unwrap()
}

/// `tests/fixtures/haproxy-2.6/parents/parents.txt`: `show info;show stat`, split.
fn parents_capture() -> Snapshot {
    let text = read("tests/fixtures/haproxy-2.6/parents/parents.txt");
    let (info, csv) = text.split_at(text.find("# pxname").expect("a CSV header"));
    Snapshot {
        info: Some(Info::parse(info)),
        stats: Stats::parse(csv.as_bytes().to_vec()).unwrap(),
    }
}

fn config(rules: &str) -> Config {
    Config::parse(rules, &root().join("config/test.toml"), true).unwrap_or_else(|e| panic!("{e}"))
}

fn evaluate(config: &Config, snapshot: &Snapshot) -> Vec<Alert> {
    config.rules.evaluate(
        &Input {
            source: "lb1",
            labels: &Default::default(),
            snapshot,
            previous: None,
            now: 1_000_000.0,
        },
        None,
    )
}

/// `proxy/server = value` of each alert of a one-rule config whose value is `value`.
fn values(scope: &str, value: &str) -> Vec<String> {
    let cfg = config(&format!(
        "[[rule]]\nname = \"T\"\nscope = {{ type = \"{scope}\" }}\nwhen = 'true'\nvalue = '{value}'\n"
    ));
    evaluate(&cfg, &parents_capture())
        .iter()
        .map(|a| {
            let row = match a.labels.get("server") {
                Some(s) => format!("{}/{s}", a.label("proxy")),
                None => a.label("proxy").to_string(),
            };
            let value = match &a.value {
                Some(Value::Number(n)) => format!("{n}"),
                Some(Value::Text(t)) => t.clone(),
                None => "absent".into(),
            };
            format!("{row}={value}")
        })
        .collect()
}

#[test]
fn aggregates_fold_a_backends_servers_and_a_frontends_listeners() {
    // app: web1 UP (stot 7), web2 DOWN (0), web3 UP (6); both: s1, s2 DOWN; empty: none.
    assert_eq!(
        values("backend", "count(servers)"),
        ["app=3", "both=2", "empty=0"]
    );
    assert_eq!(
        values("backend", r#"count(servers, state == "up")"#),
        ["app=2", "both=0", "empty=0"]
    );
    assert_eq!(
        values("backend", "sum(servers, stot)"),
        ["app=13", "both=0", "empty=absent"]
    );
    assert_eq!(
        values("backend", r#"avg(servers, stot, state == "up")"#),
        ["app=6.5", "both=absent", "empty=absent"]
    );
    assert_eq!(
        values("backend", "min(servers, stot) + max(servers, stot)"),
        ["app=7", "both=0", "empty=absent"]
    );
    // Absent member values are skipped: listeners have no hrsp_5xx.
    assert_eq!(
        values("frontend", "count(listeners)"),
        ["fe_main=2", "both=1", "fe_nosock=0"]
    );
    assert_eq!(
        values("frontend", "sum(listeners, hrsp_5xx)"),
        ["fe_main=absent", "both=absent", "fe_nosock=absent"]
    );
    assert_eq!(
        values("frontend", "max(listeners, stot) - min(listeners, stot)"),
        ["fe_main=7", "both=0", "fe_nosock=absent"]
    );
    // The two-argument min/max keep their meaning.
    assert_eq!(
        values("frontend", "min(stot, 5)"),
        ["fe_main=5", "both=4", "fe_nosock=1"]
    );
    // A set on a row that has none is absent, not 0: only backends match.
    let cfg = config("[[rule]]\nname = \"T\"\nwhen = 'count(servers) >= 0'\n");
    let types: Vec<String> = evaluate(&cfg, &parents_capture())
        .iter()
        .map(|a| a.label("type").to_string())
        .collect();
    assert_eq!(types, ["backend", "backend", "backend"]);
}

#[test]
fn servers_read_their_backend_and_listeners_their_frontend() {
    assert_eq!(
        values("server", "backend.act"),
        [
            "app/web1=2",
            "app/web2=2",
            "app/web3=2",
            "both/s1=0",
            "both/s2=0"
        ]
    );
    assert_eq!(
        values("server", "backend.state"),
        [
            "app/web1=up",
            "app/web2=up",
            "app/web3=up",
            "both/s1=down",
            "both/s2=down"
        ]
    );
    assert_eq!(
        values("listener", "stot / frontend.stot"),
        [
            format!("fe_main/l1={}", 10.0 / 13.0),
            format!("fe_main/l2={}", 3.0 / 13.0),
            "both/lb1=1".into()
        ]
    );
    // Inside an aggregate, the members read their own parent: the backend itself.
    assert_eq!(
        values("backend", "sum(servers, backend.act)"),
        ["app=6", "both=0", "empty=absent"]
    );
    // On rows without such a parent, it is absent.
    let cfg = config("[[rule]]\nname = \"T\"\nwhen = 'backend.act >= 0 or frontend.scur >= 0'\n");
    let rows: Vec<String> = evaluate(&cfg, &parents_capture())
        .iter()
        .map(|a| a.label("type").to_string())
        .collect();
    assert!(
        rows.iter().all(|t| t == "server" || t == "listener"),
        "{rows:?}"
    );
    assert_eq!(rows.len(), 5 + 3);
}

#[test]
fn templates_read_the_parent_row() {
    let cfg = config(
        r#"[[rule]]
name = "T"
scope = { type = "server" }
when = 'state == "down"'
summary = "{{ server }} down; {{ proxy }} is {{ backend.state }} ({{ backend.status }}, {{ backend.act }} up)"
"#,
    );
    let summaries: Vec<String> = evaluate(&cfg, &parents_capture())
        .iter()
        .map(|a| a.annotations["summary"].clone())
        .collect();
    assert_eq!(
        summaries,
        [
            "web2 down; app is up (UP, 2 up)",
            "s1 down; both is down (DOWN, 0 up)",
            "s2 down; both is down (DOWN, 0 up)"
        ]
    );
}

#[test]
fn misuse_is_refused_at_load_with_file_line_and_column() {
    let err = |text: &str| {
        Config::parse(text, Path::new("/etc/hapwatch/h.toml"), true)
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        err(
            "[[rule]]\nname = \"Bad\"\nscope = { type = \"backend\" }\nwhen = 'backend.act == 0'\n"
        ),
        "/etc/hapwatch/h.toml:4:9: rule \"Bad\": when: `backend.…` reads the backend of a server \
         row, but this rule's scope has no server rows; add `scope = { type = \"server\" }`, or \
         read the field directly on backend rows"
    );
    assert_eq!(
        err("[[rule]]\nname = \"Bad\"\nscope = { type = \"server\" }\nwhen = 'scur > 0 and count(servers) == 0'\n"),
        "/etc/hapwatch/h.toml:4:22: rule \"Bad\": when: `servers` are the servers of a backend \
         row, but this rule's scope has no backend rows; add `scope = { type = \"backend\" }`"
    );
    assert_eq!(
        err("[[rule]]\nname = \"Bad\"\nscope = { type = \"server\" }\nwhen = 'backend.actt == 0'\n"),
        "/etc/hapwatch/h.toml:4:17: rule \"Bad\": when: unknown column `actt` (did you mean `act`?)"
    );
    assert_eq!(
        err("[[rule]]\nname = \"Bad\"\nscope = { type = \"server\" }\nwhen = 'rate(stot, 5) > 1 and delta(stot, 0s) > 1'\n"),
        "/etc/hapwatch/h.toml:4:43: rule \"Bad\": when: `delta`'s window is a duration of at \
         least 1s, e.g. delta(stot, 5m)"
    );
    assert_eq!(
        err("[[rule]]\nname = \"Bad\"\nscope = { type = \"server\" }\nwhen = 'scur > 0'\nsummary = \"{{ backend.stauts }}\"\n"),
        "/etc/hapwatch/h.toml:5:11: rule \"Bad\": templates: unknown column `stauts` after \
         `backend.` / `frontend.` (did you mean `status`?)"
    );
}

#[test]
fn a_run_asks_for_the_row_types_parents_and_sets_need() {
    let types = |rules: &str| {
        let mask = config(rules).rules.type_mask();
        ProxyType::ALL
            .into_iter()
            .filter(|t| mask.contains(*t))
            .map(|t| t.as_str())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        types("[[rule]]\nname = \"T\"\nscope = { type = \"backend\" }\nwhen = 'count(servers) == 0'\n"),
        ["backend", "server"]
    );
    assert_eq!(
        types(
            "[[rule]]\nname = \"T\"\nscope = { type = \"listener\" }\nwhen = 'frontend.scur > 0'\n"
        ),
        ["frontend", "listener"]
    );
    assert_eq!(
        types("[[rule]]\nname = \"T\"\nscope = { type = \"server\" }\nwhen = 'scur > 0'\nsummary = \"{{ backend.act }}\"\n"),
        ["backend", "server"]
    );
}

fn source<'a>(snapshot: &'a Snapshot, evaluated: Option<engine::Evaluated>) -> SourceResult<'a> {
    SourceResult {
        name: "lb1",
        result: Ok(snapshot),
        evaluated,
    }
}

/// Streams `bytes` into a [`Watch`] in chunks of `chunk` bytes, the state's samples and
/// histories arriving after the first chunk, and returns its evaluation.
fn streamed(
    config: &Config,
    previous: &State,
    info: Option<&Info>,
    bytes: &[u8],
    chunk: usize,
    now: f64,
) -> (Snapshot, engine::Evaluated) {
    let samples = PendingSamples::new();
    let windows = PendingWindows::new();
    let mut watch = Watch::new(config, "lb1", now, &samples).with_windows(&windows);
    let mut parser = StatParser::keeping(watch.columns());
    for (n, piece) in bytes.chunks(chunk).enumerate() {
        if n == 1 {
            let _ = windows.set(previous.windows.clone());
            let _ = samples.set(previous.samples.clone());
        }
        parser.buffer().extend_from_slice(piece);
        parser.advance().expect("parses");
        if let Some(table) = parser.table() {
            watch.rows(table, info, false);
        }
    }
    let _ = windows.set(previous.windows.clone());
    let _ = samples.set(previous.samples.clone());
    let snapshot = Snapshot {
        info: info.cloned(),
        stats: parser.finish().expect("parses"),
    };
    watch.rows(snapshot.stats.table(), info, true);
    (snapshot, watch.finish())
}

/// The shipped example rules, evaluated while the dump arrives (rules that read ahead
/// wait for the end of each proxy), give what a whole dump gives; windows included.
#[test]
fn rules_that_read_ahead_and_windows_stream_like_a_whole_dump() {
    let config = config("include = [\"../examples/parents-and-windows.toml\"]\n");
    let series = "tests/fixtures/haproxy-2.6/series";
    let before = Info::parse(&read(&format!("{series}/info-before-reload.txt")));
    let after = Info::parse(&read(&format!("{series}/info-after-reload.txt")));
    let mut previous = State::new();
    for (minute, file, info) in [
        (0, "t1.csv", None),
        (1, "t2.csv", None),
        (2, "t3.csv", None),
        (3, "t4.csv", None),
        (4, "t5.csv", Some(&before)),
    ] {
        let snapshot = Snapshot {
            info: info.cloned(),
            stats: Stats::parse(read(&format!("{series}/{file}")).into_bytes()).unwrap(),
        };
        engine::step(
            &config,
            &mut previous,
            1000.0 + 60.0 * f64::from(minute),
            &mut [source(&snapshot, None)],
            false,
        );
    }
    let cases = [
        (
            read(&format!("{series}/t6-after-reload.csv")).into_bytes(),
            Some(&after),
            "ServerBusy5m",
        ),
        (
            read("tests/fixtures/haproxy-2.6/parents/parents.txt")
                .split_once("\n\n")
                .map(|(_, csv)| csv.as_bytes().to_vec())
                .unwrap(),
            Some(&after),
            "ListenersUneven",
        ),
    ];
    for (bytes, info, expected) in cases {
        let whole = Snapshot {
            info: info.cloned(),
            stats: Stats::parse(bytes.clone()).unwrap(),
        };
        let mut want_state = previous.clone();
        let want = engine::step(
            &config,
            &mut want_state,
            1300.0,
            &mut [source(&whole, None)],
            false,
        );
        assert!(
            want.active.iter().any(|a| a.name() == expected),
            "{expected}: {:?}",
            want.active
        );
        for chunk in [1, 7, 100, 100_000] {
            let (snapshot, evaluated) = streamed(&config, &previous, info, &bytes, chunk, 1300.0);
            let mut got_state = previous.clone();
            let got = engine::step(
                &config,
                &mut got_state,
                1300.0,
                &mut [source(&snapshot, Some(evaluated))],
                false,
            );
            assert_eq!(got.active, want.active, "{expected}, chunks of {chunk}");
            assert_eq!(got_state, want_state, "{expected}, chunks of {chunk}");
        }
    }
}

#[test]
fn the_shipped_parent_and_window_rule_tests_pass() {
    let out = Hapwatch::new()
        .args([
            "test",
            &root()
                .join("examples/tests/parents-and-windows.toml")
                .display()
                .to_string(),
        ])
        .run();
    out.status(0).stdout_contains("\n2 passed, 0 failed\n");
}

#[test]
fn eval_shows_aggregate_values() {
    let rules = root().join("examples/parents-and-windows.toml");
    let out = Hapwatch::new()
        .config_text(format!("include = [{:?}]\n", rules.display().to_string()))
        .args([
            "eval",
            "--format",
            "json",
            "--snapshot",
            &root()
                .join("tests/fixtures/haproxy-2.6/parents/parents.txt")
                .display()
                .to_string(),
        ])
        .run();
    out.success();
    let alerts = out.json();
    let half_down = alerts
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["labels"]["alertname"] == "BackendHalfDown")
        .expect("BackendHalfDown");
    assert_eq!(half_down["labels"]["proxy"], "both");
    assert_eq!(half_down["value"], 1.0);
    assert_eq!(
        half_down["annotations"]["summary"],
        "both: 100% of its servers are down"
    );
}

#[test]
fn the_history_is_kept_only_while_rules_use_windows() {
    let window = config(
        "[[rule]]\nname = \"W\"\nscope = { type = \"server\" }\nwhen = 'delta(stot, 2m) > 0'\n",
    );
    let plain = config("[[rule]]\nname = \"P\"\nwhen = 'delta(stot) > 0'\n");
    let snapshot = Snapshot {
        info: None,
        stats: Stats::parse(read("tests/fixtures/haproxy-2.6/series/t1.csv").into_bytes()).unwrap(),
    };
    let mut state = State::new();
    for minute in 0..5 {
        engine::step(
            &window,
            &mut state,
            1000.0 + 60.0 * f64::from(minute),
            &mut [source(&snapshot, None)],
            false,
        );
    }
    // At 4 minutes, a 2-minute window needs the samples of minutes 2 (108 s old or more:
    // the newest such), 3 and 4.
    let kept: Vec<f64> = state.windows["lb1"]
        .samples
        .iter()
        .map(|s| s.taken_at)
        .collect();
    assert_eq!(kept, [1120.0, 1180.0, 1240.0]);
    assert_eq!(state.windows["lb1"].samples[0].columns, ["stot"]);
    // The state round-trips through its JSON.
    let json = serde_json::to_string(&state).unwrap();
    let back: State = serde_json::from_str(&json).unwrap();
    assert_eq!(back, state);
    // A config without windows drops the history.
    engine::step(
        &plain,
        &mut state,
        1300.0,
        &mut [source(&snapshot, None)],
        false,
    );
    assert!(state.windows.is_empty());
    assert!(!json.is_empty() && !serde_json::to_string(&state).unwrap().contains("windows"));
}
