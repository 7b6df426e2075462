//! The files hapwatch writes, when someone else can reach them (hapwatch often runs as
//! root): never through a symbolic link, never replacing what it did not create, never in a
//! directory others may write to; two configs never share one state; a state with a bad
//! part never costs the outbox. Each test runs the real binary.

mod common;

use common::{fixture_bytes, Hapwatch, Output};
use serde_json::Value;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tempfile::TempDir;

/// A config whose one file source shows a server down, with the state in `state/`.
struct Setup {
    dir: TempDir,
    config: PathBuf,
}

const RULES: &str = r#"
[[rule]]
name = "Down"
scope = { type = "server", exclude_server = "web4" }
when = 'state == "down"'
"#;

impl Setup {
    fn new() -> Setup {
        Setup::with_notifier("")
    }

    /// `extra` is appended to the config (e.g. a notifier).
    fn with_notifier(extra: &str) -> Setup {
        let dir = common::temp_dir();
        std::fs::create_dir(dir.path().join("state")).unwrap();
        std::fs::set_permissions(
            dir.path().join("state"),
            std::fs::Permissions::from_mode(0o700),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("lb1.csv"),
            fixture_bytes("haproxy-2.6/down-after-kill.csv"),
        )
        .unwrap();
        let config = dir.path().join("hapwatch.toml");
        std::fs::write(
            &config,
            format!(
                "[[source]]\nname = \"lb1\"\nfile = \"lb1.csv\"\n{RULES}\n[state]\nfile = \"state/state.json\"\n{extra}"
            ),
        )
        .unwrap();
        Setup { dir, config }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn state(&self) -> PathBuf {
        self.path("state/state.json")
    }

    fn hapwatch(&self) -> Hapwatch {
        Hapwatch::new()
            .config_path(&self.config)
            .guard(Duration::from_secs(20))
    }

    fn run(&self) -> Output {
        self.hapwatch().args(["run", "--format", "json"]).run()
    }
}

/// Names in a directory, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn a_symlink_at_the_lock_path_is_refused_and_not_followed() {
    let s = Setup::new();
    let target = s.path("created-through-the-link");
    std::os::unix::fs::symlink(&target, s.path("state/state.json.lock")).unwrap();
    s.run()
        .status(1)
        .stderr_contains("its lock file")
        .stderr_contains("state.json.lock is a symbolic link")
        .stderr_contains("nothing was changed");
    assert!(!target.exists(), "the link was followed");
    assert!(!s.state().exists());
}

#[test]
fn a_directory_others_can_write_to_is_refused_unless_sticky() {
    let s = Setup::new();
    let dir = s.path("state");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    s.run()
        .status(1)
        .stderr_contains("is writable by everyone (mode 0777) without the sticky bit")
        .stderr_contains("chmod go-w");
    assert!(names(&dir).is_empty(), "{:?}", names(&dir));
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o775)).unwrap();
    s.run()
        .status(1)
        .stderr_contains("is writable by its group (mode 0775)");
    // /tmp-like: others may write, but not remove or rename what is not theirs.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
    s.run().status(0).stderr_empty();
    assert!(s.state().exists());
}

#[test]
fn a_directory_owned_by_another_user_is_refused() {
    if !is_root() {
        eprintln!("SKIPPED: needs root to chown");
        return;
    }
    let s = Setup::new();
    let dir = s.path("state");
    std::os::unix::fs::chown(&dir, Some(54321), None).unwrap();
    s.run()
        .status(1)
        .stderr_contains("is owned by uid 54321, not by this user (uid 0) or root");
    assert!(names(&dir).is_empty());
}

#[test]
fn in_a_sticky_shared_directory_another_users_files_are_not_used() {
    if !is_root() {
        eprintln!("SKIPPED: needs root to chown");
        return;
    }
    let s = Setup::new();
    let dir = s.path("state");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
    // Planted by another user before hapwatch ever ran.
    std::fs::write(s.state(), "{\"version\":2,\"alerts\":{}}").unwrap();
    std::os::unix::fs::chown(s.state(), Some(54321), None).unwrap();
    s.run()
        .status(1)
        .stderr_contains("is owned by uid 54321, not by this user (uid 0) or root (in a directory others can write to)");
    let lock = s.path("state/state.json.lock");
    std::fs::remove_file(s.state()).unwrap();
    std::fs::remove_file(&lock).unwrap();
    std::fs::write(&lock, "").unwrap();
    std::os::unix::fs::chown(&lock, Some(54321), None).unwrap();
    s.run()
        .status(1)
        .stderr_contains("its lock file")
        .stderr_contains("owned by uid 54321");
}

