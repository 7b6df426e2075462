//! `hapwatch report --send NOTIFIER` (issue #22) against the real binary and real peers on
//! loopback: the report by mail (aiosmtpd, STARTTLS with AUTH: the alert mails' transport)
//! with the computed figures in its text and HTML parts, by webhook (hapwatch's JSON and
//! Slack's), refused for an Alertmanager, an unknown name with "did you mean", and a
//! failed delivery as one stderr line without secrets and exit code 1.
//!
//! The history is made by `hapwatch run` over the real HAProxy 2.6 captures, as in
//! tests/history.rs: web3 down 08:00–08:30 and again 08:45–09:00 (a flap), with a report
//! over 08:00–10:00: 2 incidents, 45 min of downtime, web3 62.5 % available.

mod common;

use common::{fixture_bytes, toml_str, Hapwatch, HttpReceiver, Output, SmtpServer};
use serde_json::Value;
use std::path::PathBuf;
use tempfile::TempDir;

/// 2027-01-15 08:00:00 UTC.
const BASE: f64 = 1_800_000_000.0;

const RULES: &str = r#"
[[source]]
name = "lb1"
file = "lb1.csv"

[[rule]]
name = "Down"
scope = { type = "server", exclude_server = "web4" }
when = 'state == "down"'
severity = "critical"
summary = "{{ proxy }}/{{ server }} is {{ status }}"

[state]
file = "state.json"
"#;

/// A history of two web3 incidents, and a config that adds `notifiers` to its rules.
struct Lab {
    dir: TempDir,
    config: PathBuf,
}

impl Lab {
    fn new(notifiers: &str) -> Lab {
        let dir = common::temp_dir();
        let config = dir.path().join("hapwatch.toml");
        // The runs that make the history print their notifications (no notifier yet).
        std::fs::write(&config, RULES).unwrap();
        let lab = Lab { dir, config };
        for (minute, capture) in [
            (0, "down-after-kill"),
            (30, "check-in-progress"),
            (45, "down-after-kill"),
            (60, "check-in-progress"),
        ] {
            std::fs::write(
                lab.dir.path().join("lb1.csv"),
                fixture_bytes(&format!("haproxy-2.6/{capture}.csv")),
            )
            .unwrap();
            lab.hapwatch()
                .args([
                    "run",
                    "--now",
                    &(BASE + 60.0 * f64::from(minute)).to_string(),
                ])
                .run()
                .status(0);
        }
        std::fs::write(&lab.config, format!("{RULES}\n{notifiers}")).unwrap();
        lab
    }

    fn hapwatch(&self) -> Hapwatch {
        Hapwatch::new().config_path(&self.config)
    }

    /// `hapwatch report --since 2h ARGS` at 10:00, to run.
    fn report_cmd(&self, args: &[&str]) -> Hapwatch {
        self.hapwatch()
            .args(["report", "--since", "2h"])
            .args(args)
            .args(["--now", &(BASE + 7200.0).to_string()])
    }

    /// `hapwatch report --since 2h ARGS` at 10:00.
    fn report(&self, args: &[&str]) -> Output {
        self.report_cmd(args).run()
    }
}

const SUBJECT: &str =
    "hapwatch report 2027-01-15 08:00 – 2027-01-15 10:00 UTC: 2 incidents, 45m00s down";

