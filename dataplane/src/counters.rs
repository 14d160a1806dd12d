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
    MalformedIp => "malformed IP header",
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

/// The counters of one worker core.
#[derive(Debug)]
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
    drops: Vec<Counter>,
    /// Indexed like the configuration's SA list.
    pub sa: Vec<SaCounters>,
}

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
            drops: (0..DropReason::COUNT).map(|_| Counter::default()).collect(),
            sa: (0..n_sas).map(|_| SaCounters::default()).collect(),
        }
    }

    #[inline]
    pub fn count_drop(&self, r: DropReason) {
        self.drops[r as usize].add(1);
    }

    pub fn drops(&self, r: DropReason) -> u64 {
        self.drops[r as usize].get()
    }
}

pub use ctlproto::{CoreSnapshot, DropSnapshot, SaInfo, Snapshot};

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
    Snapshot { cores, sas, drops }
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
}
