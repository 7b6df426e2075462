//! One run, as a pure step: evaluate every source's dump, move each alert through its
//! lifecycle in the state, and plan the notifications. `hapwatch run` calls it with live
//! dumps and the state file; rule tests call it with captures and simulated time.

use crate::alert::{Alert, Labels};
use crate::config::Config;
use crate::rules::sample::{Capture, Sample};
use crate::rules::window::{self, History};
use crate::rules::{self, Evaluation, Hold};
use crate::source::RowSink;
use crate::state::{AlertState, State, Status};
use crate::stats::{Info, Snapshot, Table};
pub use crate::vocab::{Notice, Notification};
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::sync::OnceLock;

/// What one source gave this run.
pub struct SourceResult<'a> {
    /// The source's name.
    pub name: &'a str,
    /// Its dump, or why there is none.
    pub result: Result<&'a Snapshot, String>,
    /// The dump's evaluation, when a [`Watch`] made it while the dump arrived; `step`
    /// evaluates the dump itself otherwise.
    pub evaluated: Option<Evaluated>,
}

/// What the rules make of one source's dump.
#[derive(Debug)]
pub struct Evaluated {
    /// Alerts whose condition holds, rule by rule, in dump order.
    alerts: Vec<Alert>,
    /// The counters the next run's `delta()` / `rate()` compare with.
    sample: Sample,
    /// The counters windows (`delta(col, 5m)`) read, to add to the source's history.
    window_sample: Sample,
    /// Servers not checked yet since HAProxy started (`check_status` `INI`): proxy,
    /// server; and their backends (proxy, empty server), whose status derives from them.
    unchecked: Vec<(String, String)>,
    /// The counters started again since the previous sample (a reload or restart, or no
    /// previous sample): `delta()` / `rate()` cover only part of the interval.
    counters_reset: bool,
}

/// The previous samples of every source, for [`Watch`]es that run while the state file is
/// still being read: set once it is.
pub type PendingSamples = OnceLock<BTreeMap<String, Sample>>;

/// The window histories of every source, set (before [`PendingSamples`]) once the state
/// file is read.
pub type PendingWindows = OnceLock<BTreeMap<String, History>>;

/// Evaluates one source's dump while it is read (a [`RowSink`]), so that little work is
/// left once HAProxy has written the last row.
pub struct Watch<'r> {
    config: &'r Config,
    source: &'r str,
    now: f64,
    previous: Previous<'r>,
    evaluation: Evaluation<'r>,
    capture: Capture,
    window_capture: Capture,
    /// Where the window history comes from (none: no history, windows are absent).
    windows: Windows<'r>,
    unchecked: Vec<(String, String)>,
    counters_reset: bool,
    /// Rows looked at for `INI` so far.
    done: usize,
}

