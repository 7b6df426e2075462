//! The rule expression language: lexing, parsing and type checking into [`Expr`], a tree
//! whose column references are small integers, resolved to dump columns once per dump.
//!
//! ```text
//! or      := and ("or" and)*
//! and     := not ("and" not)*
//! not     := "not" not | compare
//! compare := sum (("==" | "!=" | "<" | "<=" | ">" | ">=") sum | ("~" | "!~") STRING)?
//! sum     := product (("+" | "-") product)*
//! product := unary (("*" | "/" | "%") unary)*
//! unary   := "-" unary | primary
//! primary := NUMBER | DURATION | STRING | "true" | "false" | NAME | NAME "(" args ")" | "(" or ")"
//! ```

use super::aggregate::{Aggregate, Fold, Members, Parent};
use super::window::{self, Window};
use crate::stats::columns;
use wildmatch::WildMatch;

/// Names that are not columns but are always available.
pub const SPECIAL_NAMES: &[(&str, &str)] = &[
    ("state", "normalized status: up, down, going_down, going_up, nolb, drain, maint, no_check, open, stop, full, paused, waiting, unknown"),
    ("proxy", "pxname"),
    ("server", "svname (FRONTEND / BACKEND for those rows)"),
    ("kind", "frontend, backend, server or listener"),
    ("source", "the source's name"),
];

/// Functions: name, arity, description.
pub const FUNCTIONS: &[(&str, usize, &str)] = &[
    (
        "delta",
        1,
        "increase of a counter since the previous run (reset-aware); delta(col, 5m): over 5 minutes",
    ),
    (
        "rate",
        1,
        "per-second increase of a counter since the previous run (reset-aware); rate(col, 5m): over 5 minutes",
    ),
    (
        "rises",
        2,
        "rises(col, 5m): in how many runs of the window the counter went up (reset-aware)",
    ),
    ("exists", 1, "true when the column is present and not empty"),
    ("min", 2, "the smaller of two numbers; min(servers, EXPR[, COND]): over a backend's servers"),
    ("max", 2, "the larger of two numbers; max(servers, EXPR[, COND]): over a backend's servers"),
    ("count", 1, "count(servers[, COND]) on a backend, count(listeners[, COND]) on a frontend"),
    ("sum", 2, "sum(servers, EXPR[, COND]) on a backend; sum(listeners, …) on a frontend"),
    ("avg", 2, "avg(servers, EXPR[, COND]) on a backend; avg(listeners, …) on a frontend"),
    ("abs", 1, "absolute value"),
    (
        "label",
        1,
        "a label of the source (its `labels`), \"\" when it has none, e.g. label(\"env\")",
    ),
    (
        "prev",
        1,
        "the previous run's value of a field of the same row (number or text)",
    ),
];

const LABEL_ARGUMENT: &str = "`label` takes a label name in quotes, e.g. label(\"env\")";

/// What rows a rule looks at, which decides what its bare names mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Rows {
    /// `show stat` rows: names are columns.
    #[default]
    Stats,
    /// The process row made of `show info`: names are its fields.
    Process,
}

/// A syntax or type error, with the byte offset in the expression where it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExprError {
    /// Byte offset in the expression text.
    pub offset: usize,
    /// What is wrong, and what to write instead when that is clear.
    pub message: String,
}

impl ExprError {
    pub(super) fn new(offset: usize, message: impl Into<String>) -> Self {
        ExprError {
            offset,
            message: message.into(),
        }
    }
}

/// Value types, checked at compile time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    /// Integers and decimals (durations are seconds).
    Number,
    /// Text.
    Text,
    /// `true` / `false`, results of comparisons.
    Bool,
}

impl Type {
    pub(super) fn name(self) -> &'static str {
        match self {
            Type::Number => "a number",
            Type::Text => "text",
            Type::Bool => "a condition",
        }
    }
}

/// Arithmetic operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arith {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/` (division by zero gives an absent value, so the comparison is false)
    Div,
    /// `%`
    Rem,
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

/// Values computed from the row or from outside the dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Special {
    /// Normalized status.
    State,
    /// `pxname`.
    Proxy,
    /// `svname`.
    Server,
    /// Row type.
    Kind,
    /// Source name.
    Source,
}

/// Functions over the previous run's sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    /// Increase since the previous sample.
    Delta,
    /// Increase per second since the previous sample.
    Rate,
}

/// A compiled expression. Columns are ids into the rule set's column table.
#[derive(Debug, Clone)]
pub enum Expr {
    /// A number literal (durations in seconds).
    Number(f64),
    /// A text literal.
    Text(Box<str>),
    /// `true` / `false`.
    Bool(bool),
    /// A numeric column.
    NumberColumn(usize),
    /// A text column; `check_status` loses HAProxy's `* ` "check running" prefix.
    TextColumn(usize),
    /// A value that is not a column.
    Special(Special),
    /// `delta(col)` / `rate(col)`.
    Counter(Counter, usize),
    /// `exists(col)`.
    Exists(usize),
    /// `label("name")`: a label of the source being read.
    Label(Box<str>),
    /// `backend.X` / `frontend.X`: the expression on the row's parent (offset for errors).
    Parent(Parent, Box<Expr>, usize),
    /// `count(servers, …)`, `sum(servers, …)` …
    Aggregate(Box<Aggregate>),
    /// `delta(col, 5m)`, `rate(col, 5m)`, `rises(col, 5m)`.
    Window(Window),
    /// `-x`
    Neg(Box<Expr>),
    /// `abs(x)`
    Abs(Box<Expr>),
    /// `min(a, b)` (`true`) / `max(a, b)` (`false`).
    MinMax(bool, Box<Expr>, Box<Expr>),
    /// `a + b` …
    Arith(Arith, Box<Expr>, Box<Expr>),
    /// `a == b` … on numbers.
    CompareNumbers(Cmp, Box<Expr>, Box<Expr>),
    /// `a == b` / `a != b` on text (or conditions).
    CompareText(Cmp, Box<Expr>, Box<Expr>),
    /// `a ~ "glob"` (`true` = `!~`).
    Glob(bool, Box<Expr>, Box<WildMatch>),
    /// `not a`
    Not(Box<Expr>),
    /// `a and b`
    And(Box<Expr>, Box<Expr>),
    /// `a or b`
    Or(Box<Expr>, Box<Expr>),
    /// `show info` fields, `source.read_seconds` and `prev()` (see [`super::process`]).
    Process(super::process::Node),
}