#[test]
fn the_report_mail_has_the_figures_in_its_text_and_html_parts() {
    let Some(smtp) = SmtpServer::builder()
        .require_starttls()
        .auth("alice", "s3cret-pw")
        .start_or_skip()
    else {
        return;
    };
    let ca = toml_str(&smtp.ca_file().unwrap().display().to_string());
    let lab = Lab::new(&format!(
        "[notifier.mail]\ntype = \"smtp\"\nhost = \"127.0.0.1\"\nport = {}\ntls = \"starttls\"\nca_file = {ca}\n\
         username = \"alice\"\npassword = \"env:HAPW_REPORT_PW\"\n\
         from = \"hapwatch <hapwatch@lb1.example.net>\"\nto = [\"ops@example.net\", \"lead@example.net\"]\n",
        smtp.port()
    ));
    lab.report_cmd(&["--send", "mail"])
        .env("HAPW_REPORT_PW", "s3cret-pw")
        .run_report();
    let mails = smtp.messages();
    assert_eq!(mails.len(), 1, "one mail");
    let mail = &mails[0];
    assert!(mail.tls, "sent over STARTTLS");
    assert_eq!(mail.user.as_deref(), Some("alice"));
    assert_eq!(mail.rcpt_tos, ["ops@example.net", "lead@example.net"]);
    assert_eq!(mail.subject(), Some(SUBJECT));
    assert!(mail.header("Date").is_some());
    let id = mail.header("Message-ID").unwrap();
    assert!(
        id.starts_with("<hapwatch-report-") && id.ends_with("@lb1.example.net>"),
        "{id}"
    );
    assert_eq!(
        mail.header("Auto-Submitted").as_deref(),
        Some("auto-generated")
    );
    assert!(
        mail.header("Content-Type")
            .unwrap()
            .starts_with("multipart/alternative"),
        "{:?}",
        mail.header("Content-Type")
    );

    // The parts are exactly what `--format text` and `--format html` print.
    let text = mail.text.as_deref().expect("a text part");
    let html = mail.html.as_deref().expect("an HTML part");
    let want_text = lab.report(&["--format", "text"]);
    want_text.status(0);
    assert_eq!(text, want_text.stdout);
    let want_html = lab.report(&["--format", "html"]);
    want_html.status(0);
    assert_eq!(html.trim_end(), want_html.stdout.trim_end());
    // …and they hold the computed figures.
    for needle in [
        "Incidents:  2\n",
        "Downtime:   45m00s (summed over rows)\n",
        "Flaps:      1\n",
        "app-main/web3 (server): 45m00s down, 2 incidents, 62.500% available",
    ] {
        assert!(text.contains(needle), "{needle:?} in:\n{text}");
    }
    assert!(html.contains("62.500%"), "{html}");
    assert!(html.contains("45m00s"), "{html}");
}

#[test]
fn the_report_webhook_posts_the_figures_as_json_with_the_notifiers_headers() {
    let hook = HttpReceiver::start();
    let lab = Lab::new(&format!(
        "[notifier.hook]\ntype = \"webhook\"\nurl = {}\nbearer_token = \"env:HAPW_REPORT_TOKEN\"\nsecret = \"env:HAPW_REPORT_KEY\"\n\n\
         [notifier.chat]\ntype = \"webhook\"\nformat = \"slack\"\nurl = {}\n",
        toml_str(&hook.url_for("/report")),
        toml_str(&hook.url_for("/chat")),
    ));
    lab.report_cmd(&["--send", "hook"])
        .env("HAPW_REPORT_TOKEN", "tok-123")
        .env("HAPW_REPORT_KEY", "hmac-key")
        .run_report();
    let requests = hook.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r.path(), "/report");
    assert_eq!(r.header("authorization"), Some("Bearer tok-123"));
    assert!(r
        .header("x-hapwatch-signature")
        .is_some_and(|s| s.starts_with("sha256=")));
    let body = r.json();
    assert_eq!(body["kind"], "report");
    assert_eq!(body["version"], "1");
    assert_eq!(body["since"], "2027-01-15T08:00:00Z");
    assert_eq!(body["until"], "2027-01-15T10:00:00Z");
    assert_eq!(body["subject"], SUBJECT);
    assert_eq!(body["summary"]["incidents"], 2);
    assert_eq!(body["summary"]["downtime_seconds"].as_f64(), Some(2700.0));
    assert_eq!(body["summary"]["flaps"], 1);
    assert_eq!(body["summary"]["affected_rows"], 1);
    let row = &body["rows"][0];
    assert_eq!(row["row"], "app-main/web3");
    assert_eq!(row["incidents"], 2);
    assert_eq!(row["availability_percent"].as_f64(), Some(62.5));
    assert_eq!(row["mttr_seconds"].as_f64(), Some(1350.0));
    assert_eq!(row["longest_seconds"].as_f64(), Some(1800.0));
    assert_eq!(
        body["rules"],
        serde_json::json!([{"rule": "Down", "incidents": 2}])
    );
    let text = lab.report(&["--format", "text"]);
    assert_eq!(body["text"].as_str(), Some(text.stdout.as_str()));

    // A chat webhook gets the report as a message.
    lab.report_cmd(&["--send", "chat"]).run_report();
    let chat = hook
        .requests()
        .into_iter()
        .find(|r| r.path() == "/chat")
        .unwrap();
    let body: Value = chat.json();
    assert_eq!(body["attachments"][0]["title"], SUBJECT);
    assert!(body["attachments"][0]["text"]
        .as_str()
        .unwrap()
        .contains("Incidents:  2"));
}

