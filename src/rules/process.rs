//! The process row and changes: `show info` as a row type (`scope = { type = "process" }`),
//! its fields from any row (`info.Maxconn`, `info["Ulimit-n"]`), the source's own read
//! time (`source.read_seconds`), and `prev(X)`, the previous run's value of a field of the
//! same row.
//!
//! Names are type-checked at load like columns: `show info` fields against
//! [`crate::stats::INFO_FIELDS`]. Field ids share the rule set's column table under an
//! `info.` prefix (a `show stat` column never has a dot), so that an expression stays a
//! tree of small integers and each dump binds every id once.
//!
//! `prev()` keeps, in the source's [`Sample`], the fields that rules pass to it and
//! nothing else: per `show stat` column one value per row, and the few `show info`
//! fields read through `prev()`, `delta()` or `rate()` on the process row.

use super::eval::{Env, Previous, Val};
use super::expr::{ColumnTable, Counter, Expr, ExprError, Rows, Type, Typed};
use super::sample::{increase, Sample};
use super::window::{Bound, History};
use super::{RawScope, Rule, RuleSet};
use crate::alert::{Alert, Labels};
use crate::scope::Scope;
use crate::stats::{columns, info_field_is_text, Info, Row, Stats, Table, TypeMask, INFO_FIELDS};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

/// The name of the read time in expressions.
pub const READ_SECONDS: &str = "source.read_seconds";

/// Prefix of `show info` field ids in the column table.
pub(super) const INFO: &str = "info.";

/// Used when a process rule has no `summary`.
pub(super) const DEFAULT_SUMMARY: &str =
    "{{ alertname }} on {{ source }}{% if value is not none %} (value {{ value }}){% endif %}";

/// Expression nodes of this module (one [`Expr::Process`] variant keeps them apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Node {
    /// A `show info` field: id of `info.NAME`, and whether it is text.
    Info(usize, bool),
    /// `source.read_seconds`.
    ReadSeconds,
    /// `prev(x)`: id of a `show stat` column or of `info.NAME`, and whether it is text.
    Prev(usize, bool),
    /// `delta()` / `rate()` of a `show info` counter (`DroppedLogs`, `PoolFailed`, …).
    InfoCounter(Counter, usize),
    /// `exists(info.NAME)`.
    InfoExists(usize),
}

/// Reads `info.NAME`, `info["NAME"]` and `source.NAME` as one name token, given the word
/// `text[start..end]` just read. `Ok(None)`: an ordinary name.
pub(super) fn lex_qualified(
    text: &str,
    start: usize,
    end: usize,
) -> Result<Option<(String, usize)>, ExprError> {
    let word = &text[start..end];
    if word != "info" && word != "source" {
        return Ok(None);
    }
    let bytes = text.as_bytes();
    match bytes.get(end) {
        Some(b'.')
            if bytes
                .get(end + 1)
                .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_') =>
        {
            let mut i = end + 1;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            Ok(Some((text[start..i].to_string(), i)))
        }
        Some(b'[') if word == "info" => {
            let bad = || {
                ExprError::new(
                    end,
                    "write a field name that is not an identifier in quotes and brackets, \
                     e.g. info[\"Ulimit-n\"]",
                )
            };
            let quote = *bytes
                .get(end + 1)
                .filter(|q| matches!(q, b'"' | b'\''))
                .ok_or_else(bad)?;
            let body = end + 2;
            let close = text[body..].find(quote as char).ok_or_else(bad)? + body;
            if bytes.get(close + 1) != Some(&b']') {
                return Err(bad());
            }
            Ok(Some((format!("{INFO}{}", &text[body..close]), close + 2)))
        }
        _ => Ok(None),
    }
}

