use std::io;

use super::*;

/// `SkipKind::ALL` lists exactly what `kind` returns, each once. The match below has no
/// wildcard: a new variant does not compile until it is listed here.
#[test]
fn kinds_lists_every_kind_once() {
    fn example(index: usize) -> Option<SkipReason> {
        let reason = match index {
            0 => SkipReason::NotRegularFile("symlink"),
            1 => SkipReason::TooLong { len: 2, max: 1 },
            2 => SkipReason::Torn,
            3 => SkipReason::HardLinked { links: 2 },
            4 => SkipReason::TooManyFiles { max: 1 },
            5 => SkipReason::OverByteBudget { max: 1 },
            6 => SkipReason::Io {
                operation: "open",
                error: io::Error::other("test"),
            },
            _ => return None,
        };
        // Exhaustive, so that adding a variant fails here first.
        match &reason {
            SkipReason::NotRegularFile(_)
            | SkipReason::TooLong { .. }
            | SkipReason::Torn
            | SkipReason::HardLinked { .. }
            | SkipReason::TooManyFiles { .. }
            | SkipReason::OverByteBudget { .. }
            | SkipReason::Io { .. } => Some(reason),
        }
    }
    let kinds: Vec<SkipKind> = (0..)
        .map_while(example)
        .map(|reason| reason.kind())
        .collect();
    assert_eq!(kinds, SkipKind::ALL);
    let labels: std::collections::BTreeSet<&str> = kinds.iter().map(|k| k.as_str()).collect();
    assert_eq!(labels.len(), kinds.len());
}

/// All torn frames of a pass together pause at most the budget; past it a torn frame
/// gets only the immediate re-reads.
#[test]
fn pausing_for_torn_frames_is_budgeted_per_pass() {
    let mut left = Duration::from_micros(250);
    assert!(back_off(1, &mut left) && back_off(3, &mut left));
    assert_eq!(left, Duration::from_micros(250), "first retries are free");
    assert!(back_off(4, &mut left)); // 100 µs
    assert!(back_off(4, &mut left)); // 100 µs
    assert!(!back_off(4, &mut left), "50 µs left cannot pay 100 µs");
    assert!(!back_off(5, &mut left));
    assert_eq!(left, Duration::from_micros(50));
}
