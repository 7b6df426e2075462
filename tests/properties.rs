//! Property tests (proptest, stable Rust) for every input hapwatch does not control: the
//! `show stat` dump and its framing, rule expressions and the values they meet, the state
//! file, the config, and templates. Each property says what must hold for *any* input, and
//! proptest throws generated and mutated inputs at it, shrinking a failure to a minimal case.
//!
//! Case counts are bounded so that the whole file runs in well under a minute on a
//! 2-core machine (see `docs/reliability.md` for counts and timings). `PROPTEST_CASES=N`
//! sets every property's count instead, e.g. `PROPTEST_CASES=5000 cargo test --test
//! properties` for a longer soak. Seeds are random per run; a failure prints its seed and
//! is saved under `tests/properties.proptest-regressions`, which replays it first on the
//! next run (commit that file along with the fix). `PROPTEST_RNG_SEED=N` fixes the seed.
//!
//! Bugs these properties found in `src/` are pinned as regular tests at the end of this
//! file (with their minimal inputs); the properties tolerate none of them.

mod common;

use hapwatch::config::{Config, ConfigError, Endpoint, SourceConfig};
use hapwatch::rules::eval::{self, Env, Previous, Val};
use hapwatch::rules::expr::{self, Arith, Cmp, Expr};
use hapwatch::rules::sample::{increase, Sample};
use hapwatch::rules::Input;
use hapwatch::state::{Loaded, Lock};
use hapwatch::stats::{columns, Info, Row, Snapshot, Stats};
use proptest::prelude::*;
use proptest::sample::{select, Index};
use proptest::test_runner::TestCaseError;
use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

// ---------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------

/// A proptest config running `default` cases, or `PROPTEST_CASES` when set. (Setting
/// `cases` explicitly would otherwise hide proptest's own reading of that variable.)
fn cases(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases,
        // `prop_assume!` keeps about 1 case in 6 where it is used; leave room at any count.
        max_global_rejects: cases.saturating_mul(16).max(1024),
        // A failure is worth a short shrink, not a long one on a shared 2-core machine.
        max_shrink_time: 30_000,
        ..ProptestConfig::default()
    }
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A fixture file: its path under `tests/fixtures` and its bytes.
#[derive(Debug)]
struct Fixture {
    name: String,
    bytes: Vec<u8>,
}

/// Every fixture file (captures, `show info`, typed and JSON output, an HTTP 401 page, the
/// lab's haproxy.cfg), READMEs excepted.
fn fixtures() -> &'static [Fixture] {
    static ALL: OnceLock<Vec<Fixture>> = OnceLock::new();
    ALL.get_or_init(|| {
        fn walk(dir: &Path, out: &mut Vec<Fixture>) {
            let mut entries: Vec<_> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            entries.sort();
            for path in entries {
                if path.is_dir() {
                    walk(&path, out);
                } else if path.file_name().is_some_and(|n| n != "README.md") {
                    out.push(Fixture {
                        name: path
                            .strip_prefix(common::fixture(""))
                            .unwrap()
                            .display()
                            .to_string(),
                        bytes: std::fs::read(&path).unwrap(),
                    });
                }
            }
        }
        let mut all = Vec::new();
        walk(&common::fixture("haproxy-2.6"), &mut all);
        walk(&common::fixture("public"), &mut all);
        assert!(all.len() >= 30, "fixtures went missing: {}", all.len());
        all
    })
}

/// Names the fixture a failure started from.
fn in_fixture(fixture: &Fixture, e: TestCaseError) -> TestCaseError {
    TestCaseError::fail(format!("{}: {e}", fixture.name))
}

/// The fixtures that are valid `show stat` dumps with rows (the truncation baseline).
fn dumps() -> &'static [&'static Fixture] {
    static DUMPS: OnceLock<Vec<&'static Fixture>> = OnceLock::new();
    DUMPS.get_or_init(|| {
        let dumps: Vec<_> = fixtures()
            .iter()
            .filter(|f| Stats::parse(f.bytes.clone()).is_ok_and(|s| !s.is_empty()))
            .collect();
        assert!(
            dumps.len() >= 20,
            "valid dumps went missing: {}",
            dumps.len()
        );
        dumps
    })
}

/// Bytes that matter to a CSV / TOML / JSON reader, inserted by [`Mutation::Insert`].
const SNIPPETS: &[&str] = &[
    "\"",
    "\"\"",
    ",",
    ",,",
    "\n",
    "\r\n",
    "\r",
    "\n\n",
    "#",
    "# pxname,svname,\n",
    " ",
    "\t",
    "é",
    "\u{feff}",
    "\0",
    "-1",
    "18446744073709551615",
    "18446744073709551616",
    "\"a,b\"",
    "\"x\ny\"",
    "Name: HAProxy\n",
    "'",
    "'''",
    "\"\"\"",
    "[",
    "]",
    "[[",
    "]]",
    "{",
    "}",
    "=",
    " = 1",
    "\\",
    "\\\"",
    "\\u00e9",
    "\\n",
    ":",
    "null",
    "1e999",
    "-",
    ".",
];

/// One edit of a byte string. Positions are [`Index`]es, resolved against the length at
/// the time the edit applies, so that a sequence of edits always applies.
#[derive(Debug, Clone)]
enum Mutation {
    FlipBit(Index, u8),
    SetByte(Index, u8),
    Insert(Index, Vec<u8>),
    /// Inserts just before a line's break (after HAProxy's trailing `,`).
    InsertAtLineEnd(Index, Vec<u8>),
    Delete(Index, usize),
    Truncate(Index),
    DuplicateLine(Index),
    DeleteLine(Index),
    SwapLines(Index, Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let snippet = prop_oneof![
        3 => select(SNIPPETS).prop_map(|s| s.as_bytes().to_vec()),
        1 => prop::collection::vec(any::<u8>(), 1..4),
    ];
    prop_oneof![
        2 => (any::<Index>(), 0u8..8).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        1 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::SetByte(i, b)),
        4 => (any::<Index>(), snippet.clone()).prop_map(|(i, s)| Mutation::Insert(i, s)),
        1 => (any::<Index>(), snippet).prop_map(|(i, s)| Mutation::InsertAtLineEnd(i, s)),
        2 => (any::<Index>(), 1usize..24).prop_map(|(i, n)| Mutation::Delete(i, n)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
        1 => any::<Index>().prop_map(Mutation::DuplicateLine),
        1 => any::<Index>().prop_map(Mutation::DeleteLine),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
    ]
}

/// Byte ranges of the lines of `bytes`, each with its `\n`.
fn line_ranges(bytes: &[u8]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'\n' {
            out.push(start..i + 1);
            start = i + 1;
        }
    }
    if start < bytes.len() {
        out.push(start..bytes.len());
    }
    out
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    let len = bytes.len();
    match m {
        Mutation::Insert(at, snippet) => {
            let at = if len == 0 { 0 } else { at.index(len + 1) };
            bytes.splice(at..at, snippet.iter().copied());
        }
        _ if len == 0 => {}
        Mutation::FlipBit(at, bit) => bytes[at.index(len)] ^= 1 << bit,
        Mutation::SetByte(at, b) => bytes[at.index(len)] = *b,
        Mutation::Delete(at, n) => {
            let at = at.index(len);
            bytes.drain(at..(at + n).min(len));
        }
        Mutation::Truncate(at) => bytes.truncate(at.index(len)),
        Mutation::InsertAtLineEnd(at, snippet) => {
            let lines = line_ranges(bytes);
            let line = &lines[at.index(lines.len())];
            let mut end = line.end;
            while end > line.start && matches!(bytes[end - 1], b'\n' | b'\r') {
                end -= 1;
            }
            bytes.splice(end..end, snippet.iter().copied());
        }
        Mutation::DuplicateLine(at) => {
            let lines = line_ranges(bytes);
            let line = lines[at.index(lines.len())].clone();
            let copy = bytes[line.clone()].to_vec();
            bytes.splice(line.end..line.end, copy);
        }
        Mutation::DeleteLine(at) => {
            let lines = line_ranges(bytes);
            bytes.drain(lines[at.index(lines.len())].clone());
        }
        Mutation::SwapLines(a, b) => {
            let lines = line_ranges(bytes);
            let (a, b) = (a.index(lines.len()), b.index(lines.len()));
            let (a, b) = (a.min(b), a.max(b));
            if a != b {
                let (ra, rb) = (lines[a].clone(), lines[b].clone());
                let mut out = bytes[..ra.start].to_vec();
                out.extend_from_slice(&bytes[rb.clone()]);
                out.extend_from_slice(&bytes[ra.end..rb.start]);
                out.extend_from_slice(&bytes[ra]);
                out.extend_from_slice(&bytes[rb.end..]);
                *bytes = out;
            }
        }
    }
}

fn mutated(original: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut bytes = original.to_vec();
    for m in mutations {
        apply(&mut bytes, m);
    }
    bytes
}

// ---------------------------------------------------------------------------------------
// 1. The `show stat` parser and the framing of replies
// ---------------------------------------------------------------------------------------

