//! Planning, rendering and sending deliveries; the outbox.
//!
//! Delivery guarantee: at least once. A run sends, then saves the state; a delivery that
//! fails goes to the outbox (in the same save) and is retried by later runs with backoff
//! until it succeeds or is older than `outbox_max_age`, which is reported on stderr. A run
//! killed between sending and saving sends that notification again on the next run.
//!
//! A receiver that refuses a delivery for good (HTTP 4xx other than 408 and 429, an SMTP
//! 5xx reply) gets it once: it is reported and dropped, so that it never blocks the
//! notifications behind it; a mail recipient refused for good is reported and left out,
//! the others still get the mail. A notification its notifier can no longer send (its
//! `type` changed) is refused for good too. Every attempt (each URL, each retry) is bounded
//! by the notifier's `timeout` and by what is left of the run's `run_timeout`; an SMTP
//! session abandoned at its deadline is never doubled by a retry, and its late result is
//! collected before the run ends.

use super::{
    alertmanager, smtp, webhook, AmAlert, HttpRequest, Kind, Message, Notifier, NotifierTemplates,
    Notifiers,
};
use crate::alert::Labels;
use crate::config::Config;
use crate::state::{State, Status};
use crate::text::rfc3339;
use crate::vocab::{Notice, Notification, OutboxItem, Payload};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

/// Why a delivery failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    /// What went wrong, where (one line).
    pub message: String,
    /// The receiver refused it for good (HTTP 4xx other than 408 and 429, an SMTP 5xx
    /// reply): sending the same thing again cannot succeed.
    pub permanent: bool,
}

impl Failure {
    /// The same failure with every configured secret masked in its message (the peer's
    /// reply it may quote can echo credentials).
    pub fn redacted(self) -> Failure {
        Failure {
            message: crate::secret::redact(&self.message),
            ..self
        }
    }

    /// A failure that a later attempt may get past (timeouts, refused connections, 5xx).
    pub fn transient(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            permanent: false,
        }
    }
}

/// What a run may still spend on delivering: `[alerting] run_timeout`, counted from the
/// start of the run. Each attempt gets the notifier's `timeout` or what is left,
/// whichever is less; once nothing is left, the rest stays in the outbox.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// When the run's time is up.
    pub deadline: Instant,
    /// The configured budget, for messages.
    pub run_timeout: Duration,
}

impl Budget {
    /// The budget of a run that started at `started`.
    pub fn new(started: Instant, run_timeout: Duration) -> Budget {
        Budget {
            deadline: started + run_timeout,
            run_timeout,
        }
    }

    /// The time one attempt may take: `timeout`, or less when the run is nearly out of
    /// time; `None` once it is.
    pub fn limit(&self, timeout: Duration) -> Option<Duration> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        (!left.is_zero()).then(|| timeout.min(left))
    }
}

/// `3 s`, `0.5 s`: a duration in messages.
pub fn seconds(d: Duration) -> String {
    format!("{} s", (d.as_secs_f64() * 1000.0).round() / 1000.0)
}

/// What delivery did, for the run's report and exit code.
#[derive(Debug, Default)]
pub struct Delivered {
    /// Deliveries that succeeded (`notifier: subject`).
    pub sent: Vec<String>,
    /// One line per delivery refused for good (dropped) and per other failure that is
    /// not a notifier's queue waiting (a fallback that failed, the run's time budget).
    pub failed: Vec<String>,
    /// `(notifier, line)` per delivery that failed for now and waits in the outbox (a
    /// failed attempt or retry, a new notification queued behind one that failed): while
    /// the notifier stays unreachable these are one lasting problem, not news each run.
    pub waiting: Vec<(String, String)>,
    /// One line per outbox item dropped for being older than `outbox_max_age`.
    pub expired: Vec<String>,
    /// Each delivery attempt for the history: notifier, payload, the error if it failed,
    /// a fallback's attempt included. A retry that fails again is not listed (its first
    /// failure was).
    pub attempts: Vec<(String, Payload, Option<String>)>,
}

