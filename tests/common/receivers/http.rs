//! The HTTP(S) receiver (in-process, scripted answers, optional TLS terminator) and a
//! minimal HTTP client for the harness.

use super::super::{free_port, temp_dir};
use super::*;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tempfile::TempDir;

// ---------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------

/// What an [`HttpReceiver`] does with one request, once it has read it whole.
#[derive(Debug, Clone)]
pub enum Respond {
    /// Answer with this status, these headers and this body (`Content-Length` is added).
    Reply {
        /// The status code.
        status: u16,
        /// Extra headers.
        headers: Vec<(String, String)>,
        /// The body.
        body: Vec<u8>,
    },
    /// Never answer: keep the connection open, silent, until the client hangs up or the
    /// receiver is dropped. For client timeout tests.
    Hang,
    /// Close the connection without sending a byte.
    Close,
}

impl Respond {
    /// `status` with an empty body.
    pub fn status(status: u16) -> Respond {
        Respond::Reply {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// `status` with a `text/plain` body.
    pub fn text(status: u16, body: &str) -> Respond {
        Respond::status(status)
            .header("content-type", "text/plain; charset=utf-8")
            .body(body)
    }

    /// `status` with an `application/json` body.
    pub fn json(status: u16, body: &str) -> Respond {
        Respond::status(status)
            .header("content-type", "application/json")
            .body(body)
    }

    /// Adds a header (for [`Respond::Reply`]; ignored otherwise).
    pub fn header(mut self, name: &str, value: &str) -> Respond {
        if let Respond::Reply { headers, .. } = &mut self {
            headers.push((name.to_string(), value.to_string()));
        }
        self
    }

    /// Sets the body (for [`Respond::Reply`]; ignored otherwise).
    pub fn body(mut self, bytes: impl AsRef<[u8]>) -> Respond {
        if let Respond::Reply { body, .. } = &mut self {
            *body = bytes.as_ref().to_vec();
        }
        self
    }
}

/// One request an [`HttpReceiver`] read.
#[derive(Debug, Clone)]
pub struct ReceivedRequest {
    /// `POST`, `GET`, …
    pub method: String,
    /// The request target as sent: path and query (`/hook?x=1`).
    pub target: String,
    /// `HTTP/1.1` or `HTTP/1.0`.
    pub version: String,
    /// Headers in order, names lowercased, values trimmed.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked if it came chunked).
    pub body: Vec<u8>,
    /// What the receiver did with it.
    pub answered: Respond,
}

impl ReceivedRequest {
    /// The path part of the target.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }

    /// The query part of the target (after `?`), if any.
    pub fn query(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, q)| q)
    }

    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as UTF-8 text (panics if it is not).
    #[track_caller]
    pub fn body_text(&self) -> String {
        String::from_utf8(self.body.clone())
            .unwrap_or_else(|e| panic!("request body is not UTF-8: {e}"))
    }

    /// The body parsed as JSON (panics with the body if it is not).
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "request body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

#[derive(Default)]
pub(super) struct HttpLog {
    requests: Vec<ReceivedRequest>,
    errors: Vec<String>,
    connections: usize,
}

pub(super) struct HttpShared {
    stop: AtomicBool,
    log: Mutex<HttpLog>,
    changed: Condvar,
    queue: Mutex<VecDeque<Respond>>,
    default: Mutex<Respond>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// Options for an [`HttpReceiver`]; see [`HttpReceiver::builder`].
pub struct HttpReceiverBuilder {
    default: Respond,
    queue: VecDeque<Respond>,
    tls: Option<TestCa>,
}

impl HttpReceiverBuilder {
    /// What every request gets once the queue is empty (default: `200` with no body).
    pub fn default_response(mut self, respond: Respond) -> Self {
        self.default = respond;
        self
    }

    /// Appends a one-shot response: the first request gets the first queued response, and
    /// so on; then the default applies. E.g. `.then(Respond::status(500))` makes the first
    /// request fail and the retry succeed.
    pub fn then(mut self, respond: Respond) -> Self {
        self.queue.push_back(respond);
        self
    }

