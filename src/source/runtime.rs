//! The runtime API (the `stats socket`), over a unix or TCP stream socket.
//!
//! hapwatch sends one read-only line, `show info;show stat`, and reads until HAProxy
//! closes the connection (non-interactive mode). Each command's output ends with an empty
//! line; `split_reply` insists on it so that a cut connection is never taken for a dump.

use super::RowSink;
use super::{split_reply, Crlf, SourceError, MAX_REPLY_BYTES};
use crate::stats::TypeMask;
use crate::stats::{Info, Snapshot, StatParser, Stats};
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// The only bytes hapwatch writes to HAProxy when it wants every row: two read-only
/// commands, accepted at `level user`.
pub const QUERY: &[u8] = b"show info;show stat\n";

/// The query for the row types in `types`: `show stat -1 <mask> -1` (all proxies, those
/// types, all servers) makes HAProxy itself dump less when the rules need fewer types.
fn query(types: TypeMask) -> Vec<u8> {
    if types == TypeMask::ALL {
        QUERY.to_vec()
    } else {
        format!("show info;show stat -1 {} -1\n", types.0).into_bytes()
    }
}

/// Bytes read per `read` call.
const CHUNK: usize = 64 * 1024;

pub(super) fn query_unix(
    path: &Path,
    timeout: Duration,
    types: TypeMask,
    sink: &mut dyn RowSink,
) -> Result<Snapshot, SourceError> {
    let deadline = Instant::now() + timeout;
    let target = path.display().to_string();
    let stream = connect_unix(path, deadline).map_err(|e| connect_error(&target, e, timeout))?;
    exchange(stream, &target, deadline, timeout, &query(types), sink)
}

