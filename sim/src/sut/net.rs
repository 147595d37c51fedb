//! The harness's hold on a hosted system's network and fsyncs.
//!
//! [`Links`]: the fate of every message. A system's transport asks [`Links::deliver`] when it
//! sends (lost, or delivered after its own delay: messages on one link overtake each other, as
//! datagrams or separate connections do) and [`Links::open`] when the message falls due (a
//! partition or clog that started meanwhile catches messages in flight). The timeline and the
//! chaos controller change the rules. Node [`super::CLIENTS`] stands for every client.
//!
//! [`FlushGate`]: awaited before each fsync; the harness draws its latency and can hold a
//! node's flushes (a slow disk), which delays what the system may count as durable.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

struct Rules {
    /// Every link's one-way delay range (µs), drawn per message.
    delay_us: Range<u64>,
    /// Overrides for single directed links (`link_latency`).
    link_delay_us: BTreeMap<(u8, u8), Range<u64>>,
    loss_per_mille: u32,
    /// Directed links dropping everything, counted so overlapping faults compose.
    clogged: BTreeMap<(u8, u8), u32>,
    down: BTreeSet<u8>,
    /// Nodes whose fsyncs wait (counted, like clogs).
    flush_held: BTreeMap<u8, u32>,
    fsync_us: Range<u64>,
    rng: ChaCha8Rng,
    sent: u64,
    dropped: u64,
}

/// The network rules in force. Cloning shares them.
#[derive(Clone)]
pub struct Links(Arc<Mutex<Rules>>);

impl Links {
    /// Rules with every link at `latency_ms` (`[min, max]`), no loss, nothing clogged; draws
    /// from `seed`'s own stream.
    pub fn new(seed: u64, [lo, hi]: [u64; 2]) -> Links {
        Links(Arc::new(Mutex::new(Rules {
            delay_us: lo * 1000..hi * 1000 + 1,
            link_delay_us: BTreeMap::new(),
            loss_per_mille: 0,
            clogged: BTreeMap::new(),
            down: BTreeSet::new(),
            flush_held: BTreeMap::new(),
            fsync_us: 500..1_501,
            rng: ChaCha8Rng::seed_from_u64(seed),
            sent: 0,
            dropped: 0,
        })))
    }

    fn lock(&self) -> MutexGuard<'_, Rules> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A message from `from` to `to` is sent now: `None` if it is lost (loss, or the link is
    /// clogged), else its delay.
    pub fn deliver(&self, from: u8, to: u8) -> Option<Duration> {
        let mut g = self.lock();
        g.sent += 1;
        let loss = g.loss_per_mille;
        let lost = loss > 0 && g.rng.gen_range(0..1000) < loss;
        if lost || g.clogged.contains_key(&(from, to)) {
            g.dropped += 1;
            return None;
        }
        let range = g
            .link_delay_us
            .get(&(from, to))
            .cloned()
            .unwrap_or_else(|| g.delay_us.clone());
        let us = g.rng.gen_range(range);
        Some(Duration::from_micros(us))
    }

    /// Whether a message on `from -> to` falling due now arrives (a clog catches it in flight).
    pub fn open(&self, from: u8, to: u8) -> bool {
        let mut g = self.lock();
        let open = !g.clogged.contains_key(&(from, to));
        if !open {
            g.dropped += 1;
        }
        open
    }

    /// The harness killed `node` and has not restarted it (a connection to it is refused).
    pub fn is_down(&self, node: u8) -> bool {
        self.lock().down.contains(&node)
    }

    /// (sent, dropped) so far.
    pub fn stats(&self) -> (u64, u64) {
        let g = self.lock();
        (g.sent, g.dropped)
    }

    // ---- the harness's side ----

    pub fn set_down(&self, node: u8, down: bool) {
        let mut g = self.lock();
        if down {
            g.down.insert(node);
        } else {
            g.down.remove(&node);
        }
    }

    pub fn clog(&self, from: u8, to: u8) {
        *self.lock().clogged.entry((from, to)).or_default() += 1;
    }

    pub fn unclog(&self, from: u8, to: u8) {
        let mut g = self.lock();
        if let Some(n) = g.clogged.get_mut(&(from, to)) {
            *n -= 1;
            if *n == 0 {
                g.clogged.remove(&(from, to));
            }
        }
    }

    /// Every latency range (`[min, max]` ms) for every link; returns the previous range (µs).
    pub fn set_latency_ms(&self, [lo, hi]: [u64; 2]) -> Range<u64> {
        std::mem::replace(&mut self.lock().delay_us, lo * 1000..hi * 1000 + 1)
    }

    pub fn restore_latency_us(&self, range: Range<u64>) {
        self.lock().delay_us = range;
    }

    /// One directed link's own latency range (`None` clears it back to the common one).
    pub fn set_link_latency_ms(&self, from: u8, to: u8, range: Option<[u64; 2]>) {
        let mut g = self.lock();
        match range {
            Some([lo, hi]) => {
                g.link_delay_us.insert((from, to), lo * 1000..hi * 1000 + 1);
            }
            None => {
                g.link_delay_us.remove(&(from, to));
            }
        }
    }

    /// Every link back on the common latency range.
    pub fn clear_link_latencies(&self) {
        self.lock().link_delay_us.clear();
    }

    /// Returns the previous loss.
    pub fn set_loss_per_mille(&self, p: u32) -> u32 {
        std::mem::replace(&mut self.lock().loss_per_mille, p.min(1000))
    }

    /// Every clog and partition removed (the liveness phase).
    pub fn heal(&self) {
        let mut g = self.lock();
        g.clogged.clear();
        g.flush_held.clear();
    }

    pub fn hold_flushes(&self, node: u8) {
        *self.lock().flush_held.entry(node).or_default() += 1;
    }

    pub fn release_flushes(&self, node: u8) {
        let mut g = self.lock();
        if let Some(n) = g.flush_held.get_mut(&node) {
            *n -= 1;
            if *n == 0 {
                g.flush_held.remove(&node);
            }
        }
    }

    /// The gate node `node`'s fsyncs await.
    pub fn flush_gate(&self, node: u8) -> FlushGate {
        FlushGate {
            node,
            links: self.clone(),
        }
    }
}

/// Awaited before each fsync of one node (see the module doc).
#[derive(Clone)]
pub struct FlushGate {
    node: u8,
    links: Links,
}

impl FlushGate {
    /// Waits while the harness holds this node's flushes, then for the drawn fsync latency.
    pub async fn wait(&self) {
        loop {
            let (held, us) = {
                let mut g = self.links.lock();
                let held = g.flush_held.contains_key(&self.node);
                let range = g.fsync_us.clone();
                (held, (!held).then(|| g.rng.gen_range(range)))
            };
            if !held {
                madsim::time::sleep(Duration::from_micros(us.unwrap_or(0))).await;
                return;
            }
            madsim::time::sleep(Duration::from_millis(1)).await;
        }
    }
}
