//! Single-process behaviour of writers and readers on a real directory, including
//! hostile directory contents. Multi-process behaviour is in `processes.rs`.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use scoreboard::{
    DirReader, ReadOptions, Scoreboard, SkipReason, Snapshot, WriteMode, frame, read_dir,
};

/// A file that looks live: we hold its lock, as its owner would.
fn live_file(path: &Path, bytes: &[u8]) -> File {
    fs::write(path, bytes).unwrap();
    let file = File::open(path).unwrap();
    file.lock().unwrap();
    file
}

fn encoded(status: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0; frame::frame_len(status.len())];
    frame::encode_into(&mut bytes, status);
    bytes
}

fn ids(snapshot: &Snapshot) -> Vec<&str> {
    snapshot.workers.iter().map(|w| w.id.as_str()).collect()
}

#[test]
fn read_all_includes_the_callers_own_status() {
    let tmp = tempfile::tempdir().unwrap();
    let mut scoreboard = Scoreboard::open(tmp.path()).unwrap();
    scoreboard.update("busy GET /").unwrap();
    let snapshot = scoreboard.read_all().unwrap();
    assert_eq!(ids(&snapshot), [std::process::id().to_string()]);
    assert_eq!(snapshot.workers[0].status, b"busy GET /");
    assert!(snapshot.reaped.is_empty() && snapshot.skipped.is_empty());
}

#[test]
fn the_directory_tree_is_created_and_the_file_removed_on_drop() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a/b/scoreboard");
    let mut scoreboard = Scoreboard::open(&dir).unwrap();
    scoreboard.update("idle").unwrap();
    let path = scoreboard.status_path().unwrap();
    assert_eq!(path, dir.join(format!("status_{}", std::process::id())));
    assert!(path.exists());
    drop(scoreboard);
    assert!(!path.exists());
    assert_eq!(
        fs::read_dir(&dir).unwrap().count(),
        0,
        "no .tmp or grave left"
    );
}

#[test]
fn dropping_after_the_directory_was_deleted_is_not_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("scoreboard");
    let mut scoreboard = Scoreboard::open(&dir).unwrap();
    scoreboard.update("idle").unwrap();
    fs::remove_dir_all(&dir).unwrap();
    scoreboard
        .update("still writing into the unlinked file")
        .unwrap();
    drop(scoreboard);
}

#[test]
fn an_unlocked_tmp_file_is_neither_read_nor_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let tmp_file = tmp.path().join("status_4242.tmp");
    fs::write(&tmp_file, encoded(b"half-born")).unwrap();
    let snapshot = read_dir(tmp.path()).unwrap();
    assert!(snapshot.workers.is_empty() && snapshot.reaped.is_empty());
    assert!(tmp_file.exists());
}

#[test]
fn an_unlocked_file_is_a_dead_worker_and_is_reaped() {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("status_77"), encoded(b"busy")).unwrap();
    let _alive = live_file(&tmp.path().join("status_78"), &encoded(b"idle"));
    let snapshot = read_dir(tmp.path()).unwrap();
    assert_eq!(ids(&snapshot), ["78"]);
    assert_eq!(snapshot.reaped, ["77"]);
    // What it was doing when it died, read before its file went.
    assert_eq!(snapshot.last_statuses["77"], b"busy");
    assert!(!snapshot.last_statuses.contains_key("78"));
    assert!(!tmp.path().join("status_77").exists());
    assert!(tmp.path().join("status_78").exists());
}

#[test]
fn a_stale_file_under_our_id_is_removed_at_open() {
    let tmp = tempfile::tempdir().unwrap();
    let stale = tmp.path().join("status_w1");
    fs::write(&stale, encoded(b"from a previous life")).unwrap();
    let _scoreboard = Scoreboard::builder(tmp.path())
        .worker_id(|| "w1")
        .open()
        .unwrap();
    assert!(!stale.exists());
}

