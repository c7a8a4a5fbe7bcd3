//! Multi-process behaviour with real fork, real SIGTERM and SIGKILL: the scenarios of
//! Parallel::Scoreboard's own test suite, and a concurrency hammer.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use scoreboard::{Scoreboard, WriteMode, read_dir};
use scoreboard_testkit::wait_until;
use support::{Child, fork, next_command};

fn main() {
    support::run(&[
        (
            "parent_and_forked_children_like_upstream_t",
            upstream_fork_scenario,
        ),
        (
            "a_forked_child_never_touches_the_parents_file",
            forked_child_leaves_parent_alone,
        ),
        ("hammer_no_torn_status_and_no_live_file_reaped", hammer),
    ]);
}

fn statuses(dir: &Path) -> BTreeMap<String, String> {
    read_dir(dir)
        .unwrap()
        .workers
        .into_iter()
        .map(|w| (w.id.clone(), w.status_lossy().into_owned()))
        .collect()
}

/// A child that updates through the handle it inherited, then obeys commands:
/// `u` updates again, EOF exits normally (dropping the handle).
fn spawn_child(scoreboard: &mut Scoreboard, name: &'static str) -> Child {
    fork(|commands| {
        scoreboard.update(format!("{name} started")).unwrap();
        while let Some(command) = next_command(commands) {
            if command == b'u' {
                scoreboard.update(format!("{name} updated")).unwrap();
            }
        }
        0
    })
}

/// Upstream t/: the parent updates before forking two children; each child updates;
/// read_all shows all three; a child's new status shows up; SIGTERM and SIGKILL of a
/// child leave its file until the next read_all, which removes it.
fn upstream_fork_scenario() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut scoreboard = Scoreboard::open(dir).unwrap();
    scoreboard.update("parent").unwrap();
    let me = std::process::id().to_string();
    let mut first = spawn_child(&mut scoreboard, "first");
    let mut second = spawn_child(&mut scoreboard, "second");
    let (first_id, second_id) = (first.pid.to_string(), second.pid.to_string());

    wait_until(
        Duration::from_secs(5),
        "parent and children published",
        || statuses(dir).len() == 3,
    );
    let all = scoreboard.read_all().unwrap();
    let seen: BTreeMap<_, _> = all
        .workers
        .iter()
        .map(|w| (w.id.clone(), w.status_lossy().into_owned()))
        .collect();
    assert_eq!(
        seen[&me], "parent",
        "children never write into the parent's mapping"
    );
    assert_eq!(seen[&first_id], "first started");
    assert_eq!(seen[&second_id], "second started");

    first.send(b'u');
    wait_until(Duration::from_secs(5), "the first child's update", || {
        statuses(dir)
            .get(&first_id)
            .is_some_and(|s| s == "first updated")
    });

    for (child, id, signal) in [
        (&mut first, &first_id, libc::SIGTERM),
        (&mut second, &second_id, libc::SIGKILL),
    ] {
        child.kill(signal);
        assert_eq!(child.wait(), 128 + signal);
        let path = dir.join(format!("status_{id}"));
        assert!(path.exists(), "the file stays until the next read");
        let all = scoreboard.read_all().unwrap();
        assert_eq!(all.reaped, std::slice::from_ref(id));
        assert!(!all.workers.iter().any(|w| &w.id == id));
        assert!(!path.exists());
    }
    assert_eq!(statuses(dir), BTreeMap::from([(me, "parent".to_owned())]));
}

/// A child that drops the inherited handle without updating, and one that updates and
/// then exits normally: neither removes or changes the parent's file.
fn forked_child_leaves_parent_alone() {
    for mode in [WriteMode::Mapped, WriteMode::Pwrite] {
        let tmp = tempfile::tempdir().unwrap();
        let mut scoreboard = Scoreboard::builder(tmp.path())
            .write_mode(mode)
            .open()
            .unwrap();
        scoreboard.update("parent").unwrap();
        let parent_file = scoreboard.status_path().unwrap();
        let ino = fs::metadata(&parent_file).unwrap().ino();

        let mut silent = fork(|_| {
            drop(std::mem::replace(
                &mut scoreboard,
                Scoreboard::open(tmp.path()).unwrap(),
            ));
            0
        });
        assert_eq!(silent.wait(), 0);
        let mut updating = fork(|_| {
            scoreboard.update("child").unwrap();
            let own = scoreboard.status_path().unwrap();
            drop(std::mem::replace(
                &mut scoreboard,
                Scoreboard::open(tmp.path()).unwrap(),
            ));
            i32::from(own.exists())
        });
        assert_eq!(updating.wait(), 0, "the child removed its own file on drop");

        assert_eq!(fs::metadata(&parent_file).unwrap().ino(), ino);
        let seen = statuses(tmp.path());
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(seen[&std::process::id().to_string()], "parent");
    }
}

const HAMMER_SECONDS: u64 = 3;

/// A status that proves its own integrity independently of the md5: the id, a counter,
/// and a pad whose length is derived from the counter.
fn hammer_status(id: &str, n: u64) -> String {
    format!("{id}:{n}:{}", "x".repeat((n % 97) as usize))
}

