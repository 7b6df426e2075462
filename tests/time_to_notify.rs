//! Time to notify, measured on a real HAProxy (ignored: it takes about 3½ minutes, plus the
//! release build). Results and method: `benches/TIME_TO_NOTIFY.md`.
//!
//! ```text
//! cargo test --release --test time_to_notify -- --ignored --nocapture
//! ```
//!
//! A background thread stands in for a systemd timer / cron: it runs `hapwatch -c CONFIG
//! run` every 15 s, at fixed instants (`epoch + k × 15 s`, not 15 s after the previous run
//! ended), for the whole test. Each trial then
//!
//! 1. waits until a chosen phase of the timer period (see "Phases" below), records `t0`
//!    and sends `set server app/web1 health down` on HAProxy's admin socket, keeps the
//!    server forced down (see "Keeping it down"), and waits for the firing `ServerDown`
//!    for `app/web1` to arrive at the SMTP receiver (aiosmtpd) and at the webhook
//!    receiver;
//! 2. waits until another chosen phase, stops forcing, records `t1` and sends
//!    `set server app/web1 health up`, and waits for the resolved mail and webhook.
//!
//! Time to notify = arrival at the receiver − `t0` (or `t1`). Arrivals are seen by polling
//! both receivers every 5 ms (the webhook receiver records a request once read whole, the
//! SMTP receiver writes a file at the end of DATA), so each time is late by at most ~5 ms
//! plus the poll itself. The report gives, per trial, the time from the command to the
//! run that saw it (waiting for the timer) and from that run's start to the arrival (the
//! run itself), then median and worst over the trials, and the wall time of every run.
//!
//! # Phases
//!
//! The phase of a command relative to the timer decides almost all of the latency: a
//! command just after a run read the socket waits a whole period, one just before a run
//! waits almost nothing. So the phases are drawn from a fixed-seed generator, stratified:
//! with N trials the period is cut into N equal slices and each trial's phase is uniform in
//! its own slice (slices in shuffled order; separately for "down" and "up"). That covers
//! the period evenly with few trials, includes the bad case (just after a run), and gives
//! the same schedule on every run of the test.
//!
//! # Keeping it down
//!
//! `set server app/web1 health down` sets the check health to 0; HAProxy's own checks
//! keep running and each passing check raises it again. With the fixture's usual checks
//! (`inter 200 rise 1`) the server is UP again 200 ms later, hence web1 is checked here with
//! `inter 8s fall 1 rise 3` (slow: one check per 8 s) and the command is re-sent every 2 s
//! while "down" is wanted. That alone is not enough: after a passing check HAProxy shows
//! the server as `DOWN 1/3` (health 1 of 3, "going up"), which hapwatch normalizes to
//! `going_up`, and the default `ServerDown` rule (`state == "down"`) does not match it — a
//! run that sampled that moment would resolve the alert (or, right after the command, not
//! raise it). Measured with `inter 2s rise 3` and a re-send every 2 s, the server was
//! `DOWN 1/3` about half of the time. So the forcing thread also polls `show stat` every
//! 10 ms and re-sends `health down` at once when web1 is anything but `DOWN`. Each such
//! blip lasts at most ~10 ms once per check (every 8 s); the report counts them and flags a
//! trial whose runs started within 100 ms of one ("blip near a run"). Larger `inter` values
//! would make blips rarer, but HAProxy spreads the first checks over the smallest
//! `inter` ≥ 1 s, and the fixture must settle (web3 down) within its 10 s limit.
//!
//! # Knobs
//!
//! `HAPWATCH_TTN_TRIALS` (default 6), `HAPWATCH_TTN_PERIOD_MS` (default 15000) and
//! `HAPWATCH_TTN_SEED` (default 20261128) change the schedule, e.g. for a quick check of
//! the test itself with a short period. The test fails if a run fails, a message is
//! missing, or the worst time exceeds the goal (25 s) — only with the default period.

mod common;

use common::measure::{env_u64, mail_entries, median, notify_config, secs, SplitMix64};
use common::{
    require, require_python_module, Haproxy, Hapwatch, HttpReceiver, ReceivedMail, SmtpServer,
};
use serde_json::Value;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The acceptance goal: worst time to notify, both ways, both channels.
const GOAL: Duration = Duration::from_secs(25);

/// web1's check: slow, so that passing checks (which undo `health down`) are rare.
const WEB1_CHECK: &str = "inter 8s fall 1 rise 3";