#[test]
fn things_that_are_not_a_hapwatch_state_are_never_read_moved_or_replaced() {
    let s = Setup::new();
    let unrelated = "root:x:0:0:root:/root:/bin/bash\n";
    std::fs::write(s.state(), unrelated).unwrap();
    for args in [
        &["run"][..],
        &["run", "--dry-run"],
        &["state", "reset"],
        &["state", "show"],
        &["silence", "list"],
        &["silence", "add", "--for", "1h", "--match", "alertname=Down"],
    ] {
        s.hapwatch()
            .args(args)
            .run()
            .status(1)
            .stderr_contains("does not look like a hapwatch state")
            .stderr_contains("nothing was changed");
        assert_eq!(std::fs::read_to_string(s.state()).unwrap(), unrelated);
        assert_eq!(
            names(&s.path("state")),
            ["state.json", "state.json.lock"][..if args[0] == "run" && args.len() == 1
                || args[0] == "silence" && args[1] == "add"
                || args[0] == "state" && args[1] == "reset"
            {
                2
            } else {
                1
            }],
            "{args:?}"
        );
        std::fs::remove_file(s.path("state/state.json.lock")).ok();
    }
    // JSON, but not hapwatch's.
    std::fs::write(s.state(), "{\"users\": []}").unwrap();
    s.run()
        .status(1)
        .stderr_contains("does not look like a hapwatch state");
    assert_eq!(
        std::fs::read_to_string(s.state()).unwrap(),
        "{\"users\": []}"
    );
}

