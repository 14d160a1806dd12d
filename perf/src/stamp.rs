//! trafgen's receive side: the stamp in each packet it sends, reading it back from a frame
//! received off the wire (in the clear or through ESP), and counting what came back.
//!
//! Everything here parses frames from the network, so it has a fuzz target
//! (`dataplane/fuzz/fuzz_targets/trafgen_rx.rs`), which includes this file by path. That is
//! why it uses only the `esp` crate.

use esp::buf::PacketBuf;
use esp::sa::InboundSa;
use esp::wire::{self, Classified};

/// The stamp's first two bytes: "tg".
pub const MAGIC: u16 = 0x7467;
/// Bytes of a stamp.
pub const STAMP_LEN: usize = 16;
/// Bytes of the Ethernet header in front of every frame trafgen sends and receives.
pub const ETH_LEN: usize = 14;

/// The 16-byte stamp at the start of the UDP payload: magic, trial, sequence number, the TSC
/// when the packet was sent (all big-endian).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub trial: u16,
    pub seq: u32,
    pub tsc: u64,
}

impl Stamp {
    /// Writes the stamp at the start of `b` (at least `STAMP_LEN` bytes).
    pub fn write(&self, b: &mut [u8]) {
        b[0..2].copy_from_slice(&MAGIC.to_be_bytes());
        b[2..4].copy_from_slice(&self.trial.to_be_bytes());
        b[4..8].copy_from_slice(&self.seq.to_be_bytes());
        b[8..16].copy_from_slice(&self.tsc.to_be_bytes());
    }

    /// The stamp at the start of `b`, if `b` is long enough and starts with the magic.
    pub fn read(b: &[u8]) -> Option<Stamp> {
        let b = b.get(..STAMP_LEN)?;
        if u16::from_be_bytes([b[0], b[1]]) != MAGIC {
            return None;
        }
        Some(Stamp {
            trial: u16::from_be_bytes([b[2], b[3]]),
            seq: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            tsc: u64::from_be_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]),
        })
    }
}

/// Where the stamp lies in an IP packet (after the UDP header), if it is a UDP packet. The
/// generator sends no IPv6 extension headers, so UDP must follow the fixed header there.
pub fn stamp_offset(ip: &[u8]) -> Option<usize> {
    match ip.first()? >> 4 {
        4 => {
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            // An IHL under 5 words is no IPv4 header (RFC 791 3.1).
            (ihl >= 20 && ip.get(9) == Some(&17)).then_some(ihl + 8)
        }
        6 => (ip.get(6) == Some(&17)).then_some(40 + 8),
        _ => None,
    }
}

/// The stamp of a received Ethernet frame, decrypted first when it is ESP and `rx_sa` is
/// given. Anything else (short, malformed, another SPI, failing authentication) is `None`.
pub fn stamp_of<B: PacketBuf>(rx_sa: Option<&InboundSa>, m: &mut B) -> Option<Stamp> {
    if m.len() < ETH_LEN || !m.adj(ETH_LEN) {
        return None;
    }
    if let Some(sa) = rx_sa
        && let Ok(Classified::Esp(outer)) = wire::classify(m.data())
    {
        if outer.spi() != sa.spi {
            return None;
        }
        sa.decapsulate(&outer, m).ok()?;
    }
    let off = stamp_offset(m.data())?;
    Stamp::read(m.data().get(off..)?)
}

/// What came back in one trial: each sequence number offered so far counts once as received,
/// again as a duplicate; anything else (no stamp, another trial's, a number never offered) is
/// foreign. Every packet counted lands in exactly one of the three.
#[derive(Debug, Default)]
pub struct Tally {
    trial: u16,
    /// Sequence numbers the trial sends at most.
    total: u64,
    /// Bit per sequence number of the trial: received already.
    seen: Vec<u64>,
    pub received: u64,
    pub duplicates: u64,
    pub foreign: u64,
}

impl Tally {
    /// Starts trial `trial` of at most `total` packets (the memory is kept from the last one).
    pub fn reset(&mut self, trial: u16, total: u64) {
        (self.trial, self.total) = (trial, total);
        self.seen.clear();
        self.seen.resize(total.div_ceil(64) as usize, 0);
        (self.received, self.duplicates, self.foreign) = (0, 0, 0);
    }

    /// Counts one received packet whose stamp is `stamp`, when `offered` sequence numbers have
    /// been offered. Returns the stamp's send time when this is the number's first arrival,
    /// for the latency.
    pub fn count(&mut self, stamp: Option<Stamp>, offered: u64) -> Option<u64> {
        let s = match stamp {
            Some(s) if s.trial == self.trial && u64::from(s.seq) < offered.min(self.total) => s,
            // Not stamped by us, a late packet of an earlier trial, or a number not sent yet
            // (or never sent in this trial).
            _ => {
                self.foreign += 1;
                return None;
            }
        };
        let (w, b) = (s.seq as usize / 64, s.seq % 64);
        let Some(word) = self.seen.get_mut(w) else {
            // Cannot happen: `seen` has a bit for every number below `total`.
            self.foreign += 1;
            return None;
        };
        if *word >> b & 1 == 1 {
            self.duplicates += 1;
            return None;
        }
        *word |= 1 << b;
        self.received += 1;
        Some(s.tsc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(trial: u16, seq: u32) -> Option<Stamp> {
        Some(Stamp { trial, seq, tsc: 1000 + u64::from(seq) })
    }

    /// Each number counts once, then as a duplicate; other trials, numbers not offered yet or
    /// beyond the trial's total, and frames without a stamp are foreign.
    #[test]
    fn tally_counts_each_packet_once() {
        let mut t = Tally::default();
        t.reset(3, 100);
        assert_eq!(t.count(st(3, 0), 10), Some(1000));
        assert_eq!(t.count(st(3, 9), 10), Some(1009));
        assert_eq!(t.count(st(3, 0), 10), None);
        assert_eq!(t.count(st(3, 10), 10), None); // not offered yet
        assert_eq!(t.count(st(2, 1), 10), None); // an earlier trial's
        assert_eq!(t.count(None, 10), None);
        assert_eq!(t.count(st(3, 200), 1000), None); // beyond the total
        assert_eq!(t.count(st(3, 110), 1000), None); // beyond the total, inside the bitmap's last word
        assert_eq!(t.count(st(3, 99), 1000), Some(1099));
        assert_eq!((t.received, t.duplicates, t.foreign), (3, 1, 5));
        // A new trial starts from nothing.
        t.reset(4, 64);
        assert_eq!(t.count(st(4, 0), 1), Some(1000));
        assert_eq!((t.received, t.duplicates, t.foreign), (1, 0, 0));
    }

    /// The stamp is after the UDP header, behind IPv4 options; an IPv4 header shorter than 20
    /// bytes is no header.
    #[test]
    fn offsets() {
        let mut v4 = [0u8; 40];
        v4[0] = 0x46;
        v4[9] = 17;
        assert_eq!(stamp_offset(&v4), Some(32));
        v4[0] = 0x44;
        assert_eq!(stamp_offset(&v4), None);
        v4[0] = 0x45;
        v4[9] = 6;
        assert_eq!(stamp_offset(&v4), None);
        let mut v6 = [0u8; 48];
        v6[0] = 0x60;
        v6[6] = 17;
        assert_eq!(stamp_offset(&v6), Some(48));
        assert_eq!(stamp_offset(&[]), None);
    }
}
