//! The TOML configuration: loading, validation, and errors that point at the line.

pub mod notifier;

use crate::alert::Labels;
use crate::inhibit::{InhibitRule, RawInhibit};
use crate::rules::{Hold, RawRule, RuleSet};
use crate::secret::SecretRef;
use notifier::{Kind, Notifiers, RawNotifier, Routes};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// Where the config is read from when neither `-c` nor `HAPWATCH_CONFIG` is given.
pub const DEFAULT_PATH: &str = "/etc/hapwatch/hapwatch.toml";

/// Connect + read budget of a source when the config sets none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// How many sources are read at a time when the config does not say: enough for a
/// small machine (each costs a thread, a socket and a dump's buffer while it is read).
pub const DEFAULT_MAX_PARALLEL_SOURCES: usize = 16;

/// A validated configuration.
#[derive(Debug)]
pub struct Config {
    /// The file it was read from; relative paths inside are resolved against its directory.
    pub path: PathBuf,
    /// The `[[source]]` entries, in file order, with unique names.
    pub sources: Vec<SourceConfig>,
    /// The `[[rule]]` entries, compiled.
    pub rules: RuleSet,
    /// The `[[inhibit]]` entries (of the config, then of its includes), compiled.
    pub inhibit: Vec<InhibitRule>,
    /// `[source_unreachable]`: how the built-in SourceUnreachable alert behaves.
    pub source_unreachable: SourceUnreachable,
    /// `[state]`: where and how the state file is kept.
    pub state: StateSettings,
    /// `[history]`: the history of transitions and deliveries next to the state.
    pub history: HistorySettings,
    /// `[alerting]`: repeats, resolved notices, grouping, budget.
    pub alerting: Alerting,
    /// `[notifier.NAME]` entries, `[routes]` and the `[[route]]` tree.
    pub notifiers: Notifiers,
    /// `only_if`: notify only on the active node of an HA pair.
    pub only_if: Option<crate::ha::OnlyIf>,
    /// `[heartbeat]`: a URL pinged after each run.
    pub heartbeat: Option<crate::heartbeat::Heartbeat>,
    /// `max_parallel_sources`: how many sources are read at a time.
    pub max_parallel_sources: usize,
    /// `[[recurring_silence]]` entries, their time intervals resolved.
    pub recurring_silences: Vec<crate::silence::RecurringSilence>,
    /// Source name → the page an operator opens to act on its alerts (its `link`, else
    /// the stats page of a `url` source without credentials or query): Alertmanager's
    /// `generatorURL`.
    pub links: BTreeMap<String, String>,
}

/// `[state]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateSettings {
    /// The state file (default `/var/lib/hapwatch/state.json`).
    pub file: PathBuf,
    /// How long a run waits for another run's lock before giving up (default 30s).
    #[serde(deserialize_with = "crate::duration::deserialize")]
    pub lock_timeout: Duration,
}

impl Default for StateSettings {
    fn default() -> Self {
        StateSettings {
            file: PathBuf::from("/var/lib/hapwatch/state.json"),
            lock_timeout: Duration::from_secs(30),
        }
    }
}

/// `[history]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HistorySettings {
    /// Keep a history (default true).
    pub enabled: bool,
    /// The history file; `None`: next to the state file (`state.json` →
    /// `state.history.jsonl`), following `--state`.
    pub file: Option<PathBuf>,
    /// Lines are kept at least this long (default 35d, enough for a monthly report).
    #[serde(deserialize_with = "crate::duration::deserialize")]
    pub max_age: Duration,
    /// Both generations together stay below this many bytes (default 64 MiB); `"64MiB"`,
    /// `"500KB"` or a number of bytes.
    #[serde(deserialize_with = "deserialize_size")]
    pub max_size: u64,
}

impl Default for HistorySettings {
    fn default() -> Self {
        HistorySettings {
            enabled: true,
            file: None,
            max_age: Duration::from_secs(35 * 86_400),
            max_size: 64 << 20,
        }
    }
}

/// Parses a size: a number of bytes, or a number with `B`, `KB`/`KiB`, `MB`/`MiB`,
/// `GB`/`GiB` (both spellings in powers of 1024, as logrotate counts).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let number: u64 = number.parse().map_err(|_| {
        format!("invalid size {text:?}: expected a number of bytes or e.g. \"64MiB\"")
    })?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        other => {
            return Err(format!(
                "invalid size {text:?}: unknown unit {other:?} (use B, KiB, MiB or GiB)"
            ))
        }
    };
    number
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("invalid size {text:?}: too large"))
}

fn deserialize_size<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(u64),
        Text(String),
    }
    match Size::deserialize(deserializer)? {
        Size::Bytes(n) => Ok(n),
        Size::Text(t) => parse_size(&t).map_err(serde::de::Error::custom),
    }
}

/// `[alerting]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Alerting {
    /// Re-announce a problem that lasts this long since its last notification (default 4h).
    #[serde(deserialize_with = "crate::duration::deserialize")]
    pub repeat_interval: Duration,
    /// Announce recoveries (default true).
    pub send_resolved: bool,
    /// Labels that group one run's alerts into one notification (default alertname, source).
    pub group_by: Vec<String>,
    /// Beyond this many notifications in one run, the rest go into one digest (default 20).
    pub max_notifications_per_run: usize,
    /// How long a resolved alert is remembered (default 24h).
    #[serde(deserialize_with = "crate::duration::deserialize")]
    pub retention: Duration,
    /// How long an undelivered notification is retried before it is dropped, loudly
    /// (default 24h).
    #[serde(deserialize_with = "crate::duration::deserialize")]
    pub outbox_max_age: Duration,
    /// How long a run may take, from its start, before it stops delivering: what is not
    /// sent by then stays in the outbox, and the run ends with exit 1 (default 40s).
    #[serde(deserialize_with = "crate::duration::deserialize")]
    pub run_timeout: Duration,
    /// `[[time_interval]]` names during which alerts that reach no `[[route]]` (the
    /// implicit root) are not sent; resolved into `Notifiers::tree` at load.
    pub mute_time_intervals: Vec<Spanned<String>>,
    /// When set, alerts that reach no `[[route]]` are sent only during these.
    pub active_time_intervals: Vec<Spanned<String>>,
}

impl Default for Alerting {
    fn default() -> Self {
        Alerting {
            repeat_interval: Duration::from_secs(4 * 3600),
            send_resolved: true,
            group_by: vec!["alertname".into(), "source".into()],
            max_notifications_per_run: 20,
            retention: Duration::from_secs(24 * 3600),
            outbox_max_age: Duration::from_secs(24 * 3600),
            run_timeout: Duration::from_secs(40),
            mute_time_intervals: Vec::new(),
            active_time_intervals: Vec::new(),
        }
    }
}

/// `[source_unreachable]`: the knobs of a rule for the built-in SourceUnreachable alert.
/// The defaults are what it always was: critical, at the first failed read, to the
/// default route.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceUnreachable {
    /// `severity` label (default `critical`).
    pub severity: String,
    /// Extra labels.
    pub labels: Labels,
    /// `for` / `for_runs`: how long reads must keep failing before it fires.
    pub hold: Hold,
    /// Keep firing this long after the source answers again.
    pub keep_firing_for: Option<Duration>,
    /// Notifier names (empty: the default route, by severity).
    pub notify: Vec<String>,
    /// Whether its recovery is announced (`None`: each notifier's `send_resolved`).
    pub send_resolved: Option<bool>,
}

