//! An idle instance sleeps: its event loop wakes for an event (a connection, a request,
//! a connection's timeout falling due), never on a tick. Counted with the kernel's
//! voluntary context switches of the loop's thread, the process's main thread: each
//! wake from `epoll_wait` is one.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// Times the event loop of `pid` went to sleep and was woken, so far.
fn loop_wakeups(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/status"))
        .expect("read the main thread's status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("voluntary_ctxt_switches in /proc status")
}

/// Wakes of the loop during `window`, nothing sent to it meanwhile.
fn wakeups_over(pid: u32, window: Duration) -> u64 {
    let before = loop_wakeups(pid);
    thread::sleep(window);
    loop_wakeups(pid) - before
}

#[test]
fn an_idle_event_loop_sleeps_until_a_connection_can_expire() {
    let idle_timeout = Duration::from_millis(2_000);
    let (d, f) = processors();
    let b = rinha(&d, &f, &["--workers", "2", "--idle-timeout-ms", "2000"]);
    let pid = b.child.id();
    assert_eq!(request(b.port, "GET", "/health", &[], "").status, 200);
    // That connection closed, and its idle deadline (the one sweep still due) has
    // passed: nothing can expire, so nothing may wake the loop. A tick of one per
    // second would show 3.
    thread::sleep(idle_timeout + Duration::from_millis(500));
    let idle = wakeups_over(pid, Duration::from_secs(3));
    assert!(idle <= 1, "an idle loop woke {idle} times in 3 s");

    // One keep-alive connection, idle: the loop sleeps until its idle timeout, then
    // closes it (the client reads end-of-file).
    let mut s = TcpStream::connect(("127.0.0.1", b.port)).expect("connect");
    let opened = Instant::now();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("write");
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).expect("response");
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &buf[..n]);
    let before_deadline = wakeups_over(pid, idle_timeout - Duration::from_millis(700));
    assert!(
        before_deadline <= 1,
        "the loop woke {before_deadline} times before any deadline"
    );
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    assert_eq!(
        s.read(&mut buf).ok(),
        Some(0),
        "the idle connection was not closed"
    );
    assert!(
        opened.elapsed() >= idle_timeout,
        "closed after {:?}, before its idle timeout",
        opened.elapsed()
    );
}
