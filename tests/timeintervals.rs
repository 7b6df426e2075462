//! Time intervals: `[[time_interval]]` as a route's `mute_time_intervals` /
//! `active_time_intervals` and as `[[recurring_silence]]`, proved with rule tests at given
//! times (one across the switch to summer time in Europe/Berlin), `hapwatch route --at`,
//! and load errors that cite the line.

mod common;

use common::{rule_test, Hapwatch};
use std::path::Path;

/// web3 is critical and pages on-call, except during the nightly backup window (03:00–
/// 03:30 Berlin time); warnings go to chat during office hours only.
const TIMED: &str = r#"
[notifier.oncall]
type = "webhook"
url = "http://127.0.0.1:9/oncall"

[notifier.chat]
type = "webhook"
url = "http://127.0.0.1:9/chat"

[routes]
default = ["oncall"]

[[time_interval]]
name = "backup"
times = ["03:00-03:30"]
location = "Europe/Berlin"

[[time_interval]]
name = "office-hours"
weekdays = ["monday:friday"]
times = ["09:00-17:00"]
location = "Europe/Berlin"

[[recurring_silence]]
matchers = ["proxy=app-main", "server=web3"]
time_intervals = ["backup"]
comment = "nightly backup makes web3 fail its checks"

[[route]]
name = "chat"
matchers = ["severity=warning"]
notify = ["chat"]
active_time_intervals = ["office-hours"]

[[rule]]
name = "Down"
scope = { type = "server", server = "web3" }
when = 'state == "down"'
severity = "critical"

[[rule]]
name = "Web4Down"
scope = { type = "server", server = "web4" }
when = 'state == "down"'
severity = "warning"
"#;

#[test]
fn a_recurring_silence_holds_back_the_backup_window_across_the_switch_to_summer_time() {
    // 2026-03-29 01:10 UTC is 03:10 CEST: summer time began at 01:00 UTC, so this is in
    // the window; with a fixed +01:00 it would be 02:10, outside it.
    let cases = r#"
[[case]]
name = "backup night"
start = "2026-03-29T01:10:00Z"

[[case.step]]
at = "0m"
snapshot = "FIXTURES/down-after-kill.csv"
firing = [{ alertname = "Down", server = "web3" }, { alertname = "Web4Down" }]
notifications = []

# 03:40 CEST: the window is over, web3 is still down: announced now.
[[case.step]]
at = "30m"
snapshot = "FIXTURES/down-after-kill.csv"
notifications = [{ notifier = "oncall", firing = [{ alertname = "Down", server = "web3" }] }]
"#;
    rule_test(TIMED, cases)
        .status(0)
        .stdout_contains("  ok    backup night\n");
    // The night before (still winter time) 01:10 UTC is 02:10 CET: not silenced.
    let winter = cases.replace("2026-03-29T01:10:00Z", "2026-03-28T01:10:00Z");
    rule_test(TIMED, &winter).status(1);
    // A civil time in the zone says the same as the UTC time.
    let civil = cases.replace("2026-03-29T01:10:00Z", "2026-03-29T03:10[Europe/Berlin]");
    rule_test(TIMED, &civil)
        .status(0)
        .stdout_contains("  ok    backup night\n");
}

#[test]
fn warnings_reach_chat_in_office_hours_only_and_are_sent_when_they_begin() {
    // Friday 2026-12-04 08:30 CET: web4's warning waits, web3's critical pages at once.
    let cases = r#"
[[case]]
name = "office hours"
start = "2026-12-04T07:30:00Z"

[[case.step]]
at = "0m"
snapshot = "FIXTURES/down-after-kill.csv"
notifications = [{ notifier = "oncall", firing = [{ alertname = "Down", server = "web3" }] }]

[[case.step]]
at = "20m"
snapshot = "FIXTURES/down-after-kill.csv"
notifications = []

# 09:10 CET: office hours, the warning still fires: chat gets it now.
[[case.step]]
at = "40m"
snapshot = "FIXTURES/down-after-kill.csv"
notifications = [{ notifier = "chat", firing = [{ alertname = "Web4Down" }] }]

[[case.step]]
at = "50m"
snapshot = "FIXTURES/down-after-kill.csv"
notifications = []
"#;
    rule_test(TIMED, cases)
        .status(0)
        .stdout_contains("  ok    office hours\n");
    // On Saturday the warning waits all day.
    let saturday = cases.replace("2026-12-04T07:30:00Z", "2026-12-05T07:30:00Z");
    rule_test(TIMED, &saturday)
        .status(1)
        .stdout_contains("FAIL  office hours");
}

