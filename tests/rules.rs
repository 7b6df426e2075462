//! Rules over real captures: operators, absent fields, delta()/rate() across resets and
//! reloads, templates, and every default rule in config/rules.toml.

mod common;

use hapwatch::alert::{Alert, Value};
use hapwatch::config::Config;
use hapwatch::rules::sample::Sample;
use hapwatch::rules::Input;
use hapwatch::stats::{Info, Snapshot, Stats};
use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn fixture_text(name: &str) -> String {
    std::fs::read_to_string(root().join("tests/fixtures/haproxy-2.6").join(name)).unwrap()
}

fn snapshot_of(csv: &str, info: Option<&str>) -> Snapshot {
    Snapshot {
        info: info.map(Info::parse),
        stats: Stats::parse(csv.as_bytes().to_vec()).unwrap(),
    }
}

fn snap(name: &str) -> Snapshot {
    snapshot_of(&fixture_text(name), None)
}

/// A capture with one field replaced, for conditions the lab never produced.
fn edited(name: &str, proxy: &str, server: &str, column: &str, value: &str) -> Snapshot {
    snapshot_of(
        &common::edit_capture(&fixture_text(name), proxy, server, column, value),
        None,
    )
}

fn config(rules: &str) -> Config {
    Config::parse(rules, &root().join("config/test.toml"), true).unwrap_or_else(|e| panic!("{e}"))
}

fn defaults() -> Config {
    config("include = [\"rules.toml\"]\n")
}

fn eval(
    config: &Config,
    snapshot: &Snapshot,
    previous: Option<(&Snapshot, f64)>,
    rule: Option<&str>,
) -> Vec<Alert> {
    let now = 1_000_000.0;
    let sample = previous.map(|(snap, interval)| config.rules.sample(snap, now - interval));
    config.rules.evaluate(
        &Input {
            source: "lb1",
            labels: &Default::default(),
            snapshot,
            previous: sample.as_ref(),
            now,
        },
        rule,
    )
}

/// `proxy/server` (or `proxy` for frontends and backends) of each alert.
fn rows(alerts: &[Alert]) -> Vec<String> {
    alerts
        .iter()
        .map(|a| match a.labels.get("server") {
            Some(s) => format!("{}/{s}", a.label("proxy")),
            None => a.label("proxy").to_string(),
        })
        .collect()
}

fn matching(when: &str, snapshot: &Snapshot) -> Vec<String> {
    let cfg = config(&format!("[[rule]]\nname = \"T\"\nwhen = '{when}'\n"));
    rows(&eval(&cfg, snapshot, None, None))
}

#[test]
fn comparison_and_logic_operators() {
    let s = snap("show-stat.csv");
    assert_eq!(matching("stot == 210", &s), ["app-main"]);
    assert_eq!(
        matching("stot == 70 and server != \"web1\"", &s),
        ["app-main/web2", "app-main/web3"]
    );
    assert_eq!(
        matching("stot > 200 and stot < 235", &s),
        ["fe-web", "app-main"]
    );
    assert_eq!(matching("stot >= 234", &s), ["fe-web"]);
    assert_eq!(
        matching("stot <= 0 and kind == \"server\"", &s),
        ["app-main/web4", "api/api-bk"]
    );
    assert_eq!(
        matching("proxy == \"api\" or proxy == \"static\"", &s).len(),
        6
    );
    assert_eq!(
        matching("not (kind == \"server\" or kind == \"backend\")", &s),
        ["stats", "fe-web"]
    );
}

#[test]
fn arithmetic_and_precedence() {
    let s = snap("show-stat.csv");
    // 2 + 3 * 10 = 32, not 50.
    assert_eq!(
        matching(
            "iid * 0 + 2 + 3 * 10 == 32 and proxy == \"api\" and kind == \"backend\"",
            &s
        ),
        ["api"]
    );
    assert_eq!(matching("stot - 200 == 10", &s), ["app-main"]);
    assert_eq!(matching("stot / 70 == 3", &s), ["app-main"]);
    assert_eq!(matching("stot % 100 == 34", &s), ["fe-web"]);
    assert_eq!(matching("-stot == -234", &s), ["fe-web"]);
    assert_eq!(matching("(stot + 16) / 5 == 50", &s), ["fe-web"]);
    assert_eq!(
        matching(
            "abs(0 - stot) == 234 and max(stot, 1) == min(stot, 999)",
            &s
        ),
        ["fe-web"]
    );
}

