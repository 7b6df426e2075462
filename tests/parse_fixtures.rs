//! Every captured dump parses, and the values come out right (checked against an
//! independent CSV reader when the expectations were written).

use hapwatch::config::{Endpoint, SourceConfig};
use hapwatch::report;
use hapwatch::scope::Scope;
use hapwatch::source::{self, SourceError};
use hapwatch::stats::{ParseError, ProxyType, Row, Snapshot, State, Stats};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn load(name: &str) -> Result<Snapshot, SourceError> {
    source::fetch(&SourceConfig {
        name: "fixture".into(),
        endpoint: Endpoint::File(fixture(name)),
        timeout: Duration::from_secs(1),
        labels: Default::default(),
        line: 1,
        file: None,
    })
}

fn snapshot(name: &str) -> Snapshot {
    load(name).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn find<'a>(snap: &'a Snapshot, proxy: &str, name: &str) -> Row<'a> {
    snap.stats
        .rows()
        .find(|r| r.proxy() == proxy && r.name() == name)
        .unwrap_or_else(|| panic!("no row {proxy}/{name}"))
}

fn num(row: &Row<'_>, column: &str) -> Option<u64> {
    row.columns().get(column).and_then(|c| row.u64(c))
}

#[test]
fn every_fixture_parses_with_all_its_rows() {
    let cases = [
        ("haproxy-2.6/show-stat.csv", 14, 128),
        ("haproxy-2.6/show-stat-tcp.csv", 14, 128),
        ("haproxy-2.6/show-info-and-stat.txt", 14, 128),
        ("haproxy-2.6/stats-http.csv", 14, 128),
        ("haproxy-2.6/maint.csv", 14, 128),
        ("haproxy-2.6/drain.csv", 14, 128),
        ("haproxy-2.6/drain-going-down.csv", 14, 128),
        ("haproxy-2.6/down-after-kill.csv", 14, 128),
        ("haproxy-2.6/after-enable-transitional.csv", 14, 128),
        ("haproxy-2.6/up-going-down.csv", 14, 128),
        ("haproxy-2.6/backend-down.csv", 14, 128),
        ("haproxy-2.6/frontend-paused.csv", 14, 128),
        ("haproxy-2.6/down-going-up.csv", 14, 128),
        ("haproxy-2.6/check-in-progress.csv", 14, 128),
        ("haproxy-2.6/series/t1.csv", 14, 128),
        ("haproxy-2.6/series/t2.csv", 14, 128),
        ("haproxy-2.6/series/t3.csv", 14, 128),
        ("haproxy-2.6/series/t4.csv", 14, 128),
        ("haproxy-2.6/series/t5.csv", 14, 128),
        ("haproxy-2.6/series/t6-after-reload.csv", 14, 128),
        ("public/telegraf-sample-1.7.csv", 13, 83),
        ("public/sensu-stat-2.3.csv", 11, 114),
        ("public/datadog-mock-1.4.csv", 17, 51),
    ];
    for (name, rows, columns) in cases {
        let snap = snapshot(name);
        assert_eq!(snap.stats.len(), rows, "{name}: rows");
        assert_eq!(snap.stats.columns().len(), columns, "{name}: columns");
    }
}

#[test]
#[should_panic(expected = "column check_desc was not kept by the parser")]
fn reading_a_column_the_parser_did_not_keep_is_a_bug() {
    let bytes = std::fs::read(fixture("haproxy-2.6/show-stat.csv")).unwrap();
    let stats = Stats::parse_keeping(bytes, Some(vec!["scur".to_string()])).unwrap();
    let row = stats.row(0);
    assert_eq!((row.proxy(), row.name()), ("stats", "FRONTEND"));
    assert_eq!(row.by_name("scur"), Some("0"));
    row.by_name("check_desc");
}

