//! `hapwatch watch`: the run pipeline's cycle in a loop, for seconds between a server
//! failing and the page instead of a cron minute, and for containers that expect a process
//! that keeps running.
//!
//! - The config is compiled once; `SIGHUP` re-reads it. A config that does not load keeps
//!   the running one, and its error is printed once (again only if it changes).
//! - `SIGTERM`/`SIGINT` end the process after the current cycle (which saved the state),
//!   with exit 0; during the wait between cycles they end it at once. The signals are
//!   blocked in every thread and taken with `sigtimedwait`, so the wait between cycles is
//!   that call: no handler, no flag polled, no sleep to finish.
//! - Each cycle is a whole `hapwatch run`: it takes the state lock, saves, and lets go of
//!   the lock, so `silence add`, `state show` or a cron `run` by mistake interleave between
//!   cycles, and a SIGKILL loses what it would lose in a run.
//! - Cycles start on a fixed schedule (`start + k × every`, no drift). A cycle that takes
//!   longer than the interval is reported once per process (a warning; with `-v`, an info
//!   line for each), and the next starts at once; the schedule continues from there.
//! - Problems are printed after each cycle as `run` prints them at exit, once per problem
//!   across cycles; `-v` adds one line per cycle.
//! - Under systemd (`Type=notify`): `READY=1` once the config is compiled, `WATCHDOG=1`
//!   after every cycle (and during a long wait), `STOPPING=1` at the end.

use crate::config::Config;
use crate::error::{Error, Exit};
use crate::log;
use crate::run::{Options, Pipeline, Problem, WithoutNotifiers};
use crate::sdnotify::Notify;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What `hapwatch watch` was asked.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The config file, re-read on SIGHUP.
    pub config_path: PathBuf,
    /// `--state`, overriding the config's `[state] file`.
    pub state_path: Option<PathBuf>,
    /// `--adopt-state`.
    pub adopt_state: bool,
    /// Time between the starts of two cycles.
    pub every: Duration,
    /// Where notifications go when the config has no notifier.
    pub without: WithoutNotifiers,
}

/// Runs cycles until SIGTERM or SIGINT. An error only when it cannot start (a config that
/// does not load, signals that cannot be blocked); a cycle that fails is reported and the
/// next one tried.
pub fn watch(settings: &Settings) -> Result<Exit, Error> {
    // Before any thread exists, so that every thread the cycles start inherits the mask
    // and the signals wait for `sigtimedwait` here.
    let signals = Signals::block()?;
    let mut pipeline = load(&settings.config_path, settings.without)?;
    let systemd = match Notify::from_env() {
        Ok(notify) => notify,
        Err(e) => {
            log::warn(e);
            None
        }
    };
    let tell = |message: &str| {
        if let Some(systemd) = &systemd {
            if let Err(e) = systemd.send(message) {
                log::log(
                    log::Level::Debug,
                    format!("cannot notify systemd ({message:?}): {e}"),
                );
            }
        }
    };
    // Fed at half the period, as sd_watchdog_enabled(3) advises.
    let feed_every = systemd
        .as_ref()
        .and_then(Notify::watchdog)
        .map(|period| period / 2);
    tell(&format!(
        "READY=1\nSTATUS=checking every {}",
        show(settings.every)
    ));
    log::info(format!(
        "watch: a cycle every {}, config {}",
        show(settings.every),
        settings.config_path.display()
    ));

    let mut failing: Option<String> = None;
    let mut reload_error: Option<String> = None;
    let mut overrun_said = false;
    let mut next = Instant::now();
    let mut cycles: u64 = 0;
    loop {
        let started = Instant::now();
        cycles += 1;
        let result = pipeline.cycle(
            unix_now(),
            &Options {
                state_path: settings.state_path.clone(),
                adopt_state: settings.adopt_state,
                dry_run: false,
                started,
            },
        );
        match result {
            Ok(outcome) => {
                print(&outcome.problems);
                if let Some(error) = failing.take() {
                    log::warn(format!("cycles work again (they failed: {error})"));
                }
                log::info(format!(
                    "cycle {cycles}: {}",
                    crate::report::run_summary(&outcome)
                ));
            }
            Err(failed) => {
                print(&failed.problems);
                // The same failure every cycle (the state lock held by a stuck process,
                // an unsafe state path) is printed once, then with -v.
                let error = failed.error.to_string();
                if failing.as_deref() == Some(error.as_str()) {
                    log::info(format!(
                        "cycle {cycles} failed again: {error} (printed again when it changes or ends)"
                    ));
                } else {
                    log::error(format!("cycle {cycles} failed: {error}"));
                }
                failing = Some(error);
            }
        }
        tell("WATCHDOG=1");

        next += settings.every;
        let ended = Instant::now();
        if ended >= next {
            // Said once per process: a cycle that waited for the lock (a `silence add`, a
            // cron `run`) or for a slow HAProxy now and then is not news every time; -v
            // shows each.
            let line = format!(
                "cycle {cycles} took {}, more than --every {}",
                show(ended - started),
                show(settings.every)
            );
            if overrun_said {
                log::info(line);
            } else {
                log::warn(format!(
                    "{line}: the next starts at once, and the schedule continues from there (said once; -v shows every slow cycle)"
                ));
                overrun_said = true;
            }
            next = ended;
        }

        // The wait: at least one look at the signals, even when the next cycle is due.
        loop {
            let remaining = next.saturating_duration_since(Instant::now());
            let step = feed_every.map_or(remaining, |feed| remaining.min(feed));
            match signals.wait(step)? {
                Some(libc::SIGHUP) => {
                    reload(settings, &mut pipeline, &mut reload_error);
                    tell("READY=1");
                }
                Some(signal) => {
                    log::info(format!(
                        "watch: {}, stopping after {cycles} cycles",
                        signal_name(signal)
                    ));
                    tell("STOPPING=1");
                    return Ok(Exit::Success);
                }
                None if Instant::now() < next => tell("WATCHDOG=1"),
                None => {}
            }
            if Instant::now() >= next {
                break;
            }
        }
    }
}

