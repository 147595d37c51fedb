//! Thin JSON helpers that map serde_json errors into [`ReportError`], so callers handle one
//! error type for every report format.

use serde::Serialize;

use crate::{CiReport, ReportError, RunReport, SeedReport};

/// Pretty JSON (the `--json` output and files on disk; humans diff them).
pub fn to_string_pretty<T: Serialize + ?Sized>(value: &T) -> Result<String, ReportError> {
    serde_json::to_string_pretty(value).map_err(|e| ReportError::Serialize(e.to_string()))
}

/// Compact single-line JSON, e.g. for JSON-lines streams.
pub fn to_string<T: Serialize + ?Sized>(value: &T) -> Result<String, ReportError> {
    serde_json::to_string(value).map_err(|e| ReportError::Serialize(e.to_string()))
}

/// Parses the output of `faultline run --json`.
pub fn parse_run_report(s: &str) -> Result<RunReport, ReportError> {
    serde_json::from_str(s).map_err(|e| ReportError::from_parse(&e))
}

/// Parses one seed report (e.g. a saved dossier).
pub fn parse_seed_report(s: &str) -> Result<SeedReport, ReportError> {
    serde_json::from_str(s).map_err(|e| ReportError::from_parse(&e))
}

/// Parses the output of `faultline ci --json`.
pub fn parse_ci_report(s: &str) -> Result<CiReport, ReportError> {
    serde_json::from_str(s).map_err(|e| ReportError::from_parse(&e))
}
