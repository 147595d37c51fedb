//! faultline's system under test: a miniature replicated document store.
//!
//! Pure cores (`raft`, `state`, `log_store`, `layered`, `checkpoint`, `storage_role`) are plain
//! state machines with unit or golden-script tests; the async node tasks in `replica` and
//! `client` only drive them. The engine never imports the harness:
//! it reaches its disk through [`storage::Storage`] and reports what it does through
//! [`observe::Observer`].

#[macro_use]
pub mod invariant;
pub mod checkpoint;
pub mod client;
pub mod failpoints;
pub mod frames;
pub mod guard;
pub mod handles;
pub mod keystore;
pub mod kms;
pub mod knobs;
pub mod layered;
pub mod log_store;
pub mod net;
pub mod observe;
pub mod page_service;
pub mod page_store;
pub mod pages;
pub mod ps_client;
pub mod raft;
pub mod replica;
pub mod state;
pub mod storage;
pub mod storage_role;
pub mod wire;

pub use invariant::Abort;
pub use knobs::{Knobs, KnownBug};