#[test]
fn a_live_file_under_our_id_is_left_alone_at_open() {
    let tmp = tempfile::tempdir().unwrap();
    let other = tmp.path().join("status_w1");
    let _lock = live_file(&other, &encoded(b"someone else's"));
    let _scoreboard = Scoreboard::builder(tmp.path())
        .worker_id(|| "w1")
        .open()
        .unwrap();
    assert!(other.exists());
}

#[test]
fn a_custom_id_that_changes_moves_the_file() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    let tmp = tempfile::tempdir().unwrap();
    let slot = Arc::new(AtomicU32::new(1));
    let id = slot.clone();
    let mut scoreboard = Scoreboard::builder(tmp.path())
        .worker_id(move || format!("slot-{}", id.load(Ordering::Relaxed)))
        .open()
        .unwrap();
    scoreboard.update("idle").unwrap();
    assert!(tmp.path().join("status_slot-1").exists());
    slot.store(2, Ordering::Relaxed);
    scoreboard.update("busy").unwrap();
    assert!(!tmp.path().join("status_slot-1").exists());
    let snapshot = read_dir(tmp.path()).unwrap();
    assert_eq!(ids(&snapshot), ["slot-2"]);
    assert!(
        snapshot.reaped.is_empty(),
        "the old file was removed by its owner"
    );
}

#[test]
fn invalid_ids_are_refused_with_the_directory_named() {
    let tmp = tempfile::tempdir().unwrap();
    for bad in ["../escape", "", "x.tmp"] {
        let mut scoreboard = Scoreboard::builder(tmp.path())
            .worker_id(move || bad)
            .open()
            .unwrap();
        let error = scoreboard.update("idle").unwrap_err();
        let message = error.to_string();
        assert!(message.starts_with("validate worker id "), "{message}");
        assert!(
            message.contains(&tmp.path().display().to_string()),
            "{message}"
        );
    }
    assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0);
}

#[test]
fn statuses_of_any_size_and_bytes_round_trip_in_both_write_modes() {
    for mode in [WriteMode::Mapped, WriteMode::Pwrite] {
        let tmp = tempfile::tempdir().unwrap();
        let mut scoreboard = Scoreboard::builder(tmp.path())
            .write_mode(mode)
            .open()
            .unwrap();
        let big: Vec<u8> = (0..100_000u32).map(|i| (i * 7) as u8).collect();
        for status in [&b"idle"[..], &big, b"", b"busy\nMAINPID=1\0\xff", b"idle"] {
            scoreboard.update(status).unwrap();
            assert_eq!(scoreboard.write_mode(), mode);
            let snapshot = read_dir(tmp.path()).unwrap();
            assert_eq!(snapshot.workers[0].status, status, "{mode:?}");
        }
    }
}

#[test]
fn a_status_over_the_readers_cap_is_skipped_without_allocating_it() {
    let tmp = tempfile::tempdir().unwrap();
    let mut scoreboard = Scoreboard::open(tmp.path()).unwrap();
    scoreboard.update(vec![b'x'; 2000]).unwrap();
    let mut reader = DirReader::open(
        tmp.path(),
        ReadOptions {
            max_status_len: 1000,
            ..ReadOptions::default()
        },
    )
    .unwrap();
    let snapshot = reader.sweep().unwrap();
    assert!(snapshot.workers.is_empty());
    assert!(matches!(
        snapshot.skipped[0].reason,
        SkipReason::TooLong {
            len: 2000,
            max: 1000
        }
    ));
}

/// Everything a hostile or broken process could leave in the directory.
struct Hostile {
    _tmp: tempfile::TempDir,
    dir: std::path::PathBuf,
    secret: std::path::PathBuf,
    _locks: Vec<File>,
}