    /// Serves HTTPS with `ca`'s leaf certificate (clients trust [`TestCa::ca_pem`]): a
    /// Python TLS terminator listens on the public port and relays each connection to the
    /// in-process server, so recording and scripting work the same. Needs `/usr/bin/python3`.
    pub fn tls(mut self, ca: &TestCa) -> Self {
        self.tls = Some(ca.clone());
        self
    }

    /// Starts the receiver if what it needs is installed (only HTTPS needs anything:
    /// Python's `ssl` module); otherwise `None`, the skip reported like [`super::super::require`].
    pub fn start_or_skip(self) -> Option<HttpReceiver> {
        if self.tls.is_some() && !require_python_module("ssl") {
            return None;
        }
        Some(self.start())
    }

    /// Starts the receiver on a free loopback port.
    pub fn start(self) -> HttpReceiver {
        let listener =
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("cannot bind a loopback port");
        let addr = listener.local_addr().expect("receiver address");
        let shared = Arc::new(HttpShared {
            stop: AtomicBool::new(false),
            log: Mutex::default(),
            changed: Condvar::new(),
            queue: Mutex::new(self.queue),
            default: Mutex::new(self.default),
            threads: Mutex::default(),
        });
        let accept = {
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || loop {
                let conn = listener.accept();
                if shared.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok((stream, _)) = conn else { continue };
                shared.log.lock().unwrap().connections += 1;
                let worker = {
                    let shared = Arc::clone(&shared);
                    std::thread::spawn(move || serve_http(stream, &shared))
                };
                let mut threads = shared.threads.lock().unwrap();
                threads.retain(|t| !t.is_finished());
                threads.push(worker);
            })
        };
        let mut receiver = HttpReceiver {
            backend: addr,
            shared,
            accept: Some(accept),
            tls: None,
        };
        if let Some(ca) = self.tls {
            receiver.tls = Some(TlsTerminator::start(&ca, addr));
        }
        receiver
    }
}

/// A recording HTTP/1.1 endpoint on `127.0.0.1:<port>`, in this process (plus a Python
/// TLS terminator for HTTPS). Stops when dropped; a [`Respond::Hang`] connection is
/// released then.
///
/// It keeps connections alive as HTTP/1.1 allows (unless the client sends
/// `Connection: close` or speaks HTTP/1.0), handles `Content-Length` and chunked request
/// bodies, and answers `Expect: 100-continue`. A request is recorded once read whole,
/// before it is answered.
///
/// ```ignore
/// let hook = HttpReceiver::builder().then(Respond::status(503)).start();
/// // … hapwatch posts to hook.url_for("/hook") …
/// let reqs = hook.wait_for_requests(2, Duration::from_secs(5));
/// assert_eq!(reqs[1].json()["status"], "firing");
/// ```
pub struct HttpReceiver {
    backend: SocketAddr,
    shared: Arc<HttpShared>,
    accept: Option<JoinHandle<()>>,
    tls: Option<TlsTerminator>,
}

impl HttpReceiver {
    /// A receiver that answers `200` with an empty body to everything.
    pub fn start() -> HttpReceiver {
        HttpReceiver::builder().start()
    }

    /// Options: default response, a queue of one-shot responses, HTTPS.
    pub fn builder() -> HttpReceiverBuilder {
        HttpReceiverBuilder {
            default: Respond::status(200),
            queue: VecDeque::new(),
            tls: None,
        }
    }

    /// The address clients connect to (the TLS terminator's, for HTTPS).
    pub fn addr(&self) -> SocketAddr {
        self.tls.as_ref().map_or(self.backend, |t| t.addr)
    }

    /// `http://127.0.0.1:<port>` (or `https://…`), without a trailing slash.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr())
    }

    /// [`HttpReceiver::url`] followed by `path` (which should start with `/`).
    pub fn url_for(&self, path: &str) -> String {
        format!("{}{path}", self.url())
    }

