//! The stats page (`stats uri`) over HTTP or HTTPS, as CSV (`;csv`).
//!
//! The client is built per fetch and only for `url` sources, so runs that read sockets
//! never pay for TLS set-up.

use super::{split_reply, RawReply, SourceError, MAX_REPLY_BYTES};
use crate::config::HttpEndpoint;
use base64::Engine;
use std::time::Duration;

/// Longest body excerpt quoted in an error.
const EXCERPT: usize = 200;

pub(super) fn fetch(endpoint: &HttpEndpoint, timeout: Duration) -> Result<RawReply, SourceError> {
    let url = csv_url(&endpoint.url);
    let agent = crate::http::agent(timeout, endpoint.ca_file.as_deref(), endpoint.insecure)
        .map_err(|reason| SourceError::Connect {
            target: url.clone(),
            reason,
        })?;
    let mut request = agent.get(&url);
    if let Some(user) = &endpoint.username {
        let password = match &endpoint.password {
            Some(secret) => secret.resolve()?,
            None => crate::secret::SecretRef::Inline(String::new()).resolve()?,
        };
        let token = base64::engine::general_purpose::STANDARD
            .encode(format!("{user}:{}", password.expose()));
        request = request.header("Authorization", format!("Basic {token}"));
    }
    let mut response = request
        .call()
        .map_err(|e| request_error(&url, e, timeout))?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_REPLY_BYTES)
        .read_to_vec()
        .map_err(|e| request_error(&url, e, timeout))?;
    match status {
        200 => split_reply(&url, body, false),
        401 => Err(SourceError::AuthFailed { url }),
        _ => Err(SourceError::Http {
            url,
            status,
            excerpt: crate::http::excerpt(&body, EXCERPT),
        }),
    }
}

/// `https://lb1:8404/stats` → `https://lb1:8404/stats;csv` (unchanged if already there).
fn csv_url(url: &str) -> String {
    if url.contains(";csv") {
        url.to_string()
    } else {
        format!("{url};csv")
    }
}

fn request_error(url: &str, err: ureq::Error, timeout: Duration) -> SourceError {
    match err {
        ureq::Error::Timeout(_) => SourceError::Timeout {
            target: url.to_string(),
            timeout,
        },
        ureq::Error::BodyExceedsLimit(_) => SourceError::TooLarge {
            target: url.to_string(),
        },
        ureq::Error::Io(e) if e.kind() == std::io::ErrorKind::TimedOut => SourceError::Timeout {
            target: url.to_string(),
            timeout,
        },
        other => SourceError::Connect {
            target: url.to_string(),
            reason: crate::http::explain_tls(other.to_string()),
        },
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn csv_is_appended_once() {
        assert_eq!(super::csv_url("http://h/stats"), "http://h/stats;csv");
        assert_eq!(super::csv_url("http://h/stats;csv"), "http://h/stats;csv");
    }
}
