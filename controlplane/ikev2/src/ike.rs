//! The IKE SA state machine, sans-IO (ARCHITECTURE.md "IKEv2"): datagrams and time go in,
//! datagrams, timers and events come out. Nothing here opens a socket or reads a clock.
//!
//! This first part covers what brings a tunnel up: IKE_SA_INIT (with NAT detection, cookies and
//! INVALID_KE_PAYLOAD retry) and IKE_AUTH with a pre-shared key creating the first Child SA, in
//! both roles, with retransmission of requests (RFC 7296 2.1) and of the last response for a
//! retransmitted request (2.1), and traffic-selector narrowing (2.9).

use crate::crypto::{
    self, CipherSuite, CryptoProvider, DhGroup, DhPrivate, IkeSaKeys, PrfAlg, Secret, SkCipher, nat_detection_hash,
};
use crate::pki::{self, Cert, PrivateKey, TrustStore};
use crate::proposal::{self, Algorithms, Chosen, Kind};
use crate::wire::{
    self, AuthMethod, Authentication, CertEncoding, Certificate, Encrypted, ExchangeType, Header, Identification,
    KeyExchange, Message, Notify, NotifyType, Payload, ProtocolId, Spi, TrafficSelector,
};
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Nonce length we send: 32 bytes, at least half the key of every PRF we offer (RFC 7296 2.10).
const NONCE_LEN: usize = 32;
/// Retransmission: first after 1 s, doubling, five tries in all (RFC 7296 2.1 leaves the
/// policy to the implementation; strongSwan's default is 4 s x 1.8^n, 5 tries).
const RETRANSMIT_BASE: Duration = Duration::from_secs(1);
const RETRANSMIT_TRIES: u32 = 5;

/// How this end proves its identity (RFC 7296 2.15).
#[derive(Debug, Clone)]
pub enum LocalAuth {
    /// Shared Key Message Integrity Code (method 2).
    Psk(Secret),
    /// A signature with our key (RFC 7427, or RFC 4754 for ECDSA with peers without it). The
    /// certificate and the CA certificates between it and the peer's trust anchor go out in
    /// CERT payloads.
    Cert { cert: Arc<Cert>, chain: Vec<Arc<Cert>>, key: Arc<PrivateKey> },
}

/// How the peer must prove its identity.
#[derive(Debug, Clone)]
pub enum RemoteAuth {
    Psk(Secret),
    /// A signature by a certificate one of these CAs issued, which binds the peer's identity.
    Cert(Arc<TrustStore>),
}

/// A connection this end can initiate or accept: addresses, identities, authentication,
/// proposals and the first Child SA's traffic selectors.
#[derive(Debug, Clone)]
pub struct Connection {
    pub name: String,
    pub local_id: Identification,
    /// The identity the peer must prove, possibly a pattern (`*.example.com`, a DN with `*`
    /// values: [`pki::id_matches`]); `None` accepts any identity that authenticates.
    pub remote_id: Option<Identification>,
    pub local_auth: LocalAuth,
    pub remote_auth: RemoteAuth,
    pub ike: Vec<Algorithms>,
    pub esp: Vec<Algorithms>,
    /// The Child SAs of the connection (at least one): the first is made with IKE_AUTH, the
    /// others with CREATE_CHILD_SA right after (RFC 7296 1.3.1). As responder, a request
    /// gets the first whose selectors it fits (narrowed, 2.9).
    pub children: Vec<ChildConfig>,
    /// Liveness check after this long without a message from the peer (RFC 7296 2.4).
    pub dpd_delay: Option<Duration>,
    /// Rekey each Child SA this long after it was created (RFC 7296 2.8), make-before-break:
    /// the new pair first, then the old one is deleted.
    pub child_rekey: Option<Duration>,
    /// Rekey the IKE SA this long after it was established (RFC 7296 1.3.2, 2.18); its Child
    /// SAs move to the new IKE SA.
    pub ike_rekey: Option<Duration>,
    /// Each rekey comes a random amount of up to this much (and at most half the period)
    /// before `child_rekey` or `ike_rekey`, drawn for each SA: SAs made together, a whole
    /// concentrator's after a restart say, then do not all rekey at once, and two ends with
    /// the same lifetimes seldom start the same rekey together (RFC 7296 2.8: rekeys SHOULD
    /// be jittered). strongSwan calls it `rand_time`. None: a tenth of each period; zero:
    /// exactly on time.
    pub rekey_jitter: Option<Duration>,
    /// First retransmission after this long, doubling each time, this many sends in all.
    pub retransmit_base: Duration,
    pub retransmit_tries: u32,
    /// The peer's address, if the connection has one: as responder, only a peer speaking from
    /// it may use the connection. Identities alone would let any peer with a certificate of
    /// the same CA use another site's connection (and its traffic) when `remote_id` is unset.
    pub remote_addr: Option<IpAddr>,
}

/// One Child SA of a connection: its name and the traffic it protects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildConfig {
    pub name: String,
    pub local_ts: Vec<TrafficSelector>,
    pub remote_ts: Vec<TrafficSelector>,
}

impl Connection {
    /// The child configuration of that name (for a rekey), or the first.
    fn child_config(&self, name: &str) -> Option<&ChildConfig> {
        self.children.iter().find(|c| c.name == name).or(self.children.first())
    }

    /// Whether `id` is acceptable as the peer's identity.
    fn accepts_id(&self, id: &Identification) -> bool {
        self.remote_id.as_ref().is_none_or(|want| pki::id_matches(want, id))
    }

    fn accepts_addr(&self, addr: IpAddr) -> bool {
        self.remote_addr.is_none_or(|a| a == addr)
    }

    /// The IDr an initiator sends: the configured peer identity, unless it is a pattern.
    fn idr_to_send(&self) -> Option<&Identification> {
        self.remote_id.as_ref().filter(|r| !r.data.contains(&b'*') && r.data != b"%any")
    }

    /// The defaults for liveness and retransmission.
    pub const RETRANSMIT_BASE: Duration = RETRANSMIT_BASE;
    pub const RETRANSMIT_TRIES: u32 = RETRANSMIT_TRIES;
}

/// A Child SA pair as negotiated: what the dataplane needs to install it.
#[derive(Clone)]
pub struct ChildSa {
    pub connection: String,
    pub child: String,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// A NAT was detected (RFC 7296 2.23): ESP goes in UDP on port 4500 (RFC 3948).
    pub udp_encap: bool,
    pub spi_in: u32,
    pub spi_out: u32,
    /// AES-GCM-16 key length in bits.
    pub key_bits: u16,
    /// AES key followed by the 4-byte salt, for each direction.
    pub key_in: Secret,
    pub key_out: Secret,
    pub esn: bool,
    pub local_ts: Vec<TrafficSelector>,
    pub remote_ts: Vec<TrafficSelector>,
    /// The pair replaces one in a rekey the peer started: the peer installs its inbound half
    /// only when our answer reaches it, so packets we sent on it at once could arrive before
    /// and be lost. Install it, but send on it only from [`Event::ChildOutbound`], when the
    /// peer deletes the old pair (RFC 7296 2.8) or a few seconds have passed.
    pub outbound_later: bool,
}

impl std::fmt::Debug for ChildSa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildSa")
            .field("connection", &self.connection)
            .field("child", &self.child)
            .field("spi_in", &format_args!("{:#x}", self.spi_in))
            .field("spi_out", &format_args!("{:#x}", self.spi_out))
            .field("key_bits", &self.key_bits)
            .field("udp_encap", &self.udp_encap)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub enum Event {
    /// The IKE SA is authenticated (both ends).
    IkeUp {
        connection: String,
        local_spi: u64,
        remote_id: Identification,
    },
    ChildUp(ChildSa),
    /// Outbound traffic may move to this Child SA now, reported up earlier with
    /// `outbound_later` (see [`ChildSa::outbound_later`]); comes before the [`Event::ChildDown`]
    /// of the pair it replaces.
    ChildOutbound {
        connection: String,
        child: String,
        spi_in: u32,
        spi_out: u32,
        local_ts: Vec<TrafficSelector>,
        remote_ts: Vec<TrafficSelector>,
    },
    /// A Child SA is gone (deleted by either end, or with its IKE SA): remove it from the
    /// dataplane.
    ChildDown {
        connection: String,
        child: String,
        spi_in: u32,
        spi_out: u32,
    },
    /// The IKE SA was replaced by a new one (its Child SAs moved along).
    IkeRekeyed {
        connection: String,
        old_spi: u64,
        new_spi: u64,
    },
    /// The IKE SA was deleted by either end.
    IkeDown {
        connection: String,
        local_spi: u64,
    },
    /// The peer refused a Child SA we asked for (in IKE_AUTH, or a new one with
    /// CREATE_CHILD_SA); the IKE SA stays up. It is not asked for again on its own.
    ChildRefused {
        connection: String,
        child: String,
        reason: String,
    },
    /// The exchange failed or timed out; the IKE SA and its Child SAs are gone (a
    /// [`Event::ChildDown`] comes first for each Child SA).
    Failed {
        connection: String,
        reason: String,
    },
}

/// A datagram to send. `marker`: prepend the 4-byte non-ESP marker (port 4500, RFC 3948 2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Initiator: IKE_SA_INIT request sent.
    InitSent,
    /// Initiator: IKE_AUTH request sent.
    AuthSent,
    /// Responder: IKE_SA_INIT answered, waiting for IKE_AUTH.
    InitDone,
    Established,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Request {
    Init,
    Auth,
    /// An empty INFORMATIONAL: is the peer alive?
    Liveness,
    /// INFORMATIONAL with a Delete for the IKE SA.
    DeleteIke,
    /// CREATE_CHILD_SA rekeying a Child SA (state in `IkeSa::rekey`).
    RekeyChild,
    /// INFORMATIONAL deleting the Child SA a rekey replaced (our inbound SPI).
    DeleteChild(u32),
    /// CREATE_CHILD_SA rekeying the IKE SA (state in `IkeSa::ike_rekey`).
    RekeyIke,
}

/// Our IKE SA rekey in flight.
struct IkeRekeyState {
    new_spi: u64,
    ni: Vec<u8>,
    dh: DhPrivate,
}

/// A Child SA as its IKE SA keeps it.
struct Child {
    name: String,
    spi_in: u32,
    spi_out: u32,
    local_ts: Vec<TrafficSelector>,
    remote_ts: Vec<TrafficSelector>,
    created: Instant,
    /// A rekey of it has started (by either end): it is on its way out.
    rekeyed: bool,
    key_bits: u16,
    esn: bool,
    /// Rekey as soon as the IKE SA is free (a soft lifetime was reached in the dataplane).
    due: bool,
    /// The peer refused a rekey of it: try again then, whatever else says (see
    /// [`REKEY_RETRY`]).
    retry_at: Option<Instant>,
    /// How much before the connection's rekey time it is rekeyed ([`Connection::rekey_jitter`]).
    early: Duration,
    /// Made by a rekey the peer started, of the pair with this inbound SPI; outbound traffic
    /// stays on that one until it goes or [`OUTBOUND_HOLD`] has passed.
    holds_for: Option<u32>,
    /// Its next rekey is the one asked again at once after an INVALID_KE_PAYLOAD.
    ke_retry: bool,
    /// Replaced by the peer's rekey, or to be deleted: `rekeyed` for good.
    going: bool,
}

/// The longest a rekey's new pair waits for the peer to delete the old one before outbound
/// traffic moves to it anyway (the peer's Delete comes one round trip after our answer).
pub const OUTBOUND_HOLD: Duration = Duration::from_secs(5);

/// How long after a refused Child SA rekey (TEMPORARY_FAILURE, say) it is tried again: well
/// inside the SA's hard lifetime, which follows its rekey time closely, and not so often that
/// a peer that keeps refusing gets a request storm.
const REKEY_RETRY: Duration = Duration::from_secs(10);

impl Child {
    /// When this Child SA is next to be rekeyed: `every` after it was made, at once when its
    /// soft lifetime was reported (`idle_since`: when its IKE SA became free), or when a
    /// refused rekey is retried. None if nothing asks for it.
    fn rekey_at(&self, every: Option<Duration>, idle_since: Instant) -> Option<Instant> {
        if self.rekeyed {
            return None;
        }
        match self.retry_at {
            Some(t) => Some(t),
            None if self.due => Some(idle_since),
            None => every.map(|e| self.created + e.saturating_sub(self.early)),
        }
    }
}

/// An IKE SA as operators see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IkeSaInfo {
    pub connection: String,
    pub local_spi: u64,
    pub remote_spi: u64,
    pub initiator: bool,
    pub established: bool,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub nat: bool,
    /// The peer's authenticated identity, as text (a DN as `C=.., O=.., CN=..`).
    pub remote_id: Option<String>,
    /// The negotiated suite in strongSwan's notation, e.g. `aes256gcm16-prfsha256-x25519`.
    pub algorithms: String,
    pub age: Duration,
    pub children: Vec<ChildInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildInfo {
    pub name: String,
    pub spi_in: u32,
    pub spi_out: u32,
    pub algorithms: String,
    pub age: Duration,
    pub local_ts: Vec<TrafficSelector>,
    pub remote_ts: Vec<TrafficSelector>,
}

/// strongSwan's names for what was negotiated.
fn describe(c: &Chosen) -> String {
    use crate::wire::{dh as g, encr as e, integ as i, prf as f};
    let mut parts = vec![match c.encr {
        e::AES_GCM_16 => format!("aes{}gcm16", c.key_bits),
        e::AES_CBC => format!("aes{}", c.key_bits),
        x => format!("encr{x}"),
    }];
    match c.integ {
        Some(i::HMAC_SHA2_256_128) => parts.push("sha256".into()),
        Some(x) => parts.push(format!("integ{x}")),
        None => {}
    }
    match c.prf {
        Some(f::HMAC_SHA2_256) => parts.push("prfsha256".into()),
        Some(f::HMAC_SHA2_384) => parts.push("prfsha384".into()),
        Some(f::HMAC_SHA2_512) => parts.push("prfsha512".into()),
        Some(x) => parts.push(format!("prf{x}")),
        None => {}
    }
    match c.dh {
        Some(g::CURVE25519) => parts.push("x25519".into()),
        Some(g::ECP_256) => parts.push("ecp256".into()),
        Some(g::ECP_384) => parts.push("ecp384".into()),
        Some(g::MODP_2048) => parts.push("modp2048".into()),
        Some(x) => parts.push(format!("dh{x}")),
        None => {}
    }
    if c.esn == Some(true) {
        parts.push("esn".into());
    }
    parts.join("-")
}