impl Default for SourceUnreachable {
    fn default() -> Self {
        SourceUnreachable {
            severity: "critical".into(),
            labels: Labels::new(),
            hold: Hold::Immediately,
            keep_firing_for: None,
            notify: Vec::new(),
            send_resolved: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSourceUnreachable {
    severity: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(
        rename = "for",
        default,
        deserialize_with = "crate::duration::deserialize_opt"
    )]
    for_duration: Option<Duration>,
    for_runs: Option<u32>,
    #[serde(default, deserialize_with = "crate::duration::deserialize_opt")]
    keep_firing_for: Option<Duration>,
    #[serde(default)]
    notify: Vec<String>,
    send_resolved: Option<bool>,
}

impl RawSourceUnreachable {
    fn compile(self) -> Result<SourceUnreachable, String> {
        let hold = match (self.for_duration, self.for_runs) {
            (Some(_), Some(_)) => return Err("set `for` or `for_runs`, not both".into()),
            (None, Some(0)) => return Err("`for_runs` counts runs and starts at 1".into()),
            (Some(d), None) if !d.is_zero() => Hold::For(d),
            (None, Some(n)) if n > 1 => Hold::Runs(n),
            _ => Hold::Immediately,
        };
        for label in self.labels.keys() {
            if crate::rules::RESERVED_LABELS.contains(&label.as_str()) {
                return Err(format!(
                    "label `{label}` is set by hapwatch; pick another name"
                ));
            }
            if label.is_empty() || !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("label name `{label}`: use letters, digits and `_`"));
            }
        }
        let severity = self.severity.unwrap_or_else(|| "critical".into());
        if severity.trim().is_empty() {
            return Err("severity must not be empty".into());
        }
        if self.notify.iter().any(|n| n.trim().is_empty()) {
            return Err("`notify` names must not be empty".into());
        }
        Ok(SourceUnreachable {
            severity,
            labels: self.labels,
            hold,
            keep_firing_for: self.keep_firing_for.filter(|d| !d.is_zero()),
            notify: self.notify,
            send_resolved: self.send_resolved,
        })
    }
}

/// One `[[source]]`: an HAProxy to read, or a captured dump.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// Unique name, used in output and as the `source` label of alerts.
    pub name: String,
    /// How to reach it.
    pub endpoint: Endpoint,
    /// Budget for connecting and for the whole read.
    pub timeout: Duration,
    /// Labels added to every alert from this source (`[source_defaults]` labels merged
    /// with its own `labels`, empty values dropped).
    pub labels: crate::alert::Labels,
    /// Line of the `[[source]]` entry in the config, for messages.
    pub line: usize,
    /// The file of `include_sources` that defines it; `None`: the main config.
    pub file: Option<PathBuf>,
}

/// How a source is reached.
#[derive(Debug, Clone)]
pub enum Endpoint {
    /// `socket = PATH`: the runtime API on a unix stream socket.
    Socket(PathBuf),
    /// `tcp = HOST:PORT`: the runtime API over TCP (`stats socket ipv4@…`).
    Tcp(String),
    /// `url = …`: the stats page; `;csv` is appended.
    Http(HttpEndpoint),
    /// `file = PATH`: a captured dump.
    File(PathBuf),
    /// `file = "-"`: a dump on standard input.
    Stdin,
}

/// The stats page of an HAProxy, over HTTP or HTTPS.
#[derive(Debug, Clone)]
pub struct HttpEndpoint {
    /// The stats URI as configured, e.g. `https://lb1:8404/stats`.
    pub url: String,
    /// Basic-auth user (`stats auth USER:PASS`).
    pub username: Option<String>,
    /// Basic-auth password.
    pub password: Option<SecretRef>,
    /// PEM bundle of CAs to trust instead of the built-in web roots.
    pub ca_file: Option<PathBuf>,
    /// Skip certificate verification; only when explicitly asked for.
    pub insecure: bool,
}

/// Why the config could not be used. Always names the file, and the line when known.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {}: {source}{}", path.display(), read_hint(source))]
    Read {
        /// The config path tried.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// Invalid TOML or an invalid value.
    #[error("{}:{line}:{column}: {message}", path.display())]
    Invalid {
        /// The config file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong and what to do.
        message: String,
    },
}

fn read_hint(err: &std::io::Error) -> &'static str {
    match err.kind() {
        std::io::ErrorKind::NotFound => {
            " (pass -c PATH or set HAPWATCH_CONFIG; `hapwatch init` writes a starter config)"
        }
        std::io::ErrorKind::PermissionDenied => {
            " (this user cannot read it: make it readable, e.g. `chmod 644`, and keep secrets in password_file / env:NAME / credential:NAME references, which the systemd unit's LoadCredential= hands over)"
        }
        _ => "",
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    source: Vec<Spanned<RawSource>>,
    #[serde(default)]
    include: Vec<Spanned<String>>,
    #[serde(default)]
    include_sources: Vec<Spanned<String>>,
    max_parallel_sources: Option<Spanned<usize>>,
    source_defaults: Option<Spanned<RawSourceDefaults>>,
    only_if: Option<Spanned<crate::ha::OnlyIf>>,
    heartbeat: Option<Spanned<crate::heartbeat::Heartbeat>>,
    #[serde(default)]
    state: StateSettings,
    #[serde(default)]
    history: HistorySettings,
    #[serde(default)]
    alerting: Alerting,
    #[serde(default)]
    routes: Option<Spanned<BTreeMap<String, Vec<String>>>>,
    #[serde(default)]
    notifier: BTreeMap<String, Spanned<RawNotifier>>,
    #[serde(default)]
    rule: Vec<Spanned<RawRule>>,
    #[serde(default)]
    route: Vec<Spanned<RawRoute>>,
    #[serde(default)]
    inhibit: Vec<Spanned<RawInhibit>>,
    source_unreachable: Option<Spanned<RawSourceUnreachable>>,
    #[serde(default)]
    time_interval: Vec<Spanned<RawTimeInterval>>,
    #[serde(default)]
    recurring_silence: Vec<Spanned<RawRecurringSilence>>,
}

/// A `[[time_interval]]` entry as written: one period of the interval `name`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTimeInterval {
    name: Spanned<String>,
    #[serde(default)]
    times: Vec<Spanned<String>>,
    #[serde(default)]
    weekdays: Vec<Spanned<String>>,
    #[serde(default)]
    days_of_month: Vec<Spanned<String>>,
    #[serde(default)]
    months: Vec<Spanned<String>>,
    #[serde(default)]
    years: Vec<Spanned<String>>,
    location: Option<Spanned<String>>,
}

/// A `[[recurring_silence]]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecurringSilence {
    matchers: Vec<Spanned<String>>,
    time_intervals: Vec<Spanned<String>>,
    #[serde(default)]
    comment: String,
}

/// The `[[time_interval]]` entries by name; entries of the same name are the periods of
/// one interval (the time is in it when it is in any of them).
type Intervals = BTreeMap<String, crate::timeinterval::TimeInterval>;

fn build_intervals(
    raw: &[Spanned<RawTimeInterval>],
    at: &dyn Fn(usize, String) -> ConfigError,
) -> Result<Intervals, ConfigError> {
    let mut out = Intervals::new();
    for entry in raw {
        let e = entry.get_ref();
        let name = e.name.get_ref().trim();
        let what = format!("[[time_interval]] {name}");
        if name.is_empty() {
            return Err(at(
                e.name.span().start,
                "[[time_interval]]: name must not be empty".into(),
            ));
        }
        let raw_period = crate::timeinterval::RawPeriod {
            times: placed(&e.times),
            weekdays: placed(&e.weekdays),
            days_of_month: placed(&e.days_of_month),
            months: placed(&e.months),
            years: placed(&e.years),
            location: e
                .location
                .as_ref()
                .map(|l| (l.get_ref().as_str(), l.span().start)),
        };
        let period = raw_period
            .build()
            .map_err(|(offset, m)| at(offset, format!("{what}: {m}")))?;
        out.entry(name.to_string())
            .or_insert_with(|| crate::timeinterval::TimeInterval {
                name: name.to_string(),
                periods: Vec::new(),
            })
            .periods
            .push(period);
    }
    Ok(out)
}

