//! Rendering snapshots for people (aligned tables) and scripts (JSON, CSV).

use crate::duration::format_secs;
use crate::scope::Scope;
use crate::stats::{columns, Row, Snapshot, Stats};
use crate::text::format_time;
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use std::io::{self, Write};

/// A source's snapshot with its name, ready to render.
pub struct Named<'a> {
    /// The source's name.
    pub name: &'a str,
    /// What it reported.
    pub snapshot: &'a Snapshot,
}

/// Writes an aligned table of the selected rows, with a SOURCE column if `with_source`.
pub fn table(
    out: &mut impl Write,
    sources: &[Named<'_>],
    scope: &Scope,
    with_source: bool,
) -> io::Result<()> {
    let mut lines: Vec<[String; 9]> = vec![[
        "SOURCE", "PROXY", "NAME", "TYPE", "STATUS", "SESS", "RATE", "CHECK", "LASTCHG",
    ]
    .map(String::from)];
    for named in sources {
        let stats = &named.snapshot.stats;
        let col = |name| stats.columns().get(name);
        let (scur, slim, rate, lastchg) = (col("scur"), col("slim"), col("rate"), col("lastchg"));
        let (check, code) = (col("check_status"), col("check_code"));
        for row in stats.rows().filter(|r| scope.matches(r)) {
            let sess = match (field(&row, scur), field(&row, slim)) {
                (Some(cur), Some(lim)) => format!("{cur}/{lim}"),
                (Some(cur), None) => cur.to_string(),
                _ => "-".into(),
            };
            let check = match (field(&row, check), field(&row, code)) {
                (Some(st), Some(code)) => format!("{st}/{code}"),
                (Some(st), None) => st.to_string(),
                _ => "-".into(),
            };
            let lastchg = lastchg
                .and_then(|c| row.u64(c))
                .map_or("-".into(), format_secs);
            lines.push([
                named.name.to_string(),
                row.proxy().to_string(),
                row.name().to_string(),
                row.kind().to_string(),
                Some(row.status())
                    .filter(|s| !s.is_empty())
                    .unwrap_or("-")
                    .to_string(),
                sess,
                field(&row, rate).unwrap_or("-").to_string(),
                check,
                lastchg,
            ]);
        }
    }
    write_aligned(out, &lines, usize::from(!with_source))
}

/// Writes `lines` as left-aligned columns, skipping the first `skip` columns; the last
/// column is not padded.
fn write_aligned<const N: usize>(
    out: &mut impl Write,
    lines: &[[String; N]],
    skip: usize,
) -> io::Result<()> {
    let mut widths = [0usize; N];
    for line in lines {
        for (w, cell) in widths.iter_mut().zip(line) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for line in lines {
        let mut text = String::new();
        for (i, cell) in line.iter().enumerate().skip(skip) {
            if i + 1 == N {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        writeln!(out, "{}", text.trim_end())?;
    }
    Ok(())
}

fn field<'a>(row: &Row<'a>, col: Option<usize>) -> Option<&'a str> {
    col.and_then(|c| row.get(c))
}

/// Writes one JSON document: `{"sources": [{"name", "info", "rows": [...]}, ...]}`, with
/// failed sources as `{"name", "error"}`. Rows are streamed, never held as JSON values.
pub fn json(
    out: &mut impl Write,
    sources: &[Result<Named<'_>, (&str, String)>],
    scope: &Scope,
) -> io::Result<()> {
    out.write_all(b"{\"sources\":[")?;
    for (i, source) in sources.iter().enumerate() {
        if i > 0 {
            out.write_all(b",")?;
        }
        match source {
            Ok(named) => {
                out.write_all(b"{\"name\":")?;
                serde_json::to_writer(&mut *out, named.name)?;
                out.write_all(b",\"info\":")?;
                serde_json::to_writer(&mut *out, &named.snapshot.info.as_ref().map(InfoJson))?;
                out.write_all(b",\"rows\":[")?;
                let stats = &named.snapshot.stats;
                let text = text_columns(stats);
                let mut first = true;
                for row in stats.rows().filter(|r| scope.matches(r)) {
                    if !first {
                        out.write_all(b",")?;
                    }
                    first = false;
                    serde_json::to_writer(&mut *out, &RowJson { row, text: &text })?;
                }
                out.write_all(b"]}")?;
            }
            Err((name, error)) => {
                serde_json::to_writer(
                    &mut *out,
                    &serde_json::json!({ "name": name, "error": error }),
                )?;
            }
        }
    }
    out.write_all(b"]}\n")
}

/// Writes the selected rows as HAProxy CSV (the header line, then each row as received),
/// which a `file` source reads back unchanged.
pub fn csv(out: &mut impl Write, snapshot: &Snapshot, scope: &Scope) -> io::Result<()> {
    let stats = &snapshot.stats;
    writeln!(out, "{}", stats.header_line())?;
    for row in stats.rows().filter(|r| scope.matches(r)) {
        writeln!(out, "{}", row.line())?;
    }
    Ok(())
}

fn text_columns(stats: &Stats) -> Vec<bool> {
    stats
        .columns()
        .names()
        .iter()
        .map(|n| columns::is_text(n))
        .collect()
}

struct InfoJson<'a>(&'a crate::stats::Info);

impl Serialize for InfoJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        for (key, value) in self.0.fields() {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

struct RowJson<'a> {
    row: Row<'a>,
    text: &'a [bool],
}

impl Serialize for RowJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let row = &self.row;
        let columns = row.columns();
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("kind", &row.kind())?;
        map.serialize_entry("state", &row.state())?;
        for (col, name) in columns.names().iter().enumerate() {
            if columns.is_separator(col) {
                continue;
            }
            // Empty means "not reported": leave the key out rather than invent a zero.
            let Some(value) = row.get(col) else { continue };
            if self.text[col] {
                map.serialize_entry(name, value)?;
            } else if let Ok(n) = value.parse::<u64>() {
                map.serialize_entry(name, &n)?;
            } else if let Ok(n) = value.parse::<i64>() {
                map.serialize_entry(name, &n)?;
            } else {
                map.serialize_entry(name, value)?;
            }
        }
        map.end()
    }
}

