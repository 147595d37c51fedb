//! Chrome Trace Event Format JSON of one seed, for ui.perfetto.dev and chrome://tracing: the
//! same timeline as the HTML page, in a viewer that zooms to the microsecond and searches.
//!
//! Timestamps are simulated microseconds (the format's unit), so the viewer's clock is the
//! simulation's. One process per node (`pid`), named and sorted by metadata events; role spans
//! are complete events (`X`), markers and violations instant events (`i`), per-node activity a
//! counter (`C`), and the faults get a process of their own with one thread per overlapping row.
//! With the client history, every client operation is a complete event on its client's thread
//! of a `client operations` process (a client's overlapping operations, e.g. concurrent DDL,
//! go to extra threads of that client).

use serde_json::{json, Value};

use crate::timeline::{op_span, op_title, Timeline, CLUSTER_LANE};
use crate::{ClientOp, OpOutcome, SeedReport, TraceEvent};

/// Thread of every node process (roles and markers share it so markers sit on the role track).
const TID: u64 = 1;

/// Renders `seed` (of `scenario`) from its full trace.
pub fn render(scenario: &str, seed: &SeedReport, trace: &[TraceEvent]) -> String {
    render_timeline(scenario, seed, &Timeline::build(seed, trace))
}

/// Renders `seed` from its full trace with its client history.
pub fn render_with_ops(
    scenario: &str,
    seed: &SeedReport,
    trace: &[TraceEvent],
    ops: &[ClientOp],
) -> String {
    render_timeline(
        scenario,
        seed,
        &Timeline::build(seed, trace).with_client_ops(ops),
    )
}

/// Renders an already built timeline.
pub fn render_timeline(scenario: &str, seed: &SeedReport, t: &Timeline) -> String {
    let mut ev: Vec<Value> = Vec::new();
    for (i, lane) in t.lanes.iter().enumerate() {
        let pid = pid_of(i);
        let (name, thread) = if lane.is_node {
            (lane.name.clone(), "role")
        } else {
            (
                format!("{CLUSTER_LANE} (controller, cluster-wide)"),
                "events",
            )
        };
        ev.push(meta("process_name", pid, 0, json!({ "name": name })));
        ev.push(meta(
            "process_sort_index",
            pid,
            0,
            json!({ "sort_index": i }),
        ));
        ev.push(meta("thread_name", pid, TID, json!({ "name": thread })));

        for seg in &lane.segments {
            let role = seg.role.as_str();
            let name = match seg.term {
                Some(term) => format!("{role} t{term}"),
                None => role.to_string(),
            };
            ev.push(json!({
                "name": name, "cat": "role", "ph": "X",
                "ts": seg.start_us, "dur": seg.end_us - seg.start_us,
                "pid": pid, "tid": TID,
                "args": { "role": role, "term": seg.term, "detail": seg.detail },
            }));
        }

        // Activity as a counter: one sample per change keeps 100k applies to a few hundred.
        if lane.activity.iter().any(|&c| c > 0) {
            let n = lane.activity.len() as u64;
            let mut last = None;
            for (b, &count) in lane.activity.iter().enumerate() {
                if last == Some(count) {
                    continue;
                }
                last = Some(count);
                let ts = u128::from(t.end_us) * b as u128 / u128::from(n);
                ev.push(json!({
                    "name": "applies, commits per slice", "cat": "activity", "ph": "C",
                    "ts": ts as u64, "pid": pid, "tid": TID,
                    "args": { "events": count },
                }));
            }
        }
    }

    for m in &t.markers {
        let pid = pid_of(m.lane);
        let lane = &t.lanes[m.lane];
        if m.violation {
            // Node violations mark their process; cluster-wide ones the whole trace.
            let scope = if lane.is_node { "p" } else { "g" };
            ev.push(json!({
                "name": format!("VIOLATION {}", m.kind), "cat": "violation", "ph": "i",
                "s": scope, "ts": m.at_us, "pid": pid, "tid": TID, "cname": "terrible",
                "args": {
                    "kind": m.kind, "node": lane.is_node.then_some(&lane.name),
                    "at_ms": m.at_us / 1000, "message": m.detail,
                },
            }));
        } else {
            let name = if m.count > 1 {
                format!("{} x{}", m.kind, m.count)
            } else {
                m.kind.clone()
            };
            ev.push(json!({
                "name": name, "cat": "marker", "ph": "i", "s": "t",
                "ts": m.at_us, "pid": pid, "tid": TID,
                "args": { "detail": m.detail, "count": m.count },
            }));
        }
    }

    // Faults: own rows (not the HTML's capped ones) so no two spans on a thread overlap.
    let faults_pid = pid_of(t.lanes.len());
    ev.push(meta(
        "process_name",
        faults_pid,
        0,
        json!({ "name": "faults" }),
    ));
    ev.push(meta(
        "process_sort_index",
        faults_pid,
        0,
        json!({ "sort_index": -1 }),
    ));
    let mut row_ends: Vec<u64> = Vec::new();
    for f in &t.faults {
        let row = match row_ends.iter().position(|&e| e <= f.start_us) {
            Some(r) => r,
            None => {
                row_ends.push(0);
                row_ends.len() - 1
            }
        };
        row_ends[row] = f.end_us.max(f.start_us + 1);
        let tid = row as u64 + 1;
        let nodes = if f.nodes.is_empty() {
            "all".to_string()
        } else {
            f.nodes.join(",")
        };
        let args = json!({ "detail": f.detail, "nodes": nodes });
        if f.is_instant() {
            ev.push(json!({
                "name": f.label, "cat": "fault", "ph": "i", "s": "p",
                "ts": f.start_us, "pid": faults_pid, "tid": tid, "args": args,
            }));
        } else {
            ev.push(json!({
                "name": f.label, "cat": "fault", "ph": "X",
                "ts": f.start_us, "dur": f.end_us - f.start_us,
                "pid": faults_pid, "tid": tid, "args": args,
            }));
        }
    }
    for row in 0..row_ends.len() {
        let tid = row as u64 + 1;
        ev.push(meta(
            "thread_name",
            faults_pid,
            tid,
            json!({ "name": format!("faults {tid}") }),
        ));
    }

    client_ops(&mut ev, t, pid_of(t.lanes.len() + 1));

    let doc = json!({
        "traceEvents": ev,
        "displayTimeUnit": "ms",
        "otherData": {
            "generator": "faultline",
            "scenario": scenario,
            "seed": seed.seed.to_string(),
            "trace_hash": seed.trace_hash,
            "replay": seed.replay,
            "clock": "simulated microseconds",
        },
    });
    // Serializing a Value cannot fail; an empty document would still load.
    serde_json::to_string(&doc).unwrap_or_else(|_| "{\"traceEvents\":[]}".to_string())
}

