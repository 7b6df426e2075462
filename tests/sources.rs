//! hapwatch against a real HAProxy, through every kind of stats access: the unix socket
//! (at `level user`), the TCP stats socket, and the stats page with basic auth.
//!
//! Each test starts its own HAProxy (see `common/haproxy.rs`), which has settled into
//! known states before the test runs: web1/web2 UP, web3 DOWN, web4 MAINT, static1
//! `no check`, frontends OPEN. The tests skip (or fail under `CI=true`) without haproxy.

mod common;

use common::{
    config_toml, json_row, json_rows, json_source, row_summary, Access, Haproxy, Hapwatch, Source,
};
use serde_json::Value;
use std::time::Duration;

/// Environment variable the stats page password is passed in.
const PW_VAR: &str = "HAPWATCH_TEST_STATS_PASSWORD";

/// `show --format json` of `sources`, which must all succeed.
fn show_json(sources: &[Source]) -> Value {
    let out = Hapwatch::new()
        .config_text(config_toml(sources))
        .env(PW_VAR, Haproxy::STATS_PASSWORD)
        .args(["show", "--format", "json"])
        .run();
    out.success().stderr_empty();
    out.json()
}

/// The whole baseline of a source entry, plus the JSON contract details worth pinning.
fn assert_baseline(source: &Value) {
    assert!(source.get("error").is_none(), "source failed: {source}");
    assert_eq!(row_summary(source), Haproxy::BASELINE, "{source}");

    let web3 = json_row(source, "app", "web3");
    assert_eq!(web3["state"], "down");
    assert_eq!(web3["status"], "DOWN");
    // `* L4CON` while a check runs: `show` prints the field as HAProxy does (rules read
    // it without the marker). Right after a frozen HAProxy is thawed, a check may run.
    let check = web3["check_status"].as_str().unwrap_or_default();
    assert_eq!(check.strip_prefix("* ").unwrap_or(check), "L4CON", "{web3}");
    // Numbers are JSON numbers, not strings.
    assert_eq!(json_row(source, "app", "web1")["weight"], 1);
    assert!(web3["chkdown"].as_u64().is_some_and(|n| n >= 1), "{web3}");
    // Empty fields are left out, not turned into "" or 0.
    let frontend = json_row(source, "fe", "FRONTEND");
    assert_eq!(frontend["state"], "open");
    assert!(frontend.get("check_status").is_none(), "{frontend}");
    assert!(frontend.get("weight").is_none(), "{frontend}");
    // The `-` separator column of HAProxy 2.x is not a field.
    assert!(frontend.get("-").is_none(), "{frontend}");
}

/// `show info` as the runtime API reports it: this very process.
fn assert_info_of(haproxy: &Haproxy, source: &Value) {
    let info = &source["info"];
    assert_eq!(info["Name"], "HAProxy", "{info}");
    assert_eq!(info["Version"], haproxy.version(), "{info}");
    assert_eq!(info["Pid"], haproxy.pid().to_string(), "{info}");
}

