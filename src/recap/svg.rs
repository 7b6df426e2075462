//! The timelines as SVG: one lane per backend and server, firing intervals coloured by
//! severity, silences shaded, flaps marked, a hover title on each bar. The HTML page embeds
//! [`lane`]s; `report --format svg` is [`image`], all lanes in one picture.

use crate::history::Incident;
use crate::recap::{span, Recap};
use crate::text::format_time;
use std::fmt::Write;

/// The lane's width in SVG units: a bar's x is its share of the period times this.
pub const LANE_WIDTH: f64 = 1000.0;

/// Colours, shared by the page's CSS and the standalone image.
pub const STYLE: &str = "\
.track{fill:#eef1f4}\
.bar{stroke:none}\
.sev-critical{fill:#c62828}\
.sev-warning{fill:#ef8f00}\
.sev-info{fill:#1e88e5}\
.sev-other{fill:#6d4c99}\
.silence{fill:#78909c;fill-opacity:.45}\
.inhibit{fill:#fff;fill-opacity:.55}\
.flapmark{fill:#111}\
.tick{stroke:#b0bec5;stroke-width:1}\
.label{font:12px sans-serif;fill:#222}\
.ticklabel{font:10px sans-serif;fill:#555}";

/// The class of a severity's colour.
pub fn severity_class(severity: &str) -> &'static str {
    match crate::recap::severity_rank(severity) {
        0 => "sev-critical",
        1 => "sev-warning",
        2 => "sev-info",
        _ => "sev-other",
    }
}

/// Escapes text for XML and HTML.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// What a bar's hover title says.
pub fn title(i: &Incident, until: f64) -> String {
    format!(
        "{} {} ({}): {} — {} to {}, {}{}",
        i.rule,
        crate::recap::row_key(i),
        if i.severity.is_empty() {
            "no severity"
        } else {
            &i.severity
        },
        i.summary,
        format_time(i.start),
        i.end
            .map_or_else(|| "still firing".to_string(), format_time),
        span(i.duration(until)),
        if i.flap { ", a flap" } else { "" }
    )
}

/// Writes the shapes of one lane (`x0` + `width` units wide, `y` to `y + height`).
fn shapes(out: &mut String, recap: &Recap, row: &str, x0: f64, width: f64, y: f64, height: f64) {
    let period = (recap.until - recap.since).max(1.0);
    let x = |t: f64| x0 + ((t - recap.since) / period).clamp(0.0, 1.0) * width;
    let _ = write!(
        out,
        r#"<rect class="track" x="{x0:.1}" y="{y:.1}" width="{width:.1}" height="{height:.1}"/>"#
    );
    let incidents: Vec<&Incident> = recap.incidents_of(row).collect();
    // Least severe first, so that a critical bar is drawn over a warning.
    let mut order = incidents.clone();
    order.sort_by_key(|i| std::cmp::Reverse(crate::recap::severity_rank(&i.severity)));
    for i in order {
        let a = x(i.start);
        let b = x(i.end.unwrap_or(recap.until));
        // At least 1.5 units: a one-minute blip in a week stays visible.
        let w = (b - a).max(1.5);
        let _ = write!(
            out,
            r#"<rect class="bar {}" x="{a:.2}" y="{y:.1}" width="{w:.2}" height="{height:.1}"><title>{}</title></rect>"#,
            severity_class(&i.severity),
            escape(&title(i, recap.until))
        );
    }
    for i in &incidents {
        for (start, end) in &i.silenced {
            let a = x(*start);
            let b = x(end.or(i.end).unwrap_or(recap.until));
            let _ = write!(
                out,
                r#"<rect class="silence" x="{a:.2}" y="{:.1}" width="{:.2}" height="{:.1}"><title>silenced from {} to {}</title></rect>"#,
                y + height * 0.55,
                (b - a).max(1.0),
                height * 0.45,
                format_time(*start),
                end.or(i.end)
                    .map_or_else(|| "the end".to_string(), format_time)
            );
        }
        // An inhibition pales the bar's upper part (a silence shades its lower part): the
        // problem was there, its notifications were held back by another alert's.
        for (start, end) in &i.inhibited {
            let a = x(*start);
            let b = x(end.or(i.end).unwrap_or(recap.until));
            let _ = write!(
                out,
                r#"<rect class="inhibit" x="{a:.2}" y="{y:.1}" width="{:.2}" height="{:.1}"><title>inhibited (by an [[inhibit]] entry) from {} to {}</title></rect>"#,
                (b - a).max(1.0),
                height * 0.45,
                format_time(*start),
                end.or(i.end)
                    .map_or_else(|| "the end".to_string(), format_time)
            );
        }
        if i.flap {
            let a = x(i.start);
            let _ = write!(
                out,
                r#"<rect class="flapmark" x="{:.2}" y="{y:.1}" width="2" height="{:.1}"><title>flap: {} fired again less than 30 min after it resolved</title></rect>"#,
                (a - 1.0).max(x0),
                height * 0.3,
                escape(&i.rule)
            );
        }
    }
}

