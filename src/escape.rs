//! Making bytes that a service's user controls safe to print — the one place that does
//! it.
//!
//! Worker ids (file names) and statuses are arbitrary bytes written by unprivileged
//! users, and the agent runs privileged: printed raw, a newline forges a log line or a
//! table row, an escape sequence rewrites the terminal. [`printable`] escapes them the way
//! systemd's `cescape` does — `\n`, `\t`, `\\`, and `\xNN` for every other control
//! character and for every byte that is not valid UTF-8 — so the result is one line
//! without control characters, and distinct inputs stay distinct (the escaping can be
//! undone byte for byte). Text that needs nothing is returned borrowed.
//!
//! "Control character" means what [`char::is_control`] says: C0 (U+0000..U+001F), DEL
//! (U+007F) and C1 (U+0080..U+009F). A C1 character is escaped as its two UTF-8 bytes
//! (`\xc2\x85` for U+0085), so unescaping still gives the original bytes.
//!
//! * [`printable`], [`printable_capped`] — as a `Cow<str>`, for table cells and labels.
//! * [`Escaped`] — the same as a `Display` value, for log call sites, without allocating.
//! * [`escape_controls`] — for text that is already ours but may carry hostile parts
//!   (a formatted log line, an error message naming a path): controls only, backslashes
//!   kept, so the line reads as written but is still one line.
//! * [`to_json`] — JSON as serde writes it, with DEL and C1 also escaped.

use std::borrow::Cow;
use std::ffi::OsStr;
use std::fmt;
use std::ops::ControlFlow;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// What a cut [`printable_capped`] text ends with.
pub const ELLIPSIS: char = '…';

/// One piece of escaped output. Escapes are never cut in half.
enum Piece<'a> {
    /// Text that needs no escaping.
    Text(&'a str),
    /// A fixed escape: `\n`, `\t`, `\\`.
    Escape(&'static str),
    /// A byte shown as `\xNN`.
    Byte(u8),
}

/// Whether `c` must be escaped; backslashes only when `backslash` (to stay reversible).
fn needs_escape(c: char, backslash: bool) -> bool {
    c.is_control() || (backslash && c == '\\')
}

/// Feeds `bytes`, escaped, to `sink` piece by piece until it says stop.
fn escape_pieces(
    bytes: &[u8],
    backslash: bool,
    mut sink: impl FnMut(Piece<'_>) -> ControlFlow<()>,
) -> ControlFlow<()> {
    for chunk in bytes.utf8_chunks() {
        escape_text(chunk.valid(), backslash, &mut sink)?;
        for &byte in chunk.invalid() {
            sink(Piece::Byte(byte))?;
        }
    }
    ControlFlow::Continue(())
}

/// Feeds valid text to `sink`: runs that need nothing in one piece, each character
/// that does as its escape.
fn escape_text(
    text: &str,
    backslash: bool,
    sink: &mut impl FnMut(Piece<'_>) -> ControlFlow<()>,
) -> ControlFlow<()> {
    let mut run_start = 0;
    for (at, c) in text.char_indices() {
        if !needs_escape(c, backslash) {
            continue;
        }
        if run_start < at {
            sink(Piece::Text(&text[run_start..at]))?;
        }
        match c {
            '\n' => sink(Piece::Escape("\\n"))?,
            '\t' => sink(Piece::Escape("\\t"))?,
            '\\' => sink(Piece::Escape("\\\\"))?,
            other => {
                let mut utf8 = [0; 4];
                for &byte in other.encode_utf8(&mut utf8).as_bytes() {
                    sink(Piece::Byte(byte))?;
                }
            }
        }
        run_start = at + c.len_utf8();
    }
    if run_start < text.len() {
        sink(Piece::Text(&text[run_start..]))?;
    }
    ControlFlow::Continue(())
}

/// Writes `bytes`, escaped, to `out`.
fn write_escaped(bytes: &[u8], backslash: bool, out: &mut impl fmt::Write) -> fmt::Result {
    let mut result = Ok(());
    let _ = escape_pieces(bytes, backslash, |piece| {
        result = match piece {
            Piece::Text(text) => out.write_str(text),
            Piece::Escape(escape) => out.write_str(escape),
            Piece::Byte(byte) => write!(out, "\\x{byte:02x}"),
        };
        if result.is_ok() {
            ControlFlow::Continue(())
        } else {
            ControlFlow::Break(())
        }
    });
    result
}

/// `\xNN` for `byte`, lowercase as systemd writes it.
fn byte_escape(byte: u8) -> [u8; 4] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    [
        b'\\',
        b'x',
        HEX[usize::from(byte >> 4)],
        HEX[usize::from(byte & 0xf)],
    ]
}

/// Whether `bytes` can be shown as they are: valid UTF-8 without control characters
/// (and, when `backslash`, without backslashes).
fn is_clean(bytes: &[u8], backslash: bool) -> Option<&str> {
    let text = std::str::from_utf8(bytes).ok()?;
    (!text.chars().any(|c| needs_escape(c, backslash))).then_some(text)
}

/// `bytes` as one printable line: borrowed when valid UTF-8 without control characters
/// or backslashes, otherwise escaped as systemd's `cescape` does (see the module doc).
/// Reversible: distinct inputs give distinct outputs.
pub fn printable(bytes: &[u8]) -> Cow<'_, str> {
    if let Some(text) = is_clean(bytes, true) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(bytes.len() + 8);
    // Writing to a String cannot fail.
    let _ = write_escaped(bytes, true, &mut out);
    Cow::Owned(out)
}

/// [`printable`], at most `max_bytes` long: when the escaped text is longer, it is cut
/// at a character boundary, never inside an escape, and ends with [`ELLIPSIS`] (when
/// `max_bytes` leaves room for it; below 3 bytes the cut text is just shorter).
///
/// Only as much of the input as fits is escaped, so a 1 MiB input costs `max_bytes`.
/// Cut texts are no longer reversible: two inputs alike in their first `max_bytes`
/// give the same text, which callers that group by it must allow for.
pub fn printable_capped(bytes: &[u8], max_bytes: usize) -> Cow<'_, str> {
    // Looked at only when short: a long input is cut whatever it holds.
    if bytes.len() <= max_bytes
        && let Some(text) = is_clean(bytes, true)
    {
        return Cow::Borrowed(text);
    }
    let ellipsis = ELLIPSIS.len_utf8();
    let mut out = String::with_capacity(max_bytes.min(bytes.len().saturating_mul(4)));
    // The longest prefix that still leaves room for the ellipsis: where a cut goes.
    let mut cut_at = 0;
    let mut push = |out: &mut String, piece: &str| {
        if out.len() + piece.len() > max_bytes {
            out.truncate(cut_at);
            if max_bytes >= ellipsis {
                out.push(ELLIPSIS);
            }
            return ControlFlow::Break(());
        }
        out.push_str(piece);
        if out.len() + ellipsis <= max_bytes {
            cut_at = out.len();
        }
        ControlFlow::Continue(())
    };
    let _ = escape_pieces(bytes, true, |piece| match piece {
        // Character by character, so the cut can fall inside a run of text.
        Piece::Text(text) => {
            let mut utf8 = [0; 4];
            for c in text.chars() {
                push(&mut out, c.encode_utf8(&mut utf8))?;
            }
            ControlFlow::Continue(())
        }
        Piece::Escape(escape) => push(&mut out, escape),
        Piece::Byte(byte) => {
            let hex = byte_escape(byte);
            // Always ASCII; the fallback only keeps a panic path out.
            push(&mut out, std::str::from_utf8(&hex).unwrap_or("\\x??"))
        }
    });
    Cow::Owned(out)
}

