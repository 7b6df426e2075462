//! Real receivers for the notifier integration tests: an SMTP server, an HTTP(S) endpoint
//! that records requests and answers as scripted, and a real Prometheus Alertmanager.
//!
//! - [`SmtpServer`]: Debian's aiosmtpd (`python3-aiosmtpd`) run by `/usr/bin/python3` from a
//!   small script written to a temporary directory. Plain SMTP, STARTTLS or implicit TLS
//!   (SMTPS) with a certificate from a throw-away [`TestCa`], optional AUTH, and scripted
//!   refusals (MAIL, RCPT, DATA). Every accepted message is saved as one JSON file and read
//!   back as a [`ReceivedMail`]; every refusal as an [`SmtpRefusal`]. [`SmtpServer::stop`] and
//!   [`SmtpServer::restart`] take it down and bring it back on the same port.
//! - [`HttpReceiver`]: an in-process HTTP/1.1 server (std only) that records every request
//!   ([`ReceivedRequest`]) and answers from a queue of scripted [`Respond`]s, then a default:
//!   a status and body, [`Respond::Hang`] (read the request, never answer) or
//!   [`Respond::Close`] (hang up without answering). With [`HttpReceiverBuilder::tls`] a
//!   small Python TLS terminator in front of it makes it an HTTPS endpoint.
//! - [`Alertmanager`]: Debian's `prometheus-alertmanager` with a generated config, its own
//!   storage directory and clustering disabled; [`Alertmanager::alerts`] reads what it holds.
//! - [`TestCa`]: a throw-away CA and a leaf certificate for `127.0.0.1`/`localhost`, made
//!   with the `openssl` command (rustls refuses a self-signed certificate used directly as
//!   a server certificate, so the leaf is signed by the CA and clients trust the CA file).
//! - [`http_request`]: a minimal HTTP/1.1 client for the harness's own calls.
//!
//! Each receiver has a `start_or_skip` that checks what it needs, like
//! [`super::require`]: a missing component prints a `SKIPPED` line (or panics under
//! `CI=true`). Debian packages: `python3-aiosmtpd` (SMTP, and `python3` for the HTTPS
//! terminator), `openssl` (certificates), `prometheus-alertmanager`.
//!
//! Only 127.0.0.1 is ever used. Nothing sleeps as a means of synchronization: waits poll a
//! condition (a file, a port, a condition variable) against a deadline, and every child
//! process is killed when its owner is dropped.

use super::{free_port, in_ci, temp_dir, test_name, wait_until};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// Longest any receiver takes to come up (Python start-up, Alertmanager start-up).
const START_LIMIT: Duration = Duration::from_secs(15);

/// How many fresh ports a receiver tries when the one it picked was taken meanwhile.
const START_ATTEMPTS: usize = 3;

/// Longest an HTTP connection may sit idle before the receiver drops it, so that a stuck
/// client cannot leave a thread behind forever.
const CONNECTION_GUARD: Duration = Duration::from_secs(30);

/// How often blocked reads wake up to look at the stop flag and their deadline.
const TICK: Duration = Duration::from_millis(20);

// ---------------------------------------------------------------------------------------
// Components: Python modules
// ---------------------------------------------------------------------------------------

/// The Python that runs the receivers' scripts: `HAPWATCH_TEST_PYTHON3` if set, else
/// Debian's `/usr/bin/python3` (whose `dist-packages` hold `python3-aiosmtpd`; a `python3`
/// first on `PATH`, such as a pyenv build, would not see them).
pub fn python3() -> PathBuf {
    std::env::var_os("HAPWATCH_TEST_PYTHON3")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/python3"))
}

/// True when [`python3`] runs and can `import module`. When not, reports it like
/// [`super::require`]: panics under `CI=true`, otherwise prints
/// `SKIPPED: <test>: python module <module> not installed` to stderr and returns false.
///
/// ```ignore
/// if !require_python_module("aiosmtpd") { return; }
/// ```
pub fn require_python_module(module: &str) -> bool {
    let python = python3();
    let probe = Command::new(&python)
        .arg("-c")
        .arg(format!("import {module}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())
        .and_then(|child| wait_exit(child, Duration::from_secs(20)));
    if matches!(probe, Ok(true)) {
        return true;
    }
    let test = test_name();
    let component = if python.is_file() {
        format!("python module {module} (for {})", python.display())
    } else {
        format!("{} (python3, needed for module {module})", python.display())
    };
    let package = match module {
        "aiosmtpd" => "python3-aiosmtpd",
        _ => "python3",
    };
    if in_ci() {
        panic!(
            "{test}: {component} is not installed, and CI is set: install it in the CI image \
             (Debian: apt-get install {package}; or point HAPWATCH_TEST_PYTHON3 at a \
             Python that has it)"
        );
    }
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: {test}: {component} not installed"
    );
    false
}

/// Waits for `child` to exit within `limit` (killing it otherwise); true when it exited 0.
fn wait_exit(mut child: Child, limit: Duration) -> Result<bool, String> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Ok(status.success());
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("did not exit within {limit:?}"));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs `command` to completion within `limit` (killing it after that); panics with its
/// output when it fails.
fn run_checked(command: &mut Command, limit: Duration) {
    let described = format!("{command:?}");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {described}: {e}"));
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("stdout is piped")));
    let stderr = drain(Box::new(child.stderr.take().expect("stderr is piped")));
    let status = wait_exit(child, limit);
    let output = [stdout, stderr]
        .map(|t| String::from_utf8_lossy(&t.join().unwrap_or_default()).into_owned())
        .concat();
    match status {
        Ok(true) => {}
        Ok(false) => panic!("{described} failed:\n{output}"),
        Err(e) => panic!("{described}: {e}:\n{output}"),
    }
}

// ---------------------------------------------------------------------------------------
// A throw-away certificate authority
// ---------------------------------------------------------------------------------------

