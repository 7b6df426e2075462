//! Planning, rendering and sending deliveries; the outbox.
//!
//! Delivery guarantee: at least once. A run sends, then saves the state; a delivery that
//! fails goes to the outbox (in the same save) and is retried by later runs with backoff
//! until it succeeds or is older than `outbox_max_age`, which is reported on stderr. A run
//! killed between sending and saving sends that notification again on the next run.

use super::{
    alertmanager, smtp, webhook, AmAlert, HttpRequest, Kind, Message, Notifier, Notifiers,
};
use crate::alert::Labels;
use crate::config::Config;
use crate::engine::{Notice, Notification};
use crate::message::rfc3339;
use crate::rules::template::Templates;
use crate::rules::RuleSet;
use crate::state::{State, Status};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

/// What a delivery carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Payload {
    /// A grouped notification (mail, webhook).
    Notification(Notification),
    /// Alerts for Alertmanager's API.
    Alertmanager {
        /// The alerts.
        alerts: Vec<AmAlert>,
    },
}

/// A delivery that failed, kept in the state file until it succeeds or expires.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxItem {
    /// Notifier name.
    pub notifier: String,
    /// What to send.
    pub payload: Payload,
    /// Unix time of the first attempt.
    pub created_at: f64,
    /// Attempts so far.
    pub attempts: u32,
    /// Not before this Unix time.
    pub next_attempt: f64,
    /// The last failure.
    pub last_error: String,
}

/// What delivery did, for the run's report and exit code.
#[derive(Debug, Default)]
pub struct Delivered {
    /// Deliveries that succeeded (`notifier: subject`).
    pub sent: Vec<String>,
    /// One line per failed delivery (now in the outbox).
    pub failed: Vec<String>,
    /// One line per outbox item dropped for being older than `outbox_max_age`.
    pub expired: Vec<String>,
}

/// Templates of the notifiers (`subject`, `body`, `template`), compiled at config load.
#[derive(Debug, Default)]
pub struct NotifierTemplates(Templates);

/// Variables a notification template may use: the keys of the hapwatch webhook payload.
const TEMPLATE_VARIABLES: &[&str] = &[
    "version",
    "receiver",
    "status",
    "group_key",
    "group_labels",
    "common_labels",
    "common_annotations",
    "digest",
    "subject",
    "text",
    "firing",
    "resolved",
];

impl NotifierTemplates {
    /// Compiles template `which` of `notifier`.
    pub fn add(&mut self, notifier: &str, which: &str, source: &str) -> Result<(), String> {
        let vars = self.0.add(&format!("{notifier}.{which}"), source)?;
        if let Some(var) = vars
            .iter()
            .find(|v| !TEMPLATE_VARIABLES.contains(&v.as_str()))
        {
            return Err(format!(
                "{which}: unknown variable `{var}`{}; variables: {}",
                crate::rules::expr::suggest(var, TEMPLATE_VARIABLES.iter().copied()),
                TEMPLATE_VARIABLES.join(", ")
            ));
        }
        Ok(())
    }

    /// Renders template `which` of `notifier` for `n`.
    pub fn render(&self, notifier: &str, which: &str, n: &Notification) -> String {
        let serde_json::Value::Object(map) = webhook::hapwatch_payload(n, notifier) else {
            unreachable!("the payload is an object")
        };
        let vars = map
            .into_iter()
            .map(|(k, v)| (k, minijinja::Value::from(minijinja::value::Serde(v))))
            .collect();
        self.0.render(&format!("{notifier}.{which}"), vars)
    }
}