/// `text` with its control characters escaped as [`printable`] escapes them, but its
/// backslashes kept: for text we composed (a log line, a warning naming a path) that
/// may hold hostile parts. The result is one line and cannot act on a terminal;
/// it is not reversible (a literal `\n` and an escaped newline look alike), which is why
/// ids and statuses go through [`printable`] instead.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if is_clean(text.as_bytes(), false).is_some() {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    // Writing to a String cannot fail.
    let _ = write_escaped(text.as_bytes(), false, &mut out);
    Cow::Owned(out)
}

/// [`escape_controls`], written to `out` without an intermediate string.
pub(crate) fn write_controls_escaped(text: &str, out: &mut impl fmt::Write) -> fmt::Result {
    write_escaped(text.as_bytes(), false, out)
}

/// Bytes shown as [`printable`] shows them, as a `Display` value that writes straight
/// to the formatter: `warn!(path = %Escaped::path(&path), …)`. Width and precision
/// (`{:<20}`) apply to the escaped text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Escaped<'a>(pub &'a [u8]);

impl<'a> Escaped<'a> {
    /// A path's bytes (a worker's file name is not necessarily UTF-8).
    pub fn path(path: &'a Path) -> Self {
        Escaped(path.as_os_str().as_bytes())
    }

    /// An OS string's bytes.
    pub fn os(text: &'a OsStr) -> Self {
        Escaped(text.as_bytes())
    }

    /// A string's bytes (a worker id).
    pub fn str(text: &'a str) -> Self {
        Escaped(text.as_bytes())
    }
}

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.width().is_some() || f.precision().is_some() {
            // Padding needs the length first; rare, so allocating here is fine.
            f.pad(&printable(self.0))
        } else {
            write_escaped(self.0, true, f)
        }
    }
}

