//! The polling loop of one worker core. It owns RX and TX queue `queue` on every data port and
//! every exception-path TAP, never blocks and takes no lock: updates arrive through its own
//! lock-free ring and are applied between bursts.

use crate::counters::DropReason;
use crate::doorbell::Doorbell;
use crate::dpdk::{self, Mbuf, Mempool};
use crate::pipeline::{Ingress, Neighbor, Pipeline, Retired, Update, Verdict};
use crossbeam::queue::ArrayQueue;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Something a worker tells the control thread.
#[derive(Debug)]
pub enum Event {
    NeighborLearned(Neighbor),
    /// What an update replaced, to be freed by the control thread.
    Retired(Retired),
    /// Traffic for a protect policy (by id) with no SA.
    Acquire(u32, esp::wire::FlowKey),
    /// The outbound SA in `slot` (with this SPI) reached the sequence number from which it
    /// asks to be replaced, or (`exhausted`) its last one.
    SeqLimit {
        slot: usize,
        spi: u32,
        exhausted: bool,
    },
}

/// The DPDK port ids a worker polls.
#[derive(Clone, Debug)]
pub struct PortIds {
    /// Data ports, in configuration order.
    pub data: Vec<u16>,
    /// The exception-path TAP of each data port.
    pub tap: Vec<u16>,
}

/// Frames a worker keeps while their next hop is resolved (in all, across next hops), and
/// for how long: what does not get a neighbour within a second is dropped, counted NoNeighbor.
const MAX_HELD: usize = 64;

struct Held {
    mbuf: Mbuf,
    port: usize,
    hop: std::net::IpAddr,
    since: u64,
}

/// ESP frames for SPIs not installed yet ([`Verdict::Park`]) a worker keeps, and for how long
/// (a fraction of a second): enough for the control plane to install the new inbound SA of a
/// rekey it started, bounded so that ESP with made-up SPIs costs little. What is not claimed in
/// time, or finds the parking full, is dropped, counted UnknownSpi.
const MAX_PARKED: usize = 128;
const PARK_TIME_DIVISOR: u64 = 20; // 50 ms

struct Parked {
    mbuf: Mbuf,
    port: usize,
    since: u64,
}

pub struct Worker {
    pub pipeline: Pipeline,
    pub ports: PortIds,
    pub queue: u16,
    pub burst: usize,
    pub pool: Mempool,
    pub updates: Arc<ArrayQueue<Update>>,
    pub events: Arc<ArrayQueue<Event>>,
    /// Rung after pushing events, so that a sleeping control thread collects them at once.
    pub doorbell: Arc<Doorbell>,
    pub stop: Arc<AtomicBool>,
    /// Sleep this long after a loop that received nothing (0: spin).
    pub idle_sleep: Duration,
}