#[test]
fn division_by_zero_is_absent_so_the_comparison_is_false() {
    let s = snap("show-stat.csv");
    assert!(matching("stot / 0 > 0 or stot / 0 <= 0", &s).is_empty());
    assert!(matching("stot % 0 == 0", &s).is_empty());
}

#[test]
fn text_comparisons_and_globs() {
    let s = snap("down-after-kill.csv");
    assert_eq!(
        matching("status ~ \"DOWN*\"", &s),
        ["app-main/web3", "app-main/web4"]
    );
    assert_eq!(matching("state == \"maint\"", &s), ["app-main/web2"]);
    assert_eq!(
        matching(
            "proxy ~ \"app-*\" and kind == \"server\" and status !~ \"*DOWN*\"",
            &s
        ),
        ["app-main/web1", "app-main/web2"]
    );
    assert_eq!(
        matching("check_status ~ \"L4CO?\"", &s),
        ["app-main/web3", "app-main/web4"]
    );
    assert_eq!(
        matching("addr == \"127.0.0.1:9103\"", &s),
        ["app-main/web3"]
    );
    assert_eq!(
        matching("source == \"lb1\" and server == \"api-bk\"", &s),
        ["api/api-bk"]
    );
    // "* L4OK" while a check runs: rules see the status without the marker.
    let s = snap("check-in-progress.csv");
    assert_eq!(
        matching("check_status == \"L4OK\" and proxy == \"app-main\"", &s),
        ["app-main/web1", "app-main/web2", "app-main/web3"]
    );
}

#[test]
fn absent_fields_make_comparisons_false() {
    let s = snap("show-stat.csv");
    // Frontends report no queue: neither qcur > -1 nor qcur <= -1 holds for them.
    let any_queue = matching("qcur > -1 or qcur <= -1", &s);
    assert!(!any_queue.contains(&"fe-web".to_string()));
    assert_eq!(any_queue.len(), 12);
    assert!(matching("not (qcur >= 0)", &s).contains(&"fe-web".to_string()));
    assert_eq!(
        matching("exists(qcur) == false and kind == \"frontend\"", &s),
        ["stats", "fe-web"]
    );
    // A column this dump does not have (2.9's h3req) is absent everywhere.
    assert!(matching("h3req >= 0", &s).is_empty());
    // lastsess is signed: -1 means "never".
    assert_eq!(
        matching("lastsess < 0 and kind == \"server\"", &s),
        ["app-main/web4", "api/api-bk"]
    );
}

#[test]
fn delta_and_rate_over_the_load_series() {
    let cfg = config("[[rule]]\nname = \"T\"\nscope = { type = \"frontend\", proxy = \"fe-web\" }\nwhen = 'rate(stot) > 0'\nvalue = 'rate(stot)'\n\n[[rule]]\nname = \"D\"\nscope = { type = \"frontend\", proxy = \"fe-web\" }\nwhen = 'delta(stot) > 0'\n");
    let (t1, t2) = (snap("series/t1.csv"), snap("series/t2.csv"));
    let alerts = eval(&cfg, &t2, Some((&t1, 2.0)), None);
    assert_eq!(
        alerts[0].value,
        Some(Value::Number((6607.0 - 3441.0) / 2.0))
    );
    assert_eq!(alerts[1].value, Some(Value::Number(6607.0 - 3441.0)));
    assert!(
        eval(&cfg, &t2, None, None).is_empty(),
        "no previous sample: absent"
    );
}

