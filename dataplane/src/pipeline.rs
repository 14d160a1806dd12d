//! What a worker does to a burst of frames, independent of DPDK: classify, SAD/SPD lookups,
//! ESP encapsulation and decapsulation, inbound policy check, routing, neighbour resolution.
//! Generic over [`PacketBuf`], so the whole path is tested on plain buffers.
//!
//! Each call takes a burst and returns one [`Verdict`] per frame; the caller transmits or drops.
//! Outbound sequence numbers are reserved once per run of packets on the same SA (one atomic
//! add), so numbers stay unique across cores.

use crate::config::Role;
use crate::counters::{DropReason, WorkerCounters};
use crate::dpdk::{prefetch, prefetch_range};
use crate::hash::{FastMap, PrefetchMap};
use crate::net::{self, ETH_HDR_LEN, ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6, Mac, Prefix};
use crate::policy::{Action, Policy, Selector, Spd};
use crate::route::RouteTable;
use esp::buf::PacketBuf;
use esp::sa::{Authentic, InboundSa, OutboundSa};
use esp::wire::{self, Classified, FlowKey, PROTO_ICMPV6};
use std::net::IpAddr;

use std::sync::Arc;

/// Where a frame goes. Eight bytes, so that it lives in a register: a wider enum is built on
/// the stack field by field and read back whole, and that read cannot be forwarded from the
/// narrower stores (a store-forwarding stall, measured at about 8% of a 64-byte outbound
/// packet's time when `Hold` carried its address). Ports are indices into the pipeline's ports,
/// which number fewer than 2^16 (DPDK's port ids are 16-bit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Out of data port `n`.
    Port(u16),
    /// To the host stack through the exception-path TAP of data port `n`.
    Host(u16),
    /// Framed for data port `port` but the next hop is still being resolved: the caller
    /// holds the frame and fills in the destination MAC once the neighbour is known
    /// (a few frames, briefly, as a host's ARP queue does) instead of losing it. The next hop's
    /// address is [`Pipeline::held_hop`]`(hop)`, valid until the next burst.
    Hold {
        port: u16,
        hop: u16,
    },
    /// ESP for the gateway with an SPI no inbound SA has yet, the frame as it came (less any
    /// Ethernet padding). The caller may keep
    /// the frame briefly and offer it again ([`Pipeline::reprocess`]) once updates have been
    /// applied: when we rekey, the peer may send on the new SA before the control plane can
    /// install it (its keys need the peer's answer), and those packets are not lost. What
    /// is not claimed in time counts as [`DropReason::UnknownSpi`].
    Park,
    Drop(DropReason),
}

const _: () = assert!(std::mem::size_of::<Verdict>() <= 8);

/// A port index as verdicts carry it (`Pipeline::new` checks that every index fits).
#[inline]
fn id(port: usize) -> u16 {
    port as u16
}

/// Which interface a burst came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ingress {
    /// Data port `n`.
    Port(usize),
    /// The TAP of data port `n`: what the host stack sends goes out of that port unchanged.
    Host(usize),
}

#[derive(Clone, Debug)]
pub struct PortInfo {
    pub mac: Mac,
    pub role: Role,
    pub addresses: Vec<Prefix>,
    pub mtu: u16,
}

/// A link-layer address learned or needed by this worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Neighbor {
    pub port: usize,
    pub ip: IpAddr,
    pub mac: Mac,
}

/// An inbound SA as a worker holds it: the SA (its anti-replay window shared with the other
/// workers' copies), its slot for the counters, and the traffic selectors decrypted packets
/// must match (RFC 4301 5.2), written as outbound policies are (local side as `src`).
/// Cache-line aligned, as `OutboundSa` is, and laid out in order, so that what a packet reads
/// lies in the first [`InboundEntry::HOT_LEN`] bytes.
#[derive(Debug, Clone)]
#[repr(C, align(64))]
pub struct InboundEntry {
    pub slot: usize,
    pub selectors: Arc<[Selector]>,
    pub sa: InboundSa,
}

impl InboundEntry {
    pub const HOT_LEN: usize = std::mem::offset_of!(InboundEntry, sa) + InboundSa::HOT_LEN;
}

// What a packet reads of its inbound SA fits two cache lines.
const _: () = assert!(InboundEntry::HOT_LEN <= 128);

/// A change the control thread hands to a worker through the worker's ring.
#[derive(Debug)]
pub enum Update {
    Neighbor(Neighbor),
    AddOutbound {
        slot: usize,
        sa: Box<OutboundSa>,
    },
    DelOutbound {
        slot: usize,
    },
    AddInbound(Box<InboundEntry>),
    DelInbound {
        spi: u32,
    },
    /// New selectors for the inbound SA with this SPI (its policies changed).
    SetInboundSelectors {
        spi: u32,
        selectors: Arc<[Selector]>,
    },
    /// Adds a policy, or replaces the one with the same id.
    SetPolicy(Policy),
    DelPolicy {
        id: u32,
    },
}

/// What an update replaced, returned to the control thread to be dropped there.
#[derive(Debug)]
pub enum Retired {
    Outbound(Box<OutboundSa>),
    Inbound(Box<InboundEntry>),
    Selectors(Arc<[Selector]>),
}

