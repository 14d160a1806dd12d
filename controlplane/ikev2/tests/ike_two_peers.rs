//! Two `ikev2` endpoints against each other on a simulated network and clock: IKE_SA_INIT and
//! IKE_AUTH with a PSK bring up the first Child SA on both; the Child SA's SPIs and keys pair
//! up; retransmission covers a lost message; a DH group the responder does not want is
//! renegotiated (INVALID_KE_PAYLOAD); a wrong PSK fails on both sides; a Delete takes the
//! SAs down on both sides; liveness checks keep a live peer and notice a dead one.

use ikev2::crypto::{Secret, TestProvider};
use ikev2::ike::{ChildConfig, Connection, Endpoint, Event, LocalAuth, OUTBOUND_HOLD, RemoteAuth, Transmit};
use ikev2::pki::{Cert, Dn, PrivateKey, TrustStore};
use ikev2::proposal::{Algorithms, Kind};
use ikev2::wire::{IdType, Identification, TrafficSelector};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn conn(me: &str, peer: &str, psk: &str, ike: &[&str], local_net: u8, remote_net: u8) -> Connection {
    Connection {
        name: format!("{me}-{peer}"),
        local_id: Identification::fqdn(&format!("{me}.example.test")),
        remote_id: Some(Identification::fqdn(&format!("{peer}.example.test"))),
        local_auth: LocalAuth::Psk(Secret::from_slice(psk.as_bytes())),
        remote_auth: RemoteAuth::Psk(Secret::from_slice(psk.as_bytes())),
        ike: ike.iter().map(|p| Algorithms::parse(Kind::Ike, p).unwrap()).collect(),
        esp: vec![
            Algorithms::parse(Kind::Esp, "aes256gcm16").unwrap(),
            Algorithms::parse(Kind::Esp, "aes128gcm16").unwrap(),
        ],
        children: vec![ChildConfig {
            name: "net".into(),
            local_ts: vec![TrafficSelector::ipv4([10, local_net, 0, 0].into(), [10, local_net, 0, 255].into())],
            remote_ts: vec![TrafficSelector::ipv4([10, remote_net, 0, 0].into(), [10, remote_net, 0, 255].into())],
        }],
        dpd_delay: None,
        child_rekey: None,
        ike_rekey: None,
        rekey_jitter: Some(Duration::ZERO),
        retransmit_base: Connection::RETRANSMIT_BASE,
        retransmit_tries: Connection::RETRANSMIT_TRIES,
        remote_addr: None,
    }
}

/// 2026-12-01T00:00:00Z.
const CERT_TIME: i64 = 1_796_083_200;

const A: &str = "192.0.2.1:500";
const B: &str = "192.0.2.2:500";

struct Net {
    a: Endpoint,
    b: Endpoint,
    now: Instant,
    a_events: Vec<Event>,
    b_events: Vec<Event>,
    /// Datagrams delivered so far, counting both ways.
    delivered: usize,
    /// A NAT in front of A: A's datagrams reach B from this address (same port), and B's to
    /// it reach A.
    nat: Option<std::net::IpAddr>,
}

impl Net {
    fn new(a: Connection, b: Connection) -> Self {
        Self::seeded(a, b, b"peer a", b"peer b")
    }

    /// With the random numbers (SPIs, nonces, keys) of these seeds.
    fn seeded(a: Connection, b: Connection, seed_a: &[u8], seed_b: &[u8]) -> Self {
        let now = Instant::now();
        let mut a = Endpoint::new(vec![a], Box::new(TestProvider::new(seed_a)));
        let mut b = Endpoint::new(vec![b], Box::new(TestProvider::new(seed_b)));
        // Inside the validity of the test certificates (tests/vectors/pki).
        a.set_wall_clock(now, CERT_TIME);
        b.set_wall_clock(now, CERT_TIME);
        Net { a, b, now, a_events: vec![], b_events: vec![], delivered: 0, nat: None }
    }

    /// Moves datagrams until nothing is in flight; `drop(n)` decides whether the n-th
    /// datagram is lost. Then advances the clock to the next timer, up to `secs` seconds.
    fn run(&mut self, secs: u64, lose: &dyn Fn(usize) -> bool) {
        self.run_until(self.now + Duration::from_secs(secs), lose);
    }

    fn run_until(&mut self, end: Instant, lose: &dyn Fn(usize) -> bool) {
        loop {
            let mut moved = false;
            while let Some(Transmit { local, remote, data }) = self.a.poll_transmit() {
                self.delivered += 1;
                if !lose(self.delivered) {
                    let from = self.nat.map_or(local, |ip| SocketAddr::new(ip, local.port()));
                    self.b.handle_datagram(self.now, remote, from, &data);
                }
                moved = true;
            }
            while let Some(Transmit { local, remote, data }) = self.b.poll_transmit() {
                self.delivered += 1;
                if !lose(self.delivered) {
                    let to = match self.nat {
                        Some(ip) if remote.ip() == ip => {
                            SocketAddr::new(A.parse::<SocketAddr>().unwrap().ip(), remote.port())
                        }
                        _ => remote,
                    };
                    self.a.handle_datagram(self.now, to, local, &data);
                }
                moved = true;
            }
            self.a_events.extend(std::iter::from_fn(|| self.a.poll_event()));
            self.b_events.extend(std::iter::from_fn(|| self.b.poll_event()));
            if moved {
                continue;
            }
            let next = [self.a.poll_timeout(), self.b.poll_timeout()].into_iter().flatten().min();
            match next {
                Some(t) if t <= end => {
                    self.now = t.max(self.now);
                    self.a.handle_timeout(self.now);
                    self.b.handle_timeout(self.now);
                }
                _ => break,
            }
        }
    }
}

fn child(events: &[Event]) -> &ikev2::ike::ChildSa {
    events
        .iter()
        .find_map(|e| if let Event::ChildUp(c) = e { Some(c) } else { None })
        .unwrap_or_else(|| panic!("no child SA: {events:?}"))
}

fn up(ike_a: &[&str], ike_b: &[&str], lose: &dyn Fn(usize) -> bool) -> Net {
    up_dpd(ike_a, ike_b, lose, None)
}

fn up_dpd(ike_a: &[&str], ike_b: &[&str], lose: &dyn Fn(usize) -> bool, dpd: Option<Duration>) -> Net {
    let mut a = conn("a", "b", "a-long-test-psk-0123456789", ike_a, 1, 2);
    let mut b = conn("b", "a", "a-long-test-psk-0123456789", ike_b, 2, 1);
    (a.dpd_delay, b.dpd_delay) = (dpd, dpd);
    let mut net = Net::new(a, b);
    net.a.initiate(net.now, "a-b", A.parse().unwrap(), B.parse().unwrap()).unwrap();
    net.run(60, lose);
    net
}

fn check_pair(net: &Net) {
    let (ca, cb) = (child(&net.a_events), child(&net.b_events));
    assert_eq!(ca.spi_out, cb.spi_in);
    assert_eq!(ca.spi_in, cb.spi_out);
    assert_eq!(ca.key_out.expose(), cb.key_in.expose());
    assert_eq!(ca.key_in.expose(), cb.key_out.expose());
    assert_ne!(ca.key_in.expose(), ca.key_out.expose(), "each direction has its own key");
    assert_eq!(ca.key_bits, 256, "the first ESP proposal both share");
    assert_eq!(ca.key_out.len(), 32 + 4, "AES-256 key and salt");
    assert_eq!(ca.local_ts, cb.remote_ts);
    assert_eq!(ca.remote_ts, cb.local_ts);
    assert!(net.a_events.iter().any(|e| matches!(e, Event::IkeUp { .. })));
    assert!(net.b_events.iter().any(|e| matches!(e, Event::IkeUp { .. })));
}

#[test]
fn psk_tunnel_comes_up_both_sides_agree() {
    for ike in [
        "aes256gcm16-prfsha256-x25519",
        "aes128gcm16-prfsha384-ecp256",
        "aes256-sha256-ecp384",
        "aes128-sha256-modp2048",
    ] {
        let net = up(&[ike], &[ike], &|_| false);
        check_pair(&net);
        assert_eq!(net.delivered, 4, "{ike}: two exchanges, nothing retransmitted");
    }
}

#[test]
fn lost_messages_are_retransmitted() {
    // Lose the first IKE_SA_INIT request, then the first IKE_AUTH response.
    let net = up(&["aes256gcm16-prfsha256-x25519"], &["aes256gcm16-prfsha256-x25519"], &|n| n == 1 || n == 5);
    check_pair(&net);
    assert_eq!(net.delivered, 7);
}

#[test]
fn responder_asks_for_another_dh_group() {
    // A offers x25519 first (and sends its KE), B only takes ecp256: INVALID_KE_PAYLOAD, retry.
    let net = up(&["aes256gcm16-prfsha256-x25519-ecp256"], &["aes256gcm16-prfsha256-ecp256"], &|_| false);
    check_pair(&net);
    assert_eq!(net.delivered, 6);
}

#[test]
fn wrong_psk_fails_on_both_sides() {
    let mut net = Net::new(
        conn("a", "b", "a-long-test-psk-0123456789", &["aes256gcm16-prfsha256-x25519"], 1, 2),
        conn("b", "a", "another-psk-entirely-9876543", &["aes256gcm16-prfsha256-x25519"], 2, 1),
    );
    net.a.initiate(net.now, "a-b", A.parse().unwrap(), B.parse().unwrap()).unwrap();
    net.run(60, &|_| false);
    assert!(net.b_events.iter().any(|e| matches!(e, Event::Failed { .. })), "{:?}", net.b_events);
    assert!(
        net.a_events
            .iter()
            .any(|e| matches!(e, Event::Failed { reason, .. } if reason.contains("AUTHENTICATION_FAILED"))),
        "{:?}",
        net.a_events
    );
    assert!(!net.a_events.iter().any(|e| matches!(e, Event::ChildUp(_))));
}

