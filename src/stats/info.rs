//! `show info`: the process-wide `Name: value` list.

use serde::Serialize;

/// The `show info` block of one HAProxy process, in the order HAProxy printed it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Info {
    fields: Vec<(String, String)>,
}

impl Info {
    /// Parses `Name: value` lines up to the first empty line. Lines without `: ` are
    /// skipped: they carry nothing a rule could use.
    pub fn parse(text: &str) -> Info {
        let fields = text
            .lines()
            .take_while(|line| !line.trim().is_empty())
            .filter_map(|line| {
                let (key, value) = line.split_once(':')?;
                Some((key.trim().to_string(), value.trim().to_string()))
            })
            .collect();
        Info { fields }
    }

    /// True when `text` starts like a `show info` reply (`Name: HAProxy` or any `Key: value`).
    pub fn looks_like(text: &str) -> bool {
        let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        !first.starts_with('#')
            && first
                .split_once(':')
                .is_some_and(|(k, _)| !k.is_empty() && !k.contains([',', ' ']))
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn number(&self, key: &str) -> Option<u64> {
        self.get(key)?.parse().ok()
    }

    /// The OS process id (`Pid`); it changes on every reload.
    pub fn pid(&self) -> Option<u64> {
        self.number("Pid")
    }

    /// Seconds since this process started (`Uptime_sec`).
    pub fn uptime_sec(&self) -> Option<u64> {
        self.number("Uptime_sec")
    }

    /// Unix time this process started (`Start_time_sec`, HAProxy 2.5+).
    pub fn start_time_sec(&self) -> Option<u64> {
        self.number("Start_time_sec")
    }

    /// `node`: the name set with `node` in the global section (default: the hostname).
    pub fn node(&self) -> Option<&str> {
        self.get("node")
    }

    /// `Version`, e.g. `2.6.12-1+deb12u4`.
    pub fn version(&self) -> Option<&str> {
        self.get("Version")
    }

    /// All fields in order.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &str)> {
        self.fields.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}
