//! Speaking Alertmanager, Slack and Mattermost exactly as they expect (issue #17), against
//! the real receivers:
//!
//! - hapwatch's `format = "alertmanager"` webhook bodies, compared key by key with the
//!   bodies a real Alertmanager 0.25 posts for the same alerts (pushed to it by hapwatch's
//!   Alertmanager notifier in the same runs) over healthy → two servers down → one back →
//!   all back;
//! - no false "resolved" from Alertmanager for an alert silenced in hapwatch;
//! - labels with an empty value dropped, so that fingerprints are Alertmanager's;
//! - the `watchdog` alert, `follow_only_if` on the standby node;
//! - a hostile `last_chk` (which a backend's health-check reply controls) cannot mention
//!   or link in Slack or Mattermost.
//!
//! Runs use a `file` source holding a real capture from `tests/fixtures/haproxy-2.6`,
//! rewritten between runs, and `--now`. Alertmanager judges `endsAt` against its own
//! clock, so the simulated runs that reach it lie in the last few minutes.

mod common;

use common::{
    edit_capture, fixture_bytes, shipped_rule, temp_dir, unix_now, Alertmanager, Hapwatch,
    HttpReceiver,
};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;
use tempfile::TempDir;

/// How long a receiver may take to show a delivery (only used where one is expected).
const SEEN: Duration = Duration::from_secs(10);

/// web3 and web4 DOWN (L4CON).
const DOWN: &str = "haproxy-2.6/down-after-kill.csv";
/// web3 back UP, web4 still DOWN.
const WEB3_BACK: &str = "haproxy-2.6/check-in-progress.csv";

/// The page the source links to (never contacted: it only travels in the payloads).
const LINK: &str = "http://127.0.0.1:8404/stats";

/// A config in a temp dir with a `file` source `lb1` (reading `lb1.csv`), `rules`, a state
/// file, and `rest` (notifiers, `only_if`, …).
struct Lab {
    dir: TempDir,
    config: PathBuf,
}

impl Lab {
    fn new(source_extra: &str, rules: &str, rest: &str) -> Lab {
        let dir = temp_dir();
        let config = dir.path().join("hapwatch.toml");
        std::fs::write(
            &config,
            format!(
                "{rest}\n[[source]]\nname = \"lb1\"\nfile = \"lb1.csv\"\n{source_extra}\n\n{rules}\n\
                 [state]\nfile = \"state.json\"\n"
            ),
        )
        .unwrap();
        Lab { dir, config }
    }

    fn capture(&self, fixture: &str) {
        self.write_capture(&String::from_utf8(fixture_bytes(fixture)).unwrap());
    }

    fn write_capture(&self, text: &str) {
        std::fs::write(self.dir.path().join("lb1.csv"), text).unwrap();
    }

    /// Every server UP: the capture with web3 back, web4 set UP too.
    fn all_up(&self) {
        let text = String::from_utf8(fixture_bytes(WEB3_BACK)).unwrap();
        self.write_capture(&edit_capture(&text, "app-main", "web4", "status", "UP"));
    }

    fn hapwatch(&self) -> Hapwatch {
        Hapwatch::new().config_path(&self.config)
    }

    #[track_caller]
    fn quiet_run(&self, at: f64) {
        self.hapwatch()
            .args(["run", "--now", &at.to_string()])
            .run()
            .success()
            .stdout_empty()
            .stderr_empty();
    }

