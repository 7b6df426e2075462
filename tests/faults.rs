//! hapwatch against broken peers and broken configs. No HAProxy needed: the peers are
//! fake servers in threads (see `common/fake.rs`) that stay silent, trickle, cut the reply
//! short, answer garbage, or are not there at all.
//!
//! Whatever goes wrong, hapwatch must say so on one stderr line naming the source, exit 1
//! (2 for config errors), never print a partial snapshot, and never hang.

mod common;

use common::{
    closed_addr, config_toml, fixture_bytes, json_rows, json_source, row_summary, FakeServer,
    Hapwatch, Reply, Source, QUERY,
};
use std::time::Duration;

/// The real reply of HAProxy 2.6.12 to `show info;show stat` (14 rows).
const FULL_REPLY: &str = "haproxy-2.6/show-info-and-stat.txt";

/// Hang guard for runs that should end after a 300 ms timeout. Not a performance
/// assertion: it only has to tell "gave up at the deadline" from "waited forever".
const HANG_GUARD: Duration = Duration::from_secs(5);

/// What HAProxy 2.6 answers to an unknown command (captured from 2.6.12, abridged).
const UNKNOWN_COMMAND: &str =
    "Unknown command, but maybe one of the following ones is a better match:\n  \
show env [var]                          : dump environment variables known to the process\n  \
help [<command>]                        : list matching or all commands\n\n";

fn socket_source(fake: &FakeServer) -> Source {
    Source::new("fake")
        .set("socket", fake.path().display().to_string())
        .set("timeout", "300ms")
}

fn tcp_source(fake: &FakeServer) -> Source {
    Source::new("fake")
        .set("tcp", fake.addr().to_string())
        .set("timeout", "300ms")
}

fn show(source: &Source) -> common::Output {
    Hapwatch::new()
        .config_text(config_toml(std::slice::from_ref(source)))
        .arg("show")
        .run()
}

/// The fixture reply cut after `len` bytes.
fn cut_reply(len: usize) -> Vec<u8> {
    let mut bytes = fixture_bytes(FULL_REPLY);
    assert!(len < bytes.len(), "cut point {len} beyond the fixture");
    bytes.truncate(len);
    bytes
}

// ---------------------------------------------------------------------------------------
// The happy path through the fakes: proves they are faithful enough to test against.
// ---------------------------------------------------------------------------------------

#[test]
fn a_complete_reply_over_a_fake_unix_socket_is_read_in_full() {
    let fake = FakeServer::unix(Reply::Bytes(fixture_bytes(FULL_REPLY)));
    let out = Hapwatch::new()
        .config_text(config_toml(&[socket_source(&fake)]))
        .args(["show", "--format", "json"])
        .run();
    out.success().stderr_empty();
    let doc = out.json();
    let source = json_source(&doc, "fake");
    assert_eq!(json_rows(source).len(), 14, "{source}");
    assert_eq!(source["info"]["Version"], "2.6.12-1+deb12u4");
    assert_eq!(source["info"]["Pid"], "5227");
    let summary = row_summary(source);
    assert_eq!(summary[6], "app-main/web4 server down [DOWN]");
    assert_eq!(summary[8], "static/static1 server no_check [no check]");
    assert_eq!(fake.requests(), [QUERY]);
}

#[test]
fn a_complete_reply_over_a_fake_tcp_socket_is_read_in_full() {
    let fake = FakeServer::tcp(Reply::Bytes(fixture_bytes(FULL_REPLY)));
    let out = Hapwatch::new()
        .config_text(config_toml(&[tcp_source(&fake)]))
        .args(["check", "--connect"])
        .run();
    out.success().stderr_empty();
    let second = out.stdout.lines().nth(1).unwrap_or_default();
    let (summary, timing) = second.rsplit_once(" in ").expect("a timing suffix");
    assert_eq!(
        summary,
        "source fake: HAProxy 2.6.12-1+deb12u4, 14 rows \
         (2 frontends, 4 backends, 8 servers, 0 listeners)",
        "{out:?}"
    );
    assert!(timing.ends_with(" ms"), "{out:?}");
    assert_eq!(fake.requests(), [QUERY]);
}