#[derive(Clone, Copy)]
enum Windows<'r> {
    Known(Option<&'r History>),
    Pending(&'r PendingWindows),
}

#[derive(Clone, Copy)]
enum Previous<'r> {
    Known(Option<&'r Sample>),
    /// Rules wait for these (rows are kept meanwhile); the sample is then looked up by
    /// source name.
    Pending(&'r PendingSamples),
}

impl<'r> Watch<'r> {
    /// Watches the dump of `source`, taken at `now`; its previous sample comes from
    /// `samples` once another thread has set it.
    pub fn new(config: &'r Config, source: &'r str, now: f64, samples: &'r PendingSamples) -> Self {
        Self::with_previous(config, source, now, Previous::Pending(samples))
    }

    /// Reads the window history from `windows`, which is set before the samples are.
    pub fn with_windows(mut self, windows: &'r PendingWindows) -> Self {
        self.windows = Windows::Pending(windows);
        self
    }

    fn with_previous(
        config: &'r Config,
        source: &'r str,
        now: f64,
        previous: Previous<'r>,
    ) -> Self {
        Watch {
            config,
            source,
            now,
            previous,
            evaluation: Evaluation::new(
                &config.rules,
                source,
                config.source_labels(source),
                now,
                None,
            ),
            capture: Capture::new(config.rules.counter_columns())
                .with_prev(config.rules.prev_capture()),
            window_capture: config.rules.window_capture(),
            windows: Windows::Known(None),
            unchecked: Vec::new(),
            counters_reset: true,
            done: 0,
        }
    }

    /// The evaluation of every row shown.
    pub fn finish(self) -> Evaluated {
        Evaluated {
            alerts: self.evaluation.finish(),
            sample: self.capture.finish(self.now),
            window_sample: self.window_capture.finish(self.now),
            unchecked: self.unchecked,
            counters_reset: self.counters_reset,
        }
    }

    /// Evaluates a whole dump at once.
    fn evaluate(
        config: &'r Config,
        source: &'r str,
        snapshot: &Snapshot,
        previous: Option<&'r Sample>,
        history: Option<&'r History>,
        now: f64,
    ) -> Evaluated {
        let mut watch = Self::with_previous(config, source, now, Previous::Known(previous));
        watch.windows = Windows::Known(history);
        watch.rows(snapshot.stats.table(), snapshot.info.as_ref(), true);
        watch.finish()
    }
}

impl RowSink for Watch<'_> {
    fn rows(&mut self, table: Table<'_>, info: Option<&Info>, complete: bool) {
        self.capture.advance(table, info);
        self.window_capture.advance(table, info);
        if let Some(check) = table.columns().get("check_status") {
            for row in table.rows_in(self.done..table.len()) {
                if let Some(status) = row.get(check) {
                    if status.strip_prefix("* ").unwrap_or(status) == "INI" {
                        self.unchecked
                            .push((row.proxy().to_string(), row.name().to_string()));
                        // The backend's status is made of its servers' (a backend whose
                        // servers are all down reads UP until they are checked).
                        // Pushed once per server: the step collects them in a set.
                        self.unchecked
                            .push((row.proxy().to_string(), String::new()));
                    }
                }
            }
        }
        self.done = table.len();
        let previous = match self.previous {
            Previous::Known(previous) => Some(previous),
            // Until the state is read, rows wait; at the end, the evaluation waits for it.
            Previous::Pending(samples) if complete => Some(samples.wait().get(self.source)),
            Previous::Pending(samples) => samples.get().map(|s| s.get(self.source)),
        };
        if let Some(previous) = previous {
            // A previous sample "from the future" (the clock was set back) gives no interval:
            // `rate(col)` is absent, which says nothing about a problem being over.
            self.counters_reset =
                previous.is_none_or(|p| p.restarted_before_info(info) || p.taken_at >= self.now);
            let history = match self.windows {
                Windows::Known(history) => history,
                Windows::Pending(windows) => windows.get().and_then(|w| w.get(self.source)),
            };
            self.evaluation
                .advance(table, info, previous, history, complete);
        }
    }

    fn restart(&mut self) {
        let windows = self.windows;
        *self = Self::with_previous(self.config, self.source, self.now, self.previous);
        self.windows = windows;
    }

    fn columns(&self) -> Option<Vec<String>> {
        Some(self.config.rules.columns_read())
    }
}

/// An alert's move in this run, for dry runs and rule tests.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Transition {
    /// Identity.
    pub labels: Labels,
    /// Status before the run (`None`: new).
    pub from: Option<Status>,
    /// Status after the run (`None`: forgotten, e.g. a pending alert that cleared).
    pub to: Option<Status>,
    /// A silence holds its notifications back.
    pub silenced: bool,
    /// Another alert that fires inhibits it (an `[[inhibit]]` entry): its labels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inhibited_by: Option<Labels>,
}

/// The result of a step.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Every alert whose condition holds now, in evaluation order.
    pub active: Vec<Alert>,
    /// Every alert that changed status (or stayed pending/firing), sorted by labels.
    pub transitions: Vec<Transition>,
    /// Notifications to send, sorted by group key; a digest, if any, comes last.
    pub notifications: Vec<Notification>,
}

/// What a step keeps to itself (see [`step`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quiet {
    /// Everything is announced.
    No,
    /// Alerts that fire are marked announced without a notification; recoveries of
    /// alerts the state knows as announced are still announced. After a state that lost
    /// some of its alerts: the lost ones must not be announced again as new, and the
    /// ones it kept must not recover in silence.
    Firing,
    /// Nothing is announced: the passive node of an HA pair, or a state lost whole.
    All,
}

impl From<bool> for Quiet {
    fn from(quiet: bool) -> Quiet {
        if quiet {
            Quiet::All
        } else {
            Quiet::No
        }
    }
}

/// What a rule says about an alert's lifecycle and delivery; for SourceUnreachable, what
/// `[source_unreachable]` says.
#[derive(Debug, Clone, Copy)]
struct Policy<'c> {
    hold: Hold,
    keep_firing_for: Option<std::time::Duration>,
    notify: &'c [String],
    send_resolved: Option<bool>,
    reads_counters: bool,
    /// The window lengths the condition reads (seconds).
    windows: &'c [f64],
}

