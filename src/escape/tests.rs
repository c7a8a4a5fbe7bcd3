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
