//! Micro-benchmarks (divan) of the stages of one run on a big `show stat` dump: parsing,
//! default-rule evaluation, sample capture, state load and save, JSON rendering.
//!
//! `cargo bench --bench micro` (add a name to filter, e.g. `cargo bench --bench micro parse`).
//!
//! Input: the file named by `HAPWATCH_BENCH_DUMP` (a raw `show info;show stat` reply or
//! plain `show stat` CSV, e.g. `benches/show.sh` captures one from a live HAProxy); when
//! unset, a synthetic 2,000 backends x 5 servers dump (12,001 rows) built from the real
//! HAProxy 2.6.12 rows in tests/fixtures/haproxy-2.6/show-stat.csv.
//!
//! Times are wall time of single-threaded work; divan reports the fastest, slowest,
//! median and mean sample, and (through its allocation profiler) the allocations of each
//! iteration. Setup (cloning the input) and dropping the result are not timed. This
//! prints numbers and asserts nothing about them.

use divan::{black_box, AllocProfiler, Bencher};
use hapwatch::config::Config;
use hapwatch::report::{self, Named};
use hapwatch::rules::sample::Sample;
use hapwatch::rules::Input;
use hapwatch::scope::Scope;
use hapwatch::state::{self, Loaded, Lock, State};
use hapwatch::stats::{Info, Snapshot, StatParser, Stats};
use std::io::Write;
use std::path::Path;
use std::sync::LazyLock;
use std::time::Duration;

#[global_allocator]
static ALLOC: AllocProfiler = AllocProfiler::system();

/// The real header and rows the synthetic dump is made of.
const FIXTURE: &str = include_str!("../tests/fixtures/haproxy-2.6/show-stat.csv");
const SYNTHETIC_BACKENDS: usize = 2000;

/// Bytes per read, as the runtime API source reads them.
const CHUNK: usize = 64 * 1024;

fn main() {
    let dump = &*DUMP;
    let rows = Stats::parse(dump.stat.clone())
        .expect("the dump parses")
        .len();
    let dir = tempfile::tempdir().expect("temp dir");
    let state_bytes = std::fs::metadata(warm_state(dir.path()))
        .expect("state file")
        .len();
    println!(
        "input: {}\nshow stat: {} bytes, {rows} rows; a warm state file for it: {state_bytes} bytes",
        dump.origin,
        dump.stat.len()
    );
    divan::main();
}

struct Dump {
    origin: String,
    info: Option<String>,
    stat: Vec<u8>,
}

static DUMP: LazyLock<Dump> = LazyLock::new(|| {
    match std::env::var_os("HAPWATCH_BENCH_DUMP") {
    Some(path) => {
        let raw = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("HAPWATCH_BENCH_DUMP={}: {e}", path.to_string_lossy()));
        let stat = stat_part(&raw);
        let info = &raw[..raw.len() - stat.len()];
        Dump {
            origin: format!("file {}", path.to_string_lossy()),
            info: (!info.iter().all(u8::is_ascii_whitespace))
                .then(|| String::from_utf8_lossy(info).into()),
            stat: stat.to_vec(),
        }
    }
    None => Dump {
        origin: format!(
            "synthetic: {SYNTHETIC_BACKENDS} backends x 5 servers from the 2.6.12 rows of tests/fixtures/haproxy-2.6/show-stat.csv (set HAPWATCH_BENCH_DUMP to use a capture)"
        ),
        info: None,
        stat: synthetic(SYNTHETIC_BACKENDS),
    },
}
});

/// The parsed dump.
static SNAPSHOT: LazyLock<Snapshot> = LazyLock::new(|| Snapshot {
    info: DUMP.info.as_deref().map(Info::parse),
    stats: Stats::parse(DUMP.stat.clone()).expect("the dump parses"),
});

/// The default rules (config/rules.toml), as `hapwatch run` compiles them.
static CONFIG: LazyLock<Config> = LazyLock::new(|| {
    Config::parse(
        &format!(
            "include = [{:?}]\n",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config/rules.toml")
        ),
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/bench.toml")),
        true,
    )
    .expect("the default rules compile")
});