/// Every client operation as a complete event, on its client's thread of process `pid`.
fn client_ops(ev: &mut Vec<Value>, t: &Timeline, pid: u64) {
    if t.ops.is_empty() {
        return;
    }
    ev.push(meta(
        "process_name",
        pid,
        0,
        json!({ "name": "client operations" }),
    ));
    ev.push(meta(
        "process_sort_index",
        pid,
        0,
        json!({ "sort_index": t.lanes.len() }),
    ));
    // Per lane, the end of each of its threads' last operation and the threads' ids.
    let mut rows: Vec<Vec<(u64, u64)>> = vec![Vec::new(); t.op_lanes.len()];
    let mut next_tid = 1u64;
    for (lane, op) in &t.ops {
        let Some(lane_rows) = rows.get_mut(*lane) else {
            continue;
        };
        let (start, end) = op_span(op, t.end_us);
        let tid = match lane_rows.iter_mut().find(|(e, _)| *e <= start) {
            Some(row) => {
                row.0 = end;
                row.1
            }
            None => {
                let tid = next_tid;
                next_tid += 1;
                let name = &t.op_lanes[*lane];
                let name = match lane_rows.len() {
                    0 => name.clone(),
                    n => format!("{name} ({})", n + 1),
                };
                ev.push(meta("thread_name", pid, tid, json!({ "name": name })));
                ev.push(meta(
                    "thread_sort_index",
                    pid,
                    tid,
                    json!({ "sort_index": tid }),
                ));
                lane_rows.push((end, tid));
                tid
            }
        };
        let named = !op.named_by.is_empty();
        let mut e = json!({
            "name": op_title(op), "cat": if named { "client-op,named" } else { "client-op" },
            "ph": "X", "ts": start, "dur": end - start, "pid": pid, "tid": tid,
            "args": {
                "client": op.client, "seq": op.seq, "outcome": op.outcome.as_str(),
                "collection": op.collection, "key": op.key, "value": op.value,
                "read": op.read, "index": op.index, "term": op.term,
                "completed_us": op.completed_us,
                "named_by": op.named_by.iter().map(|k| k.as_str()).collect::<Vec<_>>(),
            },
        });
        if named {
            e["cname"] = json!("terrible");
        } else if op.outcome == OpOutcome::Unknown {
            e["args"]["note"] =
                json!("outcome unknown: may take effect any time after its invocation, or never");
        }
        ev.push(e);
    }
}

