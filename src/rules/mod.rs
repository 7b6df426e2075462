//! Rules: which rows to look at (scope), when they are a problem (an expression), and how
//! to describe the alert (labels, templates). Compiled once per config; evaluated per dump.

pub mod eval;
pub mod expr;
pub mod process;
pub mod sample;
pub mod template;

use crate::alert::{Alert, Labels, Value as AlertValue};
use crate::scope::Scope;
use crate::stats::{columns, Info, ProxyType, Row, Snapshot, Table, TypeMask};
use eval::{Env, Previous, Val};
use expr::{ColumnTable, Expr, Rows};
use sample::Sample;
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::time::Duration;
use template::Templates;
use toml::Spanned;

/// Severity when a rule sets none.
pub const DEFAULT_SEVERITY: &str = "warning";

/// Name of the built-in alert raised for a source that cannot be read.
pub const SOURCE_UNREACHABLE: &str = "SourceUnreachable";

/// Labels hapwatch sets itself; rules cannot override them.
pub const RESERVED_LABELS: &[&str] =
    &["alertname", "source", "proxy", "server", "type", "severity"];

/// Used when a rule has no `summary`.
const DEFAULT_SUMMARY: &str = "{{ alertname }} on {{ source }}: {{ proxy }}/{{ server }} is {{ status }}{% if value is not none %} (value {{ value }}){% endif %}";

/// A `[[rule]]` as written in the config.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    name: Spanned<String>,
    scope: Option<Spanned<RawScope>>,
    when: Spanned<String>,
    value: Option<Spanned<String>>,
    severity: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    summary: Option<Spanned<String>>,
    description: Option<Spanned<String>>,
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

/// A rule's `scope` as written: each key takes a string or a list of strings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScope {
    #[serde(rename = "type", default, deserialize_with = "one_or_many")]
    types: Vec<String>,
    #[serde(default, deserialize_with = "one_or_many")]
    proxy: Vec<String>,
    #[serde(default, deserialize_with = "one_or_many")]
    server: Vec<String>,
    #[serde(default, deserialize_with = "one_or_many")]
    exclude_proxy: Vec<String>,
    #[serde(default, deserialize_with = "one_or_many")]
    exclude_server: Vec<String>,
}

fn one_or_many<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    struct Visitor;
    impl<'de> serde::de::Visitor<'de> for Visitor {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a string or a list of strings")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(vec![v.to_string()])
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(item) = seq.next_element::<String>()? {
                out.push(item);
            }
            Ok(out)
        }
    }
    deserializer.deserialize_any(Visitor)
}

/// How long a condition must hold before its alert fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Hold {
    /// Fire on the first run that sees it.
    #[default]
    Immediately,
    /// `for = "2m"`: fire once it has held this long.
    For(Duration),
    /// `for_runs = 2`: fire on the Nth consecutive run that sees it.
    Runs(u32),
}

/// A compiled rule.
#[derive(Debug)]
pub struct Rule {
    /// Unique name; the `alertname` label.
    pub name: String,
    /// Rows it looks at.
    pub scope: Scope,
    /// `severity` label.
    pub severity: String,
    /// Static labels.
    pub labels: Labels,
    /// `for` / `for_runs`.
    pub hold: Hold,
    /// Keep firing this long after the condition clears.
    pub keep_firing_for: Option<Duration>,
    /// Notifier names (empty: the default route).
    pub notify: Vec<String>,
    /// Whether recoveries of this rule's alerts are announced (`None`: each notifier's
    /// `send_resolved` decides). `false` suits event-like rules such as ServerFlapped.
    pub send_resolved: Option<bool>,
    /// The condition reads `delta()` / `rate()`: right after a counter reset it has too
    /// little data to say that a problem is over.
    pub reads_counters: bool,
    /// Line of the `[[rule]]` entry.
    pub line: usize,
    /// `show stat` rows, or the process row (`scope = { type = "process" }`).
    pub rows: Rows,
    when: Expr,
    value: Option<Expr>,
    /// Column ids this rule reads.
    column_ids: Vec<usize>,
    /// Variables each template reads: (template name, variables).
    summary: (String, Vec<String>),
    description: Option<(String, Vec<String>)>,
}

/// The compiled rules of a config.
#[derive(Debug, Default)]
pub struct RuleSet {
    /// Rules in config order.
    pub rules: Vec<Rule>,
    /// Column names referenced by expressions; `Expr` ids index this.
    columns: Vec<String>,
    /// Columns passed to `delta()` / `rate()`: what a [`Sample`] must keep.
    counter_columns: Vec<String>,
    templates: Templates,
}

