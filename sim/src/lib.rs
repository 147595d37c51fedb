//! faultline's harness: the simulated world (madsim runtime, simulated disk, fault controller,
//! workload), the checkers, seed sweeps and the CLI. The engine under test lives in `engine`;
//! report types and renderers in `reports`.

pub mod bench;
pub mod chaos;
pub mod check;
pub mod cli;
pub mod disk;
pub mod floor;
pub mod interrupt;
pub mod panics;
pub mod profile;
pub mod progress;
pub mod reference;
pub mod runner;
pub mod scenario;
pub mod shrink;
pub mod sut;
pub mod trace;
pub mod workload;
pub mod world;