impl Expr {
    /// Calls `f` on this node and every node below it.
    pub fn visit(&self, f: &mut impl FnMut(&Expr)) {
        f(self);
        self.children(&mut |child| child.visit(f));
    }

    /// Calls `f` on each node right below this one.
    pub fn children(&self, f: &mut impl FnMut(&Expr)) {
        match self {
            Expr::Parent(_, a, _) => f(a),
            Expr::Aggregate(aggregate) => {
                aggregate.value.iter().for_each(&mut *f);
                aggregate.filter.iter().for_each(f);
            }
            Expr::Neg(a) | Expr::Abs(a) | Expr::Not(a) | Expr::Glob(_, a, _) => f(a),
            Expr::MinMax(_, a, b)
            | Expr::Arith(_, a, b)
            | Expr::CompareNumbers(_, a, b)
            | Expr::CompareText(_, a, b)
            | Expr::And(a, b)
            | Expr::Or(a, b) => {
                f(a);
                f(b);
            }
            Expr::Number(_)
            | Expr::Text(_)
            | Expr::Bool(_)
            | Expr::NumberColumn(_)
            | Expr::TextColumn(_)
            | Expr::Special(_)
            | Expr::Counter(..)
            | Expr::Window(_)
            | Expr::Exists(_)
            | Expr::Label(_)
            | Expr::Process(_) => {}
        }
    }
}

/// Column names referenced by compiled expressions; ids are indices.
pub trait ColumnTable {
    /// The id for `name`, adding it if new.
    fn id(&mut self, name: &str) -> usize;
}

/// Compiles `text` into a condition (type Bool).
pub fn compile_condition(text: &str, columns: &mut dyn ColumnTable) -> Result<Expr, ExprError> {
    compile_condition_on(text, columns, Rows::Stats)
}

/// [`compile_condition`] for a rule on `rows`.
pub fn compile_condition_on(
    text: &str,
    columns: &mut dyn ColumnTable,
    rows: Rows,
) -> Result<Expr, ExprError> {
    let (expr, ty) = compile_on(text, columns, rows)?;
    if ty != Type::Bool {
        return Err(ExprError::new(
            0,
            format!(
                "the expression is {}, not a condition; compare it, e.g. `{} > 0`",
                ty.name(),
                text.trim()
            ),
        ));
    }
    Ok(expr)
}

/// Compiles `text` into an expression of any type.
pub fn compile(text: &str, columns: &mut dyn ColumnTable) -> Result<(Expr, Type), ExprError> {
    compile_on(text, columns, Rows::Stats)
}

/// [`compile`] for a rule on `rows`.
pub fn compile_on(
    text: &str,
    columns: &mut dyn ColumnTable,
    rows: Rows,
) -> Result<(Expr, Type), ExprError> {
    let tokens = lex(text)?;
    let mut parser = Parser {
        tokens,
        pos: 0,
        depth: 0,
        operators: 0,
        columns,
        rows,
    };
    let result = parser.or()?;
    if let Some(tok) = parser.peek() {
        return Err(ExprError::new(
            tok.offset,
            format!(
                "unexpected {} after a complete expression",
                tok.kind.describe()
            ),
        ));
    }
    Ok(result)
}

