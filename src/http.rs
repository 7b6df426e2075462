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
pub fn agent(
    timeout: Duration,
    ca_file: Option<&Path>,
    insecure: bool,
) -> Result<ureq::Agent, String> {
    let mut tls = TlsConfig::builder().disable_verification(insecure);
    if let Some(path) = ca_file {
        tls = tls.root_certs(load_roots(path)?);
    }
    Ok(ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .timeout_connect(Some(timeout))
        .http_status_as_error(false)
        .tls_config(tls.build())
        .user_agent(concat!("hapwatch/", env!("CARGO_PKG_VERSION")))
        .build()
        .into())
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

/// `error` (a failed request's message), with what to do when the server's certificate
/// is a CA certificate: rustls refuses one as a server's own certificate
/// (`CaUsedAsEndEntity`) even when it is the very certificate given as `ca_file`, and
/// `openssl req -x509` makes exactly that by default.
pub fn explain_tls(error: String) -> String {
    if !error.contains("CaUsedAsEndEntity") {
        return error;
    }
    format!(
        "{error}: the server's certificate is a CA certificate (basicConstraints CA:TRUE, \
         which `openssl req -x509` sets by default), and a CA certificate is refused as a \
         server's own certificate even when it is the ca_file; make the server's certificate \
         again with `openssl req -x509 -newkey rsa:2048 -nodes -keyout server.key -out \
         server.pem -days 825 -subj /CN=HOST -addext subjectAltName=DNS:HOST -addext \
         basicConstraints=critical,CA:FALSE` (IP:ADDRESS for an address) and give server.pem \
         as ca_file, or sign the server's certificate with a CA of your own and give the CA"
    )
}

/// Up to `limit` bytes of a body, as one line of text for an error message.
pub fn excerpt(body: &[u8], limit: usize) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(limit)]);
    crate::message::one_line(text.trim())
}
