//! How a worker wakes the control thread: the thread sleeps in `ppoll` on the control socket and
//! on this doorbell, so that it can sleep until its next lifetime check and still act at once on
//! what a worker reports (a neighbour the other workers are waiting for, an acquire for the
//! control plane, the SAs its updates replaced).
//!
//! Ringing costs a worker a system call only while the control thread is asleep or about to
//! be: the thread raises `asleep` before it sleeps and looks at the workers' event rings once
//! more afterwards, and a worker clears `asleep` when it rings. With both sides fenced, either
//! the worker sees the flag (and sends) or the thread sees the event (and does not sleep).

use ctlproto::line::wait_readable;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, Ordering, fence};
use std::time::Duration;

pub struct Doorbell {
    /// The workers' end.
    bell: UnixDatagram,
    /// The control thread's end, which it polls.
    ear: UnixDatagram,
    asleep: AtomicBool,
}

impl Doorbell {
    pub fn new() -> io::Result<Self> {
        let (bell, ear) = UnixDatagram::pair()?;
        bell.set_nonblocking(true)?;
        ear.set_nonblocking(true)?;
        Ok(Doorbell { bell, ear, asleep: AtomicBool::new(false) })
    }

    /// Worker side: wakes the control thread if it sleeps. Call it after pushing the event it
    /// should act on.
    #[inline]
    pub fn ring(&self) {
        // Orders the event's push before the flag's read (see the module's comment). The
        // plain load first: while the thread is awake, no locked write to a shared line.
        fence(Ordering::SeqCst);
        if self.asleep.load(Ordering::Relaxed) && self.asleep.swap(false, Ordering::SeqCst) {
            // A full buffer means the bell has rung already; either way the thread wakes.
            // (Should this worker be descheduled between the swap and the send, other
            // workers' rings find the flag lowered and the wake-up waits for this one.)
            let _ = self.bell.send(&[1]);
        }
    }

    /// Control side: sleeps until one of `fds` or the bell is readable or `timeout` passes,
    /// unless `pending()` (asked after the bell is armed) says a worker has reported
    /// something already. True if a worker's event cut the sleep short or prevented it.
    pub fn sleep(&self, fds: &[BorrowedFd<'_>], timeout: Duration, pending: impl Fn() -> bool) -> bool {
        // From here on workers ring (see the module's comment).
        self.asleep.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        let waiting = pending();
        if !waiting {
            let mut all = Vec::with_capacity(fds.len() + 1);
            all.extend_from_slice(fds);
            all.push(self.ear.as_fd());
            wait_readable(&all, timeout);
        }
        self.asleep.store(false, Ordering::SeqCst);
        // Past rings are cleared. A worker that swapped the flag just before it was lowered
        // may still send after this: one spurious wake later, nothing lost.
        let mut rung = false;
        let mut buf = [0u8; 64];
        while self.ear.recv(&mut buf).is_ok() {
            rung = true;
        }
        waiting || rung
    }

    /// Wakes the control thread whether or not it said it sleeps: for a stop decided on
    /// another thread.
    pub fn wake(&self) {
        let _ = self.bell.send(&[1]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam::queue::ArrayQueue;
    use std::sync::Arc;
    use std::time::Instant;

    #[test]
    fn rings_only_while_asleep() {
        let d = Doorbell::new().unwrap();
        d.ring();
        let t = Instant::now();
        assert!(!d.sleep(&[], Duration::from_millis(30), || false), "rung before the sleep: ignored");
        assert!(t.elapsed() >= Duration::from_millis(25), "slept its timeout: {:?}", t.elapsed());
        assert!(d.sleep(&[], Duration::from_secs(20), || true), "an event waiting: no sleep");
        d.wake();
        let t = Instant::now();
        assert!(d.sleep(&[], Duration::from_secs(20), || false), "woken");
        assert!(t.elapsed() < Duration::from_secs(10));
        assert!(!d.sleep(&[], Duration::from_millis(1), || false), "the wake was cleared");
    }

    /// A worker that pushes events at any moment, ringing after each, is seen within one
    /// sleep however long the sleep is asked to be, and every event is collected.
    #[test]
    fn a_worker_event_ends_a_long_sleep() {
        let bell = Arc::new(Doorbell::new().unwrap());
        let queue = Arc::new(ArrayQueue::new(16));
        const EVENTS: u32 = 200;
        let worker = {
            let (bell, queue) = (bell.clone(), queue.clone());
            std::thread::spawn(move || {
                for i in 0..EVENTS {
                    while queue.push(i).is_err() {
                        std::thread::yield_now();
                    }
                    bell.ring();
                    if i % 8 == 0 {
                        std::thread::sleep(Duration::from_micros(200));
                    }
                }
            })
        };
        let mut seen = 0;
        let mut longest = Duration::ZERO;
        while seen < EVENTS {
            while queue.pop().is_some() {
                seen += 1;
            }
            if seen == EVENTS {
                break;
            }
            let t = Instant::now();
            bell.sleep(&[], Duration::from_secs(20), || !queue.is_empty());
            longest = longest.max(t.elapsed());
        }
        worker.join().unwrap();
        // A lost wake-up would have slept the whole 20 s.
        assert!(longest < Duration::from_secs(10), "slept {longest:?} with an event waiting");
    }
}
