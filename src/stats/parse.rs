//! `show stat` CSV parsing.
//!
//! Most rows hold no quote, and for them a plain split on `,` is exact and about twice as
//! fast as a general CSV parser. HAProxy quotes a field only when it holds `,`, `"` or a
//! line break (a health-check reply, say); such a row goes through `csv_core`, which may
//! also consume several physical lines.

use super::{Columns, ProxyType, RowMeta, State, Stats};
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
}

/// Longest excerpt of an unexpected first line quoted back in an error.
const EXCERPT: usize = 80;

pub(super) fn parse_stat(dump: Vec<u8>) -> Result<Stats, ParseError> {
    let text = match String::from_utf8(dump) {
        Ok(text) => text,
        // Names are ASCII in practice; a stray byte in a check reply must not lose the dump.
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    };
    if text.len() >= u32::MAX as usize {
        return Err(ParseError::TooLarge(text.len()));
    }
    let bytes = text.as_bytes();

    let mut pos = 0;
    let mut line_no = 0;
    let (header_start, header_end) = loop {
        if pos >= bytes.len() {
            return Err(ParseError::Empty);
        }
        let (start, end, next) = line_at(bytes, pos);
        line_no += 1;
        pos = next;
        if !text[start..end].trim().is_empty() {
            break (start, end);
        }
    };
    let header = &text[header_start..header_end];
    let Some(names) = header.strip_prefix('#') else {
        return Err(ParseError::NoHeader(excerpt(header)));
    };
    let mut items: Vec<&str> = names.trim_start().split(',').collect();
    // HAProxy ends the header and every row with a `,`, leaving an empty last item.
    let trailing_comma = items.len() > 1 && items.last() == Some(&"");
    if trailing_comma {
        items.pop();
    }
    let columns = Columns::new(items)?;
    let ncols = columns.len();
    let expected_items = ncols + usize::from(trailing_comma);

    let approx_rows = memchr_iter(b'\n', &bytes[pos..]).count() + 1;
    let mut rows: Vec<RowMeta> = Vec::with_capacity(approx_rows);
    let mut ends = Ends::Narrow(Vec::with_capacity(approx_rows * ncols));
    // Unescaped copies of quoted rows; they are appended to `text` at the end.
    let mut extra = String::new();
    let mut quoted = QuotedRows::default();

    while pos < bytes.len() {
        let (start, end, next) = line_at(bytes, pos);
        line_no += 1;
        let line = &bytes[start..end];
        if line.iter().all(u8::is_ascii_whitespace) {
            pos = next;
            continue;
        }
        if line[0] == b'#' {
            return Err(ParseError::SecondHeader { line: line_no });
        }
        let row_line = line_no;
        let (base, line_end) = if memchr(b'"', line).is_none() {
            let before = ends.len();
            ends.fit(line.len());
            // Dispatched once per row: the loop itself is monomorphic.
            match &mut ends {
                Ends::Narrow(v) => push_commas(line, |at| v.push(at as u16)),
                Ends::Wide(v) => push_commas(line, |at| v.push(at as u32)),
            }
            // With HAProxy's trailing comma, the commas are exactly the ends of the columns;
            // without it, the end of the line closes the last one.
            if !trailing_comma {
                ends.push(line.len());
            }
            let found = ends.len() - before + usize::from(trailing_comma);
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
            pos = next;
            (start, end)
        } else {
            let offset = text.len() + extra.len();
            let record = quoted.read(&bytes[start..], row_line)?;
            if record.fields.len() != expected_items {
                return Err(ParseError::FieldCount {
                    line: row_line,
                    found: record.fields.len(),
                    expected: expected_items,
                });
            }
            if trailing_comma
                && record.fields.len() >= 2
                && record.fields[record.fields.len() - 2] != record.fields[record.fields.len() - 1]
            {
                return Err(ParseError::TrailingText { line: row_line });
            }
            if offset + record.data.len() + ncols >= u32::MAX as usize {
                return Err(ParseError::TooLarge(offset + record.data.len()));
            }
            let copy_start = extra.len();
            let mut field_start = 0;
            for &field_end in record.fields.iter().take(ncols) {
                extra.push_str(&record.data[field_start..field_end]);
                ends.fit(extra.len() - copy_start);
                ends.push(extra.len() - copy_start);
                extra.push(',');
                field_start = field_end;
            }
            line_no += record.newlines;
            pos = start + record.consumed;
            let line_end = start + record.line_len;
            (offset, line_end)
        };
        rows.push(RowMeta {
            line_start: start as u32,
            line_end: line_end as u32,
            base: base as u32,
            kind: ProxyType::Frontend,
            state: State::Unknown,
        });
    }

    let mut text = text;
    text.push_str(&extra);
    let mut stats = Stats {
        text,
        header: (header_start as u32, header_end as u32),
        columns,
        rows,
        ends,
    };
    classify_rows(&mut stats);
    Ok(stats)
}

