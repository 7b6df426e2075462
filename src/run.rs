//! One run cycle, built once from a loaded config and driven by any front end: `hapwatch
//! run` (with `--dry-run` or `--nagios`), `hapwatch test`, and a long-running mode that
//! calls [`Pipeline::cycle`] in a loop.
//!
//! A cycle locks the state, reads every source (evaluating rows as they arrive), steps the
//! engine, plans notifications, delivers them write-ahead through the outbox, and pings the
//! heartbeat. It returns an [`Outcome`] and writes nothing on stdout: turning the outcome
//! into a table, a dry-run rendering or a Nagios line is `report`'s job. Problems that an
//! operator must see (a corrupt state file, a source that fails, a failed delivery) are
//! [`Problem`]s of the outcome, in the order they happened, already deduplicated across
//! cycles through the state's `problems`: the front end prints them (`hapwatch run` on
//! stderr at exit, the watch loop after each cycle).

use crate::alert::Labels;
use crate::config::Config;
use crate::engine::{self, SourceResult};
use crate::error::Error;
use crate::history::{self, History};
use crate::log;
use crate::notify::{self, Notifiers, Payload, RuleRoute, RuleRoutes};
use crate::source::{self, Fetched};
use crate::state::{self, Loaded, Lock, State};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where notifications go when the config names no notifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WithoutNotifiers {
    /// Printed on stdout by the delivery (cron mails them), as text or JSON lines.
    Stdout {
        /// JSON lines instead of text.
        json: bool,
    },
    /// Nowhere (`--nagios`, whose stdout is the status line).
    Nowhere,
}

/// What a front end asks of one cycle.
#[derive(Debug, Clone)]
pub struct Options {
    /// The state file; `None`: the config's `[state] file`.
    pub state_path: Option<PathBuf>,
    /// Take over a state file that another config claimed (`--adopt-state`).
    pub adopt_state: bool,
    /// Read the state without locking or changing it, and deliver nothing.
    pub dry_run: bool,
    /// When the run started: the run's time budget (`run_timeout`) counts from here.
    pub started: Instant,
}

/// The run pipeline: a loaded config (rules compiled, notifiers built) and the notifiers
/// that stand in when the config has none.
#[derive(Debug)]
pub struct Pipeline {
    config: Config,
    implicit: Option<Notifiers>,
    rule_routes: RuleRoutes,
}

/// What one step of the engine decided: the engine's outcome and the deliveries planned
/// per notifier.
#[derive(Debug)]
pub struct Evaluation {
    /// Active alerts, their transitions and the notifications they cause.
    pub step: engine::Outcome,
    /// `(notifier, payload)` for every delivery planned.
    pub planned: Vec<(String, Payload)>,
}

/// How reading one source went.
#[derive(Debug, Clone)]
pub struct SourceRead {
    /// The source's name.
    pub name: String,
    /// Rows read, or why the source could not be read (secrets masked).
    pub rows: Result<usize, String>,
    /// Time the read took.
    pub elapsed: Duration,
}

/// A line an operator must see from a cycle, at the level it is to be printed at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Error and Warn lines show by default; Info lines (a problem that lasts, already
    /// reported when it started) only with `-v`.
    pub level: log::Level,
    /// The line, one line, secrets not yet masked (the log masks them).
    pub text: String,
    /// For a problem that may last across cycles (`source NAME`, `heartbeat`): its key in
    /// the state's `problems`, which makes it print once when it starts and once when it
    /// ends. `None` for a line of this cycle only.
    pub lasting: Option<String>,
}

impl Problem {
    fn new(level: log::Level, text: impl Into<String>) -> Problem {
        Problem {
            level,
            text: text.into(),
            lasting: None,
        }
    }
}

/// A cycle that failed: the error, and the problems it had met before (a corrupt state
/// file moved aside, …), which are to be printed before the error.
#[derive(Debug)]
pub struct Failed {
    /// What stopped the cycle.
    pub error: Error,
    /// What the cycle met before it stopped, in order.
    pub problems: Vec<Problem>,
}