/// How often `health down` is re-sent while the server is forced down.
const RESEND_EVERY: Duration = Duration::from_secs(2);

/// How often the forcing thread looks at web1's status (to undo a passing check at once).
const FORCE_POLL: Duration = Duration::from_millis(10);

/// How often the receivers are polled for arrivals.
const ARRIVAL_POLL: Duration = Duration::from_millis(5);

// ---------------------------------------------------------------------------------------
// Deterministic schedule
// ---------------------------------------------------------------------------------------

/// The first instant `epoch + k × period + phase` (k ≥ 0) that is not before `not_before`.
fn next_at_phase(
    epoch: Instant,
    period: Duration,
    phase: Duration,
    not_before: Instant,
) -> Instant {
    let since = not_before.saturating_duration_since(epoch);
    let k = (since.as_nanos() / period.as_nanos()) as u32;
    let mut at = epoch + period * k + phase;
    while at < not_before {
        at += period;
    }
    at
}

fn sleep_until(at: Instant) {
    let now = Instant::now();
    if at > now {
        std::thread::sleep(at - now);
    }
}

// ---------------------------------------------------------------------------------------
// The timer: hapwatch every `period`, aligned
// ---------------------------------------------------------------------------------------

/// One run of `hapwatch run` by the timer thread.
#[derive(Debug, Clone)]
struct RunRecord {
    /// The timer tick it belongs to (`epoch + k × period`).
    tick: usize,
    scheduled: Instant,
    /// When the process was spawned (within a millisecond of `scheduled`).
    started: Instant,
    /// Wall time from spawn to exit.
    elapsed: Duration,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `hapwatch -c config run` at `epoch + k × period` for k = 0, 1, … until `stop`
/// is signalled (or dropped). A run that is still going at the next tick makes the timer
/// skip that tick, as a systemd timer does for a still-active service.
fn timer_loop(
    config: PathBuf,
    epoch: Instant,
    period: Duration,
    stop: mpsc::Receiver<()>,
    runs: Arc<Mutex<Vec<RunRecord>>>,
) {
    let mut tick = 0usize;
    loop {
        let scheduled = epoch + period * tick as u32;
        // Prepare the builder (it makes a temporary directory) before the tick.
        let run = Hapwatch::new()
            .config_path(&config)
            .arg("run")
            .guard(period.max(Duration::from_secs(30)));
        let wait = scheduled.saturating_duration_since(Instant::now());
        match stop.recv_timeout(wait) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        let started = Instant::now();
        let out = run.run();
        runs.lock().unwrap().push(RunRecord {
            tick,
            scheduled,
            started,
            elapsed: out.elapsed,
            code: out.code,
            stdout: out.stdout.clone(),
            stderr: out.stderr.clone(),
        });
        // The next tick that is still ahead.
        tick += 1;
        while epoch + period * tick as u32 <= Instant::now() {
            tick += 1;
        }
    }
}

// ---------------------------------------------------------------------------------------
// Forcing the server down
// ---------------------------------------------------------------------------------------

/// What the forcing thread did during one "down" period.
#[derive(Debug, Default)]
struct ForceLog {
    /// `health down` sent because 2 s had passed.
    periodic: usize,
    /// Moments web1 was seen not `DOWN` (a passing check), each answered by `health down`.
    blips: Vec<(Instant, String)>,
}

fn set_health(haproxy: &Haproxy, health: &str) {
    let command = format!("set server app/web1 health {health}");
    let reply = haproxy.admin(&command);
    assert!(
        reply.trim().is_empty(),
        "{command:?} was refused: {reply:?}"
    );
}

/// Keeps web1 down until `stop` is signalled: `health down` every [`RESEND_EVERY`], and at
/// once whenever a passing check made it anything but `DOWN` (polled every [`FORCE_POLL`]).
/// The first `health down` has already been sent by the caller at `first_sent`.
fn keep_down(haproxy: &Haproxy, first_sent: Instant, stop: mpsc::Receiver<()>) -> ForceLog {
    let mut log = ForceLog::default();
    let mut last_sent = first_sent;
    loop {
        match stop.recv_timeout(FORCE_POLL) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return log,
        }
        let status = haproxy.status("app", "web1");
        let now = Instant::now();
        if status != "DOWN" {
            set_health(haproxy, "down");
            log.blips.push((now, status));
            last_sent = Instant::now();
        } else if now.duration_since(last_sent) >= RESEND_EVERY {
            set_health(haproxy, "down");
            log.periodic += 1;
            last_sent = Instant::now();
        }
    }
}