/// Each value with its offset in the file.
fn placed(values: &[Spanned<String>]) -> Vec<(&str, usize)> {
    values
        .iter()
        .map(|v| (v.get_ref().as_str(), v.span().start))
        .collect()
}

/// The intervals `names` refer to; an unknown name is an error at its place.
fn resolve_intervals(
    names: &[Spanned<String>],
    intervals: &Intervals,
    what: &str,
    at: &dyn Fn(usize, String) -> ConfigError,
) -> Result<Vec<crate::timeinterval::TimeInterval>, ConfigError> {
    names
        .iter()
        .map(|n| {
            intervals.get(n.get_ref().trim()).cloned().ok_or_else(|| {
                at(
                    n.span().start,
                    format!(
                        "{what}: no [[time_interval]] named {:?}{} (time intervals: {})",
                        n.get_ref(),
                        crate::rules::expr::suggest(
                            n.get_ref(),
                            intervals.keys().map(String::as_str)
                        ),
                        if intervals.is_empty() {
                            "none".to_string()
                        } else {
                            intervals.keys().cloned().collect::<Vec<_>>().join(", ")
                        }
                    ),
                )
            })
        })
        .collect()
}

/// A `[[route]]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    name: Option<String>,
    #[serde(default)]
    matchers: Vec<Spanned<String>>,
    notify: Option<Vec<String>>,
    #[serde(rename = "continue", default)]
    continue_matching: bool,
    group_by: Option<Vec<String>>,
    #[serde(default, deserialize_with = "crate::duration::deserialize_opt")]
    repeat_interval: Option<Duration>,
    send_resolved: Option<bool>,
    #[serde(default)]
    mute_time_intervals: Vec<Spanned<String>>,
    #[serde(default)]
    active_time_intervals: Vec<Spanned<String>>,
    #[serde(default)]
    route: Vec<Spanned<RawRoute>>,
}

/// Builds `[[route]]` entries below `parent` (whose settings they inherit), checking
/// matchers and notifier names; `path` is the parent's position (`""` for the root).
fn build_routes(
    raw: Vec<Spanned<RawRoute>>,
    parent: &crate::route::Route,
    path: &str,
    (notifiers, intervals): (&Notifiers, &Intervals),
    text: &str,
    at: &dyn Fn(usize, String) -> ConfigError,
    ids: &mut HashSet<String>,
) -> Result<Vec<crate::route::Route>, ConfigError> {
    let mut out = Vec::new();
    for (i, spanned) in raw.into_iter().enumerate() {
        let offset = spanned.span().start;
        let raw = spanned.into_inner();
        let position = if path.is_empty() {
            (i + 1).to_string()
        } else {
            format!("{path}.{}", i + 1)
        };
        let id = raw.name.clone().unwrap_or_else(|| position.clone());
        let what = format!("[[route]] {id}");
        if raw
            .name
            .as_deref()
            .is_some_and(|n| n.trim().is_empty() || n.contains('.'))
        {
            return Err(at(
                offset,
                format!("{what}: a route name is non-empty and has no `.`"),
            ));
        }
        if !ids.insert(id.clone()) {
            return Err(at(offset, format!("{what}: duplicate route name")));
        }
        let mut matchers = Vec::new();
        for m in &raw.matchers {
            matchers.push(
                crate::silence::Matcher::parse(m.get_ref())
                    .map_err(|e| at(m.span().start, format!("{what}: {e}")))?,
            );
        }
        let notify = raw.notify.unwrap_or_else(|| parent.notify.clone());
        for name in &notify {
            if notifiers.get(name).is_none() {
                let names: Vec<&str> = notifiers.list.iter().map(|n| n.name.as_str()).collect();
                return Err(at(
                    offset,
                    format!(
                        "{what}: notify: no notifier named {name:?}{} (notifiers: {})",
                        crate::rules::expr::suggest(name, names.iter().copied()),
                        if names.is_empty() {
                            "none".to_string()
                        } else {
                            names.join(", ")
                        }
                    ),
                ));
            }
        }
        if raw.repeat_interval.is_some_and(|d| d.is_zero()) {
            return Err(at(
                offset,
                format!("{what}: repeat_interval must be more than 0s"),
            ));
        }
        let mut route = crate::route::Route {
            id,
            matchers,
            notify,
            continue_matching: raw.continue_matching,
            group_by: raw.group_by.unwrap_or_else(|| parent.group_by.clone()),
            repeat_interval: raw.repeat_interval.unwrap_or(parent.repeat_interval),
            send_resolved: raw.send_resolved.or(parent.send_resolved),
            mute_time_intervals: resolve_intervals(
                &raw.mute_time_intervals,
                intervals,
                &format!("{what}: mute_time_intervals"),
                at,
            )?,
            active_time_intervals: resolve_intervals(
                &raw.active_time_intervals,
                intervals,
                &format!("{what}: active_time_intervals"),
                at,
            )?,
            routes: Vec::new(),
            line: line_col(text, offset).0,
        };
        route.routes = build_routes(
            raw.route,
            &route,
            &position,
            (notifiers, intervals),
            text,
            at,
            ids,
        )?;
        out.push(route);
    }
    Ok(out)
}

/// A file matched by `include_sources`: sources only, with defaults of its own.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSourceFile {
    #[serde(default)]
    source: Vec<Spanned<RawSource>>,
    source_defaults: Option<Spanned<RawSourceDefaults>>,
}

/// A file being read, for errors that point into it.
struct File<'a> {
    path: &'a Path,
    text: &'a str,
    /// Readable by its owner only (inline secrets allowed).
    private: bool,
}

impl File<'_> {
    fn at(&self, offset: usize, message: String) -> ConfigError {
        let (line, column) = line_col(self.text, offset);
        ConfigError::Invalid {
            path: self.path.to_path_buf(),
            line,
            column,
            message,
        }
    }
}

/// The sources read so far, from the main config and every source file.
#[derive(Default)]
struct Sources {
    list: Vec<SourceConfig>,
    links: BTreeMap<String, String>,
    /// Name → where it is defined (`path:line:col`), for duplicates.
    defined: std::collections::HashMap<String, String>,
}

/// What `[source_defaults]` gives every source of a file.
#[derive(Clone, Default)]
struct Defaults {
    timeout: Option<Duration>,
    labels: crate::alert::Labels,
}

impl Defaults {
    /// These defaults with a file's `[source_defaults]` over them.
    fn with(
        &self,
        raw: Option<Spanned<RawSourceDefaults>>,
        file: &File,
    ) -> Result<Defaults, ConfigError> {
        let Some(raw) = raw else {
            return Ok(self.clone());
        };
        let at = raw.span().start;
        let raw = raw.into_inner();
        if raw.timeout.is_some_and(|t| t.is_zero()) {
            return Err(file.at(
                at,
                "[source_defaults] timeout must be more than 0s (e.g. \"5s\")".into(),
            ));
        }
        let labels = check_labels(raw.labels.as_ref(), &self.labels)
            .map_err(|(o, m)| file.at(o, format!("[source_defaults] {m}")))?;
        Ok(Defaults {
            timeout: raw.timeout.or(self.timeout),
            labels,
        })
    }
}