/// Our CREATE_CHILD_SA request for a Child SA in flight: a rekey of the one with inbound SPI
/// `old_spi_in`, or a new one.
struct RekeyState {
    old_spi_in: Option<u32>,
    child: String,
    new_spi_in: u32,
    ni: Vec<u8>,
    dh: Option<DhPrivate>,
    /// This request is the one asked again at once after an INVALID_KE_PAYLOAD.
    ke_retry: bool,
}

struct Pending {
    /// The request as sent, for retransmission.
    data: Vec<u8>,
    next: Instant,
    tries: u32,
    kind: Request,
}

struct IkeSa {
    conn: usize,
    initiator: bool,
    state: State,
    spi_i: u64,
    spi_r: u64,
    local: SocketAddr,
    remote: SocketAddr,
    nat: bool,
    ni: Vec<u8>,
    nr: Vec<u8>,
    dh: Option<DhPrivate>,
    chosen: Option<Chosen>,
    keys: Option<IkeSaKeys>,
    /// Our IKE_SA_INIT message (request or response), signed in our AUTH (RFC 7296 2.15).
    my_init: Vec<u8>,
    /// The peer's IKE_SA_INIT message, signed in the peer's AUTH.
    peer_init: Vec<u8>,
    cookie: Option<Vec<u8>>,
    /// IKE_SA_INIT requests sent again on a COOKIE or INVALID_KE_PAYLOAD answer.
    init_rounds: u8,
    /// Message ID of our next request (RFC 7296 2.2).
    my_next_id: u32,
    /// Message ID the peer's next request must carry.
    peer_next_id: u32,
    /// The peer's last request's message id and our response to it, for retransmissions.
    last_response: Option<(u32, Vec<u8>)>,
    pending: Option<Pending>,
    /// Initiator: the SPI of the Child SA we proposed in IKE_AUTH.
    child_spi: u32,
    children: Vec<Child>,
    rekey: Option<RekeyState>,
    ike_rekey: Option<IkeRekeyState>,
    /// When the IKE SA was established; `ike_rekeyed` once a rekey of it has started.
    established: Instant,
    /// How much before the connection's rekey time it is rekeyed ([`Connection::rekey_jitter`]).
    rekey_early: Duration,
    ike_rekeyed: bool,
    /// After a rekey: our SPI of the IKE SA that replaced this one. Exchanges still in flight
    /// on this one put the Child SAs they create or delete there.
    successor: Option<u64>,
    /// Child SAs (our inbound SPI) to delete with the peer when no request is outstanding:
    /// deletes an IKE SA rekey overtook.
    deferred_deletes: Vec<u32>,
    /// When we last heard from the peer, for liveness checks (RFC 7296 2.4).
    last_seen: Instant,
    /// The hash algorithms the peer's SIGNATURE_HASH_ALGORITHMS listed (RFC 7427 section 4).
    peer_hashes: Option<Vec<u16>>,
    /// The peer's identity, once authenticated.
    peer_id: Option<Identification>,
    /// A rekey of the peer's that crossed our rekey of the same Child SA (RFC 7296 2.8.1): the
    /// old Child SA's and the new one's inbound SPI, and the lower nonce of the peer's exchange.
    crossed_child_rekey: Option<(u32, u32, Vec<u8>)>,
    /// An IKE SA rekey of the peer's that crossed ours (RFC 7296 2.8.2): the IKE SA it made
    /// (our SPI) and the lower nonce of the peer's exchange.
    crossed_ike_rekey: Option<(u64, Vec<u8>)>,
    /// Child SAs (by configuration name) to create with CREATE_CHILD_SA when no request is
    /// outstanding.
    wanted_children: Vec<String>,
    /// The DH group the peer asked for in an INVALID_KE_PAYLOAD answer to one of our
    /// CREATE_CHILD_SA requests (RFC 7296 1.3): the Child SAs we ask for use it, if we offer it.
    child_group: Option<u16>,
    /// The wanted Child SA (first in `wanted_children`) asked for again at once after an
    /// INVALID_KE_PAYLOAD.
    ke_retry_child: Option<String>,
}

impl Child {
    /// Whether this is Child SA `child` with this inbound (`inbound`) or outbound SPI.
    fn is(&self, child: &str, spi: u32, inbound: bool) -> bool {
        self.name == child && if inbound { self.spi_in == spi } else { self.spi_out == spi }
    }

    fn of(c: &ChildSa, now: Instant, early: Duration) -> Self {
        Child {
            name: c.child.clone(),
            spi_in: c.spi_in,
            spi_out: c.spi_out,
            local_ts: c.local_ts.clone(),
            remote_ts: c.remote_ts.clone(),
            created: now,
            rekeyed: false,
            key_bits: c.key_bits,
            esn: c.esn,
            due: false,
            retry_at: None,
            holds_for: None,
            early,
            ke_retry: false,
            going: false,
        }
    }
}

impl IkeSa {
    fn local_spi(&self) -> u64 {
        if self.initiator { self.spi_i } else { self.spi_r }
    }
}

/// All IKE SAs of one daemon, keyed by our SPI.
pub struct Endpoint {
    connections: Vec<Connection>,
    sas: HashMap<u64, IkeSa>,
    /// Responder: (peer SPI, peer address) to our SPI, to recognise a retransmitted
    /// IKE_SA_INIT request.
    half_open: HashMap<(u64, SocketAddr), u64>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    provider: Box<dyn CryptoProvider + Send>,
    /// Half-open IKE SAs beyond which an IKE_SA_INIT request must carry a cookie (RFC 7296 2.6).
    cookie_threshold: usize,
    /// The secret cookies are made with, since when, and the one before it (RFC 7296 2.6:
    /// changed often; cookies of the previous one still accepted for a while).
    cookie_secret: crypto::CookieSecret,
    cookie_secret_since: Option<Instant>,
    previous_cookie_secret: Option<crypto::CookieSecret>,
    /// An instant and the Unix time (seconds) it was, to check certificate validity.
    wall_clock: Option<(Instant, i64)>,
}

/// The first payload of each kind a message carries (RFC 7296: at most one of these each).
trait Find {
    fn sa(&self) -> Option<&Vec<crate::wire::Proposal>>;
    fn ke(&self) -> Option<&KeyExchange>;
    fn nonce(&self) -> Option<&Vec<u8>>;
    fn tsi(&self) -> Option<&Vec<TrafficSelector>>;
    fn tsr(&self) -> Option<&Vec<TrafficSelector>>;
    fn idi(&self) -> Option<&Identification>;
    fn idr(&self) -> Option<&Identification>;
    fn auth(&self) -> Option<&Authentication>;
}

macro_rules! find {
    ($self:ident, $variant:ident) => {
        $self.iter().find_map(|p| if let Payload::$variant(x) = p { Some(x) } else { None })
    };
}

impl Find for [Payload] {
    fn sa(&self) -> Option<&Vec<crate::wire::Proposal>> {
        find!(self, Sa)
    }
    fn ke(&self) -> Option<&KeyExchange> {
        find!(self, Ke)
    }
    fn nonce(&self) -> Option<&Vec<u8>> {
        find!(self, Nonce)
    }
    fn tsi(&self) -> Option<&Vec<TrafficSelector>> {
        find!(self, TsI)
    }
    fn tsr(&self) -> Option<&Vec<TrafficSelector>> {
        find!(self, TsR)
    }
    fn idi(&self) -> Option<&Identification> {
        find!(self, IdI)
    }
    fn idr(&self) -> Option<&Identification> {
        find!(self, IdR)
    }
    fn auth(&self) -> Option<&Authentication> {
        find!(self, Auth)
    }
}

fn id_body(id: &Identification) -> Vec<u8> {
    // RestOfIDPayload (RFC 7296 2.15): ID Type, three reserved octets, the identification data.
    let mut b = vec![id.id_type.0, 0, 0, 0];
    b.extend_from_slice(&id.data);
    b
}

/// The payloads answering a Child SA request, and the new Child SA (with the lower nonce of
/// the exchange) if it was accepted.
type ChildAnswer = (Vec<Payload>, Option<(ChildSa, Vec<u8>)>);

/// The lower of an exchange's two nonces, for settling rekey collisions (RFC 7296 2.8.1):
/// nonces compare as octet strings.
fn lower_nonce<'a>(a: &'a [u8], b: &'a [u8]) -> &'a [u8] {
    a.min(b)
}

/// The peer's SIGNATURE_HASH_ALGORITHMS, if it sent one (RFC 7427 section 4).
fn peer_hashes(p: &[Payload]) -> Option<Vec<u16>> {
    find_notify(p, NotifyType::SIGNATURE_HASH_ALGORITHMS).map(|n| pki::parse_hash_algorithms(&n.data))
}

fn notify(t: NotifyType, data: Vec<u8>) -> Payload {
    Payload::Notify(Notify { protocol: ProtocolId::NONE, spi: Vec::new(), notify_type: t, data })
}

fn find_notify(p: &[Payload], t: NotifyType) -> Option<&Notify> {
    p.iter().find_map(|x| match x {
        Payload::Notify(n) if n.notify_type == t => Some(n),
        _ => None,
    })
}

fn suite_of(c: &Chosen) -> Result<CipherSuite, crypto::CryptoError> {
    CipherSuite::from_ids(c.encr, c.key_bits, c.integ)
}

/// The part of `theirs` that lies inside `ours` (RFC 7296 2.9 narrowing), range by range.
pub fn narrow(theirs: &[TrafficSelector], ours: &[TrafficSelector]) -> Vec<TrafficSelector> {
    let mut out = Vec::new();
    for t in theirs {
        for o in ours {
            let (Some((tp, tsp, tep, ts, te)), Some((op, osp, oep, os, oe))) = (t.range(), o.range()) else { continue };
            if ts.is_ipv4() != os.is_ipv4() {
                continue;
            }
            let proto = match (tp, op) {
                (0, p) | (p, 0) => p,
                (a, b) if a == b => a,
                _ => continue,
            };
            let (sp, ep) = (tsp.max(osp), tep.min(oep));
            let (s, e) = (ts.max(os), te.min(oe));
            if sp > ep || s > e {
                continue;
            }
            let sel = match (s, e) {
                (IpAddr::V4(s), IpAddr::V4(e)) => TrafficSelector::ipv4(s, e),
                (IpAddr::V6(s), IpAddr::V6(e)) => TrafficSelector::ipv6(s, e),
                _ => continue,
            };
            let sel = match sel {
                TrafficSelector::Ipv4(mut r) => {
                    (r.ip_protocol, r.start_port, r.end_port) = (proto, sp, ep);
                    TrafficSelector::Ipv4(r)
                }
                TrafficSelector::Ipv6(mut r) => {
                    (r.ip_protocol, r.start_port, r.end_port) = (proto, sp, ep);
                    TrafficSelector::Ipv6(r)
                }
                other => other,
            };
            if !out.contains(&sel) {
                out.push(sel);
                // A TS payload holds at most 255 selectors (RFC 7296 3.13, one octet); a subset
                // of the intersection is still a narrowing.
                if out.len() == MAX_SELECTORS {
                    return out;
                }
            }
        }
    }
    out
}

/// Whether a peer's nonce has a length RFC 7296 allows: at least 128 bits (2.10), at most 256
/// octets (3.9). Requests with others are refused; answers with others end the exchange.
fn nonce_ok(n: &[u8]) -> bool {
    (16..=256).contains(&n.len())
}

const NONCE_ERROR: &str = "no nonce, or one shorter than 16 or longer than 256 octets (RFC 7296 2.10, 3.9)";

/// How many times an initiator sends IKE_SA_INIT again for a responder that asks for a cookie
/// or another DH group (RFC 7296 2.6, 1.2): a responder that keeps asking is broken or hostile.
const INIT_ROUNDS: u8 = 4;

/// Error notifies in an IKE_AUTH response that refuse only its Child SA: the IKE SA is set
/// up all the same (RFC 7296 1.2).
const CHILD_ONLY_ERRORS: [NotifyType; 5] = [
    NotifyType::NO_PROPOSAL_CHOSEN,
    NotifyType::TS_UNACCEPTABLE,
    NotifyType::SINGLE_PAIR_REQUIRED,
    NotifyType::INTERNAL_ADDRESS_FAILURE,
    NotifyType::FAILED_CP_REQUIRED,
];

/// The most traffic selectors one TS payload can carry (RFC 7296 3.13).
const MAX_SELECTORS: usize = 255;

impl Endpoint {
    pub fn new(connections: Vec<Connection>, mut provider: Box<dyn CryptoProvider + Send>) -> Self {
        let cookie_secret = crypto::CookieSecret::generate(1, provider.rng());
        Endpoint {
            connections,
            sas: HashMap::new(),
            half_open: HashMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            provider,
            cookie_threshold: Self::COOKIE_THRESHOLD,
            cookie_secret,
            cookie_secret_since: None,
            previous_cookie_secret: None,
            wall_clock: None,
        }
    }

    /// A new cookie secret once the current one has made cookies for
    /// [`Self::COOKIE_SECRET_LIFETIME`]; the current one is kept to verify the cookies it made.
    /// Changing it bounds how long a leaked secret, or cookies an attacker gathered, are of
    /// use (RFC 7296 2.6: "change the value of <secret> frequently").
    fn rotate_cookie_secret(&mut self, now: Instant) {
        let age = now.saturating_duration_since(*self.cookie_secret_since.get_or_insert(now));
        if age < Self::COOKIE_SECRET_LIFETIME {
            return;
        }
        let next = crypto::CookieSecret::generate(self.cookie_secret.version().wrapping_add(1), self.provider.rng());
        let current = std::mem::replace(&mut self.cookie_secret, next);
        // Only if it made cookies until a moment ago.
        self.previous_cookie_secret = (age < 2 * Self::COOKIE_SECRET_LIFETIME).then_some(current);
        self.cookie_secret_since = Some(now);
    }

    /// Tells the endpoint that `at` was `unix_secs` on the wall clock: certificates are checked
    /// against the time derived from it (without it, no certificate is accepted).
    pub fn set_wall_clock(&mut self, at: Instant, unix_secs: i64) {
        self.wall_clock = Some((at, unix_secs));
    }

    fn unix_time(&self, now: Instant) -> Option<i64> {
        let (at, unix) = self.wall_clock?;
        let delta =
            now.saturating_duration_since(at).as_secs() as i64 - at.saturating_duration_since(now).as_secs() as i64;
        Some(unix + delta)
    }

    /// Half-open IKE SAs before cookies are demanded, by default.
    pub const COOKIE_THRESHOLD: usize = 64;

    /// How long one cookie secret makes cookies (those it made stay valid as long again).
    pub const COOKIE_SECRET_LIFETIME: Duration = Duration::from_secs(60);