/// Fills in each row's type and normalized state once, so that filters and rules never
/// re-parse them.
fn classify_rows(stats: &mut Stats) {
    let kinds: Vec<(ProxyType, State)> = stats
        .rows()
        .map(|row| {
            let kind = stats
                .columns
                .kind
                .and_then(|c| row.u64(c))
                .and_then(ProxyType::from_code)
                .unwrap_or_else(|| ProxyType::from_svname(row.name()));
            (kind, State::from_status(row.status()))
        })
        .collect();
    for (meta, (kind, state)) in stats.rows.iter_mut().zip(kinds) {
        meta.kind = kind;
        meta.state = state;
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

    fn push(&mut self, end: usize) {
        match self {
            Ends::Narrow(v) => v.push(end as u16),
            Ends::Wide(v) => v.push(end as u32),
        }
    }

    fn len(&self) -> usize {
        match self {
            Ends::Narrow(v) => v.len(),
            Ends::Wide(v) => v.len(),
        }
    }

    /// The `i`-th offset.
    pub(super) fn get(&self, i: usize) -> usize {
        match self {
            Ends::Narrow(v) => usize::from(v[i]),
            Ends::Wide(v) => v[i] as usize,
        }
    }
}

/// Calls `push` with the index of every `,` in `line`, in order.
///
/// Commas are dense in a dump (half the fields are empty), which defeats memchr's
/// skip-ahead; eight bytes at a time with exact per-byte matching (SWAR) costs about a
/// tenth of the instructions.
fn push_commas(line: &[u8], mut push: impl FnMut(usize)) {
    const COMMAS: u64 = 0x2c2c_2c2c_2c2c_2c2c;
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut chunks = line.chunks_exact(8);
    let mut offset = 0;
    for chunk in &mut chunks {
        let word = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        let diff = word ^ COMMAS;
        // The high bit of a byte ends up set exactly where that byte of `diff` is zero.
        let mut hits = !(((diff & LOW7) + LOW7) | diff) & HIGH;
        while hits != 0 {
            push(offset + hits.trailing_zeros() as usize / 8);
            hits &= hits - 1;
        }
        offset += 8;
    }
    for (i, &b) in chunks.remainder().iter().enumerate() {
        if b == b',' {
            push(offset + i);
        }
    }
}

/// The line starting at `pos`: its start, its end without `\r\n`, and where the next begins.
fn line_at(bytes: &[u8], pos: usize) -> (usize, usize, usize) {
    let (mut end, next) = match memchr(b'\n', &bytes[pos..]) {
        Some(i) => (pos + i, pos + i + 1),
        None => (bytes.len(), bytes.len()),
    };
    if end > pos && bytes[end - 1] == b'\r' {
        end -= 1;
    }
    (pos, end, next)
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
    data: std::borrow::Cow<'a, str>,
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
        // Removing ASCII quotes from valid UTF-8 leaves valid UTF-8; lossy is only a guard.
        let data = String::from_utf8_lossy(&self.data[..nout]);
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
        push_commas(line, |at| ends.push(at));
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
            push_commas(&line, |at| ends.push(at));
            assert_eq!(
                ends.len(),
                line.iter().filter(|b| **b == b',').count(),
                "{line:?}"
            );
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
