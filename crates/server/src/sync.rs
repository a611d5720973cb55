//! The one lock helper.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `m`, using the data on even if a panic poisoned it: every critical
/// section in consultd is a push, a pop, a flag or a counter, so the data
/// behind a poisoned lock is still consistent.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