    /// Demand cookies once this many IKE SAs are half open (0: always).
    pub fn set_cookie_threshold(&mut self, n: usize) {
        self.cookie_threshold = n;
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When `handle_timeout` should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let retransmit = self.sas.values().filter_map(|s| s.pending.as_ref().map(|p| p.next)).min();
        let half_open = self.sas.values().filter_map(Self::half_open_until).min();
        let held = self
            .sas
            .values()
            .flat_map(|s| &s.children)
            .filter(|c| c.holds_for.is_some())
            .map(|c| c.created + OUTBOUND_HOLD)
            .min();
        [retransmit, self.next_dpd(), half_open, held].into_iter().flatten().min()
    }

    /// How long a half-open IKE SA (ours as responder, IKE_SA_INIT answered, no IKE_AUTH yet)
    /// is kept: an initiator sends IKE_AUTH right after our response, and retransmits it for
    /// less than this.
    pub const HALF_OPEN_LIFETIME: Duration = Duration::from_secs(30);

    /// Until when `sa` may stay half-open; None if it is not half-open.
    fn half_open_until(sa: &IkeSa) -> Option<Instant> {
        (sa.state == State::InitDone && !sa.initiator).then(|| sa.established + Self::HALF_OPEN_LIFETIME)
    }

    /// Starts the named connection as initiator.
    pub fn initiate(
        &mut self,
        now: Instant,
        connection: &str,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Result<u64, String> {
        let conn = self.connections.iter().position(|c| c.name == connection).ok_or("no such connection")?;
        let spi_i = u64::from_be_bytes(self.provider.spi());
        let ni = self.provider.nonce(NONCE_LEN);
        let group = self.connections[conn].ike.iter().flat_map(|a| a.dh.iter()).next().copied().ok_or("no DH group")?;
        let dh =
            self.provider.dh_private(DhGroup::from_id(group).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
        let mut sa = IkeSa {
            conn,
            initiator: true,
            state: State::InitSent,
            spi_i,
            spi_r: 0,
            local,
            remote,
            nat: false,
            ni,
            nr: Vec::new(),
            dh: Some(dh),
            chosen: None,
            keys: None,
            my_init: Vec::new(),
            peer_init: Vec::new(),
            cookie: None,
            init_rounds: 0,
            my_next_id: 0,
            peer_next_id: 0,
            last_response: None,
            pending: None,
            child_spi: 0,
            children: Vec::new(),
            rekey: None,
            ike_rekey: None,
            established: now,
            rekey_early: self.rekey_early(conn, |c| c.ike_rekey),
            ike_rekeyed: false,
            successor: None,
            deferred_deletes: Vec::new(),
            last_seen: now,
            peer_hashes: None,
            peer_id: None,
            crossed_child_rekey: None,
            crossed_ike_rekey: None,
            wanted_children: Vec::new(),
            child_group: None,
            ke_retry_child: None,
        };
        self.send_init_request(now, &mut sa);
        self.sas.insert(spi_i, sa);
        Ok(spi_i)
    }

    fn nat_notifies(spi_i: u64, spi_r: u64, local: SocketAddr, remote: SocketAddr) -> [Payload; 2] {
        let (i, r) = (spi_i.to_be_bytes(), spi_r.to_be_bytes());
        [
            notify(NotifyType::NAT_DETECTION_SOURCE_IP, nat_detection_hash(&i, &r, local.ip(), local.port()).to_vec()),
            notify(
                NotifyType::NAT_DETECTION_DESTINATION_IP,
                nat_detection_hash(&i, &r, remote.ip(), remote.port()).to_vec(),
            ),
        ]
    }

    /// RFC 7296 2.23: a NAT is between us if the peer's hashes do not match what it saw.
    fn nat_detected(payloads: &[Payload], spi_i: u64, spi_r: u64, local: SocketAddr, remote: SocketAddr) -> bool {
        let (i, r) = (spi_i.to_be_bytes(), spi_r.to_be_bytes());
        let src_ok = payloads.iter().any(|p| {
            matches!(p, Payload::Notify(n) if n.notify_type == NotifyType::NAT_DETECTION_SOURCE_IP
            && n.data == nat_detection_hash(&i, &r, remote.ip(), remote.port()))
        });
        let dst_ok = find_notify(payloads, NotifyType::NAT_DETECTION_DESTINATION_IP)
            .is_some_and(|n| n.data == nat_detection_hash(&i, &r, local.ip(), local.port()));
        let has = find_notify(payloads, NotifyType::NAT_DETECTION_SOURCE_IP).is_some();
        has && !(src_ok && dst_ok)
    }

    fn send_init_request(&mut self, now: Instant, sa: &mut IkeSa) {
        let conn = &self.connections[sa.conn];
        // The initiator holds its DH key until the IKE_SA_INIT response is processed.
        let Some(dh) = sa.dh.as_ref() else { return };
        let mut payloads = Vec::new();
        if let Some(c) = &sa.cookie {
            // RFC 7296 2.6: the COOKIE notification comes first.
            payloads.push(notify(NotifyType::COOKIE, c.clone()));
        }
        let proposals = conn
            .ike
            .iter()
            .enumerate()
            .map(|(i, a)| a.to_wire(i as u8 + 1, ProtocolId::IKE, Spi::Empty, true))
            .collect();
        payloads.push(Payload::Sa(proposals));
        payloads.push(Payload::Ke(KeyExchange { group: dh.group().id(), data: dh.public().to_vec() }));
        payloads.push(Payload::Nonce(sa.ni.clone()));
        payloads.extend(Self::nat_notifies(sa.spi_i, 0, sa.local, sa.remote));
        // RFC 7427 section 4: we verify and make Digital Signature AUTH with these hashes.
        payloads.push(notify(NotifyType::SIGNATURE_HASH_ALGORITHMS, pki::hash_algorithms_data()));
        let msg = Message {
            header: Header {
                spi_i: sa.spi_i,
                spi_r: 0,
                next_payload: 0,
                exchange: ExchangeType::IKE_SA_INIT,
                initiator: true,
                response: false,
                message_id: 0,
                length: 0,
            },
            payloads,
        };
        let data = msg.emit();
        sa.my_init = data.clone();
        sa.my_next_id = 1;
        self.send_request(now, sa, data, Request::Init);
    }

    fn send_request(&mut self, now: Instant, sa: &mut IkeSa, data: Vec<u8>, kind: Request) {
        self.transmits.push_back(Transmit { local: sa.local, remote: sa.remote, data: data.clone() });
        let base = self.connections[sa.conn].retransmit_base;
        sa.pending = Some(Pending { data, next: now + base, tries: 1, kind });
    }

    /// Removes an IKE SA, reporting its Child SAs as down first.
    fn remove(&mut self, spi: u64) -> Option<IkeSa> {
        let sa = self.sas.remove(&spi)?;
        // A Child SA delete still in flight on a rekeyed IKE SA is done again on its successor.
        if let (Some(Pending { kind: Request::DeleteChild(x), .. }), Some(next)) = (&sa.pending, sa.successor)
            && let Some(n) = self.sas.get_mut(&next)
        {
            n.deferred_deletes.push(*x);
        }
        // So is a Child SA request still in flight: a new Child SA is asked for again, a
        // rekey's Child SA is due again (the peer dropped the request with the IKE SA).
        if let (Some(Pending { kind: Request::RekeyChild, .. }), Some(rk), Some(next)) =
            (&sa.pending, &sa.rekey, sa.successor)
            && let Some(n) = self.sas.get_mut(&next)
        {
            match rk.old_spi_in {
                None if !n.wanted_children.contains(&rk.child) => n.wanted_children.push(rk.child.clone()),
                None => {}
                Some(old) => {
                    // Unless it is going anyway (the peer's own rekey replaced it, say).
                    if let Some(c) = n.children.iter_mut().find(|c| c.spi_in == old && !c.going) {
                        c.rekeyed = false;
                    }
                }
            }
        }
        self.half_open.retain(|_, v| *v != spi);
        let connection = self.connections[sa.conn].name.clone();
        for c in &sa.children {
            self.events.push_back(Event::ChildDown {
                connection: connection.clone(),
                child: c.name.clone(),
                spi_in: c.spi_in,
                spi_out: c.spi_out,
            });
        }
        Some(sa)
    }

    fn fail(&mut self, spi: u64, reason: impl Into<String>) {
        if let Some(sa) = self.remove(spi) {
            self.events
                .push_back(Event::Failed { connection: self.connections[sa.conn].name.clone(), reason: reason.into() });
        }
    }

    /// Sends an INFORMATIONAL request with `inner` (RFC 7296 1.4, 1.5, 2.4).
    fn informational(&mut self, now: Instant, sa: &mut IkeSa, inner: &[Payload], kind: Request) -> Result<(), String> {
        self.new_request(now, sa, ExchangeType::INFORMATIONAL, inner, kind)
    }

    /// Seals `inner` in a request of `exchange` with our next message ID (RFC 7296 2.2) and
    /// sends it, to be retransmitted until answered.
    fn new_request(
        &mut self,
        now: Instant,
        sa: &mut IkeSa,
        exchange: ExchangeType,
        inner: &[Payload],
        kind: Request,
    ) -> Result<(), String> {
        let header = Header {
            spi_i: sa.spi_i,
            spi_r: sa.spi_r,
            next_payload: 0,
            exchange,
            initiator: sa.initiator,
            response: false,
            message_id: sa.my_next_id,
            length: 0,
        };
        let data = self.seal(sa, header, inner)?;
        sa.my_next_id += 1;
        self.send_request(now, sa, data, kind);
        Ok(())
    }

    /// Deletes an IKE SA (and so its Child SAs) with the peer (RFC 7296 1.4.1). The SA goes
    /// when the peer answers, or when it does not.
    pub fn delete(&mut self, now: Instant, local_spi: u64) -> Result<(), String> {
        let mut sa = self.sas.remove(&local_spi).ok_or("no such IKE SA")?;
        let established = sa.state == State::Established;
        let r = if established {
            let del = Payload::Delete(wire::Delete { protocol: ProtocolId::IKE, spis: vec![] });
            self.informational(now, &mut sa, &[del], Request::DeleteIke)
        } else {
            Ok(())
        };
        self.sas.insert(local_spi, sa);
        if !established || r.is_err() {
            self.fail(local_spi, "deleted");
        }
        Ok(())
    }

    /// Our IKE SAs: (connection, our SPI, established).
    pub fn ike_sas(&self) -> Vec<(String, u64, bool)> {
        self.sas
            .values()
            .map(|s| (self.connections[s.conn].name.clone(), s.local_spi(), s.state == State::Established))
            .collect()
    }

    /// Every IKE SA with its Child SAs, for operators. `now` gives the ages.
    pub fn list(&self, now: Instant) -> Vec<IkeSaInfo> {
        let mut out: Vec<IkeSaInfo> = self
            .sas
            .values()
            .map(|s| IkeSaInfo {
                connection: self.connections[s.conn].name.clone(),
                local_spi: s.local_spi(),
                remote_spi: if s.initiator { s.spi_r } else { s.spi_i },
                initiator: s.initiator,
                established: s.state == State::Established,
                local: s.local,
                remote: s.remote,
                nat: s.nat,
                remote_id: s.peer_id.as_ref().map(pki::id_text),
                algorithms: s.chosen.as_ref().map(describe).unwrap_or_default(),
                age: now.saturating_duration_since(s.established),
                children: s
                    .children
                    .iter()
                    .map(|c| ChildInfo {
                        name: c.name.clone(),
                        spi_in: c.spi_in,
                        spi_out: c.spi_out,
                        algorithms: format!("aes{}gcm16{}", c.key_bits, if c.esn { "-esn" } else { "" }),
                        age: now.saturating_duration_since(c.created),
                        local_ts: c.local_ts.clone(),
                        remote_ts: c.remote_ts.clone(),
                    })
                    .collect(),
            })
            .collect();
        out.sort_by(|a, b| (&a.connection, a.local_spi).cmp(&(&b.connection, b.local_spi)));
        out
    }

    /// Asks for the connection's Child SA `child` on the established IKE SA `local_spi`, made
    /// with CREATE_CHILD_SA as soon as no other request is outstanding (RFC 7296 1.3.1): say
    /// for traffic of that child (an acquire) while the IKE SA is up.
    pub fn create_child(&mut self, local_spi: u64, child: &str) -> Result<(), String> {
        let sa = self.sas.get_mut(&local_spi).ok_or("no such IKE SA")?;
        let conn = &self.connections[sa.conn];
        if !conn.children.iter().any(|c| c.name == child) {
            return Err(format!("connection {} has no child SA {child}", conn.name));
        }
        if sa.state != State::Established || sa.successor.is_some() {
            return Err("the IKE SA is not established".into());
        }
        if !sa.wanted_children.iter().any(|c| c == child) {
            sa.wanted_children.push(child.to_string());
        }
        Ok(())
    }

    /// The Child SA `child` of connection `connection` whose inbound (`inbound`) or outbound
    /// SA has this SPI. All of it matters: our inbound SPIs are unique, but peers pick the SPIs
    /// of our outbound SAs, and two of them may pick the same one.
    fn child_named(&mut self, connection: &str, child: &str, spi: u32, inbound: bool) -> Option<&mut Child> {
        let conns = &self.connections;
        self.sas
            .values_mut()
            .filter(|s| conns[s.conn].name == connection)
            .find_map(|s| s.children.iter_mut().find(|c| c.is(child, spi, inbound)))
    }

    /// Deletes a Child SA (see [`Self::child_named`]) with the peer as soon as its IKE SA is
    /// free (RFC 7296 1.4.1): its hard lifetime ran out in the dataplane. False if no such
    /// Child SA.
    pub fn delete_child(&mut self, connection: &str, child: &str, spi: u32, inbound: bool) -> bool {
        for sa in self.sas.values_mut() {
            if self.connections[sa.conn].name != connection {
                continue;
            }
            if let Some(c) = sa.children.iter_mut().find(|c| c.is(child, spi, inbound)) {
                // Not to be rekeyed any more: it is going.
                (c.rekeyed, c.going) = (true, true);
                if !sa.deferred_deletes.contains(&c.spi_in) {
                    sa.deferred_deletes.push(c.spi_in);
                }
                return true;
            }
        }
        false
    }

    /// Asks for a Child SA (see [`Self::child_named`]) to be rekeyed as soon as its IKE SA is
    /// free: the dataplane reported a soft limit. False if no such Child SA.
    pub fn rekey_soon(&mut self, connection: &str, child: &str, spi: u32, inbound: bool) -> bool {
        match self.child_named(connection, child, spi, inbound) {
            Some(c) => {
                c.due = true;
                true
            }
            None => false,
        }
    }

    /// Whether a connection has an IKE SA (established or being set up).
    pub fn has_ike_sa(&self, connection: &str) -> bool {
        self.sas.values().any(|s| self.connections[s.conn].name == connection)
    }

    /// Deletes every IKE SA of a connection with its peer.
    pub fn terminate(&mut self, now: Instant, connection: &str) -> usize {
        let spis: Vec<u64> =
            self.sas.iter().filter(|(_, s)| self.connections[s.conn].name == connection).map(|(k, _)| *k).collect();
        for &spi in &spis {
            let _ = self.delete(now, spi);
        }
        spis.len()
    }

    /// Retransmits requests whose answer is late (RFC 7296 2.1), gives up after the last try,
    /// and checks on peers that have been silent for the liveness delay (2.4).
    pub fn handle_timeout(&mut self, now: Instant) {
        // New pairs of the peer's rekeys whose old pair was not deleted in time: outbound
        // traffic moves to them all the same.
        for sa in self.sas.values_mut() {
            let connection = &self.connections[sa.conn].name;
            for c in sa.children.iter_mut().filter(|c| c.holds_for.is_some() && c.created + OUTBOUND_HOLD <= now) {
                c.holds_for = None;
                self.events.push_back(Self::outbound_event(connection, c));
            }
        }
        // Half-open IKE SAs (RFC 7296 2.6) that got no IKE_AUTH in time: their state, kept for
        // whoever sent an IKE_SA_INIT, is dropped without a word, so that it cannot pile up.
        let stale: Vec<u64> = self
            .sas
            .iter()
            .filter(|(_, s)| Self::half_open_until(s).is_some_and(|t| t <= now))
            .map(|(k, _)| *k)
            .collect();
        for spi in stale {
            self.remove(spi);
        }
        let due: Vec<u64> = self
            .sas
            .iter()
            .filter(|(_, s)| s.pending.as_ref().is_some_and(|p| p.next <= now))
            .map(|(k, _)| *k)
            .collect();
        for spi in due {
            let Some(sa) = self.sas.get_mut(&spi) else { continue };
            let conn = &self.connections[sa.conn];
            let Some(p) = sa.pending.as_mut() else { continue };
            if p.tries >= conn.retransmit_tries {
                let what = if p.kind == Request::Liveness {
                    "peer is dead (no answer to liveness checks)"
                } else {
                    "no answer from the peer (retransmissions exhausted)"
                };
                self.fail(spi, what);
                continue;
            }
            p.tries += 1;
            p.next = now + conn.retransmit_base * 2u32.pow(p.tries - 1);
            self.transmits.push_back(Transmit { local: sa.local, remote: sa.remote, data: p.data.clone() });
        }
        // Requests an idle IKE SA may owe: a liveness check, a delete, a wanted Child SA, its
        // own rekey, a Child SA rekey, in that order, one at a time (a window of one, 2.3).
        self.on_idle(
            now,
            |s, c| c.dpd_delay.is_some_and(|d| now.saturating_duration_since(s.last_seen) >= d),
            |ep, now, sa| ep.informational(now, sa, &[], Request::Liveness),
        );
        self.on_idle(
            now,
            |s, _| !s.deferred_deletes.is_empty(),
            |ep, now, sa| {
                let x = sa.deferred_deletes.remove(0);
                let del = Payload::Delete(wire::Delete { protocol: ProtocolId::ESP, spis: vec![x] });
                ep.informational(now, sa, &[del], Request::DeleteChild(x))
            },
        );
        self.on_idle(
            now,
            |s, _| !s.wanted_children.is_empty(),
            |ep, now, sa| {
                let name = sa.wanted_children.remove(0);
                ep.new_child(now, sa, &name)
            },
        );
        self.on_idle(
            now,
            |s, c| {
                !s.ike_rekeyed
                    && c.ike_rekey.is_some_and(|d| {
                        now.saturating_duration_since(s.established) >= d.saturating_sub(s.rekey_early)
                    })
            },
            |ep, now, sa| ep.rekey_ike(now, sa),
        );
        let child_due = |s: &IkeSa, c: &Connection| {
            s.children.iter().position(|x| x.rekey_at(c.child_rekey, now).is_some_and(|t| t <= now))
        };
        self.on_idle(
            now,
            |s, c| child_due(s, c).is_some(),
            |ep, now, sa| match child_due(sa, &ep.connections[sa.conn]) {
                Some(idx) => ep.rekey_child(now, sa, idx),
                None => Ok(()),
            },
        );
    }

    /// Runs `act` on each established IKE SA with no request outstanding for which `due`
    /// holds; an error fails the IKE SA.
    fn on_idle(
        &mut self,
        now: Instant,
        due: impl Fn(&IkeSa, &Connection) -> bool,
        mut act: impl FnMut(&mut Self, Instant, &mut IkeSa) -> Result<(), String>,
    ) {
        let spis: Vec<u64> = self
            .sas
            .iter()
            .filter(|(_, s)| s.state == State::Established && s.pending.is_none() && due(s, &self.connections[s.conn]))
            .map(|(k, _)| *k)
            .collect();
        for spi in spis {
            let Some(mut sa) = self.sas.remove(&spi) else { continue };
            let r = act(self, now, &mut sa);
            self.sas.insert(spi, sa);
            if let Err(e) = r {
                self.fail(spi, e);
            }
        }
    }

    /// When the next liveness check or Child SA rekey is due.
    fn next_dpd(&self) -> Option<Instant> {
        let idle = || self.sas.values().filter(|s| s.state == State::Established && s.pending.is_none());
        let dpd = idle().filter_map(|s| self.connections[s.conn].dpd_delay.map(|d| s.last_seen + d)).min();
        let rekey = idle()
            .filter_map(|s| {
                let every = self.connections[s.conn].child_rekey;
                s.children.iter().filter(|c| !c.rekeyed).filter_map(|c| c.rekey_at(every, s.last_seen)).min()
            })
            .min();
        let ike = idle()
            .filter(|s| !s.ike_rekeyed)
            .filter_map(|s| self.connections[s.conn].ike_rekey.map(|d| s.established + d.saturating_sub(s.rekey_early)))
            .min();
        // Deferred deletes and wanted Child SAs are due at once.
        let deferred = idle()
            .filter(|s| !s.deferred_deletes.is_empty() || !s.wanted_children.is_empty())
            .map(|s| s.last_seen)
            .min();
        [dpd, rekey, ike, deferred].into_iter().flatten().min()
    }

    /// A datagram from the network (without the non-ESP marker).
    pub fn handle_datagram(&mut self, now: Instant, local: SocketAddr, remote: SocketAddr, data: &[u8]) {
        // Anything malformed is dropped silently (RFC 7296 2.21: no answer to garbage).
        let Ok(msg) = Message::parse(data) else { return };
        let h = msg.header.clone();
        if h.exchange == ExchangeType::IKE_SA_INIT && !h.response && h.initiator && h.spi_r == 0 {
            self.init_request(now, local, remote, data, msg);
            return;
        }
        // Our SPI: the responder's when we are the initiator, and the other way round.
        let ours = if h.initiator { h.spi_r } else { h.spi_i };
        let Some(mut sa) = self.sas.remove(&ours) else { return };
        // Everything after IKE_SA_INIT is sealed: only an initiator waiting for the IKE_SA_INIT
        // answer takes a message in the clear (which side we are and where we are come from our
        // state, not from the header, which anyone can write). A message whose SK payload does
        // not verify is dropped before it changes anything (RFC 7296 2.21.2, 3.14): not the
        // peer's address, not when we last heard from it, and the IKE SA stays up. Its header
        // is in the clear, so anyone who saw one message could otherwise tear the SA down with
        // a forgery, move our replies elsewhere, or have a cached response sent to a spoofed
        // address.
        let sealed = sa.state != State::InitSent;
        let expected =
            if sealed { Self::open(&sa, data, &msg).is_ok() } else { h.exchange == ExchangeType::IKE_SA_INIT };
        if !expected {
            self.sas.insert(ours, sa);
            return;
        }
        // Send to where the peer speaks from, once it has proved who it is, and only after a
        // message that is new (the next request, or the answer to ours): after NAT detection
        // both ends move to port 4500 (RFC 7296 2.23), and a NAT may change the peer's address
        // or port, but a replayed old message, authentic as it is, must not move what we send
        // from then on. (A request repeated from elsewhere is still answered there: 2.11.)
        let fresh = if h.response {
            sa.pending.is_some() && h.message_id.wrapping_add(1) == sa.my_next_id
        } else {
            h.message_id == sa.peer_next_id
        };
        if sealed && fresh {
            sa.local = local;
            sa.remote = remote;
        }
        let result = if h.response {
            self.response(now, &mut sa, data, msg)
        } else {
            self.request(now, &mut sa, data, msg, (local, remote))
        };
        let spi = sa.local_spi();
        self.sas.insert(spi, sa);
        match result {
            Ok(()) => {}
            // A Delete of the IKE SA: it goes without a failure.
            Err(reason) if reason.is_empty() => {
                self.remove(spi);
            }
            Err(reason) => self.fail(spi, reason),
        }
    }

    /// The header of our response to a request of the peer's.
    fn response_header(sa: &IkeSa, exchange: ExchangeType, message_id: u32) -> Header {
        Header {
            spi_i: sa.spi_i,
            spi_r: sa.spi_r,
            next_payload: 0,
            exchange,
            initiator: sa.initiator,
            response: true,
            message_id,
            length: 0,
        }
    }

    fn init_request(&mut self, now: Instant, local: SocketAddr, remote: SocketAddr, data: &[u8], msg: Message) {
        let h = msg.header.clone();
        // A retransmitted request: answer it again (RFC 7296 2.1).
        if let Some(spi) = self.half_open.get(&(h.spi_i, remote)) {
            if let Some(sa) = self.sas.get(spi)
                && let Some((0, resp)) = &sa.last_response
            {
                self.transmits.push_back(Transmit { local, remote, data: resp.clone() });
            }
            return;
        }
        let reply = |payloads: Vec<Payload>| -> Vec<u8> {
            Message {
                header: Header {
                    spi_i: h.spi_i,
                    spi_r: 0,
                    next_payload: 0,
                    exchange: ExchangeType::IKE_SA_INIT,
                    initiator: false,
                    response: true,
                    message_id: 0,
                    length: 0,
                },
                payloads,
            }
            .emit()
        };
        let Some(proposals) = msg.payloads.sa() else {
            return;
        };
        let Some(ke) = msg.payloads.ke() else {
            return;
        };
        let Some(ni) = msg.payloads.nonce().cloned() else {
            return;
        };
        // RFC 7296 2.6: under load, state is kept only for initiators that prove their address
        // by returning our cookie (a hash of their nonce, address and SPI with our secret).
        if self.half_open.len() >= self.cookie_threshold {
            self.rotate_cookie_secret(now);
            let valid = matches!(msg.payloads.first(), Some(Payload::Notify(n)) if n.notify_type == NotifyType::COOKIE
            && [Some(&self.cookie_secret), self.previous_cookie_secret.as_ref()].into_iter().flatten().any(|s| {
                crypto::cookie_version(&n.data) == Some(s.version())
                    && s.verify(&n.data, &ni, remote.ip(), &h.spi_i.to_be_bytes())
            }));
            if !valid {
                let cookie = self.cookie_secret.make(&ni, remote.ip(), &h.spi_i.to_be_bytes());
                self.transmits.push_back(Transmit {
                    local,
                    remote,
                    data: reply(vec![notify(NotifyType::COOKIE, cookie)]),
                });
                return;
            }
        }
        if !(16..=256).contains(&ni.len()) {
            return;
        }
        // Which connection: the first for the peer's address whose proposals match (RFC 7296:
        // IKE_SA_INIT is answered before identities are known, so connections sharing
        // addresses share proposals).
        let Some((conn, (accepted, chosen))) = self
            .connections
            .iter()
            .enumerate()
            .filter(|(_, c)| c.accepts_addr(remote.ip()))
            .find_map(|(i, c)| proposal::select(&c.ike, proposals, Kind::Ike, true).map(|x| (i, x)))
        else {
            self.transmits.push_back(Transmit {
                local,
                remote,
                data: reply(vec![notify(NotifyType::NO_PROPOSAL_CHOSEN, vec![])]),
            });
            return;
        };
        let group = chosen.dh.unwrap_or(0);
        if ke.group != group {
            // RFC 7296 1.2 / 3.10.1: tell the initiator which group we want.
            self.transmits.push_back(Transmit {
                local,
                remote,
                data: reply(vec![notify(NotifyType::INVALID_KE_PAYLOAD, group.to_be_bytes().to_vec())]),
            });
            return;
        }
        let Ok(g) = DhGroup::from_id(group) else { return };
        let Ok(dh) = self.provider.dh_private(g) else { return };
        let Ok(shared) = dh.shared(&ke.data) else {
            self.transmits.push_back(Transmit {
                local,
                remote,
                data: reply(vec![notify(NotifyType::INVALID_SYNTAX, vec![])]),
            });
            return;
        };
        let spi_r = u64::from_be_bytes(self.provider.spi());
        let nr = self.provider.nonce(NONCE_LEN);
        let (Ok(prf), Ok(suite)) = (PrfAlg::from_id(chosen.prf.unwrap_or(0)), suite_of(&chosen)) else { return };
        let Ok(keys) =
            crypto::derive_ike_sa_keys(prf, suite, &shared, &ni, &nr, &h.spi_i.to_be_bytes(), &spi_r.to_be_bytes())
        else {
            return;
        };
        let nat = Self::nat_detected(&msg.payloads, h.spi_i, 0, local, remote);
        let mut payloads = vec![Payload::Sa(vec![chosen.to_wire(accepted.number, ProtocolId::IKE, Spi::Empty)])];
        payloads.push(Payload::Ke(KeyExchange { group, data: dh.public().to_vec() }));
        payloads.push(Payload::Nonce(nr.clone()));
        payloads.extend(Self::nat_notifies(h.spi_i, spi_r, local, remote));
        if let RemoteAuth::Cert(cas) = &self.connections[conn].remote_auth {
            // RFC 7296 1.2, 3.7: which CAs we trust, so that the initiator sends its certificate.
            payloads
                .push(Payload::CertReq(Certificate { encoding: CertEncoding::X509_SIGNATURE, data: cas.certreq() }));
        }
        payloads.push(notify(NotifyType::SIGNATURE_HASH_ALGORITHMS, pki::hash_algorithms_data()));
        let peer_hashes = peer_hashes(&msg.payloads);
        let resp = Message {
            header: Header {
                spi_i: h.spi_i,
                spi_r,
                next_payload: 0,
                exchange: ExchangeType::IKE_SA_INIT,
                initiator: false,
                response: true,
                message_id: 0,
                length: 0,
            },
            payloads,
        }
        .emit();
        let sa = IkeSa {
            conn,
            initiator: false,
            state: State::InitDone,
            spi_i: h.spi_i,
            spi_r,
            local,
            remote,
            nat,
            ni,
            nr,
            dh: None,
            chosen: Some(chosen),
            keys: Some(keys),
            my_init: resp.clone(),
            peer_init: data.to_vec(),
            cookie: None,
            init_rounds: 0,
            my_next_id: 0,
            peer_next_id: 1,
            last_response: Some((0, resp.clone())),
            pending: None,
            child_spi: 0,
            children: Vec::new(),
            rekey: None,
            ike_rekey: None,
            established: now,
            rekey_early: self.rekey_early(conn, |c| c.ike_rekey),
            ike_rekeyed: false,
            successor: None,
            deferred_deletes: Vec::new(),
            last_seen: now,
            peer_hashes,
            peer_id: None,
            crossed_child_rekey: None,
            crossed_ike_rekey: None,
            wanted_children: Vec::new(),
            child_group: None,
            ke_retry_child: None,
        };
        self.transmits.push_back(Transmit { local, remote, data: resp });
        self.half_open.insert((h.spi_i, remote), spi_r);
        self.sas.insert(spi_r, sa);
    }

    /// Seals `inner` into an SK payload after `header` (RFC 7296 3.14, RFC 5282).
    fn seal(&mut self, sa: &IkeSa, header: Header, inner: &[Payload]) -> Result<Vec<u8>, String> {
        let keys = sa.keys.as_ref().ok_or("no keys")?;
        let sk = if sa.initiator { keys.initiator_sk() } else { keys.responder_sk() }.map_err(|e| e.to_string())?;
        // A field too long for its length octet (more than 255 traffic selectors, say) is an
        // error of this exchange, not a reason to stop the daemon.
        let (first, plain) = wire::try_emit_payload_chain(inner).map_err(|e| e.to_string())?;
        let body_len = sk.encrypted_len(plain.len());
        let mut out = wire::sk_message_prefix(&header, first, body_len, &[]).map_err(|e| e.to_string())?;
        let body = sk.encrypt(&out, &plain, self.provider.rng());
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Opens the SK payload of a received message.
    fn open(sa: &IkeSa, data: &[u8], msg: &Message) -> Result<Vec<Payload>, String> {
        let keys = sa.keys.as_ref().ok_or("no keys")?;
        // Messages from the peer: the other direction's key.
        let sk: SkCipher =
            if sa.initiator { keys.responder_sk() } else { keys.initiator_sk() }.map_err(|e| e.to_string())?;
        let Some(Payload::Sk(Encrypted { first_inner, body })) = msg.payloads.last() else {
            return Err("no SK payload".into());
        };
        let aad = &data[..data.len() - body.len()];
        let plain = sk.decrypt(aad, body).map_err(|e| format!("SK payload: {e}"))?;
        wire::parse_payload_chain(*first_inner, &plain).map_err(|e| e.to_string())
    }

    /// The octets an AUTH payload covers (RFC 7296 2.15), of our own AUTH (`mine`) or of the
    /// one the peer must send: the signer's IKE_SA_INIT message, the other side's nonce and
    /// prf(SK_p, the signer's ID payload body), SK_pi for the initiator and SK_pr for the
    /// responder.
    fn signed_octets(sa: &IkeSa, mine: bool, id: &Identification) -> Result<Vec<u8>, String> {
        let keys = sa.keys.as_ref().ok_or("no keys")?;
        let signer_is_initiator = if mine { sa.initiator } else { !sa.initiator };
        let real = if mine { &sa.my_init } else { &sa.peer_init };
        let (nonce, sk_p) = if signer_is_initiator { (&sa.nr, &keys.sk_pi) } else { (&sa.ni, &keys.sk_pr) };
        Ok(crypto::signed_octets(real, nonce, keys.prf, sk_p, &id_body(id)))
    }

    /// Our CERT payloads (none with a PSK) and our AUTH payload.
    fn my_auth(sa: &IkeSa, conn: &Connection) -> Result<(Vec<Payload>, Payload), String> {
        let octets = Self::signed_octets(sa, true, &conn.local_id)?;
        match &conn.local_auth {
            LocalAuth::Psk(psk) => {
                let prf = sa.keys.as_ref().ok_or("no keys")?.prf;
                let data = crypto::psk_auth(prf, psk.expose(), &octets);
                Ok((vec![], Payload::Auth(Authentication { method: AuthMethod::SHARED_KEY_MIC, data })))
            }
            LocalAuth::Cert { cert, chain, key } => {
                let (method, data) = key.sign_auth(sa.peer_hashes.as_deref(), &octets).map_err(|e| e.to_string())?;
                let certs = std::iter::once(cert)
                    .chain(chain)
                    .map(|c| {
                        Payload::Cert(Certificate { encoding: CertEncoding::X509_SIGNATURE, data: c.der().to_vec() })
                    })
                    .collect();
                Ok((certs, Payload::Auth(Authentication { method, data })))
            }
        }
    }

    /// Checks the peer's AUTH payload for connection `conn` and the identity `id` it claims:
    /// the PSK's MIC, or a signature by the certificate of the first CERT payload (the others
    /// may be intermediate CAs), which one of the connection's CAs must have issued and which
    /// must hold `id` (RFC 7296 2.15, 3.5, 3.6).
    fn verify_peer_auth(
        &self,
        now: Instant,
        sa: &IkeSa,
        conn: &Connection,
        id: &Identification,
        inner: &[Payload],
    ) -> Result<(), String> {
        let auth = inner.auth().ok_or("no AUTH payload")?;
        let octets = Self::signed_octets(sa, false, id)?;
        match &conn.remote_auth {
            RemoteAuth::Psk(psk) => {
                let prf = sa.keys.as_ref().ok_or("no keys")?.prf;
                if auth.method != AuthMethod::SHARED_KEY_MIC {
                    return Err(format!("peer authenticates with {:?}, we expect a PSK", auth.method));
                }
                if !crypto::verify_psk_auth(prf, psk.expose(), &octets, &auth.data) {
                    return Err("AUTH does not verify with the PSK".into());
                }
                Ok(())
            }
            RemoteAuth::Cert(cas) => {
                let mut certs = inner.iter().filter_map(|p| match p {
                    Payload::Cert(c) if c.encoding == CertEncoding::X509_SIGNATURE => Some(Cert::from_der(&c.data)),
                    _ => None,
                });
                let end = certs.next().ok_or("no certificate (CERT payload)")?.map_err(|e| e.to_string())?;
                // No chain is longer than pki::MAX_CHAIN: more CERT payloads would only be
                // decoys, each costing a signature check per link (before anyone has
                // authenticated).
                let intermediates: Vec<Cert> = certs.take(pki::MAX_CHAIN).filter_map(Result::ok).collect();
                let unix = self.unix_time(now).ok_or("no wall-clock time to check certificates against")?;
                cas.verify(&end, &intermediates, unix).map_err(|e| e.to_string())?;
                if !end.binds(id) {
                    return Err(format!("certificate \"{}\" does not hold identity {}", end.subject, pki::id_text(id)));
                }
                pki::verify_auth(&end.key, auth.method, &auth.data, &octets)
                    .map_err(|e| format!("AUTH of \"{}\": {e}", end.subject))
            }
        }
    }

    fn response(&mut self, now: Instant, sa: &mut IkeSa, data: &[u8], msg: Message) -> Result<(), String> {
        let h = msg.header.clone();
        if sa.pending.is_none() || h.message_id.wrapping_add(1) != sa.my_next_id {
            // Not the answer to our outstanding request: ignore (RFC 7296 2.2).
            return Ok(());
        }
        sa.last_seen = now;
        if sa.state == State::Established {
            // The answer to an INFORMATIONAL or CREATE_CHILD_SA of ours (it must decrypt to count).
            let inner = Self::open(sa, data, &msg)?;
            match sa.pending.take().map(|p| p.kind) {
                Some(Request::DeleteIke) => {
                    let connection = self.connections[sa.conn].name.clone();
                    self.events.push_back(Event::IkeDown { connection, local_spi: sa.local_spi() });
                    // The caller removes the SA and reports its Child SAs down.
                    return Err(String::new());
                }
                Some(Request::RekeyChild) => return self.rekey_response(now, sa, &inner),
                Some(Request::RekeyIke) => return self.ike_rekey_response(now, sa, &inner),
                Some(Request::DeleteChild(spi_in)) => {
                    let connection = self.connections[sa.conn].name.clone();
                    let children = Self::children_of(&mut self.sas, sa);
                    if let Some(i) = children.iter().position(|c| c.spi_in == spi_in) {
                        let c = children.remove(i);
                        Self::release_outbound(&mut self.events, &connection, children, c.spi_in);
                        self.events.push_back(Event::ChildDown {
                            connection,
                            child: c.name,
                            spi_in: c.spi_in,
                            spi_out: c.spi_out,
                        });
                    }
                }
                _ => {}
            }
            return Ok(());
        }
        match sa.state {
            State::InitSent => {
                let again = [NotifyType::COOKIE, NotifyType::INVALID_KE_PAYLOAD];
                if again.iter().any(|&t| find_notify(&msg.payloads, t).is_some()) {
                    sa.init_rounds += 1;
                    if sa.init_rounds > INIT_ROUNDS {
                        return Err("the responder keeps asking for a cookie or another DH group".into());
                    }
                }
                if let Some(n) = find_notify(&msg.payloads, NotifyType::COOKIE) {
                    sa.cookie = Some(n.data.clone());
                    self.send_init_request(now, sa);
                    return Ok(());
                }
                if let Some(n) = find_notify(&msg.payloads, NotifyType::INVALID_KE_PAYLOAD) {
                    // RFC 7296 1.2: retry with the group the responder asked for, if we offered it.
                    let g = u16::from_be_bytes(
                        n.data.get(..2).and_then(|b| b.try_into().ok()).ok_or("bad INVALID_KE_PAYLOAD")?,
                    );
                    let offered = self.connections[sa.conn].ike.iter().any(|a| a.dh.contains(&g));
                    if !offered || sa.dh.as_ref().is_some_and(|d| d.group().id() == g) {
                        return Err(format!("responder wants DH group {g}, which we did not offer"));
                    }
                    sa.dh = Some(
                        self.provider
                            .dh_private(DhGroup::from_id(g).map_err(|e| e.to_string())?)
                            .map_err(|e| e.to_string())?,
                    );
                    self.send_init_request(now, sa);
                    return Ok(());
                }
                if let Some(n) = msg.payloads.iter().find_map(|p| match p {
                    Payload::Notify(n) if n.notify_type.is_error() => Some(n.notify_type),
                    _ => None,
                }) {
                    return Err(format!("IKE_SA_INIT refused: {}", n.name().unwrap_or("error notify")));
                }
                let conn = &self.connections[sa.conn];
                let accepted = msg.payloads.sa().and_then(|x| x.first()).ok_or("no SA payload")?;
                let chosen = proposal::check_accepted(&conn.ike, accepted, Kind::Ike, true)
                    .ok_or("responder chose a proposal we did not offer")?;
                let ke = msg.payloads.ke().ok_or("no KE payload")?;
                let nr = msg.payloads.nonce().filter(|n| nonce_ok(n)).cloned().ok_or(NONCE_ERROR)?;
                let dh = sa.dh.take().ok_or("no DH key")?;
                if Some(ke.group) != chosen.dh || dh.group().id() != ke.group {
                    return Err("KE group differs from the negotiated one".into());
                }
                let shared = dh.shared(&ke.data).map_err(|e| e.to_string())?;
                sa.spi_r = h.spi_r;
                let prf = PrfAlg::from_id(chosen.prf.unwrap_or(0)).map_err(|e| e.to_string())?;
                let suite = suite_of(&chosen).map_err(|e| e.to_string())?;
                sa.keys = Some(
                    crypto::derive_ike_sa_keys(
                        prf,
                        suite,
                        &shared,
                        &sa.ni,
                        &nr,
                        &sa.spi_i.to_be_bytes(),
                        &sa.spi_r.to_be_bytes(),
                    )
                    .map_err(|e| e.to_string())?,
                );
                sa.nat = Self::nat_detected(&msg.payloads, sa.spi_i, sa.spi_r, sa.local, sa.remote);
                if sa.nat {
                    // RFC 7296 2.23: behind a NAT, IKE_AUTH and everything after go to port 4500.
                    sa.local.set_port(4500);
                    sa.remote.set_port(4500);
                }
                sa.nr = nr;
                sa.chosen = Some(chosen);
                sa.peer_init = data.to_vec();
                sa.peer_hashes = peer_hashes(&msg.payloads);
                sa.pending = None;
                self.send_auth_request(now, sa)
            }
            State::AuthSent => {
                let inner = Self::open(sa, data, &msg)?;
                sa.pending = None;
                let error = inner.iter().find_map(|p| match p {
                    Payload::Notify(n) if n.notify_type.is_error() => Some(n.notify_type),
                    _ => None,
                });
                // A child-only error without AUTH refuses the IKE SA all the same.
                if let Some(n) = error.filter(|n| !CHILD_ONLY_ERRORS.contains(n) || inner.auth().is_none()) {
                    return Err(format!("IKE_AUTH refused: {}", n.name().unwrap_or("error notify")));
                }
                let conn = self.connections[sa.conn].clone();
                let idr = inner.idr().cloned().ok_or("no IDr")?;
                let verified = if conn.accepts_id(&idr) {
                    self.verify_peer_auth(now, sa, &conn, &idr, &inner)
                } else {
                    Err(format!("identity {} is not the one configured", pki::id_text(&idr)))
                };
                if let Err(e) = verified {
                    // RFC 7296 2.21.2: the responder thinks the IKE SA is up; tell it, in an
                    // INFORMATIONAL of its own, that it is not.
                    let refuse = notify(NotifyType::AUTHENTICATION_FAILED, vec![]);
                    self.informational(now, sa, &[refuse], Request::DeleteIke)?;
                    return Err(format!("the responder fails to authenticate: {e}"));
                }
                sa.state = State::Established;
                sa.peer_id = Some(idr.clone());
                self.events.push_back(Event::IkeUp {
                    connection: conn.name.clone(),
                    local_spi: sa.spi_i,
                    remote_id: idr,
                });
                match error {
                    Some(n) => {
                        let child = conn.children.first().map(|c| c.name.clone()).unwrap_or_default();
                        let reason = n.name().unwrap_or("error notify").to_string();
                        self.events.push_back(Event::ChildRefused { connection: conn.name.clone(), child, reason });
                        // The connection's other Child SAs are asked for all the same.
                        sa.wanted_children.extend(conn.children.iter().skip(1).map(|c| c.name.clone()));
                        Ok(())
                    }
                    None => self.child_from_auth_response(now, sa, &conn, &inner),
                }
            }
            _ => Ok(()),
        }
    }

    fn send_auth_request(&mut self, now: Instant, sa: &mut IkeSa) -> Result<(), String> {
        let conn = self.connections[sa.conn].clone();
        sa.child_spi = self.new_spi(sa);
        let (certs, auth) = Self::my_auth(sa, &conn)?;
        let proposals = conn
            .esp
            .iter()
            .enumerate()
            .map(|(i, a)| a.to_wire(i as u8 + 1, ProtocolId::ESP, Spi::Four(sa.child_spi), false))
            .collect();
        // RFC 7296 1.2: IDi, [CERT,] [CERTREQ,] [IDr,] AUTH, SAi2, TSi, TSr.
        let mut inner = vec![Payload::IdI(conn.local_id.clone())];
        inner.extend(certs);
        if let RemoteAuth::Cert(cas) = &conn.remote_auth {
            inner.push(Payload::CertReq(Certificate { encoding: CertEncoding::X509_SIGNATURE, data: cas.certreq() }));
        }
        if let Some(r) = conn.idr_to_send() {
            inner.push(Payload::IdR(r.clone()));
        }
        inner.push(auth);
        // RFC 7296 2.4: this is the only IKE SA between our identities, so a peer still holding
        // one from before (say we restarted) drops it.
        inner.push(notify(NotifyType::INITIAL_CONTACT, vec![]));
        inner.push(Payload::Sa(proposals));
        let first = conn.children.first().ok_or("no child SA configured")?;
        inner.push(Payload::TsI(first.local_ts.clone()));
        inner.push(Payload::TsR(first.remote_ts.clone()));
        self.new_request(now, sa, ExchangeType::IKE_AUTH, &inner, Request::Auth)?;
        sa.state = State::AuthSent;
        Ok(())
    }

    fn child_from_auth_response(
        &mut self,
        now: Instant,
        sa: &mut IkeSa,
        conn: &Connection,
        inner: &[Payload],
    ) -> Result<(), String> {
        let accepted = inner.sa().and_then(|x| x.first()).ok_or("no child SA proposal accepted")?;
        let chosen = proposal::check_accepted(&conn.esp, accepted, Kind::Esp, false)
            .ok_or("responder chose an ESP proposal we did not offer")?;
        let Spi::Four(spi_out) = accepted.spi else { return Err("ESP SPI is not 4 bytes".into()) };
        let tsi = inner.tsi().cloned().ok_or("no TSi")?;
        let tsr = inner.tsr().cloned().ok_or("no TSr")?;
        let first = conn.children.first().ok_or("no child SA configured")?;
        // The responder may only narrow what we proposed (RFC 7296 2.9).
        if narrow(&tsi, &first.local_ts) != tsi || narrow(&tsr, &first.remote_ts) != tsr {
            return Err("the responder widened the traffic selectors".into());
        }
        let nonces = (sa.ni.clone(), sa.nr.clone());
        let child = self.child_keys(
            sa,
            conn,
            &first.name,
            &chosen,
            sa.child_spi,
            spi_out,
            tsi,
            tsr,
            (&nonces.0, &nonces.1),
            None,
            true,
        )?;
        let early = self.rekey_early(sa.conn, |c| c.child_rekey);
        sa.children.push(Child::of(&child, now, early));
        self.events.push_back(Event::ChildUp(child));
        // The connection's other Child SAs follow, one CREATE_CHILD_SA each (RFC 7296 1.3.1).
        sa.wanted_children.extend(conn.children.iter().skip(1).map(|c| c.name.clone()));
        Ok(())
    }

    /// The keys of a Child SA (RFC 7296 2.17): from SK_d, the exchange's nonces and, with PFS,
    /// the new DH secret. `exchange_initiator`: we sent the request that created it (for
    /// IKE_AUTH the IKE SA's initiator, for CREATE_CHILD_SA whoever sent that request).
    #[allow(clippy::too_many_arguments)]
    fn child_keys(
        &self,
        sa: &IkeSa,
        conn: &Connection,
        child: &str,
        chosen: &Chosen,
        spi_in: u32,
        spi_out: u32,
        local_ts: Vec<TrafficSelector>,
        remote_ts: Vec<TrafficSelector>,
        nonces: (&[u8], &[u8]),
        shared: Option<&[u8]>,
        exchange_initiator: bool,
    ) -> Result<ChildSa, String> {
        let keys = sa.keys.as_ref().ok_or("no keys")?;
        let suite = suite_of(chosen).map_err(|e| e.to_string())?;
        let km = crypto::derive_child_sa_keys(keys.prf, &keys.sk_d, shared, nonces.0, nonces.1, suite)
            .map_err(|e| e.to_string())?;
        Ok(ChildSa {
            connection: conn.name.clone(),
            child: child.to_string(),
            local: sa.local,
            remote: sa.remote,
            udp_encap: sa.nat || sa.local.port() == 4500,
            spi_in,
            spi_out,
            key_bits: chosen.key_bits,
            key_in: Secret::from_slice(&km.inbound(exchange_initiator).encr),
            key_out: Secret::from_slice(&km.outbound(exchange_initiator).encr),
            esn: chosen.esn.unwrap_or(false),
            local_ts,
            remote_ts,
            outbound_later: false,
        })
    }

    /// How much before its rekey time (`period` of connection `conn`) an SA made now is
    /// rekeyed: a random amount up to the connection's `rekey_jitter` (by default a tenth of
    /// the period), and at most half the period.
    fn rekey_early(&mut self, conn: usize, period: impl Fn(&Connection) -> Option<Duration>) -> Duration {
        let c = &self.connections[conn];
        let max = period(c).map_or(Duration::ZERO, |p| c.rekey_jitter.unwrap_or(p / 10).min(p / 2));
        let ms = u64::try_from(max.as_millis()).unwrap_or(u64::MAX);
        if ms == 0 {
            return Duration::ZERO;
        }
        let mut r = [0u8; 8];
        self.provider.rng().fill(&mut r);
        Duration::from_millis(u64::from_le_bytes(r) % ms.saturating_add(1))
    }

    /// A random inbound ESP SPI that none of our Child SAs, installed or being negotiated,
    /// has: the dataplane finds inbound SAs by SPI alone, and refuses a second one. With
    /// 100,000 tunnels (200,000 SPIs in use counting rekeys) a random draw collides about once
    /// in 20,000.
    /// `current` is the IKE SA being worked on, out of `self.sas` while it is.
    fn new_spi(&mut self, current: &IkeSa) -> u32 {
        loop {
            let mut spi = [0u8; 4];
            while spi[0] == 0 {
                // SPIs below 256 are reserved (RFC 4303 2.1); a leading non-zero byte avoids them.
                self.provider.rng().fill(&mut spi);
            }
            let spi = u32::from_be_bytes(spi);
            if !std::iter::once(current).chain(self.sas.values()).any(|s| Self::spi_in_use(s, spi)) {
                return spi;
            }
        }
    }

    /// Whether `spi` is an inbound SPI of `sa`'s, installed or being negotiated.
    fn spi_in_use(sa: &IkeSa, spi: u32) -> bool {
        sa.child_spi == spi
            || sa.rekey.as_ref().is_some_and(|r| r.new_spi_in == spi)
            || sa.children.iter().any(|c| c.spi_in == spi)
    }

    /// Starts rekeying Child SA `idx` (RFC 7296 1.3.3, 2.8): CREATE_CHILD_SA with REKEY_SA,
    /// a fresh nonce and, if our proposals ask for PFS, a new DH exchange.
    fn rekey_child(&mut self, now: Instant, sa: &mut IkeSa, idx: usize) -> Result<(), String> {
        let child = &mut sa.children[idx];
        child.rekeyed = true;
        let ke_retry = std::mem::take(&mut child.ke_retry);
        let (old, name, ts) = (child.spi_in, child.name.clone(), (child.local_ts.clone(), child.remote_ts.clone()));
        self.request_child(now, sa, Some(old), name, ts, ke_retry)
    }

    /// Starts creating the connection's Child SA `name` (RFC 7296 1.3.1).
    fn new_child(&mut self, now: Instant, sa: &mut IkeSa, name: &str) -> Result<(), String> {
        let conn = &self.connections[sa.conn];
        let cfg = conn.children.iter().find(|c| c.name == name).ok_or("no such child SA")?;
        let ts = (cfg.local_ts.clone(), cfg.remote_ts.clone());
        let ke_retry = sa.ke_retry_child.take_if(|c| c == name).is_some();
        self.request_child(now, sa, None, name.to_string(), ts, ke_retry)
    }

    /// CREATE_CHILD_SA for a Child SA: [REKEY_SA,] SA, Ni, [KEi,] TSi, TSr.
    fn request_child(
        &mut self,
        now: Instant,
        sa: &mut IkeSa,
        rekey_of: Option<u32>,
        child: String,
        (local_ts, remote_ts): (Vec<TrafficSelector>, Vec<TrafficSelector>),
        ke_retry: bool,
    ) -> Result<(), String> {
        let conn = self.connections[sa.conn].clone();
        let new_spi_in = self.new_spi(sa);
        let ni = self.provider.nonce(NONCE_LEN);
        let group = sa.child_group.or_else(|| conn.esp.iter().flat_map(|a| a.dh.iter()).next().copied());
        let dh = match group {
            Some(g) => Some(
                self.provider.dh_private(DhGroup::from_id(g).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?,
            ),
            None => None,
        };
        let mut inner = Vec::new();
        if let Some(old) = rekey_of {
            inner.push(Payload::Notify(Notify {
                protocol: ProtocolId::ESP,
                spi: old.to_be_bytes().to_vec(),
                notify_type: NotifyType::REKEY_SA,
                data: vec![],
            }));
        }
        let proposals = conn
            .esp
            .iter()
            .enumerate()
            .map(|(i, a)| a.to_wire(i as u8 + 1, ProtocolId::ESP, Spi::Four(new_spi_in), true))
            .collect();
        inner.push(Payload::Sa(proposals));
        inner.push(Payload::Nonce(ni.clone()));
        if let Some(d) = &dh {
            inner.push(Payload::Ke(KeyExchange { group: d.group().id(), data: d.public().to_vec() }));
        }
        inner.push(Payload::TsI(local_ts));
        inner.push(Payload::TsR(remote_ts));
        self.new_request(now, sa, ExchangeType::CREATE_CHILD_SA, &inner, Request::RekeyChild)?;
        sa.rekey = Some(RekeyState { old_spi_in: rekey_of, child, new_spi_in, ni, dh, ke_retry });
        Ok(())
    }

    /// The answer to our CREATE_CHILD_SA for a Child SA: the new pair comes up, then (for a
    /// rekey) the old one is deleted.
    fn rekey_response(&mut self, now: Instant, sa: &mut IkeSa, inner: &[Payload]) -> Result<(), String> {
        let Some(rk) = sa.rekey.take() else { return Ok(()) };
        let conn = self.connections[sa.conn].clone();
        let refused = inner.iter().find_map(|p| match p {
            Payload::Notify(n) if n.notify_type.is_error() => Some(n),
            _ => None,
        });
        let accepted = inner.sa().and_then(|x| x.first());
        let (Some(accepted), None) = (accepted, refused) else {
            // Refused (or a collision the peer resolved its way): keep the old SA and try again
            // soon, before its hard lifetime ends it (a full rekey time later would be too late,
            // and a soft lifetime's `due` at once would be a storm). A new Child SA the peer
            // refuses is not retried: that needs a configuration change.
            let old = rk.old_spi_in;
            // If we answered the peer's rekey of the same SA meanwhile, that one replaces it:
            // nothing to try again.
            if sa.crossed_child_rekey.take_if(|c| Some(c.0) == old).is_some() {
                return Ok(());
            }
            // The peer wants another of the DH groups we offered (RFC 7296 1.3): ask again at
            // once with that one, a new Child SA as well as a rekey. Only once in a row: a
            // peer that refuses the group it asked for waits for the usual retry.
            let used = rk.dh.as_ref().map(|d| d.group().id());
            let asked = refused
                .filter(|n| n.notify_type == NotifyType::INVALID_KE_PAYLOAD)
                .and_then(|n| n.data.get(..2)?.try_into().ok().map(u16::from_be_bytes))
                .filter(|g| Some(*g) != used && conn.esp.iter().any(|a| a.dh.contains(g)));
            let again_now = asked.is_some() && !rk.ke_retry;
            if let Some(g) = asked {
                sa.child_group = Some(g);
                if let Some(n) = sa.successor.and_then(|k| self.sas.get_mut(&k)) {
                    n.child_group = Some(g);
                }
            }
            let retry_at = if again_now { now } else { now + REKEY_RETRY };
            let children = Self::children_of(&mut self.sas, sa);
            if let Some(c) = children.iter_mut().find(|c| Some(c.spi_in) == old) {
                // One going anyway (replaced by the peer's rekey, or to be deleted) stays so.
                if !c.going {
                    (c.rekeyed, c.retry_at, c.ke_retry) = (false, Some(retry_at), again_now);
                }
            } else if old.is_none() && again_now {
                // Next, and marked, on the successor if there is one by then.
                let on = match sa.successor.and_then(|k| self.sas.get_mut(&k)) {
                    Some(n) => n,
                    None => &mut *sa,
                };
                on.wanted_children.retain(|w| *w != rk.child);
                on.wanted_children.insert(0, rk.child.clone());
                on.ke_retry_child = Some(rk.child);
            } else if old.is_none() {
                let reason = refused.map_or("no proposal accepted", |n| n.notify_type.name().unwrap_or("error notify"));
                self.events.push_back(Event::ChildRefused {
                    connection: conn.name.clone(),
                    child: rk.child,
                    reason: reason.to_string(),
                });
            }
            return Ok(());
        };
        let with_dh = rk.dh.is_some();
        let chosen = proposal::check_accepted(&conn.esp, accepted, Kind::Esp, with_dh)
            .ok_or("the peer chose an ESP proposal we did not offer")?;
        let Spi::Four(spi_out) = accepted.spi else { return Err("ESP SPI is not 4 bytes".into()) };
        let nr = inner.nonce().filter(|n| nonce_ok(n)).cloned().ok_or(NONCE_ERROR)?;
        let shared = match &rk.dh {
            Some(d) => {
                let ke = inner.ke().ok_or("no KE")?;
                Some(d.shared(&ke.data).map_err(|e| e.to_string())?)
            }
            None => None,
        };
        let tsi = inner.tsi().cloned().ok_or("no TSi")?;
        let tsr = inner.tsr().cloned().ok_or("no TSr")?;
        if let Some(cfg) = conn.children.iter().find(|c| c.name == rk.child) {
            // The responder may only narrow what we proposed (RFC 7296 2.9).
            if narrow(&tsi, &cfg.local_ts) != tsi || narrow(&tsr, &cfg.remote_ts) != tsr {
                return Err(format!("child SA {}: the peer widened the traffic selectors", cfg.name));
            }
        }
        let child = self.child_keys(
            sa,
            &conn,
            &rk.child,
            &chosen,
            rk.new_spi_in,
            spi_out,
            tsi,
            tsr,
            (&rk.ni, &nr),
            shared.as_ref().map(|s| s.expose()),
            true,
        )?;
        let new_spi_in = child.spi_in;
        // Both ends rekeyed this Child SA at once (RFC 7296 2.8.1): the new SA whose exchange
        // had the lowest of the four nonces is redundant, and its creator deletes it.
        let crossed = rk.old_spi_in.and_then(|old| sa.crossed_child_rekey.take().filter(|c| c.0 == old));
        if let Some((_, theirs_spi_in, theirs)) = crossed {
            if lower_nonce(&rk.ni, &nr) < theirs.as_slice() {
                // Ours: deleted with the peer, and never reported up. The peer's, reported when
                // we answered it, takes the traffic once the peer deletes the old pair;
                // reporting ours would point the policy at an SA about to go, and its deletion
                // would leave the policy with none.
                let del = Payload::Delete(wire::Delete { protocol: ProtocolId::ESP, spis: vec![new_spi_in] });
                return self.informational(now, sa, &[del], Request::DeleteChild(new_spi_in));
            }
            // The peer's is redundant and the peer deletes it: it never takes the outbound
            // traffic, which goes to ours as usual.
            if let Some(c) = Self::children_of(&mut self.sas, sa).iter_mut().find(|c| c.spi_in == theirs_spi_in) {
                c.holds_for = None;
            }
        }
        let early = self.rekey_early(sa.conn, |c| c.child_rekey);
        Self::children_of(&mut self.sas, sa).push(Child::of(&child, now, early));
        self.events.push_back(Event::ChildUp(child));
        let Some(old_spi_in) = rk.old_spi_in else { return Ok(()) };
        // Make-before-break: only now the old pair goes (RFC 7296 2.8).
        if let Some(n) = sa.successor.and_then(|k| self.sas.get_mut(&k)) {
            // This IKE SA is on its way out: delete through the one that replaced it.
            n.deferred_deletes.push(old_spi_in);
            return Ok(());
        }
        let del = Payload::Delete(wire::Delete { protocol: ProtocolId::ESP, spis: vec![old_spi_in] });
        self.informational(now, sa, &[del], Request::DeleteChild(old_spi_in))
    }

    /// Where `sa`'s Child SAs live: in `sa`, or in its successor once it has been rekeyed
    /// (RFC 7296 2.25: exchanges may cross an IKE SA rekey).
    fn children_of<'a>(sas: &'a mut HashMap<u64, IkeSa>, sa: &'a mut IkeSa) -> &'a mut Vec<Child> {
        match sa.successor {
            Some(k) if sas.contains_key(&k) => &mut sas.get_mut(&k).expect("checked").children,
            _ => &mut sa.children,
        }
    }

    /// Starts rekeying the IKE SA (RFC 7296 1.3.2): CREATE_CHILD_SA with an IKE proposal
    /// carrying our new SPI, a nonce and a new DH value.
    fn rekey_ike(&mut self, now: Instant, sa: &mut IkeSa) -> Result<(), String> {
        let conn = self.connections[sa.conn].clone();
        let group = sa.chosen.and_then(|c| c.dh).ok_or("no DH group")?;
        let dh =
            self.provider.dh_private(DhGroup::from_id(group).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
        let new_spi = u64::from_be_bytes(self.provider.spi());
        let ni = self.provider.nonce(NONCE_LEN);
        // Our preferred proposal first, with the group in use first among the groups.
        let proposals = conn
            .ike
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let mut a = a.clone();
                a.dh.sort_by_key(|&g| g != group);
                a.to_wire(i as u8 + 1, ProtocolId::IKE, Spi::Eight(new_spi), true)
            })
            .collect();
        let inner = vec![
            Payload::Sa(proposals),
            Payload::Nonce(ni.clone()),
            Payload::Ke(KeyExchange { group, data: dh.public().to_vec() }),
        ];
        self.new_request(now, sa, ExchangeType::CREATE_CHILD_SA, &inner, Request::RekeyIke)?;
        sa.ike_rekeyed = true;
        sa.ike_rekey = Some(IkeRekeyState { new_spi, ni, dh });
        Ok(())
    }

    /// The IKE SA that replaces `old` (RFC 7296 2.18): keys from the old SK_d, the new DH
    /// secret and nonces; the rekey's initiator is the new SA's initiator; the Child SAs move.
    #[allow(clippy::too_many_arguments)]
    fn successor(
        &mut self,
        now: Instant,
        old: &mut IkeSa,
        chosen: Chosen,
        shared: &[u8],
        (ni, nr): (Vec<u8>, Vec<u8>),
        (spi_i, spi_r): (u64, u64),
        we_initiated: bool,
    ) -> Result<u64, String> {
        let old_keys = old.keys.as_ref().ok_or("no keys")?;
        let prf = PrfAlg::from_id(chosen.prf.unwrap_or(0)).map_err(|e| e.to_string())?;
        let suite = suite_of(&chosen).map_err(|e| e.to_string())?;
        let keys = crypto::derive_rekeyed_ike_sa_keys(
            old_keys.prf,
            &old_keys.sk_d,
            prf,
            suite,
            shared,
            &ni,
            &nr,
            &spi_i.to_be_bytes(),
            &spi_r.to_be_bytes(),
        )
        .map_err(|e| e.to_string())?;
        let new = IkeSa {
            conn: old.conn,
            initiator: we_initiated,
            state: State::Established,
            spi_i,
            spi_r,
            local: old.local,
            remote: old.remote,
            nat: old.nat,
            ni,
            nr,
            dh: None,
            chosen: Some(chosen),
            keys: Some(keys),
            my_init: Vec::new(),
            peer_init: Vec::new(),
            cookie: None,
            init_rounds: 0,
            my_next_id: 0,
            peer_next_id: 0,
            last_response: None,
            pending: None,
            child_spi: 0,
            children: std::mem::take(&mut old.children),
            rekey: None,
            ike_rekey: None,
            established: now,
            rekey_early: self.rekey_early(old.conn, |c| c.ike_rekey),
            ike_rekeyed: false,
            successor: None,
            deferred_deletes: std::mem::take(&mut old.deferred_deletes),
            last_seen: now,
            peer_hashes: old.peer_hashes.clone(),
            peer_id: old.peer_id.clone(),
            crossed_child_rekey: None,
            crossed_ike_rekey: None,
            wanted_children: std::mem::take(&mut old.wanted_children),
            child_group: old.child_group,
            ke_retry_child: old.ke_retry_child.take(),
        };
        let spi = new.local_spi();
        let connection = self.connections[new.conn].name.clone();
        self.sas.insert(spi, new);
        old.successor = Some(spi);
        self.events.push_back(Event::IkeRekeyed { connection, old_spi: old.local_spi(), new_spi: spi });
        Ok(spi)
    }

    /// The answer to our IKE SA rekey: the new IKE SA takes over, the old one is deleted.
    fn ike_rekey_response(&mut self, now: Instant, sa: &mut IkeSa, inner: &[Payload]) -> Result<(), String> {
        let Some(rk) = sa.ike_rekey.take() else { return Ok(()) };
        let conn = self.connections[sa.conn].clone();
        let accepted = inner.sa().and_then(|x| x.first());
        let Some(accepted) = accepted else {
            // Refused (for instance a collision the peer won): keep this IKE SA, try later.
            (sa.ike_rekeyed, sa.established) = (false, now);
            return Ok(());
        };
        let chosen = proposal::check_accepted(&conn.ike, accepted, Kind::Ike, true)
            .ok_or("the peer chose an IKE proposal we did not offer")?;
        let Spi::Eight(peer_spi) = accepted.spi else { return Err("rekeyed IKE SA SPI is not 8 bytes".into()) };
        let nr = inner.nonce().filter(|n| nonce_ok(n)).cloned().ok_or(NONCE_ERROR)?;
        let ke = inner.ke().ok_or("no KE")?;
        if Some(ke.group) != chosen.dh || ke.group != rk.dh.group().id() {
            return Err("KE group differs from the negotiated one".into());
        }
        let shared = rk.dh.shared(&ke.data).map_err(|e| e.to_string())?;
        let ours_lower = lower_nonce(&rk.ni, &nr).to_vec();
        let ours = self.successor(now, sa, chosen, &shared, (rk.ni, nr), (rk.new_spi, peer_spi), true)?;
        if let Some((theirs, their_lower)) = sa.crossed_ike_rekey.take() {
            // Both ends rekeyed this IKE SA at once (RFC 7296 2.8.2): the new IKE SA whose
            // exchange had the lowest of the four nonces is redundant, and its creator deletes it.
            // The Child SAs went to the peer's new IKE SA when we answered its rekey.
            if ours_lower < their_lower {
                // Ours: delete it; the peer, whose rekey stands, deletes the old IKE SA.
                sa.successor = Some(theirs);
                let Some(mut redundant) = self.sas.remove(&ours) else { return Ok(()) };
                redundant.successor = Some(theirs);
                let del = Payload::Delete(wire::Delete { protocol: ProtocolId::IKE, spis: vec![] });
                let r = self.informational(now, &mut redundant, &[del], Request::DeleteIke);
                self.sas.insert(ours, redundant);
                return r;
            }
            // The peer's: it deletes that one; ours takes the Child SAs and replaces the old one.
            if let Some(t) = self.sas.get_mut(&theirs) {
                let (children, deletes) = (std::mem::take(&mut t.children), std::mem::take(&mut t.deferred_deletes));
                let (wanted, ke_retry_child) = (std::mem::take(&mut t.wanted_children), t.ke_retry_child.take());
                let group = t.child_group;
                t.successor = Some(ours);
                if let Some(o) = self.sas.get_mut(&ours) {
                    o.children.extend(children);
                    o.deferred_deletes.extend(deletes);
                    for w in wanted {
                        if !o.wanted_children.contains(&w) {
                            o.wanted_children.push(w);
                        }
                    }
                    o.ke_retry_child = o.ke_retry_child.take().or(ke_retry_child);
                    // The group the peer asked for on that IKE SA, which the retry needs.
                    o.child_group = group.or(o.child_group);
                }
            }
        }
        let del = Payload::Delete(wire::Delete { protocol: ProtocolId::IKE, spis: vec![] });
        self.informational(now, sa, &[del], Request::DeleteIke)
    }

    /// A CREATE_CHILD_SA request of the peer's: a Child SA rekey (RFC 7296 1.3.3).
    fn create_child_request(&mut self, now: Instant, sa: &mut IkeSa, data: &[u8], msg: Message) -> Result<(), String> {
        let inner = Self::open(sa, data, &msg)?;
        sa.last_seen = now;
        let id = msg.header.message_id;
        let header = Self::response_header(sa, ExchangeType::CREATE_CHILD_SA, id);
        let conn = self.connections[sa.conn].clone();
        let refuse = |t: NotifyType, data: Vec<u8>| vec![notify(t, data)];
        let ike_proposals = inner.iter().find_map(|p| match p {
            Payload::Sa(x) if x.first().is_some_and(|p| p.protocol == ProtocolId::IKE) => Some(x.clone()),
            _ => None,
        });
        if let Some(proposals) = ike_proposals {
            // An IKE SA rekey (RFC 7296 1.3.2).
            let ni = inner.nonce().cloned().unwrap_or_default();
            let ke = inner.ke().cloned();
            let reply = match (proposal::select(&conn.ike, &proposals, Kind::Ike, true), ke) {
                _ if !(16..=256).contains(&ni.len()) => refuse(NotifyType::INVALID_SYNTAX, vec![]),
                (None, _) => refuse(NotifyType::NO_PROPOSAL_CHOSEN, vec![]),
                (Some((_, c)), k) if k.as_ref().map(|k| k.group) != c.dh => {
                    refuse(NotifyType::INVALID_KE_PAYLOAD, c.dh.unwrap_or(0).to_be_bytes().to_vec())
                }
                (Some((accepted, chosen)), Some(ke)) => {
                    let Spi::Eight(peer_spi) = accepted.spi else {
                        return Err("rekeyed IKE SA SPI is not 8 bytes".into());
                    };
                    let g = DhGroup::from_id(ke.group).map_err(|e| e.to_string())?;
                    let d = self.provider.dh_private(g).map_err(|e| e.to_string())?;
                    let shared = d.shared(&ke.data).map_err(|e| e.to_string())?;
                    let our_spi = u64::from_be_bytes(self.provider.spi());
                    let nr = self.provider.nonce(NONCE_LEN);
                    let reply = vec![
                        Payload::Sa(vec![chosen.to_wire(accepted.number, ProtocolId::IKE, Spi::Eight(our_spi))]),
                        Payload::Nonce(nr.clone()),
                        Payload::Ke(KeyExchange { group: ke.group, data: d.public().to_vec() }),
                    ];
                    // The peer deletes this IKE SA next; we do not rekey it ourselves.
                    sa.ike_rekeyed = true;
                    let crossing = sa.ike_rekey.is_some().then(|| lower_nonce(&ni, &nr).to_vec());
                    let new = self.successor(now, sa, chosen, &shared, (ni, nr), (peer_spi, our_spi), false)?;
                    if let Some(theirs) = crossing {
                        // Our rekey of this IKE SA is in flight too: settled when its answer comes.
                        sa.crossed_ike_rekey = Some((new, theirs));
                    }
                    reply
                }
                (Some(_), None) => refuse(NotifyType::INVALID_SYNTAX, vec![]),
            };
            let out = self.seal(sa, header, &reply)?;
            self.respond(sa, id, out);
            return Ok(());
        }
        let rekeyed = inner.iter().find_map(|p| match p {
            Payload::Notify(n) if n.notify_type == NotifyType::REKEY_SA && n.protocol == ProtocolId::ESP => {
                n.spi.as_slice().try_into().ok().map(u32::from_be_bytes)
            }
            _ => None,
        });
        let found = rekeyed.and_then(|spi| Self::children_of(&mut self.sas, sa).iter().position(|c| c.spi_out == spi));
        let replaced = found.is_some_and(|idx| {
            let old = &Self::children_of(&mut self.sas, sa)[idx];
            let (was_rekeyed, spi_in) = (old.rekeyed, old.spi_in);
            // Our rekey of it may be in flight on this IKE SA or, across an IKE SA rekey, on
            // its predecessor or successor.
            let ours_in_flight = std::iter::once(&*sa)
                .chain(self.sas.values())
                .any(|s| s.rekey.as_ref().is_some_and(|r| r.old_spi_in == Some(spi_in)));
            was_rekeyed && !ours_in_flight
        });
        let (reply, new_child) = match (rekeyed, found) {
            (Some(_), None) => (refuse(NotifyType::CHILD_SA_NOT_FOUND, vec![]), None),
            // A new Child SA (RFC 7296 1.3.1): of the configuration its selectors fit.
            (None, _) => self.answer_child(sa, &conn, None, &inner, true)?,
            // A rekey (1.3.3): of the configuration of the Child SA it replaces.
            // A rekey of a Child SA already replaced (our own rekey of it is done, its Delete
            // under way; or the peer rekeyed it before): its successor would take the
            // traffic from the pair that replaced it, about to be the only one. RFC 7296
            // 2.25's answer for an SA being rekeyed or deleted.
            (Some(_), Some(_)) if replaced => (refuse(NotifyType::TEMPORARY_FAILURE, vec![]), None),
            (Some(_), Some(idx)) => {
                let name = Self::children_of(&mut self.sas, sa)[idx].name.clone();
                let cfg = conn.child_config(&name).cloned();
                let answer = self.answer_child(sa, &conn, cfg.as_ref(), &inner, true)?;
                if let Some((c, lower)) = &answer.1 {
                    // The peer replaces this one and will delete it: we do not rekey it too.
                    let old = &mut Self::children_of(&mut self.sas, sa)[idx];
                    (old.rekeyed, old.going) = (true, true);
                    let old_spi_in = old.spi_in;
                    if sa.rekey.as_ref().is_some_and(|r| r.old_spi_in == Some(old_spi_in)) {
                        // Our rekey of it is in flight too: settled when its answer comes.
                        sa.crossed_child_rekey = Some((old_spi_in, c.spi_in, lower.clone()));
                    }
                }
                answer
            }
        };
        let out = self.seal(sa, header, &reply)?;
        self.respond(sa, id, out);
        if let Some((mut c, _)) = new_child {
            let early = self.rekey_early(sa.conn, |c| c.child_rekey);
            let mut child = Child::of(&c, now, early);
            if let (Some(_), Some(idx)) = (rekeyed, found) {
                child.holds_for = Some(Self::children_of(&mut self.sas, sa)[idx].spi_in);
                c.outbound_later = true;
            }
            Self::children_of(&mut self.sas, sa).push(child);
            self.events.push_back(Event::ChildUp(c));
        }
        Ok(())
    }

    /// Before Child SA `gone` (inbound SPI) of `children` is reported down: the pair that
    /// held back its outbound traffic for it takes it now.
    fn release_outbound(events: &mut VecDeque<Event>, connection: &str, children: &mut [Child], gone: u32) {
        for c in children.iter_mut().filter(|c| c.holds_for == Some(gone)) {
            c.holds_for = None;
            events.push_back(Self::outbound_event(connection, c));
        }
    }

    fn outbound_event(connection: &str, c: &Child) -> Event {
        Event::ChildOutbound {
            connection: connection.to_string(),
            child: c.name.clone(),
            spi_in: c.spi_in,
            spi_out: c.spi_out,
            local_ts: c.local_ts.clone(),
            remote_ts: c.remote_ts.clone(),
        }
    }

    /// Our answer to the peer's request for a Child SA, in IKE_AUTH or (`create_child_sa`)
    /// CREATE_CHILD_SA (RFC 7296 1.3): the payloads, and the new Child SA with the lower nonce
    /// of the exchange if we accept. `cfg`: the child configuration (for a rekey); without it,
    /// the first whose selectors the request's narrow to (2.9).
    fn answer_child(
        &mut self,
        sa: &IkeSa,
        conn: &Connection,
        cfg: Option<&ChildConfig>,
        inner: &[Payload],
        create_child_sa: bool,
    ) -> Result<ChildAnswer, String> {
        let refuse = |t: NotifyType, data: Vec<u8>| Ok((vec![notify(t, data)], None));
        let proposals = inner.sa().cloned().unwrap_or_default();
        let tsi = inner.tsi().cloned().unwrap_or_default();
        let tsr = inner.tsr().cloned().unwrap_or_default();
        let fits = |c: &ChildConfig| !narrow(&tsi, &c.remote_ts).is_empty() && !narrow(&tsr, &c.local_ts).is_empty();
        let cfg = cfg.or_else(|| conn.children.iter().find(|c| fits(c))).or(conn.children.first()).cloned();
        let Some(cfg) = cfg else { return refuse(NotifyType::TS_UNACCEPTABLE, vec![]) };
        let (ntsi, ntsr) = (narrow(&tsi, &cfg.remote_ts), narrow(&tsr, &cfg.local_ts));
        let (ni, ke) = if create_child_sa {
            (inner.nonce().cloned().unwrap_or_default(), inner.ke().cloned())
        } else {
            (sa.ni.clone(), None)
        };
        if create_child_sa && !(16..=256).contains(&ni.len()) {
            return refuse(NotifyType::INVALID_SYNTAX, vec![]);
        }
        // In CREATE_CHILD_SA the DH group is negotiated (RFC 7296 1.3.1, 1.3.3): a
        // configuration that asks for PFS takes no proposal without it, whether or not the
        // peer sent a KE payload (leaving it out must not turn PFS off). In IKE_AUTH the
        // first Child SA has no KE of its own and its proposals' DH groups are ignored.
        let Some((accepted, chosen)) = proposal::select(&conn.esp, &proposals, Kind::Esp, create_child_sa) else {
            return refuse(NotifyType::NO_PROPOSAL_CHOSEN, vec![]);
        };
        if ntsi.is_empty() || ntsr.is_empty() {
            return refuse(NotifyType::TS_UNACCEPTABLE, vec![]);
        }
        if create_child_sa && chosen.dh.is_some() && ke.as_ref().map(|k| k.group) != chosen.dh {
            return refuse(NotifyType::INVALID_KE_PAYLOAD, chosen.dh.unwrap_or(0).to_be_bytes().to_vec());
        }
        let Spi::Four(spi_out) = accepted.spi else { return Err("ESP SPI is not 4 bytes".into()) };
        let spi_in = self.new_spi(sa);
        let mut payloads = vec![Payload::Sa(vec![chosen.to_wire(accepted.number, ProtocolId::ESP, Spi::Four(spi_in))])];
        let nr = if create_child_sa {
            let nr = self.provider.nonce(NONCE_LEN);
            payloads.push(Payload::Nonce(nr.clone()));
            nr
        } else {
            sa.nr.clone()
        };
        let mut shared = None;
        if let (Some(g), Some(ke)) = (chosen.dh, &ke) {
            let d =
                self.provider.dh_private(DhGroup::from_id(g).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
            shared = Some(d.shared(&ke.data).map_err(|e| e.to_string())?);
            payloads.push(Payload::Ke(KeyExchange { group: g, data: d.public().to_vec() }));
        }
        payloads.push(Payload::TsI(ntsi.clone()));
        payloads.push(Payload::TsR(ntsr.clone()));
        let c = self.child_keys(
            sa,
            conn,
            &cfg.name,
            &chosen,
            spi_in,
            spi_out,
            ntsr,
            ntsi,
            (&ni, &nr),
            shared.as_ref().map(|s| s.expose()),
            false,
        )?;
        Ok((payloads, Some((c, lower_nonce(&ni, &nr).to_vec()))))
    }

    /// A request of the peer's, which came to `from` (our address, the sender's).
    fn request(
        &mut self,
        now: Instant,
        sa: &mut IkeSa,
        data: &[u8],
        msg: Message,
        from: (SocketAddr, SocketAddr),
    ) -> Result<(), String> {
        let h = msg.header.clone();
        // A retransmitted request gets the same response again (RFC 7296 2.1), where it came
        // from (2.11), though an old message does not move the peer (see `handle_datagram`).
        if let Some((id, resp)) = &sa.last_response
            && *id == h.message_id
        {
            self.transmits.push_back(Transmit { local: from.0, remote: from.1, data: resp.clone() });
            return Ok(());
        }
        // RFC 7296 2.3: with a window of one, only the next request is processed.
        if h.message_id != sa.peer_next_id {
            return Ok(());
        }
        match (h.exchange, sa.state) {
            (ExchangeType::IKE_AUTH, State::InitDone) if !sa.initiator => self.auth_request(now, sa, data, msg),
            (ExchangeType::INFORMATIONAL, State::Established) => self.informational_request(now, sa, data, msg),
            (ExchangeType::CREATE_CHILD_SA, State::Established) => self.create_child_request(now, sa, data, msg),
            _ => Ok(()),
        }
    }

    fn respond(&mut self, sa: &mut IkeSa, message_id: u32, out: Vec<u8>) {
        sa.last_response = Some((message_id, out.clone()));
        sa.peer_next_id = message_id.wrapping_add(1);
        self.transmits.push_back(Transmit { local: sa.local, remote: sa.remote, data: out });
    }

    /// INFORMATIONAL requests (RFC 7296 1.4, 1.5): deletes and liveness checks. Deleting an
    /// ESP SA is answered with a Delete for our half of each pair (1.4.1); deleting the IKE SA
    /// takes its Child SAs along.
    fn informational_request(&mut self, now: Instant, sa: &mut IkeSa, data: &[u8], msg: Message) -> Result<(), String> {
        let inner = Self::open(sa, data, &msg)?;
        sa.last_seen = now;
        let header = Self::response_header(sa, ExchangeType::INFORMATIONAL, msg.header.message_id);
        let connection = self.connections[sa.conn].name.clone();
        if find_notify(&inner, NotifyType::AUTHENTICATION_FAILED).is_some() {
            // The initiator did not accept our AUTH (RFC 7296 2.21.2): the IKE SA is void.
            let out = self.seal(sa, header, &[])?;
            self.respond(sa, msg.header.message_id, out);
            return Err("the peer refused our authentication (AUTHENTICATION_FAILED)".into());
        }
        let mut delete_ike = false;
        let mut ours = Vec::new();
        for p in &inner {
            let Payload::Delete(d) = p else { continue };
            if d.protocol == ProtocolId::IKE {
                delete_ike = true;
            } else if d.protocol == ProtocolId::ESP {
                for spi in &d.spis {
                    // The peer names its inbound SPIs: our outbound ones.
                    let children = Self::children_of(&mut self.sas, sa);
                    if let Some(i) = children.iter().position(|c| c.spi_out == *spi) {
                        let c = children.remove(i);
                        Self::release_outbound(&mut self.events, &connection, children, c.spi_in);
                        ours.push(c.spi_in);
                        self.events.push_back(Event::ChildDown {
                            connection: connection.clone(),
                            child: c.name,
                            spi_in: c.spi_in,
                            spi_out: c.spi_out,
                        });
                    }
                }
            }
        }
        let reply = if ours.is_empty() || delete_ike {
            vec![]
        } else {
            vec![Payload::Delete(wire::Delete { protocol: ProtocolId::ESP, spis: ours })]
        };
        let out = self.seal(sa, header, &reply)?;
        self.respond(sa, msg.header.message_id, out);
        if delete_ike {
            for c in sa.children.drain(..) {
                self.events.push_back(Event::ChildDown {
                    connection: connection.clone(),
                    child: c.name,
                    spi_in: c.spi_in,
                    spi_out: c.spi_out,
                });
            }
            self.events.push_back(Event::IkeDown { connection, local_spi: sa.local_spi() });
            // The caller removes the SA (this error carries no failure event: see handle_datagram).
            return Err(String::new());
        }
        Ok(())
    }

    fn auth_request(&mut self, now: Instant, sa: &mut IkeSa, data: &[u8], msg: Message) -> Result<(), String> {
        let h = msg.header.clone();
        sa.last_seen = now;
        let inner = Self::open(sa, data, &msg)?;
        let idi = inner.idi().cloned().ok_or("no IDi")?;
        // The connection: the one chosen in IKE_SA_INIT, or one of the same proposals that
        // knows this peer identity.
        let mut why = format!("no connection accepts identity {}", pki::id_text(&idi));
        let mut verified = None;
        for i in std::iter::once(sa.conn).chain((0..self.connections.len()).filter(|&i| i != sa.conn)) {
            let c = &self.connections[i];
            if !c.accepts_id(&idi) || !c.accepts_addr(sa.remote.ip()) {
                continue;
            }
            match self.verify_peer_auth(now, sa, c, &idi, &inner) {
                Ok(()) => {
                    verified = Some(i);
                    break;
                }
                Err(e) => why = format!("{}: {e}", c.name),
            }
        }
        let header = Self::response_header(sa, ExchangeType::IKE_AUTH, h.message_id);
        let Some(ci) = verified else {
            // RFC 7296 2.21.2: AUTHENTICATION_FAILED, then the IKE SA is gone.
            let out = self.seal(sa, header, &[notify(NotifyType::AUTHENTICATION_FAILED, vec![])])?;
            self.transmits.push_back(Transmit { local: sa.local, remote: sa.remote, data: out });
            return Err(format!("the initiator {} fails to authenticate: {why}", pki::id_text(&idi)));
        };
        sa.conn = ci;
        // Drawn again: the connection IKE_SA_INIT guessed may not be this one.
        sa.rekey_early = self.rekey_early(ci, |c| c.ike_rekey);
        let conn = self.connections[ci].clone();
        // RFC 7296 1.2: IDr, [CERT,] AUTH, SAr2, TSi, TSr.
        let (certs, my_auth) = Self::my_auth(sa, &conn)?;
        let mut out_payloads = vec![Payload::IdR(conn.local_id.clone())];
        out_payloads.extend(certs);
        out_payloads.push(my_auth);
        // The first Child SA (RFC 7296 1.3): failing it leaves the IKE SA up.
        let (payloads, child) = self.answer_child(sa, &conn, None, &inner, false)?;
        out_payloads.extend(payloads);
        let child = child.map(|(c, _)| c);
        let out = self.seal(sa, header, &out_payloads)?;
        sa.state = State::Established;
        sa.established = now;
        sa.peer_id = Some(idi.clone());
        self.half_open.retain(|_, v| *v != sa.spi_r);
        self.respond(sa, h.message_id, out);
        if find_notify(&inner, NotifyType::INITIAL_CONTACT).is_some() {
            // RFC 7296 2.4: the peer holds no other IKE SA with us (it restarted, say): those
            // we still have with its identity are dead, and so are their Child SAs.
            let stale: Vec<u64> = self
                .sas
                .iter()
                .filter(|(_, s)| s.conn == ci && s.peer_id.as_ref() == Some(&idi))
                .map(|(k, _)| *k)
                .collect();
            for k in stale {
                if let Some(old) = self.remove(k) {
                    self.events.push_back(Event::IkeDown { connection: conn.name.clone(), local_spi: old.local_spi() });
                }
            }
        }
        self.events.push_back(Event::IkeUp { connection: conn.name.clone(), local_spi: sa.spi_r, remote_id: idi });
        if let Some(c) = child {
            let early = self.rekey_early(sa.conn, |c| c.child_rekey);
            sa.children.push(Child::of(&c, now, early));
            self.events.push_back(Event::ChildUp(c));
        }
        Ok(())
    }
}
