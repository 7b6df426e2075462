//! Operations: init, secrets, --nagios, completions, man page, heartbeat, only_if,
//! logging, systemd units, and the shipped example configs.

mod common;

use common::{edit_capture, fixture_bytes, Hapwatch, HttpReceiver};
use std::path::Path;
use std::time::Duration;

fn repo(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(path)
        .display()
        .to_string()
}

/// A config reading `lb1.csv` (written by the caller) with the default rules.
fn with_rules(extra: &str) -> String {
    format!(
        "include = [{:?}]\n{extra}\n[[source]]\nname = \"lb1\"\nfile = \"lb1.csv\"\n\n[state]\nfile = \"state.json\"\n",
        repo("config/rules.toml")
    )
}

fn healthy_capture() -> String {
    let text = String::from_utf8(fixture_bytes("haproxy-2.6/show-stat.csv")).unwrap();
    edit_capture(&text, "app-main", "web4", "status", "UP")
}

#[test]
fn init_writes_a_working_config_and_never_overwrites_without_force() {
    let run = Hapwatch::new().file(
        "haproxy.cfg",
        "global\n    stats socket /run/hap-test/admin.sock mode 660 level user\n",
    );
    let dir = run.dir().to_path_buf();
    let config = dir.join("etc/hapwatch.toml");
    let first = run
        .config_path(&config)
        .args([
            "init",
            "--haproxy-cfg",
            dir.join("haproxy.cfg").to_str().unwrap(),
        ])
        .run();
    first
        .status(0)
        .stdout_contains("(socket /run/hap-test/admin.sock, from ")
        .stdout_contains("wrote ")
        .stdout_contains("rules.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(
        text.contains("socket = \"/run/hap-test/admin.sock\""),
        "{text}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode(&config),
        0o644,
        "readable by the systemd unit's DynamicUser and a cron user"
    );
    Hapwatch::new()
        .config_path(&config)
        .arg("check")
        .run()
        .status(0)
        .stdout_contains(": OK (1 source, 17 rules, 3 inhibit rules)");
    Hapwatch::new()
        .config_path(&config)
        .arg("init")
        .run()
        .status(2)
        .stderr_is(&format!(
            "hapwatch: {} already exists; use --force to overwrite it\n",
            config.display()
        ));
    std::fs::write(&config, "edited").unwrap();
    Hapwatch::new()
        .config_path(&config)
        .args(["init", "--force", "--socket", "/x.sock"])
        .run()
        .status(0);
    assert!(std::fs::read_to_string(&config)
        .unwrap()
        .contains("socket = \"/x.sock\""));
    Hapwatch::new()
        .config_path(&config)
        .args(["init", "--force", "--private"])
        .run()
        .status(0);
    assert_eq!(mode(&config), 0o600, "--private, also when overwriting");
    // Never through a link, even with --force.
    let victim = dir.join("victim");
    std::fs::write(&victim, "precious").unwrap();
    let link = dir.join("link.toml");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    Hapwatch::new()
        .config_path(&link)
        .args(["init", "--force"])
        .run()
        .status(2)
        .stderr_contains("is a symbolic link; hapwatch does not write through one");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
}

/// The shipped unit's DynamicUser is not root: a config it cannot read says what to do.
#[test]
fn an_unreadable_config_says_how_to_fix_it() {
    let run = Hapwatch::new();
    let config = run.dir().join("hapwatch.toml");
    std::fs::write(&config, "[[source]]\nname = \"a\"\nfile = \"x.csv\"\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(run.dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    let Some(out) = common::run_as_nobody(&["-c", config.to_str().unwrap(), "check"]) else {
        return;
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("Permission denied"), "{stderr}");
    assert!(
        stderr.contains("this user cannot read it: make it readable, e.g. `chmod 644`"),
        "{stderr}"
    );
}

