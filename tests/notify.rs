//! The notifiers against real receivers: mail through a real SMTP server (aiosmtpd:
//! plain, STARTTLS, implicit TLS, AUTH, refusals, outages), webhooks through a recording
//! HTTP endpoint (every body format, bearer token, HMAC signature, 500s, hangs), a real
//! Prometheus Alertmanager, `notify-test`, secrets kept out of every output, and one run
//! end to end from a real HAProxy to a real mailbox.
//!
//! Runs are driven like `tests/lifecycle.rs`: a `file` source holding a real capture from
//! `tests/fixtures/haproxy-2.6`, rewritten between runs, and simulated time with `--now`
//! (so that the outbox's backoff can be stepped over). Receivers record a message before
//! they answer it, so once a run has exited, everything it delivered can be counted at
//! once: "no duplicate" checks need no waiting.

mod common;

use common::{
    closed_addr, fixture_bytes, shipped_rule, temp_dir, toml_str, Access, Alertmanager, Haproxy,
    Hapwatch, HttpReceiver, Output, ReceivedMail, ReceivedRequest, Respond, SmtpServer,
};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;
use tempfile::TempDir;

/// Simulated time of the first run: 2027-01-15 08:00:00 UTC.
const BASE: f64 = 1_800_000_000.0;

/// How long a receiver may take to show a delivery (only used where one is expected).
const SEEN: Duration = Duration::from_secs(5);

/// down-after-kill.csv: web3 and web4 DOWN (L4CON); one ServerDown group of two alerts.
const DOWN: &str = "haproxy-2.6/down-after-kill.csv";
/// check-in-progress.csv: web3 back UP, web4 still DOWN.
const WEB3_BACK: &str = "haproxy-2.6/check-in-progress.csv";

const GROUP_KEY: &str = r#"{alertname="ServerDown",source="lb1"}"#;
/// The same group as Alertmanager names it (root route `{}`, then the labels).
const AM_GROUP_KEY: &str = r#"{}:{alertname="ServerDown", source="lb1"}"#;
const SUBJECT_FIRING: &str = "[FIRING:2] ServerDown app-main (lb1)";
/// web3's recovery while web4 is still down: the notification says so.
const SUBJECT_RESOLVED: &str = "[RESOLVED:1, STILL FIRING:1] ServerDown app-main (lb1)";
const FROM: &str = "hapwatch@lb1.example.net";

/// The plain-text listing of the firing notification at [`BASE`].
const BODY_FIRING: &str = "\
FIRING (2)
- ServerDown app-main/web3 on lb1
  status DOWN, check L4CON, value down, since 2027-01-15 08:00:00 UTC
  app-main/web3 on lb1 is DOWN (L4CON: Connection refused)
- ServerDown app-main/web4 on lb1
  status DOWN, check L4CON, value down, since 2027-01-15 08:00:00 UTC
  app-main/web4 on lb1 is DOWN (L4CON: Connection refused)
";

/// The listing of web3's recovery, resolved at `resolved` (`2027-01-15 08:01:00 UTC`),
/// and of web4, which is still down.
fn body_resolved(resolved: &str) -> String {
    format!(
        "RESOLVED (1)\n- ServerDown app-main/web3 on lb1\n  resolved {resolved}, since \
         2027-01-15 08:00:00 UTC; it was: status DOWN, check L4CON, value down\n  was: \
         app-main/web3 on lb1 is DOWN (L4CON: Connection refused)\n\n{STILL_FIRING}"
    )
}

/// The STILL FIRING section of a notification about web3 while web4 is down.
const STILL_FIRING: &str = "\
STILL FIRING (1)
- ServerDown app-main/web4 on lb1
  status DOWN, check L4CON, value down, since 2027-01-15 08:00:00 UTC
  app-main/web4 on lb1 is DOWN (L4CON: Connection refused)
";

// ---------------------------------------------------------------------------------------
// The lab: a config with a file source, rewritten between runs
// ---------------------------------------------------------------------------------------

/// A config in a temp dir: `head` (sources and rules), `[state] file = "state.json"`, and
/// the notifiers under test. `head` defaults to the shipped ServerDown rule and a `file`
/// source `lb1` reading `lb1.csv`, which starts as [`DOWN`].
struct Lab {
    dir: TempDir,
    config: PathBuf,
    head: String,
    base: f64,
}

impl Lab {
    fn new(notifiers: &str) -> Lab {
        let head = format!(
            "[[source]]\nname = \"lb1\"\nfile = \"lb1.csv\"\n\n{}",
            shipped_rule("ServerDown")
        );
        let lab = Lab::with_head(&head, notifiers);
        lab.capture(DOWN);
        lab
    }

    fn with_head(head: &str, notifiers: &str) -> Lab {
        let dir = temp_dir();
        let config = dir.path().join("hapwatch.toml");
        let lab = Lab {
            dir,
            config,
            head: head.to_string(),
            base: BASE,
        };
        lab.set_notifiers(notifiers);
        lab
    }