impl NotifierTemplates {
    /// Renders template `which` of `notifier` for `n`.
    pub fn render(&self, notifier: &str, which: &str, n: &Notification) -> String {
        let serde_json::Value::Object(map) = webhook::hapwatch_payload(n, notifier) else {
            unreachable!("the payload is an object")
        };
        let vars = map
            .into_iter()
            .map(|(k, v)| (k, minijinja::Value::from(minijinja::value::Serde(v))))
            .collect();
        self.compiled().render(&format!("{notifier}.{which}"), vars)
    }
}

/// What a rule says about delivering its alerts: planning needs this, not the rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleRoute {
    /// The rule's `notify` (empty: the routes decide).
    pub notify: Vec<String>,
    /// The rule's `send_resolved`, overriding the notifier's.
    pub send_resolved: Option<bool>,
}

/// [`RuleRoute`]s by rule name (alert name).
pub type RuleRoutes = BTreeMap<String, RuleRoute>;

/// The deliveries of one run: each notification to the notifiers its route names, and to
/// each Alertmanager notifier every alert firing now plus those resolved in this run.
/// `interval` is the time since the previous run (for `endsAt`); `links` maps a source
/// name to its page (`generatorURL`).
///
/// Alertmanager gets the real state of every alert, silenced by hapwatch or not: leaving
/// a silenced alert out would make Alertmanager resolve it at its `endsAt` and announce a
/// recovery that did not happen. Alertmanager users silence in Alertmanager.
#[allow(clippy::too_many_arguments)]
pub fn plan(
    notifiers: &Notifiers,
    rule_routes: &RuleRoutes,
    links: &BTreeMap<String, String>,
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
                rule_routes
                    .get(name)
                    .and_then(|r| r.send_resolved)
                    .unwrap_or(notifier.send_resolved)
            });
            // What still fires is listed only where it is routed: a receiver must not see
            // (and later miss the recovery of) an alert that was never sent to it.
            // A notification with receivers (a rule's `notify`, a `[[route]]`'s) holds only
            // alerts the engine routed to them.
            let routed = n.receivers.iter().any(|r| r == name);
            n.still_firing.retain(|notice| {
                let alertname = notice.labels.get("alertname").map_or("", String::as_str);
                let notify = rule_routes
                    .get(alertname)
                    .map_or(&[][..], |r| &r.notify[..]);
                routed
                    || notifiers
                        .receivers_of(&notice.labels, notify)
                        .contains(&name)
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
            let notify = rule_routes.get(name).map_or(&[][..], |r| &r.notify[..]);
            if !notifiers
                .receivers_of(&alert.labels, notify)
                .contains(&notifier.name.as_str())
            {
                continue;
            }
            let resolved_at = match alert.status {
                Status::Firing => None,
                Status::Resolved if alert.resolved_at == Some(now) && notifier.send_resolved => {
                    Some(now)
                }
                _ => continue,
            };
            alerts.push(AmAlert {
                labels: alert.labels.clone(),
                annotations: alert.annotations.clone(),
                starts_at: alert.firing_since.unwrap_or(alert.active_since),
                resolved_at,
                generator_url: alert
                    .labels
                    .get("source")
                    .and_then(|source| links.get(source))
                    .cloned(),
            });
        }
        if matches!(&notifier.kind, Kind::Alertmanager(cfg) if cfg.watchdog) {
            alerts.push(watchdog(now));
        }
        if !alerts.is_empty() {
            out.push((
                notifier.name.clone(),
                Payload::Alertmanager { alerts, ends_ahead },
            ));
        }
    }
    out
}

