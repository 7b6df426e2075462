//! Parents and aggregates: a server row reads its backend's fields (`backend.act`), a
//! listener row its frontend's (`frontend.scur`); a backend row folds over its servers
//! (`count(servers, state == "up")`, `sum(servers, hrsp_5xx)`), a frontend row over its
//! listeners.
//!
//! HAProxy dumps a proxy as: FRONTEND, its listeners, its servers, then BACKEND (seen on
//! HAProxy 2.6 with frontends, backends and `listen` sections, see
//! tests/fixtures/haproxy-2.6/dump-order.csv). So a backend's servers are all read when
//! its row arrives, and a frontend's row when its listeners arrive; but a server's backend
//! and a frontend's listeners come after the row that reads them. Rules that read those
//! are evaluated once the proxy's rows are all in ([`ready`]); the others stay streamed.

use super::eval::{self, Env, Val};
use super::expr::Expr;
use crate::stats::{ProxyType, Row, Table};
use std::cell::Cell;

/// The row a `backend.X` / `frontend.X` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Parent {
    /// A server's backend row.
    Backend,
    /// A listener's frontend row.
    Frontend,
}

impl Parent {
    /// The prefix as written.
    pub fn name(self) -> &'static str {
        match self {
            Parent::Backend => "backend",
            Parent::Frontend => "frontend",
        }
    }

    /// The row type that has this parent.
    pub fn child(self) -> ProxyType {
        match self {
            Parent::Backend => ProxyType::Server,
            Parent::Frontend => ProxyType::Listener,
        }
    }

    /// The parent's own row type.
    pub fn kind(self) -> ProxyType {
        match self {
            Parent::Backend => ProxyType::Backend,
            Parent::Frontend => ProxyType::Frontend,
        }
    }
}

/// The rows an aggregate folds over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Members {
    /// A backend's servers.
    Servers,
    /// A frontend's listeners.
    Listeners,
}

impl Members {
    /// The set's name as written.
    pub fn name(self) -> &'static str {
        match self {
            Members::Servers => "servers",
            Members::Listeners => "listeners",
        }
    }

    /// The set named `name`, if it is one.
    pub fn parse(name: &str) -> Option<Members> {
        match name {
            "servers" => Some(Members::Servers),
            "listeners" => Some(Members::Listeners),
            _ => None,
        }
    }

    /// The row type that has this set.
    pub fn owner(self) -> ProxyType {
        match self {
            Members::Servers => ProxyType::Backend,
            Members::Listeners => ProxyType::Frontend,
        }
    }

    /// The members' row type.
    pub fn kind(self) -> ProxyType {
        match self {
            Members::Servers => ProxyType::Server,
            Members::Listeners => ProxyType::Listener,
        }
    }
}

/// How an aggregate folds its members' values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fold {
    /// Members that pass the filter.
    Count,
    /// Sum of the values.
    Sum,
    /// Average of the values.
    Avg,
    /// Smallest value.
    Min,
    /// Largest value.
    Max,
}

impl Fold {
    /// The fold named `name`, if it is one.
    pub fn parse(name: &str) -> Option<Fold> {
        match name {
            "count" => Some(Fold::Count),
            "sum" => Some(Fold::Sum),
            "avg" => Some(Fold::Avg),
            "min" => Some(Fold::Min),
            "max" => Some(Fold::Max),
            _ => None,
        }
    }
}

/// `count(servers[, COND])`, `sum(servers, EXPR[, COND])`, `avg`/`min`/`max` alike.
#[derive(Debug, Clone)]
pub struct Aggregate {
    /// How values fold.
    pub fold: Fold,
    /// Over which rows.
    pub members: Members,
    /// The value per member (a number; none for `count`).
    pub value: Option<Expr>,
    /// Which members count (a condition).
    pub filter: Option<Expr>,
    /// Byte offset of the call in the expression, for load-time errors.
    pub at: usize,
}

/// Remembers the last server → backend lookup: servers are evaluated in dump order, so
/// the next server of the same backend finds its row without scanning again.
#[derive(Debug, Default)]
pub struct Cache {
    /// (first row index known to belong to, backend row index).
    backend: Cell<Option<(usize, usize)>>,
}

/// The parent row of `row`, if `row` has one of that kind and it is in the dump.
pub fn parent<'a>(row: &Row<'a>, parent: Parent, cache: &Cache) -> Option<Row<'a>> {
    if row.kind() != parent.child() {
        return None;
    }
    let table = row.table();
    let index = row.index();
    match parent {
        Parent::Backend => {
            if let Some((from, backend)) = cache.backend.get() {
                if (from..backend).contains(&index) && backend < table.len() {
                    return Some(table.row(backend));
                }
            }
            // Servers come before their backend's row, in one block per proxy.
            let found = table
                .rows_in(index + 1..table.len())
                .take_while(|r| r.proxy() == row.proxy())
                .find(|r| r.kind() == ProxyType::Backend)?;
            cache.backend.set(Some((index, found.index())));
            Some(found)
        }
        // Listeners follow their frontend's row.
        Parent::Frontend => (0..index)
            .rev()
            .map(|i| table.row(i))
            .take_while(|r| r.proxy() == row.proxy())
            .find(|r| r.kind() == ProxyType::Frontend),
    }
}

