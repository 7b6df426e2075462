//! What each command does: load the config, run the stages, render, pick the exit code.

use crate::cli::{
    CheckArgs, EvalArgs, EvalFormat, ReportFormat, RunArgs, RunFormat, ShowArgs, ShowFormat,
    SilenceCommand, StateCommand,
};
use crate::config::{Config, Endpoint, HttpEndpoint, SourceConfig};
use crate::error::{Error, Exit};
use crate::history::History;
use crate::log;
use crate::notify;
use crate::report::{self, Named};
use crate::rules::Input;
use crate::run::{Options, Pipeline, WithoutNotifiers};
use crate::scope::Scope;
use crate::silence::{Matcher, Silence};
use crate::source::{self, Fetched};
use crate::state::{self, Loaded, Lock, State};
use crate::stats::{ProxyType, TypeMask};
use std::io::{BufWriter, Write};
use std::path::Path;

/// `hapwatch show`: fetch, filter, render. Exit 1 when any source failed.
pub fn show(config_path: &Path, args: &ShowArgs) -> Result<Exit, Error> {
    let config = Config::load(config_path)?;
    config.require_sources()?;
    let selected = select_sources(&config, args.source.as_deref())?;
    if args.format == ShowFormat::Csv && selected.len() > 1 {
        return Err(Error::Usage(format!(
            "--format csv prints one source's dump; pick one with --source ({})",
            source_names(&config)
        )));
    }
    let scope = Scope {
        types: args.types.iter().map(|&t| ProxyType::from(t)).collect(),
        proxies: Scope::globs(&args.proxy),
        ..Scope::default()
    };
    let fetched = source::fetch_all(selected, scope.types, config.max_parallel_sources);
    let failed = report_failures(&fetched);

    let mut out = BufWriter::new(std::io::stdout().lock());
    match args.format {
        ShowFormat::Table => {
            let named: Vec<Named<'_>> = succeeded(&fetched).collect();
            if !named.is_empty() {
                report::table(&mut out, &named, &scope, fetched.len() > 1)?;
            }
        }
        ShowFormat::Json => {
            let all: Vec<_> = fetched
                .iter()
                .map(|f| match &f.result {
                    Ok(snapshot) => Ok(Named {
                        name: &f.name,
                        snapshot,
                    }),
                    Err(e) => Err((f.name.as_str(), crate::secret::redact(&e.to_string()))),
                })
                .collect();
            report::json(&mut out, &all, &scope)?;
        }
        ShowFormat::Csv => {
            if let Some(named) = succeeded(&fetched).next() {
                report::csv(&mut out, named.snapshot, &scope)?;
            }
        }
    }
    out.flush()?;
    Ok(if failed { Exit::Trouble } else { Exit::Success })
}

