//! rinha: a Rinha de Backend 2025 payment intermediary.
#![forbid(unsafe_code)]

pub mod config;
pub mod inflight;
pub mod json;
pub mod ledger;
pub mod payment;
pub mod time;