/// How often one worker may ask for the same neighbour, in TSC ticks per second divided by this.
const SOLICIT_PER_SECOND: u64 = 10;
/// Most neighbour events or solicitations kept between two drains; more are dropped (the
/// next burst will ask again).
const MAX_PENDING: usize = 64;
/// ICMP errors one worker may send per second.
const ICMP_ERRORS_PER_SECOND: u64 = 100;
/// At most this many bytes of each range of an SA's hot memory are prefetched before a burst
/// is sealed or opened: a burst's worth must not crowd the packets out of the first-level
/// cache (32 SAs x 1 KiB would fill most of it).
const KEY_STATE_PREFETCH: usize = 640;
/// At most this many bytes of an inbound SA's selectors are prefetched (a few selectors).
const SELECTORS_PREFETCH: usize = 256;
/// The burst phases prefetch only with more policies or inbound SAs than this. Below it the
/// hot state of every tunnel (about 1 KiB each way) stays in the core's own caches, and the
/// requests, mostly for the same few lines, cost more than they save (measured at 5% of a
/// 64-byte packet with one SA pair).
const PREFETCH_ABOVE: usize = 256;

/// One worker's view of the gateway: its own SA copies and neighbour cache, shared read-only
/// policy and routing tables.
pub struct Pipeline {
    ports: Vec<PortInfo>,
    /// The ports' addresses as (IPv6, address bits, port), for the per-packet question whether
    /// a packet is for the gateway (twice for each inbound packet): comparing `IpAddr`s
    /// through each port's prefixes took 4% of the samples of 64-byte outbound packets on
    /// one SA pair, and half as many instructions now (callgrind: 27 against 12 a packet).
    own: Vec<(bool, u128, usize)>,
    /// This worker's own copy of the SPD, changed policy by policy.
    spd: Spd,
    routes: Arc<RouteTable>,
    /// Outbound SAs by slot (the control thread hands out slots), each with its egress.
    outbound: Vec<OutSlot>,
    /// SPI to (SA index, SA).
    inbound: PrefetchMap<u32, Box<InboundEntry>>,
    neighbors: FastMap<(usize, IpAddr), Mac>,
    counters: Arc<WorkerCounters>,
    /// Neighbours seen on the wire, for the control thread to share with the other workers.
    pub learned: Vec<Neighbor>,
    /// Next hops to solicit now (port, ip).
    pub solicit: Vec<(usize, IpAddr)>,
    /// Traffic that matched a protect policy without an SA: (policy id, the packet's flow),
    /// for the control plane to negotiate one. At most one per policy per second per worker.
    pub acquire: Vec<(u32, FlowKey)>,
    /// Outbound SAs whose sequence counter this worker took to the point where the SA asks to
    /// be replaced (false) or to its last number (true): (slot, SPI, exhausted). Each number
    /// is reserved by one worker only (in disjoint runs), so each is reported once; the worker
    /// keeps the reports until the control thread's ring takes them.
    pub seq_limits: Vec<(usize, u32, bool)>,
    last_acquire: FastMap<u32, u64>,
    last_solicit: FastMap<(usize, IpAddr), u64>,
    tsc_hz: u64,
    /// Outbound packets of the burst that matched a protect policy naming an SA slot:
    /// (burst index, SA slot, policy id). They are checked and sealed after the SPD phase.
    pending: Vec<(usize, usize, u32)>,
    /// ESP packets of the burst: (burst index, outer headers, position of the SA in
    /// `inbound`), opened after the whole burst is classified.
    pending_in: Vec<(usize, wire::EspOuter, usize)>,
    /// Packets of the burst in the clear, for the SPD: (burst index, flow).
    pending_clear: Vec<(usize, FlowKey)>,
    /// What opening each of `pending_in` gave (see `decrypt_pending`).
    opened: Vec<Result<Authentic, DropReason>>,
    /// Next hops of this burst's [`Verdict::Hold`]s.
    held_hops: Vec<IpAddr>,
    /// TSC of the last ICMP error sent, for rate limiting.
    last_icmp: u64,
    /// The next hop [`Self::send`] found last: (`egress_gen` then, port, address, MAC).
    /// Decrypted packets mostly leave through one router, and hashing into the neighbour
    /// table for each of them was 7% of an inbound 64-byte packet's time through DPDK.
    last_hop: Option<(u64, usize, IpAddr, Mac)>,
    /// Bumped by what an egress depends on: an outbound SA added or removed, a neighbour
    /// learned or changed (routes never change while running).
    egress_gen: u64,
}

/// One outbound SA slot of a worker: the SA (`None` where empty) and where its packets leave,
/// looked up once instead of per packet and valid while `Pipeline::egress_gen` is unchanged.
/// Both in one cache line: with many tunnels each would be a cache miss of its own.
#[derive(Default)]
#[repr(align(64))]
struct OutSlot {
    sa: Option<Box<OutboundSa>>,
    egress: Option<Egress>,
}

/// The egress of an outbound SA's packets: port, Ethernet header and the port's MTU.
#[derive(Clone, Copy, Debug)]
struct Egress {
    generation: u64,
    port: usize,
    dst: Mac,
    src: Mac,
    ethertype: u16,
    mtu: usize,
}