    /// The CA to trust for HTTPS (`None` for plain HTTP).
    pub fn ca_file(&self) -> Option<PathBuf> {
        self.tls.as_ref().map(|t| t.ca.ca_pem())
    }

    /// Every request read so far, in the order they were read whole.
    pub fn requests(&self) -> Vec<ReceivedRequest> {
        self.shared.log.lock().unwrap().requests.clone()
    }

    /// Requests that could not be parsed (each answered `400` and its connection closed).
    pub fn errors(&self) -> Vec<String> {
        self.shared.log.lock().unwrap().errors.clone()
    }

    /// How many connections were accepted (for HTTPS: relayed by the terminator).
    pub fn connections(&self) -> usize {
        self.shared.log.lock().unwrap().connections
    }

    /// Waits until at least `n` requests were read, and returns them all (there may be
    /// more than `n`). Panics after `timeout`.
    pub fn wait_for_requests(&self, n: usize, timeout: Duration) -> Vec<ReceivedRequest> {
        let deadline = Instant::now() + timeout;
        let mut log = self.shared.log.lock().unwrap();
        loop {
            if log.requests.len() >= n {
                return log.requests.clone();
            }
            let now = Instant::now();
            if now >= deadline {
                let seen: Vec<String> = log
                    .requests
                    .iter()
                    .map(|r| format!("{} {}", r.method, r.target))
                    .collect();
                panic!(
                    "timed out after {timeout:?} waiting for {n} request(s) at {}; got {seen:?}, \
                     errors {:?}{}",
                    self.url(),
                    log.errors,
                    self.tls.as_ref().map(|t| t.log()).unwrap_or_default()
                );
            }
            log = self
                .shared
                .changed
                .wait_timeout(log, deadline - now)
                .unwrap()
                .0;
        }
    }

    /// Appends a one-shot response to the queue (see [`HttpReceiverBuilder::then`]).
    pub fn push_response(&self, respond: Respond) {
        self.shared.queue.lock().unwrap().push_back(respond);
    }

    /// Replaces the default response.
    pub fn set_default_response(&self, respond: Respond) {
        *self.shared.default.lock().unwrap() = respond;
    }
}

impl Drop for HttpReceiver {
    fn drop(&mut self) {
        if let Some(tls) = &mut self.tls {
            kill_child(&mut tls.child);
        }
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop, which then sees the stop flag.
        let _ = TcpStream::connect_timeout(&self.backend, Duration::from_secs(1));
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        // Connection threads look at the stop flag every TICK.
        let threads = std::mem::take(&mut *self.shared.threads.lock().unwrap());
        for thread in threads {
            let _ = thread.join();
        }
    }
}

