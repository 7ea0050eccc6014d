//! The peer link: replicates every own ledger record to the other instances, and
//! carries purges, health readings, summary barriers and forwarded payments.
//!
//! Layout: `codec` (pure frame codec), `net` (TCP/unix sockets), `link` (handshake,
//! reader and writer threads of one connection, connector/acceptor loops), `barrier`
//! (the summary wait). The wire protocol is specified in docs/PROTOCOL.md.

mod barrier;
pub mod codec;
mod conflict;
mod link;
mod net;
mod tls;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{
    Arc, Condvar, Mutex, MutexGuard, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak,
};
use std::thread::JoinHandle;
use std::time::Instant;

pub use barrier::BarrierWait;
use barrier::{Entry, EntryState};
use codec::{Forwarded, Frame};
pub use conflict::Cause;
use link::Conn;

use crate::config::{Addr, Config};
use crate::inflight::InFlight;
use crate::ledger::Ledger;
use crate::metrics::METRICS;
use crate::payment::{CorrelationId, Payment, Processor};

/// What the peer link asks of the rest of the server.
pub trait PeerEvents: Send + Sync + 'static {
    /// A peer shared a processor health reading (the router consumes it).
    fn on_health(&self, p: Processor, failing: bool, min_response_ms: u32);
    /// Pay this payment here: a peer forwarded it to us, its owner. False if our queue
    /// is full (the peer keeps it and sends it again).
    fn on_forwarded(&self, p: Payment) -> bool;
    /// A payment held here for an owner not known then turned out to be ours: pay it.
    fn pay_here(&self, p: Payment);
    /// Payments handed to their owner were recorded by it: nothing is left to do here.
    fn handed_over(&self, ids: &[CorrelationId]);
    /// A member of the cluster was learned (an instance id seen for the first time).
    fn on_member(&self, id: u32);
    /// A peer purged: clear local state other than the ledger (already purged).
    fn on_purge(&self);
}

/// Who pays a correlationId.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    Me,
    Peer(u32),
    /// Not every member of the cluster is known yet (`Shared::known`).
    Unknown,
}

/// What this instance holds of one peer's own log, kept across reconnections.
#[derive(Clone, Copy, Debug, Default)]
struct RecvState {
    incarnation: u64,
    /// The peer's log epoch we track and how many of its records we hold in order.
    log_epoch: u64,
    have: u64,
    /// Records of an older epoch are from before a purge: dropped.
    min_epoch: u64,
    /// We purged and the peer has not acknowledged it yet: its records are dropped,
    /// and the purge is sent again on reconnect.
    blocked: bool,
    /// The last purge of this peer we applied (incarnation, epoch): purges are idempotent.
    purged_by: Option<(u64, u64)>,
}

/// The live links, by peer id, and the sorted ids of self + linked peers.
struct Links {
    by_peer: HashMap<u32, Arc<Conn>>,
    members: Vec<u32>,
}

pub(crate) struct Shared {
    id: u32,
    incarnation: u64,
    token: Vec<u8>,
    ledger: Arc<Ledger>,
    inflight: Arc<InFlight>,
    events: Arc<dyn PeerEvents>,
    stop: AtomicBool,
    /// Read on every request (`owns`) and every record (`notify_record`), written only
    /// when a link comes or goes: readers never wait for each other.
    links: RwLock<Links>,
    recv: Mutex<HashMap<u32, RecvState>>,
    barriers: Mutex<HashMap<u64, Weak<BarrierWait>>>,
    next_id: AtomicU64,
    /// Every connection not yet closed (registered or still handshaking), for shutdown.
    conns: Mutex<Vec<Weak<Conn>>>,
    /// Notified (under its mutex) when a link closes or the link shuts down: what the
    /// connector loops sleep on while linked or backing off.
    unlinked: Mutex<()>,
    unlinked_cv: Condvar,
    /// Wakes the acceptor's poll at shutdown.
    accept_waker: OnceLock<mio::Waker>,
    /// Called when a barrier may have completed, so that its poller need not spin.
    on_barrier_progress: OnceLock<Box<dyn Fn() + Send + Sync>>,
    /// Payments this instance accepted for another owner, by id, until the owner's
    /// record of them arrives here: forwarded on a link (which may break and lose them
    /// in flight: they are sent again on the owner's next link, and it ignores what it
    /// has), or held while the owner is unreachable. Never paid here: only the owner
    /// pays, so two instances never pay one id on two processors.
    forwarded: Mutex<HashMap<CorrelationId, Pending>>,
    /// Every member of the cluster, sorted: self, each peer ever linked, and those the
    /// journal remembers. Ownership is hashed over it, not over the links up now, so
    /// that an unreachable owner keeps its payments.
    known: RwLock<Vec<u32>>,
    /// How many members there are at least: self and each configured `--peer` (two if
    /// this instance only accepts peers).
    expected: usize,

