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
    let pinned = match ca_file {
        Some(path) => {
            let certs = load_certs(path)?;
            tls = tls.root_certs(RootCerts::new_with_certs(&certs));
            // With verification on, the ca_file's own certificates are also pinned (see
            // `tls`): ureq's TLS step is replaced by one that accepts them as they are.
            if insecure {
                None
            } else {
                let der = certs
                    .iter()
                    .map(|c| c.der().to_vec().into())
                    .collect::<Vec<_>>();
                Some(crate::tls::PinnedTls::new(der)?)
            }
        }
        None => None,
    };
    let config = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .timeout_connect(Some(timeout))
        .http_status_as_error(false)
        .tls_config(tls.build())
        .user_agent(concat!("hapwatch/", env!("CARGO_PKG_VERSION")))
        .build();
    Ok(match pinned {
        Some(pinned) => {
            use ureq::unversioned::transport::{ConnectProxyConnector, Connector, TcpConnector};
            let connector =
                ().chain(ConnectProxyConnector::default())
                    .chain(TcpConnector::default())
                    .chain(pinned);
            ureq::Agent::with_parts(
                config,
                connector,
                ureq::unversioned::resolver::DefaultResolver::default(),
            )
        }
        None => config.into(),
    })
}

/// The certificates of a PEM bundle, as the only trusted roots.
pub fn load_roots(path: &Path) -> Result<RootCerts, String> {
    Ok(RootCerts::new_with_certs(&load_certs(path)?))
}

/// The certificates of a PEM bundle (at least one).
fn load_certs(path: &Path) -> Result<Vec<ureq::tls::Certificate<'static>>, String> {
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
    Ok(certs)
}

/// `error` (a failed request's message), with what to do when the server's certificate
/// is a CA certificate (`CaUsedAsEndEntity`, what `openssl req -x509` makes by default)
/// that is not in `ca_file`: such a certificate is only trusted when pinned as it is.
pub fn explain_tls(error: String) -> String {
    if !error.contains("CaUsedAsEndEntity") {
        return error;
    }
    format!(
        "{error}: the server's certificate is a CA certificate (basicConstraints CA:TRUE, \
         which `openssl req -x509` sets by default) and not one of the ca_file, so it is \
         trusted only when given as it is: save it with `openssl s_client -connect HOST:PORT \
         </dev/null | openssl x509 > server.pem` (check its fingerprint) and give server.pem \
         as ca_file, or have it signed by the CA in the ca_file"
    )
}

/// Up to `limit` bytes of a body, as one line of text for an error message.
pub fn excerpt(body: &[u8], limit: usize) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(limit)]);
    crate::message::one_line(text.trim())
}