/// Serves one connection: requests in a row until the client or the script closes it.
pub(super) fn serve_http(stream: TcpStream, shared: &HttpShared) {
    let mut conn = Conn::new(stream, Some(&shared.stop), CONNECTION_GUARD);
    loop {
        let request = match read_request(&mut conn) {
            Ok(Some(request)) => request,
            Ok(None) => return, // the client closed (or we are stopping)
            Err(e) => {
                if shared.stop.load(Ordering::SeqCst) {
                    return;
                }
                shared.log.lock().unwrap().errors.push(e.clone());
                shared.changed.notify_all();
                let _ = conn.write_all(
                    b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
                return;
            }
        };
        let (method, target, version, headers, body) = request;
        let client_closes = header_has_token(&headers, "connection", "close")
            || (version == "HTTP/1.0" && !header_has_token(&headers, "connection", "keep-alive"));
        let respond = {
            // Pop and record under one lock, so that the n-th request read gets the n-th
            // queued response.
            let mut log = shared.log.lock().unwrap();
            let respond = shared
                .queue
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or_else(|| shared.default.lock().unwrap().clone());
            log.requests.push(ReceivedRequest {
                method,
                target,
                version: version.clone(),
                headers,
                body,
                answered: respond.clone(),
            });
            respond
        };
        shared.changed.notify_all();
        match respond {
            Respond::Reply {
                status,
                headers,
                body,
            } => {
                let mut head = format!("HTTP/1.1 {status} {}\r\n", reason_phrase(status));
                for (name, value) in &headers {
                    head.push_str(&format!("{name}: {value}\r\n"));
                }
                head.push_str(&format!("content-length: {}\r\n", body.len()));
                if client_closes {
                    head.push_str("connection: close\r\n");
                }
                head.push_str("\r\n");
                let mut bytes = head.into_bytes();
                bytes.extend_from_slice(&body);
                if conn.write_all(&bytes).is_err() || client_closes {
                    conn.close();
                    return;
                }
            }
            Respond::Hang => {
                conn.hang();
                return;
            }
            Respond::Close => {
                conn.close();
                return;
            }
        }
    }
}

pub(super) fn header_has_token(headers: &[(String, String)], name: &str, token: &str) -> bool {
    headers
        .iter()
        .filter(|(n, _)| n == name)
        .any(|(_, v)| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

pub(super) fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

/// A buffered TCP connection whose reads give up at a deadline (extended by each byte
/// received) or as soon as `stop` is set.
pub(super) struct Conn<'a> {
    stream: TcpStream,
    buf: Vec<u8>,
    stop: Option<&'a AtomicBool>,
    idle: Duration,
}

impl<'a> Conn<'a> {
    fn new(stream: TcpStream, stop: Option<&'a AtomicBool>, idle: Duration) -> Conn<'a> {
        let _ = stream.set_read_timeout(Some(TICK));
        let _ = stream.set_write_timeout(Some(idle));
        Conn {
            stream,
            buf: Vec::new(),
            stop,
            idle,
        }
    }

    fn stopping(&self) -> bool {
        self.stop.is_some_and(|s| s.load(Ordering::SeqCst))
    }

    /// Reads more bytes into the buffer; `Ok(false)` at end of stream (or when stopping).
    fn fill(&mut self) -> Result<bool, String> {
        let deadline = Instant::now() + self.idle;
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if self.stopping() {
                return Ok(false);
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(true);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock
                            | std::io::ErrorKind::TimedOut
                            | std::io::ErrorKind::Interrupted
                    ) =>
                {
                    if Instant::now() >= deadline {
                        return Err(format!("no data for {:?}", self.idle));
                    }
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    /// The bytes up to and including the first `\r\n\r\n`; `Ok(None)` if the stream ends
    /// cleanly before any byte of it.
    fn read_head(&mut self) -> Result<Option<Vec<u8>>, String> {
        loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                return Ok(Some(self.buf.drain(..i + 4).collect()));
            }
            if self.buf.len() > 64 * 1024 {
                return Err("header section longer than 64 KiB".into());
            }
            if !self.fill()? {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(format!(
                        "stream ended inside a header section: {:?}",
                        String::from_utf8_lossy(&self.buf)
                    ))
                };
            }
        }
    }

    fn read_exact(&mut self, n: usize) -> Result<Vec<u8>, String> {
        while self.buf.len() < n {
            if !self.fill()? {
                return Err(format!(
                    "stream ended after {} of {n} body bytes",
                    self.buf.len()
                ));
            }
        }
        Ok(self.buf.drain(..n).collect())
    }

    fn read_line(&mut self) -> Result<String, String> {
        loop {
            if let Some(i) = find(&self.buf, b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..i + 2).collect();
                return Ok(String::from_utf8_lossy(&line[..i]).into_owned());
            }
            if !self.fill()? {
                return Err("stream ended inside a chunk header".into());
            }
        }
    }

    fn read_to_end(&mut self) -> Result<Vec<u8>, String> {
        while self.fill()? {}
        Ok(std::mem::take(&mut self.buf))
    }

    fn read_chunked(&mut self) -> Result<Vec<u8>, String> {
        let mut body = Vec::new();
        loop {
            let line = self.read_line()?;
            let size = line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size, 16)
                .map_err(|_| format!("bad chunk size line {line:?}"))?;
            if size == 0 {
                // Trailer fields, up to an empty line.
                while !self.read_line()?.is_empty() {}
                return Ok(body);
            }
            body.extend(self.read_exact(size)?);
            if self.read_exact(2)? != b"\r\n" {
                return Err("chunk not followed by CRLF".into());
            }
        }
    }

    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// Sits on the connection without answering until the client hangs up, the receiver
    /// stops, or [`CONNECTION_GUARD`] passes.
    fn hang(&mut self) {
        let deadline = Instant::now() + CONNECTION_GUARD;
        while Instant::now() < deadline && !self.stopping() {
            let mut byte = [0u8; 1024];
            match self.stream.read(&mut byte) {
                Ok(0) => return,
                Ok(_) => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return,
            }
        }
    }

    fn close(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

pub(super) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Parses a head (start line and header fields; names lowercased).
pub(super) fn parse_head(head: &[u8]) -> Result<(String, Vec<(String, String)>), String> {
    let text = std::str::from_utf8(head).map_err(|_| "header section is not UTF-8".to_string())?;
    let mut lines = text.split("\r\n");
    let start = lines.next().unwrap_or_default().to_string();
    let mut headers = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("bad header line {line:?}"))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    Ok((start, headers))
}

pub(super) fn content_length(headers: &[(String, String)]) -> Result<Option<usize>, String> {
    headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map(|(_, v)| v.parse().map_err(|_| format!("bad content-length {v:?}")))
        .transpose()
}

pub(super) type Request = (String, String, String, Vec<(String, String)>, Vec<u8>);

/// Reads one request: `Ok(None)` when the client closed between requests.
pub(super) fn read_request(conn: &mut Conn) -> Result<Option<Request>, String> {
    let Some(head) = conn.read_head()? else {
        return Ok(None);
    };
    let (start, headers) = parse_head(&head)?;
    let mut parts = start.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(format!("bad request line {start:?}"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(format!("unsupported version in {start:?}"));
    }
    if header_has_token(&headers, "expect", "100-continue") {
        conn.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .map_err(|e| e.to_string())?;
    }
    let body = if header_has_token(&headers, "transfer-encoding", "chunked") {
        conn.read_chunked()?
    } else {
        match content_length(&headers)? {
            Some(n) => conn.read_exact(n)?,
            None => Vec::new(),
        }
    };
    Ok(Some((
        method.to_string(),
        target.to_string(),
        version.to_string(),
        headers,
        body,
    )))
}

/// The HTTPS front of an [`HttpReceiver`].
pub(super) struct TlsTerminator {
    child: Option<Child>,
    addr: SocketAddr,
    ca: TestCa,
    dir: TempDir,
}

/// Relays TLS connections on `port` to the plain backend: `tls_proxy.py CONFIG.json`.
pub(super) const TLS_PROXY_SCRIPT: &str = r##"
import asyncio, json, os, ssl, sys

cfg = json.load(open(sys.argv[1]))
ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(cfg["cert"], cfg["key"])

async def pump(reader, writer, half_close):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except Exception:
        pass
    try:
        if half_close and writer.can_write_eof():
            writer.write_eof()
        else:
            writer.close()
    except Exception:
        pass

async def handle(client_r, client_w):
    try:
        backend_r, backend_w = await asyncio.open_connection("127.0.0.1", cfg["backend_port"])
    except Exception:
        client_w.close()
        return
    await asyncio.gather(pump(client_r, backend_w, True), pump(backend_r, client_w, False))
    backend_w.close()

async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", cfg["port"], ssl=ctx,
                                        reuse_address=True)
    with open(cfg["ready_file"] + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.rename(cfg["ready_file"] + ".tmp", cfg["ready_file"])
    async with server:
        await server.serve_forever()

asyncio.run(main())
"##;

impl TlsTerminator {
    fn start(ca: &TestCa, backend: SocketAddr) -> TlsTerminator {
        let dir = temp_dir();
        let script = dir.path().join("tls_proxy.py");
        std::fs::write(&script, format!("{PY_PARENT_WATCH}\n{TLS_PROXY_SCRIPT}"))
            .expect("cannot write the TLS proxy script");
        let log = dir.path().join("tls_proxy.log");
        let ready = dir.path().join("ready");
        let mut failures = String::new();
        for attempt in 1..=START_ATTEMPTS {
            let port = free_port();
            let config = json!({
                "port": port,
                "backend_port": backend.port(),
                "cert": ca.cert_pem(),
                "key": ca.key_pem(),
                "ready_file": ready,
            });
            let config_path = dir.path().join("tls_proxy.json");
            std::fs::write(&config_path, config.to_string()).expect("cannot write the config");
            let mut child =
                spawn_logged(Command::new(python3()).arg(&script).arg(&config_path), &log);
            let started = wait_started(&mut child, || {
                if ready.exists() {
                    Ok(())
                } else {
                    Err("no ready file yet".into())
                }
            });
            match started {
                Ok(()) => {
                    return TlsTerminator {
                        child: Some(child),
                        addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
                        ca: ca.clone(),
                        dir,
                    }
                }
                Err(StartError::Exited(status)) => {
                    failures.push_str(&format!("attempt {attempt}: exited ({status})\n"))
                }
                Err(StartError::TimedOut(last)) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "the TLS terminator did not start within {START_LIMIT:?} ({last}):\n{}",
                        read_log(&log)
                    )
                }
            }
        }
        panic!(
            "the TLS terminator failed to start:\n{failures}{}",
            read_log(&log)
        );
    }

    fn log(&self) -> String {
        let text = read_log(&self.dir.path().join("tls_proxy.log"));
        if text.is_empty() {
            text
        } else {
            format!("\nTLS terminator log:\n{text}")
        }
    }
}

