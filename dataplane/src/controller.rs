//! The control thread: owns the SAD/SPD book ([`Sad`]), answers control-socket commands,
//! hands every change to the workers through their lock-free rings (in order, never dropped:
//! what does not fit waits in a backlog), shares learned neighbours, frees what the workers
//! retire, enforces SA lifetimes and collects events for the control plane.

use crate::config::{self, Direction, RawPolicy, RawSa};
use crate::control::{Command, PROTOCOL_VERSION, Response};
use crate::counters::{PortSnapshot, Snapshot, WorkerCounters};
use crate::dpdk::af_packet::RingDrops;
use crate::pipeline::Update;
use crate::sad::{Sad, SadError, SadEvent, Updates};
use crate::worker::Event;
use crossbeam::queue::ArrayQueue;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Events kept for the control plane between two polls; older ones are dropped first.
const MAX_EVENTS: usize = 4096;
/// How often the kernel's ring-drop counters of af_packet ports are collected: they are 32 bits
/// wide and reset on each read, so they are read well before they could wrap, asked or not.
const RING_DROPS_EVERY: Duration = Duration::from_secs(1);
/// How often lifetimes are checked.
const EXPIRE_EVERY: Duration = Duration::from_millis(100);
/// The control loop's pause while updates wait for room in a worker's ring: the workers do not
/// say when they have made room.
const BACKLOG_PAUSE: Duration = Duration::from_micros(500);
/// How long adding an SA to a full table waits for the slots of removed SAs the workers are
/// still to let go of.
const FULL_WAIT: Duration = Duration::from_millis(100);
/// The shortest time between two rounds started for the workers' events (see `gateway::run`).
pub const EVENT_ROUND_GAP: Duration = Duration::from_micros(500);

/// A port whose own counters snapshots show.
pub struct ReportedPort {
    pub id: u16,
    /// The DPDK device name of a data port, the kernel TAP interface of an exception path.
    pub name: String,
    /// A data port's [`Role`](config::Role) name, or "exception".
    pub role: &'static str,
    /// For a `net_af_packet` port: what the kernel dropped in front of its receive rings,
    /// which the driver does not count; shown as missed (see `dpdk::af_packet`).
    pub ring: Option<RingDrops>,
}

pub struct Controller {
    pub sad: Sad,
    counters: Vec<Arc<WorkerCounters>>,
    rings: Vec<Arc<ArrayQueue<Update>>>,
    backlog: Vec<VecDeque<Update>>,
    /// Updates queued for each worker so far, in all (see `WorkerCounters::updates_applied`).
    queued: Vec<u64>,
    /// Slots of removed SAs, each batch with the updates each worker must have applied
    /// before they may be handed out again (`Sad::free_slots_later`), oldest first.
    retiring: VecDeque<(Vec<u64>, Vec<usize>)>,
    worker_events: Vec<Arc<ArrayQueue<Event>>>,
    events: VecDeque<SadEvent>,
    last_expire: Instant,
    last_ring_read: Instant,
    ports: Vec<ReportedPort>,
}

impl Controller {
    pub fn new(
        sad: Sad,
        counters: Vec<Arc<WorkerCounters>>,
        rings: Vec<Arc<ArrayQueue<Update>>>,
        worker_events: Vec<Arc<ArrayQueue<Event>>>,
    ) -> Self {
        let backlog = rings.iter().map(|_| VecDeque::new()).collect();
        let mut sad = sad;
        sad.free_slots_later();
        Controller {
            sad,
            queued: vec![0; rings.len()],
            retiring: VecDeque::new(),
            counters,
            rings,
            backlog,
            worker_events,
            events: VecDeque::new(),
            last_expire: Instant::now(),
            last_ring_read: Instant::now(),
            ports: Vec::new(),
        }
    }

    /// The ports whose own counters snapshots show.
    pub fn report_ports(&mut self, ports: Vec<ReportedPort>) {
        self.ports = ports;
    }