/// The deliveries of one run: each notification to the notifiers its route names, and to
/// each Alertmanager notifier every alert firing now plus those resolved in this run.
/// `interval` is the time since the previous run (for `endsAt`).
pub fn plan(
    notifiers: &Notifiers,
    rules: &RuleSet,
    state: &State,
    notifications: &[Notification],
    now: f64,
    interval: f64,
) -> Vec<(String, Payload)> {
    let mut out = Vec::new();
    for n in notifications {
        for name in notifiers.routes.for_notification(n, &notifiers.list) {
            let Some(notifier) = notifiers.get(name) else {
                continue;
            };
            if matches!(notifier.kind, Kind::Alertmanager(_)) {
                continue;
            }
            let mut n = n.clone();
            // A rule's `send_resolved` overrides the notifier's.
            n.resolved.retain(|notice| {
                let name = notice.labels.get("alertname").map_or("", String::as_str);
                rules
                    .rules
                    .iter()
                    .find(|r| r.name == name)
                    .and_then(|r| r.send_resolved)
                    .unwrap_or(notifier.send_resolved)
            });
            if !n.firing.is_empty() || !n.resolved.is_empty() {
                out.push((name.to_string(), Payload::Notification(n)));
            }
        }
    }
    let ends_ahead = 4.0 * interval.clamp(15.0, 3600.0);
    for notifier in notifiers
        .list
        .iter()
        .filter(|n| matches!(n.kind, Kind::Alertmanager(_)))
    {
        let mut alerts = Vec::new();
        for alert in state.alerts.values() {
            let name = alert.labels.get("alertname").map_or("", String::as_str);
            let notify = rules
                .rules
                .iter()
                .find(|r| r.name == name)
                .map_or(&[][..], |r| &r.notify[..]);
            let severity = alert.labels.get("severity").map_or("", String::as_str);
            if !notifiers
                .routes
                .for_alert(notify, severity, &notifiers.list)
                .contains(&notifier.name.as_str())
            {
                continue;
            }
            let silenced = state
                .silences
                .iter()
                .any(|s| s.silences(&alert.labels, now));
            let ends_at = match alert.status {
                Status::Firing if !silenced => now + ends_ahead,
                Status::Resolved if alert.resolved_at == Some(now) && notifier.send_resolved => now,
                _ => continue,
            };
            alerts.push(AmAlert {
                labels: alert.labels.clone(),
                annotations: alert.annotations.clone(),
                starts_at: rfc3339(alert.firing_since.unwrap_or(alert.active_since)),
                ends_at: rfc3339(ends_at),
            });
        }
        if !alerts.is_empty() {
            out.push((notifier.name.clone(), Payload::Alertmanager { alerts }));
        }
    }
    out
}

/// Renders `payload` for `notifier`. Without `secrets`, secret values are left out (dry runs).
pub fn render(
    notifiers: &Notifiers,
    notifier: &Notifier,
    payload: &Payload,
    secrets: bool,
) -> Result<Message, String> {
    match (&notifier.kind, payload) {
        (Kind::Smtp(cfg), Payload::Notification(n)) => Ok(Message::Mail(smtp::render(
            notifier,
            cfg,
            n,
            &notifiers.templates,
        ))),
        (Kind::Webhook(cfg), Payload::Notification(n)) => {
            webhook::render(notifier, cfg, n, &notifiers.templates, secrets).map(Message::Http)
        }
        (Kind::Stdout { json }, Payload::Notification(n)) => Ok(Message::Text(if *json {
            format!("{}\n", serde_json::to_string(n).map_err(|e| e.to_string())?)
        } else {
            format!(
                "{}\n{}\n",
                crate::message::subject(n),
                crate::message::body(n)
            )
        })),
        (Kind::Alertmanager(cfg), Payload::Alertmanager { alerts }) => {
            alertmanager::render(cfg, alerts, secrets).map(Message::Http)
        }
        _ => Err(format!(
            "notifier {} cannot send this kind of payload",
            notifier.name
        )),
    }
}

/// Sends `payload` through `notifier`, with its retries.
pub fn send(notifiers: &Notifiers, notifier: &Notifier, payload: &Payload) -> Result<(), String> {
    let message = render(notifiers, notifier, payload, true)?;
    let mut attempt = 0;
    loop {
        let result = match (&message, &notifier.kind) {
            (Message::Mail(mail), Kind::Smtp(cfg)) => smtp::send(cfg, mail, notifier.timeout),
            (Message::Text(text), Kind::Stdout { .. }) => {
                use std::io::Write;
                let mut out = std::io::stdout().lock();
                out.write_all(text.as_bytes())
                    .and_then(|()| out.flush())
                    .map_err(|e| format!("cannot write to stdout: {e}"))
            }
            (Message::Http(request), Kind::Webhook(cfg)) => post(
                request,
                notifier.timeout,
                cfg.ca_file.as_deref(),
                cfg.insecure,
            ),
            (Message::Http(request), Kind::Alertmanager(cfg)) => post(
                request,
                notifier.timeout,
                cfg.ca_file.as_deref(),
                cfg.insecure,
            ),
            _ => Err("message and notifier do not match".into()),
        };
        match result {
            Ok(()) => return Ok(()),
            // The error may quote the peer, which may echo credentials: masked before it
            // is printed or stored in the outbox (`last_error`).
            Err(e) if attempt >= notifier.retries => return Err(crate::secret::redact(&e)),
            Err(_) => {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(500 * u64::from(attempt)));
            }
        }
    }
}