/// What every snapshot the parser returns must satisfy, whatever it was fed.
///
/// - every row has exactly one field per column, and `raw(c)` works for each;
/// - the typed accessors never panic;
/// - for a row without quotes (read by the fast path), the fields joined by `,` give back
///   the row's line exactly, plus HAProxy's trailing `,` when the header has one: no byte
///   of the line is lost or invented.
fn check_stats(stats: &Stats) -> Result<(), TestCaseError> {
    let columns = stats.columns();
    let n = columns.len();
    prop_assert!(n >= 2, "a snapshot without pxname/svname: {n} columns");
    prop_assert_eq!(columns.names().len(), n);
    let pxname = columns.get("pxname").expect("required column");
    let svname = columns.get("svname").expect("required column");
    let header = stats.header_line();
    let trailing_comma = header.ends_with(',') && header.matches(',').count() > 1;
    prop_assert_eq!(stats.rows().len(), stats.len());
    for row in stats.rows() {
        let fields: Vec<&str> = (0..n).map(|c| row.raw(c)).collect();
        for c in 0..n {
            let _ = (row.get(c), row.u64(c), row.i64(c), columns.is_separator(c));
        }
        let _ = (row.kind(), row.state(), row.status(), format!("{row:?}"));
        prop_assert_eq!(row.proxy(), fields[pxname]);
        prop_assert_eq!(row.name(), fields[svname]);
        for name in columns.names() {
            prop_assert_eq!(row.by_name(name), row.get(columns.get(name).unwrap()));
        }
        let line = row.line();
        if !line.contains('"') {
            let mut joined = fields.join(",");
            if trailing_comma {
                joined.push(',');
            }
            prop_assert_eq!(
                &joined,
                line,
                "row {} lost or invented bytes: fields {:?}",
                row.index(),
                fields
            );
        }
    }
    Ok(())
}

/// `source::fetch` of a captured file (the framing of a `show info;show stat` capture
/// without the runtime API's terminators).
fn fetch_file(path: &Path) -> Result<Snapshot, hapwatch::source::SourceError> {
    hapwatch::source::fetch(&SourceConfig {
        name: "prop".into(),
        endpoint: Endpoint::File(path.to_path_buf()),
        timeout: Duration::from_secs(5),
        labels: Default::default(),
        line: 1,
        file: None,
    })
}

/// `source::fetch` over the runtime API from a one-shot fake HAProxy on a unix socket that
/// reads the query line, answers `reply` and closes.
fn fetch_runtime(reply: Vec<u8>) -> Result<Snapshot, hapwatch::source::SourceError> {
    let dir = common::temp_dir();
    let path = dir.path().join("rt.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut query = Vec::new();
        let mut byte = [0u8];
        while stream.read(&mut byte).unwrap_or(0) == 1 {
            query.push(byte[0]);
            if byte[0] == b'\n' {
                break;
            }
        }
        let _ = stream.write_all(&reply);
        query
    });
    let result = hapwatch::source::fetch(&SourceConfig {
        name: "prop".into(),
        endpoint: Endpoint::Socket(path),
        timeout: Duration::from_secs(10),
        labels: Default::default(),
        line: 1,
        file: None,
    });
    let query = server.join().unwrap();
    assert_eq!(query, common::QUERY, "hapwatch sent something else");
    result
}

/// Random text over the bytes that matter to the CSV reader, after a plausible header.
fn csv_like() -> impl Strategy<Value = Vec<u8>> {
    let header = prop_oneof![
        Just("# pxname,svname,status,\n"),
        Just("# pxname,svname,status\n"),
        Just("# pxname,svname,qcur,scur,status,type,check_status,\n"),
        Just("#pxname,svname,svname,\n"),
        Just("\n\r\n# pxname,svname,\r\n"),
        Just(""),
    ];
    let piece = select(
        &[
            "a", "b", "FRONTEND", "UP", "1", "-1", ",", ",", ",", "\"", "\"\"", "\n", "\r\n", " ",
            "#", "é", "\u{fffd}", "\t", "\r",
        ][..],
    );
    (header, prop::collection::vec(piece, 0..120)).prop_map(|(h, pieces)| {
        let mut out = h.as_bytes().to_vec();
        for p in pieces {
            out.extend_from_slice(p.as_bytes());
        }
        out
    })
}

