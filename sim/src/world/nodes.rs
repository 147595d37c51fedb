use super::*;

pub fn replica_addr(id: NodeId) -> SocketAddr {
    SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, id)),
        engine::wire::REPLICA_PORT,
    )
}
pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 1);

pub fn page_service_addr() -> SocketAddr {
    SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(10, 0, 2, 1)),
        engine::wire::PAGE_SERVICE_PORT,
    )
}

pub fn kms_addr() -> SocketAddr {
    SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(10, 0, 3, 1)),
        engine::wire::KMS_PORT,
    )
}

/// How often a replica's raft ticks (the bench's simulator floor ticks as often).
pub const REPLICA_TICK_MS: u64 = 10;

impl World {
    /// The one way the world builds a node: `name` at `ip`, recorded in the slot of `id`. Every
    /// incarnation runs `serve(world)`: the first, and each restart (madsim restarts a node by
    /// calling its init again, so restarts build nothing of their own).
    fn build_node<F, Fut>(self: &Arc<Self>, id: NodeId, name: String, ip: IpAddr, serve: F)
    where
        F: Fn(Arc<World>) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + 'static,
    {
        let w = self.clone();
        let node = Handle::current()
            .create_node()
            .name(name)
            .ip(ip)
            .init(move || serve(w.clone()))
            .build();
        self.lock().slots.entry(id).or_default().madsim_id = Some(node.id());
    }

    pub(super) fn build_page_service(self: &Arc<Self>) {
        let ip = page_service_addr().ip();
        self.build_node(PAGE_SERVICE_NODE, "ps".into(), ip, |w| async move {
            let (disk, _) = w.incarnate(PAGE_SERVICE_NODE);
            let cfg = PageServiceConfig {
                addr: page_service_addr(),
                fsync_ms: 1,
            };
            engine::page_service::run(cfg, Arc::new(disk), w.clone()).await
        });
    }

    pub(super) fn build_kms(self: &Arc<Self>) {
        self.build_node(KMS_NODE, "kms".into(), kms_addr().ip(), |w| async move {
            let inc = w.next_incarnation(KMS_NODE);
            let cfg = KmsConfig {
                addr: kms_addr(),
                seed: derive_seed(w.seed, "kms", 0),
                nonce_seed: derive_seed(w.seed, "kms-nonces", inc),
            };
            engine::kms::run(cfg, w.clone()).await
        });
    }

    pub(super) fn madsim_id(&self, id: NodeId) -> madsim::task::NodeId {
        self.lock().slots[&id]
            .madsim_id
            .expect("replica node built")
    }

    /// Marks node `id` up as a new incarnation; returns its number.
    pub(super) fn next_incarnation(&self, id: NodeId) -> u64 {
        let mut st = self.lock();
        let slot = st.slots.entry(id).or_default();
        slot.incarnation += 1;
        slot.up = true;
        slot.incarnation
    }

    /// A new incarnation of replica `id`: its disk handle and election seed.
    pub(super) fn incarnate(self: &Arc<Self>, id: NodeId) -> (crate::disk::DiskHandle, u64) {
        let inc = self.next_incarnation(id);
        (
            self.disk.open(id).profiled(self.profile.clone()),
            derive_seed(self.seed, "election", (id as u64) << 32 | inc),
        )
    }

    pub(super) fn build_replicas(self: &Arc<Self>) {
        let members: BTreeMap<NodeId, SocketAddr> = self
            .replicas()
            .into_iter()
            .map(|i| (i, replica_addr(i)))
            .collect();
        for id in self.replicas() {
            let members = members.clone();
            let ip = replica_addr(id).ip();
            self.build_node(id, format!("n{id}"), ip, move |w| {
                let members = members.clone();
                async move {
                    let (disk, rng_seed) = w.incarnate(id);
                    let cfg = w.replica_config(id, members, rng_seed);
                    engine::replica::run(cfg, Arc::new(disk), w.clone()).await
                }
            });
        }
    }

    fn replica_config(
        &self,
        id: NodeId,
        members: BTreeMap<NodeId, SocketAddr>,
        rng_seed: u64,
    ) -> ReplicaConfig {
        let ckpt_ms = self.checkpoint_interval_ms();
        ReplicaConfig {
            id,
            members,
            tick_ms: REPLICA_TICK_MS,
            knobs: self.knobs.clone(),
            rng_seed,
            link: LinkConfig::default(),
            fsync_ms: 1,
            page_service: page_service_addr(),
            checkpoint_interval_ms: ckpt_ms,
            pickup_interval_ms: (ckpt_ms / 2).clamp(50, 500),
            failpoints: self.failpoints.clone(),
            failpoint_seed: rng_seed ^ 0x6661_696c,
            drain_workers: self.scn.drain_workers.unwrap_or(2),
            kms: kms_addr(),
            keystore: self.genesis.clone(),
        }
    }

    pub(super) fn statuses(&self) -> BTreeMap<NodeId, NodeStatus> {
        let inspects: Vec<(NodeId, Arc<dyn Inspect>)> = {
            let st = self.lock();
            st.slots
                .iter()
                .filter_map(|(id, s)| Some((*id, s.inspect.clone()?)))
                .collect()
        };
        inspects
            .into_iter()
            .map(|(id, i)| (id, i.status()))
            .collect()
    }

    pub(super) fn current_leader(&self) -> Option<NodeId> {
        self.statuses()
            .values()
            .filter(|s| s.role == Role::Leader)
            .max_by_key(|s| s.term)
            .map(|s| s.id)
    }
}
