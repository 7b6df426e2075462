//! The run pipeline as a library: built once from a loaded config, one cycle at a given
//! time returns what it read, decided and did, and writes nothing on stdout. A dry run
//! leaves the state file alone; a real cycle saves it, and the next cycle sees the alert
//! as known.

use hapwatch::config::Config;
use hapwatch::log::Level;
use hapwatch::run::{Options, Pipeline, WithoutNotifiers};
use std::path::Path;
use std::time::Instant;

const NOW: f64 = 1_800_000_000.0;

fn pipeline(dir: &Path) -> Pipeline {
    pipeline_reading(
        dir,
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/haproxy-2.6/backend-down.csv"),
    )
}

fn pipeline_reading(dir: &Path, dump: &Path) -> Pipeline {
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

#[test]
fn a_cycle_returns_its_problems_as_values_once_per_problem() {
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("dump.csv");
    let pipeline = pipeline_reading(dir.path(), &dump);
    std::fs::write(
        dir.path().join("state.json"),
        "{\"version\": 1, \"alerts\": [oops",
    )
    .unwrap();

    // A corrupt state file and a source that fails: two error lines, in that order.
    let first = pipeline.cycle(NOW, &options(false)).unwrap();
    let lines: Vec<_> = first
        .problems
        .iter()
        .map(|p| (p.level, p.lasting.as_deref()))
        .collect();
    assert_eq!(
        lines,
        [(Level::Error, None), (Level::Error, Some("source lb1"))],
        "{:?}",
        first.problems
    );
    assert!(
        first.problems[0].text.contains("was unusable"),
        "{:?}",
        first.problems
    );
    assert!(
        first.problems[1].text.starts_with("source lb1: "),
        "{:?}",
        first.problems
    );

    // The source still fails: reported at info only (shown with -v), once per cycle.
    let second = pipeline.cycle(NOW + 60.0, &options(false)).unwrap();
    assert_eq!(second.problems.len(), 1, "{:?}", second.problems);
    assert_eq!(second.problems[0].level, Level::Info);
    assert!(second.problems[0]
        .text
        .contains("printed again when it ends"));

    // It answers again: one warning that it is fine.
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/haproxy-2.6/backend-down.csv"),
        &dump,
    )
    .unwrap();
    let third = pipeline.cycle(NOW + 120.0, &options(false)).unwrap();
    assert_eq!(third.problems.len(), 1, "{:?}", third.problems);
    assert_eq!(third.problems[0].level, Level::Warn);
    assert!(
        third.problems[0].text.contains("is fine again"),
        "{:?}",
        third.problems
    );
    let fourth = pipeline.cycle(NOW + 180.0, &options(false)).unwrap();
    assert!(fourth.problems.is_empty(), "{:?}", fourth.problems);
}
