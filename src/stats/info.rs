//! `show info`: the process-wide `Name: value` list.

use serde::Serialize;

/// The `show info` block of one HAProxy process, in the order HAProxy printed it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Info {
    fields: Vec<(String, String)>,
    /// Seconds from connecting to the source until its whole reply was read (runtime API
    /// sources; set by the source once the dump is complete).
    #[serde(skip)]
    pub read_seconds: Option<f64>,
}

/// `show info` fields of HAProxy 1.4 to 3.x that rules may name, and whether each is text
/// (the others are numbers). Rules are type-checked against this list, so that a typo is
/// a config error with a suggestion rather than a rule that can never match.
pub const KNOWN_FIELDS: &[(&str, bool)] = &[
    ("Name", true),
    ("Version", true),
    ("Release_date", true),
    ("Nbthread", false),
    ("Nbproc", false),
    ("Process_num", false),
    ("Pid", false),
    ("Uptime", true),
    ("Uptime_sec", false),
    ("Start_time_sec", false),
    ("Memmax_MB", false),
    ("Memmax_bytes", false),
    ("PoolAlloc_MB", false),
    ("PoolAlloc_bytes", false),
    ("PoolUsed_MB", false),
    ("PoolUsed_bytes", false),
    ("PoolFailed", false),
    ("Ulimit-n", false),
    ("Maxsock", false),
    ("Maxconn", false),
    ("Hard_maxconn", false),
    ("CurrConns", false),
    ("CumConns", false),
    ("CumReq", false),
    ("MaxSslConns", false),
    ("CurrSslConns", false),
    ("CumSslConns", false),
    ("Maxpipes", false),
    ("PipesUsed", false),
    ("PipesFree", false),
    ("ConnRate", false),
    ("ConnRateLimit", false),
    ("MaxConnRate", false),
    ("SessRate", false),
    ("SessRateLimit", false),
    ("MaxSessRate", false),
    ("SslRate", false),
    ("SslRateLimit", false),
    ("MaxSslRate", false),
    ("SslFrontendKeyRate", false),
    ("SslFrontendMaxKeyRate", false),
    ("SslFrontendSessionReuse_pct", false),
    ("SslBackendKeyRate", false),
    ("SslBackendMaxKeyRate", false),
    ("SslCacheLookups", false),
    ("SslCacheMisses", false),
    ("CompressBpsIn", false),
    ("CompressBpsOut", false),
    ("CompressBpsRateLim", false),
    ("ZlibMemUsage", false),
    ("MaxZlibMemUsage", false),
    ("Tasks", false),
    ("Run_queue", false),
    ("Idle_pct", false),
    ("node", true),
    ("description", true),
    ("Stopping", false),
    ("Jobs", false),
    ("Unstoppable Jobs", false),
    ("Listeners", false),
    ("ActivePeers", false),
    ("ConnectedPeers", false),
    ("DroppedLogs", false),
    ("BusyPolling", false),
    ("FailedResolutions", false),
    ("TotalBytesOut", false),
    ("TotalSplicdedBytesOut", false),
    ("BytesOutRate", false),
    ("DebugCommandsIssued", false),
    ("CumRecvLogs", false),
    ("Build info", true),
    ("Tainted", true),
    ("TotalWarnings", false),
];

/// `Some(is_text)` for a known `show info` field.
pub fn field_is_text(name: &str) -> Option<bool> {
    KNOWN_FIELDS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, text)| *text)
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
        Info {
            fields,
            read_seconds: None,
        }
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