/// Serde's compact JSON, plus `\u00XX` for DEL and C1 characters, which serde_json
/// writes raw (valid JSON, but some terminals act on C1). The parsed value is the same.
struct JsonFormatter;

impl serde_json::ser::Formatter for JsonFormatter {
    fn write_string_fragment<W>(&mut self, writer: &mut W, fragment: &str) -> std::io::Result<()>
    where
        W: ?Sized + std::io::Write,
    {
        let mut run_start = 0;
        for (at, c) in fragment.char_indices() {
            // serde_json escapes C0 itself; what reaches here needs only DEL and C1.
            if c.is_control() {
                writer.write_all(&fragment.as_bytes()[run_start..at])?;
                write!(writer, "\\u{:04x}", u32::from(c))?;
                run_start = at + c.len_utf8();
            }
        }
        writer.write_all(&fragment.as_bytes()[run_start..])
    }
}

/// `value` as compact JSON in which no control character appears raw: byte for byte
/// what `serde_json::to_string` writes, except that DEL and C1 characters are escaped
/// (`\u007f`, `\u0085`) — the same document to any JSON parser, safe on a terminal.
pub fn to_json<T: serde::Serialize + ?Sized>(value: &T) -> serde_json::Result<String> {
    let mut out = Vec::with_capacity(128);
    value.serialize(&mut serde_json::Serializer::with_formatter(
        &mut out,
        JsonFormatter,
    ))?;
    // serde_json writes UTF-8 only; lossy conversion keeps this free of a panic path.
    Ok(match String::from_utf8(out) {
        Ok(text) => text,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Undoes [`printable`], for the reversibility property. Panics on text that
    /// `printable` cannot have written.
    fn unescape(text: &str) -> Vec<u8> {
        let mut out = Vec::new();
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] != b'\\' {
                out.push(bytes[i]);
                i += 1;
                continue;
            }
            match bytes[i + 1] {
                b'n' => out.push(b'\n'),
                b't' => out.push(b'\t'),
                b'\\' => out.push(b'\\'),
                b'x' => {
                    let hex = std::str::from_utf8(&bytes[i + 2..i + 4]).unwrap();
                    out.push(u8::from_str_radix(hex, 16).unwrap());
                    i += 2;
                }
                other => panic!("unexpected escape \\{}", other as char),
            }
            i += 2;
        }
        out
    }

    fn has_control(text: &str) -> bool {
        text.chars().any(char::is_control)
    }

    /// A small deterministic generator (xorshift64*), so the property tests need no
    /// extra crate and fail the same way every time.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        /// Bytes drawn mostly from the ones escaping is about, so that collisions, if
        /// any were possible, would be found.
        fn tricky_bytes(&mut self) -> Vec<u8> {
            const ALPHABET: &[u8] = b"\\nxtab0fF19\n\t\r\0\x1b\x7f\x80\x85\x9f\xc2\xc3\xa9\xe2\x80\xa6\xff\xfe\xf0\x9f\x98 \"";
            let len = (self.next() % 12) as usize;
            (0..len)
                .map(|_| ALPHABET[(self.next() % ALPHABET.len() as u64) as usize])
                .collect()
        }
    }

    #[test]
    fn clean_text_is_borrowed() {
        for text in [
            "",
            "idle",
            "busy GET /index.html?q=1",
            "état … 日本",
            "say \"hi\"",
        ] {
            assert!(matches!(printable(text.as_bytes()), Cow::Borrowed(t) if t == text));
            assert!(matches!(escape_controls(text), Cow::Borrowed(t) if t == text));
        }
    }

    #[test]
    fn escapes_read_like_cescape() {
        assert_eq!(printable(b"a\nb\tc\\d"), "a\\nb\\tc\\\\d");
        assert_eq!(
            printable(b"\x1b[31mred\x07\r\0\x7f"),
            "\\x1b[31mred\\x07\\x0d\\x00\\x7f"
        );
        assert_eq!(printable(b"bad \xff\xfe utf8"), "bad \\xff\\xfe utf8");
        assert_eq!(
            printable("next line\u{85}csi\u{9b}".as_bytes()),
            "next line\\xc2\\x85csi\\xc2\\x9b"
        );
        // A truncated multi-byte sequence: each byte escaped, the rest kept.
        assert_eq!(printable(b"\xe2\x80 \xc3\xa9"), "\\xe2\\x80 é");
    }

    #[test]
    fn output_never_holds_a_control_character_and_can_be_undone() {
        let mut rng = Rng(0x5c0e_b0a2_d001_f00d);
        for _ in 0..200_000 {
            let bytes = rng.tricky_bytes();
            let shown = printable(&bytes);
            assert!(!has_control(&shown), "{bytes:?} -> {shown:?}");
            assert_eq!(unescape(&shown), bytes, "{shown:?}");
            assert_eq!(
                matches!(shown, Cow::Borrowed(_)),
                std::str::from_utf8(&bytes).is_ok_and(|t| t == shown),
            );
            assert_eq!(Escaped(&bytes).to_string(), shown);
            assert!(!has_control(&escape_controls(&String::from_utf8_lossy(
                &bytes
            ))));
        }
    }

    #[test]
    fn distinct_tricky_inputs_stay_distinct() {
        let pairs: [(&[u8], &[u8]); 8] = [
            (b"\n", b"\\n"),
            (b"\t", b"\\t"),
            (b"\\", b"\\\\"),
            (b"\xff", b"\\xff"),
            (b"\x1b", b"\\x1b"),
            ("\u{85}".as_bytes(), b"\\xc2\\x85"),
            (b"\xc2", b"\\xc2"),
            (b"a\\nb", b"a\nb"),
        ];
        for (a, b) in pairs {
            assert_ne!(printable(a), printable(b), "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn capped_text_fits_and_is_cut_between_escapes() {
        let huge = vec![b'x'; 1 << 20];
        let capped = printable_capped(&huge, 64);
        assert!(capped.len() <= 64, "{}", capped.len());
        assert!(capped.ends_with(ELLIPSIS));
        assert_eq!(capped.trim_end_matches(ELLIPSIS), "x".repeat(61));

        // Exactly the cap: not cut.
        assert_eq!(printable_capped(b"0123456789", 10), "0123456789");
        assert!(matches!(
            printable_capped(b"0123456789", 10),
            Cow::Borrowed(_)
        ));
        assert_eq!(printable_capped(b"0123456789a", 10), "0123456…");
        // Escapes are whole or absent: "\x1b\x1b" would leave no room for the ellipsis.
        assert_eq!(printable_capped(&[0x1b; 100], 10), "\\x1b…");
        // Multi-byte characters are never split.
        assert_eq!(printable_capped("é".repeat(100).as_bytes(), 10), "ééé…");
        // An escaped text that fits is not cut.
        assert_eq!(printable_capped(b"a\nb", 10), "a\\nb");
        // Too small for the ellipsis: just shorter.
        assert_eq!(printable_capped(b"abcdef", 2), "");
        assert_eq!(printable_capped(b"", 0), "");
    }

    #[test]
    fn capped_output_fits_for_any_input_and_cap() {
        let mut rng = Rng(42);
        for _ in 0..50_000 {
            let bytes = rng.tricky_bytes();
            let max = (rng.next() % 20) as usize;
            let capped = printable_capped(&bytes, max);
            assert!(capped.len() <= max, "{bytes:?} at {max}: {capped:?}");
            assert!(!has_control(&capped));
            let full = printable(&bytes);
            if full.len() <= max {
                assert_eq!(capped, full);
            } else {
                // A prefix of the full text, cut at a piece boundary.
                let kept = capped.strip_suffix(ELLIPSIS).unwrap_or(&capped);
                assert!(full.starts_with(kept), "{full:?} / {capped:?}");
                // Whole escapes only: what is kept undoes to a prefix of the input.
                assert!(bytes.starts_with(&unescape(kept)), "{bytes:?} / {capped:?}");
            }
        }
    }

    #[test]
    fn escaping_controls_keeps_backslashes() {
        assert_eq!(
            escape_controls("C:\\dir \"x\"\nERROR"),
            "C:\\dir \"x\"\\nERROR"
        );
        assert_eq!(escape_controls("\r\x1b\u{9b}"), "\\x0d\\x1b\\xc2\\x9b");
    }

    #[test]
    fn escaped_displays_paths_and_pads() {
        let path = Path::new(OsStr::from_bytes(b"/run/x/status_\n\xff"));
        assert_eq!(Escaped::path(path).to_string(), "/run/x/status_\\n\\xff");
        assert_eq!(format!("[{:<6}]", Escaped::str("a\n")), "[a\\n   ]");
        assert_eq!(format!("{}", Escaped::os(OsStr::new("ok"))), "ok");
    }

    #[test]
    fn json_is_serde_json_with_del_and_c1_escaped() {
        let value = serde_json::json!({"id": "a\n\u{1b}[31m", "status": "x\u{7f}y\u{85}z\u{9b}é…"});
        let ours = to_json(&value).unwrap();
        assert!(!has_control(&ours), "{ours}");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&ours).unwrap(),
            value
        );
        assert_eq!(
            ours,
            r#"{"id":"a\n\u001b[31m","status":"x\u007fy\u0085z\u009bé…"}"#
        );
        // Without DEL or C1, exactly what serde_json writes.
        let plain = serde_json::json!({"workers": [{"id": "1", "status": "busy \"GET\" /\n\\"}]});
        assert_eq!(
            to_json(&plain).unwrap(),
            serde_json::to_string(&plain).unwrap()
        );
    }
}
