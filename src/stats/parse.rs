//! `show stat` CSV parsing.
//!
//! Most rows hold no quote, and for them a plain split on `,` is exact and about twice as
//! fast as a general CSV parser. HAProxy quotes a field only when it holds `,`, `"` or a
//! line break (a health-check reply, say); such a row goes through `csv_core`, which may
//! also consume several physical lines.

use super::{Columns, ProxyType, RowMeta, State, Stats, Table};
use memchr::{memchr, memchr_iter};

/// Why a dump could not be read as `show stat` output.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    /// Nothing but whitespace.
    #[error("empty reply: no `show stat` output")]
    Empty,
    /// The first non-blank line is not a `# pxname,...` header.
    #[error("not a `show stat` dump: expected a header line starting with `# pxname`, got {0:?}")]
    NoHeader(String),
    /// The header lacks a column every HAProxy version prints.
    #[error("the header has no `{0}` column")]
    MissingColumn(&'static str),
    /// A row with more or fewer fields than the header.
    #[error("line {line}: {found} fields where the header has {expected} (the dump is truncated or malformed)")]
    FieldCount {
        /// 1-based line number in the dump.
        line: usize,
        /// Fields found on that row.
        found: usize,
        /// Fields the header announces.
        expected: usize,
    },
    /// A quoted field still open at the end of the input.
    #[error("line {line}: quoted field never closed (the dump is truncated)")]
    UnterminatedQuote {
        /// 1-based line number where the row starts.
        line: usize,
    },
    /// Text after the comma that ends every HAProxy row.
    #[error("line {line}: text after the last field (the dump is malformed)")]
    TrailingText {
        /// 1-based line number.
        line: usize,
    },
    /// A second header: two dumps were concatenated.
    #[error("line {line}: a second header line; expected a single `show stat` dump")]
    SecondHeader {
        /// 1-based line number.
        line: usize,
    },
    /// Offsets are 32-bit to keep the row index small.
    #[error("dump of {0} bytes is too large (limit 4 GiB)")]
    TooLarge(usize),
    /// More rows than `MAX_ROWS`.
    #[error("line {line}: more than {MAX_ROWS} rows, far more than any HAProxy dumps; refusing to read more")]
    TooManyRows {
        /// 1-based line number of the first row past the limit.
        line: usize,
    },
    /// The row index would outgrow `MAX_INDEX_BYTES`.
    #[error("line {line}: the offsets of the fields read so far take more than {} MiB (rows of many, mostly empty fields); refusing to read more", MAX_INDEX_BYTES >> 20)]
    IndexTooLarge {
        /// 1-based line number of the row that passed the limit.
        line: usize,
    },
}

/// Rows one dump may hold: far beyond a real HAProxy (a few thousand rows is a large one),
/// and a bound on everything kept per row, here and in the rules' evaluation. Without it,
/// an endless stream of short rows grew to 14 times the 256 MiB reply cap before the cap
/// was reached.
pub const MAX_ROWS: usize = 200_000;

/// Bytes the row index of one dump (a record per row, an offset per field, unescaped
/// copies of quoted rows) may take. A field can be a single byte (its comma) and takes 2
/// or 4 bytes of offset, so the index of a dump of empty fields outweighs its text.
pub const MAX_INDEX_BYTES: usize = 256 << 20;

/// Longest excerpt of an unexpected first line quoted back in an error.
const EXCERPT: usize = 80;

pub(super) fn parse_stat(dump: Vec<u8>, keep: Option<Vec<String>>) -> Result<Stats, ParseError> {
    let mut parser = StatParser::keeping(keep);
    *parser.buffer() = dump;
    parser.finish()
}