/// The always-firing alert of `watchdog = true`, like Prometheus' `Watchdog`: while
/// hapwatch runs, Alertmanager holds it firing; once runs stop, it resolves at its
/// `endsAt`, which a dead man's switch (a receiver that expects it every few minutes)
/// notices.
fn watchdog(now: f64) -> AmAlert {
    let labels: Labels = [
        ("alertname", "Watchdog"),
        ("severity", "none"),
        ("source", "hapwatch"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .into();
    let annotations = [(
        "summary".to_string(),
        "hapwatch is running: this alert fires as long as it runs; route it to a dead man's switch"
            .to_string(),
    )]
    .into();
    AmAlert {
        labels,
        annotations,
        starts_at: now,
        resolved_at: None,
        generator_url: None,
    }
}

/// Renders `payload` for `notifier` as sent at `now`. Without `secrets`, secret values are
/// left out (dry runs).
pub fn render(
    notifiers: &Notifiers,
    notifier: &Notifier,
    payload: &Payload,
    secrets: bool,
    now: f64,
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
        (Kind::Alertmanager(cfg), Payload::Alertmanager { alerts, ends_ahead }) => {
            alertmanager::render(cfg, alerts, *ends_ahead, now, secrets).map(Message::Http)
        }
        _ => Err(format!(
            "notifier {} cannot send this kind of payload",
            notifier.name
        )),
    }
}

/// Sends `payload` through `notifier` at `now`, with its retries, within `budget`. A
/// permanent refusal is not retried. `Ok` holds one line per mail recipient refused for
/// good while the others got it.
///
/// An SMTP session abandoned at its timeout may still deliver the mail: no retry (and no
/// other session to that notifier in this run) starts beside it; [`deliver`] collects its
/// result before the run ends.
pub fn send(
    notifiers: &Notifiers,
    notifier: &Notifier,
    payload: &Payload,
    now: f64,
    budget: &Budget,
) -> Result<Vec<String>, Failure> {
    if !can_send(notifier, payload) {
        // The notifier's `type` changed since this was queued: no later attempt can send
        // it, and keeping it would hold up everything queued behind it.
        return Err(Failure {
            message: format!(
                "now of type {}, which cannot send this {} queued under its earlier type",
                kind_name(&notifier.kind),
                match payload {
                    Payload::Notification(_) => "notification",
                    Payload::Alertmanager { .. } => "Alertmanager push",
                }
            ),
            permanent: true,
        });
    }
    let message = render(notifiers, notifier, payload, true, now).map_err(Failure::transient)?;
    send_message(notifier, &message, budget)
}

/// Sends a rendered `message` through `notifier`, with its retries, within `budget`: the
/// one sending path of alerts (through [`send`]) and reports (`hapwatch report --send`).
/// A permanent refusal is not retried; the failure's text has every secret masked.
pub(super) fn send_message(
    notifier: &Notifier,
    message: &Message,
    budget: &Budget,
) -> Result<Vec<String>, Failure> {
    if matches!(notifier.kind, Kind::Smtp(_)) && smtp::session_pending(&notifier.name) {
        return Err(Failure::transient(format!(
            "not attempted: an earlier SMTP session to notifier {}, abandoned at its timeout, may still deliver (no second session beside it)",
            notifier.name
        )));
    }
    let mut attempt = 0;
    loop {
        let Some(limit) = budget.limit(notifier.timeout) else {
            return Err(out_of_time(budget));
        };
        let result = match (message, &notifier.kind) {
            (Message::Mail(mail), Kind::Smtp(cfg)) => smtp::send(&notifier.name, cfg, mail, limit),
            (Message::Text(text), Kind::Stdout { .. }) => {
                use std::io::Write;
                let mut out = std::io::stdout().lock();
                out.write_all(text.as_bytes())
                    .and_then(|()| out.flush())
                    .map_err(|e| Failure::transient(format!("cannot write to stdout: {e}")))
                    .map(|()| Vec::new())
            }
            (
                Message::Http(request),
                Kind::Webhook(super::WebhookConfig {
                    ca_file, insecure, ..
                })
                | Kind::Alertmanager(super::AmConfig {
                    ca_file, insecure, ..
                }),
            ) => post(
                request,
                notifier.timeout,
                budget,
                ca_file.as_deref(),
                *insecure,
            )
            .map(|()| Vec::new()),
            _ => Err(Failure::transient("message and notifier do not match")),
        };
        match result {
            Ok(refused) => return Ok(refused.iter().map(|r| crate::secret::redact(r)).collect()),
            // The error may quote the peer, which may echo credentials: masked before it
            // is printed or stored in the outbox (`last_error`). A session left running
            // may still deliver: no second one beside it.
            Err(e)
                if e.permanent
                    || attempt >= notifier.retries
                    || smtp::session_pending(&notifier.name) =>
            {
                return Err(e.redacted())
            }
            Err(e) => {
                attempt += 1;
                let pause = Duration::from_millis(500 * u64::from(attempt));
                if budget
                    .limit(notifier.timeout)
                    .is_none_or(|left| left <= pause)
                {
                    return Err(e.redacted());
                }
                std::thread::sleep(pause);
            }
        }
    }
}

/// Whether `notifier`, as configured now, can send `payload` at all.
fn can_send(notifier: &Notifier, payload: &Payload) -> bool {
    matches!(
        (&notifier.kind, payload),
        (Kind::Alertmanager(_), Payload::Alertmanager { .. })
            | (
                Kind::Smtp(_) | Kind::Webhook(_) | Kind::Stdout { .. },
                Payload::Notification(_)
            )
    )
}

/// The `type = "..."` of a notifier, for messages.
fn kind_name(kind: &Kind) -> &'static str {
    match kind {
        Kind::Smtp(_) => "smtp",
        Kind::Webhook(_) => "webhook",
        Kind::Alertmanager(_) => "alertmanager",
        Kind::Stdout { .. } => "stdout",
    }
}

