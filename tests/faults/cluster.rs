//! Duplicates and the cluster: 422 duplicates, the health leader, the peer link cut
//! and healed, an instance killed mid-stream (with its journal).

use super::common::proxy::*;
use super::*;

fn mesh(d: u16, f: u16, n: usize, extra: &[&str], journals: &[String]) -> (Vec<Proc>, Vec<u16>) {
    let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
    let nodes: Vec<Proc> = (1..=n)
        .map(|i| mesh_node(d, f, i, &ports, extra, journals))
        .collect();
    for node in &nodes {
        wait_linked(node, n - 1, LONG);
    }
    (nodes, ports)
}

fn mesh_node(d: u16, f: u16, i: usize, ports: &[u16], extra: &[&str], journals: &[String]) -> Proc {
    let mut fl = mesh_flags(i, ports);
    fl.extend(extra.iter().map(|s| s.to_string()));
    if let Some(j) = journals.get(i - 1) {
        fl.extend(["--journal".to_string(), j.clone()]);
    }
    start(d, f, &fl)
}

/// 422s: ids already stored on default (another amount, dated now), ids posted twice
/// to one instance, and ids posted at once to both instances of a mesh. Each is paid
/// once, and the backend records what the processor stored.
#[test]
fn duplicates_422() {
    let (d, f) = processors();
    let (nodes, _) = mesh(d.port, f.port, 2, &["--workers", "8"], &[]);
    let from = now_ms();
    let mut ids: Vec<String> = Vec::new();
    for i in 0..20 {
        let id = uuid(8_000_000 + i);
        let body = format!(
            r#"{{"correlationId":"{id}","amount":10.00,"requestedAt":"{}"}}"#,
            iso(now_ms())
        );
        assert_eq!(request(d.port, "POST", "/payments", &[], &body).status, 200);
        assert_eq!(pay(nodes[(i % 2) as usize].port, &id, "19.90"), 202);
        ids.push(id);
    }
    let mut c = Client::new(nodes[0].port);
    for i in 0..40 {
        let id = uuid(8_100_000 + i);
        assert_eq!(c.pay(&id, "19.90"), 202);
        assert_eq!(
            c.pay(&id, "19.90"),
            202,
            "a repeated POST is accepted (idempotent)"
        );
        ids.push(id);
    }
    let both: Vec<String> = (0..60).map(|i| uuid(8_200_000 + i)).collect();
    let posters: Vec<_> = nodes
        .iter()
        .map(|n| {
            let (port, both) = (n.port, both.clone());
            thread::spawn(move || {
                let mut c = Client::new(port);
                both.iter().all(|id| c.pay(id, "19.90") == 202)
            })
        })
        .collect();
    for p in posters {
        assert!(p.join().expect("poster"), "every POST answered 202");
    }
    ids.extend(both);
    let mut posted = Posted {
        accepted: ids,
        ..Posted::default()
    };
    let nodes: Vec<&Proc> = nodes.iter().collect();
    let row = check("422 duplicates", &nodes, &d, &f, from - 1000, &mut posted);
    assert_eq!(row.recorded, 120);
}

/// Three instances, each processor behind a counting proxy, for 12 s after they link:
/// only the leader polls `GET /payments/service-health`, so the processors' rate limit
/// (1 per 5 s, 2 queued) never answers 429.
#[test]
fn health_polled_by_the_leader_only() {
    let (d, f) = processors();
    let (pd, pf) = (Proxy::new(d.port), Proxy::new(f.port));
    let (nodes, _) = mesh(pd.port, pf.port, 3, &["--workers", "4"], &[]);
    let base = [&pd, &pf].map(|p| p.state.health_requests.load(SeqCst));
    let from = now_ms();
    let load = post_load(
        nodes.iter().map(|n| n.port).collect(),
        1,
        60,
        Duration::from_millis(200),
        9,
        None,
    );
    thread::sleep(Duration::from_secs(12));
    let polls = [&pd, &pf].map(|p| p.state.health_requests.load(SeqCst));
    let mut posted = load.join().expect("load");
    let nodes: Vec<&Proc> = nodes.iter().collect();
    check(
        "health polling, 3 instances",
        &nodes,
        &d,
        &f,
        from,
        &mut posted,
    );
    let rejected = [&pd, &pf].map(|p| p.state.status_count(429));
    eprintln!(
        "health_polled_by_the_leader_only: polls in 12 s after linking default {} fallback {} \
         (since start {} / {}), 429s {rejected:?}",
        polls[0] - base[0],
        polls[1] - base[1],
        polls[0],
        polls[1]
    );
    assert_eq!(rejected, [0, 0], "the health endpoint answered 429");
    for p in 0..2 {
        let n = polls[p] - base[p];
        assert!(
            (1..=4).contains(&n),
            "one poller every ~5 s, not three: {n}"
        );
    }
}

