//! End-to-end: how a `rinha` process ends. A signal drains what was accepted, then the
//! process exits 0; a payment that cannot be paid bounds the drain (exit 1).

mod common;

use std::time::Duration;

use common::*;

fn exit_within(p: &mut Proc, limit: Duration) -> Option<std::process::ExitStatus> {
    let until = std::time::Instant::now() + limit;
    while std::time::Instant::now() < until {
        if let Ok(Some(status)) = p.child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

fn signal(p: &Proc, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &p.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(ok.success());
}

/// SIGTERM drains: payments accepted before it are paid, then the process exits 0 (not
/// the 10 s a container engine waits for a process that ignores SIGTERM).
#[test]
fn sigterm_pays_what_was_accepted_then_exits_0() {
    let (d, f) = processors();
    set_delay(&d, 300);
    let mut b = rinha(&d, &f, &["--workers", "8"]);
    let from = now_ms() - 1_000;
    let ids: Vec<String> = (0..20).map(|i| uuid(9_000 + i)).collect();
    for id in &ids {
        assert_eq!(pay(b.port, id, "10.00"), 202);
    }
    // 20 payments on 8 workers at 300 ms each: some still queued when the signal lands.
    signal(&b, "-TERM");
    let status = exit_within(&mut b, Duration::from_secs(20)).expect("no exit 20 s after SIGTERM");
    assert!(status.success(), "{status:?}");
    let stored = admin(
        &d,
        "GET",
        &format!(
            "/admin/payments-summary?from={}&to={}",
            iso(from),
            iso(now_ms() + 1_000)
        ),
        "",
    );
    assert_eq!(
        totals(&stored.body, &[]).0,
        ids.len() as u64,
        "{}",
        stored.body
    );
}

/// A payment that cannot be paid (both processors failing) bounds the drain: exit 1
/// after the grace, which the log names.
#[test]
fn sigterm_with_a_payment_stuck_exits_1_after_the_grace() {
    let (d, f) = processors();
    set_failure(&d, true);
    set_failure(&f, true);
    let mut b = rinha(&d, &f, &["--workers", "2"]);
    assert_eq!(pay(b.port, &uuid(9_100), "10.00"), 202);
    signal(&b, "-INT");
    let status = exit_within(&mut b, Duration::from_secs(30)).expect("no exit 30 s after SIGINT");
    assert_eq!(status.code(), Some(1), "{status:?}");
}