impl ColumnTable for Vec<String> {
    fn id(&mut self, name: &str) -> usize {
        self.iter().position(|n| n == name).unwrap_or_else(|| {
            self.push(name.to_string());
            self.len() - 1
        })
    }
}

/// A compile error: byte offset in the config text and message.
pub type CompileError = (usize, String);

/// One dump to evaluate, with what `delta()` / `rate()` compare against.
pub struct Input<'a> {
    /// Source name.
    pub source: &'a str,
    /// The dump.
    pub snapshot: &'a Snapshot,
    /// The same source's sample from the previous run, if any.
    pub previous: Option<&'a Sample>,
    /// Unix time (seconds) at which this dump was taken.
    pub now: f64,
}

impl RuleSet {
    /// Compiles `raw` rules and adds them to the set; `text` is the file text the spans
    /// point into. Rule names must be unique across every call.
    pub fn add(&mut self, raw: Vec<Spanned<RawRule>>, text: &str) -> Result<(), CompileError> {
        let set = self;
        for spanned in raw {
            let entry = spanned.span().start;
            let raw = spanned.into_inner();
            let name = raw.name.get_ref().clone();
            let in_rule =
                |offset: usize, message: String| (offset, format!("rule {name:?}: {message}"));
            if !is_label_value_name(&name) {
                return Err(in_rule(
                    raw.name.span().start,
                    "a rule name is letters, digits and `_` (it becomes the alertname)".into(),
                ));
            }
            if name == SOURCE_UNREACHABLE || set.rules.iter().any(|r| r.name == name) {
                return Err(in_rule(raw.name.span().start, "duplicate rule name".into()));
            }
            let (scope, rows) = match &raw.scope {
                Some(scope) => match process::process_scope(scope.get_ref()) {
                    Some(process) => (
                        process.map_err(|m| in_rule(scope.span().start, m))?,
                        Rows::Process,
                    ),
                    None => (
                        compile_scope(scope.get_ref())
                            .map_err(|m| in_rule(scope.span().start, m))?,
                        Rows::Stats,
                    ),
                },
                None => (Scope::default(), Rows::Stats),
            };
            let when = compile_expr(&raw.when, text, &mut set.columns, true, rows)
                .map_err(|(o, m)| in_rule(o, format!("when: {m}")))?;
            let value = match &raw.value {
                Some(v) => Some(
                    compile_expr(v, text, &mut set.columns, false, rows)
                        .map_err(|(o, m)| in_rule(o, format!("value: {m}")))?,
                ),
                None => expr::first_operand(&when).cloned(),
            };
            let hold = match (raw.for_duration, raw.for_runs) {
                (Some(_), Some(_)) => {
                    return Err(in_rule(entry, "set `for` or `for_runs`, not both".into()))
                }
                (Some(d), None) if !d.is_zero() => Hold::For(d),
                (None, Some(n)) if n > 1 => Hold::Runs(n),
                (None, Some(0)) => {
                    return Err(in_rule(
                        entry,
                        "`for_runs` counts runs and starts at 1".into(),
                    ))
                }
                _ => Hold::Immediately,
            };
            for label in raw.labels.keys() {
                if RESERVED_LABELS.contains(&label.as_str()) {
                    return Err(in_rule(
                        entry,
                        format!("label `{label}` is set by hapwatch; pick another name"),
                    ));
                }
                if !is_label_value_name(label) {
                    return Err(in_rule(
                        entry,
                        format!("label name `{label}`: use letters, digits and `_`"),
                    ));
                }
            }
            if raw.notify.iter().any(|n| n.trim().is_empty()) {
                return Err(in_rule(entry, "`notify` names must not be empty".into()));
            }
            let mut column_ids = Vec::new();
            collect_columns(&when, &mut column_ids);
            if let Some(v) = &value {
                collect_columns(v, &mut column_ids);
            }
            for id in counter_columns(&when)
                .into_iter()
                .chain(value.iter().flat_map(counter_columns))
            {
                let name = &set.columns[id];
                if !set.counter_columns.contains(name) {
                    set.counter_columns.push(name.clone());
                }
            }
            let label_names: Vec<&str> = raw.labels.keys().map(String::as_str).collect();
            let default_summary = match rows {
                Rows::Stats => DEFAULT_SUMMARY,
                Rows::Process => process::DEFAULT_SUMMARY,
            };
            let summary_source = raw
                .summary
                .as_ref()
                .map_or(default_summary, |s| s.get_ref().as_str());
            let summary_at = raw.summary.as_ref().map_or(entry, |s| s.span().start);
            let summary_name = format!("{name}.summary");
            let summary_vars = set
                .add_template(&summary_name, summary_source, &label_names, rows)
                .map_err(|m| in_rule(summary_at, format!("summary: {m}")))?;
            let description = match &raw.description {
                Some(d) => {
                    let template_name = format!("{name}.description");
                    let vars = set
                        .add_template(&template_name, d.get_ref(), &label_names, rows)
                        .map_err(|m| in_rule(d.span().start, format!("description: {m}")))?;
                    Some((template_name, vars))
                }
                None => None,
            };
            set.rules.push(Rule {
                line: line_of(text, entry),
                rows,
                name,
                scope,
                severity: raw.severity.unwrap_or_else(|| DEFAULT_SEVERITY.to_string()),
                labels: raw.labels,
                hold,
                keep_firing_for: raw.keep_firing_for.filter(|d| !d.is_zero()),
                notify: raw.notify,
                send_resolved: raw.send_resolved,
                reads_counters: !counter_columns(&when).is_empty(),
                when,
                value,
                column_ids,
                summary: (summary_name, summary_vars),
                description,
            });
        }
        Ok(())
    }

