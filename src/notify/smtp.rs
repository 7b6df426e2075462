//! Mail with lettre: STARTTLS (default), implicit TLS or plain; AUTH only over TLS unless
//! explicitly allowed.

use super::{Failure, Notifier, NotifierTemplates, SmtpConfig, TlsMode};
use crate::vocab::Notification;
use lettre::message::header::{Header, HeaderName, HeaderValue};
use lettre::message::Message;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{SmtpTransport, Transport};

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
    /// An HTML alternative of the body (a report: `multipart/alternative`, the text first,
    /// so that a client showing text shows the same figures); alerts have none.
    pub html: Option<String>,
    /// `Message-ID`: `<hapwatch-ID@DOMAIN>`, the notification's id at the `From` domain.
    pub message_id: String,
    /// `In-Reply-To` (the first) and `References`: the Message-IDs of the mails that
    /// first announced the incidents this mail repeats or resolves (none for a mail that
    /// starts a thread), so that each incident is one thread.
    pub references: Vec<String>,
}

/// Renders `n` as a mail for notifier `notifier`.
pub(super) fn render(
    notifier: &Notifier,
    cfg: &SmtpConfig,
    n: &Notification,
    templates: &NotifierTemplates,
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
    // The notifier is part of the id: two SMTP notifiers sending the same group (one From
    // domain) must not send two mails under one Message-ID, which a receiving server or a
    // mail client takes for duplicates; each notifier threads its own mails.
    let tag = message_id_tag(&notifier.name);
    Mail {
        from: cfg.from.to_string(),
        to: cfg.to.iter().map(ToString::to_string).collect(),
        cc: cfg.cc.iter().map(ToString::to_string).collect(),
        // A subject is one line: nothing HAProxy reports may add a header.
        subject: crate::text::one_line(&subject),
        body,
        html: None,
        message_id: format!("<hapwatch-{}.{tag}@{domain}>", n.id()),
        references: n
            .threads()
            .iter()
            .map(|id| format!("<hapwatch-{id}.{tag}@{domain}>"))
            .collect(),
    }
}

/// The notifier's name as it goes into a Message-ID: as is when it is made of letters,
/// digits, `-` and `_` (what a Message-ID's left part may hold without quoting), else
/// the fingerprint of the name.
fn message_id_tag(name: &str) -> String {
    if !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        name.to_string()
    } else {
        let labels: crate::alert::Labels = [("notifier".to_string(), name.to_string())].into();
        crate::alert::Fingerprint::of(&labels).to_string()
    }
}

/// A history report as a mail: the text report and the HTML page as the two parts of a
/// `multipart/alternative` body, to the notifier's recipients. The notifier's `subject` and
/// `body` templates are not used: they render alert notifications.
pub(super) fn report_mail(name: &str, cfg: &SmtpConfig, report: &super::report::Report) -> Mail {
    let id: crate::alert::Labels = [
        ("kind".to_string(), "report".to_string()),
        ("subject".to_string(), report.subject.clone()),
        ("at".to_string(), format!("{:.3}", report.at)),
    ]
    .into();
    Mail {
        from: cfg.from.to_string(),
        to: cfg.to.iter().map(ToString::to_string).collect(),
        cc: cfg.cc.iter().map(ToString::to_string).collect(),
        subject: crate::text::one_line(&report.subject),
        body: report.text.clone(),
        html: Some(report.html.clone()),
        message_id: format!(
            "<hapwatch-report-{}.{}@{}>",
            crate::alert::Fingerprint::of(&id),
            message_id_tag(name),
            cfg.from.email.domain()
        ),
        references: Vec::new(),
    }
}

/// What one SMTP session ended with: `Ok` holds one line per recipient the server refused
/// for good while the others accepted the mail.
pub(super) type Outcome = Result<Vec<String>, Failure>;

/// A session abandoned at its deadline, which may still deliver the mail: its result
/// arrives on `result` if it ends before the process does.
struct Abandoned {
    notifier: String,
    result: std::sync::mpsc::Receiver<Outcome>,
}

/// Sessions abandoned by this run, not collected yet.
static ABANDONED: std::sync::Mutex<Vec<Abandoned>> = std::sync::Mutex::new(Vec::new());

fn abandoned() -> std::sync::MutexGuard<'static, Vec<Abandoned>> {
    ABANDONED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Whether a session to `notifier` was abandoned at its deadline and may still deliver:
/// starting another one beside it could deliver the mail twice.
pub(super) fn session_pending(notifier: &str) -> bool {
    abandoned().iter().any(|a| a.notifier == notifier)
}