#[test]
fn hapwatch_route_says_whether_a_route_is_muted_at_a_time() {
    let config = format!("{TIMED}\n[alerting]\nmute_time_intervals = [\"backup\"]\n");
    let route = |labels: &str, at: &str| {
        Hapwatch::new()
            .file("c.toml", &config)
            .args(["-c", "c.toml", "route", "--labels", labels, "--at", at])
            .run()
    };
    route("severity=warning", "2026-12-05T10:00[Europe/Berlin]")
        .status(0)
        .stdout_is(
            "route chat (severity=warning) → chat (group_by alertname, source; repeat_interval 4h00m)\n  \
             muted: outside its active time intervals (office-hours)\n",
        );
    route("severity=warning", "2026-12-04T09:00:00Z")
        .status(0)
        .stdout_is(
            "route chat (severity=warning) → chat (group_by alertname, source; repeat_interval 4h00m)\n",
        );
    // The root (`[alerting] mute_time_intervals`) and the recurring silence at 03:10 CEST.
    route(
        "alertname=Down,proxy=app-main,server=web3,severity=critical",
        "2026-03-29T01:10:00Z",
    )
    .status(0)
    .stdout_contains("default route → oncall (group_by alertname, source; repeat_interval 4h00m)\n  muted by time interval backup\n")
    .stdout_contains("silenced by [[recurring_silence]] at line 24 (proxy=app-main, server=web3; time intervals backup): nightly backup makes web3 fail its checks\n");
    route("severity=critical", "2026-03-29T00:10:00Z")
        .status(0)
        .stdout_is("default route → oncall (group_by alertname, source; repeat_interval 4h00m)\n");
    route("severity=critical", "yesterday")
        .status(2)
        .stderr_contains("--at \"yesterday\": not a time");
}

#[test]
fn bad_intervals_are_load_errors_at_their_line_and_column() {
    let check = |config: &str| {
        Hapwatch::new()
            .file("c.toml", config)
            .args(["-c", "c.toml", "check"])
            .run()
    };
    let position = |config: &str, needle: &str| {
        let (line, text) = config
            .lines()
            .enumerate()
            .find(|(_, l)| l.contains(needle))
            .unwrap();
        format!("c.toml:{}:{}:", line + 1, text.find(needle).unwrap() + 1)
    };
    let bad = TIMED.replace("\"03:00-03:30\"", "\"25:00-25:30\"");
    check(&bad).status(2).stderr_contains(&format!(
        "{} [[time_interval]] backup: \"25:00-25:30\": \"25:00\" is not a time of day",
        position(&bad, "\"25:00-25:30\"")
    ));
    let bad = TIMED.replacen("\"Europe/Berlin\"", "\"Europe/Berlni\"", 1);
    check(&bad).status(2).stderr_contains(&format!(
        "{} [[time_interval]] backup: location: unknown time zone \"Europe/Berlni\"",
        position(&bad, "\"Europe/Berlni\"")
    ));
    let bad = TIMED.replace(
        "active_time_intervals = [\"office-hours\"]",
        "active_time_intervals = [\"office-hour\"]",
    );
    check(&bad).status(2).stderr_contains(&format!(
        "{} [[route]] chat: active_time_intervals: no [[time_interval]] named \"office-hour\" (did you mean `office-hours`?)",
        position(&bad, "\"office-hour\"")
    ));
    let bad = TIMED.replace(
        "time_intervals = [\"backup\"]",
        "time_intervals = [\"backups\"]",
    );
    check(&bad).status(2).stderr_contains(&format!(
        "{} [[recurring_silence]] 1: time_intervals: no [[time_interval]] named \"backups\"",
        position(&bad, "\"backups\"")
    ));
    let bad = TIMED.replace("\"monday:friday\"", "\"monday:fryday\"");
    check(&bad)
        .status(2)
        .stderr_contains("weekdays: \"fryday\" is not a weekday");
    check(TIMED).status(0);
}

#[test]
fn the_shipped_backup_window_example_passes_its_rule_test() {
    let test =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/tests/maintenance-windows.toml");
    Hapwatch::new()
        .args(["test", &test.display().to_string()])
        .run()
        .status(0)
        .stdout_contains("1 passed, 0 failed");
}