fn out_of_time(budget: &Budget) -> Failure {
    Failure::transient(format!(
        "not attempted: the run's time budget ([alerting] run_timeout = {}) is spent",
        seconds(budget.run_timeout)
    ))
}

/// Whether an HTTP status is a refusal for good: 4xx except 408 (request timeout) and 429
/// (too many requests), which say "later".
fn permanent_status(status: u16) -> bool {
    (400..500).contains(&status) && status != 408 && status != 429
}

/// Sends an HTTP request to its URLs until one accepts it (2xx). Redirects are not
/// followed: a 3xx is a (transient) failure that names its `Location`. The failure is
/// permanent only when every URL refused for good.
///
/// Each URL gets `timeout` or what is left of `budget`, recomputed before it: several
/// URLs that never answer cannot hold the run past its `run_timeout`.
fn post(
    request: &HttpRequest,
    timeout: Duration,
    budget: &Budget,
    ca_file: Option<&std::path::Path>,
    insecure: bool,
) -> Result<(), Failure> {
    let mut errors = Vec::new();
    let mut permanent = true;
    for url in &request.urls {
        let Some(timeout) = budget.limit(timeout) else {
            permanent = false;
            errors.push(format!(
                "{url}: not attempted: the run's time budget ([alerting] run_timeout = {}) is spent",
                seconds(budget.run_timeout)
            ));
            break;
        };
        let agent =
            crate::http::notifier_agent(timeout, ca_file, insecure).map_err(Failure::transient)?;
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
                    ureq::Error::Timeout(_) => {
                        format!("{url}: timed out after {}", seconds(timeout))
                    }
                    ureq::Error::Io(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
                        ) =>
                    {
                        format!("{url}: timed out after {}", seconds(timeout))
                    }
                    e => format!("{url}: {}", crate::http::describe_error(&e)),
                })
            });
        match outcome {
            Ok(response) if response.status().is_success() => return Ok(()),
            Ok(response) if response.status().is_redirection() => {
                permanent = false;
                let location = response
                    .headers()
                    .get("location")
                    .map(|l| crate::http::excerpt(l.as_bytes(), 200))
                    .unwrap_or_else(|| "nowhere (no Location header)".into());
                errors.push(format!(
                    "HTTP {} from {url}: redirects to {location}, which hapwatch does not follow for notifications (set the notifier's url to the final address)",
                    response.status().as_u16()
                ));
            }
            Ok(mut response) => {
                let status = response.status().as_u16();
                permanent &= permanent_status(status);
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
            Err(e) => {
                permanent = false;
                errors.push(e);
            }
        }
    }
    Err(Failure {
        message: errors.join("; "),
        permanent: permanent && !errors.is_empty(),
    })
}

