//! The hash maps of the per-packet lookups.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::marker::PhantomData;

/// A multiply-rotate hasher (the one rustc uses, "FxHash") for the per-packet lookups of SPIs,
/// neighbours and policies: several times cheaper than SipHash. Flooding is not a concern:
/// packets only look up; the tables hold only the SAs and policies we installed and neighbours
/// on our own subnets.
#[derive(Default, Clone, Copy)]
pub struct FastHasher(u64);

impl Hasher for FastHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for c in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            self.write_u64(u64::from_le_bytes(w));
        }
    }
    #[inline]
    fn write_u64(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    #[inline]
    fn write_u128(&mut self, w: u128) {
        self.write_u64(w as u64);
        self.write_u64((w >> 64) as u64);
    }
    #[inline]
    fn write_u32(&mut self, w: u32) {
        self.write_u64(u64::from(w));
    }
    #[inline]
    fn write_usize(&mut self, w: usize) {
        self.write_u64(w as u64);
    }
    #[inline]
    fn write_u8(&mut self, w: u8) {
        self.write_u64(u64::from(w));
    }
    #[inline]
    fn finish(&self) -> u64 {
        // The multiply mixes upwards only: the low bits, which pick the bucket, would depend
        // on the low bits of the input alone, and keys that differ in their last bytes
        // ("out10001", "out10002") would collide. Bring the well-mixed high bits down
        // (rustc-hash 2 does the same).
        self.0.rotate_left(26)
    }
}

pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

/// A hash map for the per-packet lookups of many thousands of entries (SPD buckets, inbound
/// SAs) that can be asked to bring a key's slot into cache ([`Self::prefetch`]) a while before
/// the lookup: a worker does that for a whole burst first, so that the lookups' cache misses
/// overlap instead of following one another. A `HashMap` hides where a key lives.
///
/// Open addressing with linear probing, at most half full, with backward-shift deletion.
/// `S` says how entries are laid out: [`Dense`] (the default) or [`Lines`].
#[derive(Clone, Debug)]
pub struct PrefetchMap<K, V, S = Dense<K, V>> {
    /// A power of two long, or empty.
    slots: Vec<S>,
    len: usize,
    entries: PhantomData<(K, V)>,
}

/// A table entry as [`PrefetchMap`] stores it.
pub trait Slot<K, V>: From<Option<(K, V)>> {
    fn entry(&self) -> &Option<(K, V)>;
    fn entry_mut(&mut self) -> &mut Option<(K, V)>;
}

/// Entries side by side: for small ones (an SPI and a pointer), several to a cache line, so
/// that a probe past the first slot mostly stays in the line already fetched.
#[derive(Clone, Debug)]
pub struct Dense<K, V>(Option<(K, V)>);

/// Each entry on cache lines of its own: an entry of one line (64 bytes) is then read with
/// one miss, not two whose ends it would straddle.
#[derive(Clone, Debug)]
#[repr(align(64))]
pub struct Lines<K, V>(Option<(K, V)>);

macro_rules! slot {
    ($t:ident) => {
        impl<K, V> From<Option<(K, V)>> for $t<K, V> {
            fn from(e: Option<(K, V)>) -> Self {
                $t(e)
            }
        }
        impl<K, V> Slot<K, V> for $t<K, V> {
            #[inline]
            fn entry(&self) -> &Option<(K, V)> {
                &self.0
            }
            #[inline]
            fn entry_mut(&mut self) -> &mut Option<(K, V)> {
                &mut self.0
            }
        }
    };
}
slot!(Dense);
slot!(Lines);

impl<K, V, S> Default for PrefetchMap<K, V, S> {
    fn default() -> Self {
        PrefetchMap { slots: Vec::new(), len: 0, entries: PhantomData }
    }
}

impl<K: Hash + Eq, V, S: Slot<K, V>> PrefetchMap<K, V, S> {
    /// Room for `n` entries before the first growth.
    pub fn with_capacity(n: usize) -> Self {
        let cap = if n == 0 { 0 } else { (2 * n).next_power_of_two().max(8) };
        PrefetchMap { slots: (0..cap).map(|_| S::from(None)).collect(), len: 0, entries: PhantomData }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The slot where the search for `key` starts. Only called on a non-empty table.
    #[inline]
    fn home(&self, key: &K) -> usize {
        let mut h = FastHasher::default();
        key.hash(&mut h);
        h.finish() as usize & (self.slots.len() - 1)
    }

    /// Where `key` is: a position for [`Self::at`], valid until the map next changes (a worker
    /// finds a burst's keys once and reads their values in later phases).
    #[inline]
    pub fn find(&self, key: &K) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut i = self.home(key);
        // Ends: at most half the slots are full, so a search meets an empty one.
        loop {
            match self.slots[i].entry() {
                None => return None,
                Some((k, _)) if k == key => return Some(i),
                Some(_) => i = (i + 1) & mask,
            }
        }
    }

