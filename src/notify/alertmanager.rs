//! Prometheus Alertmanager (`POST /api/v2/alerts`). Every firing alert is re-sent every
//! run with `endsAt` a few run intervals ahead, and a resolved one once with `endsAt` =
//! now; Alertmanager then groups, routes, inhibits and deduplicates (also across an HA
//! pair of hapwatch nodes, since both compute the same labels).

use super::HttpRequest;
use crate::alert::Labels;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// `type = "alertmanager"`.
#[derive(Debug, Clone)]
pub struct AmConfig {
    /// Base URLs (`http://127.0.0.1:9093`); any one accepting the alerts is success.
    pub urls: Vec<String>,
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

pub(super) fn render(cfg: &AmConfig, alerts: &[AmAlert]) -> Result<HttpRequest, String> {
    Ok(HttpRequest {
        method: "POST".into(),
        urls: cfg
            .urls
            .iter()
            .map(|u| format!("{}/api/v2/alerts", u.trim_end_matches('/')))
            .collect(),
        headers: vec![("Content-Type".into(), "application/json".into(), false)],
        body: serde_json::to_vec(alerts).map_err(|e| format!("cannot encode alerts: {e}"))?,
    })
}
