//! In-process benchmark of `Stats::parse` on a big `show stat` dump (no dev-dependencies).
//!
//! `cargo bench --bench parse` (or `benches/show.sh`, which runs it on a live capture).
//!
//! Input: the file named by `HAPWATCH_BENCH_DUMP` (a raw `show info;show stat` reply or
//! plain `show stat` CSV); when unset, a synthetic 2,000 backends x 5 servers dump built
//! from the real HAProxy 2.6.12 rows in tests/fixtures/haproxy-2.6/show-stat.csv.
//!
//! Times are **wall time** (`std::time::Instant`) of single-threaded work on an otherwise
//! idle machine; the setup of each iteration (cloning the input, dropping the result) is
//! outside the timed region. Heap numbers come from a counting global allocator. This
//! prints numbers and asserts nothing about them.

use hapwatch::report::{self, Named};
use hapwatch::scope::Scope;
use hapwatch::stats::{Info, Snapshot, Stats};
use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// The real header and rows the synthetic dump is made of.
const FIXTURE: &str = include_str!("../tests/fixtures/haproxy-2.6/show-stat.csv");
const SYNTHETIC_BACKENDS: usize = 2000;

// ---------------------------------------------------------------------------------------
// Heap accounting: current and peak live bytes, and the number of allocations.

struct CountingAlloc;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

fn grew(bytes: usize) {
    let now = LIVE.fetch_add(bytes, Relaxed) + bytes;
    PEAK.fetch_max(now, Relaxed);
}

unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            ALLOCS.fetch_add(1, Relaxed);
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            ALLOCS.fetch_add(1, Relaxed);
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            ALLOCS.fetch_add(1, Relaxed);
            LIVE.fetch_sub(layout.size(), Relaxed);
            grew(new_size);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

// ---------------------------------------------------------------------------------------
// Input.

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

