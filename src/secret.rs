//! Secrets (passwords, tokens) referenced from the config, kept out of every output.

use std::fmt;
use std::path::{Path, PathBuf};

/// Where a secret comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretRef {
    /// `env:NAME`: the environment variable `NAME`.
    Env(String),
    /// `*_file = "PATH"`: the file's content, without a trailing newline.
    File(PathBuf),
    /// `credential:NAME`: `$CREDENTIALS_DIRECTORY/NAME`, as systemd's `LoadCredential=`
    /// provides it.
    Credential(String),
    /// A literal in the config; only accepted when the config is readable by its owner alone.
    Inline(String),
}

/// A resolved secret. `Debug` and `Display` print `[redacted]`, so a secret cannot reach a
/// log line or error message by accident.
#[derive(Clone)]
pub struct Secret(String);

/// Why a secret could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// `credential:NAME` outside a systemd unit with `LoadCredential=`.
    #[error("credential:{0} needs $CREDENTIALS_DIRECTORY (set by systemd's LoadCredential=); it is not set")]
    NoCredentials(String),
    /// `env:NAME` with `NAME` unset.
    #[error("environment variable {0} is not set (the config refers to it as env:{0})")]
    EnvMissing(String),
    /// The secret file is missing or unreadable.
    #[error("cannot read secret file {path}: {source}")]
    File {
        /// The file named in the config.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
}

impl SecretRef {
    /// Reads a `password = "…"`-style value: `env:NAME`, `credential:NAME`, or an inline
    /// literal.
    pub fn from_value(value: &str) -> SecretRef {
        if let Some(name) = value.strip_prefix("env:") {
            SecretRef::Env(name.to_string())
        } else if let Some(name) = value.strip_prefix("credential:") {
            SecretRef::Credential(name.to_string())
        } else {
            SecretRef::Inline(value.to_string())
        }
    }

    /// A `*_file` value, relative to the config's directory.
    pub fn from_file(path: &Path) -> SecretRef {
        SecretRef::File(path.to_path_buf())
    }

    /// Fetches the secret's value.
    pub fn resolve(&self) -> Result<Secret, SecretError> {
        match self {
            SecretRef::Env(name) => std::env::var(name)
                .map(Secret)
                .map_err(|_| SecretError::EnvMissing(name.clone())),
            SecretRef::File(path) => read_secret_file(path),
            SecretRef::Credential(name) => match std::env::var_os("CREDENTIALS_DIRECTORY") {
                Some(dir) => read_secret_file(&Path::new(&dir).join(name)),
                None => Err(SecretError::NoCredentials(name.clone())),
            },
            SecretRef::Inline(value) => Ok(Secret(value.clone())),
        }
    }
}

fn read_secret_file(path: &Path) -> Result<Secret, SecretError> {
    std::fs::read_to_string(path)
        .map(|s| Secret(s.trim_end_matches(['\n', '\r']).to_string()))
        .map_err(|source| SecretError::File {
            path: path.to_path_buf(),
            source,
        })
}

impl fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Env(name) => write!(f, "env:{name}"),
            SecretRef::File(path) => write!(f, "file:{}", path.display()),
            SecretRef::Credential(name) => write!(f, "credential:{name}"),
            SecretRef::Inline(_) => f.write_str("[inline, redacted]"),
        }
    }
}