    /// Rewrites the config with these `[notifier.*]` (and `[routes]`) tables.
    fn set_notifiers(&self, notifiers: &str) {
        let text = format!(
            "{}\n[state]\nfile = \"state.json\"\n\n{notifiers}",
            self.head
        );
        std::fs::write(&self.config, text).unwrap();
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `contents` next to the config (secret files, …).
    fn file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    /// Makes `lb1.csv` hold a capture from tests/fixtures.
    fn capture(&self, fixture: &str) {
        std::fs::write(self.path("lb1.csv"), fixture_bytes(fixture)).unwrap();
    }

    fn chmod(&self, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&self.config, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    fn hapwatch(&self) -> Hapwatch {
        Hapwatch::new().config_path(&self.config)
    }

    fn now(&self, at: f64) -> String {
        (self.base + at).to_string()
    }

    /// `hapwatch run --now base+at`.
    fn run_at(&self, at: f64) -> Output {
        self.hapwatch().args(["run", "--now", &self.now(at)]).run()
    }

    /// Runs at `at` and expects a clean run: exit 0, nothing on stdout or stderr.
    #[track_caller]
    fn quiet_run(&self, at: f64) {
        self.run_at(at).success().stdout_empty().stderr_empty();
    }

    /// Runs at `at`, where `notifier` delivers what waited in the outbox: exit 0, nothing
    /// on stdout, one line on stderr saying that its outage is over.
    #[track_caller]
    fn run_back(&self, at: f64, notifier: &str) {
        self.run_at(at)
            .success()
            .stdout_empty()
            .stderr_line_count(1)
            .stderr_contains(&format!(
                "hapwatch: warning: notifier {notifier} works again: the outbox delivered what \
                 waited for it (it failed from "
            ));
    }

    fn state(&self) -> Value {
        let text = std::fs::read_to_string(self.path("state.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    fn outbox(&self) -> Vec<Value> {
        self.state()["outbox"].as_array().unwrap().clone()
    }
}

/// `[notifier.NAME]` for an SMTP server on 127.0.0.1:`port`, from [`FROM`] to
/// `oncall@example.net`, plus `extra` lines.
fn smtp_notifier(name: &str, port: u16, extra: &str) -> String {
    format!(
        "[notifier.{name}]\ntype = \"smtp\"\nhost = \"127.0.0.1\"\nport = {port}\n\
         from = \"hapwatch <{FROM}>\"\nto = [\"oncall@example.net\"]\n{extra}\n\n"
    )
}

/// `[notifier.NAME]` for a webhook at `url`, plus `extra` lines.
fn webhook_notifier(name: &str, url: &str, extra: &str) -> String {
    format!(
        "[notifier.{name}]\ntype = \"webhook\"\nurl = {}\n{extra}\n\n",
        toml_str(url)
    )
}

// ---------------------------------------------------------------------------------------
// Independent computations to check hapwatch against
// ---------------------------------------------------------------------------------------

/// Alertmanager's fingerprint of a label set (FNV-1a 64 over the sorted names and values,
/// each followed by 0xff), written out here so that hapwatch's is checked, not reused.
fn fingerprint(labels: &[(&str, &str)]) -> String {
    let mut sorted = labels.to_vec();
    sorted.sort();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (name, value) in sorted {
        for bytes in [name.as_bytes(), &[0xff], value.as_bytes(), &[0xff]] {
            for &b in bytes {
                hash ^= u64::from(b);
                hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
    }
    format!("{hash:016x}")
}

/// `sha256=<hex>` of HMAC-SHA256(`key`, `body`).
fn signature(key: &str, body: &[u8]) -> String {
    let tag = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key.as_bytes()),
        body,
    );
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// The labels of the ServerDown alert of `server` (web3 or web4) from the default rules.
fn server_down_labels(server: &str) -> Vec<(&str, &str)> {
    vec![
        ("alertname", "ServerDown"),
        ("proxy", "app-main"),
        ("server", server),
        ("severity", "critical"),
        ("source", "lb1"),
        ("type", "server"),
    ]
}

fn labels_json(labels: &[(&str, &str)]) -> Value {
    labels
        .iter()
        .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

fn annotations_json(server: &str) -> Value {
    json!({
        "check_status": "L4CON",
        "status": "DOWN",
        "summary": format!("app-main/{server} on lb1 is DOWN (L4CON: Connection refused)"),
    })
}

/// One alert in hapwatch's webhook JSON.
fn hapwatch_notice(server: &str, ends_at: Option<&str>) -> Value {
    json!({
        "fingerprint": fingerprint(&server_down_labels(server)),
        "labels": labels_json(&server_down_labels(server)),
        "annotations": annotations_json(server),
        "value": "down",
        "starts_at": "2027-01-15T08:00:00Z",
        "ends_at": ends_at,
        "repeat": false,
    })
}

/// One alert in Alertmanager's webhook JSON.
fn am_webhook_alert(server: &str, status: &str, ends_at: &str) -> Value {
    json!({
        "status": status,
        "labels": labels_json(&server_down_labels(server)),
        "annotations": annotations_json(server),
        "startsAt": "2027-01-15T08:00:00Z",
        "endsAt": ends_at,
        "generatorURL": "",
        "fingerprint": fingerprint(&server_down_labels(server)),
    })
}

/// A Slack message as hapwatch posts it: one attachment, coloured by status.
fn slack(subject: &str, body: &str, color: &str) -> Value {
    json!({
        "attachments": [{"fallback": subject, "color": color, "title": subject, "text": body}],
    })
}

fn requests_to<'a>(all: &'a [ReceivedRequest], path: &str) -> Vec<&'a ReceivedRequest> {
    all.iter().filter(|r| r.path() == path).collect()
}

/// The decoded text/plain body of `mail`, with line ends normalized by the decoder.
#[track_caller]
fn text(mail: &ReceivedMail) -> &str {
    assert_eq!(mail.decode_error, None, "{}", mail.data);
    mail.text.as_deref().expect("a text/plain body")
}

/// `<id@host>`, the only shape a Message-ID may have.
#[track_caller]
fn assert_msg_id(value: &str) {
    let inner = value
        .strip_prefix('<')
        .and_then(|v| v.strip_suffix('>'))
        .unwrap_or_else(|| panic!("Message-ID {value:?} is not <…>"));
    let (local, domain) = inner
        .split_once('@')
        .unwrap_or_else(|| panic!("Message-ID {value:?} has no @"));
    assert!(
        !local.is_empty() && !domain.is_empty(),
        "Message-ID {value:?}"
    );
    assert!(!inner.contains([' ', '<', '>']), "Message-ID {value:?}");
}

// ---------------------------------------------------------------------------------------
// 1. SMTP, plain
// ---------------------------------------------------------------------------------------

#[test]
fn smtp_plain_one_mail_per_problem_and_one_per_recovery_threaded() {
    let Some(smtp) = SmtpServer::start_or_skip() else {
        return;
    };
    let lab = Lab::new(&format!(
        "[notifier.mail]\ntype = \"smtp\"\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n\
         from = \"hapwatch <{FROM}>\"\n\
         to = [\"oncall@example.net\", \"Web Team <web@example.net>\"]\n\
         cc = [\"ops@example.net\"]\n",
        smtp.port()
    ));
    let sent_after = chrono::Utc::now();
    lab.quiet_run(0.0);
    let mails = smtp.messages();
    assert_eq!(mails.len(), 1, "one mail for the two servers down");
    let firing = &mails[0];

    // Envelope: To and Cc recipients, From as the sender; no TLS, no AUTH.
    assert_eq!(firing.mail_from, FROM);
    assert_eq!(
        firing.rcpt_tos,
        ["oncall@example.net", "web@example.net", "ops@example.net"]
    );
    assert!(!firing.tls);
    assert_eq!(firing.user, None);
    // Headers.
    let header = |name: &str| {
        firing
            .header(name)
            .unwrap_or_else(|| panic!("no {name} header in:\n{}", firing.data))
    };
    assert_eq!(header("From"), format!("hapwatch <{FROM}>"));
    assert_eq!(
        header("To"),
        "oncall@example.net, \"Web Team\" <web@example.net>"
    );
    assert_eq!(header("Cc"), "ops@example.net");
    assert_eq!(firing.subject(), Some(SUBJECT_FIRING));
    assert_eq!(header("Auto-Submitted"), "auto-generated");
    // A firing mail starts its incident's thread: a Message-ID at the From domain, and
    // no In-Reply-To / References.
    assert!(header("Message-ID").starts_with("<hapwatch-"));
    assert!(header("Message-ID").ends_with("@lb1.example.net>"));
    assert_eq!(firing.header("In-Reply-To"), None);
    assert_eq!(firing.header("References"), None);
    assert_msg_id(&header("Message-ID"));
    // Date: when it was sent (the real clock; --now only moves the alerts' times).
    let date = chrono::DateTime::parse_from_rfc2822(&header("Date"))
        .unwrap_or_else(|e| panic!("Date {:?}: {e}", header("Date")));
    let skew = (date.with_timezone(&chrono::Utc) - sent_after).num_seconds();
    assert!((-2..=60).contains(&skew), "Date {date} vs {sent_after}");
    for name in [
        "From",
        "To",
        "Cc",
        "Subject",
        "Date",
        "Message-ID",
        "Auto-Submitted",
    ] {
        assert_eq!(firing.header_all(name).len(), 1, "one {name} header");
    }
    assert!(
        header("Content-Type").starts_with("text/plain"),
        "{}",
        header("Content-Type")
    );
    // The body lists each alert: proxy/server, status, check status, since.
    assert_eq!(text(firing).trim_end(), BODY_FIRING.trim_end());

    // Still down: nothing new.
    lab.quiet_run(60.0);
    lab.quiet_run(120.0);
    assert_eq!(
        smtp.messages().len(),
        1,
        "no repeat while the problem lasts"
    );

    // web3 recovers: one resolved mail in the same thread.
    lab.capture(WEB3_BACK);
    lab.quiet_run(180.0);
    let mails = smtp.messages();
    assert_eq!(mails.len(), 2);
    let resolved = &mails[1];
    assert_eq!(resolved.subject(), Some(SUBJECT_RESOLVED));
    assert_eq!(
        resolved.rcpt_tos,
        ["oncall@example.net", "web@example.net", "ops@example.net"]
    );
    // The recovery replies to the firing mail itself.
    assert_eq!(resolved.header("In-Reply-To"), firing.header("Message-ID"));
    assert_eq!(resolved.header("References"), firing.header("Message-ID"));
    let resolved_id = resolved.header("Message-ID").unwrap();
    assert_msg_id(&resolved_id);
    assert_ne!(Some(resolved_id), firing.header("Message-ID"));
    assert_eq!(
        text(resolved).trim_end(),
        body_resolved("2027-01-15 08:03:00 UTC").trim_end()
    );

    // Further runs (web4 still down, web3 up): no duplicate of either mail.
    for minute in 4..10 {
        lab.quiet_run(60.0 * f64::from(minute));
    }
    assert_eq!(smtp.messages().len(), 2);
    assert!(lab.outbox().is_empty());
}

/// Two SMTP notifiers with one From domain sending the same group: each mail has its own
/// Message-ID (it holds the notifier), and each notifier's recovery replies to that
/// notifier's firing mail. Before, both mails had one Message-ID, which a receiving server
/// or mail client may take for one message and drop as a duplicate.
#[test]
fn two_smtp_notifiers_with_one_from_domain_send_distinct_message_ids() {
    let Some(smtp) = SmtpServer::start_or_skip() else {
        return;
    };
    let notifier = |name: &str, to: &str| {
        format!(
            "[notifier.{name}]\ntype = \"smtp\"\nhost = \"127.0.0.1\"\nport = {}\n\
             tls = \"none\"\nfrom = \"hapwatch <{FROM}>\"\nto = [\"{to}\"]\n\n",
            smtp.port()
        )
    };
    let lab = Lab::new(&format!(
        "{}{}[routes]\ndefault = [\"ops\", \"team\"]\n",
        notifier("ops", "ops@example.net"),
        notifier("team", "team@example.net")
    ));
    lab.quiet_run(0.0);
    lab.capture(WEB3_BACK);
    lab.quiet_run(60.0);
    let mails = smtp.wait_for_messages(4, Duration::from_secs(10));
    assert_eq!(mails.len(), 4);
    let of = |to: &str, subject: &str| {
        mails
            .iter()
            .find(|m| m.rcpt_tos == [to] && m.subject() == Some(subject))
            .unwrap_or_else(|| panic!("no {subject:?} to {to}"))
    };
    let ids: std::collections::BTreeSet<String> = mails
        .iter()
        .map(|m| m.header("Message-ID").expect("a Message-ID"))
        .collect();
    assert_eq!(ids.len(), 4, "one Message-ID per mail: {ids:?}");
    for to in ["ops@example.net", "team@example.net"] {
        let firing = of(to, SUBJECT_FIRING);
        let resolved = of(to, SUBJECT_RESOLVED);
        assert_msg_id(&firing.header("Message-ID").unwrap());
        assert!(firing
            .header("Message-ID")
            .unwrap()
            .ends_with("@lb1.example.net>"));
        assert_eq!(resolved.header("In-Reply-To"), firing.header("Message-ID"));
        assert_eq!(resolved.header("References"), firing.header("Message-ID"));
    }
}

/// Two routes send the same alert to two SMTP notifiers; the `team` route is muted during
/// the first minute, so it first announces a minute later. Each route keeps its own
/// thread: `ops`'s recovery replies to the mail `ops` got, not to `team`'s (before, the
/// later first announcement moved the alert's one thread, and `ops`'s readers got a reply
/// to a mail they never saw).
#[test]
fn each_route_threads_its_own_mails_when_one_first_announces_after_a_mute() {
    let Some(smtp) = SmtpServer::start_or_skip() else {
        return;
    };
    let notifier = |name: &str| {
        format!(
            "[notifier.{name}]\ntype = \"smtp\"\nhost = \"127.0.0.1\"\nport = {}\n\
             tls = \"none\"\nfrom = \"hapwatch <{FROM}>\"\nto = [\"{name}@example.net\"]\n\n",
            smtp.port()
        )
    };
    // BASE is 08:00:00 UTC: `team` is muted until 08:01.
    let lab = Lab::new(&format!(
        "{}{}[[time_interval]]\nname = \"first-minute\"\ntimes = [\"08:00-08:01\"]\n\n\
         [[route]]\nname = \"ops\"\nnotify = [\"ops\"]\ncontinue = true\n\n\
         [[route]]\nname = \"team\"\nnotify = [\"team\"]\nmute_time_intervals = [\"first-minute\"]\n",
        notifier("ops"),
        notifier("team")
    ));
    lab.quiet_run(0.0);
    lab.quiet_run(60.0);
    lab.capture(WEB3_BACK);
    lab.quiet_run(120.0);
    let mails = smtp.wait_for_messages(4, Duration::from_secs(10));
    let to = |who: &str| -> Vec<&ReceivedMail> {
        mails
            .iter()
            .filter(|m| m.rcpt_tos == [format!("{who}@example.net")])
            .collect()
    };
    for who in ["ops", "team"] {
        let got = to(who);
        let subjects: Vec<_> = got.iter().map(|m| m.subject()).collect();
        assert_eq!(
            subjects,
            [Some(SUBJECT_FIRING), Some(SUBJECT_RESOLVED)],
            "{who}"
        );
        assert_eq!(
            got[1].header("In-Reply-To"),
            got[0].header("Message-ID"),
            "{who}'s recovery replies to the mail {who} got"
        );
        assert_eq!(got[1].header("References"), got[0].header("Message-ID"));
    }
}

/// A state written before threads were per route keeps one `thread` per alert: it is the
/// thread of every route that announced the alert, so recoveries still reply to it.
#[test]
fn a_thread_from_an_older_state_file_still_threads_the_recovery() {
    let Some(smtp) = SmtpServer::start_or_skip() else {
        return;
    };
    let lab = Lab::new(&smtp_notifier("mail", smtp.port(), "tls = \"none\""));
    lab.quiet_run(0.0);
    // Rewrite the state as an older build wrote it: `thread`, no `threads`.
    let mut state = lab.state();
    for alert in state["alerts"].as_object_mut().unwrap().values_mut() {
        let alert = alert.as_object_mut().unwrap();
        let threads = alert.remove("threads").expect("threads per route");
        alert.insert("thread".into(), threads[""].clone());
    }
    std::fs::write(
        lab.path("state.json"),
        serde_json::to_string(&state).unwrap(),
    )
    .unwrap();
    lab.capture(WEB3_BACK);
    lab.quiet_run(60.0);
    let mails = smtp.wait_for_messages(2, Duration::from_secs(10));
    assert_eq!(mails[1].subject(), Some(SUBJECT_RESOLVED));
    assert_eq!(
        mails[1].header("In-Reply-To"),
        mails[0].header("Message-ID")
    );
}

/// Issue #16 item 7: every incident is its own thread. Before, every ServerDown mail of a
/// source referred to one invented parent (the group's id), so weeks of unrelated
/// incidents formed one thread, the recovery did not refer to the firing mail, and the
/// Message-ID was at the host name while the thread id was at the From domain.
#[test]
fn smtp_threads_each_incident_under_its_own_firing_mail() {
    let Some(smtp) = SmtpServer::start_or_skip() else {
        return;
    };
    let lab = Lab::new(&format!(
        "[notifier.mail]\ntype = \"smtp\"\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n\
         from = \"hapwatch <{FROM}>\"\nto = [\"oncall@example.net\"]\n",
        smtp.port()
    ));
    // Incident 1: web3 (and web4) down, then web3 back.
    lab.quiet_run(0.0);
    lab.capture(WEB3_BACK);
    lab.quiet_run(60.0);
    // Incident 2: web3 down again, then back again.
    lab.capture(DOWN);
    lab.quiet_run(120.0);
    lab.capture(WEB3_BACK);
    lab.quiet_run(180.0);
    let mails = smtp.messages();
    let subjects: Vec<_> = mails.iter().map(ReceivedMail::subject).collect();
    assert_eq!(
        subjects,
        [
            Some(SUBJECT_FIRING),
            Some(SUBJECT_RESOLVED),
            // web3 again, while web4 has been down all along.
            Some("[FIRING:1, STILL FIRING:1] ServerDown app-main (lb1)"),
            Some(SUBJECT_RESOLVED),
        ]
    );
    let id = |i: usize| mails[i].header("Message-ID").expect("a Message-ID");
    for i in 0..4 {
        assert_msg_id(&id(i));
        assert!(
            id(i).ends_with("@lb1.example.net>"),
            "one domain, the From address's: {}",
            id(i)
        );
    }
    let ids: std::collections::BTreeSet<String> = (0..4).map(id).collect();
    assert_eq!(ids.len(), 4, "every mail has its own Message-ID: {ids:?}");
    // Each firing mail starts a thread; each recovery replies to its own firing mail.
    for (firing, resolved) in [(0, 1), (2, 3)] {
        assert_eq!(mails[firing].header("In-Reply-To"), None, "mail {firing}");
        assert_eq!(mails[firing].header("References"), None, "mail {firing}");
        assert_eq!(mails[resolved].header("In-Reply-To"), Some(id(firing)));
        assert_eq!(mails[resolved].header("References"), Some(id(firing)));
    }
    // web4 has been down since the first mail: 4 h later (repeat_interval) it is
    // announced again, in the thread of the mail that first announced it.
    lab.quiet_run(4.0 * 3600.0);
    let mails = smtp.messages();
    assert_eq!(mails.len(), 5);
    assert_eq!(
        mails[4].subject(),
        Some("[FIRING:1] ServerDown app-main (lb1)")
    );
    assert!(text(&mails[4]).contains("ServerDown app-main/web4"));
    assert_eq!(mails[4].header("In-Reply-To"), Some(id(0)));
    assert_eq!(mails[4].header("References"), Some(id(0)));
}

// ---------------------------------------------------------------------------------------
// 2. STARTTLS with the test CA, AUTH
// ---------------------------------------------------------------------------------------

/// Every way to reach a mail server that logs in: STARTTLS (explicit, and as the default)
/// and implicit TLS with the test CA, and AUTH in plain text where explicitly allowed; the
/// password from the environment or from a file (whose trailing newline is not part of it).
/// Each logs in as the right user and delivers the one mail, over TLS unless `tls = "none"`.
#[test]
fn smtp_transport_modes_log_in_and_deliver() {
    enum Mode {
        StartTls,
        Implicit,
        Plain,
    }
    // (what, server mode, user, notifier settings (`{ca}` is the CA file), password file)
    let cases = [
        (
            "starttls, password from env",
            Mode::StartTls,
            "alice",
            "tls = \"starttls\"\nca_file = {ca}\npassword = \"env:HAPW_SMTP_PW\"",
            None,
        ),
        (
            "starttls by default, password file",
            Mode::StartTls,
            "alice",
            "ca_file = {ca}\npassword_file = \"smtp.pw\"",
            Some("pw-for-alice\n"),
        ),
        (
            "implicit tls, password file without a newline",
            Mode::Implicit,
            "bob",
            "tls = \"tls\"\nca_file = {ca}\npassword_file = \"smtp.pw\"",
            Some("pw-for-bob"),
        ),
        (
            "plain text, explicitly allowed",
            Mode::Plain,
            "carol",
            "tls = \"none\"\npassword = \"env:HAPW_SMTP_PW\"\nallow_insecure_auth = true",
            None,
        ),
    ];
    for (what, mode, user, settings, password_file) in cases {
        let password = format!("pw-for-{user}");
        let builder = SmtpServer::builder();
        let builder = match mode {
            Mode::StartTls => builder.require_starttls().auth(user, &password),
            Mode::Implicit => builder.implicit_tls().auth(user, &password),
            Mode::Plain => builder.auth_allow_plaintext(user, &password),
        };
        let Some(smtp) = builder.start_or_skip() else {
            return;
        };
        let ca = smtp
            .ca_file()
            .map(|ca| toml_str(&ca.display().to_string()))
            .unwrap_or_default();
        let settings = format!("username = \"{user}\"\n{}", settings.replace("{ca}", &ca));
        let lab = Lab::new(&smtp_notifier("mail", smtp.port(), &settings));
        if let Some(contents) = password_file {
            lab.file("smtp.pw", contents);
        }
        lab.hapwatch()
            .env("HAPW_SMTP_PW", &password)
            .args(["run", "--now", &lab.now(0.0)])
            .run()
            .success()
            .stdout_empty()
            .stderr_empty();
        let mails = smtp.messages();
        assert_eq!(mails.len(), 1, "{what}");
        let mail = &mails[0];
        let tls = !matches!(mode, Mode::Plain);
        assert_eq!(mail.tls, tls, "{what}: {mail:?}");
        if tls {
            assert!(
                mail.tls_version
                    .as_deref()
                    .is_some_and(|v| v.starts_with("TLSv1.")),
                "{what}: {:?}",
                mail.tls_version
            );
        }
        assert_eq!(mail.user.as_deref(), Some(user), "{what}");
        assert_eq!(mail.subject(), Some(SUBJECT_FIRING), "{what}");
        assert_eq!(text(mail).trim_end(), BODY_FIRING.trim_end(), "{what}");
        assert!(smtp.refusals().is_empty(), "{what}: {:?}", smtp.refusals());
        assert!(lab.outbox().is_empty(), "{what}");
    }
}

#[test]
fn smtp_starttls_without_the_ca_fails_on_the_certificate_and_keeps_the_mail() {
    let Some(smtp) = SmtpServer::builder()
        .require_starttls()
        .auth("alice", "pw-for-alice")
        .start_or_skip()
    else {
        return;
    };
    let port = smtp.port();
    let lab = Lab::new(&smtp_notifier(
        "mail",
        port,
        "username = \"alice\"\npassword = \"env:HAPW_SMTP_PW\"\nretries = 0",
    ));
    let out = lab
        .hapwatch()
        .env("HAPW_SMTP_PW", "pw-for-alice")
        .args(["run", "--now", &lab.now(0.0)])
        .run();
    out.status(1)
        .stdout_empty()
        .stderr_line_count(1)
        .stderr_contains(&format!("hapwatch: notifier mail: SMTP 127.0.0.1:{port}: "))
        .stderr_contains("invalid peer certificate: UnknownIssuer")
        .stderr_contains("(kept in the outbox for the next runs)");
    assert!(smtp.messages().is_empty());
    assert!(
        smtp.refusals().is_empty(),
        "the password was never offered: {:?}",
        smtp.refusals()
    );
    let outbox = lab.outbox();
    assert_eq!(outbox.len(), 1);
    assert_eq!(outbox[0]["notifier"], "mail");
    assert_eq!(outbox[0]["attempts"], 1);
    assert!(outbox[0]["last_error"]
        .as_str()
        .unwrap()
        .contains("UnknownIssuer"));

    // `insecure = true` skips verification: the kept mail goes out on the next due run.
    lab.set_notifiers(&smtp_notifier(
        "mail",
        port,
        "username = \"alice\"\npassword = \"env:HAPW_SMTP_PW\"\ninsecure = true",
    ));
    lab.hapwatch()
        .env("HAPW_SMTP_PW", "pw-for-alice")
        .args(["run", "--now", &lab.now(60.0)])
        .run()
        .success()
        .stderr_line_count(1)
        .stderr_contains("notifier mail works again");
    let mails = smtp.messages();
    assert_eq!(mails.len(), 1);
    assert!(mails[0].tls);
    assert_eq!(mails[0].user.as_deref(), Some("alice"));
    assert!(lab.outbox().is_empty());
}

// ---------------------------------------------------------------------------------------
// 3. Implicit TLS
// ---------------------------------------------------------------------------------------

/// STARTTLS against an implicit-TLS port cannot work (the server waits for a handshake):
/// an error, not a mail in plain text.
#[test]
fn smtp_starttls_against_an_implicit_tls_port_is_an_error() {
    let Some(smtp) = SmtpServer::builder()
        .implicit_tls()
        .auth("bob", "pw-for-bob")
        .start_or_skip()
    else {
        return;
    };
    let ca = toml_str(&smtp.ca_file().unwrap().display().to_string());
    let lab = Lab::new(&smtp_notifier(
        "mail",
        smtp.port(),
        &format!(
            "tls = \"starttls\"\nca_file = {ca}\nusername = \"bob\"\npassword_file = \"pw\"\n\
             timeout = \"2s\"\nretries = 0"
        ),
    ));
    lab.file("pw", "pw-for-bob");
    lab.run_at(0.0)
        .status(1)
        .stderr_line_count(1)
        .stderr_contains(&format!(
            "hapwatch: notifier mail: SMTP 127.0.0.1:{}: ",
            smtp.port()
        ));
    assert!(smtp.messages().is_empty());
    assert_eq!(lab.outbox().len(), 1);
}

// ---------------------------------------------------------------------------------------
// 4. AUTH without TLS
// ---------------------------------------------------------------------------------------

#[test]
fn smtp_auth_in_plain_text_is_a_config_error() {
    let Some(smtp) = SmtpServer::builder()
        .auth_allow_plaintext("carol", "pw-for-carol")
        .start_or_skip()
    else {
        return;
    };
    let auth = "tls = \"none\"\nusername = \"carol\"\npassword = \"env:HAPW_SMTP_PW\"";
    let lab = Lab::new(&smtp_notifier("mail", smtp.port(), auth));
    // The error points at the `[notifier.mail]` line.
    let config_text = std::fs::read_to_string(&lab.config).unwrap();
    let line = 1 + config_text
        .lines()
        .position(|l| l == "[notifier.mail]")
        .unwrap();
    assert!(line > 10, "the table is not on the first lines");
    let want = format!(
        "hapwatch: {}:{line}:1: notifier \"mail\": refusing to send the password in plain text \
         (tls = \"none\"); use tls = \"starttls\" or \"tls\", or set allow_insecure_auth = true\n",
        lab.config.display()
    );
    for args in [vec!["run", "--now", "1800000000"], vec!["check"]] {
        lab.hapwatch()
            .env("HAPW_SMTP_PW", "pw-for-carol")
            .args(args)
            .run()
            .status(2)
            .stdout_empty()
            .stderr_is(&want);
    }
    assert!(!lab.path("state.json").exists(), "nothing was done");
    assert!(smtp.messages().is_empty() && smtp.refusals().is_empty());
}

// ---------------------------------------------------------------------------------------
// 5. SMTP outages and refusals: the outbox
// ---------------------------------------------------------------------------------------

#[test]
fn smtp_down_goes_to_the_outbox_and_is_delivered_once_when_back() {
    let Some(mut smtp) = SmtpServer::start_or_skip() else {
        return;
    };
    let port = smtp.port();
    let lab = Lab::new(&smtp_notifier("mail", port, "tls = \"none\""));
    smtp.stop();
    let out = lab.run_at(0.0);
    out.status(1).stdout_empty().stderr_line_count(1);
    let line = out.stderr.trim_end();
    assert!(
        line.starts_with(&format!("hapwatch: notifier mail: SMTP 127.0.0.1:{port}: ")),
        "{out:?}"
    );
    assert!(line.contains("Connection refused"), "{out:?}");
    // With the default retries = 1 the run tried twice, 500 ms apart.
    assert!(out.elapsed >= Duration::from_millis(500), "{out:?}");
    assert!(
        line.ends_with(" (kept in the outbox for the next runs)"),
        "{out:?}"
    );
    let outbox = lab.outbox();
    assert_eq!(outbox.len(), 1, "{outbox:?}");
    let item = &outbox[0];
    assert_eq!(item["notifier"], "mail");
    assert_eq!(item["attempts"], 1);
    assert_eq!(item["created_at"], BASE);
    assert_eq!(item["next_attempt"], BASE + 60.0, "first backoff: 1 min");
    assert_eq!(item["payload"]["kind"], "notification");
    assert_eq!(item["payload"]["group_key"], GROUP_KEY);
    assert_eq!(item["payload"]["firing"].as_array().unwrap().len(), 2);
    assert!(item["last_error"]
        .as_str()
        .unwrap()
        .contains("Connection refused"));
    assert!(smtp.messages().is_empty());

    // The server is back, but the item is not due yet: nothing is sent, and a run that
    // failed nothing is clean.
    smtp.restart();
    assert_eq!(smtp.port(), port);
    lab.quiet_run(30.0);
    lab.quiet_run(59.0);
    assert!(smtp.messages().is_empty(), "retried before its backoff");
    assert_eq!(lab.outbox().len(), 1);

    // Due: delivered once, the outbox is empty; the outage's end is one line.
    lab.run_back(60.0, "mail");
    let mails = smtp.messages();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].subject(), Some(SUBJECT_FIRING));
    assert_eq!(text(&mails[0]).trim_end(), BODY_FIRING.trim_end());
    assert!(lab.outbox().is_empty());
    for minute in 2..6 {
        lab.quiet_run(60.0 * f64::from(minute));
    }
    assert_eq!(smtp.messages().len(), 1, "no duplicate after redelivery");
}

/// `2027-01-15T08:00:00Z`: a Unix time as hapwatch writes it in its lines.
fn rfc3339(unix: f64) -> String {
    chrono::DateTime::from_timestamp(unix as i64, 0)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Cron mails whatever a run prints: an SMTP server down for an hour must not mail the
/// same "kept in the outbox" line every minute. One line when the notifier starts failing,
/// nothing while the outbox retries (and new notifications queue behind), one line when it
/// delivers again; `-v` shows each retry.
#[test]
fn an_smtp_outage_is_one_line_when_it_starts_and_one_when_it_ends_not_one_per_run() {
    let Some(mut smtp) = SmtpServer::start_or_skip() else {
        return;
    };
    let port = smtp.port();
    let lab = Lab::new(&smtp_notifier("mail", port, "tls = \"none\"\nretries = 0"));
    smtp.stop();
    let out = lab.run_at(0.0);
    out.status(1).stdout_empty().stderr_line_count(1);
    assert!(
        out.stderr
            .starts_with(&format!("hapwatch: notifier mail: SMTP 127.0.0.1:{port}: "))
            && out
                .stderr
                .trim_end()
                .ends_with(" (kept in the outbox for the next runs)"),
        "{out:?}"
    );
    // Retried at 60 and 180 (backoff 1, 2 min) and failing again: silent (a run that
    // retries and fails still exits 1, for a systemd unit or a heartbeat).
    for at in [60.0, 120.0, 180.0, 240.0] {
        lab.run_at(at).stdout_empty().stderr_empty();
    }
    // A new notification (web3's recovery) queues behind the failing one: the same outage.
    lab.capture(WEB3_BACK);
    lab.run_at(300.0).stdout_empty().stderr_empty();
    // -v tells each retry, saying it was reported already.
    let verbose = lab
        .hapwatch()
        .args(["-v", "run", "--now", &lab.now(420.0)])
        .run();
    verbose.status(1).stderr_contains(&format!(
        "(kept in the outbox, attempt 4) (reported at {}; printed again when it ends)",
        rfc3339(lab.base)
    ));
    assert_eq!(lab.outbox().len(), 2);
    assert!(smtp.messages().is_empty());

    // Back: both go out at the next due retry, and the end of the outage is one line.
    smtp.restart();
    let back = lab.run_at(900.0);
    back.success().stdout_empty().stderr_is(&format!(
        "hapwatch: warning: notifier mail works again: the outbox delivered what waited for it (it \
         failed from {} to {})\n",
        rfc3339(lab.base),
        rfc3339(lab.base + 900.0)
    ));
    assert_eq!(smtp.messages().len(), 2);
    assert!(lab.outbox().is_empty());
    lab.quiet_run(960.0);

    // A second outage is news again.
    smtp.stop();
    lab.capture(DOWN);
    lab.run_at(1020.0).status(1).stderr_line_count(1);
}

/// Fails twice while the server is down: the firing notification (run 0, retried at 60)
/// and web3's recovery (run 60). Returns the lab and the stopped server.
fn firing_and_resolved_in_the_outbox() -> Option<(Lab, SmtpServer)> {
    let mut smtp = SmtpServer::start_or_skip()?;
    let lab = Lab::new(&smtp_notifier(
        "mail",
        smtp.port(),
        "tls = \"none\"\nretries = 0",
    ));
    smtp.stop();
    lab.run_at(0.0).status(1);
    // The firing item fails again (attempt 2, backoff 2 min); the recovery queues behind
    // it without being tried, so that it can never arrive first. The notifier's failure was
    // said in the first run: -v says these lines.
    lab.capture(WEB3_BACK);
    let out = lab
        .hapwatch()
        .args(["-v", "run", "--now", &lab.now(60.0)])
        .run();
    out.status(1);
    let lines: Vec<String> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("hapwatch: notifier mail: "))
        .map(|l| {
            let cut = l.rfind(" (reported at ").expect("said as lasting");
            l[..cut].to_string()
        })
        .collect();
    assert_eq!(lines.len(), 2, "{out:?}");
    assert!(
        lines[0].ends_with(" (kept in the outbox, attempt 2)"),
        "{out:?}"
    );
    // It names what it waits for: the firing mail, queued a minute ago, and why.
    assert!(
        lines[1].starts_with(&format!(
            "hapwatch: notifier mail: {SUBJECT_RESOLVED} queued behind {SUBJECT_FIRING} (queued 1m00s ago: SMTP 127.0.0.1:"
        )) && lines[1].ends_with(") (kept in the outbox for the next runs)"),
        "{out:?}"
    );
    let outbox = lab.outbox();
    assert_eq!(outbox.len(), 2);
    assert_eq!(outbox[0]["payload"]["firing"].as_array().unwrap().len(), 2);
    assert_eq!(outbox[0]["attempts"], 2);
    assert_eq!(outbox[0]["created_at"], BASE);
    assert_eq!(outbox[0]["next_attempt"], BASE + 60.0 + 120.0);
    assert_eq!(
        outbox[1]["payload"]["resolved"].as_array().unwrap().len(),
        1
    );
    assert_eq!(outbox[1]["attempts"], 0);
    assert_eq!(outbox[1]["next_attempt"], BASE + 60.0);
    Some((lab, smtp))
}

#[test]
fn smtp_outage_keeps_firing_and_resolved_and_delivers_both_once() {
    let Some((lab, mut smtp)) = firing_and_resolved_in_the_outbox() else {
        return;
    };
    smtp.restart();
    // Both due: delivered in the order they were planned.
    lab.run_back(180.0, "mail");
    let mails = smtp.messages();
    let subjects: Vec<_> = mails.iter().map(ReceivedMail::subject).collect();
    assert_eq!(subjects, [Some(SUBJECT_FIRING), Some(SUBJECT_RESOLVED)]);
    assert_eq!(
        mails[1].header("In-Reply-To"),
        mails[0].header("Message-ID")
    );
    assert!(lab.outbox().is_empty());
    lab.quiet_run(240.0);
    lab.quiet_run(300.0);
    assert_eq!(smtp.messages().len(), 2);
}

/// A later item (the recovery) must never be delivered before an earlier one (the problem
/// it resolves), whatever their backoffs.
#[test]
fn smtp_outage_never_delivers_a_recovery_before_its_problem() {
    let Some((lab, mut smtp)) = firing_and_resolved_in_the_outbox() else {
        return;
    };
    smtp.restart();
    for minute in 2..6 {
        lab.run_at(60.0 * f64::from(minute)).success();
        let subjects: Vec<String> = smtp
            .messages()
            .iter()
            .map(|m| m.subject().unwrap_or_default().to_string())
            .collect();
        assert!(
            subjects.is_empty() || subjects[0] == SUBJECT_FIRING,
            "minute {minute}: {subjects:?}"
        );
    }
    let subjects: Vec<_> = smtp
        .messages()
        .iter()
        .map(|m| m.subject().map(str::to_string))
        .collect();
    assert_eq!(
        subjects,
        [
            Some(SUBJECT_FIRING.to_string()),
            Some(SUBJECT_RESOLVED.to_string())
        ]
    );
    assert!(lab.outbox().is_empty());
}

/// A 5xx reply refuses for good: the mail is reported once and dropped, so that it does
/// not hold up the mails behind it (see `tests/delivery.rs`).
#[test]
fn smtp_refusal_quotes_the_reply_code() {
    let Some(smtp) = SmtpServer::builder()
        .reject_rcpt_to("oncall@example.net", "550 5.1.1 no such user")
        .start_or_skip()
    else {
        return;
    };
    let port = smtp.port();
    let lab = Lab::new(&smtp_notifier("mail", port, "tls = \"none\"\nretries = 0"));
    let out = lab.run_at(0.0);
    out.status(1)
        .stdout_empty()
        .stderr_line_count(1)
        .stderr_contains(&format!(
            "hapwatch: notifier mail: SMTP 127.0.0.1:{port}: permanent error (550): 5.1.1 no \
             such user (refused for good: dropped, not retried: {SUBJECT_FIRING})"
        ));
    let refusals = smtp.refusals();
    assert_eq!(refusals.len(), 1);
    assert_eq!(refusals[0].command, "RCPT");
    assert_eq!(refusals[0].argument.as_deref(), Some("oncall@example.net"));
    assert!(smtp.messages().is_empty());
    assert!(lab.outbox().is_empty(), "dropped, not retried");
    lab.quiet_run(60.0);
    assert_eq!(smtp.refusals().len(), 1);
}

#[test]
fn smtp_subject_and_body_templates_and_no_header_injection() {
    let Some(smtp) = SmtpServer::start_or_skip() else {
        return;
    };
    let lab = Lab::new(&smtp_notifier(
        "mail",
        smtp.port(),
        &format!(
            "tls = \"none\"\nsubject = {}\nbody = {}",
            toml_str("{{ status | upper }} {{ group_labels.alertname }}: {{ firing | length }} down\nBcc: intruder@example.org"),
            toml_str("{% for a in firing %}{{ a.labels.proxy }}/{{ a.labels.server }} since {{ a.starts_at }}\n{% endfor %}")
        ),
    ));
    lab.quiet_run(0.0);
    let mails = smtp.messages();
    assert_eq!(mails.len(), 1);
    // A subject is one line: a newline from a template cannot add a header.
    assert_eq!(
        mails[0].subject(),
        Some("FIRING ServerDown: 2 down Bcc: intruder@example.org")
    );
    assert_eq!(mails[0].header("Bcc"), None);
    assert_eq!(mails[0].rcpt_tos, ["oncall@example.net"]);
    assert_eq!(
        text(&mails[0]).trim_end(),
        "app-main/web3 since 2027-01-15T08:00:00Z\napp-main/web4 since 2027-01-15T08:00:00Z"
    );
}

#[test]
fn check_names_notifier_secrets_that_do_not_resolve() {
    let lab = Lab::new(&format!(
        "{}{}",
        smtp_notifier(
            "mail",
            closed_addr().port(),
            "username = \"u\"\npassword = \"env:HAPW_UNSET_PW\"\nretries = 0"
        ),
        webhook_notifier(
            "hook",
            "http://127.0.0.1:9/hook",
            "bearer_token_file = \"token\"\nsecret_file = \"missing.key\"\nretries = 0"
        ),
    ));
    lab.file("token", "t0ken");
    let missing = lab.path("missing.key");
    lab.hapwatch()
        .env_remove("HAPW_UNSET_PW")
        .arg("check")
        .run()
        .status(1)
        .stdout_is(&format!(
            "{}: valid, but secrets are missing (1 source, 1 rule)\n",
            lab.config.display()
        ))
        .stderr_is(&format!(
            "hapwatch: notifier hook: cannot read secret file {}: No such file or directory (os \
             error 2)\nhapwatch: notifier mail: environment variable HAPW_UNSET_PW is not set \
             (the config refers to it as env:HAPW_UNSET_PW)\n",
            missing.display()
        ));
    // A run cannot send without them: both notifications wait in the outbox.
    let out = lab
        .hapwatch()
        .env_remove("HAPW_UNSET_PW")
        .args(["run", "--now", &lab.now(0.0)])
        .run();
    out.status(1)
        .stderr_line_count(2)
        .stderr_contains("hapwatch: notifier hook: cannot read secret file ")
        .stderr_contains("hapwatch: notifier mail: environment variable HAPW_UNSET_PW is not set");
    assert_eq!(lab.outbox().len(), 2);
}

/// `describe` in src/notify/smtp.rs appends every `source()` of lettre's error, but
/// lettre's `Display` already ends with its source: each cause is printed twice.
#[test]
fn smtp_errors_name_their_cause_once() {
    let Some(smtp) = SmtpServer::builder()
        .reject_rcpt("550 5.1.1 no such user")
        .start_or_skip()
    else {
        return;
    };
    let lab = Lab::new(&format!(
        "{}{}",
        smtp_notifier(
            "closed",
            closed_addr().port(),
            "tls = \"none\"\nretries = 0"
        ),
        smtp_notifier("refusing", smtp.port(), "tls = \"none\"\nretries = 0"),
    ));
    let out = lab.run_at(0.0);
    out.status(1).stderr_line_count(2);
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert!(
        lines[0].contains(": Connection error: Connection refused (os error 111) (kept"),
        "{out:?}"
    );
    assert!(
        lines[1].contains(": permanent error (550): 5.1.1 no such user (refused for good"),
        "{out:?}"
    );
}

// ---------------------------------------------------------------------------------------
// 6. Webhooks: formats, headers, bearer token, signature
// ---------------------------------------------------------------------------------------

const TOKEN: &str = "tok-4b1e-webhook";
const HMAC_KEY: &str = "hmac-key-9d27";
const AM_HMAC_KEY: &str = "other-hmac-key-11";
const TEMPLATE: &str = "{{ status }}|{{ subject }}|{% for a in firing %}{{ a.labels.server }}={{ a.annotations.status }};{% endfor %}{% for a in resolved %}{{ a.labels.server }} back at {{ a.ends_at }};{% endfor %}";

#[test]
fn webhook_formats_headers_bearer_token_and_signature() {
    let hook = HttpReceiver::start();
    let lab = Lab::new(&format!(
        "{}{}{}{}",
        webhook_notifier(
            "hw",
            &hook.url_for("/hapwatch"),
            "headers = { \"X-Team\" = \"env:HAPW_TEAM\", \"X-Env\" = \"env:HAPW_ENV\" }\n\
             bearer_token_file = \"token\"\nsecret_file = \"hmac.key\""
        ),
        webhook_notifier(
            "amfmt",
            &hook.url_for("/am?via=hapwatch"),
            "format = \"alertmanager\"\nsecret = \"env:HAPW_HOOK_SECRET\"\n\
             signature_header = \"X-Signature\""
        ),
        webhook_notifier("chat", &hook.url_for("/slack"), "format = \"slack\""),
        webhook_notifier(
            "tpl",
            &hook.url_for("/tpl"),
            &format!(
                "format = \"template\"\nmethod = \"put\"\ncontent_type = \"text/plain; charset=utf-8\"\n\
                 template = {}",
                toml_str(TEMPLATE)
            )
        ),
    ));
    lab.file("token", &format!("{TOKEN}\n"));
    lab.file("hmac.key", HMAC_KEY);
    let run = |at: f64| {
        lab.hapwatch()
            .env("HAPW_HOOK_SECRET", AM_HMAC_KEY)
            .env("HAPW_TEAM", "web")
            .env("HAPW_ENV", "prod")
            .args(["run", "--now", &lab.now(at)])
            .run()
    };
    run(0.0).success().stdout_empty().stderr_empty();
    let all = hook.requests();
    assert_eq!(all.len(), 4, "one request per notifier");

    // hapwatch format, with custom headers, bearer token and signature.
    let hw = requests_to(&all, "/hapwatch");
    assert_eq!(hw.len(), 1);
    let hw = hw[0];
    assert_eq!(hw.method, "POST");
    assert_eq!(hw.header("content-type"), Some("application/json"));
    assert_eq!(hw.header("x-team"), Some("web"));
    assert_eq!(hw.header("x-env"), Some("prod"));
    let bearer = format!("Bearer {TOKEN}");
    assert_eq!(hw.header("authorization"), Some(bearer.as_str()));
    assert_eq!(
        hw.header("x-hapwatch-signature"),
        Some(signature(HMAC_KEY, &hw.body).as_str())
    );
    assert_eq!(
        hw.json(),
        json!({
            "version": "1",
            "receiver": "hw",
            "status": "firing",
            "group_key": GROUP_KEY,
            "group_labels": {"alertname": "ServerDown", "source": "lb1"},
            "common_labels": {
                "alertname": "ServerDown", "proxy": "app-main", "severity": "critical",
                "source": "lb1", "type": "server",
            },
            "common_annotations": {"check_status": "L4CON", "status": "DOWN"},
            "digest": false,
            "subject": SUBJECT_FIRING,
            "text": BODY_FIRING,
            "firing": [hapwatch_notice("web3", None), hapwatch_notice("web4", None)],
            "resolved": [],
            "still_firing": [],
        })
    );

    // Alertmanager's webhook format, signed under another header name and key.
    let am = requests_to(&all, "/am");
    assert_eq!(am.len(), 1);
    let am = am[0];
    assert_eq!(am.method, "POST");
    assert_eq!(am.query(), Some("via=hapwatch"));
    assert_eq!(am.header("content-type"), Some("application/json"));
    assert_eq!(am.header("authorization"), None);
    assert_eq!(am.header("x-hapwatch-signature"), None);
    assert_eq!(
        am.header("x-signature"),
        Some(signature(AM_HMAC_KEY, &am.body).as_str())
    );
    let no_end = "0001-01-01T00:00:00Z";
    assert_eq!(
        am.json(),
        json!({
            "version": "4",
            "groupKey": AM_GROUP_KEY,
            "truncatedAlerts": 0,
            "status": "firing",
            "receiver": "amfmt",
            "groupLabels": {"alertname": "ServerDown", "source": "lb1"},
            "commonLabels": {
                "alertname": "ServerDown", "proxy": "app-main", "severity": "critical",
                "source": "lb1", "type": "server",
            },
            "commonAnnotations": {"check_status": "L4CON", "status": "DOWN"},
            "externalURL": "",
            "alerts": [
                am_webhook_alert("web3", "firing", no_end),
                am_webhook_alert("web4", "firing", no_end),
            ],
        })
    );

    // Slack: one attachment, red, the subject as its (bold) title, then the listing.
    let chat = requests_to(&all, "/slack");
    assert_eq!(chat.len(), 1);
    assert_eq!(chat[0].method, "POST");
    assert_eq!(chat[0].header("content-type"), Some("application/json"));
    assert_eq!(chat[0].header("authorization"), None);
    assert_eq!(
        chat[0].json(),
        slack(SUBJECT_FIRING, BODY_FIRING, "#d50200")
    );

    // A user template, sent with PUT and its own content type.
    let tpl = requests_to(&all, "/tpl");
    assert_eq!(tpl.len(), 1);
    assert_eq!(tpl[0].method, "PUT");
    assert_eq!(
        tpl[0].header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(
        tpl[0].body_text(),
        format!("firing|{SUBJECT_FIRING}|web3=DOWN;web4=DOWN;")
    );

    // Recovery of web3, one minute later.
    lab.capture(WEB3_BACK);
    run(60.0).success().stdout_empty().stderr_empty();
    let all = hook.requests();
    assert_eq!(all.len(), 8);
    let ended = "2027-01-15T08:01:00Z";
    let hw = requests_to(&all, "/hapwatch")[1];
    assert_eq!(
        hw.header("x-hapwatch-signature"),
        Some(signature(HMAC_KEY, &hw.body).as_str())
    );
    assert_eq!(hw.header("authorization"), Some(bearer.as_str()));
    let doc = hw.json();
    // web4 is still down: the group fires still.
    assert_eq!(doc["status"], "firing");
    assert_eq!(doc["subject"], SUBJECT_RESOLVED);
    assert_eq!(doc["text"], body_resolved("2027-01-15 08:01:00 UTC"));
    assert_eq!(doc["firing"], json!([]));
    assert_eq!(
        doc["resolved"],
        json!([hapwatch_notice("web3", Some(ended))])
    );
    assert_eq!(doc["still_firing"], json!([hapwatch_notice("web4", None)]));
    assert_eq!(
        doc["common_labels"],
        labels_json(&server_down_labels("web3"))
    );
    let am = requests_to(&all, "/am")[1];
    assert_eq!(
        am.header("x-signature"),
        Some(signature(AM_HMAC_KEY, &am.body).as_str())
    );
    // Alertmanager's form is the whole group: web4 still fires, so the group does.
    let doc = am.json();
    assert_eq!(doc["status"], "firing");
    assert_eq!(
        doc["alerts"],
        json!([
            am_webhook_alert("web3", "resolved", ended),
            am_webhook_alert("web4", "firing", no_end),
        ])
    );
    assert_eq!(
        doc["commonLabels"],
        json!({
            "alertname": "ServerDown", "proxy": "app-main", "severity": "critical",
            "source": "lb1", "type": "server",
        })
    );
    // Still red: part of the group is down.
    assert_eq!(
        requests_to(&all, "/slack")[1].json(),
        slack(
            SUBJECT_RESOLVED,
            &body_resolved("2027-01-15 08:01:00 UTC"),
            "#d50200"
        )
    );
    assert_eq!(
        requests_to(&all, "/tpl")[1].body_text(),
        format!("firing|{SUBJECT_RESOLVED}|web3 back at {ended};")
    );

    // Nothing more while nothing changes.
    run(120.0).success().stderr_empty();
    run(180.0).success().stderr_empty();
    assert_eq!(hook.requests().len(), 8);
}

// ---------------------------------------------------------------------------------------
// 7. Webhook failures: retries, 500, hang, the outbox
// ---------------------------------------------------------------------------------------

#[test]
fn webhook_500_is_retried_within_the_run() {
    let hook = HttpReceiver::builder()
        .then(Respond::text(500, "try again"))
        .start();
    let lab = Lab::new(&webhook_notifier("hook", &hook.url_for("/hook"), ""));
    let out = lab.run_at(0.0);
    out.success().stderr_empty();
    let all = hook.requests();
    assert_eq!(all.len(), 2, "the failed attempt and one retry");
    assert_eq!(all[0].body, all[1].body);
    assert!(out.elapsed >= Duration::from_millis(500), "{out:?}");
    assert!(lab.outbox().is_empty());
    lab.quiet_run(60.0);
    assert_eq!(hook.requests().len(), 2);
}

#[test]
fn webhook_500_and_hang_go_to_the_outbox_and_are_redelivered_once() {
    let failing = HttpReceiver::builder()
        .then(Respond::text(500, "upstream exploded"))
        .start();
    let hanging = HttpReceiver::builder().then(Respond::Hang).start();
    let lab = Lab::new(&format!(
        "{}{}",
        webhook_notifier("h500", &failing.url_for("/hook"), "retries = 0"),
        webhook_notifier(
            "slow",
            &hanging.url_for("/hook"),
            "retries = 0\ntimeout = \"1s\""
        ),
    ));
    let out = lab.run_at(0.0);
    out.status(1).stdout_empty().stderr_is(&format!(
        "hapwatch: notifier h500: HTTP 500 from {}: upstream exploded (kept in the outbox for \
         the next runs)\nhapwatch: notifier slow: {}: timed out after 1 s (kept in the \
         outbox for the next runs)\n",
        failing.url_for("/hook"),
        hanging.url_for("/hook"),
    ));
    assert!(
        out.elapsed >= Duration::from_secs(1) && out.elapsed < Duration::from_secs(5),
        "the hang costs the 1 s timeout, no more: {out:?}"
    );
    assert_eq!(failing.requests().len(), 1);
    assert_eq!(hanging.requests().len(), 1);
    let outbox = lab.outbox();
    let names: Vec<&str> = outbox
        .iter()
        .map(|i| i["notifier"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["h500", "slow"]);
    assert_eq!(
        outbox[0]["last_error"],
        format!(
            "HTTP 500 from {}: upstream exploded",
            failing.url_for("/hook")
        )
    );
    for item in &outbox {
        assert_eq!(item["attempts"], 1);
        assert_eq!(item["next_attempt"], BASE + 60.0);
    }

    // Not due yet.
    lab.quiet_run(30.0);
    assert_eq!(failing.requests().len() + hanging.requests().len(), 2);

    // Due: each is redelivered once, with the body of the first attempt; each notifier's
    // outage ends with a line.
    lab.run_at(60.0)
        .success()
        .stderr_line_count(2)
        .stderr_contains("notifier h500 works again")
        .stderr_contains("notifier slow works again");
    for receiver in [&failing, &hanging] {
        let all = receiver.requests();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].body, all[1].body);
        assert_eq!(all[1].json()["status"], "firing");
        assert_eq!(all[1].json()["subject"], SUBJECT_FIRING);
    }
    assert!(lab.outbox().is_empty());
    lab.quiet_run(120.0);
    lab.quiet_run(180.0);
    assert_eq!(failing.requests().len() + hanging.requests().len(), 4);
}

#[test]
fn outbox_items_expire_after_outbox_max_age_loudly() {
    let hook = HttpReceiver::builder()
        .default_response(Respond::text(503, "maintenance"))
        .start();
    let url = hook.url_for("/hook");
    let lab = Lab::new(&format!(
        "[alerting]\noutbox_max_age = \"5m\"\n\n{}",
        webhook_notifier("hook", &url, "retries = 0")
    ));
    let error = format!("HTTP 503 from {url}: maintenance");
    lab.run_at(0.0).status(1).stderr_is(&format!(
        "hapwatch: notifier hook: {error} (kept in the outbox for the next runs)\n"
    ));
    // Backoff 1, 2, 4 min: attempts at 60 and 180, the next would be at 420; retried
    // silently (the notifier's failure was said).
    lab.run_at(60.0).status(1).stderr_empty();
    lab.quiet_run(120.0);
    lab.run_at(180.0).status(1).stderr_empty();
    assert_eq!(lab.outbox()[0]["next_attempt"], BASE + 180.0 + 240.0);
    assert_eq!(hook.requests().len(), 3);
    lab.quiet_run(300.0);
    // Older than 5 minutes: dropped, and said so.
    lab.run_at(301.0)
        .status(1)
        .stdout_empty()
        .stderr_is(&format!(
            "hapwatch: outbox: gave up on a notification for hook after 3 attempts since \
             2027-01-15T08:00:00Z (outbox_max_age): {error}\n\
             hapwatch: warning: notifier hook: nothing waits for it in the outbox any more (it \
             failed from 2027-01-15T08:00:00Z to 2027-01-15T08:05:01Z)\n"
        ));
    assert!(lab.outbox().is_empty());
    assert_eq!(hook.requests().len(), 3, "not sent again once expired");
    lab.quiet_run(420.0);
    assert_eq!(hook.requests().len(), 3);
}

#[test]
fn send_resolved_false_sends_no_recovery() {
    let hook = HttpReceiver::start();
    let lab = Lab::new(&format!(
        "{}{}",
        webhook_notifier("all", &hook.url_for("/all"), ""),
        webhook_notifier(
            "problems",
            &hook.url_for("/problems"),
            "send_resolved = false"
        ),
    ));
    lab.quiet_run(0.0);
    lab.capture(WEB3_BACK);
    lab.quiet_run(60.0);
    let all = hook.requests();
    // What each announces (`status` stays "firing" for web3's recovery: web4 is down).
    let news = |path: &str| -> Vec<String> {
        requests_to(&all, path)
            .iter()
            .map(|r| {
                let body = r.json();
                let resolved = body["resolved"].as_array().unwrap().len();
                let firing = body["firing"].as_array().unwrap().len();
                format!("firing:{firing} resolved:{resolved}")
            })
            .collect()
    };
    assert_eq!(news("/all"), ["firing:2 resolved:0", "firing:0 resolved:1"]);
    assert_eq!(news("/problems"), ["firing:2 resolved:0"]);
}

// ---------------------------------------------------------------------------------------
// 8. Fallback
// ---------------------------------------------------------------------------------------

#[test]
fn fallback_webhook_gets_the_notification_when_smtp_is_down() {
    let Some(mut smtp) = SmtpServer::start_or_skip() else {
        return;
    };
    let port = smtp.port();
    smtp.stop();
    let hook = HttpReceiver::start();
    let lab = Lab::new(&format!(
        "{}{}[routes]\ndefault = [\"mail\"]\n",
        smtp_notifier(
            "mail",
            port,
            "tls = \"none\"\nretries = 0\nfallback = \"chat\""
        ),
        webhook_notifier("chat", &hook.url_for("/chat"), "format = \"slack\""),
    ));
    let out = lab.run_at(0.0);
    out.status(1)
        .stdout_empty()
        .stderr_line_count(1)
        .stderr_contains(&format!("hapwatch: notifier mail: SMTP 127.0.0.1:{port}: "));
    let all = hook.requests();
    assert_eq!(all.len(), 1, "the fallback got it in the same run");
    assert_eq!(all[0].json(), slack(SUBJECT_FIRING, BODY_FIRING, "#d50200"));
    // The primary keeps its own copy in the outbox; the fallback's delivery is done.
    let outbox = lab.outbox();
    assert_eq!(outbox.len(), 1);
    assert_eq!(outbox[0]["notifier"], "mail");

    // The routes send nothing to the fallback directly, and a failed outbox retry does
    // not go to the fallback again.
    lab.run_at(60.0).status(1);
    assert_eq!(hook.requests().len(), 1);

    // Mail back: the primary delivers its copy once.
    smtp.restart();
    lab.run_back(180.0, "mail");
    let mails = smtp.messages();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].subject(), Some(SUBJECT_FIRING));
    assert!(lab.outbox().is_empty());
    lab.quiet_run(240.0);
    assert_eq!(smtp.messages().len(), 1);
    assert_eq!(hook.requests().len(), 1);
}

