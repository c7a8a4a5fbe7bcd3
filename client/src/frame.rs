//! The on-disk frame, as pure functions over byte slices.
//!
//! `md5(status) [16 bytes] | len [u32 big-endian] | status [len bytes]`, exactly what
//! `Parallel::Scoreboard::update` prints. Anything after `len` bytes of status is
//! ignored: files are rewritten in place and never truncated, so a shorter status
//! leaves the tail of a longer one behind.

use md5::{Digest, Md5};

/// Bytes before the status: the digest and the length field.
pub const HEADER_LEN: usize = 16 + 4;

/// Size of the frame holding `status_len` bytes of status.
pub const fn frame_len(status_len: usize) -> usize {
    HEADER_LEN + status_len
}

/// Writes the frame for `status` at the start of `dst`.
///
/// `dst` must hold at least [`frame_len`]`(status.len())` bytes and `status` must be
/// shorter than 4 GiB; both are the caller's invariants, checked by `debug_assert`.
/// The status goes in before the header so that a reader racing with this write is
/// more likely to see a stale digest than a fresh one over stale bytes; the digest is
/// what makes either case harmless.
pub fn encode_into(dst: &mut [u8], status: &[u8]) {
    debug_assert!(dst.len() >= frame_len(status.len()));
    debug_assert!(u32::try_from(status.len()).is_ok());
    let digest = Md5::digest(status);
    dst[HEADER_LEN..HEADER_LEN + status.len()].copy_from_slice(status);
    dst[16..HEADER_LEN].copy_from_slice(&(status.len() as u32).to_be_bytes());
    dst[..16].copy_from_slice(&digest);
}

/// Whether `frame` (exactly [`frame_len`]`(status.len())` bytes, the last frame written
/// by [`encode_into`]) already carries `status`, so rewriting it would change nothing.
/// Compares the length field and the status bytes; the digest written with them is
/// then the right one. Only meaningful once a frame has been written: zero-filled
/// bytes look like an empty status without its digest.
pub fn carries(frame: &[u8], status: &[u8]) -> bool {
    frame.len() == frame_len(status.len())
        && frame[16..HEADER_LEN] == (status.len() as u32).to_be_bytes()
        && &frame[HEADER_LEN..] == status
}

/// Why bytes read from a status file are not (yet) a status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Undecodable {
    /// Fewer than [`HEADER_LEN`] bytes: a file created but not yet written.
    /// Parallel::Scoreboard skips these silently and so do we.
    Short,
    /// The length field exceeds the reader's cap; nothing of that size is allocated.
    TooLong {
        /// The length the file claims.
        len: u32,
    },
    /// Fewer bytes than the length field promises: `needed` bytes make a whole frame.
    Truncated {
        /// Size of the whole frame.
        needed: usize,
    },
    /// The digest does not match the status: a write was in progress, or the file is
    /// not a scoreboard file.
    DigestMismatch,
}

/// Decodes the frame at the start of `bytes`, returning the status it carries.
///
/// `max_status_len` caps the length field, so that a hostile or corrupt file never
/// makes the caller allocate what it claims.
pub fn decode(bytes: &[u8], max_status_len: u32) -> Result<&[u8], Undecodable> {
    if bytes.len() < HEADER_LEN {
        return Err(Undecodable::Short);
    }
    let len = u32::from_be_bytes(bytes[16..HEADER_LEN].try_into().expect("4 bytes"));
    if len > max_status_len {
        return Err(Undecodable::TooLong { len });
    }
    let needed = frame_len(len as usize);
    let Some(status) = bytes.get(HEADER_LEN..needed) else {
        return Err(Undecodable::Truncated { needed });
    };
    if Md5::digest(status)[..] != bytes[..16] {
        return Err(Undecodable::DigestMismatch);
    }
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(status: &[u8]) -> Vec<u8> {
        let mut frame = vec![0xAA; frame_len(status.len())];
        encode_into(&mut frame, status);
        frame
    }

    #[test]
    fn matches_the_perl_layout() {
        // perl -MDigest::MD5=md5_hex -e 'print md5_hex("busy GET /")'
        let md5_hex = "1b6e182344ccb38cce6e815628cf9497";
        let frame = encode(b"busy GET /");
        let hex: String = frame[..16].iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, md5_hex);
        assert_eq!(frame[16..20], [0, 0, 0, 10]);
        assert_eq!(&frame[20..], b"busy GET /");
    }

    #[test]
    fn empty_status_digest_is_md5_of_nothing() {
        let frame = encode(b"");
        assert_eq!(
            frame[..16],
            [
                0xd4, 0x1d, 0x8c, 0xd9, 0x8f, 0x00, 0xb2, 0x04, 0xe9, 0x80, 0x09, 0x98, 0xec, 0xf8,
                0x42, 0x7e
            ]
        );
        assert_eq!(decode(&frame, 10), Ok(&b""[..]));
    }

    #[test]
    fn round_trips_and_ignores_trailing_bytes() {
        for status in [&b"idle"[..], b"", &[0u8, 255, 10, 13], &[b'x'; 5000]] {
            let mut bytes = encode(status);
            bytes.extend_from_slice(b"tail of a longer, older status");
            assert_eq!(decode(&bytes, 1 << 20), Ok(status));
        }
    }

    #[test]
    fn carries_only_the_same_length_and_bytes() {
        let frame = encode(b"idle");
        assert!(carries(&frame, b"idle"));
        assert!(!carries(&frame, b"idlE"));
        assert!(!carries(&frame[..23], b"idl"));
        assert!(carries(&encode(b""), b""));
    }

    #[test]
    fn short_input_is_short() {
        for n in 0..HEADER_LEN {
            assert_eq!(decode(&vec![0; n], 100), Err(Undecodable::Short));
        }
    }

    #[test]
    fn length_over_the_cap_is_refused_before_any_slicing() {
        let mut bytes = encode(b"abc");
        bytes[16..20].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(
            decode(&bytes, 1 << 20),
            Err(Undecodable::TooLong { len: u32::MAX })
        );
    }

    #[test]
    fn truncated_frame_says_how_much_is_needed() {
        let bytes = encode(b"hello world");
        assert_eq!(
            decode(&bytes[..25], 100),
            Err(Undecodable::Truncated { needed: 31 })
        );
    }

    #[test]
    fn any_flipped_bit_is_detected() {
        let good = encode(b"busy POST /upload");
        for byte in (0..16).chain(20..good.len()) {
            for bit in 0..8 {
                let mut bad = good.clone();
                bad[byte] ^= 1 << bit;
                assert_eq!(decode(&bad, 100), Err(Undecodable::DigestMismatch));
            }
        }
    }

    #[test]
    fn a_torn_write_is_a_mismatch() {
        // Reader saw the new status bytes under the old header.
        let mut frame = encode(b"idle");
        let newer = encode(b"busy");
        frame[20..].copy_from_slice(&newer[20..]);
        assert_eq!(decode(&frame, 100), Err(Undecodable::DigestMismatch));
    }
}