/// Writes one line per alert: rule, proxy, server, type, value, summary.
pub fn alerts_table(out: &mut impl Write, alerts: &[crate::alert::Alert]) -> io::Result<()> {
    if alerts.is_empty() {
        return writeln!(out, "no rule matches");
    }
    let mut lines: Vec<[String; 6]> =
        vec![["RULE", "PROXY", "SERVER", "TYPE", "VALUE", "SUMMARY"].map(String::from)];
    for alert in alerts {
        lines.push([
            alert.name().to_string(),
            alert.label("proxy").to_string(),
            Some(alert.label("server"))
                .filter(|s| !s.is_empty())
                .unwrap_or("-")
                .to_string(),
            alert.label("type").to_string(),
            alert
                .value
                .as_ref()
                .map_or("-".to_string(), ToString::to_string),
            alert
                .annotations
                .get("summary")
                .cloned()
                .unwrap_or_default(),
        ]);
    }
    write_aligned(out, &lines, 0)
}

/// A dry run for people: each active alert and where it moves, every notification, and
/// every message each notifier would send (secrets redacted).
pub fn dry_run(
    out: &mut impl Write,
    outcome: &crate::engine::Outcome,
    rendered: &[(String, Result<crate::notify::Message, String>)],
) -> io::Result<()> {
    use crate::state::Status;
    let status = |s: Option<Status>| match s {
        None => "-",
        Some(Status::Pending) => "pending",
        Some(Status::Firing) => "firing",
        Some(Status::Resolved) => "resolved",
    };
    writeln!(out, "Alerts ({} matching now):", outcome.active.len())?;
    let mut lines: Vec<[String; 6]> =
        vec![["RULE", "SOURCE", "ROW", "VALUE", "STATE", "SUMMARY"].map(String::from)];
    for t in &outcome.transitions {
        let alert = outcome.active.iter().find(|a| a.labels == t.labels);
        let row = crate::alert::row_of(&t.labels).unwrap_or_else(|| "-".into());
        let mut moved = format!("{} -> {}", status(t.from), status(t.to));
        if t.silenced {
            moved.push_str(" (silenced)");
        }
        if let Some(by) = &t.inhibited_by {
            moved.push_str(&format!(
                " (inhibited by {} {})",
                by.get("alertname").map_or("", String::as_str),
                crate::alert::row_of(by)
                    .or_else(|| by.get("source").cloned())
                    .unwrap_or_default()
            ));
        }
        lines.push([
            t.labels.get("alertname").cloned().unwrap_or_default(),
            t.labels.get("source").cloned().unwrap_or_default(),
            row,
            alert
                .and_then(|a| a.value.as_ref())
                .map_or("-".into(), ToString::to_string),
            moved,
            alert
                .and_then(|a| a.annotations.get("summary"))
                .cloned()
                .unwrap_or_default(),
        ]);
    }
    write_aligned(out, &lines, 0)?;
    writeln!(out, "\nNotifications ({}):", outcome.notifications.len())?;
    for n in &outcome.notifications {
        writeln!(
            out,
            "--- to {}",
            if n.receivers.is_empty() {
                "the default route".to_string()
            } else {
                n.receivers.join(", ")
            }
        )?;
        writeln!(out, "{}", crate::message::subject(n))?;
        write!(out, "{}", crate::message::body(n))?;
    }
    if !rendered.is_empty() {
        writeln!(out, "\nMessages ({}):", rendered.len())?;
    }
    for (notifier, message) in rendered {
        match message {
            Ok(crate::notify::Message::Mail(mail)) => {
                writeln!(out, "--- notifier {notifier}: mail")?;
                writeln!(out, "From: {}", mail.from)?;
                writeln!(out, "To: {}", mail.to.join(", "))?;
                if !mail.cc.is_empty() {
                    writeln!(out, "Cc: {}", mail.cc.join(", "))?;
                }
                writeln!(out, "Subject: {}", mail.subject)?;
                writeln!(out, "Message-ID: {}", mail.message_id)?;
                if !mail.references.is_empty() {
                    writeln!(out, "References: {}", mail.references.join(" "))?;
                }
                writeln!(out)?;
                write!(out, "{}", mail.body)?;
            }
            Ok(crate::notify::Message::Http(request)) => {
                writeln!(
                    out,
                    "--- notifier {notifier}: {} {}",
                    request.method,
                    crate::secret::redact(&request.urls.join(" | "))
                )?;
                for (name, value, secret) in &request.headers {
                    writeln!(
                        out,
                        "{name}: {}",
                        if *secret { "[redacted]" } else { value }
                    )?;
                }
                writeln!(out)?;
                match serde_json::from_slice::<serde_json::Value>(&request.body) {
                    Ok(json) => writeln!(
                        out,
                        "{}",
                        serde_json::to_string_pretty(&json).unwrap_or_default()
                    )?,
                    Err(_) => writeln!(out, "{}", String::from_utf8_lossy(&request.body))?,
                }
            }
            Ok(crate::notify::Message::Text(text)) => {
                writeln!(out, "--- notifier {notifier}: stdout")?;
                write!(out, "{text}")?;
            }
            Err(e) => writeln!(
                out,
                "--- notifier {notifier}: cannot render: {}",
                crate::secret::redact(e)
            )?,
        }
    }
    Ok(())
}

