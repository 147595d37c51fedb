//! Panic capture for simulation threads. A seed's panics are findings, not harness output: on
//! a simulation thread the hook records the message and location instead of printing them.

use std::cell::{Cell, RefCell};
use std::sync::Once;

thread_local! {
    static IN_SIM: Cell<bool> = const { Cell::new(false) };
    static LAST: RefCell<Option<String>> = const { RefCell::new(None) };
}

pub fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if IN_SIM.with(|c| c.get()) {
                let loc = info
                    .location()
                    .map(|l| format!("{}:{}", l.file(), l.line()))
                    .unwrap_or_default();
                let msg = message(info.payload());
                LAST.with(|l| *l.borrow_mut() = Some(format!("{msg} (at {loc})")));
            } else {
                previous(info);
            }
        }));
    });
}

/// Marks the current thread as running a simulation for as long as the guard lives.
pub struct SimThreadGuard;

impl SimThreadGuard {
    pub fn enter() -> Self {
        IN_SIM.with(|c| c.set(true));
        SimThreadGuard
    }
}

impl Drop for SimThreadGuard {
    fn drop(&mut self) {
        IN_SIM.with(|c| c.set(false));
    }
}

fn message(payload: &(dyn std::any::Any + Send)) -> String {
    match engine::invariant::classify_panic(payload) {
        Ok(abort) => abort.to_string(),
        Err(msg) => msg,
    }
}

/// The message of a caught panic, with the location the hook saw when there is one.
pub fn describe(payload: &(dyn std::any::Any + Send)) -> String {
    LAST.with(|l| l.borrow_mut().take())
        .unwrap_or_else(|| message(payload))
}
