//! The previous run's counters, kept so that `delta()` and `rate()` can compare.
//!
//! Only the columns that rules pass to `delta()`/`rate()` are kept, plus the process
//! identity (`Pid`, `Start_time_sec`) that tells a reload apart from a counter going down.

use super::process::{PrevCapture, PrevValues};
use crate::stats::{Info, Snapshot, Table};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::OnceLock;

/// Counters of one source at one moment.
///
/// Rows are kept in dump order as one text of `proxy/svname` lines, and values column by
/// column: compact to store and quick to load (one string, not one per row), and a
/// lookup for the same row of the next dump is a comparison at the same position
/// (HAProxy keeps its order between dumps), with a hash index built only if the layout
/// changed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sample {
    /// Unix time (seconds) at which the dump was taken.
    pub taken_at: f64,
    /// `show info` Pid, when the source reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u64>,
    /// `show info` Start_time_sec, when the source reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<u64>,
    /// Names of the kept columns.
    pub columns: Vec<String>,
    /// `proxy/svname` of each row, one per line, in dump order (HAProxy names hold no
    /// `/` and no line break).
    pub rows: String,
    /// Per kept column, the value of each row in dump order as decimal text, separated by
    /// `,` (empty: absent; a sample of no rows reads as one absent value, never looked up). Text copied from the dump is cheap to take, store and load;
    /// it is parsed on the first lookup. State files of version 1 hold arrays instead.
    #[serde(deserialize_with = "values_text_or_array")]
    pub values: Vec<String>,
    /// What `prev()` reads: only the fields rules pass to it.
    #[serde(default, skip_serializing_if = "PrevValues::is_empty")]
    pub prev: PrevValues,
    /// `values`, parsed.
    #[serde(skip)]
    parsed: OnceLock<Vec<Vec<Option<u64>>>>,
    /// Where each line of `rows` starts, computed on the first lookup.
    #[serde(skip)]
    starts: OnceLock<Vec<u32>>,
    /// Row position by key, built on the first lookup that misses its position.
    #[serde(skip)]
    index: OnceLock<HashMap<String, usize>>,
}

impl PartialEq for Sample {
    fn eq(&self, other: &Self) -> bool {
        self.taken_at == other.taken_at
            && self.pid == other.pid
            && self.start_time == other.start_time
            && self.columns == other.columns
            && self.rows == other.rows
            && self.values == other.values
            && self.prev == other.prev
    }
}

impl Sample {
    /// Keeps `columns` of every row of `snapshot`.
    pub fn capture(snapshot: &Snapshot, columns: &[String], taken_at: f64) -> Sample {
        let mut capture = Capture::new(columns);
        capture.advance(snapshot.stats.table(), snapshot.info.as_ref());
        capture.finish(taken_at)
    }

    /// True when `snapshot` comes from another HAProxy process than this sample (a reload
    /// or restart): every counter started again from zero.
    pub fn restarted_before(&self, snapshot: &Snapshot) -> bool {
        self.restarted_before_info(snapshot.info.as_ref())
    }

    /// [`Sample::restarted_before`] given the new dump's `show info` (`None`: unknown).
    pub fn restarted_before_info(&self, info: Option<&Info>) -> bool {
        let Some(info) = info else {
            return false;
        };
        let differs =
            |old: Option<u64>, new: Option<u64>| matches!((old, new), (Some(a), Some(b)) if a != b);
        differs(self.pid, info.pid()) || differs(self.start_time, info.start_time_sec())
    }

    /// Position of row `proxy/name`, trying `hint` (its position in the current dump) first.
    pub fn find(&self, hint: usize, proxy: &str, name: &str) -> Option<usize> {
        let is = |key: &str| {
            key.len() == proxy.len() + 1 + name.len()
                && key.starts_with(proxy)
                && key.as_bytes()[proxy.len()] == b'/'
                && key.ends_with(name)
        };
        if self.key(hint).is_some_and(is) {
            return Some(hint);
        }
        let index = self.index.get_or_init(|| {
            (0..self.starts().len())
                .filter_map(|i| Some((self.key(i)?.to_string(), i)))
                .collect()
        });
        index.get(&format!("{proxy}/{name}")).copied()
    }

