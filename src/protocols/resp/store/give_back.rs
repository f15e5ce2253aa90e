//! Giving memory the store freed back to the system: glibc keeps freed blocks for reuse,
//! so after large deletes a background thread asks it (`malloc_trim`) to return its free
//! pages. Nothing here knows about keys.

#[cfg(all(target_os = "linux", target_env = "gnu"))]
use std::sync::atomic::{AtomicBool, Ordering};

/// Ask glibc, from a thread of its own, to return free memory to the system; false if no
/// thread could be started. Process-wide, as the allocator is: a request made while one is
/// under way is carried out by the same thread once it is done.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub(super) fn give_back() -> bool {
    /// A request not yet carried out.
    static PENDING: AtomicBool = AtomicBool::new(false);
    /// A thread is carrying out requests.
    static UNDER_WAY: AtomicBool = AtomicBool::new(false);
    PENDING.store(true, Ordering::SeqCst);
    if UNDER_WAY.swap(true, Ordering::SeqCst) {
        return true;
    }
    let started = std::thread::Builder::new()
        .name("store-give-back".into())
        .spawn(|| {
            loop {
                while PENDING.swap(false, Ordering::SeqCst) {
                    crate::io::sys::malloc_trim();
                }
                UNDER_WAY.store(false, Ordering::SeqCst);
                // A request that came after the last look found this thread under way.
                if !PENDING.load(Ordering::SeqCst) || UNDER_WAY.swap(true, Ordering::SeqCst) {
                    break;
                }
            }
        });
    if started.is_err() {
        UNDER_WAY.store(false, Ordering::SeqCst);
    }
    started.is_ok()
}

/// Other allocators return memory by their own rules.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(super) fn give_back() -> bool {
    true
}