/// A `show info;show stat` reply or capture with CRLF line ends was `empty reply: no
/// `show stat` output` (the `\r\n\r\n` after `show info` is not `\n\n`), though a CRLF
/// CSV alone was read. Both now read exactly like the LF original, from a file and from a
/// socket whose reply is sent in pieces that split `\r` from `\n`.
#[test]
fn crlf_line_ends_are_read_like_lf_from_files_and_sockets() {
    let lf = fixture_bytes(FULL_REPLY);
    let crlf = String::from_utf8(lf.clone()).unwrap().replace('\n', "\r\n");
    let show = |source: Source, files: &[(&str, &str)]| {
        let mut run = Hapwatch::new();
        for (name, text) in files {
            run = run.file(name, text);
        }
        let out = run
            .config_text(config_toml(&[source]))
            .args(["show", "--format", "json"])
            .run();
        out.success().stderr_empty();
        out.json()
    };
    let want = show(
        Source::new("fake").set("file", "lf.txt"),
        &[("lf.txt", std::str::from_utf8(&lf).unwrap())],
    );
    assert_eq!(json_rows(json_source(&want, "fake")).len(), 14);
    let from_file = show(
        Source::new("fake").set("file", "crlf.txt"),
        &[("crlf.txt", &crlf)],
    );
    assert_eq!(from_file, want);
    // Pieces of 7 bytes: some end between a `\r` and its `\n`.
    let fake = FakeServer::unix(Reply::Trickle {
        bytes: crlf.clone().into_bytes(),
        chunk: 7,
        pause: Duration::from_micros(50),
    });
    let from_socket = show(socket_source(&fake).set("timeout", "20s"), &[]);
    assert_eq!(from_socket, want);
}

#[test]
fn hapwatch_only_ever_sends_the_read_only_query() {
    // Whatever the reply, the bytes sent are exactly one `show info;show stat` line:
    // nothing before it, nothing after it, and no second connection.
    let replies = [
        Reply::Bytes(fixture_bytes(FULL_REPLY)),
        Reply::Bytes(cut_reply(3000)),
        Reply::bytes("Permission denied\n\n"),
        Reply::bytes(""),
        Reply::Silent,
    ];
    for reply in replies {
        let described = format!("{reply:?}").chars().take(60).collect::<String>();
        let unix = FakeServer::unix(reply.clone());
        let tcp = FakeServer::tcp(reply);
        let out = Hapwatch::new()
            .config_text(config_toml(&[
                socket_source(&unix),
                tcp_source(&tcp).set_name("fake-tcp"),
            ]))
            .args(["show", "--format", "json"])
            .run();
        out.finished_within(HANG_GUARD);
        assert_eq!(unix.requests(), [QUERY], "unix, reply {described}");
        assert_eq!(tcp.requests(), [QUERY], "tcp, reply {described}");
    }
}

// ---------------------------------------------------------------------------------------
// Peers that never finish
// ---------------------------------------------------------------------------------------

#[test]
fn a_socket_that_never_answers_times_out() {
    let fake = FakeServer::unix(Reply::Silent);
    let out = show(&socket_source(&fake));
    out.status(1)
        .stdout_empty()
        .stderr_is(&format!(
            "hapwatch: source fake: no complete reply from {} within 300ms (timeout)\n",
            fake.path().display()
        ))
        .finished_within(HANG_GUARD);
    assert!(
        out.elapsed >= Duration::from_millis(300),
        "gave up before the timeout: {out:?}"
    );
    assert_eq!(fake.requests(), [QUERY]);
}

#[test]
fn a_tcp_peer_that_never_answers_times_out() {
    let fake = FakeServer::tcp(Reply::Silent);
    show(&tcp_source(&fake))
        .status(1)
        .stdout_empty()
        .stderr_is(&format!(
            "hapwatch: source fake: no complete reply from {} within 300ms (timeout)\n",
            fake.addr()
        ))
        .finished_within(HANG_GUARD);
}

#[test]
fn a_peer_trickling_bytes_cannot_hold_hapwatch_past_its_timeout() {
    // 20 bytes every 50 ms: each read succeeds well within 300 ms, but the whole reply
    // would take 15 s. The timeout must bound the whole exchange, not each read.
    let fake = FakeServer::unix(Reply::Trickle {
        bytes: fixture_bytes(FULL_REPLY),
        chunk: 20,
        pause: Duration::from_millis(50),
    });
    show(&socket_source(&fake))
        .status(1)
        .stdout_empty()
        .stderr_is(&format!(
            "hapwatch: source fake: no complete reply from {} within 300ms (timeout)\n",
            fake.path().display()
        ))
        .finished_within(HANG_GUARD);
}

// ---------------------------------------------------------------------------------------
// Peers that answer something wrong
// ---------------------------------------------------------------------------------------

