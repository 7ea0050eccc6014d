//! In-process `Peers` meshes on loopback TCP and unix sockets. Every wait polls with a
//! generous timeout; no test asserts a latency.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rinha::config::{Addr, Config};
use rinha::inflight::InFlight;
use rinha::ledger::Ledger;
use rinha::payment::{CorrelationId, Payment, Processor, Record};
use rinha::peer::{PeerEvents, Peers};

#[derive(Default)]
struct Events {
    health: Mutex<Vec<(Processor, bool, u32)>>,
    forwarded: Mutex<Vec<Payment>>,
    paid_here: Mutex<Vec<Payment>>,
    handed_over: Mutex<Vec<CorrelationId>>,
    members: Mutex<Vec<u32>>,
    purges: AtomicUsize,
    refuse_forwards: AtomicBool,
}

impl PeerEvents for Events {
    fn on_health(&self, p: Processor, failing: bool, min_response_ms: u32) {
        self.health
            .lock()
            .unwrap()
            .push((p, failing, min_response_ms));
    }
    fn on_forwarded(&self, p: Payment) -> bool {
        if self.refuse_forwards.load(Ordering::SeqCst) {
            return false;
        }
        // Like the intake, ignore an id already taken: a forward racing a new link's
        // registration is sent twice on it (once by `forward`, once by the resend).
        let mut taken = self.forwarded.lock().unwrap();
        if !taken.iter().any(|q| q.id == p.id) {
            taken.push(p);
        }
        true
    }
    fn pay_here(&self, p: Payment) {
        self.paid_here.lock().unwrap().push(p);
    }
    fn handed_over(&self, ids: &[CorrelationId]) {
        self.handed_over.lock().unwrap().extend_from_slice(ids);
    }
    fn on_member(&self, id: u32) {
        self.members.lock().unwrap().push(id);
    }
    fn on_purge(&self) {
        self.purges.fetch_add(1, Ordering::SeqCst);
    }
}

struct Node {
    peers: Arc<Peers>,
    ledger: Arc<Ledger>,
    inflight: Arc<InFlight>,
    ev: Arc<Events>,
    listen: Addr,
}

impl Node {
    fn start(id: u32, listen: Addr, dial: &[&Node]) -> Node {
        Node::with(id, listen, dial, Arc::new(Ledger::new()), "tok")
    }

    fn with(id: u32, listen: Addr, dial: &[&Node], ledger: Arc<Ledger>, token: &str) -> Node {
        let peers = dial.iter().map(|n| n.listen.clone()).collect();
        Node::configured(id, listen, peers, ledger, token)
    }

    /// Dials `peers`, which need not be listening yet.
    fn with_peers(id: u32, listen: Addr, peers: Vec<Addr>) -> Node {
        Node::configured(id, listen, peers, Arc::new(Ledger::new()), "tok")
    }

    fn configured(
        id: u32,
        listen: Addr,
        peers: Vec<Addr>,
        ledger: Arc<Ledger>,
        token: &str,
    ) -> Node {
        let cfg = Config {
            instance_id: id,
            peer_listen: Some(listen),
            peers,
            peer_token: token.into(),
            ..Config::default()
        };
        let (inflight, ev) = (Arc::new(InFlight::new()), Arc::new(Events::default()));
        let peers = Peers::start(&cfg, ledger.clone(), inflight.clone(), ev.clone()).unwrap();
        let listen = peers.listen_addr().unwrap().clone();
        Node {
            peers,
            ledger,
            inflight,
            ev,
            listen,
        }
    }

    /// Records a payment this node paid, as the worker does.
    fn pay_recorded(&self, id: CorrelationId) {
        self.ledger.insert(Record {
            id,
            requested_at_us: 0,
            cents: 2005,
            processor: Processor::Default,
        });
        self.peers.notify_record();
    }

    /// Records a payment this node paid, as the worker does.
    fn pay(&self, n: u32, at_us: i64) -> CorrelationId {
        let id = id_of(self.peers.id(), n);
        self.ledger.insert(Record {
            id,
            requested_at_us: at_us,
            cents: 1990,
            processor: Processor::Default,
        });
        self.peers.notify_record();
        id
    }
}