/// A throw-away CA and one leaf certificate signed by it, valid for `127.0.0.1` and
/// `localhost` (P-256 keys, valid from now for two days), made with the `openssl` command.
///
/// Servers use [`TestCa::cert_pem`] and [`TestCa::key_pem`]; clients trust
/// [`TestCa::ca_pem`] (hapwatch's `ca_file`). A second `TestCa::generate()` gives an
/// unrelated CA, for "wrong CA" tests. Cloning is cheap; the files live until the last
/// clone is dropped.
#[derive(Clone)]
pub struct TestCa {
    dir: Arc<TempDir>,
}

impl TestCa {
    /// Generates a CA and a leaf certificate. Guard the test with `require("openssl")`.
    pub fn generate() -> TestCa {
        let openssl = super::find_program("openssl")
            .expect("openssl is not installed: guard the test with require(\"openssl\")");
        let dir = temp_dir();
        let path = |name: &str| dir.path().join(name);
        std::fs::write(
            path("leaf.ext"),
            "basicConstraints = critical, CA:FALSE\n\
             keyUsage = critical, digitalSignature, keyEncipherment\n\
             extendedKeyUsage = serverAuth\n\
             subjectAltName = IP:127.0.0.1, DNS:localhost\n",
        )
        .expect("cannot write leaf.ext");
        let limit = Duration::from_secs(20);
        run_checked(
            Command::new(&openssl)
                .args(["req", "-x509", "-newkey", "ec"])
                .args(["-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"])
                .arg("-keyout")
                .arg(path("ca.key"))
                .arg("-out")
                .arg(path("ca.pem"))
                .args(["-days", "2", "-subj", "/CN=hapwatch test CA"])
                .args(["-addext", "basicConstraints=critical,CA:TRUE"])
                .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]),
            limit,
        );
        run_checked(
            Command::new(&openssl)
                .args(["req", "-new", "-newkey", "ec"])
                .args(["-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"])
                .arg("-keyout")
                .arg(path("leaf.key"))
                .arg("-out")
                .arg(path("leaf.csr"))
                .args(["-subj", "/CN=localhost"]),
            limit,
        );
        run_checked(
            Command::new(&openssl)
                .args(["x509", "-req", "-in"])
                .arg(path("leaf.csr"))
                .arg("-CA")
                .arg(path("ca.pem"))
                .arg("-CAkey")
                .arg(path("ca.key"))
                .args(["-set_serial", "2", "-days", "2", "-extfile"])
                .arg(path("leaf.ext"))
                .arg("-out")
                .arg(path("leaf.pem")),
            limit,
        );
        TestCa { dir: Arc::new(dir) }
    }

    /// The CA certificate (PEM): what a client must trust.
    pub fn ca_pem(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The leaf certificate (PEM) for `127.0.0.1` and `localhost`, signed by the CA.
    pub fn cert_pem(&self) -> PathBuf {
        self.dir.path().join("leaf.pem")
    }

    /// The leaf certificate's private key (PEM, PKCS#8, unencrypted).
    pub fn key_pem(&self) -> PathBuf {
        self.dir.path().join("leaf.key")
    }
}

// ---------------------------------------------------------------------------------------
// Child processes started from a script
// ---------------------------------------------------------------------------------------

/// Spawns `command` with stdout and stderr appended to `log`, in its own directory.
fn spawn_logged(command: &mut Command, log: &Path) -> Child {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", log.display()));
    let described = format!("{command:?}");
    command
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("cannot clone a log handle"))
        .stderr(file)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {described}: {e}"))
}

/// Why a child did not come up.
enum StartError {
    /// It exited (most likely its port was taken): its exit status.
    Exited(String),
    /// It was still not ready at the deadline: the last state seen.
    TimedOut(String),
}

/// Polls `ready` until it is `Ok`, the child exits, or [`START_LIMIT`] passes.
fn wait_started(
    child: &mut Child,
    mut ready: impl FnMut() -> Result<(), String>,
) -> Result<(), StartError> {
    let deadline = Instant::now() + START_LIMIT;
    let mut pause = Duration::from_millis(5);
    loop {
        if let Some(status) = child.try_wait().expect("cannot poll a child") {
            return Err(StartError::Exited(status.to_string()));
        }
        match ready() {
            Ok(()) => return Ok(()),
            Err(last) if Instant::now() >= deadline => return Err(StartError::TimedOut(last)),
            Err(_) => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
        }
    }
}

fn kill_child(child: &mut Option<Child>) {
    if let Some(mut child) = child.take() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Lines the Python scripts share: the parent watchdog, so that a receiver does not
/// outlive a test binary that was killed before it could drop it.
const PY_PARENT_WATCH: &str = r##"
import os as _os, threading as _threading, time as _time

def _watch_parent(ppid=_os.getppid()):
    # Not synchronization: only a guard against outliving a killed test binary.
    while _os.getppid() == ppid:
        _time.sleep(0.2)
    _os._exit(0)

_threading.Thread(target=_watch_parent, daemon=True).start()
"##;

// ---------------------------------------------------------------------------------------
// SMTP
// ---------------------------------------------------------------------------------------

/// The SMTP server script (aiosmtpd 1.4, Python 3.11): `python3 smtp_server.py CONFIG.json`.
const SMTP_SCRIPT: &str = r##"
import asyncio, email, email.policy, json, logging, os, ssl, sys, time
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

cfg = json.load(open(sys.argv[1]))
logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                    format="%(asctime)s %(name)s %(levelname)s %(message)s")
seq = 0

