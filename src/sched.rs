//! The scheduling class of the worker threads.
//!
//! A worker wakes when a processor answers or a payment arrives, and what it does then
//! (record, journal, take the next payment) can wait a tick; the event loop answering
//! the load balancer, and the load balancer itself, cannot. A thread in `SCHED_BATCH`
//! never preempts the thread running on its CPU when it wakes (the kernel's wake-up
//! preemption skips every policy but `SCHED_NORMAL`): it runs when that thread blocks
//! or at the next tick. Same weight, so the same share of CPU; no special right needed
//! (any thread may enter the batch class), so it works in an unprivileged container.
//! Measured in bench/RESULTS.md ("Cost"): about 10 % fewer involuntary context switches
//! of the instances and 5 % less CPU in the preview.
#![allow(unsafe_code)]

use std::io;

/// Moves the calling thread to `SCHED_BATCH` (its nice value unchanged).
pub fn batch_this_thread() -> io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 names the calling thread; `param` is an initialised sched_param that
    // lives across the call, and the kernel only reads it.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> i32 {
        // SAFETY: no pointers; pid 0 is the calling thread.
        unsafe { libc::sched_getscheduler(0) }
    }

    #[test]
    fn only_the_calling_thread_moves_to_batch() {
        let moved = std::thread::spawn(|| batch_this_thread().map(|()| policy())).join();
        assert!(
            matches!(moved, Ok(Ok(p)) if p == libc::SCHED_BATCH),
            "{moved:?}"
        );
        assert_eq!(policy(), libc::SCHED_OTHER);
    }
}