impl Pipeline {
    /// A pipeline with no SAs and no policies yet: they arrive as [`Update`]s. `max_sas` is
    /// the number of SA slots (the per-SA counters are sized for it).
    pub fn new(
        ports: Vec<PortInfo>,
        routes: Arc<RouteTable>,
        max_sas: usize,
        counters: Arc<WorkerCounters>,
        tsc_hz: u64,
    ) -> Self {
        // Verdicts name ports in 16 bits.
        assert!(ports.len() <= usize::from(u16::MAX), "{} data ports", ports.len());
        let own = ports
            .iter()
            .enumerate()
            .flat_map(|(i, p)| p.addresses.iter().map(move |a| (a.addr.is_ipv6(), wire::addr_bits(a.addr), i)))
            .collect();
        Pipeline {
            ports,
            own,
            // About one policy per SA pair.
            spd: Spd::with_capacity(max_sas / 2),
            routes,
            outbound: (0..max_sas).map(|_| OutSlot::default()).collect(),
            inbound: PrefetchMap::default(),
            neighbors: FastMap::default(),
            counters,
            learned: Vec::with_capacity(MAX_PENDING),
            solicit: Vec::with_capacity(MAX_PENDING),
            acquire: Vec::with_capacity(MAX_PENDING),
            seq_limits: Vec::new(),
            last_solicit: FastMap::default(),
            last_acquire: FastMap::default(),
            tsc_hz: tsc_hz.max(1),
            pending: Vec::with_capacity(256),
            pending_in: Vec::with_capacity(256),
            pending_clear: Vec::with_capacity(256),
            opened: Vec::with_capacity(256),
            held_hops: Vec::new(),
            last_icmp: 0,
            last_hop: None,
            egress_gen: 1,
        }
    }

    /// Applies a change from the control thread (between bursts). What it replaces is handed
    /// back, to be freed off the fast path.
    pub fn apply(&mut self, u: Update) -> Option<Retired> {
        match u {
            Update::Neighbor(n) => {
                self.set_neighbor(n);
                None
            }
            Update::AddOutbound { slot, sa } => {
                self.egress_gen += 1;
                let old = self.outbound.get_mut(slot)?.sa.replace(sa);
                old.map(Retired::Outbound)
            }
            Update::DelOutbound { slot } => {
                self.egress_gen += 1;
                self.outbound.get_mut(slot)?.sa.take().map(Retired::Outbound)
            }
            Update::AddInbound(e) => self.inbound.insert(e.sa.spi, e).map(Retired::Inbound),
            Update::DelInbound { spi } => self.inbound.remove(&spi).map(Retired::Inbound),
            Update::SetInboundSelectors { spi, selectors } => {
                let e = self.inbound.get_mut(&spi)?;
                Some(Retired::Selectors(std::mem::replace(&mut e.selectors, selectors)))
            }
            Update::SetPolicy(p) => {
                self.spd.insert(p);
                None
            }
            Update::DelPolicy { id } => {
                self.spd.remove(id);
                None
            }
        }
    }

    pub fn counters(&self) -> &Arc<WorkerCounters> {
        &self.counters
    }

    pub fn ports(&self) -> &[PortInfo] {
        &self.ports
    }

    /// Adds or refreshes a neighbour (static configuration or shared by the control thread).
    /// True if it is new or its address changed.
    pub fn set_neighbor(&mut self, n: Neighbor) -> bool {
        let changed = self.neighbors.insert((n.port, n.ip), n.mac) != Some(n.mac);
        if changed {
            self.egress_gen += 1;
        }
        changed
    }

    /// Where outbound SA `slot`'s packets go: its route and resolved next hop, cached. `None`
    /// while the next hop is unresolved (the slow path asks for it and holds the packet).
    #[inline]
    fn egress(&mut self, slot: usize) -> Option<Egress> {
        let s = self.outbound.get(slot)?;
        if let Some(e) = s.egress
            && e.generation == self.egress_gen
        {
            return Some(e);
        }
        let remote = s.sa.as_ref()?.remote;
        let (port, hop) = self.routes.lookup(remote)?;
        let dst = *self.neighbors.get(&(port, hop))?;
        let ethertype = if remote.is_ipv4() { ETHERTYPE_IPV4 } else { ETHERTYPE_IPV6 };
        let p = &self.ports[port];
        let e = Egress { generation: self.egress_gen, port, dst, src: p.mac, ethertype, mtu: usize::from(p.mtu) };
        self.outbound[slot].egress = Some(e);
        Some(e)
    }

    /// The next hop of [`Verdict::Hold`]`{ hop, .. }` of the last burst.
    pub fn held_hop(&self, hop: u16) -> Option<IpAddr> {
        self.held_hops.get(usize::from(hop)).copied()
    }

    pub fn neighbor(&self, port: usize, ip: IpAddr) -> Option<Mac> {
        self.neighbors.get(&(port, ip)).copied()
    }

    /// Whether the burst phases prefetch (see [`PREFETCH_ABOVE`]): read from the table sizes,
    /// which change only between bursts.
    #[inline]
    fn prefetching(&self) -> bool {
        self.spd.len().max(self.inbound.len()) > PREFETCH_ABOVE
    }

    /// The data port whose addresses include `ip`, if `ip` is one of the gateway's own.
    #[inline]
    fn own_address(&self, ip: IpAddr) -> Option<usize> {
        let (v6, bits) = (ip.is_ipv6(), wire::addr_bits(ip));
        self.own.iter().find(|o| o.0 == v6 && o.1 == bits).map(|o| o.2)
    }

    /// Processes a burst; `verdicts[i]` tells where `pkts[i]` goes. `now` is the TSC.
    pub fn process_burst<B: PacketBuf>(
        &mut self,
        ingress: Ingress,
        pkts: &mut [B],
        verdicts: &mut [Verdict],
        now: u64,
    ) {
        self.counters.rx.add(pkts.len() as u64);
        self.process(ingress, pkts, verdicts, now);
    }

    /// Offers parked frames (all from data port `port`) again, after updates: like
    /// [`Self::process_burst`], but they were counted received when they first came.
    pub fn reprocess<B: PacketBuf>(&mut self, port: usize, pkts: &mut [B], verdicts: &mut [Verdict], now: u64) {
        self.process(Ingress::Port(port), pkts, verdicts, now);
    }