#[test]
fn a_reply_cut_in_the_middle_of_the_csv_is_rejected_whole() {
    let full = fixture_bytes(FULL_REPLY);
    let text = String::from_utf8_lossy(&full);
    // Inside the `app-main,web3` row: the info block and several rows arrived intact.
    let cut = text.find("app-main,web3,").expect("fixture has web3") + 30;
    let fake = FakeServer::unix(Reply::Bytes(full[..cut].to_vec()));
    for format in ["table", "csv"] {
        show_with(&socket_source(&fake), &["--format", format])
            .status(1)
            .stdout_empty()
            .stderr_is(&format!(
                "hapwatch: source fake: truncated reply from {}: the connection closed before \
                 the empty line that ends `show stat`; no partial snapshot is used\n",
                fake.path().display()
            ));
    }
}

fn show_with(source: &Source, extra: &[&str]) -> common::Output {
    Hapwatch::new()
        .config_text(config_toml(std::slice::from_ref(source)))
        .arg("show")
        .args(extra)
        .run()
}

#[test]
fn every_kind_of_cut_reply_is_reported_as_truncated() {
    let full = fixture_bytes(FULL_REPLY);
    let text = String::from_utf8_lossy(&full).into_owned();
    let info_end = text.find("\n\n").expect("info block end") + 2;
    let stat_cut = "the connection closed before the empty line that ends `show stat`";
    let cases: [(&str, usize, &str); 5] = [
        (
            "inside show info",
            200,
            "`show info` block has no terminating empty line",
        ),
        (
            "after show info, before show stat",
            info_end,
            "`show stat` output missing after `show info`",
        ),
        ("inside the header line", info_end + 100, stat_cut),
        // Every row is there, only the final empty line is missing.
        ("before the final empty line", full.len() - 1, stat_cut),
        // A row boundary: the CSV that arrived is well-formed, just short.
        (
            "at a row boundary",
            text.find("app-main,web1,").expect("web1 row"),
            stat_cut,
        ),
    ];
    for (what, len, detail) in cases {
        let fake = FakeServer::unix(Reply::Bytes(cut_reply(len)));
        let out = show(&socket_source(&fake));
        out.status(1).stdout_empty();
        let want = format!(
            "hapwatch: source fake: truncated reply from {}: {detail}; no partial snapshot is used\n",
            fake.path().display()
        );
        assert_eq!(out.stderr, want, "cut {what} (at byte {len}): {out:?}");
    }
}

#[test]
fn a_reply_cut_over_tcp_is_reported_as_truncated() {
    let fake = FakeServer::tcp(Reply::Bytes(cut_reply(3000)));
    show(&tcp_source(&fake))
        .status(1)
        .stdout_empty()
        .stderr_is(&format!(
            "hapwatch: source fake: truncated reply from {}: the connection closed before \
             the empty line that ends `show stat`; no partial snapshot is used\n",
            fake.addr()
        ));
}

#[test]
fn an_unknown_command_reply_fails_the_source_and_is_quoted_back() {
    // HAProxy 2.6's real wording. Whatever the category, the source must fail on one
    // line that quotes what HAProxy said.
    let fake = FakeServer::unix(Reply::bytes(UNKNOWN_COMMAND));
    let out = show(&socket_source(&fake));
    out.status(1)
        .stdout_empty()
        .stderr_line_count(1)
        .stderr_contains("hapwatch: source fake: ")
        .stderr_contains(
            "\"Unknown command, but maybe one of the following ones is a better match:\"\n",
        );
}

#[test]
fn haproxy_2_unknown_command_reply_is_an_unexpected_reply() {
    let fake = FakeServer::unix(Reply::bytes(UNKNOWN_COMMAND));
    show(&socket_source(&fake))
        .status(1)
        .stdout_empty()
        .stderr_is(&format!(
            "hapwatch: source fake: unexpected reply from {}: \"Unknown command, but maybe one \
             of the following ones is a better match:\"\n",
            fake.path().display()
        ));
}

#[test]
fn an_old_style_unknown_command_reply_is_an_unexpected_reply() {
    // HAProxy 1.x wording (no comma on the first line).
    let fake = FakeServer::unix(Reply::bytes(
        "Unknown command. Please enter one of the following commands only :\n  \
         help           : this message\n  prompt         : toggle interactive mode with prompt\n\n",
    ));
    show(&socket_source(&fake))
        .status(1)
        .stdout_empty()
        .stderr_is(&format!(
            "hapwatch: source fake: unexpected reply from {}: \"Unknown command. Please enter \
             one of the following commands only :\"\n",
            fake.path().display()
        ));
}