fn pid_of(lane: usize) -> u64 {
    lane as u64 + 1
}

fn meta(name: &str, pid: u64, tid: u64, args: Value) -> Value {
    json!({ "name": name, "ph": "M", "ts": 0, "pid": pid, "tid": tid, "args": args })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::tests::sample;
    use std::collections::{BTreeMap, BTreeSet};

    /// Checks the fields the Chrome Trace Event Format (and Perfetto's JSON importer) require for
    /// each phase; returns the events for further checks.
    fn check_schema(doc: &str) -> Vec<Value> {
        let v: Value = serde_json::from_str(doc).expect("valid JSON");
        assert_eq!(v["displayTimeUnit"], "ms");
        let events = v["traceEvents"]
            .as_array()
            .expect("traceEvents array")
            .clone();
        let mut named_pids = BTreeSet::new();
        let mut used_pids = BTreeSet::new();
        for e in &events {
            let ctx = e.to_string();
            assert!(e["name"].is_string(), "name: {ctx}");
            let ph = e["ph"].as_str().unwrap_or_else(|| panic!("ph: {ctx}"));
            assert!(e["pid"].is_u64(), "pid: {ctx}");
            assert!(e["tid"].is_u64(), "tid: {ctx}");
            match ph {
                "M" => {
                    let args = e["args"].as_object().unwrap_or_else(|| panic!("{ctx}"));
                    match e["name"].as_str().unwrap() {
                        "process_name" | "thread_name" => {
                            assert!(args["name"].is_string(), "{ctx}")
                        }
                        "process_sort_index" | "thread_sort_index" => {
                            assert!(args["sort_index"].is_i64(), "{ctx}")
                        }
                        other => panic!("unknown metadata event {other}: {ctx}"),
                    }
                    if e["name"] == "process_name" {
                        assert!(
                            named_pids.insert(e["pid"].as_u64().unwrap()),
                            "one name per process: {ctx}"
                        );
                    }
                }
                "X" => {
                    assert!(e["ts"].is_u64(), "ts: {ctx}");
                    assert!(e["dur"].is_u64(), "dur: {ctx}");
                }
                "i" => {
                    assert!(e["ts"].is_u64(), "ts: {ctx}");
                    let s = e["s"].as_str().unwrap_or_else(|| panic!("s: {ctx}"));
                    assert!(["g", "p", "t"].contains(&s), "scope: {ctx}");
                }
                "C" => {
                    assert!(e["ts"].is_u64(), "ts: {ctx}");
                    let args = e["args"].as_object().unwrap_or_else(|| panic!("{ctx}"));
                    assert!(!args.is_empty() && args.values().all(Value::is_number));
                }
                other => panic!("unexpected phase {other}: {ctx}"),
            }
            if ph != "M" {
                used_pids.insert(e["pid"].as_u64().unwrap());
            }
        }
        assert!(
            used_pids.is_subset(&named_pids),
            "every process with events is named: {used_pids:?} vs {named_pids:?}"
        );
        events
    }

    #[test]
    fn every_event_has_the_fields_its_phase_requires() {
        let (seed, trace) = sample();
        let events = check_schema(&render("x", &seed, &trace));
        let names: BTreeMap<u64, String> = events
            .iter()
            .filter(|e| e["name"] == "process_name")
            .map(|e| {
                (
                    e["pid"].as_u64().unwrap(),
                    e["args"]["name"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let pid = |n: &str| *names.iter().find(|(_, v)| v.starts_with(n)).unwrap().0;
        let has = |pid: u64, ph: &str, name: &str| {
            events
                .iter()
                .any(|e| e["pid"] == pid && e["ph"] == ph && e["name"] == name)
        };
        assert!(has(pid("n1"), "X", "leader t1"));
        assert!(has(pid("n1"), "i", "leader"));
        assert!(has(pid("n3"), "X", "aborted"));
        assert!(has(pid("n3"), "i", "VIOLATION node-abort"));
        assert!(has(pid("cluster"), "i", "VIOLATION durability"));
        assert!(has(pid("faults"), "X", "partition"));
        assert!(has(pid("faults"), "i", "restart"));
        assert!(has(pid("n1"), "C", "applies, commits per slice"));
        let v = events
            .iter()
            .find(|e| e["name"] == "VIOLATION durability")
            .unwrap();
        assert_eq!(
            (v["s"].as_str(), v["ts"].as_u64()),
            (Some("g"), Some(6_100_000))
        );
    }

    #[test]
    fn spans_on_one_thread_never_overlap() {
        let (seed, mut trace) = sample();
        for i in 0..20 {
            trace.push(crate::timeline::tests::ev(
                100 + i * 50,
                "controller",
                "fault",
                "loss 10/1000 for 1000 ms",
            ));
        }
        trace.sort_by_key(|e| e.at_us);
        let events = check_schema(&render("x", &seed, &trace));
        let mut by_thread: BTreeMap<(u64, u64), Vec<(u64, u64)>> = BTreeMap::new();
        for e in events.iter().filter(|e| e["ph"] == "X") {
            let ts = e["ts"].as_u64().unwrap();
            by_thread
                .entry((e["pid"].as_u64().unwrap(), e["tid"].as_u64().unwrap()))
                .or_default()
                .push((ts, ts + e["dur"].as_u64().unwrap()));
        }
        for (thread, mut spans) in by_thread {
            spans.sort_unstable();
            for w in spans.windows(2) {
                assert!(w[0].1 <= w[1].0, "{thread:?}: {w:?}");
            }
        }
    }

    #[test]
    fn client_ops_are_slices_on_per_client_threads() {
        let (seed, trace) = sample();
        let mut ops = crate::timeline::tests::sample_ops();
        // Two concurrent DDL operations: the second goes to a second thread of that lane.
        let mut other = ops[6].clone();
        other.seq = 2;
        other.invoked_us += 10_000;
        ops.push(other);
        let events = check_schema(&render_with_ops("x", &seed, &trace, &ops));
        let pid = events
            .iter()
            .find(|e| e["name"] == "process_name" && e["args"]["name"] == "client operations")
            .map(|e| e["pid"].as_u64().unwrap())
            .expect("a client operations process");
        let threads: BTreeMap<u64, String> = events
            .iter()
            .filter(|e| e["pid"] == pid && e["name"] == "thread_name")
            .map(|e| {
                (
                    e["tid"].as_u64().unwrap(),
                    e["args"]["name"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let names: BTreeSet<&str> = threads.values().map(String::as_str).collect();
        assert_eq!(
            names,
            BTreeSet::from(["client 0", "client 1", "ddl", "ddl (2)"])
        );
        let slices: Vec<&Value> = events
            .iter()
            .filter(|e| e["pid"] == pid && e["ph"] == "X")
            .collect();
        assert_eq!(slices.len(), ops.len(), "every op is a slice");
        let read = slices.iter().find(|e| e["name"] == "get c0/k2").unwrap();
        assert_eq!(threads[&read["tid"].as_u64().unwrap()], "client 1");
        assert_eq!(
            (read["ts"].as_u64(), read["dur"].as_u64()),
            (Some(1_600_000), Some(300_000))
        );
        assert_eq!(read["args"]["outcome"], "ok");
        assert_eq!(read["args"]["index"], 12);
        assert_eq!(read["args"]["read"], "\"w1\"");
        assert_eq!(read["cname"], "terrible");
        assert_eq!(
            read["args"]["named_by"],
            json!(["linearizability", "durability"])
        );
        let open = slices
            .iter()
            .find(|e| e["args"]["outcome"] == "unknown" && e["args"]["completed_us"].is_null())
            .unwrap();
        assert_eq!(
            open["ts"].as_u64().unwrap() + open["dur"].as_u64().unwrap(),
            6_100_000
        );
    }

    #[test]
    fn empty_input_is_still_a_loadable_trace() {
        check_schema(&render("", &SeedReport::default(), &[]));
    }
}