/// Waits until `deadline` for the sessions abandoned so far, and returns what each that
/// ended said, by notifier name. The others are forgotten: they end with the process,
/// before the end of the mail, so the mail stays in the outbox and was not delivered.
pub(super) fn collect_abandoned(deadline: std::time::Instant) -> Vec<(String, Outcome)> {
    let sessions = std::mem::take(&mut *abandoned());
    sessions
        .into_iter()
        .filter_map(|a| {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let outcome = a.result.recv_timeout(left).ok()?;
            Some((a.notifier, outcome))
        })
        .collect()
}

/// Sends `mail` for notifier `notifier`; the error quotes the server's reply (code and
/// text) when there is one.
///
/// `timeout` bounds the whole session (connect, TLS, AUTH, the mail), not each read:
/// lettre only has a per-operation timeout, which a server sending one byte at a time
/// (or a silent one after DATA) can stretch far beyond it. The session runs on its own
/// thread, and is abandoned at the deadline: a silent server ends it within another
/// `timeout` (lettre's per-operation timeout is set too), a trickling one with the
/// process. Such a session may still deliver the mail: it is remembered
/// ([`session_pending`]) so that no second session is started beside it, and
/// [`collect_abandoned`] picks up its result before the run ends.
///
/// A server that refuses one recipient for good (`550 user unknown`) makes lettre stop
/// before the mail: with several recipients, the mail is then sent to each on its own
/// (in the same session thread, within the same deadline), so that the others still get
/// it; the refused ones are returned.
pub(super) fn send(
    notifier: &str,
    cfg: &SmtpConfig,
    mail: &Mail,
    timeout: std::time::Duration,
) -> Outcome {
    let fail = Failure::transient;
    let mut builder = Message::builder()
        .from(cfg.from.clone())
        .subject(mail.subject.clone())
        .message_id(Some(mail.message_id.clone()))
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
    let message = match &mail.html {
        None => builder
            .header(lettre::message::header::ContentType::TEXT_PLAIN)
            .body(mail.body.clone()),
        Some(html) => builder.multipart(lettre::message::MultiPart::alternative_plain_html(
            mail.body.clone(),
            html.clone(),
        )),
    }
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
    let (host, port) = (cfg.host.clone(), cfg.port);
    let timed_out = move || {
        fail(format!(
            "SMTP {host}:{port}: timed out after {} (the whole session: connect, TLS, AUTH and the mail)",
            super::deliver::seconds(timeout)
        ))
    };
    let on_thread = timed_out.clone();
    let (host, port) = (cfg.host.clone(), cfg.port);
    let failure = move |e: lettre::transport::smtp::Error| {
        if is_timeout(&e) {
            // lettre's own per-read timeout fired (EAGAIN or ETIMEDOUT): the same deadline.
            on_thread()
        } else {
            Failure {
                message: describe(&e, &host, port),
                // A 5xx reply refuses for good; a 4xx one says "later".
                permanent: e.is_permanent(),
            }
        }
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("smtp".into())
        .spawn(move || {
            let _ = tx.send(session(&transport, &message, failure));
        })
        .map_err(|e| fail(format!("cannot start the SMTP session: {e}")))?;
    match rx.recv_timeout(timeout) {
        Ok(outcome) => outcome,
        Err(_) => {
            abandoned().push(Abandoned {
                notifier: notifier.to_string(),
                result: rx,
            });
            Err(timed_out())
        }
    }
}

/// One SMTP session sending `message`; with several recipients and a refusal for good,
/// one per recipient (see [`send`]).
fn session(
    transport: &SmtpTransport,
    message: &Message,
    failure: impl Fn(lettre::transport::smtp::Error) -> Failure,
) -> Outcome {
    let first = match transport.send(message) {
        Ok(_) => return Ok(Vec::new()),
        Err(e) => failure(e),
    };
    let envelope = message.envelope();
    if !first.permanent || envelope.to().len() < 2 {
        return Err(first);
    }
    let bytes = message.formatted();
    let mut refused = Vec::new();
    let mut later = None;
    for rcpt in envelope.to() {
        let Ok(single) =
            lettre::address::Envelope::new(envelope.from().cloned(), vec![rcpt.clone()])
        else {
            continue;
        };
        match transport.send_raw(&single, &bytes) {
            Ok(_) => {}
            Err(e) => {
                let f = failure(e);
                if f.permanent {
                    refused.push(format!("recipient {rcpt} refused: {}", f.message));
                } else {
                    later.get_or_insert(f);
                }
            }
        }
    }
    if let Some(later) = later {
        // Retried later to every recipient: those that accepted it now may get it twice
        // (at least once).
        return Err(later);
    }
    if refused.len() == envelope.to().len() {
        // Every recipient refused (or the sender was): the first reply says it all.
        return Err(first);
    }
    Ok(refused)
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
    crate::text::one_line(&text)
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
