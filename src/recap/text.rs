//! `hapwatch report --format text`: the page's figures as plain text, for mail; and what
//! `report --send` adds around it: the subject line and the webhook's JSON body.

use crate::history::REPORT_MARK;
use crate::recap::{percent, row_key, span, Recap, TOP};
use crate::text::{format_time, one_line, rfc3339};
use serde_json::{json, Value};
use std::fmt::Write;

/// The subject of a sent report: `hapwatch report 2026-11-26 – 2026-12-03: 15 incidents,
/// 3h12m down` (times with the minute unless both ends are midnight UTC).
pub fn subject(recap: &Recap) -> String {
    let midnight = |t: f64| t.rem_euclid(86_400.0) == 0.0;
    let when = |t: f64| {
        let full = format_time(t);
        if midnight(recap.since) && midnight(recap.until) {
            full[..10].to_string()
        } else {
            full[..16].to_string()
        }
    };
    let n = recap.incidents.len();
    format!(
        "{REPORT_MARK} {} – {} UTC: {n} incident{}, {} down",
        when(recap.since),
        when(recap.until),
        if n == 1 { "" } else { "s" },
        span(recap.downtime)
    )
}

/// The body a webhook notifier (format `hapwatch`) posts for a report: the figures as
/// numbers (durations in seconds, availability in percent), the subject, and the text
/// report. Version 1; documented in README.md ("Weekly report").
pub fn webhook(recap: &Recap, subject: &str, text: &str) -> Value {
    let rows: Vec<Value> = recap
        .rows
        .iter()
        .map(|r| {
            json!({
                "row": r.row,
                "type": r.kind,
                "incidents": r.incidents,
                "downtime_seconds": r.downtime,
                "availability_percent": r.availability,
                "mttr_seconds": r.mttr,
                "longest_seconds": r.longest,
                "flaps": r.flaps,
                "severity": r.severity,
            })
        })
        .collect();
    let rules: Vec<Value> = recap
        .rules
        .iter()
        .map(|(rule, n)| json!({"rule": rule, "incidents": n}))
        .collect();
    json!({
        "kind": "report",
        "version": "1",
        "since": rfc3339(recap.since),
        "until": rfc3339(recap.until),
        "subject": subject,
        "summary": {
            "incidents": recap.incidents.len(),
            "downtime_seconds": recap.downtime,
            "affected_rows": recap.rows.len(),
            "flaps": recap.flaps,
            "skipped_lines": recap.skipped,
        },
        "rows": rows,
        "rules": rules,
        "text": text,
    })
}

/// The report as text: summary, availability table, incidents.
pub fn report(recap: &Recap) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{REPORT_MARK}: HAProxy incidents {} – {} ({})\n",
        format_time(recap.since),
        format_time(recap.until),
        span(recap.until - recap.since)
    );
    let _ = writeln!(out, "Incidents:  {}", recap.incidents.len());
    let _ = writeln!(
        out,
        "Downtime:   {} (summed over rows)",
        span(recap.downtime)
    );
    let _ = writeln!(out, "Affected:   {} backends and servers", recap.rows.len());
    let _ = writeln!(out, "Flaps:      {}", recap.flaps);
    if !recap.rows.is_empty() {
        let _ = writeln!(out, "\nMost affected:");
        for row in recap.rows.iter().take(TOP) {
            let _ = writeln!(
                out,
                "  {} ({}): {} down, {} incident{}, {} available",
                row.row,
                row.kind,
                span(row.downtime),
                row.incidents,
                if row.incidents == 1 { "" } else { "s" },
                percent(row.availability)
            );
        }
        let _ = writeln!(out, "\nNoisiest rules:");
        for (rule, n) in recap.rules.iter().take(TOP) {
            let _ = writeln!(
                out,
                "  {rule}: {n} incident{}",
                if *n == 1 { "" } else { "s" }
            );
        }
        let _ = writeln!(out, "\nAvailability per backend and server:");
        let mut lines = vec![[
            "ROW",
            "TYPE",
            "INCIDENTS",
            "DOWNTIME",
            "AVAILABILITY",
            "MTTR",
            "LONGEST",
            "FLAPS",
        ]
        .map(String::from)];
        for row in &recap.rows {
            lines.push([
                row.row.clone(),
                row.kind.clone(),
                row.incidents.to_string(),
                span(row.downtime),
                percent(row.availability),
                row.mttr.map_or_else(|| "-".to_string(), span),
                span(row.longest),
                row.flaps.to_string(),
            ]);
        }
        aligned(&mut out, &lines);
        let _ = writeln!(out, "\nIncidents:");
        for i in &recap.incidents {
            let _ = writeln!(
                out,
                "  {} – {}  {}{}  {} {} [{}] {}",
                format_time(i.start),
                i.end.map_or_else(|| "firing".to_string(), format_time),
                span(i.duration(recap.until)),
                if i.flap { " (flap)" } else { "" },
                i.rule,
                row_key(i),
                i.severity,
                one_line(&i.summary)
            );
        }
    } else {
        let _ = writeln!(out, "\nNo incidents in this period.");
    }
    if recap.skipped > 0 {
        let _ = writeln!(out, "\n{} damaged history lines skipped.", recap.skipped);
    }
    out
}

fn aligned<const N: usize>(out: &mut String, lines: &[[String; N]]) {
    let mut widths = [0usize; N];
    for line in lines {
        for (w, cell) in widths.iter_mut().zip(line) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for line in lines {
        let mut text = String::from("  ");
        for (i, cell) in line.iter().enumerate() {
            // Text left, figures right.
            if i < 2 {
                let _ = write!(text, "{cell:<w$}  ", w = widths[i]);
            } else {
                let _ = write!(text, "{cell:>w$}  ", w = widths[i]);
            }
        }
        let _ = writeln!(out, "{}", text.trim_end());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_subject_names_days_when_the_period_is_whole_days_and_minutes_otherwise() {
        // 2026-11-26 00:00 UTC to 2026-12-03 00:00 UTC.
        let week = Recap::new(Vec::new(), 1_795_651_200.0, 1_796_256_000.0, 0);
        assert_eq!(
            subject(&week),
            "hapwatch report 2026-11-26 – 2026-12-03 UTC: 0 incidents, 0s down"
        );
        let hours = Recap::new(Vec::new(), 1_795_651_200.0 + 5400.0, 1_796_256_000.0, 0);
        assert_eq!(
            subject(&hours),
            "hapwatch report 2026-11-26 01:30 – 2026-12-03 00:00 UTC: 0 incidents, 0s down"
        );
    }
}
