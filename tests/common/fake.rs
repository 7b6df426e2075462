//! Fake HAProxy endpoints that misbehave on purpose, in background threads.
//!
//! A [`FakeServer`] listens on a unix socket or a loopback TCP port. For each connection it
//! reads the request (up to the first `\n` for the runtime API, up to the blank line for
//! HTTP), answers as its [`Reply`] says, then keeps reading until the client hangs up, and
//! records every byte the client sent. [`FakeServer::requests`] returns those recordings
//! once every accepted connection is over, so a test can assert what hapwatch sent.

use super::temp_dir;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// Longest a fake connection waits for its client, so that a stuck client cannot leave a
/// thread behind forever.
const CONNECTION_GUARD: Duration = Duration::from_secs(30);

/// How long [`FakeServer::requests`] waits for open connections to end.
const REQUESTS_LIMIT: Duration = Duration::from_secs(10);

/// What a fake server does once it has read a request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Send these bytes, then close the connection (no bytes: an empty reply).
    Bytes(Vec<u8>),
    /// Never answer; keep the connection open until the client gives up.
    Silent,
    /// Send `bytes` in pieces of `chunk` bytes with `pause` between them: a peer slow
    /// enough that no single read times out, but that would take ages to finish.
    Trickle {
        /// The whole reply.
        bytes: Vec<u8>,
        /// Bytes per piece.
        chunk: usize,
        /// Pause after each piece.
        pause: Duration,
    },
    /// Send `head`, then `body` again and again until the client hangs up: a reply that
    /// never ends.
    Endless {
        /// Sent once, first.
        head: Vec<u8>,
        /// Sent over and over.
        body: Vec<u8>,
    },
}

impl Reply {
    /// [`Reply::Bytes`] from anything byte-like.
    pub fn bytes(bytes: impl AsRef<[u8]>) -> Reply {
        Reply::Bytes(bytes.as_ref().to_vec())
    }

    /// A complete HTTP/1.1 response with `Content-Length` and `Connection: close`.
    pub fn http(status_line: &str, content_type: &str, body: impl AsRef<[u8]>) -> Reply {
        let body = body.as_ref();
        let mut bytes = format!(
            "HTTP/1.1 {status_line}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\
             connection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        bytes.extend_from_slice(body);
        Reply::Bytes(bytes)
    }
}

enum Listener {
    Unix(UnixListener),
    Tcp(TcpListener),
}

enum Conn {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Conn {
    fn prepare(&self) {
        let _ = match self {
            Conn::Unix(s) => s.set_read_timeout(Some(CONNECTION_GUARD)),
            Conn::Tcp(s) => s.set_read_timeout(Some(CONNECTION_GUARD)),
        };
    }

