//! `hapwatch report`: one self-contained HTML page. No scripts, no fonts, no network: the
//! CSS and the SVG timelines are inline, so the page opens from a mail attachment or a
//! file share, in a narrow window and on paper alike.

use crate::history::REPORT_MARK;
use crate::recap::svg::{escape, lane, severity_class, ticks, title, STYLE};
use crate::recap::{percent, row_key, span, Recap, TOP};
use crate::text::format_time;
use std::fmt::Write;

const CSS: &str = "\
:root{color-scheme:light}\
*{box-sizing:border-box}\
body{font:14px/1.4 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1c2430;margin:0 auto;padding:16px;max-width:1200px;background:#fff}\
h1{font-size:22px;margin:0 0 2px}\
h2{font-size:16px;margin:22px 0 8px;border-bottom:1px solid #dde3e8;padding-bottom:4px}\
.period{color:#56606b;margin:0 0 12px}\
.cards{display:flex;flex-wrap:wrap;gap:10px}\
.card{flex:1 1 150px;border:1px solid #dde3e8;border-radius:6px;padding:10px 12px;background:#f8fafb}\
.num{display:block;font-size:24px;font-weight:600}\
.lists{display:flex;flex-wrap:wrap;gap:10px 28px}\
.lists>div{flex:1 1 280px}\
ol{margin:4px 0;padding-left:22px}\
.legend{display:flex;flex-wrap:wrap;gap:6px 14px;font-size:12px;color:#56606b;margin-bottom:6px}\
.sw{display:inline-block;width:12px;height:10px;margin-right:4px;vertical-align:-1px}\
.sw.sev-critical{background:#c62828}.sw.sev-warning{background:#ef8f00}.sw.sev-info{background:#1e88e5}.sw.sev-other{background:#6d4c99}\
.sw.silence{background:#78909c;opacity:.6}.sw.inhibit{background:linear-gradient(#f0b4b4 45%,#c62828 45%)}.sw.flapmark{background:#111;width:3px}\
.lanes{display:grid;grid-template-columns:minmax(120px,230px) 1fr;gap:3px 10px;align-items:center}\
.name{font-size:12px;overflow-wrap:anywhere;text-align:right}\
.name small{color:#56606b}\
.axis{position:relative;height:16px;font-size:10px;color:#56606b}\
.axis span{position:absolute;transform:translateX(-50%);white-space:nowrap}\
svg.lane{display:block;width:100%;height:20px}\
.tablewrap{overflow-x:auto}\
table{border-collapse:collapse;width:100%;font-size:13px}\
th,td{padding:4px 8px;border-bottom:1px solid #e6ebef;text-align:left;vertical-align:top}\
th{background:#f3f6f8;font-weight:600}\
td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}td:first-child{white-space:nowrap}\
.sev{display:inline-block;width:8px;height:8px;border-radius:50%;margin-right:4px}\
.sev.sev-critical{background:#c62828}.sev.sev-warning{background:#ef8f00}.sev.sev-info{background:#1e88e5}.sev.sev-other{background:#6d4c99}\
footer{margin-top:24px;font-size:12px;color:#56606b}\
@media (max-width:640px){body{padding:10px}.lanes{grid-template-columns:1fr}.name{text-align:left;margin-top:6px}.axis-pad{display:none}.num{font-size:20px}}\
@media print{body{max-width:none;padding:0;font-size:11px}*{-webkit-print-color-adjust:exact;print-color-adjust:exact}section{break-inside:avoid-page}tr,.lanes>*{break-inside:avoid}.tablewrap{overflow:visible}}";