/// A dry run as one JSON document: active alerts, transitions, notifications, and the
/// deliveries planned per notifier.
pub fn dry_run_json(
    out: &mut impl Write,
    outcome: &crate::engine::Outcome,
    planned: &[(String, crate::vocab::Payload)],
) -> io::Result<()> {
    let deliveries: Vec<serde_json::Value> = planned
        .iter()
        .map(|(notifier, payload)| serde_json::json!({ "notifier": notifier, "payload": payload }))
        .collect();
    serde_json::to_writer_pretty(
        &mut *out,
        &serde_json::json!({
            "alerts": outcome.active,
            "transitions": outcome.transitions,
            "notifications": outcome.notifications,
            "deliveries": deliveries,
        }),
    )?;
    writeln!(out)
}

/// Active silences: id, matchers, time left, comment; then the config's
/// `[[recurring_silence]]`s, each with whether it holds now and when it next starts (or,
/// holding now, ends).
pub fn silences(
    out: &mut impl Write,
    silences: &[crate::silence::Silence],
    recurring: &[crate::silence::RecurringSilence],
    now: f64,
) -> io::Result<()> {
    active_silences(out, silences, now)?;
    if recurring.is_empty() {
        return Ok(());
    }
    writeln!(
        out,
        "\nrecurring silences ([[recurring_silence]] in the config):"
    )?;
    let mut lines: Vec<[String; 6]> = vec![[
        "LINE",
        "MATCHERS",
        "TIME INTERVALS",
        "NOW",
        "NEXT START",
        "COMMENT",
    ]
    .map(String::from)];
    let when = |t: Option<f64>| t.map_or_else(|| "none within 4 years".to_string(), format_time);
    for r in recurring {
        let matchers: Vec<String> = r.matchers.iter().map(ToString::to_string).collect();
        let now_text = if r.active(now) {
            match r.next_change(now, false) {
                Some(end) => format!("active until {}", format_time(end)),
                None => "active (no end within 4 years)".to_string(),
            }
        } else {
            "inactive".to_string()
        };
        lines.push([
            r.line.to_string(),
            matchers.join(" "),
            r.interval_names(),
            now_text,
            when(r.next_change(now, true)),
            r.comment.clone(),
        ]);
    }
    write_aligned(out, &lines, 0)
}