    fn state(&self) -> Value {
        let text = std::fs::read_to_string(self.dir.path().join("state.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    }
}

fn webhook(name: &str, url: &str, extra: &str) -> String {
    format!(
        "[notifier.{name}]\ntype = \"webhook\"\nurl = {}\n{extra}\n\n",
        Value::String(url.to_string())
    )
}

fn alertmanager(name: &str, url: &str, extra: &str) -> String {
    format!("[notifier.{name}]\ntype = \"alertmanager\"\nurl = \"{url}\"\n{extra}\n\n")
}

// ---------------------------------------------------------------------------------------
// 1. The Alertmanager webhook format is what Alertmanager posts
// ---------------------------------------------------------------------------------------

/// `body` without the keys that name the receiving side: `receiver` is the receiver's
/// name in each config (`blackhole` in Alertmanager's, the notifier's name in hapwatch's).
fn comparable(body: &Value) -> Value {
    let mut body = body.clone();
    body.as_object_mut().unwrap().remove("receiver");
    body
}

#[test]
fn alertmanager_format_matches_what_alertmanager_posts_key_by_key() {
    let am_hook = HttpReceiver::start();
    let Some(am) = Alertmanager::builder()
        .webhook(&am_hook.url_for("/am"))
        .group_by(&["alertname", "source"])
        .group_wait("1s")
        .start_or_skip()
    else {
        return;
    };
    let hw_hook = HttpReceiver::start();
    // hapwatch's `external_url` names Alertmanager's own, so that `externalURL` can be
    // compared too.
    let lab = Lab::new(
        &format!("link = \"{LINK}\""),
        &shipped_rule("ServerDown"),
        &format!(
            "{}{}",
            alertmanager("am", &am.url(), ""),
            webhook(
                "hw",
                &hw_hook.url_for("/hw"),
                &format!("format = \"alertmanager\"\nexternal_url = \"{}\"", am.url())
            )
        ),
    );
    let base = (unix_now() - 240.0).floor();

    // Healthy: nothing to say.
    lab.all_up();
    lab.quiet_run(base);
    // Two down, one back, all back: after each, both have posted one more body.
    for (step, (at, capture)) in [(60.0, Some(DOWN)), (120.0, Some(WEB3_BACK)), (180.0, None)]
        .into_iter()
        .enumerate()
    {
        match capture {
            Some(fixture) => lab.capture(fixture),
            None => lab.all_up(),
        }
        lab.quiet_run(base + at);
        let theirs = am_hook.wait_for_requests(step + 1, SEEN);
        let ours = hw_hook.wait_for_requests(step + 1, SEEN);
        assert_eq!(ours.len(), step + 1, "one hapwatch body per run");
        let (theirs, ours) = (theirs[step].json(), ours[step].json());
        assert_eq!(
            comparable(&ours),
            comparable(&theirs),
            "step {step}: hapwatch's body (left) differs from Alertmanager's (right)\n\
             Alertmanager log:\n{}",
            am.log()
        );
        // What the comparison covers, spelled out.
        let expected_status = if step == 2 { "resolved" } else { "firing" };
        assert_eq!(ours["status"], expected_status, "step {step}: {ours}");
        assert_eq!(
            ours["groupKey"],
            r#"{}:{alertname="ServerDown", source="lb1"}"#
        );
        assert_eq!(ours["externalURL"], am.url());
        for alert in ours["alerts"].as_array().unwrap() {
            assert_eq!(alert["generatorURL"], LINK);
            // Whole seconds, written as Go writes them: no `.000`.
            let starts = alert["startsAt"].as_str().unwrap();
            assert!(!starts.contains('.') && starts.ends_with('Z'), "{starts}");
        }
    }
    // Step 1 (web3 back while web4 is down) is the one that matters: the group still
    // fires, and both alerts are in it.
    let body = hw_hook.requests()[1].json();
    let statuses: Vec<(&str, &str)> = body["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["labels"]["server"].as_str().unwrap(),
                a["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(statuses, [("web3", "resolved"), ("web4", "firing")]);
    // Nothing more from either side.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(am_hook.requests().len(), 3, "{:#?}", am_hook.requests());
    assert_eq!(hw_hook.requests().len(), 3);
}

// ---------------------------------------------------------------------------------------
// 2. A hapwatch silence makes no false recovery in Alertmanager
// ---------------------------------------------------------------------------------------

#[test]
fn a_hapwatch_silence_makes_alertmanager_announce_no_false_recovery() {
    let am_hook = HttpReceiver::start();
    let Some(am) = Alertmanager::builder()
        .webhook(&am_hook.url_for("/am"))
        .start_or_skip()
    else {
        return;
    };
    let lab = Lab::new(
        "",
        &shipped_rule("ServerDown"),
        &alertmanager("am", &am.url(), ""),
    );
    // Two runs 15 s apart put the first push's endsAt one minute (four intervals of the
    // 15 s minimum) after it: 8 s from now, time enough for the next run to come first.
    let now = unix_now().floor();
    let first = now - 52.0;
    lab.all_up();
    lab.quiet_run(first - 15.0);
    lab.capture(DOWN);
    lab.quiet_run(first);
    let pushed = am.wait_for_alerts(&[("server", "web3")], 1, SEEN);
    let ends_at = chrono::DateTime::parse_from_rfc3339(pushed[0]["endsAt"].as_str().unwrap())
        .unwrap()
        .timestamp() as f64;
    assert_eq!(ends_at, first + 60.0);

    // web3 is silenced in hapwatch and stays down; the next run comes before that endsAt.
    lab.hapwatch()
        .args([
            "silence",
            "add",
            "--match",
            "server=web3",
            "--for",
            "30m",
            "--comment",
            "maintenance",
        ])
        .run()
        .success();
    let second = unix_now().ceil() + 1.0;
    lab.quiet_run(second);

    // Past the first push's endsAt (and a few of Alertmanager's 1 s group intervals):
    // web3 must still be firing in Alertmanager, and no "resolved" was posted.
    let until = ends_at + 5.0;
    while unix_now() < until {
        std::thread::sleep(Duration::from_millis(200));
    }
    let web3 = am.alerts_with(&[("server", "web3")]);
    assert_eq!(web3.len(), 1, "web3 is still down: {:#?}", am.alerts());
    let resolved: Vec<Value> = am_hook
        .requests()
        .iter()
        .map(|r| r.json())
        .filter(|body| {
            body["alerts"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["status"] == "resolved")
        })
        .collect();
    assert!(
        resolved.is_empty(),
        "Alertmanager announced a recovery that did not happen: {resolved:#?}"
    );
    assert_eq!(am.received().resolved, 0);
}

// ---------------------------------------------------------------------------------------
// 3. Empty label values, watchdog, follow_only_if
// ---------------------------------------------------------------------------------------

#[test]
fn empty_label_values_are_dropped_so_fingerprints_are_alertmanagers() {
    let Some(am) = Alertmanager::start_or_skip() else {
        return;
    };
    let rule = "[[rule]]\nname = \"ServerDown\"\nscope = { type = \"server\" }\n\
                when = 'state == \"down\"'\nseverity = \"critical\"\n\
                labels = { team = \"\", tier = \"web\" }\n";
    let lab = Lab::new("", rule, &alertmanager("am", &am.url(), ""));
    lab.capture(DOWN);
    lab.quiet_run(unix_now().floor());
    let pushed = am.wait_for_alerts(&[("alertname", "ServerDown")], 2, SEEN);
    let mut theirs: Vec<String> = pushed
        .iter()
        .map(|a| a["fingerprint"].as_str().unwrap().to_string())
        .collect();
    theirs.sort();
    let state = lab.state();
    let alerts = state["alerts"].as_object().unwrap();
    let mut ours: Vec<String> = alerts.keys().cloned().collect();
    ours.sort();
    assert_eq!(
        ours, theirs,
        "hapwatch names each alert as Alertmanager does"
    );
    for alert in alerts.values() {
        assert_eq!(alert["labels"].get("team"), None, "{alert}");
        assert_eq!(alert["labels"]["tier"], "web");
    }
}

#[test]
fn watchdog_keeps_an_always_firing_alert_in_alertmanager() {
    let Some(am) = Alertmanager::start_or_skip() else {
        return;
    };
    let lab = Lab::new(
        "",
        &shipped_rule("ServerDown"),
        &alertmanager("am", &am.url(), "watchdog = true"),
    );
    lab.all_up();
    // Nothing is wrong, yet every run tells Alertmanager that hapwatch is alive.
    let now = unix_now().floor();
    lab.quiet_run(now - 60.0);
    let watchdog = am.wait_for_alerts(&[("alertname", "Watchdog")], 1, SEEN);
    assert_eq!(
        watchdog[0]["labels"],
        json!({"alertname": "Watchdog", "severity": "none", "source": "hapwatch"})
    );
    lab.quiet_run(now);
    assert_eq!(am.received().firing, 2);
    assert_eq!(am.received().resolved, 0);
    assert_eq!(am.alerts().as_array().unwrap().len(), 1);
}

#[test]
fn follow_only_if_keeps_the_standby_node_from_pushing() {
    let Some(follows) = Alertmanager::start_or_skip() else {
        return;
    };
    let Some(every_node) = Alertmanager::start_or_skip() else {
        return;
    };
    let lab = Lab::new(
        "",
        &shipped_rule("ServerDown"),
        &format!(
            "only_if = {{ command = \"exit 1\" }}\n\n{}{}",
            alertmanager("follows", &follows.url(), "follow_only_if = true"),
            alertmanager("every", &every_node.url(), "")
        ),
    );
    lab.capture(DOWN);
    lab.hapwatch()
        .args(["run", "--now", &unix_now().floor().to_string()])
        .run()
        .success()
        .stdout_empty();
    // The default is unchanged: every node pushes.
    every_node.wait_for_alerts(&[("alertname", "ServerDown")], 2, SEEN);
    assert_eq!(follows.received().firing, 0);
    assert!(follows.alerts().as_array().unwrap().is_empty());
}

// ---------------------------------------------------------------------------------------
// 4. Slack and Mattermost: a hostile health-check reply stays text
// ---------------------------------------------------------------------------------------

/// What a backend's health-check reply can put into `last_chk` (no comma: it is one CSV
/// field).
const HOSTILE: &str =
    "<!channel> @channel & <https://example.net|click> [click](https://example.net)";

#[test]
fn a_hostile_last_chk_cannot_mention_or_link_in_slack_or_mattermost() {
    let hook = HttpReceiver::start();
    let lab = Lab::new(
        "",
        &shipped_rule("ServerDown"),
        &format!(
            "{}{}",
            webhook("slack", &hook.url_for("/slack"), "format = \"slack\""),
            webhook(
                "mattermost",
                &hook.url_for("/mattermost"),
                "format = \"mattermost\""
            )
        ),
    );
    let text = String::from_utf8(fixture_bytes(DOWN)).unwrap();
    lab.write_capture(&edit_capture(
        &text, "app-main", "web3", "last_chk", HOSTILE,
    ));
    lab.quiet_run(1_800_000_000.0);
    let all = hook.requests();
    assert_eq!(all.len(), 2);
    for request in &all {
        let body = request.json();
        let attachment = &body["attachments"][0];
        assert_eq!(attachment["color"], "#d50200", "firing is red");
        let title = attachment["title"].as_str().unwrap();
        let fallback = attachment["fallback"].as_str().unwrap();
        assert!(fallback.starts_with("[FIRING:2] ServerDown"), "{fallback}");
        let text = attachment["text"].as_str().unwrap();
        assert!(title.contains("FIRING:2"), "{title}");
        match request.path() {
            "/slack" => {
                // Slack acts on `<…>` only: escaped, it is shown as typed.
                assert!(
                    text.contains(
                        "&lt;!channel&gt; @channel &amp; &lt;https://example.net|click&gt; \
                         [click](https://example.net)"
                    ),
                    "{text}"
                );
                assert!(!text.contains('<') && !text.contains('>'), "{text}");
                assert!(!title.contains('<'), "{title}");
            }
            "/mattermost" => {
                // Mattermost renders markdown and mentions: the listing is a code block,
                // whose fence the text cannot close.
                let lines: Vec<&str> = text.lines().collect();
                assert_eq!(lines.first(), Some(&"```"), "{text}");
                assert_eq!(lines.last(), Some(&"```"), "{text}");
                assert!(
                    lines[1..lines.len() - 1]
                        .iter()
                        .all(|l| !l.starts_with("```")),
                    "{text}"
                );
                assert!(text.contains(HOSTILE), "shown as typed, inside the block");
                assert_eq!(text.matches(HOSTILE).count(), 1);
            }
            other => panic!("unexpected path {other}"),
        }
    }
    // All back: green, the title says so.
    lab.all_up();
    lab.quiet_run(1_800_000_060.0);
    let all = hook.requests();
    assert_eq!(all.len(), 4);
    for request in &all[2..] {
        let attachment = &request.json()["attachments"][0];
        assert_eq!(attachment["color"], "#2eb886", "all resolved is green");
        assert!(
            attachment["title"].as_str().unwrap().contains("RESOLVED:2"),
            "{attachment}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// 5. Inhibition: hapwatch's default [[inhibit]] and the inhibit_rules the README gives
// ---------------------------------------------------------------------------------------

/// The README's `inhibit_rules` for Alertmanager, matching config/rules.toml's defaults.
const README_INHIBIT_RULES: &str = "  - source_matchers: ['alertname=\"BackendDown\"']\n    \
     target_matchers: ['alertname=~\"ServerDown|ServerFlapped|Queueing\"']\n    \
     equal: [source, proxy]";

/// A backend down with its four servers: hapwatch announces only BackendDown and records
/// BackendDown as the inhibitor of each ServerDown, yet pushes those to Alertmanager as
/// they are (firing; leaving them out would read as recoveries there). Given the README's
/// `inhibit_rules`, Alertmanager suppresses them by that same alert and notifies the
/// backend alone, so both sides tell one story.
#[test]
fn alertmanager_with_the_readme_inhibit_rules_suppresses_what_hapwatch_inhibited() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for line in README_INHIBIT_RULES.lines() {
        assert!(
            readme.contains(line.trim()),
            "the README's inhibit_rules no longer have {line:?}: update README_INHIBIT_RULES"
        );
    }
    let am_hook = HttpReceiver::start();
    let Some(am) = Alertmanager::builder()
        .webhook(&am_hook.url_for("/am"))
        .group_by(&["alertname", "source", "proxy"])
        .group_wait("2s")
        .inhibit_rules(README_INHIBIT_RULES)
        .start_or_skip()
    else {
        return;
    };
    let rules = concat!(env!("CARGO_MANIFEST_DIR"), "/config/rules.toml");
    let lab = Lab::new(
        "",
        "",
        &format!(
            "include = [{}]\n\n{}",
            Value::String(rules.into()),
            alertmanager("am", &am.url(), "")
        ),
    );
    let now = unix_now().floor();
    lab.all_up();
    lab.quiet_run(now - 15.0);
    lab.capture("haproxy-2.6/backend-down.csv");
    lab.quiet_run(now);

    // hapwatch: each ServerDown of app-main fires, inhibited by BackendDown.
    let state = lab.state();
    let alerts = state["alerts"].as_object().unwrap();
    let (backend_fp, _) = alerts
        .iter()
        .find(|(_, a)| {
            a["labels"]["alertname"] == "BackendDown" && a["labels"]["proxy"] == "app-main"
        })
        .expect("BackendDown in the state");
    let servers: Vec<&Value> = alerts
        .values()
        .filter(|a| a["labels"]["alertname"] == "ServerDown" && a["labels"]["proxy"] == "app-main")
        .collect();
    assert_eq!(servers.len(), 4, "{state:#}");
    for s in &servers {
        assert_eq!(s["status"], "firing", "{s:#}");
        assert_eq!(
            s["inhibited_by"],
            Value::String(backend_fp.clone()),
            "{s:#}"
        );
    }

    // Alertmanager: the four ServerDown alerts arrived firing, and are suppressed by the
    // same BackendDown (its fingerprint is hapwatch's: the labels are the same).
    let pushed = am.wait_for_alerts(
        &[("alertname", "ServerDown"), ("proxy", "app-main")],
        4,
        SEEN,
    );
    for alert in &pushed {
        assert_eq!(alert["status"]["state"], "suppressed", "{alert:#}");
        assert_eq!(
            alert["status"]["inhibitedBy"],
            json!([backend_fp]),
            "{alert:#}"
        );
    }
    // And it notifies BackendDown, never a ServerDown of app-main.
    let notified = || -> Vec<String> {
        am_hook
            .requests()
            .iter()
            .flat_map(|r| r.json()["alerts"].as_array().cloned().unwrap_or_default())
            .filter(|a| a["labels"]["proxy"] == "app-main")
            .map(|a| a["labels"]["alertname"].as_str().unwrap_or("").to_string())
            .collect()
    };
    common::wait_until(SEEN, "Alertmanager to notify BackendDown", || {
        let names = notified();
        if names.iter().any(|n| n == "BackendDown") {
            Ok(())
        } else {
            Err(format!("{names:?}"))
        }
    });
    // A group interval more, for a late ServerDown notification to show.
    std::thread::sleep(Duration::from_secs(3));
    let names = notified();
    assert!(
        names.iter().all(|n| n != "ServerDown"),
        "Alertmanager notified an inhibited alert: {names:?}"
    );
}
