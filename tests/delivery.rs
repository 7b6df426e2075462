//! Delivery that never loses or blocks notifications, against the real binary with real
//! or scripted peers on loopback: redirects are not followed, a refusal for good does not
//! hold up the queue, the Alertmanager outbox stays bounded through an outage and sends
//! current times, every exchange and the whole run have a deadline, and a clock that
//! stepped back does not strand the outbox.
//!
//! Runs use a `file` source holding a real capture and simulated time (`--now`), like
//! `tests/notify.rs`.

mod common;

use common::{closed_addr, fixture_bytes, temp_dir, unix_now, Alertmanager, FakeServer, Hapwatch};
use common::{HttpReceiver, Output, Reply, Respond, SmtpServer};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;

/// Simulated time of the first run: 2027-01-15 08:00:00 UTC.
const BASE: f64 = 1_800_000_000.0;

/// down-after-kill.csv: web3 and web4 DOWN; one ServerDown notification of two alerts.
const DOWN: &str = "haproxy-2.6/down-after-kill.csv";
/// check-in-progress.csv: web3 back UP, web4 still DOWN.
const WEB3_BACK: &str = "haproxy-2.6/check-in-progress.csv";

const SUBJECT_FIRING: &str = "[FIRING:2] ServerDown app-main (lb1)";

const RULE: &str = "[[rule]]\nname = \"ServerDown\"\nscope = { type = \"server\" }\n\
                    when = 'state == \"down\"'\nseverity = \"critical\"\n";

/// A config in a temp dir: a `file` source `lb1` reading `lb1.csv`, the ServerDown rule,
/// `[state] file = "state.json"`, and the given notifiers (rewritten with
/// [`Lab::set_notifiers`]).
struct Lab {
    dir: TempDir,
    config: PathBuf,
    source_extra: String,
}

impl Lab {
    fn new(notifiers: &str) -> Lab {
        Lab::with_source("", notifiers)
    }

    fn with_source(source_extra: &str, notifiers: &str) -> Lab {
        let dir = temp_dir();
        let config = dir.path().join("hapwatch.toml");
        let lab = Lab {
            dir,
            config,
            source_extra: source_extra.to_string(),
        };
        lab.set_notifiers(notifiers);
        lab.capture(DOWN);
        lab
    }

    fn set_notifiers(&self, notifiers: &str) {
        let text = format!(
            "[[source]]\nname = \"lb1\"\nfile = \"lb1.csv\"\n{}\n{RULE}\n[state]\nfile = \"state.json\"\n\n{notifiers}",
            self.source_extra
        );
        std::fs::write(&self.config, text).unwrap();
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn capture(&self, fixture: &str) {
        self.write_capture(&fixture_bytes(fixture));
    }

    fn write_capture(&self, bytes: &[u8]) {
        std::fs::write(self.path("lb1.csv"), bytes).unwrap();
    }

    fn hapwatch(&self) -> Hapwatch {
        Hapwatch::new().config_path(&self.config)
    }

    /// `hapwatch run --now BASE+at`.
    fn run_at(&self, at: f64) -> Output {
        self.run_now(BASE + at)
    }

    fn run_now(&self, now: f64) -> Output {
        self.hapwatch()
            .args(["run", "--now", &now.to_string()])
            .run()
    }

    fn state_text(&self) -> String {
        std::fs::read_to_string(self.path("state.json")).unwrap()
    }

    fn outbox(&self) -> Vec<Value> {
        let state: Value = serde_json::from_str(&self.state_text()).unwrap();
        state["outbox"].as_array().unwrap().clone()
    }
}

/// What a hapwatch webhook body announces: `"resolved"` when it carries a recovery,
/// else `"firing"` (its `status` is the group's, firing while any alert of it fires).
fn news(body: &Value) -> &'static str {
    if body["resolved"].as_array().is_some_and(|r| !r.is_empty()) {
        "resolved"
    } else {
        "firing"
    }
}

fn webhook(name: &str, url: &str, extra: &str) -> String {
    format!("[notifier.{name}]\ntype = \"webhook\"\nurl = \"{url}\"\n{extra}\n\n")
}

fn unix(rfc3339: &Value) -> f64 {
    let text = rfc3339.as_str().unwrap();
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .timestamp_millis() as f64
        / 1000.0
}

// ---------------------------------------------------------------------------------------
// Redirects
// ---------------------------------------------------------------------------------------