/// What one cycle did.
#[derive(Debug)]
pub struct Outcome {
    /// What an operator must see, in the order it happened (see [`Problem`]).
    pub problems: Vec<Problem>,
    /// Each source, in config order: rows read or the error.
    pub read: Vec<SourceRead>,
    /// Sources read.
    pub sources: usize,
    /// Sources that could not be read.
    pub unreachable: usize,
    /// Active alerts, transitions and notifications of this cycle.
    pub step: engine::Outcome,
    /// A dry run: the deliveries that would be made (empty otherwise).
    pub planned: Vec<(String, Payload)>,
    /// A dry run: each planned delivery rendered for a configured notifier, or why it
    /// cannot be (empty otherwise).
    pub rendered: Vec<(String, Result<notify::Message, String>)>,
    /// Deliveries queued in the outbox by this cycle (before sending).
    pub queued: usize,
    /// Deliveries sent by this cycle (outbox retries included).
    pub sent: usize,
    /// Deliveries left in the outbox after this cycle.
    pub outbox: usize,
    /// Labels of every alert firing after this cycle.
    pub firing: Vec<Labels>,
    /// Alerts pending after this cycle.
    pub pending: usize,
    /// Something went wrong (a source, the state file, a delivery): exit 1 in a run.
    pub trouble: bool,
    /// Time since [`Options::started`] when the cycle ended.
    pub elapsed: Duration,
}

impl Pipeline {
    /// The pipeline for `config`; `without` says where notifications go when the config
    /// has no notifier.
    pub fn new(config: Config, without: WithoutNotifiers) -> Pipeline {
        let implicit = config.notifiers.is_empty().then(|| match without {
            WithoutNotifiers::Stdout { json } => Notifiers::stdout(json),
            WithoutNotifiers::Nowhere => Notifiers::default(),
        });
        // Planning needs what each rule says about delivery, not the rules themselves.
        let mut rule_routes = RuleRoutes::new();
        for rule in &config.rules.rules {
            rule_routes
                .entry(rule.name.clone())
                .or_insert_with(|| RuleRoute {
                    notify: rule.notify.clone(),
                    send_resolved: rule.send_resolved,
                });
        }
        rule_routes.insert(
            crate::rules::SOURCE_UNREACHABLE.to_string(),
            RuleRoute {
                notify: config.source_unreachable.notify.clone(),
                send_resolved: config.source_unreachable.send_resolved,
            },
        );
        Pipeline {
            config,
            implicit,
            rule_routes,
        }
    }

    /// The config the pipeline was built from.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The notifiers deliveries are planned for: the config's, or the stand-in.
    pub fn notifiers(&self) -> &Notifiers {
        self.implicit.as_ref().unwrap_or(&self.config.notifiers)
    }

