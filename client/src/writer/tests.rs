use super::*;

#[test]
fn a_handle_can_move_to_another_thread() {
    fn assert_send<T: Send>() {}
    assert_send::<Scoreboard>();
}

#[test]
fn ids_that_would_escape_or_hide_are_refused() {
    for bad in ["", "a/b", "x\0y", "w.tmp"] {
        assert!(validate_id(bad).is_err(), "{bad:?}");
    }
    // `status_..` is an ordinary name inside the directory.
    for good in ["w-1", "..", "worker 7"] {
        assert!(validate_id(good).is_ok(), "{good:?}");
    }
    assert!(validate_id(&"x".repeat(201)).is_err());
}
