//! SIGTERM and SIGINT, taken synchronously by one thread.
//!
//! As a container's PID 1 rinha gets no default action for SIGTERM: without a handler
//! `docker compose stop` waits out its timeout and then kills it. Instead of an
//! asynchronous handler (which may only touch atomics), `block` masks both signals
//! before any thread exists, so every thread inherits the mask, and `wait` takes them
//! with `sigwait` in a thread that can then do ordinary work (see `main`'s drain).
#![allow(unsafe_code)]

use std::io;
use std::mem::MaybeUninit;

/// The stop signals, blocked in the calling thread and every thread it spawns later.
pub struct StopSignals(libc::sigset_t);

impl StopSignals {
    /// Blocks SIGTERM and SIGINT. Call before spawning any thread.
    pub fn block() -> io::Result<StopSignals> {
        let mut set = MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: sigemptyset initialises the set it is given; sigaddset and
        // pthread_sigmask only read and write that initialised set; a null old-mask
        // pointer is allowed.
        unsafe {
            if libc::sigemptyset(set.as_mut_ptr()) != 0 {
                return Err(io::Error::last_os_error());
            }
            let mut set = set.assume_init();
            for sig in [libc::SIGTERM, libc::SIGINT] {
                if libc::sigaddset(&mut set, sig) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            if rc != 0 {
                return Err(io::Error::from_raw_os_error(rc));
            }
            Ok(StopSignals(set))
        }
    }

    /// Waits for one of the stop signals and returns its name.
    pub fn wait(&self) -> io::Result<&'static str> {
        let mut sig: libc::c_int = 0;
        // SAFETY: both pointers are valid for the call: the set is initialised (`block`)
        // and `sig` is a live local the kernel writes.
        let rc = unsafe { libc::sigwait(&self.0, &mut sig) };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        Ok(if sig == libc::SIGINT {
            "SIGINT"
        } else {
            "SIGTERM"
        })
    }
}
