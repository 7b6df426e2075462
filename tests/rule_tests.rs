//! `hapwatch test`: the shipped rule tests pass, and the runner fails when it should.

mod common;

use common::Hapwatch;
use std::path::Path;

fn repo(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(path)
        .display()
        .to_string()
}

/// A test file under test, next to a copy of the default rules.
fn run_test_file(body: &str) -> common::Output {
    let rules = repo("config/rules.toml");
    let fixtures = repo("tests/fixtures/haproxy-2.6");
    Hapwatch::new()
        .file("rules-under-test.toml", format!("include = [{rules:?}]\n"))
        .file(
            "t.toml",
            format!(
                "config = \"rules-under-test.toml\"\n\n{}",
                body.replace("FIXTURES", &fixtures)
            ),
        )
        .args(["test", "t.toml"])
        .run()
}

const DOWN_CASE: &str = r#"
[[case]]
name = "web3 goes down"

[[case.step]]
at = "0m"
snapshot = "FIXTURES/show-stat.csv"

[[case.step]]
at = "1m"
snapshot = "FIXTURES/down-after-kill.csv"
"#;

#[test]
fn the_shipped_rule_tests_pass() {
    let out = Hapwatch::new()
        .args(["test", &repo("examples/tests/default-rules.toml")])
        .run();
    out.status(0)
        .stdout_contains("  ok    ServerDown: announced once, recovery once\n")
        .stdout_contains("\n22 passed, 0 failed\n");
}

/// A rule test can expect which firing alerts an `[[inhibit]]` entry keeps quiet, and a
/// wrong expectation fails naming the alert.
#[test]
fn a_rule_test_checks_inhibited_alerts() {
    let case = "[[case]]\nname = \"backend down\"\n\n[[case.step]]\nat = \"0m\"\nsnapshot = \"FIXTURES/backend-down.csv\"\n";
    run_test_file(&format!(
        "{case}inhibited = [{{ server = \"web1\" }}, {{ server = \"web2\" }}, {{ server = \"web3\" }}, {{ server = \"web4\" }}]\n"
    ))
    .status(0);
    run_test_file(&format!("{case}inhibited = [{{ server = \"web1\" }}]\n"))
        .status(1)
        .stdout_contains(
            "inhibited: not expected: {alertname=\"ServerDown\",proxy=\"app-main\",server=\"web2\"",
        );
}

/// The default process rules, each on a capture that has its condition (made on a real
/// HAProxy, see tests/fixtures/haproxy-2.6/process/README.md), and the `prev()` examples.
#[test]
fn the_shipped_process_rule_tests_pass() {
    let out = Hapwatch::new()
        .args(["test", &repo("examples/tests/process-rules.toml")])
        .run();
    out.status(0)
        .stdout_contains(
            "  ok    ProcessCpuSaturated: Idle_pct 0 on one thread, two runs in a row\n",
        )
        .stdout_contains("\n9 passed, 0 failed\n");
    let out = Hapwatch::new()
        .args(["test", &repo("examples/tests/process-changes.toml")])
        .run();
    out.status(0).stdout_contains("\n3 passed, 0 failed\n");
}

#[test]
fn a_correct_expectation_passes() {
    let out = run_test_file(&format!(
        "{DOWN_CASE}firing = [{{ alertname = \"ServerDown\", server = \"web3\" }}, {{ alertname = \"ServerDown\", server = \"web4\" }}]\nnotifications = [{{ notifier = \"stdout\", firing = [{{ server = \"web3\" }}] }}]\n"
    ));
    out.status(0)
        .stdout_is("t.toml\n  ok    web3 goes down\n1 passed, 0 failed\n");
}

#[test]
fn a_missing_alert_fails_with_a_diff() {
    let out = run_test_file(&format!(
        "{DOWN_CASE}firing = [{{ server = \"web3\" }}, {{ server = \"web4\" }}, {{ alertname = \"BackendDown\" }}]\n"
    ));
    out.status(1).stdout_is(
        "t.toml\n  FAIL  web3 goes down\n        step 2 (at 1m00s):\n          firing: expected but missing: {alertname=\"BackendDown\"}\n0 passed, 1 failed\n",
    );
}