/// Two instances linked only through a proxy: while payments flow, every live peer
/// connection is cut every 400 ms and new ones are refused for 1.2 s. Afterwards both
/// instances agree with the processors; nothing forwarded over a cut link is lost.
#[test]
fn peer_link_cut_and_healed() {
    let (d, f) = processors();
    let (p1, p2) = (free_port(), free_port());
    let link = Proxy::new(p1);
    let common = ["--workers", "8", "--peer-token", "test-secret"];
    let mut f1 = flags(&common);
    f1.extend(flags(&["--instance-id", "1", "--peer-listen"]));
    f1.push(format!("127.0.0.1:{p1}"));
    let mut f2 = flags(&common);
    f2.extend(flags(&["--instance-id", "2", "--peer-listen"]));
    f2.push(format!("127.0.0.1:{p2}"));
    f2.extend(["--peer".to_string(), format!("127.0.0.1:{}", link.port)]);
    let nodes = [start(d.port, f.port, &f1), start(d.port, f.port, &f2)];
    for n in &nodes {
        wait_linked(n, 1, LONG);
    }
    let from = now_ms();
    let ports = nodes.iter().map(|n| n.port).collect();
    let load = post_load(ports, 2, 200, Duration::from_millis(20), 10, None);
    for k in 0..8 {
        thread::sleep(Duration::from_millis(400));
        if k == 3 {
            link.state.refuse.store(true, SeqCst);
        }
        link.state.cut_all();
        if k == 6 {
            link.state.refuse.store(false, SeqCst);
        }
    }
    let mut posted = load.join().expect("load");
    for n in &nodes {
        wait_linked(n, 1, LONG);
    }
    let nodes: Vec<&Proc> = nodes.iter().collect();
    let row = check(
        "peer link cut and healed",
        &nodes,
        &d,
        &f,
        from,
        &mut posted,
    );
    eprintln!(
        "peer_link_cut_and_healed: {} peer connections through the proxy",
        link.state.connections.load(SeqCst)
    );
    assert_eq!(row.requested, 400);
}

