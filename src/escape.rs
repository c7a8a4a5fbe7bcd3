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
mod tests;