#[test]
fn an_extra_alert_fails_with_a_diff() {
    let out = run_test_file(&format!("{DOWN_CASE}firing = [{{ server = \"web4\" }}]\n"));
    out.status(1).stdout_contains(
        "          firing: not expected: {alertname=\"ServerDown\",proxy=\"app-main\",server=\"web3\",severity=\"critical\",source=\"lb1\",type=\"server\"}\n0 passed, 1 failed\n",
    );
}

#[test]
fn a_wrong_expectation_about_pending_or_notifications_fails() {
    let out = run_test_file(&format!(
        "{DOWN_CASE}pending = [{{ server = \"web3\" }}]\nnotifications = []\n"
    ));
    out.status(1)
        .stdout_contains("          pending: expected but missing: {server=\"web3\"}\n")
        .stdout_contains("          notifications: not expected: to stdout firing [{alertname=\"ServerDown\",proxy=\"app-main\",server=\"web3\"");
    let out = run_test_file(&format!("{DOWN_CASE}notifications = [{{ notifier = \"mail\", firing = [{{ server = \"web3\" }}] }}]\n"));
    out.status(1)
        .stdout_contains("notifications: expected but missing: to mail firing [{server=\"web3\"}]");
}

#[test]
fn a_bad_snapshot_path_is_a_clear_error() {
    let out = run_test_file(
        "[[case]]\nname = \"typo\"\n\n[[case.step]]\nat = \"0m\"\nsnapshot = \"nope.csv\"\n",
    );
    out.status(1)
        .stdout_contains("  FAIL  typo\n        step 1 (at 0s): snapshot nope.csv: I/O error on ")
        .stdout_contains("nope.csv: No such file or directory (os error 2)\n");
}

#[test]
fn an_invalid_test_file_is_a_usage_error_with_its_line() {
    let out = run_test_file("[[case]]\nname = \"x\"\n\n[[case.step]]\nat = \"0m\"\nfirng = []\n");
    out.status(2)
        .stderr_contains("t.toml:8: unknown field `firng`");
}

#[test]
fn each_case_starts_from_an_empty_state() {
    let out = run_test_file(&format!(
        "{DOWN_CASE}\n[[case]]\nname = \"fresh\"\n\n[[case.step]]\nat = \"0m\"\nsnapshot = \"FIXTURES/down-after-kill.csv\"\nnotifications = [{{ firing = [{{ server = \"web3\" }}, {{ server = \"web4\" }}] }}]\n"
    ));
    out.status(0).stdout_contains("2 passed, 0 failed");
}

#[test]
fn a_case_gives_its_source_labels_and_expects_them_on_alerts() {
    let rules = "[[rule]]\nname = \"ProdDown\"\nscope = { type = \"server\", server = \"web3\", labels = { env = \"prod\" } }\nwhen = 'state == \"down\"'\n";
    let fixtures = repo("tests/fixtures/haproxy-2.6");
    let case = |labels: &str| {
        format!(
            "config = \"c.toml\"\n\n[[case]]\nname = \"labelled\"\n{labels}\n[[case.step]]\nat = \"0m\"\nsnapshot = \"{fixtures}/down-after-kill.csv\"\nfiring = [{{ alertname = \"ProdDown\", dc = \"fra1\", env = \"prod\" }}]\n"
        )
    };
    let run = |body: String| {
        Hapwatch::new()
            .file("c.toml", rules)
            .file("t.toml", body)
            .args(["test", "t.toml"])
            .run()
    };
    run(case("labels = { dc = \"fra1\", env = \"prod\" }"))
        .status(0)
        .stdout_contains("  ok    labelled\n");
    // Without the labels the rule's scope leaves the source out: the expectation fails.
    run(case("")).status(1).stdout_contains(
        "firing: expected but missing: {alertname=\"ProdDown\",dc=\"fra1\",env=\"prod\"}",
    );
}
