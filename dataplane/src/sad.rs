//! The control thread's book of SAs and policies (the SAD and SPD of RFC 4301 4.4), from which
//! every change becomes updates for the workers: each worker gets its own copy of an SA
//! (outbound copies share one sequence counter, inbound copies one anti-replay window) and the
//! same read-only SPD. The workers never see this structure; they only apply updates.

use crate::config::{Direction, Lifetime, PolicyAction, PolicyConf, SaConf};
use crate::counters::WorkerCounters;
use crate::hash::FastMap;
use crate::pipeline::{InboundEntry, Update};
use crate::policy::{Action, Policy, Selector};
use esp::sa::{InboundSa, OutboundSa, SeqCounter};
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SadError {
    #[error("an SA named {0:?} exists already")]
    NameTaken(String),
    #[error("an inbound SA with SPI {0:#x} exists already")]
    SpiTaken(u32),
    #[error("no SA named {0:?}")]
    NoSuchSa(String),
    #[error("no policy named {0:?}")]
    NoSuchPolicy(String),
    #[error("all {0} SA slots are in use (or held until the workers let go of SAs just removed)")]
    Full(usize),
    #[error("SA {0:?}: {1}")]
    Invalid(String, &'static str),
}

/// What the control thread knows of an installed SA.
#[derive(Debug, Clone)]
pub struct SaMeta {
    pub name: String,
    pub spi: u32,
    pub direction: Direction,
    pub local: IpAddr,
    pub remote: IpAddr,
    pub lifetime: Lifetime,
    pub installed: Instant,
    /// Counter values of the slot when the SA got it (slots are reused; counters only grow).
    base_packets: u64,
    base_bytes: u64,
    soft_reported: bool,
    /// An inbound SA installed without selectors of its own: it takes those of the policies
    /// naming it as `sa_in`, and follows them when they change.
    selectors_from_policies: bool,
    /// Which installation this is: a slot's entries in the deadline heap name the SA they
    /// were made for, and those of an SA since removed are skipped.
    serial: u64,
}

impl SaMeta {
    /// When the SA's next time limit falls: its soft one until that is reported, then its
    /// hard one. None without time limits, or for a limit beyond what `Instant` can hold.
    /// Relies on soft limits being below hard ones, which `config::check_sa` ensures for every
    /// SA that reaches the SAD: otherwise the hard limit would wait for the soft one.
    fn next_deadline(&self) -> Option<Instant> {
        let lt = &self.lifetime;
        let secs = lt.soft_secs.filter(|_| !self.soft_reported).or(lt.hard_secs)?;
        self.installed.checked_add(Duration::from_secs(secs))
    }
}

fn has_volume_limit(lt: &Lifetime) -> bool {
    lt.soft_bytes.is_some() || lt.hard_bytes.is_some() || lt.soft_packets.is_some() || lt.hard_packets.is_some()
}

pub use ctlproto::{SaInfo, SadEvent};

fn dir_name(d: Direction) -> String {
    match d {
        Direction::In => "in".into(),
        Direction::Out => "out".into(),
    }
}

pub struct Sad {
    slots: Vec<Option<SaMeta>>,
    free: Vec<usize>,
    /// Slots of removed SAs, not free yet when slots are freed only once the workers are past
    /// the removal ([`Sad::free_slots_later`]).
    retiring: Vec<usize>,
    free_later: bool,
    by_name: FastMap<String, usize>,
    inbound_spis: FastMap<u32, usize>,
    /// Policies by name, each with the id the workers know it by.
    policies: FastMap<String, (u32, PolicyConf)>,
    policy_names: FastMap<u32, String>,
    next_policy_id: u32,
    /// Ids of the policies naming an SA as `sa_out` / `sa_in`, so that installing or removing
    /// an SA touches only its own policies (100,000 tunnels must not cost 100,000² steps).
    by_sa_out: FastMap<String, BTreeSet<u32>>,
    by_sa_in: FastMap<String, BTreeSet<u32>>,
    workers: usize,
    backend: esp::aead::Backend,
    /// Time limits to check, earliest first: (when, slot, serial of the SA it was made for).
    /// Each SA with time limits has one live entry; entries of removed SAs stay until they
    /// come due or the heap is rebuilt (see `del_sa`).
    deadlines: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    /// Slots of the SAs with a byte or packet limit: each check reads their counters. SAs
    /// without limits cost the lifetime check nothing (most manual SAs), SAs with time limits
    /// only (IKE's, by default) a heap entry each.
    by_volume: BTreeSet<usize>,
    next_serial: u64,
}

/// Per-worker updates, indexed by worker.
pub type Updates = Vec<Vec<Update>>;

impl Sad {
    pub fn new(max_sas: usize, workers: usize) -> Self {
        Sad {
            slots: (0..max_sas).map(|_| None).collect(),
            // Hand out low slots first.
            free: (0..max_sas).rev().collect(),
            retiring: Vec::new(),
            free_later: false,
            by_name: FastMap::default(),
            inbound_spis: FastMap::default(),
            policies: FastMap::default(),
            policy_names: FastMap::default(),
            next_policy_id: 0,
            by_sa_out: FastMap::default(),
            by_sa_in: FastMap::default(),
            workers,
            backend: esp::aead::Backend::default(),
            deadlines: BinaryHeap::new(),
            by_volume: BTreeSet::new(),
            next_serial: 0,
        }
    }

    /// From now on a removed SA's slot is not handed out again until [`Sad::free_slots`]
    /// says so (after [`Sad::take_retiring`]). A worker may still be running the removed SA,
    /// its removal waiting in a full ring, and would count that SA's packets into the slot's
    /// next SA (its byte and packet limits, and what operators see).
    pub fn free_slots_later(&mut self) {
        self.free_later = true;
    }

    /// The slots of SAs removed since the last call, waiting for [`Sad::free_slots`].
    pub fn take_retiring(&mut self) -> Vec<usize> {
        std::mem::take(&mut self.retiring)
    }

    pub fn free_slots(&mut self, slots: Vec<usize>) {
        self.free.extend(slots);
    }

    pub fn max_sas(&self) -> usize {
        self.slots.len()
    }

    fn empty_updates(&self) -> Updates {
        (0..self.workers).map(|_| Vec::new()).collect()
    }

    fn sums(counters: &[Arc<WorkerCounters>], slot: usize) -> (u64, u64) {
        counters.iter().fold((0, 0), |(p, b), c| {
            let s = &c.sa[slot];
            (p + s.packets.get(), b + s.bytes.get())
        })
    }

    /// Installs an SA. Inbound SAs without explicit selectors take those of the policies that
    /// name them as `sa_in`. Returns the slot and the workers' updates (with a new SPD when a
    /// policy was waiting for this SA).
    /// The AES-GCM implementation of the SAs added from now on.
    pub fn set_backend(&mut self, backend: esp::aead::Backend) {
        self.backend = backend;
    }

    pub fn add_sa(&mut self, conf: &SaConf, counters: &[Arc<WorkerCounters>]) -> Result<(usize, Updates), SadError> {
        self.add_sa_at(conf, counters, Instant::now())
    }

    /// [`Self::add_sa`], installed at `now` (lifetimes count from it), so that tests can move
    /// time.
    pub fn add_sa_at(
        &mut self,
        conf: &SaConf,
        counters: &[Arc<WorkerCounters>],
        now: Instant,
    ) -> Result<(usize, Updates), SadError> {
        let mut with_backend = conf.sa.clone();
        with_backend.backend = self.backend;
        let sa_cfg = &with_backend;
        if self.by_name.contains_key(&conf.name) {
            return Err(SadError::NameTaken(conf.name.clone()));
        }
        if conf.direction == Direction::In && self.inbound_spis.contains_key(&conf.sa.spi) {
            return Err(SadError::SpiTaken(conf.sa.spi));
        }
        let slot = *self.free.last().ok_or(SadError::Full(self.slots.len()))?;
        let invalid = |e| SadError::Invalid(conf.name.clone(), e);
        let mut updates = self.empty_updates();
        match conf.direction {
            Direction::Out => {
                // One counter for every worker's copy: sequence numbers stay unique (RFC 4303 3.3.3).
                let seq = Arc::new(SeqCounter::default());
                for u in &mut updates {
                    let sa = OutboundSa::new(sa_cfg, seq.clone()).map_err(invalid)?;
                    u.push(Update::AddOutbound { slot, sa: Box::new(sa) });
                }
            }
            Direction::In => {
                let sa = InboundSa::new(sa_cfg).map_err(invalid)?;
                let selectors: Arc<[Selector]> = match &conf.selectors {
                    Some(s) => s.clone().into(),
                    None => self.selectors_naming(&conf.name).into(),
                };
                let entry = InboundEntry { slot, sa, selectors };
                for u in &mut updates {
                    u.push(Update::AddInbound(Box::new(entry.clone())));
                }
                self.inbound_spis.insert(conf.sa.spi, slot);
            }
        }
        self.free.pop();
        let (base_packets, base_bytes) = Self::sums(counters, slot);
        let meta = SaMeta {
            name: conf.name.clone(),
            spi: conf.sa.spi,
            direction: conf.direction,
            local: conf.sa.local,
            remote: conf.sa.remote,
            lifetime: conf.lifetime,
            installed: now,
            base_packets,
            base_bytes,
            soft_reported: false,
            selectors_from_policies: conf.direction == Direction::In && conf.selectors.is_none(),
            serial: self.next_serial,
        };
        self.next_serial += 1;
        if let Some(at) = meta.next_deadline() {
            self.deadlines.push(Reverse((at, slot, meta.serial)));
        }
        if has_volume_limit(&meta.lifetime) {
            self.by_volume.insert(slot);
        }
        self.slots[slot] = Some(meta);
        self.by_name.insert(conf.name.clone(), slot);
        if conf.direction == Direction::Out {
            self.push_policies_naming(&conf.name, &mut updates);
        }
        Ok((slot, updates))
    }

    /// Removes an SA by name.
    pub fn del_sa(&mut self, name: &str) -> Result<Updates, SadError> {
        let slot = self.by_name.remove(name).ok_or_else(|| SadError::NoSuchSa(name.to_string()))?;
        let meta = self.slots[slot].take().ok_or_else(|| SadError::NoSuchSa(name.to_string()))?;
        if self.free_later {
            self.retiring.push(slot);
        } else {
            self.free.push(slot);
        }
        self.by_volume.remove(&slot);
        // A removed SA's deadline stays in the heap until it comes due. SAs replaced long
        // before their lifetimes end (by hand, or by a control plane that rekeys early) would
        // let those pile up: past twice the SAs installed, they are swept.
        let installed = self.by_name.len();
        if self.deadlines.len() > 2 * installed + 64 {
            let slots = &self.slots;
            self.deadlines.retain(|Reverse((_, s, serial))| slots[*s].as_ref().is_some_and(|m| m.serial == *serial));
        }
        let mut updates = self.empty_updates();
        for u in &mut updates {
            u.push(match meta.direction {
                Direction::Out => Update::DelOutbound { slot },
                Direction::In => Update::DelInbound { spi: meta.spi },
            });
        }
        match meta.direction {
            Direction::In => {
                self.inbound_spis.remove(&meta.spi);
            }
            Direction::Out => self.push_policies_naming(name, &mut updates),
        }
        Ok(updates)
    }

    /// Adds a policy, or replaces the one of the same name in place (keeping its id, and with
    /// it its place among policies of equal priority).
    pub fn set_policy(&mut self, p: PolicyConf) -> Updates {
        let was_in = self.policies.get(&p.name).and_then(|(_, old)| Self::sa_in_of(old));
        let now_in = Self::sa_in_of(&p);
        let mut updates = self.set_policy_only(p);
        self.push_inbound_selectors([was_in, now_in], &mut updates);
        updates
    }

    fn sa_in_of(p: &PolicyConf) -> Option<String> {
        match &p.action {
            PolicyAction::Protect { sa_in, .. } => sa_in.clone(),
            _ => None,
        }
    }

    /// Inbound SAs that take their selectors from the policies naming them (installed without
    /// selectors of their own) get them again after those policies changed: RFC 4301 5.2's
    /// check of decrypted packets follows the SPD (an SA installed before its policy would
    /// otherwise drop everything, and one whose policy narrowed would still take the old).
    fn push_inbound_selectors(&self, names: [Option<String>; 2], updates: &mut Updates) {
        let [a, b] = names;
        let b = b.filter(|b| a.as_ref() != Some(b));
        for name in [a, b].into_iter().flatten() {
            let Some(m) = self.by_name.get(&name).and_then(|&s| self.slots[s].as_ref()) else { continue };
            if m.direction != Direction::In || !m.selectors_from_policies {
                continue;
            }
            let selectors: Arc<[Selector]> = self.selectors_naming(&name).into();
            for u in updates.iter_mut() {
                u.push(Update::SetInboundSelectors { spi: m.spi, selectors: selectors.clone() });
            }
        }
    }

    fn set_policy_only(&mut self, p: PolicyConf) -> Updates {
        let id = match self.policies.get(&p.name) {
            Some(&(id, _)) => {
                self.unindex(id);
                id
            }
            None => {
                let id = self.next_policy_id;
                // Ids are not reused while 2^32 policies are created (names are reused on
                // replacement, so in practice never).
                self.next_policy_id = self.next_policy_id.wrapping_add(1);
                self.policy_names.insert(id, p.name.clone());
                id
            }
        };
        if let PolicyAction::Protect { sa_out, sa_in } = &p.action {
            self.by_sa_out.entry(sa_out.clone()).or_default().insert(id);
            if let Some(n) = sa_in {
                self.by_sa_in.entry(n.clone()).or_default().insert(id);
            }
        }
        let policy = self.resolve(id, &p);
        self.policies.insert(p.name.clone(), (id, p));
        self.broadcast(|| Update::SetPolicy(policy))
    }

    pub fn del_policy(&mut self, name: &str) -> Result<Updates, SadError> {
        let (id, ref old) = *self.policies.get(name).ok_or_else(|| SadError::NoSuchPolicy(name.to_string()))?;
        let was_in = Self::sa_in_of(old);
        self.unindex(id);
        self.policies.remove(name);
        self.policy_names.remove(&id);
        let mut updates = self.broadcast(|| Update::DelPolicy { id });
        self.push_inbound_selectors([was_in, None], &mut updates);
        Ok(updates)
    }

    /// Forgets which SAs policy `id` names.
    fn unindex(&mut self, id: u32) {
        let Some(PolicyAction::Protect { sa_out, sa_in }) =
            self.policy_names.get(&id).and_then(|n| self.policies.get(n)).map(|(_, p)| p.action.clone())
        else {
            return;
        };
        for (index, name) in [(&mut self.by_sa_out, Some(sa_out)), (&mut self.by_sa_in, sa_in)] {
            let Some(name) = name else { continue };
            if let Some(ids) = index.get_mut(&name) {
                ids.remove(&id);
                if ids.is_empty() {
                    index.remove(&name);
                }
            }
        }
    }

    /// The same update for every worker.
    fn broadcast(&self, make: impl Fn() -> Update) -> Updates {
        (0..self.workers).map(|_| vec![make()]).collect()
    }

    /// Whether an SA of this name exists, and its direction.
    pub fn sa_direction(&self, name: &str) -> Option<Direction> {
        self.by_name.get(name).and_then(|&s| self.slots[s].as_ref()).map(|m| m.direction)
    }

    pub fn policy_name(&self, id: u32) -> Option<&str> {
        self.policy_names.get(&id).map(String::as_str)
    }

    /// The selectors of the policies that name `sa_in` as their inbound SA, in the order the
    /// policies were configured.
    fn selectors_naming(&self, sa_in: &str) -> Vec<Selector> {
        self.by_sa_in
            .get(sa_in)
            .into_iter()
            .flatten()
            .filter_map(|id| self.policies.get(self.policy_names.get(id)?))
            .map(|(_, p)| p.selector)
            .collect()
    }

    /// A policy as the workers run it: its outbound SA's name resolved to a slot.
    fn resolve(&self, id: u32, p: &PolicyConf) -> Policy {
        let action = match &p.action {
            PolicyAction::Protect { sa_out, .. } => Action::Protect {
                sa_out: self
                    .by_name
                    .get(sa_out)
                    .copied()
                    .filter(|&s| self.slots[s].as_ref().is_some_and(|m| m.direction == Direction::Out)),
            },
            PolicyAction::Bypass => Action::Bypass,
            PolicyAction::Discard => Action::Discard,
        };
        Policy { selector: p.selector, action, priority: p.priority, id }
    }

    /// Hands the workers the policies that name outbound SA `name`, resolved again after it
    /// was installed or removed. They follow the SA's own update in the ring.
    fn push_policies_naming(&self, name: &str, updates: &mut Updates) {
        for id in self.by_sa_out.get(name).into_iter().flatten() {
            let Some((_, p)) = self.policy_names.get(id).and_then(|n| self.policies.get(n)) else { continue };
            let policy = self.resolve(*id, p);
            for u in updates.iter_mut() {
                u.push(Update::SetPolicy(policy));
            }
        }
    }

    /// Every SA with its traffic since it was installed.
    pub fn list(&self, counters: &[Arc<WorkerCounters>]) -> Vec<SaInfo> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(slot, m)| {
                let m = m.as_ref()?;
                let (p, b) = Self::sums(counters, slot);
                Some(SaInfo {
                    name: m.name.clone(),
                    spi: m.spi,
                    direction: dir_name(m.direction),
                    local: m.local,
                    remote: m.remote,
                    packets: p - m.base_packets,
                    bytes: b - m.base_bytes,
                    age_secs: m.installed.elapsed().as_secs(),
                })
            })
            .collect()
    }

    /// A worker took the sequence counter of the outbound SA in `slot` (SPI `spi`) to the
    /// point where the SA asks to be replaced, or (`exhausted`) to its last number (RFC 4303
    /// 3.3.3: it must not cycle). Handled as lifetimes are: the first is reported as a soft
    /// expiry (once, as any soft limit), the second removes the SA with a hard expiry, since
    /// it can send nothing more. A report for a slot that holds another SA by now is ignored.
    pub fn seq_limit(&mut self, slot: usize, spi: u32, exhausted: bool) -> (Vec<SadEvent>, Updates) {
        let mut events = Vec::new();
        let Some(m) =
            self.slots.get_mut(slot).and_then(Option::as_mut).filter(|m| m.direction == Direction::Out && m.spi == spi)
        else {
            return (events, self.empty_updates());
        };
        let (name, direction) = (m.name.clone(), dir_name(m.direction));
        if exhausted {
            events.push(SadEvent::HardExpire { name: name.clone(), spi, direction });
            let updates = self.del_sa(&name).unwrap_or_else(|_| self.empty_updates());
            return (events, updates);
        }
        if !m.soft_reported {
            m.soft_reported = true;
            events.push(SadEvent::SoftExpire { name, spi, direction });
        }
        (events, self.empty_updates())
    }

    /// Checks lifetimes (RFC 4301 4.4.2.1): soft limits are reported once, hard limits remove
    /// the SA. `now` is passed in so that tests can move time.
    pub fn expire(&mut self, counters: &[Arc<WorkerCounters>], now: Instant) -> (Vec<SadEvent>, Updates) {
        let mut events = Vec::new();
        let mut updates = self.empty_updates();
        let mut hard = Vec::new();
        // The SAs whose time limit has come, then those with volume limits: only these can
        // have reached a limit since the last check.
        let mut timed = Vec::new();
        while let Some(&Reverse((at, slot, serial))) = self.deadlines.peek() {
            if at > now {
                break;
            }
            self.deadlines.pop();
            if self.slots[slot].as_ref().is_some_and(|m| m.serial == serial) {
                timed.push(slot);
            }
        }
        timed.sort_unstable();
        let volume: Vec<usize> = self.by_volume.iter().filter(|s| timed.binary_search(s).is_err()).copied().collect();
        let due = timed.iter().map(|&s| (s, true)).chain(volume.iter().map(|&s| (s, false)));
        for (slot, was_timed) in due {
            let Some(m) = &mut self.slots[slot] else { continue };
            let (p, b) = Self::sums(counters, slot);
            let (packets, bytes) = (p - m.base_packets, b - m.base_bytes);
            let age = now.saturating_duration_since(m.installed);
            let lt = m.lifetime;
            let over = |limit: Option<u64>, v: u64| limit.is_some_and(|l| v >= l);
            let over_t = |limit: Option<u64>| limit.is_some_and(|l| age >= Duration::from_secs(l));
            if over(lt.hard_bytes, bytes) || over(lt.hard_packets, packets) || over_t(lt.hard_secs) {
                hard.push(m.name.clone());
                events.push(SadEvent::HardExpire {
                    name: m.name.clone(),
                    spi: m.spi,
                    direction: dir_name(m.direction),
                });
                continue;
            }
            if !m.soft_reported
                && (over(lt.soft_bytes, bytes) || over(lt.soft_packets, packets) || over_t(lt.soft_secs))
            {
                m.soft_reported = true;
                events.push(SadEvent::SoftExpire {
                    name: m.name.clone(),
                    spi: m.spi,
                    direction: dir_name(m.direction),
                });
            }
            // Its entry was taken off the heap: the next time limit replaces it. That is
            // later than `now`, since a limit already reached was reported just above.
            if was_timed && let Some(at) = m.next_deadline() {
                self.deadlines.push(Reverse((at, slot, m.serial)));
            }
        }
        for name in hard {
            if let Ok(u) = self.del_sa(&name) {
                for (all, mine) in updates.iter_mut().zip(u) {
                    all.extend(mine);
                }
            }
        }
        (events, updates)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{RawSa, check_sa};

    /// Inbound SA `name` with SPI 0x1000 + `n`.
    fn conf(name: &str, n: u32, lifetime: &str) -> SaConf {
        let spi = 0x1000 + n;
        let json = format!(
            r#"{{"name":"{name}","spi":{spi},"direction":"in","algorithm":"aes128gcm16",
            "key":"000102030405060708090a0b0c0d0e0f","salt":"01020304","local":"192.0.2.1",
            "remote":"192.0.2.2"{lifetime}}}"#
        );
        let raw: RawSa = serde_json::from_str(&json).unwrap();
        check_sa(&raw, &|n| n.to_string()).unwrap()
    }

    fn names(events: &[SadEvent]) -> Vec<String> {
        events
            .iter()
            .map(|e| match e {
                SadEvent::SoftExpire { name, .. } => format!("soft {name}"),
                SadEvent::HardExpire { name, .. } => format!("hard {name}"),
                other => format!("{other:?}"),
            })
            .collect()
    }

    /// Time limits fire when they fall and not before, soft once and then hard; SAs without
    /// limits never enter the schedule, and SAs with only time limits are not among those
    /// whose counters each check reads.
    #[test]
    fn time_limits_come_due_in_order() {
        let counters = vec![Arc::new(WorkerCounters::new(0, 8))];
        let mut sad = Sad::new(8, 1);
        sad.add_sa(&conf("none", 1, ""), &counters).unwrap();
        sad.add_sa(&conf("short", 2, r#","soft_secs":10,"hard_secs":20"#), &counters).unwrap();
        sad.add_sa(&conf("long", 3, r#","hard_secs":15"#), &counters).unwrap();
        assert_eq!(sad.deadlines.len(), 2, "one entry per SA with a time limit");
        assert!(sad.by_volume.is_empty());
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert!(sad.expire(&counters, at(9)).0.is_empty());
        assert_eq!(names(&sad.expire(&counters, at(11)).0), ["soft short"]);
        assert!(sad.expire(&counters, at(12)).0.is_empty(), "soft is reported once");
        let (events, updates) = sad.expire(&counters, at(16));
        assert_eq!(names(&events), ["hard long"]);
        assert!(matches!(&updates[0][..], [Update::DelInbound { spi: 0x1003 }]), "{updates:?}");
        assert_eq!(names(&sad.expire(&counters, at(21)).0), ["hard short"]);
        assert!(sad.deadlines.is_empty());
        assert!(sad.expire(&counters, at(1_000_000)).0.is_empty(), "no limit: never");
        assert_eq!(sad.list(&counters).len(), 1);
    }

    /// A removed SA's deadline does not fire for the SA that takes its slot, and removed SAs'
    /// entries do not pile up.
    #[test]
    fn deadlines_of_removed_sas_are_skipped_and_swept() {
        let counters = vec![Arc::new(WorkerCounters::new(0, 4))];
        let mut sad = Sad::new(4, 1);
        sad.add_sa(&conf("old", 1, r#","hard_secs":5"#), &counters).unwrap();
        sad.del_sa("old").unwrap();
        let (slot, _) = sad.add_sa(&conf("new", 2, r#","hard_secs":50"#), &counters).unwrap();
        assert_eq!(slot, 0, "the slot is reused");
        let t0 = Instant::now();
        assert!(sad.expire(&counters, t0 + Duration::from_secs(10)).0.is_empty(), "old's deadline is stale");
        assert_eq!(names(&sad.expire(&counters, t0 + Duration::from_secs(51)).0), ["hard new"]);
        for i in 0..1000 {
            sad.add_sa(&conf(&format!("sa{i}"), 10 + i, r#","hard_secs":3600"#), &counters).unwrap();
            sad.del_sa(&format!("sa{i}")).unwrap();
        }
        assert!(sad.deadlines.len() <= 64 + 2, "swept: {} entries left", sad.deadlines.len());
    }

    /// Byte and packet limits are checked on every call, from the counters; an SA with both
    /// kinds of limit is checked once per call and keeps its time deadline.
    /// An inbound SA installed without selectors takes those of the policies naming it, and
    /// follows them as they are added, changed and removed; one with its own keeps them.
    #[test]
    fn inbound_selectors_follow_the_policies_naming_the_sa() {
        use crate::policy::PortRange;
        let counters = vec![Arc::new(WorkerCounters::new(0, 4)), Arc::new(WorkerCounters::new(1, 4))];
        let mut sad = Sad::new(4, 2);
        sad.add_sa(&conf("i", 1, ""), &counters).unwrap();
        let mut own = conf("own", 2, "");
        own.selectors = Some(vec![]);
        sad.add_sa(&own, &counters).unwrap();
        let policy = |name: &str, dst: &str, sa_in: &str| PolicyConf {
            name: name.into(),
            selector: Selector {
                src: "10.1.0.0/24".parse().unwrap(),
                dst: dst.parse().unwrap(),
                proto: None,
                sport: PortRange::ANY,
                dport: PortRange::ANY,
            },
            action: PolicyAction::Protect { sa_out: "o".into(), sa_in: Some(sa_in.into()) },
            priority: 100,
        };
        // What each worker is told about SPI 0x1001's selectors, by destination.
        let told = |updates: &Updates| -> Vec<Option<Vec<String>>> {
            assert!(updates.iter().all(|u| u.len() == updates[0].len()), "every worker alike");
            updates[0]
                .iter()
                .filter_map(|u| match u {
                    Update::SetInboundSelectors { spi, selectors } => {
                        Some((*spi == 0x1001).then(|| selectors.iter().map(|s| s.dst.to_string()).collect()))
                    }
                    _ => None,
                })
                .collect()
        };
        let u = sad.set_policy(policy("p", "10.2.0.0/24", "i"));
        assert_eq!(told(&u), [Some(vec!["10.2.0.0/24".to_string()])], "the SA came before its policy");
        let u = sad.set_policy(policy("q", "10.3.0.0/24", "i"));
        assert_eq!(told(&u), [Some(vec!["10.2.0.0/24".to_string(), "10.3.0.0/24".to_string()])]);
        let u = sad.set_policy(policy("p", "10.2.0.0/25", "i"));
        assert_eq!(told(&u), [Some(vec!["10.2.0.0/25".to_string(), "10.3.0.0/24".to_string()])], "narrowed");
        let u = sad.del_policy("q").unwrap();
        assert_eq!(told(&u), [Some(vec!["10.2.0.0/25".to_string()])]);
        // Moving policy p to the SA with its own selectors: i loses p's, own keeps its own.
        let u = sad.set_policy(policy("p", "10.2.0.0/25", "own"));
        assert_eq!(told(&u), [Some(vec![])]);
    }

    #[test]
    fn sequence_limits_of_outbound_sas_expire_them() {
        let counters = vec![Arc::new(WorkerCounters::new(0, 4))];
        let mut sad = Sad::new(4, 1);
        let json = r#"{"name":"o","spi":4660,"direction":"out","algorithm":"aes128gcm16",
            "key":"000102030405060708090a0b0c0d0e0f","salt":"01020304","local":"192.0.2.1",
            "remote":"192.0.2.2"}"#;
        let raw: RawSa = serde_json::from_str(json).unwrap();
        let (slot, _) = sad.add_sa(&check_sa(&raw, &|n| n.to_string()).unwrap(), &counters).unwrap();
        let (inbound, _) = sad.add_sa(&conf("i", 1, ""), &counters).unwrap();
        // Reports about another SPI, or an inbound SA, are about an SA that is gone.
        assert!(sad.seq_limit(slot, 4661, false).0.is_empty());
        assert!(sad.seq_limit(inbound, 0x1001, true).0.is_empty());
        assert_eq!(sad.list(&counters).len(), 2);
        let (events, updates) = sad.seq_limit(slot, 4660, false);
        assert_eq!(names(&events), ["soft o"]);
        assert!(updates.iter().all(Vec::is_empty));
        assert!(sad.seq_limit(slot, 4660, false).0.is_empty(), "a soft limit is reported once");
        let (events, updates) = sad.seq_limit(slot, 4660, true);
        assert_eq!(names(&events), ["hard o"]);
        assert!(matches!(updates[0][..], [Update::DelOutbound { slot: s }] if s == slot), "{updates:?}");
        assert_eq!(sad.list(&counters).len(), 1, "an SA out of numbers is removed");
    }

    #[test]
    fn volume_limits_read_the_counters() {
        let counters = vec![Arc::new(WorkerCounters::new(0, 4)), Arc::new(WorkerCounters::new(1, 4))];
        let mut sad = Sad::new(4, 2);
        let (slot, _) =
            sad.add_sa(&conf("both", 1, r#","soft_packets":10,"hard_packets":20,"hard_secs":30"#), &counters).unwrap();
        let (quiet, _) = sad.add_sa(&conf("bytes", 2, r#","hard_bytes":1000"#), &counters).unwrap();
        assert_eq!(sad.by_volume.len(), 2);
        let t0 = Instant::now();
        let add = |w: usize, p: u64| counters[w].sa.get(slot).unwrap().packets.add(p);
        add(0, 6);
        assert!(sad.expire(&counters, t0).0.is_empty());
        add(1, 4);
        assert_eq!(names(&sad.expire(&counters, t0).0), ["soft both"], "summed over the workers");
        assert!(sad.expire(&counters, t0 + Duration::from_secs(1)).0.is_empty());
        counters[1].sa.get(quiet).unwrap().bytes.add(1000);
        assert_eq!(names(&sad.expire(&counters, t0 + Duration::from_secs(2)).0), ["hard bytes"]);
        assert_eq!(sad.by_volume.len(), 1, "a removed SA leaves the volume set");
        assert_eq!(names(&sad.expire(&counters, t0 + Duration::from_secs(31)).0), ["hard both"], "by its time");
        assert!(sad.by_volume.is_empty());
    }

    /// Against a model that checks every SA on every call (what `expire` did before it kept a
    /// schedule): random SAs with no, time, volume or both kinds of limits, installed and
    /// removed at random, traffic counted, the clock moved; every call reports the same events
    /// and leaves the same SAs.
    #[test]
    fn the_schedule_reports_what_a_full_scan_would() {
        let counters = vec![Arc::new(WorkerCounters::new(0, 64)), Arc::new(WorkerCounters::new(1, 64))];
        let mut sad = Sad::new(64, 2);
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let t0 = Instant::now();
        let mut clock = 0u64;
        // Expiries seen: soft by time, hard by time, soft by volume, hard by volume.
        let mut seen = [0u32; 4];
        // The model: name -> (slot, soft reported).
        let mut model: std::collections::BTreeMap<String, (usize, bool)> = Default::default();
        for step in 0..4000u32 {
            match next(10) {
                0..=2 => {
                    let mut lt = String::new();
                    if next(2) == 0 {
                        let soft = 1 + next(30);
                        lt += &format!(r#","soft_secs":{soft},"hard_secs":{}"#, soft + 1 + next(30));
                    }
                    if next(2) == 0 {
                        let soft = 1 + next(500);
                        lt += &format!(r#","soft_packets":{soft},"hard_bytes":{}"#, 64 * (soft + 1 + next(500)));
                    }
                    let name = format!("sa{step}");
                    let now = t0 + Duration::from_secs(clock);
                    if let Ok((slot, _)) = sad.add_sa_at(&conf(&name, step, &lt), &counters, now) {
                        model.insert(name, (slot, false));
                    }
                }
                3 => {
                    if let Some(name) = model.keys().nth(next(model.len().max(1) as u64) as usize).cloned() {
                        sad.del_sa(&name).unwrap();
                        model.remove(&name);
                    }
                }
                4..=6 => {
                    for &(slot, _) in model.values() {
                        let c = counters[next(2) as usize].sa.get(slot).unwrap();
                        let p = next(40);
                        c.packets.add(p);
                        c.bytes.add(64 * p);
                    }
                }
                _ => {
                    clock += next(4);
                    let now = t0 + Duration::from_secs(clock);
                    // What a scan of every SA finds, from the SAs' own records.
                    let mut want = Vec::new();
                    for (name, (slot, soft)) in model.iter_mut() {
                        let m = sad.slots[*slot].as_ref().unwrap();
                        let (p, b) = Sad::sums(&counters, *slot);
                        let (packets, bytes) = (p - m.base_packets, b - m.base_bytes);
                        let age = now.saturating_duration_since(m.installed);
                        let lt = m.lifetime;
                        let over = |l: Option<u64>, v: u64| l.is_some_and(|l| v >= l);
                        let over_t = |l: Option<u64>| l.is_some_and(|l| age >= Duration::from_secs(l));
                        if over(lt.hard_bytes, bytes) || over(lt.hard_packets, packets) || over_t(lt.hard_secs) {
                            want.push(format!("hard {name}"));
                            seen[if over_t(lt.hard_secs) { 1 } else { 3 }] += 1;
                        } else if !*soft
                            && (over(lt.soft_bytes, bytes) || over(lt.soft_packets, packets) || over_t(lt.soft_secs))
                        {
                            *soft = true;
                            want.push(format!("soft {name}"));
                            seen[if over_t(lt.soft_secs) { 0 } else { 2 }] += 1;
                        }
                    }
                    let mut got = names(&sad.expire(&counters, now).0);
                    got.sort();
                    want.sort();
                    assert_eq!(got, want, "step {step}, {clock} s");
                    model.retain(|name, _| !want.contains(&format!("hard {name}")));
                    assert_eq!(sad.list(&counters).len(), model.len());
                }
            }
        }
        eprintln!("expiries: soft by time, hard by time, soft by volume, hard by volume: {seen:?}");
        assert!(seen.iter().all(|&n| n >= 50), "every kind of expiry, many times: {seen:?}");
    }

    /// A time limit beyond what `Instant` can hold means never, not a panic.
    #[test]
    fn a_limit_beyond_instants_range_is_never() {
        let counters = vec![Arc::new(WorkerCounters::new(0, 2))];
        let mut sad = Sad::new(2, 1);
        sad.add_sa(&conf("far", 1, &format!(r#","hard_secs":{}"#, u64::MAX)), &counters).unwrap();
        assert!(sad.deadlines.is_empty());
        assert!(sad.expire(&counters, Instant::now() + Duration::from_secs(1 << 40)).0.is_empty());
    }
}