/// Compiles a name that belongs to this module; `None` leaves it to the column lookup.
pub(super) fn compile_name(
    name: &str,
    at: usize,
    rows: Rows,
    columns: &mut dyn ColumnTable,
) -> Option<Result<Typed, ExprError>> {
    if let Some(field) = name.strip_prefix(INFO) {
        return Some(info_field(field, at, columns));
    }
    if name == READ_SECONDS {
        return Some(match rows {
            Rows::Process => Ok((Expr::Process(Node::ReadSeconds), Type::Number)),
            Rows::Stats => Err(ExprError::new(
                at,
                "`source.read_seconds` is known once the whole reply is read, after the \
                 rows were evaluated: use it in a rule with scope = { type = \"process\" }",
            )),
        });
    }
    if let Some(field) = name.strip_prefix("source.") {
        return Some(Err(ExprError::new(
            at,
            format!(
                "unknown source field `{field}`{}; a source has `source.read_seconds`",
                super::expr::suggest(field, ["read_seconds"].into_iter())
            ),
        )));
    }
    if rows == Rows::Stats {
        return None;
    }
    match name {
        "true" | "false" | "and" | "or" | "not" | "source" => None,
        "state" | "proxy" | "server" | "kind" => Some(Err(ExprError::new(
            at,
            format!(
                "a process row is the whole HAProxy process (its `show info`): it has no \
                 `{name}`; its fields are named as `show info` prints them, e.g. Idle_pct"
            ),
        ))),
        _ => Some(info_field(name, at, columns)),
    }
}

fn info_field(field: &str, at: usize, columns: &mut dyn ColumnTable) -> Result<Typed, ExprError> {
    let Some(text) = info_field_is_text(field) else {
        let hint = super::expr::suggest(field, INFO_FIELDS.iter().map(|(n, _)| *n));
        let column = if columns::is_known(field) {
            format!("; `{field}` is a `show stat` column, which a process row does not have")
        } else {
            String::new()
        };
        return Err(ExprError::new(
            at,
            format!("unknown `show info` field `{field}`{hint}{column}"),
        ));
    };
    let id = columns.id(&format!("{INFO}{field}"));
    let ty = if text { Type::Text } else { Type::Number };
    Ok((Expr::Process(Node::Info(id, text)), ty))
}

/// Compiles the calls this module adds or extends (`prev()`; `delta()`, `rate()` and
/// `exists()` of `show info` fields); `None` leaves the call to the expression module.
pub(super) fn compile_call(
    name: &str,
    args: &[(Typed, usize)],
) -> Option<Result<Typed, ExprError>> {
    let ((arg, ty), at) = args.first()?;
    match (name, arg) {
        ("prev", Expr::NumberColumn(id)) => {
            Some(Ok((Expr::Process(Node::Prev(*id, false)), Type::Number)))
        }
        ("prev", Expr::TextColumn(id)) => {
            Some(Ok((Expr::Process(Node::Prev(*id, true)), Type::Text)))
        }
        ("prev", Expr::Process(Node::Info(id, text))) => {
            Some(Ok((Expr::Process(Node::Prev(*id, *text)), *ty)))
        }
        ("prev", _) => Some(Err(ExprError::new(
            *at,
            "`prev` takes a field name, e.g. prev(check_status), prev(Version) or \
             prev(info.Pid)",
        ))),
        ("delta" | "rate", Expr::Process(Node::Info(id, false))) => {
            let kind = if name == "delta" {
                Counter::Delta
            } else {
                Counter::Rate
            };
            Some(Ok((
                Expr::Process(Node::InfoCounter(kind, *id)),
                Type::Number,
            )))
        }
        ("exists", Expr::Process(Node::Info(id, _))) => {
            Some(Ok((Expr::Process(Node::InfoExists(*id)), Type::Bool)))
        }
        _ => None,
    }
}