    /// Handshake refusals that retrying cannot fix (see `conflict`).
    conflicts: conflict::Conflicts,
    /// Mutual TLS on TCP links (`--peer-tls-*`), set once before any link starts.
    tls: OnceLock<tls::PeerTls>,
}

/// A payment accepted for another owner and not yet recorded here.
struct Pending {
    /// `None` while the cluster's members are not all known.
    owner: Option<u32>,
    /// The link (`Conn::id`) it was last handed to, `HELD` if none: a link is not given
    /// it twice.
    conn: u64,
    f: Forwarded,
    /// Monotonic ms when it was accepted here (for `/metrics`).
    since_ms: u64,
}

/// `Pending::conn` of a payment on no link (its owner unreachable, or it came back).
const HELD: u64 = 0;

/// Payments accepted here for other owners and not yet recorded, at most: beyond, a
/// payment for another owner is refused (503) rather than held without bound while
/// its owner is away.
pub const MAX_HANDED_OFF: usize = 65_536;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write_lock<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    #[allow(clippy::too_many_arguments)]
    fn new(
        id: u32,
        incarnation: u64,
        token: Vec<u8>,
        ledger: Arc<Ledger>,
        inflight: Arc<InFlight>,
        events: Arc<dyn PeerEvents>,
        known: &[u32],
        expected: usize,
    ) -> Shared {
        let mut known: Vec<u32> = known.iter().copied().chain([id]).collect();
        known.sort_unstable();
        known.dedup();
        Shared {
            id,
            incarnation,
            token,
            ledger,
            inflight,
            events,
            stop: AtomicBool::new(false),
            links: RwLock::new(Links {
                by_peer: HashMap::new(),
                members: vec![id],
            }),
            recv: Mutex::new(HashMap::new()),
            barriers: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            conns: Mutex::new(Vec::new()),
            unlinked: Mutex::new(()),
            unlinked_cv: Condvar::new(),
            accept_waker: OnceLock::new(),
            on_barrier_progress: OnceLock::new(),
            forwarded: Mutex::new(HashMap::new()),
            known: RwLock::new(known),
            expected,
            conflicts: conflict::Conflicts::default(),
            tls: OnceLock::new(),
        }
    }

    fn linked(&self) -> Vec<Arc<Conn>> {
        read(&self.links).by_peer.values().cloned().collect()
    }

    fn link_to(&self, peer: u32) -> Option<Arc<Conn>> {
        read(&self.links).by_peer.get(&peer).cloned()
    }

    fn is_linked(&self, peer: u32) -> bool {
        read(&self.links).by_peer.contains_key(&peer)
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Wakes the connector loops: a link closed, or the link is shutting down.
    fn notify_unlinked(&self) {
        let _held = lock(&self.unlinked);
        self.unlinked_cv.notify_all();
    }

    /// Sleeps while `cond` holds, at most `max` if given, until shutdown. `cond` is
    /// checked again only when a link closes: no periodic wake-up.
    fn sleep_while(&self, max: Option<std::time::Duration>, cond: impl Fn() -> bool) {
        let end = max.map(|d| Instant::now() + d);
        let mut g = lock(&self.unlinked);
        while cond() && !self.stopped() {
            g = match end {
                None => self.unlinked_cv.wait(g).unwrap_or_else(|e| e.into_inner()),
                Some(end) => {
                    let left = end.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return;
                    }
                    match self.unlinked_cv.wait_timeout(g, left) {
                        Ok((g, _)) => g,
                        Err(e) => e.into_inner().0,
                    }
                }
            };
        }
    }

    /// True if we hold at least `own_len` records of `peer`'s log `epoch` (or that log
    /// was superseded, or the peer's records are being dropped after a purge).
    fn received(&self, peer: u32, epoch: u64, own_len: u64) -> bool {
        let recv = lock(&self.recv);
        recv.get(&peer).is_none_or(|st| {
            st.blocked || epoch < st.min_epoch || st.log_epoch != epoch || st.have >= own_len
        })
    }

    /// After a purge of our ledger we hold nothing of anyone's log.
    fn forget_received(&self) {
        for st in lock(&self.recv).values_mut() {
            st.have = 0;
        }
    }

    fn barrier_acked(&self, peer: u32, id: u64, epoch: u64, own_len: u64) {
        let Some(w) = lock(&self.barriers).get(&id).and_then(Weak::upgrade) else {
            return;
        };
        for e in lock(&w.entries).iter_mut().filter(|e| e.peer == peer) {
            e.state = EntryState::Acked { epoch, own_len };
        }
        self.barrier_progress();
    }

    /// Wakes the barrier poller if any barrier is open.
    fn barrier_progress(&self) {
        let open = lock(&self.barriers).values().any(|w| w.strong_count() > 0);
        if let (true, Some(f)) = (open, self.on_barrier_progress.get()) {
            f();
        }
    }

    /// Payments handed to a link that never reached the owner (the link closed with
    /// them still queued, or the owner's queue was full and it sent them back): held
    /// again, for the owner's next link or the link's next tick.
    fn hold_again(&self, ids: impl IntoIterator<Item = CorrelationId>) {
        let mut pending = lock(&self.forwarded);
        for id in ids {
            if let Some(p) = pending.get_mut(&id) {
                p.conn = HELD;
            }
        }
    }

    /// Sends `owner`'s unrecorded forwards and held payments on its new link (those
    /// `hand_off` already handed to that link once it was registered are not sent
    /// twice). Payments held for an owner not known then are placed now; those that
    /// turn out to be ours are paid here.
    fn resend_forwards(&self, owner: u32, c: &Conn) {
        let mut ours = Vec::new();
        let mut again = 0;
        {
            let mut pending = lock(&self.forwarded);
            let done = self.prune(&mut pending);
            for (id, p) in pending.iter_mut() {
                if p.owner.is_none() {
                    p.owner = match self.owner(id) {
                        Owner::Me => {
                            ours.push(*id);
                            None
                        }
                        Owner::Peer(o) => Some(o),
                        Owner::Unknown => None,
                    };
                }
                if p.owner == Some(owner) && p.conn != c.id {
                    if c.push_forward(p.f) {
                        p.conn = c.id;
                        again += 1;
                    } else {
                        c.owe_resend();
                    }
                }
            }
            let ours: Vec<Pending> = ours.iter().filter_map(|id| pending.remove(id)).collect();
            drop(pending);
            self.settled(&done);
            for p in ours {
                self.events.pay_here(payment_of(&p.f));
            }
        }
        if again > 0 {
            eprintln!("peer: {again} forwards sent again to instance {owner}");
        }
    }

    /// Drops the payments whose owner's record arrived; returns their ids.
    fn prune(&self, pending: &mut HashMap<CorrelationId, Pending>) -> Vec<CorrelationId> {
        let done: Vec<CorrelationId> = pending
            .keys()
            .filter(|id| self.ledger.contains(id))
            .copied()
            .collect();
        for id in &done {
            pending.remove(id);
        }
        done
    }

    /// Records arrived from a peer: the payments among them handed off from here are
    /// done.
    fn handed_over(&self, records: &[crate::payment::Record]) {
        let done: Vec<CorrelationId> = {
            let mut pending = lock(&self.forwarded);
            if pending.is_empty() {
                return;
            }
            records
                .iter()
                .filter_map(|r| pending.remove(&r.id).map(|_| r.id))
                .collect()
        };
        self.settled(&done);
    }

    fn settled(&self, done: &[CorrelationId]) {
        if !done.is_empty() {
            self.events.handed_over(done);
        }
    }

    /// A peer id linked for the first time is a member from now on.
    fn learn(&self, peer: u32) {
        let mut known = write_lock(&self.known);
        if let Err(at) = known.binary_search(&peer) {
            known.insert(at, peer);
            drop(known);
            self.events.on_member(peer);
        }
    }

    /// A link went down: barriers waiting on it complete without that peer.
    fn barrier_gone(&self, conn: u64) {
        let waits: Vec<_> = lock(&self.barriers)
            .values()
            .filter_map(Weak::upgrade)
            .collect();
        for w in waits {
            for e in lock(&w.entries).iter_mut().filter(|e| e.conn == conn) {
                if matches!(e.state, EntryState::Waiting) {
                    e.state = EntryState::Gone;
                }
            }
        }
        self.barrier_progress();
    }

    /// True if `known` holds every member: until then nobody here can tell who owns
    /// what.
    fn complete(&self, known: &[u32]) -> bool {
        known.len() >= self.expected
    }

    /// The owner of `id`: its hash over the sorted ids of every member (as nginx's
    /// `hash` over the servers listed in id order).
    fn owner(&self, id: &CorrelationId) -> Owner {
        let known = read(&self.known);
        if !self.complete(&known) {
            return Owner::Unknown;
        }
        let n = known.len() as u64;
        let i = usize::try_from(id.owner_hash() % n).unwrap_or(0);
        match known.get(i) {
            Some(&m) if m == self.id => Owner::Me,
            Some(&m) => Owner::Peer(m),
            None => Owner::Unknown,
        }
    }
}