impl Secret {
    /// The secret's value, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// What a masked secret is replaced with.
pub const REDACTED: &str = "[redacted]";

/// Secrets shorter than this are not searched for in free text: masking every `ab` in a
/// message would make it unreadable. URL userinfo and query values are masked whatever
/// their length, by their place in the URL.
pub const MIN_MASKED_LEN: usize = 4;

/// Masks secrets in text that may quote them: errors that echo a peer's reply (an SMTP
/// `535` quoting the AUTH line, a stats page echoing the request headers) or a URL.
///
/// It knows every configured secret value and the forms a peer may have seen it in:
/// base64 of the value (SMTP `AUTH LOGIN`), of `user:password` (HTTP basic auth) and of
/// `\0user\0password` (SMTP `AUTH PLAIN`), and the userinfo and query values of every
/// configured URL, raw and percent-decoded. Independently of what it knows, it masks the
/// userinfo and the query values of any URL in the text.
#[derive(Clone, Default)]
pub struct Redactor {
    /// Literal strings to mask, longest first, without duplicates.
    literals: Vec<String>,
}

/// Says how many secrets it holds, never which.
impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Redactor({} secret forms, redacted)",
            self.literals.len()
        )
    }
}

impl Redactor {
    /// A redactor that knows no secret yet (it still masks URL userinfo and queries).
    pub const fn new() -> Redactor {
        Redactor {
            literals: Vec::new(),
        }
    }

    /// True when no literal secret is known.
    pub fn is_empty(&self) -> bool {
        self.literals.is_empty()
    }

    fn push(&mut self, value: &str) {
        if value.len() >= MIN_MASKED_LEN && !self.literals.iter().any(|l| l == value) {
            self.literals.push(value.to_string());
            self.literals
                .sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        }
    }

    /// Masks a base64 text with its padding, and without (a peer may drop it).
    fn push_base64(&mut self, plain: &str) {
        let encoded = base64(plain);
        self.push(&encoded);
        self.push(encoded.trim_end_matches('='));
    }

    /// Masks `value`, its base64 form, and the form it takes inside a JSON string (a
    /// quote or backslash escaped), which `state show --format json` and JSON log lines
    /// print.
    pub fn add(&mut self, value: &str) {
        if value.is_empty() {
            return;
        }
        self.push(value);
        self.push_base64(value);
        if let Ok(json) = serde_json::to_string(value) {
            self.push(&json[1..json.len() - 1]);
        }
    }

    /// Masks a password and the forms it takes together with its user name: base64 of
    /// `user:password` (HTTP basic auth) and of `\0user\0password` (SMTP AUTH PLAIN).
    pub fn add_credentials(&mut self, user: &str, password: &str) {
        self.add(password);
        if !password.is_empty() {
            self.push_base64(&format!("{user}:{password}"));
            self.push_base64(&format!("\0{user}\0{password}"));
        }
    }

    /// Masks the userinfo and query values of a configured URL, raw and percent-decoded,
    /// and basic auth made from the userinfo.
    pub fn add_url(&mut self, url: &str) {
        let Some(parts) = UrlParts::find(url, 0) else {
            return;
        };
        if let Some((start, end)) = parts.userinfo {
            let userinfo = &url[start..end];
            self.add(userinfo);
            // ureq sends the userinfo as it is written (percent-encoded) in basic auth.
            self.push_base64(userinfo);
            let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
            let (user, password) = (percent_decode(user), percent_decode(password));
            self.add(&percent_decode(userinfo));
            self.add_credentials(&user, &password);
            self.push(password_raw(userinfo));
        }
        for (start, end) in parts.query_values(url) {
            self.add(&url[start..end]);
            self.add(&percent_decode(&url[start..end]));
        }
    }

    /// Adds everything `other` masks.
    pub fn merge(&mut self, other: &Redactor) {
        for literal in &other.literals {
            self.push(literal);
        }
    }

    /// `text` with every known secret, and the userinfo and query values of every URL,
    /// replaced by `[redacted]`.
    pub fn redact(&self, text: &str) -> String {
        redact_urls(&self.mask_literals(text))
    }