#[test]
fn permission_denied_from_haproxy_is_quoted_back() {
    // What HAProxy answers on a socket whose level is too low for a command.
    let fake = FakeServer::unix(Reply::bytes("Permission denied\n\n"));
    show(&socket_source(&fake)).status(1).stderr_is(&format!(
        "hapwatch: source fake: unexpected reply from {}: \"Permission denied\"\n",
        fake.path().display()
    ));
}

#[test]
fn an_empty_reply_is_reported_as_such() {
    let fake = FakeServer::unix(Reply::bytes(""));
    show(&socket_source(&fake))
        .status(1)
        .stdout_empty()
        .stderr_is(&format!(
            "hapwatch: source fake: empty reply from {}\n",
            fake.path().display()
        ));
    assert_eq!(fake.requests(), [QUERY]);
}

#[test]
fn a_blank_reply_is_reported_as_empty() {
    let fake = FakeServer::tcp(Reply::bytes("\n\n"));
    show(&tcp_source(&fake)).status(1).stderr_is(&format!(
        "hapwatch: source fake: empty reply from {}\n",
        fake.addr()
    ));
}

/// An endless stream of short rows: memory grew to about 5 times the 256 MiB reply cap
/// (14 times with firing rules) before the cap was reached. The parser now stops at
/// 200,000 rows, long before.
#[test]
fn an_endless_stream_of_rows_stops_at_the_row_limit() {
    let fake = FakeServer::unix(Reply::Endless {
        head: b"# pxname,svname,status,\n".to_vec(),
        body: b"app,web1,DOWN,\n".repeat(1000),
    });
    let source = socket_source(&fake).set("timeout", "60s");
    for command in [&["show"][..], &["run", "--dry-run"]] {
        let out = Hapwatch::new()
            .config_text(format!(
                "{}\n[state]\nfile = \"state.json\"\n",
                config_toml(std::slice::from_ref(&source))
            ))
            .args(command)
            .run();
        out.status(1).stderr_contains(&format!(
            "source fake: {}: line 200002: more than 200000 rows, far more than any HAProxy \
             dumps; refusing to read more",
            fake.path().display()
        ));
    }
}

/// Rows of very many empty fields: each one-byte field takes 2 bytes of offset, so the row
/// index outweighed the text. It is now bounded (256 MiB), reached here after 4,097 rows
/// (82 MB of text), long before the 256 MiB reply cap.
#[test]
fn rows_of_many_empty_fields_stop_at_the_index_limit() {
    let columns = 20_000;
    let names: Vec<String> = (0..columns).map(|i| format!("c{i}")).collect();
    let fake = FakeServer::unix(Reply::Endless {
        head: format!("# pxname,svname,{},\n", names.join(",")).into_bytes(),
        body: format!("a,b,{}\n", ",".repeat(columns))
            .repeat(50)
            .into_bytes(),
    });
    show(&socket_source(&fake).set("timeout", "60s"))
        .status(1)
        .stderr_contains("MiB (rows of many, mostly empty fields); refusing to read more");
}

// ---------------------------------------------------------------------------------------
// Nobody there
// ---------------------------------------------------------------------------------------

#[test]
fn a_tcp_port_where_nothing_listens_is_connection_refused() {
    let addr = closed_addr();
    let source = Source::new("fake")
        .set("tcp", addr.to_string())
        .set("timeout", "300ms");
    show(&source)
        .status(1)
        .stdout_empty()
        .stderr_is(&format!(
            "hapwatch: source fake: cannot connect to {addr}: connection refused \
             (nothing is listening; is haproxy running?)\n"
        ))
        .finished_within(HANG_GUARD);
}

#[test]
fn a_missing_socket_path_is_no_such_socket() {
    let dir = common::temp_dir();
    let path = dir.path().join("admin.sock");
    let source = Source::new("fake").set("socket", path.display().to_string());
    show(&source).status(1).stdout_empty().stderr_is(&format!(
        "hapwatch: source fake: cannot connect to {}: no such socket (is haproxy running, \
         and does its `stats socket` line name this path?)\n",
        path.display()
    ));
}

#[test]
fn a_stale_socket_file_left_by_a_dead_haproxy_is_connection_refused() {
    let dir = common::temp_dir();
    let path = dir.path().join("admin.sock");
    drop(std::os::unix::net::UnixListener::bind(&path).expect("bind"));
    assert!(
        path.exists(),
        "the socket file stays after its listener is gone"
    );
    let source = Source::new("fake").set("socket", path.display().to_string());
    show(&source).status(1).stdout_empty().stderr_is(&format!(
        "hapwatch: source fake: cannot connect to {}: connection refused \
         (nothing is listening; is haproxy running?)\n",
        path.display()
    ));
}

