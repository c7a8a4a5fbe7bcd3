use super::*;

#[test]
fn capacity_is_a_power_of_two_at_least_the_minimum() {
    assert_eq!(capacity_for(0).unwrap(), MIN_CAPACITY);
    assert_eq!(capacity_for(64).unwrap(), MIN_CAPACITY);
    assert_eq!(capacity_for(300).unwrap(), 512);
    assert_eq!(capacity_for(5000).unwrap(), 8192);
}

fn file_bytes(file: &File) -> Vec<u8> {
    use std::io::{Read, Seek};
    let mut file = file.try_clone().unwrap();
    file.rewind().unwrap();
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).unwrap();
    bytes
}

#[test]
fn both_modes_leave_the_same_frame_at_offset_0() {
    for mode in [WriteMode::Mapped, WriteMode::Pwrite] {
        let file = tempfile::tempfile().unwrap();
        let mut sink = Sink::new(&file, mode, 4).unwrap();
        assert_eq!(sink.mode(), mode);
        for status in [
            &b""[..],
            b"",
            b"idle",
            b"idle",
            &[b'x'; 10_000],
            b"busy GET /",
        ] {
            sink.write(&file, status).unwrap();
            let bytes = file_bytes(&file);
            assert_eq!(frame::decode(&bytes, 1 << 20), Ok(status), "{mode:?}");
        }
    }
}

fn modified(file: &File) -> (i64, i64) {
    let stat = rustix::fs::fstat(file).unwrap();
    (stat.st_mtime, stat.st_mtime_nsec as i64)
}

/// A write is visible whatever the text: the same status published again, or a
/// store into the mapping, moves the modification time once [`VISIBLE_EVERY`] has
/// passed since it last moved.
#[test]
fn every_update_moves_the_modification_time_at_most_every_interval() {
    for mode in [WriteMode::Mapped, WriteMode::Pwrite] {
        let file = tempfile::tempfile().unwrap();
        let mut sink = Sink::new(&file, mode, 4).unwrap();
        sink.write(&file, b"busy GET /health").unwrap();
        let first = modified(&file);
        std::thread::sleep(VISIBLE_EVERY + std::time::Duration::from_millis(20));
        sink.write(&file, b"busy GET /health").unwrap();
        let second = modified(&file);
        assert!(second > first, "{mode:?}: {first:?} then {second:?}");
        std::thread::sleep(VISIBLE_EVERY + std::time::Duration::from_millis(20));
        sink.write(&file, b"idle").unwrap();
        assert!(modified(&file) > second, "{mode:?}");
    }
}

#[test]
fn the_interval_is_measured_on_a_monotonic_clock() {
    let t = |s, n| Timespec {
        tv_sec: s,
        tv_nsec: n,
    };
    assert!(!elapsed_at_least(
        t(5, 950_000_000),
        t(6, 49_000_000),
        VISIBLE_EVERY
    ));
    assert!(elapsed_at_least(
        t(5, 950_000_000),
        t(6, 50_000_000),
        VISIBLE_EVERY
    ));
    assert!(!elapsed_at_least(t(6, 0), t(5, 0), VISIBLE_EVERY));
}

#[test]
fn mapped_file_grows_in_place_and_never_shrinks() {
    let file = tempfile::tempfile().unwrap();
    let mut sink = Sink::new(&file, WriteMode::Mapped, 4).unwrap();
    sink.write(&file, b"idle").unwrap();
    assert_eq!(file.metadata().unwrap().len(), 256);
    sink.write(&file, &[b'y'; 20_000]).unwrap();
    assert_eq!(file.metadata().unwrap().len(), 32_768);
    sink.write(&file, b"idle").unwrap();
    assert_eq!(file.metadata().unwrap().len(), 32_768);
}
