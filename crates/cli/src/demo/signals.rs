//! Ctrl-C handling for the demo: SIGINT and SIGTERM set a flag that the demo's polling loops
//! check, so the demo stops its nodes and exits instead of dying with children left behind.

use std::sync::atomic::{AtomicBool, Ordering};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn note_signal(_signal: libc::c_int) {
    // Only an atomic store: the one thing a signal handler may safely do here.
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Routes SIGINT and SIGTERM to the flag instead of terminating the process.
pub fn install() {
    let handler = note_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: `note_signal` is async-signal-safe (one atomic store) and lives for the whole
    // program; signal(2) only registers it.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

/// Whether SIGINT or SIGTERM arrived since [`install`].
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}