/// Queues this run's `planned` deliveries in the outbox. The caller saves the state
/// before delivering: whatever is sent has been recorded first, so a run killed at any
/// point neither loses a notification nor sends one for a change it did not record.
///
/// An Alertmanager push is merged into the one still pending for that notifier (latest
/// state of each alert wins, see `alertmanager::merge`), so the outbox holds at most one
/// push per Alertmanager notifier, whatever the length of an outage.
pub fn enqueue(state: &mut State, planned: Vec<(String, Payload)>, now: f64) {
    for (notifier, payload) in planned {
        if let Payload::Alertmanager { alerts, ends_ahead } = payload {
            let pending: Vec<usize> = (0..state.outbox.len())
                .filter(|&k| {
                    state.outbox[k].notifier == notifier
                        && matches!(state.outbox[k].payload, Payload::Alertmanager { .. })
                })
                .collect();
            if let Some(&first) = pending.first() {
                // Earlier versions queued one push per run: fold them all into the first.
                let mut merged = Vec::new();
                for &k in &pending {
                    if let Payload::Alertmanager { alerts, .. } = &mut state.outbox[k].payload {
                        merged = alertmanager::merge(merged, std::mem::take(alerts));
                    }
                }
                let item = &mut state.outbox[first];
                item.payload = Payload::Alertmanager {
                    alerts: alertmanager::merge(merged, alerts),
                    ends_ahead,
                };
                item.refreshed = true;
                for &k in pending[1..].iter().rev() {
                    state.outbox.remove(k);
                }
                continue;
            }
            state.outbox.push(new_item(
                notifier,
                Payload::Alertmanager { alerts, ends_ahead },
                now,
            ));
        } else {
            state.outbox.push(new_item(notifier, payload, now));
        }
    }
}

fn new_item(notifier: String, payload: Payload, now: f64) -> OutboxItem {
    OutboxItem {
        notifier,
        payload,
        created_at: now,
        attempts: 0,
        next_attempt: now,
        last_error: String::new(),
        refreshed: false,
    }
}

