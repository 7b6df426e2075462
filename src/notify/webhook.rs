//! Webhooks: our own versioned JSON, the Alertmanager webhook shape (so existing
//! receivers work unchanged), Slack/Mattermost, or a user template; optional bearer token
//! and HMAC-SHA256 signature of the body.

use super::{check_url, HttpRequest, Notifier, RawNotifier};
use crate::engine::{Notice, Notification};
use crate::message::rfc3339;
use crate::secret::SecretRef;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Body formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookFormat {
    /// hapwatch's JSON, `"version": "1"` (documented in the README).
    Hapwatch,
    /// Alertmanager's webhook payload, `"version": "4"`.
    Alertmanager,
    /// `{"text": …}` for Slack / Mattermost incoming webhooks.
    Slack,
    /// The `template` key, rendered.
    Template,
}

/// `type = "webhook"`.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Target.
    pub url: String,
    /// `POST` (default) or `PUT`.
    pub method: String,
    /// Extra headers. Their values are secrets (an API key, an `Authorization`): a
    /// secret reference, or inline in a private config only; dry runs redact them.
    pub headers: BTreeMap<String, SecretRef>,
    /// `Authorization: Bearer …`.
    pub bearer_token: Option<SecretRef>,
    /// HMAC-SHA256 key for the signature header.
    pub secret: Option<SecretRef>,
    /// Signature header name (default `X-Hapwatch-Signature`); value `sha256=<hex>`.
    pub signature_header: String,
    /// Body format.
    pub format: WebhookFormat,
    /// Body template for `format = "template"`.
    pub template: Option<String>,
    /// `Content-Type` (default `application/json`).
    pub content_type: String,
    /// PEM CA bundle to trust.
    pub ca_file: Option<PathBuf>,
    /// Skip certificate verification.
    pub insecure: bool,
}

impl WebhookConfig {
    pub(super) fn build(
        raw: &RawNotifier,
        bearer_token: Option<SecretRef>,
        secret: Option<SecretRef>,
        ca_file: Option<PathBuf>,
        insecure: bool,
        private: bool,
    ) -> Result<WebhookConfig, String> {
        let url = raw.url.clone().ok_or("needs `url`")?;
        check_url(&url)?;
        let format = match raw.format.as_deref() {
            None | Some("hapwatch") => WebhookFormat::Hapwatch,
            Some("alertmanager") => WebhookFormat::Alertmanager,
            Some("slack") => WebhookFormat::Slack,
            Some("template") => WebhookFormat::Template,
            Some(other) => {
                return Err(format!(
                "format = {other:?}: use \"hapwatch\", \"alertmanager\", \"slack\" or \"template\""
            ))
            }
        };
        if (format == WebhookFormat::Template) != raw.template.is_some() {
            return Err("format = \"template\" and `template` go together".into());
        }
        let method = raw
            .method
            .clone()
            .unwrap_or_else(|| "POST".into())
            .to_ascii_uppercase();
        if !matches!(method.as_str(), "POST" | "PUT" | "PATCH") {
            return Err(format!("method = {method:?}: use POST, PUT or PATCH"));
        }
        for (name, value) in raw.headers.iter().flatten() {
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                || value.contains(['\r', '\n'])
            {
                return Err(format!("header {name:?}: a name is letters, digits and dashes, and a value is one line"));
            }
        }
        let mut headers = BTreeMap::new();
        for (name, value) in raw.headers.iter().flatten() {
            let value = SecretRef::from_value(value);
            if matches!(value, SecretRef::Inline(_)) && !private {
                return Err(format!(
                    "header {name:?}: an inline header value in a config that group or others can read \
                     (header values are treated as secrets); use {name:?} = \"env:NAME\" or \"credential:NAME\", \
                     or make the config mode 600"
                ));
            }
            headers.insert(name.clone(), value);
        }
        Ok(WebhookConfig {
            url,
            method,
            headers,
            bearer_token,
            secret,
            signature_header: raw
                .signature_header
                .clone()
                .unwrap_or_else(|| "X-Hapwatch-Signature".into()),
            format,
            template: raw.template.clone(),
            content_type: raw
                .content_type
                .clone()
                .unwrap_or_else(|| "application/json".into()),
            ca_file,
            insecure,
        })
    }
}

