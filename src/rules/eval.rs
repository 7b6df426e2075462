//! Evaluating compiled expressions against one row.

use super::aggregate;
use super::expr::{Arith, Cmp, Counter, Expr, Special};
use super::sample::{increase, Sample};
use super::window;
use crate::stats::Row;

/// A value during evaluation. Text borrows from the dump or the rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Val<'a> {
    /// A number.
    Number(f64),
    /// Text.
    Text(&'a str),
    /// A condition's result.
    Bool(bool),
    /// Not reported (empty field, missing column, no previous sample, division by zero).
    Absent,
}

/// What expressions see besides the row: resolved column positions and the previous run.
pub struct Env<'a> {
    /// Source name (`source` in expressions).
    pub source: &'a str,
    /// The source's labels (`label("…")` in expressions).
    pub labels: &'a crate::alert::Labels,
    /// Dump column index per column id.
    pub dump_columns: &'a [Option<usize>],
    /// The previous sample and, per column id, its position in it.
    pub previous: Option<Previous<'a>>,
    /// Remembers parent rows found (see [`aggregate::parent`]).
    pub parents: aggregate::Cache,
    /// The source's window samples, for `delta(col, 5m)` and its kin (none: absent).
    pub windows: Option<window::Bound<'a>>,
    /// `show info`, `source.read_seconds` and what `prev()` reads.
    pub process: super::process::ProcessEnv<'a>,
}

/// The previous run's sample, bound to the current dump.
pub struct Previous<'a> {
    /// The sample.
    pub sample: &'a Sample,
    /// Sample column index per column id.
    pub columns: &'a [Option<usize>],
    /// Seconds between the previous sample and this dump.
    pub interval: f64,
    /// The process restarted in between (Pid or Start_time changed).
    pub restarted: bool,
}

/// Evaluates `expr` for `row`.
pub fn eval<'a>(expr: &'a Expr, row: &Row<'a>, env: &Env<'a>) -> Val<'a> {
    match expr {
        Expr::Number(n) => Val::Number(*n),
        Expr::Text(t) => Val::Text(t),
        Expr::Bool(b) => Val::Bool(*b),
        Expr::NumberColumn(id) => match field(row, env, *id) {
            Some(text) => parse_number(text).map_or(Val::Absent, Val::Number),
            None => Val::Absent,
        },
        // HAProxy prefixes check_status with "* " while a check runs; rules see the status.
        Expr::TextColumn(id) => field(row, env, *id).map_or(Val::Absent, |t| {
            Val::Text(t.strip_prefix("* ").unwrap_or(t))
        }),
        Expr::Special(special) => Val::Text(match special {
            Special::State => row.state().as_str(),
            Special::Proxy => row.proxy(),
            Special::Server => row.name(),
            Special::Kind => row.kind().as_str(),
            Special::Source => env.source,
        }),
        Expr::Counter(kind, id) => counter(*kind, *id, row, env),
        Expr::Parent(parent, inner, _) => match aggregate::parent(row, *parent, &env.parents) {
            Some(parent_row) => eval(inner, &parent_row, env),
            None => Val::Absent,
        },
        Expr::Aggregate(aggregate) => aggregate::eval(aggregate, row, env),
        Expr::Window(w) => window::eval(w, row, env),
        Expr::Exists(id) => Val::Bool(field(row, env, *id).is_some()),
        Expr::Label(name) => Val::Text(env.labels.get(&**name).map_or("", String::as_str)),
        Expr::Neg(a) => number(a, row, env).map_or(Val::Absent, |n| Val::Number(-n)),
        Expr::Abs(a) => number(a, row, env).map_or(Val::Absent, |n| Val::Number(n.abs())),
        Expr::MinMax(min, a, b) => match (number(a, row, env), number(b, row, env)) {
            (Some(a), Some(b)) => Val::Number(if *min { a.min(b) } else { a.max(b) }),
            _ => Val::Absent,
        },
        Expr::Arith(op, a, b) => {
            let (Some(a), Some(b)) = (number(a, row, env), number(b, row, env)) else {
                return Val::Absent;
            };
            let result = match op {
                Arith::Add => a + b,
                Arith::Sub => a - b,
                Arith::Mul => a * b,
                Arith::Div | Arith::Rem if b == 0.0 => return Val::Absent,
                Arith::Div => a / b,
                Arith::Rem => a % b,
            };
            if result.is_finite() {
                Val::Number(result)
            } else {
                Val::Absent
            }
        }
        Expr::CompareNumbers(op, a, b) => {
            Val::Bool(match (number(a, row, env), number(b, row, env)) {
                (Some(a), Some(b)) => match op {
                    Cmp::Eq => a == b,
                    Cmp::Ne => a != b,
                    Cmp::Lt => a < b,
                    Cmp::Le => a <= b,
                    Cmp::Gt => a > b,
                    Cmp::Ge => a >= b,
                },
                _ => false,
            })
        }
        Expr::CompareText(op, a, b) => {
            let (a, b) = (eval(a, row, env), eval(b, row, env));
            Val::Bool(match (a, b) {
                (Val::Absent, _) | (_, Val::Absent) => false,
                _ => (a == b) == (*op == Cmp::Eq),
            })
        }
        Expr::Glob(negated, a, glob) => Val::Bool(match eval(a, row, env) {
            Val::Text(t) => glob.matches(t) != *negated,
            _ => false,
        }),
        Expr::Not(a) => Val::Bool(!truth(a, row, env)),
        Expr::And(a, b) => Val::Bool(truth(a, row, env) && truth(b, row, env)),
        Expr::Or(a, b) => Val::Bool(truth(a, row, env) || truth(b, row, env)),
        Expr::Process(node) => super::process::eval(node, row, env),
    }
}

/// Evaluates a condition.
pub fn truth(expr: &Expr, row: &Row<'_>, env: &Env<'_>) -> bool {
    matches!(eval(expr, row, env), Val::Bool(true))
}

fn number(expr: &Expr, row: &Row<'_>, env: &Env<'_>) -> Option<f64> {
    match eval(expr, row, env) {
        Val::Number(n) => Some(n),
        _ => None,
    }
}

fn field<'a>(row: &Row<'a>, env: &Env<'_>, id: usize) -> Option<&'a str> {
    env.dump_columns[id].and_then(|col| row.get(col))
}

/// Integers (including HAProxy's signed `lastsess`) and decimals.
fn parse_number(text: &str) -> Option<f64> {
    if let Ok(n) = text.parse::<u64>() {
        return Some(n as f64);
    }
    text.parse::<f64>().ok().filter(|n| n.is_finite())
}

fn counter<'a>(kind: Counter, id: usize, row: &Row<'a>, env: &Env<'a>) -> Val<'a> {
    let Some(previous) = &env.previous else {
        return Val::Absent;
    };
    let Some(current) = field(row, env, id).and_then(|t| t.parse::<u64>().ok()) else {
        return Val::Absent;
    };
    let Some(before) = previous.columns[id].and_then(|c| {
        let at = previous.sample.find(row.index(), row.proxy(), row.name())?;
        previous.sample.value(c, at)
    }) else {
        return Val::Absent;
    };
    let delta = increase(before, current, previous.restarted) as f64;
    match kind {
        Counter::Delta => Val::Number(delta),
        Counter::Rate if previous.interval > 0.0 => Val::Number(delta / previous.interval),
        Counter::Rate => Val::Absent,
    }
}