/// Delivers the outbox: this run's new items and earlier ones that are due. Failures stay
/// in the outbox with backoff; refusals for good are reported and dropped; items older
/// than `max_age` are dropped and reported; once `budget` is spent, what is left stays.
///
/// Each notifier's queue is first in, first out: while an older item waits for its
/// backoff or fails again, newer ones queue behind it, so that a recovery never arrives
/// before the problem it resolves. Once a notifier accepts something in a run, everything
/// queued behind it goes out in the same run. An item refused for good does not hold up
/// the ones behind it.
///
/// A clock that stepped back (an NTP step, a VM restored from a snapshot) leaves items
/// created "in the future" or due further ahead than the longest backoff: they are due
/// now, and their age counts from now, so that they are neither stuck nor expired early.
pub fn deliver(
    notifiers: &Notifiers,
    state: &mut State,
    max_age: Duration,
    now: f64,
    budget: &Budget,
) -> Delivered {
    let max_age = max_age.as_secs_f64();
    let mut done = Delivered::default();
    let mut keep: Vec<OutboxItem> = Vec::new();
    let mut blocked: HashSet<String> = HashSet::new();
    // For each blocked notifier, the item at the head of its queue, as `what (queued 5m ago:
    // last error)`, so that what queues behind it can name it.
    let mut blockers: HashMap<String, String> = HashMap::new();
    let mut working: HashSet<String> = HashSet::new();
    let mut out_of_time = 0;
    // Notifiers whose SMTP session was abandoned at its timeout: where its item is in
    // `keep`, and its line in `done.waiting`.
    let mut abandoned: HashMap<String, (usize, usize)> = HashMap::new();
    let queued = std::mem::take(&mut state.outbox);
    for mut item in queued {
        // Never tried, and not queued behind another: planned by this run.
        let refreshed = std::mem::take(&mut item.refreshed);
        let is_new = item.attempts == 0 && item.last_error.is_empty();
        let Some(notifier) = notifiers.get(&item.notifier) else {
            done.expired.push(format!(
                "outbox: notifier {} is no longer configured; dropped a notification from {}",
                item.notifier,
                rfc3339(item.created_at)
            ));
            continue;
        };
        // Created "in the future" (the clock was behind then, or is behind now): its age
        // counts from now, for this run only. Saving the clamp would make the item look
        // as old as the clock's error once the clock is right again, and expire it.
        let created = item.created_at.min(now);
        if item.next_attempt > now + MAX_BACKOFF {
            item.next_attempt = now;
        }
        if now - created > max_age {
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
            if refreshed && !blocked.contains(&name) {
                // This run's Alertmanager push, merged into one that waits for its
                // backoff: say so, keeping the reason it waits.
                done.waiting.push((name.clone(), format!(
                    "notifier {name}: the pending push (now {}) waits for its next attempt at {} after: {} (kept in the outbox)",
                    what(&item.payload),
                    rfc3339(item.next_attempt),
                    item.last_error
                )));
            } else if is_new {
                let ahead = blockers
                    .get(&name)
                    .cloned()
                    .unwrap_or_else(|| describe_blocker(&item, now));
                item.last_error = format!("queued behind {ahead}");
                done.waiting.push((name.clone(), format!(
                    "notifier {name}: {} queued behind {ahead} (kept in the outbox for the next runs)",
                    what(&item.payload)
                )));
                try_fallback(notifiers, notifier, &item.payload, &mut done, now, budget);
            }
            blockers
                .entry(name.clone())
                .or_insert_with(|| describe_blocker(&item, now));
            blocked.insert(name);
            keep.push(item);
            continue;
        }
        if budget.limit(notifier.timeout).is_none() {
            out_of_time += 1;
            blocked.insert(name);
            keep.push(item);
            continue;
        }
        // A session already pending (abandoned as another's fallback) is not this item's.
        let pending_before = smtp::session_pending(&name);
        match send(notifiers, notifier, &item.payload, now, budget) {
            Ok(refused) => {
                working.insert(name.clone());
                done.sent.push(describe(&name, &item.payload));
                done.attempts
                    .push((name.clone(), item.payload.clone(), None));
                refused_recipients(state, &mut done, &name, &item.payload, refused, now);
            }
            Err(e) if e.permanent => {
                // Sending it again cannot help, and keeping it would hold up every later
                // notification to this notifier: say so once, remember it for `state
                // show`, and move on.
                done.failed.push(format!(
                    "notifier {name}: {e} (refused for good: dropped, not retried: {})",
                    what(&item.payload)
                ));
                record_refused(state, &name, now, what(&item.payload), e.message.clone());
                done.attempts
                    .push((name.clone(), item.payload.clone(), Some(e.message.clone())));
                if is_new {
                    try_fallback(notifiers, notifier, &item.payload, &mut done, now, budget);
                }
            }
            Err(e) => {
                item.attempts += 1;
                item.next_attempt = now + backoff(item.attempts);
                if !pending_before && smtp::session_pending(&name) {
                    abandoned.insert(name.clone(), (keep.len(), done.waiting.len()));
                }
                if is_new {
                    done.attempts.push((
                        name.clone(),
                        item.payload.clone(),
                        Some(e.message.clone()),
                    ));
                    done.waiting.push((
                        name.clone(),
                        format!("notifier {name}: {e} (kept in the outbox for the next runs)"),
                    ));
                    try_fallback(notifiers, notifier, &item.payload, &mut done, now, budget);
                } else {
                    done.waiting.push((
                        name.clone(),
                        format!(
                            "notifier {name}: {e} (kept in the outbox, attempt {})",
                            item.attempts
                        ),
                    ));
                }
                item.last_error = e.message;
                blockers
                    .entry(name.clone())
                    .or_insert_with(|| describe_blocker(&item, now));
                blocked.insert(name);
                keep.push(item);
            }
        }
    }
    collect_abandoned(state, &mut done, &mut keep, &abandoned, now, budget);
    if out_of_time > 0 {
        done.failed.push(format!(
            "the run's time budget ([alerting] run_timeout = {}) is spent: {out_of_time} notification{} not attempted, kept in the outbox for the next runs",
            seconds(budget.run_timeout),
            if out_of_time == 1 { "" } else { "s" }
        ));
    }
    state.outbox = keep;
    done
}