// ---------------------------------------------------------------------------------------
// 9. A real Alertmanager
// ---------------------------------------------------------------------------------------

/// Parses an RFC 3339 time to Unix seconds.
fn unix(rfc3339: &Value) -> f64 {
    let text = rfc3339
        .as_str()
        .unwrap_or_else(|| panic!("{rfc3339} is not a time"));
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .timestamp_millis() as f64
        / 1000.0
}

#[test]
fn alertmanager_gets_firing_alerts_every_run_and_the_resolved_one_once() {
    let Some(am) = Alertmanager::start_or_skip() else {
        return;
    };
    let mut lab = Lab::new(&format!(
        "[notifier.am]\ntype = \"alertmanager\"\nurl = \"{}/\"\n",
        am.url()
    ));
    // Alertmanager judges endsAt against its own clock: the simulated runs happen in the
    // last few minutes, never in its future.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as f64;
    lab.base = now - 180.0;
    let base = lab.base;

    lab.quiet_run(0.0);
    let alerts = am.wait_for_alerts(&[("alertname", "ServerDown")], 2, SEEN);
    let mut servers: Vec<&str> = alerts
        .iter()
        .map(|a| a["labels"]["server"].as_str().unwrap())
        .collect();
    servers.sort();
    assert_eq!(servers, ["web3", "web4"]);
    for alert in &alerts {
        let server = alert["labels"]["server"].as_str().unwrap();
        assert_eq!(alert["labels"], labels_json(&server_down_labels(server)));
        assert_eq!(
            alert["fingerprint"],
            fingerprint(&server_down_labels(server)),
            "hapwatch's fingerprint is Alertmanager's"
        );
        assert_eq!(
            alert["annotations"]["summary"],
            format!("app-main/{server} on lb1 is DOWN (L4CON: Connection refused)")
        );
        assert_eq!(alert["status"]["state"], "active");
        assert_eq!(unix(&alert["startsAt"]), base);
        // endsAt: four run intervals ahead (the first run assumes 60 s).
        assert_eq!(unix(&alert["endsAt"]), base + 240.0);
    }
    assert_eq!(am.received().firing, 2);
    assert_eq!(am.received().resolved, 0);

    // Every run re-sends what fires, pushing endsAt ahead.
    lab.quiet_run(60.0);
    assert_eq!(am.received().firing, 4);
    let alerts = am.alerts_with(&[("alertname", "ServerDown")]);
    assert_eq!(alerts.len(), 2);
    for alert in &alerts {
        assert_eq!(unix(&alert["startsAt"]), base);
        assert_eq!(unix(&alert["endsAt"]), base + 60.0 + 240.0);
    }

    // web3 recovers: sent once with endsAt = now, which Alertmanager counts as resolved
    // and stops listing; web4 is re-sent as firing.
    lab.capture(WEB3_BACK);
    lab.quiet_run(120.0);
    let received = am.received();
    assert_eq!(
        (received.firing, received.resolved, received.invalid),
        (5, 1, 0)
    );
    let alerts = am.wait_for_alerts(&[("alertname", "ServerDown")], 1, SEEN);
    assert_eq!(alerts[0]["labels"]["server"], "web4");
    assert!(am.alerts_with(&[("server", "web3")]).is_empty());

    // The resolved alert is not sent again.
    lab.quiet_run(180.0);
    let received = am.received();
    assert_eq!(
        (received.firing, received.resolved, received.invalid),
        (6, 1, 0)
    );
    assert!(lab.outbox().is_empty());

    // notify-test posts one marked alert, ending 5 minutes from now.
    lab.hapwatch()
        .args(["notify-test", "am"])
        .run()
        .success()
        .stderr_empty()
        .stdout_contains("sent: am: 1 alert");
    let test = am.wait_for_alerts(&[("alertname", "HapwatchTest")], 1, SEEN);
    assert_eq!(
        test[0]["labels"],
        json!({"alertname": "HapwatchTest", "severity": "info", "source": "hapwatch"})
    );
    let ends_in = unix(&test[0]["endsAt"]) - unix(&test[0]["startsAt"]);
    assert!((ends_in - 300.0).abs() < 1.0, "{}", test[0]);
}

