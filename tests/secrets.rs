//! Secrets never leak: not through a URL (`user:password@`, `?token=`), not through a
//! webhook header, and not through a peer that echoes them back (a stats page answering
//! 500 with the request headers, an SMTP server quoting the AUTH line in its 535).
//!
//! Every output of every command is checked: stderr (text and JSON log lines), stdout
//! (dry runs, `show --format json`, Nagios lines, `state show`), the state file (outbox
//! `last_error`, SourceUnreachable summaries) and what notifiers receive. The peers are
//! small fakes in threads, on loopback.

mod common;

use base64::Engine;
use common::{
    closed_addr, fixture_bytes, temp_dir, toml_str, FakeServer, Hapwatch, HttpReceiver, Reply,
};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use tempfile::TempDir;

/// Simulated time of the runs.
const NOW: &str = "1800000000";

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// Fails if `text` (named `what`) holds any of `secrets`.
#[track_caller]
fn assert_hidden(what: &str, text: &str, secrets: &[String]) {
    for secret in secrets {
        assert!(
            !text.contains(secret.as_str()),
            "{what} shows the secret {secret:?}:\n{text}"
        );
    }
}

/// A config file in a temp dir of its own, with `state.json` next to it.
struct Setup {
    dir: TempDir,
    config: PathBuf,
}

impl Setup {
    fn new(text: &str, mode: u32) -> Setup {
        use std::os::unix::fs::PermissionsExt;
        let dir = temp_dir();
        let config = dir.path().join("hapwatch.toml");
        std::fs::write(&config, format!("{text}\n[state]\nfile = \"state.json\"\n")).unwrap();
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(mode)).unwrap();
        Setup { dir, config }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn hapwatch(&self) -> Hapwatch {
        Hapwatch::new().config_path(&self.config)
    }

    fn state_text(&self) -> String {
        std::fs::read_to_string(self.path("state.json")).unwrap()
    }
}

/// `include` of the shipped default rules.
fn default_rules() -> String {
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/rules.toml");
    format!("include = [{}]\n", toml_str(&rules.display().to_string()))
}

// ---------------------------------------------------------------------------------------
// Fake peers that echo what they were sent
// ---------------------------------------------------------------------------------------