/// A rule's scope when it selects the process row: `Some(Ok(scope))` for
/// `type = "process"`, an error when that is mixed with row types or name globs, `None`
/// for any other scope.
pub(super) fn process_scope(raw: &RawScope) -> Option<Result<Scope, String>> {
    if !raw.types.iter().any(|t| t == "process") {
        return None;
    }
    if raw.types.len() > 1 {
        return Some(Err(
            "scope type \"process\" is one row per source made of `show info`: it cannot be \
             mixed with frontend, backend, server or listener rows; write two rules"
                .into(),
        ));
    }
    if !(raw.proxy.is_empty()
        && raw.server.is_empty()
        && raw.exclude_proxy.is_empty()
        && raw.exclude_server.is_empty())
    {
        return Some(Err(
            "a process row has no proxy or server name: drop proxy/server/exclude_* from \
             this scope"
                .into(),
        ));
    }
    Some(Ok(Scope {
        // No `show stat` row: process rules are evaluated once per source instead.
        types: TypeMask(0),
        ..Scope::default()
    }))
}

/// What expressions read besides the row: `show info` values and the previous run's.
#[derive(Default)]
pub struct ProcessEnv<'a> {
    /// The source's `show info` (`None`: a stats page, which has none).
    pub info: Option<&'a Info>,
    /// Per column id, the current value of `info.NAME` ids (absent for other ids).
    now: Vec<Val<'a>>,
    /// Per column id, the previous run's value of `info.NAME` ids kept for `prev()`.
    before: Vec<Val<'a>>,
    /// Per column id, the position of a `show stat` column in the previous `prev()` values.
    prev_columns: Vec<Option<usize>>,
}

impl<'a> ProcessEnv<'a> {
    /// Binds the column table `ids` to this dump's `info` and the `previous` sample.
    pub fn bind(ids: &[String], info: Option<&'a Info>, previous: Option<&'a Sample>) -> Self {
        if !ids.iter().any(|c| c.starts_with(INFO)) && previous.is_none_or(|p| p.prev.is_empty()) {
            return ProcessEnv {
                info,
                ..ProcessEnv::default()
            };
        }
        fn field(id: &str) -> Option<&str> {
            id.strip_prefix(INFO)
        }
        let now = ids
            .iter()
            .map(|id| match (field(id), info) {
                (Some(name), Some(info)) => typed(name, info.get(name)),
                _ => Val::Absent,
            })
            .collect();
        let before = ids
            .iter()
            .map(|id| match (field(id), previous) {
                (Some(name), Some(p)) => typed(name, p.prev.info.get(name).map(String::as_str)),
                _ => Val::Absent,
            })
            .collect();
        let prev_columns = ids
            .iter()
            .map(|id| previous.and_then(|p| p.prev.columns.iter().position(|c| c == id)))
            .collect();
        ProcessEnv {
            info,
            now,
            before,
            prev_columns,
        }
    }
}

/// A `show info` value typed as its field: text, or a number (absent when it is none).
fn typed<'a>(name: &str, value: Option<&'a str>) -> Val<'a> {
    match (value, info_field_is_text(name)) {
        (None, _) => Val::Absent,
        (Some(text), Some(true)) => Val::Text(text),
        (Some(text), _) => number(text).map_or(Val::Absent, Val::Number),
    }
}

fn number(text: &str) -> Option<f64> {
    if let Ok(n) = text.parse::<u64>() {
        return Some(n as f64);
    }
    text.parse::<f64>().ok().filter(|n| n.is_finite())
}

/// The current value of `show info` counter `id` (an `info.NAME` id), for windows.
pub(super) fn info_counter(env: &Env<'_>, id: usize) -> Option<u64> {
    match env.process.now.get(id) {
        Some(Val::Number(n)) if *n >= 0.0 && n.fract() == 0.0 => Some(*n as u64),
        _ => None,
    }
}

