//! The security policy database (RFC 4301 section 4.4.1): ordered entries whose selectors
//! match a packet's addresses, protocol and ports, with the action protect, bypass or discard.
//! Protect entries are used in both directions: outbound as written, inbound mirrored (the
//! decrypted packet travels from the policy's `dst` to its `src`).

use crate::hash::{FastMap, Lines, PrefetchMap};
use crate::net::Prefix;
use esp::wire::{FlowKey, addr_bits};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange {
    pub lo: u16,
    pub hi: u16,
}

impl PortRange {
    pub const ANY: PortRange = PortRange { lo: 0, hi: u16::MAX };

    /// `None` or "any" for all ports, "80" for one, "1000-2000" for a range.
    pub fn parse(s: Option<&str>) -> Result<Self, String> {
        let Some(s) = s.map(str::trim) else { return Ok(PortRange::ANY) };
        if s == "any" {
            return Ok(PortRange::ANY);
        }
        let bad = || format!("{s:?} is not a port, a range like 1000-2000, or \"any\"");
        let (lo, hi) = match s.split_once('-') {
            Some((a, b)) => (a.trim().parse().map_err(|_| bad())?, b.trim().parse().map_err(|_| bad())?),
            None => {
                let p = s.parse().map_err(|_| bad())?;
                (p, p)
            }
        };
        if lo > hi {
            return Err(bad());
        }
        Ok(PortRange { lo, hi })
    }

    #[inline]
    pub fn contains(&self, p: u16) -> bool {
        self.lo <= p && p <= self.hi
    }
}

/// RFC 4301 4.4.1.1 selectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Selector {
    pub src: Prefix,
    pub dst: Prefix,
    /// `None` matches any protocol.
    pub proto: Option<u8>,
    pub sport: PortRange,
    pub dport: PortRange,
}

/// Whether flow `k` has a selector's protocol and ports; `reverse` for a packet going the
/// other way (its destination port is then checked against the source range). A packet whose
/// ports are OPAQUE (a later fragment) matches only selectors that take any port (RFC 4301
/// 4.4.1.1, 7): otherwise the fragments of a flow that one policy protects by port could
/// take another policy's action.
#[inline]
fn proto_ports_match(proto: Option<u8>, sport: PortRange, dport: PortRange, k: &FlowKey, reverse: bool) -> bool {
    let (ks, kd) = if reverse { (k.dport, k.sport) } else { (k.sport, k.dport) };
    let ports = if k.opaque {
        sport == PortRange::ANY && dport == PortRange::ANY
    } else {
        sport.contains(ks) && dport.contains(kd)
    };
    proto.is_none_or(|p| p == k.proto) && ports
}

impl Selector {
    #[inline]
    pub fn matches(&self, k: &FlowKey) -> bool {
        self.src.contains_bits(k.v6, k.src)
            && self.dst.contains_bits(k.v6, k.dst)
            && proto_ports_match(self.proto, self.sport, self.dport, k, false)
    }

    /// Matches a packet going the other way (inbound through an SA of this policy).
    #[inline]
    pub fn matches_reverse(&self, k: &FlowKey) -> bool {
        self.src.contains_bits(k.v6, k.dst)
            && self.dst.contains_bits(k.v6, k.src)
            && proto_ports_match(self.proto, self.sport, self.dport, k, true)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send through the outbound SA in slot `sa_out`; `None` while the policy has no SA yet
    /// (the control plane is told, so that it negotiates one: an "acquire").
    Protect {
        sa_out: Option<usize>,
    },
    Bypass,
    Discard,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    pub selector: Selector,
    pub action: Action,
    pub priority: u32,
    /// The control thread's number for the policy, reported back with acquires. Numbers are
    /// handed out in configuration order and kept when a policy is replaced, so they also
    /// order policies of equal priority.
    pub id: u32,
}

impl Policy {
    /// Lower ranks win.
    #[inline]
    fn rank(&self) -> (u32, u32) {
        (self.priority, self.id)
    }
}

/// The SPD: the first matching policy by priority (lower first), then by id.
///
/// Indexed so that a lookup stays cheap with 100,000 policies (one per branch tunnel): a
/// tuple-space search (Srinivasan, Suri and Varghese, SIGCOMM 1999; Open vSwitch's classifier
/// works this way). Policies are grouped by address family and the lengths of their two
/// prefixes; within a group a hash table keyed by the two network addresses holds the
/// candidates, best first. A lookup masks the packet's addresses once per group (a handful in
/// practice: the branches of a hub usually share prefix lengths) and checks the few
/// candidates found.
#[derive(Clone, Debug, Default)]
pub struct Spd {
    by_id: FastMap<u32, Policy>,
    groups: Vec<Group>,
    /// Table size reserved for the first group, so that a worker does not rehash a large
    /// table between two bursts while tunnels are being installed.
    reserve: usize,
}

#[derive(Clone, Debug)]
struct Group {
    v6: bool,
    src_len: u8,
    dst_len: u8,
    src_mask: u128,
    dst_mask: u128,
    /// (source network, destination network) to the policies with those prefixes. A map that
    /// can prefetch: see `Spd::prefetch_outbound`.
    buckets: BucketTable,
}

/// What a lookup answers: the matching policy's action and id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Matched {
    pub action: Action,
    pub id: u32,
}