/// An incremental `show stat` parser: bytes are appended as they arrive and complete lines
/// are parsed right away, so that a dump is parsed while HAProxy is still writing it, and
/// the rows read so far can be looked at ([`StatParser::table`]) before the rest arrives.
#[derive(Default)]
pub struct StatParser {
    /// Received bytes not parsed yet: the start of a line or quoted record still arriving.
    pending: Vec<u8>,
    /// Every line parsed so far, exactly as received (checked to be UTF-8); when only
    /// some columns are kept, the header line and then the kept fields of each row.
    text: String,
    /// The last bytes parsed (up to 8), for [`StatParser::received_ends_with`].
    parsed_tail: Vec<u8>,
    /// A kept field was not UTF-8 and was stored repaired (U+FFFD).
    repaired: bool,
    /// A quoted row, unescaped, fields separated by `,`.
    unquoted: Vec<u8>,
    line_no: usize,
    header: Option<Header>,
    rows: Vec<RowMeta>,
    ends: Option<Ends>,
    /// Unescaped copies of quoted rows.
    extra: String,
    /// A line was not UTF-8: parsing stops, and `finish` parses a repaired copy.
    not_utf8: bool,
    quoted: QuotedRows,
    /// The columns to keep offsets for (`None`: all), resolved into `layout` by the header.
    keep: Option<Vec<String>>,
    layout: Layout,
    /// One row's column ends, before the kept ones are copied to `ends`.
    scratch: Vec<u32>,
    /// One row's kept offsets, before they are copied to `ends`.
    kept_offsets: Vec<u32>,
}

/// Which fields of a row have offsets in [`Ends`].
#[derive(Debug, Default)]
pub(super) enum Layout {
    /// Every column: one end offset per column; a field starts one byte after the end of
    /// the previous one.
    #[default]
    All,
    /// Only some columns: their fields are copied to the text, with a start and an end
    /// offset each. Rules read a dozen of HAProxy's 100+ columns; the whole text and
    /// offsets for every column were the largest allocations of a run.
    Only {
        /// Per header column, its position among the kept ones (`NOT_KEPT`: none).
        slot: Vec<u32>,
        /// The kept columns, in header order.
        kept: Vec<usize>,
    },
}

/// [`Layout::Only`]'s slot of a column without offsets.
pub(super) const NOT_KEPT: u32 = u32::MAX;

impl Layout {
    fn new(columns: &Columns, keep: Option<&[String]>) -> Layout {
        let Some(keep) = keep else {
            return Layout::All;
        };
        let mut kept: Vec<usize> = keep.iter().filter_map(|name| columns.get(name)).collect();
        kept.extend([columns.pxname, columns.svname]);
        kept.extend(columns.kind.into_iter().chain(columns.status));
        kept.sort_unstable();
        kept.dedup();
        let mut slot = vec![NOT_KEPT; columns.len()];
        for (i, &col) in kept.iter().enumerate() {
            slot[col] = i as u32;
        }
        Layout::Only { slot, kept }
    }

    /// How many columns, from the first, the parser needs the ends of.
    fn columns_needed(&self, columns: usize) -> usize {
        match self {
            Layout::All => columns,
            Layout::Only { kept, .. } => kept.last().map_or(0, |&last| last + 1),
        }
    }

    /// Offsets stored per row.
    fn per_row(&self, columns: usize) -> usize {
        match self {
            Layout::All => columns,
            Layout::Only { kept, .. } => 2 * kept.len(),
        }
    }

    /// Stores the offsets of one row of [`Layout::All`] given the ends of its columns
    /// (relative to the row's base; `ends` must fit them already).
    fn store_all(column_ends: &[u32], ends: &mut Ends) {
        match ends {
            Ends::Narrow(v) => v.extend(column_ends.iter().map(|&end| end as u16)),
            Ends::Wide(v) => v.extend_from_slice(column_ends),
        }
    }