    /// A burst goes through in phases, so that the cache misses of its packets overlap: with
    /// thousands of tunnels every packet's policy, SA, key schedule and counters are in no
    /// cache, and a packet-by-packet walk would wait for each of them in turn (DPDK's
    /// ipsec-secgw and VPP prefetch the same way). Classifying a packet asks for its SPD slot
    /// (clear) or its SA (ESP); the SPD phase then asks for each protected packet's SA; the
    /// checks ask for each SA's key state; then the packets are opened or sealed.
    fn process<B: PacketBuf>(&mut self, ingress: Ingress, pkts: &mut [B], verdicts: &mut [Verdict], now: u64) {
        debug_assert!(verdicts.len() >= pkts.len());
        self.pending.clear();
        self.pending_in.clear();
        self.pending_clear.clear();
        self.held_hops.clear();
        for (i, pkt) in pkts.iter_mut().enumerate() {
            verdicts[i] = match ingress {
                Ingress::Host(p) => {
                    self.counters.from_host.add(1);
                    // Passed on unchanged, but never less than a frame (found by fuzzing).
                    if pkt.len() < ETH_HDR_LEN { Verdict::Drop(DropReason::RuntFrame) } else { Verdict::Port(id(p)) }
                }
                Ingress::Port(p) => self.classify(p, i, pkt),
            };
        }
        if let Ingress::Port(p) = ingress {
            self.apply_policies(p, pkts, verdicts, now);
        }
        self.decrypt_pending(pkts, verdicts, now);
        if let Ingress::Port(p) = ingress {
            self.check_pending(p, pkts, verdicts, now);
        }
        self.encrypt_pending(pkts, verdicts, now);
        for v in verdicts[..pkts.len()].iter() {
            match v {
                Verdict::Drop(r) => self.counters.count_drop(*r),
                Verdict::Host(_) => self.counters.to_host.add(1),
                Verdict::Port(_) | Verdict::Hold { .. } | Verdict::Park => {}
            }
        }
    }

    fn classify<B: PacketBuf>(&mut self, port: usize, idx: usize, pkt: &mut B) -> Verdict {
        let frame = pkt.data();
        if frame.len() < ETH_HDR_LEN {
            return Verdict::Drop(DropReason::RuntFrame);
        }
        let dmac = net::dst_mac(frame);
        if dmac != self.ports[port].mac && !dmac.is_multicast() {
            return Verdict::Drop(DropReason::NotForUs);
        }
        match net::ethertype(frame) {
            ETHERTYPE_ARP => {
                if let Some((ip, mac, _)) = net::arp_sender(&frame[ETH_HDR_LEN..]) {
                    self.learn(port, IpAddr::V4(ip), mac);
                }
                // The host stack answers ARP for the gateway's own addresses.
                Verdict::Host(id(port))
            }
            ETHERTYPE_IPV4 | ETHERTYPE_IPV6 => self.ip(port, idx, pkt),
            _ => Verdict::Drop(DropReason::UnsupportedEthertype),
        }
    }

    fn ip<B: PacketBuf>(&mut self, port: usize, idx: usize, pkt: &mut B) -> Verdict {
        // Work on the IP packet; the Ethernet header is rebuilt on the way out.
        let frame_len = pkt.len();
        let ip = &pkt.data()[ETH_HDR_LEN..];
        // One parse of the header gives the flow (for the SPD) and the length; packets for
        // the gateway are parsed again below, as ESP.
        let (key, ip_len) = match wire::flow_key_and_len(ip) {
            Ok(k) => k,
            Err(_) => return Verdict::Drop(DropReason::MalformedIp),
        };
        let (dst, v6) = (key.dst_ip(), key.v6);
        if v6
            && ip[6] == PROTO_ICMPV6
            && let Some((ip6, mac)) = net::ndp_learn(ip)
        {
            self.learn(port, IpAddr::V6(ip6), mac);
        }
        // Multicast, broadcast and IPv6 link-local traffic is never forwarded (RFC 4291 2.5.6);
        // what reaches the gateway is the host stack's (ND, MLD, router solicitations).
        let multicast = match dst {
            IpAddr::V4(a) => a.is_multicast() || a.is_broadcast(),
            IpAddr::V6(a) => a.is_multicast() || a.is_unicast_link_local(),
        };
        let ours = self.own_address(dst);
        if multicast {
            return Verdict::Host(id(port));
        }
        // For the gateway: ESP goes inbound; anything else (IKE with the non-ESP marker,
        // keepalives, ICMP) to the host stack.
        let esp = match ours.map(|_| wire::classify(ip)) {
            None => None,
            Some(Ok(Classified::Esp(o))) => Some(o),
            Some(Ok(Classified::Other)) => return Verdict::Host(id(port)),
            Some(Err(e)) => return Verdict::Drop(e.into()),
        };
        // Drop Ethernet padding after the IP packet, then the Ethernet header itself. Offsets
        // in `esp` are from the IP header, so they stay valid.
        if !pkt.trim(frame_len - ETH_HDR_LEN - ip_len) || !pkt.adj(ETH_HDR_LEN) {
            return Verdict::Drop(DropReason::MalformedIp);
        }
        if let Some(outer) = esp {
            return self.queue_inbound(idx, outer);
        }
        // The SPD is looked up once the whole burst is classified (see `process`). Prefetches
        // are skipped with few tunnels (see `PREFETCH_ABOVE`), for a packet between the same
        // addresses as the one before, and below for one on the same SA: what they would ask
        // for is in cache already, and asking again would only cost.
        if self.prefetching() && self.pending_clear.last().is_none_or(|(_, k)| (k.src, k.dst) != (key.src, key.dst)) {
            match self.ports[port].role {
                Role::Protected => self.spd.prefetch_outbound(&key),
                Role::Unprotected => self.spd.prefetch_inbound_clear(&key),
            }
        }
        self.pending_clear.push((idx, key));
        // Placeholder until `apply_policies` decides.
        Verdict::Drop(DropReason::NoRoom)
    }