/// A group's buckets by their two networks, a cache line each.
type BucketTable = PrefetchMap<(u128, u128), Bucket, Lines<(u128, u128), Bucket>>;

/// The policies of one group with the same two networks, best first. A lookup has matched
/// their prefixes already (the bucket's key is the packet's addresses under the group's masks),
/// so what is left to check is protocol and ports. The best policy's are kept inline and
/// compact, with its rank and action: usually it is the only one (one policy per branch
/// tunnel), and its key and bucket then fill one cache line of the table, the one line a
/// packet reads (with 100,000 tunnels, each a miss).
#[derive(Clone, Debug)]
struct Bucket {
    best: Compact,
    /// All of them, best first; never empty. Read only when `best` does not match. Boxed: a
    /// thin pointer, where a vector's own three words would push the entry past one line.
    #[allow(clippy::box_collection)]
    all: Box<Vec<Policy>>,
}

/// A policy less its prefixes, in 24 bytes.
#[derive(Clone, Copy, Debug)]
struct Compact {
    proto: Option<u8>,
    sport: PortRange,
    dport: PortRange,
    kind: Kind,
    /// The outbound SA's slot of a protect policy, [`Compact::NO_SA`] for none.
    sa_out: u32,
    priority: u32,
    id: u32,
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Protect,
    Bypass,
    Discard,
}

impl Compact {
    const NO_SA: u32 = u32::MAX;

    fn new(p: &Policy) -> Self {
        let (kind, sa_out) = match p.action {
            // Slots are indices into a worker's table of at most `max_sas` entries, far fewer
            // than 2^32 - 1.
            Action::Protect { sa_out } => {
                (Kind::Protect, sa_out.and_then(|s| u32::try_from(s).ok()).unwrap_or(Self::NO_SA))
            }
            Action::Bypass => (Kind::Bypass, Self::NO_SA),
            Action::Discard => (Kind::Discard, Self::NO_SA),
        };
        let Selector { proto, sport, dport, .. } = p.selector;
        Compact { proto, sport, dport, kind, sa_out, priority: p.priority, id: p.id }
    }

    #[inline]
    fn matched(&self) -> Matched {
        let action = match self.kind {
            Kind::Protect => Action::Protect { sa_out: (self.sa_out != Self::NO_SA).then_some(self.sa_out as usize) },
            Kind::Bypass => Action::Bypass,
            Kind::Discard => Action::Discard,
        };
        Matched { action, id: self.id }
    }
}

impl Bucket {
    fn new(p: Policy) -> Self {
        Bucket { best: Compact::new(&p), all: Box::new(vec![p]) }
    }

    /// The best policy with flow `k`'s protocol and ports (`REVERSE`: see
    /// [`proto_ports_match`]), with its rank.
    #[inline]
    fn find<const REVERSE: bool>(&self, k: &FlowKey) -> Option<(Matched, (u32, u32))> {
        let b = &self.best;
        if proto_ports_match(b.proto, b.sport, b.dport, k, REVERSE) {
            return Some((b.matched(), (b.priority, b.id)));
        }
        let p = self.all.iter().skip(1).find(|p| {
            let s = &p.selector;
            proto_ports_match(s.proto, s.sport, s.dport, k, REVERSE)
        })?;
        Some((Matched { action: p.action, id: p.id }, p.rank()))
    }