/// Evaluates a node of this module for `row`.
pub fn eval<'a>(node: &Node, row: &Row<'a>, env: &Env<'a>) -> Val<'a> {
    let process = &env.process;
    let at = |values: &[Val<'a>], id: usize| values.get(id).copied().unwrap_or(Val::Absent);
    match *node {
        Node::Info(id, _) => at(&process.now, id),
        Node::InfoExists(id) => Val::Bool(at(&process.now, id) != Val::Absent),
        Node::ReadSeconds => process
            .info
            .and_then(|i| i.read_seconds)
            .map_or(Val::Absent, Val::Number),
        Node::Prev(id, text) => match process.prev_columns.get(id).copied().flatten() {
            Some(column) => {
                let Some(previous) = &env.previous else {
                    return Val::Absent;
                };
                let sample = previous.sample;
                let Some(value) = sample
                    .find(row.index(), row.proxy(), row.name())
                    .and_then(|r| sample.prev.values.get(column)?.get(r)?.as_deref())
                else {
                    return Val::Absent;
                };
                if text {
                    Val::Text(value)
                } else {
                    number(value).map_or(Val::Absent, Val::Number)
                }
            }
            None => at(&process.before, id),
        },
        Node::InfoCounter(kind, id) => {
            let (Val::Number(now), Val::Number(before), Some(previous)) =
                (at(&process.now, id), at(&process.before, id), &env.previous)
            else {
                return Val::Absent;
            };
            let delta = increase(before as u64, now as u64, previous.restarted) as f64;
            match kind {
                Counter::Delta => Val::Number(delta),
                Counter::Rate if previous.interval > 0.0 => Val::Number(delta / previous.interval),
                Counter::Rate => Val::Absent,
            }
        }
    }
}

/// The previous run's values that `prev()` (and `delta()`/`rate()` of `show info`
/// fields) read: only the fields rules name, stored in the source's sample.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PrevValues {
    /// `show info` fields by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub info: BTreeMap<String, String>,
    /// `show stat` columns passed to `prev()`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<String>,
    /// Per column, each row's value (rows as in the sample's `rows`); `None`: empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<Vec<Option<String>>>,
}

impl PrevValues {
    /// True when nothing is kept (no rule uses `prev()`): not written to the state file.
    pub fn is_empty(&self) -> bool {
        self.info.is_empty() && self.columns.is_empty()
    }
}

/// [`PrevValues`] being taken as a dump's rows arrive (part of a sample's capture).
#[derive(Debug, Default)]
pub struct PrevCapture {
    info_fields: Vec<String>,
    dump_columns: Option<Vec<Option<usize>>>,
    kept: PrevValues,
}

impl PrevCapture {
    /// Keeps `columns` of every row and the `show info` fields `info_fields`.
    pub fn new(columns: Vec<String>, info_fields: Vec<String>) -> PrevCapture {
        PrevCapture {
            info_fields,
            dump_columns: None,
            kept: PrevValues {
                info: BTreeMap::new(),
                values: vec![Vec::new(); columns.len()],
                columns,
            },
        }
    }

    /// True when rows must be kept (a `show stat` column is passed to `prev()`).
    pub fn keeps_rows(&self) -> bool {
        !self.kept.columns.is_empty()
    }

    /// Takes the wanted fields of the dump's `show info`.
    pub fn info(&mut self, info: Option<&Info>) {
        self.kept.info = match info {
            Some(info) => self
                .info_fields
                .iter()
                .filter_map(|f| Some((f.clone(), info.get(f)?.to_string())))
                .collect(),
            None => BTreeMap::new(),
        };
    }

    /// Takes the wanted fields of `row`, the next row of `table`.
    pub fn row(&mut self, table: &Table<'_>, row: &Row<'_>) {
        if !self.keeps_rows() {
            return;
        }
        let kept = &self.kept;
        let dump_columns = self.dump_columns.get_or_insert_with(|| {
            kept.columns
                .iter()
                .map(|c| table.columns().get(c))
                .collect()
        });
        for (column, values) in dump_columns.iter().zip(&mut self.kept.values) {
            let value = column.and_then(|c| row.get(c));
            // As rules read it: without the `* ` "check running" mark.
            values.push(value.map(|v| v.strip_prefix("* ").unwrap_or(v).to_string()));
        }
    }

    /// The values taken.
    pub fn finish(self) -> PrevValues {
        self.kept
    }
}

