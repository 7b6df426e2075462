//! Captured dumps: a file, or standard input (`file = "-"`).

use super::{split_reply, RawReply, SourceError, MAX_REPLY_BYTES};
use std::io::Read;
use std::path::Path;
use std::time::Duration;

/// Reads a capture of `show stat`, or of `show info;show stat`, from `path` or stdin,
/// within `timeout`. A regular file is read at once; standard input, a FIFO or a device
/// can block for ever (opening a FIFO waits for a writer), so they are opened and read
/// on a thread that is abandoned at the deadline (it ends with the process).
///
/// The path is opened once, without blocking (`O_NONBLOCK`: a FIFO opens at once even
/// without a writer), and what it is comes from that open file: checking the path first
/// and opening it again would let a FIFO swapped in between block the run, lock held.
pub(super) fn read_within(path: Option<&Path>, timeout: Duration) -> Result<RawReply, SourceError> {
    if let Some(p) = path {
        use std::os::unix::fs::OpenOptionsExt;
        let opened = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(p);
        let file = opened.map_err(|source| SourceError::Io {
            target: p.display().to_string(),
            source,
        })?;
        let metadata = file.metadata().map_err(|source| SourceError::Io {
            target: p.display().to_string(),
            source,
        })?;
        if metadata.is_file() {
            // O_NONBLOCK does not apply to regular files: this read cannot block.
            return read_from(p.display().to_string(), file, metadata.len());
        }
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
    match path {
        Some(p) => match std::fs::File::open(p) {
            Ok(file) => read_from(target, file, 0),
            Err(source) => Err(SourceError::Io { target, source }),
        },
        None => read_from(target, std::io::stdin().lock(), 0),
    }
}

/// Reads a capture from `reader` (`size`: its length when known, for one allocation of
/// the right size).
fn read_from(target: String, reader: impl Read, size: u64) -> Result<RawReply, SourceError> {
    let mut bytes = Vec::with_capacity(size.min(MAX_REPLY_BYTES) as usize + 1);
    if let Err(source) = reader.take(MAX_REPLY_BYTES + 1).read_to_end(&mut bytes) {
        return Err(SourceError::Io { target, source });
    }
    if bytes.len() as u64 > MAX_REPLY_BYTES {
        return Err(SourceError::TooLarge { target });
    }
    split_reply(&target, bytes, false)
}