#[test]
fn unanswered_initiator_gives_up() {
    let mut net = up(&["aes256gcm16-prfsha256-x25519"], &["aes256gcm16-prfsha256-x25519"], &|_| true);
    net.run(120, &|_| true);
    assert!(
        net.a_events.iter().any(|e| matches!(e, Event::Failed { reason, .. } if reason.contains("retransmissions")))
    );
    assert_eq!(net.delivered, 5, "five tries in all");
}

fn downs(events: &[Event]) -> (usize, usize) {
    (
        events.iter().filter(|e| matches!(e, Event::ChildDown { .. })).count(),
        events.iter().filter(|e| matches!(e, Event::IkeDown { .. })).count(),
    )
}

#[test]
fn delete_takes_both_sides_down() {
    let mut net = up(&["aes256gcm16-prfsha256-x25519"], &["aes256gcm16-prfsha256-x25519"], &|_| false);
    check_pair(&net);
    let (_, spi, established) = net.a.ike_sas()[0].clone();
    assert!(established);
    net.a.delete(net.now, spi).unwrap();
    net.run(10, &|_| false);
    assert_eq!(downs(&net.a_events), (1, 1), "{:?}", net.a_events);
    assert_eq!(downs(&net.b_events), (1, 1), "{:?}", net.b_events);
    assert!(net.a.ike_sas().is_empty() && net.b.ike_sas().is_empty());
    assert!(!net.a_events.iter().chain(&net.b_events).any(|e| matches!(e, Event::Failed { .. })));
}

#[test]
fn a_child_sa_past_its_hard_lifetime_is_deleted_with_the_peer() {
    let mut net = up(&["aes256gcm16-prfsha256-x25519"], &["aes256gcm16-prfsha256-x25519"], &|_| false);
    let c = child(&net.a_events).clone();
    // The dataplane reports the hard lifetime of the outbound SA (the peer's SPI).
    assert!(net.a.delete_child("a-b", "net", c.spi_out, false));
    assert!(!net.a.delete_child("a-b", "net", 0x1234, false));
    // Our inbound SPI is not an outbound one.
    assert!(!net.a.delete_child("a-b", "net", c.spi_in, false));
    // Another connection's or child's SA of the same SPI is not this one.
    assert!(!net.a.delete_child("a-c", "net", c.spi_out, false) && !net.a.delete_child("a-b", "web", c.spi_out, false));
    net.run(5, &|_| false);
    assert_eq!(downs(&net.a_events), (1, 0), "{:?}", net.a_events);
    assert_eq!(downs(&net.b_events), (1, 0), "{:?}", net.b_events);
    assert!(net.a.list(net.now)[0].established, "the IKE SA stays");
}

#[test]
fn liveness_keeps_a_live_peer_and_buries_a_dead_one() {
    let x = ["aes256gcm16-prfsha256-x25519"];
    let mut net = up_dpd(&x, &x, &|_| false, Some(Duration::from_secs(30)));
    let before = net.delivered;
    // Two minutes of silence: each side checks on the other every 30 s, and gets answers.
    let end = net.now + Duration::from_secs(120);
    net.run_until(end, &|_| false);
    assert!(net.delivered >= before + 4, "liveness checks were sent and answered");
    assert!(!net.a_events.iter().any(|e| matches!(e, Event::Failed { .. })));
    // Now b is gone: a's next check goes unanswered, and a removes the SAs.
    let end = net.now + Duration::from_secs(120);
    net.run_until(end, &|_| true);
    assert!(
        net.a_events.iter().any(|e| matches!(e, Event::Failed { reason, .. } if reason.contains("dead"))),
        "{:?}",
        net.a_events
    );
    assert_eq!(downs(&net.a_events).0, 1, "the child SA is reported down");
}

fn child_ups(events: &[Event]) -> Vec<&ikev2::ike::ChildSa> {
    events.iter().filter_map(|e| if let Event::ChildUp(c) = e { Some(c) } else { None }).collect()
}

#[test]
fn child_sas_are_rekeyed_make_before_break_with_and_without_pfs() {
    for esp in ["aes256gcm16", "aes256gcm16-x25519"] {
        let mut a = conn("a", "b", "a-long-test-psk-0123456789", &["aes256gcm16-prfsha256-x25519"], 1, 2);
        let mut b = conn("b", "a", "a-long-test-psk-0123456789", &["aes256gcm16-prfsha256-x25519"], 2, 1);
        a.esp = vec![Algorithms::parse(Kind::Esp, esp).unwrap()];
        b.esp = a.esp.clone();
        a.child_rekey = Some(Duration::from_secs(10));
        let mut net = Net::new(a, b);
        net.a.initiate(net.now, "a-b", A.parse().unwrap(), B.parse().unwrap()).unwrap();
        let end = net.now + Duration::from_secs(35);
        net.run_until(end, &|_| false);
        let (ua, ub) = (child_ups(&net.a_events), child_ups(&net.b_events));
        assert_eq!((ua.len(), ub.len()), (4, 4), "{esp}: the first pair and three rekeys");
        assert_eq!(downs(&net.a_events).0, 3, "{esp}: each old pair deleted after its successor is up");
        assert_eq!(downs(&net.b_events).0, 3);
        for (x, y) in ua.iter().zip(&ub) {
            assert_eq!((x.spi_out, x.spi_in), (y.spi_in, y.spi_out));
            assert_eq!(x.key_out.expose(), y.key_in.expose(), "{esp}");
            assert_eq!(x.key_in.expose(), y.key_out.expose(), "{esp}");
        }
        let spis: std::collections::HashSet<u32> = ua.iter().map(|c| c.spi_in).collect();
        assert_eq!(spis.len(), 4, "every rekey has new SPIs");
        let keys: std::collections::HashSet<Vec<u8>> = ua.iter().map(|c| c.key_out.expose().to_vec()).collect();
        assert_eq!(keys.len(), 4, "and new keys");
        // Make-before-break: each ChildDown comes after the ChildUp of its successor.
        let order: Vec<char> = net
            .a_events
            .iter()
            .filter_map(|e| match e {
                Event::ChildUp(_) => Some('u'),
                Event::ChildDown { .. } => Some('d'),
                _ => None,
            })
            .collect();
        assert_eq!(order.iter().collect::<String>(), "uudududu".chars().take(order.len()).collect::<String>());
        // B answered the rekeys: each new pair takes B's outbound traffic only when A
        // deletes the old one (A installs its inbound half when B's answer arrives), and
        // before that pair is reported down.
        assert!(ua.iter().all(|c| !c.outbound_later) && ub[1..].iter().all(|c| c.outbound_later), "{esp}");
        let b_order: String = net
            .b_events
            .iter()
            .filter_map(|e| match e {
                Event::ChildUp(_) => Some('u'),
                Event::ChildOutbound { .. } => Some('o'),
                Event::ChildDown { .. } => Some('d'),
                _ => None,
            })
            .collect();
        assert_eq!(b_order, "uuoduoduod", "{esp}");
        assert_eq!(outbound_sa(&net.b_events), live_children(&net.b_events).first().map(|c| c.0));
    }
}

#[test]
fn responder_under_load_demands_a_cookie() {
    let x = ["aes256gcm16-prfsha256-x25519"];
    let mut net = Net::new(
        conn("a", "b", "a-long-test-psk-0123456789", &x, 1, 2),
        conn("b", "a", "a-long-test-psk-0123456789", &x, 2, 1),
    );
    // Every request counts as "under load": no state without a returned cookie (RFC 7296 2.6).
    net.b.set_cookie_threshold(0);
    net.a.initiate(net.now, "a-b", A.parse().unwrap(), B.parse().unwrap()).unwrap();
    net.run(60, &|_| false);
    check_pair(&net);
    assert_eq!(net.delivered, 6, "COOKIE round trip, then the two exchanges");
    assert_eq!(net.b.ike_sas().len(), 1, "state only for the initiator that returned the cookie");
}

#[test]
fn cookies_are_accepted_only_while_their_secret_is_recent() {
    // The responder's cookie secret changes every COOKIE_SECRET_LIFETIME; a cookie made with
    // the one before is still good, one made with an older one is not (RFC 7296 2.6).
    let lifetime = Endpoint::COOKIE_SECRET_LIFETIME;
    for (delay, accepted) in [(lifetime + Duration::from_secs(1), true), (2 * lifetime + Duration::from_secs(1), false)]
    {
        let x = ["aes256gcm16-prfsha256-x25519"];
        let mut net = Net::new(
            conn("a", "b", "a-long-test-psk-0123456789", &x, 1, 2),
            conn("b", "a", "a-long-test-psk-0123456789", &x, 2, 1),
        );
        net.b.set_cookie_threshold(0);
        net.a.initiate(net.now, "a-b", A.parse().unwrap(), B.parse().unwrap()).unwrap();
        let first = net.a.poll_transmit().unwrap();
        net.b.handle_datagram(net.now, first.remote, first.local, &first.data);
        let cookie = net.b.poll_transmit().unwrap();
        net.a.handle_datagram(net.now, cookie.remote, cookie.local, &cookie.data);
        let with_cookie = net.a.poll_transmit().unwrap();
        net.b.handle_datagram(net.now + delay, with_cookie.remote, with_cookie.local, &with_cookie.data);
        assert_eq!(net.b.ike_sas().len(), usize::from(accepted), "after {delay:?}");
        let answer = ikev2::wire::Message::parse(&net.b.poll_transmit().unwrap().data).unwrap();
        // Another COOKIE instead of the IKE_SA_INIT answer.
        let asks_again = matches!(answer.payloads.as_slice(),
            [ikev2::wire::Payload::Notify(n)] if n.notify_type == ikev2::wire::NotifyType::COOKIE);
        assert_eq!(asks_again, !accepted, "after {delay:?}");
    }
}