impl Worker {
    pub fn run(mut self) {
        let n_ports = self.ports.data.len();
        let mut rx: Vec<Mbuf> = Vec::with_capacity(self.burst);
        // As many verdicts as `rx_burst` may return packets: it fills the vector's capacity,
        // which `with_capacity` promises to be at least, not exactly, the burst.
        let mut verdicts = vec![Verdict::Drop(DropReason::NoRoute); rx.capacity()];
        // One TX staging vector per data port and per TAP.
        let mut tx_data: Vec<Vec<Mbuf>> = (0..n_ports).map(|_| Vec::with_capacity(self.burst * 2)).collect();
        let mut tx_tap: Vec<Vec<Mbuf>> = (0..n_ports).map(|_| Vec::with_capacity(self.burst * 2)).collect();
        let mut solicit_frame = [0u8; 86];
        let mut held: Vec<Held> = Vec::with_capacity(MAX_HELD);
        let mut parked: Vec<Parked> = Vec::with_capacity(MAX_PARKED);
        let mut idle_loops: u32 = 0;

        while !self.stop.load(Ordering::Relaxed) {
            let mut updated = false;
            // Whether this round pushed an event for the control thread (rung for below).
            let mut told = false;
            while let Some(u) = self.updates.pop() {
                updated = true;
                let retired = self.pipeline.apply(u);
                self.pipeline.counters().note_update_applied();
                if let Some(r) = retired {
                    // A full ring frees it here instead: rare, and still between bursts.
                    let _ = self.events.push(Event::Retired(r));
                    told = true;
                }
            }
            if !parked.is_empty() {
                self.unpark(&mut parked, updated, &mut tx_data, &mut tx_tap, &mut held);
            }

            let mut got = 0;
            for p in 0..n_ports {
                for ingress in [Ingress::Port(p), Ingress::Host(p)] {
                    let port_id = match ingress {
                        Ingress::Port(p) => self.ports.data[p],
                        Ingress::Host(p) => self.ports.tap[p],
                    };
                    let n = dpdk::rx_burst(port_id, self.queue, &mut rx);
                    if n == 0 {
                        continue;
                    }
                    got += n;
                    // The stages need each packet in one contiguous segment (jumbo chains are
                    // not supported); anything else is dropped here, counted.
                    let counters = self.pipeline.counters();
                    rx.retain(|m| {
                        let ok = m.is_contiguous();
                        if !ok {
                            counters.rx.add(1);
                            counters.count_drop(DropReason::MultiSegment);
                        }
                        ok
                    });
                    let now = dpdk::tsc();
                    self.pipeline.process_burst(ingress, &mut rx, &mut verdicts, now);
                    for (m, v) in rx.drain(..).zip(verdicts.iter()) {
                        match *v {
                            Verdict::Port(o) => tx_data[usize::from(o)].push(m),
                            Verdict::Host(o) => tx_tap[usize::from(o)].push(m),
                            Verdict::Hold { port, hop } => self.hold(&mut held, m, port, hop, now),
                            Verdict::Park => match ingress {
                                Ingress::Port(port) if parked.len() < MAX_PARKED => {
                                    self.pipeline.counters().parked.add(1);
                                    parked.push(Parked { mbuf: m, port, since: now })
                                }
                                _ => self.pipeline.counters().count_drop(DropReason::UnknownSpi),
                            },
                            Verdict::Drop(_) => drop(m),
                        }
                    }
                }
            }

            // Frames waiting for a neighbour: send those now resolved, give up on old ones.
            if !held.is_empty() {
                let now = dpdk::tsc();
                let hz = dpdk::tsc_hz();
                let mut i = 0;
                while i < held.len() {
                    let h = &held[i];
                    if let Some(mac) = self.pipeline.neighbor(h.port, h.hop) {
                        let mut h = held.swap_remove(i);
                        h.mbuf.data_mut()[..6].copy_from_slice(&mac.0);
                        tx_data[h.port].push(h.mbuf);
                    } else if now.wrapping_sub(h.since) > hz {
                        held.swap_remove(i);
                        self.pipeline.counters().count_drop(DropReason::NoNeighbor);
                    } else {
                        i += 1;
                    }
                }
            }

            // Ask for unresolved next hops.
            let solicit = std::mem::take(&mut self.pipeline.solicit);
            for &(port, ip) in &solicit {
                if let Some(len) = self.pipeline.solicitation(port, ip, &mut solicit_frame)
                    && let Some(m) = Mbuf::from_slice(&self.pool, &solicit_frame[..len])
                {
                    tx_data[port].push(m);
                }
            }
            self.pipeline.solicit = solicit;
            self.pipeline.solicit.clear();

            for p in 0..n_ports {
                self.flush(self.ports.data[p], &mut tx_data[p]);
                self.flush(self.ports.tap[p], &mut tx_tap[p]);
            }

            // Every event wakes the control thread: neighbours other workers may be holding
            // frames for and acquires must be passed on at once, and what the updates retired
            // must leave the ring before a mass rekey or removal fills it (the other events
            // would then be lost). The system call is made only while the thread sleeps.
            told |= !self.pipeline.learned.is_empty() || !self.pipeline.acquire.is_empty();
            for n in self.pipeline.learned.drain(..) {
                // With the ring full the others do not hear of it: they solicit the
                // neighbour themselves when they need it.
                let _ = self.events.push(Event::NeighborLearned(n));
            }
            for (id, k) in self.pipeline.acquire.drain(..) {
                let _ = self.events.push(Event::Acquire(id, k));
            }
            // Not to be lost on a full ring: nothing would report the crossing again.
            let mut sent = 0;
            for &(slot, spi, exhausted) in &self.pipeline.seq_limits {
                if self.events.push(Event::SeqLimit { slot, spi, exhausted }).is_err() {
                    break;
                }
                sent += 1;
            }
            told |= sent > 0;
            self.pipeline.seq_limits.drain(..sent);
            if told {
                self.doorbell.ring();
            }

            if got == 0 {
                idle_loops = idle_loops.saturating_add(1);
                // Back off only after a few empty polls, so bursts of traffic stay on the spin path.
                if !self.idle_sleep.is_zero() && idle_loops > 64 {
                    std::thread::sleep(self.idle_sleep);
                }
            } else {
                idle_loops = 0;
            }
        }
    }