    /// Copies `row` up to the end of its last kept field to `text` (one copy, not one per
    /// field), and the offsets of the kept fields, relative to where the row starts in
    /// `text`, to `ends`. If that part of the row is not UTF-8, the kept fields are copied
    /// one by one, repaired; returns whether they were.
    fn store_kept(
        kept: &[usize],
        row: &Fields<'_>,
        text: &mut String,
        offsets: &mut Vec<u32>,
        ends: &mut Ends,
    ) -> bool {
        let base = text.len();
        offsets.clear();
        let used = kept.last().map_or(0, |&last| row.ends[last] as usize);
        let repaired = match std::str::from_utf8(&row.bytes[..used]) {
            Ok(part) => {
                text.push_str(part);
                for &col in kept {
                    let (start, end) = row.range(col);
                    offsets.extend([start as u32, end as u32]);
                }
                false
            }
            Err(_) => {
                for &col in kept {
                    offsets.push((text.len() - base) as u32);
                    text.push_str(&row.get(col));
                    offsets.push((text.len() - base) as u32);
                }
                true
            }
        };
        ends.fit(text.len() - base);
        Layout::store_all(offsets, ends);
        repaired
    }
}

struct Header {
    range: (usize, usize),
    columns: Columns,
    trailing_comma: bool,
}

impl StatParser {
    /// A parser that keeps field offsets for the columns named in `keep` only, plus
    /// `pxname`, `svname`, `type` and `status` (`None`: for every column). Reading another
    /// column of its rows is a bug: it panics in debug builds and reads as empty otherwise.
    pub fn keeping(keep: Option<Vec<String>>) -> StatParser {
        StatParser {
            keep,
            ..StatParser::default()
        }
    }

    /// The received bytes not parsed yet; append to it, then call [`StatParser::advance`].
    pub fn buffer(&mut self) -> &mut Vec<u8> {
        &mut self.pending
    }

    /// True when everything received so far ends with `suffix` (at most 8 bytes).
    pub fn received_ends_with(&self, suffix: &[u8]) -> bool {
        if self.pending.len() >= suffix.len() {
            return self.pending.ends_with(suffix);
        }
        let (head, tail) = suffix.split_at(suffix.len() - self.pending.len());
        self.pending == tail && self.parsed_tail.ends_with(head)
    }

    /// Parses every complete line received so far.
    pub fn advance(&mut self) -> Result<(), ParseError> {
        self.parse_lines(false)
    }