#[test]
fn a_device_a_fifo_or_a_link_at_the_state_path_is_refused_without_hanging() {
    let s = Setup::new();
    // A FIFO: opening it for reading would wait for a writer forever.
    let fifo = std::ffi::CString::new(s.state().to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    for args in [&["run"][..], &["run", "--dry-run"], &["state", "reset"]] {
        s.hapwatch()
            .args(args)
            .run()
            .status(1)
            .stderr_contains("the state file")
            .stderr_contains("is a FIFO");
        assert!(std::fs::symlink_metadata(s.state())
            .unwrap()
            .file_type()
            .is_fifo());
    }
    std::fs::remove_file(s.state()).unwrap();
    // A link to an endless file: must not be read until memory runs out.
    std::os::unix::fs::symlink("/dev/zero", s.state()).unwrap();
    for args in [&["run"][..], &["state", "show"], &["state", "reset"]] {
        s.hapwatch()
            .args(args)
            .run()
            .status(1)
            .stderr_contains("is a symbolic link");
        assert!(std::fs::symlink_metadata(s.state())
            .unwrap()
            .file_type()
            .is_symlink());
    }
    std::fs::remove_file(s.state()).unwrap();
    if is_root() {
        // A copy of /dev/null: a run used to rename it aside and write JSON in its place.
        let node = std::ffi::CString::new(s.state().to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path; makedev(1, 3) is the null device.
        let made =
            unsafe { libc::mknod(node.as_ptr(), libc::S_IFCHR | 0o600, libc::makedev(1, 3)) };
        assert_eq!(made, 0, "mknod failed");
        for args in [&["run"][..], &["state", "reset"]] {
            s.hapwatch()
                .args(args)
                .run()
                .status(1)
                .stderr_contains("is a device");
            assert!(std::fs::symlink_metadata(s.state())
                .unwrap()
                .file_type()
                .is_char_device());
        }
    }
    assert!(
        !names(&s.path("state"))
            .iter()
            .any(|n| n.contains(".corrupt-") || n.contains(".tmp-")),
        "{:?}",
        names(&s.path("state"))
    );
}

#[test]
fn read_only_commands_never_write() {
    let s = Setup::new();
    s.run().status(0);
    // Torn hapwatch JSON: a run moves it aside; reading commands leave it alone.
    let torn = "{\"version\": 2, \"alerts\": {\"x\": tru";
    std::fs::write(s.state(), torn).unwrap();
    for args in [&["silence", "list"][..], &["run", "--dry-run"]] {
        s.hapwatch().args(args).run();
        assert_eq!(
            std::fs::read_to_string(s.state()).unwrap(),
            torn,
            "{args:?}"
        );
    }
    s.hapwatch()
        .args(["state", "show"])
        .run()
        .status(1)
        .stderr_contains("is unusable");
    assert_eq!(std::fs::read_to_string(s.state()).unwrap(), torn);
    // The history was written by the first, real run.
    assert_eq!(
        names(&s.path("state")),
        ["state.history.jsonl", "state.json", "state.json.lock"]
    );
    // An expired silence is listed as gone, but only a writing command removes it.
    std::fs::write(
        s.state(),
        r#"{"version":2,"silences":[{"id":"1","matchers":[],"starts_at":1.0,"ends_at":2.0,"comment":"","created_by":""}],"next_silence_id":2}"#,
    )
    .unwrap();
    let before = std::fs::read(s.state()).unwrap();
    s.hapwatch().args(["silence", "list"]).run().status(0);
    assert_eq!(std::fs::read(s.state()).unwrap(), before);
}

#[test]
fn an_empty_state_file_is_a_first_run() {
    let s = Setup::new();
    std::fs::write(s.state(), "").unwrap();
    let out = s.run();
    out.status(0).stderr_empty();
    assert_eq!(out.stdout.lines().count(), 1, "the alert is announced");
    assert!(!names(&s.path("state"))
        .iter()
        .any(|n| n.contains("corrupt")));
}

#[test]
fn two_configs_on_one_state_file_are_refused_with_both_names() {
    let a = Setup::new();
    a.run().status(0);
    // A second config (a healthy capture) pointing at the first one's state file.
    let b_dir = common::temp_dir();
    std::fs::write(
        b_dir.path().join("lb1.csv"),
        fixture_bytes("haproxy-2.6/check-in-progress.csv"),
    )
    .unwrap();
    let b_config = b_dir.path().join("other.toml");
    std::fs::write(
        &b_config,
        format!(
            "[[source]]\nname = \"lb1\"\nfile = \"lb1.csv\"\n{RULES}\n[state]\nfile = {:?}\n",
            a.state().to_str().unwrap()
        ),
    )
    .unwrap();
    let before = std::fs::read(a.state()).unwrap();
    let b = || {
        Hapwatch::new()
            .config_path(&b_config)
            .args(["run", "--format", "json"])
    };
    let out = b().run();
    out.status(1)
        .stdout_empty()
        .stderr_contains(&format!(
            "belongs to config {}, not {}",
            a.config.canonicalize().unwrap().display(),
            b_config.canonicalize().unwrap().display()
        ))
        .stderr_contains("--adopt-state");
    assert_eq!(
        std::fs::read(a.state()).unwrap(),
        before,
        "no false recovery"
    );
    Hapwatch::new()
        .config_path(&b_config)
        .args(["silence", "add", "--for", "1h", "--match", "alertname=Down"])
        .run()
        .status(1)
        .stderr_contains("belongs to config");
    // The first config goes on as before.
    a.run().status(0).stdout_empty();
    // Moving a config on purpose.
    let out = b().arg("--adopt-state").run();
    out.status(0);
    assert!(out.stdout.contains("\"resolved\":[{"), "{}", out.stdout);
    let state: Value = serde_json::from_slice(&std::fs::read(a.state()).unwrap()).unwrap();
    assert_eq!(
        state["config"],
        b_config.canonicalize().unwrap().to_str().unwrap()
    );
}

#[test]
fn a_bad_field_costs_only_that_entry_never_the_outbox() {
    let closed = common::closed_addr();
    let s = Setup::with_notifier(&format!(
        "[notifier.hook]\ntype = \"webhook\"\nurl = \"http://{closed}/hook\"\nretries = 0\ntimeout = \"2s\"\n"
    ));
    s.run().status(1).stderr_contains("notifier hook");
    let mut state: Value = serde_json::from_slice(&std::fs::read(s.state()).unwrap()).unwrap();
    assert_eq!(state["outbox"].as_array().unwrap().len(), 1);
    // What `--now NaN` used to leave behind: a null where a time belongs, in one alert.
    let alerts = state["alerts"].as_object_mut().unwrap();
    let key = alerts.keys().next().unwrap().clone();
    alerts[&key]["active_since"] = Value::Null;
    std::fs::write(s.state(), serde_json::to_vec(&state).unwrap()).unwrap();
    let out = s.run();
    out.status(1)
        .stdout_empty()
        .stderr_contains(&format!(
            "had unreadable parts, dropped: alerts.{key}: invalid type: null, expected f64"
        ))
        .stderr_contains("kept everything else (outbox included)")
        .stderr_contains("state.json.corrupt-");
    let after: Value = serde_json::from_slice(&std::fs::read(s.state()).unwrap()).unwrap();
    assert!(
        after["outbox"]
            .as_array()
            .unwrap()
            .iter()
            .any(
                |item| item["created_at"] == state["outbox"][0]["created_at"]
                    && item["payload"] == state["outbox"][0]["payload"]
            ),
        "the undelivered notification is still queued: {after}"
    );
    assert_eq!(
        after["outbox"].as_array().unwrap().len(),
        1,
        "the alert whose entry was lost is not announced again: {after}"
    );
}

#[test]
fn check_connect_reports_a_state_the_run_could_not_use() {
    let s = Setup::new();
    s.hapwatch().args(["check", "--connect"]).run().status(0);
    std::fs::set_permissions(s.path("state"), std::fs::Permissions::from_mode(0o777)).unwrap();
    s.hapwatch()
        .args(["check", "--connect"])
        .run()
        .status(1)
        .stdout_contains(": OK (1 source, 1 rule)")
        .stderr_contains("without the sticky bit");
    std::fs::set_permissions(s.path("state"), std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(s.state(), "not ours").unwrap();
    s.hapwatch()
        .args(["check", "--connect"])
        .run()
        .status(1)
        .stderr_contains("does not look like a hapwatch state");
    assert!(
        names(&s.path("state")) == ["state.json"],
        "check changes nothing"
    );
    // The unit's DynamicUser or a cron user that cannot write the directory.
    std::fs::remove_file(s.state()).unwrap();
    for dir in [s.dir.path(), &s.path("state")] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    for file in [&s.config, &s.path("lb1.csv")] {
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let Some(out) =
        common::run_as_nobody(&["-c", s.config.to_str().unwrap(), "check", "--connect"])
    else {
        return;
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("this user (uid 65534) cannot write to"),
        "{stderr}"
    );
}

#[test]
fn a_silence_on_a_label_no_alert_carries_is_warned_about() {
    let s = Setup::new();
    s.hapwatch()
        .args(["silence", "add", "--for", "1h", "--match", "srever=web1"])
        .run()
        .status(0)
        .stdout_is("1\n")
        .stderr_is("hapwatch: warning: silence matcher on `srever`: no rule or source produces that label (did you mean `server`?), so it matches nothing (labels: alertname, proxy, server, severity, source, type)\n");
    s.hapwatch()
        .args(["silence", "add", "--for", "1h", "--match", "alertname=Dwn"])
        .run()
        .status(0)
        .stderr_is("hapwatch: warning: silence matcher alertname=Dwn: no rule has that name (did you mean `Down`?), so it matches nothing\n");
    s.hapwatch()
        .args([
            "silence",
            "add",
            "--for",
            "1h",
            "--match",
            "server=web1",
            "--match",
            "alertname=Down",
        ])
        .run()
        .status(0)
        .stderr_empty();
}

#[test]
fn state_show_lists_silenced_alerts_and_the_outbox() {
    let closed = common::closed_addr();
    let s = Setup::with_notifier(&format!(
        "[notifier.hook]\ntype = \"webhook\"\nurl = \"http://{closed}/hook\"\nretries = 0\ntimeout = \"2s\"\n"
    ));
    s.run().status(1);
    s.hapwatch()
        .env_remove("SUDO_USER")
        .env_remove("USER")
        .env_remove("LOGNAME")
        .args(["silence", "add", "--for", "1h", "--match", "server=web3"])
        .run()
        .status(0);
    let out = s.hapwatch().args(["state", "show"]).run();
    out.status(0)
        .stdout_contains("firing, silenced (1)")
        .stdout_contains("\noutbox: 1 waiting\n")
        .stdout_contains("1 firing, 0 resolved {alertname=\"Down\"");
    let row = out
        .stdout
        .lines()
        .find(|l| l.starts_with("hook "))
        .unwrap_or_else(|| panic!("{}", out.stdout));
    assert!(row.contains(&closed.to_string()), "{row}");
    // Who added the silence, even without USER (cron, systemd).
    let list = s.hapwatch().args(["silence", "list"]).run();
    list.status(0).stdout_contains(" BY ");
    assert!(
        list.stdout
            .lines()
            .nth(1)
            .is_some_and(|l| l.split_whitespace().count() >= 4),
        "{}",
        list.stdout
    );
}

/// Checking only the state's own directory left a race: whoever may write to a directory
/// above it can swap the state directory (or a link on the way) between the check and
/// the opens.
#[test]
fn a_directory_above_that_others_can_write_to_is_refused() {
    let s = Setup::new();
    std::fs::set_permissions(s.dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    s.run().status(1).stderr_contains(&format!(
        "the directory above it {} is writable by everyone (mode 0777) without the sticky bit",
        s.dir.path().display()
    ));
    assert!(names(&s.path("state")).is_empty());
    // Reached through a link that lives in such a directory.
    std::fs::set_permissions(s.dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let open = common::temp_dir();
    std::fs::set_permissions(open.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    std::os::unix::fs::symlink(s.path("state"), open.path().join("link")).unwrap();
    s.hapwatch()
        .arg("--state")
        .arg(open.path().join("link/state.json"))
        .arg("run")
        .run()
        .status(1)
        .stderr_contains("the directory above it")
        .stderr_contains("without the sticky bit");
    assert!(names(&s.path("state")).is_empty());
}

/// A hard link at the lock path (possible where fs.protected_hardlinks is off) made root
/// truncate and rewrite the linked file with its PID.
#[test]
fn a_hard_link_at_the_lock_or_state_path_is_refused() {
    let s = Setup::new();
    let victim = s.path("state/victim");
    std::fs::write(&victim, "precious").unwrap();
    std::fs::hard_link(&victim, s.path("state/state.json.lock")).unwrap();
    s.run()
        .status(1)
        .stderr_contains("its lock file")
        .stderr_contains("has 2 hard links");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    std::fs::remove_file(s.path("state/state.json.lock")).unwrap();
    std::fs::write(&victim, "{\"version\":2,\"alerts\":{}}").unwrap();
    std::fs::hard_link(&victim, s.state()).unwrap();
    s.hapwatch()
        .args(["state", "reset"])
        .run()
        .status(1)
        .stderr_contains("has 2 hard links");
    assert_eq!(
        std::fs::read_to_string(&victim).unwrap(),
        "{\"version\":2,\"alerts\":{}}"
    );
}

/// Deploys that switch a link (Kubernetes ConfigMaps, release directories) keep the same
/// config path: the state stays this config's.
#[test]
fn a_config_behind_a_switched_link_keeps_its_state() {
    let s = Setup::new();
    let releases = [s.path("release-1"), s.path("release-2")];
    for dir in &releases {
        std::fs::create_dir(dir).unwrap();
        std::fs::copy(&s.config, dir.join("hapwatch.toml")).unwrap();
        std::fs::copy(s.path("lb1.csv"), dir.join("lb1.csv")).unwrap();
    }
    // Relative paths in each copy resolve in its own directory: the state goes to one place.
    let state = s.state();
    for dir in &releases {
        let text = std::fs::read_to_string(dir.join("hapwatch.toml"))
            .unwrap()
            .replace("state/state.json", state.to_str().unwrap());
        std::fs::write(dir.join("hapwatch.toml"), text).unwrap();
    }
    let current = s.path("current.toml");
    std::os::unix::fs::symlink(releases[0].join("hapwatch.toml"), &current).unwrap();
    let run = || {
        Hapwatch::new()
            .config_path(&current)
            .args(["run", "--format", "json"])
            .run()
    };
    run().status(0);
    std::fs::remove_file(&current).unwrap();
    std::os::unix::fs::symlink(releases[1].join("hapwatch.toml"), &current).unwrap();
    run().status(0).stdout_empty().stderr_empty();
}

#[test]
fn state_reset_leaves_another_configs_state_alone() {
    let a = Setup::new();
    a.run().status(0);
    let before = std::fs::read(a.state()).unwrap();
    let b = Hapwatch::new()
        .config_text(format!(
            "[[source]]\nname = \"x\"\nfile = \"x.csv\"\n[state]\nfile = {:?}\n",
            a.state().to_str().unwrap()
        ))
        .args(["state", "reset"])
        .run();
    b.status(1).stderr_contains("belongs to config");
    assert_eq!(std::fs::read(a.state()).unwrap(), before);
    a.hapwatch().args(["state", "reset"]).run().status(0);
    let after: Value = serde_json::from_slice(&std::fs::read(a.state()).unwrap()).unwrap();
    assert_eq!(after["alerts"], serde_json::json!({}));
    assert_eq!(after["config"], a.config.to_str().unwrap());
}