#[test]
fn baseline_capture_values() {
    let snap = snapshot("haproxy-2.6/show-stat.csv");
    // (proxy, name, type, state, scur, stot, rate, chkdown)
    let expected = [
        (
            "fe-web",
            "FRONTEND",
            ProxyType::Frontend,
            State::Open,
            0,
            234,
            0,
            None,
        ),
        (
            "app-main",
            "web1",
            ProxyType::Server,
            State::Up,
            0,
            70,
            0,
            Some(0),
        ),
        (
            "app-main",
            "web4",
            ProxyType::Server,
            State::Down,
            0,
            0,
            0,
            Some(1),
        ),
        (
            "app-main",
            "BACKEND",
            ProxyType::Backend,
            State::Up,
            0,
            210,
            0,
            Some(0),
        ),
        (
            "static",
            "static1",
            ProxyType::Server,
            State::NoCheck,
            0,
            10,
            0,
            None,
        ),
        (
            "api",
            "api-bk",
            ProxyType::Server,
            State::Up,
            0,
            0,
            0,
            Some(0),
        ),
    ];
    for (proxy, name, kind, state, scur, stot, rate, chkdown) in expected {
        let row = find(&snap, proxy, name);
        assert_eq!(row.kind(), kind, "{proxy}/{name}");
        assert_eq!(row.state(), state, "{proxy}/{name}");
        assert_eq!(num(&row, "scur"), Some(scur), "{proxy}/{name} scur");
        assert_eq!(num(&row, "stot"), Some(stot), "{proxy}/{name} stot");
        assert_eq!(num(&row, "rate"), Some(rate), "{proxy}/{name} rate");
        assert_eq!(num(&row, "chkdown"), chkdown, "{proxy}/{name} chkdown");
    }
    let web4 = find(&snap, "app-main", "web4");
    assert_eq!(web4.by_name("check_status"), Some("L4CON"));
    assert_eq!(web4.by_name("last_chk"), Some("Connection refused"));
    assert_eq!(
        web4.by_name("check_desc"),
        Some("Layer4 connection problem")
    );
    assert_eq!(web4.by_name("addr"), Some("127.0.0.1:9104"));
    assert_eq!(web4.by_name("-"), Some("-"));
}

#[test]
fn empty_fields_are_absent_not_zero_and_lastsess_is_signed() {
    let snap = snapshot("haproxy-2.6/show-stat.csv");
    let fe = find(&snap, "fe-web", "FRONTEND");
    assert_eq!(fe.by_name("qcur"), None, "frontends report no queue");
    assert_eq!(num(&fe, "qcur"), None);
    assert_eq!(num(&fe, "chkdown"), None);
    let web4 = find(&snap, "app-main", "web4");
    let lastsess = snap.stats.columns().get("lastsess").unwrap();
    assert_eq!(web4.i64(lastsess), Some(-1), "-1 means never");
    assert_eq!(web4.u64(lastsess), None, "-1 is not a counter value");
    assert_eq!(find(&snap, "app-main", "web1").i64(lastsess), Some(4));
}

#[test]
fn statuses_of_every_lab_state() {
    let cases = [
        ("maint.csv", "app-main", "web2", "MAINT", State::Maint),
        ("drain.csv", "app-main", "web3", "DRAIN", State::Drain),
        (
            "drain-going-down.csv",
            "app-main",
            "web3",
            "DRAIN 1/2",
            State::Drain,
        ),
        (
            "down-after-kill.csv",
            "app-main",
            "web3",
            "DOWN",
            State::Down,
        ),
        (
            "after-enable-transitional.csv",
            "app-main",
            "web2",
            "UP 1/2",
            State::GoingDown,
        ),
        (
            "up-going-down.csv",
            "app-main",
            "web1",
            "UP 1/2",
            State::GoingDown,
        ),
        (
            "backend-down.csv",
            "app-main",
            "BACKEND",
            "DOWN",
            State::Down,
        ),
        (
            "frontend-paused.csv",
            "fe-web",
            "FRONTEND",
            "PAUSED",
            State::Paused,
        ),
        (
            "down-going-up.csv",
            "app-main",
            "web1",
            "DOWN 1/2",
            State::GoingUp,
        ),
        ("check-in-progress.csv", "app-main", "web1", "UP", State::Up),
    ];
    for (file, proxy, name, status, state) in cases {
        let snap = snapshot(&format!("haproxy-2.6/{file}"));
        let row = find(&snap, proxy, name);
        assert_eq!(row.status(), status, "{file} {proxy}/{name}");
        assert_eq!(row.state(), state, "{file} {proxy}/{name}");
    }
    let snap = snapshot("haproxy-2.6/down-after-kill.csv");
    let web3 = find(&snap, "app-main", "web3");
    assert_eq!(num(&web3, "chkdown"), Some(1));
    assert_eq!(num(&web3, "chkfail"), Some(2));
}

