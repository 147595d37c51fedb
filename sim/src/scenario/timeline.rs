//! Timeline items (the scripted faults) and node selectors: their types, their JSON form
//! (read with the path of a bad field) and what each item spans and targets.

use super::*;

/// Which nodes an action targets, resolved when the action fires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    Node(u8),
    Leader,
    Followers,
    /// One follower, chosen by the seed.
    Standby,
    /// A minority of the replicas (at least one), chosen by the seed.
    Minority,
    All,
    PageService,
    Kms,
}

impl Selector {
    /// The replicas this selector means now, for both worlds; `None` for the page service and
    /// the KMS (the engine's world handles those). `replicas` are all of them, `up` the live
    /// ones, `leader` is asked only by selectors that need it, and `draw(lo, hi)` draws from
    /// `lo..hi` on the world's chaos stream (the seed's choice of standby and minority).
    pub fn replicas(
        &self,
        replicas: Vec<u8>,
        up: &[u8],
        leader: impl FnOnce() -> Option<u8>,
        mut draw: impl FnMut(usize, usize) -> usize,
    ) -> Option<Vec<u8>> {
        Some(match self {
            Selector::Node(n) => vec![*n],
            Selector::All => replicas,
            Selector::Leader => leader().into_iter().collect(),
            Selector::Followers => {
                let l = leader();
                replicas.into_iter().filter(|i| Some(*i) != l).collect()
            }
            Selector::Standby => {
                let l = leader();
                let f: Vec<u8> = up.iter().copied().filter(|i| Some(*i) != l).collect();
                if f.is_empty() {
                    return Some(vec![]);
                }
                vec![f[draw(0, f.len())]]
            }
            Selector::Minority => {
                let mut all = replicas;
                let size = draw(1, ((all.len() - 1) / 2).max(1) + 1).max(1);
                // Fisher-Yates prefix: a seed-chosen subset of that size.
                for k in 0..size.min(all.len()) {
                    let j = draw(k, all.len());
                    all.swap(k, j);
                }
                all.truncate(size);
                all.sort_unstable();
                all
            }
            Selector::PageService | Selector::Kms => return None,
        })
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::Node(i) => write!(f, "n{i}"),
            Selector::Leader => f.write_str("leader"),
            Selector::Followers => f.write_str("followers"),
            Selector::Standby => f.write_str("standby"),
            Selector::Minority => f.write_str("minority"),
            Selector::All => f.write_str("all"),
            Selector::PageService => f.write_str("page-service"),
            Selector::Kms => f.write_str("kms"),
        }
    }
}

impl std::str::FromStr for Selector {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "leader" => Selector::Leader,
            "followers" => Selector::Followers,
            "standby" => Selector::Standby,
            "minority" => Selector::Minority,
            "all" => Selector::All,
            "page-service" => Selector::PageService,
            "kms" => Selector::Kms,
            _ => match s.strip_prefix('n').and_then(|n| n.parse::<u8>().ok()) {
                Some(i) if i >= 1 => Selector::Node(i),
                _ => {
                    return Err(format!(
                        "unknown node selector `{s}` (expected n1.., leader, followers, standby, minority, all, page-service, kms)"
                    ))
                }
            },
        })
    }
}

impl Serialize for Selector {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Selector {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Selector {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Selector".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A node selector, resolved when the action fires: `n1`.. (a replica), \
                `leader`, `followers`, `standby` (one follower chosen by the seed), `minority` (a \
                seed-chosen minority of the replicas, at least one; needs 3 or more), `all`, \
                `page-service`, `kms`.",
            "type": "string",
            "pattern": "^(n[1-9][0-9]*|leader|followers|standby|minority|all|page-service|kms)$"
        })
    }
}