// ---------------------------------------------------------------------------------------
// Arrivals
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Channel {
    Mail,
    Webhook,
}

/// What a notification was about, as far as this test cares.
#[derive(Debug, Clone, PartialEq, Eq)]
enum About {
    /// `ServerDown` firing for `app/web1` (and nothing else).
    Web1Down,
    /// `ServerDown` resolved for `app/web1` (and nothing else).
    Web1Up,
    /// Anything else (a summary for the report).
    Other(String),
}

#[derive(Debug, Clone)]
struct Arrival {
    at: Instant,
    channel: Channel,
    about: About,
}

/// Classifies a mail by its body's FIRING / RESOLVED sections (`- ServerDown app/web1 on
/// lb1` entries; STILL FIRING is context).
fn classify_mail(mail: &ReceivedMail) -> About {
    let text = mail.text.clone().unwrap_or_else(|| mail.body().to_string());
    let entries = mail_entries(&text);
    let is_web1 = |e: &str| e.starts_with("ServerDown app/web1 ");
    match entries.as_slice() {
        [("firing", e)] if is_web1(e) => About::Web1Down,
        [("resolved", e)] if is_web1(e) => About::Web1Up,
        _ => About::Other(format!(
            "mail {:?}: {:?}",
            mail.subject().unwrap_or_default(),
            entries
        )),
    }
}

