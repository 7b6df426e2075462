//! A typed, read-only view of one HAProxy `show stat` dump plus its `show info` block.
//!
//! Columns are found by header name, never by position: the column set changes between
//! HAProxy versions and even within one branch (2.6.12 has `agg_*` columns 2.6.0 lacks).

pub mod columns;
mod info;
mod parse;
mod status;

pub use info::{field_is_text as info_field_is_text, Info, KNOWN_FIELDS as INFO_FIELDS};
pub use parse::{ParseError, StatParser};
pub use status::{ProxyType, State, TypeMask};

use std::collections::HashMap;

/// Everything one source reported in one fetch.
#[derive(Debug)]
pub struct Snapshot {
    /// `show info`, when the source can report it (the runtime API can, the stats page cannot).
    pub info: Option<Info>,
    /// The parsed `show stat` table.
    pub stats: Stats,
}

/// The `show stat` table: the dump's text plus the offsets of every field.
///
/// Rows borrow their fields from one buffer instead of owning a `String` per field, so a
/// 12,000-row dump costs two allocations rather than 1.5 million.
#[derive(Debug)]
pub struct Stats {
    /// The dump as received.
    text: String,
    /// Unescaped copies of the few rows that had quotes, fields separated by `,`.
    extra: String,
    /// Byte range of the header line within `text`.
    header: (u32, u32),
    columns: Columns,
    /// Which fields have offsets.
    layout: parse::Layout,
    rows: Vec<RowMeta>,
    /// Per row, relative to `RowMeta::base`: with `Layout::All`, `columns.len()` field end
    /// offsets (a field starts one byte after the previous field's end, the first at 0);
    /// with `Layout::Only`, a start and an end offset for each kept column.
    ends: parse::Ends,
    /// The dump was not valid UTF-8 and was decoded lossily.
    repaired: bool,
}

#[derive(Debug, Clone, Copy)]
struct RowMeta {
    /// Byte range of the row's line(s) in the received dump, without the newline.
    line_start: u32,
    line_end: u32,
    /// Offset of the first field's first byte, in `extra` when `in_extra`, else in `text`.
    base: u32,
    in_extra: bool,
    kind: ProxyType,
    state: State,
}

/// A borrowed view of a table's rows: of a whole [`Stats`], or of the rows a
/// [`StatParser`] has read so far while the rest of the dump is still arriving.
#[derive(Debug, Clone, Copy)]
pub struct Table<'a> {
    text: &'a str,
    extra: &'a str,
    columns: &'a Columns,
    layout: &'a parse::Layout,
    rows: &'a [RowMeta],
    ends: parse::EndsRef<'a>,
}

impl<'a> Table<'a> {
    /// The header's columns.
    pub fn columns(&self) -> &'a Columns {
        self.columns
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True when there is no row.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The row at `index` (dump order).
    pub fn row(&self, index: usize) -> Row<'a> {
        assert!(index < self.rows.len(), "row {index} out of range");
        Row {
            table: *self,
            index,
        }
    }

    /// The rows in `range`, in dump order.
    pub fn rows_in(
        &self,
        range: std::ops::Range<usize>,
    ) -> impl ExactSizeIterator<Item = Row<'a>> + 'a {
        let table = *self;
        assert!(range.end <= table.rows.len(), "rows {range:?} out of range");
        range.map(move |index| Row { table, index })
    }
}

/// The header of a dump: column names and a name → index lookup.
#[derive(Debug, Clone)]
pub struct Columns {
    /// Names as HAProxy printed them; duplicates (HAProxy 2.3 printed two pairs of h2
    /// columns twice) get a `#2` suffix so that every column keeps a distinct key.
    names: Vec<String>,
    index: HashMap<String, usize>,
    pxname: usize,
    svname: usize,
    kind: Option<usize>,
    status: Option<usize>,
}

impl Columns {
    fn new(raw_names: Vec<&str>) -> Result<Self, ParseError> {
        let mut index = HashMap::with_capacity(raw_names.len());
        let mut names = Vec::with_capacity(raw_names.len());
        for (i, raw) in raw_names.into_iter().enumerate() {
            let mut name = raw.trim().to_string();
            let mut n = 2;
            while index.contains_key(&name) {
                name = format!("{}#{n}", raw.trim());
                n += 1;
            }
            index.insert(name.clone(), i);
            names.push(name);
        }
        let required = |name: &'static str| {
            index
                .get(name)
                .copied()
                .ok_or(ParseError::MissingColumn(name))
        };
        Ok(Columns {
            pxname: required("pxname")?,
            svname: required("svname")?,
            kind: index.get("type").copied(),
            status: index.get("status").copied(),
            names,
            index,
        })
    }

    /// Number of columns (HAProxy's trailing empty item is not a column).
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// True when the header named no column at all.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Index of the column called `name`, if the dump has it.
    pub fn get(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    /// Column names in dump order (duplicates suffixed `#2`).
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// True for HAProxy's `-` column, which only separates static fields from module
    /// fields and always holds `-`.
    pub fn is_separator(&self, col: usize) -> bool {
        self.names[col] == "-"
    }
}

impl Stats {
    /// Parses a `show stat` CSV dump (header line first; blank lines are ignored).
    pub fn parse(dump: Vec<u8>) -> Result<Stats, ParseError> {
        parse::parse_stat(dump, None)
    }