#[test]
fn counters_across_a_reload_never_go_negative_or_spike() {
    let cfg = config("[[rule]]\nname = \"T\"\nwhen = 'delta(stot) >= 0'\nvalue = 'delta(stot)'\n\n[[rule]]\nname = \"C\"\nscope = { server = \"web4\" }\nwhen = 'delta(chkdown) >= 0'\n");
    let t5 = fixture_text("series/t5.csv");
    let t6 = fixture_text("series/t6-after-reload.csv");
    let before = snapshot_of(&t5, Some(&fixture_text("series/info-before-reload.txt")));
    let after = snapshot_of(&t6, Some(&fixture_text("series/info-after-reload.txt")));
    let alerts = eval(&cfg, &after, Some((&before, 60.0)), None);
    let value = |alerts: &[Alert], rule: &str, row: &str| {
        alerts
            .iter()
            .find(|a| a.name() == rule && rows(std::slice::from_ref(a))[0] == row)
            .and_then(|a| a.value.clone())
    };
    // fe-web stot 16654 -> 1439: counted from zero after the reload.
    assert_eq!(value(&alerts, "T", "fe-web"), Some(Value::Number(1439.0)));
    // web4 chkdown 1 -> 1, but the new process (Pid 5227 -> 25783) counted it again.
    assert_eq!(
        value(&alerts, "C", "app-main/web4"),
        Some(Value::Number(1.0))
    );
    for alert in alerts.iter().filter(|a| a.name() == "T") {
        let Some(Value::Number(n)) = alert.value else {
            panic!()
        };
        assert!(n >= 0.0, "{alert:?}");
    }
    // Without show info, only a counter that went down reveals the restart.
    let (before, after) = (snapshot_of(&t5, None), snapshot_of(&t6, None));
    let alerts = eval(&cfg, &after, Some((&before, 60.0)), None);
    assert_eq!(value(&alerts, "T", "fe-web"), Some(Value::Number(1439.0)));
    assert_eq!(
        value(&alerts, "C", "app-main/web4"),
        Some(Value::Number(0.0))
    );
    // The default session-rate rule sees 1439/60 = 24/s, not a spike.
    assert!(eval(
        &defaults(),
        &after,
        Some((&before, 60.0)),
        Some("SessionRateHigh")
    )
    .is_empty());
}

#[test]
fn sample_keeps_only_counter_columns_and_process_identity() {
    let cfg = defaults();
    let info = fixture_text("show-info.txt");
    let s = snapshot_of(&fixture_text("show-stat.csv"), Some(&info));
    let sample: Sample = cfg.rules.sample(&s, 42.0);
    let mut columns = sample.columns.clone();
    columns.sort();
    assert_eq!(columns, ["chkdown", "hrsp_5xx", "req_tot", "stot"]);
    assert_eq!(sample.pid, Some(5227));
    assert_eq!(sample.start_time, Some(1_795_450_203));
    let chkdown = sample.column("chkdown").unwrap();
    let web4 = sample.find(0, "app-main", "web4").unwrap();
    assert_eq!(sample.value(chkdown, web4), Some(1));
    assert_eq!(
        sample.find(web4, "app-main", "web4"),
        Some(web4),
        "found at its position"
    );
    let fe = sample.find(99, "fe-web", "FRONTEND").unwrap();
    assert_eq!(sample.value(chkdown, fe), None);
    assert_eq!(sample.find(0, "fe-web", "nope"), None);
    assert_eq!(
        sample.find(0, "fe", "web/FRONTEND"),
        None,
        "keys are compared whole"
    );
    let json = serde_json::to_string(&sample).unwrap();
    assert_eq!(serde_json::from_str::<Sample>(&json).unwrap(), sample);
}

#[test]
fn templates_render_columns_labels_and_value() {
    let cfg = config(
        "[[rule]]\nname = \"T\"\nscope = { server = \"web4\" }\nwhen = 'state == \"down\"'\nvalue = 'chkdown'\nlabels = { team = \"web\" }\nsummary = \"{{ proxy }}/{{ server }} {{ status }} {{ check_status }} {{ last_chk }} down {{ value }}x team={{ team }} sev={{ severity }} q={{ qmax }} fe={{ comp_in }}.\"\ndescription = \"{{ labels.alertname }} at {{ source }}: {{ addr }}\"\n",
    );
    let alerts = eval(&cfg, &snap("show-stat.csv"), None, None);
    assert_eq!(alerts.len(), 1);
    assert_eq!(
        alerts[0].annotations["summary"],
        "app-main/web4 DOWN L4CON Connection refused down 1x team=web sev=warning q=0 fe=."
    );
    assert_eq!(
        alerts[0].annotations["description"],
        "T at lb1: 127.0.0.1:9104"
    );
    assert_eq!(alerts[0].label("team"), "web");
    assert_eq!(alerts[0].label("type"), "server");
}