#[test]
fn check_in_progress_prefix_is_kept_raw() {
    let snap = snapshot("haproxy-2.6/check-in-progress.csv");
    assert_eq!(
        find(&snap, "app-main", "web1").by_name("check_status"),
        Some("* L4OK")
    );
    let snap = snapshot("haproxy-2.6/stats-http.csv");
    assert_eq!(
        find(&snap, "api", "api-bk").by_name("check_status"),
        Some("* L4OK")
    );
}

#[test]
fn counters_across_the_load_series_and_reload() {
    let stot: Vec<u64> = ["t1", "t2", "t3", "t4", "t5", "t6-after-reload"]
        .iter()
        .map(|t| {
            let snap = snapshot(&format!("haproxy-2.6/series/{t}.csv"));
            num(&find(&snap, "fe-web", "FRONTEND"), "stot").unwrap()
        })
        .collect();
    assert_eq!(stot, [3441, 6607, 9849, 13238, 16654, 1439]);
    let snap = snapshot("haproxy-2.6/series/t1.csv");
    assert_eq!(num(&find(&snap, "fe-web", "FRONTEND"), "rate"), Some(3205));
    assert_eq!(num(&find(&snap, "fe-web", "FRONTEND"), "scur"), Some(20));
    assert_eq!(num(&find(&snap, "app-main", "web2"), "chkdown"), Some(2));
}

#[test]
fn show_info_fields() {
    let snap = snapshot("haproxy-2.6/show-info-and-stat.txt");
    let info = snap.info.as_ref().expect("show info block");
    assert_eq!(info.pid(), Some(5227));
    assert_eq!(info.uptime_sec(), Some(10));
    assert_eq!(info.start_time_sec(), Some(1_795_450_203));
    assert_eq!(info.node(), Some("vm"));
    assert_eq!(info.version(), Some("2.6.12-1+deb12u4"));
    assert_eq!(info.get("Unstoppable Jobs"), Some("0"));
    assert!(snapshot("haproxy-2.6/show-stat.csv").info.is_none());

    let text =
        |f: &str| std::fs::read_to_string(fixture(&format!("haproxy-2.6/series/{f}"))).unwrap();
    let before = hapwatch::stats::Info::parse(&text("info-before-reload.txt"));
    let after = hapwatch::stats::Info::parse(&text("info-after-reload.txt"));
    assert_eq!((before.pid(), after.pid()), (Some(5227), Some(25783)));
    assert_eq!(after.start_time_sec(), Some(1_795_450_285));
}

#[test]
fn telegraf_17_leading_blank_line_listeners_and_big_counters() {
    let snap = snapshot("public/telegraf-sample-1.7.csv");
    let listeners = snap
        .stats
        .rows()
        .filter(|r| r.kind() == ProxyType::Listener)
        .count();
    assert_eq!(listeners, 5);
    let fe = find(&snap, "http-in", "FRONTEND");
    assert_eq!(num(&fe, "bout"), Some(65_937_668_635), "above 2^32");
    assert_eq!(num(&fe, "stot"), Some(2_639_994));
    let www = find(&snap, "www", "www");
    assert_eq!(www.state(), State::Up);
    assert_eq!(num(&www, "chkdown"), Some(84));
    assert_eq!(www.by_name("check_status"), Some("L7OK"));
    assert_eq!(find(&snap, "www", "bck").by_name("bck"), Some("1"));
    assert_eq!(
        snap.stats.columns().get("-"),
        None,
        "1.7 has no separator column"
    );
}

#[test]
fn sensu_23_duplicate_header_names_keep_the_first_column() {
    let snap = snapshot("public/sensu-stat-2.3.csv");
    let columns = snap.stats.columns();
    let first = columns.get("h2_open_connections").unwrap();
    let second = columns.get("h2_open_connections#2").unwrap();
    assert!(
        first < second,
        "the second pair must not overwrite the first"
    );
    assert_eq!(
        columns.get("h2_backend_open_streams#2"),
        Some(columns.len() - 1)
    );
    let https = find(&snap, "https", "FRONTEND");
    assert_eq!(num(&https, "stot"), Some(3193));
    assert_eq!(num(&https, "bout"), Some(94_972_540));
    let ctrl01 = find(&snap, "bk_dashboard_cluster", "ctrl01");
    assert_eq!(ctrl01.by_name("check_status"), Some("* L7OK"));
    assert_eq!(ctrl01.state(), State::Up);
}