/// The previous run's sample: the same dump, 60 s earlier.
static PREVIOUS: LazyLock<Sample> = LazyLock::new(|| CONFIG.rules.sample(&SNAPSHOT, 1000.0));

/// The `show stat` part of a dump: from the `# pxname` header to the end.
fn stat_part(raw: &[u8]) -> &[u8] {
    if raw.starts_with(b"#") {
        return raw;
    }
    match raw.windows(3).position(|w| w == b"\n# ") {
        Some(i) => &raw[i + 1..],
        None => panic!("no `# pxname` header line in the dump"),
    }
}

/// 1 frontend + `backends` x (5 servers + BACKEND), from real 2.6.12 rows: like the
/// live benchmark config, servers are `no check` (`static/static1`), except s1 of every
/// 50th backend, which is DOWN/L4CON (`app-main/web4`).
fn synthetic(backends: usize) -> Vec<u8> {
    let mut lines = FIXTURE.lines();
    let header = lines.next().expect("fixture header");
    let rows: Vec<&str> = lines.filter(|l| !l.is_empty()).collect();
    let template = |px: &str, sv: &str| -> &str {
        let prefix = format!("{px},{sv},");
        let row = rows
            .iter()
            .find(|r| r.starts_with(&prefix))
            .unwrap_or_else(|| panic!("fixture row {px}/{sv} missing"));
        &row[prefix.len()..]
    };
    let frontend = template("fe-web", "FRONTEND");
    let no_check = template("static", "static1");
    let down = template("app-main", "web4");
    let backend = template("app-main", "BACKEND");

    let mut out = String::with_capacity((backends * 6 + 2) * 260);
    out.push_str(header);
    out.push('\n');
    out.push_str(&format!("fe-bench,FRONTEND,{frontend}\n"));
    for b in 1..=backends {
        for s in 1..=5 {
            let rest = if s == 1 && b % 50 == 0 {
                down
            } else {
                no_check
            };
            out.push_str(&format!("be-{b:04},s{s},{rest}\n"));
        }
        out.push_str(&format!("be-{b:04},BACKEND,{backend}\n"));
    }
    out.into_bytes()
}

/// `Stats::parse` of the whole dump at once (file and stats-page sources).
#[divan::bench(max_time = 3)]
fn parse(bencher: Bencher) {
    bencher
        .with_inputs(|| DUMP.stat.clone())
        .bench_values(|bytes| Stats::parse(black_box(bytes)).expect("parses"));
}

/// `Stats::parse` keeping only the columns the default rules read, as `hapwatch run`
/// does for a file source.
#[divan::bench(max_time = 3)]
fn parse_run_columns(bencher: Bencher) {
    let columns = CONFIG.rules.columns_read();
    bencher
        .with_inputs(|| (DUMP.stat.clone(), columns.clone()))
        .bench_values(|(bytes, columns)| {
            Stats::parse_keeping(black_box(bytes), Some(columns)).expect("parses")
        });
}

/// The dump fed to the incremental parser 64 KiB at a time, keeping the columns the
/// default rules read: what `hapwatch run` does with a runtime API reply (minus the
/// rules, which it evaluates between reads).
#[divan::bench(max_time = 3)]
fn parse_streamed_run_columns(bencher: Bencher) {
    let columns = CONFIG.rules.columns_read();
    bencher
        .with_inputs(|| columns.clone())
        .bench_values(|columns| {
            let mut parser = StatParser::keeping(Some(columns));
            for chunk in DUMP.stat.chunks(CHUNK) {
                parser.buffer().extend_from_slice(black_box(chunk));
                parser.advance().expect("parses");
            }
            parser.finish().expect("parses")
        });
}

/// Four fields of every row as `&str`: the cost of field access.
#[divan::bench]
fn row_access(bencher: Bencher) {
    let stats = &SNAPSHOT.stats;
    let columns = ["scur", "slim", "status", "check_status"]
        .map(|name| stats.columns().get(name).expect("column"));
    bencher.bench(|| {
        let mut n = 0usize;
        for row in stats.rows() {
            for col in columns {
                n += row.raw(col).len();
            }
        }
        n
    });
}