    /// Phase 2 of the burst's packets in the clear (see `process`): the SPD says whether each
    /// is protected (and then its SA is asked for), bypasses or is discarded.
    fn apply_policies<B: PacketBuf>(&mut self, port: usize, pkts: &mut [B], verdicts: &mut [Verdict], now: u64) {
        if self.pending_clear.is_empty() {
            return;
        }
        let pending = std::mem::take(&mut self.pending_clear);
        for &(idx, key) in &pending {
            verdicts[idx] = self.apply_policy(port, idx, &mut pkts[idx], key, now);
        }
        self.pending_clear = pending;
    }

    fn apply_policy<B: PacketBuf>(&mut self, port: usize, idx: usize, pkt: &mut B, key: FlowKey, now: u64) -> Verdict {
        // A router verifies the header checksum of what it forwards (RFC 1812 5.2.2); `classify`
        // did for ESP to the gateway, the host stack does for the rest of its traffic. Sealed
        // unchecked, a corrupted header would cross the tunnel only to be dropped by the peer.
        if !key.v6 && !wire::ipv4_checksum_ok(pkt.data()) {
            return Verdict::Drop(DropReason::MalformedIp);
        }
        match self.ports[port].role {
            Role::Protected => match self.spd.lookup_outbound(&key).map(|p| (p.action, p.id)) {
                Some((Action::Protect { sa_out: None }, id)) => {
                    self.want_sa(id, key, now);
                    Verdict::Drop(DropReason::NoSa)
                }
                Some((Action::Protect { sa_out: Some(sa_out) }, id)) => {
                    // Ask for the slot (SA and egress, read next phase) and its counters.
                    if self.prefetching() && self.pending.last().is_none_or(|p| p.1 != sa_out) {
                        prefetch(self.outbound.as_ptr().wrapping_add(sa_out));
                        prefetch(self.counters.sa.addr(sa_out));
                    }
                    self.pending.push((idx, sa_out, id));
                    // Placeholder until `check_pending` and `encrypt_pending` decide.
                    Verdict::Drop(DropReason::NoRoom)
                }
                Some((Action::Bypass, _)) => {
                    self.counters.bypassed.add(1);
                    self.forward_clear(pkt, key.dst_ip(), now)
                }
                Some((Action::Discard, _)) => Verdict::Drop(DropReason::PolicyDiscard),
                None => Verdict::Drop(DropReason::NoPolicy),
            },
            Role::Unprotected => match self.spd.lookup_inbound_clear(&key).map(|p| p.action) {
                Some(Action::Bypass) => {
                    self.counters.bypassed.add(1);
                    self.forward_clear(pkt, key.dst_ip(), now)
                }
                Some(Action::Protect { .. }) => Verdict::Drop(DropReason::ClearForProtectedFlow),
                Some(Action::Discard) => Verdict::Drop(DropReason::PolicyDiscard),
                None => Verdict::Drop(DropReason::NoPolicy),
            },
        }
    }

    /// ESP addressed to the gateway: queued to be opened with the rest of the burst, its SPI's
    /// slot in the SAD asked for.
    fn queue_inbound(&mut self, idx: usize, outer: wire::EspOuter) -> Verdict {
        if self.prefetching() && self.pending_in.last().is_none_or(|p| p.1.spi() != outer.spi()) {
            self.inbound.prefetch(&outer.spi());
        }
        self.pending_in.push((idx, outer, 0));
        // Placeholder until `decrypt_pending` decides.
        Verdict::Drop(DropReason::NoRoom)
    }

    /// The burst's inbound ESP after classification (see `process`): find each packet's SA
    /// and ask for it; ask for each SA's key state, replay window, selectors and counters;
    /// then open the packets.
    fn decrypt_pending<B: PacketBuf>(&mut self, pkts: &mut [B], verdicts: &mut [Verdict], now: u64) {
        if self.pending_in.is_empty() {
            return;
        }
        let mut pending = std::mem::take(&mut self.pending_in);
        let mut last = usize::MAX;
        let prefetching = self.prefetching();
        pending.retain_mut(|(idx, outer, pos)| match self.inbound.find(&outer.spi()) {
            Some(p) => {
                if prefetching
                    && p != last
                    && let Some(entry) = self.inbound.at(p)
                {
                    prefetch_range((&raw const **entry).cast(), InboundEntry::HOT_LEN, InboundEntry::HOT_LEN);
                }
                (*pos, last) = (p, p);
                true
            }
            None => {
                // No SA (yet): give the frame back as it came, its Ethernet header still in
                // front of the data, for the worker to park (see Verdict::Park).
                verdicts[*idx] = match pkts[*idx].prepend(ETH_HDR_LEN) {
                    Some(_) => Verdict::Park,
                    None => Verdict::Drop(DropReason::UnknownSpi),
                };
                false
            }
        });
        let mut last = usize::MAX;
        for &(_, ref outer, pos) in pending.iter().filter(|_| prefetching) {
            if pos == last {
                continue;
            }
            last = pos;
            if let Some(e) = self.inbound.at(pos) {
                // (The next packets on the SA have numbers close by: the same slot, mostly.)
                for (at, len) in e.sa.hot_memory(outer.seq_low()) {
                    prefetch_range(at, len, KEY_STATE_PREFETCH);
                }
                // All of the selectors, not only the first line: a single one (46 bytes,
                // 16-byte aligned) spans two lines half the time, and the miss on the second
                // was a third of this phase's time with 100,000 tunnels.
                prefetch_range(e.selectors.as_ptr().cast(), size_of_val(&*e.selectors), SELECTORS_PREFETCH);
                prefetch(self.counters.sa.addr(e.slot));
            }
        }
        // Every packet is opened before any is read back (see `InboundSa::open`).
        self.opened.clear();
        for &(idx, ref outer, pos) in &pending {
            // `find` above found the SA, and updates are applied only between bursts.
            let opened = match self.inbound.at(pos) {
                Some(e) => e.sa.open(outer, &mut pkts[idx]).map_err(DropReason::from),
                None => Err(DropReason::UnknownSpi),
            };
            self.opened.push(opened);
        }
        let mut opened = std::mem::take(&mut self.opened);
        // The authenticated numbers go into each SA's anti-replay window a run of packets on
        // the same SA at a time (see `InboundSa::commit_run`), before any packet is finished.
        let mut i = 0;
        while i < pending.len() {
            let pos = pending[i].2;
            let n = pending[i..].iter().take_while(|p| p.2 == pos).count();
            if let Some(e) = self.inbound.at(pos) {
                e.sa.commit_run(&mut opened[i..i + n]);
            }
            i += n;
        }
        for (&(idx, ref outer, pos), authentic) in pending.iter().zip(opened.drain(..)) {
            verdicts[idx] = match authentic {
                Ok(a) => self.inbound_esp(&mut pkts[idx], outer, pos, a, now),
                Err(r) => Verdict::Drop(r),
            };
        }
        self.opened = opened;
        self.pending_in = pending;
    }

