//! Delivering notifications: SMTP, webhooks, Alertmanager. Each notifier renders a
//! [`Message`] (pure: also what a dry run prints) and sends it; failures go to the outbox
//! in the state file and are retried on later runs until delivered or too old.

mod alertmanager;
mod deliver;
mod smtp;
mod webhook;

pub use crate::vocab::{AmAlert, OutboxItem, Payload};
pub use alertmanager::AmConfig;
pub use deliver::{
    deliver, enqueue, notify_test, plan, render, Budget, Delivered, Failure, NotifierTemplates,
    RuleRoute, RuleRoutes,
};
pub use smtp::{SmtpConfig, TlsMode};
pub use webhook::{WebhookConfig, WebhookFormat};

use crate::secret::SecretRef;
use crate::vocab::Notification;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// Default budget of one delivery attempt.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Most `retries` a notifier may have: each retry costs up to its `timeout` plus a pause,
/// and the run's `run_timeout` bounds them all anyway.
pub const MAX_RETRIES: u32 = 10;

/// Every configured notifier, the routes, and the notifiers' templates.
#[derive(Debug, Default)]
pub struct Notifiers {
    /// `[notifier.NAME]` entries, by name order.
    pub list: Vec<Notifier>,
    /// `[routes]`.
    pub routes: Routes,
    /// `[[route]]`: the routing tree below the root (`[routes]` and rules' `notify`).
    pub tree: crate::route::Tree,
    /// Compiled `subject` / `body` / `template` of each notifier.
    pub templates: NotifierTemplates,
}

impl Notifiers {
    /// The notifier called `name`.
    pub fn get(&self, name: &str) -> Option<&Notifier> {
        self.list.iter().find(|n| n.name == name)
    }

    /// The notifier names an alert with `labels` of a rule with `notify` reaches: the
    /// rule's `notify`, else those of every `[[route]]` it reaches (a route without
    /// `notify`, or the root, uses `[routes]`).
    pub fn receivers_of<'a>(
        &'a self,
        labels: &crate::alert::Labels,
        notify: &'a [String],
    ) -> Vec<&'a str> {
        let severity = labels.get("severity").map_or("", String::as_str);
        let matched = if notify.is_empty() {
            self.tree.matches(labels)
        } else {
            Vec::new()
        };
        if matched.is_empty() {
            return self.routes.for_alert(notify, severity, &self.list);
        }
        let mut names: Vec<&str> = Vec::new();
        for route in matched {
            for name in self.routes.for_alert(&route.notify, severity, &self.list) {
                if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
        names
    }

    /// True when no notifier is configured (runs then print notifications on stdout).
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The notifiers of a config without any: one `stdout` that gets everything.
    pub fn stdout(json: bool) -> Notifiers {
        Notifiers {
            list: vec![Notifier {
                name: "stdout".into(),
                kind: Kind::Stdout { json },
                send_resolved: true,
                fallback: None,
                timeout: DEFAULT_TIMEOUT,
                retries: 0,
            }],
            routes: Routes::default(),
            tree: crate::route::Tree::default(),
            templates: NotifierTemplates::default(),
        }
    }
}

/// A configured `[notifier.NAME]`.
#[derive(Debug, Clone)]
pub struct Notifier {
    /// The name rules and routes refer to.
    pub name: String,
    /// Where and how it sends.
    pub kind: Kind,
    /// Whether recoveries are sent (default true).
    pub send_resolved: bool,
    /// Another notifier to try when this one fails.
    pub fallback: Option<String>,
    /// Budget of one attempt.
    pub timeout: Duration,
    /// Extra attempts within a run after a failure (default 1, at most [`MAX_RETRIES`]).
    pub retries: u32,
}

impl Notifier {
    /// The secrets this notifier will need, to check that they resolve.
    pub fn secrets(&self) -> Vec<&SecretRef> {
        match &self.kind {
            Kind::Smtp(cfg) => cfg.password.iter().collect(),
            Kind::Webhook(cfg) => cfg
                .bearer_token
                .iter()
                .chain(&cfg.secret)
                .chain(cfg.headers.values())
                .collect(),
            Kind::Alertmanager(cfg) => cfg.password.iter().chain(&cfg.bearer_token).collect(),
            Kind::Stdout { .. } => Vec::new(),
        }
    }