fn active_silences(
    out: &mut impl Write,
    silences: &[crate::silence::Silence],
    now: f64,
) -> io::Result<()> {
    if silences.is_empty() {
        return writeln!(out, "no active silences");
    }
    let mut lines: Vec<[String; 5]> =
        vec![["ID", "MATCHERS", "ENDS IN", "BY", "COMMENT"].map(String::from)];
    for s in silences {
        let matchers: Vec<String> = s.matchers.iter().map(ToString::to_string).collect();
        lines.push([
            s.id.clone(),
            matchers.join(" "),
            format_secs((s.ends_at - now).max(0.0) as u64),
            s.created_by.clone(),
            s.comment.clone(),
        ]);
    }
    // Silences made before `created_by` was always filled have none: no empty column.
    if silences.iter().all(|s| s.created_by.is_empty()) {
        let lines: Vec<[String; 4]> = lines
            .into_iter()
            .map(|[id, m, ends, _, comment]| [id, m, ends, comment])
            .collect();
        return write_aligned(out, &lines, 0);
    }
    write_aligned(out, &lines, 0)
}

/// The alerts a state remembers, one line each (a firing or pending one under an active
/// silence says `silenced (ID)`, under a `[[recurring_silence]]` of `recurring` that holds
/// now `silenced by recurring silence at line N (INTERVALS) until TIME`), then the
/// notifications waiting in the outbox.
pub fn state(
    out: &mut impl Write,
    state: &crate::state::State,
    recurring: &[crate::silence::RecurringSilence],
    now: f64,
) -> io::Result<()> {
    if let Some(config) = &state.config {
        writeln!(out, "config: {config}")?;
    }
    if let Some(at) = state.last_run {
        writeln!(out, "last run: {}", crate::text::format_time(at))?;
    }
    if state.alerts.is_empty() {
        writeln!(out, "no alerts remembered")?;
    } else {
        // Once per recurring silence that holds now, not once per alert it holds.
        let holding: Vec<(&crate::silence::RecurringSilence, String)> = recurring
            .iter()
            .filter(|r| r.active(now))
            .map(|r| {
                let until = r
                    .next_change(now, false)
                    .map(|end| format!(" until {}", format_time(end)))
                    .unwrap_or_default();
                (r, format!(", silenced by {}{until}", r.name()))
            })
            .collect();
        let mut lines: Vec<[String; 5]> =
            vec![["FINGERPRINT", "STATUS", "SINCE", "ALERT", "LABELS"].map(String::from)];
        for (fingerprint, a) in &state.alerts {
            let others: crate::alert::Labels = a
                .labels
                .iter()
                .filter(|(k, _)| k.as_str() != "alertname")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let mut status = format!("{:?}", a.status).to_lowercase();
            if a.status != crate::state::Status::Resolved {
                if let Some(silence) = state.silences.iter().find(|s| s.silences(&a.labels, now)) {
                    status.push_str(&format!(", silenced ({})", silence.id));
                }
                for (_, text) in holding.iter().filter(|(r, _)| r.silences(&a.labels, now)) {
                    status.push_str(text);
                }
                // The inhibiting alert by its fingerprint, the first column of its line.
                if let Some(by) = &a.inhibited_by {
                    status.push_str(&format!(", inhibited by {by}"));
                }
            }
            lines.push([
                fingerprint.clone(),
                status,
                crate::text::format_time(
                    a.resolved_at.or(a.firing_since).unwrap_or(a.active_since),
                ),
                a.labels.get("alertname").cloned().unwrap_or_default(),
                crate::engine::format_labels(&others),
            ]);
        }
        write_aligned(out, &lines, 0)?;
    }
    if !state.refused.is_empty() {
        writeln!(
            out,
            "\nrefused for good (dropped, not retried; the last {}):",
            state.refused.len()
        )?;
        let mut lines: Vec<[String; 4]> =
            vec![["NOTIFIER", "WHEN", "WHAT", "ANSWER"].map(String::from)];
        for r in &state.refused {
            lines.push([
                r.notifier.clone(),
                crate::text::format_time(r.at),
                crate::text::one_line(&r.what),
                crate::text::one_line(&r.error),
            ]);
        }
        write_aligned(out, &lines, 0)?;
    }
    if state.outbox.is_empty() {
        return Ok(());
    }
    writeln!(out, "\noutbox: {} waiting", state.outbox.len())?;
    let mut lines: Vec<[String; 6]> = vec![[
        "NOTIFIER",
        "QUEUED",
        "ATTEMPTS",
        "NEXT",
        "WHAT",
        "LAST ERROR",
    ]
    .map(String::from)];
    for item in &state.outbox {
        let what = match &item.payload {
            crate::vocab::Payload::Notification(n) => format!(
                "{} firing, {} resolved {}",
                n.firing.len(),
                n.resolved.len(),
                n.group_key
            ),
            crate::vocab::Payload::Alertmanager { alerts, .. } => {
                format!("{} alerts for Alertmanager", alerts.len())
            }
        };
        lines.push([
            item.notifier.clone(),
            format!(
                "{} ago",
                format_secs((now - item.created_at).max(0.0) as u64)
            ),
            item.attempts.to_string(),
            if item.next_attempt <= now {
                "now".to_string()
            } else {
                format!("in {}", format_secs((item.next_attempt - now) as u64))
            },
            what,
            crate::text::one_line(&item.last_error),
        ]);
    }
    write_aligned(out, &lines, 0)
}

