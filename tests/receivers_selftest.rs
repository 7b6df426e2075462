//! Self-tests of the real receivers in `common/receivers.rs` (SMTP server, HTTP receiver,
//! Alertmanager), driven by standard clients — Python's `smtplib`, `curl`, raw
//! `TcpStream`s — and never by hapwatch, so that a notifier test failing later points at
//! hapwatch, not at its test bench.

mod common;

use common::{require, Alertmanager, Captured, HttpReceiver, Respond, SmtpServer, SmtpTls, TestCa};
use serde_json::{json, Value};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Longest any one client command may run (a hang guard, not a performance assertion).
const TOOL_GUARD: Duration = Duration::from_secs(20);

/// How long a receiver may take to see what a client has finished sending.
const SEEN: Duration = Duration::from_secs(5);

/// Runs `command` within [`TOOL_GUARD`] and returns (exit code, stdout, stderr).
fn run_tool(command: &mut Command) -> (Option<i32>, String, String) {
    let child = Captured::spawn(command.stdin(Stdio::null()));
    let described = child.described.clone();
    let ended = child.wait_within(TOOL_GUARD);
    let Some(status) = ended.status else {
        panic!("{described} did not finish within {TOOL_GUARD:?}");
    };
    let text = |bytes: Vec<u8>| String::from_utf8_lossy(&bytes).into_owned();
    (status.code(), text(ended.stdout), text(ended.stderr))
}

// ---------------------------------------------------------------------------------------
// SMTP, with Python's smtplib and curl as clients
// ---------------------------------------------------------------------------------------

/// A one-shot smtplib client: connects as `mode` says, optionally logs in, sends one
/// message, and prints a JSON report (features seen, refused recipients, or the error).
const SMTPLIB_CLIENT: &str = r#"
import json, smtplib, ssl, sys
c = json.loads(sys.argv[1])
out = {"ok": False}
try:
    ctx = ssl.create_default_context(cafile=c.get("cafile"))
    if c["mode"] == "implicit":
        s = smtplib.SMTP_SSL(c["host"], c["port"], timeout=10, context=ctx)
    else:
        s = smtplib.SMTP(c["host"], c["port"], timeout=10)
    s.ehlo("selftest.client")
    out["features"] = sorted(s.esmtp_features)
    if c["mode"] == "starttls":
        s.starttls(context=ctx)
        s.ehlo("selftest.client")
        out["features_tls"] = sorted(s.esmtp_features)
    if c.get("user"):
        s.login(c["user"], c["password"])
    refused = s.sendmail(c["from"], c["to"], c["message"].encode())
    out["refused"] = {k: [v[0], v[1].decode()] for k, v in refused.items()}
    s.quit()
    out["ok"] = True
except Exception as e:
    out["exception"] = type(e).__name__
    out["text"] = str(e)
    if hasattr(e, "smtp_code"):
        out["code"] = e.smtp_code
print(json.dumps(out))
"#;

