use super::*;

fn remembered(workers: BTreeMap<String, WorkerMemory>) -> Memory {
    Memory {
        boot: Boot {
            id: Some("b".into()),
            began_ms: 1,
        },
        workers,
        ..Memory::default()
    }
}

#[test]
fn memory_round_trips() {
    let tmp = tempfile::tempdir().unwrap();
    let worker = |fingerprint, written, ms| WorkerMemory {
        fingerprint,
        written,
        progress_at: Duration::from_millis(ms),
    };
    let memory = Memory {
        boot: Boot {
            id: Some("5e7c3e1a-0000-4000-8000-000000000001".into()),
            began_ms: 1_764_000_000_000,
        },
        workers: [
            ("w1".to_owned(), worker(u64::MAX - 7, None, 90_000)),
            (
                "w2".to_owned(),
                worker(
                    3,
                    Some(Written {
                        seconds: 1_764_000_000,
                        nanoseconds: 999_999_999,
                    }),
                    1,
                ),
            ),
        ]
        .into(),
        watchdog_triggered_for: Some(123_456_789),
        signalled: [(
            "4242".to_owned(),
            SignalMemory {
                pid: 4242,
                process_started: Duration::from_millis(5_000),
                sent_at: Duration::from_millis(60_000),
                killed: false,
            },
        )]
        .into(),
    };
    save(tmp.path(), "web.service", &memory).unwrap();
    assert_eq!(load(tmp.path(), "web.service").unwrap(), Some(memory));
    assert_eq!(load(tmp.path(), "other.service").unwrap(), None);
    std::fs::write(tmp.path().join("bad.service.json"), "{").unwrap();
    assert!(load(tmp.path(), "bad.service").is_err());
    remove(tmp.path(), "web.service");
    assert_eq!(load(tmp.path(), "web.service").unwrap(), None);
}

fn history() -> BTreeMap<String, WorkerMemory> {
    [(
        "w1".to_owned(),
        WorkerMemory {
            fingerprint: 7,
            written: None,
            progress_at: Duration::from_secs(1),
        },
    )]
    .into()
}

#[test]
fn a_fifo_is_refused_at_once_rather_than_waited_on() {
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("web.service.json");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        FileType::Fifo,
        Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    let (sender, receiver) = std::sync::mpsc::channel();
    let directory = tmp.path().to_owned();
    // In a thread, so that a regression fails the test instead of hanging it.
    std::thread::spawn(move || {
        let _ = sender.send(load(&directory, "web.service").map_err(|e| e.to_string()));
    });
    let message = receiver
        .recv_timeout(Duration::from_secs(5))
        .expect("load blocked on a FIFO")
        .unwrap_err();
    assert!(
        message.contains(&fifo.display().to_string()) && message.contains("a FIFO"),
        "{message}"
    );
}

#[test]
fn a_directory_at_the_name_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("web.service.json")).unwrap();
    let message = load(tmp.path(), "web.service").unwrap_err().to_string();
    assert!(
        message.contains("a directory, not a regular file"),
        "{message}"
    );
}

#[test]
fn a_symlink_at_the_final_name_is_not_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    save(&elsewhere, "web.service", &remembered(history())).unwrap();
    let target = elsewhere.join("web.service.json");
    let planted = tmp.path().join("web.service.json");
    std::os::unix::fs::symlink(&target, &planted).unwrap();

    let message = load(tmp.path(), "web.service").unwrap_err().to_string();
    assert!(
        message.contains(&planted.display().to_string()) && message.contains("symbolic link"),
        "{message}"
    );

    // Saving replaces the link itself; its target is untouched.
    let before = std::fs::read(&target).unwrap();
    save(tmp.path(), "web.service", &Memory::default()).unwrap();
    assert!(std::fs::symlink_metadata(&planted).unwrap().is_file());
    assert_eq!(std::fs::read(&target).unwrap(), before);
    assert_eq!(
        load(tmp.path(), "web.service").unwrap(),
        Some(Memory::default())
    );

    // So does removing it.
    std::fs::remove_file(&planted).unwrap();
    std::os::unix::fs::symlink(&target, &planted).unwrap();
    remove(tmp.path(), "web.service");
    assert!(std::fs::symlink_metadata(&planted).is_err());
    assert_eq!(std::fs::read(&target).unwrap(), before);
}

#[test]
fn a_symlink_at_the_old_temporary_name_is_not_written_through() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("precious");
    std::fs::write(&target, "precious").unwrap();
    for name in ["web.service.json.tmp", "web.service.tmp"] {
        std::os::unix::fs::symlink(&target, tmp.path().join(name)).unwrap();
    }
    let memory = remembered(history());
    save(tmp.path(), "web.service", &memory).unwrap();
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious");
    assert_eq!(load(tmp.path(), "web.service").unwrap(), Some(memory));
    // Nothing but the state file and what was planted is left behind.
    let mut names: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "precious",
            "web.service.json",
            "web.service.json.tmp",
            "web.service.tmp"
        ]
    );
}

#[test]
fn a_file_over_the_limit_is_refused_without_reading_it() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("web.service.json");
    let file = std::fs::File::create(&path).unwrap();
    file.set_len(MAX_STATE_FILE + 1).unwrap();
    let message = load(tmp.path(), "web.service").unwrap_err().to_string();
    assert!(
        message.contains(&path.display().to_string()) && message.contains("16 MiB"),
        "{message}"
    );
    // At the limit it is read (and is not JSON).
    file.set_len(MAX_STATE_FILE).unwrap();
    let message = load(tmp.path(), "web.service").unwrap_err().to_string();
    assert!(!message.contains("16 MiB"), "{message}");
}