/// Waits, within what is left of `budget`, for the SMTP sessions abandoned at their
/// timeout: one that delivered after all counts as delivered (out of the outbox, its
/// failure line withdrawn), so that the next run does not send it again; one refused for
/// good is dropped as such. One still running is forgotten (it ends with the process,
/// before the end of the mail): its item stays in the outbox.
fn collect_abandoned(
    state: &mut State,
    done: &mut Delivered,
    keep: &mut Vec<OutboxItem>,
    abandoned: &HashMap<String, (usize, usize)>,
    now: f64,
    budget: &Budget,
) {
    let mut delivered_late = HashSet::new();
    let mut withdrawn = HashSet::new();
    for (name, outcome) in smtp::collect_abandoned(budget.deadline) {
        let Some(&(at, line)) = abandoned.get(&name) else {
            // A fallback's session: nothing queued to update.
            continue;
        };
        let payload = keep[at].payload.clone();
        match outcome {
            Ok(refused) => {
                delivered_late.insert(at);
                withdrawn.insert(line);
                done.sent.push(describe(&name, &payload));
                done.attempts.push((name.clone(), payload.clone(), None));
                let refused = refused.iter().map(|r| crate::secret::redact(r)).collect();
                refused_recipients(state, done, &name, &payload, refused, now);
            }
            Err(e) if e.permanent => {
                let e = e.redacted();
                delivered_late.insert(at);
                withdrawn.insert(line);
                done.failed.push(format!(
                    "notifier {name}: {e} (refused for good: dropped, not retried: {})",
                    what(&payload)
                ));
                record_refused(state, &name, now, what(&payload), e.message);
            }
            Err(_) => {}
        }
    }
    let mut k = 0;
    keep.retain(|_| {
        k += 1;
        !delivered_late.contains(&(k - 1))
    });
    let mut k = 0;
    done.waiting.retain(|_| {
        k += 1;
        !withdrawn.contains(&(k - 1))
    });
}

/// Reports and records the mail recipients that refused `payload` for good while the
/// others got it.
fn refused_recipients(
    state: &mut State,
    done: &mut Delivered,
    name: &str,
    payload: &Payload,
    refused: Vec<String>,
    now: f64,
) {
    for line in refused {
        done.failed.push(format!(
            "notifier {name}: {line} (refused for good: not sent to this recipient, not retried; the other recipients got it: {})",
            what(payload)
        ));
        record_refused(state, name, now, what(payload), line);
    }
}

/// Remembers a refusal for good for `state show`, keeping the latest
/// [`crate::state::REFUSED_KEPT`].
fn record_refused(state: &mut State, name: &str, now: f64, what: String, error: String) {
    state.refused.push(crate::state::Refused {
        notifier: name.to_string(),
        at: now,
        what,
        error,
    });
    let excess = state
        .refused
        .len()
        .saturating_sub(crate::state::REFUSED_KEPT);
    state.refused.drain(..excess);
}

/// `[FIRING:1] ServerDown app-main (lb1) (queued 5m ago: HTTP 500 …)`: the item at the
/// head of a notifier's queue, for the ones that wait behind it.
fn describe_blocker(item: &OutboxItem, now: f64) -> String {
    let age = crate::duration::format_secs((now - item.created_at).max(0.0) as u64);
    if item.last_error.is_empty() {
        format!("{} (queued {age} ago)", what(&item.payload))
    } else {
        format!(
            "{} (queued {age} ago: {})",
            what(&item.payload),
            crate::text::one_line(&item.last_error)
        )
    }
}

/// Sends a notification `notifier` could not deliver now through its fallback, once.
fn try_fallback(
    notifiers: &Notifiers,
    notifier: &Notifier,
    payload: &Payload,
    done: &mut Delivered,
    now: f64,
    budget: &Budget,
) {
    let Some(fallback) = notifier.fallback.as_deref().and_then(|f| notifiers.get(f)) else {
        return;
    };
    // The fallback's attempt is a delivery like any other for the history: whoever reads
    // it later must see who got the notification when the primary could not take it.
    match send(notifiers, fallback, payload, now, budget) {
        Ok(refused) => {
            done.sent.push(describe(&fallback.name, payload));
            done.attempts
                .push((fallback.name.clone(), payload.clone(), None));
            for line in refused {
                done.failed.push(format!(
                    "notifier {} (fallback of {}): {line} (refused for good; the other recipients got it)",
                    fallback.name, notifier.name
                ));
            }
        }
        Err(e) => {
            done.attempts.push((
                fallback.name.clone(),
                payload.clone(),
                Some(e.message.clone()),
            ));
            done.failed.push(format!(
                "notifier {} (fallback of {}): {e}",
                fallback.name, notifier.name
            ));
        }
    }
}