/// One row's lane for the HTML page: stretched to the page's width.
pub fn lane(recap: &Recap, row: &str) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg class="lane" viewBox="0 0 {LANE_WIDTH} 20" preserveAspectRatio="none" role="img" aria-label="timeline of {}">"#,
        escape(row)
    );
    shapes(&mut out, recap, row, 0.0, LANE_WIDTH, 0.0, 20.0);
    out.push_str("</svg>");
    out
}

/// Tick marks for the period: days (or hours for a period of two days or less), as
/// `(unix time, label)`.
pub fn ticks(since: f64, until: f64) -> Vec<(f64, String)> {
    let period = until - since;
    // The smallest round step that gives at most ten ticks.
    const HOUR: f64 = 3600.0;
    let step = [
        HOUR,
        2.0 * HOUR,
        3.0 * HOUR,
        6.0 * HOUR,
        12.0 * HOUR,
        24.0 * HOUR,
        48.0 * HOUR,
        7.0 * 24.0 * HOUR,
        30.0 * 24.0 * HOUR,
    ]
    .into_iter()
    .find(|step| period / step <= 10.0)
    .unwrap_or(period / 10.0);
    let mut t = (since / step).ceil() * step;
    let mut out = Vec::new();
    while t <= until && out.len() < 40 {
        let label = chrono::DateTime::from_timestamp(t as i64, 0).map_or_else(String::new, |d| {
            if step < 86_400.0 {
                d.format("%m-%d %H:%M").to_string()
            } else {
                d.format("%a %m-%d").to_string()
            }
        });
        out.push((t, label));
        t += step;
    }
    out
}

/// All lanes in one standalone SVG image, with row names and time ticks.
pub fn image(recap: &Recap) -> String {
    const LABEL: f64 = 240.0;
    const WIDTH: f64 = 960.0;
    const ROW: f64 = 24.0;
    const TOP: f64 = 26.0;
    let height = TOP + ROW * recap.rows.len().max(1) as f64 + 8.0;
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{height}" viewBox="0 0 {w} {height}"><!-- {mark} --><title>{mark}: {} to {}</title><style>{STYLE}</style>"#,
        format_time(recap.since),
        format_time(recap.until),
        w = LABEL + WIDTH + 10.0,
        mark = crate::history::REPORT_MARK,
    );
    let period = (recap.until - recap.since).max(1.0);
    for (t, label) in ticks(recap.since, recap.until) {
        let x = LABEL + (t - recap.since) / period * WIDTH;
        let _ = write!(
            out,
            r#"<line class="tick" x1="{x:.1}" x2="{x:.1}" y1="16" y2="{:.1}"/><text class="ticklabel" x="{x:.1}" y="12" text-anchor="middle">{}</text>"#,
            height - 6.0,
            escape(&label)
        );
    }
    if recap.rows.is_empty() {
        let _ = write!(
            out,
            r#"<text class="label" x="{LABEL}" y="{}">no incidents in this period</text>"#,
            TOP + 16.0
        );
    }
    for (n, row) in recap.rows.iter().enumerate() {
        let y = TOP + ROW * n as f64;
        let _ = write!(
            out,
            r#"<text class="label" x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            LABEL - 8.0,
            y + 14.0,
            escape(&row.row)
        );
        shapes(&mut out, recap, &row.row, LABEL, WIDTH, y, ROW - 6.0);
    }
    out.push_str("</svg>\n");
    out
}