#[test]
fn a_relative_socket_path_resolves_against_the_config_directory() {
    // The run's current directory is the config's directory too, so use a config in a
    // subdirectory: a path resolved against the working directory would not exist.
    let fake = FakeServer::unix(Reply::Bytes(fixture_bytes(FULL_REPLY)));
    let run = Hapwatch::new();
    let sub = run.dir().join("etc");
    std::fs::create_dir(&sub).unwrap();
    std::os::unix::fs::symlink(fake.path(), sub.join("lb.sock")).unwrap();
    let config = sub.join("hapwatch.toml");
    std::fs::write(
        &config,
        config_toml(&[Source::new("rel").set("socket", "lb.sock")]),
    )
    .unwrap();
    let out = run
        .config_path(&config)
        .args(["show", "--format", "json"])
        .run();
    out.success();
    assert_eq!(json_rows(json_source(&out.json(), "rel")).len(), 14);
}

// ---------------------------------------------------------------------------------------
// The stats page, faked
// ---------------------------------------------------------------------------------------

fn http_source(fake: &FakeServer) -> Source {
    Source::new("web")
        .set("url", fake.url("/stats"))
        .set("username", "admin")
        .set("password", "env:HAPWATCH_TEST_PW")
        .set("timeout", "300ms")
}

fn show_http(fake: &FakeServer) -> common::Output {
    Hapwatch::new()
        .config_text(config_toml(&[http_source(fake)]))
        .env("HAPWATCH_TEST_PW", "s3cret")
        .arg("show")
        .run()
}

#[test]
fn a_stats_page_answering_500_is_reported_with_its_status_and_body() {
    let fake = FakeServer::http(Reply::http(
        "500 Internal Server Error",
        "text/html",
        "<html><body><h1>500 Internal Server Error</h1>\nAn internal server error occurred.\n</body></html>\n",
    ));
    show_http(&fake)
        .status(1)
        .stdout_empty()
        .stderr_is(&format!(
            "hapwatch: source web: HTTP 500 from {}: \"<html><body><h1>500 Internal Server \
         Error</h1> An internal server error occurred. </body></html>\"\n",
            fake.url("/stats;csv")
        ));
}

/// `https://` on a plain-HTTP stats page: rustls reads the HTTP answer as a TLS record,
/// whose own error says nothing to an operator.
#[test]
fn https_on_a_plain_http_page_says_the_server_does_not_speak_tls() {
    // A plain HTTP server (as HAProxy's stats listener) answers the TLS hello with a 400.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut conn, _) = listener.accept().unwrap();
        let mut hello = [0u8; 512];
        let _ = conn.read(&mut hello);
        let _ = conn.write_all(
            b"HTTP/1.1 400 Bad request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        );
    });
    Hapwatch::new()
        .config_text(config_toml(&[Source::new("web")
            .set("url", format!("https://{addr}/stats"))
            .set("timeout", "5s")]))
        .arg("show")
        .run()
        .status(1)
        .stderr_line_count(1)
        .stderr_contains("hapwatch: source web: ")
        .stderr_contains(
            "the server does not speak TLS here (is it http:// rather than https://?)",
        );
    server.join().unwrap();
}

#[test]
fn a_real_haproxy_401_is_an_authentication_failure_and_credentials_were_sent() {
    let fake = FakeServer::http(Reply::Bytes(fixture_bytes(
        "haproxy-2.6/stats-http-401.txt",
    )));
    show_http(&fake)
        .status(1)
        .stdout_empty()
        .stderr_is(&format!(
            "hapwatch: source web: authentication failed (HTTP 401 from {}): check username \
             and password\n",
            fake.url("/stats;csv")
        ))
        .stderr_lacks("s3cret");
    let requests = fake.requests_text();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let request = &requests[0];
    assert!(
        request.starts_with("GET /stats;csv HTTP/1.1\r\n"),
        "{request}"
    );
    // base64("admin:s3cret")
    assert!(
        request
            .to_ascii_lowercase()
            .contains("\r\nauthorization: basic ywrtaw46cznjcmv0\r\n"),
        "{request}"
    );
}

#[test]
fn a_stats_page_that_never_answers_times_out() {
    let fake = FakeServer::http(Reply::Silent);
    show_http(&fake)
        .status(1)
        .stdout_empty()
        .stderr_is(&format!(
            "hapwatch: source web: no complete reply from {} within 300ms (timeout)\n",
            fake.url("/stats;csv")
        ))
        .finished_within(HANG_GUARD);
}