def save(kind, record):
    """One JSON file per event, written atomically (temp file, rename), named to sort."""
    global seq
    seq += 1
    name = f"{time.time_ns():020d}-{os.getpid()}-{seq:06d}-{kind}"
    tmp = os.path.join(cfg["out_dir"], "." + name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(record, f)
    os.rename(tmp, os.path.join(cfg["out_dir"], name + ".json"))

def text(b):
    if b is None:
        return None
    if isinstance(b, (bytes, bytearray)):
        return b.decode("utf-8", "replace")
    return str(b)

def session_info(server, session):
    # Works for STARTTLS and implicit TLS alike (aiosmtpd sets session.ssl for STARTTLS
    # only): after STARTTLS server.transport is the TLS application transport.
    transport = server.transport
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    user = None
    if session.authenticated:
        data = session.auth_data
        user = text(data.login) if isinstance(data, LoginPassword) else text(data)
    return {
        "tls": ssl_object is not None,
        "tls_version": ssl_object.version() if ssl_object is not None else None,
        "user": user,
        "helo": session.host_name,
    }

def refuse(command, argument, reply, server, session):
    record = {"command": command, "argument": argument, "reply": reply}
    record.update(session_info(server, session))
    save("refused", record)
    return reply

def decode(raw):
    """Python's own MIME reading of the message: an independent check of the raw text."""
    try:
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        plain = msg.get_body(preferencelist=("plain",))
        html = msg.get_body(preferencelist=("html",))
        content = lambda part: None if part is None else part.get_content().replace("\r\n", "\n")
        return {
            "decoded_headers": [[k, str(v)] for k, v in msg.items()],
            "text": content(plain),
            "html": content(html),
            "decode_error": None,
        }
    except Exception as e:
        return {"decoded_headers": [], "text": None, "html": None, "decode_error": repr(e)}

class Handler:
    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname  # aiosmtpd leaves this to a 5-argument EHLO hook
        if cfg["auth"] is None:
            # Without AUTH configured, do not advertise aiosmtpd's always-failing default.
            responses = [r for r in responses if not r[4:].startswith("AUTH")]
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if cfg["reject_mail"]:
            return refuse("MAIL", address, cfg["reject_mail"], server, session)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        rejects = cfg["reject_rcpt"]
        reply = rejects.get(address.lower()) or rejects.get("*")
        if reply:
            return refuse("RCPT", address, reply, server, session)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if cfg["reject_data"]:
            return refuse("DATA", envelope.mail_from, cfg["reject_data"], server, session)
        raw = envelope.original_content or b""
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "mail_options": list(envelope.mail_options),
            "data": raw.decode("utf-8", "replace"),
        }
        record.update(session_info(server, session))
        record.update(decode(raw))
        save("mail", record)
        return "250 2.0.0 Message accepted"

def authenticator(server, session, envelope, mechanism, auth_data):
    want = cfg["auth"]
    if isinstance(auth_data, LoginPassword):
        login, password = text(auth_data.login), text(auth_data.password)
        if login == want["user"] and password == want["password"]:
            return AuthResult(success=True, auth_data=auth_data)
        argument = f"{mechanism} {login}"
    else:
        argument = mechanism
    refuse("AUTH", argument, "535 5.7.8 Authentication credentials invalid", server, session)
    return AuthResult(success=False, handled=False)

def main():
    tls_context = None
    if cfg["cert"]:
        tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls_context.load_cert_chain(cfg["cert"], cfg["key"])
    implicit = cfg["implicit_tls"]
    auth = cfg["auth"]
    kwargs = dict(
        hostname="hapwatch-test-smtp",
        enable_SMTPUTF8=True,
        # aiosmtpd counts only STARTTLS as TLS for AUTH: on an implicit-TLS port,
        # auth_require_tls=True would refuse AUTH although the session is encrypted.
        auth_require_tls=(auth["require_tls"] and not implicit) if auth else True,
        auth_required=auth is not None,
        authenticator=authenticator if auth else None,
        timeout=60,
    )
    if tls_context is not None and not implicit:
        kwargs["tls_context"] = tls_context
        kwargs["require_starttls"] = cfg["require_starttls"]
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    server = loop.run_until_complete(loop.create_server(
        lambda: SMTP(Handler(), loop=loop, **kwargs),
        host=cfg["host"], port=cfg["port"],
        ssl=tls_context if implicit else None, reuse_address=True))
    # The socket listens from here on: tell the test.
    with open(cfg["ready_file"] + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.rename(cfg["ready_file"] + ".tmp", cfg["ready_file"])
    logging.info("listening on %s:%s", cfg["host"], cfg["port"])
    loop.run_forever()

main()
"##;

/// How an [`SmtpServer`] does TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain SMTP, no TLS offered.
    None,
    /// Plain connection; `STARTTLS` offered (and required with
    /// [`SmtpServerBuilder::require_starttls`]).
    StartTls,
    /// TLS from the first byte (SMTPS, "implicit TLS", port 465 style).
    Implicit,
}

/// Options for an [`SmtpServer`]; see [`SmtpServer::builder`].
#[derive(Clone)]
pub struct SmtpServerBuilder {
    tls: SmtpTls,
    require_starttls: bool,
    ca: Option<TestCa>,
    auth: Option<(String, String, bool)>,
    reject_mail: Option<String>,
    reject_rcpt: Vec<(String, String)>,
    reject_data: Option<String>,
}

impl SmtpServerBuilder {
    /// Offers STARTTLS with a leaf certificate from a fresh [`TestCa`] (or the one given to
    /// [`SmtpServerBuilder::ca`]). Clients find the CA at [`SmtpServer::ca_file`].
    pub fn starttls(mut self) -> Self {
        self.tls = SmtpTls::StartTls;
        self
    }

    /// STARTTLS, and every command but EHLO/HELO/NOOP/QUIT/STARTTLS is refused with
    /// `530 Must issue a STARTTLS command first` until the client has done it.
    pub fn require_starttls(mut self) -> Self {
        self.tls = SmtpTls::StartTls;
        self.require_starttls = true;
        self
    }

    /// Implicit TLS (SMTPS): the TLS handshake comes first, before the SMTP greeting.
    pub fn implicit_tls(mut self) -> Self {
        self.tls = SmtpTls::Implicit;
        self
    }

    /// Uses `ca`'s leaf certificate instead of generating a new CA (e.g. to share one CA
    /// file between several receivers).
    pub fn ca(mut self, ca: &TestCa) -> Self {
        self.ca = Some(ca.clone());
        self
    }

    /// Requires AUTH (PLAIN or LOGIN) as `user`/`password`: `MAIL` before a successful AUTH
    /// gets `530 5.7.0 Authentication required`. AUTH is only offered and accepted over TLS
    /// (after STARTTLS, or on an implicit-TLS port); on a plain server it is refused with
    /// `538 5.7.11 Encryption required`, so nothing can be sent at all.
    pub fn auth(mut self, user: &str, password: &str) -> Self {
        self.auth = Some((user.to_string(), password.to_string(), true));
        self
    }

