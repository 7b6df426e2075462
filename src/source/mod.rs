//! Fetching `show info` + `show stat` from a source: the runtime API (unix or TCP socket),
//! the stats page (HTTP/HTTPS), or a captured file.

mod file;
mod http;
mod runtime;

use crate::config::{Endpoint, SourceConfig};
use crate::stats::{Info, ParseError, ProxyType, Snapshot, Stats, Table, TypeMask};
use std::time::{Duration, Instant};

/// Upper bound on a reply, so that a broken peer cannot exhaust memory. A 10,000-backend
/// HAProxy dumps about 15 MB.
pub const MAX_REPLY_BYTES: u64 = 256 * 1024 * 1024;

/// Why a source could not be read. Messages do not repeat the source name: callers
/// prefix it.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Connecting failed.
    #[error("cannot connect to {target}: {reason}")]
    Connect {
        /// Socket path or address.
        target: String,
        /// What failed, with a hint.
        reason: String,
    },
    /// No complete reply within the source's timeout.
    #[error("no complete reply from {target} within {}ms (timeout)", timeout.as_millis())]
    Timeout {
        /// Socket path or address.
        target: String,
        /// The configured timeout.
        timeout: Duration,
    },
    /// The connection closed before HAProxy's end-of-reply marker.
    #[error("truncated reply from {target}: {detail}; no partial snapshot is used")]
    Truncated {
        /// Socket path or address.
        target: String,
        /// What was missing.
        detail: String,
    },
    /// HAProxy answered something other than the dump (an error, a permission problem).
    #[error("unexpected reply from {target}: {excerpt:?}")]
    Unexpected {
        /// Socket path or address.
        target: String,
        /// The first line of the reply.
        excerpt: String,
    },
    /// Nothing at all came back.
    #[error("empty reply from {target}")]
    Empty {
        /// Socket path or address.
        target: String,
    },
    /// The stats page refused the credentials.
    #[error("authentication failed (HTTP 401 from {url}): check username and password")]
    AuthFailed {
        /// The URL requested.
        url: String,
    },
    /// The stats page answered with another error status.
    #[error("HTTP {status} from {url}: {excerpt:?}")]
    Http {
        /// The URL requested.
        url: String,
        /// HTTP status code.
        status: u16,
        /// Start of the body.
        excerpt: String,
    },
    /// The reply exceeded [`MAX_REPLY_BYTES`].
    #[error("reply from {target} exceeds {} MiB; refusing to buffer more", MAX_REPLY_BYTES >> 20)]
    TooLarge {
        /// Socket path, address or URL.
        target: String,
    },
    /// Reading or writing failed mid-way.
    #[error("I/O error on {target}: {source}")]
    Io {
        /// Socket path, address or file.
        target: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A dump with its header and not one row. A HAProxy always has a frontend or a
    /// backend, so this is a broken source (a wrong process, a stats page filtered to
    /// nothing), and must not resolve every alert of the source.
    #[error("{target} reported no proxies (the dump has a header and no rows); treating the source as broken, not its alerts as resolved")]
    NoProxies {
        /// Socket path, address, URL or file.
        target: String,
    },
    /// A secret (password) could not be resolved.
    #[error(transparent)]
    Secret(#[from] crate::secret::SecretError),
    /// The reply arrived whole but is not a valid dump.
    #[error("{target}: {source}")]
    Parse {
        /// Socket path, address, URL or file.
        target: String,
        /// What is wrong with it.
        source: ParseError,
    },
}

/// Raw `show info` text (when the source has it) and `show stat` bytes.
#[derive(Debug)]
pub struct RawReply {
    /// `show info` block.
    pub info: Option<String>,
    /// `show stat` CSV.
    pub stat: Vec<u8>,
}

/// One source's result, with timing.
#[derive(Debug)]
pub struct Fetched {
    /// The source's name.
    pub name: String,
    /// The snapshot, or why there is none.
    pub result: Result<Snapshot, SourceError>,
    /// Wall time of fetch + parse.
    pub elapsed: Duration,
}

/// Looks at the rows of a dump while it is read, so that work on them (rule evaluation)
/// overlaps with HAProxy writing the rest.
pub trait RowSink {
    /// The rows read so far, with the source's `show info` when it has one: called as the
    /// dump arrives (`complete` false), and once more with the whole table (`complete`
    /// true). Every call shows the same dump, with at least the rows of the call before.
    fn rows(&mut self, table: Table<'_>, info: Option<&Info>, complete: bool);

    /// The rows shown so far are void: the dump was not UTF-8 and was parsed again
    /// after repair; every row will be shown again.
    fn restart(&mut self);

    /// The columns this sink and the snapshot's users read (`None`: all): the parser
    /// keeps field offsets for these only.
    fn columns(&self) -> Option<Vec<String>>;
}

/// A [`RowSink`] that ignores the rows.
pub struct IgnoreRows;

impl RowSink for IgnoreRows {
    fn rows(&mut self, _: Table<'_>, _: Option<&Info>, _: bool) {}
    fn restart(&mut self) {}
    fn columns(&self) -> Option<Vec<String>> {
        None
    }
}

/// Reads and parses one source: every row.
pub fn fetch(source: &SourceConfig) -> Result<Snapshot, SourceError> {
    fetch_types(source, TypeMask::ALL, &mut IgnoreRows)
}

/// Reads and parses one source, showing its rows to `sink` as they are parsed. A runtime
/// API source is asked for the rows of `types` only; other sources return every row.
pub fn fetch_types(
    source: &SourceConfig,
    types: TypeMask,
    sink: &mut dyn RowSink,
) -> Result<Snapshot, SourceError> {
    // The runtime API is parsed while it arrives; the others once read.
    let (target, raw) = match &source.endpoint {
        Endpoint::Socket(path) => {
            let snapshot = runtime::query_unix(path, source.timeout, types, sink)?;
            return some_rows(snapshot, types, || path.display().to_string());
        }
        Endpoint::Tcp(addr) => {
            let snapshot = runtime::query_tcp(addr, source.timeout, types, sink)?;
            return some_rows(snapshot, types, || addr.clone());
        }
        Endpoint::Http(http) => (http.url.clone(), http::fetch(http, source.timeout)?),
        Endpoint::File(path) => (
            path.display().to_string(),
            file::read_within(Some(path), source.timeout)?,
        ),
        Endpoint::Stdin => (
            "standard input".to_string(),
            file::read_within(None, source.timeout)?,
        ),
    };
    let stats =
        Stats::parse_keeping(raw.stat, sink.columns()).map_err(|source| SourceError::Parse {
            target: target.clone(),
            source,
        })?;
    let snapshot = Snapshot {
        info: raw.info.as_deref().map(Info::parse),
        stats,
    };
    sink.rows(snapshot.stats.table(), snapshot.info.as_ref(), true);
    some_rows(snapshot, TypeMask::ALL, || target)
}

/// `snapshot`, unless it has no row although rows of `types` were asked for that every
/// HAProxy has: frontends or backends. (Asked for servers only, a HAProxy without servers
/// rightly answers with no row.)
fn some_rows(
    snapshot: Snapshot,
    types: TypeMask,
    target: impl FnOnce() -> String,
) -> Result<Snapshot, SourceError> {
    let expected = types.contains(ProxyType::Frontend) || types.contains(ProxyType::Backend);
    if snapshot.stats.is_empty() && expected {
        return Err(SourceError::NoProxies { target: target() });
    }
    Ok(snapshot)
}

/// Fetches all `sources` concurrently, at most `parallel` at a time (at least one);
/// results come back in input order. A failing or slow source never keeps the others from
/// being read: each has its own deadline (its `timeout`), and a thread that is free takes
/// the next source. Runtime API sources dump only the rows of `types`.
pub fn fetch_all<'a>(
    sources: impl IntoIterator<Item = &'a SourceConfig>,
    types: TypeMask,
    parallel: usize,
) -> Vec<Fetched> {
    let sources: Vec<&SourceConfig> = sources.into_iter().collect();
    let sinks = sources.iter().map(|_| IgnoreRows).collect();
    fetch_all_into(sources, types, sinks, parallel)
        .into_iter()
        .map(|(fetched, _)| fetched)
        .collect()
}

/// [`fetch_all`], showing each source's rows to its sink (`sinks[i]` for `sources[i]`)
/// in the thread that reads it; the sinks come back with the results.
pub fn fetch_all_into<'a, S: RowSink + Send>(
    sources: impl IntoIterator<Item = &'a SourceConfig>,
    types: TypeMask,
    sinks: Vec<S>,
    parallel: usize,
) -> Vec<(Fetched, S)> {
    let sources: Vec<&SourceConfig> = sources.into_iter().collect();
    assert_eq!(sources.len(), sinks.len(), "one sink per source");
    let timed = |source: &SourceConfig, mut sink: S| {
        let start = Instant::now();
        let result = fetch_types(source, types, &mut sink);
        let fetched = Fetched {
            name: source.name.clone(),
            result,
            elapsed: start.elapsed(),
        };
        (fetched, sink)
    };
    if sources.len() == 1 {
        let sink = sinks.into_iter().next().expect("one sink");
        return vec![timed(sources[0], sink)];
    }
    // A bounded pool: `parallel` threads take the next unread source until none is left,
    // so a hundred sources cost `parallel` threads and sockets at a time, and a source
    // that hangs holds one thread for at most its own timeout.
    let workers = parallel.max(1).min(sources.len());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let jobs: Vec<std::sync::Mutex<Option<S>>> = sinks
        .into_iter()
        .map(|s| std::sync::Mutex::new(Some(s)))
        .collect();
    let mut done: Vec<(usize, (Fetched, S))> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(source) = sources.get(i) else {
                            return out;
                        };
                        let sink = jobs[i]
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .take()
                            .expect("each source is taken once");
                        out.push((i, timed(source, sink)));
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a source thread panicked"))
            .collect()
    });
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
}