/// A row to evaluate process rules against: they read no `show stat` field, and the
/// names that would read the row (`proxy`, `state`, …) do not compile in them.
fn no_row() -> Row<'static> {
    static STATS: OnceLock<Stats> = OnceLock::new();
    STATS
        .get_or_init(|| {
            Stats::parse(b"# pxname,svname,\n,,\n".to_vec()).expect("a valid one-row dump")
        })
        .table()
        .row(0)
}

impl RuleSet {
    /// The `show stat` columns and the `show info` fields whose previous values rules read
    /// (`prev()`, and `delta()`/`rate()` of `show info` fields): what a sample keeps for them.
    pub fn prev_capture(&self) -> PrevCapture {
        let mut columns = Vec::new();
        let mut fields = Vec::new();
        for rule in &self.rules {
            for expr in std::iter::once(&rule.when).chain(&rule.value) {
                expr.visit(&mut |e| {
                    let id = match e {
                        Expr::Process(Node::Prev(id, _) | Node::InfoCounter(_, id)) => *id,
                        _ => return,
                    };
                    let name = &self.columns[id];
                    let (list, name) = match name.strip_prefix(INFO) {
                        Some(field) => (&mut fields, field),
                        None => (&mut columns, name.as_str()),
                    };
                    if !list.iter().any(|n: &String| n == name) {
                        list.push(name.to_string());
                    }
                });
            }
        }
        PrevCapture::new(columns, fields)
    }

    /// `show stat` columns read through `prev()`: the dump must keep them.
    pub(super) fn prev_columns(&self) -> Vec<String> {
        self.prev_capture().kept.columns
    }

    /// Names in the column table that are not `show stat` columns.
    pub(super) fn is_column(name: &str) -> bool {
        !name.starts_with(INFO)
    }

    /// Process rules (`scope = { type = "process" }`), or only the one named `only`.
    pub fn process_rules<'r>(&'r self, only: Option<&'r str>) -> impl Iterator<Item = &'r Rule> {
        self.rules
            .iter()
            .filter(move |r| r.rows == Rows::Process && only.is_none_or(|o| o == r.name))
    }

    /// Evaluates the process rules on the process row of `source` (its `show info`,
    /// `None` for a stats page, which has no process row): one alert per rule that
    /// matches. `previous` is the source's sample of the previous run, `history` its
    /// window samples (`delta(DroppedLogs, 5m)`).
    #[allow(clippy::too_many_arguments)]
    pub fn evaluate_process(
        &self,
        source: &str,
        labels: &Labels,
        info: Option<&Info>,
        previous: Option<&Sample>,
        history: Option<&History>,
        now: f64,
        only: Option<&str>,
    ) -> Vec<Alert> {
        let Some(info) = info else {
            return Vec::new();
        };
        let mut rules = self
            .process_rules(only)
            .filter(|r| r.sources.matches(source, labels))
            .peekable();
        if rules.peek().is_none() {
            return Vec::new();
        }
        let none = vec![None; self.columns.len()];
        let restarted = previous.is_some_and(|p| p.restarted_before_info(Some(info)));
        let interval = previous.map_or(0.0, |p| {
            let since = now - p.taken_at;
            match info.uptime_sec() {
                // After a restart the counters count from the process's start.
                Some(uptime) if restarted => since.min(uptime as f64 + 1.0),
                _ => since,
            }
        });
        let env = Env {
            source,
            labels,
            dump_columns: &none,
            previous: previous.map(|sample| Previous {
                sample,
                columns: &none,
                interval,
                restarted,
            }),
            parents: Default::default(),
            windows: history
                .filter(|h| !h.samples.is_empty())
                .map(|h| Bound::new(h, &self.columns, Some(info), now)),
            process: ProcessEnv::bind(&self.columns, Some(info), previous),
        };
        let row = no_row();
        rules
            .filter(|rule| super::eval::truth(&rule.when, &row, &env))
            .map(|rule| self.process_alert(rule, &row, &env))
            .collect()
    }

