//! Webhooks: our own versioned JSON, the Alertmanager webhook shape (so existing
//! receivers work unchanged), Slack/Mattermost, or a user template; optional bearer token
//! and HMAC-SHA256 signature of the body.

use super::{HttpRequest, Notifier, NotifierTemplates, WebhookConfig, WebhookFormat};
use crate::secret::SecretRef;
use crate::text::rfc3339;
use crate::vocab::{Notice, Notification};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Renders the request. Without `secrets`, secret header values are placeholders (a dry
/// run), so nothing secret is read.
pub(super) fn render(
    notifier: &Notifier,
    cfg: &WebhookConfig,
    n: &Notification,
    templates: &NotifierTemplates,
    secrets: bool,
) -> Result<HttpRequest, String> {
    let body = match cfg.format {
        WebhookFormat::Hapwatch => serde_json::to_vec(&hapwatch_payload(n, &notifier.name)),
        WebhookFormat::Alertmanager => serde_json::to_vec(&alertmanager_payload(
            n,
            &notifier.name,
            cfg.external_url.as_deref().unwrap_or(""),
        )),
        WebhookFormat::Slack => serde_json::to_vec(&chat_payload(n, false)),
        WebhookFormat::Mattermost => serde_json::to_vec(&chat_payload(n, true)),
        WebhookFormat::Template => Ok(templates.render(&notifier.name, "template", n).into_bytes()),
    }
    .map_err(|e| format!("cannot encode the body: {e}"))?;
    request(cfg, body, secrets)
}

/// The request of a webhook notifier for `body`: its method, URL, `Content-Type`, headers,
/// bearer token and HMAC signature of the body. Alerts and reports both go through here.
pub(super) fn request(
    cfg: &WebhookConfig,
    body: Vec<u8>,
    secrets: bool,
) -> Result<HttpRequest, String> {
    let mut headers: Vec<(String, String, bool)> =
        vec![("Content-Type".into(), cfg.content_type.clone(), false)];
    let reveal = |secret: &SecretRef| super::reveal(secret, secrets);
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
    let mut payload = json!({
        "version": "1",
        "receiver": receiver,
        // Like Alertmanager's: firing while anything of the group fires, so that a
        // receiver that closes an incident on "resolved" does not close it early.
        "status": if n.firing.is_empty() && n.still_firing.is_empty() { "resolved" } else { "firing" },
        "group_key": n.group_key,
        "group_labels": n.group_labels,
        "common_labels": common_labels,
        "common_annotations": common_annotations,
        "digest": n.digest,
        "subject": crate::message::subject(n),
        "text": crate::message::body(n),
        "firing": n.firing.iter().map(notice_json).collect::<Vec<_>>(),
        "resolved": n.resolved.iter().map(notice_json).collect::<Vec<_>>(),
        "still_firing": n.still_firing.iter().map(notice_json).collect::<Vec<_>>(),
    });
    // Only when the still-firing list was capped: payloads stay as they were otherwise.
    if n.still_firing_more > 0 {
        payload["still_firing_more"] = n.still_firing_more.into();
    }
    payload
}

/// Alertmanager's webhook payload (version 4), as Alertmanager itself posts it for a
/// group: every alert of the group that fires now (news or not) and those resolved in this
/// run, sorted as Alertmanager sorts them, `status` firing while any of them fires,
/// common labels and annotations over all of them, and its `groupKey` form (the root
/// route's `{}`, then the group labels).
pub fn alertmanager_payload(n: &Notification, receiver: &str, external_url: &str) -> Value {
    let mut alerts: Vec<(&Notice, &str)> = n
        .firing
        .iter()
        .chain(&n.still_firing)
        .map(|a| (a, "firing"))
        .chain(n.resolved.iter().map(|a| (a, "resolved")))
        .collect();
    // Alertmanager's `AlertSlice` order: fewer labels first, then by label values.
    alerts.sort_by(|(a, _), (b, _)| {
        a.labels
            .len()
            .cmp(&b.labels.len())
            .then_with(|| a.labels.cmp(&b.labels))
    });
    let all: Vec<&Notice> = alerts.iter().map(|(a, _)| *a).collect();
    let (common_labels, common_annotations) = common_of(&all);
    let alerts: Vec<Value> = alerts
        .iter()
        .map(|(notice, status)| {
            json!({
                "status": status,
                "labels": notice.labels,
                "annotations": notice.annotations,
                "startsAt": rfc3339(notice.starts_at),
                "endsAt": notice.ends_at.map_or_else(|| "0001-01-01T00:00:00Z".to_string(), rfc3339),
                "generatorURL": notice.generator_url.as_deref().unwrap_or(""),
                "fingerprint": notice.fingerprint,
            })
        })
        .collect();
    let firing = !n.firing.is_empty() || !n.still_firing.is_empty();
    json!({
        "version": "4",
        "groupKey": format!("{{}}:{}", am_labels(&n.group_labels)),
        // Alertmanager's own count of alerts left out of `alerts` (its `max_alerts`).
        "truncatedAlerts": n.still_firing_more,
        "status": if firing { "firing" } else { "resolved" },
        "receiver": receiver,
        "groupLabels": n.group_labels,
        "commonLabels": common_labels,
        "commonAnnotations": common_annotations,
        "externalURL": external_url,
        "alerts": alerts,
    })
}

/// `{alertname="ServerDown", source="lb1"}`: a label set as Alertmanager prints it
/// (Prometheus' `LabelSet.String()`).
fn am_labels(labels: &crate::alert::Labels) -> String {
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", inner.join(", "))
}

/// Labels and annotations shared by every alert of the notification.
fn common(n: &Notification) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let all: Vec<&Notice> = n.firing.iter().chain(&n.resolved).collect();
    common_of(&all)
}

