//! A dead man's switch: after each run, ping a URL (healthchecks.io style), or its
//! `/fail` variant when the run had trouble, so that an operator learns when hapwatch
//! itself stops running or keeps failing.

use serde::Deserialize;
use std::time::Duration;

/// `[heartbeat]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    /// Pinged (GET) after a run that completed without trouble.
    pub url: String,
    /// Pinged after a run with trouble (default: `url` + `/fail`).
    pub fail_url: Option<String>,
    /// Budget of the ping (default 5s).
    #[serde(
        default = "default_timeout",
        deserialize_with = "crate::duration::deserialize"
    )]
    pub timeout: Duration,
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

impl Heartbeat {
    /// Checks the URLs.
    pub fn validate(&self) -> Result<(), String> {
        for url in std::iter::once(&self.url).chain(&self.fail_url) {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(format!(
                    "heartbeat url {url:?} must start with http:// or https://"
                ));
            }
        }
        Ok(())
    }

    /// Pings the success or failure URL within `limit` (its `timeout`, or what is left of
    /// the run's `run_timeout` when that is less: the ping is part of the run). `None`:
    /// the run's time is spent, and the ping is not attempted (the missed ping tells the
    /// monitoring side that the run had trouble).
    pub fn ping(&self, ok: bool, limit: Option<Duration>) -> Result<(), String> {
        let url = if ok {
            self.url.clone()
        } else {
            self.fail_url
                .clone()
                .unwrap_or_else(|| format!("{}/fail", self.url.trim_end_matches('/')))
        };
        let Some(limit) = limit else {
            return Err(format!(
                "heartbeat {url}: not pinged: the run's time budget ([alerting] run_timeout) is spent"
            ));
        };
        let agent = crate::http::agent(limit, None, false)?;
        let response = agent
            .get(&url)
            .call()
            .map_err(|e| format!("heartbeat {url}: {e}"))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!(
                "heartbeat {url}: HTTP {}",
                response.status().as_u16()
            ))
        }
    }
}