// ---------------------------------------------------------------------------------------
// 10. notify-test
// ---------------------------------------------------------------------------------------

#[test]
fn notify_test_sends_one_marked_message_or_says_why_not() {
    let Some(mut smtp) = SmtpServer::start_or_skip() else {
        return;
    };
    let hook = HttpReceiver::start();
    let port = smtp.port();
    let lab = Lab::new(&format!(
        "{}{}",
        smtp_notifier("mail", port, "tls = \"none\""),
        webhook_notifier("hook", &hook.url_for("/hook"), ""),
    ));
    lab.hapwatch()
        .args(["notify-test", "mail"])
        .run()
        .success()
        .stderr_empty()
        .stdout_is("sent: mail: [FIRING:1] HapwatchTest (hapwatch)\n");
    let mails = smtp.messages();
    assert_eq!(mails.len(), 1);
    assert_eq!(
        mails[0].subject(),
        Some("[FIRING:1] HapwatchTest (hapwatch)")
    );
    assert_eq!(mails[0].rcpt_tos, ["oncall@example.net"]);
    let body = text(&mails[0]);
    assert!(
        body.starts_with("FIRING (1)\n- HapwatchTest on hapwatch\n"),
        "{body}"
    );
    assert!(
        body.contains("Test notification from hapwatch on ")
            && body.contains(", notifier mail: nothing is wrong"),
        "{body}"
    );

    lab.hapwatch()
        .args(["notify-test", "hook"])
        .run()
        .success()
        .stderr_empty()
        .stdout_is("sent: hook: [FIRING:1] HapwatchTest (hapwatch)\n");
    let all = hook.requests();
    assert_eq!(all.len(), 1, "only the named notifier");
    let doc = all[0].json();
    assert_eq!(doc["receiver"], "hook");
    assert_eq!(doc["status"], "firing");
    assert_eq!(doc["firing"][0]["labels"]["alertname"], "HapwatchTest");
    assert_eq!(doc["firing"][0]["labels"]["severity"], "info");
    assert_eq!(smtp.messages().len(), 1);

    // A notify-test touches no state.
    assert!(!lab.path("state.json").exists());

    // The server is gone: exit 1, the error, a single attempt.
    smtp.stop();
    let out = lab.hapwatch().args(["notify-test", "mail"]).run();
    out.status(1).stdout_empty().stderr_line_count(1);
    assert!(
        out.stderr.starts_with(&format!(
            "hapwatch: notifier mail: SMTP 127.0.0.1:{port}: Connection error: Connection refused (os error 111)"
        )),
        "{out:?}"
    );
    assert!(
        out.elapsed < Duration::from_millis(500),
        "notify-test does not retry: {out:?}"
    );

    // An unknown name is a usage error that lists the notifiers.
    lab.hapwatch()
        .args(["notify-test", "mial"])
        .run()
        .status(2)
        .stdout_empty()
        .stderr_is("hapwatch: no notifier named \"mial\" (notifiers: hook, mail)\n");
}