    /// Like [`SmtpServerBuilder::auth`], but AUTH is also offered and accepted on a
    /// connection without TLS (aiosmtpd's `auth_require_tls=False`).
    pub fn auth_allow_plaintext(mut self, user: &str, password: &str) -> Self {
        self.auth = Some((user.to_string(), password.to_string(), false));
        self
    }

    /// Answers every `MAIL FROM` with `reply` (e.g. `"550 5.7.1 sender rejected"`).
    pub fn reject_mail(mut self, reply: &str) -> Self {
        self.reject_mail = Some(reply.to_string());
        self
    }

    /// Answers every `RCPT TO` with `reply` (e.g. `"550 5.1.1 no such user"`).
    pub fn reject_rcpt(self, reply: &str) -> Self {
        self.reject_rcpt_to("*", reply)
    }

    /// Answers `RCPT TO:<address>` (compared case-insensitively) with `reply`; the other
    /// recipients are accepted.
    pub fn reject_rcpt_to(mut self, address: &str, reply: &str) -> Self {
        self.reject_rcpt
            .push((address.to_ascii_lowercase(), reply.to_string()));
        self
    }

    /// Answers the end of `DATA` with `reply` (e.g. `"451 4.3.0 try again later"` or
    /// `"554 5.6.0 rejected"`): the message is recorded as a refusal, not as received.
    pub fn reject_data(mut self, reply: &str) -> Self {
        self.reject_data = Some(reply.to_string());
        self
    }

    /// What this configuration needs, checked like [`super::require`]; true when present.
    pub fn requirements_met(&self) -> bool {
        if !require_python_module("aiosmtpd") {
            return false;
        }
        self.tls == SmtpTls::None || self.ca.is_some() || super::require("openssl")
    }

    /// Starts the server if [`SmtpServerBuilder::requirements_met`]; otherwise `None` (the
    /// skip is reported; under `CI=true` it panics instead).
    pub fn start_or_skip(self) -> Option<SmtpServer> {
        self.requirements_met().then(|| self.start())
    }

    /// Starts the server on a free loopback port and waits until it listens: the script
    /// writes a ready file right after its socket is listening, so connections are
    /// accepted from the moment this returns. (No probe connection is made: it would show
    /// in the log and, with implicit TLS, as a failed handshake.)
    pub fn start(self) -> SmtpServer {
        let ca = match (self.tls, &self.ca) {
            (SmtpTls::None, _) => None,
            (_, Some(ca)) => Some(ca.clone()),
            (_, None) => Some(TestCa::generate()),
        };
        let dir = temp_dir();
        let out_dir = dir.path().join("received");
        std::fs::create_dir(&out_dir).expect("cannot create the SMTP out dir");
        let script = dir.path().join("smtp_server.py");
        std::fs::write(&script, format!("{PY_PARENT_WATCH}\n{SMTP_SCRIPT}"))
            .expect("cannot write the SMTP script");
        let mut server = SmtpServer {
            child: None,
            port: 0,
            tls: self.tls,
            ca,
            options: self,
            out_dir,
            script,
            dir,
        };
        let mut failures = String::new();
        for attempt in 1..=START_ATTEMPTS {
            server.port = free_port();
            match server.spawn() {
                Ok(()) => return server,
                Err(StartError::Exited(status)) => failures.push_str(&format!(
                    "attempt {attempt} (port {}): exited ({status})\n",
                    server.port
                )),
                Err(StartError::TimedOut(last)) => panic!(
                    "the SMTP server did not start within {START_LIMIT:?} ({last}); log:\n{}",
                    server.log()
                ),
            }
        }
        panic!(
            "the SMTP server failed to start {START_ATTEMPTS} times:\n{failures}log:\n{}",
            server.log()
        );
    }
}

/// A real SMTP server (aiosmtpd) on `127.0.0.1:<port>`, killed when dropped.
///
/// ```ignore
/// let Some(smtp) = SmtpServer::builder().starttls().auth("alice", "pw").start_or_skip()
/// else { return };
/// // … point hapwatch at smtp.port() with ca_file = smtp.ca_file() …
/// let mail = &smtp.wait_for_messages(1, Duration::from_secs(5))[0];
/// assert_eq!(mail.user.as_deref(), Some("alice"));
/// assert!(mail.tls);
/// assert_eq!(mail.subject(), Some("[FIRING] ServerDown"));
/// ```
pub struct SmtpServer {
    child: Option<Child>,
    port: u16,
    tls: SmtpTls,
    ca: Option<TestCa>,
    options: SmtpServerBuilder,
    out_dir: PathBuf,
    script: PathBuf,
    // Declared last: removed after the process is gone.
    dir: TempDir,
}

impl SmtpServer {
    /// A plain server with no TLS, no AUTH and no refusals; change that with the builder.
    pub fn builder() -> SmtpServerBuilder {
        SmtpServerBuilder {
            tls: SmtpTls::None,
            require_starttls: false,
            ca: None,
            auth: None,
            reject_mail: None,
            reject_rcpt: Vec::new(),
            reject_data: None,
        }
    }

    /// A plain server, or `None` (skip reported) when aiosmtpd is missing.
    pub fn start_or_skip() -> Option<SmtpServer> {
        SmtpServer::builder().start_or_skip()
    }

    fn spawn(&mut self) -> Result<(), StartError> {
        let ready = self.dir.path().join("ready");
        let _ = std::fs::remove_file(&ready);
        let opts = &self.options;
        let config = json!({
            "host": "127.0.0.1",
            "port": self.port,
            "out_dir": self.out_dir,
            "ready_file": ready,
            "cert": self.ca.as_ref().map(TestCa::cert_pem),
            "key": self.ca.as_ref().map(TestCa::key_pem),
            "implicit_tls": self.tls == SmtpTls::Implicit,
            "require_starttls": opts.require_starttls,
            "auth": opts.auth.as_ref().map(|(user, password, require_tls)| json!({
                "user": user, "password": password, "require_tls": require_tls,
            })),
            "reject_mail": opts.reject_mail,
            "reject_rcpt": opts
                .reject_rcpt
                .iter()
                .map(|(address, reply)| (address.clone(), Value::String(reply.clone())))
                .collect::<serde_json::Map<_, _>>(),
            "reject_data": opts.reject_data,
        });
        let config_path = self.dir.path().join("smtp.json");
        std::fs::write(&config_path, config.to_string()).expect("cannot write smtp.json");
        let mut child = spawn_logged(
            Command::new(python3())
                .arg(&self.script)
                .arg(&config_path)
                .current_dir(self.dir.path()),
            &self.log_path(),
        );
        let started = wait_started(&mut child, || {
            if ready.exists() {
                Ok(())
            } else {
                Err("no ready file yet".into())
            }
        });
        match started {
            Ok(()) => {
                self.child = Some(child);
                Ok(())
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(e)
            }
        }
    }