/// Accepts connections on a loopback port until dropped, handing each to `serve`.
struct Peer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl Peer {
    fn start(serve: fn(TcpStream)) -> Peer {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
                    std::thread::spawn(move || serve(conn));
                }
            })
        };
        Peer {
            addr,
            stop,
            accept: Some(accept),
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

/// A stats page that answers every request with a 500 whose body echoes the request head,
/// its `Authorization` line first (as a debugging proxy or a misconfigured app might).
fn echo_500(mut conn: TcpStream) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let auth = head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("authorization:"))
        .unwrap_or("no authorization");
    let body = format!("internal error; you sent {auth}\n{head}");
    let _ = write!(
        conn,
        "HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// An SMTP server that offers `mechanism` and refuses AUTH with a 535 quoting the AUTH
/// exchange, and the base64 in it decoded, as some servers do.
fn smtp_echo(conn: TcpStream, mechanism: &str) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut conn = conn;
    let mut line = String::new();
    let read = |reader: &mut BufReader<TcpStream>, line: &mut String| {
        line.clear();
        matches!(reader.read_line(line), Ok(n) if n > 0)
    };
    let decode = |b: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(b.trim())
            .map(|d| String::from_utf8_lossy(&d).replace('\0', " "))
            .unwrap_or_default()
    };
    let _ = conn.write_all(b"220 fake.example ESMTP\r\n");
    while read(&mut reader, &mut line) {
        let command = line.trim_end().to_string();
        let upper = command.to_ascii_uppercase();
        let reply = if upper.starts_with("EHLO") {
            format!("250-fake.example\r\n250 AUTH {mechanism}\r\n")
        } else if upper.starts_with("AUTH PLAIN ") {
            let arg = &command[11..];
            format!(
                "535 5.7.8 Authentication failed: {command} (user and password {})\r\n",
                decode(arg)
            )
        } else if upper == "AUTH LOGIN" {
            let _ = conn.write_all(b"334 VXNlcm5hbWU6\r\n");
            if !read(&mut reader, &mut line) {
                return;
            }
            let user = line.trim_end().to_string();
            let _ = conn.write_all(b"334 UGFzc3dvcmQ6\r\n");
            if !read(&mut reader, &mut line) {
                return;
            }
            let password = line.trim_end().to_string();
            format!(
                "535 5.7.8 Authentication failed: {user} {password} ({} {})\r\n",
                decode(&user),
                decode(&password)
            )
        } else if upper == "QUIT" {
            let _ = conn.write_all(b"221 bye\r\n");
            return;
        } else if upper == "RSET" || upper == "NOOP" {
            "250 ok\r\n".to_string()
        } else {
            "502 5.5.2 not here\r\n".to_string()
        };
        if conn.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

fn smtp_plain(conn: TcpStream) {
    smtp_echo(conn, "PLAIN");
}

fn smtp_login(conn: TcpStream) {
    smtp_echo(conn, "LOGIN");
}

// ---------------------------------------------------------------------------------------
// Item 4 and 6: a stats page that echoes the credentials
// ---------------------------------------------------------------------------------------

const STATS_PASSWORD: &str = "St4ts-pw-91c2e";
const STATS_PASSWORD_2: &str = "St4ts-pw-other-7d10";

#[test]
fn a_stats_page_echoing_its_credentials_leaks_them_nowhere() {
    let page = Peer::start(echo_500);
    let hook = HttpReceiver::start();
    // lb1: credentials in the URL (a private config allows that); lb2: username and a
    // password from the environment.
    let setup = Setup::new(
        &format!(
            "{}\n[[source]]\nname = \"lb1\"\nurl = \"http://ops:{STATS_PASSWORD}@{}/stats\"\n\
             timeout = \"3s\"\n\n[[source]]\nname = \"lb2\"\nurl = \"http://{}/stats\"\n\
             username = \"ops2\"\npassword = \"env:HAPW_STATS_PW\"\ntimeout = \"3s\"\n\n\
             [notifier.hook]\ntype = \"webhook\"\nurl = {}\n",
            default_rules(),
            page.addr,
            page.addr,
            toml_str(&hook.url_for("/hook"))
        ),
        0o600,
    );
    let secrets = vec![
        STATS_PASSWORD.to_string(),
        STATS_PASSWORD_2.to_string(),
        b64(&format!("ops:{STATS_PASSWORD}")),
        b64(&format!("ops2:{STATS_PASSWORD_2}")),
    ];
    let hapwatch = || setup.hapwatch().env("HAPW_STATS_PW", STATS_PASSWORD_2);
    let mut checked = 0;
    let mut check = |what: &str, out: &common::Output| {
        assert_hidden(&format!("{what}: stdout"), &out.stdout, &secrets);
        assert_hidden(&format!("{what}: stderr"), &out.stderr, &secrets);
        checked += 1;
    };

    let out = hapwatch().args(["run", "--now", NOW]).run();
    check("run", &out);
    out.status(1)
        .stderr_contains("hapwatch: source lb1: HTTP 500 from http://[redacted]@")
        .stderr_contains("you sent authorization: Basic [redacted]");
    // The peer really got (and echoed) the credentials.
    let state = setup.state_text();
    assert_hidden("state.json", &state, &secrets);
    assert!(state.contains("SourceUnreachable"), "{state}");
    let requests = hook.requests();
    assert!(!requests.is_empty(), "SourceUnreachable was notified");
    for request in &requests {
        assert_hidden("the notification", &request.body_text(), &secrets);
    }
    assert!(
        requests[0].body_text().contains("Basic [redacted]"),
        "{}",
        requests[0].body_text()
    );

    for args in [
        vec!["run", "--dry-run", "--now", NOW],
        vec!["run", "--dry-run", "--format", "json", "--now", NOW],
        vec!["--log-format", "json", "-vv", "run", "--now", NOW],
        vec!["run", "--nagios", "--now", NOW],
        vec!["check", "--connect"],
        vec!["check", "--nagios"],
        vec!["show", "--format", "json"],
        vec!["show"],
        vec!["state", "show"],
        vec!["state", "show", "--format", "json"],
    ] {
        let out = hapwatch().args(&args).run();
        check(&args.join(" "), &out);
    }
    assert_hidden("state.json", &setup.state_text(), &secrets);
    for request in hook.requests() {
        assert_hidden("a notification", &request.body_text(), &secrets);
    }
    assert_eq!(checked, 11);
}

// ---------------------------------------------------------------------------------------
// Item 4: tokens in the query of webhook, Alertmanager and heartbeat URLs
// ---------------------------------------------------------------------------------------

const HOOK_TOKEN: &str = "hooktoken-5f1e0a";
const AM_TOKEN: &str = "amtoken-c0ffee42";
const HB_TOKEN: &str = "hbtoken-77aa1b";

#[test]
fn tokens_in_url_queries_never_show() {
    let dead = closed_addr();
    let setup = Setup::new(
        &format!(
            "{}\n[[source]]\nname = \"lb1\"\nfile = \"lb1.csv\"\n\n\
             [notifier.hook]\ntype = \"webhook\"\nurl = \"http://{dead}/hook?token={HOOK_TOKEN}\"\nretries = 0\n\n\
             [notifier.am]\ntype = \"alertmanager\"\nurl = \"http://{dead}/am?access_token={AM_TOKEN}\"\nretries = 0\n\n\
             [heartbeat]\nurl = \"http://{dead}/ping/x?k={HB_TOKEN}\"\ntimeout = \"2s\"\n",
            default_rules(),
        ),
        0o644,
    );
    std::fs::write(
        setup.path("lb1.csv"),
        fixture_bytes("haproxy-2.6/down-after-kill.csv"),
    )
    .unwrap();
    let secrets = vec![
        HOOK_TOKEN.to_string(),
        AM_TOKEN.to_string(),
        HB_TOKEN.to_string(),
    ];

    let out = setup
        .hapwatch()
        .args(["run", "--dry-run", "--now", NOW])
        .run();
    assert_hidden("run --dry-run", &out.stdout, &secrets);
    out.success()
        .stdout_contains(&format!(
            "--- notifier hook: POST http://{dead}/hook?token=[redacted]\n"
        ))
        .stdout_contains("--- notifier am: POST http://");

    for args in [
        vec!["run", "--now", NOW],
        // -v: a failing heartbeat is printed when it starts failing, then only with -v.
        vec!["-v", "--log-format", "json", "run", "--now", "1800000600"],
    ] {
        let out = setup.hapwatch().args(&args).run();
        assert_hidden(&args.join(" "), &out.stderr, &secrets);
        assert_hidden(&args.join(" "), &out.stdout, &secrets);
        out.status(1)
            .stderr_contains("notifier hook: ")
            .stderr_contains("/hook?token=[redacted]")
            .stderr_contains("heartbeat");
    }
    let state = setup.state_text();
    assert!(state.contains("last_error"), "{state}");
    assert_hidden("state.json", &state, &secrets);
    for args in [
        vec!["state", "show", "--format", "json"],
        vec!["notify-test", "hook"],
        vec!["notify-test", "am"],
    ] {
        let out = setup.hapwatch().args(&args).run();
        assert_hidden(&args.join(" "), &out.stdout, &secrets);
        assert_hidden(&args.join(" "), &out.stderr, &secrets);
    }
}

// ---------------------------------------------------------------------------------------
// Items 4 and 5: inline secrets in a shared config are refused, with the fix
// ---------------------------------------------------------------------------------------

#[test]
fn userinfo_and_inline_header_values_are_refused_in_a_shared_config() {
    let cases = [
        (
            "[[source]]\nname = \"lb1\"\nurl = \"http://ops:Inl1ne-pw-3@127.0.0.1:8404/stats\"\n",
            "use username with password_file or password = \"env:NAME\", or `chmod 600",
        ),
        (
            "[[source]]\nname = \"lb1\"\nfile = \"x.csv\"\n\n[notifier.hook]\ntype = \"webhook\"\n\
             url = \"https://hooks.example.net/x\"\nheaders = { \"X-Api-Key\" = \"Inl1ne-pw-3\" }\n",
            "header \"X-Api-Key\": an inline header value",
        ),
        (
            "[[source]]\nname = \"lb1\"\nfile = \"x.csv\"\n\n[notifier.am]\ntype = \"alertmanager\"\n\
             url = \"http://ops:Inl1ne-pw-3@127.0.0.1:9093\"\n",
            "username and password_file",
        ),
        (
            "[[source]]\nname = \"lb1\"\nfile = \"x.csv\"\n\n[notifier.hook]\ntype = \"webhook\"\n\
             url = \"https://ops:Inl1ne-pw-3@hooks.example.net/x\"\n",
            "bearer_token_file",
        ),
        (
            "[[source]]\nname = \"lb1\"\nfile = \"x.csv\"\n\n[heartbeat]\n\
             url = \"https://ops:Inl1ne-pw-3@hc.example.net/ping\"\n",
            "[heartbeat]: a url with a user name or password",
        ),
    ];
    for (config, fix) in cases {
        let secrets = vec!["Inl1ne-pw-3".to_string()];
        let out = Hapwatch::new()
            .config_text(config)
            .config_mode(0o644)
            .arg("check")
            .run();
        out.status(2)
            .stdout_empty()
            .stderr_contains("group or others can read")
            .stderr_contains(fix)
            .stderr_line_count(1);
        assert_hidden("the refusal", &out.stderr, &secrets);
        // The same config, private, is accepted; a header by reference is accepted in a
        // shared one.
        Hapwatch::new()
            .config_text(config)
            .config_mode(0o600)
            .arg("check")
            .run()
            .status(0);
    }
    Hapwatch::new()
        .config_text(
            "[[source]]\nname = \"lb1\"\nfile = \"x.csv\"\n\n[notifier.hook]\ntype = \"webhook\"\n\
             url = \"https://hooks.example.net/x\"\nheaders = { \"X-Api-Key\" = \"env:HAPW_KEY\" }\n",
        )
        .config_mode(0o644)
        .env("HAPW_KEY", "k")
        .arg("check")
        .run()
        .status(0);
}

// ---------------------------------------------------------------------------------------
// Item 5: header values and Alertmanager credentials by reference, redacted in dry runs
// ---------------------------------------------------------------------------------------

const HEADER_KEY: &str = "Hdr-key-0c5a77";
const AM_PASSWORD: &str = "Am-pw-19be4d";

#[test]
fn header_values_and_alertmanager_credentials_are_sent_but_never_shown() {
    let hook = HttpReceiver::start();
    let am = HttpReceiver::start();
    let setup = Setup::new(
        &format!(
            "{}\n[[source]]\nname = \"lb1\"\nfile = \"lb1.csv\"\n\n\
             [notifier.hook]\ntype = \"webhook\"\nurl = {}\nheaders = {{ \"X-Api-Key\" = \"env:HAPW_KEY\" }}\n\n\
             [notifier.am]\ntype = \"alertmanager\"\nurl = {}\nusername = \"hapwatch\"\npassword_file = \"am.pw\"\n",
            default_rules(),
            toml_str(&hook.url_for("/hook")),
            toml_str(&am.url()),
        ),
        0o644,
    );
    std::fs::write(
        setup.path("lb1.csv"),
        fixture_bytes("haproxy-2.6/down-after-kill.csv"),
    )
    .unwrap();
    std::fs::write(setup.path("am.pw"), format!("{AM_PASSWORD}\n")).unwrap();
    let secrets = vec![
        HEADER_KEY.to_string(),
        AM_PASSWORD.to_string(),
        b64(&format!("hapwatch:{AM_PASSWORD}")),
    ];
    let hapwatch = || setup.hapwatch().env("HAPW_KEY", HEADER_KEY);

    let out = hapwatch().args(["run", "--dry-run", "--now", NOW]).run();
    assert_hidden("run --dry-run", &out.stdout, &secrets);
    out.success()
        .stdout_contains("\nX-Api-Key: [redacted]\n")
        .stdout_contains("\nAuthorization: [redacted]\n");

    hapwatch()
        .args(["run", "--now", NOW])
        .run()
        .success()
        .stderr_empty();
    let sent = hook.requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].header("x-api-key"), Some(HEADER_KEY));
    let basic = format!("Basic {}", b64(&format!("hapwatch:{AM_PASSWORD}")));
    let pushed = am.requests();
    assert!(!pushed.is_empty());
    assert_eq!(pushed[0].path(), "/api/v2/alerts");
    assert_eq!(pushed[0].header("authorization"), Some(basic.as_str()));
}

