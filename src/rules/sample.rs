//! The previous run's counters, kept so that `delta()` and `rate()` can compare.
//!
//! Only the columns that rules pass to `delta()`/`rate()` are kept, plus the process
//! identity (`Pid`, `Start_time_sec`) that tells a reload apart from a counter going down.

use crate::stats::Snapshot;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Counters of one source at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Unix time (seconds) at which the dump was taken.
    pub taken_at: f64,
    /// `show info` Pid, when the source reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u64>,
    /// `show info` Start_time_sec, when the source reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<u64>,
    /// Names of the kept columns, in the order of each row's values.
    pub columns: Vec<String>,
    /// proxy → svname → one value per kept column (`None` when absent).
    pub rows: HashMap<String, HashMap<String, Vec<Option<u64>>>>,
}

impl Sample {
    /// Keeps `columns` of every row of `snapshot`.
    pub fn capture(snapshot: &Snapshot, columns: &[String], taken_at: f64) -> Sample {
        let stats = &snapshot.stats;
        let indices: Vec<Option<usize>> = columns.iter().map(|c| stats.columns().get(c)).collect();
        let mut rows: HashMap<String, HashMap<String, Vec<Option<u64>>>> = HashMap::new();
        if !columns.is_empty() {
            for row in stats.rows() {
                let values = indices.iter().map(|i| i.and_then(|i| row.u64(i))).collect();
                rows.entry(row.proxy().to_string())
                    .or_default()
                    .insert(row.name().to_string(), values);
            }
        }
        Sample {
            taken_at,
            pid: snapshot.info.as_ref().and_then(|i| i.pid()),
            start_time: snapshot.info.as_ref().and_then(|i| i.start_time_sec()),
            columns: columns.to_vec(),
            rows,
        }
    }

    /// True when `snapshot` comes from another HAProxy process than this sample (a reload
    /// or restart): every counter started again from zero.
    pub fn restarted_before(&self, snapshot: &Snapshot) -> bool {
        let Some(info) = &snapshot.info else {
            return false;
        };
        let differs =
            |old: Option<u64>, new: Option<u64>| matches!((old, new), (Some(a), Some(b)) if a != b);
        differs(self.pid, info.pid()) || differs(self.start_time, info.start_time_sec())
    }

    /// The kept values of one row.
    pub fn row(&self, proxy: &str, name: &str) -> Option<&[Option<u64>]> {
        self.rows.get(proxy)?.get(name).map(Vec::as_slice)
    }

    /// Index of `column` among the kept columns.
    pub fn column(&self, column: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == column)
    }
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