    fn starts(&self) -> &[u32] {
        self.starts.get_or_init(|| {
            let mut starts = Vec::with_capacity(self.rows.len() / 16);
            let mut at = 0;
            for end in memchr::memchr_iter(b'\n', self.rows.as_bytes()) {
                starts.push(at as u32);
                at = end + 1;
            }
            starts
        })
    }

    /// The `proxy/svname` key of row `row`.
    fn key(&self, row: usize) -> Option<&str> {
        let start = *self.starts().get(row)? as usize;
        let end = memchr::memchr(b'\n', &self.rows.as_bytes()[start..])? + start;
        Some(&self.rows[start..end])
    }

    /// The value of kept column `column` (an index into `columns`) at row `row`.
    pub fn value(&self, column: usize, row: usize) -> Option<u64> {
        let parsed = self
            .parsed
            .get_or_init(|| self.values.iter().map(|text| parse_values(text)).collect());
        parsed.get(column)?.get(row).copied().flatten()
    }

    /// A sample made of its stored parts (see [`crate::rules::window::History`]).
    pub fn from_parts(
        taken_at: f64,
        pid: Option<u64>,
        start_time: Option<u64>,
        columns: Vec<String>,
        rows: String,
        values: Vec<String>,
    ) -> Sample {
        Sample {
            taken_at,
            pid,
            start_time,
            columns,
            rows,
            values,
            prev: PrevValues::default(),
            parsed: OnceLock::new(),
            starts: OnceLock::new(),
            index: OnceLock::new(),
        }
    }

    /// Index of `column` among the kept columns.
    pub fn column(&self, column: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == column)
    }
}

/// The values of one column: decimal numbers separated by `,`; an empty one, or one that
/// is not a `u64`, is absent. One pass over the bytes (a run reads ~50,000 of them).
fn parse_values(text: &str) -> Vec<Option<u64>> {
    let mut values = Vec::with_capacity(text.len() / 2 + 1);
    // The value so far: `None` while empty, or once not a number.
    let (mut value, mut empty): (Option<u64>, bool) = (Some(0), true);
    for &b in text.as_bytes() {
        if b == b',' {
            values.push(value.filter(|_| !empty));
            (value, empty) = (Some(0), true);
        } else {
            empty = false;
            value = value.and_then(|v| {
                let digit = b.checked_sub(b'0').filter(|d| *d <= 9)?;
                v.checked_mul(10)?.checked_add(u64::from(digit))
            });
        }
    }
    values.push(value.filter(|_| !empty));
    values
}

/// Increase of a counter from `previous` to `current`, reset-aware: when the counter went
/// down or the process restarted, it counts from zero (as Prometheus does), so the result
/// is never negative and a reload never shows as a spike.
pub fn increase(previous: u64, current: u64, restarted: bool) -> u64 {
    if restarted || current < previous {
        current
    } else {
        current - previous
    }
}

/// A [`Sample`] being taken row by row, as the rows of a dump arrive.
#[derive(Debug)]
pub struct Capture {
    columns: Vec<String>,
    /// Dump column of each kept column, known once the first rows are seen.
    dump_columns: Option<Vec<Option<usize>>>,
    pid: Option<u64>,
    start_time: Option<u64>,
    rows: String,
    values: Vec<String>,
    /// What `prev()` reads.
    prev: PrevCapture,
    /// Rows captured so far.
    done: usize,
}

impl Capture {
    /// Starts a capture of `columns`; none (no rule uses `delta()` or `rate()`) keeps
    /// nothing at all.
    pub fn new(columns: &[String]) -> Capture {
        Capture {
            columns: columns.to_vec(),
            dump_columns: None,
            pid: None,
            start_time: None,
            rows: String::new(),
            values: vec![String::new(); columns.len()],
            prev: PrevCapture::default(),
            done: 0,
        }
    }