/// The longest wait between two attempts, in seconds.
const MAX_BACKOFF: f64 = 1800.0;

/// Seconds to wait after `attempts` failures: 1 min, 2, 4, … up to 30 min. A per-minute
/// run retries soon, a long outage is not hammered.
fn backoff(attempts: u32) -> f64 {
    (60.0 * 2f64.powi(attempts.saturating_sub(1).min(10) as i32)).min(MAX_BACKOFF)
}

fn describe(notifier: &str, payload: &Payload) -> String {
    format!("{notifier}: {}", what(payload))
}

/// `[FIRING:2] ServerDown app-main (lb1)`, `3 alerts`.
fn what(payload: &Payload) -> String {
    match payload {
        Payload::Notification(n) => crate::message::subject(n),
        Payload::Alertmanager { alerts, .. } => format!(
            "{} alert{}",
            alerts.len(),
            if alerts.len() == 1 { "" } else { "s" }
        ),
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
                starts_at: now,
                resolved_at: None,
                generator_url: None,
            }],
            ends_ahead: 300.0,
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
                    route: String::new(),
                    generator_url: None,
                }],
                resolved: Vec::new(),
                still_firing: Vec::new(),
                still_firing_more: 0,
                created_at: now,
            })
        }
    };
    let single_try = Notifier {
        retries: 0,
        ..notifier.clone()
    };
    let budget = Budget::new(Instant::now(), config.alerting.run_timeout);
    let refused =
        send(&config.notifiers, &single_try, &payload, now, &budget).map_err(|e| e.message)?;
    if !refused.is_empty() {
        return Err(format!(
            "{} (the other recipients got it)",
            refused.join("; ")
        ));
    }
    Ok(describe(name, &payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An outbox written by an earlier version: one Alertmanager push per run, times as
    /// RFC 3339 text. It still loads, and the next push folds them all into one.
    #[test]
    fn legacy_alertmanager_pushes_load_and_fold_into_one() {
        let legacy = |at: &str, ends: &str| {
            format!(
                r#"{{"notifier":"am","payload":{{"kind":"alertmanager","alerts":[{{"labels":{{"server":"a"}},"annotations":{{}},"startsAt":"{at}","endsAt":"{ends}"}}]}},"created_at":1800000000.0,"attempts":1,"next_attempt":1800000060.0,"last_error":"refused"}}"#
            )
        };
        let items: Vec<OutboxItem> = serde_json::from_str(&format!(
            "[{},{}]",
            legacy("2027-01-15T08:00:00.000Z", "2027-01-15T08:04:00.000Z"),
            legacy("2027-01-15T08:00:00.000Z", "2027-01-15T08:05:00.000Z")
        ))
        .unwrap();
        let mut state = State {
            outbox: items,
            ..State::default()
        };
        let b = AmAlert {
            labels: [("server".to_string(), "b".to_string())].into(),
            annotations: BTreeMap::new(),
            starts_at: 1_800_000_060.0,
            resolved_at: None,
            generator_url: None,
        };
        enqueue(
            &mut state,
            vec![(
                "am".into(),
                Payload::Alertmanager {
                    alerts: vec![b.clone()],
                    ends_ahead: 240.0,
                },
            )],
            1_800_000_120.0,
        );
        assert_eq!(state.outbox.len(), 1);
        let item = &state.outbox[0];
        assert_eq!((item.attempts, item.next_attempt), (1, 1_800_000_060.0));
        let Payload::Alertmanager { alerts, .. } = &item.payload else {
            panic!("{item:?}")
        };
        assert_eq!(alerts.len(), 2);
        assert_eq!(
            alerts[0].resolved_at,
            Some(1_800_000_300.0),
            "the newer one"
        );
        assert_eq!(alerts[1], b);
    }

    #[test]
    fn only_4xx_other_than_408_and_429_refuse_for_good() {
        for status in [400, 401, 403, 404, 410, 413, 422] {
            assert!(permanent_status(status), "{status}");
        }
        for status in [301, 302, 307, 408, 429, 500, 502, 503] {
            assert!(!permanent_status(status), "{status}");
        }
    }
}
