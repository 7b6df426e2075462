//! Many load balancers: source labels on alerts (rules, templates, grouping), and an
//! upgrade from a state written before sources had labels.

mod common;

use common::{fixture_bytes, rule_test, Hapwatch, Output};
use serde_json::Value;
use std::path::{Path, PathBuf};
use tempfile::TempDir;

/// A config in a temp dir with `file` sources.
struct Setup {
    dir: TempDir,
    config: PathBuf,
}

impl Setup {
    fn new(body: &str) -> Setup {
        let dir = common::temp_dir();
        let config = dir.path().join("hapwatch.toml");
        std::fs::write(&config, format!("{body}\n[state]\nfile = \"state.json\"\n")).unwrap();
        Setup { dir, config }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn capture(&self, name: &str, fixture: &str) -> &Setup {
        std::fs::write(self.path(name), fixture_bytes(fixture)).unwrap();
        self
    }

    fn run(&self, now: f64) -> Output {
        Hapwatch::new()
            .config_path(&self.config)
            .args(["run", "--format", "json", "--now", &now.to_string()])
            .run()
    }

    /// The notifications one run printed (one JSON object per line).
    fn notifications(&self, now: f64) -> Vec<Value> {
        let out = self.run(now);
        notifications_of(&out)
    }
}

fn notifications_of(out: &Output) -> Vec<Value> {
    out.stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn firing(notifications: &[Value]) -> Vec<&Value> {
    notifications
        .iter()
        .flat_map(|n| n["firing"].as_array().unwrap())
        .collect()
}

const NOW: f64 = 1_800_000_000.0;

#[test]
fn source_labels_reach_alerts_rules_templates_and_grouping() {
    let s = Setup::new(
        r#"
[source_defaults]
labels = { env = "prod", dc = "fra1" }

[[source]]
name = "lb1"
file = "lb1.csv"

[[source]]
name = "lb2"
file = "lb2.csv"
labels = { dc = "ams1" }

[[source]]
name = "lb3"
file = "missing.csv"
labels = { env = "" }

[alerting]
group_by = ["dc"]

[[rule]]
name = "Down"
scope = { type = "server", server = "web3", labels = { dc = "fra*" } }
when = 'state == "down" and label("env") == "prod"'
summary = "{{ server }} down in {{ dc }} ({{ labels.env }})"

[[rule]]
name = "DownAms"
scope = { type = "server", server = "web3", source = "lb2" }
when = 'state == "down"'
severity = "critical"
"#,
    );
    s.capture("lb1.csv", "haproxy-2.6/down-after-kill.csv");
    s.capture("lb2.csv", "haproxy-2.6/down-after-kill.csv");
    let out = s.run(NOW);
    let notifications = notifications_of(&out);
    let mut groups: Vec<String> = notifications
        .iter()
        .map(|n| n["group_labels"].to_string())
        .collect();
    groups.sort();
    assert_eq!(
        groups,
        [r#"{"dc":"ams1"}"#, r#"{"dc":"fra1"}"#],
        "{}",
        out.stdout
    );
    let mut alerts: Vec<String> = firing(&notifications)
        .iter()
        .map(|a| {
            format!(
                "{} {} {} | {}",
                a["labels"]["alertname"].as_str().unwrap(),
                a["labels"]["source"].as_str().unwrap(),
                serde_json::to_string(&a["labels"]).unwrap(),
                a["annotations"]["summary"].as_str().unwrap_or("")
            )
        })
        .map(|line| {
            line.split(" | ").next().unwrap().to_string()
                + " | "
                + line.split(" | ").nth(1).unwrap()
        })
        .collect();
    alerts.sort();
    let expected = [
        // Down: only fra* sources whose env is prod; DownAms: only lb2. lb3 cannot be read
        // and says so with its own labels (env dropped by its empty value).
        r#"Down lb1 {"alertname":"Down","dc":"fra1","env":"prod","proxy":"app-main","server":"web3","severity":"warning","source":"lb1","type":"server"} | web3 down in fra1 (prod)"#,
        r#"DownAms lb2 {"alertname":"DownAms","dc":"ams1","env":"prod","proxy":"app-main","server":"web3","severity":"critical","source":"lb2","type":"server"} | "#,
        r#"SourceUnreachable lb3 {"alertname":"SourceUnreachable","dc":"fra1","severity":"critical","source":"lb3"} | "#,
    ];
    for (got, want) in alerts.iter().zip(expected) {
        assert!(got.starts_with(want), "got  {got}\nwant {want}");
    }
    assert_eq!(alerts.len(), 3, "{alerts:#?}");
}

#[test]
fn a_rule_label_wins_over_a_source_label_and_empty_values_are_not_identity() {
    let s = Setup::new(
        r#"
[[source]]
name = "lb1"
file = "lb1.csv"
labels = { team = "net", env = "prod" }

[[rule]]
name = "Down"
scope = { type = "server", server = "web3" }
when = 'state == "down"'
labels = { team = "payments" }
"#,
    );
    s.capture("lb1.csv", "haproxy-2.6/down-after-kill.csv");
    let n = s.notifications(NOW);
    let alert = firing(&n)[0];
    assert_eq!(alert["labels"]["team"], "payments");
    assert_eq!(alert["labels"]["env"], "prod");
    // The fingerprint is Alertmanager's over exactly these labels.
    let labels: hapwatch::alert::Labels = serde_json::from_value(alert["labels"].clone()).unwrap();
    assert_eq!(
        alert["fingerprint"].as_str().unwrap(),
        hapwatch::alert::Fingerprint::of(&labels).to_string()
    );
}

/// Puts the state the release before source labels wrote for [`BEFORE`] (the same source
/// and rule, without labels; see tests/fixtures/fleet/README.md) where `s` keeps its state.
fn state_before_labels(s: &Setup) {
    let state = std::fs::read_to_string(fixture("state-before-labels.json")).unwrap();
    let canonical = s.config.canonicalize().unwrap();
    let state = state.replace("@CONFIG@", canonical.to_str().unwrap());
    std::fs::write(s.path("state.json"), state).unwrap();
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/fleet")
        .join(name)
}

const BEFORE: &str = r#"
[[source]]
name = "lb1"
file = "lb1.csv"

[[rule]]
name = "Down"
scope = { type = "server", exclude_server = "web4" }
when = 'state == "down"'
"#;

#[test]
fn adding_source_labels_does_not_announce_firing_alerts_again() {
    let s = Setup::new(&BEFORE.replace(
        "file = \"lb1.csv\"",
        "file = \"lb1.csv\"\nlabels = { dc = \"fra1\", env = \"prod\" }",
    ));
    state_before_labels(&s);
    s.capture("lb1.csv", "haproxy-2.6/down-after-kill.csv");
    // The state holds Down app-main/web3 firing and announced, without labels.
    let n = s.notifications(NOW);
    assert!(n.is_empty(), "announced again: {n:#?}");
    let state: Value =
        serde_json::from_slice(&std::fs::read(s.path("state.json")).unwrap()).unwrap();
    let alerts = state["alerts"].as_object().unwrap();
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    let (fingerprint, entry) = alerts.iter().next().unwrap();
    assert_eq!(entry["labels"]["dc"], "fra1");
    assert_eq!(entry["status"], "firing");
    let labels: hapwatch::alert::Labels = serde_json::from_value(entry["labels"].clone()).unwrap();
    assert_eq!(
        *fingerprint,
        hapwatch::alert::Fingerprint::of(&labels).to_string()
    );
    // Its recovery is announced once, with the labels.
    s.capture("lb1.csv", "haproxy-2.6/check-in-progress.csv");
    let n = s.notifications(NOW + 60.0);
    assert_eq!(n.len(), 1, "{n:#?}");
    let resolved = n[0]["resolved"].as_array().unwrap();
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0]["labels"]["env"], "prod");
    assert!(n[0]["firing"].as_array().unwrap().is_empty());
}

#[test]
fn a_label_added_later_does_not_announce_again_either() {
    let s = Setup::new(&BEFORE.replace(
        "file = \"lb1.csv\"",
        "file = \"lb1.csv\"\nlabels = { dc = \"fra1\" }",
    ));
    s.capture("lb1.csv", "haproxy-2.6/down-after-kill.csv");
    assert_eq!(firing(&s.notifications(NOW)).len(), 1);
    std::fs::write(
        &s.config,
        std::fs::read_to_string(&s.config)
            .unwrap()
            .replace("{ dc = \"fra1\" }", "{ dc = \"fra1\", env = \"prod\" }"),
    )
    .unwrap();
    let n = s.notifications(NOW + 60.0);
    assert!(n.is_empty(), "announced again: {n:#?}");
    // A changed value is another alert: the old one recovers, the new one fires.
    std::fs::write(
        &s.config,
        std::fs::read_to_string(&s.config)
            .unwrap()
            .replace("dc = \"fra1\"", "dc = \"ams1\""),
    )
    .unwrap();
    let n = s.notifications(NOW + 120.0);
    let firing = firing(&n);
    assert_eq!(firing.len(), 1, "{n:#?}");
    assert_eq!(firing[0]["labels"]["dc"], "ams1");
}

/// `hapwatch check` on `s`'s config.
fn check(s: &Setup) -> Output {
    Hapwatch::new().config_path(&s.config).args(["check"]).run()
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

const INCLUDE: &str = r#"
include_sources = ["sources.d/*.toml"]

[source_defaults]
labels = { env = "prod" }

[[rule]]
name = "Down"
scope = { type = "server", server = "web3" }
when = 'state == "down"'
"#;

#[test]
fn sources_come_from_one_file_per_load_balancer_with_their_defaults() {
    let s = Setup::new(INCLUDE);
    // A file with defaults of its own, relative paths from its own directory.
    write(
        &s.path("sources.d/fra1.toml"),
        "[source_defaults]\nlabels = { dc = \"fra1\" }\n\n[[source]]\nname = \"lb1\"\nfile = \"../captures/lb1.csv\"\n\n[[source]]\nname = \"lb2\"\nfile = \"../captures/lb1.csv\"\nlabels = { env = \"staging\" }\n",
    );
    // A link, as configuration management makes them; an editor's lock file and a file
    // the glob does not match are not read.
    write(
        &s.path("available/lb3.toml"),
        "[[source]]\nname = \"lb3\"\nfile = \"../captures/lb1.csv\"\n",
    );
    std::os::unix::fs::symlink("../available/lb3.toml", s.path("sources.d/lb3.toml")).unwrap();
    write(&s.path("sources.d/.#lb4.toml"), "garbage [");
    write(&s.path("sources.d/lb5.toml.disabled"), "garbage [");
    write(&s.path("captures/lb1.csv"), "");
    s.capture("captures/lb1.csv", "haproxy-2.6/down-after-kill.csv");
    let n = s.notifications(NOW);
    let mut got: Vec<String> = firing(&n)
        .iter()
        .map(|a| {
            let l = &a["labels"];
            format!(
                "{} dc={} env={}",
                l["source"].as_str().unwrap(),
                l["dc"].as_str().unwrap_or("-"),
                l["env"].as_str().unwrap_or("-")
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            "lb1 dc=fra1 env=prod",
            "lb2 dc=fra1 env=staging",
            "lb3 dc=- env=prod"
        ]
    );
}

#[test]
fn a_source_file_error_names_that_file_line_and_column() {
    let s = Setup::new(&format!(
        "{INCLUDE}\n[[source]]\nname = \"lb1\"\nfile = \"x.csv\"\n"
    ));
    write(
        &s.path("sources.d/a.toml"),
        "[[source]]\nname = \"lb2\"\nsokcet = \"/run/x.sock\"\n",
    );
    let dir = s.dir.path().display().to_string();
    check(&s).status(2).stderr_contains(&format!(
        "{dir}/sources.d/a.toml:3:1: unknown key `sokcet` (did you mean `socket`?)"
    ));
    // A duplicate names where the first one is.
    write(
        &s.path("sources.d/a.toml"),
        "[[source]]\nname = \"lb2\"\nfile = \"x.csv\"\n",
    );
    write(
        &s.path("sources.d/b.toml"),
        "\n[[source]]\nname = \"lb2\"\nfile = \"y.csv\"\n",
    );
    check(&s).status(2).stderr_contains(&format!(
        "{dir}/sources.d/b.toml:3:8: duplicate source name \"lb2\": each [[source]] needs its own name (first defined at {dir}/sources.d/a.toml:2:8)"
    ));
    write(
        &s.path("sources.d/b.toml"),
        "[[source]]\nname = \"lb1\"\nfile = \"y.csv\"\n",
    );
    check(&s)
        .status(2)
        .stderr_contains(&format!("(first defined at {dir}/hapwatch.toml:"));
    // Rules do not belong in a source file.
    write(
        &s.path("sources.d/b.toml"),
        "[[rule]]\nname = \"X\"\nwhen = 'state == \"down\"'\n",
    );
    check(&s)
        .status(2)
        .stderr_contains(&format!("{dir}/sources.d/b.toml:1:3: unknown key `rule`"))
        .stderr_contains("holds [[source]] entries and [source_defaults] only");
}

#[test]
fn a_missing_directory_or_a_dangling_link_is_an_error_an_empty_glob_is_not() {
    let s = Setup::new(&format!(
        "{INCLUDE}\n[[source]]\nname = \"lb1\"\nfile = \"x.csv\"\n"
    ));
    let dir = s.dir.path().display().to_string();
    check(&s).status(2).stderr_contains(&format!(
        "{dir}/hapwatch.toml:2:20: include_sources: cannot list {dir}/sources.d"
    ));
    std::fs::create_dir(s.path("sources.d")).unwrap();
    check(&s).status(0);
    std::os::unix::fs::symlink("nowhere.toml", s.path("sources.d/lb9.toml")).unwrap();
    check(&s).status(2).stderr_contains(&format!(
        "include_sources: {dir}/sources.d/lb9.toml does not exist (a symbolic link to nothing)"
    ));
    std::fs::remove_file(s.path("sources.d/lb9.toml")).unwrap();
    // A named file (no glob) must exist.
    std::fs::write(
        &s.config,
        std::fs::read_to_string(&s.config)
            .unwrap()
            .replace("sources.d/*.toml", "sources.d/lb1.toml"),
    )
    .unwrap();
    check(&s).status(2).stderr_contains(&format!(
        "include_sources: {dir}/sources.d/lb1.toml does not exist"
    ));
}

#[test]
fn an_inline_password_in_a_source_file_needs_that_file_private() {
    use std::os::unix::fs::PermissionsExt;
    let s = Setup::new(INCLUDE);
    let file = s.path("sources.d/lb1.toml");
    write(
        &file,
        "[[source]]\nname = \"lb1\"\nurl = \"http://127.0.0.1:1/stats\"\nusername = \"u\"\npassword = \"hunter2x\"\n",
    );
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let dir = s.dir.path().display().to_string();
    let out = check(&s);
    out.status(2).stderr_contains(&format!(
        "{dir}/sources.d/lb1.toml:5:1: source \"lb1\": an inline password"
    ));
    assert!(!out.stderr.contains("hunter2x"));
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    check(&s).status(0);
}

/// A config with a routing tree: web3 belongs to the payments team, whose route also
/// lets chat see it (`continue`) and repeats hourly; everything else pages on-call.
const ROUTED: &str = r#"
[notifier.oncall]
type = "webhook"
url = "http://127.0.0.1:9/oncall"

[notifier.payments]
type = "webhook"
url = "http://127.0.0.1:9/payments"

[notifier.chat]
type = "webhook"
url = "http://127.0.0.1:9/chat"

[routes]
default = ["oncall"]

[[route]]
name = "payments"
matchers = ["server=~web3"]
notify = ["payments"]
repeat_interval = "1h"
group_by = ["proxy"]
continue = true

[[route]]
matchers = ["team=payments"]
notify = ["chat"]
send_resolved = false

  [[route.route]]
  matchers = ["severity=critical"]
  notify = ["oncall"]

[[rule]]
name = "Down"
scope = { type = "server", exclude_server = "web4" }
when = 'state == "down"'
labels = { team = "payments" }

[[rule]]
name = "Web4Down"
scope = { type = "server", server = "web4" }
when = 'state == "down"'
"#;

#[test]
fn a_payments_alert_reaches_the_payments_notifier_and_not_the_default_one() {
    let cases = r#"
[[case]]
name = "routed"

[[case.step]]
at = "0m"
snapshot = "FIXTURES/down-after-kill.csv"
notifications = [
  { notifier = "payments", firing = [{ alertname = "Down", server = "web3" }] },
  { notifier = "chat", firing = [{ alertname = "Down", server = "web3" }] },
  { notifier = "oncall", firing = [{ alertname = "Web4Down", server = "web4" }] },
]

[[case.step]]
at = "30m"
snapshot = "FIXTURES/down-after-kill.csv"
notifications = []

# The payments route repeats after its own 1h; the others keep the 4h default.
[[case.step]]
at = "60m"
snapshot = "FIXTURES/down-after-kill.csv"
notifications = [{ notifier = "payments", firing = [{ alertname = "Down", server = "web3" }] }]

# web3 recovers: on the payments route; not on chat's (send_resolved = false).
# web4 is still down.
[[case.step]]
at = "70m"
snapshot = "FIXTURES/check-in-progress.csv"
notifications = [
  { notifier = "payments", resolved = [{ alertname = "Down", server = "web3" }] },
]
"#;
    let out = rule_test(ROUTED, cases);
    out.status(0).stdout_contains("  ok    routed\n");
    // And the opposite expectation fails: the default notifier never gets web3.
    let wrong = cases.replacen("notifier = \"payments\"", "notifier = \"oncall\"", 1);
    rule_test(ROUTED, &wrong).status(1);
}

#[test]
fn hapwatch_route_prints_the_routes_and_notifiers_labels_reach() {
    let route = |labels: &str| {
        Hapwatch::new()
            .file("c.toml", ROUTED)
            .args(["-c", "c.toml", "route", "--labels", labels])
            .run()
    };
    route("alertname=Down,server=web3,team=payments,severity=critical")
        .status(0)
        .stdout_is(
            "route payments (server=~web3) → payments (group_by proxy; repeat_interval 1h00m)\n\
             route 2.1 (severity=critical) → oncall (group_by alertname, source; repeat_interval 4h00m)\n",
        );
    route("alertname=Web4Down,server=web4,severity=warning")
        .status(0)
        .stdout_is("default route → oncall (group_by alertname, source; repeat_interval 4h00m)\n");
    route("team=payments").status(0).stdout_is(
        "route 2 (team=payments) → chat (group_by alertname, source; repeat_interval 4h00m)\n",
    );
    route("nonsense")
        .status(2)
        .stderr_contains("is not NAME=VALUE");
}

#[test]
fn route_errors_cite_the_line() {
    let check = |config: &str| {
        Hapwatch::new()
            .file("c.toml", config)
            .args(["-c", "c.toml", "check"])
            .run()
    };
    let bad = ROUTED.replace("notify = [\"chat\"]", "notify = [\"chta\"]");
    let line = bad
        .lines()
        .position(|l| l.contains("team=payments"))
        .unwrap();
    check(&bad).status(2).stderr_contains(&format!(
        "c.toml:{line}:1: [[route]] 2: notify: no notifier named \"chta\" (did you mean `chat`?)"
    ));
    let bad = ROUTED.replace("\"severity=critical\"", "\"severity\"");
    check(&bad)
        .status(2)
        .stderr_contains("[[route]] 2.1: matcher \"severity\": expected LABEL=VALUE");
}

#[test]
fn each_route_groups_by_its_own_labels() {
    let s = Setup::new(&format!(
        "[[source]]\nname = \"lb1\"\nfile = \"lb1.csv\"\n{ROUTED}"
    ));
    s.capture("lb1.csv", "haproxy-2.6/down-after-kill.csv");
    let out = Hapwatch::new()
        .config_path(&s.config)
        .args(["run", "--dry-run", "--format", "json"])
        .run();
    out.status(0);
    let dry: Value = serde_json::from_str(&out.stdout).unwrap();
    let mut keys: Vec<&str> = dry["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["group_key"].as_str().unwrap())
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "{alertname=\"Down\",source=\"lb1\"}@route=2:chat",
            "{alertname=\"Web4Down\",source=\"lb1\"}",
            "{proxy=\"app-main\"}@route=payments:payments",
        ]
    );
}