/// A 302 would turn the webhook's POST into a body-less GET that "succeeds" (the
/// notification lost) and carry the custom header and the HMAC signature to the other
/// origin. Not followed: a failure that names the Location, kept in the outbox; the other
/// origin sees nothing. The same for Alertmanager (a 301).
#[test]
fn a_redirect_is_a_failure_naming_the_location_and_nothing_reaches_the_other_origin() {
    let other = HttpReceiver::start();
    let stolen = other.url_for("/stolen");
    let hook = HttpReceiver::builder()
        .default_response(Respond::status(302).header("location", &stolen))
        .start();
    let am = HttpReceiver::builder()
        .default_response(Respond::status(301).header("location", &other.url_for("/am")))
        .start();
    let lab = Lab::new(&format!(
        "{}[notifier.am]\ntype = \"alertmanager\"\nurl = \"{}\"\nretries = 0\n",
        webhook(
            "hook",
            &hook.url_for("/hook"),
            "retries = 0\nsecret = \"env:HAPW_HOOK_KEY\"\nheaders = { X-Team = \"env:HAPW_TEAM\" }"
        ),
        am.url()
    ));
    let out = lab
        .hapwatch()
        .env("HAPW_HOOK_KEY", "k-2f9a")
        .env("HAPW_TEAM", "blue-7")
        .args(["run", "--now", &BASE.to_string()])
        .run();
    out.status(1)
        .stderr_contains(&format!(
            "hapwatch: notifier hook: HTTP 302 from {}: redirects to {stolen}, which hapwatch \
             does not follow",
            hook.url_for("/hook")
        ))
        .stderr_contains(&format!(
            "hapwatch: notifier am: HTTP 301 from {}/api/v2/alerts: redirects to {}",
            am.url(),
            other.url_for("/am")
        ));
    assert!(
        other.requests().is_empty(),
        "nothing reaches the other origin: {:?}",
        other.requests()
    );
    assert_eq!(hook.requests().len(), 1);
    assert_eq!(hook.requests()[0].method, "POST");
    let outbox = lab.outbox();
    let names: Vec<&str> = outbox
        .iter()
        .map(|i| i["notifier"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["hook", "am"],
        "not delivered: kept for the next runs"
    );
}

/// The stats page is a GET and may sit behind a redirect (followed), but its basic-auth
/// credentials never go along.
#[test]
fn the_stats_page_follows_a_redirect_without_its_credentials() {
    let other = HttpReceiver::builder()
        .default_response(Respond::text(
            200,
            "# pxname,svname,status,\napp,web1,UP,\n",
        ))
        .start();
    let stats = HttpReceiver::builder()
        .default_response(Respond::status(302).header("location", &other.url_for("/elsewhere")))
        .start();
    let out = Hapwatch::new()
        .config_text(format!(
            "[[source]]\nname = \"lb1\"\nurl = \"{}\"\nusername = \"monitor\"\npassword = \"env:HAPW_STATS_PW\"\n",
            stats.url_for("/stats")
        ))
        .env("HAPW_STATS_PW", "pw-77c1")
        .args(["show", "--format", "csv"])
        .run();
    out.success().stdout_contains("app,web1,UP,");
    let to_stats = stats.requests();
    assert!(to_stats[0].header("authorization").is_some());
    let to_other = other.requests();
    assert_eq!(to_other.len(), 1);
    assert_eq!(to_other[0].method, "GET");
    assert_eq!(
        to_other[0].header("authorization"),
        None,
        "{:?}",
        to_other[0]
    );
}

// ---------------------------------------------------------------------------------------
// Permanent refusals
// ---------------------------------------------------------------------------------------

/// A 404 is reported once and dropped; the recovery behind it goes out in the next run. A
/// 429 (and a 5xx) is retried, first in first out.
#[test]
fn a_permanent_refusal_is_reported_once_and_does_not_block_later_notifications() {
    let gone = HttpReceiver::builder()
        .then(Respond::text(404, "no such hook"))
        .start();
    let busy = HttpReceiver::builder()
        .then(Respond::text(429, "slow down"))
        .then(Respond::text(500, "still busy"))
        .start();
    let lab = Lab::new(&format!(
        "{}{}",
        webhook("gone", &gone.url_for("/hook"), "retries = 0"),
        webhook("busy", &busy.url_for("/hook"), "retries = 0"),
    ));
    lab.run_at(0.0).status(1).stderr_is(&format!(
        "hapwatch: notifier busy: HTTP 429 from {}: slow down (kept in the outbox for the next \
         runs)\nhapwatch: notifier gone: HTTP 404 from {}: no such hook (refused for good: \
         dropped, not retried: {SUBJECT_FIRING})\n",
        busy.url_for("/hook"),
        gone.url_for("/hook"),
    ));
    let outbox = lab.outbox();
    assert_eq!(outbox.len(), 1, "{outbox:?}");
    assert_eq!(outbox[0]["notifier"], "busy");
    // Remembered for `state show`, not only said once on stderr.
    let state: Value = serde_json::from_str(&lab.state_text()).unwrap();
    assert_eq!(state["refused"][0]["notifier"], "gone");
    assert_eq!(state["refused"][0]["what"], SUBJECT_FIRING);
    lab.hapwatch()
        .args(["state", "show"])
        .run()
        .success()
        .stdout_contains("refused for good (dropped, not retried; the last 1):")
        .stdout_contains(&format!(
            "HTTP 404 from {}: no such hook",
            gone.url_for("/hook")
        ));

    // web3 recovers: `gone` gets the recovery at once; `busy` keeps it behind the problem,
    // silently: `busy` failing was said in the first run (-v says it again).
    lab.capture(WEB3_BACK);
    lab.run_at(30.0).status(1).stderr_empty();
    assert_eq!(lab.outbox().len(), 2);
    let to_gone = gone.requests();
    assert_eq!(to_gone.len(), 2);
    assert_eq!(to_gone[1].json()["resolved"][0]["labels"]["server"], "web3");
    // web4 is still down: the group still fires.
    assert_eq!(to_gone[1].json()["status"], "firing");

    // Due: a 500 now, still kept, still in order.
    lab.run_at(60.0).status(1);
    assert_eq!(lab.outbox().len(), 2);
    // Then both go out, the problem first; the end of `busy`'s trouble is one line.
    lab.run_at(180.0)
        .success()
        .stderr_line_count(1)
        .stderr_contains("notifier busy works again: the outbox delivered what waited for it");
    let to_busy = busy.requests();
    // (What each says: `status` stays "firing" for web3's recovery, web4 being down.)
    let statuses: Vec<&str> = to_busy.iter().map(|r| news(&r.json())).collect();
    assert_eq!(statuses, ["firing", "firing", "firing", "resolved"]);
    assert!(lab.outbox().is_empty());
    assert_eq!(
        gone.requests().len(),
        2,
        "the refused one is never sent again"
    );
}

/// SMTP: a 5xx reply refuses for good (dropped, the next mail goes out), a 4xx one says
/// "later" (kept).
#[test]
fn smtp_5xx_is_dropped_and_4xx_is_kept() {
    let Some(smtp) = SmtpServer::builder()
        .reject_rcpt_to("gone@example.net", "550 5.1.1 no such user")
        .reject_rcpt_to("later@example.net", "451 4.3.0 try again later")
        .start_or_skip()
    else {
        return;
    };
    let notifier = |name: &str, to: &str| {
        format!(
            "[notifier.{name}]\ntype = \"smtp\"\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n\
             from = \"hapwatch@lb1.example.net\"\nto = [\"{to}\"]\nretries = 0\n\n",
            smtp.port()
        )
    };
    let lab = Lab::new(&format!(
        "{}{}",
        notifier("gone", "gone@example.net"),
        notifier("later", "later@example.net")
    ));
    let out = lab.run_at(0.0);
    out.status(1)
        .stderr_line_count(2)
        .stderr_contains("(550): 5.1.1 no such user (refused for good: dropped, not retried: ")
        .stderr_contains("(451): 4.3.0 try again later (kept in the outbox for the next runs)");
    let outbox = lab.outbox();
    assert_eq!(outbox.len(), 1, "{outbox:?}");
    assert_eq!(outbox[0]["notifier"], "later");
}

// ---------------------------------------------------------------------------------------
// Alertmanager: one pending push, current times
// ---------------------------------------------------------------------------------------

/// `DOWN` with `n` more DOWN servers (`srv000`…) in app-main, `srv000` UP if `first_up`.
fn many_down(n: usize, first_up: bool) -> Vec<u8> {
    let text = String::from_utf8(fixture_bytes(DOWN)).unwrap();
    let web3 = text
        .lines()
        .find(|l| l.starts_with("app-main,web3,"))
        .unwrap()
        .to_string();
    let mut out = String::new();
    for line in text.lines() {
        out.push_str(line);
        out.push('\n');
        if line.starts_with("app-main,web4,") {
            for i in 0..n {
                let row = web3.replacen("app-main,web3,", &format!("app-main,srv{i:03},"), 1);
                let row = if i == 0 && first_up {
                    row.replacen(",DOWN,", ",UP,", 1)
                } else {
                    row
                };
                out.push_str(&row);
                out.push('\n');
            }
        }
    }
    out.into_bytes()
}

/// Alertmanager down for 15 runs with 202 alerts: the outbox keeps one push (the state
/// does not grow with the runs); when it is back it gets each alert once, firing ones
/// ending in the future, and the recovery that happened meanwhile.
#[test]
fn alertmanager_down_for_many_runs_keeps_one_push_and_sends_current_times_when_back() {
    let Some(am) = Alertmanager::start_or_skip() else {
        return;
    };
    let down = closed_addr();
    let notifier = |url: &str| {
        format!("[notifier.am]\ntype = \"alertmanager\"\nurl = \"{url}\"\nretries = 0\n")
    };
    let lab = Lab::new(&notifier(&format!("http://{down}")));
    lab.write_capture(&many_down(200, false));
    // Alertmanager judges endsAt against its own clock: the outage lies in the past 16
    // minutes, the run that reaches it is now.
    // Whole seconds, so that the backoff lands exactly on the runs.
    let base = unix_now().floor() - 16.0 * 60.0;
    let mut sizes = Vec::new();
    for i in 0..15 {
        if i == 5 {
            lab.write_capture(&many_down(200, true));
        }
        let out = lab.run_now(base + 60.0 * f64::from(i));
        out.status(1);
        let outbox = lab.outbox();
        assert_eq!(outbox.len(), 1, "run {i}: one pending push");
        sizes.push(lab.state_text().len());
    }
    let outbox = lab.outbox();
    let alerts = outbox[0]["payload"]["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 202, "one entry per alert");
    assert_eq!(
        alerts
            .iter()
            .filter(|a| a["resolved_at"].is_number())
            .count(),
        1,
        "srv000's recovery is kept"
    );
    assert!(
        sizes[14] <= sizes[6] + 1024,
        "the state does not grow with the runs: {sizes:?}"
    );

    // Back. Backoff 1, 2, 4, 8 min from the first run: the push is due at 15 min.
    lab.set_notifiers(&notifier(&am.url()));
    let now = base + 15.0 * 60.0;
    lab.run_now(now)
        .success()
        .stderr_line_count(1)
        .stderr_contains("notifier am works again");
    assert!(lab.outbox().is_empty());
    let received = am.received();
    assert_eq!(
        (received.firing, received.resolved, received.invalid),
        (201, 1, 0),
        "each alert once; only the real recovery counts as resolved"
    );
    let listed = am.wait_for_alerts(&[("alertname", "ServerDown")], 201, Duration::from_secs(5));
    for alert in &listed {
        assert!(unix(&alert["endsAt"]) > now, "{alert}");
        assert!(unix(&alert["startsAt"]) <= now, "{alert}");
    }
    assert!(am.alerts_with(&[("server", "srv000")]).is_empty());
}

// ---------------------------------------------------------------------------------------
// Deadlines
// ---------------------------------------------------------------------------------------

/// A scripted SMTP peer on loopback, one thread per connection, stopped when dropped.
struct FakeSmtp {
    port: u16,
    stop: Arc<AtomicBool>,
    /// Connections accepted.
    connections: Arc<AtomicUsize>,
    /// Mails transferred to the end (the final `.`).
    mails: Arc<AtomicUsize>,
}

impl FakeSmtp {
    /// `trickle`: the greeting comes one byte every 2 s. Otherwise the greeting and the
    /// replies up to DATA come at once, and the end of the mail is never answered.
    fn start(trickle: bool) -> FakeSmtp {
        FakeSmtp::start_with(trickle.then_some(Duration::from_secs(2)), false)
    }

    /// The greeting one byte every `pause` (at once with `None`); the end of the mail
    /// answered `250` when `accept`, never otherwise.
    fn start_with(pause: Option<Duration>, accept: bool) -> FakeSmtp {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(AtomicUsize::new(0));
        let mails = Arc::new(AtomicUsize::new(0));
        let (flag, count, delivered) = (stop.clone(), connections.clone(), mails.clone());
        listener.set_nonblocking(true).unwrap();
        std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        count.fetch_add(1, Ordering::SeqCst);
                        let (flag, delivered) = (flag.clone(), delivered.clone());
                        std::thread::spawn(move || {
                            serve_smtp(stream, pause, accept, &flag, &delivered)
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        FakeSmtp {
            port,
            stop,
            connections,
            mails,
        }
    }

    /// (connections, mails) so far.
    fn counts(&self) -> (usize, usize) {
        (
            self.connections.load(Ordering::SeqCst),
            self.mails.load(Ordering::SeqCst),
        )
    }
}

impl Drop for FakeSmtp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve_smtp(
    stream: TcpStream,
    pause: Option<Duration>,
    accept: bool,
    stop: &AtomicBool,
    mails: &AtomicUsize,
) {
    stream.set_nonblocking(false).unwrap();
    let mut writer = stream.try_clone().unwrap();
    if let Some(pause) = pause {
        for byte in b"220 slow.example ESMTP\r\n" {
            if stop.load(Ordering::Relaxed) || writer.write_all(&[*byte]).is_err() {
                return;
            }
            std::thread::sleep(pause);
        }
    } else if writer.write_all(b"220 fake.example ESMTP\r\n").is_err() {
        return;
    }
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut reader = BufReader::new(stream);
    let mut in_data = false;
    let mut line = String::new();
    while !stop.load(Ordering::Relaxed) {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => return,
            Ok(_) => {}
            Err(_) => continue,
        }
        if in_data {
            if line == ".\r\n" {
                mails.fetch_add(1, Ordering::SeqCst);
                if accept {
                    in_data = false;
                    if writer.write_all(b"250 queued\r\n").is_err() {
                        return;
                    }
                }
            }
            // Otherwise the end of the mail: stay silent.
            continue;
        }
        let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" | "HELO" => b"250 fake.example\r\n",
            "MAIL" | "RCPT" => b"250 OK\r\n",
            "DATA" => {
                in_data = true;
                b"354 go ahead\r\n"
            }
            "QUIT" => {
                let _ = writer.write_all(b"221 bye\r\n");
                return;
            }
            _ => b"502 no\r\n",
        };
        if writer.write_all(reply).is_err() {
            return;
        }
    }
    let _ = reader.get_mut().read(&mut [0; 1]);
}

fn fake_smtp_notifier(port: u16) -> String {
    format!(
        "[notifier.mail]\ntype = \"smtp\"\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\n\
         from = \"hapwatch@lb1.example.net\"\nto = [\"oncall@example.net\"]\nretries = 0\n\
         timeout = \"3s\"\n"
    )
}

/// An SMTP server that trickles its replies (one byte every 2 s keeps every read within a
/// 3 s per-read timeout), and one that goes silent after the mail (no reply to the final
/// `.`): either way the attempt ends "timed out after 3 s" for the whole session (not an
/// `os error 11` well after it) and the mail is kept. With the trickler, the run then waits
/// for the abandoned session (it might still deliver) only within what is left of its
/// `run_timeout` (5 s here).
#[test]
fn a_trickling_or_silent_smtp_server_times_out_at_the_session_deadline() {
    for (trickle, settings) in [(true, "[alerting]\nrun_timeout = \"5s\"\n\n"), (false, "")] {
        let smtp = FakeSmtp::start(trickle);
        let lab = Lab::new(&format!("{settings}{}", fake_smtp_notifier(smtp.port)));
        let out = lab.run_at(0.0);
        out.status(1)
            .finished_within(Duration::from_secs(20))
            .stderr_is(&format!(
                "hapwatch: notifier mail: SMTP 127.0.0.1:{}: timed out after 3 s (the whole \
                 session: connect, TLS, AUTH and the mail) (kept in the outbox for the next runs)\n",
                smtp.port
            ));
        assert_eq!(lab.outbox().len(), 1, "trickle: {trickle}");
    }
}

/// A webhook answering one byte every 300 ms: each read is quick, the whole answer would
/// take a minute; `timeout = "2s"` bounds the whole exchange.
#[test]
fn a_trickling_webhook_times_out_as_a_whole() {
    let body = "x".repeat(200);
    let response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let hook = FakeServer::http(Reply::Trickle {
        bytes: response.into_bytes(),
        chunk: 1,
        pause: Duration::from_millis(300),
    });
    let lab = Lab::new(&webhook(
        "hook",
        &hook.url("/hook"),
        "retries = 0\ntimeout = \"2s\"",
    ));
    lab.run_at(0.0)
        .status(1)
        .finished_within(Duration::from_secs(20))
        .stderr_is(&format!(
            "hapwatch: notifier hook: {}: timed out after 2 s (kept in the outbox for the next \
             runs)\n",
            hook.url("/hook")
        ));
    assert_eq!(lab.outbox().len(), 1);
}

/// `retries` is bounded: 4294967295 retries against a dead webhook would never end.
#[test]
fn retries_beyond_the_limit_are_a_config_error() {
    let lab = Lab::new(&webhook(
        "hook",
        &format!("http://{}/hook", closed_addr()),
        "retries = 4294967295",
    ));
    let out = lab.hapwatch().arg("check").run();
    out.status(2).stdout_empty().stderr_is(&format!(
        "hapwatch: {}:14:1: notifier \"hook\": retries = 4294967295: at most 10 (retries \
         within one run; later runs retry from the outbox)\n",
        lab.config.display()
    ));
}

/// `[alerting] run_timeout` bounds the run: five hanging webhooks with a 5 s timeout each
/// would take 25 s; with `run_timeout = "3s"` the run ends at about 3 s, and what was not
/// sent stays in the outbox.
#[test]
fn run_timeout_bounds_a_run_and_keeps_the_rest_in_the_outbox() {
    let hang = HttpReceiver::builder()
        .default_response(Respond::Hang)
        .start();
    let hooks: String = (1..=5)
        .map(|i| {
            webhook(
                &format!("h{i}"),
                &hang.url_for(&format!("/h{i}")),
                "retries = 0\ntimeout = \"5s\"",
            )
        })
        .collect();
    let lab = Lab::new(&format!("[alerting]\nrun_timeout = \"3s\"\n\n{hooks}"));
    let out = lab.run_at(0.0);
    out.status(1)
        .finished_within(Duration::from_secs(15))
        .stderr_contains(&format!(
            "hapwatch: notifier h1: {}: timed out after ",
            hang.url_for("/h1")
        ))
        .stderr_contains(
            "hapwatch: the run's time budget ([alerting] run_timeout = 3 s) is spent: 4 \
             notifications not attempted, kept in the outbox for the next runs",
        );
    assert_eq!(lab.outbox().len(), 5, "nothing lost");
}

/// A FIFO as a `file` source: opening it waits for a writer for ever. The source's
/// `timeout` bounds it.
#[test]
fn a_fifo_file_source_times_out() {
    let lab = Lab::with_source("timeout = \"1s\"", "");
    let fifo = lab.path("fifo.csv");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    std::fs::write(
        &lab.config,
        std::fs::read_to_string(&lab.config)
            .unwrap()
            .replace("lb1.csv", "fifo.csv"),
    )
    .unwrap();
    let out = lab.run_at(0.0);
    out.status(1)
        .finished_within(Duration::from_secs(20))
        .stderr_contains(&format!(
            "source lb1: no complete reply from {} within 1000ms (timeout)",
            fifo.display()
        ));
}

/// `file = "-"` with a standard input that stays open and silent (a stuck producer in a
/// pipe): the source's `timeout` bounds it.
#[test]
fn a_stdin_file_source_that_never_ends_times_out() {
    use std::process::{Command, Stdio};
    let lab = Lab::with_source("timeout = \"1s\"", "");
    std::fs::write(
        &lab.config,
        std::fs::read_to_string(&lab.config)
            .unwrap()
            .replace("file = \"lb1.csv\"", "file = \"-\""),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hapwatch"))
        .arg("-c")
        .arg(&lab.config)
        .args(["run", "--now", &BASE.to_string()])
        .env_remove("HAPWATCH_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Held open, nothing written, until the end of the test.
    let _stdin = child.stdin.take();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("hapwatch did not end within 20 s with a 1 s source timeout (killed)");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "hapwatch: source lb1: no complete reply from standard input within 1000ms (timeout)"
        ),
        "{stderr}"
    );
}

// ---------------------------------------------------------------------------------------
// The clock stepping back
// ---------------------------------------------------------------------------------------

/// Items queued "a day ahead" (then the clock stepped back, e.g. an NTP step or a VM
/// snapshot restored) are retried now, not stuck behind a `next_attempt` a day away, and
/// what queues behind them is not dropped.
#[test]
fn a_clock_that_stepped_back_retries_queued_items_instead_of_stranding_them() {
    let hook = HttpReceiver::builder()
        .then(Respond::text(500, "down"))
        .start();
    let lab = Lab::new(&webhook("hook", &hook.url_for("/hook"), "retries = 0"));
    let day = 86_400.0;
    lab.run_at(day).status(1);
    assert_eq!(lab.outbox()[0]["next_attempt"], BASE + day + 60.0);

    // The clock steps back a day: the item is due now.
    lab.run_at(0.0)
        .success()
        .stderr_line_count(1)
        .stderr_contains("notifier hook works again");
    assert_eq!(hook.requests().len(), 2);
    assert!(lab.outbox().is_empty());
    lab.capture(WEB3_BACK);
    lab.run_at(60.0).success().stderr_empty();
    let statuses: Vec<&str> = hook.requests().iter().map(|r| news(&r.json())).collect();
    assert_eq!(statuses, ["firing", "firing", "resolved"]);
}

/// An Alertmanager push queued a day ahead, sent after the clock stepped back: its times
/// are computed when sent, so Alertmanager accepts it (it rejects `startsAt` after
/// `endsAt` with 400, for ever).
#[test]
fn alertmanager_times_are_computed_when_sent_after_the_clock_stepped_back() {
    let Some(am) = Alertmanager::start_or_skip() else {
        return;
    };
    let notifier = |url: &str| {
        format!("[notifier.am]\ntype = \"alertmanager\"\nurl = \"{url}\"\nretries = 0\n")
    };
    let lab = Lab::new(&notifier(&format!("http://{}", closed_addr())));
    let now = unix_now();
    lab.run_now(now + 86_400.0).status(1);
    assert_eq!(lab.outbox().len(), 1);

    lab.set_notifiers(&notifier(&am.url()));
    lab.run_now(now)
        .success()
        .stderr_line_count(1)
        .stderr_contains("notifier am works again");
    assert!(lab.outbox().is_empty());
    let received = am.received();
    assert_eq!((received.firing, received.invalid), (2, 0));
    for alert in am.wait_for_alerts(&[("alertname", "ServerDown")], 2, Duration::from_secs(5)) {
        assert!(unix(&alert["startsAt"]) <= now + 1.0, "{alert}");
        assert!(unix(&alert["endsAt"]) > now, "{alert}");
    }
}

// ---------------------------------------------------------------------------------------
// Round 2 review: abandoned sessions, refused recipients, budgets, type changes, the clock
// ---------------------------------------------------------------------------------------

/// A server whose greeting takes 6 s (one byte every 0.25 s) with `timeout = "3s"` and
/// `retries = 2`: the first session is abandoned at 3 s but still delivers at about 6 s.
/// No retry starts a second session beside it; the run collects its result, counts the
/// mail as delivered, and the next run does not send it again: one connection, one mail.
#[test]
fn an_abandoned_smtp_session_that_delivers_late_is_not_sent_again() {
    let smtp = FakeSmtp::start_with(Some(Duration::from_millis(250)), true);
    let lab = Lab::new(&fake_smtp_notifier(smtp.port).replace("retries = 0", "retries = 2"));
    lab.run_at(0.0)
        .success()
        .finished_within(Duration::from_secs(25))
        .stderr_empty();
    assert!(lab.outbox().is_empty(), "{:?}", lab.outbox());
    assert_eq!(smtp.counts(), (1, 1), "(connections, mails)");

    lab.run_at(60.0).success().stderr_empty();
    assert!(lab.outbox().is_empty());
    assert_eq!(
        smtp.counts(),
        (1, 1),
        "(connections, mails): not sent again"
    );
}

/// One recipient refused for good (`550 5.1.1 user unknown`) among two: the other still
/// gets the mail, only the refused address is reported (stderr, state `refused`), and
/// nothing is retried.
#[test]
fn one_refused_recipient_does_not_stop_the_mail_to_the_others() {
    let Some(smtp) = SmtpServer::builder()
        .reject_rcpt_to("bob@left.example.net", "550 5.1.1 user unknown")
        .start_or_skip()
    else {
        return;
    };
    let lab = Lab::new(&format!(
        "[notifier.mail]\ntype = \"smtp\"\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n\
         from = \"hapwatch@lb1.example.net\"\n\
         to = [\"oncall@example.net\", \"bob@left.example.net\"]\nretries = 0\n\n",
        smtp.port()
    ));
    lab.run_at(0.0)
        .status(1)
        .stderr_line_count(1)
        .stderr_contains("hapwatch: notifier mail: recipient bob@left.example.net refused: ")
        .stderr_contains("5.1.1 user unknown (refused for good: not sent to this recipient")
        .stderr_lacks("oncall@example.net");
    let mails = smtp.wait_for_messages(1, Duration::from_secs(10));
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert_eq!(mails[0].rcpt_tos, ["oncall@example.net"]);
    assert_eq!(mails[0].subject(), Some(SUBJECT_FIRING));
    assert!(lab.outbox().is_empty(), "{:?}", lab.outbox());
    let state: Value = serde_json::from_str(&lab.state_text()).unwrap();
    let refused = state["refused"].as_array().unwrap();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0]["notifier"], "mail");
    assert!(
        refused[0]["error"]
            .as_str()
            .unwrap()
            .contains("bob@left.example.net"),
        "{refused:?}"
    );

    lab.run_at(60.0).success().stderr_empty();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(smtp.messages().len(), 1, "nothing sent again");
}