/// Classifies hapwatch's webhook JSON by its `firing` and `resolved` arrays.
fn classify_webhook(body: &Value) -> About {
    let names = |key: &str| -> Vec<String> {
        body[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|n| {
                        let l = &n["labels"];
                        format!(
                            "{} {}/{}{}",
                            l["alertname"].as_str().unwrap_or("?"),
                            l["proxy"].as_str().unwrap_or("?"),
                            l["server"].as_str().unwrap_or("?"),
                            if n["repeat"] == true { " (repeat)" } else { "" }
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let (firing, resolved) = (names("firing"), names("resolved"));
    let web1 = ["ServerDown app/web1".to_string()];
    if firing == web1 && resolved.is_empty() {
        About::Web1Down
    } else if resolved == web1 && firing.is_empty() {
        About::Web1Up
    } else {
        About::Other(format!("webhook: firing {firing:?}, resolved {resolved:?}"))
    }
}

/// Watches both receivers; each message is stamped when first seen.
struct Watcher<'a> {
    smtp: &'a SmtpServer,
    hook: &'a HttpReceiver,
    mails_seen: usize,
    hooks_seen: usize,
    arrivals: Vec<Arrival>,
    polls: u64,
    poll_time: Duration,
}

impl<'a> Watcher<'a> {
    fn new(smtp: &'a SmtpServer, hook: &'a HttpReceiver) -> Watcher<'a> {
        Watcher {
            smtp,
            hook,
            mails_seen: 0,
            hooks_seen: 0,
            arrivals: Vec::new(),
            polls: 0,
            poll_time: Duration::ZERO,
        }
    }

    fn poll(&mut self) {
        let began = Instant::now();
        let requests = self.hook.requests();
        let hook_at = Instant::now();
        for request in &requests[self.hooks_seen..] {
            let about = if request.path() == "/hook" {
                classify_webhook(&request.json())
            } else {
                About::Other(format!("request {} {}", request.method, request.target))
            };
            self.arrivals.push(Arrival {
                at: hook_at,
                channel: Channel::Webhook,
                about,
            });
        }
        self.hooks_seen = requests.len();
        let mails = self.smtp.messages();
        let mail_at = Instant::now();
        for mail in &mails[self.mails_seen..] {
            self.arrivals.push(Arrival {
                at: mail_at,
                channel: Channel::Mail,
                about: classify_mail(mail),
            });
        }
        self.mails_seen = mails.len();
        self.polls += 1;
        self.poll_time += began.elapsed();
    }

    /// The first arrival on `channel` about `about` at or after `since`, if any yet.
    fn find(&self, channel: Channel, about: &About, since: Instant) -> Option<Instant> {
        self.arrivals
            .iter()
            .find(|a| a.channel == channel && a.about == *about && a.at >= since)
            .map(|a| a.at)
    }

    /// Polls until both channels delivered `about` after `since`; returns (mail, webhook).
    fn wait_both(&mut self, about: &About, since: Instant, limit: Duration) -> (Instant, Instant) {
        let deadline = since + limit;
        loop {
            self.poll();
            if let (Some(m), Some(w)) = (
                self.find(Channel::Mail, about, since),
                self.find(Channel::Webhook, about, since),
            ) {
                return (m, w);
            }
            if Instant::now() >= deadline {
                panic!(
                    "no {about:?} on both channels within {limit:?}; arrivals so far: {:#?}",
                    self.arrivals
                );
            }
            std::thread::sleep(ARRIVAL_POLL);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Statistics and report
// ---------------------------------------------------------------------------------------

/// Seconds with millisecond precision.
fn ms3(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64())
}

fn mean(values: &[Duration]) -> Duration {
    values.iter().sum::<Duration>() / values.len() as u32
}

fn worst(values: &[Duration]) -> Duration {
    values.iter().copied().max().unwrap_or_default()
}

/// One direction (down or up) of one trial.
#[derive(Debug, Clone)]
struct Leg {
    phase: Duration,
    command_at: Instant,
    mail_at: Instant,
    hook_at: Instant,
    /// The run during which the first message arrived (filled in at the end).
    run: Option<RunRecord>,
}

impl Leg {
    fn mail(&self) -> Duration {
        self.mail_at - self.command_at
    }
    fn hook(&self) -> Duration {
        self.hook_at - self.command_at
    }
}

/// The run whose lifetime contains `at` (the one that delivered a message arriving then).
fn run_containing(runs: &[RunRecord], at: Instant) -> Option<RunRecord> {
    runs.iter()
        .rev()
        .find(|r| r.started <= at && at <= r.started + r.elapsed + Duration::from_millis(5))
        .cloned()
}

fn machine() -> String {
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    format!("nproc {nproc}, {model}")
}

// ---------------------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------------------

#[test]
#[ignore = "measurement on a real haproxy; takes ~3.5 minutes: \
            cargo test --release --test time_to_notify -- --ignored --nocapture"]
fn time_to_notify() {
    if !require("haproxy") || !require_python_module("aiosmtpd") {
        return;
    }
    let trials = env_u64("HAPWATCH_TTN_TRIALS", 6) as usize;
    let period = Duration::from_millis(env_u64("HAPWATCH_TTN_PERIOD_MS", 15_000));
    let seed = env_u64("HAPWATCH_TTN_SEED", 20_261_128);
    assert!(trials >= 1 && period >= Duration::from_secs(1));
    let test_began = Instant::now();

    let haproxy = Haproxy::start_with_web1_check(WEB1_CHECK);
    let smtp = SmtpServer::builder().start();
    let hook = HttpReceiver::start();

    let config = notify_config(&haproxy, &smtp, &hook);
    Hapwatch::new()
        .config_path(&config)
        .arg("check")
        .run()
        .success();

    let mut rng = SplitMix64(seed);
    let down_phases = rng.stratified_phases(trials, period);
    let up_phases = rng.stratified_phases(trials, period);

    let runs = Arc::new(Mutex::new(Vec::<RunRecord>::new()));
    let epoch = Instant::now() + Duration::from_millis(200);
    let (stop_timer, timer_stop) = mpsc::channel::<()>();
    let timer = {
        let (config, runs) = (config.clone(), Arc::clone(&runs));
        std::thread::spawn(move || timer_loop(config, epoch, period, timer_stop, runs))
    };

    let mut watcher = Watcher::new(&smtp, &hook);
    // The first run sees the fixture's web3 DOWN and notifies it (one mail, one webhook);
    // nothing else should arrive until the first command.
    let baseline_deadline = Instant::now() + Duration::from_secs(20);
    while watcher.arrivals.len() < 2 {
        assert!(
            Instant::now() < baseline_deadline,
            "the first run did not notify web3 down: {:#?}\nruns: {:#?}",
            watcher.arrivals,
            runs.lock().unwrap()
        );
        watcher.poll();
        std::thread::sleep(ARRIVAL_POLL);
    }
    let baseline_arrivals = watcher.arrivals.len();

    let limit = period * 2 + Duration::from_secs(10);
    let mut downs: Vec<Leg> = Vec::new();
    let mut ups: Vec<Leg> = Vec::new();
    let mut force_logs: Vec<ForceLog> = Vec::new();
    let mut not_before = Instant::now();
    for trial in 0..trials {
        // Down.
        let at = next_at_phase(
            epoch,
            period,
            down_phases[trial],
            not_before + Duration::from_millis(100),
        );
        sleep_until(at);
        let t0 = Instant::now();
        set_health(&haproxy, "down");
        let (stop_forcing, forcing_stop) = mpsc::channel::<()>();
        let (mail_at, hook_at, force_log) = std::thread::scope(|s| {
            let forcer = s.spawn(|| keep_down(&haproxy, t0, forcing_stop));
            let (mail_at, hook_at) = watcher.wait_both(&About::Web1Down, t0, limit);
            // Keep it down until the "up" command (below), in this same scope.
            let up_at = next_at_phase(
                epoch,
                period,
                up_phases[trial],
                mail_at.max(hook_at) + Duration::from_millis(100),
            );
            while Instant::now() < up_at {
                watcher.poll();
                std::thread::sleep(
                    up_at
                        .saturating_duration_since(Instant::now())
                        .min(ARRIVAL_POLL),
                );
            }
            drop(stop_forcing);
            (
                mail_at,
                hook_at,
                forcer.join().expect("the forcing thread panicked"),
            )
        });
        // Up.
        let t1 = Instant::now();
        set_health(&haproxy, "up");
        let (up_mail_at, up_hook_at) = watcher.wait_both(&About::Web1Up, t1, limit);
        assert_eq!(haproxy.status("app", "web1"), "UP", "web1 did not stay up");
        not_before = up_mail_at.max(up_hook_at);

        let down = Leg {
            phase: down_phases[trial],
            command_at: t0,
            mail_at,
            hook_at,
            run: None,
        };
        let up = Leg {
            phase: up_phases[trial],
            command_at: t1,
            mail_at: up_mail_at,
            hook_at: up_hook_at,
            run: None,
        };
        eprintln!(
            "trial {}/{trials}: down mail {} s webhook {} s; up mail {} s webhook {} s \
             ({} blip(s) undone)",
            trial + 1,
            secs(down.mail()),
            secs(down.hook()),
            secs(up.mail()),
            secs(up.hook()),
            force_log.blips.len()
        );
        downs.push(down);
        ups.push(up);
        force_logs.push(force_log);
    }
    // A last look for stray messages (e.g. a flap notification) from the final runs.
    let settle = Instant::now() + Duration::from_millis(300);
    while Instant::now() < settle {
        watcher.poll();
        std::thread::sleep(ARRIVAL_POLL);
    }
    drop(stop_timer);
    timer.join().expect("the timer thread panicked");
    let runs = runs.lock().unwrap().clone();
    // Which run delivered each change (known once that run ended).
    for leg in downs.iter_mut().chain(ups.iter_mut()) {
        leg.run = run_containing(&runs, leg.mail_at.min(leg.hook_at));
    }

    // ---- Report ----
    let mut report = String::new();
    let w = &mut report;
    writeln!(w, "\n=== hapwatch time to notify ===").unwrap();
    writeln!(
        w,
        "machine: {}; haproxy {}; period {} s; {trials} trials; seed {seed}; web1 `check {WEB1_CHECK}`",
        machine(),
        haproxy.version(),
        secs(period),
    )
    .unwrap();
    writeln!(
        w,
        "times in seconds; 'wait' = command → start of the run that notified, then that \
         run's start → webhook / → mail arrival\n"
    )
    .unwrap();
    writeln!(
        w,
        "| trial | down phase | down mail | down webhook | wait + webhook / mail | up phase | up mail | up webhook | wait + webhook / mail | blips undone |"
    )
    .unwrap();
    writeln!(w, "|---|---|---|---|---|---|---|---|---|---|").unwrap();
    let split = |leg: &Leg| match &leg.run {
        Some(r) => format!(
            "{} + {} / {}",
            secs(r.started.saturating_duration_since(leg.command_at)),
            ms3(leg.hook_at.saturating_duration_since(r.started)),
            ms3(leg.mail_at.saturating_duration_since(r.started)),
        ),
        None => "?".into(),
    };
    for (i, (d, u)) in downs.iter().zip(&ups).enumerate() {
        let log = &force_logs[i];
        let near_run = log.blips.iter().any(|(at, _)| {
            runs.iter().any(|r| {
                let gap = if r.started > *at {
                    r.started - *at
                } else {
                    *at - r.started
                };
                gap < Duration::from_millis(100)
            })
        });
        writeln!(
            w,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {}{} |",
            i + 1,
            secs(d.phase),
            secs(d.mail()),
            secs(d.hook()),
            split(d),
            secs(u.phase),
            secs(u.mail()),
            secs(u.hook()),
            split(u),
            log.blips.len(),
            if near_run { " (blip near a run!)" } else { "" }
        )
        .unwrap();
    }
    let series: [(&str, Vec<Duration>); 4] = [
        ("down, mail", downs.iter().map(Leg::mail).collect()),
        ("down, webhook", downs.iter().map(Leg::hook).collect()),
        ("up, mail", ups.iter().map(Leg::mail).collect()),
        ("up, webhook", ups.iter().map(Leg::hook).collect()),
    ];
    writeln!(w, "\n| | median | mean | worst | best |").unwrap();
    writeln!(w, "|---|---|---|---|---|").unwrap();
    for (name, values) in &series {
        writeln!(
            w,
            "| {name} | {} | {} | {} | {} |",
            secs(median(values)),
            secs(mean(values)),
            secs(worst(values)),
            secs(values.iter().copied().min().unwrap_or_default())
        )
        .unwrap();
    }

    // Runs: wall time, split by whether they delivered something.
    let delivered = |r: &RunRecord| {
        watcher
            .arrivals
            .iter()
            .any(|a| r.started <= a.at && a.at <= r.started + r.elapsed + Duration::from_millis(5))
    };
    let ms = |d: Duration| format!("{:.1}", d.as_secs_f64() * 1000.0);
    writeln!(
        w,
        "\n| hapwatch runs | n | min ms | median ms | mean ms | max ms |"
    )
    .unwrap();
    writeln!(w, "|---|---|---|---|---|---|").unwrap();
    for (name, pick) in [
        (
            "all",
            &(|_: &RunRecord| true) as &dyn Fn(&RunRecord) -> bool,
        ),
        ("that notified (mail + webhook)", &delivered),
        ("quiet", &|r: &RunRecord| !delivered(r)),
    ] {
        let times: Vec<Duration> = runs.iter().filter(|r| pick(r)).map(|r| r.elapsed).collect();
        if times.is_empty() {
            continue;
        }
        writeln!(
            w,
            "| {name} | {} | {} | {} | {} | {} |",
            times.len(),
            ms(times.iter().copied().min().unwrap()),
            ms(median(&times)),
            ms(mean(&times)),
            ms(worst(&times))
        )
        .unwrap();
    }
    let lateness: Vec<Duration> = runs.iter().map(|r| r.started - r.scheduled).collect();
    let skipped = runs.last().map_or(0, |r| r.tick + 1 - runs.len());
    writeln!(
        w,
        "\ntimer: {} runs, {skipped} tick(s) skipped, start lateness max {} ms; receivers \
         polled {} times, {:.2} ms per poll on average; forcing: {} periodic re-sends, {} blips \
         undone ({:?}); whole test {} s",
        runs.len(),
        ms(worst(&lateness)),
        watcher.polls,
        watcher.poll_time.as_secs_f64() * 1000.0 / watcher.polls.max(1) as f64,
        force_logs.iter().map(|l| l.periodic).sum::<usize>(),
        force_logs.iter().map(|l| l.blips.len()).sum::<usize>(),
        force_logs
            .iter()
            .flat_map(|l| l.blips.iter().map(|(_, s)| s.as_str()))
            .collect::<std::collections::BTreeSet<_>>(),
        secs(test_began.elapsed()),
    )
    .unwrap();
    // hapwatch is quiet on success: show whatever a run printed.
    for r in runs
        .iter()
        .filter(|r| !r.stdout.is_empty() || !r.stderr.is_empty())
    {
        writeln!(
            w,
            "run {} printed: stdout {:?} stderr {:?}",
            r.tick, r.stdout, r.stderr
        )
        .unwrap();
    }
    let strays: Vec<&Arrival> = watcher.arrivals[baseline_arrivals..]
        .iter()
        .filter(|a| matches!(a.about, About::Other(_)))
        .collect();
    let expected = 2 * 2 * trials;
    let counted = watcher.arrivals.len() - baseline_arrivals;
    writeln!(
        w,
        "messages after the baseline: {counted} (expected {expected}: one mail and one webhook \
         per change); unexpected: {strays:?}"
    )
    .unwrap();
    eprintln!("{report}");

    // ---- Verdict ----
    let failed: Vec<&RunRecord> = runs.iter().filter(|r| r.code != Some(0)).collect();
    assert!(failed.is_empty(), "some runs failed: {failed:#?}");
    assert!(
        strays.is_empty() && counted == expected,
        "unexpected notifications (see the report above)"
    );
    if period == Duration::from_secs(15) {
        for (name, values) in &series {
            assert!(
                worst(values) <= GOAL,
                "{name}: worst {} s exceeds the goal of {} s",
                secs(worst(values)),
                secs(GOAL)
            );
        }
    }
}