    /// The rows parsed so far, or `None` before the header.
    pub fn table(&self) -> Option<Table<'_>> {
        if self.not_utf8 {
            return None;
        }
        let header = self.header.as_ref()?;
        Some(Table {
            text: &self.text,
            extra: &self.extra,
            columns: &header.columns,
            layout: &self.layout,
            rows: &self.rows,
            ends: self
                .ends
                .as_ref()
                .map_or(EndsRef::Narrow(&[]), Ends::as_ref),
        })
    }

    /// Parses what is left (a last line without a newline included) and builds the table.
    pub fn finish(mut self) -> Result<Stats, ParseError> {
        self.parse_lines(true)?;
        if self.not_utf8 {
            // Names are ASCII in practice; a stray byte in a check reply must not lose the
            // dump. Lossy decoding moves offsets, so the repaired text is parsed again.
            let mut bytes = self.text.into_bytes();
            bytes.extend_from_slice(&self.pending);
            let repaired = String::from_utf8_lossy(&bytes).into_owned().into_bytes();
            let mut stats = parse_stat(repaired, self.keep)?;
            stats.repaired = true;
            return Ok(stats);
        }
        let Some(header) = self.header else {
            return Err(ParseError::Empty);
        };
        let size = self.text.len().max(self.extra.len());
        if size >= u32::MAX as usize {
            return Err(ParseError::TooLarge(size));
        }
        Ok(Stats {
            text: self.text,
            extra: self.extra,
            header: (header.range.0 as u32, header.range.1 as u32),
            columns: header.columns,
            layout: self.layout,
            rows: self.rows,
            ends: self.ends.unwrap_or(Ends::Narrow(Vec::new())),
            repaired: self.repaired,
        })
    }

    fn parse_lines(&mut self, complete: bool) -> Result<(), ParseError> {
        let mut pos = 0;
        let result = self.parse_lines_from(&mut pos, complete);
        if self.not_utf8 {
            // After a stop, every row parsed in this call stays unusable (`table` hides
            // them) and `pending` keeps its bytes for the repaired parse in `finish`.
            return result;
        }
        // The last bytes of what leaves `pending` (once it does).
        let mut tail = self.parsed_tail.clone();
        tail.extend_from_slice(&self.pending[pos.saturating_sub(8)..pos]);
        tail.drain(..tail.len().saturating_sub(8));
        if self.keep.is_some() {
            // Only kept fields were copied to the text.
            self.parsed_tail = tail;
            self.pending.drain(..pos);
            return result;
        }
        // The lines parsed join the text, checked once per call rather than per line. A
        // line break never splits a UTF-8 sequence, so whole lines are valid exactly when
        // their concatenation is.
        if self.text.is_empty() && pos == self.pending.len() {
            // The whole input at once (a file): no copy.
            match String::from_utf8(std::mem::take(&mut self.pending)) {
                Ok(text) => {
                    self.text = text;
                    self.parsed_tail = tail;
                }
                Err(e) => {
                    self.pending = e.into_bytes();
                    self.not_utf8 = true;
                }
            }
        } else {
            match std::str::from_utf8(&self.pending[..pos]) {
                Ok(lines) => {
                    self.text.push_str(lines);
                    self.pending.drain(..pos);
                    self.parsed_tail = tail;
                }
                Err(_) => self.not_utf8 = true,
            }
        }
        result
    }

    /// Parses complete lines from `pending[*pos..]`, advancing `*pos` past each. With all
    /// columns kept, offsets count as if `pending[..*pos]` were already appended to the
    /// text; otherwise kept fields are copied to the text as rows are parsed.
    fn parse_lines_from(&mut self, pos: &mut usize, complete: bool) -> Result<(), ParseError> {
        let compact = self.keep.is_some();
        while !self.not_utf8 {
            let start = *pos;
            if start >= self.pending.len() {
                return Ok(());
            }
            let newline = memchr(b'\n', &self.pending[start..]);
            if newline.is_none() && !complete {
                return Ok(());
            }
            let (end, next) = line_at(&self.pending, start);
            let line = &self.pending[start..end];
            if line.iter().all(u8::is_ascii_whitespace) {
                self.line_no += 1;
                *pos = next;
                continue;
            }
            let Some(header) = &self.header else {
                let header = if compact {
                    let at = self.text.len();
                    let text = String::from_utf8_lossy(line);
                    self.repaired |= matches!(text, std::borrow::Cow::Owned(_));
                    self.text.push_str(&text);
                    parse_header(line, (at, self.text.len()))?
                } else {
                    let at = self.text.len() + start;
                    parse_header(line, (at, at + line.len()))?
                };
                self.layout = Layout::new(&header.columns, self.keep.as_deref());
                self.header = Some(header);
                self.line_no += 1;
                *pos = next;
                continue;
            };
            if line[0] == b'#' {
                return Err(ParseError::SecondHeader {
                    line: self.line_no + 1,
                });
            }
            let ncols = header.columns.len();
            let trailing_comma = header.trailing_comma;
            let expected_items = ncols + usize::from(trailing_comma);
            let row_line = self.line_no + 1;
            // The row's fields, separated by `,`, with the end of each column in `scratch`:
            // the line itself, or (with quotes) its unescaped copy in `unquoted`.
            let quoted = memchr(b'"', line).is_some();
            let (line_len, consumed_to, newlines) = if quoted {
                // A quoted field may hold line breaks: the record ends at the first line
                // break outside quotes, which may not have arrived yet.
                let record_end = match record_end(&self.pending, start) {
                    Some(end) => end,
                    // At the end of the input the record ends with it (or is unterminated,
                    // which reading it reports).
                    None if complete => self.pending.len(),
                    None => return Ok(()),
                };
                let record = self
                    .quoted
                    .read(&self.pending[start..record_end], row_line)?;
                if record.fields.len() != expected_items {
                    return Err(ParseError::FieldCount {
                        line: row_line,
                        found: record.fields.len(),
                        expected: expected_items,
                    });
                }
                if trailing_comma
                    && record.fields.len() >= 2
                    && record.fields[record.fields.len() - 2]
                        != record.fields[record.fields.len() - 1]
                {
                    return Err(ParseError::TrailingText { line: row_line });
                }
                self.unquoted.clear();
                self.scratch.clear();
                let mut field_start = 0;
                for &field_end in record.fields.iter().take(ncols) {
                    self.unquoted
                        .extend_from_slice(&record.data[field_start..field_end]);
                    self.scratch.push(self.unquoted.len() as u32);
                    self.unquoted.push(b',');
                    field_start = field_end;
                }
                (record.line_len, start + record.consumed, record.newlines)
            } else {
                // Column ends up to the last column kept; past it, commas are only counted.
                let needed = self.layout.columns_needed(ncols);
                let scratch = &mut self.scratch;
                scratch.clear();
                let commas = push_commas(line, needed, |at| scratch.push(at as u32));
                // With HAProxy's trailing comma, the commas are exactly the ends of the
                // columns; without it, the end of the line closes the last one.
                if !trailing_comma && scratch.len() < needed {
                    scratch.push(line.len() as u32);
                }
                let found = commas + 1;
                if found != expected_items {
                    return Err(ParseError::FieldCount {
                        line: row_line,
                        found,
                        expected: expected_items,
                    });
                }
                if trailing_comma && line.last() != Some(&b',') {
                    return Err(ParseError::TrailingText { line: row_line });
                }
                (line.len(), next, 0)
            };
            let row: &[u8] = if quoted {
                &self.unquoted
            } else {
                &self.pending[start..end]
            };
            let fields = Fields::new(row, &self.scratch);
            let (kind, state) = classify(&header.columns, &fields);
            let per_row = self.layout.per_row(ncols);
            let ends = self.ends.get_or_insert_with(|| {
                let approx_rows = memchr_iter(b'\n', &self.pending[start..]).count() + 1;
                Ends::Narrow(Vec::with_capacity(approx_rows * per_row))
            });
            let at = self.text.len() + start;
            let (base, in_extra, line_range) = match &self.layout {
                Layout::Only { kept, .. } => {
                    let base = self.text.len();
                    self.repaired |= Layout::store_kept(
                        kept,
                        &fields,
                        &mut self.text,
                        &mut self.kept_offsets,
                        ends,
                    );
                    // The line itself is not kept.
                    (base, false, (base, base))
                }
                Layout::All if quoted => {
                    let Ok(row) = std::str::from_utf8(row) else {
                        self.not_utf8 = true;
                        return Ok(());
                    };
                    let base = self.extra.len();
                    self.extra.push_str(row);
                    ends.fit(row.len());
                    Layout::store_all(&self.scratch, ends);
                    (base, true, (at, at + line_len))
                }
                Layout::All => {
                    ends.fit(row.len());
                    Layout::store_all(&self.scratch, ends);
                    (at, false, (at, at + line_len))
                }
            };
            if self.rows.len() >= MAX_ROWS {
                return Err(ParseError::TooManyRows { line: row_line });
            }
            let index = self.rows.capacity() * std::mem::size_of::<RowMeta>()
                + ends.heap_bytes()
                + self.extra.capacity();
            if index > MAX_INDEX_BYTES {
                return Err(ParseError::IndexTooLarge { line: row_line });
            }
            self.line_no += newlines + 1;
            self.rows.push(RowMeta {
                line_start: line_range.0 as u32,
                line_end: line_range.1 as u32,
                base: base as u32,
                in_extra,
                kind,
                state,
            });
            *pos = consumed_to;
        }
        Ok(())
    }
}