/// A file named by `include`: rules and inhibitions only.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInclude {
    #[serde(default)]
    rule: Vec<Spanned<RawRule>>,
    #[serde(default)]
    inhibit: Vec<Spanned<RawInhibit>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    name: Spanned<String>,
    socket: Option<String>,
    tcp: Option<String>,
    url: Option<String>,
    file: Option<String>,
    username: Option<String>,
    password: Option<String>,
    password_file: Option<String>,
    ca_file: Option<String>,
    #[serde(default)]
    insecure: bool,
    #[serde(default, deserialize_with = "crate::duration::deserialize_opt")]
    timeout: Option<Duration>,
    link: Option<String>,
    labels: Option<RawLabels>,
}

/// A `labels = { … }` table, each name with its place in the file.
type RawLabels = BTreeMap<Spanned<String>, String>;

/// `[source_defaults]`: what every `[[source]]` gets unless it says otherwise.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSourceDefaults {
    #[serde(default, deserialize_with = "crate::duration::deserialize_opt")]
    timeout: Option<Duration>,
    labels: Option<RawLabels>,
}

/// The stats page of `url` as a link anyone may see: without `user:password@`, query or
/// fragment (which may hold a token).
fn public_link(url: &str) -> String {
    let url = url.split(['?', '#']).next().unwrap_or(url);
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            format!("{scheme}://{host}{path}")
        }
        None => url.to_string(),
    }
}

impl Config {
    /// The link of the source named by `labels`' `source` label, if one is known.
    pub fn link_of(&self, labels: &crate::alert::Labels) -> Option<String> {
        self.links.get(labels.get("source")?).cloned()
    }

    /// Reads and validates the config at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let private = is_private(path);
        let config = Config::parse(&text, path, private)?;
        // From here on every error text and log line masks this config's secrets.
        crate::secret::install(&config.redactor());
        Ok(config)
    }

    /// A redactor that knows every secret of this config (those that resolve now) and
    /// every configured URL: see [`crate::secret::Redactor`].
    pub fn redactor(&self) -> crate::secret::Redactor {
        let mut redactor = crate::secret::Redactor::new();
        for source in &self.sources {
            if let Endpoint::Http(http) = &source.endpoint {
                redactor.add_url(&http.url);
                if let Some(Ok(password)) = http.password.as_ref().map(SecretRef::resolve) {
                    let user = http.username.as_deref().unwrap_or_default();
                    redactor.add_credentials(user, password.expose());
                }
            }
        }
        for notifier in &self.notifiers.list {
            notifier.add_secrets(&mut redactor);
        }
        if let Some(heartbeat) = &self.heartbeat {
            for url in std::iter::once(&heartbeat.url).chain(&heartbeat.fail_url) {
                redactor.add_url(url);
            }
        }
        redactor
    }

    /// Validates config `text` read from `path`. `private` says whether the file is
    /// readable by its owner only, which inline secrets require.
    pub fn parse(text: &str, path: &Path, private: bool) -> Result<Config, ConfigError> {
        let at = |offset: usize, message: String| {
            let (line, column) = line_col(text, offset);
            ConfigError::Invalid {
                path: path.to_path_buf(),
                line,
                column,
                message,
            }
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            at(offset, explain_toml_error(e.message()))
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let main = File {
            path,
            text,
            private,
        };
        let defaults = Defaults::default().with(raw.source_defaults, &main)?;
        let mut sources = Sources::default();
        add_sources(raw.source, &main, None, base, &defaults, &mut sources)?;
        for pattern in &raw.include_sources {
            for file_path in source_files(base, pattern.get_ref())
                .map_err(|m| at(pattern.span().start, format!("include_sources: {m}")))?
            {
                let file_text = std::fs::read_to_string(&file_path).map_err(|e| {
                    at(
                        pattern.span().start,
                        format!("include_sources: cannot read {}: {e}", file_path.display()),
                    )
                })?;
                let file = File {
                    path: &file_path,
                    text: &file_text,
                    private: is_private(&file_path),
                };
                let raw: RawSourceFile = toml::from_str(&file_text).map_err(|e| {
                    let message = explain_toml_error(e.message());
                    let message = if message.starts_with("unknown key") {
                        format!("{message} (a file of include_sources holds [[source]] entries and [source_defaults] only)")
                    } else {
                        message
                    };
                    file.at(e.span().map_or(0, |s| s.start), message)
                })?;
                let defaults = defaults.with(raw.source_defaults, &file)?;
                let file_base = file_path.parent().unwrap_or(Path::new("."));
                add_sources(
                    raw.source,
                    &file,
                    Some(&file_path),
                    file_base,
                    &defaults,
                    &mut sources,
                )?;
            }
        }
        let Sources {
            list: sources,
            links,
            ..
        } = sources;
        let mut rules = RuleSet::default();
        rules.add_source_labels(
            sources
                .iter()
                .flat_map(|s| s.labels.keys().map(String::as_str)),
        );
        rules
            .add(raw.rule, text)
            .map_err(|(offset, message)| at(offset, message))?;
        let mut inhibit = raw
            .inhibit
            .into_iter()
            .map(InhibitRule::compile)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|(offset, message)| at(offset, message))?;
        let source_unreachable = match raw.source_unreachable {
            Some(spanned) => {
                let offset = spanned.span().start;
                spanned
                    .into_inner()
                    .compile()
                    .map_err(|m| at(offset, format!("[source_unreachable]: {m}")))?
            }
            None => SourceUnreachable::default(),
        };
        for include in &raw.include {
            let included = base.join(include.get_ref());
            let included_text = std::fs::read_to_string(&included).map_err(|e| {
                at(
                    include.span().start,
                    format!("cannot read included file {}: {e}", included.display()),
                )
            })?;
            let in_included = |offset: usize, message: String| {
                let (line, column) = line_col(&included_text, offset);
                ConfigError::Invalid {
                    path: included.clone(),
                    line,
                    column,
                    message,
                }
            };
            let raw: RawInclude = toml::from_str(&included_text).map_err(|e| {
                let message = explain_toml_error(e.message());
                let message = if message.starts_with("unknown key") {
                    format!(
                        "{message} (an included file holds [[rule]] and [[inhibit]] entries only)"
                    )
                } else {
                    message
                };
                in_included(e.span().map_or(0, |s| s.start), message)
            })?;
            rules
                .add(raw.rule, &included_text)
                .map_err(|(offset, message)| in_included(offset, message))?;
            for entry in raw.inhibit {
                inhibit.push(
                    InhibitRule::compile(entry)
                        .map_err(|(offset, message)| in_included(offset, message))?,
                );
            }
        }
        let mut notifiers =
            build_notifiers(raw.notifier, raw.routes, &rules, base, private, text, &at)?;
        let root = crate::route::Route {
            id: String::new(),
            matchers: Vec::new(),
            notify: Vec::new(),
            continue_matching: false,
            group_by: raw.alerting.group_by.clone(),
            repeat_interval: raw.alerting.repeat_interval,
            send_resolved: None,
            mute_time_intervals: Vec::new(),
            active_time_intervals: Vec::new(),
            routes: Vec::new(),
            line: 0,
        };
        let intervals = build_intervals(&raw.time_interval, &at)?;
        notifiers.tree.root_mute_time_intervals = resolve_intervals(
            &raw.alerting.mute_time_intervals,
            &intervals,
            "[alerting] mute_time_intervals",
            &at,
        )?;
        notifiers.tree.root_active_time_intervals = resolve_intervals(
            &raw.alerting.active_time_intervals,
            &intervals,
            "[alerting] active_time_intervals",
            &at,
        )?;
        let mut recurring_silences = Vec::new();
        for entry in &raw.recurring_silence {
            let offset = entry.span().start;
            let e = entry.get_ref();
            let what = format!("[[recurring_silence]] {}", recurring_silences.len() + 1);
            let mut matchers = Vec::new();
            for m in &e.matchers {
                matchers.push(
                    crate::silence::Matcher::parse(m.get_ref())
                        .map_err(|err| at(m.span().start, format!("{what}: {err}")))?,
                );
            }
            if matchers.is_empty() {
                return Err(at(
                    offset,
                    format!("{what}: give at least one matcher (e.g. matchers = [\"proxy=be-db\"]); a silence of everything is mute_time_intervals in [alerting]"),
                ));
            }
            if e.time_intervals.is_empty() {
                return Err(at(
                    offset,
                    format!("{what}: give time_intervals = [\"NAME\"] of a [[time_interval]]"),
                ));
            }
            recurring_silences.push(crate::silence::RecurringSilence {
                matchers,
                time_intervals: resolve_intervals(
                    &e.time_intervals,
                    &intervals,
                    &format!("{what}: time_intervals"),
                    &at,
                )?,
                comment: e.comment.clone(),
                line: line_col(text, offset).0,
            });
        }
        notifiers.tree.routes = build_routes(
            raw.route,
            &root,
            "",
            (&notifiers, &intervals),
            text,
            &at,
            &mut HashSet::new(),
        )?;
        if let Some(bad) = source_unreachable
            .notify
            .iter()
            .find(|n| notifiers.get(n).is_none())
        {
            let offset = text.find("[source_unreachable]").unwrap_or(0);
            let names: Vec<&str> = notifiers.list.iter().map(|n| n.name.as_str()).collect();
            return Err(at(
                offset,
                format!(
                    "[source_unreachable]: notify: no notifier named {bad:?}{} (notifiers: {})",
                    crate::rules::expr::suggest(bad, names.iter().copied()),
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                ),
            ));
        }
        if let Some(guard) = &raw.only_if {
            guard
                .get_ref()
                .validate()
                .map_err(|m| at(guard.span().start, m))?;
        }
        if let Some(heartbeat) = &raw.heartbeat {
            heartbeat
                .get_ref()
                .validate()
                .map_err(|m| at(heartbeat.span().start, m))?;
            let hb = heartbeat.get_ref();
            if !private
                && std::iter::once(&hb.url)
                    .chain(&hb.fail_url)
                    .any(|u| crate::secret::url_has_userinfo(u))
            {
                return Err(at(
                    heartbeat.span().start,
                    format!(
                        "[heartbeat]: a url with a user name or password in it (`user:password@`) in a config \
                         that group or others can read; `chmod 600 {}` (heartbeat URLs take no separate credentials)",
                        path.display()
                    ),
                ));
            }
        }
        let mut state = raw.state;
        state.file = base.join(&state.file);
        let mut history = raw.history;
        history.file = history.file.map(|f| base.join(f));
        if history.max_size < 4096 {
            return Err(at(
                0,
                "[history] max_size must be at least 4KiB (one run's lines must fit)".into(),
            ));
        }
        if raw.alerting.run_timeout.is_zero() {
            return Err(at(
                0,
                "[alerting] run_timeout must be more than 0s (e.g. \"40s\")".into(),
            ));
        }
        if raw.alerting.max_notifications_per_run == 0 {
            return Err(at(
                0,
                "[alerting] max_notifications_per_run must be at least 1".into(),
            ));
        }
        Ok(Config {
            path: path.to_path_buf(),
            sources,
            rules,
            inhibit,
            source_unreachable,
            state,
            history,
            alerting: raw.alerting,
            notifiers,
            only_if: raw.only_if.map(Spanned::into_inner),
            heartbeat: raw.heartbeat.map(Spanned::into_inner),
            recurring_silences,
            max_parallel_sources: match raw.max_parallel_sources {
                None => DEFAULT_MAX_PARALLEL_SOURCES,
                Some(n) if *n.get_ref() == 0 => {
                    return Err(at(
                        n.span().start,
                        "max_parallel_sources must be at least 1 (default 16)".into(),
                    ))
                }
                Some(n) => n.into_inner(),
            },
            links,
        })
    }

    /// Fails unless at least one `[[source]]` is configured (commands that read HAProxy).
    pub fn require_sources(&self) -> Result<(), ConfigError> {
        if self.sources.is_empty() {
            return Err(ConfigError::Invalid {
                path: self.path.clone(),
                line: 1,
                column: 1,
                message: "no [[source]] defined: add one, e.g. [[source]] name = \"lb1\" socket = \"/run/haproxy/admin.sock\"".into(),
            });
        }
        Ok(())
    }

    /// The source called `name`.
    pub fn source(&self, name: &str) -> Option<&SourceConfig> {
        self.sources.iter().find(|s| s.name == name)
    }

    /// The labels of the source called `name` (none for a source the config does not
    /// have, e.g. `hapwatch eval --source`).
    pub fn source_labels(&self, name: &str) -> &crate::alert::Labels {
        static NONE: crate::alert::Labels = crate::alert::Labels::new();
        self.source(name).map_or(&NONE, |s| &s.labels)
    }
}

