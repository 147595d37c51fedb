use std::fmt;

/// Errors from parsing or producing reports.
///
/// Holds only plain data (not `serde_json::Error`) so callers can clone, compare and store it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportError {
    /// The input was not valid JSON or did not match the report schema.
    /// `line`/`column` are 1-based as reported by serde_json (0 when unknown).
    Parse {
        line: usize,
        column: usize,
        message: String,
    },
    /// A value could not be serialized. Not expected for this crate's types; kept so the
    /// generic JSON helpers never need to panic.
    Serialize(String),
    /// A violation kind string that is not one of the stable identifiers.
    UnknownKind(String),
}

impl ReportError {
    pub(crate) fn from_parse(err: &serde_json::Error) -> Self {
        ReportError::Parse {
            line: err.line(),
            column: err.column(),
            message: err.to_string(),
        }
    }
}

impl fmt::Display for ReportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReportError::Parse {
                line,
                column,
                message,
            } => write!(
                f,
                "invalid report JSON at line {line}, column {column}: {message}"
            ),
            ReportError::Serialize(message) => write!(f, "cannot serialize report: {message}"),
            ReportError::UnknownKind(kind) => {
                write!(f, "unknown violation kind {kind:?} (expected one of: ")?;
                for (i, k) in crate::ViolationKind::ALL.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    f.write_str(k.as_str())?;
                }
                f.write_str(")")
            }
        }
    }
}

impl std::error::Error for ReportError {}