#[test]
fn an_inline_secret_needs_a_private_config() {
    let text = "[[source]]\nname = \"s\"\nurl = \"http://127.0.0.1:1/stats\"\nusername = \"u\"\npassword = \"INLINE-S3CRET\"\n";
    let out = Hapwatch::new()
        .config_text(text)
        .config_mode(0o644)
        .arg("check")
        .run();
    out.status(2).stderr_contains("an inline password in a config that group or others can read; use password_file or password = \"env:NAME\", or `chmod 600 ");
    // It points at the password's line, not the [[source]] line.
    out.stderr_contains(&format!(
        "{}:5:1: source \"s\": an inline password",
        out.config_display()
    ));
    assert!(!out.stderr.contains("INLINE-S3CRET"));
    Hapwatch::new()
        .config_text(text)
        .config_mode(0o600)
        .arg("check")
        .run()
        .status(0);
    let smtp = "[notifier.m]\ntype = \"smtp\"\nhost = \"h\"\nusername = \"u\"\npassword = \"INLINE-S3CRET\"\nfrom = \"a@b.c\"\nto = [\"d@e.f\"]\n";
    Hapwatch::new()
        .config_text(smtp)
        .config_mode(0o640)
        .arg("check")
        .run()
        .status(2)
        .stderr_contains(
            "notifier \"m\": an inline password in a config that group or others can read",
        );
}

#[test]
fn credentials_come_from_systemd_credentials_directory() {
    let config = "[notifier.m]\ntype = \"smtp\"\nhost = \"h\"\nusername = \"u\"\npassword = \"credential:smtp-password\"\nfrom = \"a@b.c\"\nto = [\"d@e.f\"]\n";
    Hapwatch::new()
        .config_text(config)
        .env_remove("CREDENTIALS_DIRECTORY")
        .arg("check")
        .run()
        .status(1)
        .stderr_is("hapwatch: notifier m: credential:smtp-password needs $CREDENTIALS_DIRECTORY (set by systemd's LoadCredential=); it is not set\n");
    let run = Hapwatch::new()
        .config_text(config)
        .file("smtp-password", "pw\n");
    let dir = run.dir().to_path_buf();
    run.env("CREDENTIALS_DIRECTORY", &dir)
        .arg("check")
        .run()
        .status(0)
        .stderr_empty();
}

#[test]
fn nagios_mode_exit_codes() {
    let ok = Hapwatch::new()
        .config_text(with_rules(""))
        .file("lb1.csv", healthy_capture())
        .args(["run", "--nagios"])
        .run();
    ok.status(0).stderr_empty();
    assert!(
        ok.stdout.starts_with(
            "HAPWATCH OK - no alert firing | firing=0;;;0 pending=0;;;0 unreachable=0;;;0 time="
        ),
        "{}",
        ok.stdout
    );
    assert_eq!(ok.stdout.lines().count(), 1);

    let warning_rule = "[[rule]]\nname = \"Busy\"\nwhen = 'stot > 200'\nseverity = \"warning\"\n\n";
    let warn = Hapwatch::new()
        .config_text(format!("{warning_rule}[[source]]\nname = \"lb1\"\nfile = \"lb1.csv\"\n[state]\nfile = \"state.json\"\n"))
        .file("lb1.csv", healthy_capture())
        .args(["run", "--nagios"])
        .run();
    warn.status(1).stdout_contains(
        "HAPWATCH WARNING - 2 firing: Busy fe-web (lb1), Busy app-main (lb1) | firing=2;;;0",
    );

    let crit = Hapwatch::new()
        .config_text(with_rules(""))
        .file("lb1.csv", fixture_bytes("haproxy-2.6/down-after-kill.csv"))
        .args(["run", "--nagios"])
        .run();
    crit.status(2).stdout_contains("HAPWATCH CRITICAL - 2 firing: ServerDown app-main/web4 (lb1), ServerDown app-main/web3 (lb1) | firing=2;;;0").stdout_lacks("FIRING");

    Hapwatch::new()
        .config_text("[[source]]\nname = \"a\"\nsokcet = \"/x\"\n")
        .args(["run", "--nagios"])
        .run()
        .status(3)
        .stdout_contains("HAPWATCH UNKNOWN - ")
        .stdout_contains("unknown key `sokcet` (did you mean `socket`?)");

    Hapwatch::new().config_text(with_rules("")).file("lb1.csv", healthy_capture()).args(["check", "--nagios"]).run().status(0).stdout_contains("HAPWATCH OK - 1 source read, 14 rows | sources=1;;;0 unreachable=0;;;0 rows=14;;;0 time=");
    Hapwatch::new()
        .config_text(with_rules(""))
        .args(["check", "--nagios"])
        .run()
        .status(2)
        .stdout_contains("HAPWATCH CRITICAL - source lb1: I/O error on ");
}

