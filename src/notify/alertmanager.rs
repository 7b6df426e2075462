//! Prometheus Alertmanager (`POST /api/v2/alerts`). Every firing alert is re-sent every
//! run with `endsAt` a few run intervals ahead, and a resolved one once with `endsAt` =
//! now; Alertmanager then groups, routes, inhibits and deduplicates (also across an HA
//! pair of hapwatch nodes, since both compute the same labels).

use super::HttpRequest;
use crate::alert::Labels;
use crate::secret::SecretRef;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// `type = "alertmanager"`.
#[derive(Debug, Clone)]
pub struct AmConfig {
    /// Base URLs (`http://127.0.0.1:9093`); any one accepting the alerts is success.
    pub urls: Vec<String>,
    /// Basic-auth user (for an Alertmanager behind an authenticating proxy).
    pub username: Option<String>,
    /// Basic-auth password.
    pub password: Option<SecretRef>,
    /// `Authorization: Bearer …`.
    pub bearer_token: Option<SecretRef>,
    /// PEM CA bundle to trust.
    pub ca_file: Option<PathBuf>,
    /// Skip certificate verification.
    pub insecure: bool,
}

/// One alert as Alertmanager's API takes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AmAlert {
    /// Identity.
    pub labels: Labels,
    /// Summary, description, status.
    pub annotations: BTreeMap<String, String>,
    /// RFC 3339.
    #[serde(rename = "startsAt")]
    pub starts_at: String,
    /// RFC 3339: ahead while firing, the resolve time once resolved.
    #[serde(rename = "endsAt")]
    pub ends_at: String,
}

/// Renders the request. Without `secrets`, the `Authorization` value is left out (a dry
/// run), so nothing secret is read.
pub(super) fn render(
    cfg: &AmConfig,
    alerts: &[AmAlert],
    secrets: bool,
) -> Result<HttpRequest, String> {
    let mut headers = vec![("Content-Type".into(), "application/json".into(), false)];
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
    Ok(HttpRequest {
        method: "POST".into(),
        urls: cfg
            .urls
            .iter()
            .map(|u| format!("{}/api/v2/alerts", u.trim_end_matches('/')))
            .collect(),
        headers,
        body: serde_json::to_vec(alerts).map_err(|e| format!("cannot encode alerts: {e}"))?,
    })
}
