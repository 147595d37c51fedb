//! Engine invariants. A failed invariant is a process abort of the simulated node, never a panic
//! of the harness: the panic carries an [`Abort`] payload that the node's task guard recognises,
//! reports through the observer, and turns into a kill of that node only.

use std::fmt;

/// Payload of a failed engine invariant (what a real `abort()` would print).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Abort {
    pub message: String,
    pub location: String,
}

impl fmt::Display for Abort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invariant failed: {} ({})", self.message, self.location)
    }
}

/// Prefix of the panic message, so a default panic hook still shows what happened.
pub const ABORT_MARKER: &str = "faultline-abort";

#[doc(hidden)]
#[cold]
#[track_caller]
pub fn fail(message: String) -> ! {
    let loc = std::panic::Location::caller();
    std::panic::panic_any(Abort {
        message,
        location: format!("{}:{}", loc.file(), loc.line()),
    })
}

/// `invariant!(cond, "fmt", args..)`: abort the simulated node when `cond` is false.
#[macro_export]
macro_rules! invariant {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            $crate::invariant::fail(format!($($arg)+));
        }
    };
}

/// Extracts the abort (or, for an ordinary panic, its message) from a caught panic payload.
pub fn classify_panic(payload: &(dyn std::any::Any + Send)) -> Result<Abort, String> {
    if let Some(a) = payload.downcast_ref::<Abort>() {
        return Ok(a.clone());
    }
    if let Some(s) = payload.downcast_ref::<&str>() {
        return Err((*s).to_string());
    }
    if let Some(s) = payload.downcast_ref::<String>() {
        return Err(s.clone());
    }
    Err("panic with a non-string payload".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_invariant_carries_message_and_location() {
        let r = std::panic::catch_unwind(|| {
            invariant!(1 + 1 == 3, "math broke: {}", 42);
        });
        let payload = r.unwrap_err();
        let abort = classify_panic(payload.as_ref()).expect("an Abort payload");
        assert_eq!(abort.message, "math broke: 42");
        assert!(
            abort.location.contains("invariant.rs"),
            "{}",
            abort.location
        );
    }

    #[test]
    fn ordinary_panic_is_not_an_abort() {
        let r = std::panic::catch_unwind(|| panic!("boom"));
        assert_eq!(
            classify_panic(r.unwrap_err().as_ref()),
            Err("boom".to_string())
        );
    }
}