/// Every access path to one HAProxy, each way of giving the stats page its password:
/// the same baseline rows, in config order, whether the path is read alone or beside the
/// others; `show info` through the sockets, none (the key is there, and null) through the
/// stats page.
#[test]
fn every_access_path_reads_the_same_rows_alone_and_together() {
    let Some(haproxy) = Haproxy::start_or_skip() else {
        return;
    };
    // (name, source, has show info)
    let cases = [
        ("unix", haproxy.source("unix", Access::UserSocket), true),
        ("tcp", haproxy.source("tcp", Access::Tcp), true),
        (
            "page-env",
            haproxy
                .source("page-env", Access::StatsPage)
                .set("password", format!("env:{PW_VAR}")),
            false,
        ),
        (
            "page-file",
            haproxy
                .source("page-file", Access::StatsPage)
                .set("password_file", "stats.pw"),
            false,
        ),
    ];
    let show = |sources: &[Source]| {
        let out = Hapwatch::new()
            .config_text(config_toml(sources))
            .env(PW_VAR, Haproxy::STATS_PASSWORD)
            // As `echo s3cret > stats.pw` writes it: the trailing newline is not part of it.
            .file("stats.pw", format!("{}\n", Haproxy::STATS_PASSWORD))
            .args(["show", "--format", "json"])
            .run();
        out.success().stderr_empty();
        out.json()
    };
    let check = |doc: &Value, name: &str, has_info: bool| {
        let source = json_source(doc, name);
        assert_baseline(source);
        assert_eq!(json_rows(source).len(), Haproxy::BASELINE.len(), "{name}");
        if has_info {
            assert_info_of(&haproxy, source);
        } else {
            assert_eq!(source.get("info"), Some(&Value::Null), "{name}: {source}");
        }
    };
    for (name, source, has_info) in &cases {
        check(&show(std::slice::from_ref(source)), name, *has_info);
    }
    let together: Vec<Source> = cases.iter().map(|(_, s, _)| s.clone()).collect();
    let doc = show(&together);
    let names: Vec<&Value> = doc["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["name"])
        .collect();
    assert_eq!(
        names,
        ["unix", "tcp", "page-env", "page-file"],
        "sources keep config order"
    );
    for (name, _, has_info) in &cases {
        check(&doc, name, *has_info);
        assert_eq!(
            row_summary(json_source(&doc, name)),
            row_summary(json_source(&doc, "unix"))
        );
    }
}

#[test]
fn check_connect_reports_version_and_row_counts() {
    let Some(haproxy) = Haproxy::start_or_skip() else {
        return;
    };
    let out = Hapwatch::new()
        .config_text(config_toml(&[
            haproxy.source("unix", Access::UserSocket),
            haproxy.source("tcp", Access::Tcp),
            haproxy
                .source("http", Access::StatsPage)
                .set("password", format!("env:{PW_VAR}")),
        ]))
        .env(PW_VAR, Haproxy::STATS_PASSWORD)
        .args(["check", "--connect"])
        .run();
    out.success().stderr_empty();
    let counts = "10 rows (2 frontends, 3 backends, 5 servers, 0 listeners)";
    let want = [
        // Only the start of the config summary line is pinned: its wording is in flux.
        format!("{}: OK (3 sources", out.config_display()),
        // The exact version `haproxy -v` reports (2.6.12-1+deb12u4 on Debian 12).
        format!("source unix: HAProxy {}, {counts}", haproxy.version()),
        format!("source tcp: HAProxy {}, {counts}", haproxy.version()),
        format!("source http: version unknown (no show info), {counts}"),
    ];
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), want.len(), "{out:?}");
    assert!(lines[0].starts_with(&want[0]), "{out:?}");
    for (line, want) in lines[1..].iter().zip(&want[1..]) {
        // `... in 1.2 ms`: the timing varies, its shape does not.
        let (summary, timing) = line.rsplit_once(" in ").expect("a timing suffix");
        assert_eq!(summary, want, "{out:?}");
        let ms = timing.strip_suffix(" ms").expect("milliseconds");
        assert!(ms.parse::<f64>().is_ok(), "timing {timing:?}");
    }
}

/// A wrong stats page password, from the environment or from a file, in `show` and in
/// `check --connect`: one line naming the source and the 401, never the password, and the
/// other source is still read.
#[test]
fn a_wrong_password_is_one_authentication_failure() {
    let Some(haproxy) = Haproxy::start_or_skip() else {
        return;
    };
    let want = format!(
        "hapwatch: source lb: authentication failed (HTTP 401 from {};csv): \
         check username and password\n",
        haproxy.stats_url()
    );
    let by_env = ("password", format!("env:{PW_VAR}"));
    let by_file = ("password_file", "stats.pw".to_string());
    for (args, (key, value)) in [
        (&["show"][..], by_env.clone()),
        (&["show"][..], by_file.clone()),
        (&["check", "--connect"][..], by_env),
        (&["check", "--connect"][..], by_file),
    ] {
        let page = haproxy.source("lb", Access::StatsPage).set(key, value);
        let out = Hapwatch::new()
            .config_text(config_toml(&[
                page,
                haproxy.source("unix", Access::UserSocket),
            ]))
            .env(PW_VAR, "hunter2")
            .file("stats.pw", "hunter2\n")
            .args(args)
            .run();
        out.status(1)
            .stderr_is(&want)
            .stderr_lacks("hunter2")
            .stdout_lacks("hunter2")
            .stdout_lacks("source lb:");
        if args[0] == "check" {
            out.stdout_contains(&format!(
                "source unix: HAProxy {}, 10 rows",
                haproxy.version()
            ));
        } else {
            out.stdout_contains(" web3 ");
        }
    }
}