/// A row's type (the `type` column, or from `svname` in dumps without it) and normalized
/// state, from its bytes and the ends of its columns; computed once, at parse time, so that
/// filters and rules never re-parse them.
fn classify(columns: &Columns, row: &Fields<'_>) -> (ProxyType, State) {
    let kind = columns
        .kind
        .and_then(|c| row.get(c).parse::<u64>().ok())
        .and_then(ProxyType::from_code)
        .unwrap_or_else(|| ProxyType::from_svname(&row.get(columns.svname)));
    let state = columns
        .status
        .map_or(State::Unknown, |c| State::from_status(&row.get(c)));
    (kind, state)
}

/// One row's fields as text: `bytes` with the end of each column in `ends` (a field
/// starts one byte after the previous one's end).
struct Fields<'a> {
    bytes: &'a [u8],
    ends: &'a [u32],
}

impl<'a> Fields<'a> {
    fn new(bytes: &'a [u8], ends: &'a [u32]) -> Self {
        Fields { bytes, ends }
    }

    /// Byte range of column `col`.
    fn range(&self, col: usize) -> (usize, usize) {
        let start = if col == 0 {
            0
        } else {
            self.ends[col - 1] as usize + 1
        };
        (start, self.ends[col] as usize)
    }

    /// Column `col`; repaired (U+FFFD) if it is not UTF-8, as a full parse repairs it.
    fn get(&self, col: usize) -> std::borrow::Cow<'a, str> {
        let (start, end) = self.range(col);
        String::from_utf8_lossy(&self.bytes[start..end])
    }
}