    /// Parked frames: offered again after updates (a new SA may claim them), dropped once too
    /// old. They leave in arrival order with respect to each other.
    fn unpark(
        &mut self,
        parked: &mut Vec<Parked>,
        updated: bool,
        tx_data: &mut [Vec<Mbuf>],
        tx_tap: &mut [Vec<Mbuf>],
        held: &mut Vec<Held>,
    ) {
        let now = dpdk::tsc();
        let limit = dpdk::tsc_hz() / PARK_TIME_DIVISOR;
        let before = parked.len();
        parked.retain(|p| now.wrapping_sub(p.since) <= limit);
        for _ in parked.len()..before {
            self.pipeline.counters().count_drop(DropReason::UnknownSpi);
        }
        if !updated || parked.is_empty() {
            return;
        }
        let mut verdicts = vec![Verdict::Park; parked.len()];
        let mut again = Vec::with_capacity(parked.len());
        // Frames from one port at a time, in their order.
        for port in 0..self.ports.data.len() {
            let (mut mine, since): (Vec<Mbuf>, Vec<u64>) = {
                let mut m = Vec::new();
                let mut s = Vec::new();
                let mut i = 0;
                while i < parked.len() {
                    if parked[i].port == port {
                        let p = parked.remove(i);
                        m.push(p.mbuf);
                        s.push(p.since);
                    } else {
                        i += 1;
                    }
                }
                (m, s)
            };
            if mine.is_empty() {
                continue;
            }
            self.pipeline.reprocess(port, &mut mine, &mut verdicts, now);
            for ((m, v), since) in mine.drain(..).zip(verdicts.iter()).zip(since) {
                match *v {
                    Verdict::Port(o) => tx_data[usize::from(o)].push(m),
                    Verdict::Host(o) => tx_tap[usize::from(o)].push(m),
                    Verdict::Hold { port, hop } => self.hold(held, m, port, hop, now),
                    Verdict::Park => again.push(Parked { mbuf: m, port, since }),
                    Verdict::Drop(_) => drop(m),
                }
            }
        }
        *parked = again;
    }

    /// Keeps a frame of [`Verdict::Hold`] until its next hop is resolved, if there is room.
    fn hold(&self, held: &mut Vec<Held>, m: Mbuf, port: u16, hop: u16, now: u64) {
        match self.pipeline.held_hop(hop) {
            Some(hop) if held.len() < MAX_HELD => held.push(Held { mbuf: m, port: usize::from(port), hop, since: now }),
            _ => self.pipeline.counters().count_drop(DropReason::NoNeighbor),
        }
    }

    fn flush(&self, port: u16, pkts: &mut Vec<Mbuf>) {
        if pkts.is_empty() {
            return;
        }
        let c = self.pipeline.counters();
        let sent = dpdk::tx_burst(port, self.queue, pkts);
        c.tx.add(sent as u64);
        if !pkts.is_empty() {
            // One retry: a queue that is still full drops the rest, counted.
            let again = dpdk::tx_burst(port, self.queue, pkts);
            c.tx.add(again as u64);
            for _ in 0..pkts.len() {
                c.count_drop(DropReason::TxFull);
            }
            pkts.clear();
        }
    }
}
