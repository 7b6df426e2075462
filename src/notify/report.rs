//! `hapwatch report --send NOTIFIER`: a history report through one configured notifier,
//! by the same sending code as alerts ([`super::deliver::send_message`]: the notifier's
//! TLS, authentication, timeout and retries, secrets masked in errors).
//!
//! A report has no outbox: it is not an alert whose loss would hide a problem, and its
//! figures are computed from the history when it is sent. A report that could not be sent
//! is one stderr line and exit code 1 (cron mails that line); the next scheduled report, or
//! the operator rerunning the command, sends the period again.

use super::deliver::{send_message, Budget};
use super::{smtp, webhook, Kind, Message, Notifiers, WebhookFormat};

/// A report to send, in every form a notifier may need. The figures are computed once
/// (`crate::recap`) so that the mail's text and HTML parts and the webhook agree.
#[derive(Debug, Clone)]
pub struct Report {
    /// One line naming the period and the figures: the mail's subject, a chat's title.
    pub subject: String,
    /// The plain-text report (`hapwatch report --format text`).
    pub text: String,
    /// The self-contained HTML page (`hapwatch report --format html`).
    pub html: String,
    /// The webhook body (hapwatch's format): `{"kind": "report", …}`.
    pub json: serde_json::Value,
    /// When it was made (Unix time): its `Message-ID`.
    pub at: f64,
}

/// Why a report was not sent.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// No notifier has that name.
    #[error("no notifier named {name:?}{suggestion}; configured notifiers: {}", if names.is_empty() { "none (add a [notifier.NAME] to the config)".to_string() } else { names.join(", ") })]
    Unknown {
        /// The name given.
        name: String,
        /// ` (did you mean `x`?)` or nothing.
        suggestion: String,
        /// The configured notifiers.
        names: Vec<String>,
    },
    /// The notifier cannot carry a report.
    #[error("notifier {name} {reason}")]
    Unsuitable {
        /// The notifier.
        name: String,
        /// Why, and what to use instead.
        reason: String,
    },
    /// Sending failed (after the notifier's retries).
    #[error("notifier {name}: the report was not sent: {message}")]
    Failed {
        /// The notifier.
        name: String,
        /// What went wrong, secrets and the notifier's URL masked.
        message: String,
    },
}

impl ReportError {
    /// A mistake on the command line or in the config (nothing was attempted), rather than
    /// a delivery that failed.
    pub fn is_usage(&self) -> bool {
        !matches!(self, ReportError::Failed { .. })
    }
}

/// Sends `report` through the notifier `name` within `budget`.
pub fn send_report(
    notifiers: &Notifiers,
    name: &str,
    report: &Report,
    budget: &Budget,
) -> Result<(), ReportError> {
    let Some(notifier) = notifiers.get(name) else {
        let names: Vec<&str> = notifiers.list.iter().map(|n| n.name.as_str()).collect();
        return Err(ReportError::Unknown {
            name: name.to_string(),
            suggestion: crate::rules::expr::suggest(name, names.iter().copied()),
            names: names.iter().map(ToString::to_string).collect(),
        });
    };
    let unsuitable = |reason: &str| ReportError::Unsuitable {
        name: name.to_string(),
        reason: reason.to_string(),
    };
    let message = match &notifier.kind {
        Kind::Smtp(cfg) => Message::Mail(smtp::report_mail(name, cfg, report)),
        Kind::Webhook(cfg) => {
            let body = match cfg.format {
                WebhookFormat::Hapwatch => serde_json::to_vec(&report.json)
                    .map_err(|e| unsuitable(&format!("cannot encode the report: {e}")))?,
                WebhookFormat::Slack | WebhookFormat::Mattermost => serde_json::to_vec(
                    &webhook::chat(
                        &report.subject,
                        &report.text,
                        REPORT_COLOR,
                        cfg.format == WebhookFormat::Mattermost,
                    ),
                )
                .map_err(|e| unsuitable(&format!("cannot encode the report: {e}")))?,
                WebhookFormat::Alertmanager => return Err(unsuitable(
                    "posts Alertmanager's webhook format, which carries alerts: a report is not an alert; send it through a webhook notifier with format \"hapwatch\", \"slack\" or \"mattermost\", or an smtp notifier",
                )),
                WebhookFormat::Template => return Err(unsuitable(
                    "renders its template from an alert notification's variables, which a report does not have; send it through a webhook notifier with format \"hapwatch\", \"slack\" or \"mattermost\", or an smtp notifier",
                )),
            };
            Message::Http(webhook::request(cfg, body, true).map_err(|e| ReportError::Failed {
                name: name.to_string(),
                message: e,
            })?)
        }
        Kind::Alertmanager(_) => return Err(unsuitable(
            "is an Alertmanager: a report is not an alert (Alertmanager would show it as a firing alert and then resolve it); send it through an smtp notifier, or a webhook notifier (format \"hapwatch\", \"slack\" or \"mattermost\")",
        )),
        Kind::Stdout { .. } => Message::Text(report.text.clone()),
    };
    let failed = |message: String| {
        // A webhook's URL may itself be a secret (Slack's and Mattermost's are): the
        // notifier's name says which one failed.
        let message = match &notifier.kind {
            Kind::Webhook(cfg) => message
                .replace(&crate::secret::redact(&cfg.url), "its url")
                .replace(&cfg.url, "its url"),
            _ => message,
        };
        ReportError::Failed {
            name: name.to_string(),
            message: crate::text::one_line(&message),
        }
    };
    match send_message(notifier, &message, budget) {
        Ok(refused) if refused.is_empty() => Ok(()),
        Ok(refused) => Err(failed(format!(
            "{} (the other recipients got it)",
            refused.join("; ")
        ))),
        Err(e) if smtp::session_pending(name) => {
            // A session abandoned at its timeout may still deliver within the budget.
            match smtp::collect_abandoned(budget.deadline)
                .into_iter()
                .find(|(n, _)| n == name)
            {
                Some((_, Ok(refused))) if refused.is_empty() => Ok(()),
                Some((_, Ok(refused))) => Err(failed(format!(
                    "{} (the other recipients got it)",
                    refused.join("; ")
                ))),
                Some((_, Err(late))) => Err(failed(late.redacted().message)),
                None => Err(failed(e.message)),
            }
        }
        Err(e) => Err(failed(e.message)),
    }
}

/// The colour bar of a report in Slack / Mattermost: neither a problem's red nor a
/// recovery's green.
const REPORT_COLOR: &str = "#439fe0";