#[test]
fn ike_sa_rekeys_carry_the_child_sas_along() {
    let x = ["aes256gcm16-prfsha256-x25519", "aes128gcm16-prfsha384-ecp256"];
    let mut a = conn("a", "b", "a-long-test-psk-0123456789", &x, 1, 2);
    let mut b = conn("b", "a", "a-long-test-psk-0123456789", &x, 2, 1);
    // A rekeys its IKE SA every 15 s and B rekeys the Child SA every 10 s: both kinds cross.
    a.ike_rekey = Some(Duration::from_secs(15));
    b.child_rekey = Some(Duration::from_secs(10));
    let mut net = Net::new(a, b);
    net.a.initiate(net.now, "a-b", A.parse().unwrap(), B.parse().unwrap()).unwrap();
    let end = net.now + Duration::from_secs(62);
    net.run_until(end, &|_| false);
    let rekeyed = |ev: &[Event]| ev.iter().filter(|e| matches!(e, Event::IkeRekeyed { .. })).count();
    assert!(rekeyed(&net.a_events) >= 3, "{:?}", net.a_events);
    assert_eq!(rekeyed(&net.a_events), rekeyed(&net.b_events));
    assert_eq!(net.a.ike_sas().len(), 1, "old IKE SAs deleted: {:?}", net.a.ike_sas());
    assert_eq!(net.b.ike_sas().len(), 1);
    assert!(!net.a_events.iter().chain(&net.b_events).any(|e| matches!(e, Event::Failed { .. })));
    let (ua, ub) = (child_ups(&net.a_events), child_ups(&net.b_events));
    assert!(ua.len() >= 6, "child rekeys went on across IKE rekeys: {}", ua.len());
    assert_eq!(ua.len(), ub.len());
    for (x, y) in ua.iter().zip(&ub) {
        assert_eq!(x.key_out.expose(), y.key_in.expose());
        assert_eq!(x.key_in.expose(), y.key_out.expose());
    }
    // Exactly one Child SA pair is left up: every old one was deleted, none lost with an IKE SA.
    assert_eq!(ua.len() - downs(&net.a_events).0, 1);
    assert_eq!(ub.len() - downs(&net.b_events).0, 1);
}

/// The Child SAs an end holds, from its events: (our inbound SPI, outbound SPI, keys in, out).
/// The Child SA (inbound SPI) the daemon points the policy at after `events`: the last
/// reported up to take the traffic at once, or told to take it later.
fn outbound_sa(events: &[Event]) -> Option<u32> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::ChildUp(c) if !c.outbound_later => Some(c.spi_in),
            Event::ChildOutbound { spi_in, .. } => Some(*spi_in),
            _ => None,
        })
        .next_back()
}

fn live_children(events: &[Event]) -> Vec<(u32, u32, Vec<u8>, Vec<u8>)> {
    let mut live = Vec::new();
    for e in events {
        match e {
            Event::ChildUp(c) => {
                live.push((c.spi_in, c.spi_out, c.key_in.expose().to_vec(), c.key_out.expose().to_vec()))
            }
            Event::ChildDown { spi_in, .. } => live.retain(|c| c.0 != *spi_in),
            _ => {}
        }
    }
    live
}

/// The two ends hold the same single Child SA pair, with matching keys.
fn one_matching_child(net: &Net) {
    let (a, b) = (live_children(&net.a_events), live_children(&net.b_events));
    assert_eq!((a.len(), b.len()), (1, 1), "a: {a:?}\nb: {b:?}");
    assert_eq!((a[0].0, a[0].1), (b[0].1, b[0].0));
    assert_eq!((&a[0].2, &a[0].3), (&b[0].3, &b[0].2));
    let listed = |ep: &Endpoint| ep.list(net.now).iter().map(|s| s.children.len()).sum::<usize>();
    assert_eq!((listed(&net.a), listed(&net.b)), (1, 1));
}

#[test]
fn simultaneous_child_rekeys_keep_one_pair() {
    // Both ends rekey the same Child SA at the same instant, every 10 s (RFC 7296 2.8.1).
    let x = ["aes256gcm16-prfsha256-x25519"];
    for (seed_a, seed_b) in [(&b"peer a"[..], &b"peer b"[..]), (b"peer b", b"peer a"), (b"x", b"y")] {
        let mut a = conn("a", "b", "a-long-test-psk-0123456789", &x, 1, 2);
        let mut b = conn("b", "a", "a-long-test-psk-0123456789", &x, 2, 1);
        a.child_rekey = Some(Duration::from_secs(10));
        b.child_rekey = Some(Duration::from_secs(10));
        let mut net = Net::seeded(a, b, seed_a, seed_b);
        net.a.initiate(net.now, "a-b", A.parse().unwrap(), B.parse().unwrap()).unwrap();
        let end = net.now + Duration::from_secs(35);
        net.run_until(end, &|_| false);
        assert!(!net.a_events.iter().chain(&net.b_events).any(|e| matches!(e, Event::Failed { .. })));
        // Three rounds, each making two pairs (one per end's rekey), one of them redundant:
        // reported up by the end that answered its exchange, not by the one that made it and
        // deletes it.
        let (ua, ub) = (child_ups(&net.a_events), child_ups(&net.b_events));
        assert_eq!(ua.len() + ub.len(), 2 + 3 * 3, "every rekey collided");
        one_matching_child(&net);
        // Outbound traffic must end on the pair left, or it would have no SA once the
        // redundant one is deleted.
        for (events, side) in [(&net.a_events, "a"), (&net.b_events, "b")] {
            let last = outbound_sa(events);
            assert_eq!(last, live_children(events).first().map(|c| c.0), "{side}: the policy's SA is gone");
        }
    }
}

#[test]
fn simultaneous_ike_rekeys_keep_one_ike_sa_with_the_child_sas() {
    let x = ["aes256gcm16-prfsha256-x25519"];
    for (seed_a, seed_b) in [(&b"peer a"[..], &b"peer b"[..]), (b"peer b", b"peer a"), (b"x", b"y")] {
        let mut a = conn("a", "b", "a-long-test-psk-0123456789", &x, 1, 2);
        let mut b = conn("b", "a", "a-long-test-psk-0123456789", &x, 2, 1);
        a.ike_rekey = Some(Duration::from_secs(15));
        b.ike_rekey = Some(Duration::from_secs(15));
        let mut net = Net::seeded(a, b, seed_a, seed_b);
        net.a.initiate(net.now, "a-b", A.parse().unwrap(), B.parse().unwrap()).unwrap();
        let end = net.now + Duration::from_secs(50);
        net.run_until(end, &|_| false);
        assert!(!net.a_events.iter().chain(&net.b_events).any(|e| matches!(e, Event::Failed { .. })));
        let rekeyed = |ev: &[Event]| ev.iter().filter(|e| matches!(e, Event::IkeRekeyed { .. })).count();
        assert_eq!((rekeyed(&net.a_events), rekeyed(&net.b_events)), (6, 6), "three rounds, two rekeys each");
        let (la, lb) = (net.a.list(net.now), net.b.list(net.now));
        assert_eq!((la.len(), lb.len()), (1, 1), "one IKE SA left: {la:?} {lb:?}");
        assert_eq!((la[0].local_spi, la[0].remote_spi), (lb[0].remote_spi, lb[0].local_spi));
        one_matching_child(&net);
        // The IKE SA left works: a Child SA rekey through it succeeds.
        assert!(net.a.rekey_soon("a-b", "net", la[0].children[0].spi_in, true));
        let end = net.now + Duration::from_secs(3);
        net.run_until(end, &|_| false);
        assert_eq!(child_ups(&net.a_events).len(), 2);
        one_matching_child(&net);
    }
}

/// Two Child SAs: 10.{l}.0.0/24 to the lower and to the upper half of 10.{r}.0.0/24.
fn two_children(c: &mut Connection, l: u8, r: u8) {
    let half = |hi: bool| {
        let lo = if hi { 128 } else { 0 };
        vec![TrafficSelector::ipv4([10, r, 0, lo].into(), [10, r, 0, lo + 127].into())]
    };
    let local = vec![TrafficSelector::ipv4([10, l, 0, 0].into(), [10, l, 0, 255].into())];
    c.children = vec![
        ChildConfig { name: "low".into(), local_ts: local.clone(), remote_ts: half(false) },
        ChildConfig { name: "high".into(), local_ts: local, remote_ts: half(true) },
    ];
}

/// For the responder: the same halves seen from its side.
fn two_children_mirrored(c: &mut Connection, l: u8, r: u8) {
    let half = |hi: bool| {
        let lo = if hi { 128 } else { 0 };
        vec![TrafficSelector::ipv4([10, l, 0, lo].into(), [10, l, 0, lo + 127].into())]
    };
    let remote = vec![TrafficSelector::ipv4([10, r, 0, 0].into(), [10, r, 0, 255].into())];
    c.children = vec![
        ChildConfig { name: "low".into(), local_ts: half(false), remote_ts: remote.clone() },
        ChildConfig { name: "high".into(), local_ts: half(true), remote_ts: remote },
    ];
}

#[test]
fn additional_child_sas_with_create_child_sa() {
    let x = ["aes256gcm16-prfsha256-x25519"];
    let mut a = conn("a", "b", "a-long-test-psk-0123456789", &x, 1, 2);
    let mut b = conn("b", "a", "a-long-test-psk-0123456789", &x, 2, 1);
    two_children(&mut a, 1, 2);
    two_children_mirrored(&mut b, 2, 1);
    a.child_rekey = Some(Duration::from_secs(10));
    let mut net = Net::new(a, b);
    net.a.initiate(net.now, "a-b", A.parse().unwrap(), B.parse().unwrap()).unwrap();
    net.run(5, &|_| false);
    // IKE_AUTH brought "low", CREATE_CHILD_SA "high"; each end names them the same.
    let names = |ev: &[Event]| child_ups(ev).iter().map(|c| c.child.clone()).collect::<Vec<_>>();
    assert_eq!(names(&net.a_events), ["low", "high"]);
    assert_eq!(names(&net.b_events), ["low", "high"]);
    let (ua, ub) = (child_ups(&net.a_events), child_ups(&net.b_events));
    for (x, y) in ua.iter().zip(&ub) {
        assert_eq!((x.spi_in, x.spi_out), (y.spi_out, y.spi_in));
        assert_eq!(x.key_in.expose(), y.key_out.expose());
        assert_eq!(x.local_ts, y.remote_ts);
    }
    assert_eq!(ua[1].remote_ts, vec![TrafficSelector::ipv4([10, 2, 0, 128].into(), [10, 2, 0, 255].into())]);
    // Both are rekeyed, each into its own kind.
    let end = net.now + Duration::from_secs(12);
    net.run_until(end, &|_| false);
    assert_eq!(names(&net.a_events), ["low", "high", "low", "high"]);
    assert_eq!(names(&net.b_events), ["low", "high", "low", "high"]);
    assert_eq!(downs(&net.a_events).0, 2);
    assert_eq!(net.a.list(net.now)[0].children.len(), 2);
    assert!(!net.a_events.iter().chain(&net.b_events).any(|e| matches!(e, Event::Failed { .. })));
}

