//! rinha: a Rinha de Backend 2025 payment intermediary.
//!
//! Data flow: `server` (mio event loop; `http` + `json` parse a request) hands each
//! accepted payment to `intake` (bounded crossbeam channel; the worker idle last is
//! woken first); `worker` threads take it, ask `router` where to pay, pay through
//! `processor` clients and write the outcome to `ledger`; `journal` (a memory-mapped
//! file) writes ahead what was accepted, attempted and recorded so that a restarted
//! instance finishes it; `inflight` tracks payments whose outcome is
//! pending; `health` polls the processors' health; `peer` shares records, purges,
//! health, summary barriers and forwarded payments with the other instances
//! (`cluster` adapts it to the server); `node` wires it all from `config`.
//! `metrics` counts what each part does (relaxed atomics) and renders `GET /metrics`;
//! `identity` derives the instance id when none is set; `signals` takes SIGTERM for a
//! draining stop; `pace` spaces the workers' attempts when a backlog drains; `sched`
//! puts the workers in the batch class and gives the event loop a short CPU slice;
//! `net` is the TCP-or-unix stream the server and the peer link share; `addr` (a
//! listener's or peer's address) and `refusal` (why two instances cannot link) are the
//! vocabulary that modules on both sides of an import share, below both.
#![deny(unsafe_code)]

pub mod addr;
pub mod cluster;
pub mod config;
pub mod health;
pub mod http;
pub mod identity;
pub mod inflight;
pub mod intake;
pub mod journal;
pub mod json;
pub mod ledger;
pub mod metrics;
pub mod net;
pub mod node;
pub mod pace;
pub mod payment;
pub mod peer;
pub mod processor;
pub mod refusal;
pub mod router;
pub mod sched;
pub mod server;
pub mod signals;
pub mod time;
pub mod worker;