/// Sends `message` from `from` to `to` through `server` with smtplib, as `mode` says
/// (`plain`, `starttls` or `implicit`), trusting `cafile` (None: the system's roots).
fn smtplib_send(
    server: &SmtpServer,
    mode: &str,
    cafile: Option<&std::path::Path>,
    login: Option<(&str, &str)>,
    to: &[&str],
    message: &str,
) -> Value {
    let request = json!({
        "host": server.host(),
        "port": server.port(),
        "mode": mode,
        "cafile": cafile,
        "user": login.map(|l| l.0),
        "password": login.map(|l| l.1),
        "from": "hapwatch@example.com",
        "to": to,
        "message": message,
    });
    let (code, stdout, stderr) = run_tool(
        Command::new(common::python3())
            .arg("-c")
            .arg(SMTPLIB_CLIENT)
            .arg(request.to_string()),
    );
    assert_eq!(code, Some(0), "smtplib client failed: {stdout}{stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("bad client output {stdout:?}: {e}"))
}

/// A message with the shapes a notifier produces: an RFC 2047 subject, a folded header,
/// a line starting with a dot, CRLF line ends.
const MESSAGE: &str = "From: hapwatch <hapwatch@example.com>\r\n\
To: ops@example.com, oncall@example.com\r\n\
Subject: =?utf-8?q?=5BFIRING=5D_web3_is_DOWN_=E2=80=94_lb1?=\r\n\
X-Hapwatch-Alerts: ServerDown web3,\r\n ServerDown web4\r\n\
MIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\
\r\n\
web3 is DOWN =E2=80=94 since 12:00.\r\n\
.leading dot\r\n";

#[test]
fn smtp_plain_records_envelope_headers_and_body() {
    let Some(smtp) = SmtpServer::start_or_skip() else {
        return;
    };
    assert_eq!(smtp.tls(), SmtpTls::None);
    assert_eq!(smtp.ca_file(), None);

    let report = smtplib_send(
        &smtp,
        "plain",
        None,
        None,
        &["ops@example.com", "oncall@example.com"],
        MESSAGE,
    );
    assert_eq!(report["ok"], true, "{report}");
    let features = report["features"].to_string();
    assert!(
        !features.contains("starttls") && !features.contains("auth"),
        "a plain server without AUTH must offer neither STARTTLS nor AUTH: {features}"
    );

    let mails = smtp.wait_for_messages(1, SEEN);
    assert_eq!(mails.len(), 1);
    let mail = &mails[0];
    assert_eq!(mail.mail_from, "hapwatch@example.com");
    assert_eq!(mail.rcpt_tos, ["ops@example.com", "oncall@example.com"]);
    assert!(!mail.tls);
    assert_eq!(mail.tls_version, None);
    assert_eq!(mail.user, None);
    assert_eq!(mail.helo.as_deref(), Some("selftest.client"));
    assert_eq!(
        mail.data, MESSAGE,
        "the raw message must arrive byte for byte"
    );
    // Raw headers: case-insensitive, unfolded, encoded words left alone.
    assert_eq!(
        mail.header("SUBJECT").as_deref(),
        Some("=?utf-8?q?=5BFIRING=5D_web3_is_DOWN_=E2=80=94_lb1?=")
    );
    assert_eq!(
        mail.header("x-hapwatch-alerts").as_deref(),
        Some("ServerDown web3, ServerDown web4")
    );
    assert_eq!(
        mail.header_all("to"),
        ["ops@example.com, oncall@example.com"]
    );
    assert_eq!(mail.header("cc"), None);
    assert_eq!(mail.headers().len(), 7);
    // Decoded by Python's email package.
    assert_eq!(mail.subject(), Some("[FIRING] web3 is DOWN — lb1"));
    assert_eq!(
        mail.text.as_deref(),
        Some("web3 is DOWN — since 12:00.\n.leading dot\n")
    );
    assert_eq!(mail.html, None);
    assert_eq!(
        mail.body(),
        "web3 is DOWN =E2=80=94 since 12:00.\r\n.leading dot\r\n"
    );
    assert!(smtp.refusals().is_empty());
}

#[test]
fn smtp_starttls_with_auth_needs_the_test_ca() {
    let Some(smtp) = SmtpServer::builder()
        .starttls()
        .auth("alice", "s3cret")
        .start_or_skip()
    else {
        return;
    };
    let ca = smtp.ca_file().expect("a TLS server has a CA file");
    assert!(std::fs::read_to_string(&ca)
        .unwrap()
        .starts_with("-----BEGIN CERTIFICATE-----"));

    // The system's roots do not trust the throw-away CA: the handshake fails.
    let untrusted = smtplib_send(&smtp, "starttls", None, None, &["ops@example.com"], MESSAGE);
    assert_eq!(untrusted["ok"], false, "{untrusted}");
    assert_eq!(
        untrusted["exception"], "SSLCertVerificationError",
        "{untrusted}"
    );

    // With the CA: STARTTLS offered in clear, AUTH only after it; a wrong password is
    // refused and recorded.
    let wrong = smtplib_send(
        &smtp,
        "starttls",
        Some(&ca),
        Some(("alice", "nope")),
        &["ops@example.com"],
        MESSAGE,
    );
    assert_eq!(wrong["code"], 535, "{wrong}");
    let features = wrong["features"].to_string();
    assert!(
        features.contains("starttls") && !features.contains("auth"),
        "{features}"
    );
    assert!(
        wrong["features_tls"].to_string().contains("auth"),
        "{wrong}"
    );
    let refusals = smtp.refusals();
    assert!(!refusals.is_empty());
    assert!(refusals.iter().all(|r| r.command == "AUTH"
        && r.reply.starts_with("535")
        && r.tls
        && r.argument.as_deref().is_some_and(|a| a.ends_with(" alice"))));

    let report = smtplib_send(
        &smtp,
        "starttls",
        Some(&ca),
        Some(("alice", "s3cret")),
        &["ops@example.com"],
        MESSAGE,
    );
    assert_eq!(report["ok"], true, "{report}");
    let mails = smtp.wait_for_messages(1, SEEN);
    assert_eq!(mails.len(), 1);
    assert!(mails[0].tls);
    assert_eq!(mails[0].tls_version.as_deref(), Some("TLSv1.3"));
    assert_eq!(mails[0].user.as_deref(), Some("alice"));
}

#[test]
fn smtp_auth_over_plaintext_only_when_allowed() {
    // AUTH configured the safe way on a server without TLS: never offered, and MAIL is
    // refused because nobody can authenticate.
    let Some(strict) = SmtpServer::builder()
        .auth("alice", "s3cret")
        .start_or_skip()
    else {
        return;
    };
    let report = smtplib_send(
        &strict,
        "plain",
        None,
        Some(("alice", "s3cret")),
        &["ops@example.com"],
        MESSAGE,
    );
    assert_eq!(report["ok"], false, "{report}");
    assert_eq!(report["exception"], "SMTPNotSupportedError", "{report}");
    let anonymous = smtplib_send(&strict, "plain", None, None, &["ops@example.com"], MESSAGE);
    assert_eq!(anonymous["code"], 530, "{anonymous}");

    // Explicitly allowed: AUTH works in clear.
    let lax = SmtpServer::builder()
        .auth_allow_plaintext("alice", "s3cret")
        .start();
    let report = smtplib_send(
        &lax,
        "plain",
        None,
        Some(("alice", "s3cret")),
        &["ops@example.com"],
        MESSAGE,
    );
    assert_eq!(report["ok"], true, "{report}");
    let mail = &lax.wait_for_messages(1, SEEN)[0];
    assert!(!mail.tls);
    assert_eq!(mail.user.as_deref(), Some("alice"));
    assert!(strict.messages().is_empty());
}

#[test]
fn smtp_implicit_tls_with_curl() {
    if !require("curl") {
        return;
    }
    let Some(smtp) = SmtpServer::builder()
        .implicit_tls()
        .auth("alice", "s3cret")
        .start_or_skip()
    else {
        return;
    };
    let dir = common::temp_dir();
    let mail_file = dir.path().join("mail.txt");
    std::fs::write(&mail_file, MESSAGE).unwrap();
    let url = format!("smtps://127.0.0.1:{}", smtp.port());
    let curl = |ca: &std::path::Path| {
        run_tool(
            Command::new("curl")
                .args(["--silent", "--show-error", "--max-time", "10"])
                .arg("--cacert")
                .arg(ca)
                .args(["--user", "alice:s3cret"])
                .args(["--mail-from", "hapwatch@example.com"])
                .args(["--mail-rcpt", "ops@example.com"])
                .arg("--upload-file")
                .arg(&mail_file)
                .arg(&url),
        )
    };

    // Another CA's file does not verify the server (curl: 60, peer certificate).
    let other = TestCa::generate();
    let (code, _, stderr) = curl(&other.ca_pem());
    assert_eq!(code, Some(60), "curl with the wrong CA: {stderr}");

    let (code, stdout, stderr) = curl(&smtp.ca_file().unwrap());
    assert_eq!(
        code,
        Some(0),
        "curl: {stdout}{stderr}\nserver log:\n{}",
        smtp.log()
    );
    let mails = smtp.wait_for_messages(1, SEEN);
    assert_eq!(mails.len(), 1);
    assert!(mails[0].tls);
    assert_eq!(mails[0].user.as_deref(), Some("alice"));
    assert_eq!(mails[0].rcpt_tos, ["ops@example.com"]);
    assert_eq!(mails[0].subject(), Some("[FIRING] web3 is DOWN — lb1"));
}

#[test]
fn smtp_scripted_refusals() {
    let Some(picky) = SmtpServer::builder()
        .reject_rcpt_to("Nobody@example.com", "550 5.1.1 no such user")
        .start_or_skip()
    else {
        return;
    };
    let report = smtplib_send(
        &picky,
        "plain",
        None,
        None,
        &["nobody@example.com", "ops@example.com"],
        MESSAGE,
    );
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(
        report["refused"],
        json!({"nobody@example.com": [550, "5.1.1 no such user"]})
    );
    let mails = picky.wait_for_messages(1, SEEN);
    assert_eq!(mails[0].rcpt_tos, ["ops@example.com"]);
    let refusals = picky.refusals();
    assert_eq!(refusals.len(), 1);
    assert_eq!(refusals[0].command, "RCPT");
    assert_eq!(refusals[0].argument.as_deref(), Some("nobody@example.com"));

    let busy = SmtpServer::builder()
        .reject_data("451 4.3.0 try again later")
        .start();
    let report = smtplib_send(&busy, "plain", None, None, &["ops@example.com"], MESSAGE);
    assert_eq!(report["code"], 451, "{report}");
    assert_eq!(report["exception"], "SMTPDataError");
    let refusals = busy.wait_for_refusals(1, SEEN);
    assert_eq!(refusals[0].command, "DATA");
    assert_eq!(refusals[0].reply, "451 4.3.0 try again later");
    assert!(busy.messages().is_empty());

    let closed = SmtpServer::builder()
        .reject_mail("550 5.7.1 sender rejected")
        .reject_rcpt("550 5.1.1 unused")
        .start();
    let report = smtplib_send(&closed, "plain", None, None, &["ops@example.com"], MESSAGE);
    assert_eq!(report["code"], 550, "{report}");
    assert_eq!(report["exception"], "SMTPSenderRefused");
    assert_eq!(closed.refusals()[0].command, "MAIL");
}

#[test]
fn smtp_stop_and_restart_on_the_same_port() {
    let Some(mut smtp) = SmtpServer::start_or_skip() else {
        return;
    };
    let port = smtp.port();
    let report = smtplib_send(&smtp, "plain", None, None, &["ops@example.com"], MESSAGE);
    assert_eq!(report["ok"], true, "{report}");

    smtp.stop();
    assert!(!smtp.is_running());
    let refused = TcpStream::connect_timeout(&smtp.addr(), Duration::from_secs(2))
        .expect_err("a stopped server must refuse connections");
    assert_eq!(refused.kind(), ErrorKind::ConnectionRefused);
    let report = smtplib_send(&smtp, "plain", None, None, &["ops@example.com"], MESSAGE);
    assert_eq!(report["exception"], "ConnectionRefusedError", "{report}");

    smtp.restart();
    assert!(smtp.is_running());
    assert_eq!(smtp.port(), port);
    let report = smtplib_send(&smtp, "plain", None, None, &["oncall@example.com"], MESSAGE);
    assert_eq!(report["ok"], true, "{report}");
    let mails = smtp.wait_for_messages(2, SEEN);
    assert_eq!(mails.len(), 2, "messages from before the stop are kept");
    assert_eq!(mails[0].rcpt_tos, ["ops@example.com"]);
    assert_eq!(mails[1].rcpt_tos, ["oncall@example.com"]);
}

#[test]
fn mail_header_parsing() {
    let headers = common::parse_mail_headers(
        "Subject: a\r\n\tlong one  \r\nX-Empty:\r\nto: x@y\r\n continued: not a header\r\n",
    );
    assert_eq!(
        headers,
        [
            ("Subject".to_string(), "a\tlong one".to_string()),
            ("X-Empty".to_string(), String::new()),
            ("to".to_string(), "x@y continued: not a header".to_string()),
        ]
    );
}

// ---------------------------------------------------------------------------------------
// HTTP, with raw TcpStreams and curl as clients
// ---------------------------------------------------------------------------------------

/// Reads one response (head and `Content-Length` body) from `stream`: (head, body).
fn read_response(stream: &mut TcpStream) -> (String, String) {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut bytes = Vec::new();
    let mut byte = [0u8; 1];
    while !bytes.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).unwrap(), 1, "response cut short");
        bytes.push(byte[0]);
    }
    let head = String::from_utf8(bytes).unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .expect("a content-length");
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).unwrap();
    (head, String::from_utf8(body).unwrap())
}

