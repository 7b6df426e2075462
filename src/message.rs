//! Plain-text rendering of a notification: a subject line and a body listing each alert.
//! Used for mail, for chat messages, and for stdout when no notifier is configured.

use crate::text::{format_time, one_line};
use crate::vocab::{Notice, Notification};
use std::fmt::Write;

/// `[FIRING:3] ServerDown app-main (lb1)`, `[RESOLVED:1] …`, `[FIRING:2, RESOLVED:1] …`;
/// when part of a group recovers while the rest fires, `[RESOLVED:1, STILL FIRING:1] …`.
pub fn subject(n: &Notification) -> String {
    let mut counts = Vec::new();
    if !n.firing.is_empty() {
        counts.push(format!("FIRING:{}", n.firing.len()));
    }
    if !n.resolved.is_empty() {
        counts.push(format!("RESOLVED:{}", n.resolved.len()));
    }
    if !n.still_firing.is_empty() {
        counts.push(format!(
            "STILL FIRING:{}",
            n.still_firing.len() + n.still_firing_more
        ));
    }
    let all: Vec<&Notice> = n
        .firing
        .iter()
        .chain(&n.resolved)
        .chain(&n.still_firing)
        .collect();
    let common = |label: &str| {
        let first = all.first()?.labels.get(label)?;
        all.iter()
            .all(|a| a.labels.get(label) == Some(first))
            .then_some(first.as_str())
    };
    let mut text = format!("[{}]", counts.join(", "));
    if n.digest {
        text.push_str(" hapwatch digest:");
        let mut names: Vec<&str> = all
            .iter()
            .filter_map(|a| a.labels.get("alertname").map(String::as_str))
            .collect();
        names.sort();
        names.dedup();
        text.push(' ');
        text.push_str(&names.join(", "));
    } else if let Some(name) = common("alertname") {
        text.push(' ');
        text.push_str(name);
    }
    if let Some(proxy) = common("proxy") {
        text.push(' ');
        text.push_str(proxy);
    }
    if let Some(source) = common("source") {
        text.push_str(&format!(" ({source})"));
    }
    one_line(&text)
}

/// The body: a FIRING section and a RESOLVED section, one entry per alert, then the
/// alerts of the group that fire still (announced before), so that a partial recovery
/// does not read as "all clear".
pub fn body(n: &Notification) -> String {
    let mut out = String::new();
    for (title, notices) in [
        ("FIRING", &n.firing),
        ("RESOLVED", &n.resolved),
        ("STILL FIRING", &n.still_firing),
    ] {
        if notices.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push('\n');
        }
        let more = if title == "STILL FIRING" {
            n.still_firing_more
        } else {
            0
        };
        let _ = writeln!(out, "{title} ({})", notices.len() + more);
        for notice in notices.iter() {
            let _ = writeln!(out, "{}", entry(notice));
        }
        if more > 0 {
            let _ = writeln!(out, "… and {more} more");
        }
    }
    out
}

fn entry(notice: &Notice) -> String {
    let label = |name: &str| notice.labels.get(name).map(String::as_str);
    let annotation = |name: &str| {
        notice
            .annotations
            .get(name)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    };
    let mut head = format!("- {}", label("alertname").unwrap_or("alert"));
    if let Some(row) = crate::alert::row_of(&notice.labels) {
        head.push(' ');
        head.push_str(&row);
    }
    if let Some(source) = label("source") {
        head.push_str(&format!(" on {source}"));
    }
    let mut facts = Vec::new();
    if let Some(status) = annotation("status") {
        facts.push(format!("status {status}"));
    }
    if let Some(check) = annotation("check_status") {
        facts.push(format!("check {check}"));
    }
    if let Some(value) = &notice.value {
        facts.push(format!("value {value}"));
    }
    // A resolved alert's annotations describe the problem as it was last seen: say so.
    let facts = match notice.ends_at {
        None => {
            facts.push(format!("since {}", format_time(notice.starts_at)));
            if notice.repeat {
                facts.push("still firing".into());
            }
            facts.join(", ")
        }
        Some(ends) => {
            let when = format!(
                "resolved {}, since {}",
                format_time(ends),
                format_time(notice.starts_at)
            );
            if facts.is_empty() {
                when
            } else {
                format!("{when}; it was: {}", facts.join(", "))
            }
        }
    };
    let mut text = format!("{}\n  {}", one_line(&head), one_line(&facts));
    if let Some(summary) = annotation("summary") {
        let was = if notice.ends_at.is_some() {
            "was: "
        } else {
            ""
        };
        text.push_str(&format!("\n  {was}{}", one_line(summary)));
    }
    if let Some(description) = annotation("description") {
        for line in description.lines() {
            text.push_str(&format!("\n  {line}"));
        }
    }
    text
}