#[test]
fn bad_process_rules_name_the_file_line_column_and_the_nearest_field() {
    let err = |text: &str| {
        Config::parse(text, Path::new("/etc/hapwatch/h.toml"), true)
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        err("[[rule]]\nname = \"P\"\nscope = { type = \"process\" }\nwhen = 'Idle_pc < 10'\n"),
        "/etc/hapwatch/h.toml:4:9: rule \"P\": when: unknown `show info` field `Idle_pc` (did you mean `Idle_pct`?)"
    );
    assert_eq!(
        err("[[rule]]\nname = \"R\"\nwhen = 'scur > 0.9 * info.Maxcon'\n"),
        "/etc/hapwatch/h.toml:3:22: rule \"R\": when: unknown `show info` field `Maxcon` (did you mean `Maxconn`?)"
    );
    assert_eq!(
        err("[[rule]]\nname = \"P\"\nscope = { type = \"process\" }\nwhen = 'Idle_pct < 10'\nsummary = \"{{ Idle_pc }}\"\n"),
        "/etc/hapwatch/h.toml:5:11: rule \"P\": summary: unknown variable `Idle_pc` (did you mean `Idle_pct`?)"
    );
    assert_eq!(
        err("[[rule]]\nname = \"P\"\nscope = { type = [\"process\", \"server\"] }\nwhen = 'Idle_pct < 10'\n"),
        "/etc/hapwatch/h.toml:3:9: rule \"P\": scope type \"process\" is one row per source made of `show info`: it cannot be mixed with frontend, backend, server or listener rows; write two rules"
    );
}

#[test]
fn bad_rules_name_the_rule_file_line_and_problem() {
    let err = |text: &str| {
        Config::parse(text, Path::new("/etc/hapwatch/h.toml"), true)
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        err("[[rule]]\nname = \"Bad\"\nwhen = 'status > 3'\n"),
        "/etc/hapwatch/h.toml:3:16: rule \"Bad\": when: `>` compares text with a number; both sides must be numbers, or both text"
    );
    assert_eq!(
        err("[[rule]]\nname = \"Bad\"\nwhen = 'scru > 1'\n"),
        "/etc/hapwatch/h.toml:3:9: rule \"Bad\": when: unknown column `scru` (did you mean `scur`?)"
    );
    assert_eq!(
        err("\n[[rule]]\nname = \"Bad\"\nwhen = '''\nscur > 1 and\n  (qcur >'''\n"),
        "/etc/hapwatch/h.toml:6:10: rule \"Bad\": when: expected a value at the end"
    );
    assert_eq!(
        err("[[rule]]\nname = \"Bad\"\nwhen = 'scur > 1'\nsummary = \"{{ scru }}\"\n"),
        "/etc/hapwatch/h.toml:4:11: rule \"Bad\": summary: unknown variable `scru` (did you mean `scur`?)"
    );
    assert!(
        err("[[rule]]\nname = \"Bad\"\nwhen = 'scur > 1'\nsummary = \"{{ scur \"\n")
            .contains("rule \"Bad\": summary: syntax error")
    );
    assert_eq!(
        err("[[rule]]\nname = \"Bad\"\nscope = { type = \"servers\" }\nwhen = 'scur > 1'\n"),
        "/etc/hapwatch/h.toml:3:9: rule \"Bad\": scope type \"servers\": use frontend, backend, server, listener or process"
    );
    assert_eq!(
        err("[[rule]]\nname = \"A\"\nwhen = 'scur > 1'\n[[rule]]\nname = \"A\"\nwhen = 'scur > 1'\n"),
        "/etc/hapwatch/h.toml:5:8: rule \"A\": duplicate rule name"
    );
    assert!(
        err("[[rule]]\nname = \"A\"\nwhen = 'scur > 1'\nfor = \"1m\"\nfor_runs = 2\n")
            .ends_with("set `for` or `for_runs`, not both")
    );
    assert!(
        err("[[rule]]\nname = \"A\"\nwhen = 'scur > 1'\nlabels = { proxy = \"x\" }\n")
            .ends_with("label `proxy` is set by hapwatch; pick another name")
    );
    assert!(
        err("[[rule]]\nname = \"A\"\nwhen = 'scur > 1'\nfor = \"soon\"\n")
            .contains("invalid duration \"soon\"")
    );
    assert!(err("[[rule]]\nname = \"A\"\nwhen = 'scur > 1'\nwhne = 1\n")
        .contains("unknown key `whne` (did you mean `when`?)"));
}

#[test]
fn included_rule_files_report_their_own_path() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("extra.toml");
    std::fs::write(&rules, "[[rule]]\nname = \"X\"\nwhen = 'scur >> 1'\n").unwrap();
    let main: PathBuf = dir.path().join("h.toml");
    let err = Config::parse("include = [\"extra.toml\"]\n", &main, true)
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        format!(
            "{}:3:15: rule \"X\": when: expected a value, found `>`",
            rules.display()
        )
    );
    std::fs::write(&rules, "[[source]]\nname = \"a\"\nfile = \"x\"\n").unwrap();
    let err = Config::parse("include = [\"extra.toml\"]\n", &main, true)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("(an included file holds [[rule]] and [[inhibit]] entries only)"),
        "{err}"
    );
}