/// The header line: column names, and whether rows end with HAProxy's trailing comma.
fn parse_header(line: &[u8], range: (usize, usize)) -> Result<Header, ParseError> {
    let text = String::from_utf8_lossy(line);
    let Some(names) = text.strip_prefix('#') else {
        return Err(ParseError::NoHeader(excerpt(&text)));
    };
    let mut items: Vec<&str> = names.trim_start().split(',').collect();
    // HAProxy ends the header and every row with a `,`, leaving an empty last item.
    let trailing_comma = items.len() > 1 && items.last() == Some(&"");
    if trailing_comma {
        items.pop();
    }
    Ok(Header {
        range,
        columns: Columns::new(items)?,
        trailing_comma,
    })
}

/// Where the record starting at `start` ends (just past its line break): the first line
/// break with an even number of quotes before it. `None` if none has arrived yet.
fn record_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut quotes = 0;
    let mut at = start;
    loop {
        let newline = at + memchr(b'\n', &bytes[at..])?;
        quotes += memchr_iter(b'"', &bytes[at..newline]).count();
        if quotes % 2 == 0 {
            return Some(newline + 1);
        }
        at = newline + 1;
    }
}

/// Field end offsets, relative to the start of their row: 16 bits each while every row
/// is shorter than 64 KiB (always, in practice), 32 bits once one is not. For 12,000 rows
/// of 128 columns, that is 3 MiB instead of 6.
#[derive(Debug)]
pub(super) enum Ends {
    /// Every row so far fits in 16-bit offsets.
    Narrow(Vec<u16>),
    /// Some row is 64 KiB or longer.
    Wide(Vec<u32>),
}

impl Ends {
    /// Makes room for offsets up to `len`.
    fn fit(&mut self, len: usize) {
        if let Ends::Narrow(narrow) = self {
            if len > usize::from(u16::MAX) {
                *self = Ends::Wide(narrow.iter().map(|&e| u32::from(e)).collect());
            }
        }
    }

    #[cfg(test)]
    fn push(&mut self, end: usize) {
        match self {
            Ends::Narrow(v) => v.push(end as u16),
            Ends::Wide(v) => v.push(end as u32),
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        match self {
            Ends::Narrow(v) => v.len(),
            Ends::Wide(v) => v.len(),
        }
    }

    /// Bytes allocated for the offsets.
    fn heap_bytes(&self) -> usize {
        match self {
            Ends::Narrow(v) => v.capacity() * 2,
            Ends::Wide(v) => v.capacity() * 4,
        }
    }

    pub(super) fn as_ref(&self) -> EndsRef<'_> {
        match self {
            Ends::Narrow(v) => EndsRef::Narrow(v),
            Ends::Wide(v) => EndsRef::Wide(v),
        }
    }