/// The `-v` line that sums up a run: sources, alerts, notifications, outbox, time.
pub fn run_summary(outcome: &crate::run::Outcome) -> String {
    format!(
        "run: {} sources ({} unreachable), {} alerts firing, {} pending, {} notifications planned, {} sent, {} in the outbox, {:.1} ms",
        outcome.sources,
        outcome.unreachable,
        outcome.firing.len(),
        outcome.pending,
        outcome.step.notifications.len(),
        outcome.sent,
        outcome.outbox,
        outcome.elapsed.as_secs_f64() * 1000.0
    )
}

/// `hapwatch run --nagios`: one plugin status line (at most five alerts named, with
/// perfdata); returns the status it printed (critical if a critical alert fires, warning
/// if any other does).
pub fn nagios_run(
    out: &mut impl Write,
    outcome: &crate::run::Outcome,
) -> io::Result<crate::error::Nagios> {
    use crate::error::Nagios;
    let firing = &outcome.firing;
    let status = firing
        .iter()
        .map(|labels| {
            if labels.get("severity").is_some_and(|s| s == "critical") {
                Nagios::Critical
            } else {
                Nagios::Warning
            }
        })
        .max()
        .unwrap_or(Nagios::Ok);
    let names: Vec<String> = firing.iter().take(5).map(describe_alert).collect();
    let more = if firing.len() > 5 { ", …" } else { "" };
    let summary = if firing.is_empty() {
        "no alert firing".to_string()
    } else {
        format!("{} firing: {}{more}", firing.len(), names.join(", "))
    };
    writeln!(
        out,
        "HAPWATCH {} - {summary} | firing={};;;0 pending={};;;0 unreachable={};;;0 time={:.3}s",
        status.label(),
        firing.len(),
        outcome.pending,
        outcome.unreachable,
        outcome.elapsed.as_secs_f64()
    )?;
    Ok(status)
}