    fn add_template(
        &mut self,
        name: &str,
        source: &str,
        label_names: &[&str],
        rows: Rows,
    ) -> Result<Vec<String>, String> {
        let vars = self.templates.add(name, source)?;
        let mut vars: Vec<String> = vars.into_iter().collect();
        vars.sort();
        for var in &vars {
            // A process row has no `show stat` column: its names are `show info` fields.
            let known = match rows {
                Rows::Stats => is_template_variable(var, label_names),
                Rows::Process => {
                    TEMPLATE_NAMES.contains(&var.as_str()) || label_names.contains(&var.as_str())
                }
            };
            if !known && !process::is_template_variable(var, rows) {
                let candidates = columns::KNOWN
                    .iter()
                    .copied()
                    .filter(|_| rows == Rows::Stats)
                    .chain(TEMPLATE_NAMES.iter().copied())
                    .chain(process::template_names(rows))
                    .chain(label_names.iter().copied());
                return Err(format!(
                    "unknown variable `{var}`{}",
                    expr::suggest(var, candidates)
                ));
            }
        }
        Ok(vars)
    }

    /// The row types any rule looks at, so that sources can be asked for those only.
    pub fn type_mask(&self) -> TypeMask {
        match self
            .rules
            .iter()
            // Process rules read `show info`, which every runtime API reply has.
            .filter(|r| r.rows == Rows::Stats)
            .map(|r| r.scope.types)
            .reduce(TypeMask::union)
        {
            Some(mask) => mask,
            // No rules: the dump only proves the source answers; ask for it whole.
            None => TypeMask::ALL,
        }
    }