/// Sends an HTTP request to its URLs until one accepts it (2xx).
fn post(
    request: &HttpRequest,
    timeout: Duration,
    ca_file: Option<&std::path::Path>,
    insecure: bool,
) -> Result<(), String> {
    let agent = crate::http::agent(timeout, ca_file, insecure)?;
    let mut errors = Vec::new();
    for url in &request.urls {
        let mut builder = ureq::http::Request::builder()
            .method(request.method.as_str())
            .uri(url.as_str());
        for (name, value, _) in &request.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let outcome = builder
            .body(request.body.clone())
            .map_err(|e| format!("{url}: {e}"))
            .and_then(|req| {
                agent.run(req).map_err(|e| match e {
                    ureq::Error::Timeout(_) => format!(
                        "{url}: no answer within {}s (timeout)",
                        timeout.as_secs_f64()
                    ),
                    e => format!("{url}: {e}"),
                })
            });
        match outcome {
            Ok(response) if response.status().is_success() => return Ok(()),
            Ok(mut response) => {
                let status = response.status().as_u16();
                let body = response
                    .body_mut()
                    .with_config()
                    .limit(64 * 1024)
                    .read_to_vec()
                    .unwrap_or_default();
                errors.push(format!(
                    "HTTP {status} from {url}: {}",
                    crate::http::excerpt(&body, 200)
                ));
            }
            Err(e) => errors.push(e),
        }
    }
    Err(errors.join("; "))
}

/// Queues this run's `planned` deliveries in the outbox. The caller saves the state
/// before delivering: whatever is sent has been recorded first, so a run killed at any
/// point neither loses a notification nor sends one for a change it did not record.
pub fn enqueue(state: &mut State, planned: Vec<(String, Payload)>, now: f64) {
    state
        .outbox
        .extend(planned.into_iter().map(|(notifier, payload)| OutboxItem {
            notifier,
            payload,
            created_at: now,
            attempts: 0,
            next_attempt: now,
            last_error: String::new(),
        }));
}

/// Delivers the outbox: this run's new items and earlier ones that are due. Failures stay
/// in the outbox with backoff; items older than `max_age` are dropped and reported.
///
/// Each notifier's queue is first in, first out: while an older item waits for its
/// backoff or fails again, newer ones queue behind it, so that a recovery never arrives
/// before the problem it resolves. Once a notifier accepts something in a run, everything
/// queued behind it goes out in the same run.
pub fn deliver(notifiers: &Notifiers, state: &mut State, max_age: Duration, now: f64) -> Delivered {
    let max_age = max_age.as_secs_f64();
    let mut done = Delivered::default();
    let mut keep: Vec<OutboxItem> = Vec::new();
    let mut blocked: HashSet<String> = HashSet::new();
    let mut working: HashSet<String> = HashSet::new();
    let queued = std::mem::take(&mut state.outbox);
    for mut item in queued {
        // Never tried, and not queued behind another: planned by this run.
        let is_new = item.attempts == 0 && item.last_error.is_empty();
        let Some(notifier) = notifiers.get(&item.notifier) else {
            done.expired.push(format!(
                "outbox: notifier {} is no longer configured; dropped a notification from {}",
                item.notifier,
                rfc3339(item.created_at)
            ));
            continue;
        };
        if now - item.created_at > max_age {
            done.expired.push(format!(
                "outbox: gave up on a notification for {} after {} attempts since {} (outbox_max_age): {}",
                item.notifier,
                item.attempts,
                rfc3339(item.created_at),
                item.last_error
            ));
            continue;
        }
        let name = item.notifier.clone();
        let waiting =
            blocked.contains(&name) || (item.next_attempt > now && !working.contains(&name));
        if waiting {
            if is_new {
                item.last_error =
                    "queued behind an earlier notification that is not delivered yet".into();
                done.failed.push(format!("notifier {name}: queued behind an earlier notification (kept in the outbox for the next runs)"));
                try_fallback(notifiers, notifier, &item.payload, &mut done);
            }
            blocked.insert(name);
            keep.push(item);
            continue;
        }
        match send(notifiers, notifier, &item.payload) {
            Ok(()) => {
                working.insert(name.clone());
                done.sent.push(describe(&name, &item.payload));
            }
            Err(e) => {
                item.attempts += 1;
                item.next_attempt = now + backoff(item.attempts);
                if is_new {
                    done.failed.push(format!(
                        "notifier {name}: {e} (kept in the outbox for the next runs)"
                    ));
                    try_fallback(notifiers, notifier, &item.payload, &mut done);
                } else {
                    done.failed.push(format!(
                        "notifier {name}: {e} (kept in the outbox, attempt {})",
                        item.attempts
                    ));
                }
                item.last_error = e;
                blocked.insert(name);
                keep.push(item);
            }
        }
    }
    state.outbox = keep;
    done
}