    /// One engine step over `sources` at `now` on `state`, and the deliveries it plans.
    /// `quiet` marks alerts that fire now as announced without notifying (after a state
    /// was lost, and on a standby node: [`engine::Quiet`]); `standby` keeps Alertmanager
    /// notifiers with `follow_only_if` silent.
    pub fn evaluate(
        &self,
        state: &mut State,
        now: f64,
        sources: &mut [SourceResult<'_>],
        quiet: impl Into<engine::Quiet>,
        standby: bool,
    ) -> Evaluation {
        let config = &self.config;
        let interval = state.last_run.map_or(60.0, |last| now - last);
        let step = engine::step(config, state, now, sources, quiet);
        let notifiers = self.notifiers();
        let mut planned = notify::plan(
            notifiers,
            &self.rule_routes,
            &config.links,
            state,
            &step.notifications,
            now,
            interval,
        );
        // On the standby node, Alertmanager notifiers with `follow_only_if` stay silent too:
        // two nodes that disagree for a run would otherwise make Alertmanager announce a
        // recovery and the problem again.
        if standby {
            planned.retain(|(name, _)| {
                !matches!(
                    notifiers.get(name).map(|n| &n.kind),
                    Some(notify::Kind::Alertmanager(cfg)) if cfg.follow_only_if
                )
            });
        }
        Evaluation { step, planned }
    }

    /// One cycle at time `now` (Unix seconds): lock the state, read every source, step the
    /// engine, deliver (write-ahead), save, ping the heartbeat. A dry run reads the state
    /// without locking or repairing it and renders instead of delivering. Prints nothing:
    /// what an operator must see is in [`Outcome::problems`] (or [`Failed::problems`]).
    pub fn cycle(&self, now: f64, options: &Options) -> Result<Outcome, Failed> {
        let mut problems = Vec::new();
        match self.cycle_into(now, options, &mut problems) {
            Ok(mut outcome) => {
                outcome.problems = problems;
                Ok(outcome)
            }
            Err(error) => Err(Failed { error, problems }),
        }
    }

    fn cycle_into(
        &self,
        now: f64,
        options: &Options,
        problems: &mut Vec<Problem>,
    ) -> Result<Outcome, Error> {
        let config = &self.config;
        let path = options.state_path.as_deref().unwrap_or(&config.state.file);
        let dry_run = options.dry_run;
        let mut trouble = false;

        // A dry run reads the state without locking or repairing it: the rename in `save`
        // means it always sees a whole file.
        let lock = if dry_run {
            None
        } else {
            Some(Lock::acquire(path, config.state.lock_timeout)?)
        };
        // HAProxy takes a while to produce a big dump: read the state meanwhile. Each
        // source's rows are evaluated as they arrive, once the state (their previous
        // samples) is read.
        let samples = engine::PendingSamples::new();
        let windows = engine::PendingWindows::new();
        /// Sets the samples (to none) if reading the state panics, so that the watches
        /// waiting for them let the scope end.
        struct Unblock<'a>(&'a engine::PendingSamples);
        impl Drop for Unblock<'_> {
            fn drop(&mut self) {
                let _ = self.0.set(Default::default());
            }
        }
        let (loaded, fetched) = std::thread::scope(|scope| {
            let unblock = Unblock(&samples);
            let watches = config
                .sources
                .iter()
                .map(|s| engine::Watch::new(config, &s.name, now, &samples).with_windows(&windows))
                .collect();
            let fetching = scope.spawn(|| {
                source::fetch_all_into(
                    &config.sources,
                    config.rules.type_mask(),
                    watches,
                    config.max_parallel_sources,
                )
            });
            let mut loaded = match &lock {
                Some(lock) => lock.load(),
                None => state::peek(path),
            };
            let (previous, histories) = match &mut loaded {
                Ok(Loaded::Ok(state) | Loaded::Salvaged { state, .. }) => (
                    std::mem::take(&mut state.samples),
                    std::mem::take(&mut state.windows),
                ),
                _ => Default::default(),
            };
            // The histories first: a watch reads them once the samples are set.
            let _ = windows.set(histories);
            // Set in every case: the watches wait for it.
            let _ = samples.set(previous);
            drop(unblock);
            let fetched: (Vec<Fetched>, Vec<engine::Evaluated>) = fetching
                .join()
                .expect("the fetch thread panicked")
                .into_iter()
                .map(|(fetched, watch)| (fetched, watch.finish()))
                .unzip();
            (loaded, fetched)
        });
        let (fetched, evaluated) = fetched;
        let samples = samples.into_inner().unwrap_or_default();
        let windows = windows.into_inner().unwrap_or_default();
        let (mut current, mut quiet) = match loaded? {
            Loaded::Ok(mut s) => {
                s.samples = samples;
                s.windows = windows;
                (s, engine::Quiet::No)
            }
            Loaded::Missing => (State::new(), engine::Quiet::No),
            Loaded::Salvaged {
                mut state,
                moved_to,
                lost,
            } => {
                problems.push(Problem::new(
                    log::Level::Error,
                    salvaged_line(path, &moved_to, &lost, dry_run),
                ));
                trouble = true;
                state.samples = samples;
                state.windows = windows;
                // Without some of its alerts, the run cannot tell a new problem from one
                // announced before: as with an unusable file, no problem is announced this
                // once; recoveries of the alerts it kept still are.
                let alerts_lost = lost.iter().any(|l| l.starts_with("alerts"));
                (
                    state,
                    if alerts_lost {
                        engine::Quiet::Firing
                    } else {
                        engine::Quiet::No
                    },
                )
            }
            Loaded::Corrupt { moved_to, reason } => {
                problems.push(Problem::new(log::Level::Error, format!(
                    "state file {} was unusable ({reason}); {} and starting from empty state without re-announcing alerts already firing",
                    path.display(),
                    if dry_run { "ignoring it".to_string() } else { format!("moved it to {}", moved_to.display()) }
                )));
                trouble = true;
                (State::new(), engine::Quiet::All)
            }
        };
        current.claim(path, &config_id(config), options.adopt_state)?;
        let mut standby = false;
        if let Some(guard) = &config.only_if {
            match guard.active() {
                Ok(true) => {}
                Ok(false) => {
                    problems.push(Problem::new(
                        log::Level::Info,
                        "only_if: this is not the active node; alerts are tracked, not announced",
                    ));
                    quiet = engine::Quiet::All;
                    standby = true;
                }
                Err(e) => problems.push(Problem::new(
                    log::Level::Warn,
                    format!("{e}; notifying as if active"),
                )),
            }
        }