    /// Each port's driver counters, read from this thread (the only one that reads them) while
    /// the workers burst. DPDK does not promise that `rte_eth_stats_get` may run beside a burst
    /// on every driver; NIC drivers read registers or per-queue counters, and so do the
    /// virtual devices used here (af_packet, tap, null, ring, memif, pcap on files). net_pcap
    /// on a live interface (`iface=`) is the exception: its counters come from the libpcap
    /// handle the worker reads. A port that cannot answer is left out rather than shown as 0.
    fn port_counters(&self) -> Vec<PortSnapshot> {
        self.ports
            .iter()
            .filter_map(|p| {
                let s = crate::dpdk::port_stats(p.id).ok()?;
                Some(PortSnapshot {
                    name: p.name.clone(),
                    role: p.role.to_string(),
                    rx: s.ipackets,
                    tx: s.opackets,
                    rx_missed: s.imissed + p.ring.as_ref().map_or(0, RingDrops::read),
                    rx_errors: s.ierrors,
                    rx_nombuf: s.rx_nombuf,
                    tx_errors: s.oerrors,
                })
            })
            .collect()
    }

    /// Queues per-worker updates and pushes what fits into the rings now.
    pub fn send(&mut self, updates: Updates) {
        for (w, list) in updates.into_iter().enumerate() {
            self.queued[w] += list.len() as u64;
            self.backlog[w].extend(list);
        }
        let slots = self.sad.take_retiring();
        if !slots.is_empty() {
            self.retiring.push_back((self.queued.clone(), slots));
        }
        self.flush();
    }

    /// Frees the slots of removed SAs that every worker has stopped using.
    fn release_slots(&mut self) {
        let counters = &self.counters;
        let done = |targets: &Vec<u64>| targets.iter().zip(counters).all(|(&t, c)| c.updates_applied() >= t);
        while let Some((_, slots)) = self.retiring.pop_front_if(|(targets, _)| done(targets)) {
            self.sad.free_slots(slots);
        }
    }

    fn flush(&mut self) {
        for (ring, backlog) in self.rings.iter().zip(&mut self.backlog) {
            while let Some(u) = backlog.pop_front() {
                if let Err(u) = ring.push(u) {
                    backlog.push_front(u);
                    break;
                }
            }
        }
    }

    /// True when every update has reached its worker's ring.
    pub fn flushed(&self) -> bool {
        self.backlog.iter().all(VecDeque::is_empty)
    }

    fn event(&mut self, e: SadEvent) {
        if self.events.len() == MAX_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(e);
    }

    /// One round of housekeeping: after [`Controller::pause`], or sooner.
    pub fn tick(&mut self, now: Instant) {
        self.release_slots();
        let mut share = Vec::new();
        let queues = self.worker_events.clone();
        for q in &queues {
            while let Some(e) = q.pop() {
                match e {
                    Event::NeighborLearned(n) => share.push(n),
                    // Dropped here, off the fast path.
                    Event::Retired(r) => drop(r),
                    Event::SeqLimit { slot, spi, exhausted } => {
                        let (events, updates) = self.sad.seq_limit(slot, spi, exhausted);
                        for e in events {
                            self.event(e);
                        }
                        self.send(updates);
                    }
                    Event::Acquire(id, k) => {
                        if let Some(policy) = self.sad.policy_name(id).map(str::to_string) {
                            self.event(SadEvent::Acquire {
                                policy,
                                src: k.src_ip(),
                                dst: k.dst_ip(),
                                proto: k.proto,
                                sport: k.sport,
                                dport: k.dport,
                            });
                        }
                    }
                }
            }
        }
        if !share.is_empty() {
            let updates = (0..self.rings.len()).map(|_| share.iter().map(|&n| Update::Neighbor(n)).collect()).collect();
            self.send(updates);
        }
        if now.duration_since(self.last_ring_read) >= RING_DROPS_EVERY {
            self.last_ring_read = now;
            for ring in self.ports.iter().filter_map(|p| p.ring.as_ref()) {
                ring.read();
            }
        }
        if now.duration_since(self.last_expire) >= EXPIRE_EVERY {
            self.last_expire = now;
            let (events, updates) = self.sad.expire(&self.counters, now);
            for e in events {
                self.event(e);
            }
            self.send(updates);
        }
        self.flush();
    }