    /// Adds this notifier's secrets (those that resolve) and URLs to `redactor`.
    pub fn add_secrets(&self, redactor: &mut crate::secret::Redactor) {
        let resolved = |secret: &SecretRef| secret.resolve().ok();
        match &self.kind {
            Kind::Smtp(cfg) => {
                if let Some(password) = cfg.password.as_ref().and_then(resolved) {
                    let user = cfg.username.as_deref().unwrap_or_default();
                    redactor.add_credentials(user, password.expose());
                }
            }
            Kind::Webhook(cfg) => {
                redactor.add_url(&cfg.url);
                for secret in cfg.bearer_token.iter().chain(&cfg.secret) {
                    if let Some(value) = resolved(secret) {
                        redactor.add(value.expose());
                    }
                }
                for value in cfg.headers.values().filter_map(resolved) {
                    redactor.add(value.expose());
                }
            }
            Kind::Alertmanager(cfg) => {
                for url in &cfg.urls {
                    redactor.add_url(url);
                }
                if let Some(password) = cfg.password.as_ref().and_then(resolved) {
                    let user = cfg.username.as_deref().unwrap_or_default();
                    redactor.add_credentials(user, password.expose());
                }
                if let Some(token) = cfg.bearer_token.as_ref().and_then(resolved) {
                    redactor.add(token.expose());
                }
            }
            Kind::Stdout { .. } => {}
        }
    }
}

/// Notifier types.
#[derive(Debug, Clone)]
pub enum Kind {
    /// `type = "smtp"`.
    Smtp(SmtpConfig),
    /// `type = "webhook"`.
    Webhook(WebhookConfig),
    /// `type = "alertmanager"`.
    Alertmanager(AmConfig),
    /// No notifier configured: `run` prints notifications on stdout (cron mails them),
    /// as text or as one JSON object per line.
    Stdout {
        /// One JSON object per notification instead of text.
        json: bool,
    },
}

/// A rendered message: what is sent, and what a dry run shows (secrets redacted).
#[derive(Debug, Clone)]
pub enum Message {
    /// An email.
    Mail(smtp::Mail),
    /// An HTTP request.
    Http(HttpRequest),
    /// Text for stdout.
    Text(String),
}

/// An HTTP request to send.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    /// `POST`, `PUT`.
    pub method: String,
    /// Target URLs (several for an Alertmanager cluster: any one accepting is success).
    pub urls: Vec<String>,
    /// Headers; the flag marks a secret value, shown as `[redacted]`.
    pub headers: Vec<(String, String, bool)>,
    /// The body.
    pub body: Vec<u8>,
}

/// `[notifier.NAME]` as written; which keys apply depends on `type`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNotifier {
    #[serde(rename = "type")]
    kind: String,
    send_resolved: Option<bool>,
    fallback: Option<Spanned<String>>,
    #[serde(default, deserialize_with = "crate::duration::deserialize_opt")]
    timeout: Option<Duration>,
    retries: Option<u32>,
    // smtp
    host: Option<String>,
    port: Option<u16>,
    tls: Option<String>,
    allow_insecure_auth: Option<bool>,
    username: Option<String>,
    password: Option<String>,
    password_file: Option<String>,
    from: Option<String>,
    to: Option<Vec<String>>,
    cc: Option<Vec<String>>,
    subject: Option<String>,
    body: Option<String>,
    // webhook
    url: Option<String>,
    method: Option<String>,
    headers: Option<BTreeMap<String, String>>,
    bearer_token: Option<String>,
    bearer_token_file: Option<String>,
    secret: Option<String>,
    secret_file: Option<String>,
    signature_header: Option<String>,
    format: Option<String>,
    template: Option<String>,
    content_type: Option<String>,
    external_url: Option<String>,
    // alertmanager
    urls: Option<Vec<String>>,
    watchdog: Option<bool>,
    follow_only_if: Option<bool>,
    // TLS, for smtp, webhook and alertmanager
    ca_file: Option<String>,
    insecure: Option<bool>,
}

/// Keys each type accepts besides the common ones.
const TYPE_KEYS: &[(&str, &[&str])] = &[
    (
        "smtp",
        &[
            "host",
            "port",
            "tls",
            "allow_insecure_auth",
            "username",
            "password",
            "password_file",
            "from",
            "to",
            "cc",
            "subject",
            "body",
            "ca_file",
            "insecure",
        ],
    ),
    (
        "webhook",
        &[
            "url",
            "method",
            "headers",
            "bearer_token",
            "bearer_token_file",
            "secret",
            "secret_file",
            "signature_header",
            "format",
            "template",
            "content_type",
            "external_url",
            "ca_file",
            "insecure",
        ],
    ),
    (
        "alertmanager",
        &[
            "url",
            "urls",
            "username",
            "password",
            "password_file",
            "bearer_token",
            "bearer_token_file",
            "ca_file",
            "insecure",
            "watchdog",
            "follow_only_if",
        ],
    ),
];