// ---- every default rule, on the captures where it should and should not fire ----

fn fired(rule: &str, snapshot: &Snapshot, previous: Option<(&Snapshot, f64)>) -> Vec<String> {
    rows(&eval(&defaults(), snapshot, previous, Some(rule)))
}

#[test]
fn default_server_down_ignores_maint_drain_nocheck_and_transitions() {
    assert_eq!(
        fired("ServerDown", &snap("show-stat.csv"), None),
        ["app-main/web4"]
    );
    assert_eq!(
        fired("ServerDown", &snap("down-after-kill.csv"), None),
        ["app-main/web3", "app-main/web4"]
    );
    assert_eq!(
        fired("ServerDown", &snap("maint.csv"), None),
        ["app-main/web4"],
        "web2 is MAINT"
    );
    assert_eq!(
        fired("ServerDown", &snap("drain.csv"), None),
        ["app-main/web4"],
        "web3 is DRAIN"
    );
    assert_eq!(
        fired("ServerDown", &snap("up-going-down.csv"), None),
        ["app-main/web3", "app-main/web4"],
        "UP 1/2 is not down yet"
    );
    // DOWN 1/2: passing checks again, but out of service until `rise` is reached.
    assert_eq!(
        fired("ServerDown", &snap("down-going-up.csv"), None),
        [
            "app-main/web1",
            "app-main/web2",
            "app-main/web3",
            "app-main/web4"
        ]
    );
    let alerts = eval(
        &defaults(),
        &snap("down-after-kill.csv"),
        None,
        Some("ServerDown"),
    );
    assert_eq!(
        alerts[0].annotations["summary"],
        "app-main/web3 on lb1 is DOWN (L4CON: Connection refused)"
    );
    assert_eq!(alerts[0].label("severity"), "critical");
}

#[test]
fn default_backend_down_and_frontend_not_open() {
    assert!(fired("BackendDown", &snap("show-stat.csv"), None).is_empty());
    assert_eq!(
        fired("BackendDown", &snap("backend-down.csv"), None),
        ["app-main"]
    );
    assert!(fired("FrontendNotOpen", &snap("show-stat.csv"), None).is_empty());
    assert_eq!(
        fired("FrontendNotOpen", &snap("frontend-paused.csv"), None),
        ["fe-web"]
    );
}

#[test]
fn default_sessions_near_limit_and_queueing() {
    assert!(
        fired("SessionsNearLimit", &snap("series/t1.csv"), None).is_empty(),
        "20 of 4096"
    );
    let busy = edited("show-stat.csv", "fe-web", "FRONTEND", "scur", "3700");
    assert_eq!(fired("SessionsNearLimit", &busy, None), ["fe-web"]);
    assert!(fired("Queueing", &snap("series/t1.csv"), None).is_empty());
    let queued = edited("show-stat.csv", "app-main", "BACKEND", "qcur", "12");
    assert_eq!(fired("Queueing", &queued, None), ["app-main"]);
}

#[test]
fn default_session_rate_and_5xx_ratio() {
    let (t1, t2) = (snap("series/t1.csv"), snap("series/t2.csv"));
    assert_eq!(
        fired("SessionRateHigh", &t2, Some((&t1, 1.0))),
        ["fe-web"],
        "3166/s"
    );
    assert!(
        fired("SessionRateHigh", &t2, Some((&t1, 60.0))).is_empty(),
        "53/s"
    );
    assert!(
        fired("Http5xxRatioHigh", &t2, Some((&t1, 1.0))).is_empty(),
        "1 error in 3000"
    );
    let errors = edited("series/t2.csv", "app-main", "BACKEND", "hrsp_5xx", "400");
    let alerts = eval(
        &defaults(),
        &errors,
        Some((&t1, 1.0)),
        Some("Http5xxRatioHigh"),
    );
    assert_eq!(rows(&alerts), ["app-main"]);
    assert_eq!(
        alerts[0].annotations["summary"],
        "app-main on lb1: 12.6 % of responses were 5xx since the last run"
    );
}

#[test]
fn default_server_flapped_between_runs() {
    // web1 and web2 went DOWN and back UP between these two captures; web3 was already
    // DOWN in the first, web4 never came back.
    let before = snap("up-going-down.csv");
    let after = snap("check-in-progress.csv");
    assert_eq!(
        fired("ServerFlapped", &after, Some((&before, 60.0))),
        ["app-main/web1", "app-main/web2"]
    );
    assert!(fired("ServerFlapped", &after, Some((&after, 60.0))).is_empty());
    assert!(fired("ServerFlapped", &after, None).is_empty());
}

