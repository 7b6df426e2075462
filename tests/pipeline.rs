//! The run pipeline as a library: built once from a loaded config, one cycle at a given
//! time returns what it read, decided and did, and writes nothing on stdout. A dry run
//! leaves the state file alone; a real cycle saves it, and the next cycle sees the alert
//! as known.

use hapwatch::config::Config;
use hapwatch::run::{Options, Pipeline, WithoutNotifiers};
use std::path::Path;
use std::time::Instant;

const NOW: f64 = 1_800_000_000.0;

fn pipeline(dir: &Path) -> Pipeline {
    let dump =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/haproxy-2.6/backend-down.csv");
    let config = dir.join("hapwatch.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[state]
file = {state:?}

[[source]]
name = "lb1"
file = {dump:?}

[[rule]]
name = "BackendDown"
scope = {{ type = "backend" }}
when = 'state == "down"'
severity = "critical"
summary = "{{{{ proxy }}}} is down"
"#,
            state = dir.join("state.json").display().to_string(),
            dump = dump.display().to_string(),
        ),
    )
    .unwrap();
    let config = Config::load(&config).unwrap_or_else(|e| panic!("{e}"));
    Pipeline::new(config, WithoutNotifiers::Nowhere)
}

fn options(dry_run: bool) -> Options {
    Options {
        state_path: None,
        adopt_state: false,
        dry_run,
        started: Instant::now(),
    }
}

#[test]
fn a_cycle_returns_what_it_read_and_decided_and_a_dry_run_saves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = pipeline(dir.path());

    let dry = pipeline.cycle(NOW, &options(true)).unwrap();
    assert_eq!(dry.read.len(), 1);
    assert_eq!(dry.read[0].name, "lb1");
    assert!(matches!(dry.read[0].rows, Ok(n) if n > 0), "{:?}", dry.read);
    assert_eq!((dry.sources, dry.unreachable), (1, 0));
    assert!(!dry.step.active.is_empty(), "{dry:?}");
    assert!(!dry.step.notifications.is_empty(), "{dry:?}");
    assert!(!dry.trouble);
    assert!(
        !dir.path().join("state.json").exists(),
        "a dry run wrote the state"
    );

    let first = pipeline.cycle(NOW, &options(false)).unwrap();
    assert!(!first.firing.is_empty(), "{first:?}");
    assert!(first.firing.iter().all(|l| l["alertname"] == "BackendDown"));
    assert_eq!(first.step.notifications.len(), dry.step.notifications.len());
    assert!(dir.path().join("state.json").exists());

    // The same dump a minute later: the alert fires still, nothing new to announce.
    let second = pipeline.cycle(NOW + 60.0, &options(false)).unwrap();
    assert_eq!(second.firing, first.firing);
    assert!(second.step.notifications.is_empty(), "{second:?}");
}