        // A source that stays unreadable is reported when it fails and when it answers
        // again (every run with -v): its SourceUnreachable alert already tells that it lasts.
        for f in &fetched {
            let problem = f
                .result
                .as_ref()
                .err()
                .map(|e| format!("source {}: {e}", f.name));
            trouble |= problem.is_some();
            let key = format!("source {}", f.name);
            // A failed read that `[source_unreachable]` `for`/`for_runs` still holds back
            // is no news for cron's mail either: shown with -v (and by dry runs), printed
            // once it fires.
            if let Some(line) = problem.as_ref().filter(|_| {
                !dry_run && !engine::source_unreachable_fires(config, &current, &f.name, now)
            }) {
                log::info(format!(
                    "{line} (not reported yet: [source_unreachable] waits for it to last)"
                ));
                continue;
            }
            if dry_run {
                if let Some(problem) = problem {
                    problems.push(Problem::new(log::Level::Error, problem));
                }
            } else {
                problems.extend(report_problem(
                    &mut current.problems,
                    &key,
                    problem,
                    now,
                    log::Level::Error,
                ));
            }
        }
        // Problems of sources, notifiers (or a heartbeat) no longer configured are of no
        // further use.
        current.problems.retain(|key, _| {
            if let Some(name) = key.strip_prefix("source ") {
                config.source(name).is_some()
            } else if let Some(name) = key.strip_prefix(NOTIFIER_KEY) {
                self.notifiers().get(name).is_some()
            } else {
                key != "heartbeat" || config.heartbeat.is_some()
            }
        });
        // Masked here, once: these texts become the SourceUnreachable summary, so they
        // reach every notifier, the state file and dry runs.
        let errors: Vec<String> = fetched
            .iter()
            .map(|f| {
                f.result
                    .as_ref()
                    .err()
                    .map(|e| crate::secret::redact(&e.to_string()))
                    .unwrap_or_default()
            })
            .collect();
        let mut results: Vec<SourceResult<'_>> = fetched
            .iter()
            .zip(&errors)
            .zip(evaluated)
            .map(|((f, error), evaluated)| SourceResult {
                name: &f.name,
                result: f.result.as_ref().map_err(|_| error.clone()),
                // A failed source's watch saw part of a dump at most.
                evaluated: f.result.is_ok().then_some(evaluated),
            })
            .collect();
        // Who is inhibited before the step: the history writes a line when that changes.
        let inhibited_before = if config.history.enabled && !dry_run {
            history::inhibited(&current)
        } else {
            std::collections::HashSet::new()
        };
        let Evaluation { step, planned } =
            self.evaluate(&mut current, now, &mut results, quiet, standby);
        let notifiers = self.notifiers();

