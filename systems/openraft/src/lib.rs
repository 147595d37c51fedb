//! openraft 0.9 (crates.io, unmodified) as a faultline system under test, inside madsim: a
//! runtime adapter, a network and storage on the harness's `Links`, disk and flush gate,
//! observations at the storage boundaries, and a client. See README.md.

pub mod client;
pub mod kv;
pub mod network;
pub mod node;
pub mod runtime;
pub mod store;
pub mod system;
pub mod testworld;
pub mod trace;

pub use system::{OpenraftSystem, OPENRAFT_VERSION};

/// Run `f` (which runs one seed's madsim simulation) with tokio's thread-local RNG seeded from
/// `seed`: the world must run each seed inside this, so that an unbiased `tokio::select!` or
/// `watch::changed` inside openraft chooses the same way on every replay of the seed, however
/// many seeds ran before it in the process. Build the madsim `Runtime` before calling it (see
/// [`runtime::TokioRngPin`]); without `--cfg tokio_unstable` it runs `f` unpinned.
pub fn pin_tokio_rng<T>(seed: u64, f: impl FnOnce() -> T) -> T {
    runtime::TokioRngPin::run(seed, f)
}

#[cfg(not(madsim))]
compile_error!("build with --cfg madsim (the repository's .cargo/config.toml sets it; do not set RUSTFLAGS)");
