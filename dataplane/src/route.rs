//! Longest-prefix-match routing over a small table: connected subnets of the gateway's own
//! addresses and configured routes.

use crate::net::Prefix;
use std::net::IpAddr;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    pub prefix: Prefix,
    /// The next hop; `None` for a connected subnet (the destination itself is the next hop).
    pub via: Option<IpAddr>,
    pub port: usize,
}

#[derive(Clone, Debug, Default)]
pub struct RouteTable {
    /// Sorted longest prefix first, so the first match is the longest.
    routes: Vec<Route>,
}

impl RouteTable {
    pub fn new(mut routes: Vec<Route>) -> Self {
        routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len));
        RouteTable { routes }
    }

    /// Port and next-hop address for a destination.
    #[inline]
    pub fn lookup(&self, dst: IpAddr) -> Option<(usize, IpAddr)> {
        self.routes.iter().find(|r| r.prefix.contains(dst)).map(|r| (r.port, r.via.unwrap_or(dst)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_wins() {
        let t = RouteTable::new(vec![
            Route { prefix: "0.0.0.0/0".parse().unwrap(), via: Some("192.0.2.254".parse().unwrap()), port: 1 },
            Route { prefix: "10.1.0.0/24".parse().unwrap(), via: None, port: 0 },
            Route { prefix: "2001:db8::/64".parse().unwrap(), via: None, port: 1 },
        ]);
        assert_eq!(t.lookup("10.1.0.7".parse().unwrap()), Some((0, "10.1.0.7".parse().unwrap())));
        assert_eq!(t.lookup("8.8.8.8".parse().unwrap()), Some((1, "192.0.2.254".parse().unwrap())));
        assert_eq!(t.lookup("2001:db8::5".parse().unwrap()), Some((1, "2001:db8::5".parse().unwrap())));
        assert_eq!(t.lookup("2001:db9::5".parse().unwrap()), None);
    }
}