#[test]
fn a_failing_source_does_not_keep_the_others_from_being_read() {
    let Some(haproxy) = Haproxy::start_or_skip() else {
        return;
    };
    let missing = haproxy.dir().join("gone.sock");
    let sources = [
        haproxy.source("good", Access::UserSocket),
        Source::new("bad").set("socket", missing.display().to_string()),
    ];
    let error = format!(
        "cannot connect to {}: no such socket (is haproxy running, and does its \
         `stats socket` line name this path?)",
        missing.display()
    );

    let out = Hapwatch::new()
        .config_text(config_toml(&sources))
        .args(["show", "--format", "json"])
        .run();
    out.status(1)
        .stderr_is(&format!("hapwatch: source bad: {error}\n"));
    let doc = out.json();
    assert_baseline(json_source(&doc, "good"));
    assert_eq!(
        json_source(&doc, "bad"),
        &serde_json::json!({ "name": "bad", "error": error })
    );

    // The table shows the good source's rows, under a SOURCE column because two
    // sources were asked for.
    let out = Hapwatch::new()
        .config_text(config_toml(&sources))
        .arg("show")
        .run();
    out.status(1)
        .stderr_is(&format!("hapwatch: source bad: {error}\n"));
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines.len(),
        1 + Haproxy::BASELINE.len(),
        "a header and one line per row: {out:?}"
    );
    assert!(lines[0].starts_with("SOURCE  PROXY "), "{out:?}");
    let web3 = lines
        .iter()
        .find(|l| l.contains(" web3 "))
        .unwrap_or_else(|| panic!("no web3 line: {out:?}"));
    let cells: Vec<&str> = web3.split_whitespace().collect();
    assert_eq!(
        cells[..5],
        ["good", "app", "web3", "server", "DOWN"],
        "{web3}"
    );
}

#[test]
fn state_changes_made_on_the_admin_socket_are_seen() {
    let Some(haproxy) = Haproxy::start_or_skip() else {
        return;
    };
    // The user-level socket hapwatch reads refuses to change anything...
    let refused = common::runtime_command(haproxy.user_socket(), "disable server app/web1")
        .expect("user socket");
    assert_eq!(refused.trim(), "Permission denied");
    assert_eq!(haproxy.status("app", "web1"), "UP");
    // ...while the admin socket does.
    assert_eq!(haproxy.admin("disable server app/web1").trim(), "");
    assert_eq!(haproxy.admin("set server app/web2 state drain").trim(), "");
    haproxy.wait_for_status("app", "web1", "MAINT");
    haproxy.wait_for_status("app", "web2", "DRAIN");

    let doc = show_json(&[haproxy.source("lb", Access::UserSocket)]);
    let source = json_source(&doc, "lb");
    assert_eq!(json_row(source, "app", "web1")["state"], "maint");
    assert_eq!(json_row(source, "app", "web2")["state"], "drain");
    // With web1 in maintenance and web2 draining, web3 down, web4 disabled, nothing is
    // left to carry weight: the backend is down.
    let backend = json_row(source, "app", "BACKEND");
    assert_eq!(backend["state"], "down", "{backend}");
    assert_eq!(backend["status"], "DOWN");
}

#[test]
fn filters_apply_to_live_data() {
    let Some(haproxy) = Haproxy::start_or_skip() else {
        return;
    };
    let out = Hapwatch::new()
        .config_text(config_toml(&[haproxy.source("lb", Access::Tcp)]))
        .args([
            "show", "--format", "json", "--type", "server", "--proxy", "ap*",
        ])
        .run();
    out.success();
    assert_eq!(
        row_summary(json_source(&out.json(), "lb")),
        [
            "app/web1 server up [UP]",
            "app/web2 server up [UP]",
            "app/web3 server down [DOWN]",
            "app/web4 server maint [MAINT]",
        ]
    );
}

#[test]
fn a_csv_dump_reads_back_as_a_file_source() {
    let Some(haproxy) = Haproxy::start_or_skip() else {
        return;
    };
    let dump = Hapwatch::new()
        .config_text(config_toml(&[haproxy.source("lb", Access::UserSocket)]))
        .args(["show", "--format", "csv"])
        .run();
    dump.success().stderr_empty();
    assert!(dump.stdout.starts_with("# pxname,svname,"), "{dump:?}");

    let again = Hapwatch::new()
        .config_text(config_toml(&[Source::new("snap").set("file", "-")]))
        .stdin(dump.stdout.clone())
        .args(["show", "--format", "json"])
        .run();
    again.success().stderr_empty();
    let doc = again.json();
    let snap = json_source(&doc, "snap");
    assert_baseline(snap);
    assert_eq!(snap["info"], Value::Null, "a CSV dump carries no show info");
}