    #[cfg(test)]
    fn get(&self, i: usize) -> usize {
        self.as_ref().get(i)
    }
}

/// Borrowed [`Ends`].
#[derive(Debug, Clone, Copy)]
pub(super) enum EndsRef<'a> {
    Narrow(&'a [u16]),
    Wide(&'a [u32]),
}

impl EndsRef<'_> {
    /// The `i`-th offset.
    pub(super) fn get(self, i: usize) -> usize {
        match self {
            EndsRef::Narrow(v) => usize::from(v[i]),
            EndsRef::Wide(v) => v[i] as usize,
        }
    }
}

/// Calls `push` with the index of each of the first `limit` commas in `line`, in order;
/// returns how many commas the line holds in all.
///
/// Commas are dense in a dump (half the fields are empty), which defeats memchr's
/// skip-ahead; eight bytes at a time with exact per-byte matching (SWAR) costs about a
/// tenth of the instructions. Past `limit`, commas are only counted, a word at a time.
fn push_commas(line: &[u8], limit: usize, mut push: impl FnMut(usize)) -> usize {
    const COMMAS: u64 = 0x2c2c_2c2c_2c2c_2c2c;
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut chunks = line.chunks_exact(8);
    let mut offset = 0;
    let mut count = 0;
    for chunk in &mut chunks {
        let word = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        let diff = word ^ COMMAS;
        // The high bit of a byte ends up set exactly where that byte of `diff` is zero.
        let mut hits = !(((diff & LOW7) + LOW7) | diff) & HIGH;
        if count >= limit {
            count += hits.count_ones() as usize;
        } else {
            while hits != 0 {
                if count < limit {
                    push(offset + hits.trailing_zeros() as usize / 8);
                }
                count += 1;
                hits &= hits - 1;
            }
        }
        offset += 8;
    }
    for (i, &b) in chunks.remainder().iter().enumerate() {
        if b == b',' {
            if count < limit {
                push(offset + i);
            }
            count += 1;
        }
    }
    count
}

/// The line starting at `pos`: its end without `\r\n`, and where the next begins.
fn line_at(bytes: &[u8], pos: usize) -> (usize, usize) {
    let (mut end, next) = match memchr(b'\n', &bytes[pos..]) {
        Some(i) => (pos + i, pos + i + 1),
        None => (bytes.len(), bytes.len()),
    };
    if end > pos && bytes[end - 1] == b'\r' {
        end -= 1;
    }
    (end, next)
}

fn excerpt(line: &str) -> String {
    match line.char_indices().nth(EXCERPT) {
        Some((i, _)) => format!("{}…", &line[..i]),
        None => line.to_string(),
    }
}

/// The reusable state for reading rows with quoted fields.
#[derive(Default)]
struct QuotedRows {
    reader: Option<csv_core::Reader>,
    data: Vec<u8>,
    fields: Vec<usize>,
}

/// One quoted row, unescaped.
struct Record<'a> {
    data: &'a [u8],
    fields: &'a [usize],
    /// Input bytes consumed, including the terminating newline.
    consumed: usize,
    /// Length of the row's text without its terminating newline.
    line_len: usize,
    /// Line breaks inside quoted fields.
    newlines: usize,
}