#[test]
fn notify_test_against_a_stopped_server_prints_the_exact_error() {
    let port = closed_addr().port();
    let lab = Lab::new(&smtp_notifier("mail", port, "tls = \"none\""));
    lab.hapwatch()
        .args(["notify-test", "mail"])
        .run()
        .status(1)
        .stdout_empty()
        .stderr_is(&format!(
            "hapwatch: notifier mail: SMTP 127.0.0.1:{port}: Connection error: Connection \
             refused (os error 111)\n"
        ));
}

// ---------------------------------------------------------------------------------------
// 11. Secrets stay secret
// ---------------------------------------------------------------------------------------

const SMTP_PASSWORD: &str = "S3CRET-pw-5e0c1d";
const BEARER: &str = "S3CRET-bearer-8c2e71";
const HMAC_SECRET: &str = "S3CRET-hmac-0b3f55";

#[track_caller]
fn assert_no_secret(what: &str, text: &str) {
    for secret in [SMTP_PASSWORD, BEARER, HMAC_SECRET, "S3CRET"] {
        assert!(
            !text.contains(secret),
            "{what} shows the secret {secret:?}:\n{text}"
        );
    }
}

#[test]
fn secrets_never_appear_in_output_or_state() {
    // The SMTP server wants another password: AUTH fails, over TLS, with the real one sent.
    let Some(smtp) = SmtpServer::builder()
        .require_starttls()
        .auth("alice", "the-right-one")
        .start_or_skip()
    else {
        return;
    };
    let hook = HttpReceiver::builder()
        .default_response(Respond::text(500, "internal error"))
        .start();
    let ca = toml_str(&smtp.ca_file().unwrap().display().to_string());
    let lab = Lab::new(&format!(
        "{}{}",
        smtp_notifier(
            "mail",
            smtp.port(),
            &format!(
                "ca_file = {ca}\nusername = \"alice\"\npassword = {}\nretries = 0",
                toml_str(SMTP_PASSWORD)
            )
        ),
        webhook_notifier(
            "hook",
            &hook.url_for("/hook"),
            "bearer_token = \"env:HAPW_BEARER\"\nsecret_file = \"hmac.key\"\nretries = 0"
        ),
    ));
    lab.chmod(0o600); // an inline password needs a private config
    lab.file("hmac.key", &format!("{HMAC_SECRET}\n"));
    let hapwatch = || lab.hapwatch().env("HAPW_BEARER", BEARER);
    let mut seen = Vec::new();
    let mut check = |what: &str, out: &Output| {
        assert_no_secret(&format!("{what} stdout"), &out.stdout);
        assert_no_secret(&format!("{what} stderr"), &out.stderr);
        seen.push(what.to_string());
    };

    // Dry runs: the secret headers are shown as [redacted].
    let out = hapwatch()
        .args(["run", "--dry-run", "--now", &lab.now(0.0)])
        .run();
    out.success()
        .stdout_contains("--- notifier hook: POST ")
        .stdout_contains("\nAuthorization: [redacted]\n")
        .stdout_contains("\nX-Hapwatch-Signature: [redacted]\n")
        .stdout_contains("--- notifier mail: mail\n");
    check("run --dry-run", &out);
    let out = hapwatch()
        .args([
            "run",
            "--dry-run",
            "--format",
            "json",
            "--now",
            &lab.now(0.0),
        ])
        .run();
    out.success();
    assert_eq!(out.json()["deliveries"].as_array().unwrap().len(), 2);
    check("run --dry-run --format json", &out);

    // Real runs, both deliveries failing, verbose, text and JSON logs.
    let out = hapwatch()
        .args(["-vv", "run", "--now", &lab.now(0.0)])
        .run();
    out.status(1)
        .stderr_contains("hapwatch: notifier mail: ")
        .stderr_contains("(535)")
        .stderr_contains("hapwatch: notifier hook: HTTP 500 from ");
    check("run", &out);
    let out = hapwatch()
        .args(["--log-format", "json", "-v", "run", "--now", &lab.now(60.0)])
        .run();
    out.status(1).stderr_contains("\"level\"");
    check("run --log-format json", &out);
    // The secrets were really used: the server saw AUTH as alice fail, the receiver the
    // token and a signature made with the key.
    let refusals = smtp.refusals();
    assert!(
        refusals.iter().any(|r| r.command == "AUTH" && r.tls),
        "{refusals:?}"
    );
    let requests = hook.requests();
    assert_eq!(requests.len(), 2);
    let bearer = format!("Bearer {BEARER}");
    assert_eq!(requests[0].header("authorization"), Some(bearer.as_str()));
    assert_eq!(
        requests[0].header("x-hapwatch-signature"),
        Some(signature(HMAC_SECRET, &requests[0].body).as_str())
    );

    // The outbox holds the webhook's undelivered notification (the mail's 535 refused it
    // for good: dropped), and no secret.
    let state_text = std::fs::read_to_string(lab.path("state.json")).unwrap();
    assert_no_secret("state.json", &state_text);
    assert_eq!(lab.outbox().len(), 1);
    for args in [
        vec!["state", "show", "--format", "json"],
        vec!["state", "show"],
        vec!["check"],
        vec!["check", "--connect"],
        vec!["notify-test", "mail"],
        vec!["notify-test", "hook"],
        vec!["-vv", "notify-test", "hook"],
    ] {
        let out = hapwatch().args(&args).run();
        check(&args.join(" "), &out);
    }
    let out = hapwatch().args(["state", "show", "--format", "json"]).run();
    out.success();
    assert_eq!(out.json()["outbox"].as_array().unwrap().len(), 1);
    let out = hapwatch().args(["notify-test", "hook"]).run();
    out.status(1).stderr_contains("HTTP 500");
    assert_eq!(seen.len(), 11);
}

