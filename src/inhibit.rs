//! Inhibition with Alertmanager's semantics: while an alert matching an `[[inhibit]]`
//! entry's `source_matchers` fires, alerts matching its `target_matchers` that carry the
//! same values of its `equal` labels are not announced (they keep their lifecycle).
//!
//! As in Alertmanager (`inhibit/inhibit.go`): every matcher of a side must match; a
//! label missing on both alerts counts as equal (empty); an alert never inhibits itself,
//! and when an alert matches both sides of an entry, only a source that does not match
//! the target side can inhibit it (so two BackendDown alerts of one entry
//! `alertname=BackendDown` → `alertname=BackendDown` do not mute each other). A source
//! inhibits while it fires, silenced or not; a pending source does not (Prometheus does
//! not send pending alerts to Alertmanager either).

use crate::alert::Labels;
use crate::silence::Matcher;
use serde::Deserialize;
use std::collections::HashMap;
use toml::Spanned;

/// An `[[inhibit]]` table as written in the config.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInhibit {
    source_matchers: Spanned<Vec<String>>,
    target_matchers: Spanned<Vec<String>>,
    #[serde(default)]
    equal: Vec<String>,
}

/// A compiled `[[inhibit]]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct InhibitRule {
    /// All must match the inhibiting alert.
    pub source: Vec<Matcher>,
    /// All must match the inhibited alert.
    pub target: Vec<Matcher>,
    /// Labels whose values must be the same on both.
    pub equal: Vec<String>,
}