/// Builds `[notifier.*]` and `[routes]`, and checks every notifier name a rule, route or
/// fallback mentions.
fn build_notifiers(
    raw: BTreeMap<String, Spanned<RawNotifier>>,
    routes: Option<Spanned<BTreeMap<String, Vec<String>>>>,
    rules: &RuleSet,
    base: &Path,
    private: bool,
    text: &str,
    at: &dyn Fn(usize, String) -> ConfigError,
) -> Result<Notifiers, ConfigError> {
    let mut notifiers = Notifiers::default();
    let mut fallbacks = Vec::new();
    for (name, spanned) in raw {
        let offset = spanned.span().start;
        let raw = spanned.into_inner();
        if let Some((fallback, fallback_at)) = raw.fallback() {
            fallbacks.push((name.clone(), fallback.to_string(), fallback_at));
        }
        let notifier = raw
            .build(&name, base, private, &mut notifiers.templates)
            .map_err(|m| at(offset, format!("notifier {name:?}: {m}")))?;
        notifiers.list.push(notifier);
    }
    let names: Vec<&str> = notifiers.list.iter().map(|n| n.name.as_str()).collect();
    let unknown = |name: &str| {
        format!(
            "no notifier named {name:?}{} (notifiers: {})",
            crate::rules::expr::suggest(name, names.iter().copied()),
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        )
    };
    for (name, fallback, offset) in &fallbacks {
        let target = notifiers.get(fallback).ok_or_else(|| {
            at(
                *offset,
                format!("notifier {name:?}: fallback: {}", unknown(fallback)),
            )
        })?;
        let source = notifiers.get(name).expect("built above");
        if fallback == name
            || matches!(target.kind, Kind::Alertmanager(_))
            || matches!(source.kind, Kind::Alertmanager(_))
        {
            return Err(at(
                *offset,
                format!("notifier {name:?}: fallback must be another smtp or webhook notifier (Alertmanager re-sends every run by itself)"),
            ));
        }
    }
    for rule in &rules.rules {
        if let Some(bad) = rule.notify.iter().find(|n| notifiers.get(n).is_none()) {
            let offset = text.lines().take(rule.line - 1).map(|l| l.len() + 1).sum();
            return Err(at(
                offset,
                format!("rule {:?}: notify: {}", rule.name, unknown(bad)),
            ));
        }
    }
    if let Some(routes) = routes {
        let offset = routes.span().start;
        let by_severity = routes.into_inner();
        for name in by_severity.values().flatten() {
            if notifiers.get(name).is_none() {
                return Err(at(offset, format!("[routes]: {}", unknown(name))));
            }
        }
        notifiers.routes = Routes { by_severity };
    }
    Ok(notifiers)
}