/// `openssl s_server -www` on a loopback port with `cert`/`key`; killed when dropped.
struct TlsServer {
    child: std::process::Child,
    port: u16,
}

impl TlsServer {
    fn start(cert: &std::path::Path, key: &std::path::Path) -> TlsServer {
        let port = common::free_port();
        let child = std::process::Command::new("openssl")
            .args(["s_server", "-quiet", "-www", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-cert")
            .arg(cert)
            .arg("-key")
            .arg(key)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("cannot start openssl s_server");
        common::wait_until(
            Duration::from_secs(10),
            "openssl s_server to listen",
            || {
                std::net::TcpStream::connect(("127.0.0.1", port))
                    .map(drop)
                    .map_err(|e| e.to_string())
            },
        );
        TlsServer { child, port }
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A self-signed certificate made by `openssl req -x509` is a CA certificate (CA:TRUE),
/// which rustls refused as the server's own certificate even when it was the `ca_file`
/// (`CaUsedAsEndEntity`; curl accepts it with `--cacert`). The exact certificate of the
/// `ca_file` is now trusted as it is; another CA certificate is still refused, with the
/// way to pin it in the message.
#[test]
fn a_self_signed_certificate_given_as_ca_file_is_pinned() {
    if !common::require("openssl") {
        return;
    }
    let dir = common::temp_dir();
    let make = |name: &str| {
        let status = std::process::Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
            ])
            .args([
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
            ])
            .arg("-keyout")
            .arg(dir.path().join(format!("{name}.key")))
            .arg("-out")
            .arg(dir.path().join(format!("{name}.pem")))
            .stderr(std::process::Stdio::null())
            .status()
            .expect("cannot run openssl");
        assert!(status.success());
        (
            dir.path().join(format!("{name}.pem")),
            dir.path().join(format!("{name}.key")),
        )
    };
    let show = |server: &TlsServer, ca: &std::path::Path| {
        let source = Source::new("lb1")
            .set("url", format!("https://127.0.0.1:{}/stats", server.port))
            .set("ca_file", ca.display().to_string())
            .set("timeout", "5s");
        Hapwatch::new()
            .config_text(config_toml(&[source]))
            .arg("show")
            .run()
    };
    let (cert, key) = make("server");
    let (other, _) = make("other");
    let text = std::fs::read_to_string(&cert).unwrap();
    assert!(
        std::process::Command::new("openssl")
            .args(["x509", "-noout", "-text", "-in"])
            .arg(&cert)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).contains("CA:TRUE"))
            .unwrap_or(false),
        "openssl req -x509 made no CA certificate: {text}"
    );
    let server = TlsServer::start(&cert, &key);
    // The handshake passes; `s_server -www` then answers with an HTML page, which is not
    // a stats page.
    show(&server, &cert)
        .status(1)
        .stderr_contains("unexpected reply from https://127.0.0.1:")
        .stderr_lacks("certificate");
    show(&server, &other)
        .status(1)
        .stderr_line_count(1)
        .stderr_contains("CaUsedAsEndEntity)): the server's certificate is a CA certificate")
        .stderr_contains("give server.pem as ca_file");
    drop(server);
    // Certificates signed by the CA in ca_file are verified in full as before: the name
    // must match.
    let openssl = |args: &[&str]| {
        let status = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("cannot run openssl");
        assert!(status.success(), "openssl {args:?}");
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "30",
        "-subj",
        "/CN=test-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    for (name, san) in [("good", "IP:127.0.0.1"), ("bad", "DNS:elsewhere.invalid")] {
        std::fs::write(
            dir.path().join(format!("{name}.ext")),
            format!("subjectAltName={san}\nbasicConstraints=CA:FALSE\n"),
        )
        .unwrap();
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=leaf",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "30",
            "-extfile",
            &format!("{name}.ext"),
            "-out",
            &format!("{name}.pem"),
        ]);
    }
    let ca = dir.path().join("ca.pem");
    let leaf = |name: &str| {
        TlsServer::start(
            &dir.path().join(format!("{name}.pem")),
            &dir.path().join(format!("{name}.key")),
        )
    };
    show(&leaf("good"), &ca)
        .status(1)
        .stderr_contains("unexpected reply from https://127.0.0.1:");
    show(&leaf("bad"), &ca)
        .status(1)
        .stderr_contains("certificate not valid for name \"127.0.0.1\"");
}

