//! Rules: which rows to look at (scope), when they are a problem (an expression), and how
//! to describe the alert (labels, templates). Compiled once per config; evaluated per dump.

pub mod aggregate;
pub mod eval;
pub mod expr;
pub mod process;
pub mod sample;
pub mod template;
pub mod window;

use crate::alert::{Alert, Labels, Value as AlertValue};
use crate::scope::Scope;
use crate::stats::{columns, Info, ProxyType, Row, Snapshot, Table, TypeMask};
use eval::{Env, Previous, Val};
use expr::{ColumnTable, Expr, Rows};
use sample::{Capture, Sample};
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
    /// Source name globs.
    #[serde(default, deserialize_with = "one_or_many")]
    source: Vec<String>,
    /// Source label → value globs (`{ env = "prod" }`, `{ dc = ["fra*", "ams1"] }`).
    #[serde(default)]
    labels: BTreeMap<String, OneOrMany>,
}

/// A string or a list of strings (a value of a scope's `labels` table).
#[derive(Debug, Default)]
pub struct OneOrMany(Vec<String>);

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        one_or_many(deserializer).map(OneOrMany)
    }
}

/// Which sources a rule applies to: its scope's `source` globs and `labels`, decided once
/// per source and dump rather than per row.
#[derive(Debug, Clone, Default)]
pub struct SourceScope {
    /// Source name globs; empty = every source.
    names: Vec<wildmatch::WildMatch>,
    /// Per label, value globs one of which must match (a source without the label has `""`).
    labels: Vec<(String, Vec<wildmatch::WildMatch>)>,
}

impl SourceScope {
    /// True when the source called `name` with `labels` is in scope.
    pub fn matches(&self, name: &str, labels: &Labels) -> bool {
        (self.names.is_empty() || self.names.iter().any(|g| g.matches(name)))
            && self.labels.iter().all(|(label, globs)| {
                let value = labels.get(label).map_or("", String::as_str);
                globs.iter().any(|g| g.matches(value))
            })
    }
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
    /// Sources it looks at.
    pub sources: SourceScope,
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
    /// The lengths of the windows (`delta(col, 5m)`, seconds) the condition reads, each
    /// once: while the source's history does not cover one of them, the condition cannot
    /// tell that a problem is over.
    pub windows: Vec<f64>,
    /// Line of the `[[rule]]` entry.
    pub line: usize,
    /// The rule reads rows that come after the one it is evaluated on (a server's
    /// backend, a frontend's listeners): it waits until the proxy's rows are all in.
    reads_ahead: bool,
    /// `show stat` rows, or the process row (`scope = { type = "process" }`).
    pub rows: Rows,
    when: Expr,
    value: Option<Expr>,
    /// Column ids this rule reads.
    column_ids: Vec<usize>,
    /// Variables each template reads: (template name, variables).
    summary: (String, Vec<String>),
    description: Option<(String, Vec<String>)>,
    /// Fields templates read from the row's parent (`{{ backend.status }}`).
    parent_fields: Vec<String>,
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
    /// Columns passed to `delta(col, 5m)` and its kin: what window samples keep.
    window_columns: Vec<String>,
    /// The window lengths rules read, in seconds, each once.
    window_lengths: Vec<f64>,
    /// Row types rules read besides those they look at (a server's backend row, a
    /// backend's server rows), as a [`TypeMask`] bit set.
    related_types: u8,
    templates: Templates,
    /// Names of the labels sources carry (`[[source]]` labels): templates may read them.
    source_labels: std::collections::BTreeSet<String>,
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
    /// The source's labels.
    pub labels: &'a Labels,
    /// The dump.
    pub snapshot: &'a Snapshot,
    /// The same source's sample from the previous run, if any.
    pub previous: Option<&'a Sample>,
    /// Unix time (seconds) at which this dump was taken.
    pub now: f64,
}

