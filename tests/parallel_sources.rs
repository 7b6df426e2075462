//! Many sources: read at most `max_parallel_sources` at a time, each within its own
//! deadline, so that hanging peers cost neither unbounded threads and sockets nor the
//! other sources' alerts.

mod common;

use common::{fixture_bytes, Hapwatch};
use std::io::Read;
use std::os::unix::net::UnixListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Hanging sources in the test config.
const HANGING: usize = 8;

/// A runtime API socket that never answers and counts how many connections it holds at
/// once (a client closes its connection when its source's timeout runs out).
struct Hanging {
    path: std::path::PathBuf,
    most_open: Arc<AtomicUsize>,
    accepted: Arc<AtomicUsize>,
}

fn hanging(dir: &std::path::Path) -> Hanging {
    let path = dir.join("hang.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let open = Arc::new(AtomicUsize::new(0));
    let most_open = Arc::new(AtomicUsize::new(0));
    let accepted = Arc::new(AtomicUsize::new(0));
    let (o, m, a) = (open.clone(), most_open.clone(), accepted.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            a.fetch_add(1, Ordering::SeqCst);
            let now = o.fetch_add(1, Ordering::SeqCst) + 1;
            m.fetch_max(now, Ordering::SeqCst);
            let o = o.clone();
            std::thread::spawn(move || {
                // Read the request and wait until the client hangs up; never answer.
                let mut buf = [0u8; 4096];
                while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
                o.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    Hanging {
        path,
        most_open,
        accepted,
    }
}

fn config(dir: &std::path::Path, hang: &Hanging, parallel: Option<usize>) -> std::path::PathBuf {
    std::fs::write(
        dir.join("down.csv"),
        fixture_bytes("haproxy-2.6/down-after-kill.csv"),
    )
    .unwrap();
    let mut text = String::new();
    if let Some(n) = parallel {
        text.push_str(&format!("max_parallel_sources = {n}\n"));
    }
    text.push_str("[state]\nfile = \"state.json\"\n\n");
    for i in 0..HANGING {
        text.push_str(&format!(
            "[[source]]\nname = \"hang{i}\"\nsocket = \"{}\"\ntimeout = \"2s\"\n\n",
            hang.path.display()
        ));
    }
    text.push_str("[[source]]\nname = \"good\"\nfile = \"down.csv\"\n\n");
    text.push_str(
        "[[rule]]\nname = \"Down\"\nscope = { type = \"server\" }\nwhen = 'state == \"down\"'\n",
    );
    let path = dir.join("hapwatch.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn hanging_sources_are_read_a_bounded_number_at_a_time_and_the_others_still_alert() {
    let dir = common::temp_dir();
    let hang = hanging(dir.path());
    let out = Hapwatch::new()
        .config_path(config(dir.path(), &hang, Some(2)))
        .args(["run", "--format", "json"])
        .run();
    // The good source's alert is sent; every hanging one is reported unreachable (exit 1).
    out.status(1)
        .stdout_contains("\"alertname\":\"Down\",\"proxy\":\"app-main\",\"server\":\"web3\"")
        .stdout_contains("cannot read source hang7: no complete reply");
    assert_eq!(hang.accepted.load(Ordering::SeqCst), HANGING, "{out:?}");
    // At most 2 at a time. The server sees a hang-up a moment after the client's timeout,
    // when that client's thread may already have connected for its next source: each
    // thread can thus count twice, never more. Unbounded, all 8 are open at once.
    let most = hang.most_open.load(Ordering::SeqCst);
    assert!(
        most <= 4,
        "at most 2 sources read at a time, saw {most} connections open"
    );
}

#[test]
fn max_parallel_sources_must_be_at_least_one() {
    let dir = common::temp_dir();
    let hang = hanging(dir.path());
    Hapwatch::new()
        .config_path(config(dir.path(), &hang, Some(0)))
        .arg("check")
        .run()
        .status(2)
        .stderr_contains("hapwatch.toml:1:24: max_parallel_sources must be at least 1");
}
