//! Windows longer than one run: `delta(col, 5m)`, `rate(col, 5m)`, `rises(col, 5m)`.
//!
//! Each run keeps a [`Sample`] of the columns that window functions read (and of those
//! only), and the state keeps per source the samples the longest window needs: the ones
//! younger than it, and the newest one older than it ([`record`]).
//!
//! What a window means, runs missed or not: its start is the newest stored sample at
//! least [`COVER`] of the window old (so that a timer firing a little early or late does
//! not push the start one whole run back). The value covers from that sample to now:
//! `delta` is the counter's increase over that span, `rate` that increase divided by the
//! span in seconds, `rises` the number of runs in it whose counter went up. The increase
//! is summed run by run and each step is reset-aware like `delta(col)`: a new `Pid` or
//! `Start_time_sec`, or a counter going down, counts from zero, so a reload inside the
//! window neither shows as a spike nor hides what came after it.
//!
//! The value is absent (so a comparison on it is false) while the window is not covered:
//! no sample old enough yet (the first runs, a row that appeared since, a new source), or
//! the start sample is more than [`STALE`] windows old because runs were missed for that
//! long. Computing over what exists instead would make `delta(stot, 5m) == 0` ("no
//! traffic for five minutes") true on the second run ever, and `delta(x, 5m) > 100` count
//! an hour of errors after the host slept: an absent value is never a false alarm. A
//! missed run or two inside the window only make the steps longer: the increase is the
//! same, `rate` divides by the real span, and `rises` counts the runs that happened.

use super::eval::{Env, Val};
use super::sample::{increase, Sample};
use crate::stats::{Info, Row};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;

/// A window starts at a sample at least this share of the window old.
pub const COVER: f64 = 0.9;

/// A window whose start sample is older than this many windows is not covered.
pub const STALE: f64 = 2.0;

/// The window functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Increase over the window.
    Delta,
    /// Increase per second over the window.
    Rate,
    /// Runs in the window whose counter went up.
    Rises,
}

impl Kind {
    /// The function named `name` (with a window argument), if it is one.
    pub fn parse(name: &str) -> Option<Kind> {
        match name {
            "delta" => Some(Kind::Delta),
            "rate" => Some(Kind::Rate),
            "rises" => Some(Kind::Rises),
            _ => None,
        }
    }
}

/// `delta(col, 5m)` and its kin, compiled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    /// Which function.
    pub kind: Kind,
    /// Column id of the counter.
    pub column: usize,
    /// The counter is a `show info` field (`DroppedLogs`, id of `info.DroppedLogs`): one
    /// value per sample, not one per row.
    pub info: bool,
    /// Window length in seconds.
    pub seconds: f64,
}

/// Per source, the window samples kept between runs, oldest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    /// The samples, oldest first.
    pub samples: Vec<Sample>,
}

/// Adds this run's `sample` to `history` and drops what no window of at most `longest`
/// seconds can need any more: samples older than [`STALE`] windows, all but the newest
/// sample older than the window, and samples from the future (a clock set back).
pub fn record(history: &mut History, sample: Sample, longest: f64) {
    let now = sample.taken_at;
    history.samples.retain(|s| s.taken_at < now);
    history.samples.push(sample);
    if longest <= 0.0 {
        history.samples.clear();
        return;
    }
    history
        .samples
        .retain(|s| now - s.taken_at <= STALE * longest);
    // Later runs are later: the newest sample that could start the longest window now
    // starts it then too, or a newer one does.
    if let Some(start) = history
        .samples
        .iter()
        .rposition(|s| now - s.taken_at >= COVER * longest)
    {
        history.samples.drain(..start);
    }
}

/// Index of the sample of `samples` (oldest first) that starts a window of `seconds` at
/// `now`, if one covers it.
fn start(samples: &[Sample], seconds: f64, now: f64) -> Option<usize> {
    let start = samples
        .iter()
        .rposition(|s| now - s.taken_at >= COVER * seconds)?;
    (now - samples[start].taken_at <= STALE * seconds).then_some(start)
}

