//! Wires one rinha instance together: intake → workers → ledger, the health poller,
//! the peer link, and the HTTP server on the calling thread.

use std::io;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use crate::cluster::Events;
use crate::config::Config;
use crate::health::Poller;
use crate::inflight::InFlight;
use crate::intake::Intake;
use crate::journal::{Journal, Replay};
use crate::ledger::Ledger;
use crate::metrics::METRICS;
use crate::pace::Pacer;
use crate::payment::Payment;
use crate::peer::Peers;
use crate::processor::{tls_config, Client, Endpoint};
use crate::router::Router;
use crate::server::{App, Cluster, Server};
use crate::worker::{Shared, Worker};

/// Worker threads block in I/O and keep little on the stack.
const WORKER_STACK: usize = 256 * 1024;

/// Replays the journal's open payments: paid here if this instance owns them or
/// attempted them (the processor of that attempt may hold them: only this instance
/// knows, so only it may finish them), else held for their owner again.
fn resume(intake: &Intake, peers: &Peers, open: Vec<Payment>) {
    for p in open {
        if p.pin.is_some() || peers.owns(&p.id) {
            intake.resume(p);
        } else {
            intake.resume_for_owner(p, |p| peers.hand_off(p));
        }
    }
}

/// Builds every part and returns the bound (not yet running) server.
pub fn build(cfg: &Config) -> io::Result<Server> {
    let endpoints = [
        Endpoint::parse(&cfg.default_url),
        Endpoint::parse(&cfg.fallback_url),
    ];
    let [Ok(default), Ok(fallback)] = endpoints else {
        let msg = endpoints
            .iter()
            .filter_map(|e| e.as_ref().err())
            .cloned()
            .collect::<Vec<_>>()
            .join("; ");
        return Err(io::Error::new(io::ErrorKind::InvalidInput, msg));
    };
    let (default, fallback) = (Arc::new(default), Arc::new(fallback));
    let tls = if default.tls || fallback.tls {
        Some(
            tls_config(cfg.tls_ca.as_deref())
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?,
        )
    } else {
        None
    };
    let client = |ep: &Arc<Endpoint>| {
        Client::new(
            ep.clone(),
            tls.clone(),
            cfg.client_timeout,
            cfg.connect_timeout,
        )
    };

    let ledger = Arc::new(Ledger::new());
    let (journal, replay) = match &cfg.journal {
        Some(path) => {
            let (j, r) = Journal::open(path)
                .map_err(|e| io::Error::new(e.kind(), format!("journal {path}: {e}")))?;
            (Some(Arc::new(j)), r)
        }
        None => (None, Replay::default()),
    };
    for r in &replay.recorded {
        ledger.insert(*r);
    }
    let inflight = Arc::new(InFlight::new());
    let router = Arc::new(Router::new(cfg.router.clone()));
    let pacer = Arc::new(Pacer::new(cfg.pace_multiple, cfg.pace_floor));
    let intake = Intake::new(cfg.queue, journal.clone(), pacer.clone(), ledger.clone());
    let intake = Arc::new(intake);
    if let Some(j) = &journal {
        j.member(cfg.instance_id);
    }
    let events = Arc::new(Events {
        router: router.clone(),
        intake: intake.clone(),
        journal: journal.clone(),
    });
    let peers = Peers::new(
        cfg,
        ledger.clone(),
        inflight.clone(),
        events,
        &replay.members,
    );
    let busy = Arc::new(AtomicUsize::new(0));

    let shared = Arc::new(Shared {
        router: router.clone(),
        ledger: ledger.clone(),
        inflight: inflight.clone(),
        journal,
        on_record: Box::new({
            let peers = peers.clone();
            move || peers.notify_record()
        }),
        busy: busy.clone(),
        pacer,
    });
    for i in 0..cfg.workers {
        let w = Worker::new(shared.clone(), client(&default), client(&fallback));
        let outlet = intake.outlet();
        std::thread::Builder::new()
            .name(format!("worker-{i}"))
            .stack_size(WORKER_STACK)
            .spawn(move || w.run(outlet))?;
    }
    METRICS
        .workers
        .set(i64::try_from(cfg.workers).unwrap_or(i64::MAX));
    METRICS
        .journal_restored_records
        .set(replay.recorded.len() as i64);
    METRICS
        .journal_resumed_payments
        .set(replay.open.len() as i64);
    if !replay.recorded.is_empty() || !replay.open.is_empty() {
        eprintln!(
            "rinha: journal: {} recorded payments restored, {} open payments resumed",
            replay.recorded.len(),
            replay.open.len()
        );
    }
    // Before the peer link and the server start: a copy of a payment that arrives
    // later (a forward sent again, a client's retry) finds it at the gate.
    resume(&intake, &peers, replay.open);
    peers.launch(cfg)?;
    let poller = Poller {
        clients: [client(&default), client(&fallback)],
        router: router.clone(),
        interval: cfg.health_interval,
        wait_leadership: Box::new({
            let peers = peers.clone();
            move || peers.wait_health_leadership()
        }),
        share: Box::new({
            let peers = peers.clone();
            move |p, h| peers.share_health(p, h.failing, h.min_response_ms)
        }),
    };
    std::thread::Builder::new()
        .name("health".into())
        .stack_size(WORKER_STACK)
        .spawn(move || poller.run())?;

    let cluster: Arc<dyn Cluster> = peers.clone();
    let app = App {
        intake,
        ledger,
        inflight,
        router,
        cluster,
        busy,
        instance_id: cfg.instance_id,
        id_derived: cfg.id_derived,
        purge_token: cfg.purge_token.clone(),
        summary_wait: cfg.summary_wait,
        summary_settle: cfg.summary_settle,
    };
    let server = Server::bind(cfg, app)?;
    let waker = server.waker();
    peers.on_barrier_progress(Box::new(move || {
        let _ = waker.wake();
    }));
    Ok(server)
}
