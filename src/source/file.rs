//! Captured dumps: a file, or standard input (`file = "-"`).

use super::{split_reply, RawReply, SourceError, MAX_REPLY_BYTES};
use std::io::Read;
use std::path::Path;
use std::time::Duration;

/// Reads a capture of `show stat`, or of `show info;show stat`, from `path` or stdin,
/// within `timeout`. A regular file is read at once; standard input, a FIFO or a device
/// can block for ever (opening a FIFO waits for a writer), so they are opened and read
/// on a thread that is abandoned at the deadline (it ends with the process).
pub(super) fn read_within(path: Option<&Path>, timeout: Duration) -> Result<RawReply, SourceError> {
    if path.is_some_and(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file())) {
        return read(path);
    }
    let owned = path.map(Path::to_path_buf);
    let (tx, rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("file source".into())
        .spawn(move || {
            let _ = tx.send(read(owned.as_deref()));
        });
    let target = || path.map_or("standard input".into(), |p| p.display().to_string());
    if let Err(source) = spawned {
        return Err(SourceError::Io {
            target: target(),
            source,
        });
    }
    rx.recv_timeout(timeout).unwrap_or_else(|_| {
        Err(SourceError::Timeout {
            target: target(),
            timeout,
        })
    })
}

/// Reads a capture of `show stat`, or of `show info;show stat`, from `path` or stdin.
fn read(path: Option<&Path>) -> Result<RawReply, SourceError> {
    let target = path.map_or("standard input".into(), |p| p.display().to_string());
    let io_err = |source| SourceError::Io {
        target: target.clone(),
        source,
    };
    let reader: Box<dyn Read> = match path {
        Some(p) => Box::new(std::fs::File::open(p).map_err(io_err)?),
        None => Box::new(std::io::stdin().lock()),
    };
    // One allocation of the right size for a file (the boxed reader hides the size hint).
    let size = path
        .and_then(|p| std::fs::metadata(p).ok())
        .map_or(0, |m| m.len());
    let mut bytes = Vec::with_capacity(size.min(MAX_REPLY_BYTES) as usize + 1);
    reader
        .take(MAX_REPLY_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err)?;
    if bytes.len() as u64 > MAX_REPLY_BYTES {
        return Err(SourceError::TooLarge { target });
    }
    split_reply(&target, bytes, false)
}
