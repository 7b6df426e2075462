//! Captured dumps: a file, or standard input (`file = "-"`).

use super::{split_reply, RawReply, SourceError, MAX_REPLY_BYTES};
use std::io::Read;
use std::path::Path;

/// Reads a capture of `show stat`, or of `show info;show stat`, from `path` or stdin.
pub(super) fn read(path: Option<&Path>) -> Result<RawReply, SourceError> {
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
