//! Prometheus Alertmanager (`POST /api/v2/alerts`). Every firing alert is re-sent every
//! run with `endsAt` a few run intervals ahead, and a resolved one once with `endsAt` =
//! its resolve time; Alertmanager then groups, routes, inhibits and deduplicates (also
//! across an HA pair of hapwatch nodes, since both compute the same labels).
//!
//! Alertmanager needs only the latest state of each alert, so the outbox keeps **one**
//! pending push per Alertmanager notifier with one entry per alert (latest wins, see
//! [`merge`]): an outage of any length costs one entry per alert, not one payload per run.
//! Times are kept as Unix seconds and turned into `startsAt`/`endsAt` when the push is
//! sent ([`render`]), so a push that waited in the outbox never carries a firing alert
//! whose `endsAt` has passed, and a clock that stepped back cannot produce `startsAt`
//! after `endsAt` (which Alertmanager rejects with 400).

use super::{AmConfig, HttpRequest};
use crate::alert::Labels;
use crate::secret::SecretRef;
use crate::text::rfc3339;
use crate::vocab::AmAlert;
use serde_json::json;
use std::collections::HashSet;

/// Folds a newer push into a pending one: the newer push's alerts, plus the pending
/// recoveries it does not mention (a recovery must still be told). A pending *firing*
/// alert the newer push leaves out is dropped: the newer push is the current truth (no
/// longer routed there, or forgotten), and Alertmanager lets it lapse at its `endsAt`
/// as it would have without the outage. One entry per alert: bounded by the alerts the
/// state knows, however many runs the push waits.
pub fn merge(pending: Vec<AmAlert>, newer: Vec<AmAlert>) -> Vec<AmAlert> {
    let newer_keys: HashSet<&Labels> = newer.iter().map(|a| &a.labels).collect();
    let kept: Vec<AmAlert> = pending
        .into_iter()
        .filter(|a| a.resolved_at.is_some() && !newer_keys.contains(&a.labels))
        .collect();
    kept.into_iter().chain(newer).collect()
}

/// The request for `alerts`, with their times as of `now`: a firing alert ends
/// `ends_ahead` seconds from now; a resolved one at its resolve time. Times never lie
/// after `now` (a clock that stepped back makes them "now"), and `endsAt` is never before
/// `startsAt`.
///
/// Without `secrets`, the `Authorization` value is left out (a dry run), so nothing secret
/// is read.
pub(super) fn render(
    cfg: &AmConfig,
    alerts: &[AmAlert],
    ends_ahead: f64,
    now: f64,
    secrets: bool,
) -> Result<HttpRequest, String> {
    let mut headers = vec![("Content-Type".into(), "application/json".into(), false)];
    let reveal = |secret: &SecretRef| super::reveal(secret, secrets);
    if let (Some(user), Some(password)) = (&cfg.username, &cfg.password) {
        use base64::Engine;
        let token = base64::engine::general_purpose::STANDARD
            .encode(format!("{user}:{}", reveal(password)?));
        headers.push(("Authorization".into(), format!("Basic {token}"), true));
    }
    if let Some(token) = &cfg.bearer_token {
        headers.push((
            "Authorization".into(),
            format!("Bearer {}", reveal(token)?),
            true,
        ));
    }
    let body: Vec<serde_json::Value> = alerts
        .iter()
        .map(|a| {
            let starts = a.starts_at.min(now);
            let ends = match a.resolved_at {
                None => now + ends_ahead,
                Some(at) => at.min(now).max(starts),
            };
            let mut alert = json!({
                "labels": a.labels,
                "annotations": a.annotations,
                "startsAt": rfc3339(starts),
                "endsAt": rfc3339(ends),
            });
            if let Some(url) = &a.generator_url {
                alert["generatorURL"] = json!(url);
            }
            alert
        })
        .collect();
    Ok(HttpRequest {
        method: "POST".into(),
        urls: cfg
            .urls
            .iter()
            .map(|u| format!("{}/api/v2/alerts", u.trim_end_matches('/')))
            .collect(),
        headers,
        body: serde_json::to_vec(&body).map_err(|e| format!("cannot encode alerts: {e}"))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn alert(server: &str, starts_at: f64, resolved_at: Option<f64>) -> AmAlert {
        AmAlert {
            labels: [("server".to_string(), server.to_string())].into(),
            annotations: BTreeMap::new(),
            starts_at,
            resolved_at,
            generator_url: None,
        }
    }

    #[test]
    fn merge_keeps_one_entry_per_alert_and_pending_recoveries() {
        let pending = vec![
            alert("a", 0.0, None),
            alert("b", 0.0, Some(60.0)),
            alert("c", 0.0, None),
        ];
        let newer = vec![alert("a", 0.0, None), alert("c", 0.0, Some(120.0))];
        let merged = merge(pending, newer.clone());
        assert_eq!(merged.len(), 3);
        assert_eq!(merged[0], alert("b", 0.0, Some(60.0)));
        assert_eq!(&merged[1..], &newer[..]);
        // Again and again: still one entry per alert.
        let again = merge(merged.clone(), newer.clone());
        assert_eq!(again, merged);
    }

    #[test]
    fn legacy_outbox_alerts_still_load() {
        let legacy: AmAlert = serde_json::from_str(
            r#"{"labels":{"server":"a"},"annotations":{},"startsAt":"2027-01-15T08:00:00.000Z","endsAt":"2027-01-15T08:04:00.000Z"}"#,
        )
        .unwrap();
        assert_eq!(legacy.starts_at, 1_800_000_000.0);
        assert_eq!(legacy.resolved_at, Some(1_800_000_240.0));
        let current = serde_json::to_string(&legacy).unwrap();
        assert_eq!(serde_json::from_str::<AmAlert>(&current).unwrap(), legacy);
    }

    #[test]
    fn times_are_computed_at_send_time_and_never_after_now() {
        let cfg = AmConfig {
            urls: vec!["http://127.0.0.1:9".into()],
            username: None,
            password: None,
            bearer_token: None,
            ca_file: None,
            insecure: false,
            watchdog: false,
            follow_only_if: false,
        };
        // Queued a day "ahead" (the clock stepped back since).
        let day = 86_400.0;
        let now = 1_800_000_000.0;
        let alerts = [
            alert("a", now + day, None),
            alert("b", now + day, Some(now + day + 60.0)),
        ];
        let request = render(&cfg, &alerts, 240.0, now, true).unwrap();
        let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(body[0]["startsAt"], rfc3339(now));
        assert_eq!(body[0]["endsAt"], rfc3339(now + 240.0));
        assert_eq!(body[1]["startsAt"], rfc3339(now));
        assert_eq!(body[1]["endsAt"], rfc3339(now));
    }
}
