//! How a worker wakes the control thread: the thread sleeps in `ppoll` on the control socket and
//! on this doorbell, so that it can sleep until its next lifetime check and still act at once on
//! what a worker reports (a neighbour the other workers are waiting for, an acquire for the
//! control plane).
//!
//! Ringing costs a worker a system call only while the control thread is asleep or about to
//! be: the thread raises `asleep` before it sleeps and looks at the workers' event rings once
//! more afterwards, and a worker clears `asleep` when it rings. With both sides fenced, either
//! the worker sees the flag (and sends) or the thread sees the event (and does not sleep).

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, Ordering, fence};

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
        // Orders the event's push before the flag's read (see the module's comment).
        fence(Ordering::SeqCst);
        if self.asleep.swap(false, Ordering::SeqCst) {
            // A full buffer means the bell has rung already; either way the thread wakes.
            let _ = self.bell.send(&[1]);
        }
    }

    /// Control side, before sleeping: from here on workers ring. The caller must then look
    /// for events once more and sleep only if there are none.
    pub fn arm(&self) {
        self.asleep.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
    }

    /// Control side, after waking: workers stop ringing, and past rings are cleared.
    pub fn disarm(&self) {
        self.asleep.store(false, Ordering::SeqCst);
        let mut buf = [0u8; 64];
        while self.ear.recv(&mut buf).is_ok() {}
    }
}

/// What the control thread polls: readable once rung.
impl AsFd for Doorbell {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.ear.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam::queue::ArrayQueue;
    use ctlproto::line::wait_readable;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    fn readable(d: &Doorbell) -> bool {
        wait_readable(&[d.as_fd()], Duration::ZERO)
    }

    #[test]
    fn rings_only_while_armed() {
        let d = Doorbell::new().unwrap();
        d.ring();
        assert!(!readable(&d), "not armed: no system call, nothing to read");
        d.arm();
        d.ring();
        assert!(readable(&d));
        d.ring();
        d.disarm();
        assert!(!readable(&d), "disarm clears what was rung");
        d.arm();
        d.disarm();
        d.ring();
        assert!(!readable(&d));
    }

    /// The control loop's use: arm, look for events, sleep only if there are none. A worker
    /// that pushes at any moment is seen within one sleep, however long the sleep is asked to
    /// be; every event is collected.
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
        let started = Instant::now();
        let mut seen = 0;
        let mut longest = Duration::ZERO;
        while seen < EVENTS {
            while queue.pop().is_some() {
                seen += 1;
            }
            if seen == EVENTS {
                break;
            }
            bell.arm();
            let t = Instant::now();
            if queue.is_empty() {
                wait_readable(&[bell.as_fd()], Duration::from_secs(20));
            }
            longest = longest.max(t.elapsed());
            bell.disarm();
            assert!(started.elapsed() < Duration::from_secs(60), "lost a wake-up: {seen} of {EVENTS} events seen");
        }
        worker.join().unwrap();
        // A missed ring would have slept the whole 20 s.
        assert!(longest < Duration::from_secs(10), "slept {longest:?} with an event waiting");
    }
}