fn hostile_directory() -> Hostile {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("scoreboard");
    fs::create_dir(&dir).unwrap();
    // A valid-looking frame outside the directory, unlocked: following the link would
    // "reap" it.
    let secret = tmp.path().join("secret");
    fs::write(&secret, encoded(b"secret")).unwrap();
    std::os::unix::fs::symlink(&secret, dir.join("status_link")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        dir.join("status_fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    fs::create_dir(dir.join("status_dir")).unwrap();
    let mut huge = encoded(b"x");
    huge[16..20].copy_from_slice(&u32::MAX.to_be_bytes());
    let mut bad_md5 = encoded(b"tampered");
    bad_md5[0] ^= 0xff;
    let non_utf8 = dir.join(OsStr::from_bytes(b"status_\xff\xfe"));
    let locks = vec![
        live_file(&dir.join("status_huge"), &huge),
        live_file(&dir.join("status_badmd5"), &bad_md5),
        live_file(&dir.join("status_empty"), b""),
        live_file(&non_utf8, &encoded(b"fine status, odd name")),
        live_file(&dir.join("status_good"), &encoded(b"idle")),
    ];
    // The same, dead: reaped by name bytes, never read.
    fs::write(dir.join(OsStr::from_bytes(b"status_\xfa")), b"").unwrap();
    Hostile {
        _tmp: tmp,
        dir,
        secret,
        _locks: locks,
    }
}

fn assert_survived(hostile: &Hostile, snapshot: &Snapshot) {
    // A name that is not UTF-8 is a worker like any other, under an escaped id.
    assert_eq!(ids(snapshot), ["\\xff\\xfe", "good"]);
    assert_eq!(snapshot.workers[0].status, b"fine status, odd name");
    assert_eq!(snapshot.reaped, ["\\xfa"]);
    assert_eq!(
        fs::read(&hostile.secret).unwrap(),
        encoded(b"secret"),
        "link not followed"
    );
    for name in [
        "status_link",
        "status_fifo",
        "status_dir",
        "status_huge",
        "status_badmd5",
    ] {
        assert!(
            fs::symlink_metadata(hostile.dir.join(name)).is_ok(),
            "{name} left in place"
        );
    }
    let mut reasons: Vec<String> = snapshot
        .skipped
        .iter()
        .map(|s| {
            format!(
                "{} {}",
                s.path.file_name().unwrap().to_string_lossy(),
                s.reason.kind()
            )
        })
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        [
            "status_badmd5 torn",
            "status_dir not_regular_file",
            "status_fifo not_regular_file",
            "status_huge too_long",
            "status_link not_regular_file",
        ]
    );
    for skipped in &snapshot.skipped {
        let message = skipped.to_string();
        assert!(
            message.starts_with("skipping ")
                && message.contains(&hostile.dir.display().to_string())
        );
    }
}

#[test]
fn hostile_entries_are_skipped_with_a_reason_by_the_one_shot_reader() {
    let hostile = hostile_directory();
    let started = Instant::now();
    let snapshot = read_dir(&hostile.dir).unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "no hang on the FIFO"
    );
    assert_survived(&hostile, &snapshot);
}

#[test]
fn hostile_entries_are_skipped_with_a_reason_by_the_long_lived_reader() {
    let hostile = hostile_directory();
    let mut reader = DirReader::open(&hostile.dir, ReadOptions::default()).unwrap();
    let snapshot = reader.sweep().unwrap();
    assert_survived(&hostile, &snapshot);
    // Second sweep: the dead file is gone, the rest is reported again.
    let again = reader.sweep().unwrap();
    assert_eq!(ids(&again), ["\\xff\\xfe", "good"]);
    assert!(again.reaped.is_empty());
    assert_eq!(again.skipped.len(), 5);
}