        let mut outcome = Outcome {
            problems: Vec::new(),
            read: fetched
                .iter()
                .zip(&errors)
                .map(|(f, error)| SourceRead {
                    name: f.name.clone(),
                    rows: f
                        .result
                        .as_ref()
                        .map(|s| s.stats.len())
                        .map_err(|_| error.clone()),
                    elapsed: f.elapsed,
                })
                .collect(),
            sources: fetched.len(),
            unreachable: fetched.iter().filter(|f| f.result.is_err()).count(),
            step,
            planned: Vec::new(),
            rendered: Vec::new(),
            queued: 0,
            sent: 0,
            outbox: 0,
            firing: Vec::new(),
            pending: 0,
            trouble: false,
            elapsed: Duration::ZERO,
        };
        if dry_run {
            outcome.rendered = planned
                .iter()
                .filter_map(|(name, payload)| {
                    let notifier = config.notifiers.get(name)?;
                    Some((
                        name.clone(),
                        notify::render(&config.notifiers, notifier, payload, false, now),
                    ))
                })
                .collect();
            outcome.planned = planned;
        } else if let Some(lock) = &lock {
            // Write-ahead: this run's state changes and the notifications they cause are
            // saved before anything is sent, so that nothing sent is ever unrecorded (a
            // killed run would otherwise announce a change the next run does not know
            // about), and nothing recorded is lost (the outbox sends it on the next run).
            outcome.queued = planned.len();
            if !planned.is_empty() {
                notify::enqueue(&mut current, planned, now);
                lock.save(&current)?;
            }
            // The run's time budget counts from its start: whatever it spent waiting for
            // the lock and reading the sources is not left for delivering.
            let budget = notify::Budget::new(options.started, config.alerting.run_timeout);
            let delivered = notify::deliver(
                notifiers,
                &mut current,
                config.alerting.outbox_max_age,
                now,
                &budget,
            );
            let (waiting, ended) = report_waiting(&mut current, &delivered, now);
            problems.extend(waiting);
            for line in delivered.failed.iter().chain(&delivered.expired) {
                problems.push(Problem::new(log::Level::Error, line.clone()));
            }
            problems.extend(ended);
            trouble |= !delivered.failed.is_empty()
                || !delivered.waiting.is_empty()
                || !delivered.expired.is_empty();
            outcome.sent = delivered.sent.len();
            problems.extend(self.record_history(
                path,
                &mut current,
                &inhibited_before,
                &outcome,
                &delivered,
                now,
            ));
            lock.save(&current)?;
            if let Some(heartbeat) = &config.heartbeat {
                let problem = heartbeat
                    .ping(!trouble, budget.limit(heartbeat.timeout))
                    .err();
                // Saved again only when the heartbeat starts or stops failing.
                let before = current.problems.get("heartbeat").copied();
                problems.extend(report_problem(
                    &mut current.problems,
                    "heartbeat",
                    problem,
                    now,
                    log::Level::Warn,
                ));
                if current.problems.get("heartbeat").copied() != before {
                    lock.save(&current)?;
                }
            }
        }
        outcome.firing = current
            .alerts
            .values()
            .filter(|a| a.status == state::Status::Firing)
            .map(|a| a.labels.clone())
            .collect();
        outcome.pending = current
            .alerts
            .values()
            .filter(|a| a.status == state::Status::Pending)
            .count();
        outcome.outbox = current.outbox.len();
        outcome.trouble = trouble;
        outcome.elapsed = options.started.elapsed();
        Ok(outcome)
    }
}

impl Pipeline {
    /// Appends the run's transitions and deliveries to the history. Never in the way of
    /// the run: a history that cannot be written is one warning when it starts failing
    /// (and one when it works again), as for a source: that line is returned.
    fn record_history(
        &self,
        state_path: &Path,
        current: &mut State,
        inhibited_before: &std::collections::HashSet<String>,
        outcome: &Outcome,
        delivered: &notify::Delivered,
        now: f64,
    ) -> Option<Problem> {
        let history = History::of(&self.config.history, state_path)?;
        let moves: Vec<history::Move<'_>> = outcome
            .step
            .transitions
            .iter()
            .map(|t| history::Move {
                labels: &t.labels,
                from: t.from,
                to: t.to,
                silenced: t.silenced,
            })
            .collect();
        let attempts: Vec<history::Attempt<'_>> = delivered
            .attempts
            .iter()
            .map(|(notifier, payload, error)| history::Attempt {
                notifier,
                payload,
                error: error.as_deref(),
            })
            .collect();
        let records = history::records(current, inhibited_before, &moves, &attempts, now);
        if records.is_empty() {
            return None;
        }
        let problem = history
            .append(&records, now)
            .err()
            .map(|e| format!("{e} (alerts are tracked and sent all the same)"));
        report_problem(
            &mut current.problems,
            "history",
            problem,
            now,
            log::Level::Warn,
        )
    }
}

/// The line for a problem that may last across runs (`problem`: its line now, `None`: not
/// present now): at `level` when it starts, a warning when it ends; while it lasts, an
/// info line (shown with `-v`). `problems` (in the state) remembers what was reported.
fn report_problem(
    problems: &mut std::collections::BTreeMap<String, f64>,
    key: &str,
    problem: Option<String>,
    now: f64,
    level: log::Level,
) -> Option<Problem> {
    let (level, text) = match (problem, problems.get(key).copied()) {
        (Some(line), None) => {
            problems.insert(key.to_string(), now);
            (level, line)
        }
        (Some(line), Some(since)) => (
            log::Level::Info,
            format!(
                "{line} (reported at {}; printed again when it ends)",
                crate::text::rfc3339(since)
            ),
        ),
        (None, Some(since)) => {
            problems.remove(key);
            (
                log::Level::Warn,
                format!(
                    "{key} is fine again (it failed from {} to {})",
                    crate::text::rfc3339(since),
                    crate::text::rfc3339(now)
                ),
            )
        }
        (None, None) => return None,
    };
    Some(Problem {
        level,
        text,
        lasting: Some(key.to_string()),
    })
}

