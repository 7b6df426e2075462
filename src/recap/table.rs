//! `hapwatch history`: the transitions, newest last, then the incidents they form.

use crate::history::{Incident, Record};
use crate::recap::{row_key, span};
use crate::text::{format_time, one_line};
use std::io::{self, Write};

/// `proxy/server`, `proxy`, or `source NAME` for an alert about no row.
fn row_name(labels: &crate::alert::Labels) -> String {
    crate::alert::row_of(labels).unwrap_or_else(|| {
        format!(
            "source {}",
            labels.get("source").map_or("?", String::as_str)
        )
    })
}

/// Writes the transitions and incidents as two aligned tables.
pub fn write(
    out: &mut impl Write,
    records: &[&Record],
    incidents: &[Incident],
    until: f64,
    skipped: usize,
) -> io::Result<()> {
    if records.is_empty() {
        writeln!(out, "no transitions in this period")?;
    } else {
        let mut lines =
            vec![["TIME", "EVENT", "RULE", "ROW", "SEVERITY", "DETAIL"].map(String::from)];
        for r in records {
            let detail = match (&r.notifier, &r.error, &r.inhibited_by) {
                (Some(n), Some(e), _) => format!("{n}: {e}"),
                (Some(n), None, _) => n.clone(),
                _ if r.silenced => format!("{} (silenced)", r.summary),
                (None, _, Some(by)) => format!(
                    "{} (inhibited by {} {})",
                    r.summary,
                    by.get("alertname").map_or("?", String::as_str),
                    row_name(by)
                ),
                _ => r.summary.clone(),
            };
            lines.push([
                format_time(r.time),
                r.event.name().to_string(),
                r.labels.get("alertname").cloned().unwrap_or_default(),
                row_name(&r.labels),
                r.labels.get("severity").cloned().unwrap_or_default(),
                one_line(&detail),
            ]);
        }
        aligned(out, &lines)?;
    }
    writeln!(out)?;
    if incidents.is_empty() {
        writeln!(out, "no incidents in this period")?;
    } else {
        let mut lines = vec![[
            "START", "END", "DURATION", "RULE", "ROW", "SEVERITY", "SUMMARY",
        ]
        .map(String::from)];
        for i in incidents {
            lines.push([
                format_time(i.start),
                i.end.map_or_else(|| "(firing)".to_string(), format_time),
                format!(
                    "{}{}",
                    span(i.duration(until)),
                    if i.flap { " flap" } else { "" }
                ),
                i.rule.clone(),
                row_key(i),
                i.severity.clone(),
                one_line(&i.summary),
            ]);
        }
        aligned(out, &lines)?;
    }
    if skipped > 0 {
        writeln!(
            out,
            "\n({skipped} line{} of the history could not be read and {} skipped)",
            if skipped == 1 { "" } else { "s" },
            if skipped == 1 { "was" } else { "were" }
        )?;
    }
    Ok(())
}

/// The same as JSON: `{since, until, transitions, incidents, skipped}`, each incident with
/// its `duration` in seconds.
pub fn json(
    out: &mut impl Write,
    since: f64,
    until: f64,
    records: &[&Record],
    incidents: &[Incident],
    skipped: usize,
) -> io::Result<()> {
    let incidents: Vec<serde_json::Value> = incidents
        .iter()
        .map(|i| {
            let mut v = serde_json::to_value(i).expect("an incident serializes");
            v["duration"] = i.duration(until).into();
            v
        })
        .collect();
    let doc = serde_json::json!({
        "since": since,
        "until": until,
        "transitions": records,
        "incidents": incidents,
        "skipped": skipped,
    });
    serde_json::to_writer_pretty(&mut *out, &doc)?;
    writeln!(out)
}

fn aligned<const N: usize>(out: &mut impl Write, lines: &[[String; N]]) -> io::Result<()> {
    let mut widths = [0usize; N];
    for line in lines {
        for (w, cell) in widths.iter_mut().zip(line) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for line in lines {
        let mut text = String::new();
        for (i, cell) in line.iter().enumerate() {
            if i + 1 == N {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        writeln!(out, "{}", text.trim_end())?;
    }
    Ok(())
}
