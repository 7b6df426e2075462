//! Alerts: what a rule reports for one row, identified by its labels.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Label name → value, sorted by name.
pub type Labels = BTreeMap<String, String>;

/// One alert instance: a rule matching one row (or a source that could not be read).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// `alertname`, `source`, `proxy`, `type`, `server` (server and listener rows),
    /// `severity`, and the rule's own labels.
    pub labels: Labels,
    /// Rendered `summary` and `description`.
    pub annotations: BTreeMap<String, String>,
    /// The rule's value for this row, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
}

/// A rule's value for a row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    /// A number.
    Number(f64),
    /// Text (e.g. a state).
    Text(String),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Number(n) if n.fract() == 0.0 && n.abs() < 1e15 => write!(f, "{}", *n as i64),
            Value::Number(n) => write!(f, "{}", (n * 1000.0).round() / 1000.0),
            Value::Text(t) => f.write_str(t),
        }
    }
}

impl Alert {
    /// The rule name (`alertname` label).
    pub fn name(&self) -> &str {
        self.labels.get("alertname").map_or("", String::as_str)
    }

    /// A label's value, or `""`.
    pub fn label(&self, name: &str) -> &str {
        self.labels.get(name).map_or("", String::as_str)
    }

    /// The alert's identity.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(&self.labels)
    }
}

/// The row an alert is about: `proxy/server`, or `proxy` for frontends and backends;
/// `None` for alerts about no row (a source that cannot be read).
pub fn row_of(labels: &Labels) -> Option<String> {
    match (labels.get("proxy"), labels.get("server")) {
        (Some(p), Some(s)) => Some(format!("{p}/{s}")),
        (Some(p), None) => Some(p.clone()),
        _ => None,
    }
}

/// A stable identity for a label set, computed like Alertmanager's (FNV-1a 64 over the
/// sorted names and values, each followed by a 0xff byte), so that hapwatch and
/// Alertmanager name the same alert the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(pub u64);

impl Fingerprint {
    /// The fingerprint of `labels`.
    pub fn of(labels: &Labels) -> Fingerprint {
        const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
        const PRIME: u64 = 0x0000_0100_0000_01b3;
        let mut hash = OFFSET;
        let mut write = |bytes: &[u8]| {
            for &b in bytes {
                hash ^= u64::from(b);
                hash = hash.wrapping_mul(PRIME);
            }
        };
        for (name, value) in labels {
            write(name.as_bytes());
            write(&[0xff]);
            write(value.as_bytes());
            write(&[0xff]);
        }
        Fingerprint(hash)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_matches_prometheus_common() {
        // Vectors from prometheus/common model/fingerprinting tests (TestMetricToFingerprint).
        assert_eq!(
            Fingerprint::of(&Labels::new()).0,
            14_695_981_039_346_656_037
        );
        let labels: Labels = [("name", "garland, briggs"), ("fear", "love is not enough")]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into();
        assert_eq!(Fingerprint::of(&labels).0, 5_799_056_148_416_392_346);
    }

    #[test]
    fn values_print_compactly() {
        assert_eq!(Value::Number(3.0).to_string(), "3");
        assert_eq!(Value::Number(0.123456).to_string(), "0.123");
        assert_eq!(Value::Text("down".into()).to_string(), "down");
    }
}
