//! Per-core counters: one per drop reason, plus traffic and per-SA counts. Each worker is the
//! only writer of its own counters (plain relaxed load and store, no locked instruction on the
//! fast path); the control thread reads them at any time and sums over cores.

use esp::EspError;
use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! drop_reasons {
    ($($variant:ident => $desc:expr),+ $(,)?) => {
        /// Why a packet was dropped. One variant, one counter, one description.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum DropReason { $($variant),+ }

        impl DropReason {
            pub const ALL: &'static [DropReason] = &[$(DropReason::$variant),+];
            pub const COUNT: usize = Self::ALL.len();

            pub fn name(self) -> &'static str {
                match self { $(DropReason::$variant => stringify!($variant)),+ }
            }
            pub fn description(self) -> &'static str {
                match self { $(DropReason::$variant => $desc),+ }
            }
        }
    };
}

drop_reasons! {
    RuntFrame => "frame shorter than an Ethernet header",
    MultiSegment => "multi-segment mbuf (jumbo chains are not supported)",
    UnsupportedEthertype => "neither IPv4, IPv6 nor ARP (VLAN tags are not supported)",
    NotForUs => "unicast frame for another MAC address",
    MalformedIp => "malformed IP header, or a wrong IPv4 header checksum",
    EspTruncated => "ESP packet shorter than the headers it claims",
    EspBadOuterHeader => "malformed outer IP header of an ESP packet",
    EspOuterFragment => "fragmented outer packet (no reassembly)",
    EspBadLength => "ESP length not a multiple of 4 or too short",
    UnknownSpi => "ESP with an SPI of no inbound SA",
    ReplayDuplicate => "replayed ESP sequence number",
    ReplayTooOld => "ESP sequence number left of the anti-replay window",
    AuthFailed => "ESP integrity check (ICV) failed",
    BadPadLength => "ESP pad length longer than the payload",
    BadPadding => "ESP padding bytes not 1, 2, 3, ...",
    DummyPacket => "ESP dummy packet (next header 59)",
    BadNextHeader => "ESP next header neither IPv4 nor IPv6",
    BadInnerPacket => "decrypted inner packet malformed",
    CongestionOnNotEct => "outer header marked CE over a not-ECN-capable inner packet (RFC 6040)",
    InnerSelectorMismatch => "decrypted packet outside its SA's traffic selectors",
    SeqExhausted => "outbound SA out of sequence numbers; needs rekey",
    NoRoom => "no head- or tailroom in the mbuf for ESP",
    PolicyDiscard => "matched a discard policy",
    NoSa => "matched a protect policy whose SA is not (yet) installed; the control plane is asked",
    NoPolicy => "matched no policy (default discard)",
    ClearForProtectedFlow => "arrived in the clear but its policy requires ESP",
    NoRoute => "no route to the destination",
    NoNeighbor => "next hop not resolved within a second (or too many frames waiting for one)",
    TtlExpired => "TTL or hop limit expired",
    MtuExceeded => "larger than the egress port's MTU",
    TxFull => "egress queue full",
}

impl From<EspError> for DropReason {
    fn from(e: EspError) -> Self {
        match e {
            EspError::Truncated => DropReason::EspTruncated,
            EspError::BadOuterHeader => DropReason::EspBadOuterHeader,
            EspError::OuterFragment => DropReason::EspOuterFragment,
            EspError::NotEsp => DropReason::MalformedIp,
            EspError::BadLength => DropReason::EspBadLength,
            EspError::ReplayDuplicate => DropReason::ReplayDuplicate,
            EspError::ReplayTooOld => DropReason::ReplayTooOld,
            EspError::AuthFailed => DropReason::AuthFailed,
            EspError::BadPadLength => DropReason::BadPadLength,
            EspError::BadPadding => DropReason::BadPadding,
            EspError::DummyPacket => DropReason::DummyPacket,
            EspError::BadNextHeader => DropReason::BadNextHeader,
            EspError::BadInnerPacket => DropReason::BadInnerPacket,
            EspError::CongestionOnNotEct => DropReason::CongestionOnNotEct,
            EspError::SeqExhausted => DropReason::SeqExhausted,
            EspError::NoRoom => DropReason::NoRoom,
        }
    }
}

/// A counter with one writer.
#[derive(Default, Debug)]
pub struct Counter(AtomicU64);

impl Counter {
    #[inline]
    pub fn add(&self, n: u64) {
        // Single writer: a plain load and store, visible to readers without a locked add.
        self.0.store(self.0.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }
    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Default, Debug)]
pub struct SaCounters {
    pub packets: Counter,
    pub bytes: Counter,
}

/// The per-SA counters of one worker, in cache lines of their own. Two workers' tables
/// (separate small allocations) could otherwise share a line, and every packet of an SA
/// carried by both would move that line between the cores (false sharing).
#[derive(Debug)]
pub struct SaCounterTable {
    lines: Vec<SaLine>,
    len: usize,
}

#[derive(Default, Debug)]
#[repr(C, align(64))]
struct SaLine([SaCounters; 4]);

impl SaCounterTable {
    fn new(len: usize) -> Self {
        SaCounterTable { lines: (0..len.div_ceil(4)).map(|_| SaLine::default()).collect(), len }
    }

    #[inline]
    pub fn get(&self, slot: usize) -> Option<&SaCounters> {
        if slot >= self.len {
            return None;
        }
        self.lines.get(slot / 4).map(|l| &l.0[slot % 4])
    }