fn endpoint(src: &RawSource, base: &Path) -> Result<Endpoint, String> {
    let given: Vec<&str> = [
        ("socket", &src.socket),
        ("tcp", &src.tcp),
        ("url", &src.url),
        ("file", &src.file),
    ]
    .into_iter()
    .filter(|(_, v)| v.is_some())
    .map(|(k, _)| k)
    .collect();
    if given.len() != 1 {
        return Err(format!(
            "needs exactly one of socket, tcp, url or file (found {})",
            if given.is_empty() {
                "none".to_string()
            } else {
                given.join(", ")
            }
        ));
    }
    let http_only = [
        ("username", src.username.is_some()),
        ("password", src.password.is_some()),
        ("password_file", src.password_file.is_some()),
        ("ca_file", src.ca_file.is_some()),
        ("insecure", src.insecure),
    ];
    if src.url.is_none() {
        if let Some((key, _)) = http_only.iter().find(|(_, set)| *set) {
            return Err(format!("`{key}` only applies to a `url` source"));
        }
    }
    let resolve = |p: &str| base.join(p);
    Ok(if let Some(path) = &src.socket {
        Endpoint::Socket(resolve(path))
    } else if let Some(addr) = &src.tcp {
        let Some((host, port)) = addr.rsplit_once(':') else {
            // `tcp = "9999"`: a port alone is the usual slip (haproxy.cfg's `ipv4@:9999`).
            return Err(if addr.parse::<u16>().is_ok() {
                format!("tcp = {addr:?} needs a host before the port, e.g. \"127.0.0.1:{addr}\"")
            } else {
                format!("tcp = {addr:?} needs a port, e.g. \"{addr}:9999\"")
            });
        };
        if host.trim_matches(['[', ']']).is_empty() {
            return Err(format!(
                "tcp = {addr:?} needs a host before the port, e.g. \"127.0.0.1{}\"",
                &addr[addr.len() - port.len() - 1..]
            ));
        }
        if !port.parse::<u16>().is_ok_and(|p| p != 0) {
            return Err(format!(
                "tcp = {addr:?}: {port:?} is not a TCP port; give one from 1 to 65535, e.g. \
                 \"127.0.0.1:9999\""
            ));
        }
        Endpoint::Tcp(addr.clone())
    } else if let Some(url) = &src.url {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!("url = {url:?} must start with http:// or https://"));
        }
        let password = match (&src.password, &src.password_file) {
            (Some(_), Some(_)) => {
                return Err("give password or password_file, not both".into());
            }
            (Some(value), None) => Some(SecretRef::from_value(value)),
            (None, Some(file)) => Some(SecretRef::from_file(&resolve(file))),
            (None, None) => None,
        };
        if password.is_some() && src.username.is_none() {
            return Err("a password needs a username".into());
        }

        Endpoint::Http(HttpEndpoint {
            url: url.clone(),
            username: src.username.clone(),
            password,
            ca_file: src.ca_file.as_deref().map(resolve),
            insecure: src.insecure,
        })
    } else {
        match src.file.as_deref() {
            Some("-") => Endpoint::Stdin,
            Some(path) => Endpoint::File(resolve(path)),
            None => unreachable!("exactly one endpoint key is set"),
        }
    })
}

/// Validates `[[source]]` entries of `file` (paths relative to `base`) and adds them.
fn add_sources(
    raw: Vec<Spanned<RawSource>>,
    file: &File,
    file_path: Option<&Path>,
    base: &Path,
    defaults: &Defaults,
    sources: &mut Sources,
) -> Result<(), ConfigError> {
    let (path, text, private) = (file.path, file.text, file.private);
    let at = |offset: usize, message: String| file.at(offset, message);
    for spanned in raw {
        let offset = spanned.span().start;
        let src = spanned.into_inner();
        let name = src.name.get_ref().trim().to_string();
        let name_at = src.name.span().start;
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(at(
                name_at,
                format!(
                    "source name {:?} must be non-empty and have no spaces",
                    name
                ),
            ));
        }
        let (line, column) = line_col(text, name_at);
        if let Some(first) = sources.defined.get(&name) {
            let also = if first.starts_with(&format!("{}:", path.display())) {
                String::new()
            } else {
                format!(" (first defined at {first})")
            };
            return Err(at(
                name_at,
                format!("duplicate source name {name:?}: each [[source]] needs its own name{also}"),
            ));
        }
        sources
            .defined
            .insert(name.clone(), format!("{}:{line}:{column}", path.display()));
        let endpoint =
            endpoint(&src, base).map_err(|m| at(offset, format!("source {name:?}: {m}")))?;
        if let Endpoint::Http(http) = &endpoint {
            if crate::secret::url_has_userinfo(&http.url) && !private {
                return Err(at(
                    key_offset(text, offset, "url").unwrap_or(offset),
                    format!(
                        "source {name:?}: a url with a user name or password in it (`user:password@`) in a config \
                         that group or others can read; use username with password_file or password = \"env:NAME\", \
                         or `chmod 600 {}`",
                        path.display()
                    ),
                ));
            }
            if matches!(http.password, Some(SecretRef::Inline(_))) && !private {
                return Err(at(
                    key_offset(text, offset, "password").unwrap_or(offset),
                    format!(
                        "source {name:?}: an inline password in a config that group or others can read; \
                         use password_file or password = \"env:NAME\", or `chmod 600 {}`",
                        path.display()
                    ),
                ));
            }
        }
        if src.timeout.is_some_and(|t| t.is_zero()) {
            return Err(at(
                offset,
                format!("source {name:?}: timeout must be more than 0s"),
            ));
        }
        if let Some(link) = &src.link {
            if !(link.starts_with("http://") || link.starts_with("https://"))
                || link.contains(char::is_whitespace)
                || crate::secret::url_has_userinfo(link)
            {
                return Err(at(
                    offset,
                    format!(
                        "source {name:?}: link {link:?} must be an http:// or https:// URL without spaces \
                         or a user name (it is shown to whoever gets the alerts)"
                    ),
                ));
            }
            sources.links.insert(name.clone(), link.clone());
        } else if let Endpoint::Http(http) = &endpoint {
            sources.links.insert(name.clone(), public_link(&http.url));
        }
        let labels = check_labels(src.labels.as_ref(), &defaults.labels)
            .map_err(|(o, m)| at(o, format!("source {name:?}: {m}")))?;
        sources.list.push(SourceConfig {
            name,
            endpoint,
            timeout: src.timeout.or(defaults.timeout).unwrap_or(DEFAULT_TIMEOUT),
            labels,
            line: line_col(text, offset).0,
            file: file_path.map(Path::to_path_buf),
        });
    }
    Ok(())
}

