//! The one place HTTP clients are built (stats pages, webhooks, Alertmanager): blocking
//! ureq on rustls/ring, TLS verified against the web roots or a given CA bundle.
//!
//! Clients are built only when a URL is actually used, so a run that reads unix sockets
//! and mails nobody never sets up TLS.

use std::path::Path;
use std::time::Duration;
use ureq::tls::{parse_pem, PemItem, RootCerts, TlsConfig};

/// Builds a client with one timeout for connecting and for the whole exchange. Non-2xx
/// statuses are returned, not turned into errors, so callers can quote them.
///
/// GET redirects are followed (a stats page behind a redirect still works); ureq never
/// carries the `Authorization` header over a redirect (`RedirectAuthHeaders::Never`, its
/// default, set here explicitly), so basic-auth credentials stay with the first origin.
pub fn agent(
    timeout: Duration,
    ca_file: Option<&Path>,
    insecure: bool,
) -> Result<ureq::Agent, String> {
    Ok(builder(timeout, ca_file, insecure)?
        .redirect_auth_headers(ureq::config::RedirectAuthHeaders::Never)
        .build()
        .into())
}

/// [`agent`] for notifiers (webhooks, Alertmanager): redirects are **not** followed. A
/// followed 301/302 would turn the POST into a GET without a body (counted as delivered,
/// the notification lost) and carry custom headers and the HMAC signature to another
/// origin; the 3xx is returned instead, for the caller to report as a failure.
pub fn notifier_agent(
    timeout: Duration,
    ca_file: Option<&Path>,
    insecure: bool,
) -> Result<ureq::Agent, String> {
    Ok(builder(timeout, ca_file, insecure)?
        .max_redirects(0)
        .build()
        .into())
}

fn builder(
    timeout: Duration,
    ca_file: Option<&Path>,
    insecure: bool,
) -> Result<ureq::config::ConfigBuilder<ureq::typestate::AgentScope>, String> {
    let mut tls = TlsConfig::builder().disable_verification(insecure);
    if let Some(path) = ca_file {
        tls = tls.root_certs(load_roots(path)?);
    }
    Ok(ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .timeout_connect(Some(timeout))
        .http_status_as_error(false)
        .tls_config(tls.build())
        .user_agent(concat!("hapwatch/", env!("CARGO_PKG_VERSION"))))
}

/// The certificates of a PEM bundle, as the only trusted roots.
pub fn load_roots(path: &Path) -> Result<RootCerts, String> {
    let pem =
        std::fs::read(path).map_err(|e| format!("cannot read ca_file {}: {e}", path.display()))?;
    let certs: Vec<_> = parse_pem(&pem)
        .filter_map(|item| match item {
            Ok(PemItem::Certificate(cert)) => Some(cert),
            _ => None,
        })
        .collect();
    if certs.is_empty() {
        return Err(format!(
            "ca_file {} holds no PEM certificate",
            path.display()
        ));
    }
    Ok(RootCerts::new_with_certs(&certs))
}

/// Up to `limit` bytes of a body, as one line of text for an error message.
pub fn excerpt(body: &[u8], limit: usize) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(limit)]);
    crate::message::one_line(text.trim())
}
