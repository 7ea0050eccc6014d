//! How the instance asks the kernel to schedule its threads.
//!
//! Workers: a worker wakes when a processor answers or a payment arrives, and what it
//! does then (record, journal, take the next payment) can wait a tick; the event loop
//! answering the load balancer, and the load balancer itself, cannot. A thread in
//! `SCHED_BATCH` never preempts the thread running on its CPU when it wakes (the kernel's
//! wake-up preemption skips every policy but `SCHED_NORMAL`): it runs when that thread
//! blocks or at the next tick. Same weight, so the same share of CPU; no special right
//! needed (any thread may enter the batch class), so it works in an unprivileged
//! container. Measured in bench/RESULTS.md ("Cost"): about 10 % fewer involuntary
//! context switches of the instances and 5 % less CPU in the preview.
//!
//! The event loop: on CPUs shared with k6 and the processors, a request that wakes the
//! loop otherwise waits until the running thread's slice ends (the fair scheduler's
//! default, ~1.4 ms here). A fair thread may ask for a shorter slice (`sched_runtime` of
//! `sched_setattr`, Linux 6.12+): waking, it gets an earlier deadline and preempts at
//! once, and its share of CPU (its weight) is unchanged. No special right needed either;
//! older kernels ignore the field. Measured in bench/RESULTS.md ("Fourth pass").
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

/// Asks the fair scheduler for a `slice`-long time slice for the calling thread (Linux
/// 6.12+ honours it, clamped to 0.1–100 ms; older kernels accept and ignore it).
pub fn slice_this_thread(slice: std::time::Duration) -> io::Result<()> {
    let attr = fair_attr(u64::try_from(slice.as_nanos()).unwrap_or(u64::MAX));
    // SAFETY: pid 0 names the calling thread; `attr` is initialised, its `size` field
    // is its size, and it lives across the call; the kernel only reads it.
    let rc = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr, 0u32) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A `sched_attr` for a fair (`SCHED_OTHER`) thread with a slice of `runtime_ns`.
fn fair_attr(runtime_ns: u64) -> libc::sched_attr {
    libc::sched_attr {
        size: std::mem::size_of::<libc::sched_attr>() as u32,
        sched_policy: libc::SCHED_OTHER as u32,
        sched_flags: 0,
        sched_nice: 0,
        sched_priority: 0,
        sched_runtime: runtime_ns,
        sched_deadline: 0,
        sched_period: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> i32 {
        // SAFETY: no pointers; pid 0 is the calling thread.
        unsafe { libc::sched_getscheduler(0) }
    }

    /// The calling thread's custom slice in ns as the kernel reports it (0: none).
    fn slice_ns() -> u64 {
        let mut attr = fair_attr(0);
        let size = attr.size;
        // SAFETY: `attr` is a writable sched_attr of `size` bytes for the call.
        let rc = unsafe { libc::syscall(libc::SYS_sched_getattr, 0, &mut attr, size, 0u32) };
        assert_eq!(rc, 0, "{}", io::Error::last_os_error());
        attr.sched_runtime
    }

    /// Custom slices of fair tasks came with Linux 6.12.
    fn kernel_has_slices() -> bool {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let mut v = release
            .split(|c: char| !c.is_ascii_digit())
            .map(|n| n.parse::<u32>().unwrap_or(0));
        (v.next().unwrap_or(0), v.next().unwrap_or(0)) >= (6, 12)
    }

    #[test]
    fn only_the_calling_thread_gets_the_slice() {
        let set = std::thread::spawn(|| {
            slice_this_thread(std::time::Duration::from_micros(250)).map(|()| slice_ns())
        })
        .join();
        match set {
            Ok(Ok(ns)) if kernel_has_slices() => assert_eq!(ns, 250_000),
            Ok(Ok(_)) => {}
            other => panic!("{other:?}"),
        }
        assert_ne!(slice_ns(), 250_000, "the test thread kept its slice");
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
