//! Row types and HAProxy status strings, normalized.

use serde::Serialize;

/// What a row describes (`type` column: 0 frontend, 1 backend, 2 server, 3 listener).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyType {
    /// A frontend's aggregate row (`svname` = `FRONTEND`).
    Frontend,
    /// A backend's aggregate row (`svname` = `BACKEND`).
    Backend,
    /// One server of a backend.
    Server,
    /// One listening socket (`option socket-stats`).
    Listener,
}

impl ProxyType {
    /// All types, in HAProxy's code order.
    pub const ALL: [ProxyType; 4] = [
        ProxyType::Frontend,
        ProxyType::Backend,
        ProxyType::Server,
        ProxyType::Listener,
    ];

    pub(super) fn from_code(code: u64) -> Option<Self> {
        Self::ALL.get(usize::try_from(code).ok()?).copied()
    }

    /// For dumps without a `type` column (HAProxy before 1.4).
    pub(super) fn from_svname(svname: &str) -> Self {
        match svname {
            "FRONTEND" => ProxyType::Frontend,
            "BACKEND" => ProxyType::Backend,
            _ => ProxyType::Server,
        }
    }

    /// The lowercase name used in config and output.
    pub fn as_str(self) -> &'static str {
        match self {
            ProxyType::Frontend => "frontend",
            ProxyType::Backend => "backend",
            ProxyType::Server => "server",
            ProxyType::Listener => "listener",
        }
    }

    /// Parses `frontend`, `backend`, `server` or `listener`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

/// A set of row types, as `show stat`'s type filter takes it (1 frontends, 2 backends,
/// 4 servers, 8 listeners).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TypeMask(pub u8);

impl TypeMask {
    /// Every row type: an unfiltered dump.
    pub const ALL: TypeMask = TypeMask(0b1111);

    /// The mask of `types`; an empty list means all.
    pub fn of(types: &[ProxyType]) -> TypeMask {
        types.iter().copied().collect()
    }

    /// The union of two masks.
    pub fn union(self, other: TypeMask) -> TypeMask {
        TypeMask(self.0 | other.0)
    }

    /// True when rows of type `kind` are in the set.
    pub fn contains(self, kind: ProxyType) -> bool {
        self.0 & (1 << kind as u8) != 0
    }
}

/// The mask of the types collected; none means all.
impl FromIterator<ProxyType> for TypeMask {
    fn from_iter<I: IntoIterator<Item = ProxyType>>(types: I) -> TypeMask {
        match types.into_iter().fold(0, |mask, t| mask | (1 << t as u8)) {
            0 => TypeMask::ALL,
            mask => TypeMask(mask),
        }
    }
}

impl std::fmt::Display for ProxyType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A row's `status`, normalized. The raw string stays available on the row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// `UP` (server or backend).
    Up,
    /// `DOWN`, `DOWN (agent)`: failed its checks, or a backend with no usable server.
    Down,
    /// `UP n/m`: still up, but failing checks.
    GoingDown,
    /// `DOWN n/m`: still down, but passing checks.
    GoingUp,
    /// `NOLB`, `NOLB n/m`: up, but takes no new load-balanced traffic (404 with `http-check disable-on-404`).
    Nolb,
    /// `DRAIN`, `DRAIN (agent)`, `DRAIN n/m`: weight set to 0 by an operator or agent.
    Drain,
    /// `MAINT`, `MAINT (via px/srv)`, `MAINT (resolution)`: disabled by an operator, a tracked server, or DNS.
    Maint,
    /// `no check`: health checks are not configured.
    NoCheck,
    /// `OPEN`: a frontend or listener accepting connections.
    Open,
    /// `STOP`: a stopped frontend.
    Stop,
    /// `FULL`: a frontend or listener at its `maxconn`.
    Full,
    /// `PAUSED`: a disabled frontend (`disable frontend`).
    Paused,
    /// `WAITING`: a listener waiting for resources.
    Waiting,
    /// Anything else, or no `status` column.
    Unknown,
}

impl State {
    /// Normalizes a `status` string from any HAProxy version (case-insensitive).
    pub fn from_status(status: &str) -> State {
        let status = status.trim();
        let (word, rest) = match status.find([' ', '(']) {
            Some(i) => (&status[..i], status[i..].trim()),
            None => (status, ""),
        };
        // "UP 1/2" and "DOWN 1/2" are transitions; "(agent)", "(via …)" are reasons.
        let transitional = rest.as_bytes().first().is_some_and(u8::is_ascii_digit);
        let is = |name: &str| word.eq_ignore_ascii_case(name);
        if is("UP") {
            if transitional {
                State::GoingDown
            } else {
                State::Up
            }
        } else if is("DOWN") {
            if transitional {
                State::GoingUp
            } else {
                State::Down
            }
        } else if is("NOLB") {
            State::Nolb
        } else if is("DRAIN") {
            State::Drain
        } else if is("MAINT") {
            State::Maint
        } else if is("no") && rest.eq_ignore_ascii_case("check") {
            State::NoCheck
        } else if is("OPEN") {
            State::Open
        } else if is("STOP") {
            State::Stop
        } else if is("FULL") {
            State::Full
        } else if is("PAUSED") {
            State::Paused
        } else if is("WAITING") {
            State::Waiting
        } else {
            State::Unknown
        }
    }

    /// The snake_case name used in rules and output.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Up => "up",
            State::Down => "down",
            State::GoingDown => "going_down",
            State::GoingUp => "going_up",
            State::Nolb => "nolb",
            State::Drain => "drain",
            State::Maint => "maint",
            State::NoCheck => "no_check",
            State::Open => "open",
            State::Stop => "stop",
            State::Full => "full",
            State::Paused => "paused",
            State::Waiting => "waiting",
            State::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::State::{self, *};

    #[test]
    fn every_status_haproxy_prints_is_normalized() {
        let cases = [
            ("UP", Up),
            ("UP 1/2", GoingDown),
            ("DOWN", Down),
            ("DOWN 1/2", GoingUp),
            ("DOWN (agent)", Down),
            ("NOLB", Nolb),
            ("NOLB 1/3", Nolb),
            ("DRAIN", Drain),
            ("DRAIN (agent)", Drain),
            ("DRAIN 1/2", Drain),
            ("MAINT", Maint),
            ("MAINT (via app/web1)", Maint),
            ("MAINT (resolution)", Maint),
            ("MAINT(via)", Maint),
            ("no check", NoCheck),
            ("NO CHECK", NoCheck),
            ("OPEN", Open),
            ("STOP", Stop),
            ("FULL", Full),
            ("PAUSED", Paused),
            ("WAITING", Waiting),
            ("", Unknown),
            ("SOMETHING", Unknown),
            ("no", Unknown),
        ];
        for (raw, want) in cases {
            assert_eq!(State::from_status(raw), want, "status {raw:?}");
        }
    }
}
