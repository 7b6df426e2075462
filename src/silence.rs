//! Silences: label matchers with an expiry. A silenced alert keeps its lifecycle but
//! sends nothing.

use crate::alert::Labels;
use serde::{Deserialize, Serialize};
use std::fmt;
use wildmatch::WildMatch;

/// `label=value`, `label!=value`, `label=~glob`, `label!~glob`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Matcher {
    /// Label name.
    pub label: String,
    /// How to compare.
    pub op: MatchOp,
    /// Value or glob.
    pub value: String,
}

/// Matcher operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MatchOp {
    /// `=`: equal.
    #[serde(rename = "=")]
    Equal,
    /// `!=`: not equal (a missing label counts as empty).
    #[serde(rename = "!=")]
    NotEqual,
    /// `=~`: glob match (`*`, `?`).
    #[serde(rename = "=~")]
    Glob,
    /// `!~`: glob does not match.
    #[serde(rename = "!~")]
    NotGlob,
}

impl Matcher {
    /// Parses `proxy=app-main`, `server!=web1`, `proxy=~app-*`, `server!~web?`.
    pub fn parse(text: &str) -> Result<Matcher, String> {
        let ops = [
            ("=~", MatchOp::Glob),
            ("!~", MatchOp::NotGlob),
            ("!=", MatchOp::NotEqual),
            ("=", MatchOp::Equal),
        ];
        let Some((at, sym, op)) = ops
            .iter()
            .filter_map(|(sym, op)| text.find(sym).map(|at| (at, *sym, *op)))
            .min_by_key(|(at, sym, _)| (*at, std::cmp::Reverse(sym.len())))
        else {
            return Err(format!(
                "matcher {text:?}: expected LABEL=VALUE, LABEL!=VALUE, LABEL=~GLOB or LABEL!~GLOB"
            ));
        };
        let label = text[..at].trim();
        if label.is_empty() || !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "matcher {text:?}: the label name must be letters, digits or _"
            ));
        }
        Ok(Matcher {
            label: label.to_string(),
            op,
            value: text[at + sym.len()..].trim().to_string(),
        })
    }

    /// True when `labels` satisfy this matcher.
    pub fn matches(&self, labels: &Labels) -> bool {
        let actual = labels.get(&self.label).map_or("", String::as_str);
        match self.op {
            MatchOp::Equal => actual == self.value,
            MatchOp::NotEqual => actual != self.value,
            MatchOp::Glob => WildMatch::new(&self.value).matches(actual),
            MatchOp::NotGlob => !WildMatch::new(&self.value).matches(actual),
        }
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Glob => "=~",
            MatchOp::NotGlob => "!~",
        };
        write!(f, "{}{op}{}", self.label, self.value)
    }
}

/// A silence: all matchers must match, between `starts_at` and `ends_at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Silence {
    /// Short id, for `silence remove`.
    pub id: String,
    /// All must match.
    pub matchers: Vec<Matcher>,
    /// Unix time it starts.
    pub starts_at: f64,
    /// Unix time it ends.
    pub ends_at: f64,
    /// Why.
    #[serde(default)]
    pub comment: String,
    /// Who (the login that added it).
    #[serde(default)]
    pub created_by: String,
}

impl Silence {
    /// True when it silences `labels` at time `now`.
    pub fn silences(&self, labels: &Labels, now: f64) -> bool {
        self.starts_at <= now
            && now < self.ends_at
            && self.matchers.iter().all(|m| m.matches(labels))
    }

    /// True once it has ended.
    pub fn expired(&self, now: f64) -> bool {
        now >= self.ends_at
    }
}

/// A `[[recurring_silence]]`: matchers that silence alerts while the time is in one of
/// its time intervals (a backup window, nights, weekends). Part of the config, not of the
/// state: it holds back notifications the way a silence does.
#[derive(Debug, Clone)]
pub struct RecurringSilence {
    /// All must match.
    pub matchers: Vec<Matcher>,
    /// It holds while the time is in any of these.
    pub time_intervals: Vec<crate::timeinterval::TimeInterval>,
    /// Why (shown by `hapwatch route`).
    pub comment: String,
    /// Line of its entry in the config, for messages.
    pub line: usize,
}

impl RecurringSilence {
    /// True when it silences `labels` at time `now`.
    pub fn silences(&self, labels: &Labels, now: f64) -> bool {
        self.matchers.iter().all(|m| m.matches(labels))
            && self.time_intervals.iter().any(|t| t.contains(now))
    }

    /// The names of its time intervals, comma-separated.
    pub fn interval_names(&self) -> String {
        self.time_intervals
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Whether its time intervals hold at `now` (whatever the labels).
    pub fn active(&self, now: f64) -> bool {
        self.time_intervals.iter().any(|t| t.contains(now))
    }

    /// When it next starts to hold after `now` (`active = true`) or stops (`false`), to the
    /// minute, within four years; `None` if never.
    pub fn next_change(&self, now: f64, active: bool) -> Option<f64> {
        let intervals: Vec<&crate::timeinterval::TimeInterval> =
            self.time_intervals.iter().collect();
        crate::timeinterval::next_change(&intervals, now, active)
    }

    /// `recurring silence at line 45 (backup)`: how listings name it (it has no id).
    pub fn name(&self) -> String {
        format!(
            "recurring silence at line {} ({})",
            self.line,
            self.interval_names()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> Labels {
        [
            ("alertname", "ServerDown"),
            ("proxy", "app-main"),
            ("server", "web1"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .into()
    }

    #[test]
    fn parses_every_operator() {
        assert_eq!(Matcher::parse("proxy=app-main").unwrap().op, MatchOp::Equal);
        assert_eq!(
            Matcher::parse("server!=web1").unwrap().op,
            MatchOp::NotEqual
        );
        assert_eq!(Matcher::parse("proxy=~app-*").unwrap().op, MatchOp::Glob);
        assert_eq!(Matcher::parse("server!~web?").unwrap().op, MatchOp::NotGlob);
        assert_eq!(Matcher::parse("proxy=a=b").unwrap().value, "a=b");
        assert_eq!(Matcher::parse("server=").unwrap().value, "");
        assert!(Matcher::parse("proxy")
            .unwrap_err()
            .contains("expected LABEL=VALUE"));
        assert!(Matcher::parse("=x").unwrap_err().contains("label name"));
        assert_eq!(
            Matcher::parse("proxy=~app-*").unwrap().to_string(),
            "proxy=~app-*"
        );
    }

    #[test]
    fn matches_labels() {
        let l = labels();
        let m = |t: &str| Matcher::parse(t).unwrap().matches(&l);
        assert!(m("proxy=app-main"));
        assert!(!m("proxy=app"));
        assert!(m("server!=web2"));
        assert!(m("proxy=~app-*"));
        assert!(!m("proxy!~app-*"));
        assert!(m("team!=web"), "missing label counts as empty");
        assert!(m("team="));
    }

    #[test]
    fn silences_only_while_active_and_all_match() {
        let s = Silence {
            id: "1".into(),
            matchers: vec![
                Matcher::parse("proxy=app-main").unwrap(),
                Matcher::parse("server=web1").unwrap(),
            ],
            starts_at: 100.0,
            ends_at: 200.0,
            comment: String::new(),
            created_by: String::new(),
        };
        assert!(!s.silences(&labels(), 99.0));
        assert!(s.silences(&labels(), 100.0));
        assert!(!s.silences(&labels(), 200.0));
        assert!(s.expired(200.0));
        let mut other = labels();
        other.insert("server".into(), "web2".into());
        assert!(!s.silences(&other, 150.0));
    }
}