/// Five Alertmanager URLs that accept and never answer, `timeout = "4s"` each: the run's
/// `run_timeout = "5s"` bounds them together (before: 5 × 4 s).
#[test]
fn run_timeout_bounds_several_alertmanager_urls_together() {
    let hang = HttpReceiver::builder()
        .default_response(Respond::Hang)
        .start();
    let urls: Vec<String> = (1..=5)
        .map(|i| format!("\"{}\"", hang.url_for(&format!("/am{i}"))))
        .collect();
    let lab = Lab::new(&format!(
        "[alerting]\nrun_timeout = \"5s\"\n\n[notifier.am]\ntype = \"alertmanager\"\n\
         urls = [{}]\nretries = 0\ntimeout = \"4s\"\n",
        urls.join(", ")
    ));
    lab.run_at(0.0)
        .status(1)
        .finished_within(Duration::from_secs(14))
        .stderr_contains("hapwatch: notifier am: ")
        .stderr_contains("kept in the outbox for the next runs");
    assert_eq!(lab.outbox().len(), 1, "nothing lost");
}

/// A notification queued for a webhook whose `type` then became `alertmanager` can never
/// be sent: it is dropped as refused for good (reported, in state `refused`) instead of
/// holding up the notifier's queue until `outbox_max_age`.
#[test]
fn an_item_queued_before_a_notifier_type_change_is_refused_not_stuck() {
    let down = HttpReceiver::builder()
        .default_response(Respond::text(500, "down"))
        .start();
    let lab = Lab::new(&webhook("hook", &down.url_for("/hook"), "retries = 0"));
    lab.run_at(0.0).status(1);
    assert_eq!(lab.outbox().len(), 1);

    let am = HttpReceiver::start();
    lab.set_notifiers(&format!(
        "[notifier.hook]\ntype = \"alertmanager\"\nurl = \"{}\"\nretries = 0\n",
        am.url()
    ));
    lab.run_at(60.0)
        .status(1)
        .stderr_line_count(2)
        .stderr_contains("notifier hook works again")
        .stderr_contains(&format!(
            "hapwatch: notifier hook: now of type alertmanager, which cannot send this \
             notification queued under its earlier type (refused for good: dropped, not \
             retried: {SUBJECT_FIRING})"
        ));
    assert!(lab.outbox().is_empty(), "{:?}", lab.outbox());
    assert_eq!(am.requests().len(), 1, "the push behind it went out");
    let state: Value = serde_json::from_str(&lab.state_text()).unwrap();
    assert_eq!(state["refused"][0]["notifier"], "hook");
    assert_eq!(state["refused"][0]["what"], SUBJECT_FIRING);
}