proptest! {
    #![proptest_config(cases(2048))]

    /// Arbitrary bytes: a snapshot that holds together, or an error; never a panic.
    #[test]
    fn stats_parser_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        if let Ok(stats) = Stats::parse(bytes) {
            check_stats(&stats)?;
        }
    }

    /// CSV-shaped noise (quotes, commas, CR/LF, `#`) after a header, which reaches the
    /// quoted-field reader and the field counter far more often than arbitrary bytes.
    #[test]
    fn stats_parser_on_csv_like_noise(bytes in csv_like()) {
        match Stats::parse(bytes) {
            Ok(stats) => check_stats(&stats)?,
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    /// Every fixture file with 1–8 random edits (bit flips, inserted quotes, commas, line
    /// breaks and bytes, deletions, truncation, duplicated, deleted and swapped lines).
    #[test]
    fn stats_parser_on_mutated_captures(
        which in any::<Index>(),
        edits in prop::collection::vec(mutation(), 1..8),
    ) {
        let fixture = &fixtures()[which.index(fixtures().len())];
        let bytes = mutated(&fixture.bytes, &edits);
        match Stats::parse(bytes) {
            Ok(stats) => check_stats(&stats).map_err(|e| in_fixture(fixture, e))?,
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    /// A valid dump cut anywhere: an error, or — only when the cut falls between two rows
    /// (or in the blank space after one) — exactly the rows before the cut, each identical
    /// to the full dump's. Never a row with wrong fields.
    #[test]
    fn truncated_dump_errors_or_yields_exactly_the_complete_rows(
        which in any::<Index>(),
        cut in any::<Index>(),
    ) {
        let fixture = dumps()[which.index(dumps().len())];
        let full = Stats::parse(fixture.bytes.clone()).unwrap();
        let cut = cut.index(fixture.bytes.len());
        let prefix = &fixture.bytes[..cut];
        // Where each complete row ends in the dump (its line, without the line break).
        let text = std::str::from_utf8(&fixture.bytes).unwrap();
        let mut at = 0;
        let ends: Vec<usize> = full
            .rows()
            .map(|row| {
                let start = at + text[at..].find(row.line()).unwrap();
                at = start + row.line().len();
                at
            })
            .collect();
        let complete = ends.iter().filter(|&&end| end <= cut).count();
        match Stats::parse(prefix.to_vec()) {
            Err(_) => {}
            Ok(part) => {
                check_stats(&part).map_err(|e| in_fixture(fixture, e))?;
                prop_assert_eq!(part.len(), complete, "cut at {}", cut);
                if complete > 0 {
                    prop_assert_eq!(part.columns().names(), full.columns().names());
                    let after = &prefix[ends[complete - 1]..];
                    prop_assert!(
                        after.iter().all(u8::is_ascii_whitespace),
                        "accepted a cut inside row {}: {:?}",
                        complete,
                        String::from_utf8_lossy(after)
                    );
                }
                for (row, whole) in part.rows().zip(full.rows()) {
                    for c in 0..full.columns().len() {
                        prop_assert_eq!(row.raw(c), whole.raw(c), "row {} column {}", row.index(), c);
                    }
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(cases(512))]

    /// A file source holding a mutated capture (CSV, or `show info` + CSV): a snapshot
    /// that holds together, or an error that names the file.
    #[test]
    fn file_source_on_mutated_captures(
        which in any::<Index>(),
        edits in prop::collection::vec(mutation(), 0..6),
    ) {
        let fixture = &fixtures()[which.index(fixtures().len())];
        let dir = common::temp_dir();
        let path = dir.path().join("capture.txt");
        std::fs::write(&path, mutated(&fixture.bytes, &edits)).unwrap();
        match fetch_file(&path) {
            Ok(snapshot) => check_stats(&snapshot.stats).map_err(|e| in_fixture(fixture, e))?,
            Err(e) => {
                let message = e.to_string();
                prop_assert!(message.contains(&path.display().to_string()), "{}", message);
            }
        }
    }
}

proptest! {
    #![proptest_config(cases(256))]

    /// The runtime API reply (`show info;show stat`, each block ending with an empty line)
    /// cut anywhere: rejected unless it is whole, so a cut connection is never a snapshot.
    #[test]
    fn runtime_reply_cut_anywhere_is_rejected(cut in any::<Index>()) {
        let full = &common::fixture_bytes("haproxy-2.6/show-info-and-stat.txt");
        let cut = cut.index(full.len());
        let result = fetch_runtime(full[..cut].to_vec());
        prop_assert!(result.is_err(), "a reply cut at {}/{} was accepted", cut, full.len());
        let message = result.unwrap_err().to_string();
        prop_assert!(
            ["truncated reply", "empty reply", "unexpected reply"].iter().any(|m| message.contains(m)),
            "{}", message
        );
    }

    /// A mutated runtime reply: a snapshot that holds together only if the reply still
    /// ends with HAProxy's empty line, or an error; never a panic.
    #[test]
    fn runtime_reply_mutated(edits in prop::collection::vec(mutation(), 1..6)) {
        let full = common::fixture_bytes("haproxy-2.6/show-info-and-stat.txt");
        let reply = mutated(&full, &edits);
        let ends_framed = lf_only(&reply).ends_with(b"\n\n");
        match fetch_runtime(reply) {
            Ok(snapshot) => {
                prop_assert!(ends_framed, "accepted a reply without its final empty line");
                check_stats(&snapshot.stats)?;
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }
}

/// `bytes` with CRLF line ends read as LF, as the runtime reader does (a relay that
/// translates line ends frames the reply with `\r\n\r\n`).
fn lf_only(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\r' && bytes.get(i + 1) == Some(&b'\n') {
            i += 1;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// A CR before the last line end (a mutation proptest found once): the reply still ends
/// with its empty line once CRLF is read as LF, and is accepted whole.
#[test]
fn a_reply_whose_last_line_end_is_crlf_is_framed() {
    let mut reply = common::fixture_bytes("haproxy-2.6/show-info-and-stat.txt");
    assert!(reply.ends_with(b"\n\n"));
    reply.insert(reply.len() - 1, b'\r');
    let whole = fetch_runtime(common::fixture_bytes("haproxy-2.6/show-info-and-stat.txt")).unwrap();
    let snapshot = fetch_runtime(reply).unwrap();
    assert_eq!(snapshot.stats.len(), whole.stats.len());
}

#[test]
fn the_whole_runtime_reply_is_accepted() {
    let full = common::fixture_bytes("haproxy-2.6/show-info-and-stat.txt");
    let snapshot = fetch_runtime(full).unwrap();
    assert!(snapshot.info.is_some());
    assert!(snapshot.stats.len() > 5);
}

// ---------------------------------------------------------------------------------------
// 2. Rule expressions: the compiler and the evaluator
// ---------------------------------------------------------------------------------------

/// Numeric columns rules use, including the signed `lastsess` and the `rate` column (also
/// a function name).
const NUM_COLS: &[&str] = &[
    "stot",
    "scur",
    "slim",
    "qcur",
    "lastsess",
    "rate",
    "hrsp_5xx",
    "req_tot",
    "bin",
    "bout",
    "chkdown",
    "lastchg",
    "downtime",
    "weight",
    "check_duration",
    "qtime",
    "econ",
];
/// Text columns (`check_status` loses HAProxy's `* ` prefix when read by a rule).
const TEXT_COLS: &[&str] = &["status", "check_status", "addr", "mode"];
/// Names that are not columns.
const SPECIALS: &[&str] = &["state", "proxy", "server", "kind", "source"];
/// Number literals, durations included, at the edges of f64 and u64.
const NUM_LITS: &[&str] = &[
    "0",
    "1",
    "2",
    "0.5",
    "0.05",
    ".5",
    "1e308",
    "1.7976931348623157e308",
    "18446744073709551615",
    "18446744073709551616",
    "9007199254740993",
    "1_000",
    "5m",
    "1h30m",
    "90s",
    "250ms",
    "1d",
    "4294967296",
    "0.000001",
    "100000000000000000000000",
];
const CMP_OPS: &[&str] = &["==", "!=", "<", "<=", ">", ">="];
const ARITH_OPS: &[&str] = &["+", "-", "*", "/", "%"];

/// A text literal of the expression language (`"…"` with `\` escapes); no `'` and no line
/// break, so that it also fits in a TOML `'''…'''` string.
fn text_literal() -> impl Strategy<Value = String> {
    prop::collection::vec(
        select(
            &[
                "a", "UP", "DOWN", "*", "?", " ", "\"", "\\", "é", "[", "-", "1",
            ][..],
        ),
        0..5,
    )
    .prop_map(|parts| {
        let body: String = parts.concat();
        format!("\"{}\"", body.replace('\\', "\\\\").replace('"', "\\\""))
    })
}

fn maybe_paren(text: String, paren: bool) -> String {
    if paren {
        format!("({text})")
    } else {
        text
    }
}

/// A well-typed numeric expression of nesting depth at most `depth`.
fn num_expr(depth: u32) -> BoxedStrategy<String> {
    let leaf = prop_oneof![
        select(NUM_LITS).prop_map(str::to_string),
        select(NUM_COLS).prop_map(str::to_string),
        (select(&["delta", "rate"][..]), select(NUM_COLS)).prop_map(|(f, c)| format!("{f}({c})")),
    ]
    .boxed();
    if depth == 0 {
        return leaf;
    }
    let sub = num_expr(depth - 1);
    prop_oneof![
        3 => leaf,
        4 => (sub.clone(), select(ARITH_OPS), sub.clone(), any::<bool>())
            .prop_map(|(a, op, b, p)| maybe_paren(format!("{a} {op} {b}"), p)),
        1 => sub.clone().prop_map(|a| format!("-{a}")),
        1 => sub.clone().prop_map(|a| format!("abs({a})")),
        1 => (select(&["min", "max"][..]), sub.clone(), sub)
            .prop_map(|(f, a, b)| format!("{f}({a}, {b})")),
    ]
    .boxed()
}

fn text_expr() -> BoxedStrategy<String> {
    prop_oneof![
        select(TEXT_COLS).prop_map(str::to_string),
        select(SPECIALS).prop_map(str::to_string),
        text_literal(),
    ]
    .boxed()
}

/// A well-typed condition of nesting depth at most `depth`.
fn bool_expr(depth: u32) -> BoxedStrategy<String> {
    let all_cols: Vec<&'static str> = NUM_COLS.iter().chain(TEXT_COLS).copied().collect();
    let leaf = prop_oneof![
        6 => (num_expr(2), select(CMP_OPS), num_expr(2))
            .prop_map(|(a, op, b)| format!("{a} {op} {b}")),
        2 => (text_expr(), select(&["==", "!="][..]), text_expr())
            .prop_map(|(a, op, b)| format!("{a} {op} {b}")),
        2 => (text_expr(), select(&["~", "!~"][..]), text_literal())
            .prop_map(|(a, op, b)| format!("{a} {op} {b}")),
        1 => select(all_cols).prop_map(|c| format!("exists({c})")),
        1 => select(&["true", "false"][..]).prop_map(str::to_string),
    ]
    .boxed();
    if depth == 0 {
        return leaf;
    }
    let sub = bool_expr(depth - 1);
    prop_oneof![
        2 => leaf,
        2 => (sub.clone(), select(&["and", "or"][..]), sub.clone(), any::<bool>())
            .prop_map(|(a, op, b, p)| maybe_paren(format!("{a} {op} {b}"), p)),
        1 => sub.prop_map(|a| format!("not ({a})")),
    ]
    .boxed()
}

/// Tokens of the language and a few that are not, for token soup.
const TOKENS: &[&str] = &[
    "scur", "stot", "status", "state", "rate", "delta", "exists", "abs", "min", "max", "(", ")",
    ",", "and", "or", "not", "==", "!=", "<", "<=", ">", ">=", "~", "!~", "+", "-", "*", "/", "%",
    "1", "0", "5m", "1e308", "\"UP\"", "'x'", "\"", "'", "\\", "&&", "||", "!", "=", "é", "1x",
    "..5", "true", "nope", "_", "\u{200b}", "\t",
];

/// A compile error must point into the text, at a character boundary.
fn check_expr_error(text: &str, e: &expr::ExprError) -> Result<(), TestCaseError> {
    prop_assert!(
        e.offset <= text.len(),
        "offset {} past the end of {:?}",
        e.offset,
        text
    );
    prop_assert!(
        text.is_char_boundary(e.offset),
        "offset {} inside a character of {:?}",
        e.offset,
        text
    );
    prop_assert!(!e.message.is_empty());
    Ok(())
}

fn compile_both(text: &str) -> Result<(), TestCaseError> {
    if let Err(e) = expr::compile(text, &mut Vec::<String>::new()) {
        check_expr_error(text, &e)?;
    }
    if let Err(e) = expr::compile_condition(text, &mut Vec::<String>::new()) {
        check_expr_error(text, &e)?;
    }
    Ok(())
}

// --- Dumps with extreme values ---------------------------------------------------------

/// Field values at the edges: u64::MAX, negatives, non-numbers, non-finite spellings.
const EXTREMES: &[&str] = &[
    "",
    "0",
    "1",
    "-1",
    "18446744073709551615",
    "18446744073709551614",
    "9223372036854775807",
    "-9223372036854775808",
    "1e308",
    "-1e308",
    "1e309",
    "NaN",
    "inf",
    "-inf",
    "1.5",
    "-0",
    "abc",
    "007",
    "+5",
    " 5",
    "0.0000001",
];
const STATUSES: &[&str] = &[
    "UP", "DOWN", "MAINT", "no check", "UP 1/2", "DOWN 1/3", "OPEN", "DRAIN", "", "* L7OK",
];

fn extreme() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => select(EXTREMES).prop_map(str::to_string),
        1 => any::<u64>().prop_map(|n| n.to_string()),
        1 => (u64::MAX - 1000..=u64::MAX).prop_map(|n| n.to_string()),
        1 => any::<i64>().prop_map(|n| n.to_string()),
        1 => any::<f64>().prop_map(|n| n.to_string()),
    ]
}

/// The columns of the generated dumps.
fn dump_columns() -> Vec<&'static str> {
    let mut cols = vec!["pxname", "svname"];
    cols.extend(NUM_COLS);
    cols.extend(TEXT_COLS);
    cols.push("type");
    cols
}

/// One row's fields after pxname/svname, in [`dump_columns`] order.
fn row_values() -> impl Strategy<Value = Vec<String>> {
    (
        prop::collection::vec(extreme(), NUM_COLS.len()),
        select(STATUSES),
        select(&["L4OK", "* L7OK", "", "L4TOUT", "* "][..]),
        select(&["0", "1", "2", "3", "", "9", "-1"][..]),
    )
        .prop_map(|(mut nums, status, check, kind)| {
            nums.extend([
                status.to_string(),
                check.to_string(),
                "10.0.0.1:80".into(),
                "http".into(),
                kind.to_string(),
            ]);
            nums
        })
}

const ROW_NAMES: &[(&str, &str)] = &[
    ("fe-web", "FRONTEND"),
    ("app", "web1"),
    ("app", "web2"),
    ("app", "BACKEND"),
    ("api", "api1"),
];

/// A dump of up to five rows with extreme values, with the trailing comma HAProxy prints.
fn dump_text(rows: &[Vec<String>]) -> String {
    let mut out = format!("# {},\n", dump_columns().join(","));
    for (values, (proxy, server)) in rows.iter().zip(ROW_NAMES) {
        out.push_str(&format!("{proxy},{server},{},\n", values.join(",")));
    }
    out
}

/// `show info` with a Pid and start time.
fn info_text(pid: u64, start: u64) -> String {
    format!("Name: HAProxy\nPid: {pid}\nStart_time_sec: {start}\n")
}

/// A current dump, a previous one (maybe from another process), and the interval.
#[derive(Debug, Clone)]
struct Pair {
    current: Vec<Vec<String>>,
    previous: Vec<Vec<String>>,
    pids: (u64, u64),
    /// Seconds between the two dumps: 0, negative (clock stepped back), tiny, huge.
    interval: f64,
}

fn pair() -> impl Strategy<Value = Pair> {
    (
        prop::collection::vec(row_values(), 1..=ROW_NAMES.len()),
        prop::collection::vec(row_values(), 0..=ROW_NAMES.len()),
        prop_oneof![Just((7, 7)), Just((7, 8)), (1u64..4, 1u64..4)],
        prop_oneof![
            Just(60.0),
            Just(0.0),
            Just(-60.0),
            Just(0.001),
            Just(1e-6),
            Just(1e9),
            0.0f64..86_400.0,
        ],
    )
        .prop_map(|(current, previous, pids, interval)| Pair {
            current,
            previous,
            pids,
            interval,
        })
}

/// A generated dump with `show info` of process `pid`.
fn snapshot_of(rows: &[Vec<String>], pid: u64) -> Snapshot {
    Snapshot {
        info: Some(Info::parse(&info_text(pid, 1_700_000_000))),
        stats: Stats::parse(dump_text(rows).into_bytes()).expect("generated dumps parse"),
    }
}

/// The current snapshot of a pair, and the previous one sampled at `now - interval` on
/// `columns`.
fn snapshots(pair: &Pair, columns: &[String], now: f64) -> (Snapshot, Sample) {
    let previous = snapshot_of(&pair.previous, pair.pids.0);
    let sample = Sample::capture(&previous, columns, now - pair.interval);
    (snapshot_of(&pair.current, pair.pids.1), sample)
}

/// Evaluates `e` and every sub-expression of it on `row`, checking what the evaluator
/// promises:
///
/// - a number is always finite (NaN and ±inf never reach a comparison);
/// - `delta()` and `rate()` are never negative;
/// - a numeric comparison with an absent side is false, whatever the operator (`!=`
///   included); with two numbers it is the plain IEEE comparison;
/// - a text comparison with an absent side is false;
/// - arithmetic with an absent side, a zero divisor (`/`, `%`) or a non-finite result
///   (overflow of `*`, `+`) is absent; otherwise it is the f64 operation;
/// - `not`, `and`, `or` are the boolean operations on "is true" (so `not (x > 1)` is true
///   when `x` is absent: absent is not true).
fn check_eval(e: &Expr, row: &Row<'_>, env: &Env<'_>) -> Result<(), TestCaseError> {
    let value = eval::eval(e, row, env);
    if let Val::Number(n) = value {
        prop_assert!(n.is_finite(), "{:?} gave {}", e, n);
    }
    let num = |x: &Expr| match eval::eval(x, row, env) {
        Val::Number(n) => Some(n),
        _ => None,
    };
    match e {
        Expr::Counter(_, _) => {
            if let Val::Number(n) = value {
                prop_assert!(n >= 0.0, "{:?} went negative: {}", e, n);
            }
        }
        Expr::CompareNumbers(op, a, b) => {
            let want = match (num(a), num(b)) {
                (Some(x), Some(y)) => match op {
                    Cmp::Eq => x == y,
                    Cmp::Ne => x != y,
                    Cmp::Lt => x < y,
                    Cmp::Le => x <= y,
                    Cmp::Gt => x > y,
                    Cmp::Ge => x >= y,
                },
                _ => false,
            };
            prop_assert_eq!(value, Val::Bool(want), "{:?}", e);
        }
        Expr::CompareText(_, a, b)
            if eval::eval(a, row, env) == Val::Absent || eval::eval(b, row, env) == Val::Absent =>
        {
            prop_assert_eq!(value, Val::Bool(false), "{:?}", e);
        }
        Expr::Arith(op, a, b) => {
            let want = match (num(a), num(b)) {
                (Some(_), Some(y)) if y == 0.0 && matches!(op, Arith::Div | Arith::Rem) => None,
                (Some(x), Some(y)) => Some(match op {
                    Arith::Add => x + y,
                    Arith::Sub => x - y,
                    Arith::Mul => x * y,
                    Arith::Div => x / y,
                    Arith::Rem => x % y,
                })
                .filter(|r| r.is_finite()),
                _ => None,
            };
            prop_assert_eq!(value, want.map_or(Val::Absent, Val::Number), "{:?}", e);
        }
        Expr::Not(a) => prop_assert_eq!(value, Val::Bool(!eval::truth(a, row, env))),
        Expr::And(a, b) => prop_assert_eq!(
            value,
            Val::Bool(eval::truth(a, row, env) && eval::truth(b, row, env))
        ),
        Expr::Or(a, b) => prop_assert_eq!(
            value,
            Val::Bool(eval::truth(a, row, env) || eval::truth(b, row, env))
        ),
        _ => {}
    }
    match e {
        Expr::Neg(a) | Expr::Abs(a) | Expr::Not(a) | Expr::Glob(_, a, _) => {
            check_eval(a, row, env)?
        }
        Expr::MinMax(_, a, b)
        | Expr::Arith(_, a, b)
        | Expr::CompareNumbers(_, a, b)
        | Expr::CompareText(_, a, b)
        | Expr::And(a, b)
        | Expr::Or(a, b) => {
            check_eval(a, row, env)?;
            check_eval(b, row, env)?;
        }
        _ => {}
    }
    Ok(())
}

const NOW: f64 = 1_800_000_000.0;

proptest! {
    #![proptest_config(cases(4096))]

    /// Arbitrary text: compiled or rejected with an offset inside the text; never a panic.
    #[test]
    fn expression_compiler_on_arbitrary_text(text in any::<String>()) {
        compile_both(&text)?;
    }

    /// Sequences of the language's tokens (and near misses), closer to real mistakes.
    #[test]
    fn expression_compiler_on_token_soup(
        tokens in prop::collection::vec(select(TOKENS), 0..24),
        spaced in any::<bool>(),
    ) {
        compile_both(&tokens.join(if spaced { " " } else { "" }))?;
    }
}

proptest! {
    #![proptest_config(cases(1024))]

    /// Well-typed conditions from the grammar compile, and a random edit of one either
    /// compiles or fails with an offset inside the text.
    #[test]
    fn generated_conditions_compile(
        text in bool_expr(3),
        edit in (any::<Index>(), select(TOKENS)),
    ) {
        if let Err(e) = expr::compile_condition(&text, &mut Vec::<String>::new()) {
            return Err(TestCaseError::fail(format!("{text:?} did not compile: {e:?}")));
        }
        let at = edit.0.index(text.len() + 1);
        let at = (0..=at).rev().find(|&i| text.is_char_boundary(i)).unwrap();
        let edited = format!("{}{}{}", &text[..at], edit.1, &text[at..]);
        compile_both(&edited)?;
    }

    /// Generated conditions evaluated on dumps with extreme values and a previous sample
    /// whose counters went up, down or came from another process: see [`check_eval`].
    #[test]
    fn evaluator_on_extreme_values(text in bool_expr(3), pair in pair()) {
        let mut table = Vec::<String>::new();
        let condition = expr::compile_condition(&text, &mut table).unwrap();
        let (current, sample) = snapshots(&pair, &table, NOW);
        let stats = &current.stats;
        let dump_columns: Vec<Option<usize>> =
            table.iter().map(|c| stats.columns().get(c)).collect();
        let sample_columns: Vec<Option<usize>> = table.iter().map(|c| sample.column(c)).collect();
        let env = Env {
            source: "lb1", labels: &Default::default(),
            dump_columns: &dump_columns,
            previous: Some(Previous {
                sample: &sample,
                columns: &sample_columns,
                interval: pair.interval,
                restarted: sample.restarted_before(&current),
            }),
            parents: Default::default(),
            windows: None,
            process: Default::default(),
        };
        for row in stats.rows() {
            prop_assert!(matches!(eval::eval(&condition, &row, &env), Val::Bool(_)));
            check_eval(&condition, &row, &env)?;
        }
    }
}

proptest! {
    #![proptest_config(cases(512))]

    /// The same conditions as `[[rule]]`s through `Config::parse` and `RuleSet::evaluate`
    /// (templates, labels, values): at most one alert per row, each with a summary, and
    /// every alert value finite.
    #[test]
    fn rules_from_a_config_on_extreme_values(
        when in bool_expr(2),
        value in num_expr(2),
        pair in pair(),
    ) {
        let text = format!(
            "[[rule]]\nname = \"P\"\nwhen = '''{when}'''\nvalue = '''{value}'''\n\
             summary = \"{{{{ proxy }}}}/{{{{ server }}}} {{{{ value }}}} {{{{ scur }}}}\"\n"
        );
        let config = Config::parse(&text, &root().join("config/prop.toml"), true)
            .map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        let current = snapshot_of(&pair.current, pair.pids.1);
        let sample = config
            .rules
            .sample(&snapshot_of(&pair.previous, pair.pids.0), NOW - pair.interval);
        let alerts = config.rules.evaluate(
            &Input { source: "lb1", labels: &Default::default(), snapshot: &current, previous: Some(&sample), now: NOW },
            None,
        );
        prop_assert!(alerts.len() <= current.stats.len());
        for alert in &alerts {
            if let Some(hapwatch::alert::Value::Number(n)) = alert.value {
                prop_assert!(n.is_finite(), "alert value {}", n);
            }
            prop_assert!(alert.annotations.contains_key("summary"));
        }
    }

    /// `delta()` and `rate()` never go negative and never spike on a reload, whatever the
    /// previous counters (higher, lower, u64::MAX, absent) and whether the Pid changed.
    #[test]
    fn counters_never_go_negative(
        previous in prop::collection::vec(prop_oneof![any::<u64>(), Just(u64::MAX), Just(0)], 5),
        current in prop::collection::vec(prop_oneof![any::<u64>(), Just(u64::MAX), Just(0)], 5),
        same_pid in any::<bool>(),
        interval in prop_oneof![Just(60.0), Just(0.0), Just(-5.0), 0.001f64..1e6],
    ) {
        let config = Config::parse(
            "[[rule]]\nname = \"Neg\"\n\
             when = 'delta(stot) < 0 or rate(stot) < 0 or delta(req_tot) < 0 or rate(req_tot) < 0'\n\
             [[rule]]\nname = \"Pos\"\nwhen = 'delta(stot) >= 0'\nvalue = 'rate(stot)'\n",
            &root().join("config/prop.toml"),
            true,
        )
        .unwrap();
        let dump = |values: &[u64], pid: u64| {
            let mut text = String::from("# pxname,svname,stot,req_tot,\n");
            for (i, v) in values.iter().enumerate() {
                text.push_str(&format!("app,web{i},{v},{},\n", v / 2));
            }
            Snapshot {
                info: Some(Info::parse(&info_text(pid, 1_700_000_000))),
                stats: Stats::parse(text.into_bytes()).unwrap(),
            }
        };
        let before = dump(&previous, 7);
        let now = dump(&current, if same_pid { 7 } else { 8 });
        let sample = config.rules.sample(&before, NOW - interval);
        // The interval the engine sees (`now - taken_at`), rounding included.
        let interval = NOW - (NOW - interval);
        let alerts = config.rules.evaluate(
            &Input { source: "lb1", labels: &Default::default(), snapshot: &now, previous: Some(&sample), now: NOW },
            None,
        );
        prop_assert!(alerts.iter().all(|a| a.name() == "Pos"), "{:?}", alerts);
        prop_assert_eq!(alerts.len(), 5);
        for (alert, (&b, &c)) in alerts.iter().zip(previous.iter().zip(&current)) {
            let want = if interval > 0.0 {
                Some(increase(b, c, !same_pid) as f64 / interval)
            } else {
                None
            };
            let got = match alert.value {
                Some(hapwatch::alert::Value::Number(n)) => Some(n),
                _ => None,
            };
            prop_assert_eq!(got, want);
            prop_assert!(got.is_none_or(|r| r >= 0.0 && r.is_finite()));
            // A reload (new Pid) or a counter that went down counts from zero.
            prop_assert!(increase(b, c, !same_pid) <= c);
        }
    }
}

// ---------------------------------------------------------------------------------------
// 3. The state file
// ---------------------------------------------------------------------------------------

const BASE: f64 = 1_800_000_000.0;

/// A lab directory with a config whose runs fill every part of the state: alerts (the
/// default rules on a capture with a server down), samples (their `rate`/`delta`), a
/// silence, and an outbox item (a webhook to a closed port).
fn lab_config(dir: &Path) -> PathBuf {
    let config = dir.join("hapwatch.toml");
    std::fs::write(
        &config,
        format!(
            "include = [\"{}\"]\n\n[[source]]\nname = \"lb1\"\nfile = \"lb1.txt\"\n\n\
             [state]\nfile = \"state.json\"\nlock_timeout = \"5s\"\n\n\
             [notifier.hook]\ntype = \"webhook\"\nurl = \"http://{}/hook\"\nretries = 0\ntimeout = \"2s\"\n",
            root().join("config/rules.toml").display(),
            common::closed_addr()
        ),
    )
    .unwrap();
    config
}

fn hapwatch(config: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_hapwatch"))
        .arg("-c")
        .arg(config)
        .args(args)
        .output()
        .unwrap()
}

/// A state file written by real runs of the engine (built once).
fn real_state() -> &'static [u8] {
    static STATE: OnceLock<Vec<u8>> = OnceLock::new();
    STATE.get_or_init(|| {
        let dir = common::temp_dir();
        let config = lab_config(dir.path());
        let capture = |name: &str| {
            std::fs::copy(common::fixture(name), dir.path().join("lb1.txt")).unwrap();
        };
        let run = |at: f64| hapwatch(&config, &["run", "--now", &at.to_string()]);
        capture("haproxy-2.6/show-info-and-stat.txt");
        assert!(run(BASE).status.code().is_some_and(|c| c <= 1));
        capture("haproxy-2.6/down-after-kill.csv");
        let out = run(BASE + 60.0);
        assert_eq!(out.status.code(), Some(1), "the webhook fails: {out:?}");
        let out = hapwatch(
            &config,
            &[
                "silence",
                "add",
                "--match",
                "server=web4",
                "--for",
                "1h",
                "--comment",
                "prop",
            ],
        );
        assert!(out.status.success(), "{out:?}");
        let bytes = std::fs::read(dir.path().join("state.json")).unwrap();
        let state: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        for part in ["alerts", "samples", "silences", "outbox"] {
            assert!(
                !state[part].as_array().map_or_else(
                    || state[part].as_object().unwrap().is_empty(),
                    Vec::is_empty
                ),
                "the lab state has no {part}: {state}"
            );
        }
        bytes
    })
}

/// JSON values that are valid JSON but odd state: wrong types, extremes, empties.
fn odd_json() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::json;
    select(vec![
        json!(null),
        json!(true),
        json!(0),
        json!(-1),
        json!(u64::MAX),
        json!(i64::MIN),
        json!(1e308),
        json!(-1e308),
        json!(0.5),
        json!(""),
        json!("x"),
        json!("\u{0}\n"),
        json!([]),
        json!({}),
        json!([null]),
        json!({"version": 1}),
        json!(2),
    ])
}

/// An edit of a JSON document: replace or remove the `n`-th node (in document order).
#[derive(Debug, Clone)]
enum JsonEdit {
    Replace(Index, serde_json::Value),
    Remove(Index),
}

fn json_edit() -> impl Strategy<Value = JsonEdit> {
    prop_oneof![
        3 => (any::<Index>(), odd_json()).prop_map(|(i, v)| JsonEdit::Replace(i, v)),
        1 => any::<Index>().prop_map(JsonEdit::Remove),
    ]
}

fn json_pointers(value: &serde_json::Value, at: String, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                json_pointers(
                    v,
                    format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        serde_json::Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                json_pointers(v, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

fn edit_json(bytes: &[u8], edits: &[JsonEdit]) -> Vec<u8> {
    let mut doc: serde_json::Value = serde_json::from_slice(bytes).unwrap();
    for edit in edits {
        let mut pointers = Vec::new();
        json_pointers(&doc, String::new(), &mut pointers);
        match edit {
            JsonEdit::Replace(i, v) => {
                let p = &pointers[i.index(pointers.len())];
                *doc.pointer_mut(p).unwrap() = v.clone();
            }
            JsonEdit::Remove(i) => {
                let p = pointers[i.index(pointers.len())].clone();
                if let Some((parent, key)) = p.rsplit_once('/') {
                    match doc.pointer_mut(parent) {
                        Some(serde_json::Value::Object(map)) => {
                            map.remove(&key.replace("~1", "/").replace("~0", "~"));
                        }
                        Some(serde_json::Value::Array(items)) => {
                            items.remove(key.parse::<usize>().unwrap());
                        }
                        _ => {}
                    }
                }
            }
        }
    }
    serde_json::to_vec(&doc).unwrap()
}

/// Writes `bytes` as the state file of a fresh directory and loads it with the lock held.
///
/// - never an I/O error, never a panic;
/// - `Missing` only for an empty (or blank) file, which stays as it was;
/// - an `Unsafe` error ("does not look like a hapwatch state") leaves the file byte for
///   byte where it was, and nothing else in the directory but the lock;
/// - `Ok`: the file was a readable state; saving it and loading it again gives it back;
/// - `Salvaged`: like `Corrupt` for the file; what was kept saves and reloads unchanged;
/// - `Corrupt`: the state path is gone and the moved file holds exactly the bytes written,
///   next to it, named `state.json.corrupt-…`; a second bad file in the same second is
///   moved aside under another name, not over the first.
fn check_load(bytes: &[u8]) -> Result<(), TestCaseError> {
    let dir = common::temp_dir();
    let path = dir.path().join("state.json");
    std::fs::write(&path, bytes).unwrap();
    let lock = Lock::acquire(&path, Duration::ZERO).unwrap();
    let check_moved = |moved_to: &std::path::Path| -> Result<(), TestCaseError> {
        prop_assert!(!path.exists(), "the bad file is still at the state path");
        prop_assert_eq!(
            std::fs::read(moved_to).unwrap(),
            bytes,
            "moved file differs"
        );
        prop_assert_eq!(moved_to.parent(), Some(dir.path()));
        let name = moved_to.file_name().unwrap().to_string_lossy().into_owned();
        prop_assert!(name.starts_with("state.json.corrupt-"), "{}", name);
        std::fs::write(&path, bytes).unwrap();
        match lock.load() {
            Ok(Loaded::Corrupt {
                moved_to: second, ..
            })
            | Ok(Loaded::Salvaged {
                moved_to: second, ..
            }) => {
                prop_assert_ne!(&second, moved_to);
                prop_assert_eq!(std::fs::read(moved_to).unwrap(), bytes);
                prop_assert_eq!(std::fs::read(&second).unwrap(), bytes);
            }
            other => return Err(TestCaseError::fail(format!("second load: {other:?}"))),
        }
        Ok(())
    };
    let check_round_trip = |state: &hapwatch::state::State| -> Result<(), TestCaseError> {
        prop_assert_eq!(state.version, hapwatch::state::VERSION);
        let _ = std::fs::remove_file(&path);
        lock.save(state).unwrap();
        match lock.load() {
            Ok(Loaded::Ok(again)) => prop_assert_eq!(&again, state),
            other => {
                return Err(TestCaseError::fail(format!(
                    "saved state reloads as {other:?}"
                )))
            }
        }
        Ok(())
    };
    match lock.load() {
        Ok(Loaded::Ok(state)) => check_round_trip(&state)?,
        Ok(Loaded::Missing) => {
            prop_assert!(
                bytes.trim_ascii().is_empty(),
                "Missing for a non-empty file"
            );
            prop_assert_eq!(std::fs::read(&path).unwrap(), bytes);
        }
        Err(e @ hapwatch::state::StateError::Unsafe { .. }) => {
            prop_assert!(
                e.to_string()
                    .contains("does not look like a hapwatch state"),
                "{}",
                e
            );
            prop_assert_eq!(std::fs::read(&path).unwrap(), bytes, "the file was changed");
            let mut names: Vec<_> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            names.sort();
            prop_assert_eq!(names, ["state.json", "state.json.lock"]);
        }
        Ok(Loaded::Salvaged {
            state, moved_to, ..
        }) => {
            check_moved(&moved_to)?;
            check_round_trip(&state)?;
        }
        Ok(Loaded::Corrupt { moved_to, reason }) => {
            prop_assert!(!reason.is_empty());
            check_moved(&moved_to)?;
        }
        other => return Err(TestCaseError::fail(format!("load gave {other:?}"))),
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases(512))]

    /// Arbitrary bytes as a state file.
    #[test]
    fn state_loader_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        check_load(&bytes)?;
    }

    /// A real state file with random byte-level edits (truncation included: a torn write).
    #[test]
    fn state_loader_on_mutated_real_state(edits in prop::collection::vec(mutation(), 1..6)) {
        check_load(&mutated(real_state(), &edits))?;
    }

    /// A real state file with values replaced by odd JSON or removed: mostly still JSON,
    /// sometimes still valid state with odd values.
    #[test]
    fn state_loader_on_edited_real_state(edits in prop::collection::vec(json_edit(), 1..4)) {
        check_load(&edit_json(real_state(), &edits))?;
    }
}

proptest! {
    #![proptest_config(cases(32))]

    /// A state file that loads but holds odd values (negative or huge times, counters,
    /// attempts; empty labels; missing optional parts) never crashes a run of the real
    /// binary: it exits 0 or 1, never with a panic (101).
    #[test]
    fn a_run_on_an_odd_but_valid_state_never_panics(
        edits in prop::collection::vec(json_edit(), 1..4),
    ) {
        let bytes = edit_json(real_state(), &edits);
        prop_assume!(matches!(
            serde_json::from_slice::<hapwatch::state::State>(&bytes),
            Ok(s) if s.version == hapwatch::state::VERSION
        ));
        let dir = common::temp_dir();
        let config = lab_config(dir.path());
        std::fs::copy(
            common::fixture("haproxy-2.6/show-info-and-stat.txt"),
            dir.path().join("lb1.txt"),
        )
        .unwrap();
        std::fs::write(dir.path().join("state.json"), &bytes).unwrap();
        let out = hapwatch(&config, &["run", "--now", &(BASE + 120.0).to_string()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        prop_assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "exit {:?}: {}\nstate: {}",
            out.status.code(),
            stderr,
            String::from_utf8_lossy(&bytes)
        );
        prop_assert!(!stderr.contains("panicked"), "{}", stderr);
    }
}

// ---------------------------------------------------------------------------------------
// 4. The config
// ---------------------------------------------------------------------------------------

/// The shipped configs and rule files, and the examples (paths relative to the repo).
const CONFIGS: &[&str] = &[
    "config/hapwatch.toml",
    "config/rules.toml",
    "examples/ha-pair.toml",
    "examples/https-stats.toml",
    "examples/notifiers.toml",
    "examples/tcp-socket-proxyd.toml",
    "examples/demo/hapwatch.toml",
    "examples/tests/default-rules.toml",
    "examples/process-changes.toml",
    "examples/tests/process-rules.toml",
    "examples/tests/process-changes.toml",
];

fn config_texts() -> &'static [(PathBuf, String)] {
    static TEXTS: OnceLock<Vec<(PathBuf, String)>> = OnceLock::new();
    TEXTS.get_or_init(|| {
        CONFIGS
            .iter()
            .map(|p| {
                let path = root().join(p);
                let text = std::fs::read_to_string(&path).unwrap();
                (path, text)
            })
            .collect()
    })
}

/// `Config::parse`, with its one known panic (an error offset inside a multi-byte
/// character, after TOML escapes: see `escaped_when_with_a_multibyte_character_does_not_panic`)
/// turned into `None`, so that the properties still check everything else. Any other
/// panic fails the property.
fn parse_config(
    text: &str,
    path: &Path,
    private: bool,
) -> Result<Option<Result<Config, ConfigError>>, TestCaseError> {
    match std::panic::catch_unwind(|| Config::parse(text, path, private)) {
        Ok(result) => Ok(Some(result)),
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(TestCaseError::fail(format!(
                "Config::parse panicked: {message}\n--- config:\n{text}"
            )))
        }
    }
}

/// `text` as a TOML basic string (`"…"`), escaping `"`, `\\` and, at random positions
/// chosen by `unicode`, non-ASCII characters as `\uXXXX`.
fn toml_basic(text: &str, unicode: &[bool]) -> String {
    let mut out = String::from("\"");
    for (i, c) in text.chars().enumerate() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if !c.is_ascii() && unicode[i % unicode.len()] => {
                out.push_str(&format!("\\U{:08X}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

proptest! {
    #![proptest_config(cases(1024))]

    /// Mutated config and rule files: a config, or a `ConfigError::Invalid` whose message
    /// starts with `PATH:LINE:COLUMN: ` for this file (or a file it includes), with a line
    /// and column inside that file. Never a panic.
    #[test]
    fn config_loader_on_mutated_files(
        which in any::<Index>(),
        edits in prop::collection::vec(mutation(), 1..6),
        private in any::<bool>(),
    ) {
        let (path, original) = &config_texts()[which.index(config_texts().len())];
        let text = String::from_utf8_lossy(&mutated(original.as_bytes(), &edits)).into_owned();
        let Some(result) = parse_config(&text, path, private)? else { return Ok(()) };
        let Err(err) = result else { return Ok(()) };
        let display = err.to_string();
        match &err {
            ConfigError::Invalid { path: at, line, column, message } => {
                let file_text = if at == path {
                    text.clone()
                } else {
                    // An included rule file, which must exist: a missing one is reported
                    // at the `include` line of the config.
                    std::fs::read_to_string(at)
                        .map_err(|e| TestCaseError::fail(format!("{display}: {e}")))?
                };
                prop_assert!(*line >= 1 && *column >= 1, "{}", display);
                prop_assert!(*line <= file_text.lines().count() + 1, "{}", display);
                let line_len = file_text.split('\n').nth(line - 1).map_or(0, str::len);
                prop_assert!(*column <= line_len + 1, "column past the line: {}", display);
                prop_assert!(!message.is_empty());
                let prefix = format!("{}:{}:{}: ", at.display(), line, column);
                prop_assert!(display.starts_with(&prefix), "{}", display);
            }
            ConfigError::Read { .. } => {
                return Err(TestCaseError::fail(format!("parse gave a read error: {display}")));
            }
        }
    }

    /// Generated conditions in a `when` TOML literal string: the error, if any, points at a
    /// line and column of the file.
    #[test]
    fn config_with_generated_rules(when in bool_expr(2), edit in (any::<Index>(), select(TOKENS))) {
        let at = edit.0.index(when.len() + 1);
        let at = (0..=at).rev().find(|&i| when.is_char_boundary(i)).unwrap();
        let when = format!("{}{}{}", &when[..at], edit.1, &when[at..]);
        prop_assume!(!when.contains("'''") && !when.ends_with('\''));
        let text = format!("[[rule]]\nname = \"G\"\nwhen = '''{when}'''\n");
        if let Err(e) = Config::parse(&text, Path::new("g.toml"), true) {
            let ConfigError::Invalid { line, column, .. } = e else {
                return Err(TestCaseError::fail(format!("{e}")));
            };
            prop_assert!((1..=4).contains(&line), "{}", e);
            prop_assert!(column >= 1);
        }
    }
}

proptest! {
    #![proptest_config(cases(1024))]

    /// Generated conditions (with their `"…"` text literals, `é` included) in a `when`
    /// TOML *basic* string, where they need escapes. An error must still name line 3 (the
    /// `when` line), and parsing never panics (`escaped_when_error_column_points_at_the_error`
    /// pins the column after escapes).
    #[test]
    fn config_with_generated_rules_in_escaped_strings(
        when in bool_expr(2),
        edit in (any::<Index>(), select(TOKENS)),
        unicode in prop::collection::vec(any::<bool>(), 1..4),
    ) {
        let at = edit.0.index(when.len() + 1);
        let at = (0..=at).rev().find(|&i| when.is_char_boundary(i)).unwrap();
        let when = format!("{}{}{}", &when[..at], edit.1, &when[at..]);
        let text = format!("[[rule]]\nname = \"G\"\nwhen = {}\n", toml_basic(&when, &unicode));
        let Some(result) = parse_config(&text, Path::new("g.toml"), true)? else { return Ok(()) };
        if let Err(e) = result {
            let ConfigError::Invalid { line, column, .. } = e else {
                return Err(TestCaseError::fail(format!("{e}")));
            };
            prop_assert_eq!(line, 3, "{}\n{}", e, text);
            prop_assert!(column >= 1);
        }
    }
}

// ---------------------------------------------------------------------------------------
// 5. Templates: no file access, bounded work
// ---------------------------------------------------------------------------------------

/// Renders `summary` as the summary template of a rule that matches every row of the
/// baseline capture; returns the summaries, or the config error.
fn render_summaries(summary: &str) -> Result<Vec<String>, String> {
    let text = format!("[[rule]]\nname = \"T\"\nwhen = 'true'\nsummary = '''{summary}'''\n");
    let config = Config::parse(&text, Path::new("t.toml"), true).map_err(|e| e.to_string())?;
    let snapshot = Snapshot {
        info: None,
        stats: Stats::parse(common::fixture_bytes("haproxy-2.6/show-stat.csv")).unwrap(),
    };
    let alerts = config.rules.evaluate(
        &Input {
            source: "lb1",
            labels: &Default::default(),
            snapshot: &snapshot,
            previous: None,
            now: NOW,
        },
        None,
    );
    Ok(alerts
        .into_iter()
        .map(|a| a.annotations["summary"].clone())
        .collect())
}

/// Pieces of minijinja syntax, for template soup.
const TEMPLATE_PIECES: &[&str] = &[
    "{{",
    "}}",
    "{%",
    "%}",
    " for i in ",
    "range(",
    "100000",
    "10",
    ")",
    " endfor ",
    " if ",
    " endif ",
    " include ",
    " import ",
    " extends ",
    "'/etc/passwd'",
    "value",
    "proxy",
    "server",
    "scur",
    " | ",
    "upper",
    "length",
    "loop.cycle",
    " recursive ",
    "x",
    "{#",
    "#}",
    "-",
    "~",
    "*",
    " set a = ",
    "[",
    "]",
    "a",
    " macro m() ",
    " endmacro ",
    "m()",
    ".",
];

proptest! {
    #![proptest_config(cases(512))]

    /// Any summary template: a config error naming line 4 (the `summary` line), or a
    /// summary for every row, rendered in bounded time (a runaway loop runs out of fuel and
    /// renders as a note). Never a panic.
    #[test]
    fn summary_templates_from_template_soup(
        pieces in prop::collection::vec(select(TEMPLATE_PIECES), 0..16),
    ) {
        let summary = pieces.concat();
        prop_assume!(!summary.contains("'''") && !summary.ends_with('\''));
        let started = std::time::Instant::now();
        match render_summaries(&summary) {
            Ok(summaries) => prop_assert_eq!(summaries.len(), 14, "one per row of show-stat.csv"),
            Err(e) => prop_assert!(e.starts_with("t.toml:4:"), "{}", e),
        }
        prop_assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    }
}

#[test]
fn a_runaway_template_loop_runs_out_of_fuel() {
    let started = std::time::Instant::now();
    // `range` is refused (only row and alert variables are allowed), but text iterates.
    let long = "x".repeat(100);
    let summaries = render_summaries(&format!(
        "{{% for a in '{long}' %}}{{% for b in '{long}' %}}{{% for c in '{long}' %}}x{{% endfor %}}{{% endfor %}}{{% endfor %}}"
    ))
    .unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    for summary in summaries {
        assert!(
            summary.starts_with("(template T.summary failed:"),
            "{summary}"
        );
        assert!(summary.contains("fuel"), "{summary}");
    }
}

/// minijinja repeats a list lazily (fuel is charged when it is iterated) and charges a
/// printed value only after writing all of it: `{{ [1] * 100000000 }}` took 9 s and
/// 300 MB per row (release build) before "ran out of fuel", so four rows stalled a dry run
/// for 37 s. A printed value that cannot fit the output cap is now refused before it is
/// written, also inside `{% set %}` blocks and nested in lists and maps.
#[test]
fn a_huge_repeated_list_in_a_template_cannot_stall_a_run() {
    let capture = common::fixture("haproxy-2.6/backend-down.csv");
    for summary in [
        "{{ [1] * 100000000 }}",
        "{% set x %}{{ [1] * 100000000 }}{% endset %}{{ x }}",
        "{{ [[1] * 100000000] }}",
        "{{ {'a': [1] * 100000000} }}",
        "{{ 'x' * 2000000 }}",
    ] {
        let config = format!(
            "[[source]]\nname = \"lb1\"\nfile = {:?}\n\n[[rule]]\nname = \"Big\"\n\
             when = 'state == \"down\"'\nsummary = \"{summary}\"\n",
            capture.display().to_string()
        );
        // The guard (30 s) is the test: before the fix each run took minutes.
        let out = common::Hapwatch::new()
            .config_text(config)
            .args(["run", "--dry-run"])
            .run();
        out.status(0).stdout_contains(&format!(
            "(template Big.summary failed: invalid operation: a printed value is longer than \
             {} bytes",
            hapwatch::rules::template::MAX_OUTPUT
        ));
    }
}

#[test]
fn a_template_cannot_read_a_file() {
    for summary in [
        "{% include '/etc/passwd' %}",
        "{% import '/etc/passwd' as p %}",
        "{% extends '/etc/passwd' %}",
    ] {
        // Either refused when the config loads, or a note in place of the summary: never
        // the file's content.
        match render_summaries(summary) {
            Err(e) => assert!(e.starts_with("t.toml:4:"), "{e}"),
            Ok(summaries) => {
                for s in summaries {
                    assert!(s.starts_with("(template T.summary failed:"), "{s}");
                    assert!(!s.contains("root:"), "{s}");
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Sanity of the generators themselves
// ---------------------------------------------------------------------------------------

#[test]
fn generator_columns_are_what_they_claim() {
    for c in NUM_COLS {
        assert!(columns::is_known(c) && !columns::is_text(c), "{c}");
    }
    for c in TEXT_COLS {
        assert!(columns::is_known(c) && columns::is_text(c), "{c}");
    }
    let stats = Stats::parse(dump_text(&[vec!["1".into(); dump_columns().len() - 2]]).into_bytes())
        .unwrap();
    assert_eq!(stats.columns().len(), dump_columns().len());
}

// ---------------------------------------------------------------------------------------
// Bugs found by the properties, kept as regular tests until src/ is fixed
// ---------------------------------------------------------------------------------------

/// An expression error inside a TOML *basic* string (`when = "…"`) is placed at
/// `start of the string body + offset in the decoded string`. Escapes (`\"`, `\\`,
/// `\u00e9`) make the decoded string shorter than its TOML text, so the offset lands
/// early; when it lands inside a multi-byte character, `config::line_col` slices the text
/// there and panics (`byte index N is not a char boundary`). Found by
/// `config_loader_on_mutated_files`-style inputs.
#[test]
fn escaped_when_with_a_multibyte_character_does_not_panic() {
    let text = "[[rule]]\nname = \"T\"\nwhen = \"\\\"\\\"\\\"\\\" ==  \\\"ééé\\\" é\"\n";
    let result = std::panic::catch_unwind(|| Config::parse(text, Path::new("x.toml"), true));
    let err = result
        .expect("Config::parse panicked")
        .expect_err("the rule is invalid");
    assert!(err.to_string().starts_with("x.toml:3:"), "{err}");
}

/// Same cause, no panic: with escapes before the error, the column points before it.
#[test]
fn escaped_when_error_column_points_at_the_error() {
    // The `é` the lexer rejects is at column 40 of line 3 (after `when = "` and five
    // 6-byte `\u0041` escapes and a space).
    let text = "[[rule]]\nname = \"T\"\nwhen = \"\\u0041\\u0041\\u0041\\u0041\\u0041 é\"\n";
    let err = Config::parse(text, Path::new("x.toml"), true).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("x.toml:3:40: rule \"T\": when: unexpected character `é`"),
        "{err}"
    );
}

/// A row with text after HAProxy's trailing `,` (where every row has an empty last item)
/// is malformed, quoted or not: an error, never silently dropped text. Found by
/// `stats_parser_on_mutated_captures` (an insertion just before a line break).
#[test]
fn text_after_the_last_comma_is_an_error() {
    for dump in [
        "# pxname,svname,status,\napp,web1,UP,X\n",
        "# pxname,svname,status,\napp,\"web1\",UP,X\n",
    ] {
        let result = Stats::parse(dump.as_bytes().to_vec());
        assert!(
            matches!(
                result,
                Err(hapwatch::stats::ParseError::TrailingText { line: 2 })
            ),
            "{dump:?} gave {result:?}"
        );
    }
}

/// Moderately nested expressions (far deeper than any real rule) compile and evaluate.
#[test]
fn moderately_nested_expressions_compile() {
    for text in [
        format!("{}scur{} > 0", "(".repeat(64), ")".repeat(64)),
        format!("{}scur > 0", "not ".repeat(64)),
        format!("{}scur > 0", "- ".repeat(64)),
        format!("{}scur{} > 0", "abs(".repeat(64), ")".repeat(64)),
    ] {
        expr::compile_condition(&text, &mut Vec::<String>::new())
            .unwrap_or_else(|e| panic!("{text}: {e:?}"));
    }
}

/// An expression nested about 1,000 levels deep (debug build; about 5,000 in release)
/// overflows the stack of the recursive-descent parser: the process aborts with SIGABRT
/// (exit 134, "has overflowed its stack") instead of reporting a config error. The TOML
/// parser, by contrast, stops at its own depth limit with `cannot recurse further`. Run in
/// a child process, since a stack overflow cannot be caught.
#[test]
fn a_deeply_nested_expression_is_a_config_error_not_a_stack_overflow() {
    let dir = common::temp_dir();
    let config = dir.path().join("deep.toml");
    let n = 20_000;
    for when in [
        format!("{}scur{} > 0", "(".repeat(n), ")".repeat(n)),
        format!("{}scur > 0", "not ".repeat(n * 5)),
        format!("{}scur > 0", "-".repeat(n * 5)),
    ] {
        std::fs::write(
            &config,
            format!("[[rule]]\nname = \"Deep\"\nwhen = '{when}'\n"),
        )
        .unwrap();
        let out = hapwatch(&config, &["check"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{:?}: {}", out.status, stderr);
        assert!(stderr.contains("deep.toml:3:"), "{stderr}");
    }
}

/// A long flat chain of operators builds a tree as deep as the chain is long: 11,000 `or`
/// passed `check` and then aborted `run` with a stack overflow (exit 134) while evaluating,
/// and 100,000 `+` aborted `check` itself (dropping the tree). Both are now config errors
/// at the first operator past the limit; a chain at the limit checks and runs.
#[test]
fn a_long_operator_chain_is_a_config_error_not_a_stack_overflow() {
    let capture = common::fixture("haproxy-2.6/backend-down.csv");
    let config = |when: &str| {
        format!(
            "[[source]]\nname = \"lb1\"\nfile = {:?}\n\n[[rule]]\nname = \"Long\"\nwhen = '{when}'\n",
            capture.display().to_string()
        )
    };
    let ors = |n: usize| vec!["scur > 100000"; n].join(" or ");
    let pluses = |n: usize| format!("{}1 > 0", "scur + ".repeat(n));
    // The error points at the first operator past the limit; the expression starts in
    // column 9 (after `when = '`). In the `or` chain the operators alternate `>`, `or`, so
    // the 501st is the `>` of the 251st comparison; in the `+` chain it is the 501st `+`.
    let max = expr::MAX_OPERATORS;
    for (when, column) in [
        (
            ors(11_000),
            9 + max / 2 * "scur > 100000 or ".len() + "scur ".len(),
        ),
        (pluses(100_000), 9 + max * "scur + ".len() + "scur ".len()),
    ] {
        for command in [&["check"][..], &["run", "--dry-run"]] {
            let out = common::Hapwatch::new()
                .config_text(config(&when))
                .args(command)
                .run();
            out.status(2).stdout_empty().stderr_line_count(1);
            let want = format!(
                "hapwatch: {}:7:{column}: rule \"Long\": when: expression too long (more than {max} operators)",
                out.config_display(),
            );
            assert!(out.stderr.starts_with(&want), "wanted {want:?}\n{out:?}");
        }
    }
    // Within the limit: 250 comparisons joined by 249 `or` are 499 operators; 499 `+` and
    // one `>` are exactly the limit.
    for when in [ors(max / 2), pluses(max - 1)] {
        common::Hapwatch::new()
            .config_text(config(&when))
            .args(["run", "--dry-run"])
            .run()
            .success();
    }
}

// ---------------------------------------------------------------------------------------
// The incremental parser (runtime API replies are parsed as they arrive)
// ---------------------------------------------------------------------------------------

/// Feeds `bytes` to a [`StatParser`] in chunks cut at `cuts` (sorted offsets).
fn parse_in_chunks(bytes: &[u8], cuts: &[usize]) -> Result<Stats, hapwatch::stats::ParseError> {
    parse_in_chunks_keeping(bytes, cuts, None)
}

/// [`parse_in_chunks`] with offsets for the columns `keep` only.
fn parse_in_chunks_keeping(
    bytes: &[u8],
    cuts: &[usize],
    keep: Option<Vec<String>>,
) -> Result<Stats, hapwatch::stats::ParseError> {
    let mut parser = hapwatch::stats::StatParser::keeping(keep);
    let mut at = 0;
    for &cut in cuts.iter().chain(std::iter::once(&bytes.len())) {
        let cut = cut.clamp(at, bytes.len());
        parser.buffer().extend_from_slice(&bytes[at..cut]);
        parser.advance()?;
        at = cut;
    }
    parser.finish()
}

/// `bytes` with each `(at, byte)` of `edits` written over it.
fn edited(bytes: &[u8], edits: &[(Index, u8)]) -> Vec<u8> {
    let mut bytes = bytes.to_vec();
    for (at, byte) in edits {
        if !bytes.is_empty() {
            let i = at.index(bytes.len());
            bytes[i] = *byte;
        }
    }
    bytes
}

/// Sorted offsets at which to cut `len` bytes into chunks.
fn cut_points(cuts: &[Index], len: usize) -> Vec<usize> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(len + 1)).collect();
    cuts.sort_unstable();
    cuts
}

/// The rows of a parse, field by field, or its error, for comparing two parses.
fn outcome(
    result: &Result<Stats, hapwatch::stats::ParseError>,
) -> Result<Vec<Vec<String>>, String> {
    outcome_of(result, None)
}

/// [`outcome`] for the columns named in `only` (`None`: all), plus each row's type and
/// state.
fn outcome_of(
    result: &Result<Stats, hapwatch::stats::ParseError>,
    only: Option<&[String]>,
) -> Result<Vec<Vec<String>>, String> {
    match result {
        Ok(stats) => {
            let columns: Vec<usize> = match only {
                Some(names) => names
                    .iter()
                    .filter_map(|n| stats.columns().get(n))
                    .collect(),
                None => (0..stats.columns().len()).collect(),
            };
            Ok(stats
                .rows()
                .map(|row| {
                    let mut fields: Vec<String> =
                        columns.iter().map(|&c| row.raw(c).to_string()).collect();
                    fields.push(format!("{:?} {:?}", row.kind(), row.state()));
                    fields
                })
                .collect())
        }
        Err(e) => Err(e.to_string()),
    }
}

proptest! {
    #![proptest_config(cases(512))]

    /// Whatever the chunks a reply arrives in, the incremental parser gives exactly what
    /// parsing the whole dump at once gives: the same rows and fields, or the same error
    /// (an error may only come earlier, never differ).
    #[test]
    fn parsing_in_chunks_equals_parsing_whole(
        which in any::<Index>(),
        edits in prop::collection::vec((any::<Index>(), any::<u8>()), 0..3),
        cuts in prop::collection::vec(any::<Index>(), 0..12),
    ) {
        let fixture = which.get(fixtures());
        let bytes = edited(&fixture.bytes, &edits);
        let cuts = cut_points(&cuts, bytes.len());
        let whole = outcome(&Stats::parse(bytes.clone()));
        let chunked = outcome(&parse_in_chunks(&bytes, &cuts));
        prop_assert_eq!(chunked, whole, "{} with edits {:?}, cut at {:?}", fixture.name, edits, cuts);
    }

    /// A parser keeping offsets for some columns only (as `hapwatch run` does for the
    /// columns its rules read) reads those columns, and every row's type and state,
    /// exactly as a full parse does, whatever the chunks; and fails the same way.
    #[test]
    fn parsing_some_columns_equals_parsing_all(
        which in any::<Index>(),
        edits in prop::collection::vec((any::<Index>(), any::<u8>()), 0..3),
        picks in prop::collection::vec(any::<Index>(), 0..12),
        cuts in prop::collection::vec(any::<Index>(), 0..12),
    ) {
        let fixture = which.get(fixtures());
        let bytes = edited(&fixture.bytes, &edits);
        let Ok(full) = Stats::parse(fixture.bytes.clone()) else {
            return Ok(());
        };
        let names = full.columns().names();
        let mut keep: Vec<String> = picks.iter().map(|p| names[p.index(names.len())].clone()).collect();
        keep.push("no_such_column".to_string());
        let cuts = cut_points(&cuts, bytes.len());
        let whole = outcome_of(&Stats::parse(bytes.clone()), Some(&keep));
        let some = outcome_of(&parse_in_chunks_keeping(&bytes, &cuts, Some(keep.clone())), Some(&keep));
        prop_assert_eq!(some, whole, "{} keeping {:?}, edits {:?}, cut at {:?}", fixture.name, keep, edits, cuts);
    }
}