#[test]
fn completions_and_man_page_are_generated() {
    for (shell, marker) in [
        ("bash", "_hapwatch()"),
        ("zsh", "#compdef hapwatch"),
        ("fish", "complete -c hapwatch"),
    ] {
        let out = Hapwatch::new().args(["completions", shell]).run();
        out.status(0)
            .stdout_contains(marker)
            .stdout_contains("silence");
    }
    let man = Hapwatch::new().arg("man").run();
    man.status(0)
        .stdout_contains(".TH hapwatch 1")
        .stdout_contains("notify\\-test");
}

#[test]
fn the_heartbeat_is_pinged_after_each_run_and_fail_on_trouble() {
    let receiver = HttpReceiver::start();
    let config = with_rules(&format!(
        "[heartbeat]\nurl = \"{}\"\n\n",
        receiver.url_for("/ping/abc")
    ));
    let run = Hapwatch::new()
        .config_text(&config)
        .file("lb1.csv", healthy_capture());
    let dir = run.dir().to_path_buf();
    let first = run.arg("run").run();
    first.status(0).stdout_empty();
    std::fs::remove_file(dir.join("lb1.csv")).unwrap();
    Hapwatch::new()
        .config_path(dir.join("hapwatch.toml"))
        .arg("run")
        .run()
        .status(1);
    let requests = receiver.wait_for_requests(2, Duration::from_secs(5));
    let seen: Vec<(String, String)> = requests
        .iter()
        .map(|r| (r.method.clone(), r.path().to_string()))
        .collect();
    assert_eq!(
        seen,
        [
            ("GET".into(), "/ping/abc".into()),
            ("GET".into(), "/ping/abc/fail".into())
        ]
    );
    // A dry run pings nothing.
    Hapwatch::new()
        .config_path(dir.join("hapwatch.toml"))
        .args(["run", "--dry-run"])
        .run();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(receiver.requests().len(), 2);
}

#[test]
fn only_the_active_node_announces() {
    let down = fixture_bytes("haproxy-2.6/down-after-kill.csv");
    let active = Hapwatch::new()
        .config_text(with_rules("only_if = { vip = \"127.0.0.1\" }\n"))
        .file("lb1.csv", &down)
        .arg("run")
        .run();
    active
        .status(0)
        .stdout_contains("[FIRING:2] ServerDown app-main (lb1)");
    let passive = Hapwatch::new()
        .config_text(with_rules("only_if = { vip = \"192.0.2.10\" }\n"))
        .file("lb1.csv", &down);
    let dir = passive.dir().to_path_buf();
    let out = passive.args(["-v", "run"]).run();
    out.status(0)
        .stdout_empty()
        .stderr_contains("only_if: this is not the active node");
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("state.json")).unwrap()).unwrap();
    let alerts = state["alerts"].as_object().unwrap();
    assert_eq!(alerts.len(), 2);
    assert!(
        alerts
            .values()
            .all(|a| a["status"] == "firing" && a["notified_at"].is_number()),
        "tracked as announced: {state}"
    );
    Hapwatch::new()
        .config_text(with_rules("only_if = { command = \"exit 1\" }\n"))
        .file("lb1.csv", &down)
        .arg("run")
        .run()
        .status(0)
        .stdout_empty();
}