/// The files an `include_sources` pattern names, sorted by name: a path, or a directory
/// and a file-name glob (`sources.d/*.toml`; `*` and `?` in the last part only). A
/// missing directory or a named file that is missing is an error (a typo or a missing
/// mount must not silently drop load balancers); a glob that matches nothing is not (a
/// directory that configuration management has not filled yet). Hidden files (`.#lb1.toml`
/// editor locks) are skipped; symbolic links are followed (configuration management links
/// enabled sources), and what they point at must be a file.
fn source_files(base: &Path, pattern: &str) -> Result<Vec<PathBuf>, String> {
    let full = base.join(pattern);
    let name = full
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("{pattern:?} names no file; e.g. \"sources.d/*.toml\""))?;
    let dir = full.parent().unwrap_or(Path::new("."));
    if dir.to_str().is_some_and(|d| d.contains(['*', '?'])) {
        return Err(format!(
            "{pattern:?}: `*` and `?` work in the file name only, e.g. \"sources.d/*.toml\""
        ));
    }
    let check = |path: &Path| -> Result<(), String> {
        match std::fs::metadata(path) {
            Ok(m) if m.is_file() => Ok(()),
            Ok(_) => Err(format!("{} is not a file", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(format!(
                "{} does not exist{}",
                path.display(),
                if std::fs::symlink_metadata(path).is_ok() {
                    " (a symbolic link to nothing)"
                } else {
                    ""
                }
            )),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    };
    if !name.contains(['*', '?']) {
        check(&full)?;
        return Ok(vec![full]);
    }
    let entries = std::fs::read_dir(dir).map_err(|e| {
        format!(
            "cannot list {}: {e} (create the directory, or remove the pattern)",
            dir.display()
        )
    })?;
    let glob = wildmatch::WildMatch::new(name);
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            continue;
        };
        if file_name.starts_with('.') || !glob.matches(file_name) {
            continue;
        }
        let path = entry.path();
        check(&path)?;
        files.push(path);
    }
    files.sort();
    Ok(files)
}

/// Checks a `labels` table and merges it over `defaults`: a label set to `""` removes
/// the default (an empty value means "no such label", as in Alertmanager). Errors carry
/// the offset of the offending name.
fn check_labels(
    raw: Option<&RawLabels>,
    defaults: &crate::alert::Labels,
) -> Result<crate::alert::Labels, (usize, String)> {
    let mut labels = defaults.clone();
    for (name, value) in raw.into_iter().flatten() {
        crate::rules::check_label_name(name.get_ref())
            .map_err(|m| (name.span().start, format!("labels: {m}")))?;
        if value.is_empty() {
            labels.remove(name.get_ref());
        } else {
            labels.insert(name.get_ref().clone(), value.clone());
        }
    }
    Ok(labels)
}

/// Rewrites serde's "unknown field `x`, expected one of `a`, `b`" into a suggestion.
fn explain_toml_error(message: &str) -> String {
    let message = message.trim();
    let Some(rest) = message.strip_prefix("unknown field `") else {
        return message.to_string();
    };
    let Some((unknown, expected)) = rest.split_once('`') else {
        return message.to_string();
    };
    let valid: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    let suggestion = valid
        .iter()
        .map(|v| (strsim::levenshtein(unknown, v), *v))
        .filter(|(d, v)| *d <= 2.max(v.len() / 3))
        .min()
        .map(|(_, v)| format!(" (did you mean `{v}`?)"))
        .unwrap_or_default();
    format!(
        "unknown key `{unknown}`{suggestion}; valid keys here: {}",
        valid.join(", ")
    )
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(offset, |nl| offset - nl - 1) + 1;
    (line, column)
}

/// Where `key = …` is written in the table that starts at `table` (a `[[source]]` line):
/// an error about one key points at its line, not at the table's. `None` if it is written
/// in another form (an inline table, a dotted key), where the table's line is the best guess.
fn key_offset(text: &str, table: usize, key: &str) -> Option<usize> {
    let mut at = table;
    let mut lines = text[table..].split_inclusive('\n');
    // The table's own header line.
    at += lines.next()?.len();
    for line in lines {
        let trimmed = line.trim_start();
        if trimmed.starts_with('[') {
            return None;
        }
        if let Some(rest) = trimmed.strip_prefix(key) {
            if rest.trim_start().starts_with('=') {
                return Some(at + (line.len() - trimmed.len()));
            }
        }
        at += line.len();
    }
    None
}

#[cfg(unix)]
fn is_private(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o077 == 0)
}