/// Renders the request. Without `secrets`, secret header values are placeholders (a dry
/// run), so nothing secret is read.
pub(super) fn render(
    notifier: &Notifier,
    cfg: &WebhookConfig,
    n: &Notification,
    templates: &super::deliver::NotifierTemplates,
    secrets: bool,
) -> Result<HttpRequest, String> {
    let body = match cfg.format {
        WebhookFormat::Hapwatch => serde_json::to_vec(&hapwatch_payload(n, &notifier.name)),
        WebhookFormat::Alertmanager => serde_json::to_vec(&alertmanager_payload(n, &notifier.name)),
        WebhookFormat::Slack => serde_json::to_vec(&json!({
            "text": format!("*{}*\n{}", crate::message::subject(n), crate::message::body(n)),
        })),
        WebhookFormat::Template => Ok(templates.render(&notifier.name, "template", n).into_bytes()),
    }
    .map_err(|e| format!("cannot encode the body: {e}"))?;
    let mut headers: Vec<(String, String, bool)> =
        vec![("Content-Type".into(), cfg.content_type.clone(), false)];
    let reveal = |secret: &SecretRef| -> Result<String, String> {
        if secrets {
            secret
                .resolve()
                .map(|s| s.expose().to_string())
                .map_err(|e| e.to_string())
        } else {
            Ok(String::new())
        }
    };
    for (name, value) in &cfg.headers {
        headers.push((name.clone(), reveal(value)?, true));
    }
    if let Some(token) = &cfg.bearer_token {
        headers.push((
            "Authorization".into(),
            format!("Bearer {}", reveal(token)?),
            true,
        ));
    }
    if let Some(key) = &cfg.secret {
        let key = reveal(key)?;
        let tag = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key.as_bytes()),
            &body,
        );
        headers.push((
            cfg.signature_header.clone(),
            format!("sha256={}", hex(tag.as_ref())),
            true,
        ));
    }
    Ok(HttpRequest {
        method: cfg.method.clone(),
        urls: vec![cfg.url.clone()],
        headers,
        body,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn notice_json(notice: &Notice) -> Value {
    json!({
        "fingerprint": notice.fingerprint,
        "labels": notice.labels,
        "annotations": notice.annotations,
        "value": notice.value,
        "starts_at": rfc3339(notice.starts_at),
        "ends_at": notice.ends_at.map(rfc3339),
        "repeat": notice.repeat,
    })
}

/// hapwatch's webhook JSON, version 1. Also the variables of notification templates.
pub fn hapwatch_payload(n: &Notification, receiver: &str) -> Value {
    let (common_labels, common_annotations) = common(n);
    json!({
        "version": "1",
        "receiver": receiver,
        "status": if n.firing.is_empty() { "resolved" } else { "firing" },
        "group_key": n.group_key,
        "group_labels": n.group_labels,
        "common_labels": common_labels,
        "common_annotations": common_annotations,
        "digest": n.digest,
        "subject": crate::message::subject(n),
        "text": crate::message::body(n),
        "firing": n.firing.iter().map(notice_json).collect::<Vec<_>>(),
        "resolved": n.resolved.iter().map(notice_json).collect::<Vec<_>>(),
    })
}

/// Alertmanager's webhook payload (version 4), as its receivers expect it.
pub fn alertmanager_payload(n: &Notification, receiver: &str) -> Value {
    let (common_labels, common_annotations) = common(n);
    let alert = |notice: &Notice, status: &str| {
        json!({
            "status": status,
            "labels": notice.labels,
            "annotations": notice.annotations,
            "startsAt": rfc3339(notice.starts_at),
            "endsAt": notice.ends_at.map_or_else(|| "0001-01-01T00:00:00Z".to_string(), rfc3339),
            "generatorURL": "",
            "fingerprint": notice.fingerprint,
        })
    };
    let alerts: Vec<Value> = n
        .firing
        .iter()
        .map(|a| alert(a, "firing"))
        .chain(n.resolved.iter().map(|a| alert(a, "resolved")))
        .collect();
    json!({
        "version": "4",
        "groupKey": n.group_key,
        "truncatedAlerts": 0,
        "status": if n.firing.is_empty() { "resolved" } else { "firing" },
        "receiver": receiver,
        "groupLabels": n.group_labels,
        "commonLabels": common_labels,
        "commonAnnotations": common_annotations,
        "externalURL": "",
        "alerts": alerts,
    })
}

/// Labels and annotations shared by every alert of the notification.
fn common(n: &Notification) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let all: Vec<&Notice> = n.firing.iter().chain(&n.resolved).collect();
    let shared = |pick: fn(&Notice) -> &BTreeMap<String, String>| -> BTreeMap<String, String> {
        let Some(first) = all.first() else {
            return BTreeMap::new();
        };
        pick(first)
            .iter()
            .filter(|(k, v)| all.iter().all(|a| pick(a).get(*k) == Some(*v)))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    (shared(|a| &a.labels), shared(|a| &a.annotations))
}