#[test]
fn a_child_sa_the_responder_has_no_room_for_is_refused_alone() {
    let x = ["aes256gcm16-prfsha256-x25519"];
    let mut a = conn("a", "b", "a-long-test-psk-0123456789", &x, 1, 2);
    let b = conn("b", "a", "a-long-test-psk-0123456789", &x, 2, 1);
    two_children(&mut a, 1, 2);
    a.children[1].remote_ts = vec![TrafficSelector::ipv4([10, 9, 0, 0].into(), [10, 9, 0, 255].into())];
    let mut net = Net::new(a, b);
    net.a.initiate(net.now, "a-b", A.parse().unwrap(), B.parse().unwrap()).unwrap();
    net.run(5, &|_| false);
    // TS_UNACCEPTABLE for the second; the IKE SA and the first Child SA stay.
    assert_eq!(child_ups(&net.a_events).len(), 1);
    assert_eq!(net.a.list(net.now)[0].children.len(), 1);
    assert!(net.a.list(net.now)[0].established);
    assert!(!net.a_events.iter().chain(&net.b_events).any(|e| matches!(e, Event::Failed { .. })));
    // Asked for again by name (as an acquire would): refused again, nothing else changes.
    let spi = net.a.list(net.now)[0].local_spi;
    net.a.create_child(spi, "high").unwrap();
    assert!(net.a.create_child(spi, "nonesuch").is_err());
    net.run(5, &|_| false);
    assert_eq!(child_ups(&net.a_events).len(), 1);
    let refused = |ev: &[Event]| {
        ev.iter()
            .filter_map(|e| match e {
                Event::ChildRefused { child, reason, .. } => Some((child.clone(), reason.clone())),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    let high = ("high".to_string(), "TS_UNACCEPTABLE".to_string());
    assert_eq!(refused(&net.a_events), [high.clone(), high], "each refusal reported");
}

#[test]
fn a_first_child_sa_refused_in_ike_auth_leaves_the_ike_sa_up() {
    // B has no room for A's first Child SA ("low"), which comes with IKE_AUTH: B answers AUTH
    // with TS_UNACCEPTABLE. The IKE SA is up all the same (RFC 7296 1.2), and A's second
    // Child SA comes up over it.
    let x = ["aes256gcm16-prfsha256-x25519"];
    let mut a = conn("a", "b", "a-long-test-psk-0123456789", &x, 1, 2);
    let b = conn("b", "a", "a-long-test-psk-0123456789", &x, 2, 1);
    two_children(&mut a, 1, 2);
    a.children.swap(0, 1);
    a.children[0].remote_ts = vec![TrafficSelector::ipv4([10, 9, 0, 0].into(), [10, 9, 0, 255].into())];
    let mut net = Net::new(a, b);
    net.a.initiate(net.now, "a-b", A.parse().unwrap(), B.parse().unwrap()).unwrap();
    net.run(5, &|_| false);
    assert!(!net.a_events.iter().chain(&net.b_events).any(|e| matches!(e, Event::Failed { .. })));
    assert!(net.a.list(net.now)[0].established && net.b.list(net.now)[0].established);
    assert!(net.a_events.iter().any(|e| matches!(e, Event::ChildRefused { child, reason, .. }
        if child == "high" && reason == "TS_UNACCEPTABLE")));
    let names = |ev: &[Event]| child_ups(ev).iter().map(|c| c.child.clone()).collect::<Vec<_>>();
    assert_eq!(names(&net.a_events), ["low"]);
    assert_eq!(child_ups(&net.b_events).len(), 1);
    one_matching_child(&net);
}

#[test]
fn ipv6_endpoints_and_selectors() {
    let x = ["aes256gcm16-prfsha256-x25519"];
    let mut a = conn("a", "b", "a-long-test-psk-0123456789", &x, 1, 2);
    let mut b = conn("b", "a", "a-long-test-psk-0123456789", &x, 2, 1);
    let net6 = |n: u16| {
        TrafficSelector::ipv6(
            std::net::Ipv6Addr::new(0xfd00, n, 0, 0, 0, 0, 0, 0),
            std::net::Ipv6Addr::new(0xfd00, n, 0, 0, 0xffff, 0xffff, 0xffff, 0xffff),
        )
    };
    (a.children[0].local_ts, a.children[0].remote_ts) = (vec![net6(1)], vec![net6(2)]);
    (b.children[0].local_ts, b.children[0].remote_ts) = (vec![net6(2)], vec![net6(1)]);
    let mut net = Net::new(a, b);
    let (la, lb): (SocketAddr, SocketAddr) =
        ("[2001:db8::1]:500".parse().unwrap(), "[2001:db8::2]:500".parse().unwrap());
    net.a.initiate(net.now, "a-b", la, lb).unwrap();
    net.run(60, &|_| false);
    check_pair(&net);
    let c = child(&net.a_events);
    assert_eq!(c.remote, lb);
    assert!(!c.udp_encap, "no NAT between the two: plain ESP");
    assert_eq!(c.local_ts, vec![net6(1)]);
}

// ---- certificates (tests/vectors/pki, made by strongSwan's pki and OpenSSL) ----

fn pki_file(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/vectors/pki/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn cert_auth(cert: &str, chain: &[&str], key: &str) -> LocalAuth {
    let load = |n: &str| Arc::new(Cert::load_all(&pki_file(n)).unwrap().remove(0));
    LocalAuth::Cert {
        cert: load(cert),
        chain: chain.iter().map(|n| load(n)).collect(),
        key: Arc::new(PrivateKey::load(&pki_file(key)).unwrap()),
    }
}

fn trust(cas: &[&str]) -> RemoteAuth {
    let cas = cas.iter().map(|n| Cert::load_all(&pki_file(n)).unwrap().remove(0)).collect();
    RemoteAuth::Cert(Arc::new(TrustStore::new(cas).unwrap()))
}

fn dn(s: &str) -> Identification {
    Identification { id_type: IdType::DER_ASN1_DN, data: Dn::parse(s).unwrap().der().to_vec() }
}

/// a: ECDSA P-256 certificate with the FQDN identity; b: an RSA certificate under an
/// intermediate CA, with its DN as identity. Each trusts the other's root.
fn cert_conns() -> (Connection, Connection) {
    let ike = ["aes256gcm16-prfsha256-x25519"];
    let mut a = conn("a", "b", "unused-psk-unused-psk", &ike, 1, 2);
    a.local_id = Identification::fqdn("gw.example.test");
    a.local_auth = cert_auth("ec-gw.pem", &[], "ec-gw.key.pem");
    a.remote_id = Some(dn("C=CH, O=Test, OU=Branches, CN=*"));
    a.remote_auth = trust(&["rsa-ca.pem"]);
    let mut b = conn("b", "a", "unused-psk-unused-psk", &ike, 2, 1);
    b.local_id = dn("C=CH, O=Test, OU=Branches, CN=branch7.example.test");
    b.local_auth = cert_auth("rsa-gw.pem", &["rsa-sub.pem"], "rsa-gw.key.pem");
    b.remote_id = Some(Identification::fqdn("*.example.test"));
    b.remote_auth = trust(&["ec-ca.pem"]);
    (a, b)
}

fn failed(events: &[Event]) -> Option<&str> {
    events.iter().find_map(|e| if let Event::Failed { reason, .. } = e { Some(reason.as_str()) } else { None })
}

#[test]
fn certificates_rsa_and_ecdsa_with_an_intermediate_ca() {
    let (a, b) = cert_conns();
    let mut net = Net::new(a, b);
    net.a.initiate(net.now, "a-b", A.parse().unwrap(), B.parse().unwrap()).unwrap();
    net.run(60, &|_| false);
    check_pair(&net);
    let remote = |events: &[Event]| {
        events.iter().find_map(|e| if let Event::IkeUp { remote_id, .. } = e { Some(remote_id.clone()) } else { None })
    };
    assert_eq!(remote(&net.a_events), Some(dn("C=CH, O=Test, OU=Branches, CN=branch7.example.test")));
    assert_eq!(remote(&net.b_events), Some(Identification::fqdn("gw.example.test")));
}

#[test]
fn certificate_one_way_psk_the_other() {
    // a signs with the P-384 key (PKCS#8, certificate signed RSA-PSS by OpenSSL), b uses a PSK.
    let (mut a, mut b) = cert_conns();
    a.local_id = Identification::rfc822("p384@example.test");
    a.local_auth = cert_auth("p384.pem", &[], "p384.key.pem");
    a.remote_auth = RemoteAuth::Psk(Secret::from_slice(b"a-long-test-psk-0123456789"));
    b.local_auth = LocalAuth::Psk(Secret::from_slice(b"a-long-test-psk-0123456789"));
    b.remote_id = Some(Identification::rfc822("*@example.test"));
    b.remote_auth = trust(&["rsa-ca.pem"]);
    let mut net = Net::new(a, b);
    net.a.initiate(net.now, "a-b", A.parse().unwrap(), B.parse().unwrap()).unwrap();
    net.run(60, &|_| false);
    check_pair(&net);
}

#[test]
fn certificates_that_must_not_authenticate() {
    type Change = fn(&mut Connection, &mut Connection);
    let unchanged: Change = |_, _| {};
    let cases: [(&str, Change, Option<i64>, &str); 5] = [
        ("untrusted CA", |_, b| b.remote_auth = trust(&["rsa-ca.pem"]), None, "no trusted CA issued"),
        (
            "identity not in the certificate",
            |a, _| a.local_id = Identification::fqdn("other.example.test"),
            None,
            "does not hold identity",
        ),
        (
            "identity the peer does not accept",
            |_, b| b.remote_id = Some(Identification::fqdn("*.example.org")),
            None,
            "no connection accepts",
        ),
        ("expired, by the responder's clock", unchanged, Some(2_200_000_000), "expired"),
        (
            "missing intermediate",
            |_, b| b.local_auth = cert_auth("rsa-gw.pem", &[], "rsa-gw.key.pem"),
            None,
            "no trusted CA issued",
        ),
    ];
    for (what, change, b_clock, why) in cases {
        let (mut a, mut b) = cert_conns();
        change(&mut a, &mut b);
        let mut net = Net::new(a, b);
        if let Some(t) = b_clock {
            net.b.set_wall_clock(net.now, t);
        }
        net.a.initiate(net.now, "a-b", A.parse().unwrap(), B.parse().unwrap()).unwrap();
        net.run(60, &|_| false);
        // The responder refuses the initiator, or the initiator refuses the responder.
        let reasons = format!("{:?} / {:?}", failed(&net.a_events), failed(&net.b_events));
        assert!(reasons.contains(why), "{what}: {reasons}");
        // No Child SA is left: one the responder made before the initiator refused its AUTH
        // goes again with the initiator's AUTHENTICATION_FAILED (RFC 7296 2.21.2).
        for events in [&net.a_events, &net.b_events] {
            let ups = events.iter().filter(|e| matches!(e, Event::ChildUp(_))).count();
            assert_eq!(ups, downs(events).0, "{what}: {events:?}");
        }
        assert!(failed(&net.b_events).is_some(), "{what}: the responder knows");
    }
}

// ---- many branches against one responder connection ----

/// Endpoints on one simulated network, each datagram delivered to the endpoint of its
/// destination address.
struct Lan {
    nodes: Vec<(std::net::IpAddr, Endpoint, Vec<Event>)>,
    now: Instant,
}

impl Lan {
    fn run(&mut self, secs: u64) {
        let end = self.now + Duration::from_secs(secs);
        loop {
            let mut moved = false;
            for i in 0..self.nodes.len() {
                while let Some(t) = self.nodes[i].1.poll_transmit() {
                    moved = true;
                    if let Some(dst) = self.nodes.iter_mut().find(|n| n.0 == t.remote.ip()) {
                        dst.1.handle_datagram(self.now, t.remote, t.local, &t.data);
                    }
                }
            }
            for n in &mut self.nodes {
                n.2.extend(std::iter::from_fn(|| n.1.poll_event()));
            }
            if moved {
                continue;
            }
            match self.nodes.iter().filter_map(|n| n.1.poll_timeout()).min() {
                Some(t) if t <= end => {
                    self.now = t.max(self.now);
                    for n in &mut self.nodes {
                        n.1.handle_timeout(self.now);
                    }
                }
                _ => break,
            }
        }
    }
}

#[test]
fn one_responder_connection_serves_many_branches_told_apart_by_identity() {
    let x = ["aes256gcm16-prfsha256-x25519"];
    // The hub accepts any branch whose certificate the RSA CA issued, for any 10.x subnet.
    let mut hub = conn("hub", "branch", "unused-psk-unused-psk", &x, 2, 0);
    hub.local_id = Identification::fqdn("gw.example.test");
    hub.local_auth = cert_auth("ec-gw.pem", &[], "ec-gw.key.pem");
    hub.remote_id = Some(Identification::fqdn("*.example.test"));
    hub.remote_auth = trust(&["rsa-ca.pem"]);
    hub.children[0].remote_ts = vec![TrafficSelector::ipv4([10, 0, 0, 0].into(), [10, 255, 255, 255].into())];
    let branch = |net: u8, id: &str, cert: &str, chain: &[&str], key: &str| {
        let mut c = conn("branch", "hub", "unused-psk-unused-psk", &x, net, 2);
        c.local_id = Identification::fqdn(id);
        c.local_auth = cert_auth(cert, chain, key);
        c.remote_id = Some(Identification::fqdn("gw.example.test"));
        c.remote_auth = trust(&["ec-ca.pem"]);
        c
    };
    let b7 = branch(7, "branch7.example.test", "rsa-gw.pem", &["rsa-sub.pem"], "rsa-gw.key.pem");
    let b8 = branch(8, "p384.example.test", "p384.pem", &[], "p384.key.pem");
    let now = Instant::now();
    let node = |ip: &str, c: Connection, seed: &[u8]| {
        let mut ep = Endpoint::new(vec![c], Box::new(TestProvider::new(seed)));
        ep.set_wall_clock(now, CERT_TIME);
        (ip.parse().unwrap(), ep, Vec::new())
    };
    let mut lan = Lan {
        nodes: vec![
            node("192.0.2.2", hub, b"hub"),
            node("198.51.100.7", b7.clone(), b"branch 7"),
            node("203.0.113.8", b8, b"branch 8"),
        ],
        now,
    };
    let hub_addr: SocketAddr = B.parse().unwrap();
    for (i, ip) in [(1, "198.51.100.7:500"), (2, "203.0.113.8:500")] {
        lan.nodes[i].1.initiate(lan.now, "branch-hub", ip.parse().unwrap(), hub_addr).unwrap();
    }
    lan.run(10);
    let hub_sas = lan.nodes[0].1.list(lan.now);
    let mut ids: Vec<String> = hub_sas.iter().filter_map(|s| s.remote_id.clone()).collect();
    ids.sort();
    assert_eq!(ids, ["branch7.example.test", "p384.example.test"]);
    // Each branch's Child SA is narrowed to its own subnet.
    let mut nets: Vec<Vec<TrafficSelector>> = child_ups(&lan.nodes[0].2).iter().map(|c| c.remote_ts.clone()).collect();
    nets.sort_by_key(|t| format!("{t:?}"));
    assert_eq!(
        nets,
        [
            vec![TrafficSelector::ipv4([10, 7, 0, 0].into(), [10, 7, 0, 255].into())],
            vec![TrafficSelector::ipv4([10, 8, 0, 0].into(), [10, 8, 0, 255].into())],
        ]
    );
    // Branch 7 restarts (a new endpoint, same identity): its INITIAL_CONTACT clears its old
    // IKE SA on the hub, and branch 8 is untouched.
    let mut again = Endpoint::new(vec![b7], Box::new(TestProvider::new(b"branch 7 again")));
    again.set_wall_clock(lan.now, CERT_TIME);
    lan.nodes[1].1 = again;
    lan.nodes[1].1.initiate(lan.now, "branch-hub", "198.51.100.7:500".parse().unwrap(), hub_addr).unwrap();
    lan.run(10);
    let hub_sas = lan.nodes[0].1.list(lan.now);
    assert_eq!(hub_sas.len(), 2, "{hub_sas:?}");
    assert_eq!(downs(&lan.nodes[0].2), (1, 1), "the old SA of branch 7 only");
    assert!(!lan.nodes.iter().flat_map(|n| &n.2).any(|e| matches!(e, Event::Failed { .. })));
}

#[test]
fn a_sealed_message_that_does_not_verify_changes_nothing() {
    let mut net = up(&["aes256gcm16-prfsha256-x25519"], &["aes256gcm16-prfsha256-x25519"], &|_| false);
    check_pair(&net);
    let (_, spi, _) = net.a.ike_sas()[0].clone();
    // A real request of A's (a Delete), held back.
    net.a.delete(net.now, spi).unwrap();
    let Transmit { local, remote, data } = net.a.poll_transmit().expect("A's Delete");
    let elsewhere: SocketAddr = "203.0.113.9:4500".parse().unwrap();
    // Its header is in the clear: copies with a broken ICV, or cut short, from A's address and
    // from another, must neither take B's SA down nor move it nor get an answer (RFC 7296
    // 2.21.2, 3.14: dropped without a trace).
    let mut bad_icv = data.clone();
    *bad_icv.last_mut().unwrap() ^= 1;
    let mut bad_body = data.clone();
    bad_body[40] ^= 0x80;
    for forged in [&bad_icv, &bad_body] {
        for from in [local, elsewhere] {
            net.b.handle_datagram(net.now, remote, from, forged);
            assert!(net.b.poll_transmit().is_none(), "no answer to a forgery");
        }
    }
    let b_sas = net.b.list(net.now);
    assert_eq!(b_sas.len(), 1);
    assert!(b_sas[0].established);
    assert_eq!(b_sas[0].remote, local, "the peer's address is not taken from a forgery");
    assert!(std::iter::from_fn(|| net.b.poll_event()).next().is_none(), "no event: nothing happened");
    // A forged answer to A's pending request, labelled IKE_SA_INIT (unsealed): A is past
    // IKE_SA_INIT, so it takes nothing unsealed, and its IKE SA stays up.
    let h = ikev2::wire::Message::parse(&data).unwrap().header;
    let forged = ikev2::wire::Message {
        header: ikev2::wire::Header {
            exchange: ikev2::wire::ExchangeType::IKE_SA_INIT,
            initiator: false,
            response: true,
            length: 0,
            next_payload: 0,
            ..h
        },
        payloads: vec![],
    };
    net.a.handle_datagram(net.now, local, elsewhere, &forged.emit());
    assert_eq!(net.a.ike_sas().len(), 1, "A's IKE SA is still there");
    assert!(std::iter::from_fn(|| net.a.poll_event()).next().is_none());
    // The genuine request still goes through (its message ID was not used up), from wherever
    // it comes: an authenticated new message moves the peer's address (a NAT rebinding).
    net.b.handle_datagram(net.now, remote, elsewhere, &data);
    let answer = net.b.poll_transmit().expect("B answers the Delete");
    assert_eq!(answer.remote, elsewhere, "answered where the authenticated request came from");
    assert!(net.b.ike_sas().is_empty(), "B acted on the Delete");
}

#[test]
fn half_open_responder_sas_expire() {
    let x = ["aes256gcm16-prfsha256-x25519"];
    let mut net = Net::new(
        conn("a", "b", "a-long-test-psk-0123456789", &x, 1, 2),
        conn("b", "a", "a-long-test-psk-0123456789", &x, 2, 1),
    );
    let start = net.now;
    net.a.initiate(net.now, "a-b", A.parse().unwrap(), B.parse().unwrap()).unwrap();
    // B gets A's IKE_SA_INIT; nothing else arrives anywhere (no IKE_AUTH ever).
    net.run(0, &|n| n > 1);
    assert_eq!(net.b.ike_sas().len(), 1, "B keeps a half-open SA");
    assert!(net.b.poll_timeout().is_some_and(|t| t <= start + Endpoint::HALF_OPEN_LIFETIME));
    let second = Duration::from_secs(1);
    net.run_until(start + Endpoint::HALF_OPEN_LIFETIME - second, &|n| n > 1);
    assert_eq!(net.b.ike_sas().len(), 1, "not before its time");
    net.run_until(start + Endpoint::HALF_OPEN_LIFETIME + second, &|n| n > 1);
    assert!(net.b.ike_sas().is_empty(), "the half-open SA is gone after {:?}", Endpoint::HALF_OPEN_LIFETIME);
    assert!(net.b_events.is_empty(), "dropped without events: {:?}", net.b_events);
}

#[test]
fn narrowing_never_yields_more_selectors_than_a_payload_holds() {
    use ikev2::wire::AddrRange;
    // 255 selectors of the peer's, one per protocol, each inside both of ours: 510 pairs.
    let theirs: Vec<TrafficSelector> = (1..=255u8)
        .map(|p| {
            TrafficSelector::Ipv4(AddrRange {
                ip_protocol: p,
                start_port: 0,
                end_port: 65535,
                start: [0, 0, 0, 0].into(),
                end: [255, 255, 255, 255].into(),
            })
        })
        .collect();
    let ours = [
        TrafficSelector::ipv4([10, 0, 0, 0].into(), [10, 255, 255, 255].into()),
        TrafficSelector::ipv4([192, 168, 0, 0].into(), [192, 168, 255, 255].into()),
    ];
    let narrowed = ikev2::ike::narrow(&theirs, &ours);
    assert_eq!(narrowed.len(), 255, "RFC 7296 3.13: the count is one octet");
    assert!(narrowed.iter().all(|n| ikev2::ike::narrow(std::slice::from_ref(n), &ours) == [n.clone()]));
}

#[test]
fn a_refused_child_sa_rekey_is_retried_soon() {
    // A rekeys with PFS (x25519); B takes no DH group for Child SAs: NO_PROPOSAL_CHOSEN. The
    // first Child SA (IKE_AUTH, no KE) comes up all the same.
    let mut a = conn("a", "b", "a-long-test-psk-0123456789", &["aes256gcm16-prfsha256-x25519"], 1, 2);
    let mut b = conn("b", "a", "a-long-test-psk-0123456789", &["aes256gcm16-prfsha256-x25519"], 2, 1);
    a.esp = vec![Algorithms::parse(Kind::Esp, "aes256gcm16-x25519").unwrap()];
    b.esp = vec![Algorithms::parse(Kind::Esp, "aes256gcm16").unwrap()];
    a.child_rekey = Some(Duration::from_secs(100));
    let mut net = Net::new(a, b);
    let start = net.now;
    net.a.initiate(net.now, "a-b", A.parse().unwrap(), B.parse().unwrap()).unwrap();
    net.run_until(start + Duration::from_secs(99), &|_| false);
    assert_eq!(child_ups(&net.a_events).len(), 1);
    let before = net.delivered;
    // The rekey at 100 s is refused. Trying again a full rekey time later (200 s) would come
    // long after the SA's hard lifetime in the dataplane (1.1 x the rekey time by the
    // daemon's default): tries at 100, 110, 120 s.
    net.run_until(start + Duration::from_secs(125), &|_| false);
    let tries = (net.delivered - before) / 2;
    assert_eq!(tries, 3, "a request and its refusal every {:?}", Duration::from_secs(10));
    assert!(!net.a_events.iter().chain(&net.b_events).any(|e| matches!(e, Event::Failed { .. })));
    assert_eq!(live_children(&net.a_events).len(), 1, "the old pair stays while refused");
}

#[test]
fn a_rekey_we_answered_takes_outbound_traffic_even_if_the_old_pair_is_never_deleted() {
    let x = ["aes256gcm16-prfsha256-x25519"];
    let mut a = conn("a", "b", "a-long-test-psk-0123456789", &x, 1, 2);
    let b = conn("b", "a", "a-long-test-psk-0123456789", &x, 2, 1);
    a.child_rekey = Some(Duration::from_secs(10));
    let mut net = Net::new(a, b);
    let start = net.now;
    net.a.initiate(net.now, "a-b", A.parse().unwrap(), B.parse().unwrap()).unwrap();
    // Datagrams 1-4 bring the SAs up, 5-6 are the rekey at 10 s; A's Delete of the old pair
    // (7) and everything after is lost.
    let lose = |n: usize| n >= 7;
    net.run_until(start + Duration::from_secs(10) + OUTBOUND_HOLD - Duration::from_millis(500), &lose);
    let ub = child_ups(&net.b_events);
    assert_eq!(ub.len(), 2);
    assert!(ub[1].outbound_later);
    assert_eq!(outbound_sa(&net.b_events), Some(ub[0].spi_in), "held on the old pair");
    let new_in = ub[1].spi_in;
    net.run_until(start + Duration::from_secs(10) + OUTBOUND_HOLD + Duration::from_millis(500), &lose);
    assert_eq!(outbound_sa(&net.b_events), Some(new_in), "moved after {OUTBOUND_HOLD:?}");
    assert_eq!(downs(&net.b_events).0, 0, "the old pair is still there");
}

#[test]
fn a_responder_that_wants_pfs_refuses_a_rekey_without_it() {
    // A rekeys without a DH group (no KE); B's Child SAs must have x25519 (RFC 7296 1.3.3).
    let mut a = conn("a", "b", "a-long-test-psk-0123456789", &["aes256gcm16-prfsha256-x25519"], 1, 2);
    let mut b = conn("b", "a", "a-long-test-psk-0123456789", &["aes256gcm16-prfsha256-x25519"], 2, 1);
    a.esp = vec![Algorithms::parse(Kind::Esp, "aes256gcm16").unwrap()];
    b.esp = vec![Algorithms::parse(Kind::Esp, "aes256gcm16-x25519").unwrap()];
    a.child_rekey = Some(Duration::from_secs(10));
    let mut net = Net::new(a, b);
    let start = net.now;
    net.a.initiate(net.now, "a-b", A.parse().unwrap(), B.parse().unwrap()).unwrap();
    net.run_until(start + Duration::from_secs(15), &|_| false);
    assert_eq!(child_ups(&net.b_events).len(), 1, "the first Child SA only: no rekey without PFS");
    assert_eq!(child_ups(&net.a_events).len(), 1);
    assert!(!net.a_events.iter().chain(&net.b_events).any(|e| matches!(e, Event::Failed { .. })));
}

#[test]
fn a_responder_connection_with_an_address_serves_only_that_peer() {
    let x = ["aes256gcm16-prfsha256-x25519"];
    let psk = "a-long-test-psk-0123456789";
    // B has two connections that accept any identity with the PSK: the first for a peer at
    // another address, the second for A's. A must get the second, not whichever comes first.
    let mut other = conn("b", "a", psk, &x, 2, 1);
    (other.name, other.remote_id, other.remote_addr) =
        ("b-elsewhere".into(), None, Some("192.0.2.99".parse().unwrap()));
    let mut b = conn("b", "a", psk, &x, 2, 1);
    (b.remote_id, b.remote_addr) = (None, Some("192.0.2.1".parse().unwrap()));
    let mut net = Net::new(conn("a", "b", psk, &x, 1, 2), b.clone());
    net.b = Endpoint::new(vec![other.clone(), b], Box::new(ikev2::crypto::TestProvider::new(b"peer b")));
    net.b.set_wall_clock(net.now, CERT_TIME);
    net.a.initiate(net.now, "a-b", A.parse().unwrap(), B.parse().unwrap()).unwrap();
    net.run(60, &|_| false);
    check_pair(&net);
    let names: Vec<String> = net.b.ike_sas().into_iter().map(|s| s.0).collect();
    assert_eq!(names, ["b-a"]);
    // With only the other connection, B has nothing for A.
    let mut net = Net::new(conn("a", "b", psk, &x, 1, 2), other);
    net.a.initiate(net.now, "a-b", A.parse().unwrap(), B.parse().unwrap()).unwrap();
    net.run(60, &|_| false);
    assert!(net.b.ike_sas().is_empty());
    assert!(net.a_events.iter().any(|e| matches!(e, Event::Failed { .. })), "{:?}", net.a_events);
}

#[test]
fn an_initiator_gives_up_on_a_responder_that_keeps_asking_for_cookies() {
    use ikev2::wire::{ExchangeType, Header, Message, Notify, NotifyType, Payload, ProtocolId};
    let x = ["aes256gcm16-prfsha256-x25519"];
    let mut net = Net::new(
        conn("a", "b", "a-long-test-psk-0123456789", &x, 1, 2),
        conn("b", "a", "a-long-test-psk-0123456789", &x, 2, 1),
    );
    net.a.initiate(net.now, "a-b", A.parse().unwrap(), B.parse().unwrap()).unwrap();
    // Every IKE_SA_INIT of A's is answered with a new COOKIE (RFC 7296 2.6), never with state.
    let mut sent = 0;
    for round in 0..20u8 {
        let Some(t) = net.a.poll_transmit() else { break };
        sent += 1;
        let h = Message::parse(&t.data).unwrap().header;
        let cookie = Message {
            header: Header { spi_r: 0, response: true, initiator: false, length: 0, next_payload: 0, ..h },
            payloads: vec![Payload::Notify(Notify {
                protocol: ProtocolId::NONE,
                spi: vec![],
                notify_type: NotifyType::COOKIE,
                data: vec![round; 20],
            })],
        };
        assert_eq!(h.exchange, ExchangeType::IKE_SA_INIT);
        net.a.handle_datagram(net.now, t.local, t.remote, &cookie.emit());
    }
    assert_eq!(sent, 5, "the first request and four more with cookies");
    let events: Vec<Event> = std::iter::from_fn(|| net.a.poll_event()).collect();
    assert!(
        events.iter().any(|e| matches!(e, Event::Failed { reason, .. } if reason.contains("keeps asking"))),
        "{events:?}"
    );
    assert!(net.a.ike_sas().is_empty());
}

#[test]
fn certificate_payloads_past_the_longest_chain_are_not_looked_at() {
    // B's RSA certificate is issued by an intermediate CA; its chain is sent with decoys in
    // front (any certificate; here a stranger's), and A takes at most MAX_CHAIN of the CERT
    // payloads after the end entity's: signature checks on decoys cost A time before anyone
    // has authenticated.
    for decoys in [ikev2::pki::MAX_CHAIN - 1, ikev2::pki::MAX_CHAIN] {
        let (a, mut b) = cert_conns();
        let mut chain = vec!["stranger.pem"; decoys];
        chain.push("rsa-sub.pem");
        b.local_auth = cert_auth("rsa-gw.pem", &chain, "rsa-gw.key.pem");
        let mut net = Net::new(a, b);
        net.a.initiate(net.now, "a-b", A.parse().unwrap(), B.parse().unwrap()).unwrap();
        net.run(60, &|_| false);
        let up = net.a_events.iter().any(|e| matches!(e, Event::ChildUp(_)));
        assert_eq!(up, decoys < ikev2::pki::MAX_CHAIN, "{decoys} decoys: {:?}", net.a_events);
    }
}

#[test]
fn a_replayed_authentic_request_does_not_move_the_peer() {
    let x = ["aes256gcm16-prfsha256-x25519"];
    let mut a = conn("a", "b", "a-long-test-psk-0123456789", &x, 1, 2);
    let b = conn("b", "a", "a-long-test-psk-0123456789", &x, 2, 1);
    a.child_rekey = Some(Duration::from_secs(10));
    let mut net = Net::new(a, b);
    let start = net.now;
    net.a.initiate(net.now, "a-b", A.parse().unwrap(), B.parse().unwrap()).unwrap();
    net.run_until(start + Duration::from_secs(9), &|_| false);
    // A's rekey request (CREATE_CHILD_SA), delivered to B once, genuinely.
    net.now = start + Duration::from_secs(10);
    net.a.handle_timeout(net.now);
    let Transmit { local, remote, data } = net.a.poll_transmit().expect("A's rekey request");
    net.b.handle_datagram(net.now, remote, local, &data);
    assert_eq!(net.b.poll_transmit().expect("B answers").remote, local);
    // Sent again from elsewhere (recorded, or a NAT that changed its mapping): B repeats its
    // answer (RFC 7296 2.1) where the request came from (2.11), but what B sends from then
    // on still goes where the peer was: an old message does not move it.
    let elsewhere: SocketAddr = "203.0.113.9:500".parse().unwrap();
    net.b.handle_datagram(net.now, remote, elsewhere, &data);
    assert_eq!(net.b.poll_transmit().expect("the same answer again").remote, elsewhere);
    assert!(net.b.poll_transmit().is_none());
    assert_eq!(net.b.list(net.now)[0].remote, local);
}

#[test]
fn a_late_rekey_of_a_pair_already_replaced_is_refused() {
    // Both ends rekey at 10 s. B's request (datagram 6) and A's Delete of the old pair after
    // its own rekey (8) are lost: at 11 s both are sent again, and B's request for the old
    // pair reaches A after A's rekey replaced it and before A's Delete is answered.
    let x = ["aes256gcm16-prfsha256-x25519"];
    for (seed_a, seed_b) in [(&b"peer a"[..], &b"peer b"[..]), (b"peer b", b"peer a"), (b"x", b"y")] {
        let mut a = conn("a", "b", "a-long-test-psk-0123456789", &x, 1, 2);
        let mut b = conn("b", "a", "a-long-test-psk-0123456789", &x, 2, 1);
        (a.child_rekey, b.child_rekey) = (Some(Duration::from_secs(10)), Some(Duration::from_secs(10)));
        let mut net = Net::seeded(a, b, seed_a, seed_b);
        let start = net.now;
        net.a.initiate(net.now, "a-b", A.parse().unwrap(), B.parse().unwrap()).unwrap();
        net.run_until(start + Duration::from_secs(15), &|n| n == 6 || n == 8);
        assert!(!net.a_events.iter().chain(&net.b_events).any(|e| matches!(e, Event::Failed { .. })));
        one_matching_child(&net);
        // Outbound traffic on each side ends on the one pair left.
        for (events, side) in [(&net.a_events, "a"), (&net.b_events, "b")] {
            assert_eq!(outbound_sa(events), live_children(events).first().map(|c| c.0), "{side}");
        }
        // Until the next rekeys at 20 s nothing more is tried.
        let before = net.delivered;
        net.run_until(start + Duration::from_secs(19), &|_| false);
        assert_eq!(net.delivered, before, "no retries of a rekey whose pair is gone");
    }
}

#[test]
fn an_initiator_refuses_a_responder_nonce_of_a_length_rfc_7296_does_not_allow() {
    use ikev2::wire::{Header, KeyExchange, Message, Payload};
    let x = ["aes256gcm16-prfsha256-x25519"];
    for (len, ok) in [(15, false), (16, true), (256, true), (257, false)] {
        let mut net = Net::new(
            conn("a", "b", "a-long-test-psk-0123456789", &x, 1, 2),
            conn("b", "a", "a-long-test-psk-0123456789", &x, 2, 1),
        );
        net.a.initiate(net.now, "a-b", A.parse().unwrap(), B.parse().unwrap()).unwrap();
        // A hand-made IKE_SA_INIT answer: A's own proposal accepted, a KE of its group, and a
        // nonce of `len` octets (RFC 7296 2.10: at least 16; 3.9: at most 256).
        let t = net.a.poll_transmit().expect("A's IKE_SA_INIT");
        let req = Message::parse(&t.data).unwrap();
        let proposal = req.payloads.iter().find_map(|p| if let Payload::Sa(s) = p { Some(s[0].clone()) } else { None });
        let answer = Message {
            header: Header { spi_r: 0x1122_3344_5566_7788, response: true, initiator: false, ..req.header },
            payloads: vec![
                Payload::Sa(vec![proposal.unwrap()]),
                Payload::Ke(KeyExchange { group: 31, data: vec![9; 32] }),
                Payload::Nonce(vec![7; len]),
            ],
        };
        net.a.handle_datagram(net.now, t.local, t.remote, &answer.emit());
        let events: Vec<Event> = std::iter::from_fn(|| net.a.poll_event()).collect();
        let refused = events.iter().any(|e| matches!(e, Event::Failed { reason, .. } if reason.contains("nonce")));
        assert_eq!(refused, !ok, "nonce of {len} octets: {events:?}");
        if ok {
            // Accepted: A goes on to IKE_AUTH.
            assert!(net.a.poll_transmit().is_some(), "nonce of {len} octets");
        }
    }
}

/// A provider whose 4-byte draws (ESP SPIs) are all the same until `repeats` run out.
struct RepeatingSpis {
    rng: ikev2::crypto::SeededRng,
    repeats: usize,
}

impl ikev2::crypto::Rng for RepeatingSpis {
    fn fill(&mut self, buf: &mut [u8]) {
        if buf.len() == 4 && self.repeats > 0 {
            self.repeats -= 1;
            buf.copy_from_slice(&[0x5a, 1, 2, 3]);
        } else {
            self.rng.fill(buf);
        }
    }
}

impl ikev2::crypto::CryptoProvider for RepeatingSpis {
    fn rng(&mut self) -> &mut dyn ikev2::crypto::Rng {
        self
    }
}

#[test]
fn inbound_spis_are_drawn_again_until_unused() {
    // B's random numbers give the same ESP SPI three times in a row: the first Child SA takes
    // it, the second (CREATE_CHILD_SA) must draw until it gets another.
    let x = ["aes256gcm16-prfsha256-x25519"];
    let mut a = conn("a", "b", "a-long-test-psk-0123456789", &x, 1, 2);
    let mut b = conn("b", "a", "a-long-test-psk-0123456789", &x, 2, 1);
    two_children(&mut a, 1, 2);
    two_children_mirrored(&mut b, 2, 1);
    let mut net = Net::new(a, b.clone());
    let rng = ikev2::crypto::SeededRng::new(b"peer b");
    net.b = Endpoint::new(vec![b], Box::new(RepeatingSpis { rng, repeats: 3 }));
    net.b.set_wall_clock(net.now, CERT_TIME);
    net.a.initiate(net.now, "a-b", A.parse().unwrap(), B.parse().unwrap()).unwrap();
    net.run(5, &|_| false);
    let ub = child_ups(&net.b_events);
    assert_eq!(ub.len(), 2, "{:?}", net.b_events);
    assert_eq!(ub[0].spi_in, 0x5a01_0203);
    assert_ne!(ub[1].spi_in, ub[0].spi_in, "the second Child SA's inbound SPI is its own");
}

#[test]
fn child_sas_follow_the_dh_group_the_responder_asks_for() {
    // A offers x25519 first and ecp256 second for its Child SAs; B takes only ecp256, so it
    // answers A's first CREATE_CHILD_SA (the second Child SA, "high") with
    // INVALID_KE_PAYLOAD. A asks again with ecp256 at once (RFC 7296 1.3), for that new
    // Child SA and for every rekey after it.
    let x = ["aes256gcm16-prfsha256-x25519"];
    let mut a = conn("a", "b", "a-long-test-psk-0123456789", &x, 1, 2);
    let mut b = conn("b", "a", "a-long-test-psk-0123456789", &x, 2, 1);
    two_children(&mut a, 1, 2);
    two_children_mirrored(&mut b, 2, 1);
    a.esp = vec![Algorithms::parse(Kind::Esp, "aes256gcm16-x25519-ecp256").unwrap()];
    b.esp = vec![Algorithms::parse(Kind::Esp, "aes256gcm16-ecp256").unwrap()];
    a.child_rekey = Some(Duration::from_secs(10));
    let mut net = Net::new(a, b);
    let start = net.now;
    net.a.initiate(net.now, "a-b", A.parse().unwrap(), B.parse().unwrap()).unwrap();
    net.run_until(start + Duration::from_secs(1), &|_| false);
    let names = |ev: &[Event]| child_ups(ev).iter().map(|c| c.child.clone()).collect::<Vec<_>>();
    assert_eq!(names(&net.a_events), ["low", "high"], "the refused Child SA is asked for again at once");
    // IKE_SA_INIT, IKE_AUTH, the refused CREATE_CHILD_SA and the one that went through.
    assert_eq!(net.delivered, 8);
    let before = net.delivered;
    net.run_until(start + Duration::from_secs(11), &|_| false);
    assert_eq!(names(&net.a_events), ["low", "high", "low", "high"], "both rekeyed at 10 s");
    assert_eq!(names(&net.b_events), ["low", "high", "low", "high"]);
    // Two rekeys and two deletes, each a request and its answer: no refusal any more.
    assert_eq!(net.delivered - before, 8);
    let (ua, ub) = (child_ups(&net.a_events), child_ups(&net.b_events));
    for (x, y) in ua.iter().zip(&ub) {
        assert_eq!((x.spi_in, x.spi_out), (y.spi_out, y.spi_in));
        assert_eq!(x.key_in.expose(), y.key_out.expose());
    }
    assert!(!net.a_events.iter().chain(&net.b_events).any(|e| matches!(e, Event::Failed { .. })));
}

#[test]
fn a_rekey_refused_for_its_dh_group_is_asked_again_at_once_with_the_group_wanted() {
    let x = ["aes256gcm16-prfsha256-x25519"];
    let mut a = conn("a", "b", "a-long-test-psk-0123456789", &x, 1, 2);
    let mut b = conn("b", "a", "a-long-test-psk-0123456789", &x, 2, 1);
    a.esp = vec![Algorithms::parse(Kind::Esp, "aes256gcm16-x25519-ecp256").unwrap()];
    b.esp = vec![Algorithms::parse(Kind::Esp, "aes256gcm16-ecp256").unwrap()];
    a.child_rekey = Some(Duration::from_secs(10));
    let mut net = Net::new(a, b);
    let start = net.now;
    net.a.initiate(net.now, "a-b", A.parse().unwrap(), B.parse().unwrap()).unwrap();
    net.run_until(start + Duration::from_secs(9), &|_| false);
    let before = net.delivered;
    net.run_until(start + Duration::from_secs(10) + Duration::from_millis(100), &|_| false);
    // The refused rekey, the one with ecp256, and the old pair's delete.
    assert_eq!(net.delivered - before, 6);
    assert_eq!((child_ups(&net.a_events).len(), child_ups(&net.b_events).len()), (2, 2));
    one_matching_child(&net);
    // The next rekey goes through at the first try.
    let before = net.delivered;
    net.run_until(start + Duration::from_secs(20) + Duration::from_millis(100), &|_| false);
    assert_eq!(net.delivered - before, 4);
    one_matching_child(&net);
}

#[test]
fn rekeys_are_jittered_a_random_amount_early() {
    // Twenty Child SAs of one IKE SA, made within the same second: with a jitter of up to
    // 10 s before 100 s (the default, a tenth), their rekeys spread over [90 s, 100 s]
    // instead of all coming at 100 s (RFC 7296 2.8).
    let x = ["aes256gcm16-prfsha256-x25519"];
    let mut a = conn("a", "b", "a-long-test-psk-0123456789", &x, 1, 2);
    let mut b = conn("b", "a", "a-long-test-psk-0123456789", &x, 2, 1);
    let net_of = |n: u8, k: u8| TrafficSelector::ipv4([10, n, 0, k * 8].into(), [10, n, 0, k * 8 + 7].into());
    let whole = |n: u8| TrafficSelector::ipv4([10, n, 0, 0].into(), [10, n, 0, 255].into());
    (a.children, b.children) = (0..20)
        .map(|k| {
            let name = format!("c{k}");
            (
                ChildConfig { name: name.clone(), local_ts: vec![whole(1)], remote_ts: vec![net_of(2, k)] },
                ChildConfig { name, local_ts: vec![net_of(2, k)], remote_ts: vec![whole(1)] },
            )
        })
        .unzip();
    (a.child_rekey, a.rekey_jitter) = (Some(Duration::from_secs(100)), None);
    let mut net = Net::new(a, b);
    let start = net.now;
    net.a.initiate(net.now, "a-b", A.parse().unwrap(), B.parse().unwrap()).unwrap();
    net.run_until(start + Duration::from_secs(1), &|_| false);
    assert_eq!(child_ups(&net.a_events).len(), 20);
    net.run_until(start + Duration::from_secs(90) - Duration::from_millis(1), &|_| false);
    assert_eq!(child_ups(&net.a_events).len(), 20, "none before 90 s");
    let mut rekeyed_by_second = Vec::new();
    for s in 90..=100 {
        net.run_until(start + Duration::from_secs(s) + Duration::from_millis(1), &|_| false);
        rekeyed_by_second.push(child_ups(&net.a_events).len() - 20);
    }
    assert_eq!(*rekeyed_by_second.last().unwrap(), 20, "all by 100 s: {rekeyed_by_second:?}");
    assert!(rekeyed_by_second[5] > 2 && rekeyed_by_second[5] < 18, "spread, not bunched: {rekeyed_by_second:?}");
    assert_eq!(child_ups(&net.b_events).len(), 40);
    assert!(!net.a_events.iter().chain(&net.b_events).any(|e| matches!(e, Event::Failed { .. })));
}

#[test]
fn an_ike_sa_rekey_is_jittered_too() {
    let x = ["aes256gcm16-prfsha256-x25519"];
    let mut a = conn("a", "b", "a-long-test-psk-0123456789", &x, 1, 2);
    let b = conn("b", "a", "a-long-test-psk-0123456789", &x, 2, 1);
    (a.ike_rekey, a.rekey_jitter) = (Some(Duration::from_secs(100)), Some(Duration::from_secs(30)));
    let mut net = Net::new(a, b);
    let start = net.now;
    net.a.initiate(net.now, "a-b", A.parse().unwrap(), B.parse().unwrap()).unwrap();
    let rekeyed = |net: &Net| net.a_events.iter().any(|e| matches!(e, Event::IkeRekeyed { .. }));
    // Up to 30 s early, but never more than half the period.
    net.run_until(start + Duration::from_secs(70) - Duration::from_millis(1), &|_| false);
    assert!(!rekeyed(&net));
    net.run_until(start + Duration::from_secs(100) - Duration::from_millis(1), &|_| false);
    assert!(rekeyed(&net), "this seed's draw is early");
    one_matching_child(&net);
}

#[test]
fn the_jitter_never_exceeds_half_the_period_and_follows_the_connection_chosen_by_identity() {
    // B has two connections IKE_SA_INIT cannot tell apart (same proposals, any address): one
    // for another peer with an IKE SA rekey every 10,000 s (a jitter of up to 1,000 s by
    // default), and A's, found by identity in IKE_AUTH, with one every 20 s and a jitter
    // asked for of 80 s. A's IKE SA on B is rekeyed between 10 s (half the period, the most
    // a jitter may take) and 20 s: not at once, as 20 s less a jitter drawn for the other
    // connection would often be.
    let x = ["aes256gcm16-prfsha256-x25519"];
    let a = conn("a", "b", "a-long-test-psk-0123456789", &x, 1, 2);
    let mut other = conn("b", "c", "a-long-test-psk-0123456789", &x, 2, 3);
    (other.ike_rekey, other.rekey_jitter) = (Some(Duration::from_secs(10_000)), None);
    let mut b = conn("b", "a", "a-long-test-psk-0123456789", &x, 2, 1);
    (b.ike_rekey, b.rekey_jitter) = (Some(Duration::from_secs(20)), Some(Duration::from_secs(80)));
    for seed in [&b"one"[..], b"two", b"three", b"four"] {
        let mut net = Net::seeded(a.clone(), b.clone(), b"peer a", seed);
        net.b = Endpoint::new(vec![other.clone(), b.clone()], Box::new(TestProvider::new(seed)));
        net.b.set_wall_clock(net.now, CERT_TIME);
        let start = net.now;
        net.a.initiate(net.now, "a-b", A.parse().unwrap(), B.parse().unwrap()).unwrap();
        let rekeyed = |net: &Net| net.b_events.iter().any(|e| matches!(e, Event::IkeRekeyed { .. }));
        net.run_until(start + Duration::from_secs(10) - Duration::from_millis(10), &|_| false);
        assert!(net.b_events.iter().any(|e| matches!(e, Event::IkeUp { connection, .. } if connection == "b-a")));
        assert!(!rekeyed(&net), "seed {seed:?}: rekeyed before half the period");
        net.run_until(start + Duration::from_secs(20) + Duration::from_millis(10), &|_| false);
        assert!(rekeyed(&net), "seed {seed:?}");
        one_matching_child(&net);
    }
}

#[test]
fn behind_a_nat_both_ends_move_to_port_4500_with_esp_in_udp() {
    // A sits behind a NAT: the NAT_DETECTION hashes disagree, and from IKE_AUTH on both ends
    // talk on port 4500 (RFC 7296 2.23), with ESP in UDP (RFC 3948).
    let x = ["aes256gcm16-prfsha256-x25519"];
    let mut net = Net::new(
        conn("a", "b", "a-long-test-psk-0123456789", &x, 1, 2),
        conn("b", "a", "a-long-test-psk-0123456789", &x, 2, 1),
    );
    net.nat = Some("198.51.100.77".parse().unwrap());
    net.a.initiate(net.now, "a-b", A.parse().unwrap(), B.parse().unwrap()).unwrap();
    net.run(5, &|_| false);
    check_pair(&net);
    let (ca, cb) = (child(&net.a_events), child(&net.b_events));
    assert!(ca.udp_encap && cb.udp_encap, "ESP in UDP across the NAT");
    assert_eq!((ca.local.port(), ca.remote.port()), (4500, 4500));
    assert_eq!((cb.local.port(), cb.remote.port()), (4500, 4500));
    assert_eq!(cb.remote.ip(), net.nat.unwrap(), "B sees A's public address");
}