fn id_of(node: u32, n: u32) -> CorrelationId {
    let mut b = [0u8; 16];
    b[..4].copy_from_slice(&node.to_be_bytes());
    b[4..8].copy_from_slice(&n.to_be_bytes());
    b[8] = 0x5a;
    CorrelationId(b)
}

fn tcp() -> Addr {
    Addr::Tcp("127.0.0.1:0".into())
}

fn unix(dir: &std::path::Path, name: &str) -> Addr {
    Addr::Unix(dir.join(name).to_string_lossy().into_owned())
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("rinha-peer-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(10);
    while !ok() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn linked(nodes: &[&Node]) {
    wait_until("full mesh", || {
        nodes
            .iter()
            .all(|n| n.peers.linked_peers().len() == nodes.len() - 1)
    });
}

#[test]
fn three_on_tcp_replicate_agree_on_owners_and_share_health() {
    let a = Node::start(1, tcp(), &[]);
    let b = Node::start(2, tcp(), &[&a]);
    let c = Node::start(3, tcp(), &[&a, &b]);
    linked(&[&a, &b, &c]);
    for i in 0..300 {
        for n in [&a, &b, &c] {
            n.pay(i, i64::from(i));
        }
    }
    for n in [&a, &b, &c] {
        wait_until("all 900 records", || n.ledger.len() == 900);
    }
    for i in 0..2000 {
        let id = id_of(99, i);
        let owners = [&a, &b, &c].iter().filter(|n| n.peers.owns(&id)).count();
        assert_eq!(owners, 1, "{id:?}");
    }
    assert!(a.peers.is_health_leader());
    assert!(!b.peers.is_health_leader() && !c.peers.is_health_leader());
    a.peers.share_health(Processor::Default, true, 120);
    for n in [&b, &c] {
        wait_until("health", || {
            n.ev.health.lock().unwrap().as_slice() == [(Processor::Default, true, 120)]
        });
    }
}

#[test]
fn two_on_unix_barrier_waits_for_in_flight_payment() {
    let dir = tempdir("barrier");
    let a = Node::start(1, unix(&dir, "a.sock"), &[]);
    let b = Node::start(2, unix(&dir, "b.sock"), &[&a]);
    linked(&[&a, &b]);
    b.inflight.begin(1_000);
    let w = a
        .peers
        .barrier(Some(2_000), Instant::now() + Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(200));
    assert!(!w.is_done(), "barrier must wait for b's in-flight payment");
    // Outside the range: answered at once.
    let w_before = a
        .peers
        .barrier(Some(999), Instant::now() + Duration::from_secs(20));
    wait_until("barrier on an earlier bound", || w_before.is_done());
    let id = b.pay(1, 1_000);
    b.inflight.end(1_000);
    wait_until("barrier", || w.is_done());
    assert!(
        a.ledger.contains(&id),
        "the barrier completed before the record arrived"
    );
}

#[test]
fn barrier_completes_at_deadline_or_when_peer_is_gone() {
    let a = Node::start(1, tcp(), &[]);
    let b = Node::start(2, tcp(), &[&a]);
    linked(&[&a, &b]);
    b.inflight.begin(5);
    let w = a
        .peers
        .barrier(None, Instant::now() + Duration::from_millis(300));
    assert!(!w.is_done());
    wait_until("deadline", || w.is_done());
    let w = a
        .peers
        .barrier(None, Instant::now() + Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(50));
    assert!(!w.is_done());
    drop(b);
    wait_until("barrier without the dropped peer", || w.is_done());
    let w = a
        .peers
        .barrier(None, Instant::now() + Duration::from_secs(60));
    assert!(w.is_done(), "no peer linked: done at once");
}

#[test]
fn restart_and_partition_lose_nothing() {
    let dir = tempdir("heal");
    let a = Node::start(1, unix(&dir, "a.sock"), &[]);
    let b_ledger = Arc::new(Ledger::new());
    let b = Node::with(2, unix(&dir, "b.sock"), &[&a], b_ledger.clone(), "tok");
    linked(&[&a, &b]);
    for i in 0..100 {
        a.pay(i, 0);
        b.pay(i, 0);
    }
    wait_until("200 on a", || a.ledger.len() == 200);
    drop(b);
    wait_until("link down", || a.peers.linked_peers().is_empty());
    for i in 100..3000 {
        a.pay(i, 0);
    }
    // b comes back with its ledger (a new link, same data), records made meanwhile.
    let b_again = Node::with(2, unix(&dir, "b.sock"), &[&a], b_ledger, "tok");
    for i in 100..150 {
        b_again.pay(i, 0);
    }
    wait_until("b caught up", || b_again.ledger.len() == 3150);
    wait_until("a caught up", || a.ledger.len() == 3150);
    // A restarted peer with an empty ledger gets everything a holds again, including
    // what the peer itself had paid before it died (a's log holds replicas too).
    drop(b_again);
    let fresh = Node::start(2, unix(&dir, "b.sock"), &[&a]);
    wait_until("fresh peer caught up", || fresh.ledger.len() == 3150);
}

#[test]
fn purge_propagates_and_replication_resumes() {
    let a = Node::start(1, tcp(), &[]);
    let b = Node::start(2, tcp(), &[&a]);
    let c = Node::start(3, tcp(), &[&a, &b]);
    linked(&[&a, &b, &c]);
    for i in 0..50 {
        a.pay(i, 0);
        b.pay(i, 0);
        c.pay(i, 0);
    }
    for n in [&a, &b, &c] {
        wait_until("150 records", || n.ledger.len() == 150);
    }
    b.ledger.purge();
    b.peers.purge_all();
    for n in [&a, &b, &c] {
        wait_until("empty ledgers", || n.ledger.is_empty());
    }
    wait_until("on_purge", || {
        a.ev.purges.load(Ordering::SeqCst) == 1 && c.ev.purges.load(Ordering::SeqCst) == 1
    });
    for i in 100..110 {
        a.pay(i, 0);
        b.pay(i, 0);
        c.pay(i, 0);
    }
    for n in [&a, &b, &c] {
        wait_until("30 new records", || n.ledger.len() == 30);
    }
}

fn payment(id: CorrelationId) -> Payment {
    Payment {
        id,
        cents: 2005,
        accepted_ms: 0,
        pin: None,
    }
}

/// A forward reaches its owner; one its owner's queue refused comes back, is held (never
/// paid by the forwarder) and is sent again at the link's next tick.
#[test]
fn forward_reaches_owner_and_a_bounced_one_is_sent_again_never_paid_here() {
    let a = Node::start(1, tcp(), &[]);
    let b = Node::start(2, tcp(), &[&a]);
    linked(&[&a, &b]);
    let ids: Vec<CorrelationId> = (0..)
        .map(|i| id_of(7, i))
        .filter(|id| !a.peers.owns(id))
        .take(2)
        .collect();
    assert!(b.peers.owns(&ids[0]));
    a.peers.hand_off(payment(ids[0]));
    wait_until("forwarded", || b.ev.forwarded.lock().unwrap().len() == 1);
    assert_eq!(b.ev.forwarded.lock().unwrap()[0].id, ids[0]);
    b.ev.refuse_forwards.store(true, Ordering::SeqCst);
    a.peers.hand_off(payment(ids[1]));
    wait_until("bounced and held", || a.peers.held().0 == 1);
    b.ev.refuse_forwards.store(false, Ordering::SeqCst);
    wait_until("sent again", || b.ev.forwarded.lock().unwrap().len() == 2);
    assert!(
        a.ev.paid_here.lock().unwrap().is_empty(),
        "only the owner pays"
    );
    b.pay_recorded(ids[0]);
    b.pay_recorded(ids[1]);
    wait_until("both records back", || {
        ids.iter().all(|id| a.ledger.contains(id))
    });
    wait_until("handed over", || {
        a.ev.handed_over.lock().unwrap().len() == 2
    });
    assert_eq!(a.peers.held(), (0, 0));
}

/// An instance that does not know every member yet owns nothing: it holds what it
/// accepts; once the owner links, its own payments are paid here and the others are
/// forwarded. Members are reported (journaled) once.
#[test]
fn payments_held_until_the_members_are_known_go_to_their_owners() {
    let dir = tempdir("held");
    let b_addr = unix(&dir, "b.sock");
    let a = Node::with_peers(1, unix(&dir, "a.sock"), vec![b_addr.clone()]);
    let ids: Vec<CorrelationId> = (0..40).map(|i| id_of(9, i)).collect();
    for id in &ids {
        assert!(!a.peers.owns(id), "owner unknown");
        a.peers.hand_off(payment(*id));
    }
    assert_eq!(a.peers.held().0, ids.len());
    let b = Node::start(2, b_addr, &[&a]);
    linked(&[&a, &b]);
    let mine: Vec<_> = ids.iter().filter(|id| a.peers.owns(id)).collect();
    assert!(!mine.is_empty() && mine.len() < ids.len());
    wait_until("all placed", || {
        a.ev.paid_here.lock().unwrap().len() + b.ev.forwarded.lock().unwrap().len() == ids.len()
    });
    let paid: Vec<_> =
        a.ev.paid_here
            .lock()
            .unwrap()
            .iter()
            .map(|p| p.id)
            .collect();
    assert!(paid.iter().all(|id| a.peers.owns(id)));
    assert!(b
        .ev
        .forwarded
        .lock()
        .unwrap()
        .iter()
        .all(|p| b.peers.owns(&p.id)));
    assert_eq!(*a.ev.members.lock().unwrap(), vec![2]);
    assert_eq!(*b.ev.members.lock().unwrap(), vec![1]);
}

#[test]
fn wrong_token_is_refused() {
    let a = Node::start(1, tcp(), &[]);
    let b = Node::with(2, tcp(), &[&a], Arc::new(Ledger::new()), "other");
    std::thread::sleep(Duration::from_millis(500));
    assert!(a.peers.linked_peers().is_empty());
    assert!(b.peers.linked_peers().is_empty());
    b.pay(1, 0);
    std::thread::sleep(Duration::from_millis(100));
    assert!(a.ledger.is_empty());
}

#[test]
fn no_peers_means_local_no_ops() {
    let cfg = Config::default();
    let ev = Arc::new(Events::default());
    let p = Peers::start(
        &cfg,
        Arc::new(Ledger::new()),
        Arc::new(InFlight::new()),
        ev.clone(),
    )
    .unwrap();
    assert!(p.owns(&id_of(1, 1)));
    assert!(p.is_health_leader());
    assert!(p.barrier(Some(0), Instant::now()).is_done());
    let pay = Payment {
        id: id_of(1, 1),
        cents: 1,
        accepted_ms: 0,
        pin: None,
    };
    p.hand_off(pay);
    assert_eq!(
        ev.paid_here.lock().unwrap().len(),
        1,
        "alone, it owns everything"
    );
    p.notify_record();
    p.purge_all();
    p.share_health(Processor::Fallback, false, 0);
}

/// `cargo test --release --test peer_link -- --ignored --nocapture`: record → visible
/// on the peer, over loopback TCP and unix sockets.
#[test]
#[ignore]
fn replication_latency() {
    let dir = tempdir("latency");
    for (name, la, lb) in [
        ("tcp", tcp(), tcp()),
        ("unix", unix(&dir, "a.sock"), unix(&dir, "b.sock")),
    ] {
        let a = Node::start(1, la, &[]);
        let b = Node::start(2, lb, &[&a]);
        linked(&[&a, &b]);
        let mut us = Vec::new();
        for i in 0..5000 {
            let t = Instant::now();
            let id = a.pay(i, 0);
            while !b.ledger.contains(&id) {
                std::thread::yield_now();
            }
            us.push(t.elapsed().as_secs_f64() * 1e6);
            std::thread::sleep(Duration::from_micros(200));
        }
        us.sort_by(f64::total_cmp);
        let q = |f: f64| us[((us.len() - 1) as f64 * f) as usize];
        println!(
            "replication {name}: n={} p50={:.0}us p99={:.0}us max={:.0}us",
            us.len(),
            q(0.5),
            q(0.99),
            q(1.0)
        );
    }
}