/// Sends a notification `notifier` could not deliver now through its fallback, once.
fn try_fallback(
    notifiers: &Notifiers,
    notifier: &Notifier,
    payload: &Payload,
    done: &mut Delivered,
) {
    let Some(fallback) = notifier.fallback.as_deref().and_then(|f| notifiers.get(f)) else {
        return;
    };
    match send(notifiers, fallback, payload) {
        Ok(()) => done.sent.push(describe(&fallback.name, payload)),
        Err(e) => done.failed.push(format!(
            "notifier {} (fallback of {}): {e}",
            fallback.name, notifier.name
        )),
    }
}

/// Seconds to wait after `attempts` failures: 1 min, 2, 4, … up to 30 min. A per-minute
/// run retries soon, a long outage is not hammered.
fn backoff(attempts: u32) -> f64 {
    (60.0 * 2f64.powi(attempts.saturating_sub(1).min(10) as i32)).min(1800.0)
}

fn describe(notifier: &str, payload: &Payload) -> String {
    match payload {
        Payload::Notification(n) => format!("{notifier}: {}", crate::message::subject(n)),
        Payload::Alertmanager { alerts } => {
            format!(
                "{notifier}: {} alert{}",
                alerts.len(),
                if alerts.len() == 1 { "" } else { "s" }
            )
        }
    }
}

/// Sends a clearly marked test notification through `name`; `Ok` names what was done.
pub fn notify_test(config: &Config, name: &str, now: f64) -> Result<String, String> {
    let notifier = config.notifiers.get(name).ok_or_else(|| {
        let names: Vec<&str> = config
            .notifiers
            .list
            .iter()
            .map(|n| n.name.as_str())
            .collect();
        format!(
            "no notifier named {name:?} (notifiers: {})",
            if names.is_empty() {
                "none".into()
            } else {
                names.join(", ")
            }
        )
    })?;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map_or_else(|_| "this host".to_string(), |h| h.trim().to_string());
    let labels: Labels = [
        ("alertname", "HapwatchTest"),
        ("source", "hapwatch"),
        ("severity", "info"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .into();
    let annotations: BTreeMap<String, String> = [(
        "summary".to_string(),
        format!("Test notification from hapwatch on {host}, notifier {name}: nothing is wrong"),
    )]
    .into();
    let payload = match notifier.kind {
        Kind::Alertmanager(_) => Payload::Alertmanager {
            alerts: vec![AmAlert {
                labels,
                annotations,
                starts_at: rfc3339(now),
                ends_at: rfc3339(now + 300.0),
            }],
        },
        _ => {
            let fingerprint = crate::alert::Fingerprint::of(&labels).to_string();
            Payload::Notification(Notification {
                group_key: "{alertname=\"HapwatchTest\"}".into(),
                group_labels: [("alertname".to_string(), "HapwatchTest".to_string())].into(),
                digest: false,
                receivers: vec![name.to_string()],
                firing: vec![Notice {
                    fingerprint,
                    labels,
                    annotations,
                    value: None,
                    starts_at: now,
                    ends_at: None,
                    repeat: false,
                    thread: None,
                }],
                resolved: Vec::new(),
                created_at: now,
            })
        }
    };
    let single_try = Notifier {
        retries: 0,
        ..notifier.clone()
    };
    send(&config.notifiers, &single_try, &payload)?;
    Ok(describe(name, &payload))
}