    /// Also keeps what `prev()` reads.
    pub fn with_prev(mut self, prev: PrevCapture) -> Capture {
        self.prev = prev;
        self
    }

    /// Captures the rows of `table` not seen yet, from a process described by `info`.
    /// Every call must show the same dump, with at least the rows of the previous call.
    pub fn advance(&mut self, table: Table<'_>, info: Option<&Info>) {
        self.pid = info.and_then(Info::pid);
        self.start_time = info.and_then(Info::start_time_sec);
        self.prev.info(info);
        if (self.columns.is_empty() && !self.prev.keeps_rows()) || table.len() <= self.done {
            return;
        }
        let dump_columns = self.dump_columns.get_or_insert_with(|| {
            self.columns
                .iter()
                .map(|c| table.columns().get(c))
                .collect()
        });
        for row in table.rows_in(self.done..table.len()) {
            self.rows.push_str(row.proxy());
            self.rows.push('/');
            self.rows.push_str(row.name());
            self.rows.push('\n');
            for (column, values) in dump_columns.iter().zip(&mut self.values) {
                if row.index() > 0 {
                    values.push(',');
                }
                // Counters are plain decimal digits; anything else is no value.
                let value = column.map_or("", |col| row.raw(col));
                if value.len() <= 20 && value.bytes().all(|b| b.is_ascii_digit()) {
                    values.push_str(value);
                }
            }
            self.prev.row(&table, &row);
        }
        self.done = table.len();
    }

    /// The sample, taken at `taken_at`.
    pub fn finish(self, taken_at: f64) -> Sample {
        Sample {
            taken_at,
            pid: self.pid,
            start_time: self.start_time,
            columns: self.columns,
            rows: self.rows,
            values: self.values,
            prev: self.prev.finish(),
            parsed: OnceLock::new(),
            starts: OnceLock::new(),
            index: OnceLock::new(),
        }
    }
}

/// Reads [`Sample::values`]: per column a text, or (state version 1) an array of numbers
/// and nulls.
fn values_text_or_array<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    struct Column;
    impl<'de> serde::de::Visitor<'de> for Column {
        type Value = String;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("values as text, or an array of numbers and nulls")
        }
        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<String, E> {
            Ok(text.to_string())
        }
        fn visit_string<E: serde::de::Error>(self, text: String) -> Result<String, E> {
            Ok(text)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<String, A::Error> {
            let mut text = String::new();
            let mut first = true;
            while let Some(value) = seq.next_element::<Option<u64>>()? {
                if !std::mem::take(&mut first) {
                    text.push(',');
                }
                if let Some(value) = value {
                    text.push_str(&value.to_string());
                }
            }
            Ok(text)
        }
    }
    struct Columns;
    impl<'de> serde::de::Visitor<'de> for Columns {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an array of value columns")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Vec<String>, A::Error> {
            struct One;
            impl<'de> serde::de::DeserializeSeed<'de> for One {
                type Value = String;
                fn deserialize<D: serde::Deserializer<'de>>(
                    self,
                    d: D,
                ) -> Result<String, D::Error> {
                    d.deserialize_any(Column)
                }
            }
            let mut columns = Vec::new();
            while let Some(column) = seq.next_element_seed(One)? {
                columns.push(column);
            }
            Ok(columns)
        }
    }
    d.deserialize_seq(Columns)
}

#[cfg(test)]
mod tests {
    use super::parse_values;

    #[test]
    fn values_parse_like_u64_from_str() {
        for text in [
            "",
            "0",
            "12,0,,7",
            ",",
            "18446744073709551615,18446744073709551616",
            "1a,-1,+5, 3,007",
            ",,9,",
        ] {
            let want: Vec<Option<u64>> = text
                .split(',')
                .map(|v| v.parse().ok().filter(|_| !v.starts_with('+')))
                .collect();
            assert_eq!(parse_values(text), want, "{text:?}");
        }
    }
}