    /// How long the control loop may sleep after a round at `now`: briefly while updates wait
    /// for room in a worker's ring, otherwise until the next lifetime check. A control-socket
    /// client wakes the loop sooner (the loop polls the control socket), and so does a worker
    /// with something to pass on at once ([`Doorbell`](crate::doorbell::Doorbell); see
    /// `has_events`).
    pub fn pause(&self, now: Instant) -> Duration {
        if !self.flushed() {
            return BACKLOG_PAUSE;
        }
        (self.last_expire + EXPIRE_EVERY).saturating_duration_since(now)
    }

    /// Whether a worker has reported something not yet collected by [`Controller::tick`]:
    /// the loop sleeps only if not (see `Doorbell::sleep`).
    pub fn has_events(&self) -> bool {
        self.worker_events.iter().any(|q| !q.is_empty())
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            ports: self.port_counters(),
            ..crate::counters::snapshot(&self.counters, self.sad.list(&self.counters))
        }
    }

    fn ok() -> Response {
        Response { version: PROTOCOL_VERSION, ..Response::default() }
    }

    fn error(e: impl std::fmt::Display) -> Response {
        Response { version: PROTOCOL_VERSION, error: Some(e.to_string()), ..Response::default() }
    }

    pub fn add_sa(&mut self, raw: &RawSa) -> Response {
        let sa = match config::check_sa(raw, &|n| format!("sa.{n}")) {
            Ok(s) => s,
            Err(e) => return Self::error(e),
        };
        self.release_slots();
        let mut added = self.sad.add_sa(&sa, &self.counters);
        // A full table with slots on their way back (a replacement's removal came just before,
        // say): the workers apply updates between bursts, so they come within microseconds.
        let wait_until = Instant::now() + FULL_WAIT;
        while matches!(added, Err(SadError::Full(_))) && !self.retiring.is_empty() && Instant::now() < wait_until {
            std::thread::sleep(Duration::from_micros(50));
            self.flush();
            self.release_slots();
            added = self.sad.add_sa(&sa, &self.counters);
        }
        match added {
            Ok((_, updates)) => {
                self.send(updates);
                Self::ok()
            }
            Err(e) => Self::error(e),
        }
    }

    pub fn set_policy(&mut self, raw: &RawPolicy) -> Response {
        let sad = &self.sad;
        let find = |name: &str| -> Option<Direction> { sad.sa_direction(name) };
        match config::check_policy(raw, &|n| format!("policy.{n}"), &find, true) {
            Ok(p) => {
                let updates = self.sad.set_policy(p);
                self.send(updates);
                Self::ok()
            }
            Err(e) => Self::error(e),
        }
    }

    /// Answers one control-socket command.
    pub fn handle(&mut self, cmd: Command) -> Response {
        match cmd {
            Command::Stats => Response { stats: Some(self.snapshot()), ..Self::ok() },
            Command::Totals => {
                let totals =
                    Snapshot { ports: self.port_counters(), ..crate::counters::snapshot(&self.counters, Vec::new()) };
                Response { stats: Some(totals), ..Self::ok() }
            }
            Command::ListSas => Response { sas: Some(self.sad.list(&self.counters)), ..Self::ok() },
            Command::AddSa { sa } => self.add_sa(&sa),
            Command::DelSa { name } => match self.sad.del_sa(&name) {
                Ok(u) => {
                    self.send(u);
                    Self::ok()
                }
                Err(e) => Self::error(e),
            },
            Command::SetPolicy { policy } => self.set_policy(&policy),
            Command::DelPolicy { name } => match self.sad.del_policy(&name) {
                Ok(u) => {
                    self.send(u);
                    Self::ok()
                }
                Err(e) => Self::error(e),
            },
            Command::PollEvents => Response { events: Some(self.events.drain(..).collect()), ..Self::ok() },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::Mac;
    use crate::pipeline::Neighbor;

    /// Sleeps until the next lifetime check, whatever commands come (a client wakes the loop
    /// anyway); briefly while an update waits for room in a worker's ring. Worker events are
    /// seen by `has_events` until collected.
    #[test]
    fn pauses_until_the_next_check_unless_updates_wait() {
        let ring = Arc::new(ArrayQueue::new(1));
        let events = Arc::new(ArrayQueue::new(4));
        let counters = vec![Arc::new(WorkerCounters::new(0, 4))];
        let mut ctl = Controller::new(Sad::new(4, 1), counters, vec![ring.clone()], vec![events.clone()]);
        let t = Instant::now() + 2 * EXPIRE_EVERY;
        ctl.tick(t);
        assert_eq!(ctl.pause(t), EXPIRE_EVERY, "lifetimes just checked");
        for cmd in [Command::PollEvents, Command::Stats, Command::ListSas] {
            assert!(ctl.handle(cmd).error.is_none());
        }
        assert_eq!(ctl.pause(t), EXPIRE_EVERY, "read-only commands change nothing");
        assert_eq!(ctl.pause(t + EXPIRE_EVERY - Duration::from_millis(1)), Duration::from_millis(1));
        assert_eq!(ctl.pause(t + 2 * EXPIRE_EVERY), Duration::ZERO, "a check overdue");
        // A neighbour learned by a worker: seen, then shared with the workers.
        let n = Neighbor { port: 0, ip: "192.0.2.9".parse().unwrap(), mac: Mac([2, 0, 0, 0, 0, 9]) };
        assert!(!ctl.has_events());
        assert!(events.push(Event::NeighborLearned(n)).is_ok());
        assert!(ctl.has_events());
        ctl.tick(t);
        assert!(!ctl.has_events() && ctl.flushed());
        assert_eq!(ctl.pause(t), EXPIRE_EVERY);
        // A second one does not fit the worker's ring (one slot, taken): short pauses for as
        // long as it waits, whenever that is.
        assert!(events.push(Event::NeighborLearned(n)).is_ok());
        ctl.tick(t);
        assert!(!ctl.flushed());
        assert_eq!(ctl.pause(t), BACKLOG_PAUSE);
        assert_eq!(ctl.pause(t + 10 * EXPIRE_EVERY), BACKLOG_PAUSE);
        assert!(ring.pop().is_some());
        ctl.tick(t);
        assert!(ctl.flushed() && ring.pop().is_some());
        assert_eq!(ctl.pause(t), EXPIRE_EVERY, "long again once delivered");
    }

    /// An outbound SA's sequence counter at its soft point, then at its end, as a worker
    /// reports them: a soft expiry for the IKE daemon to rekey on, then a hard one and the
    /// SA's removal from the workers.
    #[test]
    fn sequence_limits_reported_by_a_worker_expire_the_sa() {
        let ring = Arc::new(ArrayQueue::new(8));
        let events = Arc::new(ArrayQueue::new(4));
        let counters = vec![Arc::new(WorkerCounters::new(0, 4))];
        let mut ctl = Controller::new(Sad::new(4, 1), counters, vec![ring.clone()], vec![events.clone()]);
        let sa: ctlproto::RawSa = serde_json::from_str(
            r#"{"name":"o","spi":4660,"direction":"out","algorithm":"aes128gcm16",
            "key":"000102030405060708090a0b0c0d0e0f","salt":"01020304","local":"192.0.2.1",
            "remote":"192.0.2.2"}"#,
        )
        .unwrap();
        assert!(ctl.handle(Command::AddSa { sa }).error.is_none());
        assert!(matches!(ring.pop(), Some(Update::AddOutbound { slot: 0, .. })));
        let polled = |ctl: &mut Controller| ctl.handle(Command::PollEvents).events.unwrap_or_default();
        let t = Instant::now();
        assert!(events.push(Event::SeqLimit { slot: 0, spi: 4660, exhausted: false }).is_ok());
        ctl.tick(t);
        assert_eq!(polled(&mut ctl), [SadEvent::SoftExpire { name: "o".into(), spi: 4660, direction: "out".into() }]);
        assert!(ring.pop().is_none(), "the SA stays until it is replaced");
        assert!(events.push(Event::SeqLimit { slot: 0, spi: 4660, exhausted: true }).is_ok());
        ctl.tick(t);
        assert_eq!(polled(&mut ctl), [SadEvent::HardExpire { name: "o".into(), spi: 4660, direction: "out".into() }]);
        assert!(matches!(ring.pop(), Some(Update::DelOutbound { slot: 0 })));
    }

    fn out_sa(name: &str, spi: u32) -> ctlproto::RawSa {
        serde_json::from_str(&format!(
            r#"{{"name":"{name}","spi":{spi},"direction":"out","algorithm":"aes128gcm16",
            "key":"000102030405060708090a0b0c0d0e0f","salt":"01020304","local":"192.0.2.1",
            "remote":"192.0.2.2"}}"#
        ))
        .unwrap()
    }

    /// What a worker does with its ring between bursts: applies every update (here: takes
    /// it) and says so. Returns the slots of the SAs added.
    fn worker_round(ring: &ArrayQueue<Update>, counters: &WorkerCounters) -> Vec<usize> {
        let mut added = Vec::new();
        while let Some(u) = ring.pop() {
            if let Update::AddOutbound { slot, .. } = u {
                added.push(slot);
            }
            counters.note_update_applied();
        }
        added
    }

    /// A removed SA's slot goes to another SA only once the worker has applied the removal:
    /// until then the worker may still run the removed SA, and its packets would be counted
    /// to the newcomer.
    #[test]
    fn a_removed_sas_slot_waits_for_the_workers() {
        let ring = Arc::new(ArrayQueue::new(16));
        let events = Arc::new(ArrayQueue::new(4));
        let w = Arc::new(WorkerCounters::new(0, 3));
        let mut ctl = Controller::new(Sad::new(3, 1), vec![w.clone()], vec![ring.clone()], vec![events]);
        assert!(ctl.handle(Command::AddSa { sa: out_sa("a", 0x100) }).error.is_none());
        assert!(ctl.handle(Command::AddSa { sa: out_sa("b", 0x101) }).error.is_none());
        assert_eq!(worker_round(&ring, &w), [0, 1]);
        assert!(ctl.handle(Command::DelSa { name: "a".into() }).error.is_none());
        // The worker has not seen the removal yet and still sends on "a".
        w.sa[0].packets.add(5);
        assert!(ctl.handle(Command::AddSa { sa: out_sa("c", 0x102) }).error.is_none());
        w.sa[0].packets.add(2);
        assert_eq!(worker_round(&ring, &w), [2], "slot 0 is not handed out while the worker may use it");
        assert!(ctl.handle(Command::AddSa { sa: out_sa("d", 0x103) }).error.is_none());
        assert_eq!(worker_round(&ring, &w), [0], "and is once the worker is past the removal");
        let sas = ctl.sad.list(std::slice::from_ref(&w));
        assert!(sas.iter().all(|s| s.packets == 0), "nothing of a's counted to another SA: {sas:?}");

        // A full table whose removed SA's slot comes back while an add waits for it.
        assert!(ctl.handle(Command::DelSa { name: "b".into() }).error.is_none());
        let (r, c) = (ring.clone(), w.clone());
        let worker = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(5));
            worker_round(&r, &c)
        });
        assert!(ctl.handle(Command::AddSa { sa: out_sa("e", 0x104) }).error.is_none());
        worker.join().unwrap();
        assert_eq!(worker_round(&ring, &w), [1]);
        // Full, nothing on its way back: refused at once.
        let t = Instant::now();
        assert!(ctl.handle(Command::AddSa { sa: out_sa("f", 0x105) }).error.unwrap().contains("in use"));
        assert!(t.elapsed() < FULL_WAIT);
    }
}