/// Sources with a short timeout on every access path.
fn short_timeout_sources(haproxy: &Haproxy, timeout: &str) -> [Source; 3] {
    [
        haproxy
            .source("unix", Access::UserSocket)
            .set("timeout", timeout),
        haproxy.source("tcp", Access::Tcp).set("timeout", timeout),
        haproxy
            .source("http", Access::StatsPage)
            .set("password", format!("env:{PW_VAR}"))
            .set("timeout", timeout),
    ]
}

fn timeout_lines(haproxy: &Haproxy, timeout_ms: u64) -> String {
    format!(
        "hapwatch: source unix: no complete reply from {} within {timeout_ms}ms (timeout)\n\
         hapwatch: source tcp: no complete reply from {} within {timeout_ms}ms (timeout)\n\
         hapwatch: source http: no complete reply from {};csv within {timeout_ms}ms (timeout)\n",
        haproxy.user_socket().display(),
        haproxy.tcp_addr(),
        haproxy.stats_url()
    )
}

#[test]
fn a_frozen_haproxy_times_out_on_every_access_path_and_recovers() {
    let Some(mut haproxy) = Haproxy::start_or_skip() else {
        return;
    };
    let sources = short_timeout_sources(&haproxy, "300ms");
    haproxy.freeze();
    Hapwatch::new()
        .config_text(config_toml(&sources))
        .env(PW_VAR, Haproxy::STATS_PASSWORD)
        .arg("show")
        .guard(Duration::from_secs(10))
        .run()
        .status(1)
        .stdout_empty()
        // Sources are read concurrently, and failures are reported in config order.
        .stderr_is(&timeout_lines(&haproxy, 300))
        // A hang guard, not a performance assertion.
        .finished_within(Duration::from_secs(5));

    haproxy.thaw();
    haproxy.wait_settled();
    let doc = show_json(&sources);
    for name in ["unix", "tcp", "http"] {
        assert_baseline(json_source(&doc, name));
    }
}

#[test]
fn a_frozen_haproxy_with_a_full_accept_queue_still_times_out() {
    let Some(haproxy) = Haproxy::start_or_skip() else {
        return;
    };
    haproxy.freeze();
    let source = haproxy
        .source("unix", Access::UserSocket)
        .set("timeout", "100ms");
    // Each run that gives up leaves its connection in the frozen HAProxy's accept queue
    // (HAProxy 2.6 listens on its stats socket with a backlog of 10), as a monitor run
    // from cron every minute would. The runs after the queue is full must time out too.
    for run in 1..=16 {
        let out = Hapwatch::new()
            .config_text(config_toml(std::slice::from_ref(&source)))
            .arg("show")
            .guard(Duration::from_secs(5))
            .run();
        assert_eq!(out.code, Some(1), "run {run}: {out:?}");
        assert_eq!(
            out.stderr,
            format!(
                "hapwatch: source unix: no complete reply from {} within 100ms (timeout)\n",
                haproxy.user_socket().display()
            ),
            "run {run}: {out:?}"
        );
    }
}

#[test]
fn a_dump_filtered_by_haproxy_has_exactly_the_rows_of_a_full_one() {
    let Some(haproxy) = Haproxy::start_or_skip() else {
        return;
    };
    let source = haproxy.source("lb", Access::UserSocket);
    let full = show_json(std::slice::from_ref(&source));
    let rows = |doc: &Value| -> Vec<Value> {
        json_rows(json_source(doc, "lb"))
            .iter()
            .map(|r| serde_json::json!([r["pxname"], r["svname"], r["kind"], r["status"]]))
            .collect()
    };
    for types in [
        &["server"][..],
        &["backend", "frontend"][..],
        &["listener"][..],
    ] {
        let mut args = vec!["show", "--format", "json"];
        for t in types {
            args.extend(["--type", t]);
        }
        let out = Hapwatch::new()
            .config_text(config_toml(std::slice::from_ref(&source)))
            .args(args)
            .run();
        out.success();
        let wanted: Vec<Value> = rows(&full)
            .into_iter()
            .filter(|r| types.contains(&r[2].as_str().unwrap()))
            .collect();
        assert_eq!(rows(&out.json()), wanted, "types {types:?}");
    }
}
