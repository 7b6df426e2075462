//! `[notifier.NAME]` and `[routes]` as validated data: which notifiers exist, where and how
//! each sends (addresses, URLs, secret references, TLS), their compiled templates, and which
//! alerts go where. Plain data checked at load; `notify` renders and sends with it.

use crate::rules::template::Templates;
use crate::secret::SecretRef;
use crate::vocab::Notification;
use lettre::message::Mailbox;
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
            "smtp" => Kind::Smtp(SmtpConfig::build(
                &self,
                secret(&self.password, &self.password_file, "password")?,
                ca_file,
                insecure,
            )?),
            "webhook" => Kind::Webhook(WebhookConfig::build(
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

/// `url` is an http:// or https:// URL.
pub(crate) fn check_url(url: &str) -> Result<(), String> {
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

impl SmtpConfig {
    fn build(
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

/// Body formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookFormat {
    /// hapwatch's JSON, `"version": "1"` (documented in the README).
    Hapwatch,
    /// Alertmanager's webhook payload, `"version": "4"`.
    Alertmanager,
    /// A Slack incoming-webhook message: one attachment coloured by status (red firing,
    /// green resolved), the subject as its title, the listing as its text, every
    /// interpolated value escaped as Slack requires (`&`, `<`, `>`).
    Slack,
    /// The same attachment for Mattermost, whose markdown differs: the listing in a code
    /// block, so that nothing HAProxy reports can mention, link or format.
    Mattermost,
    /// The `template` key, rendered.
    Template,
}

/// `type = "webhook"`.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Target.
    pub url: String,
    /// `POST` (default) or `PUT`.
    pub method: String,
    /// Extra headers. Their values are secrets (an API key, an `Authorization`): a
    /// secret reference, or inline in a private config only; dry runs redact them.
    pub headers: BTreeMap<String, SecretRef>,
    /// `Authorization: Bearer …`.
    pub bearer_token: Option<SecretRef>,
    /// HMAC-SHA256 key for the signature header.
    pub secret: Option<SecretRef>,
    /// Signature header name (default `X-Hapwatch-Signature`); value `sha256=<hex>`.
    pub signature_header: String,
    /// Body format.
    pub format: WebhookFormat,
    /// Body template for `format = "template"`.
    pub template: Option<String>,
    /// `Content-Type` (default `application/json`).
    pub content_type: String,
    /// PEM CA bundle to trust.
    pub ca_file: Option<PathBuf>,
    /// Skip certificate verification.
    pub insecure: bool,
    /// `externalURL` of the Alertmanager format: the page operators open to act (e.g. the
    /// stats page, or a dashboard).
    pub external_url: Option<String>,
}

impl WebhookConfig {
    fn build(
        raw: &RawNotifier,
        bearer_token: Option<SecretRef>,
        secret: Option<SecretRef>,
        ca_file: Option<PathBuf>,
        insecure: bool,
        private: bool,
    ) -> Result<WebhookConfig, String> {
        let url = raw.url.clone().ok_or("needs `url`")?;
        check_url(&url)?;
        let format = match raw.format.as_deref() {
            None | Some("hapwatch") => WebhookFormat::Hapwatch,
            Some("alertmanager") => WebhookFormat::Alertmanager,
            Some("slack") => WebhookFormat::Slack,
            Some("mattermost") => WebhookFormat::Mattermost,
            Some("template") => WebhookFormat::Template,
            Some(other) => {
                return Err(format!(
                "format = {other:?}: use \"hapwatch\", \"alertmanager\", \"slack\", \"mattermost\" or \"template\""
            ))
            }
        };
        if let Some(external) = &raw.external_url {
            check_url(external).map_err(|e| format!("external_url: {e}"))?;
            if crate::secret::url_has_userinfo(external) {
                return Err("external_url: no user name or password in it (it is sent to the receiver as is)".into());
            }
        }
        if (format == WebhookFormat::Template) != raw.template.is_some() {
            return Err("format = \"template\" and `template` go together".into());
        }
        let method = raw
            .method
            .clone()
            .unwrap_or_else(|| "POST".into())
            .to_ascii_uppercase();
        if !matches!(method.as_str(), "POST" | "PUT" | "PATCH") {
            return Err(format!("method = {method:?}: use POST, PUT or PATCH"));
        }
        for (name, value) in raw.headers.iter().flatten() {
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                || value.contains(['\r', '\n'])
            {
                return Err(format!("header {name:?}: a name is letters, digits and dashes, and a value is one line"));
            }
        }
        let mut headers = BTreeMap::new();
        for (name, value) in raw.headers.iter().flatten() {
            let value = SecretRef::from_value(value);
            if matches!(value, SecretRef::Inline(_)) && !private {
                return Err(format!(
                    "header {name:?}: an inline header value in a config that group or others can read \
                     (header values are treated as secrets); use {name:?} = \"env:NAME\" or \"credential:NAME\", \
                     or make the config mode 600"
                ));
            }
            headers.insert(name.clone(), value);
        }
        Ok(WebhookConfig {
            url,
            method,
            headers,
            bearer_token,
            secret,
            signature_header: raw
                .signature_header
                .clone()
                .unwrap_or_else(|| "X-Hapwatch-Signature".into()),
            format,
            template: raw.template.clone(),
            content_type: raw
                .content_type
                .clone()
                .unwrap_or_else(|| "application/json".into()),
            ca_file,
            insecure,
            external_url: raw.external_url.clone(),
        })
    }
}

/// `type = "alertmanager"`.
#[derive(Debug, Clone)]
pub struct AmConfig {
    /// Base URLs (`http://127.0.0.1:9093`); any one accepting the alerts is success.
    pub urls: Vec<String>,
    /// Basic-auth user (for an Alertmanager behind an authenticating proxy).
    pub username: Option<String>,
    /// Basic-auth password.
    pub password: Option<SecretRef>,
    /// `Authorization: Bearer …`.
    pub bearer_token: Option<SecretRef>,
    /// PEM CA bundle to trust.
    pub ca_file: Option<PathBuf>,
    /// Skip certificate verification.
    pub insecure: bool,
    /// Push an always-firing `Watchdog` alert every run, so that Alertmanager users can
    /// route it to a dead man's switch and learn when hapwatch stops running.
    pub watchdog: bool,
    /// Push only from the active node of an HA pair (`only_if`), like the other
    /// notifiers, instead of from every node.
    pub follow_only_if: bool,
}

/// Templates of the notifiers (`subject`, `body`, `template`), compiled at config load.
#[derive(Debug, Default)]
pub struct NotifierTemplates(Templates);

/// Variables a notification template may use: the keys of the hapwatch webhook payload.
const TEMPLATE_VARIABLES: &[&str] = &[
    "version",
    "receiver",
    "status",
    "group_key",
    "group_labels",
    "common_labels",
    "common_annotations",
    "digest",
    "subject",
    "text",
    "firing",
    "resolved",
    "still_firing",
];

impl NotifierTemplates {
    /// Compiles template `which` of `notifier`.
    pub fn add(&mut self, notifier: &str, which: &str, source: &str) -> Result<(), String> {
        let vars = self.0.add(&format!("{notifier}.{which}"), source)?;
        if let Some(var) = vars
            .iter()
            .find(|v| !TEMPLATE_VARIABLES.contains(&v.as_str()))
        {
            return Err(format!(
                "{which}: unknown variable `{var}`{}; variables: {}",
                crate::rules::expr::suggest(var, TEMPLATE_VARIABLES.iter().copied()),
                TEMPLATE_VARIABLES.join(", ")
            ));
        }
        Ok(())
    }

    /// The compiled templates, by `NOTIFIER.WHICH`.
    pub fn compiled(&self) -> &Templates {
        &self.0
    }
}
