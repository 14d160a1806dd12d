//! (key, IV) is never reused: several threads, each with its own copy of one outbound SA
//! sharing the SA's sequence counter, reserve numbers in bursts as the workers do and
//! encapsulate concurrently. Every IV on the wire (and every sequence number) must be unique.

use esp::aead::{GcmKeyLen, KeyMaterial};
use esp::buf::{PacketBuf, VecBuf};
use esp::sa::{OutboundSa, SaConfig, SeqCounter};
use std::collections::HashSet;
use std::sync::Arc;

#[test]
fn ivs_stay_unique_across_threads() {
    let cfg = SaConfig {
        spi: 0x4242,
        key: KeyMaterial::new(GcmKeyLen::Aes256, &[9; 32], &[1, 1, 2, 3]).unwrap(),
        local: "2001:db8::1".parse().unwrap(),
        remote: "2001:db8::2".parse().unwrap(),
        encap: None,
        esn: true,
        replay_window: 64,
        backend: Default::default(),
    };
    let seq = Arc::new(SeqCounter::default());
    let mut inner = vec![0u8; 48];
    inner[0] = 0x60;
    inner[5] = 8;
    inner[6] = 17;
    inner[7] = 64;
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let sa = OutboundSa::new(&cfg, seq.clone()).unwrap();
            let inner = inner.clone();
            std::thread::spawn(move || {
                let mut ivs = Vec::new();
                for burst in 0..500u64 {
                    // Bursts of different lengths per thread, as real traffic would be.
                    let n = 1 + (burst * (t + 3)) % 32;
                    let first = sa.seq_counter().reserve(n);
                    for k in 0..n {
                        let mut b = VecBuf::new(&inner, 128, 64);
                        sa.encapsulate(first + k, &mut b).unwrap();
                        let d = b.data();
                        let esp = 40;
                        ivs.push((
                            u32::from_be_bytes(d[esp + 4..esp + 8].try_into().unwrap()),
                            <[u8; 8]>::try_from(&d[esp + 8..esp + 16]).unwrap(),
                        ));
                    }
                }
                ivs
            })
        })
        .collect();
    let mut all_ivs = HashSet::new();
    let mut all_seqs = HashSet::new();
    let mut total = 0;
    for t in threads {
        for (seq_low, iv) in t.join().unwrap() {
            assert!(all_ivs.insert(iv), "IV {iv:02x?} used twice under one key");
            assert!(all_seqs.insert(seq_low), "sequence number {seq_low} sent twice");
            total += 1;
        }
    }
    assert_eq!(all_ivs.len(), total);
    assert_eq!(seq.peek(), total as u64 + 1, "no number skipped or handed out twice");
}