    /// [`Stats::parse`], keeping the fields of the columns named in `keep` only (see
    /// [`StatParser::keeping`]; `None`: all).
    pub fn parse_keeping(dump: Vec<u8>, keep: Option<Vec<String>>) -> Result<Stats, ParseError> {
        parse::parse_stat(dump, keep)
    }

    /// The header's columns.
    pub fn columns(&self) -> &Columns {
        &self.columns
    }

    /// Number of data rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True when the dump had a header and no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// A view of every row.
    pub fn table(&self) -> Table<'_> {
        Table {
            text: &self.text,
            extra: &self.extra,
            columns: &self.columns,
            layout: &self.layout,
            rows: &self.rows,
            ends: self.ends.as_ref(),
        }
    }

    /// The row at `index` (dump order).
    pub fn row(&self, index: usize) -> Row<'_> {
        self.table().row(index)
    }

    /// All rows in dump order.
    pub fn rows(&self) -> impl ExactSizeIterator<Item = Row<'_>> + '_ {
        self.table().rows_in(0..self.rows.len())
    }

    /// The header line exactly as received (without the newline).
    pub fn header_line(&self) -> &str {
        &self.text[self.header.0 as usize..self.header.1 as usize]
    }

    /// True when the dump was not valid UTF-8: invalid bytes were replaced by U+FFFD and
    /// the repaired text parsed again.
    pub fn repaired(&self) -> bool {
        self.repaired
    }
}

/// One row of a dump: a frontend, backend, server or listener.
#[derive(Clone, Copy)]
pub struct Row<'a> {
    table: Table<'a>,
    index: usize,
}

impl<'a> Row<'a> {
    fn meta(&self) -> &'a RowMeta {
        &self.table.rows[self.index]
    }

    /// The columns of the dump this row belongs to.
    pub fn columns(&self) -> &'a Columns {
        self.table.columns
    }

    /// The rows of the dump this row belongs to (those read so far, while it arrives).
    pub fn table(&self) -> Table<'a> {
        self.table
    }

    /// Position of this row in its dump.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The field in column `col` exactly as printed (unquoted); `""` when empty.
    pub fn raw(&self, col: usize) -> &'a str {
        let table = &self.table;
        let width = table.columns.len();
        assert!(col < width, "column {col} out of range");
        let (start, end) = match table.layout {
            parse::Layout::All => {
                let at = self.index * width + col;
                let start = if col == 0 {
                    0
                } else {
                    table.ends.get(at - 1) + 1
                };
                (start, table.ends.get(at))
            }
            parse::Layout::Only { slot, kept } => {
                let slot = slot[col];
                if slot == parse::NOT_KEPT {
                    if cfg!(debug_assertions) {
                        panic!(
                            "column {} was not kept by the parser",
                            table.columns.names[col]
                        );
                    }
                    return "";
                }
                let at = self.index * 2 * kept.len() + 2 * slot as usize;
                (table.ends.get(at), table.ends.get(at + 1))
            }
        };
        let meta = self.meta();
        let base = meta.base as usize;
        let text = if meta.in_extra {
            table.extra
        } else {
            table.text
        };
        &text[base + start..base + end]
    }

    /// The field in column `col`, or `None` when HAProxy left it empty: an empty field
    /// means "not reported", which is not the same as zero.
    pub fn get(&self, col: usize) -> Option<&'a str> {
        Some(self.raw(col)).filter(|s| !s.is_empty())
    }

    /// The field named `name`, or `None` when the column is missing or the field empty.
    pub fn by_name(&self, name: &str) -> Option<&'a str> {
        self.table.columns.get(name).and_then(|c| self.get(c))
    }

    /// A counter or gauge: `None` when absent or not an unsigned integer.
    pub fn u64(&self, col: usize) -> Option<u64> {
        self.get(col).and_then(|s| s.parse().ok())
    }

    /// A signed value such as `lastsess` (-1 = never): `None` when absent or not an integer.
    pub fn i64(&self, col: usize) -> Option<i64> {
        self.get(col).and_then(|s| s.parse().ok())
    }

    /// `pxname`: the proxy (frontend, backend or listen section) name.
    pub fn proxy(&self) -> &'a str {
        self.raw(self.table.columns.pxname)
    }

    /// `svname`: `FRONTEND`, `BACKEND`, a server name, or a listener name.
    pub fn name(&self) -> &'a str {
        self.raw(self.table.columns.svname)
    }

    /// The row type (`type` column, or derived from `svname` in dumps without it).
    pub fn kind(&self) -> ProxyType {
        self.meta().kind
    }

    /// `status` exactly as printed, e.g. `UP 1/2` or `MAINT (via app/web1)`.
    pub fn status(&self) -> &'a str {
        self.table.columns.status.map_or("", |c| self.raw(c))
    }

    /// The normalized status.
    pub fn state(&self) -> State {
        self.meta().state
    }

    /// The row's line(s) exactly as received, for re-emitting a dump. Only a parse that
    /// kept every column keeps the lines (it panics in debug builds, and is empty
    /// otherwise).
    pub fn line(&self) -> &'a str {
        if cfg!(debug_assertions) && matches!(self.table.layout, parse::Layout::Only { .. }) {
            panic!("the parser kept only some columns, not the lines");
        }
        let m = self.meta();
        &self.table.text[m.line_start as usize..m.line_end as usize]
    }
}

impl std::fmt::Debug for Row<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Row")
            .field("proxy", &self.proxy())
            .field("name", &self.name())
            .field("kind", &self.kind())
            .field("status", &self.status())
            .finish()
    }
}
