//! systemd's notify protocol (`sd_notify(3)`) without libsystemd: one datagram per message
//! to the unix socket named by `$NOTIFY_SOCKET` (a path, or an abstract name written with
//! a leading `@`). `hapwatch watch` says `READY=1` when its config is compiled,
//! `WATCHDOG=1` after every cycle (and while it waits, when the wait is long), and
//! `STOPPING=1` when a signal ends it.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Where to send notify messages, and the watchdog period systemd asked for.
#[derive(Debug)]
pub struct Notify {
    socket: UnixDatagram,
    addr: SocketAddr,
    watchdog: Option<Duration>,
}

impl Notify {
    /// The notify socket of the environment: `None` when not started by systemd with
    /// `Type=notify` (no `$NOTIFY_SOCKET`); an error for a value it cannot use.
    pub fn from_env() -> Result<Option<Notify>, String> {
        let Some(name) = std::env::var_os("NOTIFY_SOCKET").filter(|n| !n.is_empty()) else {
            return Ok(None);
        };
        let text = name.to_string_lossy().into_owned();
        let addr = address(&name).ok_or_else(|| {
            format!("NOTIFY_SOCKET={text:?}: not a unix socket path or @abstract name (hapwatch does not speak vsock); systemd will not hear from it")
        })?;
        let socket = UnixDatagram::unbound()
            .map_err(|e| format!("NOTIFY_SOCKET={text:?}: cannot create a socket: {e}"))?;
        // The watchdog is for this process only (WATCHDOG_PID), as sd_watchdog_enabled(3).
        let ours = std::env::var("WATCHDOG_PID")
            .ok()
            .is_none_or(|pid| pid.trim() == std::process::id().to_string());
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|usec| usec.trim().parse::<u64>().ok())
            .filter(|&usec| usec > 0 && ours)
            .map(Duration::from_micros);
        Ok(Some(Notify {
            socket,
            addr,
            watchdog,
        }))
    }

    /// The watchdog period systemd expects `WATCHDOG=1` within (`WatchdogSec=`), if any.
    pub fn watchdog(&self) -> Option<Duration> {
        self.watchdog
    }

    /// Sends one message, e.g. `READY=1` or `WATCHDOG=1\nSTATUS=…`.
    pub fn send(&self, message: &str) -> std::io::Result<()> {
        self.socket
            .send_to_addr(message.as_bytes(), &self.addr)
            .map(drop)
    }
}

/// The socket address of a `$NOTIFY_SOCKET` value.
fn address(name: &std::ffi::OsStr) -> Option<SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::ffi::OsStrExt;
    let bytes = name.as_bytes();
    match bytes.first()? {
        b'@' => SocketAddr::from_abstract_name(&bytes[1..]).ok(),
        b'/' => SocketAddr::from_pathname(std::path::Path::new(name)).ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_and_an_abstract_name_are_addresses_and_vsock_is_not() {
        use std::os::linux::net::SocketAddrExt;
        let path = address("/run/systemd/notify".as_ref()).unwrap();
        assert_eq!(
            path.as_pathname(),
            Some(std::path::Path::new("/run/systemd/notify"))
        );
        let abstract_ = address("@hapwatch/notify".as_ref()).unwrap();
        assert_eq!(abstract_.as_abstract_name(), Some(&b"hapwatch/notify"[..]));
        assert!(address("vsock:2:1234".as_ref()).is_none());
    }
}
