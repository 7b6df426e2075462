//! Delivering notifications: SMTP, webhooks, Alertmanager. Each notifier renders a
//! [`Message`] (pure: also what a dry run prints) and sends it; failures go to the outbox
//! in the state file and are retried on later runs until delivered or too old. History
//! reports (`hapwatch report --send`) go through the same sending path, without outbox.

mod alertmanager;
mod deliver;
mod report;
mod smtp;
mod webhook;

// The notifiers' settings are the config's (plain data checked at load); re-exported here
// because every delivery needs them.
pub use crate::config::notifier::{
    AmConfig, Kind, Notifier, NotifierTemplates, Notifiers, Routes, SmtpConfig, TlsMode,
    WebhookConfig, WebhookFormat, DEFAULT_TIMEOUT, MAX_RETRIES,
};
pub use crate::vocab::{AmAlert, OutboxItem, Payload};
pub use deliver::{
    deliver, enqueue, notify_test, plan, render, Budget, Delivered, Failure, RuleRoute, RuleRoutes,
};
pub use report::{send_report, Report, ReportError};

use crate::secret::SecretRef;

/// A rendered message: what is sent, and what a dry run shows (secrets redacted).
#[derive(Debug, Clone)]
pub enum Message {
    /// An email.
    Mail(smtp::Mail),
    /// An HTTP request.
    Http(HttpRequest),
    /// Text for stdout.
    Text(String),
}

/// An HTTP request to send.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    /// `POST`, `PUT`.
    pub method: String,
    /// Target URLs (several for an Alertmanager cluster: any one accepting is success).
    pub urls: Vec<String>,
    /// Headers; the flag marks a secret value, shown as `[redacted]`.
    pub headers: Vec<(String, String, bool)>,
    /// The body.
    pub body: Vec<u8>,
}

/// A secret's value for a request being rendered; with `secrets` false (a dry run), an
/// empty value, so that nothing secret is read or shown.
fn reveal(secret: &SecretRef, secrets: bool) -> Result<String, String> {
    if secrets {
        secret
            .resolve()
            .map(|s| s.expose().to_string())
            .map_err(|e| e.to_string())
    } else {
        Ok(String::new())
    }
}