#[test]
fn an_html_page_instead_of_csv_is_an_unexpected_reply() {
    // A `url` pointing at the HTML stats page of another tool, say.
    let fake = FakeServer::http(Reply::http(
        "200 OK",
        "text/html",
        "<html><head><title>Statistics Report</title></head></html>\n",
    ));
    show_http(&fake)
        .status(1)
        .stdout_empty()
        .stderr_is(&format!(
            "hapwatch: source web: unexpected reply from {}: \"<html><head><title>Statistics \
         Report</title></head></html>\"\n",
            fake.url("/stats;csv")
        ));
}

#[test]
fn an_unset_password_variable_is_reported_without_connecting() {
    let fake = FakeServer::http(Reply::Silent);
    Hapwatch::new()
        .config_text(config_toml(&[http_source(&fake)]))
        .env_remove("HAPWATCH_TEST_PW")
        .arg("show")
        .run()
        .status(1)
        .stdout_empty()
        .stderr_is(
            "hapwatch: source web: environment variable HAPWATCH_TEST_PW is not set \
             (the config refers to it as env:HAPWATCH_TEST_PW)\n",
        );
    assert!(fake.requests().is_empty(), "hapwatch connected anyway");
}

#[test]
fn check_reports_an_unset_password_variable_once() {
    let fake = FakeServer::http(Reply::Silent);
    let out = Hapwatch::new()
        .config_text(config_toml(&[http_source(&fake)]))
        .env_remove("HAPWATCH_TEST_PW")
        .arg("check")
        .run();
    out.status(1).stderr_is(
        "hapwatch: source web: environment variable HAPWATCH_TEST_PW is not set \
         (the config refers to it as env:HAPWATCH_TEST_PW)\n",
    );
    assert!(
        fake.requests().is_empty(),
        "check without --connect connected"
    );
}

#[test]
fn check_connect_reports_an_unset_password_variable_once() {
    let fake = FakeServer::http(Reply::Silent);
    Hapwatch::new()
        .config_text(config_toml(&[http_source(&fake)]))
        .env_remove("HAPWATCH_TEST_PW")
        .args(["check", "--connect"])
        .run()
        .status(1)
        .stderr_is(
            "hapwatch: source web: environment variable HAPWATCH_TEST_PW is not set \
             (the config refers to it as env:HAPWATCH_TEST_PW)\n",
        );
}

// ---------------------------------------------------------------------------------------
// Captured dumps
// ---------------------------------------------------------------------------------------

#[test]
fn a_capture_on_standard_input_is_read() {
    let out = Hapwatch::new()
        .config_text(config_toml(&[Source::new("snap").set("file", "-")]))
        .args(["show", "--format", "json"])
        .stdin(fixture_bytes(FULL_REPLY))
        .run();
    out.success().stderr_empty();
    let doc = out.json();
    let source = json_source(&doc, "snap");
    assert_eq!(json_rows(source).len(), 14);
    assert_eq!(source["info"]["Name"], "HAProxy");
}