    /// Every column evaluating the rules and rendering their alerts reads: what a dump
    /// needs offsets for (see [`crate::stats::StatParser::keeping`]).
    pub fn columns_read(&self) -> Vec<String> {
        let templates = self.rules.iter().flat_map(|rule| {
            let description = rule.description.iter().flat_map(|(_, vars)| vars);
            rule.summary.1.iter().chain(description)
        });
        let mut names: Vec<String> = self
            .columns
            .iter()
            .filter(|name| RuleSet::is_column(name))
            .chain(&self.counter_columns)
            .chain(&self.prev_columns())
            .chain(templates)
            .cloned()
            // Every alert carries the row's check status (`alert`); unchecked servers are
            // found by it (`engine::Watch`).
            .chain(["status".to_string(), "check_status".to_string()])
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// The columns a [`Sample`] must keep for `delta()` and `rate()`.
    pub fn counter_columns(&self) -> &[String] {
        &self.counter_columns
    }

    /// Captures what the next run's `delta()` / `rate()` need from `snapshot`.
    pub fn sample(&self, snapshot: &Snapshot, now: f64) -> Sample {
        let mut capture =
            sample::Capture::new(&self.counter_columns).with_prev(self.prev_capture());
        capture.advance(snapshot.stats.table(), snapshot.info.as_ref());
        capture.finish(now)
    }

    /// For each rule, the columns it reads that `snapshot` lacks (a rule on them can never
    /// match that source).
    pub fn missing_columns(&self, snapshot: &Snapshot) -> Vec<(&str, &str)> {
        let mut missing = Vec::new();
        for rule in &self.rules {
            for &id in &rule.column_ids {
                let name = self.columns[id].as_str();
                if snapshot.stats.columns().get(name).is_none() {
                    missing.push((rule.name.as_str(), name));
                }
            }
        }
        missing
    }

    /// Evaluates every rule (or only `only`) on one dump: one alert per matching row.
    pub fn evaluate(&self, input: &Input<'_>, only: Option<&str>) -> Vec<Alert> {
        let mut alerts = self.evaluate_process(
            input.source,
            input.snapshot.info.as_ref(),
            input.previous,
            input.now,
            only,
        );
        let mut evaluation = Evaluation::new(self, input.source, input.now, only);
        evaluation.advance(
            input.snapshot.stats.table(),
            input.snapshot.info.as_ref(),
            input.previous,
        );
        alerts.extend(evaluation.finish());
        alerts
    }

    /// Every label name an alert of these rules can carry: the built-in ones (see
    /// [`RuleSet::alert`] and [`source_unreachable`]) and each rule's static labels.
    pub fn label_names(&self) -> std::collections::BTreeSet<&str> {
        ["alertname", "source", "proxy", "type", "server", "severity"]
            .into_iter()
            .chain(
                self.rules
                    .iter()
                    .flat_map(|r| r.labels.keys().map(String::as_str)),
            )
            .collect()
    }

    fn alert(&self, rule: &Rule, row: &Row<'_>, env: &Env<'_>) -> Alert {
        let mut labels = Labels::new();
        labels.insert("alertname".into(), rule.name.clone());
        labels.insert("source".into(), env.source.to_string());
        labels.insert("proxy".into(), row.proxy().to_string());
        labels.insert("type".into(), row.kind().to_string());
        if matches!(row.kind(), ProxyType::Server | ProxyType::Listener) {
            labels.insert("server".into(), row.name().to_string());
        }
        labels.insert("severity".into(), rule.severity.clone());
        labels.extend(rule.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
        let value = rule
            .value
            .as_ref()
            .and_then(|v| match eval::eval(v, row, env) {
                Val::Number(n) => Some(AlertValue::Number(n)),
                Val::Text(t) => Some(AlertValue::Text(t.to_string())),
                Val::Bool(b) => Some(AlertValue::Text(b.to_string())),
                Val::Absent => None,
            });
        let mut annotations = BTreeMap::new();
        let render = |(name, vars): &(String, Vec<String>)| {
            self.templates
                .render(name, template_vars(vars, row, env, &labels, value.as_ref()))
        };
        annotations.insert("summary".to_string(), render(&rule.summary));
        // The row's status travels with the alert, so that messages can show it.
        if !row.status().is_empty() {
            annotations.insert("status".to_string(), row.status().to_string());
        }
        if let Some(check) = row.by_name("check_status") {
            annotations.insert(
                "check_status".to_string(),
                check.strip_prefix("* ").unwrap_or(check).to_string(),
            );
        }
        if let Some(description) = &rule.description {
            annotations.insert("description".to_string(), render(description));
        }
        // Alertmanager drops a label whose value is empty before it fingerprints (an empty
        // value means "no such label" there): the same here, so that both name an alert
        // the same way. Templates above still saw the label, as `""`.
        labels.retain(|_, value| !value.is_empty());
        Alert {
            labels,
            annotations,
            value,
        }
    }
}

/// The built-in alert for a source that could not be read.
pub fn source_unreachable(source: &str, error: &str) -> Alert {
    let labels: Labels = [
        ("alertname", SOURCE_UNREACHABLE),
        ("source", source),
        ("severity", "critical"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .into();
    let annotations = [(
        "summary".to_string(),
        format!("hapwatch cannot read source {source}: {error}"),
    )]
    .into();
    Alert {
        labels,
        annotations,
        value: None,
    }
}

/// Template variables besides columns and labels.
const TEMPLATE_NAMES: &[&str] = &[
    "alertname",
    "source",
    "proxy",
    "server",
    "type",
    "severity",
    "state",
    "kind",
    "value",
    "labels",
];

fn is_template_variable(name: &str, label_names: &[&str]) -> bool {
    TEMPLATE_NAMES.contains(&name) || label_names.contains(&name) || columns::is_known(name)
}

/// `value` in templates.
fn value_var(value: Option<&AlertValue>) -> minijinja::Value {
    use minijinja::Value;
    match value {
        // Whole numbers render as `3`, not `3.0`.
        Some(AlertValue::Number(n)) if n.fract() == 0.0 && n.abs() < 9.0e15 => {
            Value::from(*n as i64)
        }
        Some(AlertValue::Number(n)) => Value::from(*n),
        Some(AlertValue::Text(t)) => Value::from(t.as_str()),
        None => Value::from(()),
    }
}

/// Builds only the variables a template reads: a few map entries per alert, not a whole row.
fn template_vars(
    vars: &[String],
    row: &Row<'_>,
    env: &Env<'_>,
    labels: &Labels,
    value: Option<&AlertValue>,
) -> BTreeMap<String, minijinja::Value> {
    use minijinja::Value;
    let mut out = BTreeMap::new();
    for var in vars {
        let v = match var.as_str() {
            "value" => value_var(value),
            "info" => process::info_var(env.process.info),
            "labels" => Value::from(labels.clone()),
            "state" => Value::from(row.state().as_str()),
            "kind" => Value::from(row.kind().as_str()),
            "source" => Value::from(env.source),
            "proxy" => Value::from(row.proxy()),
            "server" => Value::from(row.name()),
            name if labels.contains_key(name) && !columns::is_known(name) => {
                Value::from(labels[name].as_str())
            }
            name => match row.by_name(name) {
                // Absent fields render as empty text, not "none".
                None => Value::from(""),
                Some(text) if columns::is_text(name) => {
                    Value::from(text.strip_prefix("* ").unwrap_or(text))
                }
                Some(text) => text
                    .parse::<i64>()
                    .map(Value::from)
                    .unwrap_or_else(|_| Value::from(text)),
            },
        };
        out.insert(var.clone(), v);
    }
    out
}

fn compile_scope(raw: &RawScope) -> Result<Scope, String> {
    let mut types = Vec::new();
    for t in &raw.types {
        match ProxyType::parse(t) {
            Some(t) => types.push(t),
            None => {
                return Err(format!(
                    "scope type {t:?}: use frontend, backend, server, listener or process"
                ))
            }
        }
    }
    Ok(Scope {
        types: TypeMask::of(&types),
        proxies: Scope::globs(&raw.proxy),
        exclude_proxies: Scope::globs(&raw.exclude_proxy),
        servers: Scope::globs(&raw.server),
        exclude_servers: Scope::globs(&raw.exclude_server),
    })
}

/// Compiles an expression held in a TOML string, translating error offsets into offsets
/// in the config text.
fn compile_expr(
    source: &Spanned<String>,
    text: &str,
    table: &mut Vec<String>,
    condition: bool,
    rows: Rows,
) -> Result<Expr, CompileError> {
    let body = source.get_ref();
    let result = if condition {
        expr::compile_condition_on(body, table, rows)
    } else {
        expr::compile_on(body, table, rows).map(|(e, _)| e)
    };
    result.map_err(|e| (raw_offset(text, source.span().start, e.offset), e.message))
}

/// Where the byte at `decoded` of the TOML string starting at `start` stands in `text`:
/// the string's escapes (`\"`, `\u00e9`, a line-ending backslash) make the decoded value
/// shorter than its source.
fn raw_offset(text: &str, start: usize, decoded: usize) -> usize {
    let rest = &text[start.min(text.len())..];
    let (literal, open) = if rest.starts_with("'''") || rest.starts_with("\"\"\"") {
        // A newline right after the opening delimiter is not part of the string.
        (
            rest.starts_with('\''),
            3 + usize::from(rest[3..].starts_with('\n')),
        )
    } else {
        (rest.starts_with('\''), 1)
    };
    let body = &rest[open.min(rest.len())..];
    if literal {
        return start + open + decoded;
    }
    let mut value = 0;
    let mut chars = body.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        if value >= decoded {
            return start + open + at;
        }
        if c != '\\' {
            value += c.len_utf8();
            continue;
        }
        match chars.next() {
            Some((_, escape @ ('u' | 'U'))) => {
                let digits = if escape == 'u' { 4 } else { 8 };
                let hex: String = chars.by_ref().take(digits).map(|(_, h)| h).collect();
                value += u32::from_str_radix(&hex, 16)
                    .ok()
                    .and_then(char::from_u32)
                    .map_or(1, char::len_utf8);
            }
            // A line-ending backslash swallows the newline and the next line's indentation.
            Some((_, space)) if space.is_whitespace() => {
                while chars.peek().is_some_and(|(_, c)| c.is_whitespace()) {
                    chars.next();
                }
            }
            Some(_) => value += 1,
            None => break,
        }
    }
    start + open + body.len()
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

fn is_label_value_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Adds the column ids `expr` reads (except through `exists()`) to `out`, once each.
fn collect_columns(expr: &Expr, out: &mut Vec<usize>) {
    expr.visit(&mut |e| {
        if let Expr::NumberColumn(id) | Expr::TextColumn(id) | Expr::Counter(_, id) = e {
            if !out.contains(id) {
                out.push(*id);
            }
        }
    });
}

/// Column ids passed to `delta()` / `rate()`.
fn counter_columns(expr: &Expr) -> Vec<usize> {
    let mut out = Vec::new();
    expr.visit(&mut |e| {
        if let Expr::Counter(_, id) = e {
            out.push(*id);
        }
    });
    out
}

/// The evaluation of a rule set on one dump, row by row as the rows become available, so
/// that a big dump is evaluated while HAProxy is still writing it.
pub struct Evaluation<'r> {
    set: &'r RuleSet,
    rules: Vec<&'r Rule>,
    source: &'r str,
    now: f64,
    /// Column positions in the dump and in the previous sample, bound on the first rows.
    bound: Option<Bound>,
    /// Alerts per rule, so that they come out rule by rule, in dump order.
    alerts: Vec<Vec<Alert>>,
    /// Rows evaluated so far.
    done: usize,
}

struct Bound {
    dump_columns: Vec<Option<usize>>,
    previous_columns: Vec<Option<usize>>,
    restarted: bool,
    /// An upper bound of the process's uptime (`Uptime_sec` + 1), used when it restarted
    /// since the previous sample.
    uptime: Option<f64>,
}

impl<'r> Evaluation<'r> {
    /// Starts evaluating every rule of `set` (or only the one named `only`) on the dump of
    /// `source` taken at `now` (Unix seconds).
    pub fn new(set: &'r RuleSet, source: &'r str, now: f64, only: Option<&str>) -> Self {
        let rules: Vec<&Rule> = set
            .rules
            .iter()
            .filter(|r| only.is_none_or(|o| o == r.name))
            .collect();
        Evaluation {
            set,
            alerts: vec![Vec::new(); rules.len()],
            rules,
            source,
            now,
            bound: None,
            done: 0,
        }
    }

    /// Evaluates the rows of `table` not evaluated yet. Every call must show the same dump
    /// (with at least the rows of the previous call), its `show info`, and the same
    /// previous sample of this source.
    pub fn advance(&mut self, table: Table<'_>, info: Option<&Info>, previous: Option<&Sample>) {
        if table.len() <= self.done {
            return;
        }
        let set = self.set;
        let bound = self.bound.get_or_insert_with(|| Bound {
            dump_columns: set.columns.iter().map(|c| table.columns().get(c)).collect(),
            previous_columns: previous.map_or_else(Vec::new, |sample| {
                set.columns.iter().map(|c| sample.column(c)).collect()
            }),
            restarted: previous.is_some_and(|sample| sample.restarted_before_info(info)),
            // `Uptime_sec` is rounded down: one second more never overstates a rate.
            uptime: info.and_then(Info::uptime_sec).map(|u| u as f64 + 1.0),
        });
        let interval = previous.map_or(0.0, |sample| {
            let since = self.now - sample.taken_at;
            // After a reload the counters count from the new process's start, not from
            // the previous sample: dividing by the whole interval would understate rates.
            match bound.uptime {
                Some(uptime) if bound.restarted => since.min(uptime),
                _ => since,
            }
        });
        let env = Env {
            source: self.source,
            dump_columns: &bound.dump_columns,
            previous: previous.map(|sample| Previous {
                sample,
                columns: &bound.previous_columns,
                interval,
                restarted: bound.restarted,
            }),
            process: process::ProcessEnv::bind(&set.columns, info, previous),
        };
        // Row by row, every rule while the row is in the CPU cache (a rule-by-rule pass
        // fetched a big dump's field offsets from memory once per rule).
        for row in table.rows_in(self.done..table.len()) {
            for (rule, alerts) in self.rules.iter().zip(&mut self.alerts) {
                if rule.scope.matches(&row) && eval::truth(&rule.when, &row, &env) {
                    alerts.push(set.alert(rule, &row, &env));
                }
            }
        }
        self.done = table.len();
    }

    /// The alerts: rule by rule, in dump order.
    pub fn finish(self) -> Vec<Alert> {
        self.alerts.into_iter().flatten().collect()
    }
}
