//! The security policy database (RFC 4301 section 4.4.1): ordered entries whose selectors
//! match a packet's addresses, protocol and ports, with the action protect, bypass or discard.
//! Protect entries are used in both directions: outbound as written, inbound mirrored (the
//! decrypted packet travels from the policy's `dst` to its `src`).

use crate::net::Prefix;
use esp::wire::FlowKey;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange {
    pub lo: u16,
    pub hi: u16,
}

impl PortRange {
    pub const ANY: PortRange = PortRange { lo: 0, hi: u16::MAX };

    /// `None` or "any" for all ports, "80" for one, "1000-2000" for a range.
    pub fn parse(s: Option<&str>) -> Result<Self, String> {
        let Some(s) = s.map(str::trim) else { return Ok(PortRange::ANY) };
        if s == "any" {
            return Ok(PortRange::ANY);
        }
        let bad = || format!("{s:?} is not a port, a range like 1000-2000, or \"any\"");
        let (lo, hi) = match s.split_once('-') {
            Some((a, b)) => (a.trim().parse().map_err(|_| bad())?, b.trim().parse().map_err(|_| bad())?),
            None => {
                let p = s.parse().map_err(|_| bad())?;
                (p, p)
            }
        };
        if lo > hi {
            return Err(bad());
        }
        Ok(PortRange { lo, hi })
    }

    #[inline]
    pub fn contains(&self, p: u16) -> bool {
        self.lo <= p && p <= self.hi
    }
}

/// RFC 4301 4.4.1.1 selectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Selector {
    pub src: Prefix,
    pub dst: Prefix,
    /// `None` matches any protocol.
    pub proto: Option<u8>,
    pub sport: PortRange,
    pub dport: PortRange,
}

impl Selector {
    #[inline]
    pub fn matches(&self, k: &FlowKey) -> bool {
        self.src.contains(k.src)
            && self.dst.contains(k.dst)
            && self.proto.is_none_or(|p| p == k.proto)
            && self.sport.contains(k.sport)
            && self.dport.contains(k.dport)
    }

    /// Matches a packet going the other way (inbound through an SA of this policy).
    #[inline]
    pub fn matches_reverse(&self, k: &FlowKey) -> bool {
        self.src.contains(k.dst)
            && self.dst.contains(k.src)
            && self.proto.is_none_or(|p| p == k.proto)
            && self.sport.contains(k.dport)
            && self.dport.contains(k.sport)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send through the outbound SA in slot `sa_out`; `None` while the policy has no SA yet
    /// (the control plane is told, so that it negotiates one: an "acquire").
    Protect {
        sa_out: Option<usize>,
    },
    Bypass,
    Discard,
}

#[derive(Clone, Debug)]
pub struct Policy {
    pub selector: Selector,
    pub action: Action,
    pub priority: u32,
    /// The control thread's number for the policy, reported back with acquires.
    pub id: u32,
}

/// Policies ordered by priority (lower first), then by configuration order.
#[derive(Clone, Debug, Default)]
pub struct Spd {
    entries: Vec<Policy>,
}

impl Spd {
    pub fn new(mut entries: Vec<Policy>) -> Self {
        // A stable sort keeps configuration order among equal priorities.
        entries.sort_by_key(|p| p.priority);
        Spd { entries }
    }

    /// The first policy that matches an outbound packet (from a protected network).
    #[inline]
    pub fn lookup_outbound(&self, k: &FlowKey) -> Option<&Policy> {
        self.entries.iter().find(|p| p.selector.matches(k))
    }

    /// The first policy that matches a packet arriving in the clear from the unprotected side
    /// (RFC 4301 5.2: traffic matching a protect policy must arrive through its SA).
    #[inline]
    pub fn lookup_inbound_clear(&self, k: &FlowKey) -> Option<&Policy> {
        self.entries.iter().find(|p| p.selector.matches_reverse(k))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(src: &str, dst: &str, proto: u8, sport: u16, dport: u16) -> FlowKey {
        FlowKey { src: src.parse().unwrap(), dst: dst.parse().unwrap(), proto, sport, dport }
    }

    fn sel(src: &str, dst: &str, proto: Option<u8>, dport: &str) -> Selector {
        Selector {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            proto,
            sport: PortRange::ANY,
            dport: PortRange::parse(Some(dport)).unwrap(),
        }
    }

    #[test]
    fn first_match_by_priority_and_mirrored_inbound() {
        let protect = sel("10.1.0.0/24", "10.2.0.0/24", None, "any");
        let spd = Spd::new(vec![
            Policy { selector: protect, action: Action::Protect { sa_out: Some(0) }, priority: 100, id: 0 },
            Policy {
                selector: sel("10.1.0.0/24", "10.2.0.0/24", Some(6), "22"),
                action: Action::Discard,
                priority: 10,
                id: 1,
            },
        ]);
        let ssh = key("10.1.0.5", "10.2.0.9", 6, 40000, 22);
        assert_eq!(spd.lookup_outbound(&ssh).unwrap().action, Action::Discard);
        let web = key("10.1.0.5", "10.2.0.9", 6, 40000, 80);
        assert!(matches!(spd.lookup_outbound(&web).unwrap().action, Action::Protect { .. }));
        assert!(spd.lookup_outbound(&key("10.3.0.1", "10.2.0.9", 6, 1, 2)).is_none());
        let back = key("10.2.0.9", "10.1.0.5", 6, 80, 40000);
        assert!(protect.matches_reverse(&back));
        assert!(!protect.matches_reverse(&key("10.9.0.9", "10.1.0.5", 6, 80, 40000)), "outside the selectors");
        assert!(matches!(spd.lookup_inbound_clear(&back).unwrap().action, Action::Protect { .. }));
    }

    #[test]
    fn port_ranges() {
        assert_eq!(PortRange::parse(None).unwrap(), PortRange::ANY);
        assert_eq!(PortRange::parse(Some("1000-2000")).unwrap(), PortRange { lo: 1000, hi: 2000 });
        assert!(PortRange::parse(Some("2000-1000")).is_err());
        assert!(PortRange::parse(Some("http")).is_err());
    }
}