/// `UnixStream::connect` blocks without limit once the listener's accept queue is full (a
/// frozen HAProxy keeps 11 pending connections on its stats socket). Connecting
/// non-blocking and retrying until the deadline keeps the source's timeout a promise.
fn connect_unix(path: &Path, deadline: Instant) -> std::io::Result<UnixStream> {
    use socket2::{Domain, SockAddr, Socket, Type};
    let address = SockAddr::unix(path)?;
    let mut pause = Duration::from_millis(1);
    loop {
        let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
        socket.set_nonblocking(true)?;
        match socket.connect(&address) {
            Ok(()) => {
                socket.set_nonblocking(false)?;
                return Ok(UnixStream::from(std::os::fd::OwnedFd::from(socket)));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                let Some(left) = remaining(deadline) else {
                    return Err(ErrorKind::TimedOut.into());
                };
                std::thread::sleep(pause.min(left));
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            Err(e) => return Err(e),
        }
    }
}

pub(super) fn query_tcp(
    addr: &str,
    timeout: Duration,
    types: TypeMask,
    sink: &mut dyn RowSink,
) -> Result<Snapshot, SourceError> {
    let deadline = Instant::now() + timeout;
    let target = addr.to_string();
    let addrs = addr.to_socket_addrs().map_err(|e| SourceError::Connect {
        target: target.clone(),
        reason: format!("cannot resolve address: {e}"),
    })?;
    let mut last_error = None;
    for candidate in addrs {
        let Some(remaining) = remaining(deadline) else {
            break;
        };
        match TcpStream::connect_timeout(&candidate, remaining) {
            Ok(stream) => {
                // The whole reply is wanted at once; Nagle would only delay our one write.
                let _ = stream.set_nodelay(true);
                return exchange(stream, &target, deadline, timeout, &query(types), sink);
            }
            Err(e) => last_error = Some(e),
        }
    }
    Err(match last_error {
        Some(e) => connect_error(&target, e, timeout),
        None => SourceError::Timeout { target, timeout },
    })
}

/// Stream sockets whose I/O timeouts can be set.
trait Timed: Read + Write {
    fn set_read_timeout(&self, timeout: Duration) -> std::io::Result<()>;
    fn set_write_timeout(&self, timeout: Duration) -> std::io::Result<()>;
}

impl Timed for UnixStream {
    fn set_read_timeout(&self, timeout: Duration) -> std::io::Result<()> {
        UnixStream::set_read_timeout(self, Some(timeout))
    }
    fn set_write_timeout(&self, timeout: Duration) -> std::io::Result<()> {
        UnixStream::set_write_timeout(self, Some(timeout))
    }
}

impl Timed for TcpStream {
    fn set_read_timeout(&self, timeout: Duration) -> std::io::Result<()> {
        TcpStream::set_read_timeout(self, Some(timeout))
    }
    fn set_write_timeout(&self, timeout: Duration) -> std::io::Result<()> {
        TcpStream::set_write_timeout(self, Some(timeout))
    }
}

fn exchange(
    mut stream: impl Timed,
    target: &str,
    deadline: Instant,
    timeout: Duration,
    query: &[u8],
    sink: &mut dyn RowSink,
) -> Result<Snapshot, SourceError> {
    let timed_out = || SourceError::Timeout {
        target: target.to_string(),
        timeout,
    };
    let io_error = |source: std::io::Error| match source.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => timed_out(),
        _ => SourceError::Io {
            target: target.to_string(),
            source,
        },
    };
    stream
        .set_write_timeout(remaining(deadline).ok_or_else(timed_out)?)
        .map_err(io_error)?;
    stream.write_all(query).map_err(io_error)?;

    let mut incoming = Incoming::Head {
        head: Vec::with_capacity(CHUNK),
        keep: sink.columns(),
    };
    let mut received: u64 = 0;
    let mut chunk = vec![0u8; CHUNK];
    // CRLF line ends (a relay that translates them) become LF before framing and parsing.
    let mut crlf = Crlf::default();
    let mut converted = Vec::new();
    loop {
        // One deadline for the whole reply, checked before every read, so a peer trickling
        // bytes cannot hold us past it.
        let left = remaining(deadline).ok_or_else(timed_out)?;
        stream.set_read_timeout(left).map_err(io_error)?;
        let n = match stream.read(&mut chunk) {
            Ok(0) => {
                converted.clear();
                crlf.finish(&mut converted);
                if !converted.is_empty() {
                    incoming
                        .take(&converted)
                        .map_err(|source| SourceError::Parse {
                            target: target.to_string(),
                            source,
                        })?;
                }
                break;
            }
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            // A reset after part of the reply is a cut connection: report it as such.
            Err(e) if e.kind() == ErrorKind::ConnectionReset && received > 0 => break,
            Err(e) => return Err(io_error(e)),
        };
        received += n as u64;
        if received > MAX_REPLY_BYTES {
            return Err(SourceError::TooLarge {
                target: target.to_string(),
            });
        }
        let bytes = if crlf.needed(&chunk[..n]) {
            converted.clear();
            crlf.convert(&chunk[..n], &mut converted);
            &converted[..]
        } else {
            &chunk[..n]
        };
        incoming.take(bytes).map_err(|source| SourceError::Parse {
            target: target.to_string(),
            source,
        })?;
        if let Incoming::Stat { info, parser } = &incoming {
            if let Some(table) = parser.table() {
                sink.rows(table, info.as_ref(), false);
            }
        }
    }
    let mut snapshot = incoming.finish(target)?;
    // The source's own read time (`source.read_seconds`): from the connect, which the
    // deadline was set at, to the last byte of the reply.
    if let Some(info) = snapshot.info.as_mut() {
        let started = deadline.checked_sub(timeout).unwrap_or(deadline);
        info.read_seconds = Some(started.elapsed().as_secs_f64());
    }
    if snapshot.stats.repaired() {
        sink.restart();
    }
    sink.rows(snapshot.stats.table(), snapshot.info.as_ref(), true);
    Ok(snapshot)
}