    /// `127.0.0.1`.
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    /// The port (the same across [`SmtpServer::restart`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// How the server does TLS.
    pub fn tls(&self) -> SmtpTls {
        self.tls
    }

    /// The CA file a client must trust (`None` for a plain server).
    pub fn ca_file(&self) -> Option<PathBuf> {
        self.ca.as_ref().map(TestCa::ca_pem)
    }

    /// The CA behind the server's certificate (`None` for a plain server).
    pub fn ca(&self) -> Option<&TestCa> {
        self.ca.as_ref()
    }

    fn records(&self, kind: &str) -> Vec<Value> {
        let suffix = format!("-{kind}.json");
        let mut names: Vec<PathBuf> = std::fs::read_dir(&self.out_dir)
            .expect("cannot list the SMTP out dir")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| !n.starts_with('.') && n.ends_with(&suffix))
            })
            .collect();
        names.sort();
        names
            .iter()
            .map(|p| {
                let text = std::fs::read_to_string(p)
                    .unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()));
                serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("{} is not JSON: {e}", p.display()))
            })
            .collect()
    }

    /// Every message accepted so far (across restarts), oldest first.
    pub fn messages(&self) -> Vec<ReceivedMail> {
        self.records("mail")
            .iter()
            .map(ReceivedMail::from_record)
            .collect()
    }

    /// Every refusal so far (scripted MAIL/RCPT/DATA rejections, failed AUTH attempts),
    /// oldest first.
    pub fn refusals(&self) -> Vec<SmtpRefusal> {
        self.records("refused")
            .iter()
            .map(SmtpRefusal::from_record)
            .collect()
    }

    /// Waits until at least `n` messages were accepted and returns them all (there may be
    /// more than `n`: assert the count you expect). Panics after `timeout`, with the log.
    pub fn wait_for_messages(&self, n: usize, timeout: Duration) -> Vec<ReceivedMail> {
        self.wait_for(n, timeout, "message(s)", Self::messages)
    }

    /// Waits until at least `n` refusals were recorded and returns them all.
    pub fn wait_for_refusals(&self, n: usize, timeout: Duration) -> Vec<SmtpRefusal> {
        self.wait_for(n, timeout, "refusal(s)", Self::refusals)
    }

    fn wait_for<T>(
        &self,
        n: usize,
        timeout: Duration,
        what: &str,
        get: fn(&Self) -> Vec<T>,
    ) -> Vec<T> {
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_millis(5);
        loop {
            let got = get(self);
            if got.len() >= n {
                return got;
            }
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {n} {what} on the SMTP server \
                     (got {}); log:\n{}",
                    got.len(),
                    self.log()
                );
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    /// Kills the server: from now on connections to its port are refused. Received
    /// messages are kept.
    pub fn stop(&mut self) {
        kill_child(&mut self.child);
    }

    /// Starts the server again on the same port with the same options (after
    /// [`SmtpServer::stop`]; a running server is stopped first) and waits until it listens.
    pub fn restart(&mut self) {
        self.stop();
        // The port was ours a moment ago; retry briefly in case the old socket lingers.
        let deadline = Instant::now() + START_LIMIT;
        loop {
            match self.spawn() {
                Ok(()) => return,
                Err(StartError::Exited(_)) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Err(StartError::Exited(status)) => panic!(
                    "the SMTP server did not come back on port {} ({status}); log:\n{}",
                    self.port,
                    self.log()
                ),
                Err(StartError::TimedOut(last)) => panic!(
                    "the SMTP server did not restart within {START_LIMIT:?} ({last}); log:\n{}",
                    self.log()
                ),
            }
        }
    }

    /// True while the server process runs.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("smtp.log")
    }

    /// What aiosmtpd logged so far (one line per SMTP command; AUTH arguments masked).
    pub fn log(&self) -> String {
        read_log(&self.log_path())
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        kill_child(&mut self.child);
    }
}

/// One message an [`SmtpServer`] accepted.
#[derive(Debug, Clone)]
pub struct ReceivedMail {
    /// The envelope sender (`MAIL FROM`), without angle brackets.
    pub mail_from: String,
    /// The accepted envelope recipients (`RCPT TO`), in order.
    pub rcpt_tos: Vec<String>,
    /// `MAIL FROM` parameters as the client sent them (e.g. `SIZE=1234`, `BODY=8BITMIME`).
    pub mail_options: Vec<String>,
    /// The message exactly as transferred (CRLF line ends, dot-unstuffed), as UTF-8 text
    /// (invalid bytes replaced).
    pub data: String,
    /// Whether the session was encrypted (after STARTTLS, or implicit TLS).
    pub tls: bool,
    /// The TLS version (`"TLSv1.3"`), when encrypted.
    pub tls_version: Option<String>,
    /// The user who authenticated, if any.
    pub user: Option<String>,
    /// The name the client gave in EHLO/HELO.
    pub helo: Option<String>,
    /// Headers as Python's `email` package decodes them (RFC 2047 words decoded, folding
    /// removed), in order.
    pub decoded_headers: Vec<(String, String)>,
    /// The text/plain body as Python's `email` package decodes it (transfer encoding and
    /// charset; line ends normalized to `\n`), if the message has one (for a
    /// `multipart/alternative` message: its text/plain part).
    pub text: Option<String>,
    /// The text/html body, decoded likewise, if the message has one.
    pub html: Option<String>,
    /// Set when Python could not parse the message as MIME (the raw data is still here).
    pub decode_error: Option<String>,
}

