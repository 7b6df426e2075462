//! Time to notify with `hapwatch watch`, measured on a real HAProxy (ignored: about 3 min
//! per interval, plus the release build). Results and method: `benches/TIME_TO_NOTIFY.md`,
//! section "Watch mode".
//!
//! ```text
//! cargo test --release --test time_to_notify_watch -- --ignored --nocapture
//! ```
//!
//! Unlike `time_to_notify.rs` (a timer, the server forced down with `health down`), the
//! failure here is real and HAProxy detects it itself: web1 is checked with `inter 1s fall 2
//! rise 2`, and a trial moves web1's address to a port where nothing listens (`set server
//! app/web1 addr 127.0.0.1 port DEAD`; its checks fail until it is moved back). For each
//! change the test records the command (`t0`), the moment `show stat` (polled every 10 ms
//! on the admin socket) first shows web1 `DOWN` / `UP` (HAProxy's own detection), and the
//! arrival of the `ServerDown` firing / resolved notification at the webhook receiver and
//! at the SMTP receiver (aiosmtpd), both polled every 5 ms. One `hapwatch watch --every
//! EVERY` runs for the whole measurement; the command comes at a random moment (fixed
//! seed, uniform over two intervals), so its phase relative to the cycles is uniform.
//!
//! Knobs: `HAPWATCH_BIN` (the binary to measure, e.g. a release build while this harness
//! is a debug build), `HAPWATCH_TTN_TRIALS` (default 20), `HAPWATCH_TTN_EVERY_MS` (a comma list,
//! default `1000,2000`), `HAPWATCH_TTN_SEED`. The test fails if a notification is missing
//! or if the worst time from HAProxy's detection to an arrival exceeds the interval + 0.5 s.

mod common;

use common::measure::{env_u64, mail_entries, median, notify_config, secs, SplitMix64};
use common::{require, require_python_module, Haproxy, HttpReceiver, SmtpServer};
use std::fmt::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const WEB1_CHECK: &str = "inter 1s fall 2 rise 2";
const POLL: Duration = Duration::from_millis(5);
const STATUS_POLL: Duration = Duration::from_millis(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Down,
    Up,
}