impl<'c> Policy<'c> {
    fn of(config: &'c Config, alertname: Option<&str>) -> Policy<'c> {
        if alertname == Some(rules::SOURCE_UNREACHABLE) {
            let s = &config.source_unreachable;
            return Policy {
                hold: s.hold,
                keep_firing_for: s.keep_firing_for,
                notify: &s.notify,
                send_resolved: s.send_resolved,
                reads_counters: false,
                windows: &[],
            };
        }
        match config
            .rules
            .rules
            .iter()
            .find(|r| Some(r.name.as_str()) == alertname)
        {
            Some(r) => Policy {
                hold: r.hold,
                keep_firing_for: r.keep_firing_for,
                notify: &r.notify,
                send_resolved: r.send_resolved,
                reads_counters: r.reads_counters,
                windows: &r.windows,
            },
            None => Policy {
                hold: Hold::Immediately,
                keep_firing_for: None,
                notify: &[],
                send_resolved: None,
                reads_counters: false,
                windows: &[],
            },
        }
    }
}

/// The built-in alert of a source that could not be read, with the severity and labels
/// of `[source_unreachable]`.
fn source_unreachable(config: &Config, source: &str, error: &str) -> Alert {
    let mut alert = rules::source_unreachable(source, config.source_labels(source), error);
    let settings = &config.source_unreachable;
    alert
        .labels
        .insert("severity".into(), settings.severity.clone());
    for (k, v) in &settings.labels {
        alert.labels.insert(k.clone(), v.clone());
    }
    alert
}

/// Whether the SourceUnreachable alert of `source`, failing in a run at `now`, fires in
/// that run given `state` as it is before the run: `hapwatch run` prints a failed read
/// on stderr only then, so that a `for`/`for_runs` of `[source_unreachable]` also keeps
/// a single slow read out of cron's mail.
pub fn source_unreachable_fires(config: &Config, state: &State, source: &str, now: f64) -> bool {
    let alert = source_unreachable(config, source, "");
    let entry = state
        .alerts
        .get(&alert.fingerprint().to_string())
        .filter(|e| e.status != Status::Resolved);
    match (config.source_unreachable.hold, entry) {
        (Hold::Immediately, _) => true,
        (_, Some(e)) if e.status == Status::Firing => true,
        (Hold::Runs(n), e) => e.map_or(0, |e| e.runs) + 1 >= n,
        (Hold::For(d), e) => now - e.map_or(now, |e| e.active_since) >= d.as_secs_f64(),
    }
}

/// Runs one step at time `now` (Unix seconds). `quiet` ([`Quiet`], or a bool for all or
/// nothing) marks alerts that fire in this step as already announced without planning
/// notifications: used after a corrupt state file was set aside, so that losing the state
/// does not flood everyone, and on an HA pair's passive node.
pub fn step(
    config: &Config,
    state: &mut State,
    now: f64,
    sources: &mut [SourceResult<'_>],
    quiet: impl Into<Quiet>,
) -> Outcome {
    let quiet = quiet.into();
    let settings = &config.alerting;
    let mut outcome = Outcome::default();
    clamp_future(state, now);
    let mut failed: HashSet<&str> = HashSet::new();
    // Servers not checked yet since HAProxy started (`INI`, e.g. right after a reload):
    // their status says nothing yet, so their alerts stay as they are.
    let mut unchecked: HashSet<(String, String, String)> = HashSet::new();
    // Sources whose counters started again (a reload): rules on `delta()` / `rate()` saw
    // only part of the interval there, too little to say that a problem is over.
    let mut counters_reset: HashSet<&str> = HashSet::new();
    // Per source, the rules' window lengths its history did not cover in this run (a new
    // install, runs missed for over twice the window, a clock set back): a rule on such a
    // window had no value, which says nothing about whether its problem is over.
    let mut uncovered: HashSet<(&str, u64)> = HashSet::new();
    for source in sources.iter_mut() {
        match source.result {
            Ok(snapshot) => {
                let evaluated = source.evaluated.take().unwrap_or_else(|| {
                    Watch::evaluate(
                        config,
                        source.name,
                        snapshot,
                        state.samples.get(source.name),
                        state.windows.get(source.name),
                        now,
                    )
                });
                unchecked.extend(
                    evaluated
                        .unchecked
                        .into_iter()
                        .map(|(p, s)| (source.name.to_string(), p, s)),
                );
                if evaluated.counters_reset {
                    counters_reset.insert(source.name);
                }
                // The process row (`show info`, read before `show stat`): once per source,
                // after the read, so that `source.read_seconds` is known.
                outcome.active.extend(config.rules.evaluate_process(
                    source.name,
                    config.source_labels(source.name),
                    snapshot.info.as_ref(),
                    state.samples.get(source.name),
                    state.windows.get(source.name),
                    now,
                    None,
                ));
                outcome.active.extend(evaluated.alerts);
                state
                    .samples
                    .insert(source.name.to_string(), evaluated.sample);
                let longest = config.rules.longest_window();
                for &seconds in config.rules.window_lengths() {
                    if !window::covered(state.windows.get(source.name), seconds, now) {
                        uncovered.insert((source.name, seconds.to_bits()));
                    }
                }
                if longest > 0.0 {
                    let history = state.windows.entry(source.name.to_string()).or_default();
                    window::record(history, evaluated.window_sample, longest);
                }
            }
            Err(ref error) => {
                failed.insert(source.name);
                outcome
                    .active
                    .push(source_unreachable(config, source.name, error));
            }
        }
    }
    // Samples of sources that are neither configured nor read now are of no further use.
    let configured: HashSet<&str> = config
        .sources
        .iter()
        .map(|s| s.name.as_str())
        .chain(sources.iter().map(|s| s.name))
        .collect();
    state
        .samples
        .retain(|name, _| configured.contains(name.as_str()));
    // Histories of sources no longer configured, or of a config without windows.
    let windows_used = config.rules.longest_window() > 0.0;
    state
        .windows
        .retain(|name, _| windows_used && configured.contains(name.as_str()));
    state.silences.retain(|s| !s.expired(now));

    let mut events: Vec<(Notice, bool, Delivery)> = Vec::new(); // (notice, firing?, where)
    let mut seen: HashSet<String> = HashSet::new();
    // Alerts that fire after their lifecycle step, in evaluation order: whether each is
    // announced waits until every alert has moved (see below).
    let mut firing: Vec<(String, bool, usize)> = Vec::new(); // (fingerprint, silenced, transition)
    for alert in &outcome.active {
        let fingerprint = alert.fingerprint().to_string();
        if !seen.insert(fingerprint.clone()) {
            continue;
        }
        let policy = Policy::of(config, Some(alert.name()));
        let silenced = silenced(config, state, &alert.labels, now);
        if !state.alerts.contains_key(&fingerprint) {
            let rule = config.rules.rules.iter().find(|r| r.name == alert.name());
            adopt_without_source_labels(config, state, alert, rule, &fingerprint);
        }
        let previous = state.alerts.get(&fingerprint).map(|s| s.status);
        let entry = state
            .alerts
            .entry(fingerprint.clone())
            .and_modify(|s| {
                if s.status == Status::Resolved {
                    *s = new_episode(alert, now);
                } else {
                    s.runs += 1;
                    s.last_seen = now;
                }
            })
            .or_insert_with(|| new_episode(alert, now));
        entry.labels = alert.labels.clone();
        entry.annotations = alert.annotations.clone();
        entry.value = alert.value.clone();
        if entry.status == Status::Pending && hold_met(policy.hold, entry, now) {
            entry.status = Status::Firing;
            entry.firing_since = Some(now);
        }
        if entry.status == Status::Firing {
            firing.push((fingerprint, silenced, outcome.transitions.len()));
        } else {
            entry.inhibited_by = None;
        }
        outcome.transitions.push(Transition {
            labels: alert.labels.clone(),
            from: previous,
            to: Some(entry.status),
            silenced,
            inhibited_by: None,
        });
    }

    let retention = settings.retention.as_secs_f64();
    let mut forget = Vec::new();
    for (fingerprint, entry) in state.alerts.iter_mut() {
        if seen.contains(fingerprint) {
            continue;
        }
        let source = entry.labels.get("source").map_or("", String::as_str);
        let is_unreachable_alert = entry
            .labels
            .get("alertname")
            .is_some_and(|n| n == rules::SOURCE_UNREACHABLE);
        // A source we could not read tells nothing about its alerts: keep them as they are.
        if failed.contains(source) && !is_unreachable_alert {
            continue;
        }
        let row = (
            source.to_string(),
            entry.labels.get("proxy").cloned().unwrap_or_default(),
            entry.labels.get("server").cloned().unwrap_or_default(),
        );
        if unchecked.contains(&row) {
            continue;
        }
        let policy = Policy::of(config, entry.labels.get("alertname").map(String::as_str));
        if policy.reads_counters && counters_reset.contains(source) {
            continue;
        }
        // A firing alert only: a pending one is forgotten as usual, so that its `for`
        // starts again rather than count the uncovered runs as held.
        if entry.status == Status::Firing
            && policy
                .windows
                .iter()
                .any(|w| uncovered.contains(&(source, w.to_bits())))
        {
            continue;
        }
        match entry.status {
            Status::Pending => {
                forget.push(fingerprint.clone());
                outcome.transitions.push(Transition {
                    labels: entry.labels.clone(),
                    from: Some(Status::Pending),
                    to: None,
                    silenced: false,
                    inhibited_by: None,
                });
            }
            Status::Firing => {
                let keep = policy.keep_firing_for.map_or(0.0, |d| d.as_secs_f64());
                if now - entry.last_seen < keep {
                    continue;
                }
                let silenced = state
                    .silences
                    .iter()
                    .any(|s| s.silences(&entry.labels, now))
                    || config
                        .recurring_silences
                        .iter()
                        .any(|s| s.silences(&entry.labels, now));
                entry.status = Status::Resolved;
                entry.resolved_at = Some(now);
                entry.runs = 0;
                entry.inhibited_by = None;
                // The recovery of a problem that was announced is announced even during a
                // silence or an inhibition: they hold back news of a problem, and without
                // this the receivers would believe forever that it still fires. A problem
                // never announced (inhibited or silenced all along) recovers in silence.
                if entry.notified_at.is_some() && quiet != Quiet::All {
                    for (route, delivery) in deliveries(config, policy.notify, &entry.labels) {
                        let send_resolved = policy
                            .send_resolved
                            .or(route.and_then(|r| r.send_resolved))
                            .unwrap_or(settings.send_resolved);
                        if send_resolved && announced_on(entry, route) {
                            events.push((notice(fingerprint, entry, false), false, delivery));
                        }
                    }
                }
                outcome.transitions.push(Transition {
                    labels: entry.labels.clone(),
                    from: Some(Status::Firing),
                    to: Some(Status::Resolved),
                    silenced,
                    inhibited_by: None,
                });
            }
            Status::Resolved => {
                if entry.resolved_at.is_none_or(|at| now - at > retention) {
                    forget.push(fingerprint.clone());
                }
            }
        }
    }
    for fingerprint in forget {
        state.alerts.remove(&fingerprint);
    }

    // Announcements, once every alert has moved: an `[[inhibit]]` source counts if it
    // fires after this run, whether it started to fire in this run (a backend and its
    // servers going down together make one BackendDown notification) or stopped in it
    // (its targets that still fire are announced now). Sources whose read failed keep
    // their alerts, and so keep inhibiting.
    let inhibitors: Vec<(String, Labels)> = if config.inhibit.is_empty() {
        Vec::new()
    } else {
        state
            .alerts
            .iter()
            .filter(|(_, e)| e.status == Status::Firing)
            .map(|(fp, e)| (fp.clone(), e.labels.clone()))
            .collect()
    };
    let firing_now: Vec<(&str, &Labels)> =
        inhibitors.iter().map(|(fp, l)| (fp.as_str(), l)).collect();
    let index = crate::inhibit::Inhibitors::new(&config.inhibit, &firing_now);
    // Alerts kept firing without being evaluated (their source failed, a server in INI,
    // counters reset, `keep_firing_for`): what inhibits them may have changed meanwhile.
    for (fingerprint, entry) in state.alerts.iter_mut() {
        if entry.status == Status::Firing && !seen.contains(fingerprint) {
            entry.inhibited_by = index
                .inhibitor(fingerprint, &entry.labels)
                .map(|(fp, _)| fp.to_string());
        }
    }
    for (fingerprint, silenced, transition) in firing {
        let Some(entry) = state.alerts.get_mut(&fingerprint) else {
            continue;
        };
        let inhibitor = index.inhibitor(&fingerprint, &entry.labels);
        entry.inhibited_by = inhibitor.map(|(fp, _)| fp.to_string());
        if let Some((_, by)) = inhibitor {
            outcome.transitions[transition].inhibited_by = Some(by.clone());
            // Not announced, and `notified_at` stays as it was: an alert never announced
            // is announced once nothing inhibits it, if it still fires then.
            continue;
        }
        if silenced {
            continue;
        }
        // One delivery per route the alert reaches, each repeating on its own clock.
        let policy = Policy::of(config, entry.labels.get("alertname").map(String::as_str));
        for (route, delivery) in deliveries(config, policy.notify, &entry.labels) {
            // A muted route sends nothing and does not count the alert as announced, so it
            // is announced when the mute ends if it still fires (Alertmanager's
            // mute_time_intervals / active_time_intervals).
            if config.notifiers.tree.muted(route, now).is_some() {
                continue;
            }
            let (last, interval) = match route {
                None => (entry.notified_at, settings.repeat_interval),
                Some(r) => (entry.routes_notified.get(&r.id).copied(), r.repeat_interval),
            };
            if last.is_some_and(|at| now - at < interval.as_secs_f64()) {
                continue;
            }
            entry.notified_at = Some(now);
            if let Some(r) = route {
                entry.routes_notified.insert(r.id.clone(), now);
            }
            if quiet == Quiet::No {
                events.push((notice(&fingerprint, entry, last.is_some()), true, delivery));
            }
        }
    }
    state.last_run = Some(now);
    outcome.transitions.sort_by(|a, b| a.labels.cmp(&b.labels));
    let still = if quiet == Quiet::All {
        Vec::new()
    } else {
        still_firing(config, state, &events, now)
    };
    for (notice, _, _) in &mut events {
        notice.generator_url = config.link_of(&notice.labels);
    }
    outcome.notifications = plan(events, still, settings.max_notifications_per_run, now);
    thread(&mut outcome.notifications, state);
    outcome
}

/// Threads notifications per incident and route: a route's first announcement starts
/// its thread (the alert remembers the notification's id for that route); that route's
/// repeats and recovery refer to it. Another route that first announces later (after a
/// mute) starts its own thread, leaving the others' alone: their readers never got its
/// mail. A thread from a state written before threads were per route (`thread`) is the
/// thread of every route that announced the alert then.
fn thread(notifications: &mut [Notification], state: &mut State) {
    for n in notifications {
        let id = n.id();
        for notice in n.firing.iter_mut().chain(n.resolved.iter_mut()) {
            let Some(entry) = state.alerts.get_mut(&notice.fingerprint) else {
                continue;
            };
            let starts = notice.ends_at.is_none() && !notice.repeat;
            if starts {
                entry.threads.insert(notice.route.clone(), id.clone());
            } else {
                notice.thread = entry
                    .threads
                    .get(&notice.route)
                    .or(entry.thread.as_ref())
                    .cloned();
            }
        }
    }
}

/// The alerts that fire and were announced, are neither silenced nor inhibited, and are
/// not news in this run: candidates for the `still_firing` list of their group's notification.
fn still_firing(
    config: &Config,
    state: &State,
    events: &[(Notice, bool, Delivery)],
    now: f64,
) -> Vec<(Notice, Delivery)> {
    let news: HashSet<&str> = events
        .iter()
        .map(|(n, _, _)| n.fingerprint.as_str())
        .collect();
    state
        .alerts
        .iter()
        .filter(|(fingerprint, entry)| {
            entry.status == Status::Firing
                && entry.notified_at.is_some()
                && entry.inhibited_by.is_none()
                && !news.contains(fingerprint.as_str())
                && !silenced(config, state, &entry.labels, now)
        })
        .flat_map(|(fingerprint, entry)| {
            let policy = Policy::of(config, entry.labels.get("alertname").map(String::as_str));
            let mut notice = notice(fingerprint, entry, false);
            notice.generator_url = config.link_of(&notice.labels);
            deliveries(config, policy.notify, &entry.labels)
                .into_iter()
                .filter(|(route, _)| announced_on(entry, *route))
                .map(|(_, delivery)| (notice.clone(), delivery))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Source labels with more names than this are not tried one subset at a time when an
/// alert is adopted (2^N label sets); only "all of them" is.
const ADOPT_SUBSETS_UP_TO: usize = 8;

/// Source labels are part of an alert's identity (its fingerprint), so a state written
/// before a source had them (an upgrade, or labels added to a source later) knows its
/// alerts under other fingerprints. An alert new by fingerprint takes over the entry of
/// the same alert without some of its source's labels, so that a firing problem is not
/// announced again (nor its old identity resolved). Labels the rule sets itself are part
/// of the identity either way and are never left out.
fn adopt_without_source_labels(
    config: &Config,
    state: &mut State,
    alert: &Alert,
    rule: Option<&rules::Rule>,
    fingerprint: &str,
) {
    let source = alert.label("source");
    let added: Vec<&String> = config
        .source_labels(source)
        .iter()
        .filter(|(name, value)| {
            alert.labels.get(*name) == Some(*value)
                && !rule.is_some_and(|r| r.labels.contains_key(*name))
        })
        .map(|(name, _)| name)
        .collect();
    if added.is_empty() {
        return;
    }
    let subsets: Vec<u64> = if added.len() <= ADOPT_SUBSETS_UP_TO {
        // Every non-empty subset, the largest (all labels) first: the likeliest past.
        let all = (1u64 << added.len()) - 1;
        let mut subsets: Vec<u64> = (1..=all).collect();
        subsets.sort_by_key(|s| std::cmp::Reverse(s.count_ones()));
        subsets
    } else {
        vec![u64::MAX]
    };
    for subset in subsets {
        let mut labels = alert.labels.clone();
        for (i, name) in added.iter().enumerate() {
            if subset & (1 << i.min(63)) != 0 {
                labels.remove(*name);
            }
        }
        let old = crate::alert::Fingerprint::of(&labels).to_string();
        if let Some(entry) = state.alerts.remove(&old) {
            state.alerts.insert(fingerprint.to_string(), entry);
            return;
        }
    }
}

/// Where an alert's notices go: notifiers (empty: the `[routes]` table decides), how they
/// are grouped, and the `[[route]]` id (empty: the root).
#[derive(Debug, Clone)]
struct Delivery {
    receivers: Vec<String>,
    group_by: Vec<String>,
    route: String,
}

/// The routes an alert with `labels` reaches (`None`: the root) and what each means for
/// its notices. A rule's `notify` (or `[source_unreachable]`'s) bypasses the routing tree.
fn deliveries<'c>(
    config: &'c Config,
    notify: &[String],
    labels: &Labels,
) -> Vec<(Option<&'c crate::route::Route>, Delivery)> {
    let notify = notify.to_vec();
    let matched = if notify.is_empty() {
        config.notifiers.tree.matches(labels)
    } else {
        Vec::new()
    };
    if matched.is_empty() {
        return vec![(
            None,
            Delivery {
                receivers: notify,
                group_by: config.alerting.group_by.clone(),
                route: String::new(),
            },
        )];
    }
    matched
        .into_iter()
        .map(|route| {
            (
                Some(route),
                Delivery {
                    receivers: route.notify.clone(),
                    group_by: route.group_by.clone(),
                    route: route.id.clone(),
                },
            )
        })
        .collect()
}

/// Whether a silence (`hapwatch silence add`) or a `[[recurring_silence]]` holds back
/// the notifications of an alert with `labels` at `now`.
fn silenced(config: &Config, state: &State, labels: &Labels, now: f64) -> bool {
    state.silences.iter().any(|s| s.silences(labels, now))
        || config
            .recurring_silences
            .iter()
            .any(|s| s.silences(labels, now))
}

/// Whether `route` (`None`: the root) announced this episode of `entry`.
fn announced_on(entry: &AlertState, route: Option<&crate::route::Route>) -> bool {
    match route {
        None => entry.notified_at.is_some(),
        Some(r) => entry.routes_notified.contains_key(&r.id),
    }
}

/// A wall clock that stepped back (an NTP step, a VM restored from a snapshot) leaves the
/// alerts' times "in the future". Counted as they are, a pending alert would wait its
/// `for` plus the step, a firing one whose condition cleared would be kept (`now -
/// last_seen` below its `keep_firing_for`, even 0) and a repeat would wait too long, all
/// until the clock catches up. They count from now instead, as the outbox does; the
/// window histories and samples have their own guards (a sample from the future starts
/// no window, and an interval that is not positive gives no rate). Likewise a silence
/// added before the step (`silence add` starts it when added) starts now, not "in the
/// future"; rule tests, whose silences may start later, never step back.
fn clamp_future(state: &mut State, now: f64) {
    if state.last_run.is_none_or(|last| last <= now) {
        return;
    }
    for silence in &mut state.silences {
        silence.starts_at = silence.starts_at.min(now);
    }
    for entry in state.alerts.values_mut() {
        entry.active_since = entry.active_since.min(now);
        entry.last_seen = entry.last_seen.min(now);
        for t in [
            &mut entry.firing_since,
            &mut entry.notified_at,
            &mut entry.resolved_at,
        ]
        .into_iter()
        .flatten()
        {
            *t = t.min(now);
        }
        for t in entry.routes_notified.values_mut() {
            *t = t.min(now);
        }
    }
}

fn new_episode(alert: &Alert, now: f64) -> AlertState {
    AlertState {
        labels: alert.labels.clone(),
        annotations: alert.annotations.clone(),
        value: alert.value.clone(),
        status: Status::Pending,
        active_since: now,
        firing_since: None,
        last_seen: now,
        runs: 1,
        notified_at: None,
        resolved_at: None,
        thread: None,
        threads: BTreeMap::new(),
        routes_notified: BTreeMap::new(),
        silenced: false,
        inhibited_by: None,
    }
}

fn hold_met(hold: Hold, entry: &AlertState, now: f64) -> bool {
    match hold {
        Hold::Immediately => true,
        Hold::Runs(n) => entry.runs >= n,
        Hold::For(d) => now - entry.active_since >= d.as_secs_f64(),
    }
}

fn notice(fingerprint: &str, entry: &AlertState, repeat: bool) -> Notice {
    Notice {
        fingerprint: fingerprint.to_string(),
        labels: entry.labels.clone(),
        annotations: entry.annotations.clone(),
        value: entry.value.clone(),
        starts_at: entry.firing_since.unwrap_or(entry.active_since),
        ends_at: entry
            .resolved_at
            .filter(|_| entry.status == Status::Resolved),
        repeat,
        thread: None,
        route: String::new(),
        generator_url: None,
    }
}

/// Groups events by their route's `group_by` labels, route and receivers; beyond
/// `budget` groups, the rest go into one digest.
fn plan(
    events: Vec<(Notice, bool, Delivery)>,
    still: Vec<(Notice, Delivery)>,
    budget: usize,
    now: f64,
) -> Vec<Notification> {
    let key_of = |labels: &Labels, delivery: &Delivery| {
        let group_labels: Labels = delivery
            .group_by
            .iter()
            .filter_map(|name| labels.get(name).map(|v| (name.clone(), v.clone())))
            .collect();
        let mut key = format_labels(&group_labels);
        // Without routes the key is what it always was (outbox items carry it).
        if !delivery.route.is_empty() {
            key.push_str(&format!("@route={}", delivery.route));
        }
        if !delivery.receivers.is_empty() {
            key.push_str(&format!(":{}", delivery.receivers.join(",")));
        }
        (key, group_labels)
    };
    let mut groups: BTreeMap<String, Notification> = BTreeMap::new();
    for (mut notice, firing, delivery) in events {
        let (key, group_labels) = key_of(&notice.labels, &delivery);
        notice.route = delivery.route.clone();
        let receivers = delivery.receivers;
        let group = groups.entry(key.clone()).or_insert_with(|| Notification {
            group_key: key,
            group_labels,
            digest: false,
            receivers,
            firing: Vec::new(),
            resolved: Vec::new(),
            still_firing: Vec::new(),
            still_firing_more: 0,
            created_at: now,
        });
        if firing {
            group.firing.push(notice);
        } else {
            group.resolved.push(notice);
        }
    }
    // Only groups that have news get a notification; what still fires rides along.
    for (notice, delivery) in still {
        if let Some(group) = groups.get_mut(&key_of(&notice.labels, &delivery).0) {
            group.still_firing.push(notice);
        }
    }
    let mut notifications: Vec<Notification> = groups.into_values().collect();
    for n in &mut notifications {
        n.firing.sort_by(|a, b| a.labels.cmp(&b.labels));
        n.resolved.sort_by(|a, b| a.labels.cmp(&b.labels));
        n.still_firing.sort_by(|a, b| a.labels.cmp(&b.labels));
        cap_still_firing(n);
    }
    let budget = budget.max(1);
    if notifications.len() > budget {
        let rest = notifications.split_off(budget - 1);
        let mut receivers: Vec<String> = rest.iter().flat_map(|n| n.receivers.clone()).collect();
        receivers.sort();
        receivers.dedup();
        notifications.push(Notification {
            group_key: "{digest=\"true\"}".into(),
            group_labels: [("digest".to_string(), "true".to_string())].into(),
            digest: true,
            receivers,
            firing: rest.iter().flat_map(|n| n.firing.clone()).collect(),
            resolved: rest.iter().flat_map(|n| n.resolved.clone()).collect(),
            still_firing: rest.iter().flat_map(|n| n.still_firing.clone()).collect(),
            still_firing_more: rest.iter().map(|n| n.still_firing_more).sum(),
            created_at: now,
        });
        if let Some(digest) = notifications.last_mut() {
            cap_still_firing(digest);
        }
    }
    notifications
}

/// Keeps at most [`STILL_FIRING_LISTED`] still-firing alerts in a notification and counts
/// the rest.
fn cap_still_firing(n: &mut Notification) {
    if n.still_firing.len() > crate::vocab::STILL_FIRING_LISTED {
        n.still_firing_more += n.still_firing.len() - crate::vocab::STILL_FIRING_LISTED;
        n.still_firing.truncate(crate::vocab::STILL_FIRING_LISTED);
    }
}

/// `{a="1",b="2"}`.
pub fn format_labels(labels: &Labels) -> String {
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", inner.join(","))
}