// ---------------------------------------------------------------------------------------
// A minimal HTTP client for the harness
// ---------------------------------------------------------------------------------------

/// A response read by [`http_request`].
#[derive(Debug, Clone)]
pub struct HttpReply {
    /// The status code.
    pub status: u16,
    /// Headers, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked).
    pub body: Vec<u8>,
}

impl HttpReply {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON (panics with the body if it is not).
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response body is not JSON ({e}): {}", self.text()))
    }
}

/// One HTTP/1.1 request to a `http://127.0.0.1:PORT/…` URL (plain HTTP, loopback only),
/// sent with `Connection: close`; connecting and each read may take up to `timeout`.
/// `body` is sent with a `Content-Length` when not empty. For the harness's own calls
/// (reading Alertmanager's state, self-tests), never as a stand-in for hapwatch.
pub fn http_request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> Result<HttpReply, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: only http:// URLs are supported"))?;
    let (authority, target) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr: SocketAddr = authority
        .parse()
        .map_err(|_| format!("{url}: the host must be an IP:port"))?;
    if !addr.ip().is_loopback() {
        return Err(format!("{url}: only loopback addresses are allowed"));
    }
    let stream = TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("{url}: {e}"))?;
    let mut conn = Conn::new(stream, None, timeout);
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nhost: {authority}\r\nconnection: close\r\n\
         user-agent: hapwatch-test-harness\r\n"
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH") {
        head.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    conn.write_all(&bytes).map_err(|e| format!("{url}: {e}"))?;
    loop {
        let head = conn
            .read_head()
            .map_err(|e| format!("{url}: {e}"))?
            .ok_or_else(|| format!("{url}: connection closed without a response"))?;
        let (start, headers) = parse_head(&head).map_err(|e| format!("{url}: {e}"))?;
        let status: u16 = start
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("{url}: bad status line {start:?}"))?;
        if (100..200).contains(&status) {
            continue; // an interim response; the real one follows
        }
        let body = if status == 204 || status == 304 || method == "HEAD" {
            Ok(Vec::new())
        } else if header_has_token(&headers, "transfer-encoding", "chunked") {
            conn.read_chunked()
        } else {
            match content_length(&headers)? {
                Some(n) => conn.read_exact(n),
                None => conn.read_to_end(),
            }
        }
        .map_err(|e| format!("{url}: {e}"))?;
        return Ok(HttpReply {
            status,
            headers,
            body,
        });
    }
}