    /// ESP addressed to the gateway (plain or in UDP 4500, classified as `outer`) that the SA
    /// at `pos` in `inbound` opened: finished (see `InboundSa::finish`), checked against the
    /// SA's selectors and forwarded.
    fn inbound_esp<B: PacketBuf>(
        &mut self,
        pkt: &mut B,
        outer: &wire::EspOuter,
        pos: usize,
        authentic: Authentic,
        now: u64,
    ) -> Verdict {
        let Some(entry) = self.inbound.at(pos) else {
            return Verdict::Drop(DropReason::UnknownSpi);
        };
        let sa_idx = entry.slot;
        if let Err(e) = entry.sa.finish(outer, pkt, authentic) {
            return Verdict::Drop(e.into());
        }
        let key = match wire::flow_key(pkt.data()) {
            Ok(k) => k,
            Err(_) => return Verdict::Drop(DropReason::BadInnerPacket),
        };
        // RFC 4301 5.2 step 4: the decrypted packet must match the selectors of its SA.
        if !entry.selectors.iter().any(|s| s.matches_reverse(&key)) {
            return Verdict::Drop(DropReason::InnerSelectorMismatch);
        }
        self.counters.decrypted.add(1);
        if let Some(c) = self.counters.sa.get(sa_idx) {
            c.packets.add(1);
            c.bytes.add(pkt.len() as u64);
        }
        if let Some(p) = self.own_address(key.dst_ip()) {
            // Inner packet for the gateway itself (say a ping of its protected address).
            return self.frame_for_host(pkt, p);
        }
        self.forward_clear(pkt, key.dst_ip(), now)
    }

    fn frame_for_host<B: PacketBuf>(&mut self, pkt: &mut B, port: usize) -> Verdict {
        let mac = self.ports[port].mac;
        let et = if pkt.data()[0] >> 4 == 4 { ETHERTYPE_IPV4 } else { ETHERTYPE_IPV6 };
        match pkt.prepend(ETH_HDR_LEN) {
            Some(f) => {
                net::write_eth(f, mac, mac, et);
                Verdict::Host(id(port))
            }
            None => Verdict::Drop(DropReason::NoRoom),
        }
    }

    /// Routes a plaintext IP packet (no Ethernet header) and frames it for its next hop.
    fn forward_clear<B: PacketBuf>(&mut self, pkt: &mut B, dst: IpAddr, now: u64) -> Verdict {
        if !net::decrement_ttl(pkt.data_mut()) {
            return Verdict::Drop(DropReason::TtlExpired);
        }
        self.send(pkt, dst, now)
    }

    /// Looks up the route and neighbour for `dst` and prepends the Ethernet header.
    fn send<B: PacketBuf>(&mut self, pkt: &mut B, dst: IpAddr, now: u64) -> Verdict {
        let Some((port, hop)) = self.routes.lookup(dst) else {
            return Verdict::Drop(DropReason::NoRoute);
        };
        if pkt.len() > usize::from(self.ports[port].mtu) {
            return Verdict::Drop(DropReason::MtuExceeded);
        }
        let mac = match self.last_hop {
            // Valid while no neighbour has changed (that bumps `egress_gen`).
            Some((generation, p, h, mac)) if generation == self.egress_gen && p == port && h == hop => Some(mac),
            _ => {
                let mac = self.neighbors.get(&(port, hop)).copied();
                match mac {
                    Some(m) => self.last_hop = Some((self.egress_gen, port, hop, m)),
                    None => self.want_neighbor(port, hop, now),
                }
                mac
            }
        };
        let et = if pkt.data()[0] >> 4 == 4 { ETHERTYPE_IPV4 } else { ETHERTYPE_IPV6 };
        let src = self.ports[port].mac;
        match pkt.prepend(ETH_HDR_LEN) {
            Some(f) => {
                net::write_eth(f, mac.unwrap_or_default(), src, et);
                match mac {
                    Some(_) => Verdict::Port(id(port)),
                    None => match u16::try_from(self.held_hops.len()) {
                        Ok(h) => {
                            self.held_hops.push(hop);
                            Verdict::Hold { port: id(port), hop: h }
                        }
                        Err(_) => Verdict::Drop(DropReason::NoNeighbor),
                    },
                }
            }
            None => Verdict::Drop(DropReason::NoRoom),
        }
    }