// ---------------------------------------------------------------------------------------
// 12. End to end: a real HAProxy, a real mailbox
// ---------------------------------------------------------------------------------------

#[test]
fn real_haproxy_server_down_mails_once_and_recovery_once() {
    let Some(haproxy) = Haproxy::start_or_skip() else {
        return;
    };
    let Some(smtp) = SmtpServer::start_or_skip() else {
        return;
    };
    // web3 is always DOWN in the fixture; this rule watches web1 only.
    let head = format!(
        "{}\n[[rule]]\nname = \"ServerDown\"\nscope = {{ type = \"server\", proxy = \"app\", server = \"web1\" }}\n\
         when = 'state == \"down\"'\nseverity = \"critical\"\n\
         summary = \"{{{{ proxy }}}}/{{{{ server }}}} on {{{{ source }}}} is {{{{ status }}}}\"\n",
        haproxy.source("lb1", Access::UserSocket).to_toml()
    );
    let lab = Lab::with_head(&head, &smtp_notifier("mail", smtp.port(), "tls = \"none\""));
    lab.quiet_run(0.0);
    assert!(smtp.messages().is_empty(), "web1 is up");

    // Point web1 at a dead port: its real health checks fail.
    let addr = haproxy
        .show_stat()
        .into_iter()
        .find(|r| r["pxname"] == "app" && r["svname"] == "web1")
        .unwrap()["addr"]
        .clone();
    let (_, port) = addr.rsplit_once(':').unwrap();
    haproxy.admin(&format!(
        "set server app/web1 addr 127.0.0.1 port {}",
        haproxy.dead_addr().port()
    ));
    haproxy.wait_for_status("app", "web1", "DOWN");
    for minute in 1..=3 {
        lab.quiet_run(60.0 * f64::from(minute));
    }
    let mails = smtp.messages();
    assert_eq!(mails.len(), 1, "one mail for web1 down, however many runs");
    assert_eq!(mails[0].subject(), Some("[FIRING:1] ServerDown app (lb1)"));
    assert_eq!(
        text(&mails[0]).trim_end(),
        "FIRING (1)\n- ServerDown app/web1 on lb1\n  status DOWN, check L4CON, value down, \
         since 2027-01-15 08:01:00 UTC\n  app/web1 on lb1 is DOWN"
    );

    // Back to its listener.
    haproxy.admin(&format!("set server app/web1 addr 127.0.0.1 port {port}"));
    haproxy.wait_for_status("app", "web1", "UP");
    lab.quiet_run(240.0);
    let mails = smtp.messages();
    assert_eq!(mails.len(), 2);
    assert_eq!(
        mails[1].subject(),
        Some("[RESOLVED:1] ServerDown app (lb1)")
    );
    assert!(
        text(&mails[1]).contains("resolved 2027-01-15 08:04:00 UTC"),
        "{}",
        text(&mails[1])
    );
    assert_eq!(
        mails[1].header("In-Reply-To"),
        mails[0].header("Message-ID")
    );

    for minute in 5..15 {
        lab.quiet_run(60.0 * f64::from(minute));
    }
    assert_eq!(smtp.messages().len(), 2, "no duplicate in 10 further runs");
    assert!(lab.outbox().is_empty());
}