/// `state show` marks an alert held back by a `[[recurring_silence]]` as silenced, naming
/// it (it has no id: its line and time intervals); `silence list` lists the recurring
/// silences with whether each holds now and when it next starts. Real time: one silence
/// always holds, the other only next year.
#[test]
fn state_show_and_silence_list_tell_recurring_silences() {
    let next_year = chrono::Utc::now()
        .format("%Y")
        .to_string()
        .parse::<i32>()
        .unwrap()
        + 1;
    let config = format!(
        r#"[[source]]
name = "lb1"
file = "lb1.csv"

[state]
file = "state.json"

[[time_interval]]
name = "always"

[[time_interval]]
name = "next-year"
years = ["{next_year}"]

[[recurring_silence]]
matchers = ["server=web3"]
time_intervals = ["always"]
comment = "web3 is being rebuilt"

[[recurring_silence]]
matchers = ["server=web4"]
time_intervals = ["next-year"]

[[rule]]
name = "ServerDown"
scope = {{ type = "server" }}
when = 'state == "down"'
"#
    );
    let line_of = |needle: &str| {
        let at = config.find(needle).unwrap();
        config[..at].lines().count() + 1
    };
    let (web3_line, web4_line) = (
        line_of("[[recurring_silence]]\nmatchers = [\"server=web3\"]"),
        line_of("[[recurring_silence]]\nmatchers = [\"server=web4\"]"),
    );
    let hapwatch = Hapwatch::new().file("c.toml", &config).file(
        "lb1.csv",
        common::fixture_bytes("haproxy-2.6/down-after-kill.csv"),
    );
    let dir = hapwatch.dir().to_path_buf();
    // Keeps the directory (the output owns it) until the end of the test.
    let first = hapwatch.args(["-c", "c.toml", "run"]).run();
    first.success();
    let again = |args: &[&str]| {
        Hapwatch::new()
            .config_path(dir.join("c.toml"))
            .args(args)
            .run()
    };
    let show = again(&["state", "show"]);
    show.success();
    let line = |server: &str| {
        show.stdout
            .lines()
            .find(|l| l.contains(&format!("server=\"{server}\"")))
            .unwrap_or_else(|| panic!("no line for {server}: {}", show.stdout))
            .to_string()
    };
    assert!(
        line("web3").contains(&format!(
            "firing, silenced by recurring silence at line {web3_line} (always)"
        )),
        "{}",
        show.stdout
    );
    assert!(!line("web4").contains("silenced"), "{}", show.stdout);

    let list = again(&["silence", "list"]);
    list.success().stdout_contains(
        "no active silences\n\nrecurring silences ([[recurring_silence]] in the config):\n",
    );
    let row = |n: usize| {
        list.stdout
            .lines()
            .find(|l| l.starts_with(&format!("{n} ")))
            .unwrap_or_else(|| panic!("no row for line {n}: {}", list.stdout))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(
        row(web3_line),
        format!(
            "{web3_line} server=web3 always active (no end within 4 years) none within 4 years \
             web3 is being rebuilt"
        )
    );
    assert_eq!(
        row(web4_line),
        format!("{web4_line} server=web4 next-year inactive {next_year}-01-01 00:00:00 UTC")
    );
}

/// Commit 0464303, finding 1: the still-firing list of a group's notification leaves out an
/// alert that a `[[recurring_silence]]` holds back, as it does for a silence added with
/// `silence add` (it would otherwise be listed while its own notifications are held).
#[test]
fn the_still_firing_list_leaves_out_an_alert_under_a_recurring_silence() {
    // 2027-01-15 08:00:00 UTC; the silence of web4 holds from 08:01.
    const BASE: u64 = 1_800_000_000;
    let config = r#"[[source]]
name = "lb1"
file = "lb1.csv"

[state]
file = "state.json"

[[time_interval]]
name = "from-0801"
times = ["08:01-09:00"]

[[recurring_silence]]
matchers = ["server=web4"]
time_intervals = ["from-0801"]

[[rule]]
name = "ServerDown"
scope = { type = "server" }
when = 'state == "down"'
"#;
    let dir = common::temp_dir();
    std::fs::write(dir.path().join("c.toml"), config).unwrap();
    let capture = |fixture: &str| {
        std::fs::write(dir.path().join("lb1.csv"), common::fixture_bytes(fixture)).unwrap();
    };
    let run = |at: u64| {
        Hapwatch::new()
            .config_path(dir.path().join("c.toml"))
            .args(["run", "--now", &(BASE + at).to_string()])
            .run()
    };
    // web3 and web4 down: one notification of both.
    capture("haproxy-2.6/down-after-kill.csv");
    run(0)
        .success()
        .stdout_contains("[FIRING:2] ServerDown app-main (lb1)");
    // web3 back while web4, still down, is held back by the recurring silence: the
    // recovery does not list web4 as still firing.
    capture("haproxy-2.6/check-in-progress.csv");
    let out = run(60);
    out.success()
        .stdout_contains("[RESOLVED:1] ServerDown app-main (lb1)")
        .stdout_lacks("STILL FIRING")
        .stdout_lacks("web4");
}