/// The payment a forward carries, aged as it was when it was sent.
pub(crate) fn payment_of(f: &Forwarded) -> Payment {
    Payment {
        id: f.id,
        cents: f.cents,
        accepted_ms: crate::time::mono_ms().saturating_sub(u64::from(f.age_ms)),
        pin: None,
    }
}

/// The peer link of this instance. Dropping the last `Arc` stops its threads.
pub struct Peers {
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    listen: OnceLock<Addr>,
}

impl Peers {
    /// Starts listener/connector threads; with no peers configured every operation is
    /// a local no-op (owns → true, barrier done at once...).
    pub fn start(
        cfg: &Config,
        ledger: Arc<Ledger>,
        inflight: Arc<InFlight>,
        events: Arc<dyn PeerEvents>,
    ) -> std::io::Result<Arc<Peers>> {
        let peers = Peers::new(cfg, ledger, inflight, events, &[]);
        peers.launch(cfg)?;
        Ok(peers)
    }

    /// The peer link, not yet listening nor dialing (`launch`): ownership is known
    /// (from `members`, the ones the journal remembers) before anything can arrive.
    pub fn new(
        cfg: &Config,
        ledger: Arc<Ledger>,
        inflight: Arc<InFlight>,
        events: Arc<dyn PeerEvents>,
        members: &[u32],
    ) -> Arc<Peers> {
        let incarnation = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id()).rotate_left(32);
        let token = cfg.peer_token.as_bytes().to_vec();
        let listens = usize::from(cfg.peer_listen.is_some());
        let expected = 1 + cfg.peers.len().max(listens);
        let shared = Arc::new(Shared::new(
            cfg.instance_id,
            incarnation,
            token,
            ledger,
            inflight,
            events,
            members,
            expected,
        ));
        Arc::new(Peers {
            shared,
            threads: Mutex::new(Vec::new()),
            listen: OnceLock::new(),
        })
    }

    /// Sets up TLS, binds the peer listener and starts the accept and dial threads.
    pub fn launch(&self, cfg: &Config) -> std::io::Result<()> {
        let shared = &self.shared;
        tls::configure(shared, cfg)?;
        let mut threads = lock(&self.threads);
        if let Some(addr) = &cfg.peer_listen {
            let l = net::Listener::bind(addr)?;
            let _ = self.listen.set(l.local_addr()?);
            let poll = mio::Poll::new()?;
            let waker = mio::Waker::new(poll.registry(), link::ACCEPT_WAKER)?;
            let _ = shared.accept_waker.set(waker);
            let s = shared.clone();
            threads.push(spawn("peer-accept", move || link::accept_loop(s, l, poll))?);
        }
        for addr in &cfg.peers {
            let (s, a) = (shared.clone(), addr.clone());
            threads.push(spawn("peer-connect", move || link::connect_loop(s, a))?);
        }
        Ok(())
    }

    /// The address the peer listener is bound to (the real port if bound to port 0).
    pub fn listen_addr(&self) -> Option<&Addr> {
        self.listen.get()
    }

    /// This instance's id.
    pub fn id(&self) -> u32 {
        self.shared.id
    }

    /// Sets what to call when a barrier may have completed (once; later calls are ignored).
    pub fn on_barrier_progress(&self, f: Box<dyn Fn() + Send + Sync>) {
        let _ = self.shared.on_barrier_progress.set(f);
    }

    /// Ids of the peers linked right now, sorted.
    pub fn linked_peers(&self) -> Vec<u32> {
        let links = read(&self.shared.links);
        let mut v: Vec<u32> = links.by_peer.keys().copied().collect();
        v.sort_unstable();
        v
    }

    /// The misconfiguration that keeps a peer from linking, if one was seen lately.
    pub fn conflict(&self) -> Option<Cause> {
        self.shared.conflicts.active(crate::time::mono_ms())
    }

    /// Which misconfigurations were seen lately, by `Cause` index.
    pub fn conflicts(&self) -> [bool; Cause::ALL.len()] {
        let now = crate::time::mono_ms();
        Cause::ALL.map(|c| self.shared.conflicts.is_active(c, now))
    }

    /// Per linked peer, sorted: records of our log not yet written to it.
    pub fn replication_lag(&self) -> Vec<(u32, u64)> {
        let len = self.shared.ledger.len() as u64;
        let mut v: Vec<(u32, u64)> = self
            .shared
            .linked()
            .iter()
            .map(|c| (c.peer, c.unsent(len)))
            .collect();
        v.sort_unstable();
        v
    }

    /// A new own record is in the ledger: wake every link writer.
    pub fn notify_record(&self) {
        for c in self.shared.linked() {
            c.kick();
        }
    }

    /// Purges every peer (call after the local ledger purge). A peer that is down now
    /// is purged when its link comes back; its records are ignored until it confirms.
    pub fn purge_all(&self) {
        let s = &self.shared;
        s.forget_received();
        lock(&s.forwarded).clear();
        for st in lock(&s.recv).values_mut() {
            st.blocked = true;
        }
        let epoch = s.ledger.epoch();
        for c in s.linked() {
            c.push(Frame::Purge { epoch });
        }
    }

    /// Who pays `id` (see `Shared::owner`).
    pub fn owner(&self, id: &CorrelationId) -> Owner {
        self.shared.owner(id)
    }

    /// True once every member is known: until then no instance can tell who owns what,
    /// and what it accepts is held.
    pub fn members_known(&self) -> bool {
        self.shared.complete(&read(&self.shared.known))
    }

    /// True if this instance pays `id`.
    pub fn owns(&self, id: &CorrelationId) -> bool {
        self.owner(id) == Owner::Me
    }

    /// Takes `p`, admitted here for another owner: forwarded on the owner's link if it
    /// is up and has room, else held until the owner links again. Never paid here. (If
    /// the owner turns out to be us, as the members become known, `pay_here` pays it.)
    pub fn hand_off(&self, p: Payment) {
        let s = &self.shared;
        let age = crate::time::mono_ms().saturating_sub(p.accepted_ms);
        let f = Forwarded {
            id: p.id,
            cents: p.cents,
            age_ms: u32::try_from(age).unwrap_or(u32::MAX),
        };
        let mut pending = lock(&s.forwarded);
        // Read under `forwarded`: a link registered meanwhile places it in its resend.
        let (owner, conn) = match s.owner(&p.id) {
            Owner::Me => {
                drop(pending);
                s.events.pay_here(p);
                return;
            }
            Owner::Peer(o) => match s.link_to(o) {
                Some(c) if c.push_forward(f) => (Some(o), c.id),
                Some(c) => {
                    c.owe_resend();
                    (Some(o), HELD)
                }
                None => (Some(o), HELD),
            },
            Owner::Unknown => (None, HELD),
        };
        pending.insert(
            p.id,
            Pending {
                owner,
                conn,
                f,
                since_ms: p.accepted_ms,
            },
        );
        drop(pending);
        if conn == HELD {
            METRICS.payments_held.inc();
        } else {
            METRICS.payments_forwarded.inc();
        }
    }

    /// True if no more payments may be accepted for other owners (`MAX_HANDED_OFF`).
    pub fn handed_off_full(&self) -> bool {
        lock(&self.shared.forwarded).len() >= MAX_HANDED_OFF
    }

    /// Payments accepted here for an owner that is not linked (or not known), or that
    /// its owner sent back, and the age in ms of the oldest: what an owner that never comes back leaves unpaid.
    pub fn held(&self) -> (usize, u64) {
        // Not under `links`: `hand_off` takes `forwarded`, then `links`.
        let linked = self.linked_peers();
        let pending = lock(&self.shared.forwarded);
        let now = crate::time::mono_ms();
        let held = pending.iter().filter(|(id, p)| {
            let on_link = p.conn != HELD && p.owner.is_some_and(|o| linked.contains(&o));
            !on_link && !self.shared.ledger.contains(id)
        });
        held.fold((0, 0), |(n, oldest), (_, p)| {
            (n + 1, oldest.max(now.saturating_sub(p.since_ms)))
        })
    }

    /// Shares a health reading with every linked peer.
    pub fn share_health(&self, p: Processor, failing: bool, min_response_ms: u32) {
        for c in self.shared.linked() {
            c.push(Frame::Health {
                processor: p,
                failing,
                min_response_ms,
            });
        }
    }

    /// True if this instance has the lowest id among self + linked peers.
    pub fn is_health_leader(&self) -> bool {
        let links = read(&self.shared.links);
        links.members.first().is_none_or(|&m| m == self.shared.id)
    }

    /// Sleeps while a linked peer is the health leader (returns at once if this
    /// instance leads): only a link closing can make it the leader, so nothing else
    /// wakes it. True once it leads; false if the link shut down first.
    pub fn wait_health_leadership(&self) -> bool {
        self.shared.sleep_while(None, || !self.is_health_leader());
        self.is_health_leader()
    }

    /// Starts a summary barrier: every linked peer answers once no payment with
    /// `requestedAt <= to_us` is in flight there (or at `deadline`), after sending every
    /// record it holds. Local in-flight payments are the caller's to wait for.
    pub fn barrier(&self, to_us: Option<i64>, deadline: Instant) -> Arc<BarrierWait> {
        let s = &self.shared;
        let conns = s.linked();
        let entries = conns
            .iter()
            .map(|c| Entry {
                peer: c.peer,
                conn: c.id,
                state: EntryState::Waiting,
            })
            .collect();
        let w = Arc::new(BarrierWait::new(deadline, Arc::downgrade(s), entries));
        if conns.is_empty() {
            return w;
        }
        let id = s.next_id.fetch_add(1, Ordering::Relaxed);
        {
            let mut reg = lock(&s.barriers);
            reg.retain(|_, w| w.strong_count() > 0);
            reg.insert(id, Arc::downgrade(&w));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let wait_ms = u32::try_from(left.as_millis()).unwrap_or(u32::MAX);
        for c in &conns {
            c.push(Frame::BarrierReq { id, to_us, wait_ms });
        }
        // A link that closed before the wait was registered never reports it gone.
        for c in conns.iter().filter(|c| c.is_closed()) {
            s.barrier_gone(c.id);
        }
        w
    }

    /// Stops every thread and closes every link (also done on drop).
    pub fn shutdown(&self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.notify_unlinked();
        if let Some(w) = self.shared.accept_waker.get() {
            let _ = w.wake();
        }
        let conns: Vec<_> = lock(&self.shared.conns).drain(..).collect();
        for c in conns.iter().filter_map(Weak::upgrade) {
            link::close(&self.shared, &c, "shutdown");
        }
        let threads: Vec<_> = lock(&self.threads).drain(..).collect();
        for t in threads {
            let _ = t.join();
        }
    }
}

impl Drop for Peers {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name(name.into()).spawn(f)
}

#[cfg(test)]
pub(crate) fn test_shared(id: u32, token: &str) -> Arc<Shared> {
    struct Nop;
    impl PeerEvents for Nop {
        fn on_health(&self, _: Processor, _: bool, _: u32) {}
        fn on_forwarded(&self, _: Payment) -> bool {
            true
        }
        fn pay_here(&self, _: Payment) {}
        fn handed_over(&self, _: &[CorrelationId]) {}
        fn on_member(&self, _: u32) {}
        fn on_purge(&self) {}
    }
    Arc::new(Shared::new(
        id,
        u64::from(id),
        token.as_bytes().to_vec(),
        Arc::new(Ledger::new()),
        Arc::new(InFlight::new()),
        Arc::new(Nop),
        &[],
        2,
    ))
}