impl QuotedRows {
    fn read<'s>(&'s mut self, input: &[u8], line: usize) -> Result<Record<'s>, ParseError> {
        use csv_core::ReadRecordResult as R;
        let reader = self.reader.get_or_insert_with(csv_core::Reader::new);
        self.data.clear();
        self.data.resize(input.len().min(64 * 1024) + 16, 0);
        self.fields.clear();
        self.fields.resize(256, 0);
        let (mut nin, mut nout, mut nends) = (0, 0, 0);
        loop {
            let (result, i, o, e) = reader.read_record(
                &input[nin..],
                &mut self.data[nout..],
                &mut self.fields[nends..],
            );
            nin += i;
            nout += o;
            nends += e;
            match result {
                R::Record => break,
                R::OutputFull => {
                    let len = self.data.len() * 2;
                    self.data.resize(len, 0);
                }
                R::OutputEndsFull => {
                    let len = self.fields.len() * 2;
                    self.fields.resize(len, 0);
                }
                // At the end of input csv_core needs one call with no input to finish the record.
                R::InputEmpty if nin == input.len() => {
                    let (result, _, o, e) =
                        reader.read_record(&[], &mut self.data[nout..], &mut self.fields[nends..]);
                    nout += o;
                    nends += e;
                    if !matches!(result, R::Record) {
                        *reader = csv_core::Reader::new();
                        return Err(ParseError::UnterminatedQuote { line });
                    }
                    break;
                }
                R::InputEmpty => {}
                R::End => return Err(ParseError::UnterminatedQuote { line }),
            }
        }
        let consumed_text = &input[..nin];
        // csv_core does not report an unterminated quote when input runs out inside it; an odd
        // number of quotes in the consumed text does.
        if !memchr_iter(b'"', consumed_text).count().is_multiple_of(2) {
            *reader = csv_core::Reader::new();
            return Err(ParseError::UnterminatedQuote { line });
        }
        let mut line_len = nin;
        while line_len > 0 && matches!(input[line_len - 1], b'\n' | b'\r') {
            line_len -= 1;
        }
        let newlines = memchr_iter(b'\n', &input[..line_len]).count();
        let data = &self.data[..nout];
        Ok(Record {
            data,
            fields: &self.fields[..nends],
            consumed: nin,
            line_len,
            newlines,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{push_commas, Ends};

    fn offsets(ends: &Ends) -> Vec<usize> {
        (0..ends.len()).map(|i| ends.get(i)).collect()
    }

    #[test]
    fn swar_finds_every_comma_and_nothing_else() {
        let line = b",a,,bc,\xac,\x2d,,,0123456789,x\xff,,";
        let mut ends = Ends::Narrow(Vec::new());
        push_commas(line, usize::MAX, |at| ends.push(at));
        let want: Vec<usize> = line
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b',')
            .map(|(i, _)| i)
            .collect();
        assert_eq!(offsets(&ends), want);
        ends.fit(70_000);
        assert!(matches!(ends, Ends::Wide(_)));
        assert_eq!(offsets(&ends), want, "widening keeps the offsets");
        for len in 0..20 {
            let line: Vec<u8> = (0..len)
                .map(|i| if i % 3 == 0 { b',' } else { b'x' ^ (i as u8) })
                .collect();
            let mut ends = Ends::Narrow(Vec::new());
            let count = push_commas(&line, usize::MAX, |at| ends.push(at));
            let all = offsets(&ends);
            assert_eq!(count, all.len());
            assert_eq!(
                count,
                line.iter().filter(|b| **b == b',').count(),
                "{line:?}"
            );
            for limit in 0..=count + 1 {
                let mut first = Vec::new();
                let total = push_commas(&line, limit, |at| first.push(at));
                assert_eq!(total, count, "limit {limit}: {line:?}");
                assert_eq!(first, all[..limit.min(count)], "limit {limit}: {line:?}");
            }
        }
    }

    #[test]
    fn a_row_over_64_kib_switches_to_wide_offsets() {
        let long = "x".repeat(70_000);
        let dump = format!("# pxname,svname,status,check_desc,\nb,s1,UP,short,\nb,s2,DOWN,{long},\nb,s3,UP,\"q,{long}\",\n");
        let stats = super::super::Stats::parse(dump.into_bytes()).unwrap();
        assert_eq!(stats.row(0).by_name("check_desc"), Some("short"));
        assert_eq!(
            stats.row(1).by_name("check_desc").map(str::len),
            Some(70_000)
        );
        assert_eq!(stats.row(1).status(), "DOWN");
        assert_eq!(
            stats.row(2).by_name("check_desc").map(str::len),
            Some(70_002)
        );
        assert_eq!(stats.row(2).name(), "s3");
    }
}