/// Splits the reply to `show info;show stat` (or a capture of it) into its two blocks.
/// `runtime` says whether the runtime API framing applies: each block must then end with
/// an empty line, and a missing one means the reply was cut short.
fn split_reply(target: &str, reply: Vec<u8>, runtime: bool) -> Result<RawReply, SourceError> {
    let reply = lf_lines(reply);
    let text_start = reply
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .ok_or_else(|| SourceError::Empty {
            target: target.to_string(),
        })?;
    let has_info = !reply[text_start..].starts_with(b"#")
        && Info::looks_like(&String::from_utf8_lossy(first_line(&reply[text_start..])));
    let (info, stat_start) = if has_info {
        match memchr::memmem::find(&reply[text_start..], b"\n\n") {
            Some(i) => {
                let end = text_start + i + 1;
                let info = String::from_utf8_lossy(&reply[text_start..end]).into_owned();
                (Some(info), end + 1)
            }
            None if runtime => {
                return Err(SourceError::Truncated {
                    target: target.to_string(),
                    detail: "`show info` block has no terminating empty line".into(),
                })
            }
            None => (
                Some(String::from_utf8_lossy(&reply[text_start..]).into_owned()),
                reply.len(),
            ),
        }
    } else {
        (None, text_start)
    };
    let mut stat = reply;
    stat.drain(..stat_start);
    if stat.iter().all(u8::is_ascii_whitespace) && info.is_some() {
        return Err(if runtime {
            SourceError::Truncated {
                target: target.to_string(),
                detail: "`show stat` output missing after `show info`".into(),
            }
        } else {
            SourceError::Parse {
                target: target.to_string(),
                source: ParseError::Empty,
            }
        });
    }
    if !stat.starts_with(b"#") {
        let line = String::from_utf8_lossy(first_line(&stat))
            .trim()
            .to_string();
        // A runtime API reply that does not start with the `# pxname,…` header is HAProxy
        // refusing ("Permission denied", "Unknown command, but maybe…"); elsewhere a line
        // without a comma is a web page or prose. The parser explains other near-CSV.
        if !line.is_empty() && (runtime || !line.contains(',')) {
            return Err(SourceError::Unexpected {
                target: target.to_string(),
                excerpt: line.chars().take(120).collect(),
            });
        }
    }
    if runtime {
        if !stat.ends_with(b"\n\n") {
            return Err(SourceError::Truncated {
                target: target.to_string(),
                detail: "the connection closed before the empty line that ends `show stat`".into(),
            });
        }
        stat.truncate(stat.len() - 1);
    }
    Ok(RawReply { info, stat })
}