/// The left operand of the first comparison, in evaluation order: what a rule reports as
/// its `value` unless it says otherwise (`rate(stot) > 500` → `rate(stot)`).
pub fn first_operand(expr: &Expr) -> Option<&Expr> {
    match expr {
        Expr::CompareNumbers(_, left, _)
        | Expr::CompareText(_, left, _)
        | Expr::Glob(_, left, _) => Some(left),
        Expr::And(a, b) | Expr::Or(a, b) => first_operand(a).or_else(|| first_operand(b)),
        Expr::Not(a) => first_operand(a),
        _ => None,
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Number(f64),
    Text(String),
    Name(String),
    Op(&'static str),
    LParen,
    RParen,
    Comma,
}

impl Kind {
    fn describe(&self) -> String {
        match self {
            Kind::Number(n) => format!("number {n}"),
            Kind::Text(s) => format!("text {s:?}"),
            Kind::Name(n) => format!("`{n}`"),
            Kind::Op(op) => format!("`{op}`"),
            Kind::LParen => "`(`".into(),
            Kind::RParen => "`)`".into(),
            Kind::Comma => "`,`".into(),
        }
    }
}

#[derive(Debug, Clone)]
struct Token {
    kind: Kind,
    offset: usize,
}

const OPERATORS: &[&str] = &[
    "==", "!=", "<=", ">=", "!~", "<", ">", "~", "+", "-", "*", "/", "%",
];

fn lex(text: &str) -> Result<Vec<Token>, ExprError> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let kind = if c.is_ascii_digit()
            || (c == b'.' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit))
        {
            while i < bytes.len()
                && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'.' || bytes[i] == b'_')
            {
                i += 1;
            }
            Kind::Number(number(&text[start..i], start)?)
        } else if c.is_ascii_alphabetic() || c == b'_' {
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            match super::process::lex_qualified(text, start, i)? {
                Some((name, end)) => {
                    i = end;
                    Kind::Name(name)
                }
                None => {
                    // `backend.act`: a dotted name, one token.
                    while bytes.get(i) == Some(&b'.')
                        && bytes
                            .get(i + 1)
                            .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_')
                    {
                        i += 1;
                        while i < bytes.len()
                            && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_')
                        {
                            i += 1;
                        }
                    }
                    Kind::Name(text[start..i].to_string())
                }
            }
        } else if c == b'"' || c == b'\'' {
            i += 1;
            let mut value = String::new();
            loop {
                let Some(ch) = text[i..].chars().next() else {
                    return Err(ExprError::new(
                        start,
                        "text never closed: add the closing quote",
                    ));
                };
                i += ch.len_utf8();
                match ch {
                    '\\' => {
                        let Some(escaped) = text[i..].chars().next() else {
                            return Err(ExprError::new(
                                start,
                                "text never closed: add the closing quote",
                            ));
                        };
                        i += escaped.len_utf8();
                        value.push(escaped);
                    }
                    ch if ch as u32 == u32::from(c) => break,
                    ch => value.push(ch),
                }
            }
            Kind::Text(value)
        } else if c == b'(' {
            i += 1;
            Kind::LParen
        } else if c == b')' {
            i += 1;
            Kind::RParen
        } else if c == b',' {
            i += 1;
            Kind::Comma
        } else if let Some(op) = OPERATORS.iter().find(|op| text[i..].starts_with(**op)) {
            i += op.len();
            Kind::Op(op)
        } else {
            let hint = match c {
                b'&' => "; write `and`",
                b'|' => "; write `or`",
                b'!' => "; write `not`",
                b'=' => "; compare with `==`",
                _ => "",
            };
            let ch = text[i..].chars().next().unwrap_or('?');
            return Err(ExprError::new(
                start,
                format!("unexpected character `{ch}`{hint}"),
            ));
        };
        tokens.push(Token {
            kind,
            offset: start,
        });
    }
    Ok(tokens)
}

/// A number, or a duration (`90s`, `5m`, `1h30m`) in seconds.
fn number(text: &str, offset: usize) -> Result<f64, ExprError> {
    if let Ok(n) = text.replace('_', "").parse::<f64>() {
        if n.is_finite() {
            return Ok(n);
        }
    }
    crate::duration::parse(text)
        .map(|d| d.as_secs_f64())
        .map_err(|e| {
            ExprError::new(
                offset,
                format!("{e}; or is it a number? (e.g. 0.9, 500, 5m)"),
            )
        })
}

/// How deeply parentheses, `not` and unary `-` may nest: far beyond any real rule, and
/// far below what would overflow the stack.
const MAX_DEPTH: usize = 64;

/// How many operators (`or`, `and`, `not`, comparisons, `~`, arithmetic, unary `-`,
/// function calls) one expression may hold. A chain such as `a or b or c …` builds a tree
/// as deep as it is long, and evaluating, printing and dropping that tree recurse once per
/// level: without this bound, 2,000 `or` overflow the 2 MiB stack of a source thread in a
/// debug build. The tree's depth is at most this plus one, which leaves a wide margin on
/// any stack, and it is still far beyond a real rule (the default rules use at most 7).
pub const MAX_OPERATORS: usize = 500;

struct Parser<'c> {
    tokens: Vec<Token>,
    pos: usize,
    depth: usize,
    /// Operators seen so far, bounded by [`MAX_OPERATORS`].
    operators: usize,
    columns: &'c mut dyn ColumnTable,
    /// The rows the rule looks at: on a process row, bare names are `show info` fields.
    rows: Rows,
}

pub(super) type Typed = (Expr, Type);