fn hammer_status_is_whole(id: &str, status: &str) -> bool {
    let mut parts = status.splitn(3, ':');
    let (Some(who), Some(n), Some(pad)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let Ok(n) = n.parse::<u64>() else {
        return false;
    };
    who == id && pad.len() as u64 == n % 97 && pad.bytes().all(|b| b == b'x')
}

/// Writers update as fast as they can while readers read and reap; some workers with
/// fixed ids are killed with SIGKILL and respawned under the same id (a pid reused, as
/// far as the directory can tell) while the readers reap their predecessors. No reader
/// may ever see a torn status or miss a live writer, and no live worker's file may ever
/// disappear.
fn hammer() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("scoreboard");
    let violations = tmp.path().join("violations");
    fs::create_dir_all(&violations).unwrap();
    // Created up front: the parent polls it before the first writer has created it.
    fs::create_dir_all(&dir).unwrap();
    let deadline = Instant::now() + Duration::from_secs(HAMMER_SECONDS);

    // Every writer checks, every 256 updates, that its name still holds its inode.
    let writer = |id: Option<String>, mode: WriteMode| {
        let dir = dir.clone();
        let violations = violations.clone();
        fork(move |_| {
            let mut builder = Scoreboard::builder(&dir).write_mode(mode);
            if let Some(id) = id.clone() {
                builder = builder.worker_id(move || id.clone());
            }
            let mut scoreboard = builder.open().unwrap();
            let id = id.unwrap_or_else(|| std::process::id().to_string());
            scoreboard.update(hammer_status(&id, 0)).unwrap();
            let path = scoreboard.status_path().unwrap();
            let ino = fs::metadata(&path).unwrap().ino();
            let mut n = 0;
            while Instant::now() < deadline {
                n += 1;
                scoreboard.update(hammer_status(&id, n)).unwrap();
                if n % 256 == 0 && fs::metadata(&path).map(|m| m.ino()).ok() != Some(ino) {
                    let note = format!("{id}: live file removed after {n} updates");
                    fs::write(
                        violations.join(format!("writer-{}", std::process::id())),
                        note,
                    )
                    .unwrap();
                    return 1;
                }
            }
            0
        })
    };

    let mut steady: Vec<Child> = (0..4)
        .map(|i| {
            writer(
                None,
                if i % 2 == 0 {
                    WriteMode::Mapped
                } else {
                    WriteMode::Pwrite
                },
            )
        })
        .collect();
    let steady_ids: Vec<String> = steady.iter().map(|c| c.pid.to_string()).collect();
    wait_until(Duration::from_secs(5), "every steady writer", || {
        let seen = statuses(&dir);
        steady_ids.iter().all(|id| seen.contains_key(id))
    });

    let mut readers: Vec<Child> = (0..2)
        .map(|_| {
            let (dir, violations, steady_ids) =
                (dir.clone(), violations.clone(), steady_ids.clone());
            fork(move |_| {
                let mut scans = 0u64;
                let mut reaped = 0;
                // Stop a little before the writers do, so every steady writer is alive
                // for every scan.
                while Instant::now() + Duration::from_millis(200) < deadline {
                    let snapshot = read_dir(&dir).unwrap();
                    scans += 1;
                    reaped += snapshot.reaped.len();
                    let mut problems = Vec::new();
                    for worker in &snapshot.workers {
                        if !hammer_status_is_whole(&worker.id, &worker.status_lossy()) {
                            problems.push(format!(
                                "torn status for {}: {:?}",
                                worker.id,
                                worker.status_lossy()
                            ));
                        }
                    }
                    for id in &steady_ids {
                        if !snapshot.workers.iter().any(|w| &w.id == id) {
                            problems.push(format!(
                                "live writer {id} missing (skipped: {:?})",
                                snapshot.skipped
                            ));
                        }
                    }
                    if !problems.is_empty() {
                        fs::write(
                            violations.join(format!("reader-{}", std::process::id())),
                            problems.join("\n"),
                        )
                        .unwrap();
                        return 1;
                    }
                }
                eprint!("[reader: {scans} scans, {reaped} reaped] ");
                0
            })
        })
        .collect();

    // Respawn fixed-id workers under SIGKILL until the deadline.
    let mut respawns = 0;
    let mut slots: Vec<Child> = (0..3)
        .map(|slot| writer(Some(format!("slot-{slot}")), WriteMode::Mapped))
        .collect();
    let mut tick = 0u32;
    while Instant::now() + Duration::from_millis(300) < deadline {
        std::thread::sleep(Duration::from_millis(7));
        tick += 1;
        let slot = (tick % 3) as usize;
        slots[slot].kill(libc::SIGKILL);
        slots[slot].wait();
        slots[slot] = writer(Some(format!("slot-{slot}")), WriteMode::Mapped);
        respawns += 1;
    }

    let mut failures = Vec::new();
    for child in steady
        .iter_mut()
        .chain(readers.iter_mut())
        .chain(slots.iter_mut())
    {
        let code = child.wait();
        if code != 0 {
            failures.push(format!("pid {} exited {code}", child.pid));
        }
    }
    for entry in fs::read_dir(&violations).unwrap() {
        failures.push(fs::read_to_string(entry.unwrap().path()).unwrap());
    }
    eprint!("[{respawns} respawns under SIGKILL] ");
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(respawns > 50);
    // Everyone has exited: the steady writers removed their files; the last slots were
    // killed, and the next read reaps them.
    let last = read_dir(&dir).unwrap();
    assert!(last.workers.is_empty(), "{:?}", last.workers);
}
