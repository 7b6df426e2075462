//! A real Prometheus Alertmanager.

use super::super::{free_port, temp_dir, wait_until};
use super::*;
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::Duration;
use tempfile::TempDir;

// ---------------------------------------------------------------------------------------
// Alertmanager
// ---------------------------------------------------------------------------------------

/// Options for an [`Alertmanager`]; see [`Alertmanager::builder`].
pub struct AlertmanagerBuilder {
    webhook: Option<String>,
    resolve_timeout: String,
    group_by: Vec<String>,
    group_wait: String,
    inhibit_rules: String,
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

    /// Adds `inhibit_rules` (YAML list items, each starting with `  - `), e.g. the ones the
    /// README gives to match hapwatch's default `[[inhibit]]`.
    pub fn inhibit_rules(mut self, yaml: &str) -> Self {
        self.inhibit_rules = yaml.to_string();
        self
    }

    /// Sets `global.resolve_timeout` (default `5m`): how long an alert posted without
    /// `endsAt` stays firing without being re-sent.
    pub fn resolve_timeout(mut self, duration: &str) -> Self {
        self.resolve_timeout = duration.to_string();
        self
    }

    /// Starts Alertmanager if it is installed; otherwise `None`, the skip reported like
    /// [`super::super::require`] (a panic under `CI=true`).
    pub fn start_or_skip(self) -> Option<Alertmanager> {
        if alertmanager_program().is_none() && !super::super::require("prometheus-alertmanager") {
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
        let mut config = format!(
            "global:\n  resolve_timeout: {}\nroute:\n  receiver: blackhole\n  group_by: [{}]\n  \
             group_wait: {}\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n{receiver}",
            self.resolve_timeout,
            group_by.join(", "),
            self.group_wait
        );
        if !self.inhibit_rules.is_empty() {
            config.push_str(&format!("inhibit_rules:\n{}\n", self.inhibit_rules));
        }
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
pub(super) fn alertmanager_program() -> Option<PathBuf> {
    super::super::find_program("prometheus-alertmanager")
        .or_else(|| super::super::find_program("alertmanager"))
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
pub(super) const AM_REQUEST_LIMIT: Duration = Duration::from_secs(5);

impl Alertmanager {
    /// Default options (no webhook).
    pub fn builder() -> AlertmanagerBuilder {
        AlertmanagerBuilder {
            webhook: None,
            resolve_timeout: "5m".to_string(),
            group_by: vec!["...".to_string()],
            group_wait: "0s".to_string(),
            inhibit_rules: String::new(),
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