impl Parser<'_> {
    /// Parses one nesting level deeper, refusing to go past [`MAX_DEPTH`].
    fn nested(
        &mut self,
        at: usize,
        parse: fn(&mut Self) -> Result<Typed, ExprError>,
    ) -> Result<Typed, ExprError> {
        if self.depth >= MAX_DEPTH {
            return Err(ExprError::new(
                at,
                format!("expression nested too deeply (more than {MAX_DEPTH} levels)"),
            ));
        }
        self.depth += 1;
        let result = parse(self);
        self.depth -= 1;
        result
    }

    /// Counts one operator at `at`, refusing to go past [`MAX_OPERATORS`].
    fn operator(&mut self, at: usize) -> Result<(), ExprError> {
        self.operators += 1;
        if self.operators > MAX_OPERATORS {
            return Err(ExprError::new(
                at,
                format!(
                    "expression too long (more than {MAX_OPERATORS} operators); split it into \
                     several rules, or match many names with a glob or a rule `scope` instead \
                     of a long `or` list"
                ),
            ));
        }
        Ok(())
    }

    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn offset(&self) -> usize {
        self.peek().map_or_else(
            || self.tokens.last().map_or(0, |t| t.offset + 1),
            |t| t.offset,
        )
    }

    fn eat_op(&mut self, ops: &[&'static str]) -> Option<(&'static str, usize)> {
        match self.peek() {
            Some(Token {
                kind: Kind::Op(op),
                offset,
            }) if ops.contains(op) => {
                let found = (*op, *offset);
                self.pos += 1;
                Some(found)
            }
            _ => None,
        }
    }

    fn eat_keyword(&mut self, word: &str) -> Option<usize> {
        match self.peek() {
            Some(Token {
                kind: Kind::Name(n),
                offset,
            }) if n == word => {
                let offset = *offset;
                self.pos += 1;
                Some(offset)
            }
            _ => None,
        }
    }

    fn expect(&mut self, want: Kind, what: &str) -> Result<(), ExprError> {
        match self.peek() {
            Some(tok) if tok.kind == want => {
                self.pos += 1;
                Ok(())
            }
            Some(tok) => Err(ExprError::new(
                tok.offset,
                format!("expected {what}, found {}", tok.kind.describe()),
            )),
            None => Err(ExprError::new(
                self.offset(),
                format!("expected {what} at the end"),
            )),
        }
    }

    fn or(&mut self) -> Result<Typed, ExprError> {
        let mut left = self.and()?;
        while let Some(at) = self.eat_keyword("or") {
            self.operator(at)?;
            let right = self.and()?;
            left = (
                Expr::Or(
                    Box::new(want(left, Type::Bool, at, "or")?),
                    Box::new(want(right, Type::Bool, at, "or")?),
                ),
                Type::Bool,
            );
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Typed, ExprError> {
        let mut left = self.not()?;
        while let Some(at) = self.eat_keyword("and") {
            self.operator(at)?;
            let right = self.not()?;
            left = (
                Expr::And(
                    Box::new(want(left, Type::Bool, at, "and")?),
                    Box::new(want(right, Type::Bool, at, "and")?),
                ),
                Type::Bool,
            );
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Typed, ExprError> {
        if let Some(at) = self.eat_keyword("not") {
            self.operator(at)?;
            let inner = self.nested(at, Self::not)?;
            return Ok((
                Expr::Not(Box::new(want(inner, Type::Bool, at, "not")?)),
                Type::Bool,
            ));
        }
        self.compare()
    }

    fn compare(&mut self) -> Result<Typed, ExprError> {
        let left = self.sum()?;
        if let Some((op, at)) = self.eat_op(&["~", "!~"]) {
            self.operator(at)?;
            let (left, ty) = left;
            if ty != Type::Text {
                return Err(ExprError::new(
                    at,
                    format!(
                        "`{op}` matches text against a glob, but its left side is {}",
                        ty.name()
                    ),
                ));
            }
            return match self.peek().cloned() {
                Some(Token {
                    kind: Kind::Text(pattern),
                    ..
                }) => {
                    self.pos += 1;
                    Ok((
                        Expr::Glob(
                            op == "!~",
                            Box::new(left),
                            Box::new(WildMatch::new(&pattern)),
                        ),
                        Type::Bool,
                    ))
                }
                _ => Err(ExprError::new(
                    self.offset(),
                    format!("`{op}` needs a quoted glob on its right, e.g. status ~ \"DOWN*\""),
                )),
            };
        }
        let Some((op, at)) = self.eat_op(&["==", "!=", "<", "<=", ">", ">="]) else {
            return Ok(left);
        };
        self.operator(at)?;
        let cmp = match op {
            "==" => Cmp::Eq,
            "!=" => Cmp::Ne,
            "<" => Cmp::Lt,
            "<=" => Cmp::Le,
            ">" => Cmp::Gt,
            _ => Cmp::Ge,
        };
        let right = self.sum()?;
        if self
            .peek()
            .is_some_and(|t| matches!(t.kind, Kind::Op("==" | "!=" | "<" | "<=" | ">" | ">=")))
        {
            return Err(ExprError::new(
                self.offset(),
                "comparisons do not chain; join them with `and`",
            ));
        }
        let ((l, lt), (r, rt)) = (left, right);
        if lt != rt {
            return Err(ExprError::new(
                at,
                format!(
                    "`{op}` compares {} with {}; both sides must be numbers, or both text",
                    lt.name(),
                    rt.name()
                ),
            ));
        }
        match lt {
            Type::Number => Ok((
                Expr::CompareNumbers(cmp, Box::new(l), Box::new(r)),
                Type::Bool,
            )),
            _ if matches!(cmp, Cmp::Eq | Cmp::Ne) => {
                Ok((Expr::CompareText(cmp, Box::new(l), Box::new(r)), Type::Bool))
            }
            _ => Err(ExprError::new(
                at,
                format!(
                    "`{op}` needs numbers, but both sides are {}; text compares with ==, != or ~",
                    lt.name()
                ),
            )),
        }
    }

    fn sum(&mut self) -> Result<Typed, ExprError> {
        let mut left = self.product()?;
        while let Some((op, at)) = self.eat_op(&["+", "-"]) {
            self.operator(at)?;
            let right = self.product()?;
            let op_kind = if op == "+" { Arith::Add } else { Arith::Sub };
            left = arith(op_kind, op, at, left, right)?;
        }
        Ok(left)
    }

    fn product(&mut self) -> Result<Typed, ExprError> {
        let mut left = self.unary()?;
        while let Some((op, at)) = self.eat_op(&["*", "/", "%"]) {
            self.operator(at)?;
            let right = self.unary()?;
            let op_kind = match op {
                "*" => Arith::Mul,
                "/" => Arith::Div,
                _ => Arith::Rem,
            };
            left = arith(op_kind, op, at, left, right)?;
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Typed, ExprError> {
        if let Some((_, at)) = self.eat_op(&["-"]) {
            self.operator(at)?;
            let inner = self.nested(at, Self::unary)?;
            return Ok((
                Expr::Neg(Box::new(want(inner, Type::Number, at, "-")?)),
                Type::Number,
            ));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Typed, ExprError> {
        let Some(tok) = self.peek().cloned() else {
            return Err(ExprError::new(self.offset(), "expected a value at the end"));
        };
        self.pos += 1;
        match tok.kind {
            Kind::Number(n) => Ok((Expr::Number(n), Type::Number)),
            Kind::Text(s) => Ok((Expr::Text(s.into()), Type::Text)),
            Kind::LParen => {
                let inner = self.nested(tok.offset, Self::or)?;
                self.expect(Kind::RParen, "`)`")?;
                Ok(inner)
            }
            Kind::Name(name) => {
                if self.peek().is_some_and(|t| t.kind == Kind::LParen) {
                    self.pos += 1;
                    self.operator(tok.offset)?;
                    return self.call(&name, tok.offset);
                }
                self.name(&name, tok.offset)
            }
            other => Err(ExprError::new(
                tok.offset,
                format!("expected a value, found {}", other.describe()),
            )),
        }
    }

    fn name(&mut self, name: &str, at: usize) -> Result<Typed, ExprError> {
        if let Some(typed) = super::process::compile_name(name, at, self.rows, self.columns) {
            return typed;
        }
        let special = match name {
            "true" => return Ok((Expr::Bool(true), Type::Bool)),
            "false" => return Ok((Expr::Bool(false), Type::Bool)),
            "and" | "or" | "not" => {
                return Err(ExprError::new(
                    at,
                    format!("`{name}` needs a condition before and after it"),
                ))
            }
            "state" => Some(Special::State),
            "proxy" => Some(Special::Proxy),
            "server" => Some(Special::Server),
            "kind" => Some(Special::Kind),
            "source" => Some(Special::Source),
            _ => None,
        };
        if let Some(special) = special {
            return Ok((Expr::Special(special), Type::Text));
        }
        if let Some((prefix, field)) = name.split_once('.') {
            return self.parent(prefix, field, at);
        }
        if Members::parse(name).is_some() {
            return Err(ExprError::new(
                at,
                format!(
                    "`{name}` is a set of rows: fold it, e.g. count({name}), \
                     sum({name}, scur), count({name}, state == \"up\")"
                ),
            ));
        }
        if !columns::is_known(name) {
            return Err(unknown_name(name, at));
        }
        let id = self.columns.id(name);
        Ok(if columns::is_text(name) {
            (Expr::TextColumn(id), Type::Text)
        } else {
            (Expr::NumberColumn(id), Type::Number)
        })
    }

    /// `backend.X` / `frontend.X`: the field (or `state`, `proxy`…) of the row's parent.
    fn parent(&mut self, prefix: &str, field: &str, at: usize) -> Result<Typed, ExprError> {
        let parent = match prefix {
            "backend" => Parent::Backend,
            "frontend" => Parent::Frontend,
            _ => {
                return Err(ExprError::new(
                    at,
                    format!(
                        "unknown prefix `{prefix}.`{}; a server reads its backend's fields \
                         as backend.X, a listener its frontend's as frontend.X",
                        suggest(prefix, ["backend", "frontend"].into_iter())
                    ),
                ))
            }
        };
        if field.contains('.') {
            return Err(ExprError::new(
                at,
                format!("`{prefix}.{field}`: one field after `{prefix}.`, e.g. {prefix}.scur"),
            ));
        }
        let (inner, ty) = self.name(field, at + prefix.len() + 1)?;
        if !matches!(
            inner,
            Expr::NumberColumn(_) | Expr::TextColumn(_) | Expr::Special(_)
        ) {
            return Err(ExprError::new(
                at,
                format!("`{prefix}.` reads a field, e.g. {prefix}.scur or {prefix}.state"),
            ));
        }
        Ok((Expr::Parent(parent, Box::new(inner), at), ty))
    }

    /// The first argument of a call, when it names a set of rows (`servers`, `listeners`).
    fn set_argument(&self) -> Option<Members> {
        match &self.peek()?.kind {
            Kind::Name(n) => {
                let members = Members::parse(n)?;
                let next = self.tokens.get(self.pos + 1).map(|t| &t.kind);
                matches!(next, Some(Kind::Comma | Kind::RParen)).then_some(members)
            }
            _ => None,
        }
    }

    /// `count(servers[, COND])`, `sum(servers, EXPR[, COND])`, `avg`/`min`/`max` alike:
    /// EXPR and COND are evaluated on each member row.
    fn aggregate(&mut self, fold: Fold, name: &str, at: usize) -> Result<Typed, ExprError> {
        let shape = if fold == Fold::Count {
            format!("{name}(servers) or {name}(servers, state == \"up\")")
        } else {
            format!("{name}(servers, scur) or {name}(servers, scur, state == \"up\")")
        };
        let Some(members) = self.set_argument() else {
            return Err(ExprError::new(
                self.offset(),
                format!("`{name}` folds a set of rows (servers or listeners), e.g. {shape}"),
            ));
        };
        self.pos += 1;
        let mut args: Vec<(Typed, usize)> = Vec::new();
        while self.peek().is_some_and(|t| t.kind == Kind::Comma) {
            self.pos += 1;
            let arg_at = self.offset();
            args.push((self.nested(arg_at, Self::or)?, arg_at));
        }
        self.expect(Kind::RParen, "`,` or `)`")?;
        let wanted = if fold == Fold::Count { 0..=1 } else { 1..=2 };
        if !wanted.contains(&args.len()) {
            return Err(ExprError::new(
                at,
                format!("`{name}` over a set takes {shape}"),
            ));
        }
        let mut args = args.into_iter();
        let value = if fold == Fold::Count {
            None
        } else {
            let (arg, arg_at) = args.next().expect("length checked");
            Some(want(arg, Type::Number, arg_at, name)?)
        };
        let filter = match args.next() {
            Some(((expr, Type::Bool), _)) => Some(expr),
            Some(((_, ty), arg_at)) => {
                return Err(ExprError::new(
                    arg_at,
                    format!(
                        "`{name}`'s filter must be a condition, got {}; e.g. {shape}",
                        ty.name()
                    ),
                ))
            }
            None => None,
        };
        Ok((
            Expr::Aggregate(Box::new(Aggregate {
                fold,
                members,
                value,
                filter,
                at,
            })),
            Type::Number,
        ))
    }

    /// `delta(col, 5m)`, `rate(col, 5m)`, `rises(col, 5m)`.
    fn window(
        &mut self,
        kind: window::Kind,
        name: &str,
        args: Vec<(Typed, usize)>,
    ) -> Result<Typed, ExprError> {
        let mut args = args.into_iter();
        let ((column, _), column_at) = args.next().expect("two arguments");
        let ((length, _), length_at) = args.next().expect("two arguments");
        // A `show stat` counter, or a `show info` one (`DroppedLogs` on the process row,
        // `info.DroppedLogs` anywhere).
        let (column, info) = match column {
            Expr::NumberColumn(column) => (column, false),
            Expr::Process(super::process::Node::Info(column, false)) => (column, true),
            _ => {
                return Err(ExprError::new(
                    column_at,
                    format!(
                        "`{name}` takes a counter column name and a window, e.g. {name}(stot, 5m)"
                    ),
                ))
            }
        };
        let seconds = match length {
            Expr::Number(n) if n >= 1.0 => n,
            _ => {
                return Err(ExprError::new(
                    length_at,
                    format!(
                        "`{name}`'s window is a duration of at least 1s, e.g. {name}(stot, 5m)"
                    ),
                ))
            }
        };
        Ok((
            Expr::Window(Window {
                kind,
                column,
                info,
                seconds,
            }),
            Type::Number,
        ))
    }

    fn call(&mut self, name: &str, at: usize) -> Result<Typed, ExprError> {
        if let Some(fold) = Fold::parse(name) {
            if !matches!(fold, Fold::Min | Fold::Max) || self.set_argument().is_some() {
                return self.aggregate(fold, name, at);
            }
        }
        let Some(&(_, arity, _)) = FUNCTIONS.iter().find(|(f, _, _)| *f == name) else {
            let names: Vec<&str> = FUNCTIONS.iter().map(|f| f.0).collect();
            return Err(ExprError::new(
                at,
                format!(
                    "unknown function `{name}`{}; functions: {}",
                    suggest(name, names.iter().copied()),
                    names.join(", ")
                ),
            ));
        };
        // `label(env)`: a bare name would be taken for a column; say what `label` wants.
        if name == "label" {
            if let Some(tok) = self.peek().filter(|t| matches!(t.kind, Kind::Name(_))) {
                return Err(ExprError::new(tok.offset, LABEL_ARGUMENT));
            }
        }
        let mut args: Vec<(Typed, usize)> = Vec::new();
        if self.peek().is_some_and(|t| t.kind == Kind::RParen) {
            self.pos += 1;
        } else {
            loop {
                let arg_at = self.offset();
                args.push((self.nested(arg_at, Self::or)?, arg_at));
                if self.peek().is_some_and(|t| t.kind == Kind::Comma) {
                    self.pos += 1;
                    continue;
                }
                self.expect(Kind::RParen, "`,` or `)`")?;
                break;
            }
        }
        if let Some(kind) = window::Kind::parse(name) {
            if args.len() == 2 {
                return self.window(kind, name, args);
            }
            if kind == window::Kind::Rises {
                return Err(ExprError::new(
                    at,
                    "`rises` takes a counter column name and a window, e.g. rises(chkfail, 5m)",
                ));
            }
        }
        if args.len() != arity {
            return Err(ExprError::new(
                at,
                format!(
                    "`{name}` takes {arity} argument{}, got {}",
                    if arity == 1 { "" } else { "s" },
                    args.len()
                ),
            ));
        }
        if let Some(typed) = super::process::compile_call(name, &args) {
            return typed;
        }
        let mut args = args.into_iter();
        match name {
            "delta" | "rate" | "exists" => {
                let ((arg, _), arg_at) = args.next().expect("arity checked");
                let id = match arg {
                    Expr::NumberColumn(id) => id,
                    Expr::TextColumn(id) if name == "exists" => id,
                    _ => {
                        return Err(ExprError::new(
                            arg_at,
                            format!(
                                "`{name}` takes a {}column name, e.g. {name}(stot)",
                                if name == "exists" { "" } else { "counter " }
                            ),
                        ))
                    }
                };
                Ok(match name {
                    "delta" => (Expr::Counter(Counter::Delta, id), Type::Number),
                    "rate" => (Expr::Counter(Counter::Rate, id), Type::Number),
                    _ => (Expr::Exists(id), Type::Bool),
                })
            }
            "label" => {
                let ((arg, _), arg_at) = args.next().expect("arity checked");
                match arg {
                    Expr::Text(name) => Ok((Expr::Label(name), Type::Text)),
                    _ => Err(ExprError::new(arg_at, LABEL_ARGUMENT)),
                }
            }
            "abs" => {
                let (arg, arg_at) = args.next().expect("arity checked");
                Ok((
                    Expr::Abs(Box::new(want(arg, Type::Number, arg_at, "abs")?)),
                    Type::Number,
                ))
            }
            _ => {
                let (a, a_at) = args.next().expect("arity checked");
                let (b, b_at) = args.next().expect("arity checked");
                Ok((
                    Expr::MinMax(
                        name == "min",
                        Box::new(want(a, Type::Number, a_at, name)?),
                        Box::new(want(b, Type::Number, b_at, name)?),
                    ),
                    Type::Number,
                ))
            }
        }
    }
}

fn arith(op: Arith, sym: &str, at: usize, left: Typed, right: Typed) -> Result<Typed, ExprError> {
    let l = want(left, Type::Number, at, sym)?;
    let r = want(right, Type::Number, at, sym)?;
    Ok((Expr::Arith(op, Box::new(l), Box::new(r)), Type::Number))
}

fn want((expr, ty): Typed, wanted: Type, at: usize, op: &str) -> Result<Expr, ExprError> {
    if ty == wanted {
        Ok(expr)
    } else {
        Err(ExprError::new(
            at,
            format!("`{op}` needs {}, got {}", wanted.name(), ty.name()),
        ))
    }
}

fn unknown_name(name: &str, at: usize) -> ExprError {
    let candidates = columns::KNOWN
        .iter()
        .copied()
        .chain(SPECIAL_NAMES.iter().map(|(n, _)| *n));
    ExprError::new(
        at,
        format!("unknown column `{name}`{}", suggest(name, candidates)),
    )
}

/// " (did you mean `x`?)" for the nearest candidate, or nothing.
pub fn suggest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> String {
    candidates
        .map(|c| (strsim::levenshtein(name, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min()
        .map(|(_, c)| format!(" (did you mean `{c}`?)"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Names(Vec<String>);

    impl ColumnTable for Names {
        fn id(&mut self, name: &str) -> usize {
            match self.0.iter().position(|n| n == name) {
                Some(i) => i,
                None => {
                    self.0.push(name.to_string());
                    self.0.len() - 1
                }
            }
        }
    }

    fn err(text: &str) -> (usize, String) {
        let e = compile_condition(text, &mut Names::default()).unwrap_err();
        (e.offset, e.message)
    }

    #[test]
    fn precedence_binds_arithmetic_then_comparison_then_not_and_or() {
        let mut names = Names::default();
        let e = compile_condition(
            "scur >= 0.9 * slim or not qcur > 1 + 2 and state == \"up\"",
            &mut names,
        )
        .unwrap();
        let Expr::Or(left, right) = e else {
            panic!("or at the top: {e:?}")
        };
        assert!(
            matches!(*left, Expr::CompareNumbers(Cmp::Ge, _, ref r) if matches!(**r, Expr::Arith(Arith::Mul, _, _)))
        );
        assert!(matches!(*right, Expr::And(ref a, _) if matches!(**a, Expr::Not(_))));
        assert_eq!(names.0, ["scur", "slim", "qcur"]);
    }

    #[test]
    fn label_takes_a_quoted_name_and_is_text() {
        let e = compile_condition("label(\"env\") == \"prod\"", &mut Names::default()).unwrap();
        assert!(
            matches!(e, Expr::CompareText(Cmp::Eq, ref l, _) if matches!(**l, Expr::Label(ref n) if &**n == "env"))
        );
        assert_eq!(
            err("label(env) == \"prod\""),
            (
                6,
                "`label` takes a label name in quotes, e.g. label(\"env\")".into()
            )
        );
        assert_eq!(
            err("label(\"env\") > 1").1,
            "`>` compares text with a number; both sides must be numbers, or both text"
        );
    }

    #[test]
    fn durations_are_seconds() {
        let e = compile_condition("lastchg < 5m", &mut Names::default()).unwrap();
        assert!(
            matches!(e, Expr::CompareNumbers(Cmp::Lt, _, ref r) if matches!(**r, Expr::Number(n) if n == 300.0))
        );
        let e = compile_condition("lastchg < 1h30m", &mut Names::default()).unwrap();
        assert!(
            matches!(e, Expr::CompareNumbers(Cmp::Lt, _, ref r) if matches!(**r, Expr::Number(n) if n == 5400.0))
        );
    }

    #[test]
    fn unknown_names_suggest_the_nearest() {
        assert_eq!(
            err("scru > 1"),
            (0, "unknown column `scru` (did you mean `scur`?)".into())
        );
        assert_eq!(
            err("stat == \"up\""),
            (0, "unknown column `stat` (did you mean `state`?)".into())
        );
        assert_eq!(err("ratee(stot) > 1").1, "unknown function `ratee` (did you mean `rate`?); functions: delta, rate, rises, exists, min, max, count, sum, avg, abs, label, prev");
    }

    #[test]
    fn type_errors_say_what_was_compared() {
        assert_eq!(
            err("status > 3"),
            (
                7,
                "`>` compares text with a number; both sides must be numbers, or both text".into()
            )
        );
        assert_eq!(
            err("scur"),
            (
                0,
                "the expression is a number, not a condition; compare it, e.g. `scur > 0`".into()
            )
        );
        assert_eq!(
            err("scur ~ \"1*\""),
            (
                5,
                "`~` matches text against a glob, but its left side is a number".into()
            )
        );
        assert_eq!(
            err("status ~ state"),
            (
                9,
                "`~` needs a quoted glob on its right, e.g. status ~ \"DOWN*\"".into()
            )
        );
        assert_eq!(
            err("scur > 1 and 2"),
            (9, "`and` needs a condition, got a number".into())
        );
        assert_eq!(
            err("status < \"b\""),
            (
                7,
                "`<` needs numbers, but both sides are text; text compares with ==, != or ~".into()
            )
        );
        assert_eq!(
            err("rate(status) > 1"),
            (
                5,
                "`rate` takes a counter column name, e.g. rate(stot)".into()
            )
        );
        assert_eq!(
            err("rate(stot, 5m, 1) > 1"),
            (0, "`rate` takes 1 argument, got 3".into())
        );
    }

    #[test]
    fn parents_aggregates_and_windows_compile_and_explain_misuse() {
        let mut names = Names::default();
        let e = compile_condition("backend.act == 0 and backend.state == \"down\"", &mut names)
            .unwrap();
        assert!(
            matches!(e, Expr::And(ref a, _) if matches!(**a, Expr::CompareNumbers(_, ref l, _) if matches!(**l, Expr::Parent(Parent::Backend, _, 0))))
        );
        let e = compile_condition(
            "sum(servers, hrsp_5xx, state == \"up\") / count(servers) > 0.5 and min(scur, 2) > 1",
            &mut names,
        )
        .unwrap();
        let mut folds = Vec::new();
        e.visit(&mut |e| {
            if let Expr::Aggregate(a) = e {
                folds.push((a.fold, a.members, a.value.is_some(), a.filter.is_some()));
            }
        });
        assert_eq!(
            folds,
            [
                (Fold::Sum, Members::Servers, true, true),
                (Fold::Count, Members::Servers, false, false)
            ]
        );
        let e = compile_condition("rises(chkfail, 5m) >= 3", &mut names).unwrap();
        assert!(
            matches!(e, Expr::CompareNumbers(_, ref l, _) if matches!(**l, Expr::Window(Window { kind: window::Kind::Rises, seconds, .. }) if seconds == 300.0))
        );
        assert_eq!(
            err("backend.scru > 1"),
            (8, "unknown column `scru` (did you mean `scur`?)".into())
        );
        assert_eq!(
            err("backed.scur > 1").1,
            "unknown prefix `backed.` (did you mean `backend`?); a server reads its backend's \
             fields as backend.X, a listener its frontend's as frontend.X"
        );
        assert_eq!(
            err("sum(servers) > 1"),
            (
                0,
                "`sum` over a set takes sum(servers, scur) or sum(servers, scur, state == \"up\")"
                    .into()
            )
        );
        assert_eq!(
            err("sum(1, 2) > 1"),
            (4, "`sum` folds a set of rows (servers or listeners), e.g. sum(servers, scur) or sum(servers, scur, state == \"up\")".into())
        );
        assert_eq!(
            err("count(servers, scur) > 1"),
            (15, "`count`'s filter must be a condition, got a number; e.g. count(servers) or count(servers, state == \"up\")".into())
        );
        assert_eq!(
            err("servers > 1").1,
            "`servers` is a set of rows: fold it, e.g. count(servers), sum(servers, scur), count(servers, state == \"up\")"
        );
        assert_eq!(
            err("delta(stot, scur) > 1"),
            (
                12,
                "`delta`'s window is a duration of at least 1s, e.g. delta(stot, 5m)".into()
            )
        );
        assert_eq!(
            err("rises(status, 5m) > 1"),
            (
                6,
                "`rises` takes a counter column name and a window, e.g. rises(stot, 5m)".into()
            )
        );
        assert_eq!(
            err("rises(stot) > 1").1,
            "`rises` takes a counter column name and a window, e.g. rises(chkfail, 5m)"
        );
    }

    #[test]
    fn syntax_errors_point_at_the_token() {
        assert_eq!(err("scur > "), (6, "expected a value at the end".into()));
        assert_eq!(err("(scur > 1"), (9, "expected `)` at the end".into()));
        assert_eq!(
            err("scur > 1 )"),
            (9, "unexpected `)` after a complete expression".into())
        );
        assert_eq!(
            err("scur > 1 && qcur > 1"),
            (9, "unexpected character `&`; write `and`".into())
        );
        assert_eq!(
            err("status = \"UP\""),
            (7, "unexpected character `=`; compare with `==`".into())
        );
        assert_eq!(
            err("status == \"UP"),
            (10, "text never closed: add the closing quote".into())
        );
        assert_eq!(
            err("1 < scur < 5"),
            (9, "comparisons do not chain; join them with `and`".into())
        );
        assert_eq!(err("scur > 5x").1, "invalid duration \"5x\": unknown unit \"x\" (use ms, s, m, h or d); or is it a number? (e.g. 0.9, 500, 5m)");
    }

    #[test]
    fn first_operand_is_the_reported_value() {
        let mut names = Names::default();
        let e = compile_condition("rate(stot) > 500 or scur > 1", &mut names).unwrap();
        assert!(matches!(
            first_operand(&e),
            Some(Expr::Counter(Counter::Rate, 0))
        ));
        let e = compile_condition("true", &mut names).unwrap();
        assert!(first_operand(&e).is_none());
    }
}