/// The default rules over every row, with a previous sample (as a warm `hapwatch run`).
#[divan::bench(max_time = 3)]
fn evaluate_default_rules(bencher: Bencher) {
    let (config, snapshot, previous) = (&*CONFIG, &*SNAPSHOT, &*PREVIOUS);
    bencher.bench(|| {
        config.rules.evaluate(
            &Input {
                source: "bench",
                labels: &Default::default(),
                snapshot,
                previous: Some(previous),
                now: 1060.0,
            },
            None,
        )
    });
}

/// Capturing what the next run's `delta()` / `rate()` need.
#[divan::bench(max_time = 3)]
fn sample_capture(bencher: Bencher) {
    let (config, snapshot) = (&*CONFIG, &*SNAPSHOT);
    bencher.bench(|| config.rules.sample(snapshot, 1060.0));
}

/// A state file as a warm run leaves it for this dump: the sample plus one firing alert
/// per DOWN server and backend.
fn warm_state(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("state.json");
    let lock = Lock::acquire(&path, Duration::from_secs(1)).expect("lock");
    let mut state = State::new();
    for now in [1000.0, 1060.0] {
        let source = hapwatch::engine::SourceResult {
            name: "bench",
            result: Ok(&*SNAPSHOT),
            evaluated: None,
        };
        hapwatch::engine::step(&CONFIG, &mut state, now, &mut [source], false);
    }
    lock.save(&state).expect("save");
    path
}

/// Reading and decoding the state file (`state::peek`: read + JSON decode).
#[divan::bench(max_time = 3)]
fn state_load(bencher: Bencher) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = warm_state(dir.path());
    bencher.bench(|| match state::peek(&path).expect("readable") {
        Loaded::Ok(state) => state,
        _ => panic!("the state file is valid"),
    });
}

/// Saving the state: JSON encode, write a temp file, fsync, rename, fsync the directory
/// (on the file system of the temp dir; `TMPDIR` chooses it).
#[divan::bench(max_time = 3)]
fn state_save(bencher: Bencher) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = warm_state(dir.path());
    let Loaded::Ok(state) = state::peek(&path).expect("readable") else {
        panic!("the state file is valid");
    };
    let lock = Lock::acquire(&path, Duration::from_secs(1)).expect("lock");
    bencher.bench(|| lock.save(black_box(&state)).expect("saved"));
}

/// An `io::Write` that only counts bytes.
struct Count(usize);