    fn process_alert(&self, rule: &Rule, row: &Row<'_>, env: &Env<'_>) -> Alert {
        // The source's labels first; a rule's own label of the same name wins (as in
        // `RuleSet::alert`).
        let mut labels = env.labels.clone();
        labels.insert("alertname".into(), rule.name.clone());
        labels.insert("source".into(), env.source.to_string());
        labels.insert("type".into(), "process".into());
        labels.insert("severity".into(), rule.severity.clone());
        labels.extend(rule.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
        let value = super::alert_value(rule, row, env);
        let render = |(name, vars): &(String, Vec<String>)| {
            let vars = vars
                .iter()
                .map(|var| {
                    let v = match var.as_str() {
                        "value" => super::value_var(value.as_ref()),
                        "labels" => minijinja::Value::from(labels.clone()),
                        "kind" => minijinja::Value::from("process"),
                        "source" => source_var(env),
                        "info" => info_var(env.process.info),
                        name if labels.contains_key(name) => {
                            minijinja::Value::from(labels[name].as_str())
                        }
                        name => info_value(name, env.process.info),
                    };
                    (var.clone(), v)
                })
                .collect();
            self.templates.render(name, vars)
        };
        let mut annotations = BTreeMap::new();
        annotations.insert("summary".to_string(), render(&rule.summary));
        if let Some(description) = &rule.description {
            annotations.insert("description".to_string(), render(description));
        }
        labels.retain(|_, value| !value.is_empty());
        Alert {
            labels,
            annotations,
            value,
        }
    }
}

/// True for a template variable of a rule on `rows` that this module provides.
pub(super) fn is_template_variable(name: &str, rows: Rows) -> bool {
    name == "info" || (rows == Rows::Process && info_field_is_text(name).is_some())
}

/// Candidates for "did you mean" in templates of a rule on `rows`.
pub(super) fn template_names(rows: Rows) -> Vec<&'static str> {
    let fields = INFO_FIELDS
        .iter()
        .map(|(n, _)| *n)
        .filter(|_| rows == Rows::Process);
    std::iter::once("info").chain(fields).collect()
}

/// `info` in templates: every `show info` field, typed (numbers as numbers); empty for a
/// stats page.
pub(super) fn info_var(info: Option<&Info>) -> minijinja::Value {
    let map: BTreeMap<String, minijinja::Value> = info
        .map(|info| {
            info.fields()
                .map(|(name, _)| (name.to_string(), info_value(name, Some(info))))
                .collect()
        })
        .unwrap_or_default();
    minijinja::Value::from(map)
}

fn info_value(name: &str, info: Option<&Info>) -> minijinja::Value {
    match info.and_then(|i| i.get(name)) {
        None => minijinja::Value::from(""),
        Some(text) if info_field_is_text(name) == Some(true) => minijinja::Value::from(text),
        Some(text) => text
            .parse::<i64>()
            .map(minijinja::Value::from)
            .or_else(|_| text.parse::<f64>().map(minijinja::Value::from))
            .unwrap_or_else(|_| minijinja::Value::from(text)),
    }
}

/// `source` in a process rule's templates: prints as the source's name and has
/// `source.read_seconds`.
fn source_var(env: &Env<'_>) -> minijinja::Value {
    #[derive(Debug)]
    struct SourceVar {
        name: String,
        read_seconds: Option<f64>,
    }
    impl minijinja::value::Object for SourceVar {
        fn repr(self: &Arc<Self>) -> minijinja::value::ObjectRepr {
            minijinja::value::ObjectRepr::Plain
        }
        fn get_value(self: &Arc<Self>, key: &minijinja::Value) -> Option<minijinja::Value> {
            match key.as_str()? {
                "read_seconds" => self.read_seconds.map(minijinja::Value::from),
                _ => None,
            }
        }
        fn render(self: &Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.name)
        }
    }
    minijinja::Value::from_object(SourceVar {
        name: env.source.to_string(),
        read_seconds: env.process.info.and_then(|i| i.read_seconds),
    })
}

#[cfg(test)]
mod tests {
    use super::super::expr::{compile_condition_on, compile_on, Rows, Type};

