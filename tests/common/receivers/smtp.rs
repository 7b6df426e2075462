//! The SMTP receiver: aiosmtpd run from a script, with scripted refusals.

use super::super::{free_port, temp_dir};
use super::*;
use serde_json::{json, Value};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};
use tempfile::TempDir;

// ---------------------------------------------------------------------------------------
// SMTP
// ---------------------------------------------------------------------------------------

/// The SMTP server script (aiosmtpd 1.4, Python 3.11): `python3 smtp_server.py CONFIG.json`.
pub(super) const SMTP_SCRIPT: &str = r##"
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

    /// What this configuration needs, checked like [`super::super::require`]; true when present.
    pub fn requirements_met(&self) -> bool {
        if !require_python_module("aiosmtpd") {
            return false;
        }
        self.tls == SmtpTls::None || self.ca.is_some() || super::super::require("openssl")
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