#[cfg(not(unix))]
fn is_private(_path: &Path) -> bool {
    true
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_stats_page_link_carries_no_credentials_or_query() {
        assert_eq!(
            super::public_link("https://admin:pw@lb1.example.net:8404/stats?token=x#top"),
            "https://lb1.example.net:8404/stats"
        );
        assert_eq!(
            super::public_link("http://127.0.0.1:8404/stats"),
            "http://127.0.0.1:8404/stats"
        );
        assert_eq!(super::public_link("http://lb1"), "http://lb1");
    }

    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text, Path::new("/etc/hw/h.toml"), false).map_err(|e| e.to_string())
    }

    #[test]
    fn reads_every_endpoint_kind() {
        let cfg = parse(
            r#"
[[source]]
name = "a"
socket = "/run/haproxy/admin.sock"
[[source]]
name = "b"
tcp = "127.0.0.1:9999"
timeout = "2s"
[[source]]
name = "c"
url = "https://lb1:8404/stats"
username = "admin"
password = "env:HAP_PW"
[[source]]
name = "d"
file = "snap.csv"
[[source]]
name = "e"
file = "-"
"#,
        )
        .unwrap();
        assert_eq!(cfg.sources.len(), 5);
        assert!(
            matches!(&cfg.sources[0].endpoint, Endpoint::Socket(p) if p == Path::new("/run/haproxy/admin.sock"))
        );
        assert_eq!(cfg.sources[0].timeout, DEFAULT_TIMEOUT);
        assert_eq!(cfg.sources[1].timeout, Duration::from_secs(2));
        assert!(
            matches!(&cfg.sources[2].endpoint, Endpoint::Http(h) if h.password == Some(SecretRef::Env("HAP_PW".into())))
        );
        assert!(
            matches!(&cfg.sources[3].endpoint, Endpoint::File(p) if p == Path::new("/etc/hw/snap.csv"))
        );
        assert!(matches!(&cfg.sources[4].endpoint, Endpoint::Stdin));
        assert_eq!(cfg.sources[1].line, 5);
    }

    #[test]
    fn unknown_key_cites_line_and_suggests() {
        let err = parse("[[source]]\nname = \"a\"\nsokcet = \"/x\"\n").unwrap_err();
        assert!(
            err.starts_with("/etc/hw/h.toml:3:1: unknown key `sokcet` (did you mean `socket`?)"),
            "{err}"
        );
    }

    #[test]
    fn semantic_errors_cite_the_entry() {
        let err = parse("[[source]]\nname = \"a\"\n\n[[source]]\nname = \"a\"\nfile = \"x\"\n")
            .unwrap_err();
        assert_eq!(
            err,
            "/etc/hw/h.toml:1:1: source \"a\": needs exactly one of socket, tcp, url or file (found none)"
        );
        let err = parse(
            "[[source]]\nname = \"a\"\nfile = \"x\"\n[[source]]\nname = \"a\"\nfile = \"y\"\n",
        )
        .unwrap_err();
        assert_eq!(
            err,
            "/etc/hw/h.toml:5:8: duplicate source name \"a\": each [[source]] needs its own name"
        );
        let err = parse("[[source]]\nname = \"a\"\nsocket = \"x\"\ntcp = \"h:1\"\n").unwrap_err();
        assert!(
            err.ends_with("needs exactly one of socket, tcp, url or file (found socket, tcp)"),
            "{err}"
        );
        let err =
            parse("[[source]]\nname = \"a\"\nsocket = \"x\"\nusername = \"u\"\n").unwrap_err();
        assert!(
            err.ends_with("`username` only applies to a `url` source"),
            "{err}"
        );
        for (tcp, says) in [
            (
                "30999",
                "tcp = \"30999\" needs a host before the port, e.g. \"127.0.0.1:30999\"",
            ),
            (
                ":30999",
                "tcp = \":30999\" needs a host before the port, e.g. \"127.0.0.1:30999\"",
            ),
            ("lb1", "tcp = \"lb1\" needs a port, e.g. \"lb1:9999\""),
        ] {
            let err = parse(&format!("[[source]]\nname = \"a\"\ntcp = \"{tcp}\"\n")).unwrap_err();
            assert!(err.ends_with(says), "{err}");
        }
        let err = parse("[[source]]\nname = \"a\"\ntcp = \"x\"\ntimeout = \"5\"\n").unwrap_err();
        assert!(
            err.starts_with("/etc/hw/h.toml:4:11: invalid duration \"5\": missing unit"),
            "{err}"
        );
        let err = Config::parse("", Path::new("h.toml"), false)
            .unwrap()
            .require_sources()
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("h.toml:1:1: no [[source]] defined"),
            "{err}"
        );
    }

    #[test]
    fn userinfo_in_a_url_needs_a_private_file() {
        let configs = [
            "[[source]]\nname = \"a\"\nurl = \"http://ops:hunter22@h/stats\"\n",
            "[notifier.w]\ntype = \"webhook\"\nurl = \"https://ops:hunter22@h/hook\"\n",
            "[notifier.am]\ntype = \"alertmanager\"\nurls = [\"http://h:9093\", \"http://ops:hunter22@h2:9093\"]\n",
            "[heartbeat]\nurl = \"https://ops:hunter22@hc/ping\"\n",
        ];
        for text in configs {
            let err = parse(text).unwrap_err();
            assert!(err.contains("user name or password"), "{err}");
            assert!(err.contains("600"), "{err}");
            assert!(!err.contains("hunter22"), "{err}");
            assert!(
                Config::parse(text, Path::new("h.toml"), true).is_ok(),
                "{text}"
            );
        }
    }

    #[test]
    fn webhook_header_values_are_secrets() {
        let text = "[notifier.w]\ntype = \"webhook\"\nurl = \"https://h/hook\"\nheaders = { X-Api-Key = \"k-123456\" }\n";
        let err = parse(text).unwrap_err();
        assert!(
            err.contains("header \"X-Api-Key\": an inline header value"),
            "{err}"
        );
        assert!(err.contains("env:NAME"), "{err}");
        assert!(!err.contains("k-123456"), "{err}");
        assert!(Config::parse(text, Path::new("h.toml"), true).is_ok());
        let by_ref = text.replace("k-123456", "env:HAPW_KEY");
        assert!(parse(&by_ref).is_ok());
    }

    #[test]
    fn alertmanager_takes_basic_auth_or_a_bearer_token_by_reference() {
        let base = "[notifier.am]\ntype = \"alertmanager\"\nurl = \"http://h:9093\"\n";
        assert!(parse(&format!(
            "{base}username = \"hw\"\npassword_file = \"am.pw\"\n"
        ))
        .is_ok());
        assert!(parse(&format!("{base}bearer_token = \"credential:am\"\n")).is_ok());
        let err = parse(&format!("{base}bearer_token = \"t-123456\"\n")).unwrap_err();
        assert!(err.contains("an inline bearer_token"), "{err}");
        let err = parse(&format!("{base}password = \"env:X\"\n")).unwrap_err();
        assert!(err.contains("needs both `username`"), "{err}");
        let err = parse(&format!(
            "{base}username = \"u\"\npassword = \"env:X\"\nbearer_token = \"env:Y\"\n"
        ))
        .unwrap_err();
        assert!(err.contains("not both"), "{err}");
    }

    #[test]
    fn source_labels_merge_over_source_defaults() {
        let cfg = parse(
            r#"
[source_defaults]
timeout = "2s"
labels = { env = "prod", dc = "fra1" }

[[source]]
name = "lb1"
file = "a.csv"
labels = { dc = "ams1", rack = "r7" }

[[source]]
name = "lb2"
file = "b.csv"
timeout = "9s"
labels = { env = "" }
"#,
        )
        .unwrap();
        let labels = |i: usize| -> Vec<(String, String)> {
            cfg.sources[i].labels.clone().into_iter().collect()
        };
        let pairs = |p: &[(&str, &str)]| -> Vec<(String, String)> {
            p.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            labels(0),
            pairs(&[("dc", "ams1"), ("env", "prod"), ("rack", "r7")])
        );
        assert_eq!(labels(1), pairs(&[("dc", "fra1")]), "empty drops a default");
        assert_eq!(cfg.sources[0].timeout, Duration::from_secs(2));
        assert_eq!(cfg.sources[1].timeout, Duration::from_secs(9));
        assert!(cfg.rules.label_names().contains("rack"));
    }

    #[test]
    fn bad_source_labels_cite_the_label() {
        let err = parse(
            "[[source]]\nname = \"a\"\nfile = \"x\"\nlabels = { dc = \"x\", proxy = \"p\" }\n",
        )
        .unwrap_err();
        assert_eq!(
            err,
            "/etc/hw/h.toml:4:22: source \"a\": labels: label `proxy` is set by hapwatch; pick another name"
        );
        let err = parse("[source_defaults]\nlabels = { \"my-dc\" = \"x\" }\n").unwrap_err();
        assert_eq!(
            err,
            "/etc/hw/h.toml:2:12: [source_defaults] labels: label name `my-dc`: use letters, digits and `_`"
        );
        let err = parse("[source_defaults]\ntimeuot = \"1s\"\n").unwrap_err();
        assert!(err.contains("did you mean `timeout`"), "{err}");
    }

    #[test]
    fn routes_inherit_and_name_the_notifiers_alertmanager_gets() {
        let cfg = parse(
            r#"
[notifier.am]
type = "alertmanager"
url = "http://127.0.0.1:9093"
[notifier.chat]
type = "webhook"
url = "http://127.0.0.1:9/chat"
[routes]
default = ["chat"]
[alerting]
repeat_interval = "2h"
[[route]]
matchers = ["team=payments"]
notify = ["am"]
group_by = ["proxy"]
  [[route.route]]
  matchers = ["severity=critical"]
"#,
        )
        .unwrap();
        let labels = |pairs: &[(&str, &str)]| -> crate::alert::Labels {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let child = &cfg.notifiers.tree.routes[0].routes[0];
        assert_eq!(child.id, "1.1");
        assert_eq!(child.notify, ["am"]);
        assert_eq!(child.group_by, ["proxy"]);
        assert_eq!(child.repeat_interval, Duration::from_secs(7200));
        let n = &cfg.notifiers;
        assert_eq!(
            n.receivers_of(
                &labels(&[("team", "payments"), ("severity", "critical")]),
                &[]
            ),
            ["am"]
        );
        assert_eq!(n.receivers_of(&labels(&[("team", "web")]), &[]), ["chat"]);
        let notify = ["chat".to_string()];
        assert_eq!(
            n.receivers_of(&labels(&[("team", "payments")]), &notify),
            ["chat"],
            "a rule's notify bypasses the tree"
        );
    }

    #[test]
    fn inline_password_needs_a_private_file() {
        let text = "[[source]]\nname = \"a\"\nurl = \"http://h/stats\"\nusername = \"u\"\npassword = \"hunter2\"\n";
        let err = parse(text).unwrap_err();
        assert!(err.contains("inline password"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        assert!(Config::parse(text, Path::new("h.toml"), true).is_ok());
    }
}
