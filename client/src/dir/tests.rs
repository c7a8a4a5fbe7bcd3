use super::*;

#[test]
fn names_are_classified_like_upstream_0_09() {
    assert_eq!(Name::classify(b"status_42"), Name::Status { id: b"42" });
    assert_eq!(Name::classify(b"status_"), Name::Status { id: b"" });
    assert_eq!(Name::classify(b"status_42.tmp"), Name::Tmp);
    assert_eq!(Name::classify(b".scoreboard-reap.1.2"), Name::Grave);
    assert_eq!(Name::classify(b"status"), Name::Other);
    assert_eq!(Name::classify(b"."), Name::Other);
}

fn locked(path: &Path, bytes: &[u8]) -> File {
    std::fs::write(path, bytes).unwrap();
    let file = File::open(path).unwrap();
    file.lock().unwrap();
    file
}

/// The pid-reuse race, frozen at its worst moment: we hold the lock on the dead
/// worker's inode, and a newcomer with the same id has already renamed its fresh,
/// locked file over the name.
#[test]
fn reaping_never_removes_a_newcomer_that_took_the_name() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = ScoreDir::open(tmp.path()).unwrap();
    let name = status_name("42");
    let path = dir.join(&name);
    let dead = locked(&path, b"dead");
    let staged = tmp.path().join("status_42.tmp");
    let _newcomer = locked(&staged, b"alive");
    std::fs::rename(&staged, &path).unwrap();

    assert_eq!(reap(&dir, &name, &dead).unwrap(), Reaped::NotOurs);
    assert_eq!(std::fs::read(&path).unwrap(), b"alive");
    let names: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["status_42"], "no grave left behind");
}

#[test]
fn reaping_removes_the_dead_file_and_its_grave() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = ScoreDir::open(tmp.path()).unwrap();
    let name = status_name("7");
    let dead = locked(&dir.join(&name), b"dead");
    assert_eq!(reap(&dir, &name, &dead).unwrap(), Reaped::Removed);
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
    // Someone else got there first.
    assert_eq!(reap(&dir, &name, &dead).unwrap(), Reaped::NotOurs);
}

#[test]
fn an_abandoned_grave_is_removed_unless_its_reaper_holds_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = ScoreDir::open(tmp.path()).unwrap();
    let busy = CString::new(".scoreboard-reap.1.0").unwrap();
    let abandoned = CString::new(".scoreboard-reap.1.1").unwrap();
    let _reaper = locked(&dir.join(&busy), b"");
    std::fs::write(dir.join(&abandoned), b"").unwrap();
    remove_abandoned_grave(&dir, &busy);
    remove_abandoned_grave(&dir, &abandoned);
    assert!(dir.join(&busy).exists());
    assert!(!dir.join(&abandoned).exists());
}

/// Where the listing cannot vouch for the type (`DT_UNKNOWN`), `fstat` decides.
#[test]
fn an_entry_of_unknown_type_must_prove_it_is_a_regular_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = ScoreDir::open(tmp.path()).unwrap();
    let fifo = CString::new("status_fifo").unwrap();
    rustix::fs::mknodat(
        dir.fd(),
        &fifo,
        FileType::Fifo,
        Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    let regular = CString::new("status_1").unwrap();
    std::fs::write(dir.join(&regular), b"").unwrap();
    for access in [Access::ReadWrite, Access::ReadOnly] {
        let refused = open_entry(&dir, &fifo, access, FileType::Unknown).unwrap_err();
        assert!(
            matches!(refused, OpenFailure::NotRegular("FIFO")),
            "{refused:?}"
        );
        assert!(open_entry(&dir, &regular, access, FileType::Unknown).is_ok());
    }
}

#[test]
fn tmp_name_appends_the_suffix() {
    assert_eq!(tmp_name(&status_name("w1")).as_bytes(), b"status_w1.tmp");
}