    fn mask_literals(&self, text: &str) -> String {
        if self.literals.is_empty() {
            return text.to_string();
        }
        // A table of first bytes keeps the scan fast on long texts (`state show`).
        let mut first = [false; 256];
        for literal in &self.literals {
            first[usize::from(literal.as_bytes()[0])] = true;
        }
        let bytes = text.as_bytes();
        let mut out = String::with_capacity(text.len());
        let (mut copied, mut i) = (0, 0);
        while i < bytes.len() {
            if first[usize::from(bytes[i])] {
                if let Some(literal) = self
                    .literals
                    .iter()
                    .find(|l| text[i..].starts_with(l.as_str()))
                {
                    out.push_str(&text[copied..i]);
                    out.push_str(REDACTED);
                    i += literal.len();
                    copied = i;
                    continue;
                }
            }
            i += 1;
            // Literals are whole strings: a match starts on a character boundary.
            while i < bytes.len() && !text.is_char_boundary(i) {
                i += 1;
            }
        }
        out.push_str(&text[copied..]);
        out
    }
}

/// The raw (still percent-encoded) password part of a userinfo.
fn password_raw(userinfo: &str) -> &str {
    userinfo.split_once(':').map_or("", |(_, p)| p)
}

fn base64(value: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(value)
}

/// `%XX` sequences decoded; anything else (or invalid UTF-8) kept as it is.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| text.to_string())
}

/// Where the parts of one URL in a text are (byte ranges into the text).
struct UrlParts {
    /// The userinfo, without its `@`.
    userinfo: Option<(usize, usize)>,
    /// The query, without its `?`.
    query: Option<(usize, usize)>,
    /// End of the URL.
    end: usize,
}

/// Characters that end a URL quoted in a message.
fn ends_url(c: u8) -> bool {
    c.is_ascii_whitespace()
        || c.is_ascii_control()
        || matches!(c, b'"' | b'\'' | b'<' | b'>' | b'`')
}

impl UrlParts {
    /// The first URL (`scheme://…`) in `text` at or after `from`.
    fn find(text: &str, from: usize) -> Option<UrlParts> {
        let bytes = text.as_bytes();
        let mut search = from;
        loop {
            let sep = search + text.get(search..)?.find("://")?;
            let mut start = sep;
            while start > from
                && (bytes[start - 1].is_ascii_alphanumeric()
                    || matches!(bytes[start - 1], b'+' | b'-' | b'.'))
            {
                start -= 1;
            }
            if start == sep || !bytes[start].is_ascii_alphabetic() {
                search = sep + 3;
                continue;
            }
            let authority_start = sep + 3;
            // The user information ends at the last `@` before the path: a password may
            // hold a `?` or `#` (not allowed there unencoded, but written so), which must
            // not end it early and leave the rest of the password in the clear.
            let mut i = authority_start;
            while i < bytes.len() && !ends_url(bytes[i]) && bytes[i] != b'/' {
                i += 1;
            }
            let userinfo = text[authority_start..i]
                .rfind('@')
                .map(|at| (authority_start, authority_start + at));
            let mut i = userinfo.map_or(authority_start, |(_, at)| at + 1);
            while i < bytes.len() && !ends_url(bytes[i]) && !matches!(bytes[i], b'?' | b'#') {
                i += 1;
            }
            let mut query = None;
            if i < bytes.len() && bytes[i] == b'?' {
                let query_start = i + 1;
                i = query_start;
                while i < bytes.len() && !ends_url(bytes[i]) && bytes[i] != b'#' {
                    i += 1;
                }
                query = Some((query_start, i));
            }
            while i < bytes.len() && !ends_url(bytes[i]) {
                i += 1;
            }
            return Some(UrlParts {
                userinfo,
                query,
                end: i,
            });
        }
    }

    /// Byte ranges of the query's values (of parameters without `=`, the whole
    /// parameter). Punctuation that ends the value in a sentence (`…?t=abc: HTTP 500`)
    /// is not part of it.
    fn query_values(&self, text: &str) -> Vec<(usize, usize)> {
        let Some((start, end)) = self.query else {
            return Vec::new();
        };
        let mut values = Vec::new();
        let mut at = start;
        for param in text[start..end].split('&') {
            let (value_start, value) = match param.find('=') {
                Some(eq) => (at + eq + 1, &param[eq + 1..]),
                None => (at, param),
            };
            let value = value.trim_end_matches([':', ',', '.', ')', ';']);
            if !value.is_empty() {
                values.push((value_start, value_start + value.len()));
            }
            at += param.len() + 1;
        }
        values
    }
}