impl RuleSet {
    /// Declares the label names sources carry, before rules are added: rule templates may
    /// then read them by name, and silences on them are no typo.
    pub fn add_source_labels<'a>(&mut self, names: impl IntoIterator<Item = &'a str>) {
        self.source_labels
            .extend(names.into_iter().map(str::to_string));
    }

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
            let (scope, sources, rows) = match &raw.scope {
                Some(scope) => {
                    let at = |m| in_rule(scope.span().start, m);
                    let sources = compile_source_scope(scope.get_ref()).map_err(at)?;
                    match process::process_scope(scope.get_ref()) {
                        Some(process) => (process.map_err(at)?, sources, Rows::Process),
                        None => (
                            compile_scope(scope.get_ref()).map_err(at)?.0,
                            sources,
                            Rows::Stats,
                        ),
                    }
                }
                None => (Scope::default(), SourceScope::default(), Rows::Stats),
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
                check_label_name(label).map_err(|m| in_rule(entry, m))?;
            }
            if raw.notify.iter().any(|n| n.trim().is_empty()) {
                return Err(in_rule(entry, "`notify` names must not be empty".into()));
            }
            let scope_types = scope.types;
            for (expr, source, what) in [(Some(&when), Some(&raw.when), "when")]
                .into_iter()
                .chain([(value.as_ref(), raw.value.as_ref(), "value")])
            {
                let (Some(expr), Some(source)) = (expr, source) else {
                    continue;
                };
                aggregate::check_scope(expr, scope_types).map_err(|(o, m)| {
                    in_rule(
                        raw_offset(text, source.span().start, o),
                        format!("{what}: {m}"),
                    )
                })?;
            }
            let mut reads_ahead = false;
            // The window lengths `when` reads (those of `value` do not decide whether the
            // alert is over).
            let mut windows: Vec<f64> = Vec::new();
            for (expr, is_when) in [(&when, true)]
                .into_iter()
                .chain(value.as_ref().map(|v| (v, false)))
            {
                let relatives = aggregate::relatives(expr);
                reads_ahead |= relatives.reads_ahead;
                set.related_types |= relatives.types;
                expr.visit(&mut |e| {
                    if let Expr::Window(w) = e {
                        let name = &set.columns[w.column];
                        if !set.window_columns.contains(name) {
                            set.window_columns.push(name.clone());
                        }
                        if !set.window_lengths.contains(&w.seconds) {
                            set.window_lengths.push(w.seconds);
                        }
                        if is_when && !windows.contains(&w.seconds) {
                            windows.push(w.seconds);
                        }
                    }
                });
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
            let source_labels = std::mem::take(&mut set.source_labels);
            let label_names: Vec<&str> = raw
                .labels
                .keys()
                .map(String::as_str)
                .chain(source_labels.iter().map(String::as_str))
                .collect();
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
            let mut parent_fields = set.parent_fields(&summary_name, &summary_vars);
            let description = match &raw.description {
                Some(d) => {
                    let template_name = format!("{name}.description");
                    let vars = set
                        .add_template(&template_name, d.get_ref(), &label_names, rows)
                        .map_err(|m| in_rule(d.span().start, format!("description: {m}")))?;
                    parent_fields.extend(set.parent_fields(&template_name, &vars));
                    Some((template_name, vars))
                }
                None => None,
            };
            set.source_labels = source_labels;
            parent_fields.sort();
            parent_fields.dedup();
            if let Some((_, field)) = parent_fields.iter().find(|(_, f)| {
                !columns::is_known(f) && !expr::SPECIAL_NAMES.iter().any(|(n, _)| n == f)
            }) {
                return Err(in_rule(
                    raw.summary.as_ref().map_or(entry, |s| s.span().start),
                    format!(
                        "templates: unknown column `{field}` after `backend.` / `frontend.`{}",
                        expr::suggest(field, columns::KNOWN.iter().copied())
                    ),
                ));
            }
            for (parent, _) in &parent_fields {
                set.related_types |= 1 << parent.kind() as u8;
                // A server's backend row comes after it.
                reads_ahead |= *parent == aggregate::Parent::Backend;
            }
            let parent_fields: Vec<String> = parent_fields.into_iter().map(|(_, f)| f).collect();
            set.rules.push(Rule {
                line: line_of(text, entry),
                rows,
                name,
                scope,
                sources,
                severity: raw.severity.unwrap_or_else(|| DEFAULT_SEVERITY.to_string()),
                labels: raw.labels,
                hold,
                keep_firing_for: raw.keep_firing_for.filter(|d| !d.is_zero()),
                notify: raw.notify,
                send_resolved: raw.send_resolved,
                reads_counters: !counter_columns(&when).is_empty(),
                windows,
                reads_ahead,
                when,
                value,
                column_ids,
                summary: (summary_name, summary_vars),
                description,
                parent_fields,
            });
        }
        Ok(())
    }

    /// The parent fields (`backend.status` → (Backend, `status`)) template `name` reads.
    fn parent_fields(&self, name: &str, vars: &[String]) -> Vec<(aggregate::Parent, String)> {
        if !vars.iter().any(|v| v == "backend" || v == "frontend") {
            return Vec::new();
        }
        self.templates
            .nested_variables(name)
            .into_iter()
            .filter_map(|v| {
                let (prefix, field) = v.split_once('.')?;
                let parent = match prefix {
                    "backend" => aggregate::Parent::Backend,
                    "frontend" => aggregate::Parent::Frontend,
                    _ => return None,
                };
                Some((parent, field.split('.').next().unwrap_or(field).to_string()))
            })
            .collect()
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
            Some(mask) => mask.union(TypeMask(self.related_types)),
            // No rules: the dump only proves the source answers; ask for it whole.
            None => TypeMask::ALL,
        }
    }

    /// Every column evaluating the rules and rendering their alerts reads: what a dump
    /// needs offsets for (see [`crate::stats::StatParser::keeping`]).
    pub fn columns_read(&self) -> Vec<String> {
        let templates = self.rules.iter().flat_map(|rule| {
            let description = rule.description.iter().flat_map(|(_, vars)| vars);
            rule.summary
                .1
                .iter()
                .chain(description)
                .chain(&rule.parent_fields)
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

    /// The columns window samples keep for `delta(col, 5m)` and its kin (`info.NAME`
    /// for a `show info` counter).
    pub fn window_columns(&self) -> &[String] {
        &self.window_columns
    }

    /// Starts the capture of this run's window sample: the `show stat` columns windows
    /// read, row by row, and the `show info` counters they read, once.
    pub fn window_capture(&self) -> Capture {
        let (info, stats): (Vec<String>, Vec<String>) = self
            .window_columns
            .iter()
            .cloned()
            .partition(|c| c.starts_with(process::INFO));
        let info = info
            .iter()
            .map(|c| c[process::INFO.len()..].to_string())
            .collect();
        Capture::new(&stats).with_prev(process::PrevCapture::new(Vec::new(), info))
    }

    /// The longest window any rule reads, in seconds (0: none).
    pub fn longest_window(&self) -> f64 {
        self.window_lengths.iter().copied().fold(0.0, f64::max)
    }

    /// The window lengths rules read, in seconds, each once.
    pub fn window_lengths(&self) -> &[f64] {
        &self.window_lengths
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
            input.labels,
            input.snapshot.info.as_ref(),
            input.previous,
            None,
            input.now,
            only,
        );
        let mut evaluation = Evaluation::new(self, input.source, input.labels, input.now, only);
        evaluation.advance(
            input.snapshot.stats.table(),
            input.snapshot.info.as_ref(),
            input.previous,
            None,
            true,
        );
        alerts.extend(evaluation.finish());
        alerts
    }

    /// Every label name an alert of these rules can carry: the built-in ones (see
    /// `RuleSet::alert` and [`source_unreachable`]) and each rule's static labels.
    pub fn label_names(&self) -> std::collections::BTreeSet<&str> {
        ["alertname", "source", "proxy", "type", "server", "severity"]
            .into_iter()
            .chain(
                self.rules
                    .iter()
                    .flat_map(|r| r.labels.keys().map(String::as_str)),
            )
            .chain(self.source_labels.iter().map(String::as_str))
            .collect()
    }

    fn alert(&self, rule: &Rule, row: &Row<'_>, env: &Env<'_>) -> Alert {
        // The source's labels first: a rule's own label of the same name is more specific
        // and wins (as an alert's labels win over Prometheus' external_labels).
        let mut labels = env.labels.clone();
        labels.insert("alertname".into(), rule.name.clone());
        labels.insert("source".into(), env.source.to_string());
        labels.insert("proxy".into(), row.proxy().to_string());
        labels.insert("type".into(), row.kind().to_string());
        if matches!(row.kind(), ProxyType::Server | ProxyType::Listener) {
            labels.insert("server".into(), row.name().to_string());
        }
        labels.insert("severity".into(), rule.severity.clone());
        labels.extend(rule.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
        let value = alert_value(rule, row, env);
        let mut annotations = BTreeMap::new();
        let render = |(name, vars): &(String, Vec<String>)| {
            self.templates.render(
                name,
                template_vars(vars, row, env, &labels, value.as_ref(), &rule.parent_fields),
            )
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

/// The alert value of `rule` on `row`: its `value` expression, absent when it has none or
/// the expression is absent there.
fn alert_value(rule: &Rule, row: &Row<'_>, env: &Env<'_>) -> Option<AlertValue> {
    match eval::eval(rule.value.as_ref()?, row, env) {
        Val::Number(n) => Some(AlertValue::Number(n)),
        Val::Text(t) => Some(AlertValue::Text(t.to_string())),
        Val::Bool(b) => Some(AlertValue::Text(b.to_string())),
        Val::Absent => None,
    }
}

/// The built-in alert for a source that could not be read; it carries the source's
/// `labels`, so that it is routed and grouped like the source's other alerts.
pub fn source_unreachable(source: &str, source_labels: &Labels, error: &str) -> Alert {
    let mut labels = source_labels.clone();
    labels.extend(
        [
            ("alertname", SOURCE_UNREACHABLE),
            ("source", source),
            ("severity", "critical"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
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
    "backend",
    "frontend",
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
    parent_fields: &[String],
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
            // The fields templates read from the parent row; all empty when there is none
            // (a template on rows of several types).
            "backend" | "frontend" => {
                let which = if var == "backend" {
                    aggregate::Parent::Backend
                } else {
                    aggregate::Parent::Frontend
                };
                let parent = aggregate::parent(row, which, &env.parents);
                let fields: BTreeMap<&str, Value> = parent_fields
                    .iter()
                    .map(|f| {
                        let v = parent
                            .as_ref()
                            .map_or_else(|| Value::from(""), |p| field_value(p, f));
                        (f.as_str(), v)
                    })
                    .collect();
                Value::from(fields)
            }
            name => field_value(row, name),
        };
        out.insert(var.clone(), v);
    }
    out
}

/// A row's field as a template value: text columns as text (without the `* ` of a
/// running check), numbers as integers when they are, absent fields as empty text.
fn field_value(row: &Row<'_>, name: &str) -> minijinja::Value {
    use minijinja::Value;
    match name {
        "state" => return Value::from(row.state().as_str()),
        "kind" => return Value::from(row.kind().as_str()),
        "proxy" => return Value::from(row.proxy()),
        "server" => return Value::from(row.name()),
        _ => {}
    }
    match row.by_name(name) {
        // Absent fields render as empty text, not "none".
        None => Value::from(""),
        Some(text) if columns::is_text(name) => {
            Value::from(text.strip_prefix("* ").unwrap_or(text))
        }
        Some(text) => text
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or_else(|_| Value::from(text)),
    }
}

fn compile_scope(raw: &RawScope) -> Result<(Scope, SourceScope), String> {
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
    Ok((
        Scope {
            types: TypeMask::of(&types),
            proxies: Scope::globs(&raw.proxy),
            exclude_proxies: Scope::globs(&raw.exclude_proxy),
            servers: Scope::globs(&raw.server),
            exclude_servers: Scope::globs(&raw.exclude_server),
        },
        compile_source_scope(raw)?,
    ))
}

/// The sources a rule applies to (`scope.source`, `scope.labels`): row rules and process
/// rules alike.
fn compile_source_scope(raw: &RawScope) -> Result<SourceScope, String> {
    let mut labels = Vec::new();
    for (name, OneOrMany(globs)) in &raw.labels {
        if globs.is_empty() {
            return Err(format!(
                "scope labels: `{name}` needs a value or a list of values"
            ));
        }
        labels.push((name.clone(), Scope::globs(globs)));
    }
    Ok(SourceScope {
        names: Scope::globs(&raw.source),
        labels,
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

/// Checks the name of a static label (a rule's or a source's `labels`): a Prometheus
/// label name that hapwatch does not set itself.
pub fn check_label_name(label: &str) -> Result<(), String> {
    if RESERVED_LABELS.contains(&label) {
        return Err(format!(
            "label `{label}` is set by hapwatch; pick another name"
        ));
    }
    if !is_label_value_name(label) {
        return Err(format!("label name `{label}`: use letters, digits and `_`"));
    }
    Ok(())
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
        let id = match e {
            Expr::NumberColumn(id) | Expr::TextColumn(id) | Expr::Counter(_, id) => id,
            Expr::Window(w) if !w.info => &w.column,
            _ => return,
        };
        if !out.contains(id) {
            out.push(*id);
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
    labels: &'r Labels,
    now: f64,
    /// Column positions in the dump and in the previous sample, bound on the first rows.
    bound: Option<Bound>,
    /// Alerts per rule, so that they come out rule by rule, in dump order.
    alerts: Vec<Vec<Alert>>,
    /// Rows evaluated so far.
    done: usize,
    /// Rows evaluated so far by the rules that read ahead.
    done_ahead: usize,
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
    /// Starts evaluating every rule of `set` (or only the one named `only`) that applies to
    /// `source` (with its `labels`) on its dump taken at `now` (Unix seconds).
    pub fn new(
        set: &'r RuleSet,
        source: &'r str,
        labels: &'r Labels,
        now: f64,
        only: Option<&str>,
    ) -> Self {
        // Process rules match no `show stat` row: leaving them out here spares a scope test
        // per row and rule (3.5 M of the 4.9 M instructions seven of them cost on 12,001
        // rows). They are evaluated once per source by `evaluate_process`.
        let rules: Vec<&Rule> = set
            .rules
            .iter()
            .filter(|r| {
                r.rows != Rows::Process
                    && only.is_none_or(|o| o == r.name)
                    && r.sources.matches(source, labels)
            })
            .collect();
        Evaluation {
            set,
            alerts: vec![Vec::new(); rules.len()],
            rules,
            source,
            labels,
            now,
            bound: None,
            done: 0,
            done_ahead: 0,
        }
    }

    /// Evaluates the rows of `table` not evaluated yet. Every call must show the same dump
    /// (with at least the rows of the previous call), its `show info`, and the same
    /// previous sample and window history of this source; `complete` once the dump is
    /// whole (rules that read ahead wait for the end of each proxy's rows).
    pub fn advance(
        &mut self,
        table: Table<'_>,
        info: Option<&Info>,
        previous: Option<&Sample>,
        history: Option<&window::History>,
        complete: bool,
    ) {
        let ready = if self.rules.iter().any(|r| r.reads_ahead) {
            aggregate::ready(table, complete)
        } else {
            0
        };
        if table.len() <= self.done && ready <= self.done_ahead {
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
            labels: self.labels,
            dump_columns: &bound.dump_columns,
            previous: previous.map(|sample| Previous {
                sample,
                columns: &bound.previous_columns,
                interval,
                restarted: bound.restarted,
            }),
            parents: Default::default(),
            windows: history
                .filter(|h| !h.samples.is_empty())
                .map(|h| window::Bound::new(h, &set.columns, info, self.now)),
            process: process::ProcessEnv::bind(&set.columns, info, previous),
        };
        // Row by row, every rule while the row is in the CPU cache (a rule-by-rule pass
        // fetched a big dump's field offsets from memory once per rule).
        for row in table.rows_in(self.done..table.len()) {
            for (rule, alerts) in self.rules.iter().zip(&mut self.alerts) {
                if !rule.reads_ahead
                    && rule.scope.matches(&row)
                    && eval::truth(&rule.when, &row, &env)
                {
                    alerts.push(set.alert(rule, &row, &env));
                }
            }
        }
        self.done = table.len();
        // Rules that read ahead, on the proxies whose rows are all in.
        if ready > self.done_ahead {
            for row in table.rows_in(self.done_ahead..ready) {
                for (rule, alerts) in self.rules.iter().zip(&mut self.alerts) {
                    if rule.reads_ahead
                        && rule.scope.matches(&row)
                        && eval::truth(&rule.when, &row, &env)
                    {
                        alerts.push(set.alert(rule, &row, &env));
                    }
                }
            }
            self.done_ahead = ready;
        }
    }

    /// The alerts: rule by rule, in dump order.
    pub fn finish(self) -> Vec<Alert> {
        self.alerts.into_iter().flatten().collect()
    }
}