/// A runtime API reply as it arrives: the `show info` block, then the dump, which is
/// parsed line by line as soon as its header has come, while HAProxy writes the rest.
enum Incoming {
    /// Before the dump: `show info`, or a reply that is not a dump at all; and the
    /// columns to parse.
    Head {
        head: Vec<u8>,
        keep: Option<Vec<String>>,
    },
    /// In the dump.
    Stat {
        info: Option<Info>,
        parser: Box<StatParser>,
    },
}

impl Incoming {
    fn take(&mut self, bytes: &[u8]) -> Result<(), crate::stats::ParseError> {
        match self {
            Incoming::Stat { parser, .. } => {
                parser.buffer().extend_from_slice(bytes);
                parser.advance()
            }
            Incoming::Head { head, keep } => {
                head.extend_from_slice(bytes);
                let Some(start) = dump_start(head) else {
                    return Ok(());
                };
                let mut parser = Box::new(StatParser::keeping(keep.take()));
                *parser.buffer() = head.split_off(start);
                let info = Some(String::from_utf8_lossy(head))
                    .filter(|i| !i.trim().is_empty())
                    .map(|i| Info::parse(&i));
                parser.advance()?;
                *self = Incoming::Stat { info, parser };
                Ok(())
            }
        }
    }

    fn finish(self, target: &str) -> Result<Snapshot, SourceError> {
        let (info, stats) = match self {
            // Never reached a dump: frame and report it as a whole.
            Incoming::Head { head, keep } => {
                let raw = split_reply(target, head, true)?;
                (
                    raw.info.as_deref().map(Info::parse),
                    Stats::parse_keeping(raw.stat, keep),
                )
            }
            Incoming::Stat { info, parser } => {
                if !parser.received_ends_with(b"\n\n") {
                    return Err(SourceError::Truncated {
                        target: target.to_string(),
                        detail: "the connection closed before the empty line that ends `show stat`"
                            .into(),
                    });
                }
                (info, parser.finish())
            }
        };
        Ok(Snapshot {
            info,
            stats: stats.map_err(|source| SourceError::Parse {
                target: target.to_string(),
                source,
            })?,
        })
    }
}

/// Where the dump starts in the reply so far: at once if the reply starts with its
/// `#` header, after the empty line that ends a `show info` block otherwise. `None` until
/// that is known, and for a reply that is neither (an error message, which `split_reply`
/// reports at the end).
fn dump_start(head: &[u8]) -> Option<usize> {
    let text_start = head.iter().position(|b| !b.is_ascii_whitespace())?;
    if head[text_start] == b'#' {
        return Some(text_start);
    }
    let first_line_end = memchr::memchr(b'\n', &head[text_start..])? + text_start;
    if !Info::looks_like(&String::from_utf8_lossy(&head[text_start..first_line_end])) {
        return None;
    }
    let start = memchr::memmem::find(&head[text_start..], b"\n\n")? + text_start + 2;
    (head.get(start) == Some(&b'#')).then_some(start)
}

fn remaining(deadline: Instant) -> Option<Duration> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
}

fn connect_error(target: &str, err: std::io::Error, timeout: Duration) -> SourceError {
    let reason = match err.kind() {
        ErrorKind::NotFound => {
            "no such socket (is haproxy running, and does its `stats socket` line name this path?)"
                .to_string()
        }
        ErrorKind::PermissionDenied => {
            "permission denied (run hapwatch as a user in the socket's group, e.g. `stats socket PATH mode 660 group haproxy`)"
                .to_string()
        }
        ErrorKind::ConnectionRefused => {
            "connection refused (nothing is listening; is haproxy running?)".to_string()
        }
        ErrorKind::TimedOut | ErrorKind::WouldBlock => {
            return SourceError::Timeout {
                target: target.to_string(),
                timeout,
            }
        }
        _ => err.to_string(),
    };
    SourceError::Connect {
        target: target.to_string(),
        reason,
    }
}