/// True when `url` carries a user name or password (`scheme://user:password@host`).
pub fn url_has_userinfo(url: &str) -> bool {
    UrlParts::find(url, 0).is_some_and(|p| p.userinfo.is_some())
}

/// `text` with the userinfo and the query values of every URL in it masked.
pub fn redact_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut from = 0;
    while let Some(url) = UrlParts::find(text, from) {
        let mut ranges: Vec<(usize, usize)> = url.userinfo.into_iter().collect();
        ranges.extend(url.query_values(text));
        for (start, end) in ranges {
            out.push_str(&text[copied..start]);
            out.push_str(REDACTED);
            copied = end;
        }
        from = url.end.max(from + 1);
    }
    out.push_str(&text[copied..]);
    out
}

/// The secrets of the loaded config, for [`redact`].
static GLOBAL: std::sync::RwLock<Redactor> = std::sync::RwLock::new(Redactor::new());

/// Makes [`redact`] also mask what `redactor` knows (called when a config is loaded).
pub fn install(redactor: &Redactor) {
    if let Ok(mut global) = GLOBAL.write() {
        global.merge(redactor);
    }
}

/// `text` with every secret of the loaded config masked, and the userinfo and query
/// values of every URL in it: applied to every error text that may quote a peer or a URL
/// before it is printed, logged or stored.
pub fn redact(text: &str) -> String {
    match GLOBAL.read() {
        Ok(global) => global.redact(text),
        Err(_) => redact_urls(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_resolves_and_never_prints() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "s3cret\n").unwrap();
        assert_eq!(
            SecretRef::from_file(&dir.path().join("pw"))
                .resolve()
                .unwrap()
                .expose(),
            "s3cret"
        );
        assert_eq!(
            SecretRef::from_value("plain").resolve().unwrap().expose(),
            "plain"
        );
        let secret = SecretRef::from_value("plain").resolve().unwrap();
        assert_eq!(format!("{secret} {secret:?}"), "[redacted] [redacted]");
        assert_eq!(
            format!("{:?}", SecretRef::from_value("hunter2")),
            "[inline, redacted]"
        );
        assert!(
            matches!(SecretRef::from_value("credential:smtp"), SecretRef::Credential(n) if n == "smtp")
        );
        assert!(matches!(SecretRef::from_value("env:X"), SecretRef::Env(n) if n == "X"));
        let missing = SecretRef::from_value("env:HAPWATCH_SURELY_UNSET_VARIABLE")
            .resolve()
            .unwrap_err();
        assert!(missing
            .to_string()
            .contains("HAPWATCH_SURELY_UNSET_VARIABLE is not set"));
    }

    #[test]
    fn masks_secrets_and_the_forms_peers_echo() {
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let mut r = Redactor::new();
        r.add_credentials("alice", "pa55word");
        r.add("tok-123456");
        let plain = b64("\0alice\0pa55word");
        let basic = b64("alice:pa55word");
        let login = b64("pa55word");
        let text = format!(
            "535 5.7.8 bad AUTH PLAIN {plain} / {login} / Basic {basic} / Bearer tok-123456 / pa55word"
        );
        let masked = r.redact(&text);
        for secret in [
            "pa55word",
            "tok-123456",
            &plain,
            &basic,
            &login,
            plain.trim_end_matches('='),
        ] {
            assert!(!masked.contains(secret), "{masked}");
        }
        assert!(
            masked.starts_with(
                "535 5.7.8 bad AUTH PLAIN [redacted] / [redacted] / Basic [redacted] /"
            ),
            "{masked}"
        );
        let unpadded = plain.trim_end_matches('=');
        assert_eq!(r.redact(&format!("x {unpadded} y")), "x [redacted] y");
        // Too short to mask in free text without ruining messages.
        let mut short = Redactor::new();
        short.add("ab");
        assert_eq!(short.redact("tab stab"), "tab stab");
    }

    #[test]
    fn urls_lose_their_userinfo_and_query_values() {
        let r = Redactor::new();
        assert_eq!(
            r.redact("HTTP 500 from http://admin:pw@127.0.0.1:80/stats;csv: \"x\""),
            "HTTP 500 from http://[redacted]@127.0.0.1:80/stats;csv: \"x\""
        );
        assert_eq!(
            r.redact("heartbeat https://hc/ping?token=abc&x=1&flag: HTTP 404"),
            "heartbeat https://hc/ping?token=[redacted]&x=[redacted]&[redacted]: HTTP 404"
        );
        assert_eq!(
            r.redact("to \"https://u@h/p?k=v#frag\", then ftp://a:b@c"),
            "to \"https://[redacted]@h/p?k=[redacted]#frag\", then ftp://[redacted]@c"
        );
        assert_eq!(
            r.redact("no url: a://, ://x, 9://y"),
            "no url: a://, ://x, 9://y"
        );
        assert_eq!(r.redact("mail alice@example.net"), "mail alice@example.net");
    }

    #[test]
    fn configured_url_secrets_are_masked_anywhere() {
        use base64::Engine;
        let mut r = Redactor::new();
        r.add_url("http://ops:s%3Acret99@lb1/stats?token=t0k3nvalue");
        let basic = base64::engine::general_purpose::STANDARD.encode("ops:s%3Acret99");
        let decoded = base64::engine::general_purpose::STANDARD.encode("ops:s:cret99");
        let masked = r.redact(&format!(
            "echo: Authorization: Basic {basic} / {decoded} / s:cret99 / s%3Acret99 / t0k3nvalue"
        ));
        for secret in [&basic[..], &decoded, "s:cret99", "s%3Acret99", "t0k3nvalue"] {
            assert!(!masked.contains(secret), "{masked}");
        }
        assert!(!format!("{r:?}").contains("t0k3nvalue"));
        let mut all = Redactor::new();
        all.merge(&r);
        assert!(!all.is_empty());
        assert_eq!(all.redact("x t0k3nvalue y"), "x [redacted] y");
    }

    /// A `#` or `?` in a password (not allowed unencoded, but written so) used to end the
    /// user information early: the rest of the password was printed.
    #[test]
    fn a_password_with_a_hash_or_question_mark_is_masked_whole() {
        let r = Redactor::new();
        for url in [
            "http://admin:Pa#ss9word@127.0.0.1:18081/stats",
            "http://admin:Pa?ss9word@127.0.0.1:18081/stats",
        ] {
            assert_eq!(
                r.redact(&format!("HTTP 500 from {url}: x")),
                "HTTP 500 from http://[redacted]@127.0.0.1:18081/stats: x"
            );
            assert!(url_has_userinfo(url), "{url}");
        }
        let mut known = Redactor::new();
        known.add_url("http://admin:Pa#ss9word@127.0.0.1:18081/stats");
        assert_eq!(known.redact("said Pa#ss9word"), "said [redacted]");
        // A query with an `@` and no path is masked as user information: more, not less.
        assert!(!r.redact("http://h:9093?token=a@b x").contains("token=a"));
    }

    /// `state show --format json` prints secrets the way JSON escapes them.
    #[test]
    fn json_escaped_forms_are_masked() {
        let mut r = Redactor::new();
        r.add("se\"cr\\et-token");
        let json = serde_json::to_string("last error: se\"cr\\et-token").unwrap();
        assert_eq!(r.redact(&json), "\"last error: [redacted]\"");
    }
}
