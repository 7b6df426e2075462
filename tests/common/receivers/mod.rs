//! Real receivers for the notifier integration tests: an SMTP server, an HTTP(S) endpoint
//! that records requests and answers as scripted, and a real Prometheus Alertmanager.
//!
//! - [`SmtpServer`]: Debian's aiosmtpd (`python3-aiosmtpd`) run by `/usr/bin/python3` from a
//!   small script written to a temporary directory. Plain SMTP, STARTTLS or implicit TLS
//!   (SMTPS) with a certificate from a throw-away [`TestCa`], optional AUTH, and scripted
//!   refusals (MAIL, RCPT, DATA). Every accepted message is saved as one JSON file and read
//!   back as a [`ReceivedMail`]; every refusal as an [`SmtpRefusal`]. [`SmtpServer::stop`] and
//!   [`SmtpServer::restart`] take it down and bring it back on the same port.
//! - [`HttpReceiver`]: an in-process HTTP/1.1 server (std only) that records every request
//!   ([`ReceivedRequest`]) and answers from a queue of scripted [`Respond`]s, then a default:
//!   a status and body, [`Respond::Hang`] (read the request, never answer) or
//!   [`Respond::Close`] (hang up without answering). With [`HttpReceiverBuilder::tls`] a
//!   small Python TLS terminator in front of it makes it an HTTPS endpoint.
//! - [`Alertmanager`]: Debian's `prometheus-alertmanager` with a generated config, its own
//!   storage directory and clustering disabled; [`Alertmanager::alerts`] reads what it holds.
//! - [`TestCa`]: a throw-away CA and a leaf certificate for `127.0.0.1`/`localhost`, made
//!   with the `openssl` command (rustls refuses a self-signed certificate used directly as
//!   a server certificate, so the leaf is signed by the CA and clients trust the CA file).
//! - [`http_request`]: a minimal HTTP/1.1 client for the harness's own calls.
//!
//! Each receiver has a `start_or_skip` that checks what it needs, like
//! [`super::require`]: a missing component prints a `SKIPPED` line (or panics under
//! `CI=true`). Debian packages: `python3-aiosmtpd` (SMTP, and `python3` for the HTTPS
//! terminator), `openssl` (certificates), `prometheus-alertmanager`.
//!
//! Only 127.0.0.1 is ever used. Nothing sleeps as a means of synchronization: waits poll a
//! condition (a file, a port, a condition variable) against a deadline, and every child
//! process is killed when its owner is dropped.

//!
//! One file per receiver (`smtp.rs`, `http.rs` with the harness's HTTP client,
//! `alertmanager.rs`); the process handling they share (Python, child processes started
//! from a script, start-up limits, the throw-away CA) is in `process.rs`.

mod alertmanager;
mod http;
mod process;
mod smtp;

pub use alertmanager::*;
pub use http::*;
pub use process::*;
pub use smtp::*;