// ---------------------------------------------------------------------------------------
// Item 6: an SMTP server quoting the AUTH exchange in its 535
// ---------------------------------------------------------------------------------------

const SMTP_USER: &str = "alice";
const SMTP_PASSWORD: &str = "Smtp-pw-4e8d21";

fn smtp_echo_leaks_nothing(serve: fn(TcpStream)) {
    let smtp = Peer::start(serve);
    let setup = Setup::new(
        &format!(
            "{}\n[[source]]\nname = \"lb1\"\nfile = \"lb1.csv\"\n\n\
             [notifier.mail]\ntype = \"smtp\"\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n\
             allow_insecure_auth = true\nusername = \"{SMTP_USER}\"\npassword = \"env:HAPW_SMTP_PW\"\n\
             from = \"hapwatch@example.net\"\nto = [\"oncall@example.net\"]\nretries = 0\n",
            default_rules(),
            smtp.addr.port(),
        ),
        0o644,
    );
    std::fs::write(
        setup.path("lb1.csv"),
        fixture_bytes("haproxy-2.6/down-after-kill.csv"),
    )
    .unwrap();
    let secrets = vec![
        SMTP_PASSWORD.to_string(),
        b64(SMTP_PASSWORD),
        b64(&format!("\0{SMTP_USER}\0{SMTP_PASSWORD}")),
    ];
    let hapwatch = || setup.hapwatch().env("HAPW_SMTP_PW", SMTP_PASSWORD);

    let out = hapwatch().args(["run", "--now", NOW]).run();
    assert_hidden("run", &out.stderr, &secrets);
    out.status(1)
        .stderr_contains("hapwatch: notifier mail: ")
        .stderr_contains("(535)")
        .stderr_contains("[redacted]");
    let state = setup.state_text();
    assert!(state.contains("535"), "the outbox keeps the error: {state}");
    assert_hidden("state.json", &state, &secrets);
    for args in [
        vec!["--log-format", "json", "run", "--now", "1800000600"],
        vec!["notify-test", "mail"],
        vec!["state", "show", "--format", "json"],
    ] {
        let out = hapwatch().args(&args).run();
        assert_hidden(&args.join(" "), &out.stdout, &secrets);
        assert_hidden(&args.join(" "), &out.stderr, &secrets);
    }
    assert_hidden("state.json", &setup.state_text(), &secrets);
}