#[test]
fn a_truncated_capture_file_is_rejected() {
    let out = Hapwatch::new()
        .config_text(config_toml(&[Source::new("snap").set("file", "cut.csv")]))
        .file("cut.csv", fixture_bytes("haproxy-2.6/truncated.csv"))
        .arg("show")
        .run();
    out.status(1).stdout_empty().stderr_line_count(1);
    let path = out.config.as_ref().unwrap().with_file_name("cut.csv");
    assert_eq!(
        out.stderr,
        format!(
            "hapwatch: source snap: {}: line 8: 57 fields where the header has 129 \
             (the dump is truncated or malformed)\n",
            path.display()
        ),
        "{out:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Config errors
// ---------------------------------------------------------------------------------------

#[test]
fn an_unknown_config_key_is_a_usage_error_with_its_position() {
    let out = Hapwatch::new()
        .config_text("[[source]]\nname = \"lb1\"\nsokcet = \"/run/haproxy/admin.sock\"\n")
        .arg("show")
        .run();
    out.status(2).stdout_empty().stderr_is(&format!(
        "hapwatch: {}:3:1: unknown key `sokcet` (did you mean `socket`?); valid keys here: \
         name, socket, tcp, url, file, username, password, password_file, ca_file, insecure, \
         timeout, link, labels\n",
        out.config_display()
    ));
}

#[test]
fn a_config_error_stops_check_before_any_connection() {
    let fake = FakeServer::unix(Reply::Silent);
    let text = format!(
        "{}timeout = \"5\"\n",
        config_toml(&[Source::new("fake").set("socket", fake.path().display().to_string())])
    );
    let out = Hapwatch::new()
        .config_text(text)
        .args(["check", "--connect"])
        .run();
    out.status(2).stdout_empty().stderr_line_count(1);
    assert!(
        out.stderr.starts_with(&format!(
            "hapwatch: {}:4:11: invalid duration \"5\": missing unit",
            out.config_display()
        )),
        "{out:?}"
    );
    assert!(fake.requests().is_empty(), "connected despite a bad config");
}

/// `check` passed a `tcp` port out of range or 0 and a `ca_file` that does not exist; the
/// runs then failed (exit 1) on every attempt. Now `check` refuses them like any config
/// error: exit 2, with the file, line and column.
#[test]
fn check_refuses_a_bad_tcp_port_and_a_missing_ca_file() {
    for (key, value, want) in [
        (
            "tcp",
            "127.0.0.1:99999",
            "tcp = \"127.0.0.1:99999\": \"99999\" is not a TCP port; give one from 1 to 65535",
        ),
        (
            "tcp",
            "127.0.0.1:0",
            "tcp = \"127.0.0.1:0\": \"0\" is not a TCP port",
        ),
        ("tcp", "[::1]:http", "\"http\" is not a TCP port"),
        (
            "url",
            "https://127.0.0.1:8404/stats",
            "/no-such-ca.pem: cannot read it: No such file or directory",
        ),
    ] {
        let mut source = Source::new("lb1").set(key, value);
        if key == "url" {
            source = source.set("ca_file", "no-such-ca.pem");
        }
        let out = Hapwatch::new()
            .config_text(config_toml(&[source]))
            .arg("check")
            .run();
        out.status(2).stdout_empty().stderr_line_count(1);
        let prefix = format!("hapwatch: {}:1:1: source \"lb1\": ", out.config_display());
        assert!(
            out.stderr.starts_with(&prefix) && out.stderr.contains(want),
            "wanted {prefix:?} and {want:?}\n{out:?}"
        );
    }
}

#[test]
fn a_missing_config_file_is_a_usage_error() {
    let run = Hapwatch::new();
    let path = run.dir().join("nope.toml");
    run.config_path(&path)
        .arg("show")
        .run()
        .status(2)
        .stderr_is(&format!(
            "hapwatch: cannot read config {}: No such file or directory (os error 2) \
         (pass -c PATH or set HAPWATCH_CONFIG; `hapwatch init` writes a starter config)\n",
            path.display()
        ));
}

#[test]
fn an_unknown_source_name_is_a_usage_error() {
    let fake = FakeServer::unix(Reply::Silent);
    let out = Hapwatch::new()
        .config_text(config_toml(&[socket_source(&fake)]))
        .args(["show", "--source", "lb9"])
        .run();
    out.status(2).stdout_empty().stderr_is(&format!(
        "hapwatch: no source named \"lb9\" in {} (sources: fake)\n",
        out.config_display()
    ));
    assert!(fake.requests().is_empty());
}

#[test]
fn haproxy_is_asked_only_for_the_row_types_the_rules_need() {
    let rule = |scope: &str| {
        format!("[[rule]]\nname = \"R\"\nscope = {scope}\nwhen = 'state == \"down\"'\n\n")
    };
    for (scope, query) in [
        ("{ type = \"server\" }", "show info;show stat -1 4 -1\n"),
        (
            "{ type = [\"frontend\", \"backend\"] }",
            "show info;show stat -1 3 -1\n",
        ),
        ("{ proxy = \"app-*\" }", "show info;show stat\n"),
    ] {
        let fake = FakeServer::unix(Reply::Bytes(fixture_bytes(FULL_REPLY)));
        let config = format!(
            "{}{}\n[state]\nfile = \"state.json\"\n",
            rule(scope),
            config_toml(&[socket_source(&fake)])
        );
        Hapwatch::new()
            .config_text(config)
            .args(["run", "--dry-run"])
            .run()
            .success();
        assert_eq!(fake.requests(), [query.as_bytes()], "scope {scope}");
    }
    // `show --type` asks for those types too.
    let fake = FakeServer::unix(Reply::Bytes(fixture_bytes(FULL_REPLY)));
    Hapwatch::new()
        .config_text(config_toml(&[socket_source(&fake)]))
        .args(["show", "--type", "listener", "--type", "backend"])
        .run()
        .success();
    assert_eq!(
        fake.requests(),
        [b"show info;show stat -1 10 -1\n".as_slice()]
    );
}
