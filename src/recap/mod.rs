//! What the history says about a period, for people: `hapwatch history` (transitions and
//! incidents as a table or JSON) and `hapwatch report` (a summary, a timeline and an
//! availability table per backend and server, as a self-contained HTML page, an SVG or
//! plain text for mail).
//!
//! [`Recap::new`] computes every figure once; the formats (`table`, `html`, `svg`, `text`)
//! only lay them out, so that the page, the image and the mail always agree.

pub mod html;
pub mod svg;
pub mod table;
pub mod text;

use crate::history::Incident;
use std::collections::BTreeMap;

/// How many rows and rules the summary names.
pub const TOP: usize = 5;

/// One backend, server or frontend (or a source, for alerts about no row) over the period.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RowStats {
    /// `proxy/server`, `proxy`, or `source NAME`.
    pub row: String,
    /// `server`, `backend`, `frontend`, `listener` or `source`.
    pub kind: String,
    /// Incidents that overlap the period.
    pub incidents: usize,
    /// Seconds in the period with at least one critical incident open (overlaps counted
    /// once): see [`counts_as_down`].
    pub downtime: f64,
    /// Share of the period without an incident, in percent.
    pub availability: f64,
    /// Mean time to recover of the incidents that ended in the period (seconds).
    pub mttr: Option<f64>,
    /// The longest incident (seconds; an open one counts up to the end of the period).
    pub longest: f64,
    /// Incidents that were flaps (see [`crate::history::FLAP_WINDOW`]).
    pub flaps: usize,
    /// The most severe severity seen (`critical` before `warning` before others).
    pub severity: String,
}

/// Everything a report shows.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Recap {
    /// Start of the period (Unix seconds).
    pub since: f64,
    /// End of the period.
    pub until: f64,
    /// Incidents that overlap the period, by start.
    pub incidents: Vec<Incident>,
    /// One entry per row with incidents, most downtime first.
    pub rows: Vec<RowStats>,
    /// Rules by incidents, most first.
    pub rules: Vec<(String, usize)>,
    /// Downtime summed over the rows (a backend down with its servers counts each).
    pub downtime: f64,
    /// Incidents that were flaps.
    pub flaps: usize,
    /// History lines that could not be read (a torn last line).
    pub skipped: usize,
}

/// Orders severities: critical first.
pub fn severity_rank(severity: &str) -> u8 {
    match severity {
        "critical" | "page" | "error" => 0,
        "warning" | "warn" => 1,
        "info" => 2,
        _ => 3,
    }
}

/// Whether an incident is an outage, counted in downtime and availability: a critical
/// one. A warning (sessions near a limit) is not an outage, and an info alert (a server
/// in maintenance, with a rule of severity `info`) is shown on the timeline, not counted.
pub fn counts_as_down(i: &Incident) -> bool {
    severity_rank(&i.severity) == 0
}

/// The row key of an incident.
pub fn row_key(i: &Incident) -> String {
    match &i.row {
        Some(row) => row.clone(),
        None => format!(
            "source {}",
            i.labels.get("source").map_or("?", String::as_str)
        ),
    }
}

fn row_kind(i: &Incident) -> String {
    match (&i.row, i.labels.get("type")) {
        (None, _) => "source".into(),
        (Some(_), Some(kind)) => kind.clone(),
        (Some(_), None) if i.labels.contains_key("server") => "server".into(),
        (Some(_), None) => "backend".into(),
    }
}

impl Recap {
    /// The recap of `incidents` (from [`crate::history::incidents`]) over `since..until`.
    pub fn new(incidents: Vec<Incident>, since: f64, until: f64, skipped: usize) -> Recap {
        let period = (until - since).max(1.0);
        let incidents: Vec<Incident> = incidents
            .into_iter()
            .filter(|i| i.start <= until && i.end.is_none_or(|end| end >= since))
            .collect();
        let mut by_row: BTreeMap<String, Vec<&Incident>> = BTreeMap::new();
        for i in &incidents {
            by_row.entry(row_key(i)).or_default().push(i);
        }
        let mut rows: Vec<RowStats> = by_row
            .into_iter()
            .map(|(row, list)| {
                let mut spans: Vec<(f64, f64)> = list
                    .iter()
                    .filter(|i| counts_as_down(i))
                    .map(|i| (i.start.max(since), i.end.unwrap_or(until).min(until)))
                    .filter(|(a, b)| b > a)
                    .collect();
                spans.sort_by(|a, b| a.0.total_cmp(&b.0));
                let mut downtime = 0.0;
                let mut current: Option<(f64, f64)> = None;
                for (a, b) in spans {
                    current = match current {
                        Some((ca, cb)) if a <= cb => Some((ca, cb.max(b))),
                        Some((ca, cb)) => {
                            downtime += cb - ca;
                            Some((a, b))
                        }
                        None => Some((a, b)),
                    };
                }
                if let Some((a, b)) = current {
                    downtime += b - a;
                }
                let recovered: Vec<f64> = list
                    .iter()
                    .filter(|i| i.end.is_some_and(|end| end <= until))
                    .map(|i| i.duration(until))
                    .collect();
                RowStats {
                    kind: row_kind(list[0]),
                    row,
                    incidents: list.len(),
                    downtime,
                    availability: 100.0 * (1.0 - downtime / period),
                    mttr: (!recovered.is_empty())
                        .then(|| recovered.iter().sum::<f64>() / recovered.len() as f64),
                    longest: list.iter().map(|i| i.duration(until)).fold(0.0, f64::max),
                    flaps: list.iter().filter(|i| i.flap).count(),
                    severity: list
                        .iter()
                        .map(|i| i.severity.as_str())
                        .min_by_key(|s| severity_rank(s))
                        .unwrap_or("")
                        .to_string(),
                }
            })
            .collect();
        rows.sort_by(|a, b| {
            b.downtime
                .total_cmp(&a.downtime)
                .then(b.incidents.cmp(&a.incidents))
                .then_with(|| a.row.cmp(&b.row))
        });
        let mut rules: Vec<(String, usize)> =
            crate::history::by_rule(&incidents).into_iter().collect();
        rules.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Recap {
            since,
            until,
            downtime: rows.iter().map(|r| r.downtime).sum(),
            flaps: incidents.iter().filter(|i| i.flap).count(),
            incidents,
            rows,
            rules,
            skipped,
        }
    }

    /// The incidents of one row.
    pub fn incidents_of<'a>(&'a self, row: &'a str) -> impl Iterator<Item = &'a Incident> + 'a {
        self.incidents.iter().filter(move |i| row_key(i) == row)
    }
}

/// A duration for people: `42s`, `5m12s`, `3h04m`, `12d3h`.
pub fn span(secs: f64) -> String {
    crate::duration::format_secs(secs.max(0.0).round() as u64)
}

/// An availability in percent with enough digits to tell 99.99 % from 100 %.
pub fn percent(value: f64) -> String {
    if value >= 100.0 {
        "100%".into()
    } else {
        format!("{:.3}%", (value * 1000.0).floor() / 1000.0)
    }
}