#[test]
fn logging_levels_and_json_lines() {
    let config = with_rules("");
    Hapwatch::new()
        .config_text(&config)
        .file("lb1.csv", healthy_capture())
        .arg("run")
        .run()
        .status(0)
        .stdout_empty()
        .stderr_empty();
    let verbose = Hapwatch::new()
        .config_text(&config)
        .file("lb1.csv", healthy_capture())
        .args(["-v", "run"])
        .run();
    verbose.status(0).stderr_contains("hapwatch: run: 1 sources (0 unreachable), 0 alerts firing, 0 pending, 0 notifications planned, 0 sent, 0 in the outbox, ");
    let json = Hapwatch::new()
        .config_text(&config)
        .args(["--log-format", "json", "run"])
        .run();
    json.status(1);
    let line: serde_json::Value =
        serde_json::from_str(json.stderr.lines().next().unwrap()).unwrap();
    assert_eq!(line["level"], "error");
    assert!(
        line["message"]
            .as_str()
            .unwrap()
            .starts_with("source lb1: I/O error on "),
        "{line}"
    );
    // A warning disappears with -q; the error stays.
    let rule = "[[rule]]\nname = \"New\"\nwhen = 'h3req > 0'\n\n";
    let warned = Hapwatch::new()
        .config_text(format!("{}{rule}", with_rules("")))
        .file("lb1.csv", healthy_capture())
        .arg("check")
        .run();
    warned.status(0).stderr_is("hapwatch: warning: rule New reads `h3req`, which source lb1 does not report; the rule cannot match there\n");
    Hapwatch::new()
        .config_text(format!("{}{rule}", with_rules("")))
        .file("lb1.csv", healthy_capture())
        .args(["-q", "check"])
        .run()
        .status(0)
        .stderr_empty();
}