/// `hapwatch check`: validate the config (rules compile, secrets resolve); with
/// `--connect`, read every source and summarize it. Captured `file` sources are always
/// read, to warn about rules that use columns a source does not report.
pub fn check(
    config_path: &Path,
    state_path: Option<&Path>,
    args: &CheckArgs,
) -> Result<Exit, Error> {
    let started = std::time::Instant::now();
    let config = Config::load(config_path)?;
    // A `ca_file` that cannot be read fails only its source in a run (the others are still
    // watched); `check` is where to find it, as the config error it is.
    for src in &config.sources {
        if let Endpoint::Http(HttpEndpoint {
            ca_file: Some(path),
            ..
        }) = &src.endpoint
        {
            if let Err(e) = std::fs::File::open(path) {
                return Err(crate::config::ConfigError::Invalid {
                    path: src.file.clone().unwrap_or_else(|| config.path.clone()),
                    line: src.line,
                    column: 1,
                    message: format!(
                        "source {:?}: ca_file {}: cannot read it: {e}",
                        src.name,
                        path.display()
                    ),
                }
                .into());
            }
        }
    }
    let connect = args.connect || args.nagios;
    let mut trouble = false;
    // With --connect the fetch resolves each secret and reports a failure itself.
    if !connect {
        for src in &config.sources {
            if let Endpoint::Http(http) = &src.endpoint {
                if let Some(Err(e)) = http.password.as_ref().map(|p| p.resolve()) {
                    log::error(format!("source {}: {e}", src.name));
                    trouble = true;
                }
            }
        }
    }
    for notifier in &config.notifiers.list {
        for secret in notifier.secrets() {
            if let Err(e) = secret.resolve() {
                log::error(format!("notifier {}: {e}", notifier.name));
                trouble = true;
            }
        }
    }
    let secrets_missing = trouble;
    if connect {
        // The run would fail on it: say so now, while the operator is at the terminal.
        if let Err(e) = state::check_usable(state_path.unwrap_or(&config.state.file)) {
            log::error(e.to_string());
            trouble = true;
        }
    }
    let mut out = std::io::stdout().lock();
    if !args.nagios {
        report::check_header(
            &mut out,
            &config.path,
            secrets_missing,
            config.sources.len(),
            config.rules.rules.len(),
            config.inhibit.len(),
        )?;
    }
    let to_read: Vec<&SourceConfig> = config
        .sources
        .iter()
        .filter(|s| connect || matches!(s.endpoint, Endpoint::File(_)))
        .collect();
    let fetched = source::fetch_all(to_read, TypeMask::ALL, config.max_parallel_sources);
    if connect {
        trouble |= report_failures(&fetched);
    }
    let mut rows = 0;
    for f in &fetched {
        let Ok(snapshot) = &f.result else { continue };
        rows += snapshot.stats.len();
        for (rule, column) in config.rules.missing_columns(snapshot) {
            log::warn(format!("rule {rule} reads `{column}`, which source {} does not report; the rule cannot match there", f.name));
        }
        // A stats page never has `show info` (a capture without it is the user's choice).
        let stats_page = config
            .sources
            .iter()
            .any(|s| s.name == f.name && matches!(s.endpoint, Endpoint::Http(_)));
        if stats_page && snapshot.info.is_none() {
            let process: Vec<&str> = config
                .rules
                .process_rules(None)
                .map(|r| r.name.as_str())
                .collect();
            if !process.is_empty() {
                log::warn(format!(
                    "source {} is a stats page, which has no `show info`: it has no process row, so rules {} cannot match there, and `info.…` is absent in its rows",
                    f.name,
                    process.join(", ")
                ));
            }
        }
        if !connect || args.nagios {
            continue;
        }
        report::source_summary(&mut out, &f.name, snapshot, f.elapsed)?;
    }
    if args.nagios {
        let failed: Vec<(&str, String)> = fetched
            .iter()
            .filter_map(|f| {
                let e = f.result.as_ref().err()?;
                Some((f.name.as_str(), e.to_string()))
            })
            .collect();
        let status =
            report::nagios_check(&mut out, &failed, fetched.len(), rows, started.elapsed())?;
        return Ok(Exit::Nagios(status));
    }
    Ok(if trouble {
        Exit::Trouble
    } else {
        Exit::Success
    })
}

