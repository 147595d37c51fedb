//! The generic checkers of a hosted system (placeholder API; the real checks land next).

use std::collections::BTreeMap;

use reports::Violation;

use super::clients::ClientOp;
use super::hosted::{HostedRecord, HostedStatus};

pub struct HostedChecks {
    _voters: u8,
}

impl HostedChecks {
    pub fn new(voters: u8) -> Self {
        HostedChecks { _voters: voters }
    }
    pub fn started(&mut self, _node: u8, _incarnation: u64, _at_us: u64) {}
    pub fn killed(&mut self, _node: u8, _at_us: u64) {}
    pub fn observe(&mut self, _rec: &HostedRecord) {}
    pub fn take_violations(&mut self) -> Vec<Violation> {
        vec![]
    }
    pub fn check_acks(&self, _ops: &[ClientOp], _at_ms: u64) -> Vec<Violation> {
        vec![]
    }
    pub fn check_agreement(_statuses: &BTreeMap<u8, HostedStatus>, _at_ms: u64) -> Vec<Violation> {
        vec![]
    }
    pub fn liveness_gaps(
        &self,
        _statuses: &BTreeMap<u8, Option<HostedStatus>>,
        _now_us: u64,
        _since_us: u64,
    ) -> Vec<String> {
        vec![]
    }
}