#[test]
fn datadog_14_quoted_comma_and_hand_edited_statuses() {
    let snap = snapshot("public/datadog-mock-1.4.csv");
    let b = find(&snap, "b", "BACKEND");
    assert_eq!(b.by_name("hrsp_2xx"), Some("space, afterspace"));
    assert_eq!(num(&b, "hrsp_2xx"), None, "not a number");
    assert_eq!(num(&b, "stot"), Some(421));
    assert_eq!(num(&b, "hrsp_3xx"), None);
    assert_eq!(
        num(&b, "srv_abrt"),
        Some(0),
        "fields after the quoted one keep their column"
    );
    assert_eq!(b.by_name("status"), Some("UP"));
    let state = |p: &str, s: &str| find(&snap, p, s).state();
    assert_eq!(state("b", "i-1"), State::GoingDown);
    assert_eq!(state("b", "i-4"), State::Down);
    assert_eq!(state("b", "i-5"), State::Maint);
    assert_eq!(
        state("be_edge_http_sre-production_elk-kibana", "i-2"),
        State::Down
    );
    assert_eq!(
        state("be_edge_http_sre-production_elk-kibana", "i-3"),
        State::NoCheck
    );
    assert_eq!(
        find(&snap, "be_edge_http_sre-production_elk-kibana", "i-2").status(),
        "DOWN (agent)"
    );
}

#[test]
fn truncated_dump_is_an_error_naming_the_line() {
    let err = load("haproxy-2.6/truncated.csv").unwrap_err();
    let SourceError::Parse { source, .. } = &err else {
        panic!("expected a parse error, got {err}");
    };
    assert_eq!(
        *source,
        ParseError::FieldCount {
            line: 8,
            found: 57,
            expected: 129
        }
    );
}

#[test]
fn quoted_fields_may_span_lines_and_must_be_closed() {
    let dump = "# pxname,svname,status,last_chk,\nb,s1,UP,\"line one\nline \"\"two\"\", end\",\nb,s2,DOWN,x,\n";
    let stats = Stats::parse(dump.as_bytes().to_vec()).unwrap();
    assert_eq!(stats.len(), 2);
    let s1 = stats.row(0);
    assert_eq!(s1.by_name("last_chk"), Some("line one\nline \"two\", end"));
    assert_eq!(s1.line(), "b,s1,UP,\"line one\nline \"\"two\"\", end\",");
    assert_eq!(stats.row(1).name(), "s2");
    assert_eq!(stats.row(1).state(), State::Down);

    let open = "# pxname,svname,status,\nb,s1,\"UP,\n";
    assert_eq!(
        Stats::parse(open.as_bytes().to_vec()).unwrap_err(),
        ParseError::UnterminatedQuote { line: 2 }
    );
}

#[test]
fn garbage_and_empty_input_are_errors() {
    assert_eq!(
        Stats::parse(b"\n\n".to_vec()).unwrap_err(),
        ParseError::Empty
    );
    assert!(matches!(
        Stats::parse(b"<html>nope</html>\n".to_vec()).unwrap_err(),
        ParseError::NoHeader(_)
    ));
    assert_eq!(
        Stats::parse(b"# a,b,\n1,2,\n".to_vec()).unwrap_err(),
        ParseError::MissingColumn("pxname")
    );
    assert_eq!(
        Stats::parse(b"# pxname,svname,\na,b,\n# pxname,svname,\n".to_vec()).unwrap_err(),
        ParseError::SecondHeader { line: 3 }
    );
}

#[test]
fn csv_output_reads_back_identically() {
    for name in ["public/datadog-mock-1.4.csv", "haproxy-2.6/show-stat.csv"] {
        let snap = snapshot(name);
        let mut out = Vec::new();
        report::csv(&mut out, &snap, &Scope::default()).unwrap();
        let again = Stats::parse(out).unwrap();
        assert_eq!(again.len(), snap.stats.len(), "{name}");
        for (a, b) in snap.stats.rows().zip(again.rows()) {
            for col in 0..a.columns().len() {
                assert_eq!(a.raw(col), b.raw(col), "{name} row {}", a.index());
            }
        }
    }
}
