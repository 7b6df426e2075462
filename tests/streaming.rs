//! Evaluating a dump while it arrives (`engine::Watch`, fed by the incremental parser
//! keeping only the columns the rules read) gives exactly what `engine::step` gives on
//! the whole dump: the same alerts, transitions and saved state, whatever the chunk sizes
//! and whenever the previous samples (the state file, read meanwhile) become available.

use hapwatch::config::Config;
use hapwatch::engine::{self, Evaluated, PendingSamples, SourceResult, Watch};
use hapwatch::source::RowSink;
use hapwatch::state::State;
use hapwatch::stats::{Info, Snapshot, StatParser, Stats};
use std::path::Path;

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn source(snapshot: &Snapshot, evaluated: Option<Evaluated>) -> SourceResult<'_> {
    SourceResult {
        name: "lb1",
        result: Ok(snapshot),
        evaluated,
    }
}

/// Rules on counters (`delta`, `rate`), a text column, and a template reading columns
/// no expression does.
const CONFIG: &str = r#"
[[source]]
name = "lb1"
socket = "haproxy.sock"

[[rule]]
name = "Counters"
when = 'delta(stot) >= 0'
value = 'rate(stot)'
summary = '{{ proxy }} {{ check_desc }} {{ scur }}'

[[rule]]
name = "NotUp"
when = 'status != "UP" and delta(chkfail) >= 0'
"#;

#[test]
fn a_watched_dump_evaluates_like_a_whole_one() {
    let config = Config::parse(CONFIG, Path::new("streaming.toml"), true).expect("config");
    let info = Some(Info::parse(&String::from_utf8_lossy(&fixture(
        "haproxy-2.6/show-info.txt",
    ))));
    let pairs = [
        (
            "haproxy-2.6/show-stat.csv",
            "haproxy-2.6/down-after-kill.csv",
        ),
        (
            "haproxy-2.6/backend-down.csv",
            "haproxy-2.6/check-in-progress.csv",
        ),
        ("public/datadog-mock-1.4.csv", "public/datadog-mock-1.4.csv"),
    ];
    for (before, after) in pairs {
        // The previous run, then the reference: step() evaluating the whole second dump.
        let first = Snapshot {
            info: info.clone(),
            stats: Stats::parse(fixture(before)).expect("parses"),
        };
        let mut previous = State::new();
        engine::step(
            &config,
            &mut previous,
            1000.0,
            &mut [source(&first, None)],
            false,
        );
        let bytes = fixture(after);
        let whole = Snapshot {
            info: info.clone(),
            stats: Stats::parse(bytes.clone()).expect("parses"),
        };
        let mut want_state = previous.clone();
        let want = engine::step(
            &config,
            &mut want_state,
            1060.0,
            &mut [source(&whole, None)],
            false,
        );
        assert!(
            !want.active.is_empty(),
            "{after}: the rules match something"
        );

        for chunk in [1, 7, 100, 1000, 100_000] {
            // The chunk after which the samples arrive (`usize::MAX`: after the dump).
            for samples_after in [0, 1, 3, 10, usize::MAX] {
                let samples = PendingSamples::new();
                let mut watch = Watch::new(&config, "lb1", 1060.0, &samples);
                let mut parser = StatParser::keeping(watch.columns());
                for (n, piece) in bytes.chunks(chunk).enumerate() {
                    if n == samples_after {
                        let _ = samples.set(previous.samples.clone());
                    }
                    parser.buffer().extend_from_slice(piece);
                    parser.advance().expect("parses");
                    if let Some(table) = parser.table() {
                        watch.rows(table, info.as_ref(), false);
                    }
                }
                let _ = samples.set(previous.samples.clone());
                let watched = Snapshot {
                    info: info.clone(),
                    stats: parser.finish().expect("parses"),
                };
                watch.rows(watched.stats.table(), watched.info.as_ref(), true);
                let evaluated = Some(watch.finish());
                let mut got_state = previous.clone();
                let got = engine::step(
                    &config,
                    &mut got_state,
                    1060.0,
                    &mut [source(&watched, evaluated)],
                    false,
                );
                let case = format!("{after}, chunks of {chunk}, samples after {samples_after}");
                assert_eq!(got.active, want.active, "{case}");
                assert_eq!(got.transitions, want.transitions, "{case}");
                assert_eq!(got_state, want_state, "{case}");
            }
        }
    }
}