    fn shutdown_write(&self) {
        let _ = match self {
            Conn::Unix(s) => s.shutdown(Shutdown::Write),
            Conn::Tcp(s) => s.shutdown(Shutdown::Write),
        };
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Unix(s) => s.read(buf),
            Conn::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Unix(s) => s.write(buf),
            Conn::Tcp(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[derive(Default)]
struct Log {
    accepted: usize,
    requests: Vec<Vec<u8>>,
}

/// A misbehaving stand-in for HAProxy. Stops (and removes its socket) when dropped.
pub struct FakeServer {
    path: Option<PathBuf>,
    addr: Option<SocketAddr>,
    stop: Arc<AtomicBool>,
    log: Arc<(Mutex<Log>, Condvar)>,
    accept: Option<JoinHandle<()>>,
    _dir: Option<TempDir>,
}

impl FakeServer {
    /// A runtime API stand-in on a unix socket in a fresh temporary directory.
    pub fn unix(reply: Reply) -> FakeServer {
        let dir = temp_dir();
        let path = dir.path().join("fake.sock");
        let listener = UnixListener::bind(&path).expect("cannot bind the fake unix socket");
        let mut server = FakeServer::spawn(Listener::Unix(listener), reply, b"\n");
        server.path = Some(path);
        server._dir = Some(dir);
        server
    }

    /// A runtime API stand-in on a loopback TCP port.
    pub fn tcp(reply: Reply) -> FakeServer {
        FakeServer::tcp_with(reply, b"\n")
    }

    /// A stats page stand-in: reads one HTTP request head, answers with `reply`.
    pub fn http(reply: Reply) -> FakeServer {
        FakeServer::tcp_with(reply, b"\r\n\r\n")
    }

    fn tcp_with(reply: Reply, terminator: &'static [u8]) -> FakeServer {
        let listener =
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("cannot bind a fake TCP port");
        let addr = listener.local_addr().expect("fake server address");
        let mut server = FakeServer::spawn(Listener::Tcp(listener), reply, terminator);
        server.addr = Some(addr);
        server
    }

    fn spawn(listener: Listener, reply: Reply, terminator: &'static [u8]) -> FakeServer {
        let stop = Arc::new(AtomicBool::new(false));
        let log: Arc<(Mutex<Log>, Condvar)> = Arc::default();
        let accept = {
            let (stop, log) = (Arc::clone(&stop), Arc::clone(&log));
            std::thread::spawn(move || loop {
                let conn = match &listener {
                    Listener::Unix(l) => l.accept().map(|(s, _)| Conn::Unix(s)),
                    Listener::Tcp(l) => l.accept().map(|(s, _)| Conn::Tcp(s)),
                };
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                log.0.lock().unwrap().accepted += 1;
                let (reply, log) = (reply.clone(), Arc::clone(&log));
                std::thread::spawn(move || {
                    let received = serve(conn, &reply, terminator);
                    let (lock, done) = &*log;
                    lock.lock().unwrap().requests.push(received);
                    done.notify_all();
                });
            })
        };
        FakeServer {
            path: None,
            addr: None,
            stop,
            log,
            accept: Some(accept),
            _dir: None,
        }
    }

    /// The unix socket path (unix fakes only).
    pub fn path(&self) -> &Path {
        self.path.as_deref().expect("not a unix socket fake")
    }

    /// The TCP address (TCP and HTTP fakes only).
    pub fn addr(&self) -> SocketAddr {
        self.addr.expect("not a TCP fake")
    }

    /// `http://127.0.0.1:PORT{path}` (HTTP fakes).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr())
    }

    /// Everything each client sent, one entry per connection, once all accepted
    /// connections have ended (waits up to 10 s for that).
    pub fn requests(&self) -> Vec<Vec<u8>> {
        let (lock, done) = &*self.log;
        let deadline = Instant::now() + REQUESTS_LIMIT;
        let mut log = lock.lock().unwrap();
        while log.requests.len() < log.accepted {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "a client connection to the fake server is still open after {REQUESTS_LIMIT:?}"
            );
            log = done.wait_timeout(log, left).unwrap().0;
        }
        log.requests.clone()
    }

    /// [`FakeServer::requests`] as (lossy) text, for readable assertions.
    pub fn requests_text(&self) -> Vec<String> {
        self.requests()
            .iter()
            .map(|r| String::from_utf8_lossy(r).into_owned())
            .collect()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocked `accept` so that the thread sees the flag.
        if let Some(path) = &self.path {
            let _ = UnixStream::connect(path);
        }
        if let Some(addr) = &self.addr {
            let _ = TcpStream::connect_timeout(addr, Duration::from_secs(1));
        }
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

/// Handles one connection and returns every byte the client sent on it.
fn serve(mut conn: Conn, reply: &Reply, terminator: &[u8]) -> Vec<u8> {
    conn.prepare();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let mut read_more = |conn: &mut Conn, received: &mut Vec<u8>| match conn.read(&mut buf) {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            received.extend_from_slice(&buf[..n]);
            true
        }
    };
    // The request: up to the terminator, or until the client stops sending.
    while !contains(&received, terminator) {
        if !read_more(&mut conn, &mut received) {
            return received;
        }
    }
    match reply {
        Reply::Bytes(bytes) => {
            let _ = conn.write_all(bytes);
            conn.shutdown_write();
        }
        Reply::Silent => {}
        Reply::Trickle {
            bytes,
            chunk,
            pause,
        } => {
            for piece in bytes.chunks((*chunk).max(1)) {
                if conn.write_all(piece).is_err() {
                    break; // The client gave up, as it should.
                }
                std::thread::sleep(*pause);
            }
            conn.shutdown_write();
        }
        Reply::Endless { head, body } => {
            if conn.write_all(head).is_ok() {
                while conn.write_all(body).is_ok() {}
            }
            conn.shutdown_write();
        }
    }
    // Anything else the client sends before hanging up is recorded too.
    while read_more(&mut conn, &mut received) {}
    received
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