    /// Frames an encapsulated packet for its SA's known egress (what [`Self::send`] does,
    /// without the lookups).
    #[inline]
    fn frame_for<B: PacketBuf>(pkt: &mut B, e: &Egress) -> Verdict {
        if pkt.len() > e.mtu {
            return Verdict::Drop(DropReason::MtuExceeded);
        }
        match pkt.prepend(ETH_HDR_LEN) {
            Some(f) => {
                net::write_eth(f, e.dst, e.src, e.ethertype);
                Verdict::Port(id(e.port))
            }
            None => Verdict::Drop(DropReason::NoRoom),
        }
    }

    /// Path MTU discovery through the tunnel (RFC 4301 8.1, RFC 1191, RFC 8201): a packet
    /// that would not fit the egress port once encapsulated is answered with ICMP
    /// "fragmentation needed" (IPv4 with DF set) or ICMPv6 "packet too big", carrying the
    /// tunnel's MTU, and dropped. `None` if it fits.
    ///
    /// The packet counts as one `MtuExceeded` drop either way: through its verdict when it is
    /// only dropped, here when the answer takes its verdict. (The answer is a packet of its
    /// own: should the worker drop it later, for want of a neighbour or room to send, that
    /// counts too.)
    fn check_tunnel_mtu<B: PacketBuf>(
        &mut self,
        ingress: usize,
        sa_idx: usize,
        pkt: &mut B,
        now: u64,
    ) -> Option<Verdict> {
        let mtu = match self.egress(sa_idx) {
            Some(e) => e.mtu,
            None => {
                let remote = self.outbound.get(sa_idx)?.sa.as_ref()?.remote;
                usize::from(self.ports[self.routes.lookup(remote)?.0].mtu)
            }
        };
        let sa = self.outbound.get(sa_idx)?.sa.as_ref()?;
        if sa.encapsulated_len(pkt.len()) <= mtu {
            return None;
        }
        let tunnel_mtu = sa.max_inner_len(mtu);
        let data = pkt.data();
        let v4 = data[0] >> 4 == 4;
        if v4 && data[6] & 0x40 == 0 {
            // DF clear: the sender expects routers to fragment. Not supported yet: drop.
            return Some(Verdict::Drop(DropReason::MtuExceeded));
        }
        // RFC 1812 4.3.2.8 / RFC 4443 2.4(f): ICMP errors are rate limited.
        let gap = self.tsc_hz / ICMP_ERRORS_PER_SECOND;
        if self.last_icmp != 0 && now.wrapping_sub(self.last_icmp) < gap {
            return Some(Verdict::Drop(DropReason::MtuExceeded));
        }
        // The answer's source: an address of the port the packet came in by (the answer goes
        // back out of it), else any of the gateway's of that family (RFC 1812 4.3.2.4, RFC
        // 4443 2.2(c)).
        let family = |p: &PortInfo| p.addresses.iter().map(|a| a.addr).find(|a| a.is_ipv4() == v4);
        let Some(src) = family(&self.ports[ingress]).or_else(|| self.ports.iter().find_map(family)) else {
            return Some(Verdict::Drop(DropReason::MtuExceeded));
        };
        let Ok(key) = wire::flow_key(data) else {
            return Some(Verdict::Drop(DropReason::MtuExceeded));
        };
        // Never answer an ICMP error with another (RFC 1122 3.2.2, RFC 4443 2.4(e)).
        let is_error = match key.proto {
            wire::PROTO_ICMP => !matches!(key.sport, 0 | 8 | 13 | 15 | 17),
            PROTO_ICMPV6 => key.sport < 128,
            _ => false,
        };
        if is_error || !net::icmp_too_big(pkt, src, key.src_ip(), tunnel_mtu as u32) {
            return Some(Verdict::Drop(DropReason::MtuExceeded));
        }
        match self.send(pkt, key.src_ip(), now) {
            Verdict::Drop(_) => Some(Verdict::Drop(DropReason::MtuExceeded)),
            answer => {
                self.last_icmp = now.max(1);
                self.counters.count_drop(DropReason::MtuExceeded);
                Some(answer)
            }
        }
    }

    /// The burst's outbound packets after the SPD phase (see `process`): a request for each
    /// one's SA; then the checks (an SA in the slot, tunnel MTU, TTL), which drop or answer
    /// some packets, and a request for each remaining packet's key state and sequence counter.
    fn check_pending<B: PacketBuf>(&mut self, ingress: usize, pkts: &mut [B], verdicts: &mut [Verdict], now: u64) {
        if self.pending.is_empty() {
            return;
        }
        let prefetching = self.prefetching();
        let mut last = usize::MAX;
        for &(_, slot, _) in self.pending.iter().filter(|_| prefetching) {
            if slot != last
                && let Some(sa) = self.outbound.get(slot).and_then(|s| s.sa.as_ref())
            {
                prefetch_range((&raw const **sa).cast(), OutboundSa::HOT_LEN, OutboundSa::HOT_LEN);
            }
            last = slot;
        }
        let mut pending = std::mem::take(&mut self.pending);
        let mut last = usize::MAX;
        pending.retain(|&(idx, slot, policy)| {
            let pkt = &mut pkts[idx];
            if self.outbound.get(slot).is_none_or(|s| s.sa.is_none()) {
                // The policy names a slot whose SA is gone (expired, being rekeyed).
                if let Ok(key) = wire::flow_key(pkt.data()) {
                    self.want_sa(policy, key, now);
                }
                verdicts[idx] = Verdict::Drop(DropReason::NoSa);
                return false;
            }
            if let Some(v) = self.check_tunnel_mtu(ingress, slot, pkt, now) {
                verdicts[idx] = v;
                return false;
            }
            if !net::decrement_ttl(pkt.data_mut()) {
                verdicts[idx] = Verdict::Drop(DropReason::TtlExpired);
                return false;
            }
            if prefetching
                && slot != last
                && let Some(sa) = self.outbound.get(slot).and_then(|s| s.sa.as_ref())
            {
                for (at, len) in sa.hot_memory() {
                    prefetch_range(at, len, KEY_STATE_PREFETCH);
                }
            }
            last = slot;
            true
        });
        self.pending = pending;
    }