/// The `show info` block in front of the header, if any.
fn info_part(raw: &[u8]) -> Option<String> {
    let stat = stat_part(raw);
    let info = &raw[..raw.len() - stat.len()];
    (!info.iter().all(u8::is_ascii_whitespace)).then(|| String::from_utf8_lossy(info).into())
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

// ---------------------------------------------------------------------------------------
// Timing.

struct Samples(Vec<Duration>);

impl Samples {
    /// Runs `f` (which returns the duration of its timed part) until `budget` is spent
    /// or `max` iterations ran, but at least `min` times.
    fn collect(budget: Duration, min: usize, max: usize, mut f: impl FnMut() -> Duration) -> Self {
        let start = Instant::now();
        let mut v = Vec::with_capacity(max);
        while v.len() < min || (v.len() < max && start.elapsed() < budget) {
            v.push(f());
        }
        v.sort();
        Samples(v)
    }

    fn median(&self) -> Duration {
        self.0[self.0.len() / 2]
    }

    fn min(&self) -> Duration {
        self.0[0]
    }

    fn p90(&self) -> Duration {
        self.0[self.0.len() * 9 / 10]
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn report(label: &str, s: &Samples) {
    println!(
        "{label:<44} median {:8.3} ms   min {:8.3} ms   p90 {:8.3} ms   ({} iterations)",
        ms(s.median()),
        ms(s.min()),
        ms(s.p90()),
        s.0.len()
    );
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

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is accepted and ignored.
    let (source, raw) = match std::env::var_os("HAPWATCH_BENCH_DUMP") {
        Some(path) => {
            let raw = std::fs::read(&path)
                .unwrap_or_else(|e| panic!("HAPWATCH_BENCH_DUMP={}: {e}", path.to_string_lossy()));
            (format!("file {}", path.to_string_lossy()), raw)
        }
        None => (
            format!(
                "synthetic: {SYNTHETIC_BACKENDS} backends x 5 servers from the 2.6.12 rows of tests/fixtures/haproxy-2.6/show-stat.csv (set HAPWATCH_BENCH_DUMP to use a capture)"
            ),
            synthetic(SYNTHETIC_BACKENDS),
        ),
    };
    let info = info_part(&raw);
    let bytes: Vec<u8> = stat_part(&raw).to_vec();
    drop(raw);

    // One untimed parse for the shape of the dump, and as a correctness check.
    let stats = Stats::parse(bytes.clone()).expect("the dump parses");
    let rows = stats.len();
    let quoted = bytes
        .split(|&b| b == b'\n')
        .filter(|l| l.contains(&b'"'))
        .count();
    println!("input: {source}");
    println!(
        "show stat: {} bytes ({:.2} MB), {rows} rows x {} columns, {quoted} lines with quotes{}",
        bytes.len(),
        bytes.len() as f64 / 1e6,
        stats.columns().len(),
        if info.is_some() {
            "; show info block present"
        } else {
            ""
        }
    );
    drop(stats);

    // --- Parse: memory.
    let input = bytes.clone();
    let (live0, allocs0) = (LIVE.load(Relaxed), ALLOCS.load(Relaxed));
    PEAK.store(live0, Relaxed);
    let stats = Stats::parse(input).unwrap();
    let (peak, retained, allocs) = (
        PEAK.load(Relaxed) - live0,
        LIVE.load(Relaxed) - live0,
        ALLOCS.load(Relaxed) - allocs0,
    );
    drop(stats);
    println!(
        "parse heap: peak {:.2} MiB above the input, {:.2} MiB retained by Stats beyond the input ({:.2} MiB input, {} allocations)",
        mib(peak),
        mib(retained),
        mib(bytes.len()),
        allocs
    );

    // --- Parse: time. The very first parse of a process pays for fresh pages; in this
    // loop the allocator reuses them, so the first sample is reported separately.
    println!();
    println!("wall time per operation (std::time::Instant, single thread):");
    let timed_parse = || {
        let input = bytes.clone();
        let t = Instant::now();
        let stats = Stats::parse(black_box(input)).unwrap();
        let elapsed = t.elapsed();
        black_box(&stats);
        drop(stats);
        elapsed
    };
    let first = timed_parse;
    let cold = first();
    let parse = Samples::collect(Duration::from_secs(4), 20, 2000, timed_parse);
    println!(
        "{:<44} {:8.3} ms   (the first parse in this process)",
        "Stats::parse, first call",
        ms(cold)
    );
    report("Stats::parse", &parse);
    let med = parse.median().as_secs_f64();
    println!(
        "{:<44} {:8.2} M rows/s, {:.0} MB/s (at the median)",
        "  throughput",
        rows as f64 / med / 1e6,
        bytes.len() as f64 / med / 1e6
    );
    let clone = Samples::collect(Duration::from_secs(1), 20, 500, || {
        let t = Instant::now();
        let copy = black_box(bytes.clone());
        let elapsed = t.elapsed();
        drop(copy);
        elapsed
    });
    report("  for scale: bytes.clone() of the input", &clone);

    // --- Row access.
    let stats = Stats::parse(bytes.clone()).unwrap();
    let cols = stats.columns();
    let [scur, slim, status, check] =
        ["scur", "slim", "status", "check_status"].map(|name| cols.get(name).expect(name));
    let raw4 = Samples::collect(Duration::from_secs(1), 20, 5000, || {
        let t = Instant::now();
        let mut n = 0usize;
        for row in stats.rows() {
            n += row.raw(scur).len() + row.raw(slim).len();
            n += row.raw(status).len() + row.raw(check).len();
        }
        let elapsed = t.elapsed();
        black_box(n);
        elapsed
    });
    report("rows: 4 columns as &str (Row::raw)", &raw4);
    let typed = Samples::collect(Duration::from_secs(1), 20, 5000, || {
        let t = Instant::now();
        let mut n = 0u64;
        for row in stats.rows() {
            n += row.u64(scur).unwrap_or(0) + row.u64(slim).unwrap_or(0);
            n += row.state() as u64 + row.get(check).map_or(0, |s| s.len() as u64);
        }
        let elapsed = t.elapsed();
        black_box(n);
        elapsed
    });
    report("rows: scur/slim as u64, state, check_status", &typed);
    let by_name = Samples::collect(Duration::from_secs(1), 20, 2000, || {
        let t = Instant::now();
        let mut n = 0usize;
        for row in stats.rows() {
            for name in ["scur", "slim", "status", "check_status"] {
                n += row.by_name(name).map_or(0, str::len);
            }
        }
        let elapsed = t.elapsed();
        black_box(n);
        elapsed
    });
    report("rows: 4 columns via Row::by_name", &by_name);
    println!(
        "{:<44} {:8.1} ns/row for 4 raw fields",
        "  per row",
        raw4.median().as_secs_f64() * 1e9 / rows as f64
    );

    // --- What `show --format json` does after the parse: render every row.
    let snapshot = Snapshot {
        info: info.as_deref().map(Info::parse),
        stats,
    };
    let sources = [Ok(Named {
        name: "big",
        snapshot: &snapshot,
    })];
    let scope = Scope::default();
    let mut json_bytes = 0;
    // Like `hapwatch show`: an 8 KiB BufWriter in front of the output (here a byte counter
    // instead of stdout, so no syscalls and no LineWriter scan are included).
    let mut render = || {
        let mut out = std::io::BufWriter::new(Count(0));
        let t = Instant::now();
        report::json(&mut out, &sources, &scope).unwrap();
        out.flush().unwrap();
        let elapsed = t.elapsed();
        json_bytes = out.get_ref().0;
        elapsed
    };
    let cold = render();
    let json = Samples::collect(Duration::from_secs(4), 10, 500, render);
    println!(
        "{:<44} {:8.3} ms   (the first render in this process)",
        "report::json, first call",
        ms(cold)
    );
    report("report::json of all rows (BufWriter, no I/O)", &json);
    println!(
        "{:<44} {:8.2} MB of JSON, {:.0} MB/s",
        "  output",
        json_bytes as f64 / 1e6,
        json_bytes as f64 / json.median().as_secs_f64() / 1e6
    );

    // --- Rule evaluation: the default rules (config/rules.toml) over every row, with a
    // previous sample of the same dump 60 s earlier, as a warm `hapwatch run` does; plus
    // capturing the sample the next run needs.
    let config = hapwatch::config::Config::parse(
        &format!(
            "include = [{:?}]\n",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config/rules.toml")
        ),
        std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/bench.toml")),
        true,
    )
    .expect("the default rules compile");
    let previous = config.rules.sample(&snapshot, 1000.0);
    let mut alerts = 0;
    let evaluate = || {
        let t = Instant::now();
        let found = config.rules.evaluate(
            &hapwatch::rules::Input {
                source: "bench",
                snapshot: &snapshot,
                previous: Some(&previous),
                now: 1060.0,
            },
            None,
        );
        let elapsed = t.elapsed();
        alerts = found.len();
        elapsed
    };
    let eval = Samples::collect(Duration::from_secs(3), 10, 500, evaluate);
    report("default rules evaluated over all rows", &eval);
    println!("{:<44} {:8} alerts", "  matches", alerts);
    let capture = Samples::collect(Duration::from_secs(2), 10, 500, || {
        let t = Instant::now();
        let sample = config.rules.sample(&snapshot, 1120.0);
        let elapsed = t.elapsed();
        drop(sample);
        elapsed
    });
    report("sample capture (delta/rate columns)", &capture);
}
