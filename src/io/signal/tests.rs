use super::*;

#[test]
fn only_the_units_own_cgroup_or_below_counts() {
    let unit = "/system.slice/web.service";
    assert!(in_control_group("0::/system.slice/web.service\n", unit));
    assert!(in_control_group(
        "0::/system.slice/web.service/workers\n",
        unit
    ));
    assert!(in_control_group(
        "12:pids:/x\n1:name=systemd:/system.slice/web.service\n0::/\n",
        unit
    ));
    for other in [
        "0::/system.slice/web.service2\n",
        "0::/system.slice/other.service\n",
        "0::/\n",
        "4:pids:/system.slice/web.service\n",
        "garbage",
    ] {
        assert!(!in_control_group(other, unit), "{other}");
    }
    assert!(
        !in_control_group("0::/\n", ""),
        "an empty ControlGroup is nobody's"
    );
}

#[test]
fn the_holder_is_read_from_proc_locks() {
    let dev = rustix::fs::makedev(8, 1);
    let locks = "1: FLOCK  ADVISORY  WRITE 4242 08:01:777 0 EOF\n\
                 1: -> FLOCK  ADVISORY  WRITE 5555 08:01:777 0 EOF\n\
                 2: POSIX  ADVISORY  WRITE 6666 08:01:888 0 EOF\n\
                 3: FLOCK  ADVISORY  READ 7777 08:01:999 0 EOF\n";
    assert!(holds_write_lock(locks, 4242, (dev, 777)));
    assert!(!holds_write_lock(locks, 5555, (dev, 777)), "a waiter");
    assert!(!holds_write_lock(locks, 4242, (dev, 778)));
    assert!(!holds_write_lock(locks, 6666, (dev, 888)), "not a flock");
    assert!(
        !holds_write_lock(locks, 7777, (dev, 999)),
        "not a write lock"
    );
    assert!(!holds_write_lock(
        locks,
        4242,
        (rustix::fs::makedev(8, 2), 777)
    ));
}

#[test]
fn the_lock_list_is_streamed_and_the_real_uid_read() {
    let dev = rustix::fs::makedev(8, 1);
    let mut locks = String::new();
    for n in 0..10_000 {
        locks.push_str(&format!("{n}: FLOCK  ADVISORY  READ 1 08:01:{n} 0 EOF\n"));
    }
    locks.push_str("9: FLOCK  ADVISORY  WRITE 4242 08:01:777 0 EOF\n");
    assert!(holds_write_lock_in(locks.as_bytes(), 4242, (dev, 777)).unwrap());
    assert!(!holds_write_lock_in(locks.as_bytes(), 4243, (dev, 777)).unwrap());
    let status = "Name:\tperl\nUid:\t1000\t0\t0\t0\nGid:\t1000\t1000\t1000\t1000\n";
    assert_eq!(real_uid(status), Some(1000));
    assert_eq!(real_uid("Name:\tx\n"), None);
}

/// A live process of ours holding a flock on a file is found as its holder, and one
/// that holds nothing is refused before any signal.
#[test]
fn a_process_is_signalled_only_when_it_holds_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("status_x");
    let file = std::fs::File::create(&path).unwrap();
    file.lock().unwrap();
    let stat = rustix::fs::stat(&path).unwrap();
    let me = std::process::id() as i32;
    let locks = std::fs::read_to_string("/proc/locks").unwrap();
    assert!(holds_write_lock(&locks, me, (stat.st_dev, stat.st_ino)));
    // The checks on what /proc says of this process, as if it ran in a unit: its own
    // file passes them all; another file, which nobody locks, is refused.
    let cgroups = "0::/system.slice/x.service\n";
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let target = |file: (u64, u64)| Target {
        pid: me,
        control_group: "/system.slice/x.service",
        file,
        owner: rustix::process::getuid().as_raw(),
    };
    let own = target((stat.st_dev, stat.st_ino));
    assert_eq!(
        check_target(&own, cgroups, &status, locks.as_bytes()),
        Ok(())
    );
    let other = tmp.path().join("status_y");
    std::fs::write(&other, b"").unwrap();
    let other_stat = rustix::fs::stat(&other).unwrap();
    let other = target((other_stat.st_dev, other_stat.st_ino));
    assert_eq!(
        check_target(&other, cgroups, &status, locks.as_bytes()),
        Err(Refused::NotTheHolder)
    );
    // The real thing on the other file: refused before any signal (SIGTERM would end
    // this test process), whichever check refuses it where the test runs.
    assert!(signal_worker(&other, Signal::TERM).is_err());
    // A pid that does not exist.
    let gone = Target {
        pid: i32::MAX - 1,
        control_group: "/system.slice/x.service",
        file: (0, 0),
        owner: 0,
    };
    assert_eq!(signal_worker(&gone, Signal::TERM), Err(Refused::Gone));
}
