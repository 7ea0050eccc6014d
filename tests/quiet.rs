//! An idle instance sleeps: its event loop wakes for an event (a connection, a request,
//! a connection's timeout falling due), never on a tick, and a health poller that does
//! not lead waits for the leadership to change instead of asking every period. Counted
//! with the kernel's voluntary context switches of the thread: each wake is one.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// Times the event loop of `pid` (its main thread) went to sleep and was woken, so far.
fn loop_wakeups(pid: u32) -> u64 {
    wakeups_of(std::path::Path::new(&format!("/proc/{pid}/task/{pid}")))
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

/// Asks `f` every 50 ms until it gives a value; fails with `what` after 20 s.
fn within_20s<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "{what}");
        thread::sleep(Duration::from_millis(50));
    }
}

/// The `/proc/<pid>/task/<tid>` directory of `pid`'s thread named `name`. A thread sets
/// its own name once it first runs, which on a loaded machine can be a while after it
/// was spawned: waits up to 20 s for it.
fn thread_dir(pid: u32, name: &str) -> std::path::PathBuf {
    within_20s(&format!("no thread named {name} in 20 s"), || {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .expect("tasks")
            .filter_map(Result::ok)
            .map(|t| t.path())
            .find(|dir| std::fs::read_to_string(dir.join("comm")).is_ok_and(|c| c.trim() == name))
    })
}

/// Voluntary switches so far of the thread in `dir`.
fn wakeups_of(dir: &std::path::Path) -> u64 {
    std::fs::read_to_string(dir.join("status"))
        .expect("status")
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("voluntary_ctxt_switches")
}

/// Two linked instances: instance 2 does not lead the health polling, and its health
/// thread waits (on a futex) until that can change, a link closing, instead of waking
/// every poll period to ask. When the leader dies, it takes over at once.
#[test]
fn a_follower_health_poller_sleeps_until_it_leads() {
    let (d, f) = processors();
    let ports = [free_port(), free_port()];
    let node = |i: usize| {
        let mut flags = mesh_flags(i, &ports);
        flags.extend(["--workers", "2", "--health-interval-ms", "5000"].map(String::from));
        let refs: Vec<&str> = flags.iter().map(String::as_str).collect();
        rinha_logged(d.port, f.port, &refs)
    };
    let (leader, _) = node(1);
    let (follower, log) = node(2);
    for n in [&leader, &follower] {
        wait_linked(n, 1, Duration::from_secs(20));
    }
    let port = follower.port;
    let polls = || family_sum(&metrics_text(port), "rinha_health_polls_total");
    // Alone at start, instance 2 may have polled (the emulator queues rate-limited
    // calls up to 5 s each) and then slept one period (5 s). A poller that sleeps a
    // period between looks never waits on a futex.
    let health = thread_dir(follower.child.id(), "health");
    within_20s(
        "the follower's health thread never waited for the leadership",
        || {
            std::fs::read_to_string(health.join("wchan"))
                .is_ok_and(|w| w.contains("futex"))
                .then_some(())
        },
    );
    // The pair may still be settling: both ends dial, and the link instance 2 dialed is
    // dropped by instance 1 (which keeps the one it dialed) and may close at instance 2
    // before instance 1's link is registered there. For that moment instance 2 is alone,
    // leads and may poll once, then sleeps one period. So up to 3 windows, one must be
    // quiet: no wake, no poll. A poller asking every 5 s wakes and polls in each.
    let mut windows = Vec::new();
    let polled = loop {
        let asleep = wakeups_of(&health);
        let polled = polls();
        thread::sleep(Duration::from_millis(6_000));
        let woke = wakeups_of(&health) - asleep;
        let new_polls = polls() - polled;
        windows.push((woke, new_polls));
        if woke == 0 && new_polls == 0.0 {
            break polled;
        }
        assert!(
            windows.len() < 3,
            "the follower's health thread woke or polled in every 6 s window \
             (wakes, polls): {windows:?}; its log: {:?}",
            log.lock().map(|l| l.clone()).unwrap_or_default()
        );
    };

    drop(leader);
    within_20s("instance 2 never took the polling over", || {
        (polls() != polled).then_some(())
    });
}
