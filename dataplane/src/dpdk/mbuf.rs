//! The owned packet buffer.

use std::ptr::NonNull;

use dpdk_sys as sys;
use esp::buf::PacketBuf;

use super::mempool::Mempool;

/// One owned `rte_mbuf`, returned to its pool on drop.
///
/// `#[repr(transparent)]`: a `[Mbuf]` has the layout of a `*mut rte_mbuf` array, which is what
/// the burst functions hand to DPDK.
///
/// [`data`](Mbuf::data) is the first segment only. For a multi-segment mbuf
/// ([`is_contiguous`](Mbuf::is_contiguous) false) it is shorter than [`pkt_len`](Mbuf::pkt_len),
/// and the [`PacketBuf`] methods that grow or shrink the packet refuse to act; the data path
/// drops such packets.
#[repr(transparent)]
pub struct Mbuf(NonNull<sys::rte_mbuf>);

// Safety: an Mbuf owns its mbuf exclusively (refcnt 1, not shared), and mbufs may be freed from
// any thread: the pktmbuf pools are multi-producer/multi-consumer.
unsafe impl Send for Mbuf {}

impl Mbuf {
    /// A fresh, empty mbuf with the pool's default headroom, or None when the pool is empty.
    #[inline]
    pub fn alloc(pool: &Mempool) -> Option<Mbuf> {
        // Safety: the pool is alive (pools are never freed); the result is a new mbuf we own.
        NonNull::new(unsafe { sys::rte_pktmbuf_alloc(pool.as_ptr()) }).map(Mbuf)
    }

    /// A new mbuf holding a copy of `bytes`; None when the pool is empty or `bytes` does not fit.
    pub fn from_slice(pool: &Mempool, bytes: &[u8]) -> Option<Mbuf> {
        let mut m = Mbuf::alloc(pool)?;
        m.append(bytes.len())?.copy_from_slice(bytes);
        Some(m)
    }

    /// Takes ownership of a raw mbuf.
    ///
    /// # Safety
    /// `ptr` must be a valid mbuf that the caller owns and gives up: nothing else may use or free
    /// it afterwards, and its data must not be shared (refcnt 1, not an indirect mbuf).
    #[inline]
    pub unsafe fn from_raw(ptr: NonNull<sys::rte_mbuf>) -> Mbuf {
        Mbuf(ptr)
    }

    /// Gives up ownership without freeing; the caller must free or send the mbuf.
    #[inline]
    pub fn into_raw(self) -> NonNull<sys::rte_mbuf> {
        let p = self.0;
        std::mem::forget(self);
        p
    }

    /// The raw mbuf, still owned by `self`.
    #[inline]
    pub fn as_ptr(&self) -> *mut sys::rte_mbuf {
        self.0.as_ptr()
    }

    #[inline]
    fn raw(&self) -> &sys::rte_mbuf {
        // Safety: self owns a valid mbuf for its whole life.
        unsafe { self.0.as_ref() }
    }

    /// The mbuf's header for changing its data bounds; `None` for a multi-segment mbuf, whose
    /// bounds the grow/shrink methods leave alone.
    #[inline]
    fn raw_mut(&mut self) -> Option<&mut sys::rte_mbuf> {
        // Safety: self owns a valid mbuf exclusively (refcnt 1) for its whole life.
        let m = unsafe { self.0.as_mut() };
        (m.nb_segs == 1).then_some(m)
    }

    /// The bytes of the first segment.
    #[inline]
    pub fn data(&self) -> &[u8] {
        let m = self.raw();
        // Safety: buf_addr + data_off .. + data_len lies inside the mbuf's buffer (an mbuf
        // invariant DPDK keeps); the bytes are ours for as long as &self lives.
        unsafe {
            std::slice::from_raw_parts(m.buf_addr.cast::<u8>().add(usize::from(m.data_off)), usize::from(m.data_len))
        }
    }

