//! `hapwatch test`: rule tests in the spirit of `promtool test rules`. A test file names
//! the config (or rule file) under test and cases; each case is a sequence of captured
//! snapshots at simulated times, with expectations about firing and pending alerts and
//! the notifications sent. Every step goes through [`engine::step`] and the notifiers'
//! planning, the very code `hapwatch run` uses, with an in-memory state and no network.

use crate::alert::Labels;
use crate::config::Config;
use crate::engine::{self, format_labels, SourceResult};
use crate::run::{Pipeline, WithoutNotifiers};
use crate::silence::{Matcher, Silence};
use crate::source;
use crate::state::{State, Status};
use crate::stats::{Info, Snapshot, Stats};
use crate::vocab::Payload;
use serde::Deserialize;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Simulated Unix time of `at = "0m"`: fixed, so that output is reproducible.
const EPOCH: f64 = 1_800_000_000.0;

/// A rule-test file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    /// The config or rule file under test, relative to the test file.
    config: String,
    #[serde(rename = "case", default)]
    cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    /// The `source` label of the snapshots (default "lb1").
    #[serde(default = "default_source")]
    source: String,
    /// The labels of that source, instead of those of the config's `[[source]]` of that
    /// name (as if it had these, `[source_defaults]` included).
    labels: Option<Labels>,
    /// The time of `at = "0m"`: an RFC 3339 timestamp or a civil time in a named zone
    /// (`2026-03-29T01:30[Europe/Berlin]`), so that time intervals can be tested; default
    /// a fixed time in 2027.
    start: Option<String>,
    #[serde(default)]
    silences: Vec<TestSilence>,
    #[serde(rename = "step", default)]
    steps: Vec<Step>,
}