    /// Where slot `slot`'s counters are, to prefetch them (never dereferenced here).
    #[inline]
    pub fn addr(&self, slot: usize) -> *const SaCounters {
        self.lines.as_ptr().cast::<SaCounters>().wrapping_add(slot)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl std::ops::Index<usize> for SaCounterTable {
    type Output = SaCounters;
    fn index(&self, slot: usize) -> &SaCounters {
        self.get(slot).unwrap_or_else(|| panic!("SA slot {slot} of {}", self.len))
    }
}

/// The counters of one worker core. Cache-line aligned, and its drop counters too, for the
/// reason given at [`SaCounterTable`].
#[derive(Debug)]
#[repr(align(64))]
pub struct WorkerCounters {
    pub lcore: u32,
    pub rx: Counter,
    pub tx: Counter,
    pub to_host: Counter,
    pub from_host: Counter,
    pub encrypted: Counter,
    pub decrypted: Counter,
    pub bypassed: Counter,
    /// ESP frames parked until their inbound SA arrived (or it did not).
    pub parked: Counter,
    drops: Vec<DropLine>,
    /// Indexed by SA slot.
    pub sa: SaCounterTable,
    /// Control-thread updates this worker has applied, in all: the control thread hands a
    /// removed SA's slot to another SA only once every worker is past its removal.
    updates_applied: AtomicU64,
}

#[derive(Default, Debug)]
#[repr(C, align(64))]
struct DropLine([Counter; 8]);

impl WorkerCounters {
    pub fn new(lcore: u32, n_sas: usize) -> Self {
        WorkerCounters {
            lcore,
            rx: Counter::default(),
            tx: Counter::default(),
            to_host: Counter::default(),
            from_host: Counter::default(),
            encrypted: Counter::default(),
            decrypted: Counter::default(),
            bypassed: Counter::default(),
            parked: Counter::default(),
            drops: (0..DropReason::COUNT.div_ceil(8)).map(|_| DropLine::default()).collect(),
            sa: SaCounterTable::new(n_sas),
            updates_applied: AtomicU64::new(0),
        }
    }

    /// The worker applied one more update. Release: what it counted before, for an SA the
    /// update removed, is visible to whoever sees the new total.
    #[inline]
    pub fn note_update_applied(&self) {
        self.updates_applied.store(self.updates_applied.load(Ordering::Relaxed) + 1, Ordering::Release);
    }

    pub fn updates_applied(&self) -> u64 {
        self.updates_applied.load(Ordering::Acquire)
    }

    #[inline]
    fn drop_counter(&self, r: DropReason) -> &Counter {
        let i = r as usize;
        // Every reason has a counter: the lines hold DropReason::COUNT rounded up.
        &self.drops[i / 8].0[i % 8]
    }

    #[inline]
    pub fn count_drop(&self, r: DropReason) {
        self.drop_counter(r).add(1);
    }

    pub fn drops(&self, r: DropReason) -> u64 {
        self.drop_counter(r).get()
    }
}

pub use ctlproto::{CoreSnapshot, DropSnapshot, PortSnapshot, SaInfo, Snapshot};

/// `sas` are the installed SAs with their counts (see `Sad::list`).
pub fn snapshot(workers: &[std::sync::Arc<WorkerCounters>], sas: Vec<SaInfo>) -> Snapshot {
    let cores = workers
        .iter()
        .map(|w| CoreSnapshot {
            lcore: w.lcore,
            rx: w.rx.get(),
            tx: w.tx.get(),
            to_host: w.to_host.get(),
            from_host: w.from_host.get(),
            encrypted: w.encrypted.get(),
            decrypted: w.decrypted.get(),
            bypassed: w.bypassed.get(),
            parked: w.parked.get(),
        })
        .collect();
    let drops = DropReason::ALL
        .iter()
        .filter_map(|&r| {
            let per_core: Vec<u64> = workers.iter().map(|w| w.drops(r)).collect();
            let count = per_core.iter().sum();
            (count > 0).then(|| DropSnapshot {
                reason: r.name().to_string(),
                description: r.description().to_string(),
                count,
                per_core,
            })
        })
        .collect();
    Snapshot { cores, sas, drops, ports: Vec::new() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn every_reason_has_its_own_counter_and_text() {
        let w = Arc::new(WorkerCounters::new(1, 2));
        for (i, &r) in DropReason::ALL.iter().enumerate() {
            for _ in 0..=i {
                w.count_drop(r);
            }
            assert!(!r.description().is_empty());
        }
        for (i, &r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(w.drops(r), i as u64 + 1, "{}", r.name());
        }
        let s = snapshot(&[w.clone(), w], Vec::new());
        assert_eq!(s.drops.len(), DropReason::COUNT);
        assert_eq!(s.drops[0].per_core, vec![1, 1]);
        assert!(s.render().contains("AuthFailed"));
    }

    #[test]
    fn per_sa_counters_are_their_own_lines() {
        let (a, b) = (WorkerCounters::new(1, 5), WorkerCounters::new(2, 5));
        assert_eq!((a.sa.len(), a.sa.get(5).is_none()), (5, true));
        for slot in 0..5 {
            a.sa[slot].packets.add(slot as u64 + 1);
            assert_eq!(a.sa.addr(slot), std::ptr::from_ref(&a.sa[slot]));
        }
        assert_eq!((0..5).map(|s| a.sa[s].packets.get()).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
        assert_eq!(b.sa[4].packets.get(), 0);
        // Neither worker's table nor its drop counters share a line with anything else.
        for w in [&a, &b] {
            assert_eq!(w.sa.addr(0) as usize % 64, 0);
            assert_eq!(std::ptr::from_ref(w.drop_counter(DropReason::ALL[0])) as usize % 64, 0);
        }
    }
}