impl ReceivedMail {
    fn from_record(v: &Value) -> ReceivedMail {
        let s = |k: &str| v[k].as_str().map(str::to_string);
        let list = |k: &str| -> Vec<String> {
            v[k].as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        ReceivedMail {
            mail_from: s("mail_from").unwrap_or_default(),
            rcpt_tos: list("rcpt_tos"),
            mail_options: list("mail_options"),
            data: s("data").unwrap_or_default(),
            tls: v["tls"].as_bool().unwrap_or(false),
            tls_version: s("tls_version"),
            user: s("user"),
            helo: s("helo"),
            decoded_headers: v["decoded_headers"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|pair| {
                            (
                                pair[0].as_str().unwrap_or_default().to_string(),
                                pair[1].as_str().unwrap_or_default().to_string(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
            text: s("text"),
            html: s("html"),
            decode_error: s("decode_error"),
        }
    }

    /// The raw header section, parsed: `(name, value)` in order, folded lines joined (the
    /// line break removed, the continuation's leading white space kept, as RFC 5322
    /// unfolding says), values trimmed. Encoded words (`=?utf-8?…?=`) are left as sent.
    pub fn headers(&self) -> Vec<(String, String)> {
        parse_mail_headers(self.header_section())
    }

    /// The first raw header named `name` (case-insensitive), unfolded (see
    /// [`ReceivedMail::headers`]).
    pub fn header(&self, name: &str) -> Option<String> {
        self.header_all(name).into_iter().next()
    }

    /// Every raw header named `name` (case-insensitive), in order.
    pub fn header_all(&self, name: &str) -> Vec<String> {
        self.headers()
            .into_iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
            .collect()
    }

    /// The first header named `name` (case-insensitive) as Python's `email` package decodes
    /// it: what a mail reader would show (e.g. a non-ASCII subject).
    pub fn decoded_header(&self, name: &str) -> Option<&str> {
        self.decoded_headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The decoded `Subject`.
    pub fn subject(&self) -> Option<&str> {
        self.decoded_header("subject")
    }

    /// The raw body: everything after the blank line that ends the headers, still in its
    /// transfer encoding (use [`ReceivedMail::text`] for the decoded text).
    pub fn body(&self) -> &str {
        let data = self.data.as_str();
        let start = data
            .find("\r\n\r\n")
            .map(|i| i + 4)
            .or_else(|| data.find("\n\n").map(|i| i + 2))
            .unwrap_or(data.len());
        &data[start..]
    }

    fn header_section(&self) -> &str {
        let data = self.data.as_str();
        let end = data
            .find("\r\n\r\n")
            .or_else(|| data.find("\n\n"))
            .unwrap_or(data.len());
        &data[..end]
    }
}

/// Parses an RFC 5322 header section into `(name, value)` pairs (see
/// [`ReceivedMail::headers`]).
pub fn parse_mail_headers(section: &str) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in section.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = headers.last_mut() {
                value.push_str(line);
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_string(), value.to_string()));
        }
    }
    headers
        .into_iter()
        .map(|(n, v)| (n, v.trim().to_string()))
        .collect()
}

/// One command an [`SmtpServer`] refused.
#[derive(Debug, Clone)]
pub struct SmtpRefusal {
    /// `MAIL`, `RCPT`, `DATA` or `AUTH`.
    pub command: String,
    /// The address (MAIL/RCPT), the envelope sender (DATA) or `"<mechanism> <user>"` (AUTH).
    pub argument: Option<String>,
    /// The reply sent, e.g. `"550 5.1.1 no such user"`.
    pub reply: String,
    /// Whether the session was encrypted at that point.
    pub tls: bool,
    /// The user authenticated at that point, if any.
    pub user: Option<String>,
}

impl SmtpRefusal {
    fn from_record(v: &Value) -> SmtpRefusal {
        let s = |k: &str| v[k].as_str().map(str::to_string);
        SmtpRefusal {
            command: s("command").unwrap_or_default(),
            argument: s("argument"),
            reply: s("reply").unwrap_or_default(),
            tls: v["tls"].as_bool().unwrap_or(false),
            user: s("user"),
        }
    }
}

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
struct HttpLog {
    requests: Vec<ReceivedRequest>,
    errors: Vec<String>,
    connections: usize,
}

struct HttpShared {
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
    /// Python's `ssl` module); otherwise `None`, the skip reported like [`super::require`].
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
fn serve_http(stream: TcpStream, shared: &HttpShared) {
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

fn header_has_token(headers: &[(String, String)], name: &str, token: &str) -> bool {
    headers
        .iter()
        .filter(|(n, _)| n == name)
        .any(|(_, v)| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

fn reason_phrase(status: u16) -> &'static str {
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
struct Conn<'a> {
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

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Parses a head (start line and header fields; names lowercased).
fn parse_head(head: &[u8]) -> Result<(String, Vec<(String, String)>), String> {
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

fn content_length(headers: &[(String, String)]) -> Result<Option<usize>, String> {
    headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map(|(_, v)| v.parse().map_err(|_| format!("bad content-length {v:?}")))
        .transpose()
}

type Request = (String, String, String, Vec<(String, String)>, Vec<u8>);

/// Reads one request: `Ok(None)` when the client closed between requests.
fn read_request(conn: &mut Conn) -> Result<Option<Request>, String> {
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
struct TlsTerminator {
    child: Option<Child>,
    addr: SocketAddr,
    ca: TestCa,
    dir: TempDir,
}

/// Relays TLS connections on `port` to the plain backend: `tls_proxy.py CONFIG.json`.
const TLS_PROXY_SCRIPT: &str = r##"
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

// ---------------------------------------------------------------------------------------
// Alertmanager
// ---------------------------------------------------------------------------------------

/// Options for an [`Alertmanager`]; see [`Alertmanager::builder`].
pub struct AlertmanagerBuilder {
    webhook: Option<String>,
    resolve_timeout: String,
    group_by: Vec<String>,
    group_wait: String,
}

impl AlertmanagerBuilder {
    /// Makes the (only) receiver a webhook to `url` with `send_resolved: true`: with
    /// `group_wait: 0s` and `group_interval: 1s`, Alertmanager posts a `"firing"`
    /// notification right after an alert arrives and a `"resolved"` one within about a
    /// second of it being resolved. Point it at an [`HttpReceiver`] to watch what
    /// Alertmanager itself would notify.
    pub fn webhook(mut self, url: &str) -> Self {
        self.webhook = Some(url.to_string());
        self
    }

    /// Sets the route's `group_by` (default `['...']`: every alert its own group), e.g.
    /// `["alertname", "source"]` to group like hapwatch's default `group_by`.
    pub fn group_by(mut self, labels: &[&str]) -> Self {
        self.group_by = labels.iter().map(|l| l.to_string()).collect();
        self
    }

    /// Sets the route's `group_wait` (default `0s`). With `0s`, the alerts of one push
    /// that share a group may be posted in two notifications (the first is flushed before
    /// the next is added); `1s` gathers them.
    pub fn group_wait(mut self, duration: &str) -> Self {
        self.group_wait = duration.to_string();
        self
    }

    /// Sets `global.resolve_timeout` (default `5m`): how long an alert posted without
    /// `endsAt` stays firing without being re-sent.
    pub fn resolve_timeout(mut self, duration: &str) -> Self {
        self.resolve_timeout = duration.to_string();
        self
    }

    /// Starts Alertmanager if it is installed; otherwise `None`, the skip reported like
    /// [`super::require`] (a panic under `CI=true`).
    pub fn start_or_skip(self) -> Option<Alertmanager> {
        if alertmanager_program().is_none() && !super::require("prometheus-alertmanager") {
            return None;
        }
        Some(self.start())
    }

    /// Starts Alertmanager on a free loopback port and waits until `/-/ready` answers 200.
    pub fn start(self) -> Alertmanager {
        let program = alertmanager_program()
            .expect("prometheus-alertmanager is not installed: use Alertmanager::start_or_skip()");
        let dir = temp_dir();
        let receiver = match &self.webhook {
            None => "  - name: blackhole\n".to_string(),
            Some(url) => format!(
                "  - name: blackhole\n    webhook_configs:\n      - url: {}\n        \
                 send_resolved: true\n",
                Value::String(url.clone())
            ),
        };
        let group_by: Vec<String> = self
            .group_by
            .iter()
            .map(|l| Value::String(l.clone()).to_string())
            .collect();
        let config = format!(
            "global:\n  resolve_timeout: {}\nroute:\n  receiver: blackhole\n  group_by: [{}]\n  \
             group_wait: {}\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n{receiver}",
            self.resolve_timeout,
            group_by.join(", "),
            self.group_wait
        );
        let config_path = dir.path().join("alertmanager.yml");
        std::fs::write(&config_path, &config).expect("cannot write alertmanager.yml");
        let log = dir.path().join("alertmanager.log");
        let mut failures = String::new();
        for attempt in 1..=START_ATTEMPTS {
            let port = free_port();
            let url = format!("http://127.0.0.1:{port}");
            let mut child = spawn_logged(
                Command::new(&program)
                    .arg(format!("--config.file={}", config_path.display()))
                    .arg(format!(
                        "--storage.path={}",
                        dir.path().join("data").display()
                    ))
                    .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                    .arg(format!("--web.external-url={url}"))
                    .arg("--cluster.listen-address=")
                    .current_dir(dir.path()),
                &log,
            );
            let started = wait_started(&mut child, || {
                let reply = http_request(
                    "GET",
                    &format!("{url}/-/ready"),
                    &[],
                    b"",
                    Duration::from_secs(2),
                )?;
                if reply.status == 200 {
                    Ok(())
                } else {
                    Err(format!("/-/ready: {}", reply.status))
                }
            });
            match started {
                Ok(()) => {
                    return Alertmanager {
                        child: Some(child),
                        port,
                        dir,
                    }
                }
                Err(StartError::Exited(status)) => failures.push_str(&format!(
                    "attempt {attempt} (port {port}): exited ({status})\n"
                )),
                Err(StartError::TimedOut(last)) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "Alertmanager was not ready within {START_LIMIT:?} ({last}); log:\n{}",
                        read_log(&log)
                    )
                }
            }
        }
        panic!(
            "Alertmanager failed to start {START_ATTEMPTS} times:\n{failures}log:\n{}",
            read_log(&log)
        );
    }
}

/// Debian installs Alertmanager as `prometheus-alertmanager`; upstream calls it
/// `alertmanager`. `HAPWATCH_TEST_PROMETHEUS_ALERTMANAGER` overrides both.
fn alertmanager_program() -> Option<PathBuf> {
    super::find_program("prometheus-alertmanager").or_else(|| super::find_program("alertmanager"))
}

/// Counters from Alertmanager's `/metrics`: what it was sent, classified on arrival.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AlertsReceived {
    /// Alerts posted with `endsAt` unset or in the future
    /// (`alertmanager_alerts_received_total{status="firing",version="v2"}`).
    pub firing: u64,
    /// Alerts posted with `endsAt` at or before the moment they arrived
    /// (`…{status="resolved",version="v2"}`).
    pub resolved: u64,
    /// Alerts refused as invalid (`alertmanager_alerts_invalid_total{version="v2"}`).
    pub invalid: u64,
}

/// A real Prometheus Alertmanager on `127.0.0.1:<port>`, killed when dropped.
///
/// Its config has one receiver, `blackhole`, with no integration (or a webhook, see
/// [`AlertmanagerBuilder::webhook`]); every alert routes there, grouped by all labels,
/// `group_wait: 0s`, `group_interval: 1s`. Storage is a temporary directory, clustering
/// is off (`--cluster.listen-address=`).
///
/// # How a resolved alert can be observed
///
/// Checked against Debian's 0.25.0 (the `getAlertsHandler`/`alertFilter` code is the same
/// upstream today):
///
/// - `GET /api/v2/alerts` **never lists an alert whose `endsAt` is in the past**, whatever
///   the query: `active`, `silenced`, `inhibited` and `unprocessed` (all default `true`)
///   only filter among unresolved alerts, and `alertFilter` drops `endsAt < now` first.
///   `/api/v2/alerts/groups` and `/api/v1/alerts` do the same. So posting an alert again
///   with `endsAt` = now makes it disappear from [`Alertmanager::alerts`] at once — "gone"
///   is the API's only sign of "resolved". (`status.state` is `active`, `suppressed` or
///   `unprocessed`; there is no `resolved` state in the API.)
/// - The `/metrics` counters ([`Alertmanager::received`]) tell the two apart:
///   `alertmanager_alerts_received_total{status="resolved",version="v2"}` counts alerts
///   that arrived with `endsAt` not after the arrival time, `status="firing"` the others.
/// - With [`AlertmanagerBuilder::webhook`], Alertmanager's own notification to the webhook
///   carries `"status": "resolved"` and the alert with its `endsAt`.
/// - An alert posted **without** `endsAt` gets `endsAt` = arrival + `resolve_timeout`
///   (5 m) and is listed with that `endsAt`; one posted with a future `endsAt` keeps it
///   (and one with only `endsAt` gets `startsAt` = `endsAt`).
/// - Posting the same label set again while it is unresolved updates the same alert (same
///   `fingerprint`): `startsAt` stays the earliest one posted, `annotations` and `endsAt`
///   are the newest. Posted again after it was resolved, it is a new episode: listed again
///   with the new `startsAt`, same fingerprint.
/// - `status.state` is `active` as soon as a GET can see it (the `unprocessed` state is
///   too short-lived to observe here). `POST` needs `Content-Type: application/json`
///   (anything else: `415`); an alert with no labels is refused with `400`.
pub struct Alertmanager {
    child: Option<Child>,
    port: u16,
    // Declared last: removed after the process is gone.
    dir: TempDir,
}

/// Deadline for the harness's own requests to Alertmanager.
const AM_REQUEST_LIMIT: Duration = Duration::from_secs(5);

impl Alertmanager {
    /// Default options (no webhook).
    pub fn builder() -> AlertmanagerBuilder {
        AlertmanagerBuilder {
            webhook: None,
            resolve_timeout: "5m".to_string(),
            group_by: vec!["...".to_string()],
            group_wait: "0s".to_string(),
        }
    }

    /// Starts it with default options, or returns `None` (skip reported) when it is not
    /// installed.
    pub fn start_or_skip() -> Option<Alertmanager> {
        Alertmanager::builder().start_or_skip()
    }

    /// `http://127.0.0.1:<port>`, without a trailing slash (hapwatch's `url`; the API is
    /// under `/api/v2/`).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    fn get(&self, path: &str) -> HttpReply {
        let url = format!("{}{path}", self.url());
        let reply = http_request("GET", &url, &[], b"", AM_REQUEST_LIMIT)
            .unwrap_or_else(|e| panic!("GET {url}: {e}\nAlertmanager log:\n{}", self.log()));
        if reply.status != 200 {
            panic!(
                "GET {url}: status {}: {}\nAlertmanager log:\n{}",
                reply.status,
                reply.text(),
                self.log()
            );
        }
        reply
    }

    /// Every alert Alertmanager holds that is not resolved, as the JSON array of
    /// `GET /api/v2/alerts?active=true&silenced=true&inhibited=true&unprocessed=true`
    /// (sorted by fingerprint). A resolved alert is not in it; see the type's docs.
    pub fn alerts(&self) -> Value {
        self.get("/api/v2/alerts?active=true&silenced=true&inhibited=true&unprocessed=true")
            .json()
    }

    /// The alerts of [`Alertmanager::alerts`] whose labels include every `(name, value)`
    /// of `labels`.
    pub fn alerts_with(&self, labels: &[(&str, &str)]) -> Vec<Value> {
        let all = self.alerts();
        all.as_array()
            .expect("/api/v2/alerts returns an array")
            .iter()
            .filter(|a| labels.iter().all(|(k, v)| a["labels"][*k] == *v))
            .cloned()
            .collect()
    }

    /// Waits until [`Alertmanager::alerts_with`] `labels` returns exactly `n` alerts, and
    /// returns them. Panics after `timeout` with the last list and the log.
    pub fn wait_for_alerts(
        &self,
        labels: &[(&str, &str)],
        n: usize,
        timeout: Duration,
    ) -> Vec<Value> {
        wait_until(timeout, &format!("{n} alert(s) with {labels:?}"), || {
            let found = self.alerts_with(labels);
            if found.len() == n {
                Ok(found)
            } else {
                Err(format!("{} alert(s): {found:?}", found.len()))
            }
        })
    }

    /// The received/invalid counters from `/metrics`.
    pub fn received(&self) -> AlertsReceived {
        let text = self.get("/metrics").text();
        let counter = |series: &str| -> u64 {
            text.lines()
                .find_map(|l| l.strip_prefix(series))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .map_or(0, |v| v as u64)
        };
        AlertsReceived {
            firing: counter("alertmanager_alerts_received_total{status=\"firing\",version=\"v2\"}"),
            resolved: counter(
                "alertmanager_alerts_received_total{status=\"resolved\",version=\"v2\"}",
            ),
            invalid: counter("alertmanager_alerts_invalid_total{version=\"v2\"}"),
        }
    }

    /// Posts `alerts` (a JSON array) to `/api/v2/alerts` with the harness's own client and
    /// returns the reply (200 with an empty body when accepted, 400 with a message when an
    /// alert is invalid). For self-tests and for setting up state; not a stand-in for
    /// hapwatch.
    pub fn post_alerts(&self, alerts: &Value) -> HttpReply {
        let url = format!("{}/api/v2/alerts", self.url());
        http_request(
            "POST",
            &url,
            &[("content-type", "application/json")],
            alerts.to_string().as_bytes(),
            AM_REQUEST_LIMIT,
        )
        .unwrap_or_else(|e| panic!("POST {url}: {e}\nAlertmanager log:\n{}", self.log()))
    }

    /// What Alertmanager logged so far.
    pub fn log(&self) -> String {
        read_log(&self.dir.path().join("alertmanager.log"))
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        kill_child(&mut self.child);
    }
}