/// `bytes` with every CRLF line end turned into LF. A capture saved on Windows, or a reply
/// that went through a CRLF-translating relay, frames its blocks with `\r\n\r\n`, which
/// the `\n\n` that ends `show info` and `show stat` must match.
fn lf_lines(bytes: Vec<u8>) -> Vec<u8> {
    if memchr::memmem::find(&bytes, b"\r\n").is_none() {
        return bytes;
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut crlf = Crlf::default();
    crlf.convert(&bytes, &mut out);
    crlf.finish(&mut out);
    out
}

/// Turns CRLF into LF in a stream that arrives in chunks (a CR at the end of one chunk may
/// meet its LF in the next); a CR not followed by LF is kept.
#[derive(Debug, Default)]
pub(crate) struct Crlf {
    /// The last chunk ended with a CR, held back.
    cr: bool,
}

impl Crlf {
    /// Whether `chunk` needs converting (else it can be used as is).
    pub(crate) fn needed(&self, chunk: &[u8]) -> bool {
        self.cr || memchr::memchr(b'\r', chunk).is_some()
    }

    /// Appends `chunk` to `out`, converted.
    pub(crate) fn convert(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        for &byte in chunk {
            if std::mem::take(&mut self.cr) && byte != b'\n' {
                out.push(b'\r');
            }
            if byte == b'\r' {
                self.cr = true;
            } else {
                out.push(byte);
            }
        }
    }

    /// The CR held back at the end of the stream, if any.
    pub(crate) fn finish(&mut self, out: &mut Vec<u8>) {
        if std::mem::take(&mut self.cr) {
            out.push(b'\r');
        }
    }
}

fn first_line(bytes: &[u8]) -> &[u8] {
    let end = memchr::memchr(b'\n', bytes).unwrap_or(bytes.len());
    &bytes[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(reply: &str, runtime: bool) -> Result<RawReply, String> {
        split_reply("t", reply.as_bytes().to_vec(), runtime).map_err(|e| e.to_string())
    }

    #[test]
    fn crlf_becomes_lf_across_chunks_and_a_lone_cr_stays() {
        let text = b"Name: HAProxy\r\n\r\n# pxname,svname,\r\na,b\rc,\r\n\r\n\r";
        let want = b"Name: HAProxy\n\n# pxname,svname,\na,b\rc,\n\n\r";
        assert_eq!(lf_lines(text.to_vec()), want);
        for cut in 0..text.len() {
            let mut crlf = Crlf::default();
            let mut out = Vec::new();
            for part in [&text[..cut], &text[cut..]] {
                if crlf.needed(part) {
                    crlf.convert(part, &mut out);
                } else {
                    out.extend_from_slice(part);
                }
            }
            crlf.finish(&mut out);
            assert_eq!(out, want, "cut at {cut}");
        }
    }

    #[test]
    fn runtime_reply_needs_both_terminators() {
        let ok = split(
            "Name: HAProxy\nPid: 7\n\n# pxname,svname,\na,FRONTEND,\n\n",
            true,
        )
        .unwrap();
        assert_eq!(ok.info.as_deref(), Some("Name: HAProxy\nPid: 7\n"));
        assert_eq!(ok.stat, b"# pxname,svname,\na,FRONTEND,\n");
        let cut = split(
            "Name: HAProxy\nPid: 7\n\n# pxname,svname,\na,FRONTEND,\n",
            true,
        )
        .unwrap_err();
        assert!(cut.starts_with("truncated reply from t"), "{cut}");
        let cut = split("Name: HAProxy\nPid: 7\n", true).unwrap_err();
        assert!(
            cut.contains("`show info` block has no terminating empty line"),
            "{cut}"
        );
        let cut = split("Name: HAProxy\nPid: 7\n\n", true).unwrap_err();
        assert!(cut.contains("`show stat` output missing"), "{cut}");
        assert_eq!(split("", true).unwrap_err(), "empty reply from t");
        assert_eq!(split("\n", true).unwrap_err(), "empty reply from t");
    }

    #[test]
    fn error_text_from_haproxy_is_quoted_back() {
        let err = split("Permission denied\n\n", true).unwrap_err();
        assert_eq!(err, "unexpected reply from t: \"Permission denied\"");
        let err = split("Unknown command, but maybe one of the following ones is a better match:\n  show stat\n\n", true).unwrap_err();
        assert!(err.contains("Unknown command"), "{err}");
    }

    #[test]
    fn files_need_no_terminator() {
        let ok = split("\n# pxname,svname,\na,FRONTEND,\n", false).unwrap();
        assert!(ok.info.is_none());
        assert_eq!(ok.stat, b"# pxname,svname,\na,FRONTEND,\n");
    }
}