/// The whole page.
pub fn page(recap: &Recap, now: f64) -> String {
    let mut out = String::with_capacity(16 * 1024 + recap.incidents.len() * 600);
    let period = format!(
        "{} – {} ({})",
        format_time(recap.since),
        format_time(recap.until),
        span(recap.until - recap.since)
    );
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"generator\" content=\"{REPORT_MARK}\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>HAProxy incidents {}</title><style>{CSS}{}</style></head><body>",
        escape(&period),
        // The SVG classes, for the lanes inline in the page.
        STYLE
    );
    let _ = write!(
        out,
        "<header><h1>HAProxy incidents</h1><p class=\"period\">{}</p></header>",
        escape(&period)
    );

    // Summary.
    out.push_str("<section class=\"summary\"><h2>Summary</h2><div class=\"cards\">");
    let cards = [
        (
            "sum-incidents",
            recap.incidents.len().to_string(),
            "incidents",
        ),
        (
            "sum-downtime",
            span(recap.downtime),
            "downtime (critical, summed over rows)",
        ),
        (
            "sum-rows",
            recap.rows.len().to_string(),
            "backends and servers affected",
        ),
        ("sum-flaps", recap.flaps.to_string(), "flaps"),
    ];
    for (id, value, label) in cards {
        let _ = write!(
            out,
            "<div class=\"card\"><span class=\"num\" id=\"{id}\">{}</span>{label}</div>",
            escape(&value)
        );
    }
    out.push_str("</div><div class=\"lists\"><div><h2>Most affected</h2><ol id=\"most-affected\">");
    for row in recap.rows.iter().take(TOP) {
        let _ = write!(
            out,
            "<li>{} <small>({})</small>: {} down, {} incident{}, {} available</li>",
            escape(&row.row),
            escape(&row.kind),
            span(row.downtime),
            row.incidents,
            plural(row.incidents),
            percent(row.availability)
        );
    }
    if recap.rows.is_empty() {
        out.push_str("<li>none</li>");
    }
    out.push_str("</ol></div><div><h2>Noisiest rules</h2><ol id=\"noisiest-rules\">");
    for (rule, n) in recap.rules.iter().take(TOP) {
        let _ = write!(out, "<li>{}: {n} incident{}</li>", escape(rule), plural(*n));
    }
    if recap.rules.is_empty() {
        out.push_str("<li>none</li>");
    }
    out.push_str("</ol></div></div></section>");

    // Timelines.
    out.push_str("<section class=\"timelines\"><h2>Timeline</h2><div class=\"legend\">");
    for (class, label) in [
        ("sev-critical", "critical"),
        ("sev-warning", "warning"),
        ("sev-info", "info (e.g. maintenance)"),
        ("sev-other", "other"),
        ("silence", "silenced"),
        ("inhibit", "inhibited"),
        ("flapmark", "flap"),
    ] {
        let _ = write!(out, "<span><i class=\"sw {class}\"></i>{label}</span>");
    }
    out.push_str("</div>");
    if recap.rows.is_empty() {
        out.push_str("<p>No incidents in this period.</p>");
    } else {
        out.push_str("<div class=\"lanes\"><div class=\"axis-pad\"></div><div class=\"axis\">");
        let whole = (recap.until - recap.since).max(1.0);
        for (t, label) in ticks(recap.since, recap.until) {
            let _ = write!(
                out,
                "<span style=\"left:{:.2}%\">{}</span>",
                (t - recap.since) / whole * 100.0,
                escape(&label)
            );
        }
        out.push_str("</div>");
        for row in &recap.rows {
            let _ = write!(
                out,
                "<div class=\"name\">{} <small>{}</small></div>{}",
                escape(&row.row),
                escape(&row.kind),
                lane(recap, &row.row)
            );
        }
        out.push_str("</div>");
    }
    out.push_str("</section>");

    // Availability.
    out.push_str("<section><h2>Availability per backend and server</h2><div class=\"tablewrap\"><table id=\"availability\"><thead><tr><th>Row</th><th>Type</th><th>Incidents</th><th>Downtime</th><th>Availability</th><th>Mean time to recover</th><th>Longest</th><th>Flaps</th></tr></thead><tbody>");
    for row in &recap.rows {
        let _ = write!(
            out,
            "<tr><td><i class=\"sev {}\"></i>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            severity_class(&row.severity),
            escape(&row.row),
            escape(&row.kind),
            row.incidents,
            span(row.downtime),
            percent(row.availability),
            row.mttr.map_or_else(|| "–".to_string(), span),
            span(row.longest),
            row.flaps
        );
    }
    out.push_str("</tbody></table></div></section>");

    // Incidents.
    out.push_str("<section><h2>Incidents</h2><div class=\"tablewrap\"><table id=\"incidents\"><thead><tr><th>Start</th><th>End</th><th>Duration</th><th>Rule</th><th>Row</th><th>Summary</th></tr></thead><tbody>");
    for i in &recap.incidents {
        let _ = write!(
            out,
            "<tr title=\"{}\"><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}{}</td><td><i class=\"sev {}\"></i>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&title(i, recap.until)),
            format_time(i.start),
            i.end.map_or_else(|| "firing".to_string(), format_time),
            span(i.duration(recap.until)),
            if i.flap { " (flap)" } else { "" },
            severity_class(&i.severity),
            escape(&i.rule),
            escape(&row_key(i)),
            escape(&i.summary)
        );
    }
    out.push_str("</tbody></table></div></section>");
    let _ = writeln!(
        out,
        "<footer>Made by {REPORT_MARK} at {} from the history of transitions.{}</footer></body></html>",
        format_time(now),
        if recap.skipped > 0 {
            format!(
                " {} damaged history line{} skipped.",
                recap.skipped,
                plural(recap.skipped)
            )
        } else {
            String::new()
        }
    );
    out
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}
