//! `hapwatch init`: a commented starter config for this host, with the default rules.

use std::path::{Path, PathBuf};

/// The default rules, as shipped in `config/rules.toml`.
pub const DEFAULT_RULES: &str = include_str!("../config/rules.toml");

/// Where HAProxy's runtime socket usually is (Debian/Ubuntu, RHEL, the docs' examples).
const COMMON_SOCKETS: &[&str] = &[
    "/run/haproxy/admin.sock",
    "/var/run/haproxy/admin.sock",
    "/var/lib/haproxy/stats",
    "/run/haproxy.sock",
    "/var/run/haproxy.sock",
    "/run/haproxy/haproxy.sock",
];

/// Where the socket path came from, for the message.
#[derive(Debug, PartialEq, Eq)]
pub enum Found {
    /// `--socket`.
    Given,
    /// A `stats socket` line of haproxy.cfg.
    Config(PathBuf),
    /// One of the usual locations exists.
    Usual,
    /// Nothing found; the Debian default is written, to be adjusted.
    Guess,
}

/// Picks the runtime socket: `--socket`, else the first unix `stats socket` of
/// `haproxy_cfg`, else the first usual path that exists, else the Debian default.
pub fn detect_socket(given: Option<&Path>, haproxy_cfg: &Path) -> (PathBuf, Found) {
    if let Some(path) = given {
        return (path.to_path_buf(), Found::Given);
    }
    if let Ok(text) = std::fs::read_to_string(haproxy_cfg) {
        for line in text.lines() {
            let mut words = line.split_whitespace();
            if words.next() == Some("stats") && words.next() == Some("socket") {
                let path = words.next().unwrap_or("");
                let path = path.strip_prefix("unix@").unwrap_or(path);
                if path.starts_with('/') {
                    return (
                        PathBuf::from(path),
                        Found::Config(haproxy_cfg.to_path_buf()),
                    );
                }
            }
        }
    }
    match COMMON_SOCKETS.iter().find(|p| Path::new(p).exists()) {
        Some(path) => (PathBuf::from(path), Found::Usual),
        None => (PathBuf::from(COMMON_SOCKETS[0]), Found::Guess),
    }
}

/// The starter config for `socket`.
pub fn starter_config(socket: &Path, state_file: &Path) -> String {
    format!(
        r#"# hapwatch configuration, written by `hapwatch init`. Reference: the README.
# Check it with `hapwatch check --connect`, try it with `hapwatch run --dry-run`.
# Readable by every user (mode 644), so that the systemd unit's DynamicUser or a cron user
# can read it: keep secrets out of this file (`password_file = "…"`, `password =
# "env:NAME"` or `"credential:NAME"`); hapwatch refuses inline secrets in a config that
# others can read (`hapwatch init --private` writes it with mode 600 instead).

# The default rules (server down, backend down, frontend not open, sessions near the
# limit, queueing, session rate, 5xx ratio, flaps); edit rules.toml or add your own below.
include = ["rules.toml"]

# The HAProxy runtime API. hapwatch only sends `show info;show stat` (level user is
# enough); the user running hapwatch needs read/write access to the socket.
[[source]]
name = "local"
socket = {socket:?}
timeout = "5s"

[state]
file = {state_file:?}

# Without a [notifier], `hapwatch run` prints notifications on stdout, which cron mails
# to the crontab's owner. To mail or call a webhook instead:
#
# [notifier.mail]
# type = "smtp"
# host = "localhost"
# tls = "none"              # "starttls" (default) or "tls" for a remote relay
# from = "hapwatch@example.net"
# to = ["ops@example.net"]
#
# [notifier.chat]
# type = "webhook"
# url = "https://chat.example.net/hooks/xyz"
# format = "slack"
#
# [routes]
# critical = ["mail", "chat"]
# default = ["chat"]
"#
    )
}

/// Writes `contents` to `path` (mode `mode`), refusing to replace an existing file
/// unless `force`.
pub fn write_new(path: &Path, contents: &str, mode: u32, force: bool) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let mut options = std::fs::OpenOptions::new();
    // Never write through a symbolic link (init often runs as root).
    options
        .write(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut file = options.open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => format!(
            "{} already exists; use --force to overwrite it",
            path.display()
        ),
        _ if e.raw_os_error() == Some(libc::ELOOP) => format!(
            "{} is a symbolic link; hapwatch does not write through one: remove it or give the real path",
            path.display()
        ),
        _ => format!("cannot write {}: {e}", path.display()),
    })?;
    // `mode` applies to a new file only; an overwritten one gets it too.
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("cannot set the mode of {}: {e}", path.display()))?;
    file.write_all(contents.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_socket_comes_from_haproxy_cfg_first() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("haproxy.cfg");
        std::fs::write(&cfg, "global\n    stats socket ipv4@127.0.0.1:9999 level admin\n    stats socket /run/hap/admin.sock mode 660 level admin\n").unwrap();
        assert_eq!(
            detect_socket(None, &cfg),
            (
                PathBuf::from("/run/hap/admin.sock"),
                Found::Config(cfg.clone())
            )
        );
        assert_eq!(
            detect_socket(Some(Path::new("/x.sock")), &cfg),
            (PathBuf::from("/x.sock"), Found::Given)
        );
        let none = dir.path().join("missing.cfg");
        assert!(matches!(
            detect_socket(None, &none).1,
            Found::Usual | Found::Guess
        ));
    }

    #[test]
    fn the_starter_config_is_valid() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("rules.toml"), DEFAULT_RULES).unwrap();
        let text = starter_config(
            Path::new("/run/haproxy/admin.sock"),
            Path::new("/var/lib/hapwatch/state.json"),
        );
        let config =
            crate::config::Config::parse(&text, &dir.path().join("hapwatch.toml"), true).unwrap();
        assert_eq!(config.sources.len(), 1);
        assert_eq!(config.rules.rules.len(), 17);
    }
}