/// True when `history` covers a window of `seconds` at `now` (its values are known
/// for rows that were there at its start).
pub fn covered(history: Option<&History>, seconds: f64, now: f64) -> bool {
    history.is_some_and(|h| start(&h.samples, seconds, now).is_some())
}

/// A source's history bound to the dump being evaluated.
pub struct Bound<'a> {
    samples: &'a [Sample],
    /// The rule set's column names, by id (`info.NAME` for `show info` fields).
    names: &'a [String],
    /// Per sample, the sample column of each column id.
    columns: Vec<Vec<Option<usize>>>,
    /// `restarts[k]`: the process restarted between samples k and k + 1; the last entry:
    /// between the newest sample and this dump.
    restarts: Vec<bool>,
    now: f64,
}

impl<'a> Bound<'a> {
    /// Binds `history` to a dump taken at `now` from the process `info` describes, with
    /// the rule set's column names.
    pub fn new(history: &'a History, names: &'a [String], info: Option<&Info>, now: f64) -> Self {
        let samples = &history.samples[..];
        let columns = samples
            .iter()
            .map(|s| names.iter().map(|n| s.column(n)).collect())
            .collect();
        let mut restarts: Vec<bool> = samples
            .windows(2)
            .map(|pair| restarted(&pair[0], &pair[1]))
            .collect();
        if let Some(last) = samples.last() {
            restarts.push(last.restarted_before_info(info));
        }
        Bound {
            samples,
            names,
            columns,
            restarts,
            now,
        }
    }

    /// Index of the sample that starts a window of `seconds`, if one covers it.
    fn start(&self, seconds: f64) -> Option<usize> {
        start(self.samples, seconds, self.now)
    }

    fn value(&self, sample: usize, window: &Window, row: &Row<'_>) -> Option<u64> {
        let (s, column) = (&self.samples[sample], window.column);
        if window.info {
            let field = self.names[column].strip_prefix(super::process::INFO)?;
            return s.prev.info.get(field)?.parse().ok();
        }
        let col = self.columns[sample].get(column).copied().flatten()?;
        let at = s.find(row.index(), row.proxy(), row.name())?;
        s.value(col, at)
    }
}

/// True when `b` comes from another HAProxy process than `a`.
fn restarted(a: &Sample, b: &Sample) -> bool {
    let differs =
        |old: Option<u64>, new: Option<u64>| matches!((old, new), (Some(x), Some(y)) if x != y);
    differs(a.pid, b.pid) || differs(a.start_time, b.start_time)
}

/// Evaluates `window` on `row`.
pub fn eval<'a>(window: &Window, row: &Row<'a>, env: &Env<'a>) -> Val<'a> {
    let Some(bound) = &env.windows else {
        return Val::Absent;
    };
    let current = if window.info {
        super::process::info_counter(env, window.column)
    } else {
        env.dump_columns[window.column]
            .and_then(|c| row.get(c))
            .and_then(|t| t.parse::<u64>().ok())
    };
    let Some(current) = current else {
        return Val::Absent;
    };
    let Some(start) = bound.start(window.seconds) else {
        return Val::Absent;
    };
    let Some(mut last) = bound.value(start, window, row) else {
        return Val::Absent;
    };
    let (mut total, mut rises, mut restarted) = (0u64, 0u64, false);
    let mut step = |last: &mut u64, value: u64, restarted: &mut bool| {
        let up = increase(*last, value, std::mem::take(restarted));
        total = total.saturating_add(up);
        rises += u64::from(up > 0);
        *last = value;
    };
    for k in start + 1..bound.samples.len() {
        restarted |= bound.restarts[k - 1];
        // A row missing from a sample (a server removed then added back) is skipped; the
        // next step spans it, restarted if the process did in between.
        if let Some(value) = bound.value(k, window, row) {
            step(&mut last, value, &mut restarted);
        }
    }
    restarted |= bound.restarts[bound.samples.len() - 1];
    step(&mut last, current, &mut restarted);
    let span = bound.now - bound.samples[start].taken_at;
    match window.kind {
        Kind::Delta => Val::Number(total as f64),
        Kind::Rises => Val::Number(rises as f64),
        Kind::Rate if span > 0.0 => Val::Number(total as f64 / span),
        Kind::Rate => Val::Absent,
    }
}