/// The members of `row` (a backend's servers, a frontend's listeners), in dump order;
/// `None` when `row` is not a row that has such a set.
fn members<'a>(row: &Row<'a>, members: Members) -> Option<Vec<Row<'a>>> {
    if row.kind() != members.owner() {
        return None;
    }
    let table = row.table();
    let index = row.index();
    let same = |r: &Row<'_>| r.proxy() == row.proxy();
    Some(match members {
        // Servers are the rows just before their backend's.
        Members::Servers => {
            let mut servers: Vec<Row<'a>> = (0..index)
                .rev()
                .map(|i| table.row(i))
                .take_while(same)
                .filter(|r| r.kind() == ProxyType::Server)
                .collect();
            servers.reverse();
            servers
        }
        // Listeners are the rows just after their frontend's.
        Members::Listeners => table
            .rows_in(index + 1..table.len())
            .take_while(same)
            .filter(|r| r.kind() == ProxyType::Listener)
            .collect(),
    })
}

/// Evaluates an aggregate on `row`. Absent member values are skipped; a fold of no
/// values is absent, except `count`, which is 0. On a row without such a set (a server
/// asking for `servers`), it is absent.
pub fn eval<'a>(aggregate: &'a Aggregate, row: &Row<'a>, env: &Env<'a>) -> Val<'a> {
    let Some(rows) = members(row, aggregate.members) else {
        return Val::Absent;
    };
    let mut count = 0usize;
    let mut values = 0usize;
    let (mut sum, mut min, mut max) = (0.0f64, f64::INFINITY, f64::NEG_INFINITY);
    for member in &rows {
        if let Some(filter) = &aggregate.filter {
            if !eval::truth(filter, member, env) {
                continue;
            }
        }
        count += 1;
        let Some(value) = &aggregate.value else {
            continue;
        };
        if let Val::Number(n) = eval::eval(value, member, env) {
            values += 1;
            sum += n;
            min = min.min(n);
            max = max.max(n);
        }
    }
    let result = match aggregate.fold {
        Fold::Count => return Val::Number(count as f64),
        _ if values == 0 => return Val::Absent,
        Fold::Sum => sum,
        Fold::Avg => sum / values as f64,
        Fold::Min => min,
        Fold::Max => max,
    };
    if result.is_finite() {
        Val::Number(result)
    } else {
        Val::Absent
    }
}

/// What an expression reads around its row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Relatives {
    /// Reads a row that comes after the row evaluated (a server's backend, a frontend's
    /// listeners): the rule waits until the proxy's rows are all in.
    pub reads_ahead: bool,
    /// Row types it reads besides the rule's own (what the dump must include).
    pub types: u8,
}

/// What `expr` reads around its row.
pub fn relatives(expr: &Expr) -> Relatives {
    let mut out = Relatives::default();
    expr.visit(&mut |e| match e {
        Expr::Parent(parent, _, _) => {
            out.types |= 1 << parent.kind() as u8;
            out.reads_ahead |= *parent == Parent::Backend;
        }
        Expr::Aggregate(aggregate) => {
            out.types |= 1 << aggregate.members.kind() as u8;
            out.reads_ahead |= aggregate.members == Members::Listeners;
        }
        _ => {}
    });
    out
}

/// Checks that every parent and set `expr` reads exists on some row of `types` (the rule's
/// scope): `backend.act` on a rule over backends only can never be true, which is a
/// mistake to report at load. Returns the offset and message of the first misuse.
pub fn check_scope(expr: &Expr, types: crate::stats::TypeMask) -> Result<(), (usize, String)> {
    use crate::stats::TypeMask;
    match expr {
        Expr::Parent(parent, inner, at) => {
            if !types.contains(parent.child()) {
                return Err((
                    *at,
                    format!(
                        "`{}.…` reads the {} of a {} row, but this rule's scope has no {} \
                         rows; add `scope = {{ type = \"{}\" }}`, or read the field \
                         directly on {} rows",
                        parent.name(),
                        parent.name(),
                        parent.child(),
                        parent.child(),
                        parent.child(),
                        parent.kind()
                    ),
                ));
            }
            check_scope(inner, TypeMask::of(&[parent.kind()]))
        }
        Expr::Aggregate(aggregate) => {
            let owner = aggregate.members.owner();
            if !types.contains(owner) {
                return Err((
                    aggregate.at,
                    format!(
                        "`{}` are the {} of a {} row, but this rule's scope has no {} rows; \
                         add `scope = {{ type = \"{}\" }}`",
                        aggregate.members.name(),
                        aggregate.members.name(),
                        owner,
                        owner,
                        owner
                    ),
                ));
            }
            let inner = TypeMask::of(&[aggregate.members.kind()]);
            for e in aggregate.value.iter().chain(&aggregate.filter) {
                check_scope(e, inner)?;
            }
            Ok(())
        }
        _ => {
            let mut result = Ok(());
            expr.children(&mut |child| {
                if result.is_ok() {
                    result = check_scope(child, types);
                }
            });
            result
        }
    }
}

/// How many rows of `table` can be evaluated by rules that read ahead: all when the dump
/// is complete, else those before the last proxy's rows (which may still be arriving),
/// unless that proxy's BACKEND row, always its last, is in.
pub fn ready(table: Table<'_>, complete: bool) -> usize {
    let len = table.len();
    if complete || len == 0 {
        return len;
    }
    let last = table.row(len - 1);
    if last.kind() == ProxyType::Backend {
        return len;
    }
    (0..len)
        .rev()
        .find(|&i| table.row(i).proxy() != last.proxy())
        .map_or(0, |i| i + 1)
}