#[test]
fn smtp_535_quoting_auth_plain_leaks_nothing() {
    smtp_echo_leaks_nothing(smtp_plain);
}

#[test]
fn smtp_535_quoting_auth_login_leaks_nothing() {
    smtp_echo_leaks_nothing(smtp_login);
}

// ---------------------------------------------------------------------------------------
// Small items: excerpts of peer bodies
// ---------------------------------------------------------------------------------------

fn stats_error(reply: Reply) -> common::Output {
    let page = FakeServer::http(reply);
    Hapwatch::new()
        .config_text(format!(
            "[[source]]\nname = \"lb1\"\nurl = \"{}\"\ntimeout = \"3s\"\n",
            page.url("/stats")
        ))
        .arg("show")
        .run()
}

#[test]
fn a_gzip_error_body_is_described_not_printed() {
    let gzip: Vec<u8> = [0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03]
        .into_iter()
        .chain((0u8..=200).map(|b| b.wrapping_mul(37)))
        .collect();
    let out = stats_error(Reply::http(
        "503 Service Unavailable",
        "text/html\r\ncontent-encoding: gzip",
        &gzip,
    ));
    out.status(1)
        .stderr_contains("HTTP 503 from ")
        .stderr_contains("(gzip-compressed body, 211 bytes)")
        .stderr_lacks("\u{fffd}")
        .stderr_line_count(1);
}

#[test]
fn an_error_excerpt_is_cut_at_a_character_boundary() {
    // The 200-byte excerpt limit falls inside the two-byte `é`.
    let body = format!("{}é{}", "a".repeat(199), "b".repeat(50));
    let out = stats_error(Reply::http("500 Internal Server Error", "text/plain", body));
    out.status(1)
        .stderr_contains(&format!("\"{}\"", "a".repeat(199)))
        .stderr_lacks("\u{fffd}")
        .stderr_line_count(1);
}