/// A run with the clock 30 days behind must not save its "age counts from now" clamp:
/// once the clock is right again, the item is 2 minutes old, not 30 days (expired).
#[test]
fn a_clock_behind_for_one_run_does_not_age_the_outbox_afterwards() {
    let hook = HttpReceiver::builder()
        .default_response(Respond::text(500, "down"))
        .start();
    let lab = Lab::new(&webhook("hook", &hook.url_for("/hook"), "retries = 0"));
    lab.run_at(0.0).status(1);
    lab.run_at(-30.0 * 86_400.0).status(1);
    assert_eq!(
        lab.outbox()[0]["created_at"],
        BASE,
        "the clamp is not saved"
    );
    lab.run_at(120.0)
        .status(1)
        .stderr_lacks("gave up")
        .stderr_lacks("outbox_max_age");
    let outbox = lab.outbox();
    assert_eq!(outbox[0]["created_at"], BASE, "{outbox:?}");
}

/// The heartbeat is part of the run: a heartbeat URL that accepts and never answers, with
/// its own `timeout = "20s"`, is bounded by `run_timeout = "2s"`.
#[test]
fn run_timeout_bounds_the_heartbeat() {
    let hang = HttpReceiver::builder()
        .default_response(Respond::Hang)
        .start();
    let lab = Lab::new(&format!(
        "[alerting]\nrun_timeout = \"2s\"\n\n[heartbeat]\nurl = \"{}\"\ntimeout = \"20s\"\n",
        hang.url_for("/ping")
    ));
    lab.hapwatch()
        .args(["run", "--now", &BASE.to_string()])
        .guard(Duration::from_secs(40))
        .run()
        .finished_within(Duration::from_secs(12))
        .stderr_contains("heartbeat ");
}