/// `hapwatch eval`: the config's rules over a captured dump (and an earlier one for
/// `delta()` / `rate()`), printed as alerts.
pub fn eval(config_path: &Path, args: &EvalArgs) -> Result<Exit, Error> {
    let config = Config::load(config_path)?;
    if let Some(rule) = &args.rule {
        if !config.rules.rules.iter().any(|r| &r.name == rule) {
            let names: Vec<&str> = config.rules.rules.iter().map(|r| r.name.as_str()).collect();
            return Err(Error::Usage(format!(
                "no rule named {rule:?} in {} (rules: {})",
                config.path.display(),
                names.join(", ")
            )));
        }
    }
    let read = |path: &Path| {
        let endpoint = if path == Path::new("-") {
            Endpoint::Stdin
        } else {
            Endpoint::File(path.to_path_buf())
        };
        source::fetch(&SourceConfig {
            name: args.source.clone(),
            endpoint,
            timeout: crate::config::DEFAULT_TIMEOUT,
            labels: Default::default(),
            line: 0,
            file: None,
        })
        .map_err(|e| Error::Input(format!("{}: {e}", path.display())))
    };
    let snapshot = read(&args.snapshot)?;
    let now = unix_now();
    let previous = match &args.previous {
        Some(path) => Some(
            config
                .rules
                .sample(&read(path)?, now - args.interval.as_secs_f64()),
        ),
        None => None,
    };
    let alerts = config.rules.evaluate(
        &Input {
            source: &args.source,
            labels: config.source_labels(&args.source),
            snapshot: &snapshot,
            previous: previous.as_ref(),
            now,
        },
        args.rule.as_deref(),
    );
    let mut out = BufWriter::new(std::io::stdout().lock());
    match args.format {
        EvalFormat::Table => report::alerts_table(&mut out, &alerts)?,
        EvalFormat::Json => {
            report::pretty_json(&mut out, &alerts)?;
        }
    }
    out.flush()?;
    Ok(Exit::Success)
}

/// Seconds since the Unix epoch, as a float (the clock rates are computed with).
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn select_sources<'c>(
    config: &'c Config,
    name: Option<&str>,
) -> Result<Vec<&'c SourceConfig>, Error> {
    match name {
        None => Ok(config.sources.iter().collect()),
        Some(name) => config.source(name).map(|s| vec![s]).ok_or_else(|| {
            Error::Usage(format!(
                "no source named {name:?} in {} (sources: {})",
                config.path.display(),
                source_names(config)
            ))
        }),
    }
}