impl RawNotifier {
    fn set_keys(&self) -> Vec<&'static str> {
        let keys: [(&'static str, bool); 29] = [
            ("host", self.host.is_some()),
            ("port", self.port.is_some()),
            ("tls", self.tls.is_some()),
            ("allow_insecure_auth", self.allow_insecure_auth.is_some()),
            ("username", self.username.is_some()),
            ("password", self.password.is_some()),
            ("password_file", self.password_file.is_some()),
            ("from", self.from.is_some()),
            ("to", self.to.is_some()),
            ("cc", self.cc.is_some()),
            ("subject", self.subject.is_some()),
            ("body", self.body.is_some()),
            ("url", self.url.is_some()),
            ("method", self.method.is_some()),
            ("headers", self.headers.is_some()),
            ("bearer_token", self.bearer_token.is_some()),
            ("bearer_token_file", self.bearer_token_file.is_some()),
            ("secret", self.secret.is_some()),
            ("secret_file", self.secret_file.is_some()),
            ("signature_header", self.signature_header.is_some()),
            ("format", self.format.is_some()),
            ("template", self.template.is_some()),
            ("content_type", self.content_type.is_some()),
            ("urls", self.urls.is_some()),
            ("external_url", self.external_url.is_some()),
            ("watchdog", self.watchdog.is_some()),
            ("follow_only_if", self.follow_only_if.is_some()),
            ("ca_file", self.ca_file.is_some()),
            ("insecure", self.insecure.is_some()),
        ];
        keys.iter()
            .filter(|(_, set)| *set)
            .map(|(k, _)| *k)
            .collect()
    }

    /// Validates the entry for its type. `base` resolves relative paths; `private` says
    /// whether the config file may hold inline secrets.
    pub fn build(
        self,
        name: &str,
        base: &Path,
        private: bool,
        templates: &mut NotifierTemplates,
    ) -> Result<Notifier, String> {
        let Some((_, allowed)) = TYPE_KEYS.iter().find(|(t, _)| *t == self.kind) else {
            return Err(format!(
                "type {:?}: use \"smtp\", \"webhook\" or \"alertmanager\"",
                self.kind
            ));
        };
        if let Some(key) = self.set_keys().into_iter().find(|k| !allowed.contains(k)) {
            return Err(format!(
                "`{key}` does not apply to a {} notifier",
                self.kind
            ));
        }
        let path = |p: &String| base.join(p);
        let secret = |value: &Option<String>,
                      file: &Option<String>,
                      key: &str|
         -> Result<Option<SecretRef>, String> {
            match (value, file) {
                (Some(_), Some(_)) => Err(format!("give {key} or {key}_file, not both")),
                (Some(v), None) => {
                    let secret = SecretRef::from_value(v);
                    if matches!(secret, SecretRef::Inline(_)) && !private {
                        return Err(format!(
                            "an inline {key} in a config that group or others can read; use {key}_file or {key} = \"env:NAME\", or make the config mode 600"
                        ));
                    }
                    Ok(Some(secret))
                }
                (None, Some(f)) => Ok(Some(SecretRef::from_file(&path(f)))),
                (None, None) => Ok(None),
            }
        };
        // A user name or password in a URL is a secret written inline.
        for url in self.url.iter().chain(self.urls.iter().flatten()) {
            if crate::secret::url_has_userinfo(url) && !private {
                return Err(format!(
                    "a URL with a user name or password in it (`user:password@`) in a config that group or others can read; {}, or make the config mode 600",
                    if self.kind == "alertmanager" {
                        "give them as username and password_file (or password = \"env:NAME\"), or use bearer_token_file"
                    } else {
                        "use bearer_token_file or headers = { Authorization = \"env:NAME\" }"
                    }
                ));
            }
        }
        let ca_file: Option<PathBuf> = self.ca_file.as_ref().map(path);
        for (which, source) in [
            ("subject", &self.subject),
            ("body", &self.body),
            ("template", &self.template),
        ] {
            if let Some(source) = source {
                templates.add(name, which, source)?;
            }
        }
        if let Some(retries) = self.retries.filter(|&r| r > MAX_RETRIES) {
            return Err(format!(
                "retries = {retries}: at most {MAX_RETRIES} (retries within one run; later runs retry from the outbox)"
            ));
        }
        let insecure = self.insecure.unwrap_or(false);
        let kind = match self.kind.as_str() {
            "smtp" => Kind::Smtp(smtp::SmtpConfig::build(
                &self,
                secret(&self.password, &self.password_file, "password")?,
                ca_file,
                insecure,
            )?),
            "webhook" => Kind::Webhook(webhook::WebhookConfig::build(
                &self,
                secret(&self.bearer_token, &self.bearer_token_file, "bearer_token")?,
                secret(&self.secret, &self.secret_file, "secret")?,
                ca_file,
                insecure,
                private,
            )?),
            _ => {
                let mut urls = self.urls.clone().unwrap_or_default();
                urls.extend(self.url.clone());
                if urls.is_empty() {
                    return Err("needs `url` (or `urls` for a cluster), e.g. url = \"http://127.0.0.1:9093\"".into());
                }
                for url in &urls {
                    check_url(url)?;
                }
                let password = secret(&self.password, &self.password_file, "password")?;
                let bearer_token =
                    secret(&self.bearer_token, &self.bearer_token_file, "bearer_token")?;
                if self.username.is_some() != password.is_some() {
                    return Err("basic auth needs both `username` and a password (password_file or password = \"env:NAME\")".into());
                }
                if password.is_some() && bearer_token.is_some() {
                    return Err(
                        "give basic auth (username, password) or bearer_token, not both".into(),
                    );
                }
                Kind::Alertmanager(AmConfig {
                    urls,
                    username: self.username.clone(),
                    password,
                    bearer_token,
                    ca_file,
                    insecure,
                    watchdog: self.watchdog.unwrap_or(false),
                    follow_only_if: self.follow_only_if.unwrap_or(false),
                })
            }
        };
        Ok(Notifier {
            name: name.to_string(),
            kind,
            send_resolved: self.send_resolved.unwrap_or(true),
            fallback: self.fallback.map(Spanned::into_inner),
            timeout: self
                .timeout
                .filter(|t| !t.is_zero())
                .unwrap_or(DEFAULT_TIMEOUT),
            retries: self.retries.unwrap_or(1),
        })
    }

