//! Report model and renderers for faultline.
//!
//! The model types are plain serde structs so the CLI, CI and external scripts can exchange
//! results as JSON without depending on the simulator. Renderers turn them into a terminal
//! summary, a per-seed dossier, JSON, JUnit XML, an HTML timeline and Chrome/Perfetto trace
//! JSON (the last two from a seed's full trace and, when given, its client history, through
//! [`timeline::Timeline`]). Nothing here panics on any input: reports may come from older
//! versions or hand-edited files.

mod error;
mod fsutil;
pub mod html;
pub mod json;
pub mod junit;
mod model;
pub mod perfetto;
pub mod text;
pub mod timeline;

pub use error::ReportError;
pub use fsutil::write_atomic;
pub use model::{
    CiCase, CiReport, ClientOp, Completed, OpOutcome, RunReport, SeedReport, Shard, TraceEvent,
    Violation, ViolationKind, REPORT_SCHEMA_VERSION,
};