    fn err(text: &str, rows: Rows) -> (usize, String) {
        let e = compile_condition_on(text, &mut Vec::<String>::new(), rows).unwrap_err();
        (e.offset, e.message)
    }

    #[test]
    fn info_fields_are_typed_and_named_as_show_info_prints_them() {
        let mut ids = Vec::<String>::new();
        let (_, ty) = compile_on("info.Maxconn", &mut ids, Rows::Stats).unwrap();
        assert_eq!(ty, Type::Number);
        let (_, ty) = compile_on("info[\"Ulimit-n\"] * 2", &mut ids, Rows::Stats).unwrap();
        assert_eq!(ty, Type::Number);
        let (_, ty) = compile_on("Version", &mut ids, Rows::Process).unwrap();
        assert_eq!(ty, Type::Text);
        let (_, ty) = compile_on("prev(Version)", &mut ids, Rows::Process).unwrap();
        assert_eq!(ty, Type::Text);
        let (_, ty) = compile_on("prev(scur)", &mut ids, Rows::Stats).unwrap();
        assert_eq!(ty, Type::Number);
        let (_, ty) = compile_on("delta(DroppedLogs)", &mut ids, Rows::Process).unwrap();
        assert_eq!(ty, Type::Number);
        assert_eq!(
            ids,
            [
                "info.Maxconn",
                "info.Ulimit-n",
                "info.Version",
                "scur",
                "info.DroppedLogs"
            ]
        );
    }

    #[test]
    fn unknown_info_fields_suggest_the_nearest() {
        assert_eq!(
            err("info.Maxcon > 1", Rows::Stats),
            (
                0,
                "unknown `show info` field `Maxcon` (did you mean `Maxconn`?)".into()
            )
        );
        assert_eq!(
            err("Idle_pc < 10", Rows::Process),
            (
                0,
                "unknown `show info` field `Idle_pc` (did you mean `Idle_pct`?)".into()
            )
        );
        assert_eq!(
            err("scur > 1", Rows::Process).1,
            "unknown `show info` field `scur`; `scur` is a `show stat` column, which a process row does not have"
        );
        assert_eq!(
            err("state == \"up\"", Rows::Process).1,
            "a process row is the whole HAProxy process (its `show info`): it has no `state`; its fields are named as `show info` prints them, e.g. Idle_pct"
        );
        assert_eq!(
            err("Version > 2", Rows::Process),
            (
                8,
                "`>` compares text with a number; both sides must be numbers, or both text".into()
            )
        );
    }

    #[test]
    fn read_seconds_and_prev_are_checked() {
        assert_eq!(
            err("scur > 1 and source.read_seconds > 2", Rows::Stats).0,
            13
        );
        assert_eq!(
            err("source.read_secs > 2", Rows::Process).1,
            "unknown source field `read_secs` (did you mean `read_seconds`?); a source has `source.read_seconds`"
        );
        assert_eq!(
            err("prev(1) > 2", Rows::Stats),
            (5, "`prev` takes a field name, e.g. prev(check_status), prev(Version) or prev(info.Pid)".into())
        );
        assert_eq!(
            err("info[Ulimit-n] > 2", Rows::Stats),
            (4, "write a field name that is not an identifier in quotes and brackets, e.g. info[\"Ulimit-n\"]".into())
        );
        assert_eq!(
            err("prev(check_status) > 2", Rows::Stats).1,
            "`>` compares text with a number; both sides must be numbers, or both text"
        );
        // Windows over `show info` counters, not over its text fields.
        assert!(
            compile_condition_on("delta(DroppedLogs, 5m) > 0", &mut Vec::new(), Rows::Process)
                .is_ok()
        );
        assert!(
            compile_condition_on("rate(info.ConnRate, 2m) > 0", &mut Vec::new(), Rows::Stats)
                .is_ok()
        );
        assert_eq!(
            err("delta(Version, 5m) > 0", Rows::Process),
            (
                6,
                "`delta` takes a counter column name and a window, e.g. delta(stot, 5m)".into()
            )
        );
    }
}