#[test]
fn http_records_requests_and_scripts_responses() {
    let hook = HttpReceiver::builder()
        .then(Respond::text(500, "boom"))
        .default_response(Respond::json(200, r#"{"ok":true}"#).header("X-Test", "yes"))
        .start();
    assert!(hook.url().starts_with("http://127.0.0.1:"));
    assert_eq!(hook.ca_file(), None);

    // Two requests on one kept-alive connection: the queued 500, then the default.
    let mut stream = TcpStream::connect(hook.addr()).unwrap();
    let body = r#"{"status":"firing"}"#;
    let request = format!(
        "POST /hook?source=lb1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         X-Signature: abc\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let (head, text) = read_response(&mut stream);
    assert!(
        head.starts_with("HTTP/1.1 500 Internal Server Error\r\n"),
        "{head}"
    );
    assert_eq!(text, "boom");
    stream.write_all(request.as_bytes()).unwrap();
    let (head, text) = read_response(&mut stream);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("X-Test: yes\r\n"), "{head}");
    assert_eq!(text, r#"{"ok":true}"#);

    // A chunked body with `Connection: close`: answered, then the connection is closed.
    stream
        .write_all(
            b"PUT /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\
              Connection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        )
        .unwrap();
    let (head, _) = read_response(&mut stream);
    assert!(
        head.to_ascii_lowercase().contains("connection: close"),
        "{head}"
    );
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());

    let requests = hook.wait_for_requests(3, SEEN);
    assert_eq!(requests.len(), 3);
    assert_eq!(hook.connections(), 1);
    let first = &requests[0];
    assert_eq!(first.method, "POST");
    assert_eq!(first.target, "/hook?source=lb1");
    assert_eq!((first.path(), first.query()), ("/hook", Some("source=lb1")));
    assert_eq!(first.header("x-signature"), Some("abc"));
    assert_eq!(first.header("Content-Type"), Some("application/json"));
    assert!(first
        .headers
        .iter()
        .all(|(n, _)| *n == n.to_ascii_lowercase()));
    assert_eq!(first.json(), json!({"status": "firing"}));
    assert!(matches!(first.answered, Respond::Reply { status: 500, .. }));
    assert!(matches!(
        requests[1].answered,
        Respond::Reply { status: 200, .. }
    ));
    assert_eq!(requests[2].method, "PUT");
    assert_eq!(requests[2].body_text(), "hello world");
    assert!(hook.errors().is_empty());
}

#[test]
fn http_hang_close_and_release_on_drop() {
    let hook = HttpReceiver::builder()
        .then(Respond::Hang)
        .then(Respond::Close)
        .start();
    let request = b"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}";

    // Hang: the request is recorded, and no byte comes back within the client's timeout.
    let mut hung = TcpStream::connect(hook.addr()).unwrap();
    hung.write_all(request).unwrap();
    let requests = hook.wait_for_requests(1, SEEN);
    assert_eq!(requests[0].path(), "/slow");
    assert!(matches!(requests[0].answered, Respond::Hang));
    hung.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut byte = [0u8; 1];
    let err = hung
        .read(&mut byte)
        .expect_err("a hanging receiver must not answer");
    assert!(
        matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{err}"
    );

    // Close: the connection ends without a byte.
    let mut closed = TcpStream::connect(hook.addr()).unwrap();
    closed.write_all(request).unwrap();
    closed.set_read_timeout(Some(SEEN)).unwrap();
    let mut rest = Vec::new();
    let _ = closed.read_to_end(&mut rest);
    assert!(rest.is_empty());

    // Then the default, 200.
    let mut ok = TcpStream::connect(hook.addr()).unwrap();
    ok.write_all(request).unwrap();
    assert!(read_response(&mut ok).0.starts_with("HTTP/1.1 200 OK"));
    assert_eq!(hook.wait_for_requests(3, SEEN).len(), 3);

    // Dropping the receiver releases the hanging connection promptly.
    let dropped = Instant::now();
    drop(hook);
    assert!(
        dropped.elapsed() < Duration::from_secs(2),
        "{:?}",
        dropped.elapsed()
    );
    hung.set_read_timeout(Some(SEEN)).unwrap();
    let mut rest = Vec::new();
    let end = hung.read_to_end(&mut rest);
    assert!(
        rest.is_empty() && (end.is_ok() || end.unwrap_err().kind() == ErrorKind::ConnectionReset),
        "the hung connection must end without an answer"
    );
    let _ = hung.shutdown(Shutdown::Both);
}

#[test]
fn https_receiver_with_test_ca() {
    if !require("curl") || !require("openssl") {
        return;
    }
    let ca = TestCa::generate();
    let Some(hook) = HttpReceiver::builder()
        .tls(&ca)
        .default_response(Respond::json(202, r#"{"queued":1}"#))
        .start_or_skip()
    else {
        return;
    };
    assert!(hook.url().starts_with("https://127.0.0.1:"));
    assert_eq!(hook.ca_file(), Some(ca.ca_pem()));
    let curl = |extra: &[&str]| {
        run_tool(
            Command::new("curl")
                .args(["--silent", "--show-error", "--max-time", "10"])
                .args(extra)
                .args(["-H", "content-type: application/json"])
                .args(["--data", r#"{"alert":"ServerDown"}"#])
                .args(["--write-out", "\n%{http_code}"])
                .arg(hook.url_for("/hook")),
        )
    };

    // Not trusted without the CA: nothing reaches the receiver.
    let (code, _, stderr) = curl(&[]);
    assert_eq!(code, Some(60), "curl without the CA: {stderr}");

    let ca_path = ca.ca_pem();
    let (code, stdout, stderr) = curl(&["--cacert", ca_path.to_str().unwrap()]);
    assert_eq!(code, Some(0), "curl: {stderr}");
    assert_eq!(stdout, "{\"queued\":1}\n202");
    let requests = hook.wait_for_requests(1, SEEN);
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].path(), "/hook");
    assert_eq!(requests[0].json(), json!({"alert": "ServerDown"}));
}

// ---------------------------------------------------------------------------------------
// Alertmanager, with curl as the client
// ---------------------------------------------------------------------------------------

fn curl_post_alerts(am: &Alertmanager, alerts: &Value) -> String {
    let (code, stdout, stderr) = run_tool(
        Command::new("curl")
            .args(["--silent", "--show-error", "--max-time", "10"])
            .args(["-H", "content-type: application/json"])
            .args(["--data", &alerts.to_string()])
            .args(["--write-out", "%{http_code}"])
            .arg(format!("{}/api/v2/alerts", am.url())),
    );
    assert_eq!(code, Some(0), "curl: {stderr}");
    stdout
}

fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[test]
fn alertmanager_firing_then_resolved() {
    if !require("curl") {
        return;
    }
    let hook = HttpReceiver::start();
    let Some(am) = Alertmanager::builder()
        .webhook(&hook.url_for("/am"))
        .start_or_skip()
    else {
        return;
    };
    assert!(am.alerts().as_array().unwrap().is_empty());

    let started = chrono::Utc::now();
    let labels = json!({"alertname": "ServerDown", "source": "lb1", "server": "web3"});
    let firing = json!([{
        "labels": labels,
        "annotations": {"summary": "web3 is DOWN"},
        "startsAt": rfc3339(started),
        "generatorURL": "http://127.0.0.1/hapwatch",
    }]);
    assert_eq!(curl_post_alerts(&am, &firing), "200");

    let alerts = am.alerts();
    let list = alerts.as_array().unwrap();
    assert_eq!(list.len(), 1, "{alerts}");
    let alert = &list[0];
    assert_eq!(alert["labels"], labels);
    assert_eq!(alert["annotations"]["summary"], "web3 is DOWN");
    assert_eq!(alert["generatorURL"], "http://127.0.0.1/hapwatch");
    assert_eq!(alert["receivers"], json!([{"name": "blackhole"}]));
    assert!(
        matches!(
            alert["status"]["state"].as_str(),
            Some("active" | "unprocessed")
        ),
        "{alert}"
    );
    // No endsAt sent: Alertmanager sets arrival + resolve_timeout (5m).
    let ends_at: chrono::DateTime<chrono::Utc> = alert["endsAt"].as_str().unwrap().parse().unwrap();
    let horizon = ends_at - started;
    assert!(
        horizon > chrono::Duration::minutes(4) && horizon <= chrono::Duration::minutes(6),
        "{alert}"
    );
    assert_eq!(am.alerts_with(&[("server", "web3")]).len(), 1);
    assert!(am.alerts_with(&[("server", "web4")]).is_empty());
    assert_eq!(
        am.received(),
        common::AlertsReceived {
            firing: 1,
            resolved: 0,
            invalid: 0
        }
    );
    // Alertmanager's own notification (group_wait 0s). Waited for before resolving: an
    // alert resolved before its group's first flush is never notified at all.
    let notes = hook.wait_for_requests(1, SEEN);
    assert_eq!(notes[0].path(), "/am");
    assert_eq!(notes[0].json()["status"], "firing");

    // Resolved: the same labels with endsAt = now.
    let mut resolved = firing.clone();
    resolved[0]["endsAt"] = Value::String(rfc3339(chrono::Utc::now()));
    assert_eq!(curl_post_alerts(&am, &resolved), "200");
    assert!(
        am.alerts().as_array().unwrap().is_empty(),
        "a resolved alert is gone from /api/v2/alerts, whatever the filters"
    );
    assert_eq!(
        am.received(),
        common::AlertsReceived {
            firing: 1,
            resolved: 1,
            invalid: 0
        }
    );

    // Then Alertmanager notifies the resolution (at the next group_interval, 1s).
    let notes = hook.wait_for_requests(2, SEEN);
    let statuses: Vec<Value> = notes.iter().map(|r| r.json()["status"].clone()).collect();
    assert_eq!(statuses, [json!("firing"), json!("resolved")]);
    let last = notes[1].json();
    assert_eq!(last["alerts"][0]["labels"], labels);
    assert_eq!(last["alerts"][0]["status"], "resolved");
    let time = |v: &Value| -> chrono::DateTime<chrono::Utc> {
        v.as_str().expect("a timestamp").parse().expect("RFC 3339")
    };
    // Go prints the same instant without trailing zeros (…39.48Z for …39.480Z).
    assert_eq!(
        time(&last["alerts"][0]["endsAt"]),
        time(&resolved[0]["endsAt"])
    );

    // An invalid alert (no labels) is refused with 400 and counted.
    let reply = am.post_alerts(&json!([{"labels": {}}]));
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert_eq!(am.received().invalid, 1);
}

/// A ureq agent (rustls, as hapwatch's own clients use) trusting only the CA at `ca`.
fn rustls_agent(ca: &std::path::Path) -> ureq::Agent {
    use ureq::tls::{parse_pem, PemItem, RootCerts, TlsConfig};
    let pem = std::fs::read(ca).unwrap();
    let certs: Vec<_> = parse_pem(&pem)
        .filter_map(|item| match item {
            Ok(PemItem::Certificate(cert)) => Some(cert),
            _ => None,
        })
        .collect();
    assert_eq!(certs.len(), 1);
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .http_status_as_error(false)
        .tls_config(
            TlsConfig::builder()
                .root_certs(RootCerts::new_with_certs(&certs))
                .build(),
        )
        .build()
        .into()
}

#[test]
fn test_ca_is_accepted_by_rustls() {
    if !require("openssl") {
        return;
    }
    // rustls refuses a self-signed server certificate even when it is the trusted root;
    // the leaf signed by the test CA must pass (its SAN holds IP 127.0.0.1).
    let ca = TestCa::generate();
    let Some(hook) = HttpReceiver::builder()
        .tls(&ca)
        .default_response(Respond::text(200, "hello"))
        .start_or_skip()
    else {
        return;
    };
    let url = hook.url_for("/x");
    let mut response = rustls_agent(&ca.ca_pem())
        .post(&url)
        .send("{}")
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.body_mut().read_to_string().unwrap(), "hello");
    // Another CA: the handshake fails and nothing reaches the receiver.
    let other = TestCa::generate();
    let err = rustls_agent(&other.ca_pem())
        .post(&hook.url_for("/y"))
        .send("{}")
        .expect_err("an unrelated CA must not verify the receiver");
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
    let paths: Vec<String> = hook
        .wait_for_requests(1, SEEN)
        .iter()
        .map(|r| r.path().to_string())
        .collect();
    assert_eq!(paths, ["/x"]);
}