/// The pipeline for the config at `path`.
fn load(path: &Path, without: WithoutNotifiers) -> Result<Pipeline, Error> {
    let config = Config::load(path)?;
    config.require_sources()?;
    Ok(Pipeline::new(config, without))
}

/// SIGHUP: the config again. One that does not load keeps the running pipeline; its
/// error is printed once (`-v`: every time).
fn reload(settings: &Settings, pipeline: &mut Pipeline, last_error: &mut Option<String>) {
    match load(&settings.config_path, settings.without) {
        Ok(new) => {
            *pipeline = new;
            *last_error = None;
            log::info(format!(
                "watch: SIGHUP: reloaded {}",
                settings.config_path.display()
            ));
        }
        Err(e) => {
            let error = e.to_string();
            let line = format!("SIGHUP: {error}; still running with the config loaded before");
            if last_error.as_deref() == Some(error.as_str()) {
                log::info(line);
            } else {
                log::error(line);
            }
            *last_error = Some(error);
        }
    }
}

/// `10s`, `1m30s`, `250ms`, `1.500s`.
fn show(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        crate::duration::format_secs(d.as_secs())
    } else if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.3}s", d.as_secs_f64())
    }
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn print(problems: &[Problem]) {
    for problem in problems {
        log::log(problem.level, &problem.text);
    }
}

fn signal_name(signal: libc::c_int) -> &'static str {
    match signal {
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        libc::SIGHUP => "SIGHUP",
        _ => "a signal",
    }
}

/// SIGTERM, SIGINT and SIGHUP, blocked in this thread and every thread it starts, taken
/// one at a time by [`Signals::wait`].
struct Signals {
    set: libc::sigset_t,
}

impl Signals {
    fn block() -> Result<Signals, Error> {
        // SAFETY: sigemptyset/sigaddset fill a sigset_t we own; pthread_sigmask only reads
        // it. Blocking signals has no memory-safety effect.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
                libc::sigaddset(&mut set, signal);
            }
            let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            if rc != 0 {
                return Err(Error::Input(format!(
                    "cannot block SIGTERM/SIGINT/SIGHUP: {}",
                    std::io::Error::from_raw_os_error(rc)
                )));
            }
            Ok(Signals { set })
        }
    }

    /// The next pending signal, waiting at most `timeout` for one.
    fn wait(&self, timeout: Duration) -> Result<Option<libc::c_int>, Error> {
        let timeout = libc::timespec {
            tv_sec: timeout.as_secs().min(i64::MAX as u64) as libc::time_t,
            tv_nsec: timeout.subsec_nanos() as libc::c_long,
        };
        // SAFETY: `self.set` is an initialized sigset_t, `timeout` a valid timespec; a null
        // siginfo pointer is allowed.
        let signal = unsafe { libc::sigtimedwait(&self.set, std::ptr::null_mut(), &timeout) };
        if signal >= 0 {
            return Ok(Some(signal));
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            // The timeout; or another signal (SIGCHLD, SIGWINCH) interrupted the wait,
            // which only makes the caller look at the time again.
            Some(libc::EAGAIN | libc::EINTR) => Ok(None),
            _ => Err(Error::Input(format!("cannot wait for signals: {e}"))),
        }
    }
}
