//! Mail with lettre: STARTTLS (default), implicit TLS or plain; AUTH only over TLS unless
//! explicitly allowed.

use super::{Failure, Notifier, RawNotifier};
use crate::engine::Notification;
use crate::secret::SecretRef;
use lettre::message::header::{Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{SmtpTransport, Transport};
use std::path::PathBuf;

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// `STARTTLS` required (default).
    Starttls,
    /// Implicit TLS from the first byte (SMTPS, port 465).
    Tls,
    /// Plain text.
    None,
}

/// `type = "smtp"`.
#[derive(Debug, Clone)]
pub struct SmtpConfig {
    /// Relay host.
    pub host: String,
    /// Port (default 465 with `tls = "tls"`, else 25).
    pub port: u16,
    /// Transport security.
    pub tls: TlsMode,
    /// AUTH user.
    pub username: Option<String>,
    /// AUTH password.
    pub password: Option<SecretRef>,
    /// Sender.
    pub from: Mailbox,
    /// Recipients.
    pub to: Vec<Mailbox>,
    /// Copy recipients.
    pub cc: Vec<Mailbox>,
    /// Subject template (default: `[FIRING:3] ServerDown app-main (lb1)`).
    pub subject: Option<String>,
    /// Body template (default: the plain-text listing).
    pub body: Option<String>,
    /// PEM CA bundle to trust.
    pub ca_file: Option<PathBuf>,
    /// Skip certificate verification.
    pub insecure: bool,
}

/// A rendered mail.
#[derive(Debug, Clone)]
pub struct Mail {
    /// `From`.
    pub from: String,
    /// `To`.
    pub to: Vec<String>,
    /// `Cc`.
    pub cc: Vec<String>,
    /// `Subject`.
    pub subject: String,
    /// Plain-text body.
    pub body: String,
    /// `Message-ID`: `<hapwatch-ID@DOMAIN>`, the notification's id at the `From` domain.
    pub message_id: String,
    /// `In-Reply-To` (the first) and `References`: the Message-IDs of the mails that
    /// first announced the incidents this mail repeats or resolves (none for a mail that
    /// starts a thread), so that each incident is one thread.
    pub references: Vec<String>,
}

impl SmtpConfig {
    pub(super) fn build(
        raw: &RawNotifier,
        password: Option<SecretRef>,
        ca_file: Option<PathBuf>,
        insecure: bool,
    ) -> Result<SmtpConfig, String> {
        let host = raw
            .host
            .clone()
            .ok_or("needs `host`, e.g. host = \"127.0.0.1\"")?;
        let tls = match raw.tls.as_deref() {
            None | Some("starttls") => TlsMode::Starttls,
            Some("tls") => TlsMode::Tls,
            Some("none") => TlsMode::None,
            Some(other) => {
                return Err(format!(
                    "tls = {other:?}: use \"starttls\", \"tls\" or \"none\""
                ))
            }
        };
        if raw.username.is_some() != password.is_some() {
            return Err("AUTH needs both `username` and a password (password_file or password = \"env:NAME\")".into());
        }
        if raw.username.is_some()
            && tls == TlsMode::None
            && !raw.allow_insecure_auth.unwrap_or(false)
        {
            return Err("refusing to send the password in plain text (tls = \"none\"); use tls = \"starttls\" or \"tls\", or set allow_insecure_auth = true".into());
        }
        let mailbox = |text: &str| {
            text.parse::<Mailbox>()
                .map_err(|e| format!("invalid address {text:?}: {e}"))
        };
        let from = mailbox(
            raw.from
                .as_deref()
                .ok_or("needs `from`, e.g. from = \"hapwatch@lb1.example.net\"")?,
        )?;
        let to = raw
            .to
            .clone()
            .unwrap_or_default()
            .iter()
            .map(|t| mailbox(t))
            .collect::<Result<Vec<_>, _>>()?;
        if to.is_empty() {
            return Err("needs `to`, a list of at least one address".into());
        }
        let cc = raw
            .cc
            .clone()
            .unwrap_or_default()
            .iter()
            .map(|t| mailbox(t))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SmtpConfig {
            host,
            port: raw
                .port
                .unwrap_or(if tls == TlsMode::Tls { 465 } else { 25 }),
            tls,
            username: raw.username.clone(),
            password,
            from,
            to,
            cc,
            subject: raw.subject.clone(),
            body: raw.body.clone(),
            ca_file,
            insecure,
        })
    }
}

/// Renders `n` as a mail for notifier `notifier`.
pub(super) fn render(
    notifier: &Notifier,
    cfg: &SmtpConfig,
    n: &Notification,
    templates: &super::deliver::NotifierTemplates,
) -> Mail {
    let subject = match &cfg.subject {
        Some(_) => templates.render(&notifier.name, "subject", n),
        None => crate::message::subject(n),
    };
    let body = match &cfg.body {
        Some(_) => templates.render(&notifier.name, "body", n),
        None => crate::message::body(n),
    };
    let domain = cfg.from.email.domain().to_string();
    Mail {
        from: cfg.from.to_string(),
        to: cfg.to.iter().map(ToString::to_string).collect(),
        cc: cfg.cc.iter().map(ToString::to_string).collect(),
        // A subject is one line: nothing HAProxy reports may add a header.
        subject: crate::message::one_line(&subject),
        body,
        message_id: format!("<hapwatch-{}@{domain}>", n.id()),
        references: n
            .threads()
            .iter()
            .map(|id| format!("<hapwatch-{id}@{domain}>"))
            .collect(),
    }
}