#[test]
fn every_example_config_loads() {
    let mut configs: Vec<String> = std::fs::read_dir(repo("examples"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| p.display().to_string())
        .collect();
    configs.push(repo("examples/demo/hapwatch.toml"));
    configs.push(repo("config/hapwatch.toml"));
    assert!(configs.len() >= 6, "{configs:?}");
    for config in configs {
        let out = Hapwatch::new().config_path(&config).arg("check").run();
        // The CA file of the HTTPS example is on the load balancer, not here (exit 2).
        if out
            .stderr
            .contains("ca_file /etc/hapwatch/internal-ca.pem: cannot read it")
        {
            out.status(2);
            continue;
        }
        // Their secret files do not exist here (exit 1); the configs themselves are valid.
        assert!(matches!(out.code, Some(0 | 1)), "{config}: {out:?}");
        out.stdout_contains(": ");
    }
}

#[test]
fn the_readme_demo_shows_alerts_and_messages() {
    let out = Hapwatch::new()
        .config_path(repo("examples/demo/hapwatch.toml"))
        .args(["run", "--dry-run"])
        .run();
    out.status(0)
        .stdout_contains("BackendDown  lb1     app-main       down   - -> firing")
        // lb1's backend is DOWN: the default [[inhibit]] keeps its servers quiet.
        .stdout_contains("-> firing (inhibited by BackendDown app-main)")
        .stdout_contains("[FIRING:1] BackendDown app-main (lb1)")
        .stdout_lacks("ServerDown app-main (lb1)")
        .stdout_contains("[FIRING:1] ServerDown app-main (lb2)");
    assert!(
        !Path::new(&repo("examples/demo/state.json")).exists(),
        "a dry run writes no state"
    );
}

#[test]
fn systemd_units_verify() {
    if !common::require("systemd-analyze") {
        return;
    }
    let dir = common::temp_dir();
    let man = dir.path().join("man/man1");
    std::fs::create_dir_all(&man).unwrap();
    let page = Hapwatch::new().arg("man").run();
    std::fs::write(man.join("hapwatch.1"), &page.stdout).unwrap();
    let mut units = Vec::new();
    for unit in [
        "hapwatch.service",
        "hapwatch.timer",
        "hapwatch-15s.timer",
        "hapwatch-watch.service",
    ] {
        let text = std::fs::read_to_string(repo(&format!("examples/systemd/{unit}"))).unwrap();
        // The unit names the binary bare (systemd finds it in /usr/local/bin or /usr/bin,
        // so it fits a source install and the .deb alike); here, the one under test.
        if unit.ends_with(".service") {
            assert!(text.contains("\nExecStart=hapwatch "), "{text}");
            assert!(
                !text.contains("\nLoadCredential="),
                "an active LoadCredential= stops the unit when its file is missing"
            );
        }
        let text = text.replace(
            "ExecStart=hapwatch ",
            &format!("ExecStart={} ", env!("CARGO_BIN_EXE_hapwatch")),
        );
        let path = dir.path().join(unit);
        std::fs::write(&path, text).unwrap();
        units.push(path);
    }
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .args(&units)
        .env("MANPATH", dir.path().join("man"))
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Cron mails stderr: a usage error is one line, like every other error.
#[test]
fn usage_errors_are_one_line_with_the_commands_usage() {
    Hapwatch::new()
        .args(["silence", "add", "--for", "1h", "srever=web1"])
        .run()
        .status(2)
        .stderr_is("hapwatch: unexpected argument 'srever=web1' found (usage: hapwatch silence add [OPTIONS] --match <MATCHER> --for <DURATION>; see --help)\n");
    Hapwatch::new()
        .args(["run", "--dry-rn"])
        .run()
        .status(2)
        .stderr_line_count(1)
        .stderr_contains(
            "unexpected argument '--dry-rn' found; tip: a similar argument exists: '--dry-run'",
        );
    Hapwatch::new()
        .args(["--version"])
        .run()
        .status(0)
        .stdout_contains("hapwatch ");
}

/// `--now 1e20` printed as `@100000000000000000000`, and `NaN` / `inf` were accepted and
/// saved as `"last_run": null`. They are usage errors now (exit 2).
#[test]
fn odd_now_values_are_usage_errors() {
    for now in [
        "1e20",
        "NaN",
        "inf",
        "-inf",
        "-1",
        "253402300800",
        "yesterday",
    ] {
        let out = Hapwatch::new()
            .config_text(with_rules(""))
            .file("lb1.csv", healthy_capture())
            .args(["run", "--dry-run", &format!("--now={now}")])
            .run();
        out.status(2).stdout_empty().stderr_contains(&format!(
            "invalid value '{now}' for '--now <UNIX_TIME>': expected a Unix time in seconds \
             from 0 to 253402300799 (the end of the year 9999)"
        ));
    }
    for now in ["0", "1700000000.5", "253402300799"] {
        Hapwatch::new()
            .config_text(with_rules(""))
            .file("lb1.csv", healthy_capture())
            .args(["run", "--dry-run", "--now", now])
            .run()
            .success();
    }
}

/// `silence add --for 0s` made a silence that had already ended; now a usage error.
#[test]
fn a_silence_for_zero_seconds_is_a_usage_error() {
    for duration in ["0s", "0ms", "0m0s"] {
        let out = Hapwatch::new()
            .config_text(with_rules(""))
            .args([
                "silence",
                "add",
                "--match",
                "alertname=ServerDown",
                "--for",
                duration,
            ])
            .run();
        out.status(2).stdout_empty().stderr_contains(&format!(
            "a silence for \"{duration}\" ends as soon as it starts; give a duration above \
             zero, e.g. 30m"
        ));
    }
}
