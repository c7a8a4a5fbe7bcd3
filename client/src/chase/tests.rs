use super::*;

#[test]
fn plain_directories_and_dots_resolve() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a/b");
    std::fs::create_dir_all(&dir).unwrap();
    let (_, id) = open_directory(&dir).unwrap();
    let (_, again) = open_directory(&tmp.path().join("a/./b/../b/")).unwrap();
    assert_eq!(id, again);
}

#[test]
fn root_symlinks_in_root_directories_are_followed() {
    // Tests run as root in CI; as another user every link here is "not root's".
    if !rustix::process::geteuid().is_root() {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "must run as root in CI"
        );
        eprintln!("skipping: needs root to own the links");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("real")).unwrap();
    std::os::unix::fs::symlink("real", tmp.path().join("link")).unwrap();
    let (_, via_link) = open_directory(&tmp.path().join("link")).unwrap();
    let (_, direct) = open_directory(&tmp.path().join("real")).unwrap();
    assert_eq!(via_link, direct);
}

#[test]
fn a_file_is_not_a_directory() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("f"), b"").unwrap();
    let error = open_directory(&tmp.path().join("f")).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::NotADirectory, "{error}");
    let error = open_directory(&tmp.path().join("missing")).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::NotFound, "{error}");
}

#[test]
fn transitions_out_of_a_users_directory_must_stay_with_that_user() {
    let stat = |uid: u32| {
        let mut stat: Stat = unsafe { std::mem::zeroed() };
        stat.st_uid = uid;
        stat
    };
    assert!(!unsafe_transition(&stat(0), &stat(1000)));
    assert!(!unsafe_transition(&stat(1000), &stat(1000)));
    assert!(unsafe_transition(&stat(1000), &stat(0)));
    assert!(unsafe_transition(&stat(1000), &stat(1001)));
}