fn common_of(all: &[&Notice]) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
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

/// Slack's colour for an alerting message: red while anything of the group fires, green
/// once all of it is resolved.
const RED: &str = "#d50200";
const GREEN: &str = "#2eb886";

/// Slack / Mattermost: one attachment (its title is bold in both, its colour bar says the
/// status), the subject as title and fallback, the listing as text. Everything in it comes
/// from HAProxy, labels and annotations, so all of it is escaped; the only markup is
/// hapwatch's own (Mattermost's code fence).
fn chat_payload(n: &Notification, mattermost: bool) -> Value {
    let firing = !n.firing.is_empty() || !n.still_firing.is_empty();
    chat(
        &crate::message::subject(n),
        &crate::message::body(n),
        if firing { RED } else { GREEN },
        mattermost,
    )
}

/// A Slack / Mattermost message: `subject` as title and fallback, `body` as text, `color`
/// as its bar (see [`chat_payload`]); also how a report is posted to a chat.
pub(super) fn chat(subject: &str, body: &str, color: &str, mattermost: bool) -> Value {
    // The fallback is plain text (notifications, simple clients): Mattermost shows it as
    // is, so only mentions are defused there; Slack wants its escaping everywhere.
    let (title, text, fallback) = if mattermost {
        (
            mattermost_inline(subject),
            mattermost_block(body),
            subject.replace('@', "@\u{2060}"),
        )
    } else {
        let title = slack_escape(subject);
        (title.clone(), slack_escape(body), title)
    };
    json!({
        "attachments": [{
            "fallback": fallback,
            "color": color,
            "title": title,
            "text": text,
        }],
    })
}

/// Slack's escaping of message text: `&`, `<` and `>` become `&amp;`, `&lt;`, `&gt;`, so
/// that `<!channel>` or `<https://…|click>` in a value is shown, not acted on.
pub fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A one-line value for Mattermost outside a code block: Slack's escaping (Mattermost
/// renders the entities), markdown punctuation backslash-escaped, and a word joiner
/// (U+2060) after `@` so that `@channel` or `@someone` is no mention.
fn mattermost_inline(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in slack_escape(text).chars() {
        match c {
            '@' => out.push_str("@\u{2060}"),
            '\\' | '`' | '*' | '_' | '[' | ']' | '(' | ')' | '#' | '~' | '|' | '!' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// `text` as a Mattermost code block: nothing in it is markdown, a link or a mention. The
/// fence is longer than any run of backticks inside, so the text cannot close it.
fn mattermost_block(text: &str) -> String {
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest.max(2) + 1);
    format!("{fence}\n{}\n{fence}", text.trim_end_matches('\n'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slack_escapes_only_what_slack_acts_on() {
        assert_eq!(
            slack_escape("<!channel> & <https://example.net|click>"),
            "&lt;!channel&gt; &amp; &lt;https://example.net|click&gt;"
        );
    }

    #[test]
    fn mattermost_values_cannot_mention_link_or_close_the_block() {
        let inline = mattermost_inline("@channel [click](https://example.net)");
        assert!(!inline.contains("@channel"), "{inline}");
        assert!(!inline.contains("[click]("), "{inline}");
        let block = mattermost_block("a\n````\nb\n");
        assert_eq!(block, "`````\na\n````\nb\n`````");
        assert_eq!(mattermost_block("x"), "```\nx\n```");
    }

    #[test]
    fn group_keys_are_written_like_alertmanager() {
        let labels: crate::alert::Labels = [("alertname", "ServerDown"), ("source", "lb1")]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into();
        assert_eq!(
            am_labels(&labels),
            r#"{alertname="ServerDown", source="lb1"}"#
        );
    }
}