/// One route an alert reaches, for `hapwatch route`.
pub struct RouteLine {
    /// `route 1 (team=payments)`, `default route`, `rule X's notify`.
    pub route: String,
    /// The notifiers it goes to.
    pub notifiers: Vec<String>,
    /// How its alerts are grouped.
    pub group_by: Vec<String>,
    /// How often it repeats a firing alert.
    pub repeat_interval: std::time::Duration,
    /// Why it sends nothing at the time asked about (a mute or active time interval).
    pub muted: Option<String>,
}

/// `hapwatch route`: one line per route reached, `→ notifiers` and its grouping.
/// Then one line per recurring silence that holds back the alert at that time.
pub fn routes(out: &mut impl Write, lines: &[RouteLine], silenced: &[String]) -> io::Result<()> {
    for line in lines {
        writeln!(
            out,
            "{} → {} (group_by {}; repeat_interval {})",
            line.route,
            if line.notifiers.is_empty() {
                "no notifier".to_string()
            } else {
                line.notifiers.join(", ")
            },
            if line.group_by.is_empty() {
                "nothing".to_string()
            } else {
                line.group_by.join(", ")
            },
            format_secs(line.repeat_interval.as_secs())
        )?;
        if let Some(muted) = &line.muted {
            writeln!(out, "  {muted}")?;
        }
    }
    for line in silenced {
        writeln!(out, "silenced by {line}")?;
    }
    Ok(())
}

/// `hapwatch check --nagios`: one plugin status line over the sources read (`failed`: each
/// source that could not be read, and why); returns the status it printed.
pub fn nagios_check(
    out: &mut impl Write,
    failed: &[(&str, String)],
    sources: usize,
    rows: usize,
    elapsed: std::time::Duration,
) -> io::Result<crate::error::Nagios> {
    use crate::error::Nagios;
    let (status, summary) = if failed.is_empty() {
        (
            Nagios::Ok,
            format!("{} read, {rows} rows", plural(sources, "source")),
        )
    } else {
        let lines: Vec<String> = failed
            .iter()
            .map(|(name, e)| crate::secret::redact(&format!("source {name}: {e}")))
            .collect();
        (Nagios::Critical, lines.join("; "))
    };
    writeln!(
        out,
        "HAPWATCH {} - {} | sources={sources};;;0 unreachable={};;;0 rows={rows};;;0 time={:.3}s",
        status.label(),
        crate::text::one_line(&summary),
        failed.len(),
        elapsed.as_secs_f64()
    )?;
    Ok(status)
}