impl Write for Count {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What `hapwatch show --format json` does after the parse: every row as JSON (through an
/// 8 KiB `BufWriter`, into a byte counter instead of stdout).
#[divan::bench(max_time = 3)]
fn show_json(bencher: Bencher) {
    let sources = [Ok(Named {
        name: "bench",
        snapshot: &SNAPSHOT,
    })];
    let scope = Scope::default();
    bencher.bench(|| {
        let mut out = std::io::BufWriter::new(Count(0));
        report::json(&mut out, &sources, &scope).expect("rendered");
        out.flush().expect("flushed");
        out.get_ref().0
    });
}

/// Labels of a ServerDown alert on server `n` of the synthetic dump.
fn history_labels(n: usize) -> hapwatch::alert::Labels {
    [
        ("alertname", "ServerDown".to_string()),
        ("proxy", format!("be{}", n / 5)),
        ("server", format!("srv{}", n % 5)),
        ("severity", "critical".to_string()),
        ("source", "lb1".to_string()),
        ("type", "server".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// A state with `n` firing alerts, and the engine's transitions for them: new and firing
/// (`changed`), or staying firing.
fn history_run(n: usize, changed: bool) -> (State, Vec<hapwatch::alert::Labels>) {
    let mut state = State::new();
    let labels: Vec<_> = (0..n).map(history_labels).collect();
    for l in &labels {
        state.alerts.insert(
            hapwatch::alert::Fingerprint::of(l).to_string(),
            state::AlertState {
                labels: l.clone(),
                annotations: [(
                    "summary".to_string(),
                    format!("{}/{} is DOWN", l["proxy"], l["server"]),
                )]
                .into(),
                value: Some(hapwatch::alert::Value::Text("down".into())),
                status: state::Status::Firing,
                active_since: 1000.0,
                firing_since: Some(1000.0),
                last_seen: 1000.0,
                runs: if changed { 1 } else { 5 },
                notified_at: Some(1000.0),
                resolved_at: None,
                thread: None,
                threads: Default::default(),
                silenced: false,
                routes_notified: Default::default(),
                inhibited_by: None,
            },
        );
    }
    (state, labels)
}

/// What a run's history hook costs: the lines of its transitions, and their append (a
/// fresh file in a temp directory for each sample). `0`: 12,000 alerts that stay firing
/// (no line, no I/O); `100`: 100 alerts that start firing (100 lines, one append).
#[divan::bench(args = [0, 100], max_time = 3)]
fn history_append(bencher: Bencher, transitions: usize) {
    use hapwatch::history::{self, History, Move};
    let dir = tempfile::tempdir().expect("temp dir");
    let history = History {
        path: dir.path().join("state.history.jsonl"),
        max_age: 35.0 * 86_400.0,
        max_size: 64 << 20,
    };
    let (n, changed) = if transitions == 0 {
        (12_000, false)
    } else {
        (transitions, true)
    };
    let (state, labels) = history_run(n, changed);
    let mut counter = 0u64;
    bencher
        .with_inputs(|| {
            counter += 1;
            let _ = std::fs::remove_file(&history.path);
            (state.clone(), counter)
        })
        .bench_local_values(|(mut state, _)| {
            let moves: Vec<Move<'_>> = labels
                .iter()
                .map(|l| Move {
                    labels: l,
                    from: (!changed).then_some(state::Status::Firing),
                    to: Some(state::Status::Firing),
                    silenced: false,
                })
                .collect();
            let records = history::records(&mut state, &Default::default(), &moves, &[], 2000.0);
            history.append(&records, 2000.0).expect("append");
            black_box(records.len());
            // Returned, so that dropping the state (12,000 alerts) is not timed.
            state
        });
}

/// A 30-day history of a 12,001-row HAProxy (2,000 backends × 5 servers) with 400
/// incidents on random servers (pending, firing, delivered, resolved, delivered: five
/// lines each), written to a file as `run` writes it.
fn month_of_history(dir: &Path) -> std::path::PathBuf {
    use hapwatch::history::{self, History, Move};
    let history = History {
        path: dir.join("state.history.jsonl"),
        max_age: 35.0 * 86_400.0,
        max_size: 64 << 20,
    };
    let start = 1_764_547_200.0; // 2025-12-01
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut events: Vec<(f64, usize, bool)> = Vec::new();
    for _ in 0..400 {
        let server = (next() % 10_000) as usize;
        let at = start + (next() % (30 * 86_400)) as f64;
        let lasts = 60.0 * (1 + next() % 120) as f64;
        events.push((at, server, true));
        events.push((at + lasts, server, false));
    }
    events.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut state = State::new();
    for (at, server, down) in events {
        let labels = history_labels(server);
        let fingerprint = hapwatch::alert::Fingerprint::of(&labels).to_string();
        let (alert, _) = history_run(1, true);
        let mut entry = alert.alerts.into_values().next().expect("one alert");
        entry.labels = labels.clone();
        entry.active_since = at;
        entry.status = if down {
            state::Status::Firing
        } else {
            state::Status::Resolved
        };
        state.alerts.insert(fingerprint, entry);
        let moves = [Move {
            labels: &labels,
            from: (!down).then_some(state::Status::Firing),
            to: Some(if down {
                state::Status::Firing
            } else {
                state::Status::Resolved
            }),
            silenced: false,
        }];
        let records = history::records(&mut state, &Default::default(), &moves, &[], at);
        history.append(&records, at).expect("append");
    }
    history.path
}

/// `hapwatch report` over a 30-day history (see [`month_of_history`]): read, incidents,
/// figures, and the HTML page.
#[divan::bench(max_time = 5)]
fn report_month(bencher: Bencher) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = month_of_history(dir.path());
    let until = 1_764_547_200.0 + 30.0 * 86_400.0;
    bencher.bench_local(|| {
        let read = hapwatch::history::read(&path, f64::MIN, until).expect("read");
        let incidents = hapwatch::history::incidents(&read.records);
        let recap =
            hapwatch::recap::Recap::new(incidents, until - 30.0 * 86_400.0, until, read.skipped);
        black_box(hapwatch::recap::html::page(&recap, until).len())
    });
}