/// Whether a webhook body is exactly ServerDown for app/web1, firing or resolved.
fn webhook_about(body: &serde_json::Value) -> Option<Change> {
    let names = |key: &str| -> Vec<String> {
        body[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|n| {
                        let l = &n["labels"];
                        format!(
                            "{} {}/{}",
                            l["alertname"].as_str().unwrap_or("?"),
                            l["proxy"].as_str().unwrap_or("?"),
                            l["server"].as_str().unwrap_or("?")
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let web1 = vec!["ServerDown app/web1".to_string()];
    match (names("firing"), names("resolved")) {
        (f, r) if f == web1 && r.is_empty() => Some(Change::Down),
        (f, r) if r == web1 && f.is_empty() => Some(Change::Up),
        _ => None,
    }
}

/// Whether a mail is exactly ServerDown for app/web1, in its FIRING or RESOLVED section.
fn mail_about(text: &str) -> Option<Change> {
    let entries: Vec<(&str, bool)> = mail_entries(text)
        .into_iter()
        .map(|(section, entry)| (section, entry.starts_with("ServerDown app/web1 ")))
        .collect();
    match entries.as_slice() {
        [("firing", true)] => Some(Change::Down),
        [("resolved", true)] => Some(Change::Up),
        _ => None,
    }
}

/// One change: command, HAProxy's detection, arrivals.
#[derive(Debug)]
struct Leg {
    command: Instant,
    detected: Instant,
    hook: Instant,
    mail: Instant,
}

fn measure(every: Duration, trials: usize, seed: u64, report: &mut String) -> bool {
    let haproxy = Haproxy::start_with_web1_check(WEB1_CHECK);
    let smtp = SmtpServer::builder().start();
    let hook = HttpReceiver::start();
    let web1 = haproxy
        .show_stat()
        .into_iter()
        .find(|r| r["pxname"] == "app" && r["svname"] == "web1")
        .and_then(|r| r.get("addr").cloned())
        .expect("web1's addr in show stat");
    let (web1_ip, web1_port) = web1.rsplit_once(':').unwrap();
    let dir = haproxy.dir().to_path_buf();
    let config = notify_config(&haproxy, &smtp, &hook);
    // HAPWATCH_BIN: a release binary while this harness is a debug build.
    let bin = std::env::var_os("HAPWATCH_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_hapwatch").into());
    let mut watch = Command::new(bin)
        .arg("-c")
        .arg(&config)
        .args(["watch", "--every", &format!("{}ms", every.as_millis())])
        .env_remove("HAPWATCH_CONFIG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("watch.stderr")).unwrap())
        .spawn()
        .unwrap();

    // Baseline: web3 (down in the fixture) announced on both channels.
    let deadline = Instant::now() + Duration::from_secs(20);
    while hook.requests().is_empty() || smtp.messages().is_empty() {
        assert!(Instant::now() < deadline, "no baseline notification");
        std::thread::sleep(POLL);
    }
    let (mut hooks_seen, mut mails_seen) = (hook.requests().len(), smtp.messages().len());
    std::thread::sleep(Duration::from_millis(500));
    let mut rng = SplitMix64(seed);
    let mut legs: Vec<(Change, Leg)> = Vec::new();
    for _ in 0..trials {
        for change in [Change::Down, Change::Up] {
            // A random moment over two intervals: a uniform phase against the cycles.
            std::thread::sleep(every.mul_f64(2.0 * rng.unit()));
            let command = Instant::now();
            let reply = match change {
                Change::Down => haproxy.admin(&format!(
                    "set server app/web1 addr 127.0.0.1 port {}",
                    haproxy.dead_addr().port()
                )),
                Change::Up => haproxy.admin(&format!(
                    "set server app/web1 addr {web1_ip} port {web1_port}"
                )),
            };
            assert!(!reply.contains("rror"), "{reply}");
            let want = match change {
                Change::Down => "DOWN",
                Change::Up => "UP",
            };
            let (mut detected, mut hook_at, mut mail_at) = (None, None, None);
            let mut last_status = Instant::now() - STATUS_POLL;
            let limit = command + Duration::from_secs(30);
            while detected.is_none() || hook_at.is_none() || mail_at.is_none() {
                assert!(Instant::now() < limit, "{change:?}: nothing within 30 s");
                if detected.is_none() && last_status.elapsed() >= STATUS_POLL {
                    last_status = Instant::now();
                    if haproxy.status("app", "web1") == want {
                        detected = Some(Instant::now());
                    }
                }
                let requests = hook.requests();
                let now = Instant::now();
                for r in &requests[hooks_seen..] {
                    assert_eq!(
                        webhook_about(&r.json()),
                        Some(change),
                        "unexpected webhook {}",
                        r.body_text()
                    );
                    hook_at.get_or_insert(now);
                }
                hooks_seen = requests.len();
                let mails = smtp.messages();
                let now = Instant::now();
                for m in &mails[mails_seen..] {
                    let text = m.text.clone().unwrap_or_else(|| m.body().to_string());
                    assert_eq!(mail_about(&text), Some(change), "unexpected mail {text}");
                    mail_at.get_or_insert(now);
                }
                mails_seen = mails.len();
                std::thread::sleep(POLL);
            }
            legs.push((
                change,
                Leg {
                    command,
                    detected: detected.unwrap(),
                    hook: hook_at.unwrap(),
                    mail: mail_at.unwrap(),
                },
            ));
        }
    }
    let _ = watch.kill();
    let _ = watch.wait();

    let goal = every + Duration::from_millis(500);
    let mut met = true;
    writeln!(
        report,
        "\n### `watch --every {}s`, {trials} trials, web1 `check {WEB1_CHECK}`\n",
        every.as_secs_f64()
    )
    .unwrap();
    writeln!(
        report,
        "| seconds | median | worst | best |\n|---|---|---|---|"
    )
    .unwrap();
    for change in [Change::Down, Change::Up] {
        let of = |f: &dyn Fn(&Leg) -> Duration| -> Vec<Duration> {
            legs.iter()
                .filter(|(c, _)| *c == change)
                .map(|(_, l)| f(l))
                .collect()
        };
        let name = if change == Change::Down { "down" } else { "up" };
        let rows: [(&str, Vec<Duration>); 5] = [
            ("event → HAProxy detects", of(&|l| l.detected - l.command)),
            ("event → webhook", of(&|l| l.hook - l.command)),
            ("event → mail", of(&|l| l.mail - l.command)),
            (
                "detection → webhook",
                of(&|l| l.hook.saturating_duration_since(l.detected)),
            ),
            (
                "detection → mail",
                of(&|l| l.mail.saturating_duration_since(l.detected)),
            ),
        ];
        for (what, values) in rows {
            let worst = values.iter().max().copied().unwrap_or_default();
            let best = values.iter().min().copied().unwrap_or_default();
            if what.starts_with("detection") && worst > goal {
                met = false;
            }
            writeln!(
                report,
                "| {name}: {what} | {} | {} | {} |",
                secs(median(&values)),
                secs(worst),
                secs(best)
            )
            .unwrap();
        }
    }
    let total_worst = legs
        .iter()
        .map(|(_, l)| l.hook.max(l.mail) - l.command)
        .max()
        .unwrap_or_default();
    let detect_worst = legs
        .iter()
        .map(|(_, l)| l.detected - l.command)
        .max()
        .unwrap_or_default();
    writeln!(
        report,
        "\nGoal: worst ≤ detection + interval + 0.5 s, i.e. detection → arrival ≤ {} s: {}. \
         Worst event → arrival {} s (worst detection {} s).",
        secs(goal),
        if met { "met" } else { "NOT met" },
        secs(total_worst),
        secs(detect_worst)
    )
    .unwrap();
    met
}

#[test]
#[ignore = "measurement on a real haproxy; ~3 min per interval: \
            cargo test --release --test time_to_notify_watch -- --ignored --nocapture"]
fn time_to_notify_watch() {
    if !require("haproxy") || !require_python_module("aiosmtpd") {
        return;
    }
    let trials = env_u64("HAPWATCH_TTN_TRIALS", 20) as usize;
    let seed = env_u64("HAPWATCH_TTN_SEED", 20_261_203);
    let everies = std::env::var("HAPWATCH_TTN_EVERY_MS").unwrap_or_else(|_| "1000,2000".into());
    let mut report = String::new();
    let mut met = true;
    for every in everies.split(',') {
        let every = Duration::from_millis(every.trim().parse().unwrap());
        met &= measure(every, trials, seed, &mut report);
    }
    eprintln!("{report}");
    assert!(met, "goal not met:\n{report}");
}