/// `ServerDown app-main/web3 (lb1)`.
pub fn describe_alert(labels: &crate::alert::Labels) -> String {
    let get = |k: &str| labels.get(k).map_or("", String::as_str);
    let row = crate::alert::row_of(labels).map_or_else(String::new, |r| format!(" {r}"));
    crate::text::one_line(&format!("{}{row} ({})", get("alertname"), get("source")))
}

/// `3 sources`, `1 rule`.
pub fn plural(n: usize, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

/// The first line of `hapwatch check`: the config, whether it is usable, what it holds
/// (sources, rules, and `[[inhibit]]` entries when there are any: an included file that
/// silently lost its inhibitions would otherwise look the same).
pub fn check_header(
    out: &mut impl Write,
    path: &std::path::Path,
    secrets_missing: bool,
    sources: usize,
    rules: usize,
    inhibitions: usize,
) -> io::Result<()> {
    let inhibitions = if inhibitions == 0 {
        String::new()
    } else {
        format!(", {}", plural(inhibitions, "inhibit rule"))
    };
    writeln!(
        out,
        "{}: {} ({}, {}{inhibitions})",
        path.display(),
        if secrets_missing {
            "valid, but secrets are missing"
        } else {
            "OK"
        },
        plural(sources, "source"),
        plural(rules, "rule"),
    )
}

/// `hapwatch check --connect`: one line per source read (version, rows by type, time).
pub fn source_summary(
    out: &mut impl Write,
    name: &str,
    snapshot: &Snapshot,
    elapsed: std::time::Duration,
) -> io::Result<()> {
    use crate::stats::ProxyType;
    let count = |t: ProxyType| snapshot.stats.rows().filter(|r| r.kind() == t).count();
    let version = snapshot
        .info
        .as_ref()
        .and_then(|i| i.version())
        .map_or("version unknown (no show info)".to_string(), |v| {
            format!("HAProxy {v}")
        });
    writeln!(
        out,
        "source {name}: {version}, {} rows ({} frontends, {} backends, {} servers, {} listeners) in {:.1} ms",
        snapshot.stats.len(),
        count(ProxyType::Frontend),
        count(ProxyType::Backend),
        count(ProxyType::Server),
        count(ProxyType::Listener),
        elapsed.as_secs_f64() * 1000.0
    )
}

/// Any value as one pretty-printed JSON document and a newline (eval, silence list,
/// state show).
pub fn pretty_json(out: &mut impl Write, value: &impl Serialize) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value).map_err(io::Error::from)?;
    writeln!(out)
}

/// `hapwatch notify-test`: what was sent.
pub fn notify_test_sent(out: &mut impl Write, done: &str) -> io::Result<()> {
    writeln!(out, "sent: {done}")
}

/// `hapwatch test`: the closing count.
pub fn test_summary(out: &mut impl Write, passed: usize, failed: usize) -> io::Result<()> {
    writeln!(out, "{passed} passed, {failed} failed")
}

/// `hapwatch init`: what was written, where the socket came from, what to do next.
pub fn init_done(
    out: &mut impl Write,
    config_path: &std::path::Path,
    socket: &std::path::Path,
    found: &crate::init::Found,
    rules: &std::path::Path,
    rules_written: &Result<(), String>,
) -> io::Result<()> {
    use crate::init::Found;
    let rules_note = match rules_written {
        Ok(()) => format!("wrote {}", rules.display()),
        Err(e) => format!("kept {} ({e})", rules.display()),
    };
    let origin = match found {
        Found::Given => "as given".to_string(),
        Found::Config(cfg) => format!("from {}", cfg.display()),
        Found::Usual => "found in a usual location".to_string(),
        Found::Guess => {
            "not found: adjust `socket` to your haproxy.cfg's `stats socket`".to_string()
        }
    };
    writeln!(
        out,
        "wrote {} (socket {}, {origin}); {rules_note}",
        config_path.display(),
        socket.display()
    )?;
    writeln!(
        out,
        "next: hapwatch -c {} check --connect, then hapwatch -c {} run --dry-run",
        config_path.display(),
        config_path.display()
    )
}