#[test]
fn an_alertmanager_or_an_unknown_notifier_is_refused_with_what_to_use() {
    let am = HttpReceiver::start();
    let lab = Lab::new(&format!(
        "[notifier.am]\ntype = \"alertmanager\"\nurl = {}\n\n[notifier.mail]\ntype = \"smtp\"\nhost = \"127.0.0.1\"\nport = 9\ntls = \"none\"\nfrom = \"h@example.net\"\nto = [\"ops@example.net\"]\n",
        toml_str(&am.url())
    ));
    lab.report(&["--send", "am"])
        .status(2)
        .stdout_empty()
        .stderr_line_count(1)
        .stderr_contains(
            "hapwatch: --send: notifier am is an Alertmanager: a report is not an alert",
        )
        .stderr_contains("send it through an smtp notifier");
    assert!(am.requests().is_empty(), "nothing posted");

    lab.report(&["--send", "mial"])
        .status(2)
        .stdout_empty()
        .stderr_line_count(1)
        .stderr_contains(
            "hapwatch: --send: no notifier named \"mial\" (did you mean `mail`?); configured notifiers: am, mail",
        );
    // --send prints nothing, so it cannot go with --out or --format.
    lab.report(&["--send", "mail", "--format", "text"])
        .status(2)
        .stderr_contains("cannot be used with");
}

#[test]
fn a_failed_send_is_one_line_naming_the_notifier_without_secrets_and_exit_1() {
    let Some(mut smtp) = SmtpServer::builder()
        .auth_allow_plaintext("alice", "s3cret-pw")
        .start_or_skip()
    else {
        return;
    };
    let port = smtp.port();
    smtp.stop();
    let dead = common::closed_addr();
    let lab = Lab::new(&format!(
        "[notifier.mail]\ntype = \"smtp\"\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\nallow_insecure_auth = true\n\
         username = \"alice\"\npassword = \"s3cret-pw\"\nfrom = \"h@example.net\"\nto = [\"ops@example.net\"]\ntimeout = \"2s\"\nretries = 1\n\n\
         [notifier.chat]\ntype = \"webhook\"\nformat = \"slack\"\nurl = \"http://{dead}/services/T000/B000/XXXXsecretXXXX\"\ntimeout = \"2s\"\nretries = 0\n"
    ));
    std::fs::set_permissions(
        &lab.config,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let out = lab.report(&["--send", "mail"]);
    out.status(1)
        .stdout_empty()
        .stderr_line_count(1)
        .stderr_contains(&format!(
            "hapwatch: notifier mail: the report was not sent: SMTP 127.0.0.1:{port}: "
        ));
    assert!(!out.stderr.contains("s3cret-pw"), "{}", out.stderr);

    let out = lab.report(&["--send", "chat"]);
    out.status(1)
        .stdout_empty()
        .stderr_line_count(1)
        .stderr_contains("hapwatch: notifier chat: the report was not sent: its url: ");
    assert!(!out.stderr.contains("XXXXsecretXXXX"), "{}", out.stderr);
    assert!(!out.stderr.contains("/services/"), "{}", out.stderr);
    // No outbox for reports: the state file is not touched.
    let state = std::fs::read_to_string(lab.dir.path().join("state.json")).unwrap();
    let state: Value = serde_json::from_str(&state).unwrap();
    assert!(
        state["outbox"].as_array().is_none_or(Vec::is_empty),
        "{state}"
    );
}

trait RunReport {
    fn run_report(self);
}

impl RunReport for Hapwatch {
    /// Runs a `report --send` that must succeed silently (cron etiquette).
    fn run_report(self) {
        self.run().status(0).stdout_empty().stderr_empty();
    }
}