    /// The `fallback` key's value and offset, for cross-checks.
    pub fn fallback(&self) -> Option<(&str, usize)> {
        self.fallback
            .as_ref()
            .map(|f| (f.get_ref().as_str(), f.span().start))
    }
}

/// A secret's value for a request being rendered; with `secrets` false (a dry run), an
/// empty value, so that nothing secret is read or shown.
fn reveal(secret: &SecretRef, secrets: bool) -> Result<String, String> {
    if secrets {
        secret
            .resolve()
            .map(|s| s.expose().to_string())
            .map_err(|e| e.to_string())
    } else {
        Ok(String::new())
    }
}

fn check_url(url: &str) -> Result<(), String> {
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(())
    } else {
        Err(format!("url {url:?} must start with http:// or https://"))
    }
}

/// Which notifiers get which alerts: `[routes]` maps a severity (or `default`) to
/// notifier names; a rule's `notify` overrides it.
#[derive(Debug, Clone, Default)]
pub struct Routes {
    /// Severity → notifiers; the `default` key applies to every other severity.
    pub by_severity: BTreeMap<String, Vec<String>>,
}

impl Routes {
    /// Notifier names for an alert of `severity` whose rule names `notify`.
    pub fn for_alert<'a>(
        &'a self,
        notify: &'a [String],
        severity: &str,
        all: &'a [Notifier],
    ) -> Vec<&'a str> {
        if !notify.is_empty() {
            return notify.iter().map(String::as_str).collect();
        }
        if let Some(names) = self
            .by_severity
            .get(severity)
            .or_else(|| self.by_severity.get("default"))
        {
            return names.iter().map(String::as_str).collect();
        }
        // No routes at all: every notifier gets everything.
        if self.by_severity.is_empty() {
            return all.iter().map(|n| n.name.as_str()).collect();
        }
        Vec::new()
    }

    /// Notifier names for a notification: its receivers, else the routes of every
    /// severity among its alerts.
    pub fn for_notification<'a>(
        &'a self,
        n: &'a Notification,
        all: &'a [Notifier],
    ) -> Vec<&'a str> {
        let mut names: Vec<&str> = Vec::new();
        for notice in n.firing.iter().chain(&n.resolved) {
            let severity = notice.labels.get("severity").map_or("", String::as_str);
            for name in self.for_alert(&n.receivers, severity, all) {
                if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
        names
    }
}
