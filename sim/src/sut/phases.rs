//! The supervisor of a hosted seed, TigerBeetle-style: a fault phase (timeline, chaos, the
//! workload) for `duration_ms`, then a liveness phase (every fault healed, every node not
//! killed for good restarted, bounded by `liveness_timeout_ms`), then final reads of every key
//! written and the end checks.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use reports::ViolationKind;

use super::world::HWorld;
use super::{client_ip, HostedStatus, KvCall, KvOp};
use crate::check::clients::{check_linearizable, ClientKind};
use crate::check::hosted_checks::HostedChecks;
use crate::check::violation;
use crate::scenario::Check;

/// Polling period of the liveness phase (simulated).
const LIVENESS_POLL_MS: u64 = 50;

pub(super) async fn supervise(w: Arc<HWorld>) {
    w.lock().start = Some(madsim::time::Instant::now());
    for n in w.voters() {
        w.build_node(n);
    }
    // The bootstrap and the final reads run on a client node of their own (past the workload's).
    let admin = w.scn.workload.clients;
    let admin_node = w
        .handle
        .create_node()
        .name("admin")
        .ip(client_ip(admin))
        .build();
    let cluster = w.cluster.clone();
    let boot = admin_node.spawn(async move { cluster.bootstrap().await });
    match boot.await {
        Ok(Ok(())) => w.record("admin", "bootstrap", "done".to_string()),
        Ok(Err(e)) => {
            w.lock().violations.push(violation(
                ViolationKind::Crash,
                None,
                w.sim_now_us() / 1000,
                format!("the system failed to bootstrap: {e}"),
            ));
            return;
        }
        Err(_) => return,
    }
    for item in w.scn.timeline.clone() {
        let w2 = w.clone();
        madsim::task::spawn(async move {
            let now = w2.sim_now_us() / 1000;
            let at = item.at_ms();
            if at > now {
                madsim::time::sleep(Duration::from_millis(at - now)).await;
            }
            w2.apply(item).await;
        });
    }
    if let Some(chaos) = w.scn.chaos.clone() {
        madsim::task::spawn(super::faults::chaos(w.clone(), chaos));
    }
    let clients: Vec<_> = (0..w.scn.workload.clients)
        .map(|c| super::workload::spawn_client(&w, c))
        .collect();
    madsim::time::sleep(Duration::from_millis(w.scn.duration_ms)).await;
    w.stop.store(true, Ordering::Relaxed);
    drop(clients);
    let converged = liveness_phase(&w).await;
    if converged {
        final_reads(&w, &admin_node).await;
    }
    end_checks(&w, converged);
}

fn statuses(w: &HWorld) -> BTreeMap<u8, Option<HostedStatus>> {
    w.voters()
        .into_iter()
        .map(|n| (n, w.is_up(n).then(|| w.cluster.status(n)).flatten()))
        .collect()
}

/// Heals everything, restarts what is down, and waits for convergence; a liveness finding
/// names the gaps when the timeout passes.
async fn liveness_phase(w: &Arc<HWorld>) -> bool {
    {
        let mut st = w.lock();
        st.healed = true;
    }
    w.links.heal();
    w.links.restore_latency_us({
        let [lo, hi] = w.scn.network.latency_ms;
        lo * 1000..hi * 1000 + 1
    });
    w.links.clear_link_latencies();
    w.links.set_loss_per_mille(0);
    for n in w.voters() {
        w.restart(n);
    }
    w.record("controller", "liveness", "every fault healed".to_string());
    let since = w.sim_now_us();
    let deadline = since + w.scn.liveness_timeout_ms * 1000;
    loop {
        let gaps = {
            let st = w.lock();
            let now = HWorld::now_us(&st);
            drop(st);
            let statuses = statuses(w);
            w.lock().checks.liveness_gaps(&statuses, now, since)
        };
        if gaps.is_empty() {
            w.record("controller", "converged", String::new());
            return true;
        }
        let now = w.sim_now_us();
        if now >= deadline {
            if w.scn.has_check(Check::Liveness) {
                w.lock().violations.push(violation(
                    ViolationKind::Liveness,
                    None,
                    now / 1000,
                    format!(
                        "no convergence {} ms after every fault healed: {}",
                        w.scn.liveness_timeout_ms,
                        gaps.join("; ")
                    ),
                ));
            }
            return false;
        }
        madsim::time::sleep(Duration::from_millis(LIVENESS_POLL_MS)).await;
    }
}

/// Reads every key the workload wrote, once, through the system: a lost acknowledged write
/// shows as a read no linearization allows.
async fn final_reads(w: &Arc<HWorld>, admin: &madsim::runtime::NodeHandle) {
    let keys: Vec<String> = w.lock().keys.iter().cloned().collect();
    let w2 = w.clone();
    let admin_client = w.scn.workload.clients;
    let done = admin.spawn(async move {
        let mut kv = w2.cluster.client(admin_client);
        for (seq, key) in keys.into_iter().enumerate() {
            let seq = seq as u64 + 1;
            let h = w2.begin_op(admin_client, seq, &key, ClientKind::Get);
            let call = KvCall {
                client: admin_client,
                seq,
                op: KvOp::Get { key },
            };
            let out = kv.execute(call).await;
            w2.complete_op(h, &out);
        }
    });
    let _ = done.await;
    w.record("admin", "final-reads", String::new());
}

fn end_checks(w: &HWorld, converged: bool) {
    let at_ms = w.sim_now_us() / 1000;
    let live: BTreeMap<u8, HostedStatus> = statuses(w)
        .into_iter()
        .filter_map(|(n, s)| Some((n, s?)))
        .collect();
    let mut st = w.lock();
    let mut found = st.checks.take_violations();
    if !w.scn.has_check(Check::Raft) {
        found.retain(|v| !matches!(v.kind, ViolationKind::RaftSafety));
    }
    let lin = w.scn.has_check(Check::Linearizability);
    if lin || w.scn.has_check(Check::Durability) {
        // An operation the system answered Failed carries no acknowledgement (linearizability
        // lets it take effect or not), and `check_acks` holds it to never applying.
        found.extend(st.checks.check_acks(&st.ops, at_ms));
        if lin {
            let (v, _, undecided) = check_linearizable(&st.ops, at_ms);
            found.extend(v);
            if undecided > 0 {
                st.notes.push(format!(
                    "linearizability: {undecided} key history(ies) undecided within the budget"
                ));
            }
        }
    }
    if converged && w.scn.has_check(Check::Dbhash) {
        found.extend(HostedChecks::check_agreement(&live, at_ms));
    }
    st.violations.extend(found);
}