/// The `file` source swapped between a regular file and a FIFO while runs go on: each run
/// ends (a FIFO is bounded by the source's `timeout`); none blocks opening a FIFO it took
/// for the regular file it checked a moment before.
#[test]
fn a_file_source_swapped_for_a_fifo_never_hangs_a_run() {
    let lab = Lab::with_source("timeout = \"1s\"", "");
    let (regular, fifo) = (lab.path("regular.csv"), lab.path("fifo.csv"));
    std::fs::write(&regular, fixture_bytes(DOWN)).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let (stop, target) = (stop.clone(), lab.path("lb1.csv"));
        let tmp = lab.path("swap.tmp");
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                for source in [&regular, &fifo] {
                    let _ = std::fs::remove_file(&tmp);
                    // Fails only once the test is over (its directory removed).
                    if std::fs::hard_link(source, &tmp).is_err()
                        || std::fs::rename(&tmp, &target).is_err()
                    {
                        return;
                    }
                }
            }
        })
    };
    for _ in 0..40 {
        let out = lab
            .hapwatch()
            .args(["run", "--now", &BASE.to_string()])
            .guard(Duration::from_secs(10))
            .run();
        assert!(matches!(out.code, Some(0 | 1)), "{out:?}");
    }
    stop.store(true, Ordering::Relaxed);
    swapper.join().unwrap();
}