#[test]
fn long_lived_reader_keeps_files_open_and_notices_replacement() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("status_9");
    let first = live_file(&path, &encoded(b"first life"));
    let mut reader = DirReader::open(tmp.path(), ReadOptions::default()).unwrap();
    assert_eq!(reader.sweep().unwrap().workers[0].status, b"first life");
    assert_eq!(reader.open_files(), 1);

    // A new process with the same id renames its file over the old one, as a writer
    // does; the old owner has not died yet, so nothing is reaped.
    let staged = tmp.path().join("status_9.tmp");
    let second = live_file(&staged, &encoded(b"second life"));
    let old_ino = fs::metadata(&path).unwrap().ino();
    fs::rename(&staged, &path).unwrap();
    assert_ne!(fs::metadata(&path).unwrap().ino(), old_ino);
    drop(first);
    let snapshot = reader.sweep().unwrap();
    assert_eq!(snapshot.workers[0].status, b"second life");
    assert!(snapshot.reaped.is_empty());

    drop(second);
    let snapshot = reader.sweep().unwrap();
    assert!(snapshot.workers.is_empty());
    assert_eq!(snapshot.reaped, ["9"]);
    assert_eq!(reader.open_files(), 0);
}

#[test]
fn a_missing_directory_is_an_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope");
    let error = read_dir(&missing).unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::NotFound);
    assert_eq!(error.path(), missing);
    assert!(error.to_string().contains("nope"));
}

#[test]
fn read_at_is_when_the_status_was_read() {
    let tmp = tempfile::tempdir().unwrap();
    let mut scoreboard = Scoreboard::open(tmp.path()).unwrap();
    scoreboard.update("idle").unwrap();
    let before = Instant::now();
    let snapshot = read_dir(tmp.path()).unwrap();
    assert!(snapshot.workers[0].read_at >= before && snapshot.workers[0].read_at <= Instant::now());
}

#[test]
fn long_lived_reader_sees_every_in_place_change() {
    let tmp = tempfile::tempdir().unwrap();
    let mut scoreboard = Scoreboard::open(tmp.path()).unwrap();
    let mut reader = DirReader::open(tmp.path(), ReadOptions::default()).unwrap();
    for status in ["idle", "busy", "busy", "idle", "a longer status", "idle"] {
        scoreboard.update(status).unwrap();
        assert_eq!(reader.sweep().unwrap().workers[0].status, status.as_bytes());
    }
    // Corrupted in place after a good read: not served from memory.
    let path = scoreboard.status_path().unwrap();
    let mut bytes = fs::read(&path).unwrap();
    bytes[21] ^= 1; // inside "idle"
    fs::write(&path, &bytes).unwrap();
    let snapshot = reader.sweep().unwrap();
    assert!(snapshot.workers.is_empty());
    assert_eq!(
        snapshot.skipped[0].reason.kind(),
        scoreboard::SkipKind::Torn
    );
}

/// Dead workers' last words are read within budgets of their own: a few frames, each
/// short, so that a directory's owner who leaves many or huge dead files costs the
/// live workers' reads nothing.
#[test]
fn dead_workers_last_words_are_bounded_and_cost_the_living_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let huge = vec![b'x'; scoreboard::MAX_LAST_STATUS_LEN as usize + 1];
    fs::write(tmp.path().join("status_huge"), encoded(&huge)).unwrap();
    for n in 0..100 {
        fs::write(tmp.path().join(format!("status_d{n}")), encoded(b"busy")).unwrap();
    }
    let _alive = live_file(&tmp.path().join("status_live"), &encoded(b"idle"));
    let options = ReadOptions {
        // Room for the live worker only: dead workers' reads are not charged here.
        max_status_bytes: 4096,
        ..ReadOptions::default()
    };
    let mut reader = DirReader::open(tmp.path(), options).unwrap();
    let snapshot = reader.sweep().unwrap();
    assert_eq!(snapshot.reaped.len(), 101);
    assert_eq!(ids(&snapshot), ["live"]);
    assert!(snapshot.unread.is_empty(), "{:?}", snapshot.unread);
    // 101 dead, 64 read: one fewer kept when the huge one was among them.
    let kept = snapshot.last_statuses.len();
    let max = scoreboard::MAX_LAST_STATUSES;
    assert!(kept == max || kept == max - 1, "{kept} kept");
    assert!(
        !snapshot.last_statuses.contains_key("huge"),
        "too long to read"
    );
    assert!(snapshot.last_statuses.values().all(|s| s == b"busy"));
}
