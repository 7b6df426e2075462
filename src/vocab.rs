//! The shared vocabulary of the stages: a notification and its notices (what the engine
//! decides to announce), a delivery's payload, an outbox item (what the state keeps until
//! it is sent), and an alert as queued for Alertmanager. Labels and fingerprints are in
//! [`crate::alert`]. These are plain data: the engine produces them, `notify` renders and
//! sends them, `state` stores them, without any of those importing another for its types.

use crate::alert::{Fingerprint, Labels, Value};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A notification to send: a group of alerts that started firing (or fire again after
/// `repeat_interval`) or resolved in this run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// `{alertname="ServerDown",source="lb1"}`: the group's identity, stable across runs.
    pub group_key: String,
    /// The labels the group is formed on (`group_by`).
    pub group_labels: Labels,
    /// True for the digest that collects groups beyond `max_notifications_per_run`.
    pub digest: bool,
    /// Notifier names from the alerts' rules (empty: the default route).
    pub receivers: Vec<String>,
    /// Alerts firing (new, or repeated).
    pub firing: Vec<Notice>,
    /// Alerts resolved.
    pub resolved: Vec<Notice>,
    /// Alerts of the same group that were announced before and fire still: not news, but
    /// a notification about part of a group says what else is down (and Alertmanager's
    /// webhook format lists the whole group, as Alertmanager does).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub still_firing: Vec<Notice>,
    /// How many more alerts of the group fire still than `still_firing` lists: the list is
    /// capped ([`STILL_FIRING_LISTED`]) because every queued notification keeps its own
    /// copy, and a large group during a notifier outage would otherwise grow the state by
    /// megabytes per run.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub still_firing_more: usize,
    /// Unix time of the run that planned it.
    pub created_at: f64,
}

/// The most still-firing alerts a notification lists; the rest are counted.
pub const STILL_FIRING_LISTED: usize = 50;

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// One alert inside a notification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    /// Identity (16 hex digits, Alertmanager-compatible).
    pub fingerprint: String,
    /// Labels.
    pub labels: Labels,
    /// Rendered summary / description.
    pub annotations: BTreeMap<String, String>,
    /// The rule's value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    /// When it started firing.
    pub starts_at: f64,
    /// When it resolved (resolved notices only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<f64>,
    /// True when this re-announces a problem that lasts (`repeat_interval`).
    #[serde(default)]
    pub repeat: bool,
    /// The [`Notification::id`] of the notification that first announced this episode
    /// (its incident's thread), for repeats and recoveries; `None` for a first
    /// announcement, which starts the thread.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread: Option<String>,
    /// The route (`[[route]]` id; empty: the root or a rule's `notify`) this notice goes
    /// out on: each route threads its own mails. Only for the run that plans it.
    #[serde(skip)]
    pub route: String,
    /// A page about it (its source's `link`, else its stats page): Alertmanager's
    /// `generatorURL`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator_url: Option<String>,
}

impl Notification {
    /// A stable id for the group, for webhook group keys.
    pub fn group_id(&self) -> String {
        let labels: Labels = [("group".to_string(), self.group_key.clone())].into();
        Fingerprint::of(&labels).to_string()
    }

    /// This notification's own id (16 hex digits): its group and the run that planned
    /// it. Mail uses it as the Message-ID, and later notices of the same incident refer
    /// to it ([`Notice::thread`]).
    pub fn id(&self) -> String {
        let labels: Labels = [
            ("group".to_string(), self.group_key.clone()),
            ("at".to_string(), format!("{:.3}", self.created_at)),
        ]
        .into();
        Fingerprint::of(&labels).to_string()
    }

    /// The threads (notification ids) this notification continues: those of its repeats
    /// and recoveries, each once, in order.
    pub fn threads(&self) -> Vec<&str> {
        let mut threads: Vec<&str> = Vec::new();
        for notice in self.firing.iter().chain(&self.resolved) {
            if let Some(t) = notice.thread.as_deref() {
                if !threads.contains(&t) {
                    threads.push(t);
                }
            }
        }
        threads
    }
}

/// What a delivery carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Payload {
    /// A grouped notification (mail, webhook).
    Notification(Notification),
    /// Alerts for Alertmanager's API: one entry per alert, the latest state of each.
    Alertmanager {
        /// The alerts.
        alerts: Vec<AmAlert>,
        /// How far after the time it is sent a firing alert's `endsAt` lies (four run
        /// intervals), in seconds.
        #[serde(default = "default_ends_ahead")]
        ends_ahead: f64,
    },
}

fn default_ends_ahead() -> f64 {
    240.0
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
    /// Updated by this run (its Alertmanager push merged into this pending one): if it
    /// still waits for its backoff, the run says so. Not saved.
    #[serde(skip)]
    pub refreshed: bool,
}

/// One alert queued for Alertmanager.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "StoredAlert")]
pub struct AmAlert {
    /// Identity.
    pub labels: Labels,
    /// Summary, description, status.
    pub annotations: BTreeMap<String, String>,
    /// Unix time it started firing.
    pub starts_at: f64,
    /// Unix time it resolved; `None` while it fires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<f64>,
    /// A page about it (`generatorURL`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator_url: Option<String>,
}

/// An alert as the outbox holds it: this version's form, or the one earlier versions
/// wrote (the RFC 3339 times as they were to be sent), so that an upgrade keeps a pending
/// push instead of finding the state file unreadable.
#[derive(Deserialize)]
#[serde(untagged)]
enum StoredAlert {
    Current {
        labels: Labels,
        #[serde(default)]
        annotations: BTreeMap<String, String>,
        starts_at: f64,
        #[serde(default)]
        resolved_at: Option<f64>,
        #[serde(default)]
        generator_url: Option<String>,
    },
    Legacy {
        labels: Labels,
        #[serde(default)]
        annotations: BTreeMap<String, String>,
        #[serde(rename = "startsAt")]
        starts_at: String,
        #[serde(rename = "endsAt")]
        ends_at: String,
    },
}

impl From<StoredAlert> for AmAlert {
    fn from(stored: StoredAlert) -> AmAlert {
        match stored {
            StoredAlert::Current {
                labels,
                annotations,
                starts_at,
                resolved_at,
                generator_url,
            } => AmAlert {
                labels,
                annotations,
                starts_at,
                resolved_at,
                generator_url,
            },
            // The old form does not say whether the alert fired or resolved. Ending it
            // at its old `endsAt` is what Alertmanager did with it anyway when that time
            // passed; an alert still firing is in the next run's push, which replaces
            // this entry (`merge`).
            StoredAlert::Legacy {
                labels,
                annotations,
                starts_at,
                ends_at,
            } => {
                let unix = |text: &str| {
                    chrono::DateTime::parse_from_rfc3339(text)
                        .map_or(0.0, |t| t.timestamp_millis() as f64 / 1000.0)
                };
                let starts_at = unix(&starts_at);
                AmAlert {
                    labels,
                    annotations,
                    starts_at,
                    resolved_at: Some(unix(&ends_at).max(starts_at)),
                    generator_url: None,
                }
            }
        }
    }
}