/// One stored sample: rows the same as the previous sample's are not written again
/// (HAProxy keeps its layout between runs), which keeps a window of six runs over a big
/// dump close to six columns of numbers.
#[derive(Serialize)]
struct StoredRef<'a> {
    taken_at: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pid: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    start_time: Option<u64>,
    columns: &'a [String],
    /// The `show info` counters that windows read (`DroppedLogs`), by name.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    info: &'a BTreeMap<String, String>,
    /// Absent: the same rows as the previous sample.
    #[serde(skip_serializing_if = "Option::is_none")]
    rows: Option<&'a str>,
    values: &'a [String],
}

#[derive(Deserialize)]
struct Stored {
    taken_at: f64,
    #[serde(default)]
    pid: Option<u64>,
    #[serde(default)]
    start_time: Option<u64>,
    columns: Vec<String>,
    #[serde(default)]
    info: BTreeMap<String, String>,
    #[serde(default)]
    rows: Option<String>,
    values: Vec<String>,
}

impl Serialize for History {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = serializer.serialize_seq(Some(self.samples.len()))?;
        let mut previous: Option<&str> = None;
        for s in &self.samples {
            let rows = Some(s.rows.as_str()).filter(|rows| previous != Some(*rows));
            seq.serialize_element(&StoredRef {
                taken_at: s.taken_at,
                pid: s.pid,
                start_time: s.start_time,
                columns: &s.columns,
                info: &s.prev.info,
                rows,
                values: &s.values,
            })?;
            previous = Some(&s.rows);
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for History {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<History, D::Error> {
        let stored = Vec::<Stored>::deserialize(deserializer)?;
        let mut samples: Vec<Sample> = Vec::with_capacity(stored.len());
        for s in stored {
            let rows = match s.rows {
                Some(rows) => rows,
                None => samples
                    .last()
                    .map(|p| p.rows.clone())
                    .ok_or_else(|| serde::de::Error::custom("the first sample has no rows"))?,
            };
            let mut sample =
                Sample::from_parts(s.taken_at, s.pid, s.start_time, s.columns, rows, s.values);
            sample.prev.info = s.info;
            samples.push(sample);
        }
        Ok(History { samples })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Stats;

    fn sample(at: f64, pid: u64, stot: &[u64]) -> Sample {
        let rows: String = (0..stot.len()).map(|i| format!("app/s{i}\n")).collect();
        let values = stot
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(",");
        Sample::from_parts(at, Some(pid), None, vec!["stot".into()], rows, vec![values])
    }

    fn dump(stot: u64) -> Stats {
        Stats::parse(
            format!("# pxname,svname,stot,type\napp,s0,{stot},2\napp,BACKEND,{stot},1\n").into(),
        )
        .unwrap()
    }

    fn window_value(
        history: &History,
        kind: Kind,
        seconds: f64,
        now: f64,
        stot: u64,
    ) -> Val<'static> {
        let stats = Box::leak(Box::new(dump(stot)));
        let names = vec!["stot".to_string()];
        let dump_columns = vec![stats.columns().get("stot")];
        let bound = Bound::new(history, &names, None, now);
        let labels = Box::leak(Box::default());
        let env = Env {
            source: "lb1",
            labels,
            dump_columns: &dump_columns,
            previous: None,
            parents: Default::default(),
            windows: Some(bound),
            process: Default::default(),
        };
        let window = Window {
            kind,
            column: 0,
            info: false,
            seconds,
        };
        let row = stats.row(0);
        match eval(&window, &row, &env) {
            Val::Number(n) => Val::Number(n),
            _ => Val::Absent,
        }
    }

    #[test]
    fn a_window_starts_at_the_newest_sample_old_enough_and_is_absent_until_covered() {
        let history = History {
            samples: vec![
                sample(0.0, 1, &[10]),
                sample(60.0, 1, &[15]),
                sample(120.0, 1, &[15]),
            ],
        };
        // At 180 s, a 2-minute window starts at 60 s (120 s old); a 3-minute one at 0 s.
        assert_eq!(
            window_value(&history, Kind::Delta, 120.0, 180.0, 25),
            Val::Number(10.0)
        );
        assert_eq!(
            window_value(&history, Kind::Delta, 180.0, 180.0, 25),
            Val::Number(15.0)
        );
        assert_eq!(
            window_value(&history, Kind::Rises, 180.0, 180.0, 25),
            Val::Number(2.0)
        );
        assert_eq!(
            window_value(&history, Kind::Rate, 180.0, 180.0, 25),
            Val::Number(15.0 / 180.0)
        );
        // 5 minutes: no sample 4.5 minutes old yet.
        assert_eq!(
            window_value(&history, Kind::Delta, 300.0, 180.0, 25),
            Val::Absent
        );
        // A start sample within 90% of the window counts (a timer firing early).
        assert_eq!(
            window_value(&history, Kind::Delta, 190.0, 180.0, 25),
            Val::Number(15.0)
        );
        // Runs missed for more than two windows: not covered.
        assert_eq!(
            window_value(&history, Kind::Delta, 60.0, 400.0, 25),
            Val::Absent
        );
    }

    #[test]
    fn a_reload_inside_the_window_counts_from_zero() {
        // 10 → 40 in the old process, then a new Pid whose counter is at 5, then 9.
        let history = History {
            samples: vec![
                sample(0.0, 1, &[10]),
                sample(60.0, 1, &[40]),
                sample(120.0, 2, &[5]),
            ],
        };
        assert_eq!(
            window_value(&history, Kind::Delta, 180.0, 180.0, 9),
            Val::Number(39.0)
        );
        assert_eq!(
            window_value(&history, Kind::Rises, 180.0, 180.0, 9),
            Val::Number(3.0)
        );
        // A counter going down without a new Pid is a reset too.
        let history = History {
            samples: vec![sample(0.0, 1, &[10]), sample(60.0, 1, &[3])],
        };
        assert_eq!(
            window_value(&history, Kind::Delta, 120.0, 120.0, 4),
            Val::Number(4.0)
        );
    }

    #[test]
    fn record_keeps_only_what_the_longest_window_needs() {
        let mut history = History::default();
        for minute in 0..10 {
            record(
                &mut history,
                sample(minute as f64 * 60.0, 1, &[minute]),
                300.0,
            );
        }
        let kept: Vec<f64> = history.samples.iter().map(|s| s.taken_at).collect();
        // At 540 s: 270 s old or younger, plus the newest sample at least 270 s old.
        assert_eq!(kept, [240.0, 300.0, 360.0, 420.0, 480.0, 540.0]);
        record(&mut history, sample(600.0, 1, &[0]), 0.0);
        assert!(history.samples.is_empty(), "no window: nothing kept");
    }

    #[test]
    fn stored_rows_are_written_once_per_layout_and_read_back() {
        let mut history = History {
            samples: vec![
                sample(0.0, 1, &[1, 2]),
                sample(60.0, 1, &[3, 4]),
                sample(120.0, 2, &[5]),
            ],
        };
        let json = serde_json::to_string(&history).unwrap();
        assert_eq!(json.matches("\"rows\"").count(), 2, "{json}");
        let back: History = serde_json::from_str(&json).unwrap();
        assert_eq!(back, history);
        history.samples.clear();
        let empty: History =
            serde_json::from_str(&serde_json::to_string(&history).unwrap()).unwrap();
        assert!(empty.samples.is_empty());
    }

    #[test]
    fn show_info_counters_are_stored_by_name_and_read_back() {
        let mut with_info = sample(0.0, 1, &[]);
        with_info
            .prev
            .info
            .insert("DroppedLogs".into(), "1336".into());
        let history = History {
            samples: vec![with_info, sample(60.0, 1, &[])],
        };
        let json = serde_json::to_string(&history).unwrap();
        assert_eq!(json.matches("\"info\"").count(), 1, "{json}");
        assert!(json.contains(r#""info":{"DroppedLogs":"1336"}"#), "{json}");
        let back: History = serde_json::from_str(&json).unwrap();
        assert_eq!(back, history);
    }
}