    fn insert(&mut self, p: Policy) {
        let at = self.all.partition_point(|q| q.rank() < p.rank());
        self.all.insert(at, p);
        self.best = Compact::new(&self.all[0]);
    }

    /// Removes policy `id`; false if the bucket is empty now.
    fn remove(&mut self, id: u32) -> bool {
        self.all.retain(|q| q.id != id);
        match self.all.first() {
            Some(b) => {
                self.best = Compact::new(b);
                true
            }
            None => false,
        }
    }
}

fn mask(v6: bool, len: u8) -> u128 {
    match (v6, len) {
        (_, 0) => 0,
        (false, l) => u128::from(u32::MAX << (32 - u32::from(l.min(32)))),
        (true, l) => u128::MAX << (128 - u32::from(l.min(128))),
    }
}

impl Group {
    fn key(&self, sel: &Selector) -> (u128, u128) {
        (addr_bits(sel.src.addr) & self.src_mask, addr_bits(sel.dst.addr) & self.dst_mask)
    }
}

impl Spd {
    pub fn new(entries: Vec<Policy>) -> Self {
        let mut spd = Spd::default();
        for p in entries {
            spd.insert(p);
        }
        spd
    }

    /// An empty SPD that expects about `n` policies.
    pub fn with_capacity(n: usize) -> Self {
        let mut by_id = FastMap::default();
        by_id.reserve(n);
        Spd { by_id, groups: Vec::new(), reserve: n }
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Adds a policy, or replaces the one with the same id.
    pub fn insert(&mut self, p: Policy) {
        self.remove(p.id);
        self.by_id.insert(p.id, p);
        let (v6, src_len, dst_len) = (p.selector.src.addr.is_ipv6(), p.selector.src.len, p.selector.dst.len);
        let g = match self.groups.iter().position(|g| (g.v6, g.src_len, g.dst_len) == (v6, src_len, dst_len)) {
            Some(i) => i,
            None => {
                let buckets = PrefetchMap::with_capacity(std::mem::take(&mut self.reserve));
                let (src_mask, dst_mask) = (mask(v6, src_len), mask(v6, dst_len));
                self.groups.push(Group { v6, src_len, dst_len, src_mask, dst_mask, buckets });
                self.groups.len() - 1
            }
        };
        let g = &mut self.groups[g];
        let key = g.key(&p.selector);
        match g.buckets.get_mut(&key) {
            Some(b) => b.insert(p),
            None => {
                g.buckets.insert(key, Bucket::new(p));
            }
        }
    }

    /// Removes the policy with this id; false if there is none.
    pub fn remove(&mut self, id: u32) -> bool {
        let Some(p) = self.by_id.remove(&id) else { return false };
        let (v6, src_len, dst_len) = (p.selector.src.addr.is_ipv6(), p.selector.src.len, p.selector.dst.len);
        if let Some(gi) = self.groups.iter().position(|g| (g.v6, g.src_len, g.dst_len) == (v6, src_len, dst_len)) {
            let g = &mut self.groups[gi];
            let key = g.key(&p.selector);
            if let Some(b) = g.buckets.get_mut(&key)
                && !b.remove(id)
            {
                g.buckets.remove(&key);
            }
            if g.buckets.is_empty() {
                self.groups.swap_remove(gi);
            }
        }
        true
    }

    /// The first policy that matches an outbound packet (from a protected network).
    #[inline]
    pub fn lookup_outbound(&self, k: &FlowKey) -> Option<Matched> {
        self.first::<false>(k.src, k.dst, k)
    }

    /// The first policy that matches a packet arriving in the clear from the unprotected side
    /// (RFC 4301 5.2: traffic matching a protect policy must arrive through its SA).
    #[inline]
    pub fn lookup_inbound_clear(&self, k: &FlowKey) -> Option<Matched> {
        // Mirrored: the packet's destination is in the policy's source prefix, and so on.
        self.first::<true>(k.dst, k.src, k)
    }

    /// Asks for the memory that [`Self::lookup_outbound`] of `k` will read, so that the
    /// lookup, a while later, finds it in cache.
    #[inline]
    pub fn prefetch_outbound(&self, k: &FlowKey) {
        self.prefetch(k.v6, k.src, k.dst);
    }

    /// As [`Self::prefetch_outbound`], for [`Self::lookup_inbound_clear`].
    #[inline]
    pub fn prefetch_inbound_clear(&self, k: &FlowKey) {
        self.prefetch(k.v6, k.dst, k.src);
    }

    #[inline]
    fn prefetch(&self, v6: bool, src: u128, dst: u128) {
        for g in self.groups.iter().filter(|g| g.v6 == v6) {
            g.buckets.prefetch(&(src & g.src_mask, dst & g.dst_mask));
        }
    }

    /// The best-ranked policy whose prefixes hold `src` and `dst` (as the policy's source and
    /// destination) and that has flow `k`'s protocol and ports (`REVERSE`: see
    /// [`proto_ports_match`]). A constant, so that each lookup is its own inlined copy.
    #[inline]
    fn first<const REVERSE: bool>(&self, src: u128, dst: u128, k: &FlowKey) -> Option<Matched> {
        let mut best: Option<(Matched, (u32, u32))> = None;
        for g in self.groups.iter().filter(|g| g.v6 == k.v6) {
            let Some(bucket) = g.buckets.get(&(src & g.src_mask, dst & g.dst_mask)) else { continue };
            if let Some((m, rank)) = bucket.find::<REVERSE>(k)
                && best.is_none_or(|(_, b)| rank < b)
            {
                best = Some((m, rank));
            }
        }
        best.map(|(m, _)| m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(src: &str, dst: &str, proto: u8, sport: u16, dport: u16) -> FlowKey {
        FlowKey::new(src.parse().unwrap(), dst.parse().unwrap(), proto, sport, dport)
    }

    fn sel(src: &str, dst: &str, proto: Option<u8>, dport: &str) -> Selector {
        Selector {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            proto,
            sport: PortRange::ANY,
            dport: PortRange::parse(Some(dport)).unwrap(),
        }
    }

    #[test]
    fn first_match_by_priority_and_mirrored_inbound() {
        let protect = sel("10.1.0.0/24", "10.2.0.0/24", None, "any");
        let spd = Spd::new(vec![
            Policy { selector: protect, action: Action::Protect { sa_out: Some(0) }, priority: 100, id: 0 },
            Policy {
                selector: sel("10.1.0.0/24", "10.2.0.0/24", Some(6), "22"),
                action: Action::Discard,
                priority: 10,
                id: 1,
            },
        ]);
        let ssh = key("10.1.0.5", "10.2.0.9", 6, 40000, 22);
        assert_eq!(spd.lookup_outbound(&ssh).unwrap().action, Action::Discard);
        let web = key("10.1.0.5", "10.2.0.9", 6, 40000, 80);
        assert!(matches!(spd.lookup_outbound(&web).unwrap().action, Action::Protect { .. }));
        assert!(spd.lookup_outbound(&key("10.3.0.1", "10.2.0.9", 6, 1, 2)).is_none());
        let back = key("10.2.0.9", "10.1.0.5", 6, 80, 40000);
        assert!(protect.matches_reverse(&back));
        assert!(!protect.matches_reverse(&key("10.9.0.9", "10.1.0.5", 6, 80, 40000)), "outside the selectors");
        assert!(matches!(spd.lookup_inbound_clear(&back).unwrap().action, Action::Protect { .. }));
    }

    /// A later fragment shows no ports (OPAQUE, RFC 4301 4.4.1.1): it matches only policies
    /// that take any port, whatever its missing ports would have been. Here the web traffic's
    /// later fragments must not take the port-0-1023 bypass, and go where the any-port policy
    /// sends them.
    #[test]
    fn opaque_ports_match_only_any_port_selectors() {
        let spd = Spd::new(vec![
            Policy {
                selector: sel("10.1.0.0/24", "10.2.0.0/24", Some(6), "0-1023"),
                action: Action::Bypass,
                priority: 10,
                id: 0,
            },
            Policy {
                selector: sel("10.1.0.0/24", "10.2.0.0/24", None, "any"),
                action: Action::Protect { sa_out: Some(0) },
                priority: 100,
                id: 1,
            },
        ]);
        let mut later = key("10.1.0.5", "10.2.0.9", 6, 0, 0);
        assert_eq!(spd.lookup_outbound(&later).unwrap().action, Action::Bypass, "port 0 is in 0-1023");
        later.opaque = true;
        assert!(matches!(spd.lookup_outbound(&later).unwrap().action, Action::Protect { .. }));
        let any = sel("10.1.0.0/24", "10.2.0.0/24", Some(6), "any");
        assert!(any.matches(&later));
        let mut back = key("10.2.0.9", "10.1.0.5", 6, 0, 0);
        back.opaque = true;
        assert!(any.matches_reverse(&back));
        assert!(!sel("10.1.0.0/24", "10.2.0.0/24", Some(6), "0-65534").matches_reverse(&back));
        assert_eq!(spd.lookup_inbound_clear(&back).unwrap().id, 1);
    }

    /// The index answers as a scan in rank order does, through inserts, replacements and
    /// removals of random policies (both families, overlapping prefixes, ports, protocols),
    /// for random packets in both directions.
    #[test]
    fn index_agrees_with_a_linear_scan() {
        use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        // A small address space, so that random packets often hit policies.
        let addr = |r: u64, v6: bool| -> IpAddr {
            if v6 {
                IpAddr::V6(Ipv6Addr::from((0x2001_0db8u128 << 96) | u128::from(r & 0xffff)))
            } else {
                IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | (r & 0xffff) as u32))
            }
        };
        let mut spd = Spd::with_capacity(64);
        let mut lookups = 0;
        let mut hits = 0;
        for _ in 0..3000 {
            let v6 = rnd(4) == 0;
            if rnd(5) == 0 {
                spd.remove(rnd(200) as u32);
            } else {
                let lens: &[u8] = if v6 { &[0, 112, 120, 124, 128] } else { &[0, 16, 24, 28, 32] };
                let pre = |a, l| Prefix::new(a, l).unwrap();
                let ports = [PortRange::ANY, PortRange { lo: 80, hi: 80 }, PortRange { lo: 1000, hi: 2000 }];
                let selector = Selector {
                    src: pre(addr(rnd(1 << 16), v6), lens[rnd(5) as usize]),
                    dst: pre(addr(rnd(1 << 16), v6), lens[rnd(5) as usize]),
                    proto: [None, Some(6), Some(17)][rnd(3) as usize],
                    sport: ports[rnd(3) as usize],
                    dport: ports[rnd(3) as usize],
                };
                let action = [Action::Bypass, Action::Discard, Action::Protect { sa_out: Some(1) }][rnd(3) as usize];
                spd.insert(Policy { selector, action, priority: rnd(4) as u32 * 10, id: rnd(200) as u32 });
            }
            let mut scan: Vec<Policy> = spd.by_id.values().copied().collect();
            scan.sort_by_key(Policy::rank);
            for _ in 0..20 {
                let port = |r| [80, 1500, 5000][r as usize];
                let k = FlowKey::new(
                    addr(rnd(1 << 16), v6),
                    addr(rnd(1 << 16), v6),
                    [6, 17, 1][rnd(3) as usize],
                    port(rnd(3)),
                    port(rnd(3)),
                );
                let want = scan.iter().find(|p| p.selector.matches(&k)).map(|p| p.id);
                assert_eq!(spd.lookup_outbound(&k).map(|p| p.id), want, "outbound {k:?}");
                let want = scan.iter().find(|p| p.selector.matches_reverse(&k)).map(|p| p.id);
                assert_eq!(spd.lookup_inbound_clear(&k).map(|p| p.id), want, "inbound {k:?}");
                lookups += 2;
                hits += usize::from(want.is_some());
            }
        }
        assert!(hits * 10 > lookups / 2, "too few matches to test anything: {hits} of {lookups}");
        // Removing everything leaves no group behind.
        for id in 0..200 {
            spd.remove(id);
        }
        assert!(spd.is_empty() && spd.groups.is_empty());
    }

    #[test]
    fn a_table_slot_is_one_cache_line() {
        assert_eq!(std::mem::size_of::<Lines<(u128, u128), Bucket>>(), 64);
    }

    #[test]
    fn port_ranges() {
        assert_eq!(PortRange::parse(None).unwrap(), PortRange::ANY);
        assert_eq!(PortRange::parse(Some("1000-2000")).unwrap(), PortRange { lo: 1000, hi: 2000 });
        assert!(PortRange::parse(Some("2000-1000")).is_err());
        assert!(PortRange::parse(Some("http")).is_err());
    }
}