fn source_names(config: &Config) -> String {
    config
        .sources
        .iter()
        .map(|s| s.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Prints one line per failed source on stderr; true if any failed.
fn report_failures(fetched: &[Fetched]) -> bool {
    let mut failed = false;
    for f in fetched {
        if let Err(e) = &f.result {
            log::error(format!("source {}: {e}", f.name));
            failed = true;
        }
    }
    failed
}

fn succeeded(fetched: &[Fetched]) -> impl Iterator<Item = Named<'_>> {
    fetched.iter().filter_map(|f| {
        f.result.as_ref().ok().map(|snapshot| Named {
            name: &f.name,
            snapshot,
        })
    })
}

/// `hapwatch run`: one cycle of the run pipeline. Without notifiers, notifications are
/// printed on stdout (cron mails them). With `--nagios`, one plugin status line instead.
pub fn run(
    config_path: &Path,
    state_path: Option<&Path>,
    adopt_state: bool,
    args: &RunArgs,
) -> Result<Exit, Error> {
    let started = std::time::Instant::now();
    let config = Config::load(config_path)?;
    config.require_sources()?;
    let now = args.now.unwrap_or_else(unix_now);
    let without = if args.nagios {
        WithoutNotifiers::Nowhere
    } else {
        WithoutNotifiers::Stdout {
            json: args.format == RunFormat::Json,
        }
    };
    let pipeline = Pipeline::new(config, without);
    let outcome = pipeline
        .cycle(
            now,
            &Options {
                state_path: state_path.map(Path::to_path_buf),
                adopt_state,
                dry_run: args.dry_run,
                started,
            },
        )
        .map_err(|failed| {
            print_problems(&failed.problems);
            failed.error
        })?;
    // A cron run prints at exit: the order of the lines is the order the cycle met them.
    print_problems(&outcome.problems);
    let mut out = BufWriter::new(std::io::stdout().lock());
    if args.dry_run {
        match args.format {
            RunFormat::Text => report::dry_run(&mut out, &outcome.step, &outcome.rendered)?,
            RunFormat::Json => report::dry_run_json(&mut out, &outcome.step, &outcome.planned)?,
        }
    }
    log::info(report::run_summary(&outcome));
    if args.nagios {
        let status = report::nagios_run(&mut out, &outcome)?;
        out.flush()?;
        return Ok(Exit::Nagios(status));
    }
    out.flush()?;
    Ok(if outcome.trouble {
        Exit::Trouble
    } else {
        Exit::Success
    })
}

/// `hapwatch watch`: `run`'s cycle in a loop (see `watch`).
pub fn watch(
    config_path: &Path,
    state_path: Option<&Path>,
    adopt_state: bool,
    args: &crate::cli::WatchArgs,
) -> Result<Exit, Error> {
    crate::watch::watch(&crate::watch::Settings {
        config_path: config_path.to_path_buf(),
        state_path: state_path.map(Path::to_path_buf),
        adopt_state,
        every: args.every,
        without: WithoutNotifiers::Stdout {
            json: args.format == RunFormat::Json,
        },
    })
}

/// Prints a cycle's problems on stderr, each at its level.
fn print_problems(problems: &[crate::run::Problem]) {
    for problem in problems {
        log::log(problem.level, &problem.text);
    }
}

/// The state for a command that changes it, or an error for one that is unusable (a
/// silence edit never replaces what it cannot read: `hapwatch run` moves such a file
/// aside).
fn load_for_edit(lock: &Lock) -> Result<State, Error> {
    match lock.load()? {
        Loaded::Ok(s) => Ok(s),
        Loaded::Missing => Ok(State::new()),
        Loaded::Salvaged {
            state,
            moved_to,
            lost,
        } => {
            log::error(crate::run::salvaged_line(
                lock.path(),
                &moved_to,
                &lost,
                false,
            ));
            Ok(state)
        }
        Loaded::Corrupt { moved_to, reason } => {
            log::error(format!(
                "state file {} was unusable ({reason}); moved it to {}",
                lock.path().display(),
                moved_to.display()
            ));
            Ok(State::new())
        }
    }
}

/// The state for a command that only reads it: never moved, locked or written.
fn load_for_reading(path: &Path) -> Result<State, Error> {
    match state::peek(path)? {
        Loaded::Ok(s) => Ok(s),
        Loaded::Missing => Ok(State::new()),
        Loaded::Salvaged { state, lost, .. } => {
            log::error(crate::run::salvaged_line(path, path, &lost, true));
            Ok(state)
        }
        Loaded::Corrupt { reason, .. } => Err(Error::Input(format!(
            "state file {} is unusable: {reason}",
            path.display()
        ))),
    }
}

/// A silence on a label no alert carries (`srever=web1`), or on a rule that does not
/// exist, matches nothing: say so (the silence is still added: a rule may come later).
fn warn_about_unknown_labels(config: &Config, matchers: &[Matcher]) {
    let names = config.rules.label_names();
    for m in matchers {
        if !names.contains(m.label.as_str()) {
            log::warn(format!(
                "silence matcher on `{}`: no rule or source produces that label{}, so it matches nothing (labels: {})",
                m.label,
                crate::rules::expr::suggest(&m.label, names.iter().copied()),
                names.iter().copied().collect::<Vec<_>>().join(", ")
            ));
        } else if m.label == "alertname" && m.op == crate::silence::MatchOp::Equal {
            let rules = config
                .rules
                .rules
                .iter()
                .map(|r| r.name.as_str())
                .chain([crate::rules::SOURCE_UNREACHABLE]);
            if !rules.clone().any(|r| r == m.value) {
                log::warn(format!(
                    "silence matcher alertname={}: no rule has that name{}, so it matches nothing",
                    m.value,
                    crate::rules::expr::suggest(&m.value, rules)
                ));
            }
        }
    }
}

/// Who adds a silence: the user behind `sudo`, else this user's name (cron and systemd
/// set no `USER`), else the uid.
fn who_am_i() -> String {
    if let Some(name) = ["SUDO_USER", "USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|n| !n.is_empty()))
    {
        return name;
    }
    let uid = state::euid();
    state::user_name(uid).unwrap_or_else(|| format!("uid {uid}"))
}

/// `hapwatch silence add|list|remove`.
pub fn silence(
    config_path: &Path,
    state_path: Option<&Path>,
    adopt_state: bool,
    command: &SilenceCommand,
) -> Result<Exit, Error> {
    let config = Config::load(config_path)?;
    let path = state_path.unwrap_or(&config.state.file);
    let now = unix_now();
    let mut out = std::io::stdout().lock();
    if let SilenceCommand::List { format } = command {
        // Read-only: expired silences are left for the next run to remove.
        let mut current = load_for_reading(path)?;
        current.silences.retain(|s| !s.expired(now));
        match format {
            EvalFormat::Table => {
                report::silences(&mut out, &current.silences, &config.recurring_silences, now)?
            }
            EvalFormat::Json => {
                report::pretty_json(&mut out, &current.silences)?;
            }
        }
        return Ok(Exit::Success);
    }
    let lock = Lock::acquire(path, config.state.lock_timeout)?;
    let mut current = load_for_edit(&lock)?;
    current.claim(path, &crate::run::config_id(&config), adopt_state)?;
    current.silences.retain(|s| !s.expired(now));
    match command {
        SilenceCommand::Add {
            matchers,
            duration,
            comment,
        } => {
            let matchers = matchers
                .iter()
                .map(|m| Matcher::parse(m))
                .collect::<Result<Vec<_>, _>>()
                .map_err(Error::Usage)?;
            warn_about_unknown_labels(&config, &matchers);
            let id = current.next_silence_id.to_string();
            current.next_silence_id += 1;
            current.silences.push(Silence {
                id: id.clone(),
                matchers,
                starts_at: now,
                ends_at: now + duration.as_secs_f64(),
                comment: comment.clone(),
                created_by: who_am_i(),
            });
            lock.save(&current)?;
            writeln!(out, "{id}")?;
        }
        SilenceCommand::List { .. } => unreachable!("listed above"),
        SilenceCommand::Remove { id } => {
            let before = current.silences.len();
            current.silences.retain(|s| &s.id != id);
            if current.silences.len() == before {
                return Err(Error::Usage(format!(
                    "no active silence with id {id:?} (see `hapwatch silence list`)"
                )));
            }
            lock.save(&current)?;
        }
    }
    Ok(Exit::Success)
}

/// `hapwatch state show|reset`.
pub fn state(
    config_path: &Path,
    state_path: Option<&Path>,
    adopt_state: bool,
    command: &StateCommand,
) -> Result<Exit, Error> {
    let config = Config::load(config_path)?;
    let path = state_path.unwrap_or(&config.state.file);
    let mut out = std::io::stdout().lock();
    match command {
        StateCommand::Show { format } => {
            let current = load_for_reading(path)?;
            // A state file written before secrets were masked may still hold one (in an
            // outbox error or a SourceUnreachable summary): mask what is shown.
            let mut text = Vec::new();
            match format {
                EvalFormat::Table => {
                    report::state(&mut text, &current, &config.recurring_silences, unix_now())?
                }
                EvalFormat::Json => {
                    report::pretty_json(&mut text, &current)?;
                }
            }
            out.write_all(crate::secret::redact(&String::from_utf8_lossy(&text)).as_bytes())?;
        }
        StateCommand::Check { max_age } => {
            let current = load_for_reading(path)?;
            let now = unix_now();
            let problem = match current.last_run {
                None => Some(format!(
                    "state file {}: no run recorded yet; is `hapwatch watch` (or the timer) running?",
                    path.display()
                )),
                Some(at) if now - at > max_age.as_secs_f64() => Some(format!(
                    "state file {}: the last run was {} ago ({}), more than --max-age {}; is `hapwatch watch` (or the timer) running?",
                    path.display(),
                    crate::duration::format_secs((now - at).max(0.0) as u64),
                    crate::text::rfc3339(at),
                    crate::duration::format_secs(max_age.as_secs())
                )),
                Some(_) => None,
            };
            if let Some(problem) = problem {
                log::error(problem);
                return Ok(Exit::Trouble);
            }
        }
        StateCommand::Reset => {
            let lock = Lock::acquire(path, config.state.lock_timeout)?;
            // Another config's state is not this one's to forget (--adopt-state says it is).
            let mut previous = load_for_edit(&lock)?;
            previous.claim(path, &crate::run::config_id(&config), adopt_state)?;
            let mut fresh = State::new();
            fresh.config = previous.config;
            lock.save(&fresh)?;
        }
    }
    Ok(Exit::Success)
}

/// `hapwatch notify-test NAME`: one clearly marked test notification through one notifier.
pub fn notify_test(config_path: &Path, name: &str) -> Result<Exit, Error> {
    let config = Config::load(config_path)?;
    match notify::notify_test(&config, name, unix_now()) {
        Ok(done) => {
            report::notify_test_sent(&mut std::io::stdout().lock(), &done)?;
            Ok(Exit::Success)
        }
        Err(e) if config.notifiers.get(name).is_none() => Err(Error::Usage(e)),
        Err(e) => {
            log::error(format!("notifier {name}: {e}"));
            Ok(Exit::Trouble)
        }
    }
}

/// `hapwatch route --labels …`: the routes and notifiers an alert with these labels
/// reaches, like `amtool config routes test`.
/// `at`: the time to check mutes and recurring silences at (default now).
pub fn route(config_path: &Path, labels: &str, at: Option<&str>) -> Result<Exit, Error> {
    let config = Config::load(config_path)?;
    let now = match at {
        None => unix_now(),
        Some(text) => crate::timeinterval::parse_time(text)
            .map_err(|e| Error::Usage(format!("--at {text:?}: {e}")))?,
    };
    let mut set = crate::alert::Labels::new();
    for pair in labels.split(',').filter(|p| !p.trim().is_empty()) {
        let Some((name, value)) = pair.split_once('=') else {
            return Err(Error::Usage(format!(
                "--labels: {pair:?} is not NAME=VALUE (e.g. --labels alertname=ServerDown,proxy=pay-api)"
            )));
        };
        if !value.is_empty() {
            set.insert(name.trim().to_string(), value.to_string());
        }
    }
    let rule = set
        .get("alertname")
        .and_then(|name| config.rules.rules.iter().find(|r| &r.name == name));
    let notify: &[String] = rule.map_or(&[], |r| &r.notify);
    let notifiers = &config.notifiers;
    let severity = set.get("severity").map_or("", String::as_str);
    let names = |notify: &[String]| -> Vec<String> {
        if notifiers.is_empty() {
            return vec!["stdout".to_string()];
        }
        notifiers
            .routes
            .for_alert(notify, severity, &notifiers.list)
            .into_iter()
            .map(str::to_string)
            .collect()
    };
    let matched = if notify.is_empty() {
        notifiers.tree.matches(&set)
    } else {
        Vec::new()
    };
    let lines: Vec<report::RouteLine> = if matched.is_empty() {
        vec![report::RouteLine {
            route: if notify.is_empty() {
                "default route".to_string()
            } else {
                format!("rule {}'s notify", rule.map_or("", |r| r.name.as_str()))
            },
            notifiers: names(notify),
            group_by: config.alerting.group_by.clone(),
            repeat_interval: config.alerting.repeat_interval,
            muted: notifiers.tree.muted(None, now),
        }]
    } else {
        matched
            .into_iter()
            .map(|r| report::RouteLine {
                route: format!("route {} ({})", r.id, r.describe_matchers()),
                notifiers: names(&r.notify),
                group_by: r.group_by.clone(),
                repeat_interval: r.repeat_interval,
                muted: r.muted(now),
            })
            .collect()
    };
    let silenced: Vec<String> = config
        .recurring_silences
        .iter()
        .filter(|s| s.silences(&set, now))
        .map(|s| {
            format!(
                "[[recurring_silence]] at line {} ({}; time intervals {}){}",
                s.line,
                s.matchers
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                s.interval_names(),
                if s.comment.is_empty() {
                    String::new()
                } else {
                    format!(": {}", s.comment)
                }
            )
        })
        .collect();
    report::routes(&mut std::io::stdout().lock(), &lines, &silenced)?;
    Ok(Exit::Success)
}

/// `hapwatch test FILE…`: every case of every file; a summary line; exit 1 on a failure.
pub fn test(files: &[std::path::PathBuf]) -> Result<Exit, Error> {
    let mut out = std::io::stdout().lock();
    let (mut passed, mut failed) = (0, 0);
    for file in files {
        let report = crate::ruletest::run_file(file).map_err(|e| match e {
            crate::ruletest::TestFileError::Config(e) => Error::Config(e),
            crate::ruletest::TestFileError::Invalid(m) => Error::Usage(m),
        })?;
        write!(out, "{}", report.text)?;
        passed += report.passed;
        failed += report.failed;
    }
    report::test_summary(&mut out, passed, failed)?;
    Ok(if failed > 0 {
        Exit::Trouble
    } else {
        Exit::Success
    })
}

/// `hapwatch init`: writes the config (mode 644 so that the systemd unit's DynamicUser
/// and a cron user can read it, or 600 with `--private` for inline secrets) and
/// `rules.toml` beside it.
pub fn init(config_path: &Path, args: &crate::cli::InitArgs) -> Result<Exit, Error> {
    use crate::init::{detect_socket, starter_config, write_new, DEFAULT_RULES};
    let (socket, found) = detect_socket(args.socket.as_deref(), &args.haproxy_cfg);
    let state_file = crate::config::StateSettings::default().file;
    write_new(
        config_path,
        &starter_config(&socket, &state_file),
        if args.private { 0o600 } else { 0o644 },
        args.force,
    )
    .map_err(Error::Usage)?;
    let rules = config_path
        .parent()
        .unwrap_or(Path::new("."))
        .join("rules.toml");
    let rules_written = write_new(&rules, DEFAULT_RULES, 0o644, args.force);
    report::init_done(
        &mut std::io::stdout().lock(),
        config_path,
        &socket,
        &found,
        &rules,
        &rules_written,
    )?;
    Ok(Exit::Success)
}

/// The history file of the config (following `--state`), or a usage error if the config
/// turns it off.
fn history_of(config: &Config, state_path: Option<&Path>) -> Result<History, Error> {
    History::of(&config.history, state_path.unwrap_or(&config.state.file)).ok_or_else(|| {
        Error::Usage(format!(
            "{}: [history] enabled = false: no history is kept; remove that line to keep one",
            config.path.display()
        ))
    })
}

/// Reads the history for `since..until` (and everything before it that an incident
/// overlapping the period may have started with), keeping the alerts that match.
fn read_history(
    history: &History,
    until: f64,
    matchers: &[(String, String)],
) -> Result<(Vec<crate::history::Record>, usize), Error> {
    let read = crate::history::read(&history.path, f64::MIN, until)
        .map_err(|e| Error::Input(e.to_string()))?;
    let records = crate::history::matching(&read.records, matchers)
        .into_iter()
        .cloned()
        .collect();
    Ok((records, read.skipped))
}

/// The period of `--since`/`--until` at `now`.
fn period(since: &str, until: Option<&str>, now: f64) -> Result<(f64, f64), Error> {
    let since = crate::history::parse_when(since, now).map_err(Error::Usage)?;
    let until = match until {
        Some(u) => crate::history::parse_when(u, now).map_err(Error::Usage)?,
        None => now,
    };
    if since >= until {
        return Err(Error::Usage(format!(
            "--since ({}) is not before --until ({})",
            crate::text::format_time(since),
            crate::text::format_time(until)
        )));
    }
    Ok((since, until))
}

/// The history records up to the end of the period (`since`, `until` as the user wrote
/// them) whose labels match, and the recap of the period they make.
fn recap_of(
    config: &Config,
    state_path: Option<&Path>,
    (since, until): (&str, Option<&str>),
    matchers: &[String],
    now: f64,
) -> Result<(Vec<crate::history::Record>, crate::recap::Recap), Error> {
    let (since, until) = period(since, until, now)?;
    let matchers = crate::history::parse_matchers(matchers).map_err(Error::Usage)?;
    let (records, skipped) = read_history(&history_of(config, state_path)?, until, &matchers)?;
    let recap =
        crate::recap::Recap::new(crate::history::incidents(&records), since, until, skipped);
    Ok((records, recap))
}

/// `hapwatch history`.
pub fn history(
    config_path: &Path,
    state_path: Option<&Path>,
    args: &crate::cli::HistoryArgs,
) -> Result<Exit, Error> {
    let now = args.now.unwrap_or_else(unix_now);
    let config = Config::load(config_path)?;
    let (records, recap) = recap_of(
        &config,
        state_path,
        (&args.since, args.until.as_deref()),
        &args.matchers,
        now,
    )?;
    let (since, until, skipped) = (recap.since, recap.until, recap.skipped);
    let shown: Vec<&crate::history::Record> = records.iter().filter(|r| r.time >= since).collect();
    let mut out = BufWriter::new(std::io::stdout().lock());
    match args.format {
        EvalFormat::Table => {
            crate::recap::table::write(&mut out, &shown, &recap.incidents, until, skipped)?
        }
        EvalFormat::Json => {
            crate::recap::table::json(&mut out, since, until, &shown, &recap.incidents, skipped)?
        }
    }
    out.flush()?;
    Ok(Exit::Success)
}

/// `hapwatch report --send NAME`: the report through a notifier, silent when sent.
fn send_report(
    config: &Config,
    name: &str,
    recap: &crate::recap::Recap,
    now: f64,
) -> Result<Exit, Error> {
    let subject = crate::recap::text::subject(recap);
    let text = crate::recap::text::report(recap);
    let report = notify::Report {
        json: crate::recap::text::webhook(recap, &subject, &text),
        html: crate::recap::html::page(recap, now),
        subject,
        text,
        at: now,
    };
    let budget = notify::Budget::new(std::time::Instant::now(), config.alerting.run_timeout);
    match notify::send_report(&config.notifiers, name, &report, &budget) {
        Ok(()) => Ok(Exit::Success),
        Err(e) if e.is_usage() => Err(Error::Usage(format!("--send: {e}"))),
        Err(e) => Err(Error::Delivery(e.to_string())),
    }
}

/// `hapwatch report`.
pub fn report(
    config_path: &Path,
    state_path: Option<&Path>,
    args: &crate::cli::ReportArgs,
) -> Result<Exit, Error> {
    let now = args.now.unwrap_or_else(unix_now);
    let config = Config::load(config_path)?;
    let (_, recap) = recap_of(
        &config,
        state_path,
        (&args.since, args.until.as_deref()),
        &args.matchers,
        now,
    )?;
    if let Some(name) = &args.send {
        return send_report(&config, name, &recap, now);
    }
    let text = match args.format {
        ReportFormat::Html => crate::recap::html::page(&recap, now),
        ReportFormat::Svg => crate::recap::svg::image(&recap),
        ReportFormat::Text => crate::recap::text::report(&recap),
    };
    match &args.out {
        Some(path) => crate::history::write_report_file(path, text.as_bytes())
            .map_err(|e| Error::Input(e.to_string()))?,
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())?;
            out.flush()?;
        }
    }
    Ok(Exit::Success)
}