    /// Phase 3 of the burst's outbound packets: sequence numbers, sealing, framing.
    fn encrypt_pending<B: PacketBuf>(&mut self, pkts: &mut [B], verdicts: &mut [Verdict], now: u64) {
        let pending = std::mem::take(&mut self.pending);
        let mut i = 0;
        while i < pending.len() {
            let sa_idx = pending[i].1;
            let run = pending[i..].iter().take_while(|p| p.1 == sa_idx).count();
            // (`check_pending` dropped the packets whose slot is empty.)
            let Some(sa) = self.outbound.get(sa_idx).and_then(|s| s.sa.as_ref()) else {
                for p in &pending[i..i + run] {
                    verdicts[p.0] = Verdict::Drop(DropReason::NoSa);
                }
                i += run;
                continue;
            };
            // One atomic add per run: these numbers belong to this core alone.
            let first = sa.seq_counter().reserve(run as u64);
            let ours = |x: u64| x >= first && x - first < run as u64;
            if ours(sa.seq_soft()) {
                self.seq_limits.push((sa_idx, sa.spi, false));
            }
            if ours(sa.seq_last()) {
                self.seq_limits.push((sa_idx, sa.spi, true));
            }
            let egress = self.egress(sa_idx);
            for (k, p) in pending[i..i + run].iter().enumerate() {
                let pkt = &mut pkts[p.0];
                let inner_len = pkt.len() as u64;
                let Some(sa) = self.outbound[sa_idx].sa.as_ref() else { continue };
                verdicts[p.0] = match sa.encapsulate(first + k as u64, pkt) {
                    Ok(()) => {
                        self.counters.encrypted.add(1);
                        if let Some(c) = self.counters.sa.get(sa_idx) {
                            c.packets.add(1);
                            c.bytes.add(inner_len);
                        }
                        match egress {
                            Some(e) => Self::frame_for(pkt, &e),
                            // The next hop is being resolved (the SA's address is read only
                            // here: it lies beyond `OutboundSa::HOT_LEN`).
                            None => self.send(pkt, sa.remote, now),
                        }
                    }
                    Err(e) => Verdict::Drop(e.into()),
                };
            }
            i += run;
        }
        self.pending = pending;
    }

    fn learn(&mut self, port: usize, ip: IpAddr, mac: Mac) {
        // Only hosts on one of the port's own subnets are neighbours.
        if mac.is_multicast() || !self.ports[port].addresses.iter().any(|a| a.contains(ip)) {
            return;
        }
        if self.ports[port].addresses.iter().any(|a| a.addr == ip) {
            return;
        }
        let n = Neighbor { port, ip, mac };
        if self.set_neighbor(n) && self.learned.len() < MAX_PENDING {
            self.learned.push(n);
        }
    }

    /// Notes traffic for a protect policy that has no SA, once a second per policy.
    fn want_sa(&mut self, policy: u32, key: FlowKey, now: u64) {
        let last = self.last_acquire.entry(policy).or_insert(0);
        if *last != 0 && now.wrapping_sub(*last) < self.tsc_hz {
            return;
        }
        *last = now.max(1);
        if self.acquire.len() < MAX_PENDING {
            self.acquire.push((policy, key));
        }
    }

    /// Queues a solicitation for `hop`, at most `SOLICIT_PER_SECOND` times a second.
    pub fn want_neighbor(&mut self, port: usize, hop: IpAddr, now: u64) {
        let gap = self.tsc_hz / SOLICIT_PER_SECOND;
        let last = self.last_solicit.entry((port, hop)).or_insert(0);
        if *last != 0 && now.wrapping_sub(*last) < gap {
            return;
        }
        *last = now.max(1);
        if self.solicit.len() < MAX_PENDING {
            self.solicit.push((port, hop));
        }
    }

    /// Builds the ARP request or neighbour solicitation for a queued `(port, ip)`.
    /// Returns the frame length, or `None` if the port has no address of that family.
    pub fn solicitation(&self, port: usize, ip: IpAddr, out: &mut [u8; 86]) -> Option<usize> {
        let p = &self.ports[port];
        let src = p
            .addresses
            .iter()
            .find(|a| a.contains(ip))
            .or_else(|| p.addresses.iter().find(|a| a.addr.is_ipv4() == ip.is_ipv4()))?;
        match (src.addr, ip) {
            (IpAddr::V4(s), IpAddr::V4(t)) => {
                let mut f = [0u8; 60];
                net::arp_request(p.mac, s, t, &mut f);
                out[..60].copy_from_slice(&f);
                Some(60)
            }
            (IpAddr::V6(s), IpAddr::V6(t)) => Some(net::neighbor_solicitation(p.mac, s, t, out)),
            _ => None,
        }
    }
}