/// Issue #16: after a reload the new counters cover the process's uptime, not the whole
/// interval since the previous run; `rate()` divided by the interval showed 6.96/s for
/// ~15.7/s of traffic.
#[test]
fn after_a_reload_rate_divides_by_the_uptime_not_the_whole_interval() {
    let cfg = config("[[rule]]\nname = \"R\"\nscope = { type = \"frontend\" }\nwhen = 'rate(stot) >= 0'\nvalue = 'rate(stot)'\n");
    let before = snapshot_of(
        &fixture_text("series/t5.csv"),
        Some(&fixture_text("series/info-before-reload.txt")),
    );
    let t6 = fixture_text("series/t6-after-reload.csv");
    let rate = |info: &str| {
        let after = snapshot_of(&t6, Some(info));
        let alerts = eval(&cfg, &after, Some((&before, 60.0)), None);
        let alert = alerts
            .iter()
            .find(|a| a.labels["proxy"] == "fe-web")
            .expect("fe-web");
        match alert.value {
            Some(Value::Number(n)) => n,
            ref other => panic!("{other:?}"),
        }
    };
    let info = fixture_text("series/info-after-reload.txt");
    // fe-web stot 1439 in a process up `Uptime_sec: 1` (1 to 2 s): at most 2 s.
    assert_eq!(rate(&info), 1439.0 / 2.0);
    // Up 26 s of the 60: the traffic of 27 s, not of 60.
    let info_26 = info.replace("Uptime_sec: 1\n", "Uptime_sec: 26\n");
    assert_eq!(rate(&info_26), 1439.0 / 27.0);
    // Up longer than the interval (a restart long ago, or no reload): the interval.
    let info_600 = info.replace("Uptime_sec: 1\n", "Uptime_sec: 600\n");
    assert_eq!(rate(&info_600), 1439.0 / 60.0);
}

/// `hapwatch eval`'s evaluation shows process rows first, `info.X` on any row, and
/// `prev()` against the previous dump; a dump without `show info` has no process row.
#[test]
fn eval_shows_process_rows_info_fields_and_prev() {
    let cfg = config(
        "[[rule]]\nname = \"P\"\nscope = { type = \"process\" }\nwhen = 'Maxconn == 4096 and Version ~ \"2.6.*\" and info[\"Ulimit-n\"] > 0'\nsummary = \"{{ Version }} {{ info['Ulimit-n'] }} {{ Pid }}\"\n\n[[rule]]\nname = \"F\"\nscope = { type = \"frontend\", proxy = \"fe-web\" }\nwhen = 'info.Maxconn > 1000'\nvalue = 'info.Maxconn - scur'\nsummary = \"{{ info.Maxconn }} {{ info.node }}\"\n\n[[rule]]\nname = \"C\"\nscope = { type = \"server\" }\nwhen = 'prev(check_status) != check_status'\nvalue = 'prev(check_status)'\n",
    );
    let text = fixture_text("show-info-and-stat.txt");
    let (info, stat) = text.split_once("\n\n").unwrap();
    let now = snapshot_of(stat.trim_start(), Some(info));
    let alerts = eval(&cfg, &now, None, None);
    let names: Vec<(&str, &str)> = alerts.iter().map(|a| (a.name(), a.label("type"))).collect();
    assert_eq!(names, [("P", "process"), ("F", "frontend")]);
    assert_eq!(
        alerts[0].annotations["summary"],
        "2.6.12-1+deb12u4 8229 5227"
    );
    assert_eq!(alerts[1].annotations["summary"], "4096 vm");
    assert!(matches!(alerts[1].value, Some(Value::Number(n)) if n == 4096.0));
    // Without `show info` (a stats page): neither the process row nor `info.X`.
    let csv_only = snapshot_of(stat.trim_start(), None);
    assert!(eval(&cfg, &csv_only, None, None).is_empty());
    // prev(): web3's check went from L4OK to L4CON between the two captures.
    let alerts = eval(
        &cfg,
        &snap("down-after-kill.csv"),
        Some((&snap("show-stat.csv"), 60.0)),
        Some("C"),
    );
    let changed: Vec<&str> = alerts.iter().map(|a| a.label("server")).collect();
    assert_eq!(changed, ["web3"]);
    assert!(matches!(&alerts[0].value, Some(Value::Text(t)) if t == "L4OK"));
}
