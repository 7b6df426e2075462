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
    let (config, pinned) = builder(timeout, ca_file, insecure)?;
    Ok(finish(
        config
            .redirect_auth_headers(ureq::config::RedirectAuthHeaders::Never)
            .build(),
        pinned,
    ))
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
    let (config, pinned) = builder(timeout, ca_file, insecure)?;
    Ok(finish(config.max_redirects(0).build(), pinned))
}

/// The settings every client shares, and the TLS step that pins `ca_file`'s certificates
/// (when verification is on).
fn builder(
    timeout: Duration,
    ca_file: Option<&Path>,
    insecure: bool,
) -> Result<
    (
        ureq::config::ConfigBuilder<ureq::typestate::AgentScope>,
        Option<crate::tls::PinnedTls>,
    ),
    String,
> {
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
        .user_agent(concat!("hapwatch/", env!("CARGO_PKG_VERSION")));
    Ok((config, pinned))
}

/// The agent for `config`, with the pinning TLS step in place of ureq's own if any.
fn finish(config: ureq::config::Config, pinned: Option<crate::tls::PinnedTls>) -> ureq::Agent {
    match pinned {
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
    }
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

/// Up to `limit` bytes of a peer's body, as one line of text for an error message: cut at
/// a character boundary, with every secret masked ([`crate::secret::redact`]: a peer may
/// echo the request's credentials). A compressed or binary body is described, not
/// quoted.
pub fn excerpt(body: &[u8], limit: usize) -> String {
    if body.starts_with(&[0x1f, 0x8b]) {
        return format!("(gzip-compressed body, {} bytes)", body.len());
    }
    // Masked before the cut, with a margin, so that a secret straddling the cut is whole
    // when it is masked.
    let window = whole_chars(&body[..body.len().min(limit.saturating_add(1024))]);
    let text = String::from_utf8_lossy(window);
    let odd = text
        .chars()
        .filter(|&c| c == '\u{fffd}' || (c.is_control() && !matches!(c, '\n' | '\r' | '\t')))
        .count();
    if text.contains('\0') || odd * 10 > text.chars().count() {
        return format!("(binary body, {} bytes, not shown)", body.len());
    }
    let text = crate::text::one_line(crate::secret::redact(&text).trim());
    let mut cut = text.len().min(limit);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text[..cut].trim_end().to_string()
}

/// `bytes` without an incomplete UTF-8 sequence at its end (where a cut fell).
fn whole_chars(bytes: &[u8]) -> &[u8] {
    // The start of the last character is at most 3 bytes back.
    for back in 1..=bytes.len().min(4) {
        let b = bytes[bytes.len() - back];
        if b & 0xc0 == 0x80 {
            continue; // a continuation byte
        }
        let needed = match b {
            0x00..=0x7f => 1,
            0xc0..=0xdf => 2,
            0xe0..=0xef => 3,
            _ => 4,
        };
        return if needed > back {
            &bytes[..bytes.len() - back]
        } else {
            bytes
        };
    }
    bytes
}

/// A transport error as text, with what to do when its cause is a common mistake: an
/// `https://` URL pointing at a plain-HTTP port makes rustls read HTTP text as a TLS record
/// (`received corrupt message of type InvalidContentType`), which says nothing to an
/// operator.
pub fn describe_error(err: &ureq::Error) -> String {
    let text = err.to_string();
    if text.contains("InvalidContentType") || text.contains("corrupt message") {
        format!("{text}: the server does not speak TLS here (is it http:// rather than https://?)")
    } else {
        explain_tls(text)
    }
}

#[cfg(test)]
mod tests {
    use super::excerpt;

    #[test]
    fn excerpts_cut_at_a_character_boundary() {
        // 199 ASCII bytes, then a 2-byte character across the 200-byte limit.
        let body = format!("{}é and more", "a".repeat(199));
        let cut = excerpt(body.as_bytes(), 200);
        assert_eq!(cut, "a".repeat(199));
        assert!(!cut.contains('\u{fffd}'), "{cut}");
        let body = format!("{}€", "a".repeat(198));
        assert_eq!(excerpt(&body.as_bytes()[..200], 200), "a".repeat(198));
        assert_eq!(excerpt("héllo\nwörld\n".as_bytes(), 200), "héllo wörld");
    }

    #[test]
    fn compressed_and_binary_bodies_are_described() {
        let gzip = [0x1f, 0x8b, 0x08, 0x00, 0xde, 0xad, 0xbe, 0xef, 0x00, 0x03];
        assert_eq!(excerpt(&gzip, 200), "(gzip-compressed body, 10 bytes)");
        let binary: Vec<u8> = (0u8..=255).collect();
        assert_eq!(excerpt(&binary, 200), "(binary body, 256 bytes, not shown)");
        // A stray Latin-1 byte in a text page is still text.
        assert_eq!(
            excerpt(b"Service unavailable: caf\xe9 closed", 200),
            "Service unavailable: caf\u{fffd} closed"
        );
    }
}
