//! Reading one worker's frame: `pread`, retried when torn, within the pass's budgets.

use std::fs::File;
use std::time::Duration;

use crate::error::Result;
use crate::frame::{self, Undecodable};

use super::*;

/// Frames a [`DirReader`] keeps to skip the md5 of an unchanged status: up to 4 KiB,
/// which real statuses are.
pub(super) const MAX_KEPT_FRAME: usize = 4096;

/// What one frame read may spend.
pub(super) struct Budget<'a> {
    pub(super) max_status_len: u32,
    /// Bytes the pass may still read; every `pread` is charged here.
    pub(super) bytes_left: &'a mut usize,
    /// Pausing left for torn frames in the pass; spent here.
    pub(super) back_off_left: &'a mut Duration,
}

/// Reads the frame at offset 0 with `pread`, retrying torn reads.
///
/// `buf` is the caller's scratch buffer, kept between files so a sweep allocates only
/// the statuses it returns. One `pread` reads the whole file in the common case, as the
/// kernel copies at most the file's size however large the buffer.
///
/// `verified`, when given, holds the last frame this file yielded: bytes equal to it
/// need no md5 (a long-lived reader mostly finds statuses unchanged), and a newly
/// verified frame replaces it.
pub(super) fn read_frame(
    file: &File,
    buf: &mut Vec<u8>,
    budget: Budget<'_>,
    mut verified: Option<&mut Vec<u8>>,
) -> Result<Option<Vec<u8>>, SkipReason> {
    let result = read_frame_within(file, buf, budget, verified.as_deref_mut());
    // A frame not returned now is not kept either: what a held file keeps is never more
    // than what the pass returned, so memory stays within the byte budget.
    if !matches!(result, Ok(Some(_)))
        && let Some(last) = verified
    {
        *last = Vec::new();
    }
    result
}

pub(super) fn read_frame_within(
    file: &File,
    buf: &mut Vec<u8>,
    budget: Budget<'_>,
    verified: Option<&mut Vec<u8>>,
) -> Result<Option<Vec<u8>>, SkipReason> {
    const INITIAL: usize = 4096;
    if buf.len() < INITIAL {
        buf.resize(INITIAL, 0);
    }
    // The cap is filled in by the caller, which knows it.
    let over_budget = || SkipReason::OverByteBudget { max: 0 };
    let mut torn = 0;
    while torn < TORN_READ_ATTEMPTS {
        // Every read is paid for, torn re-reads included: reading and hashing is what a
        // directory full of frames that never check out would cost. Never more is read
        // than the budget has left; a read the budget cut short is over budget.
        let want = buf.len().min(*budget.bytes_left);
        if want == 0 {
            return Err(over_budget());
        }
        let n = rustix::io::pread(file, &mut buf[..want], 0).map_err(|errno| SkipReason::Io {
            operation: "pread",
            error: errno.into(),
        })?;
        *budget.bytes_left -= n;
        let cut_short = n == want && want < buf.len();
        let read = &buf[..n];
        if let Some(last) = verified.as_deref()
            && !last.is_empty()
            && read.starts_with(last)
        {
            return Ok(Some(last[frame::HEADER_LEN..].to_vec()));
        }
        match frame::decode(read, budget.max_status_len) {
            Ok(status) => {
                if let Some(last) = verified {
                    // Kept only when small: a large status is hashed again at each pass
                    // (paid from the byte budget) rather than held twice.
                    last.clear();
                    if frame::frame_len(status.len()) <= MAX_KEPT_FRAME {
                        last.extend_from_slice(&read[..frame::frame_len(status.len())]);
                    } else {
                        last.shrink_to_fit();
                    }
                }
                return Ok(Some(status.to_vec()));
            }
            Err(Undecodable::Short) => return Ok(None),
            Err(Undecodable::TooLong { len }) => {
                return Err(SkipReason::TooLong {
                    len,
                    max: budget.max_status_len,
                });
            }
            Err(Undecodable::Truncated { .. }) if cut_short => return Err(over_budget()),
            // The buffer was filled: the rest of the frame is there, read it all.
            Err(Undecodable::Truncated { needed }) if n == buf.len() => {
                if needed > *budget.bytes_left {
                    return Err(over_budget());
                }
                buf.resize(needed, 0)
            }
            Err(Undecodable::Truncated { .. } | Undecodable::DigestMismatch) => {
                torn += 1;
                if torn < TORN_READ_ATTEMPTS && !back_off(torn, budget.back_off_left) {
                    break;
                }
            }
        }
    }
    Err(SkipReason::Torn)
}

/// Pauses before the next read of a torn frame; false when the pass's budget for
/// pausing is spent, and the frame should be given up on now.
///
/// A writer storing into its mapping can be preempted mid-frame and leave it torn for a
/// time slice, so immediate re-reads alone would give up on a live, healthy worker on a
/// loaded machine. The first retries are immediate (the common race is nanoseconds
/// wide), then the pauses double from 100 µs, outlasting a few time slices: a frame
/// that never checks out costs about 6 ms, and all of a pass's frames together at most
/// [`TORN_BACK_OFF_BUDGET`].
pub(super) fn back_off(attempt: u32, left: &mut Duration) -> bool {
    match attempt {
        0..=2 => true,
        3 => {
            std::thread::yield_now();
            true
        }
        _ => {
            let pause = Duration::from_micros(100 << (attempt - 4));
            match left.checked_sub(pause) {
                Some(rest) => {
                    *left = rest;
                    std::thread::sleep(pause);
                    true
                }
                None => false,
            }
        }
    }
}