/// Defines [`TimelineItem`] and, from the same variant list, [`ByAction`]: the same items
/// externally tagged (`{"partition": {"at_ms": ...}}`). serde buffers an internally tagged enum
/// before it reads the variant's fields, so a path-tracking deserializer loses the path there
/// and serde_json can only point at the end of the object; `ByAction` is read from the buffered
/// item with its own path tracking, which names the field (`timeline[6].for_ms`).
macro_rules! timeline_items {
    (
        $(#[$emeta:meta])*
        pub enum TimelineItem {
            $(
                $(#[$vmeta:meta])*
                $variant:ident { $( $(#[$fmeta:meta])* $field:ident : $ty:ty ),* $(,)? }
            ),* $(,)?
        }
    ) => {
        $(#[$emeta])*
        pub enum TimelineItem {
            $( $(#[$vmeta])* $variant { $( $(#[$fmeta])* $field : $ty ),* } ),*
        }

        #[derive(Deserialize, JsonSchema)]
        #[serde(rename_all = "snake_case", deny_unknown_fields)]
        #[allow(dead_code)] // only its Deserialize is used; JsonSchema for the field attributes
        enum ByAction {
            $( $variant { $( $(#[$fmeta])* $field : $ty ),* } ),*
        }

        impl From<ByAction> for TimelineItem {
            fn from(b: ByAction) -> Self {
                match b {
                    $( ByAction::$variant { $( $field ),* } => TimelineItem::$variant { $( $field ),* } ),*
                }
            }
        }
    };
}

timeline_items! {
// Each variant carries its own `at_ms` so unknown fields stay rejected. Serialized with its
// `action` as a tag; deserialized through [`ByAction`] (see `timeline_items!`), which rejects
// unknown and duplicate fields alike.
/// One scripted fault: an `action` and its fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum TimelineItem {
    /// Kill the nodes at once; each comes back after a delay drawn from `down_ms`, and with
    /// `straggler_ms` one of them (chosen by the seed) comes back that much later still.
    Restart {
        /// When it fires: simulated ms from the start, before `duration_ms`.
        at_ms: u64,
        /// The nodes it targets (one node selector).
        nodes: Selector,
        #[serde(default = "d_down_ms")]
        /// How long each node stays down, `[min, max]` ms (default `[200, 1000]`).
        down_ms: [u64; 2],
        #[serde(default, skip_serializing_if = "Option::is_none")]
        /// One node (chosen by the seed) comes back this much later still, `[min, max]` ms.
        straggler_ms: Option<[u64; 2]>,
    },
    /// Kill the nodes; they stay down until `start` or the liveness phase (or for good, with
    /// `permanent`).
    Kill {
        /// When it fires: simulated ms from the start, before `duration_ms`.
        at_ms: u64,
        /// The nodes it targets (one node selector).
        nodes: Selector,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        /// Down for good: the liveness phase does not restart them, so the survivors must
        /// converge without them (a failover). Hosted systems only.
        permanent: bool,
    },
    /// Start the nodes again (those a `kill` left down).
    Start {
        /// When it fires: simulated ms from the start, before `duration_ms`.
        at_ms: u64,
        /// The nodes it targets (one node selector).
        nodes: Selector,
    },
    /// Cut the nodes off from every other node (both directions) for `for_ms`.
    Partition {
        /// When it fires: simulated ms from the start, before `duration_ms`.
        at_ms: u64,
        /// The nodes it targets (one node selector).
        nodes: Selector,
        /// How long it lasts, in simulated ms (at most an hour).
        for_ms: u64,
    },
    /// Drop traffic from one node to another (one direction) for `for_ms`.
    ClogLink {
        /// When it fires: simulated ms from the start, before `duration_ms`.
        at_ms: u64,
        /// The sending side (a node selector).
        from: Selector,
        /// The receiving side (a node selector).
        to: Selector,
        /// How long it lasts, in simulated ms (at most an hour).
        for_ms: u64,
    },
    /// Stop the nodes' tasks (a GC or VM stall) for `for_ms`; messages queue meanwhile.
    Pause {
        /// When it fires: simulated ms from the start, before `duration_ms`.
        at_ms: u64,
        /// The nodes it targets (one node selector).
        nodes: Selector,
        /// How long it lasts, in simulated ms (at most an hour).
        for_ms: u64,
    },
    /// Change the one-way latency range for `for_ms` (a latency spike).
    Latency {
        /// When it fires: simulated ms from the start, before `duration_ms`.
        at_ms: u64,
        /// The one-way latency range `[min, max]` meanwhile.
        latency_ms: [u64; 2],
        /// How long it lasts, in simulated ms (at most an hour).
        for_ms: u64,
    },
    /// Give the links from `from` to `to` a latency range of their own for `for_ms` (one
    /// follower slower than another, so followers overtake each other). Hosted systems only.
    LinkLatency {
        /// When it fires: simulated ms from the start, before `duration_ms`.
        at_ms: u64,
        /// The sending side (a node selector).
        from: Selector,
        /// The receiving side (a node selector).
        to: Selector,
        /// The one-way latency range `[min, max]` on those links meanwhile.
        latency_ms: [u64; 2],
        /// How long it lasts, in simulated ms (at most an hour).
        for_ms: u64,
    },
    /// Hold the nodes' fsyncs for `for_ms` (a stalled disk): what they append meanwhile is not
    /// durable, and a kill loses it. Hosted systems only.
    HoldFlushes {
        /// When it fires: simulated ms from the start, before `duration_ms`.
        at_ms: u64,
        /// The nodes it targets (one node selector).
        nodes: Selector,
        /// How long it lasts, in simulated ms (at most an hour).
        for_ms: u64,
    },
    /// Raise packet loss for `for_ms`.
    Loss {
        /// When it fires: simulated ms from the start, before `duration_ms`.
        at_ms: u64,
        /// Datagrams lost meanwhile, per mille.
        per_mille: u32,
        /// How long it lasts, in simulated ms (at most an hour).
        for_ms: u64,
    },
    /// Remove every partition, clog and extra loss now.
    Heal {
        /// When it fires: simulated ms from the start, before `duration_ms`.
        at_ms: u64,
    },
    /// Create a collection (a DDL entry through the leader).
    CreateCollection {
        /// When it fires: simulated ms from the start, before `duration_ms`.
        at_ms: u64,
        /// The collection to create.
        name: String,
    },
    /// Drop a collection (a DDL entry through the leader).
    DropCollection {
        /// When it fires: simulated ms from the start, before `duration_ms`.
        at_ms: u64,
        /// The collection to drop (forced: it may reach a table a drain is copying).
        name: String,
    },
    /// Switch a failpoint on at `per_mille` for `for_ms` (then back to the scenario's rate).
    Failpoint {
        /// When it fires: simulated ms from the start, before `duration_ms`.
        at_ms: u64,
        /// The failpoint: `addr-pack`, `page-put`, `keystore-flush-slow` or `drain-slow`.
        name: String,
        /// How often it fires meanwhile, per mille.
        per_mille: u32,
        /// How long it lasts, in simulated ms (at most an hour).
        for_ms: u64,
    },
    /// Rotate the KEK: an administrative command to the leader, applied as an oplog entry.
    RotateKek {
        /// When it fires: simulated ms from the start, before `duration_ms`.
        at_ms: u64,
    },
    /// Rotate the CMK held by the KMS, the same way.
    RotateCmk {
        /// When it fires: simulated ms from the start, before `duration_ms`.
        at_ms: u64,
    },
    /// Ask the leader to step down (it stands aside while another node takes over).
    StepDown {
        /// When it fires: simulated ms from the start, before `duration_ms`.
        at_ms: u64,
    },
    /// For `for_ms`, each datagram from `from` to `to` is held back, with probability
    /// `per_mille`/1000, for a time drawn from `delay_ms`: one message overtaken by later ones
    /// on the same link. `all` on a side means anyone, clients included.
    Delay {
        /// When it fires: simulated ms from the start, before `duration_ms`.
        at_ms: u64,
        /// The sending side (a node selector).
        from: Selector,
        /// The receiving side (a node selector).
        to: Selector,
        /// Share of datagrams held back, per mille.
        per_mille: u32,
        /// How long a held-back datagram waits, `[min, max]` ms.
        delay_ms: [u64; 2],
        /// How long it lasts, in simulated ms (at most an hour).
        for_ms: u64,
    },
    /// For `for_ms`, each datagram from `from` to `to` is delivered twice (the copy 1–500 ms
    /// later) with probability `per_mille`/1000.
    Duplicate {
        /// When it fires: simulated ms from the start, before `duration_ms`.
        at_ms: u64,
        /// The sending side (a node selector).
        from: Selector,
        /// The receiving side (a node selector).
        to: Selector,
        /// Share of datagrams delivered twice, per mille.
        per_mille: u32,
        /// How long it lasts, in simulated ms (at most an hour).
        for_ms: u64,
    },
    /// For `for_ms`, a node reaching one of the engine's crash points (`point`, or any when
    /// omitted) is killed right there with probability `per_mille`/1000 and comes back after
    /// `down_ms`; never more than a minority of replicas at once.
    CrashPoints {
        /// When it fires: simulated ms from the start, before `duration_ms`.
        at_ms: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        /// The crash point (any when omitted): `raft-written`, `raft-synced`, `pages-written`,
        /// `pages-synced`, `checkpoint-put`, `checkpoint-wrapped`, `checkpoint-published`,
        /// `pickup-loaded`, `step-up-fenced`, `keystore-put`.
        point: Option<String>,
        /// Chance that a node reaching the point is killed there, per mille.
        per_mille: u32,
        #[serde(default = "d_down_ms")]
        /// How long each node stays down, `[min, max]` ms (default `[200, 1000]`).
        down_ms: [u64; 2],
        /// How long it lasts, in simulated ms (at most an hour).
        for_ms: u64,
    },
    /// The disk of each node lies once in `kind`'s way (a bit flipped in synced raft log data,
    /// or the next sync of a log append lost or written at the wrong offset); the node is
    /// restarted soon after so recovery meets the damage. The engine must detect it (a node
    /// that refuses to start on a damaged disk is retired, not a finding); silent wrong data is
    /// a finding. At most a minority of replicas per run.
    DiskFault {
        /// When it fires: simulated ms from the start, before `duration_ms`.
        at_ms: u64,
        /// The nodes it targets (one node selector).
        nodes: Selector,
        /// How the disk lies.
        kind: DiskFaultKind,
        #[serde(default = "d_down_ms")]
        /// How long each node stays down, `[min, max]` ms (default `[200, 1000]`).
        down_ms: [u64; 2],
    },
}
}

/// Prefix of an error inside a timeline item that names the field within the item
/// (``field `for_ms`: missing field `for_ms` ``); `Scenario::parse` moves it into the path.
pub(super) const ITEM_FIELD: &str = "field `";

impl<'de> Deserialize<'de> for TimelineItem {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        use serde_json::Value;
        let mut fields = d.deserialize_map(ItemFields)?;
        let action = match fields.remove("action") {
            Some(Value::String(a)) => a,
            Some(other) => {
                return Err(D::Error::custom(format!(
                    "{ITEM_FIELD}action`: {other} is not an action name"
                )))
            }
            None => return Err(D::Error::missing_field("action")),
        };
        let tagged = Value::Object([(action, Value::Object(fields))].into_iter().collect());
        serde_path_to_error::deserialize::<_, ByAction>(tagged)
            .map(TimelineItem::from)
            .map_err(|e| {
                use serde_path_to_error::Segment;
                let mut segments = e.path().iter();
                // The first segment is the variant; without one, the action was unknown.
                let within = match segments.next() {
                    None => "action".to_string(),
                    Some(_) => segments
                        .map(|s| match s {
                            Segment::Seq { index } => format!("[{index}]"),
                            s => format!(".{s}"),
                        })
                        .collect::<String>()
                        .trim_start_matches('.')
                        .to_string(),
                };
                // A missing field is named by the message alone; `json_error` reads it there.
                if within.is_empty() {
                    D::Error::custom(e.inner())
                } else {
                    D::Error::custom(format!("{ITEM_FIELD}{within}`: {}", e.inner()))
                }
            })
    }
}

/// A timeline item's fields, read as JSON values; a field given twice is refused (a JSON object
/// with a repeated key is legal, but which value would win is anyone's guess).
pub(super) struct ItemFields;

impl<'de> serde::de::Visitor<'de> for ItemFields {
    type Value = serde_json::Map<String, serde_json::Value>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a timeline item: an object with an `action` and its fields")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if fields.contains_key(&key) {
                return Err(serde::de::Error::custom(format!(
                    "{ITEM_FIELD}{key}`: duplicate field `{key}`"
                )));
            }
            let value = map.next_value()?;
            fields.insert(key, value);
        }
        Ok(fields)
    }
}

/// How a disk lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DiskFaultKind {
    /// A bit flipped in synced raft log data at rest.
    BitFlip,
    /// The next sync of a log append is lost.
    LostWrite,
    /// The next log append is written at the wrong offset.
    MisdirectedWrite,
}

impl DiskFaultKind {
    pub const ALL: [DiskFaultKind; 3] = [
        DiskFaultKind::BitFlip,
        DiskFaultKind::LostWrite,
        DiskFaultKind::MisdirectedWrite,
    ];
}

impl std::fmt::Display for DiskFaultKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DiskFaultKind::BitFlip => "bit flip",
            DiskFaultKind::LostWrite => "lost write",
            DiskFaultKind::MisdirectedWrite => "misdirected write",
        })
    }
}

pub(super) fn d_down_ms() -> [u64; 2] {
    [200, 1_000]
}

impl TimelineItem {
    pub fn at_ms(&self) -> u64 {
        match self {
            TimelineItem::Restart { at_ms, .. }
            | TimelineItem::Kill { at_ms, .. }
            | TimelineItem::Start { at_ms, .. }
            | TimelineItem::Partition { at_ms, .. }
            | TimelineItem::ClogLink { at_ms, .. }
            | TimelineItem::Pause { at_ms, .. }
            | TimelineItem::Loss { at_ms, .. }
            | TimelineItem::Latency { at_ms, .. }
            | TimelineItem::LinkLatency { at_ms, .. }
            | TimelineItem::HoldFlushes { at_ms, .. }
            | TimelineItem::Heal { at_ms }
            | TimelineItem::Failpoint { at_ms, .. }
            | TimelineItem::CreateCollection { at_ms, .. }
            | TimelineItem::DropCollection { at_ms, .. }
            | TimelineItem::RotateKek { at_ms }
            | TimelineItem::RotateCmk { at_ms }
            | TimelineItem::StepDown { at_ms }
            | TimelineItem::Delay { at_ms, .. }
            | TimelineItem::Duplicate { at_ms, .. }
            | TimelineItem::CrashPoints { at_ms, .. }
            | TimelineItem::DiskFault { at_ms, .. } => *at_ms,
        }
    }
    pub fn action(&self) -> &'static str {
        match self {
            TimelineItem::Restart { .. } => "restart",
            TimelineItem::Kill { .. } => "kill",
            TimelineItem::Start { .. } => "start",
            TimelineItem::Partition { .. } => "partition",
            TimelineItem::ClogLink { .. } => "clog_link",
            TimelineItem::Pause { .. } => "pause",
            TimelineItem::Loss { .. } => "loss",
            TimelineItem::Latency { .. } => "latency",
            TimelineItem::LinkLatency { .. } => "link_latency",
            TimelineItem::HoldFlushes { .. } => "hold_flushes",
            TimelineItem::Heal { .. } => "heal",
            TimelineItem::Failpoint { .. } => "failpoint",
            TimelineItem::CreateCollection { .. } => "create_collection",
            TimelineItem::DropCollection { .. } => "drop_collection",
            TimelineItem::RotateKek { .. } => "rotate_kek",
            TimelineItem::RotateCmk { .. } => "rotate_cmk",
            TimelineItem::StepDown { .. } => "step_down",
            TimelineItem::Delay { .. } => "delay",
            TimelineItem::Duplicate { .. } => "duplicate",
            TimelineItem::CrashPoints { .. } => "crash_points",
            TimelineItem::DiskFault { .. } => "disk_fault",
        }
    }
    /// The item's spans of simulated time (the largest of a range), by field.
    pub(super) fn spans(&self) -> Vec<(&'static str, u64)> {
        match self {
            TimelineItem::Restart {
                down_ms,
                straggler_ms,
                ..
            } => {
                let mut v = vec![("down_ms", down_ms[0].max(down_ms[1]))];
                v.extend(straggler_ms.map(|s| ("straggler_ms", s[0].max(s[1]))));
                v
            }
            TimelineItem::CrashPoints {
                down_ms, for_ms, ..
            } => vec![("down_ms", down_ms[0].max(down_ms[1])), ("for_ms", *for_ms)],
            TimelineItem::DiskFault { down_ms, .. } => {
                vec![("down_ms", down_ms[0].max(down_ms[1]))]
            }
            TimelineItem::Partition { for_ms, .. }
            | TimelineItem::ClogLink { for_ms, .. }
            | TimelineItem::Pause { for_ms, .. }
            | TimelineItem::Latency { for_ms, .. }
            | TimelineItem::LinkLatency { for_ms, .. }
            | TimelineItem::HoldFlushes { for_ms, .. }
            | TimelineItem::Loss { for_ms, .. }
            | TimelineItem::Failpoint { for_ms, .. }
            | TimelineItem::Delay { for_ms, .. }
            | TimelineItem::Duplicate { for_ms, .. } => vec![("for_ms", *for_ms)],
            _ => vec![],
        }
    }

    pub(super) fn selectors(&self) -> Vec<(&'static str, &Selector)> {
        match self {
            TimelineItem::Restart { nodes, .. }
            | TimelineItem::Kill { nodes, .. }
            | TimelineItem::Start { nodes, .. }
            | TimelineItem::Partition { nodes, .. }
            | TimelineItem::Pause { nodes, .. }
            | TimelineItem::HoldFlushes { nodes, .. }
            | TimelineItem::DiskFault { nodes, .. } => vec![("nodes", nodes)],
            TimelineItem::ClogLink { from, to, .. }
            | TimelineItem::LinkLatency { from, to, .. }
            | TimelineItem::Delay { from, to, .. }
            | TimelineItem::Duplicate { from, to, .. } => vec![("from", from), ("to", to)],
            _ => vec![],
        }
    }
}