    /// The bytes of the first segment, writable.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        let m = self.raw();
        let (addr, off, len) = (m.buf_addr.cast::<u8>(), usize::from(m.data_off), usize::from(m.data_len));
        // Safety: as in `data`; &mut self and exclusive ownership (refcnt 1) make the bytes ours
        // alone.
        unsafe { std::slice::from_raw_parts_mut(addr.add(off), len) }
    }

    /// Length of the first segment (= [`pkt_len`](Mbuf::pkt_len) when contiguous).
    #[inline]
    pub fn len(&self) -> usize {
        usize::from(self.raw().data_len)
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Length of the whole packet over all segments.
    #[inline]
    pub fn pkt_len(&self) -> usize {
        self.raw().pkt_len as usize
    }

    /// Free bytes before the data.
    #[inline]
    pub fn headroom(&self) -> usize {
        usize::from(self.raw().data_off)
    }

    /// Free bytes after the data of the first segment.
    #[inline]
    pub fn tailroom(&self) -> usize {
        let m = self.raw();
        usize::from(m.buf_len) - usize::from(m.data_off) - usize::from(m.data_len)
    }

    /// One segment only: `data()` is the whole packet.
    #[inline]
    pub fn is_contiguous(&self) -> bool {
        self.raw().nb_segs == 1
    }

    /// The port the packet came in on.
    #[inline]
    pub fn port(&self) -> u16 {
        self.raw().port
    }

    /// Sets the port field (some PMDs and apps read it on transmit).
    #[inline]
    pub fn set_port(&mut self, port: u16) {
        // Safety: exclusive ownership of a valid mbuf.
        unsafe { (*self.0.as_ptr()).port = port }
    }

    /// The RSS hash the NIC computed, if it did.
    #[inline]
    pub fn rss_hash(&self) -> Option<u32> {
        let m = self.raw();
        if m.ol_flags & u64::from(sys::RTE_MBUF_F_RX_RSS_HASH) != 0 {
            // Safety: with RTE_MBUF_F_RX_RSS_HASH set, the hash union holds the RSS hash.
            Some(unsafe { m.__bindgen_anon_2.hash.rss })
        } else {
            None
        }
    }
}

impl Drop for Mbuf {
    #[inline]
    fn drop(&mut self) {
        // Safety: we own the mbuf (and its chain); nothing uses it after this.
        unsafe { sys::rte_pktmbuf_free(self.0.as_ptr()) }
    }
}

impl std::fmt::Debug for Mbuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = self.raw();
        f.debug_struct("Mbuf")
            .field("len", &m.data_len)
            .field("pkt_len", &m.pkt_len)
            .field("nb_segs", &m.nb_segs)
            .field("headroom", &m.data_off)
            .field("port", &m.port)
            .finish()
    }
}

/// The grow/shrink methods act only on contiguous mbufs; on a multi-segment one they return
/// None/false and change nothing.
impl PacketBuf for Mbuf {
    #[inline]
    fn data(&self) -> &[u8] {
        Mbuf::data(self)
    }

    #[inline]
    fn data_mut(&mut self) -> &mut [u8] {
        Mbuf::data_mut(self)
    }

    // The four below do what rte_pktmbuf_prepend/append/adj/trim do for a one-segment mbuf,
    // in Rust so that they inline: through bindgen's C wrappers each was a call per packet.

    #[inline]
    fn prepend(&mut self, n: usize) -> Option<&mut [u8]> {
        let n = u16::try_from(n).ok()?;
        let m = self.raw_mut()?;
        if n > m.data_off {
            return None;
        }
        m.data_off -= n;
        m.data_len += n;
        m.pkt_len += u32::from(n);
        Some(self.data_mut())
    }

    #[inline]
    fn append(&mut self, n: usize) -> Option<&mut [u8]> {
        let n = u16::try_from(n).ok()?;
        let m = self.raw_mut()?;
        if usize::from(n) > usize::from(m.buf_len) - usize::from(m.data_off) - usize::from(m.data_len) {
            return None;
        }
        m.data_len += n;
        m.pkt_len += u32::from(n);
        Some(self.data_mut())
    }

    #[inline]
    fn adj(&mut self, n: usize) -> bool {
        let Ok(n) = u16::try_from(n) else { return false };
        let Some(m) = self.raw_mut() else { return false };
        if n > m.data_len {
            return false;
        }
        m.data_off += n;
        m.data_len -= n;
        m.pkt_len -= u32::from(n);
        true
    }

    #[inline]
    fn trim(&mut self, n: usize) -> bool {
        let Ok(n) = u16::try_from(n) else { return false };
        let Some(m) = self.raw_mut() else { return false };
        if n > m.data_len {
            return false;
        }
        m.data_len -= n;
        m.pkt_len -= u32::from(n);
        true
    }

    #[inline]
    fn len(&self) -> usize {
        Mbuf::len(self)
    }
}