impl InhibitRule {
    /// Compiles one entry; an error is a byte offset in the file text and a message.
    pub fn compile(raw: Spanned<RawInhibit>) -> Result<InhibitRule, (usize, String)> {
        let entry = raw.span().start;
        let raw = raw.into_inner();
        let side = |name: &str, list: &Spanned<Vec<String>>| {
            if list.get_ref().is_empty() {
                return Err((
                    list.span().start,
                    format!("[[inhibit]] {name}: give at least one matcher, e.g. \"alertname=BackendDown\" (an empty list would match every alert)"),
                ));
            }
            list.get_ref()
                .iter()
                .map(|m| {
                    Matcher::parse(m)
                        .map_err(|e| (list.span().start, format!("[[inhibit]] {name}: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let source = side("source_matchers", &raw.source_matchers)?;
        let target = side("target_matchers", &raw.target_matchers)?;
        if let Some(bad) = raw
            .equal
            .iter()
            .find(|l| l.is_empty() || !l.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        {
            return Err((
                entry,
                format!("[[inhibit]] equal: {bad:?} is not a label name (letters, digits and `_`)"),
            ));
        }
        Ok(InhibitRule {
            source,
            target,
            equal: raw.equal,
        })
    }
}

/// The alerts that fire after a run, indexed for the `[[inhibit]]` entries: per entry, its
/// sources by their values of the `equal` labels, so that judging an alert costs one
/// look-up per entry whatever the number of alerts (a thousand servers down must not
/// mean a million comparisons).
pub struct Inhibitors<'a> {
    rules: Vec<Indexed<'a>>,
}

type Sources<'a> = Vec<(&'a str, &'a Labels)>;

struct Indexed<'a> {
    rule: &'a InhibitRule,
    by_equal: HashMap<Vec<&'a str>, Sources<'a>>,
}

impl<'a> Inhibitors<'a> {
    /// Indexes `firing` (fingerprint, labels) for `rules`.
    pub fn new(rules: &'a [InhibitRule], firing: &[(&'a str, &'a Labels)]) -> Inhibitors<'a> {
        let rules = rules
            .iter()
            .map(|rule| {
                let mut by_equal: HashMap<Vec<&'a str>, Sources<'a>> = HashMap::new();
                for &(fingerprint, labels) in firing {
                    if rule.source.iter().all(|m| m.matches(labels)) {
                        by_equal
                            .entry(equal_values(&rule.equal, labels))
                            .or_default()
                            .push((fingerprint, labels));
                    }
                }
                Indexed { rule, by_equal }
            })
            .collect();
        Inhibitors { rules }
    }

    /// The first firing alert (fingerprint, labels) that inhibits the alert with
    /// `fingerprint` and `labels`, if any.
    pub fn inhibitor(&self, fingerprint: &str, labels: &Labels) -> Option<(&'a str, &'a Labels)> {
        self.rules.iter().find_map(|Indexed { rule, by_equal }| {
            if !rule.target.iter().all(|m| m.matches(labels)) {
                return None;
            }
            let two_sided = rule.source.iter().all(|m| m.matches(labels));
            by_equal
                .get(&equal_values(&rule.equal, labels))?
                .iter()
                .find(|&&(fp, source)| {
                    fp != fingerprint
                        && !(two_sided && rule.target.iter().all(|m| m.matches(source)))
                })
                .copied()
        })
    }
}

/// The values of `names` on `labels`, a missing label as empty (as Alertmanager compares).
fn equal_values<'a>(names: &[String], labels: &'a Labels) -> Vec<&'a str> {
    names
        .iter()
        .map(|n| labels.get(n).map_or("", String::as_str))
        .collect()
}

/// The first alert of `firing` (fingerprint, labels) that inhibits an alert with
/// `fingerprint` and `labels` under one of `rules`: its fingerprint. For one alert; to
/// judge many against the same firing alerts, build [`Inhibitors`] once.
pub fn inhibitor<'a>(
    rules: &'a [InhibitRule],
    fingerprint: &str,
    labels: &Labels,
    firing: &[(&'a str, &'a Labels)],
) -> Option<&'a str> {
    Inhibitors::new(rules, firing)
        .inhibitor(fingerprint, labels)
        .map(|(fp, _)| fp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn rule(source: &[&str], target: &[&str], equal: &[&str]) -> InhibitRule {
        InhibitRule {
            source: source.iter().map(|m| Matcher::parse(m).unwrap()).collect(),
            target: target.iter().map(|m| Matcher::parse(m).unwrap()).collect(),
            equal: equal.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn a_source_inhibits_targets_with_equal_labels_only() {
        let rules = [rule(
            &["alertname=BackendDown"],
            &["alertname=ServerDown"],
            &["source", "proxy"],
        )];
        let backend = labels(&[
            ("alertname", "BackendDown"),
            ("source", "lb1"),
            ("proxy", "app"),
        ]);
        let firing = [("b", &backend)];
        let server = |source: &str, proxy: &str| {
            labels(&[
                ("alertname", "ServerDown"),
                ("source", source),
                ("proxy", proxy),
                ("server", "web1"),
            ])
        };
        assert_eq!(
            inhibitor(&rules, "s", &server("lb1", "app"), &firing),
            Some("b")
        );
        assert_eq!(inhibitor(&rules, "s", &server("lb1", "api"), &firing), None);
        assert_eq!(inhibitor(&rules, "s", &server("lb2", "app"), &firing), None);
        // Not a target.
        let flapped = labels(&[
            ("alertname", "ServerFlapped"),
            ("source", "lb1"),
            ("proxy", "app"),
        ]);
        assert_eq!(inhibitor(&rules, "f", &flapped, &firing), None);
        // Nothing fires: nothing inhibits.
        assert_eq!(inhibitor(&rules, "s", &server("lb1", "app"), &[]), None);
    }

    #[test]
    fn missing_labels_are_equal_when_missing_on_both() {
        let rules = [rule(&["alertname=A"], &["alertname=B"], &["team"])];
        let a = labels(&[("alertname", "A")]);
        let b = labels(&[("alertname", "B")]);
        assert_eq!(inhibitor(&rules, "b", &b, &[("a", &a)]), Some("a"));
        let b_team = labels(&[("alertname", "B"), ("team", "x")]);
        assert_eq!(inhibitor(&rules, "b", &b_team, &[("a", &a)]), None);
    }

    #[test]
    fn an_alert_matching_both_sides_is_not_inhibited_by_its_like() {
        let rules = [rule(&["severity=critical"], &["severity=~*"], &["source"])];
        let one = labels(&[
            ("alertname", "X"),
            ("severity", "critical"),
            ("source", "lb1"),
        ]);
        let two = labels(&[
            ("alertname", "Y"),
            ("severity", "critical"),
            ("source", "lb1"),
        ]);
        let warning = labels(&[
            ("alertname", "Z"),
            ("severity", "warning"),
            ("source", "lb1"),
        ]);
        let firing = [("1", &one), ("2", &two)];
        // Itself, and another alert matching both sides: no.
        assert_eq!(inhibitor(&rules, "1", &one, &firing), None);
        assert_eq!(inhibitor(&rules, "2", &two, &firing), None);
        // A target that is no source: yes.
        assert_eq!(inhibitor(&rules, "3", &warning, &firing), Some("1"));
    }

    #[test]
    fn compile_errors_name_the_key() {
        let parse = |text: &str| {
            #[derive(Deserialize)]
            struct File {
                inhibit: Vec<Spanned<RawInhibit>>,
            }
            let file: File = toml::from_str(text).unwrap();
            file.inhibit
                .into_iter()
                .map(InhibitRule::compile)
                .collect::<Result<Vec<_>, _>>()
        };
        let ok = parse(
            "[[inhibit]]\nsource_matchers = [\"alertname=BackendDown\"]\ntarget_matchers = [\"alertname=ServerDown\"]\nequal = [\"source\", \"proxy\"]\n",
        )
        .unwrap();
        assert_eq!(ok[0].equal, ["source", "proxy"]);
        let err =
            parse("[[inhibit]]\nsource_matchers = []\ntarget_matchers = [\"a=b\"]\n").unwrap_err();
        assert!(
            err.1.contains("source_matchers: give at least one"),
            "{}",
            err.1
        );
        let err = parse("[[inhibit]]\nsource_matchers = [\"a=b\"]\ntarget_matchers = [\"ab\"]\n")
            .unwrap_err();
        assert!(
            err.1.contains("target_matchers: matcher \"ab\""),
            "{}",
            err.1
        );
        let err = parse(
            "[[inhibit]]\nsource_matchers = [\"a=b\"]\ntarget_matchers = [\"a=c\"]\nequal = [\"pro xy\"]\n",
        )
        .unwrap_err();
        assert!(err.1.contains("equal: \"pro xy\""), "{}", err.1);
    }
}