fn journal_paths(tag: &str, n: usize) -> (std::path::PathBuf, Vec<String>) {
    let dir = std::env::temp_dir().join(format!("rinha-faults-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let paths = (1..=n)
        .map(|i| {
            dir.join(format!("api{i}.journal"))
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    (dir, paths)
}

/// `kill -9` of instance 2 of a journaled mesh while payments flow round robin (with a
/// delay, so some are in flight): the poster moves to instance 1 while 2 is down (which
/// holds instance 2's payments for it), instance 2 restarts with the same flags and journal. Every 202 is paid exactly once
/// and both summaries equal the processors'. (A forward written to instance 2 and never
/// read is sent again when it links back: this lost a payment in about 1 run in 2
/// before forwards were kept until recorded.)
#[test]
fn instance_killed_mid_stream() {
    kill_mid_stream();
}

fn kill_mid_stream() {
    let (d, f) = processors();
    let (dir, journals) = journal_paths("kill", 2);
    let extra = ["--workers", "8"];
    let (mut nodes, ports) = mesh(d.port, f.port, 2, &extra, &journals);
    set_delay(&d, 100);
    let from = now_ms();
    let down = Arc::new(AtomicBool::new(false));
    let ports1 = nodes.iter().map(|n| n.port).collect();
    let tag = 11;
    let load = post_load(
        ports1,
        2,
        150,
        Duration::from_millis(20),
        tag,
        Some(down.clone()),
    );
    thread::sleep(Duration::from_millis(1000));
    nodes[1].child.kill().expect("kill -9");
    let _ = nodes[1].child.wait();
    down.store(true, SeqCst);
    thread::sleep(Duration::from_millis(800));
    nodes[1] = mesh_node(d.port, f.port, 2, &ports, &extra, &journals);
    wait_linked(&nodes[1], 1, LONG);
    // The restarted instance listens on a new HTTP port: a second poster uses both.
    let ports2 = nodes.iter().map(|n| n.port).collect();
    let again = post_load(ports2, 2, 50, Duration::from_millis(20), tag + 1, None);
    let mut posted = load
        .join()
        .expect("load")
        .merge(again.join().expect("load"));
    let nodes: Vec<&Proc> = nodes.iter().collect();
    let fault = "instance kill -9 (journal)";
    let row = check(fault, &nodes, &d, &f, from, &mut posted);
    assert_eq!(row.requested, 400);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `n` correlationIds (from `base`) that instance `owner` (1-based) of a 2-mesh owns.
fn owned_by(owner: usize, n: usize, base: u64) -> Vec<String> {
    (base..)
        .map(uuid)
        .filter(|id| {
            let cid = rinha::payment::CorrelationId::parse(id.as_bytes()).expect("uuid");
            cid.owner_hash() % 2 == owner as u64 - 1
        })
        .take(n)
        .collect()
}

/// Posts each of `ids` (19.90) to `port` over one keep-alive connection: 202 each.
fn post_each(port: u16, ids: &[String], what: &str) {
    let mut c = Client::new(port);
    for id in ids {
        assert_eq!(c.pay(id, "19.90"), 202, "{what}");
    }
}

/// The shared check over `ids`, every one answered 202 (and nothing else posted).
fn check_accepted(fault: &str, nodes: &[Proc], d: &Proc, f: &Proc, from: i64, ids: Vec<String>) {
    let n = ids.len();
    let mut posted = Posted {
        accepted: ids,
        ..Posted::default()
    };
    let nodes: Vec<&Proc> = nodes.iter().collect();
    let row = check(fault, &nodes, d, f, from, &mut posted);
    assert_eq!(row.requested, n);
}

/// Regression (issue 17): 50 payments owned by instance 2, posted to instance 1
/// (forwarded), with default failing slowly; instance 2 `kill -9`'d with them open in
/// its journal, restarted. Its journal's copies (pinned to default) and instance 1's
/// forwards sent again on the new link were both queued: each was paid on fallback and
/// on default, 50 of 50. Now the journal is replayed before the link starts and the
/// gate refuses the second copy.
#[test]
fn forwards_sent_again_to_an_owner_restarted_from_its_journal_are_paid_once() {
    let (d, f) = processors();
    let (dir, journals) = journal_paths("resent", 2);
    // The default 256 workers: starting them let the new link win the race with the
    // journal's replay (8 workers start too fast to show it).
    let extra = ["--max-defer-ms", "2000"];
    let (mut nodes, ports) = mesh(d.port, f.port, 2, &extra, &journals);
    set_failure(&d, true);
    set_delay(&d, 2000);
    let from = now_ms();
    let ids = owned_by(2, 50, 17_000_000);
    post_each(nodes[0].port, &ids, "forwarded to instance 2");
    thread::sleep(Duration::from_millis(1000));
    nodes[1].child.kill().expect("kill -9");
    let _ = nodes[1].child.wait();
    thread::sleep(Duration::from_millis(500));
    nodes[1] = mesh_node(d.port, f.port, 2, &ports, &extra, &journals);
    wait_linked(&nodes[1], 1, LONG);
    // Past --max-defer-ms: a copy that may use fallback goes there now.
    thread::sleep(Duration::from_millis(4000));
    set_failure(&d, false);
    set_delay(&d, 0);
    let fault = "forwards sent again to an owner restarted from its journal";
    check_accepted(fault, &nodes, &d, &f, from, ids);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Regression (issue 17, behind nginx): a client posts an id to its owner, which
/// journals it and is `kill -9`'d before paying it; the client's retry reaches the other
/// instance (nginx's next upstream), which used to pay it as the owner of everything
/// while alone, and the restarted owner paid its journal's copy on the other processor.
/// Now the survivor holds the retry for the owner: one payment.
#[test]
fn a_retry_to_the_survivor_while_the_owner_is_down_is_paid_once() {
    let (d, f) = processors();
    let (dir, journals) = journal_paths("retry", 2);
    let extra = ["--workers", "8", "--max-defer-ms", "1000"];
    let (mut nodes, ports) = mesh(d.port, f.port, 2, &extra, &journals);
    set_failure(&d, true);
    let from = now_ms();
    let ids = owned_by(2, 30, 17_500_000);
    post_each(nodes[1].port, &ids, "posted to its owner");
    nodes[1].child.kill().expect("kill -9");
    let _ = nodes[1].child.wait();
    post_each(nodes[0].port, &ids, "the retry is accepted");
    let held = || series(&metrics_text(nodes[0].port), "rinha_payments_held_now");
    let end = Instant::now() + LONG;
    while held() != Some(ids.len() as f64) {
        assert!(Instant::now() < end, "not held for the owner: {:?}", held());
        thread::sleep(Duration::from_millis(20));
    }
    thread::sleep(Duration::from_millis(2000));
    set_failure(&d, false);
    nodes[1] = mesh_node(d.port, f.port, 2, &ports, &extra, &journals);
    wait_linked(&nodes[1], 1, LONG);
    let fault = "a retry to the survivor while the owner is down";
    check_accepted(fault, &nodes, &d, &f, from, ids);
    let _ = std::fs::remove_dir_all(&dir);
}