    /// The value at a position from [`Self::find`].
    #[inline]
    pub fn at(&self, pos: usize) -> Option<&V> {
        self.slots.get(pos)?.entry().as_ref().map(|(_, v)| v)
    }

    #[inline]
    pub fn get(&self, key: &K) -> Option<&V> {
        let i = self.find(key)?;
        self.slots[i].entry().as_ref().map(|(_, v)| v)
    }

    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let i = self.find(key)?;
        self.slots[i].entry_mut().as_mut().map(|(_, v)| v)
    }

    /// Asks for the cache lines of `key`'s first slot (at most 128 bytes). Not the next slot's
    /// as well: where that is another line, asking for it too cost more than the probes that
    /// reach it (measured with 100,000 inbound SAs: a third slower).
    #[inline]
    pub fn prefetch(&self, key: &K) {
        if !self.slots.is_empty() {
            let at: *const u8 = self.slots.as_ptr().wrapping_add(self.home(key)).cast();
            crate::dpdk::prefetch_range(at, std::mem::size_of::<S>(), 128);
        }
    }

    /// Inserts or replaces; returns the value replaced.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        if let Some(i) = self.find(&key) {
            return self.slots[i].entry_mut().as_mut().map(|(_, v)| std::mem::replace(v, value));
        }
        if 2 * (self.len + 1) > self.slots.len() {
            self.grow();
        }
        let i = self.free_slot(&key);
        *self.slots[i].entry_mut() = Some((key, value));
        self.len += 1;
        None
    }

    /// The first empty slot from `key`'s home on.
    fn free_slot(&self, key: &K) -> usize {
        let mask = self.slots.len() - 1;
        let mut i = self.home(key);
        while self.slots[i].entry().is_some() {
            i = (i + 1) & mask;
        }
        i
    }

    fn grow(&mut self) {
        let cap = (2 * self.slots.len()).max(8);
        let old = std::mem::replace(&mut self.slots, (0..cap).map(|_| S::from(None)).collect());
        for mut slot in old {
            if let Some((k, v)) = slot.entry_mut().take() {
                let i = self.free_slot(&k);
                *self.slots[i].entry_mut() = Some((k, v));
            }
        }
    }

    pub fn remove(&mut self, key: &K) -> Option<V> {
        let mut hole = self.find(key)?;
        let removed = self.slots[hole].entry_mut().take().map(|(_, v)| v);
        self.len -= 1;
        // Backward-shift deletion (Knuth, TAOCP vol. 3, 6.4, algorithm R): entries after the
        // hole move into it when the hole lies between their home slot and where they are, so
        // that every search still meets its key before an empty slot.
        let mask = self.slots.len() - 1;
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
            let Some((k, _)) = self.slots[j].entry() else { break };
            let from_home = j.wrapping_sub(self.home(k)) & mask;
            let from_hole = j.wrapping_sub(hole) & mask;
            if from_home >= from_hole {
                *self.slots[hole].entry_mut() = self.slots[j].entry_mut().take();
                hole = j;
            }
        }
        removed
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.slots.iter().filter_map(|s| s.entry().as_ref()).map(|(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefetch_map_agrees_with_a_hash_map_through_inserts_and_removals() {
        agrees_with_a_hash_map(PrefetchMap::<_, _, Dense<_, _>>::with_capacity(4));
        agrees_with_a_hash_map(PrefetchMap::<_, _, Lines<_, _>>::with_capacity(4));
        let empty: PrefetchMap<u32, u32> = PrefetchMap::default();
        assert_eq!(empty.get(&1), None);
        empty.prefetch(&1);
        assert_eq!(std::mem::align_of::<Lines<u32, u32>>(), 64);
    }

    fn agrees_with_a_hash_map<S: Slot<(u128, u128), u32>>(mut t: PrefetchMap<(u128, u128), u32, S>) {
        // Keys that collide a lot (a small table, grown several times; clusters wrap around).
        let mut want: HashMap<(u128, u128), u32> = HashMap::new();
        let key = |i: u32| (u128::from(i % 37), u128::from(i / 37));
        let mut x = 12345u64;
        for round in 0..40_000u32 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let i = ((x >> 33) % 2000) as u32;
            if want.contains_key(&key(i)) && round % 3 != 0 {
                assert_eq!(t.remove(&key(i)), want.remove(&key(i)));
            } else {
                assert_eq!(t.insert(key(i), round), want.insert(key(i), round));
            }
            if round % 997 == 0 {
                for j in 0..2000 {
                    assert_eq!(t.get(&key(j)), want.get(&key(j)), "key {j}");
                    assert_eq!(t.find(&key(j)).and_then(|p| t.at(p)), want.get(&key(j)), "key {j}");
                    t.prefetch(&key(j));
                }
                assert_eq!(t.len(), want.len());
                assert!(2 * t.len() <= t.slots.len());
                assert_eq!(t.values().count(), want.len());
            }
        }
        assert_eq!(t.remove(&key(5000)), None);
    }
}