/// Sends `mail`; the error quotes the server's reply (code and text) when there is one.
///
/// `timeout` bounds the whole session (connect, TLS, AUTH, the mail), not each read:
/// lettre only has a per-operation timeout, which a server sending one byte at a time
/// (or a silent one after DATA) can stretch far beyond it. The session runs on its own
/// thread, and is abandoned at the deadline: a silent server ends it within another
/// `timeout` (lettre's per-operation timeout is set too), a trickling one with the
/// process. Should it still complete, the mail arrives twice at worst (at least once).
pub(super) fn send(
    cfg: &SmtpConfig,
    mail: &Mail,
    timeout: std::time::Duration,
) -> Result<(), Failure> {
    let fail = Failure::transient;
    let mut builder = Message::builder()
        .from(cfg.from.clone())
        .subject(mail.subject.clone())
        .message_id(Some(mail.message_id.clone()))
        .header(lettre::message::header::ContentType::TEXT_PLAIN)
        .header(AutoSubmitted);
    if let Some(first) = mail.references.first() {
        builder = builder
            .in_reply_to(first.clone())
            .references(mail.references.join(" "));
    }
    for to in &cfg.to {
        builder = builder.to(to.clone());
    }
    for cc in &cfg.cc {
        builder = builder.cc(cc.clone());
    }
    let message = builder
        .body(mail.body.clone())
        .map_err(|e| fail(format!("cannot build the message: {e}")))?;
    let tls = match cfg.tls {
        TlsMode::None => Tls::None,
        mode => {
            let mut params = TlsParameters::builder(cfg.host.clone())
                .dangerous_accept_invalid_certs(cfg.insecure);
            if let Some(path) = &cfg.ca_file {
                let pem = std::fs::read(path)
                    .map_err(|e| fail(format!("cannot read ca_file {}: {e}", path.display())))?;
                let cert = Certificate::from_pem(&pem)
                    .map_err(|e| fail(format!("ca_file {}: {e}", path.display())))?;
                params = params.add_root_certificate(cert);
            }
            let params = params
                .build_rustls()
                .map_err(|e| fail(format!("TLS set-up: {e}")))?;
            if mode == TlsMode::Tls {
                Tls::Wrapper(params)
            } else {
                Tls::Required(params)
            }
        }
    };
    let mut transport = SmtpTransport::builder_dangerous(&cfg.host)
        .port(cfg.port)
        .tls(tls)
        .timeout(Some(timeout));
    if let (Some(user), Some(password)) = (&cfg.username, &cfg.password) {
        let password = password.resolve().map_err(|e| fail(e.to_string()))?;
        transport = transport.credentials(Credentials::new(
            user.clone(),
            password.expose().to_string(),
        ));
    }
    let transport = transport.build();
    let timed_out = || {
        fail(format!(
            "SMTP {}:{}: timed out after {} (the whole session: connect, TLS, AUTH and the mail)",
            cfg.host,
            cfg.port,
            super::deliver::seconds(timeout)
        ))
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("smtp".into())
        .spawn(move || {
            let _ = tx.send(transport.send(&message));
        })
        .map_err(|e| fail(format!("cannot start the SMTP session: {e}")))?;
    match rx.recv_timeout(timeout) {
        Ok(Ok(_)) => Ok(()),
        // lettre's own per-read timeout fired (EAGAIN or ETIMEDOUT): the same deadline.
        Ok(Err(e)) if is_timeout(&e) => Err(timed_out()),
        Ok(Err(e)) => Err(Failure {
            message: describe(&e, &cfg.host, cfg.port),
            // A 5xx reply refuses for good; a 4xx one says "later".
            permanent: e.is_permanent(),
        }),
        Err(_) => Err(timed_out()),
    }
}

/// Whether an SMTP error is a socket timeout (a read or write that waited too long).
fn is_timeout(err: &lettre::transport::smtp::Error) -> bool {
    let mut source = std::error::Error::source(err);
    while let Some(inner) = source {
        if let Some(io) = inner.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
            );
        }
        source = inner.source();
    }
    false
}

fn describe(err: &lettre::transport::smtp::Error, host: &str, port: u16) -> String {
    let mut text = format!("SMTP {host}:{port}: {err}");
    // lettre's Display already ends with its source; only add causes it does not show.
    let mut source = std::error::Error::source(err);
    while let Some(inner) = source {
        let cause = inner.to_string();
        if !text.ends_with(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
        source = inner.source();
    }
    crate::message::one_line(&text)
}

/// `Auto-Submitted: auto-generated` (RFC 3834): vacation responders must not answer.
#[derive(Clone)]
struct AutoSubmitted;

impl Header for AutoSubmitted {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Auto-Submitted")
    }

    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(AutoSubmitted)
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "auto-generated".to_string())
    }
}
