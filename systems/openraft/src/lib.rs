//! openraft 0.9 (crates.io, unmodified) hosted inside a madsim simulation: a feasibility spike
//! for faultline's system-under-test API (issue 15). See README.md.

pub mod client;
pub mod cluster;
pub mod disk;
pub mod kv;
pub mod network;
pub mod node;
pub mod runtime;
pub mod store;
pub mod trace;

#[cfg(not(madsim))]
compile_error!("build with --cfg madsim (the repository's .cargo/config.toml sets it; do not set RUSTFLAGS)");
