//! `only_if`: on an HA pair, only the node that holds the virtual IP (or passes a command)
//! notifies. The other node still runs, keeps its state current and marks alerts as
//! announced, so that after a failover it announces recoveries but not old problems.
//! Alertmanager notifiers are exempt: both nodes push, and Alertmanager deduplicates the
//! identical alerts.

use serde::Deserialize;
use std::net::IpAddr;

/// `only_if = { vip = "10.0.0.10" }` or `only_if = { command = "…" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnlyIf {
    /// Notify only while this address is configured on a local interface.
    pub vip: Option<IpAddr>,
    /// Notify only when this shell command exits 0.
    pub command: Option<String>,
}

impl OnlyIf {
    /// Checks the config: exactly one condition.
    pub fn validate(&self) -> Result<(), String> {
        match (&self.vip, &self.command) {
            (Some(_), None) | (None, Some(_)) => Ok(()),
            _ => Err("only_if needs exactly one of vip or command".into()),
        }
    }

    /// True when this node is the active one. `Err` says why it could not be told (the
    /// run then notifies: a missed page is worse than a duplicate).
    pub fn active(&self) -> Result<bool, String> {
        if let Some(vip) = self.vip {
            return local_addresses().map(|addrs| addrs.contains(&vip));
        }
        let command = self.command.as_deref().unwrap_or("false");
        std::process::Command::new("/bin/sh")
            .args(["-c", command])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .status()
            .map(|s| s.success())
            .map_err(|e| format!("cannot run only_if command: {e}"))
    }
}

/// Addresses configured on this host's interfaces. `ip_nonlocal_bind`, common on HA
/// load balancers, makes "try to bind it" useless, so the kernel's tables are read:
/// IPv4 from `/proc/net/fib_trie` (LOCAL host routes), IPv6 from `/proc/net/if_inet6`.
pub fn local_addresses() -> Result<Vec<IpAddr>, String> {
    let mut addrs = Vec::new();
    let trie = std::fs::read_to_string("/proc/net/fib_trie")
        .map_err(|e| format!("cannot read /proc/net/fib_trie: {e}"))?;
    let mut last: Option<&str> = None;
    for line in trie.lines() {
        let line = line.trim();
        if let Some(addr) = line.strip_prefix("|-- ") {
            last = Some(addr);
        } else if line.contains("host LOCAL") {
            if let Some(ip) = last.and_then(|a| a.parse().ok()) {
                if !addrs.contains(&ip) {
                    addrs.push(ip);
                }
            }
        }
    }
    if let Ok(v6) = std::fs::read_to_string("/proc/net/if_inet6") {
        for line in v6.lines() {
            let Some(hex) = line.split_whitespace().next().filter(|h| h.len() == 32) else {
                continue;
            };
            let mut bytes = [0u8; 16];
            for (i, b) in bytes.iter_mut().enumerate() {
                *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap_or(0);
            }
            addrs.push(IpAddr::from(bytes));
        }
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_local_and_a_documentation_address_is_not() {
        let addrs = local_addresses().unwrap();
        assert!(addrs.contains(&"127.0.0.1".parse().unwrap()), "{addrs:?}");
        let vip = |ip: &str| OnlyIf {
            vip: Some(ip.parse().unwrap()),
            command: None,
        };
        assert!(vip("127.0.0.1").active().unwrap());
        assert!(!vip("192.0.2.77").active().unwrap());
    }

    #[test]
    fn a_command_decides_by_exit_status() {
        let cmd = |c: &str| OnlyIf {
            vip: None,
            command: Some(c.into()),
        };
        assert!(cmd("true").active().unwrap());
        assert!(!cmd("exit 3").active().unwrap());
        assert!(OnlyIf {
            vip: None,
            command: None
        }
        .validate()
        .is_err());
    }
}