fn default_source() -> String {
    "lb1".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestSilence {
    matchers: Vec<String>,
    #[serde(default = "zero", deserialize_with = "crate::duration::deserialize")]
    from: Duration,
    #[serde(rename = "for", deserialize_with = "crate::duration::deserialize")]
    duration: Duration,
}

fn zero() -> Duration {
    Duration::ZERO
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Step {
    #[serde(deserialize_with = "crate::duration::deserialize")]
    at: Duration,
    /// A capture (CSV, or `show info` + CSV), relative to the test file.
    snapshot: Option<String>,
    /// An inline `show stat` CSV.
    csv: Option<String>,
    /// Inline `show info` text for `csv` (Pid, Start_time_sec).
    info: Option<String>,
    /// The source cannot be read at this step (this error text).
    unreachable: Option<String>,
    /// Seconds the read of the snapshot took (`source.read_seconds`): a file has no read
    /// time of a socket, so rules on it are tested with the time given here.
    read_seconds: Option<f64>,
    firing: Option<Vec<Labels>>,
    pending: Option<Vec<Labels>>,
    /// The firing alerts an `[[inhibit]]` entry keeps from being announced (they are in
    /// `firing` too: inhibition does not change the lifecycle).
    inhibited: Option<Vec<Labels>>,
    notifications: Option<Vec<ExpectedNotification>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectedNotification {
    /// Notifier name (`stdout` when the config has no notifier); any when left out.
    notifier: Option<String>,
    #[serde(default)]
    firing: Vec<Labels>,
    #[serde(default)]
    resolved: Vec<Labels>,
}

/// The outcome of one test file.
#[derive(Debug, Default)]
pub struct Report {
    /// One line per case (and failure details), ready to print.
    pub text: String,
    /// Cases that passed.
    pub passed: usize,
    /// Cases that failed.
    pub failed: usize,
}

/// Why a test file could not be run at all.
#[derive(Debug, thiserror::Error)]
pub enum TestFileError {
    /// Unreadable or invalid test file.
    #[error("{0}")]
    Invalid(String),
    /// The config under test is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

/// Runs every case of the test file at `path`.
pub fn run_file(path: &Path) -> Result<Report, TestFileError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        TestFileError::Invalid(format!("cannot read test file {}: {e}", path.display()))
    })?;
    let file: TestFile = toml::from_str(&text).map_err(|e| {
        let offset = e.span().map_or(0, |s| s.start);
        let line = text[..offset.min(text.len())].matches('\n').count() + 1;
        TestFileError::Invalid(format!("{}:{line}: {}", path.display(), e.message().trim()))
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let config = Config::load(&base.join(&file.config))?;
    // As in `hapwatch run`: without a notifier, notifications go to stdout.
    let pipeline = Pipeline::new(config, WithoutNotifiers::Stdout { json: false });
    let mut report = Report::default();
    let _ = writeln!(report.text, "{}", path.display());
    for case in &file.cases {
        let with_labels;
        let pipeline = match &case.labels {
            None => &pipeline,
            Some(labels) => {
                let mut config = Config::load(&base.join(&file.config))?;
                with_source_labels(&mut config, &case.source, labels);
                with_labels = Pipeline::new(config, WithoutNotifiers::Stdout { json: false });
                &with_labels
            }
        };
        match run_case(pipeline, case, base) {
            Ok(()) => {
                report.passed += 1;
                let _ = writeln!(report.text, "  ok    {}", case.name);
            }
            Err(failure) => {
                report.failed += 1;
                let _ = writeln!(report.text, "  FAIL  {}", case.name);
                for line in failure.lines() {
                    let _ = writeln!(report.text, "        {line}");
                }
            }
        }
    }
    Ok(report)
}

/// Gives the source `name` of `config` these labels (adding the source if the config has
/// none of that name: a rule test reads no source, it only needs the labels).
fn with_source_labels(config: &mut Config, name: &str, labels: &Labels) {
    let labels: Labels = labels
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    match config.sources.iter_mut().find(|s| s.name == name) {
        Some(source) => source.labels = labels,
        None => config.sources.push(crate::config::SourceConfig {
            name: name.to_string(),
            endpoint: crate::config::Endpoint::Stdin,
            timeout: crate::config::DEFAULT_TIMEOUT,
            labels,
            line: 0,
            file: None,
        }),
    }
}

fn run_case(pipeline: &Pipeline, case: &Case, base: &Path) -> Result<(), String> {
    let epoch = match &case.start {
        None => EPOCH,
        Some(text) => {
            crate::timeinterval::parse_time(text).map_err(|e| format!("start {text:?}: {e}"))?
        }
    };
    let mut state = State::new();
    for (i, s) in case.silences.iter().enumerate() {
        let matchers = s
            .matchers
            .iter()
            .map(|m| Matcher::parse(m))
            .collect::<Result<Vec<_>, _>>()?;
        let starts_at = epoch + s.from.as_secs_f64();
        state.silences.push(Silence {
            id: (i + 1).to_string(),
            matchers,
            starts_at,
            ends_at: starts_at + s.duration.as_secs_f64(),
            comment: String::new(),
            created_by: "test".into(),
        });
    }
    let mut failures = String::new();
    for (index, step) in case.steps.iter().enumerate() {
        let now = epoch + step.at.as_secs_f64();
        let label = format!(
            "step {} (at {})",
            index + 1,
            crate::duration::format_secs(step.at.as_secs())
        );
        let mut snapshot = load_snapshot(step, base).map_err(|e| format!("{label}: {e}"))?;
        if let Some(seconds) = step.read_seconds {
            match snapshot.as_mut().and_then(|s| s.info.as_mut()) {
                Some(info) => info.read_seconds = Some(seconds),
                None => {
                    return Err(format!(
                        "{label}: read_seconds needs a snapshot with `show info` (a capture of \"show info;show stat\", or csv with info)"
                    ))
                }
            }
        }
        let result = match (&snapshot, &step.unreachable) {
            (Some(snapshot), None) => Ok(snapshot),
            (None, Some(error)) => Err(error.clone()),
            _ => {
                return Err(format!(
                    "{label}: give exactly one of snapshot, csv or unreachable"
                ))
            }
        };
        // The engine step and the plan of `hapwatch run`, without its sources and state file.
        let evaluation = pipeline.evaluate(
            &mut state,
            now,
            &mut [SourceResult {
                name: &case.source,
                result,
                evaluated: None,
            }],
            false,
            false,
        );
        let deliveries: Vec<(String, Vec<Labels>, Vec<Labels>)> = {
            evaluation
                .planned
                .into_iter()
                .map(|(name, payload)| match payload {
                    Payload::Notification(n) => {
                        (name, labels_of(&n.firing), labels_of(&n.resolved))
                    }
                    Payload::Alertmanager { alerts, .. } => {
                        let (resolved, firing): (Vec<_>, Vec<_>) =
                            alerts.into_iter().partition(|a| a.resolved_at.is_some());
                        (
                            name,
                            firing.into_iter().map(|a| a.labels).collect(),
                            resolved.into_iter().map(|a| a.labels).collect(),
                        )
                    }
                })
                .collect()
        };
        let with_status = |status: Status| -> Vec<Labels> {
            state
                .alerts
                .values()
                .filter(|a| a.status == status)
                .map(|a| a.labels.clone())
                .collect()
        };
        let mut problems = Vec::new();
        if let Some(expected) = &step.firing {
            compare(
                "firing",
                expected,
                &with_status(Status::Firing),
                &mut problems,
            );
        }
        if let Some(expected) = &step.pending {
            compare(
                "pending",
                expected,
                &with_status(Status::Pending),
                &mut problems,
            );
        }
        if let Some(expected) = &step.inhibited {
            let inhibited: Vec<Labels> = state
                .alerts
                .values()
                .filter(|a| a.status == Status::Firing && a.inhibited_by.is_some())
                .map(|a| a.labels.clone())
                .collect();
            compare("inhibited", expected, &inhibited, &mut problems);
        }
        if let Some(expected) = &step.notifications {
            compare_notifications(expected, &deliveries, &mut problems);
        }
        if !problems.is_empty() {
            let _ = writeln!(failures, "{label}:");
            for p in problems {
                let _ = writeln!(failures, "  {p}");
            }
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures)
    }
}

fn labels_of(notices: &[engine::Notice]) -> Vec<Labels> {
    notices.iter().map(|n| n.labels.clone()).collect()
}

fn load_snapshot(step: &Step, base: &Path) -> Result<Option<Snapshot>, String> {
    match (&step.snapshot, &step.csv) {
        (Some(_), Some(_)) => Err("give snapshot or csv, not both".into()),
        (Some(file), None) => {
            let path: PathBuf = base.join(file);
            let source = crate::config::SourceConfig {
                name: "test".into(),
                endpoint: crate::config::Endpoint::File(path.clone()),
                timeout: crate::config::DEFAULT_TIMEOUT,
                labels: Default::default(),
                line: 0,
                file: None,
            };
            source::fetch(&source)
                .map(Some)
                .map_err(|e| format!("snapshot {file}: {e}"))
        }
        (None, Some(csv)) => Ok(Some(Snapshot {
            info: step.info.as_deref().map(Info::parse),
            stats: Stats::parse(csv.trim_start().as_bytes().to_vec())
                .map_err(|e| format!("inline csv: {e}"))?,
        })),
        (None, None) => Ok(None),
    }
}

/// True when every expected label is on `actual`.
fn subset(expected: &Labels, actual: &Labels) -> bool {
    expected.iter().all(|(k, v)| actual.get(k) == Some(v))
}

/// Pairs expected label subsets with actual alerts one to one; reports what is missing
/// and what was not expected.
fn compare(what: &str, expected: &[Labels], actual: &[Labels], problems: &mut Vec<String>) {
    let mut unmatched: Vec<&Labels> = actual.iter().collect();
    unmatched.sort();
    for want in expected {
        match unmatched.iter().position(|a| subset(want, a)) {
            Some(i) => {
                unmatched.remove(i);
            }
            None => problems.push(format!(
                "{what}: expected but missing: {}",
                format_labels(want)
            )),
        }
    }
    for extra in unmatched {
        problems.push(format!("{what}: not expected: {}", format_labels(extra)));
    }
}

fn compare_notifications(
    expected: &[ExpectedNotification],
    actual: &[(String, Vec<Labels>, Vec<Labels>)],
    problems: &mut Vec<String>,
) {
    let matches = |want: &ExpectedNotification, got: &(String, Vec<Labels>, Vec<Labels>)| {
        let mut scratch = Vec::new();
        compare("", &want.firing, &got.1, &mut scratch);
        compare("", &want.resolved, &got.2, &mut scratch);
        want.notifier.as_ref().is_none_or(|n| *n == got.0) && scratch.is_empty()
    };
    let mut unmatched: Vec<&(String, Vec<Labels>, Vec<Labels>)> = actual.iter().collect();
    for want in expected {
        match unmatched.iter().position(|got| matches(want, got)) {
            Some(i) => {
                unmatched.remove(i);
            }
            None => problems.push(format!(
                "notifications: expected but missing: {}",
                describe_expected(want)
            )),
        }
    }
    for got in unmatched {
        problems.push(format!(
            "notifications: not expected: {}",
            describe_actual(got)
        ));
    }
}

fn describe_expected(n: &ExpectedNotification) -> String {
    describe(
        n.notifier.as_deref().unwrap_or("any notifier"),
        &n.firing,
        &n.resolved,
    )
}

fn describe_actual(n: &(String, Vec<Labels>, Vec<Labels>)) -> String {
    describe(&n.0, &n.1, &n.2)
}

fn describe(notifier: &str, firing: &[Labels], resolved: &[Labels]) -> String {
    let list = |l: &[Labels]| l.iter().map(format_labels).collect::<Vec<_>>().join(", ");
    let mut parts = vec![format!("to {notifier}")];
    if !firing.is_empty() {
        parts.push(format!("firing [{}]", list(firing)));
    }
    if !resolved.is_empty() {
        parts.push(format!("resolved [{}]", list(resolved)));
    }
    parts.join(" ")
}