/// The prefix of a notifier's key in the state's `problems`: `notifier mail`.
const NOTIFIER_KEY: &str = "notifier ";

/// The lines of deliveries that failed for now and wait in the outbox, as lasting problems
/// of their notifier (key `notifier NAME` in the state's `problems`): printed when the
/// notifier starts failing (every line of that run: each is a notification that did not go
/// out), then at info level (`-v`) while its queue waits, retried silently by the outbox;
/// and one warning when nothing failed waits for it any more (delivered, or dropped, which
/// was said on its own line). Returns those two kinds of lines apart: the ends are printed
/// after the run's other delivery lines, which say how it ended.
fn report_waiting(
    current: &mut State,
    delivered: &notify::Delivered,
    now: f64,
) -> (Vec<Problem>, Vec<Problem>) {
    let mut lines = Vec::new();
    // Notifiers whose problem starts in this run: all their lines are news.
    let mut starting = std::collections::HashSet::new();
    for (name, line) in &delivered.waiting {
        let key = format!("{NOTIFIER_KEY}{name}");
        let level = match current.problems.get(&key).copied() {
            None => {
                current.problems.insert(key.clone(), now);
                starting.insert(name.as_str());
                log::Level::Error
            }
            Some(_) if starting.contains(name.as_str()) => log::Level::Error,
            Some(since) => {
                lines.push(Problem {
                    level: log::Level::Info,
                    text: format!(
                        "{line} (reported at {}; printed again when it ends)",
                        crate::text::rfc3339(since)
                    ),
                    lasting: Some(key),
                });
                continue;
            }
        };
        lines.push(Problem {
            level,
            text: line.clone(),
            lasting: Some(key),
        });
    }
    // Over once the outbox holds nothing that failed for the notifier (items never tried
    // yet, held back by the run's time budget, are not its failure).
    let failing = |name: &str| {
        current
            .outbox
            .iter()
            .any(|i| i.notifier == name && (i.attempts > 0 || !i.last_error.is_empty()))
    };
    let over: Vec<(String, f64)> = current
        .problems
        .iter()
        .filter_map(|(key, since)| Some((key.strip_prefix(NOTIFIER_KEY)?, *since)))
        .filter(|(name, _)| !failing(name))
        .map(|(name, since)| (name.to_string(), since))
        .collect();
    let mut ended = Vec::new();
    for (name, since) in over {
        let key = format!("{NOTIFIER_KEY}{name}");
        current.problems.remove(&key);
        let delivered_now = delivered
            .attempts
            .iter()
            .any(|(n, _, error)| *n == name && error.is_none());
        let text = if delivered_now {
            format!(
                "notifier {name} works again: the outbox delivered what waited for it (it failed from {} to {})",
                crate::text::rfc3339(since),
                crate::text::rfc3339(now)
            )
        } else {
            format!(
                "notifier {name}: nothing waits for it in the outbox any more (it failed from {} to {})",
                crate::text::rfc3339(since),
                crate::text::rfc3339(now)
            )
        };
        ended.push(Problem {
            level: log::Level::Warn,
            text,
            lasting: Some(key),
        });
    }
    (lines, ended)
}

/// The identity a state file records for a config: its absolute path as given. Not the
/// real path: a deploy that switches a link (a Kubernetes ConfigMap's `..data`, a release
/// directory, a Nix store path) keeps the same config.
pub fn config_id(config: &Config) -> String {
    std::path::absolute(&config.path)
        .unwrap_or_else(|_| config.path.clone())
        .display()
        .to_string()
}

/// The line for a state file that was read only in part.
pub fn salvaged_line(path: &Path, moved_to: &Path, lost: &[String], dry_run: bool) -> String {
    const SHOWN: usize = 3;
    let mut parts = lost
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if lost.len() > SHOWN {
        parts.push_str(&format!("; and {} more", lost.len() - SHOWN));
    }
    crate::text::one_line(&format!(
        "state file {} had unreadable parts, dropped: {parts}; kept everything else (outbox included){}",
        path.display(),
        if dry_run {
            String::new()
        } else {
            format!("; the original is now {}", moved_to.display())
        }
    ))
}
