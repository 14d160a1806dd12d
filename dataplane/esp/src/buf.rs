//! The packet buffer the ESP stages work on: contiguous bytes with room to grow at both ends,
//! like a DPDK mbuf. The dataplane implements it for its mbuf wrapper; tests use [`VecBuf`].

/// A contiguous packet with headroom and tailroom.
///
/// Every method that grows the packet returns `None` (and changes nothing) when there is no room,
/// so a caller can drop the packet with a reason instead of panicking.
pub trait PacketBuf {
    /// The packet bytes.
    fn data(&self) -> &[u8];
    /// The packet bytes, writable.
    fn data_mut(&mut self) -> &mut [u8];
    /// Grows the packet by `n` bytes at the front and returns the whole packet.
    fn prepend(&mut self, n: usize) -> Option<&mut [u8]>;
    /// Grows the packet by `n` bytes at the back and returns the whole packet.
    fn append(&mut self, n: usize) -> Option<&mut [u8]>;
    /// Removes `n` bytes from the front; false (and no change) if the packet is shorter.
    fn adj(&mut self, n: usize) -> bool;
    /// Removes `n` bytes from the back; false (and no change) if the packet is shorter.
    fn trim(&mut self, n: usize) -> bool;

    fn len(&self) -> usize {
        self.data().len()
    }
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A heap buffer with fixed headroom, for tests, tools and benchmarks.
#[derive(Clone, Debug)]
pub struct VecBuf {
    mem: Vec<u8>,
    start: usize,
    end: usize,
}

impl VecBuf {
    /// `headroom` bytes before `data`, `tailroom` bytes after it.
    pub fn new(data: &[u8], headroom: usize, tailroom: usize) -> Self {
        let mut mem = vec![0u8; headroom + data.len() + tailroom];
        mem[headroom..headroom + data.len()].copy_from_slice(data);
        VecBuf { mem, start: headroom, end: headroom + data.len() }
    }

    /// Replaces the contents, keeping the same capacity layout (for benchmarks that reuse buffers).
    pub fn reset(&mut self, data: &[u8], headroom: usize) -> bool {
        if headroom + data.len() > self.mem.len() {
            return false;
        }
        self.start = headroom;
        self.end = headroom + data.len();
        self.mem[self.start..self.end].copy_from_slice(data);
        true
    }

    pub fn headroom(&self) -> usize {
        self.start
    }
    pub fn tailroom(&self) -> usize {
        self.mem.len() - self.end
    }
}

impl PacketBuf for VecBuf {
    fn data(&self) -> &[u8] {
        &self.mem[self.start..self.end]
    }
    fn data_mut(&mut self) -> &mut [u8] {
        &mut self.mem[self.start..self.end]
    }
    fn prepend(&mut self, n: usize) -> Option<&mut [u8]> {
        if n > self.start {
            return None;
        }
        self.start -= n;
        Some(&mut self.mem[self.start..self.end])
    }
    fn append(&mut self, n: usize) -> Option<&mut [u8]> {
        if n > self.mem.len() - self.end {
            return None;
        }
        self.end += n;
        Some(&mut self.mem[self.start..self.end])
    }
    fn adj(&mut self, n: usize) -> bool {
        if n > self.end - self.start {
            return false;
        }
        self.start += n;
        true
    }
    fn trim(&mut self, n: usize) -> bool {
        if n > self.end - self.start {
            return false;
        }
        self.end -= n;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_and_shrinks_within_room_only() {
        let mut b = VecBuf::new(&[1, 2, 3], 2, 1);
        assert!(b.prepend(3).is_none());
        assert_eq!(b.prepend(2).unwrap().len(), 5);
        assert!(b.append(2).is_none());
        assert_eq!(b.append(1).unwrap().len(), 6);
        assert!(b.adj(2));
        assert!(b.trim(1));
        assert_eq!(b.data(), &[1, 2, 3]);
        assert!(!b.adj(4));
        assert!(!b.trim(4));
        assert_eq!(b.len(), 3);
    }
}
