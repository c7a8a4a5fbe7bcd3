//! The one way the agent takes a std mutex.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `mutex`, recovering it if a thread panicked while holding it.
///
/// Every mutex of the agent guards data that is whole between statements (a pool, a
/// table of main processes, a list of objects), so what a panicking thread left is
/// still usable; refusing it would turn one panic — in the bus thread, say — into a
/// second one in the loop, and the agent would stop watching every service.
pub fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poisoned_mutex_is_still_taken() {
        let mutex = std::sync::Arc::new(Mutex::new(1));
        let held = mutex.clone();
        let panicked = std::thread::spawn(move || {
            let _guard = held.lock().unwrap();
            panic!("while holding it");
        })
        .join();
        assert!(panicked.is_err());
        assert!(mutex.is_poisoned());
        *lock(&mutex) += 1;
        assert_eq!(*lock(&mutex), 2);
    }
}
