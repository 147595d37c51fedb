//! Disk faults in synced data: the harness damages a replica's raft log at rest (a flipped
//! bit) or makes its disk lie at the next sync (an append lost, or written at the wrong
//! offset), then restarts the node so recovery meets the damage. The engine must detect it:
//! a node that refuses to start on a damaged disk is retired (an operator would replace it),
//! not a finding; a node that starts on silently wrong data is caught by the other checks.
//!
//! Only replicas' raft logs are damaged: the page service stands for a replicated store, and a
//! log's last record is never flipped (its damage looks exactly like a torn write, which the
//! engine rightly cuts; see `log_store`'s tests).

use engine::log_store::LOG_FILE;

use super::*;
use crate::disk::SyncFault;
use crate::scenario::DiskFaultKind;

/// Where each whole frame of a framed file starts (`len u32 | crc u32 | payload`).
fn frame_starts(bytes: &[u8]) -> Vec<usize> {
    let mut starts = vec![];
    let mut pos = 0;
    while let Some(head) = bytes.get(pos..pos + 4) {
        let len = u32::from_le_bytes(head.try_into().unwrap()) as usize;
        if pos + 8 + len > bytes.len() {
            break;
        }
        starts.push(pos);
        pos += 8 + len;
    }
    starts
}

impl World {
    /// Applies one disk fault to `node` and restarts it after `down_ms` (for a lying sync,
    /// after the node has synced a few more times). Skipped beyond a minority of replicas.
    pub(super) async fn disk_fault(&self, node: NodeId, kind: DiskFaultKind, down_ms: [u64; 2]) {
        let allowed = {
            let mut st = self.lock();
            let faulted = st.slots.values().filter(|s| s.disk_faulted).count();
            let budget = (self.scn.replicas as usize - 1) / 2;
            let slot = st.slots.entry(node).or_default();
            let ok = slot.up && !slot.disk_faulted && faulted < budget;
            if ok {
                slot.disk_faulted = true;
            }
            ok
        };
        if !allowed {
            self.record(
                &node_name(node),
                "fault",
                format!("{kind} skipped (node down, or a minority already damaged)"),
            );
            return;
        }
        let (offset, bit) = {
            let mut st = self.lock();
            (
                st.chaos_rng.gen_range(0..usize::MAX / 2),
                st.chaos_rng.gen_range(0..8u8),
            )
        };
        let what = match kind {
            DiskFaultKind::BitFlip => {
                let starts = self.disk.durable(node, LOG_FILE, |b, _| frame_starts(b));
                // Anywhere before the last record (see the module comment).
                match starts.last() {
                    Some(&last) if last > 0 => {
                        let at = offset % last;
                        self.disk.flip_bit(node, LOG_FILE, at, bit);
                        format!("bit {bit} of byte {at} of {LOG_FILE} flipped at rest")
                    }
                    _ => format!("{LOG_FILE} too short to damage"),
                }
            }
            DiskFaultKind::LostWrite => {
                self.disk.fail_next_sync(node, LOG_FILE, SyncFault::Lost);
                format!("the next sync of {LOG_FILE} will be lost")
            }
            DiskFaultKind::MisdirectedWrite => {
                let len = self.disk.durable(node, LOG_FILE, |b, _| b.len());
                let at =
                    (offset % len.max(1)) / crate::disk::SECTOR_BYTES * crate::disk::SECTOR_BYTES;
                let fault = SyncFault::Misdirected { offset: at };
                self.disk.fail_next_sync(node, LOG_FILE, fault);
                format!("the next sync of {LOG_FILE} will land at byte {at}")
            }
        };
        self.fault(format!("disk fault on {}: {what}", node_name(node)));
        if kind != DiskFaultKind::BitFlip {
            // Let the lie happen (and a few honest syncs after it) before recovery reads it.
            madsim::time::sleep(Duration::from_millis(500)).await;
        }
        self.kill(node, &format!("restart after a {kind}"));
        let delay = self.draw(down_ms);
        madsim::time::sleep(Duration::from_millis(delay)).await;
        if !self.workload_stop.load(Ordering::Relaxed) {
            self.start(node);
        }
    }

    /// A node refusing to start on a disk the harness damaged is retired, not a finding.
    pub(super) fn expected_abort(&self, node: NodeId, abort: &Abort) -> bool {
        let faulted = self.lock().slots.get(&node).is_some_and(|s| s.disk_faulted);
        faulted
            && abort
                .message
                .starts_with("refusing to start on a damaged disk")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_starts_walk_whole_frames_only() {
        let mut b = Vec::new();
        engine::frames::encode(&mut b, &1u32);
        let second = b.len();
        engine::frames::encode(&mut b, &2u32);
        b.extend_from_slice(&[9, 0, 0]); // a torn header
        assert_eq!(frame_starts(&b), vec![0, second]);
    }
}
