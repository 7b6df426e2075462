//! What the time-to-notify measurements (tests/time_to_notify.rs for runs,
//! tests/time_to_notify_watch.rs for the watch mode) share: their settings from the
//! environment, a seedable random schedule, the config under test, and how figures print.

use super::{Access, Haproxy, HttpReceiver, SmtpServer};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The number in environment variable `name`, or `default` when it is not set.
pub fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

/// SplitMix64: a tiny, well-distributed, seedable generator (no dependency needed), so
/// that a measurement's schedule of random delays can be run again from its seed.
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A permutation of 0..n (Fisher–Yates).
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut p: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            p.swap(i, j);
        }
        p
    }

    /// `n` phases in [0, period): one uniform draw in each of n equal slices, shuffled.
    pub fn stratified_phases(&mut self, n: usize, period: Duration) -> Vec<Duration> {
        self.permutation(n)
            .into_iter()
            .map(|slice| period.mul_f64((slice as f64 + self.unit()) / n as f64))
            .collect()
    }
}

/// Writes `<haproxy's dir>/hapwatch.toml`: the default rules (config/rules.toml) on
/// `haproxy`'s user socket as source `lb1`, the state next to it, and two notifiers,
/// `mail` (to `smtp`, no TLS) and `hook` (to `hook`'s `/hook`). Returns its path.
pub fn notify_config(haproxy: &Haproxy, smtp: &SmtpServer, hook: &HttpReceiver) -> PathBuf {
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/rules.toml");
    let dir = haproxy.dir().to_path_buf();
    let config = dir.join("hapwatch.toml");
    let text = format!(
        "include = [{rules}]\n\n{source}\n[state]\nfile = {state}\n\n\
         [notifier.mail]\ntype = \"smtp\"\nhost = \"127.0.0.1\"\nport = {smtp_port}\n\
         tls = \"none\"\nfrom = \"hapwatch@example.net\"\nto = [\"ops@example.net\"]\n\n\
         [notifier.hook]\ntype = \"webhook\"\nurl = {hook_url}\n",
        rules = toml::Value::String(rules.display().to_string()),
        source = haproxy.source("lb1", Access::UserSocket).to_toml(),
        state = toml::Value::String(dir.join("state.json").display().to_string()),
        smtp_port = smtp.port(),
        hook_url = toml::Value::String(hook.url_for("/hook")),
    );
    std::fs::write(&config, &text).expect("cannot write hapwatch.toml");
    config
}

/// Seconds with two decimals.
pub fn secs(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64())
}

/// The median of `values` (the mean of the middle two for an even count).
pub fn median(values: &[Duration]) -> Duration {
    let mut v = values.to_vec();
    v.sort();
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2
    }
}

/// The `- …` entries of a hapwatch notification mail's text, each with its section
/// (`"firing"` or `"resolved"`). The STILL FIRING section (other alerts of the group, e.g.
/// a server down since before the measurement) is context, not news: left out.
pub fn mail_entries(text: &str) -> Vec<(&'static str, String)> {
    let mut section = "";
    let mut entries = Vec::new();
    for line in text.lines() {
        if line.starts_with("FIRING (") {
            section = "firing";
        } else if line.starts_with("RESOLVED (") {
            section = "resolved";
        } else if line.starts_with("STILL FIRING (") {
            section = "still";
        } else if let Some(entry) = line.strip_prefix("- ") {
            if section != "still" {
                entries.push((section, entry.to_string()));
            }
        }
    }
    entries
}
